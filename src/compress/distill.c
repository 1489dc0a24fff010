/* Knowledge distillation as a training hook (Hinton, Vinyals, Dean 2015):
 * teachers and ensembles, the per-index logit cache, and hidden-state
 * distillation with learned projections. See include/raffle/distill.h. */
#include "raffle/distill.h"
#include "raffle/quant.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

struct rf_teacher {
    int        n;
    rf_model **models;     /* [n] */
    rf_quant **quants;     /* [n] int8 paths of loaded quantized teachers, or NULL */
    int        owns;       /* 1: models were loaded here and are freed here */
    int        classes;
    const rf_dataset *cache_ds;  /* borrowed */
    float     *cache;      /* [cache_ds->n, classes] (owned) */
    float     *tmp;        /* member logits scratch */
    size_t     tmp_cap;
};

static rf_status teacher_alloc(rf_ctx *ctx, int n, rf_teacher **out) {
    *out = NULL;
    if (n < 1) return rf_error(ctx, RF_ERR_INVALID, "distill: at least one teacher is needed");
    rf_teacher *t = rf_calloc(1, sizeof *t);
    if (t) { t->models = rf_calloc((size_t)n, sizeof *t->models); t->quants = rf_calloc((size_t)n, sizeof *t->quants); }
    if (!t || !t->models || !t->quants) { rf_teacher_free(t); return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory"); }
    t->n = n;
    *out = t;
    return RF_OK;
}

static rf_status teacher_check(rf_ctx *ctx, rf_teacher *t) {
    t->classes = t->models[0]->n_classes;
    for (int i = 1; i < t->n; i++) {
        const rf_model *a = t->models[0], *b = t->models[i];
        if (b->n_classes != t->classes || b->input.d[0] != a->input.d[0] || b->input.d[1] != a->input.d[1] ||
            b->input.d[2] != a->input.d[2])
            return rf_error(ctx, RF_ERR_SHAPE, "distill: teacher %d has input %dx%dx%d / %d classes, teacher 0 %dx%dx%d / %d",
                            i, b->input.d[0], b->input.d[1], b->input.d[2], b->n_classes,
                            a->input.d[0], a->input.d[1], a->input.d[2], a->n_classes);
    }
    return RF_OK;
}

rf_status rf_teacher_load(rf_ctx *ctx, const char *const *paths, int n, rf_teacher **out) {
    rf_teacher *t;
    RF_TRY(teacher_alloc(ctx, n, &t));
    t->owns = 1;
    rf_status s = RF_OK;
    for (int i = 0; i < n && s == RF_OK; i++) s = rf_quant_load(ctx, paths[i], &t->models[i], &t->quants[i]);
    if (s == RF_OK) s = teacher_check(ctx, t);
    if (s != RF_OK) { rf_teacher_free(t); return s; }
    *out = t;
    return RF_OK;
}

rf_status rf_teacher_from_models(rf_ctx *ctx, rf_model *const *models, int n, rf_teacher **out) {
    rf_teacher *t;
    RF_TRY(teacher_alloc(ctx, n, &t));
    for (int i = 0; i < n; i++) t->models[i] = models[i];
    rf_status s = teacher_check(ctx, t);
    if (s != RF_OK) { rf_teacher_free(t); return s; }
    *out = t;
    return RF_OK;
}

void rf_teacher_free(rf_teacher *t) {
    if (!t) return;
    for (int i = 0; t->owns && t->models && i < t->n; i++) {
        if (t->quants) rf_quant_detach(t->quants[i], t->models[i]);
        rf_model_free(t->models[i]);
        if (t->quants) rf_quant_free(t->quants[i]);
    }
    rf_free(t->models);
    rf_free(t->quants);
    rf_free(t->cache);
    rf_free(t->tmp);
    rf_free(t);
}

int rf_teacher_size(const rf_teacher *t) { return t->n; }
int rf_teacher_classes(const rf_teacher *t) { return t->classes; }
rf_model *rf_teacher_model(rf_teacher *t, int i) { return (i >= 0 && i < t->n) ? t->models[i] : NULL; }

rf_status rf_teacher_cache(rf_ctx *ctx, rf_teacher *t, const rf_dataset *ds, int batch) {
    size_t n = (size_t)ds->n * (size_t)t->classes;
    float *acc = rf_calloc(n ? n : 1, sizeof(float));
    if (!acc) return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory for the teacher cache (%zu logits)", n);
    for (int i = 0; i < t->n; i++) {
        float *lg = NULL;
        rf_status s = rf_predict(ctx, t->models[i], ds, batch, &lg);
        if (s != RF_OK) { rf_free(acc); rf_error_prefix(ctx, "distill: teacher %d", i); return s; }
        for (size_t k = 0; k < n; k++) acc[k] += lg[k];
        rf_free(lg);
    }
    float inv = 1.0f / (float)t->n;
    for (size_t k = 0; k < n; k++) acc[k] *= inv;
    rf_free(t->cache);
    t->cache = acc;
    t->cache_ds = ds;
    return RF_OK;
}

/* Ensemble mean of the members' logits by running them; member 0 runs last
 * so its layer outputs are those of this batch (hidden-state distillation). */
static rf_status teacher_forward(rf_ctx *ctx, rf_teacher *t, const float *x, int batch, float *out) {
    size_t n = (size_t)batch * (size_t)t->classes;
    memset(out, 0, n * sizeof(float));
    for (int i = t->n - 1; i >= 0; i--) {
        const float *lg;
        RF_TRY(rf_model_forward(ctx, t->models[i], x, batch, 0, &lg));
        for (size_t k = 0; k < n; k++) out[k] += lg[k];
    }
    float inv = 1.0f / (float)t->n;
    for (size_t k = 0; k < n; k++) out[k] *= inv;
    return RF_OK;
}

rf_status rf_teacher_logits(rf_ctx *ctx, rf_teacher *t, const float *x, const int64_t *idx,
                            int batch, float *out) {
    if (t->cache && idx) {
        for (int b = 0; b < batch; b++) {
            if (idx[b] < 0 || idx[b] >= t->cache_ds->n)
                return rf_error(ctx, RF_ERR_INVALID, "distill: sample index %lld outside the cached set of %lld",
                                (long long)idx[b], (long long)t->cache_ds->n);
            memcpy(out + (size_t)b * t->classes, t->cache + (size_t)idx[b] * t->classes, (size_t)t->classes * sizeof(float));
        }
        return RF_OK;
    }
    return teacher_forward(ctx, t, x, batch, out);
}

/* ---- the loss hook ------------------------------------------------------------- */

typedef struct hidden_pair {
    int    s_layer, t_layer;
    int    tokens, ds, dt;   /* student width ds, teacher width dt */
    float *P;                /* [dt, ds] projection, NULL when ds == dt (identity) */
    float *pm, *pv, *gP;     /* Adam moments and gradient of P */
    float *G;                /* [rows, ds] gradient to add into the student's block output */
    float *diff;             /* [rows, dt] */
    size_t rows, cap_rows;
    int64_t adam_t;
} hidden_pair;

struct rf_distill {
    rf_ctx        *ctx;      /* borrowed */
    rf_teacher    *teacher;  /* borrowed */
    rf_distill_cfg cfg;
    float         *tlogits;  /* [cap, classes] */
    int            cap;
    hidden_pair    pairs[RF_DISTILL_MAX_PAIRS];
    int            pending;  /* 1 between a loss call and the backward that consumes G */
    float          hidden_loss;
    rf_act_hook    prev_hook;
    void          *prev_ud;
    int            hooked;
};

void rf_distill_cfg_default(rf_distill_cfg *c) {
    memset(c, 0, sizeof *c);
    c->T = 4.0f;
    c->alpha = 0.9f;
    c->hidden_weight = 1.0f;
    c->proj_lr = 1e-3f;
}

rf_status rf_distill_pairs_default(rf_ctx *ctx, const rf_model *student, const rf_model *teacher,
                                   rf_distill_cfg *cfg) {
    int sl[RF_DISTILL_MAX_PAIRS], ns = 0, tl[256], nt = 0;
    for (int i = 0; i < student->n_layers && ns < RF_DISTILL_MAX_PAIRS; i++)
        if (rf_layer_traits(student->layers[i].type) & RF_LT_BLOCK) sl[ns++] = i;
    for (int i = 0; i < teacher->n_layers && nt < 256; i++)
        if (rf_layer_traits(teacher->layers[i].type) & RF_LT_BLOCK) tl[nt++] = i;
    if (ns == 0 || nt == 0)
        return rf_error(ctx, RF_ERR_INVALID, "distill: hidden-state distillation needs transformer blocks in both models "
                        "(student has %d, teacher %d)", ns, nt);
    for (int k = 0; k < ns; k++) {
        cfg->student_layers[k] = sl[k];
        cfg->teacher_layers[k] = tl[((k + 1) * nt + ns - 1) / ns - 1];
    }
    cfg->n_pairs = ns;
    return RF_OK;
}

/* Adds the pending hidden-state gradient into the student's block output
 * as backward reaches that layer (the only place it can enter: the block's
 * output gradient, before the block's own backward runs). */
static rf_status distill_act_hook(void *ud, int layer, int backward, float *data, size_t n) {
    rf_distill *d = ud;
    if (d->prev_hook) RF_TRY(d->prev_hook(d->prev_ud, layer, backward, data, n));
    if (!backward || !d->pending) return RF_OK;
    for (int p = 0; p < d->cfg.n_pairs; p++) {
        hidden_pair *hp = &d->pairs[p];
        if (hp->s_layer != layer) continue;
        if (n != hp->rows * (size_t)hp->ds) return RF_ERR_SHAPE;
        for (size_t i = 0; i < n; i++) data[i] += hp->G[i];
    }
    return RF_OK;
}

static void pair_free(hidden_pair *hp) {
    rf_free(hp->P); rf_free(hp->pm); rf_free(hp->pv); rf_free(hp->gP);
    rf_free(hp->G); rf_free(hp->diff);
}

rf_status rf_distill_new(rf_ctx *ctx, rf_teacher *teacher, rf_model *student,
                         const rf_distill_cfg *cfg, rf_distill **out) {
    *out = NULL;
    if (!(cfg->T > 0.0f) || cfg->alpha < 0.0f || cfg->alpha > 1.0f)
        return rf_error(ctx, RF_ERR_INVALID, "distill: need T > 0 and alpha in [0, 1] (T %g, alpha %g)",
                        (double)cfg->T, (double)cfg->alpha);
    if (cfg->n_pairs < 0 || cfg->n_pairs > RF_DISTILL_MAX_PAIRS)
        return rf_error(ctx, RF_ERR_INVALID, "distill: %d hidden pairs (at most %d)", cfg->n_pairs, RF_DISTILL_MAX_PAIRS);
    if (teacher->classes != student->n_classes)
        return rf_error(ctx, RF_ERR_SHAPE, "distill: teacher has %d classes, student %d", teacher->classes, student->n_classes);
    rf_distill *d = rf_calloc(1, sizeof *d);
    if (!d) return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory");
    d->ctx = ctx;
    d->teacher = teacher;
    d->cfg = *cfg;
    const rf_model *tm = teacher->models[0];
    rf_rng rng;
    rf_rng_init(&rng, cfg->seed, rf_hash64("distill.proj", 12, 0));
    for (int p = 0; p < cfg->n_pairs; p++) {
        hidden_pair *hp = &d->pairs[p];
        hp->s_layer = cfg->student_layers[p];
        hp->t_layer = cfg->teacher_layers[p];
        if (hp->s_layer < 0 || hp->s_layer >= student->n_layers || hp->t_layer < 0 || hp->t_layer >= tm->n_layers) {
            rf_distill_free(d, NULL);
            return rf_error(ctx, RF_ERR_INVALID, "distill: hidden pair %d names layer %d/%d outside the models", p,
                            hp->s_layer, hp->t_layer);
        }
        const rf_layer *sl = &student->layers[hp->s_layer], *tl = &tm->layers[hp->t_layer];
        /* token layout (T, D, 1): same number of tokens, widths may differ */
        if (sl->out.d[2] != 1 || tl->out.d[2] != 1 || sl->out.d[0] != tl->out.d[0]) {
            rf_distill_free(d, NULL);
            return rf_error(ctx, RF_ERR_SHAPE, "distill: hidden pair %s (%dx%dx%d) / teacher %s (%dx%dx%d): need token outputs "
                            "(T, D) with the same T", sl->name, sl->out.d[0], sl->out.d[1], sl->out.d[2],
                            tl->name, tl->out.d[0], tl->out.d[1], tl->out.d[2]);
        }
        hp->tokens = sl->out.d[0];
        hp->ds = sl->out.d[1];
        hp->dt = tl->out.d[1];
        if (hp->ds != hp->dt) {
            size_t np = (size_t)hp->dt * (size_t)hp->ds;
            hp->P = rf_malloc(np * sizeof(float));
            hp->pm = rf_calloc(np, sizeof(float));
            hp->pv = rf_calloc(np, sizeof(float));
            hp->gP = rf_malloc(np * sizeof(float));
            if (!hp->P || !hp->pm || !hp->pv || !hp->gP) { rf_distill_free(d, NULL); return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory"); }
            /* Glorot-uniform initialisation of the projection (FitNets'
             * regressor is learned from scratch in the same way). */
            float a = sqrtf(6.0f / (float)(hp->ds + hp->dt));
            for (size_t i = 0; i < np; i++) hp->P[i] = (2.0f * rf_rng_uniform(&rng) - 1.0f) * a;
        }
    }
    if (cfg->n_pairs > 0) {
        d->prev_hook = student->hook;
        d->prev_ud = student->hook_ud;
        student->hook = distill_act_hook;
        student->hook_ud = d;
        d->hooked = 1;
    }
    *out = d;
    return RF_OK;
}

void rf_distill_free(rf_distill *d, rf_model *student) {
    if (!d) return;
    if (d->hooked && student && student->hook == distill_act_hook && student->hook_ud == d) {
        student->hook = d->prev_hook;
        student->hook_ud = d->prev_ud;
    }
    for (int p = 0; p < RF_DISTILL_MAX_PAIRS; p++) pair_free(&d->pairs[p]);
    rf_free(d->tlogits);
    rf_free(d);
}

float rf_distill_hidden_loss(const rf_distill *d) { return d->hidden_loss; }

/* One hidden pair: loss β·mean((h_s Pᵀ − h_t)²), the gradient G wrt h_s and an
 * Adam step on P. h_s [rows, ds], h_t [rows, dt]. */
static rf_status pair_loss(rf_distill *d, hidden_pair *hp, const float *hs, const float *ht, size_t rows, float *loss) {
    if (rows > hp->cap_rows) {
        float *G = rf_realloc(hp->G, rows * (size_t)hp->ds * sizeof(float));
        if (!G) return RF_ERR_NOMEM;
        hp->G = G;
        float *df = rf_realloc(hp->diff, rows * (size_t)hp->dt * sizeof(float));
        if (!df) return RF_ERR_NOMEM;
        hp->diff = df;
        hp->cap_rows = rows;
    }
    hp->rows = rows;
    const int ds = hp->ds, dt = hp->dt;
    const double scale = 2.0 * d->cfg.hidden_weight / ((double)rows * dt);
    double sum = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *h = hs + r * ds;
        float *df = hp->diff + r * dt;
        for (int j = 0; j < dt; j++) {
            float v;
            if (hp->P) {
                const float *p = hp->P + (size_t)j * ds;
                float acc = 0.0f;
                for (int k = 0; k < ds; k++) acc += p[k] * h[k];
                v = acc;
            } else {
                v = h[j];
            }
            df[j] = v - ht[r * dt + j];
            sum += (double)df[j] * df[j];
        }
    }
    *loss = (float)(d->cfg.hidden_weight * sum / ((double)rows * dt));
    /* dL/dh_s = scale · diff · P (identity: scale · diff) */
    for (size_t r = 0; r < rows; r++) {
        const float *df = hp->diff + r * dt;
        float *g = hp->G + r * ds;
        if (!hp->P) { for (int k = 0; k < ds; k++) g[k] = (float)(scale * df[k]); continue; }
        for (int k = 0; k < ds; k++) g[k] = 0.0f;
        for (int j = 0; j < dt; j++) {
            const float *p = hp->P + (size_t)j * ds;
            float c = (float)(scale * df[j]);
            for (int k = 0; k < ds; k++) g[k] += c * p[k];
        }
    }
    if (!hp->P) return RF_OK;
    /* dL/dP = scale · diffᵀ · h_s, then one Adam step (Kingma & Ba, β 0.9/0.999) */
    size_t np = (size_t)dt * ds;
    memset(hp->gP, 0, np * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        const float *df = hp->diff + r * dt, *h = hs + r * ds;
        for (int j = 0; j < dt; j++) {
            float c = (float)(scale * df[j]);
            float *gp = hp->gP + (size_t)j * ds;
            for (int k = 0; k < ds; k++) gp[k] += c * h[k];
        }
    }
    hp->adam_t++;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)hp->adam_t), c2 = 1.0f - powf(b2, (float)hp->adam_t);
    for (size_t i = 0; i < np; i++) {
        hp->pm[i] = b1 * hp->pm[i] + (1.0f - b1) * hp->gP[i];
        hp->pv[i] = b2 * hp->pv[i] + (1.0f - b2) * hp->gP[i] * hp->gP[i];
        hp->P[i] -= d->cfg.proj_lr * (hp->pm[i] / c1) / (sqrtf(hp->pv[i] / c2) + eps);
    }
    return RF_OK;
}

