/* Channel groups of a model's DAG and the physically smaller model that
 * structured pruning leaves (nn.h, "channel groups and slicing").
 *
 * The dependency analysis is the idea of Torch-Pruning's dependency graph
 * (Fang et al. 2023, "DepGraph"): removing output channel c of a conv also
 * removes input channel c of every layer that reads it, channel c of the
 * batch norm after it, and, through an add, channel c of every other input
 * of that add and of everything those feed. Here each output unit of each
 * layer is a node; nodes that must go together are joined (union-find) by
 * the op's unit connectivity (rf_nn_op.conn, the same trait the collapse
 * check follows):
 *   PASS     out u ~ in u (activations, batch norm, pooling, GAP, dropout)
 *   FLATTEN  out f ~ in f / (H·W) (a channel's features), f % D for tokens
 *   SUM      out u ~ in_k (u − front_k) for every input k; an option-A
 *            shortcut covers units front .. front + C_k − 1 only, so the
 *            zero-padded units are joined to the branch alone
 *   CONCAT   out (at_k + u) ~ in_k u
 *   PRODUCT  out o is a new unit, made by row o of the weight: a "source"
 * Any other op (layer norm, attention, transformer blocks, patch embedding)
 * pins the units it reads and makes: the slicer does not narrow them. The
 * logits and the model input are pinned too. A group is a class of joined
 * nodes that holds a source and no pin.
 *
 * Slicing keeps the order of the surviving units, so an option-A shortcut's
 * surviving channels stay contiguous; the add's "front" becomes the number
 * of surviving units before the old front. */
#include "nn/layers.h"

#include <stdio.h>
#include <string.h>

enum { PIN_NONE = -1, PIN_LOGITS = -2, PIN_WEIGHT = -3, PIN_INPUT = -4 };

static int units_of(rf_shape3 s, int kind) { return kind == RF_NN_TOKENS ? s.d[1] : s.d[0]; }

static int layer_units(const rf_model *m, int i) { return units_of(m->layers[i].out, m->layers[i].ip[7]); }

const char *rf_layer_type_name(int type) {
    const rf_nn_op *op = rf_nn_op_get(type);
    return op ? op->name : "?";
}

int rf_layer_units(const rf_layer *L, int *image) {
    if (image) *image = L->ip[7] == RF_NN_IMAGE;
    return units_of(L->out, L->ip[7]);
}

static int input_units(const rf_model *m, const rf_layer *L, int k) {
    int src = L->inputs[k];
    return src >= 0 ? layer_units(m, src) : units_of(m->input, m->input_kind);
}


/* ---- units inside a layer -------------------------------------------------------
 * One table, by layer type: the spec key of the count, its rf_layer.ip
 * slot, and the suffixes of the tensors whose rows (and bias) make a unit
 * and whose columns read it. */
typedef struct inner_desc { const char *key; int ip; const char *rows, *bias, *cols; } inner_desc;
static const inner_desc inner_units[RF_L_TYPE_COUNT_] = {
    [RF_L_TRANSFORMER] = {"mlp", 1, "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight"},
};

