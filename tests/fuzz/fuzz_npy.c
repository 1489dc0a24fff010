/* Fuzz target: .npy parser. */
#include "raffle/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_tensor *t = NULL;
    if (rf_npy_parse(&ctx, data, size, "fuzz.npy", &t) == RF_OK) rf_tensor_free(t);
    return 0;
}
