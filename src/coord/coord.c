/* The sweep driver: scheduler, rank-0 coordinator, workers, in-process mode,
 * resume from the ledger, status.json and progress.
 *
 * Scheduling: a task is ready when all its parents are done. Ready tasks sit
 * in a binary heap ordered by height (tasks on the longest path from the task
 * to the end of the DAG: the critical-path rule of list scheduling, so long
 * lottery chains start first) and, for locality, also in the heap of the rank
 * that holds its first parent's checkpoint. An idle rank takes the top of its
 * own heap when that is as high as the global top, else the global top;
 * entries taken through the other heap are dropped lazily. Per-task state is
 * a 32-byte record plus 4 bytes per edge and heap slot.
 *
 * Durability order for a finished task: model.rckpt, log.txt, metrics.json
 * written atomically, then the fsync'd "done" ledger line. Resume trusts a
 * "done" line only if the files it names are there (metrics.json, and a
 * model.rckpt of the recorded size). */
#define _GNU_SOURCE
#include "coord/coord_internal.h"
#include "raffle/ckpt.h"
#include "raffle/store.h"
#include "raffle/task.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

enum { S_PENDING = 0, S_READY, S_RUNNING, S_DONE, S_FAILED, S_SKIPPED };

/* Files of a task that travel between ranks: the checkpoint and, when the
 * kind writes one, the lottery rewind point its children read from the
 * parent's directory (docs/pruning.md, rewind "step:K"). Index = PARENT arg. */
#define AUX_FILE "rewind.rckpt"
/* The resumable training state a stopped (preempted) or killed attempt left
 * (task.h): kept in the store under the task's id and shipped back to the
 * rank that runs the task next, like a parent checkpoint (PARENT arg 2). */
#define RESUME_FILE "resume.rckpt"
enum { FILE_MODEL = 0, FILE_AUX = 1, FILE_RESUME = 2 };
static const char *const task_files[] = {"model.rckpt", AUX_FILE, RESUME_FILE};

typedef struct stask {
    int32_t  height;
    int32_t  waiting;      /* parents not done yet */
    uint32_t child_off, n_children;
    uint64_t holders;      /* ranks (< 64) holding its checkpoint */
    uint8_t  state, attempts, has_ckpt;
    uint8_t  progress;     /* share of the work its resume point holds, in 1/255 */
    int32_t  rank;         /* where it runs / ran */
} stask;

typedef struct heap { int32_t *v; int n, cap; } heap;

/* gone: given up by the heartbeat (silent past the timeout): never sent
 * anything again, its messages ignored */
typedef struct wstate { int32_t task; int idle, gone; double since; } wstate;

/* A rank's host name (gethostname) as gathered by rank 0 at the start: the
 * ledger, status.json and metrics.json say where each task ran. */
typedef char host_name[HOST_NAME_MAX + 1];

typedef struct coord {
    rf_ctx              *ctx;
    const rf_job        *job;
    const rf_sweep_opts *o;
    stask   *t;
    int32_t *children;
    heap     global;
    heap    *pref;
    int      nranks;
    rf_store *store;
    wstate  *w;
    host_name *hosts;      /* per rank */
    int64_t  *pids;        /* per rank: its process id (a given-up rank's task is killed by its host's others) */
    uint8_t  *direct;      /* per rank: writes its checkpoints into the store itself (issue 24) */
    uint64_t  direct_bytes;
    int      n_done, n_reused, n_failed, n_skipped, n_running, retried;
    int      n_progress;   /* this run: tasks done + resume points saved */
    int      n_lost, lost_ranks;   /* heartbeats: attempts lost, workers given up */
    int      n_lost_before;        /* attempts an earlier, killed run left open */
    char     lost_hosts[256];
    int      stopping, retries;
    int      launcher_ended;       /* the launcher is ending the job: a rank died (opts.ending_flag) */
    double   time_limit, t0, last_status, est_done, real_done, heartbeat;
    uint64_t mem, gathered;
    char     work[4096];
} coord;

static void vlog_line(coord *C, int always, const char *fmt, va_list ap) {
    if ((C->o->quiet && !always) || !C->o->log) return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    C->o->log(C->o->log_ud, line);
}

