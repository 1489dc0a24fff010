/* Model <-> checkpoint: a model with convolution, batch norm and linear
 * layers, initialised, partly pruned, with non-trivial BN statistics, saved
 * and loaded back: parameters, masks, buffers and spec bit-identical. Also
 * the rejection paths (missing tensor, wrong shape, no spec). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raffle/ckpt.h"
#include "raffle/train.h"

static const char *spec =
    "{\"input\":[1,6,6],\"classes\":3,\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"conv1\",\"out\":4,\"kernel\":3,\"padding\":1},"
    "{\"type\":\"batchnorm\",\"name\":\"bn1\"},{\"type\":\"relu\"},"
    "{\"type\":\"flatten\"},{\"type\":\"linear\",\"name\":\"fc1\",\"out\":8},{\"type\":\"relu\"},"
    "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":3}]}";

static rf_model *make_model(int masked) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 11), RF_OK);
    for (size_t i = 0; i < m->n_buffers; i++) m->buffers[i] = 0.5f + 0.01f * (float)i;
    if (masked) {
        cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
        rf_rng r; rf_rng_init(&r, 3, 0);
        for (int p = 0; p < m->n_ptensors; p++) {
            const rf_param *pp = &m->ptensors[p];
            if (!pp->prunable) continue;
            for (size_t k = 0; k < pp->numel; k++) m->masks[pp->offset + k] = rf_rng_uniform(&r) < 0.3f ? 0.0f : 1.0f;
        }
        rf_model_apply_masks(m);
        /* a kept weight that is exactly zero keeps its mask bit */
        const rf_param *fc1 = rf_model_param(m, "fc1.weight");
        for (size_t k = 0; k < fc1->numel; k++)
            if (m->masks[fc1->offset + k] != 0.0f) { m->params[fc1->offset + k] = 0.0f; break; }
    }
    return m;
}

static void assert_same_model(const rf_model *a, const rf_model *b) {
    cr_assert_eq(a->n_params, b->n_params);
    /* bit-identical, except that a pruned weight (mask 0) which masking left
     * as -0.0 reads back as +0.0: pruned entries are not stored */
    for (size_t i = 0; i < a->n_params; i++) {
        if (a->masks && a->masks[i] == 0.0f)
            cr_assert(a->params[i] == 0.0f && b->params[i] == 0.0f, "pruned param %zu not zero", i);
        else
            cr_assert_eq(memcmp(&a->params[i], &b->params[i], sizeof(float)), 0, "param %zu differs", i);
    }
    cr_assert_eq(a->n_buffers, b->n_buffers);
    cr_assert_eq(memcmp(a->buffers, b->buffers, a->n_buffers * sizeof(float)), 0, "buffers differ");
    cr_assert_eq(!a->masks, !b->masks);
    if (a->masks) cr_assert_eq(memcmp(a->masks, b->masks, a->n_params * sizeof(float)), 0, "masks differ");
}

Test(model_io, save_load_masked_model_bit_identical) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make_model(1), *back;
    char path[] = "/tmp/rf_modelio_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(rf_model_save(&ctx, m, "{\"seed\":11,\"parent\":null}", path), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_load(&ctx, path, &back), RF_OK, "%s", rf_ctx_error(&ctx));
    assert_same_model(m, back);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_read(&ctx, path, &c), RF_OK);
    const rf_ckpt_tensor *w = rf_ckpt_find(c, "fc1.weight"), *bias = rf_ckpt_find(c, "fc1.bias");
    cr_assert_eq(w->storage, RF_STORE_SPARSE);
    cr_assert_eq(bias->storage, RF_STORE_DENSE);
    cr_assert_not_null(rf_ckpt_find(c, "bn1.running_mean"));
    cr_assert_not_null(rf_ckpt_find(c, "bn1.running_var"));
    cr_assert(strstr(c->meta_json, "\"raffle_version\""));
    cr_assert(strstr(c->meta_json, "\"extra\":{\"seed\":11"), "%s", c->meta_json);
    rf_ckpt_free(c);
    unlink(path);
    rf_model_free(m); rf_model_free(back);
}

Test(model_io, dense_model_stays_dense) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make_model(0), *back;
    rf_ckpt *c;
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &c), RF_OK);
    for (int i = 0; i < c->n; i++) cr_assert_eq(c->t[i].storage, RF_STORE_DENSE);
    cr_assert(strstr(c->meta_json, "\"extra\":null"));
    cr_assert_eq(rf_model_from_ckpt(&ctx, c, &back), RF_OK, "%s", rf_ctx_error(&ctx));
    assert_same_model(m, back);
    cr_assert_null(back->masks);
    rf_ckpt_free(c); rf_model_free(m); rf_model_free(back);
}

