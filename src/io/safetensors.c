/* safetensors reader / float32 writer and the model and checkpoint bridges
 * (see raffle/safetensors.h for the format). The reader validates the header
 * completely before any tensor is used: every offset is checked against the
 * data section, and the tensors must tile it exactly, the rule the reference
 * implementation (huggingface/safetensors) enforces. */
#include "raffle/safetensors.h"
#include "io/model_names.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; size_t size; } st_types[RF_ST_DTYPE_COUNT_] = {
    [RF_ST_F32] = {"F32", 4}, [RF_ST_F64] = {"F64", 8}, [RF_ST_F16] = {"F16", 2}, [RF_ST_BF16] = {"BF16", 2},
    [RF_ST_I8] = {"I8", 1}, [RF_ST_U8] = {"U8", 1}, [RF_ST_I16] = {"I16", 2}, [RF_ST_I32] = {"I32", 4},
    [RF_ST_I64] = {"I64", 8}, [RF_ST_BOOL] = {"BOOL", 1},
};

const char *rf_st_dtype_name(rf_st_dtype t) {
    return (unsigned)t < RF_ST_DTYPE_COUNT_ ? st_types[t].name : "?";
}

void rf_safetensors_free(rf_safetensors *st) {
    if (!st) return;
    rf_free(st->t);
    rf_free(st->meta_json);
    rf_free(st->owned);
    rf_free(st);
}

const rf_st_tensor *rf_safetensors_find(const rf_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++) if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

/* A JSON number that is a non-negative integer exactly representable. */
static int json_u64(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d)) return 0;
    *v = (uint64_t)d;
    return 1;
}