static void progress(coord *C, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(coord *C, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog_line(C, 0, fmt, ap);
    va_end(ap);
}

/* A line that is shown even with quiet (a rank given up). */
static void notice(coord *C, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(coord *C, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog_line(C, 1, fmt, ap);
    va_end(ap);
}

/* "one-shot/snip/sparsity=0.9/seed=1 [81986e02]" with the caller's labels,
 * "81986e025c446715 (prune)" without. */
static void task_name(const coord *C, int32_t i, char *buf, size_t n) {
    char hx[17];
    rf_job_id_hex(C->job->tasks[i].id, hx);
    if (C->o->labels) snprintf(buf, n, "%s [%.8s]", rf_job_label(C->o->labels, i), hx);
    else snprintf(buf, n, "%s (%s)", hx, rf_job_kind_name(C->job->tasks[i].kind));
}

void rf_sweep_opts_default(rf_sweep_opts *o) {
    memset(o, 0, sizeof *o);
    o->store_root = "results";
    o->exe = "/proc/self/exe";
    o->retries = -1;
    o->status_every_s = 2;
    o->heartbeat_s = 5;
    o->direct_writes = -1;
}

/* ---- heap ------------------------------------------------------------------ */

static int before(const coord *C, int32_t a, int32_t b) {
    return C->t[a].height > C->t[b].height || (C->t[a].height == C->t[b].height && a < b);
}

static int heap_push(const coord *C, heap *h, int32_t x) {
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 64;
        int32_t *v = rf_realloc(h->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        h->v = v; h->cap = cap;
    }
    int i = h->n++;
    while (i > 0 && before(C, x, h->v[(i - 1) / 2])) { h->v[i] = h->v[(i - 1) / 2]; i = (i - 1) / 2; }
    h->v[i] = x;
    return 0;
}

static void heap_pop(const coord *C, heap *h) {
    int32_t x = h->v[--h->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(C, h->v[c + 1], h->v[c])) c++;
        if (!before(C, h->v[c], x)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = x;
}

/* Top ready task of h (dropping entries that are no longer ready), or -1. */
static int32_t heap_top(const coord *C, heap *h) {
    while (h->n && C->t[h->v[0]].state != S_READY) heap_pop(C, h);
    return h->n ? h->v[0] : -1;
}

/* ---- scheduler ----------------------------------------------------------- */

size_t coord_sched_bytes(const rf_job *job) {
    size_t edges = 0;
    for (int i = 0; i < job->n_tasks; i++) edges += job->tasks[i].n_parents;
    /* per task: record + one slot in the global heap + one in a rank heap */
    return (size_t)job->n_tasks * (sizeof(stask) + 2 * sizeof(int32_t)) + edges * sizeof(int32_t);
}

static rf_status sched_init(coord *C) {
    const rf_job *j = C->job;
    int n = j->n_tasks;
    C->t = rf_calloc((size_t)(n ? n : 1), sizeof *C->t);
    size_t edges = 0;
    for (int i = 0; i < n; i++) edges += j->tasks[i].n_parents;
    C->children = rf_malloc((edges ? edges : 1) * sizeof *C->children);
    int32_t *h = rf_malloc((size_t)(n ? n : 1) * sizeof *h);
    C->pref = rf_calloc((size_t)C->nranks, sizeof *C->pref);
    C->w = rf_calloc((size_t)C->nranks, sizeof *C->w);
    if (!C->t || !C->children || !h || !C->pref || !C->w) { rf_free(h); return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory for %d tasks", n); }
    rf_job_heights(j, h);
    for (int i = 0; i < n; i++) {
        C->t[i].height = h[i];
        C->t[i].rank = -1;
        C->t[i].has_ckpt = j->tasks[i].kind != RF_JOB_NOOP && j->tasks[i].kind != RF_JOB_FAIL;
        const int32_t *p = rf_job_parents(j, i);
        for (int k = 0; k < j->tasks[i].n_parents; k++) C->t[p[k]].n_children++;
    }
    rf_free(h);
    uint32_t off = 0;
    for (int i = 0; i < n; i++) { C->t[i].child_off = off; off += C->t[i].n_children; C->t[i].n_children = 0; }
    for (int i = 0; i < n; i++) {
        const int32_t *p = rf_job_parents(j, i);
        for (int k = 0; k < j->tasks[i].n_parents; k++) {
            stask *pt = &C->t[p[k]];
            C->children[pt->child_off + pt->n_children++] = i;
        }
    }
    for (int r = 0; r < C->nranks; r++) C->w[r].task = -1;
    return RF_OK;
}

static rf_status mark_ready(coord *C, int32_t i) {
    C->t[i].state = S_READY;
    if (heap_push(C, &C->global, i)) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    const int32_t *p = rf_job_parents(C->job, i);
    for (int k = 0; k < C->job->tasks[i].n_parents; k++) {
        uint64_t hb = C->t[p[k]].holders;
        if (!hb) continue;
        int r = __builtin_ctzll(hb);
        if (r < C->nranks && heap_push(C, &C->pref[r], i)) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
        break;
    }
    return RF_OK;
}

double coord_estimate(double cost, double scale, double progress) {
    if (!(progress > 0)) progress = 0;
    if (progress > 1) progress = 1;
    return cost * scale * (1 - progress);
}

coord_wt coord_walltime_rule(double est, double left, double allocation, int resumable) {
    if (est <= left) return COORD_WT_START;
    /* a resumable task makes progress in any slice of time: it saves its
     * state at the walltime signal and the next allocation continues it */
    if (resumable) return COORD_WT_START;
    /* not resumable: it must run whole. If even a fresh allocation of this
     * length could not hold it, waiting for the next one only requeues the
     * job forever (issue 19, defect 2) */
    return est > allocation ? COORD_WT_REFUSE : COORD_WT_WAIT;
}

/* The job's cost model (job.h: seconds on one core) scaled by what finished
 * tasks actually took relative to it, less the part of the task a saved
 * resume point already holds. */
static double est_remaining(const coord *C, int32_t i) {
    double scale = C->est_done > 0 && C->real_done > 0 ? C->real_done / C->est_done : 1;
    return coord_estimate(C->job->tasks[i].cost, scale, C->t[i].progress / 255.0);
}

/* Stopped at the deadline, a task of this kind saves a resume point and the
 * next allocation continues it: any slice of time makes progress. */
static int resumable(const coord *C, int32_t i) {
    const rf_kind *k = rf_kind_get(C->job->tasks[i].kind);
    return k && (k->flags & RF_KIND_STOP) && (k->flags & RF_KIND_RESUMABLE);
}

static rf_status ledger(coord *C, const char *event, int32_t i, int rank, int cls, const char *msg, cJSON *extra, int sync);
static rf_status fail_task(coord *C, int32_t i);
static rf_status check_resume(coord *C, int32_t i);

/* Walltime (deadline > 0): may task i start now? Tasks are taken in
 * priority order, so a task that must wait for the next allocation ends the
 * dispatching here: the rest go to the next (requeued) run. A task refused
 * outright is recorded failed (with its dependents skipped) and *refused set,
 * so the caller picks again. */
static rf_status dispatch_blocked(coord *C, int32_t i, int *blocked, int *refused) {
    const rf_sweep_opts *o = C->o;
    *blocked = 1;
    *refused = 0;
    if (C->stopping) return RF_OK;
    if ((o->stop_flag && *o->stop_flag) || (o->deadline > 0 && rf_now() > o->deadline)) {
        C->stopping = 1;
        progress(C, "sweep %s: stop requested: no new tasks, waiting for %d running", C->job->name, C->n_running);
        return RF_OK;
    }
    *blocked = 0;
    if (o->deadline <= 0) return RF_OK;
    double est = est_remaining(C, i), left = o->deadline - rf_now(), alloc = o->deadline - C->t0;
    char hx[17];
    rf_job_id_hex(C->job->tasks[i].id, hx);
    switch (coord_walltime_rule(est, left, alloc, resumable(C, i))) {
    case COORD_WT_START:
        if (est > left)
            progress(C, "sweep %s: walltime: task %s (%s) needs ~%.0f s and %.0f s are left: starting it, it saves its state at the deadline",
                     C->job->name, hx, rf_job_kind_name(C->job->tasks[i].kind), est, left);
        return RF_OK;
    case COORD_WT_WAIT:
        C->stopping = 1;
        *blocked = 1;
        progress(C, "sweep %s: walltime: the next task needs ~%.0f s but %.0f s are left: no new tasks, waiting for %d running",
                 C->job->name, est, left, C->n_running);
        return RF_OK;
    case COORD_WT_REFUSE: {
        char msg[400];
        snprintf(msg, sizeof msg, "walltime: task needs ~%.0f s (the job's cost estimate), more than this whole allocation "
                 "offers (%.0f s from the sweep's start to its deadline), and it cannot save its state to continue in the "
                 "next one: refused (give the job a longer time limit or split the task)", est, alloc);
        progress(C, "sweep %s: task %s (%s): %s", C->job->name, hx, rf_job_kind_name(C->job->tasks[i].kind), msg);
        *refused = 1;
        cJSON *ex = cJSON_CreateObject();
        if (ex) { cJSON_AddBoolToObject(ex, "retry", 0); cJSON_AddBoolToObject(ex, "refused", 1); cJSON_AddNumberToObject(ex, "estimate_s", est); }
        RF_TRY(ledger(C, "failed", i, -1, RF_FAIL_ERROR, msg, ex, 1));
        return fail_task(C, i);
    }
    }
    return RF_OK;
}

/* The next task rank may run, or -1 in *out. */
static rf_status pick(coord *C, int rank, int32_t *out) {
    *out = -1;
    for (;;) {
        int32_t g = heap_top(C, &C->global);
        int32_t m = rank < C->nranks ? heap_top(C, &C->pref[rank]) : -1;
        int32_t i = (m >= 0 && (g < 0 || C->t[m].height >= C->t[g].height)) ? m : g;
        if (i < 0) return RF_OK;
        int blocked, refused;
        RF_TRY(dispatch_blocked(C, i, &blocked, &refused));
        if (refused) continue;
        if (blocked) return RF_OK;
        C->t[i].state = S_RUNNING;
        C->t[i].rank = rank;
        C->t[i].attempts++;
        C->n_running++;
        C->w[rank].task = i;
        C->w[rank].idle = 0;
        C->w[rank].since = rf_now();
        *out = i;
        return RF_OK;
    }
}

/* ---- ledger ---------------------------------------------------------------- */

static rf_status ledger(coord *C, const char *event, int32_t i, int rank, int cls, const char *msg,
                        cJSON *extra, int sync) {
    if (!C->store) { cJSON_Delete(extra); return RF_OK; }
    cJSON *ev = extra ? extra : cJSON_CreateObject();
    if (!ev) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(ev, "event", event);
    if (i >= 0) {
        char hx[17];
        rf_job_id_hex(C->job->tasks[i].id, hx);
        cJSON_AddStringToObject(ev, "task", hx);
        cJSON_AddStringToObject(ev, "kind", rf_job_kind_name(C->job->tasks[i].kind));
        cJSON_AddStringToObject(ev, "experiment", C->job->exp_names[C->job->tasks[i].exp]);
        cJSON_AddNumberToObject(ev, "attempt", C->t[i].attempts);
    }
    if (rank >= 0) cJSON_AddNumberToObject(ev, "rank", rank);
    if (rank >= 0 && rank < C->nranks) cJSON_AddStringToObject(ev, "host", C->hosts[rank]);
    if (cls) cJSON_AddStringToObject(ev, "class", rf_fail_class_name(cls));
    if (msg) cJSON_AddStringToObject(ev, "message", msg);
    rf_status s = rf_store_ledger_append(C->ctx, C->store, ev, sync);
    cJSON_Delete(ev);
    return s;
}

/* ---- completion ------------------------------------------------------------ */

static rf_status complete(coord *C, int32_t i, int rank) {
    stask *t = &C->t[i];
    t->state = S_DONE;
    if (rank >= 0 && rank < 64) t->holders |= 1ull << rank;
    for (uint32_t k = 0; k < t->n_children; k++) {
        int32_t c = C->children[t->child_off + k];
        if (--C->t[c].waiting == 0 && C->t[c].state == S_PENDING) RF_TRY(mark_ready(C, c));
    }
    return RF_OK;
}

/* Marks every not-yet-run descendant of i skipped (iterative DFS). */
static rf_status skip_descendants(coord *C, int32_t i) {
    int cap = 64, n = 0;
    int32_t *stack = rf_malloc((size_t)cap * sizeof *stack);
    if (!stack) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    stack[n++] = i;
    char cause[17];
    rf_job_id_hex(C->job->tasks[i].id, cause);
    rf_status s = RF_OK;
    while (n && !s) {
        int32_t x = stack[--n];
        stask *t = &C->t[x];
        for (uint32_t k = 0; k < t->n_children && !s; k++) {
            int32_t c = C->children[t->child_off + k];
            if (C->t[c].state != S_PENDING && C->t[c].state != S_READY) continue;
            C->t[c].state = S_SKIPPED;
            C->n_skipped++;
            cJSON *ex = cJSON_CreateObject();
            if (ex) cJSON_AddStringToObject(ex, "cause", cause);
            char msg[96];
            snprintf(msg, sizeof msg, "an ancestor failed: %s", cause);
            s = ledger(C, "skipped", c, -1, 0, msg, ex, 0);
            if (n == cap) {
                cap *= 2;
                int32_t *ns = rf_realloc(stack, (size_t)cap * sizeof *ns);
                if (!ns) { s = rf_error(C->ctx, RF_ERR_NOMEM, "out of memory"); break; }
                stack = ns;
            }
            stack[n++] = c;
        }
    }
    rf_free(stack);
    if (!s) s = C->store ? rf_store_ledger_sync(C->ctx, C->store) : RF_OK;
    return s;
}

typedef struct ckpt_sink { rf_store_file *f; uint64_t n; } ckpt_sink;
/* What a worker that wrote its checkpoint into the store reported. */
typedef struct direct_ck { int on; uint64_t bytes, aux_bytes; uint32_t crc, aux_crc; } direct_ck;
static rf_status sink_to_file(rf_ctx *ctx, void *ud, const void *data, size_t n) {
    ckpt_sink *k = ud;
    k->n += n;
    return k->f ? rf_store_file_write(ctx, k->f, data, n) : RF_OK;
}

/* metrics.json as the task wrote it, plus where it ran: "host" and "rank"
 * go under "timing", with the other facts of this run rather than of the
 * model, so metrics without "timing" stay byte-identical whichever rank or
 * node ran the task. *out: a new newline-terminated string (rf_free).
 * Returns 0, 1 when the bytes are not a JSON object, -1 out of memory. */
static int metrics_placed(const coord *C, const unsigned char *metrics, size_t n, int rank, char **out, size_t *on) {
    *out = NULL;
    cJSON *m = cJSON_ParseWithLength((const char *)metrics, n);
    if (!cJSON_IsObject(m)) { cJSON_Delete(m); return 1; }
    cJSON *tim = cJSON_GetObjectItemCaseSensitive(m, "timing");
    if (!cJSON_IsObject(tim)) { cJSON_DeleteItemFromObjectCaseSensitive(m, "timing"); tim = cJSON_AddObjectToObject(m, "timing"); }
    cJSON_DeleteItemFromObjectCaseSensitive(tim, "host");
    cJSON_DeleteItemFromObjectCaseSensitive(tim, "rank");
    char *txt = NULL;
    if (tim && cJSON_AddStringToObject(tim, "host", C->hosts[rank]) && cJSON_AddNumberToObject(tim, "rank", rank))
        txt = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    size_t k = txt ? strlen(txt) : 0;
    if (txt) *out = rf_malloc(k + 1);
    if (*out) { memcpy(*out, txt, k); (*out)[k] = '\n'; *on = k + 1; }
    free(txt);
    return *out ? 0 : -1;
}

/* One attempt's outcome reached rank 0: write the store, then the ledger. */
/* The store file rel holds bytes bytes of CRC32C crc (what a worker that
 * wrote it directly reported)? Else why not, in why. */
static int direct_intact(coord *C, const char *rel, uint64_t bytes, uint32_t crc, char *why, size_t wn) {
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    tmp.mem_cap = C->ctx->mem_cap;
    unsigned char *buf = NULL;
    size_t n = 0;
    if (rf_store_read(&tmp, C->store, rel, &buf, &n) != RF_OK) { snprintf(why, wn, "%s: %s", rel, rf_ctx_error(&tmp)); return 0; }
    uint32_t got = rf_crc32c(0, buf, n);
    rf_free(buf);
    if (n != bytes || got != crc) {
        snprintf(why, wn, "%s written by the worker: %zu bytes, CRC32C %08x; the worker reported %llu bytes, %08x", rel, n, got,
                 (unsigned long long)bytes, crc);
        return 0;
    }
    return 1;
}

static rf_status on_result(coord *C, int32_t i, int rank, const unsigned char *blob, size_t bn,
                           rf_store_file *ck, uint64_t ck_bytes, const direct_ck *dc) {
    rf_ctx *ctx = C->ctx;
    stask *t = &C->t[i];
    const unsigned char *sec[3];
    size_t len[3];
    rf_status s = coord_blob_unpack(ctx, blob, bn, sec, len);
    if (s) { rf_store_file_abort(ck); return s; }
    cJSON *meta = cJSON_ParseWithLength((const char *)sec[0], len[0]);
    const cJSON *jc = cJSON_GetObjectItemCaseSensitive(meta, "class");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(meta, "message");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(meta, "seconds");
    int cls = cJSON_IsNumber(jc) ? jc->valueint : RF_FAIL_ERROR;
    double secs = cJSON_IsNumber(js) ? js->valuedouble : 0;
    char msg[RF_ERR_MAX];
    snprintf(msg, sizeof msg, "%s", cJSON_IsString(jm) ? jm->valuestring : "");
    cJSON_Delete(meta);
    C->n_running--;
    C->w[rank].task = -1;
    char rel[96];
    if (cls == RF_FAIL_NONE && len[1] == 0) { cls = RF_FAIL_ERROR; snprintf(msg, sizeof msg, "task wrote no metrics.json"); }
    /* a checkpoint the worker wrote into the store: trusted only once its
     * size and checksum are what the worker reported (before any ledger line) */
    int direct = dc && dc->on && cls == RF_FAIL_NONE && C->store;
    if (direct) {
        char why[RF_ERR_MAX];
        rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "model.rckpt");
        int good = dc->bytes == 0 || direct_intact(C, rel, dc->bytes, dc->crc, why, sizeof why);
        rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, AUX_FILE);
        if (good && dc->aux_bytes) good = direct_intact(C, rel, dc->aux_bytes, dc->aux_crc, why, sizeof why);
        if (!good) { cls = RF_FAIL_ERROR; snprintf(msg, sizeof msg, "direct write: %s", why); direct = 0; }
        else if (C->o->on_write) {
            if (dc->bytes) { rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "model.rckpt"); C->o->on_write(C->o->hook_ud, rel); }
            if (dc->aux_bytes) { rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, AUX_FILE); C->o->on_write(C->o->hook_ud, rel); }
        }
    }
    char *placed = NULL;
    size_t pn = 0;
    int pm = cls == RF_FAIL_NONE && C->store ? metrics_placed(C, sec[1], len[1], rank, &placed, &pn) : 0;
    if (pm < 0) { rf_store_file_abort(ck); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    if (pm > 0) {
        cls = RF_FAIL_ERROR;
        snprintf(msg, sizeof msg, "task's metrics.json is not a JSON object");
        rf_store_file_abort(ck);   /* the stream was the model of a success */
        ck = NULL;
    }
    if (C->store) {
        rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "log.txt");
        if ((s = rf_store_write(ctx, C->store, rel, sec[2], len[2])) != RF_OK) { rf_store_file_abort(ck); rf_free(placed); return s; }
    }
    if (cls == RF_FAIL_NONE) {
        if (ck) s = rf_store_file_commit(ctx, ck);
        else if (direct) s = RF_OK;
        else if (C->store) {
            /* no checkpoint this time: drop a stale one from an older run */
            rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "model.rckpt");
            s = rf_store_remove(ctx, C->store, rel);
        }
        if (!s && C->store) {
            rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "metrics.json");
            s = rf_store_write(ctx, C->store, rel, placed, pn);
        }
        rf_free(placed);
        RF_TRY(s);
        if (C->store) {
            /* finished: an older attempt's resumable state is obsolete */
            rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, RESUME_FILE);
            RF_TRY(rf_store_remove(ctx, C->store, rel));
        }
        if (direct) C->direct_bytes += ck_bytes;
        else C->gathered += ck_bytes;
        t->has_ckpt = ck != NULL || (direct && dc->bytes > 0);
        cJSON *ex = cJSON_CreateObject();
        if (ex) {
            cJSON_AddNumberToObject(ex, "ckpt_bytes", (double)ck_bytes);
            cJSON_AddNumberToObject(ex, "seconds", secs);
            if (direct) cJSON_AddBoolToObject(ex, "direct", 1);
        }
        RF_TRY(ledger(C, "done", i, rank, 0, NULL, ex, 1));
        C->n_done++;
        /* the attempt did only what its resume point had not: compare like with like */
        C->est_done += coord_estimate(C->job->tasks[i].cost, 1, t->progress / 255.0);
        C->real_done += secs;
        C->n_progress++;
        return complete(C, i, rank);
    }
    /* not done: a checkpoint stream here is the attempt's resumable state
     * (resume.rckpt), kept so the next attempt continues from its step */
    if (ck) {
        RF_TRY(rf_store_file_commit(ctx, ck));
        RF_TRY(check_resume(C, i));
        if (t->progress) C->n_progress++;
    }
    int retry = rf_fail_class_retryable(cls) && t->attempts <= C->retries && !C->stopping;
    cJSON *ex = cJSON_CreateObject();
    if (ex) {
        cJSON_AddBoolToObject(ex, "retry", retry);
        cJSON_AddNumberToObject(ex, "seconds", secs);
        if (ck) cJSON_AddNumberToObject(ex, "resume_bytes", (double)ck_bytes);
    }
    RF_TRY(ledger(C, cls == RF_FAIL_PREEMPTED ? "preempted" : "failed", i, rank, cls, msg, ex, 1));
    char name[600];
    task_name(C, i, name, sizeof name);
    progress(C, "sweep %s: task %s %s on rank %d, attempt %d: %s%s", C->job->name, name, rf_fail_class_name(cls), rank,
             t->attempts, msg, retry ? " (retrying)" : "");
    if (retry || cls == RF_FAIL_PREEMPTED) {
        C->retried += retry;
        if (cls == RF_FAIL_PREEMPTED) { t->attempts--; C->stopping = 1; }
        return mark_ready(C, i);
    }
    return fail_task(C, i);
}

/* Task i failed for good: count it, honour --fail-fast, skip its dependents. */
static rf_status fail_task(coord *C, int32_t i) {
    C->t[i].state = S_FAILED;
    C->n_failed++;
    if (C->o->fail_fast && !C->stopping) {
        C->stopping = 1;
        progress(C, "sweep %s: --fail-fast: no new tasks after this failure", C->job->name);
    }
    return skip_descendants(C, i);
}

/* ---- status ---------------------------------------------------------------- */

static void fmt_dur(char *b, size_t n, double s) {
    if (s < 0) snprintf(b, n, "?");
    else if (s < 90) snprintf(b, n, "%.0fs", s);
    else if (s < 5400) snprintf(b, n, "%.0fm%02.0fs", s / 60 - 0.5, s - 60 * (double)(long)(s / 60));
    else snprintf(b, n, "%.1fh", s / 3600);
}

