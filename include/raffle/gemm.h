/* raffle dense fp32 GEMM: the same bits on every ISA and thread count.
 *
 *   C[M, N] (ldc) = (accumulate ? C : 0) + op(A)[M, K] · op(B)[K, N]
 *
 * Row-major operands as in cblas_sgemm(CblasRowMajor, ...) with alpha = 1
 * and beta = accumulate (0 or 1): op(A)[i][k] is A[i·lda + k], or
 * A[k·lda + i] when trans_a; op(B)[k][j] is B[k·ldb + j], or B[j·ldb + k]
 * when trans_b. With accumulate = 0, C is only written (its old contents,
 * NaN included, are never read), as BLAS does for beta = 0.
 *
 * The order of operations is part of the contract: every element is
 *
 *   acc = accumulate ? C[i][j] : +0.0f;
 *   for k = 0 .. K-1:  acc = fmaf(op(B)[k][j], op(A)[i][k], acc);
 *   C[i][j] = acc;
 *
 * one correctly rounded fused multiply-add per k, in increasing k, and
 * nothing else. The AVX-512 (16 lanes), AVX2 (8 lanes) and scalar kernels
 * all perform exactly this sequence, and the blocking (cache blocks, K
 * blocks carried through C, register tiles, thread partition) only changes
 * which code performs it, so the result is bit-identical whatever the ISA,
 * blocking and thread count (docs/kernels.md, "Dense fp32 GEMM"). The B
 * operand is written first because operand order decides which NaN comes
 * out when several are NaN: the first NaN among op(B)[k][j], op(A)[i][k],
 * acc, quieted (x86's rule for an FMA's first multiplicand, second, addend;
 * every kernel puts B first and the reference spells the rule out).
 *
 * Usage: one rf_gemm per task thread (like an rf_ctx), created from an
 * rf_gemm_cfg: the ISA, an optional thread pool, and optional blocking
 * overrides. It owns its packing buffers, so a product never allocates. */
#ifndef RAFFLE_GEMM_H
#define RAFFLE_GEMM_H

#include "raffle/core.h"
#include "raffle/threads.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values never change (they may be recorded with results). */
typedef enum rf_gemm_isa {
    RF_GEMM_AUTO = 0,   /* the best the CPU has, lowered by RAFFLE_ISA (rf_kernels_isa) */
    RF_GEMM_SCALAR = 1, /* plain C, fmaf */
    RF_GEMM_AVX2 = 2,   /* AVX2 + FMA, 8 lanes */
    RF_GEMM_AVX512 = 3, /* AVX-512F, 16 lanes */
    RF_GEMM_ISA_COUNT_
} rf_gemm_isa;

/* "auto", "scalar", "avx2", "avx512"; "?" if out of range. */
const char *rf_gemm_isa_name(rf_gemm_isa isa);
/* 1 if this CPU (and OS) can run the given ISA's kernels (AUTO: 1). */
int rf_gemm_isa_supported(rf_gemm_isa isa);

typedef struct rf_gemm_cfg {
    rf_gemm_isa isa;  /* RF_GEMM_AUTO (0) or a level the CPU supports */
    rf_pool *pool;    /* borrowed, may be NULL (the calling thread alone); must
                         outlive the rf_gemm and not run other jobs meanwhile */
    int threads;      /* use at most this many of the pool's threads (0: all) */
    /* Blocking overrides, 0 = from the cache sizes read at run time. They
     * change speed only, never results (tests and benchmarks set them). */
    int kc, mc, nc;
} rf_gemm_cfg;

typedef struct rf_gemm rf_gemm;

/* Returns a new GEMM context in *out (free with rf_gemm_free), with packing
 * buffers for every thread it may use. cfg may be NULL (AUTO, no pool).
 * RF_ERR_UNSUPPORTED if cfg->isa is not available on this CPU,
 * RF_ERR_INVALID for negative threads or blocking values, RF_ERR_NOMEM. */
