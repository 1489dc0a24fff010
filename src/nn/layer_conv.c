/* 2-D convolution and ViT patch embedding. 3x3 stride-1 convs (pad 0 or 1)
 * with at least 32 input and output channels run as Winograd F(4x4, 3x3)
 * on maps up to 28x28 outputs, F(2x2, 3x3) on wider ones (conv_winograd.c:
 * 4x and 2.25x fewer multiplies; forward, input and weight gradient); other stride-1 convs as an implicit GEMM straight from the
 * padded input (the "direct" section below); everything else as im2col +
 * GEMM. Which path a layer takes depends on its shape only (and the engine
 * option "conv", winograd|winograd4|direct|gemm|dense, RAFFLE_CONV its default, which
 * forces a path for comparisons: see use_wino), and every path computes the
 * same bits on every ISA and thread count. Products go to the engine's GEMM
 * (raffle/gemm.h rf_gemm_engine).
 *
 * Training (and plain inference) use the Caffe orientation, columns
 * colT[K, g·P] for a chunk of g samples (K = Cin·kh·kw, P = positions), and
 * one GEMM W[Cout, K] · colT per chunk. Stride-1 layers with few channels
 * use "wide" columns (below: one contiguous copy per column row); the rest
 * copy row runs into colT and scatter the GEMM's [Cout, g·P] result into
 * NCHW. Backward recomputes the columns (cheaper than keeping K·P floats per
 * sample): dW += dy · colT^T, dcolT = W^T · dy, then col2im. With an
 * inference override (rf_layer.infer_gemm) that has a feature-major form
 * (infer_gemm_feat: the sparse kernels) the override takes colT and returns
 * [Cout, g·P], which scatters into NCHW like sgemm's result; an override
 * without one (int8) gets rows X[g·P, K], the layout its contract fixes, and
 * its result Y[g·P, Cout] is transposed back to NCHW. */
#include "nn/layers.h"

#include "nn/conv_winograd.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* Strided path: columns per chunk are capped at this many floats (128 KiB,
 * best on lenet-5 among 2^14..2^22 when this was the only path): the
 * columns are written, then read by the GEMM while still in L2. A sample
 * whose columns are larger is one chunk on its own. */
#define CONV_COL_BUDGET (1u << 15)

typedef struct conv_geom { int C, H, W, Co, kh, kw, s, pad, OH, OW, K, P; } conv_geom;

static conv_geom conv_geom_of(const rf_layer *L) {
    conv_geom g = {L->in.d[0], L->in.d[1], L->in.d[2], L->ip[0], L->ip[1], L->ip[2], L->ip[3], L->ip[4],
                   L->out.d[1], L->out.d[2], 0, 0};
    g.K = g.C * g.kh * g.kw;
    g.P = g.OH * g.OW;
    return g;
}

static int conv_chunk(const conv_geom *g, int B) {
    size_t per = (size_t)g->K * g->P;
    size_t c = per ? CONV_COL_BUDGET / per : (size_t)B;
    /* ... but enough samples that the GEMM's N = g·P is at least 512:
     * a 7×7 map alone (N = 49) runs the GEMM far below peak. */
    size_t cmin = (512 + (size_t)g->P - 1) / (size_t)g->P;
    if (c < cmin) c = cmin;
    if (c < 1) c = 1;
    if (c > (size_t)B) c = (size_t)B;
    return (int)c;
}

/* Floats of one im2col forward part: a chunk's columns and its product. */
static size_t im_thread(const conv_geom *g, int chunk) {
    return (size_t)chunk * g->P * ((size_t)g->K + (size_t)g->Co);
}

/* Output positions ow in [*lo, *hi) read input column ow·s + kj - pad inside [0, W). */
static void valid_range(int n_out, int n_in, int s, int k, int pad, int *lo, int *hi) {
    int a = pad - k, l = 0;
    if (a > 0) l = (a + s - 1) / s;
    int h = (n_in - 1 + pad - k) < 0 ? 0 : (n_in - 1 + pad - k) / s + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l; *hi = h;
}

/* Copies n floats; rows here are short (OW ~ 10-28), where a libc call and a
 * vector loop's scalar tail both cost more than the copy: 8-float blocks,
 * the last one overlapping. */
static inline void copy_row(float *d, const float *s, int n) {
    if (n < 8) { for (int i = 0; i < n; i++) d[i] = s[i]; return; }
    int i = 0;
    for (; i + 8 <= n; i += 8) memcpy(d + i, s + i, 8 * sizeof(float));
    if (i < n) memcpy(d + n - 8, s + n - 8, 8 * sizeof(float));
}

/* ---- stride-2 rows ------------------------------------------------------------
 * d[i] = s[2i], i < n (gather2): the rows of the phase split (s2_split).
 * gather2_ref is what scalar and AVX2 run; the AVX-512 one moves the same
 * values (two masked loads and one two-source permute per 16 outputs,
 * nothing read past s[2n - 2]). ResNet-20's two downsampling convs'
 * forward: 5.9 -> 4.5 ms a step (Zen 5). Tried and dropped: the same rows
 * in the backward's im2col (its compiled loop is as fast: 0.5-0.8 ms
 * slower through the call per 8-16-float row) and masked adds of the even
 * lanes in col2im (~1 ms slower: each tap's masked loads wait on the
 * previous tap's masked stores to the same rows). */
static void gather2_ref(float *restrict d, const float *restrict s, int n) {
    for (int i = 0; i < n; i++) d[i] = s[2 * i];
}

static __mmask16 s2_mask(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

__attribute__((target("avx512f"))) static void gather2_avx512(float *restrict d, const float *restrict s, int n) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int i = 0; i < n; i += 16) {
        int m = n - i < 16 ? n - i : 16, need = 2 * m - 1;
        const float *p = s + 2 * (size_t)i;
        __m512 a = _mm512_maskz_loadu_ps(s2_mask(need), p), b = _mm512_maskz_loadu_ps(s2_mask(need - 16), p + 16);
        _mm512_mask_storeu_ps(d + i, s2_mask(m), _mm512_permutex2var_ps(a, even, b));
    }
}

static int dc_512(void);
typedef void (*row2_fn)(float *restrict, const float *restrict, int);
static row2_fn gather2_fn(void) { return dc_512() ? gather2_avx512 : gather2_ref; }

/* colT[K, ns·P] (row stride ld >= ns·P) from samples x[ns, C, H, W]. */
RF_NN_VEC static void im2col_c(float *colT, const float *x, int ns, const conv_geom *g, size_t ld, int c0, int c1) {
    for (int c = c0; c < c1; c++)
        for (int ki = 0; ki < g->kh; ki++)
            for (int kj = 0; kj < g->kw; kj++) {
                float *row = colT + (size_t)((c * g->kh + ki) * g->kw + kj) * ld;
                int lo, hi;
                valid_range(g->OW, g->W, g->s, kj, g->pad, &lo, &hi);
                for (int n = 0; n < ns; n++) {
                    const float *xc = x + ((size_t)n * g->C + c) * g->H * g->W;
                    for (int oh = 0; oh < g->OH; oh++) {
                        float *d = row + (size_t)n * g->P + (size_t)oh * g->OW;
                        int ih = oh * g->s + ki - g->pad;
                        if (ih < 0 || ih >= g->H) { memset(d, 0, (size_t)g->OW * sizeof(float)); continue; }
                        const float *xr = xc + (size_t)ih * g->W + kj - g->pad;
                        for (int ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                        if (g->s == 1) copy_row(d + lo, xr + lo, hi - lo);
                        else for (int ow = lo; ow < hi; ow++) d[ow] = xr[ow * g->s];
                        for (int ow = hi; ow < g->OW; ow++) d[ow] = 0.0f;
                    }
                }
            }
}

/* dx[ns, C, H, W] += col2im(dcolT). */
RF_NN_VEC static void col2im_c_add(float *dx, const float *dcolT, int ns, const conv_geom *g, int c0, int c1) {
    size_t ld = (size_t)ns * g->P;
    for (int c = c0; c < c1; c++)
        for (int ki = 0; ki < g->kh; ki++)
            for (int kj = 0; kj < g->kw; kj++) {
                const float *row = dcolT + (size_t)((c * g->kh + ki) * g->kw + kj) * ld;
                int lo, hi;
                valid_range(g->OW, g->W, g->s, kj, g->pad, &lo, &hi);
                for (int n = 0; n < ns; n++) {
                    float *xc = dx + ((size_t)n * g->C + c) * g->H * g->W;
                    for (int oh = 0; oh < g->OH; oh++) {
                        int ih = oh * g->s + ki - g->pad;
                        if (ih < 0 || ih >= g->H) continue;
                        const float *d = row + (size_t)n * g->P + (size_t)oh * g->OW;
                        float *xr = xc + (size_t)ih * g->W + kj - g->pad;
                        if (g->s == 1) for (int ow = lo; ow < hi; ow++) xr[ow] += d[ow];
                        else for (int ow = lo; ow < hi; ow++) xr[ow * g->s] += d[ow];
                    }
                }
            }
}

/* y[n, co, p] = tmp[co, n·P + p] + bias[co] (tmp's row stride: cols). */
RF_NN_VEC static void scatter_bias_c(float *y, const float *tmp, const float *bias, int ns, int Co, int P, size_t cols,
                                      int co0, int co1) {
    for (int co = co0; co < co1; co++) {
        float bv = bias ? bias[co] : 0.0f;
        for (int n = 0; n < ns; n++) {
            float *restrict yn = y + ((size_t)n * Co + co) * P;
            const float *restrict tn = tmp + (size_t)co * cols + (size_t)n * P;
            for (int p = 0; p < P; p++) yn[p] = tn[p] + bv;
        }
    }
}

/* dtmp[co, n·P + p] = dy[n, co, p]; dbias[co] += Σ dy[:, co, :] (if dbias). */
RF_NN_VEC static void gather_grad_c(float *dtmp, float *dbias, const float *dy, int ns, int Co, int P, int co0, int co1) {
    size_t cols = (size_t)ns * P;
    for (int co = co0; co < co1; co++) {
        float *t = dtmp + (size_t)co * cols;
        for (int n = 0; n < ns; n++) {
            const float *restrict dn = dy + ((size_t)n * Co + co) * P;
            float *restrict tn = t + (size_t)n * P;
            for (int p = 0; p < P; p++) tn[p] = dn[p];
        }
        if (!dbias) continue;
        float s = 0.0f;
        for (size_t i = 0; i < cols; i++) s += t[i];
        dbias[co] += s;
    }
}

/* The loops above whole (one thread). */
static void im2col_t(float *colT, const float *x, int ns, const conv_geom *g, size_t ld) {
    im2col_c(colT, x, ns, g, ld, 0, g->C);
}
static void col2im_t_add(float *dx, const float *dcolT, int ns, const conv_geom *g) {
    col2im_c_add(dx, dcolT, ns, g, 0, g->C);
}
static void scatter_bias(float *y, const float *tmp, const float *bias, int ns, int Co, int P, size_t cols) {
    scatter_bias_c(y, tmp, bias, ns, Co, P, cols, 0, Co);
}

/* dbias[co] += Σ_p dy[co, p] for one sample. */
static void bias_grad(float *dbias, const float *dy, int Co, int P) {
    for (int co = 0; co < Co; co++) {
        float s = 0.0f;
        for (int p = 0; p < P; p++) s += dy[(size_t)co * P + p];
        dbias[co] += s;
    }
}

/* ---- stride 1: "wide" columns ---------------------------------------------
 * With stride 1, compute each output row over the full padded width Wp
 * instead of OW: then the column row of tap (c, ki, kj) is ONE contiguous
 * slice of the zero-padded input, xpad[c] + ki·Wp + kj, of length OH·Wp,
 * and im2col is K long copies instead of K·OH short ones (the short rows
 * made im2col the largest cost of lenet-5). The Wp - OW extra outputs per row
 * read across row ends and are discarded; in backward their gradient is 0,
 * so they add nothing to dW and nothing to dx. Slices of the last taps run
 * kw - 1 floats past the last plane: xpad carries Wp floats of slack. */
typedef struct wide_geom { int Hp, Wp, PW; size_t plane, xpad; } wide_geom;

static wide_geom wide_of(const conv_geom *g) {
    wide_geom w;
    w.Hp = g->H + 2 * g->pad;
    w.Wp = g->W + 2 * g->pad;
    w.PW = g->OH * w.Wp;
    w.plane = (size_t)w.Hp * w.Wp;
    w.xpad = (size_t)g->C * w.plane + (size_t)w.Wp;
    return w;
}

/* Interior of xpad[C, Hp, Wp] from x[C, H, W] (borders stay zero); a plain
 * loop in the ISA's vectors (copy_row's 8-float blocks ran as SSE copies:
 * ResNet-20's 32-wide rows, 2% of a step). */
RF_NN_VEC static void pad_in(float *restrict xpad, const float *restrict x, const conv_geom *g, const wide_geom *w) {
    const int C = g->C, H = g->H, W = g->W, pad = g->pad, Wp = w->Wp;
    const size_t plane = w->plane;
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++) {
            float *restrict d = xpad + c * plane + (size_t)(h + pad) * Wp + pad;
            const float *restrict s = x + ((size_t)c * H + h) * W;
            for (int i = 0; i < W; i++) d[i] = s[i];
        }
}

/* Column rows of one sample into colT (row stride ld: a chunk's samples sit
 * side by side, sample j at column j·PW). */
static void wide_cols(float *colT, size_t ld, const float *xpad, const conv_geom *g, const wide_geom *w) {
    for (int c = 0; c < g->C; c++)
        for (int ki = 0; ki < g->kh; ki++)
            for (int kj = 0; kj < g->kw; kj++)
                memcpy(colT + (size_t)((c * g->kh + ki) * g->kw + kj) * ld,
                       xpad + c * w->plane + (size_t)ki * w->Wp + kj, (size_t)w->PW * sizeof(float));
}

/* y[co, oh, ow] = ywide[co·ld + oh·Wp + ow] + bias[co]. */
RF_NN_VEC static void wide_compact(float *y, const float *ywide, size_t ld, const float *bias, const conv_geom *g,
                                   const wide_geom *w) {
    const int Co = g->Co, OH = g->OH, OW = g->OW, Wp = w->Wp;
    for (int co = 0; co < Co; co++) {
        float bv = bias ? bias[co] : 0.0f;
        for (int oh = 0; oh < OH; oh++) {
            const float *restrict s = ywide + (size_t)co * ld + (size_t)oh * Wp;
            float *restrict d = y + ((size_t)co * OH + oh) * OW;
            for (int ow = 0; ow < OW; ow++) d[ow] = s[ow] + bv;
        }
    }
}

/* dxpad[c] + ki·Wp + kj += dcol row (row stride ld), for every tap. Channels
 * vary fastest: taps kj and kj+1 of one channel overlap shifted by one
 * float, and adding them back to back stalls on store-to-load forwarding. */
