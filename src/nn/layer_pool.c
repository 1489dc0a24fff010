/* Pooling and reshaping layers: max-pool, average-pool, global average pool,
 * flatten, and the two ways of turning a token sequence into one vector
 * (class token, Dosovitskiy et al. 2021 eq. 4; or the mean over tokens). */
#include "nn/layers.h"
#include "raffle/kernels.h"

#include <float.h>
#include <immintrin.h>
#include <string.h>

/* ---- max / average pooling over windows ---------------------------------- */
static rf_status pool_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_IMAGE)));
    int k;
    RF_TRY(rf_nn_int(b, j, "kernel", 2, 1, 1024, &k));
    L->ip[1] = k;
    RF_TRY(rf_nn_int(b, j, "stride", k, 1, 1024, &L->ip[3]));
    RF_TRY(rf_nn_int(b, j, "padding", 0, 0, k / 2, &L->ip[4]));
    int H = L->in.d[1], W = L->in.d[2], s = L->ip[3], p = L->ip[4];
    if (H + 2 * p < k || W + 2 * p < k)
        return rf_nn_err(b, RF_ERR_SHAPE, "window %d larger than padded input %dx%d", k, H + 2 * p, W + 2 * p);
    rf_nn_set_out(L, L->in.d[0], (H + 2 * p - k) / s + 1, (W + 2 * p - k) / s + 1, RF_NN_IMAGE);
    if (L->type == RF_L_MAXPOOL) L->save_numel = L->out_size;   /* argmax per output */
    return RF_OK;
}

/* Max-pool keeps the flat in-sample index of each window's maximum (as a
 * float: exact below 2^24, far above any per-sample size here); padding
 * never wins, as in PyTorch. */
/* The common 2×2, stride 2, unpadded window (every preset): four loads, no
 * bounds checks. Ties keep the first maximum in scan order, as the general path. */
RF_NN_VEC static void maxpool2(const rf_nn_run *r, size_t p0, size_t p1) {
    const rf_layer *L = r->L;
    const int C = L->in.d[0], H = L->in.d[1], W = L->in.d[2], OH = L->out.d[1], OW = L->out.d[2];
    const float *in = r->in;
    float *out = r->out, *save = r->save;
    for (size_t pl = p0; pl < p1; pl++) {
        const float *restrict x = in + pl * H * W;
        float *restrict y = out + pl * OH * OW, *restrict idx = save + pl * OH * OW;
        int base = (int)((pl % (size_t)C) * H * W);
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
            int i0 = base + 2 * oh * W;
            for (int ow = 0; ow < OW; ow++) {
                float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                int bi = i0 + 2 * ow;
                float best = a;
                bi = b > best ? i0 + 2 * ow + 1 : bi;
                best = b > best ? b : best;
                bi = c > best ? i0 + W + 2 * ow : bi;
                best = c > best ? c : best;
                bi = d > best ? i0 + W + 2 * ow + 1 : bi;
                best = d > best ? d : best;
                y[oh * OW + ow] = best;
                idx[oh * OW + ow] = (float)bi;
            }
        }
    }
}

/* maxpool2 on AVX-512, same results bit for bit: 16 windows at a time, the
 * even and odd columns of the two input rows split by one permute each, and
 * the same strict ">" tie and NaN rule (ordered compare) in the same scan
 * order. maxpool2 stays the reference for other ISAs. */