static double eta(coord *C, int nworkers) {
    double rem = 0;
    for (int i = 0; i < C->job->n_tasks; i++)
        if (C->t[i].state == S_PENDING || C->t[i].state == S_READY || C->t[i].state == S_RUNNING) rem += est_remaining(C, i);
    return rem / (nworkers > 0 ? nworkers : 1);
}

static rf_status write_status(coord *C, int final) {
    double now = rf_now();
    if (!final && now - C->last_status < C->o->status_every_s) return RF_OK;
    C->last_status = now;
    int first = C->nranks > 1 ? 1 : 0, nworkers = C->nranks - first;
    int pending = C->job->n_tasks - C->n_done - C->n_reused - C->n_failed - C->n_skipped - C->n_running;
    double e = eta(C, nworkers);
    char el[32], et[32], wl[512] = "";
    fmt_dur(el, sizeof el, now - C->t0);
    fmt_dur(et, sizeof et, e);
    size_t k = 0;
    for (int r = first; r < C->nranks && k + 40 < sizeof wl; r++) {
        char d[32];
        fmt_dur(d, sizeof d, now - C->w[r].since);
        if (C->w[r].task >= 0)
            k += (size_t)snprintf(wl + k, sizeof wl - k, " r%d:%s %s", r, rf_job_kind_name(C->job->tasks[C->w[r].task].kind), d);
        else k += (size_t)snprintf(wl + k, sizeof wl - k, " r%d:%s", r, C->w[r].gone ? "lost" : "idle");
    }
    if (C->o->on_progress) {
        rf_sweep_progress pr = {C->job->n_tasks, C->n_done + C->n_reused, C->n_reused, C->n_running, C->n_failed, C->n_skipped,
                                pending, now - C->t0, final ? 0 : e, final, -1, 0};
        for (int r = first; r < C->nranks; r++)
            if (C->w[r].task >= 0 && (pr.oldest < 0 || now - C->w[r].since > pr.oldest_s)) { pr.oldest = C->w[r].task; pr.oldest_s = now - C->w[r].since; }
        C->o->on_progress(C->o->progress_ud, &pr);
    } else
        progress(C, "sweep %s: %d/%d done (%d reused), %d running, %d failed, %d skipped, %d queued; %s elapsed%s%s |%s",
                 C->job->name, C->n_done + C->n_reused, C->job->n_tasks, C->n_reused, C->n_running, C->n_failed,
                 C->n_skipped, pending, el, final ? "" : ", ETA ", final ? "" : et, wl);
    if (!C->store) return RF_OK;
    cJSON *st = cJSON_CreateObject();
    if (!st) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    char t[40];
    rf_store_time_iso(t, sizeof t);
    cJSON_AddStringToObject(st, "name", C->job->name);
    cJSON_AddStringToObject(st, "updated", t);
    cJSON_AddStringToObject(st, "state", final ? (C->stopping && pending ? "stopped" : "finished") : "running");
    cJSON_AddNumberToObject(st, "total", C->job->n_tasks);
    cJSON_AddNumberToObject(st, "done", C->n_done + C->n_reused);
    cJSON_AddNumberToObject(st, "reused", C->n_reused);
    cJSON_AddNumberToObject(st, "running", C->n_running);
    cJSON_AddNumberToObject(st, "failed", C->n_failed);
    cJSON_AddNumberToObject(st, "skipped", C->n_skipped);
    cJSON_AddNumberToObject(st, "queued", pending);
    cJSON_AddNumberToObject(st, "retried", C->retried);
    cJSON_AddNumberToObject(st, "lost", C->n_lost);
    cJSON_AddNumberToObject(st, "ranks_lost", C->lost_ranks);
    if (C->lost_ranks) cJSON_AddStringToObject(st, "hosts_lost", C->lost_hosts);
    cJSON_AddNumberToObject(st, "elapsed_s", now - C->t0);
    cJSON_AddNumberToObject(st, "eta_s", final ? 0 : e);
    cJSON_AddNumberToObject(st, "ranks", C->nranks);
    cJSON *ws = cJSON_AddArrayToObject(st, "workers");
    for (int r = first; ws && r < C->nranks; r++) {
        cJSON *w = cJSON_CreateObject();
        if (!w) break;
        cJSON_AddNumberToObject(w, "rank", r);
        cJSON_AddStringToObject(w, "host", C->hosts[r]);
        int32_t ti = C->w[r].task;
        cJSON_AddStringToObject(w, "state", C->w[r].gone ? "lost" : ti >= 0 ? "running" : "idle");
        if (ti >= 0) {
            char hx[17];
            rf_job_id_hex(C->job->tasks[ti].id, hx);
            cJSON_AddStringToObject(w, "task", hx);
            cJSON_AddStringToObject(w, "kind", rf_job_kind_name(C->job->tasks[ti].kind));
            cJSON_AddNumberToObject(w, "running_s", now - C->w[r].since);
        }
        cJSON_AddItemToArray(ws, w);
    }
    char *txt = cJSON_Print(st);
    cJSON_Delete(st);
    if (!txt) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    rf_status s = rf_store_write(C->ctx, C->store, "status.json", txt, strlen(txt));
    free(txt);
    if (C->o->on_tick) C->o->on_tick(C->o->hook_ud);
    return s;
}

/* ---- setup and resume -------------------------------------------------------- */

typedef struct idpos { uint64_t id; int32_t idx; } idpos;
static int idpos_cmp(const void *a, const void *b) {
    uint64_t x = ((const idpos *)a)->id, y = ((const idpos *)b)->id;
    return x < y ? -1 : x > y;
}

/* open[i]: 1 + the index in hosts of where task i's last "started" line
 * ran, while no line has ended that attempt (0: none open); rank[i] its rank */
enum { REPLAY_HOSTS = 64 };
typedef struct replay {
    coord *C; idpos *map; int n; uint64_t *ck; uint8_t *done;
    uint8_t *open; int32_t *rank;
    char hosts[REPLAY_HOSTS][HOST_NAME_MAX + 1];
    int nhosts;
} replay;

/* Index + 1 of host h in r->hosts (added when new; the last slot when full). */
static uint8_t replay_host(replay *r, const char *h) {
    for (int k = 0; k < r->nhosts; k++) if (strcmp(r->hosts[k], h) == 0) return (uint8_t)(k + 1);
    if (r->nhosts == REPLAY_HOSTS) return REPLAY_HOSTS;
    snprintf(r->hosts[r->nhosts], sizeof r->hosts[0], "%s", h);
    return (uint8_t)++r->nhosts;
}

static int replay_event(void *ud, const cJSON *ev) {
    replay *r = ud;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ev, "event");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "task");
    uint64_t id;
    if (!cJSON_IsString(e) || !cJSON_IsString(t) || rf_job_id_parse(t->valuestring, &id) != 0) return 0;
    idpos key = {id, 0};
    idpos *hit = bsearch(&key, r->map, (size_t)r->n, sizeof *r->map, idpos_cmp);
    if (!hit) return 0;   /* a task of an older version of the job */
    if (strcmp(e->valuestring, "done") == 0) {
        const cJSON *cb = cJSON_GetObjectItemCaseSensitive(ev, "ckpt_bytes");
        r->done[hit->idx] = 1;
        r->ck[hit->idx] = cJSON_IsNumber(cb) ? (uint64_t)cb->valuedouble : 0;
    }
    /* an attempt is open from its "started" line until a line ends it */
    if (strcmp(e->valuestring, "started") == 0) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(ev, "host");
        const cJSON *rk = cJSON_GetObjectItemCaseSensitive(ev, "rank");
        r->open[hit->idx] = replay_host(r, cJSON_IsString(h) ? h->valuestring : "?");
        r->rank[hit->idx] = cJSON_IsNumber(rk) ? rk->valueint : -1;
    } else if (strcmp(e->valuestring, "queued") != 0 && strcmp(e->valuestring, "resume_discarded") != 0)
        r->open[hit->idx] = 0;
    return 0;
}

/* A checkpoint in the store is trusted on resume only if it decodes: its
 * CRC32C, per-tensor checksums and sizes all hold (a flipped byte in a
 * finished task's checkpoint makes the task run again, not poison its
 * dependents). */
static int ckpt_intact(coord *C, const char *rel) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.mem_cap = C->ctx->mem_cap;
    unsigned char *buf = NULL;
    size_t n = 0;
    if (rf_store_read(&ctx, C->store, rel, &buf, &n) != RF_OK) return 0;
    rf_ckpt *ck = NULL;
    int ok = rf_ckpt_decode(&ctx, buf, n, &ck) == RF_OK;
    rf_ckpt_free(ck);
    rf_free(buf);
    return ok;
}

/* Hex of the hash of task i's canonical settings: what its resume points
 * record and are checked against (with its id). */
static void settings_hash_hex(const rf_job *j, int32_t i, char hx[17]) {
    const char *st = rf_job_settings(j, i);
    rf_job_id_hex(rf_hash64(st, strlen(st), 0), hx);
}

/* Why the resume point in buf[0..n) cannot continue task i ("" if it can),
 * and the share of the task it holds. */
static void judge_resume(coord *C, int32_t i, const unsigned char *buf, size_t n, char *why, size_t wn, double *progress) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.mem_cap = C->ctx->mem_cap;
    rf_ckpt *ck = NULL;
    *progress = 0;
    why[0] = '\0';
    if (rf_ckpt_decode(&ctx, buf, n, &ck) != RF_OK) { snprintf(why, wn, "damaged (%s)", rf_ctx_error(&ctx)); return; }
    cJSON *meta = cJSON_Parse(ck->meta_json);
    rf_ckpt_free(ck);
    char id[17], sh[17];
    rf_job_id_hex(C->job->tasks[i].id, id);
    settings_hash_hex(C->job, i, sh);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(meta, "task");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(meta, "settings_hash");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(meta, "step");
    const cJSON *tot = cJSON_GetObjectItemCaseSensitive(meta, "total_steps");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, "version");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, "raffle-resume") != 0)
        snprintf(why, wn, "not a resume point");
    else if (!cJSON_IsString(t) || !cJSON_IsString(h))
        snprintf(why, wn, "names no task (written by an older raffle): refused");
    else if (!cJSON_IsNumber(v) || v->valuedouble != RF_TASK_RESUME_VERSION)
        snprintf(why, wn, "is format version %g, this raffle reads version %d: refused",
                 cJSON_IsNumber(v) ? v->valuedouble : 0.0, RF_TASK_RESUME_VERSION);
    else if (strcmp(t->valuestring, id) != 0)
        snprintf(why, wn, "belongs to task %.16s, not this one: refused", t->valuestring);
    else if (strcmp(h->valuestring, sh) != 0)
        snprintf(why, wn, "was saved under other settings (hash %.16s, expected %s): refused", h->valuestring, sh);
    else if (cJSON_IsNumber(st) && cJSON_IsNumber(tot) && tot->valuedouble > 0 && st->valuedouble >= 0)
        *progress = st->valuedouble < tot->valuedouble ? st->valuedouble / tot->valuedouble : 1;
    cJSON_Delete(meta);
}

/* Task i's resume point in the store, if any, is checked before anything
 * trusts it (issue 19, defects 4 and 5): it must decode (every checksum) and
 * name this task and these settings. One that does not is discarded with a
 * warning (progress line and a "resume_discarded" ledger event) and the
 * task starts from its beginning; a good one sets the task's progress. */
static rf_status check_resume(coord *C, int32_t i) {
    char rel[96];
    rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, RESUME_FILE);
    C->t[i].progress = 0;
    if (!C->store || rf_store_stat(C->store, rel, NULL) != 0) return RF_OK;
    rf_ctx rctx;
    rf_ctx_init(&rctx);
    rctx.mem_cap = C->ctx->mem_cap;
    unsigned char *buf = NULL;
    size_t n = 0;
    char why[RF_ERR_MAX];
    double prog = 0;
    if (rf_store_read(&rctx, C->store, rel, &buf, &n) != RF_OK) snprintf(why, sizeof why, "unreadable (%s)", rf_ctx_error(&rctx));
    else judge_resume(C, i, buf, n, why, sizeof why, &prog);
    rf_free(buf);
    char hx[17];
    rf_job_id_hex(C->job->tasks[i].id, hx);
    if (!why[0]) {
        C->t[i].progress = (uint8_t)(prog * 255 + 0.5);
        if (C->t[i].progress)
            progress(C, "sweep %s: task %s: its %s holds %.0f%% of the work: ~%.0f s of ~%.0f s left", C->job->name, hx,
                     RESUME_FILE, 100.0 * prog, est_remaining(C, i), coord_estimate(C->job->tasks[i].cost, 1, 0));
        return RF_OK;
    }
    progress(C, "sweep %s: warning: task %s: %s %s: discarded, the task starts from its beginning", C->job->name, hx,
             RESUME_FILE, why);
    RF_TRY(rf_store_remove(C->ctx, C->store, rel));
    cJSON *ex = cJSON_CreateObject();
    if (ex) cJSON_AddStringToObject(ex, "reason", why);
    return ledger(C, "resume_discarded", i, -1, 0, NULL, ex, 1);
}

/* Attempts a killed run left open (a "started" line nothing ended: the
 * launcher ended the job when a node died, kill -9, a power cut) are
 * recorded "lost" now, naming where they ran, and run again (issue 24:
 * Open MPI's mpirun ends the whole job at once when a rank's process dies,
 * before rank 0's heartbeat can notice). */
