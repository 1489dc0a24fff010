#define _GNU_SOURCE   /* nftw */
/* Option parsing and output helpers shared by all subcommands, and the
 * flags made from settings tables (raffle/settings.h): one table gives a
 * key's flag, its type, its default, its bounds and its --help line. */
#include "cli/cli.h"
#include "raffle/engine.h"
#include "raffle/net.h"
#include "raffle/threads.h"

#include <errno.h>
#include <float.h>
#include <ftw.h>
#include <sys/stat.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --json: a command prints one JSON object on stdout, its result or, when
 * it fails before printing one, {"ok": false, "command", "exit", "error"}
 * with the last error it reported (cli_json_end). The human-readable line
 * still goes to stderr. */
static struct { int on, printed; char cmd[32]; char err[1024]; } json_out;

static void remember(const char *fmt, va_list ap) {
    if (json_out.on) vsnprintf(json_out.err, sizeof json_out.err, fmt, ap);
}

void cli_err(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "raffle %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    va_start(ap, fmt);
    remember(fmt, ap);
    va_end(ap);
}

int cli_fail(const char *cmd, rf_ctx *ctx, rf_status s) {
    const char *msg = rf_ctx_error(ctx);
    fprintf(stderr, "raffle %s: error: %s\n", cmd, msg[0] ? msg : rf_strerror(s));
    if (json_out.on) snprintf(json_out.err, sizeof json_out.err, "%s", msg[0] ? msg : rf_strerror(s));
    return 1;
}

int cli_fail_all(const char *cmd, rf_ctx *ctx, rf_status s, const char *where) {
    const rf_diag *d = ctx->diag;
    if (!d || d->n < 2) return cli_fail(cmd, ctx, s);
    char line[RF_ERR_MAX];
    for (int i = 0; i < d->n; i++) {
        rf_diag_line(d, i, line, sizeof line);
        fprintf(stderr, "raffle %s: error: %s%s%s\n", cmd, where ? where : "", where ? ": " : "", line);
    }
    fprintf(stderr, "raffle %s: %d errors\n", cmd, d->n);
    if (json_out.on && !json_out.printed) {
        /* --json: every error, as a list */
        cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray();
        cJSON_AddBoolToObject(o, "ok", 0);
        cJSON_AddStringToObject(o, "command", json_out.cmd);
        cJSON_AddNumberToObject(o, "exit", 1);
        rf_diag_line(d, 0, line, sizeof line);
        cJSON_AddStringToObject(o, "error", line);
        for (int i = 0; a && i < d->n; i++) {
            rf_diag_line(d, i, line, sizeof line);
            cJSON_AddItemToArray(a, cJSON_CreateString(line));
        }
        cJSON_AddItemToObject(o, "errors", a);
        cli_print_json(o);
    }
    return 1;
}

void cli_print_json(cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    if (s) { fputs(s, stdout); fputc('\n', stdout); fflush(stdout); free(s); json_out.printed = 1; }
    cJSON_Delete(obj);
}

void cli_json_begin(const char *cmd) {
    json_out.on = 1;
    snprintf(json_out.cmd, sizeof json_out.cmd, "%s", cmd);
}

int cli_json_end(int rc) {
    if (!json_out.on || json_out.printed || rc == 0 || !json_out.err[0]) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 0);
    cJSON_AddStringToObject(o, "command", json_out.cmd);
    cJSON_AddNumberToObject(o, "exit", rc);
    cJSON_AddStringToObject(o, "error", json_out.err);
    cli_print_json(o);
    return rc;
}

void cli_log(void *ud, const char *line) {
    (void)ud;
    fprintf(stderr, "%s\n", line);
}

/* "weight_decay" -> "weight-decay" */
static void flag_of(const char *key, char *buf, size_t n) {
    size_t k = 0;
    for (; *key && k + 1 < n; key++) buf[k++] = *key == '_' ? '-' : *key;
    buf[k] = '\0';
}

