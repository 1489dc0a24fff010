/* Winograd F(4x4, 3x3) transforms (Lavin & Gray 2016, section 4.2; points
 * 0, 1, -1, 2, -2, ∞): 6×6 input tiles at a stride of 4, 36 products per
 * 4×4 outputs and channel pair instead of 144 (4× fewer than the direct
 * convolution, 1.78× fewer than F(2x2, 3x3)). conv_winograd.c runs them
 * through the same driver as F(2x2, 3x3) (chunks, 36 products, threads).
 *
 *   Bᵀ = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
 *         0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1]
 *   G  = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *         1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * Every 1-D transform is one macro (W4_BT, W4_AT, W4_A) written with plain
 * + - * on its operands, used on floats by the reference (per tile) and on
 * __m512 / __m256 vectors (GCC vector arithmetic, one tile per lane) by the
 * SIMD kernels: the same operations in the same order, and -std=c11
 * contracts nothing into FMAs, so every ISA gives the same bits
 * (test_winograd checks it). The 2-D transforms apply the 1-D one to the
 * tile's rows first (combining source rows, one column per lane), then to
 * its columns, in every version.
 *
 * Rounding: the constants 5, 1/6, 1/12, 1/24 and the products' wider
 * dynamic range (|Bᵀ| row sums up to 10, |Aᵀ| up to 18 against 2 and 3 for
 * F(2x2, 3x3)) give F(4x4, 3x3) a larger error than F(2x2, 3x3): measured
 * in test_winograd against a double-precision direct convolution, 1-4e-6
 * relative for F(2x2) and up to ~3e-5 for F(4x4) at 64-256 channels. */
#include "nn/conv_winograd.h"

#include "nn/layers.h"
#include "raffle/kernels.h"

#include <immintrin.h>
#include <string.h>

/* o = Bᵀ d (6 -> 6) */
#define W4_BT(o0, o1, o2, o3, o4, o5, d0, d1, d2, d3, d4, d5)                                                \
    o0 = (4.0f * (d0) - 5.0f * (d2)) + (d4);                                                                \
    o1 = ((d3) + (d4)) - 4.0f * ((d1) + (d2));                                                              \
    o2 = ((d4) - (d3)) + 4.0f * ((d1) - (d2));                                                              \
    o3 = ((d4) - (d2)) + 2.0f * ((d3) - (d1));                                                              \
    o4 = ((d4) - (d2)) - 2.0f * ((d3) - (d1));                                                              \
    o5 = (4.0f * (d1) - 5.0f * (d3)) + (d5);
/* y = Aᵀ m (6 -> 4) */
#define W4_AT(y0, y1, y2, y3, m0, m1, m2, m3, m4, m5)                                                        \
    y0 = ((m0) + ((m1) + (m2))) + ((m3) + (m4));                                                            \
    y1 = ((m1) - (m2)) + 2.0f * ((m3) - (m4));                                                              \
    y2 = ((m1) + (m2)) + 4.0f * ((m3) + (m4));                                                              \
    y3 = (((m1) - (m2)) + 8.0f * ((m3) - (m4))) + (m5);
/* a = A y (4 -> 6): the weight gradient's transform of a 4x4 dY tile */
#define W4_A(a0, a1, a2, a3, a4, a5, y0, y1, y2, y3)                                                         \
    a0 = (y0);                                                                                               \
    a1 = ((y0) + (y2)) + ((y1) + (y3));                                                                     \
    a2 = ((y0) + (y2)) - ((y1) + (y3));                                                                     \
    a3 = ((y0) + 4.0f * (y2)) + (2.0f * (y1) + 8.0f * (y3));                                                \
    a4 = ((y0) + 4.0f * (y2)) - (2.0f * (y1) + 8.0f * (y3));                                                \
    a5 = (y3);

/* ---- weights (plain C: once per step, cheap) -------------------------------- */

/* v = G g (3 -> 6) */
#define W4_S6 (1.0f / 6.0f)
#define W4_S12 (1.0f / 12.0f)
#define W4_S24 (1.0f / 24.0f)
#define W4_G(v0, v1, v2, v3, v4, v5, g0, g1, g2)                                                             \
    v0 = 0.25f * (g0);                                                                                       \
    v1 = (((g0) + (g2)) + (g1)) * -W4_S6;                                                                   \
    v2 = (((g0) + (g2)) - (g1)) * -W4_S6;                                                                   \
    v3 = ((g0) * W4_S24 + (g1) * W4_S12) + (g2) * W4_S6;                                                    \
    v4 = ((g0) * W4_S24 - (g1) * W4_S12) + (g2) * W4_S6;                                                    \
    v5 = (g2);
static void w4_g(float v[6], float g0, float g1, float g2) { W4_G(v[0], v[1], v[2], v[3], v[4], v[5], g0, g1, g2) }
/* r = Gᵀ v (6 -> 3) */
#define W4_GT(VT, r0, r1, r2, v0, v1, v2, v3, v4, v5)                                                       \
    {                                                                                                        \
        VT p_ = (v1) + (v2), q_ = (v2) - (v1), s_ = (v3) + (v4), d_ = (v3) - (v4);                           \
        r0 = (0.25f * (v0) - p_ * W4_S6) + s_ * W4_S24;                                                     \
        r1 = q_ * W4_S6 + d_ * W4_S12;                                                                       \
        r2 = (s_ - p_) * W4_S6 + (v5);                                                                       \
    }
static void w4_gt(float r[3], const float v[6]) { W4_GT(float, r[0], r[1], r[2], v[0], v[1], v[2], v[3], v[4], v[5]) }

/* The weight transform of n (<= 16, 8) pairs at once, one pair a lane: tap
 * t of lane l at w[l·ps·9 + t] (gathered), results stored at
 * V[k·ldk + l]; the reference's W4_G steps in the same order. */
#define W4_WT_BODY(VT, GATHER, STORE)                                                                        \
    {                                                                                                        \
        VT k[9], r[6][3];                                                                                    \
        for (int i = 0; i < 9; i++) k[i] = GATHER(flip ? 8 - i : i);                                         \
        for (int j = 0; j < 3; j++) { W4_G(r[0][j], r[1][j], r[2][j], r[3][j], r[4][j], r[5][j], k[j], k[3 + j], k[6 + j]) } \
        for (int i = 0; i < 6; i++) {                                                                        \
            VT v0, v1, v2, v3, v4, v5;                                                                       \
            W4_G(v0, v1, v2, v3, v4, v5, r[i][0], r[i][1], r[i][2])                                          \
            float *d_ = V + (size_t)(6 * i) * ldk;                                                           \
            STORE(d_, v0); STORE(d_ + ldk, v1); STORE(d_ + 2 * ldk, v2);                                     \
            STORE(d_ + 3 * ldk, v3); STORE(d_ + 4 * ldk, v4); STORE(d_ + 5 * ldk, v5);                       \
        }                                                                                                    \
    }

__attribute__((target("avx512f"), optimize("O3")))
static void wt16_avx512(float *V, size_t ldk, const float *w, size_t ps, int n, int flip) {
    const __mmask16 mk = (__mmask16)((1u << n) - 1);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)(ps * 9)));
#define GA(t) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, w + (t), 4)
#define ST(p, v) _mm512_mask_storeu_ps(p, mk, v)
    W4_WT_BODY(__m512, GA, ST)
#undef GA
#undef ST
}

__attribute__((target("avx2"), optimize("O3")))
static void wt8_avx2(float *V, size_t ldk, const float *w, size_t ps, int n, int flip) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)(ps * 9)));
    const __m256i mi = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 mf = _mm256_castsi256_ps(mi);
#define GA(t) _mm256_mask_i32gather_ps(_mm256_setzero_ps(), w + (t), idx, mf, 4)
#define ST(p, v) _mm256_maskstore_ps(p, mi, v)
    W4_WT_BODY(__m256, GA, ST)
#undef GA
#undef ST
}
#undef W4_WT_BODY