RF_NN_VEC static void wide_col2im(float *dxpad, const float *dcol, size_t ld, const conv_geom *g, const wide_geom *w) {
    /* Sizes in locals and restrict pointers: otherwise the stores may alias
     * *g and *w, the bounds are reloaded each iteration and nothing vectorises. */
    const int C = g->C, kh = g->kh, kw = g->kw, PW = w->PW, Wp = w->Wp;
    const size_t plane = w->plane;
    for (int ki = 0; ki < kh; ki++)
        for (int kj = 0; kj < kw; kj++)
            for (int c = 0; c < C; c++) {
                const float *restrict s = dcol + (size_t)((c * kh + ki) * kw + kj) * ld;
                float *restrict d = dxpad + c * plane + (size_t)ki * Wp + kj;
                for (int i = 0; i < PW; i++) d[i] += s[i];
            }
}

RF_NN_VEC static void unpad_add(float *dx, const float *dxpad, const conv_geom *g, const wide_geom *w) {
    const int C = g->C, H = g->H, W = g->W, pad = g->pad, Wp = w->Wp;
    const size_t plane = w->plane;
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++) {
            const float *restrict s = dxpad + c * plane + (size_t)(h + pad) * Wp + pad;
            float *restrict d = dx + ((size_t)c * H + h) * W;
            for (int i = 0; i < W; i++) d[i] += s[i];
        }
}

/* Samples per GEMM: enough that the GEMM's N = g·PW is at least WIDE_MIN_N.
 * Deep layers have few positions (conv-6's last convs: 3·5 per sample), and a
 * per-sample GEMM with N = 15 runs at a fraction of peak. */
#define WIDE_MIN_N 512
static int wide_chunk(const wide_geom *w, int B) {
    int g = (WIDE_MIN_N + w->PW - 1) / w->PW;
    return g < 1 ? 1 : g > B ? B : g;
}

static size_t wide_scratch(const conv_geom *g, int B) {
    wide_geom w = wide_of(g);
    size_t cols = (size_t)wide_chunk(&w, B) * w.PW;
    return 2 * w.xpad + cols * (2 * (size_t)g->K + (size_t)g->Co);
}

static void wide_forward(const rf_nn_run *r, const conv_geom *g) {
    const rf_layer *L = r->L;
    wide_geom w = wide_of(g);
    int chunk = wide_chunk(&w, r->B);
    const float *bias = L->ip[5] ? r->p[1] : NULL;
    float *xpad = r->scratch, *colT = xpad + w.xpad;
    memset(xpad, 0, w.xpad * sizeof(float));
    for (int n0 = 0; n0 < r->B; n0 += chunk) {
        int ns = r->B - n0 < chunk ? r->B - n0 : chunk;
        size_t ld = (size_t)ns * w.PW;
        float *ywide = colT + (size_t)g->K * ld;
        for (int j = 0; j < ns; j++) {
            pad_in(xpad, r->in + (size_t)(n0 + j) * L->in_size, g, &w);
            wide_cols(colT + (size_t)j * w.PW, ld, xpad, g, &w);
        }
        rf_gemm_engine(r->eng, 0, 0, g->Co, (int)ld, g->K, r->p[0], g->K, colT, (int)ld, 0, ywide, (int)ld);
        for (int j = 0; j < ns; j++)
            wide_compact(r->out + (size_t)(n0 + j) * L->out_size, ywide + (size_t)j * w.PW, ld, bias, g, &w);
    }
}

static void wide_backward(const rf_nn_run *r, const conv_geom *g) {
    const rf_layer *L = r->L;
    wide_geom w = wide_of(g);
    int chunk = wide_chunk(&w, r->B);
    float *dbias = L->ip[5] ? r->g[1] : NULL;
    float *xpad = r->scratch, *dxpad = xpad + w.xpad, *colT = dxpad + w.xpad;
    memset(xpad, 0, w.xpad * sizeof(float));
    for (int n0 = 0; n0 < r->B; n0 += chunk) {
        int ns = r->B - n0 < chunk ? r->B - n0 : chunk;
        size_t ld = (size_t)ns * w.PW;
        float *dywide = colT + (size_t)g->K * ld, *dcol = dywide + (size_t)g->Co * ld;
        memset(dywide, 0, (size_t)g->Co * ld * sizeof(float));   /* the extra columns stay 0 */
        for (int j = 0; j < ns; j++) {
            const float *dy = r->dout + (size_t)(n0 + j) * L->out_size;
            pad_in(xpad, r->in + (size_t)(n0 + j) * L->in_size, g, &w);
            wide_cols(colT + (size_t)j * w.PW, ld, xpad, g, &w);
            for (int co = 0; co < g->Co; co++)
                for (int oh = 0; oh < g->OH; oh++)
                    memcpy(dywide + (size_t)co * ld + (size_t)j * w.PW + (size_t)oh * w.Wp,
                           dy + ((size_t)co * g->OH + oh) * g->OW, (size_t)g->OW * sizeof(float));
            if (dbias) bias_grad(dbias, dy, g->Co, g->OH * g->OW);
        }
        rf_gemm_engine(r->eng, 0, 1, g->Co, g->K, (int)ld, dywide, (int)ld, colT, (int)ld, 1, r->g[0], g->K);
        if (!r->din) continue;
        rf_gemm_engine(r->eng, 1, 0, g->K, (int)ld, g->Co, r->p[0], g->K, dywide, (int)ld, 0, dcol, (int)ld);
        for (int j = 0; j < ns; j++) {
            memset(dxpad, 0, w.xpad * sizeof(float));
            wide_col2im(dxpad, dcol + (size_t)j * w.PW, ld, g, &w);
            unpad_add(r->din + (size_t)(n0 + j) * L->in_size, dxpad, g, &w);
        }
    }
}

/* ---- stride 1 on AVX-512: implicit GEMM, no columns -------------------------
 * The wide formulation above makes column row (c, ki, kj) the slice
 * xpad[c] + ki·Wp + kj; instead of copying it (K·OH·Wp floats per sample,
 * 1.9 MB for conv-2's second conv, then packed once more inside sgemm) the
 * micro-kernels below read those slices straight from the padded sample,
 * which stays in L2. Same FLOPs as the GEMM, no copies:
 *   forward   ywide[co, p] = Σ_k W[co, k] · xpad[off(k) + p]: tiles of 8 output
 *             channels × 48 positions (24 zmm accumulators), weights packed
 *             [Co/8][K][8] and broadcast, 3 unaligned loads per tap;
 *   d input   the transposed convolution of stride 1 is a stride-1
 *             convolution of dy zero-padded by k − 1 − pad with the flipped
 *             kernel W'[c, co, kh−1−ki, kw−1−kj]: the same forward kernel;
 *   d weight  dW[co, k] += Σ_p dy[co, p] · xpad[off(k) + p] over the valid
 *             positions, with vectors over output channels (dy transposed
 *             per sample, dW transposed once per batch): tiles of 64
 *             channels × 6 taps.
 * Fixed loop and reduction orders keep it deterministic. The im2col paths
 * above stay the reference (RAFFLE_ISA=scalar, AVX2, strided layers). */
#define DC_MR 8          /* forward tile: output channels                    */
#define DC_NP 48         /* forward tile: positions (3 vectors)              */
#define DW_NV 4          /* weight-gradient tile: 16-channel vectors         */
#define DW_NT 6          /* weight-gradient tile: taps                       */

/* acc += wv · b, b the first multiplicand (the NaN rule of docs/kernels.md),
 * in asm so that the compiler cannot swap the multiplicands. The weight is
 * broadcast into a register once per tap and row and used by the row's three
 * FMAs: on Zen 5 (family 26) that runs the forward tile at 175-180 GFLOP/s
 * against 145-148 with the broadcast folded into each FMA's memory operand
 * ({1to16}: three broadcast loads per weight), ResNet-20's 16-channel
 * stage, same run. (The folded form was chosen on Zen 4, where a separate
 * vbroadcastss took an FP pipe slot; the bits are the same either way.) */
#define DC_FMA_REG(acc, b, wv) __asm__("vfmadd231ps %2, %1, %0" : "+v"(acc) : "v"(b), "v"(wv))

/* toff (stride 2, NULL for stride 1): offset of tap k = (c, ki, kj) in the
 * phase-split input (s2_split), read in k order. */
/* pf[i] (or NULL): up to DC_PF regions of pf_n[i] floats that the caller
 * reads, or writes (bit i of pf_w), next: the next sample's input, output,
 * output gradient. The AVX-512 loop asks for a slice of their lines with
 * every tile, so the copies around the kernel (pad_in, wide_compact, dc_pad,
 * the input gradient's adds) find them in L2 instead of waiting on memory
 * while the kernel runs at the FMA limit (~96% of peak on ResNet-20's
 * 16-channel stage). Changes no value. */
#define DC_PF 3
typedef struct dc_in {
    const float *x;
    int C, kh, kw, Wp;
    size_t plane;
    const int *toff;
    const float *pf[DC_PF];
    size_t pf_n[DC_PF];
    unsigned pf_w;
} dc_in;

static int dc_round(int n, int m) { return (n + m - 1) / m * m; }

static __mmask16 dc_mask(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* One tap of the tile below: 3 vectors of positions from xp, each row's
 * weight wk[i] broadcast once, R·3 FMAs. */
#define DC_TAP(xp)                                                                                                   \
    do {                                                                                                             \
        const float *xr_ = (xp);                                                                                     \
        __m512 b0 = _mm512_maskz_loadu_ps(m0, xr_), b1 = _mm512_maskz_loadu_ps(m1, xr_ + 16);                        \
        __m512 b2 = _mm512_maskz_loadu_ps(m2, xr_ + 32);                                                             \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {                                                        \
            __m512 wv = _mm512_set1_ps(wk[i]);                                                                       \
            DC_FMA_REG(a[i][0], b0, wv);                                                                             \
            DC_FMA_REG(a[i][1], b1, wv);                                                                             \
            DC_FMA_REG(a[i][2], b2, wv);                                                                             \
        }                                                                                                            \
    } while (0)

/* y[i·ldy + j] = Σ_k wk[k·8 + i] · x[off(k) + j], i < 8, j < 48 masked by m0..m2. */
__attribute__((target("avx512f"), optimize("O3"), always_inline))
static inline void dc_fwd_tile(float *y, size_t ldy, const float *x, const float *wk, const dc_in *d, __mmask16 m0,
                               __mmask16 m1, __mmask16 m2, const int R, const int *toff) {
    __m512 a[DC_MR][3];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) a[i][0] = a[i][1] = a[i][2] = _mm512_setzero_ps();
    const int C = d->C, kh = d->kh, kw = d->kw, Wp = d->Wp;
    const size_t plane = d->plane;
    if (toff) {   /* stride 2: the same FMAs in the same tap order, offsets from the table */
        const int K = C * kh * kw;
        for (int k = 0; k < K; k++, wk += DC_MR) DC_TAP(x + toff[k]);
    } else {
        for (int c = 0; c < C; c++)
            for (int ki = 0; ki < kh; ki++) {
                const float *xr = x + (size_t)c * plane + (size_t)ki * Wp;
                for (int kj = 0; kj < kw; kj++, wk += DC_MR) DC_TAP(xr + kj);
            }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        _mm512_mask_storeu_ps(y + i * ldy, m0, a[i][0]);
        _mm512_mask_storeu_ps(y + i * ldy + 16, m1, a[i][1]);
        _mm512_mask_storeu_ps(y + i * ldy + 32, m2, a[i][2]);
    }
}

/* Full tiles with constant masks (plain loads and stores), and the masked
 * tail tile of each row of tiles; 8 output channels, or 6 / 4 for a last
 * block with that few (lenet-5's conv1 has 6: rows 7-8 would multiply the
 * packing's zeros, a quarter of its forward). */
typedef void (*dc_full_fn)(float *, size_t, const float *, const float *, const dc_in *);
typedef void (*dc_tail_fn)(float *, size_t, const float *, const float *, const dc_in *, __mmask16, __mmask16, __mmask16);
#define DC_FWD_FNS(r)                                                                                           \
    __attribute__((target("avx512f"), optimize("O3"))) static void dc_fwd_full_##r(                             \
        float *y, size_t ldy, const float *x, const float *wk, const dc_in *d) {                               \
        dc_fwd_tile(y, ldy, x, wk, d, (__mmask16)0xFFFF, (__mmask16)0xFFFF, (__mmask16)0xFFFF, r, NULL);      \
    }                                                                                                           \
    __attribute__((target("avx512f"), optimize("O3"))) static void dc_fwd_tail_##r(                             \
        float *y, size_t ldy, const float *x, const float *wk, const dc_in *d, __mmask16 m0, __mmask16 m1,      \
        __mmask16 m2) {                                                                                         \
        dc_fwd_tile(y, ldy, x, wk, d, m0, m1, m2, r, NULL);                                                     \
    }                                                                                                           \
    __attribute__((target("avx512f"), optimize("O3"))) static void dc_s2_full_##r(                              \
        float *y, size_t ldy, const float *x, const float *wk, const dc_in *d) {                               \
        dc_fwd_tile(y, ldy, x, wk, d, (__mmask16)0xFFFF, (__mmask16)0xFFFF, (__mmask16)0xFFFF, r, d->toff);   \
    }                                                                                                           \
    __attribute__((target("avx512f"), optimize("O3"))) static void dc_s2_tail_##r(                              \
        float *y, size_t ldy, const float *x, const float *wk, const dc_in *d, __mmask16 m0, __mmask16 m1,      \
        __mmask16 m2) {                                                                                         \
        dc_fwd_tile(y, ldy, x, wk, d, m0, m1, m2, r, d->toff);                                                  \
    }
DC_FWD_FNS(4) DC_FWD_FNS(6) DC_FWD_FNS(8)

/* ywide[co·ldy + p] for co < round8(Co), p < PW; wpk packed [Co/8][K][8]. */
__attribute__((target("avx512f")))
static void dc_conv_avx512(float *ywide, size_t ldy, const float *wpk, int Co, int PW, const dc_in *d) {
    size_t K = (size_t)d->C * d->kh * d->kw;
    /* the prefetch slices: lines of pf[i] spread over the tiles */
    const size_t tiles = (size_t)((PW + DC_NP - 1) / DC_NP) * (size_t)((Co + DC_MR - 1) / DC_MR);
    size_t per[DC_PF], done[DC_PF] = {0};
    for (int i = 0; i < DC_PF; i++) per[i] = d->pf[i] ? (d->pf_n[i] / 16 + tiles) / tiles : 0;
    for (int p0 = 0; p0 < PW; p0 += DC_NP) {
        int left = PW - p0;
        __mmask16 m0 = dc_mask(left), m1 = dc_mask(left - 16), m2 = dc_mask(left - 32);
        for (int cb = 0; cb < Co; cb += DC_MR) {
            float *y = ywide + (size_t)cb * ldy + p0;
            int rows = Co - cb;
            dc_full_fn full = d->toff ? (rows <= 4 ? dc_s2_full_4 : rows <= 6 ? dc_s2_full_6 : dc_s2_full_8)
                                      : (rows <= 4 ? dc_fwd_full_4 : rows <= 6 ? dc_fwd_full_6 : dc_fwd_full_8);
            dc_tail_fn tail = d->toff ? (rows <= 4 ? dc_s2_tail_4 : rows <= 6 ? dc_s2_tail_6 : dc_s2_tail_8)
                                      : (rows <= 4 ? dc_fwd_tail_4 : rows <= 6 ? dc_fwd_tail_6 : dc_fwd_tail_8);
            for (int i = 0; i < DC_PF; i++)
                for (size_t l = 0; l < per[i] && done[i] < d->pf_n[i]; l++, done[i] += 16)
                    if (d->pf_w >> i & 1) __builtin_prefetch(d->pf[i] + done[i], 1, 2);
                    else __builtin_prefetch(d->pf[i] + done[i], 0, 2);
            if (left >= DC_NP) full(y, ldy, d->x + p0, wpk + (size_t)cb * K, d);
            else tail(y, ldy, d->x + p0, wpk + (size_t)cb * K, d, m0, m1, m2);
        }
    }
}

