/* Attention-head pruning by head importance (Michel, Levy & Neubig 2019,
 * "Are Sixteen Heads Really Better than One?", §4.1, eq. 2): with a gate ξ_h
 * on head h's output, I_h = E_x |∂L(x)/∂ξ_h|, the expected sensitivity of
 * the loss to the gate, estimated over `obd_batches` batches. At ξ = 1 the
 * gate's gradient is the head's context times its gradient, which the
 * output projection's weight gradient already holds:
 *     ∂L/∂ξ_h = Σ_t Σ_{j∈h} ctx[t, j]·∂L/∂ctx[t, j] = Σ_{j∈h} Σ_o W[o, j]·∂L/∂W[o, j]
 * (W = proj.weight [D, D], j over head h's D/H columns), so one backward
 * per batch gives every head's importance. The least important heads go;
 * scope "global" compares heads of different layers after normalising each
 * layer's importances by their L2 norm, as the paper does (§4.2). A pruned
 * head is masked whole: its q, k and v rows of qkv (weight and bias) and its
 * columns of proj, so it contributes exactly 0. Heads are masked, not sliced:
 * the attention layers keep their width (docs/pruning.md). */
#include "compress/prune_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const rf_param *param_ending(const rf_model *m, const rf_layer *L, const char *suffix) {
    size_t ls = strlen(suffix);
    for (int t = L->first_param; t < L->first_param + L->n_params; t++) {
        size_t ln = strlen(m->ptensors[t].name);
        if (ln >= ls && strcmp(m->ptensors[t].name + ln - ls, suffix) == 0) return &m->ptensors[t];
    }
    return NULL;
}

typedef struct head_layer { int layer, H, D; const rf_param *qkv, *qkv_b, *proj; } head_layer;

static int heads_of(const rf_model *m, int i, head_layer *h) {
    const rf_layer *L = &m->layers[i];
    if (!(rf_layer_traits(L->type) & RF_LT_PRODUCTS)) return 0;
    h->layer = i;
    h->H = L->ip[0];
    h->D = L->in.d[1];
    h->qkv = param_ending(m, L, "qkv.weight");
    h->qkv_b = param_ending(m, L, "qkv.bias");
    h->proj = param_ending(m, L, "proj.weight");
    return h->H > 0 && h->qkv && h->proj && h->D % h->H == 0 && h->proj->numel == (size_t)h->D * h->D;
}

static int head_dead(const rf_model *m, const head_layer *h, int k) {
    const int dh = h->D / h->H;
    for (int o = 0; o < h->D; o++)
        for (int j = k * dh; j < (k + 1) * dh; j++)
            if (m->masks[h->proj->offset + (size_t)o * h->D + j] != 0.0f) return 0;
    return 1;
}

static void mask_head(rf_model *m, const head_layer *h, int k) {
    const int dh = h->D / h->H;
    for (int o = 0; o < h->D; o++)
        for (int j = k * dh; j < (k + 1) * dh; j++) m->masks[h->proj->offset + (size_t)o * h->D + j] = 0.0f;
    for (int part = 0; part < 3; part++)
        for (int r = part * h->D + k * dh; r < part * h->D + (k + 1) * dh; r++) {
            for (int c = 0; c < h->D; c++) m->masks[h->qkv->offset + (size_t)r * h->D + c] = 0.0f;
            if (h->qkv_b) m->masks[h->qkv_b->offset + r] = 0.0f;
        }
}

typedef struct cand { double score; int idx; } cand;
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The attention layers cfg->layers selects (hl[*nl], new, rf_free; NULL to
 * check only) and their *total heads; an error naming a layer `layers`
 * names that has no heads, or when no layer has any. */
static rf_status head_layers(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg, head_layer **hlp, int *nlp, int *totalp) {
    head_layer *hl = rf_calloc((size_t)m->n_layers, sizeof *hl);
    if (!hl) return rf_error(ctx, RF_ERR_NOMEM, "head: out of memory");
    int nl = 0, total = 0;
    rf_status s = RF_OK;
    for (int i = 0; i < m->n_layers && !s; i++) {
        head_layer h;
        const rf_layer *L = &m->layers[i];
        int sel = rf_prune_glob_selects(cfg->layers, L->name, L->name);
        if (!heads_of(m, i, &h)) {
            if (sel && cfg->layers && (rf_layer_traits(L->type) & RF_LT_PRUNABLE) && strchr(cfg->layers, '!') == NULL)
                s = rf_error(ctx, RF_ERR_INVALID, "head prunes attention heads; layer '%s' (%s) has none", L->name, rf_layer_type_name(L->type));
            continue;
        }
        if (!sel) continue;
        hl[nl++] = h;
        total += h.H;
    }
    if (!s && nl == 0)
        s = rf_error(ctx, RF_ERR_INVALID, "head prunes attention heads; no attention or transformer layer%s%s%s", cfg->layers ? " matches \"" : "",
                     cfg->layers ? cfg->layers : "", cfg->layers ? "\"" : "");
    if (s || !hlp) { rf_free(hl); return s; }
    *hlp = hl; *nlp = nl; *totalp = total;
    return RF_OK;
}

rf_status rf_prune_head_check(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg) {
    return head_layers(ctx, m, cfg, NULL, NULL, NULL);
}

/* The selected attention layers (hl, *nl of them, *total heads) and every
 * head's importance imp[total] (new arrays, rf_free). */
