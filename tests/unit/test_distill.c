/* Distillation: the loss hook against a hand-computed loss and gradient and
 * against finite differences, teacher ensembles, the per-index logit cache,
 * hidden-state distillation's gradient through the activation hook (finite
 * differences on student parameters), and the OFA GMP schedule. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "raffle/distill.h"
#include "raffle/task.h"

static const char *MLP_A =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},"
    "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":24},{\"type\":\"tanh\"},{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}";
static const char *MLP_B =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},"
    "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":16},{\"type\":\"relu\"},{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}";
/* transformer student (width 16, one block) and teacher (width 24, two blocks) */
static const char *VIT_S =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":["
    "{\"type\":\"patch_embed\",\"name\":\"patch_embed\",\"patch\":7,\"dim\":16,\"cls\":1,\"pos\":1},"
    "{\"type\":\"transformer\",\"name\":\"blocks.0\",\"heads\":2,\"mlp\":32,\"eps\":1e-6},"
    "{\"type\":\"layernorm\",\"name\":\"norm\",\"eps\":1e-6},{\"type\":\"cls_pool\"},"
    "{\"type\":\"linear\",\"name\":\"head\",\"out\":10}]}";
static const char *VIT_T =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":["
    "{\"type\":\"patch_embed\",\"name\":\"patch_embed\",\"patch\":7,\"dim\":24,\"cls\":1,\"pos\":1},"
    "{\"type\":\"transformer\",\"name\":\"blocks.0\",\"heads\":2,\"mlp\":32,\"eps\":1e-6},"
    "{\"type\":\"transformer\",\"name\":\"blocks.1\",\"heads\":2,\"mlp\":32,\"eps\":1e-6},"
    "{\"type\":\"layernorm\",\"name\":\"norm\",\"eps\":1e-6},{\"type\":\"cls_pool\"},"
    "{\"type\":\"linear\",\"name\":\"head\",\"out\":10}]}";

static rf_dataset *g_train, *g_test;

static void load_data(void) {
    if (g_train) return;
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_data_load(&ctx, "synthetic:400:3", &g_train, &g_test), RF_OK, "%s", rf_ctx_error(&ctx));
}

static rf_model *make(const char *spec, uint64_t seed) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, seed), RF_OK);
    return m;
}

/* Hinton et al. 2015 by hand, in double: α·T²·KL(p_t^T ‖ p_s^T) + (1−α)·CE,
 * mean over the batch; gradient α·T·(p_s^T − p_t^T)/B + (1−α)(p_s − y)/B. */
static double ref_loss(const float *s, const float *t, const int32_t *y, int B, int K, double T, double a, double *g) {
    double L = 0;
    for (int b = 0; b < B; b++) {
        double ms = -1e300, mt = -1e300, m1 = -1e300;
        for (int k = 0; k < K; k++) { ms = fmax(ms, s[b*K+k] / T); mt = fmax(mt, t[b*K+k] / T); m1 = fmax(m1, s[b*K+k]); }
        double zs = 0, zt = 0, z1 = 0;
        for (int k = 0; k < K; k++) { zs += exp(s[b*K+k] / T - ms); zt += exp(t[b*K+k] / T - mt); z1 += exp(s[b*K+k] - m1); }
        for (int k = 0; k < K; k++) {
            double ps = exp(s[b*K+k] / T - ms) / zs, pt = exp(t[b*K+k] / T - mt) / zt, p1 = exp(s[b*K+k] - m1) / z1;
            L += a * T * T * pt * (log(pt) - log(ps)) / B;
            if (k == y[b]) L += (1 - a) * -log(p1) / B;
            g[b*K+k] = a * T * (ps - pt) / B + (1 - a) * (p1 - (k == y[b])) / B;
        }
    }
    return L;
}

