/* Quantization: primitives against hand-computed values and error bounds,
 * the int8 path against its reference and the fake-quant float path, PTQ
 * accuracy, QAT -> int8 conversion, checkpoint round trip, rejection paths. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raffle/quant.h"
#include "raffle/kernels.h"

/* A small conv + MLP net: two conv-shaped and two linear products. */
static const char *SPEC =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"conv1\",\"out\":4,\"kernel\":5,\"padding\":2},{\"type\":\"relu\"},"
    "{\"type\":\"maxpool\",\"kernel\":2},"
    "{\"type\":\"conv2d\",\"name\":\"conv2\",\"out\":8,\"kernel\":3},{\"type\":\"relu\"},"
    "{\"type\":\"maxpool\",\"kernel\":2},{\"type\":\"flatten\"},"
    "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":32},{\"type\":\"relu\"},"
    "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}";

static rf_dataset *g_train, *g_test;

static void load_data(void) {
    if (g_train) return;
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_data_load(&ctx, "synthetic:3000:7", &g_train, &g_test), RF_OK, "%s", rf_ctx_error(&ctx));
}

/* spec trained for `iterations` Adam steps on the synthetic data, init seed `seed`. */
static rf_model *trained_spec(const char *spec, uint64_t seed, int iterations) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    load_data();
    rf_model *m;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_init(&ctx, m, seed), RF_OK);
    rf_train_cfg cfg;
    rf_train_cfg_default(&cfg);
    cfg.iterations = iterations;
    cfg.batch = 64;
    cfg.seed = 1;
    rf_optim_cfg_default(&cfg.optim, RF_OPT_ADAM);
    cfg.optim.lr = 2e-3f;
    rf_train_result r;
    cr_assert_eq(rf_train(&ctx, m, g_train, NULL, NULL, &cfg, NULL, NULL, &r), RF_OK, "%s", rf_ctx_error(&ctx));
    return m;
}

static rf_model *trained_model(int iterations) { return trained_spec(SPEC, 3, iterations); }

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (v[i] > v[b]) b = i;
    return b;
}

Test(quant, qparams_hand_computed) {
    rf_qparams p = rf_qparams_from_range(-1.0f, 3.0f);
    cr_assert_float_eq(p.scale, 4.0f / 255.0f, 1e-9);
    cr_assert_eq(p.zero_point, 64);                 /* round(1 / (4/255)) = round(63.75) */
    cr_assert_eq(rf_quant_u8(0.0f, p), 64);
    cr_assert_eq(rf_fake_quant_u8(0.0f, p), 0.0f);  /* zero is exact (Jacob §2.1) */
    cr_assert_eq(rf_quant_u8(100.0f, p), 255);      /* clamped */
    cr_assert_eq(rf_quant_u8(-100.0f, p), 0);
    /* a range not containing 0 is widened to contain it */
    rf_qparams r = rf_qparams_from_range(2.0f, 4.0f);
    cr_assert_eq(r.zero_point, 0);
    cr_assert_float_eq(r.scale, 4.0f / 255.0f, 1e-9);
    rf_qparams d = rf_qparams_from_range(0.0f, 0.0f);
    cr_assert_eq(d.scale, 1.0f);
}

Test(quant, u8_rounding_is_nearest_even_like_nearbyintf) {
    rf_qparams p = rf_qparams_from_range(-3.0f, 5.0f);
    float inv = 1.0f / p.scale;
    rf_rng rng; rf_rng_init(&rng, 3, 0);
    for (int i = 0; i < 20000; i++) {
        /* half of the probes sit exactly on .5 ties of the scaled value */
        float v = (i & 1) ? (float)((int)rf_rng_below(&rng, 600) - 300) + 0.5f : 600.0f * rf_rng_uniform(&rng) - 300.0f;
        float x = v / inv;
        float e = nearbyintf(x * inv) + (float)p.zero_point;
        uint8_t want = e <= 0.0f ? 0 : e >= 255.0f ? 255 : (uint8_t)e;
        cr_assert_eq(rf_quant_u8(x, p), want, "x %.9g: %d vs nearbyintf %d", x, rf_quant_u8(x, p), want);
    }
    cr_assert_eq(rf_quant_u8(NAN, p), 0);
    cr_assert_eq(rf_quant_u8(INFINITY, p), 255);
    cr_assert_eq(rf_quant_u8(-INFINITY, p), 0);
}

