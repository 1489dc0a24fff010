/* What the gradient-based saliencies share (OBD, SNIP, GraSP, Taylor):
 * mini-batches of the training set drawn with the batcher's deterministic
 * order for (cfg->seed, epoch 0), the gradient of one batch's mean loss, and
 * the model given back as found: batchnorm running statistics and the
 * dropout stream are saved before and restored after, so scoring a model
 * never changes it, and every gradient evaluation of one batch sees the same
 * dropout mask (GraSP's finite differences need g(w ± εv) on the same
 * function). The methods themselves are prune_obd.c, prune_snip.c,
 * prune_grasp.c and prune_taylor.c. */
#include "compress/prune_internal.h"

#include <math.h>
#include <string.h>

int rf_prune_n_batches(const rf_prune_cfg *cfg) { return cfg->batches > 0 ? cfg->batches : 10; }

rf_status rf_prune_batch_grad(rf_ctx *ctx, rf_prune_batches *g, int b) {
    rf_model *m = g->m;
    const float *logits;
    m->dropout_rng = g->rng0;
    rf_model_zero_grad(m);
    RF_TRY(rf_model_forward(ctx, m, g->x + (size_t)b * g->B * g->in_size, g->B, 1, &logits));
    float loss = rf_loss_xent(logits, g->y + (size_t)b * g->B, g->B, m->n_classes, 0.0f, g->dlogits);
    if (!isfinite(loss)) return rf_error(ctx, RF_ERR_NAN, "scoring batch %d: loss is %g", b, (double)loss);
    return rf_model_backward(ctx, m, g->dlogits);
}

static rf_status load_batches(rf_ctx *ctx, rf_prune_batches *g, const rf_dataset *train, uint64_t seed) {
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

static void batches_free(rf_prune_batches *g) {
    rf_free(g->x); rf_free(g->y); rf_free(g->dlogits); rf_free(g->bufs);
    g->x = NULL; g->y = NULL; g->dlogits = NULL; g->bufs = NULL;
}

rf_status rf_prune_batches_open(rf_ctx *ctx, rf_prune_batches *g, rf_model *m, const rf_prune_cfg *cfg,
                                const rf_dataset *train, int nb) {
    memset(g, 0, sizeof *g);
    g->m = m;
    g->B = cfg->batch > 0 ? cfg->batch : 128;
    g->nb = nb;
    g->in_size = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    if ((size_t)(train->c * train->h * train->w) != g->in_size)
        return rf_error(ctx, RF_ERR_SHAPE, "scoring: data samples have %d values, the model takes %zu",
                        train->c * train->h * train->w, g->in_size);
    RF_TRY(rf_check_cap(ctx, (uint64_t)g->nb * g->B * g->in_size * 4, "scoring batches"));
    g->x = rf_malloc((size_t)g->nb * g->B * g->in_size * sizeof *g->x);
    g->y = rf_malloc((size_t)g->nb * g->B * sizeof *g->y);
    g->dlogits = rf_malloc((size_t)g->B * (m->n_classes > 0 ? m->n_classes : 1) * sizeof *g->dlogits);
    g->bufs = rf_malloc((m->n_buffers ? m->n_buffers : 1) * sizeof *g->bufs);
    if (!g->x || !g->y || !g->dlogits || !g->bufs) { batches_free(g); return rf_error(ctx, RF_ERR_NOMEM, "scoring buffers"); }
    if (m->n_buffers) memcpy(g->bufs, m->buffers, m->n_buffers * sizeof *g->bufs);
    g->rng0 = m->dropout_rng;
    rf_status s = load_batches(ctx, g, train, cfg->seed);
    if (s != RF_OK) { batches_free(g); return s; }
    rf_model_apply_masks(m);
    return RF_OK;
}

void rf_prune_batches_close(rf_prune_batches *g) {
    rf_model *m = g->m;
    if (m->n_buffers && g->bufs) memcpy(m->buffers, g->bufs, m->n_buffers * sizeof *g->bufs);
    m->dropout_rng = g->rng0;
    rf_model_zero_grad(m);
    batches_free(g);
}

void rf_prune_acc(const rf_prune_item *it, int n, const float *src, float *acc, float scale, int square) {
    for (int i = 0; i < n; i++)
        for (size_t e = 0; e < it[i].numel; e++) {
            size_t f = it[i].offset + e;
            acc[f] += square ? scale * src[f] * src[f] : scale * src[f];
        }
}
