/* Benchmark helper linked against libraffle: prints a preset's JSON spec and
 * parameter count (so the PyTorch twin is built from the very same spec),
 * the machine's measured FP32 FMA peak (the kernels module's probe), or a
 * per-layer profile of training steps (`layers`: CPU time of each layer's
 * forward and backward and of the optimizer, through the model's layer
 * hook, which turns the model-level fusions off), or whole fused steps
 * (`step`: thread CPU time per step and a hash of the trained parameters,
 * to A/B two builds for speed and bits). */
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
#include "raffle/threads.h"

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
static double prof_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
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

/* A preset ready to train on `threads` threads (engine with the GEMM and
 * pool attached, Adam) and one random batch. */
typedef struct net {
    rf_ctx ctx;
    rf_model *m;
    rf_optim o;
    float *x, *dl;
    int32_t *y;
    int classes;
} net;

static void net_close(net *n) {
    free(n->x); free(n->dl); free(n->y);
    rf_optim_free(&n->o);
    rf_model_free(n->m);
    rf_gemm_detach(&n->ctx);
}

/* 0, or 1 after printing why not (nothing to close then). */
static int net_open(net *n, const char *name, int batch, int threads) {
    memset(n, 0, sizeof *n);
    rf_ctx_init(&n->ctx);
    n->ctx.engine.v[RF_ENGINE_THREADS] = threads;
    rf_status s = rf_gemm_attach(&n->ctx);
    if (s == RF_OK) s = rf_model_create(&n->ctx, name, &n->m);
    if (s == RF_OK) s = rf_model_init(&n->ctx, n->m, 1);
    rf_optim_cfg cfg;
    rf_optim_cfg_default(&cfg, RF_OPT_ADAM);
    if (s == RF_OK) s = rf_optim_init(&n->ctx, &n->o, &cfg, n->m->n_params);
    if (s != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(&n->ctx)); net_close(n); return 1; }
    rf_model *m = n->m;
    size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    n->classes = m->layers[m->n_layers - 1].out_size;
    n->x = malloc((size_t)batch * in * sizeof(float));
    n->dl = malloc((size_t)batch * n->classes * sizeof(float));
    n->y = malloc((size_t)batch * sizeof(int32_t));
    if (!n->x || !n->dl || !n->y) { fprintf(stderr, "probe: out of memory\n"); net_close(n); return 1; }
    rf_rng g;
    rf_rng_init(&g, 7, 0);
    for (size_t i = 0; i < (size_t)batch * in; i++) n->x[i] = rf_rng_normal(&g);
    for (int i = 0; i < batch; i++) n->y[i] = (int32_t)(rf_rng_u32(&g) % (uint32_t)n->classes);
    return 0;
}

static int profile(const char *name, int batch, int steps, int threads) {
    rf_kernels_init();
    prof_threads = threads;
    net nt;
    if (net_open(&nt, name, batch, threads)) return 1;
    rf_ctx *ctx = &nt.ctx;
    rf_model *m = nt.m;
    rf_optim *o = &nt.o;
    float *x = nt.x, *dl = nt.dl;
    int32_t *y = nt.y;
    int classes = nt.classes;
    rf_status s = RF_OK;
    prof p = {m->n_layers, calloc((size_t)m->n_layers, sizeof(double)), calloc((size_t)m->n_layers, sizeof(double)), 0, -1, 0};
    if (!p.fwd || !p.bwd) { fprintf(stderr, "probe: out of memory\n"); return 1; }
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
        s = rf_model_forward(ctx, m, x, batch, 1, &logits);
        double t1 = prof_now();
        if (s == RF_OK) rf_loss_xent(logits, y, batch, classes, 0.0f, dl);
        double t2 = prof_now();
        p.last = t2;
        if (s == RF_OK) s = rf_model_backward(ctx, m, dl);
        double t3 = prof_now();
        if (p.on && p.last_bwd >= 0) p.bwd[p.last_bwd] += t3 - p.last;
        rf_optim_step(o, m, 1e-3f);
        double t4 = prof_now();
        if (p.on) { t_loss += t2 - t1; t_opt += t4 - t3; t_all += t4 - t0; }
    }
    if (s != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(ctx)); return 1; }
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
    free(p.fwd); free(p.bwd);
    net_close(&nt);
    return 0;
}

