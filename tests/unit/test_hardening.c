/* Hardening (issue 9): the memory cap from RAFFLE_MEM_CAP; files and specs
 * that declare more than the cap are refused with RF_ERR_LIMIT before the
 * allocation; the n-th allocation failing at every n along the checkpoint
 * write/read and job-parsing paths gives an error and leaks nothing; hostile
 * report indexes and spool files; a full disk under the results store.
 * docs/hardening.md lists what is tried here and what happens. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "raffle/ckpt.h"
#include "raffle/data.h"
#include "raffle/job.h"
#include "raffle/net.h"
#include "raffle/nn.h"
#include "raffle/safetensors.h"
#include "raffle/store.h"
#include "raffle/train.h"

#define KIB (1024ull)
#define MIB (1024ull * 1024ull)

/* ---- RAFFLE_MEM_CAP --------------------------------------------------------- */

static size_t cap_for(const char *v) {
    if (v) setenv("RAFFLE_MEM_CAP", v, 1);
    else unsetenv("RAFFLE_MEM_CAP");
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    unsetenv("RAFFLE_MEM_CAP");
    return ctx.mem_cap;
}

Test(hardening, mem_cap_from_environment) {
    cr_assert_eq(cap_for(NULL), 0);
    cr_assert_eq(cap_for("12345"), 12345);
    cr_assert_eq(cap_for("64K"), 64 * KIB);
    cr_assert_eq(cap_for("512M"), 512 * MIB);
    cr_assert_eq(cap_for("512m"), 512 * MIB);
    cr_assert_eq(cap_for("2G"), 2048 * MIB);
    cr_assert_eq(cap_for("2GiB"), 2048 * MIB);
    cr_assert_eq(cap_for("3GB"), 3072 * MIB);
    cr_assert_eq(cap_for("1T"), 1024ull * 1024 * MIB);
    /* anything unparseable keeps the default instead of removing the limit */
    static const char *const bad[] = {"", "G", "-1", "12X", "1.5G", "1 G", "1GiBx", "99999999999999999999",
                                      "17179869184T", " 5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) cr_assert_eq(cap_for(bad[i]), 0, "'%s'", bad[i]);
    /* the parsed cap is the one rf_check_cap applies */
    setenv("RAFFLE_MEM_CAP", "1M", 1);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    unsetenv("RAFFLE_MEM_CAP");
    cr_assert_eq(rf_check_cap(&ctx, MIB, "x"), RF_OK);
    cr_assert_eq(rf_check_cap(&ctx, MIB + 1, "x"), RF_ERR_LIMIT);
    /* and the default (0) is 8 GiB */
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_check_cap(&ctx, 8ull << 30, "x"), RF_OK);
    cr_assert_eq(rf_check_cap(&ctx, (8ull << 30) + 1, "x"), RF_ERR_LIMIT);
}

/* ---- limits before allocation ----------------------------------------------
 * Each case runs under a 1 MiB cap with an object that declares more. The
 * declared object would be allocatable (a few MiB), so RF_ERR_LIMIT proves
 * the cap was consulted before the allocation, not after it failed; a second
 * case declares sizes no machine has (RF_ERR_NOMEM there would mean an
 * allocation was attempted). Live allocations must come back to the start. */

static void small_cap(rf_ctx *ctx) {
    rf_ctx_init(ctx);
    ctx->mem_cap = MIB;
}

static unsigned char *idx_image(unsigned char dtype_code, int ndim, const uint32_t *dims, size_t data_bytes, size_t *n) {
    *n = 4 + 4 * (size_t)ndim + data_bytes;
    unsigned char *b = calloc(1, *n);
    cr_assert_not_null(b);
    b[2] = dtype_code;
    b[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {   /* IDX dims are big-endian */
        b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        b[7 + 4 * i] = (unsigned char)dims[i];
    }
    return b;
}

static unsigned char *gzip_mem(const unsigned char *in, size_t n, size_t *out_n) {
    z_stream z;
    memset(&z, 0, sizeof z);
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, (uLong)n);
    unsigned char *out = malloc(cap);
    cr_assert_not_null(out);
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_n = z.total_out;
    deflateEnd(&z);
    return out;
}

