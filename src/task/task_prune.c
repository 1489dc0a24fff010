/* Task kind "prune": one-shot pruning of a trained checkpoint (the first
 * parent) or of a freshly initialised model (settings "model", for the
 * pruning-at-initialisation methods), then optional fine-tuning with the
 * mask fixed. Settings keys: docs/pruning.md. */
#include "raffle/prune.h"
#include "raffle/task.h"
#include "raffle/train.h"

#include <stdio.h>
#include <string.h>

static const char *jstring(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnumber(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

rf_status rf_task_prune(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const cJSON *st = io->settings;
    double t0 = rf_now();
    rf_prune_cfg cfg;
    rf_prune_cfg_default(&cfg);
    void *owned = NULL;
    RF_TRY(rf_prune_cfg_from_json(ctx, st, &cfg, &owned));
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(st, "sparsity"))) {
        rf_free(owned);
        return rf_error(ctx, RF_ERR_INVALID, "prune: settings need \"sparsity\" in [0, 1]");
    }
    /* The canonical training keys (docs/training.md); fine-tuning keeps a
     * constant learning rate unless settings name a schedule. */
    rf_train_cfg tc;
    rf_status s = rf_task_train_cfg(ctx, st, &tc);
    if (!cJSON_GetObjectItemCaseSensitive(st, "schedule")) tc.optim.sched = RF_SCHED_CONSTANT;
    double ft_epochs = jnumber(st, "finetune_epochs", 0), ft_iters = jnumber(st, "finetune_iterations", 0);
    if (s == RF_OK && (ft_epochs < 0 || ft_iters < 0 || ft_epochs > 1e6))
        s = rf_error(ctx, RF_ERR_INVALID, "prune: finetune_epochs and finetune_iterations must be >= 0");
    tc.epochs = (int)ft_epochs;
    tc.iterations = (int64_t)ft_iters;
    tc.log = io->log;
    tc.log_ud = io->log_ud;
    tc.stop_flag = io->stop_flag;
    if (io->log && tc.log_every == 0) tc.log_every = 200;

    rf_model *m = NULL;
    if (s == RF_OK)
        s = rf_prune_open_model(ctx, io->n_parents > 0 ? io->parent_ckpts[0] : NULL, jstring(st, "model"), io->train, cfg.seed, &m);
    double tp = rf_now();
    if (s == RF_OK) s = rf_prune_model(ctx, m, &cfg, io->train);
    tp = rf_now() - tp;
    /* Collapse is judged right after pruning (the SynFlow paper's measure);
     * fine-tuning cannot revive weights, so it does not change it. */
    cJSON *pruned = cJSON_CreateObject();
    if (s == RF_OK && !pruned) s = rf_error(ctx, RF_ERR_NOMEM, "prune: metrics");
    if (s == RF_OK) s = rf_prune_report(ctx, m, pruned);
    if (s == RF_OK && io->log) {
        char line[160];
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(pruned, "remaining");
        snprintf(line, sizeof line, "prune %s: %.4f%% of prunable weights remain (%.2f s)",
                 rf_prune_method_name(cfg.method), 100.0 * (r ? r->valuedouble : 0), tp);
        io->log(io->log_ud, line);
    }
    rf_train_result res;
    memset(&res, 0, sizeof res);
    if (s == RF_OK && (tc.epochs > 0 || tc.iterations > 0))
        s = rf_task_train_resumable(ctx, io, m, io->train, io->test, &tc, NULL, NULL, &res);
    char extra[256];
    snprintf(extra, sizeof extra, "{\"kind\":\"prune\",\"method\":\"%s\",\"target_sparsity\":%.17g,\"scope\":\"%s\"}",
             rf_prune_method_name(cfg.method), cfg.sparsity, cfg.scope == RF_SCOPE_GLOBAL ? "global" : "layer");
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = rf_prune_report(ctx, m, metrics);
    if (s == RF_OK) {
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(pruned, "collapsed_layers");
        int ok = cJSON_AddStringToObject(metrics, "method", rf_prune_method_name(cfg.method))
              && cJSON_AddNumberToObject(metrics, "target_sparsity", cfg.sparsity)
              && cJSON_AddNumberToObject(metrics, "prune_seconds", tp)
              && cJSON_AddItemToObject(metrics, "collapsed_at_prune", cJSON_Duplicate(cl, 1))
              && cJSON_AddNumberToObject(metrics, "finetune_steps", (double)res.steps)
              && cJSON_AddNumberToObject(metrics, "best_accuracy", res.steps ? res.best_accuracy : 0.0)
              && cJSON_AddNumberToObject(metrics, "best_iteration", (double)res.best_iteration);
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        ok = ok && cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0);
        if (!ok) s = rf_error(ctx, RF_ERR_NOMEM, "prune: metrics");
    }
    cJSON_Delete(pruned);
    rf_model_free(m);
    rf_free(owned);
    if (s != RF_OK && ctx->err[0] && strncmp(ctx->err, "prune", 5) != 0) rf_error_prefix(ctx, "prune");
    return s;
}
