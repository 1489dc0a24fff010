/* Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray 2016,
 * F(4x4, 3x3): the same driver with 36 products, its transforms in
 * conv_winograd4.c; the layout notes below hold with 16 -> 36, 2 -> 4.
 * "Fast Algorithms for Convolutional Neural Networks", eq. 8-10):
 *
 *   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A     per 4×4 input tile d, 2×2 output
 *
 *   Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G  = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
 *   Aᵀ = [1 1 1 0; 0 1 -1 -1]
 *
 * 16 multiplies per 2×2 outputs and channel pair instead of 36 (2.25×
 * fewer). Summed over input channels, the element-wise product becomes 16
 * independent GEMMs, one per tile position k = 4i + j:
 *   M[k] (Co × T) = V[k] (Co × C) · U[k] (C × T),   T = tiles of a chunk.
 * Layouts (all row-major, tiles contiguous so that the GEMMs and the
 * transforms stream memory): U[k][c][t], M[k][co][t], V[k][co][c]; a chunk
 * of samples puts sample j's tiles at t = j·tiles + th·TW + tw.
 *
 * Backward:
 *   d input   the input gradient of a stride-1 conv is the conv of dy padded
 *             by 2 − pad with the flipped, channel-transposed kernel; its
 *             Winograd weights are P V[k]ᵀ Pᵀ (P swaps rows 0 and 3, since
 *             G·flip = P·G), so the same code runs with Vᵀ and permuted k.
 *   d weight  by linearity of the forward in V: dV[k] += (A dY Aᵀ)[k] ·
 *             U[k]ᵀ (16 GEMMs with K = tiles), then dW += Gᵀ dV G.
 * Output positions past OH/OW in the edge tiles of odd sizes are computed
 * and dropped (forward) or have zero gradient (backward).
 *
 * The transforms are plain C (vectorised per ISA by RF_NN_VEC), with
 * AVX-512 versions of the input-side ones picked by rf_kernels_isa(); all
 * are adds only, in the same order, and -std=c11 contracts nothing into
 * FMAs, so every version gives the same bits (test_winograd checks it).
 * The GEMMs are OpenBLAS sgemm. Fixed loop orders and chunking that depends
 * on the batch size only keep results bit-identical run to run. */
#include "nn/conv_winograd.h"

#include "nn/layers.h"

#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* Samples per chunk: as many as keep a chunk's U and M within WINO_BUDGET
 * floats (2 MB: written by the transforms, then read by sgemm, from L2),
 * but at least enough for WINO_MIN_T tiles, the GEMMs' N (7×7 maps have 16
 * tiles a sample, and sgemm with N = 16 runs far below peak). Measured on
 * conv-6's shapes (Zen 4, 1 MB L2, a shared machine, so ±10% noise):
 * budgets of 4 and 16 MB lost 10-25% on 28×28 maps; on 7×7 maps N = 128
 * beat N = 64 and N = 256 by ~10%. */
#define WINO_MIN_T 128
#define WINO_BUDGET (1u << 19)

int rf_nn_wino_fits(int kh, int kw, int s, int pad) { return kh == 3 && kw == 3 && s == 1 && pad >= 0 && pad <= 1; }

/* One Winograd convolution: Ci -> Co channels, Hi×Wi inputs padded by pad
 * (0..2), OH×OW outputs in TH×TW tiles; the padded plane is Hp×Wp. */
/* m: output tile size (2: F(2x2, 3x3), 4: F(4x4, 3x3)); ak = (m + 2)²
 * tile positions, i.e. products per chunk. */
typedef struct wg { int Ci, Hi, Wi, Co, pad, OH, OW, TH, TW, T, Hp, Wp, m, ak; } wg;

static wg wg_of(int Ci, int Hi, int Wi, int Co, int pad, int m) {
    wg g;
    g.Ci = Ci; g.Hi = Hi; g.Wi = Wi; g.Co = Co; g.pad = pad; g.m = m; g.ak = (m + 2) * (m + 2);
    g.OH = Hi + 2 * pad - 2; g.OW = Wi + 2 * pad - 2;
    g.TH = (g.OH + m - 1) / m; g.TW = (g.OW + m - 1) / m;
    g.T = g.TH * g.TW;
    g.Hp = m * g.TH + 2; g.Wp = m * g.TW + 2;
    return g;
}

static int wg_chunk(const wg *g, int B) {
    size_t per = (size_t)g->ak * ((size_t)g->Ci + (size_t)g->Co) * (size_t)g->T;
    size_t ns = WINO_BUDGET / per, nmin = (WINO_MIN_T + (size_t)g->T - 1) / (size_t)g->T;
    if (ns < nmin) ns = nmin;
    if (ns < 1) ns = 1;
    if (ns > (size_t)B) ns = (size_t)B;
    return (int)ns;
}

/* Samples per chunk of a forward or input-gradient run (wino_run) on
 * `threads`: wg_chunk's, halved on two or more threads where a chunk's U and
 * M exceed twice WINO_BUDGET. The WINO_MIN_T floor makes 7x7 maps' chunks
 * 32 samples (conv-6's conv5/conv6: U + M 7-9.4 MB, 14x14's 4.7 MB): one
 * part's fit the L3 beside the packed weights, two parts' at once did not
 * (thr22d: conv5 and conv6 backward on 2 threads 5-15% faster with half
 * the chunk; 28x28 maps, 2.7 MB, lost 7-20% at 2 samples instead of 3).
 * A run's chunk changes who computes a sample's tiles, never their values
 * (wino_run_part), so this is free to depend on the thread count; the
 * weight gradient's chunks are a reduction order and keep wg_chunk's. */
static int wg_run_chunk(const wg *g, int B, int threads) {
    int chunk = wg_chunk(g, B);
    size_t um = (size_t)g->ak * ((size_t)g->Ci + (size_t)g->Co) * (size_t)chunk * g->T;
    return threads > 1 && um > 2 * (size_t)WINO_BUDGET ? (chunk + 1) / 2 : chunk;
}

/* F(4x4)'s U[k] and M[k] are rows·tc floats plus WINO4_SKEW apart: with
 * 128 or 256 channels and 128 tiles the plain stride is a power of two
 * (64-128 KB), and the transforms' 36 streams all fell into one L1 set
 * (the 14x14 layers ran 2x slower than F(2x2) until this). */
#define WINO4_SKEW 16
/* F(4x4)'s plane transforms prefetch the plane WINO4_PF calls ahead: the
 * planes of consecutive samples are far apart and miss cache, and one call
 * ahead (~100 ns) left the first row loads waiting on memory (perf). */
#define WINO4_PF 4
/* Plane p (of ns samples x C channels) in F(4x4)'s transform order: blocks
 * of WINO4_CG channels, samples, then the block's channels: U[k][c] is
 * written nearly front to back (36 streams per channel of the block), and
 * the block's planes of one sample are adjacent (one page, where samples
 * inner alone touched a new page every plane). */
#define WINO4_CG 4
static void wino4_plane(size_t p, size_t ns, size_t C, size_t *j, size_t *c) {
    size_t blk = WINO4_CG * ns, cb = p / blk, r = p % blk;
    size_t gsz = C - cb * WINO4_CG < WINO4_CG ? C - cb * WINO4_CG : WINO4_CG;
    *j = r / gsz;
    *c = cb * WINO4_CG + r % gsz;
}
/* Samples per F(4x4) transform call: 4 where a plane has 2x2 tiles (7x7,
 * 8x8 maps: the AVX-512 kernel fills its 16 lanes with 4 samples' tiles,
 * which are consecutive in U), else 1. Units of that many samples take the
 * place of samples in wino4_plane's order; no value depends on it. */
static size_t wino4_group(const wg *g) { return g->TH == 2 && g->TW == 2 ? 4 : 1; }
static size_t wg_slab(const wg *g, int rows, size_t tc) { return (size_t)rows * tc + (g->m == 4 ? WINO4_SKEW : 0); }

/* U, M of a chunk + the padded plane (+ 4 floats of slack) + 4 output rows
 * of the chunk's tiles. */
static size_t wg_scratch(const wg *g, int B) {
    size_t tc = (size_t)wg_chunk(g, B) * g->T;
    return (size_t)g->ak * (((size_t)g->Ci + (size_t)g->Co) * tc + 2 * (size_t)WINO4_SKEW) + (size_t)g->Hp * g->Wp + 4 +
           (size_t)g->m * g->m * tc * (g->m == 4 ? WINO4_CG : 1);
}

