/* Job files: validation with JSON-path errors, grid expansion, and the task
 * DAG with content-addressed ids (docs/jobs.md is the user's view).
 *
 * Three passes over the cJSON tree:
 *  1. validate: every key against the settings tables (raffle/settings.h:
 *     the top-level keys below, the training table, and each experiment
 *     kind's keys from its descriptor, raffle/task.h rf_kind.exp_keys);
 *     unknown keys get a did-you-mean, every error names its JSON path;
 *  2. grid: per experiment, every scalar field given as a list is an axis;
 *     the experiment is expanded over the cartesian product (odometer order,
 *     first axis slowest) after filling defaults;
 *  3. tasks: each grid point goes to its kind's expansion (rf_kind.expand),
 *     which adds tasks with parents to the plan (raffle/plan.h: canonical
 *     settings, content-addressed ids, merged duplicates).
 *
 * Orchestration only: nothing here computes (CONTRIBUTING.md rule 9). */
#include "raffle/job.h"
#include "raffle/settings.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the job file's own keys ----------------------------------------------- */

static const rf_setting limit_keys[] = {
    {.key = "memory_mb", .type = RF_SET_INT, .lo = 16, .hi = 1 << 22, .def = "4096", .unit = "MiB",
     .doc = "address-space limit (`RLIMIT_AS`) of each task's process"},
    {.key = "time_s", .type = RF_SET_NUM, .lo = 0, .hi = 1e7, .lo_open = 1, .def = "3600", .unit = "seconds",
     .doc = "wall-clock limit of one task attempt"},
    {.key = "retries", .type = RF_SET_INT, .lo = 0, .hi = 10, .def = "1", .doc = "extra attempts after a crash or timeout"},
    RF_SETTINGS_END
};

/* Pipelines: a `best` selection ranks by a validation-split metric only
 * (raffle/settings.h rf_select_metric_names, with rf_best_settings). */
const char *const *rf_job_select_metrics(void) { return rf_select_metric_names; }

/* Keys of every experiment; the kind's own come from its descriptor, and
 * so do the "kind" entry's choices (the descriptors' experiment names). */
static const rf_setting common_keys[] = {
    {.key = "kind", .type = RF_SET_ENUM, .flags = RF_SF_REQUIRED, .choices_fn = rf_kind_experiment_names,
     .doc = "the experiment's kind (below)"},
    {.key = "name", .type = RF_SET_STR, .doc = "label in the ledger and report (default `<kind>-<index>`)"},
    {.key = "seed", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 4294967295.0,
     .doc = "model init, data order, random scores (default: the top-level `seed`)"},
    {.key = "dataset", .type = RF_SET_DATA, .flags = RF_SF_GRID, .doc = "default: the top-level `dataset`"},
    {.key = "model", .type = RF_SET_MODEL, .flags = RF_SF_GRID, .doc = "the experiment's (student) model (default: the top-level `model`)"},
    {.key = "train", .type = RF_SET_OBJ, .sub = rf_train_settings,
     .doc = "training settings of the experiment's models, over the top-level `train` key by key"},
    {.key = "engine", .type = RF_SET_ENGINE, .doc = "engine options of its tasks, over the top-level `engine` (docs/engine.md)"},
    {.key = "from", .type = RF_SET_STR, .flags = RF_SF_LISTVAL,
     .doc = "a pipeline stage: start from the models of the earlier experiment of this name, or of a list of them "
            "(one branch per model; `dataset`, `model`, `seed` and the data preparation default to each model's)"},
    {.key = "best", .type = RF_SET_OBJ, .sub = rf_best_settings,
     .doc = "with `from`: keep only the best model of each group, by a validation metric (the stage waits for them to finish)"},
    {.key = "where", .type = RF_SET_WHERE,
     .doc = "with `from`: keep only the models whose settings match `{key: value or list}` (`kind`, `method`, `sparsity`, ...)"},
    RF_SETTINGS_END
};

static const rf_setting top_keys[] = {
    {.key = "name", .type = RF_SET_STR,
     .doc = "store directory name: 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.` (default: the file name without `.json`)"},
    {.key = "description", .type = RF_SET_STR, .doc = "free text"},
    {.key = "dataset", .type = RF_SET_DATA, .flags = RF_SF_REQUIRED,
     .doc = "`fashion-mnist`, `mnist`, `synthetic[:N[:SEED]]`, `cifar10[:PATH]`, `cifar100[:PATH]`, `cifar100-coarse[:PATH]`, four `.npy` files `A,B,C,D`, a `.json` descriptor, a `.tar[.gz]` of the four `.npy`, or `{\"url\", \"sha256\"}` of one (docs/data.md)"},
    {.key = "model", .type = RF_SET_MODEL, .flags = RF_SF_REQUIRED,
     .doc = "preset (`lenet-300-100`, `lenet-5`, `conv-2/4/6`, `mlp-1200x2`, `mlp-800x2`, `vit-tiny`) or a model spec file"},
    {.key = "seed", .type = RF_SET_INT, .lo = 0, .hi = 4294967295.0, .def = "0", .doc = "default seed of every experiment"},
    {.key = "train", .type = RF_SET_OBJ, .sub = rf_train_settings, .doc = "training settings shared by every experiment"},
    {.key = "engine", .type = RF_SET_ENGINE, .flags = RF_SF_PROCESS,
     .doc = "engine options of every task (docs/engine.md); `threads` here (not in an experiment) is the compute threads of each task's process, not part of its settings"},
    {.key = "limits", .type = RF_SET_OBJ, .sub = limit_keys, .doc = "per-task isolation limits"},
    {.key = "experiments", .type = RF_SET_OBJLIST, .flags = RF_SF_REQUIRED, .doc = "non-empty list of experiments"},
    RF_SETTINGS_END
};

