/* Gradient-based saliencies: OBD, SNIP and GraSP (docs/pruning.md).
 *
 * All three read mini-batches of the training set drawn with the batcher's
 * deterministic order for (cfg->seed, epoch 0). The model is left as found:
 * batchnorm running statistics and the dropout stream are saved before and
 * restored after, so scoring a model never changes it, and every gradient
 * evaluation of one batch sees the same dropout mask (GraSP's finite
 * differences need g(w ± εv) on the same function).
 *
 *  OBD (LeCun, Denker & Solla 1990): s = ½·h_ii·w², h_ii the Hessian
 *    diagonal, estimated by the empirical Fisher / Gauss-Newton diagonal. We
 *    use the standard practical estimate: the mean over N batches of
 *    B·(ḡ_b)², ḡ_b the mean gradient of batch b. Since E[B·ḡ²] = E[g²] +
 *    (B−1)(E g)², this equals the per-sample Fisher diagonal plus a
 *    (B−1)-weighted squared-mean term that is small away from init.
 *  SNIP (Lee et al. 2019): s = |g ⊙ w| on one batch.
 *  GraSP (Wang et al. 2020): s = −w ⊙ Hg, g the gradient over N
 *    batches, Hg by central finite differences of gradients:
 *      Hg ≈ (∇L(w + εg) − ∇L(w − εg)) / (2ε),
 *    ε = eps·‖w‖/‖g‖ over the eligible weights, so the step is a fixed
 *    fraction of the weights' norm. Only eligible, unpruned weights are
 *    perturbed (GraSP differentiates with respect to the prunable weights
 *    only). The highest scores are pruned (removing them reduces gradient
 *    flow least). */
#include "raffle/prune.h"

#include <math.h>
#include <string.h>

rf_status rf_prune_scores_grad_(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg,
                                const rf_prune_item *items, int n_items,
                                const rf_dataset *train, float *scores);

typedef struct grad_state {
    rf_model *m;
    int       nb, B;
    size_t    in_size;
    float    *x;          /* [nb, B, in_size] */
    int32_t  *y;          /* [nb, B] */
    float    *dlogits;    /* [B, classes] */
    rf_rng    rng0;       /* dropout stream to restore before every evaluation */
} grad_state;

/* Gradient of the mean loss on batch b into m->grads. */
static rf_status batch_grad(rf_ctx *ctx, grad_state *g, int b) {
    rf_model *m = g->m;
    const float *logits;
    m->dropout_rng = g->rng0;
    rf_model_zero_grad(m);
    RF_TRY(rf_model_forward(ctx, m, g->x + (size_t)b * g->B * g->in_size, g->B, 1, &logits));
    float loss = rf_loss_xent(logits, g->y + (size_t)b * g->B, g->B, m->n_classes, 0.0f, g->dlogits);
    if (!isfinite(loss)) return rf_error(ctx, RF_ERR_NAN, "scoring batch %d: loss is %g", b, (double)loss);
    return rf_model_backward(ctx, m, g->dlogits);
}

static rf_status load_batches(rf_ctx *ctx, grad_state *g, const rf_dataset *train, uint64_t seed) {
    rf_batcher bt;
    RF_TRY(rf_batcher_init(ctx, &bt, train, g->B, seed, 0, 1, 1));
    int got = 0;
    for (; got < g->nb; got++) {
        int c = rf_batcher_next(&bt, g->x + (size_t)got * g->B * g->in_size, g->y + (size_t)got * g->B, NULL);
        if (c != g->B) break;
    }
    rf_batcher_free(&bt);
    if (got < g->nb)
        return rf_error(ctx, RF_ERR_DATA, "scoring needs %d batches of %d, the training set has %lld samples",
                        g->nb, g->B, (long long)train->n);
    return RF_OK;
}

/* Accumulates over items: acc[i] += f(grads[i]). */
static void acc_items(const rf_prune_item *it, int n, const float *src, float *acc, float scale, int square) {
    for (int i = 0; i < n; i++)
        for (size_t e = 0; e < it[i].numel; e++) {
            size_t f = it[i].offset + e;
            acc[f] += square ? scale * src[f] * src[f] : scale * src[f];
        }
}