Test(quant, u8_array_fast_matches_reference) {
    rf_qparams p = rf_qparams_from_range(-2.0f, 6.0f);
    rf_rng rng; rf_rng_init(&rng, 8, 0);
    static const size_t sizes[] = {0, 1, 3, 7, 8, 9, 17, 64, 1001};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        size_t n = sizes[t];
        float x[1001];
        uint8_t a[1001], b[1001];
        for (size_t i = 0; i < n; i++) {
            float v = (i % 3 == 0) ? (float)((int)rf_rng_below(&rng, 800) - 400) + 0.5f : 800.0f * rf_rng_uniform(&rng) - 400.0f;
            x[i] = v * p.scale;
        }
        if (n > 5) { x[1] = NAN; x[2] = INFINITY; x[3] = -INFINITY; x[4] = 1e30f; x[5] = -1e30f; }
        rf_quant_u8_array(x, n, p, a);
        rf_quant_u8_array_ref(x, n, p, b);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(a[i], b[i], "n %zu, element %zu (x %g): fast %d ref %d", n, i, x[i], a[i], b[i]);
            cr_assert_eq(b[i], rf_quant_u8(x[i], p));
        }
    }
}

Test(quant, u8_round_trip_within_half_step) {
    rf_rng rng; rf_rng_init(&rng, 11, 0);
    for (int t = 0; t < 50; t++) {
        float lo = -5.0f * rf_rng_uniform(&rng), hi = 0.01f + 7.0f * rf_rng_uniform(&rng);
        rf_qparams p = rf_qparams_from_range(lo, hi);
        float rlo = p.scale * (float)(0 - p.zero_point), rhi = p.scale * (float)(255 - p.zero_point);
        for (int i = 0; i < 1000; i++) {
            float x = rlo + (rhi - rlo) * rf_rng_uniform(&rng);
            float e = fabsf(rf_fake_quant_u8(x, p) - x);
            cr_assert_leq(e, p.scale * 0.5f * (1.0f + 1e-4f) + 1e-7f, "x %g err %g scale %g", x, e, p.scale);
        }
    }
}

Test(quant, s8_rows_round_trip_within_half_step) {
    enum { N = 7, K = 33 };
    float W[N * K], F[N * K], s[N];
    int8_t q[N * K];
    rf_rng rng; rf_rng_init(&rng, 5, 0);
    for (int i = 0; i < N * K; i++) W[i] = rf_rng_normal(&rng) * (1.0f + (float)(i / K));
    for (int k = 0; k < K; k++) W[3 * K + k] = 0.0f;   /* an all-zero row */
    rf_quant_rows_s8(W, N, K, q, s);
    memcpy(F, W, sizeof W);
    rf_fake_quant_rows(F, N, K);
    for (int n = 0; n < N; n++) {
        float amax = 0.0f;
        int hit = 0;
        for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(W[n * K + k]));
        if (n == 3) { cr_assert_eq(s[n], 1.0f); } else { cr_assert_float_eq(s[n], amax / 127.0f, 1e-9); }
        for (int k = 0; k < K; k++) {
            int i = n * K + k;
            cr_assert(q[i] >= -127 && q[i] <= 127);
            hit |= q[i] == 127 || q[i] == -127;
            cr_assert_leq(fabsf(s[n] * q[i] - W[i]), s[n] * 0.5f * (1.0f + 1e-4f));
            cr_assert_eq(F[i], s[n] * (float)q[i]);       /* fake quant = dequant(quant) */
        }
        if (n != 3) cr_assert(hit, "row %d: the largest weight must map to +-127", n);
    }
}