const rf_setting *rf_job_top_settings(void) { return top_keys; }
const rf_setting *rf_job_limit_settings(void) { return limit_keys; }
const rf_setting *rf_job_experiment_settings(void) { return common_keys; }

const char *rf_job_kind_name(int k) {
    const rf_kind *d = rf_kind_get(k);
    return d ? d->name : "?";
}

void rf_job_id_hex(uint64_t id, char out[17]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) out[i] = hx[(id >> (60 - 4 * i)) & 15];
    out[16] = '\0';
}

int rf_job_id_parse(const char *s, uint64_t *id) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = (v << 4) | (uint64_t)d;
    }
    if (s[16] != '\0') return -1;
    *id = v;
    return 0;
}

int rf_job_find(const rf_job *j, uint64_t id) {
    return rf_plan_index_find(j->id_index, j->id_index_cap, j->tasks, id);
}

int rf_job_edit_distance(const char *a, const char *b) { return rf_edit_distance(a, b); }

/* ---- grid ---------------------------------------------------------------- */

#define MAX_AXES 32
#define MAX_DEPTH 4
typedef struct axis { const char *path[MAX_DEPTH]; int depth; const cJSON *list; int n; } axis;

/* Collects the grid axes of object o (the first n of tabs) into ax. */
static int collect_axes(const cJSON *o, const rf_setting *const *tabs, int n, const char **prefix, int depth, axis *ax,
                        int *nax) {
    for (const cJSON *c = o->child; c; c = c->next) {
        const rf_setting *f = rf_settings_lookup(tabs, n, c->string);
        if (!f || depth >= MAX_DEPTH) continue;
        prefix[depth] = c->string;
        if (f->type == RF_SET_OBJ && cJSON_IsObject(c)) {
            const rf_setting *sub[1] = {f->sub};
            if (collect_axes(c, sub, 1, prefix, depth + 1, ax, nax) != 0) return -1;
        } else if ((f->flags & RF_SF_GRID) && cJSON_IsArray(c)) {
            if (*nax >= MAX_AXES) return -1;
            axis *x = &ax[(*nax)++];
            memcpy(x->path, prefix, sizeof x->path);
            x->depth = depth + 1;
            x->list = c;
            x->n = cJSON_GetArraySize(c);
        }
    }
    return 0;
}

/* The data preparation keys of a grid point: base's (the job's top level,
 * or the settings of the task a pipeline stage starts from) overlaid by the
 * experiment's own (x) (rf_data_settings). New object; NULL out of memory. */
static cJSON *data_prep(const cJSON *base, const cJSON *x) {
    cJSON *o = cJSON_CreateObject();
    for (const rf_setting *f = rf_data_settings; o && f->key; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, f->key);
        if (!v) v = cJSON_GetObjectItemCaseSensitive(base, f->key);
        if (v && !rf_plan_put(o, f->key, cJSON_Duplicate(v, 1))) { cJSON_Delete(o); return NULL; }
    }
    return o;
}

/* One grid point x into tasks: once, or (a pipeline stage) once per
 * selected parent task from[0 .. nfrom-1] (nfrom < 0: no "from"). A stage
 * inherits each parent's dataset, model, seed and data preparation unless
 * the experiment sets them, so a branch stays on its parent's data split and
 * keeps its seed (the only key ever averaged). */
