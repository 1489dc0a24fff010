/* Structured pruning and N:M masks (docs/pruning.md "Structured pruning",
 * "N:M"): the channel groups of a hand-written DAG (an identity add and an
 * option-A shortcut), slicing against the masked model, the methods
 * (filter_l1, slimming, neuron_l1, head) against masks worked out by hand
 * or by finite differences, N:M masks for magnitude and gradual pruning,
 * the N:M checkpoint kind, network slimming's penalty, FLOPs, and the
 * rejections (N > M, M not dividing a row, a structured method on a layer
 * it cannot slice, bad λ). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "raffle/prune.h"
#include "raffle/ckpt.h"
#include "raffle/task.h"
#include "raffle/job.h"
#include "raffle/deploy.h"
#include "raffle/safetensors.h"
#include "nn_test_util.h"

static rf_model *build(const char *spec) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    return m;
}

static float *P(rf_model *m, const char *name) {
    const rf_param *p = rf_model_param(m, name);
    cr_assert_not_null(p, "no tensor %s", name);
    return m->params + p->offset;
}
static float *M(rf_model *m, const char *name) {
    const rf_param *p = rf_model_param(m, name);
    cr_assert_not_null(p, "no tensor %s", name);
    cr_assert_not_null(m->masks);
    return m->masks + p->offset;
}
static size_t numel(rf_model *m, const char *name) { return rf_model_param(m, name)->numel; }

/* Running statistics far from 0/1 so that a wrong slice shows. */
static void random_stats(rf_model *m) {
    rf_rng r;
    rf_rng_init(&r, 99, 1);
    for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = 0.5f + rf_rng_uniform(&r);
    for (int t = 0; t < m->n_ptensors; t++)
        if (m->ptensors[t].role == RF_P_NORM)
            for (size_t k = 0; k < m->ptensors[t].numel; k++) m->params[m->ptensors[t].offset + k] = rf_rng_uniform(&r) - 0.3f;
}

/* max |a - b| / max(1, max |a|) over the eval-mode logits of two models on x. */
static double logits_diff(rf_model *a, rf_model *b, const float *x, int batch) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    const float *la, *lb;
    cr_assert_eq(rf_model_forward(&ctx, a, x, batch, 0, &la), RF_OK, "%s", rf_ctx_error(&ctx));
    size_t n = (size_t)batch * a->n_classes;
    float *keep = malloc(n * sizeof(float));
    memcpy(keep, la, n * sizeof(float));
    cr_assert_eq(rf_model_forward(&ctx, b, x, batch, 0, &lb), RF_OK, "%s", rf_ctx_error(&ctx));
    double d = 0, big = 1;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)keep[i] - lb[i]));
        big = fmax(big, fabs(keep[i]));
    }
    free(keep);
    return d / big;
}

/* ---- channel groups of a DAG ----------------------------------------------------
 * a (conv 4) -> bna -> ra -> b (conv 4) -> bnb -> s = bnb + ra -> rs
 * -> c (conv 8, stride 2) -> bnc -> t = bnc + A(rs) -> rt -> gap -> fc (3).
 * s joins a's unit x with b's unit x: groups 0..3, owned by a. t places
 * rs's 4 channels at 2..5 of its 8 (option A, front = (8 - 4) / 2): c's
 * units 2..5 are groups 0..3, and c's units 0, 1, 6, 7 (zero-padded in the
 * shortcut) are c's own groups 4..7. fc's outputs are the logits. */
static const char *DAG =
    "{\"input\":[2,4,4],\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"a\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bna\"},{\"type\":\"relu\",\"name\":\"ra\"},"
    "{\"type\":\"conv2d\",\"name\":\"b\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bnb\"},"
    "{\"type\":\"add\",\"name\":\"s\",\"inputs\":[\"bnb\",\"ra\"]},{\"type\":\"relu\",\"name\":\"rs\"},"
    "{\"type\":\"conv2d\",\"name\":\"c\",\"out\":8,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bnc\"},"
    "{\"type\":\"add\",\"name\":\"t\",\"inputs\":[\"bnc\",\"rs\"],\"shortcut\":\"A\"},{\"type\":\"relu\",\"name\":\"rt\"},"
    "{\"type\":\"gap\",\"name\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}";

Test(struct_groups, residual_and_option_a) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build(DAG);
    rf_chan_groups *g;
    cr_assert_eq(rf_model_chan_groups(&ctx, m, &g), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(g->n_groups, 8);
    const int c_units[8] = {4, 5, 0, 1, 2, 3, 6, 7};
    for (int x = 0; x < 4; x++) {
        cr_assert_eq(g->unit[g->off[0] + x], x, "a unit %d", x);     /* a */
        cr_assert_eq(g->unit[g->off[3] + x], x, "b unit %d", x);     /* b, joined by s */
        cr_assert_eq(g->unit[g->off[6] + x], x, "rs unit %d", x);
    }
    for (int u = 0; u < 8; u++) {
        cr_assert_eq(g->unit[g->off[7] + u], c_units[u], "c unit %d", u);
        cr_assert_eq(g->unit[g->off[11] + u], c_units[u], "gap unit %d", u);
    }
    for (int q = 0; q < 8; q++) cr_assert_eq(g->owner[q], q < 4 ? 0 : 7);
    for (int u = 0; u < 3; u++) cr_assert_eq(g->unit[g->off[12] + u], -1, "logits are pinned");
    char why[160];
    rf_chan_groups_why(m, g, 12, why, sizeof why);
    cr_assert_str_eq(why, "its outputs are the model's logits");
    rf_chan_groups_why(m, g, 7, why, sizeof why);
    cr_assert_str_eq(why, "");
    rf_chan_groups_free(g);
    rf_model_free(m);
}

/* Masks group q's units the way a structured method does: product rows
 * and biases, batch norm γ and β. */
static void kill_unit(rf_model *m, const char *conv, const char *bn, int x, size_t row) {
    char nm[96];
    snprintf(nm, sizeof nm, "%s.weight", conv);
    for (size_t k = 0; k < row; k++) M(m, nm)[(size_t)x * row + k] = 0.0f;
    snprintf(nm, sizeof nm, "%s.weight", bn);
    M(m, nm)[x] = 0.0f;
    snprintf(nm, sizeof nm, "%s.bias", bn);
    M(m, nm)[x] = 0.0f;
}

