/* Results store: atomic files, path-escape and symlink refusal, the ledger's
 * append/replay including a torn last line. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "raffle/store.h"

static char root[256];

static void setup(void) {
    snprintf(root, sizeof root, "/tmp/raffle-test-store-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}
static void teardown(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.' || strncmp(e->d_name, ".tmp", 4) == 0;
    closedir(d);
    return n;
}

TestSuite(store, .init = setup, .fini = teardown);

Test(store, write_read_roundtrip_and_overwrite) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_store *s;
    cr_assert_eq(rf_store_open(&ctx, root, "sw", 1, &s), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_store_write(&ctx, s, "tasks/00112233aabbccdd/metrics.json", "{\"a\":1}", 7), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_store_write(&ctx, s, "tasks/00112233aabbccdd/metrics.json", "{\"a\":22}", 8), RF_OK);
    unsigned char *b; size_t n;
    cr_assert_eq(rf_store_read(&ctx, s, "tasks/00112233aabbccdd/metrics.json", &b, &n), RF_OK);
    cr_assert_eq(n, 8);
    cr_assert_eq(memcmp(b, "{\"a\":22}", 8), 0);
    rf_free(b);
    uint64_t size;
    cr_assert_eq(rf_store_stat(s, "tasks/00112233aabbccdd/metrics.json", &size), 0);
    cr_assert_eq(size, 8);
    cr_assert_eq(rf_store_stat(s, "tasks/00112233aabbccdd/none", &size), -1);
    cr_assert_eq(rf_store_read(&ctx, s, "nothing.json", &b, &n), RF_ERR_NOTFOUND);
    /* no temp file is left behind */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sw/tasks/00112233aabbccdd", root);
    cr_assert_eq(count_entries(dir), 1);
    /* a streamed file appears only at commit; abort leaves nothing */
    rf_store_file *f;
    cr_assert_eq(rf_store_file_begin(&ctx, s, "big.bin", &f), RF_OK);
    cr_assert_eq(rf_store_file_write(&ctx, f, "abc", 3), RF_OK);
    cr_assert_eq(rf_store_stat(s, "big.bin", NULL), -1);
    cr_assert_eq(rf_store_file_commit(&ctx, f), RF_OK);
    cr_assert_eq(rf_store_stat(s, "big.bin", &size), 0);
    cr_assert_eq(size, 3);
    cr_assert_eq(rf_store_file_begin(&ctx, s, "other.bin", &f), RF_OK);
    rf_store_file_abort(f);
    snprintf(dir, sizeof dir, "%s/sw", root);
    cr_assert_eq(count_entries(dir), 2);  /* tasks, big.bin */
    rf_store_close(s);
}

Test(store, rejects_paths_that_escape) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_store *s;
    static const char *const bad_names[] = {"..", ".", "a/b", "/abs", "", ".hidden", "x y", NULL};
    for (int i = 0; bad_names[i]; i++) cr_assert_eq(rf_store_open(&ctx, root, bad_names[i], 1, &s), RF_ERR_INVALID, "%s", bad_names[i]);
    cr_assert_eq(rf_store_open(&ctx, root, "ok", 1, &s), RF_OK);
    static const char *const bad[] = {"../x", "/etc/passwd", "tasks/../../x", "tasks//x", ".tmp", "tasks/.x/y", "a/", "", NULL};
    for (int i = 0; bad[i]; i++) {
        cr_assert_eq(rf_store_write(&ctx, s, bad[i], "x", 1), RF_ERR_INVALID, "accepted \"%s\"", bad[i]);
        unsigned char *b; size_t n;
        cr_assert_neq(rf_store_read(&ctx, s, bad[i], &b, &n), RF_OK);
    }
    char outside[512];
    snprintf(outside, sizeof outside, "%s/x", root);
    cr_assert_eq(access(outside, F_OK), -1);
    rf_store_close(s);
}

