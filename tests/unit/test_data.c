/* Data: IDX and .npy readers (round trips, every rejection, truncation at
 * every length), dataset loading (npy list, JSON descriptor, synthetic,
 * mnist, fashion-mnist), validation, normalisation, deterministic batching. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "raffle/data.h"

/* ---- helpers ---------------------------------------------------------------- */

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/raffle-test-data-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(idx, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(npy, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(dataset, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(batcher);

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_gz(const char *path, const void *data, size_t n, const char *mode) {
    gzFile g = gzopen(path, mode);
    cr_assert_not_null(g);
    cr_assert_eq(gzwrite(g, data, (unsigned)n), (int)n);
    cr_assert_eq(gzclose(g), Z_OK);
}

/* Builds an IDX image: header for (type, dims) then `payload` bytes. */
static size_t build_idx(unsigned char *out, unsigned char type, int ndim, const uint32_t *dims,
                        const void *payload, size_t plen) {
    out[0] = 0; out[1] = 0; out[2] = type; out[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        out[4 + 4 * i] = (unsigned char)(dims[i] >> 24); out[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        out[6 + 4 * i] = (unsigned char)(dims[i] >> 8);  out[7 + 4 * i] = (unsigned char)dims[i];
    }
    memcpy(out + 4 + 4 * ndim, payload, plen);
    return 4 + 4 * (size_t)ndim + plen;
}

static void put_be(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

/* ---- IDX -------------------------------------------------------------------- */

Test(idx, u8_round_trip_plain_and_gzip) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char pay[2 * 3 * 4], buf[256];
    for (int i = 0; i < 24; i++) pay[i] = (unsigned char)(i * 11 + 3);
    uint32_t dims[3] = {2, 3, 4};
    size_t n = build_idx(buf, 0x08, 3, dims, pay, sizeof pay);
    write_bytes(tpath("a.idx"), buf, n);
    write_gz(tpath("a.idx.gz"), buf, n, "wb9");
    const char *files[2] = {tpath("a.idx"), tpath("a.idx.gz")};
    for (int f = 0; f < 2; f++) {
        rf_tensor *t = NULL;
        cr_assert_eq(rf_idx_read(&ctx, files[f], &t), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(t->dtype, RF_U8);
        cr_assert_eq(t->ndim, 3);
        cr_assert(t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 4);
        cr_assert_arr_eq(t->data, pay, sizeof pay);
        rf_tensor_free(t);
    }
}

Test(idx, gzip_with_two_members_is_read_whole) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char pay[10], buf[64];
    for (int i = 0; i < 10; i++) pay[i] = (unsigned char)(200 + i);
    uint32_t dims[1] = {10};
    size_t n = build_idx(buf, 0x08, 1, dims, pay, sizeof pay);
    write_gz(tpath("m.gz"), buf, 7, "wb");
    write_gz(tpath("m.gz"), buf + 7, n - 7, "ab");
    rf_tensor *t = NULL;
    cr_assert_eq(rf_idx_read(&ctx, tpath("m.gz"), &t), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_arr_eq(t->data, pay, 10);
    rf_tensor_free(t);
}

Test(idx, every_element_type_converts) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    uint32_t dims[2] = {2, 3};
    unsigned char pay[6 * 8], buf[128];
    const int64_t ints[6] = {-3, -1, 0, 1, 7, 100};
    const double reals[6] = {-2.5, 0.0, 1.0, 3.25, 1e-3, 1e30};
    struct { unsigned char code; int es; rf_dtype dt; int real; } cases[] = {
        {0x08, 1, RF_U8, 0}, {0x09, 1, RF_I8, 0}, {0x0B, 2, RF_I32, 0},
        {0x0C, 4, RF_I32, 0}, {0x0D, 4, RF_F32, 1}, {0x0E, 8, RF_F32, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < 6; i++) {
            uint64_t bits;
            if (cases[c].code == 0x0D) { float f = (float)reals[i]; uint32_t u; memcpy(&u, &f, 4); bits = u; }
            else if (cases[c].code == 0x0E) memcpy(&bits, &reals[i], 8);
            else bits = (uint64_t)(cases[c].code == 0x08 ? (ints[i] & 0xff) : ints[i]);
            put_be(pay + i * cases[c].es, bits, cases[c].es);
        }
        size_t n = build_idx(buf, cases[c].code, 2, dims, pay, 6 * (size_t)cases[c].es);
        rf_tensor *t = NULL;
        cr_assert_eq(rf_idx_parse(&ctx, buf, n, "mem", &t), RF_OK, "type 0x%02x: %s", cases[c].code, rf_ctx_error(&ctx));
        cr_assert_eq(t->dtype, cases[c].dt, "type 0x%02x", cases[c].code);
        for (int i = 0; i < 6; i++) {
            if (cases[c].real) cr_assert_eq(((float *)t->data)[i], (float)reals[i]);
            else if (cases[c].dt == RF_U8) cr_assert_eq(((uint8_t *)t->data)[i], (uint8_t)ints[i]);
            else if (cases[c].dt == RF_I8) cr_assert_eq(((int8_t *)t->data)[i], (int8_t)ints[i]);
            else cr_assert_eq(((int32_t *)t->data)[i], (int32_t)ints[i], "type 0x%02x elem %d", cases[c].code, i);
        }
        rf_tensor_free(t);
    }
}

Test(idx, rejects_bad_magic_type_and_dims) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char pay[4] = {1, 2, 3, 4}, buf[64];
    uint32_t dims[1] = {4};
    size_t n = build_idx(buf, 0x08, 1, dims, pay, 4);
    rf_tensor *t = NULL;
    buf[0] = 1;
    cr_assert_eq(rf_idx_parse(&ctx, buf, n, "bad.idx", &t), RF_ERR_MAGIC);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "bad.idx"), "error names the file: %s", rf_ctx_error(&ctx));
    cr_assert_null(t);
    buf[0] = 0; buf[1] = 8;
    cr_assert_eq(rf_idx_parse(&ctx, buf, n, "bad.idx", &t), RF_ERR_MAGIC);
    buf[1] = 0;
    buf[2] = 0x07;
    cr_assert_eq(rf_idx_parse(&ctx, buf, n, "bad.idx", &t), RF_ERR_FORMAT);
    buf[2] = 0x0A;
    cr_assert_eq(rf_idx_parse(&ctx, buf, n, "bad.idx", &t), RF_ERR_FORMAT);
    buf[2] = 0x08; buf[3] = 0;
    cr_assert_eq(rf_idx_parse(&ctx, buf, n, "bad.idx", &t), RF_ERR_FORMAT);
    buf[3] = 5;
    unsigned char big[64] = {0, 0, 0x08, 5};
    for (int i = 0; i < 5; i++) big[7 + 4 * i] = 1;
    cr_assert_eq(rf_idx_parse(&ctx, big, 4 + 20 + 1, "bad.idx", &t), RF_ERR_UNSUPPORTED);
    /* dims whose product overflows */
    unsigned char ov[4 + 16] = {0, 0, 0x0E, 4};
    memset(ov + 4, 0xff, 16);
    cr_assert_eq(rf_idx_parse(&ctx, ov, sizeof ov, "ov.idx", &t), RF_ERR_SIZE);
    cr_assert_null(t);
}

Test(idx, truncation_at_every_length_and_lying_headers) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int16_t vals[6] = {1, -2, 3, -4, 5, -6};
    unsigned char pay[12], buf[64];
    for (int i = 0; i < 6; i++) put_be(pay + 2 * i, (uint16_t)vals[i], 2);
    uint32_t dims[2] = {3, 2};
    size_t n = build_idx(buf, 0x0B, 2, dims, pay, sizeof pay);
    rf_tensor *t = NULL;
    for (size_t len = 0; len < n; len++) {
        cr_assert_eq(rf_idx_parse(&ctx, buf, len, "cut.idx", &t), RF_ERR_TRUNCATED, "length %zu", len);
        cr_assert_null(t);
    }
    /* the same through files, plain and gzipped (a cut gzip stream is truncated too) */
    write_gz(tpath("full.gz"), buf, n, "wb");
    unsigned char *gz = NULL;
    size_t gn = 0;
    cr_assert_eq(rf_read_file(&ctx, tpath("full.gz"), &gz, &gn), RF_OK);
    for (size_t len = 0; len < n; len++) {
        write_bytes(tpath("cut.idx"), buf, len);
        cr_assert_eq(rf_idx_read(&ctx, tpath("cut.idx"), &t), RF_ERR_TRUNCATED, "length %zu", len);
    }
    for (size_t len = 0; len < gn; len++) {
        write_bytes(tpath("cut.gz"), gz, len);
        rf_status s = rf_idx_read(&ctx, tpath("cut.gz"), &t);
        if (len == 0) cr_assert_eq(s, RF_ERR_TRUNCATED, "empty file");
        else if (len == 1) cr_assert_eq(s, RF_ERR_MAGIC, "gz length 1");   /* not even gzip magic */
        else cr_assert_eq(s, RF_ERR_TRUNCATED, "gz length %zu: %s", len, rf_ctx_error(&ctx));
        cr_assert_null(t);
    }
    rf_free(gz);
    /* header claims more rows than the file has */
    uint32_t more[2] = {4, 2};
    size_t m = build_idx(buf, 0x0B, 2, more, pay, sizeof pay);
    cr_assert_eq(rf_idx_parse(&ctx, buf, m, "more.idx", &t), RF_ERR_TRUNCATED);
    /* trailing bytes after the data */
    unsigned char pay2[13];
    memcpy(pay2, pay, 12); pay2[12] = 0;
    m = build_idx(buf, 0x0B, 2, dims, pay2, sizeof pay2);
    cr_assert_eq(rf_idx_parse(&ctx, buf, m, "extra.idx", &t), RF_ERR_SIZE);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "extra.idx"));
}