static const rf_param *param_suffix(const rf_model *m, const rf_layer *L, const char *suffix) {
    char name[RF_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.%s", L->name, suffix);
    return rf_model_param(m, name);
}

int rf_layer_inner(const rf_model *m, int li, const rf_param **rows, const rf_param **bias, const rf_param **cols) {
    const rf_layer *L = &m->layers[li];
    const inner_desc *d = L->type > 0 && L->type < RF_L_TYPE_COUNT_ ? &inner_units[L->type] : NULL;
    const rf_param *r = d && d->key ? param_suffix(m, L, d->rows) : NULL, *b = r ? param_suffix(m, L, d->bias) : NULL;
    const rf_param *c = r ? param_suffix(m, L, d->cols) : NULL;
    int n = r && c && r->ndim == 2 && c->ndim == 2 && r->shape[0] == L->ip[d->ip] && c->shape[1] == L->ip[d->ip] ? L->ip[d->ip] : 0;
    if (rows) *rows = n ? r : NULL;
    if (bias) *bias = n && b && b->numel == (size_t)n ? b : NULL;
    if (cols) *cols = n ? c : NULL;
    return n;
}

/* ---- union-find over units ------------------------------------------------- */
typedef struct uf {
    int *parent, *pin;     /* pin of a root: PIN_NONE or the reason */
    unsigned char *src;    /* the class holds a product's output unit */
} uf;

static int find(uf *u, int a) {
    while (u->parent[a] != a) a = u->parent[a] = u->parent[u->parent[a]];
    return a;
}

static void join(uf *u, int a, int b) {
    a = find(u, a);
    b = find(u, b);
    if (a == b) return;
    if (b < a) { int t = a; a = b; b = t; }
    u->parent[b] = a;
    if (u->pin[a] == PIN_NONE) u->pin[a] = u->pin[b];
    u->src[a] |= u->src[b];
}

static void pin(uf *u, int a, int why) {
    a = find(u, a);
    if (u->pin[a] == PIN_NONE) u->pin[a] = why;
}

/* Option-A front of input k of sum layer L (0 for a same-shaped input). */
static int sum_front(const rf_model *m, const rf_layer *L, int k) {
    int src = L->inputs[k], stride, front;
    rf_shape3 s = src >= 0 ? m->layers[src].out : m->input;
    if (s.d[0] == L->out.d[0] || !rf_nn_add_shortcut(L, s, &stride, &front)) return 0;
    return front;
}

rf_status rf_model_chan_groups(rf_ctx *ctx, const rf_model *m, rf_chan_groups **out) {
    *out = NULL;
    const int n = m->n_layers, in_u = units_of(m->input, m->input_kind);
    rf_chan_groups *g = rf_calloc(1, sizeof *g);
    if (!g) return rf_error(ctx, RF_ERR_NOMEM, "channel groups: out of memory");
    g->n_layers = n;
    g->off = rf_calloc((size_t)n + 1, sizeof *g->off);
    g->inner_off = rf_calloc((size_t)n + 1, sizeof *g->inner_off);
    g->pinned_by = rf_malloc((size_t)(n ? n : 1) * sizeof *g->pinned_by);
    for (int i = 0; g->inner_off && i < n; i++) g->inner_off[i + 1] = g->inner_off[i] + (size_t)rf_layer_inner(m, i, NULL, NULL, NULL);
    g->inner_unit = g->inner_off ? rf_malloc((g->inner_off[n] ? g->inner_off[n] : 1) * sizeof *g->inner_unit) : NULL;
    if (!g->off || !g->pinned_by || !g->inner_off || !g->inner_unit) { rf_chan_groups_free(g); return rf_error(ctx, RF_ERR_NOMEM, "channel groups: out of memory"); }
    for (int i = 0; i < n; i++) g->off[i + 1] = g->off[i] + (size_t)layer_units(m, i);
    const size_t total = g->off[n], nodes = total + (size_t)in_u;
    if (nodes > (size_t)1 << 30) { rf_chan_groups_free(g); return rf_error(ctx, RF_ERR_LIMIT, "channel groups: too many units"); }
    uf u = {rf_malloc(nodes * sizeof(int)), rf_malloc(nodes * sizeof(int)), rf_calloc(nodes, 1)};
    g->unit = rf_malloc((total ? total : 1) * sizeof *g->unit);
    int *gid = rf_malloc(nodes * sizeof(int));
    g->owner = rf_malloc((total + g->inner_off[n] + 1) * sizeof *g->owner);
    rf_status st = u.parent && u.pin && u.src && g->unit && gid && g->owner ? RF_OK
                                                                           : rf_error(ctx, RF_ERR_NOMEM, "channel groups: out of memory");
    /* node of unit x of layer i's output (i = -1: the model input) */
#define NODE(i, x) ((i) >= 0 ? (int)(g->off[(i)] + (size_t)(x)) : (int)(total + (size_t)(x)))
    for (size_t a = 0; !st && a < nodes; a++) { u.parent[a] = (int)a; u.pin[a] = PIN_NONE; gid[a] = -1; }
    for (int x = 0; !st && x < in_u; x++) pin(&u, NODE(-1, x), PIN_INPUT);
    for (int i = 0; !st && i < n; i++) {
        const rf_layer *L = &m->layers[i];
        const int U = layer_units(m, i), IU = input_units(m, L, 0), src0 = L->inputs[0];
        int followed = 1;
        switch (rf_nn_op_get(L->type)->conn) {
        case RF_NN_CONN_PRODUCT:
            if (!rf_nn_product_weight(m, L, IU, U)) { followed = 0; break; }
            for (int o = 0; o < U; o++) u.src[NODE(i, o)] = 1;
            break;
        case RF_NN_CONN_PASS:
            if (IU != U) { followed = 0; break; }
            for (int x = 0; x < U; x++) join(&u, NODE(i, x), NODE(src0, x));
            break;
        case RF_NN_CONN_FLATTEN: {
            int tok = (src0 >= 0 ? m->layers[src0].ip[7] : m->input_kind) == RF_NN_TOKENS;
            if ((size_t)U != L->in_size || IU <= 0) { followed = 0; break; }
            for (int f = 0; f < U; f++) join(&u, NODE(i, f), NODE(src0, tok ? f % IU : f / (U / IU)));
            break;
        }
        case RF_NN_CONN_SUM:
            for (int k = 0; k < L->n_inputs; k++) {
                int front = sum_front(m, L, k), nk = input_units(m, L, k);
                for (int x = 0; x < nk && x + front < U; x++) join(&u, NODE(i, x + front), NODE(L->inputs[k], x));
            }
            break;
        case RF_NN_CONN_CONCAT: {
            int at = 0;
            for (int k = 0; k < L->n_inputs; k++) {
                int nk = input_units(m, L, k);
                for (int x = 0; x < nk && at + x < U; x++) join(&u, NODE(i, at + x), NODE(L->inputs[k], x));
                at += nk;
            }
            if (at != U) followed = 0;
            break;
        }
        default:
            followed = 0;
        }
        if (!followed) {
            int why = rf_nn_op_get(L->type)->conn == RF_NN_CONN_PRODUCT ? PIN_WEIGHT : i;
            for (int k = 0; k < L->n_inputs; k++)
                for (int x = 0; x < input_units(m, L, k); x++) pin(&u, NODE(L->inputs[k], x), why);
            for (int x = 0; x < U; x++) pin(&u, NODE(i, x), why);
        }
    }
    if (!st && n > 0)
        for (int x = 0; x < layer_units(m, n - 1); x++) pin(&u, NODE(n - 1, x), PIN_LOGITS);
    /* groups in order of their first source: the owner is the first layer
     * whose rows make the group */
    int ng = 0;
    for (int i = 0; !st && i < n; i++) {
        g->pinned_by[i] = PIN_NONE;
        for (int x = 0; x < layer_units(m, i); x++) {
            int a = NODE(i, x), r = find(&u, a);
            int removable = u.src[r] && u.pin[r] == PIN_NONE;
            if (removable && gid[r] < 0 && u.src[a]) { gid[r] = ng; g->owner[ng++] = i; }
            g->unit[g->off[i] + (size_t)x] = removable ? gid[r] : -1;
            int product = u.src[a] || (rf_layer_traits(m->layers[i].type) & RF_LT_PRODUCT);
            if (product && !removable && g->pinned_by[i] == PIN_NONE) g->pinned_by[i] = u.pin[r] == PIN_NONE ? PIN_WEIGHT : u.pin[r];
        }
        for (size_t x = g->inner_off[i]; x < g->inner_off[i + 1]; x++) {   /* its own groups */
            g->inner_unit[x] = ng;
            g->owner[ng++] = i;
        }
    }
#undef NODE
    g->n_groups = ng;
    rf_free(u.parent); rf_free(u.pin); rf_free(u.src); rf_free(gid);
    if (st) { rf_chan_groups_free(g); return st; }
    *out = g;
    return RF_OK;
}

void rf_chan_groups_free(rf_chan_groups *g) {
    if (!g) return;
    rf_free(g->off); rf_free(g->unit); rf_free(g->owner); rf_free(g->pinned_by);
    rf_free(g->inner_off); rf_free(g->inner_unit);
    rf_free(g);
}

void rf_chan_groups_why(const rf_model *m, const rf_chan_groups *g, int li, char *buf, size_t n) {
    int p = li >= 0 && li < g->n_layers ? g->pinned_by[li] : PIN_NONE;
    if (p == PIN_NONE) snprintf(buf, n, "%s", "");
    else if (p == PIN_LOGITS) snprintf(buf, n, "its outputs are the model's logits");
    else if (p == PIN_INPUT) snprintf(buf, n, "its outputs are added to the model input");
    else if (p == PIN_WEIGHT) snprintf(buf, n, "its weight's rows are not its output units");
    else if (p == li) snprintf(buf, n, "the slicer does not narrow %s layers", rf_nn_op_get(m->layers[li].type)->name);
    else snprintf(buf, n, "its outputs reach layer '%s' (%s), which cannot drop units", m->layers[p].name,
                  rf_nn_op_get(m->layers[p].type)->name);
}

/* ---- dead units and slicing ------------------------------------------------- */

static int masked(const rf_model *m, const rf_param *p, size_t from, size_t count) {
    for (size_t k = 0; k < count; k++)
        if (m->masks[p->offset + from + k] != 0.0f) return 0;
    return 1;
}

void rf_chan_groups_dead(const rf_model *m, const rf_chan_groups *g, unsigned char *dead) {
    memset(dead, m->masks ? 1 : 0, (size_t)g->n_groups);
    if (!m->masks) return;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        const int U = layer_units(m, i);
        const rf_param *w = rf_nn_op_get(L->type)->conn == RF_NN_CONN_PRODUCT ? rf_nn_product_weight(m, L, input_units(m, L, 0), U) : NULL;
        for (int x = 0; x < U; x++) {
            int grp = g->unit[g->off[i] + (size_t)x];
            if (grp < 0 || !dead[grp]) continue;
            int ok = 1;
            if (w) ok = masked(m, w, (size_t)x * (w->numel / (size_t)U), w->numel / (size_t)U);
            for (int t = L->first_param; ok && t < L->first_param + L->n_params; t++) {
                const rf_param *p = &m->ptensors[t];
                if (p != w && p->numel == (size_t)U) ok = masked(m, p, (size_t)x, 1);
            }
            if (!ok) dead[grp] = 0;
        }
        const rf_param *r, *b;
        int ni = rf_layer_inner(m, i, &r, &b, NULL);
        for (int x = 0; x < ni; x++) {
            int grp = g->inner_unit[g->inner_off[i] + (size_t)x];
            size_t row = r->numel / (size_t)ni;
            if (dead[grp] && (!masked(m, r, (size_t)x * row, row) || (b && !masked(m, b, (size_t)x, 1)))) dead[grp] = 0;
        }
    }
}

