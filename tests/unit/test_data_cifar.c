/* CIFAR-10 / CIFAR-100 binary version: files written here in exactly the
 * published format (records of label byte(s) + 3072 pixel bytes, R then G
 * then B planes) are read back from a directory, the unpacked-archive
 * directory, a .tar.gz / .tar (written by hand and by the system's tar), and
 * through rf_data_load / rf_data_open by name. Every malformed input is
 * rejected with an error naming the file: sizes, labels, missing files,
 * truncation at every length, bad tar headers, lying sizes, corrupt gzip. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "raffle/data.h"

enum { PIX = 3072 };

static char tmpdir[256];

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) { unlink(path); return; }
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_tree(p);
        }
    closedir(d);
    rmdir(path);
}

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/raffle-test-cifar-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void remove_tmpdir(void) { rm_tree(tmpdir); }

TestSuite(cifar, .init = make_tmpdir, .fini = remove_tmpdir);

static const char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tpath(const char *fmt, ...) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, rel);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ---- the format ----------------------------------------------------------- */

/* Label bytes and pixels of record r of file `file`: a pure function, so the
 * reader's output can be checked value by value. low_entropy makes the
 * pixels compress well (small archives for the every-length tests). */
static unsigned pixel_of(int file, int r, int j, int low_entropy) {
    if (low_entropy) return (unsigned)((file * 3 + r + j / 512) & 255);
    uint32_t v = (uint32_t)(file * 7919 + r * 104729 + j) * 2654435761u;
    return (v >> 24) & 255;
}
static unsigned label_of(int file, int r, int byte, int limit) { return (unsigned)(file * 5 + r * 3 + byte * 7) % (unsigned)limit; }

/* A file of n records: label_bytes 1 (CIFAR-10: limit 10) or 2 (CIFAR-100:
 * coarse < 20, fine < 100). Returns malloc'd bytes. */
static unsigned char *records(int file, int n, int label_bytes, int low_entropy, size_t *len) {
    static const int limits[2][2] = {{10, 0}, {20, 100}};
    size_t rec = (size_t)label_bytes + PIX;
    unsigned char *b = malloc(rec * (size_t)n + 1);
    for (int r = 0; r < n; r++) {
        unsigned char *p = b + (size_t)r * rec;
        for (int k = 0; k < label_bytes; k++) p[k] = (unsigned char)label_of(file, r, k, limits[label_bytes - 1][k]);
        for (int j = 0; j < PIX; j++) p[label_bytes + j] = (unsigned char)pixel_of(file, r, j, low_entropy);
    }
    *len = rec * (size_t)n;
    return b;
}

static const char *const c10_files[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
static const int c10_counts[6] = {40, 41, 42, 43, 44, 37};

/* Writes the six CIFAR-10 files into dir (created). */
static void write_c10_dir(const char *dir, const int *counts, int low_entropy) {
    mkdir(dir, 0755);
    for (int f = 0; f < 6; f++) {
        size_t n;
        unsigned char *b = records(f, counts[f], 1, low_entropy, &n);
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, c10_files[f]);
        write_bytes(p, b, n);
        free(b);
    }
}

/* Checks a CIFAR-10 split read from files first..first+k-1 value by value. */
static void check_c10_split(const rf_dataset *d, int first, int k, const int *counts) {
    cr_assert_eq(d->c, 3); cr_assert_eq(d->h, 32); cr_assert_eq(d->w, 32);
    cr_assert_eq(d->n_classes, 10);
    int64_t s = 0;
    for (int f = first; f < first + k; f++)
        for (int r = 0; r < counts[f]; r++, s++) {
            cr_assert_lt(s, d->n);
            cr_assert_eq(d->y[s], (int32_t)label_of(f, r, 0, 10), "sample %lld", (long long)s);
            const float *x = d->x + s * PIX;
            for (int j = 0; j < PIX; j++)
                if (x[j] != (float)pixel_of(f, r, j, 0) * (1.0f / 255.0f))
                    cr_assert_fail("file %d record %d pixel %d: %g", f, r, j, (double)x[j]);
        }
    cr_assert_eq(s, d->n);
}

static void check_c10(const rf_dataset *tr, const rf_dataset *te, const int *counts) {
    check_c10_split(tr, 0, 5, counts);
    check_c10_split(te, 5, 1, counts);
}