Test(quant, int8_matches_reference_and_fake_quant_path) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_model(60);
    rf_quant *q;
    cr_assert_eq(rf_quant_new(&ctx, m, &q), RF_OK);
    cr_assert_eq(rf_quant_n_layers(q), 4);
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 128, 4, RF_CALIB_MINMAX, 0), RF_OK, "%s", rf_ctx_error(&ctx));
    const int B = 64, K = m->n_classes;
    float *a = malloc(sizeof(float) * B * K), *b = malloc(sizeof(float) * B * K), *c = malloc(sizeof(float) * B * K);
    const float *lg;
    /* per layer: one quantization step of an output is S_in * s_w[n]; compare
     * every quantized layer's output between the three paths */
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(a, lg, sizeof(float) * B * K);
    float *outs_int[16];
    int nq = rf_quant_n_layers(q);
    for (int i = 0; i < nq; i++) {
        const rf_qlayer_info *in = rf_quant_layer(q, i);
        size_t n = (size_t)B * m->layers[in->layer].out_size;
        outs_int[i] = malloc(n * sizeof(float));
        memcpy(outs_int[i], rf_model_layer_output(m, in->layer), n * sizeof(float));
    }
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8_REF), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(b, lg, sizeof(float) * B * K);
    for (int i = 0; i < B * K; i++) cr_assert_eq(a[i], b[i], "int8 kernel vs reference differ at %d", i);

    /* The float simulation runs layer by layer on its own inputs; feed each
     * layer the same input by comparing single-layer outputs along one run. */
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_FAKE_F32), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(c, lg, sizeof(float) * B * K);
    /* first quantized layer sees the identical input in both runs: its outputs
     * must agree within one output step */
    const rf_qlayer_info *in0 = rf_quant_layer(q, 0);
    const rf_layer *L0 = &m->layers[in0->layer];
    const float *f0 = rf_model_layer_output(m, in0->layer);
    size_t per_ch = L0->out_size / (size_t)in0->N;
    for (int bb = 0; bb < B; bb++)
        for (int n = 0; n < in0->N; n++) {
            float amax = 0.0f;
            const rf_param *w = NULL;
            for (int p = L0->first_param; p < L0->first_param + L0->n_params; p++)
                if (m->ptensors[p].role == RF_P_WEIGHT) w = &m->ptensors[p];
            for (int k = 0; k < in0->K; k++) amax = fmaxf(amax, fabsf(m->params[w->offset + (size_t)n * in0->K + k]));
            float step = in0->act.scale * (amax > 0 ? amax / 127.0f : 1.0f);
            for (size_t j = 0; j < per_ch; j++) {
                size_t i = (size_t)bb * L0->out_size + (size_t)n * per_ch + j;
                cr_assert_leq(fabsf(outs_int[0][i] - f0[i]), step, "output %zu: int8 %g fake %g step %g", i, outs_int[0][i], f0[i], step);
            }
        }
    int same = 0;
    for (int bb = 0; bb < B; bb++) same += argmax(a + bb * K, K) == argmax(c + bb * K, K);
    cr_assert_geq(same, B - 1, "int8 and fake-quant float argmax agree on %d of %d", same, B);
    for (int i = 0; i < nq; i++) free(outs_int[i]);
    free(a); free(b); free(c);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
}

Test(quant, ptq_stays_close_to_fp32) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_model(200), *m2;
    cr_assert_eq(rf_model_clone(&ctx, m, &m2), RF_OK);
    double acc32, acc8, accp, loss;
    cr_assert_eq(rf_evaluate(&ctx, m, g_test, 256, &acc32, &loss), RF_OK);
    cr_assert_gt(acc32, 0.5, "the fp32 model must have learned something (%g)", acc32);
    rf_quant *q;
    cr_assert_eq(rf_quant_new(&ctx, m, &q), RF_OK);
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 256, 4, RF_CALIB_MINMAX, 0), RF_OK);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
    cr_assert_eq(rf_evaluate(&ctx, m, g_test, 256, &acc8, &loss), RF_OK);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    cr_assert_leq(fabs(acc32 - acc8), 0.02, "fp32 %g vs int8 min-max %g", acc32, acc8);
    cr_log_info("fp32 %.4f, int8 min-max %.4f", acc32, acc8);
    rf_model_free(m);
    /* percentile calibration on an untouched copy of the same model */
    m = m2;
    cr_assert_eq(rf_quant_new(&ctx, m, &q), RF_OK);
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 256, 4, RF_CALIB_PERCENTILE, 99.99), RF_OK);
    for (int i = 0; i < rf_quant_n_layers(q); i++) cr_assert(rf_quant_layer(q, i)->calibrated);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
    cr_assert_eq(rf_evaluate(&ctx, m, g_test, 256, &accp, &loss), RF_OK);
    cr_assert_leq(fabs(acc32 - accp), 0.02, "fp32 %g vs int8 percentile %g", acc32, accp);
    cr_log_info("int8 percentile %.4f", accp);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
}

