/* Models as DAGs: chain specs against the same specs with every input
 * spelled out, rf_model_create_for, the CIFAR presets against their
 * PyTorch reference implementations (tests/unit/models_ref.py: every
 * tensor name and size, at 32x32x3 and 28x28x1), logits of PyTorch models
 * imported from safetensors and of raffle models exported to PyTorch,
 * batch-norm folding, and layer collapse along branches. Gradients of the
 * DAG layers are checked in test_gradcheck.c, its spec errors in
 * test_nn.c. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/model_names.h"
#include "raffle/nn.h"
#include "raffle/safetensors.h"
#include "raffle/train.h"
#include "nn_test_util.h"

#define PY "/usr/bin/python3"
#define REF "tests/unit/models_ref.py"

static rf_model *build(const char *spec) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s: %s", spec, rf_ctx_error(&ctx));
    return m;
}

static rf_model *preset_for(const char *name, int c, int h, int w, uint64_t seed) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create_for(&ctx, name, c, h, w, 10, &m), RF_OK, "%s: %s", name, rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, seed), RF_OK);
    return m;
}


/* ---- chain specs: default inputs are the explicit chain, bit for bit ------- */

/* The spec with "inputs" added to every layer that lacks it: the previous
 * layer's name (or "input"), and names on the layers without one. */
static char *explicit_inputs(const char *spec) {
    cJSON *root = cJSON_Parse(spec);
    cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    char prev[64] = "input";
    int i = 0;
    for (cJSON *e = layers->child; e; e = e->next, i++) {
        cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
        char dflt[32];
        snprintf(dflt, sizeof dflt, "layers.%d", i);   /* the default name, so parameter names stay */
        if (!n) n = cJSON_AddStringToObject(e, "name", dflt);
        if (!cJSON_GetObjectItemCaseSensitive(e, "inputs")) cJSON_AddStringToObject(e, "inputs", prev);
        snprintf(prev, sizeof prev, "%s", n->valuestring);
    }
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return txt;
}

/* Forward in both modes, backward with the input gradient: every output,
 * gradient and running statistic compared bit for bit. */