/* ---- a tar writer (ustar, by hand) ------------------------------------------ */

typedef struct tarbuf { unsigned char *b; size_t n, cap; } tarbuf;

static void tb_put(tarbuf *t, const void *p, size_t n) {
    if (t->n + n > t->cap) { t->cap = (t->n + n) * 2 + 4096; t->b = realloc(t->b, t->cap); }
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void tar_fix_checksum(unsigned char *h) {
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

/* Appends a member. A name longer than 100 bytes goes into the POSIX prefix. */
static void tar_add(tarbuf *t, const char *name, const void *data, size_t n, char type) {
    unsigned char h[512];
    memset(h, 0, sizeof h);
    size_t len = strlen(name);
    if (len > 100) {
        const char *slash = strrchr(name, '/');
        cr_assert(slash && (size_t)(slash - name) <= 155);
        memcpy(h + 345, name, (size_t)(slash - name));
        memcpy(h, slash + 1, strlen(slash + 1));
    } else {
        memcpy(h, name, len);
    }
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    tar_fix_checksum(h);
    tb_put(t, h, 512);
    tb_put(t, data, n);
    static const unsigned char zero[512];
    if (n % 512) tb_put(t, zero, 512 - n % 512);
}

static void tar_end(tarbuf *t) {
    static const unsigned char zero[1024];
    tb_put(t, zero, 1024);
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb9");
    cr_assert_not_null(g);
    cr_assert_eq(gzwrite(g, data, (unsigned)n), (int)n);
    cr_assert_eq(gzclose(g), Z_OK);
}

/* The CIFAR-10 archive's layout, with the extras the real one has (the
 * directory entry, batches.meta.txt, readme.html) plus a pax header. */
static tarbuf c10_tar(const int *counts, int low_entropy) {
    tarbuf t = {0};
    tar_add(&t, "cifar-10-batches-bin/", "", 0, '5');
    static const char pax[] = "30 mtime=1244721297.000000000\n";
    tar_add(&t, "PaxHeaders/data_batch_1.bin", pax, sizeof pax - 1, 'x');
    for (int f = 0; f < 6; f++) {
        size_t n;
        unsigned char *b = records(f, counts[f], 1, low_entropy, &n);
        char name[128];
        snprintf(name, sizeof name, "cifar-10-batches-bin/%s", c10_files[f]);
        tar_add(&t, name, b, n, '0');
        free(b);
        if (f == 2) tar_add(&t, "cifar-10-batches-bin/batches.meta.txt", "airplane\nautomobile\n", 20, '0');
    }
    tar_add(&t, "cifar-10-batches-bin/readme.html", "<html></html>", 13, '0');
    tar_end(&t);
    return t;
}

/* ---- reading ---------------------------------------------------------------- */

Test(cifar, cifar10_directory_reads_every_record_exactly) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *dir = tpath("c10");
    write_c10_dir(dir, c10_counts, 0);
    rf_dataset *tr, *te;
    cr_assert_eq(rf_cifar_read(&ctx, RF_CIFAR10, dir, &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(tr->n, 40 + 41 + 42 + 43 + 44);
    cr_assert_eq(te->n, 37);
    check_c10(tr, te, c10_counts);
    cr_assert_eq(tr->mean[0], 0.0f);   /* raw: not normalised */
    rf_dataset_free(tr); rf_dataset_free(te);
}

Test(cifar, load_by_name_normalises_with_train_statistics) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *dir = tpath("c10");
    write_c10_dir(dir, c10_counts, 0);
    char spec[1100];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    cr_assert_eq(rf_data_spec_check(&ctx, spec), RF_OK);
    rf_dataset *tr, *te, *rtr, *rte;
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_cifar_read(&ctx, RF_CIFAR10, dir, &rtr, &rte), RF_OK);
    cr_assert_str_eq(tr->name, spec);
    cr_assert_eq(tr->n_classes, 10);
    for (int ch = 0; ch < 3; ch++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < rtr->n; i++)
            for (int j = 0; j < 1024; j++) { double v = rtr->x[i * PIX + ch * 1024 + j]; s += v; s2 += v * v; }
        double cnt = (double)rtr->n * 1024, mu = s / cnt, sd = sqrt(s2 / cnt - mu * mu);
        cr_assert_float_eq(tr->mean[ch], mu, 1e-5);
        cr_assert_float_eq(tr->std[ch], sd, 1e-5);
        cr_assert_eq(te->mean[ch], tr->mean[ch]);
        /* un-normalising gives the raw value back */
        for (int j = 0; j < 1024; j += 97) {
            float raw = rte->x[5 * PIX + ch * 1024 + j];
            cr_assert_float_eq(te->x[5 * PIX + ch * 1024 + j] * tr->std[ch] + tr->mean[ch], raw, 1e-5);
        }
    }
    rf_dataset_free(tr); rf_dataset_free(te); rf_dataset_free(rtr); rf_dataset_free(rte);
}

