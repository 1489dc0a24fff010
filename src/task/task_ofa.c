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
#include "raffle/plan.h"
#include "task/task_keys.h"

#include <stdio.h>

#include <string.h>

/* Zafrir et al. §3: 0.5·CE + 0.5·KD at T = 2; the sparse pre-training
 * prunes gradually over its first half. */
#define KEY_T(grid) {.key = "temperature", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1000, .lo_open = 1, .def = "2", \
    .doc = "distillation temperature (the paper: 2)"}
#define KEY_A(grid) {.key = "alpha", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .def = "0.5", \
    .doc = "weight of the soft loss (the paper: 0.5 CE + 0.5 KD)"}
#define KEY_SPARSITY(grid) {.key = "sparsity", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .hi_open = 1, \
    .def = "0.85", .doc = "final sparsity of the gradual magnitude pruning"}
#define KEY_EVERY(grid) {.key = "prune_every", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .lo_open = 1, \
    .def = "0.01", .doc = "mask update interval, fraction of the run"}
#define KEY_END(grid) {.key = "prune_end", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .lo_open = 1, \
    .def = "0.5", .doc = "fraction of the run by which the cubic schedule reaches `sparsity`"}
#define KEY_LAYERS(grid, flags_) {.key = "layers", .type = RF_SET_STR, .flags = (grid) | (flags_), \
    .doc = "glob list of the tensors the sparse pre-training prunes (\"fc*\", \"!conv1*\"; absent: all prunable); the classifier is never pruned"}

#define KEY_NM(grid) {.key = "nm", .type = RF_SET_STR, .flags = (grid) | RF_SF_OPTIONAL, \
    .doc = "N:M constraint of the gradual pruning, e.g. \"2:4\" (M:M down to N:M; `sparsity` must be 1 − N/M)"}

static const rf_setting sparse_keys[] = {
    KEY_SPARSITY(0), KEY_T(0), KEY_A(0), KEY_EVERY(0), KEY_END(0), KEY_LAYERS(0, RF_SF_OPTIONAL), RF_KEY_TEACHER_CACHE,
    KEY_NM(0), RF_SETTINGS_END
};
static const rf_setting transfer_keys[] = { KEY_T(0), KEY_A(0), RF_KEY_TEACHER_CACHE, RF_SETTINGS_END };
static const rf_setting qat_keys[] = {
    KEY_T(0), KEY_A(0), RF_KEY_TEACHER_CACHE, RF_KEY_FREEZE_AFTER, RF_KEY_EMA_DECAY, RF_SETTINGS_END
};
const rf_setting rf_task_qat_keys[] = { RF_KEY_FREEZE_AFTER, RF_KEY_EMA_DECAY, RF_SETTINGS_END };

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

