/* Readable task labels: "experiment/method/key=value/.../seed=N".
 *
 * A task's id names it exactly but says nothing to a person; its settings say
 * everything but are thirty keys long. A label keeps what tells it apart
 * from its neighbours: the experiment's name, the kind's method label
 * (rf_kind.label: the pruning saliency, "imp-reinit", "int8-qat"), then the
 * settings that take more than one value among the tasks of the same
 * experiment and kind ("varied keys": a grid axis shows up here whatever
 * the experiment called it), seed last. A varied key whose value follows
 * from the method label ("method", quantize's "mode", lottery's "control")
 * is left out: the label already says it. Tasks whose labels are still
 * equal (a stage that starts from several parents with the same settings)
 * get their first parent's label after " from " (without its experiment
 * when it is the same one), and, as a last resort,
 * "#" and the first 8 hex digits of their id.
 *
 * One function for every place a person reads a task (raffle status, the
 * sweep's log lines, the report's rows and tooltips, raffle find), so the
 * same task reads the same everywhere. Orchestration only: labels are
 * strings computed from the settings (CONTRIBUTING.md rule 9). */
#include "raffle/job.h"
#include "raffle/settings.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAP_MAX = 32 };   /* method labels followed per key; more: not "determined by the method" */

typedef struct lkey {
    char *name;      /* flattened ("engine.conv") */
    char *first;     /* the first value seen, canonical text */
    int   varied;    /* two different values among the tasks that have it */
    int   by_method; /* every method label seen has one value of it */
    int   rank;      /* display order: the kind's own keys, common, training, others; seed last */
    int   nm;
    char *map_method[MAP_MAX], *map_value[MAP_MAX];
} lkey;

typedef struct lgroup {
    lkey *k;
    int   n, cap, hint;
    int  *order;     /* key indices in display order (after the scan) */
} lgroup;

struct rf_job_labels {
    const rf_job *job;
    lgroup  *g;          /* n_experiments * RF_JOB_KIND_COUNT_ groups (exp, kind) */
    int      n_groups;
    int32_t *from;       /* the parent whose label follows " from ", or -1 */
    unsigned char *needed; /* 1: " from " tells equal labels apart (else a stage's lineage only) */
    uint8_t *tie;        /* "#id" suffix needed */
    size_t  *off;        /* label of task i at pool + off[i] */
    char    *pool;
    size_t   pool_len;
};

/* ---- values as text ------------------------------------------------------------ */

/* Canonical text of a scalar or array value, the form two values are
 * compared in (a number as the hex digits of its bits: exact, and no
 * printf on 100,000 tasks' settings). Returns 0 when it does not fit or out
 * of memory. */
static int value_text(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsString(v)) return snprintf(buf, n, "s%s", v->valuestring) < (int)n;
    if (cJSON_IsNumber(v)) {
        if (n < 18) return 0;
        uint64_t u;
        double d = v->valuedouble == 0 ? 0 : v->valuedouble;   /* -0 is 0 */
        memcpy(&u, &d, sizeof u);
        buf[0] = '#';
        for (int k = 0; k < 16; k++) buf[1 + k] = "0123456789abcdef"[(u >> (60 - 4 * k)) & 15];
        buf[17] = '\0';
        return 1;
    }
    if (cJSON_IsBool(v)) return snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : "false") < (int)n;
    if (cJSON_IsNull(v)) return snprintf(buf, n, "null") < (int)n;
    /* arrays: their JSON text, which starts with '[' */
    char *p = cJSON_PrintUnformatted(v);
    if (!p) return 0;
    int ok = snprintf(buf, n, "%s", p) < (int)n;
    free(p);
    return ok;
}

/* The display form: numbers with 6 significant digits (0.9, 0.0012, 1e-05). */
static void value_show(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsNumber(v)) snprintf(buf, n, "%g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, n, "%s", v->valuestring);
    else if (!value_text(v, buf, n)) snprintf(buf, n, "...");
}

typedef void (*leaf_fn)(void *ud, const char *key, const cJSON *v);

/* Calls fn for each non-object value of settings s with its flattened key;
 * "kind" is no setting of a task (its kind is the group). */
