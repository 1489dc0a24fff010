/* Row-streaming sgemm for the engine's short-reduction products:
 *
 *   C[M, N] (ldc) = init + A[M, K] (lda) · B[K, N] (ldb)
 *
 * Why: vit-tiny's products are tall and thin (M = batch × 17 tokens = 2176
 * rows, K and N 64 ... 256). OpenBLAS packs both operands on every call; with
 * a 64-long reduction the packing of A costs about a quarter of the kernel
 * time (perf, vit-tiny training: sgemm_kernel 45%, the four copy routines
 * 11.5%). Here B (at most K × 64 floats per column block, L1/L2 resident) is
 * read in place and A is streamed straight from its rows with broadcasts, so
 * nothing is packed except W^T for the forward product (N × K, once per call).
 *
 * Every C element is init followed by one fused multiply-add per p in order
 * p = 0 .. K-1 (init = bias[n], C itself, or 0). The AVX-512, AVX2 and
 * scalar versions perform exactly that sequence per element, so all three
 * give the same bits (tests/unit/test_gemm_rows.c checks it): the result does
 * not depend on which machine of a cluster ran the task.
 *
 * Register blocks: AVX-512 6 rows × 64 columns (24 zmm accumulators, 4 B
 * loads and 6 broadcasts per 24 FMAs); AVX2 6 rows × 16 columns (12 ymm). */
#include "nn/layers.h"
#include "raffle/kernels.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define INLINE static inline __attribute__((always_inline))
#define T_512 __attribute__((target("avx512f,avx2,fma"), optimize("O3")))
#define T_AVX2 __attribute__((target("avx2,fma"), optimize("O3")))

/* ---- reference (and the path on machines without AVX2) --------------------- */
void rf_nn_gemm_rows_ref(float *C, int ldc, const float *A, int lda, int trans_a, const float *B, int ldb,
                         const float *bias, int accumulate, int M, int N, int K) {
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        for (int n = 0; n < N; n++) {
            float s = bias ? bias[n] : accumulate ? c[n] : 0.0f;
            for (int p = 0; p < K; p++) {
                float a = trans_a ? A[(size_t)p * lda + m] : A[(size_t)m * lda + p];
                s = fmaf(a, B[(size_t)p * ldb + n], s);
            }
            c[n] = s;
        }
    }
}

/* ---- AVX-512 ----------------------------------------------------------------
 * acc += b · broadcast(*a) with the broadcast folded into the FMA's memory
 * operand ({1to16}): a vbroadcastss of its own takes an FP pipe slot from
 * the FMAs on AMD Zen 4 (6 per 24 FMAs here: at most 80% of the FMA rate);
 * the folded form costs a load slot per FMA instead, and loads have room
 * (4 + 24 per 24 FMAs at two a cycle). Same product and rounding as
 * _mm512_fmadd_ps(bcast(*a), b, acc). Compilers merge repeated set1 loads
 * into one broadcast register, hence the asm (as in layer_conv.c). */
#define FMA_BCST(acc, b, w) __asm__("vfmadd231ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(w)))

T_512 INLINE void mk512(float *C, int ldc, const float *A, int lda, const float *B, int ldb, const float *bias,
                        int accumulate, int K, const int R, const int NV, __mmask16 last, const int TA) {
    __m512 c[MR][4];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++) {
            __mmask16 mk = v == NV - 1 ? last : (__mmask16)0xFFFF;
            c[r][v] = bias         ? _mm512_maskz_loadu_ps(mk, bias + 16 * v)
                      : accumulate ? _mm512_maskz_loadu_ps(mk, C + (size_t)r * ldc + 16 * v)
                                   : _mm512_setzero_ps();
        }
    for (int p = 0; p < K; p++) {
        __m512 b[4];
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++)
            b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : (__mmask16)0xFFFF, B + (size_t)p * ldb + 16 * v);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            const float *a = TA ? A + (size_t)p * lda + r : A + (size_t)r * lda + p;
            _Pragma("GCC unroll 4")
            for (int v = 0; v < NV; v++) FMA_BCST(c[r][v], b[v], a);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16 * v, v == NV - 1 ? last : (__mmask16)0xFFFF, c[r][v]);
}

#define MK512(r, nv) case (r) * 8 + (nv): mk512(c, ldc, a, lda, b, ldb, bs, accumulate, K, r, nv, last, TA); break;
#define MK512_NV(r) MK512(r, 1) MK512(r, 2) MK512(r, 3) MK512(r, 4)

T_512 INLINE void gemm_rows_512(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                               const float *bias, int accumulate, int M, int N, int K, const int TA) {
    for (int n0 = 0; n0 < N; n0 += 64) {
        int nn = N - n0 < 64 ? N - n0 : 64, nv = (nn + 15) / 16, tail = nn - 16 * (nv - 1);
        __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFFu : (1u << tail) - 1u);
        const float *b = B + n0, *bs = bias ? bias + n0 : NULL;
        for (int m0 = 0; m0 < M; m0 += MR) {
            int r = M - m0 < MR ? M - m0 : MR;
            float *c = C + (size_t)m0 * ldc + n0;
            const float *a = TA ? A + m0 : A + (size_t)m0 * lda;
            switch (r * 8 + nv) {
                MK512_NV(1) MK512_NV(2) MK512_NV(3) MK512_NV(4) MK512_NV(5) MK512_NV(6)
            default: break;
            }
        }
    }
}