Test(model_io, rejects_missing_tensor_bad_shape_and_no_spec) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make_model(0), *back = NULL;
    rf_ckpt *c, *d;
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &c), RF_OK);
    /* rebuild without fc2.bias */
    cr_assert_eq(rf_ckpt_new(&ctx, &d), RF_OK);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, d, c->meta_json), RF_OK);
    for (int i = 0; i < c->n; i++) {
        const rf_ckpt_tensor *t = &c->t[i];
        if (strcmp(t->name, "fc2.bias") == 0) continue;
        int64_t shape[RF_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (strcmp(t->name, "fc1.bias") == 0) shape[0] = 7;   /* wrong shape */
        cr_assert_eq(rf_ckpt_add(&ctx, d, t->name, t->dtype, t->ndim, shape, t->storage, t->data, NULL, NULL), RF_OK);
    }
    cr_assert_eq(rf_model_from_ckpt(&ctx, d, &back), RF_ERR_SHAPE);
    cr_assert(strstr(rf_ctx_error(&ctx), "fc1.bias"), "%s", rf_ctx_error(&ctx));
    rf_ckpt_free(d);
    cr_assert_eq(rf_ckpt_new(&ctx, &d), RF_OK);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, d, c->meta_json), RF_OK);
    cr_assert_eq(rf_model_from_ckpt(&ctx, d, &back), RF_ERR_NOTFOUND);
    cr_assert(strstr(rf_ctx_error(&ctx), "conv1.weight"), "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_set_meta(&ctx, d, "{\"raffle_version\":\"x\"}"), RF_OK);
    cr_assert_eq(rf_model_from_ckpt(&ctx, d, &back), RF_ERR_FORMAT);
    cr_assert_null(back);
    cr_assert_eq(rf_model_save(&ctx, m, "[1]", "/tmp/never.rckpt"), RF_ERR_INVALID);
    rf_ckpt_free(d); rf_ckpt_free(c); rf_model_free(m);
}

/* ---- safetensors import ---------------------------------------------------- */
#include "raffle/safetensors.h"

Test(model_io, safetensors_export_import_roundtrip) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make_model(0), *fresh;
    rf_ckpt *c;
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &c), RF_OK);
    unsigned char *b; size_t n;
    cr_assert_eq(rf_ckpt_to_safetensors(&ctx, c, &b, &n), RF_OK);
    rf_safetensors *st;
    cr_assert_eq(rf_safetensors_parse(&ctx, b, n, &st), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &fresh), RF_OK);
    cr_assert_eq(rf_model_load_safetensors(&ctx, fresh, st), RF_OK, "%s", rf_ctx_error(&ctx));
    assert_same_model(m, fresh);
    rf_safetensors_free(st);
    rf_free(b);
    rf_ckpt_free(c);
    rf_model_free(fresh);
    rf_model_free(m);
}

/* Edits one tensor of an exported model and checks the import error names it. */
static void import_fails(const char *drop, const char *reshape, const char *extra, int int_dtype,
                         rf_status want, const char *needle) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make_model(0), *fresh;
    rf_st_entry e[32];
    int k = 0;
    int64_t shapes[32][RF_MAX_DIMS];
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        if (drop && strcmp(p->name, drop) == 0) continue;
        memcpy(shapes[k], p->shape, sizeof shapes[k]);
        if (reshape && strcmp(p->name, reshape) == 0) shapes[k][0] -= 1;
        e[k] = (rf_st_entry){p->name, p->ndim, shapes[k], m->params + p->offset};
        k++;
    }
    int64_t c4[1] = {4};
    e[k++] = (rf_st_entry){"bn1.running_mean", 1, c4, m->buffers};
    e[k++] = (rf_st_entry){"bn1.running_var", 1, c4, m->buffers + 4};
    int64_t one[1] = {1};
    e[k++] = (rf_st_entry){"bn1.num_batches_tracked", 1, one, m->buffers};
    if (extra) e[k++] = (rf_st_entry){extra, 1, one, m->buffers};
    unsigned char *b; size_t n;
    cr_assert_eq(rf_safetensors_encode_f32(&ctx, e, k, NULL, &b, &n), RF_OK);
    if (int_dtype) {   /* relabel the first tensor's dtype as I32 (same size) */
        char *p = strstr((char *)b + 8, "\"F32\"");
        memcpy(p, "\"I32\"", 5);
    }
    rf_safetensors *st;
    cr_assert_eq(rf_safetensors_parse(&ctx, b, n, &st), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &fresh), RF_OK);
    rf_status s = rf_model_load_safetensors(&ctx, fresh, st);
    cr_assert_eq(s, want, "got %s: %s", rf_strerror(s), rf_ctx_error(&ctx));
    cr_assert(strstr(rf_ctx_error(&ctx), needle), "'%s' not in: %s", needle, rf_ctx_error(&ctx));
    for (size_t i = 0; want && i < fresh->n_params; i++) cr_assert_eq(fresh->params[i], 0.0f, "model modified on failure");
    rf_safetensors_free(st); rf_free(b); rf_model_free(fresh); rf_model_free(m);
}

Test(model_io, safetensors_import_errors_name_the_tensor) {
    import_fails(NULL, NULL, NULL, 0, RF_OK, "");
    import_fails("fc2.bias", NULL, NULL, 0, RF_ERR_NOTFOUND, "fc2.bias");
    import_fails(NULL, "fc1.weight", NULL, 0, RF_ERR_SHAPE, "fc1.weight");
    import_fails(NULL, NULL, "head.weight", 0, RF_ERR_NOTFOUND, "head.weight");
    import_fails(NULL, NULL, NULL, 1, RF_ERR_UNSUPPORTED, "conv1.weight");
}
