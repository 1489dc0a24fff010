/* The results store: a directory handle, openat()/O_NOFOLLOW path walking,
 * atomic files and the fsync'd append-only ledger (include/raffle/store.h). */
#define _GNU_SOURCE
#include "raffle/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct rf_store {
    int    dfd;          /* ROOT/NAME, opened O_DIRECTORY|O_NOFOLLOW */
    int    ledger_fd;    /* -1 until the first append */
    int    lock_fd;      /* .lock while this handle holds the sweep lock, else -1 */
    char  *dir;
    cJSON *env;
    rf_store_write_fn on_write;   /* told of every file written (remote mirror) */
    void  *on_write_ud;
};

struct rf_store_file {
    int   dfd;           /* directory holding the file (owned) */
    int   fd;
    char  tmp[96], name[160];
    char  what[512];
    char  rel[256];      /* as given, for the on-write hook */
    rf_store *store;
};

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.') return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')) return 0;
    return 1;
}

rf_status rf_store_check_name(rf_ctx *ctx, const char *name) {
    if (!name || !name_ok(name))
        return rf_error(ctx, RF_ERR_INVALID, "\"%s\" is not a safe store name (1-128 of A-Z a-z 0-9 . _ -, not starting with '.')",
                        name ? name : "(null)");
    return RF_OK;
}

/* Opens (creating when asked) directory `name` under dfd without following a
 * symlink; returns the fd or -1 with errno. */
static int open_subdir(int dfd, const char *name, int create) {
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdirat(dfd, name, 0755) != 0 && errno != EEXIST) return -1;
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    return fd;
}

rf_status rf_store_open(rf_ctx *ctx, const char *root, const char *name, int create, rf_store **out) {
    *out = NULL;
    RF_TRY(rf_store_check_name(ctx, name));
    if (create) RF_TRY(rf_mkdirs(ctx, root));
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0) return rf_error(ctx, errno == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s: %s", root, strerror(errno));
    int dfd = open_subdir(rfd, name, create);
    int e = errno;
    close(rfd);
    if (dfd < 0)
        return rf_error(ctx, e == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s/%s: %s", root, name,
                        e == ELOOP || e == ENOTDIR ? "not a directory (symlinks are refused in the store)" : strerror(e));
    rf_store *s = rf_calloc(1, sizeof *s);
    size_t n = strlen(root) + strlen(name) + 2;
    char *dir = rf_malloc(n);
    if (!s || !dir) { close(dfd); rf_free(s); rf_free(dir); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    snprintf(dir, n, "%s/%s", root, name);
    s->dfd = dfd; s->ledger_fd = -1; s->lock_fd = -1; s->dir = dir;
    *out = s;
    return RF_OK;
}

rf_status rf_store_open_path(rf_ctx *ctx, const char *dir, int create, rf_store **out) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return rf_error(ctx, RF_ERR_INVALID, "bad store path");
    memcpy(buf, dir, n + 1);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) return rf_store_open(ctx, ".", buf, create, out);
    *slash = '\0';
    return rf_store_open(ctx, slash == buf ? "/" : buf, slash + 1, create, out);
}

void rf_store_close(rf_store *s) {
    if (!s) return;
    if (s->ledger_fd >= 0) close(s->ledger_fd);
    if (s->lock_fd >= 0) close(s->lock_fd);   /* releases the sweep lock */
    close(s->dfd);
    cJSON_Delete(s->env);
    rf_free(s->dir);
    rf_free(s);
}

const char *rf_store_dir(const rf_store *s) { return s->dir; }

/* Walks rel's directory components from the store's handle. Returns an owned
 * fd of the last directory and points *leaf at the final component. */
static rf_status walk(rf_ctx *ctx, rf_store *s, const char *rel, int create, int *dfd_out, char *leaf, size_t leafn) {
    char comp[160];
    int dfd = dup(s->dfd);
    if (dfd < 0) return rf_error(ctx, RF_ERR_IO, "%s: %s", s->dir, strerror(errno));
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len >= sizeof comp) { close(dfd); return rf_error(ctx, RF_ERR_INVALID, "%s: bad store path \"%s\"", s->dir, rel); }
        memcpy(comp, p, len);
        comp[len] = '\0';
        if (!name_ok(comp)) { close(dfd); return rf_error(ctx, RF_ERR_INVALID, "%s: path \"%s\" would escape the store", s->dir, rel); }
        if (!slash) {
            if (len >= leafn) { close(dfd); return rf_error(ctx, RF_ERR_INVALID, "%s: name too long", rel); }
            memcpy(leaf, comp, len + 1);
            *dfd_out = dfd;
            return RF_OK;
        }
        int nfd = open_subdir(dfd, comp, create);
        int e = errno;
        close(dfd);
        if (nfd < 0)
            return rf_error(ctx, e == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s/%s: %s", s->dir, rel,
                            e == ELOOP || e == ENOTDIR ? "a path component is not a directory (symlinks are refused)" : strerror(e));
        dfd = nfd;
        p = slash + 1;
    }
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