Test(idx, corrupt_gzip_and_memory_cap) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char pay[4096], buf[4200];
    memset(pay, 7, sizeof pay);
    uint32_t dims[1] = {4096};
    size_t n = build_idx(buf, 0x08, 1, dims, pay, sizeof pay);
    write_gz(tpath("c.gz"), buf, n, "wb");
    unsigned char *gz = NULL;
    size_t gn = 0;
    cr_assert_eq(rf_read_file(&ctx, tpath("c.gz"), &gz, &gn), RF_OK);
    rf_tensor *t = NULL;
    /* a flipped byte in the deflate stream or the CRC trailer */
    gz[gn - 6] ^= 0x55;
    write_bytes(tpath("c2.gz"), gz, gn);
    cr_assert_eq(rf_idx_read(&ctx, tpath("c2.gz"), &t), RF_ERR_COMPRESS, "%s", rf_ctx_error(&ctx));
    rf_free(gz);
    /* the inflated size is bounded by the memory cap */
    ctx.mem_cap = 2000;
    cr_assert_eq(rf_idx_read(&ctx, tpath("c.gz"), &t), RF_ERR_LIMIT);
    cr_assert_null(t);
    cr_assert_eq(rf_idx_read(&ctx, tpath("nonexistent.gz"), &t), RF_ERR_NOTFOUND);
}

/* ---- .npy --------------------------------------------------------------------- */

static rf_tensor *filled(rf_dtype dt, int ndim, const int64_t *shape) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_tensor *t = NULL;
    cr_assert_eq(rf_tensor_new(&ctx, dt, ndim, shape, &t), RF_OK);
    unsigned char *p = t->data;
    size_t bytes = (size_t)rf_tensor_numel(t) * rf_dtype_size(dt);
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)(i * 37 + 11);
    return t;
}

