/* Normalisation layers: batch norm (Ioffe & Szegedy 2015, Alg. 1 and 2) and
 * layer norm (Ba et al. 2016, eq. 4), plus the row kernels the transformer
 * block reuses. */
#include "nn/layers.h"

#include <math.h>
#include <string.h>

/* ---- layer norm rows ------------------------------------------------------ */
RF_NN_VEC static void layernorm_fwd_v(float *y, float *stats, const float *x, const float *g, const float *b,
                         int rows, int D, float eps) {
    const int n16 = D & ~(RF_NN_LANES - 1);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D;
        float *yr = y + (size_t)r * D;
        float acc[RF_NN_LANES] = {0.0f};
        for (int i = 0; i < n16; i += RF_NN_LANES)
            for (int l = 0; l < RF_NN_LANES; l++) acc[l] += xr[i + l];
        for (int i = n16; i < D; i++) acc[i - n16] += xr[i];
        float mean = rf_nn_lanes_sum(acc) / (float)D;
        float sq[RF_NN_LANES] = {0.0f};
        for (int i = 0; i < n16; i += RF_NN_LANES)
            for (int l = 0; l < RF_NN_LANES; l++) { float d = xr[i + l] - mean; sq[l] += d * d; }
        for (int i = n16; i < D; i++) { float d = xr[i] - mean; sq[i - n16] += d * d; }
        float var = rf_nn_lanes_sum(sq) / (float)D;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < D; i++) yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
        stats[2 * r] = mean;
        stats[2 * r + 1] = rstd;
    }
}
void rf_nn_layernorm_fwd(float *y, float *stats, const float *x, const float *g, const float *b,
                         int rows, int D, float eps) { layernorm_fwd_v(y, stats, x, g, b, rows, D, eps); }

/* Feature-major: x, y [D][ld], columns [0, M). Per column the operations of
 * layernorm_fwd_v in its order (feature i in lane i % 16, lanes combined by
 * rf_nn_lanes_sum), vectorised across a block of columns instead of along
 * the row: the same values. */
#define LN_COLS 64
RF_NN_VEC static void layernorm_fwd_feat_v(float *y, const float *x, const float *g, const float *b, int M,
                                           int D, int ld, float eps) {
    float acc[RF_NN_LANES][LN_COLS], mean[LN_COLS], rstd[LN_COLS], lane[RF_NN_LANES];
    for (int c0 = 0; c0 < M; c0 += LN_COLS) {
        int nc = M - c0 < LN_COLS ? M - c0 : LN_COLS;
        memset(acc, 0, sizeof acc);
        for (int i = 0; i < D; i++) {
            const float *xr = x + (size_t)i * ld + c0;
            float *a = acc[i & (RF_NN_LANES - 1)];
            for (int c = 0; c < nc; c++) a[c] += xr[c];
        }
        for (int c = 0; c < nc; c++) {
            for (int l = 0; l < RF_NN_LANES; l++) lane[l] = acc[l][c];
            mean[c] = rf_nn_lanes_sum(lane) / (float)D;
        }
        memset(acc, 0, sizeof acc);
        for (int i = 0; i < D; i++) {
            const float *xr = x + (size_t)i * ld + c0;
            float *a = acc[i & (RF_NN_LANES - 1)];
            for (int c = 0; c < nc; c++) { float d = xr[c] - mean[c]; a[c] += d * d; }
        }
        for (int c = 0; c < nc; c++) {
            for (int l = 0; l < RF_NN_LANES; l++) lane[l] = acc[l][c];
            float var = rf_nn_lanes_sum(lane) / (float)D;
            rstd[c] = 1.0f / sqrtf(var + eps);
        }
        for (int i = 0; i < D; i++) {
            const float *xr = x + (size_t)i * ld + c0;
            float *yr = y + (size_t)i * ld + c0;
            for (int c = 0; c < nc; c++) yr[c] = (xr[c] - mean[c]) * rstd[c] * g[i] + b[i];
        }
    }
}
void rf_nn_layernorm_fwd_feat(float *y, const float *x, const float *g, const float *b, int M, int D, int ld,
                              float eps) { layernorm_fwd_feat_v(y, x, g, b, M, D, ld, eps); }

