/* First-order Taylor importance (Molchanov, Mallya, Tyree, Frosio & Kautz
 * 2019, "Importance Estimation for Neural Network Pruning", CVPR).
 *
 * The importance of a parameter is the squared change of the loss when it
 * is removed, I_m = (E(D) − E(D | w_m = 0))² (eq. 2); its first-order Taylor
 * expansion around the current weights is
 *     I_m^(1)(W) = (g_m · w_m)²                                  (eq. 4)
 * with g_m = ∂E/∂w_m. The paper averages the importance over mini-batches
 * (their pruning engine, method "Taylor_weight", adds (w·g)² batch after
 * batch). This is that variant, per weight (unstructured; the paper's
 * eq. 5 sums a filter's terms before squaring, for structured pruning):
 *     s_m = (1/N) Σ_b (g_{m,b} · w_m)²,
 * g_{m,b} the gradient of batch b's mean loss, N = `obd_batches` batches of
 * `batch` samples. The lowest scores are pruned. With one batch it ranks
 * like SNIP's |g·w|; over several batches it is the mean of the squares,
 * not the square of the mean gradient's product. */
#include "compress/prune_internal.h"

static rf_status score_taylor(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                              int n_items, const rf_dataset *train, float *scores) {
    rf_prune_batches g;
    RF_TRY(rf_prune_batches_open(ctx, &g, m, cfg, train, rf_prune_n_batches(cfg)));
    rf_status s = RF_OK;
    for (int b = 0; b < g.nb && s == RF_OK; b++) {
        s = rf_prune_batch_grad(ctx, &g, b);
        for (int i = 0; i < n_items && s == RF_OK; i++)
            for (size_t e = 0; e < items[i].numel; e++) {
                size_t f = items[i].offset + e;
                float gw = m->grads[f] * m->params[f];
                scores[f] += gw * gw / (float)g.nb;
            }
    }
    rf_prune_batches_close(&g);
    return s;
}

static const char *const taylor_keys[] = {"obd_batches", NULL};

const rf_prune_method_desc rf_prune_method_taylor = {
    .name = "taylor", .summary = "(g·w)² averaged over `obd_batches` batches: first-order Taylor importance (Molchanov et al. 2019, eq. 4)",
    .flags = RF_PM_DATA | RF_PM_GRAD | RF_PM_LAYER | RF_PM_GLOBAL, .keys = taylor_keys, .score = score_taylor,
};