Test(npy, round_trip_every_dtype_and_rank) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int64_t shapes[5][4] = {{0}, {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}};
    for (int dt = 0; dt < RF_DTYPE_COUNT_; dt++)
        for (int nd = 0; nd <= 4; nd++) {
            rf_tensor *t = filled((rf_dtype)dt, nd, shapes[nd]);
            cr_assert_eq(rf_npy_write(&ctx, tpath("t.npy"), t), RF_OK, "%s", rf_ctx_error(&ctx));
            unsigned char *raw = NULL;
            size_t rn = 0;
            cr_assert_eq(rf_read_file(&ctx, tpath("t.npy"), &raw, &rn), RF_OK);
            cr_assert_eq(raw[6], 1, "writer emits v1");
            size_t hdr = 10 + (size_t)(raw[8] | (raw[9] << 8));
            cr_assert_eq(hdr % 64, 0, "data is 64-byte aligned");
            cr_assert_eq(raw[hdr - 1], '\n');
            rf_free(raw);
            rf_tensor *u = NULL;
            cr_assert_eq(rf_npy_read(&ctx, tpath("t.npy"), &u), RF_OK, "dtype %d ndim %d: %s", dt, nd, rf_ctx_error(&ctx));
            cr_assert_eq(u->dtype, t->dtype);
            cr_assert_eq(u->ndim, nd);
            for (int i = 0; i < nd; i++) cr_assert_eq(u->shape[i], t->shape[i]);
            cr_assert_arr_eq(u->data, t->data, (size_t)rf_tensor_numel(t) * rf_dtype_size((rf_dtype)dt));
            rf_tensor_free(t);
            rf_tensor_free(u);
        }
}

Test(npy, header_versions_1_2_3) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int64_t shape[2] = {3, 4};
    rf_tensor *t = filled(RF_F32, 2, shape);
    for (int v = 1; v <= 3; v++) {
        unsigned char *buf = NULL;
        size_t n = 0;
        cr_assert_eq(rf_npy_encode(&ctx, t, v, &buf, &n), RF_OK);
        cr_assert_eq(buf[6], v);
        rf_tensor *u = NULL;
        cr_assert_eq(rf_npy_parse(&ctx, buf, n, "v.npy", &u), RF_OK, "v%d: %s", v, rf_ctx_error(&ctx));
        cr_assert_arr_eq(u->data, t->data, 48);
        rf_tensor_free(u);
        rf_free(buf);
    }
    unsigned char *b = NULL;
    size_t n = 0;
    cr_assert_eq(rf_npy_encode(&ctx, t, 4, &b, &n), RF_ERR_INVALID);
    rf_tensor_free(t);
}

/* Builds a .npy image with a hand-written header dict (version 1 or 2). */
static size_t npy_image(unsigned char *out, int version, const char *dict, const void *data, size_t dn) {
    size_t pre = version == 1 ? 10 : 12, hl = strlen(dict);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)version; out[7] = 0;
    if (version == 1) { out[8] = (unsigned char)hl; out[9] = (unsigned char)(hl >> 8); }
    else rf_put_u32(out + 8, (uint32_t)hl);
    memcpy(out + pre, dict, hl);
    memcpy(out + pre + hl, data, dn);
    return pre + hl + dn;
}

Test(npy, accepts_header_spellings) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int32_t data[6] = {1, -2, 3, -4, 5, 2147483647};
    const char *dicts[] = {
        "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }\n",
        "{\"shape\": (2,3), \"fortran_order\": False, \"descr\": \"<i4\"}",
        "{'descr':'<i4','fortran_order':False,'shape':(2L, 3L)}      \n",
        "  { 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , 'descr' : '<i4' , }  ",
    };
    unsigned char buf[256];
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++)
        for (int v = 1; v <= 2; v++) {
            size_t n = npy_image(buf, v, dicts[i], data, sizeof data);
            rf_tensor *t = NULL;
            cr_assert_eq(rf_npy_parse(&ctx, buf, n, "h.npy", &t), RF_OK, "dict %zu v%d: %s", i, v, rf_ctx_error(&ctx));
            cr_assert(t->dtype == RF_I32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
            cr_assert_arr_eq(t->data, data, sizeof data);
            rf_tensor_free(t);
        }
    /* one-byte types with either byte-order mark */
    const uint8_t b[3] = {0, 128, 255};
    const char *u1[] = {"{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
                        "{'descr': '<u1', 'fortran_order': False, 'shape': (3,), }"};
    for (int i = 0; i < 2; i++) {
        size_t n = npy_image(buf, 1, u1[i], b, 3);
        rf_tensor *t = NULL;
        cr_assert_eq(rf_npy_parse(&ctx, buf, n, "u1.npy", &t), RF_OK);
        cr_assert_eq(t->dtype, RF_U8);
        cr_assert_arr_eq(t->data, b, 3);
        rf_tensor_free(t);
    }
}

Test(npy, rejects_every_bad_header) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float data[6] = {0};
    unsigned char buf[512];
    struct { const char *dict; size_t dn; rf_status want; } cases[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '<f2', 'fortran_order': False, 'shape': (12,), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '|b1', 'fortran_order': False, 'shape': (24,), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 2, 3), }", 24, RF_ERR_UNSUPPORTED},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", 24, RF_ERR_TRUNCATED},  /* lying shape */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 24, RF_ERR_SIZE},       /* extra data */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 24, RF_ERR_SIZE},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 24, RF_ERR_SIZE},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }", 24, RF_ERR_SIZE},
        {"{'descr': '<f4', 'fortran_order': False}", 24, RF_ERR_FORMAT},                       /* missing key */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [6]}", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (6,)}", 24, RF_ERR_FORMAT},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}", 24, RF_ERR_FORMAT},
        {"['descr', '<f4']", 24, RF_ERR_FORMAT},
        {"", 24, RF_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = npy_image(buf, 1, cases[i].dict, data, cases[i].dn);
        rf_tensor *t = NULL;
        rf_status s = rf_npy_parse(&ctx, buf, n, "bad.npy", &t);
        cr_assert_eq(s, cases[i].want, "case %zu (%s): got %s: %s", i, cases[i].dict, rf_strerror(s), rf_ctx_error(&ctx));
        cr_assert_null(t);
        cr_assert_not_null(strstr(rf_ctx_error(&ctx), "bad.npy"), "case %zu names the file", i);
    }
    /* magic and version */
    size_t n = npy_image(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", data, 24);
    rf_tensor *t = NULL;
    buf[1] = 'n';
    cr_assert_eq(rf_npy_parse(&ctx, buf, n, "m.npy", &t), RF_ERR_MAGIC);
    cr_assert_eq(rf_npy_parse(&ctx, buf, 3, "m.npy", &t), RF_ERR_MAGIC);
    buf[1] = 'N';
    buf[6] = 4;
    cr_assert_eq(rf_npy_parse(&ctx, buf, n, "m.npy", &t), RF_ERR_VERSION);
    buf[6] = 0;
    cr_assert_eq(rf_npy_parse(&ctx, buf, n, "m.npy", &t), RF_ERR_VERSION);
}

