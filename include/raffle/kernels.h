/* raffle kernels: dense, sparse and int8 matrix products for inference.
 *
 * Layout everywhere is the linear layer's: Y[M, N] = X[M, K] · W[N, K]^T,
 * M = batch (or im2col rows), N = output features, K = input features. W is
 * packed once into an opaque kernel-specific form. Every fast kernel
 * (_avx512, _avx2) has a plain C reference; rf_kernels_init() picks one per
 * kernel from CPUID at start-up (lower it with RAFFLE_ISA=scalar|avx2|
 * avx512novnni|avx512novbmi|avx512). */
#ifndef RAFFLE_KERNELS_H
#define RAFFLE_KERNELS_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels are ordered: each includes the ones below. AVX512VBMI is AVX-512
 * with VNNI and VBMI (vpermb), which the sparse int8 kernel's byte permutes
 * need (Ice Lake, Sapphire Rapids, Zen 4). */
typedef enum rf_isa {
    RF_ISA_SCALAR = 0, RF_ISA_AVX2 = 1, RF_ISA_AVX512 = 2, RF_ISA_AVX512VNNI = 3, RF_ISA_AVX512VBMI = 4
} rf_isa;
/* Detects the CPU once (thread-safe); returns the ISA in use. */
rf_isa      rf_kernels_init(void);
const char *rf_isa_name(rf_isa isa);
/* Forces an ISA (tests): clamps to what the CPU supports; returns the ISA set. */
rf_isa      rf_kernels_force(rf_isa isa);
/* ISA currently dispatched to (initialises on first use). */
rf_isa      rf_kernels_isa(void);
/* Best ISA this CPU and OS support (CPUID + XGETBV), ignoring RAFFLE_ISA. */
rf_isa      rf_kernels_cpu_isa(void);
/* The fast kernels keep one scratch buffer per thread (transposed activation
 * panels; the dense GEMM's packing buffers), grown on demand and reused.
 * This frees the calling thread's buffers;
 * call it before a thread exits or before a leak check. If scratch cannot be
 * allocated the kernels fall back to the reference (same result, slower). */
void        rf_kernels_release_workspace(void);

/* Dense fp32: Y = X · W^T (+ bias if non-NULL), on the calling thread's
 * own raffle GEMM (raffle/gemm.h rf_gemm_thread: the same bits on every ISA
 * as the layers' products). */
void rf_linear_f32(const float *X, const float *W, const float *bias, float *Y, int M, int N, int K);

/* Activation layouts. RF_ROWS: [M, F], one row per sample (what layers
 * exchange). RF_FEAT: [F, M], one row per feature with the M samples
 * contiguous: the conv layer's column matrix colT[K, cols] and its
 * per-channel output, and the inside of feature-major runs of linear layers
 * in a deployed inference forward (nn.h). The sparse kernels vectorise over
 * samples, so they work on RF_FEAT panels internally: an RF_FEAT operand
 * saves them the transpose that an RF_ROWS one costs. For M = 1 the two
 * layouts are the same bytes. */
typedef enum rf_layout { RF_ROWS = 0, RF_FEAT = 1 } rf_layout;
/* Row stride (floats, >= M) of RF_FEAT operands below. rf_feat_ld(M) is the
 * one raffle's layers use: M, plus 16 when M is a multiple of 256, because
 * rows 1 KiB x 4 apart map to the same L1 sets and a panel of them would
 * not stay in cache (64x576 at M = 2,048: 305-362 us at stride M, 235-249
 * at M + 16; docs/kernels.md). */
int  rf_feat_ld(int M);
/* rf_linear_f32 with X and Y in the given layouts (sgemm's transpose flags:
 * the same product, no copies); ld is the row stride of the RF_FEAT operands. */
void rf_linear_f32_lay(const float *X, rf_layout xl, const float *W, const float *bias, float *Y, rf_layout yl,
                       int M, int N, int K, int ld);

/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols: the
 * transposed copy of a rows x cols block, between the two layouts above
 * (AVX2 8x8 register transposes on CPUs that have them; the _ref loop, in
 * 16x16 tiles, otherwise). dst and src must not overlap. */
void rf_transpose_f32(float *dst, int ldd, const float *src, int rows, int cols, int lds);
void rf_transpose_f32_ref(float *dst, int ldd, const float *src, int rows, int cols, int lds);

