/* raffle import --safetensors FILE --model PRESET|SPEC --out DIR: loads
 * weights by name into the model (every tensor's name, shape and dtype
 * checked, errors name the tensor) and saves a raffle checkpoint as
 * DIR/model.rckpt (--out is a directory in every command). */
#include "cli/cli.h"
#include "raffle/safetensors.h"
#include "raffle/train.h"
#include "raffle/ckpt.h"

#include <stdio.h>

int rf_cmd_import(int argc, char **argv) {
    const char *in = NULL, *model = NULL, *outp = NULL;
    int json = 0;
    const cli_opt opts[] = {
        {"safetensors", CLI_STR, &in, "FILE", "safetensors file to import", 1},
        {"model", CLI_STR, &model, "PRESET|SPEC", "model preset name or spec JSON file", 1},
        {"out", CLI_STR, &outp, "DIR", "output directory: DIR/model.rckpt", 1},
        {"json", CLI_FLAG, &json, NULL, "print one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("import", "--safetensors FILE --model PRESET|SPEC --out DIR",
                       "Import PyTorch weights (safetensors) into a raffle checkpoint.", opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    rf_safetensors *st = NULL;
    rf_status s = rf_model_create(&ctx, model, &m);
    if (!s) s = rf_safetensors_read(&ctx, in, &st);
    if (!s) {
        s = rf_model_load_safetensors(&ctx, m, st);
        if (s) rf_error_prefix(&ctx, "%s", in);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.rckpt", outp);
    if (!s) s = rf_mkdirs(&ctx, outp);
    if (!s) s = rf_model_save(&ctx, m, "{\"imported_from\":\"safetensors\"}", path);
    int nt = st ? st->n : 0;
    size_t np = m ? m->n_params : 0;
    rf_safetensors_free(st);
    rf_model_free(m);
    if (s) return cli_fail("import", &ctx, s);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "out", path);
        cJSON_AddNumberToObject(o, "tensors", nt);
        cJSON_AddNumberToObject(o, "parameters", (double)np);
        cli_print_json(o);
    } else {
        fprintf(stderr, "wrote %s: %d tensors, %zu parameters\n", path, nt, np);
    }
    return 0;
}
