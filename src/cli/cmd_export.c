/* raffle export --ckpt IN --format safetensors --out DIR: a checkpoint as
 * dense float32 safetensors under its PyTorch-style names (int8 tensors
 * dequantized, sparse ones expanded), loadable with safetensors.torch, in
 * DIR/model.safetensors (--out is a directory in every command). */
#include "cli/cli.h"
#include "raffle/ckpt.h"
#include "raffle/safetensors.h"

#include <stdio.h>
#include <string.h>

typedef rf_status (*export_fn)(rf_ctx *ctx, const rf_ckpt *c, unsigned char **buf, size_t *len);
static const struct { const char *name; export_fn fn; const char *file; } formats[] = {
    {"safetensors", rf_ckpt_to_safetensors, "model.safetensors"},
};

int rf_cmd_export(int argc, char **argv) {
    const char *in = NULL, *fmt = "safetensors", *outp = NULL;
    int json = 0;
    const cli_opt opts[] = {
        {"ckpt", CLI_STR, &in, "FILE", "checkpoint to export (.rckpt)", 1},
        {"format", CLI_STR, &fmt, "FMT", "output format: safetensors (default)", 0},
        {"out", CLI_STR, &outp, "DIR", "output directory: DIR/model.safetensors", 1},
        {"json", CLI_FLAG, &json, NULL, "print one JSON object", 0},
        {0},
    };
    int done;
    int rc = cli_parse("export", "--ckpt IN --out DIR [--format safetensors]", "Export a checkpoint's weights.",
                       opts, argc, argv, NULL, 0, 0, &done);
    if (rc || done) return rc;
    export_fn fn = NULL;
    const char *file = NULL;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(fmt, formats[i].name) == 0) { fn = formats[i].fn; file = formats[i].file; }
    if (!fn) { cli_err("export", "--format: unknown format '%s' (known: safetensors)", fmt); return 2; }
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c;
    rf_status s = rf_ckpt_read(&ctx, in, &c);
    if (s) return cli_fail("export", &ctx, s);
    unsigned char *buf = NULL;
    size_t len = 0;
    s = fn(&ctx, c, &buf, &len);
    int n = c->n;
    rf_ckpt_free(c);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outp, file);
    if (!s) s = rf_mkdirs(&ctx, outp);
    if (!s) s = rf_write_file_atomic(&ctx, path, buf, len);
    rf_free(buf);
    if (s) return cli_fail("export", &ctx, s);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "out", path);
        cJSON_AddStringToObject(o, "format", fmt);
        cJSON_AddNumberToObject(o, "tensors", n);
        cJSON_AddNumberToObject(o, "bytes", (double)len);
        cli_print_json(o);
    } else {
        fprintf(stderr, "wrote %s: %d tensors, %zu bytes\n", path, n, len);
    }
    return 0;
}
