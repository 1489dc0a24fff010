/* Does an N:M sparse fp32 kernel beat raffle's unstructured sparse kernel
 * (rf_spmm) at the same sparsity on this CPU? 2:4 (50%) and 1:4 (75%) on
 * the presets' layer shapes, at batch 1, 16 and 64 (rows = batch x rows per
 * sample, conv im2col rows capped at 2,048 as in `raffle bench kernels`),
 * one thread, side by side in one run:
 *   unstr  rf_spmm on a random unstructured mask of the same sparsity
 *          (the dispatched kernel: ELL slots below 8 rows and for N <= 16 or
 *          K <= 16, transposed panels otherwise);
 *   nm@sp  rf_spmm on the N:M mask itself;
 *   nm     the N:M kernel below;
 *   dense  OpenBLAS sgemm on the dense weights.
 * Each time is the best of 20 samples of >= 0.2 ms of thread CPU time, the
 * four kernels' samples interleaved.
 *
 * The N:M kernel timed is the slot kernel (src/kernels/nm_simd.c) at every
 * row count, whatever rf_nm_spmm's rule would pick: ELL slots without
 * padding (with M dividing 16, a tile of 16 output channels x 16 columns
 * is exactly 16 N / M slots of 80 bytes; raffle's unstructured ELL slots
 * take 128 bytes and pay for each tile's fullest row). Checked against
 * rf_nm_spmm_ref (bit for bit) before timing.
 * Build and run: bench/cbench.sh bench/lowbit/nm_vs_unstructured.c [--json FILE] */
#include "raffle/kernels.h"
#include "raffle/lowbit.h"
#include "lowbit_bench.h"
#include "kernels/kern_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *model, *layer; int N, K, rows_per_sample; } shape;
static const shape shapes[] = {
    {"lenet-300-100", "fc1", 300, 784, 1}, {"lenet-300-100", "fc2", 100, 300, 1}, {"lenet-300-100", "fc3", 10, 100, 1},
    {"conv-2", "conv2", 64, 576, 784},     {"conv-2", "fc1", 256, 12544, 1},     {"conv-2", "fc2", 256, 256, 1},
    {"conv-2", "fc3", 10, 256, 1},         {"vit-tiny", "qkv", 192, 64, 17},     {"vit-tiny", "proj", 64, 64, 17},
    {"vit-tiny", "mlp1", 256, 64, 17},     {"vit-tiny", "mlp2", 64, 256, 17},
    /* K = 9 and 49 (conv-2 conv1, vit-tiny patch): M = 4 does not divide them */
};

typedef struct { const rf_spmat *un, *nmsp; const rf_nmmat *nm; const float *X, *W; float *Y; int M, N, K; } job;

static void run(const void *jv, int which) {
    const job *j = jv;
    switch (which) {
    case 0: rf_spmm(j->un, j->X, NULL, j->Y, j->M); break;
    case 1: rf_spmm(j->nmsp, j->X, NULL, j->Y, j->M); break;
    case 2: rf_nm_spmm_avx512(j->nm, j->X, NULL, j->Y, j->M); break;
    default: rf_linear_f32(j->X, j->W, NULL, j->Y, j->M, j->N, j->K); break;
    }
}