/* wpk[cb][k][i] = W[cb·8 + i, k] (0 past Co), W row-major [Co, K]. */
static void dc_pack(float *wpk, const float *W, int Co, size_t K) {
    for (int cb = 0; cb < Co; cb += DC_MR)
        for (size_t k = 0; k < K; k++)
            for (int i = 0; i < DC_MR; i++)
                wpk[((size_t)cb * K) + k * DC_MR + i] = cb + i < Co ? W[(size_t)(cb + i) * K + k] : 0.0f;
}

/* Flipped, transposed kernel of the input gradient, packed like dc_pack:
 * W'[c, co, ki, kj] = W[co, c, kh−1−ki, kw−1−kj], a [C, Co·kh·kw] matrix. */
static void dc_pack_flip(float *wpk, const float *W, int Co, int C, int kh, int kw) {
    size_t Kf = (size_t)Co * kh * kw;
    for (int cb = 0; cb < C; cb += DC_MR)
        for (int co = 0; co < Co; co++)
            for (int ki = 0; ki < kh; ki++)
                for (int kj = 0; kj < kw; kj++) {
                    float *d = wpk + (size_t)cb * Kf + (((size_t)co * kh + ki) * kw + kj) * DC_MR;
                    for (int i = 0; i < DC_MR; i++)
                        d[i] = cb + i < C ? W[(((size_t)co * C + cb + i) * kh + (kh - 1 - ki)) * kw + (kw - 1 - kj)]
                                          : 0.0f;
                }
}

/* One tile of the weight gradient, transposed: dWT[k0 + t][c0 + 16v + j] +=
 * Σ_{oh, ow} x[off[t] + oh·Wp + ow] · dyT[(oh·OW + ow)·ldc + 16v + j] for
 * v < NV (up to 64 channels), t < NT taps: 24 accumulators, per position
 * NV loads of dy and NT broadcasts of x. Vectors run over output channels,
 * so only the OH·OW valid positions are visited and nothing is reduced
 * across lanes. */
__attribute__((target("avx512f"), optimize("O3"), always_inline))
static inline void dwt_tile(float *dwt, size_t ldw, const float *dyT, size_t ldc, const float *x, const size_t *off,
                            int OH, int OW, int Wp, const int NV, const int NT) {
    __m512 a[DW_NV][DW_NT];
    size_t o[DW_NT];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) {
        o[t] = off[t];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[v][t] = _mm512_setzero_ps();
    }
    for (int oh = 0; oh < OH; oh++) {
        const float *xr = x + (size_t)oh * Wp, *g = dyT + (size_t)oh * OW * ldc;
        for (int ow = 0; ow < OW; ow++, g += ldc) {
            __m512 d[DW_NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) d[v] = _mm512_loadu_ps(g + 16 * v);
#pragma GCC unroll 6
            for (int t = 0; t < NT; t++) {
                __m512 xv = _mm512_set1_ps(xr[o[t] + ow]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) a[v][t] = _mm512_fmadd_ps(d[v], xv, a[v][t]);
            }
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *p = dwt + (size_t)t * ldw + 16 * v;
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), a[v][t]));
        }
}

typedef void (*dwt_fn)(float *, size_t, const float *, size_t, const float *, const size_t *, int, int, int);
#define DWT_FN(nv, nt)                                                                                      \
    __attribute__((target("avx512f"), optimize("O3"))) static void dwt_##nv##_##nt(                        \
        float *dwt, size_t ldw, const float *dyT, size_t ldc, const float *x, const size_t *off, int OH,    \
        int OW, int Wp) {                                                                                   \
        dwt_tile(dwt, ldw, dyT, ldc, x, off, OH, OW, Wp, nv, nt);                                           \
    }
DWT_FN(1, 6) DWT_FN(2, 6) DWT_FN(3, 6) DWT_FN(4, 6) DWT_FN(1, 1) DWT_FN(2, 1) DWT_FN(3, 1) DWT_FN(4, 1)
/* Indexed by [taps == 1][vectors − 1]. */
static const dwt_fn dwt_table[2][DW_NV] = {{dwt_1_6, dwt_2_6, dwt_3_6, dwt_4_6}, {dwt_1_1, dwt_2_1, dwt_3_1, dwt_4_1}};

/* The weight gradient of a 3x3 kernel with at most 16 output channels (one
 * vector: ResNet's 16-channel stage), a whole input channel's 9 taps per
 * tile. dwt_tile with NV = 1 keeps only 6 FMA chains, fewer than the 8 that
 * two FMA pipes of latency 4 need; 9 chains keep them busy, and the taps are
 * 3 row pointers plus immediates (dwt_tile's general offsets spilled to the
 * stack at 12 taps). Per element the same chain as dwt_tile and
 * dc_dweight_gen: from +0 over the positions in order, then one addition
 * into dwt, so the same bits. */
__attribute__((target("avx512f"), optimize("O3")))
static void dwt_1_9(float *dwt, size_t ldw, const float *dyT, size_t ldc, const float *x, int OH, int OW, int Wp) {
    __m512 a[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) a[t] = _mm512_setzero_ps();
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = x + (size_t)oh * Wp, *r1 = r0 + Wp, *r2 = r1 + Wp, *g = dyT + (size_t)oh * OW * ldc;
        for (int ow = 0; ow < OW; ow++, g += ldc) {
            __m512 d = _mm512_loadu_ps(g);
            a[0] = _mm512_fmadd_ps(d, _mm512_set1_ps(r0[ow]), a[0]);
            a[1] = _mm512_fmadd_ps(d, _mm512_set1_ps(r0[ow + 1]), a[1]);
            a[2] = _mm512_fmadd_ps(d, _mm512_set1_ps(r0[ow + 2]), a[2]);
            a[3] = _mm512_fmadd_ps(d, _mm512_set1_ps(r1[ow]), a[3]);
            a[4] = _mm512_fmadd_ps(d, _mm512_set1_ps(r1[ow + 1]), a[4]);
            a[5] = _mm512_fmadd_ps(d, _mm512_set1_ps(r1[ow + 2]), a[5]);
            a[6] = _mm512_fmadd_ps(d, _mm512_set1_ps(r2[ow]), a[6]);
            a[7] = _mm512_fmadd_ps(d, _mm512_set1_ps(r2[ow + 1]), a[7]);
            a[8] = _mm512_fmadd_ps(d, _mm512_set1_ps(r2[ow + 2]), a[8]);
        }
    }
#pragma GCC unroll 9
    for (int t = 0; t < 9; t++) {
        float *p = dwt + (size_t)t * ldw;
        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), a[t]));
    }
}

/* Offset of tap k = (c, ki, kj) in an input of channel planes `plane`
 * floats apart with row stride ld. */
static size_t tap_off(const conv_geom *g, int k, size_t plane, size_t ld) {
    int c = k / (g->kh * g->kw), ki = k / g->kw % g->kh, kj = k % g->kw;
    return (size_t)c * plane + (size_t)ki * ld + (size_t)kj;
}

/* Offset of tap k in d's input: the stride-2 table (phase-split input,
 * s2_taps) or tap_off. */
static size_t dc_tap(const conv_geom *g, const dc_in *d, int k) {
    return d->toff ? (size_t)d->toff[k] : tap_off(g, k, d->plane, (size_t)d->Wp);
}

/* dWT[k, co] (row stride ldc = round16(Co)) += Σ_p xpad[off(k) + p] ·
 * dyT[p, co] over the valid positions of one sample. */
static void dc_dweight_avx512(float *dwt, const float *dyT, size_t ldc, const conv_geom *g, const dc_in *d) {
    size_t off[DW_NT];
    if (ldc == 16 && g->kh == 3 && g->kw == 3 && !d->toff) {   /* tap k = 9c + 3ki + kj: channel c's taps at rows k = 9c.. */
        for (int c = 0; c < g->C; c++)
            dwt_1_9(dwt + (size_t)c * 9 * ldc, ldc, dyT, ldc, d->x + (size_t)c * d->plane, g->OH, g->OW, d->Wp);
        return;
    }
    for (int k0 = 0; k0 < g->K; k0 += DW_NT) {
        int nt = g->K - k0 < DW_NT ? g->K - k0 : DW_NT;
        for (int t = 0; t < nt; t++) off[t] = dc_tap(g, d, k0 + t);
        for (size_t c0 = 0; c0 < ldc; c0 += 16 * DW_NV) {
            int nv = (int)((ldc - c0) / 16 < DW_NV ? (ldc - c0) / 16 : DW_NV);
            float *w = dwt + (size_t)k0 * ldc + c0;
            if (nt == DW_NT) dwt_table[0][nv - 1](w, ldc, dyT + c0, ldc, d->x, off, g->OH, g->OW, d->Wp);
            else
                for (int t = 0; t < nt; t++)
                    dwt_table[1][nv - 1](w + (size_t)t * ldc, ldc, dyT + c0, ldc, d->x, off + t, g->OH, g->OW, d->Wp);
        }
    }
}

/* ---- weight gradient for few output channels (Co <= 8, lenet-5's conv1) ------
 * dwt_tile vectorises over output channels, so with Co = 6 ten of its 16
 * lanes multiply padding (it was 14% of a lenet-5 step). Here vectors run
 * over the wide positions q = oh·Wp + ow instead: with dy laid out wide and
 * zero in the Wp − OW columns past each row (dyw[co][q]),
 *   dW[co][k] = Σ_q dyw[co][q] · xpad[off(k) + q],
 * both operands contiguous. Each (co, k) keeps 16 lane partial sums across
 * the whole batch (wacc[(co·K + k)·16 + l]), summed by rf_nn_lanes_sum at the
 * end: a fixed order. Register block: CB channels × TB taps (<= 24
 * accumulators), per 16 positions CB + TB loads for CB·TB FMAs. */
__attribute__((target("avx512f"), optimize("O3"), always_inline))
static inline void dws_tile(float *wacc, size_t ldk, const float *dyw, size_t ldq, const float *x, const size_t *off,
                            int Q, const int CB, const int TB) {
    __m512 a[8][8];
#pragma GCC unroll 8
    for (int c = 0; c < CB; c++)
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) a[c][t] = _mm512_loadu_ps(wacc + (size_t)c * ldk + 16 * t);
    for (int q = 0; q < Q; q += 16) {
        __mmask16 m = dc_mask(Q - q);
        __m512 xv[8];
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) xv[t] = _mm512_maskz_loadu_ps(m, x + off[t] + q);
#pragma GCC unroll 8
        for (int c = 0; c < CB; c++) {
            __m512 d = _mm512_maskz_loadu_ps(m, dyw + (size_t)c * ldq + q);
#pragma GCC unroll 8
            for (int t = 0; t < TB; t++) a[c][t] = _mm512_fmadd_ps(d, xv[t], a[c][t]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < CB; c++)
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++) _mm512_storeu_ps(wacc + (size_t)c * ldk + 16 * t, a[c][t]);
}

typedef void (*dws_fn)(float *, size_t, const float *, size_t, const float *, const size_t *, int);
#define DWS_TB(cb) ((24 / (cb)) < 8 ? (24 / (cb)) : 8)
#define DWS_FN(cb)                                                                                          \
    __attribute__((target("avx512f"), optimize("O3"))) static void dws_##cb(                                \
        float *wacc, size_t ldk, const float *dyw, size_t ldq, const float *x, const size_t *off, int Q) {  \
        dws_tile(wacc, ldk, dyw, ldq, x, off, Q, cb, DWS_TB(cb));                                          \
    }                                                                                                       \
    __attribute__((target("avx512f"), optimize("O3"))) static void dws_##cb##_1(                            \
        float *wacc, size_t ldk, const float *dyw, size_t ldq, const float *x, const size_t *off, int Q) {  \
        dws_tile(wacc, ldk, dyw, ldq, x, off, Q, cb, 1);                                                   \
    }
DWS_FN(1) DWS_FN(2) DWS_FN(3) DWS_FN(4) DWS_FN(5) DWS_FN(6) DWS_FN(7) DWS_FN(8)
static const dws_fn dws_table[8][2] = {{dws_1, dws_1_1}, {dws_2, dws_2_1}, {dws_3, dws_3_1}, {dws_4, dws_4_1},
                                       {dws_5, dws_5_1}, {dws_6, dws_6_1}, {dws_7, dws_7_1}, {dws_8, dws_8_1}};

/* wacc += this sample's lane partial sums; dyw [Co][PW] holds its dy, wide. */
static void dc_dweight_small_avx512(float *wacc, const float *dyw, const conv_geom *g, const dc_in *d, int PW) {
    const int Co = g->Co, K = g->K, tb = DWS_TB(Co);
    size_t off[8];
    for (int k0 = 0; k0 < K; k0 += tb) {
        int nt = K - k0 < tb ? K - k0 : tb;
        for (int t = 0; t < nt; t++) off[t] = tap_off(g, k0 + t, d->plane, (size_t)d->Wp);
        float *w = wacc + (size_t)k0 * 16;
        if (nt == tb) dws_table[Co - 1][0](w, (size_t)K * 16, dyw, (size_t)PW, d->x, off, PW);
        else
            for (int t = 0; t < nt; t++)
                dws_table[Co - 1][1](w + (size_t)t * 16, (size_t)K * 16, dyw, (size_t)PW, d->x, off + t, PW);
    }
}

/* dbias[co] += Σ_p dy[co, p]: 16 lane sums per row (lane l: p ≡ l mod 16,
 * the tail lanes adding +0), combined by rf_nn_lanes_sum's fixed tree (the
 * serial scalar sum was 4% of lenet-5's training step). */
__attribute__((target("avx512f")))
static void dc_bias_grad_avx512(float *dbias, const float *dy, int Co, int P) {
    float lane[16];
    for (int co = 0; co < Co; co++) {
        const float *row = dy + (size_t)co * P;
        __m512 acc = _mm512_setzero_ps();
        int p = 0;
        for (; p + 16 <= P; p += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(row + p));
        if (p < P) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(dc_mask(P - p), row + p));
        _mm512_storeu_ps(lane, acc);
        dbias[co] += rf_nn_lanes_sum(lane);
    }
}

