/* Deployment: choose, per product of a model (the layers whose traits say
 * they are products, nn.h rf_layer_traits), between dense sgemm and the
 * sparse kernel by measuring both, and plug the winner into the layer's
 * inference hook. It walks rf_model, so it sits above nn (src/deploy);
 * src/kernels stays a leaf of plain arrays.
 *
 * Why calibrate instead of a fixed sparsity threshold: the break-even
 * sparsity depends on the shape (tiny N or K make the panel transposes
 * dominate), on the batch (sgemm is far from peak at batch 1), and on the
 * machine and ISA. A table from `raffle bench kernels` would only cover the
 * benchmark's shapes and go stale on other machines; timing the actual layer
 * costs a few milliseconds per distinct shape and is cached per process.
 *
 * Each site is decided twice: at the deployment batch and for the calls of
 * one sample (batch-1 latency), since the sparse kernels' small-batch path
 * and sgemm's efficiency both change there (lenet-300-100 at 50%: sparse
 * 1.2x faster at 64 samples, 1.7x slower for one). The hook runs whichever
 * won for the call's size. */
#include "raffle/deploy.h"
#include "raffle/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Calibration caps the GEMM at this many rows: cost per row is flat beyond a
 * few 64-row panels, and big conv layers would otherwise take seconds. */
#define CAL_MAX_ROWS 4096
#define CAL_MIN_SECONDS 0.001
#define CAL_REPS 3
#define CACHE_SIZE 256

typedef struct sparse_state {
    rf_spmat *sp;
    rf_nmmat *nm;      /* N:M weights: row-major calls run rf_nm_spmm, else NULL */
    float    *bias;    /* copy, or NULL */
    float    *W;       /* dense copy when one of the two batch classes runs sgemm, else NULL */
    int       N, K, rows1, at1, at_batch, at_batch_feat;
} sparse_state;

/* Whether a call of M rows in layout `feat` runs the sparse kernel (else
 * sgemm on s->W). */
static int runs_sparse(const sparse_state *s, int M, int feat) {
    return M <= s->rows1 ? s->at1 : feat ? s->at_batch_feat : s->at_batch;
}

static rf_status sparse_gemm(void *state, const float *X, float *Y, int M) {
    const sparse_state *s = state;
    if (runs_sparse(s, M, 0) && s->nm) rf_nm_spmm(s->nm, X, s->bias, Y, M);
    else if (runs_sparse(s, M, 0)) rf_spmm(s->sp, X, s->bias, Y, M);
    else rf_linear_f32(X, s->W, s->bias, Y, M, s->N, s->K);
    return RF_OK;
}

/* The feature-major form (nn.h infer_gemm_feat), installed beside
 * sparse_gemm on every site whose layer runs feature-major: conv layers
 * always, linear, patch_embed and transformer products in the model's
 * feature-major runs. */
static rf_status sparse_gemm_feat(void *state, const float *XT, float *YT, int M, int ld) {
    const sparse_state *s = state;
    if (runs_sparse(s, M, 1)) rf_spmm_lay(s->sp, XT, RF_FEAT, s->bias, YT, RF_FEAT, M, ld);
    else rf_linear_f32_lay(XT, RF_FEAT, s->W, s->bias, YT, RF_FEAT, M, s->N, s->K, ld);
    return RF_OK;
}

static void state_free(sparse_state *s) {
    if (!s) return;
    rf_spmat_free(s->sp);
    rf_nmmat_free(s->nm);
    rf_free(s->bias);
    rf_free(s->W);
    rf_free(s);
}

/* ---- calibration cache: (N, K, rows, density in 1/1000, layout) -> times -- */
typedef struct cal_entry { int N, K, rows, permille, feat, nm; double dense_s, sparse_s; } cal_entry;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cal_entry cache[CACHE_SIZE];
static int cache_n, cache_next;

static int cache_get(const cal_entry *key, cal_entry *out) {
    int hit = 0;
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < cache_n && !hit; i++)
        if (cache[i].N == key->N && cache[i].K == key->K && cache[i].rows == key->rows &&
            cache[i].permille == key->permille && cache[i].feat == key->feat && cache[i].nm == key->nm) { *out = cache[i]; hit = 1; }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