static int expand_point(rf_ctx *ctx, rf_plan *plan, const rf_kind *k, rf_point *p, const cJSON *x, const cJSON *top,
                        const int32_t *from, int nfrom) {
    if (nfrom < 0) {
        cJSON *prep = data_prep(top, x);
        p->prep = prep;
        int rc = prep ? k->expand(plan, p) : (rf_error(ctx, RF_ERR_NOMEM, "out of memory"), -1);
        cJSON_Delete(prep);
        return rc;
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(x, "seed"), *ds = cJSON_GetObjectItemCaseSensitive(x, "dataset"),
                *md = cJSON_GetObjectItemCaseSensitive(x, "model");
    for (int i = 0; i < nfrom; i++) {
        cJSON *fs = cJSON_Parse(rf_plan_task_settings(plan, from[i]));
        cJSON *prep = fs ? data_prep(fs, x) : NULL;
        if (!fs || !prep) { cJSON_Delete(fs); cJSON_Delete(prep); rf_error(ctx, RF_ERR_NOMEM, "out of memory"); return -1; }
        const cJSON *fd = cJSON_GetObjectItemCaseSensitive(fs, "data"), *fm = cJSON_GetObjectItemCaseSensitive(fs, "model"),
                    *fsd = cJSON_GetObjectItemCaseSensitive(fs, "seed");
        rf_point q = *p;
        q.from = from[i];
        q.from_settings = fs;
        q.prep = prep;
        if (!ds && cJSON_IsString(fd)) q.data = fd->valuestring;
        if (!md && cJSON_IsString(fm)) q.model = fm;
        if (!sd && cJSON_IsNumber(fsd)) q.seed = fsd->valuedouble;
        int rc = k->expand(plan, &q);
        cJSON_Delete(prep);
        cJSON_Delete(fs);
        if (rc) return rc;
    }
    return 0;
}

static rf_status expand_experiment(rf_ctx *ctx, rf_plan *plan, const cJSON *e, int idx, const cJSON *top,
                                   const cJSON *top_train, const cJSON *top_engine, const int32_t *from, int nfrom,
                                   const int32_t *teachers, int nteachers) {
    const rf_kind *k = rf_kind_get(rf_kind_find_experiment(cJSON_GetObjectItemCaseSensitive(e, "kind")->valuestring));
    axis ax[MAX_AXES];
    const char *prefix[MAX_DEPTH] = {0};
    int nax = 0;
    const rf_setting *tabs[3] = {k->exp_keys, common_keys, rf_data_settings};
    if (collect_axes(e, tabs, 3, prefix, 0, ax, &nax) != 0)
        return rf_error(ctx, RF_ERR_JOB, "experiments[%d]: more than %d grid axes", idx, MAX_AXES);
    int pos[MAX_AXES] = {0};
    double points = 1;
    for (int i = 0; i < nax; i++) points *= ax[i].n;
    if (nfrom > 0) points *= nfrom;
    if (points > (double)rf_ctx_task_cap(ctx))
        return rf_error(ctx, RF_ERR_JOB, "experiments[%d]: grid of %.0f points: job expands to more than %zu tasks "
                        "(the task cap; RAFFLE_MAX_TASKS raises it, up to %d)", idx, points, rf_ctx_task_cap(ctx),
                        RF_TASK_CAP_MAX);
    for (;;) {
        cJSON *x = cJSON_Duplicate(e, 1);
        if (!x) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        int ok = 1;
        for (int i = 0; ok && i < nax; i++) {
            cJSON *parent = x;
            for (int d = 0; d + 1 < ax[i].depth; d++) parent = cJSON_GetObjectItemCaseSensitive(parent, ax[i].path[d]);
            cJSON *v = cJSON_Duplicate(cJSON_GetArrayItem(ax[i].list, pos[i]), 1);
            ok = v && cJSON_ReplaceItemInObjectCaseSensitive(parent, ax[i].path[ax[i].depth - 1], v);
            if (!ok) cJSON_Delete(v);
        }
        if (!ok || !rf_settings_fill(x, k->exp_keys)) { cJSON_Delete(x); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
        cJSON *tr = rf_plan_overlay(top_train, cJSON_GetObjectItemCaseSensitive(x, "train"));
        cJSON *eng = rf_plan_overlay(top_engine, cJSON_GetObjectItemCaseSensitive(x, "engine"));
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(x, "seed");
        const cJSON *ds = cJSON_GetObjectItemCaseSensitive(x, "dataset");
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(x, "model");
        char data[4096];
        if (!rf_data_value_spec(ds ? ds : cJSON_GetObjectItemCaseSensitive(top, "dataset"), data, sizeof data)) ok = 0;
        rf_point p = {
            .x = x, .train = tr,
            .data = data,
            .model = md ? md : cJSON_GetObjectItemCaseSensitive(top, "model"),
            .seed = sd ? sd->valuedouble : rf_plan_num(top, "seed"),
            .engine = eng,
            .from = -1,
            .teachers = teachers, .n_teachers = nteachers,
        };
        int rc = ok && tr && eng ? expand_point(ctx, plan, k, &p, x, top, from, nfrom)
                                 : (rf_error(ctx, RF_ERR_NOMEM, "out of memory"), -1);
        cJSON_Delete(tr);
        cJSON_Delete(eng);
        cJSON_Delete(x);
        if (rc != 0) { rf_error_prefix(ctx, "experiments[%d]", idx); return ctx->status ? ctx->status : RF_ERR_JOB; }
        int i = nax - 1;
        while (i >= 0 && ++pos[i] == ax[i].n) pos[i--] = 0;
        if (i < 0) break;
    }
    return RF_OK;
}

/* ---- pipelines: outputs, filters, selection ------------------------------------ */

typedef struct exp_out { int32_t *v; int n; } exp_out;   /* an experiment's output tasks */

/* The outputs of the experiment just expanded: the tasks it added that no
 * task of another kind in it takes as a parent. So a prune experiment's
 * outputs are its prune tasks (not their dense parents), a lottery's every
 * round, a distillation's students (and baselines), an OFA's last stage. */
static rf_status collect_outputs(rf_ctx *ctx, rf_plan *plan, exp_out *o) {
    const int32_t *rec;
    int n = rf_plan_recorded(plan, &rec), nt = rf_plan_count(plan);
    unsigned char *mark = rf_calloc((size_t)(nt ? nt : 1), 1);   /* 1: in the experiment, 2: consumed or listed */
    o->n = 0;
    o->v = rf_malloc((size_t)(n ? n : 1) * sizeof *o->v);
    if (!mark || !o->v) { rf_free(mark); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    for (int a = 0; a < n; a++) mark[rec[a]] = 1;
    for (int b = 0; b < n; b++) {
        const rf_job_task *tb = rf_plan_task(plan, rec[b]);
        const int32_t *pp = rf_plan_parents(plan, rec[b]);
        for (int q = 0; q < tb->n_parents; q++)
            if (mark[pp[q]] && rf_plan_task(plan, pp[q])->kind != tb->kind) mark[pp[q]] = 2;
    }
    for (int a = 0; a < n; a++)
        if (mark[rec[a]] == 1) { o->v[o->n++] = rec[a]; mark[rec[a]] = 2; }
    rf_free(mark);
    return RF_OK;
}

/* A candidate's value of a `where` / `per` key: the flattened setting, or
 * for "method" the kind's method label (int8-ptq, imp, dense) when the
 * settings have none. *tmp gets what the caller frees. */
static const cJSON *cand_value(const cJSON *set, const char *key, cJSON **tmp) {
    *tmp = NULL;
    const cJSON *v = rf_job_setting_get(set, key);
    if (v || strcmp(key, "method") != 0) return v;
    const cJSON *kn = cJSON_GetObjectItemCaseSensitive(set, "kind");
    const rf_kind *k = cJSON_IsString(kn) ? rf_kind_get(rf_kind_find(kn->valuestring)) : NULL;
    char buf[64];
    return k ? (*tmp = cJSON_CreateString(k->label ? k->label(set, buf, sizeof buf) : k->name)) : NULL;
}

static int json_equal(const cJSON *a, const cJSON *b) {
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) return a->valuedouble == b->valuedouble;
    if (cJSON_IsString(a) && cJSON_IsString(b)) return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsBool(a) && cJSON_IsBool(b)) return cJSON_IsTrue(a) == cJSON_IsTrue(b);
    return 0;
}

/* Whether settings set match every entry of where (a list: any member). */
static int where_match(const cJSON *set, const cJSON *where) {
    for (const cJSON *w = where ? where->child : NULL; w; w = w->next) {
        cJSON *tmp;
        const cJSON *v = cand_value(set, w->string, &tmp);
        int any = 0;
        for (const cJSON *c = cJSON_IsArray(w) ? w->child : w; c && !any; c = cJSON_IsArray(w) ? c->next : NULL)
            any = v && json_equal(v, c);
        cJSON_Delete(tmp);
        if (!any) return 0;
    }
    return 1;
}

/* The parents a stage starts from: src's outputs that match `where`, then
 * with `best` the best of each `per` group by a validation metric (ties:
 * the first). *wait = 1 (and nothing selected) when a candidate has not
 * finished. Errors name the JSON path p ("experiments[3]"). */
static rf_status select_from(rf_ctx *ctx, rf_plan *plan, const exp_out *src, const cJSON *e, const char *p,
                             const char *int8_why, const rf_job_facts *facts, int32_t **out, int *nout, int *wait) {
    const cJSON *where = cJSON_GetObjectItemCaseSensitive(e, "where"), *best = cJSON_GetObjectItemCaseSensitive(e, "best");
    *out = NULL; *nout = 0; *wait = 0;
    int32_t *sel = rf_malloc((size_t)(src->n ? src->n : 1) * sizeof *sel);
    cJSON **set = rf_calloc((size_t)(src->n ? src->n : 1), sizeof *set);
    char **gkey = rf_calloc((size_t)(src->n ? src->n : 1), sizeof *gkey);
    double *val = rf_malloc((size_t)(src->n ? src->n : 1) * sizeof *val);
    rf_status s = sel && set && gkey && val ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    int nc = 0;
    for (int i = 0; s == RF_OK && i < src->n; i++) {
        cJSON *st = cJSON_Parse(rf_plan_task_settings(plan, src->v[i]));
        if (!st) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); break; }
        if (!where_match(st, where)) { cJSON_Delete(st); continue; }
        sel[nc] = src->v[i];
        set[nc++] = st;
    }
    /* a stage that takes an int8 model: refused before any work */
    for (int i = 0; s == RF_OK && i < nc; i++) {
        const rf_kind *pk = rf_kind_get(rf_plan_task(plan, sel[i])->kind);
        if (pk->flags & RF_KIND_INT8) s = rf_settings_error(ctx, p, "from: its models are int8 (%s tasks): %s", pk->name, int8_why);
    }
    if (s == RF_OK && best) {
        const cJSON *by = cJSON_GetObjectItemCaseSensitive(best, "by"), *per = cJSON_GetObjectItemCaseSensitive(best, "per");
        const char *metric = cJSON_IsString(by) ? by->valuestring : "val_accuracy";
        int lower = 0;
        for (size_t m = 0; rf_select_metric_names[m]; m++)
            if (strcmp(rf_select_metric_names[m], metric) == 0) lower = rf_select_metric_lower[m];
        for (const cJSON *k = per ? per->child : NULL; s == RF_OK && k && nc; k = k->next) {
            int seen = 0;
            for (int i = 0; i < nc && !seen; i++) { cJSON *tmp; seen = cand_value(set[i], k->valuestring, &tmp) != NULL; cJSON_Delete(tmp); }
            if (!seen) s = rf_settings_error(ctx, p, "best.per: no model of \"from\" has the setting \"%s\"", k->valuestring);
        }
        for (int i = 0; s == RF_OK && i < nc; i++) {
            const cJSON *vs = cJSON_GetObjectItemCaseSensitive(set[i], "validation");
            if (cJSON_IsNumber(vs) && vs->valuedouble == 0)
                s = rf_settings_error(ctx, p, "best: selection reads the validation split, and the models of \"from\" have "
                                      "\"validation\": 0 (the test split never selects)");
        }
        /* every candidate must have ended: else the stage waits */
        for (int i = 0; s == RF_OK && i < nc && !*wait; i++) {
            val[i] = NAN;
            rf_fact f = facts && facts->fn ? facts->fn(facts->ud, rf_plan_task(plan, sel[i])->id, metric, &val[i]) : RF_FACT_WAIT;
            if (f == RF_FACT_WAIT) *wait = 1;
            if (f == RF_FACT_GONE || (f == RF_FACT_DONE && (!isfinite(val[i]) || (!lower && val[i] < 0)))) val[i] = NAN;
        }
        for (int i = 0; s == RF_OK && !*wait && i < nc; i++) {
            rf_buf b = {0};
            for (const cJSON *k = per ? per->child : NULL; k; k = k->next) {
                cJSON *tmp;
                const cJSON *v = cand_value(set[i], k->valuestring, &tmp);
                char *t = v ? cJSON_PrintUnformatted(v) : NULL;
                rf_buf_printf(&b, "%s\x1f", t ? t : "-");
                cJSON_free(t);
                cJSON_Delete(tmp);
            }
            if (b.oom || !(gkey[i] = rf_strdup(b.p ? b.p : ""))) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
            rf_buf_free(&b);
        }
        int n = 0;
        for (int i = 0; s == RF_OK && !*wait && i < nc; i++) {
            int first = 1;
            for (int j = 0; j < i && first; j++) first = strcmp(gkey[j], gkey[i]) != 0;
            if (!first) continue;
            int w = -1;
            for (int j = i; j < nc; j++)
                if (strcmp(gkey[j], gkey[i]) == 0 && !isnan(val[j]) &&
                    (w < 0 || (lower ? val[j] < val[w] : val[j] > val[w])))
                    w = j;
            if (w >= 0) sel[n++] = sel[w];
        }
        nc = n;
    }
    for (int i = 0; set && gkey && i < src->n; i++) { cJSON_Delete(set[i]); rf_free(gkey[i]); }
    rf_free(set); rf_free(gkey); rf_free(val);
    if (s != RF_OK || *wait) { rf_free(sel); return s; }
    *out = sel;
    *nout = nc;
    return RF_OK;
}

