/* nn: presets (shapes, parameter counts cross-checked with PyTorch), every
 * spec rejection path, deterministic initialisation, masks, clone, the
 * inference GEMM override, conv against a direct convolution, batch norm
 * statistics, dropout, hooks, non-finite detection and allocation failures.
 * Gradients are checked in test_gradcheck.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raffle/nn.h"
#include "nn/layers.h"   /* the vectorised GELU kernels */
#include "nn_test_util.h"

static rf_model *make(const char *name_or_spec, uint64_t seed) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    rf_status s = name_or_spec[0] == '{' ? rf_model_from_spec(&ctx, name_or_spec, &m)
                                        : rf_model_create(&ctx, name_or_spec, &m);
    cr_assert_eq(s, RF_OK, "%s: %s", name_or_spec, rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, seed), RF_OK);
    return m;
}


/* Parameter counts: PyTorch's sum(p.numel()) for the same architectures
 * (python3-torch 1.13, script in docs/nn.md). */
Test(nn, preset_parameter_counts_and_shapes) {
    static const struct { const char *name; size_t params; int layers; } want[] = {
        {"lenet-300-100", 266610, 6}, {"conv-2", 3317450, 11}, {"conv-4", 1933258, 16},
        {"conv-6", 1802698, 21},      {"lenet-5", 61706, 12},  {"mlp-1200x2", 2395210, 9},
        {"mlp-800x2", 1276810, 6},    {"vit-tiny", 205066, 8},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        rf_model *m = make(want[i].name, 1);
        cr_expect_eq(m->n_params, want[i].params, "%s: %zu params", want[i].name, m->n_params);
        cr_expect_eq(m->n_layers, want[i].layers, "%s", want[i].name);
        cr_expect_eq(m->n_classes, 10);
        cr_expect_eq(in_numel(m), 784u);
        size_t sum = 0;
        for (int t = 0; t < m->n_ptensors; t++) sum += m->ptensors[t].numel;
        cr_expect_eq(sum, m->n_params);
        float *x = randn(3 * 784, 5);
        rf_ctx ctx; rf_ctx_init(&ctx);
        const float *y;
        cr_assert_eq(rf_model_forward(&ctx, m, x, 3, 0, &y), RF_OK, "%s", rf_ctx_error(&ctx));
        for (int k = 0; k < 30; k++) cr_expect(isfinite(y[k]));
        cr_expect_eq(rf_model_first_nonfinite(m), -1);
        free(x);
        rf_model_free(m);
    }
    cr_expect_null(rf_model_preset("lenet-301"));
}

static void expect_param(const rf_model *m, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const rf_param *p = rf_model_param(m, name);
    cr_assert_not_null(p, "missing %s", name);
    int64_t d[4] = {d0, d1, d2, d3};
    cr_expect_eq(p->ndim, ndim, "%s ndim", name);
    for (int i = 0; i < ndim; i++) cr_expect_eq(p->shape[i], d[i], "%s dim %d", name, i);
}

Test(nn, pytorch_style_names) {
    rf_model *v = make("vit-tiny", 0);
    expect_param(v, "patch_embed.proj.weight", 4, 64, 1, 7, 7);
    expect_param(v, "patch_embed.proj.bias", 1, 64, 0, 0, 0);
    expect_param(v, "cls_token", 3, 1, 1, 64, 0);
    expect_param(v, "pos_embed", 3, 1, 17, 64, 0);
    expect_param(v, "blocks.0.norm1.weight", 1, 64, 0, 0, 0);
    expect_param(v, "blocks.3.attn.qkv.weight", 2, 192, 64, 0, 0);
    expect_param(v, "blocks.2.attn.proj.weight", 2, 64, 64, 0, 0);
    expect_param(v, "blocks.1.mlp.fc1.weight", 2, 256, 64, 0, 0);
    expect_param(v, "blocks.1.mlp.fc2.bias", 1, 64, 0, 0, 0);
    expect_param(v, "norm.bias", 1, 64, 0, 0, 0);
    expect_param(v, "head.weight", 2, 10, 64, 0, 0);
    cr_expect(rf_model_param(v, "head.weight")->is_output);
    cr_expect(!rf_model_param(v, "blocks.0.mlp.fc1.weight")->is_output);
    cr_expect(rf_model_param(v, "blocks.0.attn.qkv.weight")->prunable);
    cr_expect(!rf_model_param(v, "pos_embed")->prunable);
    cr_expect(!rf_model_param(v, "blocks.0.norm1.weight")->prunable);
    cr_expect_null(rf_model_param(v, "fc1.weight"));
    rf_model_free(v);
    rf_model *l = make("lenet-5", 0);
    expect_param(l, "conv1.weight", 4, 6, 1, 5, 5);
    expect_param(l, "conv2.weight", 4, 16, 6, 5, 5);
    expect_param(l, "fc1.weight", 2, 120, 400, 0, 0);
    cr_expect(rf_model_param(l, "fc3.bias")->is_output);
    rf_model_free(l);
}

