/* Random pruning, the baseline every saliency is compared with: uniform
 * scores from the Philox stream of the seed. Element e of tensor i draws
 * from stream hash(name), so a tensor's scores do not depend on which other
 * tensors are eligible. */
#include "raffle/prune.h"

#include <string.h>

static rf_status score_random(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *it, int n,
                              const rf_dataset *train, float *sc) {
    for (int i = 0; i < n; i++)
        rf_prune_score_random(cfg->seed, rf_hash64(it[i].name, strlen(it[i].name), 0x70727574ull), it[i].numel,
                              sc + it[i].offset);
    return RF_OK;
}

const rf_prune_method_desc rf_prune_method_random = {
    .name = "random", .summary = "uniform random scores from the seed", .flags = RF_PM_AT_INIT | RF_PM_LAYER | RF_PM_GLOBAL,
    .score = score_random,
};
