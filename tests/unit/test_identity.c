/* Issue 22's promise at the level of a whole task: one small training task
 * gives the same checkpoint bytes whatever instruction set (RAFFLE_ISA =
 * scalar, avx2, avx512) and thread count (1, 2, 3) runs it. The tasks run
 * through rf_task_run_dir, as `raffle run` does, on four models: the
 * lenet-5 and resnet-20 presets (resnet-20 on 3x8x8 images written as
 * .npy files here, so its legs take seconds: Winograd 3x3 layers, stride-2
 * convs (backward on the direct kernels, conv=auto3), batch norm, option-A
 * residual adds, global average pooling), and
 * two specs (the conv net on 3x12x12 images) that cover every other path the engine
 * has: the direct convolution (few output channels: lane partial sums for
 * dW; more: tiles; unpadded 5x5: the wide input gradient; padded: the
 * flipped-kernel one), max-pool, dropout, GELU, gradient-norm clipping, and
 * a transformer (patch embedding, attention, layer norm, chunked blocks).
 * The AVX-512 legs are tests of their own that skip, saying so, on a CPU
 * without AVX-512. Work is split over the threads however small it is
 * (rf_threads_split_all), so the 2- and 3-thread legs take every split a
 * full-size model takes. Batch norm + ReLU and add + ReLU run fused (the
 * default; src/nn/model.c "fusion") in the conv net and in resnet-20, so
 * the fused kernels are in every leg. Each test takes 1-3 s of CPU on Zen 5. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "raffle/ckpt.h"
#include "raffle/data.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"
#include "raffle/task.h"

static const char conv_spec[] =
    "{\"input\":[3,12,12],\"classes\":10,\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"c1\",\"out\":8,\"kernel\":3,\"padding\":1},"
    "{\"type\":\"batchnorm\",\"name\":\"bn1\"},{\"type\":\"relu\",\"name\":\"r1\"},"
    "{\"type\":\"conv2d\",\"name\":\"c2\",\"out\":32,\"kernel\":3,\"stride\":2,\"padding\":1},"
    "{\"type\":\"relu\",\"name\":\"r2\"},"
    "{\"type\":\"conv2d\",\"name\":\"c3\",\"out\":32,\"kernel\":3,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bn3\"},"
    "{\"type\":\"add\",\"name\":\"add\",\"inputs\":[\"bn3\",\"r2\"]},{\"type\":\"relu\",\"name\":\"r3\"},"
    "{\"type\":\"conv2d\",\"name\":\"c4\",\"out\":16,\"kernel\":5},"
    "{\"type\":\"conv2d\",\"name\":\"c5\",\"out\":16,\"kernel\":3,\"padding\":1},"
    "{\"type\":\"maxpool\",\"kernel\":2},{\"type\":\"flatten\"},{\"type\":\"dropout\",\"p\":0.2},"
    "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":32},{\"type\":\"gelu\"},"
    "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":10}]}";

static const char vit_spec[] =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":["
    "{\"type\":\"patch_embed\",\"name\":\"pe\",\"patch\":7,\"dim\":32,\"cls\":1,\"pos\":1},"
    "{\"type\":\"transformer\",\"name\":\"b0\",\"heads\":2,\"mlp\":64},"
    "{\"type\":\"transformer\",\"name\":\"b1\",\"heads\":4,\"mlp\":48},"
    "{\"type\":\"layernorm\",\"name\":\"norm\"},{\"type\":\"cls_pool\"},"
    "{\"type\":\"linear\",\"name\":\"head\",\"out\":10}]}";

/* The stride-2 paths in a few layers (s2_spec): stride-2 3x3 convs without
 * bias whose input also feeds an option-A residual add (as in resnet-20's
 * layer2.0/3.0, so the input gradient adds into the add's), and a 1x1
 * stride-2 projection with bias (three of the four phases of its input
 * gradient take no taps). */