/* G g Gᵀ of one 3x3 kernel g (flip: rotated by 180°) into dst[k·ldk], k < 36. */
static void wt1_ref(float *dst, size_t ldk, const float *g, int flip) {
    float k[9], r[6][3], v[6];
    for (int i = 0; i < 9; i++) k[i] = flip ? g[8 - i] : g[i];
    for (int j = 0; j < 3; j++) {
        w4_g(v, k[j], k[3 + j], k[6 + j]);
        for (int i = 0; i < 6; i++) r[i][j] = v[i];
    }
    for (int i = 0; i < 6; i++) {
        w4_g(v, r[i][0], r[i][1], r[i][2]);
        for (int j = 0; j < 6; j++) dst[(size_t)(6 * i + j) * ldk] = v[j];
    }
}

void rf_nn_wino4_weights(float *restrict V, const float *restrict w, int Co, int C, int co0, int co1, int tr,
                         int flip) {
    rf_isa isa = rf_kernels_isa();
    if (isa >= RF_ISA_AVX2) {
        /* runs of consecutive stored pairs: along co for fixed c (tr: w
         * pairs C apart), or along c for fixed co (adjacent pairs) */
        const size_t ldk = (size_t)Co * C;
        const int vw = isa >= RF_ISA_AVX512 ? 16 : 8;
        const int n_out = tr ? C : co1 - co0, len = tr ? co1 - co0 : C;
        for (int oi = 0; oi < n_out; oi++)
            for (int i0 = 0; i0 < len; i0 += vw) {
                const int n = len - i0 < vw ? len - i0 : vw;
                const int co = tr ? co0 + i0 : co0 + oi, c = tr ? oi : i0;
                const float *src = w + ((size_t)co * C + c) * 9;
                float *dst = tr ? V + (size_t)c * Co + co : V + (size_t)co * C + c;
                if (vw == 16) wt16_avx512(dst, ldk, src, tr ? (size_t)C : 1, n, flip);
                else wt8_avx2(dst, ldk, src, tr ? (size_t)C : 1, n, flip);
            }
        return;
    }
    size_t ldk = (size_t)Co * C;
    /* the inner loop runs along the stored rows (36 streams, each written
     * contiguously); the other order wrote each float to its own line */
    const int n_out = tr ? C : co1 - co0, n_in = tr ? co1 - co0 : C;
    for (int oi = 0; oi < n_out; oi++)
        for (int ii = 0; ii < n_in; ii++) {
            const int co = tr ? co0 + ii : co0 + oi, c = tr ? oi : ii;
            wt1_ref(tr ? V + (size_t)c * Co + co : V + (size_t)co * C + c, ldk, w + ((size_t)co * C + c) * 9, flip);
        }
}

void rf_nn_wino4_weights_row(float *restrict u, size_t ld, const float *restrict w, int Co, int C, int r, int tr,
                             int flip) {
    rf_isa isa = rf_kernels_isa();
    const int len = tr ? Co : C;
    if (isa >= RF_ISA_AVX2) {
        const int vw = isa >= RF_ISA_AVX512 ? 16 : 8;
        for (int i0 = 0; i0 < len; i0 += vw) {
            const int n = len - i0 < vw ? len - i0 : vw;
            const float *src = w + ((size_t)(tr ? i0 : r) * C + (tr ? r : i0)) * 9;
            if (vw == 16) wt16_avx512(u + i0, ld, src, tr ? (size_t)C : 1, n, flip);
            else wt8_avx2(u + i0, ld, src, tr ? (size_t)C : 1, n, flip);
        }
        return;
    }
    for (int ii = 0; ii < len; ii++) {
        wt1_ref(u + ii, ld, w + ((size_t)(tr ? ii : r) * C + (tr ? r : ii)) * 9, flip);
    }
}

/* Gᵀ dV G for NV consecutive pairs (one a lane) into t[tap·16 + lane];
 * the caller adds them into dw, pair by pair, as the reference does. */
#define W4_WB_BODY(VT, LOAD, STORE)                                                                          \
    {                                                                                                        \
        VT r[3][6];                                                                                          \
        for (int j = 0; j < 6; j++) {                                                                        \
            const float *c_ = v + (size_t)j * ldk;                                                           \
            W4_GT(VT, r[0][j], r[1][j], r[2][j], LOAD(c_), LOAD(c_ + 6 * ldk), LOAD(c_ + 12 * ldk),          \
                  LOAD(c_ + 18 * ldk), LOAD(c_ + 24 * ldk), LOAD(c_ + 30 * ldk))                             \
        }                                                                                                    \
        for (int i = 0; i < 3; i++) {                                                                        \
            VT o0, o1, o2;                                                                                   \
            W4_GT(VT, o0, o1, o2, r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5])                      \
            STORE(t + (3 * i + 0) * 16, o0); STORE(t + (3 * i + 1) * 16, o1); STORE(t + (3 * i + 2) * 16, o2); \
        }                                                                                                    \
    }
__attribute__((target("avx512f"), optimize("O3")))
static void wb16_avx512(float *t, const float *v, size_t ldk) { W4_WB_BODY(__m512, _mm512_loadu_ps, _mm512_storeu_ps) }
__attribute__((target("avx2"), optimize("O3")))
static void wb8_avx2(float *t, const float *v, size_t ldk) { W4_WB_BODY(__m256, _mm256_loadu_ps, _mm256_storeu_ps) }
#undef W4_WB_BODY

void rf_nn_wino4_weights_back(float *restrict dw, const float *restrict dV, int Co, int C, int co0, int co1) {
    size_t ldk = (size_t)Co * C;
    rf_isa isa = rf_kernels_isa();
    size_t p = (size_t)co0 * C, p1 = (size_t)co1 * C;   /* pairs co·C + c, contiguous in dV's rows and in dw */
    if (isa >= RF_ISA_AVX2) {
        const size_t vw = isa >= RF_ISA_AVX512 ? 16 : 8;
        float t[9 * 16];
        for (; p + vw <= p1; p += vw) {
            if (vw == 16) wb16_avx512(t, dV + p, ldk);
            else wb8_avx2(t, dV + p, ldk);
            for (size_t l = 0; l < vw; l++)
                for (int k = 0; k < 9; k++) dw[(p + l) * 9 + (size_t)k] += t[k * 16 + (int)l];
        }
    }
    for (; p < p1; p++) {
        int co = (int)(p / (size_t)C), c = (int)(p % (size_t)C);
        {
            const float *v = dV + (size_t)co * C + c;
            float r[3][6], col[6], o[3];
            for (int j = 0; j < 6; j++) {
                for (int i = 0; i < 6; i++) col[i] = v[(size_t)(6 * i + j) * ldk];
                w4_gt(o, col);
                for (int i = 0; i < 3; i++) r[i][j] = o[i];
            }
            float *g = dw + ((size_t)co * C + c) * 9;
            for (int i = 0; i < 3; i++) {
                w4_gt(o, r[i]);
                for (int j = 0; j < 3; j++) g[3 * i + j] += o[j];
            }
        }
    }
}

/* ---- references (one tile at a time) ----------------------------------------- */

/* u[(6a + b)·ldk + th·TW + tw] = (Bᵀ d B)[a][b] for the 6×6 tiles d of the
 * plane x[H, W] placed at row and column pad of a zero plane. */
static void in4_ref(float *u, size_t ldk, const float *x, int H, int W, int pad, int TH, int TW) {
    for (int th = 0; th < TH; th++)
        for (int tw = 0; tw < TW; tw++) {
            float d[6][6], r[6][6], o[6];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    int h = 4 * th + i - pad, v = 4 * tw + j - pad;
                    d[i][j] = h >= 0 && h < H && v >= 0 && v < W ? x[(size_t)h * W + v] : 0.0f;
                }
            for (int j = 0; j < 6; j++) {   /* rows: Bᵀ over i, per column */
                W4_BT(o[0], o[1], o[2], o[3], o[4], o[5], d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j])
                for (int a = 0; a < 6; a++) r[a][j] = o[a];
            }
            float *dst = u + (size_t)th * TW + tw;
            for (int a = 0; a < 6; a++) {
                W4_BT(o[0], o[1], o[2], o[3], o[4], o[5], r[a][0], r[a][1], r[a][2], r[a][3], r[a][4], r[a][5])
                for (int b = 0; b < 6; b++) dst[(size_t)(6 * a + b) * ldk] = o[b];
            }
        }
}