static int cmp_begin(const void *a, const void *b) {
    const rf_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static rf_status parse_entry(rf_ctx *ctx, const cJSON *e, rf_st_tensor *t, uint64_t data_len) {
    if (!cJSON_IsObject(e)) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': entry is not an object", t->name);
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        if (strcmp(k->string, "dtype") == 0 && !dt) dt = k;
        else if (strcmp(k->string, "shape") == 0 && !shape) shape = k;
        else if (strcmp(k->string, "data_offsets") == 0 && !offs) offs = k;
        else return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': unexpected key \"%s\"", t->name, k->string);
    }
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': needs string dtype, array shape and array data_offsets", t->name);
    int found = -1;
    for (int i = 0; i < RF_ST_DTYPE_COUNT_; i++) if (strcmp(dt->valuestring, st_types[i].name) == 0) found = i;
    if (found < 0) return rf_error(ctx, RF_ERR_UNSUPPORTED, "tensor '%s': unsupported dtype \"%.16s\"", t->name, dt->valuestring);
    t->dtype = (rf_st_dtype)found;
    int nd = cJSON_GetArraySize(shape);
    if (nd > RF_MAX_DIMS) return rf_error(ctx, RF_ERR_UNSUPPORTED, "tensor '%s': %d dims (raffle supports %d)", t->name, nd, RF_MAX_DIMS);
    t->ndim = nd;
    int d = 0;
    for (const cJSON *x = shape->child; x; x = x->next, d++) {
        uint64_t v;
        if (!json_u64(x, &v)) return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': bad dimension", t->name);
        t->shape[d] = (int64_t)v;
    }
    if (cJSON_GetArraySize(offs) != 2 || !json_u64(offs->child, &t->begin) || !json_u64(offs->child->next, &t->end))
        return rf_error(ctx, RF_ERR_FORMAT, "tensor '%s': data_offsets must be [begin, end]", t->name);
    if (t->begin > t->end || t->end > data_len)
        return rf_error(ctx, RF_ERR_SIZE, "tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte data section", t->name,
                        (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_len);
    int64_t numel = rf_shape_numel(t->ndim, t->shape);
    size_t es = st_types[t->dtype].size;
    if (numel < 0 || (uint64_t)numel > UINT64_MAX / es || (uint64_t)numel * es != t->end - t->begin)
        return rf_error(ctx, RF_ERR_SIZE, "tensor '%s': shape x %s needs %llu bytes, data_offsets give %llu", t->name,
                        st_types[t->dtype].name, numel < 0 ? 0ull : (unsigned long long)numel * es,
                        (unsigned long long)(t->end - t->begin));
    return RF_OK;
}

rf_status rf_safetensors_parse(rf_ctx *ctx, const unsigned char *buf, size_t n, rf_safetensors **out) {
    *out = NULL;
    if (n < 8) return rf_error(ctx, RF_ERR_TRUNCATED, "safetensors: %zu bytes, shorter than the header length", n);
    uint64_t hlen = rf_get_u64(buf);
    if (hlen > n - 8) return rf_error(ctx, RF_ERR_TRUNCATED, "safetensors: header length %llu runs past the end of the %zu-byte file", (unsigned long long)hlen, n);
    RF_TRY(rf_check_cap(ctx, hlen, "safetensors header"));
    const char *h = (const char *)buf + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    int ok = root && cJSON_IsObject(root) && end;
    for (const char *q = end; ok && q < h + hlen; q++) ok = *q == ' ' || *q == '\n' || *q == '\r' || *q == '\t';
    if (!ok) { cJSON_Delete(root); return rf_error(ctx, RF_ERR_FORMAT, "safetensors: header is not a JSON object"); }
    uint64_t data_len = n - 8 - hlen;
    const unsigned char *data = buf + 8 + hlen;
    rf_safetensors *st = rf_calloc(1, sizeof *st);
    rf_status s = RF_OK;
    if (!st) { cJSON_Delete(root); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    int cnt = cJSON_GetArraySize(root);
    st->t = rf_calloc((size_t)cnt + 1, sizeof *st->t);
    if (!st->t) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
    int meta_seen = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta_seen++ || !cJSON_IsObject(e)) { s = rf_error(ctx, RF_ERR_FORMAT, "safetensors: bad __metadata__"); goto done; }
            for (const cJSON *k = e->child; k; k = k->next)
                if (!cJSON_IsString(k)) { s = rf_error(ctx, RF_ERR_FORMAT, "safetensors: __metadata__ value \"%s\" is not a string", k->string); goto done; }
            char *txt = cJSON_PrintUnformatted(e);
            st->meta_json = txt ? rf_strdup(txt) : NULL;
            cJSON_free(txt);
            if (!st->meta_json) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
            continue;
        }
        rf_st_tensor *t = &st->t[st->n];
        size_t nl = strlen(e->string);
        if (nl == 0 || nl >= sizeof t->name) { s = rf_error(ctx, RF_ERR_UNSUPPORTED, "safetensors: tensor name of %zu bytes", nl); goto done; }
        memcpy(t->name, e->string, nl + 1);
        if (rf_safetensors_find(st, t->name)) { s = rf_error(ctx, RF_ERR_FORMAT, "safetensors: tensor '%s' appears twice", t->name); goto done; }
        if ((s = parse_entry(ctx, e, t, data_len))) goto done;
        t->data = data + t->begin;
        st->n++;
    }
    if (!st->meta_json && !(st->meta_json = rf_strdup("{}"))) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < st->n; i++) {
        if (st->t[i].begin != at) {
            s = rf_error(ctx, RF_ERR_SIZE, "safetensors: tensor '%s' at %llu %s (expected %llu)", st->t[i].name,
                         (unsigned long long)st->t[i].begin, st->t[i].begin < at ? "overlaps another" : "leaves a gap",
                         (unsigned long long)at);
            goto done;
        }
        at = st->t[i].end;
    }
    if (at != data_len) { s = rf_error(ctx, RF_ERR_SIZE, "safetensors: tensors cover %llu of %llu data bytes", (unsigned long long)at, (unsigned long long)data_len); goto done; }
done:
    cJSON_Delete(root);
    if (s) { rf_safetensors_free(st); return s; }
    *out = st;
    return RF_OK;
}

rf_status rf_safetensors_read(rf_ctx *ctx, const char *path, rf_safetensors **out) {
    *out = NULL;
    unsigned char *buf;
    size_t n;
    RF_TRY(rf_read_file(ctx, path, &buf, &n));
    rf_status s = rf_safetensors_parse(ctx, buf, n, out);
    if (s) { rf_free(buf); rf_error_prefix(ctx, "%s", path); return s; }
    (*out)->owned = buf;
    return RF_OK;
}

