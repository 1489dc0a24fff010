/* Task kind "prune": one-shot pruning of a trained checkpoint (the first
 * parent) or of a freshly initialised model (settings "model", for the
 * pruning-at-initialisation methods), then optional fine-tuning with the
 * mask fixed. Settings keys: docs/pruning.md. */
#include "raffle/prune.h"
#include "raffle/plan.h"
#include "raffle/train.h"
#include "task/task_keys.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- settings ------------------------------------------------------------------
 * One entry per key; the experiment table and the task table share the
 * entries they have in common (same default, same bounds). */
static const char *const scopes[] = {"global", "layer", NULL};

/* A method's own keys are settings only where its descriptor reads them
 * (rf_prune_method_desc.keys), so they do not split ids of other methods. */
static int method_reads(const rf_setting *s, const cJSON *st) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st, "method");
    return cJSON_IsString(m) && rf_prune_method_reads(rf_prune_method_from_name(m->valuestring), s->key);
}

#define KEY_METHOD(grid) {.key = "method", .type = RF_SET_ENUM, .flags = (grid) | RF_SF_REQUIRED, \
    .choices_fn = rf_prune_method_list, .doc = "saliency (docs/pruning.md, the method table)"}
#define KEY_SCOPE(grid) {.key = "scope", .type = RF_SET_ENUM, .flags = (grid), .choices = scopes, .def = "\"global\"", \
    .doc = "rank all eligible weights together (one threshold), or each tensor at its own rate"}
#define KEY_SYNFLOW(grid, applies_, when_) {.key = "synflow_rounds", .type = RF_SET_INT, .flags = (grid), .lo = 1, \
    .hi = 100000, .def = "100", .doc = "SynFlow iterations", .applies = applies_, .when = when_}
#define KEY_OBD(grid, applies_, when_) {.key = "obd_batches", .type = RF_SET_INT, .flags = (grid), .lo = 1, .hi = 100000, \
    .def = "10", .unit = "batches", .doc = "batches of the multi-batch estimates (OBD, GraSP, Taylor)", \
    .applies = applies_, .when = when_}

#define KEY_NM(grid) {.key = "nm", .type = RF_SET_STR, .flags = (grid) | RF_SF_OPTIONAL, \
    .doc = "N:M constraint, e.g. \"2:4\", \"1:4\", \"4:8\": every M consecutive weights of a row keep N (sparsity must be 1 − N/M)"}

static const rf_setting prune_keys[] = {
    KEY_METHOD(0),
    {.key = "sparsity", .type = RF_SET_NUM, .flags = RF_SF_REQUIRED, .lo = 0, .hi = 1,
     .doc = "fraction of eligible weights removed; compression ratio 1/(1 - s)"},
    KEY_SCOPE(0),
    {.key = "finetune_epochs", .type = RF_SET_INT, .lo = 0, .hi = 1e6, .def_from = "epochs", .unit = "passes",
     .doc = "fine-tuning with the mask fixed (0 and finetune_iterations 0: none)"},
    {.key = "finetune_iterations", .type = RF_SET_INT, .lo = 0, .hi = 1e12, .def_from = "iterations", .unit = "steps",
     .doc = "fine-tuning steps; > 0 overrides finetune_epochs"},
    KEY_SYNFLOW(0, method_reads, "the method reads it"),
    KEY_OBD(0, method_reads, "the method reads it"),
    {.key = "output_rate", .type = RF_SET_NUM, .flags = RF_SF_OPTIONAL, .lo = -1, .hi = 1, .def = "-1",
     .doc = "sparsity of the output layer, ranked on its own (< 0: like the rest)"},
    {.key = "layers", .type = RF_SET_STR, .flags = RF_SF_OPTIONAL,
     .doc = "eligible tensors, a glob list over tensor and layer names: \"fc*,!fc3*\" (absent: every prunable one)"},
    {.key = "layer_sparsity", .type = RF_SET_RATES, .flags = RF_SF_OPTIONAL | RF_SF_NOCLI,
     .doc = "per-tensor rates {glob: rate}, first match wins (layer scope)"},
    {.key = "grasp_eps", .type = RF_SET_NUM, .flags = RF_SF_OPTIONAL, .lo = 1e-12, .hi = 1, .def = "0.003",
     .doc = "GraSP finite-difference step, relative to the weights' norm", .applies = method_reads,
     .when = "the method reads it"},
    KEY_NM(0),
    RF_SETTINGS_END
};
static const char *const prune_train_omit[] = {"epochs", "iterations", NULL};

