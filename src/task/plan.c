/* The task DAG under construction (raffle/plan.h): tasks, parents, settings
 * strings and an open-addressing index on ids; plus the helpers the kinds'
 * expansions share (common settings, overlays, the cost model). */
#include "raffle/plan.h"
#include "raffle/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rf_plan {
    rf_ctx      *ctx;
    rf_job_task *t;  int n, cap;
    int32_t     *par; size_t np, capp;
    char        *str; size_t ns, caps;
    int32_t     *ht;  size_t htcap;    /* open addressing on id; -1 empty */
    int          n_dedup;
    uint32_t     exp;
    rf_inputs   *inputs;               /* borrowed; NULL: ids without file contents */
};

/* The number of tasks a job may expand to is ctx's task cap
 * (rf_ctx_task_cap: RAFFLE_MAX_TASKS, default 100,000): expansion costs time
 * and memory linear in the tasks (about 75 µs and 0.5 KB each), so a small
 * file asking for millions is refused up front, not ground through. */
#define TASK_CAP_MSG "job expands to more than %zu tasks (the task cap; RAFFLE_MAX_TASKS raises it, up to %d)"

rf_plan *rf_plan_new(rf_ctx *ctx) {
    rf_plan *p = rf_calloc(1, sizeof *p);
    if (p) p->ctx = ctx;
    return p;
}

void rf_plan_free(rf_plan *p) {
    if (!p) return;
    rf_free(p->t); rf_free(p->par); rf_free(p->str); rf_free(p->ht);
    rf_free(p);
}

rf_ctx *rf_plan_ctx(rf_plan *p) { return p->ctx; }
void rf_plan_set_experiment(rf_plan *p, uint32_t exp) { p->exp = exp; }
void rf_plan_set_inputs(rf_plan *p, rf_inputs *in) { p->inputs = in; }

int rf_plan_id_tag(int ckpt_version, int engine_version, char *buf, size_t n) {
    /* engine version 1 is implicit: the tag ids were published with */
    if (engine_version <= 1) return snprintf(buf, n, "rckpt-v%d\n", ckpt_version);
    return snprintf(buf, n, "rckpt-v%d\nengine-v%d\n", ckpt_version, engine_version);
}

void rf_plan_take(rf_plan *p, rf_job_task **tasks, int *n_tasks, int32_t **parents, char **strings,
                  size_t *strings_len, int32_t **id_index, size_t *id_index_cap, int *n_dedup) {
    *tasks = p->t; *n_tasks = p->n;
    *parents = p->par; *strings = p->str; *strings_len = p->ns;
    *id_index = p->ht; *id_index_cap = p->htcap; *n_dedup = p->n_dedup;
    p->t = NULL; p->par = NULL; p->str = NULL; p->ht = NULL;
    p->n = p->cap = 0; p->np = p->capp = p->ns = p->caps = p->htcap = 0; p->n_dedup = 0;
}

static size_t slot_of(uint64_t id, size_t cap) { return (size_t)(id * 0x9E3779B97F4A7C15ull) & (cap - 1); }

static int ht_grow(rf_plan *b) {
    size_t cap = b->htcap ? b->htcap * 2 : 1024;
    int32_t *ht = rf_malloc(cap * sizeof *ht);
    if (!ht) return -1;
    for (size_t i = 0; i < cap; i++) ht[i] = -1;
    for (int i = 0; i < b->n; i++) {
        size_t h = slot_of(b->t[i].id, cap);
        while (ht[h] >= 0) h = (h + 1) & (cap - 1);
        ht[h] = i;
    }
    rf_free(b->ht);
    b->ht = ht;
    b->htcap = cap;
    return 0;
}

