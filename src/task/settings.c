/* Settings tables (raffle/settings.h): checking values against their entry
 * with JSON-path errors, filling defaults, reading values back with the
 * table's default, did-you-mean, and the markdown the docs are printed from.
 * The training table, the one every kind that trains reads, is at the end. */
#include "raffle/settings.h"
#include "raffle/data.h"
#include "raffle/engine.h"
#include "raffle/nn.h"
#include "raffle/plan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BIG 1e12

const char *const *rf_setting_choices(const rf_setting *s) {
    return s->choices ? s->choices : s->choices_fn ? s->choices_fn() : NULL;
}

const rf_setting *rf_setting_find(const rf_setting *tab, const char *key) {
    for (; tab && tab->key; tab++)
        if (strcmp(tab->key, key) == 0) return tab;
    return NULL;
}

const rf_setting *rf_settings_lookup(const rf_setting *const *tabs, int n, const char *key) {
    for (int i = 0; i < n; i++) {
        const rf_setting *s = rf_setting_find(tabs[i], key);
        if (s) return s;
    }
    return NULL;
}

/* ---- did-you-mean ---------------------------------------------------------- */

int rf_edit_distance(const char *a, const char *b) {
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

const char *rf_settings_suggest(const char *key, const rf_setting *const *tabs, int n, const char *const *words) {
    const char *best = NULL;
    int bd = 99;
    for (int t = 0; t < n; t++)
        for (const rf_setting *f = tabs[t]; f && f->key; f++) {
            int d = rf_edit_distance(key, f->key);
            if (d < bd) { bd = d; best = f->key; }
        }
    for (const char *const *w = words; w && *w; w++) {
        int d = rf_edit_distance(key, *w);
        if (d < bd) { bd = d; best = *w; }
    }
    int lim = (int)strlen(key) / 3;
    if (lim < 2) lim = 2;
    return bd <= lim ? best : NULL;
}

/* ---- checking -------------------------------------------------------------- */

rf_status rf_settings_error(rf_ctx *ctx, const char *path, const char *fmt, ...) {
    char msg[RF_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rf_error(ctx, RF_ERR_JOB, "%s: %s", path[0] ? path : "(top level)", msg);
}

const char *rf_json_type_word(const cJSON *v) {
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

/* Names a mistyped dataset is matched against for did-you-mean; whether a
 * spec is valid is the data module's call (rf_data_spec_check, its loader
 * table). */
static const char *const dataset_words[] = {"fashion-mnist", "mnist", "synthetic", "cifar10", "cifar100",
                                            "cifar100-coarse", NULL};

/* A file a dataset names must be there when the job is checked, not when
 * its first task runs (issue 19, defect 11). */
static rf_status file_present(rf_ctx *ctx, void *ud, const char *file) {
    (void)ud;
    if (rf_inputs_has(ctx->pinned, file)) return RF_OK;   /* the digest is known */
    struct stat sb;
    if (stat(file, &sb) != 0) return rf_error(ctx, RF_ERR_NOTFOUND, "%s: %s", file, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return rf_error(ctx, RF_ERR_INVALID, "%s: not a regular file", file);
    return RF_OK;
}

static rf_status check_dataset(rf_ctx *ctx, const char *path, const char *s) {
    rf_status st = rf_data_spec_check(ctx, s);
    if (st == RF_OK && rf_data_spec_files(ctx, s, file_present, NULL) != RF_OK) {
        char msg[RF_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", rf_ctx_error(ctx));
        return rf_settings_error(ctx, path, "%s", msg);
    }
    if (st == RF_OK) return RF_OK;
    if (st == RF_ERR_NOTFOUND) {
        const char *sug = rf_settings_suggest(s, NULL, 0, dataset_words);
        if (sug) return rf_settings_error(ctx, path, "unknown dataset \"%s\" (did you mean \"%s\"?)", s, sug);
        return rf_settings_error(ctx, path, "unknown dataset \"%s\" (%s)", s, RF_DATA_SPEC_FORMS);
    }
    char msg[RF_ERR_MAX];
    snprintf(msg, sizeof msg, "%s", rf_ctx_error(ctx));
    return rf_settings_error(ctx, path, "%s", msg);
}

/* A model is a preset or a spec file that plans (rf_model_check): a name
 * that is neither gets the closest preset (issue 23: "lenet5" -> did you
 * mean "lenet-5"?; issue 19, defect 11: "lenet-300-1OO"); a path that is
 * not there, or a spec that does not plan, is an error naming the file. */
/* {"url", "sha256", "format"}: a dataset by URL (issue 19), as a spec. */
static const rf_setting url_keys[] = {
    {.key = "url", .type = RF_SET_STR, .flags = RF_SF_REQUIRED, .doc = "http(s) URL of the file"},
    {.key = "sha256", .type = RF_SET_STR, .flags = RF_SF_REQUIRED, .doc = "its SHA-256, 64 lowercase hex digits"},
    {.key = "format", .type = RF_SET_ENUM, .choices = (const char *const[]){"cifar10", "cifar100", "cifar100-coarse", NULL},
     .doc = "a CIFAR binary archive (default: a .tar[.gz] of train_x/train_y/test_x/test_y .npy)"},
    RF_SETTINGS_END
};

int rf_data_value_spec(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsString(v)) return snprintf(buf, n, "%s", v->valuestring) < (int)n;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "url"), *h = cJSON_GetObjectItemCaseSensitive(v, "sha256"),
                *f = cJSON_GetObjectItemCaseSensitive(v, "format");
    if (!cJSON_IsObject(v) || !cJSON_IsString(u) || !cJSON_IsString(h)) return 0;
    int k = snprintf(buf, n, "%s%s%s#sha256=%s", cJSON_IsString(f) ? f->valuestring : "", cJSON_IsString(f) ? ":" : "",
                     u->valuestring, h->valuestring);
    return k > 0 && (size_t)k < n;
}

static rf_status check_dataset(rf_ctx *ctx, const char *path, const char *s);

/* A dataset given as {"url", "sha256"[, "format"]}: its keys, then the spec
 * it stands for. */
static rf_status check_data_object(rf_ctx *ctx, const char *path, const cJSON *v) {
    const rf_setting *tab[1] = {url_keys};
    RF_TRY(rf_settings_check(ctx, v, tab, 1, path, 0));
    char spec[4096];
    if (!rf_data_value_spec(v, spec, sizeof spec)) return rf_settings_error(ctx, path, "URL too long");
    return check_dataset(ctx, path, spec);
}

static rf_status check_model(rf_ctx *ctx, const char *path, const char *name) {
    if (rf_inputs_has(ctx->pinned, name)) return RF_OK;   /* checked when its digest was taken */
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    rf_status st = rf_model_check(&tmp, name);
    if (st == RF_OK) return RF_OK;
    size_t len = strlen(name);
    int pathlike = strchr(name, '/') || (len > 5 && strcmp(name + len - 5, ".json") == 0);
    if (st != RF_ERR_NOTFOUND || pathlike) return rf_settings_error(ctx, path, "%s", rf_ctx_error(&tmp));
    char names[512];
    const char *words[48];
    int n = 0;
    snprintf(names, sizeof names, "%s", rf_model_preset_names());
    for (char *t = strtok(names, ","); t && n < 47; t = strtok(NULL, ",")) words[n++] = t;
    words[n] = NULL;
    const char *sug = rf_settings_suggest(name, NULL, 0, words);
    if (sug) return rf_settings_error(ctx, path, "unknown model \"%s\" (did you mean \"%s\"?)", name, sug);
    return rf_settings_error(ctx, path, "unknown model \"%s\": neither a preset (%s) nor a spec file", name,
                             rf_model_preset_names());
}

static rf_status check_choice(rf_ctx *ctx, const rf_setting *f, const cJSON *v, const char *path) {
    char buf[256];
    const char *const *choices = rf_setting_choices(f);
    if (!cJSON_IsString(v)) return rf_settings_error(ctx, path, "expected a string, got %s", rf_json_type_word(v));
    for (const char *const *c = choices; *c; c++) if (strcmp(*c, v->valuestring) == 0) return RF_OK;
    const char *sug = rf_settings_suggest(v->valuestring, NULL, 0, choices);
    choice_list(choices, buf, sizeof buf);
    if (sug) return rf_settings_error(ctx, path, "\"%s\" is not one of %s (did you mean \"%s\"?)", v->valuestring, buf, sug);
    return rf_settings_error(ctx, path, "\"%s\" is not one of %s", v->valuestring, buf);
}

/* Engine options object: keys and values from the engine table. */
static rf_status check_engine(rf_ctx *ctx, const rf_setting *f, const cJSON *v, const char *path) {
    char p[512];
    if (!cJSON_IsObject(v)) return rf_settings_error(ctx, path, "expected an object, got %s", rf_json_type_word(v));
    for (const cJSON *c = v->child; c; c = c->next) {
        snprintf(p, sizeof p, "%s.%s", path, c->string);
        int o = rf_engine_option_find(c->string);
        if (o < 0) {
            const char *names[RF_ENGINE_COUNT_ + 1];
            for (int i = 0; i < RF_ENGINE_COUNT_; i++) names[i] = rf_engine_options[i].name;
            names[RF_ENGINE_COUNT_] = NULL;
            const char *s = rf_settings_suggest(c->string, NULL, 0, names);
            if (s) return rf_settings_error(ctx, p, "unknown engine option (did you mean \"%s\"?)", s);
            return rf_settings_error(ctx, p, "unknown engine option");
        }
        /* Options that do not change results (the thread count) are the
         * process's: a task's settings (its id, its checkpoint) never hold
         * them; a job sets them for all its tasks (RF_SF_PROCESS). */
        if (!rf_engine_options[o].changes_floats && !(f->flags & RF_SF_PROCESS))
            return rf_settings_error(ctx, p, "does not change results, so it is not a task's setting (jobs: the "
                                     "top-level engine.%s; command line: --%s)", c->string, c->string);
        char text[64];
        if (cJSON_IsString(c)) snprintf(text, sizeof text, "%s", c->valuestring);
        else if (cJSON_IsNumber(c) && c->valuedouble == floor(c->valuedouble) && fabs(c->valuedouble) < 1e15)
            snprintf(text, sizeof text, "%.0f", c->valuedouble);
        else return rf_settings_error(ctx, p, "expected a string or an integer, got %s", rf_json_type_word(c));
        int val;
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        if (rf_engine_parse_value(&tmp, o, text, &val) != RF_OK) return rf_settings_error(ctx, p, "%s", rf_ctx_error(&tmp));
    }
    return RF_OK;
}

static rf_status check_scalar(rf_ctx *ctx, const rf_setting *f, const cJSON *v, const char *path, int in_grid) {
    switch (f->type) {
    case RF_SET_NUM: case RF_SET_INT: {
        if (!cJSON_IsNumber(v)) return rf_settings_error(ctx, path, "expected a number, got %s", rf_json_type_word(v));
        double x = v->valuedouble;
        if (!isfinite(x)) return rf_settings_error(ctx, path, "not a finite number");
        if (f->type == RF_SET_INT && x != floor(x)) return rf_settings_error(ctx, path, "%g is not an integer", x);
        if (x < f->lo || x > f->hi || (f->lo_open && x == f->lo) || (f->hi_open && x == f->hi)) {
            char hi[32];
            if (f->hi >= BIG) snprintf(hi, sizeof hi, "inf"); else snprintf(hi, sizeof hi, "%g", f->hi);
            return rf_settings_error(ctx, path, "%g is outside %c%g, %s%c", x, f->lo_open ? '(' : '[', f->lo, hi, f->hi_open ? ')' : ']');
        }
        return RF_OK;
    }
    case RF_SET_BOOL:
        if (!cJSON_IsBool(v)) return rf_settings_error(ctx, path, "expected true or false, got %s", rf_json_type_word(v));
        return RF_OK;
    case RF_SET_ENUM: case RF_SET_LIST:
        if (rf_setting_choices(f)) return check_choice(ctx, f, v, path);
        /* a list without choices is a list of datasets */
        if (!cJSON_IsString(v)) return rf_settings_error(ctx, path, "expected a string, got %s", rf_json_type_word(v));
        return check_dataset(ctx, path, v->valuestring);
    case RF_SET_STR:
        if (!cJSON_IsString(v)) return rf_settings_error(ctx, path, "expected a string, got %s", rf_json_type_word(v));
        if (!v->valuestring[0]) return rf_settings_error(ctx, path, "empty string");
        return RF_OK;
    case RF_SET_DATA:
        if (cJSON_IsObject(v)) return check_data_object(ctx, path, v);
        if (!cJSON_IsString(v)) return rf_settings_error(ctx, path, "expected a string or {\"url\", \"sha256\"}, got %s", rf_json_type_word(v));
        return check_dataset(ctx, path, v->valuestring);
    case RF_SET_MODEL:
        if (!cJSON_IsString(v) || !v->valuestring[0]) return rf_settings_error(ctx, path, "expected a preset name or a model spec file, got %s", rf_json_type_word(v));
        return check_model(ctx, path, v->valuestring);
    case RF_SET_OBJ:
        if (!cJSON_IsObject(v)) return rf_settings_error(ctx, path, "expected an object, got %s", rf_json_type_word(v));
        return rf_settings_check(ctx, v, &f->sub, 1, path, in_grid);
    case RF_SET_ENGINE:
        return check_engine(ctx, f, v, path);
    case RF_SET_RATES:
        if (!cJSON_IsObject(v)) return rf_settings_error(ctx, path, "expected an object {pattern: rate}, got %s", rf_json_type_word(v));
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 1))
                return rf_settings_error(ctx, path, "\"%s\": expected a rate in [0, 1]", e->string);
        return RF_OK;
    case RF_SET_KEYS:
        if (!cJSON_IsString(v) || !v->valuestring[0])
            return rf_settings_error(ctx, path, "expected a setting name, got %s", rf_json_type_word(v));
        return RF_OK;
    case RF_SET_WHERE:
        if (!cJSON_IsObject(v)) return rf_settings_error(ctx, path, "expected an object {setting: value or list}, got %s", rf_json_type_word(v));
        for (const cJSON *e = v->child; e; e = e->next) {
            const cJSON *x = cJSON_IsArray(e) ? e->child : e;
            if (cJSON_IsArray(e) && !x) return rf_settings_error(ctx, path, "\"%s\": empty list matches nothing", e->string);
            for (; x; x = cJSON_IsArray(e) ? x->next : NULL)
                if (!(cJSON_IsString(x) || cJSON_IsNumber(x) || cJSON_IsBool(x)))
                    return rf_settings_error(ctx, path, "\"%s\": expected a string, number or boolean (or a list of them), got %s",
                                             e->string, rf_json_type_word(x));
        }
        return RF_OK;
    case RF_SET_INTMAP:
        if (!cJSON_IsObject(v)) return rf_settings_error(ctx, path, "expected an object {pattern: integer}, got %s", rf_json_type_word(v));
        for (const cJSON *e = v->child; e; e = e->next) {
            if (!e->string[0]) return rf_settings_error(ctx, path, "empty pattern");
            if (!cJSON_IsNumber(e))
                return rf_settings_error(ctx, path, "\"%s\": expected an integer in [%g, %g], got %s", e->string, f->lo, f->hi,
                                         rf_json_type_word(e));
            if (e->valuedouble != floor(e->valuedouble) || e->valuedouble < f->lo || e->valuedouble > f->hi)
                return rf_settings_error(ctx, path, "\"%s\": %g is not an integer in [%g, %g]", e->string, e->valuedouble, f->lo, f->hi);
        }
        return RF_OK;
    case RF_SET_FILE: {
        if (!cJSON_IsString(v) || !v->valuestring[0]) return rf_settings_error(ctx, path, "expected a file or URL#sha256=HEX, got %s", rf_json_type_word(v));
        const char *f = v->valuestring;
        char url[2048];
        rf_status st = rf_data_is_pinned(f, strlen(f)) ? rf_data_pinned_parse(ctx, f, strlen(f), url, sizeof url, NULL)
                                                       : file_present(ctx, NULL, f);
        if (st == RF_OK) return RF_OK;
        char msg[RF_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", rf_ctx_error(ctx));
        return rf_settings_error(ctx, path, "%s", msg);
    }
    case RF_SET_OBJLIST: case RF_SET_TYPE_COUNT_:
        break;
    }
    return RF_OK;
}

/* The type and bounds, then the entry's own check (a string's syntax). */
static rf_status check_value(rf_ctx *ctx, const rf_setting *f, const cJSON *v, const char *path, int in_grid) {
    RF_TRY(check_scalar(ctx, f, v, path, in_grid));
    if (!f->check) return RF_OK;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    if (f->check(&tmp, v) == RF_OK) return RF_OK;
    return rf_settings_error(ctx, path, "%s", rf_ctx_error(&tmp));
}

rf_status rf_setting_check(rf_ctx *ctx, const rf_setting *f, const cJSON *v, const char *path, int in_grid) {
    char p[512];
    if (f->type == RF_SET_LIST || f->type == RF_SET_KEYS) {
        if (!cJSON_IsArray(v)) return rf_settings_error(ctx, path, "expected a list of strings, got %s", rf_json_type_word(v));
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            snprintf(p, sizeof p, "%s[%d]", path, i);
            RF_TRY(check_scalar(ctx, f, e, p, in_grid));
        }
        return RF_OK;
    }
    if (f->type == RF_SET_OBJLIST) {
        if (!cJSON_IsArray(v)) return rf_settings_error(ctx, path, "expected a list of objects, got %s", rf_json_type_word(v));
        return RF_OK;
    }
    if (cJSON_IsArray(v)) {
        if (!((f->flags & RF_SF_GRID) && in_grid) && !(f->flags & RF_SF_LISTVAL))
            return rf_settings_error(ctx, path, "a list is not allowed here (grids are allowed inside experiments)");
        if (!v->child) return rf_settings_error(ctx, path, "empty list: a grid axis needs at least one value");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            snprintf(p, sizeof p, "%s[%d]", path, i);
            if (cJSON_IsArray(e)) return rf_settings_error(ctx, p, "nested lists are not allowed");
            RF_TRY(check_value(ctx, f, e, p, in_grid));
        }
        return RF_OK;
    }
    return check_value(ctx, f, v, path, in_grid);
}

