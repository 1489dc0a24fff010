/* Optimizers and learning-rate schedules over the flat parameter block.
 *
 * Update rules follow PyTorch's torch.optim exactly (so results can be held
 * against it):
 *  - SGD: g = grad + wd * p; buf = mu * buf + g; g = nesterov ? g + mu * buf : buf;
 *    p -= lr * g. (buf starts at 0, which equals PyTorch's buf = g on step 1.)
 *  - Adam (Kingma & Ba 2015, Alg. 1) with L2 folded into the gradient:
 *    g = grad + wd * p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 *  - AdamW (Loshchilov & Hutter 2019, Alg. 2): decoupled decay
 *    p *= 1 - lr * wd, then the Adam update without the L2 term.
 * Pruning masks: an entry whose mask is 0 is set to exactly 0.0 and its
 * moments to 0, so a pruned weight neither moves nor carries momentum into a
 * later un-pruning. Moments share the params block's offsets (llm.c style). */
#include "raffle/nn.h"
#include "raffle/train.h"
#include "raffle/kernels.h"
#include "raffle/threads.h"
#include "nn/layers.h"

#include <math.h>
#include <string.h>

void rf_optim_cfg_default(rf_optim_cfg *c, rf_optim_type t) {
    memset(c, 0, sizeof *c);
    c->type = t;
    c->lr = t == RF_OPT_SGD ? 0.1f : 1e-3f;
    c->momentum = t == RF_OPT_SGD ? 0.9f : 0.0f;
    c->weight_decay = t == RF_OPT_ADAMW ? 0.01f : 0.0f;  /* PyTorch AdamW default */
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->sched = RF_SCHED_CONSTANT;
    c->gamma = 0.1f;
}

/* Warm-up ramps linearly to the base rate over warmup_steps: step s < W gets
 * lr * (s + 1) / W, so the first step is already non-zero and step W-1 runs at
 * the full rate. The decay schedules then run over the remaining steps. */
float rf_sched_lr(const rf_optim_cfg *c, int64_t step, int64_t total) {
    const double lr = c->lr;
    if (step < 0) step = 0;
    if (c->warmup_steps > 0 && step < c->warmup_steps)
        return (float)(lr * (double)(step + 1) / (double)c->warmup_steps);
    int64_t w = c->warmup_steps > 0 ? c->warmup_steps : 0;
    double span = (double)(total - w);
    double prog = span > 0 ? (double)(step - w) / span : 1.0;
    if (prog < 0) prog = 0;
    if (prog > 1) prog = 1;
    switch (c->sched) {
    case RF_SCHED_CONSTANT: return (float)lr;
    case RF_SCHED_STEP: {
        /* torch.optim.lr_scheduler.StepLR, counted in steps */
        int64_t k = c->step_size > 0 ? step / c->step_size : 0;
        return (float)(lr * pow(c->gamma, (double)k));
    }
    case RF_SCHED_COSINE:  /* SGDR without restarts (Loshchilov & Hutter 2017, Eq. 5), eta_min = 0 */
        return (float)(lr * 0.5 * (1.0 + cos(M_PI * prog)));
    case RF_SCHED_LINEAR: return (float)(lr * (1.0 - prog));
    }
    return (float)lr;
}

/* Zeroed moments, written here rather than calloc'd: calloc maps fresh pages
 * lazily, so the first step's update (inside the training loop's clock)
 * took a page fault every 4 KiB (mlp-1200x2: 19 MB, ~7 ms). */
