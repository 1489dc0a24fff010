/* libcurl transfers: cached, pinned, resumable downloads and WebDAV requests.
 *
 * Policy in one place: only http/https/file; redirects only to http/https;
 * TLS peer and host verification on; credentials from ~/.netrc or the
 * environment, never printed (messages use rf_url_redact). Transient failures
 * (connection errors, timeouts, HTTP 408/429/5xx) are retried with
 * exponential backoff; other HTTP errors are final. */
#define _GNU_SOURCE
#include "raffle/net.h"
#include "raffle/data.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;
static void curl_init(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- URLs ---------------------------------------------------------------- */

rf_url_scheme rf_url_scheme_of(const char *s) {
    if (strncmp(s, "http://", 7) == 0) return RF_URL_HTTP;
    if (strncmp(s, "https://", 8) == 0) return RF_URL_HTTPS;
    if (strncmp(s, "file://", 7) == 0) return RF_URL_FILE;
    /* RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"; a
     * path never starts that way followed by "//" by accident */
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    if (n > 0 && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) && strncmp(s + n, "://", 3) == 0)
        return RF_URL_OTHER;
    return RF_URL_NONE;
}

void rf_url_redact(const char *url, char *out, size_t n) {
    const char *p = strstr(url, "://");
    if (!p || n == 0) { snprintf(out, n, "%s", url); return; }
    const char *host = p + 3;
    const char *end = host + strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *q = host; q < end; q++) if (*q == '@') at = q;
    if (!at) { snprintf(out, n, "%s", url); return; }
    snprintf(out, n, "%.*s%s", (int)(host - url), url, at + 1);
}

/* Is `path` (absolute, normalised by realpath) under one of the roots? */
static int under_roots(const char *path) {
    const char *env = getenv("RAFFLE_FILE_ROOTS");
    char defaults[PATH_MAX * 2 + 8];
    if (!env || !*env) {
        char cwd[PATH_MAX];
        const char *home = getenv("HOME");
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
        snprintf(defaults, sizeof defaults, "%s:%s/.cache/raffle", cwd, home ? home : "/nonexistent");
        env = defaults;
    }
    char *roots = strdup(env);
    if (!roots) return 0;
    int ok = 0;
    for (char *save = NULL, *r = strtok_r(roots, ":", &save); r && !ok; r = strtok_r(NULL, ":", &save)) {
        char real[PATH_MAX];
        if (!realpath(r, real)) continue;
        size_t len = strlen(real);
        if (strncmp(path, real, len) == 0 && (path[len] == '/' || path[len] == '\0' || (len == 1 && real[0] == '/'))) ok = 1;
    }
    free(roots);
    return ok;
}

rf_status rf_url_check(rf_ctx *ctx, const char *url) {
    char shown[512];
    rf_url_redact(url, shown, sizeof shown);
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return rf_error(ctx, RF_ERR_INVALID, "URL has a control character: %s", shown);
    switch (rf_url_scheme_of(url)) {
    case RF_URL_HTTP: case RF_URL_HTTPS: return RF_OK;
    case RF_URL_FILE: {
        const char *path = url + 7;
        if (strncmp(path, "localhost/", 10) == 0) path += 9;
        if (path[0] != '/') return rf_error(ctx, RF_ERR_INVALID, "file URL must be absolute: %s", shown);
        char real[PATH_MAX];
        if (!realpath(path, real)) {
            /* not existing yet: check its directory */
            char dir[PATH_MAX];
            snprintf(dir, sizeof dir, "%s", path);
            char *slash = strrchr(dir, '/');
            if (slash && slash != dir) *slash = '\0';
            if (!realpath(dir, real)) return rf_error(ctx, RF_ERR_NOTFOUND, "%s: no such file", shown);
        }
        if (!under_roots(real))
            return rf_error(ctx, RF_ERR_INVALID, "%s: file URLs are only allowed under RAFFLE_FILE_ROOTS", shown);
        return RF_OK;
    }
    case RF_URL_NONE: case RF_URL_OTHER: break;
    }
    return rf_error(ctx, RF_ERR_INVALID, "unsupported URL scheme (only http, https, file): %s", shown);
}

