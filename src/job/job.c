/* Job files: schema validation with JSON-path errors, grid expansion, and the
 * task DAG with content-addressed ids (docs/jobs.md is the user's view).
 *
 * Three passes over the cJSON tree:
 *  1. validate: every key against the schema tables below (unknown keys get a
 *     did-you-mean by edit distance), every value's type and range, with the
 *     JSON path of the offending value in the message;
 *  2. grid: per experiment, every scalar field given as a list is an axis;
 *     the experiment is expanded over the cartesian product (odometer order,
 *     first axis slowest) after filling defaults;
 *  3. tasks: each grid point's kind handler emits tasks with parents. A task's
 *     settings are canonicalised (keys sorted recursively) and its id is
 *     FNV-1a-64 over "rckpt-v<version>\n" + settings + "\n<parent id>"...,
 *     the same idea as open_lth naming a run by a hash of its
 *     hyperparameters; equal ids are merged, so shared dense models run once. */
#include "raffle/job.h"
#include "raffle/ckpt.h"
#include "raffle/data.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- schema ------------------------------------------------------------- */

typedef enum { F_NUM, F_INT, F_STR, F_BOOL, F_OBJ, F_MODEL, F_STRLIST, F_OBJLIST, F_DATA } ftype;

typedef struct schema schema;
typedef struct field {
    const char *name;
    ftype       type;
    int         grid;       /* a JSON list here is a grid axis */
    int         required;
    double      lo, hi;     /* numeric range */
    int         lo_open, hi_open;
    const char *const *choices;  /* NULL-terminated enum for F_STR / F_STRLIST */
    const schema *sub;      /* F_OBJ / F_OBJLIST */
    const char *def;        /* default as JSON text; NULL: none (inherited or optional) */
} field;
struct schema { const field *f; };

#define BIG 1e12
static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedules[]  = {"constant", "cosine", "step", "linear", NULL};
static const char *const methods[]    = {"magnitude", "random", "obd", "snip", "grasp", "synflow", NULL};
static const char *const scopes[]     = {"global", "layer", NULL};
static const char *const rewinds[]    = {"weights", "lr", NULL};
static const char *const calibs[]     = {"minmax", "percentile", NULL};
static const char *const controls[]   = {"reinit", "random", NULL};
static const char *const qmodes[]     = {"ptq", "qat", NULL};
static const char *const fmodes[]     = {"error", "crash", "nan", "hang", "oom", NULL};
static const char *const exp_kinds[]  = {"prune", "lottery", "distill", "quantize", "ofa", "train", "noop", "fail", NULL};