static void same_run(rf_model *a, rf_model *b, int batch) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(a->n_params, b->n_params);
    memcpy(b->params, a->params, a->n_params * sizeof(float));
    memcpy(b->buffers, a->buffers, a->n_buffers * sizeof(float));
    b->dropout_rng = a->dropout_rng;
    float *x = randn((size_t)batch * in_numel(a), 11);
    float *dy = randn((size_t)batch * a->n_classes, 12);
    for (int training = 0; training < 2; training++) {
        const float *ya, *yb;
        cr_assert_eq(rf_model_forward(&ctx, a, x, batch, training, &ya), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(rf_model_forward(&ctx, b, x, batch, training, &yb), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(memcmp(ya, yb, (size_t)batch * a->n_classes * sizeof(float)), 0, "logits (training=%d)", training);
        rf_model_zero_grad(a); rf_model_zero_grad(b);
        a->input_grad = b->input_grad = training;
        cr_assert_eq(rf_model_backward(&ctx, a, dy), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(rf_model_backward(&ctx, b, dy), RF_OK, "%s", rf_ctx_error(&ctx));
        cr_assert_eq(memcmp(a->grads, b->grads, a->n_params * sizeof(float)), 0, "grads (training=%d)", training);
        if (training) cr_assert_eq(memcmp(a->dinput, b->dinput, (size_t)batch * in_numel(a) * sizeof(float)), 0);
        cr_assert_eq(memcmp(a->buffers, b->buffers, a->n_buffers * sizeof(float)), 0);
    }
    free(x); free(dy);
}

Test(models, chain_specs_are_explicit_chains) {
    const char *names[] = {"lenet-300-100", "lenet-5", "lenet-5-caffe", "conv-2", "mlp-1200x2", "vit-tiny"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        rf_model *a = preset_for(names[i], 1, 28, 28, 5);
        char *spec = explicit_inputs(a->spec_json);
        rf_model *b = build(spec);
        cr_assert_eq(b->n_layers, a->n_layers);
        for (int l = 0; l < a->n_layers; l++) {
            cr_assert_eq(a->layers[l].n_inputs, 1, "%s layer %d", names[i], l);
            cr_assert_eq(a->layers[l].inputs[0], l - 1, "%s layer %d", names[i], l);
            cr_assert_eq(b->layers[l].inputs[0], l - 1);
        }
        same_run(a, b, 3);
        cJSON_free(spec);
        rf_model_free(a); rf_model_free(b);
    }
    /* residual (from) and a two-input add are the same sum */
    rf_model *a = build("{\"input\":[6],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":6},{\"type\":\"tanh\"},"
                        "{\"type\":\"residual\",\"from\":\"fc\"},{\"type\":\"residual\",\"from\":-1},"
                        "{\"type\":\"linear\",\"out\":4}]}");
    rf_model *b = build("{\"input\":[6],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":6},{\"type\":\"tanh\"},"
                        "{\"type\":\"add\",\"inputs\":[1,\"fc\"]},{\"type\":\"add\",\"inputs\":[2,\"input\"]},"
                        "{\"type\":\"linear\",\"out\":4}]}");
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_model_init(&ctx, a, 3), RF_OK);
    same_run(a, b, 4);
    rf_model_free(a); rf_model_free(b);
}

Test(models, create_for_reshapes_presets_and_checks_spec_files) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    /* a preset at another shape and with more classes */
    cr_assert_eq(rf_model_create_for(&ctx, "vgg-11", 1, 28, 28, 100, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_expect_eq(m->n_classes, 100);
    cr_expect_eq(m->input.d[0], 1);
    cr_expect_eq(m->layers[m->n_layers - 1].out_size, 100u);
    rf_model_free(m);
    /* fewer classes in the data than the preset has: the preset's 10 stay */
    cr_assert_eq(rf_model_create_for(&ctx, "lenet-5", 1, 28, 28, 7, &m), RF_OK);
    cr_expect_eq(m->n_classes, 10);
    rf_model *p;
    cr_assert_eq(rf_model_create(&ctx, "lenet-5", &p), RF_OK);
    cr_expect_str_eq(m->spec_json, p->spec_json, "same shape: the preset unchanged");
    rf_model_free(m); rf_model_free(p);
    /* a spec file must already match */
    char path[] = "/tmp/raffle_models_specXXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *spec = "{\"input\":[1,28,28],\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":10}]}";
    cr_assert_eq(write(fd, spec, strlen(spec)), (ssize_t)strlen(spec));
    close(fd);
    cr_expect_eq(rf_model_create_for(&ctx, path, 1, 28, 28, 10, &m), RF_OK);
    rf_model_free(m);
    cr_expect_eq(rf_model_create_for(&ctx, path, 3, 32, 32, 10, &m), RF_ERR_SHAPE);
    cr_expect(strstr(rf_ctx_error(&ctx), "the spec takes 1x28x28 inputs, the data has 3x32x32") != NULL, "%s",
              rf_ctx_error(&ctx));
    cr_expect_null(m);
    unlink(path);
}

/* ---- presets against the PyTorch reference implementations ------------------ */
static int have_torch(void) { return system(PY " -c 'import torch' >/dev/null 2>&1") == 0; }
#define NEED_TORCH() \
    do { if (!have_torch()) cr_skip_test("PyTorch missing for " PY " (apt-get install python3-torch)"); } while (0)

