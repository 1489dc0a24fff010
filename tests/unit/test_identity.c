/* Issue 22's promise at the level of a whole task: one small training task
 * gives the same checkpoint bytes whatever instruction set (RAFFLE_ISA =
 * scalar, avx2, avx512) and thread count (1, 2) runs it. The tasks run
 * through rf_task_run_dir, as `raffle run` does, and the models cover every
 * path the engine has: the direct convolution (few output channels: lane
 * partial sums for dW; more: tiles; unpadded 5x5: the wide input gradient;
 * padded: the flipped-kernel one), strided im2col + GEMM, Winograd (forward,
 * input and weight gradient), batch norm, a residual add, max-pool, dropout,
 * GELU, gradient-norm clipping, and a transformer (patch embedding,
 * attention, layer norm, chunked blocks). The AVX-512 leg is a test of its
 * own that skips, saying so, on a CPU without AVX-512. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "raffle/gemm.h"
#include "raffle/kernels.h"
#include "raffle/task.h"

static const char conv_spec[] =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":["
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

typedef struct run { char dir[64]; char spec[128]; } run;

/* A scratch directory holding the spec file (one per test: the same model
 * path in every run's settings). */
static void run_open(run *r, const char *spec) {
    snprintf(r->dir, sizeof r->dir, "/tmp/raffle_identity_XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir));
    snprintf(r->spec, sizeof r->spec, "%s/model.json", r->dir);
    FILE *f = fopen(r->spec, "w");
    cr_assert_not_null(f);
    fputs(spec, f);
    fclose(f);
}

/* Trains the spec once as `raffle run` would, with the kernels at `isa`
 * (RAFFLE_ISA, the option's default: not a task setting, so not in the
 * checkpoint) and `threads` threads; returns the checkpoint's bytes. */
static unsigned char *train_once(const run *r, const char *isa, int threads, size_t *n) {
    char task[96], json[1024], path[160];
    snprintf(task, sizeof task, "%s/%s-%d", r->dir, isa, threads);
    cr_assert_eq(mkdir(task, 0755), 0);
    snprintf(json, sizeof json,
             "{\"settings\":{\"kind\":\"train\",\"data\":\"synthetic:96\",\"model\":\"%s\",\"seed\":3,"
             "\"iterations\":3,\"batch\":24,\"clip_norm\":0.5,\"eval_limit\":16},\"parents\":[]}",
             r->spec);
    snprintf(path, sizeof path, "%s/task.json", task);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
    setenv("RAFFLE_ISA", isa, 1);
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
static void same_bytes(const char *spec, const char *const *isas, const int *threads, int legs) {
    run r;
    run_open(&r, spec);
    size_t n0;
    unsigned char *ref = train_once(&r, isas[0], threads[0], &n0);
    for (int i = 1; i < legs; i++) {
        size_t n;
        unsigned char *got = train_once(&r, isas[i], threads[i], &n);
        cr_assert(n == n0 && memcmp(got, ref, n) == 0, "checkpoint of %s with %d threads differs from %s with %d",
                  isas[i], threads[i], isas[0], threads[0]);
        rf_free(got);
    }
    rf_free(ref);
    run_close(&r);
}

Test(identity, conv_net_scalar_avx2_and_threads) {
    need(RF_ISA_AVX2);
    static const char *const isas[] = {"scalar", "avx2", "avx2", "scalar"};
    static const int threads[] = {1, 1, 2, 2};
    same_bytes(conv_spec, isas, threads, 4);
}

Test(identity, conv_net_avx512) {
    need(RF_ISA_AVX512);
    static const char *const isas[] = {"scalar", "avx512", "avx512"};
    static const int threads[] = {1, 1, 2};
    same_bytes(conv_spec, isas, threads, 3);
}

Test(identity, transformer_scalar_avx2_and_threads) {
    need(RF_ISA_AVX2);
    static const char *const isas[] = {"scalar", "avx2", "avx2"};
    static const int threads[] = {1, 1, 2};
    same_bytes(vit_spec, isas, threads, 3);
}

Test(identity, transformer_avx512) {
    need(RF_ISA_AVX512);
    static const char *const isas[] = {"scalar", "avx512", "avx512"};
    static const int threads[] = {1, 1, 2};
    same_bytes(vit_spec, isas, threads, 3);
}
