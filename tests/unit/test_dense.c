/* The layers' dense products (src/nn/dense.c, the engine's backend
 * raffle/gemm.h rf_gemm_engine) and the layer code around them. raffle's
 * GEMM promises one exact chain of fused multiply-adds per element, so the
 * engine's wrappers (rf_nn_linear_fwd / _dx / _dw) must equal the plain C
 * definition (rf_gemm_f32_ref) BIT FOR BIT on every ISA, on awkward sizes
 * (1, 5, 6, 7, 17 rows; 1, 10, 15, 16, 17, 63, 64, 65, 200 columns;
 * reductions 0, 1, 3, 64, 300) with padded leading dimensions; OpenBLAS
 * (gemm=openblas) agrees within float tolerance. The transformer block,
 * attention and feature-major paths built on them give the same bits on
 * every ISA and chunking. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

static float *randv(rf_rng *r, size_t n) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    cr_assert(v);
    for (size_t i = 0; i < n; i++) v[i] = rf_rng_normal(r);
    return v;
}

static const int Ms[] = {1, 5, 6, 7, 17};
static const int Ns[] = {1, 10, 15, 16, 17, 63, 64, 65, 200};
static const int Ks[] = {0, 1, 3, 64, 300};
#define LEN(a) (int)(sizeof(a) / sizeof(a[0]))

/* rf_nn_linear_fwd / _dx / _dw of one shape (strides ldx = K + 3, ldy =
 * N + 1) on every ISA of this CPU, each against the definition: Y = bias
 * rows, then Y += X·W^T; dX += dY·W; dW += dY^T·X. Returns the ISAs run. */
static int linear_case(rf_rng *r, int M, int N, int K, int bias) {
    int ldx = K + 3, ldy = N + 1;
    float *X = randv(r, (size_t)M * ldx), *W = randv(r, (size_t)N * K), *b = randv(r, (size_t)N);
    float *dY = randv(r, (size_t)M * ldy), *dX0 = randv(r, (size_t)M * ldx), *dW0 = randv(r, (size_t)N * K);
    float *Yw = malloc((size_t)M * ldy * sizeof(float)), *dXw = malloc((size_t)M * ldx * sizeof(float));
    float *dWw = malloc((size_t)N * K * sizeof(float)), *Y = malloc((size_t)M * ldy * sizeof(float));
    float *dX = malloc((size_t)M * ldx * sizeof(float)), *dW = malloc((size_t)N * K * sizeof(float));
    memcpy(Yw, dY, (size_t)M * ldy * sizeof(float));   /* columns past N: anything, untouched */
    for (int i = 0; bias && i < M; i++) memcpy(Yw + (size_t)i * ldy, b, (size_t)N * sizeof(float));
    rf_gemm_f32_ref(0, 1, M, N, K, X, ldx, W, K, bias, Yw, ldy);
    memcpy(dXw, dX0, (size_t)M * ldx * sizeof(float));
    rf_gemm_f32_ref(0, 0, M, K, N, dY, ldy, W, K, 1, dXw, ldx);
    memcpy(dWw, dW0, (size_t)N * K * sizeof(float));
    rf_gemm_f32_ref(1, 0, N, K, M, dY, ldy, X, ldx, 1, dWw, K);
    /* the definition against a double product */
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias ? b[n] : 0.0;
            for (int p = 0; p < K; p++) s += (double)X[(size_t)m * ldx + p] * W[(size_t)n * K + p];
            cr_assert(fabs(s - Yw[(size_t)m * ldy + n]) <= 1e-4 * (1.0 + fabs(s)), "ref %dx%dx%d (%d,%d)", M, N, K,
                      m, n);
        }
    rf_engine e;
    rf_engine_builtin(&e);
    rf_isa top = rf_kernels_cpu_isa();
    int isas = 0;
    for (int isa = RF_ISA_SCALAR; isa <= (int)top; isa++) {
        rf_kernels_force((rf_isa)isa);
        memcpy(Y, dY, (size_t)M * ldy * sizeof(float));
        memcpy(dX, dX0, (size_t)M * ldx * sizeof(float));
        memcpy(dW, dW0, (size_t)N * K * sizeof(float));
        rf_nn_linear_fwd(&e, Y, X, W, bias ? b : NULL, M, N, K, ldx, ldy);
        rf_nn_linear_bwd(&e, dX, dW, NULL, dY, X, W, M, N, K, ldx, ldy);
        cr_assert(memcmp(Y, Yw, (size_t)M * ldy * sizeof(float)) == 0, "%s: forward %dx%dx%d bias=%d differs",
                  rf_isa_name((rf_isa)isa), M, N, K, bias);
        cr_assert(memcmp(dX, dXw, (size_t)M * ldx * sizeof(float)) == 0, "%s: dX %dx%dx%d differs",
                  rf_isa_name((rf_isa)isa), M, N, K);
        cr_assert(memcmp(dW, dWw, (size_t)N * K * sizeof(float)) == 0, "%s: dW %dx%dx%d differs",
                  rf_isa_name((rf_isa)isa), M, N, K);
        isas++;
    }
    rf_kernels_force(top);
    /* OpenBLAS, the comparison backend: float tolerance */
    e.v[RF_ENGINE_GEMM] = RF_ENGINE_GEMM_OPENBLAS;
    memcpy(Y, dY, (size_t)M * ldy * sizeof(float));
    rf_nn_linear_fwd(&e, Y, X, W, bias ? b : NULL, M, N, K, ldx, ldy);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float a = Y[(size_t)m * ldy + n], w = Yw[(size_t)m * ldy + n];
            cr_assert(fabsf(a - w) <= 1e-4f * (1.0f + fabsf(w)) * (float)(1 + K / 64), "openblas (%d,%d)", m, n);
        }
    free(X); free(W); free(b); free(dY); free(dX0); free(dW0); free(Yw); free(dXw); free(dWw); free(Y); free(dX);
    free(dW);
    return isas;
}