static rf_status add_common(rf_ctx *ctx, cJSON *metrics, double teacher_acc, const rf_train_result *r,
                            const rf_train_curve *curve, double t0) {
    cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
    if (!cJSON_AddNumberToObject(metrics, "teacher_test_accuracy", teacher_acc) ||
        !rf_task_add_selection(r, metrics) || !rf_task_add_curve(metrics, curve) ||
        !cJSON_AddNumberToObject(metrics, "steps", (double)r->steps) ||
        !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
        return rf_error(ctx, RF_ERR_NOMEM, "ofa: metrics");
    return RF_OK;
}

/* ---- QAT (shared with "quantize" mode qat) ------------------------------------ */

rf_status rf_ofa_run_qat(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_teacher *t,
                         const rf_distill_cfg *dc, const rf_quant *formats, rf_train_curve *curve, rf_quant **out,
                         rf_train_result *res) {
    *out = NULL;
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg_io(ctx, io, 100, &cfg));
    cfg.curve = curve;
    int batch = cfg.batch > 0 ? cfg.batch : 128;
    if (batch > io->train->n) batch = (int)io->train->n;
    int64_t total = cfg.iterations > 0 ? cfg.iterations : (int64_t)cfg.epochs * (io->train->n / batch);
    rf_qat_cfg qc;
    rf_qat_cfg_default(&qc);
    const cJSON *fa = cJSON_GetObjectItemCaseSensitive(io->settings, "freeze_after");
    qc.freeze_after = cJSON_IsNumber(fa) ? (int64_t)fa->valuedouble : total / 2 > 0 ? total / 2 : 1;
    qc.ema_decay = (float)rf_settings_num(io->settings, rf_task_qat_keys, "ema_decay");
    qc.formats = formats;
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
        s = rf_train(ctx, m, io->train, io->val, io->test, &cfg, NULL, &h, res);
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
static const int stage_kinds[] = {RF_JOB_OFA_SPARSE, RF_JOB_OFA_TRANSFER, RF_JOB_OFA_QAT};

static rf_status run_stage(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics, ofa_stage stage) {
    const double t0 = rf_now();
    const char *kind = stage_names[stage];
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "%s: no training data", kind);
    if (io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "%s: needs its input model as parent", kind);
    const rf_kind *k = rf_kind_get(stage_kinds[stage]);
    RF_TRY(rf_kind_check(ctx, k, io->settings, "settings"));
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg_io(ctx, io, 100, &cfg));
    rf_distill_cfg dc;
    RF_TRY(rf_task_distill_cfg(ctx, io->settings, k->keys, &dc));
    double sparsity = 0, end_frac = 0, every_frac = 0;
    if (stage == STAGE_SPARSE) {
        sparsity = rf_settings_num(io->settings, sparse_keys, "sparsity");
        end_frac = rf_settings_num(io->settings, sparse_keys, "prune_end");
        every_frac = rf_settings_num(io->settings, sparse_keys, "prune_every");
    }
    const int cache = rf_settings_bool(io->settings, k->keys, "teacher_cache");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(io->settings, "layers");
    const cJSON *nm = stage == STAGE_SPARSE ? cJSON_GetObjectItemCaseSensitive(io->settings, "nm") : NULL;
    int nm_n = 0, nm_m = 0;
    if (cJSON_IsString(nm) && rf_prune_nm_parse(ctx, nm->valuestring, &nm_n, &nm_m)) {
        rf_error_prefix(ctx, "%s: settings.nm", kind);
        return RF_ERR_INVALID;
    }

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
    rf_train_curve curve = {0};   /* every stage trains: its curve is kept (issue 23) */
    cfg.curve = &curve;
    rf_status s = rf_model_load(ctx, io->parent_ckpts[0], &m);
    if (s != RF_OK) rf_error_prefix(ctx, "%s: parent %s", kind, io->parent_ckpts[0]);
    if (s == RF_OK && teacher_path) s = rf_teacher_load(ctx, &teacher_path, 1, &t);
    if (s == RF_OK && t) s = rf_task_evaluate(ctx, io, rf_teacher_model(t, 0), &teacher_acc, &teacher_loss, NULL);
    if (s == RF_OK && t && cache) s = rf_teacher_cache(ctx, t, io->train, 256);
    if (s == RF_OK && stage == STAGE_TRANSFER) s = lock_pattern(ctx, m);
    if (s == RF_OK && stage == STAGE_QAT) {
        s = rf_ofa_run_qat(ctx, io, m, t, &dc, NULL, &curve, &q, &r);
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
            o.nm_n = nm_n;
            o.nm_m = nm_m;
            rf_train_hooks h;
            rf_ofa_train_hooks(&o, &h);
            /* opt = NULL: a fresh optimizer replays the whole LR schedule from
             * step 0 on the teacher's trained weights (LR rewinding). */
            s = rf_train(ctx, m, io->train, io->val, io->test, &cfg, NULL, &h, &r);
            if (s == RF_OK && r.stopped)
                s = rf_error(ctx, RF_ERR_PREEMPTED, "%s: stopped on request after %lld steps", kind, (long long)r.steps);
        }
        rf_distill_free(d, m);
    }
    if (s == RF_OK) s = rf_task_ckpt_extra(ctx, kind, io, -1, r.steps, &extra);
    /* the sparse stage's target goes into its checkpoint, so rf_task_finish
     * reports it there and in the transfer and QAT stages after it */
    if (s == RF_OK && stage == STAGE_SPARSE) {
        cJSON *e = cJSON_Parse(extra);
        char *e2 = e && cJSON_AddNumberToObject(e, "target_sparsity", sparsity) ? cJSON_PrintUnformatted(e) : NULL;
        cJSON_Delete(e);
        cJSON_free(extra);
        extra = e2;
        if (!extra) s = rf_error(ctx, RF_ERR_NOMEM, "%s: checkpoint metadata", kind);
    }
    if (s == RF_OK) s = q ? rf_quant_task_finish(ctx, io, m, q, extra, metrics) : rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = add_common(ctx, metrics, teacher_acc, &r, &curve, t0);
    cJSON_free(extra);
    rf_free(curve.v);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
    rf_teacher_free(t);
    return s;
}