static void cache_put(const cal_entry *e) {
    pthread_mutex_lock(&cache_mu);
    cache[cache_next] = *e;
    cache_next = (cache_next + 1) % CACHE_SIZE;
    if (cache_n < CACHE_SIZE) cache_n++;
    pthread_mutex_unlock(&cache_mu);
}

void rf_deploy_clear_cache(void) {
    pthread_mutex_lock(&cache_mu);
    cache_n = cache_next = 0;
    pthread_mutex_unlock(&cache_mu);
}

/* ld: the feature-major row stride, rf_feat_ld(M) as the conv layer lays out its columns. */
typedef struct cal_job { const rf_spmat *sp; const rf_nmmat *nm; const float *W, *X; float *Y; int M, N, K, sparse; rf_layout lay; int ld; } cal_job;

static void cal_run(const cal_job *j) {
    if (j->sparse && j->nm && j->lay == RF_ROWS) rf_nm_spmm(j->nm, j->X, NULL, j->Y, j->M);
    else if (j->sparse) rf_spmm_lay(j->sp, j->X, j->lay, NULL, j->Y, j->lay, j->M, j->ld);
    else rf_linear_f32_lay(j->X, j->lay, j->W, NULL, j->Y, j->lay, j->M, j->N, j->K, j->ld);
}

/* Best of CAL_REPS samples, each repeating the call for CAL_MIN_SECONDS. */
static double cal_time(const cal_job *j) {
    cal_run(j);   /* warm-up: caches, scratch allocation */
    double best = 1e30;
    for (int r = 0; r < CAL_REPS; r++) {
        long n = 0;
        double t0 = rf_thread_seconds(), t;
        do { cal_run(j); n++; t = rf_thread_seconds() - t0; } while (t < CAL_MIN_SECONDS);
        if (t / (double)n < best) best = t / (double)n;
    }
    return best;
}

static rf_status calibrate(rf_ctx *ctx, const float *W, const rf_spmat *sp, const rf_nmmat *nm, int N, int K, int rows,
                           double sparsity, rf_layout lay, double *dense_s, double *sparse_s) {
    cal_entry key = {N, K, rows, (int)(sparsity * 1000.0 + 0.5), lay == RF_FEAT, nm != NULL && lay == RF_ROWS, 0.0, 0.0}, got;
    if (cache_get(&key, &got)) { *dense_s = got.dense_s; *sparse_s = got.sparse_s; return RF_OK; }
    int M = rows < CAL_MAX_ROWS ? rows : CAL_MAX_ROWS;
    size_t cols = (size_t)rf_feat_ld(M);   /* >= M: room for either layout */
    float *X = rf_aligned_alloc(64, sizeof(float) * cols * K);
    float *Y = rf_aligned_alloc(64, sizeof(float) * cols * N);
    if (!X || !Y) {
        rf_free(X); rf_free(Y);
        return rf_error(ctx, RF_ERR_NOMEM, "deploy: no memory for calibration (%dx%d, %d rows)", N, K, M);
    }
    rf_rng r;
    rf_rng_init(&r, 0x5eed, (uint64_t)N * 131 + (uint64_t)K);
    for (size_t i = 0; i < cols * K; i++) X[i] = rf_rng_uniform(&r) - 0.5f;
    cal_job j = {sp, nm, W, X, Y, M, N, K, 0, lay, (int)cols};
    key.dense_s = cal_time(&j);
    j.sparse = 1;
    key.sparse_s = cal_time(&j);
    rf_free(X); rf_free(Y);
    cache_put(&key);
    *dense_s = key.dense_s;
    *sparse_s = key.sparse_s;
    return RF_OK;
}

double rf_deploy_eval_min_sparsity(int batch) { return batch >= 256 ? 0.5 : 0.8; }

void rf_deploy_opts_default(rf_deploy_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch = 64;
    o->mode = RF_DEPLOY_AUTO;
    o->min_speedup = 1.05;
}