/* u[(6a + b)·ldk + t] = (A y Aᵀ)[a][b] for the 4×4 tiles y of dy[OH, OW]
 * (zero past OH, OW). */
static void grad4_ref(float *u, size_t ldk, const float *dy, int OH, int OW, int TH, int TW) {
    for (int th = 0; th < TH; th++)
        for (int tw = 0; tw < TW; tw++) {
            float d[4][4], r[6][4], o[6];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    int h = 4 * th + i, v = 4 * tw + j;
                    d[i][j] = h < OH && v < OW ? dy[(size_t)h * OW + v] : 0.0f;
                }
            for (int j = 0; j < 4; j++) {
                W4_A(o[0], o[1], o[2], o[3], o[4], o[5], d[0][j], d[1][j], d[2][j], d[3][j])
                for (int a = 0; a < 6; a++) r[a][j] = o[a];
            }
            float *dst = u + (size_t)th * TW + tw;
            for (int a = 0; a < 6; a++) {
                W4_A(o[0], o[1], o[2], o[3], o[4], o[5], r[a][0], r[a][1], r[a][2], r[a][3])
                for (int b = 0; b < 6; b++) dst[(size_t)(6 * a + b) * ldk] = o[b];
            }
        }
}

/* y[OH, OW] (=, +=, or = max(·, 0) by acc 0, 1, 2: rf_nn_wino4_scatter)
 * the 4×4 outputs o[(4a + b)·ldo + th·TW + tw]. */
