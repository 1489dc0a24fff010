/* Sweep reports: one row per task (settings + ledger + metrics.json) as
 * report.json and report.csv, and report.html: self-contained (no scripts,
 * no network), plots drawn as inline SVG:
 *  - one-shot pruning: accuracy vs sparsity per method, mean over seeds with
 *    min-max bars (the shape of SynFlow's Fig. 5 / Frankle et al.'s plots);
 *  - lottery tickets: accuracy and early-stop iteration vs remaining weights
 *    (log axis) for IMP rounds and their controls (Frankle & Carbin Fig. 3-4);
 *  - distillation: student accuracy vs temperature against the student
 *    trained alone and the teacher (Hinton et al. 2015, sec. 3);
 *  - quantization: accuracy vs size, float vs int8 PTQ/QAT (Jacob et al. 2018);
 *  - every task: accuracy vs size and vs latency, Pareto frontier marked. */
#include "raffle/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rf_report_columns[] = {
    "id", "experiment", "kind", "method", "status", "attempts", "class", "message", "dataset", "model", "seed",
    "sparsity", "remaining", "round", "temperature", "mode", "accuracy", "loss", "bytes", "dense_bytes",
    "compression_ratio", "parameters", "latency_ms", "dense_latency_ms", "seconds", "best_iteration", "collapsed_layers", "parents",
    "engine", NULL
};

/* ---- string builder (core.h rf_buf) ----------------------------------------- */
typedef rf_buf sb;
#define sb_printf rf_buf_printf
static void sb_html(sb *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *s);
        }
    }
}

/* ---- building the rows ------------------------------------------------------ */

typedef struct tstate { int status; int attempts; char cls[16]; char msg[256]; double seconds; } tstate;
enum { ST_PENDING, ST_RUNNING, ST_DONE, ST_FAILED, ST_SKIPPED, ST_PREEMPTED };
static const char *const st_names[] = {"pending", "running", "done", "failed", "skipped", "preempted"};

typedef struct rctx { const rf_job *job; tstate *ts; cJSON *runs; } rctx;

/* One "runs" entry per "sweep" ledger event: when, on how many ranks, and
 * under which Slurm job (id, array task, node list, restart count), so a
 * report of a requeued study shows each of its runs. */
static void add_run(rctx *r, const cJSON *ev) {
    cJSON *run = cJSON_CreateObject();
    if (!run) return;
    static const char *const keys[] = {"time", "ranks", "reused", "raffle_version"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, keys[k]);
        if (v) cJSON_AddItemToObject(run, keys[k], cJSON_Duplicate(v, 1));
    }
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(ev, "env");
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(env, "host");
    const cJSON *slurm = cJSON_GetObjectItemCaseSensitive(env, "slurm");
    if (cJSON_IsString(host)) cJSON_AddStringToObject(run, "host", host->valuestring);
    if (cJSON_IsObject(slurm)) cJSON_AddItemToObject(run, "slurm", cJSON_Duplicate(slurm, 1));
    cJSON_AddItemToArray(r->runs, run);
}

static int on_event(void *ud, const cJSON *ev) {
    rctx *r = ud;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ev, "event"), *t = cJSON_GetObjectItemCaseSensitive(ev, "task");
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
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(ev, "attempt"), *c = cJSON_GetObjectItemCaseSensitive(ev, "class"),
                    *m = cJSON_GetObjectItemCaseSensitive(ev, "message"), *sec = cJSON_GetObjectItemCaseSensitive(ev, "seconds"),
                    *retry = cJSON_GetObjectItemCaseSensitive(ev, "retry");
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

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static void copy_num(cJSON *row, const char *key, const cJSON *a, const char *ka, const cJSON *b, const char *kb) {
    const cJSON *v = get(a, ka);
    if (!cJSON_IsNumber(v) && b) v = get(b, kb);
    if (cJSON_IsNumber(v)) cJSON_AddNumberToObject(row, key, v->valuedouble);
    else cJSON_AddNullToObject(row, key);
}
static void copy_str(cJSON *row, const char *key, const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    if (cJSON_IsString(v)) cJSON_AddStringToObject(row, key, v->valuestring);
    else cJSON_AddNullToObject(row, key);
}

/* The "method" column: the kind's label (raffle/task.h rf_kind.label). */
static const char *method_of(int kind, const cJSON *set, char *buf, size_t n) {
    const rf_kind *k = rf_kind_get(kind);
    if (!k) return "?";
    return k->label ? k->label(set, buf, n) : k->name;
}

/* "avx512vbmi, OpenBLAS 0.3.21 Haswell": the engine a task ran on. */
static void engine_text(const cJSON *eng, char *buf, size_t n) {
    const cJSON *isa = cJSON_GetObjectItemCaseSensitive(eng, "isa"), *blas = cJSON_GetObjectItemCaseSensitive(eng, "blas");
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(blas, "name"), *bv = cJSON_GetObjectItemCaseSensitive(blas, "version"),
                *bc = cJSON_GetObjectItemCaseSensitive(blas, "core");
    buf[0] = '\0';
    if (!cJSON_IsString(isa)) return;
    snprintf(buf, n, "%s, %s %s %s", isa->valuestring, cJSON_IsString(bn) ? bn->valuestring : "?",
             cJSON_IsString(bv) ? bv->valuestring : "", cJSON_IsString(bc) ? bc->valuestring : "");
}

