/* Layers that read several inputs: add (a residual connection's sum, He et
 * al. 2016 eq. 1, with the parameter-free option-A shortcut of Sec. 4.2),
 * concat (along channels) and the older residual layer (in + output of
 * layer "from", the same sum as a two-input add).
 *
 * Option B (a 1x1 projection with batch norm on the shortcut, Sec. 3.3) has
 * parameters, so it is not part of add: it is a conv2d (kernel 1, the
 * stride, bias 0) and a batchnorm on the shortcut branch, whose output is
 * the add's second input, exactly as PyTorch's `shortcut` Sequential is. It
 * is then pruned, quantized, deployed and folded like every other conv. */
#include "nn/layers.h"

#include <string.h>

static int same_shape(rf_shape3 a, rf_shape3 b) { return a.d[0] == b.d[0] && a.d[1] == b.d[1] && a.d[2] == b.d[2]; }

static size_t numel(const rf_nn_run *r) { return (size_t)r->B * r->L->out_size; }

RF_NN_VEC static void add2(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
/* y += x in rf_nn_ew's form (split over the engine's threads). */
static void add_ew(float *y, const float *x, const float *u, size_t n) { (void)u; rf_nn_add(y, x, n); }

/* ---- add ------------------------------------------------------------------ */
enum { SHORTCUT_NONE = 0, SHORTCUT_A = 1 };

/* "front": where option A places the shortcut's channels (ip[1] = front + 1;
 * 0: the default, half the zero channels before them). A channel-pruned
 * ResNet needs it: slicing keeps the shortcut's surviving channels
 * contiguous but not centred (src/nn/slice.c). */
int rf_nn_add_shortcut(const rf_layer *L, rf_shape3 s, int *stride, int *front) {
    if (!rf_nn_shortcut_a(s, L->out, stride, front)) return 0;
    if (L->ip[1] > 0) *front = L->ip[1] - 1;
    return *front + s.d[0] <= L->out.d[0];
}

static rf_status add_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    if (L->n_inputs < 2) return rf_nn_err(b, RF_ERR_SPEC, "needs at least 2 \"inputs\" (the branch, then the shortcut)");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shortcut");
    L->ip[0] = SHORTCUT_NONE;
    if (js) {
        if (cJSON_IsString(js) && strcmp(js->valuestring, "A") == 0) L->ip[0] = SHORTCUT_A;
        else if (cJSON_IsString(js) && strcmp(js->valuestring, "B") == 0)
            return rf_nn_err(b, RF_ERR_SPEC, "\"shortcut\": \"B\" is a projection branch: give the shortcut a conv2d "
                                             "(kernel 1, the stride, bias 0) and a batchnorm, and add their output");
        else if (!cJSON_IsString(js) || strcmp(js->valuestring, "none") != 0)
            return rf_nn_err(b, RF_ERR_SPEC, "\"shortcut\" must be \"none\" or \"A\"");
    }
    int front1 = 0;
    RF_TRY(rf_nn_int(b, j, "front", -1, -1, 1 << 24, &front1));
    if (front1 >= 0 && L->ip[0] != SHORTCUT_A) return rf_nn_err(b, RF_ERR_SPEC, "\"front\" is the channel offset of an option-A shortcut (\"shortcut\": \"A\")");
    L->ip[1] = front1 + 1;
    rf_nn_kind k0;
    rf_shape3 o = rf_nn_input_shape(b, L, 0, &k0);
    L->out = o;
    for (int k = 1; k < L->n_inputs; k++) {
        rf_nn_kind kk;
        rf_shape3 s = rf_nn_input_shape(b, L, k, &kk);
        int stride, front;
        if (kk == k0 && same_shape(s, o)) continue;
        if (kk == k0 && k0 == RF_NN_IMAGE && L->ip[0] == SHORTCUT_A && rf_nn_add_shortcut(L, s, &stride, &front)) continue;
        return rf_nn_err(b, RF_ERR_SHAPE, "input '%s' has shape %dx%dx%d, input '%s' has %dx%dx%d%s",
                         rf_nn_input_name(b, L, 0), o.d[0], o.d[1], o.d[2], rf_nn_input_name(b, L, k), s.d[0],
                         s.d[1], s.d[2],
                         L->ip[0] == SHORTCUT_A
                             ? " (option A reaches the first from fewer channels and a map a stride divides)"
                             : " (\"shortcut\": \"A\" subsamples and zero-pads; option B is a 1x1 conv2d + batchnorm branch)");
    }
    rf_nn_set_out(L, o.d[0], o.d[1], o.d[2], k0);
    return RF_OK;
}

