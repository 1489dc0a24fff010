/* Issue 19 ("sweeps a cluster user can trust"): one suite per defect of the
 * coordinator, store, net and core layers that a unit test can reach. Each
 * test fails on the code before the fix (docs/hardening.md, "Issue 19: which
 * test covers which defect"); the multi-rank behaviour is checked under
 * mpirun by tests/integration/sweep_trust.sh and its neighbours.
 *
 *   d2  walltime_rule      coord_walltime_rule / coord_estimate
 *   d3  file_identity      spec / .npy / descriptor contents and the format
 *                          versions in task ids; one read per file; pinned digests
 *   d6  store_lock         one sweep per store, the holder named, no stale lock
 *   d7  memory_cap         a checkpoint's spec against its directory; the total
 *   d8  url_scheme         ftp:// and friends are not paths
 *   d9  fetch_part         no *.part left; the full-disk reason
 *   d10 fifo               a FIFO job file is refused without blocking
 *   d12 numbers            one strict parser, no saturation
 *   d13 stale_temp         temp files of dead writers go, a live writer's stay
 *   d14 child_class        signals classified by what happened
 *   d15 mirror_frozen      a frozen WebDAV server never blocks the caller */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "coord/coord_internal.h"
#include "raffle/ckpt.h"
#include "raffle/data.h"
#include "raffle/job.h"
#include "raffle/net.h"
#include "raffle/nn.h"
#include "raffle/prune.h"
#include "raffle/store.h"
#include "raffle/train.h"

#define MIB (1024ull * 1024ull)

static void mktemp_dir(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/raffle-trust-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(buf));
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A pid that belonged to a process which has exited and been reaped. */
static pid_t dead_pid(void) {
    pid_t p = fork();
    cr_assert(p >= 0);
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

/* ---- d3: the contents of the files a task reads are part of its id --------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* The spec of the repro: 784 -> units -> 10. */
static void write_spec(const char *path, int units) {
    char buf[512];
    snprintf(buf, sizeof buf, "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},"
             "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":%d},{\"type\":\"relu\"},"
             "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}", units);
    write_text(path, buf);
}

/* A job text that must parse (pins: see rf_job_parse_pinned). Free with rf_job_free. */
static rf_job *parse_ok(const char *text, const char *pins) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    rf_status s = rf_job_parse_pinned(&ctx, text, strlen(text), "d3", pins, &j);
    cr_assert_eq(s, RF_OK, "%s", rf_ctx_error(&ctx));
    return j;
}

/* The first task's id of a job over `dataset` and `model`. */
static uint64_t first_id(const char *dataset, const char *model, const char *pins, char **inputs) {
    char text[4096];
    snprintf(text, sizeof text, "{\"name\":\"d3\",\"dataset\":\"%s\",\"model\":\"%s\",\"train\":{\"iterations\":5},"
             "\"experiments\":[{\"kind\":\"train\"}]}", dataset, model);
    rf_job *j = parse_ok(text, pins);
    uint64_t id = j->tasks[0].id;
    if (inputs) *inputs = j->inputs_json ? rf_strdup(j->inputs_json) : NULL;
    rf_job_free(j);
    return id;
}

Test(file_identity, editing_a_spec_file_changes_the_id) {
    char d[64], m[128];
    mktemp_dir(d, sizeof d, "d3spec");
    snprintf(m, sizeof m, "%s/m.json", d);
    write_spec(m, 32);
    uint64_t a = first_id("synthetic:256", m, NULL, NULL);
    cr_assert_eq(first_id("synthetic:256", m, NULL, NULL), a, "same content, same id");
    write_spec(m, 64);   /* the edit: 32 -> 64 units, same path */
    uint64_t b = first_id("synthetic:256", m, NULL, NULL);
    cr_assert_neq(a, b, "an edited spec reused the old task");
    write_spec(m, 32);
    cr_assert_eq(first_id("synthetic:256", m, NULL, NULL), a, "the id is of the content, not of the edit");
    rm_rf(d);
}

static void write_npy_f32(const char *path, int rows, int cols, float v) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_tensor *t = NULL;
    cr_assert_eq(rf_tensor_new(&ctx, RF_F32, 2, (int64_t[]){rows, cols}, &t), RF_OK);
    for (int64_t i = 0; i < rf_tensor_numel(t); i++) ((float *)t->data)[i] = v;
    cr_assert_eq(rf_npy_write(&ctx, path, t), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_tensor_free(t);
}

