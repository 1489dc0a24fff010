/* Fully connected layer and its backward (weights stored [out, in] as
 * PyTorch stores them, so Y = X · W^T). The products themselves go through
 * rf_nn_linear_fwd / _dx / _dw (gemm_rows.c: the row-streaming kernel for
 * tall products, OpenBLAS sgemm otherwise). */
#include "nn/layers.h"
#include "raffle/kernels.h"

#include <string.h>

/* db[j] += Σ_i dY[i, j] (vectorised across j; same summation order per j). */
RF_NN_VEC static void colsum_add(float *db, const float *dY, int M, int N, int ldy) {
    for (int i = 0; i < M; i++) {
        const float *r = dY + (size_t)i * ldy;
        for (int j = 0; j < N; j++) db[j] += r[j];
    }
}

void rf_nn_colsum_add(float *db, const float *dY, int M, int N, int ldy) { colsum_add(db, dY, M, N, ldy); }

void rf_nn_linear_bwd(const rf_engine *e, float *dX, float *dW, float *db, const float *dY, const float *X,
                      const float *W, int M, int N, int K, int ldx, int ldy) {
    if (dX) rf_nn_linear_dx(e, dX, dY, W, M, N, K, ldx, ldy);
    if (dW) rf_nn_linear_dw(e, dW, dY, X, M, N, K, ldx, ldy);
    if (db) colsum_add(db, dY, M, N, ldy);
}

/* Rows of the product: a flat input is one row per sample; a token sequence
 * (T, D) is T rows per sample (the layer acts on each token, as nn.Linear on
 * a [B, T, D] tensor does). */
static int linear_rows(const rf_layer *L) { return L->ip[7] == RF_NN_TOKENS ? L->in.d[0] : 1; }
static int linear_k(const rf_layer *L) { return L->ip[7] == RF_NN_TOKENS ? L->in.d[1] : (int)L->in_size; }

static rf_status linear_setup(rf_nn_builder *b, rf_layer *L, const cJSON *j) {
    RF_TRY(rf_nn_need_kind(b, L, RF_NN_K(RF_NN_FLAT) | RF_NN_K(RF_NN_TOKENS)));
    int tokens = b->in_kind == RF_NN_TOKENS;
    int k = tokens ? L->in.d[1] : (int)L->in_size;
    int in_decl;
    RF_TRY(rf_nn_int(b, j, "in", k, 1, 1 << 30, &in_decl));
    if (in_decl != k) return rf_nn_err(b, RF_ERR_SHAPE, "expects %d inputs, gets %d", in_decl, k);
    RF_TRY(rf_nn_int(b, j, "out", -1, 1, 1 << 24, &L->ip[0]));
    if (L->ip[0] < 0) return rf_nn_err(b, RF_ERR_SPEC, "missing \"out\"");
    RF_TRY(rf_nn_int(b, j, "bias", 1, 0, 1, &L->ip[1]));
    int n = L->ip[0];
    if (tokens) rf_nn_set_out(L, L->in.d[0], n, 1, RF_NN_TOKENS);
    else rf_nn_set_out(L, n, 1, 1, RF_NN_FLAT);
    RF_TRY(rf_nn_param(b, L, "weight", RF_P_WEIGHT, 2, n, k, 0, 0));
    if (L->ip[1]) RF_TRY(rf_nn_param(b, L, "bias", RF_P_BIAS, 1, n, 0, 0, 0));
    return RF_OK;
}

static rf_status linear_forward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int M = r->B * linear_rows(L), N = L->ip[0], K = linear_k(L);
    if (rf_nn_overridden(r)) return L->infer_gemm(L->infer_state, r->in, r->out, M);
    rf_nn_linear_fwd(r->eng, r->out, r->in, r->p[0], L->ip[1] ? r->p[1] : NULL, M, N, K, K, N);
    return RF_OK;
}

static void linear_backward(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    int M = r->B * linear_rows(L), N = L->ip[0], K = linear_k(L);
    rf_nn_linear_bwd(r->eng, r->din, r->g[0], L->ip[1] ? r->g[1] : NULL, r->dout, r->in, r->p[0], M, N, K, K, N);
}

/* ---- feature-major runs (model.c) ---------------------------------------- */
long rf_nn_feat_product(const rf_layer *L, int K, int N, int rows) {
    if (!L->infer_gemm) return 0;
    return L->infer_gemm_feat ? ((long)K + N) * rows : -1;
}

static long linear_feat(const rf_layer *L) { return rf_nn_feat_product(L, linear_k(L), L->ip[0], linear_rows(L)); }

rf_status rf_nn_product_feat(rf_status (*gemm_feat)(void *, const float *, float *, int, int), void *state,
                             float *YT, const float *XT, const float *W, const float *b, int M, int N, int K,
                             int ld) {
    if (gemm_feat) return gemm_feat(state, XT, YT, M, ld);
    rf_linear_f32_lay(XT, RF_FEAT, W, b, YT, RF_FEAT, M, N, K, ld);
    return RF_OK;
}

void rf_nn_feat_rows(float *y, const float *x, int n, int M, int ld, void (*f)(float *, const float *, size_t)) {
    if (ld == M) { f(y, x, (size_t)n * (size_t)M); return; }   /* no padding: one call */
    for (int i = 0; i < n; i++) f(y + (size_t)i * ld, x + (size_t)i * ld, (size_t)M);
}

/* Input and output have the same rows, so the same stride (ldi == ldo). */
static rf_status linear_forward_feat(const rf_nn_feat *f) {
    const rf_layer *L = f->r->L;
    int M = f->r->B * linear_rows(L);
    return rf_nn_product_feat(L->infer_gemm ? L->infer_gemm_feat : NULL, L->infer_state, f->out, f->in, f->r->p[0],
                              L->ip[1] ? f->r->p[1] : NULL, M, L->ip[0], linear_k(L), f->ldo);
}

static const char *const linear_keys[] = {"in", "out", "bias", NULL};
const rf_nn_op rf_nn_op_linear = {"linear", linear_keys, linear_setup, NULL, linear_forward, linear_backward,
                                  linear_feat, linear_forward_feat, NULL, 0, RF_NN_CONN_PRODUCT, 0, RF_LT_PRODUCT | RF_LT_ROWS | RF_LT_FEAT | RF_LT_PRUNABLE | RF_LT_QUANT};
