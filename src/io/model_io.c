/* Model <-> checkpoint (declared in raffle/train.h).
 *
 * Metadata: {"raffle_version", "format":"rckpt", "spec": <model spec object>,
 * "extra": <caller's object or null>}. Tensors use the PyTorch state_dict
 * names the presets give their parameters, so export to safetensors needs no
 * renaming: every rf_param by name (prunable ones of a masked model stored
 * SPARSE with the model's own mask, so a kept weight that is exactly 0.0
 * keeps its mask bit; pruned entries are not stored and read back as +0.0),
 * and batch-norm statistics as "<layer>.running_mean" /
 * "<layer>.running_var" (PyTorch's buffer names). Other layers' buffers, if a
 * layer type grows some, are stored whole as "<layer>.buffer". */
#include "raffle/ckpt.h"
#include "raffle/train.h"
#include "io/model_names.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

int rf_io_layer_buffers(const rf_layer *L, rf_io_buf_slice *out) {
    if (L->buf_numel == 0) return 0;
    if ((rf_layer_traits(L->type) & RF_LT_STATS) && L->buf_numel % 2 == 0) {
        size_t c = L->buf_numel / 2;
        snprintf(out[0].name, sizeof out[0].name, "%s.running_mean", L->name);
        snprintf(out[1].name, sizeof out[1].name, "%s.running_var", L->name);
        out[0].offset = L->buf_offset; out[0].numel = c;
        out[1].offset = L->buf_offset + c; out[1].numel = c;
        return 2;
    }
    snprintf(out[0].name, sizeof out[0].name, "%s.buffer", L->name);
    out[0].offset = L->buf_offset; out[0].numel = L->buf_numel;
    return 1;
}

static rf_status build_meta(rf_ctx *ctx, const rf_model *m, const char *extra_json, char **out) {
    *out = NULL;
    cJSON *spec = cJSON_Parse(m->spec_json ? m->spec_json : "null");
    if (!spec) return rf_error(ctx, RF_ERR_SPEC, "model spec is not valid JSON");
    cJSON *extra = extra_json ? cJSON_Parse(extra_json) : cJSON_CreateNull();
    if (!extra || !(cJSON_IsObject(extra) || cJSON_IsNull(extra))) {
        cJSON_Delete(spec); cJSON_Delete(extra);
        return rf_error(ctx, RF_ERR_INVALID, "checkpoint extra metadata must be a JSON object");
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) { cJSON_Delete(spec); cJSON_Delete(extra); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    cJSON_AddStringToObject(o, "raffle_version", RF_VERSION_STRING);
    cJSON_AddStringToObject(o, "format", "rckpt");
    cJSON_AddItemToObject(o, "spec", spec);
    cJSON_AddItemToObject(o, "extra", extra);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    *out = rf_strdup(txt);
    cJSON_free(txt);
    return *out ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
}

/* Whether p's mask keeps exactly nm_n of every nm_m consecutive entries of
 * each row (a tensor pruned with an N:M constraint; lowbit.h rf_nm_check). */
static int nm_exact(const rf_param *p, const uint8_t *mask) {
    if (p->nm_m < 2 || p->nm_n < 1 || p->nm_n > p->nm_m || p->nm_m > RF_NM_MAX_M || p->ndim < 2) return 0;
    size_t cols = p->numel / (size_t)p->shape[0];
    if (cols % (size_t)p->nm_m) return 0;
    for (size_t g = 0; g < p->numel / (size_t)p->nm_m; g++) {
        int kept = 0;
        for (int j = 0; j < p->nm_m; j++) kept += mask[g * (size_t)p->nm_m + (size_t)j];
        if (kept != p->nm_n) return 0;
    }
    return 1;
}

rf_status rf_model_to_ckpt(rf_ctx *ctx, const rf_model *m, const char *extra_json, rf_ckpt **out) {
    *out = NULL;
    rf_ckpt *c;
    RF_TRY(rf_ckpt_new(ctx, &c));
    char *meta = NULL;
    rf_status s = build_meta(ctx, m, extra_json, &meta);
    if (!s) s = rf_ckpt_set_meta(ctx, c, meta);
    rf_free(meta);
    uint8_t *mask = NULL;
    for (int i = 0; !s && i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        const float *data = m->params + p->offset;
        if (m->masks && p->prunable) {
            uint8_t *nm = rf_realloc(mask, p->numel ? p->numel : 1);
            if (!nm) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); break; }
            mask = nm;
            for (size_t k = 0; k < p->numel; k++) mask[k] = m->masks[p->offset + k] != 0.0f;
            if (nm_exact(p, mask))   /* N:M kind: in-group positions, 2 bits a kept value for 2:4 */
                s = rf_ckpt_add_nm(ctx, c, p->name, p->ndim, p->shape, data, mask, p->nm_n, p->nm_m);
            else
                s = rf_ckpt_add(ctx, c, p->name, RF_F32, p->ndim, p->shape, RF_STORE_SPARSE, data, mask, NULL);
        } else {
            s = rf_ckpt_add(ctx, c, p->name, RF_F32, p->ndim, p->shape, RF_STORE_DENSE, data, NULL, NULL);
        }
    }
    rf_free(mask);
    for (int l = 0; !s && l < m->n_layers; l++) {
        rf_io_buf_slice b[2];
        int nb = rf_io_layer_buffers(&m->layers[l], b);
        for (int k = 0; !s && k < nb; k++) {
            int64_t shape[1] = {(int64_t)b[k].numel};
            s = rf_ckpt_add(ctx, c, b[k].name, RF_F32, 1, shape, RF_STORE_DENSE, m->buffers + b[k].offset, NULL, NULL);
        }
    }
    if (s) { rf_ckpt_free(c); return s; }
    *out = c;
    return RF_OK;
}