static void flatten(const cJSON *s, const char *prefix, leaf_fn fn, void *ud) {
    for (const cJSON *c = s ? s->child : NULL; c; c = c->next) {
        if (!c->string || (!prefix[0] && strcmp(c->string, "kind") == 0)) continue;
        char key[160];
        if (snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", c->string) >= (int)sizeof key) continue;
        if (cJSON_IsObject(c)) flatten(c, key, fn, ud);
        else fn(ud, key, c);
    }
}

const cJSON *rf_job_setting_get(const cJSON *settings, const char *key) {
    const cJSON *o = settings;
    char part[160];
    for (const char *p = key; o && *p;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len >= sizeof part) return NULL;
        memcpy(part, p, len);
        part[len] = '\0';
        o = cJSON_GetObjectItemCaseSensitive(o, part);
        if (!dot) return o;
        p = dot + 1;
    }
    return NULL;
}

/* ---- scanning the groups ----------------------------------------------------------- */

static int rank_in(const rf_setting *tab, const char *key) {
    for (int i = 0; tab && tab[i].key; i++) {
        size_t l = strlen(tab[i].key);
        if (strncmp(tab[i].key, key, l) == 0 && (key[l] == '\0' || key[l] == '.')) return i;
    }
    return -1;
}

static int key_rank(int kind, const char *key) {
    if (strcmp(key, "seed") == 0) return 1 << 20;
    const rf_kind *k = rf_kind_get(kind);
    int r;
    if (k && (r = rank_in(k->keys, key)) >= 0) return r;
    if ((r = rank_in(rf_task_common_settings, key)) >= 0) return 1000 + r;
    if ((r = rank_in(rf_train_settings, key)) >= 0) return 2000 + r;
    return 3000;
}

static const char *method_of(int kind, const cJSON *s, char *buf, size_t n) {
    const rf_kind *k = rf_kind_get(kind);
    if (!k) return "?";
    return k->label ? k->label(s, buf, n) : k->name;
}

typedef struct scan { lgroup *g; int kind; const char *method; int oom; } scan;

static lkey *group_key(scan *sc, const char *key) {
    lgroup *g = sc->g;
    /* canonical settings list their keys in the same order, so the next
     * key is almost always the one after the last hit */
    if (g->hint < g->n && strcmp(g->k[g->hint].name, key) == 0) return &g->k[g->hint++];
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->k[i].name, key) == 0) { g->hint = i + 1; return &g->k[i]; }
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 32;
        lkey *k = rf_realloc(g->k, (size_t)cap * sizeof *k);
        if (!k) return NULL;
        g->k = k;
        g->cap = cap;
    }
    lkey *k = &g->k[g->n];
    memset(k, 0, sizeof *k);
    k->name = rf_strdup(key);
    if (!k->name) return NULL;
    k->by_method = 1;
    k->rank = key_rank(sc->kind, key);
    g->hint = ++g->n;
    return k;
}

static void on_leaf(void *ud, const char *key, const cJSON *v) {
    scan *sc = ud;
    char txt[512];
    if (sc->oom) return;
    if (!value_text(v, txt, sizeof txt)) snprintf(txt, sizeof txt, "p%p", (const void *)v);   /* too long: unique */
    lkey *k = group_key(sc, key);
    if (!k) { sc->oom = 1; return; }
    if (!k->first) {
        if (!(k->first = rf_strdup(txt))) { sc->oom = 1; return; }
    } else if (!k->varied && strcmp(k->first, txt) != 0) k->varied = 1;
    if (!k->by_method) return;
    for (int m = 0; m < k->nm; m++)
        if (strcmp(k->map_method[m], sc->method) == 0) {
            if (strcmp(k->map_value[m], txt) != 0) k->by_method = 0;
            return;
        }
    if (k->nm == MAP_MAX) { k->by_method = 0; return; }
    k->map_method[k->nm] = rf_strdup(sc->method);
    k->map_value[k->nm] = rf_strdup(txt);
    if (!k->map_method[k->nm] || !k->map_value[k->nm]) {
        rf_free(k->map_method[k->nm]);
        rf_free(k->map_value[k->nm]);
        sc->oom = 1;
        return;
    }
    k->nm++;
}

static const lgroup *group_of(const rf_job_labels *l, int i) {
    const rf_job_task *t = &l->job->tasks[i];
    return &l->g[(size_t)t->exp * RF_JOB_KIND_COUNT_ + t->kind];
}

static int shown(const lkey *k) { return k->varied && !k->by_method; }