Test(dense, engine_products_equal_the_definition_on_every_isa) {
    rf_rng r;
    rf_rng_init(&r, 7, 0);
    for (int i = 0; i < LEN(Ms); i++)
        for (int j = 0; j < LEN(Ns); j++)
            for (int k = 0; k < LEN(Ks); k++)
                for (int bias = 0; bias < 2; bias++) cr_assert_geq(linear_case(&r, Ms[i], Ns[j], Ks[k], bias), 1);
    linear_case(&r, 2176 / 8, 192, 64, 1);   /* vit-tiny's tall shape, many row blocks */
    linear_case(&r, 133, 64, 129, 0);
    rf_nn_gemm_release();
}

/* The transformer block's chunked path (layer_transformer.c) against the
 * unchunked one: outputs and input gradients are bit-identical (per row
 * the same operations), and so are the parameter gradients when one chunk
 * holds the whole batch; with several chunks (16-row chunks of 5-token
 * samples: 35 rows make 3, rounded up to 4 of 1-2 samples) each chunk sums its rows into a partial
 * gradient and the partials are added in chunk order, which is the same
 * bits on 1, 2 or 3 threads and within float rounding of the unchunked
 * single sum. */
#include "raffle/nn.h"

/* Parameters of run_block's net: two blocks of width 16 (layer norms,
 * qkv, proj; MLP 24 and 40), then the 80 -> 4 classifier. */
static size_t block_params(void) {
    return 2 * (2 * 16 + 3 * 16 * 16 + 3 * 16 + 16 * 16 + 16 + 2 * 16) + 16 * 24 + 24 + 24 * 16 + 16 + 16 * 40 + 40 +
           40 * 16 + 16 + 80 * 4 + 4;
}

static void run_block_t(int chunk, int threads, float *out, float *din, float *grads, size_t n_params) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.engine.v[RF_ENGINE_TB_CHUNK] = chunk;
    ctx.engine.v[RF_ENGINE_THREADS] = threads;
    cr_assert_eq(rf_gemm_attach(&ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx,
                                     "{\"input\":[5,16],\"classes\":4,\"layers\":["
                                     "{\"type\":\"transformer\",\"heads\":2,\"mlp\":24},"
                                     "{\"type\":\"transformer\",\"heads\":4,\"mlp\":40},"
                                     "{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":4}]}",
                                     &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 3), RF_OK);
    cr_assert_eq(m->n_params, n_params);
    enum { B = 7 };
    rf_rng r;
    rf_rng_init(&r, 11, 0);
    float *x = randv(&r, (size_t)B * 5 * 16), *dl = randv(&r, (size_t)B * 4);
    m->input_grad = 1;
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 1, &y), RF_OK, "%s", rf_ctx_error(&ctx));
    memcpy(out, y, (size_t)B * 4 * sizeof(float));
    rf_model_zero_grad(m);
    cr_assert_eq(rf_model_backward(&ctx, m, dl), RF_OK, "%s", rf_ctx_error(&ctx));
    memcpy(din, m->dinput, (size_t)B * 5 * 16 * sizeof(float));
    memcpy(grads, m->grads, n_params * sizeof(float));
    rf_model_free(m);
    rf_gemm_detach(&ctx);
    free(x); free(dl);
}

