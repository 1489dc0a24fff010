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
 * What is timed is what would run: a layer's own forward with and without
 * the sparse hook (calibrate_sites below), so the dense side is the
 * engine's real path for that layer (a 3x3 conv's Winograd, not im2col +
 * GEMM).
 *
 * Each site is decided twice: at the deployment batch and for the calls of
 * one sample (batch-1 latency), since the sparse kernels' small-batch path
 * and the GEMM's efficiency both change there (lenet-300-100 at 50%: sparse
 * 1.2x faster at 64 samples, 1.7x slower for one). A layer asks the hook
 * (nn.h infer_takes) before a forward and runs its own dense path where the
 * kernel lost; products inside transformer blocks fall back to the GEMM
 * inside the hook. */
#include "raffle/deploy.h"
#include "raffle/engine.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Kernel-level calibration (per-weight sites, feature-major runs) caps the
 * GEMM at this many rows: cost per row is flat beyond a few 64-row panels. */
#define CAL_MAX_ROWS 4096
#define CAL_MIN_SECONDS 0.001
#define CAL_REPS 3
#define CACHE_SIZE 256

/* Layouts a site runs in (bit 1 << rf_layout): conv layers feature-major,
 * attention layers row-major, the layers of feature-major runs both. */
enum { SITE_ROWS = 1 << RF_ROWS, SITE_FEAT = 1 << RF_FEAT, SITE_BOTH = SITE_ROWS | SITE_FEAT };

typedef struct sparse_state {
    rf_spmat *sp;
    rf_nmmat *nm;      /* N:M weights: row-major calls run rf_nn_spmm, else NULL */
    float    *bias;    /* copy, or NULL */
    float    *W;       /* dense copy when a call can fall back to the GEMM, else NULL */
    int       N, K, rows1, at1, at_batch, at_batch_feat;
    /* Layouts (SITE_*) whose calls the layer gates with infer_takes (nn.h)
     * before making them: a layer site's row-major calls, and a conv
     * layer's column calls. Those always run the kernel: when it loses,
     * the layer runs its own dense path (Winograd, direct conv, the
     * engine's GEMM) instead of calling the hook. */
    int       gated;
} sparse_state;

/* Whether a call of M rows in layout `feat` runs the sparse kernel (else
 * the GEMM on s->W). */
static int runs_sparse(const sparse_state *s, int M, int feat) {
    if (s->gated & (1 << (feat ? RF_FEAT : RF_ROWS))) return 1;
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

/* nn.h rf_layer.infer_takes: a forward of one sample follows the one-sample
 * decision, larger ones the deployment batch's. */
static int sparse_takes(const void *state, int batch) {
    const sparse_state *s = state;
    return batch <= 1 ? s->at1 : s->at_batch;
}

static void state_free(sparse_state *s) {
    if (!s) return;
    rf_spmat_free(s->sp);
    rf_nmmat_free(s->nm);
    rf_free(s->bias);
    rf_free(s->W);
    rf_free(s);
}

/* ---- calibration cache ------------------------------------------------------
 * Key: what was timed (a layer's forward: its type, shapes and integer
 * hyper-parameters at `rows` samples; or a kernel call: N, K, rows and
 * layout), the density in 1/1000, N:M, and the engine options (conv path,
 * GEMM backend, threads). Zeroed before filling, compared whole. */
typedef struct cal_key {
    int layer_level, type, in[3], out[3], ip[8];
    int N, K, rows, permille, feat, nm;
    int eng[RF_ENGINE_COUNT_];
} cal_key;
typedef struct cal_entry { cal_key key; double dense_s, sparse_s; } cal_entry;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cal_entry cache[CACHE_SIZE];
static int cache_n, cache_next;

static int cache_get(const cal_key *key, double *dense_s, double *sparse_s) {
    int hit = 0;
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < cache_n && !hit; i++)
        if (memcmp(&cache[i].key, key, sizeof *key) == 0) {
            *dense_s = cache[i].dense_s;
            *sparse_s = cache[i].sparse_s;
            hit = 1;
        }
    pthread_mutex_unlock(&cache_mu);
    return hit;
}

