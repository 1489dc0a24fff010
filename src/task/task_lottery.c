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
#include "raffle/task.h"
#include "raffle/train.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef enum { CONTROL_NONE = 0, CONTROL_REINIT = 1, CONTROL_RANDOM = 2 } control_kind;
static const char *const control_names[] = {"none", "reinit", "random"};

static const char *jstring(const cJSON *o, const char *k, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double jnumber(const cJSON *o, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

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
        const char *given = jstring(io->settings, "rewind_ckpt", NULL);
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
    double round_d = jnumber(st, "round", -1);
    if (round_d < 0 || round_d > 1000 || round_d != (double)(int)round_d)
        return rf_error(ctx, RF_ERR_INVALID, "lottery: settings need \"round\", an integer >= 0");
    int round = (int)round_d;
    rf_rewind_kind rk;
    int64_t rewind_k;
    RF_TRY(rf_rewind_parse(ctx, jstring(st, "rewind", "init"), &rk, &rewind_k));
    const char *cname = jstring(st, "control", "none");
    control_kind control = CONTROL_NONE;
    while (control <= CONTROL_RANDOM && strcmp(control_names[control], cname)) control++;
    if (control > CONTROL_RANDOM) return rf_error(ctx, RF_ERR_INVALID, "lottery: control \"%s\" is not none, reinit or random", cname);
    if (control != CONTROL_NONE && round == 0) return rf_error(ctx, RF_ERR_INVALID, "lottery: controls start at round 1");
    if (round > 0 && io->n_parents < 1) return rf_error(ctx, RF_ERR_INVALID, "lottery: round %d needs round %d's checkpoint as parent", round, round - 1);

    rf_prune_cfg pc;
    rf_prune_cfg_default(&pc);
    void *owned = NULL;
    RF_TRY(rf_prune_cfg_from_json(ctx, st, &pc, &owned));
    pc.method = RF_PRUNE_MAGNITUDE;
    pc.of_remaining = 1;
    pc.sparsity = jnumber(st, "prune_fraction", 0.2);
    pc.output_rate = jnumber(st, "output_fraction", pc.sparsity / 2);
    rf_status s = RF_OK;
    if (!(pc.sparsity >= 0 && pc.sparsity <= 1 && pc.output_rate <= 1))
        s = rf_error(ctx, RF_ERR_INVALID, "lottery: prune_fraction must be in [0, 1], output_fraction <= 1");

    /* The canonical training keys (docs/training.md); the paper trains at a
     * constant learning rate, so that is the default unless settings name a
     * schedule. */
    rf_train_cfg tc;
    if (s == RF_OK) s = rf_task_train_cfg(ctx, st, &tc);
    if (!cJSON_GetObjectItemCaseSensitive(st, "schedule")) tc.optim.sched = RF_SCHED_CONSTANT;
    tc.log = io->log;
    tc.log_ud = io->log_ud;
    tc.stop_flag = io->stop_flag;
    if (io->log && tc.log_every == 0) tc.log_every = 500;

    rf_model *m = NULL;
    if (s == RF_OK)
        s = rf_prune_open_model(ctx, round > 0 ? io->parent_ckpts[0] : NULL, jstring(st, "model", NULL), io->train, pc.seed, &m);
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
    rewind_saver saver = {ctx, rewind_k, NULL, 0};
    char rpath[1100];
    rf_train_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    if (round == 0 && rk == RF_REWIND_STEP) {
        snprintf(rpath, sizeof rpath, "%s/rewind.rckpt", io->out_dir);
        saver.path = rpath;
        /* A resumed attempt past step K finds the file its predecessor wrote. */
        saver.saved = io->resume_from && access(rpath, R_OK) == 0;
        hooks.ud = &saver;
        hooks.before_step = save_rewind;
    }
    if (s == RF_OK)
        s = rf_task_train_resumable(ctx, io, m, io->train, io->test, &tc, NULL, hooks.before_step ? &hooks : NULL, &res);
    if (s == RF_OK && saver.path && !saver.saved) {
        /* K at or past the end of training: the final weights are the rewind point. */
        if (rewind_k >= res.steps) s = save_rewind(&saver, m, rewind_k, res.steps);
        if (s == RF_OK && !saver.saved) s = rf_error(ctx, RF_ERR_INTERNAL, "lottery: step %lld was never reached", (long long)rewind_k);
    }
    char extra[256];
    snprintf(extra, sizeof extra, "{\"kind\":\"lottery\",\"round\":%d,\"rewind\":\"%s\",\"control\":\"%s\"}",
             round, jstring(st, "rewind", "init"), control_names[control]);
    if (s == RF_OK) s = rf_task_finish(ctx, io, m, extra, metrics);
    if (s == RF_OK) s = rf_prune_report(ctx, m, metrics);
    if (s == RF_OK) {
        static const char *const keys[] = {"round", "best_accuracy", "best_iteration", "steps", "control", "rewind", "seconds"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cJSON_DeleteItemFromObjectCaseSensitive(metrics, keys[i]);
        int ok = cJSON_AddNumberToObject(metrics, "round", round)
              && cJSON_AddNumberToObject(metrics, "best_accuracy", res.best_accuracy)
              && cJSON_AddNumberToObject(metrics, "best_iteration", (double)res.best_iteration)
              && cJSON_AddNumberToObject(metrics, "steps", (double)res.steps)
              && cJSON_AddStringToObject(metrics, "control", control_names[control])
              && cJSON_AddStringToObject(metrics, "rewind", jstring(st, "rewind", "init"))
              && cJSON_AddNumberToObject(metrics, "seconds", rf_now() - t0);
        if (!ok) s = rf_error(ctx, RF_ERR_NOMEM, "lottery: metrics");
    }
    rf_model_free(m);
    rf_free(owned);
    if (s != RF_OK) rf_error_prefix(ctx, "lottery round %d", round);
    return s;
}
