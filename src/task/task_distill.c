/* Task kind "distill" (Hinton, Vinyals, Dean 2015): trains a fresh student
 * (settings "model") on the soft targets of the parents: one teacher, or an
 * ensemble whose logits are averaged. Settings: the training keys of
 * docs/training.md, "temperature", "alpha", "teacher_cache" (default true),
 * "hidden" (transformer students: hidden-state distillation, default false),
 * "hidden_weight", "proj_lr". */
#include "raffle/distill.h"

#include <string.h>

static int setting_bool(const cJSON *s, const char *key, int def) {
    const cJSON *v = s ? cJSON_GetObjectItemCaseSensitive(s, key) : NULL;
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* Test accuracy of the teacher ensemble (argmax of the mean logits). */
static rf_status ensemble_accuracy(rf_ctx *ctx, rf_teacher *t, const rf_dataset *test, double *acc) {
    *acc = -1.0;
    if (!test || test->n == 0) return RF_OK;
    const int K = rf_teacher_classes(t);
    float *sum = rf_calloc((size_t)test->n * K, sizeof(float));
    if (!sum) return rf_error(ctx, RF_ERR_NOMEM, "distill: out of memory");
    rf_status s = RF_OK;
    for (int i = 0; i < rf_teacher_size(t) && s == RF_OK; i++) {
        float *lg = NULL;
        s = rf_predict(ctx, rf_teacher_model(t, i), test, 256, &lg);
        for (int64_t k = 0; s == RF_OK && k < test->n * K; k++) sum[k] += lg[k];
        rf_free(lg);
    }
    int64_t right = 0;
    for (int64_t n = 0; s == RF_OK && n < test->n; n++) {
        const float *r = sum + n * K;
        int best = 0;
        for (int k = 1; k < K; k++) if (r[k] > r[best]) best = k;
        right += best == test->y[n];
    }
    rf_free(sum);
    if (s == RF_OK) *acc = (double)right / (double)test->n;
    return s;
}

rf_status rf_task_distill(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "distill: no training data");
    if (io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "distill: needs at least one teacher checkpoint as parent");
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(io->settings, "model");
    if (!cJSON_IsString(mv)) return rf_error(ctx, RF_ERR_INVALID, "distill: settings have no \"model\" (the student)");
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg(ctx, io->settings, &cfg));
    cfg.log = io->log;
    cfg.log_ud = io->log_ud;
    cfg.log_every = io->log ? 100 : 0;
    cfg.stop_flag = io->stop_flag;
    rf_distill_cfg dc;
    rf_distill_cfg_default(&dc);
    dc.seed = cfg.seed;
    RF_TRY(rf_distill_cfg_from_json(ctx, io->settings, &dc));
    const int hidden = setting_bool(io->settings, "hidden", 0);
    const int cache = setting_bool(io->settings, "teacher_cache", 1);

    rf_teacher *t = NULL;
    rf_model *m = NULL;
    rf_distill *d = NULL;
    char *extra = NULL;
    double teacher_acc = -1.0;
    rf_train_result r;
    memset(&r, 0, sizeof r);
    rf_status s = rf_teacher_load(ctx, io->parent_ckpts, io->n_parents, &t);
    if (s == RF_OK) s = rf_model_create_for_data(ctx, mv->valuestring, io->train, &m);
    if (s == RF_OK) s = rf_model_init(ctx, m, cfg.seed);
    if (s == RF_OK && hidden) s = rf_distill_pairs_default(ctx, m, rf_teacher_model(t, 0), &dc);
    /* Hidden-state pairs run the teacher on every batch anyway; without them
     * the cached logits replace every teacher forward of the run. */
    if (s == RF_OK && cache && !hidden) s = rf_teacher_cache(ctx, t, io->train, 256);
    if (s == RF_OK) s = ensemble_accuracy(ctx, t, io->test, &teacher_acc);
    if (s == RF_OK) s = rf_distill_new(ctx, t, m, &dc, &d);
    if (s == RF_OK) {
        rf_train_hooks h;
        memset(&h, 0, sizeof h);
        rf_distill_hooks(d, &h);
        s = rf_train(ctx, m, io->train, io->test, &cfg, NULL, &h, &r);
        if (s == RF_OK && r.stopped)
            s = rf_error(ctx, RF_ERR_PREEMPTED, "distill: stopped on request after %lld steps", (long long)r.steps);
    }
    if (d) { rf_distill_free(d, m); d = NULL; }
    if (s == RF_OK) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddStringToObject(e, "kind", "distill") ||
            !cJSON_AddItemToObject(e, "settings", cJSON_Duplicate(io->settings, 1)) ||
            !cJSON_AddNumberToObject(e, "teachers", io->n_parents) ||
            !cJSON_AddNumberToObject(e, "steps", (double)r.steps) ||
            !(extra = cJSON_PrintUnformatted(e)))
            s = rf_error(ctx, RF_ERR_NOMEM, "distill: cannot build checkpoint metadata");
        cJSON_Delete(e);
    }
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddNumberToObject(metrics, "teacher_accuracy", teacher_acc) ||
            !cJSON_AddNumberToObject(metrics, "teachers", io->n_parents) ||
            !cJSON_AddNumberToObject(metrics, "temperature", dc.T) ||
            !cJSON_AddNumberToObject(metrics, "alpha", dc.alpha) ||
            !cJSON_AddNumberToObject(metrics, "hidden_pairs", dc.n_pairs) ||
            !cJSON_AddNumberToObject(metrics, "best_accuracy", r.best_accuracy) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "distill: metrics");
    }
    cJSON_free(extra);
    rf_model_free(m);
    rf_teacher_free(t);
    return s;
}
