/* raffle sweep JOB.json: runs a whole study. Under mpirun (or srun) rank 0
 * coordinates and the other ranks work; alone it runs in-process. Rank 0
 * reads the job file and broadcasts it so every rank expands the same DAG.
 *
 * HPC (docs/hpc.md): under Slurm the MPI size must match SLURM_NTASKS; the
 * job's end time minus --walltime-margin is the deadline after which no
 * task starts and running ones save resumable state; SIGUSR1/SIGTERM do the
 * same at once. --store http(s)://... mirrors the local store to a WebDAV
 * server from rank 0, spooling while the server is down.
 *
 * Exit status: 0 every task done, 1 some task failed or was skipped (or the
 * sweep itself failed), 75 stopped early (signal or walltime) with tasks
 * left to run and none failed: run the same command again, 76 ranks were
 * lost (heartbeat silence: a node died, a link was cut, a worker hung; or,
 * under mpirun, a rank died and Open MPI is ending the job; the line before
 * says which hosts; run the same command again for what is left; mpirun
 * passes it on, except after a death, 137, or when rank 0's guard had to
 * kill it after a partition, 137 too), 69 start-up did not finish within --startup-timeout (a rank never
 * showed up: its host unreachable, its process stopped or dead before it
 * joined; nothing was written), 2 usage. */
#include "cli/cli.h"
#include "raffle/coord.h"
#include "raffle/job.h"
#include "raffle/net.h"
#include "raffle/report.h"
#include "raffle/store.h"

#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_STOPPED = 75,     /* EX_TEMPFAIL: rerun to continue */
       EXIT_LOST = 76,        /* ranks lost (issue 24): rerun for what is left */
       EXIT_STARTUP = 69 };   /* EX_UNAVAILABLE: not every rank joined in time */

/* A worker's watchdog found rank 0 silent (or was given up by it) while the
 * main thread could not act: say so and leave now; the task child dies
 * with this process. No MPI call: rank 0 is unreachable, an abort could
 * block on it. */
/* MPI_Finalize waits for every rank (a PMIx fence): a worker that stops or
 * dies after the sweep's final barrier would hold rank 0 there forever. An
 * alarm ends rank 0 with its exit status instead (everything is written by
 * then; the workers are already waiting in MPI_Finalize when rank 0 gets
 * there, so a healthy fence takes milliseconds). */
static volatile sig_atomic_t finalize_code;
static void on_finalize_alarm(int sig) { (void)sig; _exit(finalize_code); }
static void finalize_bounded(double heartbeat, int code) {
    if (heartbeat > 0) {
        finalize_code = code;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_finalize_alarm;
        sigaction(SIGALRM, &sa, NULL);
        alarm((unsigned)(3 * heartbeat) + 2);
    }
    MPI_Finalize();
    alarm(0);
}

/* A worker that lost rank 0 to silence (a partition, rank 0's node gone or
 * stopped) also ends the Open MPI daemon that started it: under mpirun its
 * parent is orted (prted with PRRTE), whose only link to mpirun runs over
 * the same dead network and which would otherwise wait for TCP to give up
 * on it (net.ipv4.tcp_retries2: about 15 minutes by default) before it
 * ends. SIGTERM makes the daemon kill its other local ranks (cut off just
 * the same; a stopped one too, SIGKILL after a second) and exit at once.
 * Any other parent (slurmstepd under srun, mpirun itself on the launch
 * host, a shell) is left alone. Not when rank 0 gave this rank up: rank 0
 * is alive then and ends the job through the launcher. Signal-safe (the
 * watchdog calls it before _exit). */
/* 1 when process pid's command name (/proc/PID/comm) is one of names
 * (NULL-terminated). Signal-safe: open, read, close. */
static int proc_named(pid_t pid, const char *const *names) {
    char path[64], comm[32];
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, comm, sizeof comm - 1);
    close(fd);
    if (n <= 0) return 0;
    comm[n] = '\0';
    if (comm[n - 1] == '\n') comm[n - 1] = '\0';
    for (; *names; names++) if (strcmp(comm, *names) == 0) return 1;
    return 0;
}
static const char *const OMPI_DAEMONS[] = {"orted", "prted", NULL};
static const char *const OMPI_LAUNCHERS[] = {"mpirun", "mpiexec", "orterun", NULL};
static const char *const OMPI_ANY[] = {"orted", "prted", "mpirun", "mpiexec", "orterun", NULL};

static void end_local_daemon(void) {
    pid_t pp = getppid();
    if (proc_named(pp, OMPI_DAEMONS)) kill(pp, SIGTERM);
}

static void on_orphan(void *ud, const char *line, int silent) {
    (void)ud;
    fprintf(stderr, "raffle sweep: %s\n", line);
    fflush(stderr);
    if (silent) end_local_daemon();
    _exit(EXIT_LOST);
}

/* ---- start-up (issue 24) ------------------------------------------------------
 * Until the heartbeat link is open every rank sits in blocking collectives:
 * MPI_Init (a fence over all ranks), the job's broadcast, the host gather.
 * A rank that never joins (its host unreachable, its process stopped or
 * dead before MPI_Init) would hold all the others there forever. A
 * watchdog thread ends the process with one line and EXIT_STARTUP once a
 * phase of the start-up has taken --startup-timeout seconds; the phase
 * that fetches the job's inputs (downloads of any length, then an
 * all-reduce) is not timed. Right after MPI_Init rank 0 waits (polling,
 * within the same deadline) for a hello from every worker, so a rank that
 * got through MPI_Init but no further is named. */
