/* Low-bit compression on plain arrays (include/raffle/lowbit.h): k-means
 * weight sharing against a hand-computed codebook and a linear-scan
 * reference, centroid gradients, group (int4) quantization against
 * hand-computed integers, N:M masks against hand-computed masks, every
 * rejection of a bad setting, and each result stored in and read back from
 * its checkpoint kind bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/ckpt.h"
#include "raffle/lowbit.h"

/* A rejection's message: names what (text) and is one line. */
#define ASSERT_ERR(ctx, text) do { \
        cr_assert(strstr(rf_ctx_error(ctx), (text)), "'%s' lacks '%s'", rf_ctx_error(ctx), (text)); \
        cr_assert_null(strchr(rf_ctx_error(ctx), '\n'), "not one line: %s", rf_ctx_error(ctx)); \
    } while (0)

static rf_ckpt *decoded(rf_ckpt *c) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char *b; size_t n;
    cr_assert_eq(rf_ckpt_encode(&ctx, c, &b, &n), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_ckpt *d;
    cr_assert_eq(rf_ckpt_decode(&ctx, b, n, &d), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_free(b);
    return d;
}

/* ---- k-means ------------------------------------------------------------------ */

/* Deep Compression §3 by hand, 2 bits. Kept weights -1, -0.75, 0.125, 0.25,
 * 0.875, 1, 0.5 (index 2 is pruned); linear init over [-1, 1]: -1, -1/3, 1/3,
 * 1. Round 1 assigns {-1, -0.75} -> 0, {0.125, 0.25, 0.5} -> 2, {0.875, 1}
 * -> 3; centroid 1 gets nothing and keeps -1/3; means -0.875, 0.875/3,
 * 0.9375. Round 2 changes nothing: converged after 2 rounds. */
Test(kmeans, hand_computed_codebook) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float w[8] = {-1.0f, -0.75f, 0.0f, 0.125f, 0.25f, 0.875f, 1.0f, 0.5f};
    const uint8_t m[8] = {1, 1, 0, 1, 1, 1, 1, 1};
    float cb[4];
    uint8_t idx[8];
    rf_kmeans_info info;
    cr_assert_eq(rf_kmeans_share(&ctx, w, m, 8, 2, 0, cb, idx, &info), RF_OK, "%s", rf_ctx_error(&ctx));
    const float want_cb[4] = {-0.875f, (float)(-1.0 / 3.0), (float)(0.875 / 3.0), 0.9375f};
    const uint8_t want_idx[8] = {0, 0, 0, 2, 2, 3, 3, 2};
    for (int j = 0; j < 4; j++) cr_assert_eq(cb[j], want_cb[j], "c%d = %.9g, want %.9g", j, cb[j], want_cb[j]);
    cr_assert_eq(memcmp(idx, want_idx, 8), 0);
    cr_assert_eq(info.iterations, 2);
    cr_assert_eq(info.converged, 1);
    cr_assert_eq(info.kept, 7);
    cr_assert_eq(info.empty, 1);
    float back[8];
    rf_kmeans_decode(cb, idx, m, 8, back);
    cr_assert_eq(back[2], 0.0f, "pruned weight stays 0");
    cr_assert_eq(back[7], want_cb[2]);
}

/* A weight halfway between two centroids goes to the lower index: kept 0, 3,
 * 1.5 at 2 bits start from 0, 1, 2, 3, and 1.5 is 0.5 from both 1 and 2. */
Test(kmeans, tie_goes_to_lower_index) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float w[3] = {0.0f, 3.0f, 1.5f};
    float cb[8];
    uint8_t idx[3];
    rf_kmeans_info info;
    cr_assert_eq(rf_kmeans_share(&ctx, w, NULL, 3, 2, 0, cb, idx, &info), RF_OK);
    cr_assert_eq(idx[0], 0); cr_assert_eq(idx[1], 3); cr_assert_eq(idx[2], 1);
    cr_assert_eq(cb[1], 1.5f);
    cr_assert_eq(cb[2], 2.0f, "empty centroid keeps its initial value");
    /* all weights equal: every centroid starts at that value, all go to 0 */
    const float same[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    uint8_t i4[4];
    cr_assert_eq(rf_kmeans_share(&ctx, same, NULL, 4, 3, 0, cb, i4, &info), RF_OK);
    for (int i = 0; i < 4; i++) cr_assert_eq(i4[i], 0);
    cr_assert_eq(info.empty, 7);
}

