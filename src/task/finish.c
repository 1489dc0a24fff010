/* rf_task_finish: the finishing step every task kind shares. Saves the model,
 * evaluates it, and measures what a compression study compares: sparsity
 * (overall and per tensor, counted from the weights themselves), layer
 * collapse, stored size against the dense fp32 size, and inference latency in
 * the deployed form against the dense one. */
#include "raffle/task.h"
#include "raffle/ckpt.h"
#include "raffle/deploy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---- sparsity ---------------------------------------------------------- */
static size_t count_zeros(const float *w, size_t n) {
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += w[i] == 0.0f;
    return z;
}

static rf_status add_sparsity(rf_ctx *ctx, const rf_model *m, cJSON *metrics) {
    cJSON *per = cJSON_AddObjectToObject(metrics, "layer_sparsity");
    if (!per) return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    size_t total = 0, zeros = 0, nnz_all = 0;
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        size_t z = count_zeros(m->params + p->offset, p->numel);
        nnz_all += p->numel - z;
        if (!p->prunable) continue;
        total += p->numel;
        zeros += z;
        if (!cJSON_AddNumberToObject(per, p->name, p->numel ? (double)z / (double)p->numel : 0.0))
            return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    }
    if (!cJSON_AddNumberToObject(metrics, "sparsity", total ? (double)zeros / (double)total : 0.0) ||
        !cJSON_AddNumberToObject(metrics, "parameters", (double)m->n_params) ||
        !cJSON_AddNumberToObject(metrics, "nonzero_parameters", (double)nnz_all))
        return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    return RF_OK;
}

/* ---- layer collapse (Tanaka et al. 2020, Sec. 4) ---------------------------
 * A layer is collapsed when no signal can cross it: a prunable tensor that is
 * all zero, or a linear/conv layer none of whose non-zero weights lies on a
 * path from the input to the logits, following every branch of the DAG
 * (rf_model_collapsed, src/nn/connect.c). Counted from the weights
 * themselves, as the sparsity is. */
