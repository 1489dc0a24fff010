/* Pre-norm transformer encoder block (ViT, Dosovitskiy et al. 2021, eqs. 2-3):
 *   x1  = x + MHSA(LN1(x))
 *   out = x1 + fc2(GELU(fc1(LN2(x1))))
 * Parameter names follow timm's Block so exported weights load in PyTorch:
 * norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2 (each .weight, .bias).
 * Saved per sample, each region laid out [B, ...]: ln1 [TD], st1 [2T],
 * qkv [3TD], att [H·T·T], ctx [TD], x1 [TD], ln2 [TD], st2 [2T], h [T·M],
 * a [T·M] (h = fc1 output, a = GELU(h)). */
#include "nn/product.h"

#include <string.h>

enum { P_N1W, P_N1B, P_QKVW, P_QKVB, P_PROJW, P_PROJB, P_N2W, P_N2B, P_FC1W, P_FC1B, P_FC2W, P_FC2B };

typedef struct blk {
    int B, T, D, H, Mh;
    float *ln1, *st1, *qkv, *att, *ctx, *x1, *ln2, *st2, *h, *a;
} blk;

static blk blk_of(const rf_layer *L, int B, float *save) {
    blk k = {B, L->in.d[0], L->in.d[1], L->ip[0], L->ip[1], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    size_t BT = (size_t)B * k.T, TD = BT * k.D;
    k.ln1 = save;
    k.st1 = k.ln1 + TD;
    k.qkv = k.st1 + 2 * BT;
    k.att = k.qkv + 3 * TD;
    k.ctx = k.att + (size_t)B * k.H * k.T * k.T;
    k.x1 = k.ctx + TD;
    k.ln2 = k.x1 + TD;
    k.st2 = k.ln2 + TD;
    k.h = k.st2 + 2 * BT;
    k.a = k.h + BT * k.Mh;
    return k;
}

static rf_status tb_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_TOKENS)));
    int T = L->in.d[0], D = L->in.d[1];
    RF_TRY(rf_nn_int(b, j, "heads", 1, 1, 4096, &L->ip[0]));
    if (D % L->ip[0]) return rf_nn_err(b, RF_ERR_SHAPE, "%d heads do not divide width %d", L->ip[0], D);
    RF_TRY(rf_nn_int(b, j, "mlp", 4 * D, 1, 1 << 24, &L->ip[1]));
    RF_TRY(rf_nn_float(b, j, "eps", 1e-6, 0.0, 1.0, &L->fp[0]));
    int Mh = L->ip[1];
    rf_nn_set_out(L, T, D, 1, RF_NN_TOKENS);
    RF_TRY(rf_nn_param(b, L, "norm1.weight", RF_P_NORM, 1, D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "norm1.bias", RF_P_NORM, 1, D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "attn.qkv.weight", RF_P_WEIGHT, 2, 3 * D, D, 0, 0));
    RF_TRY(rf_nn_param(b, L, "attn.qkv.bias", RF_P_BIAS, 1, 3 * D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "attn.proj.weight", RF_P_WEIGHT, 2, D, D, 0, 0));
    RF_TRY(rf_nn_param(b, L, "attn.proj.bias", RF_P_BIAS, 1, D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "norm2.weight", RF_P_NORM, 1, D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "norm2.bias", RF_P_NORM, 1, D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "mlp.fc1.weight", RF_P_WEIGHT, 2, Mh, D, 0, 0));
    RF_TRY(rf_nn_param(b, L, "mlp.fc1.bias", RF_P_BIAS, 1, Mh, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "mlp.fc2.weight", RF_P_WEIGHT, 2, D, Mh, 0, 0));
    RF_TRY(rf_nn_param(b, L, "mlp.fc2.bias", RF_P_BIAS, 1, D, 0, 0, 0));
    size_t TD = (size_t)T * D;
    L->save_numel = 7 * TD + 4 * (size_t)T + (size_t)L->ip[0] * T * T + 2 * (size_t)T * Mh;
    return RF_OK;
}

static size_t tb_scratch(const rf_layer *L, int B) {
    size_t BT = (size_t)B * L->in.d[0], D = (size_t)L->in.d[1];
    return BT * (2 * D + 2 * (size_t)L->ip[1]) + rf_nn_mhsa_scratch(B, L->in.d[0], L->in.d[1], L->ip[0]);
}