/* The N:M setting "N:M" of a prune task or experiment: the pattern, checked
 * against the method (one that scores weights) and the sparsity (1 − N/M).
 * path names the setting in errors. */
static rf_status nm_setting(rf_ctx *ctx, const cJSON *st, const char *path, rf_prune_cfg *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, "nm");
    cfg->nm_n = cfg->nm_m = 0;
    if (!v) return RF_OK;
    int n = 0, m = 0;
    if (!cJSON_IsString(v) || rf_prune_nm_parse(ctx, v->valuestring, &n, &m)) {
        if (!cJSON_IsString(v)) return rf_error(ctx, RF_ERR_INVALID, "%s.nm: expected \"N:M\" such as \"2:4\"", path);
        rf_error_prefix(ctx, "%s.nm", path);
        return RF_ERR_INVALID;
    }
    const rf_prune_method_desc *d = rf_prune_method_get(cfg->method);
    if (d && (d->prune || (d->flags & RF_PM_STRUCT)))
        return rf_error(ctx, RF_ERR_INVALID, "%s.nm: method %s does not score single weights (N:M takes magnitude, snip, taylor, ...)", path, d->name);
    if (fabs(cfg->sparsity - (1.0 - (double)n / m)) > 1e-9)
        return rf_error(ctx, RF_ERR_INVALID, "%s.nm: sparsity %g contradicts \"%s\" (1 - N/M = %g)", path, cfg->sparsity, v->valuestring,
                        1.0 - (double)n / m);
    cfg->nm_n = n;
    cfg->nm_m = m;
    return RF_OK;
}

/* Reads the pruning keys of a prune or lottery task into cfg. Strings and
 * arrays borrow from settings and from *owned (a new block, rf_free). */
static rf_status prune_cfg(rf_ctx *ctx, const cJSON *st, const rf_setting *tab, rf_prune_cfg *cfg, void **owned) {
    *owned = NULL;
    rf_prune_cfg_default(cfg);
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(st, "method");
    if (mv) cfg->method = rf_prune_method_from_name(rf_settings_str(st, tab, "method"));
    cfg->scope = (rf_prune_scope)rf_prune_scope_from_name(rf_settings_str(st, tab, "scope"));
    cfg->sparsity = rf_settings_num(st, tab, "sparsity");
    cfg->output_rate = rf_settings_num(st, tab, "output_rate");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(st, "layers");
    cfg->layers = cJSON_IsString(layers) ? layers->valuestring : NULL;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(st, "seed");
    cfg->seed = cJSON_IsNumber(seed) ? (uint64_t)seed->valuedouble : 0;
    cfg->batches = (int)rf_settings_num(st, tab, "obd_batches");
    cfg->batch = (int)rf_settings_num(st, rf_train_settings, "batch");
    cfg->synflow_rounds = (int)rf_settings_num(st, tab, "synflow_rounds");
    cfg->grasp_eps = rf_settings_num(st, tab, "grasp_eps");
    RF_TRY(nm_setting(ctx, st, "settings", cfg));
    return rf_task_layer_rates(ctx, st, cfg, owned);
}