/* One key's error: with ctx->diag, recorded (unless a check inside already
 * recorded it: an object's keys) and the check goes on. Returns whether to
 * stop. */
static int key_failed(rf_ctx *ctx, int noted_before, rf_status *first, rf_status st) {
    if (!*first) *first = st;
    if (!ctx->diag) return 1;
    if (ctx->diag->n == noted_before) rf_diag_note(ctx);
    return 0;
}

rf_status rf_settings_check(rf_ctx *ctx, const cJSON *o, const rf_setting *const *tabs, int n, const char *path,
                            int in_grid) {
    char p[512];
    rf_status first = RF_OK;
    for (const cJSON *c = o->child; c; c = c->next) {
        snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", c->string);
        int noted = ctx->diag ? ctx->diag->n : 0;
        const rf_setting *f = rf_settings_lookup(tabs, n, c->string);
        rf_status st = RF_OK;
        if (!f) {
            const char *s = rf_settings_suggest(c->string, tabs, n, NULL);
            st = s ? rf_settings_error(ctx, p, "unknown key (did you mean \"%s\"?)", s) : rf_settings_error(ctx, p, "unknown key");
        }
        for (const cJSON *d = o->child; !st && d != c; d = d->next)
            if (strcmp(d->string, c->string) == 0) st = rf_settings_error(ctx, p, "duplicate key");
        if (!st) st = rf_setting_check(ctx, f, c, p, in_grid);
        if (st && key_failed(ctx, noted, &first, st)) return st;
    }
    for (int t = 0; t < n; t++)
        for (const rf_setting *f = tabs[t]; f && f->key; f++)
            if ((f->flags & RF_SF_REQUIRED) && !cJSON_GetObjectItemCaseSensitive(o, f->key)) {
                snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", f->key);
                int noted = ctx->diag ? ctx->diag->n : 0;
                if (key_failed(ctx, noted, &first, rf_settings_error(ctx, p, "required key missing"))) return first;
            }
    return first;
}

