/* Weight sharing applied to a trained checkpoint, without any fine-tuning:
 * every weight tensor (ndim >= 2) is clustered with rf_kmeans_share at the
 * given index width (its mask kept) and stored as a (sparse-)codebook
 * tensor; everything else (biases, norms) is copied. The output is an
 * ordinary checkpoint (`raffle eval`, `raffle inspect` read it), so this
 * measures the size and accuracy of Deep Compression's quantization step
 * alone, before the centroid fine-tuning the wiring phase adds.
 * Build and run: bench/cbench.sh bench/lowbit/share_ckpt.c IN.rckpt BITS OUT.rckpt */
#include "raffle/ckpt.h"
#include "raffle/lowbit.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s IN.rckpt BITS OUT.rckpt\n", argv[0]); return 2; }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    int bits = atoi(argv[2]);
    rf_ckpt *in, *out;
    if (rf_ckpt_read(&ctx, argv[1], &in) || rf_ckpt_new(&ctx, &out) || rf_ckpt_set_meta(&ctx, out, in->meta_json)) {
        fprintf(stderr, "%s\n", rf_ctx_error(&ctx));
        return 1;
    }
    uint64_t raw = 0;
    for (int i = 0; i < in->n; i++) {
        const rf_ckpt_tensor *t = &in->t[i];
        size_t n = (size_t)rf_ckpt_tensor_numel(t);
        raw += 4 * n;
        rf_status s;
        if (t->ndim < 2 || t->dtype != RF_F32) {
            s = rf_ckpt_add_copy(&ctx, out, t);
        } else {
            float *w, cb[256];
            uint8_t *idx = malloc(n + 1);
            rf_kmeans_info info;
            s = rf_ckpt_tensor_to_f32(&ctx, t, &w);
            if (!s) s = rf_kmeans_share(&ctx, w, t->mask, n, bits, 0, cb, idx, &info);
            if (!s) s = rf_ckpt_add_codebook(&ctx, out, t->name, t->ndim, t->shape, idx, t->mask, bits, cb);
            if (!s)
                printf("%-24s %8zu weights, %7d kept, %d bits: %3d Lloyd rounds%s, %d empty clusters\n", t->name, n, info.kept, bits,
                       info.iterations, info.converged ? "" : " (not converged)", info.empty);
            if (!s) rf_free(w);
            free(idx);
        }
        if (s) { fprintf(stderr, "%s: %s\n", t->name, rf_ctx_error(&ctx)); return 1; }
    }
    if (rf_ckpt_write(&ctx, out, argv[3])) { fprintf(stderr, "%s\n", rf_ctx_error(&ctx)); return 1; }
    printf("%s: %llu bytes, %.1fx smaller than raw fp32 (%llu bytes)\n", argv[3], (unsigned long long)out->file_bytes,
           (double)raw / (double)out->file_bytes, (unsigned long long)raw);
    rf_ckpt_free(in);
    rf_ckpt_free(out);
    return 0;
}