rf_status rf_task_layer_rates(rf_ctx *ctx, const cJSON *st, rf_prune_cfg *cfg, void **owned) {
    *owned = NULL;
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(st, "layer_sparsity");
    if (!cJSON_IsObject(ls)) return RF_OK;
    int n = cJSON_GetArraySize(ls);
    void *blk = rf_malloc((size_t)(n > 0 ? n : 1) * (sizeof(const char *) + sizeof(double)));
    if (!blk) return rf_error(ctx, RF_ERR_NOMEM, "settings");
    const char **pats = blk;
    double *rates = (double *)(pats + (n > 0 ? n : 1));
    int i = 0;
    for (const cJSON *e = ls->child; e; e = e->next, i++) {
        pats[i] = e->string;
        rates[i] = e->valuedouble;
    }
    cfg->n_layer_rates = n;
    cfg->rate_patterns = pats;
    cfg->rates = rates;
    *owned = blk;
    return RF_OK;
}

/* Dense latency of m at batch 1 and 64 (best of repeated forwards, OpenBLAS
 * sgemm, no inference overrides) on the first samples of ds. */
static rf_status dense_latency(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, double *ms1, double *ms64) {
    enum { BIG = 64 };
    const size_t ss = (size_t)m->input.d[0] * m->input.d[1] * m->input.d[2];
    float *x = rf_calloc((size_t)BIG * ss, sizeof(float));
    if (!x) return rf_error(ctx, RF_ERR_NOMEM, "prune: latency");
    if (ds && ds->n > 0 && (size_t)ds->c * ds->h * ds->w == ss)
        for (int i = 0; i < BIG; i++) memcpy(x + (size_t)i * ss, ds->x + (size_t)(i % ds->n) * ss, ss * sizeof(float));
    double t1 = 0, t64 = 0;
    rf_status s = rf_task_time_forward(ctx, m, x, 1, 0.25, &t1);
    if (!s) s = rf_task_time_forward(ctx, m, x, BIG, 0.25, &t64);
    rf_free(x);
    *ms1 = t1 * 1e3;
    *ms64 = t64 * 1e3;
    return s;
}

/* A structured method's model, physically smaller: slices the masked
 * units away (rf_model_slice) and records the model before and after
 * (FLOPs, parameters, dense latency). *m is replaced by the sliced model. */
static rf_status slice_pruned(rf_ctx *ctx, const rf_task_io *io, rf_model **m, cJSON *rec) {
    double f0 = rf_model_flops(*m), b1 = 0, b64 = 0, a1 = 0, a64 = 0;
    size_t p0 = (*m)->n_params;
    rf_model *sl = NULL;
    long removed = 0;
    rf_status s = dense_latency(ctx, *m, io->test ? io->test : io->train, &b1, &b64);
    if (!s) s = rf_model_slice(ctx, *m, &sl, &removed);
    if (!s) {
        /* the sliced model keeps masks only where something is still masked */
        int any = 0;
        for (size_t i = 0; sl->masks && i < sl->n_params && !any; i++) any = sl->masks[i] == 0.0f;
        if (!any) { rf_free(sl->masks); sl->masks = NULL; }
        s = dense_latency(ctx, sl, io->test ? io->test : io->train, &a1, &a64);
    }
    if (s) { rf_model_free(sl); return s; }
    rf_model_free(*m);
    *m = sl;
    if (!cJSON_AddNumberToObject(rec, "flops_before", f0) || !cJSON_AddNumberToObject(rec, "parameters_before", (double)p0) ||
        !cJSON_AddNumberToObject(rec, "units_removed", (double)removed) ||
        !cJSON_AddNumberToObject(rec, "dense_latency_before_ms", b1) ||
        !cJSON_AddNumberToObject(rec, "dense_latency_sliced_ms", a1) ||
        !cJSON_AddNumberToObject(rec, "dense_throughput_before", b64 > 0 ? 64e3 / b64 : 0.0) ||
        !cJSON_AddNumberToObject(rec, "dense_throughput_sliced", a64 > 0 ? 64e3 / a64 : 0.0))
        return rf_error(ctx, RF_ERR_NOMEM, "prune: metrics");
    return RF_OK;
}

