/* Every layer's backward (input gradient and every parameter gradient)
 * against central finite differences of a scalar loss L = Σ w_i·y_i (random
 * w), accumulated in double, on small odd shapes with stride, padding and
 * both batch-norm modes; then end-to-end through a transformer block, an MLP,
 * a conv net with batch norm in training mode and a tiny ViT.
 *
 * Error measure per tensor: max_i |analytic_i - numeric_i| / max(max|analytic|,
 * max|numeric|, floor), which must stay below TOL. A float32 forward with
 * step 1e-3 leaves FD noise around 1e-4 of that scale; a wrong gradient (the
 * self-test scales it by 1.03) exceeds TOL. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "raffle/nn.h"

#define TOL 1e-2
#define FD_EPS 1e-3
/* The step in use: deeper nets (16 layers of float32 forward) set a larger one. */
static double fd_eps = FD_EPS;
#define MAX_CHECK 48     /* coordinates checked per tensor (all if fewer) */
/* Gradients far below the model's largest one (e.g. a conv bias right before
 * batch norm, whose true gradient is 0) are compared on the scale of
 * FLOOR_FRAC times the largest gradient, not on their own, FD-noise-sized scale. */
#define FLOOR_FRAC 2e-2

typedef struct gc {
    rf_model *m;
    const float *x;
    int B, training;
    const float *w;
    rf_rng drop;          /* dropout stream replayed for every forward */
} gc;

static double loss_of(gc *g) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    g->m->dropout_rng = g->drop;
    cr_assert_eq(rf_model_forward(&ctx, g->m, g->x, g->B, g->training, &y), RF_OK, "%s", rf_ctx_error(&ctx));
    double L = 0.0;
    size_t n = (size_t)g->B * g->m->n_classes;
    for (size_t i = 0; i < n; i++) L += (double)g->w[i] * (double)y[i];
    return L;
}

/* Checks analytic[] against FD of the loss w.r.t. values[] (perturbed in place). */
static double compare(gc *g, float *values, const float *analytic, size_t n, rf_rng *pick, double corrupt,
                      double floor) {
    size_t idx[MAX_CHECK];
    size_t k = n <= MAX_CHECK ? n : MAX_CHECK;
    for (size_t i = 0; i < k; i++) idx[i] = n <= MAX_CHECK ? i : rf_rng_below(pick, (uint32_t)n);
    double amax = 0.0, nmax = 0.0, emax = 0.0;
    for (size_t i = 0; i < n; i++) amax = fmax(amax, fabs(analytic[i] * corrupt));
    for (size_t i = 0; i < k; i++) {
        float v = values[idx[i]];
        values[idx[i]] = v + (float)fd_eps;
        double lp = loss_of(g);
        values[idx[i]] = v - (float)fd_eps;
        double lm = loss_of(g);
        values[idx[i]] = v;
        /* Divide by the step actually taken in float. */
        double h = (double)(v + (float)fd_eps) - (double)(v - (float)fd_eps);
        double num = (lp - lm) / h;
        nmax = fmax(nmax, fabs(num));
        emax = fmax(emax, fabs(num - analytic[idx[i]] * corrupt));
    }
    return emax / fmax(fmax(amax, nmax), floor);
}

/* Returns the worst error over the input and every parameter tensor. */
static double gradcheck(const char *spec, int B, int training, uint64_t seed, double corrupt, int verbose) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, seed), RF_OK);
    rf_rng r;
    rf_rng_init(&r, seed, 99);
    /* Move every tensor away from its special initial values (LN weight 1,
     * zero biases) so that no gradient term is hidden by a 0 or a 1. */
    for (int t = 0; t < m->n_ptensors; t++) {
        const rf_param *p = &m->ptensors[t];
        float s = p->role == RF_P_WEIGHT ? 0.0f : 0.3f;
        for (size_t i = 0; i < p->numel; i++) m->params[p->offset + i] += s * rf_rng_normal(&r);
    }
    size_t in_n = (size_t)B * m->input.d[0] * m->input.d[1] * m->input.d[2];
    size_t out_n = (size_t)B * m->n_classes;
    float *x = malloc(in_n * sizeof(float)), *w = malloc(out_n * sizeof(float));
    for (size_t i = 0; i < in_n; i++) x[i] = rf_rng_normal(&r);
    for (size_t i = 0; i < out_n; i++) w[i] = rf_rng_normal(&r);
    gc g = {m, x, B, training, w, {0}};
    rf_rng_init(&g.drop, seed, 7);
    if (!training) {
        /* Eval-mode batch norm: give the running statistics non-trivial values. */
        for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = 0.5f + rf_rng_uniform(&r);
    }
    loss_of(&g);
    rf_model_zero_grad(m);
    m->input_grad = 1;
    cr_assert_eq(rf_model_backward(&ctx, m, w), RF_OK, "%s", rf_ctx_error(&ctx));
    float *grads = malloc(m->n_params * sizeof(float) + 1), *dx = malloc(in_n * sizeof(float));
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    memcpy(dx, m->dinput, in_n * sizeof(float));
    double gmax = 1e-6;
    for (size_t i = 0; i < in_n; i++) gmax = fmax(gmax, fabs(dx[i]));
    for (size_t i = 0; i < m->n_params; i++) gmax = fmax(gmax, fabs(grads[i]));
    double floor = FLOOR_FRAC * gmax;
    double worst = compare(&g, x, dx, in_n, &r, corrupt, floor);
    if (verbose) fprintf(stderr, "  input: %.2e (largest gradient %.2e)\n", worst, gmax);
    for (int t = 0; t < m->n_ptensors; t++) {
        const rf_param *p = &m->ptensors[t];
        double e = compare(&g, m->params + p->offset, grads + p->offset, p->numel, &r, corrupt, floor);
        if (verbose) fprintf(stderr, "  %s: %.2e\n", p->name, e);
        worst = fmax(worst, e);
    }
    free(grads); free(dx); free(x); free(w);
    rf_model_free(m);
    return worst;
}