Test(npy, truncation_at_every_length) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int64_t shape[2] = {3, 2};
    rf_tensor *t = filled(RF_I64, 2, shape);
    for (int v = 1; v <= 2; v++) {
        unsigned char *buf = NULL;
        size_t n = 0;
        cr_assert_eq(rf_npy_encode(&ctx, t, v, &buf, &n), RF_OK);
        for (size_t len = 0; len < n; len++) {
            rf_tensor *u = NULL;
            cr_assert_eq(rf_npy_parse(&ctx, buf, len, "cut.npy", &u), RF_ERR_TRUNCATED, "v%d length %zu: %s", v, len, rf_ctx_error(&ctx));
            cr_assert_null(u);
        }
        /* a byte appended is a size mismatch, never silently ignored */
        unsigned char *more = malloc(n + 1);
        memcpy(more, buf, n); more[n] = 0;
        rf_tensor *u = NULL;
        cr_assert_eq(rf_npy_parse(&ctx, more, n + 1, "long.npy", &u), RF_ERR_SIZE);
        /* and through a file */
        write_bytes(tpath("cut.npy"), buf, n - 1);
        cr_assert_eq(rf_npy_read(&ctx, tpath("cut.npy"), &u), RF_ERR_TRUNCATED);
        cr_assert_not_null(strstr(rf_ctx_error(&ctx), "cut.npy"));
        free(more);
        rf_free(buf);
    }
    rf_tensor_free(t);
}

Test(npy, writer_rejects_non_contiguous_and_survives_alloc_failures) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int64_t shape[2] = {4, 4};
    rf_tensor *t = filled(RF_F32, 2, shape);
    rf_tensor v = *t;
    v.owns = 0;
    v.shape[1] = 2;   /* a column slice: row stride stays 4 */
    cr_assert_eq(rf_npy_write(&ctx, tpath("nc.npy"), &v), RF_ERR_INVALID);
    cr_assert_eq(access(tpath("nc.npy"), F_OK), -1);
    cr_assert_eq(rf_npy_write(&ctx, tpath("ok.npy"), t), RF_OK);
    /* SQLite-style: fail the k-th allocation; always an error, never a leak */
    long live = rf_alloc_live();
    for (long k = 0; k < 20; k++) {
        rf_alloc_fail_after(k);
        rf_tensor *u = NULL;
        rf_status s = rf_npy_read(&ctx, tpath("ok.npy"), &u);
        rf_alloc_fail_after(-1);
        if (s == RF_OK) { cr_assert_arr_eq(u->data, t->data, 64); rf_tensor_free(u); break; }
        cr_assert_eq(s, RF_ERR_NOMEM, "k=%ld: %s", k, rf_ctx_error(&ctx));
        cr_assert_null(u);
        cr_assert_eq(rf_alloc_live(), live, "k=%ld leaked", k);
    }
    rf_tensor_free(t);
}

/* ---- datasets -------------------------------------------------------------------- */

static void save(const char *name, rf_dtype dt, int ndim, const int64_t *shape, const void *data) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_tensor t;
    cr_assert_eq(rf_tensor_view(&ctx, &t, dt, ndim, shape, (void *)data), RF_OK);
    cr_assert_eq(rf_npy_write(&ctx, tpath(name), &t), RF_OK, "%s", rf_ctx_error(&ctx));
}

/* Writes an [N,H,W] uint8 / int64 quadruple and returns the spec string. */
static const char *write_u8_quad(int ntr, int nte, int h, int w, int classes) {
    uint8_t *x = malloc((size_t)(ntr + nte) * h * w);
    int64_t *y = malloc((size_t)(ntr + nte) * sizeof *y);
    for (int i = 0; i < (ntr + nte) * h * w; i++) x[i] = (uint8_t)((i * 7919) % 256);
    for (int i = 0; i < ntr + nte; i++) y[i] = i % classes;
    int64_t s1[3] = {ntr, h, w}, s2[3] = {nte, h, w}, l1[1] = {ntr}, l2[1] = {nte};
    save("trx.npy", RF_U8, 3, s1, x);
    save("try.npy", RF_I64, 1, l1, y);
    save("tex.npy", RF_U8, 3, s2, x + (size_t)ntr * h * w);
    save("tey.npy", RF_I64, 1, l2, y + ntr);
    free(x); free(y);
    static char spec[1200];
    snprintf(spec, sizeof spec, "%s/trx.npy,%s/try.npy,%s/tex.npy,%s/tey.npy", tmpdir, tmpdir, tmpdir, tmpdir);
    return spec;
}