static int omitted(const cli_tables *t, const char *key) {
    for (const char *const *o = t ? t->omit : NULL; o && *o; o++)
        if (strcmp(*o, key) == 0) return 1;
    return 0;
}

static void print_setting(const rf_setting *s) {
    char flag[64], left[96], range[256], def[128];
    flag_of(s->key, flag, sizeof flag);
    rf_setting_range(s, range, sizeof range);
    rf_setting_default_text(s, def, sizeof def);
    const char *meta = s->type == RF_SET_BOOL ? "" : s->type == RF_SET_INT ? " N" : s->type == RF_SET_NUM ? " X"
                     : s->type == RF_SET_LIST ? " A,B" : s->type == RF_SET_INTMAP ? " P=N,P=N" : " S";
    snprintf(left, sizeof left, "--%s%s%s%s", s->type == RF_SET_BOOL ? "[no-]" : "", flag, meta,
             s->alias ? (strlen(s->alias) == 1 ? ", -" : ", --") : "");
    if (s->alias) snprintf(left + strlen(left), sizeof left - strlen(left), "%s", s->alias);
    /* strip markdown for the terminal */
    char r2[256];
    size_t k = 0;
    for (const char *c = range; *c && k + 1 < sizeof r2; c++)
        if (*c != '`' && *c != '\\') r2[k++] = *c;
    r2[k] = '\0';
    char d2[128];
    k = 0;
    for (const char *c = def; *c && k + 1 < sizeof d2; c++)
        if (*c != '`') d2[k++] = *c;
    d2[k] = '\0';
    printf("  %-28s %s%s%s [%s; default %s%s%s]%s%s%s\n", left, s->doc ? s->doc : "", s->unit ? ", " : "",
           s->unit ? s->unit : "", r2, d2, (s->flags & RF_SF_OPTIONAL) && !s->def ? "" : "", "",
           s->when ? " (only when " : "", s->when ? s->when : "", s->when ? ")" : "");
}

static void print_help(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
                       const cli_tables *tabs) {
    printf("usage: raffle %s %s\n", cmd, usage ? usage : "[options]");
    if (summary) printf("\n%s\n", summary);
    printf("\noptions:\n");
    for (const cli_opt *o = opts; o && o->name; o++) {
        char left[96];
        const char *bar = strchr(o->name, '|');
        int len = bar ? (int)(bar - o->name) : (int)strlen(o->name);
        snprintf(left, sizeof left, "%s%.*s%s%s%s%s", len > 1 ? "--" : "-", len, o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "", bar ? ", --" : "", bar ? bar + 1 : "");
        printf("  %-28s %s%s\n", left, o->help ? o->help : "", (o->required & CLI_REQUIRED) ? " (required)" : "");
    }
    printf("  %-28s %s\n", "--help", "show this help");
    for (int t = 0; tabs && t < tabs->n; t++) {
        printf("\n%s:\n", tabs->title[t] ? tabs->title[t] : "settings");
        for (const rf_setting *s = tabs->tab[t]; s->key; s++) {
            if ((s->flags & RF_SF_NOCLI) || omitted(tabs, s->key)) continue;
            if (s->type != RF_SET_OBJ) { print_setting(s); continue; }
            char flag[64], left[96];
            flag_of(s->key, flag, sizeof flag);
            snprintf(left, sizeof left, "--%s-KEY VALUE", flag);
            printf("  %-28s %s (KEY: %s)\n", left, s->doc ? s->doc : "",
                   s->sub == rf_train_settings ? "a training key" : "one of its keys");
        }
    }
}

static int list_add(const char *cmd, const char *name, cli_list *l, const char *v) {
    for (const char *p = v;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (l->n == CLI_LIST_MAX || l->used + len + 1 > sizeof l->buf) { cli_err(cmd, "--%s: too many values", name); return 2; }
        memcpy(l->buf + l->used, p, len);
        l->buf[l->used + len] = '\0';
        l->v[l->n++] = l->buf + l->used;
        l->used += len + 1;
        if (!c) return 0;
        p = c + 1;
    }
}

