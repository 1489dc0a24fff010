/* int8 post-training quantization and the integer inference path
 * (Jacob et al. 2018). The scheme and its equations are in
 * include/raffle/quant.h and docs/quantization.md.
 *
 * A quantized layer keeps its int8 weights twice: unpacked (q8, for the
 * checkpoint) and packed by the kernels module (for rf_qgemm). Its float
 * params in the model are snapped to the dequantized values, so the model's
 * float forward, its checkpoint and its int8 forward all describe one model. */
#include "raffle/quant.h"
#include "raffle/kernels.h"

#include <immintrin.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Layers whose product is sparse-packed: at least this fraction pruned. The
 * packing only changes speed, never the integers computed. Measured with
 * bench/quant/int8_breakeven.c on the bench's 12 layer shapes at 256 rows,
 * dense over sparse int8 time (docs/kernels.md), two runs: on AVX-512 VBMI
 * (ELL slots) 0.89-0.99 at 30% pruned, 0.95-1.22 at 40%, 1.01-1.17 at 50%
 * (conv1's 64x9, bound by its output writes, ties from 30% to 70%); on
 * AVX2 sparse is faster from 30% (1.04-1.72). 50% is the lowest fraction at
 * which sparse is never slower. */
#define QUANT_SPARSE_PACK_MIN 0.5

typedef struct qlayer_rt {
    struct rf_quant *owner;
    int       idx;          /* index in owner->info */
    int       w_param;      /* ptensor index of the weight */
    int       b_param;      /* ptensor index of the bias, -1 if none */
    int8_t   *q8;           /* [N*K] quantized weights (owned) */
    float    *ws;           /* [N] per-row weight scales (owned) */
    float    *wdq;          /* [N*K] dequantized weights for the float simulation (owned) */
    rf_qmat  *packed;       /* owned (int8 products) */
    /* int4 products (info bits < 8): q8 holds the group-quantized values */
    float    *gscales;      /* [N * K / group] group scales (owned) */
    int32_t  *gzp;          /* [N * K / group] zero points, affine only (owned) */
    rf_q4mat *q4;           /* packed for rf_q4gemm (owned) */
    int       Kp;           /* K padded to a multiple of 8 for one group per row (else K) */
    float    *oscale;       /* [N] S_in · s_w[n] (owned) */
    int32_t  *zrs;          /* [N] Z_in · rowsum(Wq)[n] (owned) */
    const float *bias;      /* borrowed from the model's params, or NULL */
    rf_qpath  path;
    /* scratch, grown on demand */
    uint8_t  *A;            /* [M*K] */
    int32_t  *C;            /* [M*N] */
    float    *Xf;           /* [M*K] fake-quantized input (float simulation) */
    size_t    cap_a, cap_c, cap_x;
    /* calibration accumulators */
    const float *w_f32;     /* borrowed float weights while calibrating */
    double    sum_lo, sum_hi;
    float     min_lo, max_hi;
    int       n_batches;
    float    *sel;          /* percentile scratch */
    size_t    cap_sel;
} qlayer_rt;

struct rf_quant {
    int             n;
    rf_qlayer_info *info;   /* [n] */
    qlayer_rt      *rt;     /* [n] */
    rf_calib        calib;
    double          percentile;
    int             weights_ready;
    int             attached;
};

/* ---- primitives ----------------------------------------------------------- */

rf_qparams rf_qparams_from_range(float lo, float hi) {
    rf_qparams p;
    /* Jacob §2.1: the real value 0 must be exactly representable (zero
     * padding, ReLU outputs), so the range always contains 0. */
    if (lo > 0.0f) lo = 0.0f;
    if (hi < 0.0f) hi = 0.0f;
    if (!(hi - lo > 0.0f) || !isfinite(hi - lo)) { p.scale = 1.0f; p.zero_point = 0; return p; }
    p.scale = (hi - lo) / 255.0f;
    float z = nearbyintf(-lo / p.scale);
    if (z < 0.0f) z = 0.0f;
    if (z > 255.0f) z = 255.0f;
    p.zero_point = (int32_t)z;
    return p;
}

/* Round-to-nearest-even without a libm call (this runs on every GEMM input
 * element): adding and subtracting 1.5·2^23 leaves the float rounded to an
 * integer in the default nearest-even mode, exactly what nearbyintf gives,
 * for |v| < 2^22; larger values are clamped first. Comparisons rather than
 * fminf/fmaxf keep the loop free of calls so it vectorizes; a NaN fails
 * both comparisons' true branch and lands on the lower bound. */
static inline float round_even(float v) {
    const float magic = 12582912.0f;
    v = v > -4194304.0f ? v : -4194304.0f;
    v = v < 4194304.0f ? v : 4194304.0f;
    float t = v + magic;   /* not folded: -O2 keeps IEEE semantics (no -ffast-math) */
    return t - magic;
}

static inline uint8_t quant_u8_inv(float x, float inv_scale, int32_t zp) {
    float v = round_even(x * inv_scale) + (float)zp;
    v = v > 0.0f ? v : 0.0f;
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)(int32_t)v;
}

/* The same quantization of a whole array, 8 lanes at a time:
 * _mm256_round_ps(nearest) is round half to even like the scalar path, the
 * clamps come before the float->int conversion, and max(v, 0) returns 0 for
 * a NaN lane (maxps returns its second operand on NaN). */
__attribute__((target("avx2,fma")))
static void quant_u8_array_avx2(const float *x, size_t n, float inv, int32_t zp, uint8_t *q) {
    const __m256 vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps((float)zp);
    const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
        v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, vzp), lo), hi);
        __m256i iv = _mm256_cvtps_epi32(v);
        __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(iv), _mm256_extracti128_si256(iv, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packus_epi16(w, w));
    }
    for (; i < n; i++) q[i] = quant_u8_inv(x[i], inv, zp);
}

static void quant_u8_array_ref(const float *x, size_t n, float inv, int32_t zp, uint8_t *q) {
    for (size_t i = 0; i < n; i++) q[i] = quant_u8_inv(x[i], inv, zp);
}

static void quant_u8_array(const float *x, size_t n, float inv, int32_t zp, uint8_t *q) {
    if (rf_kernels_init() >= RF_ISA_AVX2) quant_u8_array_avx2(x, n, inv, zp, q);
    else quant_u8_array_ref(x, n, inv, zp, q);
}

void rf_quant_u8_array(const float *x, size_t n, rf_qparams p, uint8_t *q) {
    quant_u8_array(x, n, 1.0f / p.scale, p.zero_point, q);
}

