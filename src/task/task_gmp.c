/* Task kind "gmp": gradual magnitude pruning (Zhu & Gupta 2017, "To prune,
 * or not to prune", eq. 1) as a stage of its own: the model (its parent's,
 * or a fresh one) is trained while its masks follow the cubic schedule
 * s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))^3 from `initial_sparsity`
 * (s_i, default 0) at `prune_start` (t0, default the first step) to
 * `sparsity` (s_f) at `prune_end`, updated every `prune_every` (Δt); before
 * t0 the model trains dense (the paper starts pruning from a partly trained
 * model), after the end with the mask fixed. The three times are fractions
 * of the run, so a schedule keeps its shape at any run length. The same hook the OFA pipeline's
 * sparse pre-training uses (rf_gmp, raffle/prune.h), without distillation. */
#include "raffle/prune.h"
#include "raffle/distill.h"
#include "raffle/plan.h"
#include "task/task_keys.h"

#include <stdio.h>
#include <string.h>

static const char *const scopes[] = {"global", "layer", NULL};

#define KEY_SPARSITY(grid) {.key = "sparsity", .type = RF_SET_NUM, .flags = (grid) | RF_SF_REQUIRED, .lo = 0, .hi = 1, \
    .hi_open = 1, .doc = "final fraction of prunable weights removed (s_f)"}
#define KEY_END(grid) {.key = "prune_end", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .lo_open = 1, \
    .def = "0.75", .doc = "fraction of the run at which the target is reached; the rest trains with the mask fixed"}
#define KEY_EVERY(grid) {.key = "prune_every", .type = RF_SET_NUM, .flags = (grid), .lo = 0, .hi = 1, .lo_open = 1, \
    .def = "0.02", .doc = "mask update period Δt, as a fraction of the run"}
#define KEY_SCOPE(grid) {.key = "scope", .type = RF_SET_ENUM, .flags = (grid), .choices = scopes, .def = "\"global\"", \
    .doc = "one magnitude threshold over all eligible weights, or each tensor at the schedule's rate"}
#define KEY_LAYERS(grid) {.key = "layers", .type = RF_SET_STR, .flags = (grid) | RF_SF_OPTIONAL, \
    .doc = "eligible tensors, a glob list over tensor and layer names (absent: every prunable one)"}

/* Optional: absent, a task's settings (and id) are those from before these
 * keys; the default is the schedule they had (from 0, at the first step). */
#define KEY_START(grid) {.key = "prune_start", .type = RF_SET_NUM, .flags = (grid) | RF_SF_OPTIONAL, .lo = 0, .hi = 1, \
    .hi_open = 1, .def = "0", .doc = "fraction of the run trained dense before the first mask update (t0); below `prune_end`"}
#define KEY_INITIAL(grid) {.key = "initial_sparsity", .type = RF_SET_NUM, .flags = (grid) | RF_SF_OPTIONAL, .lo = 0, .hi = 1, \
    .hi_open = 1, .def = "0", .doc = "sparsity of the first mask update (s_i); at most `sparsity`"}

/* Optional too: absent, ids are unchanged. */
#define KEY_LAYER_SPARSITY(nocli) {.key = "layer_sparsity", .type = RF_SET_RATES, .flags = RF_SF_OPTIONAL | (nocli), \
    .doc = "per-tensor final rates {glob: rate}, first match wins (scope `layer`; Deep Compression's per-layer rates): " \
           "each tensor follows the schedule scaled to its rate r, r·s_t/s_f; the others follow s_t"}

static const rf_setting gmp_keys[] = {KEY_SPARSITY(0), KEY_END(0), KEY_EVERY(0), KEY_SCOPE(0), KEY_LAYERS(0),
                                      KEY_START(0), KEY_INITIAL(0), KEY_LAYER_SPARSITY(RF_SF_NOCLI), RF_SETTINGS_END};

/* What the table's bounds cannot say: t0 before the end, s_i at most s_f
 * (a schedule that would un-prune). path: the JSON path of o's keys. */
