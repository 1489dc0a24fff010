/* 2-D convolution and ViT patch embedding, both as im2col + sgemm.
 *
 * Training (and plain inference) use the Caffe orientation, columns
 * colT[K, g·P] for a chunk of g samples (K = Cin·kh·kw, P = positions), and
 * one GEMM W[Cout, K] · colT per chunk. Stride-1 layers with few channels
 * use "wide" columns (below: one contiguous copy per column row); the rest
 * copy row runs into colT and scatter the GEMM's [Cout, g·P] result into
 * NCHW. Backward recomputes the columns (cheaper than keeping K·P floats per
 * sample): dW += dy · colT^T, dcolT = W^T · dy, then col2im. With an inference override (rf_layer.infer_gemm) the columns are built as
 * rows X[g·P, K] instead, the layout the override's contract fixes, and the
 * result Y[g·P, Cout] is transposed back to NCHW. */
#include "nn/layers.h"

#include <cblas.h>
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

/* colT[K, ns·P] from samples x[ns, C, H, W]. */
RF_NN_VEC static void im2col_t(float *colT, const float *x, int ns, const conv_geom *g) {
    size_t ld = (size_t)ns * g->P;
    for (int c = 0; c < g->C; c++)
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
RF_NN_VEC static void col2im_t_add(float *dx, const float *dcolT, int ns, const conv_geom *g) {
    size_t ld = (size_t)ns * g->P;
    for (int c = 0; c < g->C; c++)
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

/* Rows layout X[ns·P, K] for the inference override. */
static void im2col_rows(float *X, const float *x, int ns, const conv_geom *g) {
    for (int n = 0; n < ns; n++)
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++) {
                float *d = X + ((size_t)n * g->P + (size_t)oh * g->OW + ow) * g->K;
                for (int c = 0; c < g->C; c++) {
                    const float *xc = x + ((size_t)n * g->C + c) * g->H * g->W;
                    for (int ki = 0; ki < g->kh; ki++) {
                        int ih = oh * g->s + ki - g->pad;
                        for (int kj = 0; kj < g->kw; kj++) {
                            int iw = ow * g->s + kj - g->pad;
                            *d++ = (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) ? 0.0f : xc[(size_t)ih * g->W + iw];
                        }
                    }
                }
            }
}

/* y[n, co, p] = tmp[co, n·P + p] + bias[co]. */
RF_NN_VEC static void scatter_bias(float *y, const float *tmp, const float *bias, int ns, int Co, int P) {
    size_t cols = (size_t)ns * P;
    for (int co = 0; co < Co; co++) {
        float bv = bias ? bias[co] : 0.0f;
        for (int n = 0; n < ns; n++) {
            float *restrict yn = y + ((size_t)n * Co + co) * P;
            const float *restrict tn = tmp + (size_t)co * cols + (size_t)n * P;
            for (int p = 0; p < P; p++) yn[p] = tn[p] + bv;
        }
    }
}

/* dtmp[co, n·P + p] = dy[n, co, p]; dbias[co] += Σ dy[:, co, :] (if dbias). */
RF_NN_VEC static void gather_grad(float *dtmp, float *dbias, const float *dy, int ns, int Co, int P) {
    size_t cols = (size_t)ns * P;
    for (int co = 0; co < Co; co++) {
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

/* Interior of xpad[C, Hp, Wp] from x[C, H, W] (borders stay zero). */
static void pad_in(float *xpad, const float *x, const conv_geom *g, const wide_geom *w) {
    for (int c = 0; c < g->C; c++)
        for (int h = 0; h < g->H; h++)
            memcpy(xpad + c * w->plane + (size_t)(h + g->pad) * w->Wp + g->pad,
                   x + ((size_t)c * g->H + h) * g->W, (size_t)g->W * sizeof(float));
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->Co, (int)ld, g->K, 1.0f, r->p[0], g->K,
                    colT, (int)ld, 0.0f, ywide, (int)ld);
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->Co, g->K, (int)ld, 1.0f, dywide, (int)ld,
                    colT, (int)ld, 1.0f, r->g[0], g->K);
        if (!r->din) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->K, (int)ld, g->Co, 1.0f, r->p[0], g->K,
                    dywide, (int)ld, 0.0f, dcol, (int)ld);
        for (int j = 0; j < ns; j++) {
            memset(dxpad, 0, w.xpad * sizeof(float));
            wide_col2im(dxpad, dcol + (size_t)j * w.PW, ld, g, &w);
            unpad_add(r->din + (size_t)(n0 + j) * L->in_size, dxpad, g, &w);
        }
    }
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

static size_t conv_scratch(const rf_layer *L, int B) {
    conv_geom g = conv_geom_of(L);
    size_t cols = (size_t)conv_chunk(&g, B) * g.P;
    size_t s = cols * (2 * (size_t)g.K + (size_t)g.Co);   /* columns + d(columns), or + Y rows (override) */
    size_t w = use_wide(&g) ? wide_scratch(&g, B) : 0;
    return s > w ? s : w;
}

