/* The two kinds that belong to the sweep machinery itself: "noop" (no
 * model, no data: measures the coordinator's dispatch rate; chains of them
 * test scheduling) and "fail" (diagnostics for the failure paths of workers
 * and coordinator: an error status, a crash, a NaN, a hang, an
 * out-of-memory, with no-op dependents that must be skipped). */
#include "raffle/plan.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* settings "sleep_ms": the task takes that long, so coordinator tests and
 * fault runs get children that live for a while. */
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

/* ---- descriptors ------------------------------------------------------------ */

static int expand_noop(rf_plan *p, const rf_point *pt) {
    int count = (int)rf_plan_num(pt->x, "count"), chain = (int)rf_plan_num(pt->x, "chain");
    double ms = rf_plan_num(pt->x, "sleep_ms");
    for (int i = 0; i < count; i++) {
        int32_t prev = -1;
        for (int k = 0; k < chain; k++) {
            cJSON *s = cJSON_CreateObject();
            if (!s || !cJSON_AddNumberToObject(s, "seed", pt->seed) || !cJSON_AddNumberToObject(s, "index", i) ||
                !cJSON_AddNumberToObject(s, "link", k) || !cJSON_AddNumberToObject(s, "sleep_ms", ms))
                return rf_plan_nomem(p, s);
            int32_t cur = rf_plan_add(p, RF_JOB_NOOP, s, &prev, prev >= 0, ms / 1000 + 0.01);
            if (cur < 0) return -1;
            prev = cur;
        }
    }
    return 0;
}

static int expand_fail(rf_plan *p, const rf_point *pt) {
    cJSON *s = cJSON_CreateObject();
    if (!s || !cJSON_AddNumberToObject(s, "seed", pt->seed) ||
        !rf_plan_put(s, "mode", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(pt->x, "mode"), 1)))
        return rf_plan_nomem(p, s);
    int32_t f = rf_plan_add(p, RF_JOB_FAIL, s, NULL, 0, 0.05);
    if (f < 0) return -1;
    int children = (int)rf_plan_num(pt->x, "children");
    for (int i = 0; i < children; i++) {
        cJSON *c = cJSON_CreateObject();
        if (!c || !cJSON_AddNumberToObject(c, "seed", pt->seed) || !cJSON_AddNumberToObject(c, "index", i) ||
            !cJSON_AddStringToObject(c, "after", "fail"))
            return rf_plan_nomem(p, c);
        if (rf_plan_add(p, RF_JOB_NOOP, c, &f, 1, 0.01) < 0) return -1;
    }
    return 0;
}

static const char *label_fail(const cJSON *set, char *buf, size_t n) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(set, "mode");
    snprintf(buf, n, "fail-%s", cJSON_IsString(m) ? m->valuestring : "?");
    return buf;
}

/* The tasks' keys are the expansion's bookkeeping: none has a default that
 * is written out. */
static const rf_setting noop_keys[] = {
    {.key = "seed", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 4294967295.0, .def = "0", .doc = "the experiment's seed"},
    {.key = "index", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 1e6, .def = "0", .doc = "which chain"},
    {.key = "link", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 1e4, .def = "0", .doc = "position in the chain"},
    {.key = "sleep_ms", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 3.6e6, .def = "0", .unit = "ms",
     .doc = "how long the task sleeps"},
    {.key = "after", .type = RF_SET_STR, .flags = RF_SF_OPTIONAL, .doc = "\"fail\": a dependent of a fail task"},
    RF_SETTINGS_END
};
static const rf_setting noop_exp_keys[] = {
    {.key = "count", .type = RF_SET_INT, .lo = 1, .hi = 1e6, .def = "1", .doc = "independent chains"},
    {.key = "chain", .type = RF_SET_INT, .lo = 1, .hi = 10000, .def = "1", .doc = "tasks per chain"},
    {.key = "sleep_ms", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 3.6e6, .def = "0", .unit = "ms",
     .doc = "how long each task sleeps"},
    RF_SETTINGS_END
};
static const char *const fail_modes_names[] = {"error", "crash", "nan", "hang", "oom", NULL};
static const rf_setting fail_keys[] = {
    {.key = "seed", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 4294967295.0, .def = "0", .doc = "the experiment's seed"},
    {.key = "mode", .type = RF_SET_ENUM, .flags = RF_SF_REQUIRED, .choices = fail_modes_names, .doc = "how the task fails"},
    RF_SETTINGS_END
};
static const rf_setting fail_exp_keys[] = {
    {.key = "mode", .type = RF_SET_ENUM, .flags = RF_SF_GRID | RF_SF_REQUIRED, .choices = fail_modes_names,
     .doc = "error, crash (SIGSEGV), nan, hang, oom"},
    {.key = "children", .type = RF_SET_INT, .lo = 0, .hi = 1000, .def = "1", .doc = "no-op dependents (skipped when it fails)"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_noop = {
    .name = "noop", .summary = "does nothing (coordinator benchmarks and tests)", .flags = RF_KIND_DIAG,
    .keys = noop_keys, .min_parents = 0, .max_parents = 65535, .parents_doc = "any", .run = task_noop,
    .experiment = "noop", .exp_keys = noop_exp_keys, .exp_doc = "`count` chains of `chain` no-op tasks",
    .expand = expand_noop,
};

const rf_kind rf_kind_fail = {
    .name = "fail", .summary = "fails on purpose (failure-path tests)", .flags = RF_KIND_DIAG,
    .keys = fail_keys, .min_parents = 0, .max_parents = 0, .run = task_fail,
    .experiment = "fail", .exp_keys = fail_exp_keys, .exp_doc = "a fail task and `children` no-op dependents",
    .expand = expand_fail, .label = label_fail,
};