enum { STARTUP_TAG = 9 };
static _Atomic double su_deadline;            /* CLOCK_MONOTONIC seconds; 0: not timed; < 0: over */
static _Atomic(const char *) su_phase = "MPI_Init";
static atomic_int su_rank = -1;
static double su_timeout;

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void startup_fail(const char *phase) {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    int r = atomic_load(&su_rank);
    char who[32] = "a rank";
    if (r >= 0) snprintf(who, sizeof who, "rank %d", r);
    fprintf(stderr, "raffle sweep: %s on %s: start-up not finished after %g s (%s): a rank did not start or hung, or its "
                    "host is unreachable; ending (exit %d)\n", who, host, su_timeout, phase, EXIT_STARTUP);
    fflush(stderr);
    end_local_daemon();
    _exit(EXIT_STARTUP);
}

static void *startup_main(void *ud) {
    (void)ud;
    for (;;) {
        double d = atomic_load(&su_deadline);
        if (d < 0) return NULL;
        if (d > 0 && mono_now() > d) startup_fail(atomic_load(&su_phase));
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* phase: what the ranks are waiting for; NULL: stop timing (until armed again) */
static void startup_arm(const char *phase) {
    if (phase) atomic_store(&su_phase, phase);
    atomic_store(&su_deadline, phase && su_timeout > 0 ? mono_now() + su_timeout : 0);
}
static void startup_over(void *ud) { (void)ud; atomic_store(&su_deadline, -1); }

/* Every worker sends rank 0 a hello; rank 0 polls for all of them until the
 * start-up deadline and names those that never came. */
static void startup_handshake(int rank, int size) {
    int one = 1;
    if (rank > 0) { MPI_Send(&one, 1, MPI_INT, 0, STARTUP_TAG, MPI_COMM_WORLD); return; }
    int n = size - 1, left = n;
    int *in = rf_malloc((size_t)n * sizeof *in);
    MPI_Request *rq = rf_malloc((size_t)n * sizeof *rq);
    int *idx = rf_malloc((size_t)n * sizeof *idx);
    if (!in || !rq || !idx) { rf_free(in); rf_free(rq); rf_free(idx); return; }   /* the collectives after it still wait, timed */
    for (int w = 1; w < size; w++) MPI_Irecv(&in[w - 1], 1, MPI_INT, w, STARTUP_TAG, MPI_COMM_WORLD, &rq[w - 1]);
    double end = su_timeout > 0 ? mono_now() + su_timeout : 0;
    atomic_store(&su_deadline, 0);   /* this loop keeps the time itself */
    while (left > 0) {
        int got = 0;
        MPI_Testsome(n, rq, &got, idx, MPI_STATUSES_IGNORE);
        if (got > 0 && got != MPI_UNDEFINED) { left -= got; continue; }
        if (end > 0 && mono_now() > end) {
            char why[300];
            int k = snprintf(why, sizeof why, "%d of %d worker rank(s) never said hello:", left, n);
            for (int w = 0, shown = 0; w < n && k < (int)sizeof why - 16; w++)
                if (rq[w] != MPI_REQUEST_NULL && shown++ < 8) k += snprintf(why + k, sizeof why - (size_t)k, " %d", w + 1);
            startup_fail(why);
        }
        struct timespec ts = {0, 2 * 1000000};
        nanosleep(&ts, NULL);
    }
    rf_free(in); rf_free(rq); rf_free(idx);
}

/* ---- pipelines: rounds -------------------------------------------------------
 * A `best` stage (docs/jobs.md) expands once the tasks it selects among have
 * ended, so a sweep runs in rounds: after a round, rank 0 reads what the
 * store holds (rf_report_job_text, recording every fact it read) and sends
 * those facts to the other ranks, which expand the same job text from them
 * (rf_job_fact_json): every rank holds the same DAG again, now with the
 * selected stages, and the next round runs what is new (the rest is reused
 * from the store like any rerun). *next: the new job, NULL when nothing more
 * expands (on every rank). Collective; an error on rank 0 is an error on
 * every rank. */
static rf_status next_round(rf_ctx *ctx, const char *text, size_t n, const char *hint, const char *root,
                            const rf_job *job, int rank, int size, rf_job **next) {
    *next = NULL;
    char *ftext = NULL;
    long flen = -1;
    rf_job *nj = NULL;
    rf_status s = RF_OK;
    if (rank == 0) {
        rf_store *st = NULL;
        cJSON *log = cJSON_CreateObject();
        s = log ? rf_store_open(ctx, root, job->name, 0, &st) : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        if (!s) s = rf_report_job_text(ctx, st, text, n, hint, job->inputs_json, log, &nj);
        rf_store_close(st);
        if (!s && (ftext = cJSON_PrintUnformatted(log)) != NULL) flen = (long)strlen(ftext);
        else if (!s) s = rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        cJSON_Delete(log);
    }
    if (size > 1) MPI_Bcast(&flen, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    if (flen < 0) {
        rf_job_free(nj);
        return rank == 0 ? s : rf_error(ctx, RF_ERR_IO, "rank 0 could not read the store's results for the next round");
    }
    if (rank != 0) {
        ftext = malloc((size_t)flen + 1);
        if (!ftext) MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (size > 1) MPI_Bcast(ftext, (int)flen, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank != 0) {
        ftext[flen] = '\0';
        cJSON *facts = cJSON_Parse(ftext);
        rf_job_facts f = {rf_job_fact_json, facts};
        s = facts ? rf_job_parse_facts(ctx, text, n, hint, job->inputs_json, &f, &nj) : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
        cJSON_Delete(facts);
        free(ftext);
    } else {
        cJSON_free(ftext);
    }
    if (s) return s;
    if (nj->n_tasks == job->n_tasks) { rf_job_free(nj); nj = NULL; }
    *next = nj;
    return RF_OK;
}

static volatile int stop_requested;
static void on_stop_signal(int sig) { (void)sig; stop_requested = 1; }

/* ---- the launcher ends the job (rank 0, issue 24) ------------------------------
 * When any process of the job dies, Open MPI 4.1 ends every rank: its daemon
 * (mpirun on the launch host, orted elsewhere) sends each rank SIGCONT, then
 * SIGTERM a second later, then SIGKILL a second after that (odls'
 * kill_local_procs, odls_base_sigkill_timeout = 1). Rank 0 cannot tell that
 * SIGTERM from a user's by the signal alone, so a SIGCONT or SIGTERM that
 * its parent sent, when the parent is Open MPI's, sets launcher_ending: the
 * coordinator then pings every worker and records the dead ones' tasks (and
 * every other running attempt, which the SIGKILL ends) "lost" within a
 * second (rf_sweep_opts.ending_flag). A signal from anyone else (kill,
 * Slurm's slurmstepd) is a stop request as before; so is the launcher's own
 * when every worker answers (the user signalled mpirun). */
static volatile int launcher_ending;
static pid_t launcher_pid;   /* rank 0's parent, when it is Open MPI's mpirun or orted; else 0 */
static void on_launcher_signal(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (launcher_pid > 0 && si && si->si_code == SI_USER && si->si_pid == launcher_pid) launcher_ending = 1;
    if (sig == SIGTERM) stop_requested = 1;
}

/* Rank 0 ends a job that lost ranks with MPI_Abort; mpirun then tells every
 * daemon to kill its ranks and waits for each to answer. A daemon on a host
 * cut off (a partition, a pulled cable) never answers, and mpirun waits
 * until its host's TCP gives up on the connection (net.ipv4.tcp_retries2:
 * about 15 minutes by default; the OOB keepalive does not run while data is
 * queued). So before the abort rank 0 leaves a guard process behind: if
 * mpirun is still there after grace seconds, the guard kills it (SIGKILL:
 * Open MPI 4.1.4's own forced exit, a SIGTERM during an abort, crashes in
 * PMIx_Finalize with SIGSEGV) and removes the session directory mpirun
 * would have removed (OMPI_MCA_orte_jobfam_session_dir, ".../pid.<mpirun's
 * pid>"). The daemons of the hosts that were cut off are ended by their own
 * ranks (end_local_daemon), those still reachable by the closed connection
 * (Open MPI's lifeline). The guard keeps no descriptor of the job (mpirun
 * waits for the end of every rank's output) and leaves rank 0's process
 * group (which the launcher signals). */
static void launcher_guard(double grace) {
    pid_t mp = getppid();
    if (!proc_named(mp, OMPI_LAUNCHERS)) return;
    /* mpirun's session directory, only if it is the one of this mpirun */
    char sess[4096] = "", tail[32];
    const char *sd = getenv("OMPI_MCA_orte_jobfam_session_dir");
    snprintf(tail, sizeof tail, "/pid.%ld", (long)mp);
    if (sd && strlen(sd) > strlen(tail) && strlen(sd) < sizeof sess && strcmp(sd + strlen(sd) - strlen(tail), tail) == 0)
        snprintf(sess, sizeof sess, "%s", sd);
    pid_t g = fork();
    if (g != 0) return;   /* rank 0 (or no guard: fork failed) */
    setsid();
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) { dup2(nul, 0); dup2(nul, 1); dup2(nul, 2); }
    for (int fd = 3; fd < 1024; fd++) close(fd);
    double end = mono_now() + grace;
    struct timespec nap = {0, 50 * 1000000};
    while (mono_now() < end) {
        if (kill(mp, 0) != 0 || !proc_named(mp, OMPI_LAUNCHERS)) _exit(0);
        char path[64], st[64];
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)mp);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, st, sizeof st - 1) : -1;
        if (fd >= 0) close(fd);
        if (n > 0) { st[n] = '\0'; const char *p = strrchr(st, ')'); if (p && p[1] == ' ' && p[2] == 'Z') _exit(0); }
        nanosleep(&nap, NULL);
    }
    if (!proc_named(mp, OMPI_LAUNCHERS)) _exit(0);
    kill(mp, SIGKILL);
    for (int k = 0; k < 40 && kill(mp, 0) == 0 && proc_named(mp, OMPI_LAUNCHERS); k++) nanosleep(&nap, NULL);
    if (sess[0]) cli_rmtree(sess);
    _exit(0);
}

