/* raffle coord: runs a job's task DAG, on MPI ranks or in-process.
 *
 * Rank 0 is the coordinator: it owns the scheduler and the results store
 * (it alone writes it). Ranks 1..N-1 are workers: they ask for work when
 * idle, run each task in a child process (`raffle run DIR`: fork + exec of
 * the raffle binary, no MPI in the child) under memory (RLIMIT_AS) and time
 * limits, and send back the metrics, the log and the checkpoint (zstd,
 * chunked). With one rank, or without mpirun, the same code runs the
 * sweep in-process, still one child process per task.
 *
 * Message protocol (version RF_COORD_PROTO_VERSION; docs/jobs.md has the
 * table): every message starts with a 48-byte little-endian header
 *   u32 magic "RFCP" | u16 version | u16 type | u32 task | u32 attempt |
 *   u32 arg | u32 reserved | u64 n1 | u64 n2 | u64 n3
 * on tag 1; payloads follow on tag 2 (zstd chunks, blobs) or 3 (stored
 * chunks) from the same sender, in order.
 *   READY  (W->C)  idle, wants a task
 *   TASK   (C->W)  task index, attempt; arg = parent checkpoints following
 *   PARENT (C->W)  task = parent index, n2 = raw bytes, n3 = chunks; chunks follow
 *   RESULT (W->C)  arg = failure class, n1 = blob bytes, n2 = checkpoint raw
 *                  bytes (0: none), n3 = chunks; the blob then the chunks follow
 *   STOP   (C->W)  no more work: leave
 *   BEAT   (both)  on tag 4: alive (issue 24: heartbeats)
 *   DROP   (C->W)  on tag 4: rank 0 gave this rank up (silent past the
 *                  timeout): kill the task and leave
 *   REAP   (C->W)  on tag 4: n1 = the process id of a rank given up on this
 *                  worker's host (protocol 3): kill that rank's task
 *                  processes (its children), which may still be running
 * Both sides parse the same job (rank 0 broadcasts its text), so a task is
 * named by its index and per-task coordinator state is a few integers. */
#ifndef RAFFLE_COORD_H
#define RAFFLE_COORD_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/job.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_COORD_PROTO_VERSION 3
#define RF_COORD_MAGIC 0x50434652u   /* "RFCP" little-endian */
#define RF_COORD_HDR_BYTES 48
#define RF_COORD_CHUNK (4u << 20)    /* raw bytes per checkpoint chunk */

typedef enum rf_coord_msg_type {    /* on the wire: never renumber */
    RF_MSG_READY = 1, RF_MSG_TASK = 2, RF_MSG_PARENT = 3, RF_MSG_RESULT = 4, RF_MSG_STOP = 5,
    RF_MSG_BEAT = 6, RF_MSG_DROP = 7, RF_MSG_REAP = 8,
    RF_MSG_TYPE_COUNT_
} rf_coord_msg_type;

typedef struct rf_coord_msg {
    uint16_t version, type;
    uint32_t task, attempt, arg;
    uint64_t n1, n2, n3;
} rf_coord_msg;

void      rf_coord_msg_encode(const rf_coord_msg *m, unsigned char out[RF_COORD_HDR_BYTES]);
/* Decodes and checks a header (magic, version, type, sizes against limits). */
rf_status rf_coord_msg_decode(rf_ctx *ctx, const unsigned char *buf, size_t n, rf_coord_msg *m);

/* Failure classes of a task attempt (ledger "class"). Stable values: on the wire. */
typedef enum rf_fail_class {
    RF_FAIL_NONE = 0, RF_FAIL_ERROR = 1, RF_FAIL_CRASH = 2, RF_FAIL_OOM = 3, RF_FAIL_TIMEOUT = 4,
    RF_FAIL_NAN = 5, RF_FAIL_PREEMPTED = 6,
    RF_FAIL_KILLED = 7,          /* ended by a signal from outside (kill, a node agent), not its own fault */
    RF_FAIL_COUNT_
} rf_fail_class;
/* "", "error", "crash", "oom", "timeout", "nan", "preempted", "killed" */
const char *rf_fail_class_name(int c);
/* Crashes, timeouts and kills from outside may be transient (a node fault, a
 * slow neighbour, an operator): retried. An attempt that hit the memory
 * limit ("oom") would hit it again: not retried. */
int         rf_fail_class_retryable(int c);

struct rf_sweep_progress;

