/* Machine peaks measured on the calling thread, so benchmarks can report
 * each kernel's fraction of what this core can do (not of a datasheet).
 *
 * Each loop keeps 12 independent accumulators in registers: FMA/vpdpbusd
 * latency is 4-5 cycles and up to two issue per cycle, so fewer chains would
 * measure latency, not throughput. Timing is the best of many short slices,
 * which filters out preemption on a shared machine. */
#include "kernels/kern_internal.h"

#include <immintrin.h>
#include <time.h>

#define NACC 12

typedef double (*peak_fn)(long iters);

/* Twelve named accumulators (an array would be kept in memory at -O2). */
#define ACC12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define PEAK_LOOP(TGT, NAME, VT, INIT, STEP, SUM, STORE, LANE_T, LANES, CONS)            \
    __attribute__((target(TGT))) static double NAME(long iters) {                        \
        VT ACCDECL_;                                                                       \
        ACC12(INIT)                                                                        \
        for (long it = 0; it < iters; it++) {                                              \
            ACC12(STEP)                                                                    \
            __asm__ volatile("" : CONS(a0), CONS(a1), CONS(a2), CONS(a3), CONS(a4),        \
                             CONS(a5), CONS(a6), CONS(a7), CONS(a8), CONS(a9), CONS(a10),  \
                             CONS(a11));                                                   \
        }                                                                                  \
        VT s = a0;                                                                         \
        SUM                                                                                \
        LANE_T out[LANES];                                                                 \
        STORE;                                                                             \
        return (double)out[0];                                                             \
    }
#define ACCDECL_ a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11
#define CV(x) "+v"(x)
#define CX(x) "+x"(x)

#define I512F(i) a##i = _mm512_set1_ps(1.0f + 0.001f * (float)(i));
#define S512F(i) a##i = _mm512_fmadd_ps(a##i, _mm512_set1_ps(0.999999f), _mm512_set1_ps(1e-7f));
#define SUM_(ADD) s = ADD(s, a1); s = ADD(s, a2); s = ADD(s, a3); s = ADD(s, a4); s = ADD(s, a5); \
    s = ADD(s, a6); s = ADD(s, a7); s = ADD(s, a8); s = ADD(s, a9); s = ADD(s, a10); s = ADD(s, a11);
PEAK_LOOP("avx512f", fp32_512, __m512, I512F, S512F, SUM_(_mm512_add_ps), _mm512_storeu_ps(out, s), float, 16, CV)

#define I256F(i) a##i = _mm256_set1_ps(1.0f + 0.001f * (float)(i));
#define S256F(i) a##i = _mm256_fmadd_ps(a##i, _mm256_set1_ps(0.999999f), _mm256_set1_ps(1e-7f));
PEAK_LOOP("avx2,fma", fp32_256, __m256, I256F, S256F, SUM_(_mm256_add_ps), _mm256_storeu_ps(out, s), float, 8, CX)

#define I512I(i) a##i = _mm512_set1_epi32(i);
#define S512I(i) a##i = _mm512_dpbusd_epi32(a##i, _mm512_set1_epi8(3), _mm512_set1_epi8(-2));
PEAK_LOOP("avx512f,avx512bw,avx512vnni", int8_vnni, __m512i, I512I, S512I, SUM_(_mm512_add_epi32),
          _mm512_storeu_si512((void *)out, s), int32_t, 16, CV)

/* Without VNNI the int8 multiplies are vpmaddwd on 16-bit lanes
 * (simd_avx2.c): 16 multiply-adds per ymm instruction. Each step feeds the
 * accumulator back in, so the compiler cannot hoist a loop-invariant multiply. */
#define I256I(i) a##i = _mm256_set1_epi32(i);
#define S256I(i) a##i = _mm256_madd_epi16(a##i, _mm256_set1_epi16(-2));
PEAK_LOOP("avx2", int8_avx2, __m256i, I256I, S256I, SUM_(_mm256_add_epi32),
          _mm256_storeu_si256((__m256i *)out, s), int32_t, 8, CX)

static double fp32_scalar(long iters) {
    float acc[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = 1.0f + 0.001f * (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < NACC; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
    float s = 0.0f;
    for (int i = 0; i < NACC; i++) s += acc[i];
    return (double)s;
}

static double int8_scalar(long iters) {
    int32_t acc[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < NACC; i++) acc[i] += 3 * (int32_t)(it & 7);
    int32_t s = 0;
    for (int i = 0; i < NACC; i++) s += acc[i];
    return (double)s;
}

double rf_thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs fn in slices of `iters` for about `seconds`; returns the best ops/s. */
static double best_rate(peak_fn fn, double ops_per_iter, double seconds) {
    volatile double sink = 0.0;
    long iters = 1 << 16;
    double t0 = rf_thread_seconds();
    sink += fn(iters);                   /* warm-up and clock ramp */
    double dt = rf_thread_seconds() - t0;
    /* Slices of 0.2 ms, shorter than a scheduler time slice: on a shared,
     * oversubscribed machine some of them run uninterrupted. */
    double slice = 0.0002;
    if (dt > 0.0) iters = (long)((double)iters * slice / dt) + 1;
    double best = 0.0, end = rf_now() + (seconds > 0.0 ? seconds : 0.05);
    do {
        t0 = rf_thread_seconds();
        sink += fn(iters);
        dt = rf_thread_seconds() - t0;
        if (dt > 0.0 && (double)iters * ops_per_iter / dt > best) best = (double)iters * ops_per_iter / dt;
    } while (rf_now() < end);
    (void)sink;
    return best;
}

double rf_bench_fp32_peak(double seconds) {
    rf_isa isa = rf_kernels_init();
    if (isa >= RF_ISA_AVX512) return best_rate(fp32_512, NACC * 16.0 * 2.0, seconds) * 1e-9;
    if (isa >= RF_ISA_AVX2) return best_rate(fp32_256, NACC * 8.0 * 2.0, seconds) * 1e-9;
    return best_rate(fp32_scalar, NACC * 2.0, seconds) * 1e-9;
}

double rf_bench_int8_peak(double seconds) {
    rf_isa isa = rf_kernels_init();
    if (isa >= RF_ISA_AVX512VNNI) return best_rate(int8_vnni, NACC * 64.0 * 2.0, seconds) * 1e-9;
    if (isa >= RF_ISA_AVX2) return best_rate(int8_avx2, NACC * 16.0 * 2.0, seconds) * 1e-9;
    return best_rate(int8_scalar, NACC * 2.0, seconds) * 1e-9;
}