/* ---- spec rejection paths: status and the words the message must contain -- */
Test(nn, spec_errors_name_the_layer) {
    static const struct { const char *spec; rf_status st; const char *msg; } cases[] = {
        {"{\"layers\":[", RF_ERR_SPEC, "invalid JSON"},
        {"[1,2]", RF_ERR_SPEC, "must be a JSON object"},
        {"{\"layers\":[{\"type\":\"relu\"}],\"colour\":1}", RF_ERR_SPEC, "spec: unknown key \"colour\""},
        {"{\"input\":[1,28,28]}", RF_ERR_SPEC, "\"layers\" must be a non-empty array"},
        {"{\"layers\":[]}", RF_ERR_SPEC, "non-empty array"},
        {"{\"input\":[0,28,28],\"layers\":[{\"type\":\"relu\"}]}", RF_ERR_SPEC, "input[0] must be a positive integer"},
        {"{\"input\":[1,2,3,4],\"layers\":[{\"type\":\"relu\"}]}", RF_ERR_SPEC, "\"input\" must be"},
        {"{\"init\":\"zeros\",\"layers\":[{\"type\":\"relu\"}]}", RF_ERR_SPEC, "\"init\" must be one of"},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"lineer\",\"out\":3}]}", RF_ERR_SPEC,
         "layers[1]: unknown layer type \"lineer\""},
        {"{\"layers\":[3]}", RF_ERR_SPEC, "layers[0]: must be an object"},
        {"{\"layers\":[{\"out\":3}]}", RF_ERR_SPEC, "layers[0]: missing \"type\""},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":10,\"outs\":3}]}", RF_ERR_SPEC,
         "layers[1] linear: unknown key \"outs\""},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\"}]}", RF_ERR_SPEC, "layers[1] linear: missing \"out\""},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":2.5}]}", RF_ERR_SPEC,
         "layers[1] linear: \"out\" must be an integer"},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":-3}]}", RF_ERR_SPEC,
         "layers[1] linear: \"out\" = -3 out of range"},
        {"{\"layers\":[{\"type\":\"conv2d\",\"out\":6,\"kernel\":5,\"padding\":2},{\"type\":\"maxpool\",\"kernel\":2},"
         "{\"type\":\"conv2d\",\"out\":16,\"kernel\":5},{\"type\":\"maxpool\",\"kernel\":2},{\"type\":\"flatten\"},"
         "{\"type\":\"linear\",\"in\":784,\"out\":10}]}",
         RF_ERR_SHAPE, "layers[5] linear: expects 784 inputs, gets 400"},
        {"{\"layers\":[{\"type\":\"linear\",\"out\":10}]}", RF_ERR_SHAPE,
         "layers[0] linear: expects a token sequence or a flat vector, gets an image 1x28x28"},
        {"{\"layers\":[{\"type\":\"conv2d\",\"out\":4,\"kernel\":31}]}", RF_ERR_SHAPE,
         "layers[0] conv2d: kernel 31x31 larger than padded input 28x28"},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"conv2d\",\"out\":4}]}", RF_ERR_SHAPE,
         "layers[1] conv2d: expects an image, gets a flat vector"},
        {"{\"layers\":[{\"type\":\"maxpool\",\"kernel\":2,\"padding\":3}]}", RF_ERR_SPEC,
         "layers[0] maxpool: \"padding\" = 3 out of range [0, 1]"},
        {"{\"layers\":[{\"type\":\"maxpool\",\"kernel\":4,\"padding\":1},{\"type\":\"maxpool\",\"kernel\":9}]}",
         RF_ERR_SHAPE, "layers[1] maxpool: window 9 larger"},
        {"{\"classes\":10,\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":5}]}", RF_ERR_SHAPE,
         "layers[1] linear: outputs 5 values per sample, spec says 10 classes"},
        {"{\"layers\":[{\"type\":\"dropout\",\"p\":1.5}]}", RF_ERR_SPEC, "layers[0] dropout: \"p\" = 1.5 out of range"},
        {"{\"layers\":[{\"type\":\"batchnorm\",\"eps\":\"small\"}]}", RF_ERR_SPEC, "layers[0] batchnorm: \"eps\" must be a number"},
        {"{\"layers\":[{\"type\":\"residual\"}]}", RF_ERR_SPEC, "layers[0] residual: missing \"from\""},
        {"{\"layers\":[{\"type\":\"relu\"},{\"type\":\"residual\",\"from\":\"fc9\"}]}", RF_ERR_SPEC,
         "layers[1] residual: \"from\": no earlier layer named \"fc9\""},
        {"{\"layers\":[{\"type\":\"relu\"},{\"type\":\"residual\",\"from\":1}]}", RF_ERR_SPEC,
         "layers[1] residual: \"from\" = 1 out of range"},
        {"{\"layers\":[{\"type\":\"maxpool\"},{\"type\":\"residual\",\"from\":-1}]}", RF_ERR_SHAPE,
         "layers[1] residual: source (model input) has shape 1x28x28, input is 1x14x14"},
        {"{\"layers\":[{\"type\":\"patch_embed\",\"patch\":5,\"dim\":8}]}", RF_ERR_SHAPE,
         "layers[0] patch_embed: patch 5 does not divide the 28x28 input"},
        {"{\"layers\":[{\"type\":\"patch_embed\",\"patch\":7}]}", RF_ERR_SPEC, "layers[0] patch_embed: missing \"dim\""},
        {"{\"layers\":[{\"type\":\"patch_embed\",\"patch\":7,\"dim\":8},{\"type\":\"attention\",\"heads\":3}]}",
         RF_ERR_SHAPE, "layers[1] attention: 3 heads do not divide width 8"},
        {"{\"layers\":[{\"type\":\"patch_embed\",\"patch\":7,\"dim\":8},{\"type\":\"transformer\",\"heads\":3}]}",
         RF_ERR_SHAPE, "layers[1] transformer: 3 heads do not divide width 8"},
        {"{\"layers\":[{\"type\":\"layernorm\"}]}", RF_ERR_SHAPE, "layers[0] layernorm: expects a token sequence or a flat vector, gets an image"},
        {"{\"layers\":[{\"type\":\"cls_pool\"}]}", RF_ERR_SHAPE, "layers[0] cls_pool: expects a token sequence, gets an image"},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"gap\"}]}", RF_ERR_SHAPE, "layers[1] gap: expects an image"},
        {"{\"layers\":[{\"type\":\"relu\",\"name\":\"a\"},{\"type\":\"relu\",\"name\":\"a\"}]}", RF_ERR_SPEC,
         "layers[1] relu: duplicate name \"a\""},
        {"{\"layers\":[{\"type\":\"relu\",\"name\":\"\"}]}", RF_ERR_SPEC, "layers[0] relu: \"name\" must be"},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3,\"init\":\"ones\"}]}", RF_ERR_SPEC,
         "layers[1] linear: unknown \"init\""},
        {"{\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":3,\"bias\":2}]}", RF_ERR_SPEC,
         "layers[1] linear: \"bias\" = 2 out of range"},
        /* the DAG: inputs, add, concat, unused outputs (test_models.c has the rest) */
        {"{\"layers\":[{\"type\":\"relu\",\"inputs\":\"nope\"}]}", RF_ERR_SPEC,
         "layers[0] relu: input \"nope\": no layer of that name"},
        {"{\"layers\":[{\"type\":\"relu\",\"name\":\"a\",\"inputs\":\"b\"},{\"type\":\"relu\",\"name\":\"b\"}]}", RF_ERR_SPEC,
         "layers[0] relu 'a': input \"b\" is not an earlier layer"},
        {"{\"layers\":[{\"type\":\"relu\",\"inputs\":3}]}", RF_ERR_SPEC, "layers[0] relu: \"inputs\" entries must be"},
        {"{\"layers\":[{\"type\":\"relu\",\"inputs\":[]}]}", RF_ERR_SPEC, "layers[0] relu: \"inputs\" is empty"},
        {"{\"layers\":[{\"type\":\"relu\"},{\"type\":\"relu\",\"inputs\":[0,\"input\"]}]}", RF_ERR_SPEC,
         "layers[1] relu: takes one input, \"inputs\" lists 2"},
        {"{\"layers\":[{\"type\":\"relu\",\"name\":\"input\"}]}", RF_ERR_SPEC, "the name \"input\" stands for the model input"},
        {"{\"layers\":[{\"type\":\"relu\"},{\"type\":\"add\"}]}", RF_ERR_SPEC, "layers[1] add: needs at least 2 \"inputs\""},
        {"{\"input\":[16,32,32],\"layers\":[{\"type\":\"conv2d\",\"name\":\"layer2.0.conv2\",\"out\":32,\"stride\":2,"
         "\"padding\":1},{\"type\":\"add\",\"name\":\"layer2.0.add\",\"inputs\":[\"layer2.0.conv2\",\"input\"]}]}",
         RF_ERR_SHAPE, "layers[1] add 'layer2.0.add': input 'layer2.0.conv2' has shape 32x16x16, input 'input' has 16x32x32"},
        {"{\"input\":[16,32,32],\"layers\":[{\"type\":\"conv2d\",\"out\":8,\"stride\":2,\"padding\":1},"
         "{\"type\":\"add\",\"inputs\":[0,\"input\"],\"shortcut\":\"A\"}]}",
         RF_ERR_SHAPE, "layers[1] add: input 'layers.0' has shape 8x16x16, input 'input' has 16x32x32 (option A"},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"relu\"},{\"type\":\"add\",\"inputs\":[0,\"input\"],\"shortcut\":\"B\"}]}",
         RF_ERR_SPEC, "\"shortcut\": \"B\" is a projection branch"},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"relu\"},{\"type\":\"add\",\"inputs\":[0,\"input\"],\"shortcut\":\"C\"}]}",
         RF_ERR_SPEC, "layers[1] add: \"shortcut\" must be \"none\" or \"A\""},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"maxpool\"},{\"type\":\"concat\",\"inputs\":[0,\"input\"]}]}",
         RF_ERR_SHAPE, "layers[1] concat: input 'layers.0' has shape 4x3x3, input 'input' has 4x6x6 (only channels may differ)"},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"flatten\"},{\"type\":\"concat\",\"inputs\":[0,\"input\"]}]}",
         RF_ERR_SHAPE, "layers[1] concat: input 'layers.0' has shape 144x1x1, input 'input' has 4x6x6"},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"relu\",\"name\":\"dead\"},{\"type\":\"tanh\",\"inputs\":\"input\"}]}",
         RF_ERR_SPEC, "layers[0] relu 'dead': output is never read"},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"residual\",\"from\":-1,\"inputs\":[\"input\",\"input\"]}]}",
         RF_ERR_SPEC, "layers[0] residual: takes one input, \"inputs\" lists 2"},
        {"{\"input\":[4,6,6],\"layers\":[{\"type\":\"conv2d\",\"name\":\"c\",\"out\":3,\"kernel\":7}]}",
         RF_ERR_SHAPE, "layers[0] conv2d 'c': kernel 7x7 larger than padded input 6x6"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rf_ctx ctx; rf_ctx_init(&ctx);
        rf_model *m = (rf_model *)1;
        long live = rf_alloc_live();
        rf_status s = rf_model_from_spec(&ctx, cases[i].spec, &m);
        cr_expect_eq(s, cases[i].st, "case %zu: status %s, message \"%s\"", i, rf_strerror(s), rf_ctx_error(&ctx));
        cr_expect_null(m, "case %zu", i);
        cr_expect(strstr(rf_ctx_error(&ctx), cases[i].msg) != NULL, "case %zu: \"%s\" lacks \"%s\"", i,
                  rf_ctx_error(&ctx), cases[i].msg);
        cr_expect_eq(rf_alloc_live(), live, "case %zu leaks", i);
    }
}

