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
    RF_NN_CONV_DENSE = RF_ENGINE_CONV_DENSE
} rf_nn_conv_path;

/* 1 if a kh×kw, stride s, padding pad conv can run as F(2x2, 3x3):
 * kh = kw = 3, s = 1, pad 0 or 1. */
int rf_nn_wino_fits(int kh, int kw, int s, int pad);

/* Scratch floats rf_nn_wino_forward / rf_nn_wino_backward need for batch B
 * of a C -> Co conv on H×W inputs with padding pad, split over `threads`
 * threads (the engine's, rf_nn_threads). */
size_t rf_nn_wino_scratch(int C, int H, int W, int Co, int pad, int B, int threads);

/* y[B, Co, OH, OW] = conv(x[B, C, H, W], w[Co, C, 3, 3]) + bias (bias may
 * be NULL); OH = H + 2·pad − 2. Borrows everything; scratch holds at least
 * rf_nn_wino_scratch floats. */
void rf_nn_wino_forward(const rf_engine *e, float *y, const float *x, const float *w, const float *bias, int B, int C,
                        int H, int W, int Co, int pad, float *scratch);

/* Backward of rf_nn_wino_forward, ADDING into dw[Co, C, 3, 3], db[Co] (may
 * be NULL) and dx[B, C, H, W] (may be NULL). */
void rf_nn_wino_backward(const rf_engine *e, float *dw, float *db, float *dx, const float *dy, const float *x,
                         const float *w, int B, int C, int H, int W, int Co, int pad, float *scratch);

#endif
