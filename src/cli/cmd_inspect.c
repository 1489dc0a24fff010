/* raffle inspect FILE [--json]: a checkpoint's metadata and tensors, with the
 * size accounting of issue 6 (bits per weight, empirical entropy bound). */
#include "cli/cli.h"
#include "raffle/ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shape_str(const rf_ckpt_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* min/max/count of an int8 tensor's per-row scales. */
static void scale_range(const rf_ckpt_tensor *t, double *lo, double *hi, int64_t *count) {
    int64_t numel = rf_ckpt_tensor_numel(t);
    *count = numel > 0 ? (t->ndim ? t->shape[0] : 1) : 0;
    *lo = *count ? INFINITY : 0; *hi = *count ? -INFINITY : 0;
    for (int64_t i = 0; i < *count; i++) {
        if (t->scales[i] < *lo) *lo = t->scales[i];
        if (t->scales[i] > *hi) *hi = t->scales[i];
    }
}

static cJSON *tensor_json(const rf_ckpt_tensor *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", rf_dtype_name(t->dtype));
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
    cJSON_AddStringToObject(o, "storage", rf_storage_name(t->storage));
    cJSON_AddNumberToObject(o, "sparsity", rf_ckpt_tensor_sparsity(t));
    cJSON_AddNumberToObject(o, "nnz", (double)t->nnz);
    cJSON_AddNumberToObject(o, "bytes", (double)t->disk_bytes);
    cJSON_AddNumberToObject(o, "entropy_bound_bytes", rf_ckpt_tensor_entropy_bound(t));
    cJSON_AddStringToObject(o, "coding", t->coding);
    if (t->scales) {
        double lo, hi; int64_t cnt;
        scale_range(t, &lo, &hi, &cnt);
        cJSON *s = cJSON_AddObjectToObject(o, "scales");
        cJSON_AddNumberToObject(s, "min", lo);
        cJSON_AddNumberToObject(s, "max", hi);
        cJSON_AddNumberToObject(s, "count", (double)cnt);
    }
    return o;
}

int rf_cmd_inspect(int argc, char **argv) {
    int json = 0;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print one JSON object", 0},
        {0},
    };
    const char *pos[1];
    int done;
    int rc = cli_parse("inspect", "FILE [--json]", "Show a checkpoint's metadata, tensors and size accounting.",
                       opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c;
    rf_status s = rf_ckpt_read(&ctx, pos[0], &c);
    if (s) return cli_fail("inspect", &ctx, s);

    uint64_t numel = 0, nnz = 0;
    for (int i = 0; i < c->n; i++) { numel += (uint64_t)rf_ckpt_tensor_numel(&c->t[i]); nnz += c->t[i].nnz; }
    double sparsity = numel ? 1.0 - (double)nnz / (double)numel : 0.0;
    double bpw = numel ? 8.0 * (double)c->file_bytes / (double)numel : 0.0;
    double bound = rf_ckpt_entropy_bound(c);

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", pos[0]);
        cJSON_AddNumberToObject(o, "format_version", c->version);
        cJSON_AddNumberToObject(o, "bytes", (double)c->file_bytes);
        cJSON_AddNumberToObject(o, "parameters", (double)numel);
        cJSON_AddNumberToObject(o, "sparsity", sparsity);
        cJSON_AddNumberToObject(o, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(o, "entropy_bound_bytes", bound);
        cJSON *meta = cJSON_Parse(c->meta_json);
        cJSON_AddItemToObject(o, "metadata", meta ? meta : cJSON_CreateNull());
        cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
        for (int i = 0; i < c->n; i++) cJSON_AddItemToArray(arr, tensor_json(&c->t[i]));
        cli_print_json(o);
    } else {
        printf("%s: raffle checkpoint, format %u\n", pos[0], c->version);
        printf("  bytes %llu, parameters %llu, sparsity %.2f%%, %.3f bits/weight, entropy bound %.0f bytes (%.3fx)\n",
               (unsigned long long)c->file_bytes, (unsigned long long)numel, 100.0 * sparsity, bpw, bound,
               bound > 0 ? (double)c->file_bytes / bound : 0.0);
        cJSON *meta = cJSON_Parse(c->meta_json);
        char *pretty = meta ? cJSON_Print(meta) : NULL;
        printf("metadata: %s\n", pretty ? pretty : c->meta_json);
        cJSON_free(pretty);
        cJSON_Delete(meta);
        printf("%-32s %-5s %-18s %-12s %9s %10s  %s\n", "tensor", "dtype", "shape", "storage", "sparsity", "bytes", "coding");
        for (int i = 0; i < c->n; i++) {
            const rf_ckpt_tensor *t = &c->t[i];
            char sh[64];
            shape_str(t, sh, sizeof sh);
            printf("%-32s %-5s %-18s %-12s %8.2f%% %10llu  %s", t->name, rf_dtype_name(t->dtype), sh,
                   rf_storage_name(t->storage), 100.0 * rf_ckpt_tensor_sparsity(t), (unsigned long long)t->disk_bytes, t->coding);
            if (t->scales) {
                double lo, hi; int64_t cnt;
                scale_range(t, &lo, &hi, &cnt);
                printf("  scales[%lld] %.4g..%.4g", (long long)cnt, lo, hi);
            }
            printf("\n");
        }
    }
    rf_ckpt_free(c);
    return 0;
}
