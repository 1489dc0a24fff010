/* Checkpoint container: round trips of every storage kind and codec, every
 * rejection path of the reader, every single-byte flip and truncation of a
 * small checkpoint, allocation-failure injection, the entropy coders, and
 * the size target of issue 6 (90%-sparse int8 LeNet-300-100-sized weights
 * within 10% of the empirical entropy bound, >= 25x smaller than dense). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raffle/ckpt.h"
#include "io/entropy.h"

/* ---- helpers -------------------------------------------------------------- */
static rf_ckpt *new_ckpt(void) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_new(&ctx, &c), RF_OK);
    return c;
}

static unsigned char *encode(rf_ckpt *c, size_t *n) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char *b;
    rf_status s = rf_ckpt_encode(&ctx, c, &b, n);
    cr_assert_eq(s, RF_OK, "encode: %s", rf_ctx_error(&ctx));
    return b;
}

static void assert_same_tensor(const rf_ckpt_tensor *a, const rf_ckpt_tensor *b) {
    cr_assert_str_eq(a->name, b->name);
    cr_assert_eq(a->dtype, b->dtype, "%s dtype", a->name);
    cr_assert_eq(a->storage, b->storage, "%s storage", a->name);
    cr_assert_eq(a->ndim, b->ndim);
    for (int d = 0; d < a->ndim; d++) cr_assert_eq(a->shape[d], b->shape[d]);
    cr_assert_eq(a->nnz, b->nnz, "%s nnz %llu vs %llu", a->name, (unsigned long long)a->nnz, (unsigned long long)b->nnz);
    size_t n = (size_t)rf_ckpt_tensor_numel(a);
    cr_assert_eq(memcmp(a->data, b->data, n * rf_dtype_size(a->dtype)), 0, "%s data differs", a->name);
    cr_assert_eq(!a->mask, !b->mask);
    if (a->mask) cr_assert_eq(memcmp(a->mask, b->mask, n), 0, "%s mask differs", a->name);
    cr_assert_eq(a->bits, b->bits, "%s bits", a->name);
    cr_assert_eq(a->group_size, b->group_size, "%s group size", a->name);
    cr_assert_eq(a->nm_n, b->nm_n); cr_assert_eq(a->nm_m, b->nm_m);
    uint64_t ns = rf_ckpt_tensor_n_scales(a);
    cr_assert_eq(ns, rf_ckpt_tensor_n_scales(b));
    cr_assert_eq(!a->scales, !b->scales);
    if (a->scales) cr_assert_eq(memcmp(a->scales, b->scales, (size_t)ns * 4), 0);
    cr_assert_eq(!a->zero_points, !b->zero_points);
    if (a->zero_points) cr_assert_eq(memcmp(a->zero_points, b->zero_points, (size_t)ns * 4), 0);
    cr_assert_eq(!a->codebook, !b->codebook);
    if (a->codebook) cr_assert_eq(memcmp(a->codebook, b->codebook, (size_t)ns * 4), 0, "%s codebook differs", a->name);
}

static rf_ckpt *roundtrip(rf_ckpt *c) {
    size_t n;
    unsigned char *b = encode(c, &n);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *d;
    rf_status s = rf_ckpt_decode(&ctx, b, n, &d);
    cr_assert_eq(s, RF_OK, "decode: %s", rf_ctx_error(&ctx));
    cr_assert_eq(d->n, c->n);
    cr_assert_str_eq(d->meta_json, c->meta_json);
    cr_assert_eq(d->file_bytes, n);
    for (int i = 0; i < c->n; i++) {
        assert_same_tensor(&c->t[i], &d->t[i]);
        cr_assert_eq(c->t[i].disk_bytes, d->t[i].disk_bytes);
        cr_assert_str_eq(c->t[i].coding, d->t[i].coding);
    }
    rf_free(b);
    return d;
}

/* Small checkpoint with every storage kind (about 1.5 KB): the corpus for
 * the flip/truncate loops. */
static rf_ckpt *small_ckpt(void) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    cr_assert_eq(rf_ckpt_set_meta(&ctx, c, "{\"spec\":{\"input\":[1,4,4]},\"seed\":7}"), RF_OK);
    rf_rng r; rf_rng_init(&r, 1, 0);
    float w[12 * 16]; uint8_t m[12 * 16]; int8_t q[12 * 16]; float sc[12];
    for (int i = 0; i < 12 * 16; i++) {
        w[i] = rf_rng_normal(&r);
        m[i] = rf_rng_uniform(&r) < 0.3f;
        q[i] = (int8_t)(m[i] ? (int)(rf_rng_below(&r, 255)) - 127 : 0);
    }
    for (int i = 0; i < 12; i++) sc[i] = 0.01f * (float)(i + 1);
    int64_t s2[2] = {12, 16}, s1[1] = {12};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "fc1.weight", RF_F32, 2, s2, RF_STORE_SPARSE, w, m, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "fc1.bias", RF_F32, 1, s1, RF_STORE_DENSE, w, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "fc2.weight", RF_I8, 2, s2, RF_STORE_SPARSE_INT8, q, m, sc), RF_OK);
    int64_t s3[2] = {4, 8};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "fc3.weight", RF_I8, 2, s3, RF_STORE_INT8, q, NULL, sc), RF_OK);
    return c;
}

/* Test-side reader of the directory (docs/checkpoint-format.md), used to
 * craft files with consistent checksums but lying fields. */
typedef struct ent { size_t at, off_at, size_at, raw_at, nnz_at, crc_at, dtype_at; uint64_t off, size; } ent;
static int dir_entries(const unsigned char *b, size_t n, ent *e, int max) {
    if (n < 40) return 0;
    uint64_t meta_len = rf_get_u32(b + 24), nt = rf_get_u32(b + 28);
    size_t p = 36 + (size_t)meta_len;
    int k = 0;
    for (uint64_t i = 0; i < nt && k < max && p + 2 <= n && p >= 36; i++, k++) {
        unsigned nl = b[p] | (b[p + 1] << 8);
        e[k].at = p;
        p += 2 + nl;
        if (p + 4 > n) break;
        e[k].dtype_at = p;
        unsigned nd = b[p + 2];
        p += 4 + 8 * nd;
        if (p + 36 > n) break;
        e[k].off_at = p; e[k].size_at = p + 8; e[k].raw_at = p + 16; e[k].nnz_at = p + 24; e[k].crc_at = p + 32;
        e[k].off = rf_get_u64(b + p); e[k].size = rf_get_u64(b + p + 8);
        p += 36;
    }
    return k;
}
/* Recomputes per-tensor CRCs (where the entry's range is sane) and the trailer. */
static void fix_crcs(unsigned char *b, size_t n) {
    ent e[16];
    int k = dir_entries(b, n, e, 16);
    for (int i = 0; i < k; i++) {
        uint64_t off = rf_get_u64(b + e[i].off_at), size = rf_get_u64(b + e[i].size_at);
        if (e[i].crc_at + 4 <= n - 4 && off <= n && size <= n - off) rf_put_u32(b + e[i].crc_at, rf_crc32c(0, b + off, (size_t)size));
    }
    rf_put_u32(b + n - 4, rf_crc32c(0, b, n - 4));
}

static rf_status decode_status(const unsigned char *b, size_t n, char *msg, size_t msglen) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *d = NULL;
    rf_status s = rf_ckpt_decode(&ctx, b, n, &d);
    if (msg) snprintf(msg, msglen, "%s", rf_ctx_error(&ctx));
    rf_ckpt_free(d);
    return s;
}

/* ---- round trips ---------------------------------------------------------- */
Test(ckpt, roundtrip_every_kind_and_dtype) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = small_ckpt();
    int32_t i32[6] = {1, -2, 0, 4, 5, -6};
    int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    uint8_t u8[5] = {0, 255, 3, 0, 9};
    float scalar = -3.5f;
    int8_t q[6] = {1, -1, 0, 127, -128, 5};
    float sc[2] = {0.5f, 0.25f};
    int32_t zp[2] = {3, -4};
    int64_t s6[2] = {2, 3}, s3[1] = {3}, s5[1] = {5}, s0[2] = {0, 7};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "i32", RF_I32, 2, s6, RF_STORE_DENSE, i32, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "i64", RF_I64, 1, s3, RF_STORE_DENSE, i64, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "u8.sparse", RF_U8, 1, s5, RF_STORE_SPARSE, u8, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "scalar", RF_F32, 0, NULL, RF_STORE_DENSE, &scalar, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "empty", RF_F32, 2, s0, RF_STORE_SPARSE, NULL, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "q.zp", RF_I8, 2, s6, RF_STORE_INT8, q, NULL, sc), RF_OK);
    c->t[c->n - 1].zero_points = rf_malloc(sizeof zp);
    memcpy(c->t[c->n - 1].zero_points, zp, sizeof zp);
    cr_assert_eq(rf_ckpt_find(c, "u8.sparse")->nnz, 3);
    cr_assert_null(rf_ckpt_find(c, "nope"));
    rf_ckpt *d = roundtrip(c);
    /* dequantization uses per-row scale and zero point */
    float *f;
    cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, rf_ckpt_find(d, "q.zp"), &f), RF_OK);
    cr_assert_float_eq(f[0], (1 - 3) * 0.5f, 0);
    cr_assert_float_eq(f[4], (-128 + 4) * 0.25f, 0);
    rf_free(f);
    cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, rf_ckpt_find(d, "i64"), &f), RF_OK);
    cr_assert_float_eq(f[2], (float)INT64_MAX, 1e12);
    rf_free(f);
    rf_ckpt_free(c); rf_ckpt_free(d);
    cr_assert_eq(rf_alloc_live(), 0);
}