static void expect_ok(const char *spec, int B, int training) {
    double e = gradcheck(spec, B, training, 1234, 1.0, 0);
    if (e >= TOL) gradcheck(spec, B, training, 1234, 1.0, 1);
    cr_expect_lt(e, TOL, "gradient error %.3e >= %.0e for %s (training=%d)", e, TOL, spec, training);
    /* The same check must reject a gradient that is 3% off. */
    double bad = gradcheck(spec, B, training, 1234, 1.03, 0);
    cr_expect_gt(bad, TOL, "a 3%% wrong gradient passed (%.3e) for %s", bad, spec);
}

#define IMG(c, h, w) "{\"input\":[" #c "," #h "," #w "],\"layers\":["
#define TOK(t, d) "{\"input\":[" #t "," #d "],\"layers\":["
#define FLAT(n) "{\"input\":[" #n "],\"layers\":["

Test(gradcheck, linear) {
    expect_ok(FLAT(7) "{\"type\":\"linear\",\"out\":5}]}", 3, 1);
    expect_ok(FLAT(6) "{\"type\":\"linear\",\"out\":4,\"bias\":0}]}", 2, 1);
    expect_ok(TOK(3, 6) "{\"type\":\"linear\",\"out\":5}]}", 3, 1);
}

Test(gradcheck, conv2d) {
    expect_ok(IMG(3, 9, 7) "{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"stride\":2,\"padding\":1}]}", 3, 1);
    expect_ok(IMG(2, 6, 7) "{\"type\":\"conv2d\",\"out\":3,\"kh\":2,\"kw\":3}]}", 3, 1);
    expect_ok(IMG(1, 8, 8) "{\"type\":\"conv2d\",\"out\":5,\"kernel\":5,\"padding\":2,\"bias\":0}]}", 2, 1);
    expect_ok(IMG(2, 7, 5) "{\"type\":\"conv2d\",\"out\":3,\"kernel\":3,\"stride\":3,\"padding\":2}]}", 3, 0);
    /* Stride 1 with many channels takes the row-copy path instead of wide columns. */
    expect_ok(IMG(2, 5, 6) "{\"type\":\"conv2d\",\"out\":90,\"kernel\":3,\"padding\":1}]}", 3, 1);
}

/* conv=auto3 (RAFFLE_CONV, read by rf_ctx_init): stride-2 backward on the
 * direct kernels (layer_conv.c s2_backward), channels past DW_SMALL_CO. */
Test(gradcheck, conv2d_stride2_auto3) {
    cr_assert_eq(setenv("RAFFLE_CONV", "auto3", 1), 0);
    expect_ok(IMG(3, 9, 7) "{\"type\":\"conv2d\",\"out\":12,\"kernel\":3,\"stride\":2,\"padding\":1}]}", 3, 1);
    expect_ok(IMG(2, 8, 8) "{\"type\":\"conv2d\",\"out\":17,\"kernel\":1,\"stride\":2,\"bias\":0}]}", 3, 1);
    unsetenv("RAFFLE_CONV");
}

