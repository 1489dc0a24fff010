/* Pruning on plain arrays: exact mask selection, random masks with a given
 * count, layer-collapse detection on a chain of masks, the cubic GMP schedule
 * and the name tables. Nothing here touches a model, so all of it is unit-
 * tested on hand-made tensors (tests/unit/test_prune.c).
 *
 * Selection: for each ranking group the still-kept entries are gathered as
 * (score, flat index) pairs and sorted by score, then index. Sorting rather
 * than quickselect keeps tie-breaking trivially deterministic; a global
 * ranking of conv-6's 2.3M weights sorts in well under a second. */
#include "raffle/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------
 * The methods' names are their descriptors' (prune_methods.c). */

int rf_prune_scope_from_name(const char *name) {
    static const char *const names[] = {[RF_SCOPE_LAYER] = "layer", [RF_SCOPE_GLOBAL] = "global"};
    for (int i = 0; name && i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

void rf_prune_cfg_default(rf_prune_cfg *c) {
    memset(c, 0, sizeof *c);
    c->method = RF_PRUNE_MAGNITUDE;
    c->scope = RF_SCOPE_LAYER;
    c->output_rate = -1.0;
    c->batches = 10;
    c->batch = 128;
    c->synflow_rounds = 100;
    c->grasp_eps = 3e-3;
}

rf_status rf_rewind_parse(rf_ctx *ctx, const char *s, rf_rewind_kind *kind, int64_t *k) {
    *k = 0;
    if (!s) return rf_error(ctx, RF_ERR_INVALID, "rewind: missing value (init, step:K or lr)");
    if (strcmp(s, "init") == 0) { *kind = RF_REWIND_INIT; return RF_OK; }
    if (strcmp(s, "lr") == 0) { *kind = RF_REWIND_LR; return RF_OK; }
    if (strncmp(s, "step:", 5) == 0) {
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        if (rf_parse_i64(&tmp, s + 5, strlen(s + 5), 0, INT64_MAX, "rewind step", k) == RF_OK) { *kind = RF_REWIND_STEP; return RF_OK; }
        *k = 0;
        return rf_error(ctx, RF_ERR_INVALID, "rewind '%s': expected init, step:K (K >= 0) or lr: %s", s, tmp.err);
    }
    return rf_error(ctx, RF_ERR_INVALID, "rewind '%s': expected init, step:K (K >= 0) or lr", s);
}

/* ---- exact selection ------------------------------------------------------ */

typedef struct { float s; size_t i; } scored;

static int cmp_low(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s < y->s) return -1;
    if (x->s > y->s) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int cmp_high(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

static size_t round_count(double x) { return x <= 0 ? 0 : (size_t)floor(x + 0.5); }

/* Prunes the count the plan asks for among the kept entries of the items
 * listed in idx[0..n_idx) (a ranking group). */
static rf_status select_group(rf_ctx *ctx, const rf_prune_item *items, const int *idx, int n_idx,
                              const float *scores, float *mask, double rate, int of_remaining,
                              int prune_highest, size_t *n_pruned) {
    if (!(rate >= 0.0 && rate <= 1.0))
        return rf_error(ctx, RF_ERR_INVALID, "prune: rate %g outside [0, 1] (%s)", rate, items[idx[0]].name ? items[idx[0]].name : "?");
    size_t n = 0, alive = 0;
    for (int j = 0; j < n_idx; j++) {
        const rf_prune_item *it = &items[idx[j]];
        n += it->numel;
        for (size_t e = 0; e < it->numel; e++) alive += mask[it->offset + e] != 0.0f;
    }
    size_t pruned0 = n - alive, k;
    if (of_remaining) {
        k = round_count(rate * (double)alive);
    } else {
        size_t target = round_count(rate * (double)n);
        k = target > pruned0 ? target - pruned0 : 0;
    }
    if (k > alive) k = alive;
    if (k == 0) return RF_OK;
    scored *v = rf_malloc(alive * sizeof *v);
    if (!v) return rf_error(ctx, RF_ERR_NOMEM, "prune: %zu scores", alive);
    size_t c = 0;
    for (int j = 0; j < n_idx; j++) {
        const rf_prune_item *it = &items[idx[j]];
        for (size_t e = 0; e < it->numel; e++) {
            size_t f = it->offset + e;
            if (mask[f] == 0.0f) continue;
            if (isnan(scores[f])) {
                rf_free(v);
                return rf_error(ctx, RF_ERR_NAN, "prune: NaN score in %s[%zu]", it->name ? it->name : "?", e);
            }
            v[c].s = scores[f];
            v[c].i = f;
            c++;
        }
    }
    qsort(v, c, sizeof *v, prune_highest ? cmp_high : cmp_low);
    for (size_t j = 0; j < k; j++) mask[v[j].i] = 0.0f;
    rf_free(v);
    *n_pruned += k;
    return RF_OK;
}

static int items_overlap(const rf_prune_item *items, int n) {
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            size_t a0 = items[a].offset, a1 = a0 + items[a].numel;
            size_t b0 = items[b].offset, b1 = b0 + items[b].numel;
            if (a0 < b1 && b0 < a1 && items[a].numel && items[b].numel) return 1;
        }
    return 0;
}

rf_status rf_prune_select(rf_ctx *ctx, const rf_prune_item *items, int n_items,
                          const float *scores, float *mask, const rf_prune_plan *plan,
                          size_t *n_pruned) {
    size_t done = 0;
    if (n_pruned) *n_pruned = 0;
    if (n_items <= 0) return RF_OK;
    if (items_overlap(items, n_items)) return rf_error(ctx, RF_ERR_INVALID, "prune: tensors overlap");
    int *idx = rf_malloc((size_t)n_items * sizeof *idx);
    if (!idx) return rf_error(ctx, RF_ERR_NOMEM, "prune: index list");
    rf_status s = RF_OK;
    if (plan->scope == RF_SCOPE_LAYER) {
        for (int i = 0; i < n_items && s == RF_OK; i++) {
            double r = items[i].rate >= 0 ? items[i].rate
                     : (items[i].is_output && plan->output_rate >= 0) ? plan->output_rate : plan->sparsity;
            idx[0] = i;
            s = select_group(ctx, items, idx, 1, scores, mask, r, plan->of_remaining, plan->prune_highest, &done);
        }
    } else {
        /* Global ranking; a separate output rate (the LTH paper prunes the
         * classifier at half the rate) makes the output tensors their own group. */
        int split = plan->output_rate >= 0;
        for (int pass = 0; pass < 1 + split && s == RF_OK; pass++) {
            int c = 0;
            for (int i = 0; i < n_items; i++)
                if (!split || (items[i].is_output != 0) == (pass == 1)) idx[c++] = i;
            if (c > 0)
                s = select_group(ctx, items, idx, c, scores, mask, pass ? plan->output_rate : plan->sparsity,
                                 plan->of_remaining, plan->prune_highest, &done);
        }
    }
    rf_free(idx);
    if (n_pruned) *n_pruned = done;
    return s;
}

void rf_prune_count(const rf_prune_item *items, int n_items, const float *mask,
                    size_t *pruned, size_t *total) {
    size_t p = 0, t = 0;
    for (int i = 0; i < n_items; i++) {
        t += items[i].numel;
        for (size_t e = 0; e < items[i].numel; e++) p += mask[items[i].offset + e] == 0.0f;
    }
    if (pruned) *pruned = p;
    if (total) *total = t;
}

rf_status rf_prune_random_like(rf_ctx *ctx, const rf_prune_item *items, int n_items,
                               float *mask, uint64_t seed, uint64_t stream) {
    rf_rng rng;
    rf_rng_init(&rng, seed, stream);
    for (int i = 0; i < n_items; i++) {
        const rf_prune_item *it = &items[i];
        if (it->numel > UINT32_MAX) return rf_error(ctx, RF_ERR_LIMIT, "prune: %s too large for a random mask", it->name ? it->name : "?");
        size_t kept = 0;
        for (size_t e = 0; e < it->numel; e++) kept += mask[it->offset + e] != 0.0f;
        uint32_t *perm = rf_malloc(it->numel * sizeof *perm + 1);
        if (!perm) return rf_error(ctx, RF_ERR_NOMEM, "prune: random mask for %s", it->name ? it->name : "?");
        for (size_t e = 0; e < it->numel; e++) perm[e] = (uint32_t)e;
        rf_rng_shuffle_u32(&rng, perm, it->numel);
        for (size_t e = 0; e < it->numel; e++) mask[it->offset + e] = 0.0f;
        for (size_t e = 0; e < kept; e++) mask[it->offset + perm[e]] = 1.0f;
        rf_free(perm);
    }
    return RF_OK;
}

/* ---- gradual magnitude pruning schedule (Zhu & Gupta 2017, eq. 1) --------- */

static int64_t gmp_last_update(const rf_gmp_schedule *s, int64_t step) {
    int64_t every = s->every > 0 ? s->every : 1;
    if (step > s->end) step = s->end;
    return s->start + ((step - s->start) / every) * every;
}

double rf_gmp_sparsity(const rf_gmp_schedule *s, int64_t step) {
    if (step < s->start) return s->s_init;
    if (s->end <= s->start) return s->s_final;
    int64_t t = gmp_last_update(s, step);
    if (step >= s->end) t = s->end;
    double frac = (double)(t - s->start) / (double)(s->end - s->start);
    double r = 1.0 - frac;
    return s->s_final + (s->s_init - s->s_final) * r * r * r;
}

void rf_gmp_schedule_for_run(double s_init, double s_final, int64_t total, double start_fraction, double end_fraction,
                             double every_fraction, rf_gmp_schedule *s) {
    s->s_init = s_init;
    s->s_final = s_final;
    s->start = (int64_t)llround(start_fraction * (double)total);
    int64_t end = (int64_t)llround(end_fraction * (double)total);
    if (end < s->start + 1) end = s->start + 1;
    int64_t every = (int64_t)llround(every_fraction * (double)total);
    if (every < 1) every = 1;
    if (every > end - s->start) every = end - s->start;
    /* n·Δt = end − start: a whole number of intervals */
    s->end = s->start + ((end - s->start) / every) * every;
    s->every = every;
}

int rf_gmp_is_update_step(const rf_gmp_schedule *s, int64_t step) {
    if (step < s->start || step > s->end) return 0;
    int64_t every = s->every > 0 ? s->every : 1;
    return (step - s->start) % every == 0 || step == s->end;
}

/* ---- saliency kernels -------------------------------------------------------- */

void rf_prune_score_magnitude(const float *w, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = fabsf(w[i]);
}

/* OBD (LeCun, Denker & Solla 1990): s_i = ½ h_ii w_i². */
void rf_prune_score_obd(const float *w, const float *h, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * h[i] * w[i] * w[i];
}

/* SNIP (Lee et al. 2019) normalises |g ⊙ w| by its sum; the sum is a
 * positive constant per ranking, so the mask is the same without it, and the
 * model-level code divides by the global sum for reporting only. */
void rf_prune_score_snip(const float *w, const float *g, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = fabsf(g[i] * w[i]);
}

void rf_prune_score_grasp(const float *w, const float *hg, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = -w[i] * hg[i];
}

void rf_prune_score_synflow(const float *w, const float *g, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = fabsf(w[i] * g[i]);
}

void rf_prune_score_random(uint64_t seed, uint64_t stream, size_t n, float *out) {
    rf_rng r;
    rf_rng_init(&r, seed, stream);
    for (size_t i = 0; i < n; i++) out[i] = rf_rng_uniform(&r);
}
