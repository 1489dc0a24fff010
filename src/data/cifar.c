/* CIFAR-10 and CIFAR-100, binary version (Krizhevsky 2009,
 * https://www.cs.toronto.edu/~kriz/cifar.html).
 *
 * A file is records back to back, no header:
 *
 *   CIFAR-10   <label: 1 byte, 0-9> <3072 pixel bytes>            3073 bytes
 *   CIFAR-100  <coarse: 1 byte, 0-19> <fine: 1 byte, 0-99> <3072>  3074 bytes
 *
 * The pixels are the red plane (1024 bytes, row-major 32x32), then green,
 * then blue: exactly rf_dataset's [3, 32, 32] sample layout. Files:
 *
 *   cifar-10-binary.tar.gz   cifar-10-batches-bin/data_batch_1.bin .. _5.bin
 *                            (10,000 records each), test_batch.bin (10,000)
 *   cifar-100-binary.tar.gz  cifar-100-binary/train.bin (50,000), test.bin (10,000)
 *
 * The same parser reads a directory's files and an archive's members (each
 * member is read into memory whole, then parsed), so a test that writes small
 * files in this format exercises the code a user with the real archive runs.
 * Record counts are not fixed (tests write a few hundred); everything else
 * is checked: whole records only, every label byte in range. */
#include "data/data_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { SIDE = 32, CH = 3, PIXELS = CH * SIDE * SIDE, MAX_FILES = 6 };

/* Published archives. Sizes and md5 are those on the CIFAR page; the sha256
 * digests are TensorFlow Datasets' recorded checksums for the same URLs
 * (tensorflow_datasets/url_checksums/cifar10.txt, cifar100.txt): not yet
 * verified against a download here (no internet access on this machine). */
static const rf_data_archive archives[] = {
    {"cifar10", "cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", 170052171,
     "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", "c32a1d4ab5d03f1284b67883e8d87530"},
    {"cifar100", "cifar-100-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", 168513733,
     "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec", "03b5dce01913d631647c71ecec9e9cb8"},
};

typedef struct cifar_format {
    const char *spec;             /* dataset name in a spec */
    const char *title;            /* in errors */
    int         label_bytes;      /* 1 or 2 */
    int         label_at;         /* which label byte becomes y */
    int         limit[2];         /* each label byte must be below this */
    const char *label_name[2];    /* in errors */
    int         n_classes;
    int         n_train_files;    /* files[0..n_train_files) train, then the test file */
    const char *files[MAX_FILES];
    const char *dir;              /* what the archive unpacks to */
    const char *python_dir;       /* the python version's directory: a hint when given that archive */
    const rf_data_archive *archive;
} cifar_format;

static const cifar_format formats[RF_CIFAR_KIND_COUNT_] = {
    [RF_CIFAR10] = {"cifar10", "CIFAR-10", 1, 0, {10, 0}, {"label", ""}, 10, 5,
                    {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                     "data_batch_5.bin", "test_batch.bin"},
                    "cifar-10-batches-bin", "cifar-10-batches-py", &archives[0]},
    [RF_CIFAR100_FINE] = {"cifar100", "CIFAR-100", 2, 1, {20, 100}, {"coarse label", "fine label"}, 100, 1,
                          {"train.bin", "test.bin"}, "cifar-100-binary", "cifar-100-python", &archives[1]},
    [RF_CIFAR100_COARSE] = {"cifar100-coarse", "CIFAR-100", 2, 0, {20, 100}, {"coarse label", "fine label"}, 20, 1,
                            {"train.bin", "test.bin"}, "cifar-100-binary", "cifar-100-python", &archives[1]},
};

static size_t record_size(const cifar_format *f) { return (size_t)f->label_bytes + PIXELS; }

/* Checks one file's image (size, every label) and returns its record count. */
static rf_status check_file(rf_ctx *ctx, const cifar_format *f, const unsigned char *buf, size_t n,
                            const char *what, size_t *records) {
    size_t rec = record_size(f);
    if (n == 0) return rf_error(ctx, RF_ERR_SIZE, "%s: empty file (no %s records)", what, f->title);
    if (n % rec)
        return rf_error(ctx, RF_ERR_SIZE, "%s: %zu bytes is not a whole number of %zu-byte %s records (%zu records and %zu bytes over)",
                        what, n, rec, f->title, n / rec, n % rec);
    for (size_t r = 0; r < n / rec; r++)
        for (int b = 0; b < f->label_bytes; b++) {
            unsigned v = buf[r * rec + (size_t)b];
            if ((int)v >= f->limit[b])
                return rf_error(ctx, RF_ERR_DATA, "%s: record %zu has %s %u (%s %ss are 0-%d)",
                                what, r, f->label_name[b], v, f->title, f->label_name[b], f->limit[b] - 1);
        }
    *records = n / rec;
    return RF_OK;
}