static void scatter4_ref(float *y, const float *o, size_t ldo, int OH, int OW, int TW, int acc) {
    for (int oh = 0; oh < OH; oh++) {
        const float *src = o + (size_t)(4 * (oh % 4)) * ldo + (size_t)(oh / 4) * TW;
        float *yr = y + (size_t)oh * OW;
        for (int ow = 0; ow < OW; ow++) {
            float v = src[(size_t)(ow % 4) * ldo + ow / 4];
            yr[ow] = acc == 1 ? yr[ow] + v : acc == 2 ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}

/* o[(4a + b)·T + t] = (Aᵀ m A)[a][b] + bv for tiles t < n, m[k·ldk + t]
 * (o's rows T apart). */
static void out4_ref(float *restrict o, const float *restrict m, size_t ldk, int n, int T, float bv) {
    for (int t = 0; t < n; t++) {
        float s[4][6];
        for (int j = 0; j < 6; j++) {
            const float *c = m + (size_t)j * ldk + t;
            W4_AT(s[0][j], s[1][j], s[2][j], s[3][j], c[0], c[6 * ldk], c[12 * ldk], c[18 * ldk], c[24 * ldk],
                  c[30 * ldk])
        }
        for (int a = 0; a < 4; a++) {
            float y0, y1, y2, y3;
            W4_AT(y0, y1, y2, y3, s[a][0], s[a][1], s[a][2], s[a][3], s[a][4], s[a][5])
            o[(size_t)(4 * a + 0) * T + t] = y0 + bv;
            o[(size_t)(4 * a + 1) * T + t] = y1 + bv;
            o[(size_t)(4 * a + 2) * T + t] = y2 + bv;
            o[(size_t)(4 * a + 3) * T + t] = y3 + bv;
        }
    }
}


/* ---- AVX-512 ----------------------------------------------------------------
 * One tile row per vector (one tile per lane: lane tw), or two tile rows
 * when a padded row fits one vector (7×7 maps): a padded source row is
 * loaded whole (two zmm, at most 32 columns), the row half of the transform
 * combines whole rows, and a permute (vpermt2ps) picks column 4·tw + j of
 * the combined row into lane tw. */
static __mmask16 lanes16(int lo, int hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    return hi <= lo ? (__mmask16)0 : (__mmask16)(((1u << (hi - lo)) - 1) << lo);
}

/* Index vector: lane l < n takes column 4l + j of the first source (two
 * vectors: index into 32), or with `two`, lanes n..2n-1 take column
 * 4(l - n) + j of the second (index 16 + ...). With `two` a column past 15
 * is padding (the caller checks): *keep clears its lane. */
__attribute__((target("avx512f")))
static __m512i pick_idx(int j, int n, int two, __mmask16 *keep) {
    int idx[16];
    unsigned k = 0;
    for (int l = 0; l < 16; l++) {
        int col = two ? (l < n ? 4 * l + j : 4 * (l - n) + j) : 4 * l + j;
        int v = two ? (l < n ? col : 16 + col) : col;
        idx[l] = v & 31;
        if (!two || col < 16) k |= 1u << l;
    }
    *keep = (__mmask16)k;
    return _mm512_loadu_si512(idx);
}

/* A source row (h: its plane row, zero outside [0, H)) from column
 * off - pad, lanes in m. */
__attribute__((target("avx512f"), always_inline))
static inline __m512 ld_row(const float *x, int h, int H, int W, int pad, int off, __mmask16 m) {
    if (h < 0 || h >= H) return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps(m, x + (size_t)h * W - pad + off);
}

/* Row a of the tile row(s): columns j = 0..5 (0..3) picked from the
 * combined rows (P, Q), the 1-D transform, stores of ms lanes. */
#define W4_COLS6(P, Q, a)                                                                                    \
    {                                                                                                        \
        __m512 c0 = _mm512_maskz_permutex2var_ps(k0, P, ix0, Q), c1 = _mm512_maskz_permutex2var_ps(k1, P, ix1, Q); \
        __m512 c2 = _mm512_maskz_permutex2var_ps(k2, P, ix2, Q), c3 = _mm512_maskz_permutex2var_ps(k3, P, ix3, Q); \
        __m512 c4 = _mm512_maskz_permutex2var_ps(k4, P, ix4, Q), c5 = _mm512_maskz_permutex2var_ps(k5, P, ix5, Q); \
        __m512 o0, o1, o2, o3, o4, o5;                                                                       \
        W4_BT(o0, o1, o2, o3, o4, o5, c0, c1, c2, c3, c4, c5)                                                \
        float *d_ = dst + (size_t)(6 * (a)) * ldk;                                                           \
        _mm512_mask_storeu_ps(d_, ms, o0); _mm512_mask_storeu_ps(d_ + ldk, ms, o1);                          \
        _mm512_mask_storeu_ps(d_ + 2 * ldk, ms, o2); _mm512_mask_storeu_ps(d_ + 3 * ldk, ms, o3);            \
        _mm512_mask_storeu_ps(d_ + 4 * ldk, ms, o4); _mm512_mask_storeu_ps(d_ + 5 * ldk, ms, o5);            \
    }
#define W4_COLS4(P, Q, a)                                                                                    \
    {                                                                                                        \
        __m512 c0 = _mm512_maskz_permutex2var_ps(k0, P, ix0, Q), c1 = _mm512_maskz_permutex2var_ps(k1, P, ix1, Q); \
        __m512 c2 = _mm512_maskz_permutex2var_ps(k2, P, ix2, Q), c3 = _mm512_maskz_permutex2var_ps(k3, P, ix3, Q); \
        __m512 o0, o1, o2, o3, o4, o5;                                                                       \
        W4_A(o0, o1, o2, o3, o4, o5, c0, c1, c2, c3)                                                         \
        float *d_ = dst + (size_t)(6 * (a)) * ldk;                                                           \
        _mm512_mask_storeu_ps(d_, ms, o0); _mm512_mask_storeu_ps(d_ + ldk, ms, o1);                          \
        _mm512_mask_storeu_ps(d_ + 2 * ldk, ms, o2); _mm512_mask_storeu_ps(d_ + 3 * ldk, ms, o3);            \
        _mm512_mask_storeu_ps(d_ + 4 * ldk, ms, o4); _mm512_mask_storeu_ps(d_ + 5 * ldk, ms, o5);            \
    }

/* P: the combined rows of tile row th0 (columns 0-15); Q: its columns
 * 16-31, or (two) tile row th0 + 1's columns 0-15. */
/* The plane the caller transforms next into L1 (the next sample's plane of
 * the same channel: far away): a plane is a few short rows, where the
 * hardware prefetchers barely start (cf. put_split in conv_winograd.c). */
__attribute__((always_inline)) static inline void prefetch_plane(const float *next, size_t n) {
    for (size_t i = 0; i < n; i += 16) _mm_prefetch((const char *)(next + i), _MM_HINT_T0);
}

/* P: the combined rows of tile row th0 (columns 0-15); Q: its columns
 * 16-31, or (two: every column past 15 is padding, e.g. 14x14 maps with
 * pad 1) tile row th0 + 1's columns 0-15. */
__attribute__((target("avx512f"), optimize("O3")))
static void in4_avx512(float *u, size_t ldk, const float *x, int H, int W, int pad, int TH, int TW,
                       const float *next) {
    if (next) prefetch_plane(next, (size_t)H * W);
    const int two = pad + W <= 16 && 2 * TW <= 16, G = two ? 2 : 1;
    const __mmask16 mlo = lanes16(pad, pad + W), mhi = lanes16(pad - 16, pad + W - 16);
    __mmask16 k0, k1, k2, k3, k4, k5;
    const __m512i ix0 = pick_idx(0, TW, two, &k0), ix1 = pick_idx(1, TW, two, &k1), ix2 = pick_idx(2, TW, two, &k2),
                  ix3 = pick_idx(3, TW, two, &k3), ix4 = pick_idx(4, TW, two, &k4), ix5 = pick_idx(5, TW, two, &k5);
    const int offQ = two ? 0 : 16;
    const __mmask16 mQ = two ? mlo : mhi;
    for (int th0 = 0; th0 < TH; th0 += G) {
        const int ng = TH - th0 < G ? TH - th0 : G;
        const int hP = 4 * th0 - pad, hQ = two ? (ng > 1 ? hP + 4 : -1000) : hP;
        __m512 p0, p1, p2, p3, p4, p5, q0, q1, q2, q3, q4, q5;
        {
            __m512 d0 = ld_row(x, hP, H, W, pad, 0, mlo), d1 = ld_row(x, hP + 1, H, W, pad, 0, mlo);
            __m512 d2 = ld_row(x, hP + 2, H, W, pad, 0, mlo), d3 = ld_row(x, hP + 3, H, W, pad, 0, mlo);
            __m512 d4 = ld_row(x, hP + 4, H, W, pad, 0, mlo), d5 = ld_row(x, hP + 5, H, W, pad, 0, mlo);
            W4_BT(p0, p1, p2, p3, p4, p5, d0, d1, d2, d3, d4, d5)
        }
        {
            __m512 d0 = ld_row(x, hQ, H, W, pad, offQ, mQ), d1 = ld_row(x, hQ + 1, H, W, pad, offQ, mQ);
            __m512 d2 = ld_row(x, hQ + 2, H, W, pad, offQ, mQ), d3 = ld_row(x, hQ + 3, H, W, pad, offQ, mQ);
            __m512 d4 = ld_row(x, hQ + 4, H, W, pad, offQ, mQ), d5 = ld_row(x, hQ + 5, H, W, pad, offQ, mQ);
            W4_BT(q0, q1, q2, q3, q4, q5, d0, d1, d2, d3, d4, d5)
        }
        const __mmask16 ms = lanes16(0, ng * TW);
        float *dst = u + (size_t)th0 * TW;
        W4_COLS6(p0, q0, 0) W4_COLS6(p1, q1, 1) W4_COLS6(p2, q2, 2)
        W4_COLS6(p3, q3, 3) W4_COLS6(p4, q4, 4) W4_COLS6(p5, q5, 5)
    }
}

/* The same for the 4x4 dY tiles (no padding: rows past OH and columns past
 * OW are zero). */
__attribute__((target("avx512f"), optimize("O3")))
static void grad4_avx512(float *u, size_t ldk, const float *dy, int OH, int OW, int TH, int TW, const float *next) {
    if (next) prefetch_plane(next, (size_t)OH * OW);
    const int two = 4 * TW <= 16, G = two ? 2 : 1;
    const __mmask16 mlo = lanes16(0, OW), mhi = lanes16(-16, OW - 16);
    __mmask16 k0, k1, k2, k3;
    const __m512i ix0 = pick_idx(0, TW, two, &k0), ix1 = pick_idx(1, TW, two, &k1), ix2 = pick_idx(2, TW, two, &k2),
                  ix3 = pick_idx(3, TW, two, &k3);
    const int offQ = two ? 0 : 16;
    const __mmask16 mQ = two ? mlo : mhi;
    for (int th0 = 0; th0 < TH; th0 += G) {
        const int ng = TH - th0 < G ? TH - th0 : G;
        const int hP = 4 * th0, hQ = two ? (ng > 1 ? hP + 4 : -1000) : hP;
        __m512 p0, p1, p2, p3, p4, p5, q0, q1, q2, q3, q4, q5;
        {
            __m512 d0 = ld_row(dy, hP, OH, OW, 0, 0, mlo), d1 = ld_row(dy, hP + 1, OH, OW, 0, 0, mlo);
            __m512 d2 = ld_row(dy, hP + 2, OH, OW, 0, 0, mlo), d3 = ld_row(dy, hP + 3, OH, OW, 0, 0, mlo);
            W4_A(p0, p1, p2, p3, p4, p5, d0, d1, d2, d3)
        }
        {
            __m512 d0 = ld_row(dy, hQ, OH, OW, 0, offQ, mQ), d1 = ld_row(dy, hQ + 1, OH, OW, 0, offQ, mQ);
            __m512 d2 = ld_row(dy, hQ + 2, OH, OW, 0, offQ, mQ), d3 = ld_row(dy, hQ + 3, OH, OW, 0, offQ, mQ);
            W4_A(q0, q1, q2, q3, q4, q5, d0, d1, d2, d3)
        }
        const __mmask16 ms = lanes16(0, ng * TW);
        float *dst = u + (size_t)th0 * TW;
        W4_COLS4(p0, q0, 0) W4_COLS4(p1, q1, 1) W4_COLS4(p2, q2, 2)
        W4_COLS4(p3, q3, 3) W4_COLS4(p4, q4, 4) W4_COLS4(p5, q5, 5)
    }
}
#undef W4_COLS6
#undef W4_COLS4

/* ---- AVX-512, four tiles a row (TW = 4: 13-16 wide maps) -------------------
 * The kernels above put one tile row in a vector: with TW = 4 (ResNet's
 * 16x16 maps, conv-6's 14x14) their column half runs on 4 of 16 lanes, 36
 * permutes and 36 masked stores of 4 floats per tile row. Here four tile
 * rows share the vector (lane 4·th' + tw, th' = th - th0: consecutive tiles,
 * so stores are whole vectors). Row position a of tile row th is the row
 * half on whole source rows, as above (one column per lane): `lo` holds
 * columns 0-15, `sh` columns 2-17 (the two columns past 15, without a
 * second vector of padding); column j of tile tw is lo's lane 4·tw + j
 * (j < 4) or sh's lane 4·tw + j - 2 (j = 4, 5). Two tile rows' picks come
 * from one two-source permute (lanes 0-3 from the first, 4-7 from the
 * second; the same index puts tile rows 2, 3 in lanes 8-15 of a second
 * permute), a blend joins them, then the column half of the transform runs
 * on 16 tiles. Every lane does the reference's operations in its order: the
 * same bits (test_winograd `in4_kernels_match_ref`). Each row position a is
 * made from its own loads (W4_BT's other outputs are dead and dropped), so
 * no more than 8 combined rows are live. */

/* index j: lane l takes source lane 4·(l % 4) + j of the first table
 * (l % 8 < 4) or of the second (16 + ...) */
__attribute__((target("avx512f")))
static __m512i pick4_idx(int j) {
    int idx[16];
    for (int l = 0; l < 16; l++) idx[l] = (l % 8 < 4 ? 0 : 16) + 4 * (l % 4) + j;
    return _mm512_loadu_si512(idx);
}

/* Row position a's combined rows of the 4 tile rows (R(i, th'): source
 * row i of tile row th', from column c0 with lanes ml) by the 1-D macro
 * OP with N inputs; then column j's picks. */
#define W4R_BT(o, R, a)                                                                                      \
    {                                                                                                        \
        __m512 o0_, o1_, o2_, o3_, o4_, o5_;                                                                 \
        W4_BT(o0_, o1_, o2_, o3_, o4_, o5_, R(0), R(1), R(2), R(3), R(4), R(5))                              \
        const __m512 oo_[6] = {o0_, o1_, o2_, o3_, o4_, o5_};                                               \
        o = oo_[a];                                                                                          \
    }
#define W4R_A(o, R, a)                                                                                       \
    {                                                                                                        \
        __m512 o0_, o1_, o2_, o3_, o4_, o5_;                                                                 \
        W4_A(o0_, o1_, o2_, o3_, o4_, o5_, R(0), R(1), R(2), R(3))                                           \
        const __m512 oo_[6] = {o0_, o1_, o2_, o3_, o4_, o5_};                                               \
        o = oo_[a];                                                                                          \
    }
/* stores o0..o5 (ms lanes) at d, ldk apart */
#define W4_ST6(d)                                                                                            \
    {                                                                                                        \
        float *d_ = (d);                                                                                     \
        _mm512_mask_storeu_ps(d_, ms, o0); _mm512_mask_storeu_ps(d_ + ldk, ms, o1);                          \
        _mm512_mask_storeu_ps(d_ + 2 * ldk, ms, o2); _mm512_mask_storeu_ps(d_ + 3 * ldk, ms, o3);            \
        _mm512_mask_storeu_ps(d_ + 4 * ldk, ms, o4); _mm512_mask_storeu_ps(d_ + 5 * ldk, ms, o5);            \
    }
#define W4_PICK(P, ix) _mm512_mask_blend_ps(0xFF00, _mm512_permutex2var_ps(P[0], ix, P[1]),                  \
                                            _mm512_permutex2var_ps(P[2], ix, P[3]))
/* Row position a of 16 tiles into d + 6a·ldk: the 4 combined rows lo[t]
 * (and sh[t]) from the kernel's LO(i) / SH(i) (source row i of the t-th
 * group of tiles), columns 0-3 picked from lo, 4 and 5 from sh by the
 * indexes i4, i5, the column half, 6 stores. */
#define W4_IN_ROW(a, d, i4, i5)                                                                              \
    {                                                                                                        \
        __m512 lo[4], sh[4];                                                                                 \
        for (int t = 0; t < 4; t++) {                                                                        \
            W4R_BT(lo[t], LO, a)                                                                             \
            W4R_BT(sh[t], SH, a)                                                                             \
        }                                                                                                    \
        __m512 c0 = W4_PICK(lo, ix0), c1 = W4_PICK(lo, ix1), c2 = W4_PICK(lo, ix2), c3 = W4_PICK(lo, ix3);     \
        __m512 c4 = W4_PICK(sh, i4), c5 = W4_PICK(sh, i5);                                                   \
        __m512 o0, o1, o2, o3, o4, o5;                                                                       \
        W4_BT(o0, o1, o2, o3, o4, o5, c0, c1, c2, c3, c4, c5)                                                \
        W4_ST6((d) + (size_t)(6 * (a)) * ldk)                                                                \
    }
/* The same for the dY tiles (4 source rows, 4 columns: no sh). */
#define W4_GRAD_ROW(a, d)                                                                                    \
    {                                                                                                        \
        __m512 lo[4];                                                                                        \
        for (int t = 0; t < 4; t++) W4R_A(lo[t], LO, a)                                                      \
        __m512 c0 = W4_PICK(lo, ix0), c1 = W4_PICK(lo, ix1), c2 = W4_PICK(lo, ix2), c3 = W4_PICK(lo, ix3);     \
        __m512 o0, o1, o2, o3, o4, o5;                                                                       \
        W4_A(o0, o1, o2, o3, o4, o5, c0, c1, c2, c3)                                                         \
        W4_ST6((d) + (size_t)(6 * (a)) * ldk)                                                                \
    }
#define W4_ROWS6(ROW, ...) ROW(0, __VA_ARGS__) ROW(1, __VA_ARGS__) ROW(2, __VA_ARGS__) ROW(3, __VA_ARGS__)   \
    ROW(4, __VA_ARGS__) ROW(5, __VA_ARGS__)

/* The group's source rows r < n (plane rows h0 + r, zero outside [0, H))
 * into an aligned L1 buffer, 16 floats from column c0 - pad (mask m) at
 * xb[r·ld], and with two (ld 32) from column c0 + 2 - pad (mask m2) at
 * xb[r·ld + 16]: the row half then reads them at fixed offsets. Loading
 * them from the plane directly kept 18 row pointers live, which spilled. */
__attribute__((target("avx512f"), always_inline))
static inline void w4_rows(float *xb, int n, int ld, const float *x, int h0, int H, int W, int pad, __mmask16 m,
                           __mmask16 m2) {
    for (int r = 0; r < n; r++) {
        const int h = h0 + r;
        __m512 lo = _mm512_setzero_ps(), sh = lo;
        if (h >= 0 && h < H) {
            lo = _mm512_maskz_loadu_ps(m, x + (size_t)h * W - pad);
            if (ld == 32) sh = _mm512_maskz_loadu_ps(m2, x + (size_t)h * W - pad + 2);
        }
        _mm512_store_ps(xb + r * ld, lo);
        if (ld == 32) _mm512_store_ps(xb + r * ld + 16, sh);
    }
}

__attribute__((target("avx512f"), optimize("O3")))
static void in4w_avx512(float *u, size_t ldk, const float *x, int H, int W, int pad, int TH, const float *next) {
    if (next) prefetch_plane(next, (size_t)H * W);
    const __mmask16 mlo = lanes16(pad, pad + W), msh = lanes16(pad - 2, pad - 2 + W);
    const __m512i ix0 = pick4_idx(0), ix1 = pick4_idx(1), ix2 = pick4_idx(2), ix3 = pick4_idx(3);
    for (int th0 = 0; th0 < TH; th0 += 4) {
        const int ng = TH - th0 < 4 ? TH - th0 : 4;
        float xb[18 * 32] __attribute__((aligned(64)));
        w4_rows(xb, 18, 32, x, 4 * th0 - pad, H, W, pad, mlo, msh);
        const __mmask16 ms = lanes16(0, 4 * ng);
        float *dst = u + (size_t)th0 * 4;
#define LO(i) _mm512_load_ps(xb + (4 * t + (i)) * 32)
#define SH(i) _mm512_load_ps(xb + (4 * t + (i)) * 32 + 16)
        W4_ROWS6(W4_IN_ROW, dst, ix2, ix3)
#undef LO
#undef SH
    }
}

/* The same for the 4x4 dY tiles (columns 0-15 only: no sh). */
__attribute__((target("avx512f"), optimize("O3")))
static void grad4w_avx512(float *u, size_t ldk, const float *dy, int OH, int OW, int TH, const float *next) {
    if (next) prefetch_plane(next, (size_t)OH * OW);
    const __mmask16 mlo = lanes16(0, OW);
    const __m512i ix0 = pick4_idx(0), ix1 = pick4_idx(1), ix2 = pick4_idx(2), ix3 = pick4_idx(3);
    for (int th0 = 0; th0 < TH; th0 += 4) {
        const int ng = TH - th0 < 4 ? TH - th0 : 4;
        float xb[16 * 16] __attribute__((aligned(64)));
        w4_rows(xb, 16, 16, dy, 4 * th0, OH, OW, 0, mlo, 0);
        const __mmask16 ms = lanes16(0, 4 * ng);
        float *dst = u + (size_t)th0 * 4;
#define LO(i) _mm512_load_ps(xb + (4 * t + (i)) * 16)
        W4_ROWS6(W4_GRAD_ROW, dst)
#undef LO
    }
}

/* ---- AVX-512, four planes a vector (TW = TH = 2: 5-8 wide maps) -------------
 * A 7x7 or 8x8 map has 4 tiles: the kernels above fill 4 of 16 lanes (two
 * tile rows a vector). Here the planes of 4 consecutive samples (one
 * channel), whose tiles are consecutive in U, share the vector: lane
 * 4·q + 2·th + tw. The planes' padded rows are staged in an L1 buffer so
 * that one 16-float load holds two planes' row: xb[ρ·64 + 8·q] columns 0-7
 * of plane q (`lo`), xb[ρ·64 + 32 + 8·q] columns 4-11 (`sh`); the row half
 * runs on those (lanes 0-7 plane 2p, 8-15 plane 2p + 1); column j of tile
 * tw is lo's column 4·tw + j (j < 4) or sh's 4·tw + j − 4 (j = 4, 5); a
 * permute per plane pair and a blend gather the 16 tiles, as above. */
__attribute__((target("avx512f")))
static __m512i pickq_idx(int j) {
    int idx[16];
    for (int l = 0; l < 16; l++) idx[l] = 16 * ((l / 2) % 2) + 8 * ((l / 4) % 2) + 4 * (l % 2) + j;
    return _mm512_loadu_si512(idx);
}

/* n rows ρ (plane rows h0 + ρ) of nq planes ps apart: 8 floats of each
 * from column c0 - pad (mask m, lanes of 8) at xb[ρ·ld + off + 8·q]; rows
 * outside [0, H) and planes past nq are zeros. */
__attribute__((target("avx512f,avx512vl"), always_inline))
static inline void w4_rows_q(float *xb, int n, int ld, int off, const float *x, size_t ps, int nq, int h0, int H, int W,
                             int c0, __mmask8 m) {
    for (int r = 0; r < n; r++) {
        const int h = h0 + r;
        for (int q = 0; q < 4; q++) {
            __m256 v = _mm256_setzero_ps();
            if (q < nq && h >= 0 && h < H) v = _mm256_maskz_loadu_ps(m, x + q * ps + (size_t)h * W + c0);
            _mm256_store_ps(xb + r * ld + off + 8 * q, v);
        }
    }
}

__attribute__((target("avx512f,avx512vl")))
static __mmask8 lanes8m(int lo, int hi) { return (__mmask8)lanes16(lo < 8 ? lo : 8, hi < 8 ? hi : 8); }

__attribute__((target("avx512f,avx512vl"), optimize("O3")))
static void in4q_avx512(float *u, size_t ldk, const float *x, size_t ps, int nq, int H, int W, int pad,
                        const float *next) {
    if (next)
        for (int q = 0; q < 4; q++) prefetch_plane(next + q * ps, (size_t)H * W);
    float xb[10 * 64] __attribute__((aligned(64)));
    w4_rows_q(xb, 10, 64, 0, x, ps, nq, -pad, H, W, -pad, lanes8m(pad, pad + W));
    w4_rows_q(xb, 10, 64, 32, x, ps, nq, -pad, H, W, 4 - pad, lanes8m(pad - 4, pad - 4 + W));
    const __m512i ix0 = pickq_idx(0), ix1 = pickq_idx(1), ix2 = pickq_idx(2), ix3 = pickq_idx(3);
    const __mmask16 ms = lanes16(0, 4 * nq);
    /* group t: plane pair t / 2, tile row t % 2 */
#define LO(i) _mm512_load_ps(xb + (4 * (t % 2) + (i)) * 64 + 16 * (t / 2))
#define SH(i) _mm512_load_ps(xb + (4 * (t % 2) + (i)) * 64 + 32 + 16 * (t / 2))
    W4_ROWS6(W4_IN_ROW, u, ix0, ix1)
#undef LO
#undef SH
}

__attribute__((target("avx512f,avx512vl"), optimize("O3")))
static void grad4q_avx512(float *u, size_t ldk, const float *dy, size_t ps, int nq, int OH, int OW,
                          const float *next) {
    if (next)
        for (int q = 0; q < 4; q++) prefetch_plane(next + q * ps, (size_t)OH * OW);
    float xb[8 * 32] __attribute__((aligned(64)));
    w4_rows_q(xb, 8, 32, 0, dy, ps, nq, 0, OH, OW, 0, lanes8m(0, OW));
    const __m512i ix0 = pickq_idx(0), ix1 = pickq_idx(1), ix2 = pickq_idx(2), ix3 = pickq_idx(3);
    const __mmask16 ms = lanes16(0, 4 * nq);
#define LO(i) _mm512_load_ps(xb + (4 * (t % 2) + (i)) * 32 + 16 * (t / 2))
    W4_ROWS6(W4_GRAD_ROW, u)
#undef LO
}
#undef W4R_BT
#undef W4R_A
#undef W4_PICK
#undef W4_ST6
#undef W4_IN_ROW
#undef W4_GRAD_ROW
#undef W4_ROWS6

/* The output transform with the 1-D macro on vectors: 16 (8) tiles a
 * vector, the reference's operations lane by lane. */
#define W4_OUT_BODY(VT, LOAD, STORE, ADD, SET1)                                                              \
    {                                                                                                        \
        VT s[4][6];                                                                                          \
        for (int j = 0; j < 6; j++) {                                                                        \
            const float *c = m + (size_t)j * ldk + t;                                                        \
            VT m0 = LOAD(c), m1 = LOAD(c + 6 * ldk), m2 = LOAD(c + 12 * ldk), m3 = LOAD(c + 18 * ldk);       \
            VT m4 = LOAD(c + 24 * ldk), m5 = LOAD(c + 30 * ldk);                                             \
            W4_AT(s[0][j], s[1][j], s[2][j], s[3][j], m0, m1, m2, m3, m4, m5)                                \
        }                                                                                                    \
        const VT bb = SET1(bv);                                                                              \
        for (int a = 0; a < 4; a++) {                                                                        \
            VT y0, y1, y2, y3;                                                                               \
            W4_AT(y0, y1, y2, y3, s[a][0], s[a][1], s[a][2], s[a][3], s[a][4], s[a][5])                      \
            STORE(o + (size_t)(4 * a + 0) * T + t, ADD(y0, bb));                                             \
            STORE(o + (size_t)(4 * a + 1) * T + t, ADD(y1, bb));                                             \
            STORE(o + (size_t)(4 * a + 2) * T + t, ADD(y2, bb));                                             \
            STORE(o + (size_t)(4 * a + 3) * T + t, ADD(y3, bb));                                             \
        }                                                                                                    \
    }

__attribute__((target("avx512f"), optimize("O3")))
static void out4_avx512(float *o, const float *m, size_t ldk, int T, float bv) {
    int t = 0;
#define LD16(p) _mm512_loadu_ps(p)
#define ST16(p, v) _mm512_storeu_ps(p, v)
    for (; t + 16 <= T; t += 16) W4_OUT_BODY(__m512, LD16, ST16, _mm512_add_ps, _mm512_set1_ps)
#undef LD16
#undef ST16
    if (t < T) {
        const __mmask16 mk = lanes16(0, T - t);
#define LD16(p) _mm512_maskz_loadu_ps(mk, p)
#define ST16(p, v) _mm512_mask_storeu_ps(p, mk, v)
        W4_OUT_BODY(__m512, LD16, ST16, _mm512_add_ps, _mm512_set1_ps)
#undef LD16
#undef ST16
    }
}

__attribute__((target("avx2"), optimize("O3")))
static void out4_avx2(float *o, const float *m, size_t ldk, int T, float bv) {
    int t = 0;
#define LD8(p) _mm256_loadu_ps(p)
#define ST8(p, v) _mm256_storeu_ps(p, v)
    for (; t + 8 <= T; t += 8) W4_OUT_BODY(__m256, LD8, ST8, _mm256_add_ps, _mm256_set1_ps)
#undef LD8
#undef ST8
    if (t < T) out4_ref(o + t, m + t, ldk, T - t, T, bv);
}
#undef W4_OUT_BODY

/* Output row oh: the four vectors o[4a + b] (TW <= 8 tiles each) loaded in
 * pairs into the halves of two zmm, interleaved into 4·TW columns by two
 * permutes. */
__attribute__((target("avx512f"), optimize("O3")))
static void scatter4_avx512(float *y, const float *o, size_t ldo, int OH, int OW, int TW, int acc) {
    int il[16], ih[16];
    for (int l = 0; l < 32; l++) {
        int tw = l / 4, b = l % 4, v = (b < 2 ? 8 * b : 16 + 8 * (b - 2)) + tw;
        if (l < 16) il[l] = v; else ih[l - 16] = v;
    }
    const __m512i vl = _mm512_loadu_si512(il), vh = _mm512_loadu_si512(ih);
    const __mmask16 lo8 = lanes16(0, TW), hi8 = lanes16(8, 8 + TW), m0 = lanes16(0, OW), m1 = lanes16(-16, OW - 16);
    for (int oh = 0; oh < OH; oh++) {
        const float *s = o + (size_t)(4 * (oh % 4)) * ldo + (size_t)(oh / 4) * TW;
        __m512 p = _mm512_maskz_loadu_ps(lo8, s), q = _mm512_maskz_loadu_ps(lo8, s + 2 * ldo);
        p = _mm512_mask_loadu_ps(p, hi8, s + ldo - 8);
        q = _mm512_mask_loadu_ps(q, hi8, s + 3 * ldo - 8);
        __m512 v0 = _mm512_permutex2var_ps(p, vl, q), v1 = _mm512_permutex2var_ps(p, vh, q);
        float *yr = y + (size_t)oh * OW;
        if (acc == 1) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yr), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yr + 16), v1);
        } else if (acc == 2) {   /* MAXPS(v, +0) is v > 0 ? v : +0, NaN and -0 included */
            v0 = _mm512_max_ps(v0, _mm512_setzero_ps());
            v1 = _mm512_max_ps(v1, _mm512_setzero_ps());
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        if (OW > 16) _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
}