Test(quant, qat_converts_to_the_same_predictions) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_model(150);
    rf_qat_cfg qc;
    rf_qat_cfg_default(&qc);
    qc.freeze_after = 40;
    rf_qat *qat;
    cr_assert_eq(rf_qat_new(&ctx, m, g_train, &qc, &qat), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_train_hooks h;
    memset(&h, 0, sizeof h);
    rf_qat_hooks(qat, &h);
    rf_train_cfg cfg;
    rf_train_cfg_default(&cfg);
    cfg.iterations = 60;
    cfg.batch = 64;
    cfg.seed = 2;
    rf_optim_cfg_default(&cfg.optim, RF_OPT_ADAM);
    cfg.optim.lr = 1e-4f;
    rf_train_result r;
    cr_assert_eq(rf_train(&ctx, m, g_train, NULL, NULL, &cfg, NULL, &h, &r), RF_OK, "%s", rf_ctx_error(&ctx));
    /* the QAT graph: fake-quant weights swapped in (step past freeze: the
     * observers do not move), fake-quant activations via the hook */
    const int B = 200, K = m->n_classes;
    float *fq = malloc(sizeof(float) * B * K);
    const float *lg;
    cr_assert_eq(rf_qat_before_step(qat, m, 1000, 1000), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(fq, lg, sizeof(float) * B * K);
    cr_assert_eq(rf_qat_after_backward(qat, m, 1000), RF_OK);
    rf_quant *q;
    cr_assert_eq(rf_qat_convert(&ctx, qat, m, &q), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_null(m->hook);
    rf_qat_free(qat, m);
    cr_assert_eq(rf_quant_calib(q), RF_CALIB_QAT);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    int same = 0;
    for (int b = 0; b < B; b++) same += argmax(fq + b * K, K) == argmax(lg + b * K, K);
    /* asserted: the converted int8 model and the QAT fake-quant graph give the
     * same argmax on at least 99% of a fixed batch of 200 test samples */
    cr_assert_geq(same * 100, 99 * B, "same argmax on %d of %d", same, B);
    free(fq);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
}

Test(quant, checkpoint_round_trip_rebuilds_int8_path) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_model(40);
    rf_quant *q;
    cr_assert_eq(rf_quant_new(&ctx, m, &q), RF_OK);
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 128, 2, RF_CALIB_MINMAX, 0), RF_OK);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
    char path[] = "/tmp/raffle_test_quant_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    uint64_t bytes = 0;
    cr_assert_eq(rf_quant_save(&ctx, q, m, "{\"note\":1}", path, &bytes), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_gt(bytes, 0);
    const int B = 50, K = m->n_classes;
    const float *lg;
    float *a = malloc(sizeof(float) * B * K);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(a, lg, sizeof(float) * B * K);

    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_read(&ctx, path, &c), RF_OK);
    cr_assert(rf_quant_ckpt_is_quantized(c));
    const rf_ckpt_tensor *t = rf_ckpt_find(c, "fc1.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, RF_I8);
    cr_assert_eq(t->storage, RF_STORE_INT8);
    cr_assert_not_null(t->scales);
    rf_ckpt_free(c);

    rf_model *m2;
    rf_quant *q2;
    cr_assert_eq(rf_quant_load(&ctx, path, &m2, &q2), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_not_null(q2);
    cr_assert_eq(rf_quant_n_layers(q2), rf_quant_n_layers(q));
    for (int i = 0; i < rf_quant_n_layers(q); i++) {
        cr_assert_eq(rf_quant_layer(q2, i)->act.scale, rf_quant_layer(q, i)->act.scale);
        cr_assert_eq(rf_quant_layer(q2, i)->act.zero_point, rf_quant_layer(q, i)->act.zero_point);
    }
    cr_assert_eq(rf_model_forward(&ctx, m2, g_test->x, B, 0, &lg), RF_OK);
    for (int i = 0; i < B * K; i++) cr_assert_eq(lg[i], a[i], "logit %d: %g after reload vs %g", i, lg[i], a[i]);
    free(a);
    rf_quant_detach(q2, m2);
    rf_quant_free(q2);
    rf_model_free(m2);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
    unlink(path);
}

/* ---- products inside transformer blocks (per-weight overrides, nn.h) ------ */

/* A tiny ViT: patch_embed, one transformer block (4 products), cls pool, head. */
static const char *VIT_SPEC =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":["
    "{\"type\":\"patch_embed\",\"name\":\"patch_embed\",\"patch\":7,\"dim\":16},"
    "{\"type\":\"transformer\",\"name\":\"blocks.0\",\"heads\":2,\"mlp\":32},"
    "{\"type\":\"layernorm\",\"name\":\"norm\"},{\"type\":\"cls_pool\"},"
    "{\"type\":\"linear\",\"name\":\"head\",\"out\":10}]}";

static rf_model *trained_vit(int iterations) { return trained_spec(VIT_SPEC, 4, iterations); }

static const char *const vit_block_weights[4] = {"blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight",
                                                 "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"};

Test(quant, vit_block_products_int8_against_reference_and_fake_quant) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_vit(40);
    rf_quant *q;
    cr_assert_eq(rf_quant_new(&ctx, m, &q), RF_OK);
    cr_assert_eq(rf_quant_n_layers(q), 6, "patch_embed + 4 block products + head");
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 64, 2, RF_CALIB_MINMAX, 0), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int i = 0; i < 6; i++) cr_assert(rf_quant_layer(q, i)->calibrated, "product %d", i);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int k = 0; k < 4; k++) {
        const rf_param *w = rf_model_param(m, vit_block_weights[k]);
        cr_assert_not_null(w->infer_gemm, "%s has no int8 override", w->name);
    }
    /* Each block product on its own: the same input through the int8 path,
     * its scalar reference and the fake-quant float path; int8 and reference
     * are identical, int8 and fake within one output step S_in·s_w[n] (+ the
     * float rounding of the two sums). The input spans the calibrated range. */
    rf_rng r; rf_rng_init(&r, 3, 1);
    for (int i = 0; i < 6; i++) {
        const rf_qlayer_info *in = rf_quant_layer(q, i);
        rf_param *w = &m->ptensors[in->param];
        int t = m->layers[in->layer].type;
        if (t != RF_L_TRANSFORMER) continue;
        const int M = 7, N = in->N, K = in->K;
        float *X = malloc(sizeof(float) * M * K), *y8 = malloc(sizeof(float) * M * N);
        float *yr = malloc(sizeof(float) * M * N), *yf = malloc(sizeof(float) * M * N);
        for (int j = 0; j < M * K; j++) X[j] = in->lo + (in->hi - in->lo) * rf_rng_uniform(&r);
        cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
        cr_assert_eq(w->infer_gemm(w->infer_state, X, y8, M), RF_OK);
        cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8_REF), RF_OK);
        cr_assert_eq(w->infer_gemm(w->infer_state, X, yr, M), RF_OK);
        cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_FAKE_F32), RF_OK);
        cr_assert_eq(w->infer_gemm(w->infer_state, X, yf, M), RF_OK);
        const float *W = m->params + w->offset;   /* snapped: s_w[n]·q */
        for (int n = 0; n < N; n++) {
            float amax = 0.0f, sabs = 0.0f;
            for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(W[(size_t)n * K + k]));
            for (int k = 0; k < K; k++) sabs += fabsf(W[(size_t)n * K + k]) * fmaxf(fabsf(in->lo), fabsf(in->hi));
            float step = in->act.scale * (amax > 0 ? amax / 127.0f : 1.0f);
            for (int mm = 0; mm < M; mm++) {
                size_t o = (size_t)mm * N + n;
                cr_assert_eq(y8[o], yr[o], "%s out %zu: kernel vs reference", w->name, o);
                cr_assert_leq(fabsf(y8[o] - yf[o]), step + 1e-5f * sabs, "%s out %zu: int8 %g fake %g step %g",
                              w->name, o, y8[o], yf[o], step);
            }
        }
        free(X); free(y8); free(yr); free(yf);
    }
    /* Whole model: int8 kernel and reference agree bit for bit; the int8
     * model stays close to fp32 on the test split. */
    const int B = 64, C = m->n_classes;
    const float *lg;
    float *a = malloc(sizeof(float) * B * C);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(a, lg, sizeof(float) * B * C);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8_REF), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    for (int i = 0; i < B * C; i++) cr_assert_eq(a[i], lg[i], "logit %d", i);
    rf_quant_detach(q, m);
    for (int k = 0; k < 4; k++) cr_assert_null(rf_model_param(m, vit_block_weights[k])->infer_gemm);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);   /* float again */
    int same = 0;
    for (int b = 0; b < B; b++) same += argmax(a + b * C, C) == argmax(lg + b * C, C);
    cr_assert_geq(same, B - 3, "int8 vs fp32 argmax agree on %d of %d", same, B);
    free(a);
    rf_quant_free(q);
    rf_model_free(m);
}