rf_status rf_report_build(rf_ctx *ctx, rf_store *s, const rf_job *job_in, cJSON **out) {
    *out = NULL;
    rf_job *owned = NULL;
    const rf_job *job = job_in;
    if (!job) {
        unsigned char *txt;
        size_t n;
        RF_TRY(rf_store_read(ctx, s, "job.json", &txt, &n));
        /* a job without "name" was named after its file: the store's name */
        const char *dir = rf_store_dir(s), *slash = strrchr(dir, '/');
        rf_status st = rf_job_parse(ctx, (const char *)txt, n, slash ? slash + 1 : dir, &owned);
        rf_free(txt);
        if (st) { rf_error_prefix(ctx, "%s/job.json", rf_store_dir(s)); return st; }
        job = owned;
    }
    rctx r = {job, rf_calloc((size_t)(job->n_tasks ? job->n_tasks : 1), sizeof(tstate)), cJSON_CreateArray()};
    cJSON *rep = cJSON_CreateObject(), *tasks = cJSON_CreateArray();
    rf_status st = (!r.ts || !rep || !tasks || !r.runs) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory") : RF_OK;
    if (!st) st = rf_store_ledger_replay(ctx, s, on_event, &r, NULL);
    int counts[6] = {0};
    double acc_best = -1;
    for (int i = 0; !st && i < job->n_tasks; i++) {
        char hx[17], rel[96], mb[48];
        rf_job_id_hex(job->tasks[i].id, hx);
        cJSON *set = cJSON_Parse(rf_job_settings(job, i));
        cJSON *met = NULL;
        tstate *ts = &r.ts[i];
        if (ts->status == ST_DONE) {
            unsigned char *buf;
            size_t n;
            rf_ctx tmp;
            rf_ctx_init(&tmp);
            rf_store_task_rel(rel, sizeof rel, job->tasks[i].id, "metrics.json");
            if (rf_store_read(&tmp, s, rel, &buf, &n) == RF_OK) { met = cJSON_ParseWithLength((const char *)buf, n); rf_free(buf); }
            if (!met) ts->status = ST_PENDING;
        }
        counts[ts->status]++;
        const cJSON *tim = get(met, "timing");
        cJSON *row = cJSON_CreateObject();
        if (!row || !set) { cJSON_Delete(row); cJSON_Delete(set); cJSON_Delete(met); st = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); break; }
        int kind = job->tasks[i].kind;
        cJSON_AddStringToObject(row, "id", hx);
        cJSON_AddStringToObject(row, "experiment", job->exp_names[job->tasks[i].exp]);
        cJSON_AddStringToObject(row, "kind", rf_job_kind_name(kind));
        cJSON_AddStringToObject(row, "method", method_of(kind, set, mb, sizeof mb));
        cJSON_AddStringToObject(row, "status", st_names[ts->status]);
        cJSON_AddNumberToObject(row, "attempts", ts->attempts);
        cJSON_AddStringToObject(row, "class", ts->cls);
        cJSON_AddStringToObject(row, "message", ts->msg);
        copy_str(row, "dataset", set, "data");
        copy_str(row, "model", set, "model");
        copy_num(row, "seed", set, "seed", NULL, NULL);
        copy_num(row, "sparsity", met, "sparsity", set, "sparsity");
        const cJSON *sp = get(row, "sparsity");
        if (cJSON_IsNumber(sp)) cJSON_AddNumberToObject(row, "remaining", 1 - sp->valuedouble);
        else cJSON_AddNullToObject(row, "remaining");
        copy_num(row, "round", set, "round", NULL, NULL);
        copy_num(row, "temperature", set, "temperature", NULL, NULL);
        copy_str(row, "mode", set, "mode");
        copy_num(row, "accuracy", met, "accuracy", NULL, NULL);
        copy_num(row, "loss", met, "loss", NULL, NULL);
        copy_num(row, "bytes", met, "bytes", NULL, NULL);
        copy_num(row, "dense_bytes", met, "dense_bytes", NULL, NULL);
        copy_num(row, "compression_ratio", met, "compression_ratio", NULL, NULL);
        copy_num(row, "parameters", met, "parameters", NULL, NULL);
        copy_num(row, "latency_ms", tim, "latency_ms", met, "latency_ms");
        copy_num(row, "dense_latency_ms", tim, "dense_latency_ms", met, "dense_latency_ms");
        copy_num(row, "seconds", tim, "seconds", met, "seconds");
        if (cJSON_IsNull(get(row, "seconds")) && ts->seconds > 0) cJSON_ReplaceItemInObject(row, "seconds", cJSON_CreateNumber(ts->seconds));
        copy_num(row, "best_iteration", met, "best_iteration", NULL, NULL);
        char eng[160];
        engine_text(get(met, "engine"), eng, sizeof eng);
        if (eng[0]) cJSON_AddStringToObject(row, "engine", eng);
        else cJSON_AddNullToObject(row, "engine");
        /* layers pruned away entirely: SynFlow's layer-collapse measure */
        const cJSON *cl = get(met, "collapsed_layers");
        if (cJSON_IsArray(cl)) cJSON_AddNumberToObject(row, "collapsed_layers", cJSON_GetArraySize(cl));
        else cJSON_AddNullToObject(row, "collapsed_layers");
        cJSON *par = cJSON_CreateArray();
        for (int k = 0; par && k < job->tasks[i].n_parents; k++) {
            rf_job_id_hex(job->tasks[rf_job_parents(job, i)[k]].id, hx);
            cJSON_AddItemToArray(par, cJSON_CreateString(hx));
        }
        cJSON_AddItemToObject(row, "parents", par);
        const cJSON *acc = get(row, "accuracy");
        if (cJSON_IsNumber(acc) && acc->valuedouble > acc_best) acc_best = acc->valuedouble;
        cJSON_AddItemToObject(row, "settings", set);
        if (get(met, "engine")) cJSON_AddItemToObject(row, "engine_detail", cJSON_Duplicate(get(met, "engine"), 1));
        cJSON_Delete(met);
        cJSON_AddItemToArray(tasks, row);
    }
    if (!st) {
        cJSON_AddStringToObject(rep, "name", job->name);
        char t[40];
        rf_store_time_iso(t, sizeof t);
        cJSON_AddStringToObject(rep, "generated", t);
        cJSON *sum = cJSON_AddObjectToObject(rep, "summary");
        cJSON_AddNumberToObject(sum, "total", job->n_tasks);
        for (int k = 0; k < 6; k++) cJSON_AddNumberToObject(sum, st_names[k], counts[k]);
        if (acc_best >= 0) cJSON_AddNumberToObject(sum, "best_accuracy", acc_best);
        /* Slurm metadata at the top level: the latest run's (restart_count
         * says how often it was requeued); every run's under "runs" */
        const cJSON *last = NULL;
        for (const cJSON *c = r.runs->child; c; c = c->next) if (get(c, "slurm")) last = get(c, "slurm");
        if (last) cJSON_AddItemToObject(rep, "slurm", cJSON_Duplicate(last, 1));
        cJSON_AddItemToObject(rep, "runs", r.runs);
        r.runs = NULL;
        cJSON_AddItemToObject(rep, "tasks", tasks);
        tasks = NULL;
        *out = rep;
        rep = NULL;
    }
    cJSON_Delete(rep);
    cJSON_Delete(tasks);
    cJSON_Delete(r.runs);
    rf_free(r.ts);
    rf_job_free(owned);
    return st;
}