int rf_plan_index_find(const int32_t *ht, size_t cap, const rf_job_task *t, uint64_t id) {
    if (!cap) return -1;
    size_t h = slot_of(id, cap);
    while (ht[h] >= 0) {
        if (t[ht[h]].id == id) return ht[h];
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

int rf_plan_put(cJSON *o, const char *key, cJSON *v) {
    /* cJSON_AddItemToObject can fail (copying the key); then the item is
     * still ours to free. A missing key would change a task's id, so callers
     * turn 0 into an out-of-memory error, never a silently missing key. */
    if (v && cJSON_AddItemToObject(o, key, v)) return 1;
    cJSON_Delete(v);
    return 0;
}

int rf_plan_nomem(rf_plan *p, cJSON *s) {
    cJSON_Delete(s);
    rf_error(p->ctx, RF_ERR_NOMEM, "out of memory");
    return -1;
}

double rf_plan_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int32_t rf_plan_add(rf_plan *b, int kind, cJSON *settings, const int32_t *parents, int np, double cost) {
    const rf_kind *k = rf_kind_get(kind);
    cJSON *c = settings && k ? rf_kind_settings(k, settings) : NULL;
    cJSON_Delete(settings);
    char *s = c ? cJSON_PrintUnformatted(c) : NULL;
    if (!s) { cJSON_Delete(c); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory building task settings"); return -1; }
    size_t len = strlen(s);
    /* id = FNV-1a over the version tag, the settings, the contents of the
     * files they name and each parent's id */
    char tag[64];
    int tl = rf_plan_id_tag(RF_CKPT_VERSION, RF_ENGINE_FORMAT_VERSION, tag, sizeof tag);
    uint64_t h = rf_hash64(tag, (size_t)tl, 0xcbf29ce484222325ull);
    h = rf_hash64(s, len, h);
    rf_status is = b->inputs ? rf_inputs_hash(b->ctx, b->inputs, k, c, &h) : RF_OK;
    cJSON_Delete(c);
    if (is) { free(s); return -1; }
    for (int i = 0; i < np; i++) {
        static const char hx[] = "0123456789abcdef";
        char buf[18];
        buf[0] = '\n';
        for (int d = 0; d < 16; d++) buf[1 + d] = hx[(b->t[parents[i]].id >> (60 - 4 * d)) & 15];
        h = rf_hash64(buf, 17, h);
    }
    int found = rf_plan_index_find(b->ht, b->htcap, b->t, h);
    if (found >= 0) { free(s); b->n_dedup++; return found; }
    if ((size_t)b->n >= rf_ctx_task_cap(b->ctx)) {
        free(s);
        rf_error(b->ctx, RF_ERR_JOB, TASK_CAP_MSG, rf_ctx_task_cap(b->ctx), RF_TASK_CAP_MAX);
        return -1;
    }
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        rf_job_task *t = rf_realloc(b->t, (size_t)cap * sizeof *t);
        if (!t) { free(s); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); return -1; }
        b->t = t; b->cap = cap;
    }
    if (b->np + (size_t)np > b->capp) {
        size_t cap = (b->capp + (size_t)np) * 2 + 64;
        int32_t *p = rf_realloc(b->par, cap * sizeof *p);
        if (!p) { free(s); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); return -1; }
        b->par = p; b->capp = cap;
    }
    if (b->ns + len + 1 > b->caps) {
        size_t cap = (b->caps + len + 1) * 2;
        char *p = rf_realloc(b->str, cap);
        if (!p) { free(s); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); return -1; }
        b->str = p; b->caps = cap;
    }
    if ((size_t)(b->n + 1) * 2 > b->htcap && ht_grow(b) != 0) { free(s); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); return -1; }
    rf_job_task *t = &b->t[b->n];
    memset(t, 0, sizeof *t);
    t->id = h;
    t->kind = (uint8_t)kind;
    t->exp = b->exp;
    t->parent_off = (uint32_t)b->np;
    t->n_parents = (uint16_t)np;
    t->settings_off = (uint32_t)b->ns;
    t->cost = (float)cost;
    if (np) memcpy(b->par + b->np, parents, (size_t)np * sizeof *parents);
    b->np += (size_t)np;
    memcpy(b->str + b->ns, s, len + 1);
    b->ns += len + 1;
    free(s);
    size_t slot = slot_of(h, b->htcap);
    while (b->ht[slot] >= 0) slot = (slot + 1) & (b->htcap - 1);
    b->ht[slot] = b->n;
    return b->n++;
}

/* ---- helpers of the expansions ---------------------------------------------- */

