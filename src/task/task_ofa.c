/* Task kinds of the Prune-Once-For-All pipeline (Zafrir et al. 2021):
 *   "ofa-sparse"   student = the dense upstream teacher (parents[0]); GMP
 *                  cubic 0 → "sparsity" (default 0.9) over the first half of
 *                  the run, 0.5·CE + 0.5·KD at T = 2 from that teacher;
 *                  learning-rate rewinding: the trained weights are kept and
 *                  the whole LR schedule (warm-up, cosine) is replayed from
 *                  step 0 with a fresh optimizer (Renda et al. 2020);
 *   "ofa-transfer" parents[0] = the sparse model, parents[1] = a dense
 *                  teacher fine-tuned on the downstream data (optional):
 *                  fine-tune with the sparsity pattern locked, KD at T = 2;
 *   "ofa-qat"      parents[0] = the model, parents[1] = teacher (optional):
 *                  QAT int8 with the pattern locked, short, low LR; saved as
 *                  an int8 (sparse-int8) checkpoint.
 * Settings: the training keys of docs/training.md plus "temperature",
 * "alpha", "sparsity", "prune_end" (fraction of the run, default 0.5),
 * "prune_every" (fraction, default 0.01), "freeze_after", "ema_decay",
 * "teacher_cache". */
#include "raffle/distill.h"

#include <string.h>

static int setting_bool(const cJSON *s, const char *key, int def) {
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int has_key(const cJSON *s, const char *key) {
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    return v && !cJSON_IsNull(v);
}

static rf_status setting_num(rf_ctx *ctx, const cJSON *s, const char *key, double lo, double hi, double *out) {
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    if (!v || cJSON_IsNull(v)) return RF_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return rf_error(ctx, RF_ERR_INVALID, "settings \"%s\": expected a number in [%g, %g]", key, lo, hi);
    *out = v->valuedouble;
    return RF_OK;
}

static rf_status train_cfg(rf_ctx *ctx, const rf_task_io *io, rf_train_cfg *cfg) {
    RF_TRY(rf_task_train_cfg(ctx, io->settings, cfg));
    cfg->log = io->log;
    cfg->log_ud = io->log_ud;
    cfg->log_every = io->log ? 100 : 0;
    cfg->stop_flag = io->stop_flag;
    return RF_OK;
}

/* OFA's distillation defaults: 0.5·CE + 0.5·KD at T = 2 (Zafrir et al. §3). */
static rf_status ofa_distill_cfg(rf_ctx *ctx, const rf_task_io *io, uint64_t seed, rf_distill_cfg *dc) {
    rf_distill_cfg_default(dc);
    dc->T = 2.0f;
    dc->alpha = 0.5f;
    dc->seed = seed;
    return rf_distill_cfg_from_json(ctx, io->settings, dc);
}

/* Locks the current sparsity pattern: masks exist and are 0 wherever a
 * prunable weight is 0 (a checkpoint stored dense still carries its zeros). */
static rf_status lock_pattern(rf_ctx *ctx, rf_model *m) {
    RF_TRY(rf_model_ensure_masks(ctx, m));
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        if (!p->prunable) continue;
        for (size_t k = 0; k < p->numel; k++)
            if (m->params[p->offset + k] == 0.0f) m->masks[p->offset + k] = 0.0f;
    }
    return RF_OK;
}

static rf_status extra_json(rf_ctx *ctx, const char *kind, const rf_task_io *io, int64_t steps, char **out) {
    *out = NULL;
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddStringToObject(e, "kind", kind) ||
        !cJSON_AddItemToObject(e, "settings", cJSON_Duplicate(io->settings, 1)) ||
        !cJSON_AddNumberToObject(e, "steps", (double)steps) ||
        !(*out = cJSON_PrintUnformatted(e))) {
        cJSON_Delete(e);
        return rf_error(ctx, RF_ERR_NOMEM, "%s: cannot build checkpoint metadata", kind);
    }
    cJSON_Delete(e);
    return RF_OK;
}

