/* The table of task kinds and the task runner.
 *
 * Kinds live in the modules that implement them (pruning, lottery tickets,
 * distillation, quantization, OFA); the table references each directly, so
 * linking rf_task_run pulls every kind out of the static library.
 *
 * Two kinds belong to the sweep machinery itself: "noop" (no model, no data:
 * measures the coordinator's dispatch rate) and "fail" (diagnostics for the
 * failure paths of workers and coordinator: an error status, a crash, a NaN,
 * a hang, an out-of-memory). */
#include "raffle/task.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

rf_status rf_task_train(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_prune(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_lottery(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_distill(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_quantize(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_ofa_sparse(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_ofa_transfer(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_ofa_qat(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

/* The common metric keys every kind reports (task.h), all zero. */
static rf_status add_zero_metrics(rf_ctx *ctx, cJSON *metrics) {
    static const char *const keys[] = {"accuracy", "loss", "sparsity", "bytes", "parameters", "seconds"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, keys[i]);
        if (!cJSON_AddNumberToObject(metrics, keys[i], 0.0))
            return rf_error(ctx, RF_ERR_NOMEM, "task: cannot build metrics");
    }
    return RF_OK;
}

/* settings "sleep_ms" (job.c, [0, 3.6e6]): the task takes that long, so
 * coordinator tests and fault runs get children that live for a while. */
static rf_status task_noop(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const cJSON *ms = io->settings ? cJSON_GetObjectItemCaseSensitive(io->settings, "sleep_ms") : NULL;
    double left = cJSON_IsNumber(ms) && ms->valuedouble > 0 && ms->valuedouble <= 3.6e6 ? ms->valuedouble / 1000 : 0;
    for (double end = rf_now() + left; rf_now() < end;) {
        double d = end - rf_now();
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return add_zero_metrics(ctx, metrics);
}

/* ---- "fail": settings {"mode": "error" | "crash" | "nan" | "hang" | "oom"} ---- */
static rf_status fail_error(rf_ctx *ctx) {
    return rf_error(ctx, RF_ERR_INVALID, "fail task: injected error (mode \"error\")");
}

/* The default action is restored first so the process really dies by the
 * signal even when a sanitizer or debugger installed its own handler. */
static rf_status fail_crash(rf_ctx *ctx) {
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return rf_error(ctx, RF_ERR_INTERNAL, "fail task: SIGSEGV was not delivered");
}

static rf_status fail_nan(rf_ctx *ctx) {
    return rf_error(ctx, RF_ERR_NAN, "fail task: step 0: loss is nan (injected, mode \"nan\")");
}

static rf_status fail_hang(rf_ctx *ctx) {
    for (;;) pause();  /* until a signal kills the process */
    return RF_OK;
}

/* Allocates and touches 64 MiB blocks until the kernel or a memory limit
 * kills the process; if the allocator refuses first, reports RF_ERR_NOMEM.
 * The blocks are deliberately kept: releasing them would defeat the test. */
static rf_status fail_oom(rf_ctx *ctx) {
    const size_t chunk = (size_t)64 << 20;
    void *prev = NULL;
    for (;;) {
        void **blk = rf_malloc(chunk);
        if (!blk) return rf_error(ctx, RF_ERR_NOMEM, "fail task: allocation refused (mode \"oom\")");
        memset(blk, 0xA5, chunk);
        blk[0] = prev;
        prev = blk;
    }
}

static const struct { const char *mode; rf_status (*fn)(rf_ctx *); } fail_modes[] = {
    {"error", fail_error}, {"crash", fail_crash}, {"nan", fail_nan}, {"hang", fail_hang}, {"oom", fail_oom},
};

static rf_status task_fail(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const cJSON *m = io->settings ? cJSON_GetObjectItemCaseSensitive(io->settings, "mode") : NULL;
    const char *mode = cJSON_IsString(m) ? m->valuestring : "error";
    for (size_t i = 0; i < sizeof fail_modes / sizeof fail_modes[0]; i++)
        if (strcmp(fail_modes[i].mode, mode) == 0) return fail_modes[i].fn(ctx);
    return rf_error(ctx, RF_ERR_INVALID, "fail task: unknown mode \"%s\" (error, crash, nan, hang, oom)", mode);
}

static const rf_task_kind kinds[] = {
    {"train",        rf_task_train,        1},
    {"prune",        rf_task_prune,        1},
    {"lottery",      rf_task_lottery,      1},
    {"distill",      rf_task_distill,      1},
    {"quantize",     rf_task_quantize,     1},
    {"ofa-sparse",   rf_task_ofa_sparse,   1},
    {"ofa-transfer", rf_task_ofa_transfer, 1},
    {"ofa-qat",      rf_task_ofa_qat,      1},
    {"noop",         task_noop,            0},
    {"fail",         task_fail,            0},
};

const rf_task_kind *rf_task_kind_find(const char *name) {
    for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, name) == 0) return &kinds[i];
    return NULL;
}

rf_status rf_task_run(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    if (!io || !cJSON_IsObject(io->settings) || !metrics)
        return rf_error(ctx, RF_ERR_INVALID, "task: settings must be a JSON object");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(io->settings, "kind");
    if (!cJSON_IsString(k)) return rf_error(ctx, RF_ERR_INVALID, "task: settings have no \"kind\" string");
    const rf_task_kind *kind = rf_task_kind_find(k->valuestring);
    if (!kind) return rf_error(ctx, RF_ERR_UNSUPPORTED, "task: kind \"%s\" is not in this build", k->valuestring);
    if (!kind->needs_data || io->train) return kind->run(ctx, io, metrics);

    const cJSON *d = cJSON_GetObjectItemCaseSensitive(io->settings, "data");
    if (!cJSON_IsString(d)) return rf_error(ctx, RF_ERR_INVALID, "task %s: settings have no \"data\" string", kind->name);
    rf_dataset *train = NULL, *test = NULL;
    rf_status s = rf_data_load(ctx, d->valuestring, &train, &test);
    if (s != RF_OK) { rf_error_prefix(ctx, "task %s: data \"%s\"", kind->name, d->valuestring); return s; }
    rf_task_io with = *io;
    with.train = train;
    with.test = test;
    s = kind->run(ctx, &with, metrics);
    rf_dataset_free(train);
    rf_dataset_free(test);
    return s;
}
