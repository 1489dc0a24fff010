/* SynFlow (Tanaka, Kunin, Yamins & Ganguli 2020, "Pruning neural networks
 * without any data by iteratively conserving synaptic flow", Alg. 1).
 *
 *   1. linearise: every parameter θ → |θ| (signs restored at the end);
 *      batchnorm runs in inference mode, i.e. as a fixed affine map;
 *   2. R = 1ᵀ f(1; |θ| ⊙ mask): the sum of the logits for an all-ones input;
 *   3. score S = |θ ⊙ ∂R/∂θ| for every eligible weight;
 *   4. prune to s_k = 1 − (1 − s)^(k/R) for k = 1..R (R = 100 rounds in the
 *      paper's experiments), recomputing the scores after every round.
 * Per-group rates follow the same schedule: a group whose final rate is r
 * targets 1 − (1 − r)^(k/R) at round k.
 *
 * Float range. With |θ| and an all-ones input every layer multiplies the flow
 * by roughly its mean row L1 norm (tens to thousands for conv layers), so R
 * grows geometrically with depth and can overflow float in deep nets. We
 * compute in float and check: if R or any score is not finite, the round is
 * redone with each weight tensor scaled by a power of two α_l ≈ 1/(mean row
 * L1 norm of |W_l|), and the bias of layer l by the cumulative ∏_{j≤l} α_j.
 * For a sequential net with bias (and inference-mode BN, which is affine
 * with zero offset at its initial statistics) this scales the network output
 * and every weight's score by the same constant ∏ α_l, so the ranking is
 * unchanged; powers of two make the scaling itself exact in float. */
#include "raffle/prune.h"

#include <math.h>
#include <string.h>

typedef struct synflow {
    rf_model *m;
    float    *w0;      /* original params (signs restored from here)     */
    float    *scale;   /* per-parameter scale, NULL until overflow is seen */
    float    *ones;    /* all-ones input, one sample                      */
    float    *dl;      /* ones, [classes]                                  */
} synflow;

/* Power-of-two scales that keep the linearised flow near 1 per layer. */
static rf_status build_scale(rf_ctx *ctx, synflow *sf) {
    rf_model *m = sf->m;
    sf->scale = rf_malloc(m->n_params * sizeof *sf->scale + 1);
    if (!sf->scale) return rf_error(ctx, RF_ERR_NOMEM, "synflow: scales");
    for (size_t i = 0; i < m->n_params; i++) sf->scale[i] = 1.0f;
    double cum = 1.0;
    for (int li = 0; li < m->n_layers; li++) {
        const rf_layer *L = &m->layers[li];
        double alpha = 1.0;
        for (int j = 0; j < L->n_params; j++) {
            const rf_param *p = &m->ptensors[L->first_param + j];
            if (p->role != RF_P_WEIGHT || p->numel == 0 || p->shape[0] <= 0) continue;
            double l1 = 0;
            for (size_t e = 0; e < p->numel; e++) l1 += fabs((double)sf->w0[p->offset + e]);
            double row = l1 / (double)p->shape[0];
            alpha = row > 0 ? ldexp(1.0, -(int)lround(log2(row))) : 1.0;
            for (size_t e = 0; e < p->numel; e++) sf->scale[p->offset + e] = (float)alpha;
        }
        cum *= alpha;
        for (int j = 0; j < L->n_params; j++) {
            const rf_param *p = &m->ptensors[L->first_param + j];
            if (p->role != RF_P_BIAS) continue;
            for (size_t e = 0; e < p->numel; e++) sf->scale[p->offset + e] = (float)cum;
        }
    }
    return RF_OK;
}

/* One evaluation of S = |θ ⊙ ∂R/∂θ| on the linearised, masked network.
 * *finite gets 0 if R or a score overflowed. */
static rf_status flow_scores(rf_ctx *ctx, synflow *sf, const rf_prune_item *items, int n_items,
                             float *scores, int *finite) {
    rf_model *m = sf->m;
    for (size_t i = 0; i < m->n_params; i++) {
        float v = fabsf(sf->w0[i]);
        if (sf->scale) v *= sf->scale[i];
        if (m->masks) v *= m->masks[i];
        m->params[i] = v;
    }
    const float *logits;
    RF_TRY(rf_model_forward(ctx, m, sf->ones, 1, 0, &logits));
    double R = 0;
    for (int k = 0; k < m->n_classes; k++) R += logits[k];
    rf_model_zero_grad(m);
    RF_TRY(rf_model_backward(ctx, m, sf->dl));
    *finite = isfinite(R);
    for (int i = 0; i < n_items; i++) {
        const rf_prune_item *it = &items[i];
        rf_prune_score_synflow(m->params + it->offset, m->grads + it->offset, it->numel, scores + it->offset);
        for (size_t e = 0; e < it->numel && *finite; e++) *finite = isfinite(scores[it->offset + e]);
    }
    return RF_OK;
}