static const field train_fields[] = {
    {"epochs",          F_INT, 1, 0, 0, 1e6, 0, 0, NULL, NULL, "1"},
    {"iterations",      F_INT, 1, 0, 0, 1e12, 0, 0, NULL, NULL, "0"},
    {"batch",           F_INT, 1, 0, 1, 65536, 0, 0, NULL, NULL, "60"},
    {"optimizer",       F_STR, 1, 0, 0, 0, 0, 0, optimizers, NULL, "\"adam\""},
    {"lr",              F_NUM, 1, 0, 0, 10, 1, 0, NULL, NULL, "0.0012"},
    {"momentum",        F_NUM, 1, 0, 0, 1, 0, 1, NULL, NULL, "0.9"},
    {"weight_decay",    F_NUM, 1, 0, 0, 1, 0, 1, NULL, NULL, "0"},
    {"schedule",        F_STR, 1, 0, 0, 0, 0, 0, schedules, NULL, "\"constant\""},
    {"warmup",          F_INT, 1, 0, 0, 1e12, 0, 0, NULL, NULL, "0"},
    {"label_smoothing", F_NUM, 1, 0, 0, 1, 0, 1, NULL, NULL, "0"},
    {"clip_norm",       F_NUM, 1, 0, 0, 1e30, 0, 0, NULL, NULL, "0"},
    {"eval_limit",      F_INT, 1, 0, 0, 1e12, 0, 0, NULL, NULL, "0"},
    {"eval_every",      F_INT, 1, 0, 0, 1e12, 0, 0, NULL, NULL, "0"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const schema train_schema = {train_fields};

static const field limit_fields[] = {
    {"memory_mb", F_INT, 0, 0, 16, 1 << 22, 0, 0, NULL, NULL, "4096"},
    {"time_s",    F_NUM, 0, 0, 0, 1e7, 1, 0, NULL, NULL, "3600"},
    {"retries",   F_INT, 0, 0, 0, 10, 0, 0, NULL, NULL, "1"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const schema limit_schema = {limit_fields};

static const field teacher_fields[] = {
    {"model", F_MODEL, 1, 1, 0, 0, 0, 0, NULL, NULL, NULL},
    {"train", F_OBJ,   0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const schema teacher_schema = {teacher_fields};

/* Experiment fields: the common ones, then each kind's. A kind's table lists
 * only its own; lookups try the kind's table and then the common one. */
static const field common_fields[] = {
    {"kind",    F_STR,   0, 1, 0, 0, 0, 0, exp_kinds, NULL, NULL},
    {"name",    F_STR,   0, 0, 0, 0, 0, 0, NULL, NULL, NULL},
    {"seed",    F_INT,   1, 0, 0, 4294967295.0, 0, 0, NULL, NULL, NULL},
    {"dataset", F_DATA,  1, 0, 0, 0, 0, 0, NULL, NULL, NULL},
    {"model",   F_MODEL, 1, 0, 0, 0, 0, 0, NULL, NULL, NULL},
    {"train",   F_OBJ,   0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field prune_fields[] = {
    {"method",           F_STR,  1, 1, 0, 0, 0, 0, methods, NULL, NULL},
    {"sparsity",         F_NUM,  1, 1, 0, 1, 0, 1, NULL, NULL, NULL},
    {"scope",            F_STR,  1, 0, 0, 0, 0, 0, scopes, NULL, "\"global\""},
    {"synflow_rounds",   F_INT,  1, 0, 1, 100000, 0, 0, NULL, NULL, "100"},
    {"obd_batches",      F_INT,  1, 0, 1, 100000, 0, 0, NULL, NULL, "10"},
    {"at_init",          F_BOOL, 1, 0, 0, 0, 0, 0, NULL, NULL, "false"},
    {"finetune",         F_OBJ,  0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field lottery_fields[] = {
    {"rounds",           F_INT,     1, 0, 1, 100, 0, 0, NULL, NULL, "5"},
    {"rate",             F_NUM,     1, 0, 0, 1, 1, 1, NULL, NULL, "0.2"},
    {"output_rate",      F_NUM,     1, 0, 0, 1, 0, 1, NULL, NULL, "0.1"},
    {"rewind",           F_STR,     1, 0, 0, 0, 0, 0, rewinds, NULL, "\"weights\""},
    {"rewind_iteration", F_INT,     1, 0, 0, 1e12, 0, 0, NULL, NULL, "0"},
    {"controls",         F_STRLIST, 0, 0, 0, 0, 0, 0, controls, NULL, "[]"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field distill_fields[] = {
    {"teacher",     F_OBJ,  0, 1, 0, 0, 0, 0, NULL, &teacher_schema, NULL},
    {"temperature", F_NUM,  1, 0, 0, 1000, 1, 0, NULL, NULL, "4"},
    {"alpha",       F_NUM,  1, 0, 0, 1, 0, 0, NULL, NULL, "0.5"},
    {"baseline",    F_BOOL, 0, 0, 0, 0, 0, 0, NULL, NULL, "true"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field quantize_fields[] = {
    {"mode",          F_STR,  1, 0, 0, 0, 0, 0, qmodes, NULL, "\"ptq\""},
    {"calib",         F_STR,  1, 0, 0, 0, 0, 0, calibs, NULL, "\"minmax\""},
    {"calib_batches", F_INT,  1, 0, 1, 1e6, 0, 0, NULL, NULL, "8"},
    {"qat_train",   F_OBJ,  0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field ofa_fields[] = {
    {"sparsity",       F_NUM,     1, 0, 0, 1, 0, 1, NULL, NULL, "0.85"},
    {"teacher_train",  F_OBJ,     0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {"sparse_train",   F_OBJ,     0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {"transfer",       F_STRLIST, 0, 0, 0, 0, 0, 0, NULL, NULL, "[]"},
    {"transfer_train", F_OBJ,     0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {"qat",            F_BOOL,    0, 0, 0, 0, 0, 0, NULL, NULL, "true"},
    {"qat_train",      F_OBJ,     0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {"temperature",    F_NUM,     1, 0, 0, 1000, 1, 0, NULL, NULL, "2"},
    {"alpha",          F_NUM,     1, 0, 0, 1, 0, 0, NULL, NULL, "0.5"},
    {"prune_every",    F_NUM,     1, 0, 0, 1, 1, 0, NULL, NULL, "0.01"},
    {"prune_end",      F_NUM,     1, 0, 0, 1, 1, 0, NULL, NULL, "0.5"},
    {"layers",         F_STR,     1, 0, 0, 0, 0, 0, NULL, NULL, NULL},   /* glob list; absent: all prunable */
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field none_fields[] = { {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL} };
static const field noop_fields[] = {
    {"count",    F_INT, 0, 0, 1, 1e6, 0, 0, NULL, NULL, "1"},
    {"chain",    F_INT, 0, 0, 1, 10000, 0, 0, NULL, NULL, "1"},
    {"sleep_ms", F_INT, 1, 0, 0, 3.6e6, 0, 0, NULL, NULL, "0"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const field fail_fields[] = {
    {"mode",     F_STR, 1, 1, 0, 0, 0, 0, fmodes, NULL, NULL},
    {"children", F_INT, 0, 0, 0, 1000, 0, 0, NULL, NULL, "1"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};
static const schema exp_list_schema = {common_fields};

static const field top_fields[] = {
    {"name",        F_STR,     0, 0, 0, 0, 0, 0, NULL, NULL, NULL},
    {"description", F_STR,     0, 0, 0, 0, 0, 0, NULL, NULL, NULL},
    {"dataset",     F_DATA,    0, 1, 0, 0, 0, 0, NULL, NULL, NULL},
    {"model",       F_MODEL,   0, 1, 0, 0, 0, 0, NULL, NULL, NULL},
    {"seed",        F_INT,     0, 0, 0, 4294967295.0, 0, 0, NULL, NULL, "0"},
    {"train",       F_OBJ,     0, 0, 0, 0, 0, 0, NULL, &train_schema, NULL},
    {"limits",      F_OBJ,     0, 0, 0, 0, 0, 0, NULL, &limit_schema, NULL},
    {"experiments", F_OBJLIST, 0, 1, 0, 0, 0, 0, NULL, &exp_list_schema, NULL},
    {NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL}
};

/* ---- builder: tasks, parents, strings, id hash table --------------------- */

typedef struct builder {
    rf_ctx      *ctx;
    rf_job_task *t;  int n, cap;
    int32_t     *par; size_t np, capp;
    char        *str; size_t ns, caps;
    int32_t     *ht;  size_t htcap;    /* open addressing on id; -1 empty */
    int          n_dedup;
    uint32_t     exp;
} builder;

/* The number of tasks a job may expand to is ctx's task cap
 * (rf_ctx_task_cap: RAFFLE_MAX_TASKS, default 100,000): expansion costs time
 * and memory linear in the tasks (about 75 µs and 0.5 KB each), so a small
 * file asking for millions is refused up front, not ground through. */
#define TASK_CAP_MSG "job expands to more than %zu tasks (the task cap; RAFFLE_MAX_TASKS raises it, up to %d)"

static const char *const kind_names[RF_JOB_KIND_COUNT_] = {
    "train", "prune", "lottery", "distill", "quantize", "ofa-sparse", "ofa-transfer", "ofa-qat", "noop", "fail"
};
const char *rf_job_kind_name(int k) { return (k >= 0 && k < RF_JOB_KIND_COUNT_) ? kind_names[k] : "?"; }

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

static int ht_grow(builder *b) {
    size_t cap = b->htcap ? b->htcap * 2 : 1024;
    int32_t *ht = rf_malloc(cap * sizeof *ht);
    if (!ht) return -1;
    for (size_t i = 0; i < cap; i++) ht[i] = -1;
    for (int i = 0; i < b->n; i++) {
        size_t h = (size_t)(b->t[i].id * 0x9E3779B97F4A7C15ull) & (cap - 1);
        while (ht[h] >= 0) h = (h + 1) & (cap - 1);
        ht[h] = i;
    }
    rf_free(b->ht);
    b->ht = ht; b->htcap = cap;
    return 0;
}

static int ht_find(const int32_t *ht, size_t cap, const rf_job_task *t, uint64_t id) {
    if (!cap) return -1;
    size_t h = (size_t)(id * 0x9E3779B97F4A7C15ull) & (cap - 1);
    while (ht[h] >= 0) {
        if (t[ht[h]].id == id) return ht[h];
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

int rf_job_find(const rf_job *j, uint64_t id) {
    return ht_find(j->id_index, j->id_index_cap, j->tasks, id);
}

/* Returns a new object/array with every object's keys sorted (byte order). */
static int key_cmp(const void *a, const void *b) {
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}
/* cJSON_AddItemToObject can fail (copying the key); then the item is still
 * ours to free. Returns 1 if v was added, 0 (v freed) if v is NULL or the
 * add failed: callers turn 0 into an out-of-memory error, never a silently
 * missing key (a missing key would change a task's id). */
static int put(cJSON *o, const char *key, cJSON *v) {
    if (v && cJSON_AddItemToObject(o, key, v)) return 1;
    cJSON_Delete(v);
    return 0;
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

/* Adds a task built from `settings` (consumed) with the given parents;
 * returns its index (an existing one when the same work was already added),
 * or -1 with ctx set. */
static int add_task(builder *b, int kind, cJSON *settings, const int32_t *parents, int np, double cost) {
    cJSON_AddStringToObject(settings, "kind", kind_names[kind]);
    cJSON *c = canonical(settings);
    cJSON_Delete(settings);
    char *s = c ? cJSON_PrintUnformatted(c) : NULL;
    cJSON_Delete(c);
    if (!s) { rf_error(b->ctx, RF_ERR_NOMEM, "out of memory building task settings"); return -1; }
    size_t len = strlen(s);
    /* id = FNV-1a over the version tag, the settings and each parent's id */
    char tag[32];
    int tl = snprintf(tag, sizeof tag, "rckpt-v%d\n", RF_CKPT_VERSION);
    uint64_t h = rf_hash64(tag, (size_t)tl, 0xcbf29ce484222325ull);
    h = rf_hash64(s, len, h);
    for (int i = 0; i < np; i++) {
        char hx[18];
        hx[0] = '\n';
        rf_job_id_hex(b->t[parents[i]].id, hx + 1);
        h = rf_hash64(hx, 17, h);
    }
    int found = ht_find(b->ht, b->htcap, b->t, h);
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
    size_t slot = (size_t)(h * 0x9E3779B97F4A7C15ull) & (b->htcap - 1);
    while (b->ht[slot] >= 0) slot = (slot + 1) & (b->htcap - 1);
    b->ht[slot] = b->n;
    return b->n++;
}

/* ---- validation ----------------------------------------------------------- */

int rf_job_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            /* adjacent transposition (Damerau): "sparstiy" is one edit away */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c) c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* Closest name among up to three tables, or NULL if none is close. */
static const char *suggest(const char *key, const field *a, const field *b, const char *const *words) {
    const char *best = NULL;
    int bd = 99;
    for (int t = 0; t < 2; t++)
        for (const field *f = t ? b : a; f && f->name; f++) {
            int d = rf_job_edit_distance(key, f->name);
            if (d < bd) { bd = d; best = f->name; }
        }
    for (const char *const *w = words; w && *w; w++) {
        int d = rf_job_edit_distance(key, *w);
        if (d < bd) { bd = d; best = *w; }
    }
    int lim = (int)strlen(key) / 3;
    if (lim < 2) lim = 2;
    return bd <= lim ? best : NULL;
}

static const field *find_field(const field *f, const char *key) {
    for (; f && f->name; f++) if (strcmp(f->name, key) == 0) return f;
    return NULL;
}

static rf_status jerr(rf_ctx *ctx, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static rf_status jerr(rf_ctx *ctx, const char *path, const char *fmt, ...) {
    char msg[RF_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rf_error(ctx, RF_ERR_JOB, "%s: %s", path[0] ? path : "(top level)", msg);
}

static const char *type_word(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "a list";
    return "an object";
}

static void choice_list(const char *const *c, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    for (; *c && k + 1 < n; c++) k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", *c);
}

static const char *const dataset_words[] = {"fashion-mnist", "mnist", "synthetic", NULL};

static rf_status check_dataset(rf_ctx *ctx, const char *path, const char *s) {
    size_t n = strlen(s);
    if (strcmp(s, "fashion-mnist") == 0 || strcmp(s, "mnist") == 0) return RF_OK;
    if (strncmp(s, "synthetic", 9) == 0 && (s[9] == '\0' || s[9] == ':')) {
        int64_t sn;
        uint64_t seed;
        if (rf_data_synthetic_parse(ctx, s, &sn, &seed) != RF_OK) return jerr(ctx, path, "\"%s\": %s", s, rf_ctx_error(ctx));
        return RF_OK;
    }
    if ((n > 5 && strcmp(s + n - 5, ".json") == 0) || (n > 4 && strstr(s, ".npy"))) return RF_OK;
    const char *sug = suggest(s, NULL, NULL, dataset_words);
    if (sug) return jerr(ctx, path, "unknown dataset \"%s\" (did you mean \"%s\"?)", s, sug);
    return jerr(ctx, path, "unknown dataset \"%s\" (fashion-mnist, mnist, synthetic[:N[:SEED]], four .npy files, or a .json descriptor)", s);
}

static rf_status check_obj(rf_ctx *ctx, const cJSON *o, const field *a, const field *b, const char *path, int in_exp);

/* Validates one scalar value of field f. */
static rf_status check_scalar(rf_ctx *ctx, const field *f, const cJSON *v, const char *path, int in_exp) {
    char buf[256];
    switch (f->type) {
    case F_NUM: case F_INT: {
        if (!cJSON_IsNumber(v)) return jerr(ctx, path, "expected a number, got %s", type_word(v));
        double x = v->valuedouble;
        if (!isfinite(x)) return jerr(ctx, path, "not a finite number");
        if (f->type == F_INT && x != floor(x)) return jerr(ctx, path, "%g is not an integer", x);
        if (x < f->lo || x > f->hi || (f->lo_open && x == f->lo) || (f->hi_open && x == f->hi)) {
            char hi[32];
            if (f->hi >= BIG) snprintf(hi, sizeof hi, "inf"); else snprintf(hi, sizeof hi, "%g", f->hi);
            return jerr(ctx, path, "%g is outside %c%g, %s%c", x, f->lo_open ? '(' : '[', f->lo, hi, f->hi_open ? ')' : ']');
        }
        return RF_OK;
    }
    case F_BOOL:
        if (!cJSON_IsBool(v)) return jerr(ctx, path, "expected true or false, got %s", type_word(v));
        return RF_OK;
    case F_STR: case F_STRLIST: case F_DATA:
        if (!cJSON_IsString(v)) return jerr(ctx, path, "expected a string, got %s", type_word(v));
        if (f->type == F_DATA) return check_dataset(ctx, path, v->valuestring);
        if (f->choices) {
            for (const char *const *c = f->choices; *c; c++) if (strcmp(*c, v->valuestring) == 0) return RF_OK;
            const char *sug = suggest(v->valuestring, NULL, NULL, f->choices);
            choice_list(f->choices, buf, sizeof buf);
            if (sug) return jerr(ctx, path, "\"%s\" is not one of %s (did you mean \"%s\"?)", v->valuestring, buf, sug);
            return jerr(ctx, path, "\"%s\" is not one of %s", v->valuestring, buf);
        }
        if (!v->valuestring[0]) return jerr(ctx, path, "empty string");
        return RF_OK;
    case F_MODEL:
        if (!cJSON_IsString(v) || !v->valuestring[0]) return jerr(ctx, path, "expected a preset name or a model spec file, got %s", type_word(v));
        return RF_OK;
    case F_OBJ:
        if (!cJSON_IsObject(v)) return jerr(ctx, path, "expected an object, got %s", type_word(v));
        return check_obj(ctx, v, f->sub->f, NULL, path, in_exp);
    case F_OBJLIST:
        break;
    }
    return RF_OK;
}

static rf_status check_value(rf_ctx *ctx, const field *f, const cJSON *v, const char *path, int in_exp) {
    char p[512];
    if (f->type == F_STRLIST) {
        if (!cJSON_IsArray(v)) return jerr(ctx, path, "expected a list of strings, got %s", type_word(v));
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            snprintf(p, sizeof p, "%s[%d]", path, i);
            if (f->choices) RF_TRY(check_scalar(ctx, f, e, p, in_exp));
            else {
                if (!cJSON_IsString(e)) return jerr(ctx, p, "expected a string, got %s", type_word(e));
                RF_TRY(check_dataset(ctx, p, e->valuestring));
            }
        }
        return RF_OK;
    }
    if (cJSON_IsArray(v) && f->type != F_OBJLIST) {
        if (!(f->grid && in_exp))
            return jerr(ctx, path, "a list is not allowed here (grids are allowed inside experiments)");
        if (!v->child) return jerr(ctx, path, "empty list: a grid axis needs at least one value");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            snprintf(p, sizeof p, "%s[%d]", path, i);
            if (cJSON_IsArray(e)) return jerr(ctx, p, "nested lists are not allowed");
            RF_TRY(check_scalar(ctx, f, e, p, in_exp));
        }
        return RF_OK;
    }
    return check_scalar(ctx, f, v, path, in_exp);
}

static rf_status check_obj(rf_ctx *ctx, const cJSON *o, const field *a, const field *b, const char *path, int in_exp) {
    char p[512];
    for (const cJSON *c = o->child; c; c = c->next) {
        snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", c->string);
        const field *f = find_field(a, c->string);
        if (!f) f = find_field(b, c->string);
        if (!f) {
            const char *s = suggest(c->string, a, b, NULL);
            if (s) return jerr(ctx, p, "unknown key (did you mean \"%s\"?)", s);
            return jerr(ctx, p, "unknown key");
        }
        for (const cJSON *d = o->child; d != c; d = d->next)
            if (strcmp(d->string, c->string) == 0) return jerr(ctx, p, "duplicate key");
        RF_TRY(check_value(ctx, f, c, p, in_exp));
    }
    for (const field *t = a; t && t->name; t++)
        if (t->required && !cJSON_GetObjectItemCaseSensitive(o, t->name)) {
            snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", t->name);
            return jerr(ctx, p, "required key missing");
        }
    for (const field *t = b; t && t->name; t++)
        if (t->required && !cJSON_GetObjectItemCaseSensitive(o, t->name)) {
            snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", t->name);
            return jerr(ctx, p, "required key missing");
        }
    return RF_OK;
}

/* ---- experiment kinds ----------------------------------------------------- */

/* A grid point of one experiment with everything resolved. */
typedef struct point {
    const cJSON *x;       /* the concrete experiment object (defaults filled) */
    const cJSON *train;   /* resolved training settings of this experiment */
    const char  *data;
    const cJSON *model;
    double       seed;
} point;

typedef int (*expand_fn)(builder *b, const point *p);

/* Rough cost model for the DAG summary and the ETA: samples seen times a
 * per-sample time measured for PyTorch on this machine (REFERENCES.md). */
static double dataset_size(const char *d) {
    if (strcmp(d, "fashion-mnist") == 0) return 60000;
    if (strcmp(d, "mnist") == 0) return 8000;
    int64_t sn;
    uint64_t seed;
    if (strncmp(d, "synthetic", 9) == 0) return rf_data_synthetic_parse(NULL, d, &sn, &seed) == RF_OK ? (double)sn : 1000;
    return 10000;
}
static double per_sample_s(const cJSON *model) {
    const char *m = cJSON_IsString(model) ? model->valuestring : "";
    if (strstr(m, "300-100")) return 1.0 / 30000;
    if (strstr(m, "lenet-5")) return 1.0 / 8000;
    if (strstr(m, "vit")) return 1.0 / 1500;
    if (strstr(m, "conv") || strstr(m, "vgg") || strstr(m, "resnet")) return 1.0 / 3000;
    return 1.0 / 20000;
}
static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}
static double train_cost(const cJSON *tr, const char *data, const cJSON *model) {
    double n = dataset_size(data);
    double it = num(tr, "iterations"), samples = it > 0 ? it * num(tr, "batch") : num(tr, "epochs") * n;
    double ev = num(tr, "eval_limit");
    double test = ev > 0 ? ev : n / 6;
    return (samples + test / 3) * per_sample_s(model) + 0.05;
}

/* Common settings of every model-producing task: data, model, seed and the
 * task's own training keys at the top level, as the task layer's training
 * settings parser reads them (docs/training.md). */
static cJSON *base_settings(const point *p, const char *data, const cJSON *model, const cJSON *train) {
    cJSON *s = cJSON_CreateObject();
    if (!s) return NULL;
    int ok = cJSON_AddStringToObject(s, "data", data) && put(s, "model", cJSON_Duplicate(model, 1)) &&
             cJSON_AddNumberToObject(s, "seed", p->seed);
    for (const cJSON *c = train ? train->child : NULL; ok && c; c = c->next)
        ok = put(s, c->string, cJSON_Duplicate(c, 1));
    if (!ok) { cJSON_Delete(s); return NULL; }
    return s;
}

/* base overlaid with the keys of over (over may be NULL). Returns new. */
static cJSON *overlay(const cJSON *base, const cJSON *over) {
    cJSON *r = cJSON_Duplicate(base, 1);
    if (!r) return NULL;
    for (const cJSON *c = over ? over->child : NULL; c; c = c->next) {
        cJSON *d = cJSON_Duplicate(c, 1);
        int ok = cJSON_GetObjectItemCaseSensitive(r, c->string)
                     ? (d && cJSON_ReplaceItemInObjectCaseSensitive(r, c->string, d)) || (cJSON_Delete(d), 0)
                     : put(r, c->string, d);
        if (!ok) { cJSON_Delete(r); return NULL; }
    }
    return r;
}

/* Copies the listed keys of src that exist into dst. Returns 0 on out of
 * memory (dst then lacks keys: the caller must not use it). */
static int copy_keys(cJSON *dst, const cJSON *src, const char *const *keys) {
    for (; *keys; keys++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, *keys);
        if (v && !put(dst, *keys, cJSON_Duplicate(v, 1))) return 0;
    }
    return 1;
}

#define NOMEM_TASK(b, s) (cJSON_Delete(s), rf_error((b)->ctx, RF_ERR_NOMEM, "out of memory"), -1)

static int dense_task(builder *b, const point *p, const char *data, const cJSON *model, const cJSON *train) {
    return add_task(b, RF_JOB_TRAIN, base_settings(p, data, model, train), NULL, 0, train_cost(train, data, p->model));
}

static int expand_train(builder *b, const point *p) {
    return dense_task(b, p, p->data, p->model, p->train) < 0 ? -1 : 0;
}

static int expand_prune(builder *b, const point *p) {
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(p->x, "at_init");
    int32_t par[1];
    int np = 0;
    if (!cJSON_IsTrue(at)) {
        if ((par[0] = dense_task(b, p, p->data, p->model, p->train)) < 0) return -1;
        np = 1;
    }
    /* fine-tuning: the experiment's training keys overlaid with "finetune";
     * its length goes to finetune_epochs / finetune_iterations, the other
     * keys are the fine-tuning optimizer's (docs/pruning.md) */
    cJSON *ft = overlay(p->train, cJSON_GetObjectItemCaseSensitive(p->x, "finetune"));
    if (!ft) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
    double cost = train_cost(ft, p->data, p->model);
    cJSON *len_e = cJSON_DetachItemFromObjectCaseSensitive(ft, "epochs");
    cJSON *len_i = cJSON_DetachItemFromObjectCaseSensitive(ft, "iterations");
    cJSON *s = base_settings(p, p->data, p->model, ft);
    cJSON_Delete(ft);
    if (!s) { cJSON_Delete(len_e); cJSON_Delete(len_i); return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1; }
    int ok_e = !len_e || put(s, "finetune_epochs", len_e);       /* both run: put frees what it cannot add */
    int ok_i = !len_i || put(s, "finetune_iterations", len_i);
    int ok = ok_e && ok_i;
    static const char *const keys[] = {"method", "sparsity", "scope", NULL};
    ok = ok && copy_keys(s, p->x, keys);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(p->x, "method");
    /* method-specific keys only where they matter, so they do not split ids */
    if (ok && strcmp(m->valuestring, "synflow") == 0) ok = copy_keys(s, p->x, (const char *const[]){"synflow_rounds", NULL});
    if (ok && (strcmp(m->valuestring, "obd") == 0 || strcmp(m->valuestring, "grasp") == 0))
        ok = copy_keys(s, p->x, (const char *const[]){"obd_batches", NULL});
    if (!ok) return NOMEM_TASK(b, s);
    return add_task(b, RF_JOB_PRUNE, s, par, np, cost) < 0 ? -1 : 0;
}

/* One lottery round's settings (docs/pruning.md): round 0 is the dense run
 * (it saves the rewind point for "step:K"); round r >= 1 prunes
 * prune_fraction of its parent's remaining weights and rewinds. */
static cJSON *lottery_settings(const point *p, int round, const char *control) {
    cJSON *s = base_settings(p, p->data, p->model, p->train);
    if (!s) return NULL;
    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(p->x, "rewind");
    double k = num(p->x, "rewind_iteration");
    char rewind[48];
    if (strcmp(rw->valuestring, "lr") == 0) snprintf(rewind, sizeof rewind, "lr");
    else if (k > 0) snprintf(rewind, sizeof rewind, "step:%.0f", k);
    else snprintf(rewind, sizeof rewind, "init");
    cJSON_AddStringToObject(s, "rewind", rewind);
    cJSON_AddNumberToObject(s, "prune_fraction", num(p->x, "rate"));
    cJSON_AddNumberToObject(s, "output_fraction", num(p->x, "output_rate"));
    cJSON_AddNumberToObject(s, "round", round);
    cJSON_AddStringToObject(s, "control", control);
    return s;
}

static int expand_lottery(builder *b, const point *p) {
    int rounds = (int)num(p->x, "rounds");
    const cJSON *ctl = cJSON_GetObjectItemCaseSensitive(p->x, "controls");
    double cost = train_cost(p->train, p->data, p->model);
    cJSON *s0 = lottery_settings(p, 0, "none");
    if (!s0) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
    int32_t prev = add_task(b, RF_JOB_LOTTERY, s0, NULL, 0, cost);
    if (prev < 0) return -1;
    for (int r = 1; r <= rounds; r++) {
        cJSON *s = lottery_settings(p, r, "none");
        if (!s) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
        int32_t cur = add_task(b, RF_JOB_LOTTERY, s, &prev, 1, cost);
        if (cur < 0) return -1;
        /* a control takes round r-1's model (as round r does) and replaces
         * round r's rewinding by a re-initialisation or a random mask */
        for (const cJSON *c = ctl ? ctl->child : NULL; c; c = c->next) {
            cJSON *cs = lottery_settings(p, r, c->valuestring);
            if (!cs) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
            if (add_task(b, RF_JOB_LOTTERY, cs, &prev, 1, cost) < 0) return -1;
        }
        prev = cur;
    }
    return 0;
}

static int expand_distill(builder *b, const point *p) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p->x, "teacher");
    cJSON *ttrain = overlay(p->train, cJSON_GetObjectItemCaseSensitive(t, "train"));
    if (!ttrain) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
    const cJSON *tmodel = cJSON_GetObjectItemCaseSensitive(t, "model");
    int32_t teacher = add_task(b, RF_JOB_TRAIN, base_settings(p, p->data, tmodel, ttrain), NULL, 0,
                               train_cost(ttrain, p->data, tmodel));
    cJSON_Delete(ttrain);
    if (teacher < 0) return -1;
    cJSON *s = base_settings(p, p->data, p->model, p->train);
    if (!s) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
    static const char *const keys[] = {"temperature", "alpha", NULL};
    if (!copy_keys(s, p->x, keys)) return NOMEM_TASK(b, s);
    /* distillation runs the teacher forward on every batch as well */
    double cost = train_cost(p->train, p->data, p->model) * 1.5;
    if (add_task(b, RF_JOB_DISTILL, s, &teacher, 1, cost) < 0) return -1;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p->x, "baseline")) && expand_train(b, p) != 0) return -1;
    return 0;
}

static int expand_quantize(builder *b, const point *p) {
    int32_t dense = dense_task(b, p, p->data, p->model, p->train);
    if (dense < 0) return -1;
    cJSON *s = base_settings(p, p->data, p->model, NULL);
    if (!s) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
    static const char *const keys[] = {"mode", "calib", "calib_batches", NULL};
    if (!copy_keys(s, p->x, keys)) return NOMEM_TASK(b, s);
    double cost = 0.1;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(p->x, "mode");
    if (cJSON_IsString(mode) && strcmp(mode->valuestring, "qat") == 0) {
        cJSON *q = overlay(p->train, cJSON_GetObjectItemCaseSensitive(p->x, "qat_train"));
        if (!q) { cJSON_Delete(s); return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1; }
        cost = train_cost(q, p->data, p->model) * 1.3;
        int ok = 1;
        for (const cJSON *c = q->child; ok && c; c = c->next) ok = put(s, c->string, cJSON_Duplicate(c, 1));
        cJSON_Delete(q);
        if (!ok) return NOMEM_TASK(b, s);
    }
    return add_task(b, RF_JOB_QUANTIZE, s, &dense, 1, cost) < 0 ? -1 : 0;
}

/* Prune Once For All (Zafrir et al. 2021): teacher -> sparse pre-training with
 * KD -> per downstream dataset: a dense teacher fine-tuned there, then the
 * pattern-locked transfer distilled from it -> QAT with the pattern locked. */
static int expand_ofa(builder *b, const point *p) {
    cJSON *tt = overlay(p->train, cJSON_GetObjectItemCaseSensitive(p->x, "teacher_train"));
    cJSON *st = overlay(p->train, cJSON_GetObjectItemCaseSensitive(p->x, "sparse_train"));
    cJSON *xt = overlay(p->train, cJSON_GetObjectItemCaseSensitive(p->x, "transfer_train"));
    cJSON *qt = overlay(p->train, cJSON_GetObjectItemCaseSensitive(p->x, "qat_train"));
    int rc = -1;
    if (!tt || !st || !xt || !qt) { rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
    static const char *const kd[] = {"temperature", "alpha", NULL};
    static const char *const sk[] = {"sparsity", "temperature", "alpha", "prune_every", "prune_end", "layers", NULL};
    int32_t teacher = dense_task(b, p, p->data, p->model, tt);
    if (teacher < 0) goto done;
    cJSON *s = base_settings(p, p->data, p->model, st);
    if (!s || !copy_keys(s, p->x, sk)) { cJSON_Delete(s); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
    int32_t sparse = add_task(b, RF_JOB_OFA_SPARSE, s, &teacher, 1, train_cost(st, p->data, p->model) * 1.5);
    if (sparse < 0) goto done;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(p->x, "transfer");
    int qat = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p->x, "qat"));
    int n = cJSON_GetArraySize(tr);
    for (int i = 0; i < (n ? n : 1); i++) {
        const char *d = n ? cJSON_GetArrayItem(tr, i)->valuestring : p->data;
        cJSON *ts = base_settings(p, d, p->model, xt);
        if (!ts) goto done;
        cJSON_AddStringToObject(ts, "init", "parent");
        int32_t tteach = add_task(b, RF_JOB_TRAIN, ts, &teacher, 1, train_cost(xt, d, p->model));
        if (tteach < 0) goto done;
        cJSON *xs = base_settings(p, d, p->model, xt);
        if (!xs || !copy_keys(xs, p->x, kd)) { cJSON_Delete(xs); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
        int32_t pp[2] = {sparse, tteach};
        int32_t xfer = add_task(b, RF_JOB_OFA_TRANSFER, xs, pp, 2, train_cost(xt, d, p->model) * 1.5);
        if (xfer < 0) goto done;
        if (qat) {
            cJSON *qs = base_settings(p, d, p->model, qt);
            if (!qs || !copy_keys(qs, p->x, kd)) { cJSON_Delete(qs); rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
            int32_t qp[2] = {xfer, tteach};
            if (add_task(b, RF_JOB_OFA_QAT, qs, qp, 2, train_cost(qt, d, p->model) * 1.3) < 0) goto done;
        }
    }
    rc = 0;
done:
    cJSON_Delete(tt); cJSON_Delete(st); cJSON_Delete(xt); cJSON_Delete(qt);
    return rc;
}

/* Diagnostics: chains of no-op tasks (coordinator tests and benchmarks) and
 * an injected failure with no-op dependents (failure handling tests). */
static int expand_noop(builder *b, const point *p) {
    int count = (int)num(p->x, "count"), chain = (int)num(p->x, "chain");
    double ms = num(p->x, "sleep_ms");
    for (int i = 0; i < count; i++) {
        int32_t prev = -1;
        for (int k = 0; k < chain; k++) {
            cJSON *s = cJSON_CreateObject();
            if (!s) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
            cJSON_AddNumberToObject(s, "seed", p->seed);
            cJSON_AddNumberToObject(s, "index", i);
            cJSON_AddNumberToObject(s, "link", k);
            cJSON_AddNumberToObject(s, "sleep_ms", ms);
            int32_t cur = add_task(b, RF_JOB_NOOP, s, &prev, prev >= 0, ms / 1000 + 0.01);
            if (cur < 0) return -1;
            prev = cur;
        }
    }
    return 0;
}

static int expand_fail(builder *b, const point *p) {
    cJSON *s = cJSON_CreateObject();
    if (!s) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
    cJSON_AddNumberToObject(s, "seed", p->seed);
    if (!put(s, "mode", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(p->x, "mode"), 1))) return NOMEM_TASK(b, s);
    int32_t f = add_task(b, RF_JOB_FAIL, s, NULL, 0, 0.05);
    if (f < 0) return -1;
    int children = (int)num(p->x, "children");
    for (int i = 0; i < children; i++) {
        cJSON *c = cJSON_CreateObject();
        if (!c) return rf_error(b->ctx, RF_ERR_NOMEM, "out of memory"), -1;
        cJSON_AddNumberToObject(c, "seed", p->seed);
        cJSON_AddNumberToObject(c, "index", i);
        cJSON_AddStringToObject(c, "after", "fail");
        if (add_task(b, RF_JOB_NOOP, c, &f, 1, 0.01) < 0) return -1;
    }
    return 0;
}

static const struct exp_kind {
    const char *name;
    const field *fields;
    expand_fn expand;
} exp_table[] = {
    {"prune",    prune_fields,    expand_prune},
    {"lottery",  lottery_fields,  expand_lottery},
    {"distill",  distill_fields,  expand_distill},
    {"quantize", quantize_fields, expand_quantize},
    {"ofa",      ofa_fields,      expand_ofa},
    {"train",    none_fields,     expand_train},
    {"noop",     noop_fields,     expand_noop},
    {"fail",     fail_fields,     expand_fail},
};

static const struct exp_kind *exp_kind_find(const char *name) {
    for (size_t i = 0; i < sizeof exp_table / sizeof exp_table[0]; i++)
        if (strcmp(exp_table[i].name, name) == 0) return &exp_table[i];
    return NULL;
}

/* ---- grid ---------------------------------------------------------------- */

#define MAX_AXES 32
#define MAX_DEPTH 4
typedef struct axis { const char *path[MAX_DEPTH]; int depth; const cJSON *list; int n; } axis;

/* Collects the grid axes of object o (schema a+b) into ax. */
static int collect_axes(const cJSON *o, const field *a, const field *b, const char **prefix, int depth, axis *ax, int *nax) {
    for (const cJSON *c = o->child; c; c = c->next) {
        const field *f = find_field(a, c->string);
        if (!f) f = find_field(b, c->string);
        if (!f || depth >= MAX_DEPTH) continue;
        prefix[depth] = c->string;
        if (f->type == F_OBJ && cJSON_IsObject(c)) {
            if (collect_axes(c, f->sub->f, NULL, prefix, depth + 1, ax, nax) != 0) return -1;
        } else if (f->grid && cJSON_IsArray(c)) {
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

/* Adds the default of every absent field. Returns 0 on out of memory. */
static int fill_defaults(cJSON *o, const field *f) {
    for (; f && f->name; f++)
        if (f->def && !cJSON_GetObjectItemCaseSensitive(o, f->name) && !put(o, f->name, cJSON_Parse(f->def))) return 0;
    return 1;
}

static rf_status expand_experiment(rf_ctx *ctx, builder *b, const cJSON *e, int idx, const cJSON *top,
                                   const cJSON *top_train) {
    const struct exp_kind *k = exp_kind_find(cJSON_GetObjectItemCaseSensitive(e, "kind")->valuestring);
    axis ax[MAX_AXES];
    const char *prefix[MAX_DEPTH] = {0};
    int nax = 0;
    if (collect_axes(e, k->fields, common_fields, prefix, 0, ax, &nax) != 0)
        return rf_error(ctx, RF_ERR_JOB, "experiments[%d]: more than %d grid axes", idx, MAX_AXES);
    int pos[MAX_AXES] = {0};
    double points = 1;
    for (int i = 0; i < nax; i++) points *= ax[i].n;
    if (points > (double)rf_ctx_task_cap(ctx))
        return rf_error(ctx, RF_ERR_JOB, "experiments[%d]: grid of %.0f points: " TASK_CAP_MSG, idx, points,
                        rf_ctx_task_cap(ctx), RF_TASK_CAP_MAX);
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
        if (!ok || !fill_defaults(x, k->fields)) { cJSON_Delete(x); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
        cJSON *tr = overlay(top_train, cJSON_GetObjectItemCaseSensitive(x, "train"));
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(x, "seed");
        const cJSON *ds = cJSON_GetObjectItemCaseSensitive(x, "dataset");
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(x, "model");
        point p = {
            .x = x, .train = tr,
            .data = (ds ? ds : cJSON_GetObjectItemCaseSensitive(top, "dataset"))->valuestring,
            .model = md ? md : cJSON_GetObjectItemCaseSensitive(top, "model"),
            .seed = sd ? sd->valuedouble : num(top, "seed"),
        };
        int rc = tr ? k->expand(b, &p) : (rf_error(ctx, RF_ERR_NOMEM, "out of memory"), -1);
        cJSON_Delete(tr);
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
    builder b = {.ctx = ctx};
    rf_job *j = NULL;
    cJSON *top_train = NULL, *limits = NULL;
    if (!cJSON_IsObject(root)) { s = rf_error(ctx, RF_ERR_JOB, "(top level): expected an object"); goto fail; }
    if ((s = check_obj(ctx, root, top_fields, NULL, "", 0)) != RF_OK) goto fail;
    const cJSON *exps = cJSON_GetObjectItemCaseSensitive(root, "experiments");
    if (!cJSON_IsArray(exps) || !exps->child) { s = rf_error(ctx, RF_ERR_JOB, "experiments: expected a non-empty list of objects"); goto fail; }
    int i = 0;
    for (const cJSON *e = exps->child; e; e = e->next, i++) {
        char p[64];
        snprintf(p, sizeof p, "experiments[%d]", i);
        if (!cJSON_IsObject(e)) { s = jerr(ctx, p, "expected an object, got %s", type_word(e)); goto fail; }
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(e, "kind");
        char kp[80];
        snprintf(kp, sizeof kp, "%s.kind", p);
        if (!kind) { s = jerr(ctx, kp, "required key missing"); goto fail; }
        if ((s = check_scalar(ctx, &common_fields[0], kind, kp, 1)) != RF_OK) goto fail;
        const struct exp_kind *k = exp_kind_find(kind->valuestring);
        if ((s = check_obj(ctx, e, k->fields, common_fields, p, 1)) != RF_OK) goto fail;
    }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "name");
    const char *name = nm ? nm->valuestring : name_hint;
    if (!name || !name_ok(name)) {
        s = rf_error(ctx, RF_ERR_JOB, "name: \"%s\" is not a valid store name (1-128 of A-Z a-z 0-9 . _ -, not starting with '.')",
                     name ? name : "");
        goto fail;
    }
    top_train = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(root, "train"), 1);
    if (!top_train) top_train = cJSON_CreateObject();
    limits = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(root, "limits"), 1);
    if (!limits) limits = cJSON_CreateObject();
    if (!top_train || !limits) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    if (!fill_defaults(top_train, train_fields) || !fill_defaults(limits, limit_fields)) {
        s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        goto fail;
    }

    j = rf_calloc(1, sizeof *j);
    if (!j) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->limits.memory_bytes = (uint64_t)num(limits, "memory_mb") << 20;
    j->limits.time_s = num(limits, "time_s");
    j->limits.retries = (int)num(limits, "retries");
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
        b.exp = (uint32_t)i;
        if ((s = expand_experiment(ctx, &b, e, i, root, top_train)) != RF_OK) goto fail;
    }
    j->tasks = b.t; j->n_tasks = b.n;
    j->parents = b.par; j->strings = b.str; j->strings_len = b.ns;
    j->n_dedup = b.n_dedup;
    j->id_index = b.ht; j->id_index_cap = b.htcap;
    b.t = NULL; b.par = NULL; b.str = NULL; b.ht = NULL;
    cJSON_Delete(root); cJSON_Delete(top_train); cJSON_Delete(limits);
    *out = j;
    return RF_OK;
fail:
    rf_free(b.t); rf_free(b.par); rf_free(b.str); rf_free(b.ht);
    rf_job_free(j);
    cJSON_Delete(root); cJSON_Delete(top_train); cJSON_Delete(limits);
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