static rf_status check_schedule(rf_ctx *ctx, const cJSON *o, const char *path) {
    const double start = rf_settings_num(o, gmp_keys, "prune_start"), end = rf_settings_num(o, gmp_keys, "prune_end");
    const double si = rf_settings_num(o, gmp_keys, "initial_sparsity"), sf = rf_settings_num(o, gmp_keys, "sparsity");
    if (start >= end)
        return rf_error(ctx, RF_ERR_INVALID, "%sprune_start: %g is not before prune_end %g", path, start, end);
    if (si > sf)
        return rf_error(ctx, RF_ERR_INVALID, "%sinitial_sparsity: %g is above the final sparsity %g (the schedule only prunes)",
                        path, si, sf);
    if (cJSON_GetObjectItemCaseSensitive(o, "layer_sparsity")) {
        if (strcmp(rf_settings_str(o, gmp_keys, "scope"), "layer") != 0)
            return rf_error(ctx, RF_ERR_INVALID, "%slayer_sparsity: per-tensor rates need \"scope\": \"layer\"", path);
        if (!(sf > 0))
            return rf_error(ctx, RF_ERR_INVALID, "%slayer_sparsity: needs a final sparsity above 0 (each rate r is reached "
                            "as r·s_t/s_f)", path);
    }
    return RF_OK;
}

rf_status rf_task_gmp(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const double t0 = rf_now();
    const cJSON *st = io->settings;
    if (!io->train) return rf_error(ctx, RF_ERR_INVALID, "gmp: no training data");
    RF_TRY(rf_kind_check(ctx, &rf_kind_gmp, st, "settings"));
    RF_TRY(check_schedule(ctx, st, "gmp: settings."));
    rf_train_cfg cfg;
    RF_TRY(rf_task_train_cfg_io(ctx, io, 100, &cfg));
    int batch = cfg.batch > 0 ? cfg.batch : 128;
    if (batch > io->train->n) batch = (int)io->train->n;
    const int64_t total = cfg.iterations > 0 ? cfg.iterations : (int64_t)cfg.epochs * (io->train->n / batch);
    const double sparsity = rf_settings_num(st, gmp_keys, "sparsity");
    rf_prune_cfg pc;
    rf_prune_cfg_default(&pc);
    pc.method = RF_PRUNE_MAGNITUDE;
    pc.scope = (rf_prune_scope)rf_prune_scope_from_name(rf_settings_str(st, gmp_keys, "scope"));
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(st, "layers");
    pc.layers = cJSON_IsString(lv) ? lv->valuestring : NULL;
    void *rates = NULL;
    RF_TRY(rf_task_layer_rates(ctx, st, &pc, &rates));
    rf_gmp_schedule sched;
    rf_gmp_schedule_for_run(rf_settings_num(st, gmp_keys, "initial_sparsity"), sparsity, total,
                            rf_settings_num(st, gmp_keys, "prune_start"), rf_settings_num(st, gmp_keys, "prune_end"),
                            rf_settings_num(st, gmp_keys, "prune_every"), &sched);
    rf_gmp g;
    rf_model *m = NULL;
    rf_status s = rf_gmp_init(ctx, &g, &pc, &sched);
    if (s == RF_OK)
        s = rf_task_open_model(ctx, "gmp", io->n_parents > 0 ? io->parent_ckpts[0] : NULL, st, io->train, cfg.seed, &m);
    if (s == RF_OK) s = rf_model_ensure_masks(ctx, m);
    rf_train_hooks h;
    memset(&h, 0, sizeof h);
    h.ud = &g;
    h.before_step = rf_gmp_before_step;
    rf_train_curve curve = {0};
    cfg.curve = &curve;
    rf_train_result r;
    memset(&r, 0, sizeof r);
    if (s == RF_OK) s = rf_task_train_resumable(ctx, io, m, io->train, io->test, &cfg, NULL, &h, &r);
    char extra[160];
    snprintf(extra, sizeof extra, "{\"kind\":\"gmp\",\"method\":\"gmp\",\"target_sparsity\":%.17g}", sparsity);
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = rf_prune_report(ctx, m, metrics);
    if (s == RF_OK) {
        cJSON_DeleteItemFromObjectCaseSensitive(metrics, "seconds");
        if (!cJSON_AddStringToObject(metrics, "method", "gmp") ||
            !cJSON_AddNumberToObject(metrics, "mask_updates", (double)g.updates) ||
            !cJSON_AddNumberToObject(metrics, "prune_start_step", (double)sched.start) ||
            !cJSON_AddNumberToObject(metrics, "prune_end_step", (double)sched.end) ||
            !rf_task_add_selection(&r, metrics) || !rf_task_add_curve(metrics, &curve) ||
            !cJSON_AddNumberToObject(metrics, "steps", (double)r.steps) ||
            !cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0))
            s = rf_error(ctx, RF_ERR_NOMEM, "gmp: metrics");
    }
    if (s == RF_ERR_PREEMPTED) rf_error_prefix(ctx, "gmp");
    rf_free(curve.v);
    rf_model_free(m);
    rf_free(rates);
    return s;
}