Test(hardening, idx_over_the_cap) {
    long live = rf_alloc_live();
    rf_ctx ctx;
    small_cap(&ctx);
    rf_tensor *t = NULL;
    /* 2 MiB of u8 images, all present */
    uint32_t dims[3] = {32, 256, 256};
    size_t n;
    unsigned char *b = idx_image(0x08, 3, dims, 2 * MIB, &n);
    cr_assert_eq(rf_idx_parse(&ctx, b, n, "big.idx", &t), RF_ERR_LIMIT, "%s", ctx.err);
    cr_assert_null(t);
    /* the same gzipped: a 2 KiB file that inflates past the cap (a gzip bomb) */
    size_t gn;
    unsigned char *gz = gzip_mem(b, n, &gn);
    cr_assert_lt(gn, 16 * KIB);
    char path[256];
    snprintf(path, sizeof path, "/tmp/rf_hard_idx_%d.gz", (int)getpid());
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(gz, 1, gn, f), gn);
    fclose(f);
    cr_assert_eq(rf_idx_read(&ctx, path, &t), RF_ERR_LIMIT, "%s", ctx.err);
    cr_assert_null(t);
    unlink(path);
    free(gz);
    free(b);
    /* 4 billion^3 floats declared, 16 bytes present: refused, nothing allocated */
    uint32_t huge[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    b = idx_image(0x0D, 3, huge, 16, &n);
    rf_ctx_init(&ctx);
    rf_status s = rf_idx_parse(&ctx, b, n, "huge.idx", &t);
    cr_assert(s != RF_OK && s != RF_ERR_NOMEM, "%s", rf_strerror(s));
    free(b);
    cr_assert_eq(rf_alloc_live(), live);
}

static unsigned char *npy_image(const char *shape, size_t data_bytes, size_t *n) {
    char dict[200];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape);
    size_t hdr = (10 + (size_t)len + 1 + 63) / 64 * 64;
    *n = hdr + data_bytes;
    unsigned char *b = calloc(1, *n);
    cr_assert_not_null(b);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hdr - 10);
    b[9] = (unsigned char)((hdr - 10) >> 8);
    memset(b + 10, ' ', hdr - 10);
    memcpy(b + 10, dict, (size_t)len);
    b[hdr - 1] = '\n';
    return b;
}

Test(hardening, npy_over_the_cap) {
    long live = rf_alloc_live();
    rf_ctx ctx;
    small_cap(&ctx);
    rf_tensor *t = NULL;
    size_t n;
    unsigned char *b = npy_image("(512, 1024)", 2 * MIB, &n);
    cr_assert_eq(rf_npy_parse(&ctx, b, n, "big.npy", &t), RF_ERR_LIMIT, "%s", ctx.err);
    cr_assert_null(t);
    free(b);
    b = npy_image("(1000000000, 1000000000)", 64, &n);
    rf_ctx_init(&ctx);
    rf_status s = rf_npy_parse(&ctx, b, n, "huge.npy", &t);
    cr_assert(s != RF_OK && s != RF_ERR_NOMEM, "%s", rf_strerror(s));
    free(b);
    b = npy_image("(4294967296, 4294967296, 4294967296)", 64, &n);   /* overflows 64 bits */
    s = rf_npy_parse(&ctx, b, n, "overflow.npy", &t);
    cr_assert(s != RF_OK && s != RF_ERR_NOMEM, "%s", rf_strerror(s));
    free(b);
    cr_assert_eq(rf_alloc_live(), live);
}

/* Recomputes the checksums of an encoded checkpoint after a test edited it
 * (layout: docs/checkpoint-format.md). */
static void ckpt_fix_crcs(unsigned char *b, size_t n) {
    uint64_t meta_len = rf_get_u32(b + 24), n_t = rf_get_u32(b + 28);
    size_t pos = 36 + (size_t)meta_len;
    for (uint64_t i = 0; i < n_t; i++) {
        pos += 2 + (size_t)(b[pos] | (b[pos + 1] << 8));
        pos += 4 + 8 * (size_t)b[pos + 2];
        uint64_t off = rf_get_u64(b + pos), size = rf_get_u64(b + pos + 8);
        rf_put_u32(b + pos + 32, rf_crc32c(0, b + off, (size_t)size));
        pos += 36;
    }
    rf_put_u32(b + n - 4, rf_crc32c(0, b, n - 4));
}