Test(ckpt, sparse_keeps_explicit_mask_including_kept_zeros) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    float w[6] = {0.0f, 2.0f, 3.0f, 0.0f, -1.0f, 7.0f};
    uint8_t m[6] = {1, 1, 0, 0, 1, 0};   /* a kept 0.0 and pruned non-zeros */
    int64_t s[1] = {6};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "w", RF_F32, 1, s, RF_STORE_SPARSE, w, m, NULL), RF_OK);
    rf_ckpt *d = roundtrip(c);
    const rf_ckpt_tensor *t = rf_ckpt_find(d, "w");
    cr_assert_eq(t->nnz, 3);
    cr_assert_eq(memcmp(t->mask, m, 6), 0);
    const float *v = t->data;
    cr_assert(v[0] == 0.0f && v[1] == 2.0f && v[2] == 0.0f && v[4] == -1.0f && v[5] == 0.0f);
    cr_assert_float_eq(rf_ckpt_tensor_sparsity(t), 0.5, 1e-12);
    rf_ckpt_free(c); rf_ckpt_free(d);
}

/* Each mask codec wins on the pattern it is built for, and all decode. */
Test(ckpt, mask_codecs_each_chosen_and_decoded) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 5, 0);
    enum { N = 40000 };
    static float w[N]; static uint8_t m[4][N];
    for (int i = 0; i < N; i++) {
        w[i] = 1.0f + rf_rng_uniform(&r);
        m[0][i] = rf_rng_uniform(&r) < 0.5f;      /* incompressible: bitmap */
        m[1][i] = i == 17 || i == 20000 || i == 39999; /* 3 positions: gaps */
        m[2][i] = rf_rng_uniform(&r) < 0.1f;      /* i.i.d. sparse: arith0 */
        /* runs (a two-state Markov chain, mean run 20): a context helps */
        m[3][i] = i ? (rf_rng_uniform(&r) < 0.05f ? !m[3][i - 1] : m[3][i - 1]) : 1;
    }
    static const char *want[4] = {"mask=raw", "mask=gaps", "mask=arith0", "mask=arith3"};
    rf_ckpt *c = new_ckpt();
    int64_t s[1] = {N};
    for (int k = 0; k < 4; k++) {
        char name[8]; snprintf(name, sizeof name, "m%d", k);
        cr_assert_eq(rf_ckpt_add(&ctx, c, name, RF_F32, 1, s, RF_STORE_SPARSE, w, m[k], NULL), RF_OK);
    }
    rf_ckpt *d = roundtrip(c);
    for (int k = 0; k < 4; k++)
        cr_assert(strncmp(d->t[k].coding, want[k], strlen(want[k])) == 0, "m%d coded as '%s', want %s", k, d->t[k].coding, want[k]);
    rf_ckpt_free(c); rf_ckpt_free(d);
}

Test(ckpt, write_and_read_file) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    char dir[] = "/tmp/rf_ckpt_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256]; snprintf(path, sizeof path, "%s/m.rckpt", dir);
    rf_ckpt *c = small_ckpt(), *d;
    cr_assert_eq(rf_ckpt_write(&ctx, c, path), RF_OK);
    cr_assert_eq(rf_ckpt_read(&ctx, path, &d), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int i = 0; i < c->n; i++) assert_same_tensor(&c->t[i], &d->t[i]);
    cr_assert_eq(d->version, 1);
    rf_ckpt_free(d);
    char missing[300]; snprintf(missing, sizeof missing, "%s/none.rckpt", dir);
    cr_assert_eq(rf_ckpt_read(&ctx, missing, &d), RF_ERR_NOTFOUND);
    cr_assert_null(d);
    unlink(path); rmdir(dir);
    rf_ckpt_free(c);
}

Test(ckpt, add_rejects_bad_arguments) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    float w[4] = {1, 2, 3, 4}, sc[2] = {1, 1};
    int8_t q[4] = {1, 2, 3, 4};
    int64_t s[2] = {2, 2}, neg[1] = {-1};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "a", RF_F32, 2, s, RF_STORE_DENSE, w, NULL, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "a", RF_F32, 2, s, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "", RF_F32, 2, s, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_INVALID);
    char longname[200]; memset(longname, 'x', 199); longname[199] = 0;
    cr_assert_eq(rf_ckpt_add(&ctx, c, longname, RF_F32, 2, s, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", RF_F32, 2, s, RF_STORE_INT8, w, NULL, sc), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", RF_I8, 2, s, RF_STORE_INT8, q, NULL, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", RF_F32, 1, neg, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", RF_F32, 5, s, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", (rf_dtype)9, 2, s, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", RF_F32, 2, s, (rf_storage)7, w, NULL, NULL), RF_ERR_INVALID);
    int64_t huge[2] = {1ll << 40, 1ll << 10};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "b", RF_F32, 2, huge, RF_STORE_DENSE, w, NULL, NULL), RF_ERR_LIMIT);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, c, "[1,2]"), RF_ERR_INVALID);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, c, "{\"a\":"), RF_ERR_INVALID);
    cr_assert_str_eq(c->meta_json, "{}");
    cr_assert_eq(c->n, 1);
    rf_ckpt_free(c);
    rf_ckpt_free(NULL);
}

/* ---- rejection paths -------------------------------------------------------- */
Test(ckpt, rejects_magic_version_checksum_truncation) {
    rf_ckpt *c = small_ckpt();
    size_t n;
    unsigned char *b = encode(c, &n);
    unsigned char *x = malloc(n + 16);
    char msg[RF_ERR_MAX];

    memcpy(x, b, n); x[1] = 'X';
    cr_assert_eq(decode_status(x, n, msg, sizeof msg), RF_ERR_MAGIC);
    /* text-mode copy: "\r\n" became "\n" */
    memcpy(x, b, 4); memcpy(x + 4, b + 5, n - 5);
    cr_assert_eq(decode_status(x, n - 1, msg, sizeof msg), RF_ERR_MAGIC);
    cr_assert(strstr(msg, "text mode"), "%s", msg);

    memcpy(x, b, n); rf_put_u32(x + 8, 2); fix_crcs(x, n);
    cr_assert_eq(decode_status(x, n, msg, sizeof msg), RF_ERR_VERSION);
    cr_assert_str_eq(msg, "written by a newer raffle (format v2); this build reads format 1");
    memcpy(x, b, n); rf_put_u32(x + 8, 0); fix_crcs(x, n);
    cr_assert_eq(decode_status(x, n, msg, sizeof msg), RF_ERR_FORMAT);

    memcpy(x, b, n); x[n / 2] ^= 0x01;
    cr_assert_eq(decode_status(x, n, msg, sizeof msg), RF_ERR_CHECKSUM);
    memcpy(x, b, n); x[n - 1] ^= 0x80;
    cr_assert_eq(decode_status(x, n, msg, sizeof msg), RF_ERR_CHECKSUM);

    cr_assert_eq(decode_status(b, n - 1, msg, sizeof msg), RF_ERR_TRUNCATED);
    cr_assert_eq(decode_status(b, 20, msg, sizeof msg), RF_ERR_TRUNCATED);
    cr_assert_eq(decode_status(b, 0, msg, sizeof msg), RF_ERR_TRUNCATED);
    memcpy(x, b, n); x[n] = 0;
    cr_assert_eq(decode_status(x, n + 1, msg, sizeof msg), RF_ERR_SIZE);   /* trailing byte */
    free(x); rf_free(b); rf_ckpt_free(c);
}