rf_status rf_task_prune(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const cJSON *st = io->settings;
    double t0 = rf_now();
    RF_TRY(rf_kind_check(ctx, &rf_kind_prune, st, "settings"));
    rf_prune_cfg cfg;
    void *owned = NULL;
    RF_TRY(prune_cfg(ctx, st, prune_keys, &cfg, &owned));
    /* The canonical training keys (docs/training.md). */
    rf_train_cfg tc;
    rf_status s = rf_task_train_cfg_io(ctx, io, 200, &tc);
    tc.epochs = (int)rf_settings_num(st, prune_keys, "finetune_epochs");
    tc.iterations = (int64_t)rf_settings_num(st, prune_keys, "finetune_iterations");
    const rf_prune_method_desc *md = rf_prune_method_get(cfg.method);
    const int slices = md && (md->flags & (RF_PM_CHANNELS | RF_PM_NEURONS));

    rf_model *m = NULL;
    if (s == RF_OK)
        s = rf_task_open_model(ctx, "prune", io->n_parents > 0 ? io->parent_ckpts[0] : NULL, st, io->train, cfg.seed, &m);
    double tp = rf_now();
    if (s == RF_OK) s = rf_prune_model(ctx, m, &cfg, io->train);
    tp = rf_now() - tp;
    /* Collapse is judged right after pruning (the SynFlow paper's measure);
     * fine-tuning cannot revive weights, so it does not change it. */
    cJSON *pruned = cJSON_CreateObject(), *sliced = cJSON_CreateObject();
    if (s == RF_OK && (!pruned || !sliced)) s = rf_error(ctx, RF_ERR_NOMEM, "prune: metrics");
    if (s == RF_OK) s = rf_prune_report(ctx, m, pruned);
    if (s == RF_OK && io->log) {
        char line[160];
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(pruned, "remaining");
        snprintf(line, sizeof line, "prune %s: %.4f%% of prunable weights remain (%.2f s)",
                 rf_prune_method_name(cfg.method), 100.0 * (r ? r->valuedouble : 0), tp);
        io->log(io->log_ud, line);
    }
    /* structured: the smaller dense model is what is fine-tuned and saved */
    if (s == RF_OK && slices) s = slice_pruned(ctx, io, &m, sliced);
    rf_train_result res;
    memset(&res, 0, sizeof res);
    /* the accuracy right after pruning (ShrinkBench reports both): the
     * same evaluation rf_task_finish runs, before fine-tuning changes it */
    const int finetunes = tc.epochs > 0 || tc.iterations > 0;
    /* pruned at initialisation (no parent): what follows is the training,
     * and the model before it is an untrained one (chance accuracy), not a
     * trained model before fine-tuning: no "before fine-tuning" numbers,
     * which would draw a chance-level line in the ShrinkBench plot */
    const int at_init = io->n_parents == 0;
    double acc0 = -1.0, vacc0 = -1.0;
    rf_train_curve curve = {0};
    tc.curve = &curve;
    if (s == RF_OK && finetunes && !at_init) s = rf_task_evaluate_both(ctx, io, m, &acc0, &vacc0);
    if (s == RF_OK && finetunes)
        s = rf_task_train_resumable(ctx, io, m, io->train, io->test, &tc, NULL, NULL, &res);
    char extra[256];
    snprintf(extra, sizeof extra, "{\"kind\":\"prune\",\"method\":\"%s\",\"target_sparsity\":%.17g,\"scope\":\"%s\"}",
             rf_prune_method_name(cfg.method), cfg.sparsity, cfg.scope == RF_SCOPE_GLOBAL ? "global" : "layer");
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = rf_prune_report(ctx, m, metrics);
    if (s == RF_OK) {
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(pruned, "collapsed_layers");
        if (!finetunes) {   /* nothing changed the model after pruning */
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(metrics, "test_accuracy"), *v = cJSON_GetObjectItemCaseSensitive(metrics, "val_accuracy");
            acc0 = cJSON_IsNumber(a) ? a->valuedouble : -1.0;
            vacc0 = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
        }
        int ok = cJSON_AddStringToObject(metrics, "method", rf_prune_method_name(cfg.method))
              && (at_init || (cJSON_AddNumberToObject(metrics, "accuracy_before_finetune", acc0)
                              && cJSON_AddNumberToObject(metrics, "val_accuracy_before_finetune", vacc0)))
              && (!finetunes || rf_task_add_curve(metrics, &curve))
              && cJSON_AddNumberToObject(metrics, "prune_seconds", tp)
              && cJSON_AddItemToObject(metrics, "collapsed_at_prune", cJSON_Duplicate(cl, 1))
              && cJSON_AddNumberToObject(metrics, "finetune_steps", (double)res.steps)
              && (res.steps ? rf_task_add_selection(&res, metrics)
                            : cJSON_AddNumberToObject(metrics, "best_iteration", -1) != NULL)
              && (!cfg.nm_m || cJSON_AddStringToObject(metrics, "nm", cJSON_GetObjectItemCaseSensitive(st, "nm")->valuestring));
        for (cJSON *e = sliced ? sliced->child : NULL; ok && e; e = e->next)
            ok = cJSON_AddNumberToObject(metrics, e->string, e->valuedouble) != NULL;
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        ok = ok && cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0);
        if (!ok) s = rf_error(ctx, RF_ERR_NOMEM, "prune: metrics");
    }
    cJSON_Delete(pruned);
    cJSON_Delete(sliced);
    rf_free(curve.v);
    rf_model_free(m);
    rf_free(owned);
    if (s != RF_OK && ctx->err[0] && strncmp(ctx->err, "prune", 5) != 0) rf_error_prefix(ctx, "prune");
    return s;
}

