/* Model construction from a JSON spec: key validation, shape inference and
 * the layout of the parameter, buffer, activation and saved-state blocks.
 *
 * Spec format (docs/nn.md):
 *   {"input": [C, H, W] | [T, D] | [N], "classes": K, "init": SCHEME,
 *    "layers": [{"type": "linear", "name": "fc1", "out": 300}, ...]}
 * A layer reads the previous layer's output unless it lists "inputs"
 * (names or indices of earlier layers, "input"/-1 for the model input): the
 * layers form a DAG whose spec order is a topological order.
 * Every error names where it is: "layers[3] linear: expects 784 inputs,
 * gets 400", "layers[2]: unknown layer type \"lineer\"", "spec: unknown key". */
#include "nn/layers.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const rf_nn_init_names[RF_NN_INIT_COUNT_] = {
    [RF_NN_INIT_KAIMING_NORMAL] = "kaiming_normal",
    [RF_NN_INIT_GLOROT_NORMAL] = "glorot_normal",
    [RF_NN_INIT_TRUNC_NORMAL] = "trunc_normal",
    [RF_NN_INIT_PYTORCH] = "pytorch",
};

rf_status rf_nn_err(rf_nn_builder *b, rf_status s, const char *fmt, ...) {
    char msg[RF_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (b->type_name && b->layer_name)
        return rf_error(b->ctx, s, "layers[%d] %s '%s': %s", b->index, b->type_name, b->layer_name, msg);
    if (b->type_name) return rf_error(b->ctx, s, "layers[%d] %s: %s", b->index, b->type_name, msg);
    return rf_error(b->ctx, s, "layers[%d]: %s", b->index, msg);
}

rf_status rf_nn_int(rf_nn_builder *b, const cJSON *j, const char *key, int dflt, int lo, int hi, int *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!it) { *v = dflt; return RF_OK; }
    if (cJSON_IsBool(it)) { *v = cJSON_IsTrue(it); }
    else if (!cJSON_IsNumber(it) || it->valuedouble != (double)(long long)it->valuedouble)
        return rf_nn_err(b, RF_ERR_SPEC, "\"%s\" must be an integer", key);
    else if (it->valuedouble < lo || it->valuedouble > hi)
        return rf_nn_err(b, RF_ERR_SPEC, "\"%s\" = %.0f out of range [%d, %d]", key, it->valuedouble, lo, hi);
    else *v = (int)it->valuedouble;
    if (*v < lo || *v > hi) return rf_nn_err(b, RF_ERR_SPEC, "\"%s\" = %d out of range [%d, %d]", key, *v, lo, hi);
    return RF_OK;
}

rf_status rf_nn_float(rf_nn_builder *b, const cJSON *j, const char *key, double dflt, double lo, double hi, float *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!it) { *v = (float)dflt; return RF_OK; }
    if (!cJSON_IsNumber(it)) return rf_nn_err(b, RF_ERR_SPEC, "\"%s\" must be a number", key);
    if (!(it->valuedouble >= lo && it->valuedouble <= hi))
        return rf_nn_err(b, RF_ERR_SPEC, "\"%s\" = %g out of range [%g, %g]", key, it->valuedouble, lo, hi);
    *v = (float)it->valuedouble;
    return RF_OK;
}

rf_status rf_nn_param(rf_nn_builder *b, rf_layer *L, const char *suffix, rf_param_role role,
                      int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (L->n_params >= RF_NN_MAX_LAYER_PARAMS) return rf_nn_err(b, RF_ERR_INTERNAL, "too many parameter tensors");
    if (b->n_pt == b->cap_pt) {
        int cap = b->cap_pt ? 2 * b->cap_pt : 32;
        rf_param *p = rf_realloc(b->pt, (size_t)cap * sizeof *p);
        if (!p) return rf_error(b->ctx, RF_ERR_NOMEM, "spec: out of memory");
        b->pt = p;
        b->cap_pt = cap;
    }
    rf_param *p = &b->pt[b->n_pt];
    memset(p, 0, sizeof *p);
    int n = suffix[0] == '/' ? snprintf(p->name, sizeof p->name, "%s", suffix + 1)
                             : snprintf(p->name, sizeof p->name, "%s.%s", L->name, suffix);
    if (n < 0 || n >= (int)sizeof p->name)
        return rf_nn_err(b, RF_ERR_SPEC, "parameter name \"%s.%s\" longer than %d characters", L->name, suffix,
                         RF_NAME_MAX - 1);
    int64_t d[4] = {d0, d1, d2, d3};
    p->layer = b->index;
    p->role = role;
    p->prunable = role == RF_P_WEIGHT && (rf_layer_traits(L->type) & RF_LT_PRUNABLE);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = d[i]; p->numel *= (size_t)d[i]; }
    if (p->numel > ((size_t)1 << 34)) return rf_nn_err(b, RF_ERR_LIMIT, "parameter %s too large", p->name);
    p->offset = b->n_params;
    b->n_params += p->numel;
    if (L->n_params == 0) L->first_param = b->n_pt;
    L->n_params++;
    b->n_pt++;
    return RF_OK;
}

