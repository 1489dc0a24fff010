/* raffle's dense GEMM (include/raffle/gemm.h) against OpenBLAS sgemm and
 * the measured FP32 peak, on the training products of the presets
 * (batch 128), one run, side by side:
 *
 *   bench/cbench.sh bench/gemm/gemm_bench.c [--quick] [--out FILE] [--blis LIB]
 *   (bench/gemm/run.sh writes bench/results/gemm.txt)
 *
 * In this process, per shape and in alternating rounds (best round kept):
 * raffle AVX-512 on 1 and 2 threads, raffle AVX2 on 1 thread, OpenBLAS
 * sgemm on 1 thread as the environment configures it (OPENBLAS_CORETYPE =
 * Haswell here). In child processes of this one, started after: OpenBLAS
 * on 2 threads (its worker threads spin after use and would steal the
 * second core from the raffle rounds), OpenBLAS with OPENBLAS_CORETYPE =
 * SkylakeX and Cooperlake (what it runs without the override), and BLIS
 * (bli_sgemm, dlopen'ed from --blis / --blis2 LIB or the Debian package
 * paths) on 1 and 2 threads, if found.
 *
 * GFLOP/s count effective FLOPs, 2·M·N·K per product: the multiplies the
 * product needs, not the padded lanes a kernel executes. "% peak" is of
 * rf_bench_fp32_peak (AVX-512 FMA throughput of this core, measured here).
 * Each raffle result is compared byte for byte across the three raffle
 * runs (AVX-512 1 and 2 threads, AVX2) and with rf_gemm_f32_ref. */
#include "../lowbit/lowbit_bench.h"   /* lb_cpu_name */
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <cblas.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct shape {
    const char *preset, *name;
    int ta, tb, M, N, K, acc, batch;
    int calls;   /* times per training step at batch 128: the per-preset weight */
} shape;

/* Training products at batch 128, as src/nn issues them (with how many
 * times a training step issues each: the Winograd and wide im2col products
 * run per sample, vit-tiny's per block): linear layers
 * (rf_nn_linear_fwd: X·W^T after the bias is copied in, so accumulate;
 * _dx: dY·W, accumulate; _dw: dY^T·X, accumulate), conv-2's Winograd
 * products (conv2, 64 -> 64 channels, 28x28: 16 products per sample, one
 * sample per chunk) and the wide im2col products its convs take on the
 * GEMM path (AVX2 and scalar machines, RAFFLE_CONV=gemm). */
