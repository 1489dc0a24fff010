/* raffle bench: benchmarks.
 *
 *   raffle bench kernels [--json] [--quick] [--out FILE] [--reps N]
 *   bench/train/run.sh        (the training bench vs PyTorch: a script)
 *   raffle bench coord ...   (the coordinator's benchmark)
 *
 * `kernels` measures this core's fp32 FMA and int8 VNNI peaks, then, on one
 * thread, times dense OpenBLAS sgemm, the sparse fp32 kernel, the dense int8
 * kernel and the sparse int8 kernel side by side on the layer shapes of
 * lenet-300-100, conv-2 and vit-tiny at batch 1, 16, 64, 256 and sparsity
 * 0.8 / 0.9 / 0.95. Each time is thread CPU time (time spent descheduled
 * is not counted), best of several repetitions (filters out cache pollution
 * by other load on a shared machine); all ratios come from the same run.
 *
 * gflops is EFFECTIVE throughput: 2*M*N*K dense-equivalent operations over
 * the measured time, so gflops ratios are speedups. peak_fraction is the work
 * the kernel actually does (rf_spmm_work_ops / rf_qgemm_work_ops: non-zeros,
 * stored 4-groups or ELL slots, zero padding included; 2*M*N*K for dense)
 * over the fp32 peak (fp32 kernels) or the int8 peak (int8 kernels). */
#include "cli/cli.h"
#include "raffle/coord.h"
#include "raffle/kernels.h"

#include <mpi.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- layer shapes ---------------------------------------------------------
 * rows_per_sample: im2col positions for conv (28x28 "same" convs in conv-2),
 * tokens for vit-tiny (16 patches of 7x7 + cls = 17; the patch embedding sees
 * the 16 patches). Conv im2col rows are timed in chunks of at most
 * MAX_IM2COL_ROWS rows (a forward processes im2col in chunks too): per-row
 * throughput of both kernels is flat beyond a few 64-row panels, and calls
 * of a few ms are less likely to be preempted on a shared machine than the
 * 40 ms a whole batch-16 conv2 GEMM takes. */
#define MAX_IM2COL_ROWS 2048

/* The activation layout a layer's fp32 products run in when deployed
 * sparse (kernels.h rf_layout). A conv layer multiplies W by its
 * feature-major column matrix colT[K, positions] and gets its per-channel
 * output; vit-tiny's patch embedding, transformer blocks and head run in
 * the model's feature-major runs (src/nn/model.c: a batch of 2 samples or
 * more); lenet-300-100's and conv-2's linear layers stay row-major (by the
 * runs' rule their transposes would only move, not go away). Sparse fp32
 * entries of a feature-major shape compare with the faster of a
 * feature-major and a row-major dense sgemm timed beside them. The int8
 * kernels are row-major everywhere and compare with the row-major sgemm
 * (two dense entries, "layout"). feat_from: the batch from which the
 * layer runs feature-major (0: never). */
typedef struct { const char *model, *layer; int N, K, rows_per_sample, feat_from; } bench_shape;
static const bench_shape shapes[] = {
    {"lenet-300-100", "fc1", 300, 784, 1, 0},
    {"lenet-300-100", "fc2", 100, 300, 1, 0},
    {"lenet-300-100", "fc3", 10, 100, 1, 0},
    {"conv-2", "conv1", 64, 9, 784, 1},
    {"conv-2", "conv2", 64, 576, 784, 1},
    {"conv-2", "fc1", 256, 12544, 1, 0},
    {"conv-2", "fc2", 256, 256, 1, 0},
    {"conv-2", "fc3", 10, 256, 1, 0},
    {"vit-tiny", "qkv", 192, 64, 17, 2},
    {"vit-tiny", "proj", 64, 64, 17, 2},
    {"vit-tiny", "mlp1", 256, 64, 17, 2},
    {"vit-tiny", "mlp2", 64, 256, 17, 2},
    {"vit-tiny", "patch", 64, 49, 16, 2},
};
static const char *const layout_names[] = {"rows", "feature"};
static const int batches_full[] = {1, 16, 64, 256};
static const int batches_quick[] = {1, 16, 64};
static const double sparsities[] = {0.8, 0.9, 0.95};

/* Targets of issue 6 at batch >= 16, as ratio over dense fp32 sgemm. */
typedef struct { const char *name, *kernel; double sparsity, target; } bench_target;
static const bench_target targets[] = {
    {"sparse_90_ge_4x", "sparse", 0.9, 4.0},
    {"sparse_95_ge_7x", "sparse", 0.95, 7.0},
    {"int8_ge_2.5x", "int8", 0.0, 2.5},
    {"sparse_int8_90_ge_8x", "sparse-int8", 0.9, 8.0},
};