typedef struct slicer {
    const rf_model *m;
    const rf_chan_groups *g;
    const unsigned char *dead;
    int **kept;      /* per layer: the surviving output units, in order */
    int *n_kept;
    int **ikept;     /* per layer: the surviving inner units (rf_layer_inner) */
    int *n_ikept;
} slicer;

/* The surviving units of input k of layer L (NULL, *n = all: the model input). */
static const int *kept_in(const slicer *s, const rf_layer *L, int k, int *n) {
    int src = L->inputs[k];
    if (src < 0) { *n = units_of(s->m->input, s->m->input_kind); return NULL; }
    *n = s->n_kept[src];
    return s->kept[src];
}

static rf_status sliced_spec(rf_ctx *ctx, const slicer *s, char **out) {
    const rf_model *m = s->m;
    *out = NULL;
    cJSON *root = cJSON_Parse(m->spec_json);
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    int ok = root && cJSON_GetArraySize(layers) == m->n_layers, i = 0;
    for (cJSON *e = layers ? layers->child : NULL; ok && e; e = e->next, i++) {
        const rf_layer *L = &m->layers[i];
        const rf_nn_op *op = rf_nn_op_get(L->type);
        cJSON_DeleteItemFromObjectCaseSensitive(e, "name");
        cJSON_DeleteItemFromObjectCaseSensitive(e, "inputs");
        cJSON_DeleteItemFromObjectCaseSensitive(e, "from");
        ok = cJSON_AddStringToObject(e, "name", L->name) != NULL;
        int n_list = L->type == RF_L_RESIDUAL ? 1 : L->n_inputs;   /* a residual's second input stays "from" */
        cJSON *ins = ok ? cJSON_AddArrayToObject(e, "inputs") : NULL;
        for (int k = 0; ins && k < n_list; k++)
            ok = cJSON_AddItemToArray(ins, cJSON_CreateString(L->inputs[k] >= 0 ? m->layers[L->inputs[k]].name : "input"));
        ok = ok && ins;
        if (ok && L->type == RF_L_RESIDUAL) ok = cJSON_AddStringToObject(e, "from", L->inputs[1] >= 0 ? m->layers[L->inputs[1]].name : "input") != NULL;
        if (ok && op->conn == RF_NN_CONN_PRODUCT && s->n_kept[i] != layer_units(m, i)) {
            cJSON_DeleteItemFromObjectCaseSensitive(e, "out");
            ok = cJSON_AddNumberToObject(e, "out", s->n_kept[i]) != NULL;
        }
        if (ok && rf_layer_inner(m, i, NULL, NULL, NULL) != s->n_ikept[i]) {
            cJSON_DeleteItemFromObjectCaseSensitive(e, inner_units[L->type].key);
            ok = cJSON_AddNumberToObject(e, inner_units[L->type].key, s->n_ikept[i]) != NULL;
        }
        if (ok && cJSON_GetObjectItemCaseSensitive(e, "in")) {   /* a linear's checked input size */
            int n_in;
            kept_in(s, L, 0, &n_in);
            cJSON_DeleteItemFromObjectCaseSensitive(e, "in");
            ok = cJSON_AddNumberToObject(e, "in", n_in) != NULL;
        }
        if (ok && op->conn == RF_NN_CONN_SUM && L->type == RF_L_ADD && L->ip[0] == 1) {
            /* option A: the new front is the number of survivors before the old one */
            int front = -1;
            for (int k = 1; k < L->n_inputs && ok; k++) {
                int f = sum_front(m, L, k), nf = 0;
                if (input_units(m, L, k) == layer_units(m, i)) continue;
                for (int q = 0; q < s->n_kept[i]; q++) nf += s->kept[i][q] < f;
                if (front >= 0 && nf != front)
                    ok = (rf_error(ctx, RF_ERR_INVALID, "slice: add '%s': its option-A inputs would need different fronts", L->name), 0);
                front = nf;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(e, "front");
            if (ok && front >= 0) ok = cJSON_AddNumberToObject(e, "front", front) != NULL;
        }
    }
    char *txt = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (txt) *out = rf_strdup(txt);
    cJSON_free(txt);
    if (*out) return RF_OK;
    return ctx->status ? ctx->status : rf_error(ctx, RF_ERR_NOMEM, "slice: out of memory");
}

/* dst = src[rows ko][cols ki][inner] (ko / ki NULL: all). */
static void gather(float *dst, const float *src, const int *ko, int no, const int *ki, int ni, int cols, size_t inner) {
    for (int o = 0; o < no; o++) {
        const float *row = src + (size_t)(ko ? ko[o] : o) * (size_t)cols * inner;
        for (int c = 0; c < ni; c++) {
            memcpy(dst, row + (size_t)(ki ? ki[c] : c) * inner, inner * sizeof(float));
            dst += inner;
        }
    }
}

/* Copies old tensor p of layer li into new tensor q of the sliced model. */
static rf_status copy_param(rf_ctx *ctx, const slicer *s, const rf_param *p, rf_model *f, const rf_param *q) {
    const rf_model *m = s->m;
    const rf_layer *L = &m->layers[p->layer];
    const int U = layer_units(m, p->layer);
    const int *ko = s->kept[p->layer];
    const int no = s->n_kept[p->layer];
    int ni;
    const int *ki = kept_in(s, L, 0, &ni);
    const float *blocks[2] = {m->params, m->masks};
    float *dsts[2] = {f->params, f->masks};
    const int is_w = rf_nn_op_get(L->type)->conn == RF_NN_CONN_PRODUCT && p == rf_nn_product_weight(m, L, input_units(m, L, 0), U);
    const rf_param *ir, *ib, *ic;
    const int nu = rf_layer_inner(m, p->layer, &ir, &ib, &ic), nik = s->n_ikept[p->layer];
    const int *ik = s->ikept[p->layer];
    for (int b = 0; b < 2; b++) {
        if (!blocks[b] || !dsts[b]) continue;
        const float *src = blocks[b] + p->offset;
        float *dst = dsts[b] + q->offset;
        if (nu && nik != nu && (p == ir || p == ib))
            gather(dst, src, ik, nik, NULL, (int)(p->numel / (size_t)nu), (int)(p->numel / (size_t)nu), 1);
        else if (nu && nik != nu && p == ic)
            gather(dst, src, NULL, (int)ic->shape[0], ik, nik, nu, 1);
        else if (q->numel == p->numel && (is_w ? no == U && ki == NULL : no == U)) memcpy(dst, src, p->numel * sizeof(float));
        else if (is_w) gather(dst, src, ko, no, ki, ni, input_units(m, L, 0), p->numel / ((size_t)U * (size_t)input_units(m, L, 0)));
        else if (p->numel == (size_t)U && q->numel == (size_t)no) gather(dst, src, NULL, 1, ko, no, U, 1);
        else if (q->numel == p->numel) memcpy(dst, src, p->numel * sizeof(float));
        else return rf_error(ctx, RF_ERR_INTERNAL, "slice: tensor '%s' (%zu -> %zu values) is not sliced by units", p->name, p->numel, q->numel);
    }
    return RF_OK;
}

rf_status rf_model_slice(rf_ctx *ctx, const rf_model *m, rf_model **out, long *removed) {
    *out = NULL;
    if (removed) *removed = 0;
    rf_chan_groups *g;
    RF_TRY(rf_model_chan_groups(ctx, m, &g));
    slicer s = {m, g, rf_malloc((size_t)(g->n_groups ? g->n_groups : 1)), rf_calloc((size_t)m->n_layers, sizeof(int *)),
                rf_calloc((size_t)m->n_layers, sizeof(int)), rf_calloc((size_t)m->n_layers, sizeof(int *)),
                rf_calloc((size_t)m->n_layers, sizeof(int))};
    rf_status st = s.dead && s.kept && s.n_kept && s.ikept && s.n_ikept ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "slice: out of memory");
    long gone = 0;
    if (!st) rf_chan_groups_dead(m, g, (unsigned char *)s.dead);
    for (int i = 0; !st && i < m->n_layers; i++) {
        const int U = layer_units(m, i);
        if (!(s.kept[i] = rf_malloc((size_t)U * sizeof(int)))) { st = rf_error(ctx, RF_ERR_NOMEM, "slice: out of memory"); break; }
        for (int x = 0; x < U; x++) {
            int grp = g->unit[g->off[i] + (size_t)x];
            if (grp < 0 || !s.dead[grp]) s.kept[i][s.n_kept[i]++] = x;
        }
        if (s.n_kept[i] == 0) st = rf_error(ctx, RF_ERR_INVALID, "slice: layer '%s' would keep none of its %d units", m->layers[i].name, U);
        const int ni = rf_layer_inner(m, i, NULL, NULL, NULL);
        if (!st && !(s.ikept[i] = rf_malloc((size_t)(ni ? ni : 1) * sizeof(int)))) { st = rf_error(ctx, RF_ERR_NOMEM, "slice: out of memory"); break; }
        for (int x = 0; !st && x < ni; x++)
            if (!s.dead[g->inner_unit[g->inner_off[i] + (size_t)x]]) s.ikept[i][s.n_ikept[i]++] = x;
        if (!st && ni && !s.n_ikept[i]) st = rf_error(ctx, RF_ERR_INVALID, "slice: layer '%s' would keep none of its %d inner units", m->layers[i].name, ni);
        gone += ni - s.n_ikept[i];
        if (rf_nn_op_get(m->layers[i].type)->conn == RF_NN_CONN_PRODUCT) gone += U - s.n_kept[i];
    }
    char *spec = NULL;
    rf_model *f = NULL;
    if (!st) st = sliced_spec(ctx, &s, &spec);
    if (!st) st = rf_model_from_spec(ctx, spec, &f);
    if (!st && m->masks) st = rf_model_ensure_masks(ctx, f);
    for (int t = 0; !st && t < f->n_ptensors; t++) {
        rf_param *q = &f->ptensors[t];
        const rf_param *p = rf_model_param(m, q->name);
        if (!p) { st = rf_error(ctx, RF_ERR_INTERNAL, "slice: no tensor '%s' in the model", q->name); break; }
        st = copy_param(ctx, &s, p, f, q);
        q->prunable = p->prunable;
        q->nm_n = p->nm_n;
        q->nm_m = p->nm_m;
    }
    for (int i = 0; !st && i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i], *F = &f->layers[i];
        if (F->buf_numel == L->buf_numel) {
            memcpy(f->buffers + F->buf_offset, m->buffers + L->buf_offset, L->buf_numel * sizeof(float));
        } else if ((rf_layer_traits(L->type) & RF_LT_STATS) && L->buf_numel == 2 * (size_t)layer_units(m, i)) {
            const int U = layer_units(m, i);
            for (int h = 0; h < 2; h++)   /* running_mean, then running_var */
                gather(f->buffers + F->buf_offset + (size_t)h * (size_t)s.n_kept[i], m->buffers + L->buf_offset + (size_t)h * (size_t)U,
                       NULL, 1, s.kept[i], s.n_kept[i], U, 1);
        } else {
            st = rf_error(ctx, RF_ERR_INTERNAL, "slice: buffers of layer '%s' are not per unit", L->name);
        }
    }
    for (int i = 0; i < m->n_layers && s.kept; i++) rf_free(s.kept[i]);
    for (int i = 0; i < m->n_layers && s.ikept; i++) rf_free(s.ikept[i]);
    rf_free(s.kept); rf_free(s.n_kept); rf_free(s.ikept); rf_free(s.n_ikept); rf_free((void *)s.dead); rf_free(spec);
    rf_chan_groups_free(g);
    if (st) { rf_model_free(f); return st; }
    f->dropout_rng = m->dropout_rng;
    if (removed) *removed = gone;
    *out = f;
    return RF_OK;
}