__attribute__((target("avx512f")))
static void maxpool2_avx512(const rf_nn_run *r, size_t p0, size_t p1) {
    const rf_layer *L = r->L;
    const int C = L->in.d[0], H = L->in.d[1], W = L->in.d[2], OH = L->out.d[1], OW = L->out.d[2];
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i two = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (size_t pl = p0; pl < p1; pl++) {
        const float *x = r->in + pl * H * W;
        float *y = r->out + pl * OH * OW, *idx = r->save + pl * OH * OW;
        int base = (int)((pl % (size_t)C) * H * W);
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
            for (int ow = 0; ow < OW; ow += 16) {
                int n = OW - ow < 16 ? OW - ow : 16;
                __mmask16 mo = (__mmask16)((1u << n) - 1);
                __mmask16 ml = (__mmask16)(2 * n >= 16 ? 0xFFFF : (1u << (2 * n)) - 1);
                __mmask16 mh = (__mmask16)(2 * n <= 16 ? 0 : (1u << (2 * n - 16)) - 1);
                __m512 l0 = _mm512_maskz_loadu_ps(ml, r0 + 2 * ow), h0 = _mm512_maskz_loadu_ps(mh, r0 + 2 * ow + 16);
                __m512 l1 = _mm512_maskz_loadu_ps(ml, r1 + 2 * ow), h1 = _mm512_maskz_loadu_ps(mh, r1 + 2 * ow + 16);
                __m512 a = _mm512_permutex2var_ps(l0, even, h0), b = _mm512_permutex2var_ps(l0, odd, h0);
                __m512 c = _mm512_permutex2var_ps(l1, even, h1), d = _mm512_permutex2var_ps(l1, odd, h1);
                __m512i i0 = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * oh * W + 2 * ow), two);
                __m512 best = a;
                __m512i bi = i0;
                __mmask16 m = _mm512_cmp_ps_mask(b, best, _CMP_GT_OQ);
                best = _mm512_mask_mov_ps(best, m, b);
                bi = _mm512_mask_mov_epi32(bi, m, _mm512_add_epi32(i0, _mm512_set1_epi32(1)));
                m = _mm512_cmp_ps_mask(c, best, _CMP_GT_OQ);
                best = _mm512_mask_mov_ps(best, m, c);
                bi = _mm512_mask_mov_epi32(bi, m, _mm512_add_epi32(i0, _mm512_set1_epi32(W)));
                m = _mm512_cmp_ps_mask(d, best, _CMP_GT_OQ);
                best = _mm512_mask_mov_ps(best, m, d);
                bi = _mm512_mask_mov_epi32(bi, m, _mm512_add_epi32(i0, _mm512_set1_epi32(W + 1)));
                _mm512_mask_storeu_ps(y + oh * OW + ow, mo, best);
                _mm512_mask_storeu_ps(idx + oh * OW + ow, mo, _mm512_cvtepi32_ps(bi));
            }
        }
    }
}

/* Planes (sample, channel) are independent: parts split them. */
static void maxpool2_part(void *arg, int t, int n) {
    const rf_nn_run *r = arg;
    size_t p0, p1;
    rf_nn_span((size_t)r->B * r->L->in.d[0], t, n, &p0, &p1);
    if (rf_kernels_isa() >= RF_ISA_AVX512) maxpool2_avx512(r, p0, p1);
    else maxpool2(r, p0, p1);
}

static rf_status maxpool_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int C = L->in.d[0], H = L->in.d[1], W = L->in.d[2], k = L->ip[1], s = L->ip[3], p = L->ip[4];
    int OH = L->out.d[1], OW = L->out.d[2];
    if (k == 2 && s == 2 && p == 0) {
        rf_nn_par(r->eng, rf_nn_parts(r->eng, (double)r->B * L->in_size, 1 << 15), maxpool2_part, (void *)r);
        return RF_OK;
    }
    for (int n = 0; n < r->B; n++)
        for (int c = 0; c < C; c++) {
            const float *x = r->in + (size_t)n * L->in_size + (size_t)c * H * W;
            float *y = r->out + (size_t)n * L->out_size + (size_t)c * OH * OW;
            float *idx = r->save + (size_t)n * L->out_size + (size_t)c * OH * OW;
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float best = -FLT_MAX;
                    int bi = -1;
                    for (int ki = 0; ki < k; ki++) {
                        int ih = oh * s + ki - p;
                        if (ih < 0 || ih >= H) continue;
                        for (int kj = 0; kj < k; kj++) {
                            int iw = ow * s + kj - p;
                            if (iw < 0 || iw >= W) continue;
                            float v = x[ih * W + iw];
                            if (bi < 0 || v > best) { best = v; bi = ih * W + iw; }
                        }
                    }
                    y[oh * OW + ow] = best;
                    idx[oh * OW + ow] = (float)(c * H * W + bi);
                }
        }
    return RF_OK;
}

/* Samples are independent (a window's argmax is inside its sample): parts
 * split them. */
static void maxpool_bwd_part(void *arg, int t, int n) {
    const rf_nn_run *r = arg;
    const rf_layer *L = r->L;
    size_t s0, s1;
    rf_nn_span((size_t)r->B, t, n, &s0, &s1);
    for (size_t s = s0; s < s1; s++) {
        const float *dy = r->dout + s * L->out_size, *idx = r->save + s * L->out_size;
        float *dx = r->din + s * L->in_size;
        for (size_t i = 0; i < L->out_size; i++) dx[(size_t)idx[i]] += dy[i];
    }
}