/* V[k][co][c] = (G g Gᵀ)[k] for g = w[co, c] (3×3), co in [co0, co1); with
 * tr, V[k][c][co]. The products read V as op(A) with A transposed (trans_a
 * 1), whose packing is a copy of 6-float runs: the forward takes the tr
 * layout, the input gradient (which multiplies by Vᵀ) the plain one. Before,
 * the forward packed V[k][co][c] through 8x8 transposes once per product,
 * 16 products per chunk (pack_a: ~5% of a conv-4 step). The layout changes
 * no product's value. */
RF_NN_VEC static void wino_weights(float *restrict V, const float *restrict w, int Co, int C, int co0, int co1, int tr) {
    size_t ldk = (size_t)Co * C;
    for (int co = co0; co < co1; co++)
        for (int c = 0; c < C; c++) {
            const float *g = w + ((size_t)co * C + c) * 9;
            float r[4][3];
            for (int j = 0; j < 3; j++) {
                float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
                r[0][j] = g0;
                r[1][j] = 0.5f * (g0 + g1 + g2);
                r[2][j] = 0.5f * (g0 - g1 + g2);
                r[3][j] = g2;
            }
            float *v = tr ? V + (size_t)c * Co + co : V + (size_t)co * C + c;
            for (int i = 0; i < 4; i++) {
                v[(size_t)(4 * i + 0) * ldk] = r[i][0];
                v[(size_t)(4 * i + 1) * ldk] = 0.5f * (r[i][0] + r[i][1] + r[i][2]);
                v[(size_t)(4 * i + 2) * ldk] = 0.5f * (r[i][0] - r[i][1] + r[i][2]);
                v[(size_t)(4 * i + 3) * ldk] = r[i][2];
            }
        }
}

/* u[k·ldk + th·TW + tw] = (Bᵀ d B)[k] for the tiles d of one padded plane,
 * given split into its even columns ev[Hp][TW + 1] and odd columns
 * od[Hp][TW + 1]: tile tw reads columns 2tw..2tw+3 = ev[tw], od[tw],
 * ev[tw+1], od[tw+1], all unit-stride, so the loop over tiles vectorises. */
RF_NN_VEC static void wino_in_tf(float *restrict u, size_t ldk, const float *restrict ev, const float *restrict od,
                                 int TH, int TW) {
    const int ld = TW + 1;
    for (int th = 0; th < TH; th++) {
        const float *e0 = ev + (size_t)2 * th * ld, *e1 = e0 + ld, *e2 = e1 + ld, *e3 = e2 + ld;
        const float *o0 = od + (size_t)2 * th * ld, *o1 = o0 + ld, *o2 = o1 + ld, *o3 = o2 + ld;
        float *o = u + (size_t)th * TW;
        for (int tw = 0; tw < TW; tw++) {
            float w[4][4];
            /* Bᵀ d on the columns j = 0..3 of the tile */
#define WINO_COL(j, a0, a1, a2, a3)                                                                          \
    w[0][j] = (a0) - (a2); w[1][j] = (a1) + (a2); w[2][j] = (a2) - (a1); w[3][j] = (a1) - (a3);
            WINO_COL(0, e0[tw], e1[tw], e2[tw], e3[tw])
            WINO_COL(1, o0[tw], o1[tw], o2[tw], o3[tw])
            WINO_COL(2, e0[tw + 1], e1[tw + 1], e2[tw + 1], e3[tw + 1])
            WINO_COL(3, o0[tw + 1], o1[tw + 1], o2[tw + 1], o3[tw + 1])
#undef WINO_COL
            for (int i = 0; i < 4; i++) {
                o[(size_t)(4 * i + 0) * ldk + tw] = w[i][0] - w[i][2];
                o[(size_t)(4 * i + 1) * ldk + tw] = w[i][1] + w[i][2];
                o[(size_t)(4 * i + 2) * ldk + tw] = w[i][2] - w[i][1];
                o[(size_t)(4 * i + 3) * ldk + tw] = w[i][1] - w[i][3];
            }
        }
    }
}

/* Row x[0..W) placed at padded column pad + w, split by column parity:
 * ev[c/2] for even c, od[c/2] for odd c. */
RF_NN_VEC static void split_row(float *restrict ev, float *restrict od, const float *restrict x, int W, int pad) {
    const int a = pad & 1;
    float *e = ev + (a + pad) / 2, *o = od + (pad - a) / 2;
    const int ne = (W - a + 1) / 2, no = (W - (1 - a) + 1) / 2;
    for (int i = 0; i < ne; i++) e[i] = x[a + 2 * i];
    for (int i = 0; i < no; i++) o[i] = x[1 - a + 2 * i];
}

/* o[r·T + t] = (Aᵀ m A)[r] (r = 2a + b: output (a, b) of the tile) + bv for
 * T tiles, m[k·ldk + t]. */
RF_NN_VEC static void wino_out_tf(float *restrict o, const float *restrict m, size_t ldk, int T, float bv) {
    for (int t = 0; t < T; t++) {
        float s[2][4];
        for (int j = 0; j < 4; j++) {
            float m0 = m[(size_t)j * ldk + t], m1 = m[(size_t)(4 + j) * ldk + t];
            float m2 = m[(size_t)(8 + j) * ldk + t], m3 = m[(size_t)(12 + j) * ldk + t];
            s[0][j] = m0 + m1 + m2;
            s[1][j] = m1 - m2 - m3;
        }
        for (int a = 0; a < 2; a++) {
            o[(size_t)(2 * a) * T + t] = s[a][0] + s[a][1] + s[a][2] + bv;
            o[(size_t)(2 * a + 1) * T + t] = s[a][1] - s[a][2] - s[a][3] + bv;
        }
    }
}

/* y[OH, OW] (= or +=) the 2×2 outputs o[r·ldo + t] of a plane's tiles. */
RF_NN_VEC static void wino_scatter(float *restrict y, const float *restrict o, size_t ldo, int OH, int OW, int TW,
                                   int acc) {
    const int fw = OW / 2;
    for (int oh = 0; oh < OH; oh++) {
        int th = oh / 2, a = oh % 2;
        const float *restrict o0 = o + (size_t)(2 * a) * ldo + (size_t)th * TW, *restrict o1 = o0 + ldo;
        float *restrict yr = y + (size_t)oh * OW;
        if (acc) {
            for (int tw = 0; tw < fw; tw++) { yr[2 * tw] += o0[tw]; yr[2 * tw + 1] += o1[tw]; }
            if (OW & 1) yr[OW - 1] += o0[fw];
        } else {
            for (int tw = 0; tw < fw; tw++) { yr[2 * tw] = o0[tw]; yr[2 * tw + 1] = o1[tw]; }
            if (OW & 1) yr[OW - 1] = o0[fw];
        }
    }
}

/* u[k·ldk + t] = (A dY Aᵀ)[k] for the 2×2 tiles of one plane, split by
 * column parity like wino_in_tf: ev, od [2TH][TW] (zero past OH/OW).
 * A dY Aᵀ has rows (y0, y0 + y1, y0 − y1, −y1) of the tile's rows, and the
 * same on columns. */
RF_NN_VEC static void wino_grad_tf(float *restrict u, size_t ldk, const float *restrict ev, const float *restrict od,
                                   int TH, int TW) {
    for (int th = 0; th < TH; th++) {
        const float *e0 = ev + (size_t)2 * th * TW, *e1 = e0 + TW, *p0 = od + (size_t)2 * th * TW, *p1 = p0 + TW;
        float *o = u + (size_t)th * TW;
        for (int tw = 0; tw < TW; tw++) {
            float a = e0[tw], b = p0[tw], c = e1[tw], d = p1[tw];
            float r[4][2] = {{a, b}, {a + c, b + d}, {a - c, b - d}, {-c, -d}};
            for (int i = 0; i < 4; i++) {
                o[(size_t)(4 * i + 0) * ldk + tw] = r[i][0];
                o[(size_t)(4 * i + 1) * ldk + tw] = r[i][0] + r[i][1];
                o[(size_t)(4 * i + 2) * ldk + tw] = r[i][0] - r[i][1];
                o[(size_t)(4 * i + 3) * ldk + tw] = -r[i][1];
            }
        }
    }
}

