/* Kernels: every fast kernel against its plain C reference, and the
 * references against naive products, at every ISA level this CPU supports,
 * on awkward shapes (1, 3, 17, 1000+ rows/columns, K spanning several column
 * chunks), empty rows, 0%/100% sparsity, and int8 extremes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/kernels.h"
#include "kernels/kern_internal.h"

typedef struct { int N, K; } shape;
static const shape shapes[] = {
    {1, 1}, {3, 17}, {17, 3}, {10, 100}, {64, 9}, {1030, 33}, {33, 1030}, {5, 2100}, {24, 4100}, {300, 784},
};
static const int batches[] = {1, 3, 7, 8, 17, 64, 65, 130};
static const double sparsities[] = {0.0, 0.5, 0.9, 1.0};

/* Random matrix with the given fraction of zeros; every 7th row all zero. */
static void fill_w(rf_rng *r, float *W, int N, int K, double sparsity) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            float v = rf_rng_normal(r);
            W[(size_t)n * K + k] = (n % 7 == 6 || rf_rng_uniform_double(r) < sparsity) ? 0.0f : v;
        }
}

static int n_levels(rf_isa *lv) {
    rf_isa cpu = rf_kernels_cpu_isa();
    int n = 0;
    for (int i = RF_ISA_SCALAR; i <= (int)cpu; i++) lv[n++] = (rf_isa)i;
    return n;
}

static void naive_f32(const float *X, const float *W, const float *b, double *Y, double *mag, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0, a = b ? fabs(b[n]) : 0.0;
            for (int k = 0; k < K; k++) {
                double p = (double)X[(size_t)m * K + k] * W[(size_t)n * K + k];
                s += p; a += fabs(p);
            }
            Y[(size_t)m * N + n] = s; mag[(size_t)m * N + n] = a;
        }
}

static void check_close(const float *y, const double *want, const double *mag, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-5 * mag[i] + 1e-6;
        cr_assert(fabs((double)y[i] - want[i]) <= tol, "%s: element %zu: %.9g vs %.9g", what, i, (double)y[i], want[i]);
    }
}

Test(kernels, isa_detection_and_force) {
    rf_isa cpu = rf_kernels_cpu_isa();
    cr_assert(rf_kernels_init() <= cpu);
    cr_assert_eq(rf_kernels_force(RF_ISA_SCALAR), RF_ISA_SCALAR);
    cr_assert_eq(rf_kernels_isa(), RF_ISA_SCALAR);
    cr_assert_eq(rf_kernels_force(RF_ISA_AVX512VBMI), cpu);  /* clamps to the CPU */
    cr_assert_str_eq(rf_isa_name(RF_ISA_AVX512VBMI), "avx512vbmi");
    cr_assert_str_eq(rf_isa_name(RF_ISA_AVX2), "avx2");
    cr_assert_str_eq(rf_isa_name((rf_isa)9), "?");
}

/* rf_transpose_f32 on every level: the exact transposed copy, strides
 * padded on both sides, nothing written past a row of dst. */
Test(kernels, transpose_every_isa_exact) {
    static const int dims[] = {1, 3, 7, 8, 9, 16, 17, 33, 100};
    rf_isa lv[8];
    int nl = n_levels(lv);
    rf_rng r;
    rf_rng_init(&r, 44, 0);
    for (int a = 0; a < (int)(sizeof dims / sizeof dims[0]); a++)
        for (int b = 0; b < (int)(sizeof dims / sizeof dims[0]); b++) {
            int rows = dims[a], cols = dims[b], lds = cols + 3, ldd = rows + 5;
            float *src = malloc(sizeof(float) * rows * lds), *dst = malloc(sizeof(float) * cols * ldd);
            for (int i = 0; i < rows * lds; i++) src[i] = rf_rng_normal(&r);
            for (int l = 0; l < nl; l++) {
                rf_kernels_force(lv[l]);
                for (int i = 0; i < cols * ldd; i++) dst[i] = -7.0f;
                if (l == 0) rf_transpose_f32_ref(dst, ldd, src, rows, cols, lds);
                else rf_transpose_f32(dst, ldd, src, rows, cols, lds);
                for (int c = 0; c < cols; c++)
                    for (int i = 0; i < ldd; i++)
                        cr_assert_eq(dst[(size_t)c * ldd + i], i < rows ? src[(size_t)i * lds + c] : -7.0f,
                                     "%s %dx%d (%d,%d)", rf_isa_name(lv[l]), rows, cols, c, i);
            }
            free(src); free(dst);
        }
    rf_kernels_force(rf_kernels_cpu_isa());
}

Test(kernels, dense_linear_matches_naive) {
    rf_rng r; rf_rng_init(&r, 1, 0);
    const int M = 17, N = 33, K = 70;
    float *X = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
    float *Y = malloc(sizeof(float) * M * N);
    double *want = malloc(sizeof(double) * M * N), *mag = malloc(sizeof(double) * M * N);
    for (int i = 0; i < M * K; i++) X[i] = rf_rng_normal(&r);
    fill_w(&r, W, N, K, 0.3);
    for (int i = 0; i < N; i++) b[i] = rf_rng_normal(&r);
    rf_linear_f32(X, W, b, Y, M, N, K);
    naive_f32(X, W, b, want, mag, M, N, K);
    check_close(Y, want, mag, (size_t)M * N, "linear+bias");
    rf_linear_f32(X, W, NULL, Y, M, N, K);
    naive_f32(X, W, NULL, want, mag, M, N, K);
    check_close(Y, want, mag, (size_t)M * N, "linear");
    free(X); free(W); free(b); free(Y); free(want); free(mag);
}

