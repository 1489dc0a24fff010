/* The table of task kinds and the task runner.
 *
 * Each kind is one rf_kind descriptor in the file that implements it; this
 * table, indexed by rf_job_kind, is the only list of them (a static_assert
 * keeps it the length of the enum). Referencing each descriptor directly
 * also makes linking rf_task_run pull every kind out of the static library. */
#include "raffle/task.h"
#include "raffle/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const rf_kind *const kinds[] = {
    [RF_JOB_TRAIN] = &rf_kind_train,
    [RF_JOB_PRUNE] = &rf_kind_prune,
    [RF_JOB_LOTTERY] = &rf_kind_lottery,
    [RF_JOB_DISTILL] = &rf_kind_distill,
    [RF_JOB_QUANTIZE] = &rf_kind_quantize,
    [RF_JOB_OFA_SPARSE] = &rf_kind_ofa_sparse,
    [RF_JOB_OFA_TRANSFER] = &rf_kind_ofa_transfer,
    [RF_JOB_OFA_QAT] = &rf_kind_ofa_qat,
    [RF_JOB_NOOP] = &rf_kind_noop,
    [RF_JOB_FAIL] = &rf_kind_fail,
    [RF_JOB_GMP] = &rf_kind_gmp,
};
_Static_assert(sizeof kinds / sizeof kinds[0] == RF_JOB_KIND_COUNT_, "every rf_job_kind needs its descriptor here");

const rf_kind *rf_kind_get(int k) { return k >= 0 && k < RF_JOB_KIND_COUNT_ ? kinds[k] : NULL; }

int rf_kind_find(const char *name) {
    for (int i = 0; name && i < RF_JOB_KIND_COUNT_; i++)
        if (strcmp(kinds[i]->name, name) == 0) return i;
    return -1;
}

int rf_kind_find_experiment(const char *name) {
    for (int i = 0; name && i < RF_JOB_KIND_COUNT_; i++)
        if (kinds[i]->experiment && strcmp(kinds[i]->experiment, name) == 0) return i;
    return -1;
}

static const char *experiment_names[RF_JOB_KIND_COUNT_ + 1];
static pthread_once_t experiment_once = PTHREAD_ONCE_INIT;

static void experiment_init(void) {
    int n = 0;
    for (int i = 0; i < RF_JOB_KIND_COUNT_; i++)
        if (kinds[i]->experiment) experiment_names[n++] = kinds[i]->experiment;
    experiment_names[n] = NULL;
}

const char *const *rf_kind_experiment_names(void) {
    pthread_once(&experiment_once, experiment_init);
    return experiment_names;
}

const rf_task_kind *rf_task_kind_find(const char *name) { return rf_kind_get(rf_kind_find(name)); }

/* ---- settings of a kind ----------------------------------------------------------- */

const rf_setting rf_task_common_settings[] = {
    {.key = "data", .type = RF_SET_DATA, .doc = "dataset: fashion-mnist, mnist, synthetic[:N[:SEED]], cifar10[:PATH], cifar100[:PATH], cifar100-coarse[:PATH], four .npy files A,B,C,D or a .json descriptor (docs/data.md)",
     .alias = "d"},
    {.key = "model", .type = RF_SET_MODEL, .doc = "model preset or spec file (what the task builds when it has no parent)",
     .alias = "m"},
    {.key = "seed", .type = RF_SET_INT, .lo = 0, .hi = 4294967295.0, .def = "0",
     .doc = "seed of initialisation, data order, dropout and random scores"},
    {.key = "engine", .type = RF_SET_ENGINE, .flags = RF_SF_OPTIONAL | RF_SF_NOCLI,
     .doc = "engine options (docs/engine.md); --engine KEY=VALUE on the command line"},
    {.key = "train_limit", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 1e12, .def = "0", .unit = "samples",
     .doc = "train on the first N training samples only (0: all)"},
    RF_SETTINGS_END
};

int rf_kind_tables(const rf_kind *k, const rf_setting *tabs[RF_KIND_MAX_TABLES]) {
    int n = 0;
    if (k->flags & RF_KIND_DATA) tabs[n++] = rf_task_common_settings;
    if (k->flags & RF_KIND_DATA) tabs[n++] = rf_data_settings;
    if (k->flags & RF_KIND_TRAINS) tabs[n++] = rf_train_settings;
    if (k->keys) tabs[n++] = k->keys;
    return n;
}

static int omitted(const rf_kind *k, const char *key) {
    for (const char *const *o = k->train_omit; o && *o; o++)
        if (strcmp(*o, key) == 0) return 1;
    return 0;
}

/* Whether the training keys are settings of s (train_when). */
static int trains(const rf_kind *k, const cJSON *s) {
    if (!(k->flags & RF_KIND_TRAINS)) return 0;
    if (!k->train_when) return 1;
    rf_setting cond = {.key = "", .when = k->train_when};
    return rf_setting_applies(&cond, s);
}