Test(distill, loss_hook_matches_hand_computed_and_finite_differences) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    load_data();
    rf_model *t = make(MLP_A, 1), *s = make(MLP_B, 2);
    rf_teacher *te;
    cr_assert_eq(rf_teacher_from_models(&ctx, &t, 1, &te), RF_OK);
    rf_distill_cfg dc;
    rf_distill_cfg_default(&dc);
    dc.T = 3.0f; dc.alpha = 0.7f;
    rf_distill *d;
    cr_assert_eq(rf_distill_new(&ctx, te, s, &dc, &d), RF_OK, "%s", rf_ctx_error(&ctx));
    enum { B = 8, K = 10 };
    const float *lg;
    float tl[B * K], sl[B * K], dl[B * K], loss;
    cr_assert_eq(rf_model_forward(&ctx, t, g_train->x, B, 0, &lg), RF_OK);
    memcpy(tl, lg, sizeof tl);
    cr_assert_eq(rf_model_forward(&ctx, s, g_train->x, B, 1, &lg), RF_OK);
    memcpy(sl, lg, sizeof sl);
    cr_assert_eq(rf_distill_loss(d, s, g_train->x, sl, g_train->y, NULL, B, dl, &loss), RF_OK, "%s", rf_ctx_error(&ctx));
    double g[B * K];
    double L = ref_loss(sl, tl, g_train->y, B, K, 3.0, 0.7, g);
    cr_assert_float_eq(loss, L, 1e-4 * fabs(L) + 1e-5, "hook %g vs hand %g", loss, L);
    for (int i = 0; i < B * K; i++) cr_assert_float_eq(dl[i], g[i], 1e-5, "dlogit %d: %g vs %g", i, dl[i], g[i]);
    /* central differences of the hook's loss in its student logits */
    for (int i = 0; i < B * K; i += 7) {
        float p[B * K], dd[B * K], lp, lm;
        const float h = 1e-2f;
        memcpy(p, sl, sizeof p); p[i] += h;
        cr_assert_eq(rf_distill_loss(d, s, g_train->x, p, g_train->y, NULL, B, dd, &lp), RF_OK);
        memcpy(p, sl, sizeof p); p[i] -= h;
        cr_assert_eq(rf_distill_loss(d, s, g_train->x, p, g_train->y, NULL, B, dd, &lm), RF_OK);
        double fd = ((double)lp - lm) / (2.0 * h);
        cr_assert_float_eq(fd, dl[i], 2e-3 + 2e-2 * fabs(dl[i]), "logit %d: fd %g vs %g", i, fd, dl[i]);
    }
    rf_distill_free(d, s);
    rf_teacher_free(te);
    rf_model_free(t); rf_model_free(s);
}

Test(distill, ensemble_averages_logits_and_cache_is_indexed_by_sample) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    load_data();
    rf_model *ms[2] = { make(MLP_A, 5), make(MLP_B, 6) };
    rf_teacher *te;
    cr_assert_eq(rf_teacher_from_models(&ctx, ms, 2, &te), RF_OK);
    cr_assert_eq(rf_teacher_size(te), 2);
    enum { B = 16, K = 10 };
    float a[B * K], b[B * K], e[B * K], c[B * K];
    const float *lg;
    cr_assert_eq(rf_model_forward(&ctx, ms[0], g_train->x, B, 0, &lg), RF_OK);
    memcpy(a, lg, sizeof a);
    cr_assert_eq(rf_model_forward(&ctx, ms[1], g_train->x, B, 0, &lg), RF_OK);
    memcpy(b, lg, sizeof b);
    cr_assert_eq(rf_teacher_logits(&ctx, te, g_train->x, NULL, B, e), RF_OK);
    for (int i = 0; i < B * K; i++) cr_assert_float_eq(e[i], 0.5f * (a[i] + b[i]), 1e-5);
    /* cache: the logits of sample idx[j] wherever it sits in the batch */
    cr_assert_eq(rf_teacher_cache(&ctx, te, g_train, 64), RF_OK, "%s", rf_ctx_error(&ctx));
    int64_t idx[B];
    float xb[B * 784];
    for (int j = 0; j < B; j++) {
        idx[j] = (int64_t)((j * 37 + 11) % g_train->n);
        memcpy(xb + (size_t)j * 784, g_train->x + (size_t)idx[j] * 784, 784 * sizeof(float));
    }
    cr_assert_eq(rf_teacher_logits(&ctx, te, xb, idx, B, c), RF_OK);
    cr_assert_eq(rf_teacher_logits(&ctx, te, xb, NULL, B, e), RF_OK);   /* live forward of the same batch */
    for (int i = 0; i < B * K; i++) cr_assert_float_eq(c[i], e[i], 1e-4, "cached %g vs live %g at %d", c[i], e[i], i);
    idx[3] = g_train->n;   /* out of range */
    cr_assert_eq(rf_teacher_logits(&ctx, te, xb, idx, B, c), RF_ERR_INVALID);
    rf_teacher_free(te);
    rf_model_free(ms[0]); rf_model_free(ms[1]);
}