/* ---- network slimming's penalty ------------------------------------------------ */
rf_status rf_model_bn_l1(rf_ctx *ctx, rf_model *m, float lambda) {
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        if (!(rf_layer_traits(L->type) & RF_LT_STATS) || L->n_params < 1) continue;
        const rf_param *g = &m->ptensors[L->first_param];   /* γ, then β */
        for (size_t c = 0; c < g->numel; c++) {
            float v = m->params[g->offset + c];
            m->grads[g->offset + c] += v > 0.0f ? lambda : v < 0.0f ? -lambda : 0.0f;
        }
        n++;
    }
    return n ? RF_OK : rf_error(ctx, RF_ERR_INVALID, "bn_l1: the model has no batch norm to put the L1 penalty on");
}

/* ---- multiply-adds ------------------------------------------------------------ */
double rf_model_flops(const rf_model *m) {
    double macs = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        unsigned t = rf_layer_traits(L->type);
        if (!(t & (RF_LT_PRODUCT | RF_LT_PRODUCTS))) continue;
        for (int k = L->first_param; k < L->first_param + L->n_params; k++) {
            const rf_param *p = &m->ptensors[k];
            if (p->role != RF_P_WEIGHT || p->ndim < 2 || p->shape[0] <= 0) continue;
            macs += (double)p->numel * (double)rf_layer_product_rows(L, (int)(p->numel / (size_t)p->shape[0]));
            if (t & RF_LT_PRODUCT) break;   /* one product: its weight */
        }
        if (t & RF_LT_PRODUCTS) macs += 2.0 * L->in.d[0] * L->in.d[0] * L->in.d[1];   /* q·kᵀ and att·v */
    }
    return macs;
}
