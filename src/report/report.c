/* Sweep reports: one row per task (settings + ledger + metrics.json) as
 * report.json and report.csv, and report.html (src/report/html.c) with
 * inline SVG plots (src/report/plots.c) and a sortable, filterable task
 * table. One report may cover several stores (`raffle report --compare`):
 * each row then names its sweep, and the sweep is a grouping key.
 *
 * Grouping: every row carries its readable label (raffle/job.h), its
 * "group" (the label without the seed: the rows a mean is over, so only
 * seeds are ever averaged) and its "series" (the group without the key on
 * its plot's x axis). The settings that vary within an experiment's tasks
 * (a grid's axes, whatever the experiment called them) are CSV and HTML
 * columns of their own.
 *
 * Accuracy and its split: "accuracy" is the test split's (metrics
 * "test_accuracy", or "accuracy" as tasks wrote it before the validation
 * split existed, which rf_task_evaluate measures on the test split);
 * "val_accuracy" the validation split's when the task has one. */
#include "raffle/report.h"
#include "report/report_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rf_report_columns[] = {
    "id", "sweep", "experiment", "kind", "method", "label", "group", "status", "attempts", "class", "message", "dataset", "model",
    "seed", "target_sparsity", "sparsity", "remaining", "round", "temperature", "mode", "accuracy", "test_accuracy", "val_accuracy",
    "loss", "val_loss", "accuracy_before_finetune", "val_accuracy_before_finetune", "fp32_accuracy", "bytes", "dense_bytes",
    "compression_ratio", "parameters", "nonzero_parameters", "flops", "dense_flops", "latency_ms", "dense_latency_ms",
    "throughput", "seconds", "best_iteration", "collapsed_layers", "parents", "engine", NULL
};

/* Settings shown by a fixed column already (the task's "data" is the
 * "dataset" column, its target "sparsity" the "target_sparsity" one): no
 * column of their own when they vary. */
static const char *const fixed_settings[] = {"seed", "model", "data", "method", "mode", "round", "temperature", "sparsity",
                                             "kind", NULL};

/* ---- reading rows --------------------------------------------------------------- */

const cJSON *rep_get(const cJSON *o, const char *k) { return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }
double rep_num(const cJSON *o, const char *k) {
    const cJSON *v = rep_get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
const char *rep_str(const cJSON *o, const char *k) {
    const cJSON *v = rep_get(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}
int rep_done(const cJSON *t) { return strcmp(rep_str(t, "status"), "done") == 0; }

void rep_html(rf_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': rf_buf_printf(b, "&lt;"); break;
        case '>': rf_buf_printf(b, "&gt;"); break;
        case '&': rf_buf_printf(b, "&amp;"); break;
        case '"': rf_buf_printf(b, "&quot;"); break;
        case '\'': rf_buf_printf(b, "&#39;"); break;
        default: rf_buf_printf(b, "%c", *s);
        }
    }
}

int rep_grow(void **v, int *cap, int n, size_t size) {
    if (n < *cap) return 1;
    int c = *cap ? *cap * 2 : 16;
    void *p = rf_realloc(*v, (size_t)c * size);
    if (!p) return 0;
    *v = p;
    *cap = c;
    return 1;
}