Test(struct_slice, option_a_front_and_logits) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build(DAG);
    random_stats(m);
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    /* group 1: a/b unit 1, c unit 3; group 4: c unit 0 */
    kill_unit(m, "a", "bna", 1, 2 * 9);
    kill_unit(m, "b", "bnb", 1, 4 * 9);
    kill_unit(m, "c", "bnc", 3, 4 * 9);
    kill_unit(m, "c", "bnc", 0, 4 * 9);
    rf_model_apply_masks(m);
    rf_chan_groups *g;
    cr_assert_eq(rf_model_chan_groups(&ctx, m, &g), RF_OK);
    unsigned char dead[8];
    rf_chan_groups_dead(m, g, dead);
    for (int q = 0; q < 8; q++) cr_assert_eq(dead[q], q == 1 || q == 4, "group %d", q);
    rf_chan_groups_free(g);

    rf_model *s = NULL;
    long removed = 0;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, &removed), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(removed, 4);   /* a 1, b 1, c 2 */
    /* a 3x2x3x3 + bna 6 + b 3x3x3x3 + bnb 6 + c 6x3x3x3 + bnc 12 + fc 3x6 + 3 */
    cr_assert_eq(s->n_params, (size_t)(54 + 6 + 81 + 6 + 162 + 12 + 21));
    cr_assert_eq(s->layers[9].ip[1], 1 + 1, "t's front: one survivor (c unit 1) before the old front 2");
    cr_assert_not_null(strstr(s->spec_json, "\"front\":1"));
    /* c's surviving rows 1, 2, 4, 5, 6, 7, each reading a's survivors 0, 2, 3 */
    const int rows[6] = {1, 2, 4, 5, 6, 7}, cols[3] = {0, 2, 3};
    for (int o = 0; o < 6; o++)
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 9; k++)
                cr_assert_eq(P(s, "c.weight")[(o * 3 + i) * 9 + k], P(m, "c.weight")[(rows[o] * 4 + cols[i]) * 9 + k]);
    const rf_layer *bn = &s->layers[8];
    for (int o = 0; o < 6; o++) {
        cr_assert_eq(s->buffers[bn->buf_offset + o], m->buffers[m->layers[8].buf_offset + rows[o]]);
        cr_assert_eq(s->buffers[bn->buf_offset + 6 + o], m->buffers[m->layers[8].buf_offset + 8 + rows[o]]);
    }
    float *x = randn(5 * in_numel(m), 3);
    cr_assert_lt(logits_diff(m, s, x, 5), 1e-5);
    free(x);
    rf_model_free(s);
    rf_model_free(m);
}

/* ---- the methods ------------------------------------------------------------ */
static rf_prune_cfg cfg_of(const char *method, double sparsity, rf_prune_scope scope) {
    rf_prune_cfg c;
    rf_prune_cfg_default(&c);
    c.method = rf_prune_method_from_name(method);
    cr_assert_geq(c.method, 0, "method %s in the table", method);
    c.sparsity = sparsity;
    c.scope = scope;
    return c;
}

/* 1x1 convs on one input channel: filter j's L1 norm is |w_j|. */
static const char *CHAIN =
    "{\"input\":[1,3,3],\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"c1\",\"out\":4,\"kernel\":1},{\"type\":\"relu\"},"
    "{\"type\":\"conv2d\",\"name\":\"c2\",\"out\":3,\"kernel\":1},{\"type\":\"relu\"},"
    "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":2}]}";

/* CHAIN with c1's filters of L1 norm 0.5, 0.1, 2.0, 0.3 and c2's rows of
 * norm 1.0, 1.0 and 4·last (its last row: last, last, -last, last). */
static rf_model *chain_by_hand(float last) {
    rf_model *m = build(CHAIN);
    const float w1[4] = {0.5f, -0.1f, 2.0f, 0.3f};
    const float w2[12] = {0.25f, -0.25f, 0.25f, 0.25f, 0.5f, 0.5f, 0, 0, last, last, -last, last};
    memcpy(P(m, "c1.weight"), w1, sizeof w1);
    memcpy(P(m, "c2.weight"), w2, sizeof w2);
    return m;
}

Test(struct_methods, filter_l1_layer_scope_by_hand) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    /* c2 rows' L1 norms: 1.0, 1.0, 0.6: the tie goes to the lower index */
    rf_model *m = chain_by_hand(0.15f);
    rf_prune_cfg c = cfg_of("filter_l1", 0.5, RF_SCOPE_LAYER);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    /* c1: round(0.5·4) = 2: filters 1 (0.1) and 3 (0.3); c2: round(1.5) = 2: row 2 (0.6), then row 0 (1.0, lower index) */
    const float want1[4] = {1, 0, 1, 0}, want2[3] = {0, 1, 0};
    for (int j = 0; j < 4; j++) {
        cr_assert_eq(M(m, "c1.weight")[j], want1[j], "c1 filter %d", j);
        cr_assert_eq(M(m, "c1.bias")[j], want1[j], "c1 bias %d", j);
    }
    for (int j = 0; j < 3; j++) {
        for (int k = 0; k < 4; k++) cr_assert_eq(M(m, "c2.weight")[j * 4 + k], want2[j], "c2 row %d", j);
        cr_assert_eq(M(m, "c2.bias")[j], want2[j]);
    }
    for (size_t k = 0; k < numel(m, "fc.weight"); k++) cr_assert_eq(M(m, "fc.weight")[k], 1.0f, "the logits are not pruned");
    rf_model *s = NULL;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    /* c1 keeps filters 0, 2; c2 keeps row 1 and its columns 0, 2; fc reads c2's channel 1: features 9..17 */
    cr_assert_eq(numel(s, "c1.weight"), 2);
    cr_assert_eq(P(s, "c1.weight")[1], 2.0f);
    cr_assert_eq(numel(s, "c2.weight"), 2);
    cr_assert_eq(P(s, "c2.weight")[0], 0.5f);
    cr_assert_eq(P(s, "c2.weight")[1], 0.0f);
    cr_assert_eq(numel(s, "fc.weight"), 18);
    for (int o = 0; o < 2; o++)
        for (int f = 0; f < 9; f++) cr_assert_eq(P(s, "fc.weight")[o * 9 + f], P(m, "fc.weight")[o * 27 + 9 + f]);
    float *x = randn(4 * 9, 5);
    cr_assert_lt(logits_diff(m, s, x, 4), 1e-6);
    free(x);
    rf_model_free(s);
    rf_model_free(m);
}

Test(struct_methods, filter_l1_global_scope_by_hand) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = chain_by_hand(0.1125f);
    /* 7 groups: 0.5 0.1 2.0 0.3 | 1.0 1.0 0.45; round(0.5·7) = 4: c1's 0.1, 0.3, c2's 0.45, then c1's 0.5 */
    rf_prune_cfg c = cfg_of("filter_l1", 0.5, RF_SCOPE_GLOBAL);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    const float want1[4] = {0, 0, 1, 0}, want2[3] = {1, 1, 0};
    for (int j = 0; j < 4; j++) cr_assert_eq(M(m, "c1.weight")[j], want1[j], "c1 filter %d", j);
    for (int j = 0; j < 3; j++) cr_assert_eq(M(m, "c2.bias")[j], want2[j], "c2 row %d", j);
    rf_model_free(m);
}

