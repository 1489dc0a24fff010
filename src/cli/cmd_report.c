/* raffle report STORE/NAME: regenerates report.json, report.csv and
 * report.html from a sweep's store (job.json, ledger, metrics).
 * raffle report --compare A B ... --out DIR: one report over several
 * sweeps (stores of different days or clusters), written to DIR, with the
 * sweep as a grouping key and links into each store. */
#include "cli/cli.h"
#include "raffle/report.h"
#include "raffle/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_COMPARE = 16 };

/* The path from directory `from` to directory `to` ("../a/"), both
 * existing; "" when they are the same. Returns 0 when it does not fit. */
static int rel_dir(const char *from, const char *to, char *out, size_t n) {
    char f[PATH_MAX], t[PATH_MAX];
    if (!realpath(from, f) || !realpath(to, t)) return 0;
    /* the longest common run of whole components */
    size_t c = 0;
    for (size_t i = 0;; i++) {
        int fe = f[i] == '/' || !f[i], te = t[i] == '/' || !t[i];
        if (fe && te) c = i;
        if (!f[i] || !t[i] || f[i] != t[i]) break;
    }
    int ups = 0;
    for (const char *p = f + c; *p; p++) ups += *p == '/';
    const char *rest = t + c + (t[c] == '/');
    size_t len = 0;
    for (int k = 0; k < ups; k++) {
        int w = snprintf(out + len, n - len, "../");
        if (w < 0 || (size_t)w >= n - len) return 0;
        len += (size_t)w;
    }
    int w = snprintf(out + len, n - len, "%s%s", rest, rest[0] ? "/" : "");
    return w >= 0 && (size_t)w < n - len;
}

/* The last k components of path (no trailing slash). */
static const char *tail(const char *path, int k) {
    const char *p = path + strlen(path);
    while (p > path && k > 0) {
        p--;
        if (*p == '/' && --k == 0) return p + 1;
    }
    return path;
}
/* Whether dirs[i]'s last k components differ from every other's. */
static int unique(const char *const *dirs, int n, int i, int k) {
    const char *a = tail(dirs[i], k);
    for (int j = 0; j < n; j++)
        if (j != i && strcmp(tail(dirs[j], k), a) == 0) return 0;
    return 1;
}

static int compare(int n, const char *const *dirs, const char *out, int json) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *st[MAX_COMPARE] = {0};
    rf_report_source src[MAX_COMPARE];
    char links[MAX_COMPARE][PATH_MAX];
    rf_status s = rf_mkdirs(&ctx, out);
    for (int i = 0; !s && i < n; i++) {
        s = rf_store_open_path(&ctx, dirs[i], 0, &st[i]);
        if (s) break;
        if (!rel_dir(out, dirs[i], links[i], sizeof links[i])) { s = rf_error(&ctx, RF_ERR_IO, "%s: cannot resolve the path", dirs[i]); break; }
        /* a sweep is named by its store's name; stores of the same name
         * (two clusters' results/demo) by as many trailing components of
         * their paths as tell them apart */
        const char *name = tail(dirs[i], 1);
        for (int depth = 2; depth < 64 && !unique(dirs, n, i, depth - 1); depth++) name = tail(dirs[i], depth);
        src[i] = (rf_report_source){.store = st[i], .sweep = name, .link = links[i]};
    }
    cJSON *rep = NULL;
    if (!s) s = rf_report_build_sources(&ctx, src, n, &rep);
    if (!s) s = rf_report_write_dir(&ctx, out, rep);
    for (int i = 0; i < n; i++) rf_store_close(st[i]);
    if (s) { cJSON_Delete(rep); return cli_fail("report", &ctx, s); }
    if (json) cli_print_json(rep);
    else {
        printf("%s/report.json\n%s/report.csv\n%s/report.html\n", out, out, out);
        cJSON_Delete(rep);
    }
    return 0;
}

int rf_cmd_report(int argc, char **argv) {
    int done = 0, json = 0, cmp = 0;
    const char *out = NULL;
    const char *pos[MAX_COMPARE];
    cli_opt opts[] = {
        {"compare", CLI_FLAG, &cmp, NULL, "one report over every STORE/NAME given (the sweep is a grouping key); needs --out", 0},
        {"out", CLI_STR, &out, "DIR", "with --compare: the directory the report goes to", 0},
        {"json", CLI_FLAG, &json, NULL, "print the report object (report.json's content) on one line", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("report", "STORE/NAME | --compare STORE/A STORE/B ... --out DIR",
                       "Rebuilds a sweep's report.{json,csv,html} from its results store, or builds one report over\n"
                       "several sweeps.", opts, argc, argv, pos, 1, MAX_COMPARE, &done);
    if (rc || done) return rc;
    int n = 0;
    while (n < MAX_COMPARE && pos[n]) n++;
    if (cmp) {
        if (!out) { cli_err("report", "--compare needs --out DIR (where the comparison's report goes)"); return 2; }
        if (n < 2) { cli_err("report", "--compare needs at least two stores"); return 2; }
        char dirs[MAX_COMPARE][PATH_MAX];
        const char *dp[MAX_COMPARE];
        for (int i = 0; i < n; i++) {
            size_t l = strlen(pos[i]);
            while (l > 1 && pos[i][l - 1] == '/') l--;
            if (l >= PATH_MAX) { cli_err("report", "%s: path too long", pos[i]); return 2; }
            memcpy(dirs[i], pos[i], l);
            dirs[i][l] = '\0';
            dp[i] = dirs[i];
        }
        return compare(n, dp, out, json);
    }
    if (n > 1) { cli_err("report", "more than one store: use --compare A B ... --out DIR"); return 2; }
    if (out) { cli_err("report", "--out is for --compare (a single sweep's report is written into its store)"); return 2; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s;
    rf_status st = rf_store_open_path(&ctx, pos[0], 0, &s);
    if (st) return cli_fail("report", &ctx, st);
    st = rf_report_write(&ctx, s, NULL);
    if (!st && json) {
        cJSON *r;
        st = rf_report_build(&ctx, s, NULL, &r);
        if (!st) cli_print_json(r);
    }
    rf_store_close(s);
    if (st) return cli_fail("report", &ctx, st);
    if (!json) printf("%s/report.json\n%s/report.csv\n%s/report.html\n", pos[0], pos[0], pos[0]);
    return 0;
}