static int row_cmp(const void *a, const void *b) {
    return strcmp(rep_str(*(const cJSON *const *)a, "id"), rep_str(*(const cJSON *const *)b, "id"));
}
void rep_index_build(rep_index *ix, const cJSON *tasks) {
    ix->n = 0;
    ix->v = rf_malloc((size_t)(cJSON_GetArraySize(tasks) + 1) * sizeof *ix->v);
    if (!ix->v) return;
    for (const cJSON *t = tasks ? tasks->child : NULL; t; t = t->next) ix->v[ix->n++] = t;
    qsort(ix->v, (size_t)ix->n, sizeof *ix->v, row_cmp);
}
const cJSON *rep_index_find(const rep_index *ix, const char *id) {
    int lo = 0, hi = ix->n - 1;
    while (ix->v && lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(rep_str(ix->v[mid], "id"), id);
        if (!c) return ix->v[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}
void rep_index_free(rep_index *ix) { rf_free(ix->v); ix->v = NULL; ix->n = 0; }
const cJSON *rep_done_parent(const rep_index *ix, const cJSON *t) {
    const cJSON *par = rep_get(t, "parents");
    const cJSON *d = cJSON_IsArray(par) && cJSON_IsString(par->child) ? rep_index_find(ix, par->child->valuestring) : NULL;
    return d && rep_done(d) ? d : NULL;
}

/* ---- task states from the ledger ----------------------------------------------------- */

typedef struct tstate { int status; int attempts; char cls[16]; char msg[256]; double seconds; } tstate;
enum { ST_PENDING, ST_RUNNING, ST_DONE, ST_FAILED, ST_SKIPPED, ST_PREEMPTED, ST_COUNT_ };
static const char *const st_names[] = {"pending", "running", "done", "failed", "skipped", "preempted"};

typedef struct rctx { const rf_job *job; tstate *ts; cJSON *runs; const char *sweep; } rctx;

/* One "runs" entry per "sweep" ledger event: when, on how many ranks, and
 * under which Slurm job (id, array task, node list, restart count), so a
 * report of a requeued study shows each of its runs. */
static void add_run(rctx *r, const cJSON *ev) {
    cJSON *run = cJSON_CreateObject();
    if (!run) return;
    if (r->sweep) cJSON_AddStringToObject(run, "sweep", r->sweep);
    static const char *const keys[] = {"time", "ranks", "reused", "raffle_version"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const cJSON *v = rep_get(ev, keys[k]);
        if (v) cJSON_AddItemToObject(run, keys[k], cJSON_Duplicate(v, 1));
    }
    const cJSON *env = rep_get(ev, "env");
    const cJSON *host = rep_get(env, "host"), *slurm = rep_get(env, "slurm");
    if (cJSON_IsString(host)) cJSON_AddStringToObject(run, "host", host->valuestring);
    if (cJSON_IsObject(slurm)) cJSON_AddItemToObject(run, "slurm", cJSON_Duplicate(slurm, 1));
    cJSON_AddItemToArray(r->runs, run);
}

static int on_event(void *ud, const cJSON *ev) {
    rctx *r = ud;
    const cJSON *e = rep_get(ev, "event"), *t = rep_get(ev, "task");
    if (r->runs && cJSON_IsString(e) && strcmp(e->valuestring, "sweep") == 0) add_run(r, ev);
    uint64_t id;
    if (!cJSON_IsString(e) || !cJSON_IsString(t) || rf_job_id_parse(t->valuestring, &id)) return 0;
    int i = rf_job_find(r->job, id);
    if (i < 0) return 0;
    static const struct { const char *ev; int st; } map[] = {
        {"started", ST_RUNNING}, {"done", ST_DONE}, {"failed", ST_FAILED}, {"skipped", ST_SKIPPED}, {"preempted", ST_PREEMPTED},
    };
    tstate *s = &r->ts[i];
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++) {
        if (strcmp(map[k].ev, e->valuestring) != 0) continue;
        const cJSON *a = rep_get(ev, "attempt"), *c = rep_get(ev, "class"), *m = rep_get(ev, "message"),
                    *sec = rep_get(ev, "seconds"), *retry = rep_get(ev, "retry");
        /* a done task stays done; a failure that will be retried is still running */
        if (s->status == ST_DONE && map[k].st != ST_DONE) return 0;
        s->status = (map[k].st == ST_FAILED && cJSON_IsTrue(retry)) ? ST_PENDING : map[k].st;
        if (cJSON_IsNumber(a)) s->attempts = a->valueint;
        snprintf(s->cls, sizeof s->cls, "%s", cJSON_IsString(c) ? c->valuestring : "");
        snprintf(s->msg, sizeof s->msg, "%s", cJSON_IsString(m) ? m->valuestring : "");
        if (cJSON_IsNumber(sec)) s->seconds = sec->valuedouble;
    }
    return 0;
}

/* ---- what a store knows of its tasks: facts for pipelines' `best` ----------------
 * Each task's latest ledger state by id (a failure that will be retried is
 * still waiting; "skipped" and final failures are gone), and a done task's
 * metric read from its metrics.json. */
typedef struct id_state { uint64_t id; int st; } id_state;
struct rf_report_facts { rf_store *store; id_state *v; size_t cap, n; };

static id_state *facts_slot(rf_report_facts *f, uint64_t id) {
    size_t h = (size_t)(id * 0x9E3779B97F4A7C15ull) & (f->cap - 1);
    while (f->v[h].st >= 0 && f->v[h].id != id) h = (h + 1) & (f->cap - 1);
    return &f->v[h];
}

static int facts_grow(rf_report_facts *f) {
    size_t cap = f->cap ? f->cap * 2 : 1024;
    id_state *v = rf_malloc(cap * sizeof *v), *old = f->v;
    if (!v) return 0;
    for (size_t i = 0; i < cap; i++) v[i].st = -1;
    size_t ocap = f->cap;
    f->v = v; f->cap = cap;
    for (size_t i = 0; i < ocap; i++) if (old[i].st >= 0) *facts_slot(f, old[i].id) = old[i];
    rf_free(old);
    return 1;
}

static int facts_event(void *ud, const cJSON *ev) {
    rf_report_facts *f = ud;
    const cJSON *e = rep_get(ev, "event"), *t = rep_get(ev, "task");
    uint64_t id;
    if (!cJSON_IsString(e) || !cJSON_IsString(t) || rf_job_id_parse(t->valuestring, &id)) return 0;
    static const struct { const char *ev; int st; } map[] = {
        {"started", RF_FACT_WAIT}, {"done", RF_FACT_DONE}, {"failed", RF_FACT_GONE}, {"skipped", RF_FACT_GONE},
        {"preempted", RF_FACT_WAIT},
    };
    for (size_t k = 0; k < sizeof map / sizeof map[0]; k++) {
        if (strcmp(map[k].ev, e->valuestring) != 0) continue;
        if ((f->n + 1) * 2 > f->cap && !facts_grow(f)) return -1;
        id_state *sl = facts_slot(f, id);
        if (sl->st < 0) f->n++;
        /* a done task stays done; a failure that will be retried still waits */
        if (sl->st == RF_FACT_DONE && map[k].st != RF_FACT_DONE) return 0;
        sl->id = id;
        sl->st = map[k].st == RF_FACT_GONE && cJSON_IsTrue(rep_get(ev, "retry")) ? RF_FACT_WAIT : map[k].st;
    }
    return 0;
}

rf_status rf_report_facts_open(rf_ctx *ctx, rf_store *s, rf_report_facts **out) {
    *out = NULL;
    rf_report_facts *f = rf_calloc(1, sizeof *f);
    if (!f || !facts_grow(f)) { rf_free(f); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    f->store = s;
    rf_status st = rf_store_ledger_replay(ctx, s, facts_event, f, NULL);
    if (st) { rf_report_facts_free(f); return st; }
    *out = f;
    return RF_OK;
}

void rf_report_facts_free(rf_report_facts *f) {
    if (!f) return;
    rf_free(f->v);
    rf_free(f);
}

rf_fact rf_report_fact(void *ud, uint64_t id, const char *metric, double *value) {
    rf_report_facts *f = ud;
    *value = NAN;
    id_state *sl = facts_slot(f, id);
    if (sl->st < 0 || sl->st == RF_FACT_WAIT) return RF_FACT_WAIT;
    if (sl->st == RF_FACT_GONE) return RF_FACT_GONE;
    char rel[96];
    unsigned char *buf;
    size_t n;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    rf_store_task_rel(rel, sizeof rel, id, "metrics.json");
    if (rf_store_read(&tmp, f->store, rel, &buf, &n) != RF_OK) return RF_FACT_GONE;
    cJSON *m = cJSON_ParseWithLength((const char *)buf, n);
    rf_free(buf);
    *value = rep_num(m, metric);
    cJSON_Delete(m);
    return RF_FACT_DONE;
}

rf_status rf_report_job_text(rf_ctx *ctx, rf_store *s, const char *text, size_t n, const char *hint, const char *pins,
                             cJSON *log, rf_job **out) {
    *out = NULL;
    rf_report_facts *f = NULL;
    RF_TRY(rf_report_facts_open(ctx, s, &f));
    rf_job_fact_log rec = {{rf_report_fact, f}, log};
    rf_job_facts facts = {rf_job_fact_record, &rec};
    rf_status st = rf_job_parse_facts(ctx, text, n, hint, pins, &facts, out);
    rf_report_facts_free(f);
    return st;
}

rf_status rf_report_job(rf_ctx *ctx, rf_store *s, rf_job **out) {
    unsigned char *txt;
    size_t n;
    *out = NULL;
    RF_TRY(rf_store_read(ctx, s, "job.json", &txt, &n));
    /* the digests of the files the sweep's ids include (absent: it read none) */
    unsigned char *pins = NULL;
    size_t np = 0;
    rf_ctx pctx;
    rf_ctx_init(&pctx);
    rf_status ps = rf_store_read(&pctx, s, "inputs.json", &pins, &np);
    if (ps != RF_OK && ps != RF_ERR_NOTFOUND) {
        rf_free(txt);
        return rf_error(ctx, ps, "%s", rf_ctx_error(&pctx));
    }
    /* a job without "name" was named after its file: the store's name; its
     * pipelines' `best` stages resolved from what the store holds */
    const char *dir = rf_store_dir(s), *slash = strrchr(dir, '/');
    rf_status st = rf_report_job_text(ctx, s, (const char *)txt, n, slash ? slash + 1 : dir, (const char *)pins, NULL, out);
    rf_free(txt);
    rf_free(pins);
    if (st) rf_error_prefix(ctx, "%s/job.json", dir);
    return st;
}

rf_status rf_report_states(rf_ctx *ctx, rf_store *s, const rf_job *job, const char **out) {
    rctx r = {job, rf_calloc((size_t)(job->n_tasks ? job->n_tasks : 1), sizeof(tstate)), NULL, NULL};
    if (!r.ts) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_status st = rf_store_ledger_replay(ctx, s, on_event, &r, NULL);
    for (int i = 0; !st && i < job->n_tasks; i++) out[i] = st_names[r.ts[i].status];
    rf_free(r.ts);
    return st;
}

/* ---- one row ------------------------------------------------------------------------- */

/* row[key] = the first of the (object, key) pairs that is a number, else null */
static void put_num(cJSON *row, const char *key, const cJSON *a, const char *ka, const cJSON *b, const char *kb) {
    const cJSON *v = rep_get(a, ka);
    if (!cJSON_IsNumber(v) && b) v = rep_get(b, kb);
    if (cJSON_IsNumber(v)) cJSON_AddNumberToObject(row, key, v->valuedouble);
    else cJSON_AddNullToObject(row, key);
}
static void put_str(cJSON *row, const char *key, const cJSON *o, const char *k) {
    const cJSON *v = rep_get(o, k);
    if (cJSON_IsString(v)) cJSON_AddStringToObject(row, key, v->valuestring);
    else cJSON_AddNullToObject(row, key);
}
static void put_copy(cJSON *row, const char *key, const cJSON *v) {
    if (v) cJSON_AddItemToObject(row, key, cJSON_Duplicate(v, 1));
}

/* "avx512vbmi, OpenBLAS 0.3.21 Haswell": the engine a task ran on. */
static void engine_text(const cJSON *eng, char *buf, size_t n) {
    const cJSON *isa = rep_get(eng, "isa"), *blas = rep_get(eng, "blas");
    buf[0] = '\0';
    if (!cJSON_IsString(isa)) return;
    snprintf(buf, n, "%s, %s %s %s", isa->valuestring, rep_str(blas, "name")[0] ? rep_str(blas, "name") : "?",
             rep_str(blas, "version"), rep_str(blas, "core"));
}

/* The key on the x axis of the plot a kind's tasks are in: left out of
 * the row's "series" (a line runs along it). */
static const char *x_key(int kind) {
    const rf_kind *k = rf_kind_get(kind);
    switch (k ? k->plot : RF_PLOT_NONE) {
    case RF_PLOT_SPARSITY: return "sparsity";
    case RF_PLOT_LOTTERY: return "round";
    case RF_PLOT_DISTILL: return "temperature";
    default: return NULL;
    }
}

/* A label form with the comparison's sweep in front ("A: ...") when the
 * report covers more than one sweep. */
static void add_label(cJSON *row, const char *key, const rf_job_labels *l, int i, const char *const *omit, const char *sweep) {
    char buf[1024];
    size_t n = rf_job_label_format(l, i, omit, 0, buf, sizeof buf);
    if (n >= sizeof buf) buf[sizeof buf - 1] = '\0';
    if (!sweep) { cJSON_AddStringToObject(row, key, buf); return; }
    char both[1200];
    snprintf(both, sizeof both, "%s: %s", sweep, buf);
    cJSON_AddStringToObject(row, key, both);
}

/* The accuracy-like metrics: test split first (the older name "accuracy"
 * is the test split's), the validation split where the task has one. */
static void put_accuracy(cJSON *row, const cJSON *met) {
    put_num(row, "accuracy", met, "test_accuracy", met, "accuracy");
    put_num(row, "test_accuracy", met, "test_accuracy", met, "accuracy");
    put_num(row, "val_accuracy", met, "val_accuracy", NULL, NULL);
    put_num(row, "loss", met, "test_loss", met, "loss");
    put_num(row, "val_loss", met, "val_loss", NULL, NULL);
    put_num(row, "accuracy_before_finetune", met, "test_accuracy_before_finetune", met, "accuracy_before_finetune");
    put_num(row, "val_accuracy_before_finetune", met, "val_accuracy_before_finetune", NULL, NULL);
    put_num(row, "fp32_accuracy", met, "fp32_test_accuracy", met, "fp32_accuracy");   /* quantize writes the former */
}

/* Per-layer weights remaining: metrics "layer_remaining", else 1 - each
 * entry of "layer_sparsity". */
static void put_layers(cJSON *row, const cJSON *met) {
    const cJSON *lr = rep_get(met, "layer_remaining"), *ls = rep_get(met, "layer_sparsity");
    if (cJSON_IsObject(lr)) { put_copy(row, "layer_remaining", lr); return; }
    if (!cJSON_IsObject(ls)) return;
    cJSON *o = cJSON_AddObjectToObject(row, "layer_remaining");
    for (const cJSON *c = ls->child; o && c; c = c->next)
        if (cJSON_IsNumber(c)) cJSON_AddNumberToObject(o, c->string, 1 - c->valuedouble);
}

typedef struct src_ctx {
    const rf_report_source *src;
    const rf_job *job;
    const rf_job_labels *labels;
    const tstate *ts;
    const char *prefix;   /* the sweep in front of labels (comparisons), or NULL */
} src_ctx;

static cJSON *make_row(const src_ctx *sc, int i, cJSON *set, const cJSON *met) {
    const rf_job *job = sc->job;
    const tstate *ts = &sc->ts[i];
    const cJSON *tim = rep_get(met, "timing");
    cJSON *row = cJSON_CreateObject();
    if (!row) return NULL;
    int kind = job->tasks[i].kind;
    char hx[17], mb[64];
    rf_job_id_hex(job->tasks[i].id, hx);
    cJSON_AddStringToObject(row, "id", hx);
    cJSON_AddStringToObject(row, "sweep", sc->src->sweep ? sc->src->sweep : job->name);
    cJSON_AddStringToObject(row, "experiment", job->exp_names[job->tasks[i].exp]);
    cJSON_AddStringToObject(row, "kind", rf_job_kind_name(kind));
    const rf_kind *k = rf_kind_get(kind);
    cJSON_AddStringToObject(row, "method", !k ? "?" : k->label ? k->label(set, mb, sizeof mb) : k->name);
    static const char *const no_seed[] = {"seed", NULL};
    const char *no_x[] = {"seed", x_key(kind), NULL};
    if (sc->prefix) add_label(row, "label", sc->labels, i, NULL, sc->prefix);
    else cJSON_AddStringToObject(row, "label", rf_job_label(sc->labels, i));
    add_label(row, "group", sc->labels, i, no_seed, sc->prefix);
    add_label(row, "series", sc->labels, i, no_x, sc->prefix);
    cJSON_AddStringToObject(row, "status", st_names[ts->status]);
    cJSON_AddNumberToObject(row, "attempts", ts->attempts);
    cJSON_AddStringToObject(row, "class", ts->cls);
    cJSON_AddStringToObject(row, "message", ts->msg);
    put_str(row, "dataset", set, "data");
    put_str(row, "model", set, "model");
    put_num(row, "seed", set, "seed", NULL, NULL);
    put_num(row, "target_sparsity", met, "target_sparsity", set, "sparsity");
    put_num(row, "sparsity", met, "sparsity", set, "sparsity");
    const cJSON *sp = rep_get(row, "sparsity");
    if (cJSON_IsNumber(rep_get(met, "remaining"))) put_num(row, "remaining", met, "remaining", NULL, NULL);
    else if (cJSON_IsNumber(sp)) cJSON_AddNumberToObject(row, "remaining", 1 - sp->valuedouble);
    else cJSON_AddNullToObject(row, "remaining");
    put_num(row, "round", set, "round", NULL, NULL);
    put_num(row, "temperature", set, "temperature", NULL, NULL);
    put_str(row, "mode", set, "mode");
    put_accuracy(row, met);
    static const char *const plain[] = {"bytes", "dense_bytes", "compression_ratio", "parameters", "nonzero_parameters", "flops",
                                        "dense_flops", "best_iteration"};
    for (size_t c = 0; c < sizeof plain / sizeof plain[0]; c++) put_num(row, plain[c], met, plain[c], NULL, NULL);
    static const char *const timed[] = {"latency_ms", "dense_latency_ms", "throughput", "seconds"};
    for (size_t c = 0; c < sizeof timed / sizeof timed[0]; c++) put_num(row, timed[c], tim, timed[c], met, timed[c]);
    if (cJSON_IsNull(rep_get(row, "seconds")) && ts->seconds > 0) cJSON_ReplaceItemInObject(row, "seconds", cJSON_CreateNumber(ts->seconds));
    /* layers pruned away entirely: SynFlow's layer-collapse measure */
    const cJSON *cl = rep_get(met, "collapsed_layers");
    if (cJSON_IsArray(cl)) cJSON_AddNumberToObject(row, "collapsed_layers", cJSON_GetArraySize(cl));
    else cJSON_AddNullToObject(row, "collapsed_layers");
    cJSON *par = cJSON_CreateArray();
    for (int p = 0; par && p < job->tasks[i].n_parents; p++) {
        rf_job_id_hex(job->tasks[rf_job_parents(job, i)[p]].id, hx);
        cJSON_AddItemToArray(par, cJSON_CreateString(hx));
    }
    cJSON_AddItemToObject(row, "parents", par);
    char eng[160];
    engine_text(rep_get(met, "engine"), eng, sizeof eng);
    if (eng[0]) cJSON_AddStringToObject(row, "engine", eng);
    else cJSON_AddNullToObject(row, "engine");
    cJSON_AddStringToObject(row, "link", sc->src->link ? sc->src->link : "");
    put_layers(row, met);
    const cJSON *curve = rep_get(met, "curve");
    if (cJSON_IsArray(curve)) put_copy(row, "curve", curve);
    cJSON_AddItemToObject(row, "settings", set);
    put_copy(row, "engine_detail", rep_get(met, "engine"));
    return row;
}

/* The varied settings of this source's tasks that are no fixed column,
 * added to cols (names, in first-seen order) when new. */
static void add_setting_columns(const src_ctx *sc, cJSON *cols) {
    for (int i = 0; i < sc->job->n_tasks; i++) {
        int n = rf_job_label_nkeys(sc->labels, i);
        for (int k = 0; k < n; k++) {
            unsigned f;
            const char *key = rf_job_label_key(sc->labels, i, k, &f);
            if (!(f & RF_LABEL_KEY_SHOWN)) continue;
            int skip = 0;
            for (const char *const *x = fixed_settings; *x && !skip; x++) skip = strcmp(*x, key) == 0;
            for (const cJSON *c = cols->child; c && !skip; c = c->next) skip = strcmp(c->valuestring, key) == 0;
            if (!skip) cJSON_AddItemToArray(cols, cJSON_CreateString(key));
        }
    }
}

/* The rows of one source appended to tasks; its runs to runs; counts. */
static rf_status add_source(rf_ctx *ctx, const rf_report_source *src, int compare, cJSON *tasks, cJSON *runs,
                            cJSON *cols, int counts[ST_COUNT_], double best[2]) {
    rf_job *owned = NULL;
    const rf_job *job = src->job;
    if (!job) {
        RF_TRY(rf_report_job(ctx, src->store, &owned));
        job = owned;
    }
    const char *prefix = compare ? (src->sweep ? src->sweep : job->name) : NULL;
    rf_job_labels *labels = NULL;
    rctx r = {job, rf_calloc((size_t)(job->n_tasks ? job->n_tasks : 1), sizeof(tstate)), runs, prefix};
    rf_status st = r.ts ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    if (!st) st = rf_job_labels_new(ctx, job, &labels);
    if (!st) st = rf_store_ledger_replay(ctx, src->store, on_event, &r, NULL);
    src_ctx sc = {src, job, labels, r.ts, prefix};
    if (!st) add_setting_columns(&sc, cols);
    for (int i = 0; !st && i < job->n_tasks; i++) {
        cJSON *set = cJSON_Parse(rf_job_settings(job, i));
        cJSON *met = NULL;
        tstate *ts = &r.ts[i];
        if (ts->status == ST_DONE) {
            unsigned char *buf;
            size_t n;
            char rel[96];
            rf_ctx tmp;
            rf_ctx_init(&tmp);
            rf_store_task_rel(rel, sizeof rel, job->tasks[i].id, "metrics.json");
            if (rf_store_read(&tmp, src->store, rel, &buf, &n) == RF_OK) { met = cJSON_ParseWithLength((const char *)buf, n); rf_free(buf); }
            if (!met) ts->status = ST_PENDING;
        }
        counts[ts->status]++;
        cJSON *row = set ? make_row(&sc, i, set, met) : NULL;
        cJSON_Delete(met);
        if (!row) { cJSON_Delete(set); st = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); break; }
        /* the headline is chosen on the validation split, never the test
         * split: the task with the best validation accuracy, and its test
         * accuracy beside it (issue 20) */
        double val = rep_num(row, "val_accuracy"), acc = rep_num(row, "accuracy");
        if (isfinite(val) && val >= 0 && isfinite(acc) && val > best[0]) { best[0] = val; best[1] = acc; }
        cJSON_AddItemToArray(tasks, row);
    }
    rf_job_labels_free(labels);
    rf_free(r.ts);
    rf_job_free(owned);
    return st;
}

rf_status rf_report_build_sources(rf_ctx *ctx, const rf_report_source *src, int n, cJSON **out) {
    *out = NULL;
    cJSON *rep = cJSON_CreateObject(), *tasks = cJSON_CreateArray(), *runs = cJSON_CreateArray(), *cols = cJSON_CreateArray(),
          *sweeps = cJSON_CreateArray();
    rf_status st = (!rep || !tasks || !runs || !cols || !sweeps) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory") : RF_OK;
    int counts[ST_COUNT_] = {0};
    double best[2] = {-1, -1};   /* best validation accuracy, the test accuracy of that task */
    char name[512] = "";
    for (int s = 0; !st && s < n; s++) {
        int before = cJSON_GetArraySize(tasks);
        st = add_source(ctx, &src[s], n > 1, tasks, runs, cols, counts, best);
        if (st) break;
        const cJSON *first = cJSON_GetArrayItem(tasks, before);
        const char *sw = src[s].sweep ? src[s].sweep : first ? rep_str(first, "sweep") : "";
        cJSON_AddItemToArray(sweeps, cJSON_CreateString(sw));
        snprintf(name + strlen(name), sizeof name - strlen(name), "%s%s", s ? " vs " : "", sw);
    }
    if (!st) {
        cJSON_AddStringToObject(rep, "name", name);
        char t[40];
        rf_store_time_iso(t, sizeof t);
        cJSON_AddStringToObject(rep, "generated", t);
        cJSON_AddItemToObject(rep, "sweeps", sweeps);
        sweeps = NULL;
        cJSON *sum = cJSON_AddObjectToObject(rep, "summary");
        cJSON_AddNumberToObject(sum, "total", cJSON_GetArraySize(tasks));
        for (int k = 0; k < ST_COUNT_; k++) cJSON_AddNumberToObject(sum, st_names[k], counts[k]);
        if (best[0] >= 0) {
            cJSON_AddNumberToObject(sum, "best_val_accuracy", best[0]);
            cJSON_AddNumberToObject(sum, "test_accuracy_at_best_val", best[1]);
        }
        /* Slurm metadata at the top level: the latest run's (restart_count
         * says how often it was requeued); every run's under "runs" */
        const cJSON *last = NULL;
        for (const cJSON *c = runs->child; c; c = c->next) if (rep_get(c, "slurm")) last = rep_get(c, "slurm");
        if (last) cJSON_AddItemToObject(rep, "slurm", cJSON_Duplicate(last, 1));
        cJSON_AddItemToObject(rep, "runs", runs);
        runs = NULL;
        cJSON_AddItemToObject(rep, "setting_columns", cols);
        cols = NULL;
        cJSON_AddItemToObject(rep, "tasks", tasks);
        tasks = NULL;
        *out = rep;
        rep = NULL;
    }
    cJSON_Delete(rep);
    cJSON_Delete(tasks);
    cJSON_Delete(runs);
    cJSON_Delete(cols);
    cJSON_Delete(sweeps);
    return st;
}

rf_status rf_report_build(rf_ctx *ctx, rf_store *s, const rf_job *job, cJSON **out) {
    rf_report_source src = {.store = s, .job = job};
    return rf_report_build_sources(ctx, &src, 1, out);
}

/* ---- CSV -------------------------------------------------------------------- */

static void csv_cell(rf_buf *b, const cJSON *v) {
    if (cJSON_IsNumber(v)) rf_buf_printf(b, "%.10g", v->valuedouble);
    else if (cJSON_IsString(v)) {
        if (!strpbrk(v->valuestring, ",\"\n\r")) { rf_buf_printf(b, "%s", v->valuestring); return; }
        rf_buf_printf(b, "\"");
        for (const char *p = v->valuestring; *p; p++) rf_buf_printf(b, *p == '"' ? "\"\"" : "%c", *p);
        rf_buf_printf(b, "\"");
    } else if (cJSON_IsBool(v)) rf_buf_printf(b, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next) rf_buf_printf(b, "%s%s", c == v->child ? "" : " ", cJSON_IsString(c) ? c->valuestring : "");
    }
}