Test(cifar, unpacked_archive_directory_and_archive_beneath_the_path) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* DIR/cifar-10-batches-bin/... as `tar xzf` leaves it */
    const char *top = tpath("top");
    mkdir(top, 0755);
    write_c10_dir(tpath("top/cifar-10-batches-bin"), c10_counts, 0);
    rf_dataset *tr, *te;
    cr_assert_eq(rf_cifar_read(&ctx, RF_CIFAR10, top, &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    check_c10(tr, te, c10_counts);
    rf_dataset_free(tr); rf_dataset_free(te);
    /* DIR/cifar-10-binary.tar.gz, where the data cache keeps a download */
    const char *cache = tpath("cache");
    mkdir(cache, 0755);
    mkdir(tpath("cache/cifar10"), 0755);
    tarbuf t = c10_tar(c10_counts, 0);
    write_gz(tpath("cache/cifar10/cifar-10-binary.tar.gz"), t.b, t.n);
    free(t.b);
    cr_assert_eq(rf_cifar_read(&ctx, RF_CIFAR10, tpath("cache/cifar10"), &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    check_c10(tr, te, c10_counts);
    rf_dataset_free(tr); rf_dataset_free(te);
    /* the bare name reads the cache */
    char *old = getenv("RAFFLE_CACHE") ? strdup(getenv("RAFFLE_CACHE")) : NULL;
    setenv("RAFFLE_CACHE", cache, 1);
    rf_status s = rf_data_load(&ctx, "cifar10", &tr, &te);
    if (old) { setenv("RAFFLE_CACHE", old, 1); free(old); } else unsetenv("RAFFLE_CACHE");
    cr_assert_eq(s, RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(tr->n, 210);
    rf_dataset_free(tr); rf_dataset_free(te);
}

Test(cifar, tar_gz_plain_tar_and_system_tar_match_the_directory) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    tarbuf t = c10_tar(c10_counts, 0);
    write_gz(tpath("a.tar.gz"), t.b, t.n);
    write_bytes(tpath("a.tar"), t.b, t.n);
    free(t.b);
    const char *paths[2] = {tpath("a.tar.gz"), tpath("a.tar")};
    for (int i = 0; i < 2; i++) {
        rf_dataset *tr, *te;
        cr_assert_eq(rf_cifar_read(&ctx, RF_CIFAR10, paths[i], &tr, &te), RF_OK, "%s: %s", paths[i], rf_ctx_error(&ctx));
        check_c10(tr, te, c10_counts);
        rf_dataset_free(tr); rf_dataset_free(te);
    }
    /* GNU tar's own headers and blocking, as the published archive was made */
    if (system("tar --version >/dev/null 2>&1") != 0) cr_skip_test("no tar program to make a real archive with");
    write_c10_dir(tpath("cifar-10-batches-bin"), c10_counts, 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && tar czf sys.tar.gz cifar-10-batches-bin", tmpdir);
    cr_assert_eq(system(cmd), 0);
    rf_dataset *tr, *te;
    char spec[1100];
    snprintf(spec, sizeof spec, "cifar10:%s/sys.tar.gz", tmpdir);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(tr->n, 210);
    cr_assert_eq(te->n, 37);
    rf_dataset_free(tr); rf_dataset_free(te);
}

Test(cifar, posix_prefix_names_and_concatenated_gzip_members) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* member names split into prefix + name, one level under the prefix */
    tarbuf t = {0};
    char longdir[140];
    memset(longdir, 'd', 120);
    longdir[120] = '\0';
    for (int f = 0; f < 6; f++) {
        size_t n;
        unsigned char *b = records(f, c10_counts[f], 1, 0, &n);
        char name[300];
        snprintf(name, sizeof name, "%s/%s", longdir, c10_files[f]);
        tar_add(&t, name, b, n, '0');
        free(b);
    }
    tar_end(&t);
    /* two gzip members back to back, split mid-way (gunzip reads both) */
    size_t half = t.n / 2;
    write_gz(tpath("p1.gz"), t.b, half);
    write_gz(tpath("p2.gz"), t.b + half, t.n - half);
    size_t n1, n2;
    unsigned char *g1 = slurp(tpath("p1.gz"), &n1), *g2 = slurp(tpath("p2.gz"), &n2);
    unsigned char *cat = malloc(n1 + n2);
    memcpy(cat, g1, n1);
    memcpy(cat + n1, g2, n2);
    write_bytes(tpath("cat.tar.gz"), cat, n1 + n2);
    free(g1); free(g2); free(cat); free(t.b);
    rf_dataset *tr, *te;
    cr_assert_eq(rf_cifar_read(&ctx, RF_CIFAR10, tpath("cat.tar.gz"), &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    check_c10(tr, te, c10_counts);
    rf_dataset_free(tr); rf_dataset_free(te);
}

Test(cifar, cifar100_fine_by_default_and_coarse_on_request) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *dir = tpath("c100");
    mkdir(dir, 0755);
    size_t ntr, nte;
    unsigned char *btr = records(0, 150, 2, 0, &ntr), *bte = records(1, 60, 2, 0, &nte);
    write_bytes(tpath("c100/train.bin"), btr, ntr);
    write_bytes(tpath("c100/test.bin"), bte, nte);
    /* the archive's layout too */
    tarbuf t = {0};
    tar_add(&t, "cifar-100-binary/", "", 0, '5');
    tar_add(&t, "cifar-100-binary/coarse_label_names.txt", "apple\n", 6, '0');
    tar_add(&t, "cifar-100-binary/test.bin", bte, nte, '0');
    tar_add(&t, "cifar-100-binary/train.bin", btr, ntr, '0');
    tar_end(&t);
    write_gz(tpath("c100.tar.gz"), t.b, t.n);
    free(t.b);
    const char *specs[2] = {"cifar100:%s", "cifar100-coarse:%s"};
    const char *paths[2] = {dir, tpath("c100.tar.gz")};
    for (int k = 0; k < 2; k++)
        for (int p = 0; p < 2; p++) {
            char spec[1100];
            snprintf(spec, sizeof spec, specs[k], paths[p]);
            rf_dataset *tr, *te;
            cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_OK, "%s: %s", spec, rf_ctx_error(&ctx));
            cr_assert_eq(tr->n, 150); cr_assert_eq(te->n, 60);
            cr_assert_eq(tr->n_classes, k ? 20 : 100, "%s", spec);
            cr_assert_eq(te->n_classes, k ? 20 : 100);
            /* coarse is byte 0, fine byte 1 */
            for (int r = 0; r < 150; r++) cr_assert_eq(tr->y[r], (int32_t)label_of(0, r, k ? 0 : 1, k ? 20 : 100));
            for (int r = 0; r < 60; r++) cr_assert_eq(te->y[r], (int32_t)label_of(1, r, k ? 0 : 1, k ? 20 : 100));
            /* pixels start after both label bytes: un-normalise one */
            float raw = te->x[7 * PIX + 2048 + 5] * te->std[2] + te->mean[2];
            cr_assert_float_eq(raw, pixel_of(1, 7, 2048 + 5, 0) / 255.0f, 1e-5);
            rf_dataset_free(tr); rf_dataset_free(te);
        }
    free(btr); free(bte);
}

Test(cifar, archive_records_for_the_later_download) {
    const rf_data_archive *a = rf_data_archive_find("cifar100-coarse:/x");
    cr_assert_not_null(a);
    cr_assert_str_eq(a->file, "cifar-100-binary.tar.gz");
    cr_assert_eq(rf_data_archive_find("cifar100"), a);
    const rf_data_archive *b = rf_data_archive_find("cifar10:/some/dir");
    cr_assert_not_null(b);
    cr_assert_str_eq(b->dataset, "cifar10");
    cr_assert_eq(b->bytes, 170052171u);
    const rf_data_archive *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(strlen(both[i]->sha256), 64);
        cr_assert_eq(strspn(both[i]->sha256, "0123456789abcdef"), 64);
        cr_assert_eq(strspn(both[i]->md5, "0123456789abcdef"), 32);
        cr_assert(strstr(both[i]->url, both[i]->file));
    }
    cr_assert_null(rf_data_archive_find("mnist"));
    cr_assert_null(rf_data_archive_find("cifar1000:/x"));
}

/* ---- rejections -------------------------------------------------------------- */

static rf_status read_c10(rf_ctx *ctx, const char *path) {
    rf_dataset *tr = NULL, *te = NULL;
    rf_status s = rf_cifar_read(ctx, RF_CIFAR10, path, &tr, &te);
    if (s == RF_OK) { rf_dataset_free(tr); rf_dataset_free(te); }
    else cr_assert(tr == NULL && te == NULL);
    return s;
}

static void assert_err(rf_ctx *ctx, rf_status got, rf_status want, const char *needle1, const char *needle2) {
    cr_assert_eq(got, want, "status %d (%s), want %d", got, rf_ctx_error(ctx), want);
    const char *m = rf_ctx_error(ctx);
    cr_assert(strstr(m, needle1), "'%s' not in: %s", needle1, m);
    if (needle2) cr_assert(strstr(m, needle2), "'%s' not in: %s", needle2, m);
    cr_assert_null(strchr(m, '\n'), "multi-line error: %s", m);
}

Test(cifar, rejects_partial_records_empty_files_and_bad_labels) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *dir = tpath("bad");
    write_c10_dir(dir, c10_counts, 0);
    size_t n;
    unsigned char *b = records(2, 10, 1, 0, &n);
    /* one byte short of 10 records */
    write_bytes(tpath("bad/data_batch_3.bin"), b, n - 1);
    assert_err(&ctx, read_c10(&ctx, dir), RF_ERR_SIZE, "bad/data_batch_3.bin", "not a whole number of 3073-byte CIFAR-10 records");
    write_bytes(tpath("bad/data_batch_3.bin"), b, 0);
    assert_err(&ctx, read_c10(&ctx, dir), RF_ERR_SIZE, "data_batch_3.bin: empty file", NULL);
    /* label 10 in record 4 */
    b[4 * 3073] = 10;
    write_bytes(tpath("bad/data_batch_3.bin"), b, n);
    assert_err(&ctx, read_c10(&ctx, dir), RF_ERR_DATA, "data_batch_3.bin: record 4 has label 10", "0-9");
    free(b);
    /* CIFAR-100: both label bytes are checked, whichever is used */
    b = records(0, 10, 2, 0, &n);
    b[3 * 3074 + 0] = 20;   /* coarse */
    rf_dataset *d = NULL;
    rf_status s = rf_cifar_parse(&ctx, RF_CIFAR100_FINE, b, n, "train.bin", &d);
    assert_err(&ctx, s, RF_ERR_DATA, "train.bin: record 3 has coarse label 20", "0-19");
    cr_assert_null(d);
    b[3 * 3074 + 0] = 19;
    b[6 * 3074 + 1] = 100;  /* fine */
    s = rf_cifar_parse(&ctx, RF_CIFAR100_COARSE, b, n, "train.bin", &d);
    assert_err(&ctx, s, RF_ERR_DATA, "record 6 has fine label 100", "0-99");
    b[6 * 3074 + 1] = 99;
    cr_assert_eq(rf_cifar_parse(&ctx, RF_CIFAR100_COARSE, b, n, "train.bin", &d), RF_OK);
    cr_assert_eq(d->n, 10);
    rf_dataset_free(d);
    /* a CIFAR-10 file is not a whole number of CIFAR-100 records */
    free(b);
    b = records(0, 7, 1, 1, &n);
    cr_assert_eq(rf_cifar_parse(&ctx, RF_CIFAR100_FINE, b, n, "x.bin", &d), RF_ERR_SIZE);
    free(b);
    cr_assert_eq(rf_cifar_parse(&ctx, (rf_cifar_kind)7, (const unsigned char *)"", 0, "x", &d), RF_ERR_INVALID);
}

Test(cifar, missing_files_name_what_is_missing) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *dir = tpath("part");
    write_c10_dir(dir, c10_counts, 0);
    unlink(tpath("part/data_batch_5.bin"));
    assert_err(&ctx, read_c10(&ctx, dir), RF_ERR_NOTFOUND, "part/data_batch_5.bin: missing", NULL);
    mkdir(tpath("empty"), 0755);
    assert_err(&ctx, read_c10(&ctx, tpath("empty")), RF_ERR_NOTFOUND, "no CIFAR-10 data", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
    assert_err(&ctx, read_c10(&ctx, tpath("nowhere")), RF_ERR_NOTFOUND, "nowhere: no such file or directory", NULL);
    rf_dataset *tr, *te;
    assert_err(&ctx, rf_data_load(&ctx, "cifar10:", &tr, &te), RF_ERR_INVALID, "empty path", NULL);
    cr_assert_eq(rf_data_spec_check(&ctx, "cifar100-coarse:"), RF_ERR_INVALID);
    cr_assert_eq(rf_data_spec_check(&ctx, "cifar11:/x"), RF_ERR_NOTFOUND);
    cr_assert_eq(rf_data_spec_check(&ctx, "cifar100-coarse"), RF_OK);
}

Test(cifar, archive_missing_duplicate_or_python_members) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    size_t n;
    unsigned char *b = records(0, 2, 1, 1, &n);
    tarbuf t = {0};
    for (int f = 0; f < 5; f++) {
        char name[128];
        snprintf(name, sizeof name, "cifar-10-batches-bin/%s", c10_files[f]);
        tar_add(&t, name, b, n, '0');
    }
    size_t without_test = t.n;
    tar_end(&t);
    write_gz(tpath("m.tar.gz"), t.b, t.n);
    assert_err(&ctx, read_c10(&ctx, tpath("m.tar.gz")), RF_ERR_NOTFOUND, "m.tar.gz: no member cifar-10-batches-bin/test_batch.bin", NULL);
    /* a second data_batch_2.bin (in another directory) is ambiguous */
    t.n = without_test;
    tar_add(&t, "other/data_batch_2.bin", b, n, '0');
    tar_add(&t, "cifar-10-batches-bin/test_batch.bin", b, n, '0');
    tar_end(&t);
    write_gz(tpath("d.tar.gz"), t.b, t.n);
    assert_err(&ctx, read_c10(&ctx, tpath("d.tar.gz")), RF_ERR_FORMAT, "two members named data_batch_2.bin", NULL);
    free(t.b);
    /* deeper paths are not CIFAR's files */
    tarbuf u = {0};
    for (int f = 0; f < 6; f++) {
        char name[128];
        snprintf(name, sizeof name, "a/b/%s", c10_files[f]);
        tar_add(&u, name, b, n, '0');
    }
    tar_end(&u);
    write_gz(tpath("deep.tar.gz"), u.b, u.n);
    assert_err(&ctx, read_c10(&ctx, tpath("deep.tar.gz")), RF_ERR_NOTFOUND, "no member", NULL);
    free(u.b);
    /* the python version gets a hint */
    tarbuf p = {0};
    tar_add(&p, "cifar-10-batches-py/data_batch_1", "x", 1, '0');
    tar_end(&p);
    write_gz(tpath("py.tar.gz"), p.b, p.n);
    assert_err(&ctx, read_c10(&ctx, tpath("py.tar.gz")), RF_ERR_NOTFOUND, "python version", NULL);
    free(p.b);
    free(b);
}