Test(kernels, spmm_all_isas_match_reference_and_naive) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 2, 0);
    rf_isa lv[5]; int nl = n_levels(lv);
    const int maxM = 130;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t sp = 0; sp < sizeof sparsities / sizeof sparsities[0]; sp++) {
            int N = shapes[si].N, K = shapes[si].K;
            float *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
            float *X = malloc(sizeof(float) * maxM * K);
            float *Y = malloc(sizeof(float) * maxM * N), *Yr = malloc(sizeof(float) * maxM * N);
            double *want = malloc(sizeof(double) * maxM * N), *mag = malloc(sizeof(double) * maxM * N);
            fill_w(&r, W, N, K, sparsities[sp]);
            for (int i = 0; i < N; i++) b[i] = rf_rng_normal(&r);
            for (int i = 0; i < maxM * K; i++) X[i] = rf_rng_normal(&r);
            rf_spmat *s;
            cr_assert_eq(rf_spmat_pack(&ctx, W, N, K, &s), RF_OK);
            size_t nnz = 0;
            for (int i = 0; i < N * K; i++) nnz += W[i] != 0.0f;
            cr_assert_eq(rf_spmat_nnz(s), nnz);
            cr_assert_eq(rf_spmat_rows(s), N); cr_assert_eq(rf_spmat_cols(s), K);
            /* bias once, no bias on the odd batches */
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                int M = batches[bi];
                if ((size_t)M * N * K > 6000000u && M > 17) continue;   /* keep the naive product cheap */
                const float *bb = (bi & 1) ? NULL : b;
                naive_f32(X, W, bb, want, mag, M, N, K);
                rf_spmm_ref(s, X, bb, Yr, M);
                check_close(Yr, want, mag, (size_t)M * N, "spmm_ref");
                for (int l = 0; l < nl; l++) {
                    rf_kernels_force(lv[l]);
                    memset(Y, 0xff, sizeof(float) * (size_t)M * N);
                    rf_spmm(s, X, bb, Y, M);
                    for (size_t i = 0; i < (size_t)M * N; i++)
                        cr_assert(fabs((double)Y[i] - want[i]) <= 1e-5 * mag[i] + 1e-6,
                                  "isa %s N=%d K=%d M=%d sp=%.2f elem %zu: %g vs %g",
                                  rf_isa_name(lv[l]), N, K, M, sparsities[sp], i, (double)Y[i], want[i]);
                }
            }
            rf_spmat_free(s);
            free(W); free(b); free(X); free(Y); free(Yr); free(want); free(mag);
        }
    rf_kernels_force(RF_ISA_AVX512VBMI);
    rf_kernels_release_workspace();
}

/* X [M, K] row-major -> the same values in layout xl (feature rows ld
 * apart); Y in layout yl -> [M, N]. */
static void to_layout(const float *rows, float *out, int M, int F, rf_layout l, int ld) {
    for (int m = 0; m < M; m++)
        for (int f = 0; f < F; f++) out[l == RF_ROWS ? (size_t)m * F + f : (size_t)f * ld + m] = rows[(size_t)m * F + f];
}
static void from_layout(const float *in, float *rows, int M, int F, rf_layout l, int ld) {
    for (int m = 0; m < M; m++)
        for (int f = 0; f < F; f++) rows[(size_t)m * F + f] = in[l == RF_ROWS ? (size_t)m * F + f : (size_t)f * ld + m];
}

/* Every combination of activation layouts, sparse at every ISA and dense
 * (sgemm's transpose flags), against the naive product; whole and partial
 * panels (16, 64, 65, 130 samples), feature rows at stride M and M + 5 (the
 * gaps must stay untouched), and the padding of a partial panel must not
 * leak into Y (guard values after it stay). */
Test(kernels, spmm_and_linear_in_every_layout_match_naive) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 21, 0);
    rf_isa lv[5]; int nl = n_levels(lv);
    static const shape lshapes[] = {{1, 1}, {3, 17}, {17, 3}, {10, 100}, {64, 9}, {33, 1030}, {300, 784}};
    static const int lbatches[] = {1, 2, 7, 16, 17, 64, 65, 130};
    const int maxM = 130;
    for (size_t si = 0; si < sizeof lshapes / sizeof lshapes[0]; si++)
        for (size_t sp = 0; sp < sizeof sparsities / sizeof sparsities[0]; sp++) {
            int N = lshapes[si].N, K = lshapes[si].K;
            float *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
            float *X = malloc(sizeof(float) * maxM * K), *XL = malloc(sizeof(float) * (maxM + 5) * K);
            float *Y = malloc(sizeof(float) * ((maxM + 5) * N + 32)), *Yrow = malloc(sizeof(float) * maxM * N);
            double *want = malloc(sizeof(double) * maxM * N), *mag = malloc(sizeof(double) * maxM * N);
            fill_w(&r, W, N, K, sparsities[sp]);
            for (int i = 0; i < N; i++) b[i] = rf_rng_normal(&r);
            for (int i = 0; i < maxM * K; i++) X[i] = rf_rng_normal(&r);
            rf_spmat *s;
            cr_assert_eq(rf_spmat_pack(&ctx, W, N, K, &s), RF_OK);
            for (size_t bi = 0; bi < sizeof lbatches / sizeof lbatches[0]; bi++) {
                int M = lbatches[bi];
                if ((size_t)M * N * K > 6000000u && M > 17) continue;
                const float *bb = (bi & 1) ? NULL : b;
                naive_f32(X, W, bb, want, mag, M, N, K);
                for (int lay = 0; lay < 8; lay++) {
                    rf_layout xl = (rf_layout)((lay >> 1) & 1), yl = (rf_layout)(lay & 1);
                    int ld = lay >= 4 ? M + 5 : M;
                    if (lay >= 4 && xl == RF_ROWS && yl == RF_ROWS) continue;
                    size_t ny = yl == RF_ROWS ? (size_t)M * N : (size_t)ld * N;
                    to_layout(X, XL, M, K, xl, ld);
                    for (int l = -2; l < nl; l++) {   /* -2: dense, -1: reference, then each ISA */
                        for (size_t g = 0; g < ny + 16; g++) Y[g] = 12345.0f;
                        for (int m = 0; m < M; m++)
                            for (int n = 0; n < N; n++) Y[yl == RF_ROWS ? (size_t)m * N + n : (size_t)n * ld + m] = NAN;
                        if (l == -2) rf_linear_f32_lay(XL, xl, W, bb, Y, yl, M, N, K, ld);
                        else if (l == -1) rf_spmm_lay_ref(s, XL, xl, bb, Y, yl, M, ld);
                        else { rf_kernels_force(lv[l]); rf_spmm_lay(s, XL, xl, bb, Y, yl, M, ld); }
                        from_layout(Y, Yrow, M, N, yl, ld);
                        for (size_t g = 0; g < ny + 16; g++)   /* the gaps and past the end stay */
                            if (yl == RF_ROWS ? g >= ny : (g >= ny || (int)(g % (size_t)ld) >= M))
                                cr_assert_eq(Y[g], 12345.0f, "write outside Y at %zu (ld %d)", g, ld);
                        for (size_t i = 0; i < (size_t)M * N; i++)
                            cr_assert(fabs((double)Yrow[i] - want[i]) <= 1e-5 * mag[i] + 1e-6,
                                      "%s x%s y%s N=%d K=%d M=%d sp=%.2f elem %zu: %g vs %g",
                                      l == -2 ? "dense" : l == -1 ? "ref" : rf_isa_name(lv[l]), xl ? "feat" : "rows",
                                      yl ? "feat" : "rows", N, K, M, sparsities[sp], i, (double)Yrow[i], want[i]);
                    }
                }
            }
            rf_spmat_free(s);
            free(W); free(b); free(X); free(XL); free(Y); free(Yrow); free(want); free(mag);
        }
    rf_kernels_force(RF_ISA_AVX512VBMI);
    rf_kernels_release_workspace();
}