/* ---- formatting ---------------------------------------------------------------- */

static int omitted(const char *const *omit, const char *key) {
    for (; omit && *omit; omit++)
        if (strcmp(*omit, key) == 0) return 1;
    return 0;
}

/* Appends task i's label (its "from" part, and recursively the parent's
 * when that one is needed to tell labels apart) to b. nested: i is a
 * parent in someone's " from " part. */
static void format_into(const rf_job_labels *l, int i, const char *const *omit, unsigned flags, int nested, rf_buf *b) {
    const rf_job *j = l->job;
    const rf_job_task *t = &j->tasks[i];
    cJSON *s = cJSON_Parse(rf_job_settings(j, i));
    char mb[64];
    if (!(flags & RF_LABEL_NO_EXPERIMENT)) rf_buf_printf(b, "%s/", j->exp_names[t->exp]);
    rf_buf_printf(b, "%s", method_of(t->kind, s, mb, sizeof mb));
    const lgroup *g = group_of(l, i);
    for (int o = 0; o < g->n; o++) {
        const lkey *k = &g->k[g->order[o]];
        if (!shown(k) || omitted(omit, k->name)) continue;
        const cJSON *v = rf_job_setting_get(s, k->name);
        if (!v) continue;
        char val[256];
        value_show(v, val, sizeof val);
        rf_buf_printf(b, "/%s=%s", k->name, val);
    }
    cJSON_Delete(s);
    if (l->from[i] >= 0 && (!nested || l->needed[i])) {
        /* the parent's experiment only when it is another one */
        int same = j->tasks[l->from[i]].exp == t->exp;
        rf_buf_printf(b, " from ");
        format_into(l, l->from[i], omit, same ? flags | RF_LABEL_NO_EXPERIMENT : flags & ~(unsigned)RF_LABEL_NO_EXPERIMENT, 1, b);
    }
    if (l->tie[i]) {
        char hx[17];
        rf_job_id_hex(t->id, hx);
        rf_buf_printf(b, " #%.8s", hx);
    }
}

size_t rf_job_label_format(const rf_job_labels *l, int i, const char *const *omit, unsigned flags, char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (!l || i < 0 || i >= l->job->n_tasks) return 0;
    rf_buf b = {0};
    format_into(l, i, omit, flags, 0, &b);
    size_t len = b.oom || !b.p ? 0 : b.n;
    if (n) snprintf(buf, n, "%s", len ? b.p : "");
    rf_buf_free(&b);
    return len;
}

/* ---- building ------------------------------------------------------------------ */

/* An open-addressing count of equal strings (labels across the job). */
typedef struct strcount { const char **s; int *n; size_t cap; } strcount;
static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
static int *count_slot(strcount *c, const char *s) {
    for (size_t h = hash_str(s) & (c->cap - 1);; h = (h + 1) & (c->cap - 1)) {
        if (!c->s[h]) { c->s[h] = s; return &c->n[h]; }
        if (strcmp(c->s[h], s) == 0) return &c->n[h];
    }
}

/* Counts the labels of pool/off; returns 0 out of memory. */
static int count_labels(const rf_job_labels *l, strcount *c) {
    size_t n = (size_t)l->job->n_tasks, cap = 16;
    while (cap < 2 * n) cap *= 2;
    c->cap = cap;
    c->s = rf_calloc(cap, sizeof *c->s);
    c->n = rf_calloc(cap, sizeof *c->n);
    if (!c->s || !c->n) return 0;
    for (size_t i = 0; i < n; i++) (*count_slot(c, l->pool + l->off[i]))++;
    return 1;
}
static void count_free(strcount *c) { rf_free(c->s); rf_free(c->n); memset(c, 0, sizeof *c); }