/* The gradient a ReLU after the add leaves in the add's zeroed output
 * gradient (fusion, model.c): +0 + (y > 0 ? dy : 0), y the ReLU's output
 * (>= 0 or +0, so "y > 0" is "its bits are non-zero", as relu's backward
 * tests it). The +0 start is the zeroed buffer relu's backward adds into,
 * so the value has its bits, -0 included. */
static inline float relu_grad(float dy, float y) {
    int32_t yb;
    memcpy(&yb, &y, 4);
    float g = yb > 0 ? dy : 0.0f;
    return 0.0f + g;
}

/* Forward: y[n, c + front, h, w] += x[n, c, h·s, w·s]. Backward: the
 * transposed gather, dx[n, c, h·s, w·s] += dy[n, c + front, h, w]. `to` is
 * y or dx, `from` x or dy; xs, ys the input's and the output's shapes.
 * relu_y (backward only, NULL: none): the output of a ReLU fused after the
 * add, whose gradient (relu_grad) stands for dy. */
static void shortcut_a(const rf_layer *L, float *to, const float *from, rf_shape3 xs, int B, int backward,
                       const float *relu_y) {
    int stride, front;
    rf_shape3 ys = L->out;
    if (!rf_nn_add_shortcut(L, xs, &stride, &front)) return;   /* checked at setup */
    size_t xsz = (size_t)xs.d[0] * xs.d[1] * xs.d[2], ysz = (size_t)ys.d[0] * ys.d[1] * ys.d[2];
    for (int n = 0; n < B; n++)
        for (int c = 0; c < xs.d[0]; c++)
            for (int h = 0; h < ys.d[1]; h++) {
                size_t xo = n * xsz + ((size_t)c * xs.d[1] + (size_t)h * stride) * xs.d[2];
                size_t yo = n * ysz + ((size_t)(c + front) * ys.d[1] + h) * ys.d[2];
                if (!backward) for (int w = 0; w < ys.d[2]; w++) to[yo + w] += from[xo + (size_t)w * stride];
                else if (!relu_y) for (int w = 0; w < ys.d[2]; w++) to[xo + (size_t)w * stride] += from[yo + w];
                else
                    for (int w = 0; w < ys.d[2]; w++)
                        to[xo + (size_t)w * stride] += relu_grad(from[yo + w], relu_y[yo + w]);
            }
}

/* Option A with stride 2 (ResNet's downsampling blocks) as plane kernels
 * the compiler vectorises (a constant stride: permutes instead of one
 * scalar load per element; a call per plane, not per row). Forward, row h:
 * y[w] = relu(z[w] + x[2h][2w]), z = a, or with
 * a folded batch norm (bn) a·fa + fb: the operations of affine_add_relu /
 * add2_relu on the gathered row. Backward, written (rf_nn_run.fresh):
 * d[2w] = relu_grad(dy[w], y[w]), every other element of the row +0:
 * what the zeroed row plus shortcut_a's adds holds (relu_grad is +0 + g,
 * never -0, and +0 + it is itself). */
typedef float am_v8f __attribute__((vector_size(32)));
typedef int32_t am_v8i __attribute__((vector_size(32)));
#define AM_LD(T, p) __extension__({ T v_; memcpy(&v_, (p), sizeof v_); v_; })
#define AM_ST(p, v) __extension__({ __typeof__(v) v_ = (v); memcpy((p), &v_, sizeof v_); })

