/* raffle fetch URL [-o DIR] [--checkpoints]: downloads a sweep's aggregated
 * report (and optionally every task's checkpoint) from a remote store. */
#include "cli/cli.h"
#include "raffle/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void progress(void *ud, uint64_t done, uint64_t total) {
    const char *name = ud;
    if (!isatty(2) || total < (1u << 20)) return;
    int w = 30, fill = (int)((double)done / (double)total * w);
    fprintf(stderr, "\r%-24.24s [%.*s%*s] %5.1f%%", name, fill, "##############################", w - fill, "",
            100.0 * (double)done / (double)total);
    if (done >= total) fputc('\n', stderr);
}

static int get_one(rf_ctx *ctx, const char *base, const char *rel, const char *dir, int quiet_missing) {
    char url[4096], dest[4096];
    snprintf(url, sizeof url, "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", rel);
    snprintf(dest, sizeof dest, "%s/%s", dir, rel);
    char *slash = strrchr(dest, '/');
    *slash = '\0';
    rf_status s = rf_mkdirs(ctx, dest);
    *slash = '/';
    if (s) return cli_fail("fetch", ctx, s);
    rf_fetch_opts o;
    rf_fetch_opts_default(&o);
    o.progress = progress;
    o.progress_ud = (void *)rel;
    s = rf_fetch_to_file(ctx, url, &o, dest);
    if (s == RF_ERR_NOTFOUND && quiet_missing) return 0;
    if (s) return cli_fail("fetch", ctx, s);
    fprintf(stderr, "fetched %s\n", dest);
    return 0;
}

int rf_cmd_fetch(int argc, char **argv) {
    const char *dir = ".";
    int ckpts = 0;
    cli_opt opts[] = {
        {"o", CLI_STR, &dir, "DIR", "directory to write into (default: .)", 0},
        {"checkpoints", CLI_FLAG, &ckpts, NULL, "also download every task's model.rckpt", 0},
        {0}};
    const char *pos[1];
    int done;
    int rc = cli_parse("fetch", "URL [-o DIR] [--checkpoints]",
                       "Downloads report.html, report.json and report.csv of a sweep from a remote\n"
                       "(http, https, file) store URL such as http://host/store/NAME/.",
                       opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_status s = rf_url_check(&ctx, pos[0]);
    if (s) return cli_fail("fetch", &ctx, s);
    static const char *files[] = {"report.json", "report.csv", "report.html"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if ((rc = get_one(&ctx, pos[0], files[i], dir, 0)) != 0) return rc;
    if (!ckpts) return 0;
    /* the task ids come from the report just fetched */
    char path[4096];
    snprintf(path, sizeof path, "%s/report.json", dir);
    unsigned char *buf; size_t n;
    if ((s = rf_read_file(&ctx, path, &buf, &n)) != RF_OK) return cli_fail("fetch", &ctx, s);
    char (*ids)[17];
    int n_ids;
    s = rf_fetch_index_parse(&ctx, (const char *)buf, n, &ids, &n_ids);
    rf_free(buf);
    if (s) return cli_fail("fetch", &ctx, s);
    for (int i = 0; i < n_ids && rc == 0; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "tasks/%s/model.rckpt", ids[i]);
        rc = get_one(&ctx, pos[0], rel, dir, 1);
    }
    rf_free(ids);
    return rc;
}
