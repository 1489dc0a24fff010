/* Task kind "lottery": one round of iterative magnitude pruning (Frankle &
 * Carbin 2019, §2 "Identifying winning tickets"). The sweep DAG chains the
 * rounds: round r's only parent is round r−1's model.rckpt.
 *
 *   round 0  dense training from rf_model_init(seed);
 *   round r  load the parent (trained weights + mask), prune prune_fraction of
 *            the remaining weights (output layer: output_fraction), rewind,
 *            retrain with the same settings.
 *
 * Rewinding:
 *   "init"    survivors take their initial values, recreated exactly by
 *             rf_model_init(seed) (initialisation is a pure function of the
 *             seed, so nothing needs storing);
 *   "step:K"  survivors take their values after K steps of the dense run
 *             (Frankle et al. 2020). Round 0 saves them as rewind.rckpt in its
 *             output directory, and every round copies the file it used into
 *             its own, so round r finds it next to its parent. Storing beats
 *             recomputing: replaying K steps would cost K steps per round and
 *             depends on bit-exact training; the file is one dense copy;
 *   "lr"      survivors keep their trained values; the learning-rate schedule
 *             is replayed from step 0 (Renda et al. 2020).
 * Controls (same round, off the main line; their outputs feed no round):
 *   "reinit"  the ticket's mask with a fresh initialisation (seed derived from
 *             seed and round), Frankle & Carbin §2 "random reinitialization";
 *   "random"  a random mask with the ticket's per-layer counts, rewound like
 *             the ticket ("random pruning"). */
#include "raffle/prune.h"
#include "raffle/plan.h"
#include "raffle/train.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef enum { CONTROL_NONE = 0, CONTROL_REINIT = 1, CONTROL_RANDOM = 2 } control_kind;
static const char *const control_names[] = {"none", "reinit", "random"};

static const char *const control_values[] = {"none", "reinit", "random", NULL};
static const char *const scopes[] = {"global", "layer", NULL};

static const rf_setting lottery_keys[] = {
    {.key = "round", .type = RF_SET_INT, .flags = RF_SF_REQUIRED | RF_SF_NOCLI, .lo = 0, .hi = 1000,
     .doc = "0: the dense run; r >= 1: prune the parent (round r-1), rewind, retrain"},
    {.key = "prune_fraction", .type = RF_SET_NUM, .lo = 0, .hi = 1, .def = "0.2",
     .doc = "fraction of the remaining weights pruned per round"},
    {.key = "output_fraction", .type = RF_SET_NUM, .lo = 0, .hi = 1, .def = "0.1",
     .doc = "the same for the output layer (the paper: half the rate)"},
    {.key = "rewind", .type = RF_SET_STR, .def = "\"init\"",
     .doc = "init (weights at initialisation), step:K (after K steps of round 0) or lr (keep weights, replay the schedule)"},
    {.key = "control", .type = RF_SET_ENUM, .flags = RF_SF_NOCLI, .choices = control_values, .def = "\"none\"",
     .doc = "none (the ticket), reinit (its mask, fresh weights) or random (a random mask of the same size)"},
    {.key = "scope", .type = RF_SET_ENUM, .flags = RF_SF_OPTIONAL, .choices = scopes, .def = "\"layer\"",
     .doc = "rank each tensor at its own rate (the paper's LeNet runs), or all together"},
    {.key = "layers", .type = RF_SET_STR, .flags = RF_SF_OPTIONAL,
     .doc = "eligible tensors, a glob list (absent: every prunable one)"},
    {.key = "rewind_ckpt", .type = RF_SET_STR, .flags = RF_SF_OPTIONAL | RF_SF_NOCLI,
     .doc = "step:K: the rewind point's checkpoint (absent: rewind.rckpt beside the parent)"},
    RF_SETTINGS_END
};

/* Saves the weights after K steps: before_step of step K runs after K updates. */
typedef struct rewind_saver {
    rf_ctx     *ctx;
    int64_t     k;
    const char *path;
    int         saved;
} rewind_saver;

