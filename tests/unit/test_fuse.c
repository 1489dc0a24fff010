/* Model-level fusion (src/nn/model.c, "fusion"): a batch norm or a
 * two-input add whose only reader is the ReLU after it runs fused with that
 * ReLU. The fused path must give the bits of the plain one (rf_model.no_fuse
 * = 1: every layer on its own): logits, every activation that both write,
 * batch-norm running statistics, every parameter gradient and the input
 * gradient, in training and in eval mode, on 1 and 2 threads, over a few
 * SGD steps (so the second step's forward reads parameters the first step's
 * fused backward produced). The model is a small ResNet: a stem BN+ReLU, an
 * identity block, a downsampling block with an option-A shortcut, a block
 * with an option-B (1x1 conv + BN) shortcut and a block that reads its input
 * twice (add of a layer with itself), so both add forms and both shortcut
 * kinds are fused. A second model checks where fusion must not happen (a
 * batch norm read by two layers, a three-input add, a hook). The finite-
 * difference check of the fused path is in test_gradcheck.c
 * (resnet_relu_fused). About 0.3 s of CPU. */
#include <criterion/criterion.h>
#include <string.h>

#include "raffle/engine.h"
#include "raffle/gemm.h"
#include "raffle/threads.h"
#include "nn/layers.h"
#include "nn_test_util.h"

#define CONV(n, in, c, st) \
    "{\"type\":\"conv2d\",\"name\":\"" n "\",\"inputs\":\"" in "\",\"out\":" #c ",\"kernel\":3,\"stride\":" #st \
    ",\"padding\":1,\"bias\":0},"
#define BN(n) "{\"type\":\"batchnorm\",\"name\":\"" n "\"},"
#define RELU(n) "{\"type\":\"relu\",\"name\":\"" n "\"},"

#define RESNET_BODY \
    CONV("stem", "input", 4, 1) BN("bn0") RELU("r0") \
    /* identity block */ \
    CONV("a1", "r0", 4, 1) BN("abn1") RELU("ar1") CONV("a2", "ar1", 4, 1) BN("abn2") \
    "{\"type\":\"add\",\"name\":\"aadd\",\"inputs\":[\"abn2\",\"r0\"]}," RELU("ar2") \
    /* downsampling, option A */ \
    CONV("b1", "ar2", 8, 2) BN("bbn1") RELU("br1") CONV("b2", "br1", 8, 1) BN("bbn2") \
    "{\"type\":\"add\",\"name\":\"badd\",\"inputs\":[\"bbn2\",\"ar2\"],\"shortcut\":\"A\"}," RELU("br2") \
    /* downsampling, option B (projection + BN on the shortcut) */ \
    CONV("c1", "br2", 8, 2) BN("cbn1") RELU("cr1") CONV("c2", "cr1", 8, 1) BN("cbn2") \
    "{\"type\":\"conv2d\",\"name\":\"cs\",\"inputs\":\"br2\",\"out\":8,\"kernel\":1,\"stride\":2,\"bias\":0}," \
    BN("csbn") "{\"type\":\"add\",\"name\":\"cadd\",\"inputs\":[\"cbn2\",\"csbn\"]}," RELU("cr2") \
    /* an add reading one layer twice */ \
    "{\"type\":\"add\",\"name\":\"dadd\",\"inputs\":[\"cr2\",\"cr2\"]}," RELU("dr") \
    "{\"type\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":5}]}"
static const char resnet_spec[] = "{\"input\":[3,9,9],\"classes\":5,\"layers\":[" RESNET_BODY;
/* even maps: the option-A add's 16x16 -> 8x8 runs its vector bodies */
static const char resnet16_spec[] = "{\"input\":[3,16,16],\"classes\":5,\"layers\":[" RESNET_BODY;

/* add(bn(c), c): the batch norm reads the add's input 1 itself, so the add
 * must store both gradients (no shared dz: the batch norm adds into input
 * 1's gradient); the fold still applies. */
static const char bnself_spec[] =
    "{\"input\":[2,6,6],\"classes\":3,\"layers\":["
    CONV("c", "input", 3, 1) BN("b")
    "{\"type\":\"add\",\"name\":\"s\",\"inputs\":[\"b\",\"c\"]}," RELU("r")
    "{\"type\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}";