rf_status rf_task_ofa_sparse(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) { return run_stage(ctx, io, metrics, STAGE_SPARSE); }
rf_status rf_task_ofa_transfer(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) { return run_stage(ctx, io, metrics, STAGE_TRANSFER); }
rf_status rf_task_ofa_qat(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) { return run_stage(ctx, io, metrics, STAGE_QAT); }

/* ---- the experiment --------------------------------------------------------------
 * Prune Once For All (Zafrir et al. 2021): teacher -> sparse pre-training
 * with KD -> per downstream dataset: a dense teacher fine-tuned there, then
 * the pattern-locked transfer distilled from it -> QAT with the pattern
 * locked. */
static int expand_ofa(rf_plan *p, const rf_point *pt) {
    const cJSON *x = pt->x;
    cJSON *tt = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(x, "teacher_train"));
    cJSON *st = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(x, "sparse_train"));
    cJSON *xt = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(x, "transfer_train"));
    cJSON *qt = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(x, "qat_train"));
    int rc = -1;
    if (!tt || !st || !xt || !qt) { rf_plan_nomem(p, NULL); goto done; }
    static const char *const kd[] = {"temperature", "alpha", NULL};
    static const char *const sk[] = {"sparsity", "temperature", "alpha", "prune_every", "prune_end", "layers", "nm", NULL};
    /* with `from` the upstream teacher is the earlier experiment's model: a
     * dense one (train, or a distilled student trained fresh), since the
     * sparse pre-training starts from it and distils from it as the dense
     * teacher (Zafrir et al. 2021 §3.1); a pruned or quantized one is not */
    int32_t teacher = -1;
    if (pt->from >= 0) {
        const cJSON *fk = cJSON_GetObjectItemCaseSensitive(pt->from_settings, "kind"),
                    *fi = cJSON_GetObjectItemCaseSensitive(pt->from_settings, "init");
        const char *kn = cJSON_IsString(fk) ? fk->valuestring : "?";
        if ((strcmp(kn, "train") != 0 && strcmp(kn, "distill") != 0) || (strcmp(kn, "distill") == 0 && fi)) {
            rf_error(rf_plan_ctx(p), RF_ERR_JOB, "from: an ofa experiment starts from a dense trained model (its upstream "
                     "teacher, which the sparse pre-training distils from); a %s model is not one: start from a train experiment",
                     kn);
            goto done;
        }
        if (cJSON_GetObjectItemCaseSensitive(x, "teacher_train")) {
            rf_error(rf_plan_ctx(p), RF_ERR_JOB, "teacher_train: with from, the teacher is the earlier model (already trained)");
            goto done;
        }
        teacher = pt->from;
    } else if ((teacher = rf_plan_dense(p, pt, pt->data, pt->model, tt)) < 0) {
        goto done;
    }
    cJSON *s = rf_plan_settings(pt, pt->data, pt->model, st);
    if (!s || !rf_plan_copy_keys(s, x, sk)) { rf_plan_nomem(p, s); goto done; }
    int32_t sparse = rf_plan_add(p, RF_JOB_OFA_SPARSE, s, &teacher, 1, rf_plan_train_cost(st, pt->data, pt->model) * 1.5);
    if (sparse < 0) goto done;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(x, "transfer");
    int qat = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "qat"));
    int n = cJSON_GetArraySize(tr);
    for (int i = 0; i < (n ? n : 1); i++) {
        const char *d = n ? cJSON_GetArrayItem(tr, i)->valuestring : pt->data;
        cJSON *ts = rf_plan_settings(pt, d, pt->model, xt);
        if (!ts || !cJSON_AddStringToObject(ts, "init", "parent")) { rf_plan_nomem(p, ts); goto done; }
        int32_t tteach = rf_plan_add(p, RF_JOB_TRAIN, ts, &teacher, 1, rf_plan_train_cost(xt, d, pt->model));
        if (tteach < 0) goto done;
        cJSON *xs = rf_plan_settings(pt, d, pt->model, xt);
        if (!xs || !rf_plan_copy_keys(xs, x, kd)) { rf_plan_nomem(p, xs); goto done; }
        int32_t pp[2] = {sparse, tteach};
        int32_t xfer = rf_plan_add(p, RF_JOB_OFA_TRANSFER, xs, pp, 2, rf_plan_train_cost(xt, d, pt->model) * 1.5);
        if (xfer < 0) goto done;
        if (qat) {
            cJSON *qs = rf_plan_settings(pt, d, pt->model, qt);
            if (!qs || !rf_plan_copy_keys(qs, x, kd)) { rf_plan_nomem(p, qs); goto done; }
            int32_t qp[2] = {xfer, tteach};
            if (rf_plan_add(p, RF_JOB_OFA_QAT, qs, qp, 2, rf_plan_train_cost(qt, d, pt->model) * 1.3) < 0) goto done;
        }
    }
    rc = 0;