static rf_status save_rewind(void *ud, rf_model *m, int64_t step, int64_t total) {
    rewind_saver *r = ud;
    if (r->saved || step != r->k) return RF_OK;
    r->saved = 1;
    return rf_model_save(r->ctx, m, "{\"kind\":\"lottery-rewind\"}", r->path);
}

static rf_status copy_file(rf_ctx *ctx, const char *from, const char *to) {
    unsigned char *buf = NULL;
    size_t n = 0;
    RF_TRY(rf_read_file(ctx, from, &buf, &n));
    rf_status s = rf_write_file_atomic(ctx, to, buf, n);
    rf_free(buf);
    return s;
}

/* Directory part of a path ("." if none) into buf. */
static void dir_of(const char *path, char *buf, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) { snprintf(buf, n, "."); return; }
    snprintf(buf, n, "%.*s", (int)(slash - path), path);
}

/* A fresh model of m's architecture initialised from seed. */
static rf_status fresh_init(rf_ctx *ctx, const rf_model *m, uint64_t seed, rf_model **out) {
    RF_TRY(rf_model_from_spec(ctx, m->spec_json, out));
    rf_status s = rf_model_init(ctx, *out, seed);
    if (s != RF_OK) { rf_model_free(*out); *out = NULL; }
    return s;
}

/* Rewinds (or re-initialises) the pruned model m for round r. */
static rf_status rewind_model(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_rewind_kind rk,
                              uint64_t seed, control_kind control, int round) {
    rf_model *src = NULL;
    rf_status s = RF_OK;
    if (control == CONTROL_REINIT) {
        s = fresh_init(ctx, m, seed ^ rf_hash64("reinit", 6, (uint64_t)round), &src);
    } else if (rk == RF_REWIND_INIT) {
        s = fresh_init(ctx, m, seed, &src);
    } else if (rk == RF_REWIND_STEP) {
        char dir[1024], path[1100], mine[1100];
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(io->settings, "rewind_ckpt");
        const char *given = cJSON_IsString(rc) ? rc->valuestring : NULL;
        if (!given) {
            dir_of(io->parent_ckpts[0], dir, sizeof dir);
            snprintf(path, sizeof path, "%s/rewind.rckpt", dir);
            given = path;
        }
        s = rf_model_load(ctx, given, &src);
        if (s != RF_OK) rf_error_prefix(ctx, "rewind weights %s", given);
        snprintf(mine, sizeof mine, "%s/rewind.rckpt", io->out_dir);
        if (s == RF_OK) s = copy_file(ctx, given, mine);
    } else {
        rf_model_apply_masks(m);
        return RF_OK;
    }
    if (s == RF_OK) s = rf_lottery_rewind(ctx, m, src);
    rf_model_free(src);
    return s;
}