RF_NN_VEC static void add_relu_s2(float *restrict y, const float *restrict a, const float *restrict x, int OH, int OW,
                                  int W, int bn, float fa, float fb) {
    const am_v8f va = {fa, fa, fa, fa, fa, fa, fa, fa}, vb = {fb, fb, fb, fb, fb, fb, fb, fb}, z = {0};
    const int n8 = W == 2 * OW ? OW & ~7 : 0;   /* 8 outputs from 16 inputs: one shuffle */
    for (int h = 0; h < OH; h++, y += OW, a += OW, x += 2 * (size_t)W) {
        for (int w = 0; w < n8; w += 8) {
            am_v8f xe = __builtin_shuffle(AM_LD(am_v8f, x + 2 * w), AM_LD(am_v8f, x + 2 * w + 8),
                                          (am_v8i){0, 2, 4, 6, 8, 10, 12, 14});
            am_v8f av = AM_LD(am_v8f, a + w), t = bn ? (av * va + vb) + xe : av + xe;
            AM_ST(y + w, (am_v8f)((am_v8i)t & (t > z)));
        }
        for (int w = n8; w < OW; w++) {
            float t = bn ? (a[w] * fa + fb) + x[2 * w] : a[w] + x[2 * w];
            y[w] = t > 0.0f ? t : 0.0f;
        }
    }
}

/* A whole plane of it: H x W rows of d from OH x OW of dy and y (even rows
 * from row h / 2, odd rows +0), in one call (per row, the calls and the
 * odd rows' memsets cost more than the stores). */
RF_NN_VEC static void relu_grad_s2_set(float *restrict d, const float *restrict dy, const float *restrict y, int OH,
                                       int OW, int H, int W) {
    const int32_t *yb = (const int32_t *)(const void *)y;
    const am_v8f z = {0};
    const int n8 = W == 2 * OW ? OW & ~7 : 0;
    for (int h = 0; h < H; h++, d += W) {
        if (h % 2 || h / 2 >= OH) {
            for (int k = 0; k < W; k++) d[k] = 0.0f;
            continue;
        }
        const float *g = dy + (size_t)(h / 2) * OW;
        const int32_t *b = yb + (size_t)(h / 2) * OW;
        int w = 0;
        for (; w < n8; w += 8) {
            am_v8f v = z + (am_v8f)((am_v8i)AM_LD(am_v8f, g + w) & (AM_LD(am_v8i, b + w) > (am_v8i){0}));
            AM_ST(d + 2 * w, __builtin_shuffle(v, z, (am_v8i){0, 8, 1, 9, 2, 10, 3, 11}));
            AM_ST(d + 2 * w + 8, __builtin_shuffle(v, z, (am_v8i){4, 12, 5, 13, 6, 14, 7, 15}));
        }
        for (; w < OW && 2 * w + 1 < W; w++) {
            d[2 * w] = 0.0f + (b[w] > 0 ? g[w] : 0.0f);
            d[2 * w + 1] = 0.0f;
        }
        for (int k = 2 * w; k < W; k++) d[k] = 0.0f;
        if (w < OW && 2 * w < W) d[2 * w] = 0.0f + (b[w] > 0 ? g[w] : 0.0f);
    }
}

/* shortcut_a's backward into a gradient nobody wrote yet (fresh), relu_y
 * the fused ReLU's output: every element of dx written, the value the
 * zeroed gradient plus shortcut_a's adds would hold. */
static void shortcut_a_set(const rf_layer *L, float *dx, const float *dy, rf_shape3 xs, int B, const float *relu_y) {
    int stride, front;
    rf_shape3 ys = L->out;
    if (!rf_nn_add_shortcut(L, xs, &stride, &front)) return;   /* checked at setup */
    size_t xsz = (size_t)xs.d[0] * xs.d[1] * xs.d[2], ysz = (size_t)ys.d[0] * ys.d[1] * ys.d[2];
    for (int n = 0; n < B; n++)
        for (int c = 0; c < xs.d[0]; c++) {
            float *d = dx + n * xsz + (size_t)c * xs.d[1] * xs.d[2];
            size_t yo = n * ysz + (size_t)(c + front) * ys.d[1] * ys.d[2];
            if (stride == 2) {
                relu_grad_s2_set(d, dy + yo, relu_y + yo, ys.d[1], ys.d[2], xs.d[1], xs.d[2]);
                continue;
            }
            memset(d, 0, (size_t)xs.d[1] * xs.d[2] * sizeof(float));
            for (int oh = 0; oh < ys.d[1]; oh++)
                for (int w = 0; w < ys.d[2]; w++) {
                    size_t k = (size_t)oh * ys.d[2] + (size_t)w;
                    d[(size_t)oh * stride * xs.d[2] + (size_t)w * stride] = relu_grad(dy[yo + k], relu_y[yo + k]);
                }
        }
}