/* ---- CSV -------------------------------------------------------------------- */

static void csv_cell(sb *b, const cJSON *v) {
    if (cJSON_IsNumber(v)) sb_printf(b, "%.10g", v->valuedouble);
    else if (cJSON_IsString(v)) {
        int q = strpbrk(v->valuestring, ",\"\n\r") != NULL;
        if (!q) { sb_printf(b, "%s", v->valuestring); return; }
        sb_printf(b, "\"");
        for (const char *p = v->valuestring; *p; p++) sb_printf(b, *p == '"' ? "\"\"" : "%c", *p);
        sb_printf(b, "\"");
    } else if (cJSON_IsArray(v)) {
        int first = 1;
        for (const cJSON *c = v->child; c; c = c->next) { sb_printf(b, "%s%s", first ? "" : " ", cJSON_IsString(c) ? c->valuestring : ""); first = 0; }
    }
}

static rf_status report_csv(rf_ctx *ctx, const cJSON *rep, char **out, size_t *n) {
    sb b = {0};
    for (int k = 0; rf_report_columns[k]; k++) sb_printf(&b, "%s%s", k ? "," : "", rf_report_columns[k]);
    sb_printf(&b, "\n");
    for (const cJSON *t = get(rep, "tasks")->child; t; t = t->next) {
        for (int k = 0; rf_report_columns[k]; k++) {
            if (k) sb_printf(&b, ",");
            csv_cell(&b, get(t, rf_report_columns[k]));
        }
        sb_printf(&b, "\n");
    }
    if (b.oom) { rf_free(b.p); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    *out = b.p; *n = b.n;
    return RF_OK;
}

/* ---- SVG plots ----------------------------------------------------------------- */

#define MAXPTS 4096
typedef struct series { char name[48]; int n; double x[64], y[64], lo[64], hi[64]; } series;
typedef struct plot {
    const char *title, *xlabel, *ylabel;
    int logx, lines, pareto;
    series s[12];
    int ns;
} plot;

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                                      "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};

static series *series_get(plot *p, const char *name) {
    for (int i = 0; i < p->ns; i++) if (strcmp(p->s[i].name, name) == 0) return &p->s[i];
    if (p->ns >= 12) return NULL;
    series *s = &p->s[p->ns++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

/* Mean/min/max per x from raw samples: second pass over (x, y) pairs. */
typedef struct sample { int series; double x, y; } sample;
typedef struct samples { sample *v; int n, cap; } samples;
static void samples_add(samples *S, int si, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return;
    if (S->n == S->cap) {
        int cap = S->cap ? S->cap * 2 : 256;
        sample *v = rf_realloc(S->v, (size_t)cap * sizeof *v);
        if (!v) return;
        S->v = v; S->cap = cap;
    }
    S->v[S->n++] = (sample){si, x, y};
}
static void finalize(plot *p, const samples *S) {
    for (int si = 0; si < p->ns; si++) {
        series *s = &p->s[si];
        s->n = 0;
        for (int k = 0; k < S->n; k++) {
            if (S->v[k].series != si) continue;
            int j = 0;
            while (j < s->n && fabs(s->x[j] - S->v[k].x) > 1e-12) j++;
            if (j == s->n) {
                if (s->n >= 64) continue;
                s->x[j] = S->v[k].x; s->y[j] = 0; s->lo[j] = INFINITY; s->hi[j] = -INFINITY;
                s->n++;
            }
            s->y[j] += S->v[k].y;
            if (S->v[k].y < s->lo[j]) s->lo[j] = S->v[k].y;
            if (S->v[k].y > s->hi[j]) s->hi[j] = S->v[k].y;
        }
        for (int j = 0; j < s->n; j++) {
            int c = 0;
            for (int k = 0; k < S->n; k++) c += S->v[k].series == si && fabs(S->v[k].x - s->x[j]) <= 1e-12;
            s->y[j] /= c ? c : 1;
        }
        /* sort by x for lines */
        for (int a = 1; a < s->n; a++)
            for (int b2 = a; b2 > 0 && s->x[b2] < s->x[b2 - 1]; b2--) {
                double t;
                t = s->x[b2]; s->x[b2] = s->x[b2 - 1]; s->x[b2 - 1] = t;
                t = s->y[b2]; s->y[b2] = s->y[b2 - 1]; s->y[b2 - 1] = t;
                t = s->lo[b2]; s->lo[b2] = s->lo[b2 - 1]; s->lo[b2 - 1] = t;
                t = s->hi[b2]; s->hi[b2] = s->hi[b2 - 1]; s->hi[b2 - 1] = t;
            }
    }
}

static void svg_plot(sb *b, const plot *p) {
    const double W = 620, H = 340, L = 64, R = 150, T = 34, B = 48;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int any = 0;
    for (int i = 0; i < p->ns; i++)
        for (int j = 0; j < p->s[i].n; j++) {
            double x = p->s[i].x[j];
            if (p->logx && x <= 0) continue;
            any = 1;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            double lo = fmin(p->s[i].lo[j], p->s[i].y[j]), hi = fmax(p->s[i].hi[j], p->s[i].y[j]);
            if (lo < y0) y0 = lo;
            if (hi > y1) y1 = hi;
        }
    sb_printf(b, "<figure><svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' viewBox='0 0 %.0f %.0f' role='img'>", W, H, W, H);
    sb_printf(b, "<rect width='100%%' height='100%%' fill='#fff'/><text x='%.0f' y='20' font-size='14' font-weight='bold'>", L);
    sb_html(b, p->title);
    sb_printf(b, "</text>");
    if (!any) {
        sb_printf(b, "<text x='%.0f' y='%.0f' font-size='13' fill='#888'>no finished tasks of this kind yet</text></svg></figure>", L, H / 2);
        return;
    }
    if (p->logx) { x0 = log10(x0); x1 = log10(x1); }
    if (x1 - x0 < 1e-9) { x0 -= 0.5; x1 += 0.5; }
    if (y1 - y0 < 1e-9) { y0 -= 0.05; y1 += 0.05; }
    double pad = (y1 - y0) * 0.08;
    y0 -= pad; y1 += pad;
    double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((p->logx ? log10(x) : (x)) - x0) / (x1 - x0) * pw)
#define PY(y) (T + ph - ((y) - y0) / (y1 - y0) * ph)
    sb_printf(b, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#999'/>", L, T, pw, ph);
    for (int k = 0; k <= 4; k++) {
        double yv = y0 + (y1 - y0) * k / 4, yp = PY(yv);
        sb_printf(b, "<line x1='%.0f' x2='%.0f' y1='%.1f' y2='%.1f' stroke='#eee'/><text x='%.0f' y='%.1f' font-size='11' text-anchor='end'>%.3g</text>",
                  L, L + pw, yp, yp, L - 4, yp + 4, yv);
        double xv = x0 + (x1 - x0) * k / 4, xp = L + pw * k / 4;
        sb_printf(b, "<text x='%.1f' y='%.0f' font-size='11' text-anchor='middle'>%.3g</text>", xp, T + ph + 16, p->logx ? pow(10, xv) : xv);
    }
    sb_printf(b, "<text x='%.0f' y='%.0f' font-size='12' text-anchor='middle'>", L + pw / 2, H - 10);
    sb_html(b, p->xlabel);
    sb_printf(b, "</text><text x='14' y='%.0f' font-size='12' text-anchor='middle' transform='rotate(-90 14 %.0f)'>", T + ph / 2, T + ph / 2);
    sb_html(b, p->ylabel);
    sb_printf(b, "</text>");
    for (int i = 0; i < p->ns; i++) {
        const series *s = &p->s[i];
        const char *col = palette[i % 12];
        if (p->lines && s->n > 1) {
            sb_printf(b, "<polyline fill='none' stroke='%s' stroke-width='2' points='", col);
            for (int j = 0; j < s->n; j++) if (!p->logx || s->x[j] > 0) sb_printf(b, "%.1f,%.1f ", PX(s->x[j]), PY(s->y[j]));
            sb_printf(b, "'/>");
        }
        for (int j = 0; j < s->n; j++) {
            if (p->logx && s->x[j] <= 0) continue;
            double xp = PX(s->x[j]);
            if (s->hi[j] > s->lo[j])
                sb_printf(b, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='1.5'/>", xp, xp, PY(s->lo[j]), PY(s->hi[j]), col);
            sb_printf(b, "<circle cx='%.1f' cy='%.1f' r='3.5' fill='%s'><title>", xp, PY(s->y[j]), col);
            sb_html(b, s->name);
            sb_printf(b, ": x=%.4g y=%.4g</title></circle>", s->x[j], s->y[j]);
        }
        sb_printf(b, "<rect x='%.0f' y='%.0f' width='10' height='10' fill='%s'/><text x='%.0f' y='%.0f' font-size='12'>",
                  L + pw + 10, T + 6 + 18.0 * i, col, L + pw + 26, T + 15 + 18.0 * i);
        sb_html(b, s->name);
        sb_printf(b, "</text>");
    }
    if (p->pareto) {
        /* frontier: points no other point beats on both smaller x and higher y */
        double fx[MAXPTS / 8], fy[MAXPTS / 8];
        int nf = 0;
        for (int i = 0; i < p->ns; i++)
            for (int j = 0; j < p->s[i].n; j++) {
                double x = p->s[i].x[j], y = p->s[i].y[j];
                if (x <= 0) continue;
                int dom = 0;
                for (int a = 0; a < p->ns && !dom; a++)
                    for (int c = 0; c < p->s[a].n && !dom; c++) {
                        double x2 = p->s[a].x[c], y2 = p->s[a].y[c];
                        dom = x2 > 0 && x2 <= x && y2 >= y && (x2 < x || y2 > y);
                    }
                if (!dom && nf < MAXPTS / 8) { fx[nf] = x; fy[nf] = y; nf++; }
            }
        for (int a = 1; a < nf; a++)
            for (int c = a; c > 0 && fx[c] < fx[c - 1]; c--) {
                double t = fx[c]; fx[c] = fx[c - 1]; fx[c - 1] = t;
                t = fy[c]; fy[c] = fy[c - 1]; fy[c - 1] = t;
            }
        sb_printf(b, "<polyline fill='none' stroke='#000' stroke-dasharray='5 3' stroke-width='1.5' points='");
        for (int a = 0; a < nf; a++) sb_printf(b, "%.1f,%.1f ", PX(fx[a]), PY(fy[a]));
        sb_printf(b, "'/><text x='%.0f' y='%.0f' font-size='11'>--- Pareto frontier</text>", L + pw + 10, T + ph);
    }
#undef PX
#undef PY
    sb_printf(b, "</svg></figure>\n");
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}
static int is_done(const cJSON *t) { return strcmp(str(t, "status"), "done") == 0; }

static int series_index(plot *p, const char *name) {
    series *s = series_get(p, name);
    return s ? (int)(s - p->s) : -1;
}

static void add_pt(plot *p, samples *S, const char *name, double x, double y) {
    int i = series_index(p, name);
    if (i >= 0) samples_add(S, i, x, y);
}

/* Task rows by id: a sorted array searched by bisection, so the plots stay
 * O(n log n) on 100,000-task sweeps. */
typedef struct row_ref { const char *id; const cJSON *row; } row_ref;
typedef struct row_index { row_ref *v; int n; } row_index;
static int row_cmp(const void *a, const void *b) { return strcmp(((const row_ref *)a)->id, ((const row_ref *)b)->id); }
static void index_rows(row_index *ix, const cJSON *tasks) {
    ix->n = 0;
    ix->v = rf_malloc((size_t)(cJSON_GetArraySize(tasks) + 1) * sizeof *ix->v);
    if (!ix->v) return;   /* then lookups find nothing: plots lose their reference points, nothing breaks */
    for (const cJSON *t = tasks->child; t; t = t->next) ix->v[ix->n++] = (row_ref){str(t, "id"), t};
    qsort(ix->v, (size_t)ix->n, sizeof *ix->v, row_cmp);
}
static const cJSON *by_id(const row_index *ix, const char *id) {
    row_ref key = {id, NULL};
    row_ref *hit = ix->v ? bsearch(&key, ix->v, (size_t)ix->n, sizeof *ix->v, row_cmp) : NULL;
    return hit ? hit->row : NULL;
}

/* Whether a row's kind draws in plot p (rf_kind.plot). */
static int in_plot(const cJSON *t, rf_kind_plot p) {
    const rf_kind *k = rf_kind_get(rf_kind_find(str(t, "kind")));
    return k && k->plot == p;
}

static int has_plot(const cJSON *tasks, rf_kind_plot p) {
    for (const cJSON *t = tasks->child; t; t = t->next) if (in_plot(t, p)) return 1;
    return 0;
}

static int is_dense(const cJSON *t) { return rf_kind_find(str(t, "kind")) == RF_JOB_TRAIN; }

/* A fresh plot with its axes; S emptied. */
static void plot_begin(plot *p, samples *S, const char *title, const char *xlabel, const char *ylabel, int logx,
                       int lines) {
    memset(p, 0, sizeof *p);
    p->title = title; p->xlabel = xlabel; p->ylabel = ylabel;
    p->logx = logx; p->lines = lines;
    S->n = 0;
}

/* t's first parent if it is done, else NULL. */
static const cJSON *done_parent(row_index *ix, const cJSON *t) {
    const cJSON *par = get(t, "parents");
    const cJSON *d = par && par->child ? by_id(ix, par->child->valuestring) : NULL;
    return d && is_done(d) ? d : NULL;
}

/* Plots for the kinds the job has (an empty plot says "not yet" while the
 * sweep runs); the all-task Pareto plots always. */
static void plots(sb *b, const cJSON *tasks) {
    plot p;
    samples S = {0};
    row_index ix;
    index_rows(&ix, tasks);
    /* 1: one-shot pruning */
    plot_begin(&p, &S, "One-shot pruning: test accuracy vs sparsity (mean over seeds, bars: min-max)",
               "sparsity (fraction of prunable weights removed)", "test accuracy", 0, 1);
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!is_done(t) || !in_plot(t, RF_PLOT_SPARSITY)) continue;
        add_pt(&p, &S, str(t, "method"), num(t, "sparsity"), num(t, "accuracy"));
        const cJSON *d = done_parent(&ix, t);
        if (d) add_pt(&p, &S, "dense", 0, num(d, "accuracy"));
    }
    finalize(&p, &S);
    if (has_plot(tasks, RF_PLOT_SPARSITY)) svg_plot(b, &p);
    /* 2-3: lottery tickets */
    for (int which = 0; which < 2; which++) {
        plot_begin(&p, &S,
                   which ? "Lottery tickets: early-stop iteration vs weights remaining"
                         : "Lottery tickets: test accuracy vs weights remaining (IMP rounds and controls)",
                   "weights remaining (fraction, log scale)", which ? "iteration of best test accuracy" : "test accuracy",
                   1, 1);
        for (const cJSON *t = tasks->child; t; t = t->next) {
            if (!is_done(t) || !in_plot(t, RF_PLOT_LOTTERY)) continue;
            add_pt(&p, &S, str(t, "method"), num(t, "remaining"), num(t, which ? "best_iteration" : "accuracy"));
            const cJSON *d = done_parent(&ix, t);
            if (d && is_dense(d))
                add_pt(&p, &S, "imp", 1.0, num(d, which ? "best_iteration" : "accuracy"));
        }
        finalize(&p, &S);
        if (has_plot(tasks, RF_PLOT_LOTTERY)) svg_plot(b, &p);
    }
    /* 4: distillation */
    plot_begin(&p, &S, "Distillation: student accuracy vs temperature", "temperature T", "test accuracy", 0, 1);
    double tmin = INFINITY, tmax = -INFINITY;
    for (const cJSON *t = tasks->child; t; t = t->next)
        if (is_done(t) && in_plot(t, RF_PLOT_DISTILL)) {
            double T = num(t, "temperature");
            if (T < tmin) tmin = T;
            if (T > tmax) tmax = T;
        }
    for (const cJSON *t = tasks->child; t && isfinite(tmin); t = t->next) {
        if (!is_done(t) || !in_plot(t, RF_PLOT_DISTILL)) continue;
        add_pt(&p, &S, "distilled student", num(t, "temperature"), num(t, "accuracy"));
        const cJSON *d = done_parent(&ix, t);
        if (d) { add_pt(&p, &S, "teacher", tmin, num(d, "accuracy")); add_pt(&p, &S, "teacher", tmax, num(d, "accuracy")); }
        /* the student trained alone: a dense task of the same experiment and model */
        for (const cJSON *u = tasks->child; u; u = u->next)
            if (is_done(u) && is_dense(u) && strcmp(str(u, "experiment"), str(t, "experiment")) == 0 &&
                strcmp(str(u, "model"), str(t, "model")) == 0 && num(u, "seed") == num(t, "seed")) {
                add_pt(&p, &S, "student alone", tmin, num(u, "accuracy"));
                add_pt(&p, &S, "student alone", tmax, num(u, "accuracy"));
            }
    }
    finalize(&p, &S);
    if (has_plot(tasks, RF_PLOT_DISTILL)) svg_plot(b, &p);
    /* 5: quantization */
    plot_begin(&p, &S, "Quantization: test accuracy vs model size", "checkpoint bytes (log scale)", "test accuracy", 1, 0);
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!is_done(t) || !in_plot(t, RF_PLOT_QUANT)) continue;
        add_pt(&p, &S, str(t, "method"), num(t, "bytes"), num(t, "accuracy"));
        const cJSON *d = done_parent(&ix, t);
        if (d) add_pt(&p, &S, "float32 parent", num(d, "bytes"), num(d, "accuracy"));
    }
    finalize(&p, &S);
    if (has_plot(tasks, RF_PLOT_QUANT)) svg_plot(b, &p);
    /* 6-7: Pareto */
    for (int which = 0; which < 2; which++) {
        plot_begin(&p, &S,
                   which ? "Every task: accuracy vs inference latency" : "Every task: accuracy vs size (Pareto frontier dashed)",
                   which ? "latency per batch, ms (log scale)" : "checkpoint bytes (log scale)", "test accuracy", 1, 0);
        p.pareto = 1;
        for (const cJSON *t = tasks->child; t; t = t->next)
            if (is_done(t) && !(rf_kind_get(rf_kind_find(str(t, "kind")))->flags & RF_KIND_DIAG))
                add_pt(&p, &S, str(t, "kind"), num(t, which ? "latency_ms" : "bytes"), num(t, "accuracy"));
        /* each task is its own point here: no averaging over seeds */
        finalize(&p, &S);
        svg_plot(b, &p);
    }
    rf_free(S.v);
    rf_free(ix.v);
}