Test(hardening, checkpoint_over_the_cap) {
    long live = rf_alloc_live();
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    /* 4 MiB of zeros: a few hundred bytes on disk */
    int64_t shape[2] = {1024, 1024};
    float *z = calloc(1024 * 1024, sizeof *z);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_new(&ctx, &c), RF_OK);
    cr_assert_eq(rf_ckpt_add(&ctx, c, "w", RF_F32, 2, shape, RF_STORE_DENSE, z, NULL, NULL), RF_OK);
    unsigned char *buf; size_t n;
    cr_assert_eq(rf_ckpt_encode(&ctx, c, &buf, &n), RF_OK);
    rf_ckpt_free(c);
    free(z);
    cr_assert_lt(n, 64 * KIB);
    rf_ckpt *d = NULL;
    small_cap(&ctx);
    cr_assert_eq(rf_ckpt_decode(&ctx, buf, n, &d), RF_ERR_LIMIT, "%s", ctx.err);
    cr_assert_null(d);
    /* declare 2^20 x 2^20 (4 TiB) in the directory, raw size to match, checksums fixed */
    uint64_t meta_len = rf_get_u32(buf + 24);
    size_t pos = 36 + (size_t)meta_len;
    size_t name_len = (size_t)(buf[pos] | (buf[pos + 1] << 8));
    size_t dims = pos + 2 + name_len + 4;
    cr_assert_eq(buf[pos + 2 + name_len + 2], 2);   /* ndim */
    rf_put_u64(buf + dims, 1ull << 20);
    rf_put_u64(buf + dims + 8, 1ull << 20);
    rf_put_u64(buf + dims + 16 + 16, 4ull << 40);   /* raw_size after offset, size */
    ckpt_fix_crcs(buf, n);
    rf_ctx_init(&ctx);
    rf_status s = rf_ckpt_decode(&ctx, buf, n, &d);
    cr_assert_eq(s, RF_ERR_LIMIT, "%s: %s", rf_strerror(s), ctx.err);
    rf_free(buf);
    cr_assert_eq(rf_alloc_live(), live);
}

Test(hardening, safetensors_over_the_cap) {
    long live = rf_alloc_live();
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    /* a 2 MiB F32 tensor: the image is borrowed, the f32 copy is capped */
    int64_t shape[2] = {512, 1024};
    float *w = calloc(512 * 1024, sizeof *w);
    rf_st_entry e = {"w", 2, shape, w};
    unsigned char *img; size_t n;
    cr_assert_eq(rf_safetensors_encode_f32(&ctx, &e, 1, NULL, &img, &n), RF_OK);
    free(w);
    rf_safetensors *st = NULL;
    small_cap(&ctx);
    rf_status s = rf_safetensors_parse(&ctx, img, n, &st);
    if (s == RF_OK) {
        float *f = NULL;
        cr_assert_eq(rf_st_tensor_to_f32(&ctx, &st->t[0], &f), RF_ERR_LIMIT, "%s", ctx.err);
        cr_assert_null(f);
        rf_safetensors_free(st);
    } else {
        cr_assert_eq(s, RF_ERR_LIMIT, "%s", ctx.err);
    }
    rf_free(img);
    /* a header that declares 2^40 bytes of JSON, and a tensor of 2^40 x 2^40 */
    unsigned char h[8];
    rf_put_u64(h, 1ull << 40);
    rf_ctx_init(&ctx);
    s = rf_safetensors_parse(&ctx, h, sizeof h, &st);
    cr_assert(s != RF_OK && s != RF_ERR_NOMEM, "%s", rf_strerror(s));
    const char *js = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,16]}}";
    size_t jl = strlen(js);
    unsigned char *b = calloc(1, 8 + jl + 16);
    rf_put_u64(b, jl);
    memcpy(b + 8, js, jl);
    s = rf_safetensors_parse(&ctx, b, 8 + jl + 16, &st);
    cr_assert(s != RF_OK && s != RF_ERR_NOMEM, "%s", rf_strerror(s));
    free(b);
    cr_assert_eq(rf_alloc_live(), live);
}

Test(hardening, model_spec_over_the_cap) {
    long live = rf_alloc_live();
    rf_ctx ctx;
    small_cap(&ctx);
    rf_model *m = NULL;
    /* 784 x 1024 floats = 3 MiB of parameters (and as much again for grads) */
    rf_status s = rf_model_from_spec(&ctx, "{\"input\":[784],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":1024}]}", &m);
    int built = m != NULL;
    rf_model_free(m);   /* before asserting, so a failure here is not also reported as a leak */
    m = NULL;
    cr_assert_eq(s, RF_ERR_LIMIT, "784 x 1024 linear under a 1 MiB cap: %s: %s", rf_strerror(s), ctx.err);
    cr_assert_eq(built, 0);
    /* linear with out = 1e9 and a conv with 1e6 channels, default 8 GiB cap */
    static const char *const huge[] = {
        "{\"input\":[1,28,28],\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":1000000000}]}",
        "{\"input\":[1,28,28],\"layers\":[{\"type\":\"conv2d\",\"name\":\"c\",\"out\":1000000,\"kernel\":3}]}",
        "{\"input\":[100000,100000],\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":10}]}",
    };
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        rf_ctx_init(&ctx);
        s = rf_model_from_spec(&ctx, huge[i], &m);
        cr_assert(s == RF_ERR_LIMIT || s == RF_ERR_SPEC || s == RF_ERR_SHAPE, "spec %zu: %s: %s", i, rf_strerror(s), ctx.err);
        cr_assert_null(m);
    }
    cr_assert_eq(rf_alloc_live(), live);
}

