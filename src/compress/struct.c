/* Structured pruning: whole units (conv2d filters, linear neurons) chosen by
 * group and masked so that the model can be sliced into a smaller dense one
 * (nn.h rf_model_slice). The methods (prune_filter_l1.c, prune_slimming.c,
 * prune_neuron_l1.c) are a score per element and this selection, their
 * descriptor's `prune`.
 *
 * Units are pruned by channel group (nn.h rf_chan_groups): units that an add
 * joins (a ResNet stage's residual channels, an option-A shortcut's
 * channels with the ones they are added to) go together. A group's score
 * is the sum of the method's element scores over its members: the rows of
 * every product layer that makes one of its units (filter_l1: the sum of
 * the member filters' L1 norms, Li et al. 2017 §3.1 for one filter) and the
 * per-unit parameters of the layers it passes (slimming: the sum of |γ| of
 * its batch norms, Liu et al. 2017 §4).
 *
 * Eligible groups are those with a unit made by a layer of the method's
 * kind (conv2d channels or linear features) that `layers` selects, and
 * none made by a layer it excludes ("!conv1" keeps conv1's channels, and so
 * the residual channels it starts). Scope
 * "layer" ranks the groups of each owning layer (the first product layer
 * that makes them) on their own at its rate; "global" ranks every eligible
 * group together. Counts are exact as in rf_prune_select: a ranking set of
 * n groups, p0 already dead, loses max(0, round(s·n) − p0) more (of the
 * remaining: round(s·(n − p0))), lowest scores first, ties to the lower
 * group index; a group is skipped when its owner would keep none.
 *
 * A pruned group's units are masked so that each outputs exactly 0: the
 * weight row and bias of every product that makes one, the batch norm's γ
 * and β wherever it passes one (rf_chan_groups_dead tests exactly this).
 * So the masked model and the sliced one compute the same logits. */
#include "compress/prune_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int units_of(const rf_layer *L) { return rf_layer_units(L, NULL); }

static int is_product(const rf_layer *L) { return (rf_layer_traits(L->type) & RF_LT_PRODUCT) != 0; }

/* The weight of product layer L (its first 2-d+ weight tensor). */
static const rf_param *weight_of(const rf_model *m, const rf_layer *L) {
    for (int t = L->first_param; t < L->first_param + L->n_params; t++)
        if (m->ptensors[t].role == RF_P_WEIGHT && m->ptensors[t].ndim >= 2) return &m->ptensors[t];
    return NULL;
}

/* Calls fn(ud, off, count) for the elements of unit x of layer i that a
 * structured mask covers: the product's weight row and bias, and every
 * per-unit parameter (batch norm γ, β). */
static void unit_elements(const rf_model *m, int i, int x, void (*fn)(void *, size_t, size_t), void *ud) {
    const rf_layer *L = &m->layers[i];
    const int U = units_of(L);
    const rf_param *w = is_product(L) ? weight_of(m, L) : NULL;
    if (w && w->shape[0] == U) fn(ud, w->offset + (size_t)x * (w->numel / (size_t)U), w->numel / (size_t)U);
    for (int t = L->first_param; t < L->first_param + L->n_params; t++) {
        const rf_param *p = &m->ptensors[t];
        if (p != w && p->numel == (size_t)U) fn(ud, p->offset + (size_t)x, 1);
    }
}

/* The same for inner unit x of layer i (nn.h rf_layer_inner: a transformer
 * block's MLP feature x): its row of fc1 and its fc1 bias. */
static void inner_elements(const rf_model *m, int i, int x, void (*fn)(void *, size_t, size_t), void *ud) {
    const rf_param *r, *b;
    int n = rf_layer_inner(m, i, &r, &b, NULL);
    if (x >= n) return;
    fn(ud, r->offset + (size_t)x * (r->numel / (size_t)n), r->numel / (size_t)n);
    if (b) fn(ud, b->offset + (size_t)x, 1);
}

typedef struct sum_ud { const float *sc; double s; } sum_ud;
static void add_scores(void *ud, size_t off, size_t n) {
    sum_ud *a = ud;
    for (size_t k = 0; k < n; k++) a->s += a->sc[off + k];
}
static void zero_mask(void *ud, size_t off, size_t n) {
    float *mask = ud;
    for (size_t k = 0; k < n; k++) mask[off + k] = 0.0f;
}

static int has_positive(const char *list) {
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p && *p != '!') return 1;
        while (*p && *p != ',') p++;
    }
    return 0;
}

static const char *kind_word(unsigned flags) {
    return flags & RF_PM_CHANNELS ? (flags & RF_PM_NEURONS ? "conv2d channels and linear features" : "conv2d output channels")
                                  : "linear output features";
}

/* Which product layers the method may narrow: 1 eligible, 0 not; an error
 * when `layers` names one it cannot. */
