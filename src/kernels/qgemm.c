/* int8 weights: packing into the vpdpbusd layouts and the plain C references.
 *
 * C[m, n] = sum_k A[m, k] * W[n, k], A unsigned 8-bit activations, W signed
 * 8-bit weights, int32 accumulation (Jacob et al. 2018, Sec. 2.3: the
 * zero-point terms are handled by the caller with rf_qmat_row_sums). Every
 * product fits in 16 bits and a row of K <= 2^16 products in 32 bits, so all
 * kernels are exact and must agree bit for bit with the reference. */
#include "kernels/kern_internal.h"

#include <string.h>

/* Largest K for which sum_k 255 * 128 cannot overflow int32. */
#define RF_QMAT_MAX_K 65793

static int8_t w_at(const int8_t *W, int N, int K, int n, int k) {
    return (n < N && k < K) ? W[(size_t)n * K + k] : 0;
}

/* Slots tile (b, c) needs: its fullest row's non-zeros in the chunk / 4. */
static int ell_tile_slots(const int8_t *W, int N, int K, int b, int c) {
    int most = 0, k1 = 64 * c + 64 < K ? 64 * c + 64 : K;
    for (int n = 16 * b; n < 16 * b + 16 && n < N; n++) {
        int cnt = 0;
        for (int k = 64 * c; k < k1; k++) cnt += W[(size_t)n * K + k] != 0;
        if (cnt > most) most = cnt;
    }
    return (most + 3) / 4;
}

/* The ELL slots of a sparse int8 matrix (layout in kern_internal.h). The
 * first pass stores each tile's slot offset, the second fills the slots. */
static rf_status pack_ell(rf_ctx *ctx, rf_qmat *q, const int8_t *W) {
    const int N = q->N, K = q->K, nb = (N + 15) / 16, nc = K > 0 ? (K + 63) / 64 : 0;
    q->ell_nc = nc;
    q->ell_tptr = rf_malloc(sizeof(int64_t) * ((size_t)nb * (size_t)nc + 1));
    if (!q->ell_tptr) return rf_error(ctx, RF_ERR_NOMEM, "qmat: out of memory");
    size_t ns = 0;
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < nc; c++) {
            q->ell_tptr[(size_t)b * nc + c] = (int64_t)ns;
            ns += (size_t)ell_tile_slots(W, N, K, b, c);
        }
    q->ell_tptr[(size_t)nb * nc] = (int64_t)ns;
    RF_TRY(rf_check_cap(ctx, (uint64_t)ns * 128u, "int8 sparse slots"));
    q->ell_slots = ns ? rf_aligned_alloc(64, ns * 128) : NULL;
    if (ns && !q->ell_slots) return rf_error(ctx, RF_ERR_NOMEM, "qmat: out of memory (%zu slots)", ns);
    if (ns) memset(q->ell_slots, 0, ns * 128);
    for (int b = 0; b < nb; b++)
        for (int c = 0; c < nc; c++) {
            const int k1 = 64 * c + 64 < K ? 64 * c + 64 : K;
            const size_t s = (size_t)q->ell_tptr[(size_t)b * nc + c];
            for (int l = 0; l < 16 && 16 * b + l < N; l++) {
                const int8_t *row = W + (size_t)(16 * b + l) * K;
                int e = 0;   /* e-th non-zero of the row in this chunk: slot e / 4, byte 4l + e % 4 */
                for (int k = 64 * c; k < k1; k++)
                    if (row[k]) {
                        uint8_t *slot = q->ell_slots + (s + (size_t)(e / 4)) * 128;
                        slot[4 * l + e % 4] = (uint8_t)(k - 64 * c);
                        slot[64 + 4 * l + e % 4] = (uint8_t)row[k];
                        e++;
                    }
            }
        }
    q->ell_nslots = ns;
    return RF_OK;
}