static const shape shapes[] = {
    {"lenet-300-100", "fc1 fwd", 0, 1, 128, 300, 784, 1, 1, 1},
    {"lenet-300-100", "fc1 dW", 1, 0, 300, 784, 128, 1, 1, 1},
    {"lenet-300-100", "fc2 fwd", 0, 1, 128, 100, 300, 1, 1, 1},
    {"lenet-300-100", "fc2 dX", 0, 0, 128, 300, 100, 1, 1, 1},
    {"lenet-300-100", "fc2 dW", 1, 0, 100, 300, 128, 1, 1, 1},
    {"lenet-300-100", "fc3 fwd", 0, 1, 128, 10, 100, 1, 1, 1},
    {"lenet-300-100", "fc3 dX", 0, 0, 128, 100, 10, 1, 1, 1},
    {"lenet-300-100", "fc3 dW", 1, 0, 10, 100, 128, 1, 1, 1},
    {"mlp-1200x2", "fc1 fwd", 0, 1, 128, 1200, 784, 1, 1, 1},
    {"mlp-1200x2", "fc1 dW", 1, 0, 1200, 784, 128, 1, 1, 1},
    {"mlp-1200x2", "fc2 fwd", 0, 1, 128, 1200, 1200, 1, 1, 1},
    {"mlp-1200x2", "fc2 dX", 0, 0, 128, 1200, 1200, 1, 1, 1},
    {"mlp-1200x2", "fc2 dW", 1, 0, 1200, 1200, 128, 1, 1, 1},
    {"mlp-1200x2", "fc3 fwd", 0, 1, 128, 10, 1200, 1, 1, 1},
    {"mlp-1200x2", "fc3 dX", 0, 0, 128, 1200, 10, 1, 1, 1},
    {"mlp-1200x2", "fc3 dW", 1, 0, 10, 1200, 128, 1, 1, 1},
    {"mlp-800x2", "fc1 fwd", 0, 1, 128, 800, 784, 1, 1, 1},
    {"mlp-800x2", "fc1 dW", 1, 0, 800, 784, 128, 1, 1, 1},
    {"mlp-800x2", "fc2 fwd", 0, 1, 128, 800, 800, 1, 1, 1},
    {"mlp-800x2", "fc2 dX", 0, 0, 128, 800, 800, 1, 1, 1},
    {"mlp-800x2", "fc2 dW", 1, 0, 800, 800, 128, 1, 1, 1},
    {"mlp-800x2", "fc3 fwd", 0, 1, 128, 10, 800, 1, 1, 1},
    {"mlp-800x2", "fc3 dX", 0, 0, 128, 800, 10, 1, 1, 1},
    {"mlp-800x2", "fc3 dW", 1, 0, 10, 800, 128, 1, 1, 1},
    {"conv-2", "conv2 wino fwd x16", 0, 0, 64, 196, 64, 0, 16, 128},
    {"conv-2", "conv2 wino dX x16", 1, 0, 64, 196, 64, 0, 16, 128},
    {"conv-2", "conv2 wino dW x16", 0, 1, 64, 64, 196, 1, 16, 128},
    {"conv-2", "fc1 fwd", 0, 1, 128, 256, 12544, 1, 1, 1},
    {"conv-2", "fc1 dX", 0, 0, 128, 12544, 256, 1, 1, 1},
    {"conv-2", "fc1 dW", 1, 0, 256, 12544, 128, 1, 1, 1},
    {"conv-2", "fc2 fwd", 0, 1, 128, 256, 256, 1, 1, 1},
    {"conv-2", "fc2 dX", 0, 0, 128, 256, 256, 1, 1, 1},
    {"conv-2", "fc2 dW", 1, 0, 256, 256, 128, 1, 1, 1},
    {"conv-2", "fc3 fwd", 0, 1, 128, 10, 256, 1, 1, 1},
    {"conv-2", "fc3 dX", 0, 0, 128, 256, 10, 1, 1, 1},
    {"conv-2", "fc3 dW", 1, 0, 10, 256, 128, 1, 1, 1},
    {"conv-2 im2col", "conv1 wide fwd", 0, 0, 64, 840, 9, 0, 1, 128},
    {"conv-2 im2col", "conv1 wide dW", 0, 1, 64, 9, 840, 1, 1, 128},
    {"conv-2 im2col", "conv2 wide fwd", 0, 0, 64, 840, 576, 0, 1, 128},
    {"conv-2 im2col", "conv2 wide dW", 0, 1, 64, 576, 840, 1, 1, 128},
    {"conv-2 im2col", "conv2 wide dX", 1, 0, 576, 840, 64, 0, 1, 128},
    /* vit-tiny at batch 128 (2176 token rows, width 64, MLP 256): forward
     * X·W^T (here with W^T stored, N,N), input gradient dY·W (N,N), weight
     * gradient dY^T·X (T,N) */
    {"vit-tiny", "qkv fwd", 0, 0, 2176, 192, 64, 1, 1, 4},
    {"vit-tiny", "qkv dX", 0, 0, 2176, 64, 192, 1, 1, 4},
    {"vit-tiny", "qkv dW", 1, 0, 192, 64, 2176, 1, 1, 4},
    {"vit-tiny", "fc1 fwd", 0, 0, 2176, 256, 64, 1, 1, 4},
    {"vit-tiny", "fc2 fwd", 0, 0, 2176, 64, 256, 1, 1, 4},
    {"vit-tiny", "fc1 dW", 1, 0, 256, 64, 2176, 1, 1, 4},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Operands of one shape: batch copies of A, B, C (and a C copy to restore). */
typedef struct operands {
    const shape *s;
    int lda, ldb, ldc;
    size_t na, nb, nc;
    float *A, *B, *C, *C0;
    const float **pa, **pb;
    float **pc;
} operands;

static float frand(uint64_t *st) {
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*st >> 40) & 0xFFFFFF) / (float)0x1000000 - 0.5f;
}