/* dw[co, c] += (Gᵀ dV G) for dV[k][co][c], co in [co0, co1). */
static void wino_weights_back(float *restrict dw, const float *restrict dV, int Co, int C, int co0, int co1) {
    size_t ldk = (size_t)Co * C;
    for (int co = co0; co < co1; co++)
        for (int c = 0; c < C; c++) {
            const float *v = dV + (size_t)co * C + c;
            float r[3][4];
            for (int j = 0; j < 4; j++) {
                float v0 = v[(size_t)j * ldk], v1 = v[(size_t)(4 + j) * ldk];
                float v2 = v[(size_t)(8 + j) * ldk], v3 = v[(size_t)(12 + j) * ldk];
                r[0][j] = v0 + 0.5f * (v1 + v2);
                r[1][j] = 0.5f * (v1 - v2);
                r[2][j] = 0.5f * (v1 + v2) + v3;
            }
            float *g = dw + ((size_t)co * C + c) * 9;
            for (int i = 0; i < 3; i++) {
                g[3 * i + 0] += r[i][0] + 0.5f * (r[i][1] + r[i][2]);
                g[3 * i + 1] += 0.5f * (r[i][1] - r[i][2]);
                g[3 * i + 2] += 0.5f * (r[i][1] + r[i][2]) + r[i][3];
            }
        }
}

/* ---- AVX-512 versions of the plane transforms ------------------------------
 * The loops above run over the TW tiles of one tile row: 14, 7 or 4 for
 * 28×28, 14×14, 7×7 maps, too short for GCC's 16-lane loops (it ran them
 * mostly in scalar epilogues with 16 scattered stores per tile). Here one
 * vector holds G = 16 / TW whole tile rows (lanes g·TW + tw, which are also
 * consecutive tile indices, so each of the 16 results is one store), filled
 * by G masked loads per source row. Same operations in the same order as
 * the plain C versions: identical results. */
static __mmask16 lanes(int lo, int hi) {   /* bits [lo, hi) of 16 */
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    return hi <= lo ? (__mmask16)0 : (__mmask16)(((1u << (hi - lo)) - 1) << lo);
}

/* Bᵀ d for one column of tiles (a0..a3 the 4 rows), then the row half of
 * Bᵀ d B for row i of the result, stored at dst + (4i + j)·ldk. */
#define WINO_BT(w0, w1, w2, w3, a0, a1, a2, a3)                                                              \
    __m512 w0 = _mm512_sub_ps(a0, a2), w1 = _mm512_add_ps(a1, a2), w2 = _mm512_sub_ps(a2, a1),             \
           w3 = _mm512_sub_ps(a1, a3);
#define WINO_BT_ROW(dst, ldk, ms, i, c0, c1, c2, c3)                                                         \
    _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 0) * ldk, ms, _mm512_sub_ps(c0, c2));                      \
    _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 1) * ldk, ms, _mm512_add_ps(c1, c2));                      \
    _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 2) * ldk, ms, _mm512_sub_ps(c2, c1));                      \
    _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 3) * ldk, ms, _mm512_sub_ps(c1, c3));

__attribute__((target("avx512f"), optimize("O3")))
static void wino_in_tf_avx512(float *u, size_t ldk, const float *ev, const float *od, int TH, int TW) {
    const int ld = TW + 1;
    for (int tw0 = 0; tw0 < TW; tw0 += 16) {
        const int nw = TW - tw0 < 16 ? TW - tw0 : 16, G = TW > 16 ? 1 : 16 / nw;
        for (int th0 = 0; th0 < TH; th0 += G) {
            const int ng = TH - th0 < G ? TH - th0 : G;
            __m512 e00 = _mm512_setzero_ps(), e10 = e00, e20 = e00, e30 = e00, e01 = e00, e11 = e00, e21 = e00,
                   e31 = e00, o00 = e00, o10 = e00, o20 = e00, o30 = e00, o01 = e00, o11 = e00, o21 = e00,
                   o31 = e00;
            for (int g = 0; g < ng; g++) {
                const __mmask16 m = lanes(g * nw, (g + 1) * nw);
                const size_t off = (size_t)2 * (th0 + g) * ld + tw0 - (size_t)g * nw;
                const float *E0 = ev + off, *E1 = E0 + ld, *E2 = E1 + ld, *E3 = E2 + ld;
                const float *O0 = od + off, *O1 = O0 + ld, *O2 = O1 + ld, *O3 = O2 + ld;
                e00 = _mm512_mask_loadu_ps(e00, m, E0); e01 = _mm512_mask_loadu_ps(e01, m, E0 + 1);
                e10 = _mm512_mask_loadu_ps(e10, m, E1); e11 = _mm512_mask_loadu_ps(e11, m, E1 + 1);
                e20 = _mm512_mask_loadu_ps(e20, m, E2); e21 = _mm512_mask_loadu_ps(e21, m, E2 + 1);
                e30 = _mm512_mask_loadu_ps(e30, m, E3); e31 = _mm512_mask_loadu_ps(e31, m, E3 + 1);
                o00 = _mm512_mask_loadu_ps(o00, m, O0); o01 = _mm512_mask_loadu_ps(o01, m, O0 + 1);
                o10 = _mm512_mask_loadu_ps(o10, m, O1); o11 = _mm512_mask_loadu_ps(o11, m, O1 + 1);
                o20 = _mm512_mask_loadu_ps(o20, m, O2); o21 = _mm512_mask_loadu_ps(o21, m, O2 + 1);
                o30 = _mm512_mask_loadu_ps(o30, m, O3); o31 = _mm512_mask_loadu_ps(o31, m, O3 + 1);
            }
            /* columns 2tw + j: j = 0 even, 1 odd, 2 even shifted, 3 odd shifted */
            WINO_BT(w00, w10, w20, w30, e00, e10, e20, e30)
            WINO_BT(w01, w11, w21, w31, o00, o10, o20, o30)
            WINO_BT(w02, w12, w22, w32, e01, e11, e21, e31)
            WINO_BT(w03, w13, w23, w33, o01, o11, o21, o31)
            const __mmask16 ms = lanes(0, ng * nw);
            float *dst = u + (size_t)th0 * TW + tw0;
            WINO_BT_ROW(dst, ldk, ms, 0, w00, w01, w02, w03)
            WINO_BT_ROW(dst, ldk, ms, 1, w10, w11, w12, w13)
            WINO_BT_ROW(dst, ldk, ms, 2, w20, w21, w22, w23)
            WINO_BT_ROW(dst, ldk, ms, 3, w30, w31, w32, w33)
        }
    }
}
#undef WINO_BT
#undef WINO_BT_ROW

__attribute__((target("avx512f"), optimize("O3")))
static void wino_grad_tf_avx512(float *u, size_t ldk, const float *ev, const float *od, int TH, int TW) {
    for (int tw0 = 0; tw0 < TW; tw0 += 16) {
        const int nw = TW - tw0 < 16 ? TW - tw0 : 16, G = TW > 16 ? 1 : 16 / nw;
        for (int th0 = 0; th0 < TH; th0 += G) {
            const int ng = TH - th0 < G ? TH - th0 : G;
            __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
            for (int g = 0; g < ng; g++) {
                __mmask16 m = lanes(g * nw, (g + 1) * nw);
                size_t off = (size_t)2 * (th0 + g) * TW + tw0 - (size_t)g * nw;
                a = _mm512_mask_loadu_ps(a, m, ev + off);
                b = _mm512_mask_loadu_ps(b, m, od + off);
                c = _mm512_mask_loadu_ps(c, m, ev + off + TW);
                d = _mm512_mask_loadu_ps(d, m, od + off + TW);
            }
            const __m512 z = _mm512_setzero_ps();
            __m512 r[4][2] = {{a, b},
                              {_mm512_add_ps(a, c), _mm512_add_ps(b, d)},
                              {_mm512_sub_ps(a, c), _mm512_sub_ps(b, d)},
                              {_mm512_sub_ps(z, c), _mm512_sub_ps(z, d)}};
            __mmask16 ms = lanes(0, ng * nw);
            float *dst = u + (size_t)th0 * TW + tw0;
            for (int i = 0; i < 4; i++) {
                _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 0) * ldk, ms, r[i][0]);
                _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 1) * ldk, ms, _mm512_add_ps(r[i][0], r[i][1]));
                _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 2) * ldk, ms, _mm512_sub_ps(r[i][0], r[i][1]));
                _mm512_mask_storeu_ps(dst + (size_t)(4 * i + 3) * ldk, ms, _mm512_sub_ps(z, r[i][1]));
            }
        }
    }
}