RF_NN_VEC static void layernorm_bwd_v(float *dx, float *dg, float *db, const float *dy, const float *x,
                         const float *stats, const float *g, int rows, int D) {
    const int n16 = D & ~(RF_NN_LANES - 1);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * D, *dyr = dy + (size_t)r * D;
        float mean = stats[2 * r], rstd = stats[2 * r + 1];
        float a1[RF_NN_LANES] = {0.0f}, a2[RF_NN_LANES] = {0.0f}; /* Σ dxhat, Σ dxhat · xhat */
        for (int i = 0; i < D; i++) {
            float xh = (xr[i] - mean) * rstd;
            dg[i] += dyr[i] * xh;
            db[i] += dyr[i];
        }
        for (int i = 0; i < n16; i += RF_NN_LANES)
            for (int l = 0; l < RF_NN_LANES; l++) {
                float xh = (xr[i + l] - mean) * rstd, dxh = dyr[i + l] * g[i + l];
                a1[l] += dxh;
                a2[l] += dxh * xh;
            }
        for (int i = n16; i < D; i++) {
            float xh = (xr[i] - mean) * rstd, dxh = dyr[i] * g[i];
            a1[i - n16] += dxh;
            a2[i - n16] += dxh * xh;
        }
        if (!dx) continue;
        float s1 = rf_nn_lanes_sum(a1) / (float)D, s2 = rf_nn_lanes_sum(a2) / (float)D;
        float *dxr = dx + (size_t)r * D;
        for (int i = 0; i < D; i++) {
            float xh = (xr[i] - mean) * rstd;
            dxr[i] += rstd * (dyr[i] * g[i] - s1 - xh * s2);
        }
    }
}
void rf_nn_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                         const float *stats, const float *g, int rows, int D) { layernorm_bwd_v(dx, dg, db, dy, x, stats, g, rows, D); }

/* ---- layer norm layer: over D of each token, or over a flat vector -------- */
static int ln_rows(const rf_layer *L) { return L->ip[7] == RF_NN_TOKENS ? L->in.d[0] : 1; }
static int ln_dim(const rf_layer *L) { return L->ip[7] == RF_NN_TOKENS ? L->in.d[1] : (int)L->in_size; }

static rf_status ln_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_TOKENS) | RF_NN_K(RF_NN_FLAT)));
    RF_TRY(rf_nn_float(b, j, "eps", 1e-5, 0.0, 1.0, &L->fp[0]));
    rf_nn_set_out(L, L->in.d[0], L->in.d[1], L->in.d[2], b->in_kind);
    int D = ln_dim(L);
    RF_TRY(rf_nn_param(b, L, "weight", RF_P_NORM, 1, D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "bias", RF_P_NORM, 1, D, 0, 0, 0));
    L->save_numel = 2 * (size_t)ln_rows(L);
    return RF_OK;
}

static rf_status ln_forward(const rf_nn_run *r) {
    rf_nn_layernorm_fwd(r->out, r->save, r->in, r->p[0], r->p[1], r->B * ln_rows(r->L), ln_dim(r->L), r->L->fp[0]);
    return RF_OK;
}

static void ln_backward(const rf_nn_run *r) {
    rf_nn_layernorm_bwd(r->din, r->g[0], r->g[1], r->dout, r->in, r->save, r->p[0], r->B * ln_rows(r->L),
                        ln_dim(r->L));
}

static rf_status ln_forward_feat(const rf_nn_feat *f) {
    rf_nn_layernorm_fwd_feat(f->out, f->in, f->r->p[0], f->r->p[1], f->r->B * ln_rows(f->r->L), ln_dim(f->r->L),
                             f->ldo, f->r->L->fp[0]);
    return RF_OK;
}