static char *slurp_cmd(const char *cmd) {
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t r; (r = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += r;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
    return buf;
}

Test(models, presets_match_pytorch_tensor_by_tensor, .timeout = 120) {
    NEED_TORCH();
    char *txt = slurp_cmd(PY " " REF " counts");
    cJSON *ref = cJSON_Parse(txt);
    cr_assert_not_null(ref);
    static const struct { const char *name; size_t params3, params1; } want[] = {
        {"resnet-20", 269722, 269434}, {"resnet-32", 464154, 0}, {"resnet-56", 853018, 0},
        {"resnet-18", 0, 0}, {"vgg-11", 9231114, 0}, {"vgg-16", 14728266, 0}, {"vgg-19", 20040522, 0},
    };
    static const int shapes[2][3] = {{3, 32, 32}, {1, 28, 28}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        for (int s = 0; s < 2; s++) {
            char key[32];
            snprintf(key, sizeof key, "%dx%dx%d", shapes[s][0], shapes[s][1], shapes[s][2]);
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, want[i].name), key);
            cr_assert_not_null(r, "%s %s", want[i].name, key);
            rf_model *m = preset_for(want[i].name, shapes[s][0], shapes[s][1], shapes[s][2], 1);
            size_t expect = s == 0 ? want[i].params3 : want[i].params1;
            if (expect) cr_expect_eq(m->n_params, expect, "%s %s: %zu parameters", want[i].name, key, m->n_params);
            /* parameters: same names, same sizes, nothing extra on either side */
            const cJSON *rp = cJSON_GetObjectItemCaseSensitive(r, "params");
            cr_expect_eq(cJSON_GetArraySize(rp), m->n_ptensors, "%s %s: tensor count", want[i].name, key);
            size_t total = 0;
            for (int t = 0; t < m->n_ptensors; t++) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(rp, m->ptensors[t].name);
                cr_expect_not_null(n, "%s %s: PyTorch has no %s", want[i].name, key, m->ptensors[t].name);
                if (n) cr_expect_eq((size_t)n->valuedouble, m->ptensors[t].numel, "%s", m->ptensors[t].name);
            }
            for (const cJSON *n = rp->child; n; n = n->next) total += (size_t)n->valuedouble;
            cr_expect_eq(total, m->n_params, "%s %s: PyTorch %zu, raffle %zu", want[i].name, key, total, m->n_params);
            /* buffers: batch-norm running statistics under PyTorch's names */
            const cJSON *rb = cJSON_GetObjectItemCaseSensitive(r, "buffers");
            int nb = 0;
            for (int l = 0; l < m->n_layers; l++) {
                rf_io_buf_slice b[2];
                int k = rf_io_layer_buffers(&m->layers[l], b);
                for (int j = 0; j < k; j++, nb++) {
                    const cJSON *n = cJSON_GetObjectItemCaseSensitive(rb, b[j].name);
                    cr_expect_not_null(n, "%s: PyTorch has no buffer %s", want[i].name, b[j].name);
                    if (n) cr_expect_eq((size_t)n->valuedouble, b[j].numel, "%s", b[j].name);
                }
            }
            cr_expect_eq(nb, cJSON_GetArraySize(rb), "%s %s: buffer count", want[i].name, key);
            /* and the forward runs at this size */
            float *x = randn(2 * in_numel(m), 4);
            const float *y;
            rf_ctx ctx; rf_ctx_init(&ctx);
            cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 1, &y), RF_OK, "%s", rf_ctx_error(&ctx));
            for (int k = 0; k < 20; k++) cr_expect(isfinite(y[k]));
            free(x);
            rf_model_free(m);
        }
    cJSON_Delete(ref);
    free(txt);
}

/* ---- safetensors with PyTorch names: logits both ways ----------------------- */
static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    float *v = malloc(n * sizeof(float));
    cr_assert_eq(fread(v, sizeof(float), n, f), n, "%s: short", path);
    fclose(f);
    return v;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) { d = fmax(d, fabs((double)a[i] - b[i])); s = fmax(s, fabs((double)b[i])); }
    if (scale) *scale = s;
    return d;
}

/* PyTorch model (random weights, batch-norm statistics far from 0/1, eval
 * mode) -> safetensors -> raffle: the same logits; then raffle -> checkpoint
 * -> safetensors -> PyTorch (strict load but num_batches_tracked): again. */