Test(gradcheck, pools) {
    expect_ok(IMG(2, 7, 9) "{\"type\":\"maxpool\",\"kernel\":3,\"stride\":2,\"padding\":1}]}", 3, 1);
    expect_ok(IMG(2, 6, 6) "{\"type\":\"maxpool\",\"kernel\":2}]}", 3, 1);
    expect_ok(IMG(2, 7, 9) "{\"type\":\"avgpool\",\"kernel\":3,\"stride\":2,\"padding\":1}]}", 3, 1);
    expect_ok(IMG(3, 5, 4) "{\"type\":\"gap\"}]}", 3, 1);
    expect_ok(TOK(4, 6) "{\"type\":\"cls_pool\"}]}", 3, 1);
    expect_ok(TOK(4, 6) "{\"type\":\"mean_pool\"}]}", 3, 1);
    expect_ok(IMG(2, 3, 3) "{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":4}]}", 3, 1);
}

Test(gradcheck, norms) {
    expect_ok(IMG(3, 4, 5) "{\"type\":\"batchnorm\"}]}", 4, 1);
    expect_ok(IMG(3, 4, 5) "{\"type\":\"batchnorm\"}]}", 4, 0);
    expect_ok(FLAT(6) "{\"type\":\"batchnorm\"}]}", 5, 1);
    expect_ok(TOK(5, 8) "{\"type\":\"layernorm\"}]}", 3, 1);
    expect_ok(FLAT(9) "{\"type\":\"layernorm\"}]}", 3, 1);
}

/* Batch norm under the engine option bn=twopass (the statistic as before
 * session 6; the tests above run the default, onepass; every rf_ctx_init
 * here takes RAFFLE_BN as its default), alone and fused with the ReLU. */
Test(gradcheck, norms_bn_twopass) {
    setenv("RAFFLE_BN", "twopass", 1);
    expect_ok(IMG(3, 4, 5) "{\"type\":\"batchnorm\"}]}", 4, 1);
    expect_ok(IMG(3, 4, 5) "{\"type\":\"batchnorm\"},{\"type\":\"relu\"}]}", 4, 1);
    expect_ok(FLAT(6) "{\"type\":\"batchnorm\"}]}", 5, 1);
    unsetenv("RAFFLE_BN");
}

Test(gradcheck, activations) {
    expect_ok(FLAT(13) "{\"type\":\"relu\"}]}", 3, 1);
    expect_ok(FLAT(13) "{\"type\":\"gelu\"}]}", 3, 1);
    expect_ok(FLAT(13) "{\"type\":\"tanh\"}]}", 3, 1);
    expect_ok(FLAT(13) "{\"type\":\"dropout\",\"p\":0.3}]}", 3, 1);
    expect_ok(FLAT(13) "{\"type\":\"dropout\",\"p\":0.3}]}", 3, 0);
}

Test(gradcheck, residual) {
    expect_ok(FLAT(6) "{\"type\":\"linear\",\"out\":6},{\"type\":\"tanh\"},{\"type\":\"linear\",\"out\":6},"
                      "{\"type\":\"residual\",\"from\":0}]}", 3, 1);
    expect_ok(FLAT(6) "{\"type\":\"linear\",\"name\":\"a\",\"out\":6},{\"type\":\"residual\",\"from\":-1},"
                      "{\"type\":\"residual\",\"from\":\"a\"}]}", 3, 1);
}

Test(gradcheck, patch_embed) {
    expect_ok(IMG(2, 8, 12) "{\"type\":\"patch_embed\",\"patch\":4,\"dim\":6}]}", 3, 1);
    expect_ok(IMG(1, 6, 6) "{\"type\":\"patch_embed\",\"patch\":3,\"dim\":5,\"cls\":0,\"pos\":0}]}", 3, 1);
}

Test(gradcheck, attention) {
    expect_ok(TOK(5, 8) "{\"type\":\"attention\",\"heads\":2}]}", 3, 1);
    expect_ok(TOK(3, 6) "{\"type\":\"attention\",\"heads\":3}]}", 2, 1);
}

Test(gradcheck, transformer_block) {
    expect_ok(TOK(5, 8) "{\"type\":\"transformer\",\"heads\":2,\"mlp\":12}]}", 3, 1);
    expect_ok(TOK(4, 6) "{\"type\":\"transformer\",\"heads\":1,\"mlp\":7},"
                        "{\"type\":\"transformer\",\"heads\":3,\"mlp\":5}]}", 2, 1);
}

Test(gradcheck, mlp_end_to_end) {
    expect_ok(IMG(1, 5, 5) "{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":11},{\"type\":\"relu\"},"
                           "{\"type\":\"dropout\",\"p\":0.25},{\"type\":\"linear\",\"out\":7},{\"type\":\"tanh\"},"
                           "{\"type\":\"linear\",\"out\":3}]}", 4, 1);
}