static rf_status eligible_layers(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg, const rf_prune_method_desc *d,
                                 const rf_chan_groups *g, unsigned char *ok) {
    const int named = has_positive(cfg->layers);
    int any = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        const rf_param *w = is_product(L) ? weight_of(m, L) : NULL, *inner = NULL;
        ok[i] = 0;
        if (!w && !rf_layer_inner(m, i, &inner, NULL, NULL)) continue;
        if (!rf_prune_glob_selects(cfg->layers, (w ? w : inner)->name, L->name)) continue;
        int image = 0;
        if (w) rf_layer_units(L, &image);
        int kind = image ? (d->flags & RF_PM_CHANNELS) != 0 : (d->flags & RF_PM_NEURONS) != 0;
        char why[160] = "";
        if (w) rf_chan_groups_why(m, g, i, why, sizeof why);   /* inner units are never pinned */
        if (named && why[0])
            return rf_error(ctx, RF_ERR_INVALID, "%s cannot slice layer '%s' (%s): %s", d->name, L->name, rf_layer_type_name(L->type), why);
        if (named && !kind)
            return rf_error(ctx, RF_ERR_INVALID, "%s removes %s; layer '%s' is %s (%s)", d->name, kind_word(d->flags), L->name,
                            rf_layer_type_name(L->type), image ? "filter_l1 or slimming remove its channels" : "neuron_l1 removes its features");
        if (kind && !why[0]) ok[i] = 1, any = 1;
    }
    if (!any)
        return rf_error(ctx, RF_ERR_INVALID, "%s: no layer%s%s%s can be sliced (it removes %s)", d->name, cfg->layers ? " matching \"" : "",
                        cfg->layers ? cfg->layers : "", cfg->layers ? "\"" : "", kind_word(d->flags));
    return RF_OK;
}

typedef struct cand { double score; int group; } cand;
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->group > y->group) - (x->group < y->group);
}

static double round_half_away(double x) { return x < 0 ? -floor(-x + 0.5) : floor(x + 0.5); }

typedef struct sel {
    const rf_model *m;
    const rf_prune_cfg *cfg;
    const rf_chan_groups *g;
    const double *score;
    const unsigned char *elig;
    unsigned char *dead;     /* in: already dead; out: plus the newly pruned */
    int *live;               /* live groups per owner layer */
    int highest;
} sel;

/* Prunes from ranking set `set` (groups with owner == set, or all eligible
 * groups when set < 0) at rate r. */
static rf_status select_set(rf_ctx *ctx, sel *s, int set, double r) {
    const int ng = s->g->n_groups;
    cand *c = rf_malloc((size_t)(ng ? ng : 1) * sizeof *c);
    if (!c) return rf_error(ctx, RF_ERR_NOMEM, "structured pruning: out of memory");
    int n = 0, p0 = 0, nc = 0;
    for (int q = 0; q < ng; q++) {
        if (!s->elig[q] || (set >= 0 && s->g->owner[q] != set)) continue;
        n++;
        if (s->dead[q]) { p0++; continue; }
        c[nc].score = s->highest ? -s->score[q] : s->score[q];
        c[nc++].group = q;
    }
    if (isnan(r) || r < 0 || r > 1) { rf_free(c); return rf_error(ctx, RF_ERR_INVALID, "structured pruning: rate %g outside [0, 1]", r); }
    double want = s->cfg->of_remaining ? round_half_away(r * (n - p0)) : round_half_away(r * n) - p0;
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    for (int k = 0; k < nc && want > 0; k++) {
        int q = c[k].group, o = s->g->owner[q];
        if (s->live[o] <= 1) continue;   /* the owner keeps one unit */
        s->dead[q] = 1;
        s->live[o]--;
        want--;
    }
    rf_free(c);
    return RF_OK;
}