static void logits_roundtrip(const char *name, int c, int h, int w) {
    char dir[] = "/tmp/raffle_models_XXXXXX", cmd[512], path[600];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, PY " " REF " export %s %d %d %d 7 %s", name, c, h, w, dir);
    free(slurp_cmd(cmd));
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = preset_for(name, c, h, w, 99);   /* other weights, overwritten by the import */
    rf_safetensors *st;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(rf_safetensors_read(&ctx, path, &st), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_load_safetensors(&ctx, m, st), RF_OK, "%s: %s", name, rf_ctx_error(&ctx));
    rf_safetensors_free(st);
    const size_t B = 4, K = 10;
    snprintf(path, sizeof path, "%s/x.bin", dir);
    float *x = read_floats(path, B * in_numel(m));
    snprintf(path, sizeof path, "%s/logits.bin", dir);
    float *want = read_floats(path, B * K);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, (int)B, 0, &y), RF_OK, "%s", rf_ctx_error(&ctx));
    double scale, d = max_abs_diff(y, want, B * K, &scale);
    cr_expect_lt(d, 1e-5, "%s %dx%dx%d: PyTorch -> raffle logits differ by %.3g (largest |logit| %.3g)", name, c, h, w, d,
                 scale);
    cr_log_info("%s %dx%dx%d: PyTorch -> raffle logits max |diff| %.2e (largest |logit| %.2f)", name, c, h, w, d, scale);
    /* back: raffle's checkpoint tensors as safetensors, loaded by PyTorch */
    rf_ckpt *ck;
    unsigned char *buf;
    size_t len;
    cr_assert_eq(rf_model_to_ckpt(&ctx, m, NULL, &ck), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_to_safetensors(&ctx, ck, &buf, &len), RF_OK, "%s", rf_ctx_error(&ctx));
    snprintf(path, sizeof path, "%s/raffle.safetensors", dir);
    cr_assert_eq(rf_write_file_atomic(&ctx, path, buf, len), RF_OK);
    snprintf(cmd, sizeof cmd, PY " " REF " check %s %d %d %d %s", name, c, h, w, dir);
    free(slurp_cmd(cmd));
    snprintf(path, sizeof path, "%s/logits_torch.bin", dir);
    float *back = read_floats(path, B * K);
    d = max_abs_diff(back, y, B * K, NULL);
    cr_expect_lt(d, 1e-5, "%s: raffle -> PyTorch logits differ by %.3g", name, d);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
    rf_free(buf);
    rf_ckpt_free(ck);
    free(x); free(want); free(back);
    rf_model_free(m);
}

Test(models, pytorch_resnet20_logits_match, .timeout = 120) {
    NEED_TORCH();
    logits_roundtrip("resnet-20", 3, 32, 32);
    logits_roundtrip("resnet-20", 1, 28, 28);
}

Test(models, pytorch_resnet18_and_vgg11_logits_match, .timeout = 120) {
    NEED_TORCH();
    logits_roundtrip("resnet-18", 3, 32, 32);   /* option B projections */
    logits_roundtrip("vgg-11", 3, 32, 32);      /* open_lth's AvgPool2d(2) against GAP */
    logits_roundtrip("vgg-11", 1, 28, 28);
}

/* ---- batch norm folded into the conv / linear before it --------------------- */
static void randomise_bn(rf_model *m, uint64_t seed) {
    rf_rng r; rf_rng_init(&r, seed, 5);
    for (int t = 0; t < m->n_ptensors; t++) {
        const rf_param *p = &m->ptensors[t];
        if (p->role == RF_P_WEIGHT) continue;
        for (size_t i = 0; i < p->numel; i++) m->params[p->offset + i] = 0.5f + rf_rng_uniform(&r);
    }
    for (int l = 0; l < m->n_layers; l++) {
        const rf_layer *L = &m->layers[l];
        if (L->type != RF_L_BATCHNORM) continue;
        int C = L->in.d[0];
        for (int c = 0; c < C; c++) {
            m->buffers[L->buf_offset + c] = 0.3f * rf_rng_normal(&r);
            m->buffers[L->buf_offset + C + c] = 0.5f + 1.5f * rf_rng_uniform(&r);
        }
    }
}

static int count_type(const rf_model *m, rf_layer_type t) {
    int n = 0;
    for (int l = 0; l < m->n_layers; l++) n += m->layers[l].type == t;
    return n;
}

static void fold_check(rf_model *m, int expect_folded, int expect_left) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *f;
    int nf;
    cr_assert_eq(rf_model_fold_bn(&ctx, m, &f, &nf), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_expect_eq(nf, expect_folded);
    cr_expect_eq(count_type(f, RF_L_BATCHNORM), expect_left);
    cr_expect_eq(f->n_layers, m->n_layers - expect_folded);
    const int B = 3;
    float *x = randn((size_t)B * in_numel(m), 8);
    const float *y0, *y1;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &y0), RF_OK, "%s", rf_ctx_error(&ctx));
    float *keep = malloc((size_t)B * m->n_classes * sizeof(float));
    memcpy(keep, y0, (size_t)B * m->n_classes * sizeof(float));
    cr_assert_eq(rf_model_forward(&ctx, f, x, B, 0, &y1), RF_OK, "%s", rf_ctx_error(&ctx));
    double scale, d = max_abs_diff(y1, keep, (size_t)B * m->n_classes, &scale);
    cr_expect_lt(d, 1e-4 * fmax(1.0, scale), "folded logits differ by %.3g (scale %.3g)", d, scale);
    cr_log_info("fold: %d batch norms, logits max |diff| %.2e (largest |logit| %.2f)", nf, d, scale);
    /* masks: the same zero pattern, and the folded weights keep exact zeros */
    if (m->masks) {
        for (int t = 0; t < f->n_ptensors; t++) {
            const rf_param *p = &f->ptensors[t], *q = rf_model_param(m, p->name);
            if (!q || !q->prunable) continue;
            cr_expect_eq(memcmp(f->masks + p->offset, m->masks + q->offset, p->numel * sizeof(float)), 0, "%s", p->name);
            for (size_t i = 0; i < p->numel; i++)
                if (f->masks[p->offset + i] == 0.0f) cr_expect_eq(f->params[p->offset + i], 0.0f);
        }
    }
    /* the folded model is a model: it clones, and its spec builds again */
    rf_model *c;
    cr_assert_eq(rf_model_clone(&ctx, f, &c), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model_free(c);
    free(x); free(keep);
    rf_model_free(f);
}