typedef struct rf_sweep_opts {
    const char   *store_root;      /* default "results" */
    const char   *exe;             /* binary run as `EXE run DIR`; default /proc/self/exe */
    const char   *work_dir;        /* scratch root; default ${TMPDIR:-/tmp}/raffle-<uid> */
    int           fail_fast;       /* stop handing out tasks after the first final failure */
    int           retries;         /* < 0: the job's limits.retries */
    double        time_limit_s;    /* <= 0: the job's limits.time_s */
    uint64_t      mem_limit;       /* 0: the job's limits.memory_mb */
    double        status_every_s;  /* status.json / progress period; default 2 */
    int           quiet;           /* no progress lines */
    int           inproc_noop;     /* benchmark: workers answer tasks at once, no child, no store */
    int           keep_work;       /* keep the scratch directories */
    /* Preemption (Slurm walltime): when *stop_flag becomes non-zero, or
     * rf_now() passes deadline (> 0), or a task's estimated cost would not end
     * before it, no new task is started; running ones finish. */
    volatile int *stop_flag;
    double        deadline;
    /* Running tasks are told to stop (SIGUSR1 to the child, whose `raffle
     * run` sets the task's stop_flag) when *stop_flag is set or the deadline
     * passes; a kind that trains then writes DIR/resume.rckpt and ends as
     * "preempted". Every rank must get the same stop_flag/deadline setup
     * (the CLI installs the signal handlers on all ranks). resume_every_s
     * (> 0) also makes training tasks save resume.rckpt periodically, so a
     * crash or time-limit kill loses at most that much training. */
    double        resume_every_s;
    /* Rank 0: called after each store file is written (the remote mirror
     * queues it) and at every status period (the mirror flushes). May be NULL. */
    void        (*on_write)(void *ud, const char *rel);
    void        (*on_tick)(void *ud);
    void         *hook_ud;
    /* Run metadata (borrowed) merged into the ledger's "sweep" events next to
     * host, pid and ranks: the HPC front-end puts the Slurm job id, array
     * task id, node list and restart count here. May be NULL. */
    const cJSON  *env;
    void        (*log)(void *ud, const char *line);  /* progress lines (stderr in the CLI) */
    void         *log_ud;
    /* Rank 0, at every status period and once at the end: the counts as
     * numbers (the CLI draws one progress line updated in place on a
     * terminal). When set, the periodic progress line is not sent to log;
     * events (failures, stops) still are. May be NULL. */
    void        (*on_progress)(void *ud, const struct rf_sweep_progress *p);
    void         *progress_ud;
    /* Readable task names in log lines (raffle/job.h; borrowed). NULL: ids. */
    const rf_job_labels *labels;
    /* Heartbeats (issue 24, docs/hpc.md "Node loss"): with more than one
     * rank, every rank beats on the MPI channel every heartbeat_s / 4 s. Rank
     * 0 gives up a worker it has not heard from for heartbeat_s seconds
     * (node lost, link cut, process stopped): its running task is recorded
     * "lost" (not failed: no retry counted) and queued again for the other
     * workers, and the sweep goes on without it while any worker is left.
     * A worker that has not heard from rank 0 for heartbeat_s kills its task
     * and leaves (rf_sweep_run returns RF_ERR_TIMEOUT with res->orphaned).
     * Rank 0's value is the one used (broadcast); it goes into the ledger's
     * "sweep" line. <= 0: no heartbeats, waits never time out. Default 5. */
    double        heartbeat_s;
    /* A worker's watchdog thread, for a main thread stuck where it cannot
     * notice (a blocking system call): called once with a one-line message
     * when rank 0 has been silent for 1.5 * heartbeat_s or has given this
     * rank up; silent: 1 when rank 0 went silent (unreachable: a partition,
     * a dead or stopped rank 0), 0 when it gave this rank up (it is alive
     * and ends the job itself). The CLI prints the line and ends the process
     * (its task child dies with it). May be NULL. */
    void        (*on_orphan)(void *ud, const char *line, int silent);
    void         *orphan_ud;
    /* Called once on every rank of an MPI sweep when the start-up
     * collectives (host names, heartbeat timeout) are over and the heartbeat
     * link is open: from then on a silent rank is noticed by the heartbeat.
     * The CLI's start-up watchdog stops there. May be NULL. */
    void        (*on_started)(void *ud);
    /* Direct writes (issue 24, docs/hpc.md): a worker that sees the store
     * (a shared file system: NFS, Lustre, GPFS) writes its checkpoints into
     * it itself with the store's atomic protocol and reads its parents
     * there; rank 0 verifies size and CRC32C before the ledger line. Which
     * workers see it is probed at the start (a file rank 0 writes into the
     * store, looked for by each worker). -1 auto (default): the workers that
     * see it write directly, the others send through rank 0; 0: every
     * checkpoint through rank 0 (the chunked gather); 1: direct, an error
     * when some worker does not see the store. */
    int           direct_writes;
    /* Rank 0, under Open MPI's mpirun: set (by the CLI's SIGCONT/SIGTERM
     * handler) when the launcher starts ending every rank of the job (it
     * does so when any process of the job dies: SIGCONT, SIGTERM a second
     * later, SIGKILL a second after that; the other hosts' ranks get theirs
     * only after rank 0's). Rank 0 then sends nothing more (a send to a
     * dead peer makes Open MPI's TCP transport reconnect, fail, and block
     * the sender in a help message mpirun does not read while it kills) and
     * listens: a worker not heard from within ending_probe_s of the signal
     * (workers beat every heartbeat_s / 4) is dead: its task and every other
     * running attempt (the launcher kills them all) are recorded "lost" now,
     * naming the dead rank's host, and the sweep returns at once with
     * res->launcher_ended. When every worker is heard (the user signalled
     * mpirun) nothing changes: the signal stops the sweep as stop_flag
     * does. May be NULL. */
    volatile int *ending_flag;
    double        ending_probe_s;  /* <= 0 (default): heartbeat_s / 4 + 0.25 s, at most 1.4 s */
} rf_sweep_opts;

