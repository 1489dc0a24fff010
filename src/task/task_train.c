/* Task kind "train": trains a model from a preset/spec (or continues from the
 * first parent's checkpoint) and finishes through rf_task_finish. Also holds
 * the parser of the canonical training settings that every kind which trains
 * (pruning fine-tune, distillation, QAT) shares, so one key means one thing
 * everywhere (docs/training.md lists them). */
#include "raffle/task.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void rf_task_train_cfg_default(rf_train_cfg *cfg) {
    rf_train_cfg_default(cfg);
    cfg->epochs = 10;
    cfg->batch = 128;
    rf_optim_cfg_default(&cfg->optim, RF_OPT_ADAM);
    cfg->optim.sched = RF_SCHED_COSINE;
}

typedef enum { K_INT, K_I64, K_U64, K_FLOAT } key_type;
/* Numeric settings: where each goes in rf_train_cfg and its valid range. */
static const struct num_key {
    const char *name;
    key_type    type;
    size_t      off;
    double      lo, hi;
} num_keys[] = {
    {"seed",            K_U64,   offsetof(rf_train_cfg, seed),              0, 18446744073709551615.0},
    {"epochs",          K_INT,   offsetof(rf_train_cfg, epochs),            0, 1e6},
    {"iterations",      K_I64,   offsetof(rf_train_cfg, iterations),        0, 1e15},
    {"batch",           K_INT,   offsetof(rf_train_cfg, batch),             1, 1 << 20},
    {"lr",              K_FLOAT, offsetof(rf_train_cfg, optim.lr),          0, 1e6},
    {"momentum",        K_FLOAT, offsetof(rf_train_cfg, optim.momentum),    0, 1},
    {"weight_decay",    K_FLOAT, offsetof(rf_train_cfg, optim.weight_decay),0, 1e6},
    {"warmup",          K_I64,   offsetof(rf_train_cfg, optim.warmup_steps),0, 1e15},
    {"label_smoothing", K_FLOAT, offsetof(rf_train_cfg, label_smoothing),   0, 0.999999},
    {"eval_limit",      K_I64,   offsetof(rf_train_cfg, eval_limit),        0, 1e15},
    {"eval_every",      K_INT,   offsetof(rf_train_cfg, eval_every),        0, 2147483647.0},
    {"clip_norm",       K_FLOAT, offsetof(rf_train_cfg, optim.clip_norm),   0, 1e30},
};

static rf_status set_num(rf_ctx *ctx, const struct num_key *k, const cJSON *v, rf_train_cfg *cfg) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < k->lo || v->valuedouble > k->hi)
        return rf_error(ctx, RF_ERR_INVALID, "settings \"%s\": expected a number in [%g, %g]", k->name, k->lo, k->hi);
    double d = v->valuedouble;
    char *p = (char *)cfg + k->off;
    if (k->type != K_FLOAT && d != floor(d))
        return rf_error(ctx, RF_ERR_INVALID, "settings \"%s\": expected an integer, got %g", k->name, d);
    switch (k->type) {
    case K_INT:   *(int *)p = (int)d; break;
    case K_I64:   *(int64_t *)p = (int64_t)d; break;
    case K_U64:   *(uint64_t *)p = (uint64_t)d; break;
    case K_FLOAT: *(float *)p = (float)d; break;
    }
    return RF_OK;
}

static rf_status get_name(rf_ctx *ctx, const cJSON *settings, const char *key, int (*lookup)(const char *),
                          const char *choices, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(settings, key);
    *out = -1;
    if (!v) return RF_OK;
    int t = cJSON_IsString(v) ? lookup(v->valuestring) : -1;
    if (t < 0) return rf_error(ctx, RF_ERR_INVALID, "settings \"%s\": expected one of %s", key, choices);
    *out = t;
    return RF_OK;
}