static rf_status add_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    size_t n = numel(r);
    int k = 1;
    if (same_shape(r->in_shape[1], L->out)) rf_nn_ew(r->eng, add2, r->out, r->ins[0], r->ins[1], n), k = 2;
    else memcpy(r->out, r->ins[0], n * sizeof(float));
    for (; k < L->n_inputs; k++) {
        if (same_shape(r->in_shape[k], L->out)) rf_nn_ew(r->eng, add_ew, r->out, r->ins[k], NULL, n);
        else shortcut_a(L, r->out, r->ins[k], r->in_shape[k], r->B, 0, NULL);
    }
    return RF_OK;
}

static void add_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    size_t n = numel(r);
    for (int k = 0; k < L->n_inputs; k++) {
        if (!r->dins[k]) continue;
        if (same_shape(r->in_shape[k], L->out)) rf_nn_ew(r->eng, add_ew, r->dins[k], r->dout, NULL, n);
        else shortcut_a(L, r->dins[k], r->dout, r->in_shape[k], r->B, 1, NULL);
    }
}

/* ---- add fused with the ReLU after it (model.c) ------------------------------
 * Two inputs. Forward: y = max(in0 + in1, 0) in one pass (option A: the
 * channels the shortcut reaches get in0 + x, the others in0, each then
 * through the ReLU), the bits of add then relu. Backward: r->out is the
 * ReLU's output and r->dout its gradient; each input gets relu_grad where
 * add's backward would pass on the add's gradient, inputs in the same
 * order. */
RF_NN_VEC static void add2_relu(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = a[i] + b[i];
        y[i] = s > 0.0f ? s : 0.0f;
    }
}
RF_NN_VEC static void relu_v(float *y, const float *a, const float *b, size_t n) {
    (void)b;
    for (size_t i = 0; i < n; i++) y[i] = a[i] > 0.0f ? a[i] : 0.0f;
}

#define ADD_ROW 64

/* A batch norm folded into the add (model.c, "bn fold"; rf_nn_run.bn_x):
 * input 0's value z = x·a + b (batch norm's plane_affine) made in
 * registers, then the add and the ReLU as add2_relu / relu_v do them
 * (s NULL: relu(z)). Uncontracted (-ffp-contract=off), so z rounds as
 * batch norm's stored output did: the same bits. */
RF_NN_VEC static void affine_add_relu(float *restrict y, const float *restrict x, const float *restrict s, size_t n,
                                      float a, float b) {
    if (s)
        for (size_t i = 0; i < n; i++) {
            float t = (x[i] * a + b) + s[i];
            y[i] = t > 0.0f ? t : 0.0f;
        }
    else
        for (size_t i = 0; i < n; i++) {
            float z = x[i] * a + b;
            y[i] = z > 0.0f ? z : 0.0f;
        }
}
void rf_nn_affine_add_relu(float *y, const float *x, const float *s, size_t n, float a, float b) {
    affine_add_relu(y, x, s, n, a, b);
}

/* The composition it replaces: batch norm's output into a buffer, then the
 * add's loops. */
void rf_nn_affine_add_relu_ref(float *y, const float *x, const float *s, size_t n, float a, float b) {
    float z[ADD_ROW];
    for (size_t o = 0; o < n; o += ADD_ROW) {
        size_t len = n - o < ADD_ROW ? n - o : ADD_ROW;
        for (size_t i = 0; i < len; i++) z[i] = x[o + i] * a + b;
        if (s) add2_relu(y + o, z, s + o, len);
        else relu_v(y + o, z, NULL, len);
    }
}