static rf_status add_collapsed(rf_ctx *ctx, const rf_model *m, cJSON *metrics) {
    cJSON *arr = cJSON_AddArrayToObject(metrics, "collapsed_layers");
    unsigned char *col = rf_malloc((size_t)m->n_layers);
    if (!arr || !col) { rf_free(col); return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics"); }
    rf_status s = rf_model_collapsed(ctx, m, m->params, col);
    for (int li = 0; !s && li < m->n_layers; li++)
        if (col[li] && !cJSON_AddItemToArray(arr, cJSON_CreateString(m->layers[li].name)))
            s = rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    rf_free(col);
    return s;
}

/* ---- sizes ------------------------------------------------------------- */
/* Size of the same model stored dense fp32: encoded in memory, not written. */
static rf_status dense_bytes(rf_ctx *ctx, rf_model *m, const char *extra, size_t *out) {
    float *masks = m->masks;
    m->masks = NULL;  /* rf_model_to_ckpt stores masked params sparse; without masks it stores dense */
    rf_ckpt *c = NULL;
    rf_status s = rf_model_to_ckpt(ctx, m, extra, &c);
    m->masks = masks;
    if (s != RF_OK) return s;
    for (int i = 0; i < c->n; i++)  /* a quantized model's to_ckpt may pick int8: force fp32 dense */
        if (c->t[i].dtype == RF_F32) c->t[i].storage = RF_STORE_DENSE;
    unsigned char *buf = NULL;
    s = rf_ckpt_encode(ctx, c, &buf, out);
    rf_free(buf);
    rf_ckpt_free(c);
    return s;
}

/* ---- latency ------------------------------------------------------------ */
rf_status rf_task_time_forward(rf_ctx *ctx, rf_model *m, const float *x, int batch, double budget_s, double *best) {
    const float *logits;
    RF_TRY(rf_model_forward(ctx, m, x, batch, 0, &logits));  /* warm-up: sizes buffers */
    *best = INFINITY;
    double start = rf_now();
    for (int r = 0; r < 200 && (r < 5 || rf_now() - start < budget_s); r++) {
        double t = rf_now();
        RF_TRY(rf_model_forward(ctx, m, x, batch, 0, &logits));
        t = rf_now() - t;
        if (t < *best) *best = t;
    }
    return RF_OK;
}

/* Deployed form: the kernels a deployment would run, on the model with its
 * batch norms folded into the conv or linear layers before them
 * (rf_deploy_fold). Layers whose inference GEMM a task already replaced
 * (nn.h infer_gemm, e.g. int8 from the quantization kind, whose model is
 * folded already) are kept ("custom"); on a model with zero weights the
 * deploy module installs the sparse kernel where its calibration measured it
 * faster than the layer's own dense path ("sparse"). Dense: the model as
 * trained, every override lifted, batch norms unfolded, the engine's dense
 * paths. */
typedef rf_status (*gemm_fn)(void *, const float *, float *, int);

/* Lifts (lift=1) or restores (lift=0) every inference override, layer-level
 * and per-weight (nn.h), so the same model can be timed as dense fp32. */
static void swap_overrides(rf_model *m, gemm_fn *saved, int lift) {
    for (int i = 0; i < m->n_layers; i++) {
        if (lift) { saved[i] = m->layers[i].infer_gemm; m->layers[i].infer_gemm = NULL; }
        else m->layers[i].infer_gemm = saved[i];
    }
    for (int i = 0; i < m->n_ptensors; i++) {
        gemm_fn *slot = &saved[m->n_layers + i];
        if (lift) { *slot = m->ptensors[i].infer_gemm; m->ptensors[i].infer_gemm = NULL; }
        else m->ptensors[i].infer_gemm = *slot;
    }
}

static rf_status add_latency(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, double sparsity, cJSON *metrics) {
    enum { BIG = 64 };
    const size_t ss = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    const size_t n_slots = (size_t)m->n_layers + (size_t)m->n_ptensors + 1;
    float *x = rf_calloc((size_t)BIG * ss, sizeof(float));
    gemm_fn *saved = rf_calloc(n_slots, sizeof *saved);
    const int max_info = m->n_layers + m->n_ptensors;
    rf_deploy_layer *info = rf_calloc((size_t)max_info + 1, sizeof *info);
    if (!x || !saved || !info) { rf_free(x); rf_free(saved); rf_free(info); return rf_error(ctx, RF_ERR_NOMEM, "finish: latency"); }
    if (ds && (size_t)ds->c * ds->h * ds->w == ss)
        for (int i = 0; i < BIG; i++) memcpy(x + (size_t)i * ss, ds->x + (size_t)(i % ds->n) * ss, ss * sizeof(float));
    int custom = 0, n_sparse = 0, n_info = 0, deployed = 0, n_folded = 0;
    for (int i = 0; i < m->n_layers; i++) custom |= m->layers[i].infer_gemm != NULL;
    for (int i = 0; i < m->n_ptensors; i++) custom |= m->ptensors[i].infer_gemm != NULL;
    rf_model *folded = NULL;
    rf_status s = rf_deploy_fold(ctx, m, &folded, &n_folded);
    rf_model *dm = folded ? folded : m;   /* the deployed model */
    if (s == RF_OK && sparsity > 0.0) {
        rf_deploy_opts o;
        rf_deploy_opts_default(&o);
        o.batch = BIG;
        s = rf_deploy_model(ctx, dm, &o, info, max_info, &n_info);
        deployed = 1;
        for (int i = 0; i < n_info; i++) n_sparse += info[i].sparse;
    }
    double t1 = 0, t64 = 0, d1 = 0, d64 = 0;
    if (s == RF_OK) s = rf_task_time_forward(ctx, dm, x, 1, 0.25, &t1);
    if (s == RF_OK) s = rf_task_time_forward(ctx, dm, x, BIG, 0.25, &t64);
    if (s == RF_OK && (custom || n_sparse || folded)) {
        swap_overrides(m, saved, 1);
        s = rf_task_time_forward(ctx, m, x, 1, 0.25, &d1);
        if (s == RF_OK) s = rf_task_time_forward(ctx, m, x, BIG, 0.25, &d64);
        swap_overrides(m, saved, 0);
    } else {
        d1 = t1;
        d64 = t64;
    }
    if (deployed) rf_deploy_release(dm);
    rf_model_free(folded);
    rf_free(x); rf_free(saved); rf_free(info);
    if (s != RF_OK) return s;
    const char *form = custom && n_sparse ? "custom+sparse" : custom ? "custom" : n_sparse ? "sparse" : "dense";
    if (!cJSON_AddNumberToObject(metrics, "latency_ms", t1 * 1e3) ||
        !cJSON_AddNumberToObject(metrics, "dense_latency_ms", d1 * 1e3) ||
        !cJSON_AddNumberToObject(metrics, "throughput", t64 > 0 ? BIG / t64 : 0.0) ||
        !cJSON_AddNumberToObject(metrics, "dense_throughput", d64 > 0 ? BIG / d64 : 0.0) ||
        !cJSON_AddNumberToObject(metrics, "sparse_layers", n_sparse) ||
        !cJSON_AddNumberToObject(metrics, "deploy_folded_batchnorms", n_folded) ||
        !cJSON_AddStringToObject(metrics, "deployed_form", form))
        return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    return RF_OK;
}

static int64_t settings_i64(const cJSON *settings, const char *key) {
    const cJSON *v = settings ? cJSON_GetObjectItemCaseSensitive(settings, key) : NULL;
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (int64_t)v->valuedouble : 0;
}

/* The deployed model: m with its batch norms folded (rf_deploy_fold), the
 * sparse kernel by the rule on the layers pruned past the break-even. The
 * logits are within float rounding of m's in eval mode (measured bounds in
 * docs/kernels.md, "Deployment"). */
rf_status rf_evaluate_deployed(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, double *acc,
                               double *loss, int *n_sparse, float *logits) {
    if (n_sparse) *n_sparse = 0;
    rf_deploy_opts o;
    rf_deploy_opts_default(&o);
    o.mode = RF_DEPLOY_RULE;
    o.batch = batch;
    const int max_info = m->n_layers + m->n_ptensors;
    rf_deploy_layer *info = rf_calloc((size_t)max_info + 1, sizeof *info);
    if (!info) return rf_error(ctx, RF_ERR_NOMEM, "evaluate: out of memory");
    int ni = 0;
    rf_model *folded = NULL;
    rf_status s = rf_deploy_fold(ctx, m, &folded, NULL);
    rf_model *dm = folded ? folded : m;
    if (s == RF_OK) s = rf_deploy_model(ctx, dm, &o, info, max_info, &ni);
    if (s == RF_OK) s = rf_evaluate_logits(ctx, dm, ds, batch, acc, loss, logits);
    for (int i = 0; i < ni && n_sparse; i++) *n_sparse += info[i].sparse;
    rf_deploy_release(dm);
    rf_model_free(folded);
    rf_free(info);
    return s;
}

/* rf_evaluate_deployed on ds capped by the "eval_limit" setting, at batch
 * 256; -1 and NaN without ds. */
static rf_status evaluate_split(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_dataset *ds, double *acc,
                                double *loss, int *n_sparse) {
    *acc = -1.0;
    *loss = NAN;
    if (n_sparse) *n_sparse = 0;
    if (!ds || ds->n == 0) return RF_OK;
    rf_dataset view = *ds;
    int64_t limit = settings_i64(io->settings, "eval_limit");
    if (limit > 0 && limit < view.n) view = rf_dataset_head(ds, limit);
    return rf_evaluate_deployed(ctx, m, &view, 256, acc, loss, n_sparse, NULL);
}

rf_status rf_task_write_predictions(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, const char *prefix,
                                    double *acc, double *loss, int *n_sparse) {
    const int64_t n = ds->n, k = m->n_classes;
    RF_TRY(rf_check_cap(ctx, (uint64_t)n * (uint64_t)k * sizeof(float), "predictions"));
    float *logits = rf_malloc((size_t)(n * k > 0 ? n * k : 1) * sizeof(float));
    int32_t *pred = rf_malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    rf_status s = logits && pred ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "predictions: %lld samples", (long long)n);
    if (s == RF_OK) s = rf_evaluate_deployed(ctx, m, ds, batch, acc, loss, n_sparse, logits);
    for (int64_t i = 0; s == RF_OK && i < n; i++) {
        const float *z = logits + i * k;
        int32_t arg = 0;   /* the first maximal logit, as the accuracy counts it */
        for (int32_t j = 1; j < (int32_t)k; j++) if (z[j] > z[arg]) arg = j;
        pred[i] = arg;
    }
    /* all three encoded before any is written; a failed write removes the
     * ones written before it, so a failure leaves no partial set */
    static const char *const suffix[3] = {".logits.npy", ".pred.npy", ".labels.npy"};
    int64_t shape2[2] = {n, k}, shape1[1] = {n};
    rf_tensor t[3];
    unsigned char *buf[3] = {NULL, NULL, NULL};
    size_t len[3] = {0, 0, 0};
    char path[3][4200];
    if (s == RF_OK) s = rf_tensor_view(ctx, &t[0], RF_F32, 2, shape2, logits);
    if (s == RF_OK) s = rf_tensor_view(ctx, &t[1], RF_I32, 1, shape1, pred);
    if (s == RF_OK) s = rf_tensor_view(ctx, &t[2], RF_I32, 1, shape1, (void *)ds->y);   /* only read */
    for (int i = 0; s == RF_OK && i < 3; i++) {
        if ((size_t)snprintf(path[i], sizeof path[i], "%s%s", prefix, suffix[i]) >= sizeof path[i])
            s = rf_error(ctx, RF_ERR_INVALID, "predictions: path %s too long", prefix);
        if (s == RF_OK) s = rf_npy_encode(ctx, &t[i], 1, &buf[i], &len[i]);
    }
    int written = 0;
    for (; s == RF_OK && written < 3; written++) {
        s = rf_write_file_atomic(ctx, path[written], buf[written], len[written]);
        if (s != RF_OK) {
            rf_error_prefix(ctx, "predictions");
            for (int i = 0; i < written; i++) remove(path[i]);
        }
    }
    for (int i = 0; i < 3; i++) rf_free(buf[i]);
    rf_free(logits);
    rf_free(pred);
    return s;
}