static const char s2_spec[] =
    "{\"input\":[3,8,8],\"classes\":10,\"layers\":["
    "{\"type\":\"conv2d\",\"name\":\"c1\",\"out\":8,\"kernel\":3,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bn1\"},{\"type\":\"relu\",\"name\":\"r1\"},"
    "{\"type\":\"conv2d\",\"name\":\"c2\",\"out\":16,\"kernel\":3,\"stride\":2,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bn2\"},{\"type\":\"relu\",\"name\":\"r2\"},"
    "{\"type\":\"conv2d\",\"name\":\"c3\",\"out\":16,\"kernel\":3,\"padding\":1,\"bias\":0},"
    "{\"type\":\"batchnorm\",\"name\":\"bn3\"},"
    "{\"type\":\"add\",\"name\":\"add\",\"inputs\":[\"bn3\",\"r1\"],\"shortcut\":\"A\"},"
    "{\"type\":\"relu\",\"name\":\"r3\"},"
    "{\"type\":\"conv2d\",\"name\":\"c4\",\"out\":17,\"kernel\":1,\"stride\":2},"
    "{\"type\":\"gap\",\"name\":\"gap\"},{\"type\":\"linear\",\"name\":\"fc\",\"out\":10}]}";

/* conv, bn: the engine option "conv" or "bn" as a task setting ("" : the default; conv's is auto3) */
typedef struct run { char dir[64]; char model[128], data[400]; int batch, iterations; double clip; const char *conv, *bn; } run;

/* dir/NAME.npy: a float32 [n, 3, side, side] image tensor (x) or int32 [n] labels (y). */
static void write_npy(const char *dir, const char *name, int n, int side, int labels, rf_rng *g) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    int64_t shape[4] = {n, 3, side, side};
    rf_tensor *t = NULL;
    cr_assert_eq(rf_tensor_new(&ctx, labels ? RF_I32 : RF_F32, labels ? 1 : 4, shape, &t), RF_OK);
    for (int64_t i = 0; i < rf_tensor_numel(t); i++) {
        if (labels) ((int32_t *)t->data)[i] = (int32_t)(rf_rng_u32(g) % 10);
        else ((float *)t->data)[i] = rf_rng_uniform(g);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    cr_assert_eq(rf_npy_write(&ctx, path, t), RF_OK, "%s", rf_ctx_error(&ctx));
    rf_tensor_free(t);
}

/* A scratch directory holding the spec file (one per test: the same model
 * path in every run's settings); model is a spec's JSON text or a preset's
 * name. */
/* side > 0: small RGB images (.npy files written here), else synthetic:96. */
static void run_open(run *r, const char *model, int batch, int iterations, int side, double clip) {
    snprintf(r->dir, sizeof r->dir, "/tmp/raffle_identity_XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir));
    r->batch = batch;
    r->iterations = iterations;
    r->clip = clip;
    snprintf(r->data, sizeof r->data, "synthetic:96");
    if (side > 0) {
        rf_rng g;
        rf_rng_init(&g, 22, 0);
        write_npy(r->dir, "trx", 40, side, 0, &g);
        write_npy(r->dir, "try", 40, side, 1, &g);
        write_npy(r->dir, "tex", 8, side, 0, &g);
        write_npy(r->dir, "tey", 8, side, 1, &g);
        snprintf(r->data, sizeof r->data, "%s/trx.npy,%s/try.npy,%s/tex.npy,%s/tey.npy", r->dir, r->dir, r->dir, r->dir);
    }
    if (model[0] != '{') { snprintf(r->model, sizeof r->model, "%s", model); return; }
    snprintf(r->model, sizeof r->model, "%s/model.json", r->dir);
    FILE *f = fopen(r->model, "w");
    cr_assert_not_null(f);
    fputs(model, f);
    fclose(f);
}

/* Trains the spec once as `raffle run` would, with the kernels at `isa`
 * (RAFFLE_ISA, the option's default: not a task setting, so not in the
 * checkpoint) and `threads` threads; returns the checkpoint's bytes. */
static unsigned char *train_once(const run *r, const char *isa, int threads, size_t *n) {
    char task[96], json[1536], path[160];
    snprintf(task, sizeof task, "%s/%s-%d", r->dir, isa, threads);
    cr_assert_eq(mkdir(task, 0755), 0);
    char eng[64] = "";
    if (r->conv && *r->conv) snprintf(eng, sizeof eng, ",\"engine\":{\"conv\":\"%s\"}", r->conv);
    else if (r->bn && *r->bn) snprintf(eng, sizeof eng, ",\"engine\":{\"bn\":\"%s\"}", r->bn);
    snprintf(json, sizeof json,
             "{\"settings\":{\"kind\":\"train\",\"data\":\"%s\",\"model\":\"%s\",\"seed\":3,"
             "\"iterations\":%d,\"batch\":%d,\"clip_norm\":%g,\"eval_limit\":16%s},\"parents\":[]}",
             r->data, r->model, r->iterations, r->batch, r->clip, eng);
    snprintf(path, sizeof path, "%s/task.json", task);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
    setenv("RAFFLE_ISA", isa, 1);
    rf_threads_split_all(1);   /* every split a large model would make, on these small ones */
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.engine.v[RF_ENGINE_THREADS] = threads;
    rf_status s = rf_task_run_dir(&ctx, task, NULL, -1);
    cr_assert_eq(s, RF_OK, "%s, %d threads: %s", isa, threads, rf_ctx_error(&ctx));
    cr_assert_eq(rf_kernels_isa() >= RF_ISA_AVX512, strcmp(isa, "avx512") == 0, "RAFFLE_ISA=%s did not apply", isa);
    unsetenv("RAFFLE_ISA");
    snprintf(path, sizeof path, "%s/model.rckpt", task);
    unsigned char *buf;
    cr_assert_eq(rf_read_file(&ctx, path, &buf, n), RF_OK, "%s", rf_ctx_error(&ctx));
    return buf;
}

static void run_close(const run *r) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    cr_assert_eq(system(cmd), 0);
}