/* ---- AVX2 ------------------------------------------------------------------- */
T_AVX2 INLINE __m256 load8(const float *p, int full, __m256i mk) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mk);
}

T_AVX2 INLINE void mk256(float *C, int ldc, const float *A, int lda, const float *B, int ldb, const float *bias,
                         int accumulate, int K, const int R, const int NV, int tail_full, __m256i last, const int TA) {
    __m256 c[MR][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2")
        for (int v = 0; v < NV; v++) {
            int full = v < NV - 1 || tail_full;
            c[r][v] = bias         ? load8(bias + 8 * v, full, last)
                      : accumulate ? load8(C + (size_t)r * ldc + 8 * v, full, last)
                                   : _mm256_setzero_ps();
        }
    for (int p = 0; p < K; p++) {
        __m256 b[2];
        _Pragma("GCC unroll 2")
        for (int v = 0; v < NV; v++) b[v] = load8(B + (size_t)p * ldb + 8 * v, v < NV - 1 || tail_full, last);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m256 a = _mm256_broadcast_ss(TA ? A + (size_t)p * lda + r : A + (size_t)r * lda + p);
            _Pragma("GCC unroll 2")
            for (int v = 0; v < NV; v++) c[r][v] = _mm256_fmadd_ps(a, b[v], c[r][v]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2")
        for (int v = 0; v < NV; v++) {
            float *dst = C + (size_t)r * ldc + 8 * v;
            if (v < NV - 1 || tail_full) _mm256_storeu_ps(dst, c[r][v]);
            else _mm256_maskstore_ps(dst, last, c[r][v]);
        }
}

#define MK256(r, nv) case (r) * 4 + (nv): mk256(c, ldc, a, lda, b, ldb, bs, accumulate, K, r, nv, full, last, TA); break;
#define MK256_NV(r) MK256(r, 1) MK256(r, 2)

T_AVX2 INLINE void gemm_rows_avx2(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                                  const float *bias, int accumulate, int M, int N, int K, const int TA) {
    for (int n0 = 0; n0 < N; n0 += 16) {
        int nn = N - n0 < 16 ? N - n0 : 16, nv = (nn + 7) / 8, tail = nn - 8 * (nv - 1), full = tail == 8;
        __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const float *b = B + n0, *bs = bias ? bias + n0 : NULL;
        for (int m0 = 0; m0 < M; m0 += MR) {
            int r = M - m0 < MR ? M - m0 : MR;
            float *c = C + (size_t)m0 * ldc + n0;
            const float *a = TA ? A + m0 : A + (size_t)m0 * lda;
            switch (r * 4 + nv) {
                MK256_NV(1) MK256_NV(2) MK256_NV(3) MK256_NV(4) MK256_NV(5) MK256_NV(6)
            default: break;
            }
        }
    }
}

T_512 static void rows_512_n(float *C, int ldc, const float *A, int lda, const float *B, int ldb, const float *bias,
                             int accumulate, int M, int N, int K) {
    gemm_rows_512(C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K, 0);
}
T_512 static void rows_512_t(float *C, int ldc, const float *A, int lda, const float *B, int ldb, const float *bias,
                             int accumulate, int M, int N, int K) {
    gemm_rows_512(C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K, 1);
}
T_AVX2 static void rows_avx2_n(float *C, int ldc, const float *A, int lda, const float *B, int ldb, const float *bias,
                               int accumulate, int M, int N, int K) {
    gemm_rows_avx2(C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K, 0);
}
T_AVX2 static void rows_avx2_t(float *C, int ldc, const float *A, int lda, const float *B, int ldb, const float *bias,
                               int accumulate, int M, int N, int K) {
    gemm_rows_avx2(C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K, 1);
}

void rf_nn_gemm_rows(float *C, int ldc, const float *A, int lda, int trans_a, const float *B, int ldb,
                     const float *bias, int accumulate, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    rf_isa isa = rf_kernels_isa();
    if (isa >= RF_ISA_AVX512) (trans_a ? rows_512_t : rows_512_n)(C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K);
    else if (isa >= RF_ISA_AVX2) (trans_a ? rows_avx2_t : rows_avx2_n)(C, ldc, A, lda, B, ldb, bias, accumulate, M, N, K);
    else rf_nn_gemm_rows_ref(C, ldc, A, lda, trans_a, B, ldb, bias, accumulate, M, N, K);
}

/* ---- the engine's products ----------------------------------------------------
 * When to stream rows instead of calling OpenBLAS. In isolation
 * (bench/train/gemm_rows_bench.c, Zen 4, GFLOP/s ratio rows : OpenBLAS, one
 * thread) rows is 1.04-1.26x on vit-tiny's tall products (M = 2176 token
 * rows, reductions 64-256) for the forward, input and weight gradients; at
 * M = 128 (the MLPs, lenet-5's classifier) it wins some shapes (10-wide
 * outputs, most input gradients) and loses others (forward with K >= 300:
 * 0.68-0.91x). Inside training the M = 128 wins did not survive: lenet-5 ran
 * 4% and mlp-800x2 1% slower with them than with OpenBLAS throughout (three
 * alternating runs each; the operands arrive cache-cold there and OpenBLAS's
 * packing pays off). So only tall products (M >= 1024) with reductions up to
 * 256 (forward) use rows. Machines without AVX2 keep OpenBLAS. */
/* The engine option "gemm" (auto, blas, rows: its values are the ones
 * below); machines without AVX2 keep OpenBLAS whatever it says. */
_Static_assert(RF_ENGINE_GEMM_BLAS == 1 && RF_ENGINE_GEMM_ROWS == 2, "forced() returns the option's value");
static int forced(const rf_engine *e) {
    return rf_kernels_isa() < RF_ISA_AVX2 ? RF_ENGINE_GEMM_BLAS : e->v[RF_ENGINE_GEMM];
}

int rf_nn_gemm_rows_on(const rf_engine *e) { return forced(e) != RF_ENGINE_GEMM_BLAS; }

/* Per-thread buffers grown on demand: W^T of the forward product, and the
 * callers' small packs (attention's K^T, V^T). Two, because a caller's pack
 * stays in use across the products it feeds. */
typedef struct grow_buf { float *p; size_t cap; } grow_buf;
static _Thread_local grow_buf wt_buf, sc_buf;

static float *grow(grow_buf *b, size_t n) {
    if (n > b->cap) {
        float *p = rf_aligned_alloc(64, (n ? n : 1) * sizeof(float));
        if (!p) return NULL;
        rf_free(b->p);
        b->p = p;
        b->cap = n;
    }
    return b->p;
}

float *rf_nn_gemm_scratch(size_t n) { return grow(&sc_buf, n); }

void rf_nn_gemm_release(void) {
    rf_free(wt_buf.p);
    rf_free(sc_buf.p);
    wt_buf = (grow_buf){NULL, 0};
    sc_buf = (grow_buf){NULL, 0};
}

static int rows_fwd(const rf_engine *e, int M, int K) {
    int f = forced(e);
    return f ? f == 2 : K <= 256 && M >= 1024;
}

static int rows_dw(const rf_engine *e, int M) {
    int f = forced(e);
    return f ? f == 2 : M >= 1024;
}

static int rows_dx(const rf_engine *e, int M, int N, int K) {
    int f = forced(e);
    return f ? f == 2 : M >= 1024 && N >= 32 && K >= 64;
}

/* Through the kernels' transpose (AVX2 8x8 register tiles): at W^T's
 * 192-256 floats a row-by-row copy lands every store of a row in the same
 * few L1 sets (perf: 5% of a vit-tiny step in such a copy). */
void rf_nn_transpose(float *dst, const float *src, int rows, int cols, int lds) {
    rf_transpose_f32(dst, rows, src, rows, cols, lds);
}

/* W^T of the forward product, [K][N], in the calling thread's buffer. */
static float *wt_of(const float *W, int N, int K) {
    float *wt = grow(&wt_buf, (size_t)N * (size_t)K);
    if (wt) rf_nn_transpose(wt, W, N, K, K);
    return wt;
}

void rf_nn_linear_fwd(const rf_engine *e, float *Y, const float *X, const float *W, const float *b, int M, int N,
                      int K, int ldx, int ldy) {
    if (rows_fwd(e, M, K)) {
        const float *WT = wt_of(W, N, K);
        if (WT) {
            rf_nn_gemm_rows(Y, ldy, X, ldx, 0, WT, N, b, 0, M, N, K);
            return;
        }
    }
    float beta = 0.0f;
    if (b) {
        for (int i = 0; i < M; i++) memcpy(Y + (size_t)i * ldy, b, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, ldx, W, K, beta, Y, ldy);
}

void rf_nn_linear_dx(const rf_engine *e, float *dX, const float *dY, const float *W, int M, int N, int K, int ldx,
                     int ldy) {
    if (rows_dx(e, M, N, K)) rf_nn_gemm_rows(dX, ldx, dY, ldy, 0, W, K, NULL, 1, M, K, N);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dY, ldy, W, K, 1.0f, dX, ldx);
}

void rf_nn_linear_dw(const rf_engine *e, float *dW, const float *dY, const float *X, int M, int N, int K, int ldx,
                     int ldy) {
    if (rows_dw(e, M)) rf_nn_gemm_rows(dW, K, dY, ldy, 1, X, ldx, NULL, 1, N, K, M);
    else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dY, ldy, X, ldx, 1.0f, dW, K);
}