static void maxpool_backward(const rf_nn_run *r) {
    if (!r->din) return;
    rf_nn_par(r->eng, rf_nn_parts(r->eng, (double)r->B * r->L->in_size, 1 << 15), maxpool_bwd_part, (void *)r);
}

/* Average pool counts padded positions in the divisor (PyTorch's default
 * count_include_pad=True), so every window divides by k². */
static rf_status avgpool_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int C = L->in.d[0], H = L->in.d[1], W = L->in.d[2], k = L->ip[1], s = L->ip[3], p = L->ip[4];
    int OH = L->out.d[1], OW = L->out.d[2];
    float inv = 1.0f / (float)(k * k);
    for (int n = 0; n < r->B; n++)
        for (int c = 0; c < C; c++) {
            const float *x = r->in + (size_t)n * L->in_size + (size_t)c * H * W;
            float *y = r->out + (size_t)n * L->out_size + (size_t)c * OH * OW;
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float acc = 0.0f;
                    for (int ki = 0; ki < k; ki++) {
                        int ih = oh * s + ki - p;
                        if (ih < 0 || ih >= H) continue;
                        for (int kj = 0; kj < k; kj++) {
                            int iw = ow * s + kj - p;
                            if (iw >= 0 && iw < W) acc += x[ih * W + iw];
                        }
                    }
                    y[oh * OW + ow] = acc * inv;
                }
        }
    return RF_OK;
}

static void avgpool_backward(const rf_nn_run *r) {
    if (!r->din) return;
    const rf_layer *L = r->L;
    int C = L->in.d[0], H = L->in.d[1], W = L->in.d[2], k = L->ip[1], s = L->ip[3], p = L->ip[4];
    int OH = L->out.d[1], OW = L->out.d[2];
    float inv = 1.0f / (float)(k * k);
    for (int n = 0; n < r->B; n++)
        for (int c = 0; c < C; c++) {
            float *dx = r->din + (size_t)n * L->in_size + (size_t)c * H * W;
            const float *dy = r->dout + (size_t)n * L->out_size + (size_t)c * OH * OW;
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float g = dy[oh * OW + ow] * inv;
                    for (int ki = 0; ki < k; ki++) {
                        int ih = oh * s + ki - p;
                        if (ih < 0 || ih >= H) continue;
                        for (int kj = 0; kj < k; kj++) {
                            int iw = ow * s + kj - p;
                            if (iw >= 0 && iw < W) dx[ih * W + iw] += g;
                        }
                    }
                }
        }
}

static const char *const pool_keys[] = {"kernel", "stride", "padding", NULL};
const rf_nn_op rf_nn_op_maxpool = {"maxpool", pool_keys, pool_setup, NULL, maxpool_forward, maxpool_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_PASS, 0, 0};
const rf_nn_op rf_nn_op_avgpool = {"avgpool", pool_keys, pool_setup, NULL, avgpool_forward, avgpool_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_PASS, 0, 0};

/* ---- global average pool: (C, H, W) -> (C) ------------------------------- */
static rf_status gap_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_IMAGE)));
    rf_nn_set_out(L, L->in.d[0], 1, 1, RF_NN_FLAT);
    return RF_OK;
}

static rf_status gap_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int C = L->in.d[0];
    size_t hw = (size_t)L->in.d[1] * L->in.d[2];
    for (int n = 0; n < r->B; n++)
        for (int c = 0; c < C; c++) {
            const float *x = r->in + (size_t)n * L->in_size + c * hw;
            float acc = 0.0f;
            for (size_t i = 0; i < hw; i++) acc += x[i];
            r->out[(size_t)n * C + c] = acc / (float)hw;
        }
    return RF_OK;
}

static void gap_backward(const rf_nn_run *r) {
    if (!r->din) return;
    const rf_layer *L = r->L;
    int C = L->in.d[0];
    size_t hw = (size_t)L->in.d[1] * L->in.d[2];
    for (int n = 0; n < r->B; n++)
        for (int c = 0; c < C; c++) {
            float g = r->dout[(size_t)n * C + c] / (float)hw;
            float *dx = r->din + (size_t)n * L->in_size + c * hw;
            for (size_t i = 0; i < hw; i++) dx[i] += g;
        }
}

