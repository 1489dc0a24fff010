/* SNIP (Lee et al. 2019): s = |g ⊙ w| on one batch (connection sensitivity,
 * eq. 6; the normalisation by the sum does not change a ranking). */
#include "compress/prune_internal.h"

static rf_status score_snip(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items, int n_items,
                            const rf_dataset *train, float *scores) {
    rf_prune_batches g;
    RF_TRY(rf_prune_batches_open(ctx, &g, m, cfg, train, 1));
    rf_status s = rf_prune_batch_grad(ctx, &g, 0);
    for (int i = 0; i < n_items && s == RF_OK; i++)
        rf_prune_score_snip(m->params + items[i].offset, m->grads + items[i].offset, items[i].numel, scores + items[i].offset);
    rf_prune_batches_close(&g);
    return s;
}

const rf_prune_method_desc rf_prune_method_snip = {
    .name = "snip", .summary = "|g·w| on one batch (Lee et al. 2019)",
    .flags = RF_PM_DATA | RF_PM_GRAD | RF_PM_AT_INIT | RF_PM_LAYER | RF_PM_GLOBAL, .score = score_snip,
};