/* ---- sparse fp32 ---- */
typedef struct rf_spmat rf_spmat;   /* opaque packed sparse W */
/* Packs the non-zeros of W [N, K] (copies). Returns new; free with rf_spmat_free. */
rf_status rf_spmat_pack(rf_ctx *ctx, const float *W, int N, int K, rf_spmat **out);
void      rf_spmat_free(rf_spmat *s);
size_t    rf_spmat_nnz(const rf_spmat *s);
/* Y [M, N] = X [M, K] · W^T + bias (bias may be NULL). Uses the dispatched kernel. */
void      rf_spmm(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);
void      rf_spmm_ref(const rf_spmat *W, const float *X, const float *bias, float *Y, int M);
/* The same product with X [M, K] or [K, M] and Y [M, N] or [N, M] (rf_layout),
 * ld >= M the row stride of the RF_FEAT operands (ignored for RF_ROWS ones).
 * rf_spmm_lay(.., RF_ROWS, .., RF_ROWS, M, M) is rf_spmm. X and Y must not overlap. */
void      rf_spmm_lay(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y, rf_layout yl,
                      int M, int ld);
void      rf_spmm_lay_ref(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y,
                          rf_layout yl, int M, int ld);

/* ---- N:M sparse fp32 (rf_nmmat, rf_nm_spmm) ----
 * W[N, K] whose mask keeps exactly n of every m consecutive k (m dividing
 * 16 and K): 2:4, 1:4, 4:8. Below 8 rows, and below RF_NM_SLOTS_MAX_M rows
 * while its slots fit RF_NM_SLOTS_MAX_BYTES, an AVX-512 CPU runs the N:M slot kernel
 * (ELL slots without padding: 16 channels x the s-th kept column of a
 * 16-column chunk, 80 bytes a slot); otherwise, and on other CPUs, the
 * product is rf_spmm on the same weights (docs/kernels.md, "N:M"). Y = X ·
 * W^T + bias, X [M, K] and Y [M, N] row-major. */
typedef struct rf_nmmat rf_nmmat;
#define RF_NM_SLOTS_MAX_M 32
#define RF_NM_SLOTS_MAX_BYTES (1u << 20)
/* Packs W (entries where mask is 0 are ignored) with its n:m mask (copies).
 * RF_ERR_INVALID for a pattern the kernel cannot take or a mask that is
 * not exactly n:m. Returns new; free with rf_nmmat_free. */
rf_status rf_nmmat_pack(rf_ctx *ctx, const float *W, const uint8_t *mask, int N, int K, int n, int m, rf_nmmat **out);
void      rf_nmmat_free(rf_nmmat *s);   /* accepts NULL */
void      rf_nm_spmm(const rf_nmmat *W, const float *X, const float *bias, float *Y, int M);
/* The slot kernel's plain C reference (fmaf per slot from the bias, chunks
 * and slots in storage order): bit-identical to the AVX-512 slot kernel. */
void      rf_nm_spmm_ref(const rf_nmmat *W, const float *X, const float *bias, float *Y, int M);
/* 1 if rf_nm_spmm runs the slot kernel for M rows on the dispatched ISA. */
int       rf_nm_spmm_takes_slots(const rf_nmmat *W, int M);
/* The rf_spmat the wide batches run (borrowed, valid while W lives). */
const rf_spmat *rf_nmmat_spmat(const rf_nmmat *W);

/* ---- int8: u8 activations × s8 weights -> s32 accumulators ----
 * C[M, N] = sum_k A[m, k] * W[n, k] (exact integer arithmetic). The caller
 * handles zero points through rf_qmat_row_sums and requantization. */
typedef struct rf_qmat rf_qmat;     /* opaque packed int8 W (dense or sparse) */
/* Packs W [N, K] int8 (copies). sparse=1 keeps only non-zero 4-groups. */
rf_status rf_qmat_pack(rf_ctx *ctx, const int8_t *W, int N, int K, int sparse, rf_qmat **out);
void      rf_qmat_free(rf_qmat *q);
/* Sum over k of W[n, k] for each row n (for activation zero-point correction);
 * borrowed: valid while q lives. */