static void cache_put(const cal_key *key, double dense_s, double sparse_s) {
    pthread_mutex_lock(&cache_mu);
    cache[cache_next] = (cal_entry){*key, dense_s, sparse_s};
    cache_next = (cache_next + 1) % CACHE_SIZE;
    if (cache_n < CACHE_SIZE) cache_n++;
    pthread_mutex_unlock(&cache_mu);
}

void rf_deploy_clear_cache(void) {
    pthread_mutex_lock(&cache_mu);
    cache_n = cache_next = 0;
    pthread_mutex_unlock(&cache_mu);
}

/* ---- timing ------------------------------------------------------------------ */
/* Seconds of one call of p->run: o->measure when set, else the best of
 * CAL_REPS samples, each repeating the call for CAL_MIN_SECONDS. CPU time
 * of this thread (steadier than wall time on a shared machine) when the
 * engine runs one thread; wall time when its pool shares the work. */
static rf_status measure(rf_ctx *ctx, const rf_deploy_opts *o, const rf_deploy_probe *p, double *sec) {
    if (o->measure) return o->measure(o->measure_ud, p, sec);
    double (*clock)(void) = rf_engine_threads(&ctx->engine) > 1 ? rf_now : rf_thread_seconds;
    RF_TRY(p->run(p->arg));   /* warm-up: caches, scratch allocation */
    double best = 1e30;
    for (int r = 0; r < CAL_REPS; r++) {
        long n = 0;
        double t0 = clock(), t;
        do { RF_TRY(p->run(p->arg)); n++; t = clock() - t0; } while (t < CAL_MIN_SECONDS);
        if (t / (double)n < best) best = t / (double)n;
    }
    *sec = best;
    return RF_OK;
}

/* A kernel call: the sparse kernel, or the dense product the engine runs
 * for a product that has no override (row-major: the block's product on
 * the engine's GEMM, nn dense.c; feature-major: the product of a
 * feature-major run, rf_linear_f32_lay). ld: the feature-major row stride,
 * rf_feat_ld(M). */
typedef struct cal_job {
    const rf_engine *eng;
    const rf_spmat *sp; const rf_nmmat *nm; const float *W, *X; float *Y;
    int M, N, K, sparse; rf_layout lay; int ld;
} cal_job;

static rf_status cal_run(void *arg) {
    const cal_job *j = arg;
    if (j->sparse && j->nm && j->lay == RF_ROWS) rf_nm_spmm(j->nm, j->X, NULL, j->Y, j->M);
    else if (j->sparse) rf_spmm_lay(j->sp, j->X, j->lay, NULL, j->Y, j->lay, j->M, j->ld);
    else if (j->lay == RF_ROWS) rf_gemm_engine(j->eng, 0, 1, j->M, j->N, j->K, j->X, j->K, j->W, j->K, 0, j->Y, j->N);
    else rf_linear_f32_lay(j->X, j->lay, j->W, NULL, j->Y, j->lay, j->M, j->N, j->K, j->ld);
    return RF_OK;
}

/* One site of the model: what deploy_prepare packed, what calibration
 * measured. */
typedef struct site {
    rf_deploy_layer d;
    const rf_param *w, *b;
    long per_sample;
    int lays;
    char what[160];
    sparse_state *s;   /* NULL: stays dense */
} site;

/* Times the kernel call of site t (per-weight sites; the feature-major runs
 * of linear layers) at `rows` rows in layout lay. */