/* ---- the direct path's kernels on other ISAs --------------------------------
 * Plain C with fmaf (one correctly rounded fused multiply-add, like the
 * AVX-512 instruction), vectorised per ISA by RF_NN_VEC: per output element
 * the same operations in the same order as the AVX-512 kernels above, so the
 * same bits on every ISA (tests/unit/test_conv_isa.c). */
#define DG_NP 16   /* positions per block of the generic forward */

RF_NN_VEC static void dc_conv_gen(float *ywide, size_t ldy, const float *wpk, int Co, int PW, const dc_in *d) {
    const int C = d->C, kh = d->kh, kw = d->kw, Wp = d->Wp;
    const size_t plane = d->plane, K = (size_t)C * kh * kw;
    for (int cb = 0; cb < Co; cb += DC_MR) {
        const int rows = Co - cb < DC_MR ? Co - cb : DC_MR;
        for (int p0 = 0; p0 < PW; p0 += DG_NP) {
            const int np = PW - p0 < DG_NP ? PW - p0 : DG_NP;
            float acc[DC_MR][DG_NP];
            memset(acc, 0, sizeof acc);
            const float *wk = wpk + (size_t)cb * K;
            int k = 0;
            for (int c = 0; c < C; c++)
                for (int ki = 0; ki < kh; ki++) {
                    const float *xr = d->x + (size_t)c * plane + (size_t)ki * Wp + p0;
                    for (int kj = 0; kj < kw; kj++, wk += DC_MR, k++)
                        for (int i = 0; i < rows; i++) {
                            /* stride 2: tap k's offset from the table (dc_fwd_tile's toff branch) */
                            if (d->toff) xr = d->x + d->toff[k] + p0 - kj;
                            const float w = wk[i];
                            if (np == DG_NP)
                                for (int j = 0; j < DG_NP; j++) acc[i][j] = fmaf(xr[kj + j], w, acc[i][j]);
                            else
                                for (int j = 0; j < np; j++) acc[i][j] = fmaf(xr[kj + j], w, acc[i][j]);
                        }
                }
            for (int i = 0; i < rows; i++) memcpy(ywide + (size_t)(cb + i) * ldy + p0, acc[i], (size_t)np * sizeof(float));
        }
    }
}

/* dwt[k·ldc + co] += Σ over this sample's valid positions, in order, of
 * x[off(k) + oh·Wp + ow] · dyT[(oh·OW + ow)·ldc + co]: the sum from +0, then
 * one addition into dwt (dwt_tile's order). */
RF_NN_VEC static void dc_dweight_gen(float *dwt, const float *dyT, size_t ldc, const conv_geom *g, const dc_in *d) {
    enum { CB = 64 };
    for (int k = 0; k < g->K; k++) {
        const float *x = d->x + dc_tap(g, d, k);
        for (size_t c0 = 0; c0 < ldc; c0 += CB) {
            const size_t nc = ldc - c0 < CB ? ldc - c0 : CB;
            float acc[CB];
            memset(acc, 0, sizeof acc);
            for (int oh = 0; oh < g->OH; oh++)
                for (int ow = 0; ow < g->OW; ow++) {
                    const float xv = x[(size_t)oh * d->Wp + ow];
                    const float *dp = dyT + ((size_t)oh * g->OW + ow) * ldc + c0;
                    for (size_t c = 0; c < nc; c++) acc[c] = fmaf(dp[c], xv, acc[c]);
                }
            float *w = dwt + (size_t)k * ldc + c0;
            for (size_t c = 0; c < nc; c++) w[c] = w[c] + acc[c];
        }
    }
}

/* wacc[(co·K + k)·16 + l] (lane l: wide positions q ≡ l mod 16; past Q the
 * lane adds fma(0, 0, ·), as the masked vector does). */
RF_NN_VEC static void dc_dweight_small_gen(float *wacc, const float *dyw, const conv_geom *g, const dc_in *d, int PW) {
    for (int co = 0; co < g->Co; co++)
        for (int k = 0; k < g->K; k++) {
            const float *x = d->x + tap_off(g, k, d->plane, (size_t)d->Wp), *dr = dyw + (size_t)co * PW;
            float *a = wacc + ((size_t)co * g->K + k) * 16;
            float acc[16];
            memcpy(acc, a, sizeof acc);
            for (int q = 0; q < PW; q += 16) {
                if (PW - q >= 16) {
                    for (int l = 0; l < 16; l++) acc[l] = fmaf(dr[q + l], x[q + l], acc[l]);
                } else {
                    for (int l = 0; l < 16; l++) {
                        int in = q + l < PW;
                        acc[l] = fmaf(in ? dr[q + l] : 0.0f, in ? x[q + l] : 0.0f, acc[l]);
                    }
                }
            }
            memcpy(a, acc, sizeof acc);
        }
}

RF_NN_VEC static void dc_bias_grad_gen(float *dbias, const float *dy, int Co, int P) {
    for (int co = 0; co < Co; co++) {
        const float *row = dy + (size_t)co * P;
        float acc[16] = {0.0f};
        int p = 0;
        for (; p + 16 <= P; p += 16)
            for (int l = 0; l < 16; l++) acc[l] = acc[l] + row[p + l];
        for (int l = 0; p + l < P; l++) acc[l] = acc[l] + row[p + l];
        for (int l = P - p; p < P && l < 16; l++) acc[l] = acc[l] + 0.0f;
        dbias[co] += rf_nn_lanes_sum(acc);
    }
}

/* The kernels of the ISA in use (the same bits on each). */
static int dc_512(void) { return rf_kernels_isa() >= RF_ISA_AVX512; }
static void dc_conv(float *ywide, size_t ldy, const float *wpk, int Co, int PW, const dc_in *d) {
    (dc_512() ? dc_conv_avx512 : dc_conv_gen)(ywide, ldy, wpk, Co, PW, d);
}
static void dc_dweight(float *dwt, const float *dyT, size_t ldc, const conv_geom *g, const dc_in *d) {
    (dc_512() ? dc_dweight_avx512 : dc_dweight_gen)(dwt, dyT, ldc, g, d);
}
static void dc_dweight_small(float *wacc, const float *dyw, const conv_geom *g, const dc_in *d, int PW) {
    (dc_512() ? dc_dweight_small_avx512 : dc_dweight_small_gen)(wacc, dyw, g, d, PW);
}
static void dc_bias_grad(float *dbias, const float *dy, int Co, int P) {
    (dc_512() ? dc_bias_grad_avx512 : dc_bias_grad_gen)(dbias, dy, Co, P);
}

/* dst[c·plane + (h + top)·ld + left + w] = src[c, h, w] (the rest untouched),
 * in the ISA's vectors as pad_in. */
RF_NN_VEC static void dc_pad(float *restrict dst, const float *restrict src, int C, int H, int W, size_t plane, int ld,
                             int top, int left) {
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++) {
            float *restrict d = dst + c * plane + (size_t)(h + top) * ld + left;
            const float *restrict s = src + ((size_t)c * H + h) * W;
            for (int i = 0; i < W; i++) d[i] = s[i];
        }
}

/* Geometry of the input-gradient convolution: dy padded by qh, qw. */
typedef struct dc_bwd { int qh, qw, Hq, Wq; size_t plane, pad, PX; } dc_bwd;

static dc_bwd dc_bwd_of(const conv_geom *g) {
    dc_bwd b;
    b.qh = g->kh - 1 - g->pad; b.qw = g->kw - 1 - g->pad;
    b.Hq = g->OH + 2 * b.qh; b.Wq = g->OW + 2 * b.qw;
    b.plane = (size_t)b.Hq * b.Wq;
    b.pad = (size_t)g->Co * b.plane + (size_t)b.Wq;   /* + slack, as xpad */
    b.PX = (size_t)g->H * b.Wq;                       /* wide positions of dx */
    return b;
}

/* The input gradient as a convolution visits (OH + 2·qh)·(OW + 2·qw) padded
 * positions per output: for "same" padding (qh = pad) that is the forward's
 * cost, but lenet-5's unpadded 5×5 conv2 would pay 3.8× the GEMM's
 * multiplies; there dcol = Wᵀ·dy and col2im, per sample (j_wide_dx: one
 * contiguous add per tap for unpadded stride-1 layers). */
static int j_dx_direct(const conv_geom *g) {
    dc_bwd b = dc_bwd_of(g);
    return b.qh <= g->pad && b.qw <= g->pad;
}
static int j_wide_dx(const conv_geom *g) { return !j_dx_direct(g) && g->s == 1 && g->pad == 0; }

/* The direct path needs stride 1 and pad < kernel (so that the input
 * gradient is a convolution with non-negative padding). */
static int direct_fits(const conv_geom *g) { return g->s == 1 && g->pad < g->kh && g->pad < g->kw; }
static int use_direct(const conv_geom *g, const rf_engine *e) {
    return direct_fits(g) && e->v[RF_ENGINE_CONV] != RF_NN_CONV_GEMM;
}

/* The weight gradient of layers with at most this many output channels runs
 * as dc_dweight_small. */
#define DW_SMALL_CO 8

/* Floats of the backward's dxwide region: the input gradient's wide output
 * (direct) or dcol (GEMM; in the input's row stride W for the unpadded
 * case, >= K·P). */
static size_t dx_region(const conv_geom *g, const dc_bwd *b) {
    size_t c8 = (size_t)dc_round(g->C, DC_MR), dcl = (size_t)g->K * g->OH * g->W;
    return c8 * b->PX > dcl ? c8 * b->PX : dcl;
}

/* ---- stride 2 forward on the direct kernel (AVX-512) ---------------------------
 * The padded input split into its four phases, xph[c][a][b][i][j] =
 * xpad[c][2i + a][2j + b] (i < Hh, j < Wh, zeros past the padded map), makes
 * tap (c, ki, kj) of output (oh, ow) the element xph[c][ki&1][kj&1][oh +
 * ki/2][ow + kj/2]: at offset toff[k] + oh·Wh + ow, linear in the wide
 * position oh·Wh + ow. So dc_fwd_tile runs a stride-2 layer over Wh-wide
 * rows (ResNet's 32x32 -> 16x16 layer: 17 positions per 16 outputs) with a
 * table of tap offsets, without im2col's gathered columns (direct_forward).
 * Per output the chain of the im2col path's product, fma(x, w) over k =
 * (c, ki, kj) in order from +0, then + bias (or + 0) as scatter_bias adds
 * it: the same bits, so which ISA takes which path does not matter
 * (test_direct.c). The backward stays on the im2col path. */

/* The split input as a wide_geom: rows Wh (Wp) apart, 4·Hh·Wh floats a
 * channel (plane), PW = OH·Wh wide positions, xpad floats with slack (the
 * last taps' wide rows run past). */
static wide_geom s2_of(const conv_geom *g) {
    wide_geom s;
    s.Hp = (g->H + 2 * g->pad + 1) / 2;
    s.Wp = (g->W + 2 * g->pad + 1) / 2;
    s.PW = g->OH * s.Wp;
    s.plane = (size_t)4 * s.Hp * s.Wp;
    s.xpad = (size_t)g->C * s.plane + 2 * (size_t)s.Wp;
    return s;
}

static int use_s2(const conv_geom *g, const rf_engine *e) {
    return g->s == 2 && dc_512() && e->v[RF_ENGINE_CONV] != RF_NN_CONV_GEMM;
}

/* xph from one sample x[C, H, W] (the zero border and slack stay zero). */
static void s2_split(float *xph, const float *x, const conv_geom *g, const wide_geom *s) {
    const int H = g->H, W = g->W, pad = g->pad, Wh = s->Wp;
    const size_t ph = (size_t)s->Hp * Wh;
    const row2_fn gather2 = gather2_fn();
    for (int c = 0; c < g->C; c++)
        for (int h = 0; h < H; h++) {
            int hp = h + pad;
            const float *xr = x + ((size_t)c * H + h) * W;
            float *d = xph + (size_t)c * s->plane + (size_t)(hp & 1) * 2 * ph + (size_t)(hp >> 1) * Wh;
            /* the columns w ≡ r (mod 2) go to phase (r + pad) & 1 from index (r + pad) >> 1 on */
            for (int r = 0; r < 2 && r < W; r++)
                gather2(d + (size_t)((r + pad) & 1) * ph + (size_t)((r + pad) >> 1), xr + r, (W - r + 1) / 2);
        }
}

/* toff[k] for the taps k = (c, ki, kj) of the split input. */
static void s2_taps(int *toff, const conv_geom *g, const wide_geom *s) {
    const size_t ph = (size_t)s->Hp * s->Wp;
    for (int k = 0; k < g->K; k++) {
        int c = k / (g->kh * g->kw), ki = k / g->kw % g->kh, kj = k % g->kw;
        toff[k] = (int)((size_t)c * s->plane + (size_t)((ki & 1) * 2 + (kj & 1)) * ph + (size_t)(ki >> 1) * s->Wp +
                        (size_t)(kj >> 1));
    }
}

/* ---- the direct path over threads ---------------------------------------------
 * Forward and input gradient: samples are independent, parts split them,
 * each with its own padded input and wide output. Weight and bias
 * gradients: sums over the batch, cut into DC_GROUPS groups of consecutive
 * samples fixed by the batch size alone; each group's partial sum runs in
 * sample order inside one part, and the partials are added in group order
 * (then into the gradient). So the sums do not depend on how many threads
 * share the groups. */
#define DC_GROUPS 8

static int dc_groups(int B) { return B < DC_GROUPS ? B : DC_GROUPS; }

/* Floats of one group's partial sums: dW (lanes for few channels, else dWT
 * rows of round16(Co)) and the bias. */
static size_t dc_partial(const conv_geom *g) {
    size_t dwp = g->Co <= DW_SMALL_CO ? (size_t)g->Co * 16 * (size_t)g->K : (size_t)g->K * (size_t)dc_round(g->Co, 16);
    return dwp + (size_t)dc_round(g->Co, 16);
}

/* Per-thread floats of the backward: padded input, dy transposed (or laid
 * out wide for few channels), padded dy, the input gradient's wide output. */
static size_t dc_bwd_thread(const conv_geom *g) {
    wide_geom w = wide_of(g);
    dc_bwd b = dc_bwd_of(g);
    size_t dyt = g->Co <= DW_SMALL_CO ? (size_t)g->Co * (size_t)w.PW : (size_t)g->P * (size_t)dc_round(g->Co, 16);
    return w.xpad + dyt + b.pad + dx_region(g, &b);
}

/* Floats of the stride-2 forward: packed weights, the tap table, and per
 * part the split input and the wide output. */
static size_t s2_scratch(const conv_geom *g, int threads) {
    wide_geom s = s2_of(g);
    size_t co8 = (size_t)dc_round(g->Co, DC_MR);
    return co8 * (size_t)g->K + (size_t)g->K + (size_t)(threads > 0 ? threads : 1) * (s.xpad + co8 * (size_t)s.PW);
}

