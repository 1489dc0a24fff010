/* Low-bit kernels: the int4 x u8 GEMM at every ISA level this CPU supports
 * against the test's own product from the unpacked values (same integer
 * groups, same fmaf order: bit for bit), on awkward shapes, both modes,
 * every group size, and the extremes of the value ranges; packing
 * rejections. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/kernels.h"
#include "raffle/lowbit.h"

/* A rejection's message: names what (text) and is one line. */
#define ASSERT_ERR(ctx, text) do { \
        cr_assert(strstr(rf_ctx_error(ctx), (text)), "'%s' lacks '%s'", rf_ctx_error(ctx), (text)); \
        cr_assert_null(strchr(rf_ctx_error(ctx), '\n'), "not one line: %s", rf_ctx_error(ctx)); \
    } while (0)

static int n_levels(rf_isa *lv) {
    rf_isa cpu = rf_kernels_cpu_isa();
    int n = 0;
    for (int i = RF_ISA_SCALAR; i <= (int)cpu; i++) lv[n++] = (rf_isa)i;
    return n;
}

/* The product as kernels.h defines it, from the unpacked q. */
static void q4_naive(const int8_t *q, const float *s, const int32_t *zp, const uint8_t *A, float *Y, int M, int N, int K, int gs) {
    const int G = K / gs;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float y = 0.0f;
            for (int g = 0; g < G; g++) {
                int32_t acc = 0, z = zp ? zp[n * G + g] : 0;
                for (int k = g * gs; k < (g + 1) * gs; k++) acc += (q[(size_t)n * K + k] - z) * (int32_t)A[(size_t)m * K + k];
                y = fmaf((float)acc, s[n * G + g], y);
            }
            Y[(size_t)m * N + n] = y;
        }
}

static void run_q4_case(rf_rng *r, int N, int K, int gs, int affine, int extreme) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int G = K / gs, Mmax = 70;
    int8_t *q = malloc((size_t)N * K);
    float *s = malloc(sizeof(float) * (size_t)N * G);
    int32_t *zp = affine ? malloc(sizeof(int32_t) * (size_t)N * G) : NULL;
    uint8_t *A = malloc((size_t)Mmax * K);
    float *Y = malloc(sizeof(float) * (size_t)Mmax * N), *R = malloc(sizeof(float) * (size_t)Mmax * N);
    for (int i = 0; i < N * K; i++) {
        int v = (int)rf_rng_below(r, 16);
        if (extreme) v = (i / 3) % 2 ? 15 : 0;
        q[i] = (int8_t)(affine ? v : v - 8);
    }
    for (int i = 0; i < N * G; i++) {
        s[i] = 0.001f + 0.01f * rf_rng_uniform(r);
        if (zp) zp[i] = extreme ? (i % 2 ? 15 : 0) : (int32_t)rf_rng_below(r, 16);
    }
    for (int i = 0; i < Mmax * K; i++) A[i] = extreme ? 255 : (uint8_t)rf_rng_u32(r);
    rf_q4mat *W;
    cr_assert_eq(rf_q4mat_pack(&ctx, q, N, K, gs, s, zp, &W), RF_OK, "%s", rf_ctx_error(&ctx));
    static const int Ms[] = {1, 2, 3, 4, 5, 8, 13, 70};
    rf_isa lv[8];
    int nl = n_levels(lv);
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
        int M = Ms[mi];
        q4_naive(q, s, zp, A, R, M, N, K, gs);
        rf_q4gemm_ref(W, A, Y, M);
        cr_assert_eq(memcmp(Y, R, sizeof(float) * (size_t)M * N), 0, "ref %dx%d gs %d affine %d M %d", N, K, gs, affine, M);
        for (int l = 0; l < nl; l++) {
            rf_kernels_force(lv[l]);
            memset(Y, 0xFF, sizeof(float) * (size_t)M * N);
            rf_q4gemm(W, A, Y, M);
            cr_assert_eq(memcmp(Y, R, sizeof(float) * (size_t)M * N), 0, "%s %dx%d gs %d affine %d M %d", rf_isa_name(lv[l]), N, K,
                         gs, affine, M);
        }
        rf_kernels_force(rf_kernels_cpu_isa());
    }
    /* the zero-point correction: Y - Z corr = sum_g s (I - Z R) within rounding */
    const float *corr = rf_q4mat_row_corr(W);
    for (int n = 0; n < N; n++) {
        double c = 0;
        for (int g = 0; g < G; g++) {
            int32_t rsum = 0;
            for (int k = g * gs; k < (g + 1) * gs; k++) rsum += q[(size_t)n * K + k] - (zp ? zp[n * G + g] : 0);
            c += (double)s[n * G + g] * rsum;
        }
        cr_assert(fabs(corr[n] - c) <= 1e-5 * (fabs(c) + 1e-3), "corr[%d] %g vs %g", n, corr[n], c);
    }
    rf_q4mat_free(W);
    free(q); free(s); free(zp); free(A); free(Y); free(R);
}

