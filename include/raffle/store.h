/* raffle store: a sweep's results directory STORE/NAME/ (docs/jobs.md).
 *
 *   job.json                the job as submitted
 *   ledger.jsonl            append-only task events, one JSON object per line,
 *                           each line written with one write() and fsync'd
 *   tasks/ID/metrics.json   deterministic metrics + a separate "timing" object
 *   tasks/ID/model.rckpt    the task's checkpoint (absent for no-op kinds)
 *   tasks/ID/log.txt        the task's output
 *   status.json, report.json, report.csv, report.html
 *
 * Safety: every path is resolved from a directory handle with openat() and
 * O_NOFOLLOW, one validated component at a time, so names with "..", "/",
 * leading dots or symlinks planted in the store cannot make raffle read or
 * write outside it. Files are written to a temp name, fsync'd, renamed and
 * the directory fsync'd (redis/SQLite practice): a file is either the old
 * one, absent, or complete. A task counts as complete only when its files are
 * durable AND the ledger holds its "done" line, which is appended last. */
#ifndef RAFFLE_STORE_H
#define RAFFLE_STORE_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_LEDGER_VERSION 1

typedef struct rf_store rf_store;        /* opaque */
typedef struct rf_store_file rf_store_file;

/* RF_OK if `name` is a safe single path component: 1-128 chars of
 * [A-Za-z0-9._-], not starting with '.', not "..". */
rf_status rf_store_check_name(rf_ctx *ctx, const char *name);

/* Opens ROOT/NAME (creating both when create != 0). ROOT is the user's
 * choice and trusted; NAME and everything below it are checked. Returns a new
 * handle; free with rf_store_close. */
rf_status rf_store_open(rf_ctx *ctx, const char *root, const char *name, int create, rf_store **out);
/* Opens an existing store by its full directory path ("results/smoke"). */
rf_status rf_store_open_path(rf_ctx *ctx, const char *dir, int create, rf_store **out);
void      rf_store_close(rf_store *s);     /* accepts NULL */
const char *rf_store_dir(const rf_store *s);   /* borrowed "ROOT/NAME" */

/* rel is a relative path of checked components ("tasks/0123abcd.../metrics.json").
 * Directories on the way are created (mkdirat) when writing. */
rf_status rf_store_write(rf_ctx *ctx, rf_store *s, const char *rel, const void *data, size_t n);
/* Returns a new buffer (rf_free; NUL-terminated, not counted in n). */
rf_status rf_store_read(rf_ctx *ctx, rf_store *s, const char *rel, unsigned char **out, size_t *n);
/* 0 and the size if rel is a regular file (not a symlink), else -1. */
int       rf_store_stat(rf_store *s, const char *rel, uint64_t *size);
/* Opens rel read-only (no symlinks): *fd (close it) and its size. */
rf_status rf_store_open_fd(rf_ctx *ctx, rf_store *s, const char *rel, int *fd, uint64_t *size);
/* Removes rel if it is a regular file (used to drop a stale output). */
rf_status rf_store_remove(rf_ctx *ctx, rf_store *s, const char *rel);

/* Streaming atomic write for large files (checkpoints gathered in chunks):
 * begin creates a temp file, write appends, commit fsyncs and renames over
 * rel; abort (or commit failing) removes the temp file. commit and abort free f. */
rf_status rf_store_file_begin(rf_ctx *ctx, rf_store *s, const char *rel, rf_store_file **f);
rf_status rf_store_file_write(rf_ctx *ctx, rf_store_file *f, const void *data, size_t n);
rf_status rf_store_file_commit(rf_ctx *ctx, rf_store_file *f);
void      rf_store_file_abort(rf_store_file *f);

/* Writes "tasks/<16 hex>/<file>" into buf. */
void      rf_store_task_rel(char *buf, size_t n, uint64_t id, const char *file);

/* ---- ledger -------------------------------------------------------------
 * Each line: {"v":1,"time":"2026-01-01T00:00:00.000Z", <the caller's keys>}.
 * Events used by the coordinator: "sweep" (a run started: ranks, job hash,
 * "env" = the extra object below), "queued", "started", "done", "failed",
 * "skipped", "preempted", "finished". Task events carry "task" (hex id),
 * "kind", "rank", "attempt", and for failures "class" and "message". */
/* Appends ev (borrowed) as one line; fsyncs when sync != 0. A line torn by a
 * crash before the append is closed off first so it cannot swallow ev. */
rf_status rf_store_ledger_append(rf_ctx *ctx, rf_store *s, const cJSON *ev, int sync);
rf_status rf_store_ledger_sync(rf_ctx *ctx, rf_store *s);
/* Calls fn for each complete, parseable line in order (fn borrows the
 * event); a torn or corrupt line is skipped and counted in *n_bad (may be
 * NULL). fn returns non-zero to stop. */
typedef int (*rf_ledger_fn)(void *ud, const cJSON *ev);
rf_status rf_store_ledger_replay(rf_ctx *ctx, rf_store *s, rf_ledger_fn fn, void *ud, int *n_bad);
/* Sets an object (copied) added as "env" to every "sweep" event: where and
 * under what the run happened (host, ranks; Slurm job id, array task id, node
 * list and restart count when the HPC front-end provides them). */
rf_status rf_store_set_env(rf_ctx *ctx, rf_store *s, const cJSON *env);
const cJSON *rf_store_env(const rf_store *s);   /* borrowed; NULL if unset */

/* Calls fn(ud, rel) after each file of the store is durably written
 * (rf_store_write, rf_store_file_commit, each ledger append): the remote
 * mirror queues rel for upload. fn must not fail or block for long; NULL
 * removes the hook. */
typedef void (*rf_store_write_fn)(void *ud, const char *rel);
void      rf_store_set_on_write(rf_store *s, rf_store_write_fn fn, void *ud);

/* ---- one sweep per store ------------------------------------------------
 * rf_store_lock takes the store's sweep lock: an open-file-description lock
 * (fcntl F_OFD_SETLK, or flock where the file system lacks OFD locks) on
 * STORE/NAME/.lock, which the kernel drops when the holder dies, so a killed
 * sweep never leaves a stale lock (a marker file would). The holder writes
 * "host pid time" into the file. If another process holds it: RF_ERR_BUSY
 * naming the holder's host and pid. The lock lasts until rf_store_close. */
rf_status rf_store_lock(rf_ctx *ctx, rf_store *s);

/* Removes temporary files that writers which died left in the store (a
 * kill -9 between create and rename): ".tmp.PID.N" (rf_store_write) and
 * "NAME.tmp.PID" (rf_write_file_atomic) in the store's top directory, its
 * .spool and every tasks/ID/, but only when process PID no longer exists on
 * this host (a live writer's file is left alone). Call with the lock held.
 * *removed (may be NULL) gets the number of files removed. */
rf_status rf_store_remove_stale(rf_ctx *ctx, rf_store *s, int *removed);

/* 1 if name is a temporary file name of a writer whose process is gone
 * (the rule rf_store_remove_stale applies; scratch clean-up uses it too). */
int       rf_store_stale_temp(const char *name);

/* UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (>= 32 bytes). */
void      rf_store_time_iso(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