/* ---- common easy-handle set-up ------------------------------------------- */

static CURL *easy_new(rf_ctx *ctx, const char *url) {
    pthread_once(&curl_once, curl_init);
    if (curl_init_code != CURLE_OK) { rf_error(ctx, RF_ERR_NET, "libcurl initialisation failed"); return NULL; }
    if (rf_url_check(ctx, url) != RF_OK) return NULL;
    CURL *c = curl_easy_init();
    if (!c) { rf_error(ctx, RF_ERR_NOMEM, "libcurl: cannot create a handle"); return NULL; }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "raffle/" RF_VERSION_STRING);
    const char *user = getenv("RAFFLE_HTTP_USER"), *pass = getenv("RAFFLE_HTTP_PASSWORD");
    if (user && *user) {
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        if (pass) curl_easy_setopt(c, CURLOPT_PASSWORD, pass);
    }
    return c;
}

static int transient_http(long code) { return code == 408 || code == 429 || code >= 500; }
static int transient_curl(CURLcode e) {
    return e == CURLE_COULDNT_CONNECT || e == CURLE_OPERATION_TIMEDOUT || e == CURLE_PARTIAL_FILE ||
           e == CURLE_RECV_ERROR || e == CURLE_SEND_ERROR || e == CURLE_GOT_NOTHING ||
           e == CURLE_COULDNT_RESOLVE_HOST || e == CURLE_HTTP2 || e == CURLE_HTTP2_STREAM;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void rf_fetch_opts_default(rf_fetch_opts *o) {
    memset(o, 0, sizeof *o);
    o->retries = 4;
    o->backoff_s = 0.5;
    o->timeout_s = 600;
}

/* ---- downloads ------------------------------------------------------------ */

typedef struct dl_state {
    int fd;
    CURL *c;
    int checked;      /* response code inspected */
    int failed;
    int err;          /* errno of the failed write */
    rf_progress_fn progress;
    void *progress_ud;
    curl_off_t base;  /* bytes already on disk when the attempt started */
} dl_state;

static size_t dl_write(char *p, size_t size, size_t nmemb, void *ud) {
    dl_state *s = ud;
    size_t n = size * nmemb;
    if (!s->checked) {
        s->checked = 1;
        long code = 0;
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &code);
        /* Asked for a range but the server sent the whole body: start over. */
        if (s->base > 0 && code == 200) {
            if (ftruncate(s->fd, 0) != 0 || lseek(s->fd, 0, SEEK_SET) != 0) { s->failed = 1; s->err = errno; return 0; }
            s->base = 0;
        }
    }
    const char *q = p;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(s->fd, q, left);
        if (w < 0) { if (errno == EINTR) continue; s->failed = 1; s->err = errno; return 0; }
        q += w; left -= (size_t)w;
    }
    return n;
}

static int dl_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    dl_state *s = ud;
    if (s->progress && dltotal > 0) s->progress(s->progress_ud, (uint64_t)(s->base + dlnow), (uint64_t)(s->base + dltotal));
    return 0;
}

/* One download of url into part (appending/resuming). *transient (may be
 * NULL) says whether the last failure was one a later attempt could get past
 * (connection lost, timeout, HTTP 5xx), so the bytes in part are worth
 * resuming from. */