static rf_status add_common(rf_ctx *ctx, cJSON *metrics, double teacher_acc, const rf_train_result *r, double t0) {
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
    if (!cJSON_AddNumberToObject(metrics, "teacher_accuracy", teacher_acc) ||
        !cJSON_AddNumberToObject(metrics, "steps", (double)r->steps) ||
        !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
        return rf_error(ctx, RF_ERR_NOMEM, "ofa: metrics");
    return RF_OK;
}

/* ---- QAT (shared with "quantize" mode qat) ------------------------------------ */

rf_status rf_ofa_run_qat(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_teacher *t,
                         const rf_distill_cfg *dc, rf_quant **out, rf_train_result *res) {
    *out = NULL;
    rf_train_cfg cfg;
    RF_TRY(train_cfg(ctx, io, &cfg));
    /* Short and at a low learning rate (Zafrir et al. §3; Jacob et al. §3
     * fine-tune from the float model): defaults unless the settings say. */
    if (!has_key(io->settings, "epochs") && !has_key(io->settings, "iterations")) cfg.epochs = 1;
    if (!has_key(io->settings, "lr")) cfg.optim.lr = 1e-4f;
    int batch = cfg.batch > 0 ? cfg.batch : 128;
    if (batch > io->train->n) batch = (int)io->train->n;
    int64_t total = cfg.iterations > 0 ? cfg.iterations : (int64_t)cfg.epochs * (io->train->n / batch);
    rf_qat_cfg qc;
    rf_qat_cfg_default(&qc);
    qc.freeze_after = total / 2 > 0 ? total / 2 : 1;
    double fa = (double)qc.freeze_after, ema = qc.ema_decay;
    RF_TRY(setting_num(ctx, io->settings, "freeze_after", 1, 1e15, &fa));
    RF_TRY(setting_num(ctx, io->settings, "ema_decay", 0, 0.999999, &ema));
    qc.freeze_after = (int64_t)fa;
    qc.ema_decay = (float)ema;
    if (m->masks) RF_TRY(lock_pattern(ctx, m));

    rf_qat *qat = NULL;
    rf_distill *d = NULL;
    rf_status s = rf_qat_new(ctx, m, io->train, &qc, &qat);
    if (s == RF_OK && t) s = rf_distill_new(ctx, t, m, dc, &d);
    if (s == RF_OK) {
        rf_ofa_hooks o;
        rf_ofa_hooks_init(&o, ctx);
        o.qat = qat;
        o.distill = d;
        rf_train_hooks h;
        rf_ofa_train_hooks(&o, &h);
        s = rf_train(ctx, m, io->train, io->test, &cfg, NULL, &h, res);
        if (s == RF_OK && res->stopped)
            s = rf_error(ctx, RF_ERR_PREEMPTED, "qat: stopped on request after %lld steps", (long long)res->steps);
    }
    rf_distill_free(d, m);
    rf_quant *q = NULL;
    if (s == RF_OK) s = rf_qat_convert(ctx, qat, m, &q);
    rf_qat_free(qat, m);
    if (s == RF_OK) s = rf_quant_enable(ctx, q, m, RF_QPATH_INT8);
    if (s != RF_OK) { rf_quant_detach(q, m); rf_quant_free(q); return s; }
    *out = q;
    return RF_OK;
}

/* ---- the three stages ------------------------------------------------------------ */

typedef enum { STAGE_SPARSE, STAGE_TRANSFER, STAGE_QAT } ofa_stage;

static const char *const stage_names[] = {"ofa-sparse", "ofa-transfer", "ofa-qat"};

static rf_status run_stage(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics, ofa_stage stage) {
    const double t0 = rf_now();
    const char *kind = stage_names[stage];
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "%s: no training data", kind);
    if (io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "%s: needs its input model as parent", kind);
    rf_train_cfg cfg;
    RF_TRY(train_cfg(ctx, io, &cfg));
    rf_distill_cfg dc;
    RF_TRY(ofa_distill_cfg(ctx, io, cfg.seed, &dc));
    double sparsity = 0.9, end_frac = 0.5, every_frac = 0.01;
    RF_TRY(setting_num(ctx, io->settings, "sparsity", 0, 0.999999, &sparsity));
    RF_TRY(setting_num(ctx, io->settings, "prune_end", 1e-6, 1, &end_frac));
    RF_TRY(setting_num(ctx, io->settings, "prune_every", 1e-6, 1, &every_frac));
    const int cache = setting_bool(io->settings, "teacher_cache", 1);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(io->settings, "layers");
    if (layers && !cJSON_IsString(layers))
        return rf_error(ctx, RF_ERR_INVALID, "settings \"layers\": expected a glob list string such as \"!conv1*\"");

    /* teacher: the upstream dense model itself (sparse), else parents[1] */
    const char *teacher_path = stage == STAGE_SPARSE ? io->parent_ckpts[0]
                             : io->n_parents > 1 ? io->parent_ckpts[1] : NULL;
    rf_model *m = NULL;
    rf_teacher *t = NULL;
    rf_distill *d = NULL;
    rf_quant *q = NULL;
    char *extra = NULL;
    double teacher_acc = -1.0, teacher_loss;
    rf_train_result r;
    memset(&r, 0, sizeof r);
    rf_status s = rf_model_load(ctx, io->parent_ckpts[0], &m);
    if (s != RF_OK) rf_error_prefix(ctx, "%s: parent %s", kind, io->parent_ckpts[0]);
    if (s == RF_OK && teacher_path) s = rf_teacher_load(ctx, &teacher_path, 1, &t);
    if (s == RF_OK && t) s = rf_task_evaluate(ctx, io, rf_teacher_model(t, 0), &teacher_acc, &teacher_loss, NULL);
    if (s == RF_OK && t && cache) s = rf_teacher_cache(ctx, t, io->train, 256);
    if (s == RF_OK && stage == STAGE_TRANSFER) s = lock_pattern(ctx, m);
    if (s == RF_OK && stage == STAGE_QAT) {
        s = rf_ofa_run_qat(ctx, io, m, t, &dc, &q, &r);
    } else if (s == RF_OK) {
        if (t) s = rf_distill_new(ctx, t, m, &dc, &d);
        if (s == RF_OK) {
            rf_ofa_hooks o;
            rf_ofa_hooks_init(&o, ctx);
            o.distill = d;
            o.gmp_on = stage == STAGE_SPARSE;
            o.sparsity = sparsity;
            o.end_fraction = end_frac;
            o.every_fraction = every_frac;
            o.layers = layers ? layers->valuestring : NULL;
            rf_train_hooks h;
            rf_ofa_train_hooks(&o, &h);
            /* opt = NULL: a fresh optimizer replays the whole LR schedule from
             * step 0 on the teacher's trained weights (LR rewinding). */
            s = rf_train(ctx, m, io->train, io->test, &cfg, NULL, &h, &r);
            if (s == RF_OK && r.stopped)
                s = rf_error(ctx, RF_ERR_PREEMPTED, "%s: stopped on request after %lld steps", kind, (long long)r.steps);
        }
        rf_distill_free(d, m);
    }
    if (s == RF_OK) s = extra_json(ctx, kind, io, r.steps, &extra);
    if (s == RF_OK) s = q ? rf_quant_task_finish(ctx, io, m, q, extra, metrics) : rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = add_common(ctx, metrics, teacher_acc, &r, t0);
    if (s == RF_OK && stage == STAGE_SPARSE && !cJSON_AddNumberToObject(metrics, "target_sparsity", sparsity))
        s = rf_error(ctx, RF_ERR_NOMEM, "%s: metrics", kind);
    cJSON_free(extra);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
    rf_teacher_free(t);
    return s;
}

rf_status rf_task_ofa_sparse(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) { return run_stage(ctx, io, metrics, STAGE_SPARSE); }
rf_status rf_task_ofa_transfer(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) { return run_stage(ctx, io, metrics, STAGE_TRANSFER); }
rf_status rf_task_ofa_qat(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) { return run_stage(ctx, io, metrics, STAGE_QAT); }