Test(q4gemm, all_isas_bit_exact_random_shapes) {
    rf_rng r; rf_rng_init(&r, 41, 0);
    static const int shapes[][3] = {{1, 32, 32}, {7, 64, 32}, {16, 64, 64}, {17, 128, 128}, {33, 96, 32}, {50, 256, 64},
                                    {10, 256, 128}, {64, 576, 64}, {3, 8, 8}, {20, 24, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int affine = 0; affine < 2; affine++) run_q4_case(&r, shapes[i][0], shapes[i][1], shapes[i][2], affine, 0);
}

/* all-255 activations against the largest weights of either sign */
Test(q4gemm, all_isas_bit_exact_extremes) {
    rf_rng r; rf_rng_init(&r, 43, 0);
    for (int affine = 0; affine < 2; affine++) {
        run_q4_case(&r, 18, 128, 128, affine, 1);
        run_q4_case(&r, 5, 256, 32, affine, 1);
    }
}

/* From rf_group_quantize to the kernel: the product of the dequantized
 * weights with the activations, within float rounding. */
Test(q4gemm, matches_dequantized_float_product) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 44, 0);
    enum { N = 40, K = 256, M = 9, GS = 64, G = K / GS };
    static float w[N * K], back[N * K], Y[M * N];
    static int8_t q[N * K];
    static uint8_t A[M * K];
    float s[N * G];
    int32_t z[N * G];
    for (int i = 0; i < N * K; i++) w[i] = rf_rng_normal(&r);
    for (int i = 0; i < M * K; i++) A[i] = (uint8_t)rf_rng_u32(&r);
    for (int mode = 0; mode < 2; mode++) {
        int32_t *zp = mode ? z : NULL;
        cr_assert_eq(rf_group_quantize(&ctx, w, N, K, 4, GS, (rf_group_mode)mode, q, s, zp), RF_OK);
        rf_group_dequantize(q, N, K, GS, s, zp, back);
        rf_q4mat *W;
        cr_assert_eq(rf_q4mat_pack(&ctx, q, N, K, GS, s, zp, &W), RF_OK);
        rf_q4gemm(W, A, Y, M);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double want = 0, mag = 0;
                for (int k = 0; k < K; k++) { want += (double)back[n * K + k] * A[m * K + k]; mag += fabs((double)back[n * K + k]) * A[m * K + k]; }
                cr_assert(fabs(Y[m * N + n] - want) <= 1e-5 * mag + 1e-6, "mode %d (%d, %d): %g vs %g", mode, m, n, Y[m * N + n], want);
            }
        rf_q4mat_free(W);
    }
}

Test(q4gemm, pack_rejects_bad_input) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int8_t q[64] = {0};
    float s[4] = {1, 1, 1, 1};
    int32_t z[4] = {0, 0, 0, 16};
    rf_q4mat *W;
    cr_assert_eq(rf_q4mat_pack(&ctx, q, 2, 32, 12, s, NULL, &W), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "group size 12");
    cr_assert_eq(rf_q4mat_pack(&ctx, q, 2, 32, 64, s, NULL, &W), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "dividing K = 32");
    cr_assert_eq(rf_q4mat_pack(&ctx, q, 0, 32, 32, s, NULL, &W), RF_ERR_INVALID);
    cr_assert_eq(rf_q4mat_pack(&ctx, q, 2, 32, 16, s, z, &W), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "zero point 16");
    q[5] = 8;
    cr_assert_eq(rf_q4mat_pack(&ctx, q, 2, 32, 32, s, NULL, &W), RF_ERR_INVALID);
    q[5] = -1;
    z[3] = 0;
    cr_assert_eq(rf_q4mat_pack(&ctx, q, 2, 32, 16, s, z, &W), RF_ERR_INVALID);
    cr_assert_null(W);
    long live = rf_alloc_live();
    q[5] = 0;
    for (long k = 0; k < 50; k++) {
        rf_alloc_fail_after(k);
        rf_status st = rf_q4mat_pack(&ctx, q, 2, 32, 16, s, z, &W);
        rf_alloc_fail_after(-1);
        if (st == RF_OK) { rf_q4mat_free(W); break; }
        cr_assert_eq(st, RF_ERR_NOMEM);
        cr_assert_eq(rf_alloc_live(), live);
    }
    cr_assert_eq(rf_alloc_live(), live);
}

/* ---- N:M sparse fp32 ------------------------------------------------------------ */
static void naive_f64(const float *X, const float *W, const float *b, double *Y, double *mag, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0, a = b ? fabs(b[n]) : 0.0;
            for (int k = 0; k < K; k++) { s += (double)X[(size_t)m * K + k] * W[(size_t)n * K + k]; a += fabs((double)X[(size_t)m * K + k] * W[(size_t)n * K + k]); }
            Y[(size_t)m * N + n] = s;
            mag[(size_t)m * N + n] = a;
        }
}

/* The slot kernel equals its reference bit for bit below RF_NM_SLOTS_MAX_M
 * rows; at and above it, and at the ISA levels without AVX-512, rf_nm_spmm
 * is rf_spmm on the same weights (bit for bit); everything matches a
 * double-precision product. Shapes with partial 16-column chunks and
 * partial 16-channel blocks; 2:4, 1:4, 4:8, 8:16. */