/* The folded batch norm's a, b of channel c. */
static void bn_map(const rf_nn_run *r, int c, float *a, float *b) {
    const float *m = rf_nn_bn_affine(r->bn_save, r->L->out.d[0]);
    *a = m[c];
    *b = m[r->L->out.d[0] + c];
}

/* Identity add with the folded batch norm, planes [t·BC/n, (t+1)·BC/n)
 * of the batch's B·C (elementwise: any split gives the same bits). */
static void fold_add_part(void *arg, int t, int n) {
    const rf_nn_run *r = arg;
    size_t hw = (size_t)r->L->out.d[1] * r->L->out.d[2], C = (size_t)r->L->out.d[0], p0, p1;
    rf_nn_span((size_t)r->B * C, t, n, &p0, &p1);
    for (size_t p = p0; p < p1; p++) {
        float a, b;
        bn_map(r, (int)(p % C), &a, &b);
        affine_add_relu(r->out + p * hw, r->bn_x + p * hw, r->ins[1] + p * hw, hw, a, b);
    }
}

/* Option A forward, one pass per sample: y = relu(in0 + x_sub) on the
 * channels [front, front + C_x), relu(in0) elsewhere. */
static void add_relu_shortcut_fwd(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    rf_shape3 xs = r->in_shape[1], ys = L->out;
    int stride, front;
    if (!rf_nn_add_shortcut(L, xs, &stride, &front)) return;   /* checked at setup */
    size_t xsz = (size_t)xs.d[0] * xs.d[1] * xs.d[2], hw = (size_t)ys.d[1] * ys.d[2];
    for (int n = 0; n < r->B; n++) {
        const float *a = (r->bn_x ? r->bn_x : r->ins[0]) + (size_t)n * L->out_size;
        float *y = r->out + (size_t)n * L->out_size;
        for (int c = 0; c < ys.d[0]; c++) {
            int cx = c - front;
            float fa = 0.0f, fb = 0.0f;
            if (r->bn_x) bn_map(r, c, &fa, &fb);
            if (cx < 0 || cx >= xs.d[0]) {
                if (r->bn_x) affine_add_relu(y + (size_t)c * hw, a + (size_t)c * hw, NULL, hw, fa, fb);
                else relu_v(y + (size_t)c * hw, a + (size_t)c * hw, NULL, hw);
                continue;
            }
            if (stride == 2) {   /* a plane (rows h / 2 of x's even rows) per call */
                add_relu_s2(y + (size_t)c * hw, a + (size_t)c * hw, r->ins[1] + n * xsz + (size_t)cx * xs.d[1] * xs.d[2],
                            ys.d[1], ys.d[2], xs.d[2], r->bn_x != NULL, fa, fb);
                continue;
            }
            for (int h = 0; h < ys.d[1]; h++) {
                const float *x = r->ins[1] + n * xsz + ((size_t)cx * xs.d[1] + (size_t)h * stride) * xs.d[2];
                size_t yo = ((size_t)c * ys.d[1] + h) * ys.d[2];
                /* the strided row gathered, then the vector loop (a scalar
                 * select here compiles to a branch that mispredicts) */
                for (int w0 = 0; w0 < ys.d[2]; w0 += ADD_ROW) {
                    int nw = ys.d[2] - w0 < ADD_ROW ? ys.d[2] - w0 : ADD_ROW;
                    float row[ADD_ROW];
                    for (int w = 0; w < nw; w++) row[w] = x[(size_t)(w0 + w) * stride];
                    if (r->bn_x) affine_add_relu(y + yo + w0, a + yo + w0, row, (size_t)nw, fa, fb);
                    else add2_relu(y + yo + w0, a + yo + w0, row, (size_t)nw);
                }
            }
        }
    }
}

