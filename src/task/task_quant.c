/* Task kind "quantize": int8 post-training quantization (calibrated min-max
 * or percentile ranges) or quantization-aware training of parents[0] with
 * its batch norms folded, saved as an int8 checkpoint (docs/quantization.md
 * lists the settings). */
#include "raffle/quant.h"
#include "raffle/distill.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *setting_str(const cJSON *s, const char *key, const char *def) {
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : def;
}

static rf_status setting_num(rf_ctx *ctx, const cJSON *s, const char *key, double lo, double hi, double *out) {
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    if (!v || cJSON_IsNull(v)) return RF_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return rf_error(ctx, RF_ERR_INVALID, "settings \"%s\": expected a number in [%g, %g]", key, lo, hi);
    *out = v->valuedouble;
    return RF_OK;
}

rf_status rf_quant_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_quant *q,
                               const char *extra_json, cJSON *metrics) {
    RF_TRY(rf_task_finish(ctx, io, m, extra_json, metrics));
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.rckpt", io->out_dir) >= sizeof path)
        return rf_error(ctx, RF_ERR_INVALID, "quantize: output directory path too long");
    uint64_t bytes = 0;
    RF_TRY(rf_quant_save(ctx, q, m, extra_json, path, &bytes));
    struct stat st;
    if (stat(path, &st) == 0) bytes = (uint64_t)st.st_size;
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(metrics, "dense_bytes");
    double ratio = cJSON_IsNumber(dense) && bytes > 0 ? dense->valuedouble / (double)bytes : 0.0;
    static const char *const replaced[] = {"bytes", "compression_ratio", "quantized", "calib", "int8_layers", "int8_products"};
    for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, replaced[i]);
    if (!cJSON_AddNumberToObject(metrics, "bytes", (double)bytes) ||
        !cJSON_AddNumberToObject(metrics, "compression_ratio", ratio) ||
        !cJSON_AddBoolToObject(metrics, "quantized", 1) ||
        !cJSON_AddStringToObject(metrics, "calib", rf_calib_name(rf_quant_calib(q))) ||
        !cJSON_AddNumberToObject(metrics, "int8_layers", rf_quant_n_layers(q)) ||
        !cJSON_AddNumberToObject(metrics, "int8_products", rf_quant_n_layers(q)))
        return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    return RF_OK;
}

/* Best-of-N seconds of one inference forward of `batch` samples (the
 * minimum is the most repeatable statistic on a shared machine). */
static rf_status time_forward(rf_ctx *ctx, rf_model *m, const float *x, int batch, double *best) {
    const float *logits;
    RF_TRY(rf_model_forward(ctx, m, x, batch, 0, &logits));   /* warm-up: sizes buffers */
    *best = INFINITY;
    double start = rf_now();
    for (int r = 0; r < 200 && (r < 5 || rf_now() - start < 0.3); r++) {
        double t = rf_now();
        RF_TRY(rf_model_forward(ctx, m, x, batch, 0, &logits));
        t = rf_now() - t;
        if (t < *best) *best = t;
    }
    return RF_OK;
}

/* int8 against fp32 latency at batch 1 and 64 on test samples. The fp32
 * side detaches every product of q (layer-level and per-weight overrides),
 * which is why this replaces rf_task_finish's "dense_latency_ms": that one
 * lifts only the layer-level overrides, leaving a transformer block's int8
 * products in place. q is re-enabled afterwards. */
static rf_status add_int8_latency(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_quant *q, cJSON *metrics) {
    static const int batches[2] = {1, 64};
    const rf_dataset *ds = io->test ? io->test : io->train;
    size_t ss = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    float *x = rf_calloc((size_t)batches[1] * ss, sizeof(float));
    if (!x) return rf_error(ctx, RF_ERR_NOMEM, "quantize: latency");
    if (ds && ds->n > 0 && (size_t)ds->c * ds->h * ds->w == ss)
        for (int i = 0; i < batches[1]; i++) memcpy(x + (size_t)i * ss, ds->x + (size_t)(i % ds->n) * ss, ss * sizeof(float));
    double t8[2] = {0, 0}, t32[2] = {0, 0};
    rf_status s = RF_OK;
    for (int b = 0; b < 2 && s == RF_OK; b++) s = time_forward(ctx, m, x, batches[b], &t8[b]);
    rf_quant_detach(q, m);
    for (int b = 0; b < 2 && s == RF_OK; b++) s = time_forward(ctx, m, x, batches[b], &t32[b]);
    rf_status e = rf_quant_enable(ctx, q, m, RF_QPATH_INT8);
    rf_free(x);
    if (s != RF_OK) return s;
    if (e != RF_OK) return e;
    static const char *const keys[] = {"int8_latency_b1_ms", "int8_latency_b64_ms", "fp32_latency_b1_ms",
                                       "fp32_latency_b64_ms", "int8_speedup_b1", "int8_speedup_b64", "dense_latency_ms"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, keys[i]);
    if (!cJSON_AddNumberToObject(metrics, "int8_latency_b1_ms", t8[0] * 1e3) ||
        !cJSON_AddNumberToObject(metrics, "int8_latency_b64_ms", t8[1] * 1e3) ||
        !cJSON_AddNumberToObject(metrics, "fp32_latency_b1_ms", t32[0] * 1e3) ||
        !cJSON_AddNumberToObject(metrics, "fp32_latency_b64_ms", t32[1] * 1e3) ||
        !cJSON_AddNumberToObject(metrics, "int8_speedup_b1", t8[0] > 0 ? t32[0] / t8[0] : 0.0) ||
        !cJSON_AddNumberToObject(metrics, "int8_speedup_b64", t8[1] > 0 ? t32[1] / t8[1] : 0.0) ||
        !cJSON_AddNumberToObject(metrics, "dense_latency_ms", t32[0] * 1e3))
        return rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    return RF_OK;
}

