/* Task kind "quantize": int8 post-training quantization (calibrated min-max
 * or percentile ranges) or quantization-aware training of parents[0] with
 * its batch norms folded, saved as an int8 checkpoint (docs/quantization.md
 * lists the settings). */
#include "raffle/quant.h"
#include "raffle/distill.h"
#include "raffle/plan.h"
#include "task/task_keys.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *const modes[] = {"ptq", "qat", NULL};
static const char *const calibs[] = {"minmax", "percentile", NULL};

#define KEY_MODE(grid) {.key = "mode", .type = RF_SET_ENUM, .flags = (grid), .choices = modes, .def = "\"ptq\"", \
    .doc = "post-training quantization, or quantization-aware training (fake-quant + STE)"}
#define KEY_CALIB(grid) {.key = "calib", .type = RF_SET_ENUM, .flags = (grid), .choices = calibs, .def = "\"minmax\"", \
    .doc = "PTQ activation range calibration"}
#define KEY_CALIB_BATCHES(grid) {.key = "calib_batches", .type = RF_SET_INT, .flags = (grid), .lo = 1, .hi = 1e6, \
    .def = "8", .unit = "batches", .doc = "PTQ calibration batches"}

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
    RF_SETTINGS_END
};

rf_status rf_quant_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_quant *q,
                               const char *extra_json, cJSON *metrics) {
    RF_TRY(rf_task_finish(ctx, io, m, extra_json, metrics));
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.rckpt", io->out_dir) >= sizeof path)
        return rf_error(ctx, RF_ERR_INVALID, "quantize: output directory path too long");
    uint64_t bytes = 0;
    /* the int8 checkpoint replaces the fp32 one: the same metadata, with
     * the chain's raw fp32 size rf_task_finish used */
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(metrics, "raw_fp32_bytes");
    char *meta = rf_task_ckpt_meta(extra_json, io, cJSON_IsNumber(raw) ? raw->valuedouble : 0.0);
    if (!meta) return rf_error(ctx, RF_ERR_NOMEM, "quantize: checkpoint metadata");
    rf_status s = rf_quant_save(ctx, q, m, meta, path, &bytes);
    cJSON_free(meta);
    RF_TRY(s);
    struct stat st;
    if (stat(path, &st) == 0) bytes = (uint64_t)st.st_size;
    /* raw fp32 of the dense model over the int8 file (issue 23: not the
     * compressed dense file, which ranked QAT below its own float parent) */
    double ratio = cJSON_IsNumber(raw) && bytes > 0 ? raw->valuedouble / (double)bytes : 0.0;
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
    for (int b = 0; b < 2 && s == RF_OK; b++) s = rf_task_time_forward(ctx, m, x, batches[b], 0.3, &t8[b]);
    rf_quant_detach(q, m);
    for (int b = 0; b < 2 && s == RF_OK; b++) s = rf_task_time_forward(ctx, m, x, batches[b], 0.3, &t32[b]);
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
    const cJSON *st = io->settings;
    int cm = rf_calib_from_name(rf_settings_str(st, quant_keys, "calib"));
    double pct = rf_settings_num(st, quant_keys, "percentile");
    int batches = (int)rf_settings_num(st, quant_keys, "calib_batches");
    int batch = (int)rf_settings_num(st, quant_keys, "calib_batch");
    RF_TRY(rf_quant_new(ctx, m, q));
    rf_status s = rf_quant_calibrate(ctx, *q, m, io->train, batch, batches, (rf_calib)cm, pct);
    if (s == RF_OK) s = rf_quant_enable(ctx, *q, m, RF_QPATH_INT8);
    if (s != RF_OK) { rf_quant_detach(*q, m); rf_quant_free(*q); *q = NULL; }
    return s;
}

rf_status rf_task_quantize(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "quantize: no training data (calibration reads it)");
    RF_TRY(rf_kind_check(ctx, &rf_kind_quantize, io->settings, "settings"));
    const char *mname = rf_settings_str(io->settings, quant_keys, "mode");
    const int qat = strcmp(mname, "qat") == 0;
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
    if (s == RF_OK && !qat) s = run_ptq(ctx, io, m, &q);
    if (s == RF_OK && qat) s = rf_ofa_run_qat(ctx, io, m, NULL, NULL, &q, &r);
    char *extra = NULL;
    if (s == RF_OK) s = rf_task_ckpt_extra(ctx, "quantize", io, -1, -1, &extra);
    if (s == RF_OK) s = rf_quant_task_finish(ctx, io, m, q, extra, metrics);
    if (s == RF_OK) s = add_int8_latency(ctx, io, m, q, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddStringToObject(metrics, "mode", mname) ||
            !cJSON_AddNumberToObject(metrics, "fp32_test_accuracy", fp32_acc) ||
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

/* ---- the experiment ------------------------------------------------------------- */
static int expand_quantize(rf_plan *p, const rf_point *pt) {
    int32_t dense = rf_plan_start(p, pt, pt->train);
    if (dense < 0) return -1;
    cJSON *s = rf_plan_settings(pt, pt->data, pt->model, NULL);
    static const char *const keys[] = {"mode", "calib", "calib_batches", NULL};
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
    return rf_plan_add(p, RF_JOB_QUANTIZE, s, &dense, 1, cost) < 0 ? -1 : 0;
}

static const char *label_quantize(const cJSON *set, char *buf, size_t n) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(set, "mode");
    snprintf(buf, n, "int8-%s", cJSON_IsString(m) ? m->valuestring : "ptq");
    return buf;
}

static const rf_setting quant_exp_keys[] = {
    KEY_MODE(RF_SF_GRID),
    KEY_CALIB(RF_SF_GRID),
    KEY_CALIB_BATCHES(RF_SF_GRID),
    {.key = "qat_train", .type = RF_SET_OBJ, .sub = rf_train_settings,
     .doc = "QAT training over the experiment's `train` (only for `qat`)"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_quantize = {
    .name = "quantize", .summary = "int8 post-training quantization or quantization-aware training",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_CKPT | RF_KIND_FROM | RF_KIND_INT8,
    .keys = quant_keys, .train_when = "mode=qat", .min_parents = 1, .max_parents = 1,
    .parents_doc = "the float model",
    .run = rf_task_quantize,
    .experiment = "quantize", .exp_keys = quant_exp_keys, .exp_doc = "dense `train` → `quantize`",
    .expand = expand_quantize, .label = label_quantize, .plot = RF_PLOT_QUANT,
};