/* Fields that lie while every checksum is right: the structural checks. */
Test(ckpt, rejects_sizes_that_do_not_add_up) {
    rf_ckpt *c = small_ckpt();
    size_t n;
    unsigned char *b = encode(c, &n);
    unsigned char *x = malloc(n);
    ent e[8];
    char msg[RF_ERR_MAX];
    int k = dir_entries(b, n, e, 8);
    cr_assert_eq(k, 4);
#define MUTATE(stmt, want) do { memcpy(x, b, n); stmt; fix_crcs(x, n); \
        rf_status s_ = decode_status(x, n, msg, sizeof msg); \
        cr_assert_eq(s_, want, "%s: got %s (%s)", #stmt, rf_strerror(s_), msg); \
        cr_assert(msg[0]); } while (0)
    MUTATE(rf_put_u64(x + e[0].raw_at, rf_get_u64(b + e[0].raw_at) + 4), RF_ERR_SIZE);
    MUTATE(rf_put_u64(x + e[0].nnz_at, rf_get_u64(b + e[0].nnz_at) + 1), RF_ERR_SIZE);     /* sparse */
    MUTATE(rf_put_u64(x + e[1].nnz_at, rf_get_u64(b + e[1].nnz_at) - 1), RF_ERR_SIZE);     /* dense */
    MUTATE(rf_put_u64(x + e[1].nnz_at, 1000), RF_ERR_SIZE);                                /* > numel */
    MUTATE(rf_put_u64(x + e[1].off_at, e[1].off - 1), RF_ERR_SIZE);                        /* overlap */
    MUTATE(rf_put_u64(x + e[1].off_at, e[1].off + 1), RF_ERR_SIZE);                        /* gap */
    MUTATE(rf_put_u64(x + e[3].off_at, n + 100), RF_ERR_SIZE);                             /* past EOF */
    MUTATE(rf_put_u64(x + e[3].size_at, e[3].size + 1), RF_ERR_SIZE);
    MUTATE(rf_put_u64(x + e[3].size_at, UINT64_MAX), RF_ERR_SIZE);
    MUTATE(rf_put_u64(x + 16, n - 1), RF_ERR_SIZE);                                        /* file_size */
    MUTATE(rf_put_u32(x + 24, 1u << 30), RF_ERR_SIZE);                                     /* meta_len */
    MUTATE(rf_put_u32(x + 28, 1u << 30), RF_ERR_FORMAT);                                   /* n_tensors */
    MUTATE(rf_put_u32(x + 12, 1), RF_ERR_FORMAT);                                          /* flags */
    MUTATE(x[36] = '[', RF_ERR_FORMAT);                                                    /* metadata */
    MUTATE(x[e[0].dtype_at] = 9, RF_ERR_FORMAT);
    MUTATE(x[e[0].dtype_at + 1] = 9, RF_ERR_FORMAT);                                       /* storage */
    MUTATE(x[e[0].dtype_at + 2] = 5, RF_ERR_FORMAT);                                       /* ndim */
    MUTATE(x[e[0].dtype_at + 1] = RF_STORE_INT8, RF_ERR_FORMAT);                           /* int8 kind on f32 */
    MUTATE(memcpy(x + e[2].at + 2, b + e[0].at + 2, 10), RF_ERR_FORMAT);                   /* duplicate name */
    /* sections inside a payload: fc1.bias is dense, one raw or zstd section */
    size_t sec = (size_t)e[1].off + 1;
    MUTATE(rf_put_u64(x + sec + 12, rf_get_u64(b + sec + 12) + 1), RF_ERR_SIZE);            /* coded size */
    MUTATE(rf_put_u64(x + sec + 4, rf_get_u64(b + sec + 4) + 1), RF_ERR_SIZE);              /* stored size */
    MUTATE(x[sec] = 1, RF_ERR_FORMAT);                                                      /* mask on dense */
    MUTATE(x[sec + 1] = 7, RF_ERR_FORMAT);                                                  /* codec */
    MUTATE(x[sec + 3] = 2, RF_ERR_FORMAT);                                                  /* zstd flag */
    MUTATE(x[(size_t)e[1].off] = 0, RF_ERR_FORMAT);                                         /* no sections */
#undef MUTATE
    /* a per-tensor checksum that disagrees while the file checksum agrees */
    memcpy(x, b, n); x[e[2].crc_at] ^= 1; rf_put_u32(x + n - 4, rf_crc32c(0, x, n - 4));
    cr_assert_eq(decode_status(x, n, msg, sizeof msg), RF_ERR_CHECKSUM);
    cr_assert(strstr(msg, "fc2.weight"), "%s", msg);
    free(x); rf_free(b); rf_ckpt_free(c);
}

/* Every single-byte flip (XOR 0xFF) of the n-byte file b, and every
 * truncation, is rejected with a message (truncations as truncated or, for
 * the first bytes, as a wrong magic). */
static void every_flip_and_truncation_rejected(const unsigned char *b, size_t n) {
    unsigned char *x = malloc(n);
    char msg[RF_ERR_MAX];
    for (size_t i = 0; i < n; i++) {
        memcpy(x, b, n); x[i] ^= 0xFF;
        rf_status s = decode_status(x, n, msg, sizeof msg);
        cr_assert_neq(s, RF_OK, "flip at %zu accepted", i);
        cr_assert(msg[0], "flip at %zu: empty message", i);
    }
    for (size_t len = 0; len < n; len++) {
        rf_status s = decode_status(b, len, msg, sizeof msg);
        cr_assert(s == RF_ERR_TRUNCATED || s == RF_ERR_MAGIC, "truncation at %zu: %s", len, rf_strerror(s));
        cr_assert(msg[0]);
    }
    free(x);
}

/* Issue 2 "Done when": every single-byte flip and every truncation fails with
 * a message. Then the same flips with all checksums repaired, which drives
 * the structural validators and decoders over hostile input (run under ASan
 * by `make asan`): they may accept a flip that only changes a value, but must
 * never crash or leak. */
Test(ckpt, every_flip_and_truncation_fails) {
    rf_ckpt *c = small_ckpt();
    size_t n;
    unsigned char *b = encode(c, &n);
    cr_assert(n > 500 && n < 4000, "small checkpoint is %zu bytes", n);
    unsigned char *x = malloc(n);
    char msg[RF_ERR_MAX];
    long live = rf_alloc_live();
    every_flip_and_truncation_rejected(b, n);
    int accepted = 0;
    for (size_t i = 0; i + 4 < n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(x, b, n); x[i] ^= (unsigned char)(1u << bit);
            fix_crcs(x, n);
            rf_status s = decode_status(x, n, msg, sizeof msg);
            if (s == RF_OK) accepted++; else cr_assert(msg[0]);
        }
    }
    cr_assert_eq(rf_alloc_live(), live, "leak in a rejection path");
    cr_assert(accepted < (int)(3 * n) / 2, "%d of %zu repaired flips accepted", accepted, 3 * n);
    free(x); rf_free(b); rf_ckpt_free(c);
}

/* A checkpoint whose sections use every codec (gaps, arithmetic masks,
 * order-0 and per-row value codes, zstd), attacked with single-bit flips
 * behind repaired checksums: each entropy decoder sees hostile input. */
static rf_ckpt *codec_ckpt(void) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    rf_rng r; rf_rng_init(&r, 77, 0);
    enum { N = 2048, R = 64, C = 32 };
    static float w[N], z[N];
    static uint8_t few[N], iid[N];
    static int8_t q[R * C], sv[N];
    float sc[R];
    for (int i = 0; i < N; i++) {
        w[i] = rf_rng_normal(&r);
        few[i] = i == 5 || i == 1500;
        iid[i] = rf_rng_uniform(&r) < 0.1f;
        sv[i] = (int8_t)((int)rf_rng_below(&r, 7) - 3);
        z[i] = (float)(i % 3);
    }
    for (int i = 0; i < R; i++) {
        int off = 40 + (int)rf_rng_below(&r, 60);
        sc[i] = 0.01f;
        for (int j = 0; j < C; j++) {
            int v = off + (int)rf_rng_below(&r, 4);
            q[i * C + j] = (int8_t)(rf_rng_uniform(&r) < 0.5f ? -v : v);
        }
    }
    int64_t s1[1] = {N}, s2[2] = {R, C}, s3[2] = {32, 64};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "gaps", RF_F32, 1, s1, RF_STORE_SPARSE, w, few, NULL), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "iid", RF_I8, 2, s3, RF_STORE_SPARSE_INT8, sv, iid, sc), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "syms", RF_I8, 2, s3, RF_STORE_INT8, sv, NULL, sc), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "rows", RF_I8, 2, s2, RF_STORE_INT8, q, NULL, sc), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "zstd", RF_F32, 1, s1, RF_STORE_DENSE, z, NULL, NULL), RF_OK);
    return c;
}

