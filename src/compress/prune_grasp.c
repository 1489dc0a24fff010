/* GraSP (Wang et al. 2020): s = −w ⊙ Hg, g the gradient over N batches, Hg
 * by central finite differences of gradients:
 *   Hg ≈ (∇L(w + εg) − ∇L(w − εg)) / (2ε),
 * ε = eps·‖w‖/‖g‖ over the eligible weights, so the step is a fixed fraction
 * of the weights' norm. Only eligible, unpruned weights are perturbed
 * (GraSP differentiates with respect to the prunable weights only). The
 * highest scores are pruned (removing them reduces gradient flow least,
 * Alg. 1). */
#include "compress/prune_internal.h"

#include <math.h>
#include <string.h>

static rf_status grasp_hg(rf_ctx *ctx, rf_prune_batches *g, const rf_prune_item *it, int n, double eps_rel, float *gbar,
                          float *hg) {
    rf_model *m = g->m;
    for (int b = 0; b < g->nb; b++) {
        RF_TRY(rf_prune_batch_grad(ctx, g, b));
        rf_prune_acc(it, n, m->grads, gbar, 1.0f / (float)g->nb, 0);
    }
    double wn = 0, gn = 0;
    for (int i = 0; i < n; i++)
        for (size_t e = 0; e < it[i].numel; e++) {
            size_t f = it[i].offset + e;
            if (m->masks && m->masks[f] == 0.0f) gbar[f] = 0.0f;
            wn += (double)m->params[f] * m->params[f];
            gn += (double)gbar[f] * gbar[f];
        }
    if (gn == 0.0) return rf_error(ctx, RF_ERR_INVALID, "grasp: the gradient is zero");
    double eps = eps_rel * sqrt(wn) / sqrt(gn);
    /* hg accumulates (g(w+εg) − g(w−εg)) / (2ε) averaged over batches. The
     * weights are restored from a copy: adding and subtracting εg in float
     * would not give them back bit for bit. */
    float *w0 = rf_malloc(m->n_params * sizeof *w0 + 1);
    if (!w0) return rf_error(ctx, RF_ERR_NOMEM, "grasp: weight copy");
    memcpy(w0, m->params, m->n_params * sizeof *w0);
    rf_status s = RF_OK;
    for (int sign = 1; sign >= -1 && s == RF_OK; sign -= 2) {
        for (int i = 0; i < n; i++)
            for (size_t e = 0; e < it[i].numel; e++) {
                size_t f = it[i].offset + e;
                m->params[f] = w0[f] + (float)(sign * eps) * gbar[f];
            }
        for (int b = 0; b < g->nb && s == RF_OK; b++) {
            s = rf_prune_batch_grad(ctx, g, b);
            if (s == RF_OK) rf_prune_acc(it, n, m->grads, hg, (float)(sign / (2.0 * eps * g->nb)), 0);
        }
    }
    memcpy(m->params, w0, m->n_params * sizeof *w0);
    rf_free(w0);
    return s;
}

static rf_status score_grasp(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items, int n_items,
                             const rf_dataset *train, float *scores) {
    rf_prune_batches g;
    RF_TRY(rf_prune_batches_open(ctx, &g, m, cfg, train, rf_prune_n_batches(cfg)));
    float *gbar = rf_calloc(m->n_params ? m->n_params : 1, sizeof *gbar);
    float *hg = rf_calloc(m->n_params ? m->n_params : 1, sizeof *hg);
    rf_status s = gbar && hg ? grasp_hg(ctx, &g, items, n_items, cfg->grasp_eps, gbar, hg)
                             : rf_error(ctx, RF_ERR_NOMEM, "scoring buffers");
    for (int i = 0; i < n_items && s == RF_OK; i++)
        rf_prune_score_grasp(m->params + items[i].offset, hg + items[i].offset, items[i].numel, scores + items[i].offset);
    rf_prune_batches_close(&g);
    rf_free(gbar);
    rf_free(hg);
    return s;
}

static const char *const grasp_keys[] = {"obd_batches", "grasp_eps", NULL};

const rf_prune_method_desc rf_prune_method_grasp = {
    .name = "grasp", .summary = "−w·(Hg), Hg by finite differences of gradients over `obd_batches` batches; prunes the highest (Wang et al. 2020)",
    .flags = RF_PM_DATA | RF_PM_GRAD | RF_PM_AT_INIT | RF_PM_HIGHEST | RF_PM_LAYER | RF_PM_GLOBAL, .keys = grasp_keys,
    .score = score_grasp,
};