Test(nn, create_from_file_and_unknown_name) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m;
    cr_expect_neq(rf_model_create(&ctx, "no-such-preset", &m), RF_OK);
    cr_expect(strstr(rf_ctx_error(&ctx), "neither a preset") != NULL, "%s", rf_ctx_error(&ctx));
    char path[] = "/tmp/raffle_nn_specXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *spec = "{\"input\":[4],\"layers\":[{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}";
    cr_assert_eq(write(fd, spec, strlen(spec)), (ssize_t)strlen(spec));
    close(fd);
    cr_assert_eq(rf_model_create(&ctx, path, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_expect_eq(m->n_params, 15u);
    cr_expect_eq(m->n_classes, 3);
    rf_model_free(m);
    unlink(path);
    const char *names = rf_model_preset_names();
    char buf[256];
    snprintf(buf, sizeof buf, "%s", names);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","), n++) cr_expect_not_null(rf_model_preset(tok), "%s", tok);
    cr_expect_eq(n, 16);
}

Test(nn, spec_round_trips_through_spec_json) {
    rf_model *a = make("conv-2", 3);
    rf_model *b = make(a->spec_json, 3);
    cr_expect_eq(a->n_params, b->n_params);
    cr_expect_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    rf_model_free(a);
    rf_model_free(b);
}

/* ---- initialisation -------------------------------------------------------- */
static double stdev(const float *w, size_t n, double *mean) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) { s += w[i]; s2 += (double)w[i] * w[i]; }
    *mean = s / n;
    return sqrt(s2 / n - *mean * *mean);
}

Test(nn, init_deterministic_and_per_tensor) {
    rf_model *a = make("lenet-5", 42), *b = make("lenet-5", 42), *c = make("lenet-5", 43);
    cr_expect_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    const rf_param *p = rf_model_param(a, "fc1.weight");
    cr_expect_neq(memcmp(a->params + p->offset, c->params + p->offset, p->numel * sizeof(float)), 0);
    /* Re-initialising keeps the same values: init depends only on (seed, name). */
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model_init(&ctx, c, 42);
    cr_expect_eq(memcmp(a->params, c->params, a->n_params * sizeof(float)), 0);
    /* The same tensor name and shape in another architecture gets the same values. */
    rf_model *d = make("{\"input\":[400],\"init\":\"kaiming_normal\",\"layers\":[{\"type\":\"linear\",\"name\":\"fc1\",\"out\":120}]}", 42);
    cr_expect_eq(memcmp(a->params + p->offset, d->params, p->numel * sizeof(float)), 0);
    rf_model_free(a); rf_model_free(b); rf_model_free(c); rf_model_free(d);
}

Test(nn, init_distributions) {
    double mean, sd;
    rf_model *l = make("lenet-300-100", 7);   /* Glorot normal: std = sqrt(2/(fan_in+fan_out)) */
    const rf_param *p = rf_model_param(l, "fc1.weight");
    sd = stdev(l->params + p->offset, p->numel, &mean);
    cr_expect(fabs(sd / sqrt(2.0 / (784 + 300)) - 1.0) < 0.02, "glorot std %g", sd);
    cr_expect(fabs(mean) < 0.002);
    p = rf_model_param(l, "fc1.bias");
    for (size_t i = 0; i < p->numel; i++) cr_expect_eq(l->params[p->offset + i], 0.0f);
    rf_model_free(l);
    rf_model *c = make("conv-2", 7);
    p = rf_model_param(c, "conv2.weight");   /* fan_in 576, fan_out 576 */
    sd = stdev(c->params + p->offset, p->numel, &mean);
    cr_expect(fabs(sd / sqrt(2.0 / (576 + 576)) - 1.0) < 0.02, "conv glorot std %g", sd);
    rf_model_free(c);
    rf_model *k = make("lenet-5", 7);        /* Kaiming normal: std = sqrt(2/fan_in) */
    p = rf_model_param(k, "conv2.weight");
    sd = stdev(k->params + p->offset, p->numel, &mean);
    cr_expect(fabs(sd / sqrt(2.0 / 150) - 1.0) < 0.05, "kaiming std %g", sd);
    rf_model_free(k);
    rf_model *v = make("vit-tiny", 7);       /* trunc normal 0.02 at ±2σ: std 0.8796·0.02 */
    p = rf_model_param(v, "blocks.0.mlp.fc1.weight");
    sd = stdev(v->params + p->offset, p->numel, &mean);
    cr_expect(fabs(sd / (0.87962566 * 0.02) - 1.0) < 0.03, "trunc normal std %g", sd);
    for (size_t i = 0; i < p->numel; i++) cr_expect(fabsf(v->params[p->offset + i]) <= 0.04f);
    p = rf_model_param(v, "blocks.0.norm1.weight");
    cr_expect_eq(v->params[p->offset], 1.0f);
    p = rf_model_param(v, "blocks.0.norm1.bias");
    cr_expect_eq(v->params[p->offset], 0.0f);
    rf_model_free(v);
    rf_model *t = make("{\"input\":[50],\"init\":\"pytorch\",\"layers\":[{\"type\":\"linear\",\"out\":400}]}", 7);
    float bound = 1.0f / sqrtf(50.0f), mx = 0.0f;
    for (size_t i = 0; i < t->n_params; i++) mx = fmaxf(mx, fabsf(t->params[i]));
    cr_expect(mx <= bound && mx > 0.95f * bound, "pytorch bound %g vs %g", mx, bound);
    rf_model_free(t);
}