Test(file_identity, editing_an_npy_or_descriptor_dataset_changes_the_id) {
    char d[64], x[4][128], list[600], desc[128], dtext[256];
    mktemp_dir(d, sizeof d, "d3npy");
    static const char *const names[4] = {"trx", "try", "tex", "tey"};
    for (int i = 0; i < 4; i++) {
        snprintf(x[i], sizeof x[i], "%s/%s.npy", d, names[i]);
        write_npy_f32(x[i], 4, 3, 1.0f);
    }
    snprintf(list, sizeof list, "%s,%s,%s,%s", x[0], x[1], x[2], x[3]);
    uint64_t a = first_id(list, "lenet-300-100", NULL, NULL);
    write_npy_f32(x[2], 4, 3, 2.0f);   /* the test inputs change */
    cr_assert_neq(first_id(list, "lenet-300-100", NULL, NULL), a, "an edited .npy file reused the old task");
    /* a descriptor: its own bytes and the files it names */
    snprintf(desc, sizeof desc, "%s/d.json", d);
    write_text(desc, "{\"train_x\":\"trx.npy\",\"train_y\":\"try.npy\",\"test_x\":\"tex.npy\",\"test_y\":\"tey.npy\"}");
    uint64_t b = first_id(desc, "lenet-300-100", NULL, NULL);
    write_npy_f32(x[0], 4, 3, 3.0f);
    uint64_t c = first_id(desc, "lenet-300-100", NULL, NULL);
    cr_assert_neq(b, c, "a file named by the descriptor changed, the id did not");
    snprintf(dtext, sizeof dtext, "{\"train_x\":\"tex.npy\",\"train_y\":\"try.npy\",\"test_x\":\"trx.npy\",\"test_y\":\"tey.npy\"}");
    write_text(desc, dtext);
    cr_assert_neq(first_id(desc, "lenet-300-100", NULL, NULL), c, "an edited descriptor reused the old task");
    rm_rf(d);
}

/* The distill task's id of a job distilling from the teacher checkpoint at ck. */
static uint64_t distill_id(const char *ck) {
    char text[1024];
    snprintf(text, sizeof text, "{\"dataset\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"experiments\":"
             "[{\"kind\":\"distill\",\"baseline\":false,\"teacher\":{\"checkpoint\":\"%s\"}}]}", ck);
    rf_job *j = parse_ok(text, NULL);
    cr_assert_eq(j->n_tasks, 1, "a teacher checkpoint is not trained as a task");
    cr_assert_eq(j->tasks[0].n_parents, 0);
    uint64_t id = j->tasks[0].id;
    rf_job_free(j);
    return id;
}

Test(file_identity, a_teacher_checkpoint_is_part_of_the_id) {
    char d[64], ck[128];
    mktemp_dir(d, sizeof d, "d3teacher");
    snprintf(ck, sizeof ck, "%s/t.rckpt", d);
    write_text(ck, "teacher one");
    uint64_t a = distill_id(ck);
    write_text(ck, "teacher two");
    cr_assert_neq(distill_id(ck), a, "a replaced teacher checkpoint reused the old student");
    rm_rf(d);
}

Test(file_identity, a_missing_file_is_an_error_naming_it) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    const char *text = "{\"dataset\":\"/nonexistent/a.npy,/nonexistent/b.npy,/nonexistent/c.npy,/nonexistent/d.npy\","
                       "\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"train\"}]}";
    cr_assert_neq(rf_job_parse(&ctx, text, strlen(text), "x", &j), RF_OK);
    cr_assert_null(j);
    cr_assert(strstr(rf_ctx_error(&ctx), "/nonexistent/a.npy"), "%s", rf_ctx_error(&ctx));
}