static void fmt_cell(sb *b, const cJSON *v, const char *col) {
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (strcmp(col, "accuracy") == 0 || strcmp(col, "sparsity") == 0) sb_printf(b, "%.4f", x);
        else sb_printf(b, "%.4g", x);
    } else if (cJSON_IsString(v)) sb_html(b, v->valuestring);
    else if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next) { sb_html(b, cJSON_IsString(c) ? c->valuestring : ""); if (c->next) sb_printf(b, " "); }
    }
}

/* The runs of the sweep (one per `raffle sweep` that touched the store):
 * time, host, ranks and the Slurm job they ran in. */
static void runs_html(sb *b, const cJSON *runs) {
    if (!cJSON_IsArray(runs) || !runs->child) return;
    sb_printf(b, "<h2>Runs</h2><table><tr><th>started</th><th>host</th><th>ranks</th><th>reused</th><th>slurm job</th>"
                 "<th>array</th><th>nodes</th><th>restarts</th></tr>\n");
    for (const cJSON *r = runs->child; r; r = r->next) {
        const cJSON *sl = get(r, "slurm");
        sb_printf(b, "<tr><td class='s'>");
        sb_html(b, str(r, "time"));
        sb_printf(b, "</td><td class='s'>");
        sb_html(b, str(r, "host"));
        sb_printf(b, "</td><td>%.0f</td><td>%.0f</td><td class='s'>", num(r, "ranks"), num(r, "reused"));
        sb_html(b, sl ? str(sl, "job_id") : "");
        sb_printf(b, "</td><td class='s'>");
        if (sl && get(sl, "array_job_id")) {
            sb_html(b, str(sl, "array_job_id"));
            sb_printf(b, "_");
            sb_html(b, str(sl, "array_task_id"));
        }
        sb_printf(b, "</td><td class='s'>");
        sb_html(b, sl ? str(sl, "nodelist") : "");
        sb_printf(b, "</td><td>");
        if (sl && isfinite(num(sl, "restart_count"))) sb_printf(b, "%.0f", num(sl, "restart_count"));
        sb_printf(b, "</td></tr>\n");
    }
    sb_printf(b, "</table>\n");
}