/* ---- masks and clone -------------------------------------------------------- */
Test(nn, masks_apply_and_count) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make("lenet-300-100", 1);
    size_t rem;
    size_t total = rf_model_prunable_count(m, &rem);
    cr_expect_eq(total, 784u * 300 + 300 * 100 + 100 * 10);
    cr_expect_eq(rem, total);
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    for (size_t i = 0; i < m->n_params; i++) cr_assert_eq(m->masks[i], 1.0f);
    const rf_param *w = rf_model_param(m, "fc2.weight"), *b = rf_model_param(m, "fc2.bias");
    for (size_t i = 0; i < w->numel; i += 3) m->masks[w->offset + i] = 0.0f;
    m->masks[b->offset] = 0.0f;   /* not prunable: not counted, but applied */
    rf_model_apply_masks(m);
    for (size_t i = 0; i < w->numel; i++)
        cr_expect_eq(m->params[w->offset + i] == 0.0f, i % 3 == 0, "entry %zu", i);
    cr_expect_eq(m->params[b->offset], 0.0f);
    rf_model_prunable_count(m, &rem);
    cr_expect_eq(rem, total - (w->numel + 2) / 3);
    /* Re-initialising a masked model keeps pruned weights at zero. */
    rf_model_init(&ctx, m, 9);
    cr_expect_eq(m->params[w->offset + 3], 0.0f);
    cr_expect_neq(m->params[w->offset + 1], 0.0f);
    rf_model_free(m);
}

Test(nn, clone_is_equal_and_independent) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = make("{\"input\":[2,6,6],\"layers\":[{\"type\":\"conv2d\",\"out\":3},{\"type\":\"batchnorm\"},"
                       "{\"type\":\"flatten\"},{\"type\":\"dropout\",\"p\":0.5},{\"type\":\"linear\",\"out\":4}]}", 5);
    float *x = randn(4 * 72, 1);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 4, 1, &y), RF_OK);   /* moves BN running stats */
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    m->masks[0] = 0.0f;
    m->ptensors[0].prunable = 0;
    rf_model *c;
    cr_assert_eq(rf_model_clone(&ctx, m, &c), RF_OK);
    cr_expect_eq(c->n_params, m->n_params);
    cr_expect_eq(memcmp(c->params, m->params, m->n_params * sizeof(float)), 0);
    cr_expect_eq(memcmp(c->masks, m->masks, m->n_params * sizeof(float)), 0);
    cr_expect_eq(memcmp(c->buffers, m->buffers, m->n_buffers * sizeof(float)), 0);
    cr_expect_eq(c->ptensors[0].prunable, 0);
    cr_expect_str_eq(c->spec_json, m->spec_json);
    /* Same training forward (same dropout stream): same logits. */
    float ym[16], yc[16];
    const float *yy;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 4, 1, &yy), RF_OK);
    memcpy(ym, yy, sizeof ym);
    cr_assert_eq(rf_model_forward(&ctx, c, x, 4, 1, &yy), RF_OK);
    memcpy(yc, yy, sizeof yc);
    cr_expect_eq(memcmp(ym, yc, sizeof ym), 0);
    c->params[1] += 1.0f;
    cr_expect_neq(c->params[1], m->params[1]);
    rf_model_free(c);
    rf_model_free(m);
    free(x);
}

/* ---- conv against a direct convolution (the scalar reference) -------------- */
static void conv_ref(float *y, const float *x, const float *w, const float *b, int B, int C, int H, int W, int Co,
                     int kh, int kw, int s, int p, int OH, int OW) {
    for (int n = 0; n < B; n++)
        for (int o = 0; o < Co; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int i = 0; i < kh; i++)
                            for (int j = 0; j < kw; j++) {
                                int ih = oh * s + i - p, iw = ow * s + j - p;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)x[((n * C + c) * H + ih) * W + iw] * w[((o * C + c) * kh + i) * kw + j];
                            }
                    y[((n * Co + o) * OH + oh) * OW + ow] = (float)acc;
                }
}

/* Reference override: Y[M, N] = X[M, K] · W^T + b, in double. */
typedef struct ref_gemm { const float *W, *b; int N, K, calls; } ref_gemm;
static rf_status ref_gemm_fn(void *st, const float *X, float *Y, int M) {
    ref_gemm *g = st;
    g->calls++;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < g->N; j++) {
            double acc = g->b ? g->b[j] : 0.0;
            for (int k = 0; k < g->K; k++) acc += (double)X[(size_t)i * g->K + k] * g->W[(size_t)j * g->K + k];
            Y[(size_t)i * g->N + j] = (float)acc;
        }
    return RF_OK;
}
static rf_status failing_gemm(void *st, const float *X, float *Y, int M) { return RF_ERR_UNSUPPORTED; }
/* The feature-major form: YT[N, M] = W · XT[K, M] + b; counts in calls + 1000. */
static rf_status ref_gemm_feat_fn(void *st, const float *XT, float *YT, int M, int ld) {
    ref_gemm *g = st;
    g->calls += 1000;
    cr_assert(ld >= M);
    for (int j = 0; j < g->N; j++)
        for (int i = 0; i < M; i++) {
            double acc = g->b ? g->b[j] : 0.0;
            for (int k = 0; k < g->K; k++) acc += (double)XT[(size_t)k * ld + i] * g->W[(size_t)j * g->K + k];
            YT[(size_t)j * ld + i] = (float)acc;
        }
    return RF_OK;
}

