/* Task kind "quantize": int8 post-training quantization (calibrated min-max
 * or percentile ranges) or quantization-aware training of parents[0] with
 * its batch norms folded, saved as an int8 checkpoint (docs/quantization.md
 * lists the settings). */
#include "raffle/quant.h"
#include "raffle/distill.h"
#include "raffle/plan.h"
#include "task/task_keys.h"

#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *const modes[] = {"ptq", "qat", NULL};
static const char *const calibs[] = {"minmax", "percentile", NULL};
static const char *const scheme_names[] = {"int8", "int4", "kmeans", NULL};
static const char *const group_modes[] = {"symmetric", "affine", NULL};

/* ---- the schemes ------------------------------------------------------------------
 * One row per value of `scheme`: what its `bits` may be (its default is the
 * row's), whether it takes groups, whether it quantizes activations. */
typedef enum { SCHEME_INT8 = 0, SCHEME_INT4, SCHEME_KMEANS, SCHEME_COUNT_ } scheme_id;
typedef struct scheme_desc {
    const char *name;
    int bits_lo, bits_hi, bits_def;   /* `bits` (and the values of layer_bits, with 8 also for int4) */
    int groups;                       /* takes group_size / group_mode */
    const char *doc;
} scheme_desc;
static const scheme_desc schemes[SCHEME_COUNT_] = {
    [SCHEME_INT8] = {"int8", 8, 8, 8, 0, "s8 per output channel, u8 activations (Jacob et al. 2018)"},
    [SCHEME_INT4] = {"int4", RF_GROUP_BITS_MIN, RF_GROUP_BITS_MAX, 4, 1,
                     "2-4 bits per group of a row, u8 activations, rf_q4gemm"},
    [SCHEME_KMEANS] = {"kmeans", RF_KMEANS_BITS_MIN, RF_KMEANS_BITS_MAX, 5, 0,
                       "k-means weight sharing, 2^bits values per tensor, float activations (Han et al. 2016)"},
};
_Static_assert(sizeof scheme_names / sizeof scheme_names[0] == SCHEME_COUNT_ + 1, "one name per scheme");

#define KEY_MODE(grid) {.key = "mode", .type = RF_SET_ENUM, .flags = (grid), .choices = modes, .def = "\"ptq\"", \
    .doc = "post-training quantization, or quantization-aware training (fake-quant + STE; kmeans: centroid fine-tuning)"}
#define KEY_CALIB(grid) {.key = "calib", .type = RF_SET_ENUM, .flags = (grid), .choices = calibs, .def = "\"minmax\"", \
    .doc = "PTQ activation range calibration"}
#define KEY_CALIB_BATCHES(grid) {.key = "calib_batches", .type = RF_SET_INT, .flags = (grid), .lo = 1, .hi = 1e6, \
    .def = "8", .unit = "batches", .doc = "PTQ calibration batches"}
/* Added after quantize task ids were published: optional, so an int8 task
 * that does not name them keeps its id. */
#define KEY_SCHEME(grid) {.key = "scheme", .type = RF_SET_ENUM, .flags = (grid) | RF_SF_OPTIONAL, .choices = scheme_names, \
    .def = "\"int8\"", .doc = "int8 (per channel), int4 (groups, rf_q4gemm) or kmeans (weight sharing, Deep Compression)"}
#define KEY_BITS(grid) {.key = "bits", .type = RF_SET_INT, .flags = (grid) | RF_SF_OPTIONAL, .lo = 2, .hi = 8, \
    .unit = "bits", .doc = "weight bits; absent: the scheme's (int8 8; int4 4, range 2-4; kmeans 5, range 2-8)"}
#define KEY_GROUP_SIZE(grid) {.key = "group_size", .type = RF_SET_INT, .flags = (grid) | RF_SF_OPTIONAL, .lo = 32, \
    .hi = 128, .def = "128", .unit = "weights", \
    .doc = "int4: weights per scale along a row, 32, 64 or 128 (rows it cannot divide: see docs/quantization.md)"}