/* Linear-scan Lloyd with the documented rules, the test's own reference. */
static void kmeans_scan_ref(const float *w, const uint8_t *m, size_t n, int bits, float *cb, uint8_t *idx) {
    int k = 1 << bits;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) if (!m || m[i]) { lo = fminf(lo, w[i]); hi = fmaxf(hi, w[i]); }
    for (int j = 0; j < k; j++) cb[j] = (float)((double)lo + ((double)hi - (double)lo) * j / (k - 1));
    memset(idx, 0, n);
    for (int it = 0; it < 1000; it++) {
        int changed = it == 0;
        for (size_t i = 0; i < n; i++) {
            if (m && !m[i]) continue;
            int best = 0;
            for (int j = 1; j < k; j++)
                if (fabs((double)w[i] - cb[j]) < fabs((double)w[i] - cb[best])) best = j;
            changed |= best != idx[i];
            idx[i] = (uint8_t)best;
        }
        double sum[256] = {0};
        size_t cnt[256] = {0};
        for (size_t i = 0; i < n; i++) if (!m || m[i]) { sum[idx[i]] += w[i]; cnt[idx[i]]++; }
        for (int j = 0; j < k; j++) if (cnt[j]) cb[j] = (float)(sum[j] / (double)cnt[j]);
        if (!changed) break;
    }
}

Test(kmeans, matches_linear_scan_reference_and_is_deterministic) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 21, 0);
    enum { N = 3000 };
    static float w[N];
    static uint8_t m[N], idx[N], ridx[N], idx2[N];
    for (int i = 0; i < N; i++) {
        w[i] = 0.05f * rf_rng_normal(&r);
        if (i % 97 == 0) w[i] = 0.25f;            /* repeated values */
        m[i] = rf_rng_uniform(&r) < 0.4f;
    }
    for (int bits = 2; bits <= 8; bits++) {
        float cb[256], rcb[256], cb2[256];
        rf_kmeans_info info;
        cr_assert_eq(rf_kmeans_share(&ctx, w, m, N, bits, 0, cb, idx, &info), RF_OK);
        cr_assert(info.converged, "bits %d: not converged in %d rounds", bits, info.iterations);
        kmeans_scan_ref(w, m, N, bits, rcb, ridx);
        cr_assert_eq(memcmp(cb, rcb, sizeof(float) << bits), 0, "bits %d: codebook differs from the linear scan", bits);
        for (int i = 0; i < N; i++) if (m[i]) cr_assert_eq(idx[i], ridx[i], "bits %d: index %d", bits, i);
        for (int i = 0; i < N; i++) if (!m[i]) cr_assert_eq(idx[i], 0);
        cr_assert_eq(rf_kmeans_share(&ctx, w, m, N, bits, 0, cb2, idx2, NULL), RF_OK);
        cr_assert_eq(memcmp(cb, cb2, sizeof(float) << bits), 0);
        cr_assert_eq(memcmp(idx, idx2, N), 0);
        /* each kept weight's centroid is a nearest one */
        for (int i = 0; i < N; i++) {
            if (!m[i]) continue;
            double d = fabs((double)w[i] - cb[idx[i]]);
            for (int j = 0; j < 1 << bits; j++) cr_assert(fabs((double)w[i] - cb[j]) >= d);
        }
    }
    /* max_iter caps the rounds */
    rf_kmeans_info info;
    float cb[256];
    cr_assert_eq(rf_kmeans_share(&ctx, w, m, N, 8, 1, cb, idx, &info), RF_OK);
    cr_assert_eq(info.iterations, 1);
    cr_assert_eq(info.converged, 0);
}

Test(kmeans, rejects_bad_settings_and_handles_empty) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float w[4] = {1, 2, 3, 4}, cb[512];
    uint8_t idx[4], m0[4] = {0};
    cr_assert_eq(rf_kmeans_share(&ctx, w, NULL, 4, 1, 0, cb, idx, NULL), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "bits 1");
    cr_assert_eq(rf_kmeans_share(&ctx, w, NULL, 4, 9, 0, cb, idx, NULL), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "bits 9");
    w[2] = NAN;
    cr_assert_eq(rf_kmeans_share(&ctx, w, NULL, 4, 4, 0, cb, idx, NULL), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "weight 2");
    /* a NaN in a pruned position is never looked at */
    uint8_t m[4] = {1, 1, 0, 1};
    cr_assert_eq(rf_kmeans_share(&ctx, w, m, 4, 2, 0, cb, idx, NULL), RF_OK);
    /* nothing kept: zero codebook */
    rf_kmeans_info info;
    cr_assert_eq(rf_kmeans_share(&ctx, w, m0, 4, 3, 0, cb, idx, &info), RF_OK);
    for (int j = 0; j < 8; j++) cr_assert_eq(cb[j], 0.0f);
    cr_assert_eq(info.kept, 0);
}