/* The layout kernels keep rf_spmm's operation order per output: with X and
 * Y in RF_ROWS they are rf_spmm, and the feature-major forms agree with it
 * bit for bit (same panels, same chunked sums), at every ISA. */
Test(kernels, spmm_layouts_bit_identical_to_rows) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 22, 0);
    rf_isa lv[5]; int nl = n_levels(lv);
    const int M = 100, N = 40, K = 300;   /* two panels, the second partial; two column chunks */
    float *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N), *X = malloc(sizeof(float) * M * K);
    float *XL = malloc(sizeof(float) * M * K), *Y0 = malloc(sizeof(float) * M * N), *Y = malloc(sizeof(float) * M * N);
    float *Yrow = malloc(sizeof(float) * M * N);
    fill_w(&r, W, N, K, 0.9);
    for (int i = 0; i < N; i++) b[i] = rf_rng_normal(&r);
    for (int i = 0; i < M * K; i++) X[i] = rf_rng_normal(&r);
    rf_spmat *s;
    cr_assert_eq(rf_spmat_pack_layout(&ctx, W, N, K, RF_SP_PANEL, &s), RF_OK);
    for (int l = 0; l < nl; l++) {
        rf_kernels_force(lv[l]);
        rf_spmm(s, X, b, Y0, M);
        for (int lay = 0; lay < 4; lay++) {
            rf_layout xl = (rf_layout)(lay >> 1), yl = (rf_layout)(lay & 1);
            to_layout(X, XL, M, K, xl, M);
            rf_spmm_lay(s, XL, xl, b, Y, yl, M, M);
            from_layout(Y, Yrow, M, N, yl, M);
            cr_assert_eq(memcmp(Yrow, Y0, sizeof(float) * M * N), 0, "isa %s layout %d", rf_isa_name(lv[l]), lay);
        }
    }
    rf_spmat_free(s);
    free(W); free(b); free(X); free(XL); free(Y0); free(Y); free(Yrow);
    rf_kernels_force(RF_ISA_AVX512VBMI);
    rf_kernels_release_workspace();
}

Test(kernels, spmm_scratch_failure_falls_back_to_reference) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 3, 0);
    const int M = 40, N = 20, K = 50;
    float W[20 * 50], X[40 * 50], Y[40 * 20], Yr[40 * 20];
    fill_w(&r, W, N, K, 0.8);
    for (int i = 0; i < M * K; i++) X[i] = rf_rng_normal(&r);
    rf_spmat *s;
    cr_assert_eq(rf_spmat_pack(&ctx, W, N, K, &s), RF_OK);
    rf_spmm_ref(s, X, NULL, Yr, M);
    rf_kernels_release_workspace();
    rf_alloc_fail_after(0);
    rf_spmm(s, X, NULL, Y, M);
    rf_alloc_fail_after(-1);
    cr_assert_eq(memcmp(Y, Yr, sizeof Y), 0);
    rf_spmat_free(s);
}

Test(kernels, pack_rejects_bad_input_and_survives_alloc_failure) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_spmat *s = (rf_spmat *)1;
    cr_assert_eq(rf_spmat_pack(&ctx, NULL, -1, 3, &s), RF_ERR_INVALID);
    cr_assert_null(s);
    rf_qmat *q = (rf_qmat *)1;
    cr_assert_eq(rf_qmat_pack(&ctx, NULL, 2, -3, 0, &q), RF_ERR_INVALID);
    cr_assert_null(q);
    cr_assert_eq(rf_qmat_pack(&ctx, NULL, 2, 70000, 0, &q), RF_ERR_UNSUPPORTED);
    float W[12] = {1, 0, 2, 0, 0, 0, 3, 4, 0, 0, 0, 5};
    int8_t Wq[12] = {1, 0, 2, 0, 0, 0, 3, 4, 0, 0, 0, 5};
    long live = rf_alloc_live();
    for (long f = 0; f < 10; f++) {
        rf_alloc_fail_after(f);
        rf_status st = rf_spmat_pack(&ctx, W, 3, 4, &s);
        rf_alloc_fail_after(-1);
        if (st == RF_OK) rf_spmat_free(s); else cr_assert_eq(st, RF_ERR_NOMEM);
        for (int sp = 0; sp < 2; sp++) {
            rf_alloc_fail_after(f);
            st = rf_qmat_pack(&ctx, Wq, 3, 4, sp, &q);
            rf_alloc_fail_after(-1);
            if (st == RF_OK) rf_qmat_free(q); else cr_assert_eq(st, RF_ERR_NOMEM);
        }
    }
    cr_assert_eq(rf_alloc_live(), live);
    rf_spmat_free(NULL);
    rf_qmat_free(NULL);
}

static void naive_q(const uint8_t *A, const int8_t *W, int32_t *C, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int64_t s = 0;
            for (int k = 0; k < K; k++) s += (int64_t)A[(size_t)m * K + k] * W[(size_t)n * K + k];
            C[(size_t)m * N + n] = (int32_t)s;
        }
}

/* mode 0: random; 1: all 255 x +127; 2: all 255 x -128; 3: 255 x alternating
 * +127/-128 (the pattern that saturates vpmaddubsw). */
static void run_qgemm_case(rf_rng *r, int N, int K, double sparsity, int mode) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_isa lv[5]; int nl = n_levels(lv);
    const int maxM = 130;
    int8_t *W = malloc((size_t)N * K + 1);
    uint8_t *A = malloc((size_t)maxM * K + 1);
    int32_t *C = malloc(sizeof(int32_t) * maxM * N + 4), *Cn = malloc(sizeof(int32_t) * maxM * N + 4);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int8_t v;
            switch (mode) {
            case 1: v = 127; break;
            case 2: v = -128; break;
            case 3: v = (k & 1) ? -128 : 127; break;
            default: v = (int8_t)(rf_rng_u32(r) & 0xff); break;
            }
            if (n % 7 == 6 || rf_rng_uniform_double(r) < sparsity) v = 0;
            W[(size_t)n * K + k] = v;
        }
    for (int i = 0; i < maxM * K; i++) A[i] = mode ? 255 : (uint8_t)rf_rng_u32(r);
    for (int sp = 0; sp < 2; sp++) {
        rf_qmat *q;
        cr_assert_eq(rf_qmat_pack(&ctx, W, N, K, sp, &q), RF_OK);
        cr_assert_eq(rf_qmat_rows(q), N); cr_assert_eq(rf_qmat_cols(q), K);
        cr_assert_eq(rf_qmat_is_sparse(q), sp);
        for (int n = 0; n < N; n++) {
            int32_t s = 0;
            for (int k = 0; k < K; k++) s += W[(size_t)n * K + k];
            cr_assert_eq(rf_qmat_row_sums(q)[n], s);
        }
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            int M = batches[bi];
            if ((size_t)M * N * K > 6000000u && M > 17) continue;
            naive_q(A, W, Cn, M, N, K);
            rf_qgemm_ref(q, A, C, M);
            cr_assert_eq(memcmp(C, Cn, sizeof(int32_t) * (size_t)M * N), 0, "ref sparse=%d N=%d K=%d M=%d", sp, N, K, M);
            for (int l = 0; l < nl; l++) {
                rf_kernels_force(lv[l]);
                memset(C, 0x5a, sizeof(int32_t) * (size_t)M * N);
                rf_qgemm(q, A, C, M);
                for (size_t i = 0; i < (size_t)M * N; i++)
                    cr_assert_eq(C[i], Cn[i], "isa %s sparse=%d mode=%d N=%d K=%d M=%d elem %zu: %d vs %d",
                                 rf_isa_name(lv[l]), sp, mode, N, K, M, i, C[i], Cn[i]);
            }
        }
        rf_qmat_free(q);
    }
    rf_kernels_force(RF_ISA_AVX512VBMI);
    free(W); free(A); free(C); free(Cn);
}