rf_status rf_store_file_begin(rf_ctx *ctx, rf_store *s, const char *rel, rf_store_file **out) {
    *out = NULL;
    rf_store_file *f = rf_calloc(1, sizeof *f);
    if (!f) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    f->fd = -1;
    rf_status st = walk(ctx, s, rel, 1, &f->dfd, f->name, sizeof f->name);
    if (st) { rf_free(f); return st; }
    snprintf(f->what, sizeof f->what, "%s/%s", s->dir, rel);
    snprintf(f->rel, sizeof f->rel, "%s", rel);
    f->store = s;
    static unsigned long seq;
    snprintf(f->tmp, sizeof f->tmp, ".tmp.%ld.%lu", (long)getpid(), __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    f->fd = openat(f->dfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        st = rf_error(ctx, RF_ERR_IO, "%s: cannot create temp file: %s", f->what, strerror(errno));
        close(f->dfd);
        rf_free(f);
        return st;
    }
    *out = f;
    return RF_OK;
}

rf_status rf_store_file_write(rf_ctx *ctx, rf_store_file *f, const void *data, size_t n) {
    if (write_all(f->fd, data, n) != 0) return rf_error(ctx, RF_ERR_IO, "%s: write failed: %s", f->what, strerror(errno));
    return RF_OK;
}

void rf_store_file_abort(rf_store_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    unlinkat(f->dfd, f->tmp, 0);
    close(f->dfd);
    rf_free(f);
}

rf_status rf_store_file_commit(rf_ctx *ctx, rf_store_file *f) {
    rf_status st = RF_OK;
    if (fsync(f->fd) != 0) st = rf_error(ctx, RF_ERR_IO, "%s: fsync failed: %s", f->what, strerror(errno));
    int rc = close(f->fd);
    f->fd = -1;
    if (!st && rc != 0) st = rf_error(ctx, RF_ERR_IO, "%s: close failed: %s", f->what, strerror(errno));
    /* renameat replaces whatever is at the name, a planted symlink included,
     * without following it */
    if (!st && renameat(f->dfd, f->tmp, f->dfd, f->name) != 0)
        st = rf_error(ctx, RF_ERR_IO, "%s: rename failed: %s", f->what, strerror(errno));
    if (!st && fsync(f->dfd) != 0) st = rf_error(ctx, RF_ERR_IO, "%s: directory fsync failed: %s", f->what, strerror(errno));
    if (st) { rf_store_file_abort(f); return st; }
    close(f->dfd);
    if (f->store->on_write) f->store->on_write(f->store->on_write_ud, f->rel);
    rf_free(f);
    return RF_OK;
}

rf_status rf_store_write(rf_ctx *ctx, rf_store *s, const char *rel, const void *data, size_t n) {
    rf_store_file *f;
    RF_TRY(rf_store_file_begin(ctx, s, rel, &f));
    rf_status st = rf_store_file_write(ctx, f, data, n);
    if (st) { rf_store_file_abort(f); return st; }
    return rf_store_file_commit(ctx, f);
}

rf_status rf_store_read(rf_ctx *ctx, rf_store *s, const char *rel, unsigned char **out, size_t *n) {
    *out = NULL; *n = 0;
    int dfd;
    char leaf[160];
    RF_TRY(walk(ctx, s, rel, 0, &dfd, leaf, sizeof leaf));
    int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(dfd);
    if (fd < 0) return rf_error(ctx, e == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s/%s: %s", s->dir, rel,
                                e == ELOOP ? "is a symlink (refused in the store)" : strerror(e));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return rf_error(ctx, RF_ERR_IO, "%s/%s: not a regular file", s->dir, rel); }
    rf_status r = rf_check_cap(ctx, (uint64_t)st.st_size, rel);
    if (r) { close(fd); return r; }
    unsigned char *buf = rf_malloc((size_t)st.st_size + 1);
    if (!buf) { close(fd); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != (size_t)st.st_size) { rf_free(buf); return rf_error(ctx, RF_ERR_IO, "%s/%s: short read", s->dir, rel); }
    buf[got] = '\0';
    *out = buf; *n = got;
    return RF_OK;
}