#define KEY_GROUP_MODE(grid) {.key = "group_mode", .type = RF_SET_ENUM, .flags = (grid) | RF_SF_OPTIONAL, \
    .choices = group_modes, .def = "\"symmetric\"", .doc = "int4: symmetric scale, or affine scale + zero point per group"}
#define KEY_LAYER_BITS(grid) {.key = "layer_bits", .type = RF_SET_INTMAP, .flags = (grid) | RF_SF_OPTIONAL, .lo = 2, \
    .hi = 8, .doc = "mixed precision {pattern: bits}: a layer or tensor name, a layer type (linear, conv2d), or a glob; " \
    "the most specific wins (docs/quantization.md)"}

static const rf_setting quant_keys[] = {
    KEY_MODE(0),
    KEY_CALIB(0),
    KEY_CALIB_BATCHES(0),
    {.key = "calib_batch", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 1, .hi = 65536, .def = "256", .unit = "samples",
     .doc = "PTQ calibration batch size"},
    {.key = "percentile", .type = RF_SET_NUM, .flags = RF_SF_OPTIONAL, .lo = 50, .hi = 100, .lo_open = 1, .def = "99.99",
     .doc = "calib percentile: the activation range's percentile"},
    RF_KEY_FREEZE_AFTER,
    RF_KEY_EMA_DECAY,
    KEY_SCHEME(0),
    KEY_BITS(0),
    KEY_GROUP_SIZE(0),
    KEY_GROUP_MODE(0),
    KEY_LAYER_BITS(0),
    RF_SETTINGS_END
};

static scheme_id scheme_of(const cJSON *st) {
    const char *n = rf_settings_str(st, quant_keys, "scheme");
    for (int i = 0; i < SCHEME_COUNT_; i++)
        if (strcmp(n, schemes[i].name) == 0) return (scheme_id)i;
    return SCHEME_INT8;
}

/* "PATH.KEY: message" (PATH empty: "KEY: message"), RF_ERR_JOB, the form of
 * every settings error. */
static rf_status key_error(rf_ctx *ctx, const char *path, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rf_status key_error(rf_ctx *ctx, const char *path, const char *key, const char *fmt, ...) {
    char msg[RF_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rf_error(ctx, RF_ERR_JOB, "%s%s%s: %s", path, path[0] ? "." : "", key, msg);
}

/* The checks one key's bounds cannot make: bits against the scheme, group
 * keys only with groups, layer_bits values. Errors are RF_ERR_JOB naming
 * the key under `path` ("settings"; empty in a job, which prefixes the
 * experiment). */
static rf_status check_scheme(rf_ctx *ctx, const cJSON *st, const char *path) {
    const scheme_id id = scheme_of(st);
    const scheme_desc *d = &schemes[id];
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "bits");
    if (cJSON_IsNumber(b) && (b->valuedouble < d->bits_lo || b->valuedouble > d->bits_hi))
        return key_error(ctx, path, "bits", "%g is outside [%d, %d] for scheme %s", b->valuedouble, d->bits_lo, d->bits_hi,
                         d->name);
    static const char *const group_keys[] = {"group_size", "group_mode"};
    for (int k = 0; k < 2; k++) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(st, group_keys[k]);
        if (g && !d->groups)
            return key_error(ctx, path, group_keys[k], "only scheme int4 takes it (scheme is %s)", d->name);
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(st, "group_size");
    if (cJSON_IsNumber(g) && !rf_group_size_ok((int)g->valuedouble))
        return key_error(ctx, path, "group_size", "%g is not 32, 64 or 128", g->valuedouble);
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(st, "layer_bits");
    if (lb && id == SCHEME_INT8)
        return key_error(ctx, path, "layer_bits", "scheme int8 has one width (mixed precision: scheme int4 or kmeans)");
    for (const cJSON *e = lb ? lb->child : NULL; e; e = e->next) {
        int v = (int)e->valuedouble;
        if ((v < d->bits_lo || v > d->bits_hi) && !(id == SCHEME_INT4 && v == 8))
            return key_error(ctx, path, "layer_bits", "%s: %d is outside [%d, %d]%s for scheme %s", e->string, v, d->bits_lo,
                             d->bits_hi, id == SCHEME_INT4 ? " (or 8)" : "", d->name);
    }
    return RF_OK;
}

/* ---- mixed precision: the bits of each product -------------------------------------
 * A layer_bits key names a product by, most specific first: its weight
 * tensor or layer name exactly ("fc1.weight", "fc1"), its layer type
 * ("linear", "conv2d"), or a glob over tensor and layer names ("blocks.*");
 * among matching globs the longest pattern wins (then byte order). The
 * order does not depend on the object's key order, which a task's
 * canonical settings sort. */
static int layer_bits_for(const cJSON *lb, const rf_model *m, int param, int dflt) {
    const rf_param *p = &m->ptensors[param];
    const rf_layer *L = &m->layers[p->layer];
    const char *type = rf_layer_type_name(L->type);
    int best = dflt, rank = 0;   /* 3 exact name, 2 layer type, 1 glob */
    size_t best_len = 0;
    const char *best_pat = NULL;
    for (const cJSON *e = lb ? lb->child : NULL; e; e = e->next) {
        const char *k = e->string;
        int r = strcmp(k, p->name) == 0 || strcmp(k, L->name) == 0 ? 3 : type && strcmp(k, type) == 0 ? 2
              : fnmatch(k, p->name, 0) == 0 || fnmatch(k, L->name, 0) == 0 ? 1 : 0;
        if (!r || r < rank) continue;
        size_t len = strlen(k);
        if (r == rank && (len < best_len || (len == best_len && strcmp(k, best_pat) > 0))) continue;
        rank = r; best_len = len; best_pat = k;
        best = (int)e->valuedouble;
    }
    return best;
}

static int setting_bits(const cJSON *st) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "bits");
    return cJSON_IsNumber(b) ? (int)b->valuedouble : schemes[scheme_of(st)].bits_def;
}