Test(nn, conv_matches_direct_and_override_layout) {
    static const struct { int C, H, W, Co, kh, kw, s, p, B; } g[] = {
        {3, 9, 7, 4, 3, 3, 2, 1, 3}, {1, 28, 28, 6, 5, 5, 1, 2, 5}, {5, 6, 11, 7, 2, 3, 1, 0, 2}, {2, 13, 13, 3, 3, 3, 3, 2, 1},
        {3, 7, 7, 90, 3, 3, 1, 1, 13},   /* stride 1, many channels: the row-copy path, chunks of 11 */
    };
    for (size_t t = 0; t < sizeof g / sizeof g[0]; t++) {
        char spec[256];
        snprintf(spec, sizeof spec, "{\"input\":[%d,%d,%d],\"layers\":[{\"type\":\"conv2d\",\"out\":%d,\"kh\":%d,\"kw\":%d,"
                 "\"stride\":%d,\"padding\":%d}]}", g[t].C, g[t].H, g[t].W, g[t].Co, g[t].kh, g[t].kw, g[t].s, g[t].p);
        rf_model *m = make(spec, t + 1);
        rf_layer *L = &m->layers[0];
        int OH = L->out.d[1], OW = L->out.d[2];
        cr_expect_eq(OH, (g[t].H + 2 * g[t].p - g[t].kh) / g[t].s + 1);
        size_t n_in = (size_t)g[t].B * in_numel(m), n_out = (size_t)g[t].B * L->out_size;
        float *x = randn(n_in, t), *ref = malloc(n_out * sizeof(float)), *fast = malloc(n_out * sizeof(float));
        const float *W = m->params + rf_model_param(m, "layers.0.weight")->offset;
        const float *b = m->params + rf_model_param(m, "layers.0.bias")->offset;
        conv_ref(ref, x, W, b, g[t].B, g[t].C, g[t].H, g[t].W, g[t].Co, g[t].kh, g[t].kw, g[t].s, g[t].p, OH, OW);
        rf_ctx ctx; rf_ctx_init(&ctx);
        const float *y;
        cr_assert_eq(rf_model_forward(&ctx, m, x, g[t].B, 1, &y), RF_OK);
        for (size_t i = 0; i < n_out; i++) cr_expect(fabsf(y[i] - ref[i]) < 1e-4f * (1.0f + fabsf(ref[i])), "case %zu at %zu", t, i);
        memcpy(fast, y, n_out * sizeof(float));
        ref_gemm rg = {W, b, g[t].Co, g[t].C * g[t].kh * g[t].kw, 0};
        L->infer_gemm = ref_gemm_fn;
        L->infer_state = &rg;
        cr_assert_eq(rf_model_forward(&ctx, m, x, g[t].B, 0, &y), RF_OK);
        cr_expect_gt(rg.calls, 0);
        for (size_t i = 0; i < n_out; i++) cr_expect(fabsf(y[i] - fast[i]) < 1e-4f * (1.0f + fabsf(ref[i])), "override case %zu at %zu", t, i);
        cr_expect_lt(rg.calls, 1000);
        /* With a feature-major form the layer calls that one instead. */
        rg.calls = 0;
        L->infer_gemm_feat = ref_gemm_feat_fn;
        cr_assert_eq(rf_model_forward(&ctx, m, x, g[t].B, 0, &y), RF_OK);
        cr_expect(rg.calls >= 1000 && rg.calls % 1000 == 0, "case %zu: calls %d", t, rg.calls);
        for (size_t i = 0; i < n_out; i++) cr_expect(fabsf(y[i] - fast[i]) < 1e-4f * (1.0f + fabsf(ref[i])), "feat override case %zu at %zu", t, i);
        /* ... but never without infer_gemm (an override lifted for a dense run). */
        rg.calls = 0;
        L->infer_gemm = NULL;
        cr_assert_eq(rf_model_forward(&ctx, m, x, g[t].B, 0, &y), RF_OK);
        cr_expect_eq(rg.calls, 0);
        L->infer_gemm = ref_gemm_fn;
        L->infer_gemm_feat = NULL;
        /* Training ignores the override. */
        rg.calls = 0;
        cr_assert_eq(rf_model_forward(&ctx, m, x, g[t].B, 1, &y), RF_OK);
        cr_expect_eq(rg.calls, 0);
        L->infer_gemm = failing_gemm;
        cr_expect_eq(rf_model_forward(&ctx, m, x, g[t].B, 0, &y), RF_ERR_UNSUPPORTED);
        free(x); free(ref); free(fast);
        rf_model_free(m);
    }
}

Test(nn, linear_override_and_reference) {
    rf_model *m = make("mlp-800x2", 2);
    float *x = randn(5 * 784, 2);
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 5, 0, &y), RF_OK);
    float plain[50];
    memcpy(plain, y, sizeof plain);
    ref_gemm rg[3];
    const char *names[3] = {"fc1", "fc2", "fc3"};
    for (int i = 0, k = 0; i < m->n_layers; i++) {
        rf_layer *L = &m->layers[i];
        if (L->type != RF_L_LINEAR) continue;
        char wn[80], bn[80];
        snprintf(wn, sizeof wn, "%s.weight", names[k]);
        snprintf(bn, sizeof bn, "%s.bias", names[k]);
        rg[k] = (ref_gemm){m->params + rf_model_param(m, wn)->offset, m->params + rf_model_param(m, bn)->offset,
                           L->ip[0], (int)L->in_size, 0};
        L->infer_gemm = ref_gemm_fn;
        L->infer_state = &rg[k++];
    }
    cr_assert_eq(rf_model_forward(&ctx, m, x, 5, 0, &y), RF_OK);
    for (int i = 0; i < 50; i++) cr_expect(fabsf(y[i] - plain[i]) < 1e-4f * (1.0f + fabsf(plain[i])));
    for (int k = 0; k < 3; k++) cr_expect_eq(rg[k].calls, 1);
    free(x);
    rf_model_free(m);
}

/* ---- batch norm statistics, dropout, batch growth ------------------------- */
Test(nn, batchnorm_running_stats) {
    rf_model *m = make("{\"input\":[2,3,3],\"layers\":[{\"type\":\"batchnorm\"}]}", 1);
    float *x = randn(4 * 18, 4);
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 4, 1, &y), RF_OK);
    for (int c = 0; c < 2; c++) {
        double s = 0, s2 = 0;
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < 9; i++) { double v = x[n * 18 + c * 9 + i]; s += v; s2 += v * v; }
        double mu = s / 36, var = s2 / 36 - mu * mu;
        cr_expect(fabs(m->buffers[c] - 0.1 * mu) < 1e-5, "running mean");
        cr_expect(fabs(m->buffers[2 + c] - (0.9 + 0.1 * var * 36 / 35)) < 1e-5, "running var (unbiased)");
        double ys = 0, ys2 = 0;
        for (int n = 0; n < 4; n++)
            for (int i = 0; i < 9; i++) { double v = y[n * 18 + c * 9 + i]; ys += v; ys2 += v * v; }
        cr_expect(fabs(ys / 36) < 1e-5 && fabs(ys2 / 36 - 1.0) < 1e-3, "normalised output");
    }
    cr_assert_eq(rf_model_forward(&ctx, m, x, 4, 0, &y), RF_OK);
    float a = 1.0f / sqrtf(m->buffers[2] + 1e-5f);
    cr_expect(fabsf(y[0] - (x[0] - m->buffers[0]) * a) < 1e-5f, "eval uses running stats");
    free(x);
    rf_model_free(m);
}