/* ---- remote store mirror (rank 0) ------------------------------------------
 * Every file the store writes is queued (rf_mirror_add: no network); a thread
 * of the mirror uploads (rf_mirror_start), so neither a dead server nor a
 * frozen one ever holds up dispatch. At each status period the coordinator
 * reports the mirror's state changes. */
typedef struct mirror_state {
    rf_mirror *m;
    char       shown[512];   /* URL without credentials, for messages */
    int        down, broken, started;
} mirror_state;

/* The upload thread starts with the store's first write, so only once the
 * sweep holds the store's lock: a second sweep refused by the lock never
 * touches the spool (rf_mirror_open only reads it). */
static void mirror_start(mirror_state *ms) {
    if (ms->started) return;
    ms->started = 1;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    if (rf_mirror_start(&ctx, ms->m) != RF_OK) {
        ms->broken = 1;
        cli_err("sweep", "remote store: %s: files stay spooled", rf_ctx_error(&ctx));
    }
}

static void mirror_on_write(void *ud, const char *rel) {
    mirror_state *ms = ud;
    mirror_start(ms);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    if (rf_mirror_add(&ctx, ms->m, rel) != RF_OK && !ms->broken) {
        ms->broken = 1;
        cli_err("sweep", "remote store: cannot spool %s: %s", rel, rf_ctx_error(&ctx));
    }
}

static void mirror_tick(void *ud) {
    mirror_state *ms = ud;
    int down = 0;
    char err[RF_ERR_MAX];
    int pending = rf_mirror_status(ms->m, &down, NULL, err, sizeof err);
    if (down && !ms->down)
        fprintf(stderr, "raffle sweep: remote store %s unreachable: %d file(s) spooled, retrying%s%s\n", ms->shown, pending,
                err[0] ? " (" : "", err[0] ? err : "");
    if (ms->down && !down) fprintf(stderr, "raffle sweep: remote store %s reachable again: spool uploaded\n", ms->shown);
    ms->down = down;
}