typedef struct {
    int reps;
    double min_sample;   /* seconds per timed sample */
} bench_cfg;

typedef enum { K_DENSE, K_SPARSE, K_INT8, K_SPARSE_INT8 } kern_id;
static const char *const kern_names[] = {"dense", "sparse", "int8", "sparse-int8"};

typedef struct {
    kern_id k;
    int M, N, K;
    const float *X, *W;
    const uint8_t *A;
    const rf_spmat *sp;
    const rf_qmat *q;
    float *Y;
    int32_t *C;
    rf_layout lay;   /* of X and Y (fp32 kernels) */
    int ld;          /* their row stride when feature-major: rf_feat_ld(M), as the conv layer lays them out */
} bench_job;

static void run_once(const bench_job *j) {
    switch (j->k) {
    case K_DENSE: rf_linear_f32_lay(j->X, j->lay, j->W, NULL, j->Y, j->lay, j->M, j->N, j->K, j->ld); break;
    case K_SPARSE: rf_spmm_lay(j->sp, j->X, j->lay, NULL, j->Y, j->lay, j->M, j->ld); break;
    case K_INT8: case K_SPARSE_INT8: rf_qgemm(j->q, j->A, j->C, j->M); break;
    }
}

/* Best time of one call: each sample repeats the call enough times to last
 * min_sample (0.2 ms: shorter than a scheduler slice, so on an oversubscribed
 * machine some samples run uninterrupted); the best of `reps` is kept. */
static double time_best(const bench_cfg *c, const bench_job *j) {
    run_once(j);
    double t0 = rf_thread_seconds();
    run_once(j);
    double one = rf_thread_seconds() - t0;
    long inner = one > 0.0 ? (long)(c->min_sample / one) + 1 : 1000;
    double best = 1e30;
    for (int r = 0; r < c->reps; r++) {
        t0 = rf_thread_seconds();
        for (long i = 0; i < inner; i++) run_once(j);
        double t = (rf_thread_seconds() - t0) / (double)inner;
        if (t < best) best = t;
    }
    return best;
}

/* W with exactly round(sparsity*N*K) zeros at random positions; the int8 copy
 * is a symmetric per-tensor quantization that keeps non-zeros non-zero. */