/* ---- defaults --------------------------------------------------------------- */

cJSON *rf_setting_default(const rf_setting *s) {
    if (s->def_from) {
        const rf_setting *t = rf_setting_find(rf_train_settings, s->def_from);
        return t && t->def ? cJSON_Parse(t->def) : NULL;
    }
    return s->def ? cJSON_Parse(s->def) : NULL;
}

cJSON *rf_setting_default_in(const rf_setting *s, const cJSON *o) {
    return s->def_of ? s->def_of(s, o) : rf_setting_default(s);
}

int rf_setting_applies(const rf_setting *s, const cJSON *o) {
    if (s->applies) return s->applies(s, o);
    if (!s->when) return 1;
    const char *eq = strchr(s->when, '=');
    if (!eq) return 1;
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - s->when), s->when);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) return 0;
    size_t len = strlen(v->valuestring);
    for (const char *p = eq + 1; *p;) {
        const char *bar = strchr(p, '|');
        size_t k = bar ? (size_t)(bar - p) : strlen(p);
        if (k == len && strncmp(p, v->valuestring, k) == 0) return 1;
        p += k + (bar != NULL);
    }
    return 0;
}

int rf_settings_fill(cJSON *o, const rf_setting *tab) {
    for (const rf_setting *s = tab; s && s->key; s++) {
        if ((s->flags & RF_SF_OPTIONAL) || (!s->def && !s->def_from && !s->def_of)) continue;
        if (cJSON_GetObjectItemCaseSensitive(o, s->key) || !rf_setting_applies(s, o)) continue;
        cJSON *v = rf_setting_default_in(s, o);
        if (!v && s->def_of) continue;   /* nothing to derive it from (no dataset) */
        if (!v || !cJSON_AddItemToObject(o, s->key, v)) { cJSON_Delete(v); return 0; }
    }
    return 1;
}