static size_t direct_scratch(const conv_geom *g, int B, int threads) {
    wide_geom w = wide_of(g);
    size_t t = (size_t)(threads > 0 ? threads : 1);
    size_t co8 = (size_t)dc_round(g->Co, DC_MR), c8 = (size_t)dc_round(g->C, DC_MR);
    size_t fwd = co8 * (size_t)g->K + t * (w.xpad + co8 * (size_t)w.PW);
    size_t bwd = c8 * (size_t)g->Co * g->kh * g->kw + (size_t)dc_groups(B) * dc_partial(g) + t * dc_bwd_thread(g);
    return fwd > bwd ? fwd : bwd;
}

/* shared: the forward's packed weights (and tap table); the backward's
 * wpk (input-gradient weights), toff (stride 2: the split input's taps),
 * dtaps (stride 2: the phases' taps) and the groups' partials. */
typedef struct dc_job {
    const rf_nn_run *r;
    const conv_geom *g;
    float *shared, *part;
    size_t per;
    const float *wpk;
    const int *toff, *dtaps;
    float *partials;
} dc_job;

/* Stride 1: padded input (pad_in); stride 2: the phase-split one (s2_split)
 * with its tap table after the packed weights. */
static void direct_fwd_part(void *arg, int t, int n) {
    const dc_job *j = arg;
    const rf_nn_run *r = j->r;
    const conv_geom *g = j->g;
    const rf_layer *L = r->L;
    const int s2 = g->s == 2;
    wide_geom w = s2 ? s2_of(g) : wide_of(g);
    const float *bias = L->ip[5] ? r->p[1] : NULL;
    const int *toff = s2 ? (const int *)(const void *)(j->shared + (size_t)dc_round(g->Co, DC_MR) * g->K) : NULL;
    float *xpad = j->part + (size_t)t * j->per, *ywide = xpad + w.xpad;
    memset(xpad, 0, w.xpad * sizeof(float));
    dc_in d = {xpad, g->C, g->kh, g->kw, w.Wp, w.plane, toff, {NULL, NULL, NULL}, {L->in_size, L->out_size, 0}, 2};
    size_t s0, s1;
    rf_nn_span((size_t)r->B, t, n, &s0, &s1);
    for (size_t s = s0; s < s1; s++) {
        d.pf[0] = s + 1 < s1 ? r->in + (s + 1) * L->in_size : NULL;
        d.pf[1] = s + 1 < s1 ? r->out + (s + 1) * L->out_size : NULL;
        (s2 ? s2_split : pad_in)(xpad, r->in + s * L->in_size, g, &w);
        dc_conv(ywide, (size_t)w.PW, j->shared, g->Co, w.PW, &d);
        wide_compact(r->out + s * L->out_size, ywide, (size_t)w.PW, bias, g, &w);
    }
}

static void direct_forward(const rf_nn_run *r, const conv_geom *g) {
    const int s2 = g->s == 2;
    wide_geom w = s2 ? s2_of(g) : wide_of(g);
    size_t co8 = (size_t)dc_round(g->Co, DC_MR), taps = s2 ? (size_t)g->K : 0;
    dc_job j = {r, g, r->scratch, r->scratch + co8 * (size_t)g->K + taps, w.xpad + co8 * (size_t)w.PW, NULL, NULL, NULL, NULL};
    dc_pack(j.shared, r->p[0], g->Co, (size_t)g->K);
    if (s2) s2_taps((int *)(void *)(j.shared + co8 * (size_t)g->K), g, &w);
    double work = (double)r->B * (double)co8 * (double)g->K * (double)w.PW;
    int parts = rf_nn_parts(r->eng, work, 1 << 20);
    rf_nn_par(r->eng, parts < r->B ? parts : r->B, direct_fwd_part, &j);
}

/* dyT[p·ldc + co] = dy[co·P + p] for co < Co (lanes up to ldc stay as they
 * are: zero), through the kernels' 8x8 register transposes (a copy: the
 * same values). The scalar loop it replaces, by blocks of 16 positions, was
 * most of VGG-11's first-layer weight gradient (64 channels x 1024
 * positions per sample). */
static void dc_transpose(float *restrict dyT, size_t ldc, const float *restrict dy, int Co, int P) {
    rf_transpose_f32(dyT, (int)ldc, dy, Co, P, P);
}

/* din[c, h, w] += dxwide[c·PX + h·Wq + w]: the wide input gradient's rows
 * added in one loop (one call of rf_nn_add per 32-float row cost ~1% of a
 * ResNet-20 step in calls). */
RF_NN_VEC static void dx_rows(float *restrict din, const float *restrict dxwide, int C, int H, int W, size_t PX, int Wq) {
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++) {
            float *restrict d = din + ((size_t)c * H + h) * W;
            const float *restrict s = dxwide + (size_t)c * PX + (size_t)h * Wq;
            for (int w = 0; w < W; w++) d[w] += s[w];
        }
}

/* The same into a gradient nobody wrote yet (rf_nn_run.fresh): the value
 * the add would leave in the zeroed buffer, +0 + s (-0 becomes +0). */
RF_NN_VEC static void dx_rows_set(float *restrict din, const float *restrict dxwide, int C, int H, int W, size_t PX,
                                  int Wq) {
    for (int c = 0; c < C; c++)
        for (int h = 0; h < H; h++) {
            float *restrict d = din + ((size_t)c * H + h) * W;
            const float *restrict s = dxwide + (size_t)c * PX + (size_t)h * Wq;
            for (int w = 0; w < W; w++) d[w] = 0.0f + s[w];
        }
}

/* The input gradient of sample n (part t's buffers from dypad on). */
static void direct_dx(const rf_nn_run *r, const conv_geom *g, int t, int n, int n_end, float *dypad, float *dxwide,
                      const float *wfpk) {
    const rf_layer *L = r->L;
    dc_bwd b = dc_bwd_of(g);
    const float *dy = r->dout + (size_t)n * L->out_size;
    float *din = r->din + (size_t)n * L->in_size;
    const rf_engine pe = rf_nn_part_engine(r->eng, t);
    if (j_wide_dx(g)) {
        /* dy laid out with the input's row stride W (zero past OW, in
         * dypad's region): then dcol = Wᵀ·dy has the same layout, and the
         * col2im of tap (c, ki, kj) is ONE contiguous add of dcol's row
         * at offset c·H·W + ki·W + kj, instead of OH adds of OW floats
         * (lenet-5's conv2: 10-float rows, scalar; 11% of its step). The
         * zero columns add nothing, and the add stops at the last valid
         * output, so it stays inside channel c. */
        size_t PWx = (size_t)g->OH * g->W, len = (size_t)(g->OH - 1) * g->W + g->OW;
        dc_pad(dypad, dy, g->Co, g->OH, g->OW, PWx, g->W, 0, 0);
        rf_gemm_engine(&pe, 1, 0, g->K, (int)PWx, g->Co, r->p[0], g->K, dypad, (int)PWx, 0, dxwide, (int)PWx);
        for (int k = 0; k < g->K; k++)
            rf_nn_add(din + tap_off(g, k, (size_t)g->H * g->W, (size_t)g->W), dxwide + (size_t)k * PWx, len);
        return;
    }
    if (!j_dx_direct(g)) {
        rf_gemm_engine(&pe, 1, 0, g->K, g->P, g->Co, r->p[0], g->K, dy, g->P, 0, dxwide, g->P);
        col2im_t_add(din, dxwide, 1, g);
        return;
    }
    dc_in dyin = {dypad, g->Co, g->kh, g->kw, b.Wq, b.plane, NULL, {NULL, NULL, NULL}, {0, 0, 0}, 0};
    if (n + 1 < n_end) {   /* the next sample's input, input gradient and output gradient */
        dyin.pf[0] = r->in + (size_t)(n + 1) * L->in_size;
        dyin.pf[1] = din + L->in_size;
        dyin.pf[2] = dy + L->out_size;
        dyin.pf_n[0] = dyin.pf_n[1] = L->in_size;
        dyin.pf_n[2] = L->out_size;
        dyin.pf_w = 2;
    }
    dc_pad(dypad, dy, g->Co, g->OH, g->OW, b.plane, b.Wq, b.qh, b.qw);
    dc_conv(dxwide, b.PX, wfpk, g->C, (int)b.PX, &dyin);
    (r->fresh & 1 ? dx_rows_set : dx_rows)(din, dxwide, g->C, g->H, g->W, b.PX, b.Wq);
}

/* ---- stride 2 backward on the direct kernels (conv=auto3) ---------------------
 * Weight gradient: dW[co, k] = Σ_{oh, ow} dy[co, oh, ow] · xph[toff[k] + oh·Wh
 * + ow], the stride-1 weight-gradient tile (dwt_tile; dc_dweight_gen is its
 * reference) reading the phase-split input (s2_split) through the forward's
 * tap table (s2_taps) instead of columns: per sample and element from +0 over
 * the positions in order, then into its group's partial; groups as in
 * direct_backward. The im2col path sums each element in one GEMM over a
 * chunk's columns, so the bits differ: only the engine value "auto3" runs
 * this. Input gradient: per sample and phase of the padded input the
 * forward tile over padded dy (s2_dx below), into a gradient zeroed first
 * (conv_backward).
 * Layers with at most DW_SMALL_CO output channels stay on im2col. */
/* ... and layers whose weight gradient has S2B_MAX_KCO elements or more:
 * each sample's pass reads and writes its group's K x Co partial over only
 * P positions, and from there the GEMM over a chunk's columns is faster.
 * Measured (Zen 5, probe layers, backward ms, auto -> auto3): ResNet-20's
 * 16 -> 32 (K·Co 4.6k) 10 -> 7, 32 -> 64 (18k) 6.5 -> 5.8; ResNet-18's 1x1
 * 64 -> 128 (8k) 5.2 -> 4.5, but 1x1 128 -> 256 (33k, 8x8) 2.6 -> 3.7, 3x3
 * 128 -> 256 (295k) 17 -> 19 and 256 -> 512 at 4x4 16 -> 40. */
#define S2B_MAX_KCO 32768
static int use_s2b(const conv_geom *g, const rf_engine *e) {
    return g->s == 2 && e->v[RF_ENGINE_CONV] == RF_NN_CONV_AUTO3 && g->Co > DW_SMALL_CO &&
           (size_t)g->K * (size_t)g->Co < S2B_MAX_KCO;
}

/* The input gradient by phases: dx at padded position (2i + a, 2j + b) only
 * takes the taps ki = a + 2u, kj = b + 2v (u < na, v < nb), from dy at
 * (i − u, j − v). With dy padded by U = (kh − 1)/2 rows on top and V = (kw −
 * 1)/2 columns on the left (row stride Wq = Wh + V), phase (a, b) is the
 * forward tile over Wq-wide rows with tap (co, u, v) at co·plane + (U − u)·Wq
 * + V − v and the weights W'[c, (co, u, v)] = W[co, c, a + 2u, b + 2v]
 * (s2_dx_pack): per element one chain fma(dy, w) from +0 over (co, u, v) in
 * order, then added into the zeroed input gradient (scatter2_add). */
typedef struct s2_dxg { int Hh, Wh, U, V, Wq; size_t plane, pad, PW; } s2_dxg;

static s2_dxg s2_dx_of(const conv_geom *g) {
    s2_dxg x;
    wide_geom w = s2_of(g);
    x.Hh = w.Hp; x.Wh = w.Wp;
    x.U = (g->kh - 1) / 2; x.V = (g->kw - 1) / 2;
    x.Wq = x.Wh + x.V;
    x.plane = (size_t)(x.Hh + x.U) * x.Wq;
    x.pad = (size_t)g->Co * x.plane + (size_t)x.Wq;   /* + slack: the junk columns' reads */
    x.PW = (size_t)x.Hh * x.Wq;
    return x;
}
static int s2_na(int k, int a) { return (k - a + 1) / 2; }

/* Packed weights of the four phases, one after the other (dc_pack's layout
 * with K = Co·na·nb each), and their tap tables (ints). */
static void s2_dx_pack(float *wpk, int *taps, const float *W, const conv_geom *g, const s2_dxg *x) {
    const int C = g->C, Co = g->Co, kh = g->kh, kw = g->kw;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            const int na = s2_na(kh, a), nb = s2_na(kw, b);
            const size_t Kp = (size_t)Co * na * nb;
            for (int cb = 0; cb < C; cb += DC_MR)
                for (int co = 0; co < Co; co++)
                    for (int u = 0; u < na; u++)
                        for (int v = 0; v < nb; v++) {
                            size_t k = ((size_t)co * na + u) * nb + v;
                            for (int i = 0; i < DC_MR; i++)
                                wpk[(size_t)cb * Kp + k * DC_MR + i] =
                                    cb + i < C ? W[(((size_t)co * C + cb + i) * kh + a + 2 * u) * kw + b + 2 * v] : 0.0f;
                            if (cb == 0)
                                taps[k] = (int)((size_t)co * x->plane + (size_t)(x->U - u) * x->Wq + (size_t)(x->V - v));
                        }
            wpk += (size_t)dc_round(C, DC_MR) * Kp;
            taps += Kp;
        }
}

/* d[2i] += s[i], i < n: a phase row back into the input gradient's row. */
RF_NN_VEC static void scatter2_add(float *restrict d, const float *restrict s, int n) {
    for (int i = 0; i < n; i++) d[2 * i] += s[i];
}

/* din (zeroed or holding other readers' sums) += the input gradient of one
 * sample from dy; dypad's border stays zero between calls. */
static void s2_dx(float *din, const float *dy, const conv_geom *g, const s2_dxg *x, const float *wpk, const int *taps,
                  float *dypad, float *dxph, const float *next_in, const float *next_dy, size_t in_size, size_t out_size) {
    int first = 1;
    const int C = g->C, H = g->H, W = g->W, pad = g->pad;
    dc_pad(dypad, dy, g->Co, g->OH, g->OW, x->plane, x->Wq, x->U, x->V);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            const int na = s2_na(g->kh, a), nb = s2_na(g->kw, b);
            const size_t Kp = (size_t)g->Co * na * nb;
            if (Kp) {
                dc_in d = {dypad, g->Co, na, nb, x->Wq, x->plane, taps, {NULL, NULL, NULL}, {0, 0, 0}, 0};
                if (first) {   /* din's rows that the phases add into, the next sample's input and dy */
                    d.pf[0] = next_in; d.pf[1] = din; d.pf[2] = next_dy;
                    d.pf_n[0] = d.pf_n[1] = in_size; d.pf_n[2] = out_size;
                    d.pf_w = 2;
                    first = 0;
                }
                dc_conv(dxph, x->PW, wpk, C, (int)x->PW, &d);
                for (int c = 0; c < C; c++)
                    for (int h = (a - pad % 2 + 2) % 2; h < H; h += 2) {   /* rows with (h + pad) & 1 == a */
                        const int w0 = (b - pad % 2 + 2) % 2;                 /* first column with (w + pad) & 1 == b */
                        if (w0 < W)
                            scatter2_add(din + ((size_t)c * H + h) * W + w0,
                                         dxph + (size_t)c * x->PW + (size_t)((h + pad) >> 1) * x->Wq + ((w0 + pad) >> 1),
                                         (W - w0 + 1) / 2);
                    }
            }
            wpk += (size_t)dc_round(C, DC_MR) * Kp;
            taps += Kp;
        }
}