/* Where fusion must not happen: bn's output is read by the ReLU and by the
 * add; the three-input add; the ReLU after a ReLU. */
static const char nofuse_spec[] =
    "{\"input\":[2,6,6],\"classes\":3,\"layers\":["
    CONV("c", "input", 3, 1) BN("bn") RELU("r")
    "{\"type\":\"add\",\"name\":\"s\",\"inputs\":[\"r\",\"bn\",\"c\"]}," RELU("r2") RELU("r3")
    "{\"type\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":3}]}";

/* conv + ReLU on every conv path: c1 (3 input channels: direct), c2 (32
 * -> 32 on 20x20 outputs: Winograd F(2x2) under conv=winograd, F(4x4) under
 * auto), c3 (10x10 after the pool, with a bias: Winograd), c4 (stride 2:
 * im2col / the stride-2 kernel); c5's ReLU reads it and the add, so it
 * stays plain. */
#define CONVB(n, in, c, st, pad, bias) \
    "{\"type\":\"conv2d\",\"name\":\"" n "\",\"inputs\":\"" in "\",\"out\":" #c ",\"kernel\":3,\"stride\":" #st \
    ",\"padding\":" #pad ",\"bias\":" #bias "},"
static const char convnet_spec[] =
    "{\"input\":[3,20,20],\"classes\":4,\"layers\":["
    CONVB("c1", "input", 32, 1, 1, 0) RELU("r1") CONVB("c2", "r1", 32, 1, 1, 1) RELU("r2")
    "{\"type\":\"maxpool\",\"name\":\"p\",\"kernel\":2},"
    CONVB("c3", "p", 32, 1, 1, 1) RELU("r3") CONVB("c4", "r3", 32, 2, 1, 0) RELU("r4")
    CONVB("c5", "r4", 32, 1, 1, 0) "{\"type\":\"relu\",\"name\":\"r5\",\"inputs\":\"c5\"},"
    "{\"type\":\"add\",\"name\":\"s\",\"inputs\":[\"r5\",\"c5\"]},"
    "{\"type\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":4}]}";

typedef struct snap {
    float *logits, *acts, *grads, *dinput, *buffers, *params;
    size_t n_logits, n_acts, n_in;
} snap;

static void snap_free(snap *s) {
    free(s->logits); free(s->acts); free(s->grads); free(s->dinput); free(s->buffers); free(s->params);
}

/* Trains `steps` SGD steps (lr 0.05) of the spec from seed 7 on B random
 * samples, fused or not, on `threads` threads, in training or eval mode; keeps
 * the last step's logits, the activations of the layers fused runs write,
 * the gradients, the input gradient, the running statistics and the final
 * parameters. *fused_layers: how many layers ran fused. */