/* ---- fault injection: the n-th allocation fails, for every n ---------------
 * A clean run of op first counts its allocations, M. Then for k = 0 .. M-1,
 * op runs with the k-th allocation failing (and every later one, as a real
 * out-of-memory would): each run must return an error, never crash, and
 * leave rf_alloc_live() where it started. (An op whose result checks pass
 * may also recover and return RF_OK; none of the paths here does.) check_live
 * = 0 skips the live count (see the cJSON variant). Returns M. */
typedef rf_status (*fault_op)(rf_ctx *ctx, void *ud);

static long inject_every_n(fault_op op, void *ud, const char *what, int check_live) {
    long base = rf_alloc_live();
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    unsigned long before = rf_alloc_count();
    cr_assert_eq(op(&ctx, ud), RF_OK, "%s: clean run failed: %s", what, ctx.err);
    long m = (long)(rf_alloc_count() - before);
    if (check_live) cr_assert_eq(rf_alloc_live(), base, "%s: clean run leaked", what);
    long recovered = 0, first = -1;
    for (long k = 0; k < m; k++) {
        rf_ctx_init(&ctx);
        rf_alloc_fail_after(k);
        rf_status s = op(&ctx, ud);
        rf_alloc_fail_after(-1);
        if (check_live)
            cr_assert_eq(rf_alloc_live(), base, "%s: failing allocation %ld of %ld leaked %ld blocks (%s)", what, k, m,
                         rf_alloc_live() - base, ctx.err);
        if (s == RF_OK && recovered++ == 0) first = k;
        else cr_assert_neq(ctx.err[0], '\0', "%s: allocation %ld: error without a message", what, k);
    }
    cr_log_info("%s: %ld allocations, each made to fail in turn", what, m);
    cr_assert_eq(recovered, 0, "%s: %ld of %ld failing allocations still returned RF_OK (first: %ld)", what, recovered, m,
                 first);
    return m;
}

static long inject_every(fault_op op, void *ud, const char *what) { return inject_every_n(op, ud, what, 1); }

typedef struct ckpt_case { char path[256]; } ckpt_case;

static rf_status build_and_write(rf_ctx *ctx, void *ud) {
    ckpt_case *cc = ud;
    float w[6 * 8], b[6], sc[6];
    int8_t q[6 * 8];
    for (int i = 0; i < 48; i++) { w[i] = (i % 3 == 0) ? 0.0f : (float)(i - 20) * 0.05f; q[i] = (int8_t)((i * 37) % 255 - 127); }
    for (int i = 0; i < 6; i++) { b[i] = (float)i; sc[i] = 0.01f * (float)(i + 1); }
    int64_t ws[2] = {6, 8}, bs[1] = {6};
    rf_ckpt *c = NULL;
    rf_status s = rf_ckpt_new(ctx, &c);
    if (!s) s = rf_ckpt_set_meta(ctx, c, "{\"spec\":{\"input\":[8]},\"seed\":1}");
    if (!s) s = rf_ckpt_add(ctx, c, "dense", RF_F32, 2, ws, RF_STORE_DENSE, w, NULL, NULL);
    if (!s) s = rf_ckpt_add(ctx, c, "sparse", RF_F32, 2, ws, RF_STORE_SPARSE, w, NULL, NULL);
    if (!s) s = rf_ckpt_add(ctx, c, "q", RF_I8, 2, ws, RF_STORE_INT8, q, NULL, sc);
    if (!s) s = rf_ckpt_add(ctx, c, "sq", RF_I8, 2, ws, RF_STORE_SPARSE_INT8, q, NULL, sc);
    if (!s) s = rf_ckpt_add(ctx, c, "bias", RF_F32, 1, bs, RF_STORE_DENSE, b, NULL, NULL);
    if (!s) s = rf_ckpt_write(ctx, c, cc->path);
    rf_ckpt_free(c);
    return s;
}

static rf_status read_and_expand(rf_ctx *ctx, void *ud) {
    ckpt_case *cc = ud;
    rf_ckpt *c = NULL;
    rf_status s = rf_ckpt_read(ctx, cc->path, &c);
    for (int i = 0; !s && i < c->n; i++) {
        float *f = NULL;
        s = rf_ckpt_tensor_to_f32(ctx, &c->t[i], &f);
        rf_free(f);
    }
    if (!s && c->n != 5) s = rf_error(ctx, RF_ERR_INTERNAL, "read back %d tensors", c->n);
    rf_ckpt_free(c);
    return s;
}

