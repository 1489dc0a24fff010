/* Element-wise layers: relu, gelu, tanh, dropout (the additions of
 * residual connections are in layer_merge.c). */
#include "nn/layers.h"

#include <math.h>
#include <string.h>

static rf_status same_shape_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    rf_nn_set_out(L, L->in.d[0], L->in.d[1], L->in.d[2], b->in_kind);
    return RF_OK;
}

static size_t numel(const rf_nn_run *r) { return (size_t)r->B * r->L->in_size; }

/* ---- relu ----------------------------------------------------------------- */
RF_NN_VEC static void relu_fwd(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* The output is >= 0 (or +0.0), so "output > 0" is "its bits are non-zero". */
RF_NN_VEC static void relu_bwd(float *dx, const float *dy, const float *y, size_t n) {
    const int32_t *yb = (const int32_t *)(const void *)y;
    for (size_t i = 0; i < n; i++) dx[i] += yb[i] > 0 ? dy[i] : 0.0f;
}

/* The loops above in rf_nn_ew's form, split over the engine's threads. */
static void relu_fwd_ew(float *y, const float *x, const float *u, size_t n) { (void)u; relu_fwd(y, x, n); }
static void relu_bwd_ew(float *dx, const float *dy, const float *y, size_t n) { relu_bwd(dx, dy, y, n); }
static rf_status relu_forward(const rf_nn_run *r) {
    rf_nn_ew(r->eng, relu_fwd_ew, r->out, r->in, NULL, numel(r));
    return RF_OK;
}

/* Feature-major (model.c runs): the same element-wise function on each of
 * the width rows' first `rows` columns (the same values as row-major). */
long rf_nn_feat_always(const rf_layer *L) { (void)L; return 0; }
static void feat_apply(const rf_nn_feat *f, void (*fn)(float *, const float *, size_t)) {
    int rows, width;
    rf_nn_feat_view(f->r->L->in, f->r->L->ip[7], f->r->B, &rows, &width);
    rf_nn_feat_rows(f->out, f->in, width, rows, f->ldo, fn);
}
static rf_status relu_forward_feat(const rf_nn_feat *f) { feat_apply(f, relu_fwd); return RF_OK; }
static void relu_backward(const rf_nn_run *r) {
    if (r->din) rf_nn_ew(r->eng, relu_bwd_ew, r->din, r->dout, r->out, numel(r));
}

/* For a layer fused with the ReLU after it (layers.h): the forward above in
 * place, and the backward written into a buffer that is not zeroed. */
RF_NN_VEC static void relu_bwd_write(float *dx, const float *dy, const float *y, size_t n) {
    const int32_t *yb = (const int32_t *)(const void *)y;
    for (size_t i = 0; i < n; i++) dx[i] = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
}
static void relu_bwd_write_ew(float *dx, const float *dy, const float *y, size_t n) { relu_bwd_write(dx, dy, y, n); }
void rf_nn_relu_inplace(const rf_engine *e, float *y, size_t n) { rf_nn_ew(e, relu_fwd_ew, y, y, NULL, n); }
void rf_nn_relu_grad_write(const rf_engine *e, float *dx, const float *dy, const float *y, size_t n) {
    rf_nn_ew(e, relu_bwd_write_ew, dx, dy, y, n);
}

/* ---- gelu ------------------------------------------------------------------
 * Exact GELU, x·Φ(x) = x/2 · (1 + erf(x/√2)) (Hendrycks & Gimpel 2016), the
 * form PyTorch's nn.GELU() and timm's ViT use (not the tanh approximation);
 * d/dx = Φ(x) + x·φ(x). erf and the Gaussian are evaluated with the
 * vectorisable approximations in layers.h (errors < 1e-6 absolute). */
RF_NN_VEC static void add_v(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
void rf_nn_add(float *y, const float *x, size_t n) { add_v(y, x, n); }

RF_NN_VEC static void mul_add_v(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}
void rf_nn_mul_add(float *y, const float *a, const float *b, size_t n) { mul_add_v(y, a, b, n); }

RF_NN_VEC static void gelu_fwd_v(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + rf_nn_erf(x[i] * 0.70710678118654752f));
}
void rf_nn_gelu_fwd(float *y, const float *x, size_t n) { gelu_fwd_v(y, x, n); }

RF_NN_VEC static void gelu_bwd_v(float *dx, const float *dy, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + rf_nn_erf(v * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * rf_nn_exp_neg_half(v * v);
        dx[i] += dy[i] * (cdf + v * pdf);
    }
}
void rf_nn_gelu_bwd(float *dx, const float *dy, const float *x, size_t n) { gelu_bwd_v(dx, dy, x, n); }

static void gelu_fwd_ew(float *y, const float *x, const float *u, size_t n) { (void)u; gelu_fwd_v(y, x, n); }
static void gelu_bwd_ew(float *dx, const float *dy, const float *x, size_t n) { gelu_bwd_v(dx, dy, x, n); }
static rf_status gelu_forward(const rf_nn_run *r) {
    rf_nn_ew(r->eng, gelu_fwd_ew, r->out, r->in, NULL, numel(r));
    return RF_OK;
}
static rf_status gelu_forward_feat(const rf_nn_feat *f) { feat_apply(f, rf_nn_gelu_fwd); return RF_OK; }
static void gelu_backward(const rf_nn_run *r) {
    if (r->din) rf_nn_ew(r->eng, gelu_bwd_ew, r->din, r->dout, r->in, numel(r));
}

/* ---- tanh ----------------------------------------------------------------- */
static void tanh_v(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}
static rf_status tanh_forward(const rf_nn_run *r) { tanh_v(r->out, r->in, numel(r)); return RF_OK; }
static rf_status tanh_forward_feat(const rf_nn_feat *f) { feat_apply(f, tanh_v); return RF_OK; }

static void tanh_backward(const rf_nn_run *r) {
    if (!r->din) return;
    size_t n = numel(r);
    for (size_t i = 0; i < n; i++) r->din[i] += r->dout[i] * (1.0f - r->out[i] * r->out[i]);
}

static const char *const no_keys[] = {NULL};
const rf_nn_op rf_nn_op_relu = {"relu", no_keys, same_shape_setup, NULL, relu_forward, relu_backward,
                                rf_nn_feat_always, relu_forward_feat, NULL, 0, RF_NN_CONN_PASS, 0, 0};
const rf_nn_op rf_nn_op_gelu = {"gelu", no_keys, same_shape_setup, NULL, gelu_forward, gelu_backward,
                                rf_nn_feat_always, gelu_forward_feat, NULL, 0, RF_NN_CONN_PASS, 0, 0};
const rf_nn_op rf_nn_op_tanh = {"tanh", no_keys, same_shape_setup, NULL, tanh_forward, tanh_backward,
                                rf_nn_feat_always, tanh_forward_feat, NULL, 0, RF_NN_CONN_PASS, 0, 0};

/* ---- dropout ---------------------------------------------------------------
 * Inverted dropout (Srivastava et al. 2014, scaled at training time so that
 * inference is the identity): keep with probability 1-p, scale by 1/(1-p).
 * The scaled mask is saved for backward; the stream is m->dropout_rng. */
RF_NN_VEC static void mul3(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

static rf_status dropout_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_float(b, j, "p", 0.5, 0.0, 0.999, &L->fp[0]));
    rf_nn_set_out(L, L->in.d[0], L->in.d[1], L->in.d[2], b->in_kind);
    L->save_numel = L->in_size;
    return RF_OK;
}