static const char *const ln_keys[] = {"eps", NULL};
const rf_nn_op rf_nn_op_layernorm = {"layernorm", ln_keys, ln_setup, NULL, ln_forward, ln_backward,
                                     rf_nn_feat_always, ln_forward_feat, NULL, 0, RF_NN_CONN_ALL, 0, 0};

/* ---- batch norm: per channel of an image, or per feature of a vector ------
 * Buffers: running_mean [C], running_var [C]. Saved: the statistics used
 * (batch or running) as mean[C], rstd[C], so backward works in both modes. */
static rf_status bn_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_IMAGE) | RF_NN_K(RF_NN_FLAT)));
    RF_TRY(rf_nn_float(b, j, "eps", 1e-5, 0.0, 1.0, &L->fp[0]));
    RF_TRY(rf_nn_float(b, j, "momentum", 0.1, 0.0, 1.0, &L->fp[1]));
    rf_nn_set_out(L, L->in.d[0], L->in.d[1], L->in.d[2], b->in_kind);
    int C = L->in.d[0];
    RF_TRY(rf_nn_param(b, L, "weight", RF_P_NORM, 1, C, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "bias", RF_P_NORM, 1, C, 0, 0, 0));
    L->buf_numel = 2 * (size_t)C;
    /* per sample: generous; holds the 2C statistics, then a folded batch
     * norm's affine map (rf_nn_bn_affine) */
    L->save_numel = 4 * (size_t)C;
    return RF_OK;
}

/* Per-channel sums in RF_NN_LANES double lanes: lane l adds the elements
 * i ≡ l (mod 16) of each full 16-block of a sample's plane, the plane's
 * tail goes to lanes 0 .. hw%16 - 1, planes in sample order, and the lanes
 * are combined by rf_nn_lanes_sum's fixed tree. The same additions in the
 * same order on every ISA, in vectors: one serial double sum per channel
 * was 17% of a ResNet-20 training step. Accumulators are locals so that
 * they live in registers (the build has -fno-strict-aliasing). */
