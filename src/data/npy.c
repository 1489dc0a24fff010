/* NumPy .npy reader and writer.
 *
 * Layout (numpy.lib.format, NEP 1):
 *
 *   offset 0   6 bytes  magic "\x93NUMPY"
 *   offset 6   u8       major version (1, 2 or 3)
 *   offset 7   u8       minor version (0)
 *   offset 8   u16 LE   header length H            (version 1)
 *              u32 LE   header length H            (versions 2 and 3; data at 12 + H)
 *   then       H bytes  a Python dict literal, e.g.
 *                       {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *                       padded with spaces and a final '\n' (latin-1 in v1/v2,
 *                       UTF-8 in v3; raffle accepts only ASCII either way)
 *   then       the array data, prod(shape) * itemsize bytes, C order.
 *
 * raffle reads little-endian f32, u8, i8, i32 and i64 in C order and rejects
 * anything else with a distinct status: big-endian or object dtypes and
 * Fortran order are RF_ERR_UNSUPPORTED, a data section shorter than the shape
 * says is RF_ERR_TRUNCATED, a longer one RF_ERR_SIZE. The writer emits v1 with
 * the header padded so the data starts on a 64-byte boundary, as numpy does. */
#include "raffle/data.h"

#include <stdio.h>
#include <string.h>

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* descr strings raffle accepts. '|' (not applicable) and '<' are both valid
 * for one-byte types; numpy writes '|'. The first entry per dtype is the one
 * the writer emits. */
static const struct { const char *descr; rf_dtype dtype; } npy_descrs[] = {
    {"<f4", RF_F32}, {"|u1", RF_U8}, {"|i1", RF_I8}, {"<i4", RF_I32}, {"<i8", RF_I64},
    {"<u1", RF_U8},  {"<i1", RF_I8}, {"u1", RF_U8},  {"i1", RF_I8},
};

static int npy_descr_find(const char *d) {
    for (size_t i = 0; i < sizeof npy_descrs / sizeof npy_descrs[0]; i++)
        if (strcmp(npy_descrs[i].descr, d) == 0) return (int)npy_descrs[i].dtype;
    return -1;
}

static const char *npy_descr_of(rf_dtype t) {
    for (size_t i = 0; i < sizeof npy_descrs / sizeof npy_descrs[0]; i++)
        if (npy_descrs[i].dtype == t) return npy_descrs[i].descr;
    return NULL;
}

/* ---- header dict parser --------------------------------------------------
 * A small recursive-descent parser for the subset of Python literals numpy
 * writes: a dict of string keys to a string, True/False, or a tuple of
 * non-negative integers. Anything else is RF_ERR_FORMAT. */
typedef struct hparse {
    const char *start, *p, *end;
    const char *what;
    rf_ctx     *ctx;
} hparse;

typedef struct npy_header {
    char    descr[16];
    int     fortran;
    int     ndim;
    int64_t shape[RF_MAX_DIMS];
    int     have_descr, have_fortran, have_shape;
} npy_header;

static void skip_ws(hparse *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r')) h->p++;
}

static rf_status bad(hparse *h, const char *msg) {
    return rf_error(h->ctx, RF_ERR_FORMAT, "%s: bad .npy header: %s at offset %td", h->what, msg, h->p - h->start);
}

static int accept(hparse *h, char c) {
    skip_ws(h);
    if (h->p < h->end && *h->p == c) { h->p++; return 1; }
    return 0;
}

/* Parses a quoted string ('...' or "...", no escapes) into out. */
static rf_status parse_str(hparse *h, char *out, size_t n) {
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return bad(h, "expected a string");
    char q = *h->p++;
    size_t len = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || (unsigned char)*h->p < 0x20 || (unsigned char)*h->p > 0x7e) return bad(h, "unsupported character in string");
        if (len + 1 >= n) return bad(h, "string too long");
        out[len++] = *h->p++;
    }
    if (h->p >= h->end) return bad(h, "unterminated string");
    h->p++;
    out[len] = '\0';
    return RF_OK;
}

static rf_status parse_bool(hparse *h, int *v) {
    skip_ws(h);
    size_t left = (size_t)(h->end - h->p);
    if (left >= 4 && memcmp(h->p, "True", 4) == 0) { h->p += 4; *v = 1; return RF_OK; }
    if (left >= 5 && memcmp(h->p, "False", 5) == 0) { h->p += 5; *v = 0; return RF_OK; }
    return bad(h, "expected True or False");
}

