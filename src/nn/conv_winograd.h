/* Winograd F(2x2, 3x3) convolution for 3x3 stride-1 layers (Lavin & Gray
 * 2016, "Fast Algorithms for Convolutional Neural Networks", section 4.1):
 * forward, input gradient and weight gradient, fp32, NCHW; products on the
 * engine e (raffle/gemm.h rf_gemm_engine).
 * Used by layer_conv.c in training; see conv_winograd.c for the layout. */
#ifndef RAFFLE_NN_CONV_WINOGRAD_H
#define RAFFLE_NN_CONV_WINOGRAD_H

#include <stddef.h>
#include "raffle/engine.h"

/* Convolution path of the stride-1 conv layers (layer_conv.c): the engine
 * option "conv" (raffle/engine.h, the same values). AUTO picks per layer
 * shape and ISA; the others force a path where it applies (a path that does
 * not fit the layer falls back to the next one: Winograd -> direct ->
 * wide/im2col). */
typedef enum rf_nn_conv_path {
    RF_NN_CONV_AUTO = RF_ENGINE_CONV_AUTO, RF_NN_CONV_WINOGRAD = RF_ENGINE_CONV_WINOGRAD,
    RF_NN_CONV_DIRECT = RF_ENGINE_CONV_DIRECT, RF_NN_CONV_GEMM = RF_ENGINE_CONV_GEMM,
    RF_NN_CONV_DENSE = RF_ENGINE_CONV_DENSE, RF_NN_CONV_WINOGRAD4 = RF_ENGINE_CONV_WINOGRAD4,
    RF_NN_CONV_AUTO2 = RF_ENGINE_CONV_AUTO2, RF_NN_CONV_AUTO3 = RF_ENGINE_CONV_AUTO3
} rf_nn_conv_path;

/* 1 if a kh×kw, stride s, padding pad conv can run as F(m x m, 3x3):
 * kh = kw = 3, s = 1, pad 0 or 1. */
int rf_nn_wino_fits(int kh, int kw, int s, int pad);

/* Every function below takes the output tile size m: 2 for F(2x2, 3x3)
 * (4×4 input tiles, 16 products), 4 for F(4x4, 3x3) (6×6 tiles, 36
 * products; conv_winograd4.c). The two give different floats. */

/* Scratch floats rf_nn_wino_forward / rf_nn_wino_backward need for batch B
 * of a C -> Co conv on H×W inputs with padding pad, split over `threads`
 * threads (the engine's, rf_nn_threads). */
size_t rf_nn_wino_scratch(int C, int H, int W, int Co, int pad, int m, int B, int threads);

/* y[B, Co, OH, OW] = conv(x[B, C, H, W], w[Co, C, 3, 3]) + bias (bias may
 * be NULL); OH = H + 2·pad − 2. Borrows everything; scratch holds at least
 * rf_nn_wino_scratch floats. */
void rf_nn_wino_forward(const rf_engine *e, float *y, const float *x, const float *w, const float *bias, int B, int C,
                        int H, int W, int Co, int pad, int m, float *scratch);

/* rf_nn_wino_forward, then (relu) y = max(y, 0) as the ReLU layer computes
 * it, plane by plane while the plane is in cache: a conv fused with the
 * ReLU after it (model.c, "fusion"). The same bits as the two layers. */
void rf_nn_wino_forward_relu(const rf_engine *e, float *y, const float *x, const float *w, const float *bias, int B,
                             int C, int H, int W, int Co, int pad, int m, int relu, float *scratch);

/* Backward of rf_nn_wino_forward, ADDING into dw[Co, C, 3, 3], db[Co] (may
 * be NULL) and dx[B, C, H, W] (may be NULL). */
void rf_nn_wino_backward(const rf_engine *e, float *dw, float *db, float *dx, const float *dy, const float *x,
                         const float *w, int B, int C, int H, int W, int Co, int pad, int m, float *scratch);
/* The backward of rf_nn_wino_forward_relu with relu: dy is the ReLU's
 * output gradient and ry its output (borrowed); dm[B, Co, OH, OW] (caller's,
 * written) receives the conv's output gradient, +0 + (ry > 0 ? dy : 0)
 * (the ReLU's gradient into a zeroed buffer), made in the bias sums' pass.
 * ry NULL: no ReLU (dm unused). dx_write: dx is stored, not added to (its
 * old contents are never read; the bits of adding to zeros). */
void rf_nn_wino_backward_relu(const rf_engine *e, float *dw, float *db, float *dx, int dx_write, const float *dy,
                              const float *ry, float *dm, const float *x, const float *w, int B, int C, int H, int W, int Co, int pad,
                              int m, float *scratch);

/* F(4x4, 3x3) pieces (conv_winograd4.c), used by conv_winograd.c's driver.
 * k = 6a + b indexes the 36 tile positions; every function gives the same
 * bits on every ISA.
 * V[k] = G w Gᵀ for w[co, c] (flip: the kernel rotated by 180°), stored at
 * V[k·Co·C + c·Co + co] (tr) or V[k·Co·C + co·C + c], co in [co0, co1). */
void rf_nn_wino4_weights(float *V, const float *w, int Co, int C, int co0, int co1, int tr, int flip);
/* One row of V alone: the 36 rows of V's tr layout at c = r (tr: u[k·ld + co]
 * for every co) or of the plain layout at co = r (u[k·ld + c] for every c),
 * the values rf_nn_wino4_weights stores there (same arithmetic, bit for bit);
 * u caller-owned, 36·ld floats, ld >= the row's length. */
void rf_nn_wino4_weights_row(float *u, size_t ld, const float *w, int Co, int C, int r, int tr, int flip);
/* dw[co, c] += Gᵀ dV G, dV in the plain layout, co in [co0, co1). */
void rf_nn_wino4_weights_back(float *dw, const float *dV, int Co, int C, int co0, int co1);
/* u[k·ldk + th·TW + tw] = (Bᵀ d B)[k], d the 6×6 tiles (stride 4) of
 * x[H, W] padded by pad (zeros past the plane). next: the plane the caller
 * transforms next (prefetched; NULL: none). */
void rf_nn_wino4_in(float *u, size_t ldk, const float *x, int H, int W, int pad, int TH, int TW, const float *next);
/* u[k·ldk + th·TW + tw] = (A y Aᵀ)[k], y the 4×4 tiles of dy[OH, OW]. */
void rf_nn_wino4_grad(float *u, size_t ldk, const float *dy, int OH, int OW, int TH, int TW, const float *next);
/* The same for n <= 4 planes of consecutive samples, x + q·ps (dy + q·ps)
 * into u + q·TH·TW: the same values as n calls; next: the first of the
 * planes the caller transforms next (prefetched with the 3 after it). */
void rf_nn_wino4_in_planes(float *u, size_t ldk, const float *x, size_t ps, int n, int H, int W, int pad, int TH,
                           int TW, const float *next);
void rf_nn_wino4_grad_planes(float *u, size_t ldk, const float *dy, size_t ps, int n, int OH, int OW, int TH, int TW,
                             const float *next);
/* o[r·T + t] = (Aᵀ m A)[r] + bv (r = 4a + b) for T tiles, m[k·ldk + t]. */
void rf_nn_wino4_out(float *o, const float *m, size_t ldk, int T, float bv);
/* y[OH, OW] (= by acc 0, += by 1, = max(·, 0) by 2: a fused ReLU, the
 * ReLU layer's x > 0 ? x : +0) the outputs o[r·ldo + th·TW + tw]. */
void rf_nn_wino4_scatter(float *y, const float *o, size_t ldo, int OH, int OW, int TW, int acc);

#endif