Test(store, refuses_planted_symlinks) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_store *s;
    char p[512], q[512];
    snprintf(p, sizeof p, "%s/outside", root);
    cr_assert_eq(mkdir(p, 0755), 0);
    cr_assert_eq(rf_store_open(&ctx, root, "st", 1, &s), RF_OK);
    /* a directory symlink inside the store */
    snprintf(q, sizeof q, "%s/st/tasks", root);
    cr_assert_eq(symlink(p, q), 0);
    cr_assert_neq(rf_store_write(&ctx, s, "tasks/0000000000000001/metrics.json", "x", 1), RF_OK);
    cr_assert(strstr(ctx.err, "symlink") != NULL, "%s", ctx.err);
    cr_assert_eq(count_entries(p), 0);
    /* a file symlink: reads refuse it, writes replace the link, not its target */
    snprintf(p, sizeof p, "%s/secret", root);
    FILE *f = fopen(p, "w");
    fputs("secret", f);
    fclose(f);
    snprintf(q, sizeof q, "%s/st/job.json", root);
    cr_assert_eq(symlink(p, q), 0);
    unsigned char *b; size_t n;
    cr_assert_neq(rf_store_read(&ctx, s, "job.json", &b, &n), RF_OK);
    cr_assert_eq(rf_store_stat(s, "job.json", NULL), -1);
    cr_assert_eq(rf_store_write(&ctx, s, "job.json", "{}", 2), RF_OK);
    struct stat st;
    cr_assert_eq(lstat(q, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    f = fopen(p, "r");
    char buf[16] = {0};
    cr_assert_not_null(fgets(buf, sizeof buf, f));
    fclose(f);
    cr_assert_str_eq(buf, "secret");
    /* the store directory itself planted as a symlink */
    snprintf(q, sizeof q, "%s/linked", root);
    snprintf(p, sizeof p, "%s/outside", root);
    cr_assert_eq(symlink(p, q), 0);
    rf_store *s2;
    cr_assert_neq(rf_store_open(&ctx, root, "linked", 1, &s2), RF_OK);
    rf_store_close(s);
}

typedef struct seen { int n; char ev[8][16]; int num[8]; } seen;
static int collect(void *ud, const cJSON *ev) {
    seen *s = ud;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ev, "event");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, "v");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "time");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(ev, "k");
    cr_assert(cJSON_IsNumber(v) && v->valueint == RF_LEDGER_VERSION);
    cr_assert(cJSON_IsString(t) && strlen(t->valuestring) == 24);
    if (s->n < 8) {
        snprintf(s->ev[s->n], sizeof s->ev[0], "%s", e->valuestring);
        s->num[s->n] = cJSON_IsNumber(k) ? k->valueint : -1;
    }
    s->n++;
    return 0;
}

static void append(rf_store *s, const char *event, int k) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", event);
    cJSON_AddNumberToObject(ev, "k", k);
    cr_assert_eq(rf_store_ledger_append(&ctx, s, ev, 1), RF_OK, "%s", ctx.err);
    cJSON_Delete(ev);
}

Test(store, ledger_append_replay_and_torn_line) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_store *s;
    cr_assert_eq(rf_store_open(&ctx, root, "led", 1, &s), RF_OK);
    seen z = {0};
    int bad = -1;
    cr_assert_eq(rf_store_ledger_replay(&ctx, s, collect, &z, &bad), RF_OK);   /* no ledger yet */
    cr_assert_eq(z.n, 0);
    cJSON *env = cJSON_CreateObject();
    cJSON_AddStringToObject(env, "slurm_job_id", "42");
    cr_assert_eq(rf_store_set_env(&ctx, s, env), RF_OK);
    cJSON_Delete(env);
    append(s, "sweep", 0);
    append(s, "started", 1);
    append(s, "done", 2);
    rf_store_close(s);
    /* a crash in the middle of an append: a line with no newline */
    char p[512];
    snprintf(p, sizeof p, "%s/led/ledger.jsonl", root);
    FILE *f = fopen(p, "a");
    fputs("{\"v\":1,\"event\":\"do", f);
    fclose(f);
    cr_assert_eq(rf_store_open(&ctx, root, "led", 0, &s), RF_OK);
    seen a = {0};
    cr_assert_eq(rf_store_ledger_replay(&ctx, s, collect, &a, &bad), RF_OK);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(bad, 1);
    cr_assert_str_eq(a.ev[0], "sweep");
    cr_assert_str_eq(a.ev[2], "done");
    cr_assert_eq(a.num[1], 1);
    /* the next append cuts the torn line first and survives intact */
    append(s, "failed", 3);
    seen b = {0};
    cr_assert_eq(rf_store_ledger_replay(&ctx, s, collect, &b, &bad), RF_OK);
    cr_assert_eq(b.n, 4);
    cr_assert_eq(bad, 0, "the torn line is still in the ledger");
    cr_assert_str_eq(b.ev[3], "failed");
    cr_assert_eq(b.num[3], 3);
    unsigned char *buf; size_t n;
    cr_assert_eq(rf_store_read(&ctx, s, "ledger.jsonl", &buf, &n), RF_OK);
    cr_assert(strstr((char *)buf, "\"slurm_job_id\":\"42\"") != NULL);   /* env on the sweep line */
    cr_assert_eq(buf[n - 1], '\n');
    cr_assert(strstr((char *)buf, "\"event\":\"do\n") == NULL && strstr((char *)buf, "\"do{") == NULL);
    rf_free(buf);
    rf_store_close(s);
}

Test(store, open_path_and_task_rel) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_store *s;
    char p[512], rel[96];
    snprintf(p, sizeof p, "%s/byname/", root);
    cr_assert_eq(rf_store_open_path(&ctx, p, 1, &s), RF_OK, "%s", ctx.err);
    rf_store_task_rel(rel, sizeof rel, 0x0123456789abcdefull, "model.rckpt");
    cr_assert_str_eq(rel, "tasks/0123456789abcdef/model.rckpt");
    rf_store_close(s);
    snprintf(p, sizeof p, "%s/missing", root);
    cr_assert_eq(rf_store_open_path(&ctx, p, 0, &s), RF_ERR_NOTFOUND);
}
