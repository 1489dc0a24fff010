/* The direct convolution's small-channel kernels (src/nn/layer_conv.c) give
 * the bits of their scalar twins: a conv layer forced onto the direct path
 * (engine conv=direct) is trained one step (forward, weight, bias and input
 * gradients) with RAFFLE_ISA = scalar, avx2 and avx512, and every output
 * compared byte for byte. Shapes cover the 16-channel 3x3 weight-gradient
 * tile (dwt_1_9: Co = 16 and Co = 12, whose lanes past Co are zero; 1, 3 and
 * 5 input channels; odd maps), the general tiles beside it (Co = 17, 5x5)
 * and the few-channel lane path (Co = 6); and stride-2 layers, whose
 * forward AVX-512 runs on the direct kernel (s2_forward; its phase split
 * gathers rows with permutes, gather2_avx512 against gather2_ref) where the
 * other ISAs run im2col + GEMM. About 0.1 s of CPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "raffle/engine.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"
#include "nn_test_util.h"

typedef struct out { float *y, *g, *dx; size_t ny, ng, nx; } out;

/* spec's model on the direct path (engine conv=direct), initialised. */
static rf_model *direct_model(rf_ctx *ctx, const char *spec) {
    rf_ctx_init(ctx);
    ctx->engine.v[RF_ENGINE_CONV] = RF_ENGINE_CONV_DIRECT;
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(ctx, spec, &m), RF_OK, "%s", rf_ctx_error(ctx));
    cr_assert_eq(rf_model_init(ctx, m, 3), RF_OK);
    return m;
}

/* One step of spec on engine conv value `conv` with `threads` threads
 * (0: none attached) on ISA isa: the forward, gradients, input gradient. */
static out step_e(const char *spec, rf_isa isa, int B, int conv, int threads) {
    rf_kernels_force(isa);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.engine.v[RF_ENGINE_CONV] = conv;
    if (threads) {
        ctx.engine.v[RF_ENGINE_THREADS] = threads;
        cr_assert_eq(rf_gemm_attach(&ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    }
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 3), RF_OK);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.01f * (float)(i % 7);   /* non-zero bias */
    out o;
    o.nx = (size_t)B * in_numel(m);
    float *x = randn(o.nx, 5);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 1, &y), RF_OK, "%s", rf_ctx_error(&ctx));
    o.ny = (size_t)B * m->n_classes;
    o.y = malloc(o.ny * sizeof(float));
    memcpy(o.y, y, o.ny * sizeof(float));
    float *dl = randn(o.ny, 6);
    rf_model_zero_grad(m);
    m->input_grad = 1;
    cr_assert_eq(rf_model_backward(&ctx, m, dl), RF_OK, "%s", rf_ctx_error(&ctx));
    o.ng = m->n_params;
    o.g = malloc(o.ng * sizeof(float));
    memcpy(o.g, m->grads, o.ng * sizeof(float));
    o.dx = malloc(o.nx * sizeof(float));
    memcpy(o.dx, m->dinput, o.nx * sizeof(float));
    free(x);
    free(dl);
    rf_model_free(m);
    if (threads) rf_gemm_detach(&ctx);
    return o;
}
static out step(const char *spec, rf_isa isa, int B) { return step_e(spec, isa, B, RF_ENGINE_CONV_DIRECT, 0); }

static void check_s(int C, int H, int W, int Co, int k, int st, int pad) {
    char spec[512];
    int OH = (H + 2 * pad - k) / st + 1, OW = (W + 2 * pad - k) / st + 1;
    snprintf(spec, sizeof spec,
             "{\"input\":[%d,%d,%d],\"classes\":%d,\"layers\":[{\"type\":\"conv2d\",\"out\":%d,\"kernel\":%d,"
             "\"stride\":%d,\"padding\":%d},{\"type\":\"flatten\"}]}",
             C, H, W, Co * OH * OW, Co, k, st, pad);
    rf_isa top = rf_kernels_cpu_isa();
    out ref = step(spec, RF_ISA_SCALAR, 3);
    for (int isa = RF_ISA_AVX2; isa <= (int)top; isa++) {
        out o = step(spec, (rf_isa)isa, 3);
        cr_expect(memcmp(o.y, ref.y, ref.ny * sizeof(float)) == 0, "%s: forward differs (C %d, %dx%d, Co %d, k %d)",
                  rf_isa_name((rf_isa)isa), C, H, W, Co, k);
        cr_expect(memcmp(o.g, ref.g, ref.ng * sizeof(float)) == 0, "%s: weight/bias gradient differs (C %d, %dx%d, Co %d, k %d)",
                  rf_isa_name((rf_isa)isa), C, H, W, Co, k);
        cr_expect(memcmp(o.dx, ref.dx, ref.nx * sizeof(float)) == 0, "%s: input gradient differs (C %d, %dx%d, Co %d, k %d)",
                  rf_isa_name((rf_isa)isa), C, H, W, Co, k);
        free(o.y); free(o.g); free(o.dx);
    }
    rf_kernels_force(top);
    free(ref.y); free(ref.g); free(ref.dx);
}
static void check(int C, int H, int W, int Co, int k) { check_s(C, H, W, Co, k, 1, k / 2); }