/* After the quantized checkpoint replaced OUT_DIR/model.rckpt: its size and
 * the ratios. compression_ratio is every kind's (rf_task_finish; Deep
 * Compression's): raw fp32, 4 bytes a parameter, over this file;
 * dense_compression_ratio is raffle's dense checkpoint of the same (now
 * quantized) weights over this file. */
static rf_status set_ckpt_bytes(rf_ctx *ctx, const char *path, uint64_t bytes, cJSON *metrics) {
    struct stat st;
    if (stat(path, &st) == 0) bytes = (uint64_t)st.st_size;
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(metrics, "dense_bytes");
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(metrics, "raw_fp32_bytes");
    double dense_ratio = cJSON_IsNumber(dense) && bytes > 0 ? dense->valuedouble / (double)bytes : 0.0;
    double ratio = cJSON_IsNumber(raw) && bytes > 0 ? raw->valuedouble / (double)bytes : 0.0;
    static const char *const replaced[] = {"bytes", "compression_ratio", "dense_compression_ratio"};
    for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, replaced[i]);
    if (!cJSON_AddNumberToObject(metrics, "bytes", (double)bytes) ||
        !cJSON_AddNumberToObject(metrics, "compression_ratio", ratio) ||
        !cJSON_AddNumberToObject(metrics, "dense_compression_ratio", dense_ratio))
        return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    return RF_OK;
}

/* Replaces OUT_DIR/model.rckpt (written by rf_task_finish as float) by the
 * quantized checkpoint c (consumed) and updates the size metrics. */
static rf_status replace_ckpt(rf_ctx *ctx, const rf_task_io *io, rf_ckpt *c, cJSON *metrics) {
    char path[4096];
    rf_status s = (size_t)snprintf(path, sizeof path, "%s/model.rckpt", io->out_dir) >= sizeof path
                      ? rf_error(ctx, RF_ERR_INVALID, "quantize: output directory path too long")
                      : rf_ckpt_write(ctx, c, path);
    uint64_t bytes = c->file_bytes;
    rf_ckpt_free(c);
    return s == RF_OK ? set_ckpt_bytes(ctx, path, bytes, metrics) : s;
}