static rf_status download_part(rf_ctx *ctx, const char *url, const char *part, const rf_fetch_opts *o, int *transient) {
    char shown[512];
    rf_url_redact(url, shown, sizeof shown);
    rf_status st = RF_ERR_NET;
    int tr = 0;
    if (!transient) transient = &tr;
    *transient = 0;
    for (int attempt = 0; attempt <= o->retries; attempt++) {
        if (attempt > 0) sleep_s(o->backoff_s * (double)(1 << (attempt - 1 < 10 ? attempt - 1 : 10)));
        int fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) return rf_error(ctx, RF_ERR_IO, "%s: %s", part, strerror(errno));
        struct stat sb;
        fstat(fd, &sb);
        CURL *c = easy_new(ctx, url);
        if (!c) { close(fd); return ctx->status; }
        dl_state s = {.fd = fd, .c = c, .progress = o->progress, .progress_ud = o->progress_ud, .base = sb.st_size};
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, o->timeout_s);
        if (sb.st_size > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)sb.st_size);
        CURLcode e = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(c);
        int fs = fsync(fd), fe = errno;
        if (close(fd) != 0 && fs == 0) { fs = -1; fe = errno; }
        /* the reason, e.g. "No space left on device" (issue 19, defect 9) */
        if (s.failed) return rf_error(ctx, RF_ERR_IO, "%s: write failed: %s", part, strerror(s.err));
        if (fs != 0) return rf_error(ctx, RF_ERR_IO, "%s: write failed: %s", part, strerror(fe));
        if (e == CURLE_RANGE_ERROR || code == 416) {
            /* the part file already holds everything (or is bogus): restart clean */
            if (truncate(part, 0) != 0) return rf_error(ctx, RF_ERR_IO, "%s: %s", part, strerror(errno));
            st = rf_error(ctx, RF_ERR_NET, "%s: range not satisfiable", shown);
            continue;
        }
        if (e == CURLE_OK && (code == 0 || (code >= 200 && code < 300))) return RF_OK;
        if (e != CURLE_OK) {
            st = rf_error(ctx, RF_ERR_NET, "%s: %s", shown, curl_easy_strerror(e));
            if (!(*transient = transient_curl(e))) return st;
        } else {
            st = rf_error(ctx, code == 404 ? RF_ERR_NOTFOUND : RF_ERR_NET, "%s: HTTP %ld", shown, code);
            if (truncate(part, 0) != 0) {}
            if (!(*transient = transient_http(code))) return st;
        }
    }
    rf_error_prefix(ctx, "after %d attempts", o->retries + 1);
    return st;
}


static rf_status verify(rf_ctx *ctx, const char *path, const char *want, const char *shown) {
    if (!want) return RF_OK;
    char got[65];
    RF_TRY(rf_sha256_file(ctx, path, got));
    if (strcasecmp(got, want) != 0)
        return rf_error(ctx, RF_ERR_CHECKSUM, "%s: sha256 is %s, expected %s", shown, got, want);
    return RF_OK;
}