rf_status rf_prune_struct_apply(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                                int n_items, const rf_dataset *train) {
    (void)items; (void)n_items;
    const rf_prune_method_desc *d = rf_prune_method_get(cfg->method);
    rf_chan_groups *g;
    RF_TRY(rf_model_chan_groups(ctx, m, &g));
    const int ng = g->n_groups;
    unsigned char *ok_layer = rf_calloc((size_t)m->n_layers, 1), *elig = rf_calloc((size_t)(ng ? ng : 1), 1);
    unsigned char *dead = rf_calloc((size_t)(ng ? ng : 1), 1), *bn = rf_calloc((size_t)(ng ? ng : 1), 1);
    unsigned char *veto = rf_calloc((size_t)(ng ? ng : 1), 1);
    double *score = rf_calloc((size_t)(ng ? ng : 1), sizeof *score);
    int *live = rf_calloc((size_t)m->n_layers, sizeof *live);
    float *sc = rf_calloc(m->n_params ? m->n_params : 1, sizeof *sc);
    rf_prune_item *all = NULL;
    int n_all = 0;
    rf_status s = ok_layer && elig && dead && bn && veto && score && live && sc ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "structured pruning: out of memory");
    if (!s) s = eligible_layers(ctx, m, cfg, d, g, ok_layer);
    /* element scores over every prunable tensor, so a group's sum covers
     * all its members whatever `layers` selects */
    rf_prune_cfg every = *cfg;
    every.layers = NULL;
    if (!s) s = rf_prune_items(ctx, m, &every, &all, &n_all);
    if (!s) s = d->score(ctx, m, &every, all, n_all, train, sc);
    if (!s) rf_chan_groups_dead(m, g, dead);
    for (int i = 0; !s && i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        const rf_param *w = is_product(L) ? weight_of(m, L) : NULL;
        const int excluded = w && rf_prune_glob_excludes(cfg->layers, w->name, L->name);
        for (int x = 0; x < units_of(L); x++) {
            int q = g->unit[g->off[i] + (size_t)x];
            if (q < 0) continue;
            if (excluded) veto[q] = 1;
            sum_ud a = {sc, 0.0};
            unit_elements(m, i, x, add_scores, &a);
            score[q] += a.s;
            if (ok_layer[i]) elig[q] = 1;
            if (rf_layer_traits(L->type) & RF_LT_STATS) bn[q] = 1;
        }
        for (size_t x = g->inner_off[i]; x < g->inner_off[i + 1]; x++) {
            int q = g->inner_unit[x];
            sum_ud a = {sc, 0.0};
            inner_elements(m, i, (int)(x - g->inner_off[i]), add_scores, &a);
            score[q] += a.s;
            if (ok_layer[i]) elig[q] = 1;
        }
    }
    for (int q = 0; !s && q < ng; q++) {
        if (veto[q]) elig[q] = 0;
        if (!dead[q]) live[g->owner[q]]++;
        if (isnan(score[q])) s = rf_error(ctx, RF_ERR_NAN, "%s: a unit of layer '%s' scores NaN", d->name, m->layers[g->owner[q]].name);
        else if ((d->flags & RF_PM_BNSCALE) && elig[q] && !bn[q])
            s = rf_error(ctx, RF_ERR_INVALID, "%s ranks units by their batch norm's scale; the units of layer '%s' pass none (exclude it with layers \"!%s\")",
                         d->name, m->layers[g->owner[q]].name, m->layers[g->owner[q]].name);
    }
    sel st = {m, cfg, g, score, elig, dead, live, (d->flags & RF_PM_HIGHEST) != 0};
    if (!s && cfg->scope == RF_SCOPE_GLOBAL) {
        s = select_set(ctx, &st, -1, cfg->sparsity);
    } else {
        for (int i = 0; !s && i < m->n_layers; i++) {
            const rf_param *w = is_product(&m->layers[i]) ? weight_of(m, &m->layers[i]) : NULL, *inner = NULL;
            if (!w && !rf_layer_inner(m, i, &inner, NULL, NULL)) continue;
            if (!w) w = inner;
            double r = w ? rf_prune_rate_for(cfg, w->name, m->layers[i].name) : -1.0;
            s = select_set(ctx, &st, i, r >= 0 ? r : cfg->sparsity);
        }
    }
    for (int i = 0; !s && i < m->n_layers; i++)
        for (int x = 0; x < units_of(&m->layers[i]); x++) {
            int q = g->unit[g->off[i] + (size_t)x];
            if (q >= 0 && dead[q]) unit_elements(m, i, x, zero_mask, m->masks);
        }
    for (int i = 0; !s && i < m->n_layers; i++)
        for (size_t x = g->inner_off[i]; x < g->inner_off[i + 1]; x++)
            if (dead[g->inner_unit[x]]) inner_elements(m, i, (int)(x - g->inner_off[i]), zero_mask, m->masks);
    if (!s) rf_model_apply_masks(m);
    rf_free(all); rf_free(sc); rf_free(live); rf_free(score); rf_free(bn); rf_free(veto); rf_free(dead); rf_free(elig); rf_free(ok_layer);
    rf_chan_groups_free(g);
    return s;
}

rf_status rf_prune_struct_check(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg) {
    const rf_prune_method_desc *d = rf_prune_method_get(cfg->method);
    if (d && (d->flags & RF_PM_HEADS)) return rf_prune_head_check(ctx, m, cfg);
    if (!d || !(d->flags & (RF_PM_CHANNELS | RF_PM_NEURONS))) return RF_OK;
    rf_chan_groups *g;
    RF_TRY(rf_model_chan_groups(ctx, m, &g));
    unsigned char *ok = rf_calloc((size_t)m->n_layers, 1);
    rf_status s = ok ? eligible_layers(ctx, m, cfg, d, g, ok) : rf_error(ctx, RF_ERR_NOMEM, "structured pruning: out of memory");
    rf_free(ok);
    rf_chan_groups_free(g);
    return s;
}