void rf_quant_u8_array_ref(const float *x, size_t n, rf_qparams p, uint8_t *q) {
    quant_u8_array_ref(x, n, 1.0f / p.scale, p.zero_point, q);
}

uint8_t rf_quant_u8(float x, rf_qparams p) { return quant_u8_inv(x, 1.0f / p.scale, p.zero_point); }
float   rf_dequant_u8(uint8_t q, rf_qparams p) { return p.scale * (float)((int32_t)q - p.zero_point); }
float   rf_fake_quant_u8(float x, rf_qparams p) { return rf_dequant_u8(rf_quant_u8(x, p), p); }

void rf_quant_rows_s8(const float *W, int64_t N, int64_t K, int8_t *q, float *scales) {
    for (int64_t n = 0; n < N; n++) {
        const float *w = W + n * K;
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) { float a = fabsf(w[k]); if (a > amax) amax = a; }
        /* Symmetric per output channel: s = max|w| / 127; -128 is unused so
         * the range is symmetric and q·q products fit VNNI's u8×s8 pairs. */
        float s = amax > 0.0f ? amax / 127.0f : 1.0f;
        float inv = 1.0f / s;
        scales[n] = s;
        for (int64_t k = 0; k < K; k++) {
            float v = nearbyintf(w[k] * inv);
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            q[n * K + k] = (int8_t)v;
        }
    }
}

void rf_fake_quant_rows(float *W, int64_t N, int64_t K) {
    for (int64_t n = 0; n < N; n++) {
        float *w = W + n * K;
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) { float a = fabsf(w[k]); if (a > amax) amax = a; }
        if (!(amax > 0.0f)) continue;
        float s = amax / 127.0f, inv = 1.0f / s;
        for (int64_t k = 0; k < K; k++) {
            float v = nearbyintf(w[k] * inv);
            if (v > 127.0f) v = 127.0f;
            if (v < -127.0f) v = -127.0f;
            w[k] = s * v;
        }
    }
}

static const char *const calib_names[RF_CALIB_COUNT_] = {
    [RF_CALIB_MINMAX] = "minmax", [RF_CALIB_PERCENTILE] = "percentile", [RF_CALIB_QAT] = "qat",
};
const char *rf_calib_name(rf_calib c) { return (unsigned)c < RF_CALIB_COUNT_ ? calib_names[c] : "?"; }
int rf_calib_from_name(const char *s) {
    for (int i = 0; s && i < RF_CALIB_COUNT_; i++) if (strcmp(s, calib_names[i]) == 0) return i;
    return -1;
}

/* ---- the quantized-model description ------------------------------------- */

/* The quantized products. Layers that are one product (linear, conv through
 * im2col, the patch embedding: a stride = kernel conv) are overridden as a
 * whole through rf_layer.infer_gemm; layers holding several products (the
 * transformer block's attn.qkv, attn.proj, mlp.fc1, mlp.fc2; the attention
 * layer's qkv, proj) are overridden per weight through rf_param.infer_gemm
 * (nn.h documents which mechanism applies where). */
static int is_gemm_layer(const rf_layer *l) {
    unsigned t = rf_layer_traits(l->type);
    return (t & RF_LT_PRODUCT) && (t & RF_LT_QUANT);
}
static int is_multi_product_layer(const rf_layer *l) {
    unsigned t = rf_layer_traits(l->type);
    return (t & RF_LT_PRODUCTS) && (t & RF_LT_QUANT);
}

/* Installs (fn, state) as the override of product i, at the level its layer
 * uses; fn = NULL removes it. */
static void set_override(const rf_quant *q, rf_model *m, int i,
                         rf_status (*fn)(void *, const float *, float *, int), void *state) {
    const rf_qlayer_info *in = &q->info[i];
    if (is_multi_product_layer(&m->layers[in->layer])) {
        m->ptensors[in->param].infer_gemm = fn;
        m->ptensors[in->param].infer_state = state;
        m->ptensors[in->param].infer_gemm_feat = NULL;   /* int8 runs row-major only */
    } else {
        m->layers[in->layer].infer_gemm = fn;
        m->layers[in->layer].infer_state = state;
        m->layers[in->layer].infer_gemm_feat = NULL;   /* int8 runs row-major only */
        m->layers[in->layer].infer_takes = NULL;       /* every batch */
    }
}

/* Removes product i's override if it is still ours. */
static void clear_override(const rf_quant *q, rf_model *m, int i) {
    const rf_qlayer_info *in = &q->info[i];
    const void *mine = &q->rt[i];
    if (is_multi_product_layer(&m->layers[in->layer])) {
        if (m->ptensors[in->param].infer_state == mine) set_override(q, m, i, NULL, NULL);
    } else if (m->layers[in->layer].infer_state == mine) {
        set_override(q, m, i, NULL, NULL);
    }
}

