/* Core: status names, ctx errors, allocation hook, tensors, arena, RNG, CRC, atomic files. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raffle/core.h"

Test(core, strerror_names_every_status) {
    for (int s = 0; s < RF_STATUS_COUNT_; s++) cr_assert_str_neq(rf_strerror((rf_status)s), "unknown status");
    cr_assert_str_eq(rf_strerror((rf_status)999), "unknown status");
    cr_assert_eq(RF_ERR_CHECKSUM, 7);  /* values are part of the ABI */
}

Test(core, ctx_error_and_prefix) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_str_eq(rf_ctx_error(&ctx), "");
    rf_status s = rf_error(&ctx, RF_ERR_IO, "%s: boom", "f.bin");
    cr_assert_eq(s, RF_ERR_IO);
    rf_error_prefix(&ctx, "loading %d", 3);
    cr_assert_str_eq(rf_ctx_error(&ctx), "loading 3: f.bin: boom");
    cr_assert_eq(rf_check_cap(&ctx, 1ull << 40, "x"), RF_ERR_LIMIT);
    ctx.mem_cap = 100;
    cr_assert_eq(rf_check_cap(&ctx, 100, "x"), RF_OK);
    cr_assert_eq(rf_check_cap(&ctx, 101, "x"), RF_ERR_LIMIT);
}

Test(core, alloc_fail_injection) {
    rf_alloc_fail_after(2);
    void *a = rf_malloc(8), *b = rf_malloc(8), *c = rf_malloc(8);
    cr_assert(a && b);
    cr_assert_null(c);
    rf_alloc_fail_after(-1);
    void *d = rf_malloc(8);
    cr_assert_not_null(d);
    rf_free(a); rf_free(b); rf_free(d);
    cr_assert_null(rf_calloc(SIZE_MAX / 2, 4));
}

Test(core, tensor_new_view_free) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int64_t shape[3] = {2, 3, 4};
    rf_tensor *t;
    cr_assert_eq(rf_tensor_new(&ctx, RF_F32, 3, shape, &t), RF_OK);
    cr_assert_eq(rf_tensor_numel(t), 24);
    cr_assert_eq(t->stride[0], 12); cr_assert_eq(t->stride[2], 1);
    for (int i = 0; i < 24; i++) cr_assert_eq(((float *)t->data)[i], 0.0f);
    rf_tensor_free(t);
    int64_t bad[1] = {-1};
    cr_assert_eq(rf_tensor_new(&ctx, RF_F32, 1, bad, &t), RF_ERR_INVALID);
    int64_t huge[2] = {1ll << 40, 1ll << 20};
    cr_assert_eq(rf_tensor_new(&ctx, RF_F32, 2, huge, &t), RF_ERR_LIMIT);
    int8_t buf[6];
    rf_tensor v;
    int64_t s2[2] = {2, 3};
    cr_assert_eq(rf_tensor_view(&ctx, &v, RF_I8, 2, s2, buf), RF_OK);
    cr_assert_eq(v.owns, 0);
    cr_assert_eq(rf_dtype_size(RF_I64), 8);
    cr_assert_eq(rf_dtype_from_name("u8"), RF_U8);
    cr_assert_eq(rf_dtype_from_name("f16"), -1);
}

Test(core, arena_alignment_and_overflow) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_arena a;
    cr_assert_eq(rf_arena_init(&ctx, &a, 1024), RF_OK);
    void *p = rf_arena_alloc(&ctx, &a, 10), *q = rf_arena_alloc(&ctx, &a, 10);
    cr_assert_eq(((uintptr_t)p) % 64, 0); cr_assert_eq(((uintptr_t)q) % 64, 0);
    cr_assert_null(rf_arena_alloc(&ctx, &a, 2048));
    cr_assert_eq(ctx.status, RF_ERR_NOMEM);
    rf_arena_reset(&a);
    cr_assert_not_null(rf_arena_alloc(&ctx, &a, 1024));
    rf_arena_free(&a);
}