/* ---- Slurm ------------------------------------------------------------------ */

/* The deadline in this process's rf_now() clock from the job's end as Unix
 * time (monotonic clocks differ between nodes, wall clocks agree). */
static double deadline_from(double end_epoch, double margin) {
    if (end_epoch <= 0) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double wall = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return rf_now() + (end_epoch - wall) - margin;
}

/* Started by an MPI launcher? Then MPI_Init; otherwise never touch MPI, so a
 * plain `raffle sweep` works where no MPI runtime is set up. */
static int launched_by_mpi(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) if (getenv(vars[i])) return 1;
    return 0;
}

static char *slurp(const char *path, size_t *n, rf_ctx *ctx) {
    unsigned char *b;
    if (rf_read_file(ctx, path, &b, n) != RF_OK) return NULL;
    return (char *)b;
}

/* ---- the terminal progress line (rank 0) ------------------------------------
 * On a terminal (stderr a tty, no MPI launcher, not --quiet): one line
 * rewritten in place at each status period: done / running / failed of
 * total, tasks finished per minute this run, the ETA and the task running
 * longest by its label. Any other log line (a failure, a stop) clears it,
 * is printed, and the line is drawn again below it. In a pipe or under
 * mpirun the coordinator's periodic lines are printed as they were. */
typedef struct tty_line {
    const rf_job        *job;
    const rf_job_labels *labels;
    char                 line[1024];
    int                  drawn;
} tty_line;

static void fmt_secs(char *b, size_t n, double s) {
    if (!(s >= 0)) snprintf(b, n, "?");
    else if (s < 90) snprintf(b, n, "%.0fs", s);
    else if (s < 5400) snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(b, n, "%.1fh", s / 3600);
}

static void tty_draw(tty_line *t) {
    struct winsize ws;
    int w = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 ? ws.ws_col : 100;
    fprintf(stderr, "\r\033[K%.*s", w - 1, t->line);
    fflush(stderr);
    t->drawn = 1;
}

static void tty_clear(tty_line *t) {
    if (t->drawn) fprintf(stderr, "\r\033[K");
    t->drawn = 0;
}

static void tty_log(void *ud, const char *line) {
    tty_line *t = ud;
    int was = t->drawn;
    tty_clear(t);
    fprintf(stderr, "%s\n", line);
    if (was) tty_draw(t);
}

static void tty_progress(void *ud, const rf_sweep_progress *p) {
    tty_line *t = ud;
    if (p->final) { tty_clear(t); return; }   /* the summary line follows */
    enum { BAR = 12 };
    char bar[BAR + 1], eta[32], rate[32], run[600] = "", sk[32] = "";
    int filled = p->total ? (int)((double)BAR * (p->done + p->failed + p->skipped) / p->total) : BAR;
    for (int k = 0; k < BAR; k++) bar[k] = k < filled ? '#' : '-';
    bar[BAR] = '\0';
    fmt_secs(eta, sizeof eta, p->eta_s);
    int fresh = p->done - p->reused;
    if (fresh > 0 && p->elapsed_s > 1) snprintf(rate, sizeof rate, "%.1f tasks/min", 60.0 * fresh / p->elapsed_s);
    else snprintf(rate, sizeof rate, "- tasks/min");
    if (p->skipped) snprintf(sk, sizeof sk, ", %d skipped", p->skipped);
    if (p->oldest >= 0) {
        char d[32];
        fmt_secs(d, sizeof d, p->oldest_s);
        snprintf(run, sizeof run, " | %s %s", t->labels ? rf_job_label(t->labels, p->oldest) : rf_job_kind_name(t->job->tasks[p->oldest].kind), d);
    }
    snprintf(t->line, sizeof t->line, "%s [%s] %d/%d done, %d running, %d failed%s, ETA %s, %s%s", t->job->name, bar, p->done,
             p->total, p->running, p->failed, sk, eta, rate, run);
    tty_draw(t);
}

/* cli_fetch_pinned of each distinct settings value of job's tasks that
 * names a URL (a handful: the job's datasets and checkpoints). */
static rf_status fetch_job_inputs(rf_ctx *ctx, const rf_job *job) {
    rf_status s = RF_OK;
    char *done[64];
    int nd = 0;
    for (int i = 0; s == RF_OK && i < job->n_tasks; i++) {
        if (!strstr(rf_job_settings(job, i), "://")) continue;
        cJSON *st = cJSON_Parse(rf_job_settings(job, i));
        if (!st) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); break; }
        for (cJSON *c = st->child, *next; s == RF_OK && c; c = next) {
            next = c->next;
            char *txt = cJSON_IsString(c) || cJSON_IsArray(c) ? cJSON_PrintUnformatted(c) : NULL;
            int seen = !txt || !strstr(txt, "://");
            for (int k = 0; k < nd && !seen; k++) seen = strcmp(done[k], txt) == 0;
            if (!seen) {
                /* one value at a time, as its own settings object */
                cJSON *one = cJSON_CreateObject();
                cJSON *v = cJSON_DetachItemViaPointer(st, c);
                if (one && v && cJSON_AddItemToObject(one, "v", v)) v = NULL;
                s = one ? cli_fetch_pinned(ctx, one) : rf_error(ctx, RF_ERR_NOMEM, "out of memory");
                cJSON_Delete(v);
                cJSON_Delete(one);
                if (s == RF_OK && nd < 64) { done[nd++] = txt; txt = NULL; }
            }
            free(txt);
        }
        cJSON_Delete(st);
    }
    for (int k = 0; k < nd; k++) free(done[k]);
    return s;
}