static const char *BN_NET =
    "{\"input\":[2,3,3],\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"c1\",\"out\":3,\"kernel\":1,\"bias\":0},{\"type\":\"batchnorm\",\"name\":\"bn\"},"
    "{\"type\":\"relu\"},{\"type\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":2}]}";

Test(struct_methods, slimming_by_gamma) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build(BN_NET);
    random_stats(m);
    const float gamma[3] = {0.9f, -0.05f, 0.4f};
    memcpy(P(m, "bn.weight"), gamma, sizeof gamma);
    /* the filters' own norms would rank channel 2 lowest: slimming must not look at them */
    float *w = P(m, "c1.weight");
    const float wv[6] = {0.1f, 0.1f, 3.0f, 3.0f, 0.01f, 0.01f};
    memcpy(w, wv, sizeof wv);
    rf_prune_cfg c = cfg_of("slimming", 1.0 / 3.0, RF_SCOPE_GLOBAL);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int j = 0; j < 3; j++) {
        float want = j == 1 ? 0.0f : 1.0f;
        cr_assert_eq(M(m, "bn.weight")[j], want);
        cr_assert_eq(M(m, "bn.bias")[j], want);
        cr_assert_eq(M(m, "c1.weight")[2 * j], want);
    }
    rf_model *s = NULL;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(numel(s, "bn.weight"), 2);
    cr_assert_eq(P(s, "bn.weight")[1], 0.4f);
    cr_assert_eq(s->buffers[s->layers[1].buf_offset + 1], m->buffers[m->layers[1].buf_offset + 2]);
    float *x = randn(3 * 18, 8);
    cr_assert_lt(logits_diff(m, s, x, 3), 1e-6);
    free(x);
    rf_model_free(s);
    rf_model_free(m);
    /* no batch norm: refused, naming the layer */
    m = build(CHAIN);
    c = cfg_of("slimming", 0.5, RF_SCOPE_GLOBAL);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_ERR_INVALID);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "'c1'"), "%s", rf_ctx_error(&ctx));
    rf_model_free(m);
}

Test(struct_methods, neuron_l1_by_hand) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build("{\"input\":[4],\"layers\":[{\"type\":\"linear\",\"name\":\"fc1\",\"out\":3},{\"type\":\"relu\"},"
                        "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":2}]}");
    const float w[12] = {0.25f, 0.25f, -0.25f, 0.25f, 0.1f, -0.05f, 0.05f, 0, 0.7f, 0, 0, 0};
    memcpy(P(m, "fc1.weight"), w, sizeof w);
    rf_prune_cfg c = cfg_of("neuron_l1", 1.0 / 3.0, RF_SCOPE_LAYER);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int j = 0; j < 3; j++) cr_assert_eq(M(m, "fc1.bias")[j], j == 1 ? 0.0f : 1.0f, "neuron %d (norms 1.0, 0.2, 0.7)", j);
    rf_model *s = NULL;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(numel(s, "fc2.weight"), 4);
    for (int o = 0; o < 2; o++) {
        cr_assert_eq(P(s, "fc2.weight")[o * 2], P(m, "fc2.weight")[o * 3]);
        cr_assert_eq(P(s, "fc2.weight")[o * 2 + 1], P(m, "fc2.weight")[o * 3 + 2]);
    }
    rf_model_free(s);
    rf_model_free(m);
}

/* A transformer block's MLP features (fc1 rows, fc1 bias, fc2 columns):
 * neuron_l1 by the L1 norm of fc1's rows, sliced to a smaller "mlp". */
Test(struct_methods, neuron_l1_transformer_mlp) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "vit-tiny", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 9), RF_OK);
    /* blocks.0: feature j's row of fc1 scaled by (j + 1), so the lowest 64 of 256 are features 0..63 */
    const rf_param *f1 = rf_model_param(m, "blocks.0.mlp.fc1.weight");
    for (int j = 0; j < 256; j++)
        for (int k = 0; k < 64; k++) m->params[f1->offset + (size_t)j * 64 + k] = (k % 2 ? 1.0f : -1.0f) * (float)(j + 1) * 1e-3f;
    rf_prune_cfg c = cfg_of("neuron_l1", 0.25, RF_SCOPE_LAYER);
    c.layers = "blocks.*";
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int j = 0; j < 256; j++) cr_assert_eq(M(m, "blocks.0.mlp.fc1.bias")[j], j < 64 ? 0.0f : 1.0f, "feature %d", j);
    rf_model *s = NULL;
    long removed = 0;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, &removed), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(removed, 4 * 64);
    cr_assert_eq(s->layers[1].ip[1], 192);
    cr_assert_eq(numel(s, "blocks.0.mlp.fc2.weight"), (size_t)64 * 192);
    for (int o = 0; o < 64; o++)
        cr_assert_eq(P(s, "blocks.0.mlp.fc2.weight")[o * 192], P(m, "blocks.0.mlp.fc2.weight")[o * 256 + 64]);
    float *x = randn(3 * in_numel(m), 12);
    cr_assert_lt(logits_diff(m, s, x, 3), 1e-5);
    free(x);
    rf_model_free(s);
    rf_model_free(m);
}

/* N tokens of a hand [4, 8] dataset with 3 classes (new; rf_dataset_free). */
static rf_dataset *token_data(int n) {
    rf_dataset *d = calloc(1, sizeof *d);
    d->x = randn((size_t)n * 32, 11);
    d->y = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) d->y[i] = (i * 7) % 3;
    d->n = n; d->c = 1; d->h = 4; d->w = 8; d->n_classes = 3;
    snprintf(d->name, sizeof d->name, "hand");
    return d;
}

/* Head importance against finite differences of a gate: scaling head h's
 * columns of proj by (1 ± ε) is ξ_h = 1 ± ε, so |L(+) − L(−)| / 2ε is
 * |∂L/∂ξ_h| on the one batch that holds every sample (batch = N). */