rf_status rf_model_save(rf_ctx *ctx, const rf_model *m, const char *extra_json, const char *path) {
    rf_ckpt *c;
    RF_TRY(rf_model_to_ckpt(ctx, m, extra_json, &c));
    rf_status s = rf_ckpt_write(ctx, c, path);
    rf_ckpt_free(c);
    return s;
}

/* Copies tensor t into dst (numel floats) after checking its shape. */
static rf_status same_shape(rf_ctx *ctx, const rf_ckpt_tensor *t, int ndim, const int64_t *shape);
static rf_status load_tensor(rf_ctx *ctx, const rf_ckpt_tensor *t, int ndim, const int64_t *shape, float *dst) {
    RF_TRY(same_shape(ctx, t, ndim, shape));
    float *f;
    RF_TRY(rf_ckpt_tensor_to_f32(ctx, t, &f));
    memcpy(dst, f, (size_t)rf_ckpt_tensor_numel(t) * sizeof(float));
    rf_free(f);
    return RF_OK;
}

/* RF_OK if t has shape[0..ndim), else RF_ERR_SHAPE naming both. */
static rf_status same_shape(rf_ctx *ctx, const rf_ckpt_tensor *t, int ndim, const int64_t *shape) {
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (same) return RF_OK;
    char a[96] = "", b[96] = "";
    for (int d = 0; d < ndim; d++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? "x" : "", (long long)shape[d]);
    for (int d = 0; d < t->ndim; d++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? "x" : "", (long long)t->shape[d]);
    return rf_error(ctx, RF_ERR_SHAPE, "tensor '%s': model expects shape [%s], checkpoint has [%s]", t->name, a, b);
}

/* Every parameter and buffer tensor of the planned model m (no blocks yet)
 * is in c's directory with the shape m declares. */
