/* Model construction from a JSON spec: key validation, shape inference and
 * the layout of the parameter, buffer, activation and saved-state blocks.
 *
 * Spec format (docs/nn.md):
 *   {"input": [C, H, W] | [T, D] | [N], "classes": K, "init": SCHEME,
 *    "layers": [{"type": "linear", "name": "fc1", "out": 300}, ...]}
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

    rf_nn_builder b = {.ctx = ctx, .in_kind = kind, .layers = m->layers, .input = m->input};
    rf_status st = RF_OK;
    rf_shape3 cur = m->input;
    size_t acts = 0, saved = 0;
    int i = 0;
    for (const cJSON *jl_i = jl->child; jl_i; jl_i = jl_i->next, i++) {
        rf_layer *L = &m->layers[i];
        b.index = i;
        b.type_name = NULL;
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
                !key_in(k->string, op->keys)) {
                st = rf_nn_err(&b, RF_ERR_SPEC, "unknown key \"%s\"", k->string);
                break;
            }
        if (st) break;
        L->type = (rf_layer_type)type;
        L->from = -1;
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(jl_i, "name");
        if (jn && (!cJSON_IsString(jn) || !jn->valuestring[0] || strlen(jn->valuestring) >= 40)) {
            st = rf_nn_err(&b, RF_ERR_SPEC, "\"name\" must be a non-empty string under 40 characters");
            break;
        }
        if (jn) snprintf(L->name, sizeof L->name, "%s", jn->valuestring);
        else snprintf(L->name, sizeof L->name, "layers.%d", i);
        for (int q = 0; q < i; q++)
            if (strcmp(m->layers[q].name, L->name) == 0) { st = rf_nn_err(&b, RF_ERR_SPEC, "duplicate name \"%s\"", L->name); break; }
        if (st) break;
        const cJSON *jli = cJSON_GetObjectItemCaseSensitive(jl_i, "init");
        L->ip[6] = scheme;
        if (jli && (!cJSON_IsString(jli) || (L->ip[6] = init_from_name(jli->valuestring)) < 0)) {
            st = rf_nn_err(&b, RF_ERR_SPEC, "unknown \"init\"");
            break;
        }
        L->in = cur;
        L->in_size = (size_t)cur.d[0] * cur.d[1] * cur.d[2];
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
        cur = L->out;
        b.in_kind = (rf_nn_kind)L->ip[7];
    }
    m->ptensors = b.pt;
    m->n_ptensors = b.n_pt;
    m->n_params = b.n_params;
    m->n_buffers = b.n_buffers;
    if (st) return st;

    rf_layer *last = &m->layers[n - 1];
    b.index = n - 1;
    b.type_name = rf_nn_op_get(last->type)->name;
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
    if (st == RF_OK) st = rf_nn_model_alloc_blocks(ctx, m);
    if (st != RF_OK) { rf_model_free(m); return st; }
    *out = m;
    return RF_OK;
}