done:
    cJSON_Delete(tt); cJSON_Delete(st); cJSON_Delete(xt); cJSON_Delete(qt);
    return rc;
}

static const rf_setting ofa_exp_keys[] = {
    KEY_SPARSITY(RF_SF_GRID),
    KEY_END(RF_SF_GRID),
    KEY_LAYERS(RF_SF_GRID, 0),
    KEY_NM(RF_SF_GRID),
    KEY_EVERY(RF_SF_GRID),
    KEY_T(RF_SF_GRID),
    KEY_A(RF_SF_GRID),
    {.key = "teacher_train", .type = RF_SET_OBJ, .sub = rf_train_settings, .doc = "the teacher's training, over the experiment's `train`"},
    {.key = "sparse_train", .type = RF_SET_OBJ, .sub = rf_train_settings, .doc = "the sparse pre-training"},
    {.key = "transfer", .type = RF_SET_LIST, .def = "[]", .doc = "downstream datasets (empty: the upstream dataset)"},
    {.key = "transfer_train", .type = RF_SET_OBJ, .sub = rf_train_settings, .doc = "the downstream teachers' and transfers' training"},
    {.key = "qat", .type = RF_SET_BOOL, .def = "true", .doc = "add the QAT stage"},
    {.key = "qat_train", .type = RF_SET_OBJ, .sub = rf_train_settings, .doc = "the QAT stage's training"},
    RF_SETTINGS_END
};

#define OFA_FLAGS (RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_STOP | RF_KIND_CKPT)
const rf_kind rf_kind_ofa_sparse = {
    .name = "ofa-sparse", .summary = "Prune Once For All: sparse pre-training (gradual magnitude pruning + KD)",
    .flags = OFA_FLAGS | RF_KIND_FROM, .keys = sparse_keys, .min_parents = 1, .max_parents = 1,
    .parents_doc = "the dense upstream teacher (the student starts from it)",
    .run = rf_task_ofa_sparse,
    .experiment = "ofa", .exp_keys = ofa_exp_keys,
    .exp_doc = "teacher `train` (upstream `dataset`; with `from`: the earlier dense model) → `ofa-sparse` → per `transfer` dataset D: a teacher fine-tuned on D "
               "(`train` from the upstream teacher) and `ofa-transfer` (parents: the sparse model and that teacher) → "
               "`ofa-qat` (parents: the transferred model and the teacher)",
    .expand = expand_ofa, .plot = RF_PLOT_NONE,
};
const rf_kind rf_kind_ofa_transfer = {
    .name = "ofa-transfer", .summary = "Prune Once For All: pattern-locked transfer with KD from a downstream teacher",
    .flags = OFA_FLAGS, .keys = transfer_keys, .min_parents = 1, .max_parents = 2,
    .parents_doc = "the sparse model, then (optional) a dense teacher fine-tuned on the downstream data",
    .run = rf_task_ofa_transfer,
};
const rf_kind rf_kind_ofa_qat = {
    .name = "ofa-qat", .summary = "Prune Once For All: QAT int8 with the sparsity pattern locked",
    .flags = OFA_FLAGS | RF_KIND_INT8, .keys = qat_keys, .min_parents = 1, .max_parents = 2,
    .parents_doc = "the model to quantize, then (optional) a teacher to keep distilling from",
    .run = rf_task_ofa_qat, .plot = RF_PLOT_QUANT,
};
