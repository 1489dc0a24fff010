/* Multi-head self-attention (Vaswani et al. 2017, §3.2.2) as a layer, and the
 * kernels the transformer block shares. Per (sample, head) the six small
 * products (two forward, four backward) address q, k, v in place inside the
 * packed qkv rows through leading dimensions: q_h = qkv[:, h·hd : (h+1)·hd],
 * k_h at +D, v_h at +2D, ld = 3D; only K^T and V^T are packed, once per
 * sample for all heads ([D][T]; head h's rows h·hd .. h·hd + hd − 1).
 * They run on the engine's GEMM (raffle/gemm.h), with B read in place: K^T
 * and V^T are packed once per sample, so no product packs its B. The 1/sqrt(hd) scale is applied to the scores in
 * the softmax, and to dS in its backward. */
#include "nn/product.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* Row softmax of scale·S; exp(s - max) = exp(-u/2) with u = 2·(max - s) >= 0.
 * Max and sum use the lane reductions (layers.h). */
RF_NN_VEC static void softmax_rows(float *S, int rows, int cols, float scale) {
    const int n16 = cols & ~(RF_NN_LANES - 1);
    for (int i = 0; i < rows; i++) {
        float *s = S + (size_t)i * cols;
        for (int j = 0; j < cols; j++) s[j] *= scale;
        float m[RF_NN_LANES], acc[RF_NN_LANES] = {0.0f};
        for (int l = 0; l < RF_NN_LANES; l++) m[l] = s[0];
        for (int j = 0; j < n16; j += RF_NN_LANES)
            for (int l = 0; l < RF_NN_LANES; l++) m[l] = s[j + l] > m[l] ? s[j + l] : m[l];
        for (int j = n16; j < cols; j++) m[j - n16] = s[j] > m[j - n16] ? s[j] : m[j - n16];
        float mx = m[0];
        for (int l = 1; l < RF_NN_LANES; l++) mx = m[l] > mx ? m[l] : mx;
        for (int j = 0; j < cols; j++) s[j] = rf_nn_exp_neg_half(2.0f * (mx - s[j]));
        for (int j = 0; j < n16; j += RF_NN_LANES)
            for (int l = 0; l < RF_NN_LANES; l++) acc[l] += s[j + l];
        for (int j = n16; j < cols; j++) acc[j - n16] += s[j];
        float inv = 1.0f / rf_nn_lanes_sum(acc);
        for (int j = 0; j < cols; j++) s[j] *= inv;
    }
}

/* AVX-512 softmax_rows for rows of at most 32: the row sits in two masked
 * registers instead of five short loops with scalar tails (vit-tiny's 17).
 * Same operations in the same order as softmax_rows (mul and add, never
 * fused; the max is exact; the sum's two halves then rf_nn_lanes_sum's
 * tree), so the same bits. */
__attribute__((target("avx512f"), optimize("O3"), always_inline))
static inline __m512 exp_neg_half_512(__m512 u) {
    __m512i ub = _mm512_min_epi32(_mm512_castps_si512(u), _mm512_set1_epi32(0x432E0000));
    __m512 t = _mm512_mul_ps(_mm512_castsi512_ps(ub), _mm512_set1_ps(-0.72134752044448170f));
    __m512 r = _mm512_add_ps(t, _mm512_set1_ps(12582912.0f));
    __m512 f = _mm512_sub_ps(t, _mm512_sub_ps(r, _mm512_set1_ps(12582912.0f)));
    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(1.0f));
    __m512i ib = _mm512_sub_epi32(_mm512_castps_si512(r), _mm512_set1_epi32(0x4B400000 - 127));
    return _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(ib, 23)));
}

__attribute__((target("avx512f"), optimize("O3")))
static void softmax_rows_512(float *S, int rows, int cols, float scale) {
    __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
    __mmask16 m1 = (__mmask16)(cols >= 32 ? 0xFFFFu : cols > 16 ? (1u << (cols - 16)) - 1u : 0u);
    const __m512 sc = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < rows; i++) {
        float *s = S + (size_t)i * cols;
        __m512 v0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, s), sc);
        __m512 v1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, s + 16), sc);
        float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_mask_mov_ps(ninf, m0, v0), _mm512_mask_mov_ps(ninf, m1, v1)));
        __m512 mxv = _mm512_set1_ps(mx), two = _mm512_set1_ps(2.0f);
        v0 = _mm512_maskz_mov_ps(m0, exp_neg_half_512(_mm512_mul_ps(two, _mm512_sub_ps(mxv, v0))));
        v1 = _mm512_maskz_mov_ps(m1, exp_neg_half_512(_mm512_mul_ps(two, _mm512_sub_ps(mxv, v1))));
        __m512 a = _mm512_add_ps(v0, v1);
        __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
        __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
        float cv[4];
        _mm_storeu_ps(cv, c);
        __m512 inv = _mm512_set1_ps(1.0f / ((cv[0] + cv[2]) + (cv[1] + cv[3])));
        _mm512_mask_storeu_ps(s, m0, _mm512_mul_ps(v0, inv));
        _mm512_mask_storeu_ps(s + 16, m1, _mm512_mul_ps(v1, inv));
    }
}

