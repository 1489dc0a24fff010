/* Below 8 bits through the task path (issue 21): the `quantize` kind with
 * scheme kmeans (weight sharing, centroid fine-tuning) and int4 (groups,
 * rf_q4gemm), run by rf_task_run on parents whose weights are set by hand,
 * so the codebooks, indices, int4 values and group scales in the saved
 * checkpoint can be compared with values computed here on paper; the
 * checkpoints loaded back; every rejection of the new settings, from the
 * task and from a job file. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/task.h"
#include "raffle/job.h"
#include "raffle/ckpt.h"
#include "raffle/quant.h"

#define MLP(hidden) \
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"}," \
    "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":" #hidden "},{\"type\":\"relu\"}," \
    "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}"

static char g_dir[64];

static void mkdir_tmp(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rf_qlb.XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void rm_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(qlowbit, .init = mkdir_tmp, .fini = rm_tmp);

static float *param(rf_model *m, const char *name) {
    const rf_param *p = rf_model_param(m, name);
    cr_assert_not_null(p, "no tensor %s", name);
    return m->params + p->offset;
}

/* Values of the k-means test: fc1 cycles through five values (two of them
 * share a centroid at 2 bits), fc2 through four, every fifth entry pruned. */
static const float km_fc1[5] = {-1.0f, -0.75f, -0.25f, 0.5f, 1.0f};
static const float km_fc2[4] = {-2.0f, -1.0f, 1.0f, 3.0f};

static int fc2_pruned(size_t i) { return i % 5 == 4; }

/* Saves the parent: spec with weights set by fill (may be NULL), masked
 * (fc2 every fifth entry) when masked. */
static void save_parent(const char *spec, void (*fill)(rf_model *), int masked, const char *path) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    if (fill) fill(m);
    if (masked) {
        cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
        const rf_param *p = rf_model_param(m, "fc2.weight");
        for (size_t i = 0; i < p->numel; i++) m->masks[p->offset + i] = fc2_pruned(i) ? 0.0f : 1.0f;
        rf_model_apply_masks(m);
    }
    cr_assert_eq(rf_model_save(&ctx, m, NULL, path), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model_free(m);
}

static void fill_kmeans(rf_model *m) {
    const rf_param *p1 = rf_model_param(m, "fc1.weight"), *p2 = rf_model_param(m, "fc2.weight");
    for (size_t i = 0; i < p1->numel; i++) m->params[p1->offset + i] = km_fc1[i % 5];
    for (size_t i = 0; i < p2->numel; i++) m->params[p2->offset + i] = km_fc2[i % 4];
}

/* Runs one quantize task on parent with the given extra settings (a JSON
 * object's members, without braces) into g_dir/NAME. */
static rf_status run_quantize(const char *parent, const char *more, const char *name, cJSON *metrics, rf_ctx *ctx) {
    char json[1024], out[128];
    snprintf(json, sizeof json, "{\"kind\":\"quantize\",\"data\":\"synthetic:256\",\"calib_batches\":2%s%s}",
             more[0] ? "," : "", more);
    snprintf(out, sizeof out, "%s/%s", g_dir, name);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", out);
    cr_assert_eq(system(cmd), 0);
    cJSON *s = cJSON_Parse(json);
    cr_assert_not_null(s, "bad test JSON %s", json);
    const char *parents[1] = {parent};
    rf_task_io io = {.settings = s, .out_dir = out, .n_parents = 1, .parent_ckpts = parents};
    rf_status st = rf_task_run(ctx, &io, metrics);
    cJSON_Delete(s);
    return st;
}

/* A parent (save_parent) at g_dir/PNAME.rckpt, then one quantize task on it
 * that must succeed, into g_dir/NAME; the parent's path goes to parent. */