Test(dataset, npy_quad_uint8_is_scaled_and_normalised_with_train_stats) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int ntr = 30, nte = 12, h = 5, w = 4;
    const char *spec = write_u8_quad(ntr, nte, h, w, 7);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(tr->n == ntr && te->n == nte);
    cr_assert(tr->c == 1 && tr->h == h && tr->w == w);
    cr_assert_eq(tr->n_classes, 7);
    cr_assert_eq(te->n_classes, 7);
    /* reference statistics of the train split's x/255 */
    double s = 0, ss = 0;
    int cnt = ntr * h * w;
    for (int i = 0; i < cnt; i++) s += ((i * 7919) % 256) / 255.0;
    double mu = s / cnt;
    for (int i = 0; i < cnt; i++) { double e = ((i * 7919) % 256) / 255.0 - mu; ss += e * e; }
    double sd = sqrt(ss / cnt);
    cr_assert_float_eq(tr->mean[0], mu, 1e-6);
    cr_assert_float_eq(tr->std[0], sd, 1e-6);
    cr_assert_eq(te->mean[0], tr->mean[0]);
    cr_assert_eq(te->std[0], tr->std[0]);
    for (int i = 0; i < cnt; i++)
        cr_assert_float_eq(tr->x[i], (((i * 7919) % 256) / 255.0 - mu) / sd, 1e-5);
    for (int i = 0; i < nte * h * w; i++)
        cr_assert_float_eq(te->x[i], ((((i + cnt) * 7919) % 256) / 255.0 - mu) / sd, 1e-5, "test uses train stats");
    for (int i = 0; i < ntr; i++) cr_assert_eq(tr->y[i], i % 7);
    for (int i = 0; i < nte; i++) cr_assert_eq(te->y[i], (ntr + i) % 7);
    /* the normalised train split has mean 0, std 1 */
    double m2 = 0;
    for (int i = 0; i < cnt; i++) m2 += tr->x[i];
    cr_assert_float_eq(m2 / cnt, 0.0, 1e-5);
    rf_dataset head = rf_dataset_head(tr, 5);
    cr_assert_eq(head.n, 5);
    cr_assert_eq(head.x, tr->x);
    cr_assert_eq(rf_dataset_head(tr, 1000).n, ntr);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    rf_dataset_free(NULL);
}

Test(dataset, float_nchw_per_channel_stats_and_int32_labels) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int ntr = 6, nte = 3, C = 3, H = 2, W = 2, D = C * H * W;
    float x[(6 + 3) * 12];
    int32_t y[9];
    rf_rng r; rf_rng_init(&r, 5, 0);
    for (int i = 0; i < (ntr + nte) * D; i++) {
        int ch = (i % D) / (H * W);
        x[i] = (float)(ch * 10) + (float)ch * rf_rng_uniform(&r);   /* channel 0 is constant */
    }
    for (int i = 0; i < 9; i++) y[i] = (i * 5) % 4;
    int64_t s1[4] = {ntr, C, H, W}, s2[4] = {nte, C, H, W}, l1[1] = {ntr}, l2[1] = {nte};
    save("a.npy", RF_F32, 4, s1, x);
    save("b.npy", RF_I32, 1, l1, y);
    save("c.npy", RF_F32, 4, s2, x + ntr * D);
    save("d.npy", RF_I32, 1, l2, y + ntr);
    char spec[1200];
    snprintf(spec, sizeof spec, "%s/a.npy,%s/b.npy,%s/c.npy,%s/d.npy", tmpdir, tmpdir, tmpdir, tmpdir);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(tr->c == C && tr->h == H && tr->w == W);
    cr_assert_eq(tr->n_classes, 4);
    for (int ch = 0; ch < C; ch++) {
        double s = 0, ss = 0;
        for (int i = 0; i < ntr; i++) for (int j = 0; j < H * W; j++) s += x[i * D + ch * H * W + j];
        double mu = s / (ntr * H * W);
        for (int i = 0; i < ntr; i++) for (int j = 0; j < H * W; j++) { double e = x[i * D + ch * H * W + j] - mu; ss += e * e; }
        double sd = sqrt(ss / (ntr * H * W));
        cr_assert_float_eq(tr->mean[ch], mu, 1e-5, "channel %d", ch);
        if (ch == 0) cr_assert_eq(tr->std[ch], 1.0f, "a constant channel is only centred");
        else cr_assert_float_eq(tr->std[ch], sd, 1e-5, "channel %d", ch);
        for (int i = 0; i < nte; i++)
            for (int j = 0; j < H * W; j++)
                cr_assert_float_eq(te->x[i * D + ch * H * W + j], (x[(ntr + i) * D + ch * H * W + j] - mu) / (ch ? sd : 1.0), 1e-4);
    }
    rf_dataset_free(tr);
    rf_dataset_free(te);
}

Test(dataset, flat_images_with_uint8_labels_and_json_descriptor) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float x[10 * 6];
    uint8_t y[10];
    for (int i = 0; i < 60; i++) x[i] = (float)(i % 13) * 0.1f;
    for (int i = 0; i < 10; i++) y[i] = (uint8_t)(i % 3);
    int64_t s1[2] = {7, 6}, s2[2] = {3, 6}, l1[1] = {7}, l2[1] = {3};
    save("fx.npy", RF_F32, 2, s1, x);
    save("fy.npy", RF_U8, 1, l1, y);
    save("gx.npy", RF_F32, 2, s2, x + 42);
    save("gy.npy", RF_U8, 1, l2, y + 7);
    const char *js = "{\"train_x\": \"fx.npy\", \"train_y\": \"fy.npy\", \"test_x\": \"gx.npy\", \"test_y\": \"gy.npy\"}";
    write_bytes(tpath("desc.json"), js, strlen(js));
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, tpath("desc.json"), &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(tr->n == 7 && te->n == 3 && tr->c == 1 && tr->h == 1 && tr->w == 6);
    cr_assert_eq(tr->n_classes, 3);
    for (int i = 0; i < 3; i++) cr_assert_eq(te->y[i], (7 + i) % 3);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    /* the descriptor must name all four arrays */
    const char *bad = "{\"train_x\": \"fx.npy\", \"train_y\": \"fy.npy\", \"test_x\": \"gx.npy\"}";
    write_bytes(tpath("bad.json"), bad, strlen(bad));
    cr_assert_eq(rf_data_load(&ctx, tpath("bad.json"), &tr, &te), RF_ERR_FORMAT);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "test_y"));
    write_bytes(tpath("junk.json"), "[1,", 3);
    cr_assert_eq(rf_data_load(&ctx, tpath("junk.json"), &tr, &te), RF_ERR_FORMAT);
    const char *missing = "{\"train_x\": \"fx.npy\", \"train_y\": \"fy.npy\", \"test_x\": \"gx.npy\", \"test_y\": \"nope.npy\"}";
    write_bytes(tpath("missing.json"), missing, strlen(missing));
    cr_assert_eq(rf_data_load(&ctx, tpath("missing.json"), &tr, &te), RF_ERR_NOTFOUND);
    cr_assert_null(tr);
    cr_assert_null(te);
}