/* Two decisions per 32-bit draw: keep iff a 16-bit uniform u >= thr, so
 * the keep probability is exactly (65536 - thr)/65536 (p rounded to
 * 1/65536) and the scale uses that probability, keeping E[out] = in.
 * Element i takes the low (even i) or high (odd i) half of draw i/2 of the
 * step's stream; a part of the mask draws its own range of the stream
 * (counter-based, rf_rng_u32_range), so the mask does not depend on how
 * the elements are split over threads. */
typedef struct drop_job {
    const rf_rng *rng;
    uint32_t thr;
    float scale;
    float *mk, *out;
    const float *in;
    size_t n;
} drop_job;

static void dropout_part(void *arg, int t, int n) {
    const drop_job *j = arg;
    size_t lo, hi;
    rf_nn_span_aligned(j->n, 128, t, n, &lo, &hi);
    uint32_t u[64];
    for (size_t i = lo; i < hi; i += 128) {
        size_t e = hi - i < 128 ? hi - i : 128, draws = (e + 1) / 2;
        rf_rng_u32_range(j->rng, i / 2, u, draws);
        for (size_t k = 0; k < e; k++)
            j->mk[i + k] = ((k & 1 ? u[k / 2] >> 16 : u[k / 2] & 0xFFFFu) >= j->thr) ? j->scale : 0.0f;
    }
    if (hi > lo) mul3(j->out + lo, j->in + lo, j->mk + lo, hi - lo);
}

static rf_status dropout_forward(const rf_nn_run *r) {
    size_t n = numel(r);
    float p = r->L->fp[0];
    if (!r->training || p == 0.0f) { memcpy(r->out, r->in, n * sizeof(float)); return RF_OK; }
    uint32_t thr = (uint32_t)(p * 65536.0f + 0.5f);
    drop_job j = {r->rng, thr, 65536.0f / (float)(65536u - thr), r->save, r->out, r->in, n};
    rf_nn_par(r->eng, rf_nn_parts(r->eng, (double)n, 1 << 14), dropout_part, &j);
    rf_rng_skip(r->rng, (n + 1) / 2);
    return RF_OK;
}

/* Inference only, so the identity (also flatten's). */
static void copy_v(float *y, const float *x, size_t n) { memcpy(y, x, n * sizeof(float)); }
rf_status rf_nn_feat_copy(const rf_nn_feat *f) { feat_apply(f, copy_v); return RF_OK; }

static void add_ew(float *y, const float *a, const float *b, size_t n) { (void)b; add_v(y, a, n); }
static void mul_add_ew(float *y, const float *a, const float *b, size_t n) { mul_add_v(y, a, b, n); }
static void dropout_backward(const rf_nn_run *r) {
    if (!r->din) return;
    size_t n = numel(r);
    if (!r->training || r->L->fp[0] == 0.0f) rf_nn_ew(r->eng, add_ew, r->din, r->dout, NULL, n);
    else rf_nn_ew(r->eng, mul_add_ew, r->din, r->dout, r->save, n);
}

static const char *const dropout_keys[] = {"p", NULL};
const rf_nn_op rf_nn_op_dropout = {"dropout", dropout_keys, dropout_setup, NULL, dropout_forward, dropout_backward,
                                   rf_nn_feat_always, rf_nn_feat_copy, NULL, 0, RF_NN_CONN_PASS, 0, 0};