static rf_status record_open(coord *C, replay *r) {
    int n = 0;
    char where[300] = "";
    for (int i = 0; i < C->job->n_tasks; i++) {
        if (!r->open[i] || C->t[i].state == S_DONE) continue;
        const char *h = r->hosts[r->open[i] - 1];
        char why[400];
        snprintf(why, sizeof why, "an earlier run ended while this task ran on rank %d (%s): its attempt is lost", r->rank[i], h);
        cJSON *ex = cJSON_CreateObject();
        if (ex) {
            cJSON_AddBoolToObject(ex, "retry", 1);
            cJSON_AddBoolToObject(ex, "earlier_run", 1);
            cJSON_AddStringToObject(ex, "host", h);
            cJSON_AddNumberToObject(ex, "rank", r->rank[i]);
        }
        RF_TRY(ledger(C, "lost", i, -1, 0, why, ex, 0));
        if (!strstr(where, h) && strlen(where) + strlen(h) + 3 < sizeof where)
            snprintf(where + strlen(where), sizeof where - strlen(where), "%s%s", where[0] ? ", " : "", h);
        n++;
    }
    if (!n) return RF_OK;
    C->n_lost_before = n;
    notice(C, "sweep %s: the last run ended with %d task(s) running on %s: recorded lost, running them again",
           C->job->name, n, where);
    return rf_store_ledger_sync(C->ctx, C->store);
}

static rf_status resume(coord *C) {
    int n = C->job->n_tasks;
    size_t m = (size_t)(n ? n : 1);
    replay *r = rf_calloc(1, sizeof *r);
    if (!r) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    r->C = C;
    r->n = n;
    r->map = rf_malloc(m * sizeof *r->map);
    r->ck = rf_calloc(m, sizeof *r->ck);
    r->done = rf_calloc(m, 1);
    r->open = rf_calloc(m, 1);
    r->rank = rf_calloc(m, sizeof *r->rank);
    rf_status s = RF_OK;
    if (!r->map || !r->ck || !r->done || !r->open || !r->rank) { s = rf_error(C->ctx, RF_ERR_NOMEM, "out of memory"); goto out; }
    for (int i = 0; i < n; i++) { r->map[i].id = C->job->tasks[i].id; r->map[i].idx = i; }
    qsort(r->map, (size_t)n, sizeof *r->map, idpos_cmp);
    int bad = 0;
    if ((s = rf_store_ledger_replay(C->ctx, C->store, replay_event, r, &bad)) != RF_OK) goto out;
    if (bad) progress(C, "sweep %s: ledger: %d torn or unreadable line(s) ignored", C->job->name, bad);
    for (int i = 0; i < n; i++) {
        if (!r->done[i]) continue;
        char rel[96];
        uint64_t size = 0;
        rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "metrics.json");
        int ok = rf_store_stat(C->store, rel, NULL) == 0;
        rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, "model.rckpt");
        if (ok && r->ck[i]) ok = rf_store_stat(C->store, rel, &size) == 0 && size == r->ck[i];
        if (ok && r->ck[i]) ok = ckpt_intact(C, rel);
        if (!ok) {
            char hx[17];
            rf_job_id_hex(C->job->tasks[i].id, hx);
            progress(C, "sweep %s: task %s is in the ledger as done but its files are missing or damaged: running it again", C->job->name, hx);
            continue;
        }
        C->t[i].state = S_DONE;
        C->t[i].has_ckpt = r->ck[i] > 0;
        C->n_reused++;
    }
    s = record_open(C, r);
    for (int i = 0; i < n && !s; i++)
        if (C->t[i].state != S_DONE) s = check_resume(C, i);
out:
    rf_free(r->map); rf_free(r->ck); rf_free(r->done); rf_free(r->open); rf_free(r->rank);
    rf_free(r);
    return s;
}

/* Counts unfinished parents and queues what is ready. */
static rf_status seed_ready(coord *C) {
    for (int i = 0; i < C->job->n_tasks; i++) {
        if (C->t[i].state == S_DONE) continue;
        const int32_t *p = rf_job_parents(C->job, i);
        int w = 0;
        for (int k = 0; k < C->job->tasks[i].n_parents; k++) w += C->t[p[k]].state != S_DONE;
        C->t[i].waiting = w;
        if (C->store) RF_TRY(ledger(C, "queued", i, -1, 0, NULL, NULL, 0));
        if (!w) RF_TRY(mark_ready(C, i));
    }
    return C->store ? rf_store_ledger_sync(C->ctx, C->store) : RF_OK;
}

static rf_status open_store(coord *C) {
    rf_ctx *ctx = C->ctx;
    RF_TRY(rf_store_open(ctx, C->o->store_root, C->job->name, 1, &C->store));
    /* one sweep per store (issue 19, defect 6): before anything is written */
    RF_TRY(rf_store_lock(ctx, C->store));
    int stale = 0;
    RF_TRY(rf_store_remove_stale(ctx, C->store, &stale));
    if (stale) progress(C, "sweep %s: removed %d temporary file(s) left in the store by a killed run", C->job->name, stale);
    if (C->o->on_write) rf_store_set_on_write(C->store, C->o->on_write, C->o->hook_ud);
    /* where and under what this run happened: host, pid, ranks, plus the
     * caller's metadata (opts->env: Slurm job id etc.) */
    cJSON *env = cJSON_CreateObject();
    if (!env) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cJSON_AddStringToObject(env, "host", host);
    cJSON_AddNumberToObject(env, "pid", (double)getpid());
    cJSON_AddNumberToObject(env, "ranks", C->nranks);
    for (const cJSON *c = C->o->env ? C->o->env->child : NULL; c; c = c->next)
        if (c->string && !cJSON_GetObjectItemCaseSensitive(env, c->string)) cJSON_AddItemToObject(env, c->string, cJSON_Duplicate(c, 1));
    rf_status es = rf_store_set_env(ctx, C->store, env);
    cJSON_Delete(env);
    RF_TRY(es);
    RF_TRY(rf_store_write(ctx, C->store, "job.json", C->job->text, C->job->text_len));
    /* the digests of the files the ids include: the report parses job.json
     * with them, so it finds these ids without the files (issue 19, defect 3) */
    if (C->job->inputs_json)
        RF_TRY(rf_store_write(ctx, C->store, "inputs.json", C->job->inputs_json, strlen(C->job->inputs_json)));
    RF_TRY(resume(C));
    cJSON *ev = cJSON_CreateObject();
    if (!ev) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(ev, "job", C->job->name);
    cJSON_AddNumberToObject(ev, "ranks", C->nranks);
    cJSON_AddNumberToObject(ev, "tasks", C->job->n_tasks);
    cJSON_AddNumberToObject(ev, "reused", C->n_reused);
    char hx[17];
    rf_job_id_hex(rf_hash64(C->job->text, C->job->text_len, 0), hx);
    cJSON_AddStringToObject(ev, "job_hash", hx);
    cJSON_AddStringToObject(ev, "raffle_version", RF_VERSION_STRING);
    if (C->nranks > 1) cJSON_AddNumberToObject(ev, "heartbeat_s", C->heartbeat);
    if (C->nranks > 1) {
        int nd = 0;
        for (int r = 1; C->direct && r < C->nranks; r++) nd += C->direct[r];
        cJSON_AddStringToObject(ev, "writes", C->o->direct_writes == 0 ? "gather" : C->o->direct_writes == 1 ? "direct" : "auto");
        cJSON_AddNumberToObject(ev, "direct_ranks", nd);
    }
    RF_TRY(ledger(C, "sweep", -1, -1, 0, NULL, ev, 1));
    if (C->n_reused) progress(C, "sweep %s: resuming: %d of %d tasks already done", C->job->name, C->n_reused, C->job->n_tasks);
    return RF_OK;
}

static void coord_free(coord *C) {
    rf_free(C->t); rf_free(C->children); rf_free(C->global.v);
    for (int r = 0; C->pref && r < C->nranks; r++) rf_free(C->pref[r].v);
    rf_free(C->pref); rf_free(C->w); rf_free(C->hosts); rf_free(C->pids); rf_free(C->direct);
    rf_store_close(C->store);
}

static void fill_result(const coord *C, rf_sweep_result *res) {
    res->total = C->job->n_tasks;
    res->done = C->n_done + C->n_reused;
    res->reused = C->n_reused;
    res->failed = C->n_failed;
    res->skipped = C->n_skipped;
    res->pending = C->job->n_tasks - res->done - C->n_failed - C->n_skipped;
    res->retried = C->retried;
    res->progressed = C->n_progress;
    res->seconds = rf_now() - C->t0;
    res->gathered_bytes = C->gathered;
    res->sched_bytes = coord_sched_bytes(C->job);
    res->lost = C->n_lost;
    res->lost_ranks = C->lost_ranks;
    res->launcher_ended = C->launcher_ended;
    snprintf(res->lost_hosts, sizeof res->lost_hosts, "%s", C->lost_hosts);
    res->direct_bytes = C->direct_bytes;
    for (int r = 1; C->direct && r < C->nranks; r++) res->direct_ranks += C->direct[r];
}

static rf_status finish(coord *C) {
    rf_status s = write_status(C, 1);
    if (!s && C->store) {
        cJSON *ev = cJSON_CreateObject();
        if (!ev) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
        cJSON_AddNumberToObject(ev, "done", C->n_done + C->n_reused);
        cJSON_AddNumberToObject(ev, "failed", C->n_failed);
        cJSON_AddNumberToObject(ev, "skipped", C->n_skipped);
        if (C->lost_ranks) {
            cJSON_AddNumberToObject(ev, "lost", C->n_lost);
            cJSON_AddNumberToObject(ev, "ranks_lost", C->lost_ranks);
            cJSON_AddStringToObject(ev, "hosts_lost", C->lost_hosts);
        }
        cJSON_AddNumberToObject(ev, "seconds", rf_now() - C->t0);
        s = ledger(C, "finished", -1, -1, 0, NULL, ev, 1);
    }
    return s;
}

/* ---- running one task here ------------------------------------------------------ */

/* Writes DIR/task.json for task i with the given parent checkpoint paths. */
static rf_status write_task_json(rf_ctx *ctx, const rf_job *j, int32_t i, const char *dir, char (*ppaths)[4096],
                                 const char *resume, double resume_every_s) {
    cJSON *o = cJSON_CreateObject();
    cJSON *set = cJSON_Parse(rf_job_settings(j, i));
    cJSON *par = cJSON_CreateArray();
    if (!o || !set || !par) { cJSON_Delete(o); cJSON_Delete(set); cJSON_Delete(par); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    char hx[17];
    rf_job_id_hex(j->tasks[i].id, hx);
    cJSON_AddStringToObject(o, "id", hx);
    settings_hash_hex(j, i, hx);
    cJSON_AddStringToObject(o, "settings_hash", hx);
    cJSON_AddItemToObject(o, "settings", set);
    for (int k = 0; k < j->tasks[i].n_parents; k++) cJSON_AddItemToArray(par, cJSON_CreateString(ppaths[k]));
    cJSON_AddItemToObject(o, "parents", par);
    if (resume) cJSON_AddStringToObject(o, "resume", resume);
    if (resume_every_s > 0) cJSON_AddNumberToObject(o, "resume_every_s", resume_every_s);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/task.json", dir);
    rf_status s = rf_write_file_atomic(ctx, path, txt, strlen(txt));
    free(txt);
    return s;
}

/* Runs task i in a child under dir and packs its result blob. *has_ckpt is
 * 1 when the attempt succeeded and wrote dir/model.rckpt, 2 when it did not
 * succeed but left a resumable state dir/resume.rckpt (preempted, or killed
 * after a periodic save): the file that travels to rank 0. resume: the state
 * to continue from (NULL: start fresh). */
/* Direct writes (issue 24): a worker that sees the store (a shared file
 * system) copies file `name` of its finished task from its scratch dir into
 * STORE/tasks/ID/ itself, atomically (temp, fsync, rename, fsync dir: the
 * store's own protocol), and reports size and CRC32C for rank 0 to verify.
 * *bytes = 0 when the file does not exist (an optional aux file). */
static rf_status write_direct(rf_ctx *ctx, const rf_job *j, int32_t i, const char *dir, const char *store_dir,
                              const char *name, uint64_t *bytes, uint32_t *crc) {
    char src[4300], dst[4400];
    *bytes = 0;
    *crc = 0;
    snprintf(src, sizeof src, "%s/%s", dir, name);
    struct stat st;
    if (stat(src, &st) != 0) return RF_OK;
    unsigned char *buf = NULL;
    size_t n = 0;
    RF_TRY(rf_read_file(ctx, src, &buf, &n));
    char rel[96];
    rf_store_task_rel(rel, sizeof rel, j->tasks[i].id, "");
    snprintf(dst, sizeof dst, "%s/%s", store_dir, rel);
    rf_status s = rf_mkdirs(ctx, dst);
    snprintf(dst, sizeof dst, "%s/%s%s", store_dir, rel, name);
    if (!s) s = rf_write_file_atomic(ctx, dst, buf, n);
    if (!s) { *bytes = n; *crc = rf_crc32c(0, buf, n); }
    rf_free(buf);
    return s;
}

static rf_status run_here(rf_ctx *ctx, const rf_job *j, int32_t i, const char *dir, char (*ppaths)[4096],
                          const char *resume, const rf_sweep_opts *o, uint64_t mem, double tl,
                          int (*tick)(void *), void *tick_ud, const char *direct_dir,
                          unsigned char **blob, size_t *bn, int *has_ckpt) {
    *has_ckpt = 0;
    coord_rmtree(dir);
    RF_TRY(rf_mkdirs(ctx, dir));
    RF_TRY(write_task_json(ctx, j, i, dir, ppaths, resume, o->resume_every_s));
    coord_exec_result r;
    RF_TRY(coord_exec(ctx, o->exe, dir, mem, tl, j->threads, o->stop_flag, o->deadline, tick, tick_ud, &r));
    char path[4200];
    unsigned char *metrics = NULL, *log = NULL;
    size_t mn = 0, ln = 0;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    if (r.cls == RF_FAIL_NONE) {
        snprintf(path, sizeof path, "%s/metrics.json", dir);
        if (rf_read_file(&tmp, path, &metrics, &mn) != RF_OK) { r.cls = RF_FAIL_ERROR; snprintf(r.message, sizeof r.message, "no metrics.json"); }
        snprintf(path, sizeof path, "%s/model.rckpt", dir);
        struct stat st;
        *has_ckpt = r.cls == RF_FAIL_NONE && stat(path, &st) == 0 && S_ISREG(st.st_mode);
    } else {
        struct stat st;
        snprintf(path, sizeof path, "%s/" RESUME_FILE, dir);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) *has_ckpt = 2;
    }
    /* a second file some kinds leave next to model.rckpt for their children
     * (lottery "step:K": the rewind point); it travels with the checkpoint */
    uint64_t aux = 0;
    if (*has_ckpt == 1) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, AUX_FILE);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) aux = (uint64_t)st.st_size;
    }
    /* direct: the checkpoint (and aux file) go into the store from here;
     * has_ckpt 3 = written, nothing to stream */
    uint64_t dbytes = 0, dabytes = 0;
    uint32_t dcrc = 0, dacrc = 0;
    if (*has_ckpt == 1 && direct_dir) {
        RF_TRY(write_direct(ctx, j, i, dir, direct_dir, "model.rckpt", &dbytes, &dcrc));
        RF_TRY(write_direct(ctx, j, i, dir, direct_dir, AUX_FILE, &dabytes, &dacrc));
        *has_ckpt = 3;
    }
    snprintf(path, sizeof path, "%s/log.txt", dir);
    rf_read_file(&tmp, path, &log, &ln);
    /* the log travels to rank 0 capped at its last 1 MiB */
    size_t lo = ln > (1u << 20) ? ln - (1u << 20) : 0;
    cJSON *meta = cJSON_CreateObject();
    char *mt = NULL;
    if (meta) {
        cJSON_AddNumberToObject(meta, "class", r.cls);
        cJSON_AddStringToObject(meta, "message", r.message);
        cJSON_AddNumberToObject(meta, "seconds", r.seconds);
        cJSON_AddNumberToObject(meta, "aux_bytes", (double)aux);
        if (*has_ckpt == 3) {
            cJSON_AddNumberToObject(meta, "direct_bytes", (double)dbytes);
            cJSON_AddNumberToObject(meta, "direct_crc", dcrc);
            cJSON_AddNumberToObject(meta, "direct_aux_bytes", (double)dabytes);
            cJSON_AddNumberToObject(meta, "direct_aux_crc", dacrc);
        }
        mt = cJSON_PrintUnformatted(meta);
        cJSON_Delete(meta);
    }
    rf_status s = mt ? coord_blob_pack(ctx, mt, strlen(mt), metrics, mn, log ? log + lo : NULL, ln - lo, blob, bn)
                     : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    free(mt);
    rf_free(metrics);
    rf_free(log);
    return s;
}