/* Softmax Jacobian in place, times the score scale:
 * dS = scale · P ⊙ (dP - rowsum(dP ⊙ P)). */
RF_NN_VEC static void softmax_bwd_rows(float *dP, const float *P, int rows, int cols, float scale) {
    const int n16 = cols & ~(RF_NN_LANES - 1);
    for (int i = 0; i < rows; i++) {
        const float *pr = P + (size_t)i * cols;
        float *dr = dP + (size_t)i * cols, acc[RF_NN_LANES] = {0.0f};
        for (int j = 0; j < n16; j += RF_NN_LANES)
            for (int l = 0; l < RF_NN_LANES; l++) acc[l] += dr[j + l] * pr[j + l];
        for (int j = n16; j < cols; j++) acc[j - n16] += dr[j] * pr[j];
        float s = rf_nn_lanes_sum(acc);
        for (int j = 0; j < cols; j++) dr[j] = scale * (pr[j] * (dr[j] - s));
    }
}

/* C[M, N] (ldc) = (C +) op(A) · B, op(A) = A [M][K] or, with ta, A^T of an
 * A stored [K][M]; B is [K][N] (ldb). */
static void att_mm(const rf_engine *e, float *C, int ldc, const float *A, int lda, int ta, const float *B, int ldb,
                   int acc, int M, int N, int K) {
    rf_gemm_engine(e, ta, 0, M, N, K, A, lda, B, ldb, acc, C, ldc);
}

rf_status rf_nn_product_fwd(const rf_engine *e, const rf_param *p, int training, float *Y, float *X, const float *W,
                            const float *b, int M, int N, int K) {
    if (p && p->infer_gemm && !training) return p->infer_gemm(p->infer_state, X, Y, M);
    if (p && p->train_act && training) RF_TRY(p->train_act(p->train_state, 0, X, (size_t)M * (size_t)K));
    rf_nn_linear_fwd(e, Y, X, W, b, M, N, K, K, N);
    return RF_OK;
}

void rf_nn_product_grad(const rf_param *p, float *dX, size_t n) {
    /* The backward pass cannot fail (ops' backward returns void): the STE
     * only zeroes entries, so the status carries nothing to act on. */
    if (p && p->train_act) (void)p->train_act(p->train_state, 1, dX, n);
}

void rf_nn_mhsa_heads_fwd(const rf_engine *e, float *att, float *ctx, const float *qkv, int B, int T, int D, int H) {
    int hd = D / H, D3 = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    /* K^T of all heads of a sample at once, [D][T]: head h's K_h^T [hd][T]
     * is rows h·hd .. h·hd + hd - 1 (one transpose per sample, not per head) */
    float *kt = rf_nn_gemm_scratch((size_t)D * T);
    for (int b = 0; b < B; b++) {
        if (kt) rf_nn_transpose(kt, qkv + (size_t)b * T * D3 + D, T, D, D3);
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * D3 + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
            float *S = att + ((size_t)b * H + h) * T * T;
            if (kt) att_mm(e, S, T, q, D3, 0, kt + (size_t)h * hd * T, T, 0, T, T, hd);
            else rf_gemm_engine(e, 0, 1, T, T, hd, q, D3, k, D3, 0, S, T);
            if (T <= 32 && rf_kernels_isa() >= RF_ISA_AVX512) softmax_rows_512(S, T, T, scale);
            else softmax_rows(S, T, T, scale);
            att_mm(e, ctx + (size_t)b * T * D + (size_t)h * hd, D, S, T, 0, v, D3, 0, T, hd, T);
        }
    }
}

/* Feature-major: qkvT [3D][ld], ctxT [D][ld], sample b at columns b·T ..
 * b·T + T - 1; head h's q^T, k^T, v^T are rows h·hd, D + h·hd, 2D + h·hd
 * (hd of them) of qkvT, so scores and context need no packing: S = (q^T)^T
 * k^T, then ctx^T = v^T S^T with S^T one T × T transpose. Every element is
 * the same products in the same order as rf_nn_mhsa_heads_fwd (the GEMM
 * runs A or A^T alike), so the same values. S: 2·T·T floats of scratch. */
