/* IDX reader: the format of LeCun's MNIST files and Fashion-MNIST.
 *
 * Layout (all integers big-endian, http://yann.lecun.com/exdb/mnist/):
 *
 *   offset 0   u8  0x00
 *   offset 1   u8  0x00
 *   offset 2   u8  element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
 *                                0x0D f32, 0x0E f64
 *   offset 3   u8  number of dimensions d
 *   offset 4   u32 dims[0] ... dims[d-1]
 *   then           prod(dims) elements, big-endian, row-major
 *
 * Files may be gzip-compressed (the distributed .gz files). A gzip file is
 * inflated into memory first, bounded by the context's memory cap, and the
 * result is parsed exactly like a plain file. The header is checked against
 * the buffer size before anything is allocated for the payload: a short file
 * is RF_ERR_TRUNCATED, extra bytes are RF_ERR_SIZE. */
#include "raffle/data.h"

#include <string.h>
#include <zlib.h>

/* Per IDX type code: the element size in the file and the tensor dtype it
 * becomes. i16 widens to i32 and f64 narrows to f32 because rf_tensor has
 * neither; every value of those types survives (f64 to nearest f32). */
typedef struct idx_type {
    unsigned char code;
    const char   *name;
    size_t        file_size;
    rf_dtype      dtype;
    void        (*convert)(void *dst, const unsigned char *src, size_t n);
} idx_type;

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

static void cvt_bytes(void *dst, const unsigned char *src, size_t n) { memcpy(dst, src, n); }
static void cvt_i16(void *dst, const unsigned char *src, size_t n) {
    int32_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = (int16_t)(uint16_t)(((unsigned)src[2 * i] << 8) | src[2 * i + 1]);
}
static void cvt_i32(void *dst, const unsigned char *src, size_t n) {
    int32_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = (int32_t)be32(src + 4 * i);
}
static void cvt_f32(void *dst, const unsigned char *src, size_t n) {
    float *d = dst;
    for (size_t i = 0; i < n; i++) { uint32_t u = be32(src + 4 * i); memcpy(&d[i], &u, 4); }
}
static void cvt_f64(void *dst, const unsigned char *src, size_t n) {
    float *d = dst;
    for (size_t i = 0; i < n; i++) { uint64_t u = be64(src + 8 * i); double v; memcpy(&v, &u, 8); d[i] = (float)v; }
}

static const idx_type idx_types[] = {
    {0x08, "u8",  1, RF_U8,  cvt_bytes},
    {0x09, "i8",  1, RF_I8,  cvt_bytes},
    {0x0B, "i16", 2, RF_I32, cvt_i16},
    {0x0C, "i32", 4, RF_I32, cvt_i32},
    {0x0D, "f32", 4, RF_F32, cvt_f32},
    {0x0E, "f64", 8, RF_F32, cvt_f64},
};

static const idx_type *idx_type_find(unsigned char code) {
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == code) return &idx_types[i];
    return NULL;
}

rf_status rf_idx_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, const char *what, rf_tensor **out) {
    *out = NULL;
    if (!what) what = "IDX";
    /* Check the magic bytes that are present before complaining about length,
     * so a non-IDX file is named as such even when it is tiny. */
    for (size_t i = 0; i < 2 && i < n; i++)
        if (buf[i] != 0)
            return rf_error(ctx, RF_ERR_MAGIC, "%s: not an IDX file (byte %zu is 0x%02x, expected 0x00)", what, i, buf[i]);
    const idx_type *ty = NULL;
    if (n >= 3 && !(ty = idx_type_find(buf[2])))
        return rf_error(ctx, RF_ERR_FORMAT, "%s: unknown IDX element type 0x%02x", what, buf[2]);
    if (n < 4) return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated IDX header (%zu of 4 bytes)", what, n);
    int ndim = buf[3];
    if (ndim == 0) return rf_error(ctx, RF_ERR_FORMAT, "%s: IDX file with 0 dimensions", what);
    if (ndim > RF_MAX_DIMS)
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "%s: IDX file has %d dimensions (at most %d supported)", what, ndim, RF_MAX_DIMS);
    size_t hdr = 4 + 4 * (size_t)ndim;
    if (n < hdr) return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated IDX header (%zu of %zu bytes)", what, n, hdr);
    int64_t shape[RF_MAX_DIMS];
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = be32(buf + 4 + 4 * (size_t)i);
        /* dims are < 2^32 each; bound the running product well below 2^63 */
        if (shape[i] && numel > (UINT64_C(1) << 62) / (uint64_t)shape[i])
            return rf_error(ctx, RF_ERR_SIZE, "%s: IDX dimensions overflow", what);
        numel *= (uint64_t)shape[i];
    }
    uint64_t need = numel * ty->file_size, have = n - hdr;
    if (have < need)
        return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated IDX data (header says %llu bytes, file has %llu)",
                        what, (unsigned long long)need, (unsigned long long)have);
    if (have > need)
        return rf_error(ctx, RF_ERR_SIZE, "%s: %llu bytes after the IDX data the header describes",
                        what, (unsigned long long)(have - need));
    rf_tensor *t = NULL;
    rf_status s = rf_tensor_new(ctx, ty->dtype, ndim, shape, &t);
    if (s) { rf_error_prefix(ctx, "%s", what); return s; }
    ty->convert(t->data, buf + hdr, (size_t)numel);
    *out = t;
    return RF_OK;
}