/* An option's range: what its type holds, from 0 unless CLI_NEGATIVE_OK,
 * above 0 with CLI_POSITIVE (the smallest positive value for floats). */
static void opt_range(const cli_opt *o, double tmin, double tmax, double *lo, double *hi) {
    *lo = (o->required & CLI_NEGATIVE_OK) ? tmin : 0;
    *hi = tmax;
    if (o->required & CLI_POSITIVE) *lo = (o->type == CLI_FLOAT || o->type == CLI_DOUBLE) ? 1e-300 : 1;
}

static int set_value(const char *cmd, const cli_opt *o, const char *v) {
    /* the library's strict parser: the whole value, in the option's range,
     * never saturated; outside it is exit 2, never the default */
    char what[80];
    snprintf(what, sizeof what, "--%s", o->name);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    size_t n = strlen(v);
    double lo, hi;
    switch (o->type) {
    case CLI_STR: *(const char **)o->dest = v; return 0;
    case CLI_LIST: return list_add(cmd, o->name, (cli_list *)o->dest, v);
    case CLI_INT: {
        int64_t x;
        opt_range(o, -2147483647.0, 2147483647.0, &lo, &hi);
        if (rf_parse_i64(&ctx, v, n, (int64_t)lo, (int64_t)hi, what, &x) != RF_OK) break;
        *(int *)o->dest = (int)x; return 0;
    }
    case CLI_I64: {
        int64_t x;
        opt_range(o, -9.2e18, 9.2e18, &lo, &hi);
        if (rf_parse_i64(&ctx, v, n, (int64_t)lo, (int64_t)hi, what, &x) != RF_OK) break;
        *(int64_t *)o->dest = x; return 0;
    }
    case CLI_U64: {
        uint64_t x;
        opt_range(o, 0, 1.8e19, &lo, &hi);
        if (rf_parse_u64(&ctx, v, n, (uint64_t)lo, UINT64_MAX, what, &x) != RF_OK) break;
        *(uint64_t *)o->dest = x; return 0;
    }
    case CLI_FLOAT: case CLI_DOUBLE: {
        double x;
        double lim = o->type == CLI_FLOAT ? 3.4028234663852886e38 : 1.7976931348623157e308;
        opt_range(o, -lim, lim, &lo, &hi);
        if (rf_parse_f64(&ctx, v, n, -lim, lim, what, &x) != RF_OK) break;
        if (x < lo) { rf_error(&ctx, RF_ERR_INVALID, "%s: must be %s 0", what, lo > 0 ? ">" : ">="); break; }
        if (o->type == CLI_FLOAT) *(float *)o->dest = (float)x; else *(double *)o->dest = x;
        return 0;
    }
    case CLI_FLAG: rf_error(&ctx, RF_ERR_INVALID, "%s: takes no value", what); break;
    }
    cli_err(cmd, "invalid value '%s': %s", v, rf_ctx_error(&ctx));
    return 2;
}

/* The entry of table tab a flag name spells (key with '-' for '_', or the
 * entry's alias), with neg = 1 for "no-KEY" of a boolean. An object entry
 * with a table of its own ("finetune": the training keys) takes its keys
 * as "--finetune-epochs": then *path gets the object's keys, outermost
 * first, and *depth their number. */
static const rf_setting *find_in(const cli_tables *t, const rf_setting *tab, const char *name, size_t len, int *neg,
                                 const char **path, int *depth) {
    char key[96];
    for (int pass = 0; pass < 2; pass++) {
        const char *n = name;
        size_t l = len;
        if (pass == 1) {
            if (len <= 3 || strncmp(name, "no-", 3) != 0) break;
            n += 3;
            l -= 3;
        }
        if (l >= sizeof key) continue;
        for (size_t i = 0; i < l; i++) key[i] = n[i] == '-' ? '_' : n[i];
        key[l] = '\0';
        for (const rf_setting *s = tab; s->key; s++) {
            if ((s->flags & RF_SF_NOCLI) || (depth[0] == 0 && omitted(t, s->key))) continue;
            int hit = strcmp(s->key, key) == 0;
            if (!hit && s->alias) {
                char a[64];
                flag_of(s->alias, a, sizeof a);
                hit = strlen(a) == l && strncmp(a, n, l) == 0;
            }
            if (hit && s->type != RF_SET_OBJ && (pass == 0 || s->type == RF_SET_BOOL)) { *neg = pass; return s; }
            size_t kl = strlen(s->key);
            if (pass == 0 && s->type == RF_SET_OBJ && s->sub && *depth < 3 && l > kl + 1 && strncmp(key, s->key, kl) == 0 &&
                key[kl] == '_') {
                path[(*depth)++] = s->key;
                const rf_setting *r = find_in(t, s->sub, name + kl + 1, len - kl - 1, neg, path, depth);
                if (r) return r;
                (*depth)--;
            }
        }
    }
    return NULL;
}