/* Scratch directories: BASE/NAME.PID, one per rank and named by that rank's
 * own pid, with a file "host" naming the machine. A run killed with kill -9
 * leaves its directory behind (1-7 MB each); the next sweep of the same job
 * on the same machine removes those whose process is gone (issue 19, defect
 * 13). A directory of another host (a shared TMPDIR) is left alone: its pid
 * means nothing here. */
/* The training step the resume point at path holds: -1 when it is
 * unreadable, damaged, of another format version or not task id's (hex;
 * NULL: any task). */
static int64_t resume_step(const char *path, const char *id) {
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    rf_ckpt *c = NULL;
    if (rf_ckpt_read(&tmp, path, &c) != RF_OK) return -1;
    cJSON *meta = cJSON_Parse(c->meta_json);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(meta, "format");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(meta, "step");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, "version");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(meta, "task");
    int64_t step = cJSON_IsString(f) && strcmp(f->valuestring, "raffle-resume") == 0 && cJSON_IsNumber(v) &&
                           v->valuedouble == RF_TASK_RESUME_VERSION && cJSON_IsString(t) &&
                           (!id || strcmp(t->valuestring, id) == 0) && cJSON_IsNumber(st) && st->valuedouble >= 0 &&
                           st->valuedouble <= 1e15
                       ? (int64_t)st->valuedouble : -1;
    cJSON_Delete(meta);
    rf_ckpt_free(c);
    return step;
}

/* Moves the periodic resume points a killed run left in its scratch
 * directory DEAD (DEAD/local/ID/ and DEAD/rankN/tasks/ID/resume.rckpt, one
 * per task) to the job's salvage directory on this node,
 * BASE/NAME.salvage/ID.rckpt, keeping the later step when two dead runs left
 * one. Every rank of the next run on this node finds them there, whichever
 * rank removed the dead directory. A session that ends with kill -9 loses then at most
 * --resume-every seconds of a long task, not all of it (the store only
 * holds the resume points of tasks stopped on request). */
static void salvage_dir(const char *dir, const char *out);

static void salvage_resume_points(const char *dead, const char *out) {
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/local", dead);   /* in-process */
    salvage_dir(dir, out);
    DIR *d = opendir(dead);   /* under mpirun: DEAD/rankN/tasks */
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "rank", 4) != 0) continue;
        snprintf(dir, sizeof dir, "%s/%s/tasks", dead, e->d_name);
        salvage_dir(dir, out);
    }
    closedir(d);
}

/* The resume points DIR/ID/resume.rckpt into OUT/ID.rckpt. */
static void salvage_dir(const char *dir, const char *out) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) != 16 || strspn(e->d_name, "0123456789abcdef") != 16) continue;
        char from[4500], to[4500];
        snprintf(from, sizeof from, "%s/%s/" RESUME_FILE, dir, e->d_name);
        int64_t step = resume_step(from, e->d_name);
        if (step < 0) continue;
        if (mkdir(out, 0755) != 0 && errno != EEXIST) continue;
        snprintf(to, sizeof to, "%s/%s.rckpt", out, e->d_name);
        if (resume_step(to, e->d_name) >= step) continue;
        if (rename(from, to) != 0) unlink(from);
    }
    closedir(d);
}

/* The resume point task hx runs from: the salvaged one (see above) when it
 * holds a later step than `have` (the store's or the one rank 0 shipped;
 * may be NULL), else `have`. root: this rank's scratch root BASE/NAME.PID
 * (a worker's directory is ROOT/rankN). Returns have, or buf holding the
 * salvage's path. The task checks the file is its own (settings hash). */
static const char *pick_resume(const char *root, const char *hx, const char *have, char *buf, size_t n) {
    const char *dot = strrchr(root, '.');
    snprintf(buf, n, "%.*s.salvage/%s.rckpt", dot ? (int)(dot - root) : (int)strlen(root), root, hx);
    int64_t salvaged = resume_step(buf, hx);
    if (salvaged < 0) { unlink(buf); return have; }
    if (have && resume_step(have, hx) >= salvaged) { unlink(buf); return have; }
    return buf;
}

static void remove_stale_scratch(const char *base, const char *name, const char *host) {
    DIR *d = opendir(base);
    if (!d) return;
    /* first the names, then the removals: renaming entries of a directory
     * while reading it may make readdir skip others */
    size_t nl = strlen(name), cap = 0, n = 0;
    int64_t *pids = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *p = e->d_name;
        int64_t pid;
        if (strncmp(p, name, nl) != 0 || p[nl] != '.' ||
            rf_parse_i64(NULL, p + nl + 1, strlen(p + nl + 1), 1, 4194304, "pid", &pid) != RF_OK || pid == (int64_t)getpid())
            continue;
        if (n == cap) {
            int64_t *np = rf_realloc(pids, (cap = cap ? 2 * cap : 16) * sizeof *np);
            if (!np) break;
            pids = np;
        }
        pids[n++] = pid;
    }
    closedir(d);
    for (size_t k = 0; k < n; k++) {
        if (rf_pid_alive((long)pids[k])) continue;
        char dir[4300], owner[4400], claimed[4400];
        snprintf(dir, sizeof dir, "%s/%s.%lld", base, name, (long long)pids[k]);
        snprintf(owner, sizeof owner, "%s/host", dir);
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        unsigned char *h = NULL;
        size_t hn = 0;
        int other = rf_read_file(&tmp, owner, &h, &hn) == RF_OK && (hn != strlen(host) || memcmp(h, host, hn) != 0);
        rf_free(h);
        if (other) continue;
        /* several ranks of the next run sweep the same node at once: the one
         * whose rename wins removes it (two concurrent removals of one tree
         * make nftw give up half-way) */
        snprintf(claimed, sizeof claimed, "%s/.stale.%ld.%s.%lld", base, (long)getpid(), name, (long long)pids[k]);
        if (rename(dir, claimed) == 0) {
            char salvage[4400];
            snprintf(salvage, sizeof salvage, "%s/%s.salvage", base, name);
            salvage_resume_points(claimed, salvage);
            coord_rmtree(claimed);
        }
    }
    rf_free(pids);
}

static rf_status work_root(rf_ctx *ctx, const rf_sweep_opts *o, const rf_job *j, char *out, size_t n) {
    char base[3000], host[256] = "";
    if (o->work_dir) snprintf(base, sizeof base, "%s", o->work_dir);
    else {
        const char *tmp = getenv("TMPDIR");
        snprintf(base, sizeof base, "%s/raffle-%ld", tmp && tmp[0] ? tmp : "/tmp", (long)getuid());
    }
    gethostname(host, sizeof host - 1);
    snprintf(out, n, "%s/%s.%ld", base, j->name, (long)getpid());
    RF_TRY(rf_mkdirs(ctx, out));
    remove_stale_scratch(base, j->name, host);
    char owner[4400];
    snprintf(owner, sizeof owner, "%s/host", out);
    return rf_write_file_atomic(ctx, owner, host, strlen(host));
}

/* ---- in-process sweep ------------------------------------------------------------- */

/* While the single local task runs: keep status.json and the progress line
 * fresh (a failure to write status is reported at the next regular write). */
static int status_tick(void *ud) {
    coord *C = ud;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    rf_ctx *keep = C->ctx;
    C->ctx = &tmp;
    write_status(C, 0);
    C->ctx = keep;
    return 0;
}

static rf_status run_local(coord *C) {
    rf_ctx *ctx = C->ctx;
    const rf_job *j = C->job;
    char dir[4200];
    char (*pp)[4096] = NULL;
    int maxp = 1;
    for (int i = 0; i < j->n_tasks; i++) if (j->tasks[i].n_parents > maxp) maxp = j->tasks[i].n_parents;
    pp = rf_malloc((size_t)maxp * sizeof *pp);
    if (!pp) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_status s = RF_OK;
    for (;;) {
        if ((s = write_status(C, 0)) != RF_OK) break;
        int32_t i;
        if ((s = pick(C, 0, &i)) != RF_OK || i < 0) break;
        char hx[17];
        rf_job_id_hex(j->tasks[i].id, hx);
        if ((s = ledger(C, "started", i, 0, 0, NULL, NULL, 1)) != RF_OK) break;
        const int32_t *p = rf_job_parents(j, i);
        for (int k = 0; k < j->tasks[i].n_parents; k++) {
            char rel[96];
            rf_store_task_rel(rel, sizeof rel, j->tasks[p[k]].id, "model.rckpt");
            snprintf(pp[k], sizeof pp[k], "%s/%s", rf_store_dir(C->store), rel);
        }
        snprintf(dir, sizeof dir, "%s/local/%s", C->work, hx);
        unsigned char *blob = NULL;
        size_t bn = 0;
        int has = 0;
        char rrel[96], resume[4300];
        rf_store_task_rel(rrel, sizeof rrel, j->tasks[i].id, RESUME_FILE);
        int have_resume = rf_store_stat(C->store, rrel, NULL) == 0;
        if (have_resume) snprintf(resume, sizeof resume, "%s/%s", rf_store_dir(C->store), rrel);
        char salvage[4400];
        const char *from = pick_resume(C->work, hx, have_resume ? resume : NULL, salvage, sizeof salvage);
        s = run_here(ctx, j, i, dir, pp, from, C->o, C->mem, C->time_limit, status_tick, C, NULL, &blob, &bn, &has);
        if (from == salvage) unlink(salvage);
        if (s != RF_OK) break;
        rf_store_file *f = NULL;
        uint64_t bytes = 0;
        if (has) {
            const char *fname = task_files[has == 1 ? FILE_MODEL : FILE_RESUME];
            char rel[96], path[4300];
            rf_store_task_rel(rel, sizeof rel, j->tasks[i].id, fname);
            snprintf(path, sizeof path, "%s/%s", dir, fname);
            unsigned char *ck;
            size_t cn;
            s = rf_read_file(ctx, path, &ck, &cn);
            if (!s) s = rf_store_file_begin(ctx, C->store, rel, &f);
            if (!s) { s = rf_store_file_write(ctx, f, ck, cn); if (s) { rf_store_file_abort(f); f = NULL; } }
            if (!s) rf_free(ck);
            bytes = cn;
            snprintf(path, sizeof path, "%s/%s", dir, AUX_FILE);
            struct stat ast;
            if (!s && has == 1 && stat(path, &ast) == 0 && S_ISREG(ast.st_mode) && (s = rf_read_file(ctx, path, &ck, &cn)) == RF_OK) {
                rf_store_task_rel(rel, sizeof rel, j->tasks[i].id, AUX_FILE);
                s = rf_store_write(ctx, C->store, rel, ck, cn);
                rf_free(ck);
            }
            if (s) { rf_store_file_abort(f); rf_free(blob); break; }
        }
        s = on_result(C, i, 0, blob, bn, f, bytes, NULL);
        rf_free(blob);
        if (s) break;
        if (!C->o->keep_work) coord_rmtree(dir);
    }
    rf_free(pp);
    return s;
}

/* ---- MPI: coordinator ----------------------------------------------------------------- */