/* Offset of the header of the k-th member (0-based) in a tar image. */
static size_t header_at(const unsigned char *tar, int k) {
    size_t off = 0;
    for (int i = 0; i < k; i++) {
        unsigned long long size = strtoull((const char *)tar + off + 124, NULL, 8);
        off += 512 + (size + 511) / 512 * 512;
    }
    return off;
}

Test(cifar, hostile_tar_headers) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    tarbuf t = c10_tar((const int[6]){1, 1, 1, 1, 1, 1}, 1);
    unsigned char *img = malloc(t.n);
    /* member 3 is data_batch_2.bin (dir, pax, batch 1, batch 2) */
    size_t h = header_at(t.b, 3);
    cr_assert(strncmp((const char *)t.b + h, "cifar-10-batches-bin/data_batch_2.bin", 37) == 0);
    struct { const char *what; rf_status want; const char *needle; } cases[] = {
        {"checksum", RF_ERR_CHECKSUM, "bad checksum"},
        {"size_not_octal", RF_ERR_FORMAT, "malformed size field"},
        {"size_empty", RF_ERR_FORMAT, "malformed size field"},
        {"size_lies_big", RF_ERR_TRUNCATED, "truncated archive"},
        {"size_not_records", RF_ERR_SIZE, "h.tar: cifar-10-batches-bin/data_batch_2.bin: 3072 bytes"},
        {"size_base256_huge", RF_ERR_FORMAT, "malformed size field"},
        {"name_control_chars", RF_ERR_SIZE, "h.tar: ??far-10-batches-bin/data_batch_2.bin: 3072 bytes"},
        {"no_end_block", RF_ERR_TRUNCATED, "no end-of-archive block"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(img, t.b, t.n);
        size_t len = t.n;
        unsigned char *hd = img + h;
        switch (c) {
        case 0: hd[10] ^= 1; break;
        case 1: memcpy(hd + 124, "0000000z000 ", 12); tar_fix_checksum(hd); break;
        case 2: memset(hd + 124, ' ', 12); tar_fix_checksum(hd); break;
        case 3: snprintf((char *)hd + 124, 12, "%011o", 3073 * 1000); tar_fix_checksum(hd); break;
        case 4: snprintf((char *)hd + 124, 12, "%011o", 3072); tar_fix_checksum(hd); break;
        case 5: memset(hd + 124, 0xff, 12); hd[124] = 0x80; tar_fix_checksum(hd); break;
        case 6: hd[0] = '\n'; hd[1] = 0x7f; snprintf((char *)hd + 124, 12, "%011o", 3072); tar_fix_checksum(hd); break;
        case 7: len -= 1024; break;
        }
        write_bytes(tpath("h.tar"), img, len);
        /* (control bytes in a name are shown as '?': the message stays one line) */
        assert_err(&ctx, read_c10(&ctx, tpath("h.tar")), cases[c].want, cases[c].needle, NULL);
        cr_assert(strstr(rf_ctx_error(&ctx), "h.tar"), "%s: %s", cases[c].what, rf_ctx_error(&ctx));
    }
    free(img);
    free(t.b);
}