/* Formats every task's label into the pool. */
static rf_status fill_pool(rf_ctx *ctx, rf_job_labels *l) {
    rf_buf b = {0};
    for (int i = 0; i < l->job->n_tasks; i++) {
        l->off[i] = b.n;
        format_into(l, i, NULL, 0, 0, &b);
        rf_buf_printf(&b, "%c", '\0');   /* rf_buf keeps a NUL after n: this one is counted */
    }
    if (b.oom) { rf_buf_free(&b); return rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory"); }
    rf_free(l->pool);
    l->pool = b.p;
    l->pool_len = b.n;
    return RF_OK;
}

static int key_order_cmp(const lgroup *g, int a, int b) {
    int ra = g->k[a].rank, rb = g->k[b].rank;
    return ra != rb ? (ra < rb ? -1 : 1) : strcmp(g->k[a].name, g->k[b].name);
}

rf_status rf_job_labels_new(rf_ctx *ctx, const rf_job *j, rf_job_labels **out) {
    *out = NULL;
    rf_job_labels *l = rf_calloc(1, sizeof *l);
    if (!l) return rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory");
    l->job = j;
    l->n_groups = j->n_experiments * RF_JOB_KIND_COUNT_;
    size_t nt = (size_t)(j->n_tasks ? j->n_tasks : 1);
    l->g = rf_calloc((size_t)(l->n_groups ? l->n_groups : 1), sizeof *l->g);
    l->from = rf_malloc(nt * sizeof *l->from);
    l->tie = rf_calloc(nt, 1);
    l->needed = rf_calloc(nt, 1);
    l->off = rf_calloc(nt, sizeof *l->off);
    rf_status st = (!l->g || !l->from || !l->tie || !l->needed || !l->off) ? rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory") : RF_OK;
    /* 1: the varied keys of each (experiment, kind) */
    for (int i = 0; !st && i < j->n_tasks; i++) {
        l->from[i] = -1;
        cJSON *s = cJSON_Parse(rf_job_settings(j, i));
        if (!s) { st = rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory"); break; }
        char mb[64];
        scan sc = {(lgroup *)group_of(l, i), j->tasks[i].kind, method_of(j->tasks[i].kind, s, mb, sizeof mb), 0};
        flatten(s, "", on_leaf, &sc);
        cJSON_Delete(s);
        if (sc.oom) st = rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory");
    }
    for (int gi = 0; !st && gi < l->n_groups; gi++) {
        lgroup *g = &l->g[gi];
        g->order = rf_malloc((size_t)(g->n ? g->n : 1) * sizeof *g->order);
        if (!g->order) { st = rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory"); break; }
        for (int a = 0; a < g->n; a++) {
            int b = a;
            while (b > 0 && key_order_cmp(g, g->order[b - 1], a) > 0) { g->order[b] = g->order[b - 1]; b--; }
            g->order[b] = a;
        }
    }
    /* 2: own labels; equal ones take their first parent's label, in DAG
     * order so a parent's label is final before its children read it */
    strcount c = {0};
    if (!st) st = fill_pool(ctx, l);
    if (!st && !count_labels(l, &c)) st = rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory");
    int any = 0;
    for (int i = 0; !st && i < j->n_tasks; i++) {
        const rf_job_task *t = &j->tasks[i];
        const int32_t *par = rf_job_parents(j, i);
        if (*count_slot(&c, l->pool + l->off[i]) > 1 && t->n_parents) { l->from[i] = par[0]; l->needed[i] = 1; any = 1; }
        /* a pipeline stage always names the model it started from (its
         * parent from another experiment, the last one: a distilled
         * student's teachers come first), so its group keeps its lineage */
        if (j->exp_from && j->exp_from[t->exp] >= 0 && t->n_parents) {
            int k = t->n_parents - 1;
            while (k > 0 && j->tasks[par[k]].exp == t->exp) k--;
            l->from[i] = par[k];
            any = 1;
        }
    }
    count_free(&c);
    if (!st && any) st = fill_pool(ctx, l);
    /* 3: still equal: the id tells them apart */
    if (!st && !count_labels(l, &c)) st = rf_error(ctx, RF_ERR_NOMEM, "labels: out of memory");
    any = 0;
    for (int i = 0; !st && i < j->n_tasks; i++)
        if (*count_slot(&c, l->pool + l->off[i]) > 1) { l->tie[i] = 1; any = 1; }
    count_free(&c);
    if (!st && any) st = fill_pool(ctx, l);
    if (st) { rf_job_labels_free(l); return st; }
    *out = l;
    return RF_OK;
}

void rf_job_labels_free(rf_job_labels *l) {
    if (!l) return;
    for (int gi = 0; l->g && gi < l->n_groups; gi++) {
        lgroup *g = &l->g[gi];
        for (int k = 0; k < g->n; k++) {
            rf_free(g->k[k].name);
            rf_free(g->k[k].first);
            for (int m = 0; m < g->k[k].nm; m++) { rf_free(g->k[k].map_method[m]); rf_free(g->k[k].map_value[m]); }
        }
        rf_free(g->k);
        rf_free(g->order);
    }
    rf_free(l->g);
    rf_free(l->from);
    rf_free(l->needed);
    rf_free(l->tie);
    rf_free(l->off);
    rf_free(l->pool);
    rf_free(l);
}

const char *rf_job_label(const rf_job_labels *l, int i) {
    if (!l || !l->pool || i < 0 || i >= l->job->n_tasks) return "";
    return l->pool + l->off[i];
}

int rf_job_label_nkeys(const rf_job_labels *l, int i) {
    return l && i >= 0 && i < l->job->n_tasks ? group_of(l, i)->n : 0;
}

const char *rf_job_label_key(const rf_job_labels *l, int i, int k, unsigned *flags) {
    if (flags) *flags = 0;
    if (!l || i < 0 || i >= l->job->n_tasks) return NULL;
    const lgroup *g = group_of(l, i);
    if (k < 0 || k >= g->n) return NULL;
    const lkey *key = &g->k[g->order[k]];
    if (flags) *flags = (key->varied ? RF_LABEL_KEY_VARIED : 0) | (shown(key) ? RF_LABEL_KEY_SHOWN : 0);
    return key->name;
}

/* ---- matching (raffle find) ----------------------------------------------------------- */

/* value equals text: numbers as numbers ("0.9" matches 0.90), booleans as
 * true/false, strings exactly, lists as any member. */
static int value_is(const cJSON *v, const char *text) {
    if (cJSON_IsNumber(v)) {
        char *end;
        double x = strtod(text, &end);
        return end != text && !*end && x == v->valuedouble;
    }
    if (cJSON_IsString(v)) return strcmp(v->valuestring, text) == 0;
    if (cJSON_IsBool(v)) return strcmp(text, cJSON_IsTrue(v) ? "true" : "false") == 0;
    if (cJSON_IsArray(v))
        for (const cJSON *c = v->child; c; c = c->next)
            if (value_is(c, text)) return 1;
    return 0;
}

int rf_job_task_match(const rf_job_labels *l, int i, const cJSON *settings, const char *key, const char *value) {
    const rf_job *j = l->job;
    const rf_job_task *t = &j->tasks[i];
    if (strcmp(key, "experiment") == 0) return strcmp(j->exp_names[t->exp], value) == 0;
    if (strcmp(key, "kind") == 0) return strcmp(rf_job_kind_name(t->kind), value) == 0;
    if (strcmp(key, "label") == 0) return strcmp(rf_job_label(l, i), value) == 0;
    if (strcmp(key, "id") == 0) {
        char hx[17];
        rf_job_id_hex(t->id, hx);
        return strncmp(hx, value, strlen(value)) == 0 && value[0];
    }
    const cJSON *v = rf_job_setting_get(settings, key);
    if (v) return value_is(v, value);
    if (strcmp(key, "method") == 0) {
        char mb[64];
        return strcmp(method_of(t->kind, settings, mb, sizeof mb), value) == 0;
    }
    return 0;
}

int rf_job_has_key(const rf_job_labels *l, const char *key) {
    static const char *const pseudo[] = {"experiment", "kind", "label", "id", "method", NULL};
    if (omitted(pseudo, key)) return 1;
    for (int gi = 0; gi < l->n_groups; gi++)
        for (int k = 0; k < l->g[gi].n; k++)
            if (strcmp(l->g[gi].k[k].name, key) == 0) return 1;
    return 0;
}

const char *rf_job_key_suggest(const rf_job_labels *l, const char *key) {
    const char *best = NULL;
    int bd = 3;
    static const char *const pseudo[] = {"experiment", "kind", "label", "method"};
    for (size_t p = 0; p < sizeof pseudo / sizeof pseudo[0]; p++) {
        int d = rf_job_edit_distance(key, pseudo[p]);
        if (d < bd) { bd = d; best = pseudo[p]; }
    }
    for (int gi = 0; gi < l->n_groups; gi++)
        for (int k = 0; k < l->g[gi].n; k++) {
            int d = rf_job_edit_distance(key, l->g[gi].k[k].name);
            if (d < bd) { bd = d; best = l->g[gi].k[k].name; }
        }
    return best;
}