void rf_deploy_release(rf_model *m) {
    rf_kernels_release_workspace();
    if (!m) return;
    for (int i = 0; i < m->n_layers; i++) {
        rf_layer *L = &m->layers[i];
        if (L->infer_gemm != sparse_gemm) continue;
        state_free(L->infer_state);
        L->infer_gemm = NULL;
        L->infer_gemm_feat = NULL;
        L->infer_state = NULL;
    }
    for (int i = 0; i < m->n_ptensors; i++) {
        rf_param *P = &m->ptensors[i];
        if (P->infer_gemm != sparse_gemm) continue;
        state_free(P->infer_state);
        P->infer_gemm = NULL;
        P->infer_gemm_feat = NULL;
        P->infer_state = NULL;
    }
}

/* Weight and bias tensors of a linear/conv layer (bias may be absent). */
static const rf_param *layer_param(const rf_model *m, const rf_layer *L, rf_param_role role) {
    for (int p = L->first_param; p < L->first_param + L->n_params; p++)
        if (p >= 0 && p < m->n_ptensors && m->ptensors[p].role == role) return &m->ptensors[p];
    return NULL;
}

/* Layouts a site runs in (bit 1 << rf_layout): conv layers feature-major,
 * attention layers row-major, the layers of feature-major runs both. */
enum { SITE_ROWS = 1 << RF_ROWS, SITE_FEAT = 1 << RF_FEAT, SITE_BOTH = SITE_ROWS | SITE_FEAT };

/* Decides one GEMM site (a layer's product, or one weight's product inside
 * a transformer block) and, if sparse wins, fills *gemm / *state. */