rf_status rf_qmat_pack(rf_ctx *ctx, const int8_t *W, int N, int K, int sparse, rf_qmat **out) {
    return rf_qmat_pack_ell(ctx, W, N, K, sparse, 0, out);
}

rf_status rf_qmat_pack_ell(rf_ctx *ctx, const int8_t *W, int N, int K, int sparse, int with_ell, rf_qmat **out) {
    *out = NULL;
    if (N < 0 || K < 0) return rf_error(ctx, RF_ERR_INVALID, "qmat: invalid shape %dx%d", N, K);
    if (K > RF_QMAT_MAX_K)
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "qmat: K = %d could overflow int32 accumulators (max %d)", K, RF_QMAT_MAX_K);
    if (N > 0 && K > 0 && !W) return rf_error(ctx, RF_ERR_INVALID, "qmat: NULL weights");
    rf_qmat *q = rf_calloc(1, sizeof *q);
    if (!q) return rf_error(ctx, RF_ERR_NOMEM, "qmat: out of memory");
    q->N = N; q->K = K; q->G = (K + 3) / 4; q->sparse = sparse ? 1 : 0;
    q->row_sums = rf_calloc((size_t)N + 1, sizeof(int32_t));
    if (!q->row_sums) goto nomem;
    for (int n = 0; n < N; n++) {
        int32_t s = 0;
        for (int k = 0; k < K; k++) s += W[(size_t)n * K + k];
        q->row_sums[n] = s;
    }
    if (!q->sparse) {
        size_t nb = ((size_t)N + 15) / 16;
        size_t bytes = nb * (size_t)q->G * 64;
        if (rf_check_cap(ctx, bytes, "int8 matrix") != RF_OK) { rf_qmat_free(q); return RF_ERR_LIMIT; }
        q->vnni = rf_aligned_alloc(64, bytes);
        if (!q->vnni) goto nomem;
        for (size_t b = 0; b < nb; b++)
            for (int g = 0; g < q->G; g++)
                for (int l = 0; l < 16; l++)
                    for (int j = 0; j < 4; j++)
                        q->vnni[((b * q->G + g) * 16 + l) * 4 + j] = w_at(W, N, K, (int)b * 16 + l, 4 * g + j);
        q->ngroups = (size_t)N * q->G;
    } else {
        size_t ng = 0;
        for (int n = 0; n < N; n++)
            for (int g = 0; g < q->G; g++) {
                int nz = 0;
                for (int j = 0; j < 4; j++) nz |= w_at(W, N, K, n, 4 * g + j) != 0;
                ng += nz;
            }
        /* 128 groups (512 columns) per chunk: the dword panel chunk is then
         * 32 KiB at 64 batch rows (this core's L1d; the fp32 chunk of 256
         * columns is 64 KiB), and each row's partial sums are reloaded half
         * as often as with 64 groups. Measured in two A/B runs of the bench:
         * sparse int8 at 90-95% on the K > 256 layers 3-10% faster than 64
         * groups (lenet fc1/fc2, conv-2 fc1), one shape within noise (conv2). */
        q->gc = q->G <= 128 ? (q->G > 0 ? q->G : 1) : 128;
        q->gchunks = q->G > 0 ? (q->G + q->gc - 1) / q->gc : 1;
        q->gptr = rf_malloc(sizeof(int64_t) * ((size_t)q->gchunks * (size_t)N + 1));
        q->gidx = rf_malloc(sizeof(int32_t) * ng);
        q->gval = rf_malloc(sizeof(int32_t) * ng);
        if (!q->gptr || !q->gidx || !q->gval) goto nomem;
        size_t p = 0;
        for (int c = 0; c < q->gchunks; c++) {
            int g0 = c * q->gc, g1 = g0 + q->gc < q->G ? g0 + q->gc : q->G;
            for (int n = 0; n < N; n++) {
                q->gptr[(size_t)c * N + n] = (int64_t)p;
                for (int g = g0; g < g1; g++) {
                    uint32_t v = 0;
                    for (int j = 0; j < 4; j++) v |= (uint32_t)(uint8_t)w_at(W, N, K, n, 4 * g + j) << (8 * j);
                    if (v) { q->gidx[p] = g; q->gval[p] = (int32_t)v; p++; }
                }
            }
        }
        q->gptr[(size_t)q->gchunks * N] = (int64_t)p;
        q->ngroups = ng;
        /* The slots only serve the VBMI kernel: built on CPUs that have it
         * (or when asked for, so the reference can be tested anywhere). */
        if (with_ell || rf_kernels_cpu_isa() >= RF_ISA_AVX512VBMI) {
            rf_status st = pack_ell(ctx, q, W);
            if (st != RF_OK) { rf_qmat_free(q); return st; }
        }
    }
    *out = q;
    return RF_OK;