static rf_status parse_shape(hparse *h, npy_header *hd) {
    if (!accept(h, '(')) return bad(h, "expected a shape tuple");
    hd->ndim = 0;
    for (;;) {
        if (accept(h, ')')) break;
        skip_ws(h);
        if (h->p >= h->end || *h->p < '0' || *h->p > '9') return bad(h, "expected a non-negative integer in shape");
        const char *d0 = h->p;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') h->p++;
        int64_t v = 0;
        if (rf_parse_i64(NULL, d0, (size_t)(h->p - d0), 0, INT64_MAX, "shape", &v) != RF_OK)
            return rf_error(h->ctx, RF_ERR_SIZE, "%s: .npy shape dimension overflows", h->what);
        if (h->p < h->end && *h->p == 'L') h->p++;   /* Python 2 longs */
        if (hd->ndim >= RF_MAX_DIMS)
            return rf_error(h->ctx, RF_ERR_UNSUPPORTED, "%s: .npy array has more than %d dimensions", h->what, RF_MAX_DIMS);
        hd->shape[hd->ndim++] = v;
        if (accept(h, ',')) continue;
        if (accept(h, ')')) break;
        return bad(h, "expected ',' or ')' in shape");
    }
    return RF_OK;
}

static rf_status parse_header(rf_ctx *ctx, const char *text, size_t n, const char *what, npy_header *hd) {
    memset(hd, 0, sizeof *hd);
    hparse h = {text, text, text + n, what, ctx};
    if (!accept(&h, '{')) return bad(&h, "expected '{'");
    for (;;) {
        if (accept(&h, '}')) break;
        char key[32];
        RF_TRY(parse_str(&h, key, sizeof key));
        if (!accept(&h, ':')) return bad(&h, "expected ':'");
        if (strcmp(key, "descr") == 0 && !hd->have_descr) {
            skip_ws(&h);
            if (h.p < h.end && (*h.p == '[' || *h.p == '('))
                return rf_error(ctx, RF_ERR_UNSUPPORTED, "%s: structured .npy dtypes are not supported", what);
            RF_TRY(parse_str(&h, hd->descr, sizeof hd->descr));
            hd->have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !hd->have_fortran) {
            RF_TRY(parse_bool(&h, &hd->fortran));
            hd->have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !hd->have_shape) {
            RF_TRY(parse_shape(&h, hd));
            hd->have_shape = 1;
        } else {
            return rf_error(ctx, RF_ERR_FORMAT, "%s: bad .npy header: unexpected or repeated key '%s'", what, key);
        }
        if (accept(&h, ',')) continue;
        if (accept(&h, '}')) break;
        return bad(&h, "expected ',' or '}'");
    }
    skip_ws(&h);
    while (h.p < h.end && *h.p == '\0') h.p++;   /* some writers pad with NULs */
    if (h.p != h.end) return bad(&h, "trailing characters after the dict");
    if (!hd->have_descr || !hd->have_fortran || !hd->have_shape)
        return rf_error(ctx, RF_ERR_FORMAT, "%s: bad .npy header: needs 'descr', 'fortran_order' and 'shape'", what);
    return RF_OK;
}

rf_status rf_npy_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, const char *what, rf_tensor **out) {
    *out = NULL;
    if (!what) what = ".npy";
    size_t m = n < sizeof npy_magic ? n : sizeof npy_magic;
    if (memcmp(buf, npy_magic, m) != 0) return rf_error(ctx, RF_ERR_MAGIC, "%s: not a .npy file (bad magic)", what);
    if (n < 8) return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated .npy preamble (%zu bytes)", what, n);
    int major = buf[6];
    if (major < 1 || major > 3)
        return rf_error(ctx, RF_ERR_VERSION, "%s: .npy format version %d.%d (raffle reads 1.0 to 3.0)", what, major, buf[7]);
    size_t pre = major == 1 ? 10 : 12;
    if (n < pre) return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated .npy preamble (%zu of %zu bytes)", what, n, pre);
    uint64_t hlen = major == 1 ? (uint64_t)(buf[8] | (buf[9] << 8)) : rf_get_u32(buf + 8);
    if (hlen > n - pre)
        return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated .npy header (%llu of %llu bytes)", what,
                        (unsigned long long)(n - pre), (unsigned long long)hlen);
    npy_header hd;
    RF_TRY(parse_header(ctx, (const char *)buf + pre, (size_t)hlen, what, &hd));
    if (hd.descr[0] == '>')
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "%s: big-endian .npy dtype '%s' (convert with arr.astype('<%s'))", what, hd.descr, hd.descr + 1);
    int dt = npy_descr_find(hd.descr);
    if (dt < 0)
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "%s: .npy dtype '%s' not supported (use <f4, |u1, |i1, <i4 or <i8)", what, hd.descr);
    if (hd.fortran)
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "%s: Fortran-ordered .npy not supported (save with np.ascontiguousarray)", what);
    int64_t numel = rf_shape_numel(hd.ndim, hd.shape);
    size_t es = rf_dtype_size((rf_dtype)dt);
    if (numel < 0 || (uint64_t)numel > UINT64_MAX / 16)
        return rf_error(ctx, RF_ERR_SIZE, "%s: .npy shape overflows", what);
    uint64_t need = (uint64_t)numel * es, have = n - pre - hlen;
    if (have < need)
        return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated .npy data (shape needs %llu bytes, file has %llu)",
                        what, (unsigned long long)need, (unsigned long long)have);
    if (have > need)
        return rf_error(ctx, RF_ERR_SIZE, "%s: .npy file has %llu bytes more than its shape describes",
                        what, (unsigned long long)(have - need));
    rf_tensor *t = NULL;
    rf_status s = rf_tensor_new(ctx, (rf_dtype)dt, hd.ndim, hd.shape, &t);
    if (s) { rf_error_prefix(ctx, "%s", what); return s; }
    /* Little-endian data on a little-endian host: a straight copy. */
    memcpy(t->data, buf + pre + hlen, (size_t)need);
    *out = t;
    return RF_OK;
}