Test(dataset, rejects_bad_labels_counts_shapes_and_dtypes) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *spec = write_u8_quad(8, 4, 3, 3, 4);
    char buf[1400];
    rf_dataset *tr = NULL, *te = NULL;
    int64_t l4[1] = {4}, l8[1] = {8}, l5[1] = {5};
    /* label out of range: negative, and >= RF_DATA_MAX_CLASSES */
    int64_t neg[4] = {0, 1, -1, 2};
    save("tey.npy", RF_I64, 1, l4, neg);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_DATA);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "tey.npy"), "%s", rf_ctx_error(&ctx));
    int64_t huge[4] = {0, 1, RF_DATA_MAX_CLASSES, 2};
    save("tey.npy", RF_I64, 1, l4, huge);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_DATA);
    /* more labels than images */
    int64_t five[5] = {0, 1, 2, 3, 0};
    save("tey.npy", RF_I64, 1, l5, five);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_SHAPE);
    int64_t ok4[4] = {0, 1, 2, 3};
    save("tey.npy", RF_I64, 1, l4, ok4);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_OK);
    rf_dataset_free(tr); rf_dataset_free(te);
    /* labels of an unsupported dtype (float) */
    float fl[8] = {0};
    save("try.npy", RF_F32, 1, l8, fl);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_DATA);
    int64_t y8[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    save("try.npy", RF_I64, 1, l8, y8);
    /* test samples of another shape */
    uint8_t img[4 * 16] = {0};
    int64_t s44[3] = {4, 4, 4};
    save("tex.npy", RF_U8, 3, s44, img);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_SHAPE);
    /* images of an unsupported dtype */
    int32_t imi[4 * 9] = {0};
    int64_t s33[3] = {4, 3, 3};
    save("tex.npy", RF_I32, 3, s33, imi);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_DATA);
    /* non-finite float pixels */
    float fx[4 * 9] = {0};
    fx[5] = NAN;
    save("tex.npy", RF_F32, 3, s33, fx);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_DATA);
    /* 1-D "images" */
    save("tex.npy", RF_F32, 1, l4, fx);
    cr_assert_eq(rf_data_load(&ctx, spec, &tr, &te), RF_ERR_SHAPE);
    /* wrong number of paths */
    snprintf(buf, sizeof buf, "%s/trx.npy,%s/try.npy,%s/tex.npy", tmpdir, tmpdir, tmpdir);
    cr_assert_eq(rf_data_load(&ctx, buf, &tr, &te), RF_ERR_INVALID);
    snprintf(buf, sizeof buf, "%s,%s/trx.npy", spec, tmpdir);
    cr_assert_eq(rf_data_load(&ctx, buf, &tr, &te), RF_ERR_INVALID);
    cr_assert_eq(rf_data_load(&ctx, "a.npy,,c.npy,d.npy", &tr, &te), RF_ERR_INVALID);
    cr_assert_eq(rf_data_load(&ctx, "no-such-dataset", &tr, &te), RF_ERR_NOTFOUND);
    cr_assert_eq(rf_data_load(&ctx, "", &tr, &te), RF_ERR_INVALID);
    cr_assert_null(tr);
    cr_assert_null(te);
}

Test(dataset, load_survives_every_allocation_failure) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *spec = write_u8_quad(8, 4, 3, 3, 4);
    long live = rf_alloc_live();
    int succeeded = 0;
    for (long k = 0; k < 200 && !succeeded; k++) {
        rf_dataset *tr = NULL, *te = NULL;
        rf_alloc_fail_after(k);
        rf_status s = rf_data_load(&ctx, spec, &tr, &te);
        rf_alloc_fail_after(-1);
        if (s == RF_OK) { succeeded = 1; rf_dataset_free(tr); rf_dataset_free(te); }
        else {
            cr_assert_eq(s, RF_ERR_NOMEM, "k=%ld: %s", k, rf_ctx_error(&ctx));
            cr_assert(tr == NULL && te == NULL);
        }
        cr_assert_eq(rf_alloc_live(), live, "k=%ld leaked", k);
    }
    cr_assert(succeeded);
}

Test(dataset, synthetic_is_deterministic_and_prefix_stable) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *a = NULL, *at = NULL, *b = NULL, *bt = NULL, *c = NULL, *ct = NULL;
    cr_assert_eq(rf_data_load(&ctx, "synthetic", &a, &at), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_data_load(&ctx, "synthetic:2000:1", &b, &bt), RF_OK);
    cr_assert(a->n == 2000 && at->n == 500);
    cr_assert(a->c == 1 && a->h == 28 && a->w == 28 && a->n_classes == 10);
    cr_assert_arr_eq(a->x, b->x, 2000 * 784 * sizeof(float), "two loads are identical");
    cr_assert_arr_eq(a->y, b->y, 2000 * sizeof(int32_t));
    cr_assert_arr_eq(at->x, bt->x, 500 * 784 * sizeof(float));
    int counts[10] = {0};
    for (int i = 0; i < 2000; i++) counts[a->y[i]]++;
    for (int k = 0; k < 10; k++) cr_assert(counts[k] > 120 && counts[k] < 280, "class %d has %d samples", k, counts[k]);
    /* another seed gives other data; a smaller N is a prefix (raw values) */
    cr_assert_eq(rf_data_load(&ctx, "synthetic:400:2", &c, &ct), RF_OK);
    cr_assert_eq(ct->n, 100);
    cr_assert_neq(memcmp(c->x, a->x, 400 * 784 * sizeof(float)), 0);
    rf_dataset_free(c); rf_dataset_free(ct);
    rf_dataset *p = NULL, *pt = NULL, *q = NULL, *qt = NULL;
    cr_assert_eq(rf_data_synthetic(&ctx, "s", 40, 10, 9, &p, &pt), RF_OK);
    cr_assert_eq(rf_data_synthetic(&ctx, "s", 80, 20, 9, &q, &qt), RF_OK);
    cr_assert_arr_eq(p->x, q->x, 40 * 784 * sizeof(float));
    cr_assert_arr_eq(pt->y, qt->y, 10 * sizeof(int32_t));
    for (int i = 0; i < 40 * 784; i++) cr_assert(p->x[i] >= 0.0f && p->x[i] <= 1.0f);
    rf_dataset_free(p); rf_dataset_free(pt); rf_dataset_free(q); rf_dataset_free(qt);
    const char *bad[] = {"synthetic:", "synthetic:abc", "synthetic:10x", "synthetic:4", "synthetic:100:",
                         "synthetic:100:-1", "synthetic:100:1:2", "synthetics"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rf_status s = rf_data_load(&ctx, bad[i], &c, &ct);
        cr_assert_neq(s, RF_OK, "%s", bad[i]);
    }
    rf_dataset_free(a); rf_dataset_free(at); rf_dataset_free(b); rf_dataset_free(bt);
}

