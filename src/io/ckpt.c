/* The .rckpt checkpoint container, format version 1.
 *
 * Byte layout (all integers little-endian; docs/checkpoint-format.md has the
 * full description and the reasons):
 *
 *   +--------+---------+-------+-----------+----------+-----------+---------+
 *   | magic  | version | flags | file_size | meta_len | n_tensors | dir_len |
 *   | 8      | u32     | u32   | u64       | u32      | u32       | u32     |
 *   +--------+---------+-------+-----------+----------+-----------+---------+
 *   | metadata JSON (meta_len bytes)                                        |
 *   +-----------------------------------------------------------------------+
 *   | directory: n_tensors entries (dir_len bytes)                          |
 *   |   u16 name_len | name | u8 dtype | u8 storage | u8 ndim | u8 0 |      |
 *   |   i64 shape[ndim] | u64 offset | u64 size | u64 raw_size | u64 nnz |  |
 *   |   u32 crc32c(payload)                                                 |
 *   +-----------------------------------------------------------------------+
 *   | payloads, back to back in directory order                             |
 *   |   u8 n_sections, then per section:                                    |
 *   |   u8 kind | u8 codec | u8 param | u8 zstd | u64 stored | u64 coded |  |
 *   |   stored bytes (zstd frame of `coded` bytes when zstd = 1)            |
 *   +-----------------------------------------------------------------------+
 *   | u32 crc32c of every byte before it                                    |
 *   +-----------------------------------------------------------------------+
 *
 * The magic "\x89RFK\r\n\x1a\n" follows PNG's: a high-bit byte catches 7-bit
 * transfers, CR LF and LF catch newline translation, ^Z stops DOS `type`.
 *
 * Each section is coded with whichever candidate codec is smallest for that
 * tensor (a bitmap, gap varints or adaptive arithmetic coding for masks; raw,
 * an order-0 or a per-row range code for int8 values; raw, b-bit packing or
 * an order-0 range code for codebook indices and int4 values; raw or byte
 * planes for wider elements) and then kept zstd-compressed only when zstd
 * makes it smaller. The N:M kind's mask has one codec, its in-group
 * positions, so that the structure is part of the format. The reader trusts
 * nothing: sizes are checked against the file and the memory cap before
 * anything is allocated. */
#include "raffle/ckpt.h"
#include "io/entropy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define HDR_LEN   36
#define SEC_HDR   20
#define TRAILER   4
#define NAME_CAP  ((int)sizeof(((rf_ckpt_tensor *)0)->name))
/* smallest directory entry: u16 name_len, 1-byte name, 4 u8, 4 u64, u32 */
#define DIR_MIN   (2 + 1 + 4 + 32 + 4)
/* zstd level for sections, chosen by measurement (docs/checkpoint-format.md,
 * "zstd level"): on Gaussian f32 weights every level from 1 to 19 gives the
 * same 1.085x (only Huffman literals help) while level 9 takes 36x longer
 * than level 1; on 10%-dense bitmaps level 1 beat levels 3-12; on int8
 * values all levels tie. Masks and int8 values are arithmetic coded anyway. */
#define CKPT_ZSTD_LEVEL 1

static const unsigned char ckpt_magic[8] = {0x89, 'R', 'F', 'K', '\r', '\n', 0x1A, '\n'};

/* Section kind 2 holds a kind's float side data: the row scales of int8
 * kinds, the group scales of int4, the codebook of codebook kinds. */
enum { SEC_MASK = 1, SEC_SCALES = 2, SEC_ZP = 3, SEC_VALUES = 4 };
enum { CODEC_RAW = 0, CODEC_GAPS = 1, CODEC_BITS = 2, CODEC_SYMS = 3, CODEC_ROWSYMS = 4, CODEC_PLANES = 5,
       CODEC_PACKED = 6, CODEC_NM = 7, CODEC_COUNT_ };
static const char *const codec_names[CODEC_COUNT_] = {"raw", "gaps", "arith", "arith", "arith-rows", "planes",
                                                      "packed", "nm"};
static const char *const sec_names[] = {"", "mask", "scales", "zero_points", "values"};

static const char *const storage_names[RF_STORE_COUNT_] = {
    [RF_STORE_DENSE] = "dense", [RF_STORE_SPARSE] = "sparse",
    [RF_STORE_INT8] = "int8", [RF_STORE_SPARSE_INT8] = "sparse-int8",
    [RF_STORE_CODEBOOK] = "codebook", [RF_STORE_SPARSE_CODEBOOK] = "sparse-codebook",
    [RF_STORE_INT4] = "int4", [RF_STORE_NM] = "nm",
};

const char *rf_storage_name(rf_storage s) {
    return (unsigned)s < RF_STORE_COUNT_ ? storage_names[s] : "?";
}

static int is_sparse(rf_storage s) {
    return s == RF_STORE_SPARSE || s == RF_STORE_SPARSE_INT8 || s == RF_STORE_SPARSE_CODEBOOK || s == RF_STORE_NM;
}
static int is_int8(rf_storage s) { return s == RF_STORE_INT8 || s == RF_STORE_SPARSE_INT8; }
static int is_codebook(rf_storage s) { return s == RF_STORE_CODEBOOK || s == RF_STORE_SPARSE_CODEBOOK; }
static int is_int4(rf_storage s) { return s == RF_STORE_INT4; }
/* Kinds with a scales section (kind 2), and those that may add zero points. */
static int has_scales(rf_storage s) { return is_int8(s) || is_int4(s) || is_codebook(s); }
static int may_have_zp(rf_storage s) { return is_int8(s) || is_int4(s); }
static const char *sec_name(rf_storage st, int kind) {
    return kind == SEC_SCALES && is_codebook(st) ? "codebook" : sec_names[kind];
}

int64_t rf_ckpt_tensor_numel(const rf_ckpt_tensor *t) { return rf_shape_numel(t->ndim, t->shape); }
/* Rows that carry their own int8 scale: dim 0 (one for a scalar, none for an
 * empty tensor, so a lying dim 0 next to a zero dim cannot size an array). */
static uint64_t tensor_rows(const rf_ckpt_tensor *t) {
    int64_t n = rf_ckpt_tensor_numel(t);
    if (n <= 0) return 0;
    return t->ndim ? (uint64_t)t->shape[0] : 1;
}
/* Elements per row (the flattened dims after dim 0); 0 for an empty tensor. */
static uint64_t tensor_cols(const rf_ckpt_tensor *t) {
    uint64_t rows = tensor_rows(t);
    return rows ? (uint64_t)rf_ckpt_tensor_numel(t) / rows : 0;
}

uint64_t rf_ckpt_tensor_n_scales(const rf_ckpt_tensor *t) {
    if (is_int8(t->storage)) return tensor_rows(t);
    if (is_int4(t->storage)) return t->group_size > 0 ? tensor_rows(t) * (tensor_cols(t) / (uint64_t)t->group_size) : 0;
    if (is_codebook(t->storage)) return t->bits >= 1 && t->bits <= 8 ? 1u << t->bits : 0;
    return 0;
}

/* The float side data the scales section carries. */
static float **side_floats(rf_ckpt_tensor *t) { return is_codebook(t->storage) ? &t->codebook : &t->scales; }

/* Index of element i's scale / zero point in an int4 tensor. */
static size_t int4_group(const rf_ckpt_tensor *t, size_t i) {
    size_t cols = (size_t)tensor_cols(t);
    return (i / cols) * (cols / (size_t)t->group_size) + (i % cols) / (size_t)t->group_size;
}

/* Non-zero test per dtype: floats compare as values so -0.0 counts as zero. */
static int elem_nonzero(rf_dtype dt, const void *data, size_t i) {
    switch (dt) {
    case RF_F32: return ((const float *)data)[i] != 0.0f;
    case RF_I8:  return ((const int8_t *)data)[i] != 0;
    case RF_U8:  return ((const uint8_t *)data)[i] != 0;
    case RF_I32: return ((const int32_t *)data)[i] != 0;
    case RF_I64: return ((const int64_t *)data)[i] != 0;
    default:     return 0;
    }
}

/* Non-zero test of element i's value (what `nnz` counts for dense kinds):
 * a codebook entry is non-zero when its shared value is, an affine int4 one
 * when q differs from its group's zero point; other kinds test the element. */
static int value_nonzero(const rf_ckpt_tensor *t, size_t i) {
    if (is_codebook(t->storage)) return t->codebook[((const uint8_t *)t->data)[i]] != 0.0f;
    if (is_int4(t->storage) && t->zero_points) return ((const int8_t *)t->data)[i] != t->zero_points[int4_group(t, i)];
    return elem_nonzero(t->dtype, t->data, i);
}

/* Elements are little-endian on disk; on a big-endian host each is swapped. */
static void copy_le(void *dst, const void *src, size_t count, size_t esize) {
    memcpy(dst, src, count * esize);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    unsigned char *p = dst;
    for (size_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) { unsigned char t = p[a]; p[a] = p[b]; p[b] = t; }
#endif
}

/* ---- growable byte buffer ------------------------------------------------- */
typedef struct bbuf { unsigned char *p; size_t len, cap; int oom; } bbuf;

static void bb_reserve(bbuf *b, size_t extra) {
    if (b->oom) return;
    if (extra > SIZE_MAX - b->len) { b->oom = 1; return; }
    if (b->len + extra <= b->cap) return;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra) nc = nc > SIZE_MAX / 2 ? b->len + extra : nc * 2;
    unsigned char *np = rf_realloc(b->p, nc);
    if (!np) { b->oom = 1; return; }
    b->p = np; b->cap = nc;
}
static void bb_put(bbuf *b, const void *d, size_t n) {
    bb_reserve(b, n);
    if (b->oom) return;
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void bb_u8(bbuf *b, unsigned v) { unsigned char c = (unsigned char)v; bb_put(b, &c, 1); }
static void bb_u16(bbuf *b, unsigned v) { unsigned char c[2] = {(unsigned char)v, (unsigned char)(v >> 8)}; bb_put(b, c, 2); }
static void bb_u32(bbuf *b, uint32_t v) { unsigned char c[4]; rf_put_u32(c, v); bb_put(b, c, 4); }
static void bb_u64(bbuf *b, uint64_t v) { unsigned char c[8]; rf_put_u64(c, v); bb_put(b, c, 8); }

/* ---- construction --------------------------------------------------------- */
rf_status rf_ckpt_new(rf_ctx *ctx, rf_ckpt **out) {
    *out = NULL;
    rf_ckpt *c = rf_calloc(1, sizeof *c);
    if (!c) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
    c->meta_json = rf_strdup("{}");
    if (!c->meta_json) { rf_free(c); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
    c->version = RF_CKPT_VERSION;
    *out = c;
    return RF_OK;
}

static void tensor_clear(rf_ckpt_tensor *t) {
    rf_free(t->data); rf_free(t->mask); rf_free(t->scales); rf_free(t->zero_points); rf_free(t->codebook);
    t->data = NULL; t->mask = NULL; t->scales = NULL; t->zero_points = NULL; t->codebook = NULL;
}

void rf_ckpt_free(rf_ckpt *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) tensor_clear(&c->t[i]);
    rf_free(c->t);
    rf_free(c->meta_json);
    rf_free(c);
}

rf_status rf_ckpt_set_meta(rf_ctx *ctx, rf_ckpt *c, const char *meta_json) {
    const char *m = meta_json ? meta_json : "{}";
    cJSON *j = cJSON_Parse(m);
    int ok = j && cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok) return rf_error(ctx, RF_ERR_INVALID, "checkpoint metadata is not a JSON object");
    if (strlen(m) > UINT32_MAX) return rf_error(ctx, RF_ERR_LIMIT, "checkpoint metadata too large");
    char *cp = rf_strdup(m);
    if (!cp) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
    rf_free(c->meta_json);
    c->meta_json = cp;
    return RF_OK;
}