/* Floats of the packed phase weights (the tap tables take Co·kh·kw more). */
static size_t s2_dx_wpk(const conv_geom *g) { return (size_t)dc_round(g->C, DC_MR) * g->Co * g->kh * g->kw; }

/* Per-thread floats: split input, dy transposed, padded dy, the phases' wide output. */
static size_t s2b_thread(const conv_geom *g) {
    s2_dxg x = s2_dx_of(g);
    return s2_of(g).xpad + (size_t)g->P * (size_t)dc_round(g->Co, 16) + x.pad + (size_t)dc_round(g->C, DC_MR) * x.PW;
}

/* Shared: the forward's tap table (K ints in floats' room), the phases'
 * packed weights and tap tables, the groups' partials. */
static size_t s2b_shared(const conv_geom *g) { return (size_t)g->K + s2_dx_wpk(g) + (size_t)g->Co * g->kh * g->kw; }
static size_t s2b_scratch(const conv_geom *g, int B, int threads) {
    return s2b_shared(g) + (size_t)dc_groups(B) * dc_partial(g) + (size_t)(threads > 0 ? threads : 1) * s2b_thread(g);
}

/* Stride 1: padded input (pad_in), the input gradient by direct_dx; stride
 * 2 (s2_backward): the phase-split input (s2_split) with the forward's tap
 * table, the input gradient by phases (s2_dx). The scratch layouts are
 * dc_bwd_thread's and s2b_thread's, the shared region's dc_job.wpk/taps. */
static void direct_bwd_part(void *arg, int t, int n) {
    const dc_job *j = arg;
    const rf_nn_run *r = j->r;
    const conv_geom *g = j->g;
    const rf_layer *L = r->L;
    const int s2 = g->s == 2;
    wide_geom w = s2 ? s2_of(g) : wide_of(g);
    const int small = g->Co <= DW_SMALL_CO, G = dc_groups(r->B);   /* stride 2: Co > DW_SMALL_CO (use_s2b) */
    const size_t ldc = (size_t)dc_round(g->Co, 16), pp = dc_partial(g);
    const size_t dyt = small ? (size_t)g->Co * (size_t)w.PW : (size_t)g->P * ldc;
    s2_dxg xg = s2 ? s2_dx_of(g) : (s2_dxg){0, 0, 0, 0, 0, 0, 0, 0};
    const size_t dpad = s2 ? xg.pad : dc_bwd_of(g).pad;
    float *xpad = j->part + (size_t)t * j->per, *dyT = xpad + w.xpad, *dypad = dyT + dyt, *dxwide = dypad + dpad;
    memset(xpad, 0, w.xpad * sizeof(float));
    memset(dyT, 0, dyt * sizeof(float));   /* dyT's lanes past Co, dyw's wide columns stay 0 */
    memset(dypad, 0, dpad * sizeof(float));
    dc_in xin = {xpad, g->C, g->kh, g->kw, w.Wp, w.plane, j->toff, {NULL, NULL, NULL}, {0, 0, 0}, 0};
    size_t g0, g1;
    rf_nn_span((size_t)G, t, n, &g0, &g1);
    for (size_t gi = g0; gi < g1; gi++) {
        float *dwp = j->partials + gi * pp, *dbp = dwp + pp - ldc;
        memset(dwp, 0, pp * sizeof(float));
        size_t s0, s1;
        rf_nn_span((size_t)r->B, (int)gi, G, &s0, &s1);
        for (size_t s = s0; s < s1; s++) {
            const float *dy = r->dout + s * L->out_size;
            (s2 ? s2_split : pad_in)(xpad, r->in + s * L->in_size, g, &w);
            if (L->ip[5]) dc_bias_grad(dbp, dy, g->Co, g->P);
            if (small) {
                dc_pad(dyT, dy, g->Co, g->OH, g->OW, (size_t)w.PW, w.Wp, 0, 0);
                dc_dweight_small(dwp, dyT, g, &xin, w.PW);
            } else {
                dc_transpose(dyT, ldc, dy, g->Co, g->P);
                dc_dweight(dwp, dyT, ldc, g, &xin);
            }
            if (!r->din) continue;
            if (s2)
                s2_dx(r->din + s * L->in_size, dy, g, &xg, j->wpk, j->dtaps, dypad, dxwide,
                      s + 1 < s1 ? r->in + (s + 1) * L->in_size : NULL, s + 1 < s1 ? dy + L->out_size : NULL, L->in_size,
                      L->out_size);
            else
                direct_dx(r, g, t, (int)s, (int)s1, dypad, dxwide, j->wpk);
        }
    }
}

/* The groups' partial sums (dc_partial each), in group order, then into
 * the weight and bias gradients (small: dc_dweight_small's lanes). */
static void dc_reduce(const rf_nn_run *r, const conv_geom *g, float *partials, int small) {
    const int G = dc_groups(r->B), Co = g->Co, K = g->K;
    const size_t ldc = (size_t)dc_round(Co, 16), pp = dc_partial(g);
    for (int gi = 1; gi < G; gi++) rf_nn_add(partials, partials + (size_t)gi * pp, pp);
    float *restrict dW = r->g[0];
    for (int co = 0; co < Co; co++)
        for (int k = 0; k < K; k++)
            dW[(size_t)co * K + k] +=
                small ? rf_nn_lanes_sum(partials + ((size_t)co * K + k) * 16) : partials[(size_t)k * ldc + co];
    if (r->L->ip[5])
        for (int co = 0; co < Co; co++) r->g[1][co] += partials[pp - ldc + (size_t)co];
}

/* Runs direct_bwd_part over the groups on the engine's threads, then
 * dc_reduce: the tail of direct_backward and s2_backward. */
static void dc_bwd_run(dc_job *j, int small) {
    const rf_nn_run *r = j->r;
    const conv_geom *g = j->g;
    const int G = dc_groups(r->B);
    double work = (double)r->B * (double)dc_round(g->Co, 16) * (double)g->K * (double)g->P * (r->din ? 2.0 : 1.0);
    int parts = rf_nn_parts(r->eng, work, 1 << 20);
    rf_nn_par(r->eng, parts < G ? parts : G, direct_bwd_part, j);
    dc_reduce(r, g, j->partials, small);
}

static void direct_backward(const rf_nn_run *r, const conv_geom *g) {
    const int small = g->Co <= DW_SMALL_CO, G = dc_groups(r->B), Co = g->Co;
    const size_t pp = dc_partial(g);
    float *partials = r->scratch + (size_t)dc_round(g->C, DC_MR) * Co * g->kh * g->kw;
    dc_job j = {r, g, r->scratch, partials + (size_t)G * pp, dc_bwd_thread(g), r->scratch, NULL, NULL, partials};
    if (r->din && j_dx_direct(g)) dc_pack_flip(j.shared, r->p[0], Co, g->C, g->kh, g->kw);
    dc_bwd_run(&j, small);
}

static void s2_backward(const rf_nn_run *r, const conv_geom *g) {
    const int G = dc_groups(r->B), K = g->K;
    const size_t pp = dc_partial(g);
    float *partials = r->scratch + s2b_shared(g);
    const float *wpk = r->scratch + K;
    const int *dtaps = (const int *)(const void *)(wpk + s2_dx_wpk(g));
    dc_job j = {r, g, r->scratch, partials + (size_t)G * pp, s2b_thread(g), wpk, (const int *)(const void *)r->scratch,
                dtaps, partials};
    wide_geom w = s2_of(g);
    s2_taps((int *)(void *)r->scratch, g, &w);
    if (r->din) {
        s2_dxg xg = s2_dx_of(g);
        s2_dx_pack(r->scratch + K, (int *)(void *)(r->scratch + K + s2_dx_wpk(g)), r->p[0], g, &xg);
    }
    dc_bwd_run(&j, 0);
}

/* Wide columns cost Co·(kw − 1) extra outputs per row of OH·K work; the
 * strided path costs K·OH short row copies. Wide wins while Co·(kw − 1) is
 * small (lenet-5, the 28×28 convs of conv-k); deep layers with many channels
 * (conv-4/6 at 14×14 and 7×7, 13-29% wasted columns) take the other path. */
static int use_wide(const conv_geom *g) { return g->s == 1 && g->Co * (g->kw - 1) <= 160; }

static rf_status conv_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_IMAGE)));
    int k, kh, kw;
    RF_TRY(rf_nn_int(b, j, "out", -1, 1, 1 << 20, &L->ip[0]));
    if (L->ip[0] < 0) return rf_nn_err(b, RF_ERR_SPEC, "missing \"out\"");
    RF_TRY(rf_nn_int(b, j, "kernel", 3, 1, 1024, &k));
    RF_TRY(rf_nn_int(b, j, "kh", k, 1, 1024, &kh));
    RF_TRY(rf_nn_int(b, j, "kw", k, 1, 1024, &kw));
    L->ip[1] = kh; L->ip[2] = kw;
    RF_TRY(rf_nn_int(b, j, "stride", 1, 1, 1024, &L->ip[3]));
    RF_TRY(rf_nn_int(b, j, "padding", 0, 0, 1024, &L->ip[4]));
    RF_TRY(rf_nn_int(b, j, "bias", 1, 0, 1, &L->ip[5]));
    int C = L->in.d[0], H = L->in.d[1], W = L->in.d[2], s = L->ip[3], p = L->ip[4];
    if (H + 2 * p < kh || W + 2 * p < kw)
        return rf_nn_err(b, RF_ERR_SHAPE, "kernel %dx%d larger than padded input %dx%d", kh, kw, H + 2 * p, W + 2 * p);
    rf_nn_set_out(L, L->ip[0], (H + 2 * p - kh) / s + 1, (W + 2 * p - kw) / s + 1, RF_NN_IMAGE);
    RF_TRY(rf_nn_param(b, L, "weight", RF_P_WEIGHT, 4, L->ip[0], C, kh, kw));
    if (L->ip[5]) RF_TRY(rf_nn_param(b, L, "bias", RF_P_BIAS, 1, L->ip[0], 0, 0, 0));
    return RF_OK;
}

/* ---- tiny maps: the convolution as one dense product ------------------------
 * On a map so small that every output position sees every input position
 * through some tap (VGG-11's 2x2 maps, 3x3 kernel, padding 1; any 1x1 map),
 * the layer is a linear layer whose weight matrix holds each tap once:
 *   Y[n, co·P + p] = bias[co] + Σ_{c, q} X[n, c·HW + q] · Wd[co·P + p, c·HW + q],
 *   Wd[co·P + p, c·HW + q] = w[co, c, tap(p, q)]   (0 where no tap joins p and q),
 * on the NCHW tensors as they are: X is [B, C·HW], Y is [B, Co·P]. Its
 * multiplies are exactly the non-zero taps, where Winograd F(2x2, 3x3) has
 * one 4x4 tile per plane whose transforms cost as much as its 16 products
 * (vgg-11's 2x2 layers ran at 120 GFLOP/s effective, 19% of a step) and
 * im2col multiplies 5 of 9 taps by padding zeros. Backward: dX += dY · Wd,
 * dWd = dYᵀ · X (into Wd's buffer once dX is done), then each tap's
 * gradient is the sum of its (p, q) entries in p order (dense_fold). The
 * products are rf_gemm's (one fma chain per element), the expansion copies
 * and the fold adds in a fixed order: the same bits on every ISA and thread
 * count. */
#define DENSE_MAX_FLOATS ((size_t)1 << 23)   /* Wd at most 32 MB (vgg-11: 16 MB) */

static size_t dense_numel(const conv_geom *g) {
    return (size_t)g->Co * g->P * ((size_t)g->C * g->H * g->W);
}
/* Non-zero entries of Wd per (co, c): Σ_p (taps of p inside the input). */
static size_t dense_taps(const conv_geom *g) {
    size_t rows = 0, cols = 0;
    for (int oh = 0; oh < g->OH; oh++)
        for (int ki = 0; ki < g->kh; ki++) { int h = oh * g->s - g->pad + ki; rows += h >= 0 && h < g->H; }
    for (int ow = 0; ow < g->OW; ow++)
        for (int kj = 0; kj < g->kw; kj++) { int w = ow * g->s - g->pad + kj; cols += w >= 0 && w < g->W; }
    return rows * cols;
}
static int dense_fits(const conv_geom *g) { return dense_numel(g) <= DENSE_MAX_FLOATS; }
/* Auto: only where Wd has no zero (the product multiplies no padding). */
static int use_dense(const conv_geom *g, const rf_engine *e) {
    if (!dense_fits(g)) return 0;
    int p = e->v[RF_ENGINE_CONV];
    if (p == RF_NN_CONV_DENSE) return 1;
    return (p == RF_NN_CONV_AUTO || p == RF_NN_CONV_AUTO2 || p == RF_NN_CONV_AUTO3) && (size_t)g->H * g->W * g->P == dense_taps(g);
}

typedef struct dense_job { const conv_geom *g; float *wd, *dw; const float *w; } dense_job;

/* Output channels [co0, co1) of Wd from w, or (dw != NULL) their taps'
 * gradients += the dWd entries, p ascending. A row's (q, tap) pairs are
 * collected up to DENSE_PAIRS at a time and applied to every input channel
 * (short runs inside one channel's HW floats and its kh·kw weights); a row
 * meets each tap at most once per channel. */
#define DENSE_PAIRS 32
static void dense_part(void *arg, int t, int n) {
    const dense_job *j = arg;
    const conv_geom *g = j->g;
    size_t HW = (size_t)g->H * g->W, Kd = (size_t)g->C * HW, kk = (size_t)g->kh * g->kw, co0, co1;
    rf_nn_span((size_t)g->Co, t, n, &co0, &co1);
    for (size_t co = co0; co < co1; co++)
        for (int p = 0; p < g->P; p++) {
            float *row = j->wd + (co * g->P + (size_t)p) * Kd;
            const float *wsrc = j->w + co * g->C * kk;
            float *wdst = j->dw ? j->dw + co * g->C * kk : NULL;
            int h0 = (p / g->OW) * g->s - g->pad, w0 = (p % g->OW) * g->s - g->pad;
            if (!j->dw) memset(row, 0, Kd * sizeof(float));
            size_t q = 0;
            while (q < HW) {
                size_t pq[DENSE_PAIRS], pt[DENSE_PAIRS];
                int np = 0;
                for (; q < HW && np < DENSE_PAIRS; q++) {
                    int ki = (int)(q / (size_t)g->W) - h0, kj = (int)(q % (size_t)g->W) - w0;
                    if (ki < 0 || ki >= g->kh || kj < 0 || kj >= g->kw) continue;
                    pq[np] = q;
                    pt[np++] = (size_t)ki * g->kw + (size_t)kj;
                }
                for (int c = 0; c < g->C; c++) {
                    float *rc = row + (size_t)c * HW;
                    if (wdst) for (int e = 0; e < np; e++) wdst[(size_t)c * kk + pt[e]] += rc[pq[e]];
                    else for (int e = 0; e < np; e++) rc[pq[e]] = wsrc[(size_t)c * kk + pt[e]];
                }
            }
        }
}