Test(direct, sixteen_channel_weight_gradient_same_bits) {
    if (rf_kernels_cpu_isa() < RF_ISA_AVX512)
        cr_skip_test("this CPU's best ISA is %s: the 16-channel tile is AVX-512 code", rf_isa_name(rf_kernels_cpu_isa()));
    check(3, 8, 8, 16, 3);
    check(1, 7, 9, 16, 3);
    check(5, 9, 7, 12, 3);
    check(16, 6, 6, 16, 3);
}

/* Stride 2: AVX-512 runs the forward on the direct kernel over the
 * phase-split input, scalar and AVX2 on im2col + GEMM: the same bits. */
Test(direct, stride2_forward_same_bits) {
    if (rf_kernels_cpu_isa() < RF_ISA_AVX512)
        cr_skip_test("this CPU's best ISA is %s: the stride-2 direct forward is AVX-512 code", rf_isa_name(rf_kernels_cpu_isa()));
    check_s(3, 8, 8, 16, 3, 2, 1);     /* ResNet's downsampling conv */
    check_s(5, 9, 7, 12, 3, 2, 1);     /* odd maps, a 4-row last tile */
    check_s(16, 12, 12, 33, 3, 2, 1);
    check_s(2, 11, 10, 8, 5, 2, 2);
    check_s(4, 9, 9, 6, 1, 2, 0);      /* 1x1 projection shortcut */
    check_s(3, 10, 9, 7, 3, 2, 0);
    check_s(2, 5, 37, 8, 3, 2, 1);     /* rows of 19 and 18 per phase: the split's 16-float blocks and tails */
}

/* conv=auto3: the stride-2 backward on the direct kernels (s2_backward:
 * weight gradient over the phase-split input, dwt_tile against its
 * reference dc_dweight_gen; input gradient per sample). Same bits on every
 * ISA and with 1 or 2 threads; against the im2col path (conv=gemm, the
 * reference): the forward's bits, gradients within float rounding (the
 * weight gradient sums in another order). B = 10: 8 groups of 1-2 samples. */
static void check_s2b(int C, int H, int W, int Co, int k, int pad) {
    char spec[512];
    int OH = (H + 2 * pad - k) / 2 + 1, OW = (W + 2 * pad - k) / 2 + 1;
    snprintf(spec, sizeof spec,
             "{\"input\":[%d,%d,%d],\"classes\":%d,\"layers\":[{\"type\":\"conv2d\",\"out\":%d,\"kernel\":%d,"
             "\"stride\":2,\"padding\":%d},{\"type\":\"flatten\"}]}",
             C, H, W, Co * OH * OW, Co, k, pad);
    const int B = 10;
    rf_isa top = rf_kernels_cpu_isa();
    out ref = step_e(spec, RF_ISA_SCALAR, B, RF_ENGINE_CONV_AUTO3, 0);
    for (int isa = RF_ISA_SCALAR; isa <= (int)top; isa++)
        for (int th = 1; th <= 2; th++) {
            out o = step_e(spec, (rf_isa)isa, B, RF_ENGINE_CONV_AUTO3, th);
            cr_expect(memcmp(o.y, ref.y, ref.ny * sizeof(float)) == 0 && memcmp(o.g, ref.g, ref.ng * sizeof(float)) == 0 &&
                          memcmp(o.dx, ref.dx, ref.nx * sizeof(float)) == 0,
                      "auto3 %s, %d threads: not the scalar bits (C %d, %dx%d, Co %d, k %d)", rf_isa_name((rf_isa)isa), th,
                      C, H, W, Co, k);
            free(o.y); free(o.g); free(o.dx);
        }
    out im = step_e(spec, RF_ISA_SCALAR, B, RF_ENGINE_CONV_GEMM, 0);
    cr_expect(memcmp(im.y, ref.y, ref.ny * sizeof(float)) == 0, "auto3: forward differs from im2col");
    float gmax = 0.0f, xmax = 0.0f, ge = 0.0f, xe = 0.0f;
    for (size_t i = 0; i < ref.ng; i++) { gmax = fmaxf(gmax, fabsf(im.g[i])); ge = fmaxf(ge, fabsf(im.g[i] - ref.g[i])); }
    for (size_t i = 0; i < ref.nx; i++) { xmax = fmaxf(xmax, fabsf(im.dx[i])); xe = fmaxf(xe, fabsf(im.dx[i] - ref.dx[i])); }
    cr_expect(ge <= 1e-5f * gmax && gmax > 0.0f, "auto3 weight gradient off im2col's by %g (largest %g)", ge, gmax);
    cr_expect(xe <= 1e-5f * xmax && xmax > 0.0f, "auto3 input gradient off im2col's by %g (largest %g)", xe, xmax);
    rf_kernels_force(top);
    free(im.y); free(im.g); free(im.dx);
    free(ref.y); free(ref.g); free(ref.dx);
}

