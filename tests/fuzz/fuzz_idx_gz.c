/* Fuzz target: IDX files as read from disk (rf_idx_read), which is where
 * gzip is detected and inflated in memory under the cap (rf_idx_parse sees
 * only the inflated image: fuzz_idx). The input is written to a scratch file
 * first; with a 64 MiB cap, a gzip bomb must stop at the cap. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raffle/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[256];
    if (!path[0])
        snprintf(path, sizeof path, "%s/rf_fuzz_idx_%d.gz", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_tensor *t = NULL;
    if (rf_idx_read(&ctx, path, &t) == RF_OK) rf_tensor_free(t);
    unlink(path);
    return 0;
}
