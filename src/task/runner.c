/* The child's side of a sweep task: `raffle run DIR` (and the command
 * line's kind commands, which run their task the same way) reads
 * DIR/task.json, runs the kind, and writes DIR/metrics.json and
 * DIR/result.json. The coordinator (src/coord) only starts the process and
 * reads result.json; it never links a task. */
#include "raffle/task.h"
#include "raffle/engine.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- failure classes -----------------------------------------------------------
 * result.json's "class" of a status: the names the coordinator reads
 * (raffle/coord.h rf_fail_class_name). */
static const struct { rf_status s; const char *cls; } status_class[] = {
    {RF_OK, ""}, {RF_ERR_NAN, "nan"}, {RF_ERR_NOMEM, "oom"}, {RF_ERR_LIMIT, "oom"}, {RF_ERR_TIMEOUT, "timeout"},
    {RF_ERR_PREEMPTED, "preempted"}, {RF_ERR_CHILD, "crash"},
};

const char *rf_task_status_class(rf_status s) {
    for (size_t i = 0; i < sizeof status_class / sizeof status_class[0]; i++)
        if (status_class[i].s == s) return status_class[i].cls;
    return "error";
}

/* ---- metrics ------------------------------------------------------------------------
 * Metric keys that measure time on this machine rather than the model, or
 * are decided by such a measurement (the deployment step keeps a sparse
 * kernel for a layer only where it timed faster: sparse_layers,
 * deployed_form): they go under "timing" so the rest of metrics.json is
 * reproducible byte for byte. */
static int is_timing_key(const char *k) {
    static const char *const parts[] = {"seconds", "latency", "throughput", "per_s", "speedup", "time_"};
    static const char *const exact[] = {"sparse_layers", "deployed_form"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) if (strstr(k, parts[i])) return 1;
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) if (strcmp(k, exact[i]) == 0) return 1;
    return 0;
}

void rf_task_split_timing(cJSON *metrics) {
    cJSON *timing = cJSON_CreateObject();
    if (!timing) return;
    cJSON *c = metrics->child;
    while (c) {
        cJSON *next = c->next;
        if (c->string && is_timing_key(c->string) && strcmp(c->string, "timing") != 0) {
            cJSON_DetachItemViaPointer(metrics, c);
            cJSON_AddItemToObject(timing, c->string, c);
        }
        c = next;
    }
    cJSON_AddItemToObject(metrics, "timing", timing);
}

/* ---- the engine ----------------------------------------------------------------------- */

rf_status rf_task_engine(rf_ctx *ctx, const cJSON *settings) {
    /* The options that do not change results (threads) are the process's,
     * set on the command line or by the environment before this: kept. */
    rf_engine keep = ctx->engine;
    rf_gemm_detach(ctx);
    RF_TRY(rf_engine_from_env(ctx, &ctx->engine));
    for (int i = 0; i < RF_ENGINE_COUNT_; i++)
        if (!rf_engine_options[i].changes_floats) ctx->engine.v[i] = keep.v[i];
    const cJSON *e = settings ? cJSON_GetObjectItemCaseSensitive(settings, "engine") : NULL;
    for (const cJSON *c = cJSON_IsObject(e) ? e->child : NULL; c; c = c->next) {
        char text[64];
        if (cJSON_IsString(c)) snprintf(text, sizeof text, "%s", c->valuestring);
        else if (cJSON_IsNumber(c)) snprintf(text, sizeof text, "%.0f", c->valuedouble);
        else return rf_error(ctx, RF_ERR_INVALID, "settings engine.%s: expected a string or an integer", c->string);
        int o = rf_engine_option_find(c->string);
        if (o >= 0 && !rf_engine_options[o].changes_floats)
            return rf_error(ctx, RF_ERR_INVALID, "settings engine.%s: does not change results, so it is not a task setting",
                            c->string);
        RF_TRY(rf_engine_set(ctx, &ctx->engine, c->string, text));
    }
    /* The kernels' ISA is process-wide (their entry points take no context;
     * the selection is atomic): a task runs alone in its process, so it is
     * set here, once, from the task's option. */
    int isa = ctx->engine.v[RF_ENGINE_ISA];
    rf_kernels_force(isa == RF_ENGINE_ISA_AUTO ? rf_kernels_cpu_isa() : (rf_isa)(isa - 1));
    /* The task's thread pool and dense GEMM, once, at that ISA. */
    return rf_gemm_attach(ctx);
}