Test(ckpt, every_codec_roundtrips_and_survives_hostile_input) {
    rf_ckpt *c = codec_ckpt();
    rf_ckpt *d = roundtrip(c);
    static const char *want[][2] = {{"gaps", "mask=gaps"}, {"iid", "mask=arith0"}, {"syms", "values=arith"},
                                    {"rows", "values=arith-rows"}, {"zstd", "values=planes+zstd"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(rf_ckpt_find(d, want[i][0])->coding, want[i][1]), "%s coded as %s", want[i][0], rf_ckpt_find(d, want[i][0])->coding);
    rf_ckpt_free(d);
    size_t n;
    unsigned char *b = encode(c, &n);
    cr_assert_eq(b[rf_get_u32(b + 24) + 36 + 0], 4);   /* first name length: "gaps" */
    unsigned char *x = malloc(n);
    long live = rf_alloc_live();
    char msg[RF_ERR_MAX];
    for (size_t i = 36; i + 4 < n; i++) {
        memcpy(x, b, n); x[i] ^= (unsigned char)(1u << (i % 8));
        fix_crcs(x, n);
        if (decode_status(x, n, msg, sizeof msg) != RF_OK) cr_assert(msg[0]);
    }
    cr_assert_eq(rf_alloc_live(), live);
    free(x); rf_free(b); rf_ckpt_free(c);
}

/* SQLite-style: make each allocation of a decode and of an encode of c fail
 * in turn; the result is NOMEM and nothing leaks. */
static void allocation_failure_sweep(rf_ckpt *c) {
    size_t n;
    unsigned char *b = encode(c, &n);
    long live = rf_alloc_live();
    for (long k = 0; k < 10000; k++) {
        rf_ctx ctx; rf_ctx_init(&ctx);
        rf_ckpt *d = NULL;
        rf_alloc_fail_after(k);
        rf_status s = rf_ckpt_decode(&ctx, b, n, &d);
        rf_alloc_fail_after(-1);
        rf_ckpt_free(d);
        cr_assert_eq(rf_alloc_live(), live, "leak with failure at %ld", k);
        if (s == RF_OK) break;
        cr_assert_eq(s, RF_ERR_NOMEM, "failure at %ld gave %s", k, rf_strerror(s));
    }
    for (long k = 0; k < 10000; k++) {
        rf_ctx ctx; rf_ctx_init(&ctx);
        unsigned char *o = NULL; size_t on = 0;
        rf_alloc_fail_after(k);
        rf_status s = rf_ckpt_encode(&ctx, c, &o, &on);
        rf_alloc_fail_after(-1);
        rf_free(o);
        cr_assert_eq(rf_alloc_live(), live, "encode leak with failure at %ld", k);
        if (s == RF_OK) break;
        cr_assert_eq(s, RF_ERR_NOMEM, "encode failure at %ld gave %s", k, rf_strerror(s));
    }
    rf_free(b);
}

Test(ckpt, allocation_failures_are_clean) {
    rf_ckpt *c = small_ckpt();
    allocation_failure_sweep(c);
    rf_ckpt_free(c);
}

Test(ckpt, decode_respects_memory_cap) {
    rf_ckpt *c = new_ckpt();
    rf_ctx ctx; rf_ctx_init(&ctx);
    static float w[100000];
    int64_t s[1] = {100000};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "w", RF_F32, 1, s, RF_STORE_DENSE, w, NULL, NULL), RF_OK);
    size_t n;
    unsigned char *b = encode(c, &n);
    cr_assert(n < 10000, "zeros compress: %zu", n);
    rf_ckpt *d;
    ctx.mem_cap = 200000;   /* file is small, the tensor is 400 KB */
    cr_assert_eq(rf_ckpt_decode(&ctx, b, n, &d), RF_ERR_LIMIT);
    rf_free(b); rf_ckpt_free(c);
}

/* ---- entropy coders --------------------------------------------------------- */
Test(ckpt, entropy_coders_roundtrip_and_reject_garbage) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 9, 0);
    enum { N = 5000 };
    static uint8_t m[N], m2[N];
    static int8_t v[N], v2[N];
    double p = 0.1;
    for (int i = 0; i < N; i++) { m[i] = rf_rng_uniform(&r) < p; v[i] = (int8_t)((int)rf_rng_below(&r, 9) - 4); }
    for (int order = 0; order <= RF_MASK_ORDER_MAX; order += 4) {
        unsigned char *o; size_t ol;
        cr_assert_eq(rf_mask_arith_encode(&ctx, m, N, order, &o, &ol), RF_OK);
        cr_assert_eq(rf_mask_arith_decode(&ctx, o, ol, N, order, m2), RF_OK);
        cr_assert_eq(memcmp(m, m2, N), 0);
        cr_assert_neq(rf_mask_arith_decode(&ctx, o, ol - 1, N, order, m2), RF_OK);
        rf_free(o);
    }
    unsigned char *o; size_t ol;
    cr_assert_eq(rf_sym_arith_encode(&ctx, v, N, &o, &ol), RF_OK);
    /* 9 equiprobable symbols: log2(9) = 3.17 bits each, plus a small table */
    cr_assert(ol < N * 3.17 / 8 * 1.03 + 64, "%zu bytes", ol);
    cr_assert_eq(rf_sym_arith_decode(&ctx, o, ol, N, v2), RF_OK);
    cr_assert_eq(memcmp(v, v2, N), 0);
    cr_assert_eq(rf_sym_arith_decode(&ctx, o, 20, N, v2), RF_ERR_FORMAT);
    cr_assert_neq(rf_sym_arith_decode(&ctx, o, ol - 2, N, v2), RF_OK);
    o[0] = 0; o[1] = 0; o[2] = 0; o[3] = 0;   /* drop symbols from the table */
    cr_assert_neq(rf_sym_arith_decode(&ctx, o, ol, N, v2), RF_OK);
    rf_free(o);
    /* a constant stream codes to almost nothing */
    memset(v, 3, N);
    cr_assert_eq(rf_sym_arith_encode(&ctx, v, N, &o, &ol), RF_OK);
    cr_assert(ol < 48, "%zu", ol);
    cr_assert_eq(rf_sym_arith_decode(&ctx, o, ol, N, v2), RF_OK);
    cr_assert_eq(memcmp(v, v2, N), 0);
    rf_free(o);
    unsigned char vb[10];
    uint64_t back;
    for (uint64_t x = 1; x && x < UINT64_MAX / 3; x *= 3) {
        size_t k = rf_varint_put(vb, x);
        cr_assert_eq(rf_varint_get(vb, k, &back), k);
        cr_assert_eq(back, x);
        cr_assert_eq(rf_varint_get(vb, k - 1, &back), 0);
    }
    memset(vb, 0xff, 10);
    cr_assert_eq(rf_varint_get(vb, 10, &back), 0);
}

Test(ckpt, entropy_bound_hand_computed) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    int8_t q[4] = {5, 0, -5, 0};
    uint8_t m[4] = {1, 0, 1, 0};
    float sc[1] = {1.0f};
    int64_t s[2] = {1, 4};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "q", RF_I8, 2, s, RF_STORE_SPARSE_INT8, q, m, sc), RF_OK);
    /* mask: 4 * H(0.5) = 4 bits; values {5, -5}: 2 * 1 bit; total 6 bits */
    cr_assert_float_eq(rf_ckpt_entropy_bound(c), 0.75, 1e-12);
    float f[3] = {1, 2, 3};
    int64_t s3[1] = {3};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "f", RF_F32, 1, s3, RF_STORE_DENSE, f, NULL, NULL), RF_OK);
    /* three distinct floats: 3 * log2(3) bits */
    cr_assert_float_eq(rf_ckpt_entropy_bound(c), 0.75 + 3.0 * log2(3.0) / 8.0, 1e-12);
    float g[4] = {2, 2, 2, 5};
    int64_t s4[1] = {4};
    uint8_t gm[4] = {1, 1, 0, 1};
    cr_assert_eq(rf_ckpt_add(&ctx, c, "g", RF_F32, 1, s4, RF_STORE_SPARSE, g, gm, NULL), RF_OK);
    /* mask 4 * H(3/4) bits + 3 kept values {2, 2, 5}: 3 * H(1/3) bits */
    double h34 = -(0.75 * log2(0.75) + 0.25 * log2(0.25)), h13 = -(log2(1.0 / 3) / 3 + 2.0 / 3 * log2(2.0 / 3));
    cr_assert_float_eq(rf_ckpt_tensor_entropy_bound(rf_ckpt_find(c, "g")), (4 * h34 + 3 * h13) / 8.0, 1e-12);
    rf_ckpt_free(c);
}

/* ---- issue 6 size target ---------------------------------------------------- */
static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* LeNet-300-100 shapes; Gaussian weights (Glorot scale), magnitude-pruned to
 * 90% per layer, quantized per row symmetric int8 over the kept weights. */
static void sparse_int8_layer(rf_rng *r, int rows, int cols, float *w, int8_t *q, uint8_t *m, float *sc) {
    size_t n = (size_t)rows * (size_t)cols;
    float *a = malloc(n * sizeof *a);
    float sd = sqrtf(2.0f / (float)(rows + cols));
    for (size_t i = 0; i < n; i++) { w[i] = sd * rf_rng_normal(r); a[i] = fabsf(w[i]); }
    /* threshold: the 90th percentile of |w| (selection by sorting) */
    qsort(a, n, sizeof *a, cmp_float);
    size_t keep = n / 10;
    float thr = a[n - keep];
    free(a);
    for (int i = 0; i < rows; i++) {
        float mx = 0;
        for (int j = 0; j < cols; j++) {
            size_t k = (size_t)i * cols + j;
            m[k] = fabsf(w[k]) >= thr;
            if (m[k] && fabsf(w[k]) > mx) mx = fabsf(w[k]);
        }
        sc[i] = mx > 0 ? mx / 127.0f : 1.0f;
        for (int j = 0; j < cols; j++) {
            size_t k = (size_t)i * cols + j;
            q[k] = (int8_t)(m[k] ? lrintf(w[k] / sc[i]) : 0);
        }
    }
}