static const rf_setting *find_setting(const cli_tables *t, const char *name, size_t len, int *neg, const char **path,
                                      int *depth) {
    *neg = 0;
    *depth = 0;
    for (int k = 0; t && k < t->n; k++) {
        const rf_setting *s = find_in(t, t->tab[k], name, len, neg, path, depth);
        if (s) return s;
    }
    return NULL;
}

/* Converts the text of a flag into the setting's JSON type and checks it. */
static int set_setting(const char *cmd, const rf_setting *s, const char *v, int neg, cJSON *settings) {
    char flag[80];
    snprintf(flag, sizeof flag, "--");
    flag_of(s->key, flag + 2, sizeof flag - 2);
    if (cJSON_GetObjectItemCaseSensitive(settings, s->key)) { cli_err(cmd, "%s given twice", flag); return 2; }
    cJSON *j = NULL;
    switch (s->type) {
    case RF_SET_BOOL:
        if (!v) j = cJSON_CreateBool(!neg);
        else if (!neg && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)) j = cJSON_CreateTrue();
        else if (!neg && (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)) j = cJSON_CreateFalse();
        else { cli_err(cmd, "%s: expected true or false, got '%s'", flag, v); return 2; }
        break;
    case RF_SET_NUM: case RF_SET_INT: {
        /* the library's strict parser; the setting's own bounds are checked later */
        rf_ctx pctx;
        rf_ctx_init(&pctx);
        double x;
        if (rf_parse_f64(&pctx, v, strlen(v), -DBL_MAX, DBL_MAX, flag, &x) != RF_OK) {
            cli_err(cmd, "%s: invalid number '%s'", flag, v);
            return 2;
        }
        /* a key whose 0 means "not given" (iterations: train by epochs)
         * takes no 0 here: leaving the flag out says that */
        if (x == 0 && (s->flags & RF_SF_ZERO_UNSET)) {
            cli_err(cmd, "%s: 0 means not given (%s): leave the flag out", flag, s->doc ? s->doc : s->key);
            return 2;
        }
        j = cJSON_CreateNumber(x);
        break;
    }
    case RF_SET_LIST: {
        j = cJSON_CreateArray();
        for (const char *p = v; j;) {
            const char *c = strchr(p, ',');
            char item[512];
            snprintf(item, sizeof item, "%.*s", (int)(c ? (size_t)(c - p) : strlen(p)), p);
            if (!cJSON_AddItemToArray(j, cJSON_CreateString(item))) { cJSON_Delete(j); j = NULL; }
            if (!c) break;
            p = c + 1;
        }
        break;
    }
    case RF_SET_INTMAP: {   /* PATTERN=N,PATTERN=N */
        j = cJSON_CreateObject();
        for (const char *p = v; j && *p;) {
            const char *c = strchr(p, ','), *e = strchr(p, '=');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            if (!e || e >= p + len) { cJSON_Delete(j); cli_err(cmd, "%s: expected PATTERN=N[,PATTERN=N...], got '%s'", flag, v); return 2; }
            char pat[256], num[64];
            snprintf(pat, sizeof pat, "%.*s", (int)(e - p), p);
            snprintf(num, sizeof num, "%.*s", (int)(p + len - e - 1), e + 1);
            rf_ctx pctx;
            rf_ctx_init(&pctx);
            double x;
            if (rf_parse_f64(&pctx, num, strlen(num), -DBL_MAX, DBL_MAX, flag, &x) != RF_OK) {
                cJSON_Delete(j);
                cli_err(cmd, "%s: invalid number '%s' for '%s'", flag, num, pat);
                return 2;
            }
            if (cJSON_GetObjectItemCaseSensitive(j, pat)) { cJSON_Delete(j); cli_err(cmd, "%s: '%s' given twice", flag, pat); return 2; }
            if (!cJSON_AddNumberToObject(j, pat, x)) { cJSON_Delete(j); j = NULL; }
            p += len + (c != NULL);
        }
        break;
    }
    default:
        j = cJSON_CreateString(v);
    }
    if (!j || !cJSON_AddItemToObject(settings, s->key, j)) { cJSON_Delete(j); cli_err(cmd, "out of memory"); return 1; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    if (rf_setting_check(&ctx, s, j, flag, 0) != RF_OK) { cli_err(cmd, "%s", rf_ctx_error(&ctx)); return 2; }
    return 0;
}