static double lanes_sum_d(const double *a) {
    double b[8], c[4];
    for (int l = 0; l < 8; l++) b[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) c[l] = b[l] + b[l + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* The plane kernels below sum in RF_NN_LANES double lanes (lane l: the
 * elements i ≡ l mod 16 of the 16-blocks, in order; the tail in lanes 0 ..).
 * They are written with GCC vector types, lanes 0-7 in one vector and 8-15
 * in another: plain loops left half of the lanes scalar (plane_grads: 112
 * scalar double operations in its loop). Each lane's operations are the
 * plain reference's (rf_nn_bn_sums_ref), in its order, elementwise and
 * uncontracted (-std=c11: -ffp-contract=off), so the bits are the same on
 * every ISA clone. */
typedef double bn_v8d __attribute__((vector_size(64)));
typedef float bn_v8f __attribute__((vector_size(32)));
typedef int bn_v8i __attribute__((vector_size(32)));
#define BN_LD8F(p) __extension__({ bn_v8f f_; memcpy(&f_, (p), sizeof f_); f_; })
#define BN_LD8(p) __builtin_convertvector(BN_LD8F(p), bn_v8d)
#define BN_SPLAT(v) ((bn_v8d){(v), (v), (v), (v), (v), (v), (v), (v)})
#define BN_SPLATF(v) ((bn_v8f){(v), (v), (v), (v), (v), (v), (v), (v)})

/* The ReLU gradient after a fused batch norm (bn_backward_span) for 8
 * lanes: +0 + (z > 0 ? dy : +0), z = x·a + b. */
#define BN_RELU_DZ8(dyp, xp, av, bv) \
    (BN_SPLATF(0.0f) + (bn_v8f)((bn_v8i)BN_LD8F(dyp) & (BN_LD8F(xp) * (av) + (bv) > BN_SPLATF(0.0f))))

/* BN_RELU_DZ8 for one element (the planes' tails, plane_dx_relu). */
static inline float bn_relu_dz1(float dy, float x, float fa, float fb) {
    float z = x * fa + fb;
    return 0.0f + (z > 0.0f ? dy : 0.0f);
}

/* acc += x, or (x − mu)² when sq (forward statistics). */
RF_NN_VEC static void plane_stats(double *acc, const float *x, size_t hw, double mu, int sq) {
    bn_v8d a0, a1, m = BN_SPLAT(mu);
    memcpy(&a0, acc, sizeof a0);
    memcpy(&a1, acc + 8, sizeof a1);
    size_t n16 = hw & ~(size_t)(RF_NN_LANES - 1);
    if (sq) {
        for (size_t i = 0; i < n16; i += RF_NN_LANES) {
            bn_v8d d0 = BN_LD8(x + i) - m, d1 = BN_LD8(x + i + 8) - m;
            a0 += d0 * d0;
            a1 += d1 * d1;
        }
    } else {
        for (size_t i = 0; i < n16; i += RF_NN_LANES) {
            a0 += BN_LD8(x + i);
            a1 += BN_LD8(x + i + 8);
        }
    }
    memcpy(acc, &a0, sizeof a0);
    memcpy(acc + 8, &a1, sizeof a1);
    if (sq)
        for (size_t i = n16; i < hw; i++) { double d = (double)x[i] - mu; acc[i - n16] += d * d; }
    else
        for (size_t i = n16; i < hw; i++) acc[i - n16] += (double)x[i];
}

/* One-pass statistics (engine bn=onepass): s += x − k, q += (x − k)² in
 * the lanes of plane_stats, k the channel's first element (a shift that
 * keeps the squares' sum from cancelling when the mean is large next to
 * the spread; Chan, Golub & LeVeque 1983). x − k is exact in double, its
 * square is exact in double (2·24 bits), so only the sums round. */
RF_NN_VEC static void plane_stats1(double *s, double *q, const float *x, size_t hw, double k) {
    bn_v8d a0, a1, b0, b1, kk = BN_SPLAT(k);
    memcpy(&a0, s, sizeof a0);
    memcpy(&a1, s + 8, sizeof a1);
    memcpy(&b0, q, sizeof b0);
    memcpy(&b1, q + 8, sizeof b1);
    size_t n16 = hw & ~(size_t)(RF_NN_LANES - 1);
    for (size_t i = 0; i < n16; i += RF_NN_LANES) {
        bn_v8d d0 = BN_LD8(x + i) - kk, d1 = BN_LD8(x + i + 8) - kk;
        a0 += d0;
        a1 += d1;
        b0 += d0 * d0;
        b1 += d1 * d1;
    }
    memcpy(s, &a0, sizeof a0);
    memcpy(s + 8, &a1, sizeof a1);
    memcpy(q, &b0, sizeof b0);
    memcpy(q + 8, &b1, sizeof b1);
    for (size_t i = n16; i < hw; i++) { double d = (double)x[i] - k; s[i - n16] += d; q[i - n16] += d * d; }
}

/* a1 += dy, a2 += dy·(x − mu) (backward sums); relu: dy is first replaced
 * by the fused ReLU's gradient dz (plane_relu_dz with the forward's a, b),
 * made in registers (bn_backward_span). */
RF_NN_VEC static void plane_grads(double *a1, double *a2, const float *dy, const float *x, size_t hw, double mu,
                                  int relu, float fa, float fb) {
    bn_v8d s0, s1, t0, t1, m = BN_SPLAT(mu);
    bn_v8f av = BN_SPLATF(fa), bv = BN_SPLATF(fb);
    memcpy(&s0, a1, sizeof s0);
    memcpy(&s1, a1 + 8, sizeof s1);
    memcpy(&t0, a2, sizeof t0);
    memcpy(&t1, a2 + 8, sizeof t1);
    size_t n16 = hw & ~(size_t)(RF_NN_LANES - 1);
    if (relu) {
        for (size_t i = 0; i < n16; i += RF_NN_LANES) {
            bn_v8d g0 = __builtin_convertvector(BN_RELU_DZ8(dy + i, x + i, av, bv), bn_v8d);
            bn_v8d g1 = __builtin_convertvector(BN_RELU_DZ8(dy + i + 8, x + i + 8, av, bv), bn_v8d);
            s0 += g0;
            s1 += g1;
            t0 += g0 * (BN_LD8(x + i) - m);
            t1 += g1 * (BN_LD8(x + i + 8) - m);
        }
    } else {
        for (size_t i = 0; i < n16; i += RF_NN_LANES) {
            bn_v8d g0 = BN_LD8(dy + i), g1 = BN_LD8(dy + i + 8);
            s0 += g0;
            s1 += g1;
            t0 += g0 * (BN_LD8(x + i) - m);
            t1 += g1 * (BN_LD8(x + i + 8) - m);
        }
    }
    memcpy(a1, &s0, sizeof s0);
    memcpy(a1 + 8, &s1, sizeof s1);
    memcpy(a2, &t0, sizeof t0);
    memcpy(a2 + 8, &t1, sizeof t1);
    for (size_t i = n16; i < hw; i++) {
        float g = relu ? bn_relu_dz1(dy[i], x[i], fa, fb) : dy[i];
        a1[i - n16] += (double)g;
        a2[i - n16] += (double)g * ((double)x[i] - mu);
    }
}

/* The plain references of the plane kernels' sums, one element at a time
 * (test_bn compares them bit for bit): kind 0 the mean's sum (s += x), 1
 * the centred squares (s += (x − k)²), 2 the one-pass pair (s += x − k,
 * q += (x − k)²), 3 the backward pair (s += g, q += g·(x − k)) with g = dy,
 * or with relu the fused ReLU's gradient of z = x·fa + fb. */
void rf_nn_bn_sums_ref(int kind, double *s, double *q, const float *dy, const float *x, size_t hw, double k,
                       int relu, float fa, float fb) {
    for (size_t i = 0; i < hw; i++) {
        size_t l = i % RF_NN_LANES;
        double d = (double)x[i] - k;
        if (kind == 0) s[l] += (double)x[i];
        else if (kind == 1) s[l] += d * d;
        else if (kind == 2) { s[l] += d; q[l] += d * d; }
        else {
            float g = dy[i];
            if (relu) {
                float z = x[i] * fa + fb;
                g = 0.0f + (z > 0.0f ? dy[i] : 0.0f);
            }
            s[l] += (double)g;
            q[l] += (double)g * d;
        }
    }
}

void rf_nn_bn_sums(int kind, double *s, double *q, const float *dy, const float *x, size_t hw, double k, int relu,
                   float fa, float fb) {
    if (kind <= 1) plane_stats(s, x, hw, k, kind);
    else if (kind == 2) plane_stats1(s, q, x, hw, k);
    else plane_grads(s, q, dy, x, hw, k, relu, fa, fb);
}

RF_NN_VEC static void plane_affine(float *restrict y, const float *restrict x, size_t hw, float a, float b) {
    for (size_t i = 0; i < hw; i++) y[i] = x[i] * a + b;
}

/* The same followed by the ReLU (fusion, model.c): y = max(x·a + b, 0) in
 * relu's form, so the bits of plane_affine then relu's forward. */
RF_NN_VEC static void plane_affine_relu(float *restrict y, const float *restrict x, size_t hw, float a, float b) {
    for (size_t i = 0; i < hw; i++) {
        float z = x[i] * a + b;
        y[i] = z > 0.0f ? z : 0.0f;
    }
}

/* dx += k0·(dy − k1 − (x − mu)·rs·k2); set: into a gradient nobody wrote
 * yet (rf_nn_run.fresh), the value it would add to +0, stored. */
RF_NN_VEC static void plane_dx(float *restrict dx, const float *restrict dy, const float *restrict x, size_t hw,
                               float k0, float k1, float mu, float rs, float k2, int set) {
    if (set)
        for (size_t i = 0; i < hw; i++) dx[i] = 0.0f + k0 * (dy[i] - k1 - (x[i] - mu) * rs * k2);
    else
        for (size_t i = 0; i < hw; i++) dx[i] += k0 * (dy[i] - k1 - (x[i] - mu) * rs * k2);
}

/* plane_relu_dz then plane_dx (set: plane_dx_set) in one pass, the ReLU's
 * gradient made in registers instead of a buffer: the same operations. */
RF_NN_VEC static void plane_dx_relu(float *restrict dx, const float *restrict dy, const float *restrict x, size_t hw,
                                    float fa, float fb, float k0, float k1, float mu, float rs, float k2, int set) {
    if (set)
        for (size_t i = 0; i < hw; i++)
            dx[i] = 0.0f + k0 * (bn_relu_dz1(dy[i], x[i], fa, fb) - k1 - (x[i] - mu) * rs * k2);
    else
        for (size_t i = 0; i < hw; i++) dx[i] += k0 * (bn_relu_dz1(dy[i], x[i], fa, fb) - k1 - (x[i] - mu) * rs * k2);
}

/* The composition plane_dx_relu replaced, as its reference (test_bn):
 * the ReLU's gradient into a buffer, then the plain input-gradient loop. */
void rf_nn_bn_dx_relu_ref(float *dx, const float *dy, const float *x, size_t hw, float fa, float fb, float k0, float k1,
                          float mu, float rs, float k2, int set) {
    float dz[64];
    for (size_t o = 0; o < hw; o += 64) {
        size_t len = hw - o < 64 ? hw - o : 64;
        for (size_t i = 0; i < len; i++) {
            float z = x[o + i] * fa + fb, g = z > 0.0f ? dy[o + i] : 0.0f;
            dz[i] = 0.0f + g;
        }
        for (size_t i = 0; i < len; i++) {
            float v = k0 * (dz[i] - k1 - (x[o + i] - mu) * rs * k2);
            dx[o + i] = set ? 0.0f + v : dx[o + i] + v;
        }
    }
}
void rf_nn_bn_dx_relu(float *dx, const float *dy, const float *x, size_t hw, float fa, float fb, float k0, float k1,
                      float mu, float rs, float k2, int set) {
    plane_dx_relu(dx, dy, x, hw, fa, fb, k0, k1, mu, rs, k2, set);
}

/* A channel's planes are hw floats C·hw apart: the hardware prefetchers
 * follow a plane but do not jump to the next one, so the loops over the
 * batch ask for plane n + 1 (every 64-byte line) while they work on plane n.
 * On conv-4 the same for the Winograd input planes took a memory-bound pass
 * from 10% to 2.5% of a step (Zen 5, shared machine). Changes no value. */
static inline void prefetch_plane(const float *p, size_t hw) {
    for (size_t i = 0; i < hw; i += 16) __builtin_prefetch(p + i, 0, 3);
}
static inline void prefetch_plane_w(float *p, size_t hw) {
    for (size_t i = 0; i < hw; i += 16) __builtin_prefetch(p + i, 1, 3);
}

/* Sum over the batch of one channel's planes (sq: of (x − mu)²). */
static double chan_stats(const rf_nn_run *r, int c, double mu, int sq) {
    const rf_layer *L = r->L;
    size_t hw = (size_t)L->in.d[1] * L->in.d[2];
    double acc[RF_NN_LANES] = {0.0};
    for (int n = 0; n < r->B; n++) {
        const float *x = r->in + (size_t)n * L->in_size + (size_t)c * hw;
        if (!sq && n + 1 < r->B) prefetch_plane(x + L->in_size, hw);   /* the first pass reads from memory */
        plane_stats(acc, x, hw, mu, sq);
    }
    return lanes_sum_d(acc);
}

/* One read of a channel's planes: the batch mean and (biased) variance
 * from shifted sums. var = Q/n − (S/n)², clamped at 0 (rounding may leave
 * it a hair below when the spread is 0). */
static void chan_stats1(const rf_nn_run *r, int c, double cnt, double *mu, double *var) {
    const rf_layer *L = r->L;
    size_t hw = (size_t)L->in.d[1] * L->in.d[2];
    double s[RF_NN_LANES] = {0.0}, q[RF_NN_LANES] = {0.0};
    double k = (double)r->in[(size_t)c * hw];
    for (int n = 0; n < r->B; n++) {
        const float *x = r->in + (size_t)n * L->in_size + (size_t)c * hw;
        if (n + 1 < r->B) prefetch_plane(x + L->in_size, hw);
        plane_stats1(s, q, x, hw, k);
    }
    double m = lanes_sum_d(s) / cnt, v = lanes_sum_d(q) / cnt - m * m;
    *mu = k + m;
    *var = v > 0.0 ? v : 0.0;
}

/* The channels [c0, c1) of the forward: each channel's statistics are sums
 * over the whole batch in a fixed order, so parts split the channels. */
static void bn_forward_span(const rf_nn_run *r, int c0, int c1, int relu) {
    const rf_layer *L = r->L;
    int C = L->in.d[0];
    size_t hw = (size_t)L->in.d[1] * L->in.d[2];
    float *rmean = r->buf, *rvar = r->buf + C, *mean = r->save, *rstd = r->save + C;
    float eps = L->fp[0], mom = L->fp[1];
    double cnt = (double)r->B * (double)hw;
    for (int c = c0; c < c1; c++) {
        if (r->training) {
            /* twopass: mean then centred squares, the numerically safe form;
             * onepass: shifted sums in one read (engine option bn) */
            double mu, var;
            if (r->eng && r->eng->v[RF_ENGINE_BN] == RF_ENGINE_BN_ONEPASS) chan_stats1(r, c, cnt, &mu, &var);
            else {
                mu = chan_stats(r, c, 0.0, 0) / cnt;
                var = chan_stats(r, c, mu, 1) / cnt;
            }
            mean[c] = (float)mu;
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            /* Running variance uses the unbiased estimate, as PyTorch does. */
            double unb = cnt > 1.0 ? var * cnt / (cnt - 1.0) : var;
            rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * mu);
            rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * unb);
        } else {
            mean[c] = rmean[c];
            rstd[c] = 1.0f / sqrtf(rvar[c] + eps);
        }
        float a = rstd[c] * r->p[0][c], bb = r->p[1][c] - mean[c] * a;
        if (r->bn_fold) {   /* its reader applies the map (model.c, "bn fold") */
            r->save[2 * C + c] = a;
            r->save[3 * C + c] = bb;
            continue;
        }
        for (int n = 0; n < r->B; n++) {
            if (n + 1 < r->B) prefetch_plane_w(r->out + (size_t)(n + 1) * L->out_size + (size_t)c * hw, hw);
            (relu ? plane_affine_relu : plane_affine)(r->out + (size_t)n * L->out_size + (size_t)c * hw,
                                                      r->in + (size_t)n * L->in_size + (size_t)c * hw, hw, a, bb);
        }
    }
}