/* Deep Compression eq. 3: the gradient of a shared value is the sum of the
 * gradients of its weights; pruned weights contribute nothing. */
Test(kmeans, centroid_gradient_and_step) {
    const uint8_t idx[6] = {0, 2, 2, 1, 0, 2}, m[6] = {1, 1, 1, 1, 0, 1};
    const float g[6] = {0.5f, -1.0f, 0.25f, 2.0f, 100.0f, 0.125f};
    float cg[4];
    rf_kmeans_centroid_grad(g, idx, m, 6, 2, cg);
    cr_assert_eq(cg[0], 0.5f);
    cr_assert_eq(cg[1], 2.0f);
    cr_assert_eq(cg[2], -0.625f);
    cr_assert_eq(cg[3], 0.0f);
    float cb[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    rf_kmeans_sgd_step(cb, cg, 2, 0.5f);
    cr_assert_eq(cb[0], 0.75f); cr_assert_eq(cb[1], 1.0f); cr_assert_eq(cb[2], 3.3125f); cr_assert_eq(cb[3], 4.0f);
    float w[6];
    rf_kmeans_decode(cb, idx, m, 6, w);
    cr_assert_eq(w[1], 3.3125f); cr_assert_eq(w[4], 0.0f); cr_assert_eq(w[3], 1.0f);
}

/* Shared weights of a pruned layer through the sparse-codebook kind and back:
 * indices, mask and codebook bit for bit, and the float view equal to
 * rf_kmeans_decode. */
Test(kmeans, checkpoint_roundtrip_bit_exact) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 5, 0);
    enum { R = 30, C = 50, N = R * C };
    static float w[N], back[N];
    static uint8_t m[N], idx[N];
    for (int i = 0; i < N; i++) { w[i] = 0.1f * rf_rng_normal(&r); m[i] = rf_rng_uniform(&r) < 0.2f; }
    for (int bits = 2; bits <= 8; bits += 3) {
        float cb[256];
        cr_assert_eq(rf_kmeans_share(&ctx, w, m, N, bits, 0, cb, idx, NULL), RF_OK);
        rf_ckpt *c;
        cr_assert_eq(rf_ckpt_new(&ctx, &c), RF_OK);
        int64_t shape[2] = {R, C};
        cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "fc.weight", 2, shape, idx, m, bits, cb), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(rf_ckpt_add_codebook(&ctx, c, "dense.weight", 2, shape, idx, NULL, bits, cb), RF_OK, "%s", rf_ctx_error(&ctx));
        rf_ckpt *d = decoded(c);
        const rf_ckpt_tensor *t = rf_ckpt_find(d, "fc.weight"), *u = rf_ckpt_find(d, "dense.weight");
        cr_assert_eq(t->storage, RF_STORE_SPARSE_CODEBOOK);
        cr_assert_eq(u->storage, RF_STORE_CODEBOOK);
        cr_assert_eq(t->bits, bits);
        cr_assert_eq(memcmp(t->codebook, cb, sizeof(float) << bits), 0);
        cr_assert_eq(memcmp(t->mask, m, N), 0);
        cr_assert_eq(memcmp(t->data, idx, N), 0);   /* pruned entries are index 0 on both sides */
        cr_assert_eq(memcmp(u->data, idx, N), 0);
        float *f;
        cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, t, &f), RF_OK);
        rf_kmeans_decode(cb, idx, m, N, back);
        cr_assert_eq(memcmp(f, back, sizeof back), 0);
        rf_free(f);
        rf_ckpt_free(c); rf_ckpt_free(d);
    }
}

/* ---- group (int4) quantization ----------------------------------------------- */