/* ---- the experiment ---------------------------------------------------------------
 * DAG: dense train (per seed; or the `from` model) -> gmp. The gradual run
 * is the experiment's `train` overlaid by `gradual`. */
static int expand_gmp(rf_plan *p, const rf_point *pt) {
    if (check_schedule(rf_plan_ctx(p), pt->x, "") != RF_OK) { rf_plan_ctx(p)->status = RF_ERR_JOB; return -1; }
    int32_t par = rf_plan_start(p, pt, pt->train);
    if (par < 0) return -1;
    cJSON *gt = rf_plan_overlay(pt->train, cJSON_GetObjectItemCaseSensitive(pt->x, "gradual"));
    cJSON *s = gt ? rf_plan_settings(pt, pt->data, pt->model, gt) : NULL;
    double cost = gt ? rf_plan_train_cost(gt, pt->data, pt->model) : 0;
    cJSON_Delete(gt);
    static const char *const keys[] = {"sparsity", "prune_end", "prune_every", "scope", "layers", "prune_start",
                                       "initial_sparsity", "layer_sparsity", NULL};
    if (!s || !rf_plan_copy_keys(s, pt->x, keys)) return rf_plan_nomem(p, s);
    return rf_plan_add(p, RF_JOB_GMP, s, &par, 1, cost) < 0 ? -1 : 0;
}

static const char *label_gmp(const cJSON *set, char *buf, size_t n) { return "gmp"; }

static const rf_setting gmp_exp_keys[] = {
    KEY_SPARSITY(RF_SF_GRID), KEY_END(RF_SF_GRID), KEY_EVERY(RF_SF_GRID), KEY_SCOPE(RF_SF_GRID), KEY_LAYERS(0),
    KEY_START(RF_SF_GRID), KEY_INITIAL(RF_SF_GRID), KEY_LAYER_SPARSITY(0),
    {.key = "gradual", .type = RF_SET_OBJ, .sub = rf_train_settings,
     .doc = "the gradual run's training, over the experiment's `train` (the dense parent is trained with `train`)"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_gmp = {
    .name = "gmp", .summary = "gradual magnitude pruning during training (Zhu & Gupta 2017, cubic schedule)",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_RESUMABLE | RF_KIND_CKPT | RF_KIND_FROM,
    .keys = gmp_keys, .min_parents = 0, .max_parents = 1,
    .parents_doc = "the model to prune gradually (none: a fresh `model`, pruned while it trains)",
    .run = rf_task_gmp,
    .experiment = "gmp", .exp_keys = gmp_exp_keys,
    .exp_doc = "dense `train` (per seed; with `from`: the earlier stage's model) → `gmp` (its run: `train` overlaid by `gradual`)",
    .expand = expand_gmp, .label = label_gmp, .plot = RF_PLOT_SPARSITY,
};