rf_status rf_nn_add_forward_relu(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    if (same_shape(r->in_shape[1], L->out)) {
        if (r->bn_x) {
            int parts = rf_nn_parts(r->eng, (double)numel(r), 1 << 15);
            size_t planes = (size_t)r->B * (size_t)L->out.d[0];
            rf_nn_par(r->eng, (size_t)parts < planes ? parts : (int)planes, fold_add_part, (void *)r);
        } else rf_nn_ew(r->eng, add2_relu, r->out, r->ins[0], r->ins[1], numel(r));
    } else add_relu_shortcut_fwd(r);
    return RF_OK;
}

typedef struct add_relu_job { float *d0, *d1; const float *dy, *y; size_t n; unsigned fresh; } add_relu_job;

/* d0 += g, then d1 += g (each when not NULL), g = relu_grad(dy, y): per
 * element the additions of add's backward in its input order (d0 and d1
 * may be the same buffer: an input read twice). A fresh gradient (bit 0:
 * d0, bit 1: d1; never both on one buffer) is set to g, which is what +0
 * + g gives (g = +0 + ..., never -0). */
RF_NN_VEC static void relu_grad_add2(float *d0, float *d1, const float *dy, const float *y, size_t n,
                                     unsigned fresh) {
    const int32_t *yb = (const int32_t *)(const void *)y;
    if (d0 && d1 && fresh == 1)
        for (size_t i = 0; i < n; i++) {
            float g = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
            d0[i] = g;
            d1[i] += g;
        }
    else if (d0 && d1 && fresh == 2)
        for (size_t i = 0; i < n; i++) {
            float g = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
            d0[i] += g;
            d1[i] = g;
        }
    else if (d0 && d1 && fresh == 3)
        for (size_t i = 0; i < n; i++) {
            float g = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
            d0[i] = g;
            d1[i] = g;
        }
    else if (d0 && d1)
        for (size_t i = 0; i < n; i++) {
            float g = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
            d0[i] += g;
            d1[i] += g;
        }
    else {
        float *d = d0 ? d0 : d1;
        if (d && (fresh & (d0 ? 1u : 2u)))
            for (size_t i = 0; i < n; i++) d[i] = 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
        else
            for (size_t i = 0; d && i < n; i++) d[i] += 0.0f + (yb[i] > 0 ? dy[i] : 0.0f);
    }
}

static void add_relu_part(void *arg, int t, int n) {
    const add_relu_job *j = arg;
    size_t lo, hi;
    rf_nn_span_aligned(j->n, 16, t, n, &lo, &hi);
    if (hi > lo)
        relu_grad_add2(j->d0 ? j->d0 + lo : NULL, j->d1 ? j->d1 + lo : NULL, j->dy + lo, j->y + lo, hi - lo, j->fresh);
}

void rf_nn_add_backward_relu(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    size_t n = numel(r);
    int same1 = same_shape(r->in_shape[1], L->out);
    add_relu_job j = {r->skip_in0 ? NULL : r->dins[0], same1 ? r->dins[1] : NULL, r->dout, r->out, n,
                      r->fresh & (same1 ? 3u : 1u)};
    if (j.d0 || j.d1) rf_nn_par(r->eng, rf_nn_parts(r->eng, (double)n, 1 << 15), add_relu_part, &j);
    if (!same1 && r->dins[1]) {
        if (r->fresh & 2u) shortcut_a_set(L, r->dins[1], r->dout, r->in_shape[1], r->B, r->out);
        else shortcut_a(L, r->dins[1], r->dout, r->in_shape[1], r->B, 1, r->out);
    }
}

static const char *const add_keys[] = {"shortcut", "front", NULL};
const rf_nn_op rf_nn_op_add = {"add", add_keys, add_setup, NULL, add_forward, add_backward,
                               NULL, NULL, NULL, 0, RF_NN_CONN_SUM, RF_NN_MAX_INPUTS, 0};

/* ---- residual: out = in + output of layer `from` (He et al. 2016, eq. 1) ---
 * "from": an earlier layer's index, its name, or -1 for the model input; it
 * becomes the layer's second input, and the layer runs as a two-input add. */