Test(direct, stride2_backward_auto3) {
    check_s2b(16, 32, 32, 32, 3, 1);   /* ResNet-20's 16 -> 32 downsampling conv */
    check_s2b(5, 9, 7, 12, 3, 1);      /* odd maps; Co past one 16-lane vector: 12 -> lanes of zeros */
    check_s2b(3, 11, 10, 33, 5, 2);    /* 5x5, three vectors of channels */
    check_s2b(4, 9, 9, 9, 1, 0);       /* 1x1 projection shortcut, tap tails */
    check_s2b(2, 5, 37, 20, 3, 0);     /* no padding, wide rows */
}

Test(direct, other_tiles_same_bits) {
    check(3, 7, 7, 17, 3);
    check(2, 9, 8, 16, 5);
    check(3, 8, 8, 6, 3);
}

/* A conv whose input only it reads writes that input gradient (model.c
 * fresh_plain, direct_dx's dx_rows_set) instead of adding to a zeroed one:
 * every element must be written. The activation gradients are poisoned
 * with NaN before a second identical step (the model zeroes the buffers
 * that are not fresh): the gradients must keep their bytes. conv b reads
 * relu r alone (direct path, written); conv a's input is the model input. */
Test(direct, fresh_input_gradient_written) {
    const char *spec = "{\"input\":[3,9,8],\"classes\":10,\"layers\":["
                       "{\"type\":\"conv2d\",\"name\":\"a\",\"out\":16,\"kernel\":3,\"padding\":1},"
                       "{\"type\":\"relu\",\"name\":\"r\"},"
                       "{\"type\":\"conv2d\",\"name\":\"b\",\"out\":5,\"kernel\":3,\"padding\":1},"
                       "{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":10}]}";
    rf_ctx ctx;
    rf_model *m = direct_model(&ctx, spec);
    const int B = 3;
    float *x = randn((size_t)B * in_numel(m), 5), *dl = randn((size_t)B * 10, 6);
    float *g0 = malloc(m->n_params * sizeof(float)), *g1 = malloc(m->n_params * sizeof(float));
    float *d0 = malloc((size_t)B * in_numel(m) * sizeof(float)), *d1 = malloc((size_t)B * in_numel(m) * sizeof(float));
    m->input_grad = 1;
    grads_after(m, &ctx, x, dl, B, g0, d0, 0);
    grads_after(m, &ctx, x, dl, B, g1, d1, 1);
    cr_expect(memcmp(g0, g1, m->n_params * sizeof(float)) == 0, "parameter gradients changed after poisoning");
    cr_expect(memcmp(d0, d1, (size_t)B * in_numel(m) * sizeof(float)) == 0, "input gradient changed after poisoning");
    size_t nan = 0;
    for (size_t i = 0; i < m->n_params; i++) nan += g1[i] != g1[i];
    cr_expect_eq(nan, 0, "%zu NaN parameter gradients", nan);
    free(x); free(dl); free(g0); free(g1); free(d0); free(d1);
    rf_model_free(m);
}