static int make_weights(rf_rng *r, int N, int K, double sparsity, float *W, int8_t *Wq) {
    size_t n = (size_t)N * K, nz = (size_t)llround(sparsity * (double)n);
    uint32_t *perm = malloc(sizeof(uint32_t) * n);
    if (!perm) return -1;
    for (size_t i = 0; i < n; i++) { perm[i] = (uint32_t)i; W[i] = rf_rng_normal(r); }
    rf_rng_shuffle_u32(r, perm, n);
    for (size_t i = 0; i < nz; i++) W[perm[i]] = 0.0f;
    free(perm);
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++) if (fabsf(W[i]) > mx) mx = fabsf(W[i]);
    float s = mx > 0.0f ? 127.0f / mx : 1.0f;
    for (size_t i = 0; i < n; i++) {
        long v = lrintf(W[i] * s);
        if (W[i] != 0.0f && v == 0) v = W[i] > 0.0f ? 1 : -1;
        Wq[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return 0;
}

typedef struct {
    cJSON *results;
    double fp32_peak, int8_peak;
    int json;
} bench_out;

static void add_result(bench_out *o, const bench_shape *s, kern_id k, rf_layout lay, int batch, int M,
                       double sparsity, double t, double t_dense, double work_ops) {
    double dense_ops = 2.0 * M * (double)s->N * s->K;
    double gflops = dense_ops / t * 1e-9;
    double peak = (k == K_INT8 || k == K_SPARSE_INT8) ? o->int8_peak : o->fp32_peak;
    double pf = peak > 0.0 ? work_ops / t * 1e-9 / peak : 0.0;
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%d", s->N, s->K);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "kernel", kern_names[k]);
    cJSON_AddStringToObject(e, "model", s->model);
    cJSON_AddStringToObject(e, "layer", s->layer);
    cJSON_AddStringToObject(e, "shape", shape);
    cJSON_AddStringToObject(e, "layout", layout_names[lay]);
    cJSON_AddNumberToObject(e, "batch", batch);
    cJSON_AddNumberToObject(e, "rows", M);
    cJSON_AddNumberToObject(e, "sparsity", sparsity);
    cJSON_AddNumberToObject(e, "time_us", round(t * 1e8) / 100.0);
    cJSON_AddNumberToObject(e, "gflops", round(gflops * 100.0) / 100.0);
    cJSON_AddNumberToObject(e, "ratio_vs_dense", round(t_dense / t * 1000.0) / 1000.0);
    cJSON_AddNumberToObject(e, "peak_fraction", round(pf * 1000.0) / 1000.0);
    cJSON_AddItemToArray(o->results, e);
    FILE *f = o->json ? stderr : stdout;
    fprintf(f, "%-14s %-6s %-10s %-4s %5d %6d %5.2f %-12s %10.1f %9.2f %7.2fx %6.3f\n", s->model, s->layer, shape,
            lay == RF_FEAT ? "feat" : "rows", batch, M, sparsity, kern_names[k], t * 1e6, gflops, t_dense / t, pf);
}

/* One shape at one batch: dense and int8 once, sparse kernels per sparsity. */
static int bench_shape_batch(const bench_cfg *c, bench_out *o, rf_rng *r, const bench_shape *s, int batch) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    long rows = (long)batch * s->rows_per_sample;
    int M = (int)(s->rows_per_sample > 1 && rows > MAX_IM2COL_ROWS ? MAX_IM2COL_ROWS : rows);
    int N = s->N, K = s->K, rc = 1;
    size_t nk = (size_t)N * K;
    size_t cols = (size_t)rf_feat_ld(M);   /* >= M: room for either layout */
    float *W = malloc(sizeof(float) * nk), *X = malloc(sizeof(float) * cols * K);
    float *Y = malloc(sizeof(float) * cols * N);
    int8_t *Wq = malloc(nk);
    uint8_t *A = malloc((size_t)M * K);
    int32_t *C = malloc(sizeof(int32_t) * (size_t)M * N);
    rf_spmat *sp = NULL;
    rf_qmat *q = NULL;
    if (!W || !X || !Y || !Wq || !A || !C) goto out;
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (uint8_t)rf_rng_u32(r);
    for (size_t i = 0; i < cols * K; i++) X[i] = rf_rng_normal(r);
    if (make_weights(r, N, K, 0.0, W, Wq)) goto out;
    bench_job j = {K_DENSE, M, N, K, X, W, A, NULL, NULL, Y, C, RF_ROWS, rf_feat_ld(M)};
    /* t_dense: row-major sgemm (the int8 kernels' comparison); t_fp32: the
     * faster of that and sgemm in the layer's fp32 layout (the sparse
     * kernel's comparison). */
    rf_layout fp32 = s->feat_from && batch >= s->feat_from ? RF_FEAT : RF_ROWS;
    double t_dense = time_best(c, &j), t_fp32 = t_dense;
    add_result(o, s, K_DENSE, RF_ROWS, batch, M, 0.0, t_dense, t_dense, 2.0 * M * (double)nk);
    if (fp32 != RF_ROWS) {
        j.lay = fp32;
        double t = time_best(c, &j);
        add_result(o, s, K_DENSE, fp32, batch, M, 0.0, t, t, 2.0 * M * (double)nk);
        t_fp32 = t < t_dense ? t : t_dense;
    }
    if (rf_qmat_pack(&ctx, Wq, N, K, 0, &q)) goto out;
    j.k = K_INT8; j.q = q;
    add_result(o, s, K_INT8, RF_ROWS, batch, M, 0.0, time_best(c, &j), t_dense, 2.0 * M * (double)nk);
    rf_qmat_free(q); q = NULL;
    for (size_t si = 0; si < sizeof sparsities / sizeof sparsities[0]; si++) {
        if (make_weights(r, N, K, sparsities[si], W, Wq)) goto out;
        if (rf_spmat_pack(&ctx, W, N, K, &sp) || rf_qmat_pack(&ctx, Wq, N, K, 1, &q)) goto out;
        j.k = K_SPARSE; j.sp = sp; j.lay = fp32;
        /* feature-major operands always take the panels: 2 ops per non-zero and row */
        double work = fp32 == RF_ROWS ? rf_spmm_work_ops(sp, M) : 2.0 * M * (double)rf_spmat_nnz(sp);
        add_result(o, s, K_SPARSE, fp32, batch, M, sparsities[si], time_best(c, &j), t_fp32, work);
        j.k = K_SPARSE_INT8; j.q = q;
        add_result(o, s, K_SPARSE_INT8, RF_ROWS, batch, M, sparsities[si], time_best(c, &j), t_dense,
                   rf_qgemm_work_ops(q, M));
        rf_spmat_free(sp); sp = NULL;
        rf_qmat_free(q); q = NULL;
    }
    rc = 0;
out:
    if (rc) fprintf(stderr, "raffle bench kernels: %s\n", ctx.err[0] ? ctx.err : "out of memory");
    rf_spmat_free(sp);
    rf_qmat_free(q);
    free(W); free(X); free(Y); free(Wq); free(A); free(C);
    return rc;
}

