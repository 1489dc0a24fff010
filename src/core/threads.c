/* Thread pool (include/raffle/threads.h).
 *
 * A job is published by bumping `gen` after writing fn/arg/n; worker w
 * (1 .. threads-1) waits for gen to change, runs part w if w < n, and
 * decrements `pending` either way; the caller runs part 0 and then waits
 * for pending to reach 0, i.e. for every worker to have seen the job (a
 * worker that skipped a job must not read the next job's fields as this
 * one's). Waiting is a bounded spin (SPIN_NS) on the atomic, then a
 * sleep on a condition variable. The sleep/wake handshake is the classic
 * store-then-load pair on seq_cst atomics: a worker announces itself in
 * `sleepers` before it re-checks `gen` under the mutex, and the caller
 * bumps `gen` before it reads `sleepers`, so at least one of them sees the
 * other and no wake-up is lost. The same pairing guards `done_waiting`. */
#include "raffle/threads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long a waiting thread spins before it sleeps: long enough to bridge
 * the gaps between the products of one training step (microseconds), short
 * enough that an idle pool does not hold a core of a shared machine. After
 * PAUSE_NS of plain spinning the wait yields the core on every round: when
 * more threads are runnable than there are cores (other users of a shared
 * machine, or the caller and a worker put on one core), the thread being
 * waited for, or another user's, runs instead of a spinner burning the rest
 * of its time slice; on an idle core sched_yield returns at once. */
#define SPIN_NS 50000L
#define PAUSE_NS 5000L

struct rf_pool {
    int threads;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    /* the job: written by the caller before gen is bumped */
    rf_pool_fn fn;
    void *arg;
    int n;
    atomic_uint gen;
    atomic_int pending;      /* workers of the current job not yet finished */
    atomic_int sleepers;     /* workers asleep (or about to be) on work_cv */
    atomic_int done_waiting; /* the caller asleep (or about to be) on done_cv */
    atomic_int stop;
    /* rf_pool_profile: counters, each part's CPU time of the current job
     * (a cache line each: the parts write them at the same time) */
    int prof;
    rf_pool_stats st;
    double last_exit;              /* caller's CPU clock when the last job ended */
    atomic_llong sleeps;
    struct part_time { double s; char pad[56]; } *part;
};

typedef struct worker_arg { rf_pool *p; int w; } worker_arg;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Part t of the current job, timed when the pool profiles. */
static void run_part(rf_pool *p, int t) {
    if (!p->prof) { p->fn(p->arg, t, p->n); return; }
    double t0 = cpu_now();
    p->fn(p->arg, t, p->n);
    p->part[t].s = cpu_now() - t0;
}

/* Round i of a spin that started at t0: a pause, or (every 64th round,
 * about a microsecond apart) a look at the clock, then a yield once PAUSE_NS
 * have passed. Returns 1 when SPIN_NS have passed: time to sleep. */
static int spin_round(long t0, int i) {
    if ((i & 63) != 63) {
        CPU_RELAX();
        return 0;
    }
    long dt = now_ns() - t0;
    if (dt > SPIN_NS) return 1;
    if (dt > PAUSE_NS) sched_yield();
    return 0;
}

/* Spins until *a != v or SPIN_NS pass; returns the last value read. */
static unsigned spin_while_eq(atomic_uint *a, unsigned v) {
    long t0 = now_ns();
    for (int i = 0;; i++) {
        unsigned g = atomic_load(a);
        if (g != v || spin_round(t0, i)) return g;
    }
}

/* rf_pool_on_worker_exit's functions: appended under exit_mu, read by
 * exiting workers under it. */
static pthread_mutex_t exit_mu = PTHREAD_MUTEX_INITIALIZER;
static void (*exit_fns[RF_POOL_MAX_EXIT_FNS])(void);
static int n_exit_fns;

rf_status rf_pool_on_worker_exit(void (*fn)(void)) {
    if (!fn) return RF_ERR_INVALID;
    rf_status st = RF_OK;
    pthread_mutex_lock(&exit_mu);
    int have = 0;
    for (int i = 0; i < n_exit_fns; i++) have |= exit_fns[i] == fn;
    if (!have) {
        if (n_exit_fns < RF_POOL_MAX_EXIT_FNS) exit_fns[n_exit_fns++] = fn;
        else st = RF_ERR_NOMEM;
    }
    pthread_mutex_unlock(&exit_mu);
    return st;
}