Test(kernels, qgemm_all_isas_bit_exact_random) {
    rf_rng r; rf_rng_init(&r, 4, 0);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t sp = 0; sp < sizeof sparsities / sizeof sparsities[0]; sp++)
            run_qgemm_case(&r, shapes[si].N, shapes[si].K, sparsities[sp], 0);
    rf_kernels_release_workspace();
}

Test(kernels, qgemm_all_isas_bit_exact_extremes) {
    rf_rng r; rf_rng_init(&r, 5, 0);
    static const shape ext[] = {{3, 17}, {17, 3}, {33, 1030}, {20, 4100}};
    for (size_t si = 0; si < sizeof ext / sizeof ext[0]; si++)
        for (int mode = 1; mode <= 3; mode++) {
            run_qgemm_case(&r, ext[si].N, ext[si].K, 0.0, mode);
            run_qgemm_case(&r, ext[si].N, ext[si].K, 0.5, mode);
        }
    rf_kernels_release_workspace();
}

/* Column-chunk boundaries of the packed formats (fp32: 256 columns, int8:
 * 128 groups = 512 columns): K exactly one chunk, one column or group past
 * it (a last chunk of a single partial group), and rows whose only non-zeros
 * sit in the last chunk or the first column, so partial sums carried across
 * chunks and rows empty in some chunks are both exercised; batches 64, 65 and
 * 130 take full 64-row panels (4 registers, two accumulator sets on AVX-512)
 * plus 1-register tails. Every ISA level against the naive products. */
static void edge_fill(rf_rng *r, float *W, int8_t *Wq, int N, int K) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int keep;
            switch (n % 4) {
            case 0: keep = k >= K - 3; break;              /* last chunk only */
            case 1: keep = k == 0; break;                  /* first column only */
            case 2: keep = 0; break;                       /* empty */
            default: keep = rf_rng_uniform_double(r) < 0.1; break;
            }
            float v = keep ? rf_rng_normal(r) : 0.0f;
            int8_t q = keep ? (int8_t)((rf_rng_u32(r) % 255) - 127) : 0;
            W[(size_t)n * K + k] = v;
            Wq[(size_t)n * K + k] = keep && q == 0 ? 1 : q;
        }
}

Test(kernels, chunk_boundaries_all_isas) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 8, 0);
    rf_isa lv[5]; int nl = n_levels(lv);
    static const int Ks[] = {256, 257, 511, 512, 513, 516, 1025};
    static const int Ms[] = {64, 65, 130};
    const int N = 13, maxM = 130;
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
        int K = Ks[ki];
        float *W = malloc(sizeof(float) * N * K), *X = malloc(sizeof(float) * maxM * K);
        float *Y = malloc(sizeof(float) * maxM * N);
        double *want = malloc(sizeof(double) * maxM * N), *mag = malloc(sizeof(double) * maxM * N);
        int8_t *Wq = malloc((size_t)N * K);
        uint8_t *A = malloc((size_t)maxM * K);
        int32_t *C = malloc(sizeof(int32_t) * maxM * N), *Cn = malloc(sizeof(int32_t) * maxM * N);
        edge_fill(&r, W, Wq, N, K);
        for (int i = 0; i < maxM * K; i++) { X[i] = rf_rng_normal(&r); A[i] = (uint8_t)rf_rng_u32(&r); }
        rf_spmat *s;
        rf_qmat *q;
        cr_assert_eq(rf_spmat_pack(&ctx, W, N, K, &s), RF_OK);
        cr_assert_eq(rf_qmat_pack(&ctx, Wq, N, K, 1, &q), RF_OK);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int M = Ms[mi];
            naive_f32(X, W, NULL, want, mag, M, N, K);
            naive_q(A, Wq, Cn, M, N, K);
            for (int l = 0; l < nl; l++) {
                rf_kernels_force(lv[l]);
                memset(Y, 0xff, sizeof(float) * (size_t)M * N);
                rf_spmm(s, X, NULL, Y, M);
                for (size_t i = 0; i < (size_t)M * N; i++)
                    cr_assert(fabs((double)Y[i] - want[i]) <= 1e-5 * mag[i] + 1e-6, "spmm isa %s K=%d M=%d elem %zu: %g vs %g",
                              rf_isa_name(lv[l]), K, M, i, (double)Y[i], want[i]);
                memset(C, 0x5a, sizeof(int32_t) * (size_t)M * N);
                rf_qgemm(q, A, C, M);
                for (size_t i = 0; i < (size_t)M * N; i++)
                    cr_assert_eq(C[i], Cn[i], "qgemm isa %s K=%d M=%d elem %zu: %d vs %d", rf_isa_name(lv[l]), K, M, i,
                                 C[i], Cn[i]);
            }
        }
        rf_spmat_free(s);
        rf_qmat_free(q);
        free(W); free(X); free(Y); free(want); free(mag); free(Wq); free(A); free(C); free(Cn);
    }
    rf_kernels_force(RF_ISA_AVX512VBMI);
    rf_kernels_release_workspace();
}

/* Sparse int8 activations at an odd address (and K % 4 != 0): the dword
 * panel is then built by the byte-strided transposes instead of the 32-bit
 * ones; every ISA level must still be bit-exact. */
