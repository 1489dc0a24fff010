/* raffle eval: accuracy and loss of a checkpoint on a dataset's test split.
 * A quantized checkpoint (int8 values + scales, quant metadata) is evaluated
 * with its integer inference path rebuilt (rf_quant_load), not as the
 * dequantized float model; the float layers of a pruned model run the sparse
 * kernel where they are pruned past the measured break-even
 * (rf_evaluate_deployed). */
#include "cli/cli.h"
#include "raffle/gemm.h"
#include "raffle/quant.h"
#include "raffle/task.h"
#include "raffle/train.h"

#include <stdio.h>

int rf_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL;
    int json = 0, threads = -1, batch = 256;
    int64_t limit = 0;
    const cli_opt opts[] = {
        {"ckpt", CLI_STR, &ckpt, "FILE", "checkpoint (.rckpt)", 1},
        {"data", CLI_STR, &data, "DATASET", "dataset whose test split is evaluated", 1},
        {"batch", CLI_INT, &batch, "B", "evaluation batch size (default 256)", 0},
        {"limit", CLI_I64, &limit, "N", "evaluate the first N test samples only", 0},
        {"threads", CLI_INT, &threads, "N", CLI_THREADS_DOC, 0},
        {"json", CLI_FLAG, &json, NULL, "print one JSON object with the results", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int done = 0;
    int rc = cli_parse("eval", "--ckpt FILE --data DATASET [options]",
                       "Evaluate a checkpoint on a dataset's test split.", opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    if (batch <= 0 || limit < 0) { cli_err("eval", "--batch and --limit must be positive"); return 2; }

    rf_ctx ctx;
    rf_ctx_init(&ctx);
    if (cli_threads("eval", &ctx, threads)) return 2;
    rf_model *m = NULL;
    rf_quant *q = NULL;
    rf_dataset *train = NULL, *test = NULL;
    double acc = 0, loss = 0, t0 = rf_now(), secs = 0;
    int n_sparse = 0;
    rf_dataset view;
    rf_status s = rf_gemm_attach(&ctx);
    if (s == RF_OK) s = rf_quant_load(&ctx, ckpt, &m, &q);
    if (s == RF_OK) s = rf_data_load(&ctx, data, &train, &test);
    if (s == RF_OK) {
        view = limit > 0 && limit < test->n ? rf_dataset_head(test, limit) : *test;
        t0 = rf_now();
        s = rf_evaluate_deployed(&ctx, m, &view, batch, &acc, &loss, &n_sparse);
        secs = rf_now() - t0;
    }
    if (s != RF_OK) {
        rc = cli_fail("eval", &ctx, s);
    } else {
        size_t remaining = 0, prunable = rf_model_prunable_count(m, &remaining);
        double sps = secs > 0 ? (double)view.n / secs : 0.0;
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "ckpt", ckpt);
            cJSON_AddStringToObject(j, "data", data);
            cJSON_AddNumberToObject(j, "accuracy", acc);
            cJSON_AddNumberToObject(j, "loss", loss);
            cJSON_AddNumberToObject(j, "samples", (double)view.n);
            cJSON_AddNumberToObject(j, "parameters", (double)m->n_params);
            cJSON_AddNumberToObject(j, "prunable", (double)prunable);
            cJSON_AddNumberToObject(j, "prunable_remaining", (double)remaining);
            cJSON_AddBoolToObject(j, "quantized", q != NULL);
            cJSON_AddNumberToObject(j, "int8_products", q ? rf_quant_n_layers(q) : 0);
            cJSON_AddNumberToObject(j, "sparse_products", n_sparse);
            cJSON_AddNumberToObject(j, "seconds", secs);
            cJSON_AddNumberToObject(j, "samples_per_s", sps);
            cli_print_json(j);
        } else {
            printf("%s on %s: test accuracy %.4f, loss %.4f over %lld samples; %zu parameters; %.0f samples/s",
                   ckpt, data, acc, loss, (long long)view.n, m->n_params, sps);
            if (q) printf("; int8 (%d products)", rf_quant_n_layers(q));
            if (n_sparse) printf("; sparse kernel on %d products", n_sparse);
            printf("\n");
        }
    }
    rf_quant_detach(q, m);
    rf_model_free(m);
    rf_quant_free(q);
    rf_dataset_free(train);
    rf_dataset_free(test);
    rf_gemm_detach(&ctx);
    return rc;
}
