/* raffle eval: accuracy and loss of a checkpoint on a dataset's test (or
 * validation) split, and optionally every sample's logits and predicted
 * label as .npy files, so results can be checked outside raffle.
 *
 * The data are prepared as the task that wrote the checkpoint prepared them
 * (padding, validation split, normalisation: the data preparation keys it
 * recorded in the checkpoint's metadata), unless the flags say otherwise;
 * so the test accuracy here is the task's `accuracy`. A quantized
 * checkpoint (int8 values + scales, quant metadata) is evaluated with its
 * integer inference path rebuilt (rf_quant_load), not as the dequantized
 * float model; the float layers of a pruned model run the sparse kernel
 * where they are pruned past the measured break-even
 * (rf_evaluate_deployed). */
#include "cli/cli.h"
#include "raffle/quant.h"
#include "raffle/task.h"
#include "raffle/train.h"

#include <stdio.h>
#include <string.h>

/* The data settings of the evaluation: the checkpoint's recorded "data" and
 * data preparation keys, overlaid by the flags (flags: --data and the
 * rf_data_settings flags). New object; NULL out of memory. */
static cJSON *eval_settings(const cJSON *recorded, const cJSON *flags, const char *data) {
    cJSON *s = cJSON_CreateObject();
    for (const rf_setting *f = rf_data_settings; s && f->key; f++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(flags, f->key);
        if (!v) v = cJSON_GetObjectItemCaseSensitive(recorded, f->key);
        if (v && !cJSON_AddItemToObject(s, f->key, cJSON_Duplicate(v, 1))) { cJSON_Delete(s); return NULL; }
    }
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(recorded, "data");
    const char *d = data ? data : cJSON_IsString(rd) ? rd->valuestring : NULL;
    if (s && d && !cJSON_AddStringToObject(s, "data", d)) { cJSON_Delete(s); return NULL; }
    return s;
}