cJSON *rf_task_engine_settings(const cJSON *engine) {
    cJSON *o = cJSON_CreateObject();
    for (const cJSON *c = engine ? engine->child : NULL; o && c; c = c->next) {
        int opt = rf_engine_option_find(c->string), v = 0;
        char text[64];
        if (cJSON_IsString(c)) snprintf(text, sizeof text, "%s", c->valuestring);
        else snprintf(text, sizeof text, "%.0f", c->valuedouble);
        rf_ctx tmp;
        memset(&tmp, 0, sizeof tmp);
        if (opt < 0 || !rf_engine_options[opt].changes_floats || rf_engine_parse_value(&tmp, opt, text, &v) != RF_OK) {
            cJSON_Delete(o);
            return NULL;
        }
        const rf_engine_option *eo = &rf_engine_options[opt];
        cJSON *val = eo->values ? cJSON_CreateString(eo->values[v]) : cJSON_CreateNumber(v);
        if (!val || !cJSON_AddItemToObject(o, eo->name, val)) { cJSON_Delete(val); cJSON_Delete(o); return NULL; }
    }
    return o;
}

cJSON *rf_task_engine_json(const rf_ctx *ctx) {
    cJSON *e = cJSON_CreateObject(), *blas = cJSON_CreateObject(), *opts = cJSON_CreateObject();
    cJSON *dense = cJSON_CreateObject();
    if (!e || !blas || !opts || !dense) {
        cJSON_Delete(e); cJSON_Delete(blas); cJSON_Delete(opts); cJSON_Delete(dense);
        return NULL;
    }
    /* The dense backend that ran the products and the threads the task had. */
    const rf_engine *en = &ctx->engine;
    int openblas = en->v[RF_ENGINE_GEMM] == RF_ENGINE_GEMM_OPENBLAS;
    rf_gemm_isa gi = en->gemm ? rf_gemm_isa_of(en->gemm) : RF_GEMM_AUTO;
    int dok = cJSON_AddStringToObject(dense, "backend", openblas ? "openblas" : "raffle") &&
              cJSON_AddStringToObject(dense, "isa", openblas ? (openblas_get_corename() ? openblas_get_corename() : "")
                                                             : rf_gemm_isa_name(gi)) &&
              cJSON_AddItemToObject(e, "dense", dense);
    if (!dok) { cJSON_Delete(dense); cJSON_Delete(e); cJSON_Delete(blas); cJSON_Delete(opts); return NULL; }
    const char *config = openblas_get_config(), *core = openblas_get_corename();
    char name[32] = "", version[32] = "";
    if (config) sscanf(config, "%31s %31s", name, version);
    int ok = cJSON_AddStringToObject(e, "isa", rf_isa_name(rf_kernels_isa())) &&
             cJSON_AddStringToObject(e, "cpu_isa", rf_isa_name(rf_kernels_cpu_isa())) &&
             cJSON_AddNumberToObject(e, "threads", rf_pool_threads(en->pool)) &&
             cJSON_AddStringToObject(e, "conv_auto", RF_ENGINE_CONV_AUTO_RULE) &&
             cJSON_AddStringToObject(blas, "name", name) && cJSON_AddStringToObject(blas, "version", version) &&
             cJSON_AddStringToObject(blas, "core", core ? core : "") &&
             cJSON_AddStringToObject(blas, "config", config ? config : "");
    for (int i = 0; ok && i < RF_ENGINE_COUNT_; i++) {
        char v[32];
        rf_engine_value_text(&ctx->engine, i, v, sizeof v);
        ok = rf_engine_options[i].values ? cJSON_AddStringToObject(opts, rf_engine_options[i].name, v) != NULL
                                         : cJSON_AddNumberToObject(opts, rf_engine_options[i].name, ctx->engine.v[i]) != NULL;
    }
    if (!ok || !cJSON_AddItemToObject(e, "blas", blas)) { cJSON_Delete(e); cJSON_Delete(blas); cJSON_Delete(opts); return NULL; }
    if (!cJSON_AddItemToObject(e, "options", opts)) { cJSON_Delete(e); cJSON_Delete(opts); return NULL; }
    return e;
}

/* ---- the task directory ---------------------------------------------------------------- */

static void child_log(void *ud, const char *line) {
    (void)ud;
    fprintf(stderr, "%s\n", line);
}