/* Number of files of task p in the store that travel with it (1 or 2). */
static uint32_t parent_files(coord *C, int32_t p) {
    char rel[96];
    rf_store_task_rel(rel, sizeof rel, C->job->tasks[p].id, AUX_FILE);
    return C->store && rf_store_stat(C->store, rel, NULL) == 0 ? 2 : 1;
}

/* Sends file k (task_files) of task p from the store to worker w. */
static rf_status ship_file(coord *C, MPI_Comm comm, int w, int32_t p, uint32_t k) {
    rf_ctx *ctx = C->ctx;
    char rel[96];
    rf_store_task_rel(rel, sizeof rel, C->job->tasks[p].id, task_files[k]);
    int fd;
    uint64_t size;
    RF_TRY(rf_store_open_fd(ctx, C->store, rel, &fd, &size));
    rf_coord_msg m = {.type = RF_MSG_PARENT, .task = (uint32_t)p, .arg = k, .n2 = size, .n3 = coord_chunks(size)};
    rf_status s = coord_send_hdr(ctx, comm, w, &m);
    if (!s) s = coord_send_stream(ctx, comm, w, NULL, fd, size, COORD_ZSTD_LEVEL);
    close(fd);
    return s;
}

static rf_status ship_parent(coord *C, MPI_Comm comm, int w, int32_t p) {
    uint32_t nf = parent_files(C, p);
    for (uint32_t k = 0; k < nf; k++) RF_TRY(ship_file(C, comm, w, p, k));
    if (w < 64) C->t[p].holders |= 1ull << w;
    return RF_OK;
}

/* 1 if task i has a resumable state in the store (a preempted attempt). */
static int has_resume(coord *C, int32_t i) {
    char rel[96];
    rf_store_task_rel(rel, sizeof rel, C->job->tasks[i].id, RESUME_FILE);
    return C->store && rf_store_stat(C->store, rel, NULL) == 0;
}

static rf_status dispatch(coord *C, MPI_Comm comm, int w, int32_t i) {
    const rf_job *j = C->job;
    RF_TRY(ledger(C, "started", i, w, 0, NULL, NULL, C->o->inproc_noop ? 0 : 1));
    const int32_t *p = rf_job_parents(j, i);
    uint32_t ship = 0;
    /* a worker that writes into the store reads its parents there too */
    int reads = C->direct && C->direct[w];
    for (int k = 0; k < j->tasks[i].n_parents && !reads; k++)
        if (C->t[p[k]].has_ckpt && !(w < 64 && (C->t[p[k]].holders >> w) & 1)) ship += parent_files(C, p[k]);
    int resume = has_resume(C, i);
    ship += (uint32_t)resume;
    rf_coord_msg m = {.type = RF_MSG_TASK, .task = (uint32_t)i, .attempt = C->t[i].attempts, .arg = ship};
    RF_TRY(coord_send_hdr(C->ctx, comm, w, &m));
    for (int k = 0; k < j->tasks[i].n_parents && !reads; k++)
        if (C->t[p[k]].has_ckpt && !(w < 64 && (C->t[p[k]].holders >> w) & 1)) RF_TRY(ship_parent(C, comm, w, p[k]));
    if (resume) RF_TRY(ship_file(C, comm, w, i, FILE_RESUME));
    return RF_OK;
}

static rf_status recv_result(coord *C, MPI_Comm comm, int w, const rf_coord_msg *m) {
    rf_ctx *ctx = C->ctx;
    if (m->task >= (uint32_t)C->job->n_tasks || C->t[m->task].state != S_RUNNING || C->t[m->task].rank != w)
        return rf_error(ctx, RF_ERR_MPI, "protocol: rank %d reported task %u it was not running", w, m->task);
    unsigned char *blob = rf_malloc((size_t)m->n1 + 1);
    if (!blob) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_status s = coord_recv_bytes(ctx, comm, w, blob, (size_t)m->n1);
    /* the blob's meta says what follows: after success the checkpoint and
     * the aux file, otherwise the resumable state (if any) */
    uint64_t aux = 0;
    int ok = 0;
    direct_ck dc = {0};
    if (!s) {
        const unsigned char *sec[3];
        size_t len[3];
        if (coord_blob_unpack(ctx, blob, (size_t)m->n1, sec, len) == RF_OK) {
            cJSON *meta = cJSON_ParseWithLength((const char *)sec[0], len[0]);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(meta, "aux_bytes");
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(meta, "class");
            ok = cJSON_IsNumber(c) && c->valueint == RF_FAIL_NONE;
            if (ok && cJSON_IsNumber(a) && a->valuedouble > 0 && m->n2 > 0) aux = (uint64_t)a->valuedouble;
            const cJSON *db = cJSON_GetObjectItemCaseSensitive(meta, "direct_bytes");
            if (ok && cJSON_IsNumber(db) && C->direct && C->direct[w]) {
                const char *keys[4] = {"direct_bytes", "direct_crc", "direct_aux_bytes", "direct_aux_crc"};
                double v[4];
                for (int k = 0; k < 4; k++) {
                    const cJSON *x = cJSON_GetObjectItemCaseSensitive(meta, keys[k]);
                    v[k] = cJSON_IsNumber(x) ? x->valuedouble : 0;
                }
                dc.on = 1;
                dc.bytes = (uint64_t)v[0]; dc.crc = (uint32_t)v[1]; dc.aux_bytes = (uint64_t)v[2]; dc.aux_crc = (uint32_t)v[3];
            }
            cJSON_Delete(meta);
        }
    }
    rf_store_file *f = NULL;
    ckpt_sink sk = {0};
    if (!s && m->n2 > 0) {
        if (C->store) {
            char rel[96];
            rf_store_task_rel(rel, sizeof rel, C->job->tasks[m->task].id, task_files[ok ? FILE_MODEL : FILE_RESUME]);
            s = rf_store_file_begin(ctx, C->store, rel, &f);
        }
        sk.f = f;
        if (!s) s = coord_recv_stream(ctx, comm, w, m->n2, m->n3, sink_to_file, &sk);
        if (s) { rf_store_file_abort(f); f = NULL; }
    }
    if (!s && aux) {
        rf_store_file *af = NULL;
        if (C->store) {
            char rel[96];
            rf_store_task_rel(rel, sizeof rel, C->job->tasks[m->task].id, AUX_FILE);
            s = rf_store_file_begin(ctx, C->store, rel, &af);
        }
        ckpt_sink ak = {af, 0};
        if (!s) s = coord_recv_stream(ctx, comm, w, aux, coord_chunks(aux), sink_to_file, &ak);
        if (!s && af) s = rf_store_file_commit(ctx, af);
        else rf_store_file_abort(af);
        if (s) { rf_store_file_abort(f); f = NULL; }
    }
    if (!s && dc.on && m->n2 > 0) s = rf_error(ctx, RF_ERR_MPI, "protocol: rank %d wrote task %u's checkpoint into the store and streamed one too", w, m->task);
    if (!s) s = on_result(C, (int32_t)m->task, w, blob, (size_t)m->n1, f, dc.on ? dc.bytes : m->n2, dc.on ? &dc : NULL);
    if (!s && ok && m->n2 > 0 && !f) C->t[m->task].has_ckpt = 1;   /* storeless benchmark */
    /* after a timeout the receive may still be pending on the buffer: it
     * is left to it (the rank is given up; a few bytes per lost rank) */
    if (s != RF_ERR_TIMEOUT) rf_free(blob);
    return s;
}

/* Worker w's running attempt (if any) is recorded "lost" with why (its
 * retry not spent) and queued again; its name goes into name. */
static rf_status lose_attempt(coord *C, int w, const char *why, char *name, size_t n) {
    int32_t i = C->w[w].task;
    if (i < 0) return RF_OK;
    stask *t = &C->t[i];
    C->w[w].task = -1;
    C->n_running--;
    C->n_lost++;
    cJSON *ex = cJSON_CreateObject();
    if (ex) { cJSON_AddBoolToObject(ex, "retry", 1); cJSON_AddNumberToObject(ex, "silent_s", coord_link_silence(w)); }
    RF_TRY(ledger(C, "lost", i, w, 0, why, ex, 1));
    t->attempts--;   /* not the task's fault: no retry spent */
    t->rank = -1;
    RF_TRY(mark_ready(C, i));
    task_name(C, i, name, n);
    return RF_OK;
}

/* Rank 0 gives worker w up (issue 24): it has been silent for the
 * heartbeat timeout (node lost, link cut, process stopped), or a transfer
 * to or from it timed out. Its running task is recorded "lost" (the
 * attempt is not counted: a lost node is not the task's fault) and queued
 * again for the others; w gets nothing more (a DROP tells it, should it
 * ever run again, to kill its task and leave). */
static rf_status lose_rank(coord *C, int w, const char *why) {
    if (C->w[w].gone) return RF_OK;
    C->w[w].gone = 1;
    C->w[w].idle = 0;
    C->lost_ranks++;
    coord_link_drop(w);
    if (!strstr(C->lost_hosts, C->hosts[w])) {
        size_t k = strlen(C->lost_hosts);
        snprintf(C->lost_hosts + k, sizeof C->lost_hosts - k, "%s%s", k ? ", " : "", C->hosts[w]);
    }
    int had = C->w[w].task >= 0;
    char name[600] = "";
    RF_TRY(lose_attempt(C, w, why, name, sizeof name));
    int live = 0, reaper = -1;
    for (int r = 1; r < C->nranks; r++) {
        live += !C->w[r].gone;
        /* a live rank on the same host kills what w may have left running
         * (its task child: a stopped or stuck rank's task can still use the
         * host's cores and memory); w itself is killed when the job ends */
        if (reaper < 0 && !C->w[r].gone && C->pids && C->pids[w] > 0 && strcmp(C->hosts[r], C->hosts[w]) == 0) reaper = r;
    }
    if (reaper > 0) coord_link_reap(reaper, w, (uint64_t)C->pids[w]);
    char reaped[96] = "";
    if (reaper > 0) snprintf(reaped, sizeof reaped, "; rank %d on the same host kills its task's processes", reaper);
    notice(C, "sweep %s: rank %d on %s given up: %s%s%s%s; %s", C->job->name, w, C->hosts[w], why,
             had ? "; its task lost and queued again: " : "", name, reaped,
             C->launcher_ended ? "the launcher is ending the job" : live ? "going on without it" : "no worker left: stopping");
    if (!live) C->stopping = 1;
    cJSON *ev = cJSON_CreateObject();
    if (!ev) return rf_error(C->ctx, RF_ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(ev, "workers_left", live);
    if (reaper > 0) cJSON_AddNumberToObject(ev, "reaped_by", reaper);
    if (C->pids && C->pids[w] > 0) cJSON_AddNumberToObject(ev, "pid", (double)C->pids[w]);
    return ledger(C, "rank_lost", -1, w, 0, why, ev, 1);
}

/* Gives up every worker silent for the heartbeat timeout. */
static rf_status check_silence(coord *C) {
    double to = coord_link_timeout();
    if (to <= 0) return RF_OK;
    for (int w = 1; w < C->nranks; w++) {
        if (C->w[w].gone) continue;
        double q = coord_link_silence(w);
        if (q <= to) continue;
        char why[160];
        snprintf(why, sizeof why, "no heartbeat for %.1f s (timeout %g s)", q, to);
        RF_TRY(lose_rank(C, w, why));
    }
    return RF_OK;
}

/* An exchange with worker w failed: its silence (RF_ERR_TIMEOUT) gives it
 * up and the sweep goes on; anything else is the sweep's error. */
static rf_status peer_failed(coord *C, int w, rf_status s) {
    if (s != RF_ERR_TIMEOUT) return s;
    char why[RF_ERR_MAX];
    snprintf(why, sizeof why, "%s", rf_ctx_error(C->ctx));
    rf_ctx_clear(C->ctx);
    return lose_rank(C, w, why);
}

/* The launcher started ending the job at `since` (opts.ending_flag: Open
 * MPI does so when any process of the job dies, and kills rank 0 about 2 s
 * later). Workers not heard from since then are dead (or unreachable): each
 * is given up (its task "lost", naming its host) and so is every other
 * running attempt, which the launcher is about to kill; the sweep then ends
 * at once. Returns with C->launcher_ended 0 when every worker was heard
 * (the user signalled mpirun: a stop like any other). */
static rf_status launcher_ending(coord *C, double since) {
    int dead = 0;
    for (int w = 1; w < C->nranks; w++) dead += !C->w[w].gone && coord_link_heard(w) < since;
    if (!dead) return RF_OK;
    C->launcher_ended = 1;
    C->stopping = 1;
    char why[300];
    double waited = rf_now() - since;
    for (int w = 1; w < C->nranks; w++) {
        if (C->w[w].gone || coord_link_heard(w) >= since) continue;
        snprintf(why, sizeof why, "not heard for %.1f s since the launcher began ending the job (Open MPI does so when "
                                  "a process dies or a daemon is lost): dead or unreachable", waited);
        RF_TRY(lose_rank(C, w, why));
    }
    snprintf(why, sizeof why, "the launcher is ending the job (%s dead or unreachable): this attempt ends with it",
             C->lost_hosts);
    for (int w = 1; w < C->nranks; w++) {
        char name[600];
        if (!C->w[w].gone) RF_TRY(lose_attempt(C, w, why, name, sizeof name));
    }
    return C->store ? rf_store_ledger_sync(C->ctx, C->store) : RF_OK;
}

static rf_status run_coordinator(coord *C, MPI_Comm comm) {
    rf_ctx *ctx = C->ctx;
    int nworkers = C->nranks - 1, nidle = 0, spins = 0;
    int *idle = rf_malloc((size_t)nworkers * sizeof *idle);
    if (!idle) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    rf_status s = RF_OK;
    double last_check = rf_now(), ending_at = 0;
    int lost_seen = 0, probed = 0;
    /* how long to listen for the workers' own beats (every timeout/4) once
     * the launcher starts ending the job: the SIGKILL comes 2 s after */
    double listen = C->o->ending_probe_s > 0 ? C->o->ending_probe_s : coord_link_timeout() / 4 + 0.25;
    if (!(C->o->ending_probe_s > 0) && listen > 1.4) listen = 1.4;
    for (;;) {
        if (!C->o->inproc_noop && (s = write_status(C, 0)) != RF_OK) break;
        coord_link_pump();
        /* the launcher is ending the job: who is dead? Rank 0 has about
         * 2 s before its SIGKILL; the other ranks are signalled only after
         * it. It sends nothing meanwhile (to a dead peer that would block it)
         * and waits for every live worker's next beat */
        if (!probed && C->o->ending_flag && *C->o->ending_flag) {
            if (ending_at == 0) {
                ending_at = rf_now();
                coord_link_hush(1);
                if (coord_link_timeout() <= 0) probed = 1;   /* no heartbeats: nothing to listen for */
            }
            int silent = 0;
            for (int w = 1; !probed && w < C->nranks; w++) silent += !C->w[w].gone && coord_link_heard(w) < ending_at;
            if (!probed && (!silent || rf_now() - ending_at > listen)) {
                probed = 1;
                if ((s = launcher_ending(C, ending_at)) != RF_OK || C->launcher_ended) break;
                coord_link_hush(0);
            }
        }
        /* silences are looked at a few times per timeout, not per message:
         * with a thousand workers that is a thousand clock reads */
        double now = rf_now();
        if (now - last_check > coord_link_timeout() / 8) {
            last_check = now;
            if ((s = check_silence(C)) != RF_OK) break;
        }
        if (C->lost_ranks != lost_seen) {
            /* given-up ranks leave the idle list */
            lost_seen = C->lost_ranks;
            int k = 0;
            for (int x = 0; x < nidle; x++) if (!C->w[idle[x]].gone) idle[k++] = idle[x];
            nidle = k;
        }
        /* hand work to idle ranks, most recently idle first (not while
         * listening for who is dead: a send to a dead rank blocks) */
        while (nidle > 0 && !(ending_at > 0 && !probed)) {
            int w = idle[nidle - 1];
            int32_t i;
            if ((s = pick(C, w, &i)) != RF_OK || i < 0) break;
            nidle--;
            if ((s = dispatch(C, comm, w, i)) != RF_OK && (s = peer_failed(C, w, s)) != RF_OK) break;
        }
        if (s) break;
        if (C->n_running == 0 && nidle == nworkers - C->lost_ranks && (C->stopping || heap_top(C, &C->global) < 0)) break;
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, COORD_TAG_HDR, comm, &flag, &st);
        if (!flag) { coord_backoff(&spins); continue; }
        spins = 0;
        rf_coord_msg m;
        int from;
        if ((s = coord_recv_hdr(ctx, comm, st.MPI_SOURCE, &m, &from)) != RF_OK) break;
        if (from <= 0 || from >= C->nranks) { s = rf_error(ctx, RF_ERR_MPI, "protocol: message from rank %d", from); break; }
        /* a given-up rank that runs again (a stopped process continued):
         * what it says is ignored (its payloads stay unreceived; the DROP
         * it gets makes it leave) */
        if (C->w[from].gone) continue;
        if (m.type == RF_MSG_READY) {
            C->w[from].idle = 1;
            C->w[from].since = rf_now();
            idle[nidle++] = from;
        } else if (m.type == RF_MSG_RESULT) {
            if ((s = recv_result(C, comm, from, &m)) != RF_OK) {
                if ((s = peer_failed(C, from, s)) != RF_OK) break;
                continue;
            }
            C->w[from].idle = 1;
            C->w[from].since = rf_now();
            idle[nidle++] = from;
        } else {
            s = rf_error(ctx, RF_ERR_MPI, "protocol: unexpected message type %u from rank %d", m.type, from);
            break;
        }
    }
    /* every worker gets STOP, also after an error, so no rank waits forever;
     * arg 1: ranks were given up, so there is no final barrier (it would
     * wait for them): the job ends without it */
    rf_coord_msg stop = {.type = RF_MSG_STOP, .arg = C->lost_ranks > 0};
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    for (int w = 1; w < C->nranks; w++) if (!C->w[w].gone) coord_send_hdr(&tmp, comm, w, &stop);
    rf_free(idle);
    return s;
}