static const char *kind_name(int k) {
    static const char *const names[] = {"an image", "a token sequence", "a flat vector"};
    return names[k];
}

rf_status rf_nn_need_kind(rf_nn_builder *b, const rf_layer *L, int kinds_mask) {
    if (kinds_mask & RF_NN_K(b->in_kind)) return RF_OK;
    char want[96] = "";
    for (int k = 0; k < 3; k++)
        if (kinds_mask & RF_NN_K(k)) {
            if (want[0]) strncat(want, " or ", sizeof want - strlen(want) - 1);
            strncat(want, kind_name(k), sizeof want - strlen(want) - 1);
        }
    return rf_nn_err(b, RF_ERR_SHAPE, "expects %s, gets %s %dx%dx%d%s", want, kind_name(b->in_kind), L->in.d[0],
                     L->in.d[1], L->in.d[2], b->in_kind == RF_NN_IMAGE ? " (add a flatten layer?)" : "");
}

rf_shape3 rf_nn_input_shape(const rf_nn_builder *b, const rf_layer *L, int k, rf_nn_kind *kind) {
    int src = L->inputs[k];
    if (kind) *kind = src >= 0 ? (rf_nn_kind)b->layers[src].ip[7] : b->input_kind;
    return src >= 0 ? b->layers[src].out : b->input;
}

const char *rf_nn_input_name(const rf_nn_builder *b, const rf_layer *L, int k) {
    return L->inputs[k] >= 0 ? b->layers[L->inputs[k]].name : "input";
}

int rf_nn_shortcut_a(rf_shape3 s, rf_shape3 o, int *stride, int *front) {
    if (s.d[0] > o.d[0] || s.d[1] < o.d[1] || s.d[2] < o.d[2]) return 0;
    /* x[:, :, ::st, ::st] keeps ceil(H / st) rows: the stride that gives o's size. */
    int st = (s.d[1] + o.d[1] - 1) / o.d[1];
    if ((s.d[1] + st - 1) / st != o.d[1] || (s.d[2] + st - 1) / st != o.d[2]) return 0;
    *stride = st;
    *front = (o.d[0] - s.d[0]) / 2;   /* half the zero channels before, as F.pad(x, (..., C/4, C/4)) */
    return 1;
}

/* ---- the spec ------------------------------------------------------------- */
static int key_in(const char *k, const char *const *keys) {
    for (; keys && *keys; keys++)
        if (strcmp(k, *keys) == 0) return 1;
    return 0;
}

static int init_from_name(const char *s) {
    for (int i = 0; i < RF_NN_INIT_COUNT_; i++)
        if (strcmp(s, rf_nn_init_names[i]) == 0) return i;
    return -1;
}

static const rf_nn_op *op_by_name(const char *s, int *type) {
    for (int t = 0; t < RF_L_TYPE_COUNT_; t++) {
        const rf_nn_op *op = rf_nn_op_get(t);
        if (op && strcmp(op->name, s) == 0) { *type = t; return op; }
    }
    return NULL;
}

static void known_types(char *buf, size_t n) {
    buf[0] = '\0';
    for (int t = 0; t < RF_L_TYPE_COUNT_; t++) {
        const rf_nn_op *op = rf_nn_op_get(t);
        if (!op) continue;
        if (buf[0]) strncat(buf, ", ", n - strlen(buf) - 1);
        strncat(buf, op->name, n - strlen(buf) - 1);
    }
}

