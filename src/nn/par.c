/* Threads inside a layer (layers.h, "threads"): static parts over the
 * engine's pool. */
#include "nn/layers.h"
#include "raffle/gemm.h"

#include <string.h>

int rf_nn_threads(const rf_engine *e) {
    /* OpenBLAS (gemm=openblas, a comparison backend) runs its own threads
     * and is not called from several at once here. */
    if (!e || !e->pool || e->v[RF_ENGINE_GEMM] == RF_ENGINE_GEMM_OPENBLAS) return 1;
    return rf_pool_threads(e->pool);
}

int rf_nn_parts(const rf_engine *e, double work, double min_work) {
    int n = rf_nn_threads(e);
    if (rf_threads_split_all_on()) min_work = 1.0;
    if (n <= 1 || work < 2.0 * min_work) return 1;
    double k = work / min_work;
    return k < (double)n ? (int)k : n;
}

void rf_nn_par(const rf_engine *e, int n, rf_pool_fn fn, void *arg) {
    rf_pool_run(n > 1 ? e->pool : NULL, n, fn, arg);
}

/* ---- element-wise loops ------------------------------------------------------ */
typedef struct ew_job { rf_nn_ew_fn f; float *y; const float *a, *b; size_t n; } ew_job;

static void ew_part(void *arg, int t, int n) {
    const ew_job *j = arg;
    size_t lo, hi;
    rf_nn_span_aligned(j->n, 16, t, n, &lo, &hi);
    if (hi > lo) j->f(j->y + lo, j->a ? j->a + lo : NULL, j->b ? j->b + lo : NULL, hi - lo);
}

/* 32K elements (128 KiB) a part at least: below that a second thread's
 * start costs about as much as it saves. */
#define EW_MIN (1 << 15)

void rf_nn_ew(const rf_engine *e, rf_nn_ew_fn f, float *y, const float *a, const float *b, size_t n) {
    ew_job j = {f, y, a, b, n};
    int parts = rf_nn_parts(e, (double)n, EW_MIN);
    if (parts <= 1) { f(y, a, b, n); return; }
    rf_nn_par(e, parts, ew_part, &j);
}

static void zero_ew(float *y, const float *a, const float *b, size_t n) {
    (void)a; (void)b;
    memset(y, 0, n * sizeof(float));
}

void rf_nn_zero(const rf_engine *e, float *y, size_t n) { rf_nn_ew(e, zero_ew, y, NULL, NULL, n); }