rf_status rf_fetch_url(rf_ctx *ctx, const char *url, const rf_fetch_opts *opts, char *path_out, size_t n) {
    rf_fetch_opts o;
    if (opts) o = *opts; else rf_fetch_opts_default(&o);
    char shown[512];
    rf_url_redact(url, shown, sizeof shown);
    RF_TRY(rf_url_check(ctx, url));
    if (o.sha256 && strlen(o.sha256) != 64) return rf_error(ctx, RF_ERR_INVALID, "%s: sha256 must be 64 hex digits", shown);
    char dir[PATH_MAX];
    if (o.cache_dir) snprintf(dir, sizeof dir, "%s", o.cache_dir); else rf_data_downloads_dir(dir, sizeof dir);
    RF_TRY(rf_mkdirs(ctx, dir));
    /* Cache key: the pinned digest when given, else a digest of the URL;
     * the name is the one the data module looks a pinned URL up by. */
    char key[65];
    if (o.sha256) { snprintf(key, sizeof key, "%s", o.sha256); for (char *k = key; *k; k++) if (*k >= 'A' && *k <= 'F') *k += 32; }
    else rf_sha256_hex(url, strlen(url), key);
    char name[128], final[PATH_MAX], part[PATH_MAX + 8];
    rf_data_download_name(url, key, name, sizeof name);
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(part, sizeof part, "%s.part", final);
    /* Processes of one node (the ranks of a sweep) share the cache: one
     * downloads, the others wait on the directory's lock and then find the
     * file there. flock on the directory itself leaves no lock file. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return rf_error(ctx, RF_ERR_IO, "%s: %s", dir, strerror(errno));
    while (flock(dfd, LOCK_EX) != 0)
        if (errno != EINTR) { int e = errno; close(dfd); return rf_error(ctx, RF_ERR_IO, "%s: lock: %s", dir, strerror(e)); }
    rf_status s = RF_OK;
    struct stat sb;
    if (stat(final, &sb) == 0) {
        if (verify(ctx, final, o.sha256, shown) == RF_OK) { snprintf(path_out, n, "%s", final); goto out; }
        unlink(final);   /* corrupted cache entry: fetch again */
    }
    int partial_ok = 0;
    s = download_part(ctx, url, part, &o, &partial_ok);
    if (s) {
        /* a partial download is kept to resume from only after a transient
         * network failure that left bytes; a final answer (404, a refused
         * redirect) or a local write error leaves nothing behind */
        struct stat ps;
        if (s != RF_ERR_NET || stat(part, &ps) != 0 || ps.st_size == 0 || !partial_ok) unlink(part);
        goto out;
    }
    /* a wrong digest leaves nothing in the cache: not the part, not a name */
    s = verify(ctx, part, o.sha256, shown);
    if (s) { unlink(part); goto out; }
    if (rename(part, final) != 0) { s = rf_error(ctx, RF_ERR_IO, "%s: %s", final, strerror(errno)); unlink(part); goto out; }
    snprintf(path_out, n, "%s", final);
out:
    close(dfd);   /* releases the lock */
    return s;
}

rf_status rf_fetch_to_file(rf_ctx *ctx, const char *url, const rf_fetch_opts *opts, const char *dest) {
    rf_fetch_opts o;
    if (opts) o = *opts; else rf_fetch_opts_default(&o);
    char part[PATH_MAX + 8];
    snprintf(part, sizeof part, "%s.part", dest);
    unlink(part);
    /* no cache here, so nothing to resume later: whatever went wrong
     * (refused, 404, a refused redirect, a full disk), the partial file goes
     * (issue 19, defect 9) */
    rf_status st = download_part(ctx, url, part, &o, NULL);
    if (st) { unlink(part); return st; }
    char shown[512];
    rf_url_redact(url, shown, sizeof shown);
    rf_status s = verify(ctx, part, o.sha256, shown);
    if (s) { unlink(part); return s; }
    if (rename(part, dest) != 0) return rf_error(ctx, RF_ERR_IO, "%s: %s", dest, strerror(errno));
    return RF_OK;
}

/* ---- WebDAV ----------------------------------------------------------------- */

/* rel must be a plain relative path: no "..", no leading '/', safe characters. */
static rf_status check_rel(rf_ctx *ctx, const char *rel) {
    if (!*rel || rel[0] == '/') return rf_error(ctx, RF_ERR_INVALID, "remote path '%s' must be relative", rel);
    for (const char *p = rel; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-' || ch == '/';
        if (!ok) return rf_error(ctx, RF_ERR_INVALID, "remote path '%s' has an unsafe character", rel);
    }
    if (strstr(rel, "..")) return rf_error(ctx, RF_ERR_INVALID, "remote path '%s' contains '..'", rel);
    return RF_OK;
}

static rf_status join_url(rf_ctx *ctx, const char *base, const char *rel, char *out, size_t n) {
    RF_TRY(check_rel(ctx, rel));
    size_t bl = strlen(base);
    int r = snprintf(out, n, "%s%s%s", base, (bl && base[bl - 1] == '/') ? "" : "/", rel);
    if (r < 0 || (size_t)r >= n) return rf_error(ctx, RF_ERR_INVALID, "URL too long");
    return RF_OK;
}

typedef struct membuf { unsigned char *p; size_t n, cap; const unsigned char *src; size_t src_n, src_pos; int oom; } membuf;