static rf_status parse_input(rf_ctx *ctx, const cJSON *in, rf_shape3 *s, rf_nn_kind *kind) {
    s->d[0] = 1; s->d[1] = 28; s->d[2] = 28;
    *kind = RF_NN_IMAGE;
    if (!in) return RF_OK;
    int n = cJSON_GetArraySize(in);
    if (!cJSON_IsArray(in) || n < 1 || n > 3)
        return rf_error(ctx, RF_ERR_SPEC, "spec: \"input\" must be [C, H, W], [T, D] or [N]");
    int d[3] = {1, 1, 1};
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(in, i);
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > (1 << 24) ||
            v->valuedouble != (double)(int)v->valuedouble)
            return rf_error(ctx, RF_ERR_SPEC, "spec: input[%d] must be a positive integer", i);
        d[i] = (int)v->valuedouble;
    }
    s->d[0] = d[0]; s->d[1] = d[1]; s->d[2] = d[2];
    *kind = n == 3 ? RF_NN_IMAGE : n == 2 ? RF_NN_TOKENS : RF_NN_FLAT;
    return RF_OK;
}

/* Whether a layer at or after index `from` of the spec is named `name`. */
static int named_later(const cJSON *jl, int from, const char *name) {
    int i = 0;
    for (const cJSON *e = jl->child; e; e = e->next, i++) {
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (i >= from && cJSON_IsString(jn) && strcmp(jn->valuestring, name) == 0) return 1;
    }
    return 0;
}

/* One entry of "inputs": an earlier layer's name or index, or the model
 * input ("input" or -1). Inputs must come earlier, so `layers` is in
 * topological order and has no cycles. */
static rf_status resolve_input(rf_nn_builder *b, const cJSON *jl, const cJSON *v, int *out) {
    if (cJSON_IsString(v)) {
        if (strcmp(v->valuestring, "input") == 0) { *out = -1; return RF_OK; }
        for (int q = 0; q < b->index; q++)
            if (strcmp(b->layers[q].name, v->valuestring) == 0) { *out = q; return RF_OK; }
        if (named_later(jl, b->index, v->valuestring))
            return rf_nn_err(b, RF_ERR_SPEC, "input \"%s\" is not an earlier layer (a layer reads only layers listed before it)",
                             v->valuestring);
        return rf_nn_err(b, RF_ERR_SPEC, "input \"%s\": no layer of that name (\"input\" is the model input)",
                         v->valuestring);
    }
    if (cJSON_IsNumber(v) && v->valuedouble == (double)(int)v->valuedouble && v->valuedouble >= -1 &&
        v->valuedouble < b->index) {
        *out = (int)v->valuedouble;
        return RF_OK;
    }
    return rf_nn_err(b, RF_ERR_SPEC, "\"inputs\" entries must be names of earlier layers, \"input\", or indices in [-1, %d]",
                     b->index - 1);
}

static rf_status parse_inputs(rf_nn_builder *b, const cJSON *jl, const cJSON *j, const rf_nn_op *op, rf_layer *L) {
    const cJSON *ji = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    L->n_inputs = 1;
    L->inputs[0] = b->index - 1;   /* default: the previous layer (the model input for the first) */
    if (!ji) return RF_OK;
    int n = cJSON_IsArray(ji) ? cJSON_GetArraySize(ji) : 1;
    int most = op->max_inputs > 0 ? op->max_inputs : 1;
    if (n < 1) return rf_nn_err(b, RF_ERR_SPEC, "\"inputs\" is empty");
    if (n > most)
        return most == 1 ? rf_nn_err(b, RF_ERR_SPEC, "takes one input, \"inputs\" lists %d", n)
                         : rf_nn_err(b, RF_ERR_SPEC, "takes at most %d inputs, \"inputs\" lists %d", most, n);
    L->n_inputs = n;
    if (!cJSON_IsArray(ji)) return resolve_input(b, jl, ji, &L->inputs[0]);
    int k = 0;
    for (const cJSON *v = ji->child; v; v = v->next, k++) RF_TRY(resolve_input(b, jl, v, &L->inputs[k]));
    return RF_OK;
}

/* Every layer's output is read by a later layer, except the last one's (the
 * logits): a dangling branch is a spec mistake, not a model. */
static rf_status check_used(rf_nn_builder *b, const rf_model *m) {
    unsigned char *used = rf_calloc((size_t)m->n_layers, 1);
    if (!used) return rf_error(b->ctx, RF_ERR_NOMEM, "spec: out of memory");
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i].n_inputs; k++)
            if (m->layers[i].inputs[k] >= 0) used[m->layers[i].inputs[k]] = 1;
    rf_status st = RF_OK;
    for (int i = 0; i < m->n_layers - 1 && !st; i++) {
        if (used[i]) continue;
        char dflt[RF_NAME_MAX];
        snprintf(dflt, sizeof dflt, "layers.%d", i);
        b->index = i;
        b->type_name = rf_nn_op_get(m->layers[i].type)->name;
        b->layer_name = strcmp(m->layers[i].name, dflt) ? m->layers[i].name : NULL;
        st = rf_nn_err(b, RF_ERR_SPEC, "output is never read (only the last layer's may be unused)");
    }
    rf_free(used);
    return st;
}

