/* Remote store mirror: uploads files of a local store to a WebDAV server,
 * spooling what cannot be uploaded yet.
 *
 * The spool is one text file, LOCAL_ROOT/.spool/queue, one relative path per
 * line, rewritten atomically whenever it changes. A path stays queued until
 * its upload (PUT to a temporary name, MOVE over the final name) succeeded,
 * so a server outage or a crash of rank 0 loses nothing: the next flush, in
 * this run or a resumed one, uploads the current local copy. */
#include "raffle/net.h"

#include <stdio.h>
#include <string.h>

struct rf_mirror {
    char  *base;        /* remote base URL, ends with '/' */
    char  *root;        /* local store directory */
    char **queue;       /* pending relative paths (owned) */
    int    n, cap;
};

static rf_status save_queue(rf_ctx *ctx, rf_mirror *m) {
    size_t len = 0;
    for (int i = 0; i < m->n; i++) len += strlen(m->queue[i]) + 1;
    char *buf = rf_malloc(len + 1), *p = buf;
    if (!buf) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
    for (int i = 0; i < m->n; i++) { size_t l = strlen(m->queue[i]); memcpy(p, m->queue[i], l); p[l] = '\n'; p += l + 1; }
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/.spool", m->root);
    snprintf(path, sizeof path, "%s/queue", dir);
    rf_status s = rf_mkdirs(ctx, dir);
    if (!s) s = rf_write_file_atomic(ctx, path, buf, len);
    rf_free(buf);
    return s;
}

/* A queued path is joined to both the local root and the remote base, and
 * the spool file is read back on the next run: it must stay inside both.
 * Accepted: '/'-separated components of [A-Za-z0-9._-], none empty or
 * starting with '.', so "..", absolute paths and hidden files are refused
 * (the store's own naming rule, store.h). */
static int rel_ok(const char *rel) {
    if (!*rel || strlen(rel) > 1024) return 0;
    for (const char *c = rel; *c; c++) {
        int start = c == rel || c[-1] == '/';
        if (start && (*c == '.' || *c == '/')) return 0;
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-' || *c == '/'))
            return 0;
    }
    return rel[strlen(rel) - 1] != '/';
}

static rf_status enqueue(rf_ctx *ctx, rf_mirror *m, const char *rel) {
    if (!rel_ok(rel)) return rf_error(ctx, RF_ERR_INVALID, "mirror: '%.200s' is not a safe store-relative path", rel);
    for (int i = 0; i < m->n; i++) if (strcmp(m->queue[i], rel) == 0) return RF_OK;
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 16;
        char **q = rf_realloc(m->queue, (size_t)cap * sizeof *q);
        if (!q) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
        m->queue = q; m->cap = cap;
    }
    if (!(m->queue[m->n] = rf_strdup(rel))) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
    m->n++;
    return RF_OK;
}

rf_status rf_mirror_open(rf_ctx *ctx, const char *base_url, const char *local_root, rf_mirror **out) {
    *out = NULL;
    RF_TRY(rf_url_check(ctx, base_url));
    if (rf_url_scheme_of(base_url) == RF_URL_FILE)
        return rf_error(ctx, RF_ERR_INVALID, "a remote store must be an http(s) WebDAV URL");
    rf_mirror *m = rf_calloc(1, sizeof *m);
    if (!m) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
    size_t bl = strlen(base_url);
    m->base = rf_malloc(bl + 2);
    m->root = rf_strdup(local_root);
    if (!m->base || !m->root) { rf_mirror_free(m); return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory"); }
    snprintf(m->base, bl + 2, "%s%s", base_url, base_url[bl - 1] == '/' ? "" : "/");
    /* reload a spool left by an earlier run */
    char path[4200];
    snprintf(path, sizeof path, "%s/.spool/queue", local_root);
    unsigned char *buf; size_t n;
    rf_status s = rf_read_file(ctx, path, &buf, &n);
    if (s == RF_OK) {
        char *save = NULL;
        for (char *line = strtok_r((char *)buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            if (*line && (s = enqueue(ctx, m, line)) != RF_OK) break;
        rf_free(buf);
        if (s == RF_ERR_INVALID) {   /* a bad spool line is a corrupt file, not a bad argument */
            rf_error_prefix(ctx, "%s", path);
            s = RF_ERR_FORMAT;
            if (ctx) ctx->status = s;
        }
        if (s) { rf_mirror_free(m); return s; }
    } else if (s != RF_ERR_NOTFOUND) {
        rf_mirror_free(m);
        return s;
    }
    rf_ctx_clear(ctx);
    *out = m;
    return RF_OK;
}

void rf_mirror_free(rf_mirror *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) rf_free(m->queue[i]);
    rf_free(m->queue);
    rf_free(m->base);
    rf_free(m->root);
    rf_free(m);
}

rf_status rf_mirror_flush(rf_ctx *ctx, rf_mirror *m, int *pending) {
    int before = m->n, i = 0;
    rf_status net = RF_OK;
    while (i < m->n) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", m->root, m->queue[i]);
        unsigned char *buf; size_t n;
        rf_status s = rf_read_file(ctx, path, &buf, &n);
        if (s == RF_ERR_NOTFOUND) { s = RF_OK; buf = NULL; n = 0; }   /* vanished locally: nothing to upload */
        else if (s) return s;
        if (buf) {
            s = rf_dav_publish(ctx, m->base, m->queue[i], buf, n);
            rf_free(buf);
            if (s == RF_ERR_NET || s == RF_ERR_NOTFOUND) { net = s; break; }  /* server down: keep the rest */
            if (s) return s;
        }
        rf_free(m->queue[i]);
        memmove(m->queue + i, m->queue + i + 1, (size_t)(m->n - i - 1) * sizeof *m->queue);
        m->n--;
    }
    if (pending) *pending = m->n;
    if (m->n != before || net) RF_TRY(save_queue(ctx, m));
    rf_ctx_clear(ctx);
    return RF_OK;
}

rf_status rf_mirror_push(rf_ctx *ctx, rf_mirror *m, const char *rel) {
    RF_TRY(enqueue(ctx, m, rel));
    RF_TRY(save_queue(ctx, m));
    return rf_mirror_flush(ctx, m, NULL);
}

rf_status rf_mirror_add(rf_ctx *ctx, rf_mirror *m, const char *rel) {
    int before = m->n;
    RF_TRY(enqueue(ctx, m, rel));
    return m->n != before ? save_queue(ctx, m) : RF_OK;
}

int rf_mirror_pending(const rf_mirror *m) { return m->n; }