const rf_ckpt_tensor *rf_ckpt_find(const rf_ckpt *c, const char *name) {
    for (int i = 0; i < c->n; i++) if (strcmp(c->t[i].name, name) == 0) return &c->t[i];
    return NULL;
}

static rf_status grow_tensors(rf_ctx *ctx, rf_ckpt *c) {
    if (c->n < c->cap) return RF_OK;
    int nc = c->cap ? c->cap * 2 : 8;
    rf_ckpt_tensor *nt = rf_realloc(c->t, (size_t)nc * sizeof *nt);
    if (!nt) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
    c->t = nt; c->cap = nc;
    return RF_OK;
}

static int name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= (size_t)NAME_CAP) return 0;
    for (size_t i = 0; i < n; i++) if ((unsigned char)name[i] < 0x20) return 0;
    return 1;
}

/* Checks what only the newer kinds need (the in-memory form of docs/
 * checkpoint-format.md's rules); `in` borrows the caller's arrays. */
static rf_status check_kind(rf_ctx *ctx, const rf_ckpt_tensor *in, int64_t numel) {
    const char *name = in->name, *kind = rf_storage_name(in->storage);
    if (!is_codebook(in->storage) && !is_int4(in->storage) && in->storage != RF_STORE_NM) return RF_OK;
    if (numel <= 0) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage needs a non-empty tensor", name, kind);
    size_t n = (size_t)numel, cols = (size_t)tensor_cols(in);
    if (is_codebook(in->storage)) {
        if (in->dtype != RF_U8) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage needs dtype u8 (indices)", name, kind);
        if (in->bits < 1 || in->bits > 8) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': codebook index width %d bits (1-8)", name, in->bits);
        if (!in->codebook) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage needs a codebook", name, kind);
        if (in->storage == RF_STORE_SPARSE_CODEBOOK && !in->mask) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage needs a mask", name, kind);
        for (int j = 0; j < 1 << in->bits; j++)
            if (!isfinite(in->codebook[j])) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': codebook entry %d is not finite", name, j);
        const uint8_t *idx = in->data;
        const uint8_t *kept = in->storage == RF_STORE_SPARSE_CODEBOOK ? in->mask : NULL;
        for (size_t i = 0; i < n; i++)
            if ((!kept || kept[i]) && idx[i] >> in->bits)
                return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': index %u at %zu outside the %d-entry codebook", name, idx[i], i, 1 << in->bits);
    } else if (is_int4(in->storage)) {
        if (in->dtype != RF_I8) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': int4 storage needs dtype i8", name);
        if (in->group_size < 1 || cols % (size_t)in->group_size)
            return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': int4 group size %d does not divide the row length %zu", name, in->group_size, cols);
        if (!in->scales) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': int4 storage needs scales", name);
        uint64_t ns = rf_ckpt_tensor_n_scales(in);
        for (uint64_t g = 0; g < ns; g++) {
            if (!isfinite(in->scales[g])) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': int4 scale %llu is not finite", name, (unsigned long long)g);
            if (in->zero_points && (in->zero_points[g] < 0 || in->zero_points[g] > 15))
                return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': int4 zero point %d outside [0, 15]", name, in->zero_points[g]);
        }
        int lo = in->zero_points ? 0 : -8, hi = in->zero_points ? 15 : 7;
        const int8_t *q = in->data;
        for (size_t i = 0; i < n; i++)
            if (q[i] < lo || q[i] > hi)
                return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': int4 value %d at %zu outside [%d, %d] (%s)", name, q[i], i, lo, hi,
                                in->zero_points ? "affine" : "symmetric");
    } else {
        if (in->dtype != RF_F32) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': N:M storage needs dtype f32", name);
        if (in->nm_n < 1 || in->nm_m < 2 || in->nm_m > RF_NM_MAX_M || in->nm_n > in->nm_m)
            return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %d:%d is not an N:M pattern (1 <= N <= M, 2 <= M <= %d)", name,
                            in->nm_n, in->nm_m, RF_NM_MAX_M);
        if (cols % (size_t)in->nm_m)
            return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': M = %d does not divide the row length %zu", name, in->nm_m, cols);
        if (!in->mask) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': N:M storage needs a mask", name);
        for (size_t g = 0; g < n / (size_t)in->nm_m; g++) {
            int kept = 0;
            for (int j = 0; j < in->nm_m; j++) kept += in->mask[g * (size_t)in->nm_m + (size_t)j] != 0;
            if (kept != in->nm_n)
                return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': row %zu, group %zu keeps %d, not %d of %d", name,
                                g * (size_t)in->nm_m / cols, (g * (size_t)in->nm_m % cols) / (size_t)in->nm_m, kept, in->nm_n, in->nm_m);
        }
    }
    return RF_OK;
}

static rf_status copy_array(rf_ctx *ctx, void **dst, const void *src, size_t bytes, const char *name) {
    *dst = rf_malloc(bytes ? bytes : 1);
    if (!*dst) return rf_error(ctx, RF_ERR_NOMEM, "tensor '%s': out of memory", name);
    if (bytes) memcpy(*dst, src, bytes);
    return RF_OK;
}

/* Every add goes through here: `in` describes the tensor with borrowed
 * arrays (data, mask, scales, zero_points, codebook) that are checked and
 * copied. */
