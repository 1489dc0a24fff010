/* Internal: the weight products of the multi-product layers (transformer
 * block, attention) with their per-weight overrides (nn.h rf_param.infer_gemm
 * and rf_param.train_act). Linear, conv and patch_embed layers keep the
 * layer-level rf_layer.infer_gemm and do not use these. */
#ifndef RAFFLE_NN_PRODUCT_H
#define RAFFLE_NN_PRODUCT_H

#include "nn/layers.h"

/* Y[M, N] = X[M, K] · W^T + b (b may be NULL), X and Y contiguous. p (the
 * weight's tensor record, may be NULL) decides how: inference with
 * p->infer_gemm set calls it (it adds the bias); training with p->train_act
 * set first lets it rewrite X in place (X must then be writable and is what
 * the backward's dW uses), then runs the float product. */
rf_status rf_nn_product_fwd(const rf_engine *e, const rf_param *p, int training, float *Y, float *X, const float *W,
                            const float *b, int M, int N, int K);
/* The backward side of p->train_act on dL/dX [n] (no-op when unset). */
void rf_nn_product_grad(const rf_param *p, float *dX, size_t n);

/* rf_nn_mhsa_fwd / rf_nn_mhsa_bwd with the qkv and proj products routed
 * through rf_nn_product_fwd / rf_nn_product_grad. x is rewritten in place when
 * training with pqkv->train_act set; pqkv, pproj may be NULL. */
rf_status rf_nn_mhsa_fwd_p(const rf_engine *e, float *y, float *qkv, float *att, float *ctx, float *x,
                           const float *Wqkv, const float *bqkv, const float *Wproj, const float *bproj,
                           int B, int T, int D, int H, const rf_param *pqkv, const rf_param *pproj, int training);
void rf_nn_mhsa_bwd_p(const rf_engine *e, float *dx, float *dWqkv, float *dbqkv, float *dWproj, float *dbproj,
                      const float *dy, const float *x, const float *qkv, const float *att, const float *ctx,
                      const float *Wqkv, const float *Wproj, float *scratch, int B, int T, int D, int H,
                      const rf_param *pqkv, const rf_param *pproj);

/* The per-head part of attention for B samples of T tokens, width D, H
 * heads, on packed qkv rows [B·T][3D]:
 *  forward:  att [B][H][T][T] = softmax(q k^T / sqrt(D/H)), ctx [B·T][D] = att v;
 *  backward: dqkv [B·T][3D] (overwritten) from dctx [B·T][D]; dP is T·T
 *            floats of scratch. */
void rf_nn_mhsa_heads_fwd(const rf_engine *e, float *att, float *ctx, const float *qkv, int B, int T, int D, int H);
/* The forward on feature-major qkvT [3D][ld] into ctxT [D][ld] (columns
 * [0, B·T)); S is 2·T·T floats of scratch; the attention weights are not
 * kept (inference). Same values as rf_nn_mhsa_heads_fwd. */
void rf_nn_mhsa_heads_fwd_feat(const rf_engine *e, float *ctxT, const float *qkvT, int ld, float *S, int B, int T, int D, int H);
void rf_nn_mhsa_heads_bwd(const rf_engine *e, float *dqkv, const float *dctx, const float *qkv, const float *att, float *dP, int B,
                          int T, int D, int H);

#endif