static void need(rf_isa isa) {
    if (rf_kernels_cpu_isa() < isa)
        cr_skip_test("this CPU's best ISA is %s: it cannot run the %s leg", rf_isa_name(rf_kernels_cpu_isa()),
                     rf_isa_name(isa));
}

/* legs[i] (ISA, threads) against legs[0], byte for byte. */
static const char *conv_option = "";   /* the next same_bytes' engine conv option */
static const char *bn_option = "";     /* or its engine bn option (when conv_option is "") */
static void same_bytes(const char *model, int side, int batch, int iterations, double clip, const char *const *isas,
                       const int *threads, int legs) {
    run r;
    run_open(&r, model, batch, iterations, side, clip);
    r.conv = conv_option;
    r.bn = bn_option;
    size_t n0;
    unsigned char *ref = train_once(&r, isas[0], threads[0], &n0);
    for (int i = 1; i < legs; i++) {
        size_t n;
        unsigned char *got = train_once(&r, isas[i], threads[i], &n);
        cr_assert(n == n0 && memcmp(got, ref, n) == 0, "%s: checkpoint of %s with %d threads differs from %s with %d",
                  model[0] == '{' ? "spec" : model, isas[i], threads[i], isas[0], threads[0]);
        rf_free(got);
    }
    rf_free(ref);
    run_close(&r);
}

/* Without AVX-512: scalar and AVX2, 1, 2 and 3 threads. */
static void scalar_avx2(const char *model, int side, int batch, int iterations, double clip) {
    need(RF_ISA_AVX2);
    static const char *const isas[] = {"scalar", "avx2", "avx2", "avx2", "scalar"};
    static const int threads[] = {1, 1, 2, 3, 3};
    same_bytes(model, side, batch, iterations, clip, isas, threads, 5);
}

/* AVX-512 (1, 2, 3 threads) against scalar. */
static void avx512(const char *model, int side, int batch, int iterations, double clip) {
    need(RF_ISA_AVX512);
    static const char *const isas[] = {"scalar", "avx512", "avx512", "avx512"};
    static const int threads[] = {1, 1, 2, 3};
    same_bytes(model, side, batch, iterations, clip, isas, threads, 4);
}

/* The transformer trains without clipping: the optimizer takes the norm in
 * its update pass instead of a pass of its own. */