Test(nn, dropout_modes) {
    rf_model *m = make("{\"input\":[1000],\"layers\":[{\"type\":\"dropout\",\"p\":0.3}]}", 1);
    float *x = randn(2000, 1);
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 0, &y), RF_OK);
    cr_expect_eq(memcmp(y, x, 2000 * sizeof(float)), 0);
    cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 1, &y), RF_OK);
    int zeros = 0;
    for (int i = 0; i < 2000; i++) {
        if (y[i] == 0.0f) zeros++;
        else cr_expect(fabsf(y[i] - x[i] / 0.7f) < 1e-5f * (1 + fabsf(x[i])));
    }
    cr_expect(zeros > 520 && zeros < 680, "dropped %d of 2000", zeros);
    free(x);
    rf_model_free(m);
}

Test(nn, batch_size_changes_and_independence) {
    rf_model *m = make("vit-tiny", 4);
    float *x = randn(7 * 784, 9);
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 7, 0, &y), RF_OK);
    float all[70];
    memcpy(all, y, sizeof all);
    for (int n = 0; n < 7; n += 3) {
        cr_assert_eq(rf_model_forward(&ctx, m, x + n * 784, 1, 0, &y), RF_OK);
        for (int k = 0; k < 10; k++) cr_expect(fabsf(y[k] - all[n * 10 + k]) < 1e-4f, "sample %d", n);
    }
    cr_assert_eq(rf_model_forward(&ctx, m, x, 9 - 2, 0, &y), RF_OK);
    cr_expect(fabsf(y[69] - all[69]) < 1e-5f);
    cr_expect_eq(rf_model_forward(&ctx, m, x, 0, 0, &y), RF_ERR_INVALID);
    free(x);
    rf_model_free(m);
}

/* ---- hooks, non-finite detection, backward misuse, allocation failures ---- */
typedef struct hook_log { int fwd, bwd, last_layer; } hook_log;
static rf_status count_hook(void *ud, int layer, int backward, float *data, size_t n) {
    hook_log *h = ud;
    if (backward) h->bwd++; else h->fwd++;
    h->last_layer = layer;
    return RF_OK;
}

Test(nn, hooks_and_nonfinite) {
    rf_model *m = make("lenet-300-100", 1);
    hook_log h = {0, 0, -1};
    m->hook = count_hook;
    m->hook_ud = &h;
    float *x = randn(2 * 784, 1), dl[20] = {0};
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_expect_eq(rf_model_backward(&ctx, m, dl), RF_ERR_INVALID);   /* no forward yet */
    cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 1, &y), RF_OK);
    cr_expect_eq(h.fwd, m->n_layers);
    cr_assert_eq(rf_model_backward(&ctx, m, dl), RF_OK);
    cr_expect_eq(h.bwd, m->n_layers);
    cr_expect_eq(h.last_layer, 0);
    cr_expect_eq(rf_model_first_nonfinite(m), -1);
    m->params[rf_model_param(m, "fc2.weight")->offset] = NAN;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 1, &y), RF_OK);
    cr_expect_eq(rf_model_first_nonfinite(m), 3);   /* flatten, fc1, relu, fc2 */
    cr_expect_str_eq(m->layers[3].name, "fc2");
    cr_expect_eq(rf_model_layer_output(m, 3), m->acts + m->layers[3].act_offset * m->max_batch);
    cr_expect_null(rf_model_layer_output(m, m->n_layers));
    free(x);
    rf_model_free(m);
}

Test(nn, allocation_failures_are_clean) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const char *spec = rf_model_preset("vit-tiny");
    float *x = randn(2 * 784, 1);
    int failed = 0;
    for (long n = 0; n < 40; n++) {
        long live = rf_alloc_live();
        rf_model *m = NULL;
        rf_alloc_fail_after(n);
        rf_status s = rf_model_from_spec(&ctx, spec, &m);
        const float *y;
        if (s == RF_OK) s = rf_model_forward(&ctx, m, x, 2, 1, &y);
        rf_alloc_fail_after(-1);
        if (s != RF_OK) { failed++; cr_expect_eq(s, RF_ERR_NOMEM, "n=%ld: %s", n, rf_ctx_error(&ctx)); }
        rf_model_free(m);
        cr_expect_eq(rf_alloc_live(), live, "leak with failure after %ld allocations", n);
    }
    cr_expect_gt(failed, 3);
    free(x);
}

/* ---- vectorised kernels against plain references ------------------------- */
Test(nn, gelu_against_libm) {
    enum { N = 20001 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *g = calloc(N, sizeof(float));
    float *ones = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) { x[i] = -12.0f + 24.0f * (float)i / (N - 1); ones[i] = 1.0f; }
    rf_nn_gelu_fwd(y, x, N);
    rf_nn_gelu_bwd(g, ones, x, N);
    for (int i = 0; i < N; i++) {
        double v = x[i], cdf = 0.5 * (1.0 + erf(v / sqrt(2.0)));
        double ref = v * cdf, dref = cdf + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
        cr_expect(fabs(y[i] - ref) <= 2e-6 * (1.0 + fabs(v)), "gelu(%g) = %g, want %g", v, y[i], ref);
        cr_expect(fabs(g[i] - dref) <= 2e-6 * (1.0 + fabs(v)), "gelu'(%g) = %g, want %g", v, g[i], dref);
    }
    free(x); free(y); free(g); free(ones);
}

/* Multi-head attention forward against a direct double-precision evaluation
 * of softmax(q k^T / sqrt(d)) v per head (PyTorch's layout of q|k|v and heads). */
Test(nn, attention_forward_reference) {
    enum { T = 5, D = 12, H = 3, B = 2 };
    rf_model *m = make("{\"input\":[5,12],\"layers\":[{\"type\":\"attention\",\"name\":\"attn\",\"heads\":3}]}", 3);
    rf_rng r; rf_rng_init(&r, 1, 1);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = 0.3f * rf_rng_normal(&r);
    float *x = randn(B * T * D, 8);
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 1, &y), RF_OK);
    const float *Wq = m->params + rf_model_param(m, "attn.qkv.weight")->offset;
    const float *bq = m->params + rf_model_param(m, "attn.qkv.bias")->offset;
    const float *Wp = m->params + rf_model_param(m, "attn.proj.weight")->offset;
    const float *bp = m->params + rf_model_param(m, "attn.proj.bias")->offset;
    int hd = D / H;
    for (int b = 0; b < B; b++) {
        double qkv[T][3 * D], ctxv[T][D];
        for (int t = 0; t < T; t++)
            for (int o = 0; o < 3 * D; o++) {
                double a = bq[o];
                for (int k = 0; k < D; k++) a += (double)Wq[o * D + k] * x[(b * T + t) * D + k];
                qkv[t][o] = a;
            }
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double s[T], mx = -1e300, sum = 0;
                for (int j = 0; j < T; j++) {
                    double a = 0;
                    for (int d = 0; d < hd; d++) a += qkv[i][h * hd + d] * qkv[j][D + h * hd + d];
                    s[j] = a / sqrt((double)hd);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < T; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int d = 0; d < hd; d++) {
                    double a = 0;
                    for (int j = 0; j < T; j++) a += s[j] / sum * qkv[j][2 * D + h * hd + d];
                    ctxv[i][h * hd + d] = a;
                }
            }
        for (int t = 0; t < T; t++)
            for (int o = 0; o < D; o++) {
                double a = bp[o];
                for (int k = 0; k < D; k++) a += (double)Wp[o * D + k] * ctxv[t][k];
                float got = y[(b * T + t) * D + o];
                cr_expect(fabs(got - a) < 1e-4 * (1.0 + fabs(a)), "y[%d,%d,%d] = %g, want %g", b, t, o, got, a);
            }
    }
    free(x);
    rf_model_free(m);
}