Test(hardening, checkpoint_write_and_read_every_allocation_fails) {
    ckpt_case cc;
    snprintf(cc.path, sizeof cc.path, "/tmp/rf_hard_ckpt_%d.rckpt", (int)getpid());
    long w = inject_every(build_and_write, &cc, "checkpoint write");
    long r = inject_every(read_and_expand, &cc, "checkpoint read");
    cr_assert_gt(w, 10);
    cr_assert_gt(r, 10);
    unlink(cc.path);
}

typedef struct model_case { char path[256]; rf_model *m; } model_case;

static rf_status model_save(rf_ctx *ctx, void *ud) {
    model_case *mc = ud;
    return rf_model_save(ctx, mc->m, "{\"note\":\"fault injection\"}", mc->path);
}

static rf_status model_load(rf_ctx *ctx, void *ud) {
    model_case *mc = ud;
    rf_model *m = NULL;
    rf_status s = rf_model_load(ctx, mc->path, &m);
    if (!s && m->n_params != mc->m->n_params) s = rf_error(ctx, RF_ERR_INTERNAL, "parameter count changed");
    rf_model_free(m);
    return s;
}

Test(hardening, model_save_and_load_every_allocation_fails) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    model_case mc;
    snprintf(mc.path, sizeof mc.path, "/tmp/rf_hard_model_%d.rckpt", (int)getpid());
    cr_assert_eq(rf_model_from_spec(&ctx, "{\"input\":[1,6,6],\"classes\":3,\"layers\":[{\"type\":\"conv2d\",\"name\":\"c\","
                                          "\"out\":2,\"kernel\":3},{\"type\":\"batchnorm\",\"name\":\"bn\"},{\"type\":\"relu\"},"
                                          "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}", &mc.m),
                 RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_model_init(&ctx, mc.m, 3), RF_OK);
    inject_every(model_save, &mc, "model save");
    inject_every(model_load, &mc, "model load");
    rf_model_free(mc.m);
    unlink(mc.path);
}

typedef struct job_case { unsigned char *text; size_t n; } job_case;

static rf_status job_parse(rf_ctx *ctx, void *ud) {
    job_case *jc = ud;
    rf_job *j = NULL;
    rf_status s = rf_job_parse(ctx, (const char *)jc->text, jc->n, "smoke", &j);
    if (!s && j->n_tasks < 8) s = rf_error(ctx, RF_ERR_INTERNAL, "only %d tasks", j->n_tasks);
    rf_job_free(j);
    return s;
}

static job_case load_smoke(void) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    job_case jc;
    cr_assert_eq(rf_read_file(&ctx, "jobs/smoke.json", &jc.text, &jc.n), RF_OK, "run from the repository root: %s", ctx.err);
    return jc;
}

Test(hardening, job_parse_every_allocation_fails) {
    job_case jc = load_smoke();
    long k = inject_every(job_parse, &jc, "job parse");
    cr_assert_gt(k, 5);
    rf_free(jc.text);
}

/* cJSON allocates with malloc, outside the hook. Within this test process
 * only (Criterion runs each test in its own process), route cJSON through
 * the hook too, so its failures are injected as well: the job parser must
 * then cope with cJSON returning NULL anywhere. Leaks of cJSON objects are
 * caught by LeakSanitizer under `make asan`; the live count is not checked
 * here because a cJSON string freed with free() (legal without hooks) would
 * unbalance it without leaking. */
static void *hook_malloc(size_t n) { return rf_malloc(n); }
static void hook_free(void *p) { rf_free(p); }

Test(hardening, job_parse_every_cjson_allocation_fails) {
    cJSON_Hooks h = {hook_malloc, hook_free};
    cJSON_InitHooks(&h);
    job_case jc = load_smoke();
    long k = inject_every_n(job_parse, &jc, "job parse with cJSON hooked", 0);
    cr_assert_gt(k, 100);
    rf_free(jc.text);
    cJSON_InitHooks(NULL);
}

/* ---- the task cap (finding 4) ----------------------------------------------- */

/* A job whose prune grid has `points` sparsities (plus its dense parent). */
static char *grid_job(int points) {
    size_t cap = 256 + (size_t)points * 8;
    char *j = malloc(cap);
    int n = snprintf(j, cap, "{\"name\": \"cap\", \"dataset\": \"synthetic:100\", \"model\": \"lenet-300-100\", "
                     "\"train\": {\"iterations\": 1}, \"experiments\": [{\"kind\": \"prune\", "
                     "\"method\": \"magnitude\", \"sparsity\": [");
    for (int i = 0; i < points; i++) n += snprintf(j + n, cap - (size_t)n, "%s%.4f", i ? "," : "", 0.5 + 0.4 * i / points);
    snprintf(j + n, cap - (size_t)n, "]}]}");
    return j;
}

