/* 4-bit weights x u8 activations: packing into the nibble layout of
 * kern_internal.h and the plain C reference (the SIMD kernels are in
 * q4_simd.c).
 *
 * Integer part: per group, I = sum_k (u - zz) * a with u - zz in [-15, 15]
 * and a in [0, 255]: |I| <= 128 * 15 * 255 = 489,600 for the largest group
 * of 128 (any gs <= 4,096 stays below 2^24), so I is exact in int32 and its
 * conversion to float is exact too. Float part: y = fmaf((float)I, s, y),
 * groups in increasing order from y = 0. Both parts are fixed, so every ISA
 * must reproduce the reference bit for bit. */
#include "kernels/kern_internal.h"

#include <math.h>
#include <string.h>

/* Largest group: keeps |I| below 2^24 (exact as a float). */
#define Q4_MAX_GS 4096

rf_status rf_q4mat_pack(rf_ctx *ctx, const int8_t *q, int N, int K, int gs, const float *scales,
                        const int32_t *zero_points, rf_q4mat **out) {
    *out = NULL;
    if (N <= 0 || K <= 0) return rf_error(ctx, RF_ERR_INVALID, "q4mat: invalid shape %dx%d", N, K);
    if (gs < 8 || gs % 8 || gs > Q4_MAX_GS || K % gs)
        return rf_error(ctx, RF_ERR_INVALID, "q4mat: group size %d must be a multiple of 8 (at most %d) dividing K = %d", gs,
                        Q4_MAX_GS, K);
    if (!q || !scales) return rf_error(ctx, RF_ERR_INVALID, "q4mat: NULL weights or scales");
    const int G = K / gs, nb = (N + 15) / 16, affine = zero_points != NULL;
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++) {
        int lo = affine ? 0 : -8, hi = affine ? 15 : 7;
        if (q[i] < lo || q[i] > hi) return rf_error(ctx, RF_ERR_INVALID, "q4mat: value %d at %zu outside [%d, %d]", q[i], i, lo, hi);
    }
    for (size_t g = 0; affine && g < (size_t)N * (size_t)G; g++)
        if (zero_points[g] < 0 || zero_points[g] > 15)
            return rf_error(ctx, RF_ERR_INVALID, "q4mat: zero point %d outside [0, 15]", zero_points[g]);
    size_t wbytes = (size_t)nb * (size_t)(K / 8) * 64, units = (size_t)nb * (size_t)G * 16;
    RF_TRY(rf_check_cap(ctx, wbytes + units * 5, "int4 matrix"));
    rf_q4mat *w = rf_calloc(1, sizeof *w);
    if (!w) return rf_error(ctx, RF_ERR_NOMEM, "q4mat: out of memory");
    w->N = N; w->K = K; w->gs = gs; w->G = G; w->nb = nb; w->affine = affine;
    w->w = rf_aligned_alloc(64, wbytes);
    w->scales = rf_aligned_alloc(64, units * sizeof(float));
    w->zz = rf_aligned_alloc(64, units);
    w->corr = rf_malloc((size_t)N * sizeof(float));
    if (!w->w || !w->scales || !w->zz || !w->corr) {
        rf_q4mat_free(w);
        return rf_error(ctx, RF_ERR_NOMEM, "q4mat: out of memory (%dx%d)", N, K);
    }
    for (int b = 0; b < nb; b++)
        for (int g = 0; g < G; g++)
            for (int l = 0; l < 16; l++) {
                int n = 16 * b + l;
                size_t u = ((size_t)b * G + (size_t)g) * 16 + (size_t)l, src = (size_t)n * G + (size_t)g;
                w->scales[u] = n < N ? scales[src] : 0.0f;
                w->zz[u] = (uint8_t)(affine ? (n < N ? zero_points[src] : 0) : 8);
            }
    /* stored value u: q + 8 (symmetric) or q (affine); a padding channel
     * stores its zero point, so its weights are exactly 0 */
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < K / 8; t++) {
            uint8_t *unit = w->w + ((size_t)b * (size_t)(K / 8) + (size_t)t) * 64;
            const uint8_t *zb = w->zz + ((size_t)b * G + (size_t)(8 * t / gs)) * 16;
            for (int c = 0; c < 16; c++)
                for (int j = 0; j < 4; j++) {
                    int n = 16 * b + c, k = 8 * t + j, lo, hi;
                    if (n < N) {
                        lo = q[(size_t)n * K + k] + (affine ? 0 : 8);
                        hi = q[(size_t)n * K + k + 4] + (affine ? 0 : 8);
                    } else {
                        lo = hi = zb[c];
                    }
                    unit[4 * c + j] = (uint8_t)(lo | (hi << 4));
                }
        }
    for (int n = 0; n < N; n++) {
        float c = 0.0f;
        for (int g = 0; g < G; g++) {
            int32_t r = 0, z = affine ? zero_points[(size_t)n * G + (size_t)g] : 0;
            for (int k = g * gs; k < (g + 1) * gs; k++) r += q[(size_t)n * K + k] - z;
            c = fmaf((float)r, scales[(size_t)n * G + (size_t)g], c);
        }
        w->corr[n] = c;
    }
    *out = w;
    return RF_OK;
}

void rf_q4mat_free(rf_q4mat *w) {
    if (!w) return;
    rf_free(w->w);
    rf_free(w->scales);
    rf_free(w->zz);
    rf_free(w->corr);
    rf_free(w);
}

const float *rf_q4mat_row_corr(const rf_q4mat *W) { return W->corr; }
int rf_q4mat_rows(const rf_q4mat *W) { return W->N; }
int rf_q4mat_cols(const rf_q4mat *W) { return W->K; }
int rf_q4mat_group(const rf_q4mat *W) { return W->gs; }
size_t rf_q4mat_bytes(const rf_q4mat *W) {
    size_t units = (size_t)W->nb * (size_t)W->G * 16;
    return (size_t)W->nb * (size_t)(W->K / 8) * 64 + units * sizeof(float) + (W->affine ? units : 0);
}

/* Reference, reading the packed layout with plain indexing (so the tests'
 * own products from the unpacked q also check the packing). */
void rf_q4gemm_ref(const rf_q4mat *W, const uint8_t *A, float *Y, int M) {
    const int N = W->N, K = W->K, G = W->G, gs = W->gs;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const int b = n / 16, c = n % 16;
            float y = 0.0f;
            for (int g = 0; g < G; g++) {
                const size_t u = ((size_t)b * G + (size_t)g) * 16 + (size_t)c;
                int32_t acc = 0;
                for (int k = g * gs; k < (g + 1) * gs; k++) {
                    uint8_t byte = W->w[((size_t)b * (size_t)(K / 8) + (size_t)(k / 8)) * 64 + (size_t)(4 * c + k % 4)];
                    int v = (k % 8 < 4 ? byte & 15 : byte >> 4) - W->zz[u];
                    acc += v * (int32_t)A[(size_t)m * K + k];
                }
                y = fmaf((float)acc, W->scales[u], y);
            }
            Y[(size_t)m * N + n] = y;
        }
}