/* Inflates a whole gzip (or zlib) buffer into a new buffer (rf_free), growing
 * it geometrically but never past the memory cap. Concatenated gzip members
 * are all inflated, as gunzip does. */
static rf_status gunzip_mem(rf_ctx *ctx, const unsigned char *in, size_t n, const char *what,
                            unsigned char **out, size_t *out_n) {
    *out = NULL; *out_n = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) return rf_error(ctx, RF_ERR_COMPRESS, "%s: zlib init failed", what);
    /* gzip's trailer holds the size mod 2^32: a good first guess. */
    size_t cap = n >= 4 ? (size_t)rf_get_u32(in + n - 4) : 0;
    if (n < SIZE_MAX / 2048 && cap > n * 1032 + 4096) cap = n * 1032 + 4096; /* deflate's ratio is at most ~1032:1 */
    if (cap < 4096) cap = 4096;
    if (ctx) {
        /* a hint over the cap is only a hint: start small, and leave no
         * error behind (the real bound is checked as the buffer grows) */
        rf_ctx saved = *ctx;
        if (rf_check_cap(ctx, cap, what) != RF_OK) { *ctx = saved; cap = 4096; }
    }
    unsigned char *buf = rf_malloc(cap);
    if (!buf) { inflateEnd(&z); return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", what); }
    size_t used = 0, consumed = 0;
    rf_status st = RF_OK;
    for (;;) {
        if (used == cap) {
            uint64_t ncap = (uint64_t)cap * 2;
            if ((st = rf_check_cap(ctx, ncap, what)) != RF_OK) break;
            unsigned char *nb = rf_realloc(buf, (size_t)ncap);
            if (!nb) { st = rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", what); break; }
            buf = nb; cap = (size_t)ncap;
        }
        /* zlib counts in uInt: feed at most 1 GiB per call */
        size_t in_left = n - consumed, out_left = cap - used;
        z.next_in = (unsigned char *)(uintptr_t)(in + consumed);
        z.avail_in = (uInt)(in_left < (1u << 30) ? in_left : (1u << 30));
        z.next_out = buf + used;
        z.avail_out = (uInt)(out_left < (1u << 30) ? out_left : (1u << 30));
        uInt ai = z.avail_in, ao = z.avail_out;
        int r = inflate(&z, Z_NO_FLUSH);
        consumed += ai - z.avail_in;
        used += ao - z.avail_out;
        if (r == Z_STREAM_END) {
            if (consumed == n) break;
            if (inflateReset(&z) != Z_OK) { st = rf_error(ctx, RF_ERR_COMPRESS, "%s: zlib reset failed", what); break; }
            continue;
        }
        if (r == Z_OK) continue;
        /* Z_BUF_ERROR: no progress. With output room left, the input ran out
         * before the stream ended; with none, grow the buffer and go on. */
        if (r == Z_BUF_ERROR && used < cap) {
            st = rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated gzip stream", what);
            break;
        }
        if (r == Z_BUF_ERROR) continue;
        st = rf_error(ctx, RF_ERR_COMPRESS, "%s: corrupt gzip data (%s)", what, z.msg ? z.msg : "zlib error");
        break;
    }
    inflateEnd(&z);
    if (st) { rf_free(buf); return st; }
    *out = buf; *out_n = used;
    return RF_OK;
}

rf_status rf_idx_read(rf_ctx *ctx, const char *path, rf_tensor **out) {
    *out = NULL;
    unsigned char *raw = NULL;
    size_t n = 0;
    RF_TRY(rf_read_file(ctx, path, &raw, &n));
    rf_status s;
    if (n >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        unsigned char *plain = NULL;
        size_t pn = 0;
        s = gunzip_mem(ctx, raw, n, path, &plain, &pn);
        rf_free(raw);
        if (s) return s;
        s = rf_idx_parse(ctx, plain, pn, path, out);
        rf_free(plain);
    } else {
        s = rf_idx_parse(ctx, raw, n, path, out);
        rf_free(raw);
    }
    return s;
}
