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
    {.key = "engine", .type = RF_SET_ENGINE, .doc = "engine options of every task (docs/engine.md)"},
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

/* The data preparation keys of a grid point: the top level's overlaid by
 * the experiment's (rf_data_settings). New object; NULL out of memory. */
static cJSON *data_prep(const cJSON *top, const cJSON *x) {
    cJSON *o = cJSON_CreateObject();
    for (const rf_setting *f = rf_data_settings; o && f->key; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, f->key);
        if (!v) v = cJSON_GetObjectItemCaseSensitive(top, f->key);
        if (v && !rf_plan_put(o, f->key, cJSON_Duplicate(v, 1))) { cJSON_Delete(o); return NULL; }
    }
    return o;
}

static rf_status expand_experiment(rf_ctx *ctx, rf_plan *plan, const cJSON *e, int idx, const cJSON *top,
                                   const cJSON *top_train, const cJSON *top_engine) {
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
        cJSON *prep = data_prep(top, x);
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
            .prep = prep,
        };
        int rc = ok && tr && eng && prep ? k->expand(plan, &p) : (rf_error(ctx, RF_ERR_NOMEM, "out of memory"), -1);
        cJSON_Delete(tr);
        cJSON_Delete(eng);
        cJSON_Delete(prep);
        cJSON_Delete(x);
        if (rc != 0) { rf_error_prefix(ctx, "experiments[%d]", idx); return ctx->status ? ctx->status : RF_ERR_JOB; }
        int i = nax - 1;
        while (i >= 0 && ++pos[i] == ax[i].n) pos[i--] = 0;
        if (i < 0) break;
    }
    return RF_OK;
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
    return rf_job_parse_pinned(ctx, text, n, name_hint, NULL, out);
}

rf_status rf_job_parse_pinned(rf_ctx *ctx, const char *text, size_t n, const char *name_hint, const char *pins,
                              rf_job **out) {
    *out = NULL;
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
    j->n_experiments = i;
    j->exp_names = rf_calloc((size_t)i, sizeof *j->exp_names);
    j->text = rf_malloc(n + 1);
    if (!j->exp_names || !j->text) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
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
        rf_plan_set_experiment(plan, (uint32_t)i);
        if ((s = expand_experiment(ctx, plan, e, i, root, top_train, top_engine)) != RF_OK) goto fail;
    }
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
