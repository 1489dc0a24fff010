/* raffle distill: a thin front-end that builds the settings of the "distill"
 * task kind (docs/distillation.md) and runs it. */
#include "cli/cli.h"
#include "raffle/data.h"
#include "raffle/distill.h"

#include <stdio.h>
#include <string.h>

#define MAX_TEACHERS 16

int rf_cmd_distill(int argc, char **argv) {
    const char *teachers = NULL, *model = NULL, *data = NULL, *out = NULL, *optimizer = "adam", *schedule = NULL;
    double lr = 1e-3, temperature = 4.0, alpha = 0.9, hidden_weight = 1.0;
    int epochs = 10, batch = 128, hidden = 0, no_cache = 0, json = 0, threads = 1, eval_every = 0;
    int64_t iterations = 0, eval_limit = 0, train_limit = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"teacher", CLI_STR, &teachers, "A[,B...]", "teacher checkpoint(s); several = an ensemble (mean logits)", 1},
        {"model", CLI_STR, &model, "PRESET", "the student: preset name or spec file", 1},
        {"data", CLI_STR, &data, "D", "dataset (fashion-mnist, mnist, synthetic[:N[:SEED]], ...)", 1},
        {"temperature", CLI_DOUBLE, &temperature, "T", "softmax temperature (default 4; Hinton's MNIST run: 20)", 0},
        {"alpha", CLI_DOUBLE, &alpha, "A", "weight of the soft-target term (default 0.9)", 0},
        {"hidden", CLI_FLAG, &hidden, NULL, "also distill transformer block outputs (MSE, learned projection)", 0},
        {"hidden-weight", CLI_DOUBLE, &hidden_weight, "B", "weight of the hidden-state term (default 1)", 0},
        {"no-cache", CLI_FLAG, &no_cache, NULL, "run the teacher on every batch instead of caching its logits", 0},
        {"epochs", CLI_INT, &epochs, "N", "training epochs (default 10)", 0},
        {"iterations", CLI_I64, &iterations, "N", "train exactly N steps instead", 0},
        {"batch", CLI_INT, &batch, "B", "batch size (default 128)", 0},
        {"optimizer", CLI_STR, &optimizer, "O", "sgd, adam or adamw (default adam)", 0},
        {"schedule", CLI_STR, &schedule, "S", "constant, step, cosine or linear (default cosine)", 0},
        {"lr", CLI_DOUBLE, &lr, "LR", "learning rate (default 1e-3)", 0},
        {"eval-every", CLI_INT, &eval_every, "N", "evaluate every N steps (default: each epoch)", 0},
        {"eval-limit", CLI_I64, &eval_limit, "N", "evaluate on at most N test samples", 0},
        {"train-limit", CLI_I64, &train_limit, "N", "train on the first N samples only (short runs)", 0},
        {"seed", CLI_U64, &seed, "S", "student initialisation and shuffling (default 0)", 0},
        {"out", CLI_STR, &out, "OUT", "output directory: OUT/model.rckpt", 1},
        {"threads", CLI_INT, &threads, "N", "BLAS threads (default 1)", 0},
        {"json", CLI_FLAG, &json, NULL, "print the metrics as one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("distill", "--teacher CKPT[,CKPT...] --model PRESET --data D --out OUT [options]",
                       "Knowledge distillation (Hinton et al. 2015): train a student on a teacher's soft targets.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    cli_set_threads(threads);

    /* split the teacher list (borrowing argv's string, copied to a buffer) */
    char buf[8192];
    if (strlen(teachers) >= sizeof buf) { cli_err("distill", "--teacher list too long"); return 2; }
    strcpy(buf, teachers);
    const char *paths[MAX_TEACHERS];
    int n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (n == MAX_TEACHERS) { cli_err("distill", "at most %d teachers", MAX_TEACHERS); return 2; }
        paths[n++] = p;
    }
    if (n == 0) { cli_err("distill", "--teacher needs at least one checkpoint"); return 2; }

    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_status s = rf_mkdirs(&ctx, out);
    if (s != RF_OK) return cli_fail("distill", &ctx, s);
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "kind", "distill");
    cJSON_AddStringToObject(st, "data", data);
    cJSON_AddStringToObject(st, "model", model);
    cJSON_AddNumberToObject(st, "temperature", temperature);
    cJSON_AddNumberToObject(st, "alpha", alpha);
    cJSON_AddBoolToObject(st, "hidden", hidden);
    cJSON_AddNumberToObject(st, "hidden_weight", hidden_weight);
    cJSON_AddBoolToObject(st, "teacher_cache", !no_cache);
    if (iterations > 0) cJSON_AddNumberToObject(st, "iterations", (double)iterations);
    else cJSON_AddNumberToObject(st, "epochs", epochs);
    cJSON_AddNumberToObject(st, "batch", batch);
    cJSON_AddStringToObject(st, "optimizer", optimizer);
    if (schedule) cJSON_AddStringToObject(st, "schedule", schedule);
    cJSON_AddNumberToObject(st, "lr", lr);
    if (eval_every > 0) cJSON_AddNumberToObject(st, "eval_every", eval_every);
    if (eval_limit > 0) cJSON_AddNumberToObject(st, "eval_limit", (double)eval_limit);
    cJSON_AddNumberToObject(st, "seed", (double)seed);

    cJSON *metrics = st ? cli_run_task("distill", rf_task_distill, st, data, train_limit, paths, n, out) : NULL;
    if (!st) cli_err("distill", "out of memory");
    cJSON_Delete(st);
    if (!metrics) return 1;
    if (json) {
        cli_print_json(metrics);
    } else {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(metrics, "accuracy");
        const cJSON *ta = cJSON_GetObjectItemCaseSensitive(metrics, "teacher_accuracy");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(metrics, "bytes");
        printf("accuracy %.4f  teacher %.4f  bytes %.0f\n", a ? a->valuedouble : 0.0, ta ? ta->valuedouble : 0.0,
               b ? b->valuedouble : 0.0);
        cJSON_Delete(metrics);
    }
    return 0;
}