rf_status rf_task_evaluate(rf_ctx *ctx, const rf_task_io *io, rf_model *m, double *acc, double *loss,
                           int *n_sparse) {
    RF_TRY(evaluate_split(ctx, io, m, io->test, acc, loss, n_sparse));
    if (!io->test) *loss = 0.0;
    return RF_OK;
}

static const char *const common_keys[] = {
    "accuracy", "loss", "sparsity", "layer_sparsity", "collapsed_layers", "parameters", "nonzero_parameters",
    "bytes", "dense_bytes", "compression_ratio", "latency_ms", "dense_latency_ms", "throughput", "deployed_form",
    "sparse_layers", "deploy_folded_batchnorms", "raw_fp32_bytes", "dense_throughput", "eval_sparse_layers", "flops", "test_accuracy", "test_loss",
    "val_accuracy", "val_loss",
};

/* The checkpoint's metadata: the kind's extra object with the task's
 * settings added when the kind did not record them, so `raffle eval` can
 * rebuild the data a checkpoint was trained and tested on (padding,
 * validation split, normalisation) from the checkpoint alone, and the raw
 * fp32 size of the chain's dense model, so the next stage's ratio keeps
 * the same baseline. */
/* The parent checkpoint whose model the task continues (NULL: a new model). */
static const char *model_parent(const rf_task_io *io);