Test(gradcheck, convnet_batchnorm_end_to_end) {
    /* Convs feeding batch norm have no bias (its gradient is exactly 0, as in
     * ResNets' conv-BN pairs), so every checked gradient is non-trivial. */
    expect_ok(IMG(2, 9, 9) "{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},{\"type\":\"batchnorm\"},"
                           "{\"type\":\"relu\"},{\"type\":\"maxpool\",\"kernel\":2},"
                           "{\"type\":\"conv2d\",\"out\":3,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},"
                           "{\"type\":\"avgpool\",\"kernel\":2,\"stride\":1},{\"type\":\"flatten\"},"
                           "{\"type\":\"batchnorm\"},{\"type\":\"linear\",\"out\":5}]}", 4, 1);
}

Test(gradcheck, vit_end_to_end) {
    expect_ok(IMG(1, 8, 8) "{\"type\":\"patch_embed\",\"patch\":4,\"dim\":8},"
                           "{\"type\":\"transformer\",\"heads\":2,\"mlp\":16},"
                           "{\"type\":\"transformer\",\"heads\":2,\"mlp\":16},"
                           "{\"type\":\"layernorm\"},{\"type\":\"cls_pool\"},{\"type\":\"linear\",\"out\":3}]}", 3, 1);
    expect_ok(IMG(1, 8, 8) "{\"type\":\"patch_embed\",\"patch\":4,\"dim\":8,\"cls\":0},"
                           "{\"type\":\"attention\",\"heads\":4},{\"type\":\"gelu\"},"
                           "{\"type\":\"mean_pool\"},{\"type\":\"linear\",\"out\":3}]}", 3, 1);
}

/* ---- DAG layers ------------------------------------------------------------
 * Fan-out everywhere: the model input feeds two branches, a block input
 * feeds its branch and its shortcut, so every gradient that reaches a layer
 * from several consumers is their sum. */
Test(gradcheck, add_shortcuts) {
    /* identity shortcut, from the model input and from a layer */
    expect_ok(IMG(2, 5, 5) "{\"type\":\"conv2d\",\"name\":\"c\",\"out\":2,\"kernel\":3,\"padding\":1},"
                           "{\"type\":\"tanh\"},{\"type\":\"add\",\"inputs\":[1,\"input\"]},"
                           "{\"type\":\"add\",\"inputs\":[2,\"c\",\"input\"]},{\"type\":\"flatten\"},"
                           "{\"type\":\"linear\",\"out\":3}]}", 3, 1);
    /* option A: stride 2, 2 -> 4 channels (1 zero channel each side), odd map 7x7 -> 4x4 */
    expect_ok(IMG(2, 7, 7) "{\"type\":\"conv2d\",\"name\":\"c1\",\"out\":4,\"kernel\":3,\"stride\":2,\"padding\":1},"
                           "{\"type\":\"tanh\"},{\"type\":\"add\",\"inputs\":[1,\"input\"],\"shortcut\":\"A\"},"
                           "{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3}]}", 3, 1);
    /* option A with an odd channel difference (3 -> 6: 1 before, 2 after) */
    expect_ok(IMG(3, 6, 6) "{\"type\":\"conv2d\",\"out\":6,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},"
                           "{\"type\":\"add\",\"inputs\":[0,\"input\"],\"shortcut\":\"A\"},{\"type\":\"gap\"},"
                           "{\"type\":\"linear\",\"out\":3}]}", 3, 1);
    /* option B: a 1x1 stride-2 projection with batch norm (training mode) on the shortcut */
    expect_ok(IMG(2, 6, 6) "{\"type\":\"conv2d\",\"name\":\"b\",\"out\":3,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},"
                           "{\"type\":\"batchnorm\",\"name\":\"bb\"},"
                           "{\"type\":\"conv2d\",\"name\":\"p\",\"inputs\":\"input\",\"out\":3,\"kernel\":1,\"stride\":2,\"bias\":0},"
                           "{\"type\":\"batchnorm\",\"name\":\"pb\"},{\"type\":\"add\",\"inputs\":[\"bb\",\"pb\"]},"
                           "{\"type\":\"relu\"},{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":3}]}", 4, 1);
}