static float *moments(size_t n) {
    float *p = rf_aligned_alloc(64, (n ? n : 1) * sizeof(float));
    if (p) memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

rf_status rf_optim_init(rf_ctx *ctx, rf_optim *o, const rf_optim_cfg *cfg, size_t n_params) {
    memset(o, 0, sizeof *o);
    if (!cfg || (unsigned)cfg->type > RF_OPT_ADAMW)
        return rf_error(ctx, RF_ERR_INVALID, "optimizer: unknown type");
    if (!(cfg->lr >= 0.0f) || !isfinite(cfg->lr))
        return rf_error(ctx, RF_ERR_INVALID, "optimizer: learning rate must be finite and >= 0, got %g", (double)cfg->lr);
    o->cfg = *cfg;
    o->n = n_params;
    o->pool = ctx ? ctx->engine.pool : NULL;
    RF_TRY(rf_check_cap(ctx, (uint64_t)n_params * 2 * sizeof(float), "optimizer state"));
    int need_m = cfg->type != RF_OPT_SGD || cfg->momentum != 0.0f;
    int need_v = cfg->type != RF_OPT_SGD;
    if (need_m && !(o->m = moments(n_params)))
        return rf_error(ctx, RF_ERR_NOMEM, "optimizer: cannot allocate %zu moments", n_params);
    if (need_v && !(o->v = moments(n_params))) {
        rf_free(o->m);
        o->m = NULL;
        return rf_error(ctx, RF_ERR_NOMEM, "optimizer: cannot allocate %zu moments", n_params);
    }
    return RF_OK;
}

void rf_optim_free(rf_optim *o) {
    if (!o) return;
    rf_free(o->m);
    rf_free(o->v);
    o->m = o->v = NULL;
}

/* ---- kernels ---------------------------------------------------------------
 * The optimizer runs once per step over every parameter, so it is as
 * memory-bound as a GEMM is compute-bound: each variant streams p, g, m, v
 * (and the mask) once. Every SIMD variant does, lane by lane, exactly the
 * scalar reference's operations in the same order without FMA contraction
 * (-std=c11 keeps -ffp-contract=off), so all variants give bit-identical
 * weights and a run's checkpoint does not depend on the CPU (tested). */
typedef struct upd_k {
    float lr, scale, wd, mu, b1, b2, eps, step_size, bc2_sqrt, decay;
    int   nesterov, decoupled, has_buf;
} upd_k;

static void sgd_ref(const upd_k *k, float *p, const float *g, float *buf, const float *mask, size_t i0, size_t n) {
    for (size_t i = i0; i < n; i++) {
        if (mask && mask[i] == 0.0f) { p[i] = 0.0f; if (buf) buf[i] = 0.0f; continue; }
        float d = g[i] * k->scale + k->wd * p[i];
        if (buf) {
            buf[i] = k->mu * buf[i] + d;
            d = k->nesterov ? d + k->mu * buf[i] : buf[i];
        }
        p[i] -= k->lr * d;
    }
}

static void adam_ref(const upd_k *k, float *p, const float *g, float *m, float *v, const float *mask, size_t i0, size_t n) {
    const float c1 = 1.0f - k->b1, c2 = 1.0f - k->b2;
    for (size_t i = i0; i < n; i++) {
        if (mask && mask[i] == 0.0f) { p[i] = 0.0f; m[i] = 0.0f; v[i] = 0.0f; continue; }
        float d = g[i] * k->scale;
        if (k->decoupled) p[i] *= k->decay;
        else d += k->wd * p[i];
        m[i] = k->b1 * m[i] + c1 * d;
        v[i] = k->b2 * v[i] + c2 * d * d;
        p[i] -= k->step_size * m[i] / (sqrtf(v[i]) / k->bc2_sqrt + k->eps);
    }
}

/* Σ g² over the unmasked entries of one block, in 16 double lanes (lane l
 * takes the entries i ≡ l mod 16 in order; a product of two floats is exact
 * in double), combined by a fixed tree: the same additions on every ISA. */
static double lanes16_d(const double *a) {
    double b[8], c[4];
    for (int l = 0; l < 8; l++) b[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) c[l] = b[l] + b[l + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

static void sumsq_lanes_ref(double *acc, const float *g, const float *mask, size_t i0, size_t n) {
    for (size_t i = i0; i < n; i++) {
        double x = mask && mask[i] == 0.0f ? 0.0 : (double)g[i];
        acc[(i - i0) % 16] += x * x;
    }
}

static double sumsq_ref(const float *g, const float *mask, size_t n) {
    double acc[16] = {0.0};
    sumsq_lanes_ref(acc, g, mask, 0, n);
    return lanes16_d(acc);
}

/* One template, two widths: VEC names the intrinsic family. The mask is
 * applied with a blend after the update, which equals the reference's
 * skip-and-zero because masked lanes' results are discarded. */
#define DEFINE_KERNELS(SUF, TARGET, W, VT, SET1, LOAD, STORE, ADD, SUB, MUL, DIV, SQRT, ZERO, KEEP, BLEND, DT, DSET0, CVT_LO, CVT_HI, DADD, DMUL, DSTORE) \
__attribute__((target(TARGET))) \
static void sgd_##SUF(const upd_k *k, float *p, const float *g, float *buf, const float *mask, size_t n) { \
    const VT scale = SET1(k->scale), wd = SET1(k->wd), mu = SET1(k->mu), lr = SET1(k->lr), z = ZERO(); \
    size_t i = 0; \
    for (; i + W <= n; i += W) { \
        VT pi = LOAD(p + i), d = ADD(MUL(LOAD(g + i), scale), MUL(wd, pi)); \
        if (buf) { \
            VT b = ADD(MUL(mu, LOAD(buf + i)), d); \
            d = k->nesterov ? ADD(d, MUL(mu, b)) : b; \
            if (mask) b = BLEND(z, b, KEEP(LOAD(mask + i))); \
            STORE(buf + i, b); \
        } \
        pi = SUB(pi, MUL(lr, d)); \
        if (mask) pi = BLEND(z, pi, KEEP(LOAD(mask + i))); \
        STORE(p + i, pi); \
    } \
    sgd_ref(k, p, g, buf, mask, i, n); \
} \
__attribute__((target(TARGET))) \
static void adam_##SUF(const upd_k *k, float *p, const float *g, float *m, float *v, const float *mask, size_t n) { \
    const VT scale = SET1(k->scale), wd = SET1(k->wd), b1 = SET1(k->b1), b2 = SET1(k->b2), \
             c1 = SET1(1.0f - k->b1), c2 = SET1(1.0f - k->b2), eps = SET1(k->eps), ss = SET1(k->step_size), \
             bc2 = SET1(k->bc2_sqrt), decay = SET1(k->decay), z = ZERO(); \
    size_t i = 0; \
    for (; i + W <= n; i += W) { \
        VT pi = LOAD(p + i), d = MUL(LOAD(g + i), scale); \
        if (k->decoupled) pi = MUL(pi, decay); \
        else d = ADD(d, MUL(wd, pi)); \
        VT mi = ADD(MUL(b1, LOAD(m + i)), MUL(c1, d)); \
        VT vi = ADD(MUL(b2, LOAD(v + i)), MUL(MUL(c2, d), d)); \
        pi = SUB(pi, DIV(MUL(ss, mi), ADD(DIV(SQRT(vi), bc2), eps))); \
        if (mask) { \
            __typeof__(KEEP(LOAD(mask + i))) keep = KEEP(LOAD(mask + i)); \
            pi = BLEND(z, pi, keep); mi = BLEND(z, mi, keep); vi = BLEND(z, vi, keep); \
        } \
        STORE(p + i, pi); STORE(m + i, mi); STORE(v + i, vi); \
    } \
    adam_ref(k, p, g, m, v, mask, i, n); \
} \
__attribute__((target(TARGET))) \
static double sumsq_##SUF(const float *g, const float *mask, size_t n) { \
    /* lanes 0-15 as in sumsq_ref: W/2 doubles per register */ \
    DT acc[32 / W]; \
    for (int v = 0; v < 32 / W; v++) acc[v] = DSET0(); \
    const VT z = ZERO(); \
    size_t i = 0; \
    for (; i + 16 <= n; i += 16) \
        for (int h = 0; h < 16 / W; h++) { \
            VT x = LOAD(g + i + h * W); \
            if (mask) x = BLEND(z, x, KEEP(LOAD(mask + i + h * W))); \
            DT lo = CVT_LO(x), hi = CVT_HI(x); \
            acc[2 * h] = DADD(acc[2 * h], DMUL(lo, lo)); \
            acc[2 * h + 1] = DADD(acc[2 * h + 1], DMUL(hi, hi)); \
        } \
    double a[16]; \
    for (int v = 0; v < 32 / W; v++) DSTORE(a + v * (W / 2), acc[v]); \
    sumsq_lanes_ref(a, g + i, mask ? mask + i : NULL, 0, n - i); \
    return lanes16_d(a); \
}