int rf_store_stat(rf_store *s, const char *rel, uint64_t *size) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    int dfd;
    char leaf[160];
    if (walk(&ctx, s, rel, 0, &dfd, leaf, sizeof leaf) != RF_OK) return -1;
    struct stat st;
    int rc = fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW);
    close(dfd);
    if (rc != 0 || !S_ISREG(st.st_mode)) return -1;
    if (size) *size = (uint64_t)st.st_size;
    return 0;
}

rf_status rf_store_open_fd(rf_ctx *ctx, rf_store *s, const char *rel, int *fd_out, uint64_t *size) {
    *fd_out = -1;
    int dfd;
    char leaf[160];
    RF_TRY(walk(ctx, s, rel, 0, &dfd, leaf, sizeof leaf));
    int fd = openat(dfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(dfd);
    if (fd < 0) return rf_error(ctx, e == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s/%s: %s", s->dir, rel,
                                e == ELOOP ? "is a symlink (refused in the store)" : strerror(e));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return rf_error(ctx, RF_ERR_IO, "%s/%s: not a regular file", s->dir, rel); }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return RF_OK;
}

rf_status rf_store_remove(rf_ctx *ctx, rf_store *s, const char *rel) {
    int dfd;
    char leaf[160];
    RF_TRY(walk(ctx, s, rel, 0, &dfd, leaf, sizeof leaf));
    struct stat st;
    rf_status r = RF_OK;
    if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) &&
        unlinkat(dfd, leaf, 0) != 0)
        r = rf_error(ctx, RF_ERR_IO, "%s/%s: cannot remove: %s", s->dir, rel, strerror(errno));
    close(dfd);
    return r;
}

void rf_store_task_rel(char *buf, size_t n, uint64_t id, const char *file) {
    static const char hx[] = "0123456789abcdef";
    char h[17];
    for (int i = 0; i < 16; i++) h[i] = hx[(id >> (60 - 4 * i)) & 15];
    h[16] = '\0';
    snprintf(buf, n, "tasks/%s/%s", h, file);
}

void rf_store_time_iso(char *buf, size_t n) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

/* ---- ledger ---------------------------------------------------------------- */

/* A crash or a full disk in the middle of an append leaves a last line with
 * no newline. Every event is written with its newline in one write(), so
 * such a line was never a complete event: cut the file back to just after
 * the last newline (as redis does with a truncated AOF), so the ledger stays
 * a list of whole lines and the next event starts on a line of its own. */
static int drop_torn_tail(int fd, off_t size) {
    char buf[4096];
    off_t end = size;
    while (end > 0) {
        off_t from = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
        ssize_t got = pread(fd, buf, (size_t)(end - from), from);
        if (got != (ssize_t)(end - from)) { if (got >= 0) errno = EIO; return -1; }
        for (ssize_t i = got; i > 0; i--)
            if (buf[i - 1] == '\n') {
                off_t keep = from + i;
                return keep == size ? 0 : ftruncate(fd, keep);
            }
        end = from;
    }
    return ftruncate(fd, 0);   /* not one whole line */
}