Test(struct_methods, head_importance_against_gate_differences) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    const char *spec = "{\"input\":[4,8],\"init\":\"pytorch\",\"layers\":[{\"type\":\"transformer\",\"name\":\"blk\",\"heads\":4,\"mlp\":16},"
                       "{\"type\":\"mean_pool\"},{\"type\":\"linear\",\"name\":\"head\",\"out\":3}]}";
    rf_model *m = build(spec);
    enum { N = 32 };
    rf_dataset *d = token_data(N);
    const rf_param *proj = rf_model_param(m, "blk.attn.proj.weight");
    cr_assert_not_null(proj);
    double imp[4];
    const float eps = 1e-2f;
    for (int h = 0; h < 4; h++) {
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            rf_model *c = NULL;
            cr_assert_eq(rf_model_clone(&ctx, m, &c), RF_OK);
            for (int o = 0; o < 8; o++)
                for (int j = 2 * h; j < 2 * h + 2; j++) c->params[proj->offset + o * 8 + j] *= sgn ? 1 - eps : 1 + eps;
            double acc;
            cr_assert_eq(rf_evaluate(&ctx, c, d, N, &acc, &L[sgn]), RF_OK);
            rf_model_free(c);
        }
        imp[h] = fabs(L[0] - L[1]) / (2 * eps);
    }
    int lo1 = 0;
    for (int h = 1; h < 4; h++) if (imp[h] < imp[lo1]) lo1 = h;
    int lo2 = lo1 == 0 ? 1 : 0;
    for (int h = 0; h < 4; h++) if (h != lo1 && imp[h] < imp[lo2]) lo2 = h;
    for (int h = 0; h < 4; h++)
        if (h != lo1 && h != lo2) cr_assert_gt(imp[h], 1.05 * imp[lo2], "heads %d and %d too close to tell apart", h, lo2);
    rf_prune_cfg c = cfg_of("head", 0.5, RF_SCOPE_LAYER);
    c.batches = 1;
    c.batch = N;
    cr_assert_eq(rf_prune_model(&ctx, m, &c, d), RF_OK, "%s", rf_ctx_error(&ctx));
    const float *qkv = M(m, "blk.attn.qkv.weight"), *pm = M(m, "blk.attn.proj.weight"), *qb = M(m, "blk.attn.qkv.bias");
    for (int h = 0; h < 4; h++) {
        float want = h == lo1 || h == lo2 ? 0.0f : 1.0f;
        for (int part = 0; part < 3; part++)
            for (int r = part * 8 + 2 * h; r < part * 8 + 2 * h + 2; r++) {
                cr_assert_eq(qb[r], want, "head %d (importance %g; lowest %d, %d)", h, imp[h], lo1, lo2);
                for (int k = 0; k < 8; k++) cr_assert_eq(qkv[r * 8 + k], want);
            }
        for (int o = 0; o < 8; o++) cr_assert_eq(pm[o * 8 + 2 * h], want);
    }
    rf_dataset_free(d);
    rf_model_free(m);
}

/* ---- every method through a checkpoint file ------------------------------------
 * Saved and loaded back: the same tensors (names, shapes: the sliced spec
 * comes back), values, weight masks and bit-identical logits. */
static void round_trip(rf_model *s, int batch) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    char path[] = "/tmp/raffle_struct_rt_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(rf_model_save(&ctx, s, NULL, path), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *r = NULL;
    cr_assert_eq(rf_model_load(&ctx, path, &r), RF_OK, "%s", rf_ctx_error(&ctx));
    unlink(path);
    cr_assert_eq(r->n_params, s->n_params);
    cr_assert_eq(r->n_ptensors, s->n_ptensors);
    for (int t = 0; t < s->n_ptensors; t++) {
        cr_assert_str_eq(r->ptensors[t].name, s->ptensors[t].name);
        cr_assert_eq(r->ptensors[t].numel, s->ptensors[t].numel, "%s", s->ptensors[t].name);
    }
    for (size_t k = 0; k < s->n_params; k++) cr_assert_eq(r->params[k], s->params[k], "parameter %zu", k);
    /* weights' masks are stored (biases' are not: docs/pruning.md, "Heads are masked") */
    cr_assert_eq(!r->masks, !s->masks, "masks saved and loaded alike");
    for (int t = 0; s->masks && t < s->n_ptensors; t++)
        if (s->ptensors[t].prunable)
            for (size_t k = s->ptensors[t].offset; k < s->ptensors[t].offset + s->ptensors[t].numel; k++)
                cr_assert_eq(r->masks[k] == 0.0f, s->masks[k] == 0.0f, "%s: mask %zu", s->ptensors[t].name, k);
    float *x = randn((size_t)batch * in_numel(s), 31);
    cr_assert_eq(logits_diff(s, r, x, batch), 0.0);
    free(x);
    rf_model_free(r);
}

Test(struct_methods, resnet20_masked_equals_sliced_and_round_trips) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "resnet-20", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 3), RF_OK);
    random_stats(m);
    rf_prune_cfg c = cfg_of("filter_l1", 0.3, RF_SCOPE_GLOBAL);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *s = NULL;
    long removed = 0;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, &removed), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_gt(removed, 0);
    cr_assert_lt(rf_model_flops(s), 0.9 * rf_model_flops(m));
    cr_assert_lt(s->n_params, m->n_params);
    float *x = randn(4 * in_numel(m), 4);
    cr_assert_lt(logits_diff(m, s, x, 4), 1e-5);
    round_trip(s, 4);   /* an ordinary checkpoint: the sliced spec and weights come back */
    free(x);
    rf_model_free(s);
    rf_model_free(m);
}

/* ---- rejections ------------------------------------------------------------------ */
Test(struct_reject, unsliceable_layers_are_named) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "conv-2", &m), RF_OK);
    rf_prune_cfg c = cfg_of("neuron_l1", 0.5, RF_SCOPE_LAYER);
    c.layers = "fc3";
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_ERR_INVALID);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "cannot slice layer 'fc3' (linear): its outputs are the model's logits"), "%s",
                       rf_ctx_error(&ctx));
    c = cfg_of("filter_l1", 0.5, RF_SCOPE_LAYER);
    c.layers = "fc1";
    cr_assert_eq(rf_prune_struct_check(&ctx, m, &c), RF_ERR_INVALID);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "layer 'fc1' is linear"), "%s", rf_ctx_error(&ctx));
    rf_model_free(m);
    cr_assert_eq(rf_model_create(&ctx, "vit-tiny", &m), RF_OK);
    c = cfg_of("filter_l1", 0.5, RF_SCOPE_LAYER);   /* its one conv is the patch embedding */
    cr_assert_eq(rf_prune_struct_check(&ctx, m, &c), RF_ERR_INVALID);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "no layer can be sliced"), "%s", rf_ctx_error(&ctx));
    c.layers = "patch_embed";
    cr_assert_eq(rf_prune_struct_check(&ctx, m, &c), RF_ERR_INVALID);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "the slicer does not narrow patch_embed layers"), "%s", rf_ctx_error(&ctx));
    rf_model_free(m);
}

/* A job with one prune experiment on `model` is refused at validation with
 * `want` (and the experiment's path) in one line. */