/* The metadata "extra" object of the checkpoint the task continues (new
 * object; NULL: a new model, or a parent that cannot be read). */
static cJSON *parent_extra(const rf_task_io *io) {
    const char *par = model_parent(io);
    rf_ckpt *c = NULL;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    if (!par || rf_ckpt_read(&tmp, par, &c) != RF_OK) return NULL;
    cJSON *meta = cJSON_Parse(c->meta_json);
    rf_ckpt_free(c);
    cJSON *e = cJSON_DetachItemFromObjectCaseSensitive(meta, "extra");
    cJSON_Delete(meta);
    return e;
}

char *rf_task_ckpt_meta(const char *extra_json, const rf_task_io *io, double raw) {
    cJSON *e = extra_json ? cJSON_Parse(extra_json) : cJSON_CreateObject();
    if (!cJSON_IsObject(e)) { cJSON_Delete(e); return NULL; }
    /* the pruning target travels down the chain (issue 23): an int8 model
     * of a 90%-pruned parent is a row of target 0.9, like its parent */
    if (!cJSON_GetObjectItemCaseSensitive(e, "target_sparsity")) {
        cJSON *pe = parent_extra(io);
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(pe, "target_sparsity");
        int ok = !cJSON_IsNumber(ts) || cJSON_AddNumberToObject(e, "target_sparsity", ts->valuedouble);
        cJSON_Delete(pe);
        if (!ok) { cJSON_Delete(e); return NULL; }
    }
    if (io->settings && !cJSON_GetObjectItemCaseSensitive(e, "settings") &&
        !cJSON_AddItemToObject(e, "settings", cJSON_Duplicate(io->settings, 1))) {
        cJSON_Delete(e);
        return NULL;
    }
    if (raw > 0 && !cJSON_GetObjectItemCaseSensitive(e, "raw_fp32_bytes") && !cJSON_AddNumberToObject(e, "raw_fp32_bytes", raw)) {
        cJSON_Delete(e);
        return NULL;
    }
    char *out = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    return out;
}