/* Summary per target over all entries at batch >= 16: geometric mean, min,
 * max, how many entries reach the target, and the time-weighted ratio
 * (sum of dense times / sum of kernel times: the speed-up of running all the
 * listed layers once, dominated by the big ones). "met" uses the geometric
 * mean, which weighs every (shape, batch) equally. */
static cJSON *summarize(cJSON *results, FILE *f) {
    cJSON *sum = cJSON_CreateObject();
    fprintf(f, "\ntargets (batch >= 16, ratio vs dense sgemm; met = geometric mean >= target):\n");
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        double lsum = 0.0, mn = 1e30, mx = 0.0, td = 0.0, tk = 0.0;
        int n = 0, ok = 0;
        cJSON *e;
        cJSON_ArrayForEach(e, results) {
            const char *k = cJSON_GetObjectItem(e, "kernel")->valuestring;
            double sp = cJSON_GetObjectItem(e, "sparsity")->valuedouble;
            int b = cJSON_GetObjectItem(e, "batch")->valueint;
            if (strcmp(k, targets[t].kernel) != 0 || fabs(sp - targets[t].sparsity) > 1e-9 || b < 16) continue;
            double r = cJSON_GetObjectItem(e, "ratio_vs_dense")->valuedouble;
            double tu = cJSON_GetObjectItem(e, "time_us")->valuedouble;
            tk += tu;
            td += tu * r;
            lsum += log(r > 1e-9 ? r : 1e-9); n++;
            ok += r >= targets[t].target;
            if (r < mn) mn = r;
            if (r > mx) mx = r;
        }
        double gm = n ? exp(lsum / n) : 0.0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "target", targets[t].target);
        cJSON_AddNumberToObject(o, "geomean_ratio", round(gm * 1000.0) / 1000.0);
        cJSON_AddNumberToObject(o, "min_ratio", n ? round(mn * 1000.0) / 1000.0 : 0.0);
        cJSON_AddNumberToObject(o, "max_ratio", n ? round(mx * 1000.0) / 1000.0 : 0.0);
        cJSON_AddNumberToObject(o, "time_weighted_ratio", tk > 0.0 ? round(td / tk * 1000.0) / 1000.0 : 0.0);
        cJSON_AddNumberToObject(o, "entries", n);
        cJSON_AddNumberToObject(o, "entries_met", ok);
        cJSON_AddStringToObject(o, "status", n && gm >= targets[t].target ? "met" : "not met");
        cJSON_AddItemToObject(sum, targets[t].name, o);
        fprintf(f, "  %-22s %-7s geomean %6.2fx  time-weighted %6.2fx  min %6.2fx  max %6.2fx  (%d/%d entries >= %.1fx)\n",
                targets[t].name, n && gm >= targets[t].target ? "met" : "NOT MET", gm, tk > 0.0 ? td / tk : 0.0,
                n ? mn : 0.0, n ? mx : 0.0, ok, n, targets[t].target);
    }
    return sum;
}

/* Writes root (borrowed) as DIR/name, atomically. 0, or 1 after printing the error. */
static int bench_write(const char *cmd, const char *dir, const char *name, const cJSON *root) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = cJSON_Print(root);
    rf_status st = text ? rf_mkdirs(&ctx, dir) : rf_error(&ctx, RF_ERR_NOMEM, "cannot format JSON");
    if (st == RF_OK) st = rf_write_file_atomic(&ctx, path, text, strlen(text));
    free(text);
    if (st) return cli_fail(cmd, &ctx, st);
    fprintf(stderr, "wrote %s\n", path);
    return 0;
}