static rf_status conv_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    conv_geom g = conv_geom_of(L);
    int chunk = conv_chunk(&g, r->B);
    const float *bias = L->ip[5] ? r->p[1] : NULL;
    if (use_wide(&g) && !(L->infer_gemm && !r->training)) { wide_forward(r, &g); return RF_OK; }
    for (int n0 = 0; n0 < r->B; n0 += chunk) {
        int ns = r->B - n0 < chunk ? r->B - n0 : chunk;
        size_t cols = (size_t)ns * g.P;
        const float *x = r->in + (size_t)n0 * L->in_size;
        float *y = r->out + (size_t)n0 * L->out_size;
        float *col = r->scratch, *tmp = r->scratch + cols * g.K;
        if (L->infer_gemm && !r->training) {
            im2col_rows(col, x, ns, &g);
            RF_TRY(L->infer_gemm(L->infer_state, col, tmp, (int)cols));
            for (int n = 0; n < ns; n++)
                for (int p = 0; p < g.P; p++) {
                    const float *t = tmp + ((size_t)n * g.P + p) * g.Co;
                    float *yn = y + (size_t)n * L->out_size + p;
                    for (int co = 0; co < g.Co; co++) yn[(size_t)co * g.P] = t[co];
                }
            continue;
        }
        im2col_t(col, x, ns, &g);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.Co, (int)cols, g.K, 1.0f, r->p[0], g.K,
                    col, (int)cols, 0.0f, tmp, (int)cols);
        scatter_bias(y, tmp, bias, ns, g.Co, g.P);
    }
    return RF_OK;
}

static void conv_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    conv_geom g = conv_geom_of(L);
    int chunk = conv_chunk(&g, r->B);
    float *dbias = L->ip[5] ? r->g[1] : NULL;
    if (use_wide(&g)) { wide_backward(r, &g); return; }
    for (int n0 = 0; n0 < r->B; n0 += chunk) {
        int ns = r->B - n0 < chunk ? r->B - n0 : chunk;
        size_t cols = (size_t)ns * g.P;
        float *col = r->scratch, *dtmp = col + cols * g.K, *dcol = dtmp + cols * g.Co;
        im2col_t(col, r->in + (size_t)n0 * L->in_size, ns, &g);
        gather_grad(dtmp, dbias, r->dout + (size_t)n0 * L->out_size, ns, g.Co, g.P);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.Co, g.K, (int)cols, 1.0f, dtmp, (int)cols,
                    col, (int)cols, 1.0f, r->g[0], g.K);
        if (!r->din) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.K, (int)cols, g.Co, 1.0f, r->p[0], g.K,
                    dtmp, (int)cols, 0.0f, dcol, (int)cols);
        col2im_t_add(r->din + (size_t)n0 * L->in_size, dcol, ns, &g);
    }
}

static const char *const conv_keys[] = {"out", "kernel", "kh", "kw", "stride", "padding", "bias", NULL};
const rf_nn_op rf_nn_op_conv2d = {"conv2d", conv_keys, conv_setup, conv_scratch, conv_forward, conv_backward};

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

static size_t patch_scratch(const rf_layer *L, int B) {
    patch_geom g = patch_geom_of(L);
    return (size_t)B * g.Np * ((size_t)g.K + (size_t)g.D);
}

static rf_status patch_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    patch_geom g = patch_geom_of(L);
    float *cols = r->scratch, *Y = r->scratch + (size_t)r->B * g.Np * g.K;
    const float *cls = g.cls ? r->p[2] : NULL, *pos = g.pos ? r->p[2 + g.cls] : NULL;
    patch_cols(cols, r->in, r->B, &g);
    int M = r->B * g.Np;
    if (L->infer_gemm && !r->training) RF_TRY(L->infer_gemm(L->infer_state, cols, Y, M));
    else rf_nn_linear_fwd(Y, cols, r->p[0], r->p[1], M, g.D, g.K, g.K, g.D);
    for (int n = 0; n < r->B; n++) {
        float *o = r->out + (size_t)n * L->out_size;
        for (int t = 0; t < g.T; t++) {
            float *ot = o + (size_t)t * g.D;
            const float *src = t < g.cls ? cls : Y + ((size_t)n * g.Np + (size_t)(t - g.cls)) * g.D;
            const float *pe = pos ? pos + (size_t)t * g.D : NULL;
            for (int d = 0; d < g.D; d++) ot[d] = src[d] + (pe ? pe[d] : 0.0f);
        }
    }
    return RF_OK;
}

static void patch_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    patch_geom g = patch_geom_of(L);
    float *cols = r->scratch, *dY = r->scratch + (size_t)r->B * g.Np * g.K;
    float *dcls = g.cls ? r->g[2] : NULL, *dpos = g.pos ? r->g[2 + g.cls] : NULL;
    for (int n = 0; n < r->B; n++) {
        const float *o = r->dout + (size_t)n * L->out_size;
        for (int t = 0; t < g.T; t++) {
            const float *ot = o + (size_t)t * g.D;
            if (dpos) for (int d = 0; d < g.D; d++) dpos[(size_t)t * g.D + d] += ot[d];
            if (t < g.cls) { for (int d = 0; d < g.D; d++) dcls[d] += ot[d]; continue; }
            memcpy(dY + ((size_t)n * g.Np + (size_t)(t - g.cls)) * g.D, ot, (size_t)g.D * sizeof(float));
        }
    }
    int M = r->B * g.Np;
    patch_cols(cols, r->in, r->B, &g);
    rf_nn_linear_bwd(NULL, r->g[0], r->g[1], dY, cols, r->p[0], M, g.D, g.K, g.K, g.D);
    if (r->din) {
        /* The columns are no longer needed: reuse them for d(columns). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, g.K, g.D, 1.0f, dY, g.D, r->p[0], g.K,
                    0.0f, cols, g.K);
        patch_cols_add_back(r->din, cols, r->B, &g);
    }
}

static const char *const patch_keys[] = {"dim", "patch", "cls", "pos", NULL};
const rf_nn_op rf_nn_op_patch_embed = {"patch_embed", patch_keys, patch_setup, patch_scratch, patch_forward,
                                       patch_backward};