Test(file_identity, jobs_without_files_keep_their_ids) {
    /* ids published before file contents were hashed (computed by the code
     * before the change): a job naming no file must not rerun its tasks */
    const char *text = "{\"name\":\"g\",\"dataset\":\"synthetic:256\",\"model\":\"lenet-300-100\",\"train\":{\"iterations\":5},"
                       "\"experiments\":[{\"kind\":\"prune\",\"method\":\"magnitude\",\"sparsity\":0.5},{\"kind\":\"noop\"}]}";
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    cr_assert_eq(rf_job_parse(&ctx, text, strlen(text), NULL, &j), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(j->n_tasks, 3);
    char hx[17];
    rf_job_id_hex(j->tasks[0].id, hx);
    cr_assert_str_eq(hx, "bf71bde11f9195a5");
    rf_job_id_hex(j->tasks[1].id, hx);
    cr_assert_str_eq(hx, "0f423b3e88357f55");
    cr_assert_null(j->inputs_json, "no file, no inputs");
    rf_job_free(j);
}

Test(file_identity, format_versions_are_in_the_id) {
    char a[64], b[64], c[64];
    int la = rf_plan_id_tag(1, 1, a, sizeof a), lb = rf_plan_id_tag(1, 2, b, sizeof b), lc = rf_plan_id_tag(2, 1, c, sizeof c);
    cr_assert_str_eq(a, "rckpt-v1\n", "engine version 1 is the tag ids were published with");
    cr_assert_eq(la, 9);
    cr_assert(lb != la && strcmp(a, b) != 0, "a new engine format version must change every id");
    cr_assert(lc == la && strcmp(a, c) != 0, "a new checkpoint version must change every id");
    cr_assert_eq(rf_hash64(a, (size_t)la, 0xcbf29ce484222325ull) == rf_hash64(b, (size_t)lb, 0xcbf29ce484222325ull), 0);
}

Test(file_identity, each_file_is_read_once_and_pins_replace_reading) {
    char d[64], m[128];
    mktemp_dir(d, sizeof d, "d3once");
    snprintf(m, sizeof m, "%s/m.json", d);
    write_spec(m, 32);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_plan *p = rf_plan_new(&ctx);
    rf_inputs *in = rf_inputs_new();
    rf_plan_set_inputs(p, in);
    for (int seed = 0; seed < 5; seed++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "data", "synthetic:256");
        cJSON_AddStringToObject(s, "model", m);
        cJSON_AddNumberToObject(s, "seed", seed);
        cr_assert_geq(rf_plan_add(p, RF_JOB_TRAIN, s, NULL, 0, 1.0), 0, "%s", rf_ctx_error(&ctx));
    }
    cr_assert_eq(rf_inputs_reads(in), 1, "the spec was read %d times for 5 tasks", rf_inputs_reads(in));
    rf_plan_free(p);
    rf_inputs_free(in);
    /* a job parsed with the digests its sweep recorded does not read the
     * file and gets the sweep's ids even after the file is gone */
    char *inputs = NULL;
    uint64_t a = first_id("synthetic:256", m, NULL, &inputs);
    cr_assert_not_null(inputs);
    cr_assert(strstr(inputs, "m.json"));
    unlink(m);
    cr_assert_eq(first_id("synthetic:256", m, inputs, NULL), a);
    char other[200];
    snprintf(other, sizeof other, "{\"%s\":\"%064d\"}", m, 0);
    cr_assert_neq(first_id("synthetic:256", m, other, NULL), a, "a pinned digest is what the id hashes");
    rf_free(inputs);
    rm_rf(d);
}

/* ---- d2: walltime ----------------------------------------------------------- */

Test(walltime_rule, resumable_tasks_start_and_others_fit_or_are_refused) {
    /* fits: starts whatever its kind */
    cr_assert_eq(coord_walltime_rule(50, 100, 3600, 0), COORD_WT_START);
    /* a resumable task starts even when nothing could finish: it saves its
     * state at the deadline (the livelock: it was never started) */
    cr_assert_eq(coord_walltime_rule(5000, 100, 3600, 1), COORD_WT_START);
    cr_assert_eq(coord_walltime_rule(5000, 1, 100, 1), COORD_WT_START);
    /* not resumable, would fit a fresh allocation: wait for it */
    cr_assert_eq(coord_walltime_rule(500, 100, 3600, 0), COORD_WT_WAIT);
    /* not resumable and longer than any allocation of this length: refused */
    cr_assert_eq(coord_walltime_rule(5000, 100, 3600, 0), COORD_WT_REFUSE);
}