/* ---- the experiment -------------------------------------------------------------
 * DAG: dense train (per seed) -> prune; with at_init no parent: the model
 * is pruned at initialisation and then trained. Fine-tuning: the
 * experiment's training keys overlaid with "finetune"; its length goes to
 * finetune_epochs / finetune_iterations (docs/pruning.md). */
/* What a job can check before any work: the N:M setting against the
 * method and sparsity, and that a structured method can slice the layers
 * `layers` names (the model built from its preset or spec). x: the prune
 * experiment's (or a quantize experiment's `prune`) object. */
static int check_prune_point(rf_plan *p, const rf_point *pt, const cJSON *x) {
    rf_ctx *ctx = rf_plan_ctx(p);
    rf_prune_cfg cfg;
    rf_prune_cfg_default(&cfg);
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(x, "method"), *sp = cJSON_GetObjectItemCaseSensitive(x, "sparsity");
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(x, "layers");
    cfg.method = cJSON_IsString(mv) ? rf_prune_method_from_name(mv->valuestring) : -1;
    cfg.sparsity = cJSON_IsNumber(sp) ? sp->valuedouble : 0.0;
    cfg.layers = cJSON_IsString(lv) ? lv->valuestring : NULL;
    if (nm_setting(ctx, x, "experiment", &cfg)) return -1;
    const rf_prune_method_desc *d = rf_prune_method_get(cfg.method);
    if (!d || !(d->flags & RF_PM_STRUCT) || !cJSON_IsString(pt->model)) return 0;
    rf_model *m = NULL;
    rf_status s = rf_model_create(ctx, pt->model->valuestring, &m);
    if (!s) s = rf_prune_struct_check(ctx, m, &cfg);
    rf_model_free(m);
    return s ? -1 : 0;
}