int rf_cmd_sweep(int argc, char **argv) {
    int done = 0, fail_fast = 0, json = 0, quiet = 0, keep = 0, retries = -1, mem_mb = 0, no_report = 0;
    double tl = 0, every = 2, margin = 60, resume_every = 300, mirror_wait = 30, heartbeat = 5, startup = 120;
    const char *store = "results", *store_local = "results", *work = NULL, *writes = "auto";
    const char *pos[1];
    cli_opt opts[] = {
        {"store", CLI_STR, &store, "DIR|URL", "results store root, or an http(s) WebDAV URL to mirror to (default results/)", 0},
        {"store-local", CLI_STR, &store_local, "DIR", "local store root when --store is a URL (default results/)", 0},
        {"mirror-wait", CLI_DOUBLE, &mirror_wait, "S", "at the end, wait up to S seconds for the remote store (default 30)", 0},
        {"walltime-margin", CLI_DOUBLE, &margin, "S", "under Slurm: stop S seconds before the job's end time (default 60)", 0},
        {"resume-every", CLI_DOUBLE, &resume_every, "S", "training tasks save resumable state every S seconds (0: only when stopped; default 300)", 0},
        {"fail-fast", CLI_FLAG, &fail_fast, NULL, "start no new task after the first failure", 0},
        {"retries", CLI_INT, &retries, "N", "retries after a crash or timeout (default: the job's limits.retries)", 0},
        {"time-limit", CLI_DOUBLE, &tl, "S", "wall-clock limit per task attempt, seconds (default: the job's)", CLI_POSITIVE},
        {"memory-mb", CLI_INT, &mem_mb, "MB", "address-space limit per task, MiB (default: the job's)", CLI_POSITIVE},
        {"work", CLI_STR, &work, "DIR", "scratch directory for task runs (default ${TMPDIR:-/tmp}/raffle-UID)", 0},
        {"keep-work", CLI_FLAG, &keep, NULL, "keep the scratch directories", 0},
        {"status-every", CLI_DOUBLE, &every, "S", "status.json and progress period (default 2 s)", CLI_POSITIVE},
        {"direct-writes", CLI_STR, &writes, "auto|on|off", "workers that see the store (a shared file system) write their "
                                                           "checkpoints into it themselves; off: all through rank 0 (default auto)", 0},
        {"heartbeat", CLI_DOUBLE, &heartbeat, "S", "MPI ranks beat every S/4 s; a rank silent for S s is given up "
                                                  "(its task lost, queued again; exit 76); 0: off (default 5)", 0},
        {"startup-timeout", CLI_DOUBLE, &startup, "S", "under MPI: end with exit 69 when a start-up step (MPI_Init, every rank's "
                                                      "hello, the job's broadcast) takes S s; 0: wait forever (default 120)", 0},
        {"no-report", CLI_FLAG, &no_report, NULL, "do not write report.* at the end", 0},
        {"quiet", CLI_FLAG, &quiet, NULL, "no progress lines", 0},
        {"json", CLI_FLAG, &json, NULL, "print the outcome as one JSON object", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("sweep", "JOB.json", "Runs every task of a job (mpirun -np N raffle sweep JOB.json, or alone\n"
                       "in-process); results go to STORE/NAME/. Rerunning resumes.", opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    if (retries > 10 || mem_mb < 0 || tl < 0 || margin < 0 || resume_every < 0 || mirror_wait < 0 || heartbeat < 0 || startup < 0 ||
        (heartbeat > 0 && heartbeat < 0.2)) {
        cli_err("sweep", "option out of range");
        return 2;
    }
    static const char *const write_modes[] = {"off", "on", "auto"};   /* index: 0, 1, 2 = -1 */
    int direct = -2;
    for (int k = 0; k < 3; k++) if (strcmp(writes, write_modes[k]) == 0) direct = k == 2 ? -1 : k;
    if (direct == -2) { cli_err("sweep", "--direct-writes %s: expected auto, on or off", writes); return 2; }
    int remote = rf_url_scheme_of(store) == RF_URL_HTTP || rf_url_scheme_of(store) == RF_URL_HTTPS;
    if (rf_url_scheme_of(store) == RF_URL_FILE) { cli_err("sweep", "--store: use a directory, not a file:// URL"); return 2; }
    /* ftp://, s3://, ...: not a directory named "ftp:" (issue 19, defect 8) */
    if (rf_url_scheme_of(store) == RF_URL_OTHER || rf_url_scheme_of(store_local) != RF_URL_NONE) {
        const char *bad = rf_url_scheme_of(store) == RF_URL_OTHER ? store : store_local;
        char shown[512];
        rf_url_redact(bad, shown, sizeof shown);
        cli_err("sweep", "--store%s %s: unsupported URL scheme (a directory, or an http(s) WebDAV URL)",
                bad == store ? "" : "-local", shown);
        return 2;
    }
    int mpi = launched_by_mpi(), rank = 0, size = 1;
    if (mpi) {
        su_timeout = startup;
        /* the launcher's word for this process's rank, for the message of a
         * start-up that never gets through MPI_Init */
        static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"};
        for (size_t k = 0; k < sizeof rank_vars / sizeof rank_vars[0]; k++) {
            int64_t r;
            const char *v = getenv(rank_vars[k]);
            if (v && rf_parse_i64(NULL, v, strlen(v), 0, INT32_MAX, rank_vars[k], &r) == RF_OK) { atomic_store(&su_rank, (int)r); break; }
        }
        startup_arm("MPI_Init");
        pthread_t su_th;
        if (su_timeout > 0 && pthread_create(&su_th, NULL, startup_main, NULL) == 0) pthread_detach(su_th);
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        atomic_store(&su_rank, rank);
        if (size > 1) startup_handshake(rank, size);
        if (size > 1) startup_arm("receiving the job from rank 0");
        else startup_over(NULL);   /* alone: nothing to wait for */
    }
    /* A launcher without a working PMI starts SLURM_NTASKS separate
     * singletons, each "rank 0 of 1": they would all coordinate the same
     * store at once. Refuse before touching anything. */
    int ntasks = rf_slurm_ntasks();
    if (ntasks > 0 && ntasks != size) {
        if (rank == 0)
            cli_err("sweep", "MPI size %d but SLURM_NTASKS=%d: the ranks do not see each other "
                             "(wrong or missing PMI); launch with `srun --mpi=pmix` (see `srun --mpi=list`) or mpirun", size, ntasks);
        if (mpi) MPI_Finalize();
        return 1;
    }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    size_t n = 0;
    char *text = NULL;
    if (rank == 0) text = slurp(pos[0], &n, &ctx);
    long len = rank == 0 ? (text ? (long)n : -1) : 0;
    if (size > 1) MPI_Bcast(&len, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    if (len < 0) {
        if (rank == 0) cli_fail("sweep", &ctx, ctx.status);
        if (mpi) MPI_Finalize();
        return 1;
    }
    if (rank != 0) { n = (size_t)len; text = rf_malloc(n + 1); }
    if (!text) { if (mpi) MPI_Abort(MPI_COMM_WORLD, 1); return 1; }
    if (size > 1) MPI_Bcast(text, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    text[n] = '\0';
    const char *base = strrchr(pos[0], '/');
    char hint[129];
    snprintf(hint, sizeof hint, "%s", base ? base + 1 : pos[0]);
    char *dot = strrchr(hint, '.');
    if (dot && strcmp(dot, ".json") == 0) *dot = '\0';
    rf_job *job = NULL;
    /* rank 0 reads and hashes the files the tasks name (issue 19, defect 3)
     * and hands the digests to the others, so every rank computes the same
     * ids, whatever happens to the files meanwhile */
    rf_diag diag = {0};
    ctx.diag = rank == 0 ? &diag : NULL;   /* rank 0 reports every error of the job */
    rf_status s = rank == 0 ? rf_job_parse(&ctx, text, n, hint, &job) : RF_OK;
    ctx.diag = NULL;
    long plen = rank == 0 ? (s ? -1 : job->inputs_json ? (long)strlen(job->inputs_json) : 0) : 0;
    if (size > 1) MPI_Bcast(&plen, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    if (plen >= 0 && rank != 0) {
        char *pins = plen ? rf_malloc((size_t)plen + 1) : NULL;
        if (plen && !pins) MPI_Abort(MPI_COMM_WORLD, 1);
        if (pins) { MPI_Bcast(pins, (int)plen, MPI_CHAR, 0, MPI_COMM_WORLD); pins[plen] = '\0'; }
        s = rf_job_parse_pinned(&ctx, text, n, hint, pins, &job);
        rf_free(pins);
    } else if (plen > 0 && size > 1) {
        MPI_Bcast(job->inputs_json, (int)plen, MPI_CHAR, 0, MPI_COMM_WORLD);
    }
    if (!(plen < 0 || s)) rf_diag_free(&diag);
    if (plen < 0 || s) {
        rf_free(text);
        /* every rank stops here: rank 0 said so, or (out of memory) this one */
        if (rank == 0) {
            rf_error_prefix(&ctx, "%s", pos[0]);
            ctx.diag = &diag;
            cli_fail_all("sweep", &ctx, s, pos[0]);
            ctx.diag = NULL;
        }
        rf_diag_free(&diag);
        if (plen >= 0 && s && mpi) MPI_Abort(MPI_COMM_WORLD, 1);
        if (mpi) MPI_Finalize();
        return 1;
    }
    /* Datasets and checkpoints by URL, fetched once per node before any
     * task: every rank fetches what the tasks name (the download cache's
     * lock lets one process of a node download, the others then find the
     * file), and a failure on any rank (a wrong digest) stops them all
     * before the store is touched. */
    startup_arm(NULL);   /* downloads take what they take */
    rf_status fs = fetch_job_inputs(&ctx, job);
    int bad = fs != RF_OK, any_bad = bad;
    if (size > 1) MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (size > 1) startup_arm("the start-up broadcasts and the host gather");
    if (any_bad) {
        if (bad) cli_fail("sweep", &ctx, fs);
        rf_free(text);
        rf_job_free(job);
        if (mpi) MPI_Finalize();
        return 1;
    }
    /* every rank: srun and mpirun forward the signal to all of them, and a
     * worker passes it on to its running task */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (rank == 0 && size > 1 && proc_named(getppid(), OMPI_ANY)) {
        /* Open MPI ending the job (a rank died) vs a user's signal */
        launcher_pid = getppid();
        struct sigaction li;
        memset(&li, 0, sizeof li);
        li.sa_sigaction = on_launcher_signal;
        li.sa_flags = SA_SIGINFO;
        sigaction(SIGTERM, &li, NULL);
        li.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGCONT, &li, NULL);
    }
    double end_epoch = 0;
    cJSON *env = NULL, *slurm = NULL;
    if (rank == 0) {
        rf_ctx sctx;
        rf_ctx_init(&sctx);
        if (rf_slurm_end_time(&sctx, &end_epoch) != RF_OK) {
            fprintf(stderr, "raffle sweep: warning: job end time unknown (%s): no walltime deadline\n", rf_ctx_error(&sctx));
            end_epoch = 0;
        }
        if (rf_slurm_env(&sctx, &slurm) == RF_OK && slurm && (env = cJSON_CreateObject()) != NULL)
            cJSON_AddItemToObject(env, "slurm", slurm);
        else cJSON_Delete(slurm);
    }
    if (size > 1) MPI_Bcast(&end_epoch, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    double deadline = deadline_from(end_epoch, margin);
    if (rank == 0 && deadline > 0 && !quiet)
        fprintf(stderr, "raffle sweep: walltime: %.0f s left, no task starts after %.0f s\n", deadline + margin - rf_now(), deadline - rf_now());
    const char *root = remote ? store_local : store;
    mirror_state ms;
    memset(&ms, 0, sizeof ms);
    if (rank == 0 && remote) {
        rf_url_redact(store, ms.shown, sizeof ms.shown);
        char base[2048], local[4200];
        size_t l = strlen(store);
        snprintf(base, sizeof base, "%s%s%s/", store, l && store[l - 1] == '/' ? "" : "/", job->name);
        snprintf(local, sizeof local, "%s/%s", root, job->name);
        if ((s = rf_url_check(&ctx, base)) == RF_OK && (s = rf_mkdirs(&ctx, local)) == RF_OK)
            s = rf_mirror_open(&ctx, base, local, &ms.m);
        if (s) {
            /* the workers are waiting in rf_sweep_run: let them in and out */
            cli_fail("sweep", &ctx, s);
            if (mpi) MPI_Abort(MPI_COMM_WORLD, 1);
            return 1;
        }
        if (rf_mirror_pending(ms.m) > 0 && !quiet)
            fprintf(stderr, "raffle sweep: remote store: %d file(s) left spooled by an earlier run\n", rf_mirror_pending(ms.m));
    }
    rf_sweep_opts o;
    rf_sweep_opts_default(&o);
    o.store_root = root;
    o.deadline = deadline;
    o.resume_every_s = resume_every;
    o.env = env;
    if (ms.m) {
        o.on_write = mirror_on_write;
        o.on_tick = mirror_tick;
        o.hook_ud = &ms;
    }
    o.work_dir = work;
    o.fail_fast = fail_fast;
    o.retries = retries;
    o.time_limit_s = tl;
    o.mem_limit = (uint64_t)mem_mb << 20;
    o.status_every_s = every;
    o.heartbeat_s = heartbeat;
    o.direct_writes = direct;
    o.on_orphan = on_orphan;
    o.on_started = startup_over;
    o.quiet = quiet;
    o.keep_work = keep;
    o.stop_flag = &stop_requested;
    o.ending_flag = &launcher_ending;
    o.log = cli_log;
    /* rank 0 names tasks by their labels in its log lines; on a terminal it
     * draws the progress line */
    rf_job_labels *labels = NULL;
    tty_line tty = {.job = job};
    if (rank == 0) {
        rf_ctx lctx;
        rf_ctx_init(&lctx);
        if (rf_job_labels_new(&lctx, job, &labels) != RF_OK) labels = NULL;   /* ids instead: nothing else changes */
        o.labels = tty.labels = labels;
        if (!quiet && !mpi && isatty(STDERR_FILENO)) {
            o.log = tty_log;
            o.log_ud = &tty;
            o.on_progress = tty_progress;
            o.progress_ud = &tty;
        }
    }
    rf_sweep_result res;
    int ran_before = 0;   /* tasks earlier rounds ran: not "reused" in the last round's count */
    double secs_before = 0;
    for (;;) {
        s = rf_sweep_run(&ctx, job, &o, &res);
        if (s || !job->n_deferred || stop_requested || res.pending || (fail_fast && res.failed)) break;
        rf_job *next = NULL;
        if ((s = next_round(&ctx, text, n, hint, root, job, rank, size, &next)) != RF_OK || !next) break;
        /* the new stages' datasets and checkpoints by URL, as before round 1 */
        rf_status fs2 = fetch_job_inputs(&ctx, next);
        int bad2 = fs2 != RF_OK, any_bad2 = bad2;
        if (size > 1) MPI_Allreduce(&bad2, &any_bad2, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any_bad2) {
            s = bad2 ? fs2 : rf_error(&ctx, RF_ERR_IO, "another rank could not fetch the next round's inputs");
            rf_job_free(next);
            break;
        }
        if (rank == 0 && !quiet)
            fprintf(stderr, "raffle sweep: pipeline: %d more task(s) selected from finished results%s\n",
                    next->n_tasks - job->n_tasks, next->n_deferred ? "; more stages wait" : "");
        ran_before += res.done - res.reused;
        secs_before += res.seconds;
        rf_job_labels_free(labels);
        labels = NULL;
        rf_job_free(job);
        job = next;
        tty.job = job;
        if (rank == 0) {
            rf_ctx lctx;
            rf_ctx_init(&lctx);
            if (rf_job_labels_new(&lctx, job, &labels) != RF_OK) labels = NULL;
            o.labels = tty.labels = labels;
        }
    }
    res.reused -= ran_before < res.reused ? ran_before : res.reused;
    res.seconds += secs_before;
    rf_free(text);
    tty_clear(&tty);
    if (s && rank > 0 && res.orphaned) {
        /* cut off from rank 0: leave without MPI (an abort or finalize
         * would wait for the unreachable rank); the task was killed */
        fprintf(stderr, "raffle sweep: rank %d: %s: left\n", rank, rf_ctx_error(&ctx));
        fflush(NULL);
        if (res.orphaned == 1) end_local_daemon();
        _exit(EXIT_LOST);
    }
    if (!s && rank > 0 && res.lost_ranks) {
        /* rank 0 gave ranks up and ends the job without the final
         * barrier and finalize, which would wait for them */
        fflush(NULL);
        _exit(0);
    }
    if (s && size > 1) {
        /* Any rank's fatal error ends every rank, now: another rank may be
         * blocked on this one (issue 19, defect 1: a full store left a worker
         * in MPI_Send and rank 0 in MPI_Barrier, silently, forever). The
         * store stays consistent (atomic files, the ledger last) and the
         * next run cleans what the abort leaves (stale temp files, scratch). */
        if (rank == 0) cli_fail("sweep", &ctx, s);
        else fprintf(stderr, "raffle sweep: rank %d: error: %s\n", rank, rf_ctx_error(&ctx));
        fprintf(stderr, "raffle sweep: rank %d: ending every rank of the job\n", rank);
        fflush(NULL);
        if (ms.m) rf_mirror_stop(ms.m, 0);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    int code = 0;
    /* stopped by the walltime with nothing finished and no state saved:
     * another allocation of the same length would do the same, so the job
     * is not requeued forever (issue 19, defect 2) */
    int no_progress = 0;
    if (rank == 0) {
        if (s) code = cli_fail("sweep", &ctx, s);
        else if (res.failed || res.skipped) code = 1;
        else if (res.pending && !stop_requested && !res.lost_ranks && res.progressed == 0) { code = 1; no_progress = 1; }
        else if (res.lost_ranks) code = EXIT_LOST;
        else if (res.pending) code = EXIT_STOPPED;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, job->name);
        /* the launcher kills this process within a second: the rerun
         * writes the report */
        if (!s && !no_report && !res.launcher_ended) {
            rf_ctx rctx;
            rf_ctx_init(&rctx);
            rf_status rs = rf_report_generate(&rctx, dir);
            if (rs) { cli_fail("sweep", &rctx, rs); code = 1; }
            static const char *const rep_files[] = {"report.json", "report.csv", "report.html"};
            for (size_t k = 0; !rs && ms.m && k < sizeof rep_files / sizeof rep_files[0]; k++) mirror_on_write(&ms, rep_files[k]);
        }
        int spooled = 0;
        if (ms.m && ms.started) {
            spooled = rf_mirror_stop(ms.m, mirror_wait);
            if (spooled)
                fprintf(stderr, "raffle sweep: remote store %s still unreachable after %.0f s: %d file(s) left in %s/.spool/queue; "
                                "run the same command again to upload them\n", ms.shown, mirror_wait, spooled, dir);
            else if (!quiet) fprintf(stderr, "raffle sweep: remote store %s up to date\n", ms.shown);
        }
        if (res.pending && code == EXIT_STOPPED && !quiet)
            fprintf(stderr, "raffle sweep: stopped early (%s): %d task(s) left; run the same command again to continue\n",
                    stop_requested ? "signal" : "walltime", res.pending);
        if (res.lost_ranks && res.launcher_ended)
            fprintf(stderr, "raffle sweep: lost %s (%d rank(s) dead or unreachable; Open MPI is ending the job): %d task attempt(s) "
                            "recorded lost; %d of %d tasks done, %d left: run the same command again\n", res.lost_hosts,
                    res.lost_ranks, res.lost, res.done, res.total, res.pending);
        else if (res.lost_ranks)
            fprintf(stderr, "raffle sweep: lost %s (%d rank(s) silent for %g s): %d task attempt(s) lost and queued again; "
                            "%d of %d tasks done, %d left%s\n", res.lost_hosts, res.lost_ranks, heartbeat, res.lost, res.done,
                    res.total, res.pending, res.pending ? ": run the same command again" : "");
        if (no_progress)
            fprintf(stderr, "raffle sweep: walltime: no task finished or saved its state in this allocation (%d left): "
                            "a rerun with the same time limit would do the same; give the job more time\n", res.pending);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "name", job->name);
            cJSON_AddStringToObject(j, "store", dir);
            cJSON_AddBoolToObject(j, "ok", code == 0);
            cJSON_AddNumberToObject(j, "ranks", size);
            cJSON_AddNumberToObject(j, "total", res.total);
            cJSON_AddNumberToObject(j, "done", res.done);
            cJSON_AddNumberToObject(j, "reused", res.reused);
            cJSON_AddNumberToObject(j, "failed", res.failed);
            cJSON_AddNumberToObject(j, "skipped", res.skipped);
            cJSON_AddNumberToObject(j, "pending", res.pending);
            cJSON_AddNumberToObject(j, "retried", res.retried);
            cJSON_AddNumberToObject(j, "seconds", res.seconds);
            cJSON_AddBoolToObject(j, "stopped", code == EXIT_STOPPED || no_progress);
            cJSON_AddNumberToObject(j, "progressed", res.progressed);
            cJSON_AddNumberToObject(j, "direct_ranks", res.direct_ranks);
            cJSON_AddNumberToObject(j, "lost", res.lost);
            cJSON_AddNumberToObject(j, "ranks_lost", res.lost_ranks);
            if (res.lost_ranks) cJSON_AddStringToObject(j, "hosts_lost", res.lost_hosts);
            if (ms.m) cJSON_AddNumberToObject(j, "spooled", spooled);
            if (s) cJSON_AddStringToObject(j, "error", rf_ctx_error(&ctx));
            cli_print_json(j);
        } else if (!s && !quiet) {
            fprintf(stderr, "sweep %s: %d done (%d reused), %d failed, %d skipped, %d pending in %.1f s; results in %s/\n",
                    job->name, res.done, res.reused, res.failed, res.skipped, res.pending, res.seconds, dir);
        }
    } else if (s) {
        fprintf(stderr, "raffle sweep: rank %d: error: %s\n", rank, rf_ctx_error(&ctx));
        code = 1;
    }
    rf_mirror_free(ms.m);
    cJSON_Delete(env);
    rf_job_labels_free(labels);
    rf_job_free(job);
    if (rank == 0 && size > 1 && res.lost_ranks) {
        fflush(NULL);
        /* the launcher is already ending every rank (a process died): all
         * is written; leave before its SIGKILL */
        if (res.launcher_ended) _exit(code);
        /* given-up ranks never reach MPI_Finalize: end the job here, which
         * also kills a stopped rank wherever the launcher can reach it. With
         * no worker left (rank 0 cut off from all of them) mpirun has nothing
         * reachable to wait for: the guard kills it after half a second;
         * else it gets 6 s to end the job itself with this exit status (a
         * daemon's kill of a stopped rank takes two steps of 1 s, then its
         * report; measured 2-4 s on a loaded machine) */
        launcher_guard(res.lost_ranks >= size - 1 ? 0.5 : 6.0);
        MPI_Abort(MPI_COMM_WORLD, code);
        return code;
    }
    /* rank 0 only: the workers reach MPI_Finalize first and wait there
     * while rank 0 writes the report, however long that takes */
    if (mpi) finalize_bounded(size > 1 && rank == 0 ? heartbeat : 0, code);
    return code;
}