rf_status rf_quant_new(rf_ctx *ctx, const rf_model *m, rf_quant **out) {
    *out = NULL;
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *l = &m->layers[i];
        if (is_gemm_layer(l)) n++;
        else if (is_multi_product_layer(l))
            for (int p = l->first_param; p < l->first_param + l->n_params; p++) n += m->ptensors[p].role == RF_P_WEIGHT;
    }
    if (n == 0) return rf_error(ctx, RF_ERR_UNSUPPORTED, "quantize: the model has no linear, conv or attention product");
    rf_quant *q = rf_calloc(1, sizeof *q);
    if (!q) return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
    q->info = rf_calloc((size_t)n, sizeof *q->info);
    q->rt = rf_calloc((size_t)n, sizeof *q->rt);
    if (!q->info || !q->rt) { rf_quant_free(q); return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory"); }
    q->n = n;
    int k = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *l = &m->layers[i];
        int end = l->first_param + l->n_params;
        if (is_gemm_layer(l)) {
            qlayer_rt *rt = &q->rt[k];
            rt->w_param = rt->b_param = -1;
            for (int p = l->first_param; p < end; p++) {
                if (m->ptensors[p].role == RF_P_WEIGHT && rt->w_param < 0) rt->w_param = p;
                else if (m->ptensors[p].role == RF_P_BIAS && rt->b_param < 0) rt->b_param = p;
            }
            if (rt->w_param < 0) {
                rf_quant_free(q);
                return rf_error(ctx, RF_ERR_SPEC, "quantize: layer %s has no weight tensor", l->name);
            }
            q->info[k].layer = i;
            k++;
        } else if (is_multi_product_layer(l)) {
            /* nn.h contract: the bias of weight p is p + 1 when that is a
             * bias of the same layer. */
            for (int p = l->first_param; p < end; p++) {
                if (m->ptensors[p].role != RF_P_WEIGHT) continue;
                qlayer_rt *rt = &q->rt[k];
                rt->w_param = p;
                rt->b_param = p + 1 < end && m->ptensors[p + 1].role == RF_P_BIAS ? p + 1 : -1;
                q->info[k].layer = i;
                k++;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        qlayer_rt *rt = &q->rt[i];
        rf_qlayer_info *in = &q->info[i];
        const rf_param *w = &m->ptensors[rt->w_param];
        rt->owner = q;
        rt->idx = i;
        in->param = rt->w_param;
        in->N = (int)w->shape[0];
        in->K = (int)(w->numel / (size_t)w->shape[0]);
        in->bits = 8;
        in->group_size = in->K;
        in->group_mode = RF_GROUP_SYMMETRIC;
    }
    q->calib = RF_CALIB_MINMAX;
    *out = q;
    return RF_OK;
}

static void rt_free_weights(qlayer_rt *rt) {
    rf_free(rt->q8); rf_free(rt->ws); rf_free(rt->wdq); rf_free(rt->oscale); rf_free(rt->zrs);
    rf_free(rt->gscales); rf_free(rt->gzp);
    rt->oscale = NULL; rt->zrs = NULL; rt->gscales = NULL; rt->gzp = NULL;
    rf_qmat_free(rt->packed);
    rf_q4mat_free(rt->q4);
    rt->q8 = NULL; rt->ws = NULL; rt->wdq = NULL; rt->packed = NULL; rt->q4 = NULL;
}

void rf_quant_free(rf_quant *q) {
    if (!q) return;
    for (int i = 0; q->rt && i < q->n; i++) {
        qlayer_rt *rt = &q->rt[i];
        rt_free_weights(rt);
        rf_free(rt->A); rf_free(rt->C); rf_free(rt->Xf); rf_free(rt->sel);
    }
    rf_free(q->rt);
    rf_free(q->info);
    rf_free(q);
}

int rf_quant_n_layers(const rf_quant *q) { return q->n; }
rf_qlayer_info *rf_quant_layer(rf_quant *q, int i) { return (i >= 0 && i < q->n) ? &q->info[i] : NULL; }

rf_status rf_quant_set_weights(rf_ctx *ctx, rf_quant *q, const rf_model *m, int i, int bits, int group_size,
                               rf_group_mode mode) {
    if (i < 0 || i >= q->n) return rf_error(ctx, RF_ERR_INVALID, "quantize: no product %d", i);
    rf_qlayer_info *in = &q->info[i];
    const char *name = m->ptensors[in->param].name;
    if (q->weights_ready) return rf_error(ctx, RF_ERR_INVALID, "quantize: %s: weights already quantized", name);
    if (bits == 8) { in->bits = 8; in->group_size = in->K; in->group_mode = RF_GROUP_SYMMETRIC; return RF_OK; }
    if (bits < RF_GROUP_BITS_MIN || bits > RF_GROUP_BITS_MAX)
        return rf_error(ctx, RF_ERR_INVALID, "quantize: %s: bits %d (8, or %d-%d in groups)", name, bits, RF_GROUP_BITS_MIN,
                        RF_GROUP_BITS_MAX);
    if ((unsigned)mode >= RF_GROUP_MODE_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "quantize: %s: unknown group mode", name);
    if (group_size == in->K) {
        if (in->K > RF_QUANT_ROW_GROUP_MAX)
            return rf_error(ctx, RF_ERR_INVALID, "quantize: %s: one group per row of %d exceeds %d", name, in->K,
                            RF_QUANT_ROW_GROUP_MAX);
    } else if (!rf_group_size_ok(group_size) || in->K % group_size) {
        return rf_error(ctx, RF_ERR_INVALID, "quantize: %s: group size %d does not divide its rows of %d", name, group_size, in->K);
    }
    in->bits = bits;
    in->group_size = group_size;
    in->group_mode = mode;
    return RF_OK;
}
rf_calib rf_quant_calib(const rf_quant *q) { return q->calib; }
void rf_quant_set_calib(rf_quant *q, rf_calib c) { q->calib = c; }

/* Grows a scratch buffer to hold n elements of size sz. */
static int grow(void **buf, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return 0;
    void *p = rf_realloc(*buf, n * sz);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* ---- calibration (PTQ) ----------------------------------------------------- */

/* k-th smallest of v[0..n) (Hoare selection, expected O(n)); reorders v. */
static float select_kth(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
        float pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) { float t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

/* infer_gemm used while calibrating: records the range of the GEMM input,
 * then computes the float product so later layers see the float model. */
static rf_status calib_gemm(void *state, const float *X, float *Y, int M) {
    qlayer_rt *rt = state;
    rf_quant *q = rt->owner;
    const rf_qlayer_info *in = &q->info[rt->idx];
    size_t n = (size_t)M * (size_t)in->K;
    float lo = 0.0f, hi = 0.0f;
    if (n > 0) {
        lo = hi = X[0];
        for (size_t i = 1; i < n; i++) { if (X[i] < lo) lo = X[i]; if (X[i] > hi) hi = X[i]; }
    }
    if (q->calib == RF_CALIB_PERCENTILE && n > 1) {
        if (grow((void **)&rt->sel, &rt->cap_sel, n, sizeof(float))) return RF_ERR_NOMEM;
        memcpy(rt->sel, X, n * sizeof(float));
        double f = q->percentile / 100.0;
        size_t khi = (size_t)ceil(f * (double)(n - 1));
        size_t klo = (size_t)floor((1.0 - f) * (double)(n - 1));
        if (khi > n - 1) khi = n - 1;
        hi = select_kth(rt->sel, (int64_t)n, (int64_t)khi);
        lo = select_kth(rt->sel, (int64_t)n, (int64_t)klo);
    }
    rt->sum_lo += lo; rt->sum_hi += hi;
    if (rt->n_batches == 0 || lo < rt->min_lo) rt->min_lo = lo;
    if (rt->n_batches == 0 || hi > rt->max_hi) rt->max_hi = hi;
    rt->n_batches++;
    rf_linear_f32(X, rt->w_f32, rt->bias, Y, M, in->N, in->K);
    return RF_OK;
}

rf_status rf_quant_calibrate(rf_ctx *ctx, rf_quant *q, rf_model *m, const rf_dataset *ds,
                             int batch, int n_batches, rf_calib method, double percentile) {
    if (q->attached) return rf_error(ctx, RF_ERR_INVALID, "quantize: calibrate before enabling the int8 path");
    if (method != RF_CALIB_MINMAX && method != RF_CALIB_PERCENTILE)
        return rf_error(ctx, RF_ERR_INVALID, "quantize: calibration method must be minmax or percentile");
    if (method == RF_CALIB_PERCENTILE && !(percentile > 50.0 && percentile <= 100.0))
        return rf_error(ctx, RF_ERR_INVALID, "quantize: percentile %g outside (50, 100]", percentile);
    if (batch <= 0 || n_batches <= 0 || ds->n <= 0)
        return rf_error(ctx, RF_ERR_INVALID, "quantize: calibration needs batch > 0, batches > 0 and data");
    q->calib = method;
    q->percentile = method == RF_CALIB_PERCENTILE ? percentile : 0.0;
    for (int i = 0; i < q->n; i++) {
        qlayer_rt *rt = &q->rt[i];
        rt->w_f32 = m->params + m->ptensors[rt->w_param].offset;
        rt->bias = rt->b_param >= 0 ? m->params + m->ptensors[rt->b_param].offset : NULL;
        rt->sum_lo = rt->sum_hi = 0.0;
        rt->n_batches = 0;
        set_override(q, m, i, calib_gemm, rt);
    }
    size_t in_size = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    rf_status s = RF_OK;
    for (int b = 0; b < n_batches && s == RF_OK; b++) {
        int64_t start = ((int64_t)b * batch) % ds->n;
        int cnt = (int)(ds->n - start < batch ? ds->n - start : batch);
        const float *logits;
        s = rf_model_forward(ctx, m, ds->x + (size_t)start * in_size, cnt, 0, &logits);
    }
    for (int i = 0; i < q->n; i++) {
        set_override(q, m, i, NULL, NULL);
        qlayer_rt *rt = &q->rt[i];
        rf_free(rt->sel); rt->sel = NULL; rt->cap_sel = 0;
        rf_qlayer_info *in = &q->info[i];
        if (s != RF_OK || rt->n_batches == 0) continue;
        /* min-max: the extremes over all batches; percentile: the mean of
         * the per-batch percentiles, which damps single outliers further. */
        in->lo = method == RF_CALIB_MINMAX ? rt->min_lo : (float)(rt->sum_lo / rt->n_batches);
        in->hi = method == RF_CALIB_MINMAX ? rt->max_hi : (float)(rt->sum_hi / rt->n_batches);
        in->act = rf_qparams_from_range(in->lo, in->hi);
        in->calibrated = 1;
    }
    if (s != RF_OK) { rf_error_prefix(ctx, "quantize: calibration"); return s; }
    for (int i = 0; i < q->n; i++)
        if (!q->info[i].calibrated)
            return rf_error(ctx, RF_ERR_INTERNAL, "quantize: product %s saw no input while calibrating "
                            "(does its forward use infer_gemm?)", m->ptensors[q->info[i].param].name);
    return RF_OK;
}

/* ---- quantized inference ---------------------------------------------------- */

/* The output rescale Y[m, n] = (C[m, n] − zrs[n]) · oscale[n] (+ bias[n]).
 * On short products (vit-tiny's K = 64) it costs about as much as the int32
 * product itself, so it has an AVX2 version; both multiply then add (no
 * FMA), so they round identically and the int8 path equals its reference
 * bit for bit. */
static void rescale_ref(const int32_t *C, const int32_t *zrs, const float *osc, const float *bias, float *Y,
                        int M, int N) {
    for (int m = 0; m < M; m++) {
        const int32_t *c = C + (size_t)m * N;
        float *y = Y + (size_t)m * N;
        if (bias) for (int n = 0; n < N; n++) y[n] = (float)(c[n] - zrs[n]) * osc[n] + bias[n];
        else      for (int n = 0; n < N; n++) y[n] = (float)(c[n] - zrs[n]) * osc[n];
    }
}

__attribute__((target("avx2")))
static void rescale_avx2(const int32_t *C, const int32_t *zrs, const float *osc, const float *bias, float *Y,
                         int M, int N) {
    for (int m = 0; m < M; m++) {
        const int32_t *c = C + (size_t)m * N;
        float *y = Y + (size_t)m * N;
        int n = 0;
        for (; n + 8 <= N; n += 8) {
            __m256i d = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(c + n)),
                                         _mm256_loadu_si256((const __m256i *)(zrs + n)));
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(osc + n));
            if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
            _mm256_storeu_ps(y + n, v);
        }
        if (bias) for (; n < N; n++) y[n] = (float)(c[n] - zrs[n]) * osc[n] + bias[n];
        else      for (; n < N; n++) y[n] = (float)(c[n] - zrs[n]) * osc[n];
    }
}

