/* Layer collapse over the model's DAG (Tanaka et al. 2020, Sec. 4: a layer
 * is collapsed when no signal can cross it, which makes the net untrainable).
 *
 * Liveness is tracked per unit: an image's channels, a token sequence's
 * features, a flat vector's features. Two passes over the layers in spec
 * order (a topological order):
 *  - forward, from the input (every input unit live): which units of each
 *    layer's output can carry a signal from the input;
 *  - backward, from the logits (every output unit used): which units reach
 *    the output.
 * Each op says how its units connect (rf_nn_op.conn): element-wise layers,
 * pooling and batch norm per unit; linear and conv through their kept
 * weights; flatten spreads a channel over its features; add joins its
 * inputs unit by unit (option A shifts the shortcut's channels); concat
 * places them side by side. Any other layer (attention, transformer, patch
 * embedding, layer norm) makes all its units live and used, which keeps the
 * check conservative: it never reports a false collapse. Biases are not a
 * signal from the input (a dead channel through batch norm is a constant).
 *
 * A layer with a prunable weight is collapsed when one of its prunable
 * tensors keeps nothing, or, for linear and conv, when no kept weight joins
 * a live input unit to a used output unit. */
#include "nn/layers.h"

#include <string.h>

typedef unsigned char u8;

static int units_of(rf_shape3 s, int kind) { return kind == RF_NN_TOKENS ? s.d[1] : s.d[0]; }

const rf_param *rf_nn_product_weight(const rf_model *m, const rf_layer *L, int in_units, int out_units) {
    for (int t = L->first_param; t < L->first_param + L->n_params; t++) {
        const rf_param *p = &m->ptensors[t];
        if (p->role != RF_P_WEIGHT || p->ndim < 2) continue;
        return p->shape[0] == out_units && p->shape[1] == in_units ? p : NULL;
    }
    return NULL;
}

/* Whether W[o, i, ...] keeps anything (k trailing elements). */
static int kept(const float *w, int I, size_t k, int o, int i) {
    const float *e = w + ((size_t)o * (size_t)I + (size_t)i) * k;
    for (size_t q = 0; q < k; q++)
        if (e[q] != 0.0f) return 1;
    return 0;
}

typedef struct net {
    const rf_model *m;
    const float *keep;
    u8 **fwd, **bwd;   /* per layer output: live / used units */
    u8 *in_live;       /* the model input: all live */
    int *units;
} net;

static int in_kind(const net *g, const rf_layer *L, int k) {
    int src = L->inputs[k];
    return src >= 0 ? g->m->layers[src].ip[7] : g->m->input_kind;
}

static int in_units(const net *g, const rf_layer *L, int k) {
    int src = L->inputs[k];
    return src >= 0 ? g->units[src] : units_of(g->m->input, g->m->input_kind);
}

static rf_shape3 in_shape(const net *g, const rf_layer *L, int k) {
    int src = L->inputs[k];
    return src >= 0 ? g->m->layers[src].out : g->m->input;
}

/* Channel offset of input k inside an add's output (option A), or 0. */
static int sum_front(const net *g, const rf_layer *L, int k) {
    int stride, front;
    rf_shape3 s = in_shape(g, L, k);
    if (s.d[0] == L->out.d[0] || !rf_nn_add_shortcut(L, s, &stride, &front)) return 0;
    return front;
}

static void forward_layer(net *g, int li) {
    const rf_model *m = g->m;
    const rf_layer *L = &m->layers[li];
    u8 *out = g->fwd[li];
    const int U = g->units[li];
    const u8 *in = L->inputs[0] >= 0 ? g->fwd[L->inputs[0]] : g->in_live;
    const int IU = in_units(g, L, 0);
    const rf_param *w;
    switch (rf_nn_op_get(L->type)->conn) {
    case RF_NN_CONN_PASS:
        if (IU != U) break;
        memcpy(out, in, (size_t)U);
        return;
    case RF_NN_CONN_PRODUCT:
        if (!(w = rf_nn_product_weight(m, L, IU, U))) break;
        for (int o = 0; o < U; o++) {
            out[o] = 0;
            for (int i = 0; i < IU && !out[o]; i++)
                out[o] = in[i] && kept(g->keep + w->offset, IU, w->numel / ((size_t)U * IU), o, i);
        }
        return;
    case RF_NN_CONN_FLATTEN: {
        int per = U / IU, tok = in_kind(g, L, 0) == RF_NN_TOKENS;
        if ((size_t)U != L->in_size) break;
        for (int f = 0; f < U; f++) out[f] = tok ? in[f % IU] : in[f / per];
        return;
    }
    case RF_NN_CONN_SUM:
        memset(out, 0, (size_t)U);
        for (int k = 0; k < L->n_inputs; k++) {
            const u8 *x = L->inputs[k] >= 0 ? g->fwd[L->inputs[k]] : g->in_live;
            int front = sum_front(g, L, k), n = in_units(g, L, k);
            for (int u = 0; u < n && u + front < U; u++) out[u + front] |= x[u];
        }
        return;
    case RF_NN_CONN_CONCAT: {
        int at = 0;
        for (int k = 0; k < L->n_inputs; k++) {
            const u8 *x = L->inputs[k] >= 0 ? g->fwd[L->inputs[k]] : g->in_live;
            int n = in_units(g, L, k);
            if (at + n > U) break;
            memcpy(out + at, x, (size_t)n);
            at += n;
        }
        if (at == U) return;
        break;
    }
    default:
        break;
    }
    memset(out, 1, (size_t)U);   /* not followed: everything live */
}