static int make_ops(operands *o, const shape *s) {
    memset(o, 0, sizeof *o);
    o->s = s;
    o->lda = s->ta ? s->M : s->K;
    o->ldb = s->tb ? s->K : s->N;
    o->ldc = s->N;
    o->na = (size_t)s->M * s->K;
    o->nb = (size_t)s->K * s->N;
    o->nc = (size_t)s->M * s->N;
    size_t b = (size_t)s->batch;
    o->A = malloc(o->na * b * sizeof(float));
    o->B = malloc(o->nb * b * sizeof(float));
    o->C = malloc(o->nc * b * sizeof(float));
    o->C0 = malloc(o->nc * b * sizeof(float));
    o->pa = malloc(b * sizeof *o->pa);
    o->pb = malloc(b * sizeof *o->pb);
    o->pc = malloc(b * sizeof *o->pc);
    if (!o->A || !o->B || !o->C || !o->C0 || !o->pa || !o->pb || !o->pc) return -1;
    uint64_t st = 42;
    for (size_t i = 0; i < o->na * b; i++) o->A[i] = frand(&st);
    for (size_t i = 0; i < o->nb * b; i++) o->B[i] = frand(&st);
    for (size_t i = 0; i < o->nc * b; i++) o->C0[i] = o->C[i] = frand(&st);
    for (size_t p = 0; p < b; p++) {
        o->pa[p] = o->A + p * o->na;
        o->pb[p] = o->B + p * o->nb;
        o->pc[p] = o->C + p * o->nc;
    }
    return 0;
}

static void free_ops(operands *o) {
    free(o->A); free(o->B); free(o->C); free(o->C0);
    free(o->pa); free(o->pb); free(o->pc);
}

/* ---- the implementations --------------------------------------------------- */
typedef void (*run_fn)(void *impl, operands *o);

static void run_raffle(void *impl, operands *o) {
    const shape *s = o->s;
    rf_status st = s->batch > 1
        ? rf_gemm_f32_batch(impl, s->ta, s->tb, s->M, s->N, s->K, s->batch, o->pa, o->lda, o->pb, o->ldb, s->acc,
                            o->pc, o->ldc)
        : rf_gemm_f32(impl, s->ta, s->tb, s->M, s->N, s->K, o->A, o->lda, o->B, o->ldb, s->acc, o->C, o->ldc);
    if (st != RF_OK) {
        fprintf(stderr, "gemm_bench: %s\n", rf_gemm_error(impl));
        exit(1);
    }
}

static void run_openblas(void *impl, operands *o) {
    const shape *s = o->s;
    (void)impl;
    for (int p = 0; p < s->batch; p++)
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->M, s->N,
                    s->K, 1.0f, o->pa[p], o->lda, o->pb[p], o->ldb, (float)s->acc, o->pc[p], o->ldc);
}

/* BLIS's native API (blis.h): strides instead of transpose flags. */
typedef void (*bli_sgemm_fn)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, const float *alpha,
                             const float *a, int64_t rsa, int64_t csa, const float *b, int64_t rsb, int64_t csb,
                             const float *beta, float *c, int64_t rsc, int64_t csc);
static bli_sgemm_fn bli_sgemm_p;

static void run_blis(void *impl, operands *o) {
    const shape *s = o->s;
    (void)impl;
    const float one = 1.0f, beta = (float)s->acc;
    for (int p = 0; p < s->batch; p++)
        bli_sgemm_p(0, 0, s->M, s->N, s->K, &one, o->pa[p], s->ta ? 1 : o->lda, s->ta ? o->lda : 1, o->pb[p],
                    s->tb ? 1 : o->ldb, s->tb ? o->ldb : 1, &beta, o->pc[p], o->ldc, 1);
}