static const char *model_parent(const rf_task_io *io) {
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(io->settings, "kind");
    const rf_kind *d = cJSON_IsString(k) ? rf_kind_get(rf_kind_find(k->valuestring)) : NULL;
    if (io->n_parents < 1) return NULL;
    if (!d || !(d->flags & RF_KIND_STUDENT)) return io->parent_ckpts[0];
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(io->settings, "init");
    return cJSON_IsString(init) && strcmp(init->valuestring, "parent") == 0 ? io->parent_ckpts[io->n_parents - 1] : NULL;
}

double rf_task_raw_fp32_bytes(const rf_task_io *io, const rf_model *m) {
    double raw = (double)(m->n_params + m->n_buffers) * sizeof(float);
    cJSON *pe = parent_extra(io);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pe, "raw_fp32_bytes");
    if (cJSON_IsNumber(v) && v->valuedouble > 0) raw = v->valuedouble;
    cJSON_Delete(pe);
    return raw;
}

int rf_task_add_curve(cJSON *metrics, const rf_train_curve *c) {
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "curve");
    cJSON *a = cJSON_AddArrayToObject(metrics, "curve");
    for (int i = 0; a && c && i < c->n; i++) {
        const rf_train_point *p = &c->v[i];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o)) { cJSON_Delete(o); return 0; }
        if (!cJSON_AddNumberToObject(o, "step", (double)p->step) ||
            !(isfinite(p->train_loss) ? cJSON_AddNumberToObject(o, "train_loss", p->train_loss) : cJSON_AddNullToObject(o, "train_loss")) ||
            !cJSON_AddNumberToObject(o, "val_accuracy", p->val_accuracy) ||
            !(isfinite(p->val_loss) ? cJSON_AddNumberToObject(o, "val_loss", p->val_loss) : cJSON_AddNullToObject(o, "val_loss")))
            return 0;
    }
    return a != NULL;
}

rf_status rf_task_evaluate_both(rf_ctx *ctx, const rf_task_io *io, rf_model *m, double *test_acc, double *val_acc) {
    double loss;
    RF_TRY(evaluate_split(ctx, io, m, io->test, test_acc, &loss, NULL));
    return evaluate_split(ctx, io, m, io->val, val_acc, &loss, NULL);
}

/* Saves m with metadata `extra` to path and adds the common metrics. Every
 * accuracy names its split: accuracy / loss are the test split's (the
 * final model; test_accuracy / test_loss say so explicitly), val_accuracy /
 * val_loss the validation split's (-1 / null without one). Neither is ever
 * used to choose anything here. */