static void run_block(int chunk, float *out, float *din, float *grads, size_t n_params) {
    run_block_t(chunk, 1, out, din, grads, n_params);
}

Test(dense, chunked_transformer_block) {
    size_t np = block_params();
    float o[5][28], d[5][560], *g[5];
    for (int i = 0; i < 5; i++) g[i] = malloc(np * sizeof(float));
    run_block(0, o[0], d[0], g[0], np);
    run_block(1 << 20, o[1], d[1], g[1], np);
    run_block_t(16, 1, o[2], d[2], g[2], np);
    run_block_t(16, 2, o[3], d[3], g[3], np);
    run_block_t(16, 3, o[4], d[4], g[4], np);
    for (int i = 1; i < 5; i++) {
        cr_assert(memcmp(o[0], o[i], sizeof o[0]) == 0, "run %d: outputs differ", i);
        cr_assert(memcmp(d[0], d[i], sizeof d[0]) == 0, "run %d: input gradients differ", i);
    }
    cr_assert(memcmp(g[0], g[1], np * sizeof(float)) == 0, "one chunk: parameter gradients differ from unchunked");
    for (int i = 3; i < 5; i++)
        cr_assert(memcmp(g[2], g[i], np * sizeof(float)) == 0, "chunks on %d threads: gradients differ from one", i - 1);
    for (size_t j = 0; j < np; j++)
        cr_assert(fabsf(g[2][j] - g[0][j]) <= 1e-5f * (1.0f + fabsf(g[0][j])), "gradient %zu: %.9g chunked, %.9g not", j,
                  g[2][j], g[0][j]);
    /* and the gradients are not trivially zero */
    size_t nz = 0;
    for (size_t j = 0; j < np; j++) nz += g[0][j] != 0.0f;
    cr_assert_gt(nz, np / 2);
    for (int i = 0; i < 5; i++) free(g[i]);
}

/* Attention's per-head forward (softmax rows of at most 32 take an AVX-512
 * path of their own) gives the same bits on AVX-512 as on scalar code, for
 * token counts around the register widths. */
#include "nn/product.h"

/* Skips a test comparing AVX-512 with AVX2 on a CPU without AVX-512. */
static rf_isa need_avx512(void) {
    rf_isa top = rf_kernels_cpu_isa();
    if (top < RF_ISA_AVX512)
        cr_skip_test("this CPU's best ISA is %s: no AVX-512 to compare with AVX2", rf_isa_name(top));
    return top;
}

Test(dense, attention_heads_same_bits_on_every_vector_isa) {
    rf_isa top = need_avx512();
    rf_engine e;
    rf_engine_builtin(&e);
    static const int Ts[] = {1, 5, 15, 16, 17, 31, 32, 33, 50};
    rf_rng r;
    rf_rng_init(&r, 21, 0);
    for (int i = 0; i < LEN(Ts); i++) {
        int B = 3, T = Ts[i], D = 32, H = 2;
        float *qkv = randv(&r, (size_t)B * T * 3 * D);
        for (size_t j = 0; j < (size_t)B * T * 3 * D; j++) qkv[j] *= 3.0f; /* peaked and flat rows */
        float *att[2], *ctx[2];
        for (int v = 0; v < 2; v++) {
            rf_kernels_force(v ? top : RF_ISA_SCALAR);
            att[v] = malloc((size_t)B * H * T * T * sizeof(float));
            ctx[v] = malloc((size_t)B * T * D * sizeof(float));
            rf_nn_mhsa_heads_fwd(&e, att[v], ctx[v], qkv, B, T, D, H);
        }
        rf_kernels_force(top);
        cr_assert(memcmp(att[0], att[1], (size_t)B * H * T * T * sizeof(float)) == 0, "T=%d: softmax differs", T);
        cr_assert(memcmp(ctx[0], ctx[1], (size_t)B * T * D * sizeof(float)) == 0, "T=%d: context differs", T);
        for (size_t j = 0; j < (size_t)T; j++) cr_assert(att[1][j] >= 0.0f && att[1][j] <= 1.0f);
        for (int v = 0; v < 2; v++) { free(att[v]); free(ctx[v]); }
        free(qkv);
    }
    rf_nn_gemm_release();
}

/* The whole transformer path (GEMM, chunking, lane reductions, attention
 * softmax) gives the same bits on scalar code, AVX2 and AVX-512: a block
 * trained on any kind of node of a cluster matches. */