static rf_status deploy_site(rf_ctx *ctx, const rf_model *m, const rf_deploy_opts *o, const rf_param *w,
                             const rf_param *b, long per_sample, int lays, const char *what,
                             rf_status (**gemm)(void *, const float *, float *, int), void **state,
                             rf_deploy_layer *d) {
    int N = (int)w->shape[0], K = (int)(w->numel / (size_t)N);
    if (b && b->numel != (size_t)N) b = NULL;
    long rows_l = per_sample * o->batch;
    int rows = rows_l > 0x7fffffff ? 0x7fffffff : (int)rows_l;
    const float *Wp = m->params + w->offset;
    size_t zeros = 0;
    for (size_t k = 0; k < w->numel; k++) zeros += Wp[k] == 0.0f;
    d->rows = rows; d->N = N; d->K = K;
    d->sparsity = w->numel ? (double)zeros / (double)w->numel : 0.0;
    if (o->mode == RF_DEPLOY_DENSE) return RF_OK;
    if (o->mode == RF_DEPLOY_RULE &&   /* below the break-even: nothing to pack */
        d->sparsity < (o->min_sparsity > 0.0 ? o->min_sparsity : rf_deploy_eval_min_sparsity(o->batch)))
        return RF_OK;
    rf_spmat *sp = NULL;
    rf_nmmat *nm = NULL;
    rf_status st = rf_spmat_pack(ctx, Wp, N, K, &sp);
    if (st) { rf_error_prefix(ctx, "deploy: %s", what); return st; }
    if (w->nm_m > 0 && m->masks && (lays & SITE_ROWS)) {
        /* an N:M weight: the N:M kernel where its pattern fits it (M
         * dividing 16 and K); otherwise the unstructured one */
        uint8_t *mk = rf_malloc(w->numel);
        if (!mk) { rf_spmat_free(sp); return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory"); }
        for (size_t k = 0; k < w->numel; k++) mk[k] = m->masks[w->offset + k] != 0.0f;
        rf_ctx quiet;
        rf_ctx_init(&quiet);
        if (rf_nmmat_pack(&quiet, Wp, mk, N, K, w->nm_n, w->nm_m, &nm) != RF_OK) nm = NULL;
        rf_free(mk);
    }
    d->nm = nm != NULL;
    int rows1 = per_sample <= 0 ? 1 : per_sample > rows ? rows : (int)per_sample;
    d->rows1 = rows1;
    d->sparse_at_1 = d->sparse_at_batch = 1;
    d->sparse_at_batch_feat = (lays & SITE_FEAT) != 0;
    if (o->mode == RF_DEPLOY_AUTO) {
        /* the primary layout: row-major unless the site only runs feature-major */
        rf_layout lay = lays == SITE_FEAT ? RF_FEAT : RF_ROWS;
        double td = 0.0, ts = 0.0;
        st = calibrate(ctx, Wp, sp, nm, N, K, rows, d->sparsity, lay, &td, &ts);
        if (st) { rf_spmat_free(sp); rf_nmmat_free(nm); return st; }
        d->dense_us = td * 1e6;
        d->sparse_us = ts * 1e6;
        d->sparse_at_batch = td >= o->min_speedup * ts;
        if (lays == SITE_BOTH) {
            st = calibrate(ctx, Wp, sp, nm, N, K, rows, d->sparsity, RF_FEAT, &td, &ts);
            if (st) { rf_spmat_free(sp); rf_nmmat_free(nm); return st; }
            d->sparse_at_batch_feat = td >= o->min_speedup * ts;
        } else if (lays == SITE_FEAT) {
            d->sparse_at_batch_feat = d->sparse_at_batch;
        }
        if (lays & SITE_FEAT) { d->dense_feat_us = td * 1e6; d->sparse_feat_us = ts * 1e6; }
        /* one sample, in the primary layout: feature-major runs need two
         * samples (model.c), so only conv layers take these calls
         * feature-major */
        if (rows1 < rows) {
            st = calibrate(ctx, Wp, sp, nm, N, K, rows1, d->sparsity, lay, &td, &ts);
            if (st) { rf_spmat_free(sp); rf_nmmat_free(nm); return st; }
        } else {
            td = d->dense_us * 1e-6;
            ts = d->sparse_us * 1e-6;
        }
        d->dense1_us = td * 1e6;
        d->sparse1_us = ts * 1e6;
        d->sparse_at_1 = td >= (o->min_speedup_1 > 0.0 ? o->min_speedup_1 : o->min_speedup) * ts;
    }
    if (!d->sparse_at_1 && !d->sparse_at_batch && !d->sparse_at_batch_feat) { rf_spmat_free(sp); rf_nmmat_free(nm); d->nm = 0; return RF_OK; }
    sparse_state *s = rf_calloc(1, sizeof *s);
    int ok = s != NULL;
    if (ok && b) {
        s->bias = rf_malloc(sizeof(float) * b->numel);
        if ((ok = s->bias != NULL)) memcpy(s->bias, m->params + b->offset, sizeof(float) * b->numel);
    }
    if (ok && !(d->sparse_at_1 && d->sparse_at_batch && (d->sparse_at_batch_feat || !(lays & SITE_FEAT)))) {
        s->W = rf_malloc(sizeof(float) * w->numel);
        if ((ok = s->W != NULL)) memcpy(s->W, Wp, sizeof(float) * w->numel);
    }
    if (!ok) {
        rf_spmat_free(sp);
        rf_nmmat_free(nm);
        state_free(s);
        return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory");
    }
    s->sp = sp;
    s->nm = nm;
    s->N = N; s->K = K; s->rows1 = rows1;
    s->at1 = d->sparse_at_1; s->at_batch = d->sparse_at_batch; s->at_batch_feat = d->sparse_at_batch_feat;
    *state = s;
    *gemm = sparse_gemm;
    d->sparse = 1;
    return RF_OK;
}

rf_status rf_deploy_fold(rf_ctx *ctx, const rf_model *m, rf_model **out, int *n_folded) {
    *out = NULL;
    if (n_folded) *n_folded = 0;
    int bn = 0, hooked = 0;
    for (int i = 0; i < m->n_layers; i++) {
        bn |= m->layers[i].type == RF_L_BATCHNORM;
        hooked |= m->layers[i].infer_gemm != NULL;
    }
    for (int i = 0; i < m->n_ptensors; i++) hooked |= m->ptensors[i].infer_gemm != NULL;
    if (!bn || hooked) return RF_OK;
    rf_model *f = NULL;
    int nf = 0;
    RF_TRY(rf_model_fold_bn(ctx, m, &f, &nf));
    if (nf == 0) { rf_model_free(f); return RF_OK; }
    *out = f;
    if (n_folded) *n_folded = nf;
    return RF_OK;
}

rf_status rf_deploy_model(rf_ctx *ctx, rf_model *m, const rf_deploy_opts *opts,
                          rf_deploy_layer *info, int max_info, int *n_info) {
    rf_deploy_opts o;
    if (opts) o = *opts; else rf_deploy_opts_default(&o);
    if (o.batch <= 0) o.batch = 64;
    if (o.min_speedup <= 0.0) o.min_speedup = 1.05;
    if (n_info) *n_info = 0;
    if (!m) return rf_error(ctx, RF_ERR_INVALID, "deploy: NULL model");
    rf_deploy_release(m);
    int ni = 0;
    for (int i = 0; i < m->n_layers; i++) {
        rf_layer *L = &m->layers[i];
        const unsigned traits = rf_layer_traits(L->type);
        /* Layouts its products run in (nn.h traits): conv layers feature-
         * major (their column matrix), attention layers row-major, the
         * layers of the model's feature-major runs both. */
        const int lays = ((traits & RF_LT_ROWS) ? SITE_ROWS : 0) | ((traits & RF_LT_FEAT) ? SITE_FEAT : 0);
        char what[160];
        if (traits & RF_LT_PRODUCT) {
            if (L->infer_gemm) continue;
            const rf_param *w = layer_param(m, L, RF_P_WEIGHT), *b = layer_param(m, L, RF_P_BIAS);
            if (!w || w->ndim < 2 || w->shape[0] <= 0) continue;
            int K = (int)(w->numel / (size_t)w->shape[0]);
            rf_deploy_layer d = {.layer = i, .param = -1};
            snprintf(what, sizeof what, "layer %d (%s)", i, L->name);
            RF_TRY(deploy_site(ctx, m, &o, w, b, rf_layer_product_rows(L, K), lays, what, &L->infer_gemm,
                               &L->infer_state, &d));
            /* the feature-major form (nn.h infer_gemm_feat): a conv layer hands
             * the kernel its column matrix, the others run it in feature-major
             * runs (model.c) */
            if (L->infer_gemm == sparse_gemm && (lays & SITE_FEAT)) L->infer_gemm_feat = sparse_gemm_feat;
            if (info && ni < max_info) info[ni] = d;
            ni++;
        } else if (traits & RF_LT_PRODUCTS) {
            /* Products inside the layer use the per-weight hook (nn.h); the
             * bias of weight p is ptensors[p + 1] when that is a bias of the
             * same layer. Rows per sample = tokens. */
            for (int p = L->first_param; p < L->first_param + L->n_params; p++) {
                rf_param *w = &m->ptensors[p];
                if (w->role != RF_P_WEIGHT || w->ndim != 2 || w->shape[0] <= 0 || w->infer_gemm) continue;
                const rf_param *b = (p + 1 < m->n_ptensors && m->ptensors[p + 1].role == RF_P_BIAS &&
                                     m->ptensors[p + 1].layer == w->layer) ? &m->ptensors[p + 1] : NULL;
                rf_deploy_layer d = {.layer = i, .param = p};
                snprintf(what, sizeof what, "%s", w->name);
                RF_TRY(deploy_site(ctx, m, &o, w, b, rf_layer_product_rows(L, (int)w->shape[1]), lays, what,
                                   &w->infer_gemm, &w->infer_state, &d));
                if (w->infer_gemm == sparse_gemm && (lays & SITE_FEAT)) w->infer_gemm_feat = sparse_gemm_feat;
                if (info && ni < max_info) info[ni] = d;
                ni++;
            }
        }
    }
    if (n_info) *n_info = (info && ni > max_info) ? max_info : ni;
    return RF_OK;
}