rf_fact rf_job_fact_json(void *ud, uint64_t id, const char *metric, double *value) {
    char hex[17];
    rf_job_id_hex(id, hex);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive((const cJSON *)ud, hex);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(f, "state"), *v = cJSON_GetObjectItemCaseSensitive(f, metric);
    *value = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!cJSON_IsString(st)) return RF_FACT_WAIT;
    return strcmp(st->valuestring, "done") == 0 ? RF_FACT_DONE : strcmp(st->valuestring, "gone") == 0 ? RF_FACT_GONE : RF_FACT_WAIT;
}

rf_fact rf_job_fact_record(void *ud, uint64_t id, const char *metric, double *value) {
    rf_job_fact_log *l = ud;
    rf_fact f = l->inner.fn ? l->inner.fn(l->inner.ud, id, metric, value) : RF_FACT_WAIT;
    if (f == RF_FACT_WAIT || !l->log) return f;
    char hex[17];
    rf_job_id_hex(id, hex);
    cJSON *o = cJSON_GetObjectItemCaseSensitive(l->log, hex);
    if (!o && (o = cJSON_AddObjectToObject(l->log, hex)) != NULL)
        cJSON_AddStringToObject(o, "state", f == RF_FACT_DONE ? "done" : "gone");
    if (o && f == RF_FACT_DONE && isfinite(*value) && !cJSON_GetObjectItemCaseSensitive(o, metric))
        cJSON_AddNumberToObject(o, metric, *value);
    return f;
}