Test(kernels, qgemm_sparse_unaligned_activations_all_isas) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 9, 0);
    rf_isa lv[5]; int nl = n_levels(lv);
    static const int Ks[] = {33, 64, 100, 101};
    static const int Ms[] = {7, 17, 64, 65};
    const int N = 21, maxM = 65;
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
        int K = Ks[ki];
        int8_t *W = malloc((size_t)N * K);
        uint8_t *buf = malloc((size_t)maxM * K + 1), *A = buf + 1;
        int32_t *C = malloc(sizeof(int32_t) * maxM * N), *Cn = malloc(sizeof(int32_t) * maxM * N);
        for (int i = 0; i < N * K; i++) W[i] = rf_rng_uniform_double(&r) < 0.7 ? 0 : (int8_t)(rf_rng_u32(&r) & 0xff);
        for (int i = 0; i < maxM * K; i++) A[i] = (uint8_t)rf_rng_u32(&r);
        rf_qmat *q;
        cr_assert_eq(rf_qmat_pack(&ctx, W, N, K, 1, &q), RF_OK);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int M = Ms[mi];
            naive_q(A, W, Cn, M, N, K);
            for (int l = 0; l < nl; l++) {
                rf_kernels_force(lv[l]);
                memset(C, 0x5a, sizeof(int32_t) * (size_t)M * N);
                rf_qgemm(q, A, C, M);
                cr_assert_eq(memcmp(C, Cn, sizeof(int32_t) * (size_t)M * N), 0, "isa %s K=%d M=%d",
                             rf_isa_name(lv[l]), K, M);
            }
        }
        rf_qmat_free(q);
        free(W); free(buf); free(C); free(Cn);
    }
    rf_kernels_force(RF_ISA_AVX512VBMI);
    rf_kernels_release_workspace();
}

/* ELL slots (the AVX-512 layouts that read rows of X as they are, no
 * transposes): K across the chunk boundaries (fp32 16 columns, int8 64),
 * N across the 16-row blocks, every tail of the 8-row batch blocks, a
 * skewed block (one full row among sparse and empty ones: many slots of
 * padding). The C references against the naive products on any CPU; on
 * AVX-512 the fp32 kernel bit-identical to its reference (same operation
 * order), on VBMI the int8 kernel exact. */
Test(kernels, ell_layouts_match_references_bit_for_bit) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 10, 0);
    static const int Ks[] = {1, 9, 15, 16, 17, 63, 64, 65, 100, 129};
    static const int Ns[] = {1, 10, 16, 17, 40};
    static const int Ms[] = {1, 7, 8, 9, 17, 64};
    const int maxM = 64;
    rf_isa cpu = rf_kernels_cpu_isa();
    if (cpu < RF_ISA_AVX512VBMI)
        cr_log_warn("this CPU's best ISA is %s: the references are checked, the AVX-512%s ELL kernels are not",
                    rf_isa_name(cpu), cpu >= RF_ISA_AVX512 ? " VBMI" : "");
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
            int N = Ns[ni], K = Ks[ki];
            float *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N), *X = malloc(sizeof(float) * maxM * K);
            float *Y = malloc(sizeof(float) * maxM * N), *Yr = malloc(sizeof(float) * maxM * N);
            double *want = malloc(sizeof(double) * maxM * N), *mag = malloc(sizeof(double) * maxM * N);
            int8_t *Wq = malloc((size_t)N * K);
            uint8_t *A = malloc((size_t)maxM * K);
            int32_t *C = malloc(sizeof(int32_t) * maxM * N), *Cn = malloc(sizeof(int32_t) * maxM * N);
            fill_w(&r, W, N, K, 0.85);
            if (N > 3) for (int k = 0; k < K; k++) W[3 * K + k] = rf_rng_normal(&r) + 4.0f;   /* one full row */
            for (int i = 0; i < N * K; i++) {
                int8_t q = (int8_t)(rf_rng_u32(&r) & 0xff);
                Wq[i] = W[i] == 0.0f ? 0 : q == 0 ? 1 : q;
            }
            for (int i = 0; i < N; i++) b[i] = rf_rng_normal(&r);
            for (int i = 0; i < maxM * K; i++) { X[i] = rf_rng_normal(&r); A[i] = (uint8_t)rf_rng_u32(&r); }
            rf_spmat *s;
            rf_qmat *q;
            cr_assert_eq(rf_spmat_pack_layout(&ctx, W, N, K, RF_SP_ELL, &s), RF_OK);
            cr_assert_not_null(s->ell_slots);
            cr_assert_eq(rf_qmat_pack_ell(&ctx, Wq, N, K, 1, 1, &q), RF_OK);
            cr_assert_not_null(q->ell_tptr);
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                int M = Ms[mi];
                const float *bb = (mi & 1) ? NULL : b;
                naive_f32(X, W, bb, want, mag, M, N, K);
                rf_spmm_ell_ref_(s, X, bb, Yr, M);
                check_close(Yr, want, mag, (size_t)M * N, "spmm_ell_ref");
                naive_q(A, Wq, Cn, M, N, K);
                memset(C, 0x5a, sizeof(int32_t) * (size_t)M * N);
                rf_qgemm_sparse_ell_ref_(q, A, C, M);
                cr_assert_eq(memcmp(C, Cn, sizeof(int32_t) * (size_t)M * N), 0, "qgemm_ell_ref N=%d K=%d M=%d", N, K, M);
                if (cpu >= RF_ISA_AVX512) {
                    rf_kernels_force(RF_ISA_AVX512);
                    memset(Y, 0xff, sizeof(float) * (size_t)M * N);
                    rf_spmm(s, X, bb, Y, M);
                    cr_assert_eq(memcmp(Y, Yr, sizeof(float) * (size_t)M * N), 0, "spmm ell avx512 N=%d K=%d M=%d", N, K, M);
                }
                if (cpu >= RF_ISA_AVX512VBMI) {
                    rf_kernels_force(RF_ISA_AVX512VBMI);
                    memset(C, 0x5a, sizeof(int32_t) * (size_t)M * N);
                    rf_qgemm(q, A, C, M);
                    cr_assert_eq(memcmp(C, Cn, sizeof(int32_t) * (size_t)M * N), 0, "qgemm vbmi N=%d K=%d M=%d", N, K, M);
                }
            }
            rf_spmat_free(s);
            rf_qmat_free(q);
            free(W); free(b); free(X); free(Y); free(Yr); free(want); free(mag); free(Wq); free(A); free(C); free(Cn);
        }
    rf_kernels_force(RF_ISA_AVX512VBMI);
}

Test(kernels, peaks_are_measured) {
    double f = rf_bench_fp32_peak(0.02), q = rf_bench_int8_peak(0.02);
    cr_assert(f > 0.1 && f < 1e5, "fp32 peak %g", f);
    cr_assert(q > 0.1 && q < 1e6, "int8 peak %g", q);
}

/* ---- deployment through the real forward pass ---------------------------- */
#include "raffle/deploy.h"
#include "raffle/nn.h"
#include "nn/layers.h"

/* Zeroes a random `sparsity` fraction of every prunable weight tensor. */
static void prune_random(rf_model *m, double sparsity, uint64_t seed) {
    rf_rng r; rf_rng_init(&r, seed, 9);
    for (int p = 0; p < m->n_ptensors; p++) {
        const rf_param *t = &m->ptensors[p];
        if (t->role != RF_P_WEIGHT) continue;
        for (size_t i = 0; i < t->numel; i++)
            if (rf_rng_uniform_double(&r) < sparsity) m->params[t->offset + i] = 0.0f;
    }
}