static rf_status calibrate_kernel(rf_ctx *ctx, const rf_model *m, const rf_deploy_opts *o, const site *t, int rows,
                                  rf_layout lay, double *dense_s, double *sparse_s) {
    const int N = t->d.N, K = t->d.K;
    const sparse_state *s = t->s;
    cal_key key;
    memset(&key, 0, sizeof key);
    key.N = N; key.K = K; key.rows = rows; key.permille = (int)(t->d.sparsity * 1000.0 + 0.5);
    key.feat = lay == RF_FEAT; key.nm = s->nm != NULL && lay == RF_ROWS;
    memcpy(key.eng, ctx->engine.v, sizeof key.eng);
    if (!o->measure && cache_get(&key, dense_s, sparse_s)) return RF_OK;
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
    cal_job j = {&ctx->engine, s->sp, s->nm, m->params + t->w->offset, X, Y, M, N, K, 0, lay, (int)cols};
    rf_deploy_probe p = {t->d.layer, t->d.param, 0, (int)(rows / (t->per_sample > 0 ? t->per_sample : 1)),
                         lay == RF_FEAT, 0, cal_run, &j};
    rf_status st = measure(ctx, o, &p, dense_s);
    p.sparse = j.sparse = 1;
    if (st == RF_OK) st = measure(ctx, o, &p, sparse_s);
    rf_free(X); rf_free(Y);
    if (st == RF_OK && !o->measure) cache_put(&key, *dense_s, *sparse_s);
    return st;
}

typedef struct layer_job { rf_ctx *ctx; rf_model *m; int layer; } layer_job;

static rf_status layer_run(void *arg) {
    const layer_job *j = arg;
    return rf_model_layer_forward(j->ctx, j->m, j->layer);
}

/* Times layer site t's forward at the batch of m's last forward: as the
 * engine runs it without an override (the dense path: for a conv layer
 * Winograd, the direct conv or im2col + GEMM, whichever the engine picks),
 * and through the sparse kernel (the hook installed for the timing). */