Test(nm_spmm, slots_and_fallback_match_references) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 51, 0);
    static const int shapes[][2] = {{10, 100}, {17, 36}, {64, 64}, {33, 304}, {300, 784}};
    static const int pats[][2] = {{2, 4}, {1, 4}, {4, 8}, {8, 16}, {1, 2}};
    static const int Ms[] = {1, 3, 8, 9, 31, 32, 40};
    rf_isa lv[8];
    int nl = n_levels(lv);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t pi = 0; pi < sizeof pats / sizeof pats[0]; pi++) {
            const int N = shapes[si][0], K = shapes[si][1], n = pats[pi][0], m = pats[pi][1];
            if (K % m) continue;
            float *W = malloc(sizeof(float) * (size_t)N * K), *S = malloc(sizeof(float) * (size_t)N * K), *Wm = malloc(sizeof(float) * (size_t)N * K);
            float *X = malloc(sizeof(float) * 40 * (size_t)K), *Y = malloc(sizeof(float) * 40 * (size_t)N), *R = malloc(sizeof(float) * 40 * (size_t)N);
            double *D = malloc(sizeof(double) * 40 * (size_t)N), *mag = malloc(sizeof(double) * 40 * (size_t)N);
            uint8_t *mask = malloc((size_t)N * K);
            float *bias = malloc(sizeof(float) * (size_t)N);
            for (int i = 0; i < N * K; i++) { W[i] = rf_rng_normal(&r); S[i] = fabsf(W[i]); }
            for (int i = 0; i < 40 * K; i++) X[i] = rf_rng_normal(&r);
            for (int i = 0; i < N; i++) bias[i] = rf_rng_normal(&r);
            cr_assert_eq(rf_nm_select(&ctx, S, N, K, n, m, mask), RF_OK);
            for (int i = 0; i < N * K; i++) Wm[i] = mask[i] ? W[i] : 0.0f;
            rf_nmmat *nm;
            cr_assert_eq(rf_nmmat_pack(&ctx, W, mask, N, K, n, m, &nm), RF_OK, "%s", rf_ctx_error(&ctx));
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                const int M = Ms[mi];
                const float *b = mi % 2 ? bias : NULL;
                naive_f64(X, Wm, b, D, mag, M, N, K);
                rf_nm_spmm_ref(nm, X, b, R, M);
                for (int i = 0; i < M * N; i++) cr_assert(fabs(R[i] - D[i]) <= 1e-5 * mag[i] + 1e-6, "ref %d:%d %dx%d", n, m, N, K);
                for (int l = 0; l < nl; l++) {
                    rf_kernels_force(lv[l]);
                    memset(Y, 0xFF, sizeof(float) * (size_t)M * N);
                    rf_nm_spmm(nm, X, b, Y, M);
                    if (rf_nm_spmm_takes_slots(nm, M)) {
                        cr_assert_eq(memcmp(Y, R, sizeof(float) * (size_t)M * N), 0, "%s slots %d:%d %dx%d M %d", rf_isa_name(lv[l]), n, m, N, K, M);
                    } else {
                        rf_spmm(rf_nmmat_spmat(nm), X, b, R, M);
                        cr_assert_eq(memcmp(Y, R, sizeof(float) * (size_t)M * N), 0, "%s spmm %d:%d %dx%d M %d", rf_isa_name(lv[l]), n, m, N, K, M);
                        rf_nm_spmm_ref(nm, X, b, R, M);
                    }
                    cr_assert(lv[l] < RF_ISA_AVX512 ? !rf_nm_spmm_takes_slots(nm, M) : rf_nm_spmm_takes_slots(nm, M) == (M < RF_NM_SLOTS_MAX_M));
                }
                rf_kernels_force(rf_kernels_cpu_isa());
            }
            rf_nmmat_free(nm);
            free(W); free(S); free(Wm); free(X); free(Y); free(R); free(D); free(mag); free(mask); free(bias);
        }
    rf_kernels_release_workspace();
}

Test(nm_spmm, pack_rejects_bad_input) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float w[48] = {0};
    uint8_t m24[48];
    for (int i = 0; i < 48; i++) m24[i] = i % 4 < 2;
    rf_nmmat *s;
    cr_assert_eq(rf_nmmat_pack(&ctx, w, m24, 2, 24, 2, 4, &s), RF_OK);
    rf_nmmat_free(s);
    cr_assert_eq(rf_nmmat_pack(&ctx, w, m24, 2, 24, 2, 3, &s), RF_ERR_INVALID);   /* 3 does not divide 16 */
    cr_assert_eq(rf_nmmat_pack(&ctx, w, m24, 2, 24, 5, 4, &s), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "5:4");
    cr_assert_eq(rf_nmmat_pack(&ctx, w, m24, 1, 40, 2, 16, &s), RF_ERR_INVALID);  /* 16 does not divide 40 */
    ASSERT_ERR(&ctx, "does not divide K = 40");
    m24[6] = 1;
    cr_assert_eq(rf_nmmat_pack(&ctx, w, m24, 2, 24, 2, 4, &s), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "row 0, group 1 keeps 3");
    cr_assert_null(s);
}
