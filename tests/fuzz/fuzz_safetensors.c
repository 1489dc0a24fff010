/* Fuzz target: safetensors image (Hugging Face) parser, then float32
 * conversion of every tensor it accepted (data pointers must stay inside the
 * input buffer). */
#include "raffle/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_safetensors *st = NULL;
    if (rf_safetensors_parse(&ctx, data, size, &st) != RF_OK) return 0;
    for (int i = 0; i < st->n; i++) {
        float *f = NULL;
        if (rf_st_tensor_to_f32(&ctx, &st->t[i], &f) == RF_OK) rf_free(f);
        if (rf_safetensors_find(st, st->t[i].name) == NULL) __builtin_trap();
    }
    rf_safetensors_free(st);
    return 0;
}