/* AVX2 versions of the two tile transforms: the same G-tile-rows-per-vector
 * scheme with 8 lanes; maskload zeroes the lanes it skips and blendv merges
 * the G loads (exact: no arithmetic on the merged lanes). With the C loops,
 * conv-6's 7×7 layers ran 1.5× slower under RAFFLE_ISA=avx2. */
__attribute__((target("avx2")))
static __m256i lanes8(int lo, int hi) {   /* lanes [lo, hi) of 8, all bits set */
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i ge = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo - 1));
    __m256i lt = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx);
    return _mm256_and_si256(ge, lt);
}

/* Stores lanes [0, n) of v: vmaskmovps stores are microcoded on AMD (tens
 * of cycles), so partial vectors go out as 4 + 2 + 1 lanes. */
__attribute__((target("avx2"), always_inline))
static inline void store8(float *d, __m256 v, int n) {
    if (n >= 8) { _mm256_storeu_ps(d, v); return; }
    __m128 x = _mm256_castps256_ps128(v);
    if (n >= 4) { _mm_storeu_ps(d, x); x = _mm256_extractf128_ps(v, 1); d += 4; n -= 4; }
    if (n >= 2) { _mm_storel_pi((__m64 *)d, x); x = _mm_movehl_ps(x, x); d += 2; n -= 2; }
    if (n) _mm_store_ss(d, x);
}

#define WINO_LD8(acc, m, p) acc = _mm256_blendv_ps(acc, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))
#define WINO_BT8(w0, w1, w2, w3, a0, a1, a2, a3)                                                             \
    __m256 w0 = _mm256_sub_ps(a0, a2), w1 = _mm256_add_ps(a1, a2), w2 = _mm256_sub_ps(a2, a1),             \
           w3 = _mm256_sub_ps(a1, a3);
#define WINO_BT8_ROW(dst, ldk, ns, i, c0, c1, c2, c3)                                                        \
    store8(dst + (size_t)(4 * i + 0) * ldk, _mm256_sub_ps(c0, c2), ns);                                     \
    store8(dst + (size_t)(4 * i + 1) * ldk, _mm256_add_ps(c1, c2), ns);                                     \
    store8(dst + (size_t)(4 * i + 2) * ldk, _mm256_sub_ps(c2, c1), ns);                                     \
    store8(dst + (size_t)(4 * i + 3) * ldk, _mm256_sub_ps(c1, c3), ns);

__attribute__((target("avx2"), optimize("O3")))
static void wino_in_tf_avx2(float *u, size_t ldk, const float *ev, const float *od, int TH, int TW) {
    const int ld = TW + 1;
    for (int tw0 = 0; tw0 < TW; tw0 += 8) {
        const int nw = TW - tw0 < 8 ? TW - tw0 : 8, G = TW > 8 ? 1 : 8 / nw;
        for (int th0 = 0; th0 < TH; th0 += G) {
            const int ng = TH - th0 < G ? TH - th0 : G;
            __m256 e00 = _mm256_setzero_ps(), e10 = e00, e20 = e00, e30 = e00, e01 = e00, e11 = e00, e21 = e00,
                   e31 = e00, o00 = e00, o10 = e00, o20 = e00, o30 = e00, o01 = e00, o11 = e00, o21 = e00,
                   o31 = e00;
            for (int g = 0; g < ng; g++) {
                const __m256i m = lanes8(g * nw, (g + 1) * nw);
                const size_t off = (size_t)2 * (th0 + g) * ld + tw0 - (size_t)g * nw;
                const float *E0 = ev + off, *E1 = E0 + ld, *E2 = E1 + ld, *E3 = E2 + ld;
                const float *O0 = od + off, *O1 = O0 + ld, *O2 = O1 + ld, *O3 = O2 + ld;
                WINO_LD8(e00, m, E0); WINO_LD8(e01, m, E0 + 1); WINO_LD8(e10, m, E1); WINO_LD8(e11, m, E1 + 1);
                WINO_LD8(e20, m, E2); WINO_LD8(e21, m, E2 + 1); WINO_LD8(e30, m, E3); WINO_LD8(e31, m, E3 + 1);
                WINO_LD8(o00, m, O0); WINO_LD8(o01, m, O0 + 1); WINO_LD8(o10, m, O1); WINO_LD8(o11, m, O1 + 1);
                WINO_LD8(o20, m, O2); WINO_LD8(o21, m, O2 + 1); WINO_LD8(o30, m, O3); WINO_LD8(o31, m, O3 + 1);
            }
            WINO_BT8(w00, w10, w20, w30, e00, e10, e20, e30)
            WINO_BT8(w01, w11, w21, w31, o00, o10, o20, o30)
            WINO_BT8(w02, w12, w22, w32, e01, e11, e21, e31)
            WINO_BT8(w03, w13, w23, w33, o01, o11, o21, o31)
            const int ns = ng * nw;
            float *dst = u + (size_t)th0 * TW + tw0;
            WINO_BT8_ROW(dst, ldk, ns, 0, w00, w01, w02, w03)
            WINO_BT8_ROW(dst, ldk, ns, 1, w10, w11, w12, w13)
            WINO_BT8_ROW(dst, ldk, ns, 2, w20, w21, w22, w23)
            WINO_BT8_ROW(dst, ldk, ns, 3, w30, w31, w32, w33)
        }
    }
}
#undef WINO_BT8
#undef WINO_BT8_ROW

__attribute__((target("avx2"), optimize("O3")))
static void wino_grad_tf_avx2(float *u, size_t ldk, const float *ev, const float *od, int TH, int TW) {
    for (int tw0 = 0; tw0 < TW; tw0 += 8) {
        const int nw = TW - tw0 < 8 ? TW - tw0 : 8, G = TW > 8 ? 1 : 8 / nw;
        for (int th0 = 0; th0 < TH; th0 += G) {
            const int ng = TH - th0 < G ? TH - th0 : G;
            __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
            for (int g = 0; g < ng; g++) {
                const __m256i m = lanes8(g * nw, (g + 1) * nw);
                const size_t off = (size_t)2 * (th0 + g) * TW + tw0 - (size_t)g * nw;
                WINO_LD8(a, m, ev + off); WINO_LD8(b, m, od + off);
                WINO_LD8(c, m, ev + off + TW); WINO_LD8(d, m, od + off + TW);
            }
            const __m256 z = _mm256_setzero_ps();
            __m256 r[4][2] = {{a, b},
                              {_mm256_add_ps(a, c), _mm256_add_ps(b, d)},
                              {_mm256_sub_ps(a, c), _mm256_sub_ps(b, d)},
                              {_mm256_sub_ps(z, c), _mm256_sub_ps(z, d)}};
            const int ns = ng * nw;
            float *dst = u + (size_t)th0 * TW + tw0;
            for (int i = 0; i < 4; i++) {
                store8(dst + (size_t)(4 * i + 0) * ldk, r[i][0], ns);
                store8(dst + (size_t)(4 * i + 1) * ldk, _mm256_add_ps(r[i][0], r[i][1]), ns);
                store8(dst + (size_t)(4 * i + 2) * ldk, _mm256_sub_ps(r[i][0], r[i][1]), ns);
                store8(dst + (size_t)(4 * i + 3) * ldk, _mm256_sub_ps(z, r[i][1]), ns);
            }
        }
    }
}
#undef WINO_LD8

/* put_split on AVX-512: each row 32 padded columns at a time, deinterleaved
 * with two permutes (padding columns come out 0, rows longer than 32
 * columns loop). The masks depend on W, pad and ld only: computed once per
 * plane, not per row (7×7 planes have 7 rows of one chunk each, and the
 * per-row setup was 8% of a 7×7 layer). */