static void job_refused(const char *model, const char *experiment, const char *want) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    char job[512];
    snprintf(job, sizeof job, "{\"name\":\"x\",\"dataset\":\"synthetic\",\"model\":\"%s\",\"train\":{\"iterations\":1},"
             "\"experiments\":[{\"kind\":\"prune\",%s}]}", model, experiment);
    rf_job *j = NULL;
    cr_assert_neq(rf_job_parse(&ctx, job, strlen(job), NULL, &j), RF_OK, "%s", job);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "experiments[0]"), "%s", rf_ctx_error(&ctx));
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), want), "%s", rf_ctx_error(&ctx));
    cr_assert_null(strchr(rf_ctx_error(&ctx), '\n'), "not one line: %s", rf_ctx_error(&ctx));
}

Test(struct_reject, at_validate_time) {
    job_refused("conv-2", "\"method\":\"neuron_l1\",\"sparsity\":0.5,\"layers\":\"fc3\"", "'fc3'");
    job_refused("lenet-300-100", "\"method\":\"magnitude\",\"sparsity\":0.5,\"nm\":\"4:2\"", "N > M");
    job_refused("lenet-300-100", "\"method\":\"head\",\"sparsity\":0.5,\"layers\":\"fc1\"", "layer 'fc1' (linear) has none");
}

static rf_status run_prune(const char *json, rf_ctx *ctx) {
    cJSON *s = cJSON_Parse(json), *metrics = cJSON_CreateObject();
    cr_assert_not_null(s);
    char dir[] = "/tmp/raffle_structrun_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    rf_task_io io = {.settings = s, .out_dir = dir};
    rf_status st = rf_task_run(ctx, &io, metrics);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cJSON_Delete(s);
    cJSON_Delete(metrics);
    return st;
}

Test(struct_reject, nm_settings) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    const char *base = "{\"kind\":\"prune\",\"data\":\"synthetic:64\",\"model\":\"lenet-300-100\",\"finetune_iterations\":0,"
                       "\"finetune_epochs\":0,\"method\":\"%s\",\"sparsity\":%s,\"nm\":\"%s\"}";
    struct { const char *method, *sparsity, *nm, *msg; } bad[] = {
        {"magnitude", "0.5", "4:2", "N > M"},
        {"magnitude", "0.5", "2-4", "expected \"N:M\""},
        {"magnitude", "0.6", "2:5", "does not divide the row length 784"},
        {"magnitude", "0.9", "2:4", "contradicts"},
        {"neuron_l1", "0.5", "2:4", "does not score single weights"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, base, bad[i].method, bad[i].sparsity, bad[i].nm);
        cr_assert_eq(run_prune(json, &ctx), RF_ERR_INVALID, "case %zu", i);
        cr_assert_not_null(strstr(rf_ctx_error(&ctx), bad[i].msg), "case %zu: %s", i, rf_ctx_error(&ctx));
    }
}

Test(struct_reject, bn_l1_bounds_and_no_batch_norm) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_train_cfg tc;
    const char *bad[] = {"{\"bn_l1\":-1e-5}", "{\"bn_l1\":0.5}", "{\"bn_l1\":\"x\"}"};
    for (size_t i = 0; i < 3; i++) {
        cJSON *s = cJSON_Parse(bad[i]);
        cr_assert_eq(rf_task_train_cfg(&ctx, s, &tc), RF_ERR_INVALID, "%s", bad[i]);
        cr_assert_not_null(strstr(rf_ctx_error(&ctx), "bn_l1"), "%s", rf_ctx_error(&ctx));
        cJSON_Delete(s);
    }
    rf_model *m = build(CHAIN);
    cr_assert_eq(rf_model_bn_l1(&ctx, m, 1e-4f), RF_ERR_INVALID);
    rf_model_free(m);
}

/* ---- network slimming's penalty, FLOPs ------------------------------------------ */
Test(struct_slimming, bn_l1_subgradient) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build(BN_NET);
    const float gamma[3] = {0.9f, -0.05f, 0.0f};
    memcpy(P(m, "bn.weight"), gamma, sizeof gamma);
    rf_model_zero_grad(m);
    cr_assert_eq(rf_model_bn_l1(&ctx, m, 0.25f), RF_OK);
    const float *g = m->grads + rf_model_param(m, "bn.weight")->offset;
    cr_assert_eq(g[0], 0.25f);
    cr_assert_eq(g[1], -0.25f);
    cr_assert_eq(g[2], 0.0f);
    for (size_t k = 0; k < numel(m, "bn.bias"); k++) cr_assert_eq(m->grads[rf_model_param(m, "bn.bias")->offset + k], 0.0f);
    rf_model_free(m);
}

Test(struct_flops, by_hand) {
    rf_model *m = build("{\"input\":[1,4,4],\"layers\":[{\"type\":\"conv2d\",\"out\":2,\"kernel\":3,\"padding\":1},"
                        "{\"type\":\"relu\"},{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3}]}");
    cr_assert_eq(rf_model_flops(m), 2.0 * 9 * 16 + 32 * 3);   /* 16 positions x 2x1x3x3, then 3x32 */
    rf_model_free(m);
    m = build("{\"input\":[5,8],\"layers\":[{\"type\":\"transformer\",\"heads\":2,\"mlp\":16},{\"type\":\"mean_pool\"},"
              "{\"type\":\"linear\",\"out\":3}]}");
    /* 5 tokens x (qkv 24x8 + proj 8x8 + fc1 16x8 + fc2 8x16) + q·kᵀ and att·v 2x5x5x8 + head 3x8 */
    cr_assert_eq(rf_model_flops(m), 5.0 * (192 + 64 + 128 + 128) + 2 * 5 * 5 * 8 + 24);
    rf_model_free(m);
}