nomem:
    rf_qmat_free(q);
    return rf_error(ctx, RF_ERR_NOMEM, "qmat: out of memory (%dx%d)", N, K);
}

void rf_qmat_free(rf_qmat *q) {
    if (!q) return;
    rf_free(q->row_sums);
    rf_free(q->vnni);
    rf_free(q->gptr);
    rf_free(q->gidx);
    rf_free(q->gval);
    rf_free(q->ell_tptr);
    rf_free(q->ell_slots);
    rf_free(q);
}

const int32_t *rf_qmat_row_sums(const rf_qmat *q) { return q->row_sums; }
int rf_qmat_rows(const rf_qmat *q) { return q->N; }
int rf_qmat_cols(const rf_qmat *q) { return q->K; }
int rf_qmat_is_sparse(const rf_qmat *q) { return q->sparse; }
size_t rf_qmat_groups(const rf_qmat *q) { return q->ngroups; }

/* Reference, reading the packed layout with plain indexing (so it also
 * checks the packing against the tests' own row-major products). */
void rf_qgemm_dense_ref_(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    const int N = W->N, K = W->K, G = W->G;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const int8_t *w = W->vnni + ((size_t)(n / 16) * G * 16 + (size_t)(n % 16)) * 4;
            int32_t acc = 0;
            for (int k = 0; k < K; k++)
                acc += (int32_t)A[(size_t)m * K + k] * (int32_t)w[(size_t)(k / 4) * 64 + (k % 4)];
            C[(size_t)m * N + n] = acc;
        }
}

void rf_qgemm_sparse_ref_(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    const int N = W->N, K = W->K;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int32_t acc = 0;
            for (int c = 0; c < W->gchunks; c++) {
                const int64_t *ptr = W->gptr + (size_t)c * N;
                for (int64_t p = ptr[n]; p < ptr[n + 1]; p++) {
                    uint32_t v = (uint32_t)W->gval[p];
                    for (int j = 0; j < 4; j++) {
                        int k = 4 * W->gidx[p] + j;
                        if (k < K) acc += (int32_t)A[(size_t)m * K + k] * (int32_t)(int8_t)(uint8_t)(v >> (8 * j));
                    }
                }
            }
            C[(size_t)m * N + n] = acc;
        }
}

void rf_qgemm_sparse_ell_ref_(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    const int N = W->N, K = W->K, nc = W->ell_nc;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const int b = n / 16, l = n % 16;
            int32_t acc = 0;
            for (int c = 0; c < nc; c++)
                for (int64_t s = W->ell_tptr[(size_t)b * nc + c]; s < W->ell_tptr[(size_t)b * nc + c + 1]; s++) {
                    const uint8_t *slot = W->ell_slots + (size_t)s * 128;
                    for (int j = 0; j < 4; j++) {
                        int k = 64 * c + (slot[4 * l + j] & 63);
                        /* padding bytes have weight 0; their index 0 is in range */
                        int32_t a = k < K ? A[(size_t)m * K + k] : 0;
                        acc += a * (int32_t)(int8_t)slot[64 + 4 * l + j];
                    }
                }
            C[(size_t)m * N + n] = acc;
        }
}