int cli_parse_settings(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
                       cli_tables *tabs, int argc, char **argv, const char **pos, int min_pos, int max_pos, int *done) {
    int npos = 0;
    *done = 0;
    unsigned char seen[64] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(cmd, usage, summary, opts, tabs);
            *done = 1;
            return 0;
        }
        /* one-letter options ("-e 5") are spelled with one dash */
        int is_short = a[0] == '-' && a[1] && a[1] != '-' && a[2] == '\0';
        if ((a[0] == '-' && a[1] == '-' && a[2]) || is_short) {
            const char *name = a + (is_short ? 1 : 2);
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_opt *o = NULL;
            int idx = 0;
            for (const cli_opt *p = opts; p && p->name && !o; p++, idx++)
                for (const char *n = p->name; n; n = strchr(n, '|') ? strchr(n, '|') + 1 : NULL) {
                    const char *bar = strchr(n, '|');
                    size_t nl = bar ? (size_t)(bar - n) : strlen(n);
                    if (nl == len && strncmp(n, name, len) == 0) { o = p; break; }
                }
            if (o) idx--;
            if (!o) {
                int neg, depth;
                const char *path[3];
                const rf_setting *s = find_setting(tabs, name, len, &neg, path, &depth);
                if (!s) { cli_err(cmd, "unknown option '--%.*s' (see 'raffle %s --help')", (int)len, name, cmd); return 2; }
                const char *v = eq ? eq + 1 : NULL;
                if (!v && s->type != RF_SET_BOOL) {
                    if (i + 1 >= argc) { cli_err(cmd, "--%.*s needs a value", (int)len, name); return 2; }
                    v = argv[++i];
                }
                cJSON *into = tabs->settings;
                for (int d = 0; into && d < depth; d++) {
                    cJSON *o = cJSON_GetObjectItemCaseSensitive(into, path[d]);
                    into = o ? o : cJSON_AddObjectToObject(into, path[d]);
                }
                if (!into) { cli_err(cmd, "out of memory"); return 1; }
                int rc = set_setting(cmd, s, v, neg, into);
                if (rc) return rc;
                continue;
            }
            if (idx < 64) seen[idx] = 1;
            if (o->type == CLI_FLAG) {
                if (eq) { cli_err(cmd, "--%s takes no value", o->name); return 2; }
                *(int *)o->dest = 1;
                continue;
            }
            const char *v = eq ? eq + 1 : NULL;
            if (!v) {
                if (i + 1 >= argc) { cli_err(cmd, "--%s needs a value (%s)", o->name, o->metavar ? o->metavar : "VALUE"); return 2; }
                v = argv[++i];
            }
            if (set_value(cmd, o, v)) return 2;
        } else if (a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9')) {
            cli_err(cmd, "unknown option '%s' (see 'raffle %s --help')", a, cmd);
            return 2;
        } else {
            if (npos >= max_pos) { cli_err(cmd, "unexpected argument '%s'", a); return 2; }
            pos[npos++] = a;
        }
    }
    int idx = 0;
    for (const cli_opt *p = opts; p && p->name; p++, idx++)
        if ((p->required & CLI_REQUIRED) && idx < 64 && !seen[idx]) { cli_err(cmd, "missing required option --%s", p->name); return 2; }
    if (npos < min_pos) { cli_err(cmd, "missing argument (usage: raffle %s %s)", cmd, usage ? usage : ""); return 2; }
    for (int i = npos; i < max_pos; i++) pos[i] = NULL;
    return 0;
}