cJSON *rf_plan_settings(const rf_point *pt, const char *data, const cJSON *model, const cJSON *train) {
    cJSON *s = cJSON_CreateObject();
    if (!s) return NULL;
    int ok = cJSON_AddStringToObject(s, "data", data) && rf_plan_put(s, "model", cJSON_Duplicate(model, 1)) &&
             cJSON_AddNumberToObject(s, "seed", pt->seed);
    /* engine options change floats: they are part of the work's identity */
    if (ok && pt->engine && pt->engine->child) ok = rf_plan_put(s, "engine", rf_task_engine_settings(pt->engine));
    for (const cJSON *c = pt->prep ? pt->prep->child : NULL; ok && c; c = c->next)
        ok = rf_plan_put(s, c->string, cJSON_Duplicate(c, 1));
    for (const cJSON *c = train ? train->child : NULL; ok && c; c = c->next)
        ok = rf_plan_put(s, c->string, cJSON_Duplicate(c, 1));
    if (!ok) { cJSON_Delete(s); return NULL; }
    return s;
}

cJSON *rf_plan_overlay(const cJSON *base, const cJSON *over) {
    cJSON *r = cJSON_Duplicate(base, 1);
    if (!r) return NULL;
    for (const cJSON *c = over ? over->child : NULL; c; c = c->next) {
        cJSON *d = cJSON_Duplicate(c, 1);
        int ok = cJSON_GetObjectItemCaseSensitive(r, c->string)
                     ? (d && cJSON_ReplaceItemInObjectCaseSensitive(r, c->string, d)) || (cJSON_Delete(d), 0)
                     : rf_plan_put(r, c->string, d);
        if (!ok) { cJSON_Delete(r); return NULL; }
    }
    return r;
}

int rf_plan_copy_keys(cJSON *dst, const cJSON *src, const char *const *keys) {
    for (; *keys; keys++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, *keys);
        if (v && !rf_plan_put(dst, *keys, cJSON_Duplicate(v, 1))) return 0;
    }
    return 1;
}

int32_t rf_plan_dense(rf_plan *p, const rf_point *pt, const char *data, const cJSON *model, const cJSON *train) {
    return rf_plan_add(p, RF_JOB_TRAIN, rf_plan_settings(pt, data, model, train), NULL, 0,
                       rf_plan_train_cost(train, data, model));
}

/* ---- cost model ---------------------------------------------------------------- */

static double dataset_size(const char *d) {
    if (strcmp(d, "fashion-mnist") == 0) return 60000;
    if (strcmp(d, "mnist") == 0) return 8000;
    int64_t sn;
    uint64_t seed;
    if (strncmp(d, "synthetic", 9) == 0) return rf_data_synthetic_parse(NULL, d, &sn, &seed) == RF_OK ? (double)sn : 1000;
    return 10000;
}

/* Training samples per CPU second by model name (first match wins), one
 * thread on this machine (AMD Zen 5, shared; Fashion-MNIST 28x28):
 * resnet-20 (440/s) and vgg-11 (146/s) measured with `raffle train
 * --json` (cpu_samples_per_s, issue 20); the other CIFAR presets scaled from
 * them by their multiply-adds (He et al. 2016; the Synaptic-Flow VGGs).
 * Rough: for ETAs and the summary only. */
static const struct { const char *name; double per_s; } model_rates[] = {
    {"300-100", 30000}, {"lenet-5", 8000}, {"vit", 1500},
    {"resnet-20", 440}, {"resnet-32", 260}, {"resnet-56", 145}, {"resnet-18", 32},
    {"vgg-11", 146}, {"vgg-16", 71}, {"vgg-19", 56},
    {"conv", 3000}, {"vgg", 146}, {"resnet", 440},
};

static double per_sample_s(const cJSON *model) {
    const char *m = cJSON_IsString(model) ? model->valuestring : "";
    for (size_t i = 0; i < sizeof model_rates / sizeof model_rates[0]; i++)
        if (strstr(m, model_rates[i].name)) return 1.0 / model_rates[i].per_s;
    return 1.0 / 20000;
}

double rf_plan_train_cost(const cJSON *tr, const char *data, const cJSON *model) {
    double n = dataset_size(data);
    double it = rf_plan_num(tr, "iterations"), samples = it > 0 ? it * rf_plan_num(tr, "batch") : rf_plan_num(tr, "epochs") * n;
    double ev = rf_plan_num(tr, "eval_limit");
    double test = ev > 0 ? ev : n / 6;
    return (samples + test / 3) * per_sample_s(model) + 0.05;
}
