/* raffle lottery: iterative magnitude pruning with rewinding, a thin
 * front-end over the "lottery" task kind. It runs round 0 (dense) and
 * rounds 1..R, each from the previous round's checkpoint, exactly as a sweep
 * chains them; with --control it also runs the control(s) at every round
 * from the same parent. Layout: DIR/round_<r>/{model.rckpt,metrics.json} and
 * DIR/round_<r>_<control>/. */
#include "cli/cli.h"
#include "raffle/data.h"
#include "raffle/prune.h"
#include "raffle/task.h"

#include <stdio.h>
#include <string.h>

/* Called directly (not through rf_task_run's weak kind table) so that the
 * linker pulls the lottery task out of libraffle.a. */
rf_status rf_task_lottery(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

typedef struct lottery_args {
    const char *model, *data, *rewind, *control, *scope, *optimizer, *layers;
    double prune_fraction, output_fraction, lr;
    int rounds, epochs, batch, eval_every;
    int64_t iterations, eval_limit;
    uint64_t seed;
} lottery_args;

static cJSON *round_settings(const lottery_args *a, int round, const char *control) {
    cJSON *st = cJSON_CreateObject();
    if (!st) return NULL;
    cJSON_AddStringToObject(st, "kind", "lottery");
    cJSON_AddStringToObject(st, "data", a->data);
    cJSON_AddStringToObject(st, "model", a->model);
    cJSON_AddNumberToObject(st, "round", round);
    cJSON_AddNumberToObject(st, "prune_fraction", a->prune_fraction);
    if (a->output_fraction >= 0) cJSON_AddNumberToObject(st, "output_fraction", a->output_fraction);
    cJSON_AddStringToObject(st, "scope", a->scope);
    if (a->layers) cJSON_AddStringToObject(st, "layers", a->layers);
    cJSON_AddStringToObject(st, "rewind", a->rewind);
    cJSON_AddStringToObject(st, "control", control);
    cJSON_AddNumberToObject(st, "epochs", a->epochs);
    if (a->iterations > 0) cJSON_AddNumberToObject(st, "iterations", (double)a->iterations);
    cJSON_AddNumberToObject(st, "batch", a->batch);
    cJSON_AddStringToObject(st, "optimizer", a->optimizer);
    cJSON_AddNumberToObject(st, "lr", a->lr);
    if (a->eval_every > 0) cJSON_AddNumberToObject(st, "eval_every", a->eval_every);
    if (a->eval_limit > 0) cJSON_AddNumberToObject(st, "eval_limit", (double)a->eval_limit);
    cJSON_AddNumberToObject(st, "seed", (double)a->seed);
    return st;
}

/* Runs one round into dir; returns its metrics (caller frees) or NULL. */
static rf_status run_round(rf_ctx *ctx, const lottery_args *a, int round, const char *control,
                           const char *parent, const char *dir, const rf_dataset *train,
                           const rf_dataset *test, cJSON **metrics) {
    *metrics = NULL;
    RF_TRY(rf_mkdirs(ctx, dir));
    cJSON *st = round_settings(a, round, control);
    cJSON *m = cJSON_CreateObject();
    if (!st || !m) { cJSON_Delete(st); cJSON_Delete(m); return rf_error(ctx, RF_ERR_NOMEM, "settings"); }
    const char *parents[1] = {parent};
    rf_task_io io;
    memset(&io, 0, sizeof io);
    io.settings = st;
    io.n_parents = parent ? 1 : 0;
    io.parent_ckpts = parents;
    io.out_dir = dir;
    io.train = train;
    io.test = test;
    io.log = cli_log;
    rf_status s = rf_task_lottery(ctx, &io, m);
    cJSON_Delete(st);
    if (s == RF_OK) {
        char path[1100];
        snprintf(path, sizeof path, "%s/metrics.json", dir);
        char *text = cJSON_PrintUnformatted(m);
        s = text ? rf_write_file_atomic(ctx, path, text, strlen(text)) : rf_error(ctx, RF_ERR_NOMEM, "metrics");
        cJSON_free(text);
    }
    if (s != RF_OK) { cJSON_Delete(m); return s; }
    *metrics = m;
    return RF_OK;
}

/* The per-round summary the JSON output lists. */
static cJSON *summary(const cJSON *m) {
    static const char *const keys[] = {"round", "remaining", "accuracy", "best_accuracy", "best_iteration", "sparsity"};
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keys[i]);
        if (v) cJSON_AddItemToObject(o, keys[i], cJSON_Duplicate(v, 1));
    }
    return o;
}