static rf_status report_csv(rf_ctx *ctx, const cJSON *rep, char **out, size_t *n) {
    rf_buf b = {0};
    const cJSON *cols = rep_get(rep, "setting_columns"), *tasks = rep_get(rep, "tasks");
    for (int k = 0; rf_report_columns[k]; k++) rf_buf_printf(&b, "%s%s", k ? "," : "", rf_report_columns[k]);
    for (const cJSON *c = cols ? cols->child : NULL; c; c = c->next) { rf_buf_printf(&b, ","); csv_cell(&b, c); }
    rf_buf_printf(&b, "\n");
    for (const cJSON *t = tasks ? tasks->child : NULL; t; t = t->next) {
        for (int k = 0; rf_report_columns[k]; k++) {
            if (k) rf_buf_printf(&b, ",");
            csv_cell(&b, rep_get(t, rf_report_columns[k]));
        }
        for (const cJSON *c = cols ? cols->child : NULL; c; c = c->next) {
            rf_buf_printf(&b, ",");
            if (cJSON_IsString(c)) csv_cell(&b, rf_job_setting_get(rep_get(t, "settings"), c->valuestring));
        }
        rf_buf_printf(&b, "\n");
    }
    if (b.oom) { rf_free(b.p); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    *out = b.p;
    *n = b.n;
    return RF_OK;
}

/* ---- writing ----------------------------------------------------------------- */

/* The three files of rep, each through put (a store write or an atomic
 * file write into a directory). */
typedef rf_status (*put_fn)(rf_ctx *ctx, void *ud, const char *name, const void *data, size_t n);

static rf_status write_all(rf_ctx *ctx, const cJSON *rep, put_fn put, void *ud) {
    rf_status st = RF_OK;
    char *txt = cJSON_Print(rep);
    if (!txt) st = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    if (!st) st = put(ctx, ud, "report.json", txt, strlen(txt));
    free(txt);
    char *csv = NULL, *html = NULL;
    size_t n = 0;
    if (!st) st = report_csv(ctx, rep, &csv, &n);
    if (!st) st = put(ctx, ud, "report.csv", csv, n);
    if (!st) st = rf_report_html(ctx, rep, &html);
    if (!st) st = put(ctx, ud, "report.html", html, strlen(html));
    rf_free(csv);
    rf_free(html);
    return st;
}

static rf_status put_store(rf_ctx *ctx, void *ud, const char *name, const void *data, size_t n) {
    return rf_store_write(ctx, ud, name, data, n);
}
static rf_status put_dir(rf_ctx *ctx, void *ud, const char *name, const void *data, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", (const char *)ud, name);
    return rf_write_file_atomic(ctx, path, data, n);
}

rf_status rf_report_write(rf_ctx *ctx, rf_store *s, const rf_job *job) {
    cJSON *rep;
    RF_TRY(rf_report_build(ctx, s, job, &rep));
    rf_status st = write_all(ctx, rep, put_store, s);
    cJSON_Delete(rep);
    return st;
}

rf_status rf_report_write_dir(rf_ctx *ctx, const char *dir, const cJSON *rep) {
    if (strlen(dir) > 4000) return rf_error(ctx, RF_ERR_INVALID, "report: directory name too long");
    RF_TRY(rf_mkdirs(ctx, dir));
    return write_all(ctx, rep, put_dir, (void *)dir);
}

rf_status rf_report_generate(rf_ctx *ctx, const char *dir) {
    rf_store *s;
    RF_TRY(rf_store_open_path(ctx, dir, 0, &s));
    rf_status st = rf_report_write(ctx, s, NULL);
    rf_store_close(s);
    return st;
}