static int conv_opt = -1;   /* the engine option conv for the next runs (-1: default) */
static snap train(const char *spec, int no_fuse, int threads, int training, int steps, int B, int *fused_layers) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.engine.v[RF_ENGINE_THREADS] = threads;
    if (conv_opt >= 0) ctx.engine.v[RF_ENGINE_CONV] = conv_opt;
    cr_assert_eq(rf_gemm_attach(&ctx), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 7), RF_OK);
    m->no_fuse = no_fuse;
    /* batch-norm affine parameters and running statistics away from 1 and 0 */
    rf_rng r;
    rf_rng_init(&r, 11, 1);
    for (int t = 0; t < m->n_ptensors; t++)
        if (m->ptensors[t].role == RF_P_NORM)
            for (size_t i = 0; i < m->ptensors[t].numel; i++) m->params[m->ptensors[t].offset + i] += 0.3f * rf_rng_normal(&r);
    for (int i = 0; i < m->n_layers; i++) {   /* running mean near 0 (else eval's ReLUs are mostly off), variance 0.5-1.5 */
        const rf_layer *L = &m->layers[i];
        if (L->type != RF_L_BATCHNORM) continue;
        for (int c = 0; c < L->out.d[0]; c++) {
            m->buffers[L->buf_offset + (size_t)c] = 0.2f * rf_rng_normal(&r);
            m->buffers[L->buf_offset + (size_t)L->out.d[0] + (size_t)c] = 0.5f + rf_rng_uniform(&r);
        }
    }
    size_t in_n = (size_t)B * in_numel(m);
    float *x = randn(in_n, 3), *w = randn((size_t)B * m->n_classes, 4);
    m->input_grad = 1;
    const float *y = NULL;
    for (int s = 0; s < steps; s++) {
        cr_assert_eq(rf_model_forward(&ctx, m, x, B, training, &y), RF_OK, "%s", rf_ctx_error(&ctx));
        rf_model_zero_grad(m);
        cr_assert_eq(rf_model_backward(&ctx, m, w), RF_OK, "%s", rf_ctx_error(&ctx));
        if (s + 1 < steps)
            for (size_t i = 0; i < m->n_params; i++) m->params[i] -= 0.05f * m->grads[i];
    }
    snap o = {0};
    o.n_logits = (size_t)B * m->n_classes;
    o.logits = malloc(o.n_logits * sizeof(float));
    memcpy(o.logits, y, o.n_logits * sizeof(float));
    /* activations written on both paths: every layer's but a fused one's */
    *fused_layers = 0;
    for (int i = 0; i < m->n_layers; i++) *fused_layers += m->layers[i].out_fused;
    o.acts = malloc(m->acts_numel * sizeof(float) + 1);
    for (int i = 0; i < m->n_layers; i++) {
        size_t n = (size_t)B * m->layers[i].out_size;
        const float *a = rf_model_layer_output(m, i);
        if (m->layers[i].out_fused || m->layers[i].out_folded)
            cr_expect_null(a, "layer %d: a fused or folded layer's output must not be offered", i);
        if (!a) continue;
        memcpy(o.acts + o.n_acts, a, n * sizeof(float));
        o.n_acts += n;
    }
    o.grads = malloc(m->n_params * sizeof(float));
    memcpy(o.grads, m->grads, m->n_params * sizeof(float));
    o.params = malloc(m->n_params * sizeof(float));
    memcpy(o.params, m->params, m->n_params * sizeof(float));
    o.buffers = malloc(m->n_buffers * sizeof(float) + 1);
    memcpy(o.buffers, m->buffers, m->n_buffers * sizeof(float));
    o.n_in = in_n;
    o.dinput = malloc(in_n * sizeof(float));
    memcpy(o.dinput, m->dinput, in_n * sizeof(float));
    free(x); free(w);
    rf_model_free(m);
    rf_gemm_detach(&ctx);
    return o;
}

static void expect_same(const char *spec, int threads, int training, int expect_fused) {
    int fu = -1, fp = -1;
    snap a = train(spec, 0, threads, training, 3, 5, &fu), b = train(spec, 1, threads, training, 3, 5, &fp);
    cr_expect_eq(fp, 0, "no_fuse ran %d layers fused", fp);
    cr_expect_eq(fu, expect_fused, "%d layers ran fused, expected %d (threads %d, training %d)", fu, expect_fused,
                 threads, training);
    cr_expect(memcmp(a.logits, b.logits, a.n_logits * sizeof(float)) == 0, "logits differ (threads %d, training %d)",
              threads, training);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK);
    size_t n_params = m->n_params, n_buffers = m->n_buffers;
    rf_model_free(m);
    cr_expect(memcmp(a.grads, b.grads, n_params * sizeof(float)) == 0, "gradients differ (threads %d, training %d)",
              threads, training);
    cr_expect(memcmp(a.params, b.params, n_params * sizeof(float)) == 0, "parameters differ after 3 steps");
    cr_expect(memcmp(a.buffers, b.buffers, n_buffers * sizeof(float)) == 0, "running statistics differ");
    cr_expect(memcmp(a.dinput, b.dinput, a.n_in * sizeof(float)) == 0, "input gradients differ (threads %d, training %d)",
              threads, training);
    snap_free(&a);
    snap_free(&b);
}

/* The kept activations of the fused run must be the plain run's, layer by
 * layer: compares them by re-running both and walking the layers. */