/* ---- public -------------------------------------------------------------- */

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.') return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')) return 0;
    return 1;
}

rf_status rf_job_parse(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, rf_job **out) {
    return rf_job_parse_facts(ctx, text, n, name_hint, NULL, NULL, out);
}

rf_status rf_job_parse_pinned(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, const char *pins,
                              rf_job **out) {
    return rf_job_parse_facts(ctx, text, n, name_hint, pins, NULL, out);
}

/* Experiment i's source named `from` (at JSON path p): the index of the
 * earlier experiment of that name, or -1 with the error (did-you-mean among
 * the earlier names; this one or a later one is named as such: stages run
 * in file order). */
static int find_source(rf_ctx *ctx, const rf_job *j, int i, const char *from, const char *p) {
    for (int k = 0; k < i; k++)
        if (strcmp(j->exp_names[k], from) == 0) return k;
    const cJSON *e = NULL;
    for (int k = i; k < j->n_experiments && !e; k++)
        if (j->exp_names[k] && strcmp(j->exp_names[k], from) == 0) {
            if (k == i) rf_error(ctx, RF_ERR_JOB, "%s: \"%s\" is this experiment (a stage starts from an earlier one)", p, from);
            else rf_error(ctx, RF_ERR_JOB, "%s: \"%s\" is experiments[%d], after this one (stages run in file order: "
                          "move it before experiments[%d])", p, from, k, i);
            return -1;
        }
    const char *best = NULL;
    int bd = 3;
    for (int k = 0; k < i; k++) {
        int d = rf_edit_distance(j->exp_names[k], from);
        if (d < bd) { bd = d; best = j->exp_names[k]; }
    }
    if (best) rf_error(ctx, RF_ERR_JOB, "%s: no earlier experiment is named \"%s\" (did you mean \"%s\"?)", p, from, best);
    else rf_error(ctx, RF_ERR_JOB, "%s: no earlier experiment is named \"%s\" (a stage comes after the experiment it starts from)", p, from);
    return -1;
}

/* The models a `from` (a name or a list of names, at JSON path p) and the
 * `where` / `best` beside it in sel_obj select for experiment i: into
 * *out (new, rf_free), or *wait = 1 when an experiment named is deferred
 * or a `best` waits for results. *first: the first experiment named. */
