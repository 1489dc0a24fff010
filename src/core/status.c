/* Status names and the per-context error buffer. */
#include "raffle/core.h"
#include "raffle/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[RF_STATUS_COUNT_] = {
    [RF_OK]              = "ok",
    [RF_ERR_NOMEM]       = "out of memory",
    [RF_ERR_INVALID]     = "invalid argument",
    [RF_ERR_IO]          = "I/O error",
    [RF_ERR_FORMAT]      = "malformed file",
    [RF_ERR_MAGIC]       = "wrong magic number",
    [RF_ERR_VERSION]     = "unsupported format version",
    [RF_ERR_CHECKSUM]    = "checksum mismatch",
    [RF_ERR_TRUNCATED]   = "truncated file",
    [RF_ERR_SIZE]        = "inconsistent sizes",
    [RF_ERR_SHAPE]       = "shape mismatch",
    [RF_ERR_SPEC]        = "invalid model spec",
    [RF_ERR_JOB]         = "invalid job",
    [RF_ERR_NAN]         = "non-finite value",
    [RF_ERR_LIMIT]       = "limit exceeded",
    [RF_ERR_UNSUPPORTED] = "unsupported",
    [RF_ERR_NOTFOUND]    = "not found",
    [RF_ERR_MPI]         = "MPI error",
    [RF_ERR_NET]         = "network error",
    [RF_ERR_COMPRESS]    = "compression error",
    [RF_ERR_DATA]        = "invalid data",
    [RF_ERR_INTERNAL]    = "internal error",
    [RF_ERR_TIMEOUT]     = "timed out",
    [RF_ERR_PREEMPTED]   = "preempted",
    [RF_ERR_CHILD]       = "child process failed",
    [RF_ERR_BUSY]        = "in use by another process",
};

const char *rf_strerror(rf_status s) {
    if ((unsigned)s >= RF_STATUS_COUNT_ || !status_names[s]) return "unknown status";
    return status_names[s];
}

/* Parses RAFFLE_MEM_CAP: a byte count with an optional binary suffix K, M,
 * G or T (optionally followed by "B" or "iB"), case-insensitive: "512M",
 * "2GiB", "1073741824". Returns 0 (the default cap) for anything else, or
 * for a value that overflows 64 bits: a typo must not silently remove the
 * limit or set it to something absurd. */
static size_t mem_cap_from_env(void) {
    const char *v = getenv("RAFFLE_MEM_CAP");
    if (!v) return 0;
    size_t nd = strspn(v, "0123456789");
    uint64_t n;
    if (rf_parse_u64(NULL, v, nd, 0, UINT64_MAX, "RAFFLE_MEM_CAP", &n) != RF_OK) return 0;
    v += nd;
    static const char units[] = "KMGT";
    int shift = 0;
    if (*v) {
        const char *u = strchr(units, *v >= 'a' && *v <= 'z' ? *v - 32 : *v);
        if (!u || !*u) return 0;
        shift = 10 * (int)(u - units + 1);
        v++;
        if (*v == 'i' || *v == 'I') v++;
        if (*v == 'b' || *v == 'B') v++;
        if (*v) return 0;
    }
    if (n > (UINT64_MAX >> shift) || (n << shift) > SIZE_MAX) return 0;
    return (size_t)(n << shift);
}

/* RAFFLE_MAX_TASKS: digits only, 1..RF_TASK_CAP_MAX; else 0 (the default). */
static size_t task_cap_from_env(void) {
    const char *v = getenv("RAFFLE_MAX_TASKS");
    uint64_t n;
    if (!v || rf_parse_u64(NULL, v, strlen(v), 0, RF_TASK_CAP_MAX, "RAFFLE_MAX_TASKS", &n) != RF_OK) return 0;
    return (size_t)n;
}

size_t rf_ctx_task_cap(const rf_ctx *ctx) {
    size_t c = ctx && ctx->task_cap ? ctx->task_cap : RF_TASK_CAP_DEFAULT;
    return c > RF_TASK_CAP_MAX ? RF_TASK_CAP_MAX : c;
}

void rf_ctx_init(rf_ctx *ctx) {
    memset(ctx, 0, sizeof *ctx);
    ctx->threads = 1;
    ctx->mem_cap = mem_cap_from_env();
    rf_ctx tmp;   /* rf_engine_from_env's report of a bad variable is not kept here */
    memset(&tmp, 0, sizeof tmp);
    (void)rf_engine_from_env(&tmp, &ctx->engine);
    ctx->task_cap = task_cap_from_env();
}

void rf_ctx_clear(rf_ctx *ctx) {
    if (!ctx) return;
    ctx->status = RF_OK;
    ctx->err[0] = '\0';
}

const char *rf_ctx_error(const rf_ctx *ctx) {
    if (!ctx) return "";
    if (ctx->err[0]) return ctx->err;
    return ctx->status == RF_OK ? "" : rf_strerror(ctx->status);
}

rf_status rf_error(rf_ctx *ctx, rf_status s, const char *fmt, ...) {
    if (!ctx) return s;
    ctx->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return s;
}

void rf_error_prefix(rf_ctx *ctx, const char *fmt, ...) {
    if (!ctx) return;
    char pre[RF_ERR_MAX], old[RF_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, ctx->err, sizeof old);
    snprintf(ctx->err, sizeof ctx->err, "%s: %s", pre, old[0] ? old : rf_strerror(ctx->status));
}

rf_status rf_check_cap(rf_ctx *ctx, uint64_t bytes, const char *what) {
    uint64_t cap = (ctx && ctx->mem_cap) ? ctx->mem_cap : (8ull << 30);
    uint64_t live = rf_alloc_live_bytes();
    if (bytes > cap)
        return rf_error(ctx, RF_ERR_LIMIT, "%s needs %llu bytes, over the memory cap of %llu bytes",
                        what, (unsigned long long)bytes, (unsigned long long)cap);
    /* the total: what is already held plus this object (issue 19, defect 7) */
    if (live > cap - bytes)
        return rf_error(ctx, RF_ERR_LIMIT, "%s needs %llu bytes; with %llu bytes already in use that is over the memory cap of %llu bytes",
                        what, (unsigned long long)bytes, (unsigned long long)live, (unsigned long long)cap);
    return RF_OK;
}

void rf_assert_fail_(const char *expr, const char *file, int line) {
    /* A broken invariant is a bug in raffle, not bad input: report and stop
     * hard so the bug is found, as assert() would. */
    fprintf(stderr, "raffle: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    __builtin_trap();
}

void rf_diag_note(rf_ctx *ctx) {
    if (!ctx || !ctx->diag) return;
    rf_buf_printf(&ctx->diag->lines, "%s\n", rf_ctx_error(ctx));
    ctx->diag->n++;
}

void rf_diag_line(const rf_diag *d, int i, char *buf, size_t n) {
    buf[0] = '\0';
    const char *p = d && d->lines.p ? d->lines.p : "";
    for (; i > 0 && *p; i--) {
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + strlen(p);
    }
    size_t len = strcspn(p, "\n");
    snprintf(buf, n, "%.*s", (int)len, p);
}

void rf_diag_free(rf_diag *d) {
    if (!d) return;
    rf_buf_free(&d->lines);
    d->n = 0;
}