static void run_exit_fns(void) {
    pthread_mutex_lock(&exit_mu);
    for (int i = 0; i < n_exit_fns; i++) exit_fns[i]();
    pthread_mutex_unlock(&exit_mu);
}

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    rf_free(varg);
    rf_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g = spin_while_eq(&p->gen, seen);
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            atomic_fetch_add(&p->sleeps, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) {
            run_exit_fns();
            return NULL;
        }
        seen = g;
        /* Every worker acknowledges every job, taking part or not: the
         * caller returns only when all have seen this generation, so none
         * can still be looking at it when the next job's fields are written. */
        if (wa.w < p->n) run_part(p, wa.w);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->done_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void stop_workers(rf_pool *p, int started) {
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++) pthread_join(p->tids[i], NULL);
}

rf_status rf_pool_create(rf_ctx *ctx, int threads, rf_pool **out) {
    *out = NULL;
    if (threads < 1 || threads > RF_POOL_MAX)
        return rf_error(ctx, RF_ERR_INVALID, "thread pool: %d threads (want 1 .. %d)", threads, RF_POOL_MAX);
    rf_pool *p = rf_calloc(1, sizeof *p);
    if (!p) return rf_error(ctx, RF_ERR_NOMEM, "thread pool: out of memory");
    p->threads = threads;
    p->tids = rf_calloc((size_t)threads, sizeof *p->tids);
    if (!p->tids) {
        rf_free(p);
        return rf_error(ctx, RF_ERR_NOMEM, "thread pool: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->done_waiting, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleeps, 0);
    for (int w = 1; w < threads; w++) {
        worker_arg *wa = rf_malloc(sizeof *wa);
        int rc = wa ? 0 : ENOMEM;
        if (wa) {
            *wa = (worker_arg){p, w};
            rc = pthread_create(&p->tids[w - 1], NULL, worker_main, wa);
            if (rc) rf_free(wa);
        }
        if (rc) {
            stop_workers(p, w - 1);
            p->threads = 1;
            rf_pool_free(p);
            return rf_error(ctx, rc == ENOMEM ? RF_ERR_NOMEM : RF_ERR_INTERNAL,
                            "thread pool: cannot start thread %d of %d (%s)", w + 1, threads, strerror(rc));
        }
    }
    *out = p;
    return RF_OK;
}

void rf_pool_free(rf_pool *p) {
    if (!p) return;
    if (p->threads > 1) stop_workers(p, p->threads - 1);
    rf_free(p->part);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    rf_free(p->tids);
    rf_free(p);
}

int rf_pool_threads(const rf_pool *p) { return p ? p->threads : 1; }

void rf_pool_run(rf_pool *p, int n, rf_pool_fn fn, void *arg) {
    int max = rf_pool_threads(p);
    if (n > max) n = max;
    if (n <= 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store(&p->pending, p->threads - 1);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
    double c0 = 0.0;
    if (p->prof) {
        c0 = cpu_now();
        p->st.serial_s += c0 - p->last_exit;
    }
    run_part(p, 0);
    long t0 = now_ns();
    for (int i = 0; atomic_load(&p->pending) > 0; i++) {
        if (spin_round(t0, i)) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->done_waiting, 1);
            atomic_fetch_add(&p->sleeps, 1);
            while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done_cv, &p->mu);
            atomic_store(&p->done_waiting, 0);
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
    if (p->prof) {
        double end = cpu_now(), span = 0.0, work = 0.0;
        for (int t = 0; t < n; t++) {
            span = p->part[t].s > span ? p->part[t].s : span;
            work += p->part[t].s;
        }
        p->st.jobs++;
        p->st.span_s += span;
        p->st.work_s += work;
        p->st.wait_s += end - c0 - p->part[0].s;
        p->last_exit = end;
    }
}

void rf_pool_profile(rf_pool *p, int on) {
    if (!p) return;
    if (on && !p->part && p->threads > 1) {
        p->part = rf_aligned_alloc(64, (size_t)p->threads * sizeof *p->part);
        if (!p->part) return;   /* no counters: the stats stay zero */
    }
    memset(&p->st, 0, sizeof p->st);
    atomic_store(&p->sleeps, 0);
    p->last_exit = cpu_now();
    p->prof = on && p->part;
}

void rf_pool_stats_get(const rf_pool *p, rf_pool_stats *out) {
    memset(out, 0, sizeof *out);
    if (!p || !p->prof) return;
    *out = p->st;
    out->serial_s += cpu_now() - p->last_exit;
    out->sleeps = atomic_load(&p->sleeps);
}

static _Atomic int split_all;
void rf_threads_split_all(int on) { split_all = on != 0; }
int rf_threads_split_all_on(void) { return split_all; }

int rf_pool_default_threads(void) {
    const char *e = getenv("SLURM_CPUS_PER_TASK");
    int64_t v;
    if (!e || rf_parse_i64(NULL, e, strlen(e), 1, RF_POOL_MAX, "SLURM_CPUS_PER_TASK", &v) != RF_OK) return 1;
    return (int)v;
}