/* ---- per-weight overrides (nn.h rf_param.infer_gemm / train_act) ---------- */

/* A tiny ViT: patch_embed, two transformer blocks, a standalone attention
 * layer, layer norm, cls pool, head. */
static const char tiny_vit[] =
    "{\"input\":[1,8,8],\"classes\":5,\"layers\":[{\"type\":\"patch_embed\",\"name\":\"patch_embed\",\"patch\":4,\"dim\":12},"
    "{\"type\":\"transformer\",\"name\":\"blocks.0\",\"heads\":3,\"mlp\":20},"
    "{\"type\":\"transformer\",\"name\":\"blocks.1\",\"heads\":2,\"mlp\":16},"
    "{\"type\":\"attention\",\"name\":\"attn\",\"heads\":2},"
    "{\"type\":\"layernorm\",\"name\":\"norm\"},{\"type\":\"cls_pool\"},{\"type\":\"linear\",\"name\":\"head\",\"out\":5}]}";

/* Installs ref_gemm_fn on every weight of the transformer/attention layers,
 * its bias found as the contract says (the next tensor, role bias, same layer). */
static int install_param_refs(rf_model *m, ref_gemm *rg, int cap) {
    int n = 0;
    for (int p = 0; p < m->n_ptensors; p++) {
        rf_param *w = &m->ptensors[p];
        int t = m->layers[w->layer].type;
        if (w->role != RF_P_WEIGHT || (t != RF_L_TRANSFORMER && t != RF_L_ATTENTION)) continue;
        cr_assert_lt(n, cap);
        const rf_param *b = p + 1 < m->n_ptensors ? &m->ptensors[p + 1] : NULL;
        int has_b = b && b->role == RF_P_BIAS && b->layer == w->layer;
        rg[n] = (ref_gemm){m->params + w->offset, has_b ? m->params + b->offset : NULL, (int)w->shape[0],
                           (int)w->shape[1], 0};
        w->infer_gemm = ref_gemm_fn;
        w->infer_state = &rg[n++];
    }
    return n;
}

Test(nn, per_param_override_matches_forward_on_tiny_vit) {
    enum { B = 3 };
    rf_model *m = make(tiny_vit, 5);
    rf_rng r; rf_rng_init(&r, 9, 1);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.05f * rf_rng_normal(&r);   /* non-zero biases */
    float *x = randn(B * in_numel(m), 4);
    rf_ctx ctx; rf_ctx_init(&ctx);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &y), RF_OK);
    float plain[B * 5];
    memcpy(plain, y, sizeof plain);
    ref_gemm rg[16];
    int n = install_param_refs(m, rg, 16);
    cr_assert_eq(n, 4 + 4 + 2, "two blocks x 4 products + attention's 2");
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &y), RF_OK);
    for (int i = 0; i < B * 5; i++)
        cr_expect(fabsf(y[i] - plain[i]) < 1e-4f * (1.0f + fabsf(plain[i])), "logit %d: %g vs %g", i, y[i], plain[i]);
    for (int k = 0; k < n; k++) cr_expect_eq(rg[k].calls, 1, "product %d called %d times", k, rg[k].calls);
    /* The override is really used: perturbing its weights changes the logits. */
    float *w2 = malloc((size_t)rg[5].N * rg[5].K * sizeof(float));
    for (int i = 0; i < rg[5].N * rg[5].K; i++) w2[i] = rg[5].W[i] * 1.5f;
    const float *wsave = rg[5].W;
    rg[5].W = w2;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 0, &y), RF_OK);
    double diff = 0;
    for (int i = 0; i < B * 5; i++) diff += fabs(y[i] - plain[i]);
    cr_expect_gt(diff, 1e-3);
    rg[5].W = wsave;
    /* Training ignores the inference override. */
    for (int k = 0; k < n; k++) rg[k].calls = 0;
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 1, &y), RF_OK);
    for (int k = 0; k < n; k++) cr_expect_eq(rg[k].calls, 0);
    /* A failing override fails the forward with its status. */
    m->ptensors[rf_model_param(m, "blocks.1.mlp.fc2.weight") - m->ptensors].infer_gemm = failing_gemm;
    cr_expect_eq(rf_model_forward(&ctx, m, x, B, 0, &y), RF_ERR_UNSUPPORTED);
    free(w2);
    free(x);
    rf_model_free(m);
}

/* train_act: called on each product's input in a training forward (sizes
 * M*K), and on its gradient in backward; an identity hook leaves logits and
 * every gradient unchanged, a hook that zeroes the gradient of fc1's input
 * changes exactly the gradients upstream of it. */
typedef struct act_probe { size_t n_fwd, n_bwd; int calls_fwd, calls_bwd, zero_grad; } act_probe;
static rf_status act_probe_fn(void *st, int backward, float *X, size_t n) {
    act_probe *a = st;
    if (backward) {
        a->calls_bwd++; a->n_bwd = n;
        if (a->zero_grad) memset(X, 0, n * sizeof(float));
    } else {
        a->calls_fwd++; a->n_fwd = n;
    }
    return RF_OK;
}

static void grads_of(rf_ctx *ctx, rf_model *m, const float *x, int B, float *logits, float *grads) {
    const float *y;
    cr_assert_eq(rf_model_forward(ctx, m, x, B, 1, &y), RF_OK);
    memcpy(logits, y, (size_t)B * m->n_classes * sizeof(float));
    float dl[64];
    for (int i = 0; i < B * m->n_classes; i++) dl[i] = 0.1f * (float)((i * 7) % 5) - 0.2f;
    rf_model_zero_grad(m);
    cr_assert_eq(rf_model_backward(ctx, m, dl), RF_OK);
    memcpy(grads, m->grads, m->n_params * sizeof(float));
}

