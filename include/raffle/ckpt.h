/* raffle checkpoint container, format version 1 (docs/checkpoint-format.md).
 *
 * One .rckpt file: magic, version, JSON metadata, tensor directory, zstd-
 * compressed payloads, CRC32C over everything. Written atomically. Storage
 * kinds: dense, sparse (coded mask + non-zero values), int8 (values + per-
 * channel scales). */
#ifndef RAFFLE_CKPT_H
#define RAFFLE_CKPT_H

#include "raffle/core.h"
#include "raffle/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_CKPT_VERSION 1

typedef enum rf_storage {          /* stored in files: never change */
    RF_STORE_DENSE  = 0,
    RF_STORE_SPARSE = 1,           /* f32 tensor: mask + non-zero values     */
    RF_STORE_INT8   = 2,           /* int8 values + f32 scale per row (dim 0) */
    RF_STORE_SPARSE_INT8 = 3,      /* mask + non-zero int8 values + scales   */
    RF_STORE_COUNT_
} rf_storage;
const char *rf_storage_name(rf_storage s);

/* One tensor in memory, always in expanded form: f32 data (dequantized view
 * for int8 kinds is NOT made: int8 tensors keep q and scales). */
typedef struct rf_ckpt_tensor {
    char      name[96];
    rf_dtype  dtype;         /* RF_F32 for dense/sparse; RF_I8 for int8 kinds; any for dense */
    int       ndim;
    int64_t   shape[RF_MAX_DIMS];
    rf_storage storage;      /* how it is (to be) stored on disk */
    void     *data;          /* numel elements of dtype (owned); zeros where masked */
    uint8_t  *mask;          /* sparse kinds: numel bytes of 0/1 (owned), else NULL */
    float    *scales;        /* int8 kinds: shape[0] scales (owned), else NULL */
    int32_t  *zero_points;   /* optional per-row zero points (owned) or NULL */
    uint64_t  disk_bytes;    /* bytes on disk (filled by write/read) */
    uint64_t  nnz;           /* non-zeros (filled by add/read); for sparse kinds
                                the kept entries (mask bits set) */
    char      coding[48];    /* how each section was coded, e.g. "mask=arith0 values=arith"
                                (filled by encode/read; informational) */
} rf_ckpt_tensor;

typedef struct rf_ckpt {
    char           *meta_json;  /* owned, "{}" if none */
    int             n, cap;
    rf_ckpt_tensor *t;
    uint32_t        version;    /* of the file read */
    uint64_t        file_bytes; /* size of the file read or written */
} rf_ckpt;

/* Returns a new empty checkpoint; free with rf_ckpt_free. */
rf_status rf_ckpt_new(rf_ctx *ctx, rf_ckpt **out);
void      rf_ckpt_free(rf_ckpt *c);   /* accepts NULL */
/* Copies meta_json. */
rf_status rf_ckpt_set_meta(rf_ctx *ctx, rf_ckpt *c, const char *meta_json);
/* Copies data, mask and scales. Names must be unique. For sparse kinds, mask
 * (numel bytes of 0/1) says which entries are kept; if mask is NULL it is
 * derived from the non-zeros of data. scales: shape[0] floats for int8 kinds. */
rf_status rf_ckpt_add(rf_ctx *ctx, rf_ckpt *c, const char *name, rf_dtype dtype, int ndim,
                      const int64_t *shape, rf_storage storage, const void *data,
                      const uint8_t *mask, const float *scales);
const rf_ckpt_tensor *rf_ckpt_find(const rf_ckpt *c, const char *name);
/* Writes atomically (temp + fsync + rename + dir fsync). */
rf_status rf_ckpt_write(rf_ctx *ctx, rf_ckpt *c, const char *path);
/* Encodes to memory: returns a new buffer (rf_free) and its size. */
rf_status rf_ckpt_encode(rf_ctx *ctx, rf_ckpt *c, unsigned char **buf, size_t *n);
/* Reads and fully validates; returns a new checkpoint. Distinct statuses for
 * wrong magic, newer version (with a hint), checksum, truncation, sizes. */
rf_status rf_ckpt_read(rf_ctx *ctx, const char *path, rf_ckpt **out);
rf_status rf_ckpt_decode(rf_ctx *ctx, const unsigned char *buf, size_t n, rf_ckpt **out);

/* ---- helpers for readers of checkpoints (inspect, export, model load) ---- */
int64_t   rf_ckpt_tensor_numel(const rf_ckpt_tensor *t);
/* Fraction of entries that are zero or pruned, in [0, 1]. */
double    rf_ckpt_tensor_sparsity(const rf_ckpt_tensor *t);
/* Dense float copy: f32 as is, int8 kinds dequantized (q - zero_point) * scale
 * per row, other dtypes converted. Returns a new array (rf_free) of numel floats. */
rf_status rf_ckpt_tensor_to_f32(rf_ctx *ctx, const rf_ckpt_tensor *t, float **out);
/* Empirical entropy bound of a tensor in bytes (docs/checkpoint-format.md,
 * "Entropy bound"): numel*H(density) bits for the mask of sparse kinds, plus
 * the order-0 Shannon entropy of the stored values' empirical histogram (of
 * their bit patterns, for any dtype). Scales and metadata are not counted. */
double    rf_ckpt_tensor_entropy_bound(const rf_ckpt_tensor *t);
double    rf_ckpt_entropy_bound(const rf_ckpt *c);

/* ---- model <-> checkpoint -------------------------------------------------
 * Metadata JSON holds {"raffle_version","format":"rckpt","spec":<spec>,
 * "extra":<caller's extra JSON object or null>}. Tensors: every param tensor
 * by name; prunable params of a masked model are stored with the SPARSE kind
 * (their mask is the stored mask, so a kept weight that happens to be 0.0
 * keeps its mask bit); BN buffers as "<layer>.running_mean"/"running_var". */
/* Builds a checkpoint of m (copies data). extra_json may be NULL.
 * Returns new checkpoint; free with rf_ckpt_free. */
rf_status rf_model_to_ckpt(rf_ctx *ctx, const rf_model *m, const char *extra_json, rf_ckpt **out);
rf_status rf_model_save(rf_ctx *ctx, const rf_model *m, const char *extra_json, const char *path);
/* Rebuilds a model from a checkpoint (masks restored when stored sparse).
 * Returns a new model; free with rf_model_free. */
rf_status rf_model_from_ckpt(rf_ctx *ctx, const rf_ckpt *c, rf_model **out);
rf_status rf_model_load(rf_ctx *ctx, const char *path, rf_model **out);

#ifdef __cplusplus
}
#endif
#endif