/* Symmetric 4 bits, one group of 32: max |w| = 1.75 gives s = 1.75 / 7 =
 * 0.25; 0.375 / s = 1.5 -> 2 and 0.625 / s = 2.5 -> 2 (ties to even),
 * -0.125 / s = -0.5 -> 0, 1.0 -> 4. The second group is all zero: scale 1. */
Test(groupq, hand_computed_symmetric) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float w[64] = {0};
    w[0] = -1.75f; w[1] = 0.375f; w[2] = 0.625f; w[3] = -0.125f; w[4] = 1.0f;
    int8_t q[64];
    float s[2];
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 4, 32, RF_GROUP_SYMMETRIC, q, s, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(s[0], 0.25f);
    cr_assert_eq(s[1], 1.0f);
    const int8_t want[5] = {-7, 2, 2, 0, 4};
    for (int k = 0; k < 5; k++) cr_assert_eq(q[k], want[k], "q[%d] = %d", k, q[k]);
    for (int k = 5; k < 64; k++) cr_assert_eq(q[k], 0);
    /* 2 bits: qmax 1, s = 1.75; 1.0 / 1.75 = 0.57 -> 1 */
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 2, 32, RF_GROUP_SYMMETRIC, q, s, NULL), RF_OK);
    cr_assert_eq(s[0], 1.75f);
    cr_assert_eq(q[0], -1); cr_assert_eq(q[4], 1); cr_assert_eq(q[1], 0);
}

/* Affine 4 bits: range [-0.5, 1.0], s = 1.5 / 15 (0.1f), z = round(0.5 / s)
 * = 5; -0.5 -> 0, 0 -> 5 (exact zero), 0.25 -> 2 + 5 = 7, 1.0 -> 10 + 5 = 15.
 * A group of positive weights only has its range widened to 0: [0, 3], s =
 * 0.2, z = 0. */
Test(groupq, hand_computed_affine) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float w[64] = {0};
    w[0] = -0.5f; w[1] = 0.25f; w[2] = 1.0f;
    w[32] = 3.0f; w[33] = 1.0f;
    int8_t q[64];
    float s[2];
    int32_t z[2];
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 4, 32, RF_GROUP_AFFINE, q, s, z), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(s[0], 1.5f / 15.0f);
    cr_assert_eq(z[0], 5);
    cr_assert_eq(q[0], 0); cr_assert_eq(q[1], 7); cr_assert_eq(q[2], 15); cr_assert_eq(q[3], 5);
    cr_assert_eq(s[1], 3.0f / 15.0f);
    cr_assert_eq(z[1], 0);
    cr_assert_eq(q[32], 15); cr_assert_eq(q[33], 5); cr_assert_eq(q[34], 0);
    float back[64];
    rf_group_dequantize(q, 1, 64, 32, s, z, back);
    cr_assert_eq(back[3], 0.0f, "zero stays exact");
    cr_assert_eq(back[34], 0.0f);
}

/* Random rows: every weight within half a step of its dequantized value, in
 * both modes and at every group size and bit width. */
Test(groupq, error_within_half_a_step) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 3, 0);
    enum { R = 6, C = 256 };
    static float w[R * C], back[R * C];
    static int8_t q[R * C];
    float s[R * C / 32];
    int32_t z[R * C / 32];
    for (int i = 0; i < R * C; i++) w[i] = rf_rng_normal(&r);
    for (int gs = 32; gs <= 128; gs *= 2)
        for (int bits = 2; bits <= 4; bits++)
            for (int mode = 0; mode < 2; mode++) {
                int32_t *zp = mode ? z : NULL;
                cr_assert_eq(rf_group_quantize(&ctx, w, R, C, bits, gs, (rf_group_mode)mode, q, s, zp), RF_OK);
                rf_group_dequantize(q, R, C, gs, s, zp, back);
                for (int i = 0; i < R * C; i++) {
                    float step = s[(i / C) * (C / gs) + (i % C) / gs];
                    cr_assert(fabsf(w[i] - back[i]) <= 0.5f * step * 1.0001f, "gs %d bits %d mode %d: %g vs %g (step %g)", gs, bits,
                              mode, w[i], back[i], step);
                    if (mode) cr_assert(q[i] >= 0 && q[i] <= (1 << bits) - 1);
                    else cr_assert(abs(q[i]) <= (1 << (bits - 1)) - 1);
                }
            }
}

