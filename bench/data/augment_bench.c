/* Data-pipeline cost next to a training step: CIFAR records parsed per
 * second, and the time to draw one 128-sample batch of 32x32x3 images
 * without augmentation (a copy), with crop+flip (the fast kernel) and with
 * the per-pixel reference kernel, against a lower bound for one ResNet-20
 * training step at this core's measured FP32 FMA peak.
 *
 * ResNet-20 (He et al. 2016, CIFAR variant): 40.55 M multiply-adds per
 * 32x32 forward pass (conv1 0.44 M, stage 1 14.16 M, stages 2 and 3 12.98 M
 * each, fc 640); a training step is about 3x the forward (forward, input
 * gradient, weight gradient): 243 MFLOP per sample, 31.1 GFLOP per batch of
 * 128. At 100% of peak that is the fastest a step can be; real steps are
 * several times slower, so the ratio printed is an upper bound on the share
 * augmentation can take. bench/data/run.sh adds PyTorch's measured step.
 *
 *   bench/cbench.sh bench/data/augment_bench.c [RECORDS_PER_FILE] [BATCHES]
 * prints one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "raffle/data.h"
#include "raffle/kernels.h"

#define RESNET20_MACS 40551040.0

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_cifar_dir(const char *dir, int per_file) {
    static const char *const files[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    unsigned char *rec = malloc(3073);
    uint32_t s = 12345;
    for (int f = 0; f < 6; f++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, files[f]);
        FILE *o = fopen(p, "wb");
        if (!o) { free(rec); return -1; }
        for (int r = 0; r < per_file; r++) {
            for (int j = 0; j < 3073; j++) { s = s * 1664525u + 1013904223u; rec[j] = (unsigned char)(s >> 24); }
            rec[0] %= 10;
            fwrite(rec, 1, 3073, o);
        }
        fclose(o);
    }
    free(rec);
    return 0;
}

static void rm_dir(const char *dir) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "augment_bench: could not remove %s\n", dir);
}

typedef enum { COPY, AUGMENT, AUGMENT_REF } mode;

/* CPU seconds per batch for `batches` batches of 128. */
static double per_batch(rf_ctx *ctx, const rf_dataset *d, mode m, int batches, float *x, int64_t *idx) {
    rf_augment a = {4, 1};
    const size_t dim = 3072;
    float fill[3];
    for (int c = 0; c < 3; c++) fill[c] = -d->mean[c] / d->std[c];
    int64_t epoch = 0;
    double t0 = cpu_now();
    for (int done = 0; done < batches; epoch++) {
        rf_batcher b;
        if (rf_batcher_init(ctx, &b, d, 128, 1, epoch, 1, 1) != RF_OK) return -1;
        if (m == AUGMENT && rf_batcher_set_augment(ctx, &b, &a) != RF_OK) return -1;
        int n;
        while (done < batches && (n = rf_batcher_next(&b, m == AUGMENT_REF ? NULL : x, NULL, idx)) == 128) {
            if (m == AUGMENT_REF)
                for (int i = 0; i < n; i++) {
                    int dy, dx, f;
                    rf_augment_draw(&a, 1, epoch, idx[i], &dy, &dx, &f);
                    rf_augment_crop_flip_ref(d->x + (size_t)idx[i] * dim, 3, 32, 32, fill, 4, dy, dx, f, x + (size_t)i * dim);
                }
            done++;
        }
        rf_batcher_free(&b);
    }
    return (cpu_now() - t0) / batches;
}

int main(int argc, char **argv) {
    int per_file = argc > 1 ? atoi(argv[1]) : 2000;
    int batches = argc > 2 ? atoi(argv[2]) : 2000;
    if (per_file < 128 || batches < 1) { fprintf(stderr, "usage: augment_bench [RECORDS_PER_FILE>=128] [BATCHES]\n"); return 2; }
    rf_kernels_init();
    char dir[] = "/tmp/raffle-augbench-XXXXXX";
    if (!mkdtemp(dir) || write_cifar_dir(dir, per_file)) { fprintf(stderr, "augment_bench: cannot write %s\n", dir); return 1; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    char spec[1100];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    rf_data_opts o;
    rf_data_opts_default(&o);
    o.validation = per_file / 2;
    rf_data_splits sp;
    double t0 = cpu_now();
    rf_status s = rf_data_open(&ctx, spec, &o, &sp);
    double load = cpu_now() - t0;
    rm_dir(dir);
    if (s) { fprintf(stderr, "augment_bench: %s\n", rf_ctx_error(&ctx)); return 1; }
    int64_t records = sp.train_all->n + sp.test->n;
    float *x = rf_aligned_alloc(64, 128 * 3072 * sizeof(float));
    int64_t *idx = malloc(128 * sizeof *idx);
    double copy = per_batch(&ctx, &sp.train, COPY, batches, x, idx);
    double aug = per_batch(&ctx, &sp.train, AUGMENT, batches, x, idx);
    double ref = per_batch(&ctx, &sp.train, AUGMENT_REF, batches / 4 > 0 ? batches / 4 : 1, x, idx);
    double peak = rf_bench_fp32_peak(1.0);                 /* GFLOP/s, one core */
    double step_flop = 3.0 * 2.0 * RESNET20_MACS * 128.0;
    double step_lb = step_flop / (peak * 1e9);
    printf("{\"records\": %lld, \"load_cpu_s\": %.4f, \"load_us_per_record\": %.3f, "
           "\"batch\": 128, \"batches\": %d, \"copy_ms\": %.4f, \"augment_ms\": %.4f, \"augment_ref_ms\": %.4f, "
           "\"fp32_peak_gflops\": %.2f, \"resnet20_step_gflop\": %.2f, \"resnet20_step_at_peak_ms\": %.2f, "
           "\"augment_share_of_step_at_peak\": %.5f}\n",
           (long long)records, load, 1e6 * load / (double)records, batches, 1e3 * copy, 1e3 * aug, 1e3 * ref,
           peak, step_flop / 1e9, 1e3 * step_lb, (aug - copy) / step_lb);
    rf_free(x);
    free(idx);
    rf_data_splits_free(&sp);
    return 0;
}
