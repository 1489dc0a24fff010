/* CPU detection, run-time kernel dispatch, per-thread scratch, and the dense
 * fp32 path (OpenBLAS sgemm).
 *
 * The ISA is chosen once (pthread_once) from CPUID via __builtin_cpu_supports
 * AND from XGETBV, because a CPU can advertise AVX-512 while the OS does not
 * save the ZMM/opmask state (then using it would corrupt registers across
 * context switches). RAFFLE_ISA=scalar|avx2|avx512novnni|avx512novbmi|avx512
 * can only lower the level.
 * Each level maps to one row of a table of kernel pointers (ggml style). */
#include "kernels/kern_internal.h"
#include "raffle/engine.h"
#include "raffle/gemm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const rf_kern_table tables[] = {
    [RF_ISA_SCALAR]     = {rf_spmm_ref,    rf_spmm_lay_ref,    rf_qgemm_dense_ref_, rf_qgemm_sparse_ref_, rf_q4gemm_ref},
    [RF_ISA_AVX2]       = {rf_spmm_avx2,   rf_spmm_lay_avx2,   rf_qgemm_dense_avx2, rf_qgemm_sparse_avx2, rf_q4gemm_avx2},
    /* AVX-512 without VNNI: the int8 kernels use the AVX2 vpmaddwd path. */
    [RF_ISA_AVX512]     = {rf_spmm_avx512, rf_spmm_lay_avx512, rf_qgemm_dense_avx2, rf_qgemm_sparse_avx2, rf_q4gemm_avx2},
    [RF_ISA_AVX512VNNI] = {rf_spmm_avx512, rf_spmm_lay_avx512, rf_qgemm_dense_vnni, rf_qgemm_sparse_vnni, rf_q4gemm_vnni},
    /* + VBMI: sparse int8 through byte permutes of the activation rows
     * (ELL slots, no transposes). */
    [RF_ISA_AVX512VBMI] = {rf_spmm_avx512, rf_spmm_lay_avx512, rf_qgemm_dense_vnni, rf_qgemm_sparse_vbmi, rf_q4gemm_vnni},
};