static const char *const no_keys[] = {NULL};
const rf_nn_op rf_nn_op_gap = {"gap", no_keys, gap_setup, NULL, gap_forward, gap_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_PASS, 0, 0};

/* ---- flatten: any shape -> flat vector (same memory order) ---------------- */
static rf_status flatten_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    rf_nn_set_out(L, (int)L->in_size, 1, 1, RF_NN_FLAT);
    return RF_OK;
}

static rf_status copy_forward(const rf_nn_run *r) {
    memcpy(r->out, r->in, (size_t)r->B * r->L->in_size * sizeof(float));
    return RF_OK;
}

static void copy_backward(const rf_nn_run *r) {
    if (r->din) rf_nn_add(r->din, r->dout, (size_t)r->B * r->L->in_size);
}

/* Feature-major, an image's matrix view is already the flat one (rows =
 * samples, width = C·H·W): flatten copies. */
const rf_nn_op rf_nn_op_flatten = {"flatten", no_keys, flatten_setup, NULL, copy_forward, copy_backward,
                                   rf_nn_feat_always, rf_nn_feat_copy, NULL, 0, RF_NN_CONN_FLATTEN, 0, 0};

/* ---- token pooling: (T, D) -> (D) ----------------------------------------- */
static rf_status tokpool_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_TOKENS)));
    rf_nn_set_out(L, L->in.d[1], 1, 1, RF_NN_FLAT);
    return RF_OK;
}

static rf_status cls_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    size_t D = (size_t)L->in.d[1];
    for (int n = 0; n < r->B; n++) memcpy(r->out + n * D, r->in + n * L->in_size, D * sizeof(float));
    return RF_OK;
}

static void cls_backward(const rf_nn_run *r) {
    if (!r->din) return;
    const rf_layer *L = r->L;
    size_t D = (size_t)L->in.d[1];
    for (int n = 0; n < r->B; n++) {
        float *dx = r->din + n * L->in_size;
        const float *dy = r->dout + n * D;
        for (size_t d = 0; d < D; d++) dx[d] += dy[d];
    }
}

static rf_status mean_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int T = L->in.d[0];
    size_t D = (size_t)L->in.d[1];
    float inv = 1.0f / (float)T;
    for (int n = 0; n < r->B; n++) {
        float *y = r->out + n * D;
        memset(y, 0, D * sizeof(float));
        for (int t = 0; t < T; t++) {
            const float *x = r->in + n * L->in_size + t * D;
            for (size_t d = 0; d < D; d++) y[d] += x[d];
        }
        for (size_t d = 0; d < D; d++) y[d] *= inv;
    }
    return RF_OK;
}

static void mean_backward(const rf_nn_run *r) {
    if (!r->din) return;
    const rf_layer *L = r->L;
    int T = L->in.d[0];
    size_t D = (size_t)L->in.d[1];
    float inv = 1.0f / (float)T;
    for (int n = 0; n < r->B; n++)
        for (int t = 0; t < T; t++) {
            float *dx = r->din + n * L->in_size + t * D;
            const float *dy = r->dout + n * D;
            for (size_t d = 0; d < D; d++) dx[d] += dy[d] * inv;
        }
}

/* Feature-major: out[d][n] = in[d][n·T], token 0 of each sample. */
static rf_status cls_forward_feat(const rf_nn_feat *f) {
    const rf_layer *L = f->r->L;
    int T = L->in.d[0], D = L->in.d[1], B = f->r->B;
    for (int d = 0; d < D; d++) {
        const float *x = f->in + (size_t)d * f->ldi;
        float *y = f->out + (size_t)d * f->ldo;
        for (int n = 0; n < B; n++) y[n] = x[(size_t)n * T];
    }
    return RF_OK;
}

const rf_nn_op rf_nn_op_cls_pool = {"cls_pool", no_keys, tokpool_setup, NULL, cls_forward, cls_backward,
                                    rf_nn_feat_always, cls_forward_feat, NULL, 0, RF_NN_CONN_PASS, 0, 0};
const rf_nn_op rf_nn_op_mean_pool = {"mean_pool", no_keys, tokpool_setup, NULL, mean_forward, mean_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_PASS, 0, 0};