int main(int argc, char **argv) {
    const char *json = argc > 2 && !strcmp(argv[1], "--json") ? argv[2] : NULL;
    if (rf_kernels_cpu_isa() < RF_ISA_AVX512) { fprintf(stderr, "the N:M slot kernel needs AVX-512\n"); return 77; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_rng r;
    rf_rng_init(&r, 17, 0);
    char cpu[200];
    lb_cpu_name(cpu, sizeof cpu);
    FILE *js = json ? fopen(json, "w") : NULL;
    if (js) fprintf(js, "{\"cpu\": \"%s\", \"isa\": \"%s\", \"results\": [\n", cpu, rf_isa_name(rf_kernels_isa()));
    int first = 1;
    printf("cpu: %s, isa %s; time per call in us; speed-up = unstr / nm\n", cpu, rf_isa_name(rf_kernels_isa()));
    printf("%-14s %-5s %10s %4s %5s %9s %9s %9s %9s %8s %8s %8s\n", "model", "layer", "NxK", "n:m", "rows", "unstr", "nm@sp", "nm",
           "dense", "nm/unstr", "nm/nm@sp", "nm/dense");
    static const int pats[][2] = {{2, 4}, {1, 4}};
    static const int batches[] = {1, 16, 64};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *sh = &shapes[si];
        const int N = sh->N, K = sh->K;
        float *W = malloc(sizeof(float) * (size_t)N * K), *S = malloc(sizeof(float) * (size_t)N * K);
        float *Wnm = malloc(sizeof(float) * (size_t)N * K), *Wun = malloc(sizeof(float) * (size_t)N * K);
        uint8_t *mask = malloc((size_t)N * K);
        for (size_t i = 0; i < (size_t)N * K; i++) { W[i] = rf_rng_normal(&r); S[i] = fabsf(W[i]); }
        for (int p = 0; p < 2; p++) {
            const int n = pats[p][0], m = pats[p][1];
            if (rf_nm_select(&ctx, S, N, K, n, m, mask)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
            for (size_t i = 0; i < (size_t)N * K; i++) Wnm[i] = mask[i] ? W[i] : 0.0f;
            /* unstructured: exactly the same number of zeros, at random places */
            for (size_t i = 0; i < (size_t)N * K; i++) Wun[i] = W[i];
            size_t zeros = (size_t)N * K / (size_t)m * (size_t)(m - n), done = 0;
            while (done < zeros) {
                size_t i = rf_rng_below(&r, (uint32_t)((size_t)N * K));
                if (Wun[i] != 0.0f) { Wun[i] = 0.0f; done++; }
            }
            rf_spmat *un, *nmsp;
            if (rf_spmat_pack(&ctx, Wun, N, K, &un) || rf_spmat_pack(&ctx, Wnm, N, K, &nmsp)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
            rf_nmmat *nm;
            if (rf_nmmat_pack(&ctx, W, mask, N, K, n, m, &nm)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
            for (int bi = 0; bi < 3; bi++) {
                int M = batches[bi] * sh->rows_per_sample;
                if (M > 2048) M = 2048;
                if (bi && M == (batches[bi - 1] * sh->rows_per_sample > 2048 ? 2048 : batches[bi - 1] * sh->rows_per_sample)) continue;
                float *X = malloc(sizeof(float) * (size_t)M * K), *Y = malloc(sizeof(float) * (size_t)M * N);
                float *Y2 = malloc(sizeof(float) * (size_t)M * N);
                for (size_t i = 0; i < (size_t)M * K; i++) X[i] = rf_rng_normal(&r);
                rf_nm_spmm_avx512(nm, X, NULL, Y, M);
                rf_nm_spmm_ref(nm, X, NULL, Y2, M);
                if (memcmp(Y, Y2, sizeof(float) * (size_t)M * N)) { fprintf(stderr, "N:M kernel differs from its reference\n"); return 1; }
                job j = {un, nmsp, nm, X, Wnm, Y, M, N, K};
                double t[4];
                lb_time_interleaved(run, &j, 4, 20, t);
                printf("%-14s %-5s %5dx%-5d %d:%d %5d %9.2f %9.2f %9.2f %9.2f %8.2f %8.2f %8.2f\n", sh->model, sh->layer, N, K, n, m,
                       M, t[0] * 1e6, t[1] * 1e6, t[2] * 1e6, t[3] * 1e6, t[0] / t[2], t[1] / t[2], t[3] / t[2]);
                if (js)
                    fprintf(js, "%s  {\"model\": \"%s\", \"layer\": \"%s\", \"N\": %d, \"K\": %d, \"n\": %d, \"m\": %d, \"batch\": %d, "
                                "\"rows\": %d, \"unstructured_us\": %.4f, \"spmm_on_nm_us\": %.4f, \"nm_us\": %.4f, \"dense_us\": %.4f}",
                            first ? "" : ",\n", sh->model, sh->layer, N, K, n, m, batches[bi], M, t[0] * 1e6, t[1] * 1e6, t[2] * 1e6,
                            t[3] * 1e6);
                first = 0;
                free(X); free(Y); free(Y2);
            }
            rf_spmat_free(un); rf_spmat_free(nmsp); rf_nmmat_free(nm);
        }
        free(W); free(S); free(Wnm); free(Wun); free(mask);
    }
    if (js) { fprintf(js, "\n]}\n"); fclose(js); }
    rf_kernels_release_workspace();
    return 0;
}