/* The quantized checkpoint's metadata: the kind's extra with the task's
 * settings and the chain's raw fp32 size rf_task_finish used, so a later
 * reader (and the ratio of anything after it) keeps the dense baseline.
 * New string (cJSON_free). */
static rf_status quant_meta(rf_ctx *ctx, const rf_task_io *io, const char *extra, const cJSON *metrics, char **out) {
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(metrics, "raw_fp32_bytes");
    *out = rf_task_ckpt_meta(extra, io, cJSON_IsNumber(raw) ? raw->valuedouble : 0.0);
    return *out ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "quantize: checkpoint metadata");
}

rf_status rf_quant_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_quant *q,
                               const char *extra_json, cJSON *metrics) {
    RF_TRY(rf_task_finish(ctx, io, m, extra_json, metrics));
    rf_ckpt *c;
    char *meta;
    RF_TRY(quant_meta(ctx, io, extra_json, metrics, &meta));
    rf_status st = rf_quant_to_ckpt(ctx, q, m, meta, &c);
    cJSON_free(meta);
    RF_TRY(st);
    RF_TRY(replace_ckpt(ctx, io, c, metrics));
    int n4 = 0, n = rf_quant_n_layers(q);
    for (int i = 0; i < n; i++) n4 += rf_quant_layer((rf_quant *)q, i)->bits < 8;
    static const char *const replaced[] = {"quantized", "calib", "int8_layers", "int8_products", "int4_products"};
    for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, replaced[i]);
    if (!cJSON_AddBoolToObject(metrics, "quantized", 1) ||
        !cJSON_AddStringToObject(metrics, "calib", rf_calib_name(rf_quant_calib(q))) ||
        !cJSON_AddNumberToObject(metrics, "int8_layers", n) ||
        !cJSON_AddNumberToObject(metrics, "int8_products", n - n4) ||
        (n4 && !cJSON_AddNumberToObject(metrics, "int4_products", n4)))
        return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    return RF_OK;
}

/* Quantized against fp32 latency at batch 1 and 64 on test samples, named
 * after the scheme (int8_latency_b1_ms, int4_latency_b1_ms, ...). The fp32
 * side detaches every product of q (layer-level and per-weight overrides),
 * which is why this replaces rf_task_finish's "dense_latency_ms": that one
 * lifts only the layer-level overrides, leaving a transformer block's
 * integer products in place. q is re-enabled afterwards. */
static rf_status add_quant_latency(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_quant *q, const char *scheme,
                                   cJSON *metrics) {
    static const int batches[2] = {1, 64};
    const rf_dataset *ds = io->test ? io->test : io->train;
    size_t ss = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    float *x = rf_calloc((size_t)batches[1] * ss, sizeof(float));
    if (!x) return rf_error(ctx, RF_ERR_NOMEM, "quantize: latency");
    if (ds && ds->n > 0 && (size_t)ds->c * ds->h * ds->w == ss)
        for (int i = 0; i < batches[1]; i++) memcpy(x + (size_t)i * ss, ds->x + (size_t)(i % ds->n) * ss, ss * sizeof(float));
    double tq[2] = {0, 0}, t32[2] = {0, 0};
    rf_status s = RF_OK;
    for (int b = 0; b < 2 && s == RF_OK; b++) s = rf_task_time_forward(ctx, m, x, batches[b], 0.3, &tq[b]);
    rf_quant_detach(q, m);
    for (int b = 0; b < 2 && s == RF_OK; b++) s = rf_task_time_forward(ctx, m, x, batches[b], 0.3, &t32[b]);
    rf_status e = rf_quant_enable(ctx, q, m, RF_QPATH_INT8);
    rf_free(x);
    if (s != RF_OK) return s;
    if (e != RF_OK) return e;
    char k[6][48];
    static const char *const fmt[6] = {"%s_latency_b1_ms", "%s_latency_b64_ms", "fp32_latency_b1_ms", "fp32_latency_b64_ms",
                                       "%s_speedup_b1", "%s_speedup_b64"};
    const double v[6] = {tq[0] * 1e3, tq[1] * 1e3, t32[0] * 1e3, t32[1] * 1e3, tq[0] > 0 ? t32[0] / tq[0] : 0.0,
                         tq[1] > 0 ? t32[1] / tq[1] : 0.0};
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "dense_latency_ms");
    for (int i = 0; i < 6; i++) {
        snprintf(k[i], sizeof k[i], fmt[i], scheme);
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, k[i]);
        if (!cJSON_AddNumberToObject(metrics, k[i], v[i])) return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    }
    if (!cJSON_AddNumberToObject(metrics, "dense_latency_ms", t32[0] * 1e3)) return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    return RF_OK;
}