static rf_status write_json(rf_ctx *ctx, const char *dir, const char *name, const cJSON *o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = cJSON_PrintUnformatted(o);
    if (!s) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    size_t n = strlen(s);
    char *b = rf_malloc(n + 2);
    if (!b) { free(s); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    memcpy(b, s, n);
    b[n] = '\n';
    free(s);
    rf_status st = rf_write_file_atomic(ctx, path, b, n + 1);
    rf_free(b);
    return st;
}

rf_status rf_task_run_dir(rf_ctx *ctx, const char *dir, volatile int *stop_flag, int log_every) {
    char path[4096];
    snprintf(path, sizeof path, "%s/task.json", dir);
    unsigned char *buf;
    size_t n;
    RF_TRY(rf_read_file(ctx, path, &buf, &n));
    cJSON *task = cJSON_ParseWithLength((const char *)buf, n);
    rf_free(buf);
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(task, "settings");
    const cJSON *parents = cJSON_GetObjectItemCaseSensitive(task, "parents");
    if (!cJSON_IsObject(settings) || !cJSON_IsArray(parents)) {
        cJSON_Delete(task);
        return rf_error(ctx, RF_ERR_FORMAT, "%s: expected {\"settings\": {...}, \"parents\": [...]}", path);
    }
    int np = cJSON_GetArraySize(parents);
    const char **pp = rf_calloc((size_t)(np ? np : 1), sizeof *pp);
    cJSON *metrics = cJSON_CreateObject();
    rf_status s = RF_OK;
    if (!pp || !metrics) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    for (int i = 0; !s && i < np; i++) {
        const cJSON *p = cJSON_GetArrayItem(parents, i);
        if (!cJSON_IsString(p)) s = rf_error(ctx, RF_ERR_FORMAT, "%s: parents[%d] is not a path", path, i);
        else pp[i] = p->valuestring;
    }
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(settings, "kind");
    const rf_kind *k = rf_kind_get(rf_kind_find(cJSON_IsString(kind) ? kind->valuestring : NULL));
    if (!s) s = rf_task_engine(ctx, settings);
    if (!s) {
        rf_task_io io = {0};
        io.settings = settings;
        io.n_parents = np;
        io.parent_ckpts = pp;
        io.out_dir = dir;
        io.log = child_log;
        io.log_every = log_every;
        /* Only stop-aware kinds get the flag: they return RF_ERR_PREEMPTED
         * when it ends training early, instead of finishing with a shortened
         * run that would be recorded "done" with the wrong result. */
        io.stop_flag = k && (k->flags & RF_KIND_STOP) ? stop_flag : NULL;
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(task, "resume");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(task, "resume_every_s");
        /* whose task this is: a resume point must name the same (issue 19) */
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(task, "id");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(task, "settings_hash");
        if (cJSON_IsString(id)) io.task_id = id->valuestring;
        if (cJSON_IsString(sh)) io.settings_hash = sh->valuestring;
        if (cJSON_IsString(rp)) io.resume_from = rp->valuestring;
        if (cJSON_IsNumber(re) && re->valuedouble > 0) io.resume_every_s = re->valuedouble;
        s = rf_task_run(ctx, &io, metrics);
    }
    cJSON *res = cJSON_CreateObject();
    if (res) {
        cJSON_AddStringToObject(res, "class", rf_task_status_class(s));
        cJSON_AddStringToObject(res, "status", rf_strerror(s));
        cJSON_AddStringToObject(res, "message", s ? rf_ctx_error(ctx) : "");
    }
    rf_ctx wctx;
    rf_ctx_init(&wctx);
    if (!s) {
        rf_task_split_timing(metrics);
        cJSON *eng = rf_task_engine_json(ctx);
        if (!eng || !cJSON_AddItemToObject(metrics, "engine", eng)) {
            cJSON_Delete(eng);
            s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        }
    }
    if (!s && write_json(&wctx, dir, "metrics.json", metrics) != RF_OK) s = rf_error(ctx, wctx.status, "%s", wctx.err);
    if (res && write_json(&wctx, dir, "result.json", res) != RF_OK && !s) s = rf_error(ctx, wctx.status, "%s", wctx.err);
    cJSON_Delete(res);
    cJSON_Delete(metrics);
    rf_free(pp);
    cJSON_Delete(task);
    rf_gemm_detach(ctx);
    return s;
}