static void quantize_new_parent(const char *spec, void (*fill)(rf_model *), int masked, const char *pname,
                                const char *more, const char *name, cJSON *met, char parent[128]) {
    snprintf(parent, 128, "%s/%s.rckpt", g_dir, pname);
    save_parent(spec, fill, masked, parent);
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(run_quantize(parent, more, name, met, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
}

static rf_ckpt *read_out(const char *name) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    char path[160];
    snprintf(path, sizeof path, "%s/%s/model.rckpt", g_dir, name);
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_read(&ctx, path, &c), RF_OK, "%s", rf_ctx_error(&ctx));
    return c;
}

static const rf_ckpt_tensor *tensor(const rf_ckpt *c, const char *name) {
    const rf_ckpt_tensor *t = rf_ckpt_find(c, name);
    cr_assert_not_null(t, "checkpoint lacks %s", name);
    return t;
}

/* 2 bits, linear initialisation over [-1, 1]: -1, -1/3, 1/3, 1. Round 1
 * assigns -1 and -0.75 to c0 (|-0.75 + 1| = 0.25 < |-0.75 + 1/3|), -0.25
 * to c1, 0.5 to c2 (1/6 < 1/2), 1 to c3; the means are -0.875 (2,509 of
 * each, 12,544 = 5 * 2,508 + 4 weights), -0.25, 0.5, 1; round 2 changes
 * nothing. fc2 (kept weights -2, -1, 1, 3 over [-2, 3]: -2, -1/3, 4/3, 3)
 * assigns -1 to c1 and 1 to c2: codebook -2, -1, 1, 3. With layer_bits
 * fc2 = 3 its 8 centroids start at -2 + 5j/7: -1 goes to j = 1 (-9/7), 1 to
 * j = 4 (6/7), 3 to j = 7. */