Test(distill, rejects_bad_settings_and_mismatched_teachers) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *t = make(MLP_A, 1), *s = make(MLP_B, 2);
    rf_model *t3;
    cr_assert_eq(rf_model_from_spec(&ctx, "{\"input\":[1,28,28],\"classes\":3,\"layers\":[{\"type\":\"flatten\"},"
                                          "{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}", &t3), RF_OK);
    rf_teacher *te;
    rf_model *pair[2] = { t, t3 };
    cr_assert_eq(rf_teacher_from_models(&ctx, pair, 2, &te), RF_ERR_SHAPE);
    cr_assert_eq(rf_teacher_from_models(&ctx, pair, 0, &te), RF_ERR_INVALID);
    cr_assert_eq(rf_teacher_from_models(&ctx, &t3, 1, &te), RF_OK);
    rf_distill_cfg dc;
    rf_distill_cfg_default(&dc);
    rf_distill *d;
    cr_assert_eq(rf_distill_new(&ctx, te, s, &dc, &d), RF_ERR_SHAPE);   /* 3 vs 10 classes */
    rf_teacher_free(te);
    cr_assert_eq(rf_teacher_from_models(&ctx, &t, 1, &te), RF_OK);
    dc.T = 0.0f;
    cr_assert_eq(rf_distill_new(&ctx, te, s, &dc, &d), RF_ERR_INVALID);
    rf_distill_cfg_default(&dc);
    cr_assert_eq(rf_distill_pairs_default(&ctx, s, t, &dc), RF_ERR_INVALID);   /* no transformer blocks */
    cJSON *js = cJSON_Parse("{\"temperature\":-1}");
    cr_assert_eq(rf_distill_cfg_from_json(&ctx, js, &dc), RF_ERR_INVALID);
    cJSON_Delete(js);
    js = cJSON_Parse("{\"temperature\":20,\"alpha\":0.25}");
    cr_assert_eq(rf_distill_cfg_from_json(&ctx, js, &dc), RF_OK);
    cr_assert_eq(dc.T, 20.0f);
    cr_assert_eq(dc.alpha, 0.25f);
    cJSON_Delete(js);
    rf_teacher_free(te);
    rf_model_free(t); rf_model_free(s); rf_model_free(t3);
}

/* Total loss (soft targets + hidden-state MSE) of the student at its current
 * params, with the projection frozen (proj_lr 0). */
static float total_loss(rf_distill *d, rf_model *s, int B) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *lg;
    float dl[64 * 10], loss;
    cr_assert_eq(rf_model_forward(&ctx, s, g_train->x, B, 1, &lg), RF_OK);
    cr_assert_eq(rf_distill_loss(d, s, g_train->x, lg, g_train->y, NULL, B, dl, &loss), RF_OK, "%s", rf_ctx_error(&ctx));
    return loss;
}

Test(distill, hidden_state_gradient_flows_into_the_student_block) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    load_data();
    rf_model *t = make(VIT_T, 9), *s = make(VIT_S, 10);
    rf_teacher *te;
    cr_assert_eq(rf_teacher_from_models(&ctx, &t, 1, &te), RF_OK);
    rf_distill_cfg dc;
    rf_distill_cfg_default(&dc);
    dc.T = 2.0f; dc.alpha = 0.5f;
    dc.hidden_weight = 5.0f;
    dc.proj_lr = 0.0f;   /* P fixed: the loss is a function of the student params only */
    cr_assert_eq(rf_distill_pairs_default(&ctx, s, t, &dc), RF_OK);
    cr_assert_eq(dc.n_pairs, 1);
    cr_assert_eq(dc.student_layers[0], 1);
    cr_assert_eq(dc.teacher_layers[0], 2);   /* the teacher's last block */
    rf_distill *d;
    cr_assert_eq(rf_distill_new(&ctx, te, s, &dc, &d), RF_OK, "%s", rf_ctx_error(&ctx));
    enum { B = 4, K = 10 };
    const float *lg;
    float dl[B * K], loss;
    cr_assert_eq(rf_model_forward(&ctx, s, g_train->x, B, 1, &lg), RF_OK);
    cr_assert_eq(rf_distill_loss(d, s, g_train->x, lg, g_train->y, NULL, B, dl, &loss), RF_OK);
    cr_assert_gt(rf_distill_hidden_loss(d), 0.0f);
    rf_model_zero_grad(s);
    cr_assert_eq(rf_model_backward(&ctx, s, dl), RF_OK);
    float *grad = malloc(s->n_params * sizeof(float));
    memcpy(grad, s->grads, s->n_params * sizeof(float));
    /* check the patch-embedding weights (before the block: their gradient
     * only gets the hidden term through the hook) and the block's own */
    const char *names[] = {"patch_embed.proj.weight", "patch_embed.weight", "blocks.0.mlp.fc1.weight", "blocks.0.fc1.weight"};
    int checked = 0;
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        const rf_param *p = rf_model_param(s, names[n]);
        if (!p) continue;
        for (int r = 0; r < 4; r++) {
            size_t best = p->offset;   /* the r-th largest-|grad| entry among a stride of the tensor */
            for (size_t k = p->offset + (size_t)r; k < p->offset + p->numel; k += 4)
                if (fabsf(grad[k]) > fabsf(grad[best])) best = k;
            float w = s->params[best];
            const float h = 2e-3f;
            s->params[best] = w + h;
            float lp = total_loss(d, s, B);
            s->params[best] = w - h;
            float lm = total_loss(d, s, B);
            s->params[best] = w;
            double fd = ((double)lp - lm) / (2.0 * h);
            cr_assert_float_eq(fd, grad[best], 3e-3 + 5e-2 * fabs(grad[best]), "%s[%zu]: fd %g vs backward %g",
                               names[n], best - p->offset, fd, grad[best]);
            checked++;
        }
    }
    cr_assert_geq(checked, 4, "no parameter tensor of the student was found by name");
    /* without the hook's gradient the block's weights would get less: check
     * the hidden term really contributes */
    rf_distill_free(d, s);
    cr_assert_null(s->hook);
    dc.hidden_weight = 0.0f;
    cr_assert_eq(rf_distill_new(&ctx, te, s, &dc, &d), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, s, g_train->x, B, 1, &lg), RF_OK);
    cr_assert_eq(rf_distill_loss(d, s, g_train->x, lg, g_train->y, NULL, B, dl, &loss), RF_OK);
    rf_model_zero_grad(s);
    cr_assert_eq(rf_model_backward(&ctx, s, dl), RF_OK);
    double diff = 0;
    for (size_t k = 0; k < s->n_params; k++) diff += fabs((double)s->grads[k] - grad[k]);
    cr_assert_gt(diff, 1e-3, "the hidden-state term changed no gradient");
    free(grad);
    rf_distill_free(d, s);
    rf_teacher_free(te);
    rf_model_free(t); rf_model_free(s);
}

