/* faultio: an LD_PRELOAD shim that makes one system call on files under a
 * directory fail, the way a failing disk or a full file system would
 * (issue 9: "ENOSPC or EIO on store writes leave the store consistent and
 * the sweep resumable"). Used by tests/integration/store_faults.sh, which
 * builds it with `cc -shared -fPIC`.
 *
 * Environment (all read once, at the first intercepted call):
 *   FAULTIO_PREFIX  absolute directory; only calls on paths under it count
 *   FAULTIO_OP      write | fsync | rename   (fsync covers fdatasync;
 *                   rename covers renameat; the path is the destination)
 *   FAULTIO_NTH     the N-th counted call fails (1-based, per process)
 *   FAULTIO_ERRNO   EIO (default) | ENOSPC (for write: the N-th call is
 *                   short, half its bytes written, and the next write on
 *                   that fd fails with ENOSPC)
 *   FAULTIO_STICKY  1: every counted call from the N-th on fails (a disk
 *                   that stays broken); default: only the N-th
 *   FAULTIO_LOG     file to which a line is appended each time a fault
 *                   fires, so the test knows a fault really happened
 * Nothing here allocates: paths are resolved through /proc/self/fd into
 * stack buffers, so the shim is safe under ASan and inside malloc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OP_NONE, OP_WRITE, OP_FSYNC, OP_RENAME };

static int cfg_ready, cfg_op, cfg_errno = EIO, cfg_sticky;
static long cfg_nth;
static const char *cfg_prefix, *cfg_log;
static long counted;
static int enospc_fd = -1;   /* the fd whose next write fails after a short one */

static void config(void) {
    if (cfg_ready) return;
    const char *op = getenv("FAULTIO_OP"), *nth = getenv("FAULTIO_NTH"), *en = getenv("FAULTIO_ERRNO");
    const char *st = getenv("FAULTIO_STICKY");
    cfg_prefix = getenv("FAULTIO_PREFIX");
    cfg_log = getenv("FAULTIO_LOG");
    cfg_op = !op ? OP_NONE : !strcmp(op, "write") ? OP_WRITE : !strcmp(op, "fsync") ? OP_FSYNC
           : !strcmp(op, "rename") ? OP_RENAME : OP_NONE;
    cfg_nth = nth ? atol(nth) : 0;
    if (en && !strcmp(en, "ENOSPC")) cfg_errno = ENOSPC;
    cfg_sticky = st && !strcmp(st, "1");
    if (!cfg_prefix || cfg_prefix[0] != '/' || cfg_nth < 1) cfg_op = OP_NONE;
    cfg_ready = 1;
}

static int under_prefix(const char *path) {
    size_t n = strlen(cfg_prefix);
    return strncmp(path, cfg_prefix, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int fd_path(int fd, char *buf, size_t cap) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, cap - 1);
    if (n < 0) return -1;
    buf[n] = '\0';
    return 0;
}

/* The absolute path of `path` relative to dirfd (AT_FDCWD or a directory). */
static int at_path(int dirfd, const char *path, char *buf, size_t cap) {
    if (path[0] == '/') { snprintf(buf, cap, "%s", path); return 0; }
    char dir[4096];
    if (dirfd == AT_FDCWD) { if (!getcwd(dir, sizeof dir)) return -1; }
    else if (fd_path(dirfd, dir, sizeof dir) != 0) return -1;
    snprintf(buf, cap, "%s/%s", dir, path);
    return 0;
}

/* 1 when this call (of kind op, on the absolute path) must fail. */
static int fire(int op, const char *path) {
    config();
    if (cfg_op != op || !path || !under_prefix(path)) return 0;
    long k = __atomic_add_fetch(&counted, 1, __ATOMIC_SEQ_CST);
    if (k != cfg_nth && !(cfg_sticky && k > cfg_nth)) return 0;
    if (cfg_log) {
        int saved = errno;
        int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
        ssize_t (*real_write)(int, const void *, size_t) = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
        int lfd = real_open(cfg_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (lfd >= 0) {
            char line[4200];
            int len = snprintf(line, sizeof line, "pid %d call %ld %s %s\n", (int)getpid(), k,
                               cfg_errno == EIO ? "EIO" : "ENOSPC", path);
            if (len > 0) (void)!real_write(lfd, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
            close(lfd);
        }
        errno = saved;
    }
    return 1;
}

static int fd_fires(int op, int fd) {
    config();
    if (cfg_op != op) return 0;
    char p[4096];
    return fd_path(fd, p, sizeof p) == 0 && fire(op, p);
}

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (fd > 2 && fd == __atomic_load_n(&enospc_fd, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&enospc_fd, -1, __ATOMIC_SEQ_CST);
        errno = ENOSPC;
        return -1;
    }
    if (fd > 2 && fd_fires(OP_WRITE, fd)) {
        /* A file system filling up mid-write: the N-th write stores half its
         * bytes and returns short, and the retry of the rest fails with
         * ENOSPC, as Linux does. EIO fails the call outright. */
        if (cfg_errno == ENOSPC && n > 1) {
            __atomic_store_n(&enospc_fd, fd, __ATOMIC_SEQ_CST);
            return real(fd, buf, n / 2);
        }
        errno = cfg_errno;
        return -1;
    }
    return real(fd, buf, n);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (fd_fires(OP_FSYNC, fd)) { errno = cfg_errno; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (fd_fires(OP_FSYNC, fd)) { errno = cfg_errno; return -1; }
    return real(fd);
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    static int (*real)(int, const char *, int, const char *);
    if (!real) real = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    config();
    char p[8200];
    if (cfg_op == OP_RENAME && at_path(newdirfd, newpath, p, sizeof p) == 0 && fire(OP_RENAME, p)) { errno = cfg_errno; return -1; }
    return real(olddirfd, oldpath, newdirfd, newpath);
}

int rename(const char *oldpath, const char *newpath) {
    static int (*real)(const char *, const char *);
    if (!real) real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    config();
    char p[8200];
    if (cfg_op == OP_RENAME && at_path(AT_FDCWD, newpath, p, sizeof p) == 0 && fire(OP_RENAME, p)) { errno = cfg_errno; return -1; }
    return real(oldpath, newpath);
}