Test(groupq, rejects_bad_settings) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float w[200] = {0}, s[8];
    int8_t q[200];
    int32_t z[8];
    cr_assert_eq(rf_group_quantize(&ctx, w, 2, 100, 4, 64, RF_GROUP_SYMMETRIC, q, s, NULL), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "does not divide the row length 100");
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 96, 4, 48, RF_GROUP_SYMMETRIC, q, s, NULL), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "group size 48");
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 5, 32, RF_GROUP_SYMMETRIC, q, s, NULL), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "bits 5");
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 1, 32, RF_GROUP_SYMMETRIC, q, s, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 4, 32, RF_GROUP_AFFINE, q, s, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 4, 32, RF_GROUP_SYMMETRIC, q, s, z), RF_ERR_INVALID);
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 4, 32, (rf_group_mode)7, q, s, NULL), RF_ERR_INVALID);
    w[5] = INFINITY;
    cr_assert_eq(rf_group_quantize(&ctx, w, 1, 64, 4, 32, RF_GROUP_SYMMETRIC, q, s, NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_group_mode_from_name("affine"), RF_GROUP_AFFINE);
    cr_assert_eq(rf_group_mode_from_name("asym"), -1);
}

Test(groupq, checkpoint_roundtrip_bit_exact) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 8, 0);
    enum { R = 10, C = 128 };
    static float w[R * C];
    static int8_t q[R * C], qa[R * C];
    float s[R * C / 32], sa[R * C / 64];
    int32_t z[R * C / 64];
    for (int i = 0; i < R * C; i++) w[i] = rf_rng_normal(&r);
    cr_assert_eq(rf_group_quantize(&ctx, w, R, C, 4, 32, RF_GROUP_SYMMETRIC, q, s, NULL), RF_OK);
    cr_assert_eq(rf_group_quantize(&ctx, w, R, C, 4, 64, RF_GROUP_AFFINE, qa, sa, z), RF_OK);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_new(&ctx, &c), RF_OK);
    int64_t shape[2] = {R, C};
    cr_assert_eq(rf_ckpt_add_int4(&ctx, c, "sym", 2, shape, q, 32, s, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_add_int4(&ctx, c, "aff", 2, shape, qa, 64, sa, z), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_ckpt *d = decoded(c);
    const rf_ckpt_tensor *t = rf_ckpt_find(d, "sym"), *u = rf_ckpt_find(d, "aff");
    cr_assert_eq(t->group_size, 32); cr_assert_eq(u->group_size, 64);
    cr_assert_null(t->zero_points);
    cr_assert_eq(memcmp(t->data, q, sizeof q), 0);
    cr_assert_eq(memcmp(t->scales, s, sizeof s), 0);
    cr_assert_eq(memcmp(u->data, qa, sizeof qa), 0);
    cr_assert_eq(memcmp(u->scales, sa, sizeof sa), 0);
    cr_assert_eq(memcmp(u->zero_points, z, sizeof z), 0);
    float *f, back[R * C];
    cr_assert_eq(rf_ckpt_tensor_to_f32(&ctx, u, &f), RF_OK);
    rf_group_dequantize(qa, R, C, 64, sa, z, back);
    cr_assert_eq(memcmp(f, back, sizeof back), 0);
    rf_free(f);
    rf_ckpt_free(c); rf_ckpt_free(d);
}

/* ---- N:M ---------------------------------------------------------------------- */
Test(nm, hand_computed_masks) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* 2:4: the two highest of each group; equal scores keep the lower index */
    const float s24[8] = {0.1f, -0.5f, 0.3f, 0.3f, 1.0f, 1.0f, 1.0f, 1.0f};
    uint8_t m[8];
    cr_assert_eq(rf_nm_select(&ctx, s24, 1, 8, 2, 4, m), RF_OK);
    const uint8_t w24[8] = {0, 0, 1, 1, 1, 1, 0, 0};
    cr_assert_eq(memcmp(m, w24, 8), 0);
    /* 1:4, two rows */
    const float s14[8] = {2, 5, 5, 1, -1, -3, -2, -4};
    cr_assert_eq(rf_nm_select(&ctx, s14, 2, 4, 1, 4, m), RF_OK);
    const uint8_t w14[8] = {0, 1, 0, 0, 1, 0, 0, 0};
    cr_assert_eq(memcmp(m, w14, 8), 0);
    /* 4:8 */
    const float s48[8] = {3, 1, 4, 1, 5, 9, 2, 6};
    cr_assert_eq(rf_nm_select(&ctx, s48, 1, 8, 4, 8, m), RF_OK);
    const uint8_t w48[8] = {0, 0, 1, 0, 1, 1, 0, 1};
    cr_assert_eq(memcmp(m, w48, 8), 0);
    cr_assert_eq(rf_nm_check(&ctx, m, 1, 8, 4, 8, 1), RF_OK);
    cr_assert_eq(rf_nm_check(&ctx, m, 1, 8, 2, 4, 0), RF_ERR_INVALID);   /* the 2nd group of 4 keeps 3 */
    ASSERT_ERR(&ctx, "row 0, group 1 keeps 3");
    const uint8_t few[8] = {1, 0, 0, 0, 0, 1, 1, 0};
    cr_assert_eq(rf_nm_check(&ctx, few, 1, 8, 2, 4, 0), RF_OK);
    cr_assert_eq(rf_nm_check(&ctx, few, 1, 8, 2, 4, 1), RF_ERR_INVALID);
}