/* ---- threads profile ---------------------------------------------------------
 * `threads NAME [BATCH [STEPS [THREADS [ROUNDS]]]]`: where a step's time goes on more
 * than one thread, in thread CPU time (rf_pool_profile), so it holds on a
 * busy machine: per layer (forward, backward), the loss, zero_grad and the
 * optimizer, the caller's serial time (outside the pool's jobs) and the
 * jobs' span (their longest part); with the 1-thread CPU time of the same
 * steps, T1 / (serial + span) is the speed-up a machine with a free core
 * per thread would show, less the jobs' start and join (counted). */
typedef struct tprof {
    rf_pool *pool;
    int n;
    double *ser, *spn, *one;   /* [2n]: forward i, backward n + i */
    rf_pool_stats last;
    double last1;              /* thread CPU clock at the previous hook (1 thread) */
    int idx, on;               /* slot of the code since the previous hook */
} tprof;

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Charges the time since the previous mark to slot tp->idx, then moves on
 * to slot next. */
static void tmark(tprof *tp, int next) {
    rf_pool_stats st;
    rf_pool_stats_get(tp->pool, &st);
    double c = thread_cpu();
    if (tp->on && tp->idx >= 0) {
        tp->ser[tp->idx] += st.serial_s - tp->last.serial_s;
        tp->spn[tp->idx] += st.span_s - tp->last.span_s;
        tp->one[tp->idx] += c - tp->last1;
    }
    tp->last = st;
    tp->last1 = c;
    tp->idx = next;
}

/* Forward: called after layer i; backward: before layer i (the slot that
 * ends is the previous layer's backward). */
static rf_status tprof_hook(void *ud, int layer, int backward, float *data, size_t n) {
    (void)data; (void)n;
    tprof *tp = ud;
    if (!backward) {
        tp->idx = layer;
        tmark(tp, -1);
    } else {
        tmark(tp, tp->n + layer);
    }
    return RF_OK;
}

enum { TP_LOSS, TP_ZERO, TP_OPT, TP_EXTRA };

/* fused: no per-layer hook, so the model fuses layers as training does
 * (a hook turns fusion off); the per-slot table then has only forward,
 * backward, loss, zeroing and optimizer. */