static rf_status ledger_open(rf_ctx *ctx, rf_store *s) {
    if (s->ledger_fd >= 0) return RF_OK;
    int fd = openat(s->dfd, "ledger.jsonl", O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return rf_error(ctx, RF_ERR_IO, "%s/ledger.jsonl: %s", s->dir, errno == ELOOP ? "is a symlink (refused)" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return rf_error(ctx, RF_ERR_IO, "%s/ledger.jsonl: not a regular file", s->dir); }
    if (st.st_size > 0 && drop_torn_tail(fd, st.st_size) != 0) {
        int e = errno;
        close(fd);
        return rf_error(ctx, RF_ERR_IO, "%s/ledger.jsonl: cannot drop a torn last line: %s", s->dir, strerror(e));
    }
    s->ledger_fd = fd;
    return RF_OK;
}

rf_status rf_store_ledger_append(rf_ctx *ctx, rf_store *s, const cJSON *ev, int sync) {
    RF_TRY(ledger_open(ctx, s));
    cJSON *line = cJSON_CreateObject();
    if (!line) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    char t[40];
    rf_store_time_iso(t, sizeof t);
    /* every insertion is checked: an event with a key silently missing
     * would replay as a different event */
    int ok = cJSON_AddNumberToObject(line, "v", RF_LEDGER_VERSION) && cJSON_AddStringToObject(line, "time", t);
    const cJSON *evname = cJSON_GetObjectItemCaseSensitive(ev, "event");
    int with_env = s->env && cJSON_IsString(evname) && strcmp(evname->valuestring, "sweep") == 0;
    for (const cJSON *c = ev->child; ok && (c || with_env); c = c ? c->next : NULL) {
        const cJSON *src = c ? c : s->env;
        cJSON *d = cJSON_Duplicate(src, 1);
        if (!d || !cJSON_AddItemToObject(line, c ? c->string : "env", d)) { cJSON_Delete(d); ok = 0; }
        if (!c) with_env = 0;
    }
    char *txt = ok ? cJSON_PrintUnformatted(line) : NULL;
    cJSON_Delete(line);
    if (!txt) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    size_t n = strlen(txt);
    char *buf = rf_malloc(n + 2);
    if (!buf) { free(txt); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    memcpy(buf, txt, n);
    buf[n] = '\n';
    free(txt);
    /* one write() per line: with O_APPEND a line is never interleaved */
    int rc = write_all(s->ledger_fd, buf, n + 1);
    rf_free(buf);
    if (rc != 0) {
        /* A partial write (disk full) left a torn line. Close the ledger so
         * the next append reopens it, and ledger_open cuts the torn line
         * first: a later event is never glued onto the torn bytes. */
        int e = errno;
        close(s->ledger_fd);
        s->ledger_fd = -1;
        return rf_error(ctx, RF_ERR_IO, "%s/ledger.jsonl: append failed: %s", s->dir, strerror(e));
    }
    if (sync) RF_TRY(rf_store_ledger_sync(ctx, s));
    if (s->on_write) s->on_write(s->on_write_ud, "ledger.jsonl");
    return RF_OK;
}

rf_status rf_store_ledger_sync(rf_ctx *ctx, rf_store *s) {
    if (s->ledger_fd < 0) return RF_OK;
    if (fdatasync(s->ledger_fd) != 0) return rf_error(ctx, RF_ERR_IO, "%s/ledger.jsonl: fsync failed: %s", s->dir, strerror(errno));
    return RF_OK;
}

rf_status rf_store_ledger_replay(rf_ctx *ctx, rf_store *s, rf_ledger_fn fn, void *ud, int *n_bad) {
    if (n_bad) *n_bad = 0;
    unsigned char *buf;
    size_t n;
    rf_status st = rf_store_read(ctx, s, "ledger.jsonl", &buf, &n);
    if (st == RF_ERR_NOTFOUND) { rf_ctx_clear(ctx); return RF_OK; }
    if (st) return st;
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && buf[e] != '\n') e++;
        if (e == n) { if (n_bad && e > i) (*n_bad)++; break; }   /* torn last line */
        cJSON *ev = cJSON_ParseWithLength((const char *)buf + i, e - i);
        if (ev && cJSON_IsObject(ev)) {
            int stop = fn(ud, ev);
            cJSON_Delete(ev);
            if (stop) break;
        } else {
            cJSON_Delete(ev);
            if (n_bad && e > i) (*n_bad)++;
        }
        i = e + 1;
    }
    rf_free(buf);
    return RF_OK;
}

rf_status rf_store_set_env(rf_ctx *ctx, rf_store *s, const cJSON *env) {
    cJSON *c = env ? cJSON_Duplicate(env, 1) : NULL;
    if (env && !c) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    cJSON_Delete(s->env);
    s->env = c;
    return RF_OK;
}

const cJSON *rf_store_env(const rf_store *s) { return s->env; }

void rf_store_set_on_write(rf_store *s, rf_store_write_fn fn, void *ud) {
    s->on_write = fn;
    s->on_write_ud = ud;
}

/* ---- the sweep lock and stale temporary files -------------------------------- */

#define LOCK_FILE ".lock"

/* Non-blocking exclusive lock on fd: 0, or -1 with errno (EAGAIN/EACCES/
 * EWOULDBLOCK when held elsewhere). OFD locks belong to the open file
 * description, so unlike classic fcntl locks they conflict between two
 * handles of one process and are not dropped by closing another fd of the
 * same file; flock is the fallback where the kernel or file system refuses
 * them (EINVAL). */
static int try_lock(int fd) {
#ifdef F_OFD_SETLK
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
    if (errno != EINVAL) return -1;
#endif
    return flock(fd, LOCK_EX | LOCK_NB);
}