/* The per-product bits of an int4 task and the group policy: a product
 * takes `group_size` when it divides the row; a row no longer than the
 * group is one group; when no group size of 32, 64 or 128 divides the row
 * (lenet-300-100's 784, 300, 100) one group per row too; when a smaller
 * size would divide it but the one asked does not, it is an error naming
 * the sizes that fit. Products at 8 bits stay int8. */
static rf_status set_formats(rf_ctx *ctx, const cJSON *st, rf_model *m, rf_quant *q) {
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(st, "layer_bits");
    const int dflt = setting_bits(st), gs = (int)rf_settings_num(st, quant_keys, "group_size");
    const rf_group_mode mode = (rf_group_mode)rf_group_mode_from_name(rf_settings_str(st, quant_keys, "group_mode"));
    for (int i = 0; i < rf_quant_n_layers(q); i++) {
        const rf_qlayer_info *in = rf_quant_layer(q, i);
        const char *name = m->ptensors[in->param].name;
        int bits = layer_bits_for(lb, m, in->param, dflt), g = gs;
        if (bits < 8 && in->K <= gs) {
            g = in->K;   /* the row fits in one group */
        } else if (bits < 8 && in->K % gs) {
            char fit[32] = "";
            for (int c = 32, k = 0; c <= 128; c *= 2)
                if (in->K % c == 0) k += snprintf(fit + k, sizeof fit - (size_t)k, "%s%d", k ? ", " : "", c);
            if (fit[0])
                return rf_error(ctx, RF_ERR_INVALID, "quantize: group_size %d does not divide the rows of %s (%d); %s would",
                                gs, name, in->K, fit);
            g = in->K;   /* no group size divides the row: one group per row */
        }
        RF_TRY(rf_quant_set_weights(ctx, q, m, i, bits, g, mode));
    }
    return RF_OK;
}

static rf_status run_ptq(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_quant **q) {
    const cJSON *st = io->settings;
    int cm = rf_calib_from_name(rf_settings_str(st, quant_keys, "calib"));
    double pct = rf_settings_num(st, quant_keys, "percentile");
    int batches = (int)rf_settings_num(st, quant_keys, "calib_batches");
    int batch = (int)rf_settings_num(st, quant_keys, "calib_batch");
    RF_TRY(rf_quant_new(ctx, m, q));
    rf_status s = scheme_of(st) == SCHEME_INT4 ? set_formats(ctx, st, m, *q) : RF_OK;
    if (s == RF_OK) s = rf_quant_calibrate(ctx, *q, m, io->train, batch, batches, (rf_calib)cm, pct);
    if (s == RF_OK) s = rf_quant_enable(ctx, *q, m, RF_QPATH_INT8);
    if (s != RF_OK) { rf_quant_detach(*q, m); rf_quant_free(*q); *q = NULL; }
    return s;
}

static rf_status run_qat(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_train_curve *curve, rf_quant **q,
                         rf_train_result *r) {
    rf_quant *fmt = NULL;
    rf_status s = RF_OK;
    if (scheme_of(io->settings) == SCHEME_INT4) {
        s = rf_quant_new(ctx, m, &fmt);
        if (s == RF_OK) s = set_formats(ctx, io->settings, m, fmt);
    }
    if (s == RF_OK) s = rf_ofa_run_qat(ctx, io, m, NULL, NULL, fmt, curve, q, r);
    rf_quant_free(fmt);
    return s;
}