Test(ckpt, sparse_int8_lenet_near_entropy_bound) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    static const int dims[3][2] = {{300, 784}, {100, 300}, {10, 100}};
    static const char *names[3] = {"fc1.weight", "fc2.weight", "fc3.weight"};
    rf_rng r; rf_rng_init(&r, 2019, 0);
    rf_ckpt *sp = new_ckpt(), *dn = new_ckpt();
    for (int l = 0; l < 3; l++) {
        int rows = dims[l][0], cols = dims[l][1];
        size_t n = (size_t)rows * cols;
        float *w = malloc(n * 4), *sc = malloc((size_t)rows * 4);
        int8_t *q = malloc(n); uint8_t *m = malloc(n);
        sparse_int8_layer(&r, rows, cols, w, q, m, sc);
        int64_t shape[2] = {rows, cols};
        cr_assert_eq(rf_ckpt_add(&ctx, sp, names[l], RF_I8, 2, shape, RF_STORE_SPARSE_INT8, q, m, sc), RF_OK);
        cr_assert_eq(rf_ckpt_add(&ctx, dn, names[l], RF_F32, 2, shape, RF_STORE_DENSE, w, NULL, NULL), RF_OK);
        free(w); free(sc); free(q); free(m);
    }
    size_t ns, nd;
    unsigned char *bs = encode(sp, &ns), *bd = encode(dn, &nd);
    double bound = rf_ckpt_entropy_bound(sp);
    double sparsity = 1.0 - (double)(sp->t[0].nnz + sp->t[1].nnz + sp->t[2].nnz) / 266200.0;
    cr_log_info("sparse-int8 %zu bytes, bound %.0f (%.4fx), dense %zu (%.1fx smaller), sparsity %.4f",
                ns, bound, ns / bound, nd, (double)nd / ns, sparsity);
    fprintf(stderr, "sparse-int8 lenet: %zu bytes, bound %.0f bytes (ratio %.4f), dense fp32 %zu bytes (%.1fx), %s / %s\n",
            ns, bound, ns / bound, nd, (double)nd / ns, sp->t[0].coding, sp->t[2].coding);
    for (int l = 0; l < 3; l++)
        fprintf(stderr, "  %s: %llu bytes, bound %.0f, %s\n", sp->t[l].name, (unsigned long long)sp->t[l].disk_bytes,
                rf_ckpt_tensor_entropy_bound(&sp->t[l]), sp->t[l].coding);
    cr_assert(fabs(sparsity - 0.9) < 0.001);
    cr_assert(ns <= 1.10 * bound, "%zu bytes > 1.10 x bound %.0f", ns, bound);
    /* "25x smaller than dense fp32" as bits per weight: 32 / 25 = 1.28 bits
     * against 4 bytes a weight (the convention of Deep Compression's 40x).
     * The dense checkpoint file of the same (unpruned) weights is smaller
     * than 4 bytes a weight because its values are byte-plane + zstd coded;
     * its ratio is logged above. */
    double raw_dense = 266200.0 * 4.0;
    cr_assert(raw_dense >= 25.0 * (double)ns, "dense fp32 %.0f bytes is only %.1fx the sparse %zu", raw_dense, raw_dense / (double)ns, ns);
    cr_assert((double)nd <= 0.9 * raw_dense, "byte planes should shrink Gaussian f32 by > 10%%: %zu", nd);
    /* and it decodes to the same tensors */
    rf_ckpt *d;
    cr_assert_eq(rf_ckpt_decode(&ctx, bs, ns, &d), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int l = 0; l < 3; l++) assert_same_tensor(&sp->t[l], &d->t[l]);
    rf_ckpt_free(d);
    rf_free(bs); rf_free(bd); rf_ckpt_free(sp); rf_ckpt_free(dn);
}

/* ---- safetensors -------------------------------------------------------------- */
#include "raffle/safetensors.h"

/* Builds a safetensors image from a header string and data bytes. */
static unsigned char *st_image(const char *header, const void *data, size_t dlen, size_t *n) {
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + dlen);
    rf_put_u64(b, hl);
    memcpy(b + 8, header, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    *n = 8 + hl + dlen;
    return b;
}

static rf_status st_status(const char *header, size_t dlen, char *msg) {
    static unsigned char zeros[256];
    size_t n;
    unsigned char *b = st_image(header, zeros, dlen, &n);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_safetensors *st = NULL;
    rf_status s = rf_safetensors_parse(&ctx, b, n, &st);
    snprintf(msg, RF_ERR_MAX, "%s", rf_ctx_error(&ctx));
    rf_safetensors_free(st);
    free(b);
    return s;
}

Test(safetensors, parse_valid_and_convert_dtypes) {
    /* f16 1.5 = 0x3E00, bf16 -2.0 = 0xC000, f64 0.25 */
    unsigned char data[8 + 2 + 2 + 8];
    float f[2] = {3.0f, -0.5f};
    memcpy(data, f, 8);
    data[8] = 0x00; data[9] = 0x3E;
    data[10] = 0x00; data[11] = 0xC0;
    double d = 0.25; memcpy(data + 12, &d, 8);
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[10,12]},"
                    "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1,1],\"data_offsets\":[12,20]}}   ";
    size_t n;
    unsigned char *b = st_image(h, data, sizeof data, &n);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_safetensors *st;
    cr_assert_eq(rf_safetensors_parse(&ctx, b, n, &st), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(st->n, 4);
    cr_assert_str_eq(st->t[0].name, "a");   /* sorted by offset */
    cr_assert_str_eq(st->meta_json, "{\"format\":\"pt\"}");
    const char *names[4] = {"a", "b", "c", "d"};
    float want[4] = {-0.5f, 1.5f, -2.0f, 0.25f};
    for (int i = 0; i < 4; i++) {
        float *v;
        const rf_st_tensor *t = rf_safetensors_find(st, names[i]);
        cr_assert_not_null(t);
        cr_assert_eq(rf_st_tensor_to_f32(&ctx, t, &v), RF_OK);
        cr_assert_eq(v[i == 0 ? 1 : 0], want[i], "%s", names[i]);
        rf_free(v);
    }
    rf_safetensors_free(st);
    free(b);
}

Test(safetensors, rejects_malformed_headers) {
    char m[RF_ERR_MAX];
    static const struct { const char *h; size_t dlen; rf_status want; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, RF_ERR_FORMAT},        /* bad JSON */
        {"[1,2]", 0, RF_ERR_FORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, RF_ERR_FORMAT},    /* trailing */
        {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, RF_ERR_UNSUPPORTED},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, RF_ERR_UNSUPPORTED},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, RF_ERR_SIZE},         /* shape x dtype */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, RF_ERR_SIZE},        /* not covering */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, RF_ERR_SIZE},       /* gap at 0 */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, RF_ERR_SIZE},         /* overlap */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", 8, RF_ERR_SIZE},        /* past end */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, RF_ERR_SIZE},         /* reversed */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, RF_ERR_FORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, RF_ERR_FORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, RF_ERR_FORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, RF_ERR_FORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, RF_ERR_FORMAT},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, RF_ERR_FORMAT},       /* duplicate */
        {"{\"__metadata__\":{\"k\":1}}", 0, RF_ERR_FORMAT},
        {"{\"a\":7}", 0, RF_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rf_status s = st_status(cases[i].h, cases[i].dlen, m);
        cr_assert_eq(s, cases[i].want, "case %zu (%s): got %s: %s", i, cases[i].h, rf_strerror(s), m);
        cr_assert(m[0]);
    }
    /* header length beyond the file, and a file shorter than 8 bytes */
    unsigned char b[16] = {0};
    rf_put_u64(b, 100);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_safetensors *st;
    cr_assert_eq(rf_safetensors_parse(&ctx, b, sizeof b, &st), RF_ERR_TRUNCATED);
    cr_assert_eq(rf_safetensors_parse(&ctx, b, 5, &st), RF_ERR_TRUNCATED);
    rf_put_u64(b, UINT64_MAX);
    cr_assert_eq(rf_safetensors_parse(&ctx, b, sizeof b, &st), RF_ERR_TRUNCATED);
    /* integer tensors parse but do not convert to float */
    size_t n;
    int32_t iv[2] = {1, 2};
    unsigned char *img = st_image("{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", iv, 8, &n);
    cr_assert_eq(rf_safetensors_parse(&ctx, img, n, &st), RF_OK);
    float *f;
    cr_assert_eq(rf_st_tensor_to_f32(&ctx, &st->t[0], &f), RF_ERR_UNSUPPORTED);
    cr_assert(strstr(rf_ctx_error(&ctx), "'i'"));
    rf_safetensors_free(st);
    free(img);
}