Test(models, fold_batchnorm) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* resnet-20: 19 conv-BN pairs, option-A adds read the BN outputs */
    rf_model *m = preset_for("resnet-20", 3, 32, 32, 2);
    randomise_bn(m, 1);
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    for (size_t i = 0; i < m->n_params; i += 3) m->masks[i] = 0.0f;   /* a pruned model */
    for (int t = 0; t < m->n_ptensors; t++)
        if (!m->ptensors[t].prunable)
            for (size_t i = 0; i < m->ptensors[t].numel; i++) m->masks[m->ptensors[t].offset + i] = 1.0f;
    rf_model_apply_masks(m);
    fold_check(m, 19, 0);
    rf_model_free(m);
    /* resnet-18's option-B projections and VGG's convs with a bias */
    m = preset_for("resnet-18", 1, 28, 28, 2);
    randomise_bn(m, 2);
    fold_check(m, 20, 0);
    rf_model_free(m);
    m = preset_for("vgg-11", 1, 28, 28, 2);
    randomise_bn(m, 3);
    fold_check(m, 8, 0);
    rf_model_free(m);
    /* what stays: BN on the input, BN after a ReLU, BN after a conv read elsewhere;
     * a linear + BN on a flat vector folds, and unnamed layers keep their names */
    m = build("{\"input\":[2,6,6],\"layers\":[{\"type\":\"batchnorm\"},"
              "{\"type\":\"conv2d\",\"name\":\"c\",\"out\":3,\"kernel\":3,\"padding\":1},{\"type\":\"relu\"},"
              "{\"type\":\"batchnorm\"},{\"type\":\"conv2d\",\"out\":3,\"kernel\":3,\"padding\":1,\"bias\":0},"
              "{\"type\":\"batchnorm\",\"name\":\"bn\"},{\"type\":\"add\",\"inputs\":[\"bn\",4]},"
              "{\"type\":\"conv2d\",\"out\":4,\"kernel\":3,\"padding\":1},{\"type\":\"batchnorm\"},"
              "{\"type\":\"gap\"},{\"type\":\"linear\",\"out\":4},{\"type\":\"batchnorm\"},"
              "{\"type\":\"residual\",\"from\":9},{\"type\":\"linear\",\"out\":3}]}");
    cr_assert_eq(rf_model_init(&ctx, m, 4), RF_OK);
    randomise_bn(m, 4);
    fold_check(m, 2, 3);
    rf_model *f;
    cr_assert_eq(rf_model_fold_bn(&ctx, m, &f, NULL), RF_OK);
    cr_expect_not_null(rf_model_param(f, "layers.7.bias"), "the conv that absorbed layers.8 gained a bias");
    cr_expect_not_null(rf_model_param(f, "layers.13.weight"), "unnamed layers keep their names");
    rf_model_free(f);
    rf_model_free(m);
}

/* ---- layer collapse along branches ------------------------------------------ */
static void zero_param(rf_model *m, const char *name) {
    const rf_param *p = rf_model_param(m, name);
    cr_assert_not_null(p, "%s", name);
    memset(m->masks + p->offset, 0, p->numel * sizeof(float));
}