#define PF_ROWS 12
__attribute__((target("avx512f"), optimize("O3")))
static void put_split_avx512(float *ev, float *od, int ld, int top, int pad, const float *src, int H, int W) {
    const __m512i ie = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i io = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int q0 = 0; q0 < ld; q0 += 16) {
        const int w0 = 2 * q0 - pad;   /* input column of padded column 2·q0 */
        const __mmask16 mlo = lanes(-w0, W - w0), mhi = lanes(-w0 - 16, W - w0 - 16), ms = lanes(0, ld - q0);
        const float *x = src + w0;
        float *e = ev + (size_t)top * ld + q0, *o = od + (size_t)top * ld + q0;
        for (int h = 0; h < H; h++, x += W, e += ld, o += ld) {
            /* a plane is a short run (7-28 rows): prefetch PF_ROWS rows
             * ahead, into the next plane, which the caller reads next */
            _mm_prefetch((const char *)(x + PF_ROWS * W), _MM_HINT_T0);
            _mm_prefetch((const char *)(x + PF_ROWS * W + 16), _MM_HINT_T0);
            __m512 lo = _mm512_maskz_loadu_ps(mlo, x), hi = _mm512_maskz_loadu_ps(mhi, x + 16);
            _mm512_mask_storeu_ps(e, ms, _mm512_permutex2var_ps(lo, ie, hi));
            _mm512_mask_storeu_ps(o, ms, _mm512_permutex2var_ps(lo, io, hi));
        }
    }
}

/* src[H, W] into the split plane ev, od (row stride ld each) at row top,
 * column pad; the rest of the buffers keep their zeros (the AVX-512 version
 * rewrites the padding columns of the rows it writes with zeros). */
static void put_split(float *ev, float *od, int ld, int top, int pad, const float *src, int H, int W) {
    if (rf_kernels_isa() >= RF_ISA_AVX512) { put_split_avx512(ev, od, ld, top, pad, src, H, W); return; }
    for (int h = 0; h < H; h++)
        split_row(ev + (size_t)(h + top) * ld, od + (size_t)(h + top) * ld, src + (size_t)h * W, W, pad);
}

/* wino_scatter for rows of up to 32 outputs: the two output columns of a
 * tile row interleaved with two permutes, one or two masked stores per row
 * (the C loop runs 3-14 pairs a row, mostly in scalar epilogues). */
__attribute__((target("avx512f"), optimize("O3")))
static void wino_scatter_avx512(float *y, const float *o, size_t ldo, int OH, int OW, int TW, int acc) {
    const __m512i il = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ih = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __mmask16 mt = lanes(0, TW), m0 = lanes(0, OW), m1 = lanes(0, OW - 16);
    for (int oh = 0; oh < OH; oh++) {
        const float *o0 = o + (size_t)(2 * (oh % 2)) * ldo + (size_t)(oh / 2) * TW;
        __m512 a = _mm512_maskz_loadu_ps(mt, o0), b = _mm512_maskz_loadu_ps(mt, o0 + ldo);
        __m512 v0 = _mm512_permutex2var_ps(a, il, b), v1 = _mm512_permutex2var_ps(a, ih, b);
        float *yr = y + (size_t)oh * OW;
        if (acc) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yr), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yr + 16), v1);
        }
        _mm512_mask_storeu_ps(yr, m0, v0);
        _mm512_mask_storeu_ps(yr + 16, m1, v1);
    }
}

typedef void (*tile_tf_fn)(float *, size_t, const float *, const float *, int, int);
/* The tile transforms for the ISA in use (all give the same bits). */
static tile_tf_fn in_tf_for_isa(void) {
    rf_isa isa = rf_kernels_isa();
    return isa >= RF_ISA_AVX512 ? wino_in_tf_avx512 : isa >= RF_ISA_AVX2 ? wino_in_tf_avx2 : wino_in_tf;
}
static tile_tf_fn grad_tf_for_isa(void) {
    rf_isa isa = rf_kernels_isa();
    return isa >= RF_ISA_AVX512 ? wino_grad_tf_avx512 : isa >= RF_ISA_AVX2 ? wino_grad_tf_avx2 : wino_grad_tf;
}

/* ---- threads ----------------------------------------------------------------
 * Forward and input gradient: the chunks of samples are independent (each
 * writes its own samples' outputs), so parts take equal ranges of samples,
 * each cut into its own chunks (wino_run_part), with its own U, M, planes (wg_scratch floats) and the GEMM's workspace of its
 * part. Weight gradient: dV[k] is a chain of products over the chunks in
 * order, so the chunks stay in order and each chunk's transforms (over
 * planes) and its 16 products (whole products per thread) are split. The
 * weight transforms are split over output channels. None of it changes an
 * operation's order, so the bits do not depend on the thread count. */

/* The input transform of plane c of sample j (in: that plane) into U[k][c][t]
 * (ld tc, sample j's tiles from j·T). */
static void wino_input_plane(float *U, size_t tc, const float *in, int j, int c, const wg *g, float *plane,
                             tile_tf_fn in_tf) {
    size_t half = (size_t)g->Hp * (g->TW + 1);
    put_split(plane, plane + half, g->TW + 1, g->pad, g->pad, in, g->Hi, g->Wi);
    in_tf(U + (size_t)c * tc + (size_t)j * g->T, (size_t)g->Ci * tc, plane, plane + half, g->TH, g->TW);
}

/* The chunk's planes as [0, ns·Ci). */
static void wino_input(float *U, size_t tc, const float *in, int ns, const wg *g, float *plane) {
    size_t isz = (size_t)g->Hi * g->Wi;
    if (g->m == 4) {   /* samples inner: U[k][c] is written front to back (36 streams) */
        const size_t G = wino4_group(g), nsg = ((size_t)ns + G - 1) / G, np = nsg * g->Ci;
        size_t j, c, qj, qc;
        for (size_t p = 0; p < np; p++) {
            wino4_plane(p, nsg, (size_t)g->Ci, &j, &c);
            wino4_plane(p + WINO4_PF < np ? p + WINO4_PF : np - 1, nsg, (size_t)g->Ci, &qj, &qc);
            j *= G;
            const int n = (size_t)ns - j < G ? ns - (int)j : (int)G;
            rf_nn_wino4_in_planes(U + c * tc + j * g->T, wg_slab(g, g->Ci, tc), in + (j * g->Ci + c) * isz,
                                  (size_t)g->Ci * isz, n, g->Hi, g->Wi, g->pad, g->TH, g->TW,
                                  in + (qj * G * g->Ci + qc) * isz);
        }
        return;
    }
    tile_tf_fn in_tf = in_tf_for_isa();
    for (int j = 0; j < ns; j++)
        for (int c = 0; c < g->Ci; c++)
            wino_input_plane(U, tc, in + ((size_t)j * g->Ci + c) * isz, j, c, g, plane, in_tf);
}

/* A fused ReLU (model.c, "fusion"; rf_nn_wino_forward_relu): the ReLU
 * layer's own expressions (layer_act.c). F(4x4)'s scatter applies it as it
 * stores; F(2x2) runs it on a plane right after its scatter, while the
 * plane is in L1, instead of a pass over the whole activation. */
RF_NN_VEC static void relu_plane(float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}
/* d = the ReLU's gradient into its zeroed input, +0 + (y > 0 ? dy : 0),
 * written (y >= 0, so "y > 0" is "its bits are non-zero"). */
RF_NN_VEC static void relu_grad_plane(float *restrict d, const float *restrict dy, const float *restrict y, size_t n) {
    const int32_t *yb = (const int32_t *)(const void *)y;
    for (size_t i = 0; i < n; i++) d[i] = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
}

/* F(2x2)'s input gradient multiplies V[perm[k]]: G·flip = P·G (top of the file). */
static const int wino2_perm[16] = {15, 13, 14, 12, 7, 5, 6, 4, 11, 9, 10, 8, 3, 1, 2, 0};

/* One chunk of wino_run: samples [n0, n0 + ns) (ns <= chunk) with buffers s
 * (wg_scratch floats laid out for `chunk` samples, the plane zeroed) and the
 * GEMM workspace of part t. */