static rf_status scores_checked(rf_ctx *ctx, synflow *sf, const rf_prune_item *items, int n_items, float *scores) {
    int finite = 0;
    RF_TRY(flow_scores(ctx, sf, items, n_items, scores, &finite));
    if (finite) return RF_OK;
    if (!sf->scale) {
        RF_TRY(build_scale(ctx, sf));
        RF_TRY(flow_scores(ctx, sf, items, n_items, scores, &finite));
        if (finite) return RF_OK;
    }
    return rf_error(ctx, RF_ERR_NAN, "synflow: the synaptic flow overflows float even after per-layer rescaling");
}

static rf_status sf_open(rf_ctx *ctx, synflow *sf, rf_model *m) {
    memset(sf, 0, sizeof *sf);
    sf->m = m;
    size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    sf->w0 = rf_malloc(m->n_params * sizeof *sf->w0 + 1);
    sf->ones = rf_malloc(in * sizeof *sf->ones + 1);
    sf->dl = rf_malloc((size_t)(m->n_classes > 0 ? m->n_classes : 1) * sizeof *sf->dl);
    if (!sf->w0 || !sf->ones || !sf->dl) return rf_error(ctx, RF_ERR_NOMEM, "synflow buffers");
    memcpy(sf->w0, m->params, m->n_params * sizeof *sf->w0);
    for (size_t i = 0; i < in; i++) sf->ones[i] = 1.0f;
    for (int k = 0; k < m->n_classes; k++) sf->dl[k] = 1.0f;
    return RF_OK;
}

/* Restores the original signed weights (masked) and releases buffers. */
static void sf_close(synflow *sf) {
    if (sf->w0) {
        memcpy(sf->m->params, sf->w0, sf->m->n_params * sizeof *sf->w0);
        rf_model_apply_masks(sf->m);
        rf_model_zero_grad(sf->m);
    }
    rf_free(sf->w0); rf_free(sf->scale); rf_free(sf->ones); rf_free(sf->dl);
}

/* One round's scores (rf_prune_scores asks for them: the descriptor's score). */
static rf_status synflow_scores(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                                int n_items, const rf_dataset *train, float *scores) {
    synflow sf;
    rf_status s = sf_open(ctx, &sf, m);
    if (s == RF_OK) s = scores_checked(ctx, &sf, items, n_items, scores);
    sf_close(&sf);
    return s;
}

/* The iterative pruning of Alg. 1 (the descriptor's prune). */
static rf_status synflow_prune(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                               int n_items, const rf_dataset *train) {
    if (cfg->of_remaining)
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "synflow takes a target sparsity, not a fraction of the remaining weights");
    int R = cfg->synflow_rounds > 0 ? cfg->synflow_rounds : 100;
    synflow sf;
    rf_status s = sf_open(ctx, &sf, m);
    float *scores = s == RF_OK ? rf_calloc(m->n_params ? m->n_params : 1, sizeof *scores) : NULL;
    rf_prune_item *it = s == RF_OK ? rf_malloc((size_t)n_items * sizeof *it) : NULL;
    if (s == RF_OK && (!scores || !it)) s = rf_error(ctx, RF_ERR_NOMEM, "synflow scores");
    for (int k = 1; k <= R && s == RF_OK; k++) {
        double e = (double)k / R;
        rf_prune_plan plan = {cfg->scope, 1.0 - pow(1.0 - cfg->sparsity, e),
                              cfg->output_rate >= 0 ? 1.0 - pow(1.0 - cfg->output_rate, e) : -1.0, 0, 0};
        if (k == R) { plan.sparsity = cfg->sparsity; plan.output_rate = cfg->output_rate; }
        for (int i = 0; i < n_items; i++) {
            it[i] = items[i];
            if (items[i].rate >= 0 && k < R) it[i].rate = 1.0 - pow(1.0 - items[i].rate, e);
        }
        s = scores_checked(ctx, &sf, it, n_items, scores);
        if (s == RF_OK) s = rf_prune_select(ctx, it, n_items, scores, m->masks, &plan, NULL);
        if (s != RF_OK) rf_error_prefix(ctx, "round %d of %d", k, R);
    }
    rf_free(scores);
    rf_free(it);
    sf_close(&sf);
    return s;
}

static const char *const synflow_keys[] = {"synflow_rounds", NULL};

const rf_prune_method_desc rf_prune_method_synflow = {
    .name = "synflow", .summary = "|w·∂R/∂w| of the linearised network, pruned over `synflow_rounds` rounds; no data (Tanaka et al. 2020, Alg. 1)",
    .flags = RF_PM_AT_INIT | RF_PM_LAYER | RF_PM_GLOBAL, .keys = synflow_keys, .score = synflow_scores, .prune = synflow_prune,
};