/* checkpoint -> safetensors -> parse: names, shapes and dequantized values. */
Test(safetensors, export_roundtrip_from_checkpoint) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = small_ckpt();
    unsigned char *b; size_t n;
    cr_assert_eq(rf_ckpt_to_safetensors(&ctx, c, &b, &n), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_get_u64(b) % 8, 0);
    rf_safetensors *st;
    cr_assert_eq(rf_safetensors_parse(&ctx, b, n, &st), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(st->n, c->n);
    cr_assert(strstr(st->meta_json, "\"format\":\"pt\""));
    cr_assert(strstr(st->meta_json, "raffle_spec"));
    for (int i = 0; i < c->n; i++) {
        const rf_st_tensor *t = rf_safetensors_find(st, c->t[i].name);
        cr_assert_not_null(t, "%s", c->t[i].name);
        cr_assert_eq(t->dtype, RF_ST_F32);
        cr_assert_eq(t->ndim, c->t[i].ndim);
        for (int d = 0; d < t->ndim; d++) cr_assert_eq(t->shape[d], c->t[i].shape[d]);
        float *a, *e;
        cr_assert_eq(rf_st_tensor_to_f32(&ctx, t, &a), RF_OK);
        cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, &c->t[i], &e), RF_OK);
        cr_assert_eq(memcmp(a, e, (size_t)rf_ckpt_tensor_numel(&c->t[i]) * 4), 0, "%s", c->t[i].name);
        rf_free(a); rf_free(e);
    }
    rf_safetensors_free(st);
    rf_free(b);
    rf_ckpt_free(c);
    rf_st_entry dup[2] = {{"x", 0, NULL, NULL}, {"x", 0, NULL, NULL}};
    float one = 1;
    dup[0].data = dup[1].data = &one;
    cr_assert_eq(rf_safetensors_encode_f32(&ctx, dup, 2, NULL, &b, &n), RF_ERR_INVALID);
    cr_assert_eq(rf_safetensors_encode_f32(&ctx, dup, 1, "{\"k\":1}", &b, &n), RF_ERR_INVALID);
}

/* Every byte of an exported image flipped: parse fails with a message or
 * yields tensors that stay inside the buffer; nothing leaks. */
Test(safetensors, flipped_bytes_never_escape_the_buffer) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = small_ckpt();
    unsigned char *b; size_t n;
    cr_assert_eq(rf_ckpt_to_safetensors(&ctx, c, &b, &n), RF_OK);
    unsigned char *x = malloc(n);
    long live = rf_alloc_live();
    for (size_t i = 0; i < n; i++) {
        memcpy(x, b, n); x[i] ^= 0xFF;
        rf_safetensors *st = NULL;
        rf_ctx_init(&ctx);
        if (rf_safetensors_parse(&ctx, x, n, &st) != RF_OK) { cr_assert(rf_ctx_error(&ctx)[0]); continue; }
        for (int k = 0; k < st->n; k++)
            cr_assert(st->t[k].data >= x + 8 && st->t[k].data + (st->t[k].end - st->t[k].begin) <= x + n);
        rf_safetensors_free(st);
    }
    cr_assert_eq(rf_alloc_live(), live);
    free(x); rf_free(b); rf_ckpt_free(c);
}

/* Allocation failures while encoding and decoding every codec. */
Test(ckpt, allocation_failures_in_every_codec) {
    rf_ckpt *c = codec_ckpt();
    size_t n;
    unsigned char *b = encode(c, &n);
    long live = rf_alloc_live();
    int enc_ok = 0, dec_ok = 0;
    for (long k = 0; k < 100000 && !(enc_ok && dec_ok); k++) {
        rf_ctx ctx; rf_ctx_init(&ctx);
        if (!enc_ok) {
            unsigned char *o = NULL; size_t on = 0;
            rf_alloc_fail_after(k);
            rf_status s = rf_ckpt_encode(&ctx, c, &o, &on);
            rf_alloc_fail_after(-1);
            if (s == RF_OK) { enc_ok = 1; cr_assert_eq(on, n); cr_assert_eq(memcmp(o, b, n), 0); }
            else cr_assert_eq(s, RF_ERR_NOMEM, "encode failure at %ld: %s", k, rf_strerror(s));
            rf_free(o);
        }
        if (!dec_ok) {
            rf_ckpt *d = NULL;
            rf_alloc_fail_after(k);
            rf_status s = rf_ckpt_decode(&ctx, b, n, &d);
            rf_alloc_fail_after(-1);
            if (s == RF_OK) dec_ok = 1;
            else cr_assert_eq(s, RF_ERR_NOMEM, "decode failure at %ld: %s", k, rf_strerror(s));
            rf_ckpt_free(d);
        }
        cr_assert_eq(rf_alloc_live(), live, "leak with failure at %ld", k);
    }
    cr_assert(enc_ok && dec_ok);
    rf_free(b); rf_ckpt_free(c);
}

/* ---- codebook, int4 and N:M kinds --------------------------------------------- */

/* A checkpoint holding each newer kind (about 1.5 KB), in the order the
 * corruption tests below rely on: the dense codebook tensor is last. */
static rf_ckpt *lowbit_ckpt(void) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    rf_rng r; rf_rng_init(&r, 31, 0);
    enum { R = 8, C = 64, N = R * C };
    static uint8_t idx[N], m[N], nm[N];
    static int8_t q[N], qa[N];
    static float w[N];
    float cb5[32], sc[R * 2], sa[R];
    int32_t za[R];
    for (int j = 0; j < 32; j++) cb5[j] = 0.01f * (float)(j - 15) + 0.003f;
    for (int i = 0; i < N; i++) {
        idx[i] = (uint8_t)(rf_rng_below(&r, 8) + rf_rng_below(&r, 8) + rf_rng_below(&r, 16));
        m[i] = rf_rng_uniform(&r) < 0.25f;
        q[i] = (int8_t)((int)rf_rng_below(&r, 16) - 8);
        qa[i] = (int8_t)rf_rng_below(&r, 16);
        w[i] = rf_rng_normal(&r);
        nm[i] = (i % 4) == (int)(((unsigned)i / 4u) * 7u % 4u) || (i % 4) == (int)(((unsigned)i / 4u) * 7u % 4u + 1u) % 4;
    }
    for (int i = 0; i < 2 * R; i++) sc[i] = 0.05f + 0.01f * (float)i;
    for (int i = 0; i < R; i++) { sa[i] = 0.1f; za[i] = i % 16; }
    int64_t s2[2] = {R, C};
    cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "share.sparse", 2, s2, idx, m, 5, cb5), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_add_int4(&ctx, c, "int4.sym", 2, s2, q, 32, sc, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_add_int4(&ctx, c, "int4.aff", 2, s2, qa, 64, sa, za), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_add_nm(&ctx, c, "nm24", 2, s2, w, nm, 2, 4), RF_OK, "%s", rf_ctx_error(&ctx));
    int64_t s1[2] = {2, 4};
    const uint8_t di[8] = {0, 1, 2, 3, 3, 2, 1, 0};
    const float cb2[4] = {-0.5f, -0.25f, 0.25f, 0.5f};
    cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "share.dense", 2, s1, di, NULL, 2, cb2), RF_OK, "%s", rf_ctx_error(&ctx));
    return c;
}

Test(ckpt, lowbit_kinds_roundtrip_with_their_codecs) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = lowbit_ckpt();
    cr_assert_eq(rf_ckpt_find(c, "share.sparse")->storage, RF_STORE_SPARSE_CODEBOOK);
    cr_assert_eq(rf_ckpt_find(c, "share.dense")->storage, RF_STORE_CODEBOOK);
    cr_assert_eq(rf_ckpt_find(c, "share.dense")->nnz, 8);
    cr_assert_eq(rf_ckpt_find(c, "int4.sym")->bits, 4);
    rf_ckpt *d = roundtrip(c);
    for (int i = 0; i < d->n; i++) {
        const rf_ckpt_tensor *t = &d->t[i];
        int ok = t->storage == RF_STORE_NM ? strstr(t->coding, "mask=nm2:4") != NULL
                                           : strstr(t->coding, "values=packed") || strstr(t->coding, "values=arith");
        cr_assert(ok, "%s coded as %s", t->name, t->coding);
    }
    /* uniform int4 values: 4-bit packing is as small as anything */
    cr_assert(strstr(rf_ckpt_find(d, "int4.sym")->coding, "values=packed4"), "%s", rf_ckpt_find(d, "int4.sym")->coding);
    float *f;
    cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, rf_ckpt_find(d, "share.dense"), &f), RF_OK);
    cr_assert_eq(f[0], -0.5f); cr_assert_eq(f[3], 0.5f); cr_assert_eq(f[5], 0.25f);
    rf_free(f);
    const rf_ckpt_tensor *a = rf_ckpt_find(d, "int4.aff");
    cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, a, &f), RF_OK);
    for (int i = 0; i < 8 * 64; i++)
        cr_assert_eq(f[i], (float)(((const int8_t *)a->data)[i] - a->zero_points[i / 64]) * a->scales[i / 64]);
    rf_free(f);
    /* copies keep every field */
    rf_ckpt *e = new_ckpt();
    for (int i = 0; i < d->n; i++) cr_assert_eq(rf_ckpt_add_copy(&ctx, e, &d->t[i]), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int i = 0; i < d->n; i++) assert_same_tensor(&d->t[i], &e->t[i]);
    rf_ckpt_free(e); rf_ckpt_free(c); rf_ckpt_free(d);
    cr_assert_eq(rf_alloc_live(), 0);
}