static void wino_chunk(const rf_engine *e, int t, float *out, int acc, int relu, const float *in, const float *bias,
                       const float *V, int vt, const float *P, size_t pk, int n0, int ns, int chunk, const wg *g,
                       float *s) {
    size_t tmax = (size_t)chunk * g->T, osz = (size_t)g->OH * g->OW, isz = (size_t)g->Hi * g->Wi;
    size_t tc = (size_t)ns * g->T;
    float *U = s, *M = U + (size_t)g->ak * wg_slab(g, g->Ci, tmax), *plane = M + (size_t)g->ak * wg_slab(g, g->Co, tmax);
    float *o = plane + (size_t)g->Hp * g->Wp + 4;
    size_t vk = (size_t)g->Ci * g->Co;
    const int scat512 = rf_kernels_isa() >= RF_ISA_AVX512 && g->OW <= 32;
    wino_input(U, tc, in + (size_t)n0 * g->Ci * isz, ns, g, plane);
    rf_engine pe = rf_nn_part_engine(e, t);
    int slot;
    rf_gemm *gm = P ? rf_gemm_engine_gemm(&pe, &slot) : NULL;
    if (gm) {   /* V packed once per run (wino_run): the same products */
        for (int k = 0; k < g->ak; k++) {
            rf_status st = rf_gemm_f32_packed_a(gm, slot, g->Co, (int)tc, g->Ci, P + (size_t)k * pk, 0,
                                                U + k * wg_slab(g, g->Ci, tc), (int)tc, 0,
                                                M + k * wg_slab(g, g->Co, tc), (int)tc);
            RF_ASSERT(st == RF_OK);
        }
    }
    if (g->m == 4) {   /* V is always in the forward's tr layout (the input gradient flips it) */
        for (int k = 0; !gm && k < 36; k++)
            rf_gemm_engine(&pe, 1, 0, g->Co, (int)tc, g->Ci, V + k * vk, g->Co, U + k * wg_slab(g, g->Ci, tc), (int)tc,
                           0, M + k * wg_slab(g, g->Co, tc), (int)tc);
        /* output transforms of WINO4_CG channels, then their scatters sample
         * by sample (the group's planes of a sample are adjacent in out) */
        for (int c0 = 0; c0 < g->Co; c0 += WINO4_CG) {
            int gc = g->Co - c0 < WINO4_CG ? g->Co - c0 : WINO4_CG;
            for (int i = 0; i < gc; i++)
                rf_nn_wino4_out(o + (size_t)i * 16 * tc, M + (size_t)(c0 + i) * tc, wg_slab(g, g->Co, tc), (int)tc,
                                bias ? bias[c0 + i] : 0.0f);
            for (int j = 0; j < ns; j++)
                for (int i = 0; i < gc; i++) {
                    float *y = out + ((size_t)(n0 + j) * g->Co + c0 + i) * osz;
                    rf_nn_wino4_scatter(y, o + (size_t)i * 16 * tc + (size_t)j * g->T, tc, g->OH, g->OW, g->TW,
                                        relu ? 2 : acc);
                }
        }
        return;
    }
    for (int k = 0; !gm && k < 16; k++)
        rf_gemm_engine(&pe, 1, 0, g->Co, (int)tc, g->Ci, V + (vt ? wino2_perm[k] : k) * vk, g->Co,
                       U + (size_t)k * g->Ci * tc, (int)tc, 0, M + (size_t)k * g->Co * tc, (int)tc);
    /* One output transform per channel over the whole chunk (a 7×7 map
     * alone has 16 tiles: one vector), then a scatter per sample. */
    for (int co = 0; co < g->Co; co++) {
        wino_out_tf(o, M + (size_t)co * tc, (size_t)g->Co * tc, (int)tc, bias ? bias[co] : 0.0f);
        for (int j = 0; j < ns; j++) {
            float *y = out + ((size_t)(n0 + j) * g->Co + co) * osz;
            (scat512 ? wino_scatter_avx512 : wino_scatter)(y, o + (size_t)j * g->T, tc, g->OH, g->OW, g->TW, acc);
            if (relu) relu_plane(y, osz);
        }
    }
}

typedef struct wino_job {
    const rf_engine *e;
    float *out;
    int acc, relu;
    const float *in, *bias, *V;
    int vt, B, chunk;
    const float *P;     /* V packed for the products (pk floats a position), or NULL */
    size_t pk;
    const wg *g;
    float *s;           /* part t's buffers at s + t·per */
    size_t per;
} wino_job;

/* Part t takes samples [B·t/n, B·(t+1)/n) and cuts them into near-equal
 * chunks of at most j->chunk samples: the parts get equal shares (whole
 * chunks of the batch split conv-6's conv2, 43 chunks of 3 samples, as
 * 22/21). A chunk's outputs do not depend on which samples share it (the
 * products' K is the channels, the transforms are per plane and per tile),
 * so the cut changes who computes, never what. */
static void wino_run_part(void *arg, int t, int n) {
    const wino_job *j = arg;
    size_t b0, b1;
    rf_nn_span((size_t)j->B, t, n, &b0, &b1);
    const int len = (int)(b1 - b0), chunks = (len + j->chunk - 1) / j->chunk;
    float *s = j->s + (size_t)t * j->per;
    const wg *g = j->g;
    memset(s + (size_t)g->ak * (wg_slab(g, g->Ci, (size_t)j->chunk * g->T) + wg_slab(g, g->Co, (size_t)j->chunk * g->T)), 0, ((size_t)g->Hp * g->Wp + 4) * sizeof(float));
    for (int c = 0; c < chunks; c++) {
        int n0 = (int)b0 + (int)((long)len * c / chunks), n1 = (int)b0 + (int)((long)len * (c + 1) / chunks);
        wino_chunk(j->e, t, j->out, j->acc, j->relu, j->in, j->bias, j->V, j->vt, j->P, j->pk, n0, n1 - n0, j->chunk, g, s);
    }
}

/* Floats between the packed products of V (rf_gemm_pack_a of the run's
 * Co x Ci operand), rounded to a cache line. */
static size_t wino_pk(const wg *g) { return (rf_gemm_packed_a_floats(g->Co, g->Ci) + 15) / 16 * 16; }

/* P[k] = V[k] (vt: V[perm[k]]) packed as the products' op(A), split over k. */
typedef struct wpack_job { const rf_engine *e; float *P; size_t pk; const float *V; int vt; const wg *g; } wpack_job;

static void wpack_part(void *arg, int t, int n) {
    const wpack_job *j = arg;
    const wg *g = j->g;
    size_t k0, k1, vk = (size_t)g->Ci * g->Co;
    rf_nn_span((size_t)g->ak, t, n, &k0, &k1);
    rf_engine pe = rf_nn_part_engine(j->e, t);
    int slot;
    rf_gemm *gm = rf_gemm_engine_gemm(&pe, &slot);
    for (size_t k = k0; k < k1; k++) {
        rf_status st = rf_gemm_pack_a(gm, 1, g->Co, g->Ci, j->V + (size_t)(j->vt ? wino2_perm[k] : (int)k) * vk, g->Co,
                                      j->P + k * j->pk);
        RF_ASSERT(st == RF_OK);
    }
}

/* F(4x4): P[k] = V[k] packed, made row by row: each K row of the run's
 * op(A) (tr: an input channel c, all co; else an output channel co, all c,
 * flipped) transformed into the part's buffer (36·WFUSE_G rows, L2) and packed
 * from there, split over K rows. V itself is never stored: the transform's store
 * and the packer's read of the whole V (9.4 MB in conv-6's conv6, twice a
 * step) are gone; the bytes of P are those of the two passes. */
enum { WFUSE_G = 8 };   /* rows transformed, then packed, at once */

typedef struct wfuse_job {
    const rf_engine *e;
    float *P, *buf;
    size_t pk;
    const float *w;
    int Co, C, tr, flip;
} wfuse_job;

static void wfuse_part(void *arg, int t, int n) {
    const wfuse_job *j = arg;
    const int M = j->tr ? j->Co : j->C, K = j->tr ? j->C : j->Co;
    /* groups of G rows: a panel's G runs of 6 are adjacent in P (whole
     * lines written at once); G·parts <= K keeps the parts' buffers in buf */
    const int G = K / n < WFUSE_G ? K / n : WFUSE_G;
    size_t r0, r1;
    rf_nn_span((size_t)K, t, n, &r0, &r1);
    rf_engine pe = rf_nn_part_engine(j->e, t);
    int slot;
    rf_gemm *gm = rf_gemm_engine_gemm(&pe, &slot);
    float *u = j->buf + (size_t)t * 36 * G * M;
    for (size_t r = r0; r < r1; r += (size_t)G) {
        const int nr = r1 - r < (size_t)G ? (int)(r1 - r) : G;
        for (int i = 0; i < nr; i++)
            rf_nn_wino4_weights_row(u + (size_t)i * M, (size_t)G * M, j->w, j->Co, j->C, (int)r + i, j->tr, j->flip);
        for (int k = 0; k < 36; k++) {
            rf_status st = rf_gemm_pack_a_rows(gm, M, K, (int)r, nr, u + (size_t)k * G * M, M, j->P + (size_t)k * j->pk);
            RF_ASSERT(st == RF_OK);
        }
    }
}