static int bench_kernels(int argc, char **argv) {
    const char *cmd = "bench kernels";
    int json = 0, quick = 0, reps = 0, done = 0;
    const char *out_dir = "bench/results";
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print the result object as one JSON line on stdout", 0},
        {"quick", CLI_FLAG, &quick, NULL, "fewer repetitions, batches 1/16/64 only (a smoke run)", 0},
        {"reps", CLI_INT, &reps, "N", "timed samples per measurement, best kept (default 30, quick 10)", CLI_POSITIVE},
        {"out", CLI_STR, &out_dir, "DIR", "write DIR/kernels.json (default bench/results; '' = nowhere)", 0},
        {0},
    };
    int rc = cli_parse(cmd, "[--json] [--quick] [--reps N] [--out DIR]",
                       "Measures this core's fp32 FMA and int8 VNNI peaks, then dense sgemm, sparse fp32,\n"
                       "int8 and sparse int8 kernels on the layer shapes of lenet-300-100, conv-2 and\n"
                       "vit-tiny (one thread), and checks issue 6's speed-up targets.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (reps < 0) { cli_err(cmd, "--reps must be >= 1"); return 2; }
    cli_set_threads(1);
    bench_cfg cfg = {reps ? reps : (quick ? 10 : 30), 0.0002};
    FILE *f = json ? stderr : stdout;
    rf_isa isa = rf_kernels_init();
    bench_out o = {cJSON_CreateArray(), 0.0, 0.0, json};
    o.fp32_peak = rf_bench_fp32_peak(quick ? 0.1 : 1.0);
    o.int8_peak = rf_bench_int8_peak(quick ? 0.1 : 1.0);
    fprintf(f, "isa %s; peaks: fp32 %.1f GFLOP/s, int8 %.1f GOPS (%.2fx)\n", rf_isa_name(isa), o.fp32_peak,
            o.int8_peak, o.int8_peak / o.fp32_peak);
    fprintf(f, "%-14s %-6s %-10s %-4s %5s %6s %5s %-12s %10s %9s %8s %6s\n", "model", "layer", "shape", "lay", "batch",
            "rows", "spars", "kernel", "time_us", "eff_gflop", "ratio", "peak");
    rf_rng r;
    rf_rng_init(&r, 6, 0);
    const int *batches = quick ? batches_quick : batches_full;
    size_t nb = quick ? sizeof batches_quick / sizeof batches_quick[0] : sizeof batches_full / sizeof batches_full[0];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t b = 0; b < nb; b++)
            if (bench_shape_batch(&cfg, &o, &r, &shapes[s], batches[b])) { cJSON_Delete(o.results); return 1; }
    rf_kernels_release_workspace();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "isa", rf_isa_name(isa));
    cJSON_AddNumberToObject(root, "threads", 1);
    cJSON *peaks = cJSON_AddObjectToObject(root, "peaks");
    cJSON_AddNumberToObject(peaks, "fp32_gflops", round(o.fp32_peak * 10.0) / 10.0);
    cJSON_AddNumberToObject(peaks, "int8_gops", round(o.int8_peak * 10.0) / 10.0);
    cJSON_AddItemToObject(root, "summary", summarize(o.results, f));
    cJSON_AddItemToObject(root, "results", o.results);
    if (out_dir && *out_dir && bench_write(cmd, out_dir, "kernels.json", root) != 0) { cJSON_Delete(root); return 1; }
    if (json) cli_print_json(root); else cJSON_Delete(root);
    return 0;
}