/* wall: time with the wall clock (runs on several threads); otherwise the
 * calling thread's CPU time, which leaves out time spent descheduled by
 * the other processes of a shared machine (docs/kernels.md, "Benchmark"). */
typedef struct runner { const char *name; run_fn fn; void *impl; double best; int wall; } runner;

static double clock_of(const runner *r) { return r->wall ? now() : rf_thread_seconds(); }

/* Calls per timed round so that a round takes about `round_s`. */
static int calibrate(runner *r, operands *o, double round_s) {
    double t0 = now();
    r->fn(r->impl, o);
    double dt = now() - t0;   /* wall: a preempted call only shortens the rounds */
    int reps = dt > 0 ? (int)(round_s / dt) : 1000;
    return reps < 1 ? 1 : reps > 100000 ? 100000 : reps;
}

/* Alternating rounds over the runners; best seconds per call kept. Many
 * short rounds: on a shared machine some run undisturbed. */
static void measure(runner *rs, int nr, operands *o, int rounds, double round_s) {
    int reps[8];
    for (int i = 0; i < nr; i++) {
        rs[i].fn(rs[i].impl, o);   /* warm up (code, pages, pool) */
        reps[i] = calibrate(&rs[i], o, round_s);
        rs[i].best = 1e30;
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nr; i++) {
            double t0 = clock_of(&rs[i]);
            for (int k = 0; k < reps[i]; k++) rs[i].fn(rs[i].impl, o);
            double dt = (clock_of(&rs[i]) - t0) / reps[i];
            if (dt < rs[i].best) rs[i].best = dt;
        }
}

static double gflops(const shape *s, double sec) {
    return 2.0 * s->M * (double)s->N * s->K * s->batch / sec * 1e-9;
}

/* ---- child processes: OpenBLAS (coretype from the environment) or BLIS ---- */
extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

static int child_main(const char *what, int threads, int rounds, double round_s) {
    runner r = {what, NULL, NULL, 0, threads > 1};
    if (strcmp(what, "openblas") == 0) {
        openblas_set_num_threads(threads);
        r.fn = run_openblas;
        printf("core %s\n", openblas_get_corename());
    } else {
        void *h = dlopen(what, RTLD_NOW | RTLD_LOCAL);
        if (!h) { printf("error %s\n", dlerror()); return 1; }
        bli_sgemm_p = (bli_sgemm_fn)dlsym(h, "bli_sgemm");
        void (*set_threads)(int64_t) = (void (*)(int64_t))dlsym(h, "bli_thread_set_num_threads");
        const char *(*arch)(int) = (const char *(*)(int))dlsym(h, "bli_arch_string");
        int (*query)(void) = (int (*)(void))dlsym(h, "bli_arch_query_id");
        if (!bli_sgemm_p) { printf("error no bli_sgemm\n"); return 1; }
        if (set_threads) set_threads(threads);
        printf("core %s\n", arch && query ? arch(query()) : "?");
        r.fn = run_blis;
    }
    for (int i = 0; i < NSHAPES; i++) {
        operands o;
        if (make_ops(&o, &shapes[i])) return 1;
        measure(&r, 1, &o, rounds, round_s);
        printf("shape %d %.6e\n", i, r.best);
        free_ops(&o);
    }
    return 0;
}

/* Runs this program as a child with `env` prepended; fills sec[NSHAPES]
 * (0 where the child gave nothing) and core (its kernel name). */
static int run_child(const char *self, const char *env, const char *what, int threads, int quick, double *sec,
                     char *core, size_t core_len) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s OPENBLAS_NUM_THREADS=%d '%s' --child '%s' %d %s", env, threads, self, what,
             threads, quick ? "--quick" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512];
    snprintf(core, core_len, "?");
    for (int i = 0; i < NSHAPES; i++) sec[i] = 0;
    while (fgets(line, sizeof line, p)) {
        int i;
        double t;
        if (sscanf(line, "shape %d %lf", &i, &t) == 2 && i >= 0 && i < NSHAPES) sec[i] = t;
        else if (strncmp(line, "core ", 5) == 0) {
            snprintf(core, core_len, "%s", line + 5);
            core[strcspn(core, "\n")] = 0;
        } else if (strncmp(line, "error ", 6) == 0) {
            snprintf(core, core_len, "unavailable (%s)", line + 6);
            core[strcspn(core, "\n")] = 0;
        }
    }
    return pclose(p) == 0 ? 0 : -1;
}