/* Softmax regression by plain SGD: the synthetic set must be learnable from
 * its pixels (well above 10% chance) yet not trivially separable by a linear
 * model (a small MLP reaches about 85-95%, measured with bench code). */
Test(dataset, synthetic_is_learnable_but_not_trivial) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, "synthetic", &tr, &te), RF_OK);
    enum { D = 784, K = 10 };
    float *w = calloc(D * K + K, sizeof(float)), *b = w + D * K;
    for (int ep = 0; ep < 3; ep++) {
        rf_batcher bt;
        cr_assert_eq(rf_batcher_init(&ctx, &bt, tr, 1, 3, ep, 1, 0), RF_OK);
        float x[D], p[K];
        int32_t y;
        while (rf_batcher_next(&bt, x, &y, NULL) == 1) {
            float mx = -1e30f, z = 0;
            for (int k = 0; k < K; k++) {
                float a = b[k];
                for (int i = 0; i < D; i++) a += w[i * K + k] * x[i];
                p[k] = a; if (a > mx) mx = a;
            }
            for (int k = 0; k < K; k++) { p[k] = expf(p[k] - mx); z += p[k]; }
            for (int k = 0; k < K; k++) {
                float g = 0.01f * (p[k] / z - (k == y));
                b[k] -= g;
                for (int i = 0; i < D; i++) w[i * K + k] -= g * x[i];
            }
        }
        rf_batcher_free(&bt);
    }
    int ok = 0;
    for (int64_t s = 0; s < te->n; s++) {
        int best = 0; float bv = -1e30f;
        for (int k = 0; k < K; k++) {
            float a = b[k];
            for (int i = 0; i < D; i++) a += w[i * K + k] * te->x[s * D + i];
            if (a > bv) { bv = a; best = k; }
        }
        ok += best == te->y[s];
    }
    double acc = (double)ok / (double)te->n;
    cr_log_info("synthetic: linear softmax test accuracy %.3f", acc);
    cr_assert(acc > 0.6, "learnable: %.3f", acc);
    cr_assert(acc < 0.985, "not trivially separable: %.3f", acc);
    free(w);
    rf_dataset_free(tr); rf_dataset_free(te);
}

Test(dataset, mnist_missing_cache_gives_a_hint) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    setenv("RAFFLE_CACHE", tmpdir, 1);
    char buf[512];
    cr_assert_str_eq(rf_data_cache_dir(buf, sizeof buf), tmpdir);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, "mnist", &tr, &te), RF_ERR_NOTFOUND);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "fetch-mnist.sh"), "%s", rf_ctx_error(&ctx));
    unsetenv("RAFFLE_CACHE");
    setenv("HOME", "/home/someone", 1);
    cr_assert_str_eq(rf_data_cache_dir(buf, sizeof buf), "/home/someone/.cache/raffle");
}

Test(dataset, mnist_from_cache_when_fetched) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    char dir[512], f[600];
    rf_data_cache_dir(dir, sizeof dir);
    snprintf(f, sizeof f, "%s/mnist/test_y.npy", dir);
    if (access(f, R_OK) != 0) cr_skip_test("%s absent: run scripts/fetch-mnist.sh to test the mnist loader", f);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, "mnist", &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(tr->n == 8000 && te->n == 2000);
    cr_assert(tr->c == 1 && tr->h == 28 && tr->w == 28 && tr->n_classes == 10);
    /* MNIST's well-known pixel statistics: mean 0.1307, std 0.3081 */
    cr_assert_float_eq(tr->mean[0], 0.1307f, 0.005f);
    cr_assert_float_eq(tr->std[0], 0.3081f, 0.005f);
    int counts[10] = {0};
    for (int i = 0; i < 2000; i++) counts[te->y[i]]++;
    for (int k = 0; k < 10; k++) cr_assert(counts[k] > 120, "digit %d: %d test samples", k, counts[k]);
    rf_dataset_free(tr); rf_dataset_free(te);
}

Test(dataset, fashion_mnist_directory_override_with_small_idx_files) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* 5 train / 2 test images of 3x2 pixels: gzipped and plain files mixed */
    unsigned char img[7 * 6], lab[7] = {0, 1, 2, 3, 9, 4, 1}, buf[128];
    for (int i = 0; i < 42; i++) img[i] = (unsigned char)(i * 6);
    uint32_t d1[3] = {5, 3, 2}, d2[3] = {2, 3, 2}, l1[1] = {5}, l2[1] = {2};
    size_t n = build_idx(buf, 0x08, 3, d1, img, 30);
    write_gz(tpath("train-images-idx3-ubyte.gz"), buf, n, "wb");
    n = build_idx(buf, 0x08, 1, l1, lab, 5);
    write_bytes(tpath("train-labels-idx1-ubyte"), buf, n);
    n = build_idx(buf, 0x08, 3, d2, img + 30, 12);
    write_gz(tpath("t10k-images-idx3-ubyte.gz"), buf, n, "wb");
    n = build_idx(buf, 0x08, 1, l2, lab + 5, 2);
    write_gz(tpath("t10k-labels-idx1-ubyte.gz"), buf, n, "wb");
    setenv("RAFFLE_FASHION_MNIST_DIR", tmpdir, 1);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, "fashion-mnist", &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(tr->n == 5 && te->n == 2 && tr->h == 3 && tr->w == 2 && tr->n_classes == 10);
    cr_assert_eq(te->y[1], 1);
    rf_dataset_free(tr); rf_dataset_free(te);
    /* a missing file names itself and the Debian package */
    unlink(tpath("t10k-labels-idx1-ubyte.gz"));
    cr_assert_eq(rf_data_load(&ctx, "fashion-mnist", &tr, &te), RF_ERR_NOTFOUND);
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "t10k-labels-idx1-ubyte"));
    cr_assert_not_null(strstr(rf_ctx_error(&ctx), "dataset-fashion-mnist"));
    /* a label file of the wrong length is a count mismatch */
    n = build_idx(buf, 0x08, 1, l1, lab, 5);
    write_gz(tpath("t10k-labels-idx1-ubyte.gz"), buf, n, "wb");
    cr_assert_eq(rf_data_load(&ctx, "fashion-mnist", &tr, &te), RF_ERR_SHAPE);
}