static int bench_coord(int argc, char **argv) {
    const char *cmd = "bench coord", *out_dir = "bench/results";
    int quick = 0, tasks = 0, mb = 0, reps = 0, level = 0, level_set = 0, done = 0;
    const cli_opt opts[] = {
        {"tasks", CLI_INT, &tasks, "N", "no-op tasks of the dispatch measurement (default 20000, quick 5000)", CLI_POSITIVE},
        {"mb", CLI_INT, &mb, "M", "MiB gathered (default 64, quick 16)", CLI_POSITIVE},
        {"reps", CLI_INT, &reps, "R", "repetitions, best kept (default 5, quick 3)", CLI_POSITIVE},
        {"level", CLI_INT, &level, "L", "zstd level of the checkpoint stream (default the coordinator's)", CLI_NEGATIVE_OK},
        {"quick", CLI_FLAG, &quick, NULL, "a smaller run", 0},
        {"out", CLI_STR, &out_dir, "DIR", "write DIR/coord.json (default bench/results; '' = nowhere)", 0},
        {0},
    };
    for (int i = 1; i < argc; i++) level_set |= strcmp(argv[i], "--level") == 0 || strncmp(argv[i], "--level=", 8) == 0;
    int rc = cli_parse(cmd, "[--tasks N] [--mb M] [--reps R] [--level L] [--quick] [--out DIR]   (under mpirun -np 2 or more)",
                       "The coordinator's own costs: dispatch rate, gather bandwidth against raw MPI, gathered vs direct\n"
                       "writes into the store, memory per task, the scheduler alone with 1,000 simulated workers.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    rf_bench_coord_opts o;
    rf_bench_coord_opts_default(&o, quick);
    if (tasks) o.tasks = tasks;
    if (mb) o.mb = mb;
    if (reps) o.reps = reps;
    if (level_set) o.level = level;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.task_cap = RF_TASK_CAP_MAX;   /* --tasks asks for the size explicitly */
    int rank = 0;
    cJSON *res = NULL;
    rf_status s = rf_bench_coord(&ctx, &o, &rank, &res);
    if (s != RF_OK) {
        cli_fail(cmd, &ctx, s);
        if (s != RF_ERR_MPI || rank > 0) MPI_Abort(MPI_COMM_WORLD, 1);
        return 2;
    }
    if (!res) return 0;
    const cJSON *d = cJSON_GetObjectItem(res, "dispatch"), *g = cJSON_GetObjectItem(res, "gather"), *m = cJSON_GetObjectItem(res, "memory");
    char *txt = cJSON_Print(res);
    if (txt) { printf("%s\n", txt); free(txt); }
    fprintf(stderr, "coord: dispatch %.0f tasks/s (target >= 5000); gather %.0f MB/s = %.0f%% of raw MPI %.0f MB/s (target >= 80%%); "
                    "%.0f + %.0f bytes per queued task (target < 1024)\n",
            cJSON_GetObjectItem(d, "tasks_per_s")->valuedouble, cJSON_GetObjectItem(g, "gather_mb_per_s")->valuedouble,
            100 * cJSON_GetObjectItem(g, "ratio")->valuedouble, cJSON_GetObjectItem(g, "raw_mpi_mb_per_s")->valuedouble,
            cJSON_GetObjectItem(m, "sched_bytes_per_task")->valuedouble, cJSON_GetObjectItem(m, "job_bytes_per_task")->valuedouble);
    const cJSON *wr = cJSON_GetObjectItem(res, "writes"), *sim = cJSON_GetObjectItem(res, "sim");
    if (wr)
        fprintf(stderr, "coord: into the store: gathered %.0f MB/s, written directly %.0f MB/s (x%.2f)\n",
                cJSON_GetObjectItem(wr, "gather_mb_per_s")->valuedouble, cJSON_GetObjectItem(wr, "direct_mb_per_s")->valuedouble,
                cJSON_GetObjectItem(wr, "direct_over_gather")->valuedouble);
    for (const cJSON *x = sim ? sim->child : NULL; x; x = x->next)
        fprintf(stderr, "coord: scheduler alone, %d workers, %d tasks (chains of %d): %.0f decisions/s (target >= 50000)\n",
                cJSON_GetObjectItem(x, "workers")->valueint, cJSON_GetObjectItem(x, "tasks")->valueint,
                cJSON_GetObjectItem(x, "chain")->valueint, cJSON_GetObjectItem(x, "decisions_per_s")->valuedouble);
    rc = out_dir && *out_dir ? bench_write(cmd, out_dir, "coord.json", res) : 0;
    cJSON_Delete(res);
    return rc;
}

/* The training bench compares raffle with PyTorch, so it is a script:
 * bench/train/run.sh (make bench runs every bench). */
typedef int (*bench_fn)(int argc, char **argv);
static const struct { const char *name; bench_fn fn; const char *help; } subs[] = {
    {"kernels", bench_kernels, "sparse / int8 kernels vs OpenBLAS sgemm on the presets' layer shapes"},
    {"coord", bench_coord, "coordinator dispatch rate and checkpoint gather bandwidth (under mpirun)"},
};

int rf_cmd_bench(int argc, char **argv) {
    size_t n = sizeof subs / sizeof subs[0];
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: raffle bench SUBCOMMAND [options]\n\nsubcommands:\n");
        for (size_t i = 0; i < n; i++) fprintf(f, "  %-8s %s\n", subs[i].name, subs[i].help);
        fprintf(f, "\ntraining throughput vs PyTorch: bench/train/run.sh (make bench runs all)\n");
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(argv[1], subs[i].name) == 0) return subs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "raffle bench: unknown subcommand '%s' (kernels, coord)\n", argv[1]);
    return 2;
}
