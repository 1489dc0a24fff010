/* Internal layout of the packed matrices and the per-ISA kernel table.
 *
 * Sparse fp32 (rf_spmat): CSR of W [N, K], cut into column chunks of
 * `kc` columns so that a chunk of the transposed activation panel stays in L2
 * while every row of W sweeps over it. Entries are ordered (chunk, row, k):
 * chunk c, row n owns idx/val[ptr[c*N + n] .. ptr[c*N + n + 1]).
 *
 * int8 (rf_qmat): weights are handled in 4-groups of consecutive k, the unit
 * of vpdpbusd (4 u8*s8 products summed into one int32 lane).
 *  - dense:  `vnni` holds W in the layout [ceil(N/16)][G][16][4] (G = ceil(K/4),
 *            zero-padded), so one 64-byte load gives 16 output channels x 4 k.
 *  - sparse: CSR over 4-groups, cut into chunks of `gc` groups like the fp32
 *            format: chunk c, row n owns gidx/gval[gptr[c*N + n] .. gptr[c*N + n + 1]),
 *            gidx the group index g (k = 4g..4g+3) and gval the 4 int8 weights
 *            as one little-endian dword (zero-padded past K).
 *  - sparse, ELL slots (the VBMI kernel): W cut into tiles of 16 rows x 64
 *            columns (a "block" of 16 output channels, a "chunk" of 64 k).
 *            Tile (b, c) owns slots ell_tptr[b*ell_nc + c] .. [.. + 1]; a
 *            slot is 128 bytes: 64 index bytes then 64 weight bytes. Lane l
 *            of a slot (bytes 4l..4l+3) holds the next 4 non-zeros of row
 *            16b + l in the chunk: their column k - 64c, and their weight
 *            (index 0 and weight 0 once the row runs out). A tile has as
 *            many slots as its fullest row needs (ceil(nnz / 4)), so
 *            vpermb(index, activation chunk) lines up 4 activations with 4
 *            weights in every lane and one vpdpbusd adds them: no
 *            transposes, and no zero weight multiplied unless a row of the
 *            tile has fewer non-zeros than the fullest. */
#ifndef RAFFLE_KERN_INTERNAL_H
#define RAFFLE_KERN_INTERNAL_H

#include "raffle/kernels.h"

struct rf_spmat {
    int      N, K;
    int      kc, nchunks;
    int64_t *ptr;     /* [nchunks * N + 1] */
    int32_t *idx;     /* [nnz] column k */
    float   *val;     /* [nnz] */
    size_t   nnz;
    /* ELL slots (NULL if not built: rf_spmat_pack_layout): tiles of 16 rows x 16 columns; tile (b, c) owns
     * slots ell_tptr[b*ell_nc + c] .. [.. + 1], a slot 128 bytes = 16 int32
     * column offsets (k - 16c) then 16 float weights, lane l holding row
     * 16b + l's next non-zero in the chunk (offset 0, weight 0 once the row
     * runs out). One vpermps of the activation chunk and one FMA per slot
     * and row of X: no transposes. */
    int      ell_nc;
    int64_t *ell_tptr;
    uint8_t *ell_slots;
    size_t   ell_nslots;
    int      ell_pref;  /* take the slots for batches >= RF_KERN_SMALL_M too */
};

/* Which layout the AVX-512 sparse fp32 kernel uses for a matrix:
 * AUTO (rf_spmat_pack): ELL slots built on AVX-512 CPUs, taken for batches
 * below RF_KERN_SMALL_M and for the shapes where they measured faster
 * (N <= 16 or K <= 16), panels otherwise; PANEL: no slots (small batches
 * take row-wise CSR); ELL: slots built on any CPU and always taken on
 * AVX-512 (tests, benchmarks). */
typedef enum { RF_SP_AUTO = 0, RF_SP_PANEL = 1, RF_SP_ELL = 2 } rf_sp_layout;
rf_status rf_spmat_pack_layout(rf_ctx *ctx, const float *W, int N, int K, rf_sp_layout layout, rf_spmat **out);
/* Plain C over the ELL slots, same operation order as the AVX-512 kernel
 * (from the bias, fmaf per slot): bit-identical to it. */
void rf_spmm_ell_ref_(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);