Test(identity, lenet5_scalar_avx2_threads) { scalar_avx2("lenet-5", 0, 24, 3, 0.5); }
Test(identity, lenet5_avx512) { avx512("lenet-5", 0, 24, 3, 0.5); }
Test(identity, resnet20_scalar_avx2_threads) { scalar_avx2("resnet-20", 8, 8, 2, 0.5); }
Test(identity, resnet20_avx512) { avx512("resnet-20", 8, 8, 2, 0.5); }
Test(identity, conv_net_scalar_avx2_threads) { scalar_avx2(conv_spec, 12, 16, 3, 0.5); }
Test(identity, conv_net_avx512) { avx512(conv_spec, 12, 16, 3, 0.5); }
/* The conv net's 3x3 layers under "auto" run F(4x4, 3x3) (maps up to 28x28,
 * c3 with 32 channels; resnet-20's above too); F(2x2, 3x3), which auto
 * keeps for wider maps, forced here on every 3x3 stride-1 layer. */
Test(identity, conv_net_winograd2_scalar_avx2_threads) {
    conv_option = "winograd";
    scalar_avx2(conv_spec, 12, 16, 3, 0.5);
}
Test(identity, conv_net_winograd2_avx512) {
    conv_option = "winograd";
    avx512(conv_spec, 12, 16, 3, 0.5);
}
/* The default conv=auto3 runs the stride-2 convs' backward on the direct
 * kernels (layer_conv.c s2_backward; resnet-20's and the conv net's legs
 * above). "auto" keeps the im2col path and its bits: its legs on s2_spec
 * (3 s of CPU for the three s2_net tests on Zen 5, load 4; resnet-20's
 * pair took 11 s). auto3's tensors differ from auto's: the value reaches
 * the layers. */
static void s2_net_auto(void (*legs)(const char *, int, int, int, double)) {
    conv_option = "auto";
    legs(s2_spec, 8, 8, 2, 0.5);
}
Test(identity, s2_net_auto_scalar_avx2_threads) { s2_net_auto(scalar_avx2); }
Test(identity, s2_net_auto_avx512) { s2_net_auto(avx512); }
/* The tensors (not the metadata, which records the option) of the two
 * checkpoints differ somewhere. */
static int tensors_differ(const unsigned char *a, size_t na, const unsigned char *b, size_t nb) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_ckpt *ca = NULL, *cb = NULL;
    cr_assert_eq(rf_ckpt_decode(&ctx, a, na, &ca), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_ckpt_decode(&ctx, b, nb, &cb), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(ca->n == cb->n && ca->n > 0);
    int differ = 0;
    for (int i = 0; i < ca->n; i++) {
        const rf_ckpt_tensor *t = rf_ckpt_find(cb, ca->t[i].name);
        cr_assert_not_null(t, "tensor %s missing", ca->t[i].name);
        size_t bytes = (size_t)rf_ckpt_tensor_numel(t) * rf_dtype_size(t->dtype);
        cr_assert_eq(rf_ckpt_tensor_numel(t), rf_ckpt_tensor_numel(&ca->t[i]));
        differ |= memcmp(t->data, ca->t[i].data, bytes) != 0;
    }
    rf_ckpt_free(ca);
    rf_ckpt_free(cb);
    return differ;
}

Test(identity, s2_net_auto3_not_auto) {
    size_t n0, n1;
    run r;
    run_open(&r, s2_spec, 8, 2, 8, 0.5);
    r.conv = "auto";
    r.bn = "";
    unsigned char *a = train_once(&r, "scalar", 1, &n0);
    run_close(&r);
    run_open(&r, s2_spec, 8, 2, 8, 0.5);
    r.conv = "auto3";
    r.bn = "";
    unsigned char *b = train_once(&r, "scalar", 1, &n1);
    run_close(&r);
    cr_assert(tensors_differ(a, n0, b, n1), "conv=auto3 trained the same tensors as auto: its path did not run");
    rf_free(a);
    rf_free(b);
}

Test(identity, transformer_scalar_avx2_threads) { scalar_avx2(vit_spec, 0, 24, 3, 0.0); }
Test(identity, transformer_avx512) { avx512(vit_spec, 0, 24, 3, 0.0); }
/* bn=twopass: batch norm's statistic as before session 6 (the mean, then
 * the centred squares; the default is onepass), on every BN layer of
 * resnet-20. */
Test(identity, resnet20_bn_twopass_scalar_avx2_threads) {
    bn_option = "twopass";
    scalar_avx2("resnet-20", 8, 8, 2, 0.5);
}
Test(identity, resnet20_bn_twopass_avx512) {
    bn_option = "twopass";
    avx512("resnet-20", 8, 8, 2, 0.5);
}