static rf_status check_directory(rf_ctx *ctx, const rf_ckpt *c, const rf_model *m) {
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        const rf_ckpt_tensor *t = rf_ckpt_find(c, p->name);
        if (!t) return rf_error(ctx, RF_ERR_NOTFOUND, "checkpoint spec declares tensor '%s', which its directory does not have", p->name);
        RF_TRY(same_shape(ctx, t, p->ndim, p->shape));
    }
    for (int l = 0; l < m->n_layers; l++) {
        rf_io_buf_slice b[2];
        int nb = rf_io_layer_buffers(&m->layers[l], b);
        for (int k = 0; k < nb; k++) {
            const rf_ckpt_tensor *t = rf_ckpt_find(c, b[k].name);
            if (!t) return rf_error(ctx, RF_ERR_NOTFOUND, "checkpoint spec declares tensor '%s', which its directory does not have", b[k].name);
            int64_t shape[1] = {(int64_t)b[k].numel};
            RF_TRY(same_shape(ctx, t, 1, shape));
        }
    }
    return RF_OK;
}

rf_status rf_model_from_ckpt(rf_ctx *ctx, const rf_ckpt *c, rf_model **out) {
    *out = NULL;
    cJSON *meta = cJSON_Parse(c->meta_json);
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(meta, "spec");
    if (!cJSON_IsObject(spec)) {
        cJSON_Delete(meta);
        return rf_error(ctx, RF_ERR_FORMAT, "checkpoint metadata has no model spec");
    }
    char *spec_txt = cJSON_PrintUnformatted(spec);
    cJSON_Delete(meta);
    if (!spec_txt) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_model *m;
    rf_status s = rf_model_plan(ctx, spec_txt, &m);
    cJSON_free(spec_txt);
    if (s) { rf_error_prefix(ctx, "checkpoint spec"); return s; }
    /* The spec is only a claim: a 47 KB file whose metadata declared a
     * 784 -> 1.3 M layer made raffle allocate 8 GB before the shapes were
     * compared (issue 19, defect 7). Every tensor the spec declares must be
     * in the file's directory with that shape before anything is allocated. */
    s = check_directory(ctx, c, m);
    if (!s) s = rf_model_alloc_blocks(ctx, m);
    for (int i = 0; !s && i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        const rf_ckpt_tensor *t = rf_ckpt_find(c, p->name);
        if (!t) { s = rf_error(ctx, RF_ERR_NOTFOUND, "checkpoint has no tensor '%s'", p->name); break; }
        s = load_tensor(ctx, t, p->ndim, p->shape, m->params + p->offset);
        if (s || !t->mask) continue;
        if (!p->prunable) { s = rf_error(ctx, RF_ERR_FORMAT, "tensor '%s' is stored sparse but is not prunable", p->name); break; }
        if ((s = rf_model_ensure_masks(ctx, m))) break;
        if (t->storage == RF_STORE_NM) { m->ptensors[i].nm_n = t->nm_n; m->ptensors[i].nm_m = t->nm_m; }
        for (size_t k = 0; k < p->numel; k++) m->masks[p->offset + k] = t->mask[k] ? 1.0f : 0.0f;
    }
    for (int l = 0; !s && l < m->n_layers; l++) {
        rf_io_buf_slice b[2];
        int nb = rf_io_layer_buffers(&m->layers[l], b);
        for (int k = 0; !s && k < nb; k++) {
            const rf_ckpt_tensor *t = rf_ckpt_find(c, b[k].name);
            if (!t) { s = rf_error(ctx, RF_ERR_NOTFOUND, "checkpoint has no tensor '%s'", b[k].name); break; }
            int64_t shape[1] = {(int64_t)b[k].numel};
            s = load_tensor(ctx, t, 1, shape, m->buffers + b[k].offset);
        }
    }
    if (s) { rf_model_free(m); return s; }
    *out = m;
    return RF_OK;
}

rf_status rf_model_load(rf_ctx *ctx, const char *path, rf_model **out) {
    *out = NULL;
    rf_ckpt *c;
    RF_TRY(rf_ckpt_read(ctx, path, &c));
    rf_status s = rf_model_from_ckpt(ctx, c, out);
    rf_ckpt_free(c);
    if (s) rf_error_prefix(ctx, "%s", path);
    return s;
}
