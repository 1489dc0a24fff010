/* raffle quantize: a thin front-end over the "quantize" task kind
 * (docs/quantization.md): int8 PTQ (min-max or percentile calibration) or
 * QAT of a float checkpoint, saved as an int8 checkpoint. */
#include "cli/cli.h"
#include "raffle/data.h"
#include "raffle/quant.h"

#include <stdio.h>
#include <string.h>

int rf_cmd_quantize(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *out = NULL, *mode = "ptq", *calib = "minmax", *optimizer = "adam";
    double percentile = 99.99, lr = 1e-4;
    int calib_batches = 8, calib_batch = 256, epochs = 1, batch = 128, json = 0, threads = 1;
    int64_t iterations = 0, freeze_after = 0, eval_limit = 0, train_limit = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"ckpt", CLI_STR, &ckpt, "FILE", "the float checkpoint to quantize", 1},
        {"data", CLI_STR, &data, "D", "dataset: calibration / QAT on train, accuracy on test", 1},
        {"mode", CLI_STR, &mode, "ptq|qat", "post-training quantization (default) or quantization-aware training", 0},
        {"calib", CLI_STR, &calib, "minmax|percentile", "PTQ activation range (default minmax)", 0},
        {"percentile", CLI_DOUBLE, &percentile, "P", "PTQ percentile (default 99.99)", 0},
        {"calib-batches", CLI_INT, &calib_batches, "N", "PTQ calibration batches (default 8)", 0},
        {"calib-batch", CLI_INT, &calib_batch, "B", "PTQ calibration batch size (default 256)", 0},
        {"epochs", CLI_INT, &epochs, "N", "QAT epochs (default 1)", 0},
        {"iterations", CLI_I64, &iterations, "N", "QAT: exactly N steps instead", 0},
        {"batch", CLI_INT, &batch, "B", "QAT batch size (default 128)", 0},
        {"optimizer", CLI_STR, &optimizer, "O", "QAT optimizer (default adam)", 0},
        {"lr", CLI_DOUBLE, &lr, "LR", "QAT learning rate (default 1e-4)", 0},
        {"freeze-after", CLI_I64, &freeze_after, "N", "QAT: freeze the range observers after N steps (default: half)", 0},
        {"eval-limit", CLI_I64, &eval_limit, "N", "evaluate on at most N test samples", 0},
        {"train-limit", CLI_I64, &train_limit, "N", "use the first N training samples only", 0},
        {"seed", CLI_U64, &seed, "S", "QAT shuffling (default 0)", 0},
        {"out", CLI_STR, &out, "OUT", "output directory: OUT/model.rckpt (int8)", 1},
        {"threads", CLI_INT, &threads, "N", "BLAS threads (default 1)", 0},
        {"json", CLI_FLAG, &json, NULL, "print the metrics as one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("quantize", "--ckpt IN --data D --out OUT [--mode ptq|qat] [options]",
                       "int8 quantization (Jacob et al. 2018): per-channel symmetric weights, affine u8 activations.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (strcmp(mode, "ptq") != 0 && strcmp(mode, "qat") != 0) { cli_err("quantize", "--mode must be ptq or qat"); return 2; }
    if (rf_calib_from_name(calib) != RF_CALIB_MINMAX && rf_calib_from_name(calib) != RF_CALIB_PERCENTILE) {
        cli_err("quantize", "--calib must be minmax or percentile");
        return 2;
    }
    cli_set_threads(threads);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_status s = rf_mkdirs(&ctx, out);
    if (s != RF_OK) return cli_fail("quantize", &ctx, s);
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "kind", "quantize");
    cJSON_AddStringToObject(st, "data", data);
    cJSON_AddStringToObject(st, "mode", mode);
    cJSON_AddStringToObject(st, "calib", calib);
    cJSON_AddNumberToObject(st, "percentile", percentile);
    cJSON_AddNumberToObject(st, "calib_batches", calib_batches);
    cJSON_AddNumberToObject(st, "calib_batch", calib_batch);
    if (iterations > 0) cJSON_AddNumberToObject(st, "iterations", (double)iterations);
    else cJSON_AddNumberToObject(st, "epochs", epochs);
    cJSON_AddNumberToObject(st, "batch", batch);
    cJSON_AddStringToObject(st, "optimizer", optimizer);
    cJSON_AddNumberToObject(st, "lr", lr);
    if (freeze_after > 0) cJSON_AddNumberToObject(st, "freeze_after", (double)freeze_after);
    if (eval_limit > 0) cJSON_AddNumberToObject(st, "eval_limit", (double)eval_limit);
    cJSON_AddNumberToObject(st, "seed", (double)seed);

    const char *parents[1] = {ckpt};
    cJSON *metrics = st ? cli_run_task("quantize", rf_task_quantize, st, data, train_limit, parents, 1, out) : NULL;
    if (!st) cli_err("quantize", "out of memory");
    cJSON_Delete(st);
    if (!metrics) return 1;
    if (json) {
        cli_print_json(metrics);
    } else {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(metrics, "accuracy");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(metrics, "fp32_accuracy");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(metrics, "bytes");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(metrics, "int8_products");
        const cJSON *s1 = cJSON_GetObjectItemCaseSensitive(metrics, "int8_speedup_b1");
        const cJSON *s64 = cJSON_GetObjectItemCaseSensitive(metrics, "int8_speedup_b64");
        printf("int8 accuracy %.4f  fp32 accuracy %.4f  bytes %.0f  int8 products %.0f  "
               "speed-up vs fp32 %.2fx (batch 1) %.2fx (batch 64)\n", a ? a->valuedouble : 0.0,
               f ? f->valuedouble : 0.0, b ? b->valuedouble : 0.0, p ? p->valuedouble : 0.0,
               s1 ? s1->valuedouble : 0.0, s64 ? s64->valuedouble : 0.0);
        cJSON_Delete(metrics);
    }
    return 0;
}