static void expect_same_acts(const char *spec, int training) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *mf, *mp;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &mf), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, mf, 9), RF_OK);
    cr_assert_eq(rf_model_clone(&ctx, mf, &mp), RF_OK);
    mp->no_fuse = 1;
    int B = 4;
    float *x = randn((size_t)B * in_numel(mf), 5);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, mf, x, B, training, &y), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, mp, x, B, training, &y), RF_OK);
    int kept = 0;
    for (int i = 0; i < mf->n_layers; i++) {
        const float *a = rf_model_layer_output(mf, i), *b = rf_model_layer_output(mp, i);
        cr_assert_not_null(b);
        if (!a) continue;
        kept++;
        cr_expect(memcmp(a, b, (size_t)B * mf->layers[i].out_size * sizeof(float)) == 0, "layer %d %s differs", i,
                  mf->layers[i].name);
    }
    cr_expect_lt(kept, mf->n_layers);
    free(x);
    rf_model_free(mf);
    rf_model_free(mp);
}

/* 4 batch norms + ReLU (bn0, abn1, bbn1, cbn1) and 4 adds + ReLU (aadd,
 * badd, cadd, dadd); abn2, bbn2, cbn2 and csbn feed adds. */
#define RESNET_FUSED 8

Test(fuse, resnet_training_one_thread) {
    expect_same(resnet_spec, 1, 1, RESNET_FUSED);
    expect_same(resnet16_spec, 1, 1, RESNET_FUSED);
}
Test(fuse, resnet_eval_one_thread) { expect_same(resnet_spec, 1, 0, RESNET_FUSED); }
Test(fuse, resnet_training_two_threads) {
    rf_threads_split_all(1);   /* every split, even on these small layers */
    expect_same(resnet_spec, 2, 1, RESNET_FUSED);
    expect_same(resnet_spec, 2, 0, RESNET_FUSED);
    rf_threads_split_all(0);
}
Test(fuse, kept_activations_match) {
    expect_same_acts(resnet_spec, 1);
    expect_same_acts(resnet_spec, 0);
}
Test(fuse, not_where_it_must_not) { expect_same(nofuse_spec, 1, 1, 0); }
Test(fuse, bn_reads_the_shortcut) {
    expect_same(bnself_spec, 1, 1, 1);
    expect_same(bnself_spec, 1, 0, 1);
}

/* c1..c4 fused with their ReLUs; ~0.3 s of CPU for the four. */
#define CONVNET_FUSED 4
Test(fuse, conv_relu_one_thread) {
    expect_same(convnet_spec, 1, 1, CONVNET_FUSED);
    expect_same(convnet_spec, 1, 0, CONVNET_FUSED);
    expect_same_acts(convnet_spec, 1);
}
Test(fuse, conv_relu_two_threads) {
    rf_threads_split_all(1);
    expect_same(convnet_spec, 2, 1, CONVNET_FUSED);
    rf_threads_split_all(0);
}
Test(fuse, conv_relu_winograd2_and_direct) {
    conv_opt = RF_ENGINE_CONV_WINOGRAD;   /* F(2x2) on c2, c3 */
    expect_same(convnet_spec, 1, 1, CONVNET_FUSED);
    conv_opt = RF_ENGINE_CONV_DIRECT;     /* the direct path on every stride-1 layer */
    expect_same(convnet_spec, 1, 1, CONVNET_FUSED);
    conv_opt = -1;
}

static rf_status count_hook(void *ud, int layer, int backward, float *data, size_t n) {
    (void)layer; (void)data; (void)n;
    if (!backward) ++*(int *)ud;
    return RF_OK;
}

Test(fuse, hook_sees_every_layer) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, resnet_spec, &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 1), RF_OK);
    int calls = 0;
    m->hook = count_hook;
    m->hook_ud = &calls;
    float *x = randn(2 * in_numel(m), 1);
    const float *y;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 1, &y), RF_OK);
    cr_expect_eq(calls, m->n_layers, "a hooked forward must run (and show) every layer");
    for (int i = 0; i < m->n_layers; i++) cr_expect_eq(m->layers[i].out_fused, 0);
    /* a layer's repeated inference forward refuses an input that was fused away */
    m->hook = NULL;
    cr_assert_eq(rf_model_forward(&ctx, m, x, 2, 0, &y), RF_OK);
    cr_expect_eq(rf_model_layer_forward(&ctx, m, 2), RF_ERR_INVALID, "relu r0 reads the fused bn0");
    cr_expect_eq(rf_model_layer_forward(&ctx, m, 3), RF_OK, "conv a1 reads r0, which is kept");
    free(x);
    rf_model_free(m);
}