rf_status rf_npy_read(rf_ctx *ctx, const char *path, rf_tensor **out) {
    *out = NULL;
    unsigned char *buf = NULL;
    size_t n = 0;
    RF_TRY(rf_read_file(ctx, path, &buf, &n));
    rf_status s = rf_npy_parse(ctx, buf, n, path, out);
    rf_free(buf);
    return s;
}

static int is_contiguous(const rf_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

rf_status rf_npy_encode(rf_ctx *ctx, const rf_tensor *t, int version, unsigned char **out, size_t *out_n) {
    *out = NULL; *out_n = 0;
    if (version < 1 || version > 3) return rf_error(ctx, RF_ERR_INVALID, ".npy: cannot write version %d", version);
    const char *descr = npy_descr_of(t->dtype);
    if (!descr) return rf_error(ctx, RF_ERR_INVALID, ".npy: cannot write dtype %d", (int)t->dtype);
    if (!is_contiguous(t)) return rf_error(ctx, RF_ERR_INVALID, ".npy: tensor is not contiguous");
    int64_t numel = rf_tensor_numel(t);
    if (numel < 0) return rf_error(ctx, RF_ERR_INVALID, ".npy: invalid tensor shape");
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->ndim; i++)
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld%s", (long long)t->shape[i],
                        (t->ndim == 1 || i + 1 < t->ndim) ? ", " : "");
    if (t->ndim == 1) len -= 1;   /* "(5,)": Python's one-tuple, no space */
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    size_t pre = version == 1 ? 10 : 12;
    /* pad with spaces and a final newline so the data starts at a multiple of 64 */
    size_t total_hdr = (pre + (size_t)len + 1 + 63) / 64 * 64;
    size_t hlen = total_hdr - pre;
    size_t data = (size_t)numel * rf_dtype_size(t->dtype);
    RF_TRY(rf_check_cap(ctx, (uint64_t)total_hdr + data, ".npy"));
    unsigned char *buf = rf_malloc(total_hdr + data);
    if (!buf) return rf_error(ctx, RF_ERR_NOMEM, ".npy: out of memory");
    memcpy(buf, npy_magic, 6);
    buf[6] = (unsigned char)version; buf[7] = 0;
    if (version == 1) { buf[8] = (unsigned char)hlen; buf[9] = (unsigned char)(hlen >> 8); }
    else rf_put_u32(buf + 8, (uint32_t)hlen);
    memcpy(buf + pre, dict, (size_t)len);
    memset(buf + pre + len, ' ', hlen - (size_t)len - 1);
    buf[total_hdr - 1] = '\n';
    if (data) memcpy(buf + total_hdr, t->data, data);
    *out = buf; *out_n = total_hdr + data;
    return RF_OK;
}

rf_status rf_npy_write(rf_ctx *ctx, const char *path, const rf_tensor *t) {
    unsigned char *buf = NULL;
    size_t n = 0;
    rf_status s = rf_npy_encode(ctx, t, 1, &buf, &n);
    if (s) { rf_error_prefix(ctx, "%s", path); return s; }
    s = rf_write_file_atomic(ctx, path, buf, n);
    rf_free(buf);
    return s;
}