Test(qlowbit, kmeans_codebooks_by_hand_through_the_task) {
    char parent[128];
    cJSON *met = cJSON_CreateObject();
    quantize_new_parent(MLP(16), fill_kmeans, 1, "parent", "\"scheme\":\"kmeans\",\"bits\":2", "km2", met, parent);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = read_out("km2");
    const rf_ckpt_tensor *t1 = tensor(c, "fc1.weight"), *t2 = tensor(c, "fc2.weight");
    /* the model is masked, so both weights carry a mask (fc1's all ones) */
    cr_assert_eq(t1->storage, RF_STORE_SPARSE_CODEBOOK);
    cr_assert_eq(t2->storage, RF_STORE_SPARSE_CODEBOOK);
    cr_assert_eq(t1->bits, 2);
    cr_assert_eq(t2->bits, 2);
    const float want1[4] = {-0.875f, -0.25f, 0.5f, 1.0f}, want2[4] = {-2.0f, -1.0f, 1.0f, 3.0f};
    for (int j = 0; j < 4; j++) {
        cr_assert_eq(t1->codebook[j], want1[j], "fc1 centroid %d: %g", j, (double)t1->codebook[j]);
        cr_assert_eq(t2->codebook[j], want2[j], "fc2 centroid %d: %g", j, (double)t2->codebook[j]);
    }
    static const uint8_t idx1[5] = {0, 0, 1, 2, 3}, idx2[4] = {0, 1, 2, 3};
    const uint8_t *i1 = t1->data, *i2 = t2->data;
    for (size_t i = 0; i < 16 * 784; i++) cr_assert_eq(i1[i], idx1[i % 5], "fc1 index %zu", i);
    for (size_t i = 0; i < 160; i++) {
        cr_assert_eq(t2->mask[i], !fc2_pruned(i), "fc2 mask %zu", i);
        cr_assert_eq(i2[i], fc2_pruned(i) ? 0 : idx2[i % 4], "fc2 index %zu", i);
    }
    cr_assert_eq(tensor(c, "fc1.bias")->storage, RF_STORE_DENSE);
    const cJSON *wb = cJSON_GetObjectItemCaseSensitive(met, "weight_bits");
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(wb, "fc2.weight")->valuedouble, 2);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(met, "scheme")->valuestring, "kmeans");
    rf_ckpt_free(c);

    /* mixed precision: fc2 at 3 bits by name, the rest at the default 2 */
    cr_assert_eq(run_quantize(parent, "\"scheme\":\"kmeans\",\"bits\":2,\"layer_bits\":{\"fc2\":3}", "km23", met, &ctx), RF_OK,
                 "%s", rf_ctx_error(&ctx));
    c = read_out("km23");
    t1 = tensor(c, "fc1.weight");
    t2 = tensor(c, "fc2.weight");
    cr_assert_eq(t1->bits, 2);
    cr_assert_eq(t2->bits, 3);
    static const uint8_t idx3[4] = {0, 1, 4, 7};
    i2 = t2->data;
    for (size_t i = 0; i < 160; i++) cr_assert_eq(i2[i], fc2_pruned(i) ? 0 : idx3[i % 4], "fc2 3-bit index %zu", i);
    cr_assert_eq(t2->codebook[1], -1.0f);
    cr_assert_eq(t2->codebook[4], 1.0f);
    cr_assert_eq(t2->codebook[7], 3.0f);
    cr_assert_eq(t2->codebook[2], (float)(-2.0 + 5.0 * 2 / 7), "an empty cluster keeps its initial value");
    rf_ckpt_free(c);

    /* the checkpoint loads as the decoded float model, mask kept */
    char path[160];
    snprintf(path, sizeof path, "%s/km2/model.rckpt", g_dir);
    rf_model *m;
    cr_assert_eq(rf_model_load(&ctx, path, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    const float *w2 = param(m, "fc2.weight");
    for (size_t i = 0; i < 160; i++) cr_assert_eq(w2[i], fc2_pruned(i) ? 0.0f : want2[i % 4]);
    cr_assert_not_null(m->masks);
    rf_model_free(m);
    cJSON_Delete(met);
}

/* fc2's row: -0.7 -0.5 -0.2 0 0.1 0.3 0.6 0.7 repeated, so every group's
 * largest |w| is 0.7 and, symmetric at 4 bits, s = 0.7 / 7 = 0.1 and
 * q = w / s = -7 -5 -2 0 1 3 6 7 (no value near a tie). */
static const float q4_row[8] = {-0.7f, -0.5f, -0.2f, 0.0f, 0.1f, 0.3f, 0.6f, 0.7f};
static const int8_t q4_want[8] = {-7, -5, -2, 0, 1, 3, 6, 7};

static void fill_int4(rf_model *m) {
    const rf_param *p = rf_model_param(m, "fc2.weight");
    for (size_t i = 0; i < p->numel; i++) m->params[p->offset + i] = q4_row[i % 8];
}

Test(qlowbit, int4_values_by_hand_through_the_task_and_back) {
    char parent[128];
    cJSON *met = cJSON_CreateObject();
    quantize_new_parent(MLP(64), fill_int4, 0, "parent4", "\"scheme\":\"int4\",\"group_size\":32", "q4", met, parent);
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_ckpt *c = read_out("q4");
    const rf_ckpt_tensor *t2 = tensor(c, "fc2.weight"), *t1 = tensor(c, "fc1.weight");
    cr_assert_eq(t2->storage, RF_STORE_INT4);
    cr_assert_eq(t2->group_size, 32);
    cr_assert_null(t2->zero_points);
    const int8_t *v = t2->data;
    for (size_t i = 0; i < 640; i++) cr_assert_eq(v[i], q4_want[i % 8], "fc2 value %zu: %d", i, v[i]);
    for (int g = 0; g < 20; g++) cr_assert_eq(t2->scales[g], 0.7f / 7.0f, "group %d scale %g", g, (double)t2->scales[g]);
    /* 784 inputs: no group size of 32, 64 or 128 divides them: one group a row */
    cr_assert_eq(t1->storage, RF_STORE_INT4);
    cr_assert_eq(t1->group_size, 784);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(met, "int4_products")->valuedouble, 2);
    rf_ckpt_free(c);

    /* loaded back: the integer path rebuilt from the file; int4 kernel =
     * its reference bit for bit; the float simulation within a few output
     * steps */
    char path[160];
    snprintf(path, sizeof path, "%s/q4/model.rckpt", g_dir);
    rf_model *m;
    rf_quant *q;
    cr_assert_eq(rf_quant_load(&ctx, path, &m, &q), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_not_null(q);
    cr_assert_eq(rf_quant_layer(q, 1)->bits, 4);
    cr_assert_eq(rf_quant_layer(q, 1)->group_size, 32);
    cr_assert_eq(rf_quant_layer(q, 0)->group_size, 784);
    const float *w2 = param(m, "fc2.weight");
    for (size_t i = 0; i < 640; i++) cr_assert_eq(w2[i], (float)q4_want[i % 8] * (0.7f / 7.0f));
    rf_dataset *tr, *te;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:64", &tr, &te), RF_OK);
    const int B = 16;
    float y[3][16 * 10];
    const rf_qpath paths[3] = {RF_QPATH_INT8, RF_QPATH_INT8_REF, RF_QPATH_FAKE_F32};
    for (int p = 0; p < 3; p++) {
        cr_assert_eq(rf_quant_enable(&ctx, q, m, paths[p]), RF_OK, "%s", rf_ctx_error(&ctx));
        const float *logits;
        cr_assert_eq(rf_model_forward(&ctx, m, tr->x, B, 0, &logits), RF_OK);
        memcpy(y[p], logits, sizeof y[p]);
    }
    cr_assert_eq(memcmp(y[0], y[1], sizeof y[0]), 0, "int4 kernel and reference differ");
    double md = 0, mx = 0;
    for (int i = 0; i < B * 10; i++) { md = fmax(md, fabs(y[0][i] - y[2][i])); mx = fmax(mx, fabs(y[2][i])); }
    cr_assert(md <= 0.05 * mx + 1e-3, "int4 path vs float simulation: %g (max |y| %g)", md, mx);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
    rf_dataset_free(tr);
    rf_dataset_free(te);

    /* mixed: fc1 at 8 bits stays int8 per channel; affine groups of 64 */
    cr_assert_eq(run_quantize(parent, "\"scheme\":\"int4\",\"group_size\":64,\"group_mode\":\"affine\",\"layer_bits\":{\"fc1\":8}",
                              "q48", met, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    c = read_out("q48");
    cr_assert_eq(tensor(c, "fc1.weight")->storage, RF_STORE_INT8);
    t2 = tensor(c, "fc2.weight");
    cr_assert_eq(t2->storage, RF_STORE_INT4);
    cr_assert_eq(t2->group_size, 64);
    cr_assert_not_null(t2->zero_points);
    rf_ckpt_free(c);
    cJSON_Delete(met);
}

/* QAT with int4 groups trains against group fake-quant and converts to the
 * same int4 model. */
Test(qlowbit, int4_qat_runs_and_saves_int4) {
    char parent[128];
    cJSON *met = cJSON_CreateObject();
    quantize_new_parent(MLP(64), NULL, 0, "parentq", "\"scheme\":\"int4\",\"group_size\":64,\"mode\":\"qat\",\"iterations\":4,"
                        "\"batch\":32", "q4qat", met, parent);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(met, "steps")->valuedouble, 4);
    rf_ckpt *c = read_out("q4qat");
    cr_assert_eq(tensor(c, "fc2.weight")->storage, RF_STORE_INT4);
    cr_assert_eq(tensor(c, "fc2.weight")->group_size, 64);
    rf_ckpt_free(c);
    cJSON_Delete(met);
}

/* Centroid fine-tuning by hand: one hook round with SGD (no momentum) moves
 * centroid j by -lr * (sum of the gradients of the kept weights assigned to
 * j), zeroes those weight gradients, and decodes the weights afterwards;
 * a pruned weight's gradient contributes nothing and it stays 0. */
Test(qlowbit, centroid_finetune_step_by_hand) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, MLP(16), &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 1), RF_OK);
    fill_kmeans(m);
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    const rf_param *p2 = rf_model_param(m, "fc2.weight");
    for (size_t i = 0; i < p2->numel; i++) m->masks[p2->offset + i] = fc2_pruned(i) ? 0.0f : 1.0f;
    rf_model_apply_masks(m);
    int *bits = calloc((size_t)m->n_ptensors, sizeof *bits);
    bits[p2 - m->ptensors] = 2;
    rf_share *sh;
    cr_assert_eq(rf_share_new(&ctx, m, bits, 0, &sh), RF_OK, "%s", rf_ctx_error(&ctx));
    free(bits);
    cr_assert_eq(rf_share_count(sh), 1);
    rf_optim_cfg oc;
    rf_optim_cfg_default(&oc, RF_OPT_SGD);
    oc.momentum = 0.0f;
    oc.lr = 0.5f;
    rf_train_hooks h;
    cr_assert_eq(rf_share_hooks(&ctx, sh, &oc, &h), RF_OK);
    /* gradient 0.01 * (i % 4 + 1) on kept weights, 100 on pruned ones */
    memset(m->grads, 0, m->n_params * sizeof(float));
    double sum[4] = {0};
    for (size_t i = 0; i < p2->numel; i++) {
        float g = fc2_pruned(i) ? 100.0f : 0.01f * (float)(i % 4 + 1);
        m->grads[p2->offset + i] = g;
        if (!fc2_pruned(i)) sum[i % 4] += g;
    }
    cr_assert_eq(h.before_step(h.ud, m, 0, 10), RF_OK);
    cr_assert_eq(h.after_backward(h.ud, m, 0), RF_OK);
    const float *cb = rf_share_codebook(sh, 0);
    for (int j = 0; j < 4; j++)
        cr_assert_float_eq(cb[j], km_fc2[j] - 0.5 * sum[j], 1e-6, "centroid %d: %g", j, (double)cb[j]);
    for (size_t i = 0; i < p2->numel; i++) cr_assert_eq(m->grads[p2->offset + i], 0.0f);
    cr_assert_eq(h.after_step(h.ud, m, 0), RF_OK);
    for (size_t i = 0; i < p2->numel; i++)
        cr_assert_eq(m->params[p2->offset + i], fc2_pruned(i) ? 0.0f : cb[i % 4], "weight %zu", i);
    rf_share_free(sh);
    rf_model_free(m);
}

