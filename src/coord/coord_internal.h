/* Internal pieces of the coordinator shared by coord.c, proto.c, exec.c and
 * the coordinator benchmark (bench.c). Not a public interface. */
#ifndef RAFFLE_COORD_INTERNAL_H
#define RAFFLE_COORD_INTERNAL_H

#include <mpi.h>
#include "raffle/coord.h"

enum { COORD_TAG_HDR = 1, COORD_TAG_DATA = 2, COORD_TAG_STORED = 3 };

/* zstd level of checkpoint streams. A checkpoint's payload is already zstd
 * inside the .rckpt, so a second pass gains almost nothing; a fast negative
 * level keeps the stream near memcpy speed (bench coord measures it). */
#define COORD_ZSTD_LEVEL (-5)

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
 * every 20 ms while the child runs (status updates in the in-process mode). */
/* When *stop_flag becomes non-zero (may be NULL) or rf_now() passes deadline
 * (> 0), the child gets SIGUSR1 once: a training task saves resume.rckpt and
 * ends "preempted". */
rf_status coord_exec(rf_ctx *ctx, const char *exe, const char *dir, uint64_t mem, double time_limit, int threads,
                     volatile int *stop_flag, double deadline,
                     void (*tick)(void *ud), void *tick_ud, coord_exec_result *r);
/* Removes a directory tree without following symlinks. */
void      coord_rmtree(const char *path);

/* How a task child that died by signal sig is classified (rf_fail_class):
 * the memory limit hit (SIGKILL while the kernel counted an OOM kill:
 * oom_killed != 0), a crash (a fault the process raised itself: SEGV, BUS,
 * FPE, ILL, ABRT, TRAP, SYS), or a signal from outside (anything else). The
 * message describing it goes into msg. */
int       coord_signal_class(int sig, int oom_killed, char *msg, size_t n);

/* ---- coord.c: used by the benchmark and the unit tests ---------------- */
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