Test(cifar, truncation_at_every_length_of_tar_and_tar_gz, .timeout = 120) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    tarbuf t = c10_tar((const int[6]){1, 1, 1, 1, 1, 1}, 1);
    size_t full = t.n, ok_from = full - 1024 + 512;   /* the first end block ends the archive */
    for (size_t len = 0; len < full; len += (len < 4096 || len + 1100 > full ? 1 : 61)) {
        write_bytes(tpath("t.tar"), t.b, len);
        rf_status s = read_c10(&ctx, tpath("t.tar"));
        if (len >= ok_from) cr_assert_eq(s, RF_OK, "len %zu: %s", len, rf_ctx_error(&ctx));
        else cr_assert_eq(s, RF_ERR_TRUNCATED, "len %zu: %d %s", len, s, rf_ctx_error(&ctx));
    }
    write_gz(tpath("t.tar.gz"), t.b, t.n);
    size_t gn;
    unsigned char *g = slurp(tpath("t.tar.gz"), &gn);
    cr_assert_lt(gn, 4096, "the low-entropy archive should compress well (%zu bytes)", gn);
    for (size_t len = 0; len < gn; len++) {
        write_bytes(tpath("t.tar.gz"), g, len);
        rf_status s = read_c10(&ctx, tpath("t.tar.gz"));
        cr_assert_eq(s, RF_ERR_TRUNCATED, "len %zu of %zu: %d %s", len, gn, s, rf_ctx_error(&ctx));
        cr_assert(len == 0 || strstr(rf_ctx_error(&ctx), "t.tar.gz"));
    }
    write_bytes(tpath("t.tar.gz"), g, gn);
    cr_assert_eq(read_c10(&ctx, tpath("t.tar.gz")), RF_OK, "%s", rf_ctx_error(&ctx));
    free(g);
    free(t.b);
}

