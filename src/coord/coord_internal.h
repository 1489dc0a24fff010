/* Internal pieces of the coordinator shared by coord.c, proto.c, exec.c and
 * the coordinator benchmark (bench.c). Not a public interface. */
#ifndef RAFFLE_COORD_INTERNAL_H
#define RAFFLE_COORD_INTERNAL_H

#include <mpi.h>
#include "raffle/coord.h"

/* Tag 4 carries only heartbeats (BEAT, DROP): a separate tag, so a beat
 * never lands between a header and the payload that follows it. */
enum { COORD_TAG_HDR = 1, COORD_TAG_DATA = 2, COORD_TAG_STORED = 3, COORD_TAG_BEAT = 4 };

/* zstd level of checkpoint streams. A checkpoint's payload is already zstd
 * inside the .rckpt, so a second pass gains almost nothing; a fast negative
 * level keeps the stream near memcpy speed (bench coord measures it). */
#define COORD_ZSTD_LEVEL (-5)

/* ---- proto.c: heartbeats and silence (issue 24) --------------------------
 * Every rank of a sweep beats on tag 4 every timeout/4 seconds: rank 0 to
 * each worker it has not given up, a worker to rank 0. Any message from a
 * peer counts as hearing from it. Every wait on a peer below (headers,
 * payloads, chunks, both directions) is a request tested in a loop that
 * pumps the beats meanwhile, and gives up with RF_ERR_TIMEOUT once the peer
 * has been silent for the timeout: no send or receive blocks forever on a
 * dead, cut or stopped peer. One link per process (a sweep runs alone in
 * its process); with no link open (or timeout <= 0) waits never time out
 * and nothing beats: the behaviour before issue 24. */
rf_status coord_link_open(rf_ctx *ctx, MPI_Comm comm, int rank, int nranks, double timeout_s);
void      coord_link_close(void);
/* Receives the beats that arrived, sends the ones due. Cheap when nothing is
 * due: call it from every polling loop. */
void      coord_link_pump(void);
/* Seconds since anything came from peer (0 without a link). */
double    coord_link_silence(int peer);
double    coord_link_timeout(void);
/* Rank 0: peer is given up: no more beats to it, and a DROP on the beat tag
 * tells it so if it ever runs again (a stopped process continued). */
void      coord_link_drop(int peer);
int       coord_link_dropped(int peer);
/* Rank 0: asks worker `to` (on the host of the given-up rank `dead`, whose
 * process id is pid) to kill dead's task processes (REAP, on the beat tag:
 * a worker in the middle of a task drains it within 20 ms). */
void      coord_link_reap(int to, int dead, uint64_t pid);
/* on: nothing more is sent on the beat tag (BEAT, DROP, REAP) until
 * called with 0. Rank 0 while Open MPI's launcher ends the job: a send to
 * a dead peer's closed connection makes the TCP transport reconnect, fail
 * and block the sender in a help message the busy launcher does not read.
 * coord_link_heard: rf_now() when peer was last heard (0: no link). */
void      coord_link_hush(int on);
double    coord_link_heard(int peer);
/* A worker: 1 once rank 0 sent DROP (this rank was given up). */
int       coord_link_abandoned(void);
/* Polling without a core to spare: spin briefly (a reply is usually
 * microseconds away), then yield to other runnable processes (the task
 * children share the cores), then sleep with a growing period capped at 1 ms. */
void      coord_backoff(int *idle_spins);
/* Waits for a request to peer; RF_ERR_TIMEOUT naming what and the peer when
 * the peer stays silent for the link's timeout (the request is then left
 * pending: the caller gives the peer up). */
rf_status coord_wait(rf_ctx *ctx, MPI_Request *rq, MPI_Status *st, int peer, const char *what);

/* ---- proto.c: headers, byte messages, zstd checkpoint streams ---------- */
rf_status coord_send_hdr(rf_ctx *ctx, MPI_Comm comm, int dest, const rf_coord_msg *m);
/* Blocking receive of a header from src (MPI_ANY_SOURCE allowed); *from gets the sender. */
rf_status coord_recv_hdr(rf_ctx *ctx, MPI_Comm comm, int src, rf_coord_msg *m, int *from);
rf_status coord_send_bytes(rf_ctx *ctx, MPI_Comm comm, int dest, const void *data, size_t n);
rf_status coord_recv_bytes(rf_ctx *ctx, MPI_Comm comm, int src, void *data, size_t n);

/* Number of chunks a stream of raw bytes is cut into. */
uint64_t  coord_chunks(uint64_t raw);
/* Sends raw bytes (from buf, or read from fd when buf is NULL) as zstd
 * frames of up to RF_COORD_CHUNK raw bytes each (tag 2); a chunk zstd cannot
 * shrink is sent as is on tag 3. level: zstd level. */