/* The engines the tasks ran on (metrics.json "engine"): one row per
 * distinct one, with the ISA used, the BLAS library and core, and every
 * engine option's value, so a report says which kernels made its numbers. */
static void engines_html(sb *b, const cJSON *tasks) {
    enum { MAX_ENGINES = 16 };
    const cJSON *seen[MAX_ENGINES];
    int count[MAX_ENGINES], n = 0;
    for (const cJSON *t = tasks->child; t; t = t->next) {
        const cJSON *e = get(t, "engine_detail");
        if (!cJSON_IsObject(e)) continue;
        int k = 0;
        while (k < n && !cJSON_Compare(seen[k], e, 1)) k++;
        if (k == n && n < MAX_ENGINES) { seen[n] = e; count[n++] = 0; }
        if (k < n) count[k]++;
    }
    if (!n) return;
    const cJSON *opts0 = get(seen[0], "options");
    sb_printf(b, "<h2>Engine</h2><table><tr><th>tasks</th><th>ISA used</th><th>CPU ISA</th><th>BLAS</th><th>BLAS core</th>");
    for (const cJSON *o = opts0 ? opts0->child : NULL; o; o = o->next) { sb_printf(b, "<th>"); sb_html(b, o->string); sb_printf(b, "</th>"); }
    sb_printf(b, "</tr>\n");
    for (int k = 0; k < n; k++) {
        const cJSON *e = seen[k], *bl = get(e, "blas");
        sb_printf(b, "<tr><td>%d</td><td class='s'>", count[k]);
        sb_html(b, str(e, "isa"));
        sb_printf(b, "</td><td class='s'>");
        sb_html(b, str(e, "cpu_isa"));
        sb_printf(b, "</td><td class='s'>");
        sb_html(b, str(bl, "name"));
        sb_printf(b, " ");
        sb_html(b, str(bl, "version"));
        sb_printf(b, "</td><td class='s'>");
        sb_html(b, str(bl, "core"));
        sb_printf(b, "</td>");
        for (const cJSON *o = opts0 ? opts0->child : NULL; o; o = o->next) {
            const cJSON *v = get(get(e, "options"), o->string);
            sb_printf(b, "<td class='s'>");
            if (cJSON_IsString(v)) sb_html(b, v->valuestring);
            else if (cJSON_IsNumber(v)) sb_printf(b, "%g", v->valuedouble);
            sb_printf(b, "</td>");
        }
        sb_printf(b, "</tr>\n");
    }
    sb_printf(b, "</table>\n");
}