rf_status rf_task_train_cfg(rf_ctx *ctx, const cJSON *settings, rf_train_cfg *cfg) {
    rf_task_train_cfg_default(cfg);
    if (!settings) return RF_OK;
    if (!cJSON_IsObject(settings)) return rf_error(ctx, RF_ERR_INVALID, "settings must be a JSON object");
    int opt, sched;
    RF_TRY(get_name(ctx, settings, "optimizer", rf_optim_type_from_name, "sgd, adam, adamw", &opt));
    RF_TRY(get_name(ctx, settings, "schedule", rf_sched_type_from_name, "constant, step, cosine, linear", &sched));
    if (opt >= 0) {  /* the optimizer's own defaults first; explicit keys override them below */
        rf_optim_cfg_default(&cfg->optim, (rf_optim_type)opt);
        cfg->optim.sched = RF_SCHED_COSINE;
    }
    if (sched >= 0) cfg->optim.sched = (rf_sched_type)sched;
    for (size_t i = 0; i < sizeof num_keys / sizeof num_keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(settings, num_keys[i].name);
        if (v && !cJSON_IsNull(v)) RF_TRY(set_num(ctx, &num_keys[i], v, cfg));
    }
    const cJSON *nest = cJSON_GetObjectItemCaseSensitive(settings, "nesterov");
    if (nest) {
        if (!cJSON_IsBool(nest)) return rf_error(ctx, RF_ERR_INVALID, "settings \"nesterov\": expected true or false");
        cfg->optim.nesterov = cJSON_IsTrue(nest);
    }
    if (cfg->iterations == 0 && cfg->epochs == 0)
        return rf_error(ctx, RF_ERR_INVALID, "settings: one of \"epochs\" or \"iterations\" must be > 0");
    return RF_OK;
}

/* The model to train: the first parent's checkpoint (fine-tuning), else a
 * fresh preset/spec initialised from the seed. */
static rf_status make_model(rf_ctx *ctx, const rf_task_io *io, uint64_t seed, rf_model **m) {
    if (io->n_parents > 0) {
        rf_status s = rf_model_load(ctx, io->parent_ckpts[0], m);
        if (s != RF_OK) rf_error_prefix(ctx, "train: parent %s", io->parent_ckpts[0]);
        return s;
    }
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(io->settings, "model");
    if (!cJSON_IsString(mv)) return rf_error(ctx, RF_ERR_INVALID, "train: settings have no \"model\" string and the task has no parent");
    RF_TRY(rf_model_create(ctx, mv->valuestring, m));
    rf_status s = rf_model_init(ctx, *m, seed);
    if (s != RF_OK) { rf_model_free(*m); *m = NULL; }
    return s;
}

rf_status rf_task_train(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "train: no training data");
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg(ctx, io->settings, &cfg));
    cfg.log = io->log;
    cfg.log_ud = io->log_ud;
    cfg.log_every = io->log ? 100 : 0;
    cfg.stop_flag = io->stop_flag;
    rf_model *m = NULL;
    RF_TRY(make_model(ctx, io, cfg.seed, &m));
    rf_train_result r;
    rf_status s = rf_train(ctx, m, io->train, io->test, &cfg, NULL, NULL, &r);
    if (s == RF_OK && r.stopped)
        s = rf_error(ctx, RF_ERR_PREEMPTED, "train: stopped on request after %lld steps", (long long)r.steps);
    char *extra = NULL;
    if (s == RF_OK) {
        /* Deterministic content only (no timings): same settings, same bytes. */
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddStringToObject(e, "kind", "train") ||
            !cJSON_AddItemToObject(e, "settings", cJSON_Duplicate(io->settings, 1)) ||
            !cJSON_AddNumberToObject(e, "steps", (double)r.steps) ||
            !(extra = cJSON_PrintUnformatted(e)))
            s = rf_error(ctx, RF_ERR_NOMEM, "train: cannot build checkpoint metadata");
        cJSON_Delete(e);
    }
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddNumberToObject(metrics, "best_accuracy", r.best_accuracy) ||
            !cJSON_AddNumberToObject(metrics, "best_iteration", (double)r.best_iteration) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            !cJSON_AddNumberToObject(metrics, "train_loss", r.train_loss) ||
            !cJSON_AddNumberToObject(metrics, "samples_per_s", r.samples_per_s) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "train: cannot build metrics");
    }
    cJSON_free(extra);
    rf_model_free(m);
    return s;
}