static size_t mem_write(char *p, size_t size, size_t nmemb, void *ud) {
    membuf *m = ud;
    size_t n = size * nmemb;
    if (m->n + n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 65536;
        while (cap < m->n + n + 1) cap *= 2;
        unsigned char *q = rf_realloc(m->p, cap);
        if (!q) { m->oom = 1; return 0; }
        m->p = q; m->cap = cap;
    }
    memcpy(m->p + m->n, p, n);
    m->n += n;
    m->p[m->n] = 0;
    return n;
}

static size_t mem_read(char *p, size_t size, size_t nmemb, void *ud) {
    membuf *m = ud;
    size_t n = size * nmemb, left = m->src_n - m->src_pos;
    if (n > left) n = left;
    memcpy(p, m->src + m->src_pos, n);
    m->src_pos += n;
    return n;
}

/* Aborts a transfer once *cancel (the caller's flag) is set: libcurl calls
 * this at least about once a second, also while a frozen server sends
 * nothing, so a request can be given up on promptly. */
static int dav_cancel_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    const volatile int *cancel = ud;
    return *cancel ? 1 : 0;
}

/* One WebDAV request. body (PUT) may be NULL; resp receives the body for GET.
 * cancel (may be NULL): abort when it becomes non-zero. */
static rf_status dav_request(rf_ctx *ctx, const char *method, const char *url, const void *body, size_t n,
                             const char *dest_url, membuf *resp, long *http_status, const volatile int *cancel) {
    char shown[512];
    rf_url_redact(url, shown, sizeof shown);
    CURL *c = easy_new(ctx, url);
    if (!c) return ctx->status;
    if (cancel) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dav_cancel_cb);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)cancel);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    membuf sink = {0};
    membuf *out = resp ? resp : &sink;
    membuf in = {.src = body, .src_n = n};
    struct curl_slist *hdr = NULL;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, mem_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &in);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)n);
        hdr = curl_slist_append(hdr, "Expect:");
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (dest_url) {
        char h[2200];
        snprintf(h, sizeof h, "Destination: %s", dest_url);
        hdr = curl_slist_append(hdr, h);
        hdr = curl_slist_append(hdr, "Overwrite: T");
    }
    if (hdr) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    CURLcode e = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    if (!resp) rf_free(sink.p);
    if (http_status) *http_status = code;
    if (out->oom) return rf_error(ctx, RF_ERR_NOMEM, "%s %s: out of memory", method, shown);
    if (e != CURLE_OK) return rf_error(ctx, RF_ERR_NET, "%s %s: %s", method, shown, curl_easy_strerror(e));
    if (code == 404) return rf_error(ctx, RF_ERR_NOTFOUND, "%s %s: HTTP 404", method, shown);
    if (code < 200 || code >= 300) return rf_error(ctx, RF_ERR_NET, "%s %s: HTTP %ld", method, shown, code);
    return RF_OK;
}

static rf_status dav_put(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n, long *st,
                         const volatile int *cancel) {
    char url[2048];
    RF_TRY(join_url(ctx, base, rel, url, sizeof url));
    return dav_request(ctx, "PUT", url, data, n, NULL, NULL, st, cancel);
}

rf_status rf_dav_put(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n, long *st) {
    return dav_put(ctx, base, rel, data, n, st, NULL);
}

rf_status rf_dav_get(rf_ctx *ctx, const char *base, const char *rel, unsigned char **data, size_t *n, long *st) {
    *data = NULL; *n = 0;
    char url[2048];
    RF_TRY(join_url(ctx, base, rel, url, sizeof url));
    membuf m = {0};
    rf_status s = dav_request(ctx, "GET", url, NULL, 0, NULL, &m, st, NULL);
    if (s) { rf_free(m.p); return s; }
    if (!m.p) { m.p = rf_malloc(1); if (!m.p) return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); m.p[0] = 0; }
    *data = m.p; *n = m.n;
    return RF_OK;
}