const float *rf_nn_bn_affine(const float *save, int C) { return save + 2 * (size_t)C; }

/* Fused backward (relu): the gradient the ReLU after a fused batch norm
 * would have left in the batch norm's (zeroed) output gradient is dz = +0 +
 * (z > 0 ? dy : 0) with z = x·a + b recomputed as the forward computed it.
 * z > 0 is relu's "output bits non-zero" (y = z for z > 0, else +0; NaN
 * fails both), and the +0 start is the zeroed buffer it adds into, so dz
 * has relu's bits, -0 included. plane_grads and plane_dx_relu make it in
 * registers (until session 6 it went through an L1 buffer: same bits). */
static void bn_backward_span(const rf_nn_run *r, int c0, int c1, int relu) {
    const rf_layer *L = r->L;
    int C = L->in.d[0];
    size_t hw = (size_t)L->in.d[1] * L->in.d[2];
    const float *mean = r->save, *rstd = r->save + C;
    float cnt = (float)((double)r->B * (double)hw);
    for (int c = c0; c < c1; c++) {
        float mu = mean[c], rs = rstd[c], gm = r->p[0][c];
        /* the forward's affine map (bn_forward_span), for the fused ReLU's mask */
        float fa = rs * gm, fb = r->p[1][c] - mu * fa;
        double a1[RF_NN_LANES] = {0.0}, a2[RF_NN_LANES] = {0.0};
        for (int n = 0; n < r->B; n++) {
            const float *dy = r->dout + (size_t)n * L->out_size + (size_t)c * hw, *x = r->in + (size_t)n * L->in_size + (size_t)c * hw;
            if (n + 1 < r->B) { prefetch_plane(dy + L->out_size, hw); prefetch_plane(x + L->in_size, hw); }
            plane_grads(a1, a2, dy, x, hw, (double)mu, relu, fa, fb);
        }
        double sdy = lanes_sum_d(a1), sdyx = lanes_sum_d(a2) * (double)rs;   /* Σ dy·x̂ */
        r->g[0][c] += (float)sdyx;
        r->g[1][c] += (float)sdy;
        if (!r->din) continue;
        /* Train mode differentiates through the batch statistics (Ioffe &
         * Szegedy 2015, Alg. 2 chain rule); eval mode is an affine map. */
        float k0 = gm * rs, k1 = r->training ? (float)sdy / cnt : 0.0f, k2 = r->training ? (float)sdyx / cnt : 0.0f;
        for (int n = 0; n < r->B; n++) {
            float *dx = r->din + (size_t)n * L->in_size + (size_t)c * hw;
            if (n + 1 < r->B) prefetch_plane_w(dx + L->in_size, hw);
            const float *dy = r->dout + (size_t)n * L->out_size + (size_t)c * hw;
            const float *x = r->in + (size_t)n * L->in_size + (size_t)c * hw;
            if (!relu) plane_dx(dx, dy, x, hw, k0, k1, mu, rs, k2, r->fresh & 1);
            else plane_dx_relu(dx, dy, x, hw, fa, fb, k0, k1, mu, rs, k2, r->fresh & 1);
        }
    }
}