Test(quant, vit_qat_covers_block_products_and_round_trips) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_vit(40);
    rf_qat_cfg qc;
    rf_qat_cfg_default(&qc);
    qc.freeze_after = 10;
    rf_qat *qat;
    cr_assert_eq(rf_qat_new(&ctx, m, g_train, &qc, &qat), RF_OK, "%s", rf_ctx_error(&ctx));
    for (int k = 0; k < 4; k++) cr_assert_not_null(rf_model_param(m, vit_block_weights[k])->train_act);
    rf_train_hooks h;
    memset(&h, 0, sizeof h);
    rf_qat_hooks(qat, &h);
    rf_train_cfg cfg;
    rf_train_cfg_default(&cfg);
    cfg.iterations = 20;
    cfg.batch = 32;
    cfg.seed = 2;
    rf_optim_cfg_default(&cfg.optim, RF_OPT_ADAM);
    cfg.optim.lr = 1e-4f;
    rf_train_result r;
    cr_assert_eq(rf_train(&ctx, m, g_train, NULL, NULL, &cfg, NULL, &h, &r), RF_OK, "%s", rf_ctx_error(&ctx));
    /* Converting needs every product's range observed: the block products'
     * observers only move through their train_act hooks. */
    rf_quant *q;
    cr_assert_eq(rf_qat_convert(&ctx, qat, m, &q), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_qat_free(qat, m);
    for (int k = 0; k < 4; k++) cr_assert_null(rf_model_param(m, vit_block_weights[k])->train_act);
    cr_assert_eq(rf_quant_n_layers(q), 6);
    for (int i = 0; i < 6; i++) cr_assert_lt(rf_quant_layer(q, i)->lo, rf_quant_layer(q, i)->hi);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK, "%s", rf_ctx_error(&ctx));
    const int B = 50, C = m->n_classes;
    const float *lg;
    float *a = malloc(sizeof(float) * B * C);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    memcpy(a, lg, sizeof(float) * B * C);
    /* the converted int8 model against its fake-quant float simulation */
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_FAKE_F32), RF_OK);
    cr_assert_eq(rf_model_forward(&ctx, m, g_test->x, B, 0, &lg), RF_OK);
    int same = 0;
    for (int b = 0; b < B; b++) same += argmax(a + b * C, C) == argmax(lg + b * C, C);
    cr_assert_geq(same, B - 1, "int8 vs fake-quant argmax agree on %d of %d", same, B);
    /* checkpoint: block weights stored as int8 with scales; reloading
     * rebuilds all 6 products and gives identical logits */
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_OK);
    char path[] = "/tmp/raffle_test_quant_vit_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(rf_quant_save(&ctx, q, m, NULL, path, NULL), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_ckpt *c;
    cr_assert_eq(rf_ckpt_read(&ctx, path, &c), RF_OK);
    for (int k = 0; k < 4; k++) {
        const rf_ckpt_tensor *t = rf_ckpt_find(c, vit_block_weights[k]);
        cr_assert_not_null(t);
        cr_assert_eq(t->dtype, RF_I8, "%s", vit_block_weights[k]);
        cr_assert_not_null(t->scales);
    }
    rf_ckpt_free(c);
    rf_model *m2;
    rf_quant *q2;
    cr_assert_eq(rf_quant_load(&ctx, path, &m2, &q2), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_not_null(q2);
    cr_assert_eq(rf_quant_n_layers(q2), 6);
    for (int k = 0; k < 4; k++) cr_assert_not_null(rf_model_param(m2, vit_block_weights[k])->infer_gemm);
    cr_assert_eq(rf_model_forward(&ctx, m2, g_test->x, B, 0, &lg), RF_OK);
    for (int i = 0; i < B * C; i++) cr_assert_eq(lg[i], a[i], "logit %d after reload", i);
    free(a);
    rf_quant_detach(q2, m2);
    rf_quant_free(q2);
    rf_model_free(m2);
    rf_quant_detach(q, m);
    rf_quant_free(q);
    rf_model_free(m);
    unlink(path);
}