/* ---- the scheduler alone, on a fake transport (raffle bench coord) ------------------- */

rf_status coord_sim(rf_ctx *ctx, const rf_job *job, int workers, coord_sim_result *out) {
    memset(out, 0, sizeof *out);
    if (workers < 1) return rf_error(ctx, RF_ERR_INVALID, "coord_sim: needs a worker");
    rf_sweep_opts o;
    rf_sweep_opts_default(&o);
    o.quiet = 1;
    o.inproc_noop = 1;
    coord C;
    memset(&C, 0, sizeof C);
    C.ctx = ctx;
    C.job = job;
    C.o = &o;
    C.nranks = workers + 1;
    C.t0 = rf_now();
    /* the fake transport: a FIFO of busy workers; every task takes as long,
     * so the worker that got its task first reports first */
    int32_t *fifo = rf_malloc((size_t)(workers + 1) * sizeof *fifo);
    rf_status s = fifo ? sched_init(&C) : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    if (!s) s = seed_ready(&C);
    out->queued = 0;
    for (int i = 0; i < job->n_tasks; i++) out->queued += C.t[i].state == S_READY;
    int head = 0, n = 0, cap = workers + 1;
    double t0 = rf_now();
    for (int w = 1; w <= workers && !s; w++) {
        int32_t i;
        if ((s = pick(&C, w, &i)) != RF_OK || i < 0) break;
        out->decisions++;
        fifo[(head + n++) % cap] = w;
    }
    while (n > 0 && !s) {
        int w = fifo[head];
        head = (head + 1) % cap;
        n--;
        int32_t i = C.w[w].task;
        /* the result: what on_result does for a success, minus the store */
        C.n_running--;
        C.w[w].task = -1;
        C.n_done++;
        if ((s = complete(&C, i, w)) != RF_OK) break;
        if ((s = pick(&C, w, &i)) != RF_OK) break;
        if (i >= 0) { out->decisions++; fifo[(head + n++) % cap] = w; }
    }
    out->seconds = rf_now() - t0;
    out->done = C.n_done;
    out->sched_bytes = coord_sched_bytes(job);
    rf_free(fifo);
    coord_free(&C);
    return s;
}

/* ---- MPI: worker ------------------------------------------------------------------------ */

typedef struct fd_sink { int fd; } fd_sink;
static rf_status sink_fd(rf_ctx *ctx, void *ud, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n) {
        ssize_t w = write(((fd_sink *)ud)->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return rf_error(ctx, RF_ERR_IO, "parent checkpoint write: %s", strerror(errno));
        p += w; n -= (size_t)w;
    }
    return RF_OK;
}

/* The coordinator's next header: coord_recv_hdr polls (without spinning a
 * core that a task child needs: Open MPI busy-polls in blocking receives),
 * beats meanwhile and gives up when rank 0 stays silent. */
static rf_status wait_hdr(rf_ctx *ctx, MPI_Comm comm, rf_coord_msg *m) {
    return coord_recv_hdr(ctx, comm, 0, m, NULL);
}

/* A worker cut off from rank 0: silent past the timeout, or given up by it. */
static int orphaned(void) {
    double to = coord_link_timeout();
    return coord_link_abandoned() || (to > 0 && coord_link_silence(0) > to);
}

/* While a task runs on a worker: beat, and end the task once cut off. */
static int worker_tick(void *ud) {
    (void)ud;
    coord_link_pump();
    return orphaned();
}

static rf_status orphan_error(rf_ctx *ctx) {
    if (coord_link_abandoned()) return rf_error(ctx, RF_ERR_TIMEOUT, "rank 0 gave this rank up (it was silent past the heartbeat timeout)");
    return rf_error(ctx, RF_ERR_TIMEOUT, "no word from rank 0 for %.1f s (heartbeat timeout %g s)", coord_link_silence(0),
                    coord_link_timeout());
}