static void dense_pass(const rf_engine *e, const conv_geom *g, float *wd, const float *w, float *dw) {
    dense_job j = {g, wd, dw, w};
    int parts = rf_nn_parts(e, (double)dense_numel(g), 1 << 16);
    rf_nn_par(e, parts < g->Co ? parts : g->Co, dense_part, &j);
}

static void dense_forward(const rf_nn_run *r, const conv_geom *g, const float *bias) {
    int Kd = g->C * g->H * g->W, Nd = g->Co * g->P;
    dense_pass(r->eng, g, r->scratch, r->p[0], NULL);
    if (bias)
        for (int n = 0; n < r->B; n++)
            for (int co = 0; co < g->Co; co++)
                for (int p = 0; p < g->P; p++) r->out[(size_t)n * Nd + (size_t)co * g->P + (size_t)p] = bias[co];
    rf_gemm_engine(r->eng, 0, 1, r->B, Nd, Kd, r->in, Kd, r->scratch, Kd, bias != NULL, r->out, Nd);
}

static void dense_backward(const rf_nn_run *r, const conv_geom *g, float *dbias) {
    int Kd = g->C * g->H * g->W, Nd = g->Co * g->P;
    if (r->din) {
        dense_pass(r->eng, g, r->scratch, r->p[0], NULL);
        rf_gemm_engine(r->eng, 0, 0, r->B, Kd, Nd, r->dout, Nd, r->scratch, Kd, 1, r->din, Kd);
    }
    rf_gemm_engine(r->eng, 1, 0, Nd, Kd, r->B, r->dout, Nd, r->in, Kd, 0, r->scratch, Kd);
    dense_pass(r->eng, g, r->scratch, NULL, r->g[0]);
    if (dbias)
        for (int co = 0; co < g->Co; co++) {
            float s = 0.0f;
            for (int n = 0; n < r->B; n++)
                for (int p = 0; p < g->P; p++) s += r->dout[(size_t)n * Nd + (size_t)co * g->P + (size_t)p];
            dbias[co] += s;
        }
}

/* Winograd F(2x2, 3x3) or F(4x4, 3x3) (conv_winograd.c) for 3x3 stride-1 layers with pad
 * 0 or 1 and at least WINO_MIN_C input and output channels: with fewer, its
 * 16 GEMMs have K = C or N = Co too small, and the direct conv wins:
 * ResNet-20's 16-channel stage trained at 320-340 samples per CPU second
 * with Winograd, 380-390 with the direct conv (Zen 5, batch 128, 32x32x3;
 * 32 and 64 as the bound measured the same). The path can be forced either
 * way with the engine option "conv" (winograd, direct, gemm); "winograd"
 * still needs a 3x3 stride-1 layer. The choice depends on the layer's shape
 * and that option only, never on the ISA: every path gives the same bits on
 * every ISA, so a task gives the same checkpoint on any node. */
#define WINO_MIN_C 32
/* The Winograd tile size a layer runs with: 0 (not Winograd), 2 (F(2x2,
 * 3x3)) or 4 (F(4x4, 3x3), 1.78x fewer multiplies than F(2x2); issue 22,
 * session 4). "auto" takes F(4x4) for maps of at most WINO4_MAX_OW outputs
 * a side: its AVX-512 transforms (conv_winograd4.c) hold a padded row of a
 * tile row in two vectors (4·TW + 2 <= 32 columns); wider maps keep
 * F(2x2) (its transforms are vectorised for any width). Measured (Zen 5,
 * probe, thread CPU time, a step of batch 128): conv-6 391 -> 289-310 ms,
 * conv-4 224 -> 203-205 ms, vgg-11 625 -> 470-532 ms, resnet-20 236-262 ->
 * 227-237 ms. The rule reads the shape only, so the choice (and the bits)
 * do not depend on the ISA; "winograd" forces F(2x2), "winograd4" F(4x4),
 * "auto2" is the rule before F(4x4) (F(2x2) on every Winograd layer: the
 * floats of checkpoints trained before). */
#define WINO4_MAX_OW 28
static int wino4_rule(const conv_geom *g) { return g->OW <= WINO4_MAX_OW && g->OH <= WINO4_MAX_OW; }
static int use_wino(const conv_geom *g, const rf_engine *e) {
    if (!rf_nn_wino_fits(g->kh, g->kw, g->s, g->pad)) return 0;
    int p = e->v[RF_ENGINE_CONV];
    if (p == RF_NN_CONV_WINOGRAD) return 2;
    if (p == RF_NN_CONV_WINOGRAD4) return 4;
    if ((p != RF_NN_CONV_AUTO && p != RF_NN_CONV_AUTO2 && p != RF_NN_CONV_AUTO3) || g->C < WINO_MIN_C || g->Co < WINO_MIN_C)
        return 0;
    return p != RF_NN_CONV_AUTO2 && wino4_rule(g) ? 4 : 2;   /* RF_ENGINE_CONV_AUTO_RULE says this in metrics */
}

static size_t conv_scratch(const rf_layer *L, int B, const rf_engine *e) {
    int threads = rf_nn_threads(e);
    conv_geom g = conv_geom_of(L);
    size_t cols = (size_t)conv_chunk(&g, B) * g.P;
    /* columns + d(columns), or + Y rows (override); + the feature-major
     * override's row padding (rf_feat_ld) */
    size_t s = cols * (2 * (size_t)g.K + (size_t)g.Co) + 16 * ((size_t)g.K + (size_t)g.Co);
    size_t tf = (size_t)(threads > 0 ? threads : 1) * im_thread(&g, conv_chunk(&g, B));   /* forward's parts */
    if (tf > s) s = tf;
    size_t w = use_wide(&g) ? wide_scratch(&g, B) : 0;
    size_t d = direct_fits(&g) ? direct_scratch(&g, B, threads) : g.s == 2 ? s2_scratch(&g, threads) : 0;
    if (g.s == 2 && s2b_scratch(&g, B, threads) > d) d = s2b_scratch(&g, B, threads);   /* conv=auto3's backward */
    /* Winograd whenever it fits: the path may be forced after allocation. */
    size_t wn = 0;
    for (int m = 2; m <= 4 && rf_nn_wino_fits(g.kh, g.kw, g.s, g.pad); m += 2) {
        size_t x = rf_nn_wino_scratch(g.C, g.H, g.W, g.Co, g.pad, m, B, threads);
        if (x > wn) wn = x;
    }
    if (w > s) s = w;
    if (wn > s) s = wn;
    if (dense_fits(&g) && dense_numel(&g) > s) s = dense_numel(&g);   /* may be forced after allocation */
    return s > d ? s : d;
}

/* ---- the im2col path over threads -------------------------------------------
 * Forward: chunks are independent; parts take whole chunks, each with its
 * own columns and product buffer (IM_THREAD floats) and the GEMM workspace
 * of its part. Backward: see conv_backward. */
typedef struct im2col_job {
    const rf_nn_run *r;
    const conv_geom *g;
    int chunk, n0, ns;
    float *col, *dtmp, *dcol, *dbias;
    const float *bias;
    int step;   /* backward: 0 columns + gathers, 1 col2im */
} im2col_job;

static void im2col_fwd_part(void *arg, int t, int n) {
    const im2col_job *j = arg;
    const rf_nn_run *r = j->r;
    const conv_geom *g = j->g;
    const rf_layer *L = r->L;
    int chunks = (r->B + j->chunk - 1) / j->chunk;
    size_t c0, c1;
    rf_nn_span((size_t)chunks, t, n, &c0, &c1);
    float *col = r->scratch + (size_t)t * im_thread(g, j->chunk);
    const rf_engine pe = rf_nn_part_engine(r->eng, t);
    for (size_t c = c0; c < c1; c++) {
        int n0 = (int)c * j->chunk, ns = r->B - n0 < j->chunk ? r->B - n0 : j->chunk;
        size_t cols = (size_t)ns * g->P;
        float *tmp = col + cols * g->K;
        im2col_t(col, r->in + (size_t)n0 * L->in_size, ns, g, cols);
        rf_gemm_engine(&pe, 0, 0, g->Co, (int)cols, g->K, r->p[0], g->K, col, (int)cols, 0, tmp, (int)cols);
        scatter_bias(r->out + (size_t)n0 * L->out_size, tmp, j->bias, ns, g->Co, g->P, cols);
    }
}

static void im2col_forward(const rf_nn_run *r, const conv_geom *g, int chunk, const float *bias) {
    im2col_job j = {r, g, chunk, 0, 0, NULL, NULL, NULL, NULL, bias, 0};
    int chunks = (r->B + chunk - 1) / chunk;
    int parts = rf_nn_parts(r->eng, (double)r->B * g->P * g->K * g->Co, 1 << 20);
    rf_nn_par(r->eng, parts < chunks ? parts : chunks, im2col_fwd_part, &j);
}

static void im2col_bwd_part(void *arg, int t, int n) {
    const im2col_job *j = arg;
    const rf_nn_run *r = j->r;
    const conv_geom *g = j->g;
    const rf_layer *L = r->L;
    size_t cols = (size_t)j->ns * g->P, a0, a1;
    if (j->step == 1) {
        rf_nn_span((size_t)g->C, t, n, &a0, &a1);
        col2im_c_add(r->din + (size_t)j->n0 * L->in_size, j->dcol, j->ns, g, (int)a0, (int)a1);
        return;
    }
    rf_nn_span((size_t)g->C, t, n, &a0, &a1);
    im2col_c(j->col, r->in + (size_t)j->n0 * L->in_size, j->ns, g, cols, (int)a0, (int)a1);
    rf_nn_span((size_t)g->Co, t, n, &a0, &a1);
    gather_grad_c(j->dtmp, j->dbias, r->dout + (size_t)j->n0 * L->out_size, j->ns, g->Co, g->P, (int)a0, (int)a1);
}

static rf_status conv_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    conv_geom g = conv_geom_of(L);
    int chunk = conv_chunk(&g, r->B);
    const float *bias = L->ip[5] ? r->p[1] : NULL;
    if (!rf_nn_overridden(r)) {
        if (use_dense(&g, r->eng)) { dense_forward(r, &g, bias); return RF_OK; }
        int wm = use_wino(&g, r->eng);
        if (wm) {
            rf_nn_wino_forward(r->eng, r->out, r->in, r->p[0], bias, r->B, g.C, g.H, g.W, g.Co, g.pad, wm,
                               r->scratch);
            return RF_OK;
        }
        if (use_direct(&g, r->eng)) { direct_forward(r, &g); return RF_OK; }
        if (use_wide(&g)) { wide_forward(r, &g); return RF_OK; }
        if (use_s2(&g, r->eng)) { direct_forward(r, &g); return RF_OK; }
        /* training and plain inference: the chunks split over threads */
        im2col_forward(r, &g, chunk, bias);
        return RF_OK;
    }
    /* inference through an override (sparse, int8): chunk by chunk */
    for (int n0 = 0; n0 < r->B; n0 += chunk) {
        int ns = r->B - n0 < chunk ? r->B - n0 : chunk;
        size_t cols = (size_t)ns * g.P;
        const float *x = r->in + (size_t)n0 * L->in_size;
        float *y = r->out + (size_t)n0 * L->out_size;
        float *col = r->scratch, *tmp = r->scratch + cols * g.K;
        if (L->infer_gemm_feat) {
            size_t ld = (size_t)rf_feat_ld((int)cols);
            im2col_t(col, x, ns, &g, ld);
            RF_TRY(L->infer_gemm_feat(L->infer_state, col, col + ld * g.K, (int)cols, (int)ld));
            scatter_bias(y, col + ld * g.K, NULL, ns, g.Co, g.P, ld);   /* the override added the bias */
            continue;
        }
        /* rows = the transposed column matrix, built in the Y area first
         * (free until the product; the scratch holds 2K + Co floats per
         * column): row copies plus a tiled transpose (rf_nn_transpose)
         * measured faster than gathering each row element by element,
         * and the result goes back in tiles too: element by element the
         * strided side missed L1 on every store (conv-2, 90% sparse,
         * batch 64: 66 -> 41 ms for the whole model on this path) */
        im2col_t(tmp, x, ns, &g, cols);
        rf_nn_transpose(col, tmp, g.K, (int)cols, (int)cols);
        RF_TRY(L->infer_gemm(L->infer_state, col, tmp, (int)cols));
        for (int n = 0; n < ns; n++)
            rf_nn_transpose(y + (size_t)n * L->out_size, tmp + (size_t)n * g.P * g.Co, g.P, g.Co, g.Co);
    }
    return RF_OK;
}

/* The Winograd tile size r's forward and backward take (0: another path). */
static int conv_wino_of(const rf_nn_run *r, const conv_geom *g) {
    if (rf_nn_overridden(r) || use_dense(g, r->eng)) return 0;
    return use_wino(g, r->eng);
}

rf_status rf_nn_conv_forward_relu(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    conv_geom g = conv_geom_of(L);
    int wm = conv_wino_of(r, &g);
    if (wm) {
        rf_nn_wino_forward_relu(r->eng, r->out, r->in, r->p[0], L->ip[5] ? r->p[1] : NULL, r->B, g.C, g.H, g.W, g.Co,
                                g.pad, wm, 1, r->scratch);
        return RF_OK;
    }
    RF_TRY(conv_forward(r));
    rf_nn_relu_inplace(r->eng, r->out, (size_t)r->B * L->out_size);
    return RF_OK;
}

static void conv_backward(const rf_nn_run *r);
void rf_nn_conv_backward_relu(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    conv_geom g = conv_geom_of(L);
    int wm = use_dense(&g, r->eng) ? 0 : use_wino(&g, r->eng), write_dx = (r->fresh & 1u) && r->din;
    if (wm) {
        rf_nn_wino_backward_relu(r->eng, r->g[0], L->ip[5] ? r->g[1] : NULL, r->din, write_dx, r->dout, r->out,
                                 r->dself, r->in, r->p[0], r->B, g.C, g.H, g.W, g.Co, g.pad, wm, r->scratch);
        return;
    }
    /* the other paths: conv_backward takes r->fresh as it is (the direct
     * kernel writes din, the rest zero it first) */
    rf_nn_run c = *r;
    rf_nn_relu_grad_write(r->eng, r->dself, r->dout, r->out, (size_t)r->B * L->out_size);
    c.dout = r->dself;
    conv_backward(&c);
}