/* ---- readers ------------------------------------------------------------------ */

static const cJSON *value_or_default(const cJSON *settings, const rf_setting *tab, const char *key, cJSON **owned) {
    *owned = NULL;
    const cJSON *v = settings ? cJSON_GetObjectItemCaseSensitive(settings, key) : NULL;
    if (v && !cJSON_IsNull(v)) return v;
    const rf_setting *s = rf_setting_find(tab, key);
    RF_ASSERT(s != NULL);   /* a runner reading a key its table lacks is a bug */
    return s ? (*owned = rf_setting_default_in(s, settings)) : NULL;
}

double rf_settings_num(const cJSON *settings, const rf_setting *tab, const char *key) {
    cJSON *own;
    const cJSON *v = value_or_default(settings, tab, key, &own);
    double x = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
    cJSON_Delete(own);
    return x;
}

const char *rf_settings_str(const cJSON *settings, const rf_setting *tab, const char *key) {
    const cJSON *v = settings ? cJSON_GetObjectItemCaseSensitive(settings, key) : NULL;
    if (cJSON_IsString(v)) return v->valuestring;
    /* table defaults are string literals: return the literal without quotes */
    const rf_setting *s = rf_setting_find(tab, key);
    RF_ASSERT(s != NULL);
    if (!s || !s->def || s->def[0] != '"') return "";
    static _Thread_local char buf[8][128];
    static _Thread_local int next;
    char *b = buf[next++ & 7];
    snprintf(b, sizeof buf[0], "%.*s", (int)strlen(s->def) - 2, s->def + 1);
    return b;
}