/* IEEE half and bfloat16 to float (exact). */
static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) {
        float f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    if (e == 31) bits = sign | 0x7f800000u | (m << 13);
    else bits = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

rf_status rf_st_tensor_to_f32(rf_ctx *ctx, const rf_st_tensor *t, float **out) {
    *out = NULL;
    if (t->dtype != RF_ST_F32 && t->dtype != RF_ST_F64 && t->dtype != RF_ST_F16 && t->dtype != RF_ST_BF16)
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "tensor '%s': dtype %s is not floating point", t->name, rf_st_dtype_name(t->dtype));
    size_t n = (size_t)rf_shape_numel(t->ndim, t->shape);
    RF_TRY(rf_check_cap(ctx, (uint64_t)n * 4, t->name));
    float *f = rf_malloc(n * sizeof *f + 1);
    if (!f) return rf_error(ctx, RF_ERR_NOMEM, "tensor '%s': out of memory", t->name);
    const unsigned char *p = t->data;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case RF_ST_F32: { uint32_t u = rf_get_u32(p + 4 * i); memcpy(&f[i], &u, 4); break; }
        case RF_ST_F64: { uint64_t u = rf_get_u64(p + 8 * i); double d; memcpy(&d, &u, 8); f[i] = (float)d; break; }
        case RF_ST_F16: f[i] = half_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8))); break;
        default: { uint32_t u = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16; memcpy(&f[i], &u, 4); break; }
        }
    }
    *out = f;
    return RF_OK;
}

rf_status rf_safetensors_encode_f32(rf_ctx *ctx, const rf_st_entry *e, int n, const char *meta_json,
                                    unsigned char **buf, size_t *len) {
    *buf = NULL; *len = 0;
    cJSON *root = cJSON_CreateObject();
    if (!root) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_status s = RF_OK;
    if (meta_json) {
        cJSON *m = cJSON_Parse(meta_json);
        int ok = m && cJSON_IsObject(m);
        for (const cJSON *k = ok ? m->child : NULL; k; k = k->next) ok &= cJSON_IsString(k);
        if (!ok) { cJSON_Delete(m); cJSON_Delete(root); return rf_error(ctx, RF_ERR_INVALID, "safetensors metadata must be an object of strings"); }
        cJSON_AddItemToObject(root, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n && !s; i++) {
        int64_t numel = rf_shape_numel(e[i].ndim, e[i].shape);
        if (numel < 0) { s = rf_error(ctx, RF_ERR_INVALID, "tensor '%s': bad shape", e[i].name); break; }
        if (cJSON_GetObjectItemCaseSensitive(root, e[i].name)) { s = rf_error(ctx, RF_ERR_INVALID, "tensor '%s' given twice", e[i].name); break; }
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *of = cJSON_CreateArray();
        cJSON_AddItemToObject(root, e[i].name, o);
        cJSON_AddStringToObject(o, "dtype", "F32");
        cJSON_AddItemToObject(o, "shape", sh);
        for (int d = 0; d < e[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e[i].shape[d]));
        cJSON_AddItemToObject(o, "data_offsets", of);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += (uint64_t)numel * 4;
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    char *txt = s ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s) return s;
    if (!txt) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    size_t hl = strlen(txt), padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + (size_t)off;
    s = rf_check_cap(ctx, total, "safetensors image");
    unsigned char *b = s ? NULL : rf_malloc(total);
    if (!s && !b) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    if (s) { cJSON_free(txt); return s; }
    rf_put_u64(b, padded);
    memcpy(b + 8, txt, hl);
    memset(b + 8 + hl, ' ', padded - hl);
    cJSON_free(txt);
    unsigned char *p = b + 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)rf_shape_numel(e[i].ndim, e[i].shape);
        for (size_t k = 0; k < numel; k++) {
            uint32_t u;
            memcpy(&u, &e[i].data[k], 4);
            rf_put_u32(p, u);
            p += 4;
        }
    }
    *buf = b; *len = total;
    return RF_OK;
}