typedef struct bn_job { const rf_nn_run *r; int backward, relu; } bn_job;

static void bn_part(void *arg, int t, int n) {
    const bn_job *j = arg;
    size_t c0, c1;
    rf_nn_span((size_t)j->r->L->in.d[0], t, n, &c0, &c1);
    (j->backward ? bn_backward_span : bn_forward_span)(j->r, (int)c0, (int)c1, j->relu);
}

static void bn_run(const rf_nn_run *r, int backward, int relu) {
    const rf_layer *L = r->L;
    bn_job j = {r, backward, relu};
    /* work: the batch's elements; parts of at least 16K of them, one channel at least */
    int parts = rf_nn_parts(r->eng, (double)r->B * (double)L->in_size, 1 << 14);
    if (parts > L->in.d[0]) parts = L->in.d[0];
    rf_nn_par(r->eng, parts, bn_part, &j);
}

static rf_status bn_forward(const rf_nn_run *r) {
    bn_run(r, 0, 0);
    return RF_OK;
}

static void bn_backward(const rf_nn_run *r) { bn_run(r, 1, 0); }

rf_status rf_nn_bn_forward_relu(const rf_nn_run *r) {
    bn_run(r, 0, 1);
    return RF_OK;
}

void rf_nn_bn_backward_relu(const rf_nn_run *r) { bn_run(r, 1, 1); }

static const char *const bn_keys[] = {"eps", "momentum", NULL};
const rf_nn_op rf_nn_op_batchnorm = {"batchnorm", bn_keys, bn_setup, NULL, bn_forward, bn_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_PASS, 0, RF_LT_STATS};