/* Whether wino4_packed applies: F(4x4) products on raffle's GEMM. */
static int wino4_fuses(const rf_engine *e, int m) {
    int slot;
    return m == 4 && rf_gemm_engine_gemm(e, &slot) != NULL;
}

/* P (g's pk a position) = the run's V packed; buf: 36·Co·C floats (a part's
 * 36·WFUSE_G rows each, at most). */
static void wino4_packed(const rf_engine *e, float *P, float *buf, const float *w, int Co, int C, int tr, int flip,
                         const wg *g) {
    wfuse_job j = {e, P, buf, wino_pk(g), w, Co, C, tr, flip};
    int K = tr ? C : Co, parts = rf_nn_parts(e, 36.0 * Co * C, 1 << 14);
    rf_nn_par(e, parts < K ? parts : K, wfuse_part, &j);
}

/* out[B, Co, OH, OW] (= or += by acc) = conv of in[B, Ci, Hi, Wi] + bias.
 * V[k][Ci][Co] in this run's terms, multiplied as Vᵀ: the forward's tr
 * layout, or (vt) the layer's plain V[k][Co][C] with k permuted (the input
 * gradient: see the top of the file). s: one
 * wg_scratch per thread. */
static void wino_run(const rf_engine *e, float *out, int acc, int relu, const float *in, const float *bias,
                     const float *V, int vt, int B, const wg *g, float *P, float *s) {
    int chunk = wg_run_chunk(g, B, rf_nn_threads(e)), chunks = (B + chunk - 1) / chunk, slot;
    size_t pk = wino_pk(g);
    /* Pack V's ak products once here, not once per chunk (8% of a conv-6
     * step before): where the products run on raffle's GEMM. */
    if (!rf_gemm_engine_gemm(e, &slot)) P = NULL;
    if (P && V) {   /* V NULL: P packed already (wino4_packed) */
        wpack_job pj = {e, P, pk, V, vt, g};
        rf_nn_par(e, rf_nn_parts(e, (double)g->ak * g->Ci * g->Co, 1 << 16), wpack_part, &pj);
    }
    wino_job j = {e, out, acc, relu, in, bias, V, vt, B, chunk, P, pk, g, s, wg_scratch(g, B)};
    int parts = rf_nn_threads(e) < chunks ? rf_nn_threads(e) : chunks;
    rf_nn_par(e, parts, wino_run_part, &j);
}

/* The weight transforms, split over output channels. */
/* tr: the transposed layout; flip (F(4x4) only): the kernel rotated by
 * 180° (the input gradient's weights). */
typedef struct wgt_job { float *V; const float *w; int Co, C, back, tr, m, flip; } wgt_job;

static void wgt_part(void *arg, int t, int n) {
    const wgt_job *j = arg;
    size_t c0, c1;
    rf_nn_span((size_t)j->Co, t, n, &c0, &c1);
    if (j->m == 4) {
        if (j->back) rf_nn_wino4_weights_back((float *)j->w, j->V, j->Co, j->C, (int)c0, (int)c1);
        else rf_nn_wino4_weights(j->V, j->w, j->Co, j->C, (int)c0, (int)c1, j->tr, j->flip);
        return;
    }
    if (j->back) wino_weights_back((float *)j->w, j->V, j->Co, j->C, (int)c0, (int)c1);
    else wino_weights(j->V, j->w, j->Co, j->C, (int)c0, (int)c1, j->tr);
}

static void wino_weights_par(const rf_engine *e, float *V, const float *w, int Co, int C, int back, int tr, int m,
                             int flip) {
    wgt_job j = {V, w, Co, C, back, tr, m, flip};
    rf_nn_par(e, rf_nn_parts(e, (m + 2) * (m + 2) * (double)Co * C, 1 << 14), wgt_part, &j);
}

size_t rf_nn_wino_scratch(int C, int H, int W, int Co, int pad, int m, int B, int threads) {
    wg f = wg_of(C, H, W, Co, pad, m);
    wg x = wg_of(Co, f.OH, f.OW, C, 2 - pad, m);
    size_t v = (size_t)f.ak * C * Co, a = wg_scratch(&f, B), b = wg_scratch(&x, B), t = (size_t)(threads > 0 ? threads : 1);
    /* V, then dV or V packed (wino_pk: a few rows of padding more than V),
     * then the forward's run (a chunk's buffers per thread), or the
     * backward's weight-gradient chunk (U, A dY Aᵀ: the forward's U + M, and
     * a plane per thread) or input-gradient run. */
    size_t p = (size_t)f.ak * (wino_pk(&f) > wino_pk(&x) ? wino_pk(&f) : wino_pk(&x));
    size_t dw = a + t * ((size_t)f.Hp * f.Wp + 4);
    /* the largest of the three (a nested ?: here skipped t·b whenever t·a > dw) */
    size_t run = t * a > t * b ? t * a : t * b, sums = (size_t)(B > 0 ? B : 1) * Co;   /* the bias pass's plane sums */
    if (dw < sums) dw = sums;
    return v + (p > v ? p : v) + (run > dw ? run : dw);
}

void rf_nn_wino_forward(const rf_engine *e, float *y, const float *x, const float *w, const float *bias, int B, int C,
                        int H, int W, int Co, int pad, int m, float *scratch) {
    rf_nn_wino_forward_relu(e, y, x, w, bias, B, C, H, W, Co, pad, m, 0, scratch);
}

void rf_nn_wino_forward_relu(const rf_engine *e, float *y, const float *x, const float *w, const float *bias, int B,
                             int C, int H, int W, int Co, int pad, int m, int relu, float *scratch) {
    wg g = wg_of(C, H, W, Co, pad, m), gx = wg_of(Co, g.OH, g.OW, C, 2 - pad, m);
    size_t v = (size_t)g.ak * C * Co, p = (size_t)g.ak * (wino_pk(&g) > wino_pk(&gx) ? wino_pk(&g) : wino_pk(&gx));
    const int fz = wino4_fuses(e, m);
    if (fz) wino4_packed(e, scratch + v, scratch, w, Co, C, 1, 0, &g);
    else wino_weights_par(e, scratch, w, Co, C, 0, 1, m, 0);
    wino_run(e, y, 0, relu, x, bias, fz ? NULL : scratch, 0, B, &g, scratch + v, scratch + v + (p > v ? p : v));
}

/* Σ d[0..n): 16 partial sums (lane l takes d[p] with p ≡ l mod 16), then
 * added in lane order. The lanes are explicit, so the vectorised clones
 * compute exactly this order (a serial sum was latency-bound: ~3% of a
 * conv-2 training step). */
RF_NN_VEC static float plane_sum(const float *restrict d, size_t n) {
    float acc[16] = {0};
    size_t p = 0;
    for (; p + 16 <= n; p += 16)
        for (int l = 0; l < 16; l++) acc[l] += d[p + l];
    for (int l = 0; p < n; p++, l++) acc[l] += d[p];
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += acc[l];
    return s;
}

/* db[co] += sums[b·Co + co] for b in order: each channel's plane sums
 * added in sample order, as when one loop summed the planes into db. */
RF_NN_VEC static void bias_sums(float *restrict db, const float *restrict sums, int B, int Co) {
    for (int b = 0; b < B; b++)
        for (int co = 0; co < Co; co++) db[co] += sums[(size_t)b * Co + co];
}

/* The weight gradient's steps that split: the bias pass (over samples,
 * each plane's sum into planes[b·Co + co], added into db by bias_sums; the
 * planes were written by the layer above on the same split, so each part
 * reads what its core wrote: split over channels, each core read the other
 * core's planes) and one chunk's transforms (over its planes: x's ns·C, then
 * dy's ns·Co). */
typedef struct wgrad_job {
    const wg *g;
    int what;            /* 0: bias, 1: a chunk's transforms */
    float *db;
    float *dm;           /* what 0 with a fused ReLU: dm = the conv's output gradient from */
    const float *dr, *ry;/* the ReLU's output gradient dr and output ry, plane by plane (then dy = dm) */
    const float *x, *dy;
    float *U, *Yd, *planes;
    int B, n0, ns;
    size_t tc;
} wgrad_job;

