/* Remote store mirror: uploads files of a local store to a WebDAV server,
 * spooling what cannot be uploaded yet.
 *
 * The spool is one text file, LOCAL_ROOT/.spool/queue, one relative path per
 * line, rewritten atomically whenever it changes. A path stays queued until
 * its upload (PUT to a temporary name, MOVE over the final name) succeeded,
 * so a server outage or a crash of rank 0 loses nothing: the next flush, in
 * this run or a resumed one, uploads the current local copy.
 *
 * Uploads may run in a thread of their own (rf_mirror_start), so a slow or
 * frozen server (SIGSTOPped: connections are accepted and never answered)
 * never holds up the sweep that queues files (issue 19, defect 15): the
 * caller only ever takes the queue's mutex. A file rewritten while its
 * upload is in flight stays queued, so its newest content goes up next. */
#define _GNU_SOURCE
#include "raffle/net.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A list of relative paths, the queue or the abandoned temporary names. */
typedef struct pathlist { char **v; int n, cap; } pathlist;

struct rf_mirror {
    char  *base;        /* remote base URL, ends with '/' */
    char  *root;        /* local store directory */
    pathlist q;         /* pending relative paths (owned) */
    pathlist abandoned; /* remote temporary names to delete (SPOOL/abandoned) */
    pthread_mutex_t mu;       /* the queue and the fields below */
    pthread_mutex_t flush_mu; /* one flush at a time */
    pthread_cond_t  cv;       /* work queued, or stop asked */
    pthread_t thread;
    int    running, quit, draining;
    volatile int cancel;      /* abandon the request in flight */
    int    inflight_dirty;    /* queue[0] was queued again during its upload */
    int    down;              /* the last flush left files queued */
    unsigned long flushes;    /* flush attempts finished */
    double wait, next_try;    /* back-off after a failed flush */
    char   err[RF_ERR_MAX];   /* why the last flush stopped, "" if none */
};

/* Writes paths v[0..n) to SPOOL/name, one per line, atomically. */
static rf_status save_list(rf_ctx *ctx, const rf_mirror *m, const char *name, char *const *v, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(v[i]) + 1;
    char *buf = rf_malloc(len + 1), *p = buf;
    if (!buf) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
    for (int i = 0; i < n; i++) { size_t l = strlen(v[i]); memcpy(p, v[i], l); p[l] = '\n'; p += l + 1; }
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/.spool", m->root);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    rf_status s = rf_mkdirs(ctx, dir);
    if (!s) s = rf_write_file_atomic(ctx, path, buf, len);
    rf_free(buf);
    return s;
}

static rf_status save_queue(rf_ctx *ctx, rf_mirror *m) { return save_list(ctx, m, "queue", m->q.v, m->q.n); }

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

/* Appends a copy of rel to l unless it is there; RF_ERR_INVALID if rel is
 * not a safe store-relative path. */
static rf_status list_add(rf_ctx *ctx, pathlist *l, const char *rel) {
    if (!rel_ok(rel)) return rf_error(ctx, RF_ERR_INVALID, "mirror: '%.200s' is not a safe store-relative path", rel);
    for (int i = 0; i < l->n; i++) if (strcmp(l->v[i], rel) == 0) return RF_OK;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        char **v = rf_realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
        l->v = v; l->cap = cap;
    }
    if (!(l->v[l->n] = rf_strdup(rel))) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
    l->n++;
    return RF_OK;
}

/* Reads SPOOL/name into the mirror, one path per line, each through add. A
 * bad line is RF_ERR_FORMAT naming the file; a missing file is empty. */
static rf_status load_list(rf_ctx *ctx, rf_mirror *m, const char *name, rf_status (*add)(rf_ctx *, rf_mirror *, const char *)) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.spool/%s", m->root, name);
    unsigned char *buf; size_t n;
    rf_status s = rf_read_file(ctx, path, &buf, &n);
    if (s == RF_ERR_NOTFOUND) { rf_ctx_clear(ctx); return RF_OK; }
    if (s) return s;
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (*line && (s = add(ctx, m, line)) != RF_OK) break;
    rf_free(buf);
    if (s == RF_ERR_INVALID) {   /* a bad spool line is a corrupt file, not a bad argument */
        rf_error_prefix(ctx, "%s", path);
        s = RF_ERR_FORMAT;
        if (ctx) ctx->status = s;
    }
    return s;
}

/* Queues rel (mu held, or before the thread starts). */
static rf_status enqueue(rf_ctx *ctx, rf_mirror *m, const char *rel) {
    /* queued again while its upload is in flight: upload it once more after */
    if (m->q.n > 0 && strcmp(m->q.v[0], rel) == 0) m->inflight_dirty = 1;
    return list_add(ctx, &m->q, rel);
}