rf_status rf_distill_loss(void *ud, rf_model *m, const float *x, const float *logits,
                          const int32_t *labels, const int64_t *idx, int batch,
                          float *dlogits, float *loss) {
    rf_distill *d = ud;
    rf_ctx *ctx = d->ctx;
    const int K = d->teacher->classes;
    if (batch > d->cap) {
        float *t = rf_realloc(d->tlogits, (size_t)batch * K * sizeof(float));
        if (!t) return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory");
        d->tlogits = t;
        d->cap = batch;
    }
    /* Hidden-state pairs need this batch's teacher activations, so the
     * teacher runs even when its logits are cached. */
    const int64_t *use_idx = d->cfg.n_pairs > 0 ? NULL : idx;
    RF_TRY(rf_teacher_logits(ctx, d->teacher, x, use_idx, batch, d->tlogits));
    float L = rf_loss_distill(logits, d->tlogits, labels, batch, K, d->cfg.T, d->cfg.alpha, dlogits);
    d->hidden_loss = 0.0f;
    d->pending = 0;
    for (int p = 0; p < d->cfg.n_pairs; p++) {
        hidden_pair *hp = &d->pairs[p];
        const float *hs = rf_model_layer_output(m, hp->s_layer);
        const float *ht = rf_model_layer_output(d->teacher->models[0], hp->t_layer);
        if (!hs || !ht)   /* a deployed model's feature-major run keeps no row-major copy (nn.h) */
            return rf_error(ctx, RF_ERR_INVALID, "distill: hidden-state pair %s: layer output not kept",
                            m->layers[hp->s_layer].name);
        float lp;
        rf_status s = pair_loss(d, hp, hs, ht, (size_t)batch * (size_t)hp->tokens, &lp);
        if (s != RF_OK) return rf_error(ctx, s, "distill: hidden-state loss of %s", m->layers[hp->s_layer].name);
        d->hidden_loss += lp;
    }
    if (d->cfg.n_pairs > 0) d->pending = 1;
    *loss = L + d->hidden_loss;
    if (!isfinite(*loss)) return rf_error(ctx, RF_ERR_NAN, "distill: non-finite loss %g", (double)*loss);
    return RF_OK;
}

void rf_distill_hooks(rf_distill *d, rf_train_hooks *h) {
    h->ud = d;
    h->loss = rf_distill_loss;
}

