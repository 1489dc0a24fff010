/* Fuzz target: a remote store's report.json as `raffle fetch --checkpoints`
 * reads it (rf_fetch_index_parse). Every id it returns becomes a path
 * component, so each must be exactly 16 lowercase hex digits. */
#include <stdlib.h>
#include <string.h>
#include "raffle/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    memcpy(s, data, size);
    char (*ids)[17] = NULL;
    int n = 0;
    if (rf_fetch_index_parse(&ctx, s, size, &ids, &n) == RF_OK) {
        for (int i = 0; i < n; i++) {
            if (strlen(ids[i]) != 16) __builtin_trap();
            for (int k = 0; k < 16; k++)
                if (!((ids[i][k] >= '0' && ids[i][k] <= '9') || (ids[i][k] >= 'a' && ids[i][k] <= 'f'))) __builtin_trap();
        }
        rf_free(ids);
    }
    free(s);
    return 0;
}