static rf_status resolve_from(rf_ctx *ctx, rf_plan *plan, rf_job *j, const exp_out *outs, int i, const cJSON *from,
                              const cJSON *sel_obj, const char *p, const char *int8_why, const rf_job_facts *facts,
                              int *first, int32_t **out, int *nout, int *wait) {
    *out = NULL; *nout = 0; *wait = 0; *first = -1;
    char fp[96];
    snprintf(fp, sizeof fp, "%s.from", p);
    exp_out all = {0};
    int n = 0;
    for (const cJSON *f = cJSON_IsArray(from) ? from->child : from; f; f = cJSON_IsArray(from) ? f->next : NULL) {
        int src = find_source(ctx, j, i, f->valuestring, fp);
        if (src < 0) return RF_ERR_JOB;
        if (*first < 0) *first = src;
        if (j->exp_deferred[src]) *wait = 1;
        n += outs[src].n;
    }
    if (*wait) return RF_OK;
    if (!(all.v = rf_malloc((size_t)(n ? n : 1) * sizeof *all.v))) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    for (const cJSON *f = cJSON_IsArray(from) ? from->child : from; f; f = cJSON_IsArray(from) ? f->next : NULL) {
        const exp_out *o = &outs[find_source(ctx, j, i, f->valuestring, fp)];
        for (int a = 0; a < o->n; a++) {
            int dup = 0;   /* an experiment named twice: its models once */
            for (int b = 0; b < all.n && !dup; b++) dup = all.v[b] == o->v[a];
            if (!dup) all.v[all.n++] = o->v[a];
        }
    }
    rf_status s = select_from(ctx, plan, &all, sel_obj, p, int8_why, facts, out, nout, wait);
    rf_free(all.v);
    return s;
}

/* Distillation's `teacher.from`: the earlier models the teacher is chosen
 * among (*tsel, new) with the teacher object's own `where` / `best`. */
static rf_status resolve_teacher(rf_ctx *ctx, rf_plan *plan, rf_job *j, const exp_out *outs, const cJSON *e, int i,
                                 const rf_job_facts *facts, int32_t **tsel, int *ntsel, int *wait) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "teacher");
    const cJSON *tf = cJSON_IsObject(t) ? cJSON_GetObjectItemCaseSensitive(t, "from") : NULL;
    *tsel = NULL; *ntsel = -1; *wait = 0;
    char p[64];
    snprintf(p, sizeof p, "experiments[%d].teacher", i);
    if (!tf) {
        static const char *const only[] = {"best", "where"};
        for (int k = 0; cJSON_IsObject(t) && k < 2; k++)
            if (cJSON_GetObjectItemCaseSensitive(t, only[k]))
                return rf_settings_error(ctx, p, "%s: only with \"from\" (it selects the teacher among an earlier experiment's models)", only[k]);
        return RF_OK;
    }
    int first;
    return resolve_from(ctx, plan, j, outs, i, tf, t, p, "an int8 model cannot be a teacher (take its float parent)", facts,
                        &first, tsel, ntsel, wait);
}

/* Expands experiment i (a pipeline stage when it has "from"); fills
 * outs[i] with its outputs, or marks it deferred. */
static rf_status expand_stage(rf_ctx *ctx, rf_plan *plan, rf_job *j, exp_out *outs, const cJSON *e, int i,
                              const cJSON *root, const cJSON *top_train, const cJSON *top_engine, const rf_job_facts *facts) {
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(e, "from");
    char p[64];
    snprintf(p, sizeof p, "experiments[%d]", i);
    const char *kname = cJSON_GetObjectItemCaseSensitive(e, "kind")->valuestring;
    const rf_kind *k = rf_kind_get(rf_kind_find_experiment(kname));
    int32_t *tsel = NULL, *sel = NULL;
    int ntsel = -1, nsel = -1, wait = 0, twait = 0;
    RF_TRY(resolve_teacher(ctx, plan, j, outs, e, i, facts, &tsel, &ntsel, &twait));
    rf_status s = RF_OK;
    if (!from) {
        static const char *const only[] = {"best", "where"};
        for (int q = 0; s == RF_OK && q < 2; q++)
            if (cJSON_GetObjectItemCaseSensitive(e, only[q]))
                s = rf_settings_error(ctx, p, "%s: only with \"from\" (it selects among an earlier experiment's models)", only[q]);
    } else if (!(k->flags & RF_KIND_FROM)) {
        s = rf_settings_error(ctx, p, "from: a \"%s\" experiment cannot start from an earlier experiment's models "
                              "(train, prune, quantize, distill, gmp, lottery and ofa can)", kname);
    } else {
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(e, "mode");
        const char *why = strcmp(kname, "quantize") != 0 ? "no stage takes an int8 model (quantize last)"
                        : cJSON_IsString(mode) && strcmp(mode->valuestring, "qat") == 0 ? "QAT on an already int8 model is refused"
                        : "an int8 model cannot be quantized again";
        int src;
        s = resolve_from(ctx, plan, j, outs, i, from, e, p, why, facts, &src, &sel, &nsel, &wait);
        j->exp_from[i] = src;
    }
    if (s == RF_OK && (wait || twait)) { j->exp_deferred[i] = 1; j->n_deferred++; }
    else if (s == RF_OK) s = expand_experiment(ctx, plan, e, i, root, top_train, top_engine, sel, from ? nsel : -1, tsel, ntsel);
    rf_free(sel);
    rf_free(tsel);
    return s || j->exp_deferred[i] ? s : collect_outputs(ctx, plan, &outs[i]);
}