/* One split from k checked file images, in order. */
static rf_status build(rf_ctx *ctx, const cifar_format *f, unsigned char *const *bufs, const size_t *sizes,
                       char (*whats)[1100], int k, rf_dataset **out) {
    *out = NULL;
    size_t total = 0, counts[MAX_FILES];
    for (int i = 0; i < k; i++) {
        RF_TRY(check_file(ctx, f, bufs[i], sizes[i], whats[i], &counts[i]));
        total += counts[i];
    }
    if (total > UINT32_MAX) return rf_error(ctx, RF_ERR_LIMIT, "%s: %zu records (at most 2^32-1)", whats[0], total);
    rf_dataset *ds;
    RF_TRY(rf_dataset_alloc_(ctx, f->spec, (int64_t)total, CH, SIDE, SIDE, whats[0], &ds));
    ds->n_classes = f->n_classes;
    size_t rec = record_size(f), s = 0;
    for (int i = 0; i < k; i++)
        for (size_t r = 0; r < counts[i]; r++, s++) {
            const unsigned char *p = bufs[i] + r * rec;
            ds->y[s] = p[f->label_at];
            float *x = ds->x + s * PIXELS;
            for (int j = 0; j < PIXELS; j++) x[j] = (float)p[f->label_bytes + j] * (1.0f / 255.0f);
        }
    *out = ds;
    return RF_OK;
}

rf_status rf_cifar_parse(rf_ctx *ctx, rf_cifar_kind kind, const unsigned char *buf, size_t n, const char *what,
                         rf_dataset **out) {
    *out = NULL;
    if ((unsigned)kind >= RF_CIFAR_KIND_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "unknown CIFAR kind %d", (int)kind);
    char w[1][1100];
    snprintf(w[0], sizeof w[0], "%s", what ? what : formats[kind].title);
    unsigned char *b = (unsigned char *)(uintptr_t)buf;
    return build(ctx, &formats[kind], &b, &n, w, 1, out);
}

/* The files of a format, read into memory: bufs[i] (rf_free) and whats[i]. */
typedef struct file_set {
    unsigned char *bufs[MAX_FILES];
    size_t         sizes[MAX_FILES];
    char           whats[MAX_FILES][1100];
} file_set;

static void file_set_free(file_set *fs) {
    for (int i = 0; i < MAX_FILES; i++) rf_free(fs->bufs[i]);
}

static int n_files(const cifar_format *f) { return f->n_train_files + 1; }

static rf_status read_dir(rf_ctx *ctx, const cifar_format *f, const char *dir, file_set *fs) {
    for (int i = 0; i < n_files(f); i++) {
        snprintf(fs->whats[i], sizeof fs->whats[i], "%s/%s", dir, f->files[i]);
        rf_status s = rf_read_file(ctx, fs->whats[i], &fs->bufs[i], &fs->sizes[i]);
        if (s == RF_ERR_NOTFOUND)
            return rf_error(ctx, s, "%s: missing (a %s directory holds %s ... %s)", fs->whats[i], f->title,
                            f->files[0], f->files[n_files(f) - 1]);
        RF_TRY(s);
    }
    return RF_OK;
}

/* Which of f's files an archive member is: "FILE" or "DIR/FILE" (one
 * directory level, optionally after "./"); -1 if none. */
static int member_index(const cifar_format *f, const char *name) {
    if (strncmp(name, "./", 2) == 0) name += 2;
    const char *slash = strchr(name, '/');
    if (slash && strchr(slash + 1, '/')) return -1;
    const char *base = slash ? slash + 1 : name;
    for (int i = 0; i < n_files(f); i++)
        if (strcmp(base, f->files[i]) == 0) return i;
    return -1;
}

static rf_status read_archive(rf_ctx *ctx, const cifar_format *f, const char *path, file_set *fs) {
    rf_tar *t = NULL;
    RF_TRY(rf_tar_open(ctx, path, &t));
    rf_status s = RF_OK;
    int python = 0;
    for (;;) {
        const char *name;
        uint64_t size;
        if ((s = rf_tar_next(ctx, t, &name, &size)) != RF_OK || !name) break;
        python |= strstr(name, f->python_dir) != NULL;
        int i = member_index(f, name);
        if (i < 0) continue;
        if (fs->bufs[i]) { s = rf_error(ctx, RF_ERR_FORMAT, "%s: two members named %s", path, f->files[i]); break; }
        snprintf(fs->whats[i], sizeof fs->whats[i], "%s: %s", path, name);
        size_t rec = record_size(f);
        /* size errors before allocating: a header can claim anything */
        if (size == 0 || size % rec) {
            s = rf_error(ctx, RF_ERR_SIZE, "%s: %llu bytes is not a whole, non-zero number of %zu-byte %s records",
                         fs->whats[i], (unsigned long long)size, rec, f->title);
            break;
        }
        if ((s = rf_check_cap(ctx, size, fs->whats[i])) != RF_OK) break;
        if (size > SIZE_MAX - 1 || !(fs->bufs[i] = rf_malloc((size_t)size))) {
            s = rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", fs->whats[i]);
            break;
        }
        fs->sizes[i] = (size_t)size;
        if ((s = rf_tar_read(ctx, t, fs->bufs[i], (size_t)size)) != RF_OK) break;
    }
    rf_tar_close(t);
    RF_TRY(s);
    for (int i = 0; i < n_files(f); i++)
        if (!fs->bufs[i])
            return rf_error(ctx, RF_ERR_NOTFOUND, "%s: no member %s/%s in the archive%s", path, f->dir, f->files[i],
                            python ? " (this is the python version; raffle reads the binary version)" : "");
    return RF_OK;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}