rf_status rf_report_html(rf_ctx *ctx, const cJSON *rep, char **out) {
    sb b = {0};
    const cJSON *sum = get(rep, "summary"), *tasks = get(rep, "tasks");
    sb_printf(&b, "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>raffle report: ");
    sb_html(&b, str(rep, "name"));
    sb_printf(&b, "</title><style>body{font-family:sans-serif;margin:24px;color:#222;max-width:1360px}"
                  "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}"
                  "th{background:#f4f4f4;position:sticky;top:0}td.s{text-align:left}.done{color:#1a7f37}.failed{color:#c00}"
                  ".skipped,.pending{color:#888}figure{display:inline-block;margin:8px;border:1px solid #eee}"
                  ".cards span{display:inline-block;margin-right:18px;font-size:15px}</style></head><body>\n<h1>raffle sweep: ");
    sb_html(&b, str(rep, "name"));
    sb_printf(&b, "</h1><p>generated %s</p><div class='cards'>", str(rep, "generated"));
    static const char *const keys[] = {"total", "done", "failed", "skipped", "pending", "running", "preempted"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        double v = num(sum, keys[k]);
        if (isfinite(v) && (v > 0 || k < 2)) sb_printf(&b, "<span><b>%.0f</b> %s</span>", v, keys[k]);
    }
    if (isfinite(num(sum, "best_accuracy"))) sb_printf(&b, "<span>best accuracy <b>%.4f</b></span>", num(sum, "best_accuracy"));
    sb_printf(&b, "</div>\n");
    runs_html(&b, get(rep, "runs"));
    engines_html(&b, tasks);
    sb_printf(&b, "<h2>Plots</h2>\n");
    plots(&b, tasks);
    sb_printf(&b, "<h2>Tasks</h2><p>Timings (seconds, latency) vary run to run; every other column is reproducible.</p><table><tr>");
    static const char *const cols[] = {"id", "experiment", "kind", "method", "status", "seed", "sparsity", "round", "temperature",
                                       "accuracy", "loss", "bytes", "compression_ratio", "collapsed_layers", "latency_ms",
                                       "dense_latency_ms", "seconds", "engine", "attempts", "class", "message", NULL};
    for (int k = 0; cols[k]; k++) sb_printf(&b, "<th>%s</th>", cols[k]);
    sb_printf(&b, "</tr>\n");
    for (const cJSON *t = tasks->child; t; t = t->next) {
        sb_printf(&b, "<tr>");
        for (int k = 0; cols[k]; k++) {
            const cJSON *v = get(t, cols[k]);
            int s = cJSON_IsString(v);
            sb_printf(&b, "<td class='%s%s'>", s ? "s " : "", strcmp(cols[k], "status") == 0 ? str(t, "status") : "");
            fmt_cell(&b, v, cols[k]);
            sb_printf(&b, "</td>");
        }
        sb_printf(&b, "</tr>\n");
    }
    sb_printf(&b, "</table></body></html>\n");
    if (b.oom) { rf_free(b.p); return rf_error(ctx, RF_ERR_NOMEM, "out of memory building the report"); }
    *out = b.p;
    return RF_OK;
}

rf_status rf_report_write(rf_ctx *ctx, rf_store *s, const rf_job *job) {
    cJSON *rep;
    RF_TRY(rf_report_build(ctx, s, job, &rep));
    rf_status st = RF_OK;
    char *txt = cJSON_Print(rep);
    if (!txt) st = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    if (!st) st = rf_store_write(ctx, s, "report.json", txt, strlen(txt));
    free(txt);
    char *csv = NULL, *html = NULL;
    size_t n = 0;
    if (!st) st = report_csv(ctx, rep, &csv, &n);
    if (!st) st = rf_store_write(ctx, s, "report.csv", csv, n);
    if (!st) st = rf_report_html(ctx, rep, &html);
    if (!st) st = rf_store_write(ctx, s, "report.html", html, strlen(html));
    rf_free(csv);
    rf_free(html);
    cJSON_Delete(rep);
    return st;
}

rf_status rf_report_generate(rf_ctx *ctx, const char *dir) {
    rf_store *s;
    RF_TRY(rf_store_open_path(ctx, dir, 0, &s));
    rf_status st = rf_report_write(ctx, s, NULL);
    rf_store_close(s);
    return st;
}