static rf_status add_abandoned(rf_ctx *ctx, rf_mirror *m, const char *rel) { return list_add(ctx, &m->abandoned, rel); }

rf_status rf_mirror_open(rf_ctx *ctx, const char *base_url, const char *local_root, rf_mirror **out) {
    *out = NULL;
    RF_TRY(rf_url_check(ctx, base_url));
    if (rf_url_scheme_of(base_url) == RF_URL_FILE)
        return rf_error(ctx, RF_ERR_INVALID, "a remote store must be an http(s) WebDAV URL");
    rf_mirror *m = rf_calloc(1, sizeof *m);
    if (!m) return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory");
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->flush_mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    size_t bl = strlen(base_url);
    m->base = rf_malloc(bl + 2);
    m->root = rf_strdup(local_root);
    if (!m->base || !m->root) { rf_mirror_free(m); return rf_error(ctx, RF_ERR_NOMEM, "mirror: out of memory"); }
    snprintf(m->base, bl + 2, "%s%s", base_url, base_url[bl - 1] == '/' ? "" : "/");
    /* reload a spool left by an earlier run */
    rf_status s = load_list(ctx, m, "queue", enqueue);
    if (!s) s = load_list(ctx, m, "abandoned", add_abandoned);
    if (s) { rf_mirror_free(m); return s; }
    rf_ctx_clear(ctx);
    *out = m;
    return RF_OK;
}

void rf_mirror_free(rf_mirror *m) {
    if (!m) return;
    if (m->running) rf_mirror_stop(m, 0);
    for (int i = 0; i < m->q.n; i++) rf_free(m->q.v[i]);
    rf_free(m->q.v);
    for (int i = 0; i < m->abandoned.n; i++) rf_free(m->abandoned.v[i]);
    rf_free(m->abandoned.v);
    rf_free(m->base);
    rf_free(m->root);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->flush_mu);
    pthread_cond_destroy(&m->cv);
    rf_free(m);
}

/* Uploads queued files from the head until the queue is empty or the server
 * fails; the network is used without the queue's mutex held. */
rf_status rf_mirror_flush(rf_ctx *ctx, rf_mirror *m, int *pending) {
    pthread_mutex_lock(&m->flush_mu);
    pthread_mutex_lock(&m->mu);
    rf_status s = RF_OK, net = RF_OK;
    int changed = 0;
    /* first the temporary names of uploads abandoned half-way */
    while (m->abandoned.n > 0 && !m->cancel && !net && !s) {
        char rel[1100];
        snprintf(rel, sizeof rel, "%s", m->abandoned.v[m->abandoned.n - 1]);
        pthread_mutex_unlock(&m->mu);
        s = rf_dav_delete(ctx, m->base, rel, &m->cancel);
        if (s == RF_ERR_NET) { net = s; s = RF_OK; }
        pthread_mutex_lock(&m->mu);
        if (s || net) break;
        rf_free(m->abandoned.v[--m->abandoned.n]);
        s = save_list(ctx, m, "abandoned", m->abandoned.v, m->abandoned.n);
    }
    while (m->q.n > 0 && !m->cancel && !net && !s) {
        char rel[1100], path[4200];
        snprintf(rel, sizeof rel, "%s", m->q.v[0]);
        m->inflight_dirty = 0;
        pthread_mutex_unlock(&m->mu);
        snprintf(path, sizeof path, "%s/%s", m->root, rel);
        unsigned char *buf; size_t n;
        s = rf_read_file(ctx, path, &buf, &n);
        if (s == RF_ERR_NOTFOUND) { s = RF_OK; buf = NULL; n = 0; }   /* vanished locally: nothing to upload */
        if (!s && buf) {
            s = rf_dav_publish_cancel(ctx, m->base, rel, buf, n, &m->cancel);
            if (s == RF_ERR_NET || s == RF_ERR_NOTFOUND) { net = s; s = RF_OK; }   /* server down: keep the rest */
        }
        rf_free(buf);
        pthread_mutex_lock(&m->mu);
        if (net) {
            /* the PUT to the temporary name may land (a frozen server works
             * off its backlog once thawed): delete that name later */
            char tmp[1200];
            rf_ctx tctx;
            rf_ctx_init(&tctx);
            rf_dav_temp_name(rel, tmp, sizeof tmp);
            int before = m->abandoned.n;
            if (list_add(&tctx, &m->abandoned, tmp) == RF_OK && m->abandoned.n != before)
                save_list(&tctx, m, "abandoned", m->abandoned.v, m->abandoned.n);
        }
        if (s || net) break;
        /* queue[0] is still rel: only a flush removes entries, one at a time */
        char *head = m->q.v[0];
        memmove(m->q.v, m->q.v + 1, (size_t)(m->q.n - 1) * sizeof *m->q.v);
        m->q.n--;
        changed = 1;
        if (m->inflight_dirty) m->q.v[m->q.n++] = head;   /* rewritten meanwhile: upload again */
        else rf_free(head);
    }
    if (net) snprintf(m->err, sizeof m->err, "%s", rf_ctx_error(ctx));
    else if (!s) m->err[0] = '\0';
    if (!s && (changed || net)) s = save_queue(ctx, m);
    if (pending) *pending = m->q.n;
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_unlock(&m->flush_mu);
    if (!s) rf_ctx_clear(ctx);
    return s;
}