typedef struct rf_sweep_progress {
    int     total, done, reused, running, failed, skipped, queued;
    double  elapsed_s, eta_s;   /* eta_s: the cost model's estimate of what is left */
    int     final;              /* the call at the sweep's end */
    int32_t oldest;             /* the task running longest (index into the job), -1: none */
    double  oldest_s;           /* for how long */
} rf_sweep_progress;
void rf_sweep_opts_default(rf_sweep_opts *o);

typedef struct rf_sweep_result {
    int      total, done, reused, failed, skipped, pending, retried;
    int      progressed;           /* this run: tasks finished + resume points saved (0: no progress at all) */
    double   seconds;
    uint64_t gathered_bytes;       /* checkpoint bytes moved to rank 0 */
    size_t   sched_bytes;          /* coordinator scheduling state, bytes */
    /* heartbeats (rank 0): task attempts recorded "lost", workers given up,
     * and their hosts ("h2, h3"); a worker: orphaned = 1 when it left
     * because rank 0 went silent (unreachable), 2 because rank 0 gave it up */
    int      lost, lost_ranks, orphaned;
    char     lost_hosts[256];
    int      launcher_ended;       /* rank 0: the launcher is ending the job because a rank died (ending_flag) */
    int      direct_ranks;         /* workers that wrote into the store themselves */
    uint64_t direct_bytes;         /* checkpoint bytes they wrote (not through rank 0) */
} rf_sweep_result;

/* Runs the sweep. If MPI is initialised with more than one rank, every rank
 * must call this with the same job: rank 0 coordinates, the others work.
 * Otherwise runs in-process. Returns RF_OK when the sweep ran to its end
 * (tasks may have failed: see res); an error when the store or MPI failed.
 * With more than one rank an error return is immediate (no barrier): other
 * ranks may be blocked on this one, e.g. a worker sending a result rank 0
 * will never receive, so the caller must report the error and end the whole
 * job (MPI_Abort). A second sweep of the same store fails with RF_ERR_BUSY
 * (rf_store_lock). */
rf_status rf_sweep_run(rf_ctx *ctx, const rf_job *job, const rf_sweep_opts *opts, rf_sweep_result *res);

/* The child side of a task (`raffle run DIR`) is the task module's
 * rf_task_run_dir (raffle/task.h): the coordinator only starts it. */

/* ---- Slurm (src/coord/slurm.c, docs/hpc.md) ------------------------------- */
/* A new object of the job's metadata (job_id, array_job_id, array_task_id,
 * nodelist, partition, restart_count, ntasks, nodes) from the environment,
 * or *out = NULL outside a Slurm job. Free with cJSON_Delete. */
rf_status rf_slurm_env(rf_ctx *ctx, cJSON **out);
/* SLURM_NTASKS as a positive number, 0 when unset or not a number. */
int       rf_slurm_ntasks(void);
/* The job's end as Unix time: SLURM_JOB_END_TIME, else `scontrol show job
 * $SLURM_JOB_ID` (Slurm 22.05 does not export the variable). 0 when not in a
 * job or the job has no time limit. */
rf_status rf_slurm_end_time(rf_ctx *ctx, double *end_epoch);
/* Parses "EndTime=YYYY-MM-DDTHH:MM:SS" (local time) out of scontrol's
 * output; "Unknown" gives 0. */
rf_status rf_slurm_parse_end_time(rf_ctx *ctx, const char *text, double *end_epoch);

/* ---- the coordinator's benchmark (src/coord/bench.c) ----------------------
 * Dispatch rate of the scheduler and protocol on no-op tasks, checkpoint
 * gather bandwidth against raw MPI, coordinator memory per queued task. */
typedef struct rf_bench_coord_opts {
    int tasks;   /* no-op tasks of the dispatch measurement */
    int mb;      /* MiB gathered */
    int reps;    /* repetitions, best kept */
    int level;   /* zstd level of the stream */
} rf_bench_coord_opts;
void rf_bench_coord_opts_default(rf_bench_coord_opts *o, int quick);
/* Runs the benchmark on every rank of MPI_COMM_WORLD (2 or 3 ranks;
 * initialises MPI when nobody has, and then finalises it on success).
 * *rank gets this rank; on rank 0 *result gets a new object (cJSON_Delete),
 * elsewhere NULL. An error on any rank: the caller aborts the MPI job. */
rf_status rf_bench_coord(rf_ctx *ctx, const rf_bench_coord_opts *o, int *rank, cJSON **result);

#ifdef __cplusplus
}
#endif
#endif