struct rf_qmat {
    int      N, K, G;       /* G = ceil(K / 4) */
    int      sparse;
    int32_t *row_sums;      /* [N] */
    int8_t  *vnni;          /* dense: [ceil(N/16)][G][16][4] */
    int      gc, gchunks;       /* sparse: groups per chunk, chunk count */
    int64_t *gptr;          /* sparse: [gchunks * N + 1] */
    int32_t *gidx;          /* sparse: [ngroups] */
    int32_t *gval;          /* sparse: [ngroups] 4 x int8 */
    size_t   ngroups;
    int      ell_nc;        /* ELL: 64-column chunks */
    int64_t *ell_tptr;      /* ELL: [ceil(N/16) * ell_nc + 1] */
    uint8_t *ell_slots;     /* ELL: [nslots][128], 64-byte aligned */
    size_t   ell_nslots;
};

/* int4 (rf_q4mat): 16 output channels x 8 consecutive k per 64-byte unit:
 * `w` is [nb][K/8][64] (nb = ceil(N/16)); byte 4c + j of unit (b, t) holds
 * u[16b + c][8t + j] in its low nibble and u[16b + c][8t + 4 + j] in its
 * high nibble (c < 16, j < 4), u the stored unsigned value (q + 8
 * symmetric, q affine; the zero point for padding channels past N). So the
 * low nibbles of a unit are one vpdpbusd operand (16 channels x k 8t..8t+3)
 * and the high nibbles the next (k 8t+4..8t+7): one load, a mask and a
 * shift, no lane crossing; on AVX2 each 32-byte half of a unit is 8
 * channels. Per (block, group): 16 scales (0 past N) and 16 stored zero
 * points zz (8 symmetric), channel-contiguous for one vector load. The
 * kernels subtract zz from the unpacked bytes: w = u - zz in [-15, 15]. */
struct rf_q4mat {
    int      N, K, gs, G, nb;   /* G = K / gs groups per row */
    int      affine;
    uint8_t *w;                 /* [nb][K/8][64], 64-byte aligned */
    float   *scales;            /* [nb][G][16] */
    uint8_t *zz;                /* [nb][G][16] */
    float   *corr;              /* [N] rf_q4mat_row_corr */
};

/* N:M (rf_nmmat): per block b of 16 output channels and 16-column chunk c,
 * exactly width(c) n / m slots (width 16, or K % 16 for a last partial
 * chunk), chunk c's first slot at cptr[c]; slot t of block b is 16 column
 * offsets within the chunk (bytes, off[(b * nslots + t) * 16 + l]) and 16
 * weights (w[...], 64-byte aligned), lane l holding channel 16b + l's
 * (t - cptr[c])-th kept entry of the chunk (offset 0, weight 0 past N). */
struct rf_nmmat {
    int      N, K, n, m, nb, nc;
    int64_t *cptr;      /* [nc + 1] */
    int64_t  nslots;    /* per block */
    uint8_t *off;       /* [nb][nslots][16] */
    float   *w;         /* [nb][nslots][16] */
    rf_spmat *sp;       /* the same weights for rf_spmm */
};
void rf_nm_spmm_avx512(const rf_nmmat *W, const float *X, const float *bias, float *Y, int M);

/* Panel width (batch rows per transposed panel) used by the transposed
 * kernels: the widest register block of any ISA (workspace sizing). */
#define RF_KERN_PANEL 64
/* Below this batch the transposed panel would be mostly padding: the kernels
 * use row-by-row CSR dot products instead. */
#define RF_KERN_SMALL_M 8

/* Whether the AVX-512 sparse kernel runs W's ELL slots for M rows (the
 * dispatched ISA must be AVX-512 too): small batches always, wider ones
 * where the layout rule preferred them. */
static inline int rf_spmat_takes_ell(const rf_spmat *W, int M) {
    return W->ell_slots && (W->ell_pref || M < RF_KERN_SMALL_M);
}

typedef void (*rf_spmm_fn)(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);
typedef void (*rf_spmm_lay_fn)(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y,
                               rf_layout yl, int M, int ld);
typedef void (*rf_qgemm_fn)(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);

typedef void (*rf_q4gemm_fn)(const rf_q4mat *W, const uint8_t *A, float *Y, int M);