/* ---- N:M ------------------------------------------------------------------------ */
Test(struct_nm, magnitude_2_4_by_hand_and_checkpoint) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build("{\"input\":[8],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":2}]}");
    const float w[16] = {0.1f, -0.4f, 0.3f, 0.2f, 1, 1, -1, 0.5f, 0.0f, 0.0f, 0.0f, -0.01f, 5, -6, 7, -8};
    memcpy(P(m, "fc.weight"), w, sizeof w);
    rf_prune_cfg c = cfg_of("magnitude", 0.5, RF_SCOPE_GLOBAL);
    c.nm_n = 2;
    c.nm_m = 4;
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    /* per group of 4: the two largest |w|, ties to the lower index */
    const float want[16] = {0, 1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1};
    for (int i = 0; i < 16; i++) cr_assert_eq(M(m, "fc.weight")[i], want[i], "weight %d", i);
    cr_assert_eq(rf_model_param(m, "fc.weight")->nm_n, 2);
    cr_assert_eq(rf_model_param(m, "fc.weight")->nm_m, 4);
    rf_ckpt *ck = NULL;
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &ck), RF_OK);
    cr_assert_eq(rf_ckpt_find(ck, "fc.weight")->storage, RF_STORE_NM);
    unsigned char *buf;
    size_t n;
    cr_assert_eq(rf_ckpt_encode(&ctx, ck, &buf, &n), RF_OK);
    rf_ckpt *back = NULL;
    cr_assert_eq(rf_ckpt_decode(&ctx, buf, n, &back), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *r = NULL;
    cr_assert_eq(rf_model_from_ckpt(&ctx, back, &r), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_param(r, "fc.weight")->nm_n, 2);
    for (int i = 0; i < 16; i++) {
        cr_assert_eq(M(r, "fc.weight")[i], want[i]);
        cr_assert_eq(P(r, "fc.weight")[i], want[i] ? w[i] : 0.0f);
    }
    rf_free(buf);
    rf_ckpt_free(back);
    rf_ckpt_free(ck);
    rf_model_free(r);
    /* a weight pruned before stays pruned: its group keeps one, and the tensor is no longer exactly 2:4 */
    rf_model_free(m);
    m = build("{\"input\":[8],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":2}]}");
    memcpy(P(m, "fc.weight"), w, sizeof w);
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    M(m, "fc.weight")[14] = 0.0f;
    M(m, "fc.weight")[15] = 0.0f;
    M(m, "fc.weight")[13] = 0.0f;
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(M(m, "fc.weight")[12], 1.0f);
    cr_assert_eq(rf_model_param(m, "fc.weight")->nm_n, 0);
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &ck), RF_OK);
    cr_assert_eq(rf_ckpt_find(ck, "fc.weight")->storage, RF_STORE_SPARSE);
    rf_ckpt_free(ck);
    rf_model_free(m);
}

Test(struct_nm, gradual_through_4_3_2) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build("{\"input\":[16],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":4}]}");
    rf_prune_cfg c = cfg_of("magnitude", 0, RF_SCOPE_GLOBAL);
    c.nm_n = 2;
    c.nm_m = 4;
    rf_gmp g;
    rf_gmp_schedule sc = {0.0, 0.5, 0, 2, 1};
    cr_assert_eq(rf_gmp_init(&ctx, &g, &c, &sc), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    /* s_0 = 0 (4:4), s_1 = 0.5 - 0.5·(1/2)³ = 0.4375 -> N = 4 - floor(1.75) = 3, s_2 = 0.5 -> 2 */
    const int keep[3] = {4, 3, 2};
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(rf_gmp_apply(&g, m, step), RF_OK, "%s", rf_ctx_error(&ctx));
        for (int grp = 0; grp < 16; grp++) {
            int k = 0;
            for (int j = 0; j < 4; j++) k += M(m, "fc.weight")[grp * 4 + j] != 0.0f;
            cr_assert_eq(k, keep[step], "step %d group %d", step, grp);
        }
    }
    cr_assert_eq(rf_model_param(m, "fc.weight")->nm_n, 2);
    sc.s_final = 0.75;
    cr_assert_eq(rf_gmp_init(&ctx, &g, &c, &sc), RF_ERR_INVALID);
    rf_model_free(m);
}

/* A 2:4 model deployed: its layer runs the N:M kernel, with the logits of
 * the dense product; a 3:6 mask, whose M the kernel cannot take (6 does
 * not divide its 16-column chunks), falls back to the unstructured kernel. */
Test(struct_nm, deployed_on_the_nm_kernel) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    for (int kcase = 0; kcase < 2; kcase++) {
        int K = kcase ? 24 : 64;
        char spec[200];
        snprintf(spec, sizeof spec, "{\"input\":[%d],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":16}]}", K);
        rf_model *m = build(spec);
        rf_prune_cfg c = cfg_of("magnitude", 0.5, RF_SCOPE_GLOBAL);
        c.nm_n = kcase ? 3 : 2;
        c.nm_m = kcase ? 6 : 4;
        cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(rf_model_param(m, "fc.weight")->nm_m, c.nm_m);
        rf_model *ref = NULL;
        cr_assert_eq(rf_model_clone(&ctx, m, &ref), RF_OK);
        rf_deploy_opts o;
        rf_deploy_opts_default(&o);
        o.mode = RF_DEPLOY_SPARSE;
        o.batch = 4;
        rf_deploy_layer info[2];
        int ni = 0;
        cr_assert_eq(rf_deploy_model(&ctx, m, &o, info, 2, &ni), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(ni, 1);
        cr_assert_eq(info[0].nm, kcase == 0, "K = %d", K);
        float *x = randn(4 * (size_t)K, 21);
        cr_assert_lt(logits_diff(ref, m, x, 4), 1e-5);
        free(x);
        rf_deploy_release(m);
        rf_model_free(ref);
        rf_model_free(m);
    }
}

/* ---- the sliced model in PyTorch ----------------------------------------------
 * Exported to safetensors, rebuilt by tests/unit/struct_ref.py from the
 * spec in the file's metadata and the tensors' shapes (PyTorch 1.13,
 * /usr/bin/python3), strictly loaded, and run: the same logits. ResNet-20
 * (option-A shortcuts with a moved front) and conv-2 (flatten into fc1). */
#define PY "/usr/bin/python3"
#define STRUCT_REF "tests/unit/struct_ref.py"

static void torch_roundtrip(const char *preset, const char *method, double rate) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, preset, &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 5), RF_OK);
    random_stats(m);
    rf_prune_cfg c = cfg_of(method, rate, RF_SCOPE_GLOBAL);
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *s = NULL;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model_free(m);
    char dir[] = "/tmp/raffle_struct_torch_XXXXXX", path[256], cmd[512];
    cr_assert_not_null(mkdtemp(dir));
    rf_ckpt *ck;
    unsigned char *buf;
    size_t len;
    cr_assert_eq(rf_model_to_ckpt(&ctx, s, NULL, &ck), RF_OK);
    cr_assert_eq(rf_ckpt_to_safetensors(&ctx, ck, &buf, &len), RF_OK, "%s", rf_ctx_error(&ctx));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(rf_write_file_atomic(&ctx, path, buf, len), RF_OK);
    enum { B = 3 };
    float *x = randn(B * in_numel(s), 6);
    snprintf(path, sizeof path, "%s/x.bin", dir);
    cr_assert_eq(rf_write_file_atomic(&ctx, path, x, B * in_numel(s) * sizeof(float)), RF_OK);
    char shape[96];
    int sl = snprintf(shape, sizeof shape, "[%d, %d, %d, %d]", B, s->input.d[0], s->input.d[1], s->input.d[2]);
    snprintf(path, sizeof path, "%s/x.json", dir);
    cr_assert_eq(rf_write_file_atomic(&ctx, path, shape, (size_t)sl), RF_OK);
    snprintf(cmd, sizeof cmd, PY " " STRUCT_REF " %s", dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, s, x, B, 0, &y), RF_OK);
    snprintf(path, sizeof path, "%s/logits_torch.bin", dir);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    float t[B * 10];
    cr_assert_eq(fread(t, sizeof(float), B * 10, f), (size_t)B * 10);
    fclose(f);
    double d = 0, big = 1;
    for (int i = 0; i < B * 10; i++) { d = fmax(d, fabs((double)t[i] - y[i])); big = fmax(big, fabs(y[i])); }
    cr_expect_lt(d / big, 1e-5, "%s %s: PyTorch and raffle logits differ by %.3g (largest %.3g)", preset, method, d, big);
    cr_log_info("%s %s sliced: PyTorch vs raffle logits max |diff| %.2e (largest |logit| %.2f)", preset, method, d, big);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
    free(x);
    rf_free(buf);
    rf_ckpt_free(ck);
    rf_model_free(s);
}