static void expect_collapsed(const rf_model *m, const char *const *names, int n) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    unsigned char *col = malloc((size_t)m->n_layers);
    cr_assert_eq(rf_model_collapsed(&ctx, m, m->masks, col), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int l = 0; l < m->n_layers; l++) {
        int want = 0;
        for (int k = 0; k < n; k++) want |= strcmp(m->layers[l].name, names[k]) == 0;
        cr_expect_eq(col[l], want, "%s: collapsed %d, expected %d", m->layers[l].name, col[l], want);
    }
    free(col);
}

Test(models, collapse_follows_branches) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = preset_for("resnet-20", 3, 32, 32, 1);
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    expect_collapsed(m, NULL, 0);
    /* One block's branch cut: its two convs carry nothing, the shortcut carries on. */
    zero_param(m, "layer1.1.conv1.weight");
    expect_collapsed(m, (const char *const[]){"layer1.1.conv1", "layer1.1.conv2"}, 2);
    /* Cut without an empty tensor: conv1 keeps only output channel 3, conv2
     * reads only input channel 5: no path through either. */
    const rf_param *c1 = rf_model_param(m, "layer2.1.conv1.weight"), *c2 = rf_model_param(m, "layer2.1.conv2.weight");
    for (size_t i = 0; i < c1->numel; i++) m->masks[c1->offset + i] = i / (32 * 9) == 3;
    for (size_t i = 0; i < c2->numel; i++) m->masks[c2->offset + i] = (i / 9) % 32 == 5;
    expect_collapsed(m, (const char *const[]){"layer1.1.conv1", "layer1.1.conv2", "layer2.1.conv1", "layer2.1.conv2"}, 4);
    /* ... but with channel 5 of conv1 kept too, both carry a signal again */
    for (size_t i = 0; i < c1->numel; i++) m->masks[c1->offset + i] = i / (32 * 9) == 3 || i / (32 * 9) == 5;
    expect_collapsed(m, (const char *const[]){"layer1.1.conv1", "layer1.1.conv2"}, 2);
    /* The option-A shortcut of layer2.0 places stage 1's 16 channels at
     * 8..23 of 32 (zeros elsewhere). With layer2.0's branch cut, only those
     * carry a signal: layer2.1.conv1 reading only input channels 0..7 is
     * cut off (and layer2.1.conv2 after it); reading 0..8 it is not. */
    zero_param(m, "layer2.0.conv1.weight");
    for (size_t i = 0; i < c1->numel; i++) m->masks[c1->offset + i] = (i / 9) % 32 < 8;
    expect_collapsed(m, (const char *const[]){"layer1.1.conv1", "layer1.1.conv2", "layer2.0.conv1", "layer2.0.conv2",
                                              "layer2.1.conv1", "layer2.1.conv2"}, 6);
    /* keep input channel 8 (the shortcut's first real channel): layer2.1 lives */
    for (size_t i = 0; i < c1->numel; i++) m->masks[c1->offset + i] = (i / 9) % 32 < 9;
    for (size_t i = 0; i < c2->numel; i++) m->masks[c2->offset + i] = 1.0f;
    expect_collapsed(m, (const char *const[]){"layer1.1.conv1", "layer1.1.conv2", "layer2.0.conv1", "layer2.0.conv2"}, 4);
    /* The classifier cut: every layer is off the path to the output. */
    zero_param(m, "linear.weight");
    const char *all[32];
    int n = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].type == RF_L_CONV2D || m->layers[l].type == RF_L_LINEAR) all[n++] = m->layers[l].name;
    expect_collapsed(m, all, n);
    rf_model_free(m);

    /* concat: a dead branch beside a live one */
    m = build("{\"input\":[2,6,6],\"layers\":[{\"type\":\"conv2d\",\"name\":\"a\",\"out\":3,\"kernel\":3,\"padding\":1},"
              "{\"type\":\"conv2d\",\"name\":\"b\",\"inputs\":\"input\",\"out\":2,\"kernel\":1},"
              "{\"type\":\"concat\",\"inputs\":[\"a\",\"b\"]},{\"type\":\"conv2d\",\"name\":\"c\",\"out\":4,\"kernel\":1},"
              "{\"type\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}");
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    const rf_param *c = rf_model_param(m, "c.weight");   /* [4, 5, 1, 1]: inputs 0-2 from a, 3-4 from b */
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 5; i++) m->masks[c->offset + o * 5 + i] = i >= 3;
    expect_collapsed(m, (const char *const[]){"a"}, 1);
    rf_model_free(m);
}