static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Finds the data under path (see rf_cifar_read) and reads it into fs. */
static rf_status read_files(rf_ctx *ctx, const cifar_format *f, const char *path, file_set *fs) {
    if (is_file(path)) return read_archive(ctx, f, path, fs);
    if (!is_dir(path))
        return rf_error(ctx, RF_ERR_NOTFOUND, "%s: no such file or directory (expected a %s directory or %s, from %s)",
                        path, f->title, f->archive->file, f->archive->url);
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", path, f->files[0]);
    if (is_file(p)) return read_dir(ctx, f, path, fs);
    snprintf(p, sizeof p, "%s/%s/%s", path, f->dir, f->files[0]);
    if (is_file(p)) {
        snprintf(p, sizeof p, "%s/%s", path, f->dir);
        return read_dir(ctx, f, p, fs);
    }
    snprintf(p, sizeof p, "%s/%s", path, f->archive->file);
    if (is_file(p)) return read_archive(ctx, f, p, fs);
    return rf_error(ctx, RF_ERR_NOTFOUND, "%s: no %s data: expected %s ... %s, %s/ or %s there (download %s)",
                    path, f->title, f->files[0], f->files[n_files(f) - 1], f->dir, f->archive->file, f->archive->url);
}

rf_status rf_cifar_read(rf_ctx *ctx, rf_cifar_kind kind, const char *path, rf_dataset **train, rf_dataset **test) {
    *train = NULL; *test = NULL;
    if ((unsigned)kind >= RF_CIFAR_KIND_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "unknown CIFAR kind %d", (int)kind);
    const cifar_format *f = &formats[kind];
    file_set fs;
    memset(&fs, 0, sizeof fs);
    rf_status s = read_files(ctx, f, path, &fs);
    if (!s) s = build(ctx, f, fs.bufs, fs.sizes, fs.whats, f->n_train_files, train);
    if (!s) s = build(ctx, f, fs.bufs + f->n_train_files, fs.sizes + f->n_train_files, fs.whats + f->n_train_files, 1, test);
    file_set_free(&fs);
    if (s) { rf_dataset_free(*train); *train = NULL; }
    return s;
}

/* The format a spec names ("cifar100-coarse:DIR" -> RF_CIFAR100_COARSE). */
static const cifar_format *format_of(const char *spec, size_t *name_len) {
    size_t n = strcspn(spec, ":");
    for (int k = 0; k < RF_CIFAR_KIND_COUNT_; k++)
        if (strlen(formats[k].spec) == n && strncmp(spec, formats[k].spec, n) == 0) {
            *name_len = n;
            return &formats[k];
        }
    return NULL;
}

const rf_data_archive *rf_data_archive_find(const char *spec) {
    size_t n;
    const cifar_format *f = spec ? format_of(spec, &n) : NULL;
    return f ? f->archive : NULL;
}

/* rf_data_load's loader for "cifar10[:PATH]", "cifar100[:PATH]" and
 * "cifar100-coarse[:PATH]"; without PATH, the data cache's directory named
 * after the archive's dataset ($RAFFLE_CACHE/cifar10). */
rf_status rf_cifar_load_spec_(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test) {
    size_t n;
    const cifar_format *f = format_of(spec, &n);
    if (!f) return rf_error(ctx, RF_ERR_NOTFOUND, "'%s': not a CIFAR dataset name", spec);
    char dir[1024];
    const char *path = spec + n;
    if (*path == ':') {
        path++;
        if (!*path) return rf_error(ctx, RF_ERR_INVALID, "'%s': empty path after ':'", spec);
        if (rf_data_is_pinned(path, strlen(path))) {
            RF_TRY(rf_data_pinned_path(ctx, path, strlen(path), dir, sizeof dir));
            path = dir;
        }
    } else {
        char cache[768];
        snprintf(dir, sizeof dir, "%s/%s", rf_data_cache_dir(cache, sizeof cache), f->archive->dataset);
        path = dir;
    }
    return rf_cifar_read(ctx, (rf_cifar_kind)(f - formats), path, train, test);
}