Test(gradcheck, concat_and_gap) {
    /* two branches from the input, joined along channels, then GAP */
    expect_ok(IMG(2, 5, 4) "{\"type\":\"conv2d\",\"name\":\"a\",\"out\":3,\"kernel\":3,\"padding\":1},{\"type\":\"tanh\"},"
                           "{\"type\":\"conv2d\",\"name\":\"b\",\"inputs\":\"input\",\"out\":2,\"kernel\":1},"
                           "{\"type\":\"concat\",\"inputs\":[1,\"b\",\"input\"]},{\"type\":\"gap\"},"
                           "{\"type\":\"linear\",\"out\":4}]}", 3, 1);
    /* flat vectors end to end */
    expect_ok(FLAT(5) "{\"type\":\"linear\",\"name\":\"a\",\"out\":4},{\"type\":\"tanh\"},"
                      "{\"type\":\"concat\",\"inputs\":[\"input\",1]},{\"type\":\"linear\",\"out\":3}]}", 3, 1);
}

/* The same kind of net with ReLU, so that batch norm + ReLU and add + ReLU
 * run fused (src/nn/model.c, "fusion"; test_fuse.c checks fused against
 * plain bits). Finite differences step across a ReLU kink where a
 * pre-activation lies within the step of 0: a weight before a batch norm
 * moves every pre-activation of its channel, and at step 1e-3 stem.weight
 * crossed one (error 2e-2); at 3e-4 none of the checked coordinates does
 * with this seed (a crossing shows as an error, never as a pass). */
Test(gradcheck, resnet_relu_fused) {
    fd_eps = 3e-4;
    const char *spec =
        IMG(2, 6, 6) "{\"type\":\"conv2d\",\"name\":\"stem\",\"out\":2,\"kernel\":3,\"padding\":1,\"bias\":0},"
        "{\"type\":\"batchnorm\"},{\"type\":\"relu\",\"name\":\"x0\"},"
        "{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},{\"type\":\"batchnorm\"},"
        "{\"type\":\"relu\"},{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
        "{\"type\":\"batchnorm\",\"name\":\"bn2\"},{\"type\":\"add\",\"inputs\":[\"bn2\",\"x0\"],\"shortcut\":\"A\"},"
        "{\"type\":\"relu\",\"name\":\"x1\"},{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
        "{\"type\":\"batchnorm\"},{\"type\":\"add\",\"inputs\":[11,\"x1\"]},{\"type\":\"relu\"},"
        "{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":3}]}";
    expect_ok(spec, 4, 1);
    expect_ok(spec, 4, 0);
    fd_eps = FD_EPS;
}

/* conv + ReLU fused (model.c, "fusion"): the direct path (2 input
 * channels) and Winograd F(4x4) (32 -> 32, with a bias: the ReLU's
 * gradient is made in the bias sums' pass, the input gradient stored, not
 * added). The default step: F(4x4)'s float32 rounding of the loss,
 * divided by the step, gave input errors of 4.3e-2 at 1e-4 and 1.6e-2 at
 * 3e-4 (scaling as 1/step: noise, not a kink); at 1e-3 no checked
 * coordinate crosses a kink with this seed. */
Test(gradcheck, conv_relu_fused) {
    fd_eps = FD_EPS;
    const char *spec =
        IMG(2, 6, 6) "{\"type\":\"conv2d\",\"out\":32,\"kernel\":3,\"padding\":1,\"bias\":0},{\"type\":\"relu\"},"
        "{\"type\":\"conv2d\",\"out\":32,\"kernel\":3,\"padding\":1},{\"type\":\"relu\"},"
        "{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":3}]}";
    expect_ok(spec, 3, 1);
    fd_eps = FD_EPS;
}

Test(gradcheck, resnet_block_batchnorm_train_and_eval) {
    /* A downsampling basic block (He et al. 2016) with batch norm in both
     * modes and a second block reading the first one's output twice; tanh
     * for ReLU, whose kinks finite differences step across. 16 layers of
     * float32 forward leave FD noise near 1e-2 at step 1e-3: step 3e-3. */
    fd_eps = 3e-3;
    const char *spec =
        IMG(2, 6, 6) "{\"type\":\"conv2d\",\"name\":\"stem\",\"out\":2,\"kernel\":3,\"padding\":1,\"bias\":0},"
        "{\"type\":\"batchnorm\"},{\"type\":\"tanh\",\"name\":\"x0\"},"
        "{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},{\"type\":\"batchnorm\"},"
        "{\"type\":\"tanh\"},{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
        "{\"type\":\"batchnorm\",\"name\":\"bn2\"},{\"type\":\"add\",\"inputs\":[\"bn2\",\"x0\"],\"shortcut\":\"A\"},"
        "{\"type\":\"tanh\",\"name\":\"x1\"},{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
        "{\"type\":\"batchnorm\"},{\"type\":\"add\",\"inputs\":[11,\"x1\"]},{\"type\":\"tanh\"},"
        "{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":3}]}";
    expect_ok(spec, 4, 1);
    expect_ok(spec, 4, 0);
}