Test(quant, rejections) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_model(5);
    rf_quant *q;
    cr_assert_eq(rf_quant_new(&ctx, m, &q), RF_OK);
    cr_assert_eq(rf_quant_enable(&ctx, q, m, RF_QPATH_INT8), RF_ERR_INVALID);   /* not calibrated */
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 64, 1, RF_CALIB_PERCENTILE, 30.0), RF_ERR_INVALID);
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 0, 1, RF_CALIB_MINMAX, 0), RF_ERR_INVALID);
    cr_assert_eq(rf_quant_calibrate(&ctx, q, m, g_train, 64, 1, RF_CALIB_QAT, 0), RF_ERR_INVALID);
    rf_ckpt *bad;
    cr_assert_eq(rf_ckpt_new(&ctx, &bad), RF_OK);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, bad, "{\"extra\":{\"quant\":{\"calib\":\"minmax\"}}}"), RF_OK);
    rf_quant *qa;
    cr_assert_eq(rf_quant_attach(&ctx, m, bad, &qa), RF_ERR_FORMAT);   /* no layers list */
    cr_assert_null(qa);
    cr_assert_eq(rf_ckpt_set_meta(&ctx, bad, "{\"extra\":null}"), RF_OK);
    cr_assert_eq(rf_quant_attach(&ctx, m, bad, &qa), RF_OK);           /* not quantized */
    cr_assert_null(qa);
    rf_ckpt_free(bad);
    for (int i = 0; i < m->n_layers; i++) cr_assert_null(m->layers[i].infer_gemm);
    rf_quant_free(q);
    rf_model *flat;
    cr_assert_eq(rf_model_from_spec(&ctx, "{\"input\":[1,2,2],\"classes\":4,\"layers\":[{\"type\":\"flatten\"}]}", &flat), RF_OK,
                 "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_quant_new(&ctx, flat, &q), RF_ERR_UNSUPPORTED);
    rf_model_free(flat);
    rf_model_free(m);
}