static rf_status run_ptq(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_quant **q) {
    const char *cname = setting_str(io->settings, "calib", "minmax");
    int cm = rf_calib_from_name(cname);
    if (cm != RF_CALIB_MINMAX && cm != RF_CALIB_PERCENTILE)
        return rf_error(ctx, RF_ERR_INVALID, "settings \"calib\": expected minmax or percentile, got \"%s\"", cname);
    double pct = 99.99, batches = 8, batch = 256;
    RF_TRY(setting_num(ctx, io->settings, "percentile", 50.0001, 100, &pct));
    RF_TRY(setting_num(ctx, io->settings, "calib_batches", 1, 1e6, &batches));
    RF_TRY(setting_num(ctx, io->settings, "calib_batch", 1, 1 << 16, &batch));
    RF_TRY(rf_quant_new(ctx, m, q));
    rf_status s = rf_quant_calibrate(ctx, *q, m, io->train, (int)batch, (int)batches, (rf_calib)cm, pct);
    if (s == RF_OK) s = rf_quant_enable(ctx, *q, m, RF_QPATH_INT8);
    if (s != RF_OK) { rf_quant_detach(*q, m); rf_quant_free(*q); *q = NULL; }
    return s;
}

typedef enum { MODE_PTQ, MODE_QAT } quant_mode;
static const struct { const char *name; quant_mode mode; } modes[] = { {"ptq", MODE_PTQ}, {"qat", MODE_QAT} };

rf_status rf_task_quantize(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "quantize: needs the float model as its parent");
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "quantize: no training data (calibration reads it)");
    const char *mname = setting_str(io->settings, "mode", "ptq");
    int mode = -1;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) if (strcmp(modes[i].name, mname) == 0) mode = (int)modes[i].mode;
    if (mode < 0) return rf_error(ctx, RF_ERR_INVALID, "settings \"mode\": expected ptq or qat, got \"%s\"", mname);
    rf_model *m = NULL;
    rf_quant *q = NULL;
    RF_TRY(rf_quant_load(ctx, io->parent_ckpts[0], &m, &q));
    rf_status s = RF_OK;
    if (q) s = rf_error(ctx, RF_ERR_INVALID, "quantize: %s is already quantized", io->parent_ckpts[0]);
    double fp32_acc = -1.0, fp32_loss;
    if (s == RF_OK) s = rf_task_evaluate(ctx, io, m, &fp32_acc, &fp32_loss, NULL);
    /* Batch norm folded into the conv or linear before it (Jacob et al.
     * 2018, §3.2): the int8 model has no float batch-norm pass, and the
     * folded weights are what gets quantized (per output channel, so the
     * fold's per-channel scale does not change their grid). QAT fine-tunes
     * the folded model. The int8 checkpoint is the folded model. */
    int n_folded = 0;
    if (s == RF_OK) {
        rf_model *f = NULL;
        s = rf_model_fold_bn(ctx, m, &f, &n_folded);
        if (s == RF_OK && n_folded > 0) { rf_model_free(m); m = f; }
        else rf_model_free(f);
    }
    rf_train_result r;
    memset(&r, 0, sizeof r);
    if (s == RF_OK && mode == MODE_PTQ) s = run_ptq(ctx, io, m, &q);
    if (s == RF_OK && mode == MODE_QAT) s = rf_ofa_run_qat(ctx, io, m, NULL, NULL, &q, &r);
    char *extra = NULL;
    if (s == RF_OK) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddStringToObject(e, "kind", "quantize") ||
            !cJSON_AddItemToObject(e, "settings", cJSON_Duplicate(io->settings, 1)) ||
            !(extra = cJSON_PrintUnformatted(e)))
            s = rf_error(ctx, RF_ERR_NOMEM, "quantize: cannot build checkpoint metadata");
        cJSON_Delete(e);
    }
    if (s == RF_OK) s = rf_quant_task_finish(ctx, io, m, q, extra, metrics);
    if (s == RF_OK) s = add_int8_latency(ctx, io, m, q, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddStringToObject(metrics, "mode", mname) ||
            !cJSON_AddNumberToObject(metrics, "fp32_accuracy", fp32_acc) ||
            !cJSON_AddNumberToObject(metrics, "folded_batchnorms", n_folded) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "quantize: metrics");
    }
    cJSON_free(extra);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
    return s;
}
