/* The content identity of the files a task reads (raffle/plan.h,
 * rf_inputs): issue 19, defect 3. A task's settings name its model spec
 * file and its .npy / descriptor dataset by path; hashing only the path let
 * an edited spec (32 -> 64 units) reuse the old result. Every file a task
 * reads besides its parents' checkpoints is hashed (SHA-256 of its bytes)
 * and the digests go into the task's id.
 *
 * Which settings name files comes from the kind's settings tables: every
 * key of type RF_SET_MODEL that is not a preset, every RF_SET_FILE that is
 * a local path (a teacher checkpoint), every RF_SET_DATA (and list of
 * datasets) through rf_data_spec_files. A pinned URL ("URL#sha256=HEX")
 * carries its digest in the settings. Each file is read once per
 * cache (a sweep parses its job once), and a cache can be pinned with the
 * digests a store recorded (inputs.json), so `raffle report` finds the ids
 * the sweep used without the files. */
#include "raffle/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry { char *path; char hex[65]; } entry;

struct rf_inputs {
    entry *e;
    int    n, cap;
    int    reads;    /* files actually read and hashed (tests) */
};

rf_inputs *rf_inputs_new(void) { return rf_calloc(1, sizeof(rf_inputs)); }

void rf_inputs_free(rf_inputs *in) {
    if (!in) return;
    for (int i = 0; i < in->n; i++) rf_free(in->e[i].path);
    rf_free(in->e);
    rf_free(in);
}

int rf_inputs_reads(const rf_inputs *in) { return in ? in->reads : 0; }

static entry *find(const rf_inputs *in, const char *path) {
    for (int i = 0; i < in->n; i++)
        if (strcmp(in->e[i].path, path) == 0) return &in->e[i];
    return NULL;
}

int rf_inputs_has(const rf_inputs *in, const char *path) { return in && find(in, path) != NULL; }

static rf_status add(rf_ctx *ctx, rf_inputs *in, const char *path, const char *hex, entry **out) {
    if (in->n == in->cap) {
        int cap = in->cap ? in->cap * 2 : 8;
        entry *e = rf_realloc(in->e, (size_t)cap * sizeof *e);
        if (!e) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        in->e = e;
        in->cap = cap;
    }
    char *p = rf_strdup(path);
    if (!p) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    entry *e = &in->e[in->n++];
    e->path = p;
    snprintf(e->hex, sizeof e->hex, "%s", hex);
    if (out) *out = e;
    return RF_OK;
}

static int is_hex64(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return 0;
    return n == 64;
}

rf_status rf_inputs_pin(rf_ctx *ctx, rf_inputs *in, const char *path, const char *hex) {
    if (!path[0] || !is_hex64(hex))
        return rf_error(ctx, RF_ERR_FORMAT, "inputs: \"%s\": expected 64 lowercase hex digits", path);
    entry *e = find(in, path);
    if (e) { snprintf(e->hex, sizeof e->hex, "%s", hex); return RF_OK; }
    return add(ctx, in, path, hex, NULL);
}

rf_status rf_inputs_pin_json(rf_ctx *ctx, rf_inputs *in, const char *text, size_t n) {
    cJSON *o = cJSON_ParseWithLength(text, n);
    if (!cJSON_IsObject(o)) { cJSON_Delete(o); return rf_error(ctx, RF_ERR_FORMAT, "inputs: not a JSON object"); }
    rf_status s = RF_OK;
    for (const cJSON *c = o->child; c && s == RF_OK; c = c->next)
        s = cJSON_IsString(c) ? rf_inputs_pin(ctx, in, c->string, c->valuestring)
                              : rf_error(ctx, RF_ERR_FORMAT, "inputs: \"%s\": expected a string", c->string);
    cJSON_Delete(o);
    return s;
}

char *rf_inputs_json(const rf_inputs *in) {
    if (!in || !in->n) return NULL;
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < in->n; i++)
        if (!cJSON_AddStringToObject(o, in->e[i].path, in->e[i].hex)) { cJSON_Delete(o); o = NULL; }
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    char *r = t ? rf_strdup(t) : NULL;
    free(t);
    return r;
}

/* ---- hashing a task's files ------------------------------------------------------ */

typedef struct mix { rf_inputs *in; const char *key; uint64_t *h; } mix;

/* The digest of path (read once per cache) mixed into the id as
 * "\n<key>:<sha256>": the settings already hold the path. */
static rf_status mix_file(rf_ctx *ctx, void *ud, const char *path) {
    mix *m = ud;
    entry *e = find(m->in, path);
    if (!e) {
        char hex[65];
        RF_TRY(rf_sha256_file(ctx, path, hex));
        m->in->reads++;
        RF_TRY(add(ctx, m->in, path, hex, &e));
    }
    char buf[160];
    int n = snprintf(buf, sizeof buf, "\n%.80s:%s", m->key, e->hex);
    *m->h = rf_hash64(buf, (size_t)n, *m->h);
    return RF_OK;
}

static rf_status mix_value(rf_ctx *ctx, mix *m, const rf_setting *f, const cJSON *v) {
    if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next) RF_TRY(mix_value(ctx, m, f, c));
        return RF_OK;
    }
    if (!cJSON_IsString(v)) return RF_OK;
    if (f->type == RF_SET_MODEL) return rf_model_preset(v->valuestring) ? RF_OK : mix_file(ctx, m, v->valuestring);
    /* a pinned URL's digest is in the settings already */
    if (f->type == RF_SET_FILE)
        return rf_data_is_pinned(v->valuestring, strlen(v->valuestring)) ? RF_OK : mix_file(ctx, m, v->valuestring);
    return rf_data_spec_files(ctx, v->valuestring, mix_file, m);
}

rf_status rf_inputs_hash(rf_ctx *ctx, rf_inputs *in, const rf_kind *k, const cJSON *settings, uint64_t *h) {
    const rf_setting *tabs[RF_KIND_MAX_TABLES];
    int nt = rf_kind_tables(k, tabs);
    /* settings are canonical (keys sorted), so the order of the files is too */
    for (const cJSON *c = settings->child; c; c = c->next) {
        const rf_setting *f = rf_settings_lookup(tabs, nt, c->string);
        if (!f || !(f->type == RF_SET_MODEL || f->type == RF_SET_DATA || f->type == RF_SET_FILE ||
                    (f->type == RF_SET_LIST && !rf_setting_choices(f))))
            continue;
        mix m = {in, c->string, h};
        rf_status s = mix_value(ctx, &m, f, c);
        if (s) { rf_error_prefix(ctx, "%s", c->string); return s; }
    }
    return RF_OK;
}
