/* safetensors (Hugging Face) reader and float32 writer, and the bridges to
 * raffle's models and checkpoints (issue 6: models compressed here load in
 * PyTorch; models trained in PyTorch can be compressed here).
 *
 * Format: u64 little-endian N, then N bytes of JSON header
 *   {"__metadata__": {str: str, ...}, NAME: {"dtype": "F32", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * then the data section; offsets are relative to its start, and the tensors
 * must tile it exactly (no gaps, no overlap). Tensor data is little-endian,
 * row-major. */
#ifndef RAFFLE_SAFETENSORS_H
#define RAFFLE_SAFETENSORS_H

#include "raffle/core.h"
#include "raffle/nn.h"
#include "raffle/ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rf_st_dtype {
    RF_ST_F32 = 0, RF_ST_F64, RF_ST_F16, RF_ST_BF16,
    RF_ST_I8, RF_ST_U8, RF_ST_I16, RF_ST_I32, RF_ST_I64, RF_ST_BOOL,
    RF_ST_DTYPE_COUNT_
} rf_st_dtype;
const char *rf_st_dtype_name(rf_st_dtype t);   /* "F32", ...; "?" if invalid */

typedef struct rf_st_tensor {
    char        name[96];
    rf_st_dtype dtype;
    int         ndim;
    int64_t     shape[RF_MAX_DIMS];
    uint64_t    begin, end;          /* offsets in the data section */
    const unsigned char *data;       /* borrowed: points into the parsed buffer */
} rf_st_tensor;

typedef struct rf_safetensors {
    int            n;
    rf_st_tensor  *t;                /* sorted by begin offset */
    char          *meta_json;        /* "__metadata__" object as JSON text, "{}" if absent */
    unsigned char *owned;            /* file buffer when read by rf_safetensors_read */
} rf_safetensors;

/* Parses and validates a whole safetensors image. Borrows buf: tensors'
 * data pointers point into it, so it must outlive the result. Rejects a
 * header length beyond the file (RF_ERR_TRUNCATED), bad JSON or fields
 * (RF_ERR_FORMAT), unsupported dtypes or more than RF_MAX_DIMS dims
 * (RF_ERR_UNSUPPORTED), and offsets out of range, overlapping, not covering
 * the data section, or disagreeing with shape x dtype (RF_ERR_SIZE).
 * Returns a new object; free with rf_safetensors_free. */
rf_status rf_safetensors_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, rf_safetensors **out);
/* Reads and parses a file (the result owns the file buffer). */
rf_status rf_safetensors_read(rf_ctx *ctx, const char *path, rf_safetensors **out);
void      rf_safetensors_free(rf_safetensors *st);   /* accepts NULL */
const rf_st_tensor *rf_safetensors_find(const rf_safetensors *st, const char *name);
/* Converts a floating-point tensor (F32, F64, F16, BF16) to float32: returns
 * a new array (rf_free). Integer dtypes: RF_ERR_UNSUPPORTED naming the tensor. */
rf_status rf_st_tensor_to_f32(rf_ctx *ctx, const rf_st_tensor *t, float **out);

/* One float32 tensor to write; all fields borrowed. */
typedef struct rf_st_entry {
    const char    *name;
    int            ndim;
    const int64_t *shape;
    const float   *data;
} rf_st_entry;
/* Encodes n F32 tensors (in the given order) with a "__metadata__" object
 * whose values must all be strings (meta_json may be NULL). Header padded
 * with spaces to a multiple of 8 bytes. Returns a new buffer (rf_free). */
rf_status rf_safetensors_encode_f32(rf_ctx *ctx, const rf_st_entry *e, int n, const char *meta_json,
                                    unsigned char **buf, size_t *len);

/* Checkpoint -> safetensors image: every tensor as dense F32 under its
 * checkpoint name (int8 kinds dequantized, sparse kinds expanded). Returns a
 * new buffer (rf_free). */
rf_status rf_ckpt_to_safetensors(rf_ctx *ctx, const rf_ckpt *c, unsigned char **buf, size_t *len);

/* Loads every parameter and buffer of m by name from st (floating dtypes,
 * converted to f32). Errors name the tensor: missing (RF_ERR_NOTFOUND),
 * shape mismatch (RF_ERR_SHAPE), integer dtype (RF_ERR_UNSUPPORTED), or a
 * tensor in the file that matches nothing in the model (RF_ERR_NOTFOUND;
 * PyTorch's "*.num_batches_tracked" counters are ignored). m is modified
 * only when everything matches. */
rf_status rf_model_load_safetensors(rf_ctx *ctx, rf_model *m, const rf_safetensors *st);

#ifdef __cplusplus
}
#endif
#endif