int rf_settings_bool(const cJSON *settings, const rf_setting *tab, const char *key) {
    cJSON *own;
    const cJSON *v = value_or_default(settings, tab, key, &own);
    int b = cJSON_IsTrue(v);
    cJSON_Delete(own);
    return b;
}

/* ---- documentation ------------------------------------------------------------- */

static const char *const type_names[RF_SET_TYPE_COUNT_] = {
    [RF_SET_NUM] = "number", [RF_SET_INT] = "integer", [RF_SET_ENUM] = "", [RF_SET_STR] = "string",
    [RF_SET_BOOL] = "boolean", [RF_SET_DATA] = "dataset", [RF_SET_MODEL] = "model", [RF_SET_LIST] = "list",
    [RF_SET_OBJ] = "object", [RF_SET_OBJLIST] = "list of objects", [RF_SET_ENGINE] = "engine object",
    [RF_SET_RATES] = "object {glob: rate}", [RF_SET_INTMAP] = "object {pattern: integer}",
    [RF_SET_KEYS] = "list of setting names",
    [RF_SET_WHERE] = "object {setting: value or list}",
    [RF_SET_FILE] = "file or URL#sha256=HEX",
};

/* Bounds as people write them: 2^32 − 1, 10^6, 0.5. */
static void fmt_num(char *buf, size_t n, double x) {
    if (x >= BIG) { snprintf(buf, n, "inf"); return; }
    if (x >= 65536 && x == floor(x)) {
        int e = (int)lround(log2(x + 1));
        if (ldexp(1.0, e) == x + 1) { snprintf(buf, n, "2^%d − 1", e); return; }
        e = (int)lround(log2(x));
        if (ldexp(1.0, e) == x) { snprintf(buf, n, "2^%d", e); return; }
        e = (int)lround(log10(x));
        if (pow(10.0, e) == x) { snprintf(buf, n, "10^%d", e); return; }
    }
    snprintf(buf, n, "%g", x);
}