int rf_kind_complete(const rf_kind *k, cJSON *s) {
    cJSON_DeleteItemFromObjectCaseSensitive(s, "kind");
    if (!cJSON_AddStringToObject(s, "kind", k->name)) return 0;
    if (k->keys && !rf_settings_fill(s, k->keys)) return 0;
    if ((k->flags & RF_KIND_DATA) && !rf_settings_fill(s, rf_task_common_settings)) return 0;
    if ((k->flags & RF_KIND_DATA) && !rf_settings_fill(s, rf_data_settings)) return 0;
    if (trains(k, s))
        for (const rf_setting *t = rf_train_settings; t->key; t++) {
            if (omitted(k, t->key) || (t->flags & RF_SF_OPTIONAL) || cJSON_GetObjectItemCaseSensitive(s, t->key) ||
                !rf_setting_applies(t, s))
                continue;
            cJSON *v = rf_setting_default(t);
            if (!v || !cJSON_AddItemToObject(s, t->key, v)) { cJSON_Delete(v); return 0; }
        }
    return 1;
}

rf_status rf_kind_check(rf_ctx *ctx, const rf_kind *k, const cJSON *s, const char *path) {
    const rf_setting *tabs[RF_KIND_MAX_TABLES];
    int n = rf_kind_tables(k, tabs);
    static const rf_setting kind_key[] = {{.key = "kind", .type = RF_SET_STR}, RF_SETTINGS_END};
    const rf_setting *all[RF_KIND_MAX_TABLES + 1];
    for (int i = 0; i < n; i++) all[i] = tabs[i];
    all[n] = kind_key;
    rf_status st = rf_settings_check(ctx, s, all, n + 1, path, 0);
    if (st == RF_OK && (k->flags & RF_KIND_TRAINS))
        for (const rf_setting *t = rf_train_settings; t->key; t++) {
            int given = cJSON_GetObjectItemCaseSensitive(s, t->key) != NULL;
            if (given && omitted(k, t->key))
                st = rf_error(ctx, RF_ERR_JOB, "%s%s%s: %s does not take it", path, path[0] ? "." : "", t->key, k->name);
            else if (given && !trains(k, s))
                st = rf_error(ctx, RF_ERR_JOB, "%s%s%s: only taken when %s", path, path[0] ? "." : "", t->key, k->train_when);
            if (st) break;
        }
    if (st != RF_OK) ctx->status = st = RF_ERR_INVALID;
    return st;
}

static int put(cJSON *o, const char *key, cJSON *v) {
    if (v && cJSON_AddItemToObject(o, key, v)) return 1;
    cJSON_Delete(v);
    return 0;
}

