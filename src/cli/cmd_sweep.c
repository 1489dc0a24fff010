/* raffle sweep JOB.json: runs a whole study. Under mpirun (or srun) rank 0
 * coordinates and the other ranks work; alone it runs in-process. Rank 0
 * reads the job file and broadcasts it so every rank expands the same DAG.
 * Exit status: 0 every task done, 1 some task failed, was skipped or left
 * pending (or the sweep itself failed), 2 usage. */
#include "cli/cli.h"
#include "raffle/coord.h"
#include "raffle/job.h"
#include "raffle/report.h"
#include "raffle/store.h"

#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bench dispatcher names rf_bench_coord_main through a weak reference,
 * and a weak reference alone does not pull an object out of a static
 * library: this strong one links src/coord/bench.c into the binary. */
int (*const rf_sweep_bench_entry)(int, char **) = rf_bench_coord_main;

static volatile int stop_requested;
static void on_stop_signal(int sig) { (void)sig; stop_requested = 1; }

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

int rf_cmd_sweep(int argc, char **argv) {
    int done = 0, fail_fast = 0, json = 0, quiet = 0, keep = 0, retries = -1, mem_mb = 0, no_report = 0;
    double tl = 0, every = 2;
    const char *store = "results", *work = NULL;
    const char *pos[1];
    cli_opt opts[] = {
        {"store", CLI_STR, &store, "DIR", "results store root (default results/)", 0},
        {"fail-fast", CLI_FLAG, &fail_fast, NULL, "start no new task after the first failure", 0},
        {"retries", CLI_INT, &retries, "N", "retries after a crash or timeout (default: the job's limits.retries)", 0},
        {"time-limit", CLI_DOUBLE, &tl, "S", "wall-clock limit per task attempt, seconds (default: the job's)", 0},
        {"memory-mb", CLI_INT, &mem_mb, "MB", "address-space limit per task, MiB (default: the job's)", 0},
        {"work", CLI_STR, &work, "DIR", "scratch directory for task runs (default ${TMPDIR:-/tmp}/raffle-UID)", 0},
        {"keep-work", CLI_FLAG, &keep, NULL, "keep the scratch directories", 0},
        {"status-every", CLI_DOUBLE, &every, "S", "status.json and progress period (default 2 s)", 0},
        {"no-report", CLI_FLAG, &no_report, NULL, "do not write report.* at the end", 0},
        {"quiet", CLI_FLAG, &quiet, NULL, "no progress lines", 0},
        {"json", CLI_FLAG, &json, NULL, "print the outcome as one JSON object", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("sweep", "JOB.json", "Runs every task of a job (mpirun -np N raffle sweep JOB.json, or alone\n"
                       "in-process); results go to STORE/NAME/. Rerunning resumes.", opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    if (retries > 10 || mem_mb < 0 || tl < 0) { cli_err("sweep", "option out of range"); return 2; }
    int mpi = launched_by_mpi(), rank = 0, size = 1;
    if (mpi) {
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
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
    rf_status s = rf_job_parse(&ctx, text, n, hint, &job);
    rf_free(text);
    if (s) {
        /* every rank parsed the same text, so every rank stops here */
        if (rank == 0) { rf_error_prefix(&ctx, "%s", pos[0]); cli_fail("sweep", &ctx, s); }
        if (mpi) MPI_Finalize();
        return 1;
    }
    if (rank == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigaction(SIGUSR1, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    rf_sweep_opts o;
    rf_sweep_opts_default(&o);
    o.store_root = store;
    o.work_dir = work;
    o.fail_fast = fail_fast;
    o.retries = retries;
    o.time_limit_s = tl;
    o.mem_limit = (uint64_t)mem_mb << 20;
    o.status_every_s = every;
    o.quiet = quiet;
    o.keep_work = keep;
    o.stop_flag = &stop_requested;
    o.log = cli_log;
    rf_sweep_result res;
    s = rf_sweep_run(&ctx, job, &o, &res);
    int code = 0;
    if (rank == 0) {
        if (s) code = cli_fail("sweep", &ctx, s);
        else if (res.failed || res.skipped || res.pending) code = 1;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", store, job->name);
        if (!s && !no_report) {
            rf_ctx rctx;
            rf_ctx_init(&rctx);
            rf_status rs = rf_report_generate(&rctx, dir);
            if (rs) { cli_fail("sweep", &rctx, rs); code = 1; }
        }
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
    rf_job_free(job);
    if (mpi) MPI_Finalize();
    return code;
}