int cli_parse(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
              int argc, char **argv, const char **pos, int min_pos, int max_pos, int *done) {
    return cli_parse_settings(cmd, usage, summary, opts, NULL, argc, argv, pos, min_pos, max_pos, done);
}

int cli_engine_settings(const char *cmd, const cli_list *l, cJSON *settings, int *threads) {
    if (!l->n) return 0;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_engine e;
    rf_engine_builtin(&e);
    cJSON *obj = cJSON_CreateObject();
    for (int i = 0; obj && i < l->n; i++) {
        if (rf_engine_set_kv(&ctx, &e, l->v[i]) != RF_OK) { cJSON_Delete(obj); cli_err(cmd, "--engine: %s", rf_ctx_error(&ctx)); return 2; }
        const char *eq = strchr(l->v[i], '=');
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(eq - l->v[i]), l->v[i]);
        int o = rf_engine_option_find(key);
        if (o == RF_ENGINE_THREADS) {
            /* the process's, not a setting: the same as --threads N */
            if (*threads >= 0 && *threads != e.v[o]) {
                cJSON_Delete(obj);
                cli_err(cmd, "--engine threads=%d and --threads %d disagree", e.v[o], *threads);
                return 2;
            }
            *threads = e.v[o];
            continue;
        }
        char text[32];
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
        /* the canonical JSON types: value names as strings, integers as numbers */
        cJSON *v = rf_engine_options[o].values ? cJSON_CreateString(rf_engine_value_text(&e, o, text, sizeof text))
                                               : cJSON_CreateNumber(e.v[o]);
        if (!v || !cJSON_AddItemToObject(obj, key, v)) { cJSON_Delete(v); cJSON_Delete(obj); obj = NULL; }
    }
    if (obj && !obj->child) { cJSON_Delete(obj); return 0; }   /* threads only: no settings */
    if (!obj || !cJSON_AddItemToObject(settings, "engine", obj)) { cJSON_Delete(obj); cli_err(cmd, "out of memory"); return 1; }
    return 0;
}

static volatile int stop_requested;
static void on_stop(int sig) { (void)sig; stop_requested = 1; }

volatile int *cli_stop_flag(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return &stop_requested;
}