static void deploy_matches_dense_at(const char *preset, double sparsity, int batch, rf_deploy_mode mode, int want_hooks,
                                    double min_speedup_1) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    long live = rf_alloc_live();
    rf_model *m;
    cr_assert_eq(rf_model_create(&ctx, preset, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    prune_random(m, sparsity, 3);
    rf_rng rb; rf_rng_init(&rb, 12, 0);   /* non-zero biases, so a kernel that drops them fails */
    for (int p = 0; p < m->n_ptensors; p++)
        if (m->ptensors[p].role == RF_P_BIAS)
            for (size_t i = 0; i < m->ptensors[p].numel; i++) m->params[m->ptensors[p].offset + i] = 0.1f * rf_rng_normal(&rb);
    size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    float *x = malloc(sizeof(float) * in * batch);
    rf_rng r; rf_rng_init(&r, 8, 0);
    for (size_t i = 0; i < in * (size_t)batch; i++) x[i] = rf_rng_uniform(&r);
    const float *lg;
    cr_assert_eq(rf_model_forward(&ctx, m, x, batch, 0, &lg), RF_OK, "%s", rf_ctx_error(&ctx));
    size_t nl = (size_t)batch * m->n_classes;
    float *dense = malloc(sizeof(float) * nl);
    memcpy(dense, lg, sizeof(float) * nl);
    rf_deploy_opts o; rf_deploy_opts_default(&o);
    o.batch = batch; o.mode = mode; o.min_speedup_1 = min_speedup_1;
    rf_deploy_layer info[64]; int ni = 0;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, info, 64, &ni), RF_OK, "%s", rf_ctx_error(&ctx));
    int hooks = 0, block_hooks = 0;
    for (int i = 0; i < m->n_layers; i++) hooks += m->layers[i].infer_gemm != NULL;
    for (int i = 0; i < m->n_ptensors; i++) block_hooks += m->ptensors[i].infer_gemm != NULL;
    hooks += block_hooks;
    cr_assert(ni > 0);
    for (int i = 0; i < ni; i++) {
        cr_assert(fabs(info[i].sparsity - sparsity) < 0.05, "site %d sparsity %g", i, info[i].sparsity);
        if (mode == RF_DEPLOY_AUTO) cr_assert(info[i].dense_us > 0.0 && info[i].sparse_us > 0.0);
        int installed = info[i].param >= 0 ? m->ptensors[info[i].param].infer_gemm != NULL
                                           : m->layers[info[i].layer].infer_gemm != NULL;
        cr_assert_eq(info[i].sparse, installed);
        /* every installed site has the feature-major form too (conv, and
         * the layers of feature-major runs), except attention layers' */
        if (info[i].param < 0)
            cr_assert_eq(m->layers[info[i].layer].infer_gemm_feat != NULL, installed, "site %d", i);
        else
            cr_assert_eq(m->ptensors[info[i].param].infer_gemm_feat != NULL,
                         installed && m->layers[info[i].layer].type == RF_L_TRANSFORMER, "site %d", i);
        cr_assert_eq(info[i].sparse, info[i].sparse_at_1 || info[i].sparse_at_batch || info[i].sparse_at_batch_feat);
        if (mode == RF_DEPLOY_AUTO && info[i].param < 0 && m->layers[info[i].layer].type != RF_L_CONV2D)
            cr_assert(info[i].dense_feat_us > 0.0 && info[i].sparse_feat_us > 0.0, "site %d timed feature-major", i);
        cr_assert(info[i].rows1 >= 1 && info[i].rows1 <= info[i].rows);
        if (mode == RF_DEPLOY_AUTO) cr_assert(info[i].dense1_us > 0.0 && info[i].sparse1_us > 0.0);
        else cr_assert(info[i].sparse_at_1 && info[i].sparse_at_batch);
        if (mode == RF_DEPLOY_AUTO && min_speedup_1 > 1e6) cr_assert(!info[i].sparse_at_1);
    }
    /* vit-tiny: the four products of each of the 4 blocks run sparse too */
    if (want_hooks && strcmp(preset, "vit-tiny") == 0) cr_assert_eq(block_hooks, 16, "%d block hooks", block_hooks);
    if (want_hooks) cr_assert_eq(hooks, ni, "%s: %d hooks for %d layers", preset, hooks, ni);
    /* Without feature-major runs (model.c), for reference. Not to the bit:
     * row-major, classifier heads (N <= 16) take the ELL slots, which sum in
     * another order than the panels, and sgemm sites see other operand
     * layouts; everything else (layer norm, attention, GELU) is the same
     * arithmetic (test_nn checks a run to the bit). */
    ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_OFF;
    cr_assert_eq(rf_model_forward(&ctx, m, x, batch, 0, &lg), RF_OK, "%s", rf_ctx_error(&ctx));
    float *rows = malloc(sizeof(float) * nl);
    memcpy(rows, lg, sizeof(float) * nl);
    /* every output row-major, but those fused into the ReLU after them or
     * folded into the add after them (model.c, fusion, bn fold) */
    for (int i = 0; i < m->n_layers; i++)
        cr_assert(rf_model_layer_output(m, i) || m->layers[i].out_fused || m->layers[i].out_folded, "layer %d", i);
    double maxabs = 0.0;
    for (size_t i = 0; i < nl; i++) if (fabs(rows[i]) > maxabs) maxabs = fabs(rows[i]);
    /* 2: wherever possible; 1: where the rule says runs pay (the default) */
    for (int runs = 2; runs >= 1; runs--) {
        ctx.engine.v[RF_ENGINE_FEAT_RUNS] = runs;   /* always, then by the rule */
        cr_assert_eq(rf_model_forward(&ctx, m, x, batch, 0, &lg), RF_OK, "%s", rf_ctx_error(&ctx));
        int inner = 0;
        for (int i = 0; i < m->n_layers; i++)
            inner += rf_model_layer_output(m, i) == NULL && !m->layers[i].out_fused && !m->layers[i].out_folded;
        cr_assert_not_null(rf_model_layer_output(m, m->n_layers - 1));
        for (size_t i = 0; i < nl; i++)
            cr_assert(fabs(lg[i] - rows[i]) <= 1e-5 * (maxabs + 1.0), "%s runs=%d logit %zu: %.9g in runs, %.9g row-major",
                      preset, runs, i, lg[i], rows[i]);
        if (mode != RF_DEPLOY_SPARSE) continue;
        /* forced, a run ends at the logits and holds at least fc1..fc2 /
         * flatten..fc2 / patch_embed..head; by the rule only vit-tiny's
         * (whose ends copy 10 floats a sample), and from 2 samples */
        if (runs == 2) cr_assert_geq(inner, 3, "%s: %d layers inside runs", preset, inner);
        else if (strcmp(preset, "vit-tiny") == 0 && batch >= 2) cr_assert_eq(inner, m->n_layers - 1, "%s: %d", preset, inner);
        else cr_assert_eq(inner, 0, "%s: %d layers inside runs by the rule", preset, inner);
    }
    maxabs = 0.0;
    for (size_t i = 0; i < nl; i++) if (fabs(dense[i]) > maxabs) maxabs = fabs(dense[i]);
    for (size_t i = 0; i < nl; i++)
        cr_assert(fabs(lg[i] - dense[i]) <= 1e-4 * (maxabs + 1.0), "%s logit %zu: %g vs dense %g", preset, i, lg[i], dense[i]);
    /* one sample: the calls of rows1 rows take their own decision */
    cr_assert_eq(rf_model_forward(&ctx, m, x, 1, 0, &lg), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int i = 0; i < m->n_classes; i++)
        cr_assert(fabs(lg[i] - dense[i]) <= 1e-4 * (maxabs + 1.0), "%s batch-1 logit %d: %g vs dense %g", preset, i, lg[i], dense[i]);
    rf_deploy_release(m);
    for (int i = 0; i < m->n_layers; i++) cr_assert_null(m->layers[i].infer_gemm);
    for (int i = 0; i < m->n_layers; i++) cr_assert_null(m->layers[i].infer_gemm_feat);
    for (int i = 0; i < m->n_layers; i++) cr_assert_null(m->layers[i].infer_takes);
    for (int i = 0; i < m->n_ptensors; i++) cr_assert_null(m->ptensors[i].infer_gemm);
    for (int i = 0; i < m->n_ptensors; i++) cr_assert_null(m->ptensors[i].infer_gemm_feat);
    rf_deploy_release(NULL);
    rf_model_free(m);
    rf_kernels_release_workspace();
    free(x); free(dense); free(rows);
    cr_assert_eq(rf_alloc_live(), live, "%s: %ld allocations leaked", preset, rf_alloc_live() - live);
}