/* Returns a new object/array with every object's keys sorted (byte order). */
static int key_cmp(const void *a, const void *b) {
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

static cJSON *canonical(const cJSON *x) {
    if (cJSON_IsObject(x)) {
        int n = cJSON_GetArraySize(x);
        cJSON **kids = rf_malloc((size_t)(n ? n : 1) * sizeof *kids);
        cJSON *o = cJSON_CreateObject();
        if (!kids || !o) { rf_free(kids); cJSON_Delete(o); return NULL; }
        int i = 0;
        for (cJSON *c = x->child; c; c = c->next) kids[i++] = c;
        qsort(kids, (size_t)n, sizeof *kids, key_cmp);
        for (i = 0; i < n; i++) {
            cJSON *v = canonical(kids[i]);
            if (!put(o, kids[i]->string, v)) { rf_free(kids); cJSON_Delete(o); return NULL; }
        }
        rf_free(kids);
        return o;
    }
    if (cJSON_IsArray(x)) {
        cJSON *a = cJSON_CreateArray();
        if (!a) return NULL;
        for (cJSON *c = x->child; c; c = c->next) {
            cJSON *v = canonical(c);
            if (!v || !cJSON_AddItemToArray(a, v)) { cJSON_Delete(v); cJSON_Delete(a); return NULL; }
        }
        return a;
    }
    return cJSON_Duplicate(x, 1);
}

cJSON *rf_kind_settings(const rf_kind *k, const cJSON *given) {
    cJSON *s = cJSON_Duplicate(given, 1);
    if (!s || !rf_kind_complete(k, s)) { cJSON_Delete(s); return NULL; }
    cJSON *c = canonical(s);
    cJSON_Delete(s);
    return c;
}

/* ---- running ------------------------------------------------------------------------ */

rf_status rf_task_data_opts(rf_ctx *ctx, const cJSON *settings, rf_data_opts *o) {
    rf_data_opts_default(o);
    for (const rf_setting *k = rf_data_settings; k->key; k++) {
        const cJSON *v = settings ? cJSON_GetObjectItemCaseSensitive(settings, k->key) : NULL;
        if (v && rf_setting_check(ctx, k, v, k->key, 0) != RF_OK) return ctx->status = RF_ERR_INVALID;
    }
    const cJSON *v = settings ? cJSON_GetObjectItemCaseSensitive(settings, "validation") : NULL;
    /* absent: the dataset's default (rf_data_open resolves o->validation < 0) */
    o->validation = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    o->split_seed = (uint64_t)rf_settings_num(settings, rf_data_settings, "split_seed");
    o->pad_to = (int)rf_settings_num(settings, rf_data_settings, "pad_to");
    return rf_data_norm_parse(ctx, rf_settings_str(settings, rf_data_settings, "normalize"), o);
}

rf_status rf_task_open_data(rf_ctx *ctx, const cJSON *settings, rf_data_splits *sp) {
    memset(sp, 0, sizeof *sp);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(settings, "data");
    if (!cJSON_IsString(d)) return rf_error(ctx, RF_ERR_INVALID, "settings have no \"data\" string");
    rf_data_opts o;
    RF_TRY(rf_task_data_opts(ctx, settings, &o));
    rf_status s = rf_data_open(ctx, d->valuestring, &o, sp);
    if (s != RF_OK) rf_error_prefix(ctx, "data \"%s\"", d->valuestring);
    return s;
}

rf_status rf_task_run(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    if (!io || !cJSON_IsObject(io->settings) || !metrics)
        return rf_error(ctx, RF_ERR_INVALID, "task: settings must be a JSON object");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(io->settings, "kind");
    if (!cJSON_IsString(k)) return rf_error(ctx, RF_ERR_INVALID, "task: settings have no \"kind\" string");
    const rf_kind *kind = rf_kind_get(rf_kind_find(k->valuestring));
    if (!kind) return rf_error(ctx, RF_ERR_UNSUPPORTED, "task: kind \"%s\" is not in this build", k->valuestring);
    if (io->n_parents < kind->min_parents || io->n_parents > kind->max_parents)
        return rf_error(ctx, RF_ERR_INVALID, "task %s: takes %d to %d parents (%s), got %d", kind->name, kind->min_parents,
                        kind->max_parents, kind->parents_doc ? kind->parents_doc : "none", io->n_parents);
    if (!(kind->flags & RF_KIND_DATA) || io->train) return kind->run(ctx, io, metrics);

    /* pad, hold the validation split out, normalise on the training part
     * (docs/data.md); train_limit then keeps the first N training samples,
     * so the validation set does not depend on it */
    rf_data_splits sp;
    rf_status s = rf_task_open_data(ctx, io->settings, &sp);
    if (s != RF_OK) { rf_error_prefix(ctx, "task %s", kind->name); return s; }
    rf_task_io with = *io;
    int64_t limit = (int64_t)rf_settings_num(io->settings, rf_task_common_settings, "train_limit");
    rf_dataset head = limit > 0 && limit < sp.train.n ? rf_dataset_head(&sp.train, limit) : sp.train;
    with.train = &head;
    with.val = sp.val.n > 0 ? &sp.val : NULL;
    with.test = sp.test;
    s = kind->run(ctx, &with, metrics);
    rf_data_splits_free(&sp);
    return s;
}

int rf_task_log_every(const rf_task_io *io, int dflt) {
    if (!io->log || io->log_every < 0) return 0;
    return io->log_every > 0 ? io->log_every : dflt;
}

rf_status rf_task_open_model(rf_ctx *ctx, const char *kind, const char *parent_ckpt, const cJSON *settings,
                             const rf_dataset *ds, uint64_t seed, rf_model **out) {
    *out = NULL;
    if (parent_ckpt) {
        rf_status s = rf_model_load(ctx, parent_ckpt, out);
        if (s != RF_OK) rf_error_prefix(ctx, "%s: parent %s", kind, parent_ckpt);
        return s;
    }
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(settings, "model");
    if (!cJSON_IsString(mv))
        return rf_error(ctx, RF_ERR_INVALID, "%s: settings have no \"model\" string and the task has no parent", kind);
    RF_TRY(rf_model_create_for_data(ctx, mv->valuestring, ds, out));
    rf_status s = rf_model_init(ctx, *out, seed);
    if (s != RF_OK) { rf_model_free(*out); *out = NULL; }
    return s;
}

rf_status rf_task_ckpt_extra(rf_ctx *ctx, const char *kind, const rf_task_io *io, int teachers, int64_t steps,
                             char **out) {
    *out = NULL;
    cJSON *e = cJSON_CreateObject();
    int ok = e && cJSON_AddStringToObject(e, "kind", kind) &&
             cJSON_AddItemToObject(e, "settings", cJSON_Duplicate(io->settings, 1)) &&
             (teachers < 0 || cJSON_AddNumberToObject(e, "teachers", teachers)) &&
             (steps < 0 || cJSON_AddNumberToObject(e, "steps", (double)steps)) && (*out = cJSON_PrintUnformatted(e));
    cJSON_Delete(e);
    return ok ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "%s: cannot build checkpoint metadata", kind);
}