#include <immintrin.h>

/* AVX2: 8 floats; masks as compare results, blendv picks b where keep is set. */
#define AVX2_KEEP(x)        _mm256_cmp_ps((x), _mm256_setzero_ps(), _CMP_NEQ_UQ)
#define AVX2_BLEND(a, b, k) _mm256_blendv_ps((a), (b), (k))
#define AVX2_LO(x)          _mm256_cvtps_pd(_mm256_castps256_ps128(x))
#define AVX2_HI(x)          _mm256_cvtps_pd(_mm256_extractf128_ps((x), 1))
DEFINE_KERNELS(avx2, "avx2", 8, __m256, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps,
               _mm256_sub_ps, _mm256_mul_ps, _mm256_div_ps, _mm256_sqrt_ps, _mm256_setzero_ps, AVX2_KEEP, AVX2_BLEND,
               __m256d, _mm256_setzero_pd, AVX2_LO, AVX2_HI, _mm256_add_pd, _mm256_mul_pd, _mm256_storeu_pd)

/* AVX-512: 16 floats; masks as k-registers. */
#define AVX512_KEEP(x)        _mm512_cmp_ps_mask((x), _mm512_setzero_ps(), _CMP_NEQ_UQ)
#define AVX512_BLEND(a, b, k) _mm512_mask_blend_ps((k), (a), (b))
#define AVX512_LO(x)          _mm512_cvtps_pd(_mm512_castps512_ps256(x))
#define AVX512_HI(x)          _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))
DEFINE_KERNELS(avx512, "avx512f", 16, __m512, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps,
               _mm512_sub_ps, _mm512_mul_ps, _mm512_div_ps, _mm512_sqrt_ps, _mm512_setzero_ps, AVX512_KEEP,
               AVX512_BLEND, __m512d, _mm512_setzero_pd, AVX512_LO, AVX512_HI, _mm512_add_pd, _mm512_mul_pd,
               _mm512_storeu_pd)