static rf_status calibrate_layer(rf_ctx *ctx, rf_model *m, const rf_deploy_opts *o, site *t, double *dense_s,
                                 double *sparse_s) {
    rf_layer *L = &m->layers[t->d.layer];
    cal_key key;
    memset(&key, 0, sizeof key);
    key.layer_level = 1; key.type = (int)L->type;
    memcpy(key.in, L->in.d, sizeof key.in);
    memcpy(key.out, L->out.d, sizeof key.out);
    memcpy(key.ip, L->ip, sizeof key.ip);
    key.rows = m->batch; key.permille = (int)(t->d.sparsity * 1000.0 + 0.5); key.nm = t->s->nm != NULL;
    memcpy(key.eng, ctx->engine.v, sizeof key.eng);
    if (!o->measure && cache_get(&key, dense_s, sparse_s)) return RF_OK;
    layer_job j = {ctx, m, t->d.layer};
    rf_deploy_probe p = {t->d.layer, -1, 0, m->batch, (t->lays & SITE_FEAT) && !(t->lays & SITE_ROWS), 1,
                         layer_run, &j};
    rf_status st = measure(ctx, o, &p, dense_s);
    if (st) return st;
    sparse_state *s = t->s;
    const int at1 = s->at1, atb = s->at_batch;
    s->at1 = s->at_batch = 1;
    L->infer_gemm = sparse_gemm;
    L->infer_gemm_feat = (t->lays & SITE_FEAT) ? sparse_gemm_feat : NULL;
    L->infer_takes = NULL;
    L->infer_state = s;
    p.sparse = 1;
    st = measure(ctx, o, &p, sparse_s);
    L->infer_gemm = NULL;
    L->infer_gemm_feat = NULL;
    L->infer_state = NULL;
    s->at1 = at1; s->at_batch = atb;
    if (st == RF_OK && !o->measure) cache_put(&key, *dense_s, *sparse_s);
    return st;
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
        L->infer_takes = NULL;
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

/* Fills site t's shape and sparsity and, where the mode lets the sparse
 * kernel run, packs its weights into t->s (decisions all 1). */
static rf_status deploy_prepare(rf_ctx *ctx, const rf_model *m, const rf_deploy_opts *o, site *t) {
    const rf_param *w = t->w, *b = t->b;
    rf_deploy_layer *d = &t->d;
    int N = (int)w->shape[0], K = (int)(w->numel / (size_t)N);
    if (b && b->numel != (size_t)N) t->b = b = NULL;
    long rows_l = t->per_sample * o->batch;
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
    sparse_state *s = rf_calloc(1, sizeof *s);
    if (!s) return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory");
    t->s = s;
    rf_status st = rf_spmat_pack(ctx, Wp, N, K, &s->sp);
    if (st) { rf_error_prefix(ctx, "deploy: %s", t->what); return st; }
    if (w->nm_m > 0 && m->masks && (t->lays & SITE_ROWS)) {
        /* an N:M weight: the N:M kernel where its pattern fits it (M
         * dividing 16 and K); otherwise the unstructured one */
        uint8_t *mk = rf_malloc(w->numel);
        if (!mk) return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory");
        for (size_t k = 0; k < w->numel; k++) mk[k] = m->masks[w->offset + k] != 0.0f;
        rf_ctx quiet;
        rf_ctx_init(&quiet);
        if (rf_nmmat_pack(&quiet, Wp, mk, N, K, w->nm_n, w->nm_m, &s->nm) != RF_OK) s->nm = NULL;
        rf_free(mk);
    }
    if (b) {
        if (!(s->bias = rf_malloc(sizeof(float) * b->numel))) return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory");
        memcpy(s->bias, m->params + b->offset, sizeof(float) * b->numel);
    }
    d->nm = s->nm != NULL;
    d->rows1 = t->per_sample <= 0 ? 1 : t->per_sample > rows ? rows : (int)t->per_sample;
    d->sparse_at_1 = d->sparse_at_batch = 1;
    d->sparse_at_batch_feat = (t->lays & SITE_FEAT) != 0;
    s->N = N; s->K = K; s->rows1 = d->rows1;
    s->at1 = s->at_batch = s->at_batch_feat = 1;
    /* a layer site gates its row-major calls, and a conv layer its column
     * calls, with infer_takes */
    s->gated = t->d.param < 0 ? SITE_ROWS | (t->lays == SITE_FEAT ? SITE_FEAT : 0) : 0;
    return RF_OK;
}

/* Calibration (RF_DEPLOY_AUTO): every packed site is timed against the
 * dense path the engine would run in its place, at the deployment batch
 * and for one sample (batch-1 latency). A layer site (linear, conv, patch
 * embedding) times the layer's own forward, dense and with the sparse hook,
 * on the activations of a forward of the model at that batch
 * (rf_model_layer_forward): for a conv layer the dense side is whatever
 * the engine picks for it (Winograd, the direct conv, im2col + GEMM; on its
 * GEMM backend and threads), the sparse side im2col + the kernel. Timing
 * the kernel against im2col + GEMM instead deployed ResNet-20's Winograd
 * layers sparse and made the model slower than dense at batch 128
 * (docs/kernels.md, "Structured vs unstructured sparsity"). The inputs are
 * uniform noise: the dense paths' cost does not depend on the values. A
 * linear layer's feature-major calls (the model's feature-major runs) and
 * the products inside transformer blocks are timed as kernel calls
 * against the dense product those run (calibrate_kernel). */
static rf_status calibrate_sites(rf_ctx *ctx, rf_model *m, const rf_deploy_opts *o, site *sites, int n) {
    int any_layer = 0;
    for (int i = 0; i < n; i++) any_layer |= sites[i].s && sites[i].d.param < 0;
    float *x = NULL;
    const size_t in = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    if (any_layer) {
        RF_TRY(rf_check_cap(ctx, (uint64_t)in * (uint64_t)o->batch * sizeof(float), "deploy calibration input"));
        if (!(x = rf_malloc(sizeof(float) * in * (size_t)o->batch)))
            return rf_error(ctx, RF_ERR_NOMEM, "deploy: no memory for the calibration input (batch %d)", o->batch);
        rf_rng r;
        rf_rng_init(&r, 0x5eed, 0x1a7e);
        for (size_t k = 0; k < in * (size_t)o->batch; k++) x[k] = rf_rng_uniform(&r) - 0.5f;
    }
    rf_status st = RF_OK;
    /* pass 0: the deployment batch; pass 1: one sample */
    for (int pass = 0; pass < 2 && st == RF_OK; pass++) {
        const int batch = pass == 0 ? o->batch : 1;
        if (pass == 1 && o->batch <= 1) break;
        if (any_layer) {
            const float *logits;
            st = rf_model_forward(ctx, m, x, batch, 0, &logits);
            if (st) { rf_error_prefix(ctx, "deploy: calibration forward"); break; }
        }
        for (int i = 0; i < n && st == RF_OK; i++) {
            site *t = &sites[i];
            rf_deploy_layer *d = &t->d;
            if (!t->s) continue;
            const int rows = pass == 0 ? d->rows : d->rows1;
            /* the primary layout: row-major unless the site only runs feature-major */
            const rf_layout lay = t->lays == SITE_FEAT ? RF_FEAT : RF_ROWS;
            double td = 0.0, ts = 0.0;
            st = d->param < 0 ? calibrate_layer(ctx, m, o, t, &td, &ts)
                              : calibrate_kernel(ctx, m, o, t, rows, lay, &td, &ts);
            if (st) break;
            if (pass == 1) {
                d->dense1_us = td * 1e6;
                d->sparse1_us = ts * 1e6;
                continue;
            }
            d->dense_us = td * 1e6;
            d->sparse_us = ts * 1e6;
            if (t->lays == SITE_BOTH) {   /* the feature-major runs' calls */
                st = calibrate_kernel(ctx, m, o, t, rows, RF_FEAT, &td, &ts);
                if (st) break;
            }
            if (t->lays & SITE_FEAT) { d->dense_feat_us = td * 1e6; d->sparse_feat_us = ts * 1e6; }
        }
    }
    rf_free(x);
    if (st) return st;
    for (int i = 0; i < n; i++) {
        rf_deploy_layer *d = &sites[i].d;
        if (!sites[i].s) continue;
        if (o->batch <= 1) { d->dense1_us = d->dense_us; d->sparse1_us = d->sparse_us; }
        d->sparse_at_batch = d->dense_us >= o->min_speedup * d->sparse_us;
        d->sparse_at_batch_feat = !(sites[i].lays & SITE_FEAT) ? 0
                                  : sites[i].lays == SITE_FEAT ? d->sparse_at_batch
                                                               : d->dense_feat_us >= o->min_speedup * d->sparse_feat_us;
        d->sparse_at_1 = d->dense1_us >= (o->min_speedup_1 > 0.0 ? o->min_speedup_1 : o->min_speedup) * d->sparse1_us;
    }
    return RF_OK;
}

/* Installs site t's hook per its decisions, or frees its state when the
 * sparse kernel won nowhere. */
static rf_status deploy_install(rf_ctx *ctx, rf_model *m, site *t) {
    rf_deploy_layer *d = &t->d;
    sparse_state *s = t->s;
    t->s = NULL;
    if (!s) return RF_OK;
    if (!d->sparse_at_1 && !d->sparse_at_batch && !d->sparse_at_batch_feat) { state_free(s); d->nm = 0; return RF_OK; }
    s->at1 = d->sparse_at_1; s->at_batch = d->sparse_at_batch; s->at_batch_feat = d->sparse_at_batch_feat;
    if (!(d->sparse_at_1 && d->sparse_at_batch && (d->sparse_at_batch_feat || !(t->lays & SITE_FEAT)))) {
        if (!(s->W = rf_malloc(sizeof(float) * t->w->numel))) {
            state_free(s);
            return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory");
        }
        memcpy(s->W, m->params + t->w->offset, sizeof(float) * t->w->numel);
    }
    if (d->param < 0) {
        rf_layer *L = &m->layers[d->layer];
        L->infer_gemm = sparse_gemm;
        /* the feature-major form (nn.h infer_gemm_feat): a conv layer hands
         * the kernel its column matrix, the others run it in feature-major
         * runs (model.c) */
        L->infer_gemm_feat = (t->lays & SITE_FEAT) ? sparse_gemm_feat : NULL;
        L->infer_takes = sparse_takes;
        L->infer_state = s;
    } else {
        rf_param *P = &m->ptensors[d->param];
        P->infer_gemm = sparse_gemm;
        P->infer_gemm_feat = (t->lays & SITE_FEAT) ? sparse_gemm_feat : NULL;
        P->infer_state = s;
    }
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
    site *sites = rf_calloc((size_t)m->n_layers + (size_t)m->n_ptensors + 1, sizeof *sites);
    if (!sites) return rf_error(ctx, RF_ERR_NOMEM, "deploy: out of memory");
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        rf_layer *L = &m->layers[i];
        const unsigned traits = rf_layer_traits(L->type);
        /* Layouts its products run in (nn.h traits): conv layers feature-
         * major (their column matrix), attention layers row-major, the
         * layers of the model's feature-major runs both. */
        const int lays = ((traits & RF_LT_ROWS) ? SITE_ROWS : 0) | ((traits & RF_LT_FEAT) ? SITE_FEAT : 0);
        if (traits & RF_LT_PRODUCT) {
            if (L->infer_gemm) continue;
            const rf_param *w = layer_param(m, L, RF_P_WEIGHT), *b = layer_param(m, L, RF_P_BIAS);
            if (!w || w->ndim < 2 || w->shape[0] <= 0) continue;
            int K = (int)(w->numel / (size_t)w->shape[0]);
            site *t = &sites[n++];
            *t = (site){.d = {.layer = i, .param = -1}, .w = w, .b = b, .per_sample = rf_layer_product_rows(L, K),
                        .lays = lays};
            snprintf(t->what, sizeof t->what, "layer %d (%s)", i, L->name);
        } else if (traits & RF_LT_PRODUCTS) {
            /* Products inside the layer use the per-weight hook (nn.h); the
             * bias of weight p is ptensors[p + 1] when that is a bias of the
             * same layer. Rows per sample = tokens. */
            for (int p = L->first_param; p < L->first_param + L->n_params; p++) {
                const rf_param *w = &m->ptensors[p];
                if (w->role != RF_P_WEIGHT || w->ndim != 2 || w->shape[0] <= 0 || w->infer_gemm) continue;
                const rf_param *b = (p + 1 < m->n_ptensors && m->ptensors[p + 1].role == RF_P_BIAS &&
                                     m->ptensors[p + 1].layer == w->layer) ? &m->ptensors[p + 1] : NULL;
                site *t = &sites[n++];
                *t = (site){.d = {.layer = i, .param = p}, .w = w, .b = b,
                            .per_sample = rf_layer_product_rows(L, (int)w->shape[1]), .lays = lays};
                snprintf(t->what, sizeof t->what, "%s", w->name);
            }
        }
    }
    rf_status st = RF_OK;
    for (int i = 0; i < n && st == RF_OK; i++) st = deploy_prepare(ctx, m, &o, &sites[i]);
    if (st == RF_OK && o.mode == RF_DEPLOY_AUTO) st = calibrate_sites(ctx, m, &o, sites, n);
    for (int i = 0; i < n && st == RF_OK; i++) st = deploy_install(ctx, m, &sites[i]);
    for (int i = 0; i < n; i++) state_free(sites[i].s);   /* what an error left uninstalled */
    if (info)
        for (int i = 0; i < n && i < max_info; i++) info[i] = sites[i].d;
    if (n_info) *n_info = (info && n > max_info) ? max_info : n;
    rf_free(sites);
    return st;
}
