/* Fuzz target: the remote-store mirror's spool queue (LOCAL/.spool/queue),
 * read back by rf_mirror_open after a crash or an outage. The input is
 * written as the spool file of a scratch store and the mirror opened on an
 * unreachable URL (opening does no network I/O). Every path it accepts is
 * later joined to the local root and the remote base, so none may contain
 * "..", start with '/' or '.', or hold other characters than [A-Za-z0-9._/-]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "raffle/net.h"

static char root[256];

static void cleanup(void) {   /* the mirror may have left .spool/queue or its temp files */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (root[0] && system(cmd) != 0) root[0] = '\0';
}

static int setup(void) {
    if (root[0]) return 0;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/rf_fuzz_spool_%d", base, (int)getpid());
    char spool[300];
    snprintf(spool, sizeof spool, "%s/.spool", root);
    if (mkdir(root, 0700) != 0 || mkdir(spool, 0700) != 0) { root[0] = '\0'; return -1; }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (setup() != 0) return 0;
    char path[320];
    snprintf(path, sizeof path, "%s/.spool/queue", root);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_mirror *m = NULL;
    if (rf_mirror_open(&ctx, "http://127.0.0.1:9/store/", root, &m) == RF_OK) rf_mirror_free(m);
    unlink(path);
    return 0;
}