Test(struct_torch, sliced_models_load_in_pytorch, .timeout = 180) {
    if (system(PY " -c 'import torch' >/dev/null 2>&1") != 0) cr_skip_test("PyTorch missing for " PY " (apt-get install python3-torch)");
    torch_roundtrip("resnet-20", "filter_l1", 0.3);
    torch_roundtrip("conv-2", "filter_l1", 0.4);
    torch_roundtrip("resnet-20", "slimming", 0.5);
}

/* The prune task with a structured method: pruned, sliced, fine-tuned, saved
 * small, with the before/after record. */
Test(struct_task, prune_task_slices_and_records) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cJSON *s = cJSON_Parse("{\"kind\":\"prune\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"method\":\"neuron_l1\","
                           "\"sparsity\":0.5,\"scope\":\"layer\",\"finetune_iterations\":3,\"batch\":32,\"eval_limit\":64}");
    cJSON *metrics = cJSON_CreateObject();
    char dir[] = "/tmp/raffle_structtask_XXXXXX", path[128], cmd[160];
    cr_assert_not_null(mkdtemp(dir));
    rf_task_io io = {.settings = s, .out_dir = dir};
    cr_assert_eq(rf_task_run(&ctx, &io, metrics), RF_OK, "%s", rf_ctx_error(&ctx));
    /* fc1 300 -> 150, fc2 100 -> 50: 784·150 + 150 + 150·50 + 50 + 50·10 + 10 */
    const double want = 784.0 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10;
    const cJSON *timing = cJSON_GetObjectItemCaseSensitive(metrics, "timing");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(metrics, "parameters")->valuedouble, want);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(metrics, "parameters_before")->valuedouble, 266610.0);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(metrics, "units_removed")->valuedouble, 200.0);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(metrics, "flops")->valuedouble, 784.0 * 150 + 150 * 50 + 50 * 10);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(metrics, "flops_before")->valuedouble, 784.0 * 300 + 300 * 100 + 100 * 10);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(metrics, "finetune_steps")->valuedouble, 3.0);
    const cJSON *before = cJSON_GetObjectItemCaseSensitive(metrics, "dense_latency_before_ms");
    if (!before && timing) before = cJSON_GetObjectItemCaseSensitive(timing, "dense_latency_before_ms");
    cr_assert(cJSON_IsNumber(before) && before->valuedouble > 0);
    snprintf(path, sizeof path, "%s/model.rckpt", dir);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_load(&ctx, path, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq((double)m->n_params, want);
    cr_assert_null(m->masks, "a sliced model with nothing left masked is saved dense");
    rf_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    cJSON_Delete(metrics);
    cJSON_Delete(s);
}

/* Gradual N:M through a job's task: the OFA sparse stage with nm "2:4"
 * ends with every pruned tensor exactly 2:4, stored in the N:M kind. */
Test(struct_nm, gradual_in_the_ofa_sparse_task) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    char dir[] = "/tmp/raffle_structofa_XXXXXX", path[160], parent[160], cmd[200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(parent, sizeof parent, "%s/dense", dir);
    cr_assert_eq(mkdir(parent, 0700), 0);
    cJSON *s = cJSON_Parse("{\"kind\":\"train\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"iterations\":4,\"batch\":32,\"eval_limit\":32}");
    cJSON *metrics = cJSON_CreateObject();
    rf_task_io io = {.settings = s, .out_dir = parent};
    cr_assert_eq(rf_task_run(&ctx, &io, metrics), RF_OK, "%s", rf_ctx_error(&ctx));
    cJSON_Delete(s);
    snprintf(path, sizeof path, "%s/model.rckpt", parent);
    const char *parents[1] = {path};
    s = cJSON_Parse("{\"kind\":\"ofa-sparse\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"iterations\":20,\"batch\":32,"
                    "\"eval_limit\":32,\"sparsity\":0.5,\"nm\":\"2:4\",\"prune_every\":0.1,\"prune_end\":0.5}");
    rf_task_io io2 = {.settings = s, .out_dir = dir, .n_parents = 1, .parent_ckpts = parents};
    cr_assert_eq(rf_task_run(&ctx, &io2, metrics), RF_OK, "%s", rf_ctx_error(&ctx));
    snprintf(path, sizeof path, "%s/model.rckpt", dir);
    rf_ckpt *c = NULL;
    cr_assert_eq(rf_ckpt_read(&ctx, path, &c), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_find(c, "fc1.weight")->storage, RF_STORE_NM);
    cr_assert_eq(rf_ckpt_find(c, "fc2.weight")->storage, RF_STORE_NM);
    cr_assert_eq(rf_ckpt_find(c, "fc1.weight")->nm_n, 2);
    cr_assert_neq(rf_ckpt_find(c, "fc3.weight")->storage, RF_STORE_NM, "OFA leaves the classifier dense");
    rf_ckpt_free(c);
    cJSON_Delete(s);
    /* a sparsity that contradicts the pattern is refused */
    s = cJSON_Parse("{\"kind\":\"ofa-sparse\",\"data\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"iterations\":4,\"batch\":32,"
                    "\"sparsity\":0.9,\"nm\":\"2:4\"}");
    io2.settings = s;
    cr_assert_neq(rf_task_run(&ctx, &io2, metrics), RF_OK);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "contradicts"), "%s", rf_ctx_error(&ctx));
    cJSON_Delete(s);
    cJSON_Delete(metrics);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* "!conv1" keeps ResNet-20's stem channels, and so every residual channel
 * joined to them (stage 2's 8..23, stage 3's 24..39); the blocks' inner
 * channels are still pruned. */