Test(core, rng_is_counter_based_and_reproducible) {
    rf_rng a, b, c;
    rf_rng_init(&a, 42, 7); rf_rng_init(&b, 42, 7); rf_rng_init(&c, 42, 8);
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = rf_rng_u32(&a);
        cr_assert_eq(x, rf_rng_u32(&b));
        same_c += x == rf_rng_u32(&c);
    }
    cr_assert_lt(same_c, 3);
    /* Philox4x32-10 known-answer test (Random123 kat_vectors: ctr=0, key=0). */
    rf_rng k; rf_rng_init(&k, 0, 0);
    cr_assert_eq(rf_rng_u32(&k), 0x6627e8d5u);
    cr_assert_eq(rf_rng_u32(&k), 0xe169c58du);
    cr_assert_eq(rf_rng_u32(&k), 0xbc57ac4cu);
    cr_assert_eq(rf_rng_u32(&k), 0x9b00dbd8u);
    /* uniform/normal moments */
    rf_rng r; rf_rng_init(&r, 1, 0);
    double s = 0, s2 = 0, u = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) { double z = rf_rng_normal(&r); s += z; s2 += z * z; u += rf_rng_uniform(&r); }
    cr_assert_lt(fabs(s / n), 0.01);
    cr_assert_lt(fabs(s2 / n - 1.0), 0.02);
    cr_assert_lt(fabs(u / n - 0.5), 0.005);
    int hist[7] = {0};
    for (int i = 0; i < 70000; i++) hist[rf_rng_below(&r, 7)]++;
    for (int i = 0; i < 7; i++) cr_assert(hist[i] > 9500 && hist[i] < 10500);
    uint32_t v[100];
    for (int i = 0; i < 100; i++) v[i] = (uint32_t)i;
    rf_rng_shuffle_u32(&r, v, 100);
    int seen[100] = {0};
    for (int i = 0; i < 100; i++) seen[v[i]]++;
    for (int i = 0; i < 100; i++) cr_assert_eq(seen[i], 1);
}

Test(core, crc32c_known_answer) {
    cr_assert_eq(rf_crc32c(0, "123456789", 9), 0xE3069283u);
    uint32_t part = rf_crc32c(0, "1234", 4);
    cr_assert_eq(rf_crc32c(part, "56789", 5), 0xE3069283u);
}

/* The dispatched CRC (SSE4.2 where the CPU has it) equals the table
 * version at every length 0-300 and alignment 0-7, and when continued. */
Test(core, crc32c_matches_ref) {
    unsigned char buf[320];
    rf_rng r;
    rf_rng_init(&r, 3, 0);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)rf_rng_u32(&r);
    cr_assert_eq(rf_crc32c_ref(0, "123456789", 9), 0xE3069283u);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= 308; n++) {
            uint32_t want = rf_crc32c_ref(0x1234u, buf + off, n);
            cr_assert_eq(rf_crc32c(0x1234u, buf + off, n), want, "offset %zu length %zu", off, n);
        }
    uint32_t part = rf_crc32c(0, buf + 1, 100);
    cr_assert_eq(rf_crc32c(part, buf + 101, 150), rf_crc32c_ref(0, buf + 1, 250));
}

Test(core, atomic_write_and_read) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    char dir[] = "/tmp/rf_core_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/file.bin", dir);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    cr_assert_eq(rf_mkdirs(&ctx, sub), RF_OK);
    cr_assert_eq(rf_write_file_atomic(&ctx, path, "hello", 5), RF_OK);
    unsigned char *buf; size_t n;
    cr_assert_eq(rf_read_file(&ctx, path, &buf, &n), RF_OK);
    cr_assert_eq(n, 5); cr_assert_eq(memcmp(buf, "hello", 5), 0);
    rf_free(buf);
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_eq(rf_read_file(&ctx, path, &buf, &n), RF_ERR_NOTFOUND);
    snprintf(path, sizeof path, "%s/nodir/x", dir);
    cr_assert_eq(rf_write_file_atomic(&ctx, path, "x", 1), RF_ERR_IO);
    char cmd[300]; snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
