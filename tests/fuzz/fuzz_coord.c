/* Fuzz target: the coordinator's message header decoder (what a rank
 * receives from another rank on tag 1). An accepted header must survive an
 * encode/decode round trip unchanged. The payload parsers behind it (the
 * RESULT blob's JSON, checkpoint chunks) are file-local to src/coord/coord.c;
 * the checkpoint they carry goes through rf_ckpt_decode (fuzz_ckpt). */
#include <string.h>
#include "raffle/coord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_coord_msg m, m2;
    if (rf_coord_msg_decode(&ctx, data, size, &m) != RF_OK) return 0;
    unsigned char b[RF_COORD_HDR_BYTES];
    rf_coord_msg_encode(&m, b);
    if (rf_coord_msg_decode(&ctx, b, sizeof b, &m2) != RF_OK) __builtin_trap();
    if (memcmp(&m, &m2, sizeof m) != 0) __builtin_trap();
    return 0;
}