Test(struct_methods, excluding_a_layer_keeps_its_groups) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "resnet-20", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 3), RF_OK);
    rf_prune_cfg c = cfg_of("filter_l1", 0.5, RF_SCOPE_LAYER);
    c.layers = "!conv1";
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    for (size_t k = 0; k < numel(m, "conv1.weight"); k++) cr_assert_eq(M(m, "conv1.weight")[k], 1.0f);
    const float *b2 = M(m, "layer2.2.bn2.weight"), *b3 = M(m, "layer3.2.bn2.weight");
    for (int u = 8; u < 24; u++) cr_assert_eq(b2[u], 1.0f, "stage-2 channel %d is a stem channel", u);
    for (int u = 24; u < 40; u++) cr_assert_eq(b3[u], 1.0f, "stage-3 channel %d is a stem channel", u);
    int cut2 = 0, inner = 0;
    for (int u = 0; u < 32; u++) cut2 += b2[u] == 0.0f;
    for (int u = 0; u < 16; u++) inner += M(m, "layer1.0.bn1.weight")[u] == 0.0f;
    cr_assert_eq(cut2, 8, "half of stage 2's own 16 channels");
    cr_assert_eq(inner, 8, "half of a block's inner channels");
    rf_model_free(m);
}

/* prune by `method` at `rate` (scope layer unless global), slice, round-trip */
static void slice_round_trip(const char *preset, const char *method, double rate, const char *layers) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL, *s = NULL;
    cr_assert_eq(rf_model_create(&ctx, preset, &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 4), RF_OK);
    random_stats(m);
    rf_prune_cfg c = cfg_of(method, rate, RF_SCOPE_LAYER);
    c.layers = layers;
    cr_assert_eq(rf_prune_model(&ctx, m, &c, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    long removed = 0;
    cr_assert_eq(rf_model_slice(&ctx, m, &s, &removed), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_gt(removed, 0, "%s %s removed nothing", preset, method);
    cr_assert_lt(s->n_params, m->n_params);
    round_trip(s, 3);
    rf_model_free(s);
    rf_model_free(m);
}

Test(struct_ckpt, sliced_models_of_every_slicing_method_round_trip) {
    slice_round_trip("resnet-20", "slimming", 0.4, NULL);
    slice_round_trip("lenet-300-100", "neuron_l1", 0.5, NULL);
    slice_round_trip("vit-tiny", "neuron_l1", 0.25, "blocks.*");   /* a smaller "mlp" in the spec */
    slice_round_trip("conv-2", "filter_l1", 0.5, NULL);
}

/* Heads are masked, not sliced: the masked heads survive the checkpoint
 * (dead q, k, v rows and proj columns) with the same logits. */
Test(struct_ckpt, masked_heads_round_trip) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = build("{\"input\":[4,8],\"init\":\"pytorch\",\"layers\":[{\"type\":\"transformer\",\"name\":\"blk\",\"heads\":4,\"mlp\":16},"
                        "{\"type\":\"mean_pool\"},{\"type\":\"linear\",\"name\":\"head\",\"out\":3}]}");
    rf_dataset *d = token_data(32);
    rf_prune_cfg c = cfg_of("head", 0.5, RF_SCOPE_LAYER);
    c.batches = 1;
    c.batch = 32;
    cr_assert_eq(rf_prune_model(&ctx, m, &c, d), RF_OK, "%s", rf_ctx_error(&ctx));
    int dead = 0;
    for (int h = 0; h < 4; h++) dead += M(m, "blk.attn.proj.weight")[2 * h] == 0.0f;
    cr_assert_eq(dead, 2);
    round_trip(m, 2);
    rf_dataset_free(d);
    rf_model_free(m);
}

/* ---- refusals: one line, naming the layer, before any work ----------------------- */
static void refused(rf_ctx *ctx, rf_status st, const char *want) {
    cr_assert_eq(st, RF_ERR_INVALID, "expected a refusal with \"%s\"", want);
    const char *e = rf_ctx_error(ctx);
    cr_assert_not_null(strstr(e, want), "%s", e);
    cr_assert_null(strchr(e, '\n'), "not one line: %s", e);
}

Test(struct_reject, every_method_on_a_layer_it_cannot_slice) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    struct { const char *preset, *method, *layers, *msg; } bad[] = {
        {"conv-2", "neuron_l1", "fc3", "neuron_l1 cannot slice layer 'fc3' (linear): its outputs are the model's logits"},
        {"conv-2", "neuron_l1", "conv1", "neuron_l1 removes linear output features; layer 'conv1' is conv2d (filter_l1 or slimming remove its channels)"},
        {"conv-2", "filter_l1", "fc1", "filter_l1 removes conv2d output channels; layer 'fc1' is linear (neuron_l1 removes its features)"},
        {"resnet-20", "filter_l1", "linear", "filter_l1 cannot slice layer 'linear' (linear): its outputs are the model's logits"},
        {"resnet-20", "slimming", "linear", "slimming cannot slice layer 'linear' (linear): its outputs are the model's logits"},
        {"vit-tiny", "filter_l1", "patch_embed", "the slicer does not narrow patch_embed layers"},
        {"vit-tiny", "filter_l1", NULL, "filter_l1: no layer can be sliced"},
        {"vit-tiny", "head", "head", "head prunes attention heads; layer 'head' (linear) has none"},
        {"lenet-300-100", "head", NULL, "head prunes attention heads; no attention or transformer layer"},
        {"lenet-300-100", "filter_l1", NULL, "filter_l1: no layer can be sliced (it removes conv2d output channels)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rf_model *m = NULL;
        cr_assert_eq(rf_model_create(&ctx, bad[i].preset, &m), RF_OK);
        rf_prune_cfg c = cfg_of(bad[i].method, 0.5, RF_SCOPE_LAYER);
        c.layers = bad[i].layers;
        refused(&ctx, rf_prune_struct_check(&ctx, m, &c), bad[i].msg);
        rf_model_free(m);
    }
    /* what the checks accept */
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "vit-tiny", &m), RF_OK);
    rf_prune_cfg c = cfg_of("head", 0.5, RF_SCOPE_LAYER);
    c.layers = "blocks.1";
    cr_assert_eq(rf_prune_struct_check(&ctx, m, &c), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model_free(m);
}

/* The prune task refuses head on a model without attention when it prunes,
 * before fine-tuning. */
Test(struct_reject, head_in_the_task) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    refused(&ctx, run_prune("{\"kind\":\"prune\",\"data\":\"synthetic:64\",\"model\":\"lenet-300-100\",\"finetune_iterations\":0,"
                            "\"method\":\"head\",\"sparsity\":0.5}", &ctx),
            "no attention or transformer layer");
}
