/* Magnitude pruning (Han et al. 2015; Frankle & Carbin 2019 prune this way):
 * s = |w|. Needs nothing but the weights; also the score of gradual
 * magnitude pruning (rf_gmp) and of lottery rounds. */
#include "compress/prune_internal.h"

rf_status rf_prune_score_items_magnitude(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *it, int n,
                                         const rf_dataset *train, float *sc) {
    for (int i = 0; i < n; i++) rf_prune_score_magnitude(m->params + it[i].offset, it[i].numel, sc + it[i].offset);
    return RF_OK;
}

const rf_prune_method_desc rf_prune_method_magnitude = {
    .name = "magnitude", .summary = "|w| (Han et al. 2015)", .flags = RF_PM_LAYER | RF_PM_GLOBAL, .score = rf_prune_score_items_magnitude,
};