static double num(const cJSON *m, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

int rf_cmd_lottery(int argc, char **argv) {
    lottery_args a = {.rewind = "init", .control = NULL, .scope = "layer", .optimizer = "adam",
                      .prune_fraction = 0.2, .output_fraction = -1, .lr = 1.2e-3, .epochs = 0, .batch = 60};
    const char *out_dir = NULL;
    int json = 0, threads = 1, control_from = 1;
    const cli_opt opts[] = {
        {"model", CLI_STR, &a.model, "PRESET", "model preset or spec file", 1},
        {"data", CLI_STR, &a.data, "D", "dataset (fashion-mnist, mnist, synthetic[:N[:SEED]], ...)", 1},
        {"rounds", CLI_INT, &a.rounds, "R", "pruning rounds after the dense round 0", 1},
        {"prune-fraction", CLI_DOUBLE, &a.prune_fraction, "P", "fraction of remaining weights pruned per round (default 0.2)", 0},
        {"output-fraction", CLI_DOUBLE, &a.output_fraction, "P", "same for the output layer (default P/2)", 0},
        {"epochs", CLI_INT, &a.epochs, "N", "training epochs per round", 0},
        {"iterations", CLI_I64, &a.iterations, "N", "training steps per round (instead of epochs)", 0},
        {"rewind", CLI_STR, &a.rewind, "init|step:K|lr", "rewind point (default init)", 0},
        {"control", CLI_STR, &a.control, "reinit|random|reinit,random", "also run these controls at every round", 0},
        {"control-from", CLI_INT, &control_from, "R", "run the controls only at rounds >= R (default 1)", 0},
        {"scope", CLI_STR, &a.scope, "layer|global", "prune per layer (default) or globally", 0},
        {"layers", CLI_STR, &a.layers, "GLOBS", "eligible tensors (default: all prunable)", 0},
        {"batch", CLI_INT, &a.batch, "B", "batch size (default 60)", 0},
        {"optimizer", CLI_STR, &a.optimizer, "O", "sgd, adam or adamw (default adam)", 0},
        {"lr", CLI_DOUBLE, &a.lr, "LR", "learning rate (default 1.2e-3)", 0},
        {"eval-every", CLI_INT, &a.eval_every, "N", "evaluate every N steps (best_iteration resolution)", 0},
        {"eval-limit", CLI_I64, &a.eval_limit, "N", "evaluate on at most N test samples", 0},
        {"seed", CLI_U64, &a.seed, "S", "initialisation and data order (default 0)", 0},
        {"out-dir", CLI_STR, &out_dir, "DIR", "one subdirectory per round", 1},
        {"threads", CLI_INT, &threads, "N", "BLAS threads (default 1)", 0},
        {"json", CLI_FLAG, &json, NULL, "print {\"rounds\": [...]} as one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("lottery", "--model PRESET --data D --rounds R --epochs N --rewind init|step:K|lr --out-dir DIR [options]",
                       "Lottery tickets (Frankle & Carbin 2019): train, prune, rewind, retrain; R rounds.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (a.rounds < 0 || a.rounds > 1000) { cli_err("lottery", "--rounds must be in [0, 1000]"); return 2; }
    if (a.epochs <= 0 && a.iterations <= 0) { cli_err("lottery", "give --epochs N or --iterations N"); return 2; }
    if (!(a.prune_fraction >= 0 && a.prune_fraction <= 1)) { cli_err("lottery", "--prune-fraction must be in [0, 1]"); return 2; }
    if (control_from < 1) { cli_err("lottery", "--control-from must be >= 1"); return 2; }
    if (rf_prune_scope_from_name(a.scope) < 0) { cli_err("lottery", "--scope must be layer or global"); return 2; }
    {
        rf_ctx pctx;
        rf_ctx_init(&pctx);
        rf_rewind_kind rk;
        int64_t k;
        if (rf_rewind_parse(&pctx, a.rewind, &rk, &k) != RF_OK) { cli_err("lottery", "--rewind: %s", rf_ctx_error(&pctx)); return 2; }
    }
    const char *controls[2];
    int n_controls = 0;
    if (a.control) {
        static const char *const known[] = {"reinit", "random"};
        for (int k = 0; k < 2; k++) {
            const char *hit = strstr(a.control, known[k]);
            size_t len = strlen(known[k]);
            if (hit && (hit == a.control || hit[-1] == ',') && (hit[len] == '\0' || hit[len] == ',')) controls[n_controls++] = known[k];
        }
        size_t expect = n_controls == 2 ? strlen("reinit,random") : n_controls == 1 ? strlen(controls[0]) : 0;
        if (n_controls == 0 || strlen(a.control) != expect) {
            cli_err("lottery", "--control must be reinit, random or reinit,random");
            return 2;
        }
    }
    cli_set_threads(threads);

    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_dataset *train = NULL, *test = NULL;
    rf_status s = rf_mkdirs(&ctx, out_dir);
    if (s == RF_OK) s = rf_data_load(&ctx, a.data, &train, &test);
    cJSON *out = cJSON_CreateObject(), *rounds = cJSON_AddArrayToObject(out, "rounds");
    if (s == RF_OK && !rounds) s = rf_error(&ctx, RF_ERR_NOMEM, "output");
    char parent[1100] = "";
    for (int r = 0; r <= a.rounds && s == RF_OK; r++) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/round_%d", out_dir, r);
        cJSON *m = NULL;
        s = run_round(&ctx, &a, r, "none", r ? parent : NULL, dir, train, test, &m);
        if (s != RF_OK) break;
        fprintf(stderr, "lottery round %d: remaining %.4f accuracy %.4f best %.4f @ %.0f\n",
                r, num(m, "remaining"), num(m, "accuracy"), num(m, "best_accuracy"), num(m, "best_iteration"));
        cJSON *sum = summary(m);
        cJSON_Delete(m);
        if (!sum || !cJSON_AddItemToArray(rounds, sum)) { cJSON_Delete(sum); s = rf_error(&ctx, RF_ERR_NOMEM, "output"); break; }
        /* Controls run from the same parent as the ticket (docs/pruning.md). */
        for (int ci = 0; ci < n_controls && r >= control_from && s == RF_OK; ci++) {
            char cdir[1200];
            cJSON *c = NULL;
            snprintf(cdir, sizeof cdir, "%s/round_%d_%s", out_dir, r, controls[ci]);
            s = run_round(&ctx, &a, r, controls[ci], parent, cdir, train, test, &c);
            if (s != RF_OK) break;
            fprintf(stderr, "lottery round %d %s: remaining %.4f accuracy %.4f best %.4f @ %.0f\n", r, controls[ci],
                    num(c, "remaining"), num(c, "accuracy"), num(c, "best_accuracy"), num(c, "best_iteration"));
            cJSON *cs = summary(c);
            cJSON_Delete(c);
            if (!cs || !cJSON_AddItemToObject(sum, controls[ci], cs)) { cJSON_Delete(cs); s = rf_error(&ctx, RF_ERR_NOMEM, "output"); }
        }
        snprintf(parent, sizeof parent, "%s/model.rckpt", dir);
    }
    rf_dataset_free(train);
    rf_dataset_free(test);
    if (s != RF_OK) { cJSON_Delete(out); return cli_fail("lottery", &ctx, s); }
    if (json) cli_print_json(out);
    else cJSON_Delete(out);
    return 0;
}