static void wgrad_part(void *arg, int t, int n) {
    const wgrad_job *j = arg;
    const wg *g = j->g;
    size_t osz = (size_t)g->OH * g->OW, isz = (size_t)g->Hi * g->Wi;
    if (j->what == 0) {   /* samples: the planes this part's layer above wrote */
        size_t b0, b1;
        rf_nn_span((size_t)j->B, t, n, &b0, &b1);
        for (size_t at = b0 * g->Co * osz, q = b0 * g->Co; q < b1 * g->Co; q++, at += osz) {
            if (j->dm) relu_grad_plane(j->dm + at, j->dr + at, j->ry + at, osz);
            if (j->db) j->planes[q] = plane_sum(j->dy + at, osz);
        }
        return;
    }
    size_t np = (size_t)j->ns * ((size_t)g->Ci + g->Co), p0, p1, pl = (size_t)g->Hp * g->Wp + 4;
    if (g->m == 4) {   /* straight from the planes, samples inner (see wino_input), in units of G samples */
        const size_t G = wino4_group(g), nsg = ((size_t)j->ns + G - 1) / G, nx4 = nsg * g->Ci;
        size_t jj, c, qj, qc;
        rf_nn_span(nsg * ((size_t)g->Ci + g->Co), t, n, &p0, &p1);
        for (size_t p = p0; p < p1; p++) {
            size_t q = p + WINO4_PF < p1 ? p + WINO4_PF : p1 - 1;
            if (p < nx4) {
                wino4_plane(p, nsg, (size_t)g->Ci, &jj, &c);
                wino4_plane(q < nx4 ? q : p, nsg, (size_t)g->Ci, &qj, &qc);
            } else {
                wino4_plane(p - nx4, nsg, (size_t)g->Co, &jj, &c);
                wino4_plane(q - nx4, nsg, (size_t)g->Co, &qj, &qc);
            }
            jj *= G;
            qj *= G;
            const int nq = (size_t)j->ns - jj < G ? j->ns - (int)jj : (int)G;
            if (p < nx4)
                rf_nn_wino4_in_planes(j->U + c * j->tc + jj * g->T, wg_slab(g, g->Ci, j->tc),
                                      j->x + ((size_t)j->n0 + jj) * g->Ci * isz + c * isz, (size_t)g->Ci * isz, nq,
                                      g->Hi, g->Wi, g->pad, g->TH, g->TW,
                                      j->x + ((size_t)j->n0 + qj) * g->Ci * isz + qc * isz);
            else
                rf_nn_wino4_grad_planes(j->Yd + c * j->tc + jj * g->T, wg_slab(g, g->Co, j->tc),
                                        j->dy + ((size_t)j->n0 + jj) * g->Co * osz + c * osz, (size_t)g->Co * osz, nq,
                                        g->OH, g->OW, g->TH, g->TW,
                                        j->dy + ((size_t)j->n0 + qj) * g->Co * osz + qc * osz);
        }
        return;
    }
    rf_nn_span(np, t, n, &p0, &p1);
    float *plane = j->planes + (size_t)t * pl;
    /* The split input plane (2·Hp·(TW + 1) = Hp·Wp floats) and the split dY
     * plane (2·2TH·TW) share one buffer, zeroed when its use changes. */
    size_t qhalf = (size_t)2 * g->TH * g->TW, nx = (size_t)j->ns * g->Ci;
    tile_tf_fn in_tf = in_tf_for_isa(), grad_tf = grad_tf_for_isa();
    int kind = -1;
    for (size_t p = p0; p < p1; p++) {
        int k = p < nx;
        if (k != kind) { memset(plane, 0, pl * sizeof(float)); kind = k; }
        if (k) {
            int jj = (int)(p / g->Ci), c = (int)(p % g->Ci);
            wino_input_plane(j->U, j->tc, j->x + ((size_t)(j->n0 + jj) * g->Ci + c) * isz, jj, c, g, plane, in_tf);
        } else {
            int jj = (int)((p - nx) / g->Co), co = (int)((p - nx) % g->Co);
            put_split(plane, plane + qhalf, g->TW, 0, 0, j->dy + ((size_t)(j->n0 + jj) * g->Co + co) * osz, g->OH, g->OW);
            grad_tf(j->Yd + (size_t)co * j->tc + (size_t)jj * g->T, (size_t)g->Co * j->tc, plane, plane + qhalf, g->TH,
                    g->TW);
        }
    }
}

void rf_nn_wino_backward(const rf_engine *e, float *dw, float *db, float *dx, const float *dy, const float *x,
                         const float *w, int B, int C, int H, int W, int Co, int pad, int m, float *scratch) {
    rf_nn_wino_backward_relu(e, dw, db, dx, 0, dy, NULL, NULL, x, w, B, C, H, W, Co, pad, m, scratch);
}

void rf_nn_wino_backward_relu(const rf_engine *e, float *dw, float *db, float *dx, int dx_write, const float *dy,
                              const float *ry, float *dm, const float *x, const float *w, int B, int C, int H, int W, int Co, int pad,
                              int m, float *scratch) {
    wg g = wg_of(C, H, W, Co, pad, m);
    const int ak = g.ak;
    size_t vk = (size_t)C * Co, isz = (size_t)H * W, osz = (size_t)g.OH * g.OW;
    wg gx = wg_of(Co, g.OH, g.OW, C, 2 - pad, m);
    size_t p = (size_t)ak * (wino_pk(&g) > wino_pk(&gx) ? wino_pk(&g) : wino_pk(&gx));
    /* dV's place holds V packed for the input gradient's run */
    float *V = scratch, *dV = V + ak * vk, *s = dV + (p > ak * vk ? p : ak * vk);
    double work = (double)B * (double)(C + Co) * (double)isz;   /* a pass over the activations */
    int parts = rf_nn_parts(e, work, 1 << 15);
    /* with a fused ReLU, its gradient is made in the bias sums' pass (plane
     * by plane: written, then summed from L1), and dm is the conv's dy */
    wgrad_job wj = {&g, 0, db, ry ? dm : NULL, dy, ry, x, ry ? dm : dy, NULL, NULL, s, B, 0, 0, 0};
    if (db || ry) rf_nn_par(e, parts < B ? parts : B, wgrad_part, &wj);
    if (db) bias_sums(db, s, B, Co);
    if (ry) dy = dm;
    /* Weight gradient: U as in forward, A dY Aᵀ in the place of M. */
    int chunk = wg_chunk(&g, B);
    size_t tmax = (size_t)chunk * g.T;
    float *U = s, *Yd = U + (size_t)ak * wg_slab(&g, C, tmax), *planes = Yd + (size_t)ak * wg_slab(&g, Co, tmax);
    rf_nn_zero(e, dV, ak * vk);   /* split: conv-6's conv6 dV is 9.4 MB (0.3 ms alone) */
    wj.what = 1;
    wj.U = U;
    wj.Yd = Yd;
    wj.planes = planes;
    for (int n0 = 0; n0 < B; n0 += chunk) {
        int ns = B - n0 < chunk ? B - n0 : chunk;
        size_t tc = (size_t)ns * g.T;
        wj.n0 = n0;
        wj.ns = ns;
        wj.tc = tc;
        rf_nn_par(e, rf_nn_threads(e) < ns * (C + Co) ? rf_nn_threads(e) : ns * (C + Co), wgrad_part, &wj);
        const float *A[36], *Bm[36];
        float *Cm[36];
        for (int k = 0; k < ak; k++) {
            A[k] = Yd + k * wg_slab(&g, Co, tc);
            Bm[k] = U + k * wg_slab(&g, C, tc);
            Cm[k] = dV + k * vk;
        }
        rf_gemm_engine_batch(e, 0, 1, Co, C, (int)tc, ak, A, (int)tc, Bm, (int)tc, 1, Cm, C);
    }
    wino_weights_par(e, dV, dw, Co, C, 1, 0, m, 0);
    (void)osz;
    if (!dx) return;
    /* F(2x2): V with k permuted (G·flip = P·G); F(4x4) has no such
     * permutation (its G rows scale differently), so its V is built from the
     * rotated kernel in the layout the run multiplies directly. */
    const int fz = wino4_fuses(e, m);
    if (fz) wino4_packed(e, dV, V, w, Co, C, 0, 1, &gx);
    else wino_weights_par(e, V, w, Co, C, 0, 0, m, m == 4);
    /* dx_write: stored, not added (the output transform adds a +0 bias, so
     * no value is -0 and +0 + value is the value: the same bits) */
    wino_run(e, dx, !dx_write, 0, dy, NULL, fz ? NULL : V, m != 4, B, &gx, dV, s);
}