static rf_status recv_parent(rf_ctx *ctx, MPI_Comm comm, const rf_job *j, const char *work, uint8_t *have) {
    rf_coord_msg m;
    RF_TRY(coord_recv_hdr(ctx, comm, 0, &m, NULL));
    if (m.type != RF_MSG_PARENT || m.task >= (uint32_t)j->n_tasks || m.arg >= sizeof task_files / sizeof task_files[0])
        return rf_error(ctx, RF_ERR_MPI, "protocol: expected a parent checkpoint, got type %u", m.type);
    char hx[17], path[4300], tmp[4400];
    rf_job_id_hex(j->tasks[m.task].id, hx);
    snprintf(path, sizeof path, "%s/cache/%s", work, hx);
    RF_TRY(rf_mkdirs(ctx, path));
    snprintf(path, sizeof path, "%s/cache/%s/%s", work, hx, task_files[m.arg]);
    snprintf(tmp, sizeof tmp, "%s.part", path);
    fd_sink fs = {open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (fs.fd < 0) {
        rf_status s = rf_error(ctx, RF_ERR_IO, "%s: %s", tmp, strerror(errno));
        coord_recv_stream(ctx, comm, 0, m.n2, m.n3, NULL, NULL);
        return s;
    }
    rf_status s = coord_recv_stream(ctx, comm, 0, m.n2, m.n3, sink_fd, &fs);
    if (close(fs.fd) != 0 && !s) s = rf_error(ctx, RF_ERR_IO, "%s: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0) s = rf_error(ctx, RF_ERR_IO, "%s: %s", path, strerror(errno));
    if (!s && m.arg != FILE_RESUME) have[m.task] = 2;
    return s;
}

static rf_status run_worker(rf_ctx *ctx, const rf_job *j, const rf_sweep_opts *o, MPI_Comm comm, int rank,
                            const char *work, uint64_t mem, double tl, const char *direct_dir, int *no_barrier) {
    uint8_t *have = rf_calloc((size_t)(j->n_tasks ? j->n_tasks : 1), 1);   /* 1: produced here, 2: shipped */
    int maxp = 1;
    for (int i = 0; i < j->n_tasks; i++) if (j->tasks[i].n_parents > maxp) maxp = j->tasks[i].n_parents;
    char (*pp)[4096] = rf_malloc((size_t)maxp * sizeof *pp);
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/cache", work);
    rf_status s = (!have || !pp) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory") : o->inproc_noop ? RF_OK : rf_mkdirs(ctx, cache);
    rf_coord_msg ready = {.type = RF_MSG_READY};
    if (!s) s = coord_send_hdr(ctx, comm, 0, &ready);
    static const char noop_meta[] = "{\"class\":0,\"message\":\"\",\"seconds\":0}";
    static const char noop_metrics[] = "{\"accuracy\":0}\n";
    while (!s) {
        rf_coord_msg m;
        if ((s = wait_hdr(ctx, comm, &m)) != RF_OK) break;
        if (m.type == RF_MSG_STOP) { *no_barrier = m.arg == 1; break; }
        if (m.type != RF_MSG_TASK || m.task >= (uint32_t)j->n_tasks) { s = rf_error(ctx, RF_ERR_MPI, "protocol: unexpected message type %u", m.type); break; }
        for (uint32_t k = 0; k < m.arg && !s; k++) s = recv_parent(ctx, comm, j, work, have);
        if (s) break;
        int32_t i = (int32_t)m.task;
        unsigned char *blob = NULL;
        size_t bn = 0;
        int has = 0;
        char dir[4300], hx[17];
        rf_job_id_hex(j->tasks[i].id, hx);
        snprintf(dir, sizeof dir, "%s/tasks/%s", work, hx);
        if (o->inproc_noop) {
            /* benchmark: measures the coordinator, not fork/exec */
            s = coord_blob_pack(ctx, noop_meta, sizeof noop_meta - 1, (const unsigned char *)noop_metrics,
                                sizeof noop_metrics - 1, NULL, 0, &blob, &bn);
        } else {
            const int32_t *p = rf_job_parents(j, i);
            for (int k = 0; k < j->tasks[i].n_parents; k++) {
                char ph[17];
                rf_job_id_hex(j->tasks[p[k]].id, ph);
                if (have[p[k]] == 1) snprintf(pp[k], sizeof pp[k], "%s/tasks/%s/model.rckpt", work, ph);
                else if (direct_dir) snprintf(pp[k], sizeof pp[k], "%s/tasks/%s/model.rckpt", direct_dir, ph);   /* read where it is */
                else snprintf(pp[k], sizeof pp[k], "%s/%s/model.rckpt", cache, ph);
            }
            have[i] = 0;
            /* a resumable state shipped with the task (recv_parent) */
            char resume[4400];
            struct stat rst;
            snprintf(resume, sizeof resume, "%s/%s/" RESUME_FILE, cache, hx);
            int rs = stat(resume, &rst) == 0 && S_ISREG(rst.st_mode);
            char salvage[4400];
            char root[4200];
            const char *slash = strrchr(work, '/');
            snprintf(root, sizeof root, "%.*s", slash ? (int)(slash - work) : (int)strlen(work), work);
            const char *from = pick_resume(root, hx, rs ? resume : NULL, salvage, sizeof salvage);
            s = run_here(ctx, j, i, dir, pp, from, o, mem, tl, worker_tick, NULL, direct_dir, &blob, &bn, &has);
            if (rs) unlink(resume);
            if (from == salvage) unlink(salvage);
            if (!s && orphaned()) { rf_free(blob); s = orphan_error(ctx); }
        }
        if (s) break;
        char ck[4400];
        snprintf(ck, sizeof ck, "%s/%s", dir, task_files[has == 2 ? FILE_RESUME : FILE_MODEL]);
        int fd = has == 1 || has == 2 ? open(ck, O_RDONLY | O_CLOEXEC) : -1;
        struct stat st;
        uint64_t size = (fd >= 0 && fstat(fd, &st) == 0) ? (uint64_t)st.st_size : 0;
        rf_coord_msg r = {.type = RF_MSG_RESULT, .task = m.task, .attempt = m.attempt, .n1 = bn, .n2 = size, .n3 = coord_chunks(size)};
        s = coord_send_hdr(ctx, comm, 0, &r);
        if (!s) s = coord_send_bytes(ctx, comm, 0, blob, bn);
        if (!s && size) s = coord_send_stream(ctx, comm, 0, NULL, fd, size, COORD_ZSTD_LEVEL);
        if (fd >= 0) close(fd);
        if (!s && has == 1) {
            snprintf(ck, sizeof ck, "%s/%s", dir, AUX_FILE);
            int afd = open(ck, O_RDONLY | O_CLOEXEC);
            if (afd >= 0 && fstat(afd, &st) == 0 && st.st_size > 0)
                s = coord_send_stream(ctx, comm, 0, NULL, afd, (uint64_t)st.st_size, COORD_ZSTD_LEVEL);
            if (afd >= 0) close(afd);
        }
        rf_free(blob);
        if (!s && (has == 1 || has == 3)) have[i] = 1;
    }
    (void)rank;
    rf_free(have);
    rf_free(pp);
    return s;
}

/* ---- a worker's watchdog -------------------------------------------------------------- */

/* A thread of its own, so it notices even when the main thread cannot (a
 * system call that does not return: a hung file system, a stuck driver):
 * once rank 0 has been silent for 1.5 timeouts (the main thread's own
 * checks fire at 1), or gave this rank up, it hands the caller a line
 * (on_orphan: the CLI prints it and ends the process; the task child dies
 * with it, PR_SET_PDEATHSIG). */
typedef struct watchdog {
    pthread_t            th;
    atomic_int           quit;
    const rf_sweep_opts *o;
    int                  rank;
    char                 host[HOST_NAME_MAX + 1];
} watchdog;

static void *watchdog_main(void *ud) {
    watchdog *wd = ud;
    double to = coord_link_timeout();
    while (!atomic_load(&wd->quit)) {
        double q = coord_link_silence(0);
        if (coord_link_abandoned() || q > 1.5 * to) {
            char line[400];
            if (coord_link_abandoned())
                snprintf(line, sizeof line, "rank %d on %s: rank 0 gave this rank up (silent past the %g s heartbeat timeout): "
                         "killing its task and leaving", wd->rank, wd->host, to);
            else
                snprintf(line, sizeof line, "rank %d on %s: no word from rank 0 for %.1f s (heartbeat timeout %g s): "
                         "killing its task and leaving", wd->rank, wd->host, q, to);
            wd->o->on_orphan(wd->o->orphan_ud, line, !coord_link_abandoned());
            break;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The sweep's final barrier, heartbeat-aware: a rank that stops or dies
 * after the last task would otherwise hold every other rank in
 * MPI_Barrier forever. Rank 0 gives up once a worker has been silent for
 * the timeout (*gone_rank = that rank), a worker once rank 0 has (an
 * RF_ERR_TIMEOUT error). Without heartbeats, a plain barrier. */
static rf_status final_barrier(rf_ctx *ctx, int rank, int size, int *gone_rank) {
    *gone_rank = -1;
    if (coord_link_timeout() <= 0) { MPI_Barrier(MPI_COMM_WORLD); return RF_OK; }
    MPI_Request rq;
    MPI_Ibarrier(MPI_COMM_WORLD, &rq);
    int flag = 0, spins = 0;
    for (;;) {
        MPI_Test(&rq, &flag, MPI_STATUS_IGNORE);
        if (flag) return RF_OK;
        coord_link_pump();
        double to = coord_link_timeout();
        if (rank > 0 && (coord_link_abandoned() || coord_link_silence(0) > to)) return orphan_error(ctx);
        for (int w = 1; rank == 0 && w < size; w++)
            if (coord_link_silence(w) > to) { *gone_rank = w; return RF_OK; }
        coord_backoff(&spins);
    }
}

/* ---- direct writes: who sees the store ------------------------------------------------- */

/* Collective (every rank): rank 0 writes a probe file with a random token
 * into STORE/NAME/ (by its absolute path) and broadcasts path and token;
 * each worker reads it back; rank 0 gathers who saw it, keeps the answer in
 * C->direct and scatters each worker its own. A worker that writes directly
 * gets the store's path in store_dir (else ""). With direct_writes 1 and a
 * worker that did not see it, rank 0 returns an error naming the host. */
static rf_status probe_shared(coord *C, int rank, int size, char *store_dir, size_t sn) {
    const rf_sweep_opts *o = C->o;
    struct { char dir[4096]; char token[24]; } b;
    memset(&b, 0, sizeof b);
    char probe[4200] = "";
    if (rank == 0) {
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", o->store_root, C->job->name);
        if (rf_mkdirs(&tmp, dir) == RF_OK && realpath(dir, b.dir)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            char seed[512];
            int k = snprintf(seed, sizeof seed, "%s %ld %ld %ld", C->hosts[0], (long)getpid(), (long)ts.tv_sec, ts.tv_nsec);
            rf_job_id_hex(rf_hash64(seed, (size_t)k, 0), b.token);
            snprintf(probe, sizeof probe, "%s/.probe-%s", b.dir, b.token);
            if (rf_write_file_atomic(&tmp, probe, b.token, strlen(b.token)) != RF_OK) b.dir[0] = '\0';
        }
    }
    MPI_Bcast(&b, (int)sizeof b, MPI_CHAR, 0, MPI_COMM_WORLD);
    int sees = 0;
    if (rank > 0 && b.dir[0]) {
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        unsigned char *got = NULL;
        size_t n = 0;
        snprintf(probe, sizeof probe, "%s/.probe-%s", b.dir, b.token);
        sees = rf_read_file(&tmp, probe, &got, &n) == RF_OK && n == strlen(b.token) && memcmp(got, b.token, n) == 0;
        rf_free(got);
    }
    int *all = rank == 0 ? rf_calloc((size_t)size, sizeof *all) : NULL;
    int nomem = rank == 0 && (!all || !(C->direct = rf_calloc((size_t)size, 1)));
    MPI_Gather(&sees, 1, MPI_INT, all, 1, MPI_INT, 0, MPI_COMM_WORLD);
    rf_status s = RF_OK;
    if (rank == 0) {
        if (probe[0]) unlink(probe);
        for (int w = 1; w < size && !nomem; w++) {
            all[w] = all[w] && b.dir[0];
            C->direct[w] = (uint8_t)all[w];
            if (!all[w] && o->direct_writes == 1 && !s)
                s = rf_error(C->ctx, RF_ERR_UNSUPPORTED, "direct writes: rank %d on %s does not see the store %s (a file rank 0 wrote "
                             "there is not there for it): put the store on a file system every node mounts at the same path, or "
                             "leave direct writes on auto", w, C->hosts[w], b.dir[0] ? b.dir : o->store_root);
        }
        if (nomem) { s = rf_error(C->ctx, RF_ERR_NOMEM, "out of memory"); if (all) memset(all, 0, (size_t)size * sizeof *all); }
    }
    int mine = 0;
    MPI_Scatter(all, 1, MPI_INT, &mine, 1, MPI_INT, 0, MPI_COMM_WORLD);
    rf_free(all);
    snprintf(store_dir, sn, "%s", mine ? b.dir : "");
    return s;
}

/* ---- entry ------------------------------------------------------------------------------ */

rf_status rf_sweep_run(rf_ctx *ctx, const rf_job *job, const rf_sweep_opts *opts, rf_sweep_result *res) {
    rf_sweep_opts def;
    if (!opts) { rf_sweep_opts_default(&def); opts = &def; }
    memset(res, 0, sizeof *res);
    int mpi = 0, rank = 0, size = 1;
    MPI_Initialized(&mpi);
    if (mpi) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    coord C;
    memset(&C, 0, sizeof C);
    C.ctx = ctx;
    C.job = job;
    C.o = opts;
    C.nranks = size;
    C.t0 = rf_now();
    C.last_status = -1e30;
    C.retries = opts->retries >= 0 ? opts->retries : job->limits.retries;
    C.time_limit = opts->time_limit_s > 0 ? opts->time_limit_s : job->limits.time_s;
    C.mem = opts->mem_limit ? opts->mem_limit : job->limits.memory_bytes;
    /* whether rank 0 could allocate the host table the gather fills */
    int hosts_ok = 1;
    if (rank == 0) hosts_ok = (C.hosts = rf_calloc((size_t)size, sizeof *C.hosts)) != NULL &&
                              (C.pids = rf_calloc((size_t)size, sizeof *C.pids)) != NULL;
    if (size > 1) MPI_Bcast(&hosts_ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    host_name me = "";
    gethostname(me, sizeof me - 1);
    int64_t my_pid = (int64_t)getpid();
    if (hosts_ok && size > 1) {
        MPI_Gather(me, (int)sizeof me, MPI_CHAR, C.hosts, (int)sizeof me, MPI_CHAR, 0, MPI_COMM_WORLD);
        MPI_Gather(&my_pid, 1, MPI_INT64_T, C.pids, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    } else if (hosts_ok) {
        memcpy(C.hosts[0], me, sizeof me);
        C.pids[0] = my_pid;
    }
    /* rank 0's heartbeat timeout is everyone's */
    double hb = opts->heartbeat_s;
    if (size > 1) MPI_Bcast(&hb, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    C.heartbeat = hb;
    rf_status s = rank == 0 && (!C.hosts || !C.pids) ? rf_error(ctx, RF_ERR_NOMEM, "out of memory for %d host names", size) : RF_OK;
    if (!s && size > 1) s = coord_link_open(ctx, MPI_COMM_WORLD, rank, size, hb);
    if (size > 1 && opts->on_started) opts->on_started(opts->orphan_ud);
    if (!s && !opts->inproc_noop) s = work_root(ctx, opts, job, C.work, sizeof C.work);
    char direct_dir[4096] = "";
    rf_status probe_s = RF_OK;
    if (!s && size > 1 && !opts->inproc_noop && opts->direct_writes != 0)
        probe_s = probe_shared(&C, rank, size, direct_dir, sizeof direct_dir);
    if (size > 1 && rank > 0) {
        char mine[4300];
        snprintf(mine, sizeof mine, "%s/rank%d", C.work, rank);
        if (!s && !opts->inproc_noop) s = rf_mkdirs(ctx, mine);
        watchdog wd = {.o = opts, .rank = rank};
        memcpy(wd.host, me, sizeof me);
        int wd_on = !s && hb > 0 && opts->on_orphan && pthread_create(&wd.th, NULL, watchdog_main, &wd) == 0;
        int no_barrier = 0;
        if (!s) s = run_worker(ctx, job, opts, MPI_COMM_WORLD, rank, mine, C.mem, C.time_limit, direct_dir[0] ? direct_dir : NULL,
                               &no_barrier);
        if (wd_on) { atomic_store(&wd.quit, 1); pthread_join(wd.th, NULL); }
        if (!opts->keep_work && C.work[0]) coord_rmtree(C.work);
        /* after an error no barrier: rank 0 may be waiting for this rank's
         * result; the caller ends the job (rf_sweep_run's contract). Nor
         * when rank 0 gave ranks up: they would never arrive */
        int unused;
        if (!s && !no_barrier) s = final_barrier(ctx, rank, size, &unused);
        res->orphaned = s != RF_ERR_TIMEOUT ? 0 : coord_link_abandoned() ? 2 : 1;
        /* rank 0 gave ranks up: it ends the job itself (an abort, which
         * kills this process) once it has written the store; wait for that,
         * or for its silence */
        while (!s && no_barrier && coord_link_timeout() > 0 && coord_link_silence(0) <= coord_link_timeout()) {
            coord_link_pump();
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
        res->lost_ranks = no_barrier;
        coord_link_close();
        return s;
    }
    if (!s) s = probe_s;
    if (!s) s = sched_init(&C);
    if (!s && !opts->inproc_noop) s = open_store(&C);
    if (!s) s = seed_ready(&C);
    if (!s) {
        progress(&C, "sweep %s: %d tasks (%d already done) on %d rank(s)%s", job->name, job->n_tasks, C.n_reused, size,
                 size > 1 ? "" : ", in-process");
        s = size > 1 ? run_coordinator(&C, MPI_COMM_WORLD) : run_local(&C);
    } else if (size > 1) {
        /* the workers are waiting for instructions: release them */
        rf_coord_msg stop = {.type = RF_MSG_STOP};
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        for (int w = 1; w < size; w++) coord_send_hdr(&tmp, MPI_COMM_WORLD, w, &stop);
    }
    if (!s && !opts->inproc_noop) s = finish(&C);
    fill_result(&C, res);
    /* After an error, a worker may be blocked sending a result this rank
     * will never receive (issue 19, defect 1: a full store deadlocked the
     * sweep in this barrier): return at once, the caller ends the job.
     * Given-up ranks would never reach the barrier either. */
    int late = -1;
    if (size > 1 && !s && !C.lost_ranks && (s = final_barrier(ctx, 0, size, &late)) == RF_OK && late > 0) {
        /* every task is done, but a worker went silent before the end: the
         * job ends without it (as after a loss in the middle) */
        char why[160];
        snprintf(why, sizeof why, "no heartbeat for %.1f s (timeout %g s) at the final barrier", coord_link_silence(late),
                 coord_link_timeout());
        rf_status ls = lose_rank(&C, late, why);
        fill_result(&C, res);
        if (ls) s = ls;
    }
    coord_link_close();
    if (!opts->keep_work && C.work[0]) coord_rmtree(C.work);
    coord_free(&C);
    return s;
}