rf_status rf_task_lottery(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics) {
    const cJSON *st = io->settings;
    double t0 = rf_now();
    RF_TRY(rf_kind_check(ctx, &rf_kind_lottery, st, "settings"));
    int round = (int)rf_settings_num(st, lottery_keys, "round");
    const char *rewind = rf_settings_str(st, lottery_keys, "rewind");
    rf_rewind_kind rk;
    int64_t rewind_k;
    RF_TRY(rf_rewind_parse(ctx, rewind, &rk, &rewind_k));
    const char *cname = rf_settings_str(st, lottery_keys, "control");
    control_kind control = CONTROL_NONE;
    while (control <= CONTROL_RANDOM && strcmp(control_names[control], cname)) control++;
    if (control != CONTROL_NONE && round == 0) return rf_error(ctx, RF_ERR_INVALID, "lottery: controls start at round 1");
    if (round > 0 && io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "lottery: round %d needs round %d's checkpoint as parent", round, round - 1);

    rf_prune_cfg pc;
    rf_prune_cfg_default(&pc);
    pc.method = RF_PRUNE_MAGNITUDE;
    pc.scope = (rf_prune_scope)rf_prune_scope_from_name(rf_settings_str(st, lottery_keys, "scope"));
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(st, "layers");
    pc.layers = cJSON_IsString(layers) ? layers->valuestring : NULL;
    pc.seed = (uint64_t)rf_settings_num(st, rf_task_common_settings, "seed");
    pc.of_remaining = 1;
    pc.sparsity = rf_settings_num(st, lottery_keys, "prune_fraction");
    pc.output_rate = rf_settings_num(st, lottery_keys, "output_fraction");
    rf_status s = RF_OK;

    /* The canonical training keys (docs/training.md; the paper's constant
     * learning rate is the table's default schedule). */
    rf_train_cfg tc;
    if (s == RF_OK) s = rf_task_train_cfg_io(ctx, io, 500, &tc);

    rf_model *m = NULL;
    if (s == RF_OK)
        s = rf_task_open_model(ctx, "lottery", round > 0 ? io->parent_ckpts[0] : NULL, st, io->train, pc.seed, &m);
    if (s == RF_OK && round > 0) {
        s = rf_prune_model(ctx, m, &pc, NULL);
        if (s == RF_OK && control == CONTROL_RANDOM) {
            rf_prune_item *items = NULL;
            int n = 0;
            s = rf_prune_items(ctx, m, &pc, &items, &n);
            if (s == RF_OK) s = rf_prune_random_like(ctx, items, n, m->masks, pc.seed, 0x72616e646f6dull + (uint64_t)round);
            rf_free(items);
        }
        if (s == RF_OK) s = rewind_model(ctx, io, m, rk, pc.seed, control, round);
    }
    rf_train_result res;
    memset(&res, 0, sizeof res);
    /* the round's curve; a resume point carries it (rf_task_train_resumable) */
    rf_train_curve curve = {0};
    tc.curve = &curve;
    rewind_saver saver = {ctx, rewind_k, NULL, 0};
    char rpath[1100];
    rf_train_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    if (round == 0 && rk == RF_REWIND_STEP) {
        snprintf(rpath, sizeof rpath, "%s/rewind.rckpt", io->out_dir);
        saver.path = rpath;
        hooks.ud = &saver;
        hooks.before_step = save_rewind;
    }
    /* the rewind point is part of round 0's resumable state: a preemption
     * after step K must not lose it (the resumed attempt never reaches K) */
    rf_task_io tio = *io;
    if (saver.path) tio.resume_aux = "rewind.rckpt";
    if (s == RF_OK)
        s = rf_task_train_resumable(ctx, &tio, m, io->train, io->test, &tc, NULL, hooks.before_step ? &hooks : NULL, &res);
    /* resumed past step K: the file came back with the resume point */
    if (s == RF_OK && saver.path && !saver.saved && io->resume_from && access(rpath, R_OK) == 0) saver.saved = 1;
    if (s == RF_OK && saver.path && !saver.saved) {
        /* K at or past the end of training: the final weights are the rewind point. */
        if (rewind_k >= res.steps) s = save_rewind(&saver, m, rewind_k, res.steps);
        if (s == RF_OK && !saver.saved) s = rf_error(ctx, RF_ERR_INTERNAL, "lottery: step %lld was never reached", (long long)rewind_k);
    }
    /* target_sparsity null: a round prunes further, so a pruned parent's
     * target (rf_task_ckpt_meta passes it down a chain) is not this one's */
    char extra[256];
    snprintf(extra, sizeof extra, "{\"kind\":\"lottery\",\"round\":%d,\"rewind\":\"%s\",\"control\":\"%s\",\"target_sparsity\":null}",
             round, rewind, control_names[control]);
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = rf_prune_report(ctx, m, metrics);
    if (s == RF_OK) {
        static const char *const keys[] = {"round", "steps", "control", "rewind", "seconds"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, keys[i]);
        /* the ticket's "best" is the early-stopping point on the validation
         * split (Frankle & Carbin 2019, App. E); the test split at that step
         * is reported as test_accuracy_at_best_val */
        int ok = cJSON_AddNumberToObject(metrics, "round", round)
              && rf_task_add_selection(&res, metrics) && rf_task_add_curve(metrics, &curve)
              && cJSON_AddNumberToObject(metrics, "steps", (double)res.steps)
              && cJSON_AddStringToObject(metrics, "control", control_names[control])
              && cJSON_AddStringToObject(metrics, "rewind", rewind)
              && cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0);
        if (!ok) s = rf_error(ctx, RF_ERR_NOMEM, "lottery: metrics");
    }
    rf_free(curve.v);
    rf_model_free(m);
    if (s != RF_OK) rf_error_prefix(ctx, "lottery round %d", round);
    return s;
}

