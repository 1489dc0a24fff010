/* raffle train: trains a preset or spec on a dataset and optionally saves the
 * checkpoint. The options are turned into the same settings object a sweep's
 * "train" task reads (rf_task_train_cfg), so the CLI and sweeps share one
 * parser and one set of defaults. The checkpoint is written only after
 * training succeeded, atomically: a failed run leaves no file behind. */
#include "cli/cli.h"
#include "raffle/task.h"
#include "raffle/train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct train_opts {
    const char *model, *data, *out, *optimizer, *schedule;
    int epochs, batch, threads, json, log_every;
    int64_t iterations, warmup, eval_limit;
    uint64_t seed;
    double lr, momentum, weight_decay, label_smoothing, clip_norm;
} train_opts;

/* Adds the options given on the command line to the settings object (absent
 * ones are left out so the task defaults apply). */
static int build_settings(const train_opts *o, cJSON *s) {
    int ok = 1;
    if (o->epochs >= 0) ok &= cJSON_AddNumberToObject(s, "epochs", o->epochs) != NULL;
    if (o->iterations >= 0) ok &= cJSON_AddNumberToObject(s, "iterations", (double)o->iterations) != NULL;
    if (o->batch >= 0) ok &= cJSON_AddNumberToObject(s, "batch", o->batch) != NULL;
    if (o->warmup >= 0) ok &= cJSON_AddNumberToObject(s, "warmup", (double)o->warmup) != NULL;
    if (o->eval_limit >= 0) ok &= cJSON_AddNumberToObject(s, "eval_limit", (double)o->eval_limit) != NULL;
    ok &= cJSON_AddNumberToObject(s, "seed", (double)o->seed) != NULL;
    if (!isnan(o->lr)) ok &= cJSON_AddNumberToObject(s, "lr", o->lr) != NULL;
    if (!isnan(o->momentum)) ok &= cJSON_AddNumberToObject(s, "momentum", o->momentum) != NULL;
    if (!isnan(o->weight_decay)) ok &= cJSON_AddNumberToObject(s, "weight_decay", o->weight_decay) != NULL;
    if (!isnan(o->label_smoothing)) ok &= cJSON_AddNumberToObject(s, "label_smoothing", o->label_smoothing) != NULL;
    if (!isnan(o->clip_norm)) ok &= cJSON_AddNumberToObject(s, "clip_norm", o->clip_norm) != NULL;
    if (o->optimizer) ok &= cJSON_AddStringToObject(s, "optimizer", o->optimizer) != NULL;
    if (o->schedule) ok &= cJSON_AddStringToObject(s, "schedule", o->schedule) != NULL;
    ok &= cJSON_AddStringToObject(s, "model", o->model) != NULL;
    ok &= cJSON_AddStringToObject(s, "data", o->data) != NULL;
    return ok;
}

static int run(const train_opts *o) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.threads = o->threads > 0 ? o->threads : 1;
    cJSON *settings = cJSON_CreateObject();
    if (!settings || !build_settings(o, settings)) { cJSON_Delete(settings); cli_err("train", "out of memory"); return 1; }
    rf_train_cfg cfg;
    rf_status s = rf_task_train_cfg(&ctx, settings, &cfg);
    if (s != RF_OK) { cJSON_Delete(settings); return cli_fail("train", &ctx, s); }
    cfg.log = cli_log;
    cfg.log_every = o->log_every;

    rf_dataset *train = NULL, *test = NULL;
    rf_model *m = NULL;
    rf_train_result r;
    char *extra = NULL;
    s = rf_model_create(&ctx, o->model, &m);  /* a bad spec fails before the data loads */
    if (s == RF_OK) s = rf_data_load(&ctx, o->data, &train, &test);
    if (s == RF_OK) {   /* a preset built for the data's shape */
        rf_model_free(m);
        s = rf_model_create_for_data(&ctx, o->model, train, &m);
    }
    if (s == RF_OK) s = rf_model_init(&ctx, m, cfg.seed);
    if (s == RF_OK) s = rf_train(&ctx, m, train, test, &cfg, NULL, NULL, &r);
    if (s == RF_OK && o->out) {
        cJSON *e = cJSON_CreateObject();
        if (e && cJSON_AddStringToObject(e, "kind", "train") &&
            cJSON_AddItemToObject(e, "settings", settings)) {
            settings = NULL;  /* now owned by e */
            extra = cJSON_PrintUnformatted(e);
        }
        cJSON_Delete(e);
        s = extra ? rf_model_save(&ctx, m, extra, o->out) : rf_error(&ctx, RF_ERR_NOMEM, "cannot build metadata");
    }
    int rc = 0;
    if (s != RF_OK) {
        rc = cli_fail("train", &ctx, s);
    } else if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", o->model);
        cJSON_AddStringToObject(j, "data", o->data);
        cJSON_AddNumberToObject(j, "accuracy", r.accuracy);
        cJSON_AddNumberToObject(j, "loss", r.loss);
        cJSON_AddNumberToObject(j, "train_loss", r.train_loss);
        cJSON_AddNumberToObject(j, "best_accuracy", r.best_accuracy);
        cJSON_AddNumberToObject(j, "best_iteration", (double)r.best_iteration);
        cJSON_AddNumberToObject(j, "parameters", (double)m->n_params);
        cJSON_AddNumberToObject(j, "steps", (double)r.steps);
        cJSON_AddNumberToObject(j, "batch", cfg.batch);
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "samples_per_s", r.samples_per_s);
        cJSON_AddNumberToObject(j, "cpu_seconds", r.cpu_seconds);
        cJSON_AddNumberToObject(j, "cpu_samples_per_s", r.cpu_seconds > 0 ? (double)r.steps * cfg.batch / r.cpu_seconds : 0.0);
        cJSON_AddNumberToObject(j, "threads", o->threads > 0 ? o->threads : 1);
        if (o->out) cJSON_AddStringToObject(j, "out", o->out);
        cli_print_json(j);
    } else {
        printf("%s on %s: test accuracy %.4f, loss %.4f (best %.4f at step %lld); %zu parameters; "
               "%lld steps in %.1f s, %.0f samples/s%s%s\n",
               o->model, o->data, r.accuracy, r.loss, r.best_accuracy, (long long)r.best_iteration, m->n_params,
               (long long)r.steps, r.seconds, r.samples_per_s, o->out ? "; saved " : "", o->out ? o->out : "");
    }
    cJSON_free(extra);
    cJSON_Delete(settings);
    rf_model_free(m);
    rf_dataset_free(train);
    rf_dataset_free(test);
    return rc;
}