Test(dataset, fashion_mnist_debian_package, .timeout = 60) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("%s absent: apt-get install dataset-fashion-mnist to test the fashion-mnist loader", dir);
    unsetenv("RAFFLE_FASHION_MNIST_DIR");
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, "fashion-mnist", &tr, &te), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(tr->n == 60000 && te->n == 10000);
    cr_assert(tr->c == 1 && tr->h == 28 && tr->w == 28 && tr->n_classes == 10);
    /* Fashion-MNIST's published pixel statistics: mean 0.2860, std 0.3530 */
    cr_assert_float_eq(tr->mean[0], 0.2860f, 0.001f);
    cr_assert_float_eq(tr->std[0], 0.3530f, 0.001f);
    /* the official split is balanced: 6,000 / 1,000 per class */
    int ctr[10] = {0}, cte[10] = {0};
    for (int i = 0; i < 60000; i++) ctr[tr->y[i]]++;
    for (int i = 0; i < 10000; i++) cte[te->y[i]]++;
    for (int k = 0; k < 10; k++) { cr_assert_eq(ctr[k], 6000); cr_assert_eq(cte[k], 1000); }
    rf_dataset_free(tr); rf_dataset_free(te);
}

/* ---- batcher ------------------------------------------------------------------ */

static rf_dataset *tiny(int64_t n) {
    rf_dataset *d = calloc(1, sizeof *d);
    d->n = n; d->c = 1; d->h = 1; d->w = 3; d->n_classes = 5;
    d->x = malloc((size_t)n * 3 * sizeof(float));
    d->y = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < 3; j++) d->x[i * 3 + j] = (float)(i * 10 + j);
        d->y[i] = (int32_t)(i % 5);
    }
    return d;
}
static void tiny_free(rf_dataset *d) { free(d->x); free(d->y); free(d); }

/* Runs one epoch; fills order[] with sample indices; returns the count seen. */
static int64_t epoch_order(const rf_dataset *d, int batch, uint64_t seed, int64_t epoch, int shuffle, int drop, int64_t *order) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_batcher b;
    cr_assert_eq(rf_batcher_init(&ctx, &b, d, batch, seed, epoch, shuffle, drop), RF_OK);
    float x[64 * 3];
    int32_t y[64];
    int64_t idx[64], seen = 0;
    int got;
    while ((got = rf_batcher_next(&b, x, y, idx)) > 0) {
        cr_assert(got <= batch);
        if (drop) cr_assert_eq(got, batch);
        for (int i = 0; i < got; i++) {
            cr_assert_eq(y[i], d->y[idx[i]]);
            for (int j = 0; j < 3; j++) cr_assert_eq(x[i * 3 + j], d->x[idx[i] * 3 + j]);
            order[seen++] = idx[i];
        }
    }
    cr_assert_eq(rf_batcher_next(&b, x, y, idx), 0, "stays at the end");
    rf_batcher_free(&b);
    return seen;
}

Test(batcher, order_is_a_function_of_seed_and_epoch) {
    rf_dataset *d = tiny(103);
    int64_t a[103], b[103], c[103], e[103];
    cr_assert_eq(epoch_order(d, 16, 42, 3, 1, 0, a), 103);
    cr_assert_eq(epoch_order(d, 7, 42, 3, 1, 0, b), 103);
    cr_assert_arr_eq(a, b, sizeof a, "same seed and epoch: same order, whatever the batch size");
    cr_assert_eq(epoch_order(d, 16, 42, 4, 1, 0, c), 103);
    cr_assert_neq(memcmp(a, c, sizeof a), 0, "another epoch: another order");
    cr_assert_eq(epoch_order(d, 16, 43, 3, 1, 0, e), 103);
    cr_assert_neq(memcmp(a, e, sizeof a), 0, "another seed: another order");
    /* every sample exactly once */
    int seen[103] = {0};
    for (int i = 0; i < 103; i++) seen[a[i]]++;
    for (int i = 0; i < 103; i++) cr_assert_eq(seen[i], 1, "sample %d", i);
    int moved = 0;
    for (int i = 0; i < 103; i++) moved += a[i] != i;
    cr_assert(moved > 80, "shuffled (%d moved)", moved);
    tiny_free(d);
}

Test(batcher, file_order_drop_last_and_bad_batch) {
    rf_dataset *d = tiny(10);
    int64_t o[10];
    cr_assert_eq(epoch_order(d, 3, 1, 0, 0, 0, o), 10);
    for (int i = 0; i < 10; i++) cr_assert_eq(o[i], i);
    cr_assert_eq(epoch_order(d, 3, 1, 0, 0, 1, o), 9, "drop_last drops the short batch");
    cr_assert_eq(epoch_order(d, 4, 1, 5, 1, 1, o), 8);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_batcher b;
    cr_assert_eq(rf_batcher_init(&ctx, &b, d, 0, 1, 0, 1, 0), RF_ERR_INVALID);
    cr_assert_eq(rf_batcher_init(&ctx, &b, d, 64, 1, 0, 1, 0), RF_OK);
    float x[64 * 3];
    cr_assert_eq(rf_batcher_next(&b, x, NULL, NULL), 10, "labels and indices are optional");
    rf_batcher_free(&b);
    rf_batcher_free(&b);   /* idempotent */
    tiny_free(d);
}