rf_status rf_gemm_create(rf_ctx *ctx, const rf_gemm_cfg *cfg, rf_gemm **out);
void rf_gemm_free(rf_gemm *g);          /* accepts NULL */
/* The ISA the kernels of g run (never AUTO), and the threads a large
 * product uses: what a task records in its metrics. */
rf_gemm_isa rf_gemm_isa_of(const rf_gemm *g);
int rf_gemm_threads(const rf_gemm *g);
/* Blocking in use: kc (K block), mc (rows of A per packed block), nc
 * (columns of B per packed panel), and the register tile mr x nr. */
void rf_gemm_blocking(const rf_gemm *g, int *kc, int *mc, int *nc, int *mr, int *nr);
/* Message of g's last error ("" if none); never NULL. */
const char *rf_gemm_error(const rf_gemm *g);

/* The product above on g's ISA and threads. A, B are borrowed read-only and
 * may alias each other, not C. Strides: lda >= (trans_a ? M : K),
 * ldb >= (trans_b ? K : N), ldc >= N, all >= 1; M, N, K >= 0 (M or N = 0:
 * nothing is touched; K = 0: C = 0, or unchanged when accumulating).
 * Returns RF_OK, or RF_ERR_INVALID (bad size, stride or NULL pointer;
 * message in rf_gemm_error, C untouched). Not to be called on one g from
 * two threads at once. */
rf_status rf_gemm_f32(rf_gemm *g, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                      const float *B, int ldb, int accumulate, float *C, int ldc);

/* `count` independent products of one shape, C[p] (=|+=) op(A[p]) op(B[p])
 * (Winograd's 16 products per chunk; A, B, C arrays of count pointers,
 * borrowed). With threads, whole products are divided between threads
 * (thread t takes products [t·count/n, (t+1)·count/n)), each computed as
 * rf_gemm_f32 computes it: the same bits as count calls. The C[p] must not
 * overlap each other or any A or B. */
rf_status rf_gemm_f32_batch(rf_gemm *g, int trans_a, int trans_b, int M, int N, int K, int count,
                            const float *const *A, int lda, const float *const *B, int ldb, int accumulate,
                            float *const *C, int ldc);

/* The product of rf_gemm_f32 computed by the calling thread alone with
 * g's workspace t (0 <= t < rf_gemm_threads(g)): for work that a caller
 * already splits over g's pool (rf_pool_run part t runs it), so that the
 * per-thread steps around a product (a conv layer's padding, transforms)
 * stay in the same parallel region. Same bits as rf_gemm_f32. Two parts
 * running at once must use different t. Returns as rf_gemm_f32 (the error
 * message is not kept: parts run concurrently). */
rf_status rf_gemm_f32_part(rf_gemm *g, int t, int trans_a, int trans_b, int M, int N, int K, const float *A,
                           int lda, const float *B, int ldb, int accumulate, float *C, int ldc);

/* A pre-packed op(A), for an A that many products share (the Winograd
 * weights: one pack a step instead of one per chunk of tiles). The packed
 * layout depends on g's K blocking only, so a buffer packed by one rf_gemm
 * may be read by another of the same blocking (every default-blocked
 * rf_gemm, rf_gemm_thread included); results are the bits of rf_gemm_f32
 * on the unpacked A (packing copies values).
 * rf_gemm_packed_a_floats: floats of the buffer (0 for negative sizes).
 * rf_gemm_pack_a: Ap (caller-owned, rf_gemm_packed_a_floats(M, K) floats)
 * = op(A)[M, K] packed (A borrowed, read-only); reads g, so parts may pack
 * at once. RF_ERR_INVALID for bad sizes, stride or NULL pointers.
 * rf_gemm_f32_packed_a: C (=|+=) op(A) op(B) as rf_gemm_f32_part with
 * trans_a irrelevant (Ap borrowed), on the calling thread with workspace t. */