typedef struct rf_kern_table {
    rf_spmm_fn  spmm;
    rf_spmm_lay_fn spmm_lay;
    rf_qgemm_fn qgemm_dense;
    rf_qgemm_fn qgemm_sparse;
    rf_q4gemm_fn q4gemm;
} rf_kern_table;

/* Per-ISA kernels (src/kernels/simd_*.c). */
void rf_spmm_avx2(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);
void rf_spmm_avx512(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);
void rf_spmm_lay_avx2(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y, rf_layout yl,
                      int M, int ld);
void rf_spmm_lay_avx512(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y,
                        rf_layout yl, int M, int ld);
void rf_qgemm_dense_avx2(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void rf_qgemm_sparse_avx2(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void rf_qgemm_dense_vnni(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void rf_qgemm_sparse_vnni(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void rf_qgemm_sparse_vbmi(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void rf_q4gemm_avx2(const rf_q4mat *W, const uint8_t *A, float *Y, int M);
void rf_q4gemm_vnni(const rf_q4mat *W, const uint8_t *A, float *Y, int M);
void rf_qgemm_dense_ref_(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void rf_qgemm_sparse_ref_(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
/* rf_qmat_pack that also builds the ELL slots of a sparse matrix on CPUs
 * without VBMI when with_ell (tests of the reference). */
rf_status rf_qmat_pack_ell(rf_ctx *ctx, const int8_t *W, int N, int K, int sparse, int with_ell, rf_qmat **out);
/* Plain C over the ELL slots (the VBMI kernel's reference). */
void rf_qgemm_sparse_ell_ref_(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);

/* Calling thread's scratch of at least `bytes` (64-byte aligned), or NULL
 * if it cannot be allocated. Valid until the next call on this thread. */
void *rf_kern_workspace(size_t bytes);

/* CSR product for small batches (M < RF_KERN_SMALL_M): plain C with
 * independent partial sums, used by the AVX2 level, and by AVX-512 for
 * matrices packed without ELL slots. */
void rf_spmm_small_(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);
/* One ISA's sparse rows over a feature-major panel: YT[n * ldy + i] =
 * bias[n] + sum_k W[n, k] XT[k * ldx + i] for i < lanes (a multiple of the
 * ISA's vector width, at most RF_KERN_PANEL). */
typedef void (*rf_sp_panel_fn)(const rf_spmat *W, const float *XT, int ldx, const float *bias, float *YT, int ldy,
                               int lanes);
/* The panel driver every SIMD level shares: cuts M into panels of up to
 * RF_KERN_PANEL samples padded to `vec` lanes, brings each panel of X into
 * feature-major form (transposed from RF_ROWS; read in place from RF_FEAT
 * when the panel is whole, else copied with zero padding), runs `fn`, and
 * writes the result back in Y's layout (transposed to RF_ROWS; in place or
 * copied for RF_FEAT). Falls back to the reference without scratch. */
void rf_spmm_panels_(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y, rf_layout yl,
                     int M, int ld, int vec, rf_sp_panel_fn fn);

/* 32-bit transposes between row-major activations and panels (AVX2 8x8
 * register transposes, simd_avx2.c; ld % 8 == 0):
 *  panel_in:  P[k * ld + i] = src[i * K + k] for i < rows, 0 for rows <= i < ld
 *  panel_out: dst[i * dld + n] = P[n * ld + i] for i < rows, n < ncols */
void rf_panel_in32_avx2(const uint32_t *src, int rows, int K, uint32_t *P, int ld);
/* kernels.h rf_transpose_f32 on AVX2 (panel_out's 8x8 tiles). */
void rf_transpose_avx2(float *dst, int ldd, const float *src, int rows, int cols, int lds);
void rf_panel_out32_avx2(const uint32_t *P, int ld, int rows, int ncols, uint32_t *dst, int dld);
/* u8 activations into dword-group panels: P[g * ld + i] = A[i, 4g..4g+3]
 * (little-endian, zero past K), zero for rows <= i < ld (simd_avx2.c; any K,
 * any alignment of A). */
void rf_panel_in_u8x4_avx2(const uint8_t *A, int rows, int K, uint32_t *P, int ld);

#endif