static rf_status finish_impl(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const char *extra, const char *path,
                             double raw, cJSON *metrics) {
    rf_model_apply_masks(m);
    RF_TRY(rf_model_save(ctx, m, extra, path));
    for (size_t i = 0; i < sizeof common_keys / sizeof common_keys[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, common_keys[i]);

    double acc = 0.0, loss = 0.0, vacc, vloss;
    int eval_sparse = 0;
    RF_TRY(rf_task_evaluate(ctx, io, m, &acc, &loss, &eval_sparse));
    RF_TRY(evaluate_split(ctx, io, m, io->val, &vacc, &vloss, NULL));
    if (acc < 0.0) acc = 0.0;
    if (!cJSON_AddNumberToObject(metrics, "accuracy", acc) || !cJSON_AddNumberToObject(metrics, "loss", loss) ||
        !cJSON_AddNumberToObject(metrics, "test_accuracy", acc) || !cJSON_AddNumberToObject(metrics, "test_loss", loss) ||
        !cJSON_AddNumberToObject(metrics, "val_accuracy", vacc) ||
        !(isfinite(vloss) ? cJSON_AddNumberToObject(metrics, "val_loss", vloss) : cJSON_AddNullToObject(metrics, "val_loss")) ||
        !cJSON_AddNumberToObject(metrics, "eval_sparse_layers", eval_sparse))
        return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    RF_TRY(add_sparsity(ctx, m, metrics));
    RF_TRY(add_collapsed(ctx, m, metrics));
    /* multiply-adds of one forward of one sample (dense: zeros count) */
    if (!cJSON_AddNumberToObject(metrics, "flops", rf_model_flops(m))) return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");

    struct stat st;
    if (stat(path, &st) != 0) return rf_error(ctx, RF_ERR_IO, "finish: %s vanished after writing", path);
    size_t dense = 0;
    RF_TRY(dense_bytes(ctx, m, extra, &dense));
    /* compression_ratio follows Deep Compression (Han et al. 2016): the dense
     * fp32 model (4 bytes a parameter or buffer) at the root of the chain
     * (rf_task_raw_fp32_bytes) over the bytes on disk. dense_bytes is this
     * model's weights written by raffle with dense storage; its zeros
     * compress, so it is not the baseline. */
    if (!cJSON_AddNumberToObject(metrics, "bytes", (double)st.st_size) ||
        !cJSON_AddNumberToObject(metrics, "dense_bytes", (double)dense) ||
        !cJSON_AddNumberToObject(metrics, "raw_fp32_bytes", raw) ||
        !cJSON_AddNumberToObject(metrics, "compression_ratio", st.st_size > 0 ? raw / (double)st.st_size : 0.0))
        return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    /* the kind's pruning target, or the one its chain inherited (extra) */
    cJSON *ex = cJSON_Parse(extra);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ex, "target_sparsity");
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "target_sparsity");
    int ok = !cJSON_IsNumber(ts) || cJSON_AddNumberToObject(metrics, "target_sparsity", ts->valuedouble);
    cJSON_Delete(ex);
    if (!ok) return rf_error(ctx, RF_ERR_NOMEM, "finish: metrics");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(metrics, "sparsity");
    return add_latency(ctx, m, io->test ? io->test : io->train, cJSON_IsNumber(sp) ? sp->valuedouble : 0.0, metrics);
}

rf_status rf_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const char *extra_json, cJSON *metrics) {
    if (!io || !io->out_dir || !m || !metrics) return rf_error(ctx, RF_ERR_INVALID, "finish: NULL argument");
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/model.rckpt", io->out_dir) >= sizeof path)
        return rf_error(ctx, RF_ERR_INVALID, "finish: output directory path too long");
    double raw = rf_task_raw_fp32_bytes(io, m);
    char *extra = rf_task_ckpt_meta(extra_json, io, raw);
    if (!extra) return rf_error(ctx, RF_ERR_INVALID, "finish: checkpoint metadata must be a JSON object (or out of memory)");
    rf_status s = finish_impl(ctx, io, m, extra, path, raw, metrics);
    cJSON_free(extra);
    return s;
}

rf_status rf_task_ckpt_settings(rf_ctx *ctx, const char *path, cJSON **out) {
    *out = NULL;
    rf_ckpt *c = NULL;
    RF_TRY(rf_ckpt_read(ctx, path, &c));
    cJSON *meta = cJSON_Parse(c->meta_json);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "extra"), "settings");
    rf_status s = RF_OK;
    if (cJSON_IsObject(st) && !(*out = cJSON_Duplicate(st, 1))) s = rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", path);
    cJSON_Delete(meta);
    rf_ckpt_free(c);
    return s;
}