cJSON *cli_run_kind(const char *cmd, const rf_kind *k, cJSON *settings, const char *const *parents, int n_parents,
                    const char *dir, int log_every, int threads) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    if (cli_threads(cmd, &ctx, threads)) return NULL;
    cJSON *task = cJSON_CreateObject(), *pa = cJSON_CreateArray();
    cJSON *st = rf_kind_settings(k, settings);
    rf_status s = task && pa && st ? RF_OK : rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    if (s == RF_OK) s = rf_kind_check(&ctx, k, st, "");
    for (int i = 0; s == RF_OK && i < n_parents; i++)
        if (!cJSON_AddItemToArray(pa, cJSON_CreateString(parents[i]))) s = rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    if (s == RF_OK) {
        if (cJSON_AddItemToObject(task, "settings", st)) st = NULL;
        else s = rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    }
    if (s == RF_OK) {
        if (cJSON_AddItemToObject(task, "parents", pa)) pa = NULL;
        else s = rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(st);
    cJSON_Delete(pa);
    char path[4096];
    snprintf(path, sizeof path, "%s/task.json", dir);
    char *text = s == RF_OK ? cJSON_PrintUnformatted(task) : NULL;
    cJSON_Delete(task);
    if (s == RF_OK && text) {
        /* the pinned URLs its settings name, before anything is written */
        cJSON *t = cJSON_Parse(text);
        s = cli_fetch_pinned(&ctx, cJSON_GetObjectItemCaseSensitive(t, "settings"));
        cJSON_Delete(t);
    }
    if (s == RF_OK) s = rf_mkdirs(&ctx, dir);
    if (s == RF_OK) s = text ? rf_write_file_atomic(&ctx, path, text, strlen(text)) : rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    cJSON_free(text);
    if (s == RF_OK) s = rf_task_run_dir(&ctx, dir, cli_stop_flag(), log_every);
    cJSON *metrics = NULL;
    if (s == RF_OK) {
        unsigned char *buf;
        size_t n;
        snprintf(path, sizeof path, "%s/metrics.json", dir);
        s = rf_read_file(&ctx, path, &buf, &n);
        if (s == RF_OK) {
            metrics = cJSON_ParseWithLength((const char *)buf, n);
            rf_free(buf);
            if (!metrics) s = rf_error(&ctx, RF_ERR_FORMAT, "%s: not JSON", path);
        }
    }
    if (s != RF_OK) { cli_fail(cmd, &ctx, s); return NULL; }
    return metrics;
}

/* ---- pinned URLs into the download cache ------------------------------------------ */

/* Each "URL#sha256=HEX" in v (a dataset spec: a list's entries, a
 * "cifar10:" path, or a file setting) fetched and checked. */
static rf_status fetch_value(rf_ctx *ctx, const char *v) {
    for (const char *p = v; *p;) {
        size_t len = strcspn(p, ",");
        const char *sep = strstr(p, "://");
        if (sep && sep < p + len) {
            const char *u = sep;   /* back over the scheme: "cifar10:http://..." -> "http://..." */
            while (u > p && ((u[-1] >= 'a' && u[-1] <= 'z') || (u[-1] >= 'A' && u[-1] <= 'Z') || (u[-1] >= '0' && u[-1] <= '9') ||
                             u[-1] == '+' || u[-1] == '.' || u[-1] == '-'))
                u--;
            char url[2048], hex[65], path[4096];
            RF_TRY(rf_data_pinned_parse(ctx, u, len - (size_t)(u - p), url, sizeof url, hex));
            rf_fetch_opts o;
            rf_fetch_opts_default(&o);
            o.sha256 = hex;
            RF_TRY(rf_fetch_url(ctx, url, &o, path, sizeof path));
        }
        p += len + (p[len] == ',');
    }
    return RF_OK;
}

rf_status cli_fetch_pinned(rf_ctx *ctx, const cJSON *settings) {
    for (const cJSON *c = settings ? settings->child : NULL; c; c = c->next) {
        if (cJSON_IsString(c) && strstr(c->valuestring, "://")) RF_TRY(fetch_value(ctx, c->valuestring));
        if (cJSON_IsArray(c))
            for (const cJSON *e = c->child; e; e = e->next)
                if (cJSON_IsString(e) && strstr(e->valuestring, "://")) RF_TRY(fetch_value(ctx, e->valuestring));
    }
    return RF_OK;
}

/* OpenBLAS exports this; declared here to avoid depending on its header. */
extern void openblas_set_num_threads(int);

int cli_threads(const char *cmd, rf_ctx *ctx, int threads) {
    if (threads > RF_POOL_MAX) { cli_err(cmd, "--threads %d: at most %d", threads, RF_POOL_MAX); return 2; }
    rf_engine e;
    rf_engine_builtin(&e);
    if (threads >= 0) e.v[RF_ENGINE_THREADS] = threads;
    else if (ctx) e.v[RF_ENGINE_THREADS] = ctx->engine.v[RF_ENGINE_THREADS];
    if (ctx) ctx->engine.v[RF_ENGINE_THREADS] = e.v[RF_ENGINE_THREADS];
    openblas_set_num_threads(rf_engine_threads(&e));
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

void cli_rmtree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }
