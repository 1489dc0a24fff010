/* raffle thread pool: a fixed set of worker threads that run one function
 * at a time, each thread with its index, for work split within one task
 * (the dense GEMM's output tiles: include/raffle/gemm.h).
 *
 * The pool decides nothing about the split: rf_pool_run calls
 * fn(arg, t, n) once for every t in [0, n) and returns when all have
 * returned, and fn divides its work from (t, n) alone (a static partition).
 * So which thread computed what depends only on n, never on timing, and a
 * function whose parts write disjoint outputs gives the same bytes for any n.
 *
 * One pool belongs to one caller thread: rf_pool_run is not re-entrant and
 * must not be called from two threads at once (one pool per task, like one
 * rf_ctx per thread). Workers spin briefly after a job (back-to-back calls,
 * as in a training step, then start in well under a microsecond) and then
 * sleep on a condition variable, so an idle pool costs no CPU. */
#ifndef RAFFLE_THREADS_H
#define RAFFLE_THREADS_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most threads one pool may have (workers + the caller). */
#define RF_POOL_MAX 256

typedef struct rf_pool rf_pool;

/* Returns a new pool of `threads` threads in *out: the calling thread (which
 * runs part 0 of every job) and threads - 1 workers started here.
 * threads in [1, RF_POOL_MAX], else RF_ERR_INVALID; RF_ERR_NOMEM or
 * RF_ERR_INTERNAL (pthread_create failed: the workers already started are
 * joined, nothing leaks). Free with rf_pool_free. */
rf_status rf_pool_create(rf_ctx *ctx, int threads, rf_pool **out);
/* Stops and joins the workers; accepts NULL. Not while a job runs. */
void rf_pool_free(rf_pool *p);
/* Most functions rf_pool_on_worker_exit holds. */
#define RF_POOL_MAX_EXIT_FNS 8
/* Registers fn to run on every pool worker thread just before it exits
 * (rf_pool_free, or a failed rf_pool_create), in registration order, so
 * per-thread scratch grown on a worker (the kernels' workspace, the GEMM
 * handle, the layers' packs) is freed with its thread instead of leaking.
 * Process-wide and thread-safe; registering a function again is a no-op.
 * RF_ERR_INVALID for NULL, RF_ERR_NOMEM when RF_POOL_MAX_EXIT_FNS
 * different functions are already held. */
rf_status rf_pool_on_worker_exit(void (*fn)(void));
/* Threads of the pool, caller included (1 for NULL). */
int rf_pool_threads(const rf_pool *p);

/* One part of a job: t in [0, n). */
typedef void (*rf_pool_fn)(void *arg, int t, int n);
/* Runs fn(arg, t, n) for t = 0 .. n-1, part 0 on the calling thread, the
 * others on workers 1 .. n-1, and returns when every part has returned.
 * n is clamped to [1, rf_pool_threads(p)]; p may be NULL (then fn(arg, 0, 1)
 * runs here). arg is borrowed for the duration of the call. */
void rf_pool_run(rf_pool *p, int n, rf_pool_fn fn, void *arg);

/* Tests: on = 1 splits all work over threads however small (the products'
 * and the layers' minimum work per thread, rf_nn_parts, and the batcher's
 * samples per thread become 1), so small models exercise every split that
 * large ones make; 0 restores the thresholds. Process-wide. Changes speed
 * only, never a result. */
void rf_threads_split_all(int on);
int  rf_threads_split_all_on(void);

/* Profile counters (bench/train/probe threads): where a step's time goes
 * when it runs on more than one thread. All times are thread CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so other users of a shared machine, which take
 * cores away from the threads, do not count: serial_s + span_s is the
 * step's time on a machine with a core for every thread (less the start
 * and join of the jobs, which `jobs` counts). */
typedef struct rf_pool_stats {
    long long jobs;   /* rf_pool_run calls that ran on more than one thread */
    double serial_s;  /* the caller's CPU time between those calls */
    double span_s;    /* the sum over those jobs of their longest part */
    double work_s;    /* the sum over those jobs of all their parts */
    double wait_s;    /* the caller's CPU time waiting for the workers */
    long long sleeps; /* times a thread's spin ran out and it slept */
} rf_pool_stats;
/* Turns the counters on (zeroed; serial time counts from here) or off.
 * While on, every part of a job reads the thread CPU clock twice (about a
 * microsecond a job): a profiling mode, off by default. Not during a job;
 * p may be NULL (then nothing happens). */
void rf_pool_profile(rf_pool *p, int on);
/* The counters so far (all zero for NULL or when never turned on); the
 * serial time runs up to this call. */
void rf_pool_stats_get(const rf_pool *p, rf_pool_stats *out);

/* The default thread count for a task: SLURM_CPUS_PER_TASK when it is set
 * to a number in [1, RF_POOL_MAX] (a Slurm allocation), else 1. The caller
 * records the value it uses with the task's results. */
int rf_pool_default_threads(void);

#ifdef __cplusplus
}
#endif

#endif