Test(ckpt, lowbit_kinds_reject_bad_arguments) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    uint8_t idx[8] = {0, 1, 2, 3, 3, 2, 1, 0}, m[8] = {1, 1, 0, 0, 1, 0, 1, 0};
    float cb[4] = {1, 2, 3, 4}, sc[2] = {1, 1}, w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int8_t q[8] = {0};
    int32_t zp[2] = {0, 16};
    int64_t s[2] = {2, 4}, s0[1] = {0};
#define REJECT(call, text) do { cr_assert_eq((call), RF_ERR_INVALID); \
        cr_assert(strstr(rf_ctx_error(&ctx), text), "'%s' lacks '%s'", rf_ctx_error(&ctx), text); } while (0)
    REJECT(rf_ckpt_add_codebook(&ctx, c, "a", 2, s, idx, NULL, 0, cb), "0 bits");
    REJECT(rf_ckpt_add_codebook(&ctx, c, "a", 2, s, idx, NULL, 9, cb), "9 bits");
    REJECT(rf_ckpt_add_codebook(&ctx, c, "a", 2, s, idx, NULL, 1, cb), "index 2 at 2 outside the 2-entry codebook");
    cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "a", 2, s, idx, m, 1, cb), RF_ERR_INVALID);   /* idx 3 at 4 is kept */
    cb[2] = NAN;
    REJECT(rf_ckpt_add_codebook(&ctx, c, "a", 2, s, idx, NULL, 2, cb), "codebook entry 2 is not finite");
    cb[2] = 3;
    REJECT(rf_ckpt_add_codebook(&ctx, c, "a", 1, s0, idx, NULL, 2, cb), "non-empty");
    REJECT(rf_ckpt_add_int4(&ctx, c, "b", 2, s, q, 3, sc, NULL), "group size 3 does not divide the row length 4");
    REJECT(rf_ckpt_add_int4(&ctx, c, "b", 2, s, q, 4, sc, zp), "zero point 16");
    q[1] = 8;
    REJECT(rf_ckpt_add_int4(&ctx, c, "b", 2, s, q, 4, sc, NULL), "int4 value 8 at 1 outside [-8, 7]");
    q[1] = -1; zp[1] = 0;
    REJECT(rf_ckpt_add_int4(&ctx, c, "b", 2, s, q, 4, sc, zp), "outside [0, 15]");
    REJECT(rf_ckpt_add_int4(&ctx, c, "b", 2, s, q, 4, NULL, NULL), "needs scales");
    REJECT(rf_ckpt_add_nm(&ctx, c, "n", 2, s, w, m, 3, 2), "3:2 is not an N:M pattern");
    REJECT(rf_ckpt_add_nm(&ctx, c, "n", 2, s, w, m, 1, 8), "M = 8 does not divide the row length 4");
    REJECT(rf_ckpt_add_nm(&ctx, c, "n", 2, s, w, m, 1, 2), "row 0, group 0 keeps 2, not 1 of 2");
    REJECT(rf_ckpt_add_nm(&ctx, c, "n", 2, s, w, NULL, 2, 4), "needs a mask");
    REJECT(rf_ckpt_add(&ctx, c, "x", RF_U8, 2, s, RF_STORE_CODEBOOK, idx, NULL, NULL), "rf_ckpt_add_");
    REJECT(rf_ckpt_add(&ctx, c, "x", RF_F32, 2, s, RF_STORE_NM, w, m, NULL), "rf_ckpt_add_");
#undef REJECT
    cr_assert_eq(c->n, 0);
    rf_ckpt_free(c);
    cr_assert_eq(rf_alloc_live(), 0);
}

/* Replaces the payload of the last tensor of encoded checkpoint b with p
 * (fixing its directory size, the file size and every checksum); returns a
 * new buffer (free) and its length. */
static unsigned char *with_last_payload(const unsigned char *b, size_t n, const unsigned char *p, size_t plen, size_t *out_n) {
    ent e[16];
    int k = dir_entries(b, n, e, 16);
    cr_assert(k > 0);
    size_t off = (size_t)e[k - 1].off, m = off + plen + 4;
    unsigned char *x = malloc(m);
    memcpy(x, b, off);
    memcpy(x + off, p, plen);
    rf_put_u64(x + e[k - 1].size_at, plen);
    rf_put_u64(x + 16, m);
    fix_crcs(x, m);
    *out_n = m;
    return x;
}

/* A raw, uncompressed section: kind, codec, param, zstd 0, stored = coded. */
static size_t put_sec(unsigned char *p, int kind, int codec, int param, const void *data, size_t len) {
    p[0] = (unsigned char)kind; p[1] = (unsigned char)codec; p[2] = (unsigned char)param; p[3] = 0;
    rf_put_u64(p + 4, len); rf_put_u64(p + 12, len);
    memcpy(p + 20, data, len);
    return 20 + len;
}

/* Which value codec wins for codebook indices: on 20,000 indices from a
 * peaked distribution (a sum of three uniforms, about 4.4 bits of entropy)
 * the order-0 range code beats 5-bit packing; on 16 values its table does
 * not pay and packing wins. */
Test(ckpt, codebook_indices_coded_by_the_smaller_codec) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 4, 0);
    enum { N = 20000 };
    static uint8_t idx[N];
    float cb[32];
    for (int j = 0; j < 32; j++) cb[j] = (float)j - 15.5f;
    for (int i = 0; i < N; i++) idx[i] = (uint8_t)(rf_rng_below(&r, 8) + rf_rng_below(&r, 8) + rf_rng_below(&r, 16));
    rf_ckpt *c = new_ckpt();
    int64_t big[1] = {N}, small[1] = {16};
    cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "big", 1, big, idx, NULL, 5, cb), RF_OK);
    cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "small", 1, small, idx, NULL, 5, cb), RF_OK);
    rf_ckpt *d = roundtrip(c);
    const rf_ckpt_tensor *b = rf_ckpt_find(d, "big"), *sm = rf_ckpt_find(d, "small");
    cr_assert(strstr(b->coding, "values=arith"), "%s", b->coding);
    cr_assert(b->disk_bytes < (uint64_t)N * 5 / 8, "%llu bytes", (unsigned long long)b->disk_bytes);
    cr_assert(b->disk_bytes < rf_ckpt_tensor_entropy_bound(b) * 1.02 + 300, "%llu bytes, bound %.0f",
              (unsigned long long)b->disk_bytes, rf_ckpt_tensor_entropy_bound(b));
    cr_assert(strstr(sm->coding, "values=packed5"), "%s", sm->coding);
    rf_ckpt_free(c); rf_ckpt_free(d);
}

/* The reader's distinct rejections of a corrupt codebook tensor (the dense
 * 2x4, 2-bit tensor at the end of lowbit_ckpt, payloads built by hand):
 * each is RF_ERR_FORMAT or RF_ERR_SIZE with a message naming the codebook. */
