/* N:M sparse fp32: packing into padding-free slots, the scalar reference,
 * and the choice between the slot kernel (nm_simd.c, AVX-512) and rf_spmm.
 *
 * Why slots: with m dividing 16, every row keeps exactly 16 n / m entries
 * of each 16-column chunk, so raffle's ELL layout (kern_internal.h), which
 * pays for each tile's fullest row, needs no padding, and its tile
 * pointers and 4-byte column offsets can go: a slot is 16 byte offsets and
 * 16 weights. Measured against rf_spmm on unstructured masks of the same
 * sparsity (bench/lowbit/nm_vs_unstructured.c, docs/kernels.md, two runs):
 * 1.03-4.9x faster at one row (2.9-4.9x on conv-2's 256x12544, whose slots
 * are streamed once), 1.3-2.5x at 16-17 rows on the L2-resident shapes
 * (0.96-0.97 on a 10x256 head at 2:4), 0.94-1.4x from 64 rows, where
 * rf_spmm's transposed panels do one FMA per non-zero and 16 rows without
 * the permutes, and 0.66-0.91x at 16 rows on 256x12544 (3-8 MB of slots
 * streamed from L3 once per 8 rows). Hence the rule in
 * rf_nm_spmm_takes_slots: slots below 8 rows, and below 32 while they fit
 * 1 MiB. */
#include "kernels/kern_internal.h"

#include <math.h>
#include <string.h>

rf_status rf_nmmat_pack(rf_ctx *ctx, const float *W, const uint8_t *mask, int N, int K, int n, int m, rf_nmmat **out) {
    *out = NULL;
    if (N <= 0 || K <= 0) return rf_error(ctx, RF_ERR_INVALID, "nmmat: invalid shape %dx%d", N, K);
    if (n < 1 || n > m || m < 2 || 16 % m)
        return rf_error(ctx, RF_ERR_INVALID, "nmmat: %d:%d (the kernel takes 1 <= N <= M with M dividing 16)", n, m);
    if (K % m) return rf_error(ctx, RF_ERR_INVALID, "nmmat: M = %d does not divide K = %d", m, K);
    if (!W || !mask) return rf_error(ctx, RF_ERR_INVALID, "nmmat: NULL weights or mask");
    for (size_t g = 0; g < (size_t)N * (size_t)K / (size_t)m; g++) {
        int kept = 0;
        for (int j = 0; j < m; j++) kept += mask[g * (size_t)m + (size_t)j] != 0;
        if (kept != n)
            return rf_error(ctx, RF_ERR_INVALID, "nmmat: row %zu, group %zu keeps %d, not %d of %d", g * (size_t)m / (size_t)K,
                            (g * (size_t)m % (size_t)K) / (size_t)m, kept, n, m);
    }
    rf_nmmat *s = rf_calloc(1, sizeof *s);
    if (!s) return rf_error(ctx, RF_ERR_NOMEM, "nmmat: out of memory");
    s->N = N; s->K = K; s->n = n; s->m = m; s->nb = (N + 15) / 16; s->nc = (K + 15) / 16;
    s->cptr = rf_malloc(sizeof(int64_t) * (size_t)(s->nc + 1));
    float *dense = rf_malloc(sizeof(float) * (size_t)N * (size_t)K);
    if (!s->cptr || !dense) goto nomem;
    int64_t t = 0;
    for (int c = 0; c < s->nc; c++) {
        s->cptr[c] = t;
        t += (K - 16 * c < 16 ? K - 16 * c : 16) / m * n;
    }
    s->cptr[s->nc] = t;
    s->nslots = t;
    size_t slots = (size_t)s->nb * (size_t)t;
    rf_status st = rf_check_cap(ctx, slots * 80, "N:M slots");
    if (st) { rf_free(dense); rf_nmmat_free(s); return st; }
    s->off = rf_aligned_alloc(64, slots * 16 + 64);
    s->w = rf_aligned_alloc(64, slots * 64 + 64);
    if (!s->off || !s->w) goto nomem;
    memset(s->off, 0, slots * 16);
    memset(s->w, 0, slots * 64);
    for (int b = 0; b < s->nb; b++)
        for (int l = 0; l < 16 && 16 * b + l < N; l++)
            for (int c = 0; c < s->nc; c++) {
                const size_t row = (size_t)(16 * b + l) * (size_t)K;
                int e = 0, k1 = 16 * c + 16 < K ? 16 * c + 16 : K;
                for (int k = 16 * c; k < k1; k++)
                    if (mask[row + (size_t)k]) {
                        size_t slot = (size_t)b * (size_t)t + (size_t)(s->cptr[c] + e++);
                        s->off[slot * 16 + (size_t)l] = (uint8_t)(k - 16 * c);
                        s->w[slot * 16 + (size_t)l] = W[row + (size_t)k];
                    }
            }
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++) dense[i] = mask[i] ? W[i] : 0.0f;
    st = rf_spmat_pack(ctx, dense, N, K, &s->sp);
    rf_free(dense);
    if (st) { rf_nmmat_free(s); return st; }
    *out = s;
    return RF_OK;
nomem:
    rf_free(dense);
    rf_nmmat_free(s);
    return rf_error(ctx, RF_ERR_NOMEM, "nmmat: out of memory (%dx%d)", N, K);
}

void rf_nmmat_free(rf_nmmat *s) {
    if (!s) return;
    rf_free(s->cptr);
    rf_free(s->off);
    rf_free(s->w);
    rf_spmat_free(s->sp);
    rf_free(s);
}

const rf_spmat *rf_nmmat_spmat(const rf_nmmat *W) { return W->sp; }

int rf_nm_spmm_takes_slots(const rf_nmmat *W, int M) {
    if (rf_kernels_isa() < RF_ISA_AVX512) return 0;
    /* below 8 rows the slots are streamed once whatever their size */
    return M < RF_KERN_SMALL_M || (M < RF_NM_SLOTS_MAX_M && (uint64_t)W->nb * (uint64_t)W->nslots * 80u <= RF_NM_SLOTS_MAX_BYTES);
}

void rf_nm_spmm(const rf_nmmat *W, const float *X, const float *bias, float *Y, int M) {
    if (M <= 0) return;
    if (rf_nm_spmm_takes_slots(W, M)) rf_nm_spmm_avx512(W, X, bias, Y, M);
    else rf_spmm(W->sp, X, bias, Y, M);
}

void rf_nm_spmm_ref(const rf_nmmat *W, const float *X, const float *bias, float *Y, int M) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < W->N; n++) {
            const int b = n / 16, l = n % 16;
            float acc = bias ? bias[n] : 0.0f;
            for (int c = 0; c < W->nc; c++)
                for (int64_t t = W->cptr[c]; t < W->cptr[c + 1]; t++) {
                    size_t slot = (size_t)b * (size_t)W->nslots + (size_t)t;
                    acc = fmaf(X[(size_t)m * W->K + 16 * c + W->off[slot * 16 + (size_t)l]], W->w[slot * 16 + (size_t)l], acc);
                }
            Y[(size_t)m * W->N + n] = acc;
        }
}