rf_status rf_ckpt_to_safetensors(rf_ctx *ctx, const rf_ckpt *c, unsigned char **buf, size_t *len) {
    *buf = NULL; *len = 0;
    rf_st_entry *e = rf_calloc((size_t)c->n + 1, sizeof *e);
    float **f = rf_calloc((size_t)c->n + 1, sizeof *f);
    rf_status s = RF_OK;
    if (!e || !f) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    for (int i = 0; !s && i < c->n; i++) {
        s = rf_ckpt_tensor_to_f32(ctx, &c->t[i], &f[i]);
        e[i].name = c->t[i].name; e[i].ndim = c->t[i].ndim; e[i].shape = c->t[i].shape; e[i].data = f[i];
    }
    /* PyTorch's loader wants "format": "pt"; the spec lets a reader rebuild
     * the architecture without raffle. */
    char *meta = NULL;
    if (!s) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "format", "pt");
        cJSON_AddStringToObject(m, "raffle_version", RF_VERSION_STRING);
        cJSON *cm = cJSON_Parse(c->meta_json);
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(cm, "spec");
        char *spec_txt = spec ? cJSON_PrintUnformatted(spec) : NULL;
        if (spec_txt) cJSON_AddStringToObject(m, "raffle_spec", spec_txt);
        cJSON_free(spec_txt);
        cJSON_Delete(cm);
        char *txt = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
        meta = txt ? rf_strdup(txt) : NULL;
        cJSON_free(txt);
        if (!meta) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    }
    if (!s) s = rf_safetensors_encode_f32(ctx, e, c->n, meta, buf, len);
    rf_free(meta);
    for (int i = 0; f && i < c->n; i++) rf_free(f[i]);
    rf_free(f);
    rf_free(e);
    return s;
}

/* Checks one file tensor against a model tensor and converts it. */
static rf_status fetch(rf_ctx *ctx, const rf_safetensors *st, const char *name, int ndim, const int64_t *shape, float **out) {
    const rf_st_tensor *t = rf_safetensors_find(st, name);
    if (!t) return rf_error(ctx, RF_ERR_NOTFOUND, "tensor '%s' is missing from the safetensors file", name);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char a[96] = "", b[96] = "";
        for (int d = 0; d < ndim; d++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? ", " : "", (long long)shape[d]);
        for (int d = 0; d < t->ndim; d++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        return rf_error(ctx, RF_ERR_SHAPE, "tensor '%s': model expects shape [%s], file has [%s]", name, a, b);
    }
    return rf_st_tensor_to_f32(ctx, t, out);
}

rf_status rf_model_load_safetensors(rf_ctx *ctx, rf_model *m, const rf_safetensors *st) {
    /* every file tensor must be claimed by the model */
    for (int i = 0; i < st->n; i++) {
        const char *nm = st->t[i].name;
        size_t nl = strlen(nm), sl = strlen(".num_batches_tracked");
        if (nl > sl && strcmp(nm + nl - sl, ".num_batches_tracked") == 0) continue;
        int found = rf_model_param(m, nm) != NULL;
        for (int l = 0; !found && l < m->n_layers; l++) {
            rf_io_buf_slice b[2];
            int nb = rf_io_layer_buffers(&m->layers[l], b);
            for (int k = 0; k < nb; k++) found |= strcmp(b[k].name, nm) == 0;
        }
        if (!found) return rf_error(ctx, RF_ERR_NOTFOUND, "tensor '%s' in the file matches no parameter or buffer of the model", nm);
    }
    /* convert everything first so a failure leaves m untouched */
    int total = m->n_ptensors;
    for (int l = 0; l < m->n_layers; l++) { rf_io_buf_slice b[2]; total += rf_io_layer_buffers(&m->layers[l], b); }
    float **v = rf_calloc((size_t)total + 1, sizeof *v);
    float **dst = rf_calloc((size_t)total + 1, sizeof *dst);
    size_t *cnt = rf_calloc((size_t)total + 1, sizeof *cnt);
    rf_status s = (!v || !dst || !cnt) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory") : RF_OK;
    int k = 0;
    for (int i = 0; !s && i < m->n_ptensors; i++, k++) {
        const rf_param *p = &m->ptensors[i];
        s = fetch(ctx, st, p->name, p->ndim, p->shape, &v[k]);
        dst[k] = m->params + p->offset; cnt[k] = p->numel;
    }
    for (int l = 0; !s && l < m->n_layers; l++) {
        rf_io_buf_slice b[2];
        int nb = rf_io_layer_buffers(&m->layers[l], b);
        for (int j = 0; !s && j < nb; j++, k++) {
            int64_t shape[1] = {(int64_t)b[j].numel};
            s = fetch(ctx, st, b[j].name, 1, shape, &v[k]);
            dst[k] = m->buffers + b[j].offset; cnt[k] = b[j].numel;
        }
    }
    if (!s) for (int i = 0; i < k; i++) memcpy(dst[i], v[i], cnt[i] * sizeof(float));
    for (int i = 0; v && i < total; i++) rf_free(v[i]);
    rf_free(v); rf_free(dst); rf_free(cnt);
    return s;
}