Test(nm, rejects_bad_settings) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float s[12] = {0};
    uint8_t m[12];
    cr_assert_eq(rf_nm_select(&ctx, s, 1, 12, 5, 4, m), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "N = 5 > M = 4");
    cr_assert_eq(rf_nm_select(&ctx, s, 1, 12, 4, 8, m), RF_ERR_INVALID);
    ASSERT_ERR(&ctx, "does not divide the row length 12");
    cr_assert_eq(rf_nm_select(&ctx, s, 1, 12, 0, 4, m), RF_ERR_INVALID);
    cr_assert_eq(rf_nm_select(&ctx, s, 1, 12, 1, 1, m), RF_ERR_INVALID);
    cr_assert_eq(rf_nm_check(&ctx, m, 1, 12, 3, 2, 0), RF_ERR_INVALID);
    s[3] = NAN;
    cr_assert_eq(rf_nm_select(&ctx, s, 1, 12, 2, 4, m), RF_ERR_INVALID);
}

/* N:M masks through the N:M kind: 2:4, 1:4 and 4:8 round trip bit for bit;
 * the positions take ceil(log2 M) bits per kept value (2 for 2:4). */
Test(nm, checkpoint_roundtrip_and_size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_rng r; rf_rng_init(&r, 12, 0);
    enum { R = 64, C = 256, N = R * C };
    static float w[N], sc[N];
    static uint8_t m[N];
    for (int i = 0; i < N; i++) { w[i] = rf_rng_normal(&r); sc[i] = fabsf(w[i]); }
    static const int pat[][2] = {{2, 4}, {1, 4}, {4, 8}};
    for (int p = 0; p < 3; p++) {
        int n = pat[p][0], mm = pat[p][1];
        cr_assert_eq(rf_nm_select(&ctx, sc, R, C, n, mm, m), RF_OK);
        rf_ckpt *c;
        cr_assert_eq(rf_ckpt_new(&ctx, &c), RF_OK);
        int64_t shape[2] = {R, C};
        cr_assert_eq(rf_ckpt_add_nm(&ctx, c, "w", 2, shape, w, m, n, mm), RF_OK, "%s", rf_ctx_error(&ctx));
        rf_ckpt *d = decoded(c);
        const rf_ckpt_tensor *t = rf_ckpt_find(d, "w");
        cr_assert_eq(t->storage, RF_STORE_NM);
        cr_assert_eq(t->nm_n, n); cr_assert_eq(t->nm_m, mm);
        cr_assert_eq(memcmp(t->mask, m, N), 0);
        cr_assert_eq(memcmp(t->data, c->t[0].data, sizeof w), 0);
        char want[16];
        snprintf(want, sizeof want, "mask=nm%d:%d", n, mm);
        cr_assert(strstr(t->coding, want), "%s", t->coding);
        cr_assert_eq(rf_nm_check(&ctx, t->mask, R, C, n, mm, 1), RF_OK);
        /* the mask section: 20-byte header, N, M, ceil(log2 M) bits per kept */
        size_t kept = (size_t)N / mm * n, pb = mm == 8 ? 3 : 2;
        size_t mask_bytes = 20 + 2 + (kept * pb + 7) / 8;
        cr_assert(t->disk_bytes <= 1 + mask_bytes + 20 + kept * 4, "%llu bytes", (unsigned long long)t->disk_bytes);
        rf_ckpt_free(c); rf_ckpt_free(d);
    }
}