static int threads_profile(const char *name, int batch, int steps, int threads, int rounds, int fused) {
    rf_kernels_init();
    double *t1 = NULL;   /* the 1-thread run's CPU time per slot */
    tprof tp = {0};
    /* Rounds of 1 thread then `threads`: the least CPU time of each is the
     * least disturbed by other users of the machine (caches, memory). */
    double best1 = 0.0, best2 = 0.0;
    for (int run = 0; run < 2 * rounds; run++) {
        const int last = run >= 2 * rounds - 2;
        net nt;
        if (net_open(&nt, name, batch, run % 2 ? threads : 1)) return 1;
        rf_ctx *ctx = &nt.ctx;
        rf_model *m = nt.m;
        float *x = nt.x, *dl = nt.dl;
        int32_t *y = nt.y;
        int classes = nt.classes, L = m->n_layers, slots = 2 * L + TP_EXTRA;
        rf_status s = RF_OK;
        tp = (tprof){ctx->engine.pool, L, calloc((size_t)slots, sizeof(double)), calloc((size_t)slots, sizeof(double)),
                     calloc((size_t)slots, sizeof(double)), {0}, 0, -1, 0};
        if (!tp.ser || !tp.spn || !tp.one) { fprintf(stderr, "probe: out of memory\n"); return 1; }
        m->hook = fused ? NULL : tprof_hook;
        m->hook_ud = &tp;
        rf_pool_stats st0 = {0}, st1 = {0};
        double c0 = 0, w0 = 0, c1 = 0, w1 = 0;
        for (int it = -2; it < steps && s == RF_OK; it++) {   /* two untimed warm-up steps */
            if (it == 0) {
                rf_pool_profile(ctx->engine.pool, 1);
                tp.on = 1;
                rf_pool_stats_get(ctx->engine.pool, &st0);
                c0 = thread_cpu();
                w0 = prof_wall();
            }
            tp.idx = 2 * L + TP_ZERO;
            tmark(&tp, 2 * L + TP_ZERO);
            rf_model_zero_grad_on(ctx, m);   /* as the training loop (src/nn/train.c) */
            tmark(&tp, 0);
            const float *logits;
            s = rf_model_forward(ctx, m, x, batch, 1, &logits);
            tmark(&tp, 2 * L + TP_LOSS);
            if (s == RF_OK) rf_loss_xent(logits, y, batch, classes, 0.0f, dl);
            tmark(&tp, 2 * L - 1);
            if (s == RF_OK) s = rf_model_backward(ctx, m, dl);
            tmark(&tp, 2 * L + TP_OPT);
            rf_optim_step(&nt.o, m, 1e-3f);
            tmark(&tp, -1);
        }
        if (s != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(ctx)); return 1; }
        rf_pool_stats_get(ctx->engine.pool, &st1);
        c1 = thread_cpu();
        w1 = prof_wall();
        if (run % 2 == 0) {
            free(t1);
            t1 = tp.one;
            tp.one = NULL;
            double T1 = 0;
            for (int i = 0; i < slots; i++) T1 += t1[i] / steps;
            best1 = run == 0 || T1 < best1 ? T1 : best1;
            printf("%s: batch %d, %d steps, %s; 1 thread: %.2f ms CPU a step\n", name, batch, steps,
                   rf_isa_name(rf_kernels_isa()), 1e3 * (c1 - c0) / steps);
        } else {
            double ser = (st1.serial_s - st0.serial_s) / steps, spn = (st1.span_s - st0.span_s) / steps;
            double wrk = (st1.work_s - st0.work_s) / steps, wt = (st1.wait_s - st0.wait_s) / steps, T1 = 0;
            for (int i = 0; i < slots; i++) T1 += t1[i] / steps;
            printf("%d threads: serial %.2f ms + span %.2f ms = %.2f ms a step (parts' work %.2f ms, caller's wait %.2f ms); "
                   "%.1f jobs and %.2f sleeps a step; wall %.2f ms a step\n",
                   threads, 1e3 * ser, 1e3 * spn, 1e3 * (ser + spn), 1e3 * wrk, 1e3 * wt,
                   (double)(st1.jobs - st0.jobs) / steps, (double)(st1.sleeps - st0.sleeps) / steps, 1e3 * (w1 - w0) / steps);
            printf("speed-up bound (1-thread CPU %.2f ms / (serial + span)): %.2fx; work efficiency %.2f\n", 1e3 * T1,
                   T1 / (ser + spn), T1 / (ser + wrk));
            best2 = run == 1 || ser + spn < best2 ? ser + spn : best2;
            if (last)
                printf("best of %d rounds: 1 thread %.2f ms, %d threads %.2f ms (serial + span): bound %.2fx\n", rounds,
                       1e3 * best1, threads, 1e3 * best2, best1 / best2);
            if (!last) goto next;
            printf("%-28s %-10s %9s %9s %9s %9s %9s\n", "slot", "type", "1t_ms", "serial_ms", "span_ms", "speedup", "lost_ms");
            for (int i = 0; i < slots; i++) {
                char label[64];
                const char *type = "";
                if (i < 2 * L) {
                    snprintf(label, sizeof label, "%s %s", m->layers[i % L].name, i < L ? "fwd" : "bwd");
                    type = rf_layer_type_name(m->layers[i % L].type);
                } else {
                    snprintf(label, sizeof label, "%s", i == 2 * L + TP_LOSS ? "loss" : i == 2 * L + TP_ZERO ? "zero_grad" : "optimizer (adam)");
                }
                double a = t1[i] / steps, b = tp.ser[i] / steps, c = tp.spn[i] / steps;
                if (a < 1e-5 && b + c < 1e-5) continue;
                /* lost: what this slot adds over a perfect split of its 1-thread time */
                printf("%-28.28s %-10.10s %9.3f %9.3f %9.3f %8.2fx %9.3f\n", label, type, 1e3 * a, 1e3 * b, 1e3 * c,
                       b + c > 0 ? a / (b + c) : 0.0, 1e3 * (b + c - a / threads));
            }
        }
    next:
        (void)c0; (void)w0;
        free(tp.ser); free(tp.spn); free(tp.one);
        net_close(&nt);
    }
    free(t1);
    return 0;
}