Test(walltime_rule, the_estimate_counts_saved_progress) {
    cr_assert_float_eq(coord_estimate(100, 1, 0), 100, 1e-9);
    cr_assert_float_eq(coord_estimate(100, 2, 0), 200, 1e-9);
    /* a resume point 3/4 of the way through leaves a quarter */
    cr_assert_float_eq(coord_estimate(100, 1, 0.75), 25, 1e-9);
    cr_assert_float_eq(coord_estimate(100, 1, 1), 0, 1e-9);
    cr_assert_float_eq(coord_estimate(100, 1, -3), 100, 1e-9);
    /* so a non-resumable estimate that fits after the saving is started */
    cr_assert_eq(coord_walltime_rule(coord_estimate(400, 1, 0.9), 100, 3600, 0), COORD_WT_START);
}

/* ---- d6: one sweep per store -------------------------------------------------- */

Test(store_lock, second_holder_is_refused_naming_host_and_pid) {
    char root[128];
    mktemp_dir(root, sizeof root, "lock");
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *a = NULL, *b = NULL;
    cr_assert_eq(rf_store_open(&ctx, root, "job", 1, &a), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_store_open(&ctx, root, "job", 1, &b), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_store_lock(&ctx, a), RF_OK, "%s", ctx.err);
    /* a second handle, even in this process, does not get it */
    rf_status s = rf_store_lock(&ctx, b);
    cr_assert_eq(s, RF_ERR_BUSY, "%s: %s", rf_strerror(s), ctx.err);
    char host[256] = "", pid[32];
    gethostname(host, sizeof host - 1);
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    cr_assert(strstr(ctx.err, host) && strstr(ctx.err, pid), "holder not named: %s", ctx.err);
    /* released with the handle */
    rf_store_close(a);
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_store_lock(&ctx, b), RF_OK, "%s", ctx.err);
    rf_store_close(b);
    rm_rf(root);
}

Test(store_lock, a_killed_holder_leaves_no_lock) {
    char root[128];
    mktemp_dir(root, sizeof root, "lockkill");
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t child = fork();
    cr_assert(child >= 0);
    if (child == 0) {
        rf_ctx c;
        rf_ctx_init(&c);
        rf_store *s = NULL;
        if (rf_store_open(&c, root, "job", 1, &s) != RF_OK || rf_store_lock(&c, s) != RF_OK) _exit(1);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        for (;;) pause();
    }
    char x;
    cr_assert_eq(read(ready[0], &x, 1), 1, "the child did not take the lock");
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s = NULL;
    cr_assert_eq(rf_store_open(&ctx, root, "job", 1, &s), RF_OK);
    cr_assert_eq(rf_store_lock(&ctx, s), RF_ERR_BUSY, "%s", ctx.err);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)child);
    cr_assert(strstr(ctx.err, pid), "holder pid not named: %s", ctx.err);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_store_lock(&ctx, s), RF_OK, "lock left behind by a killed holder: %s", ctx.err);
    rf_store_close(s);
    close(ready[0]);
    close(ready[1]);
    rm_rf(root);
}

/* ---- d7: memory caps ------------------------------------------------------------ */

#define SMALL_SPEC "{\"input\":[784],\"classes\":%d,\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":%d}]}"

Test(memory_cap, checkpoint_spec_is_checked_against_its_directory_before_allocating) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    char spec[256];
    snprintf(spec, sizeof spec, SMALL_SPEC, 100, 100);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", ctx.err);
    rf_ckpt *c = NULL;
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &c), RF_OK, "%s", ctx.err);
    rf_model_free(m);
    /* the metadata now claims 784 -> 40000 (125 MB of parameters and
     * gradients), the directory still holds fc.weight [100, 784] */
    char meta[512];
    snprintf(spec, sizeof spec, SMALL_SPEC, 40000, 40000);
    snprintf(meta, sizeof meta, "{\"format\":\"rckpt\",\"spec\":%s,\"extra\":null}", spec);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, c, meta), RF_OK);
    rf_alloc_peak_reset();
    size_t before = rf_alloc_live_bytes();
    rf_status s = rf_model_from_ckpt(&ctx, c, &m);
    size_t peak = rf_alloc_peak_bytes() - before;
    cr_assert_null(m);
    cr_assert_eq(s, RF_ERR_SHAPE, "%s: %s", rf_strerror(s), ctx.err);
    cr_assert(strstr(ctx.err, "fc.weight"), "%s", ctx.err);
    cr_assert_lt(peak, 4 * MIB, "%zu bytes were allocated for a spec the directory contradicts", peak);
    /* a tensor the directory lacks altogether */
    snprintf(meta, sizeof meta, "{\"format\":\"rckpt\",\"spec\":{\"input\":[784],\"classes\":10,\"layers\":["
             "{\"type\":\"linear\",\"name\":\"fc\",\"out\":100},{\"type\":\"linear\",\"name\":\"big\",\"out\":10}]}}");
    cr_assert_eq(rf_ckpt_set_meta(&ctx, c, meta), RF_OK);
    rf_ctx_init(&ctx);
    s = rf_model_from_ckpt(&ctx, c, &m);
    cr_assert_eq(s, RF_ERR_NOTFOUND, "%s: %s", rf_strerror(s), ctx.err);
    cr_assert(strstr(ctx.err, "big.weight") && strstr(ctx.err, "directory"), "%s", ctx.err);
    rf_ckpt_free(c);
}

