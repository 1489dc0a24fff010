/* Sparse fp32 weights: packing, the plain C reference, and the small-batch
 * CSR path shared by the SIMD kernels (the panel transposes are in
 * simd_avx2.c).
 *
 * Why a transposed panel: Y[M,N] = X[M,K] W^T with W sparse. A row n of W
 * has few non-zeros (k, w); each contributes w * X[:, k] to Y[:, n]. With X
 * transposed into a panel P[k][i] (i = batch row), X[:, k] is a contiguous
 * vector, so one non-zero is one broadcast FMA over 16 batch rows (AVX-512)
 * and the accumulators for Y[:, n] stay in registers for the whole row: no
 * gathers, no scatters. The panel costs M*K moves, amortised over the
 * density*N uses of each panel row. The kernels write Y^T panels and
 * transpose them back. For tiny batches (M < RF_KERN_SMALL_M) the padding
 * would waste most lanes, so CSR row dot products are used instead. */
#include "kernels/kern_internal.h"

/* Column chunk: with a 64-row panel, 256 columns are 64 KiB of panel, which
 * stays in L2 (and mostly L1) while all rows of W sweep it; the partial sums
 * of each row are reloaded once per chunk. Measured on Zen 4 (300x784, 90%
 * sparse, batch 64-256): chunks of 256 are 12-15% faster than 1024 or
 * unchunked. */
static int chunk_cols(int K) { return K <= 256 ? (K > 0 ? K : 1) : 256; }

rf_status rf_spmat_pack(rf_ctx *ctx, const float *W, int N, int K, rf_spmat **out) {
    *out = NULL;
    if (N < 0 || K < 0) return rf_error(ctx, RF_ERR_INVALID, "spmat: invalid shape %dx%d", N, K);
    if (N > 0 && K > 0 && !W) return rf_error(ctx, RF_ERR_INVALID, "spmat: NULL weights");
    size_t nnz = 0;
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++) nnz += W[i] != 0.0f;
    RF_TRY(rf_check_cap(ctx, (uint64_t)nnz * 8u, "sparse matrix"));
    rf_spmat *s = rf_calloc(1, sizeof *s);
    if (!s) return rf_error(ctx, RF_ERR_NOMEM, "spmat: out of memory");
    s->N = N; s->K = K; s->nnz = nnz;
    s->kc = chunk_cols(K);
    s->nchunks = K > 0 ? (K + s->kc - 1) / s->kc : 1;
    s->ptr = rf_malloc(sizeof(int64_t) * ((size_t)s->nchunks * (size_t)N + 1));
    s->idx = rf_malloc(sizeof(int32_t) * nnz);
    s->val = rf_malloc(sizeof(float) * nnz);
    if (!s->ptr || !s->idx || !s->val) {
        rf_spmat_free(s);
        return rf_error(ctx, RF_ERR_NOMEM, "spmat: out of memory (%zu non-zeros)", nnz);
    }
    size_t p = 0;
    for (int c = 0; c < s->nchunks; c++) {
        int k0 = c * s->kc, k1 = k0 + s->kc < K ? k0 + s->kc : K;
        for (int n = 0; n < N; n++) {
            s->ptr[(size_t)c * N + n] = (int64_t)p;
            const float *row = W + (size_t)n * K;
            for (int k = k0; k < k1; k++)
                if (row[k] != 0.0f) { s->idx[p] = k; s->val[p] = row[k]; p++; }
        }
    }
    s->ptr[(size_t)s->nchunks * N] = (int64_t)p;
    *out = s;
    return RF_OK;
}

void rf_spmat_free(rf_spmat *s) {
    if (!s) return;
    rf_free(s->ptr);
    rf_free(s->idx);
    rf_free(s->val);
    rf_free(s);
}

size_t rf_spmat_nnz(const rf_spmat *s) { return s->nnz; }
int rf_spmat_rows(const rf_spmat *s) { return s->N; }
int rf_spmat_cols(const rf_spmat *s) { return s->K; }

void rf_spmm_rows_(const rf_spmat *W, const float *X, const float *bias, float *Y, int m0, int m1) {
    const int N = W->N, K = W->K;
    for (int m = m0; m < m1; m++) {
        const float *x = X + (size_t)m * K;
        float *y = Y + (size_t)m * N;
        for (int n = 0; n < N; n++) y[n] = bias ? bias[n] : 0.0f;
        for (int c = 0; c < W->nchunks; c++) {
            const int64_t *ptr = W->ptr + (size_t)c * N;
            for (int n = 0; n < N; n++) {
                float acc = 0.0f;
                for (int64_t j = ptr[n]; j < ptr[n + 1]; j++) acc += W->val[j] * x[W->idx[j]];
                y[n] += acc;
            }
        }
    }
}

/* Small batches: one pass over W serves up to 4 rows of X (the index and
 * value loads are shared), and each row keeps 4 partial sums over alternate
 * non-zeros, so the adds are not serialised on one FMA-latency chain. */
static inline __attribute__((always_inline)) void small_rows(const rf_spmat *W, const float *X, const float *bias,
                                                             float *Y, int m0, const int MC) {
    const int N = W->N, K = W->K;
    const float *x[4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < MC; r++) {
        x[r] = X + (size_t)(m0 + r) * K;
        for (int n = 0; n < N; n++) Y[(size_t)(m0 + r) * N + n] = bias ? bias[n] : 0.0f;
    }
    for (int c = 0; c < W->nchunks; c++) {
        const int64_t *ptr = W->ptr + (size_t)c * N;
        for (int n = 0; n < N; n++) {
            float a[4][4] = {{0.0f}};
            int64_t j = ptr[n], e = ptr[n + 1];
            for (; j + 4 <= e; j += 4)
                _Pragma("GCC unroll 4")
                for (int u = 0; u < 4; u++) {
                    float v = W->val[j + u];
                    int32_t k = W->idx[j + u];
                    _Pragma("GCC unroll 4")
                    for (int r = 0; r < MC; r++) a[r][u] += v * x[r][k];
                }
            for (; j < e; j++)
                _Pragma("GCC unroll 4")
                for (int r = 0; r < MC; r++) a[r][0] += W->val[j] * x[r][W->idx[j]];
            _Pragma("GCC unroll 4")
            for (int r = 0; r < MC; r++) Y[(size_t)(m0 + r) * N + n] += (a[r][0] + a[r][1]) + (a[r][2] + a[r][3]);
        }
    }
}

void rf_spmm_small_(const rf_spmat *W, const float *X, const float *bias, float *Y, int M) {
    int m0 = 0;
    for (; m0 + 4 <= M; m0 += 4) small_rows(W, X, bias, Y, m0, 4);
    switch (M - m0) {
    case 3: small_rows(W, X, bias, Y, m0, 3); break;
    case 2: small_rows(W, X, bias, Y, m0, 2); break;
    case 1: small_rows(W, X, bias, Y, m0, 1); break;
    default: break;
    }
}

void rf_spmm_ref(const rf_spmat *W, const float *X, const float *bias, float *Y, int M) {
    rf_spmm_rows_(W, X, bias, Y, 0, M);
}
