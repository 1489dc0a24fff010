/* raffle inspect FILE [--json]: a checkpoint's metadata and tensors, with the
 * size accounting of issue 6 (bits per weight, empirical entropy bound),
 * per tensor too, for every storage kind (int8, int4, codebook, N:M). */
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

/* min and max of n floats (0, 0 for none). */
static void float_range(const float *v, uint64_t n, double *lo, double *hi) {
    *lo = n ? INFINITY : 0; *hi = n ? -INFINITY : 0;
    for (uint64_t i = 0; i < n; i++) {
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
}

/* Bytes of side information the entropy bound does not count: the raw
 * size of scales, zero points and codebooks (4 bytes each). */
static uint64_t side_bytes(const rf_ckpt_tensor *t) {
    uint64_t ns = rf_ckpt_tensor_n_scales(t);
    return 4 * ns * (uint64_t)((t->scales || t->codebook) + (t->zero_points != NULL));
}

static double tensor_bpw(const rf_ckpt_tensor *t) {
    int64_t n = rf_ckpt_tensor_numel(t);
    return n > 0 ? 8.0 * (double)t->disk_bytes / (double)n : 0.0;
}

/* One line of the kind's details for the text table: scales of int8 and
 * int4 kinds, the codebook's width and range, the N:M pattern. */
static void details(const rf_ckpt_tensor *t, char *buf, size_t n) {
    double lo, hi;
    buf[0] = '\0';
    if (t->codebook) {
        float_range(t->codebook, rf_ckpt_tensor_n_scales(t), &lo, &hi);
        snprintf(buf, n, "  codebook[%d] (%d bits) %.4g..%.4g", 1 << t->bits, t->bits, lo, hi);
    } else if (t->scales) {
        uint64_t ns = rf_ckpt_tensor_n_scales(t);
        float_range(t->scales, ns, &lo, &hi);
        if (t->group_size)
            snprintf(buf, n, "  int4 %s, group %d, scales[%llu] %.4g..%.4g", t->zero_points ? "affine" : "symmetric", t->group_size,
                     (unsigned long long)ns, lo, hi);
        else
            snprintf(buf, n, "  scales[%llu] %.4g..%.4g", (unsigned long long)ns, lo, hi);
    } else if (t->nm_m) {
        snprintf(buf, n, "  %d:%d", t->nm_n, t->nm_m);
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
    cJSON_AddNumberToObject(o, "bits_per_weight", tensor_bpw(t));
    cJSON_AddNumberToObject(o, "entropy_bound_bytes", rf_ckpt_tensor_entropy_bound(t));
    cJSON_AddNumberToObject(o, "side_bytes", (double)side_bytes(t));
    cJSON_AddStringToObject(o, "coding", t->coding);
    double lo, hi;
    uint64_t ns = rf_ckpt_tensor_n_scales(t);
    if (t->scales) {
        float_range(t->scales, ns, &lo, &hi);
        cJSON *s = cJSON_AddObjectToObject(o, "scales");
        cJSON_AddNumberToObject(s, "min", lo);
        cJSON_AddNumberToObject(s, "max", hi);
        cJSON_AddNumberToObject(s, "count", (double)ns);
    }
    if (t->codebook) {
        float_range(t->codebook, ns, &lo, &hi);
        cJSON *c = cJSON_AddObjectToObject(o, "codebook");
        cJSON_AddNumberToObject(c, "bits", t->bits);
        cJSON_AddNumberToObject(c, "entries", (double)ns);
        cJSON_AddNumberToObject(c, "min", lo);
        cJSON_AddNumberToObject(c, "max", hi);
    }
    if (t->group_size) {
        cJSON *g = cJSON_AddObjectToObject(o, "int4");
        cJSON_AddNumberToObject(g, "group_size", t->group_size);
        cJSON_AddStringToObject(g, "mode", t->zero_points ? "affine" : "symmetric");
    }
    if (t->nm_m) {
        cJSON *g = cJSON_AddObjectToObject(o, "nm");
        cJSON_AddNumberToObject(g, "n", t->nm_n);
        cJSON_AddNumberToObject(g, "m", t->nm_m);
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

    uint64_t numel = 0, nnz = 0, side = 0;
    for (int i = 0; i < c->n; i++) {
        numel += (uint64_t)rf_ckpt_tensor_numel(&c->t[i]);
        nnz += c->t[i].nnz;
        side += side_bytes(&c->t[i]);
    }
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
        cJSON_AddNumberToObject(o, "side_bytes", (double)side);
        cJSON *meta = cJSON_Parse(c->meta_json);
        cJSON_AddItemToObject(o, "metadata", meta ? meta : cJSON_CreateNull());
        cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
        for (int i = 0; i < c->n; i++) cJSON_AddItemToArray(arr, tensor_json(&c->t[i]));
        cli_print_json(o);
    } else {
        printf("%s: raffle checkpoint, format %u\n", pos[0], c->version);
        printf("  bytes %llu, parameters %llu, sparsity %.2f%%, %.3f bits/weight, entropy bound %.0f bytes (%.3fx)",
               (unsigned long long)c->file_bytes, (unsigned long long)numel, 100.0 * sparsity, bpw, bound,
               bound > 0 ? (double)c->file_bytes / bound : 0.0);
        if (side) printf(", plus %llu bytes of scales, zero points and codebooks", (unsigned long long)side);
        printf("\n");
        cJSON *meta = cJSON_Parse(c->meta_json);
        char *pretty = meta ? cJSON_Print(meta) : NULL;
        printf("metadata: %s\n", pretty ? pretty : c->meta_json);
        cJSON_free(pretty);
        cJSON_Delete(meta);
        printf("%-32s %-5s %-18s %-15s %9s %10s %7s %10s  %s\n", "tensor", "dtype", "shape", "storage", "sparsity", "bytes", "bits/w",
               "bound", "coding");
        for (int i = 0; i < c->n; i++) {
            const rf_ckpt_tensor *t = &c->t[i];
            char sh[64], det[128];
            shape_str(t, sh, sizeof sh);
            details(t, det, sizeof det);
            printf("%-32s %-5s %-18s %-15s %8.2f%% %10llu %7.3f %10.0f  %s%s\n", t->name, rf_dtype_name(t->dtype), sh,
                   rf_storage_name(t->storage), 100.0 * rf_ckpt_tensor_sparsity(t), (unsigned long long)t->disk_bytes, tensor_bpw(t),
                   rf_ckpt_tensor_entropy_bound(t), t->coding, det);
        }
    }
    rf_ckpt_free(c);
    return 0;
}
