/* Shared by the low-bit kernel benches (q4_vs_int8.c, nm_vs_unstructured.c):
 * the CPU's name for every result, and interleaved best-of timing, so that
 * the kernels compared see the same machine load (docs/kernels.md). */
#ifndef RAFFLE_BENCH_LOWBIT_H
#define RAFFLE_BENCH_LOWBIT_H

#include "raffle/kernels.h"

#include <stdio.h>
#include <string.h>

/* "model name, family N" from /proc/cpuinfo (family 25 = Zen 4, 26 = Zen 5). */
static void lb_cpu_name(char *buf, size_t n) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256], model[128] = "?", fam[32] = "?";
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!c) continue;
        c += 2;
        c[strcspn(c, "\n")] = 0;
        if (!strncmp(line, "model name", 10) && model[0] == '?') snprintf(model, sizeof model, "%s", c);
        if (!strncmp(line, "cpu family", 10) && fam[0] == '?') snprintf(fam, sizeof fam, "%s", c);
    }
    if (f) fclose(f);
    snprintf(buf, n, "%s, family %s", model, fam);
}

typedef void (*lb_run_fn)(const void *job, int which);

/* t[w] = best thread CPU seconds per call of run(job, w) for w < nk: each
 * sample repeats the call enough times to last 0.2 ms, reps samples per
 * kernel, the kernels' samples interleaved. nk <= 8. */
static void lb_time_interleaved(lb_run_fn run, const void *job, int nk, int reps, double *t) {
    long inner[8];
    for (int w = 0; w < nk; w++) {
        run(job, w);
        double t0 = rf_thread_seconds();
        run(job, w);
        double one = rf_thread_seconds() - t0;
        inner[w] = one > 0 ? (long)(2e-4 / one) + 1 : 1000;
        t[w] = 1e30;
    }
    for (int rep = 0; rep < reps; rep++)
        for (int w = 0; w < nk; w++) {
            double t0 = rf_thread_seconds();
            for (long i = 0; i < inner[w]; i++) run(job, w);
            double dt = (rf_thread_seconds() - t0) / (double)inner[w];
            if (dt < t[w]) t[w] = dt;
        }
}

#endif
