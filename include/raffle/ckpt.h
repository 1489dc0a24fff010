/* raffle checkpoint container, format version 1 (docs/checkpoint-format.md).
 *
 * One .rckpt file: magic, version, JSON metadata, tensor directory, zstd-
 * compressed payloads, CRC32C over everything. Written atomically. Storage
 * kinds: dense, sparse (coded mask + non-zero values), int8 (values + per-
 * channel scales), codebook (b-bit indices into 2^b shared f32 values,
 * optionally with a mask), int4 (values + a scale, and for affine a zero
 * point, per group of elements along a row) and N:M (f32 values whose mask
 * keeps N of every M consecutive elements of a row, stored as in-group
 * positions). */
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
    RF_STORE_CODEBOOK = 4,         /* u8 indices (bits wide) + codebook of 2^bits f32 (Han et al. 2016) */
    RF_STORE_SPARSE_CODEBOOK = 5,  /* mask + indices of the kept entries + codebook */
    RF_STORE_INT4 = 6,             /* int4 values (i8 in memory) + f32 scale [+ zero point] per group */
    RF_STORE_NM = 7,               /* f32, N:M mask as in-group positions + the kept values */
    RF_STORE_COUNT_
} rf_storage;
const char *rf_storage_name(rf_storage s);
/* Largest M of the N:M kind (in-group positions take ceil(log2 M) bits). */
#define RF_NM_MAX_M 64

/* One tensor in memory, always in expanded form: f32 data (dequantized view
 * for int8 kinds is NOT made: int8 tensors keep q and scales; codebook
 * tensors keep their indices and codebook; int4 tensors keep q, scales and
 * zero points). rf_ckpt_tensor_to_f32 gives the dequantized values. */
typedef struct rf_ckpt_tensor {
    char      name[96];
    rf_dtype  dtype;         /* any for dense/sparse; RF_I8 for int8 and int4 kinds; RF_U8 for
                                codebook kinds (the indices); RF_F32 for N:M */
    int       ndim;
    int64_t   shape[RF_MAX_DIMS];
    rf_storage storage;      /* how it is (to be) stored on disk */
    void     *data;          /* numel elements of dtype (owned); zeros where masked */
    uint8_t  *mask;          /* sparse kinds: numel bytes of 0/1 (owned), else NULL */
    float    *scales;        /* int8 kinds: shape[0] scales; int4: one per group, row-major
                                (rf_ckpt_tensor_n_scales of them) (owned); else NULL */
    int32_t  *zero_points;   /* optional zero points, one per scale (owned) or NULL; int4:
                                present = affine (q in [0, 15]), NULL = symmetric (q in [-8, 7]) */
    float    *codebook;      /* codebook kinds: 2^bits shared values (owned), else NULL */
    int       bits;          /* codebook kinds: index width, 1..8; int4: 4; else 0 */
    int       group_size;    /* int4: elements per scale along a row (divides the row); else 0 */
    int       nm_n, nm_m;    /* N:M kind: N kept in every group of M along a row; else 0 */
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
 * derived from the non-zeros of data. scales: shape[0] floats for int8 kinds.
 * Kinds 0-3 only: the others have their own rf_ckpt_add_* below. */
rf_status rf_ckpt_add(rf_ctx *ctx, rf_ckpt *c, const char *name, rf_dtype dtype, int ndim,
                      const int64_t *shape, rf_storage storage, const void *data,
                      const uint8_t *mask, const float *scales);
/* Codebook tensor: idx[numel] indices into codebook[2^bits] (finite floats),
 * bits in [1, 8]; RF_STORE_SPARSE_CODEBOOK when mask (numel bytes of 0/1) is
 * non-NULL, whose pruned entries read back as index 0 and value 0,
 * RF_STORE_CODEBOOK otherwise. Copies everything. */
rf_status rf_ckpt_add_codebook(rf_ctx *ctx, rf_ckpt *c, const char *name, int ndim, const int64_t *shape,
                               const uint8_t *idx, const uint8_t *mask, int bits, const float *codebook);
/* int4 tensor (RF_STORE_INT4): q[numel] int4 values held in int8, one scale
 * per group of group_size consecutive elements of a row (rows = shape[0];
 * group_size must divide the row length), scales[rows * row/group_size]
 * finite. zero_points NULL: symmetric, q in [-8, 7], value = q * scale;
 * else affine, q and zero_points in [0, 15], value = (q - zp) * scale.
 * Copies everything. */
rf_status rf_ckpt_add_int4(rf_ctx *ctx, rf_ckpt *c, const char *name, int ndim, const int64_t *shape,
                           const int8_t *q, int group_size, const float *scales, const int32_t *zero_points);
/* N:M tensor (RF_STORE_NM): f32 data whose mask keeps exactly n entries in
 * every group of m consecutive elements of a row (1 <= n <= m, 2 <= m <=
 * RF_NM_MAX_M, m divides the row). Pruned entries read back as 0. Copies. */
rf_status rf_ckpt_add_nm(rf_ctx *ctx, rf_ckpt *c, const char *name, int ndim, const int64_t *shape,
                         const float *data, const uint8_t *mask, int n, int m);
/* Copies tensor t (any kind, e.g. from another checkpoint) into c. */
rf_status rf_ckpt_add_copy(rf_ctx *ctx, rf_ckpt *c, const rf_ckpt_tensor *t);
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
/* Number of floats in t's scales (int8: rows; int4: rows x groups per row)
 * or codebook (2^bits); 0 for the other kinds. */
uint64_t  rf_ckpt_tensor_n_scales(const rf_ckpt_tensor *t);
/* Dense float copy: f32 as is, int8 kinds dequantized (q - zero_point) * scale
 * per row, int4 per group, codebook kinds codebook[index] (0 where pruned),
 * other dtypes converted. Returns a new array (rf_free) of numel floats. */
rf_status rf_ckpt_tensor_to_f32(rf_ctx *ctx, const rf_ckpt_tensor *t, float **out);
/* Empirical entropy bound of a tensor in bytes (docs/checkpoint-format.md,
 * "Entropy bound"): numel*H(density) bits for the mask of sparse kinds
 * (groups x log2 C(M, N) for an N:M mask), plus the order-0 Shannon entropy
 * of the stored values' empirical histogram (of their bit patterns, for any
 * dtype: int4 values, codebook indices). Scales, zero points, codebooks and
 * metadata are not counted. */
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