/* The four products (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) go through
 * rf_nn_product_fwd, so each weight's per-param override (int8 inference,
 * QAT input fake-quant) applies; their inputs ln1, ctx, ln2 and a are the
 * block's own saved buffers, so a training-time rewrite of them is what the
 * weight gradients see, and layer norm / GELU backward read x, x1 and h,
 * which nothing rewrites. */
static rf_status tb_forward(const rf_nn_run *r) {
    blk k = blk_of(r->L, r->B, r->save);
    const float *const *p = r->p;
    const rf_param *pt = r->L->pt;
    int rows = k.B * k.T, tr = r->training;
    size_t TD = (size_t)rows * k.D;
    float eps = r->L->fp[0];
    rf_nn_layernorm_fwd(k.ln1, k.st1, r->in, p[P_N1W], p[P_N1B], rows, k.D, eps);
    RF_TRY(rf_nn_mhsa_fwd_p(k.x1, k.qkv, k.att, k.ctx, k.ln1, p[P_QKVW], p[P_QKVB], p[P_PROJW], p[P_PROJB], k.B,
                            k.T, k.D, k.H, pt ? &pt[P_QKVW] : NULL, pt ? &pt[P_PROJW] : NULL, tr));
    rf_nn_add(k.x1, r->in, TD);
    rf_nn_layernorm_fwd(k.ln2, k.st2, k.x1, p[P_N2W], p[P_N2B], rows, k.D, eps);
    RF_TRY(rf_nn_product_fwd(pt ? &pt[P_FC1W] : NULL, tr, k.h, k.ln2, p[P_FC1W], p[P_FC1B], rows, k.Mh, k.D));
    rf_nn_gelu_fwd(k.a, k.h, (size_t)rows * k.Mh);
    RF_TRY(rf_nn_product_fwd(pt ? &pt[P_FC2W] : NULL, tr, r->out, k.a, p[P_FC2W], p[P_FC2B], rows, k.D, k.Mh));
    rf_nn_add(r->out, k.x1, TD);
    return RF_OK;
}

static void tb_backward(const rf_nn_run *r) {
    blk k = blk_of(r->L, r->B, r->save);
    const float *const *p = r->p;
    float *const *g = r->g;
    const rf_param *pt = r->L->pt;
    int rows = k.B * k.T;
    size_t TD = (size_t)rows * k.D, TM = (size_t)rows * k.Mh;
    float *dx1 = r->scratch, *da = dx1 + TD, *dh = da + TM, *dln = dh + TM, *ms = dln + TD;
    memcpy(dx1, r->dout, TD * sizeof(float));
    memset(da, 0, 2 * TM * sizeof(float));
    memset(dln, 0, TD * sizeof(float));
    rf_nn_linear_bwd(da, g[P_FC2W], g[P_FC2B], r->dout, k.a, p[P_FC2W], rows, k.D, k.Mh, k.Mh, k.D);
    rf_nn_product_grad(pt ? &pt[P_FC2W] : NULL, da, TM);
    rf_nn_gelu_bwd(dh, da, k.h, TM);
    rf_nn_linear_bwd(dln, g[P_FC1W], g[P_FC1B], dh, k.ln2, p[P_FC1W], rows, k.Mh, k.D, k.D, k.Mh);
    rf_nn_product_grad(pt ? &pt[P_FC1W] : NULL, dln, TD);
    rf_nn_layernorm_bwd(dx1, g[P_N2W], g[P_N2B], dln, k.x1, k.st2, p[P_N2W], rows, k.D);
    if (r->din) rf_nn_add(r->din, dx1, TD);
    memset(dln, 0, TD * sizeof(float));
    rf_nn_mhsa_bwd_p(dln, g[P_QKVW], g[P_QKVB], g[P_PROJW], g[P_PROJB], dx1, k.ln1, k.qkv, k.att, k.ctx, p[P_QKVW],
                     p[P_PROJW], ms, k.B, k.T, k.D, k.H, pt ? &pt[P_QKVW] : NULL, pt ? &pt[P_PROJW] : NULL);
    rf_nn_layernorm_bwd(r->din, g[P_N1W], g[P_N1B], dln, r->in, k.st1, p[P_N1W], rows, k.D);
}

static const char *const tb_keys[] = {"heads", "mlp", "eps", NULL};
const rf_nn_op rf_nn_op_transformer = {"transformer", tb_keys, tb_setup, tb_scratch, tb_forward, tb_backward};