Test(cifar, corrupt_gzip_is_an_error_never_a_crash) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    tarbuf t = c10_tar((const int[6]){2, 2, 2, 2, 2, 2}, 0);
    write_gz(tpath("c.tar.gz"), t.b, t.n);
    free(t.b);
    size_t gn;
    unsigned char *g = slurp(tpath("c.tar.gz"), &gn);
    int errors = 0;
    /* flip bytes across the deflate stream and the trailer (CRC-32, size) */
    for (size_t at = 12; at < gn; at += gn / 97 + 1) {
        g[at] ^= 0x55;
        write_bytes(tpath("c2.tar.gz"), g, gn);
        rf_status s = read_c10(&ctx, tpath("c2.tar.gz"));
        g[at] ^= 0x55;
        if (s != RF_OK) {
            errors++;
            cr_assert(strstr(rf_ctx_error(&ctx), "c2.tar.gz"), "%s", rf_ctx_error(&ctx));
        }
    }
    /* the last 8 bytes are the CRC and length: a flip there must be caught */
    g[gn - 6] ^= 1;
    write_bytes(tpath("c2.tar.gz"), g, gn);
    assert_err(&ctx, read_c10(&ctx, tpath("c2.tar.gz")), RF_ERR_COMPRESS, "c2.tar.gz: corrupt gzip data", NULL);
    cr_assert_gt(errors, 0);
    /* trailing garbage after the gzip stream */
    g[gn - 6] ^= 1;
    unsigned char *g2 = malloc(gn + 4);
    memcpy(g2, g, gn);
    memcpy(g2 + gn, "junk", 4);
    write_bytes(tpath("c2.tar.gz"), g2, gn + 4);
    cr_assert_neq(read_c10(&ctx, tpath("c2.tar.gz")), RF_OK);
    free(g2);
    free(g);
}