void rf_setting_range(const rf_setting *s, char *buf, size_t n) {
    char lo[32], hi[32];
    buf[0] = '\0';
    switch (s->type) {
    case RF_SET_NUM: case RF_SET_INT:
        fmt_num(lo, sizeof lo, s->lo);
        fmt_num(hi, sizeof hi, s->hi);
        if (s->hi >= BIG && !s->lo_open) snprintf(buf, n, "%s ≥ %s", type_names[s->type], lo);
        else snprintf(buf, n, "%s %c%s, %s%c", type_names[s->type], s->lo_open ? '(' : '[', lo, hi, s->hi_open ? ')' : ']');
        return;
    case RF_SET_ENUM: case RF_SET_LIST: {
        size_t k = 0;
        const char *const *choices = rf_setting_choices(s);
        if (s->type == RF_SET_LIST) k += (size_t)snprintf(buf + k, n - k, "list of ");
        if (!choices) { snprintf(buf + k, n - k, "datasets"); return; }
        for (const char *const *c = choices; *c && k + 1 < n; c++)
            k += (size_t)snprintf(buf + k, n - k, "%s`%s`", c == choices ? "" : " \\| ", *c);
        return;
    }
    default:
        snprintf(buf, n, "%s", type_names[s->type]);
    }
}

void rf_setting_default_text(const rf_setting *s, char *buf, size_t n) {
    if (s->flags & RF_SF_REQUIRED) { snprintf(buf, n, "(required)"); return; }
    if (s->def_from) {
        const rf_setting *t = rf_setting_find(rf_train_settings, s->def_from);
        snprintf(buf, n, "`%s`'s (%s)", s->def_from, t && t->def ? t->def : "?");
        return;
    }
    if (s->def_of) { snprintf(buf, n, "depends"); return; }
    if (!s->def) { snprintf(buf, n, "—"); return; }
    if (s->def[0] == '"') snprintf(buf, n, "`%.*s`", (int)strlen(s->def) - 2, s->def + 1);
    else snprintf(buf, n, "%s", s->def);
}