static const char *const isa_names[] = {
    [RF_ISA_SCALAR] = "scalar", [RF_ISA_AVX2] = "avx2",
    [RF_ISA_AVX512] = "avx512", [RF_ISA_AVX512VNNI] = "avx512vnni", [RF_ISA_AVX512VBMI] = "avx512vbmi",
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static rf_isa cpu_isa;               /* written once under init_once */
static _Atomic int cur_isa;

const char *rf_isa_name(rf_isa isa) {
    return (unsigned)isa <= RF_ISA_AVX512VBMI ? isa_names[isa] : "?";
}

/* XCR0 via XGETBV (inline asm so no -mxsave is needed). */
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int os_saves_xsave(void) {
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    return (c >> 27) & 1;   /* OSXSAVE: XGETBV is usable */
}

static rf_isa detect(void) {
    __builtin_cpu_init();
    if (!os_saves_xsave()) return RF_ISA_SCALAR;
    uint64_t xcr0 = xgetbv0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;        /* SSE + AVX state */
    int zmm_ok = (xcr0 & 0xe6) == 0xe6;      /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return RF_ISA_SCALAR;
    if (!zmm_ok || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl"))
        return RF_ISA_AVX2;
    if (!__builtin_cpu_supports("avx512vnni")) return RF_ISA_AVX512;
    return __builtin_cpu_supports("avx512vbmi") ? RF_ISA_AVX512VBMI : RF_ISA_AVX512VNNI;
}

/* The default from the engine option "isa" (raffle/engine.h: its
 * environment variable RAFFLE_ISA, values auto = the CPU's best, then
 * scalar, avx2, ... = rf_isa + 1); it can only lower the level. A task sets
 * its own option through rf_kernels_force (src/task/runner.c). */
static void init_once_fn(void) {
    cpu_isa = detect();
    rf_isa use = cpu_isa;
    rf_engine e;
    rf_ctx tmp;
    memset(&tmp, 0, sizeof tmp);
    (void)rf_engine_from_env(&tmp, &e);   /* a bad value keeps the default; the task runner reports it */
    int v = e.v[RF_ENGINE_ISA];
    if (v != RF_ENGINE_ISA_AUTO && (rf_isa)(v - 1) < use) use = (rf_isa)(v - 1);
    atomic_store(&cur_isa, (int)use);
}

rf_isa rf_kernels_init(void) {
    pthread_once(&init_once, init_once_fn);
    return (rf_isa)atomic_load(&cur_isa);
}

rf_isa rf_kernels_cpu_isa(void) {
    rf_kernels_init();
    return cpu_isa;
}

rf_isa rf_kernels_isa(void) { return rf_kernels_init(); }

rf_isa rf_kernels_force(rf_isa isa) {
    rf_kernels_init();
    if ((int)isa < 0) isa = RF_ISA_SCALAR;
    if (isa > cpu_isa) isa = cpu_isa;
    atomic_store(&cur_isa, (int)isa);
    return isa;
}

static const rf_kern_table *table(void) { return &tables[rf_kernels_init()]; }

/* ---- per-thread scratch ---------------------------------------------------- */
static _Thread_local void  *ws_ptr;
static _Thread_local size_t ws_size;

void *rf_kern_workspace(size_t bytes) {
    if (bytes <= ws_size) return ws_ptr;
    size_t want = bytes + bytes / 4;    /* grow geometrically: few reallocations */
    void *p = rf_aligned_alloc(64, want);
    if (!p) return NULL;
    /* a pool worker frees it when it exits (three functions register; the
     * table holds RF_POOL_MAX_EXIT_FNS, so this cannot fail) */
    (void)rf_pool_on_worker_exit(rf_kernels_release_workspace);
    rf_free(ws_ptr);
    ws_ptr = p;
    ws_size = want;
    return p;
}

void rf_kernels_release_workspace(void) {
    rf_gemm_thread_release();
    rf_free(ws_ptr);
    ws_ptr = NULL;
    ws_size = 0;
}

/* ---- public entry points ---------------------------------------------------- */
void rf_spmm(const rf_spmat *W, const float *X, const float *bias, float *Y, int M) {
    table()->spmm(W, X, bias, Y, M);
}

void rf_spmm_lay(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y, rf_layout yl,
                 int M, int ld) {
    /* Row-major operands, or one sample at stride 1 (the same bytes in
     * either layout), take the row-major entry and its small-batch paths. */
    if ((xl == RF_ROWS && yl == RF_ROWS) || (M == 1 && ld == 1)) table()->spmm(W, X, bias, Y, M);
    else table()->spmm_lay(W, X, xl, bias, Y, yl, M, ld);
}

int rf_feat_ld(int M) { return M > 0 && M % 256 == 0 ? M + 16 : M; }

/* In 16 x 16 tiles: row by row, the stores of a row go `ldd` floats apart
 * and at 768-1024-byte strides land in the same few L1 sets. */
void rf_transpose_f32_ref(float *dst, int ldd, const float *src, int rows, int cols, int lds) {
    enum { TT = 16 };
    for (int r0 = 0; r0 < rows; r0 += TT) {
        int r1 = r0 + TT < rows ? r0 + TT : rows;
        for (int c0 = 0; c0 < cols; c0 += TT) {
            int c1 = c0 + TT < cols ? c0 + TT : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
        }
    }
}

void rf_transpose_f32(float *dst, int ldd, const float *src, int rows, int cols, int lds) {
    if (rf_kernels_init() >= RF_ISA_AVX2) rf_transpose_avx2(dst, ldd, src, rows, cols, lds);
    else rf_transpose_f32_ref(dst, ldd, src, rows, cols, lds);
}

void rf_qgemm(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    const rf_kern_table *t = table();
    (W->sparse ? t->qgemm_sparse : t->qgemm_dense)(W, A, C, M);
}

double rf_spmm_work_ops(const rf_spmat *W, int M) {
    int ell = rf_kernels_init() >= RF_ISA_AVX512 && rf_spmat_takes_ell(W, M);
    return 2.0 * M * (ell ? 16.0 * (double)W->ell_nslots : (double)W->nnz);
}

double rf_qgemm_work_ops(const rf_qmat *W, int M) {
    if (!W->sparse) return 2.0 * M * (double)W->N * W->K;
    if (W->ell_tptr && rf_kernels_init() >= RF_ISA_AVX512VBMI) return 2.0 * M * 64.0 * (double)W->ell_nslots;
    return 8.0 * M * (double)W->ngroups;
}

void rf_q4gemm(const rf_q4mat *W, const uint8_t *A, float *Y, int M) { table()->q4gemm(W, A, Y, M); }

void rf_qgemm_ref(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    (W->sparse ? rf_qgemm_sparse_ref_ : rf_qgemm_dense_ref_)(W, A, C, M);
}

/* Dense products on the calling thread's own rf_gemm (raffle/gemm.h): the
 * bits of the engine's products, on every ISA. */
void rf_linear_f32_lay(const float *X, rf_layout xl, const float *W, const float *bias, float *Y, rf_layout yl,
                       int M, int N, int K, int ld) {
    if (xl == RF_ROWS && yl == RF_ROWS) { rf_linear_f32(X, W, bias, Y, M, N, K); return; }
    if (M <= 0 || N <= 0) return;
    const int lk = K > 0 ? K : 1;   /* strides of K-float rows: at least 1 */
    if (bias) {
        if (yl == RF_ROWS) {
            for (int m = 0; m < M; m++) memcpy(Y + (size_t)m * N, bias, sizeof(float) * (size_t)N);
        } else {
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) Y[(size_t)n * ld + m] = bias[n];
        }
    }
    if (yl == RF_ROWS)        /* Y[M,N] = (X^T)^T W^T, X stored [K, M] */
        rf_gemm_engine(NULL, 1, 1, M, N, K, X, ld, W, lk, bias != NULL, Y, N);
    else                      /* Y^T[N,M] = W · X^T */
        rf_gemm_engine(NULL, 0, xl == RF_ROWS, N, M, K, W, lk, X, xl == RF_ROWS ? lk : ld, bias != NULL, Y, ld);
}

void rf_linear_f32(const float *X, const float *W, const float *bias, float *Y, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    if (bias) {
        for (int m = 0; m < M; m++) memcpy(Y + (size_t)m * N, bias, sizeof(float) * (size_t)N);
    }
    /* Row-major Y[M,N] = X[M,K] * W[N,K]^T (+ Y when a bias was copied in). */
    const int lk = K > 0 ? K : 1;
    rf_gemm_engine(NULL, 0, 1, M, N, K, X, lk, W, lk, bias != NULL, Y, N);
}