rf_status rf_job_parse_facts(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, const char *pins,
                             const rf_job_facts *facts, rf_job **out) {
    *out = NULL;
    exp_out *outs = NULL;
    int n_outs = 0;
    cJSON *root = cJSON_ParseWithLength(text, n);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = (at && at >= text && at <= text + n) ? (size_t)(at - text) : 0;
        int line = 1;
        for (size_t i = 0; i < off; i++) line += text[i] == '\n';
        return rf_error(ctx, RF_ERR_JOB, "not valid JSON (near line %d, byte %zu)", line, off);
    }
    rf_status s = RF_OK;
    rf_plan *plan = rf_plan_new(ctx);
    rf_inputs *inputs = rf_inputs_new();
    const struct rf_inputs *was_pinned = ctx->pinned;
    const int diag0 = ctx->diag ? ctx->diag->n : 0;   /* errors recorded before this job's */
    rf_job *j = NULL;
    cJSON *top_train = NULL, *limits = NULL, *top_engine = NULL;
    const rf_setting *top_tab[2] = {top_keys, rf_data_settings};
    const rf_setting *exp_tabs[3] = {NULL, rf_job_experiment_settings(), rf_data_settings};
    if (!plan || !inputs) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    if (pins && (s = rf_inputs_pin_json(ctx, inputs, pins, strlen(pins))) != RF_OK) goto fail;
    rf_plan_set_inputs(plan, inputs);
    /* the pinned files count as present: the report of a store whose spec
     * file is gone still finds the sweep's tasks */
    if (pins) ctx->pinned = inputs;
    if (!cJSON_IsObject(root)) { s = rf_error(ctx, RF_ERR_JOB, "(top level): expected an object"); goto fail; }
    /* Every error of the job, not only the first (issue 23): with
     * ctx->diag each check records its errors there and goes on; the
     * expansion needs a valid job, so it starts only when none was found. */
    rf_status first = rf_settings_check(ctx, root, top_tab, 2, "", 0);
#define JOB_ERR(st) do { rf_status st_ = (st); if (st_) { if (!first) first = st_; if (!ctx->diag) { s = first; goto fail; } } } while (0)
#define JOB_NOTE(st) do { rf_status st2_ = (st); if (st2_) { rf_diag_note(ctx); JOB_ERR(st2_); } } while (0)
    JOB_ERR(first);
    const cJSON *exps = cJSON_GetObjectItemCaseSensitive(root, "experiments");
    if (!cJSON_IsArray(exps) || !exps->child) {
        /* a wrong "experiments" is already recorded by the top-level check */
        if (cJSON_IsArray(exps)) JOB_NOTE(rf_error(ctx, RF_ERR_JOB, "experiments: expected a non-empty list of objects"));
        s = first ? first : rf_error(ctx, RF_ERR_JOB, "experiments: expected a non-empty list of objects");
        goto fail;
    }
    int i = 0;
    for (const cJSON *e = exps->child; e; e = e->next, i++) {
        char p[64];
        snprintf(p, sizeof p, "experiments[%d]", i);
        if (!cJSON_IsObject(e)) { JOB_NOTE(rf_settings_error(ctx, p, "expected an object, got %s", rf_json_type_word(e))); continue; }
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(e, "kind");
        char kp[80];
        snprintf(kp, sizeof kp, "%s.kind", p);
        if (!kind) { JOB_NOTE(rf_settings_error(ctx, kp, "required key missing")); continue; }
        rf_status ks = rf_setting_check(ctx, &common_keys[0], kind, kp, 1);
        /* without a kind its keys are unknown: the experiment's other keys wait */
        if (ks) { JOB_NOTE(ks); continue; }
        exp_tabs[0] = rf_kind_get(rf_kind_find_experiment(kind->valuestring))->exp_keys;
        JOB_ERR(rf_settings_check(ctx, e, exp_tabs, 3, p, 1));
    }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "name");
    const char *name = cJSON_IsString(nm) ? nm->valuestring : name_hint;
    if (!name || !name_ok(name))
        JOB_NOTE(rf_error(ctx, RF_ERR_JOB, "name: \"%s\" is not a valid store name (1-128 of A-Z a-z 0-9 . _ -, not starting with '.')",
                          name ? name : ""));
    if (first) { s = first; goto fail; }