int32_t rf_prune_plan_task(rf_plan *p, const rf_point *pt, const cJSON *x) {
    int32_t par[1];
    int np = 0;
    if (check_prune_point(p, pt, x)) return -1;
    const int at_init = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "at_init"));
    if (at_init && pt->from >= 0) {
        rf_error(rf_plan_ctx(p), RF_ERR_JOB, "at_init: a stage with \"from\" prunes its parent's trained model, not an initialised one");
        return -1;
    }
    if (!at_init) {
        if ((par[0] = rf_plan_start(p, pt, pt->train)) < 0) return -1;
        np = 1;
    }
    cJSON *ft = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(x, "finetune"));
    if (!ft) return rf_plan_nomem(p, NULL);
    double cost = rf_plan_train_cost(ft, pt->data, pt->model);
    cJSON *len_e = cJSON_DetachItemFromObjectCaseSensitive(ft, "epochs");
    cJSON *len_i = cJSON_DetachItemFromObjectCaseSensitive(ft, "iterations");
    cJSON *s = rf_plan_settings(pt, pt->data, pt->model, ft);
    cJSON_Delete(ft);
    if (!s) { cJSON_Delete(len_e); cJSON_Delete(len_i); return rf_plan_nomem(p, NULL); }
    int ok_e = !len_e || rf_plan_put(s, "finetune_epochs", len_e);   /* both run: put frees what it cannot add */
    int ok_i = !len_i || rf_plan_put(s, "finetune_iterations", len_i);
    static const char *const keys[] = {"method", "sparsity", "scope", "synflow_rounds", "obd_batches", "nm", "layers",
                                       "layer_sparsity", NULL};
    if (!ok_e || !ok_i || !rf_plan_copy_keys(s, x, keys)) return rf_plan_nomem(p, s);
    /* method-specific keys only where they matter, so they do not split ids */
    for (const rf_setting *k = prune_keys; k->key; k++)
        if (!rf_setting_applies(k, s)) cJSON_DeleteItemFromObjectCaseSensitive(s, k->key);
    return rf_plan_add(p, RF_JOB_PRUNE, s, par, np, cost);
}

static int expand_prune(rf_plan *p, const rf_point *pt) { return rf_prune_plan_task(p, pt, pt->x) < 0 ? -1 : 0; }

static const char *label_prune(const cJSON *set, char *buf, size_t n) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(set, "method");
    return cJSON_IsString(m) ? m->valuestring : "prune";
}

const rf_setting rf_prune_exp_keys[] = {
    KEY_METHOD(RF_SF_GRID),
    {.key = "sparsity", .type = RF_SET_NUM, .flags = RF_SF_GRID | RF_SF_REQUIRED, .lo = 0, .hi = 1, .hi_open = 1,
     .doc = "fraction of prunable weights removed; compression ratio 1/(1 - s)"},
    KEY_SCOPE(RF_SF_GRID),
    {.key = "at_init", .type = RF_SET_BOOL, .flags = RF_SF_GRID, .def = "false",
     .doc = "prune the initialised model, then train it (SNIP, GraSP, SynFlow protocol)"},
    KEY_SYNFLOW(RF_SF_GRID, NULL, NULL),
    KEY_OBD(RF_SF_GRID, NULL, NULL),
    KEY_NM(RF_SF_GRID),
    {.key = "layers", .type = RF_SET_STR, .flags = RF_SF_OPTIONAL,
     .doc = "eligible tensors, a glob list over tensor and layer names: \"conv*,!conv1\" (absent: every prunable one)"},
    {.key = "finetune", .type = RF_SET_OBJ, .sub = rf_train_settings,
     .doc = "fine-tuning with the mask fixed, over the experiment's `train`; `epochs: 0, iterations: 0` = none"},
    {.key = "layer_sparsity", .type = RF_SET_RATES, .flags = RF_SF_OPTIONAL,
     .doc = "per-tensor rates {glob: rate}, first match wins (layer scope): e.g. Deep Compression's per-layer rates"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_prune = {
    .name = "prune", .summary = "one-shot pruning by any method of the method table (magnitude, snip, taylor, ...) + fine-tuning",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_RESUMABLE | RF_KIND_CKPT | RF_KIND_FROM,
    .keys = prune_keys, .train_omit = prune_train_omit,
    .min_parents = 0, .max_parents = 1,
    .parents_doc = "the trained model (none: prune the initialised `model`, pruning at initialisation)",
    .run = rf_task_prune,
    .experiment = "prune", .exp_keys = rf_prune_exp_keys,
    .exp_doc = "dense `train` (per seed) → `prune`; with `at_init` no parent: the model is pruned at initialisation and then trained",
    .expand = expand_prune, .label = label_prune, .plot = RF_PLOT_SPARSITY,
};
