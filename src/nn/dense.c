/* The layers' dense products with their weights, on the engine's backend
 * (raffle/gemm.h rf_gemm_engine: raffle's GEMM, whose every element is one
 * chain of fused multiply-adds in k order, so the result is the same on
 * every ISA and thread count; or OpenBLAS with the engine option
 * gemm=openblas), and the scratch the attention kernels share.
 *
 * Y = X · W^T + b is the bias copied into Y's rows, then the product
 * accumulated onto it: every element is b[n] followed by one fma per k in
 * order (what the earlier row-streaming kernel computed, so vit-tiny's bits
 * did not move when it was replaced). */
#include "nn/layers.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <string.h>

/* Per-thread buffer grown on demand: the callers' small packs. */
typedef struct grow_buf { float *p; size_t cap; } grow_buf;
static _Thread_local grow_buf sc_buf;

static float *grow(grow_buf *b, size_t n) {
    if (n > b->cap) {
        float *p = rf_aligned_alloc(64, (n ? n : 1) * sizeof(float));
        if (!p) return NULL;
        /* a pool worker frees it when it exits (cannot fail: see
         * rf_kern_workspace) */
        (void)rf_pool_on_worker_exit(rf_nn_gemm_release);
        rf_free(b->p);
        b->p = p;
        b->cap = n;
    }
    return b->p;
}

float *rf_nn_gemm_scratch(size_t n) { return grow(&sc_buf, n); }

void rf_nn_gemm_release(void) {
    rf_free(sc_buf.p);
    sc_buf = (grow_buf){NULL, 0};
    rf_gemm_thread_release();
}

/* Through the kernels' transpose (AVX2 8x8 register tiles): at 192-256
 * floats a row-by-row copy lands every store of a row in the same few L1
 * sets. */
void rf_nn_transpose(float *dst, const float *src, int rows, int cols, int lds) {
    rf_transpose_f32(dst, rows, src, rows, cols, lds);
}

/* A stride for W's rows of K floats: at least 1 (an empty K is allowed). */
static int ldw(int K) { return K > 0 ? K : 1; }

void rf_nn_linear_fwd(const rf_engine *e, float *Y, const float *X, const float *W, const float *b, int M, int N,
                      int K, int ldx, int ldy) {
    if (b)
        for (int i = 0; i < M; i++) memcpy(Y + (size_t)i * ldy, b, (size_t)N * sizeof(float));
    rf_gemm_engine(e, 0, 1, M, N, K, X, ldx, W, ldw(K), b != NULL, Y, ldy);
}

void rf_nn_linear_dx(const rf_engine *e, float *dX, const float *dY, const float *W, int M, int N, int K, int ldx,
                     int ldy) {
    rf_gemm_engine(e, 0, 0, M, K, N, dY, ldy, W, ldw(K), 1, dX, ldx);
}

void rf_nn_linear_dw(const rf_engine *e, float *dW, const float *dY, const float *X, int M, int N, int K, int ldx,
                     int ldy) {
    rf_gemm_engine(e, 1, 0, N, K, M, dY, ldy, X, ldx, 1, dW, ldw(K));
}