/* Centroid fine-tuning through the task: the saved tensors still hold at
 * most 2^bits values, the parent's mask is kept, the biases trained. */
Test(qlowbit, kmeans_qat_keeps_masks_and_codebook_size) {
    char parent[128];
    cJSON *met = cJSON_CreateObject();
    quantize_new_parent(MLP(16), NULL, 1, "parentk", "\"scheme\":\"kmeans\",\"bits\":3,\"mode\":\"qat\",\"iterations\":6,"
                        "\"batch\":32", "kq", met, parent);
    rf_ctx ctx; rf_ctx_init(&ctx);
    char path[160];
    snprintf(path, sizeof path, "%s/kq/model.rckpt", g_dir);
    rf_model *m, *p;
    cr_assert_eq(rf_model_load(&ctx, path, &m), RF_OK);
    cr_assert_eq(rf_model_load(&ctx, parent, &p), RF_OK);
    const rf_param *w = rf_model_param(m, "fc2.weight");
    float seen[16];
    int ns = 0;
    for (size_t i = 0; i < w->numel; i++) {
        float v = m->params[w->offset + i];
        if (fc2_pruned(i)) { cr_assert_eq(v, 0.0f); cr_assert_eq(m->masks[w->offset + i], 0.0f); continue; }
        int k = 0;
        while (k < ns && seen[k] != v) k++;
        if (k == ns) { cr_assert_lt(ns, 8, "more than 2^3 values in fc2"); seen[ns++] = v; }
    }
    const float *b0 = param(p, "fc2.bias"), *b1 = param(m, "fc2.bias");
    int moved = 0;
    for (int i = 0; i < 10; i++) moved += b0[i] != b1[i];
    cr_assert_gt(moved, 0, "the biases did not train");
    rf_model_free(m);
    rf_model_free(p);
    cJSON_Delete(met);
}

