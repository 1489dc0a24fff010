/* Batch norm folded into the conv2d or linear layer before it, for
 * inference (deployment, int8): in eval mode a batch norm is the per-channel
 * affine map y = a·x + (β − μ·a), a = γ / sqrt(σ² + eps) (Ioffe & Szegedy
 * 2015, Alg. 2, the inference network), so after x = W·u + b
 *     W' = a·W (row by row),   b' = a·(b − μ) + β,
 * and the batch norm layer goes (Jacob et al. 2018, Sec. 3.2, fold batch
 * norm before quantizing the weights).
 *
 * The folded model is built from a new spec: every layer keeps its name
 * (written explicitly, so unnamed layers keep "layers.<i>" and their
 * parameter names) and lists its inputs by name; a reference to a folded
 * batch norm becomes a reference to its conv; the conv gets a bias. A batch
 * norm is folded only when its input is a conv2d or linear layer that
 * nothing else reads (else the conv's own output is needed unscaled). */
#include "nn/layers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Index of the product layer batch norm li folds into, or -1. */
static int fold_target(const rf_model *m, int li) {
    const rf_layer *L = &m->layers[li];
    int p = L->inputs[0];
    if (L->type != RF_L_BATCHNORM || p < 0) return -1;
    const rf_layer *P = &m->layers[p];
    /* a product whose output units are its weight's rows (conv, linear), on
     * channels (an image) or flat features, not tokens */
    const rf_nn_op *op = rf_nn_op_get(P->type);
    if (!(op->traits & RF_LT_PRODUCT) || op->conn != RF_NN_CONN_PRODUCT || P->ip[7] == RF_NN_TOKENS) return -1;
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i].n_inputs; k++)
            if (m->layers[i].inputs[k] == p && i != li) return -1;
    return p;
}

/* Name of the layer that stands for layer src in the folded model. */
static const char *mapped(const rf_model *m, const int *into, int src) {
    if (src < 0) return "input";
    return m->layers[into[src] >= 0 ? into[src] : src].name;
}

static rf_status folded_spec(rf_ctx *ctx, const rf_model *m, const int *into, char **out) {
    *out = NULL;
    cJSON *root = cJSON_Parse(m->spec_json);
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    cJSON *fresh = cJSON_CreateArray();
    int ok = root && cJSON_GetArraySize(layers) == m->n_layers && fresh;
    int i = 0;
    for (cJSON *e = layers ? layers->child : NULL; ok && e; e = e->next, i++) {
        if (into[i] >= 0) continue;   /* a folded batch norm */
        const rf_layer *L = &m->layers[i];
        cJSON *c = cJSON_Duplicate(e, 1);
        ok = c && cJSON_AddItemToArray(fresh, c);
        if (!ok) { cJSON_Delete(c); break; }
        cJSON_DeleteItemFromObjectCaseSensitive(c, "name");
        cJSON_DeleteItemFromObjectCaseSensitive(c, "inputs");
        cJSON_DeleteItemFromObjectCaseSensitive(c, "from");
        ok = cJSON_AddStringToObject(c, "name", L->name) != NULL;
        /* a residual lists its first input; its second stays "from" */
        int n_list = L->type == RF_L_RESIDUAL ? 1 : L->n_inputs;
        cJSON *ins = cJSON_AddArrayToObject(c, "inputs");
        for (int k = 0; ok && k < n_list; k++)
            ok = ins && cJSON_AddItemToArray(ins, cJSON_CreateString(mapped(m, into, L->inputs[k])));
        if (ok && L->type == RF_L_RESIDUAL) ok = cJSON_AddStringToObject(c, "from", mapped(m, into, L->inputs[1])) != NULL;
        int absorbs = 0;
        for (int q = 0; q < m->n_layers; q++) absorbs |= into[q] == i;
        if (ok && absorbs) {
            cJSON_DeleteItemFromObjectCaseSensitive(c, "bias");
            ok = cJSON_AddNumberToObject(c, "bias", 1) != NULL;
        }
    }
    if (ok) ok = cJSON_ReplaceItemInObjectCaseSensitive(root, "layers", fresh);
    else cJSON_Delete(fresh);
    char *txt = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (txt) *out = rf_strdup(txt);
    cJSON_free(txt);
    return *out ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "fold: out of memory");
}