static rf_status tensor_add(rf_ctx *ctx, rf_ckpt *c, const rf_ckpt_tensor *in) {
    const char *name = in->name;
    if (!name_ok(name)) return rf_error(ctx, RF_ERR_INVALID, "tensor name must be 1-%d printable bytes", NAME_CAP - 1);
    if (rf_ckpt_find(c, name)) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s' added twice", name);
    rf_dtype dtype = in->dtype;
    rf_storage storage = in->storage;
    size_t esz = rf_dtype_size(dtype);
    if (!esz) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': bad dtype %d", name, (int)dtype);
    if ((unsigned)storage >= RF_STORE_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': bad storage %d", name, (int)storage);
    if (in->ndim < 0 || in->ndim > RF_MAX_DIMS) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %d dims (max %d)", name, in->ndim, RF_MAX_DIMS);
    int64_t numel = rf_shape_numel(in->ndim, in->shape);
    if (numel < 0 || (uint64_t)numel > UINT64_MAX / esz) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': bad shape", name);
    if (is_int8(storage) && dtype != RF_I8) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage needs dtype i8", name, rf_storage_name(storage));
    if (is_int8(storage) && !in->scales) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage needs scales", name, rf_storage_name(storage));
    if (numel > 0 && !in->data) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': no data", name);
    RF_TRY(check_kind(ctx, in, numel));
    RF_TRY(rf_check_cap(ctx, (uint64_t)numel * esz, name));
    RF_TRY(grow_tensors(ctx, c));

    rf_ckpt_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = dtype; t.ndim = in->ndim; t.storage = storage;
    for (int d = 0; d < in->ndim; d++) t.shape[d] = in->shape[d];
    if (is_codebook(storage)) t.bits = in->bits;
    if (is_int4(storage)) { t.bits = 4; t.group_size = in->group_size; }
    if (storage == RF_STORE_NM) { t.nm_n = in->nm_n; t.nm_m = in->nm_m; }
    size_t n = (size_t)numel;
    uint64_t ns = rf_ckpt_tensor_n_scales(&t);
    rf_status s = copy_array(ctx, &t.data, in->data, n * esz, name);
    if (!s && has_scales(storage)) s = copy_array(ctx, (void **)side_floats(&t), is_codebook(storage) ? in->codebook : in->scales, ns * sizeof(float), name);
    if (!s && may_have_zp(storage) && in->zero_points) s = copy_array(ctx, (void **)&t.zero_points, in->zero_points, ns * sizeof(int32_t), name);
    if (s) { tensor_clear(&t); return s; }
    if (is_sparse(storage)) {
        t.mask = rf_malloc(n + 1);
        if (!t.mask) { tensor_clear(&t); return rf_error(ctx, RF_ERR_NOMEM, "tensor '%s': out of memory", name); }
        for (size_t i = 0; i < n; i++) {
            t.mask[i] = in->mask ? (in->mask[i] != 0) : (uint8_t)elem_nonzero(dtype, in->data, i);
            /* pruned entries are zero in memory: what is not stored reads back as 0 */
            if (!t.mask[i]) memset((unsigned char *)t.data + i * esz, 0, esz);
            t.nnz += t.mask[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) t.nnz += (uint64_t)value_nonzero(&t, i);
    }
    c->t[c->n++] = t;
    return RF_OK;
}

rf_status rf_ckpt_add(rf_ctx *ctx, rf_ckpt *c, const char *name, rf_dtype dtype, int ndim,
                      const int64_t *shape, rf_storage storage, const void *data,
                      const uint8_t *mask, const float *scales) {
    if (!name || !name_ok(name)) return rf_error(ctx, RF_ERR_INVALID, "tensor name must be 1-%d printable bytes", NAME_CAP - 1);
    if ((unsigned)storage >= RF_STORE_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': bad storage %d", name, (int)storage);
    if (storage > RF_STORE_SPARSE_INT8)
        return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %s storage is added with its own rf_ckpt_add_* function", name,
                        rf_storage_name(storage));
    if (ndim < 0 || ndim > RF_MAX_DIMS) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %d dims (max %d)", name, ndim, RF_MAX_DIMS);
    rf_ckpt_tensor in;
    memset(&in, 0, sizeof in);
    snprintf(in.name, sizeof in.name, "%s", name);
    in.dtype = dtype; in.ndim = ndim; in.storage = storage;
    for (int d = 0; d < ndim; d++) in.shape[d] = shape[d];
    in.data = (void *)(uintptr_t)data; in.mask = (uint8_t *)(uintptr_t)mask; in.scales = (float *)(uintptr_t)scales;
    return tensor_add(ctx, c, &in);
}

/* The borrowed description of a new tensor of the newer kinds. */
static rf_status describe(rf_ctx *ctx, rf_ckpt_tensor *in, const char *name, rf_dtype dtype, int ndim, const int64_t *shape,
                          rf_storage storage, const void *data, const uint8_t *mask) {
    memset(in, 0, sizeof *in);
    if (!name || !name_ok(name)) return rf_error(ctx, RF_ERR_INVALID, "tensor name must be 1-%d printable bytes", NAME_CAP - 1);
    if (ndim < 0 || ndim > RF_MAX_DIMS) return rf_error(ctx, RF_ERR_INVALID, "tensor '%s': %d dims (max %d)", name, ndim, RF_MAX_DIMS);
    snprintf(in->name, sizeof in->name, "%s", name);
    in->dtype = dtype; in->ndim = ndim; in->storage = storage;
    for (int d = 0; d < ndim; d++) in->shape[d] = shape[d];
    in->data = (void *)(uintptr_t)data;
    in->mask = (uint8_t *)(uintptr_t)mask;
    return RF_OK;
}

rf_status rf_ckpt_add_codebook(rf_ctx *ctx, rf_ckpt *c, const char *name, int ndim, const int64_t *shape,
                               const uint8_t *idx, const uint8_t *mask, int bits, const float *codebook) {
    rf_ckpt_tensor in;
    RF_TRY(describe(ctx, &in, name, RF_U8, ndim, shape, mask ? RF_STORE_SPARSE_CODEBOOK : RF_STORE_CODEBOOK, idx, mask));
    in.bits = bits;
    in.codebook = (float *)(uintptr_t)codebook;
    return tensor_add(ctx, c, &in);
}

rf_status rf_ckpt_add_int4(rf_ctx *ctx, rf_ckpt *c, const char *name, int ndim, const int64_t *shape,
                           const int8_t *q, int group_size, const float *scales, const int32_t *zero_points) {
    rf_ckpt_tensor in;
    RF_TRY(describe(ctx, &in, name, RF_I8, ndim, shape, RF_STORE_INT4, q, NULL));
    in.group_size = group_size;
    in.scales = (float *)(uintptr_t)scales;
    in.zero_points = (int32_t *)(uintptr_t)zero_points;
    return tensor_add(ctx, c, &in);
}

rf_status rf_ckpt_add_nm(rf_ctx *ctx, rf_ckpt *c, const char *name, int ndim, const int64_t *shape,
                         const float *data, const uint8_t *mask, int n, int m) {
    rf_ckpt_tensor in;
    RF_TRY(describe(ctx, &in, name, RF_F32, ndim, shape, RF_STORE_NM, data, mask));
    in.nm_n = n; in.nm_m = m;
    return tensor_add(ctx, c, &in);
}

rf_status rf_ckpt_add_copy(rf_ctx *ctx, rf_ckpt *c, const rf_ckpt_tensor *t) {
    if (!name_ok(t->name)) return rf_error(ctx, RF_ERR_INVALID, "tensor name must be 1-%d printable bytes", NAME_CAP - 1);
    return tensor_add(ctx, c, t);
}

/* ---- encoding ------------------------------------------------------------- */
/* Appends one section: header then either the coded bytes or their zstd
 * frame, whichever is smaller. */
static rf_status put_section(rf_ctx *ctx, bbuf *out, int kind, int codec, int param,
                             const unsigned char *coded, size_t coded_len) {
    unsigned char *z = NULL;
    size_t zlen = 0;
    if (coded_len > 0) {
        size_t bound = ZSTD_compressBound(coded_len);
        z = rf_malloc(bound);
        if (!z) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
        zlen = ZSTD_compress(z, bound, coded, coded_len, CKPT_ZSTD_LEVEL);
        if (ZSTD_isError(zlen)) {
            rf_free(z);
            return rf_error(ctx, RF_ERR_COMPRESS, "zstd: %s", ZSTD_getErrorName(zlen));
        }
    }
    int use_z = z && zlen < coded_len;
    bb_u8(out, (unsigned)kind); bb_u8(out, (unsigned)codec); bb_u8(out, (unsigned)param); bb_u8(out, (unsigned)use_z);
    bb_u64(out, use_z ? zlen : coded_len);
    bb_u64(out, coded_len);
    bb_put(out, use_z ? z : coded, use_z ? zlen : coded_len);
    rf_free(z);
    return out->oom ? rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory") : RF_OK;
}

/* Keeps the smaller of two candidate encodings of the same section. */
static void keep_smaller(bbuf *best, bbuf *cand, int *best_codec, int cand_codec, int *best_param, int cand_param) {
    if (!cand->oom && (best->p == NULL || cand->len < best->len)) {
        rf_free(best->p);
        *best = *cand;
        *best_codec = cand_codec; *best_param = cand_param;
    } else {
        rf_free(cand->p);
    }
    memset(cand, 0, sizeof *cand);
}

/* Byte planes (CODEC_PLANES): byte k of every little-endian element, for k
 * = 0 .. esize-1, plane after plane. Floats of similar magnitude share their
 * sign/exponent byte, which then forms one long, very compressible run for
 * zstd (1.18x instead of 1.08x on Gaussian f32 weights; the Blosc "shuffle"
 * filter). */
static void to_planes(unsigned char *dst, const unsigned char *le, size_t count, size_t esz) {
    for (size_t i = 0; i < count; i++)
        for (size_t k = 0; k < esz; k++) dst[k * count + i] = le[i * esz + k];
}
static void from_planes(unsigned char *le, const unsigned char *src, size_t count, size_t esz) {
    for (size_t i = 0; i < count; i++)
        for (size_t k = 0; k < esz; k++) le[i * esz + k] = src[k * count + i];
}

/* Appends the smaller of the raw and byte-plane codings of `count` fixed-width
 * little-endian elements (le). Returns the codec chosen in *codec, and
 * whether zstd was kept in *z. */
static rf_status put_fixed_section(rf_ctx *ctx, bbuf *out, int kind, const unsigned char *le, size_t count, size_t esz,
                                   int *codec, int *z) {
    bbuf best = {0}, cand = {0};
    int bcodec = CODEC_RAW, bparam = 0;
    rf_status s = put_section(ctx, &cand, kind, CODEC_RAW, 0, le, count * esz);
    if (s) { rf_free(cand.p); return s; }
    keep_smaller(&best, &cand, &bcodec, CODEC_RAW, &bparam, 0);
    if (esz > 1 && count > 1) {
        unsigned char *pl = rf_malloc(count * esz);
        if (!pl) { rf_free(best.p); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
        to_planes(pl, le, count, esz);
        s = put_section(ctx, &cand, kind, CODEC_PLANES, 0, pl, count * esz);
        rf_free(pl);
        if (s) { rf_free(cand.p); rf_free(best.p); return s; }
        keep_smaller(&best, &cand, &bcodec, CODEC_PLANES, &bparam, 0);
    }
    *z = best.p[3];
    *codec = bcodec;
    bb_put(out, best.p, best.len);
    rf_free(best.p);
    return out->oom ? rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory") : RF_OK;
}

/* ---- b-bit fields (CODEC_PACKED, CODEC_NM) ---------------------------------
 * Symbol i occupies bits [i*b, (i+1)*b) of the stream, least significant
 * bit first (bit j of the stream is bit j % 8 of byte j / 8); the unused high
 * bits of the last byte are 0. */
static size_t packed_len(size_t count, int b) { return (count * (size_t)b + 7) / 8; }

static void pack_bits(unsigned char *out, const uint16_t *sym, size_t count, int b) {
    uint64_t acc = 0;
    int nb = 0;
    size_t o = 0;
    for (size_t i = 0; i < count; i++) {
        acc |= (uint64_t)sym[i] << nb;
        for (nb += b; nb >= 8; nb -= 8) { out[o++] = (unsigned char)acc; acc >>= 8; }
    }
    if (nb) out[o++] = (unsigned char)acc;
}

/* Reads count b-bit symbols; returns 0 if padding bits are set. */
static int unpack_bits(const unsigned char *in, size_t count, int b, uint16_t *sym) {
    uint64_t acc = 0;
    int nb = 0;
    size_t o = 0;
    const uint64_t lo = (1u << b) - 1;
    for (size_t i = 0; i < count; i++) {
        while (nb < b) { acc |= (uint64_t)in[o++] << nb; nb += 8; }
        sym[i] = (uint16_t)(acc & lo);
        acc >>= b; nb -= b;
    }
    return acc == 0;
}

/* Value symbols of the 1-byte kinds that the order-0 and packed codecs
 * code: int4 values as their nibble (two's complement for symmetric int4),
 * codebook indices as they are, int8 values as their byte. */
static int sym_codable(const rf_ckpt_tensor *t) { return t->dtype == RF_I8 || is_codebook(t->storage); }
static unsigned sym_alphabet(const rf_ckpt_tensor *t) {
    return is_int4(t->storage) ? 16u : is_codebook(t->storage) ? 1u << t->bits : 256u;
}
static uint16_t to_sym(const rf_ckpt_tensor *t, unsigned char v) { return (uint16_t)(is_int4(t->storage) ? v & 15u : v); }
static unsigned char from_sym(const rf_ckpt_tensor *t, uint16_t s) {
    return (unsigned char)(is_int4(t->storage) && !t->zero_points ? (int)(s ^ 8u) - 8 : (int)s);
}

/* The N:M mask (CODEC_NM): u8 N, u8 M, then for every group of M along
 * every row, the N kept positions within the group in increasing order,
 * ceil(log2 M) bits each, packed as above. */
static int nm_pos_bits(int m) { int b = 0; while ((1 << b) < m) b++; return b; }

static rf_status encode_nm_mask(rf_ctx *ctx, const rf_ckpt_tensor *t, size_t n, bbuf *out, char *desc, size_t dlen) {
    const int N = t->nm_n, M = t->nm_m, b = nm_pos_bits(M);
    size_t groups = n / (size_t)M, cnt = groups * (size_t)N;
    uint16_t *pos = rf_malloc(cnt * sizeof *pos + 2);
    unsigned char *coded = rf_malloc(2 + packed_len(cnt, b));
    if (!pos || !coded) { rf_free(pos); rf_free(coded); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
    size_t k = 0;
    for (size_t g = 0; g < groups; g++)
        for (int j = 0; j < M; j++)
            if (t->mask[g * (size_t)M + (size_t)j]) pos[k++] = (uint16_t)j;
    RF_ASSERT(k == cnt);
    coded[0] = (unsigned char)N; coded[1] = (unsigned char)M;
    pack_bits(coded + 2, pos, cnt, b);
    size_t at = out->len;
    rf_status s = put_section(ctx, out, SEC_MASK, CODEC_NM, 0, coded, 2 + packed_len(cnt, b));
    rf_free(pos); rf_free(coded);
    if (s) return s;
    snprintf(desc, dlen, "mask=nm%d:%d%s", N, M, out->p[at + 3] ? "+zstd" : "");
    return RF_OK;
}

static rf_status encode_mask(rf_ctx *ctx, const rf_ckpt_tensor *t, size_t n, bbuf *out, char *desc, size_t dlen) {
    if (t->storage == RF_STORE_NM) return encode_nm_mask(ctx, t, n, out, desc, dlen);
    bbuf best = {0}, cand = {0};
    int bcodec = 0, bparam = 0;
    rf_status s = RF_OK;
    /* bitmap, LSB first */
    size_t nb = (n + 7) / 8;
    unsigned char *bm = rf_calloc(nb ? nb : 1, 1);
    if (!bm) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
    for (size_t i = 0; i < n; i++) if (t->mask[i]) bm[i >> 3] |= (unsigned char)(1u << (i & 7));
    s = put_section(ctx, &cand, SEC_MASK, CODEC_RAW, 0, bm, nb);
    rf_free(bm);
    if (s) { rf_free(cand.p); return s; }
    keep_smaller(&best, &cand, &bcodec, CODEC_RAW, &bparam, 0);
    /* gaps between kept positions, LEB128 */
    unsigned char *g = rf_malloc(t->nnz * 10 + 1);
    if (!g) { rf_free(best.p); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
    size_t gl = 0;
    uint64_t prev = 0;
    int first = 1;
    for (size_t i = 0; i < n; i++) if (t->mask[i]) {
        gl += rf_varint_put(g + gl, first ? i : i - prev - 1);
        prev = i; first = 0;
    }
    s = put_section(ctx, &cand, SEC_MASK, CODEC_GAPS, 0, g, gl);
    rf_free(g);
    if (s) { rf_free(cand.p); rf_free(best.p); return s; }
    keep_smaller(&best, &cand, &bcodec, CODEC_GAPS, &bparam, 0);
    /* adaptive arithmetic coding; order 0 is optimal for i.i.d. masks,
     * longer contexts win on structured (row/channel) patterns */
    static const int orders[] = {0, 3, 8};
    for (size_t k = 0; k < sizeof orders / sizeof orders[0]; k++) {
        unsigned char *a = NULL;
        size_t al = 0;
        s = rf_mask_arith_encode(ctx, t->mask, n, orders[k], &a, &al);
        if (s) { rf_free(best.p); return s; }
        s = put_section(ctx, &cand, SEC_MASK, CODEC_BITS, orders[k], a, al);
        rf_free(a);
        if (s) { rf_free(cand.p); rf_free(best.p); return s; }
        keep_smaller(&best, &cand, &bcodec, CODEC_BITS, &bparam, orders[k]);
    }
    int z = best.p[3];
    bb_put(out, best.p, best.len);
    rf_free(best.p);
    if (bcodec == CODEC_BITS) snprintf(desc, dlen, "mask=arith%d%s", bparam, z ? "+zstd" : "");
    else snprintf(desc, dlen, "mask=%s%s", codec_names[bcodec], z ? "+zstd" : "");
    return out->oom ? rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory") : RF_OK;
}

/* Per-row magnitude coding of int8 values (CODEC_ROWSYMS). Magnitude
 * pruning keeps |w| >= t and symmetric quantization maps each row's largest
 * |w| to 127, so a row's kept |q| start at round(127 t / max_row |w|), an
 * offset that differs from row to row. Coding |q| minus the row's smallest
 * kept |q| (plus a sign bit) removes that spread from the order-0 statistics:
 * on LeNet-300-100-sized Gaussian layers it saves about 0.35 bit per value.
 * Stream: varint length of the offsets' code, the offsets (symbols 0..128),
 * then the symbols 2 (|q| - offset) + (q < 0), alphabet 258. */
#define ROW_OFF_K 129u
#define ROW_SYM_K (2u * ROW_OFF_K)

/* Row of the element at flat index i (stored values are the mask's kept
 * entries for sparse kinds, all entries otherwise, in row-major order). */
static uint64_t value_row(size_t i, size_t per_row) {
    return per_row ? i / per_row : 0;
}

static rf_status rowsyms_encode(rf_ctx *ctx, const rf_ckpt_tensor *t, size_t n, const int8_t *vals, size_t count,
                                unsigned char **out, size_t *out_len) {
    *out = NULL; *out_len = 0;
    uint64_t rows = tensor_rows(t);
    size_t per_row = rows ? n / rows : 0;
    uint16_t *off = rf_malloc(rows * sizeof *off + 2), *sym = rf_malloc(count * sizeof *sym + 2);
    unsigned char *oc = NULL, *sc = NULL;
    size_t ol = 0, sl = 0;
    rf_status s = (!off || !sym) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory") : RF_OK;
    if (!s) {
        for (uint64_t r = 0; r < rows; r++) off[r] = ROW_OFF_K - 1;
        size_t k = 0;
        for (size_t i = 0; i < n && k < count; i++) {
            if (t->mask && !t->mask[i]) continue;
            int a = abs((int)vals[k++]);
            uint64_t r = value_row(i, per_row);
            if (a < off[r]) off[r] = (uint16_t)a;
        }
        for (uint64_t r = 0; r < rows; r++) if (off[r] == ROW_OFF_K - 1) off[r] = 0;   /* rows with nothing kept */
        k = 0;
        for (size_t i = 0; i < n && k < count; i++) {
            if (t->mask && !t->mask[i]) continue;
            int v = vals[k];
            sym[k++] = (uint16_t)(2 * (abs(v) - off[value_row(i, per_row)]) + (v < 0));
        }
        s = rf_sym_encode(ctx, off, rows, ROW_OFF_K, &oc, &ol);
    }
    if (!s) s = rf_sym_encode(ctx, sym, count, ROW_SYM_K, &sc, &sl);
    if (!s) {
        unsigned char *b = rf_malloc(10 + ol + sl);
        if (!b) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        else {
            size_t h = rf_varint_put(b, ol);
            memcpy(b + h, oc, ol);
            memcpy(b + h + ol, sc, sl);
            *out = b; *out_len = h + ol + sl;
        }
    }
    rf_free(off); rf_free(sym); rf_free(oc); rf_free(sc);
    return s;
}

static rf_status rowsyms_decode(rf_ctx *ctx, const rf_ckpt_tensor *t, size_t n, const unsigned char *b, uint64_t len,
                                size_t count, int8_t *vals) {
    uint64_t rows = tensor_rows(t), ol;
    size_t per_row = rows ? n / rows : 0;
    size_t h = rf_varint_get(b, (size_t)len, &ol);
    if (!h || ol > len - h) return rf_error(ctx, RF_ERR_FORMAT, "values: row offsets code runs past the section");
    uint16_t *off = rf_malloc(rows * sizeof *off + 2), *sym = rf_malloc(count * sizeof *sym + 2);
    rf_status s = (!off || !sym) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory") : RF_OK;
    if (!s) s = rf_sym_decode(ctx, b + h, (size_t)ol, rows, ROW_OFF_K, off);
    if (!s) s = rf_sym_decode(ctx, b + h + ol, (size_t)(len - h - ol), count, ROW_SYM_K, sym);
    size_t k = 0;
    for (size_t i = 0; !s && i < n && k < count; i++) {
        if (t->mask && !t->mask[i]) continue;
        int neg = sym[k] & 1, mag = sym[k] / 2 + off[value_row(i, per_row)];
        if ((neg && (mag == 0 || mag > 128)) || (!neg && mag > 127)) { s = rf_error(ctx, RF_ERR_FORMAT, "values: int8 out of range"); break; }
        vals[k++] = (int8_t)(neg ? -mag : mag);
    }
    rf_free(off); rf_free(sym);
    return s;
}

static rf_status encode_values(rf_ctx *ctx, const rf_ckpt_tensor *t, size_t n, bbuf *out, char *desc, size_t dlen) {
    size_t esz = rf_dtype_size(t->dtype);
    size_t count = is_sparse(t->storage) ? (size_t)t->nnz : n;
    unsigned char *raw = rf_malloc(count * esz + 1);
    if (!raw) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
    if (is_sparse(t->storage)) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) if (t->mask[i]) {
            copy_le(raw + k * esz, (const unsigned char *)t->data + i * esz, 1, esz);
            k++;
        }
    } else {
        copy_le(raw, t->data, n, esz);
    }
    bbuf best = {0}, cand = {0};
    int bcodec = 0, bparam = 0, fcodec = 0, fz = 0;
    rf_status s = put_fixed_section(ctx, &cand, SEC_VALUES, raw, count, esz, &fcodec, &fz);
    if (s) { rf_free(raw); rf_free(cand.p); return s; }
    keep_smaller(&best, &cand, &bcodec, fcodec, &bparam, 0);
    if (sym_codable(t) && count > 0) {
        /* order-0 range code; for int4 and codebook kinds also the plain
         * b-bit packing (4 bits per int4 value, b bits per index) */
        unsigned char *a = NULL;
        size_t al = 0;
        uint16_t *u = rf_malloc(count * sizeof *u);
        s = u ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
        for (size_t k = 0; !s && k < count; k++) u[k] = to_sym(t, raw[k]);
        if (!s) s = rf_sym_encode(ctx, u, count, sym_alphabet(t), &a, &al);
        if (!s) s = put_section(ctx, &cand, SEC_VALUES, CODEC_SYMS, 0, a, al);
        rf_free(a);
        if (!s) keep_smaller(&best, &cand, &bcodec, CODEC_SYMS, &bparam, 0);
        if (!s && (is_int4(t->storage) || is_codebook(t->storage))) {
            al = packed_len(count, t->bits);
            a = rf_malloc(al);
            s = a ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
            if (!s) pack_bits(a, u, count, t->bits);
            if (!s) s = put_section(ctx, &cand, SEC_VALUES, CODEC_PACKED, t->bits, a, al);
            rf_free(a);
            if (!s) keep_smaller(&best, &cand, &bcodec, CODEC_PACKED, &bparam, t->bits);
        }
        rf_free(u);
        if (s) { rf_free(raw); rf_free(cand.p); rf_free(best.p); return s; }
    }
    if (is_int8(t->storage) && count > 0) {
        unsigned char *a = NULL;
        size_t al = 0;
        s = rowsyms_encode(ctx, t, n, (const int8_t *)raw, count, &a, &al);
        if (!s) s = put_section(ctx, &cand, SEC_VALUES, CODEC_ROWSYMS, 0, a, al);
        rf_free(a);
        if (s) { rf_free(raw); rf_free(cand.p); rf_free(best.p); return s; }
        keep_smaller(&best, &cand, &bcodec, CODEC_ROWSYMS, &bparam, 0);
    }
    rf_free(raw);
    int z = best.p[3];
    bb_put(out, best.p, best.len);
    rf_free(best.p);
    if (bcodec == CODEC_PACKED) snprintf(desc, dlen, "values=packed%d%s", bparam, z ? "+zstd" : "");
    else snprintf(desc, dlen, "values=%s%s", codec_names[bcodec], z ? "+zstd" : "");
    return out->oom ? rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory") : RF_OK;
}

/* Builds one tensor's payload into out (appending). */
static rf_status encode_payload(rf_ctx *ctx, rf_ckpt_tensor *t, bbuf *out) {
    size_t n = (size_t)rf_ckpt_tensor_numel(t);
    int zp = may_have_zp(t->storage) && t->zero_points;
    int nsec = 1 + is_sparse(t->storage) + has_scales(t->storage) + zp;
    bb_u8(out, (unsigned)nsec);
    char dm[24] = "", dv[24] = "";
    if (is_sparse(t->storage)) RF_TRY(encode_mask(ctx, t, n, out, dm, sizeof dm));
    if (has_scales(t->storage)) {
        uint64_t ns = rf_ckpt_tensor_n_scales(t);
        unsigned char *sc = rf_malloc(ns * 4 + 1);
        if (!sc) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
        copy_le(sc, *side_floats(t), ns, 4);
        int codec, z;
        rf_status s = put_fixed_section(ctx, out, SEC_SCALES, sc, ns, 4, &codec, &z);
        if (!s && zp) {
            copy_le(sc, t->zero_points, ns, 4);
            s = put_fixed_section(ctx, out, SEC_ZP, sc, ns, 4, &codec, &z);
        }
        rf_free(sc);
        RF_TRY(s);
    }
    RF_TRY(encode_values(ctx, t, n, out, dv, sizeof dv));
    snprintf(t->coding, sizeof t->coding, "%s%s%s", dm, dm[0] ? " " : "", dv);
    return RF_OK;
}

rf_status rf_ckpt_encode(rf_ctx *ctx, rf_ckpt *c, unsigned char **buf, size_t *n) {
    *buf = NULL; *n = 0;
    const char *meta = c->meta_json ? c->meta_json : "{}";
    size_t meta_len = strlen(meta);
    if (meta_len > UINT32_MAX || c->n < 0) return rf_error(ctx, RF_ERR_LIMIT, "checkpoint metadata too large");
    bbuf pay = {0};
    size_t *poff = rf_calloc((size_t)c->n + 1, sizeof *poff);
    if (!poff) return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory");
    for (int i = 0; i < c->n; i++) {
        poff[i] = pay.len;
        rf_status s = encode_payload(ctx, &c->t[i], &pay);
        if (s) { rf_free(pay.p); rf_free(poff); rf_error_prefix(ctx, "tensor '%s'", c->t[i].name); return s; }
        if (pay.oom) { rf_free(poff); rf_free(pay.p); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
    }
    poff[c->n] = pay.len;
    /* directory size is known before offsets are: compute it first */
    size_t dir_len = 0;
    for (int i = 0; i < c->n; i++) dir_len += 2 + strlen(c->t[i].name) + 4 + 8 * (size_t)c->t[i].ndim + 32 + 4;
    if (dir_len > UINT32_MAX) { rf_free(pay.p); rf_free(poff); return rf_error(ctx, RF_ERR_LIMIT, "checkpoint directory too large"); }
    uint64_t data_start = HDR_LEN + meta_len + dir_len;
    uint64_t total = data_start + pay.len + TRAILER;
    bbuf f = {0};
    bb_reserve(&f, total);
    bb_put(&f, ckpt_magic, 8);
    bb_u32(&f, RF_CKPT_VERSION);
    bb_u32(&f, 0);
    bb_u64(&f, total);
    bb_u32(&f, (uint32_t)meta_len);
    bb_u32(&f, (uint32_t)c->n);
    bb_u32(&f, (uint32_t)dir_len);
    bb_put(&f, meta, meta_len);
    for (int i = 0; i < c->n; i++) {
        rf_ckpt_tensor *t = &c->t[i];
        size_t nl = strlen(t->name);
        bb_u16(&f, (unsigned)nl);
        bb_put(&f, t->name, nl);
        bb_u8(&f, (unsigned)t->dtype); bb_u8(&f, (unsigned)t->storage); bb_u8(&f, (unsigned)t->ndim); bb_u8(&f, 0);
        for (int d = 0; d < t->ndim; d++) bb_u64(&f, (uint64_t)t->shape[d]);
        size_t psize = poff[i + 1] - poff[i];
        bb_u64(&f, data_start + poff[i]);
        bb_u64(&f, psize);
        bb_u64(&f, (uint64_t)rf_ckpt_tensor_numel(t) * rf_dtype_size(t->dtype));
        bb_u64(&f, t->nnz);
        bb_u32(&f, rf_crc32c(0, pay.p + poff[i], psize));
        t->disk_bytes = psize;
    }
    bb_put(&f, pay.p, pay.len);
    rf_free(pay.p);
    rf_free(poff);
    if (f.oom) { rf_free(f.p); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
    RF_ASSERT(f.len + TRAILER == total);
    bb_u32(&f, rf_crc32c(0, f.p, f.len));
    if (f.oom) { rf_free(f.p); return rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); }
    c->file_bytes = f.len;
    *buf = f.p; *n = f.len;
    return RF_OK;
}

rf_status rf_ckpt_write(rf_ctx *ctx, rf_ckpt *c, const char *path) {
    unsigned char *buf;
    size_t n;
    RF_TRY(rf_ckpt_encode(ctx, c, &buf, &n));
    rf_status s = rf_write_file_atomic(ctx, path, buf, n);
    rf_free(buf);
    return s;
}

/* ---- decoding ------------------------------------------------------------- */
typedef struct rd { const unsigned char *p; size_t n, pos; } rd;
static int rd_need(rd *r, size_t k) { return r->n - r->pos >= k; }
static unsigned rd_u8(rd *r) { return r->p[r->pos++]; }
static unsigned rd_u16(rd *r) { unsigned v = (unsigned)r->p[r->pos] | ((unsigned)r->p[r->pos + 1] << 8); r->pos += 2; return v; }
static uint32_t rd_u32(rd *r) { uint32_t v = rf_get_u32(r->p + r->pos); r->pos += 4; return v; }
static uint64_t rd_u64(rd *r) { uint64_t v = rf_get_u64(r->p + r->pos); r->pos += 8; return v; }

/* Directory entry fields that live only on disk. */
typedef struct dirent_ { uint64_t offset, size, raw_size; uint32_t crc; } dirent_;

/* Returns the coded bytes of a section: a view into the file, or a new
 * buffer (*owned) holding the zstd-decompressed bytes. */
static rf_status section_bytes(rf_ctx *ctx, const char *what, int zflag, const unsigned char *stored,
                               uint64_t stored_len, uint64_t coded_len,
                               const unsigned char **coded, unsigned char **owned) {
    *owned = NULL;
    if (!zflag) {
        if (stored_len != coded_len) return rf_error(ctx, RF_ERR_SIZE, "%s: stored %llu bytes but coded size says %llu", what, (unsigned long long)stored_len, (unsigned long long)coded_len);
        *coded = stored;
        return RF_OK;
    }
    unsigned long long fcs = ZSTD_getFrameContentSize(stored, stored_len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return rf_error(ctx, RF_ERR_FORMAT, "%s: not a zstd frame with a known size", what);
    if (fcs != coded_len) return rf_error(ctx, RF_ERR_SIZE, "%s: zstd frame holds %llu bytes, section says %llu", what, fcs, (unsigned long long)coded_len);
    RF_TRY(rf_check_cap(ctx, coded_len, what));
    unsigned char *b = rf_malloc(coded_len ? coded_len : 1);
    if (!b) return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", what);
    size_t got = ZSTD_decompress(b, coded_len, stored, stored_len);
    if (ZSTD_isError(got) || got != coded_len) {
        rf_free(b);
        return rf_error(ctx, RF_ERR_FORMAT, "%s: zstd: %s", what, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
    }
    *coded = b; *owned = b;
    return RF_OK;
}

static rf_status decode_mask(rf_ctx *ctx, rf_ckpt_tensor *t, size_t n, int codec, int param, int z,
                             const unsigned char *b, uint64_t len) {
    switch (codec) {
    case CODEC_RAW: {
        if (len != (n + 7) / 8) return rf_error(ctx, RF_ERR_SIZE, "mask bitmap has %llu bytes, %zu elements need %zu", (unsigned long long)len, n, (n + 7) / 8);
        for (size_t i = 0; i < n; i++) t->mask[i] = (b[i >> 3] >> (i & 7)) & 1;
        if ((n & 7) && (b[n >> 3] >> (n & 7)))
            return rf_error(ctx, RF_ERR_FORMAT, "mask bitmap has bits set past the end");
        snprintf(t->coding, sizeof t->coding, "mask=raw%s", z ? "+zstd" : "");
        return RF_OK;
    }
    case CODEC_GAPS: {
        memset(t->mask, 0, n);
        size_t pos = 0;
        uint64_t next = 0;
        for (uint64_t k = 0; k < t->nnz; k++) {
            uint64_t g;
            size_t used = rf_varint_get(b + pos, len - pos, &g);
            if (!used) return rf_error(ctx, RF_ERR_FORMAT, "mask gap code cut short");
            pos += used;
            if (g >= n - next) return rf_error(ctx, RF_ERR_FORMAT, "mask gap points past the end");
            next += g;
            t->mask[next] = 1;
            next++;
        }
        if (pos != len) return rf_error(ctx, RF_ERR_FORMAT, "mask gap code has %llu trailing bytes", (unsigned long long)(len - pos));
        snprintf(t->coding, sizeof t->coding, "mask=gaps%s", z ? "+zstd" : "");
        return RF_OK;
    }
    case CODEC_BITS:
        RF_TRY(rf_mask_arith_decode(ctx, b, len, n, param, t->mask));
        snprintf(t->coding, sizeof t->coding, "mask=arith%d%s", param, z ? "+zstd" : "");
        return RF_OK;
    default:
        return rf_error(ctx, RF_ERR_FORMAT, "unknown mask codec %d", codec);
    }
}

/* The N:M kind's mask (CODEC_NM), which sets nm_n and nm_m. */
static rf_status decode_nm_mask(rf_ctx *ctx, rf_ckpt_tensor *t, size_t n, int z, const unsigned char *b, uint64_t len) {
    if (len < 2) return rf_error(ctx, RF_ERR_FORMAT, "N:M mask: %llu bytes, the header alone is 2", (unsigned long long)len);
    const int N = b[0], M = b[1];
    const size_t cols = (size_t)tensor_cols(t);
    if (N < 1 || M < 2 || M > RF_NM_MAX_M || N > M || cols % (size_t)M)
        return rf_error(ctx, RF_ERR_FORMAT, "N:M mask: %d:%d is not a pattern for rows of %zu (1 <= N <= M, 2 <= M <= %d, M divides the row)",
                        N, M, cols, RF_NM_MAX_M);
    const int pb = nm_pos_bits(M);
    const size_t groups = n / (size_t)M, cnt = groups * (size_t)N;
    if (len - 2 != packed_len(cnt, pb))
        return rf_error(ctx, RF_ERR_SIZE, "N:M mask: %llu bytes of positions, %zu groups of %d need %zu",
                        (unsigned long long)(len - 2), groups, N, packed_len(cnt, pb));
    RF_TRY(rf_check_cap(ctx, (uint64_t)cnt * 2, t->name));
    uint16_t *pos = rf_malloc(cnt * sizeof *pos + 2);
    if (!pos) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_status s = unpack_bits(b + 2, cnt, pb, pos) ? RF_OK : rf_error(ctx, RF_ERR_FORMAT, "N:M mask has bits set past the end");
    memset(t->mask, 0, n);
    for (size_t g = 0; !s && g < groups; g++)
        for (int j = 0; j < N; j++) {
            uint16_t p = pos[g * (size_t)N + (size_t)j];
            if (p >= M || (j > 0 && p <= pos[g * (size_t)N + (size_t)j - 1])) {
                s = rf_error(ctx, RF_ERR_FORMAT, "N:M mask: row %zu, group %zu: positions not increasing below %d",
                             g * (size_t)M / cols, (g * (size_t)M % cols) / (size_t)M, M);
                break;
            }
            t->mask[g * (size_t)M + p] = 1;
        }
    rf_free(pos);
    if (s) return s;
    t->nm_n = N; t->nm_m = M;
    snprintf(t->coding, sizeof t->coding, "mask=nm%d:%d%s", N, M, z ? "+zstd" : "");
    return RF_OK;
}

/* Range of the decoded values of int4 and codebook kinds (kept entries). */
static rf_status check_values(rf_ctx *ctx, const rf_ckpt_tensor *t, size_t n) {
    if (!is_int4(t->storage) && !is_codebook(t->storage)) return RF_OK;
    int lo = is_int4(t->storage) && !t->zero_points ? -8 : 0;
    int hi = is_int4(t->storage) ? (t->zero_points ? 15 : 7) : (1 << t->bits) - 1;
    for (size_t i = 0; i < n; i++) {
        if (t->mask && !t->mask[i]) continue;
        int v = is_int4(t->storage) ? ((const int8_t *)t->data)[i] : ((const uint8_t *)t->data)[i];
        if (v < lo || v > hi)
            return is_codebook(t->storage)
                       ? rf_error(ctx, RF_ERR_FORMAT, "codebook: index %d at %zu outside the %d-entry codebook", v, i, 1 << t->bits)
                       : rf_error(ctx, RF_ERR_FORMAT, "values: int4 value %d at %zu outside [%d, %d]", v, i, lo, hi);
    }
    return RF_OK;
}

static rf_status decode_values(rf_ctx *ctx, rf_ckpt_tensor *t, size_t n, int codec, int param, int z,
                               const unsigned char *b, uint64_t len) {
    size_t esz = rf_dtype_size(t->dtype);
    size_t count = is_sparse(t->storage) ? (size_t)t->nnz : n;
    const unsigned char *src = b;
    unsigned char *tmp = NULL;
    if (codec == CODEC_RAW || codec == CODEC_PLANES) {
        if (len != (uint64_t)count * esz) return rf_error(ctx, RF_ERR_SIZE, "values: %llu bytes for %zu elements of %zu bytes", (unsigned long long)len, count, esz);
        if (codec == CODEC_PLANES) {
            tmp = rf_malloc(count * esz + 1);
            if (!tmp) return rf_error(ctx, RF_ERR_NOMEM, "values: out of memory");
            from_planes(tmp, b, count, esz);
            src = tmp;
        }
    } else if (codec == CODEC_SYMS || codec == CODEC_PACKED) {
        if (!sym_codable(t)) return rf_error(ctx, RF_ERR_FORMAT, "values: %s code on a %s tensor", codec_names[codec], rf_dtype_name(t->dtype));
        if (codec == CODEC_PACKED && !is_int4(t->storage) && !is_codebook(t->storage))
            return rf_error(ctx, RF_ERR_FORMAT, "values: packed code on %s storage", rf_storage_name(t->storage));
        if (codec == CODEC_PACKED && param != t->bits)
            return rf_error(ctx, RF_ERR_FORMAT, "values: packed %d bits, %s storage has %d", param, rf_storage_name(t->storage), t->bits);
        if (codec == CODEC_PACKED && len != packed_len(count, t->bits))
            return rf_error(ctx, RF_ERR_SIZE, "values: %llu packed bytes, %zu values of %d bits need %zu", (unsigned long long)len, count,
                            t->bits, packed_len(count, t->bits));
        tmp = rf_malloc(count ? count : 1);
        uint16_t *u = rf_malloc(count * sizeof *u + 2);
        rf_status s = tmp && u ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "values: out of memory");
        if (!s && codec == CODEC_SYMS) s = rf_sym_decode(ctx, b, len, count, sym_alphabet(t), u);
        if (!s && codec == CODEC_PACKED && !unpack_bits(b, count, t->bits, u))
            s = rf_error(ctx, RF_ERR_FORMAT, "values: packed code has bits set past the end");
        for (size_t k = 0; !s && k < count; k++) tmp[k] = from_sym(t, u[k]);
        rf_free(u);
        if (s) { rf_free(tmp); return s; }
        src = tmp;
    } else if (codec == CODEC_ROWSYMS) {
        if (!is_int8(t->storage)) return rf_error(ctx, RF_ERR_FORMAT, "values: per-row code on %s storage", rf_storage_name(t->storage));
        tmp = rf_malloc(count ? count : 1);
        if (!tmp) return rf_error(ctx, RF_ERR_NOMEM, "values: out of memory");
        rf_status s = rowsyms_decode(ctx, t, n, b, len, count, (int8_t *)tmp);
        if (s) { rf_free(tmp); return s; }
        src = tmp;
    } else {
        return rf_error(ctx, RF_ERR_FORMAT, "unknown values codec %d", codec);
    }
    if (is_sparse(t->storage)) {
        memset(t->data, 0, n * esz);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) if (t->mask[i]) {
            copy_le((unsigned char *)t->data + i * esz, src + k * esz, 1, esz);
            k++;
        }
    } else {
        copy_le(t->data, src, n, esz);
    }
    rf_free(tmp);
    RF_TRY(check_values(ctx, t, n));
    size_t used = strlen(t->coding);
    if (codec == CODEC_PACKED)
        snprintf(t->coding + used, sizeof t->coding - used, "%svalues=packed%d%s", used ? " " : "", param, z ? "+zstd" : "");
    else
        snprintf(t->coding + used, sizeof t->coding - used, "%svalues=%s%s", used ? " " : "", codec_names[codec], z ? "+zstd" : "");
    return RF_OK;
}

/* The scales section (kind 2) of t: int8 row scales, int4 group scales
 * (their count fixes the group size), or the codebook (its count fixes the
 * index width). `le` holds count little-endian 4-byte elements. */
static rf_status decode_scales(rf_ctx *ctx, rf_ckpt_tensor *t, const unsigned char *le, uint64_t count) {
    uint64_t rows = tensor_rows(t), cols = tensor_cols(t);
    if (is_int8(t->storage) && count != rows)
        return rf_error(ctx, RF_ERR_SIZE, "scales: %llu for %llu rows", (unsigned long long)count, (unsigned long long)rows);
    if (is_int4(t->storage)) {
        uint64_t gpr = rows ? count / rows : 0;
        if (!gpr || count % rows || cols % gpr)
            return rf_error(ctx, RF_ERR_SIZE, "scales: %llu int4 scales do not split %llu rows of %llu into whole groups",
                            (unsigned long long)count, (unsigned long long)rows, (unsigned long long)cols);
        t->group_size = (int)(cols / gpr);
        t->bits = 4;
    }
    if (is_codebook(t->storage)) {
        int b = 0;
        while (b <= 8 && (1ull << b) != count) b++;
        if (b < 1 || b > 8)
            return rf_error(ctx, RF_ERR_FORMAT, "codebook: %llu entries, not 2^b for b in 1..8", (unsigned long long)count);
        t->bits = b;
    }
    float **dst = side_floats(t);
    *dst = rf_malloc(count * 4 + 1);
    if (!*dst) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    copy_le(*dst, le, count, 4);
    if (is_codebook(t->storage) || is_int4(t->storage))
        for (uint64_t j = 0; j < count; j++)
            if (!isfinite((*dst)[j]))
                return rf_error(ctx, RF_ERR_FORMAT, "%s: entry %llu is not finite", is_codebook(t->storage) ? "codebook" : "int4 scales",
                                (unsigned long long)j);
    return RF_OK;
}

static rf_status decode_zero_points(rf_ctx *ctx, rf_ckpt_tensor *t, const unsigned char *le, uint64_t count) {
    uint64_t want = rf_ckpt_tensor_n_scales(t);
    if (count != want)
        return rf_error(ctx, RF_ERR_SIZE, "zero_points: %llu, the scales need %llu", (unsigned long long)count, (unsigned long long)want);
    t->zero_points = rf_malloc(count * 4 + 1);
    if (!t->zero_points) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    copy_le(t->zero_points, le, count, 4);
    if (is_int4(t->storage))
        for (uint64_t j = 0; j < count; j++)
            if (t->zero_points[j] < 0 || t->zero_points[j] > 15)
                return rf_error(ctx, RF_ERR_FORMAT, "zero_points: int4 zero point %d outside [0, 15]", t->zero_points[j]);
    return RF_OK;
}

/* Decodes the payload of t (already validated against the directory). */
static rf_status decode_payload(rf_ctx *ctx, rf_ckpt_tensor *t, const unsigned char *p, uint64_t size) {
    size_t n = (size_t)rf_ckpt_tensor_numel(t);
    size_t esz = rf_dtype_size(t->dtype);
    rd r = {p, (size_t)size, 0};
    if (!rd_need(&r, 1)) return rf_error(ctx, RF_ERR_FORMAT, "empty payload");
    unsigned nsec = rd_u8(&r);
    unsigned need = (1u << SEC_VALUES) | (is_sparse(t->storage) ? 1u << SEC_MASK : 0) | (has_scales(t->storage) ? 1u << SEC_SCALES : 0);
    unsigned allowed = need | (may_have_zp(t->storage) ? 1u << SEC_ZP : 0);
    unsigned seen = 0;
    int last = 0;
    RF_TRY(rf_check_cap(ctx, (uint64_t)n * esz, t->name));
    t->data = rf_malloc(n * esz + 1);
    if (!t->data) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    if (is_sparse(t->storage)) {
        t->mask = rf_malloc(n + 1);
        if (!t->mask) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    }
    t->coding[0] = '\0';
    for (unsigned s = 0; s < nsec; s++) {
        if (!rd_need(&r, SEC_HDR)) return rf_error(ctx, RF_ERR_SIZE, "section %u header runs past the payload", s);
        int kind = (int)rd_u8(&r), codec = (int)rd_u8(&r), param = (int)rd_u8(&r), zflag = (int)rd_u8(&r);
        uint64_t stored = rd_u64(&r), coded = rd_u64(&r);
        if (kind <= last || kind > SEC_VALUES || !(allowed & (1u << kind)))
            return rf_error(ctx, RF_ERR_FORMAT, "unexpected section kind %d for %s storage", kind, rf_storage_name(t->storage));
        const char *what = sec_name(t->storage, kind);
        if (zflag > 1) return rf_error(ctx, RF_ERR_FORMAT, "section %s: bad zstd flag %d", what, zflag);
        last = kind;
        seen |= 1u << kind;
        if (stored > r.n - r.pos) return rf_error(ctx, RF_ERR_SIZE, "section %s: %llu bytes run past the payload", what, (unsigned long long)stored);
        const unsigned char *cb = NULL;
        unsigned char *owned;
        RF_TRY(section_bytes(ctx, what, zflag, r.p + r.pos, stored, coded, &cb, &owned));
        r.pos += (size_t)stored;
        rf_status st = RF_OK;
        switch (kind) {
        case SEC_MASK:
            if ((t->storage == RF_STORE_NM) != (codec == CODEC_NM))
                st = rf_error(ctx, RF_ERR_FORMAT, "mask codec %d on %s storage", codec, rf_storage_name(t->storage));
            else if (codec == CODEC_NM)
                st = decode_nm_mask(ctx, t, n, zflag, cb, coded);
            else
                st = decode_mask(ctx, t, n, codec, param, zflag, cb, coded);
            if (!st) {
                uint64_t pop = 0;
                for (size_t i = 0; i < n; i++) pop += t->mask[i];
                if (pop != t->nnz) st = rf_error(ctx, RF_ERR_SIZE, "mask keeps %llu entries, directory says nnz %llu", (unsigned long long)pop, (unsigned long long)t->nnz);
            }
            break;
        case SEC_SCALES: case SEC_ZP: {
            if (codec != CODEC_RAW && codec != CODEC_PLANES) { st = rf_error(ctx, RF_ERR_FORMAT, "%s: unknown codec %d", what, codec); break; }
            if (coded % 4) { st = rf_error(ctx, RF_ERR_SIZE, "%s: %llu bytes is not a whole number of 4-byte elements", what, (unsigned long long)coded); break; }
            uint64_t count = coded / 4;
            if ((st = rf_check_cap(ctx, coded, t->name))) break;
            unsigned char *le = rf_malloc(coded + 1);
            if (!le) { st = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); break; }
            if (codec == CODEC_PLANES) from_planes(le, cb, count, 4); else if (count) memcpy(le, cb, coded);
            st = kind == SEC_ZP ? decode_zero_points(ctx, t, le, count) : decode_scales(ctx, t, le, count);
            rf_free(le);
            break;
        }
        case SEC_VALUES:
            if (!(seen & (1u << SEC_MASK)) && is_sparse(t->storage)) { st = rf_error(ctx, RF_ERR_FORMAT, "values before mask"); break; }
            if (!(seen & (1u << SEC_SCALES)) && has_scales(t->storage)) { st = rf_error(ctx, RF_ERR_FORMAT, "values before %s", sec_name(t->storage, SEC_SCALES)); break; }
            st = decode_values(ctx, t, n, codec, param, zflag, cb, coded);
            break;
        default: break;
        }
        rf_free(owned);
        if (st) return st;
    }
    if ((seen & need) != need) return rf_error(ctx, RF_ERR_FORMAT, "%s storage is missing a section", rf_storage_name(t->storage));
    if (r.pos != r.n) return rf_error(ctx, RF_ERR_SIZE, "payload has %zu bytes after its last section", r.n - r.pos);
    if ((is_codebook(t->storage) || is_int4(t->storage) || t->storage == RF_STORE_NM) && n == 0)
        return rf_error(ctx, RF_ERR_FORMAT, "%s storage of an empty tensor", rf_storage_name(t->storage));
    if (!is_sparse(t->storage)) {
        uint64_t nz = 0;
        for (size_t i = 0; i < n; i++) nz += (uint64_t)value_nonzero(t, i);
        if (nz != t->nnz) return rf_error(ctx, RF_ERR_SIZE, "%llu non-zeros, directory says nnz %llu", (unsigned long long)nz, (unsigned long long)t->nnz);
    }
    return RF_OK;
}

static rf_status parse_dir_entry(rf_ctx *ctx, rd *r, int idx, rf_ckpt_tensor *t, dirent_ *de) {
    if (!rd_need(r, 2)) return rf_error(ctx, RF_ERR_FORMAT, "directory entry %d cut short", idx);
    unsigned nl = rd_u16(r);
    if (nl == 0 || nl >= (unsigned)NAME_CAP) return rf_error(ctx, RF_ERR_FORMAT, "directory entry %d: name length %u", idx, nl);
    if (!rd_need(r, nl + 4)) return rf_error(ctx, RF_ERR_FORMAT, "directory entry %d cut short", idx);
    memcpy(t->name, r->p + r->pos, nl);
    t->name[nl] = '\0';
    r->pos += nl;
    if (!name_ok(t->name)) return rf_error(ctx, RF_ERR_FORMAT, "directory entry %d: bad name", idx);
    unsigned dt = rd_u8(r), st = rd_u8(r), nd = rd_u8(r), zero = rd_u8(r);
    if (dt >= RF_DTYPE_COUNT_) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': unknown dtype %u", t->name, dt);
    if (st >= RF_STORE_COUNT_) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': unknown storage %u", t->name, st);
    if (nd > RF_MAX_DIMS) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': %u dims", t->name, nd);
    if (zero) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': reserved byte is %u", t->name, zero);
    t->dtype = (rf_dtype)dt; t->storage = (rf_storage)st; t->ndim = (int)nd;
    rf_dtype want = is_int8(t->storage) || is_int4(t->storage) ? RF_I8 : is_codebook(t->storage) ? RF_U8
                  : t->storage == RF_STORE_NM ? RF_F32 : t->dtype;
    if (t->dtype != want) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': %s storage with dtype %s", t->name, rf_storage_name(t->storage), rf_dtype_name(t->dtype));
    if (!rd_need(r, 8 * nd + 36)) return rf_error(ctx, RF_ERR_FORMAT, "directory entry '%s' cut short", t->name);
    for (unsigned d = 0; d < nd; d++) {
        uint64_t v = rd_u64(r);
        if (v > (uint64_t)INT64_MAX) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': negative dimension", t->name);
        t->shape[d] = (int64_t)v;
    }
    de->offset = rd_u64(r); de->size = rd_u64(r); de->raw_size = rd_u64(r);
    t->nnz = rd_u64(r);
    de->crc = rd_u32(r);
    return RF_OK;
}

rf_status rf_ckpt_decode(rf_ctx *ctx, const unsigned char *buf, size_t n, rf_ckpt **out) {
    *out = NULL;
    if (n == 0 || !buf) return rf_error(ctx, RF_ERR_TRUNCATED, "empty file");
    size_t mlen = n < 8 ? n : 8;
    if (memcmp(buf, ckpt_magic, mlen) != 0)
        return rf_error(ctx, RF_ERR_MAGIC, "not a raffle checkpoint (wrong magic number%s)",
                        memcmp(buf, "\x89RFK", mlen < 4 ? mlen : 4) == 0 ? "; was it copied in text mode?" : "");
    if (n < 12) return rf_error(ctx, RF_ERR_TRUNCATED, "truncated: %zu bytes, the header alone is %d", n, HDR_LEN);
    uint32_t version = rf_get_u32(buf + 8);
    if (version > RF_CKPT_VERSION)
        return rf_error(ctx, RF_ERR_VERSION, "written by a newer raffle (format v%u); this build reads format %d", version, RF_CKPT_VERSION);
    if (version == 0) return rf_error(ctx, RF_ERR_FORMAT, "format version 0 is not valid");
    if (n < HDR_LEN + TRAILER) return rf_error(ctx, RF_ERR_TRUNCATED, "truncated: %zu bytes, the header alone is %d", n, HDR_LEN);
    uint64_t file_size = rf_get_u64(buf + 16);
    if (file_size > n) return rf_error(ctx, RF_ERR_TRUNCATED, "truncated: %zu bytes, header says %llu", n, (unsigned long long)file_size);
    if (file_size < n) return rf_error(ctx, RF_ERR_SIZE, "%zu bytes, header says %llu", n, (unsigned long long)file_size);
    uint32_t want = rf_get_u32(buf + n - TRAILER), got = rf_crc32c(0, buf, n - TRAILER);
    if (want != got) return rf_error(ctx, RF_ERR_CHECKSUM, "checksum mismatch (stored %08x, computed %08x): the file is corrupt", want, got);
    uint32_t flags = rf_get_u32(buf + 12);
    if (flags != 0) return rf_error(ctx, RF_ERR_FORMAT, "unknown flags 0x%x", flags);
    uint64_t meta_len = rf_get_u32(buf + 24), n_t = rf_get_u32(buf + 28), dir_len = rf_get_u32(buf + 32);
    uint64_t data_start = HDR_LEN + meta_len + dir_len, data_end = n - TRAILER;
    if (data_start > data_end)
        return rf_error(ctx, RF_ERR_SIZE, "metadata (%llu) and directory (%llu) run past the end of the file",
                        (unsigned long long)meta_len, (unsigned long long)dir_len);
    if (n_t > dir_len / DIR_MIN) return rf_error(ctx, RF_ERR_FORMAT, "%llu tensors cannot fit a %llu-byte directory", (unsigned long long)n_t, (unsigned long long)dir_len);

    const char *mend = NULL;
    cJSON *mj = cJSON_ParseWithLengthOpts((const char *)buf + HDR_LEN, (size_t)meta_len, &mend, 0);
    int meta_ok = mj && cJSON_IsObject(mj) && mend;
    for (const char *q = mend, *qe = (const char *)buf + HDR_LEN + meta_len; meta_ok && q < qe; q++)
        meta_ok = *q == ' ' || *q == '\n' || *q == '\r' || *q == '\t';
    cJSON_Delete(mj);
    if (!meta_ok) return rf_error(ctx, RF_ERR_FORMAT, "metadata is not a JSON object");

    rf_ckpt *c;
    RF_TRY(rf_ckpt_new(ctx, &c));
    rf_status s = RF_OK;
    dirent_ *de = NULL;
    rf_free(c->meta_json);
    c->meta_json = rf_malloc((size_t)meta_len + 1);
    if (!c->meta_json) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
    memcpy(c->meta_json, buf + HDR_LEN, (size_t)meta_len);
    c->meta_json[meta_len] = '\0';
    if (strlen(c->meta_json) != meta_len) { s = rf_error(ctx, RF_ERR_FORMAT, "metadata contains a NUL byte"); goto fail; }
    c->version = version;
    c->file_bytes = n;
    if (n_t && (s = rf_check_cap(ctx, n_t * (sizeof *c->t + sizeof *de), "tensor directory"))) goto fail;
    if (n_t) {
        c->t = rf_calloc((size_t)n_t, sizeof *c->t);
        de = rf_calloc((size_t)n_t, sizeof *de);
        if (!c->t || !de) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto fail; }
        c->cap = (int)n_t;
    }
    rd r = {buf + HDR_LEN + meta_len, (size_t)dir_len, 0};
    for (uint64_t i = 0; i < n_t; i++) {
        rf_ckpt_tensor *t = &c->t[i];
        c->n = (int)i + 1;
        if ((s = parse_dir_entry(ctx, &r, (int)i, t, &de[i]))) goto fail;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(c->t[j].name, t->name) == 0) { s = rf_error(ctx, RF_ERR_FORMAT, "tensor '%s' appears twice", t->name); goto fail; }
        int64_t numel = rf_ckpt_tensor_numel(t);
        size_t esz = rf_dtype_size(t->dtype);
        if (numel < 0 || (uint64_t)numel > UINT64_MAX / esz) { s = rf_error(ctx, RF_ERR_SIZE, "tensor '%s': shape overflows", t->name); goto fail; }
        if (de[i].raw_size != (uint64_t)numel * esz) {
            s = rf_error(ctx, RF_ERR_SIZE, "tensor '%s': raw size %llu, shape and dtype give %llu", t->name,
                         (unsigned long long)de[i].raw_size, (unsigned long long)numel * esz);
            goto fail;
        }
        if (t->nnz > (uint64_t)numel) { s = rf_error(ctx, RF_ERR_SIZE, "tensor '%s': nnz %llu > %lld elements", t->name, (unsigned long long)t->nnz, (long long)numel); goto fail; }
        uint64_t expect = i ? de[i - 1].offset + de[i - 1].size : data_start;
        if (de[i].offset > data_end || de[i].size > data_end - de[i].offset) {
            s = rf_error(ctx, RF_ERR_SIZE, "tensor '%s': payload [%llu, +%llu) runs past the end of the data", t->name,
                         (unsigned long long)de[i].offset, (unsigned long long)de[i].size);
            goto fail;
        }
        if (de[i].offset != expect) {
            s = rf_error(ctx, RF_ERR_SIZE, "tensor '%s': payload at %llu %s the previous one (expected %llu)", t->name,
                         (unsigned long long)de[i].offset, de[i].offset < expect ? "overlaps" : "leaves a gap after",
                         (unsigned long long)expect);
            goto fail;
        }
    }
    if (r.pos != r.n) { s = rf_error(ctx, RF_ERR_FORMAT, "directory has %zu unexplained bytes", r.n - r.pos); goto fail; }
    uint64_t end = n_t ? de[n_t - 1].offset + de[n_t - 1].size : data_start;
    if (end != data_end) { s = rf_error(ctx, RF_ERR_SIZE, "payloads end at %llu, the data section at %llu", (unsigned long long)end, (unsigned long long)data_end); goto fail; }
    for (uint64_t i = 0; i < n_t; i++) {
        rf_ckpt_tensor *t = &c->t[i];
        const unsigned char *p = buf + de[i].offset;
        if (rf_crc32c(0, p, (size_t)de[i].size) != de[i].crc) { s = rf_error(ctx, RF_ERR_CHECKSUM, "tensor '%s': payload checksum mismatch", t->name); goto fail; }
        if ((s = decode_payload(ctx, t, p, de[i].size))) { rf_error_prefix(ctx, "tensor '%s'", t->name); goto fail; }
        t->disk_bytes = de[i].size;
    }
    rf_free(de);
    *out = c;
    return RF_OK;
fail:
    rf_free(de);
    rf_ckpt_free(c);
    return s;
}

rf_status rf_ckpt_read(rf_ctx *ctx, const char *path, rf_ckpt **out) {
    *out = NULL;
    unsigned char *buf;
    size_t n;
    RF_TRY(rf_read_file(ctx, path, &buf, &n));
    rf_status s = rf_ckpt_decode(ctx, buf, n, out);
    rf_free(buf);
    if (s) rf_error_prefix(ctx, "%s", path);
    return s;
}

/* ---- helpers -------------------------------------------------------------- */
double rf_ckpt_tensor_sparsity(const rf_ckpt_tensor *t) {
    int64_t n = rf_ckpt_tensor_numel(t);
    if (n <= 0) return 0.0;
    return 1.0 - (double)t->nnz / (double)n;
}

rf_status rf_ckpt_tensor_to_f32(rf_ctx *ctx, const rf_ckpt_tensor *t, float **out) {
    *out = NULL;
    int64_t numel = rf_ckpt_tensor_numel(t);
    if (numel < 0) return rf_error(ctx, RF_ERR_SHAPE, "tensor '%s': bad shape", t->name);
    size_t n = (size_t)numel;
    RF_TRY(rf_check_cap(ctx, (uint64_t)n * 4, t->name));
    float *f = rf_malloc(n * sizeof *f + 1);
    if (!f) return rf_error(ctx, RF_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    uint64_t rows = tensor_rows(t);
    size_t per_row = rows ? n / rows : 0;
    for (size_t i = 0; i < n; i++) {
        double v;
        switch (t->dtype) {
        case RF_F32: v = ((const float *)t->data)[i]; break;
        case RF_I8:  v = ((const int8_t *)t->data)[i]; break;
        case RF_U8:  v = ((const uint8_t *)t->data)[i]; break;
        case RF_I32: v = ((const int32_t *)t->data)[i]; break;
        case RF_I64: v = (double)((const int64_t *)t->data)[i]; break;
        default:     v = 0; break;
        }
        if (is_int8(t->storage) && per_row) {
            size_t row = i / per_row;
            double zp = t->zero_points ? t->zero_points[row] : 0;
            v = (v - zp) * t->scales[row];
        }
        if (is_int4(t->storage)) {
            size_t g = int4_group(t, i);
            v = (v - (t->zero_points ? t->zero_points[g] : 0)) * t->scales[g];
        }
        if (is_codebook(t->storage)) v = t->mask && !t->mask[i] ? 0.0 : t->codebook[((const uint8_t *)t->data)[i]];
        f[i] = (float)v;
    }
    *out = f;
    return RF_OK;
}

static double h2(double p) {
    if (p <= 0.0 || p >= 1.0) return 0.0;
    return -(p * log2(p) + (1.0 - p) * log2(1.0 - p));
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

double rf_ckpt_tensor_entropy_bound(const rf_ckpt_tensor *t) {
    int64_t numel = rf_ckpt_tensor_numel(t);
    if (numel <= 0) return 0.0;
    size_t n = (size_t)numel, esz = rf_dtype_size(t->dtype);
    double bits = 0.0;
    uint64_t count = n;
    if (t->storage == RF_STORE_NM && t->nm_m > 0) {
        /* each group of M holds one of C(M, N) equally possible patterns */
        double lc = lgamma(t->nm_m + 1.0) - lgamma(t->nm_n + 1.0) - lgamma(t->nm_m - t->nm_n + 1.0);
        bits += (double)(n / (size_t)t->nm_m) * lc / log(2.0);
        count = t->nnz;
    } else if (is_sparse(t->storage) && t->mask) {
        bits += (double)n * h2((double)t->nnz / (double)n);
        count = t->nnz;
    }
    if (count == 0) return bits / 8.0;
    /* order-0 empirical entropy of the stored values, over their bit
     * patterns: a histogram for bytes, sorted runs for wider elements */
    const unsigned char *d = t->data;
    if (esz == 1) {
        uint64_t hist[256] = {0};
        for (size_t i = 0; i < n; i++) if (!t->mask || t->mask[i]) hist[d[i]]++;
        for (int s = 0; s < 256; s++)
            if (hist[s]) bits -= (double)hist[s] * log2((double)hist[s] / (double)count);
        return bits / 8.0;
    }
    uint64_t *v = rf_malloc(count * sizeof *v);
    if (!v) return (bits + 8.0 * (double)count * (double)esz) / 8.0;   /* no memory: raw size */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) if (!t->mask || t->mask[i]) {
        uint64_t x = 0;
        memcpy(&x, d + i * esz, esz);
        v[k++] = x;
    }
    qsort(v, count, sizeof *v, cmp_u64);
    for (size_t i = 0; i < count;) {
        size_t j = i;
        while (j < count && v[j] == v[i]) j++;
        bits -= (double)(j - i) * log2((double)(j - i) / (double)count);
        i = j;
    }
    rf_free(v);
    return bits / 8.0;
}

double rf_ckpt_entropy_bound(const rf_ckpt *c) {
    double b = 0.0;
    for (int i = 0; i < c->n; i++) b += rf_ckpt_tensor_entropy_bound(&c->t[i]);
    return b;
}