static rf_status dav_mkcol(rf_ctx *ctx, const char *base, const char *rel, long *st, const volatile int *cancel) {
    char url[2048];
    RF_TRY(join_url(ctx, base, rel, url, sizeof url));
    size_t l = strlen(url);
    if (l + 1 < sizeof url && url[l - 1] != '/') { url[l] = '/'; url[l + 1] = '\0'; }
    long code = 0;
    rf_status s = dav_request(ctx, "MKCOL", url, NULL, 0, NULL, NULL, &code, cancel);
    if (st) *st = code;
    /* 405: the collection already exists, which is what we wanted. */
    if (s == RF_ERR_NET && code == 405) { rf_ctx_clear(ctx); return RF_OK; }
    return s;
}

rf_status rf_dav_mkcol(rf_ctx *ctx, const char *base, const char *rel, long *st) { return dav_mkcol(ctx, base, rel, st, NULL); }

static rf_status dav_move(rf_ctx *ctx, const char *base, const char *from, const char *to, long *st, const volatile int *cancel) {
    char src[2048], dst[2048];
    RF_TRY(join_url(ctx, base, from, src, sizeof src));
    RF_TRY(join_url(ctx, base, to, dst, sizeof dst));
    return dav_request(ctx, "MOVE", src, NULL, 0, dst, NULL, st, cancel);
}

rf_status rf_dav_move(rf_ctx *ctx, const char *base, const char *from, const char *to, long *st) {
    return dav_move(ctx, base, from, to, st, NULL);
}

/* MKCOL every collection of base's own path, outermost first (a WebDAV
 * server answers 409 Conflict to MKCOL when the parent is missing). */
static rf_status mkcol_base_chain(rf_ctx *ctx, const char *base, const volatile int *cancel) {
    const char *p = strstr(base, "://");
    if (!p) return rf_error(ctx, RF_ERR_INVALID, "bad base URL");
    p = strchr(p + 3, '/');
    while (p && p[1]) {
        const char *next = strchr(p + 1, '/');
        if (!next) break;
        char url[2048];
        snprintf(url, sizeof url, "%.*s", (int)(next - base + 1), base);
        long code = 0;
        rf_status s = dav_request(ctx, "MKCOL", url, NULL, 0, NULL, NULL, &code, cancel);
        if (s && !(s == RF_ERR_NET && code == 405)) return s;
        p = next;
    }
    rf_ctx_clear(ctx);
    return RF_OK;
}

rf_status rf_dav_publish_cancel(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n,
                                const volatile int *cancel) {
    RF_TRY(check_rel(ctx, rel));
    /* create parent collections, outermost first */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", rel);
    for (char *p = dir; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        long code = 0;
        rf_status s = dav_mkcol(ctx, base, dir, &code, cancel);
        if (s == RF_ERR_NET && code == 409) {
            RF_TRY(mkcol_base_chain(ctx, base, cancel));
            s = dav_mkcol(ctx, base, dir, &code, cancel);
        }
        if (s) return s;
        *p = '/';
    }
    char tmp[1100];
    rf_dav_temp_name(rel, tmp, sizeof tmp);
    RF_TRY(dav_put(ctx, base, tmp, data, n, NULL, cancel));
    return dav_move(ctx, base, tmp, rel, NULL, cancel);
}

void rf_dav_temp_name(const char *rel, char *out, size_t n) { snprintf(out, n, "%s.upload-%d", rel, (int)getpid()); }

rf_status rf_dav_delete(rf_ctx *ctx, const char *base, const char *rel, const volatile int *cancel) {
    char url[2048];
    RF_TRY(join_url(ctx, base, rel, url, sizeof url));
    rf_status s = dav_request(ctx, "DELETE", url, NULL, 0, NULL, NULL, NULL, cancel);
    if (s == RF_ERR_NOTFOUND) { rf_ctx_clear(ctx); return RF_OK; }   /* already gone */
    return s;
}

rf_status rf_dav_publish(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n) {
    return rf_dav_publish_cancel(ctx, base, rel, data, n, NULL);
}