static void sgd_scalar(const upd_k *k, float *p, const float *g, float *b, const float *mask, size_t n) { sgd_ref(k, p, g, b, mask, 0, n); }
static void adam_scalar(const upd_k *k, float *p, const float *g, float *m, float *v, const float *mask, size_t n) { adam_ref(k, p, g, m, v, mask, 0, n); }

/* Indexed by the ISA the kernels module dispatches to (RAFFLE_ISA overrides). */
static const struct optim_kernels {
    void   (*sgd)(const upd_k *, float *, const float *, float *, const float *, size_t);
    void   (*adam)(const upd_k *, float *, const float *, float *, float *, const float *, size_t);
    double (*sumsq)(const float *, const float *, size_t);
} optim_kernels[] = {
    [RF_ISA_SCALAR]     = {sgd_scalar, adam_scalar, sumsq_ref},
    [RF_ISA_AVX2]       = {sgd_avx2, adam_avx2, sumsq_avx2},
    [RF_ISA_AVX512]     = {sgd_avx512, adam_avx512, sumsq_avx512},
    [RF_ISA_AVX512VNNI] = {sgd_avx512, adam_avx512, sumsq_avx512},
    [RF_ISA_AVX512VBMI] = {sgd_avx512, adam_avx512, sumsq_avx512},
};

/* ---- the step over threads ------------------------------------------------------
 * The gradient norm is a sum over fixed blocks of SUMSQ_BLOCK entries (each
 * block's sum by the lane tree above), added in block order; the update is
 * element-wise. Parts take whole blocks, so neither depends on the thread
 * count. */
#define SUMSQ_BLOCK ((size_t)1 << 16)

typedef struct step_job {
    const struct optim_kernels *K;
    const upd_k *k;
    const rf_optim *o;
    float *params;
    const float *grads, *mask;
    double *sums;    /* one per block (passes 0 and 2) */
    int pass;        /* 0: block sums of g², 1: the update, 2: both (no clipping: the norm is only returned) */
} step_job;

