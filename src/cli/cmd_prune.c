/* raffle prune: one-shot pruning + fine-tuning, a thin front-end that builds
 * the task settings (docs/pruning.md) and runs the "prune" task kind. */
#include "cli/cli.h"
#include "raffle/data.h"
#include "raffle/prune.h"
#include "raffle/task.h"

#include <stdio.h>
#include <string.h>

/* Called directly (not through rf_task_run's weak kind table) so that the
 * linker pulls the prune task out of libraffle.a. */
rf_status rf_task_prune(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

int rf_cmd_prune(int argc, char **argv) {
    const char *ckpt = NULL, *model = NULL, *data = NULL, *method = NULL, *scope = "layer", *out = NULL;
    const char *layers = NULL, *optimizer = "adam";
    double sparsity = -1, output_rate = -1, lr = 1e-3;
    int finetune_epochs = 0, batch = 128, obd_batches = 10, synflow_rounds = 100, json = 0, threads = 1, eval_every = 0;
    int64_t finetune_iters = 0, eval_limit = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"ckpt", CLI_STR, &ckpt, "FILE", "prune this trained checkpoint", 0},
        {"model", CLI_STR, &model, "PRESET", "prune a freshly initialised model (pruning at initialisation)", 0},
        {"data", CLI_STR, &data, "D", "dataset (fashion-mnist, mnist, synthetic[:N[:SEED]], ...)", 1},
        {"method", CLI_STR, &method, "M", "magnitude, random, obd, snip, grasp or synflow", 1},
        {"sparsity", CLI_DOUBLE, &sparsity, "S", "fraction of eligible weights to prune, in [0, 1]", 1},
        {"scope", CLI_STR, &scope, "layer|global", "rank per layer (default) or globally", 0},
        {"output-rate", CLI_DOUBLE, &output_rate, "R", "sparsity of the output layer (default: same)", 0},
        {"layers", CLI_STR, &layers, "GLOBS", "eligible tensors, e.g. 'fc*,!fc3*' (default: all prunable)", 0},
        {"finetune-epochs", CLI_INT, &finetune_epochs, "N", "fine-tune N epochs with the mask fixed (default 0)", 0},
        {"finetune-iterations", CLI_I64, &finetune_iters, "N", "fine-tune exactly N steps instead", 0},
        {"batch", CLI_INT, &batch, "B", "batch size for scoring and fine-tuning (default 128)", 0},
        {"optimizer", CLI_STR, &optimizer, "O", "sgd, adam or adamw (default adam)", 0},
        {"lr", CLI_DOUBLE, &lr, "LR", "fine-tuning learning rate (default 1e-3)", 0},
        {"obd-batches", CLI_INT, &obd_batches, "N", "batches for the OBD / GraSP estimates (default 10)", 0},
        {"synflow-rounds", CLI_INT, &synflow_rounds, "N", "SynFlow pruning rounds (default 100)", 0},
        {"eval-every", CLI_INT, &eval_every, "N", "evaluate every N fine-tuning steps (default: each epoch)", 0},
        {"eval-limit", CLI_I64, &eval_limit, "N", "evaluate on at most N test samples", 0},
        {"seed", CLI_U64, &seed, "S", "initialisation, scoring batches, random scores (default 0)", 0},
        {"out", CLI_STR, &out, "OUT", "output directory: OUT/model.rckpt", 1},
        {"threads", CLI_INT, &threads, "N", "BLAS threads (default 1)", 0},
        {"json", CLI_FLAG, &json, NULL, "print the metrics as one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("prune", "--ckpt IN|--model PRESET --data D --method M --sparsity S --out OUT [options]",
                       "One-shot pruning (docs/pruning.md), then optional fine-tuning with the mask fixed.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (!ckpt == !model) { cli_err("prune", "give exactly one of --ckpt and --model"); return 2; }
    if (!(sparsity >= 0 && sparsity <= 1)) { cli_err("prune", "--sparsity must be in [0, 1]"); return 2; }
    if (rf_prune_method_from_name(method) < 0) { cli_err("prune", "--method must be one of %s", rf_prune_method_names()); return 2; }
    if (rf_prune_scope_from_name(scope) < 0) { cli_err("prune", "--scope must be layer or global"); return 2; }
    cli_set_threads(threads);

    rf_ctx ctx;
    rf_ctx_init(&ctx);
    const char *dir = out;
    rf_status s = rf_mkdirs(&ctx, dir);
    if (s != RF_OK) return cli_fail("prune", &ctx, s);

    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "kind", "prune");
    cJSON_AddStringToObject(st, "data", data);
    if (model) cJSON_AddStringToObject(st, "model", model);
    cJSON_AddStringToObject(st, "method", method);
    cJSON_AddNumberToObject(st, "sparsity", sparsity);
    cJSON_AddStringToObject(st, "scope", scope);
    if (output_rate >= 0) cJSON_AddNumberToObject(st, "output_rate", output_rate);
    if (layers) cJSON_AddStringToObject(st, "layers", layers);
    cJSON_AddNumberToObject(st, "finetune_epochs", finetune_epochs);
    if (finetune_iters > 0) cJSON_AddNumberToObject(st, "finetune_iterations", (double)finetune_iters);
    cJSON_AddNumberToObject(st, "batch", batch);
    cJSON_AddStringToObject(st, "optimizer", optimizer);
    cJSON_AddNumberToObject(st, "lr", lr);
    cJSON_AddNumberToObject(st, "obd_batches", obd_batches);
    cJSON_AddNumberToObject(st, "synflow_rounds", synflow_rounds);
    if (eval_every > 0) cJSON_AddNumberToObject(st, "eval_every", eval_every);
    if (eval_limit > 0) cJSON_AddNumberToObject(st, "eval_limit", (double)eval_limit);
    cJSON_AddNumberToObject(st, "seed", (double)seed);

    const char *parents[1] = {ckpt};
    cJSON *metrics = st ? cli_run_task("prune", rf_task_prune, st, data, 0, parents, ckpt ? 1 : 0, dir) : NULL;
    if (!st) cli_err("prune", "out of memory");
    cJSON_Delete(st);
    if (!metrics) return 1;
    if (json) {
        cli_print_json(metrics);
    } else {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(metrics, "accuracy");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(metrics, "sparsity");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(metrics, "collapsed_layers");
        printf("accuracy %.4f  sparsity %.6f  collapsed layers %d\n", a ? a->valuedouble : 0.0,
               sp ? sp->valuedouble : 0.0, cJSON_GetArraySize(cl));
        cJSON_Delete(metrics);
    }
    return 0;
}