Test(memory_cap, the_total_is_checked_not_each_category) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.mem_cap = 1 * MIB;
    /* 784 x 100 + 100 = 78,500 parameters: params + grads 628 KB (fits),
     * Adam's two moments another 628 KB: each part under 1 MiB, the total
     * over it */
    char spec[256];
    snprintf(spec, sizeof spec, SMALL_SPEC, 100, 100);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", ctx.err);
    rf_optim_cfg oc;
    rf_optim_cfg_default(&oc, RF_OPT_ADAM);
    rf_optim o;
    rf_status s = rf_optim_init(&ctx, &o, &oc, m->n_params);
    if (s == RF_OK) rf_optim_free(&o);
    rf_model_free(m);
    cr_assert_eq(s, RF_ERR_LIMIT, "the optimizer state fit the cap on its own and was allowed: %s", rf_strerror(s));
    cr_assert(strstr(ctx.err, "already in use"), "%s", ctx.err);
}

/* ---- d8: URL schemes -------------------------------------------------------------- */

Test(url_scheme, unknown_schemes_are_not_paths) {
    cr_assert_eq(rf_url_scheme_of("ftp://host/x"), RF_URL_OTHER);
    cr_assert_eq(rf_url_scheme_of("s3://bucket/x"), RF_URL_OTHER);
    cr_assert_eq(rf_url_scheme_of("git+ssh://h/x"), RF_URL_OTHER);
    cr_assert_eq(rf_url_scheme_of("results"), RF_URL_NONE);
    cr_assert_eq(rf_url_scheme_of("./ftp:/x"), RF_URL_NONE);
    cr_assert_eq(rf_url_scheme_of("a:b"), RF_URL_NONE);
    cr_assert_eq(rf_url_scheme_of("https://h/"), RF_URL_HTTPS);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_url_check(&ctx, "ftp://host/x"), RF_ERR_INVALID);
}

/* ---- a tiny HTTP server for d9 and d15 --------------------------------------------- */

typedef struct httpd {
    int fd, port, frozen;   /* frozen: accepts no connection and answers nothing */
    pthread_t th;
} httpd;