/* Every rejection of the new settings names the key, from the task. */
Test(qlowbit, rejections_from_the_task) {
    char parent[128];
    snprintf(parent, sizeof parent, "%s/parentr.rckpt", g_dir);
    save_parent(MLP(192), NULL, 0, parent);
    static const struct { const char *set, *msg; } bad[] = {
        {"\"scheme\":\"int4\",\"bits\":5", "bits: 5 is outside [2, 4] for scheme int4"},
        {"\"scheme\":\"kmeans\",\"bits\":9", "9 is outside [2, 8]"},
        {"\"scheme\":\"kmeans\",\"bits\":1", "1 is outside [2, 8]"},
        {"\"scheme\":\"int8\",\"bits\":4", "bits: 4 is outside [8, 8] for scheme int8"},
        {"\"scheme\":\"int4\",\"group_size\":48", "group_size: 48 is not 32, 64 or 128"},
        {"\"scheme\":\"kmeans\",\"group_size\":64", "group_size: only scheme int4 takes it"},
        {"\"scheme\":\"kmeans\",\"group_mode\":\"affine\"", "group_mode: only scheme int4 takes it"},
        {"\"layer_bits\":{\"fc1\":4}", "layer_bits: scheme int8 has one width"},
        {"\"scheme\":\"int4\",\"layer_bits\":{\"fc1\":6}", "layer_bits: fc1: 6 is outside [2, 4] (or 8) for scheme int4"},
        {"\"scheme\":\"kmeans\",\"layer_bits\":{\"fc1\":1}", "\"fc1\": 1 is not an integer in [2, 8]"},
        {"\"scheme\":\"kmeans\",\"layer_bits\":{\"fc1\":2.5}", "\"fc1\": 2.5 is not an integer in [2, 8]"},
        {"\"scheme\":\"kmeans\",\"layer_bits\":{\"fc1\":\"x\"}", "expected an integer in [2, 8], got a string"},
        {"\"scheme\":\"int2\"", "\"int2\" is not one of int8, int4, kmeans"},
        /* fc2 has 192 inputs: 32 and 64 divide them, 128 does not */
        {"\"scheme\":\"int4\",\"group_size\":128", "group_size 128 does not divide the rows of fc2.weight (192); 32, 64 would"},
    };
    rf_ctx ctx;
    cJSON *met = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rf_ctx_init(&ctx);
        cr_assert_eq(run_quantize(parent, bad[i].set, "bad", met, &ctx), RF_ERR_INVALID, "accepted %s", bad[i].set);
        cr_assert(strstr(rf_ctx_error(&ctx), bad[i].msg), "%s: message \"%s\" lacks \"%s\"", bad[i].set, rf_ctx_error(&ctx),
                  bad[i].msg);
        cr_assert_null(strchr(rf_ctx_error(&ctx), '\n'), "%s: not one line: %s", bad[i].set, rf_ctx_error(&ctx));
    }
    /* a group size that divides 192 is accepted (fc1's 784: one group a row) */
    rf_ctx_init(&ctx);
    cr_assert_eq(run_quantize(parent, "\"scheme\":\"int4\",\"group_size\":64", "ok", met, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_ckpt *c = read_out("ok");
    cr_assert_eq(tensor(c, "fc2.weight")->group_size, 64);
    cr_assert_eq(tensor(c, "fc1.weight")->group_size, 784);
    rf_ckpt_free(c);
    /* a row shorter than the group is one group: fc2 of MLP(96) at 128 */
    snprintf(parent, sizeof parent, "%s/parent96.rckpt", g_dir);
    save_parent(MLP(96), NULL, 0, parent);
    cr_assert_eq(run_quantize(parent, "\"scheme\":\"int4\",\"group_size\":128", "ok96", met, &ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    c = read_out("ok96");
    cr_assert_eq(tensor(c, "fc2.weight")->group_size, 96);
    rf_ckpt_free(c);
    cJSON_Delete(met);
}

/* The same checks at job validation, naming the experiment. */
Test(qlowbit, rejections_from_a_job_file) {
    static const struct { const char *exp, *msg; } bad[] = {
        {"\"scheme\":\"int4\",\"bits\":[4,5]", "experiments[0]: bits: 5 is outside [2, 4] for scheme int4"},
        {"\"scheme\":\"kmeans\",\"group_size\":64", "experiments[0]: group_size: only scheme int4 takes it"},
        {"\"scheme\":\"int4\",\"group_size\":96", "experiments[0]: group_size: 96 is not 32, 64 or 128"},
        {"\"scheme\":\"kmeans\",\"layer_bits\":{\"conv*\":9}", "layer_bits: \"conv*\": 9 is not an integer in [2, 8]"},
        {"\"prune\":{\"method\":\"magnitude\",\"sparsity\":0.9,\"layer_sparsity\":{\"fc1*\":1.5}}", "expected a rate in [0, 1]"},
        {"\"scheme\":\"kmeans\",\"bits\":[5,9]", "experiments[0].bits[1]: 9 is outside [2, 8]"},
        {"\"scheme\":\"kmeans\",\"bits\":1", "1 is outside [2, 8]"},
        {"\"scheme\":\"int4\",\"layer_bits\":{\"fc1\":5}", "layer_bits: fc1: 5 is outside [2, 4] (or 8) for scheme int4"},
        /* the prune object of a Deep Compression experiment is checked as a prune experiment is */
        {"\"prune\":{\"method\":\"magnitude\",\"sparsity\":0.5,\"nm\":\"4:2\"}", "N > M"},
        {"\"prune\":{\"method\":\"magnitude\",\"sparsity\":0.9,\"nm\":\"2:4\"}", "contradicts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char job[512];
        snprintf(job, sizeof job, "{\"dataset\":\"synthetic:64\",\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"quantize\",%s}]}",
                 bad[i].exp);
        rf_ctx ctx; rf_ctx_init(&ctx);
        rf_job *j = NULL;
        cr_assert_neq(rf_job_parse(&ctx, job, strlen(job), "t", &j), RF_OK, "accepted %s", bad[i].exp);
        cr_assert(strstr(rf_ctx_error(&ctx), bad[i].msg), "%s: \"%s\" lacks \"%s\"", bad[i].exp, rf_ctx_error(&ctx), bad[i].msg);
        cr_assert_null(strchr(rf_ctx_error(&ctx), '\n'), "%s: not one line: %s", bad[i].exp, rf_ctx_error(&ctx));
    }
    /* a valid Deep Compression experiment: train -> prune -> quantize */
    const char *ok = "{\"dataset\":\"synthetic:64\",\"model\":\"lenet-300-100\",\"experiments\":[{\"kind\":\"quantize\","
                     "\"scheme\":\"kmeans\",\"mode\":\"qat\",\"bits\":[5,6],\"prune\":{\"method\":\"magnitude\",\"sparsity\":0.9,"
                     "\"scope\":\"layer\",\"layer_sparsity\":{\"fc1.weight\":0.92}}}]}";
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_job *j = NULL;
    cr_assert_eq(rf_job_parse(&ctx, ok, strlen(ok), "t", &j), RF_OK, "%s", rf_ctx_error(&ctx));
    int kinds[RF_JOB_KIND_COUNT_] = {0};
    for (int i = 0; i < j->n_tasks; i++) kinds[j->tasks[i].kind]++;
    cr_assert_eq(kinds[RF_JOB_TRAIN], 1);
    cr_assert_eq(kinds[RF_JOB_PRUNE], 1, "the two bit widths share one pruned parent");
    cr_assert_eq(kinds[RF_JOB_QUANTIZE], 2);
    rf_job_free(j);
}
