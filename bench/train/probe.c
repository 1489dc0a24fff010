/* Benchmark helper linked against libraffle: prints a preset's JSON spec and
 * parameter count (so the PyTorch twin is built from the very same spec), or
 * the machine's measured FP32 FMA peak (the kernels module's probe). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/kernels.h"
#include "raffle/nn.h"

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "spec") == 0) {
        const char *spec = rf_model_preset(argv[2]);
        if (!spec) { fprintf(stderr, "probe: unknown preset %s (%s)\n", argv[2], rf_model_preset_names()); return 1; }
        puts(spec);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "params") == 0) {
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        rf_model *m;
        if (rf_model_create(&ctx, argv[2], &m) != RF_OK) { fprintf(stderr, "probe: %s\n", rf_ctx_error(&ctx)); return 1; }
        printf("%zu\n", m->n_params);
        rf_model_free(m);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "peak") == 0) {
        rf_kernels_init();
        printf("%.2f\n", rf_bench_fp32_peak(argc >= 3 ? atof(argv[2]) : 1.0));
        return 0;
    }
    fprintf(stderr, "usage: probe spec NAME | probe params NAME | probe peak [SECONDS]\n");
    return 2;
}