static void step_part(void *arg, int t, int n) {
    const step_job *j = arg;
    const size_t N = j->o->n, nb = (N + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    size_t b0, b1;
    rf_nn_span(nb, t, n, &b0, &b1);
    for (size_t b = b0; b < b1; b++) {
        size_t i = b * SUMSQ_BLOCK, len = N - i < SUMSQ_BLOCK ? N - i : SUMSQ_BLOCK;
        const float *mk = j->mask ? j->mask + i : NULL;
        if (j->pass != 1) j->sums[b] = j->K->sumsq(j->grads + i, mk, len);
        if (j->pass == 0) continue;
        if (j->o->cfg.type == RF_OPT_SGD)
            j->K->sgd(j->k, j->params + i, j->grads + i, j->o->m ? j->o->m + i : NULL, mk, len);
        else
            j->K->adam(j->k, j->params + i, j->grads + i, j->o->m + i, j->o->v + i, mk, len);
    }
}

float rf_optim_step(rf_optim *o, rf_model *m, float lr) {
    return rf_optim_step_flat(o, m->params, m->grads, m->masks, lr);
}

/* The gradient norm from the block sums (in block order), or, without
 * memory for them, from the same blocks summed here. */
static double block_norm(const struct optim_kernels *K, const rf_optim *o, const float *grads, const float *mask,
                         const double *sums, size_t nb) {
    double sq = 0.0;
    for (size_t b = 0; b < nb; b++) {
        size_t i = b * SUMSQ_BLOCK, len = o->n - i < SUMSQ_BLOCK ? o->n - i : SUMSQ_BLOCK;
        sq += sums ? sums[b] : K->sumsq(grads + i, mask ? mask + i : NULL, len);
    }
    return sqrt(sq);
}

float rf_optim_step_flat(rf_optim *o, float *params, const float *grads, const float *mask, float lr) {
    const struct optim_kernels *K = &optim_kernels[rf_kernels_isa()];
    const size_t nb = (o->n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    /* whole blocks a part (64K entries: tens of microseconds each) */
    int parts = (int)nb < rf_pool_threads(o->pool) ? (int)nb : rf_pool_threads(o->pool);
    if (parts < 1) parts = 1;
    rf_pool *pool = parts > 1 ? o->pool : NULL;
    enum { STACK = 256 };
    double stack_sums[STACK], *sums = nb <= STACK ? stack_sums : rf_malloc(nb * sizeof(double));
    step_job j = {K, NULL, o, params, grads, mask, sums, 0};
    /* Gradient norm over the entries that can move (mask 1): a pruned entry's
     * gradient changes no weight, so it must not shrink the others' clipped
     * step. Accumulated in double. Clipping needs it before the update (a
     * pass of its own); otherwise it is only returned, and each block's sum
     * is taken in the update's pass, while the block is in cache. */
    const int clip = o->cfg.clip_norm > 0.0f;
    double norm = 0.0;
    if (clip) {
        if (sums) rf_pool_run(pool, parts, step_part, &j);
        norm = block_norm(K, o, grads, mask, sums, nb);
    }
    /* torch.nn.utils.clip_grad_norm_: scale = max_norm / (norm + 1e-6) if it is < 1 */
    float scale = 1.0f;
    if (clip && norm > o->cfg.clip_norm) scale = (float)(o->cfg.clip_norm / (norm + 1e-6));
    o->t++;
    upd_k k = {.lr = lr, .scale = scale, .wd = o->cfg.weight_decay, .mu = o->cfg.momentum,
               .b1 = o->cfg.beta1, .b2 = o->cfg.beta2, .eps = o->cfg.eps, .nesterov = o->cfg.nesterov,
               .decoupled = o->cfg.type == RF_OPT_ADAMW};
    if (o->cfg.type != RF_OPT_SGD) {
        const double t = (double)o->t;
        k.step_size = lr / (float)(1.0 - pow(o->cfg.beta1, t));
        k.bc2_sqrt = (float)sqrt(1.0 - pow(o->cfg.beta2, t));
        k.decay = 1.0f - lr * o->cfg.weight_decay;
        if (k.decoupled) k.wd = 0.0f;
    }
    j.k = &k;
    j.pass = clip || !sums ? 1 : 2;
    rf_pool_run(pool, parts, step_part, &j);
    if (!clip) norm = block_norm(K, o, grads, mask, sums, nb);
    if (sums != stack_sums) rf_free(sums);
    return (float)norm;
}

/* ---- names, shared by the CLI and task settings ---------------------------- */
static const char *const optim_names[] = {[RF_OPT_SGD] = "sgd", [RF_OPT_ADAM] = "adam", [RF_OPT_ADAMW] = "adamw"};
static const char *const sched_names[] = {[RF_SCHED_CONSTANT] = "constant", [RF_SCHED_STEP] = "step",
                                          [RF_SCHED_COSINE] = "cosine", [RF_SCHED_LINEAR] = "linear"};

static int find_name(const char *const *names, int n, const char *s) {
    for (int i = 0; s && i < n; i++) if (strcmp(names[i], s) == 0) return i;
    return -1;
}

int rf_optim_type_from_name(const char *s) { return find_name(optim_names, 3, s); }
int rf_sched_type_from_name(const char *s) { return find_name(sched_names, 4, s); }
const char *rf_optim_type_name(rf_optim_type t) { return (unsigned)t <= RF_OPT_ADAMW ? optim_names[t] : "?"; }
const char *rf_sched_type_name(rf_sched_type t) { return (unsigned)t <= RF_SCHED_LINEAR ? sched_names[t] : "?"; }
