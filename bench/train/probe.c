/* Benchmark helper linked against libraffle: prints a preset's JSON spec and
 * parameter count (so the PyTorch twin is built from the very same spec),
 * the machine's measured FP32 FMA peak (the kernels module's probe), or a
 * per-layer profile of training steps (`layers`: CPU time of each layer's
 * forward and backward and of the optimizer, through the model's layer
 * hook; perf is not available on the shared machines). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "raffle/engine.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"
#include "raffle/nn.h"

/* ---- per-layer profile ------------------------------------------------------ */
typedef struct prof {
    int n;
    double *fwd, *bwd;   /* seconds per layer, summed over the timed steps */
    double last;         /* clock at the previous hook */
    int last_bwd;        /* layer whose backward started at `last` (-1: none) */
    int on;
} prof;

/* One thread: the thread's CPU time (other users of the machine do not
 * count); more: wall-clock time. */
static int prof_threads = 1;
static double prof_now(void) {
    struct timespec ts;
    clock_gettime(prof_threads > 1 ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Forward: called after layer i, so the time since the previous hook is
 * layer i's (and any hook-less layers' before it). Backward: called before
 * layer i, so the time since the previous hook is the layer before's. */
static rf_status prof_hook(void *ud, int layer, int backward, float *data, size_t n) {
    (void)data; (void)n;
    prof *p = ud;
    double t = prof_now();
    if (p->on) {
        if (!backward) p->fwd[layer] += t - p->last;
        else if (p->last_bwd >= 0) p->bwd[p->last_bwd] += t - p->last;
    }
    p->last_bwd = backward ? layer : -1;
    p->last = t;
    return RF_OK;
}

/* Multiply-adds of layer i's forward for one sample (rf_model_flops over
 * layers 0..i minus over 0..i-1). */
static double layer_macs(rf_model *m, int i) {
    int n = m->n_layers;
    m->n_layers = i + 1;
    double a = rf_model_flops(m);
    m->n_layers = i;
    double b = rf_model_flops(m);
    m->n_layers = n;
    return a - b;
}

static int profile(const char *name, int batch, int steps, int threads) {
    rf_kernels_init();
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.engine.v[RF_ENGINE_THREADS] = threads;
    prof_threads = threads;
    rf_model *m = NULL;
    rf_optim o;
    memset(&o, 0, sizeof o);
    rf_status s = rf_gemm_attach(&ctx);
    if (s == RF_OK) s = rf_model_create(&ctx, name, &m);
    if (s == RF_OK) s = rf_model_init(&ctx, m, 1);
    rf_optim_cfg cfg;
    rf_optim_cfg_default(&cfg, RF_OPT_ADAM);
    if (s == RF_OK) s = rf_optim_init(&ctx, &o, &cfg, m->n_params);
    if (s != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(&ctx)); rf_model_free(m); rf_gemm_detach(&ctx); return 1; }
    size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    int classes = m->layers[m->n_layers - 1].out_size;
    float *x = malloc((size_t)batch * in * sizeof(float)), *dl = malloc((size_t)batch * classes * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    prof p = {m->n_layers, calloc((size_t)m->n_layers, sizeof(double)), calloc((size_t)m->n_layers, sizeof(double)), 0, -1, 0};
    if (!x || !dl || !y || !p.fwd || !p.bwd) { fprintf(stderr, "probe: out of memory\n"); return 1; }
    rf_rng g;
    rf_rng_init(&g, 7, 0);
    for (size_t i = 0; i < (size_t)batch * in; i++) x[i] = rf_rng_normal(&g);
    for (int i = 0; i < batch; i++) y[i] = (int32_t)(rf_rng_u32(&g) % (uint32_t)classes);
    m->hook = prof_hook;
    m->hook_ud = &p;
    double t_loss = 0, t_opt = 0, t_all = 0;
    for (int it = -2; it < steps && s == RF_OK; it++) {   /* two untimed warm-up steps */
        p.on = it >= 0;
        double t0 = prof_now();
        p.last = t0;
        p.last_bwd = -1;
        const float *logits;
        rf_model_zero_grad(m);
        s = rf_model_forward(&ctx, m, x, batch, 1, &logits);
        double t1 = prof_now();
        if (s == RF_OK) rf_loss_xent(logits, y, batch, classes, 0.0f, dl);
        double t2 = prof_now();
        p.last = t2;
        if (s == RF_OK) s = rf_model_backward(&ctx, m, dl);
        double t3 = prof_now();
        if (p.on && p.last_bwd >= 0) p.bwd[p.last_bwd] += t3 - p.last;
        rf_optim_step(&o, m, 1e-3f);
        double t4 = prof_now();
        if (p.on) { t_loss += t2 - t1; t_opt += t4 - t3; t_all += t4 - t0; }
    }
    if (s != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(&ctx)); return 1; }
    printf("%s: batch %d, %d steps, %d thread(s), %s; %.1f ms a step, %.0f samples/s (%s)\n", name, batch, steps, threads,
           rf_isa_name(rf_kernels_isa()), 1e3 * t_all / steps, batch * steps / t_all,
           threads > 1 ? "wall clock" : "thread CPU time");
    printf("%-28s %-10s %9s %9s %7s %9s %9s\n", "layer", "type", "fwd_ms", "bwd_ms", "share", "fwd_GF/s", "bwd_GF/s");
    int params_before = 0;   /* a layer with parameters before: the input gradient is computed */
    for (int i = 0; i < m->n_layers; i++) {
        double f = p.fwd[i] / steps, b = p.bwd[i] / steps, macs = layer_macs(m, i) * batch;
        char gf[16] = "", gb[16] = "";
        if (macs > 0 && f > 0) snprintf(gf, sizeof gf, "%.1f", 2.0 * macs / f / 1e9);
        /* backward: the weight gradient, and the input gradient when something before uses it */
        if (macs > 0 && b > 0) snprintf(gb, sizeof gb, "%.1f", (params_before ? 4.0 : 2.0) * macs / b / 1e9);
        params_before |= m->layers[i].n_params > 0;
        printf("%-28.28s %-10.10s %9.3f %9.3f %6.1f%% %9s %9s\n", m->layers[i].name, rf_layer_type_name(m->layers[i].type), 1e3 * f,
               1e3 * b, 100.0 * (f + b) * steps / t_all, gf, gb);
    }
    printf("%-28s %-10s %9.3f %9s %6.1f%%\n", "loss", "", 1e3 * t_loss / steps, "", 100.0 * t_loss / t_all);
    printf("%-28s %-10s %9.3f %9s %6.1f%%\n", "optimizer (adam)", "", 1e3 * t_opt / steps, "", 100.0 * t_opt / t_all);
    free(x); free(dl); free(y); free(p.fwd); free(p.bwd);
    rf_optim_free(&o);
    rf_model_free(m);
    rf_gemm_detach(&ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "spec") == 0) {
        const char *spec = rf_model_preset(argv[2]);
        if (!spec) { fprintf(stderr, "probe: unknown preset %s (%s)\n", argv[2], rf_model_preset_names()); return 1; }
        puts(spec);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "params") == 0) {
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        rf_model *m;
        if (rf_model_create(&ctx, argv[2], &m) != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(&ctx)); return 1; }
        printf("%zu\n", m->n_params);
        rf_model_free(m);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "peak") == 0) {
        rf_kernels_init();
        printf("%.2f\n", rf_bench_fp32_peak(argc >= 3 ? atof(argv[2]) : 1.0));
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "layers") == 0)
        return profile(argv[2], argc >= 4 ? atoi(argv[3]) : 128, argc >= 5 ? atoi(argv[4]) : 5, argc >= 6 ? atoi(argv[5]) : 1);
    fprintf(stderr, "usage: probe spec NAME | probe params NAME | probe peak [SECONDS] | probe layers NAME [BATCH [STEPS [THREADS]]]\n");
    return 2;
}