void rf_nn_mhsa_heads_fwd_feat(const rf_engine *e, float *ctxT, const float *qkvT, int ld, float *S, int B, int T,
                               int D, int H) {
    int hd = D / H;
    float scale = 1.0f / sqrtf((float)hd), *St = S + (size_t)T * T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qt = qkvT + (size_t)h * hd * ld + (size_t)b * T;
            const float *kt = qt + (size_t)D * ld, *vt = qt + (size_t)2 * D * ld;
            att_mm(e, S, T, qt, ld, 1, kt, ld, 0, T, T, hd);
            if (T <= 32 && rf_kernels_isa() >= RF_ISA_AVX512) softmax_rows_512(S, T, T, scale);
            else softmax_rows(S, T, T, scale);
            rf_nn_transpose(St, S, T, T, T);
            att_mm(e, ctxT + (size_t)h * hd * ld + (size_t)b * T, ld, vt, ld, 0, St, T, 0, hd, T, T);
        }
}

rf_status rf_nn_mhsa_fwd_p(const rf_engine *e, float *y, float *qkv, float *att, float *ctx, float *x,
                           const float *Wqkv, const float *bqkv, const float *Wproj, const float *bproj,
                           int B, int T, int D, int H, const rf_param *pqkv, const rf_param *pproj, int training) {
    int D3 = 3 * D, M = B * T;
    RF_TRY(rf_nn_product_fwd(e, pqkv, training, qkv, x, Wqkv, bqkv, M, D3, D));
    rf_nn_mhsa_heads_fwd(e, att, ctx, qkv, B, T, D, H);
    return rf_nn_product_fwd(e, pproj, training, y, ctx, Wproj, bproj, M, D, D);
}

/* Without overrides nothing rewrites x (training with pqkv == NULL), so the
 * const input of the shared-kernel interface is honoured. */
void rf_nn_mhsa_fwd(const rf_engine *e, float *y, float *qkv, float *att, float *ctx, const float *x,
                    const float *Wqkv, const float *bqkv, const float *Wproj, const float *bproj,
                    int B, int T, int D, int H) {
    (void)rf_nn_mhsa_fwd_p(e, y, qkv, att, ctx, (float *)x, Wqkv, bqkv, Wproj, bproj, B, T, D, H, NULL, NULL, 1);
}

size_t rf_nn_mhsa_scratch(int B, int T, int D, int H) {
    return (size_t)B * T * D * 4 + (size_t)T * T;
}

/* dq, dk and dv of a head each receive exactly one product, so they are
 * written, not accumulated, and dqkv needs no clearing. */
void rf_nn_mhsa_heads_bwd(const rf_engine *e, float *dqkv, const float *dctx, const float *qkv, const float *att,
                          float *dP, int B, int T, int D, int H) {
    int hd = D / H, D3 = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    float *vt = rf_nn_gemm_scratch((size_t)D * T);   /* V^T of a sample, [D][T] */
    for (int b = 0; b < B; b++) {
        if (vt) rf_nn_transpose(vt, qkv + (size_t)b * T * D3 + 2 * D, T, D, D3);
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * D3 + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + (size_t)b * T * D3 + (size_t)h * hd, *dk = dq + D, *dv = dq + 2 * D;
            const float *P = att + ((size_t)b * H + h) * T * T;
            const float *dc = dctx + (size_t)b * T * D + (size_t)h * hd;
            if (vt) att_mm(e, dP, T, dc, D, 0, vt + (size_t)h * hd * T, T, 0, T, T, hd);
            else rf_gemm_engine(e, 0, 1, T, T, hd, dc, D, v, D3, 0, dP, T);
            att_mm(e, dv, D3, P, T, 1, dc, D, 0, T, hd, T);
            softmax_bwd_rows(dP, P, T, T, scale);
            att_mm(e, dq, D3, dP, T, 0, k, D3, 0, T, hd, T);
            att_mm(e, dk, D3, dP, T, 1, q, D3, 0, T, hd, T);
        }
    }
}

void rf_nn_mhsa_bwd_p(const rf_engine *e, float *dx, float *dWqkv, float *dbqkv, float *dWproj, float *dbproj,
                      const float *dy, const float *x, const float *qkv, const float *att, const float *ctx,
                      const float *Wqkv, const float *Wproj, float *scratch, int B, int T, int D, int H,
                      const rf_param *pqkv, const rf_param *pproj) {
    int D3 = 3 * D, M = B * T;
    float *dctx = scratch, *dqkv = dctx + (size_t)M * D, *dP = dqkv + (size_t)M * D3;
    memset(dctx, 0, (size_t)M * D * sizeof(float));
    rf_nn_linear_bwd(e, dctx, dWproj, dbproj, dy, ctx, Wproj, M, D, D, D, D);
    rf_nn_product_grad(pproj, dctx, (size_t)M * D);
    rf_nn_mhsa_heads_bwd(e, dqkv, dctx, qkv, att, dP, B, T, D, H);
    if (!pqkv || !pqkv->train_act) { rf_nn_linear_bwd(e, dx, dWqkv, dbqkv, dqkv, x, Wqkv, M, D3, D, D, D3); return; }
    /* dx accumulates (residual sources share it): the STE mask applies to
     * this product's contribution only, so it is formed apart first, in
     * dctx's region (no longer needed). */
    float *dxq = dctx;
    memset(dxq, 0, (size_t)M * D * sizeof(float));
    rf_nn_linear_bwd(e, dxq, dWqkv, dbqkv, dqkv, x, Wqkv, M, D3, D, D, D3);
    rf_nn_product_grad(pqkv, dxq, (size_t)M * D);
    if (dx) rf_nn_add(dx, dxq, (size_t)M * D);
}