/* `step NAME [BATCH [STEPS]]`: whole training steps on one thread without
 * the per-layer hook, so the model-level fusions run as in `raffle train`
 * (a hook turns them off): thread CPU time, mean and least step. */
static int step_profile(const char *name, int batch, int steps) {
    rf_kernels_init();
    net nt;
    if (net_open(&nt, name, batch, 1)) return 1;
    rf_status s = RF_OK;
    double all = 0, best = 0;
    for (int it = -2; it < steps && s == RF_OK; it++) {   /* two untimed warm-up steps */
        double t0 = thread_cpu();
        const float *logits;
        rf_model_zero_grad(nt.m);
        s = rf_model_forward(&nt.ctx, nt.m, nt.x, batch, 1, &logits);
        if (s == RF_OK) rf_loss_xent(logits, nt.y, batch, nt.classes, 0.0f, nt.dl);
        if (s == RF_OK) s = rf_model_backward(&nt.ctx, nt.m, nt.dl);
        rf_optim_step(&nt.o, nt.m, 1e-3f);
        double t = thread_cpu() - t0;
        if (it >= 0) { all += t; best = it == 0 || t < best ? t : best; }
    }
    if (s != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(&nt.ctx)); net_close(&nt); return 1; }
    /* FNV-1a of the trained parameters' bytes: builds that compute the same
     * floats print the same hash. */
    uint64_t h = 1469598103934665603ull;
    const unsigned char *pb = (const unsigned char *)nt.m->params;
    for (size_t i = 0; i < nt.m->n_params * sizeof(float); i++) h = (h ^ pb[i]) * 1099511628211ull;
    printf("%s: batch %d, %d steps, 1 thread, %s, fused; %.1f ms a step (least %.1f), %.0f samples/s (thread CPU time); "
           "params %016llx\n",
           name, batch, steps, rf_isa_name(rf_kernels_isa()), 1e3 * all / steps, 1e3 * best, batch * steps / all,
           (unsigned long long)h);
    net_close(&nt);
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
    if (argc >= 3 && strcmp(argv[1], "step") == 0)
        return step_profile(argv[2], argc >= 4 ? atoi(argv[3]) : 128, argc >= 5 ? atoi(argv[4]) : 10);
    if (argc >= 3 && strcmp(argv[1], "threads") == 0)
        return threads_profile(argv[2], argc >= 4 ? atoi(argv[3]) : 128, argc >= 5 ? atoi(argv[4]) : 10,
                               argc >= 6 ? atoi(argv[5]) : 2, argc >= 7 && atoi(argv[6]) > 0 ? atoi(argv[6]) : 1,
                               argc >= 8 && strcmp(argv[7], "fused") == 0);
    fprintf(stderr, "usage: probe spec NAME | probe params NAME | probe peak [SECONDS] | probe layers NAME [BATCH [STEPS [THREADS]]] | probe step NAME [BATCH [STEPS]] | probe threads NAME [BATCH [STEPS [THREADS [ROUNDS [fused]]]]]\n");
    return 2;
}