/* ---- kmeans: weight sharing and centroid fine-tuning --------------------------------- */
static rf_status run_kmeans(rf_ctx *ctx, const rf_task_io *io, rf_model *m, int qat, rf_train_curve *curve, rf_share **out,
                            rf_train_result *r) {
    *out = NULL;
    const cJSON *st = io->settings;
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(st, "layer_bits");
    int *bits = rf_calloc((size_t)m->n_ptensors + 1, sizeof *bits);
    if (!bits) return rf_error(ctx, RF_ERR_NOMEM, "quantize: out of memory");
    /* the weights of the products int8 would quantize (linear, conv, patch
     * embedding, attention and MLP products) */
    rf_quant *desc = NULL;
    rf_status s = rf_quant_new(ctx, m, &desc);
    for (int i = 0; s == RF_OK && i < rf_quant_n_layers(desc); i++) {
        int p = rf_quant_layer(desc, i)->param;
        bits[p] = layer_bits_for(lb, m, p, setting_bits(st));
    }
    rf_quant_free(desc);
    rf_share *sh = NULL;
    if (s == RF_OK) s = rf_share_new(ctx, m, bits, 0, &sh);
    rf_free(bits);
    if (s == RF_OK && qat) {
        rf_train_cfg cfg;
        rf_train_hooks h;
        s = rf_task_train_cfg_io(ctx, io, 100, &cfg);
        cfg.curve = curve;
        if (s == RF_OK) s = rf_share_hooks(ctx, sh, &cfg.optim, &h);
        if (s == RF_OK) s = rf_train(ctx, m, io->train, io->val, io->test, &cfg, NULL, &h, r);
        if (s == RF_OK && r->stopped)
            s = rf_error(ctx, RF_ERR_PREEMPTED, "quantize: stopped on request after %lld steps", (long long)r->steps);
    }
    if (s != RF_OK) { rf_share_free(sh); return s; }
    *out = sh;
    return RF_OK;
}

static rf_status kmeans_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_share *sh, const char *extra,
                               cJSON *metrics) {
    RF_TRY(rf_task_finish(ctx, io, m, extra, metrics));
    rf_ckpt *c;
    char *meta;
    RF_TRY(quant_meta(ctx, io, extra, metrics, &meta));
    rf_status st = rf_share_to_ckpt(ctx, sh, m, meta, &c);
    cJSON_free(meta);
    RF_TRY(st);
    RF_TRY(replace_ckpt(ctx, io, c, metrics));
    cJSON *wb = cJSON_CreateObject();
    int empty = 0, ok = wb != NULL;
    for (int i = 0; ok && i < rf_share_count(sh); i++) {
        const rf_share_tensor *t = rf_share_get(sh, i);
        ok = cJSON_AddNumberToObject(wb, m->ptensors[t->param].name, t->bits) != NULL;
        empty += t->km.empty;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "weight_bits");
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "kmeans_empty_clusters");
    if (!ok || !cJSON_AddItemToObject(metrics, "weight_bits", wb) ||
        !cJSON_AddNumberToObject(metrics, "kmeans_empty_clusters", empty)) {
        if (!ok) cJSON_Delete(wb);
        return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    }
    return RF_OK;
}

/* The effective bits of every quantized weight for metrics ("weight_bits"). */
static rf_status add_weight_bits(rf_ctx *ctx, const rf_model *m, rf_quant *q, cJSON *metrics) {
    cJSON *wb = cJSON_CreateObject();
    int ok = wb != NULL;
    for (int i = 0; ok && i < rf_quant_n_layers(q); i++) {
        const rf_qlayer_info *in = rf_quant_layer(q, i);
        ok = cJSON_AddNumberToObject(wb, m->ptensors[in->param].name, in->bits) != NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "weight_bits");
    if (!ok || !cJSON_AddItemToObject(metrics, "weight_bits", wb)) {
        if (!ok) cJSON_Delete(wb);
        return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    }
    return RF_OK;
}