Test(hardening, job_expansion_is_capped) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *job = NULL;
    ctx.task_cap = 50;
    /* a 60-point grid: refused before expanding anything */
    char *j = grid_job(60);
    rf_status s = rf_job_parse(&ctx, j, strlen(j), "cap.json", &job);
    cr_assert_eq(s, RF_ERR_JOB, "%s", ctx.err);
    cr_assert(strstr(ctx.err, "experiments[0]") && strstr(ctx.err, "more than 50 tasks") && strstr(ctx.err, "RAFFLE_MAX_TASKS"), "%s", ctx.err);
    free(j);
    /* 50 points fit the grid check, but with the dense parent the job has
     * 51 tasks: refused by the running count */
    j = grid_job(50);
    s = rf_job_parse(&ctx, j, strlen(j), "cap.json", &job);
    cr_assert_eq(s, RF_ERR_JOB, "%s", ctx.err);
    cr_assert(strstr(ctx.err, "more than 50 tasks") != NULL, "%s", ctx.err);
    /* the same job under a cap of 51 */
    ctx.task_cap = 51;
    cr_assert_eq(rf_job_parse(&ctx, j, strlen(j), "cap.json", &job), RF_OK, "%s", ctx.err);
    rf_job_free(job);
    free(j);
    /* the default and the environment */
    cr_assert_eq(rf_ctx_task_cap(NULL), (size_t)RF_TASK_CAP_DEFAULT);
    const char *vals[] = {"120", "abc", "12x", "", "3000000", "2000000"};
    size_t want[] = {120, 0, 0, 0, 0, 2000000};
    for (int i = 0; i < 6; i++) {
        setenv("RAFFLE_MAX_TASKS", vals[i], 1);
        rf_ctx c2;
        rf_ctx_init(&c2);
        cr_assert_eq(c2.task_cap, want[i], "RAFFLE_MAX_TASKS=%s gives %zu", vals[i], c2.task_cap);
    }
    unsetenv("RAFFLE_MAX_TASKS");
    ctx.task_cap = 5000000;   /* set directly: still never above the hard maximum */
    cr_assert_eq(rf_ctx_task_cap(&ctx), (size_t)RF_TASK_CAP_MAX);
}

/* ---- hostile report index and spool file ----------------------------------- */