/* ---- AVX2 ------------------------------------------------------------------
 * One tile row per vector (TW <= 7, lane tw): the row half of the
 * transform on 8-column chunks of the padded rows, stored to a small
 * buffer (row a of the combined rows at buf + 40a, zero past the plane),
 * then column j of tile tw (buffer column 4·tw + j) picked for 8 tiles at
 * once by a 4-float-group transpose: v_g = [group g | group g + 4] (two
 * 128-bit loads), unpacklo/hi_ps then unpacklo/hi_pd give columns 0..3 of
 * groups 0..7 in order; columns 4, 5 are columns 0, 1 of the next group. */
__attribute__((target("avx2"))) static __m256i lanes8i(int lo, int hi) {   /* lanes [lo, hi) of 8 */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx));
}

/* Stores lanes [0, n) of v (vmaskmovps stores are microcoded on AMD). */
__attribute__((target("avx2"), always_inline)) static inline void st8(float *d, __m256 v, int n) {
    if (n >= 8) { _mm256_storeu_ps(d, v); return; }
    __m128 x = _mm256_castps256_ps128(v);
    if (n >= 4) { _mm_storeu_ps(d, x); x = _mm256_extractf128_ps(v, 1); d += 4; n -= 4; }
    if (n >= 2) { _mm_storel_pi((__m64 *)d, x); x = _mm_movehl_ps(x, x); d += 2; n -= 2; }
    if (n) _mm_store_ss(d, x);
}