static void *httpd_run(void *arg) {
    httpd *h = arg;
    for (;;) {
        int c = accept(h->fd, NULL, NULL);
        if (c < 0) return NULL;
        char req[2048];
        ssize_t n = recv(c, req, sizeof req - 1, 0);
        req[n > 0 ? n : 0] = '\0';
        char path[256] = "";
        sscanf(req, "%*s %255s", path);
        char hdr[512];
        if (strcmp(path, "/redirect") == 0) {
            snprintf(hdr, sizeof hdr, "HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
        } else if (strcmp(path, "/big") == 0) {
            size_t len = 1u << 20;
            snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
            send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
            char block[4096];
            memset(block, 'b', sizeof block);
            for (size_t k = 0; k < len; k += sizeof block) if (send(c, block, sizeof block, MSG_NOSIGNAL) < 0) break;
        } else {
            snprintf(hdr, sizeof hdr, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
        }
        close(c);
    }
}

static void httpd_start(httpd *h, int frozen) {
    memset(h, 0, sizeof *h);
    h->frozen = frozen;
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(h->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(h->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(h->fd, 64), 0);
    socklen_t al = sizeof a;
    getsockname(h->fd, (struct sockaddr *)&a, &al);
    h->port = ntohs(a.sin_port);
    /* frozen: the kernel completes connections into the backlog, nobody reads
     * them, as with a SIGSTOPped server */
    if (!frozen) cr_assert_eq(pthread_create(&h->th, NULL, httpd_run, h), 0);
}

/* A port nothing listens on (connection refused). */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- d9: raffle fetch leaves no *.part --------------------------------------------------- */

static void fetch_fails_cleanly(const char *url, const char *dir, rf_status want, const char *say) {
    char dest[256], part[300];
    snprintf(dest, sizeof dest, "%s/report.json", dir);
    snprintf(part, sizeof part, "%s.part", dest);
    rf_fetch_opts o;
    rf_fetch_opts_default(&o);
    o.retries = 1;
    o.backoff_s = 0.01;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_status s = rf_fetch_to_file(&ctx, url, &o, dest);
    cr_assert_eq(s, want, "%s: %s (%s)", url, rf_strerror(s), ctx.err);
    if (say) cr_assert(strstr(ctx.err, say), "%s: the message lacks \"%s\": %s", url, say, ctx.err);
    cr_assert(!exists(part), "%s: %s left behind", url, part);
    cr_assert(!exists(dest), "%s: %s written", url, dest);
}

Test(fetch_part, refused_404_and_refused_redirect_leave_nothing) {
    httpd h;
    httpd_start(&h, 0);
    char dir[128], url[128];
    mktemp_dir(dir, sizeof dir, "fetch");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/missing", h.port);
    fetch_fails_cleanly(url, dir, RF_ERR_NOTFOUND, "404");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/redirect", h.port);
    fetch_fails_cleanly(url, dir, RF_ERR_NET, NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", closed_port());
    fetch_fails_cleanly(url, dir, RF_ERR_NET, NULL);
    rm_rf(dir);
}

static char tiny[64];
static void unmount_tiny(void) {
    if (tiny[0]) { umount2(tiny, MNT_DETACH); rmdir(tiny); }
}

Test(fetch_part, full_disk_says_why_and_leaves_nothing, .fini = unmount_tiny) {
    snprintf(tiny, sizeof tiny, "/tmp/raffle-trust-tiny-XXXXXX");
    cr_assert_not_null(mkdtemp(tiny));
    if (mount("tmpfs", tiny, "tmpfs", 0, "size=64k") != 0) {
        int e = errno;
        rmdir(tiny);
        tiny[0] = '\0';
        cr_skip_test("cannot mount a 64 KiB tmpfs (%s): not root or no mount rights", strerror(e));
    }
    httpd h;
    httpd_start(&h, 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", h.port);
    fetch_fails_cleanly(url, tiny, RF_ERR_IO, strerror(ENOSPC));
}

/* ---- d10: a FIFO as a job file --------------------------------------------------------- */

Test(fifo, job_file_that_is_a_fifo_is_refused_at_once, .timeout = 10) {
    char dir[128], path[200];
    mktemp_dir(dir, sizeof dir, "fifo");
    snprintf(path, sizeof path, "%s/fifo.json", dir);
    cr_assert_eq(mkfifo(path, 0644), 0);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    rf_status s = rf_job_load(&ctx, path, &j);   /* blocked forever in open() before the fix */
    cr_assert_neq(s, RF_OK);
    cr_assert(strstr(ctx.err, "not a regular file"), "%s", ctx.err);
    rm_rf(dir);
}

/* ---- d12: numbers ---------------------------------------------------------------------- */

Test(numbers, strict_parser) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    uint64_t u;
    int64_t i;
    double d;
    cr_assert_eq(rf_parse_u64(&ctx, "18446744073709551615", 20, 0, UINT64_MAX, "x", &u), RF_OK);
    cr_assert_eq(u, UINT64_MAX);
    cr_assert_eq(rf_parse_u64(&ctx, "18446744073709551616", 20, 0, UINT64_MAX, "x", &u), RF_ERR_INVALID);
    cr_assert(strstr(ctx.err, "out of range"), "%s", ctx.err);
    cr_assert_eq(rf_parse_u64(&ctx, "99999999999999999999999", 23, 0, UINT64_MAX, "x", &u), RF_ERR_INVALID);
    static const char *const bad[] = {"", " 1", "1 ", "+1", "-1", "1e3", "0x10", "1.0", "12a"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        cr_assert_eq(rf_parse_u64(&ctx, bad[k], strlen(bad[k]), 0, UINT64_MAX, "x", &u), RF_ERR_INVALID, "'%s'", bad[k]);
    cr_assert_eq(rf_parse_i64(&ctx, "-9223372036854775808", 20, INT64_MIN, INT64_MAX, "x", &i), RF_OK);
    cr_assert_eq(i, INT64_MIN);
    cr_assert_eq(rf_parse_i64(&ctx, "9223372036854775808", 19, INT64_MIN, INT64_MAX, "x", &i), RF_ERR_INVALID);
    cr_assert_eq(rf_parse_i64(&ctx, "11", 2, 0, 10, "x", &i), RF_ERR_INVALID);
    cr_assert_eq(rf_parse_f64(&ctx, "2.5", 3, 0, 10, "x", &d), RF_OK);
    cr_assert_float_eq(d, 2.5, 0);
    static const char *const badf[] = {"1e400", "nan", "inf", " 1", "1x", "", "1e-400"};
    for (size_t k = 0; k < sizeof badf / sizeof *badf; k++)
        cr_assert_eq(rf_parse_f64(&ctx, badf[k], strlen(badf[k]), -1e300, 1e300, "x", &d), RF_ERR_INVALID, "'%s'", badf[k]);
}

Test(numbers, synthetic_seed_above_2_64_is_an_error_not_saturated) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_dataset *tr = NULL, *te = NULL;
    /* two seeds above 2^64 gave identical data (both saturated to 2^64 - 1) */
    rf_status s = rf_data_load(&ctx, "synthetic:64:18446744073709551616", &tr, &te);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    cr_assert_eq(s, RF_ERR_INVALID, "%s: %s", rf_strerror(s), ctx.err);
    cr_assert(strstr(ctx.err, "SEED") && strstr(ctx.err, "out of range"), "%s", ctx.err);
    /* the largest seed is fine */
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_data_load(&ctx, "synthetic:64:18446744073709551615", &tr, &te), RF_OK, "%s", ctx.err);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    /* and the job validator refuses it before any task runs */
    const char *job = "{\"name\":\"n\",\"dataset\":\"synthetic:64:18446744073709551617\",\"model\":\"lenet-300-100\","
                      "\"experiments\":[{\"kind\":\"train\"}]}";
    rf_job *j = NULL;
    rf_ctx_init(&ctx);
    s = rf_job_parse(&ctx, job, strlen(job), "n", &j);
    rf_job_free(j);
    cr_assert_eq(s, RF_ERR_JOB, "%s: %s", rf_strerror(s), ctx.err);
    cr_assert(strstr(ctx.err, "dataset"), "%s", ctx.err);
}

Test(numbers, rewind_step_out_of_range) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_rewind_kind k;
    int64_t step;
    cr_assert_eq(rf_rewind_parse(&ctx, "step:99999999999999999999", &k, &step), RF_ERR_INVALID, "saturated to %lld", (long long)step);
    cr_assert_eq(rf_rewind_parse(&ctx, "step:12", &k, &step), RF_OK);
    cr_assert_eq(step, 12);
}

/* ---- d13: stale temporary files --------------------------------------------------------- */

static void touch(const char *path, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    for (size_t k = 0; k < n; k++) fputc('t', f);
    fclose(f);
}

Test(stale_temp, only_files_of_dead_writers_are_removed) {
    char root[128], p[400];
    mktemp_dir(root, sizeof root, "stale");
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s = NULL;
    cr_assert_eq(rf_store_open(&ctx, root, "job", 1, &s), RF_OK);
    cr_assert_eq(rf_store_write(&ctx, s, "tasks/0123456789abcdef/metrics.json", "{}", 2), RF_OK);
    long dead = (long)dead_pid(), live = (long)getpid();
    snprintf(p, sizeof p, "%s/job/tasks/0123456789abcdef/.tmp.%ld.7", root, dead);
    touch(p, 920 * 1024);
    snprintf(p, sizeof p, "%s/job/report.json.tmp.%ld", root, dead);
    touch(p, 10);
    snprintf(p, sizeof p, "%s/job/tasks/0123456789abcdef/.tmp.%ld.8", root, live);
    touch(p, 10);
    snprintf(p, sizeof p, "%s/job/status.json.tmp.%ld", root, live);
    touch(p, 10);
    int removed = -1;
    cr_assert_eq(rf_store_remove_stale(&ctx, s, &removed), RF_OK, "%s", ctx.err);
    cr_assert_eq(removed, 2);
    snprintf(p, sizeof p, "%s/job/tasks/0123456789abcdef/.tmp.%ld.7", root, dead);
    cr_assert(!exists(p));
    snprintf(p, sizeof p, "%s/job/report.json.tmp.%ld", root, dead);
    cr_assert(!exists(p));
    snprintf(p, sizeof p, "%s/job/tasks/0123456789abcdef/.tmp.%ld.8", root, live);
    cr_assert(exists(p), "a live writer's temp file was removed");
    snprintf(p, sizeof p, "%s/job/status.json.tmp.%ld", root, live);
    cr_assert(exists(p), "a live writer's temp file was removed");
    snprintf(p, sizeof p, "%s/job/tasks/0123456789abcdef/metrics.json", root);
    cr_assert(exists(p));
    cr_assert_eq(rf_store_stale_temp("metrics.json"), 0);
    cr_assert_eq(rf_store_stale_temp(".tmp.x.1"), 0);
    rf_store_close(s);
    rm_rf(root);
}

/* ---- d14: how a child died ---------------------------------------------------------------- */

Test(child_class, classified_by_what_happened) {
    char msg[256];
    /* SIGKILL without an OOM kill recorded: from outside, retried */
    cr_assert_eq(coord_signal_class(SIGKILL, 0, msg, sizeof msg), RF_FAIL_KILLED);
    cr_assert(strstr(msg, "outside"), "%s", msg);
    cr_assert(rf_fail_class_retryable(RF_FAIL_KILLED));
    /* the same while the kernel counted an OOM kill: the memory limit, not retried */
    cr_assert_eq(coord_signal_class(SIGKILL, 1, msg, sizeof msg), RF_FAIL_OOM);
    cr_assert(!rf_fail_class_retryable(RF_FAIL_OOM));
    /* faults the process raised itself: crashes, retried */
    static const int crash[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t k = 0; k < sizeof crash / sizeof *crash; k++)
        cr_assert_eq(coord_signal_class(crash[k], 0, msg, sizeof msg), RF_FAIL_CRASH, "signal %d", crash[k]);
    cr_assert(rf_fail_class_retryable(RF_FAIL_CRASH));
    /* other signals: from outside */
    cr_assert_eq(coord_signal_class(SIGTERM, 0, msg, sizeof msg), RF_FAIL_KILLED);
    cr_assert_eq(coord_signal_class(SIGINT, 1, msg, sizeof msg), RF_FAIL_KILLED);
    cr_assert_str_eq(rf_fail_class_name(RF_FAIL_KILLED), "killed");
}

/* ---- d15: a frozen WebDAV server ------------------------------------------------------------ */

Test(mirror_frozen, uploads_never_block_the_caller, .timeout = 60) {
    httpd h;
    httpd_start(&h, 1);
    char dir[128], base[128], p[300];
    mktemp_dir(dir, sizeof dir, "frozen");
    snprintf(base, sizeof base, "http://127.0.0.1:%d/store/", h.port);
    snprintf(p, sizeof p, "%s/report.json", dir);
    touch(p, 100);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_mirror *m = NULL;
    cr_assert_eq(rf_mirror_open(&ctx, base, dir, &m), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_mirror_start(&ctx, m), RF_OK, "%s", ctx.err);
    double t0 = rf_now();
    cr_assert_eq(rf_mirror_add(&ctx, m, "report.json"), RF_OK);
    /* the upload thread is now stuck on the server; queueing more is instant */
    for (int k = 0; k < 50; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "f%d.txt", k);
        snprintf(p, sizeof p, "%s/%s", dir, rel);
        touch(p, 10);
        cr_assert_eq(rf_mirror_add(&ctx, m, rel), RF_OK);
    }
    double queued = rf_now() - t0;
    cr_assert_lt(queued, 2.0, "queueing 51 files took %.1f s", queued);
    /* stopping waits the given 1 s, gives up the request in flight, keeps the spool */
    t0 = rf_now();
    int left = rf_mirror_stop(m, 1.0);
    double stopped = rf_now() - t0;
    cr_assert_eq(left, 51);
    cr_assert_lt(stopped, 5.0, "stop took %.1f s", stopped);
    rf_mirror_free(m);
    /* the spool holds every file for the next run */
    cr_assert_eq(rf_mirror_open(&ctx, base, dir, &m), RF_OK);
    cr_assert_eq(rf_mirror_pending(m), 51);
    rf_mirror_free(m);
    close(h.fd);
    rm_rf(dir);
}