static rf_status grasp_hg(rf_ctx *ctx, grad_state *g, const rf_prune_item *it, int n,
                          double eps_rel, float *gbar, float *hg) {
    rf_model *m = g->m;
    for (int b = 0; b < g->nb; b++) {
        RF_TRY(batch_grad(ctx, g, b));
        acc_items(it, n, m->grads, gbar, 1.0f / (float)g->nb, 0);
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
            s = batch_grad(ctx, g, b);
            if (s == RF_OK) acc_items(it, n, m->grads, hg, (float)(sign / (2.0 * eps * g->nb)), 0);
        }
    }
    memcpy(m->params, w0, m->n_params * sizeof *w0);
    rf_free(w0);
    return s;
}

rf_status rf_prune_scores_grad_(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg,
                                const rf_prune_item *items, int n_items,
                                const rf_dataset *train, float *scores) {
    grad_state g = {0};
    g.m = m;
    g.B = cfg->batch > 0 ? cfg->batch : 128;
    g.nb = cfg->method == RF_PRUNE_SNIP ? 1 : (cfg->batches > 0 ? cfg->batches : 10);
    g.in_size = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    if ((size_t)(train->c * train->h * train->w) != g.in_size)
        return rf_error(ctx, RF_ERR_SHAPE, "scoring: data samples have %d values, the model takes %zu",
                        train->c * train->h * train->w, g.in_size);
    RF_TRY(rf_check_cap(ctx, (uint64_t)g.nb * g.B * g.in_size * 4, "scoring batches"));
    g.x = rf_malloc((size_t)g.nb * g.B * g.in_size * sizeof *g.x);
    g.y = rf_malloc((size_t)g.nb * g.B * sizeof *g.y);
    g.dlogits = rf_malloc((size_t)g.B * (m->n_classes > 0 ? m->n_classes : 1) * sizeof *g.dlogits);
    float *bufs = rf_malloc((m->n_buffers ? m->n_buffers : 1) * sizeof *bufs);
    float *work = rf_calloc(m->n_params ? m->n_params : 1, sizeof *work);
    float *work2 = cfg->method == RF_PRUNE_GRASP ? rf_calloc(m->n_params ? m->n_params : 1, sizeof *work2) : NULL;
    rf_status s = RF_OK;
    if (!g.x || !g.y || !g.dlogits || !bufs || !work || (cfg->method == RF_PRUNE_GRASP && !work2)) {
        s = rf_error(ctx, RF_ERR_NOMEM, "scoring buffers");
        goto done;
    }
    if (m->n_buffers) memcpy(bufs, m->buffers, m->n_buffers * sizeof *bufs);
    g.rng0 = m->dropout_rng;
    s = load_batches(ctx, &g, train, cfg->seed);
    if (s != RF_OK) goto done;
    rf_model_apply_masks(m);
    switch (cfg->method) {
    case RF_PRUNE_OBD:
        for (int b = 0; b < g.nb && s == RF_OK; b++) {
            s = batch_grad(ctx, &g, b);
            if (s == RF_OK) acc_items(items, n_items, m->grads, work, (float)g.B / (float)g.nb, 1);
        }
        for (int i = 0; i < n_items && s == RF_OK; i++)
            rf_prune_score_obd(m->params + items[i].offset, work + items[i].offset, items[i].numel, scores + items[i].offset);
        break;
    case RF_PRUNE_SNIP:
        s = batch_grad(ctx, &g, 0);
        for (int i = 0; i < n_items && s == RF_OK; i++)
            rf_prune_score_snip(m->params + items[i].offset, m->grads + items[i].offset, items[i].numel, scores + items[i].offset);
        break;
    case RF_PRUNE_GRASP:
        s = grasp_hg(ctx, &g, items, n_items, cfg->grasp_eps, work, work2);
        for (int i = 0; i < n_items && s == RF_OK; i++)
            rf_prune_score_grasp(m->params + items[i].offset, work2 + items[i].offset, items[i].numel, scores + items[i].offset);
        break;
    default:
        s = rf_error(ctx, RF_ERR_INTERNAL, "gradient scores for method %s", rf_prune_method_name(cfg->method));
    }
    if (m->n_buffers) memcpy(m->buffers, bufs, m->n_buffers * sizeof *bufs);
    m->dropout_rng = g.rng0;
    rf_model_zero_grad(m);
done:
    rf_free(g.x); rf_free(g.y); rf_free(g.dlogits); rf_free(bufs); rf_free(work); rf_free(work2);
    return s;
}