size_t rf_gemm_packed_a_floats(int M, int K);
rf_status rf_gemm_pack_a(const rf_gemm *g, int trans_a, int M, int K, const float *A, int lda, float *Ap);
rf_status rf_gemm_f32_packed_a(rf_gemm *g, int t, int M, int N, int K, const float *Ap, int trans_b, const float *B,
                               int ldb, int accumulate, float *C, int ldc);

/* ---- the engine's dense backend ----------------------------------------------
 * A task's products go to the rf_gemm attached to its engine (rf_engine.gemm,
 * over the pool rf_engine.pool), or, with the engine option gemm=openblas,
 * to cblas_sgemm (kept for comparisons: its bits depend on the kernels
 * OpenBLAS picks for the CPU). Code without an attached GEMM (library use
 * outside a task, tests) gets the calling thread's own one-thread rf_gemm
 * (rf_gemm_thread): the same bits. */

/* Creates ctx->engine.pool with rf_engine_threads(&ctx->engine) threads and
 * ctx->engine.gemm on it (ISA: the kernels' current level, rf_kernels_isa),
 * replacing (freeing) any attached before. Free with rf_gemm_detach. */
rf_status rf_gemm_attach(rf_ctx *ctx);
/* Frees ctx->engine.gemm and .pool and sets them NULL; accepts a ctx with
 * none attached. */
void rf_gemm_detach(rf_ctx *ctx);
/* The calling thread's one-thread rf_gemm at the current ISA (made on first
 * use, remade when the ISA changed; borrowed: valid until the thread's next
 * rf_gemm_thread_release or ISA change), or NULL when it cannot be
 * allocated. */
rf_gemm *rf_gemm_thread(void);
/* Frees the calling thread's rf_gemm_thread (before a leak check, or when a
 * thread ends). */
void rf_gemm_thread_release(void);
/* The product of rf_gemm_f32 (same arguments) on e's backend: e->gemm
 * (over e->pool; or, in a part's engine, pool NULL, on the calling thread
 * with workspace e->slot: rf_gemm_f32_part), OpenBLAS for gemm=openblas,
 * else rf_gemm_thread() (the reference loop if that cannot be allocated:
 * same bits, slower). e may be NULL (no options: raffle's GEMM). Arguments
 * must be valid (programmer error otherwise). */
void rf_gemm_engine(const rf_engine *e, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                    const float *B, int ldb, int accumulate, float *C, int ldc);
/* The rf_gemm behind rf_gemm_engine(e, ...) on the calling thread and in
 * *slot the workspace it uses there (borrowed), or NULL with gemm=openblas
 * (or when rf_gemm_thread cannot be allocated): for rf_gemm_pack_a and
 * rf_gemm_f32_packed_a. */
rf_gemm *rf_gemm_engine_gemm(const rf_engine *e, int *slot);
/* rf_gemm_f32_batch on e's backend (OpenBLAS, or a part's engine: one call
 * per product). */
void rf_gemm_engine_batch(const rf_engine *e, int trans_a, int trans_b, int M, int N, int K, int count,
                          const float *const *A, int lda, const float *const *B, int ldb, int accumulate,
                          float *const *C, int ldc);

/* rf_threads_split_all (raffle/threads.h) also drops the products' minimum
 * work per thread. */

/* The definition above as three plain loops (i, j, then k inside), no
 * blocking: what tests compare every path against. */
void rf_gemm_f32_ref(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, int accumulate, float *C, int ldc);

/* Cache sizes in bytes (L1 data, L2, L3 per core share) read once from
 * /sys/devices/system/cpu/cpu0/cache, or sysconf, or defaults (32 KiB,
 * 1 MiB, 2 MiB per core) when neither says. */
void rf_gemm_cache_sizes(long *l1d, long *l2, long *l3_per_core);

#ifdef __cplusplus
}
#endif

#endif