static rf_status residual_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "from");
    if (!f) return rf_nn_err(b, RF_ERR_SPEC, "missing \"from\"");
    int from = -2;
    if (cJSON_IsString(f)) {
        for (int i = 0; i < b->index; i++)
            if (strcmp(b->layers[i].name, f->valuestring) == 0) from = i;
        if (from == -2) return rf_nn_err(b, RF_ERR_SPEC, "\"from\": no earlier layer named \"%s\"", f->valuestring);
    } else {
        RF_TRY(rf_nn_int(b, j, "from", -2, -1, b->index - 1, &from));
    }
    L->inputs[1] = from;
    L->n_inputs = 2;
    rf_shape3 s = rf_nn_input_shape(b, L, 1, NULL);
    if (!same_shape(s, L->in))
        return rf_nn_err(b, RF_ERR_SHAPE, "source %s has shape %dx%dx%d, input is %dx%dx%d",
                         from >= 0 ? "layer" : "(model input)", s.d[0], s.d[1], s.d[2], L->in.d[0], L->in.d[1],
                         L->in.d[2]);
    rf_nn_set_out(L, L->in.d[0], L->in.d[1], L->in.d[2], b->in_kind);
    return RF_OK;
}

static const char *const residual_keys[] = {"from", NULL};
const rf_nn_op rf_nn_op_residual = {"residual", residual_keys, residual_setup, NULL, add_forward, add_backward,
                                    NULL, NULL, NULL, 0, RF_NN_CONN_SUM, 1, 0};

/* ---- concat: images along channels, flat vectors end to end ----------------
 * Per sample, input k's C_k·H·W values follow those of inputs 0 .. k-1, so
 * the output's channels are the inputs' channels in order (torch.cat(dim=1)). */
static rf_status concat_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    if (L->n_inputs < 2) return rf_nn_err(b, RF_ERR_SPEC, "needs at least 2 \"inputs\"");
    rf_nn_kind k0;
    rf_shape3 o = rf_nn_input_shape(b, L, 0, &k0);
    if (k0 == RF_NN_TOKENS) return rf_nn_err(b, RF_ERR_SHAPE, "joins images (along channels) or flat vectors, not token sequences");
    long c = 0;
    for (int k = 0; k < L->n_inputs; k++) {
        rf_nn_kind kk;
        rf_shape3 s = rf_nn_input_shape(b, L, k, &kk);
        if (kk != k0 || s.d[1] != o.d[1] || s.d[2] != o.d[2])
            return rf_nn_err(b, RF_ERR_SHAPE, "input '%s' has shape %dx%dx%d, input '%s' has %dx%dx%d (only channels may differ)",
                             rf_nn_input_name(b, L, 0), o.d[0], o.d[1], o.d[2], rf_nn_input_name(b, L, k), s.d[0],
                             s.d[1], s.d[2]);
        c += s.d[0];
    }
    if (c > (1L << 24)) return rf_nn_err(b, RF_ERR_SHAPE, "%ld channels out of range", c);
    rf_nn_set_out(L, (int)c, o.d[1], o.d[2], k0);
    return RF_OK;
}

static size_t shape_numel(rf_shape3 s) { return (size_t)s.d[0] * s.d[1] * s.d[2]; }

static rf_status concat_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    for (int n = 0; n < r->B; n++) {
        float *y = r->out + (size_t)n * L->out_size;
        for (int k = 0; k < L->n_inputs; k++) {
            size_t sz = shape_numel(r->in_shape[k]);
            memcpy(y, r->ins[k] + (size_t)n * sz, sz * sizeof(float));
            y += sz;
        }
    }
    return RF_OK;
}

static void concat_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    for (int n = 0; n < r->B; n++) {
        const float *dy = r->dout + (size_t)n * L->out_size;
        for (int k = 0; k < L->n_inputs; k++) {
            size_t sz = shape_numel(r->in_shape[k]);
            if (r->dins[k]) rf_nn_add(r->dins[k] + (size_t)n * sz, dy, sz);
            dy += sz;
        }
    }
}

static const char *const no_keys[] = {NULL};
const rf_nn_op rf_nn_op_concat = {"concat", no_keys, concat_setup, NULL, concat_forward, concat_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_CONCAT, RF_NN_MAX_INPUTS, 0};