static rf_status head_importance(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_dataset *train,
                                 head_layer **hlp, int *nlp, double **impp, int *totalp) {
    *hlp = NULL; *impp = NULL; *nlp = *totalp = 0;
    head_layer *hl;
    int nl, total;
    RF_TRY(head_layers(ctx, m, cfg, &hl, &nl, &total));
    rf_status s = RF_OK;
    double *imp = rf_calloc((size_t)(total ? total : 1), sizeof *imp);
    if (!imp) s = rf_error(ctx, RF_ERR_NOMEM, "head: out of memory");
    rf_prune_batches g;
    int open = 0;
    if (!s && !(s = rf_prune_batches_open(ctx, &g, m, cfg, train, rf_prune_n_batches(cfg)))) open = 1;
    for (int b = 0; open && !s && b < g.nb; b++) {
        s = rf_prune_batch_grad(ctx, &g, b);
        for (int l = 0, at = 0; !s && l < nl; at += hl[l].H, l++) {
            const int D = hl[l].D, dh = D / hl[l].H;
            for (int k = 0; k < hl[l].H; k++) {
                double gate = 0.0;   /* ∂L/∂ξ_k of this batch */
                for (int o = 0; o < D; o++)
                    for (int j = k * dh; j < (k + 1) * dh; j++) {
                        size_t f = hl[l].proj->offset + (size_t)o * D + j;
                        gate += (double)m->params[f] * m->grads[f];
                    }
                imp[at + k] += fabs(gate) / g.nb;
            }
        }
    }
    if (open) rf_prune_batches_close(&g);
    if (s) { rf_free(hl); rf_free(imp); return s; }
    *hlp = hl; *nlp = nl; *impp = imp; *totalp = total;
    return RF_OK;
}

/* The score per weight: each element of head h's qkv rows and proj columns
 * gets I_h (rf_prune_scores; selection goes by whole heads, head_prune). */
static rf_status head_scores(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items, int n_items,
                             const rf_dataset *train, float *sc) {
    (void)items; (void)n_items;
    head_layer *hl;
    double *imp;
    int nl, total;
    RF_TRY(head_importance(ctx, m, cfg, train, &hl, &nl, &imp, &total));
    for (int l = 0, at = 0; l < nl; at += hl[l].H, l++) {
        const int D = hl[l].D, dh = D / hl[l].H;
        for (int k = 0; k < hl[l].H; k++) {
            for (int o = 0; o < D; o++)
                for (int j = k * dh; j < (k + 1) * dh; j++) sc[hl[l].proj->offset + (size_t)o * D + j] = (float)imp[at + k];
            for (int part = 0; part < 3; part++)
                for (int r = part * D + k * dh; r < part * D + (k + 1) * dh; r++)
                    for (int c = 0; c < D; c++) sc[hl[l].qkv->offset + (size_t)r * D + c] = (float)imp[at + k];
        }
    }
    rf_free(hl);
    rf_free(imp);
    return RF_OK;
}

static rf_status head_prune(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items, int n_items,
                            const rf_dataset *train) {
    (void)items; (void)n_items;
    head_layer *hl;
    double *imp;
    int nl, total;
    RF_TRY(head_importance(ctx, m, cfg, train, &hl, &nl, &imp, &total));
    cand *c = rf_malloc((size_t)(total ? total : 1) * sizeof *c);
    rf_status s = c ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "head: out of memory");
    /* ranking sets: one per layer, or all heads (each layer's importances
     * divided by their L2 norm) */
    for (int l = 0, at = 0; !s && l < nl; at += hl[l].H, l++) {
        double n2 = 0.0;
        for (int k = 0; k < hl[l].H; k++) n2 += imp[at + k] * imp[at + k];
        if (cfg->scope == RF_SCOPE_GLOBAL && n2 > 0)
            for (int k = 0; k < hl[l].H; k++) imp[at + k] /= sqrt(n2);
    }
    int sets = cfg->scope == RF_SCOPE_GLOBAL ? 1 : nl;
    for (int set = 0; !s && set < sets; set++) {
        int n = 0, p0 = 0, nc = 0;
        int *live = rf_calloc((size_t)nl, sizeof *live);
        if (!live) { s = rf_error(ctx, RF_ERR_NOMEM, "head: out of memory"); break; }
        double r = cfg->sparsity;
        for (int l = 0, at = 0; l < nl; at += hl[l].H, l++) {
            if (sets > 1 && l != set) continue;
            if (sets > 1) {
                double lr = rf_prune_rate_for(cfg, m->layers[hl[l].layer].name, m->layers[hl[l].layer].name);
                if (lr >= 0) r = lr;
            }
            for (int k = 0; k < hl[l].H; k++) {
                n++;
                if (head_dead(m, &hl[l], k)) { p0++; continue; }
                live[l]++;
                c[nc].score = imp[at + k];
                c[nc++].idx = at + k;
            }
        }
        double want = cfg->of_remaining ? floor(r * (n - p0) + 0.5) : floor(r * n + 0.5) - p0;
        qsort(c, (size_t)nc, sizeof *c, cand_cmp);
        for (int q = 0; q < nc && want > 0; q++) {
            int l = 0, at = 0;
            while (c[q].idx >= at + hl[l].H) at += hl[l++].H;
            if (live[l] <= 1) continue;   /* a layer keeps one head */
            mask_head(m, &hl[l], c[q].idx - at);
            live[l]--;
            want--;
        }
        rf_free(live);
    }
    if (!s) rf_model_apply_masks(m);
    rf_free(c); rf_free(imp); rf_free(hl);
    return s;
}

static const char *const head_keys[] = {"obd_batches", NULL};

const rf_prune_method_desc rf_prune_method_head = {
    .name = "head", .summary = "attention heads by importance E|∂L/∂ξ_h| over `obd_batches` batches (Michel et al. 2019, eq. 2); masked whole",
    .flags = RF_PM_HEADS | RF_PM_DATA | RF_PM_GRAD | RF_PM_LAYER | RF_PM_GLOBAL, .keys = head_keys, .score = head_scores, .prune = head_prune,
};