static void deploy_matches_dense(const char *preset, int batch, rf_deploy_mode mode, int want_hooks) {
    deploy_matches_dense_at(preset, 0.9, batch, mode, want_hooks, 0.0);
}

Test(kernels, deploy_sparse_matches_dense_forward) {
    deploy_matches_dense("lenet-300-100", 20, RF_DEPLOY_SPARSE, 1);
    deploy_matches_dense("conv-2", 3, RF_DEPLOY_SPARSE, 1);
    deploy_matches_dense("vit-tiny", 5, RF_DEPLOY_SPARSE, 1);
}

Test(kernels, deploy_auto_calibrates_and_caches) {
    rf_deploy_clear_cache();
    deploy_matches_dense("lenet-300-100", 64, RF_DEPLOY_AUTO, 0);
    /* A site that runs sgemm for one sample and the sparse kernel for the
     * batch (what 50% sparsity gives on this machine: the sparse kernels
     * lose at batch 1 and win at 64), forced by an unreachable batch-1
     * speed-up: both must match dense, biases included. */
    deploy_matches_dense_at("lenet-300-100", 0.9, 64, RF_DEPLOY_AUTO, 0, 1e9);
    /* The same for conv layers, whose sites are calibrated and run
     * feature-major (sgemm on the column matrix for the one-sample calls). */
    deploy_matches_dense_at("conv-2", 0.95, 4, RF_DEPLOY_AUTO, 0, 1e9);
    /* Calibration runs each layer's forward inside the model: a DAG with
     * residual adds and Winograd convs, and a transformer (layer sites
     * and per-weight sites together). */
    deploy_matches_dense_at("resnet-20", 0.9, 2, RF_DEPLOY_AUTO, 0, 0.0);
    deploy_matches_dense_at("vit-tiny", 0.9, 3, RF_DEPLOY_AUTO, 0, 0.0);
    /* A second deployment of the same shapes reuses the measured times:
     * identical numbers prove the cache was hit (a re-measurement on a
     * shared machine never repeats to the last bit). */
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    prune_random(m, 0.9, 3);
    rf_deploy_opts o; rf_deploy_opts_default(&o);
    o.batch = 64;
    rf_deploy_layer a[8], b[8]; int na, nb;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, a, 8, &na), RF_OK);
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, b, 8, &nb), RF_OK);   /* releases the first */
    cr_assert_eq(na, 3); cr_assert_eq(nb, 3);
    for (int i = 0; i < na; i++) {
        cr_assert_eq(a[i].dense_us, b[i].dense_us);
        cr_assert_eq(a[i].sparse_us, b[i].sparse_us);
        cr_assert_eq(a[i].dense1_us, b[i].dense1_us);
        cr_assert_eq(a[i].sparse1_us, b[i].sparse1_us);
        cr_assert_eq(a[i].rows, 64);
        cr_assert_eq(a[i].rows1, 1);
    }
    cr_assert_eq(a[0].N, 300); cr_assert_eq(a[0].K, 784);
    o.mode = RF_DEPLOY_DENSE;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, a, 8, &na), RF_OK);
    for (int i = 0; i < m->n_layers; i++) cr_assert_null(m->layers[i].infer_gemm);
    cr_assert_eq(rf_deploy_model(&ctx, NULL, &o, a, 8, &na), RF_ERR_INVALID);
    rf_model_free(m);
}

/* Calibration must time the sparse kernel against the dense path the engine
 * really runs for the layer (here Winograd: a 3x3 stride-1 conv with 32
 * channels in and out), not against im2col + GEMM, and a layer whose
 * kernel loses at one batch size must run that path there. Decisions come
 * from given times (rf_deploy_opts.measure), not from the clock: the fake
 * measure runs each probe once and checks, for the conv layer's dense
 * probes, that the output is bit for bit the undeployed model's (the
 * Winograd bits, which differ from im2col + GEMM's: checked below). */
typedef struct fake_clock {
    rf_model *ref;          /* undeployed clone */
    rf_model *m;            /* the model being deployed */
    double dense_s[2], sparse_s[2];   /* [0]: the deployment batch, [1]: one sample */
    int dense_probes[2], matched[2];
} fake_clock;

static rf_status fake_measure(void *ud, const rf_deploy_probe *p, double *sec) {
    fake_clock *c = ud;
    RF_TRY(p->run(p->arg));
    const int one = p->batch == 1;
    if (p->layer == 0 && p->layer_forward && !p->sparse) {
        /* the conv layer reads the model input: the reference runs the
         * same input through the undeployed clone */
        rf_ctx rc; rf_ctx_init(&rc);
        const float *lg;
        RF_TRY(rf_model_forward(&rc, c->ref, c->m->input_ptr, c->m->batch, 0, &lg));
        size_t n = (size_t)c->m->batch * c->m->layers[0].out_size;
        c->dense_probes[one]++;
        c->matched[one] += memcmp(rf_model_layer_output(c->m, 0), rf_model_layer_output(c->ref, 0), n * sizeof(float)) == 0;
    }
    *sec = p->sparse ? c->sparse_s[one] : c->dense_s[one];
    return RF_OK;
}