Test(cifar, memory_cap_and_every_allocation_failure) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    tarbuf t = c10_tar((const int[6]){3, 3, 3, 3, 3, 3}, 0);
    write_gz(tpath("f.tar.gz"), t.b, t.n);
    free(t.b);
    ctx.mem_cap = 20000;   /* 3 records of 3073 fit; the float dataset does not */
    assert_err(&ctx, read_c10(&ctx, tpath("f.tar.gz")), RF_ERR_LIMIT, "f.tar.gz", NULL);
    ctx.mem_cap = 0;
    long live = rf_alloc_live();
    int succeeded = 0;
    for (long k = 0; k < 200 && !succeeded; k++) {
        rf_alloc_fail_after(k);
        rf_status s = read_c10(&ctx, tpath("f.tar.gz"));
        rf_alloc_fail_after(-1);
        if (s == RF_OK) succeeded = 1;
        else cr_assert_eq(s, RF_ERR_NOMEM, "k=%ld: %s", k, rf_ctx_error(&ctx));
        cr_assert_eq(rf_alloc_live(), live, "k=%ld leaked", k);
    }
    cr_assert(succeeded);
}

Test(cifar, open_holds_out_validation_from_cifar_train) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    write_c10_dir(tpath("v"), c10_counts, 0);
    char spec[1100];
    snprintf(spec, sizeof spec, "cifar10:%s", tpath("v"));
    cr_assert_eq(rf_data_default_validation(spec), 5000.0);
    rf_data_opts o;
    rf_data_opts_default(&o);
    o.validation = 30;
    rf_data_splits sp;
    cr_assert_eq(rf_data_open(&ctx, spec, &o, &sp), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(sp.train.n, 180);
    cr_assert_eq(sp.val.n, 30);
    cr_assert_eq(sp.test->n, 37);
    cr_assert_eq(sp.val.n_classes, 10);
    /* the default (5,000) is more than these 210 samples: a clear error */
    o.validation = -1;
    rf_data_splits_free(&sp);
    assert_err(&ctx, rf_data_open(&ctx, spec, &o, &sp), RF_ERR_INVALID, "holds out 5000 of 210", NULL);
    cr_assert_null(sp.train_all);
}
