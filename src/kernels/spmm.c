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
 * would waste most lanes, so CSR row dot products are used instead, or on
 * AVX-512 the ELL slots (kern_internal.h), which also serve layers with
 * N <= 16 or K <= 16 at any batch. */
#include "kernels/kern_internal.h"

#include <math.h>
#include <string.h>

/* Column chunk: with a 64-row panel, 256 columns are 64 KiB of panel, which
 * stays in L2 (and mostly L1) while all rows of W sweep it; the partial sums
 * of each row are reloaded once per chunk. Measured on Zen 4 (300x784, 90%
 * sparse, batch 64-256): chunks of 256 are 12-15% faster than 1024 or
 * unchunked. */
static int chunk_cols(int K) { return K <= 256 ? (K > 0 ? K : 1) : 256; }

/* Slots tile (b, c) needs: its fullest row's non-zeros in the 16 columns. */
static int ell_tile_slots(const float *W, int N, int K, int b, int c) {
    int most = 0, k1 = 16 * c + 16 < K ? 16 * c + 16 : K;
    for (int n = 16 * b; n < 16 * b + 16 && n < N; n++) {
        int cnt = 0;
        for (int k = 16 * c; k < k1; k++) cnt += W[(size_t)n * K + k] != 0.0f;
        if (cnt > most) most = cnt;
    }
    return most;
}

/* Fills ptr [ceil(N/16) * ceil(K/16) + 1] with the tiles' slot offsets (each
 * tile's count from ell_tile_slots) and returns the total. */
static size_t ell_offsets(const float *W, int N, int K, int64_t *ptr) {
    const int nb = (N + 15) / 16, nc = (K + 15) / 16;
    size_t ns = 0;
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < nc; c++) {
            ptr[(size_t)b * nc + c] = (int64_t)ns;
            ns += (size_t)ell_tile_slots(W, N, K, b, c);
        }
    ptr[(size_t)nb * nc] = (int64_t)ns;
    return ns;
}

static rf_status pack_ell(rf_ctx *ctx, rf_spmat *s, const float *W) {
    const int N = s->N, K = s->K, nb = (N + 15) / 16, nc = (K + 15) / 16;
    s->ell_nc = nc;
    s->ell_tptr = rf_malloc(sizeof(int64_t) * ((size_t)nb * (size_t)nc + 1));
    if (!s->ell_tptr) return rf_error(ctx, RF_ERR_NOMEM, "spmat: out of memory");
    const size_t ns = ell_offsets(W, N, K, s->ell_tptr);
    RF_TRY(rf_check_cap(ctx, (uint64_t)ns * 128u, "sparse matrix slots"));
    s->ell_slots = rf_aligned_alloc(64, ns ? ns * 128 : 64);
    if (!s->ell_slots) return rf_error(ctx, RF_ERR_NOMEM, "spmat: out of memory (%zu slots)", ns);
    memset(s->ell_slots, 0, ns ? ns * 128 : 64);
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < nc; c++) {
            const int k1 = 16 * c + 16 < K ? 16 * c + 16 : K;
            const size_t p = (size_t)s->ell_tptr[(size_t)b * nc + c];
            for (int l = 0; l < 16 && 16 * b + l < N; l++) {
                const float *row = W + (size_t)(16 * b + l) * K;
                int e = 0;   /* e-th non-zero of the row in this chunk: slot p + e, lane l */
                for (int k = 16 * c; k < k1; k++)
                    if (row[k] != 0.0f) {
                        uint8_t *slot = s->ell_slots + (p + (size_t)e) * 128;
                        int32_t off = k - 16 * c;
                        memcpy(slot + 4 * l, &off, 4);
                        memcpy(slot + 64 + 4 * l, &row[k], 4);
                        e++;
                    }
            }
        }
    s->ell_nslots = ns;
    return RF_OK;
}

/* Whether the AVX-512 kernel takes the ELL slots for batches of
 * RF_KERN_SMALL_M rows and more (below that it always does). The panel
 * kernel pays for two transposes per row of X (K values in, N out) and then
 * does one FMA per non-zero and 16 rows; the ELL kernel does no transposes
 * but one vpermps + FMA per slot and row (a pair issues every 1.4 cycles
 * here, an FMA alone every 1.0) and pays for each tile's fullest row.
 * Measured side by side at 90-95%, batch 16 and 64 (docs/kernels.md), ELL
 * wins where there is little to amortise the transposes over: classifier
 * heads (N <= 16: lenet fc3 1.18-1.35x, conv-2 fc3 1.25-1.47x) and 3x3 first
 * convolutions (K <= 16: conv-2 conv1, 1.09-1.24x); 64x64 is a tie and every
 * wider layer loses (0.44-0.92x). */
static int ell_preferred(int N, int K) { return N <= 16 || K <= 16; }

rf_status rf_spmat_pack(rf_ctx *ctx, const float *W, int N, int K, rf_spmat **out) {
    return rf_spmat_pack_layout(ctx, W, N, K, RF_SP_AUTO, out);
}