rf_status rf_mirror_push(rf_ctx *ctx, rf_mirror *m, const char *rel) {
    pthread_mutex_lock(&m->mu);
    rf_status s = enqueue(ctx, m, rel);
    if (!s) s = save_queue(ctx, m);
    pthread_mutex_unlock(&m->mu);
    RF_TRY(s);
    return rf_mirror_flush(ctx, m, NULL);
}

rf_status rf_mirror_add(rf_ctx *ctx, rf_mirror *m, const char *rel) {
    pthread_mutex_lock(&m->mu);
    int before = m->q.n;
    rf_status s = enqueue(ctx, m, rel);
    if (!s && m->q.n != before) s = save_queue(ctx, m);
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return s;
}

int rf_mirror_pending(const rf_mirror *m) {
    rf_mirror *w = (rf_mirror *)m;   /* the mutex is not part of the value */
    pthread_mutex_lock(&w->mu);
    int n = w->q.n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* ---- the uploader thread ------------------------------------------------- */

static void deadline_in(struct timespec *ts, double s) {
    clock_gettime(CLOCK_REALTIME, ts);
    double t = (double)ts->tv_nsec * 1e-9 + s;
    ts->tv_sec += (time_t)t;
    ts->tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
}

/* Flushes whenever files are queued; after a failed flush waits 2, 4, ...
 * 60 s (1 s while draining at the end), so a dead server costs one refused
 * connection per period. */
static void *uploader(void *arg) {
    rf_mirror *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->quit) {
        double now = rf_now();
        if (m->q.n == 0 || (m->down && now < m->next_try)) {
            struct timespec ts;
            deadline_in(&ts, m->q.n == 0 ? 1.0 : m->next_try - now);
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&m->mu);
        rf_ctx ctx;
        rf_ctx_init(&ctx);
        int pending = 0;
        rf_status s = rf_mirror_flush(&ctx, m, &pending);
        pthread_mutex_lock(&m->mu);
        if (s) snprintf(m->err, sizeof m->err, "%s", rf_ctx_error(&ctx));
        m->down = s || pending > 0;
        if (m->down) {
            m->wait = m->draining ? 1 : m->wait < 2 ? 2 : (m->wait * 2 > 60 ? 60 : m->wait * 2);
            m->next_try = rf_now() + m->wait;
        } else {
            m->wait = 0;
        }
        m->flushes++;
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

rf_status rf_mirror_start(rf_ctx *ctx, rf_mirror *m) {
    if (m->running) return RF_OK;
    m->quit = m->draining = 0;
    m->cancel = 0;
    int e = pthread_create(&m->thread, NULL, uploader, m);
    if (e) return rf_error(ctx, RF_ERR_INTERNAL, "mirror: cannot start the upload thread: %s", strerror(e));
    m->running = 1;
    return RF_OK;
}

int rf_mirror_stop(rf_mirror *m, double wait_s) {
    if (!m->running) return rf_mirror_pending(m);
    pthread_mutex_lock(&m->mu);
    double until = rf_now() + wait_s;
    m->draining = 1;
    if (m->down && m->next_try > rf_now() + 1) m->next_try = rf_now();   /* one more try now */
    pthread_cond_broadcast(&m->cv);
    while (m->q.n > 0 && rf_now() < until) {
        struct timespec ts;
        deadline_in(&ts, until - rf_now() < 0.5 ? until - rf_now() : 0.5);
        pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    }
    m->quit = 1;
    m->cancel = 1;   /* a request still waiting on a frozen server is given up */
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    m->running = 0;
    m->cancel = 0;
    return rf_mirror_pending(m);
}

int rf_mirror_status(rf_mirror *m, int *down, unsigned long *flushes, char *err, size_t n) {
    pthread_mutex_lock(&m->mu);
    int pending = m->q.n;
    if (down) *down = m->down;
    if (flushes) *flushes = m->flushes;
    if (err && n) snprintf(err, n, "%s", m->err);
    pthread_mutex_unlock(&m->mu);
    return pending;
}