void rf_settings_markdown(rf_buf *b, const rf_setting *tab, int flag_names) {
    if (!tab || !tab->key) { rf_buf_printf(b, "(no keys of its own)\n"); return; }
    rf_buf_printf(b, "| %s | type | default | unit | meaning |\n|---|---|---|---|---|\n", flag_names ? "flag" : "key");
    for (const rf_setting *s = tab; s && s->key; s++) {
        if (flag_names && (s->flags & RF_SF_NOCLI)) continue;
        char range[256], def[128], name[96];
        rf_setting_range(s, range, sizeof range);
        rf_setting_default_text(s, def, sizeof def);
        /* optional keys: read with their default, written into a task's
         * settings only when set (keys added after ids were published) */
        if (s->flags & RF_SF_OPTIONAL) snprintf(def + strlen(def), sizeof def - strlen(def), ", optional");
        if (flag_names) {
            size_t k = (size_t)snprintf(name, sizeof name, "`--");
            for (const char *c = s->key; *c && k + 2 < sizeof name; c++) name[k++] = *c == '_' ? '-' : *c;
            snprintf(name + k, sizeof name - k, "`");
        } else {
            snprintf(name, sizeof name, "`%s`", s->key);
        }
        char doc[512];
        if (s->when) snprintf(doc, sizeof doc, "%s (only when %s)", s->doc ? s->doc : "", s->when);
        else snprintf(doc, sizeof doc, "%s", s->doc ? s->doc : "");
        /* a '|' inside a cell would end it */
        char cell[600];
        size_t k = 0;
        for (const char *c = doc; *c && k + 2 < sizeof cell; c++) {
            if (*c == '|' && (c == doc || c[-1] != '\\')) cell[k++] = '\\';
            cell[k++] = *c;
        }
        cell[k] = '\0';
        rf_buf_printf(b, "| %s | %s%s | %s | %s | %s |\n", name, range, (s->flags & RF_SF_GRID) && !flag_names ? ", grid" : "",
                      def, s->unit ? s->unit : "", cell);
    }
}

/* ---- the training keys -----------------------------------------------------------
 * Defaults are what a researcher gets from PyTorch without extra arguments:
 * Adam at its default learning rate 1e-3, a constant rate (no scheduler),
 * batches of 128, 10 epochs; SGD momentum 0.9 (the momentum every SGD
 * recipe of the papers raffle reproduces uses; Adam ignores it). Anything
 * a study depends on belongs in its job file. */
static rf_status check_augment(rf_ctx *ctx, const cJSON *v) {
    rf_augment a;
    return rf_augment_parse(ctx, v->valuestring, &a);
}

static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedules[] = {"constant", "cosine", "step", "linear", NULL};

const rf_setting rf_train_settings[] = {
    {.key = "epochs", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 1e6, .def = "10", .unit = "passes",
     .doc = "passes over the training split (used when `iterations` is 0)", .alias = "e"},
    {.key = "iterations", .type = RF_SET_INT, .flags = RF_SF_GRID | RF_SF_ZERO_UNSET, .lo = 0, .hi = 1e12, .def = "0", .unit = "steps",
     .doc = "optimizer steps; > 0 overrides `epochs`"},
    {.key = "batch", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 1, .hi = 65536, .def = "128", .unit = "samples",
     .doc = "samples per step", .alias = "b"},
    {.key = "optimizer", .type = RF_SET_ENUM, .flags = RF_SF_GRID, .choices = optimizers, .def = "\"adam\"",
     .doc = "sgd (with momentum), adam, or adamw (decoupled weight decay)"},
    {.key = "lr", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 10, .lo_open = 1, .def = "0.001",
     .doc = "peak learning rate"},
    {.key = "momentum", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1, .hi_open = 1, .def = "0.9",
     .doc = "SGD momentum (adam and adamw ignore it)"},
    {.key = "weight_decay", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1, .hi_open = 1, .def = "0",
     .doc = "L2 penalty (sgd, adam) or decoupled decay (adamw)"},
    {.key = "schedule", .type = RF_SET_ENUM, .flags = RF_SF_GRID, .choices = schedules, .def = "\"constant\"",
     .doc = "learning-rate schedule after the warm-up"},
    {.key = "warmup", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 1e12, .def = "0", .unit = "steps",
     .doc = "linear warm-up from 0 to `lr`"},
    {.key = "label_smoothing", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1, .hi_open = 1, .def = "0",
     .doc = "label smoothing epsilon of the cross-entropy"},
    {.key = "clip_norm", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1e30, .def = "0",
     .doc = "clip the gradient norm to this (0: off)"},
    {.key = "eval_limit", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 1e12, .def = "0", .unit = "samples",
     .doc = "evaluate on the first N validation and test samples (0: all; smoke runs)"},
    {.key = "nesterov", .type = RF_SET_BOOL, .flags = RF_SF_GRID | RF_SF_OPTIONAL, .def = "false",
     .doc = "Nesterov momentum (sgd)"},
    {.key = "eval_every", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 2147483647.0, .def = "0", .unit = "steps",
     .doc = "periodic validation evaluation every N steps (0: each epoch); sets `best_iteration`"},
    {.key = "bn_l1", .type = RF_SET_NUM, .flags = RF_SF_GRID | RF_SF_OPTIONAL, .lo = 0, .hi = 0.1, .def = "0",
     .doc = "L1 penalty λ·Σ|γ| on batch-norm scales (network slimming, Liu et al. 2017: 1e-5 to 1e-4; 0: off)"},
    {.key = "augment", .type = RF_SET_STR, .flags = RF_SF_GRID, .def = "\"none\"", .check = check_augment,
     .doc = "training-time augmentation: `none`, or `+`-joined `crop` (zero-pad 4 pixels, random crop back), `crop:P`, `flip` (random horizontal flip), e.g. `crop+flip` (docs/data.md)"},
    {.key = "step_size", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 1e12, .def = "0", .unit = "steps",
     .when = "schedule=step", .doc = "schedule `step`: multiply the rate by `gamma` every N steps, counted from the first (torch StepLR in steps); must be > 0"},
    {.key = "gamma", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1, .lo_open = 1, .def = "0.1",
     .when = "schedule=step", .doc = "schedule `step`: the decay factor"},
    RF_SETTINGS_END
};