static const rf_param *param_of(const rf_model *m, int li, rf_param_role role) {
    const rf_layer *L = &m->layers[li];
    for (int t = L->first_param; t < L->first_param + L->n_params; t++)
        if (m->ptensors[t].role == role) return &m->ptensors[t];
    return NULL;
}

rf_status rf_model_fold_bn(rf_ctx *ctx, const rf_model *m, rf_model **out, int *n_folded) {
    *out = NULL;
    if (n_folded) *n_folded = 0;
    int *into = rf_malloc((size_t)m->n_layers * sizeof *into);
    if (!into) return rf_error(ctx, RF_ERR_NOMEM, "fold: out of memory");
    int nf = 0;
    for (int i = 0; i < m->n_layers; i++) nf += (into[i] = fold_target(m, i)) >= 0;
    char *spec = NULL;
    rf_model *f = NULL;
    rf_status st = folded_spec(ctx, m, into, &spec);
    if (!st) st = rf_model_from_spec(ctx, spec, &f);
    rf_free(spec);
    if (!st && m->masks) st = rf_model_ensure_masks(ctx, f);
    /* Everything that is not folded is copied by name: parameters (with
     * their masks and prunable flags) and batch-norm statistics. */
    for (int t = 0; !st && t < f->n_ptensors; t++) {
        rf_param *d = &f->ptensors[t];
        const rf_param *s = rf_model_param(m, d->name);
        if (!s) continue;   /* a conv's new bias: set below */
        memcpy(f->params + d->offset, m->params + s->offset, s->numel * sizeof(float));
        if (m->masks) memcpy(f->masks + d->offset, m->masks + s->offset, s->numel * sizeof(float));
        d->prunable = s->prunable;
        d->nm_n = s->nm_n;
        d->nm_m = s->nm_m;
    }
    for (int i = 0, j = 0; !st && i < m->n_layers; i++) {
        if (into[i] >= 0) continue;
        const rf_layer *L = &m->layers[i];
        memcpy(f->buffers + f->layers[j].buf_offset, m->buffers + L->buf_offset, L->buf_numel * sizeof(float));
        j++;
    }
    for (int i = 0; !st && i < m->n_layers; i++) {
        if (into[i] < 0) continue;
        const rf_layer *B = &m->layers[i], *P = &m->layers[into[i]];
        const rf_param *w = param_of(m, into[i], RF_P_WEIGHT), *b = param_of(m, into[i], RF_P_BIAS);
        const rf_param *g = param_of(m, i, RF_P_NORM), *be = g + 1;
        char nm[RF_NAME_MAX + 8];
        snprintf(nm, sizeof nm, "%s.weight", P->name);
        const rf_param *fw = rf_model_param(f, nm);
        snprintf(nm, sizeof nm, "%s.bias", P->name);
        const rf_param *fb = rf_model_param(f, nm);
        const int C = B->in.d[0];
        if (!w || !fw || !fb || w->shape[0] != C)
            { st = rf_error(ctx, RF_ERR_INTERNAL, "fold: %s into %s: tensors not found", B->name, P->name); break; }
        const float *mu = m->buffers + B->buf_offset, *var = mu + C;
        const size_t row = w->numel / (size_t)C;
        for (int c = 0; c < C; c++) {
            double a = (double)m->params[g->offset + c] / sqrt((double)var[c] + (double)B->fp[0]);
            double bias = b ? (double)m->params[b->offset + c] : 0.0;
            for (size_t k = 0; k < row; k++)
                f->params[fw->offset + (size_t)c * row + k] = (float)(a * m->params[w->offset + (size_t)c * row + k]);
            f->params[fb->offset + c] = (float)(a * (bias - (double)mu[c]) + (double)m->params[be->offset + c]);
            if (f->masks) f->masks[fb->offset + c] = 1.0f;
        }
    }
    rf_free(into);
    if (st) { rf_model_free(f); return st; }
    f->dropout_rng = m->dropout_rng;
    if (n_folded) *n_folded = nf;
    *out = f;
    return RF_OK;
}