/* BLIS: the library given, else Debian's packages (libblis4-serial for one
 * thread, libblis4-pthread for two). */
static const char *find_blis(const char *arg, int threads) {
    static const char *const serial[] = {"/usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4",
                                         "/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4",
                                         "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4"};
    static const char *const threaded[] = {"/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4",
                                           "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4"};
    if (arg) return access(arg, R_OK) == 0 ? arg : NULL;
    const char *const *list = threads > 1 ? threaded : serial;
    size_t n = threads > 1 ? sizeof threaded / sizeof *threaded : sizeof serial / sizeof *serial;
    for (size_t i = 0; i < n; i++)
        if (access(list[i], R_OK) == 0) return list[i];
    return NULL;
}

int main(int argc, char **argv) {
    int quick = 0;
    const char *out = NULL, *blis_arg = NULL, *blis2_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--blis") && i + 1 < argc) blis_arg = argv[++i];
        else if (!strcmp(argv[i], "--blis2") && i + 1 < argc) blis2_arg = argv[++i];
        else if (!strcmp(argv[i], "--child") && i + 2 < argc) {
            int q = i + 3 < argc && !strcmp(argv[i + 3], "--quick");
            return child_main(argv[i + 1], atoi(argv[i + 2]), q ? 5 : 60, 0.002);
        } else {
            fprintf(stderr, "usage: gemm_bench [--quick] [--out FILE] [--blis LIBBLIS.so] [--blis2 LIBBLIS.so]\n");
            return 2;
        }
    }
    const int rounds = quick ? 5 : 60;
    const double round_s = quick ? 0.002 : 0.002;
    char cpu[256], self[1024];
    lb_cpu_name(cpu, sizeof cpu);
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) { fprintf(stderr, "gemm_bench: cannot find own path\n"); return 1; }
    self[sl] = 0;
    if (!rf_gemm_isa_supported(RF_GEMM_AVX512) || !rf_gemm_isa_supported(RF_GEMM_AVX2)) {
        fprintf(stderr, "gemm_bench: this CPU lacks AVX-512 or AVX2; the benchmark compares both\n");
        return 1;
    }
    openblas_set_num_threads(1);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_pool *pool = NULL;
    rf_gemm *g1 = NULL, *g2 = NULL, *gv = NULL;
    if (rf_pool_create(&ctx, 2, &pool) || rf_gemm_create(&ctx, &(rf_gemm_cfg){.isa = RF_GEMM_AVX512}, &g1) ||
        rf_gemm_create(&ctx, &(rf_gemm_cfg){.isa = RF_GEMM_AVX512, .pool = pool}, &g2) ||
        rf_gemm_create(&ctx, &(rf_gemm_cfg){.isa = RF_GEMM_AVX2}, &gv)) {
        fprintf(stderr, "gemm_bench: %s\n", rf_ctx_error(&ctx));
        return 1;
    }
    rf_isa was = rf_kernels_force(RF_ISA_AVX512);
    double peak = rf_bench_fp32_peak(quick ? 0.2 : 0.5);
    rf_kernels_force(RF_ISA_AVX2);
    double peak2 = rf_bench_fp32_peak(quick ? 0.2 : 0.5);
    rf_kernels_force(was);
    int kc, mc, nc, mr, nr;
    rf_gemm_blocking(g1, &kc, &mc, &nc, &mr, &nr);
    long l1, l2, l3;
    rf_gemm_cache_sizes(&l1, &l2, &l3);

    double sec[5][NSHAPES];   /* raffle 1t, 2t, avx2, openblas 1t, raffle 1t wall */
    int identical[NSHAPES];
    for (int i = 0; i < NSHAPES; i++) {
        operands o;
        if (make_ops(&o, &shapes[i])) { fprintf(stderr, "gemm_bench: out of memory\n"); return 1; }
        /* raffle on 1 thread twice: in CPU time (the % of peak) and in
         * wall time (the 2-thread speed-up compares wall with wall) */
        runner rs[5] = {{"raffle", run_raffle, g1, 0, 0}, {"raffle2", run_raffle, g2, 0, 1},
                        {"raffle-avx2", run_raffle, gv, 0, 0}, {"openblas", run_openblas, NULL, 0, 0},
                        {"raffle-wall", run_raffle, g1, 0, 1}};
        measure(rs, 5, &o, rounds, round_s);
        for (int r = 0; r < 5; r++) sec[r][i] = rs[r].best;
        /* bit identity: one call each from the same C, against the reference */
        size_t bytes = o.nc * (size_t)shapes[i].batch * sizeof(float);
        float *want = malloc(bytes), *got = malloc(bytes);
        memcpy(want, o.C0, bytes);
        for (int p = 0; p < shapes[i].batch; p++)
            rf_gemm_f32_ref(shapes[i].ta, shapes[i].tb, shapes[i].M, shapes[i].N, shapes[i].K, o.pa[p], o.lda,
                            o.pb[p], o.ldb, shapes[i].acc, want + p * o.nc, o.ldc);
        identical[i] = 1;
        for (int r = 0; r < 3; r++) {
            memcpy(o.C, o.C0, bytes);
            run_raffle(rs[r].impl, &o);
            memcpy(got, o.C, bytes);
            if (memcmp(got, want, bytes)) identical[i] = 0;
        }
        free(want);
        free(got);
        free_ops(&o);
        fprintf(stderr, ".");
    }
    fprintf(stderr, "\n");

    /* children: OpenBLAS 2 threads, other coretypes, BLIS */
    char core[5][128];
    double csec[5][NSHAPES];
    run_child(self, "", "openblas", 2, quick, csec[0], core[0], sizeof core[0]);
    run_child(self, "OPENBLAS_CORETYPE=SkylakeX", "openblas", 1, quick, csec[1], core[1], sizeof core[1]);
    run_child(self, "OPENBLAS_CORETYPE=Cooperlake", "openblas", 1, quick, csec[2], core[2], sizeof core[2]);
    const char *blis = find_blis(blis_arg, 1), *blis2 = find_blis(blis2_arg ? blis2_arg : blis_arg, 2);
    for (int c = 3; c < 5; c++) {
        const char *lib = c == 3 ? blis : blis2;
        if (lib) {
            /* Debian's BLIS 0.9.0 runs its generic kernels on this CPU
             * unless BLIS_ARCH_TYPE is set (then it detects skx) */
            run_child(self, "BLIS_ARCH_TYPE=skx", lib, c == 3 ? 1 : 2, quick, csec[c], core[c], sizeof core[c]);
        } else {
            snprintf(core[c], sizeof core[c], "not installed (libblis4-serial/-pthread; --blis LIB)");
            for (int i = 0; i < NSHAPES; i++) csec[c][i] = 0;
        }
    }
    const char *env_core = getenv("OPENBLAS_CORETYPE");

    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) { fprintf(stderr, "gemm_bench: cannot write %s\n", out); return 1; }
    time_t tnow = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&tnow));
    fprintf(f, "# raffle dense GEMM vs OpenBLAS vs peak (bench/gemm/gemm_bench.c%s), %s\n", quick ? ", --quick" : "",
            date);
    fprintf(f, "# CPU: %s; 2 cores, shared machine (best of %d rounds; 1 thread: thread CPU time, 2 threads: "
               "wall time)\n", cpu, rounds);
    fprintf(f, "# FP32 peak (rf_bench_fp32_peak, one core): AVX-512 %.1f GFLOP/s, AVX2 %.1f GFLOP/s\n", peak, peak2);
    fprintf(f, "# raffle blocking: kc %d, mc %d, nc %d, tile %d x %d; caches L1d %ld K, L2 %ld K, L3 %ld K/core\n",
            kc, mc, nc, mr, nr, l1 / 1024, l2 / 1024, l3 / 1024);
    fprintf(f, "# OpenBLAS in-process: OPENBLAS_CORETYPE=%s (%s); children: 2t %s, SkylakeX -> %s, Cooperlake -> %s\n",
            env_core ? env_core : "(unset)", openblas_get_corename(), core[0], core[1], core[2]);
    fprintf(f, "# BLIS 1t: %s (%s); 2t: %s (%s)\n", blis ? blis : "-", core[3], blis2 ? blis2 : "-", core[4]);
    fprintf(f, "# GFLOP/s = 2 M N K (x batch) / time: effective FLOPs of the product, not padded lanes.\n");
    fprintf(f, "# same = raffle AVX-512 1t, 2t and AVX2 all byte-identical to rf_gemm_f32_ref\n");
    fprintf(f, "# x2 = raffle 1 thread / 2 threads, both in wall time (products below 2^20 multiply-adds run on one)\n");
    fprintf(f, "# one training step = all of a preset's products, each as often as a batch-128 step issues it\n");
    fprintf(f, "%-14s %-20s %5s %5s %5s %2s %3s | %7s %5s %7s %5s %7s %5s | %7s %7s %7s %7s | %7s %7s | %4s\n",
            "preset", "product", "M", "N", "K", "tt", "b", "r512", "%pk", "r512x2", "x2", "ravx2", "%pk2", "oblas",
            "oblas2", "skx", "cpx", "blis", "blis2", "same");
    int np = 0;
    const char *cur = NULL;
    double fl = 0, t1 = 0, t2 = 0, tb = 0, tw = 0;
    for (int i = 0; i <= NSHAPES; i++) {
        if (cur && (i == NSHAPES || strcmp(shapes[i].preset, cur))) {
            fprintf(f, "%-14s %-20s %-29s | %7.1f %4.0f%% %7.1f %4.2fx %21s | %7.1f\n", cur, "one training step", "",
                    fl / t1 * 1e-9, 100.0 * fl / t1 * 1e-9 / peak, fl / t2 * 1e-9, tw / t2, "", fl / tb * 1e-9);
            fl = t1 = t2 = tb = tw = 0;
        }
        if (i == NSHAPES) break;
        const shape *s = &shapes[i];
        cur = s->preset;
        double f1 = gflops(s, sec[0][i]);
        fl += 2.0 * s->M * (double)s->N * s->K * s->batch * s->calls;
        t1 += sec[0][i] * s->calls;
        t2 += sec[1][i] * s->calls;
        tb += sec[3][i] * s->calls;
        tw += sec[4][i] * s->calls;
        char tt[3] = {s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', 0};
        fprintf(f, "%-14s %-20s %5d %5d %5d %2s %3d | %7.1f %4.0f%% %7.1f %4.2fx %7.1f %4.0f%% | %7.1f", s->preset,
                s->name, s->M, s->N, s->K, tt, s->acc, f1, 100.0 * f1 / peak, gflops(s, sec[1][i]),
                sec[4][i] / sec[1][i], gflops(s, sec[2][i]), 100.0 * gflops(s, sec[2][i]) / peak2,
                gflops(s, sec[3][i]));
        for (int c = 0; c < 5; c++) {
            if (c == 3) fprintf(f, " |");
            if (csec[c][i] > 0) fprintf(f, " %7.1f", gflops(s, csec[c][i]));
            else fprintf(f, " %7s", "-");
        }
        fprintf(f, " | %4s\n", identical[i] ? "yes" : "NO");
        np++;
    }
    if (f != stdout) fclose(f);
    rf_gemm_free(g1);
    rf_gemm_free(g2);
    rf_gemm_free(gv);
    rf_pool_free(pool);
    for (int i = 0; i < NSHAPES; i++)
        if (!identical[i]) return 1;
    return np == NSHAPES ? 0 : 1;
}
