/* raffle net: datasets and checkpoints by URL, and a remote results store
 * over HTTP/WebDAV, both through libcurl.
 *
 * Only http, https and file URLs are accepted; file URLs only under the
 * configured roots (RAFFLE_FILE_ROOTS, colon-separated; default: the current
 * directory and $HOME/.cache/raffle). TLS verification is always on.
 * Credentials come from ~/.netrc or RAFFLE_HTTP_USER / RAFFLE_HTTP_PASSWORD
 * and never appear in messages: URLs are shown with their user-info removed. */
#ifndef RAFFLE_NET_H
#define RAFFLE_NET_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* SHA-256 (rf_sha256_*) is in raffle/core.h. */

/* ---- URLs ------------------------------------------------------------------ */
typedef enum rf_url_scheme { RF_URL_NONE = 0, RF_URL_HTTP = 1, RF_URL_HTTPS = 2, RF_URL_FILE = 3,
                              RF_URL_OTHER = 4 } rf_url_scheme;
/* Scheme of s; RF_URL_NONE for a plain path, RF_URL_OTHER for any other
 * "scheme://" (ftp://, s3://, ...), which nothing accepts: a caller that
 * takes a path or a URL must refuse it rather than treat it as a path. */
rf_url_scheme rf_url_scheme_of(const char *s);
/* Checks a URL is acceptable (scheme allowed; file URLs under the roots;
 * no control characters). Error RF_ERR_INVALID names the URL (redacted). */
rf_status rf_url_check(rf_ctx *ctx, const char *url);
/* Copies url into out with any "user:password@" removed (for messages). */
void rf_url_redact(const char *url, char *out, size_t n);

/* ---- downloads --------------------------------------------------------------- */
typedef void (*rf_progress_fn)(void *ud, uint64_t done, uint64_t total);
typedef struct rf_fetch_opts {
    const char *sha256;      /* expected hex digest, or NULL to skip pinning      */
    const char *cache_dir;   /* where finished downloads are kept (NULL: default) */
    int   retries;           /* extra attempts after the first (default 4)        */
    double backoff_s;        /* first retry delay, doubled each time (default 0.5) */
    long  timeout_s;         /* per-attempt timeout (default 600)                 */
    rf_progress_fn progress; /* called during transfer (may be NULL)              */
    void *progress_ud;
} rf_fetch_opts;
void rf_fetch_opts_default(rf_fetch_opts *o);
/* Downloads url into the cache (resuming a partial ".part" file), verifies the
 * sha256 if given, and writes the cached file's path into path_out. A cached
 * file whose digest matches is reused without network access. */
rf_status rf_fetch_url(rf_ctx *ctx, const char *url, const rf_fetch_opts *o, char *path_out, size_t n);
/* Downloads url to dest atomically (no cache). On any failure nothing is
 * left at dest or dest.part. */
rf_status rf_fetch_to_file(rf_ctx *ctx, const char *url, const rf_fetch_opts *o, const char *dest);

/* ---- remote report index ---------------------------------------------------
 * Parses a sweep's report.json as fetched from a server (untrusted input):
 * the ids of its "tasks" whose "status" is "done" or absent, in order. Each
 * id must be exactly 16 lowercase hex digits, because it becomes a path
 * component ("tasks/ID/model.rckpt"): anything else ("../..", "/etc") is
 * RF_ERR_FORMAT naming the entry, as is a missing "tasks" array. Returns a
 * new array of *count NUL-terminated ids (rf_free; NULL when *count is 0). */
rf_status rf_fetch_index_parse(rf_ctx *ctx, const char *text, size_t n, char (**ids)[17], int *count);

/* ---- WebDAV ------------------------------------------------------------------ */
/* All paths are relative to base (which ends with '/'). HTTP status of the
 * last request goes into *http_status when non-NULL. */
rf_status rf_dav_put(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n, long *http_status);
rf_status rf_dav_get(rf_ctx *ctx, const char *base, const char *rel, unsigned char **data, size_t *n, long *http_status);
rf_status rf_dav_mkcol(rf_ctx *ctx, const char *base, const char *rel, long *http_status);
rf_status rf_dav_move(rf_ctx *ctx, const char *base, const char *from, const char *to, long *http_status);
/* Atomic publish: MKCOL the parents, PUT to a temporary name, MOVE over rel. */
rf_status rf_dav_publish(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n);
/* The same, abandoned (RF_ERR_NET) within about a second once *cancel (the
 * caller's flag, read while requests wait) becomes non-zero. */
rf_status rf_dav_publish_cancel(rf_ctx *ctx, const char *base, const char *rel, const void *data, size_t n,
                                const volatile int *cancel);
/* The temporary name this process publishes rel through ("rel.upload-PID"). */
void      rf_dav_temp_name(const char *rel, char *out, size_t n);
/* DELETE rel (a missing one is fine); cancel as for rf_dav_publish_cancel (may be NULL). */
rf_status rf_dav_delete(rf_ctx *ctx, const char *base, const char *rel, const volatile int *cancel);

/* ---- remote store mirror with a local spool ---------------------------------
 * A sweep writes its local store as always; the mirror uploads each file
 * after it is written. A failed upload is recorded in SPOOL (a directory in
 * the local store) and retried by rf_mirror_flush, so nothing is lost while
 * the server is down. An upload that failed half-way may have left its
 * temporary name on the server (a frozen server finishes the PUT it queued
 * once it is thawed): such names are kept in SPOOL/abandoned and deleted
 * when the server answers again. */
typedef struct rf_mirror rf_mirror;
/* Returns a new mirror of local_root (a store directory) to base_url; free with rf_mirror_free. */
rf_status rf_mirror_open(rf_ctx *ctx, const char *base_url, const char *local_root, rf_mirror **out);
void      rf_mirror_free(rf_mirror *m);
/* Queues rel (a file under local_root) for upload and tries to flush. An
 * unreachable server is not an error: the file stays spooled. */
rf_status rf_mirror_push(rf_ctx *ctx, rf_mirror *m, const char *rel);
/* Queues rel for upload without trying the network (the spool file is
 * rewritten only when rel was not queued yet): for callers that must not
 * block, which flush on their own schedule. */
rf_status rf_mirror_add(rf_ctx *ctx, rf_mirror *m, const char *rel);
/* Number of queued paths. */
int       rf_mirror_pending(const rf_mirror *m);
/* Tries to upload everything spooled; *pending gets what is still queued. */
rf_status rf_mirror_flush(rf_ctx *ctx, rf_mirror *m, int *pending);
/* Uploads from a thread of its own from now on: it flushes whenever a path
 * is queued (rf_mirror_add wakes it) and after a failure retries in 2, 4,
 * ... 60 s. Nothing the caller does then waits for the network, so a slow or
 * frozen server delays uploads only, as a server that is down does. */
rf_status rf_mirror_start(rf_ctx *ctx, rf_mirror *m);
/* Stops the thread: waits up to wait_s seconds for the queue to empty
 * (retrying every second), then abandons a request in flight. Returns the
 * number of paths left spooled. rf_mirror_free stops it with wait_s = 0. */
int       rf_mirror_stop(rf_mirror *m, double wait_s);
/* For progress messages: paths queued (returned), whether the last flush
 * left some (*down), flushes finished so far, and the last error. Any
 * pointer may be NULL. */
int       rf_mirror_status(rf_mirror *m, int *down, unsigned long *flushes, char *err, size_t n);

#ifdef __cplusplus
}
#endif
#endif