static void conv_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    conv_geom g = conv_geom_of(L);
    int chunk = conv_chunk(&g, r->B);
    float *dbias = L->ip[5] ? r->g[1] : NULL;
    const int dense = use_dense(&g, r->eng), wm = dense ? 0 : use_wino(&g, r->eng);
    /* A fresh input gradient (rf_nn_run.fresh, model.c): the direct kernel's
     * input gradient writes it (direct_dx); the other paths add into it, so
     * it is zeroed here first. */
    if ((r->fresh & 1) && r->din && (dense || wm || !use_direct(&g, r->eng) || !j_dx_direct(&g)))
        rf_nn_zero(r->eng, r->din, (size_t)r->B * L->in_size);
    if (dense) { dense_backward(r, &g, dbias); return; }
    if (wm) {
        rf_nn_wino_backward(r->eng, r->g[0], dbias, r->din, r->dout, r->in, r->p[0], r->B, g.C, g.H, g.W, g.Co, g.pad,
                            wm, r->scratch);
        return;
    }
    if (use_direct(&g, r->eng)) { direct_backward(r, &g); return; }
    if (use_s2b(&g, r->eng)) { s2_backward(r, &g); return; }
    if (use_wide(&g)) { wide_backward(r, &g); return; }
    /* dW is a chain of products over the chunks in order: chunks stay in
     * order, and each chunk's column copies (over input channels), gradient
     * gathers and bias sums (over output channels) and products split. */
    im2col_job j = {r, &g, 0, 0, 0, NULL, NULL, NULL, dbias, NULL, 0};
    int parts = rf_nn_parts(r->eng, (double)chunk * g.P * (g.K + g.Co), 1 << 14);
    for (int n0 = 0; n0 < r->B; n0 += chunk) {
        int ns = r->B - n0 < chunk ? r->B - n0 : chunk;
        size_t cols = (size_t)ns * g.P;
        float *col = r->scratch, *dtmp = col + cols * g.K, *dcol = dtmp + cols * g.Co;
        j.n0 = n0; j.ns = ns; j.col = col; j.dtmp = dtmp; j.dcol = dcol;
        j.step = 0;
        rf_nn_par(r->eng, parts, im2col_bwd_part, &j);
        rf_gemm_engine(r->eng, 0, 1, g.Co, g.K, (int)cols, dtmp, (int)cols, col, (int)cols, 1, r->g[0], g.K);
        if (!r->din) continue;
        rf_gemm_engine(r->eng, 1, 0, g.K, (int)cols, g.Co, r->p[0], g.K, dtmp, (int)cols, 0, dcol, (int)cols);
        j.step = 1;
        rf_nn_par(r->eng, parts < g.C ? parts : g.C, im2col_bwd_part, &j);
    }
}

static const char *const conv_keys[] = {"out", "kernel", "kh", "kw", "stride", "padding", "bias", NULL};
const rf_nn_op rf_nn_op_conv2d = {"conv2d", conv_keys, conv_setup, conv_scratch, conv_forward, conv_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_PRODUCT, 0, RF_LT_PRODUCT | RF_LT_FEAT | RF_LT_ROWS_OUT | RF_LT_PRUNABLE | RF_LT_QUANT};

/* ---- patch embedding (Dosovitskiy et al. 2021, eq. 1) ----------------------
 * z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos: a conv with kernel = stride =
 * patch, tokens in row-major patch order, then an optional class token in
 * front and an optional learned position embedding. Parameters, in order:
 * proj.weight [D, C, p, p], proj.bias [D], cls_token [1, 1, D], pos_embed
 * [1, T, D] (the last two top-level, as timm names them). */
typedef struct patch_geom { int C, H, W, p, gh, gw, Np, K, D, cls, pos, T; } patch_geom;

static patch_geom patch_geom_of(const rf_layer *L) {
    patch_geom g = {L->in.d[0], L->in.d[1], L->in.d[2], L->ip[1], 0, 0, 0, 0, L->ip[0], L->ip[2], L->ip[3], 0};
    g.gh = g.H / g.p; g.gw = g.W / g.p; g.Np = g.gh * g.gw;
    g.K = g.C * g.p * g.p;
    g.T = g.Np + g.cls;
    return g;
}

/* cols[B·Np, K]; each row one patch in (c, ki, kj) order, matching proj.weight. */
static void patch_cols(float *cols, const float *x, int B, const patch_geom *g) {
    for (int n = 0; n < B; n++)
        for (int pi = 0; pi < g->gh; pi++)
            for (int pj = 0; pj < g->gw; pj++) {
                float *d = cols + ((size_t)n * g->Np + (size_t)pi * g->gw + pj) * g->K;
                for (int c = 0; c < g->C; c++)
                    for (int ki = 0; ki < g->p; ki++) {
                        const float *s = x + (((size_t)n * g->C + c) * g->H + (size_t)(pi * g->p + ki)) * g->W + (size_t)pj * g->p;
                        memcpy(d, s, (size_t)g->p * sizeof(float));
                        d += g->p;
                    }
            }
}

static void patch_cols_add_back(float *dx, const float *dcols, int B, const patch_geom *g) {
    for (int n = 0; n < B; n++)
        for (int pi = 0; pi < g->gh; pi++)
            for (int pj = 0; pj < g->gw; pj++) {
                const float *d = dcols + ((size_t)n * g->Np + (size_t)pi * g->gw + pj) * g->K;
                for (int c = 0; c < g->C; c++)
                    for (int ki = 0; ki < g->p; ki++) {
                        float *s = dx + (((size_t)n * g->C + c) * g->H + (size_t)(pi * g->p + ki)) * g->W + (size_t)pj * g->p;
                        for (int kj = 0; kj < g->p; kj++) s[kj] += d[kj];
                        d += g->p;
                    }
            }
}

static rf_status patch_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_IMAGE)));
    RF_TRY(rf_nn_int(b, j, "dim", -1, 1, 1 << 20, &L->ip[0]));
    if (L->ip[0] < 0) return rf_nn_err(b, RF_ERR_SPEC, "missing \"dim\"");
    RF_TRY(rf_nn_int(b, j, "patch", -1, 1, 1 << 16, &L->ip[1]));
    if (L->ip[1] < 0) return rf_nn_err(b, RF_ERR_SPEC, "missing \"patch\"");
    RF_TRY(rf_nn_int(b, j, "cls", 1, 0, 1, &L->ip[2]));
    RF_TRY(rf_nn_int(b, j, "pos", 1, 0, 1, &L->ip[3]));
    patch_geom g = patch_geom_of(L);
    if (g.H % g.p || g.W % g.p)
        return rf_nn_err(b, RF_ERR_SHAPE, "patch %d does not divide the %dx%d input", g.p, g.H, g.W);
    rf_nn_set_out(L, g.T, g.D, 1, RF_NN_TOKENS);
    RF_TRY(rf_nn_param(b, L, "proj.weight", RF_P_WEIGHT, 4, g.D, g.C, g.p, g.p));
    RF_TRY(rf_nn_param(b, L, "proj.bias", RF_P_BIAS, 1, g.D, 0, 0, 0));
    if (g.cls) RF_TRY(rf_nn_param(b, L, "/cls_token", RF_P_EMBED, 3, 1, 1, g.D, 0));
    if (g.pos) RF_TRY(rf_nn_param(b, L, "/pos_embed", RF_P_EMBED, 3, 1, g.T, g.D, 0));
    return RF_OK;
}

static size_t patch_scratch(const rf_layer *L, int B, const rf_engine *e) {
    (void)e;
    patch_geom g = patch_geom_of(L);
    return (size_t)B * g.Np * ((size_t)g.K + (size_t)g.D);
}

/* The patch embedding's passes split over the engine's threads (vit-tiny:
 * 0.23 ms a step ran serially on two threads): step 0 the columns, 1 the
 * output rows (class token, + position embeddings), 3 the columns'
 * gradient added back: by samples; step 2 the backward's token gradients
 * (dY rows, the position and class embeddings' sums): by tokens, each
 * token's sum over the batch in sample order as before. Same bits. */
typedef struct patch_job {
    const rf_nn_run *r;
    const patch_geom *g;
    float *cols, *Y;            /* Y: the projection's output (forward) or dY (backward) */
    const float *cls, *pos;
    float *dcls, *dpos;
    int step;
} patch_job;

static void patch_part(void *arg, int t, int n) {
    const patch_job *j = arg;
    const rf_nn_run *r = j->r;
    const patch_geom *g = j->g;
    const rf_layer *L = r->L;
    size_t a, b;
    rf_nn_span(j->step == 2 ? (size_t)g->T : (size_t)r->B, t, n, &a, &b);
    if (j->step == 0) {
        patch_cols(j->cols + a * g->Np * g->K, r->in + a * L->in_size, (int)(b - a), g);
    } else if (j->step == 3) {
        patch_cols_add_back(r->din + a * L->in_size, j->cols + a * g->Np * g->K, (int)(b - a), g);
    } else if (j->step == 1) {
        for (size_t s = a; s < b; s++) {
            float *o = r->out + s * L->out_size;
            for (int tk = 0; tk < g->T; tk++) {
                float *ot = o + (size_t)tk * g->D;
                const float *src = tk < g->cls ? j->cls : j->Y + (s * g->Np + (size_t)(tk - g->cls)) * g->D;
                const float *pe = j->pos ? j->pos + (size_t)tk * g->D : NULL;
                for (int d = 0; d < g->D; d++) ot[d] = src[d] + (pe ? pe[d] : 0.0f);
            }
        }
    } else {
        for (int s = 0; s < r->B; s++)
            for (size_t tk = a; tk < b; tk++) {
                const float *ot = r->dout + (size_t)s * L->out_size + tk * g->D;
                if (j->dpos) for (int d = 0; d < g->D; d++) j->dpos[tk * g->D + d] += ot[d];
                if ((int)tk < g->cls) { for (int d = 0; d < g->D; d++) j->dcls[d] += ot[d]; continue; }
                memcpy(j->Y + ((size_t)s * g->Np + (tk - (size_t)g->cls)) * g->D, ot, (size_t)g->D * sizeof(float));
            }
    }
}

static rf_status patch_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    patch_geom g = patch_geom_of(L);
    float *cols = r->scratch, *Y = r->scratch + (size_t)r->B * g.Np * g.K;
    const float *cls = g.cls ? r->p[2] : NULL, *pos = g.pos ? r->p[2 + g.cls] : NULL;
    patch_job j = {r, &g, cols, Y, cls, pos, NULL, NULL, 0};
    int parts = rf_nn_parts(r->eng, (double)r->B * L->in_size, 1 << 15);
    rf_nn_par(r->eng, parts, patch_part, &j);
    int M = r->B * g.Np;
    if (rf_nn_overridden(r)) RF_TRY(L->infer_gemm(L->infer_state, cols, Y, M));
    else rf_nn_linear_fwd(r->eng, Y, cols, r->p[0], r->p[1], M, g.D, g.K, g.K, g.D);
    j.step = 1;
    rf_nn_par(r->eng, parts, patch_part, &j);
    return RF_OK;
}

static void patch_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    patch_geom g = patch_geom_of(L);
    float *cols = r->scratch, *dY = r->scratch + (size_t)r->B * g.Np * g.K;
    float *dcls = g.cls ? r->g[2] : NULL, *dpos = g.pos ? r->g[2 + g.cls] : NULL;
    patch_job j = {r, &g, cols, dY, NULL, NULL, dcls, dpos, 2};
    int parts = rf_nn_parts(r->eng, (double)r->B * L->in_size, 1 << 15);
    rf_nn_par(r->eng, parts < g.T ? parts : g.T, patch_part, &j);
    int M = r->B * g.Np;
    j.step = 0;
    rf_nn_par(r->eng, parts, patch_part, &j);
    rf_nn_linear_bwd(r->eng, NULL, r->g[0], r->g[1], dY, cols, r->p[0], M, g.D, g.K, g.K, g.D);
    if (r->din) {
        /* The columns are no longer needed: reuse them for d(columns). */
        rf_gemm_engine(r->eng, 0, 0, M, g.K, g.D, dY, g.D, r->p[0], g.K, 0, cols, g.K);
        j.step = 3;
        rf_nn_par(r->eng, parts, patch_part, &j);
    }
}

/* Feature-major (model.c runs; reads the image row-major): the patch
 * columns transposed, colsT [K][ldp] (column n·Np + patch), the product
 * YT = W · colsT, then the tokens [D][ld] with the class token and the
 * position embedding added as patch_forward adds them. */
static long patch_feat(const rf_layer *L) {
    patch_geom g = patch_geom_of(L);
    return rf_nn_feat_product(L, g.K, g.D, g.Np);
}

static size_t patch_scratch_feat(const rf_layer *L, int B) {
    patch_geom g = patch_geom_of(L);
    return ((size_t)g.K + (size_t)g.D) * (size_t)rf_feat_ld(B * g.Np);
}

static rf_status patch_forward_feat(const rf_nn_feat *f) {
    const rf_nn_run *r = f->r;
    const rf_layer *L = r->L;
    patch_geom g = patch_geom_of(L);
    int Mp = r->B * g.Np, ldp = rf_feat_ld(Mp);
    float *colsT = f->scratch, *YT = f->scratch + (size_t)g.K * ldp;
    const float *cls = g.cls ? r->p[2] : NULL, *pos = g.pos ? r->p[2 + g.cls] : NULL;
    for (int n = 0; n < r->B; n++)
        for (int c = 0; c < g.C; c++)
            for (int ki = 0; ki < g.p; ki++)
                for (int pi = 0; pi < g.gh; pi++) {
                    const float *s = f->in + (((size_t)n * g.C + c) * g.H + (size_t)(pi * g.p + ki)) * g.W;
                    float *d = colsT + (size_t)((c * g.p + ki) * g.p) * ldp + (size_t)n * g.Np + (size_t)pi * g.gw;
                    for (int pj = 0; pj < g.gw; pj++)
                        for (int kj = 0; kj < g.p; kj++) d[(size_t)kj * ldp + pj] = s[pj * g.p + kj];
                }
    RF_TRY(rf_nn_product_feat(L->infer_gemm ? L->infer_gemm_feat : NULL, L->infer_state, YT, colsT, r->p[0],
                              r->p[1], Mp, g.D, g.K, ldp));
    for (int d = 0; d < g.D; d++) {
        float *o = f->out + (size_t)d * f->ldo;
        const float *y = YT + (size_t)d * ldp;
        for (int n = 0; n < r->B; n++)
            for (int t = 0; t < g.T; t++) {
                float v = t < g.cls ? cls[d] : y[(size_t)n * g.Np + (size_t)(t - g.cls)];
                o[(size_t)n * g.T + t] = v + (pos ? pos[(size_t)t * g.D + d] : 0.0f);
            }
    }
    return RF_OK;
}

static const char *const patch_keys[] = {"dim", "patch", "cls", "pos", NULL};
const rf_nn_op rf_nn_op_patch_embed = {"patch_embed", patch_keys, patch_setup, patch_scratch, patch_forward,
                                       patch_backward, patch_feat, patch_forward_feat, patch_scratch_feat,
                                       1, RF_NN_CONN_ALL, 0, RF_LT_PRODUCT | RF_LT_ROWS | RF_LT_FEAT | RF_LT_PRUNABLE | RF_LT_QUANT};