const int32_t *rf_qmat_row_sums(const rf_qmat *q);
void      rf_qgemm(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
void      rf_qgemm_ref(const rf_qmat *W, const uint8_t *A, int32_t *C, int M);
/* Shape and storage of a packed int8 matrix. */
int       rf_qmat_rows(const rf_qmat *q);      /* N */
int       rf_qmat_cols(const rf_qmat *q);      /* K */
int       rf_qmat_is_sparse(const rf_qmat *q);
/* Number of stored 4-groups (sparse) or of all 4-groups (dense): the work unit. */
size_t    rf_qmat_groups(const rf_qmat *q);
/* ---- 4-bit weights x u8 activations (rf_q4mat, rf_q4gemm) ----
 * W[N, K] holds int4 values with one fp32 scale (and, affine, one zero
 * point) per group of gs consecutive k (include/raffle/lowbit.h,
 * rf_group_quantize; the RF_STORE_INT4 checkpoint kind). The product is
 *   Y[m, n] = sum over groups g, in increasing order, of
 *             scale[n, g] * I[m, n, g],  I = sum_{k in g} (q[n, k] - zp[n, g]) * A[m, k],
 * I in exact int32, the float sum one fmaf per group starting from 0, so
 * every ISA gives the same bits. An activation zero point Z is the caller's:
 * sum_g scale * sum_k (q - zp) (A - Z) = Y - Z * rf_q4mat_row_corr(W)[n]. */
typedef struct rf_q4mat rf_q4mat;   /* opaque packed int4 W */
/* Packs q[N * K] (symmetric: in [-8, 7], zero_points NULL; affine: in
 * [0, 15] with zero_points[N * K / gs] in [0, 15]) with scales[N * K / gs]
 * (row-major groups, as rf_group_quantize fills them). gs must be a
 * multiple of 8 that divides K. Copies. Returns new; free with rf_q4mat_free. */
rf_status rf_q4mat_pack(rf_ctx *ctx, const int8_t *q, int N, int K, int gs, const float *scales,
                        const int32_t *zero_points, rf_q4mat **out);
void      rf_q4mat_free(rf_q4mat *w);    /* accepts NULL */
/* corr[n] = sum over g (fmaf, increasing g) of scale[n, g] * sum_{k in g} (q - zp);
 * borrowed, valid while W lives. */
const float *rf_q4mat_row_corr(const rf_q4mat *W);
void      rf_q4gemm(const rf_q4mat *W, const uint8_t *A, float *Y, int M);
void      rf_q4gemm_ref(const rf_q4mat *W, const uint8_t *A, float *Y, int M);
int       rf_q4mat_rows(const rf_q4mat *W);        /* N */
int       rf_q4mat_cols(const rf_q4mat *W);        /* K */
int       rf_q4mat_group(const rf_q4mat *W);       /* gs */
/* Bytes of packed weights, scales and zero points the kernel streams per call. */
size_t    rf_q4mat_bytes(const rf_q4mat *W);

/* Operations (2 per multiply-add, zero padding included) the dispatched
 * kernel executes for M rows: what fraction-of-peak figures divide by.
 * Sparse fp32: 2*M*nnz on panels and row-wise CSR, 2*M*16*slots on ELL
 * slots; int8: 2*M*N*K dense, 8*M*groups sparse, 2*M*64*slots on ELL. */
double    rf_spmm_work_ops(const rf_spmat *W, int M);
double    rf_qgemm_work_ops(const rf_qmat *W, int M);
int       rf_spmat_rows(const rf_spmat *s);    /* N */
int       rf_spmat_cols(const rf_spmat *s);    /* K */

/* ---- machine peaks (used by the benchmarks to report fraction of peak) ----
 * Each runs a register-resident loop on the calling thread for about
 * `seconds` (best of several timed slices) with the widest ISA dispatched:
 * fp32 FMA (enough independent accumulators to hide FMA latency) in GFLOP/s,
 * counting an FMA as 2 flops, and int8 VNNI vpdpbusd in GOPS (each u8*s8
 * product-accumulate counts 2 ops); without VNNI the int8 figure is the
 * AVX2 vpmaddwd path's. */
double    rf_bench_fp32_peak(double seconds);
double    rf_bench_int8_peak(double seconds);
/* CPU seconds used by the calling thread (CLOCK_THREAD_CPUTIME_ID). Kernel
 * timings use it: on an oversubscribed machine wall time counts the time a
 * long call spends descheduled, which inflates long calls more than short
 * ones and would bias every ratio between them. */
double    rf_thread_seconds(void);

#ifdef __cplusplus
}
#endif
#endif