Test(kernels, deploy_calibrates_against_the_engines_dense_path) {
    static const char *spec =
        "{\"input\":[32,8,8],\"classes\":10,\"layers\":["
        "{\"type\":\"conv2d\",\"name\":\"conv\",\"out\":32,\"kernel\":3,\"padding\":1},"
        "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":10}]}";
    enum { B = 4 };
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m, *ref;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    prune_random(m, 0.9, 3);
    cr_assert_eq(rf_model_clone(&ctx, m, &ref), RF_OK);
    size_t in = 32 * 8 * 8, out = m->layers[0].out_size;
    float *x = malloc(sizeof(float) * in * B), *wino = malloc(sizeof(float) * out * B);
    rf_rng r; rf_rng_init(&r, 8, 0);
    for (size_t i = 0; i < in * B; i++) x[i] = rf_rng_uniform(&r) - 0.5f;
    const float *lg;
    /* the test can tell the paths apart: Winograd's bits are not im2col's */
    cr_assert_eq(rf_model_forward(&ctx, ref, x, B, 0, &lg), RF_OK, "%s", rf_ctx_error(&ctx));
    memcpy(wino, rf_model_layer_output(ref, 0), sizeof(float) * out * B);
    rf_ctx gc; rf_ctx_init(&gc);
    gc.engine.v[RF_ENGINE_CONV] = RF_ENGINE_CONV_GEMM;
    cr_assert_eq(rf_model_forward(&gc, ref, x, B, 0, &lg), RF_OK);
    cr_assert_neq(memcmp(wino, rf_model_layer_output(ref, 0), sizeof(float) * out * B), 0);

    rf_deploy_opts o; rf_deploy_opts_default(&o);
    o.batch = B;
    o.measure = fake_measure;
    rf_deploy_layer info[4]; int ni;
    /* the engine's path is faster than the kernel at both sizes: dense */
    fake_clock c = {ref, m, {1.0, 1.0}, {2.0, 2.0}, {0, 0}, {0, 0}};
    o.measure_ud = &c;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, info, 4, &ni), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(ni, 2);
    cr_assert_eq(info[0].layer, 0);
    cr_assert(c.dense_probes[0] == 1 && c.dense_probes[1] == 1, "%d %d", c.dense_probes[0], c.dense_probes[1]);
    cr_assert(c.matched[0] == 1 && c.matched[1] == 1, "the dense probe ran another path than the engine's");
    cr_assert_eq(info[0].dense_us, 1e6);
    cr_assert_eq(info[0].sparse_us, 2e6);
    cr_assert(!info[0].sparse && !info[0].sparse_at_batch && !info[0].sparse_at_1);
    cr_assert_null(m->layers[0].infer_gemm);
    /* the kernel wins at the batch, loses for one sample: installed, and a
     * one-sample forward runs the layer's own path (Winograd's bits) */
    fake_clock c2 = {ref, m, {2.0, 1.0}, {1.0, 2.0}, {0, 0}, {0, 0}};
    o.measure_ud = &c2;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, info, 4, &ni), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(c2.matched[0] == 1 && c2.matched[1] == 1);
    cr_assert(info[0].sparse && info[0].sparse_at_batch && !info[0].sparse_at_1);
    cr_assert_not_null(m->layers[0].infer_takes);
    cr_assert_eq(rf_model_forward(&ctx, m, x, 1, 0, &lg), RF_OK);
    cr_assert_eq(memcmp(rf_model_layer_output(m, 0), wino, sizeof(float) * out), 0, "one sample did not run Winograd");
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &lg), RF_OK);
    const float *y = rf_model_layer_output(m, 0);
    int differs = 0;
    for (size_t i = 0; i < out * B; i++) {
        cr_assert(fabsf(y[i] - wino[i]) <= 1e-4f * (1.0f + fabsf(wino[i])), "%zu: %g vs %g", i, y[i], wino[i]);
        differs |= y[i] != wino[i];
    }
    cr_assert(differs, "the batch did not run the sparse kernel");
    rf_deploy_release(m);
    cr_assert_null(m->layers[0].infer_takes);
    /* the kernel faster at both sizes: sparse at both */
    fake_clock c3 = {ref, m, {3.0, 3.0}, {1.0, 1.0}, {0, 0}, {0, 0}};
    o.measure_ud = &c3;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, info, 4, &ni), RF_OK);
    cr_assert(info[0].sparse && info[0].sparse_at_batch && info[0].sparse_at_1);
    rf_deploy_release(m);
    rf_model_free(m);
    rf_model_free(ref);
    free(x); free(wino);
}

/* A residual layer reads its source's output from acts: a feature-major run
 * must end at a residual source, never pass through it. */
Test(kernels, feature_major_runs_end_at_residual_sources) {
    static const char *spec =
        "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},"
        "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":64},{\"type\":\"relu\",\"name\":\"r1\"},"
        "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":64},{\"type\":\"residual\",\"from\":\"r1\"},"
        "{\"type\":\"linear\",\"name\":\"fc3\",\"out\":10}]}";
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    prune_random(m, 0.9, 3);
    enum { B = 6 };
    float *x = malloc(sizeof(float) * 784 * B), ref[B * 10];
    rf_rng r; rf_rng_init(&r, 8, 0);
    for (int i = 0; i < 784 * B; i++) x[i] = rf_rng_uniform(&r);
    rf_deploy_opts o; rf_deploy_opts_default(&o);
    o.batch = B; o.mode = RF_DEPLOY_SPARSE;
    cr_assert_eq(rf_deploy_model(&ctx, m, &o, NULL, 0, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    const float *lg;
    ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_OFF;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &lg), RF_OK);
    memcpy(ref, lg, sizeof ref);
    ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_ALWAYS;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &lg), RF_OK);
    ctx.engine.v[RF_ENGINE_FEAT_RUNS] = RF_ENGINE_FEAT_RULE;
    cr_assert_null(rf_model_layer_output(m, 1));       /* fc1: inside the first run */
    cr_assert_not_null(rf_model_layer_output(m, 2));   /* r1: the residual's source ends it */
    for (int i = 0; i < B * 10; i++)
        cr_assert(fabsf(lg[i] - ref[i]) <= 1e-5f * (1.0f + fabsf(ref[i])), "logit %d: %g vs %g", i, lg[i], ref[i]);
    rf_deploy_release(m);
    rf_model_free(m);
    free(x);
}