/* "bn fold" (model.c): abn2, bbn2 and cbn2 are read by a fused add alone
 * (as its input 0) and are folded into it; csbn (input 1) is not. The
 * option-A add badd is the last reader of ar2 and writes its gradient
 * whole (shortcut_a_set; 9x9 -> 5x5: an odd row). Every activation and
 * every activation gradient is poisoned with NaN before a second identical
 * step: what is not written must not be read, so the gradients keep their
 * bytes, and equal no_fuse's. ~30 ms. */
static void expect_fold_written(const char *spec) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *m, *p;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, 5), RF_OK);
    cr_assert_eq(rf_model_clone(&ctx, m, &p), RF_OK);
    p->no_fuse = 1;
    const int B = 3;
    size_t nx = (size_t)B * in_numel(m);
    float *x = randn(nx, 8), *dl = randn((size_t)B * m->n_classes, 9);
    float *g[3], *d[3];
    for (int k = 0; k < 3; k++) { g[k] = malloc(m->n_params * sizeof(float)); d[k] = malloc(nx * sizeof(float)); }
    m->input_grad = p->input_grad = 1;
    grads_after(m, &ctx, x, dl, B, g[0], d[0], 0);
    int folded = 0;
    for (int i = 0; i < m->n_layers; i++) {
        if (!m->layers[i].out_folded) continue;
        folded++;
        cr_expect_eq(m->layers[i].type, RF_L_BATCHNORM, "layer %d %s folded", i, m->layers[i].name);
        cr_expect_null(rf_model_layer_output(m, i), "layer %d: a folded output must not be offered", i);
    }
    cr_expect_eq(folded, 3, "%d batch norms folded, expected 3 (abn2, bbn2, cbn2)", folded);
    for (size_t i = 0; i < m->acts_numel; i++) m->acts[i] = __builtin_nanf("");
    grads_after(m, &ctx, x, dl, B, g[1], d[1], 1);
    grads_after(p, &ctx, x, dl, B, g[2], d[2], 0);
    for (int i = 0; i < p->n_layers; i++) cr_expect_eq(p->layers[i].out_folded, 0, "no_fuse folded layer %d", i);
    expect_three_legs(m, g, d, nx);
    free(x); free(dl);
    rf_model_free(m);
    rf_model_free(p);
}
Test(fuse, bn_fold_and_option_a_written) {
    expect_fold_written(resnet_spec);
    expect_fold_written(resnet16_spec);   /* the option-A kernels' vector bodies */
}

/* The folded add's plane kernel against its plain reference (batch norm's
 * affine into a buffer, then add2_relu / relu_v), bit for bit: lengths
 * 1-200 (vector bodies and tails), with and without the shortcut, inputs
 * that make exact zeros and -0 sums. */
Test(fuse, affine_add_relu_kernel) {
    float *x = randn(200, 21), *s = randn(200, 22), y0[200], y1[200];
    for (int i = 0; i < 200; i += 7) { x[i] = 0.0f; s[i] = -0.0f; }
    for (int i = 3; i < 200; i += 11) s[i] = -(x[i] * 0.75f - 0.25f);
    for (int n = 1; n <= 200; n += (n < 40 ? 1 : 23))
        for (int sh = 0; sh < 2; sh++) {
            memset(y0, 0x7f, sizeof y0);
            memset(y1, 0x7f, sizeof y1);
            rf_nn_affine_add_relu(y0, x, sh ? s : NULL, (size_t)n, 0.75f, -0.25f);
            rf_nn_affine_add_relu_ref(y1, x, sh ? s : NULL, (size_t)n, 0.75f, -0.25f);
            cr_expect(memcmp(y0, y1, sizeof y0) == 0, "n %d shortcut %d: kernel and reference differ", n, sh);
        }
    free(x);
    free(s);
}