#define W4_BUF 40   /* floats per combined row in the buffer: 32 columns + group 8 (zero) */

/* c0..c3 (and with SHIFT c4, c5) of buffer row b: see above. */
#define W4_PICK8(b, c0, c1, c2, c3)                                                                          \
    __m256 v0_ = _mm256_loadu2_m128((b) + 16, (b)), v1_ = _mm256_loadu2_m128((b) + 20, (b) + 4);            \
    __m256 v2_ = _mm256_loadu2_m128((b) + 24, (b) + 8), v3_ = _mm256_loadu2_m128((b) + 28, (b) + 12);       \
    __m256 t0_ = _mm256_unpacklo_ps(v0_, v1_), t1_ = _mm256_unpackhi_ps(v0_, v1_);                          \
    __m256 t2_ = _mm256_unpacklo_ps(v2_, v3_), t3_ = _mm256_unpackhi_ps(v2_, v3_);                          \
    c0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0_), _mm256_castps_pd(t2_)));                \
    c1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0_), _mm256_castps_pd(t2_)));                \
    c2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1_), _mm256_castps_pd(t3_)));                \
    c3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1_), _mm256_castps_pd(t3_)));
#define W4_PICK8_SHIFT(b, c4, c5)                                                                            \
    {                                                                                                        \
        __m256 v4_ = _mm256_loadu2_m128((b) + 32, (b) + 16);                                                 \
        __m256 s0_ = _mm256_unpacklo_ps(v1_, v2_), s2_ = _mm256_unpacklo_ps(v3_, v4_);                      \
        c4 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(s0_), _mm256_castps_pd(s2_)));            \
        c5 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(s0_), _mm256_castps_pd(s2_)));            \
    }