/* Y = S_in · s_w[n] · (A·Wq^T − Z_in · rowsum(Wq)[n]) + bias[n]   (Jacob eq. 7
 * with the weight zero point 0 of symmetric quantization). */
static rf_status int8_gemm(void *state, const float *X, float *Y, int M) {
    qlayer_rt *rt = state;
    const rf_qlayer_info *in = &rt->owner->info[rt->idx];
    const int N = in->N, K = in->K;
    size_t na = (size_t)M * (size_t)K, nc = (size_t)M * (size_t)N;
    if (grow((void **)&rt->A, &rt->cap_a, na, 1) || grow((void **)&rt->C, &rt->cap_c, nc, sizeof(int32_t)))
        return RF_ERR_NOMEM;
    const float inv = 1.0f / in->act.scale;
    const int32_t zp = in->act.zero_point;
    if (rt->path == RF_QPATH_INT8_REF) {   /* reference: scalar quantizer, product and rescale */
        quant_u8_array_ref(X, na, inv, zp, rt->A);
        rf_qgemm_ref(rt->packed, rt->A, rt->C, M);
        rescale_ref(rt->C, rt->zrs, rt->oscale, rt->bias, Y, M, N);
    } else {
        quant_u8_array(X, na, inv, zp, rt->A);
        rf_qgemm(rt->packed, rt->A, rt->C, M);
        if (rf_kernels_init() >= RF_ISA_AVX2) rescale_avx2(rt->C, rt->zrs, rt->oscale, rt->bias, Y, M, N);
        else rescale_ref(rt->C, rt->zrs, rt->oscale, rt->bias, Y, M, N);
    }
    return RF_OK;
}