rf_status rf_spmat_pack_layout(rf_ctx *ctx, const float *W, int N, int K, rf_sp_layout layout, rf_spmat **out) {
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
    /* The slots are built only where a kernel reads them: on AVX-512 CPUs
     * (small batches always take them) or when asked for. */
    if (N > 0 && K > 0 &&
        (layout == RF_SP_ELL || (layout == RF_SP_AUTO && rf_kernels_cpu_isa() >= RF_ISA_AVX512))) {
        rf_status st = pack_ell(ctx, s, W);
        if (st != RF_OK) { rf_spmat_free(s); return st; }
        s->ell_pref = layout == RF_SP_ELL || (layout == RF_SP_AUTO && ell_preferred(N, K));
    }
    *out = s;
    return RF_OK;
}

void rf_spmat_free(rf_spmat *s) {
    if (!s) return;
    rf_free(s->ptr);
    rf_free(s->idx);
    rf_free(s->val);
    rf_free(s->ell_tptr);
    rf_free(s->ell_slots);
    rf_free(s);
}

size_t rf_spmat_nnz(const rf_spmat *s) { return s->nnz; }
int rf_spmat_rows(const rf_spmat *s) { return s->N; }
int rf_spmat_cols(const rf_spmat *s) { return s->K; }

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
    rf_spmm_lay_ref(W, X, RF_ROWS, bias, Y, RF_ROWS, M, M);
}

/* Per output: the bias, then one partial sum per column chunk (the order
 * the panel kernels keep), with X and Y addressed through their layouts. */
void rf_spmm_lay_ref(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y, rf_layout yl,
                     int M, int ld) {
    const int N = W->N, K = W->K;
    const size_t xm = xl == RF_ROWS ? (size_t)K : 1, xk = xl == RF_ROWS ? 1 : (size_t)ld;
    const size_t ym = yl == RF_ROWS ? (size_t)N : 1, yn = yl == RF_ROWS ? 1 : (size_t)ld;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float y = bias ? bias[n] : 0.0f;
            for (int c = 0; c < W->nchunks; c++) {
                const int64_t *ptr = W->ptr + (size_t)c * N;
                float acc = 0.0f;
                for (int64_t j = ptr[n]; j < ptr[n + 1]; j++) acc += W->val[j] * X[(size_t)m * xm + (size_t)W->idx[j] * xk];
                y += acc;
            }
            Y[(size_t)m * ym + (size_t)n * yn] = y;
        }
}

void rf_spmm_panels_(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y, rf_layout yl,
                     int M, int fld, int vec, rf_sp_panel_fn fn) {
    const int N = W->N, K = W->K;
    if (M <= 0 || N <= 0) return;
    float *ws = rf_kern_workspace(((size_t)K + (size_t)N) * RF_KERN_PANEL * sizeof(float));
    if (!ws) { rf_spmm_lay_ref(W, X, xl, bias, Y, yl, M, fld); return; }
    float *xbuf = ws, *ybuf = ws + (size_t)K * RF_KERN_PANEL;
    for (int m0 = 0; m0 < M; m0 += RF_KERN_PANEL) {
        int mp = M - m0 < RF_KERN_PANEL ? M - m0 : RF_KERN_PANEL, ld = (mp + vec - 1) / vec * vec;
        const float *XT = xbuf;
        int ldx = ld;
        if (xl == RF_ROWS) {
            rf_panel_in32_avx2((const uint32_t *)(X + (size_t)m0 * K), mp, K, (uint32_t *)xbuf, ld);
        } else if (mp == ld) {
            XT = X + m0;
            ldx = fld;
        } else {
            for (int k = 0; k < K; k++) {
                memcpy(xbuf + (size_t)k * ld, X + (size_t)k * fld + m0, sizeof(float) * (size_t)mp);
                memset(xbuf + (size_t)k * ld + mp, 0, sizeof(float) * (size_t)(ld - mp));
            }
        }
        float *YT = ybuf;
        int ldy = ld;
        if (yl == RF_FEAT && mp == ld) { YT = Y + m0; ldy = fld; }
        fn(W, XT, ldx, bias, YT, ldy, ld);
        if (yl == RF_ROWS) {
            rf_panel_out32_avx2((const uint32_t *)ybuf, ld, mp, N, (uint32_t *)(Y + (size_t)m0 * N), N);
        } else if (YT == ybuf) {
            for (int n = 0; n < N; n++)
                memcpy(Y + (size_t)n * fld + m0, ybuf + (size_t)n * ld, sizeof(float) * (size_t)mp);
        }
    }
}

void rf_spmm_ell_ref_(const rf_spmat *W, const float *X, const float *bias, float *Y, int M) {
    const int N = W->N, K = W->K, nc = W->ell_nc;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const int b = n / 16, l = n % 16;
            float acc = bias ? bias[n] : 0.0f;
            for (int c = 0; c < nc; c++)
                for (int64_t t = W->ell_tptr[(size_t)b * nc + c]; t < W->ell_tptr[(size_t)b * nc + c + 1]; t++) {
                    const uint8_t *slot = W->ell_slots + (size_t)t * 128;
                    int32_t off;
                    float w;
                    memcpy(&off, slot + 4 * l, 4);
                    memcpy(&w, slot + 64 + 4 * l, 4);
                    acc = fmaf(X[(size_t)m * K + 16 * c + (off & 15)], w, acc);
                }
            Y[(size_t)m * N + n] = acc;
        }
}