int rf_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *split = "test", *pred = NULL;
    int json = 0, threads = 0, batch = 256;
    int64_t limit = 0;
    const cli_opt opts[] = {
        {"ckpt", CLI_STR, &ckpt, "FILE", "checkpoint (.rckpt)", 1},
        {"data", CLI_STR, &data, "DATASET", "dataset (default: the one the checkpoint's task recorded)", 0},
        {"split", CLI_STR, &split, "test|val", "which split to evaluate (default test)", 0},
        {"predictions", CLI_STR, &pred, "PREFIX",
         "write PREFIX.logits.npy (float32 [n, classes]), PREFIX.pred.npy and PREFIX.labels.npy (int32 [n])", 0},
        {"batch", CLI_INT, &batch, "B", "evaluation batch size (default 256)", CLI_POSITIVE},
        {"limit", CLI_I64, &limit, "N", "evaluate the first N samples of the split only", CLI_POSITIVE},
        {"threads", CLI_INT, &threads, "N", "compute threads (default 1)", CLI_POSITIVE},
        {"json", CLI_FLAG, &json, NULL, "print one JSON object with the results", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    cJSON *flags = cJSON_CreateObject();
    if (!flags) { cli_err("eval", "out of memory"); return 1; }
    cli_tables t = {.tab = {rf_data_settings}, .n = 1, .settings = flags,
                    .title = {"data preparation (default: what the checkpoint's task recorded; docs/data.md)"}};
    int done = 0;
    int rc = cli_parse_settings("eval", "--ckpt FILE [--data DATASET] [options]",
                                "Evaluate a checkpoint on a dataset's test (or validation) split, prepared as the task that\n"
                                "wrote it prepared it; optionally write every sample's logits and predicted label (.npy).",
                                opts, &t, argc, argv, NULL, 0, 0, &done);
    if (rc || done) { cJSON_Delete(flags); return rc; }
    if (batch <= 0 || threads < 0 || limit < 0) { cJSON_Delete(flags); cli_err("eval", "--batch, --threads and --limit must be positive"); return 2; }
    int on_val = strcmp(split, "val") == 0;
    if (!on_val && strcmp(split, "test") != 0) { cJSON_Delete(flags); cli_err("eval", "--split: expected test or val, got '%s'", split); return 2; }
    cli_set_threads(threads);

    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.threads = threads > 0 ? threads : 1;
    rf_model *m = NULL;
    rf_quant *q = NULL;
    rf_data_splits sp;
    memset(&sp, 0, sizeof sp);
    cJSON *recorded = NULL, *settings = NULL;
    double acc = 0, loss = 0, t0 = rf_now(), secs = 0;
    int n_sparse = 0;
    rf_dataset view;
    memset(&view, 0, sizeof view);
    rf_status s = rf_quant_load(&ctx, ckpt, &m, &q);
    if (s == RF_OK) s = rf_task_ckpt_settings(&ctx, ckpt, &recorded);
    if (s == RF_OK && !(settings = eval_settings(recorded, flags, data))) s = rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    if (s == RF_OK && !cJSON_GetObjectItemCaseSensitive(settings, "data"))
        s = rf_error(&ctx, RF_ERR_INVALID, "%s records no dataset: give --data", ckpt);
    if (s == RF_OK) s = rf_task_open_data(&ctx, settings, &sp);
    if (s == RF_OK && on_val && sp.val.n == 0)
        s = rf_error(&ctx, RF_ERR_INVALID, "--split val: the data have no validation split (validation 0)");
    if (s == RF_OK) {
        const rf_dataset *ds = on_val ? &sp.val : sp.test;
        view = limit > 0 && limit < ds->n ? rf_dataset_head(ds, limit) : *ds;
        t0 = rf_now();
        s = pred ? rf_task_write_predictions(&ctx, m, &view, batch, pred, &acc, &loss, &n_sparse)
                 : rf_evaluate_deployed(&ctx, m, &view, batch, &acc, &loss, &n_sparse, NULL);
        secs = rf_now() - t0;
    }
    const cJSON *dv = cJSON_GetObjectItemCaseSensitive(settings, "data");
    const char *dname = cJSON_IsString(dv) ? dv->valuestring : data ? data : "?";
    if (s != RF_OK) {
        rc = cli_fail("eval", &ctx, s);
    } else {
        size_t remaining = 0, prunable = rf_model_prunable_count(m, &remaining);
        double sps = secs > 0 ? (double)view.n / secs : 0.0;
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "ckpt", ckpt);
            cJSON_AddStringToObject(j, "data", dname);
            cJSON_AddStringToObject(j, "split", on_val ? "val" : "test");
            cJSON_AddNumberToObject(j, "accuracy", acc);
            cJSON_AddNumberToObject(j, on_val ? "val_accuracy" : "test_accuracy", acc);
            cJSON_AddNumberToObject(j, "loss", loss);
            cJSON_AddNumberToObject(j, "samples", (double)view.n);
            cJSON_AddNumberToObject(j, "parameters", (double)m->n_params);
            cJSON_AddNumberToObject(j, "prunable", (double)prunable);
            cJSON_AddNumberToObject(j, "prunable_remaining", (double)remaining);
            cJSON_AddBoolToObject(j, "quantized", q != NULL);
            int n4 = 0;
            for (int i = 0; q && i < rf_quant_n_layers(q); i++) n4 += rf_quant_layer(q, i)->bits < 8;
            cJSON_AddNumberToObject(j, "int8_products", q ? rf_quant_n_layers(q) - n4 : 0);
            cJSON_AddNumberToObject(j, "int4_products", n4);
            cJSON_AddNumberToObject(j, "sparse_products", n_sparse);
            if (pred) cJSON_AddStringToObject(j, "predictions", pred);
            cJSON_AddItemToObject(j, "data_prep", cJSON_Duplicate(settings, 1));
            cJSON_AddNumberToObject(j, "seconds", secs);
            cJSON_AddNumberToObject(j, "samples_per_s", sps);
            cli_print_json(j);
        } else {
            printf("%s on %s: %s accuracy %.4f, loss %.4f over %lld samples; %zu parameters; %.0f samples/s",
                   ckpt, dname, on_val ? "validation" : "test", acc, loss, (long long)view.n, m->n_params, sps);
            int n4 = 0;
            for (int i = 0; q && i < rf_quant_n_layers(q); i++) n4 += rf_quant_layer(q, i)->bits < 8;
            if (q && n4 < rf_quant_n_layers(q)) printf("; int8 (%d products)", rf_quant_n_layers(q) - n4);
            if (n4) printf("; int4 groups (%d products)", n4);
            if (n_sparse) printf("; sparse kernel on %d products", n_sparse);
            if (pred) printf("; predictions in %s.{logits,pred,labels}.npy", pred);
            printf("\n");
        }
    }
    rf_quant_detach(q, m);
    rf_model_free(m);
    rf_quant_free(q);
    rf_data_splits_free(&sp);
    cJSON_Delete(recorded);
    cJSON_Delete(settings);
    cJSON_Delete(flags);
    return rc;
}