/* The int4 product (kernels.h): A = the u8 input (row stride Kp), Y' =
 * rf_q4gemm(W, A) = sum_g s_g sum_k (q - zp) A; the activation zero point
 * comes out as Y' - Z_in * corr[n] (rf_q4mat_row_corr), so
 *   Y[m, n] = S_in * (Y'[m, n] - Z_in * corr[n]) + bias[n],
 * computed the same way on every path (the kernels agree bit for bit). */
static rf_status int4_gemm(void *state, const float *X, float *Y, int M) {
    qlayer_rt *rt = state;
    const rf_qlayer_info *in = &rt->owner->info[rt->idx];
    const int N = in->N, K = in->K, Kp = rt->Kp;
    if (grow((void **)&rt->A, &rt->cap_a, (size_t)M * (size_t)Kp, 1)) return RF_ERR_NOMEM;
    const float inv = 1.0f / in->act.scale;
    const int32_t zp = in->act.zero_point;
    const int ref = rt->path == RF_QPATH_INT8_REF;
    if (Kp == K) {
        (ref ? quant_u8_array_ref : quant_u8_array)(X, (size_t)M * (size_t)K, inv, zp, rt->A);
    } else {
        for (int r = 0; r < M; r++) {
            uint8_t *a = rt->A + (size_t)r * Kp;
            (ref ? quant_u8_array_ref : quant_u8_array)(X + (size_t)r * K, (size_t)K, inv, zp, a);
            memset(a + K, 0, (size_t)(Kp - K));
        }
    }
    (ref ? rf_q4gemm_ref : rf_q4gemm)(rt->q4, rt->A, Y, M);
    const float *corr = rf_q4mat_row_corr(rt->q4), S = in->act.scale, Z = (float)zp;
    for (int r = 0; r < M; r++) {
        float *y = Y + (size_t)r * N;
        if (rt->bias) for (int n = 0; n < N; n++) y[n] = S * (y[n] - Z * corr[n]) + rt->bias[n];
        else          for (int n = 0; n < N; n++) y[n] = S * (y[n] - Z * corr[n]);
    }
    return RF_OK;
}

/* The float simulation of the same layer: fake-quantized input times the
 * dequantized weights in fp32 (the graph QAT trains). */
static rf_status fake_gemm(void *state, const float *X, float *Y, int M) {
    qlayer_rt *rt = state;
    const rf_qlayer_info *in = &rt->owner->info[rt->idx];
    size_t nx = (size_t)M * (size_t)in->K;
    if (grow((void **)&rt->Xf, &rt->cap_x, nx, sizeof(float))) return RF_ERR_NOMEM;
    for (size_t i = 0; i < nx; i++) rt->Xf[i] = rf_fake_quant_u8(X[i], in->act);
    rf_linear_f32(rt->Xf, rt->wdq, rt->bias, Y, M, in->N, in->K);
    return RF_OK;
}

static rf_status rt_alloc_weights(rf_ctx *ctx, qlayer_rt *rt, const rf_qlayer_info *in) {
    rt_free_weights(rt);
    size_t nk = (size_t)in->N * (size_t)in->K;
    rt->q8 = rf_malloc(nk);
    rt->ws = rf_malloc((size_t)in->N * sizeof(float));
    rt->wdq = rf_malloc(nk * sizeof(float));
    if (!rt->q8 || !rt->ws || !rt->wdq) return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
    if (in->bits < 8) {
        size_t ng = nk / (size_t)in->group_size;
        rt->gscales = rf_malloc(ng * sizeof(float));
        if (in->group_mode == RF_GROUP_AFFINE) rt->gzp = rf_malloc(ng * sizeof(int32_t));
        if (!rt->gscales || (in->group_mode == RF_GROUP_AFFINE && !rt->gzp))
            return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
    }
    return RF_OK;
}

/* Writes the dequantized weights into the model's params (and wdq). */
static void rt_snap_params(qlayer_rt *rt, const rf_qlayer_info *in, rf_model *m) {
    float *w = m->params + m->ptensors[rt->w_param].offset;
    if (in->bits < 8) {
        rf_group_dequantize(rt->q8, in->N, in->K, in->group_size, rt->gscales, rt->gzp, rt->wdq);
        memcpy(w, rt->wdq, (size_t)in->N * (size_t)in->K * sizeof(float));
        return;
    }
    for (int n = 0; n < in->N; n++)
        for (int k = 0; k < in->K; k++) {
            size_t i = (size_t)n * in->K + k;
            rt->wdq[i] = w[i] = rt->ws[n] * (float)rt->q8[i];
        }
}

/* Packs an int4 product for rf_q4gemm. A row no group size divides is one
 * group (group_size == K); the kernel wants groups of a multiple of 8, so
 * such rows are padded to Kp = K rounded up to 8 with weights that are
 * exactly zero (symmetric 0, affine the zero point): the padded activation
 * columns then contribute nothing, whatever they hold. */
static rf_status pack_q4(rf_ctx *ctx, qlayer_rt *rt, const rf_qlayer_info *in) {
    const int N = in->N, K = in->K, gs = in->group_size;
    rt->Kp = gs == K ? (K + 7) / 8 * 8 : K;
    rf_q4mat_free(rt->q4);
    rt->q4 = NULL;
    if (rt->Kp == K) return rf_q4mat_pack(ctx, rt->q8, N, K, gs, rt->gscales, rt->gzp, &rt->q4);
    int8_t *qp = rf_malloc((size_t)N * (size_t)rt->Kp);
    if (!qp) return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
    for (int n = 0; n < N; n++) {
        memcpy(qp + (size_t)n * rt->Kp, rt->q8 + (size_t)n * K, (size_t)K);
        memset(qp + (size_t)n * rt->Kp + K, rt->gzp ? rt->gzp[n] : 0, (size_t)(rt->Kp - K));
    }
    rf_status s = rf_q4mat_pack(ctx, qp, N, rt->Kp, rt->Kp, rt->gscales, rt->gzp, &rt->q4);
    rf_free(qp);
    return s;
}

