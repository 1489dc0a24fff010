/* Batch norm's training statistics under both values of the engine option
 * "bn" (twopass, onepass: layer_norm.c): the one-pass kernel against its
 * plain reference bit for bit, both against PyTorch 1.13's BatchNorm2d
 * (train-mode output, input and parameter gradients, running statistics,
 * eval mode; with and without the fused ReLU), and the one-pass statistic
 * on data whose mean is large next to its spread. The plane kernels (GCC
 * vector types) against their plain references bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raffle/engine.h"
#include "nn/layers.h"
#include "nn_test_util.h"

#define PY "/usr/bin/python3"
#define REF "tests/unit/bn_ref.py"

/* Every plane kernel against its plain reference, bit for bit: plane
 * lengths with and without a tail, three planes summed in order as a
 * channel's batch, dy with zeros and -0 (the ReLU mask's edge cases). */
Test(bn, plane_kernels_match_ref_bits) {
    static const size_t hws[] = {1, 3, 15, 16, 17, 35, 64, 1000, 1024};
    for (size_t t = 0; t < sizeof hws / sizeof hws[0]; t++) {
        size_t hw = hws[t];
        float *x = randn(3 * hw, 11 + t), *dy = randn(3 * hw, 21 + t);
        for (size_t i = 0; i < 3 * hw; i++) {
            x[i] = 40.0f + 3.0f * x[i];
            if (i % 7 == 0) dy[i] = i % 2 ? -0.0f : 0.0f;
        }
        for (int kind = 0; kind < 4; kind++)
            for (int relu = 0; relu < (kind == 3 ? 2 : 1); relu++) {
                double s[RF_NN_LANES] = {0}, q[RF_NN_LANES] = {0}, sr[RF_NN_LANES] = {0}, qr[RF_NN_LANES] = {0};
                for (int p = 0; p < 3; p++) {
                    rf_nn_bn_sums(kind, s, q, dy + p * hw, x + p * hw, hw, 40.5, relu, 0.7f, -28.0f);
                    rf_nn_bn_sums_ref(kind, sr, qr, dy + p * hw, x + p * hw, hw, 40.5, relu, 0.7f, -28.0f);
                }
                cr_expect_eq(memcmp(s, sr, sizeof s), 0, "hw %zu kind %d relu %d: s differs from the reference", hw,
                             kind, relu);
                cr_expect_eq(memcmp(q, qr, sizeof q), 0, "hw %zu kind %d relu %d: q differs from the reference", hw,
                             kind, relu);
            }
        for (int set = 0; set < 2; set++) {
            float *d1 = randn(hw, 31), *d2 = malloc(hw * sizeof(float));
            memcpy(d2, d1, hw * sizeof(float));
            rf_nn_bn_dx_relu(d1, dy, x, hw, 0.7f, -28.0f, 1.3f, 0.01f, 40.5f, 0.4f, -0.02f, set);
            rf_nn_bn_dx_relu_ref(d2, dy, x, hw, 0.7f, -28.0f, 1.3f, 0.01f, 40.5f, 0.4f, -0.02f, set);
            cr_expect_eq(memcmp(d1, d2, hw * sizeof(float)), 0, "hw %zu set %d: dx differs from the reference", hw, set);
            free(d1); free(d2);
        }
        free(x); free(dy);
    }
}

static rf_model *bn_model(rf_ctx *ctx, int C, int H, int W, int relu) {
    char spec[256];
    snprintf(spec, sizeof spec, "{\"input\":[%d,%d,%d],\"layers\":[{\"type\":\"batchnorm\"}%s]}", C, H, W,
             relu ? ",{\"type\":\"relu\"}" : "");
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(ctx, spec, &m), RF_OK, "%s", rf_ctx_error(ctx));
    cr_assert_eq(rf_model_init(ctx, m, 1), RF_OK);
    return m;
}

/* Largest |a − b| over n, relative to the largest |b| (at least 1). */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, s = 1.0;
    for (size_t i = 0; i < n; i++) { d = fmax(d, fabs((double)a[i] - b[i])); s = fmax(s, fabs((double)b[i])); }
    return d / s;
}

/* One train step and one eval forward under each value of engine "bn",
 * against one PyTorch run. */