Test(dense, transformer_block_same_bits_on_every_isa) {
    rf_isa top = need_avx512();
    size_t np = block_params();
    float o[3][28], d[3][560], *g[3];
    static const rf_isa isas[3] = {RF_ISA_SCALAR, RF_ISA_AVX2, RF_ISA_AVX512};
    for (int v = 0; v < 3; v++) {
        g[v] = malloc(np * sizeof(float));
        rf_kernels_force(v == 2 ? top : isas[v]);
        run_block(16, o[v], d[v], g[v], np);
    }
    rf_kernels_force(top);
    for (int v = 0; v < 2; v++) {
        cr_assert(memcmp(o[v], o[2], sizeof o[0]) == 0, "outputs differ between %s and AVX-512", rf_isa_name(isas[v]));
        cr_assert(memcmp(d[v], d[2], sizeof d[0]) == 0, "input gradients differ between %s and AVX-512",
                  rf_isa_name(isas[v]));
        cr_assert(memcmp(g[v], g[2], np * sizeof(float)) == 0, "parameter gradients differ between %s and AVX-512",
                  rf_isa_name(isas[v]));
    }
    for (int v = 0; v < 3; v++) free(g[v]);
}

/* Feature-major inference (src/nn/model.c runs): layer norm across the
 * feature rows and attention on the rows of qkv^T give the row-major
 * functions' values to the bit, on every ISA. */
Test(dense, feature_major_layernorm_and_attention_same_bits) {
    rf_isa top = rf_kernels_cpu_isa();
    rf_engine e;
    rf_engine_builtin(&e);
    rf_rng r;
    rf_rng_init(&r, 33, 0);
    for (int isa = RF_ISA_SCALAR; isa <= (int)top; isa++) {
        rf_kernels_force((rf_isa)isa);
        static const int Ds[] = {5, 16, 64, 70};
        for (int i = 0; i < LEN(Ds); i++) {
            int rows = 77, D = Ds[i], ld = rows + 3;
            float *x = randv(&r, (size_t)rows * D), *g = randv(&r, (size_t)D), *b = randv(&r, (size_t)D);
            float *y = malloc((size_t)rows * D * sizeof(float)), *st = malloc(2 * (size_t)rows * sizeof(float));
            float *xt = malloc((size_t)D * ld * sizeof(float)), *yt = malloc((size_t)D * ld * sizeof(float));
            rf_nn_layernorm_fwd(y, st, x, g, b, rows, D, 1e-6f);
            rf_transpose_f32(xt, ld, x, rows, D, D);
            rf_nn_layernorm_fwd_feat(yt, xt, g, b, rows, D, ld, 1e-6f);
            for (int m = 0; m < rows; m++)
                for (int d = 0; d < D; d++)
                    cr_assert(memcmp(&yt[(size_t)d * ld + m], &y[(size_t)m * D + d], sizeof(float)) == 0,
                              "%s: layer norm D=%d (%d,%d): %.9g feature-major, %.9g row-major",
                              rf_isa_name((rf_isa)isa), D, m, d, yt[(size_t)d * ld + m], y[(size_t)m * D + d]);
            free(x); free(g); free(b); free(y); free(st); free(xt); free(yt);
        }
        static const int Ts[] = {1, 5, 17, 33};
        for (int i = 0; i < LEN(Ts); i++) {
            int B = 3, T = Ts[i], D = 32, H = 2, rows = B * T, ld = rows + 5;
            float *qkv = randv(&r, (size_t)rows * 3 * D), *att = malloc((size_t)B * H * T * T * sizeof(float));
            float *ctx = malloc((size_t)rows * D * sizeof(float)), *S = malloc(2 * (size_t)T * T * sizeof(float));
            float *qkvt = malloc((size_t)3 * D * ld * sizeof(float)), *ctxt = malloc((size_t)D * ld * sizeof(float));
            rf_nn_mhsa_heads_fwd(&e, att, ctx, qkv, B, T, D, H);
            rf_transpose_f32(qkvt, ld, qkv, rows, 3 * D, 3 * D);
            rf_nn_mhsa_heads_fwd_feat(&e, ctxt, qkvt, ld, S, B, T, D, H);
            for (int m = 0; m < rows; m++)
                for (int d = 0; d < D; d++) {
                    float a = ctxt[(size_t)d * ld + m], w = ctx[(size_t)m * D + d];
                    cr_assert(memcmp(&a, &w, sizeof a) == 0,
                              "%s: attention T=%d (%d,%d): %.9g feature-major, %.9g row-major",
                              rf_isa_name((rf_isa)isa), T, m, d, a, w);
                }
            free(qkv); free(att); free(ctx); free(S); free(qkvt); free(ctxt);
        }
    }
    rf_kernels_force(top);
    rf_nn_gemm_release();
}