/* Packs the int8 weights and installs the chosen product on the layer. */
static rf_status install(rf_ctx *ctx, rf_quant *q, rf_model *m, rf_qpath path) {
    for (int i = 0; i < q->n; i++) {
        qlayer_rt *rt = &q->rt[i];
        const rf_qlayer_info *in = &q->info[i];
        rt->bias = rt->b_param >= 0 ? m->params + m->ptensors[rt->b_param].offset : NULL;
        rt->path = path;
        if (in->bits < 8) {
            RF_TRY(pack_q4(ctx, rt, in));
            set_override(q, m, i, path == RF_QPATH_FAKE_F32 ? fake_gemm : int4_gemm, rt);
            continue;
        }
        size_t nk = (size_t)in->N * (size_t)in->K, nz = 0;
        for (size_t j = 0; j < nk; j++) nz += rt->q8[j] != 0;
        int sparse = m->masks && (double)(nk - nz) >= QUANT_SPARSE_PACK_MIN * (double)nk;
        rf_qmat_free(rt->packed);
        rt->packed = NULL;
        RF_TRY(rf_qmat_pack(ctx, rt->q8, in->N, in->K, sparse, &rt->packed));
        rf_free(rt->oscale); rf_free(rt->zrs);
        rt->oscale = rf_malloc((size_t)in->N * sizeof(float));
        rt->zrs = rf_malloc((size_t)in->N * sizeof(int32_t));
        if (!rt->oscale || !rt->zrs) return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
        const int32_t *rs = rf_qmat_row_sums(rt->packed);
        for (int n = 0; n < in->N; n++) {
            rt->oscale[n] = in->act.scale * rt->ws[n];
            rt->zrs[n] = in->act.zero_point * rs[n];
        }
        set_override(q, m, i, path == RF_QPATH_FAKE_F32 ? fake_gemm : int8_gemm, rt);
    }
    q->attached = 1;
    return RF_OK;
}

rf_status rf_quant_enable(rf_ctx *ctx, rf_quant *q, rf_model *m, rf_qpath path) {
    if ((unsigned)path > RF_QPATH_FAKE_F32) return rf_error(ctx, RF_ERR_INVALID, "quantize: unknown path %d", (int)path);
    for (int i = 0; i < q->n; i++)
        if (!q->info[i].calibrated)
            return rf_error(ctx, RF_ERR_INVALID, "quantize: product %s is not calibrated",
                            m->ptensors[q->info[i].param].name);
    if (!q->weights_ready) {
        for (int i = 0; i < q->n; i++) {
            qlayer_rt *rt = &q->rt[i];
            const rf_qlayer_info *in = &q->info[i];
            RF_TRY(rt_alloc_weights(ctx, rt, in));
            const float *w = m->params + m->ptensors[rt->w_param].offset;
            if (in->bits < 8) {
                rf_status s = rf_group_quantize(ctx, w, in->N, in->K, in->bits, in->group_size, in->group_mode, rt->q8,
                                                rt->gscales, rt->gzp);
                if (s != RF_OK) { rf_error_prefix(ctx, "quantize: %s", m->ptensors[rt->w_param].name); return s; }
                for (int n = 0; n < in->N; n++) rt->ws[n] = 1.0f;   /* unused: the group scales apply */
            } else {
                rf_quant_rows_s8(w, in->N, in->K, rt->q8, rt->ws);
            }
            rt_snap_params(rt, in, m);
        }
        q->weights_ready = 1;
    }
    return install(ctx, q, m, path);
}

void rf_quant_detach(rf_quant *q, rf_model *m) {
    if (!q || !m) return;
    for (int i = 0; i < q->n; i++) clear_override(q, m, i);
    q->attached = 0;
}

/* ---- checkpoints ------------------------------------------------------------- */

static cJSON *quant_meta(const rf_quant *q, const rf_model *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int low = 0;
    for (int i = 0; i < q->n; i++) low += q->info[i].bits < 8;
    /* "int8": every product int8 per channel; "int4": some in groups (the
     * layers' "bits" say which) */
    cJSON_AddStringToObject(o, "scheme", low ? "int4" : "int8");
    cJSON_AddStringToObject(o, "weights", low ? "per layer: s8 symmetric per output channel, or 2-4 bits per group of a row"
                                              : "s8 symmetric per output channel");
    cJSON_AddStringToObject(o, "activations", "u8 affine per tensor");
    cJSON_AddStringToObject(o, "bias", "f32");
    cJSON_AddStringToObject(o, "calib", rf_calib_name(q->calib));
    if (q->calib == RF_CALIB_PERCENTILE) cJSON_AddNumberToObject(o, "percentile", q->percentile);
    cJSON *arr = cJSON_AddArrayToObject(o, "layers");
    for (int i = 0; arr && i < q->n; i++) {
        const rf_qlayer_info *in = &q->info[i];
        cJSON *l = cJSON_CreateObject();
        if (!l) break;
        cJSON_AddStringToObject(l, "layer", m->layers[in->layer].name);
        cJSON_AddNumberToObject(l, "index", in->layer);
        cJSON_AddStringToObject(l, "weight", m->ptensors[q->rt[i].w_param].name);
        cJSON_AddNumberToObject(l, "lo", in->lo);
        cJSON_AddNumberToObject(l, "hi", in->hi);
        cJSON_AddNumberToObject(l, "act_scale", in->act.scale);
        cJSON_AddNumberToObject(l, "act_zero_point", in->act.zero_point);
        if (in->bits < 8) {
            cJSON_AddNumberToObject(l, "bits", in->bits);
            cJSON_AddNumberToObject(l, "group_size", in->group_size);
            cJSON_AddStringToObject(l, "group_mode", rf_group_mode_name(in->group_mode));
        }
        cJSON_AddItemToArray(arr, l);
    }
    return o;
}

static const rf_qlayer_info *info_of_weight(const rf_quant *q, const rf_model *m, const char *name, int *k) {
    for (int i = 0; i < q->n; i++)
        if (strcmp(m->ptensors[q->rt[i].w_param].name, name) == 0) { *k = i; return &q->info[i]; }
    return NULL;
}