__attribute__((target("avx2"), optimize("O3")))
static void in4_avx2(float *u, size_t ldk, const float *x, int H, int W, int pad, int TH, int TW) {
    float buf[6 * W4_BUF];
    memset(buf, 0, sizeof buf);
    const int nq = (4 * TW + 2 + 7) / 8;   /* 8-column chunks of the padded row */
    __m256i mq[4];
    for (int q = 0; q < 4; q++) mq[q] = lanes8i(pad - 8 * q, pad + W - 8 * q);
    const __m256 z = _mm256_setzero_ps();
    for (int th = 0; th < TH; th++) {
        for (int q = 0; q < nq; q++) {
            __m256 d[6], r0, r1, r2, r3, r4, r5;
            for (int i = 0; i < 6; i++) {
                int h = 4 * th + i - pad;
                d[i] = h < 0 || h >= H ? z : _mm256_maskload_ps(x + (size_t)h * W - pad + 8 * q, mq[q]);
            }
            W4_BT(r0, r1, r2, r3, r4, r5, d[0], d[1], d[2], d[3], d[4], d[5])
            float *b = buf + 8 * q;
            _mm256_storeu_ps(b, r0); _mm256_storeu_ps(b + W4_BUF, r1); _mm256_storeu_ps(b + 2 * W4_BUF, r2);
            _mm256_storeu_ps(b + 3 * W4_BUF, r3); _mm256_storeu_ps(b + 4 * W4_BUF, r4);
            _mm256_storeu_ps(b + 5 * W4_BUF, r5);
        }
        float *dst = u + (size_t)th * TW;
        for (int a = 0; a < 6; a++) {
            const float *b = buf + a * W4_BUF;
            __m256 c0, c1, c2, c3, c4, c5, o0, o1, o2, o3, o4, o5;
            W4_PICK8(b, c0, c1, c2, c3)
            W4_PICK8_SHIFT(b, c4, c5)
            W4_BT(o0, o1, o2, o3, o4, o5, c0, c1, c2, c3, c4, c5)
            float *d_ = dst + (size_t)(6 * a) * ldk;
            st8(d_, o0, TW); st8(d_ + ldk, o1, TW); st8(d_ + 2 * ldk, o2, TW);
            st8(d_ + 3 * ldk, o3, TW); st8(d_ + 4 * ldk, o4, TW); st8(d_ + 5 * ldk, o5, TW);
        }
    }
}