Test(hardening, report_index_refuses_path_like_ids) {
    static const char *const bad[] = {
        "{\"tasks\":[{\"id\":\"../../../../etc/cron.d/x\",\"status\":\"done\"}]}",
        "{\"tasks\":[{\"id\":\"/etc/passwd\"}]}",
        "{\"tasks\":[{\"id\":\"0123456789ABCDEF\"}]}",      /* upper case is not what raffle writes */
        "{\"tasks\":[{\"id\":\"0123456789abcde\"}]}",       /* 15 digits */
        "{\"tasks\":[{\"id\":\"0123456789abcdef0\"}]}",     /* 17 digits */
        "{\"tasks\":[{\"id\":\"0123456789abcdef\",\"status\":3}]}",
        "{\"tasks\":[{\"id\":1234}]}",
        "{\"tasks\":[\"0123456789abcdef\"]}",
        "{\"tasks\":{}}",
        "[]",
        "{\"tasks\":[",
    };
    long live = rf_alloc_live();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        char (*ids)[17] = (void *)1;
        int n = -1;
        cr_assert_eq(rf_fetch_index_parse(&ctx, bad[i], strlen(bad[i]), &ids, &n), RF_ERR_FORMAT, "%s", bad[i]);
        cr_assert_null(ids);
        cr_assert_eq(n, 0);
        cr_assert_neq(ctx.err[0], '\0');
    }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    const char *ok = "{\"tasks\":[{\"id\":\"0123456789abcdef\",\"status\":\"done\"},{\"id\":\"fedcba9876543210\",\"status\":\"failed\"},"
                     "{\"id\":\"00000000000000ff\"}]}";
    char (*ids)[17];
    int n;
    cr_assert_eq(rf_fetch_index_parse(&ctx, ok, strlen(ok), &ids, &n), RF_OK, "%s", ctx.err);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ids[0], "0123456789abcdef");
    cr_assert_str_eq(ids[1], "00000000000000ff");
    rf_free(ids);
    /* the length is honoured: the same text cut short is not valid JSON */
    cr_assert_eq(rf_fetch_index_parse(&ctx, ok, strlen(ok) - 2, &ids, &n), RF_ERR_FORMAT);
    cr_assert_eq(rf_alloc_live(), live);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(hardening, mirror_spool_refuses_escaping_paths) {
    char dir[] = "/tmp/rf_hard_spool_XXXXXX", sp[300], q[320];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(sp, sizeof sp, "%s/.spool", dir);
    snprintf(q, sizeof q, "%s/queue", sp);
    cr_assert_eq(mkdir(sp, 0700), 0);
    static const char *const bad[] = {"report.json\n../../etc/passwd\n", "/etc/shadow\n", "tasks/../../x\n",
                                      ".spool/queue\n", "tasks//x\n", "tasks/x/\n", "a b\n", "tasks/\x01\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(q, bad[i]);
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        rf_mirror *m = NULL;
        cr_assert_eq(rf_mirror_open(&ctx, "http://127.0.0.1:9/store/", dir, &m), RF_ERR_FORMAT, "'%s'", bad[i]);
        cr_assert_null(m);
        cr_assert(strstr(ctx.err, "queue") != NULL, "%s", ctx.err);
    }
    write_text(q, "report.json\ntasks/0123456789abcdef/model.rckpt\n\nstatus.json\n");
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_mirror *m = NULL;
    cr_assert_eq(rf_mirror_open(&ctx, "http://127.0.0.1:9/store/", dir, &m), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_mirror_push(&ctx, m, "../outside"), RF_ERR_INVALID);
    cr_assert_eq(rf_mirror_push(&ctx, m, "/abs"), RF_ERR_INVALID);
    rf_mirror_free(m);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- a full disk under the results store ------------------------------------
 * A 64 KiB tmpfs is mounted as the store root (needs root and mount rights:
 * skipped with a message otherwise). Writes that do not fit must fail with a
 * clear RF_ERR_IO, leave the previous file and no temp file behind, and the
 * ledger must stay replayable: every event appended before or after the
 * failure is read back (a line torn by the failed append may be counted as
 * bad, but must not swallow the next event). */

static char tiny_root[64];
static rf_store *tiny_store;   /* closed by the .fini even when an assertion stopped the test */

static int mount_tiny(void) {
    int e;
    snprintf(tiny_root, sizeof tiny_root, "/tmp/rf_hard_tmpfs_XXXXXX");
    if (!mkdtemp(tiny_root)) return -1;
    if (mount("tmpfs", tiny_root, "tmpfs", 0, "size=64k") != 0) { e = errno; rmdir(tiny_root); tiny_root[0] = '\0'; errno = e; return -1; }
    return 0;
}

static void unmount_tiny(void) {   /* .fini: runs even when an assertion stopped the test */
    rf_store_close(tiny_store);
    tiny_store = NULL;
    if (!tiny_root[0]) return;
    umount2(tiny_root, MNT_DETACH);   /* lazy: the failed test may still hold fds in it */
    rmdir(tiny_root);
}

/* Names in dir that look like temp files (".tmp" anywhere). */
static int count_temps(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*.tmp*' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) { if (fscanf(p, "%d", &n) != 1) n = -1; pclose(p); }
    return n;
}

typedef struct seen { int n; int has[8]; } seen;

static int on_event(void *ud, const cJSON *ev) {
    seen *s = ud;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "seq");
    if (cJSON_IsNumber(t) && t->valueint >= 0 && t->valueint < 8) s->has[t->valueint] = 1;
    s->n++;
    return 0;
}

static rf_status append_seq(rf_ctx *ctx, rf_store *st, int seq, size_t pad) {
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", "queued");
    cJSON_AddStringToObject(ev, "task", "0123456789abcdef");
    cJSON_AddNumberToObject(ev, "seq", seq);
    char *p = calloc(1, pad + 1);
    memset(p, 'x', pad);
    cJSON_AddStringToObject(ev, "pad", p);
    free(p);
    rf_status s = rf_store_ledger_append(ctx, st, ev, 1);
    cJSON_Delete(ev);
    return s;
}