rf_status rf_quant_to_ckpt(rf_ctx *ctx, const rf_quant *q, const rf_model *m,
                           const char *extra_json, rf_ckpt **out) {
    *out = NULL;
    if (!q->weights_ready) return rf_error(ctx, RF_ERR_INVALID, "quantize: enable the int8 path before saving");
    cJSON *extra = extra_json ? cJSON_Parse(extra_json) : cJSON_CreateObject();
    if (!extra || !cJSON_IsObject(extra)) {
        cJSON_Delete(extra);
        return rf_error(ctx, RF_ERR_INVALID, "quantize: extra metadata is not a JSON object");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(extra, "quant");
    cJSON *qm = quant_meta(q, m);
    if (!qm) { cJSON_Delete(extra); return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory"); }
    cJSON_AddItemToObject(extra, "quant", qm);
    char *es = cJSON_PrintUnformatted(extra);
    cJSON_Delete(extra);
    if (!es) return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
    rf_ckpt *base = NULL, *c = NULL;
    rf_status s = rf_model_to_ckpt(ctx, m, es, &base);
    cJSON_free(es);
    if (s == RF_OK) s = rf_ckpt_new(ctx, &c);
    if (s == RF_OK) s = rf_ckpt_set_meta(ctx, c, base->meta_json);
    for (int i = 0; s == RF_OK && i < base->n; i++) {
        const rf_ckpt_tensor *t = &base->t[i];
        int k;
        if (info_of_weight(q, m, t->name, &k) && q->info[k].bits < 8) {
            /* the int4 kind has no mask: pruned weights are stored as q = zp */
            s = rf_ckpt_add_int4(ctx, c, t->name, t->ndim, t->shape, q->rt[k].q8, q->info[k].group_size, q->rt[k].gscales,
                                 q->rt[k].gzp);
        } else if (info_of_weight(q, m, t->name, &k)) {
            int sparse = t->mask != NULL || t->storage == RF_STORE_SPARSE;
            s = rf_ckpt_add(ctx, c, t->name, RF_I8, t->ndim, t->shape,
                            sparse ? RF_STORE_SPARSE_INT8 : RF_STORE_INT8, q->rt[k].q8, t->mask, q->rt[k].ws);
        } else {
            s = rf_ckpt_add_copy(ctx, c, t);
        }
    }
    rf_ckpt_free(base);
    if (s != RF_OK) { rf_ckpt_free(c); return s; }
    *out = c;
    return RF_OK;
}

rf_status rf_quant_save(rf_ctx *ctx, const rf_quant *q, const rf_model *m,
                        const char *extra_json, const char *path, uint64_t *bytes) {
    rf_ckpt *c;
    RF_TRY(rf_quant_to_ckpt(ctx, q, m, extra_json, &c));
    rf_status s = rf_ckpt_write(ctx, c, path);
    if (s == RF_OK && bytes) *bytes = c->file_bytes;
    rf_ckpt_free(c);
    return s;
}

/* The "quant" object of a checkpoint's metadata (in "extra", or top level). */
static cJSON *meta_quant(cJSON *meta) {
    cJSON *extra = cJSON_GetObjectItemCaseSensitive(meta, "extra");
    cJSON *q = cJSON_IsObject(extra) ? cJSON_GetObjectItemCaseSensitive(extra, "quant") : NULL;
    if (!cJSON_IsObject(q)) q = cJSON_GetObjectItemCaseSensitive(meta, "quant");
    return cJSON_IsObject(q) ? q : NULL;
}

int rf_quant_ckpt_is_quantized(const rf_ckpt *c) {
    cJSON *meta = c && c->meta_json ? cJSON_Parse(c->meta_json) : NULL;
    int r = meta && meta_quant(meta) != NULL;
    cJSON_Delete(meta);
    return r;
}

static int json_num(const cJSON *o, const char *key, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return 0;
    *v = x->valuedouble;
    return 1;
}

/* Product i from an int4 tensor: its values, group size and scales as stored
 * (the bits and mode the metadata names, checked against the values). */
static rf_status attach_int4(rf_ctx *ctx, rf_quant *q, int i, rf_model *m, const rf_ckpt_tensor *t) {
    qlayer_rt *rt = &q->rt[i];
    rf_qlayer_info *in = &q->info[i];
    const char *wname = m->ptensors[rt->w_param].name;
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
    if (t->ndim < 1 || t->shape[0] != in->N || numel != (int64_t)in->N * in->K)
        return rf_error(ctx, RF_ERR_SHAPE, "quantized checkpoint: tensor %s has the wrong shape", wname);
    if (in->bits >= 8) in->bits = 4;   /* entries without "bits": the container's 4 */
    rf_status s = rf_quant_set_weights(ctx, q, m, i, in->bits, t->group_size,
                                       t->zero_points ? RF_GROUP_AFFINE : RF_GROUP_SYMMETRIC);
    if (s != RF_OK) { rf_error_prefix(ctx, "quantized checkpoint"); return RF_ERR_FORMAT; }
    RF_TRY(rt_alloc_weights(ctx, rt, in));
    const int8_t *v = t->data;
    /* symmetric: what rf_group_quantize writes is [-qmax, qmax]; the
     * container and the kernel also take -qmax - 1 (two's complement) */
    const int qmax = (1 << (in->bits - 1)) - 1, levels = (1 << in->bits) - 1;
    for (int64_t k = 0; k < numel; k++)
        if (t->zero_points ? v[k] < 0 || v[k] > levels : v[k] < -qmax - 1 || v[k] > qmax)
            return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: tensor %s value %d at %lld outside %d bits", wname, v[k],
                            (long long)k, in->bits);
    size_t ng = (size_t)numel / (size_t)in->group_size;
    memcpy(rt->q8, v, (size_t)numel);
    memcpy(rt->gscales, t->scales, ng * sizeof(float));
    if (rt->gzp) memcpy(rt->gzp, t->zero_points, ng * sizeof(int32_t));
    for (int n = 0; n < in->N; n++) rt->ws[n] = 1.0f;
    rt_snap_params(rt, in, m);
    return RF_OK;
}

static rf_status attach_from_meta(rf_ctx *ctx, rf_quant *q, rf_model *m, const rf_ckpt *c, cJSON *qm) {
    const cJSON *calib = cJSON_GetObjectItemCaseSensitive(qm, "calib");
    int cm = cJSON_IsString(calib) ? rf_calib_from_name(calib->valuestring) : -1;
    q->calib = cm >= 0 ? (rf_calib)cm : RF_CALIB_MINMAX;
    double pct = 0;
    if (json_num(qm, "percentile", &pct)) q->percentile = pct;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(qm, "layers");
    if (!cJSON_IsArray(layers))
        return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: metadata quant.layers is missing");
    const cJSON *l;
    cJSON_ArrayForEach(l, layers) {
        double idx, lo, hi, sc, zp;
        if (!json_num(l, "index", &idx) || !json_num(l, "lo", &lo) || !json_num(l, "hi", &hi) ||
            !json_num(l, "act_scale", &sc) || !json_num(l, "act_zero_point", &zp))
            return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: a quant.layers entry lacks index/lo/hi/act_scale/act_zero_point");
        /* An entry names its product by weight tensor; entries without a
         * name (earlier files, one product per layer) by layer index. */
        const cJSON *wn = cJSON_GetObjectItemCaseSensitive(l, "weight");
        int k = -1;
        for (int i = 0; i < q->n && k < 0; i++) {
            if (cJSON_IsString(wn) ? strcmp(m->ptensors[q->info[i].param].name, wn->valuestring) == 0
                                   : q->info[i].layer == (int)idx)
                k = i;
        }
        if (k < 0)
            return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: layer %g / weight %s is not a quantizable product",
                            idx, cJSON_IsString(wn) ? wn->valuestring : "?");
        if (!(sc > 0) || zp < 0 || zp > 255 || !isfinite(sc))
            return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: layer %s has invalid qparams (scale %g, zero point %g)",
                            m->layers[(int)idx].name, sc, zp);
        rf_qlayer_info *in = &q->info[k];
        double b;
        if (json_num(l, "bits", &b)) {
            if (b != 8 && (b < RF_GROUP_BITS_MIN || b > RF_GROUP_BITS_MAX))
                return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: weight %s has bits %g", m->ptensors[in->param].name, b);
            in->bits = (int)b;
        }
        in->lo = (float)lo; in->hi = (float)hi;
        in->act.scale = (float)sc; in->act.zero_point = (int32_t)zp;
        in->calibrated = 1;
    }
    for (int i = 0; i < q->n; i++) {
        qlayer_rt *rt = &q->rt[i];
        rf_qlayer_info *in = &q->info[i];
        const char *wname = m->ptensors[rt->w_param].name;
        if (!in->calibrated)
            return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: no qparams for product %s", wname);
        const rf_ckpt_tensor *t = rf_ckpt_find(c, wname);
        if (!t) return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: tensor %s missing", wname);
        if (t->storage == RF_STORE_INT4) {
            RF_TRY(attach_int4(ctx, q, i, m, t));
            continue;
        }
        if (t->dtype != RF_I8 || !t->scales || (t->storage != RF_STORE_INT8 && t->storage != RF_STORE_SPARSE_INT8))
            return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: tensor %s is not stored as int8 with scales", wname);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        if (t->ndim < 1 || t->shape[0] != in->N || numel != (int64_t)in->N * in->K)
            return rf_error(ctx, RF_ERR_SHAPE, "quantized checkpoint: tensor %s has the wrong shape", wname);
        in->bits = 8;   /* stored int8: per channel, whatever the entry says */
        in->group_size = in->K;
        RF_TRY(rt_alloc_weights(ctx, rt, in));
        memcpy(rt->q8, t->data, (size_t)numel);
        memcpy(rt->ws, t->scales, (size_t)in->N * sizeof(float));
        for (int n = 0; n < in->N; n++)
            if (!(rt->ws[n] > 0.0f) || !isfinite(rt->ws[n]))
                return rf_error(ctx, RF_ERR_FORMAT, "quantized checkpoint: tensor %s row %d has scale %g", wname, n, (double)rt->ws[n]);
        rt_snap_params(rt, in, m);
    }
    q->weights_ready = 1;
    return install(ctx, q, m, RF_QPATH_INT8);
}