/* OFA's "layers" glob: the excluded input layer and the classifier stay
 * dense, the rest reaches the target sparsity exactly at the schedule's end. */
static double zero_fraction(const rf_model *m, const char *name) {
    const rf_param *p = rf_model_param(m, name);
    cr_assert(p, "%s", name);
    if (!m->masks) return 0.0;
    size_t z = 0;
    for (size_t i = 0; i < p->numel; i++) z += m->masks[p->offset + i] == 0.0f;
    return (double)z / (double)p->numel;
}

Test(distill, ofa_layers_glob_keeps_the_input_layer_dense) {
    static const char *MLP3 =
        "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},"
        "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":32},{\"type\":\"relu\"},"
        "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":20},{\"type\":\"relu\"},"
        "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}]}";
    const char *globs[] = {NULL, "!fc1*"};
    for (int g = 0; g < 2; g++) {
        rf_ctx ctx; rf_ctx_init(&ctx);
        rf_model *m = make(MLP3, 7);
        rf_ofa_hooks o;
        rf_ofa_hooks_init(&o, &ctx);
        o.gmp_on = 1;
        o.sparsity = 0.5;
        o.layers = globs[g];
        rf_train_hooks h;
        rf_ofa_train_hooks(&o, &h);
        for (int64_t step = 0; step <= 100; step++) cr_assert_eq(h.before_step(h.ud, m, step, 200), RF_OK, "%s", ctx.err);
        cr_assert_float_eq(zero_fraction(m, "fc2.weight"), 0.5, 1e-9, "fc2 sparsity %g", zero_fraction(m, "fc2.weight"));
        cr_assert_eq(zero_fraction(m, "fc3.weight"), 0.0, "the classifier was pruned");
        if (g == 0) cr_assert_float_eq(zero_fraction(m, "fc1.weight"), 0.5, 1e-9);
        else cr_assert_eq(zero_fraction(m, "fc1.weight"), 0.0, "fc1 excluded by \"!fc1*\" was pruned");
        rf_model_free(m);
    }
}

Test(distill, ofa_gmp_schedule_scales_with_the_run) {
    rf_gmp_schedule s;
    rf_ofa_gmp_schedule(0.9, 1000, 0.5, 0.01, &s);
    cr_assert_eq(s.start, 0);
    cr_assert_eq(s.every, 10);
    cr_assert_eq(s.end, 500);
    cr_assert_eq(s.s_final, 0.9);
    rf_ofa_gmp_schedule(0.85, 37, 0.5, 0.01, &s);
    cr_assert_eq(s.every, 1);
    cr_assert_eq(s.end, 19);   /* llround(18.5) */
    rf_ofa_gmp_schedule(0.9, 1234, 0.5, 0.05, &s);
    cr_assert_eq(s.every, 62);
    cr_assert_eq(s.end % s.every, 0);
    cr_assert_leq(s.end, 617);
}