/* Fault injection (SQLite-style): the n-th allocation fails for every n
 * until the whole PTQ path succeeds; every failure must be an error status
 * with nothing leaked and nothing installed on the model. */
Test(quant, allocation_failures_are_errors_without_leaks) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = trained_model(5);
    const float *lg;
    cr_assert_eq(rf_model_forward(&ctx, m, g_train->x, 64, 0, &lg), RF_OK);   /* size the activations */
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        long live = rf_alloc_live();
        rf_quant *q = NULL;
        rf_alloc_fail_after(n);
        rf_status s = rf_quant_new(&ctx, m, &q);
        if (s == RF_OK) s = rf_quant_calibrate(&ctx, q, m, g_train, 64, 2, RF_CALIB_PERCENTILE, 99.9);
        if (s == RF_OK) s = rf_quant_enable(&ctx, q, m, RF_QPATH_INT8);
        if (s == RF_OK) s = rf_model_forward(&ctx, m, g_train->x, 64, 0, &lg);
        rf_alloc_fail_after(-1);
        if (s == RF_OK) ok = 1;
        else cr_assert(s == RF_ERR_NOMEM || s == RF_ERR_INTERNAL, "n %ld: status %d (%s)", n, s, rf_ctx_error(&ctx));
        rf_quant_detach(q, m);
        rf_quant_free(q);
        for (int i = 0; i < m->n_layers; i++) cr_assert_null(m->layers[i].infer_gemm);
        cr_assert_eq(rf_alloc_live(), live, "n %ld: %ld allocations leaked", n, rf_alloc_live() - live);
    }
    cr_assert(ok, "PTQ never succeeded within 200 allocations");
    rf_model_free(m);
}