/* ---- the experiment -------------------------------------------------------------
 * DAG: round 0 (dense) -> round 1 -> ... -> round `rounds` (a chain); each
 * control of round r hangs off round r - 1 (docs/pruning.md). */
static cJSON *round_settings(const rf_point *pt, int round, const char *control) {
    cJSON *s = rf_plan_settings(pt, pt->data, pt->model, pt->train);
    if (!s) return NULL;
    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(pt->x, "rewind");
    double k = rf_plan_num(pt->x, "rewind_iteration");
    char rewind[48];
    if (strcmp(rw->valuestring, "lr") == 0) snprintf(rewind, sizeof rewind, "lr");
    else if (k > 0) snprintf(rewind, sizeof rewind, "step:%.0f", k);
    else snprintf(rewind, sizeof rewind, "init");
    /* scope only when the experiment sets it: the task's default (layer)
     * then stays out of its settings, as before the key existed */
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(pt->x, "scope");
    if ((sc && !rf_plan_put(s, "scope", cJSON_Duplicate(sc, 1))) ||
        !cJSON_AddStringToObject(s, "rewind", rewind) ||
        !cJSON_AddNumberToObject(s, "prune_fraction", rf_plan_num(pt->x, "rate")) ||
        !cJSON_AddNumberToObject(s, "output_fraction", rf_plan_num(pt->x, "output_rate")) ||
        !cJSON_AddNumberToObject(s, "round", round) || !cJSON_AddStringToObject(s, "control", control)) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

static int expand_lottery(rf_plan *p, const rf_point *pt) {
    int rounds = (int)rf_plan_num(pt->x, "rounds"), from = (int)rf_plan_num(pt->x, "controls_from");
    const cJSON *ctl = cJSON_GetObjectItemCaseSensitive(pt->x, "controls");
    double cost = rf_plan_train_cost(pt->train, pt->data, pt->model);
    /* With `from`, the earlier model is round 0: a trained (dense, or
     * pruned: its mask is kept and each round prunes `rate` of what
     * remains) model that round 1 prunes. Rewinding then goes to the
     * initialisation the seed gives (the parent's own when it was trained
     * from that seed and not sliced) or, with `lr`, keeps the trained
     * weights (Renda et al. 2020); the weights at step K were never saved
     * by a model trained elsewhere, so `rewind_iteration` is refused. */
    if (pt->from >= 0 && rf_plan_num(pt->x, "rewind_iteration") > 0 &&
        strcmp(cJSON_GetObjectItemCaseSensitive(pt->x, "rewind")->valuestring, "weights") == 0) {
        rf_error(rf_plan_ctx(p), RF_ERR_JOB, "rewind_iteration: with from, round 0 is the earlier experiment's model, which "
                 "did not save its weights at step K; rewind to the init (rewind_iteration 0) or use rewind \"lr\"");
        return -1;
    }
    int32_t prev = pt->from >= 0 ? pt->from : rf_plan_add(p, RF_JOB_LOTTERY, round_settings(pt, 0, "none"), NULL, 0, cost);
    if (prev < 0) return -1;
    for (int r = 1; r <= rounds; r++) {
        int32_t cur = rf_plan_add(p, RF_JOB_LOTTERY, round_settings(pt, r, "none"), &prev, 1, cost);
        if (cur < 0) return -1;
        /* a control takes round r-1's model (as round r does) and replaces
         * round r's rewinding by a re-initialisation or a random mask */
        for (const cJSON *c = ctl && r >= from ? ctl->child : NULL; c; c = c->next)
            if (rf_plan_add(p, RF_JOB_LOTTERY, round_settings(pt, r, c->valuestring), &prev, 1, cost) < 0) return -1;
        prev = cur;
    }
    return 0;
}

static const char *label_lottery(const cJSON *set, char *buf, size_t n) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(set, "control");
    if (!cJSON_IsString(m) || strcmp(m->valuestring, "none") == 0) return "imp";
    snprintf(buf, n, "imp-%s", m->valuestring);
    return buf;
}

