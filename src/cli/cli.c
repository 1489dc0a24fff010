/* Option parsing and output helpers shared by all subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_err(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "raffle %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const char *cmd, rf_ctx *ctx, rf_status s) {
    const char *msg = rf_ctx_error(ctx);
    fprintf(stderr, "raffle %s: error: %s\n", cmd, msg[0] ? msg : rf_strerror(s));
    return 1;
}

void cli_print_json(cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    if (s) { fputs(s, stdout); fputc('\n', stdout); fflush(stdout); free(s); }
    cJSON_Delete(obj);
}

void cli_log(void *ud, const char *line) {
    (void)ud;
    fprintf(stderr, "%s\n", line);
}

static void print_help(const char *cmd, const char *usage, const char *summary, const cli_opt *opts) {
    printf("usage: raffle %s %s\n", cmd, usage ? usage : "[options]");
    if (summary) printf("\n%s\n", summary);
    printf("\noptions:\n");
    for (const cli_opt *o = opts; o && o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s", o->name[1] ? "--" : "-", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-26s %s%s\n", left, o->help ? o->help : "", o->required ? " (required)" : "");
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

static int set_value(const char *cmd, const cli_opt *o, const char *v) {
    /* the library's strict parser: the whole value, in range, never saturated */
    char what[80];
    snprintf(what, sizeof what, "--%s", o->name);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    size_t n = strlen(v);
    switch (o->type) {
    case CLI_STR: *(const char **)o->dest = v; return 0;
    case CLI_INT: {
        int64_t x;
        if (rf_parse_i64(&ctx, v, n, -2147483647LL, 2147483647LL, what, &x) != RF_OK) break;
        *(int *)o->dest = (int)x; return 0;
    }
    case CLI_I64: {
        int64_t x;
        if (rf_parse_i64(&ctx, v, n, INT64_MIN, INT64_MAX, what, &x) != RF_OK) break;
        *(int64_t *)o->dest = x; return 0;
    }
    case CLI_U64: {
        uint64_t x;
        if (rf_parse_u64(&ctx, v, n, 0, UINT64_MAX, what, &x) != RF_OK) break;
        *(uint64_t *)o->dest = x; return 0;
    }
    case CLI_FLOAT: case CLI_DOUBLE: {
        double x;
        double lim = o->type == CLI_FLOAT ? 3.4028234663852886e38 : 1.7976931348623157e308;
        if (rf_parse_f64(&ctx, v, n, -lim, lim, what, &x) != RF_OK) break;
        if (o->type == CLI_FLOAT) *(float *)o->dest = (float)x; else *(double *)o->dest = x;
        return 0;
    }
    case CLI_FLAG: rf_error(&ctx, RF_ERR_INVALID, "%s: takes no value", what); break;
    }
    cli_err(cmd, "invalid value '%s': %s", v, rf_ctx_error(&ctx));
    return 2;
}

int cli_parse(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
              int argc, char **argv, const char **pos, int min_pos, int max_pos, int *done) {
    int npos = 0;
    *done = 0;
    unsigned char seen[64] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(cmd, usage, summary, opts);
            *done = 1;
            return 0;
        }
        /* one-letter options ("-o DIR") are spelled with one dash */
        int is_short = a[0] == '-' && a[1] && a[1] != '-' && a[2] == '\0';
        if ((a[0] == '-' && a[1] == '-' && a[2]) || is_short) {
            const char *name = a + (is_short ? 1 : 2);
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_opt *o = NULL;
            int idx = 0;
            for (const cli_opt *p = opts; p && p->name; p++, idx++)
                if (strlen(p->name) == len && strncmp(p->name, name, len) == 0) { o = p; break; }
            if (!o) { cli_err(cmd, "unknown option '--%.*s' (see 'raffle %s --help')", (int)len, name, cmd); return 2; }
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
        if (p->required && idx < 64 && !seen[idx]) { cli_err(cmd, "missing required option --%s", p->name); return 2; }
    if (npos < min_pos) { cli_err(cmd, "missing argument (usage: raffle %s %s)", cmd, usage ? usage : ""); return 2; }
    for (int i = npos; i < max_pos; i++) pos[i] = NULL;
    return 0;
}

cJSON *cli_run_task(const char *cmd, rf_task_fn fn, const cJSON *settings, const char *data, int64_t train_limit,
                    const char *const *parents, int n_parents, const char *out_dir) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_task_io io = {.settings = settings, .n_parents = n_parents, .parent_ckpts = parents,
                     .out_dir = out_dir, .log = cli_log};
    rf_dataset *train = NULL, *test = NULL, head;
    cJSON *metrics = cJSON_CreateObject();
    rf_status s = metrics ? rf_data_load(&ctx, data, &train, &test) : rf_error(&ctx, RF_ERR_NOMEM, "metrics");
    if (s == RF_OK && train_limit > 0 && train_limit < train->n) { head = rf_dataset_head(train, train_limit); io.train = &head; }
    else io.train = train;
    io.test = test;
    if (s == RF_OK) s = fn(&ctx, &io, metrics);
    rf_dataset_free(train);
    rf_dataset_free(test);
    if (s != RF_OK) { cJSON_Delete(metrics); cli_fail(cmd, &ctx, s); return NULL; }
    return metrics;
}

/* OpenBLAS exports this; declared here to avoid depending on its header. */
extern void openblas_set_num_threads(int);

void cli_set_threads(int threads) {
    openblas_set_num_threads(threads > 0 ? threads : 1);
}