Test(ckpt, corrupt_codebook_tensors_are_rejected) {
    rf_ckpt *c = lowbit_ckpt();
    size_t n;
    unsigned char *b = encode(c, &n);
    const float cb[4] = {-0.5f, -0.25f, 0.25f, 0.5f}, cb3[3] = {-0.5f, -0.25f, 0.25f};
    float bad[4] = {-0.5f, NAN, 0.25f, 0.5f};
    const uint8_t idx[8] = {0, 1, 2, 3, 3, 2, 1, 0}, out_of_range[8] = {0, 1, 2, 4, 3, 2, 1, 0};
    const unsigned char packed[2] = {0xE4, 0x1B};   /* 0 1 2 3 | 3 2 1 0 in 2-bit fields, LSB first */
    struct { const char *what; int nsec; const float *cbk; size_t cblen; int codec, param; const void *vals; size_t vlen;
             rf_status want; const char *msg; } cases[] = {
        {"valid hand-built payload", 2, cb, 16, 0, 0, idx, 8, RF_OK, ""},
        {"packed indices", 2, cb, 16, 6, 2, packed, 2, RF_OK, ""},
        {"NaN centroid", 2, bad, 16, 0, 0, idx, 8, RF_ERR_FORMAT, "codebook: entry 1 is not finite"},
        {"3 centroids", 2, cb3, 12, 0, 0, idx, 8, RF_ERR_FORMAT, "codebook: 3 entries, not 2^b"},
        {"index past the codebook", 2, cb, 16, 0, 0, out_of_range, 8, RF_ERR_FORMAT, "codebook: index 4 at 3 outside the 4-entry codebook"},
        {"packed width disagrees", 2, cb, 16, 6, 3, packed, 2, RF_ERR_FORMAT, "values: packed 3 bits, codebook storage has 2"},
        {"packed length", 2, cb, 16, 6, 2, packed, 1, RF_ERR_SIZE, "packed bytes"},
        {"no codebook", 1, NULL, 0, 0, 0, idx, 8, RF_ERR_FORMAT, "values before codebook"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char pay[128];
        size_t pl = 1;
        pay[0] = (unsigned char)cases[i].nsec;
        if (cases[i].cbk) pl += put_sec(pay + pl, 2, 0, 0, cases[i].cbk, cases[i].cblen);
        pl += put_sec(pay + pl, 4, cases[i].codec, cases[i].param, cases[i].vals, cases[i].vlen);
        size_t xn;
        unsigned char *x = with_last_payload(b, n, pay, pl, &xn);
        char msg[RF_ERR_MAX];
        rf_status s = decode_status(x, xn, msg, sizeof msg);
        cr_assert_eq(s, cases[i].want, "%s: %s (%s)", cases[i].what, rf_strerror(s), msg);
        cr_assert(strstr(msg, cases[i].msg), "%s: message '%s'", cases[i].what, msg);
        if (s) cr_assert(strstr(msg, "share.dense"), "%s: message names no tensor: %s", cases[i].what, msg);
        free(x);
    }
    rf_free(b); rf_ckpt_free(c);
}

/* int4 and N:M payloads that lie, built by hand in place of the payload of a
 * checkpoint's only tensor (a 2x4 int4 or 2:4 tensor): two sections each,
 * every one rejected with its status and message. */
Test(ckpt, corrupt_int4_and_nm_tensors_are_rejected) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int64_t shape[2] = {2, 4};
    const int8_t q[8] = {1, 2, 3, 4, 5, 6, 7, 0}, q9[8] = {1, 2, 3, 4, 5, 6, 7, 9};
    const float sc[2] = {0.5f, 0.25f}, s3[3] = {1, 1, 1}, w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, kept[4] = {1, 2, 6, 7};
    const uint8_t m[8] = {1, 1, 0, 0, 0, 1, 1, 0};
    /* 2:4 positions 1 then 0 in the first group; a 5:4 header; a bitmap */
    const unsigned char nm_dec[3] = {2, 4, 0x01 | (0x01 << 4) | (0x02 << 6)}, nm_54[3] = {5, 4, 0}, bm[1] = {0x63};
    struct { int nm; int k1, c1; const void *d1; size_t l1; const void *d2; size_t l2; rf_status want; const char *msg; } cases[] = {
        {0, 2, 0, s3, 12, q, 8, RF_ERR_SIZE, "whole groups"},                      /* 3 scales for 2 rows of 4 */
        {0, 2, 0, sc, 8, q9, 8, RF_ERR_FORMAT, "int4 value 9"},                     /* a raw 9 is not int4 */
        {1, 1, 7, nm_dec, 3, kept, 16, RF_ERR_FORMAT, "positions not increasing"},
        {1, 1, 7, nm_54, 3, kept, 16, RF_ERR_FORMAT, "5:4 is not a pattern"},
        {1, 1, 0, bm, 1, kept, 16, RF_ERR_FORMAT, "mask codec 0 on nm storage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rf_ckpt *c = new_ckpt();
        if (cases[i].nm) cr_assert_eq(rf_ckpt_add_nm(&ctx, c, "t", 2, shape, w, m, 2, 4), RF_OK);
        else cr_assert_eq(rf_ckpt_add_int4(&ctx, c, "t", 2, shape, q, 4, sc, NULL), RF_OK);
        size_t n, xn;
        unsigned char *b = encode(c, &n), pay[128];
        size_t pl = 1;
        pay[0] = 2;
        pl += put_sec(pay + pl, cases[i].k1, cases[i].c1, 0, cases[i].d1, cases[i].l1);
        pl += put_sec(pay + pl, 4, 0, 0, cases[i].d2, cases[i].l2);
        unsigned char *x = with_last_payload(b, n, pay, pl, &xn);
        char msg[RF_ERR_MAX];
        cr_assert_eq(decode_status(x, xn, msg, sizeof msg), cases[i].want, "case %zu: %s", i, msg);
        cr_assert(strstr(msg, cases[i].msg), "case %zu: %s", i, msg);
        free(x); rf_free(b); rf_ckpt_free(c);
    }
}

/* Issue 2's flip and truncation rules hold for the newer kinds too, and the
 * decoders survive hostile input behind repaired checksums without leaking. */
Test(ckpt, lowbit_kinds_every_flip_and_truncation) {
    rf_ckpt *c = lowbit_ckpt();
    size_t n;
    unsigned char *b = encode(c, &n);
    cr_assert(n > 500 && n < 6000, "lowbit checkpoint is %zu bytes", n);
    unsigned char *x = malloc(n);
    long live = rf_alloc_live();
    every_flip_and_truncation_rejected(b, n);
    for (size_t i = 0; i + 4 < n; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(x, b, n); x[i] ^= (unsigned char)(1u << bit);
            fix_crcs(x, n);
            rf_ctx ctx; rf_ctx_init(&ctx);
            rf_ckpt *d = NULL;
            if (rf_ckpt_decode(&ctx, x, n, &d) == RF_OK) {
                /* whatever is accepted must convert without reading out of bounds */
                for (int t = 0; t < d->n; t++) {
                    float *f = NULL;
                    cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, &d->t[t], &f), RF_OK);
                    rf_free(f);
                    (void)rf_ckpt_tensor_entropy_bound(&d->t[t]);
                }
            } else {
                cr_assert(ctx.err[0]);
            }
            rf_ckpt_free(d);
        }
    cr_assert_eq(rf_alloc_live(), live, "leak in a rejection path");
    free(x); rf_free(b); rf_ckpt_free(c);
}

Test(ckpt, lowbit_kinds_allocation_failures_are_clean) {
    rf_ckpt *c = lowbit_ckpt();
    allocation_failure_sweep(c);
    rf_ckpt_free(c);
}

/* Entropy bound of the newer kinds: an N:M mask carries log2 C(M, N) bits
 * per group (log2 6 for 2:4), codebook indices and int4 values their order-0
 * entropy. */
Test(ckpt, lowbit_entropy_bound_hand_computed) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = new_ckpt();
    int64_t s[2] = {1, 8};
    const float w[8] = {1, 1, 0, 0, 0, 0, 1, 1};
    const uint8_t m[8] = {1, 1, 0, 0, 0, 0, 1, 1};
    cr_assert_eq(rf_ckpt_add_nm(&ctx, c, "nm", 2, s, w, m, 2, 4), RF_OK);
    /* 2 groups x log2(6) bits; the 4 kept values are all 1.0: 0 bits */
    cr_assert_float_eq(rf_ckpt_tensor_entropy_bound(&c->t[0]), 2.0 * log2(6.0) / 8.0, 1e-12);
    const uint8_t idx[8] = {0, 0, 0, 0, 1, 1, 2, 3};
    const float cb[4] = {1, 2, 3, 4};
    cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "cb", 2, s, idx, NULL, 2, cb), RF_OK);
    /* 4 x 1 + 2 x 2 + 2 x 3 bits = 14 */
    cr_assert_float_eq(rf_ckpt_tensor_entropy_bound(&c->t[1]), 14.0 / 8.0, 1e-12);
    rf_ckpt_free(c);
}

/* Files written before the newer kinds existed (the fuzz corpus seeds, by
 * the format-1 writer of e670e7a) still decode, and re-encode to the same
 * bytes: the writer's output for kinds 0-3 did not change. */
Test(ckpt, old_files_still_load_and_reencode_identically) {
    static const char *const names[] = {"dense", "int8", "sparse", "sparse_int8"};
    char dir[512];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (!slash) cr_skip_test("no directory in __FILE__ (%s)", __FILE__);
    snprintf(slash, sizeof dir - (size_t)(slash - dir), "/../fuzz/corpus/ckpt");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rf_ctx ctx; rf_ctx_init(&ctx);
        unsigned char *buf; size_t n;
        if (rf_read_file(&ctx, path, &buf, &n) != RF_OK) cr_skip_test("corpus file %s not found from this directory", path);
        rf_ckpt *c;
        cr_assert_eq(rf_ckpt_decode(&ctx, buf, n, &c), RF_OK, "%s: %s", names[i], rf_ctx_error(&ctx));
        unsigned char *again; size_t m;
        cr_assert_eq(rf_ckpt_encode(&ctx, c, &again, &m), RF_OK);
        cr_assert(m == n && memcmp(buf, again, n) == 0, "%s re-encodes to different bytes (%zu vs %zu)", names[i], m, n);
        rf_free(again); rf_free(buf); rf_ckpt_free(c);
    }
}