static rf_status build(rf_ctx *ctx, const cJSON *root, rf_model *m) {
    static const char *const top_keys[] = {"input", "classes", "init", "layers", "name", NULL};
    if (!cJSON_IsObject(root)) return rf_error(ctx, RF_ERR_SPEC, "spec: must be a JSON object");
    for (const cJSON *k = root->child; k; k = k->next)
        if (!key_in(k->string, top_keys)) return rf_error(ctx, RF_ERR_SPEC, "spec: unknown key \"%s\"", k->string);
    rf_nn_kind kind;
    RF_TRY(parse_input(ctx, cJSON_GetObjectItemCaseSensitive(root, "input"), &m->input, &kind));
    int scheme = RF_NN_INIT_KAIMING_NORMAL;
    const cJSON *ji = cJSON_GetObjectItemCaseSensitive(root, "init");
    if (ji && (!cJSON_IsString(ji) || (scheme = init_from_name(ji->valuestring)) < 0))
        return rf_error(ctx, RF_ERR_SPEC, "spec: \"init\" must be one of kaiming_normal, glorot_normal, trunc_normal, pytorch");
    const cJSON *jl = cJSON_GetObjectItemCaseSensitive(root, "layers");
    int n = cJSON_GetArraySize(jl);
    if (!cJSON_IsArray(jl) || n < 1) return rf_error(ctx, RF_ERR_SPEC, "spec: \"layers\" must be a non-empty array");
    if (n > 4096) return rf_error(ctx, RF_ERR_SPEC, "spec: too many layers (%d)", n);
    m->layers = rf_calloc((size_t)n, sizeof *m->layers);
    if (!m->layers) return rf_error(ctx, RF_ERR_NOMEM, "spec: out of memory");
    m->n_layers = n;

    m->input_kind = (int)kind;
    rf_nn_builder b = {.ctx = ctx, .in_kind = kind, .layers = m->layers, .input = m->input, .input_kind = kind};
    rf_status st = RF_OK;
    size_t acts = 0, saved = 0;
    int i = 0;
    for (const cJSON *jl_i = jl->child; jl_i; jl_i = jl_i->next, i++) {
        rf_layer *L = &m->layers[i];
        b.index = i;
        b.type_name = NULL;
        b.layer_name = NULL;
        if (!cJSON_IsObject(jl_i)) { st = rf_nn_err(&b, RF_ERR_SPEC, "must be an object"); break; }
        const cJSON *jt = cJSON_GetObjectItemCaseSensitive(jl_i, "type");
        if (!cJSON_IsString(jt)) { st = rf_nn_err(&b, RF_ERR_SPEC, "missing \"type\""); break; }
        int type = 0;
        const rf_nn_op *op = op_by_name(jt->valuestring, &type);
        if (!op) {
            char known[256];
            known_types(known, sizeof known);
            st = rf_nn_err(&b, RF_ERR_SPEC, "unknown layer type \"%s\" (known: %s)", jt->valuestring, known);
            break;
        }
        b.type_name = op->name;
        for (const cJSON *k = jl_i->child; k; k = k->next)
            if (strcmp(k->string, "type") && strcmp(k->string, "name") && strcmp(k->string, "init") &&
                strcmp(k->string, "inputs") && !key_in(k->string, op->keys)) {
                st = rf_nn_err(&b, RF_ERR_SPEC, "unknown key \"%s\"", k->string);
                break;
            }
        if (st) break;
        L->type = (rf_layer_type)type;
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(jl_i, "name");
        if (jn && (!cJSON_IsString(jn) || !jn->valuestring[0] || strlen(jn->valuestring) >= 40)) {
            st = rf_nn_err(&b, RF_ERR_SPEC, "\"name\" must be a non-empty string under 40 characters");
            break;
        }
        if (jn) snprintf(L->name, sizeof L->name, "%s", jn->valuestring);
        else snprintf(L->name, sizeof L->name, "layers.%d", i);
        if (strcmp(L->name, "input") == 0) {
            st = rf_nn_err(&b, RF_ERR_SPEC, "the name \"input\" stands for the model input");
            break;
        }
        for (int q = 0; q < i; q++)
            if (strcmp(m->layers[q].name, L->name) == 0) { st = rf_nn_err(&b, RF_ERR_SPEC, "duplicate name \"%s\"", L->name); break; }
        if (st) break;
        if (jn) b.layer_name = L->name;   /* later messages name the layer */
        const cJSON *jli = cJSON_GetObjectItemCaseSensitive(jl_i, "init");
        L->ip[6] = scheme;
        if (jli && (!cJSON_IsString(jli) || (L->ip[6] = init_from_name(jli->valuestring)) < 0)) {
            st = rf_nn_err(&b, RF_ERR_SPEC, "unknown \"init\"");
            break;
        }
        if ((st = parse_inputs(&b, jl, jl_i, op, L))) break;
        L->in = rf_nn_input_shape(&b, L, 0, &b.in_kind);
        L->in_size = (size_t)L->in.d[0] * L->in.d[1] * L->in.d[2];
        st = op->setup(&b, L, jl_i);
        if (st) break;
        /* Sizes are capped so that per-batch offsets cannot overflow. */
        if (L->out_size == 0 || L->out_size > ((size_t)1 << 28)) { st = rf_nn_err(&b, RF_ERR_SHAPE, "output size %zu out of range", L->out_size); break; }
        L->act_offset = acts;
        acts += L->out_size;
        L->save_offset = saved;
        saved += L->save_numel;
        L->buf_offset = b.n_buffers;
        b.n_buffers += L->buf_numel;
    }
    m->ptensors = b.pt;
    m->n_ptensors = b.n_pt;
    m->n_params = b.n_params;
    m->n_buffers = b.n_buffers;
    if (st) return st;
    RF_TRY(check_used(&b, m));

    rf_layer *last = &m->layers[n - 1];
    b.index = n - 1;
    b.type_name = rf_nn_op_get(last->type)->name;
    b.layer_name = NULL;
    int classes = (int)last->out_size;
    RF_TRY(rf_nn_int(&b, root, "classes", classes, 1, 1 << 24, &classes));
    if ((size_t)classes != last->out_size)
        return rf_nn_err(&b, RF_ERR_SHAPE, "outputs %zu values per sample, spec says %d classes", last->out_size, classes);
    m->n_classes = classes;
    /* The classifier is the last layer with parameters, if it is linear. */
    for (int q = n - 1; q >= 0; q--) {
        if (!m->layers[q].n_params) continue;
        if (m->layers[q].type == RF_L_LINEAR)
            for (int t = 0; t < m->layers[q].n_params; t++) m->ptensors[m->layers[q].first_param + t].is_output = 1;
        break;
    }
    for (int p = 0; p < m->n_ptensors; p++)
        for (int q = 0; q < p; q++)
            if (strcmp(m->ptensors[p].name, m->ptensors[q].name) == 0)
                return rf_error(ctx, RF_ERR_SPEC, "layers[%d] %s: parameter name \"%s\" used twice", m->ptensors[p].layer,
                                rf_nn_op_get(m->layers[m->ptensors[p].layer].type)->name, m->ptensors[p].name);
    return RF_OK;
}