int rf_cmd_train(int argc, char **argv) {
    train_opts o = {.epochs = -1, .batch = -1, .iterations = -1, .warmup = -1, .eval_limit = -1,
                    .log_every = 100, .lr = NAN, .momentum = NAN, .weight_decay = NAN,
                    .label_smoothing = NAN, .clip_norm = NAN};
    const cli_opt opts[] = {
        {"model", CLI_STR, &o.model, "PRESET|SPEC.json", "model preset or JSON spec file", 1},
        {"data", CLI_STR, &o.data, "DATASET", "fashion-mnist, mnist, synthetic[:N[:SEED]], A,B,C,D.npy or FILE.json", 1},
        {"epochs", CLI_INT, &o.epochs, "N", "epochs (default 10)", 0},
        {"iterations", CLI_I64, &o.iterations, "N", "train exactly N steps instead of epochs", 0},
        {"batch", CLI_INT, &o.batch, "B", "batch size (default 128)", 0},
        {"optimizer", CLI_STR, &o.optimizer, "NAME", "sgd, adam or adamw (default adam)", 0},
        {"lr", CLI_DOUBLE, &o.lr, "X", "peak learning rate (default: sgd 0.1, adam/adamw 1e-3)", 0},
        {"momentum", CLI_DOUBLE, &o.momentum, "X", "SGD momentum (default 0.9)", 0},
        {"weight-decay", CLI_DOUBLE, &o.weight_decay, "X", "weight decay (L2 for sgd/adam, decoupled for adamw)", 0},
        {"schedule", CLI_STR, &o.schedule, "NAME", "constant, step, cosine or linear (default cosine)", 0},
        {"warmup", CLI_I64, &o.warmup, "N", "linear warm-up steps (default 0)", 0},
        {"label-smoothing", CLI_DOUBLE, &o.label_smoothing, "X", "label smoothing epsilon (default 0)", 0},
        {"clip-norm", CLI_DOUBLE, &o.clip_norm, "X", "clip the gradient norm to X (default off)", 0},
        {"eval-limit", CLI_I64, &o.eval_limit, "N", "evaluate on at most N test samples (periodic and final)", 0},
        {"seed", CLI_U64, &o.seed, "S", "seed for initialisation, shuffling and dropout (default 0)", 0},
        {"out", CLI_STR, &o.out, "FILE.rckpt", "write the trained model here (only on success)", 0},
        {"threads", CLI_INT, &o.threads, "N", "compute threads (default 1)", 0},
        {"log-every", CLI_INT, &o.log_every, "N", "progress line every N steps on stderr (0: evaluation lines only; default 100)", 0},
        {"json", CLI_FLAG, &o.json, NULL, "print one JSON object with the results", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int done = 0;
    int rc = cli_parse("train", "--model PRESET|SPEC.json --data DATASET [options]",
                       "Train a model and report its test accuracy.", opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (o.threads < 0) { cli_err("train", "--threads must be >= 1"); return 2; }
    if (o.optimizer && rf_optim_type_from_name(o.optimizer) < 0) {
        cli_err("train", "--optimizer: expected sgd, adam or adamw, got '%s'", o.optimizer);
        return 2;
    }
    if (o.schedule && rf_sched_type_from_name(o.schedule) < 0) {
        cli_err("train", "--schedule: expected constant, step, cosine or linear, got '%s'", o.schedule);
        return 2;
    }
    cli_set_threads(o.threads);
    return run(&o);
}
