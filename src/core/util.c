/* Time, CRC32C, whole-file read and atomic write, mkdir -p. */
#define _GNU_SOURCE
#include "raffle/core.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double rf_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CRC32C, reflected polynomial 0x82F63B78. rf_crc32c_ref is table-driven
 * (slicing by 1, ~0.4 GB/s); rf_crc32c uses the SSE4.2 crc32 instruction
 * (8 bytes per step) where the CPU has it, chosen at run time. Checkpoint
 * checksums, and rank 0's check of every checkpoint a worker writes into a
 * shared store (issue 24), go through it. */
static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}
uint32_t rf_crc32c_ref(uint32_t crc, const void *data, size_t n) {
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) { crc_init(); __atomic_store_n(&ready, 1, __ATOMIC_RELEASE); }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); n--; }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
    }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

uint32_t rf_crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__x86_64__)
    static int hw = -1;
    int h = __atomic_load_n(&hw, __ATOMIC_RELAXED);
    if (h < 0) { __builtin_cpu_init(); h = __builtin_cpu_supports("sse4.2") ? 1 : 0; __atomic_store_n(&hw, h, __ATOMIC_RELAXED); }
    if (h) return crc32c_sse42(crc, data, n);
#endif
    return rf_crc32c_ref(crc, data, n);
}

static int write_all(int fd, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; n -= (size_t)w;
    }
    return 0;
}

rf_status rf_write_file_atomic(rf_ctx *ctx, const char *path, const void *data, size_t n) {
    size_t len = strlen(path);
    /* Both names are allocated before anything is written, so running out
     * of memory can never skip the directory fsync after a rename that
     * already happened (and report success for a rename that may not be
     * durable). */
    char *tmp = rf_malloc(len + 32), *dir = rf_strdup(path);
    if (!tmp || !dir) { rf_free(tmp); rf_free(dir); return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", path); }
    snprintf(tmp, len + 32, "%s.tmp.%ld", path, (long)getpid());
    rf_status s = RF_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = rf_error(ctx, RF_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    } else if (write_all(fd, data, n) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd); unlink(tmp);
        s = rf_error(ctx, RF_ERR_IO, "%s: write failed: %s", path, strerror(e));
    } else if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        s = rf_error(ctx, RF_ERR_IO, "%s: cannot publish: %s", path, strerror(e));
    } else {
        /* fsync the directory so the rename itself is durable; file systems
         * that cannot sync a directory say EINVAL, which is not a failure */
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash) { if (slash == dir) slash[1] = '\0'; else *slash = '\0'; d = dir; }
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0 && errno != EINVAL)
                s = rf_error(ctx, RF_ERR_IO, "%s: directory fsync failed: %s", path, strerror(errno));
            close(dfd);
        }
    }
    rf_free(tmp);
    rf_free(dir);
    return s;
}

rf_status rf_read_file(rf_ctx *ctx, const char *path, unsigned char **out, size_t *n) {
    *out = NULL; *n = 0;
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer
     * before the regular-file check below can refuse it (issue 19, defect
     * 10: `raffle validate fifo.json` blocked forever). It changes nothing
     * for a regular file, whose reads never block. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return rf_error(ctx, errno == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return rf_error(ctx, RF_ERR_IO, "%s: not a regular file", path);
    }
    rf_status s = rf_check_cap(ctx, (uint64_t)st.st_size, path);
    if (s) { close(fd); return s; }
    size_t size = (size_t)st.st_size;
    unsigned char *buf = rf_malloc(size + 1);
    if (!buf) { close(fd); return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", path); }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0) { if (errno == EINTR) continue; break; }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) { rf_free(buf); return rf_error(ctx, RF_ERR_IO, "%s: short read", path); }
    buf[size] = '\0';   /* convenient for text files; not counted in n */
    *out = buf; *n = size;
    return RF_OK;
}

rf_status rf_mkdirs(rf_ctx *ctx, const char *path) {
    char *p = rf_strdup(path);
    if (!p) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s; *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                rf_status st = rf_error(ctx, RF_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
                rf_free(p);
                return st;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    rf_free(p);
    return RF_OK;
}

int rf_pid_alive(long pid) {
    if (pid <= 0 || kill((pid_t)pid, 0) != 0) return pid > 0 && errno == EPERM;
    /* a zombie answers kill(pid, 0) but writes nothing any more: its parent
     * (an MPI launcher that has exited, say) has not reaped it yet */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');   /* "pid (comm) S ...": comm may hold spaces */
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

void rf_buf_printf(rf_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *np = rf_realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
}

void rf_buf_free(rf_buf *b) {
    rf_free(b->p);
    memset(b, 0, sizeof *b);
}