static const char *const rewinds[] = {"weights", "lr", NULL};
static const char *const controls[] = {"reinit", "random", NULL};
static const rf_setting lottery_exp_keys[] = {
    {.key = "rounds", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 1, .hi = 100, .def = "5",
     .doc = "pruning rounds after the dense round"},
    {.key = "rate", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1, .lo_open = 1, .hi_open = 1, .def = "0.2",
     .doc = "fraction of remaining hidden weights pruned per round (task `prune_fraction`)"},
    {.key = "output_rate", .type = RF_SET_NUM, .flags = RF_SF_GRID, .lo = 0, .hi = 1, .hi_open = 1, .def = "0.1",
     .doc = "the same for the output layer (task `output_fraction`)"},
    {.key = "rewind", .type = RF_SET_ENUM, .flags = RF_SF_GRID, .choices = rewinds, .def = "\"weights\"",
     .doc = "rewind survivors' weights (Frankle & Carbin) or keep them and replay the learning rate (Renda et al.)"},
    {.key = "rewind_iteration", .type = RF_SET_INT, .flags = RF_SF_GRID, .lo = 0, .hi = 1e12, .def = "0", .unit = "steps",
     .doc = "with `weights`: rewind to step K instead of the initialisation (Frankle et al. 2020)"},
    {.key = "controls", .type = RF_SET_LIST, .choices = controls, .def = "[]",
     .doc = "per round: the ticket's mask re-initialised; a random mask of the same size"},
    {.key = "controls_from", .type = RF_SET_INT, .lo = 1, .hi = 100, .def = "1",
     .doc = "run the controls from this round on (the late, sparse rounds are where they differ)"},
    {.key = "scope", .type = RF_SET_ENUM, .flags = RF_SF_GRID, .choices = scopes,
     .doc = "`layer` (default: each tensor at `rate`, the paper's LeNet and Conv runs) or `global` (one threshold over all, as open_lth prunes ResNets and VGGs; the output layer still at `output_rate`)"},
    RF_SETTINGS_END
};

const rf_kind rf_kind_lottery = {
    .name = "lottery", .summary = "iterative magnitude pruning with rewinding (lottery tickets), one round a task",
    .flags = RF_KIND_DATA | RF_KIND_TRAINS | RF_KIND_RESUMABLE | RF_KIND_CKPT | RF_KIND_FROM,
    .keys = lottery_keys, .min_parents = 0, .max_parents = 1,
    .parents_doc = "round r >= 1: round r-1's model (its rewind.rckpt beside it for step:K)",
    .run = rf_task_lottery,
    .experiment = "lottery", .exp_keys = lottery_exp_keys,
    .exp_doc = "round 0 (dense; with `from`: the earlier experiment's trained model, its mask kept) → round 1 → … → "
               "round `rounds` (a chain); each control of round r hangs off round r − 1. "
               "Remaining weights after round r: (1 − `rate`)^r (hidden layers)",
    .expand = expand_lottery, .label = label_lottery, .plot = RF_PLOT_LOTTERY,
};