void rf_nn_mhsa_bwd(const rf_engine *e, float *dx, float *dWqkv, float *dbqkv, float *dWproj, float *dbproj,
                    const float *dy, const float *x, const float *qkv, const float *att, const float *ctx,
                    const float *Wqkv, const float *Wproj, float *scratch, int B, int T, int D, int H) {
    rf_nn_mhsa_bwd_p(e, dx, dWqkv, dbqkv, dWproj, dbproj, dy, x, qkv, att, ctx, Wqkv, Wproj, scratch, B, T, D, H,
                     NULL, NULL);
}

/* ---- the layer: tokens (T, D) -> (T, D); parameters qkv.{weight,bias},
 * proj.{weight,bias}; saved per sample: qkv [3TD], att [H·T·T], ctx [TD]. */
static rf_status attn_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_TOKENS)));
    int D = L->in.d[1], T = L->in.d[0];
    RF_TRY(rf_nn_int(b, j, "heads", 1, 1, 4096, &L->ip[0]));
    if (D % L->ip[0]) return rf_nn_err(b, RF_ERR_SHAPE, "%d heads do not divide width %d", L->ip[0], D);
    rf_nn_set_out(L, T, D, 1, RF_NN_TOKENS);
    RF_TRY(rf_nn_param(b, L, "qkv.weight", RF_P_WEIGHT, 2, 3 * D, D, 0, 0));
    RF_TRY(rf_nn_param(b, L, "qkv.bias", RF_P_BIAS, 1, 3 * D, 0, 0, 0));
    RF_TRY(rf_nn_param(b, L, "proj.weight", RF_P_WEIGHT, 2, D, D, 0, 0));
    RF_TRY(rf_nn_param(b, L, "proj.bias", RF_P_BIAS, 1, D, 0, 0, 0));
    L->save_numel = (size_t)T * D * 4 + (size_t)L->ip[0] * T * T;
    return RF_OK;
}

static size_t attn_scratch(const rf_layer *L, int B, const rf_engine *e) {
    (void)e;
    return rf_nn_mhsa_scratch(B, L->in.d[0], L->in.d[1], L->ip[0]);
}

static rf_status attn_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int B = r->B, T = L->in.d[0], D = L->in.d[1], H = L->ip[0];
    float *qkv = r->save, *att = qkv + (size_t)B * T * 3 * D, *ctx = att + (size_t)B * H * T * T;
    const rf_param *pq = L->pt ? &L->pt[0] : NULL, *pp = L->pt ? &L->pt[2] : NULL;
    float *x = (float *)r->in;
    if (r->training && pq && pq->train_act) {
        /* The input is the previous layer's output, which must not change:
         * the fake-quantized copy lives in scratch (free during forward).
         * The layer keeps no copy of it, so dW_qkv in backward uses the
         * float input (the transformer block, which saves its LN output,
         * uses the quantized one). */
        x = r->scratch;
        memcpy(x, r->in, (size_t)B * T * D * sizeof(float));
    }
    return rf_nn_mhsa_fwd_p(r->eng, r->out, qkv, att, ctx, x, r->p[0], r->p[1], r->p[2], r->p[3], B, T, D, H, pq, pp,
                            r->training);
}

static void attn_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int B = r->B, T = L->in.d[0], D = L->in.d[1], H = L->ip[0];
    const float *qkv = r->save, *att = qkv + (size_t)B * T * 3 * D, *ctx = att + (size_t)B * H * T * T;
    rf_nn_mhsa_bwd_p(r->eng, r->din, r->g[0], r->g[1], r->g[2], r->g[3], r->dout, r->in, qkv, att, ctx, r->p[0], r->p[2],
                     r->scratch, B, T, D, H, L->pt ? &L->pt[0] : NULL, L->pt ? &L->pt[2] : NULL);
}

static const char *const attn_keys[] = {"heads", NULL};
const rf_nn_op rf_nn_op_attention = {"attention", attn_keys, attn_setup, attn_scratch, attn_forward, attn_backward,
                                  NULL, NULL, NULL, 0, RF_NN_CONN_ALL, 0, RF_LT_PRODUCTS | RF_LT_ROWS | RF_LT_PRUNABLE | RF_LT_QUANT};
