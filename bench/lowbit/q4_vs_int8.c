/* int4 x u8 GEMM (rf_q4gemm) against the dense int8 kernel (rf_qgemm),
 * side by side in one run, on the presets' linear shapes whose row length
 * a group size of 32, 64 or 128 divides, at batch 1 and 64 (rows = batch x
 * tokens for vit-tiny's block products, as in `raffle bench kernels`), at
 * the best ISA level and at AVX2. One thread; each time is the best of 30
 * samples of >= 0.2 ms of thread CPU time, the int8 and int4 samples
 * interleaved so that both see the same machine load. The int8 kernel
 * returns int32 sums (the caller rescales per row); the int4 kernel returns
 * floats with its per-group scales applied, which is more work in the
 * kernel, so the comparison does not favour int4.
 * Build and run: bench/cbench.sh bench/lowbit/q4_vs_int8.c [--json FILE] */
#include "raffle/kernels.h"
#include "raffle/lowbit.h"
#include "lowbit_bench.h"
#include "raffle/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *model, *layer; int N, K, rows_per_sample; } shape;
static const shape shapes[] = {
    {"vit-tiny", "qkv", 192, 64, 17},       {"vit-tiny", "proj", 64, 64, 17},
    {"vit-tiny", "mlp1", 256, 64, 17},      {"vit-tiny", "mlp2", 64, 256, 17},
    {"conv-2", "fc1", 256, 12544, 1},       {"conv-2", "fc2", 256, 256, 1},
    {"conv-2", "fc3", 10, 256, 1},          {"mlp-800x2", "fc2", 800, 800, 1},
    {"mlp-800x2", "fc3", 10, 800, 1},
    /* no group size of 32/64/128 divides these rows: not timed, listed */
    {"lenet-300-100", "fc1", 300, 784, 1},  {"lenet-300-100", "fc2", 100, 300, 1},
    {"lenet-300-100", "fc3", 10, 100, 1},   {"lenet-5", "fc1", 120, 400, 1},
    {"mlp-1200x2", "fc2", 1200, 1200, 1},
};

typedef struct { const rf_qmat *q8; const rf_q4mat *q4; const uint8_t *A; int32_t *C; float *Y; int M; } job;

static void run(const void *jv, int which) {
    const job *j = jv;
    if (which) rf_q4gemm(j->q4, j->A, j->Y, j->M);
    else rf_qgemm(j->q8, j->A, j->C, j->M);
}

int main(int argc, char **argv) {
    const char *json = argc > 2 && !strcmp(argv[1], "--json") ? argv[2] : NULL;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_rng r;
    rf_rng_init(&r, 7, 0);
    char cpu[200];
    lb_cpu_name(cpu, sizeof cpu);
    FILE *js = json ? fopen(json, "w") : NULL;
    if (json && !js) { fprintf(stderr, "cannot write %s\n", json); return 1; }
    if (js) fprintf(js, "{\"cpu\": \"%s\", \"results\": [\n", cpu);
    int first = 1;
    rf_isa levels[2] = {rf_kernels_cpu_isa(), RF_ISA_AVX2};
    printf("cpu: %s\n", cpu);
    for (int l = 0; l < 2; l++) {
        if (l && levels[0] <= RF_ISA_AVX2) break;
        rf_kernels_force(levels[l]);
        printf("\nisa %s: time per call (us), int8 / int4 = speed-up of int4\n", rf_isa_name(rf_kernels_isa()));
        printf("%-14s %-5s %10s %5s %-9s %6s %10s %10s %8s %10s %10s\n", "model", "layer", "NxK", "gs", "mode", "rows", "int8 us",
               "int4 us", "int8/int4", "int8 bytes", "int4 bytes");
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const shape *sh = &shapes[si];
            int N = sh->N, K = sh->K;
            if (K % 32) {
                if (l == 0) printf("%-14s %-5s %5dx%-5d  no group size of 32/64/128 divides K\n", sh->model, sh->layer, N, K);
                continue;
            }
            int8_t *q8 = malloc((size_t)N * K), *q4 = malloc((size_t)N * K);
            float *w = malloc(sizeof(float) * (size_t)N * K), *s = malloc(sizeof(float) * (size_t)N * K / 32);
            int32_t *z = malloc(sizeof(int32_t) * (size_t)N * K / 32);
            float *sc = malloc(sizeof(float) * (size_t)N);
            for (size_t i = 0; i < (size_t)N * K; i++) w[i] = rf_rng_normal(&r);
            rf_quant_rows_s8(w, N, K, q8, sc);
            rf_qmat *m8;
            if (rf_qmat_pack(&ctx, q8, N, K, 0, &m8)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
            for (int gs = 32; gs <= 128; gs *= 2) {
                if (K % gs) continue;
                for (int mode = 0; mode < 2; mode++) {
                    if (mode == 1 && gs != 64 && K % 64 == 0) continue;   /* affine: one group size per shape */
                    if (mode == 1 && K % 64 && gs != 32) continue;
                    int32_t *zp = mode ? z : NULL;
                    if (rf_group_quantize(&ctx, w, N, K, 4, gs, (rf_group_mode)mode, q4, s, zp)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
                    rf_q4mat *m4;
                    if (rf_q4mat_pack(&ctx, q4, N, K, gs, s, zp, &m4)) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
                    static const int batches[] = {1, 64};
                    for (int bi = 0; bi < 2; bi++) {
                        int M = batches[bi] * sh->rows_per_sample;
                        uint8_t *A = malloc((size_t)M * K);
                        int32_t *C = malloc(sizeof(int32_t) * (size_t)M * N);
                        float *Y = malloc(sizeof(float) * (size_t)M * N);
                        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (uint8_t)rf_rng_u32(&r);
                        job j = {m8, m4, A, C, Y, M};
                        double t[2];
                        lb_time_interleaved(run, &j, 2, 30, t);
                        size_t b8 = (size_t)((N + 15) / 16 * 16) * (size_t)((K + 3) / 4 * 4), b4 = rf_q4mat_bytes(m4);
                        printf("%-14s %-5s %5dx%-5d %4d %-9s %6d %10.2f %10.2f %8.2f %10zu %10zu\n", sh->model, sh->layer, N, K, gs,
                               rf_group_mode_name((rf_group_mode)mode), M, t[0] * 1e6, t[1] * 1e6, t[0] / t[1], b8, b4);
                        if (js)
                            fprintf(js, "%s  {\"isa\": \"%s\", \"model\": \"%s\", \"layer\": \"%s\", \"N\": %d, \"K\": %d, \"group_size\": %d, "
                                        "\"mode\": \"%s\", \"batch\": %d, \"rows\": %d, \"int8_us\": %.4f, \"int4_us\": %.4f, "
                                        "\"int4_speedup\": %.4f, \"int8_weight_bytes\": %zu, \"int4_weight_bytes\": %zu}",
                                    first ? "" : ",\n", rf_isa_name(rf_kernels_isa()), sh->model, sh->layer, N, K, gs,
                                    rf_group_mode_name((rf_group_mode)mode), batches[bi], M, t[0] * 1e6, t[1] * 1e6, t[0] / t[1], b8, b4);
                        first = 0;
                        free(A); free(C); free(Y);
                    }
                    rf_q4mat_free(m4);
                }
            }
            rf_qmat_free(m8);
            free(q8); free(q4); free(w); free(s); free(z); free(sc);
        }
    }
    if (js) { fprintf(js, "\n]}\n"); fclose(js); }
    rf_kernels_release_workspace();
    return 0;
}
