/* Pre-norm transformer encoder block (ViT, Dosovitskiy et al. 2021, eqs. 2-3):
 *   x1  = x + MHSA(LN1(x))
 *   out = x1 + fc2(GELU(fc1(LN2(x1))))
 * Parameter names follow timm's Block so exported weights load in PyTorch:
 * norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2 (each .weight, .bias).
 * Saved per sample, each region laid out [B, ...]: ln1 [TD], st1 [2T],
 * qkv [3TD], att [H·T·T], ctx [TD], x1 [TD], ln2 [TD], st2 [2T], h [T·M],
 * a [T·M] (h = fc1 output, a = GELU(h)). */
#include "nn/product.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <stdlib.h>
#include <string.h>

enum { P_N1W, P_N1B, P_QKVW, P_QKVB, P_PROJW, P_PROJB, P_N2W, P_N2B, P_FC1W, P_FC1B, P_FC2W, P_FC2B };

typedef struct blk {
    int B, T, D, H, Mh;
    float *ln1, *st1, *qkv, *att, *ctx, *x1, *ln2, *st2, *h, *a;
} blk;

/* The dimensions alone (no saved buffers: inference). */
static blk blk_dims(const rf_layer *L, int B) {
    blk k = {B, L->in.d[0], L->in.d[1], L->ip[0], L->ip[1], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    return k;
}

static blk blk_of(const rf_layer *L, int B, float *save) {
    blk k = blk_dims(L, B);
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

/* Backward unchunked: dx1 [TD], da, dh [T·Mh], dln [TD], then the
 * attention's scratch; chunked (below): each chunk's partial gradient and
 * each part's buffers. */
static size_t tb_scratch(const rf_layer *L, int B, const rf_engine *e);



/* ---- chunked path -------------------------------------------------------------
 * The block runs a chunk of samples at a time through all its steps, so a
 * chunk's activations (about "tb_chunk" token rows, 256 by default: ~0.5 MB
 * at vit-tiny's widths) stay in L2 between the products, layer norms, GELU
 * and attention instead of streaming the whole batch through memory once
 * per step (vit-tiny at batch 128 trains ~10% faster per sample at batch 16
 * than at 128, which is what chunking recovers). Per element the products do
 * the same fused multiply-adds in the same order whether chunked or not (the
 * weight gradients continue their row order chunk after chunk: the GEMM's
 * accumulation is a chain through C), so the result is bit-identical to the
 * unchunked path (tests/unit/test_dense.c). It is not used when a product
 * has an override (QAT fake-quant, int8/sparse inference); the engine
 * option "tb_chunk" sets the chunk (0:
 * off). */

/* The chunk is the engine option "tb_chunk" (raffle/engine.h; 0: off). */
static int chunk_rows(const rf_nn_run *r) { return r->eng->v[RF_ENGINE_TB_CHUNK]; }

/* Chunks of a batch of B samples of T tokens for chunk_rows > 0: about
 * chunk_rows token rows each, their count rounded up to a multiple of 4
 * (when there is more than one) and their sizes near-equal, chunk c
 * holding samples [B·c/nc, B·(c+1)/nc) (tb_chunk_start). So 2 or 4 threads
 * get equal shares of the batch (vit-tiny, 17 tokens: 12 chunks of 10-11
 * samples; 9 chunks of 15 and one of 8 left 2 threads at 68 and 60
 * samples), and the chunks, hence the partial sums, depend on B, T and the
 * option alone, never on the thread count. */
static int tb_nchunks_of(int chunk_rows, int T, int B) {
    long nc = ((long)B * T + chunk_rows - 1) / chunk_rows;
    if (nc > 1) nc = (nc + 3) / 4 * 4;
    if (nc > B) nc = B;
    return nc < 1 ? 1 : (int)nc;
}
static int tb_chunk_start(int B, int nc, int c) { return (int)((long)B * c / nc); }
/* Samples in the largest chunk. */
static int tb_chunk_max(int B, int nc) { return (B + nc - 1) / nc; }

/* The block's four weight products: parameter index, N (outputs), K (inputs)
 * as multiples of D, or -1 for the MLP width. */
static const struct { int w, n, k; } tb_prod[4] = {
    {P_QKVW, 3, 1}, {P_PROJW, 1, 1}, {P_FC1W, -1, 1}, {P_FC2W, 1, -1}};
static int prod_dim(const blk *k, int m) { return m < 0 ? k->Mh : m * k->D; }

static int tb_chunked(const rf_nn_run *r) {
    if (!chunk_rows(r)) return 0;
    const rf_param *pt = r->L->pt;
    if (pt)
        for (int i = 0; i < 4; i++)
            if (r->training ? pt[tb_prod[i].w].train_act != NULL : pt[tb_prod[i].w].infer_gemm != NULL) return 0;
    return 1;
}

/* Y[M, N] = X · W_i^T + b_i for product i, through rf_nn_product_fwd with
 * the weight's overrides (int8 inference, QAT input fake-quant). */
static rf_status tb_product(const rf_nn_run *r, const rf_engine *e, const blk *k, int i, float *Y, float *X, int M) {
    int w = tb_prod[i].w, N = prod_dim(k, tb_prod[i].n), K = prod_dim(k, tb_prod[i].k);
    const rf_param *pt = r->L->pt;
    return rf_nn_product_fwd(e, pt ? &pt[w] : NULL, r->training, Y, X, r->p[w], r->p[w + 1], M, N, K);
}

/* The forward over samples [s0, s0 + bc). */
/* The forward over samples [s0, s0 + bc) on engine e. */
static rf_status tb_forward_span(const rf_nn_run *r, const rf_engine *e, const blk *k, int s0, int bc) {
    const float *const *p = r->p;
    int T = k->T, D = k->D, D3 = 3 * D, Mh = k->Mh, rows = bc * T;
    float eps = r->L->fp[0];
    size_t o = (size_t)s0 * T;
    const float *in = r->in + o * D;
    float *out = r->out + o * D, *ln1 = k->ln1 + o * D, *st1 = k->st1 + 2 * o, *qkv = k->qkv + o * D3;
    float *att = k->att + (size_t)s0 * k->H * T * T, *ctx = k->ctx + o * D, *x1 = k->x1 + o * D;
    float *ln2 = k->ln2 + o * D, *st2 = k->st2 + 2 * o, *h = k->h + o * Mh, *a = k->a + o * Mh;
    rf_nn_layernorm_fwd(ln1, st1, in, p[P_N1W], p[P_N1B], rows, D, eps);
    RF_TRY(tb_product(r, e, k, 0, qkv, ln1, rows));
    rf_nn_mhsa_heads_fwd(e, att, ctx, qkv, bc, T, D, k->H);
    RF_TRY(tb_product(r, e, k, 1, x1, ctx, rows));
    rf_nn_add(x1, in, (size_t)rows * D);
    rf_nn_layernorm_fwd(ln2, st2, x1, p[P_N2W], p[P_N2B], rows, D, eps);
    RF_TRY(tb_product(r, e, k, 2, h, ln2, rows));
    rf_nn_gelu_fwd(a, h, (size_t)rows * Mh);
    RF_TRY(tb_product(r, e, k, 3, out, a, rows));
    rf_nn_add(out, x1, (size_t)rows * D);
    return RF_OK;
}

/* ---- chunks over threads ---------------------------------------------------------
 * Forward: a chunk's steps write only its samples' rows, so parts take
 * whole chunks (each on its part's engine: its products on the calling
 * thread). Backward: the parameter gradients are sums over all rows; each
 * chunk sums its rows into a partial gradient of its own (the block's
 * parameters, laid out one after the other), and the partials are added in
 * chunk order, then into the gradients. The chunks are fixed by the batch
 * and "tb_chunk", never by the thread count, so neither are the sums. */

/* Floats of the block's parameters (one chunk's partial gradient). */
static size_t tb_params(const blk *k) {
    size_t D = (size_t)k->D, Mh = (size_t)k->Mh;
    return 4 * D + 3 * D * D + 3 * D + D * D + D + Mh * D + Mh + D * Mh + D;
}

/* Floats of one part's backward buffers for chunks of cs samples. */
static size_t tb_part_floats(const blk *k, int cs) {
    size_t cr = (size_t)cs * k->T;
    return cr * (6 * (size_t)k->D + 2 * (size_t)k->Mh) + (size_t)k->T * k->T;
}

typedef struct tb_job {
    const rf_nn_run *r;
    const blk *k;
    int nc;
    float *partials;     /* [chunks][tb_params] */
    float *bufs;         /* part t's at + t·per */
    size_t per;
    rf_status st[RF_POOL_MAX];
} tb_job;

static void tb_fwd_part(void *arg, int t, int n) {
    tb_job *j = arg;
    const rf_engine pe = rf_nn_part_engine(j->r->eng, t);
    size_t c0, c1;
    rf_nn_span((size_t)j->nc, t, n, &c0, &c1);
    j->st[t] = RF_OK;
    for (size_t c = c0; c < c1 && !j->st[t]; c++) {
        int s0 = tb_chunk_start(j->k->B, j->nc, (int)c);
        j->st[t] = tb_forward_span(j->r, &pe, j->k, s0, tb_chunk_start(j->k->B, j->nc, (int)c + 1) - s0);
    }
}

/* Chunk c's backward: its rows' input gradient, its parameter gradient
 * into partial g (pointers per tensor, zeroed), with buffers buf. */
static void tb_backward_chunk(const rf_nn_run *r, const rf_engine *e, const blk *k, int s0, int bc, float *const *g,
                              float *buf) {
    const float *const *p = r->p;
    int T = k->T, D = k->D, D3 = 3 * D, Mh = k->Mh, H = k->H, rows = bc * T;
    size_t cr = (size_t)rows;
    float *dx1 = buf, *da = dx1 + cr * D, *dh = da + cr * Mh, *dln = dh + cr * Mh, *dctx = dln + cr * D;
    float *dqkv = dctx + cr * D, *dP = dqkv + cr * D3;
    size_t o = (size_t)s0 * T;
    const float *in = r->in + o * D, *dout = r->dout + o * D, *ln1 = k->ln1 + o * D, *st1 = k->st1 + 2 * o;
    const float *qkv = k->qkv + o * D3, *att = k->att + (size_t)s0 * H * T * T, *ctx = k->ctx + o * D;
    const float *x1 = k->x1 + o * D, *ln2 = k->ln2 + o * D, *st2 = k->st2 + 2 * o, *h = k->h + o * Mh;
    const float *a = k->a + o * Mh;
    float *din = r->din ? r->din + o * D : NULL;
    /* MLP: out = x1 + fc2(GELU(fc1(LN2(x1)))) */
    memcpy(dx1, dout, (size_t)rows * D * sizeof(float));
    rf_gemm_engine(e, 0, 0, rows, Mh, D, dout, D, p[P_FC2W], Mh, 0, da, Mh);
    rf_gemm_engine(e, 1, 0, D, Mh, rows, dout, D, a, Mh, 1, g[P_FC2W], Mh);
    rf_nn_colsum_add(g[P_FC2B], dout, rows, D, D);
    memset(dh, 0, (size_t)rows * Mh * sizeof(float));
    rf_nn_gelu_bwd(dh, da, h, (size_t)rows * Mh);
    rf_gemm_engine(e, 0, 0, rows, D, Mh, dh, Mh, p[P_FC1W], D, 0, dln, D);
    rf_gemm_engine(e, 1, 0, Mh, D, rows, dh, Mh, ln2, D, 1, g[P_FC1W], D);
    rf_nn_colsum_add(g[P_FC1B], dh, rows, Mh, Mh);
    rf_nn_layernorm_bwd(dx1, g[P_N2W], g[P_N2B], dln, x1, st2, p[P_N2W], rows, D);
    if (din) rf_nn_add(din, dx1, (size_t)rows * D);
    /* attention: x1 = x + proj(heads(qkv(LN1(x)))) */
    rf_gemm_engine(e, 0, 0, rows, D, D, dx1, D, p[P_PROJW], D, 0, dctx, D);
    rf_gemm_engine(e, 1, 0, D, D, rows, dx1, D, ctx, D, 1, g[P_PROJW], D);
    rf_nn_colsum_add(g[P_PROJB], dx1, rows, D, D);
    rf_nn_mhsa_heads_bwd(e, dqkv, dctx, qkv, att, dP, bc, T, D, H);
    rf_gemm_engine(e, 0, 0, rows, D, D3, dqkv, D3, p[P_QKVW], D, 0, dln, D);
    rf_gemm_engine(e, 1, 0, D3, D, rows, dqkv, D3, ln1, D, 1, g[P_QKVW], D);
    rf_nn_colsum_add(g[P_QKVB], dqkv, rows, D3, D3);
    rf_nn_layernorm_bwd(din, g[P_N1W], g[P_N1B], dln, in, st1, p[P_N1W], rows, D);
}

/* Tensor i's slice of a partial gradient (tensors in declaration order). */
static void tb_partial_ptrs(const rf_nn_run *r, float *base, float **g) {
    for (int i = 0; i < RF_NN_MAX_LAYER_PARAMS && i < r->L->n_params; i++) {
        g[i] = base;
        base += r->L->pt[i].numel;
    }
}

static void tb_bwd_part(void *arg, int t, int n) {
    tb_job *j = arg;
    const rf_engine pe = rf_nn_part_engine(j->r->eng, t);
    size_t c0, c1, np = tb_params(j->k);
    rf_nn_span((size_t)j->nc, t, n, &c0, &c1);
    for (size_t c = c0; c < c1; c++) {
        float *g[RF_NN_MAX_LAYER_PARAMS], *part = j->partials + c * np;
        memset(part, 0, np * sizeof(float));
        tb_partial_ptrs(j->r, part, g);
        int s0 = tb_chunk_start(j->k->B, j->nc, (int)c);
        tb_backward_chunk(j->r, &pe, j->k, s0, tb_chunk_start(j->k->B, j->nc, (int)c + 1) - s0, g,
                          j->bufs + (size_t)t * j->per);
    }
}

/* Part t of the reduction: entries [lo, hi) of the partials (16-float
 * units) summed over the chunks in chunk order, then added into the
 * gradient tensors they belong to: per entry the same additions in the
 * same order as on one thread. */
static void tb_sum_part(void *arg, int t, int n) {
    const tb_job *j = arg;
    size_t np = tb_params(j->k), lo, hi;
    rf_nn_span_aligned(np, 16, t, n, &lo, &hi);
    if (hi <= lo) return;
    for (int c = 1; c < j->nc; c++) rf_nn_add(j->partials + lo, j->partials + (size_t)c * np + lo, hi - lo);
    size_t off = 0;
    for (int i = 0; i < j->r->L->n_params; off += j->r->L->pt[i].numel, i++) {
        size_t a = lo > off ? lo : off, e = off + j->r->L->pt[i].numel;
        if (hi < e) e = hi;
        if (a < e) rf_nn_add(j->r->g[i] + (a - off), j->partials + a, e - a);
    }
}

static int tb_parts(const rf_nn_run *r, const blk *k, int chunks) {
    double work = (double)k->B * k->T * k->D * (4.0 * k->D + 2.0 * k->Mh);   /* the products' multiply-adds */
    int parts = rf_nn_parts(r->eng, work, 1 << 20);
    return parts < chunks ? parts : chunks;
}

static void tb_backward_chunked(const rf_nn_run *r, const blk *k) {
    int nc = tb_nchunks_of(chunk_rows(r), k->T, k->B);
    size_t np = tb_params(k);
    tb_job j = {r, k, nc, r->scratch, r->scratch + (size_t)nc * np, tb_part_floats(k, tb_chunk_max(k->B, nc)), {RF_OK}};
    rf_nn_par(r->eng, tb_parts(r, k, nc), tb_bwd_part, &j);
    /* the chunks' partials in chunk order, then into the gradients */
    rf_nn_par(r->eng, rf_nn_parts(r->eng, (double)np * nc, 1 << 15), tb_sum_part, &j);
}

/* Unchunked, the four products (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) go
 * through rf_nn_product_fwd, so each weight's per-param override applies;
 * their inputs ln1, ctx, ln2 and a are the block's own saved buffers, so a
 * training-time rewrite of them is what the weight gradients see, and layer
 * norm / GELU backward read x, x1 and h, which nothing rewrites. Chunked,
 * the same steps run per chunk, chunks split over threads. */
static rf_status tb_forward(const rf_nn_run *r) {
    blk k = blk_of(r->L, r->B, r->save);
    if (!tb_chunked(r)) return tb_forward_span(r, r->eng, &k, 0, k.B);
    int nc = tb_nchunks_of(chunk_rows(r), k.T, k.B);
    tb_job j = {r, &k, nc, NULL, NULL, 0, {RF_OK}};
    int parts = tb_parts(r, &k, nc);
    rf_nn_par(r->eng, parts, tb_fwd_part, &j);
    for (int t = 0; t < parts; t++) RF_TRY(j.st[t]);
    return RF_OK;
}

static void tb_backward(const rf_nn_run *r) {
    blk k = blk_of(r->L, r->B, r->save);
    if (tb_chunked(r)) {
        tb_backward_chunked(r, &k);
        return;
    }
    const float *const *p = r->p;
    float *const *g = r->g;
    const rf_param *pt = r->L->pt;
    int rows = k.B * k.T;
    size_t TD = (size_t)rows * k.D, TM = (size_t)rows * k.Mh;
    float *dx1 = r->scratch, *da = dx1 + TD, *dh = da + TM, *dln = dh + TM, *ms = dln + TD;
    memcpy(dx1, r->dout, TD * sizeof(float));
    memset(da, 0, 2 * TM * sizeof(float));
    memset(dln, 0, TD * sizeof(float));
    rf_nn_linear_bwd(r->eng, da, g[P_FC2W], g[P_FC2B], r->dout, k.a, p[P_FC2W], rows, k.D, k.Mh, k.Mh, k.D);
    rf_nn_product_grad(pt ? &pt[P_FC2W] : NULL, da, TM);
    rf_nn_gelu_bwd(dh, da, k.h, TM);
    rf_nn_linear_bwd(r->eng, dln, g[P_FC1W], g[P_FC1B], dh, k.ln2, p[P_FC1W], rows, k.Mh, k.D, k.D, k.Mh);
    rf_nn_product_grad(pt ? &pt[P_FC1W] : NULL, dln, TD);
    rf_nn_layernorm_bwd(dx1, g[P_N2W], g[P_N2B], dln, k.x1, k.st2, p[P_N2W], rows, k.D);
    if (r->din) rf_nn_add(r->din, dx1, TD);
    memset(dln, 0, TD * sizeof(float));
    rf_nn_mhsa_bwd_p(r->eng, dln, g[P_QKVW], g[P_QKVB], g[P_PROJW], g[P_PROJB], dx1, k.ln1, k.qkv, k.att, k.ctx, p[P_QKVW],
                     p[P_PROJW], ms, k.B, k.T, k.D, k.H, pt ? &pt[P_QKVW] : NULL, pt ? &pt[P_PROJW] : NULL);
    rf_nn_layernorm_bwd(r->din, g[P_N1W], g[P_N1B], dln, r->in, k.st1, p[P_N1W], rows, k.D);
}

/* ---- feature-major inference (model.c runs) ---------------------------------
 * The steps of tb_forward_span on transposed activations [width][ld]: the
 * four products as YT = W · XT (the weight's infer_gemm_feat, or sgemm),
 * layer norms across the feature rows, attention on the rows of qkvT in
 * place. With every product sparse the output is the row-major path's to
 * the bit (same per-element operations in the same order). */
static long tb_feat(const rf_layer *L) {
    blk k = blk_dims(L, 1);
    long saved = 0;
    for (int i = 0; i < 4; i++) {
        const rf_param *p = &L->pt[tb_prod[i].w];
        if (!p->infer_gemm) continue;
        if (!p->infer_gemm_feat) return -1;   /* int8: row-major only */
        saved += ((long)prod_dim(&k, tb_prod[i].n) + prod_dim(&k, tb_prod[i].k)) * k.T;
    }
    return saved;
}

/* ln [D], qkv [3D], ctx [D], x1 [D], h [Mh] rows of ld, attention's 2·T·T. */
static size_t tb_scratch_feat(const rf_layer *L, int B) {
    size_t T = (size_t)L->in.d[0], D = (size_t)L->in.d[1], Mh = (size_t)L->ip[1];
    return (6 * D + Mh) * (size_t)rf_feat_ld(B * (int)T) + 2 * T * T;
}

static rf_status tb_product_feat(const rf_nn_feat *f, const blk *k, int i, float *YT, const float *XT) {
    int w = tb_prod[i].w;
    const rf_param *p = &f->r->L->pt[w];
    return rf_nn_product_feat(p->infer_gemm ? p->infer_gemm_feat : NULL, p->infer_state, YT, XT, f->r->p[w],
                              f->r->p[w + 1], k->B * k->T, prod_dim(k, tb_prod[i].n), prod_dim(k, tb_prod[i].k),
                              f->ldo);
}

static rf_status tb_forward_feat(const rf_nn_feat *f) {
    const rf_nn_run *r = f->r;
    const float *const *p = r->p;
    blk k = blk_dims(r->L, r->B);
    int D = k.D, M = k.B * k.T, ld = f->ldo;
    float eps = r->L->fp[0];
    float *ln = f->scratch, *qkv = ln + (size_t)D * ld, *ctx = qkv + (size_t)3 * D * ld;
    float *x1 = ctx + (size_t)D * ld, *h = x1 + (size_t)D * ld, *S = h + (size_t)k.Mh * ld;
    rf_nn_layernorm_fwd_feat(ln, f->in, p[P_N1W], p[P_N1B], M, D, ld, eps);
    RF_TRY(tb_product_feat(f, &k, 0, qkv, ln));
    rf_nn_mhsa_heads_fwd_feat(r->eng, ctx, qkv, ld, S, k.B, k.T, D, k.H);
    RF_TRY(tb_product_feat(f, &k, 1, x1, ctx));
    rf_nn_feat_rows(x1, f->in, D, M, ld, rf_nn_add);
    rf_nn_layernorm_fwd_feat(ln, x1, p[P_N2W], p[P_N2B], M, D, ld, eps);
    RF_TRY(tb_product_feat(f, &k, 2, h, ln));
    rf_nn_feat_rows(h, h, k.Mh, M, ld, rf_nn_gelu_fwd);
    RF_TRY(tb_product_feat(f, &k, 3, f->out, h));
    rf_nn_feat_rows(f->out, x1, D, M, ld, rf_nn_add);
    return RF_OK;
}

static size_t tb_scratch(const rf_layer *L, int B, const rf_engine *e) {
    int threads = rf_nn_threads(e);
    size_t BT = (size_t)B * L->in.d[0], D = (size_t)L->in.d[1], Mh = (size_t)L->ip[1];
    size_t whole = BT * (2 * D + 2 * Mh) + rf_nn_mhsa_scratch(B, L->in.d[0], L->in.d[1], L->ip[0]);
    if (!e->v[RF_ENGINE_TB_CHUNK]) return whole;
    blk k = blk_dims(L, B);
    int nc = tb_nchunks_of(e->v[RF_ENGINE_TB_CHUNK], k.T, B);
    size_t t = (size_t)(threads > 0 ? threads : 1);
    size_t chunked = (size_t)nc * tb_params(&k) + t * tb_part_floats(&k, tb_chunk_max(B, nc));
    return whole > chunked ? whole : chunked;
}

static const char *const tb_keys[] = {"heads", "mlp", "eps", NULL};
const rf_nn_op rf_nn_op_transformer = {"transformer", tb_keys, tb_setup, tb_scratch, tb_forward, tb_backward,
                                       tb_feat, tb_forward_feat, tb_scratch_feat, 0, RF_NN_CONN_ALL, 0, RF_LT_PRODUCTS | RF_LT_ROWS | RF_LT_FEAT | RF_LT_PRUNABLE | RF_LT_QUANT | RF_LT_BLOCK};
