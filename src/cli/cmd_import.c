/* raffle import --safetensors FILE --model PRESET|SPEC [--input CxHxW]
 * [--classes K] --out DIR: loads weights by name into the model (every
 * tensor's name, shape and dtype checked, errors name the tensor) and saves
 * a raffle checkpoint as DIR/model.rckpt (--out is a directory in every
 * command). A preset is built for --input (the CIFAR presets default to
 * 3x32x32; a ResNet-20 trained on 28x28 Fashion-MNIST is --input 1x28x28)
 * and --classes (CIFAR-100: 100), as a training task builds it for its
 * data (rf_model_create_for); a spec file must already take that input. */
#include "cli/cli.h"
#include "raffle/safetensors.h"
#include "raffle/train.h"
#include "raffle/ckpt.h"

#include <stdio.h>
#include <string.h>

/* "CxHxW" (each 1..65536) into d; RF_ERR_INVALID naming --input. */
static rf_status parse_input(rf_ctx *ctx, const char *s, int d[3]) {
    for (int k = 0; k < 3; k++) {
        const char *x = k < 2 ? strchr(s, 'x') : s + strlen(s);
        if (!x) return rf_error(ctx, RF_ERR_INVALID, "--input: expected CxHxW such as 1x28x28, got '%s'", s);
        int64_t v;
        RF_TRY(rf_parse_i64(ctx, s, (size_t)(x - s), 1, 65536, "--input", &v));
        d[k] = (int)v;
        s = x + 1;
    }
    return RF_OK;
}

int rf_cmd_import(int argc, char **argv) {
    const char *in = NULL, *model = NULL, *outp = NULL, *input = NULL;
    int json = 0, classes = 0;
    const cli_opt opts[] = {
        {"safetensors", CLI_STR, &in, "FILE", "safetensors file to import", 1},
        {"model", CLI_STR, &model, "PRESET|SPEC", "model preset name or spec JSON file", 1},
        {"input", CLI_STR, &input, "CxHxW", "input shape the preset is built for (e.g. 1x28x28; default: the preset's own)", 0},
        {"classes", CLI_INT, &classes, "K", "classes the preset is built for when more than its 10 (e.g. 100)", 0},
        {"out", CLI_STR, &outp, "DIR", "output directory: DIR/model.rckpt", 1},
        {"json", CLI_FLAG, &json, NULL, "print one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("import", "--safetensors FILE --model PRESET|SPEC [--input CxHxW] [--classes K] --out DIR",
                       "Import PyTorch weights (safetensors) into a raffle checkpoint.", opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    rf_safetensors *st = NULL;
    int d[3] = {0, 0, 0};
    rf_status s = RF_OK;
    if (classes < 0 || classes > 65536) s = rf_error(&ctx, RF_ERR_INVALID, "--classes: %d is outside [1, 65536]", classes);
    if (!s && input) s = parse_input(&ctx, input, d);
    if (!s && !input && classes > 0) {   /* the preset's own input, more classes */
        s = rf_model_create(&ctx, model, &m);
        if (!s) { for (int k = 0; k < 3; k++) d[k] = m->input.d[k]; rf_model_free(m); m = NULL; }
    }
    if (!s) s = input || classes > 0 ? rf_model_create_for(&ctx, model, d[0], d[1], d[2], classes, &m)
                                     : rf_model_create(&ctx, model, &m);
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