/* Adds layer li's used units into its inputs' used units. */
static void backward_layer(net *g, int li) {
    const rf_model *m = g->m;
    const rf_layer *L = &m->layers[li];
    const u8 *out = g->bwd[li];
    const int U = g->units[li];
    int conn = rf_nn_op_get(L->type)->conn, at = 0;
    for (int k = 0; k < L->n_inputs; k++) {
        int src = L->inputs[k];
        if (src < 0) continue;
        u8 *in = g->bwd[src];
        const int IU = g->units[src];
        const rf_param *w;
        if (conn == RF_NN_CONN_PASS && IU == U) {
            for (int u = 0; u < U; u++) in[u] |= out[u];
        } else if (conn == RF_NN_CONN_PRODUCT && (w = rf_nn_product_weight(m, L, IU, U))) {
            for (int i = 0; i < IU; i++)
                for (int o = 0; o < U && !in[i]; o++)
                    in[i] = out[o] && kept(g->keep + w->offset, IU, w->numel / ((size_t)U * IU), o, i);
        } else if (conn == RF_NN_CONN_FLATTEN && (size_t)U == L->in_size) {
            int per = U / IU, tok = in_kind(g, L, k) == RF_NN_TOKENS;
            for (int f = 0; f < U; f++) in[tok ? f % IU : f / per] |= out[f];
        } else if (conn == RF_NN_CONN_SUM) {
            int front = sum_front(g, L, k);
            for (int u = 0; u < IU && u + front < U; u++) in[u] |= out[u + front];
        } else if (conn == RF_NN_CONN_CONCAT && at + IU <= U) {
            for (int u = 0; u < IU; u++) in[u] |= out[at + u];
            at += IU;
        } else {
            memset(in, 1, (size_t)IU);
        }
    }
}

/* Whether a kept weight of product layer li joins a live input unit to a
 * used output unit. */
static int on_path(const net *g, int li) {
    const rf_layer *L = &g->m->layers[li];
    const int U = g->units[li], IU = in_units(g, L, 0);
    const rf_param *w = rf_nn_product_weight(g->m, L, IU, U);
    if (!w) return 1;
    const u8 *in = L->inputs[0] >= 0 ? g->fwd[L->inputs[0]] : g->in_live;
    size_t k = w->numel / ((size_t)U * IU);
    for (int o = 0; o < U; o++) {
        if (!g->bwd[li][o]) continue;
        for (int i = 0; i < IU; i++)
            if (in[i] && kept(g->keep + w->offset, IU, k, o, i)) return 1;
    }
    return 0;
}

rf_status rf_model_collapsed(rf_ctx *ctx, const rf_model *m, const float *keep, unsigned char *collapsed) {
    const int n = m->n_layers;
    memset(collapsed, 0, (size_t)n);
    net g = {m, keep, rf_calloc((size_t)n, sizeof(u8 *)), rf_calloc((size_t)n, sizeof(u8 *)), NULL,
             rf_calloc((size_t)n, sizeof(int))};
    int in_u = units_of(m->input, m->input_kind);
    g.in_live = rf_malloc((size_t)in_u);
    rf_status st = g.fwd && g.bwd && g.units && g.in_live ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "collapse check");
    for (int i = 0; i < n && !st; i++) {
        g.units[i] = units_of(m->layers[i].out, m->layers[i].ip[7]);
        g.fwd[i] = rf_malloc((size_t)g.units[i]);
        g.bwd[i] = rf_calloc((size_t)g.units[i], 1);
        if (!g.fwd[i] || !g.bwd[i]) st = rf_error(ctx, RF_ERR_NOMEM, "collapse check");
    }
    if (!st) {
        memset(g.in_live, 1, (size_t)in_u);
        for (int i = 0; i < n; i++) forward_layer(&g, i);
        memset(g.bwd[n - 1], 1, (size_t)g.units[n - 1]);
        for (int i = n - 1; i >= 0; i--) backward_layer(&g, i);
        for (int t = 0; t < m->n_ptensors; t++) {
            const rf_param *p = &m->ptensors[t];
            if (!p->prunable || p->layer < 0 || p->layer >= n) continue;
            size_t e = 0;
            while (e < p->numel && keep[p->offset + e] == 0.0f) e++;
            if (e == p->numel) collapsed[p->layer] = 1;
            else if (rf_nn_op_get(m->layers[p->layer].type)->conn == RF_NN_CONN_PRODUCT && !on_path(&g, p->layer))
                collapsed[p->layer] = 1;
        }
    }
    for (int i = 0; i < n; i++) {
        if (g.fwd) rf_free(g.fwd[i]);
        if (g.bwd) rf_free(g.bwd[i]);
    }
    rf_free(g.fwd); rf_free(g.bwd); rf_free(g.units); rf_free(g.in_live);
    return st;
}
