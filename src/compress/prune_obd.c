/* OBD (LeCun, Denker & Solla 1990): s = ½·h_ii·w², h_ii the Hessian
 * diagonal, estimated by the empirical Fisher / Gauss-Newton diagonal. We
 * use the standard practical estimate: the mean over N batches of B·(ḡ_b)²,
 * ḡ_b the mean gradient of batch b. Since E[B·ḡ²] = E[g²] + (B−1)(E g)²,
 * this equals the per-sample Fisher diagonal plus a (B−1)-weighted
 * squared-mean term that is small away from init. */
#include "compress/prune_internal.h"

static rf_status score_obd(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items, int n_items,
                           const rf_dataset *train, float *scores) {
    rf_prune_batches g;
    RF_TRY(rf_prune_batches_open(ctx, &g, m, cfg, train, rf_prune_n_batches(cfg)));
    float *h = rf_calloc(m->n_params ? m->n_params : 1, sizeof *h);
    rf_status s = h ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "scoring buffers");
    for (int b = 0; b < g.nb && s == RF_OK; b++) {
        s = rf_prune_batch_grad(ctx, &g, b);
        if (s == RF_OK) rf_prune_acc(items, n_items, m->grads, h, (float)g.B / (float)g.nb, 1);
    }
    for (int i = 0; i < n_items && s == RF_OK; i++)
        rf_prune_score_obd(m->params + items[i].offset, h + items[i].offset, items[i].numel, scores + items[i].offset);
    rf_prune_batches_close(&g);
    rf_free(h);
    return s;
}

static const char *const obd_keys[] = {"obd_batches", NULL};

const rf_prune_method_desc rf_prune_method_obd = {
    .name = "obd", .summary = "½·h·w², h the empirical Fisher diagonal over `obd_batches` batches (LeCun et al. 1990)",
    .flags = RF_PM_DATA | RF_PM_GRAD | RF_PM_LAYER | RF_PM_GLOBAL, .keys = obd_keys, .score = score_obd,
};