rf_status rf_store_lock(rf_ctx *ctx, rf_store *s) {
    if (s->lock_fd >= 0) return RF_OK;
    int fd = openat(s->dfd, LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return rf_error(ctx, RF_ERR_IO, "%s/" LOCK_FILE ": %s", s->dir, errno == ELOOP ? "is a symlink (refused)" : strerror(errno));
    if (try_lock(fd) != 0) {
        int e = errno;
        char who[256] = "";
        ssize_t n = pread(fd, who, sizeof who - 1, 0);
        close(fd);
        if (e != EAGAIN && e != EACCES && e != EWOULDBLOCK)
            return rf_error(ctx, RF_ERR_IO, "%s/" LOCK_FILE ": cannot lock: %s", s->dir, strerror(e));
        who[n > 0 ? n : 0] = '\0';
        /* "host H pid P since T\n", as written below */
        const char *h = strncmp(who, "host ", 5) == 0 ? who + 5 : NULL;
        const char *p = h ? strstr(h, " pid ") : NULL;
        const char *t = p ? strstr(p + 5, " since ") : NULL;
        int64_t pid = 0;
        if (t && rf_parse_i64(NULL, p + 5, (size_t)(t - p - 5), 1, INT32_MAX, "pid", &pid) == RF_OK)
            return rf_error(ctx, RF_ERR_BUSY, "%s is in use by another sweep (host %.*s, pid %lld, since %.*s): "
                            "one sweep per store; wait for it or stop it", s->dir, (int)(p - h), h, (long long)pid,
                            (int)strcspn(t + 7, "\n"), t + 7);
        return rf_error(ctx, RF_ERR_BUSY, "%s is in use by another sweep (holder still starting): one sweep per store", s->dir);
    }
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    for (char *c = host; *c; c++) if (*c <= ' ') *c = '_';
    char t[40], line[256];
    rf_store_time_iso(t, sizeof t);
    int len = snprintf(line, sizeof line, "host %s pid %ld since %s\n", host[0] ? host : "?", (long)getpid(), t);
    /* the content only names the holder; the lock is the kernel's */
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return rf_error(ctx, RF_ERR_IO, "%s/" LOCK_FILE ": cannot record the holder: %s", s->dir, strerror(e));
    }
    s->lock_fd = fd;
    return RF_OK;
}

/* The pid in a temporary name, or 0 if name is not one: ".tmp.PID.N"
 * (rf_store_file_begin) or "BASE.tmp.PID" (rf_write_file_atomic). */
static long temp_pid(const char *name) {
    const char *p = NULL;
    size_t n = strlen(name);
    if (strncmp(name, ".tmp.", 5) == 0) {
        p = name + 5;
        const char *dot = strchr(p, '.');
        if (!dot || dot == p || !dot[1] || strspn(dot + 1, "0123456789") != strlen(dot + 1)) return 0;
        n = (size_t)(dot - p);
    } else {
        const char *t = strstr(name, ".tmp.");
        if (!t || t == name) return 0;
        while (strstr(t + 1, ".tmp.")) t = strstr(t + 1, ".tmp.");
        p = t + 5;
        n = strlen(p);
    }
    int64_t pid = 0;
    if (rf_parse_i64(NULL, p, n, 1, 4194304, "pid", &pid) != RF_OK) return 0;
    return (long)pid;
}

int rf_store_stale_temp(const char *name) {
    long pid = temp_pid(name);
    return pid > 0 && !rf_pid_alive(pid);
}

/* Removes the stale temporary files directly in directory dfd (borrowed). */
static int sweep_dir(int dfd) {
    int dup_fd = dup(dfd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) { if (dup_fd >= 0) close(dup_fd); return 0; }
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!rf_store_stale_temp(e->d_name)) continue;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))) continue;
        if (unlinkat(dfd, e->d_name, 0) == 0) removed++;
    }
    closedir(d);
    return removed;
}

rf_status rf_store_remove_stale(rf_ctx *ctx, rf_store *s, int *removed) {
    int n = sweep_dir(s->dfd);
    static const char *const subdirs[] = {".spool", "tasks"};
    for (size_t k = 0; k < sizeof subdirs / sizeof subdirs[0]; k++) {
        int sd = openat(s->dfd, subdirs[k], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sd < 0) continue;
        if (k == 0) { n += sweep_dir(sd); close(sd); continue; }
        int dup_fd = dup(sd);
        DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
        if (!d) {
            if (dup_fd >= 0) close(dup_fd);
            close(sd);
            return rf_error(ctx, RF_ERR_IO, "%s/tasks: %s", s->dir, strerror(errno));
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!name_ok(e->d_name)) { n += rf_store_stale_temp(e->d_name) && unlinkat(sd, e->d_name, 0) == 0; continue; }
            int td = openat(sd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (td < 0) continue;
            n += sweep_dir(td);
            close(td);
        }
        closedir(d);
        close(sd);
    }
    if (removed) *removed = n;
    return RF_OK;
}