static size_t ledger_size(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/s/ledger.jsonl", tiny_root);
    struct stat sb;
    return stat(p, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* Fills the file system with one file; returns its path (to remove later). */
static void fill_disk(char *path, size_t n) {
    snprintf(path, n, "%s/filler", tiny_root);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    char block[512];
    memset(block, 'f', sizeof block);
    while (fwrite(block, 1, sizeof block, f) == sizeof block) {}
    fclose(f);
}

Test(hardening, store_full_disk_stays_consistent, .fini = unmount_tiny) {
    if (mount_tiny() != 0) cr_skip_test("cannot mount a 64 KiB tmpfs (%s): not root or no mount rights", strerror(errno));
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cr_assert_eq(rf_store_open(&ctx, tiny_root, "s", 1, &tiny_store), RF_OK, "%s", ctx.err);
    rf_store *st = tiny_store;
    cr_assert_eq(append_seq(&ctx, st, 0, 0), RF_OK, "%s", ctx.err);
    const char *rel = "tasks/0123456789abcdef/metrics.json";
    cr_assert_eq(rf_store_write(&ctx, st, rel, "{\"a\":1}", 7), RF_OK, "%s", ctx.err);

    /* an overwrite that cannot fit: clear error, old file intact, no temp */
    size_t big = 256 * KIB;
    char *data = malloc(big);
    memset(data, '7', big);
    rf_status s = rf_store_write(&ctx, st, rel, data, big);
    cr_assert_eq(s, RF_ERR_IO, "%s: %s", rf_strerror(s), ctx.err);
    cr_assert(strstr(ctx.err, strerror(ENOSPC)) != NULL, "message does not say why: %s", ctx.err);
    unsigned char *b; size_t n;
    cr_assert_eq(rf_store_read(&ctx, st, rel, &b, &n), RF_OK);
    cr_assert_eq(n, 7);
    cr_assert_eq(memcmp(b, "{\"a\":1}", 7), 0);
    rf_free(b);
    cr_assert_eq(count_temps(tiny_root), 0);

    /* a streamed checkpoint that cannot fit: nothing published, no temp */
    rf_store_file *f = NULL;
    cr_assert_eq(rf_store_file_begin(&ctx, st, "tasks/0123456789abcdef/model.rckpt", &f), RF_OK, "%s", ctx.err);
    s = RF_OK;
    for (int i = 0; i < 4 && !s; i++) s = rf_store_file_write(&ctx, f, data, big / 4);
    if (s) rf_store_file_abort(f);
    else s = rf_store_file_commit(&ctx, f);
    cr_assert_eq(s, RF_ERR_IO, "%s: %s", rf_strerror(s), ctx.err);
    cr_assert_eq(rf_store_stat(st, "tasks/0123456789abcdef/model.rckpt", NULL), -1);
    cr_assert_eq(count_temps(tiny_root), 0);
    free(data);

    /* the ledger: end its last page 40 bytes short, fill the disk, append a
     * longer event (torn by ENOSPC), free space, append again */
    cr_assert_eq(append_seq(&ctx, st, 1, 0), RF_OK, "%s", ctx.err);
    size_t l1 = ledger_size();
    cr_assert_eq(append_seq(&ctx, st, 2, 0), RF_OK);
    size_t line = ledger_size() - l1;
    size_t want = 4096 - 40, now = ledger_size();
    cr_assert_lt(now + line, want);
    cr_assert_eq(append_seq(&ctx, st, 3, want - now - line), RF_OK, "%s", ctx.err);
    cr_assert_eq(ledger_size(), want);
    char filler[128];
    fill_disk(filler, sizeof filler);
    s = append_seq(&ctx, st, 4, 100);
    cr_assert_eq(s, RF_ERR_IO, "append on a full disk: %s: %s", rf_strerror(s), ctx.err);
    cr_assert(strstr(ctx.err, strerror(ENOSPC)) != NULL, "%s", ctx.err);
    unlink(filler);
    cr_assert_eq(append_seq(&ctx, st, 5, 0), RF_OK, "%s", ctx.err);
    seen sn = {0, {0}};
    int bad = -1;
    cr_assert_eq(rf_store_ledger_replay(&ctx, st, on_event, &sn, &bad), RF_OK, "%s", ctx.err);
    for (int i = 0; i <= 3; i++) cr_assert(sn.has[i], "event %d lost", i);
    cr_assert(sn.has[5], "the event appended after the failed one was lost (torn line swallowed it; %d bad lines)", bad);
    cr_assert_leq(bad, 1);
    rf_store_close(st);
    tiny_store = NULL;

    /* reopened (a resumed sweep): the same events, and appends work */
    cr_assert_eq(rf_store_open(&ctx, tiny_root, "s", 0, &tiny_store), RF_OK, "%s", ctx.err);
    st = tiny_store;
    cr_assert_eq(append_seq(&ctx, st, 6, 0), RF_OK, "%s", ctx.err);
    memset(&sn, 0, sizeof sn);
    cr_assert_eq(rf_store_ledger_replay(&ctx, st, on_event, &sn, &bad), RF_OK);
    cr_assert(sn.has[6] && sn.has[0] && sn.has[3]);
}