rf_status rf_quant_attach(rf_ctx *ctx, rf_model *m, const rf_ckpt *c, rf_quant **out) {
    *out = NULL;
    cJSON *meta = c->meta_json ? cJSON_Parse(c->meta_json) : NULL;
    if (!meta) return rf_error(ctx, RF_ERR_FORMAT, "checkpoint metadata is not JSON");
    cJSON *qm = meta_quant(meta);
    if (!qm) { cJSON_Delete(meta); return RF_OK; }
    rf_quant *q;
    rf_status s = rf_quant_new(ctx, m, &q);
    if (s == RF_OK) s = attach_from_meta(ctx, q, m, c, qm);
    cJSON_Delete(meta);
    if (s != RF_OK) { if (q) { rf_quant_detach(q, m); rf_quant_free(q); } return s; }
    *out = q;
    return RF_OK;
}

/* A float copy of c: int8 tensors dequantized (row scale × value), so the
 * model builder sees ordinary f32 tensors; sparse kinds keep their mask. */
static rf_status dequantized_copy(rf_ctx *ctx, const rf_ckpt *c, rf_ckpt **out) {
    rf_ckpt *d;
    RF_TRY(rf_ckpt_new(ctx, &d));
    rf_status s = rf_ckpt_set_meta(ctx, d, c->meta_json);
    for (int i = 0; s == RF_OK && i < c->n; i++) {
        const rf_ckpt_tensor *t = &c->t[i];
        int q8 = t->dtype == RF_I8 && t->scales && (t->storage == RF_STORE_INT8 || t->storage == RF_STORE_SPARSE_INT8);
        if (t->storage == RF_STORE_INT4) {
            float *f = NULL;
            s = rf_ckpt_tensor_to_f32(ctx, t, &f);
            if (s == RF_OK) s = rf_ckpt_add(ctx, d, t->name, RF_F32, t->ndim, t->shape, RF_STORE_DENSE, f, NULL, NULL);
            rf_free(f);
            continue;
        }
        if (!q8) { s = rf_ckpt_add_copy(ctx, d, t); continue; }
        int64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= t->shape[k];
        int64_t rows = t->ndim > 0 ? t->shape[0] : 1, cols = rows > 0 ? numel / rows : 0;
        float *f = rf_malloc((size_t)numel * sizeof(float));
        if (!f) { s = rf_error(ctx, RF_ERR_NOMEM, "checkpoint: out of memory"); break; }
        const int8_t *v = t->data;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) f[r * cols + k] = t->scales[r] * (float)v[r * cols + k];
        s = rf_ckpt_add(ctx, d, t->name, RF_F32, t->ndim, t->shape,
                        t->storage == RF_STORE_SPARSE_INT8 ? RF_STORE_SPARSE : RF_STORE_DENSE, f, t->mask, NULL);
        rf_free(f);
    }
    if (s != RF_OK) { rf_ckpt_free(d); return s; }
    *out = d;
    return RF_OK;
}

rf_status rf_quant_load(rf_ctx *ctx, const char *path, rf_model **m, rf_quant **q) {
    *m = NULL; *q = NULL;
    rf_ckpt *c;
    RF_TRY(rf_ckpt_read(ctx, path, &c));
    rf_status s;
    if (!rf_quant_ckpt_is_quantized(c)) {
        s = rf_model_from_ckpt(ctx, c, m);
    } else {
        rf_ckpt *f = NULL;
        s = dequantized_copy(ctx, c, &f);
        if (s == RF_OK) s = rf_model_from_ckpt(ctx, f, m);
        rf_ckpt_free(f);
        if (s == RF_OK) s = rf_quant_attach(ctx, *m, c, q);
        if (s != RF_OK) { rf_model_free(*m); *m = NULL; }
    }
    rf_ckpt_free(c);
    if (s != RF_OK) rf_error_prefix(ctx, "%s", path);
    return s;
}