rf_status rf_model_from_spec(rf_ctx *ctx, const char *spec_json, rf_model **out) {
    RF_TRY(rf_model_plan(ctx, spec_json, out));
    rf_status st = rf_nn_model_alloc_blocks(ctx, *out);
    if (st != RF_OK) { rf_model_free(*out); *out = NULL; }
    return st;
}

rf_status rf_model_alloc_blocks(rf_ctx *ctx, rf_model *m) { return rf_nn_model_alloc_blocks(ctx, m); }

rf_status rf_model_plan(rf_ctx *ctx, const char *spec_json, rf_model **out) {
    *out = NULL;
    if (!spec_json) return rf_error(ctx, RF_ERR_INVALID, "spec: NULL");
    cJSON *root = cJSON_Parse(spec_json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return rf_error(ctx, RF_ERR_SPEC, "spec: invalid JSON near \"%.20s\"", at ? at : "");
    }
    rf_model *m = rf_calloc(1, sizeof *m);
    if (!m) { cJSON_Delete(root); return rf_error(ctx, RF_ERR_NOMEM, "spec: out of memory"); }
    rf_status st = build(ctx, root, m);
    if (st == RF_OK) {
        char *txt = cJSON_PrintUnformatted(root);
        m->spec_json = txt ? rf_strdup(txt) : NULL;
        cJSON_free(txt);
        if (!m->spec_json) st = rf_error(ctx, RF_ERR_NOMEM, "spec: out of memory");
    }
    cJSON_Delete(root);
    if (st != RF_OK) { rf_model_free(m); return st; }
    *out = m;
    return RF_OK;
}