__attribute__((target("avx2"), optimize("O3")))
static void grad4_avx2(float *u, size_t ldk, const float *dy, int OH, int OW, int TH, int TW) {
    float buf[6 * W4_BUF];
    memset(buf, 0, sizeof buf);
    const int nq = (4 * TW + 7) / 8;
    __m256i mq[4];
    for (int q = 0; q < 4; q++) mq[q] = lanes8i(-8 * q, OW - 8 * q);
    const __m256 z = _mm256_setzero_ps();
    for (int th = 0; th < TH; th++) {
        for (int q = 0; q < nq; q++) {
            __m256 d[4], r0, r1, r2, r3, r4, r5;
            for (int i = 0; i < 4; i++) {
                int h = 4 * th + i;
                d[i] = h >= OH ? z : _mm256_maskload_ps(dy + (size_t)h * OW + 8 * q, mq[q]);
            }
            W4_A(r0, r1, r2, r3, r4, r5, d[0], d[1], d[2], d[3])
            float *b = buf + 8 * q;
            _mm256_storeu_ps(b, r0); _mm256_storeu_ps(b + W4_BUF, r1); _mm256_storeu_ps(b + 2 * W4_BUF, r2);
            _mm256_storeu_ps(b + 3 * W4_BUF, r3); _mm256_storeu_ps(b + 4 * W4_BUF, r4);
            _mm256_storeu_ps(b + 5 * W4_BUF, r5);
        }
        float *dst = u + (size_t)th * TW;
        for (int a = 0; a < 6; a++) {
            const float *b = buf + a * W4_BUF;
            __m256 c0, c1, c2, c3, o0, o1, o2, o3, o4, o5;
            W4_PICK8(b, c0, c1, c2, c3)
            (void)v0_;
            W4_A(o0, o1, o2, o3, o4, o5, c0, c1, c2, c3)
            float *d_ = dst + (size_t)(6 * a) * ldk;
            st8(d_, o0, TW); st8(d_ + ldk, o1, TW); st8(d_ + 2 * ldk, o2, TW);
            st8(d_ + 3 * ldk, o3, TW); st8(d_ + 4 * ldk, o4, TW); st8(d_ + 5 * ldk, o5, TW);
        }
    }
}
#undef W4_PICK8
#undef W4_PICK8_SHIFT

/* Output row oh: the four vectors o[4a + b] (tiles th·TW + 0..7) become the
 * 4·TW columns [t0 | t1], [t2 | t3], [t4 | t5], [t6 | t7] by the inverse
 * 4-float-group transpose. */
__attribute__((target("avx2"), optimize("O3")))
static void scatter4_avx2(float *y, const float *o, size_t ldo, int OH, int OW, int TW, int acc) {
    const __m256i mt = lanes8i(0, TW);
    for (int oh = 0; oh < OH; oh++) {
        const float *s = o + (size_t)(4 * (oh % 4)) * ldo + (size_t)(oh / 4) * TW;
        __m256 o0 = _mm256_maskload_ps(s, mt), o1 = _mm256_maskload_ps(s + ldo, mt);
        __m256 o2 = _mm256_maskload_ps(s + 2 * ldo, mt), o3 = _mm256_maskload_ps(s + 3 * ldo, mt);
        __m256 x0 = _mm256_unpacklo_ps(o0, o1), x1 = _mm256_unpacklo_ps(o2, o3);
        __m256 x2 = _mm256_unpackhi_ps(o0, o1), x3 = _mm256_unpackhi_ps(o2, o3);
        __m256 y0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(x0), _mm256_castps_pd(x1)));
        __m256 y1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(x0), _mm256_castps_pd(x1)));
        __m256 y2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(x2), _mm256_castps_pd(x3)));
        __m256 y3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(x2), _mm256_castps_pd(x3)));
        __m256 r[4] = {_mm256_permute2f128_ps(y0, y1, 0x20), _mm256_permute2f128_ps(y2, y3, 0x20),
                       _mm256_permute2f128_ps(y0, y1, 0x31), _mm256_permute2f128_ps(y2, y3, 0x31)};
        float *yr = y + (size_t)oh * OW;
        for (int q = 0; q < 4 && 8 * q < OW; q++) {
            int n = OW - 8 * q < 8 ? OW - 8 * q : 8;
            __m256 v = r[q];
            if (acc == 1) v = _mm256_add_ps(_mm256_maskload_ps(yr + 8 * q, lanes8i(0, n)), v);
            else if (acc == 2) v = _mm256_max_ps(v, _mm256_setzero_ps());   /* as above */
            st8(yr + 8 * q, v, n);
        }
    }
}

/* ---- dispatch: the same bits on every path ---------------------------------- */

void rf_nn_wino4_in(float *u, size_t ldk, const float *x, int H, int W, int pad, int TH, int TW, const float *next) {
    rf_isa isa = rf_kernels_isa();
    if (isa >= RF_ISA_AVX512 && TW == 4) in4w_avx512(u, ldk, x, H, W, pad, TH, next);
    else if (isa >= RF_ISA_AVX512 && 4 * TW + 2 <= 32) in4_avx512(u, ldk, x, H, W, pad, TH, TW, next);
    else if (isa >= RF_ISA_AVX2 && 4 * TW + 2 <= 32) in4_avx2(u, ldk, x, H, W, pad, TH, TW);
    else in4_ref(u, ldk, x, H, W, pad, TH, TW);
}

void rf_nn_wino4_out(float *o, const float *m, size_t ldk, int T, float bv) {
    rf_isa isa = rf_kernels_isa();
    if (isa >= RF_ISA_AVX512) out4_avx512(o, m, ldk, T, bv);
    else if (isa >= RF_ISA_AVX2) out4_avx2(o, m, ldk, T, bv);
    else out4_ref(o, m, ldk, T, T, bv);
}

void rf_nn_wino4_grad(float *u, size_t ldk, const float *dy, int OH, int OW, int TH, int TW, const float *next) {
    rf_isa isa = rf_kernels_isa();
    if (isa >= RF_ISA_AVX512 && TW == 4) grad4w_avx512(u, ldk, dy, OH, OW, TH, next);
    else if (isa >= RF_ISA_AVX512 && 4 * TW <= 32) grad4_avx512(u, ldk, dy, OH, OW, TH, TW, next);
    else if (isa >= RF_ISA_AVX2 && 4 * TW <= 28) grad4_avx2(u, ldk, dy, OH, OW, TH, TW);
    else grad4_ref(u, ldk, dy, OH, OW, TH, TW);
}

void rf_nn_wino4_scatter(float *y, const float *o, size_t ldo, int OH, int OW, int TW, int acc) {
    rf_isa isa = rf_kernels_isa();
    if (isa >= RF_ISA_AVX512 && 4 * TW <= 32) scatter4_avx512(y, o, ldo, OH, OW, TW, acc);
    else if (isa >= RF_ISA_AVX2 && 4 * TW <= 32) scatter4_avx2(y, o, ldo, OH, OW, TW, acc);
    else scatter4_ref(y, o, ldo, OH, OW, TW, acc);
}

/* n <= 4 planes of consecutive samples (x + q·ps) into their tiles u + q·TH·TW. */
void rf_nn_wino4_in_planes(float *u, size_t ldk, const float *x, size_t ps, int n, int H, int W, int pad, int TH,
                           int TW, const float *next) {
    if (rf_kernels_isa() >= RF_ISA_AVX512 && TH == 2 && TW == 2) {
        in4q_avx512(u, ldk, x, ps, n, H, W, pad, next);
        return;
    }
    for (int q = 0; q < n; q++)
        rf_nn_wino4_in(u + (size_t)q * TH * TW, ldk, x + q * ps, H, W, pad, TH, TW, q + 1 < n ? x + (q + 1) * ps : next);
}

void rf_nn_wino4_grad_planes(float *u, size_t ldk, const float *dy, size_t ps, int n, int OH, int OW, int TH, int TW,
                             const float *next) {
    if (rf_kernels_isa() >= RF_ISA_AVX512 && TH == 2 && TW == 2) {
        grad4q_avx512(u, ldk, dy, ps, n, OH, OW, next);
        return;
    }
    for (int q = 0; q < n; q++)
        rf_nn_wino4_grad(u + (size_t)q * TH * TW, ldk, dy + q * ps, OH, OW, TH, TW, q + 1 < n ? dy + (q + 1) * ps : next);
}