rf_status rf_task_quantize(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "quantize: no training data (calibration reads it)");
    RF_TRY(rf_kind_check(ctx, &rf_kind_quantize, io->settings, "settings"));
    if (check_scheme(ctx, io->settings, "settings") != RF_OK) {
        ctx->status = RF_ERR_INVALID;
        rf_error_prefix(ctx, "quantize");
        return RF_ERR_INVALID;
    }
    const char *mname = rf_settings_str(io->settings, quant_keys, "mode");
    const int qat = strcmp(mname, "qat") == 0;
    const scheme_id scheme = scheme_of(io->settings);
    rf_model *m = NULL;
    rf_quant *q = NULL;
    rf_share *sh = NULL;
    RF_TRY(rf_quant_load(ctx, io->parent_ckpts[0], &m, &q));
    rf_status s = RF_OK;
    if (q) s = rf_error(ctx, RF_ERR_INVALID, "quantize: %s is already quantized", io->parent_ckpts[0]);
    double fp32_acc = -1.0, fp32_loss;
    if (s == RF_OK) s = rf_task_evaluate(ctx, io, m, &fp32_acc, &fp32_loss, NULL);
    /* Batch norm folded into the conv or linear before it (Jacob et al.
     * 2018, §3.2): the int8 model has no float batch-norm pass, and the
     * folded weights are what gets quantized (per output channel, so the
     * fold's per-channel scale does not change their grid). QAT fine-tunes
     * the folded model. The int8 checkpoint is the folded model. Weight
     * sharing keeps float activations and so its batch norms. */
    int n_folded = 0;
    if (s == RF_OK && scheme != SCHEME_KMEANS) {
        rf_model *f = NULL;
        s = rf_model_fold_bn(ctx, m, &f, &n_folded);
        if (s == RF_OK && n_folded > 0) { rf_model_free(m); m = f; }
        else rf_model_free(f);
    }
    rf_train_result r;
    memset(&r, 0, sizeof r);
    rf_train_curve curve = {0};   /* QAT and centroid fine-tuning train: their curve is kept */
    if (s == RF_OK && scheme == SCHEME_KMEANS) s = run_kmeans(ctx, io, m, qat, &curve, &sh, &r);
    else if (s == RF_OK && !qat) s = run_ptq(ctx, io, m, &q);
    else if (s == RF_OK) s = run_qat(ctx, io, m, &curve, &q, &r);
    char *extra = NULL;
    if (s == RF_OK) s = rf_task_ckpt_extra(ctx, "quantize", io, -1, -1, &extra);
    if (s == RF_OK && sh) s = kmeans_finish(ctx, io, m, sh, extra, metrics);
    if (s == RF_OK && q) s = rf_quant_task_finish(ctx, io, m, q, extra, metrics);
    if (s == RF_OK && q) s = add_quant_latency(ctx, io, m, q, schemes[scheme].name, metrics);
    if (s == RF_OK && q) s = add_weight_bits(ctx, m, q, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddStringToObject(metrics, "mode", mname) ||
            !cJSON_AddStringToObject(metrics, "scheme", schemes[scheme].name) ||
            !cJSON_AddNumberToObject(metrics, "fp32_test_accuracy", fp32_acc) ||
            !cJSON_AddNumberToObject(metrics, "folded_batchnorms", n_folded) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            (r.steps && (!rf_task_add_selection(&r, metrics) || !rf_task_add_curve(metrics, &curve))) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    }
    cJSON_free(extra);
    rf_free(curve.v);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_share_free(sh);
    rf_model_free(m);
    return s;
}

/* ---- the experiment -------------------------------------------------------------
 * DAG: dense train -> [prune, when the experiment has a `prune` object] ->
 * quantize. */