/* ---- the data preparation keys ----------------------------------------------------
 * What rf_data_open does between reading a dataset and training on it
 * (docs/data.md). The split seed is its own key, not the run's seed, so
 * every seed of a study is selected on the same validation samples. */
static rf_status check_validation(rf_ctx *ctx, const cJSON *v) {
    int64_t n_val;
    /* a count is an integer; a fraction lies in (0, 1): the data module's rule, on a large training set */
    return rf_data_validation_count(ctx, v->valuedouble, (int64_t)1 << 40, &n_val);
}

static cJSON *validation_default(const rf_setting *s, const cJSON *o) {
    (void)s;
    const cJSON *d = o ? cJSON_GetObjectItemCaseSensitive(o, "data") : NULL;
    return cJSON_IsString(d) ? cJSON_CreateNumber(rf_data_default_validation(d->valuestring)) : NULL;
}

static rf_status check_normalize(rf_ctx *ctx, const cJSON *v) {
    rf_data_opts o;
    rf_data_opts_default(&o);
    return rf_data_norm_parse(ctx, v->valuestring, &o);
}

const rf_setting rf_data_settings[] = {
    {.key = "validation", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1e9, .check = check_validation,
     .def_of = validation_default, .unit = "samples",
     .doc = "held out of the training set for selection (periodic evaluation, `best_iteration`, early stopping): 0 none, 0 < v < 1 a fraction, an integer ≥ 1 a count; default the dataset's: 5000 for CIFAR and Fashion-MNIST, 1000 for `mnist`, 0.1 otherwise"},
    {.key = "split_seed", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 4294967295.0, .def = "0",
     .doc = "seed of the validation split, independent of `seed`: every seed of a study is selected on the same samples"},
    {.key = "normalize", .type = RF_SET_STR, .flags = RF_SF_GRID, .def = "\"train\"", .check = check_normalize,
     .doc = "`train` (per-channel mean/std of the training part, validation excluded), `none` (pixels in [0, 1]), or `M0,M1,M2/S0,S1,S2`"},
    {.key = "pad_to", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 4096, .def = "0", .unit = "pixels",
     .doc = "pad smaller images to N×N, centred, with a raw 0 pixel (28×28 Fashion-MNIST through a 32×32 model: 32); 0: none"},
    RF_SETTINGS_END
};

/* ---- a pipeline's `best` selection (raffle/settings.h) ----------------------- */

const char *const rf_select_metric_names[] = {"val_accuracy", "best_val_accuracy", "val_loss", NULL};
const unsigned char rf_select_metric_lower[] = {0, 0, 1};
_Static_assert(sizeof rf_select_metric_lower == sizeof rf_select_metric_names / sizeof rf_select_metric_names[0] - 1,
               "one direction per selection metric");

const rf_setting rf_best_settings[] = {
    {.key = "by", .type = RF_SET_ENUM, .choices = rf_select_metric_names, .def = "\"val_accuracy\"",
     .doc = "the validation-split metric ranked (the test split never selects): `val_accuracy` of the final model, "
            "`best_val_accuracy` during training, `val_loss` (lowest wins)"},
    {.key = "per", .type = RF_SET_KEYS, .def = "[]",
     .doc = "settings of the earlier models that make a group (`[\"method\", \"sparsity\"]`); the best of each group is kept. "
            "`[]`: one group"},
    RF_SETTINGS_END
};