static void against_torch(int N, int C, int H, int W, int relu) {
    if (system(PY " -c 'import torch' >/dev/null 2>&1") != 0)
        cr_skip_test("PyTorch missing for " PY " (apt-get install python3-torch)");
    size_t k = (size_t)N * C * H * W, hw = (size_t)H * W;
    float *x = randn(k, 5), *dy = randn(k, 6), *pr = randn(4 * (size_t)C, 7);
    for (size_t i = 0; i < k; i++) x[i] = (float)(3 + (int)(i / hw) % C) * 5.0f + 0.5f * x[i];   /* means 15, 20, ... */
    for (int c = 0; c < C; c++) {
        pr[c] = 1.0f + 0.3f * pr[c];                        /* weight */
        pr[2 * C + c] = 0.2f * pr[2 * C + c];               /* running mean */
        pr[3 * C + c] = 1.0f + 0.25f * fabsf(pr[3 * C + c]); /* running var */
    }
    char dir[] = "/tmp/raffle_bn_XXXXXX", path[96], cmd[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/in.bin", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(x, sizeof(float), k, f), k);
    cr_assert_eq(fwrite(dy, sizeof(float), k, f), k);
    cr_assert_eq(fwrite(pr, sizeof(float), 4 * (size_t)C, f), 4 * (size_t)C);
    fclose(f);
    snprintf(cmd, sizeof cmd, PY " " REF " %s %d %d %d %d %d", dir, N, C, H, W, relu);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    size_t nr = 3 * k + 4 * (size_t)C;
    float *want = malloc(nr * sizeof(float)), *y2 = malloc(k * sizeof(float));
    snprintf(path, sizeof path, "%s/out.bin", dir);
    f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(want, sizeof(float), nr, f), nr);
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);

    static const char *const vals[] = {"twopass", "onepass"};
    for (int v = 0; v < 2; v++) {
        const char *bn = vals[v];
        rf_ctx ctx; rf_ctx_init(&ctx);
        cr_assert_eq(rf_engine_set(&ctx, &ctx.engine, "bn", bn), RF_OK, "%s", rf_ctx_error(&ctx));
        rf_model *m = bn_model(&ctx, C, H, W, relu);
        memcpy(m->params + rf_model_param(m, "layers.0.weight")->offset, pr, C * sizeof(float));
        memcpy(m->params + rf_model_param(m, "layers.0.bias")->offset, pr + C, C * sizeof(float));
        memcpy(m->buffers, pr + 2 * C, 2 * C * sizeof(float));
        const float *y;
        cr_assert_eq(rf_model_forward(&ctx, m, x, N, 1, &y), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_expect_lt(rel_diff(y, want, k), 2e-6, "bn=%s relu %d: train output", bn, relu);
        if (v == 0) memcpy(y2, y, k * sizeof(float));
        else {
            size_t differ = 0;
            for (size_t i = 0; i < k; i++) differ += memcmp(&y[i], &y2[i], sizeof(float)) != 0;
            cr_log_info("relu %d: onepass output differs from twopass in %zu of %zu floats", relu, differ, k);
        }
        m->input_grad = 1;
        rf_model_zero_grad(m);
        cr_assert_eq(rf_model_backward(&ctx, m, dy), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_expect_lt(rel_diff(m->dinput, want + k, k), 2e-5, "bn=%s relu %d: input gradient", bn, relu);
        const float *dw = m->grads + rf_model_param(m, "layers.0.weight")->offset;
        const float *db = m->grads + rf_model_param(m, "layers.0.bias")->offset;
        cr_expect_lt(rel_diff(dw, want + 2 * k, C), 2e-5, "bn=%s relu %d: weight gradient", bn, relu);
        cr_expect_lt(rel_diff(db, want + 2 * k + C, C), 2e-5, "bn=%s relu %d: bias gradient", bn, relu);
        cr_expect_lt(rel_diff(m->buffers, want + 2 * k + 2 * C, 2 * (size_t)C), 2e-6,
                     "bn=%s relu %d: running statistics", bn, relu);
        cr_assert_eq(rf_model_forward(&ctx, m, x, N, 0, &y), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_expect_lt(rel_diff(y, want + 2 * k + 4 * C, k), 2e-6, "bn=%s relu %d: eval output", bn, relu);
        rf_model_free(m);
    }
    free(x); free(dy); free(pr); free(want); free(y2);
}

/* hw = 35 (two 16-lane blocks and a tail) plain; hw = 64 with the fused
 * BN + ReLU (model.c's fusion table). */
Test(bn, matches_pytorch, .timeout = 60) { against_torch(4, 3, 5, 7, 0); }
Test(bn, matches_pytorch_fused_relu, .timeout = 60) { against_torch(3, 2, 8, 8, 1); }

/* Mean 1e4, spread 1e-2 (a ratio of 1e6; unshifted float sums of squares
 * would lose every digit): the one-pass variance within 1e-6 of the
 * two-pass one, and a constant channel gives variance 0, not below. */
Test(bn, onepass_large_mean) {
    const int N = 8, C = 2, H = 6, W = 6;
    size_t k = (size_t)N * C * H * W;
    float *x = randn(k, 9);
    for (size_t i = 0; i < k; i++) x[i] = (i / 36) % 2 ? 7.0f : 1.0e4f + 1.0e-2f * x[i];
    float st[2][4];
    static const char *const vals[] = {"twopass", "onepass"};
    for (int v = 0; v < 2; v++) {
        rf_ctx ctx; rf_ctx_init(&ctx);
        cr_assert_eq(rf_engine_set(&ctx, &ctx.engine, "bn", vals[v]), RF_OK);
        rf_model *m = bn_model(&ctx, C, H, W, 0);
        const float *y;
        cr_assert_eq(rf_model_forward(&ctx, m, x, N, 1, &y), RF_OK, "%s", rf_ctx_error(&ctx));
        memcpy(st[v], m->buffers, sizeof st[v]);   /* running mean, running var */
        rf_model_free(m);
    }
    /* running = 0.9·init + 0.1·batch: init mean 0, var 1 */
    for (int c = 0; c < 2; c++) {
        cr_expect_eq(st[0][c], st[1][c], "channel %d: running mean %.9g vs %.9g", c, st[0][c], st[1][c]);
        double v0 = (st[0][2 + c] - 0.9) / 0.1, v1 = (st[1][2 + c] - 0.9) / 0.1;
        cr_expect(fabs(v1 - v0) <= 1e-6 * fabs(v0) + 1e-9, "channel %d: batch variance %.9g vs %.9g", c, v1, v0);
    }
    cr_expect_eq(st[1][3], 0.9f, "constant channel: running var %.9g", st[1][3]);
    free(x);
}

/* An unfused batch norm that is its conv's only reader stores its input
 * gradient (model.c fresh_plain, as ResNet's bn2 before the block's add):
 * the conv-output gradient is not zeroed first. Poisoning every activation
 * gradient with NaN before backward must change no bit of the parameter
 * and input gradients, and the same model with no_fuse must agree. */
Test(bn, fresh_input_gradient_written) {
    const char *spec = "{\"input\":[4,6,6],\"classes\":10,\"layers\":["
                       "{\"type\":\"conv2d\",\"name\":\"c1\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
                       "{\"type\":\"batchnorm\",\"name\":\"b1\"},{\"type\":\"relu\",\"name\":\"r1\"},"
                       "{\"type\":\"conv2d\",\"name\":\"c2\",\"out\":4,\"kernel\":3,\"padding\":1,\"bias\":0},"
                       "{\"type\":\"batchnorm\",\"name\":\"b2\"},"
                       "{\"type\":\"add\",\"inputs\":[\"b2\",\"r1\"]},{\"type\":\"relu\"},"
                       "{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":10}]}";
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 3), RF_OK);
    const int B = 3;
    size_t nx = (size_t)B * in_numel(m);
    float *x = randn(nx, 5), *dl = randn((size_t)B * 10, 6);
    float *g[3], *d[3];
    for (int k = 0; k < 3; k++) { g[k] = malloc(m->n_params * sizeof(float)); d[k] = malloc(nx * sizeof(float)); }
    m->input_grad = 1;
    grads_after(m, &ctx, x, dl, B, g[0], d[0], 0);
    grads_after(m, &ctx, x, dl, B, g[1], d[1], 1);
    m->no_fuse = 1;
    grads_after(m, &ctx, x, dl, B, g[2], d[2], 1);
    expect_three_legs(m, g, d, nx);
    free(x); free(dl);
    rf_model_free(m);
}
