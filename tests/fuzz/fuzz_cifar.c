/* Fuzz target: CIFAR archives and record files. The input is written to a
 * scratch file and read by rf_cifar_read as an archive (gzip detection,
 * streaming inflate, the tar reader: headers, checksums, sizes, names,
 * truncation, then the record checks of each member), and parsed directly as
 * a record file of each kind (rf_cifar_parse). With a 64 MiB cap, a member
 * whose header claims more must stop at the cap. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raffle/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[256];
    if (!path[0])
        snprintf(path, sizeof path, "%s/rf_fuzz_cifar_%d.tar.gz", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_dataset *tr = NULL, *te = NULL;
    for (int k = 0; k < RF_CIFAR_KIND_COUNT_; k += 1 + (k == 0)) {   /* CIFAR-10 and CIFAR-100 layouts */
        if (rf_cifar_read(&ctx, (rf_cifar_kind)k, path, &tr, &te) == RF_OK) {
            rf_dataset_free(tr);
            rf_dataset_free(te);
        }
    }
    unlink(path);
    for (int k = 0; k < RF_CIFAR_KIND_COUNT_; k++) {
        rf_dataset *d = NULL;
        if (rf_cifar_parse(&ctx, (rf_cifar_kind)k, data, size, "fuzz", &d) == RF_OK) rf_dataset_free(d);
    }
    return 0;
}