rf_status coord_send_stream(rf_ctx *ctx, MPI_Comm comm, int dest, const unsigned char *buf, int fd,
                            uint64_t raw, int level);
typedef rf_status (*coord_sink)(rf_ctx *ctx, void *ud, const void *data, size_t n);
/* Receives a stream sent by coord_send_stream and hands each decompressed
 * chunk to sink (which may be NULL to discard). */
rf_status coord_recv_stream(rf_ctx *ctx, MPI_Comm comm, int src, uint64_t raw, uint64_t nchunks,
                            coord_sink sink, void *ud);

/* A result blob: three length-prefixed sections (meta JSON, metrics.json
 * bytes, log bytes). pack returns a new buffer (rf_free). */
rf_status coord_blob_pack(rf_ctx *ctx, const char *meta, size_t mn, const unsigned char *metrics, size_t xn,
                          const unsigned char *log, size_t ln, unsigned char **out, size_t *n);
/* Points the sections into blob (borrowed); error if the lengths lie. */
rf_status coord_blob_unpack(rf_ctx *ctx, const unsigned char *blob, size_t n, const unsigned char *sec[3], size_t len[3]);

/* ---- exec.c: one task attempt in a child process ------------------------ */
typedef struct coord_exec_result {
    int    cls;                 /* rf_fail_class */
    char   message[RF_ERR_MAX];
    double seconds;
} coord_exec_result;
/* Runs `exe run dir` (with `--threads N` for threads > 0: the job's
 * engine.threads) with RLIMIT_AS = mem (0: none) and a wall-clock limit;
 * its stdout/stderr go to dir/log.txt. tick (may be NULL) is called about
 * every 20 ms while the child runs (status updates in the in-process mode,
 * heartbeats on a worker); when it returns non-zero the child is killed and
 * the attempt ends "killed" (a worker cut off from rank 0). */
/* When *stop_flag becomes non-zero (may be NULL) or rf_now() passes deadline
 * (> 0), the child gets SIGUSR1 once: a training task saves resume.rckpt and
 * ends "preempted". */
rf_status coord_exec(rf_ctx *ctx, const char *exe, const char *dir, uint64_t mem, double time_limit, int threads,
                     volatile int *stop_flag, double deadline,
                     int (*tick)(void *ud), void *tick_ud, coord_exec_result *r);
/* Kills (SIGKILL, each with its process group) the children of process
 * parent, when parent is a raffle process like this one (its /proc comm is
 * this process's): the task children of a rank given up on this host. The
 * rank itself is left alone: Open MPI 4.1 ends the whole job when one of
 * its processes dies. Returns how many were killed. */
int       coord_reap_children(long parent);
/* Removes a directory tree without following symlinks. */
void      coord_rmtree(const char *path);

/* How a task child that died by signal sig is classified (rf_fail_class):
 * the memory limit hit (SIGKILL while the kernel counted an OOM kill:
 * oom_killed != 0), a crash (a fault the process raised itself: SEGV, BUS,
 * FPE, ILL, ABRT, TRAP, SYS), or a signal from outside (anything else). The
 * message describing it goes into msg. */
int       coord_signal_class(int sig, int oom_killed, char *msg, size_t n);

/* ---- coord.c: used by the benchmark and the unit tests ---------------- */
/* The scheduler alone at scale (issue 24): `workers` fake workers fed by an
 * in-process transport (a FIFO of busy workers; every task takes as long)
 * run the whole job through the coordinator's own pick / complete (critical
 * path heap, per-rank locality heaps, DAG release). decisions: tasks handed
 * out; queued: ready at the start. */
typedef struct coord_sim_result {
    int64_t decisions, queued, done;
    double  seconds;
    size_t  sched_bytes;
} coord_sim_result;
rf_status coord_sim(rf_ctx *ctx, const rf_job *job, int workers, coord_sim_result *out);
/* Bytes of scheduler state for a job of n tasks and e parent edges. */
size_t    coord_sched_bytes(const rf_job *job);

/* Walltime scheduling (issue 19, defect 2). The estimate of what is left of
 * a task: its cost (job.h, seconds on one core) times scale (real / estimated
 * time of the tasks finished so far) times the share its resume point has
 * not done yet (progress in [0, 1]). */
double    coord_estimate(double cost, double scale, double progress);
typedef enum coord_wt { COORD_WT_START = 0, COORD_WT_WAIT = 1, COORD_WT_REFUSE = 2 } coord_wt;
/* Whether a task with estimate est (s) may start with `left` seconds to the
 * deadline in an allocation of `allocation` seconds: START when it fits, and
 * always when it is resumable (it saves its state at the deadline); else
 * WAIT for the next allocation when one would hold it, REFUSE when even a
 * whole allocation is too short. */
coord_wt  coord_walltime_rule(double est, double left, double allocation, int resumable);

#endif