static int expand_quantize(rf_plan *p, const rf_point *pt) {
    if (check_scheme(rf_plan_ctx(p), pt->x, "") != RF_OK) return -1;
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(pt->x, "prune");
    int32_t parent = pt->from >= 0 ? pt->from : pr ? rf_prune_plan_task(p, pt, pr) : rf_plan_dense(p, pt, pt->data, pt->model, pt->train);
    if (parent < 0) return -1;
    cJSON *s = rf_plan_settings(pt, pt->data, pt->model, NULL);
    static const char *const keys[] = {"mode", "calib", "calib_batches", "scheme", "bits", "group_size", "group_mode",
                                       "layer_bits", NULL};
    if (!s || !rf_plan_copy_keys(s, pt->x, keys)) return rf_plan_nomem(p, s);
    double cost = 0.1;
    if (strcmp(cJSON_GetObjectItemCaseSensitive(pt->x, "mode")->valuestring, "qat") == 0) {
        cJSON *q = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(pt->x, "qat_train"));
        if (!q) return rf_plan_nomem(p, s);
        cost = rf_plan_train_cost(q, pt->data, pt->model) * 1.3;
        int ok = 1;
        for (const cJSON *c = q->child; ok && c; c = c->next) ok = rf_plan_put(s, c->string, cJSON_Duplicate(c, 1));
        cJSON_Delete(q);
        if (!ok) return rf_plan_nomem(p, s);
    }
    return rf_plan_add(p, RF_JOB_QUANTIZE, s, &parent, 1, cost) < 0 ? -1 : 0;
}

/* "int8-ptq", "int4-g64-qat", "int3-g128-ptq", "kmeans5-qat"; "+mixed" with layer_bits. */
static const char *label_quantize(const cJSON *set, char *buf, size_t n) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(set, "mode");
    const char *mode = cJSON_IsString(m) ? m->valuestring : "ptq";
    const scheme_id id = scheme_of(set);
    const int bits = setting_bits(set);
    const char *mixed = cJSON_GetObjectItemCaseSensitive(set, "layer_bits") ? "+mixed" : "";
    if (id == SCHEME_INT8) snprintf(buf, n, "int8-%s", mode);
    else if (id == SCHEME_INT4)
        snprintf(buf, n, "int%d-g%d%s-%s", bits, (int)rf_settings_num(set, quant_keys, "group_size"), mixed, mode);
    else snprintf(buf, n, "kmeans%d%s-%s", bits, mixed, mode);
    return buf;
}

static const rf_setting quant_exp_keys[] = {
    KEY_MODE(RF_SF_GRID),
    KEY_CALIB(RF_SF_GRID),
    KEY_CALIB_BATCHES(RF_SF_GRID),
    {.key = "qat_train", .type = RF_SET_OBJ, .sub = rf_train_settings,
     .doc = "QAT training over the experiment's `train` (only for `qat`; kmeans: the centroid fine-tuning)"},
    KEY_SCHEME(RF_SF_GRID),
    KEY_BITS(RF_SF_GRID),
    KEY_GROUP_SIZE(RF_SF_GRID),
    KEY_GROUP_MODE(RF_SF_GRID),
    KEY_LAYER_BITS(RF_SF_GRID),
    {.key = "prune", .type = RF_SET_OBJ, .flags = RF_SF_OPTIONAL, .sub = rf_prune_exp_keys,
     .doc = "quantize a pruned model: the `prune` experiment's keys (method, sparsity, layer_sparsity, finetune, ...)"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_quantize = {
    .name = "quantize",
    .summary = "quantization: int8 or int4 (PTQ, QAT) or k-means weight sharing (+ centroid fine-tuning)",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_CKPT | RF_KIND_FROM | RF_KIND_INT8,
    .keys = quant_keys, .train_when = "mode=qat", .min_parents = 1, .max_parents = 1,
    .parents_doc = "the float model",
    .run = rf_task_quantize,
    .experiment = "quantize", .exp_keys = quant_exp_keys,
    .exp_doc = "dense `train` → [`prune` with the experiment's `prune` object] → `quantize`",
    .expand = expand_quantize, .label = label_quantize, .plot = RF_PLOT_QUANT,
};