#undef JOB_NOTE
#undef JOB_ERR
    top_train = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(root, "train"), 1);
    if (!top_train) top_train = cJSON_CreateObject();
    top_engine = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(root, "engine"), 1);
    if (!top_engine) top_engine = cJSON_CreateObject();
    limits = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(root, "limits"), 1);
    if (!limits) limits = cJSON_CreateObject();
    if (!top_train || !limits || !top_engine) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    if (!rf_settings_fill(top_train, rf_train_settings) || !rf_settings_fill(limits, limit_keys)) {
        s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        goto fail;
    }

    j = rf_calloc(1, sizeof *j);
    if (!j) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->limits.memory_bytes = (uint64_t)rf_plan_num(limits, "memory_mb") << 20;
    j->limits.time_s = rf_plan_num(limits, "time_s");
    j->limits.retries = (int)rf_plan_num(limits, "retries");
    /* The thread count is the process's (it changes no result): taken out
     * of the engine options the tasks' settings get. */
    cJSON *th = cJSON_DetachItemFromObjectCaseSensitive(top_engine, "threads");
    j->threads = cJSON_IsNumber(th) ? (int)th->valuedouble : cJSON_IsString(th) ? atoi(th->valuestring) : 0;
    cJSON_Delete(th);
    j->n_experiments = i;
    j->exp_names = rf_calloc((size_t)i, sizeof *j->exp_names);
    j->exp_deferred = rf_calloc((size_t)i, 1);
    j->exp_from = rf_malloc((size_t)(i ? i : 1) * sizeof *j->exp_from);
    for (int k = 0; j->exp_from && k < i; k++) j->exp_from[k] = -1;
    outs = rf_calloc((size_t)i, sizeof *outs);
    n_outs = i;
    j->text = rf_malloc(n + 1);
    if (!j->exp_names || !j->exp_deferred || !j->exp_from || !outs || !j->text) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    memcpy(j->text, text, n);
    j->text[n] = '\0';
    j->text_len = n;
    i = 0;
    for (const cJSON *e = exps->child; e; e = e->next, i++) {
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(e, "name");
        char buf[160];
        if (en) snprintf(buf, sizeof buf, "%s", en->valuestring);
        else snprintf(buf, sizeof buf, "%s-%d", cJSON_GetObjectItemCaseSensitive(e, "kind")->valuestring, i);
        if (!(j->exp_names[i] = rf_strdup(buf))) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    }
    /* every name first: a `from` naming a later experiment is told so */
    i = 0;
    for (const cJSON *e = exps->child; e; e = e->next, i++) {
        rf_plan_set_experiment(plan, (uint32_t)i);
        if ((s = expand_stage(ctx, plan, j, outs, e, i, root, top_train, top_engine, facts)) != RF_OK) goto fail;
    }
    for (int k = 0; k < n_outs; k++) rf_free(outs[k].v);
    rf_free(outs);
    rf_plan_take(plan, &j->tasks, &j->n_tasks, &j->parents, &j->strings, &j->strings_len, &j->id_index,
                 &j->id_index_cap, &j->n_dedup);
    rf_plan_free(plan);
    j->inputs_json = rf_inputs_json(inputs);
    ctx->pinned = was_pinned;
    rf_inputs_free(inputs);
    cJSON_Delete(root); cJSON_Delete(top_train); cJSON_Delete(limits); cJSON_Delete(top_engine);
    *out = j;
    return RF_OK;
fail:
    for (int k = 0; outs && k < n_outs; k++) rf_free(outs[k].v);
    rf_free(outs);
    if (ctx->diag && ctx->diag->n > diag0) {
        /* ctx keeps the first error; ctx->diag has all of them */
        char msg[RF_ERR_MAX];
        rf_diag_line(ctx->diag, diag0, msg, sizeof msg);
        rf_error(ctx, s ? s : RF_ERR_JOB, "%s", msg);
    }
    if (inputs && ctx->pinned == inputs) ctx->pinned = was_pinned;
    rf_plan_free(plan);
    rf_inputs_free(inputs);
    rf_job_free(j);
    cJSON_Delete(root); cJSON_Delete(top_train); cJSON_Delete(limits); cJSON_Delete(top_engine);
    return s ? s : RF_ERR_JOB;
}

rf_status rf_job_load(rf_ctx *ctx, const char *path, rf_job **out) {
    unsigned char *buf;
    size_t n;
    *out = NULL;
    RF_TRY(rf_read_file(ctx, path, &buf, &n));
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char hint[129];
    snprintf(hint, sizeof hint, "%s", base);
    char *dot = strrchr(hint, '.');
    if (dot && strcmp(dot, ".json") == 0) *dot = '\0';
    rf_status s = rf_job_parse(ctx, (const char *)buf, n, hint, out);
    if (s) rf_error_prefix(ctx, "%s", path);
    rf_free(buf);
    return s;
}

void rf_job_free(rf_job *j) {
    if (!j) return;
    for (int i = 0; j->exp_names && i < j->n_experiments; i++) rf_free(j->exp_names[i]);
    rf_free(j->exp_names);
    rf_free(j->exp_deferred);
    rf_free(j->exp_from);
    rf_free(j->tasks); rf_free(j->parents); rf_free(j->strings); rf_free(j->text); rf_free(j->id_index);
    rf_free(j->inputs_json);
    rf_free(j);
}

void rf_job_heights(const rf_job *j, int32_t *h) {
    /* tasks are topologically ordered, so a reverse sweep sees children first */
    for (int i = 0; i < j->n_tasks; i++) h[i] = 1;
    for (int i = j->n_tasks - 1; i >= 0; i--) {
        const int32_t *p = rf_job_parents(j, i);
        for (int k = 0; k < j->tasks[i].n_parents; k++)
            if (h[p[k]] < h[i] + 1) h[p[k]] = h[i] + 1;
    }
}

void rf_job_summarize(const rf_job *j, rf_job_summary *s) {
    memset(s, 0, sizeof *s);
    s->n_tasks = j->n_tasks;
    int32_t *depth = rf_malloc((size_t)(j->n_tasks ? j->n_tasks : 1) * sizeof *depth);
    double *cp = rf_malloc((size_t)(j->n_tasks ? j->n_tasks : 1) * sizeof *cp);
    for (int i = 0; i < j->n_tasks; i++) {
        const rf_job_task *t = &j->tasks[i];
        s->per_kind[t->kind]++;
        s->est_seconds += t->cost;
        if (!t->n_parents) s->n_roots++;
        if (!depth || !cp) continue;
        int d = 0;
        double c = 0;
        const int32_t *p = rf_job_parents(j, i);
        for (int k = 0; k < t->n_parents; k++) {
            if (depth[p[k]] > d) d = depth[p[k]];
            if (cp[p[k]] > c) c = cp[p[k]];
        }
        depth[i] = d + 1;
        cp[i] = c + t->cost;
        if (depth[i] > s->longest_chain) s->longest_chain = depth[i];
        if (cp[i] > s->est_critical_s) s->est_critical_s = cp[i];
    }
    rf_free(depth);
    rf_free(cp);
}