Test(nn, per_param_train_act_hook) {
    enum { B = 2 };
    /* With train_act hooks the transformer block takes its unchunked path,
     * without them the chunked one, which always runs the row kernels; the
     * unchunked path would send these small products to OpenBLAS. Forcing
     * the row kernels everywhere makes the two runs differ only by what the
     * hooks do (chunked and unchunked row paths give the same bits). */
    rf_ctx ectx;   /* the forwards and backwards below run with this engine */
    rf_ctx_init(&ectx);
    ectx.engine.v[RF_ENGINE_GEMM] = RF_ENGINE_GEMM_ROWS;
    rf_model *m = make(tiny_vit, 6);
    float *x = randn(B * in_numel(m), 5);
    float l0[B * 5], l1[B * 5];
    float *g0 = malloc(m->n_params * sizeof(float)), *g1 = malloc(m->n_params * sizeof(float));
    grads_of(&ectx, m, x, B, l0, g0);
    act_probe pr[16];
    memset(pr, 0, sizeof pr);
    int n = 0;
    for (int p = 0; p < m->n_ptensors; p++) {
        rf_param *w = &m->ptensors[p];
        int t = m->layers[w->layer].type;
        if (w->role != RF_P_WEIGHT || (t != RF_L_TRANSFORMER && t != RF_L_ATTENTION)) continue;
        w->train_act = act_probe_fn;
        w->train_state = &pr[n++];
    }
    grads_of(&ectx, m, x, B, l1, g1);
    for (int i = 0; i < B * 5; i++) cr_expect_eq(l0[i], l1[i]);
    for (size_t i = 0; i < m->n_params; i++) cr_expect(fabsf(g0[i] - g1[i]) <= 1e-6f * (1.0f + fabsf(g0[i])), "grad %zu", i);
    size_t T = 5;   /* 4 patches + cls */
    for (int k = 0; k < n; k++) {
        const rf_param *w = NULL;
        for (int p = 0; p < m->n_ptensors; p++)
            if (m->ptensors[p].train_state == &pr[k]) w = &m->ptensors[p];
        cr_assert_not_null(w);
        cr_expect_eq(pr[k].calls_fwd, 1, "%s", w->name);
        cr_expect_eq(pr[k].calls_bwd, 1, "%s", w->name);
        cr_expect_eq(pr[k].n_fwd, B * T * (size_t)w->shape[1], "%s", w->name);
        cr_expect_eq(pr[k].n_bwd, pr[k].n_fwd, "%s", w->name);
    }
    /* STE side: zeroing the gradient of blocks.1's fc1 input cuts the path
     * through fc1 to norm2 and everything before blocks.1's MLP, but not the
     * fc1/fc2 weight gradients themselves. */
    const rf_param *fc1 = rf_model_param(m, "blocks.1.mlp.fc1.weight");
    pr[(act_probe *)fc1->train_state - pr].zero_grad = 1;
    grads_of(&ectx, m, x, B, l1, g1);
    const rf_param *n2 = rf_model_param(m, "blocks.1.norm2.weight");
    const rf_param *fc2 = rf_model_param(m, "blocks.1.mlp.fc2.weight");
    double dn2 = 0, dfc = 0;
    for (size_t i = 0; i < n2->numel; i++) dn2 += fabs(g1[n2->offset + i]);
    for (size_t i = 0; i < fc1->numel; i++) dfc += fabs(g1[fc1->offset + i] - g0[fc1->offset + i]);
    for (size_t i = 0; i < fc2->numel; i++) dfc += fabs(g1[fc2->offset + i] - g0[fc2->offset + i]);
    cr_expect_eq(dn2, 0.0, "norm2 gets no gradient once fc1's input gradient is cut");
    cr_expect_lt(dfc, 1e-6);
    free(g0); free(g1); free(x);
    rf_model_free(m);
}

/* The op table has an op for every layer type (the static_assert makes a
 * missing entry a compile error; this checks the entries are not NULL) and
 * each op states what it is: the traits deployment, quantization, pruning,
 * finishing and checkpoints ask instead of comparing types. */
Test(nn, op_table_and_traits) {
    for (int t = 1; t < RF_L_TYPE_COUNT_; t++) cr_assert_not_null(rf_nn_op_get(t), "layer type %d has no op", t);
    cr_assert_eq(rf_layer_traits(0), 0u);
    cr_assert_eq(rf_layer_traits(RF_L_TYPE_COUNT_), 0u);
    const unsigned w = RF_LT_PRUNABLE | RF_LT_QUANT;
    cr_assert_eq(rf_layer_traits(RF_L_LINEAR) & (RF_LT_PRODUCT | w), RF_LT_PRODUCT | w);
    cr_assert_eq(rf_layer_traits(RF_L_CONV2D) & (RF_LT_PRODUCT | RF_LT_ROWS_OUT | RF_LT_FEAT | RF_LT_ROWS),
                 RF_LT_PRODUCT | RF_LT_ROWS_OUT | RF_LT_FEAT);
    cr_assert(rf_layer_traits(RF_L_TRANSFORMER) & RF_LT_PRODUCTS && rf_layer_traits(RF_L_TRANSFORMER) & RF_LT_BLOCK);
    cr_assert_eq(rf_layer_traits(RF_L_ATTENTION) & (RF_LT_ROWS | RF_LT_FEAT), RF_LT_ROWS);
    cr_assert_eq(rf_layer_traits(RF_L_BATCHNORM), (unsigned)RF_LT_STATS);
    cr_assert_eq(rf_layer_traits(RF_L_FLATTEN), 0u);
    cr_assert_eq(rf_layer_traits(RF_L_RESIDUAL), 0u);
    cr_assert_eq(rf_layer_traits(RF_L_ADD), 0u);
    cr_assert_eq(rf_layer_traits(RF_L_CONCAT), 0u);
    /* a product layer and a layer with products inside never both */
    for (int t = 1; t < RF_L_TYPE_COUNT_; t++) {
        unsigned tr = rf_layer_traits(t);
        cr_assert(!((tr & RF_LT_PRODUCT) && (tr & RF_LT_PRODUCTS)), "type %d", t);
        if (tr & (RF_LT_PRODUCT | RF_LT_PRODUCTS)) cr_assert(tr & (RF_LT_ROWS | RF_LT_FEAT), "type %d runs in no layout", t);
    }
    /* prunable weights follow the trait; rows per sample of each product */
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, "{\"input\":[1,8,8],\"classes\":3,\"layers\":[{\"type\":\"conv2d\",\"name\":\"c\",\"out\":4,"
                 "\"kernel\":3,\"padding\":1},{\"type\":\"batchnorm\",\"name\":\"bn\"},{\"type\":\"flatten\"},"
                 "{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}", &m), RF_OK, "%s", ctx.err);
    for (int p = 0; p < m->n_ptensors; p++)
        cr_assert_eq(m->ptensors[p].prunable, m->ptensors[p].role == RF_P_WEIGHT, "%s", m->ptensors[p].name);
    cr_assert_eq(rf_layer_product_rows(&m->layers[0], 9), 64);   /* 8x8 output positions */
    cr_assert_eq(rf_layer_product_rows(&m->layers[3], 256), 1);  /* one row per sample */
    rf_model_free(m);
}
