/* raffle run DIR: runs one task of a sweep in this process. Workers start it
 * as a child (fork + exec) so a crash, an OOM kill or a hang takes down only
 * this process; it never initialises MPI. SIGUSR1 or SIGTERM (the worker
 * forwarding a preemption, or Slurm signalling the whole job) asks the task
 * to stop: a training task saves DIR/resume.rckpt first (docs/hpc.md).
 * Exit status: 0 done, 3 the task failed, 75 the task was preempted and left
 * resumable state (DIR/result.json holds the class and message), 2 usage. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

enum { EXIT_PREEMPTED = 75 };   /* EX_TEMPFAIL: try again later */

int rf_cmd_run(int argc, char **argv) {
    int done = 0, threads = 1;
    const char *pos[1];
    cli_opt opts[] = {
        {"threads", CLI_INT, &threads, "N", "compute threads for the task (default 1)", CLI_POSITIVE},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("run", "TASK_DIR", "Runs one sweep task described by TASK_DIR/task.json; writes model.rckpt,\n"
                       "metrics.json and result.json there (used by sweep workers). SIGUSR1/SIGTERM\n"
                       "stop a training task after saving TASK_DIR/resume.rckpt (exit 75).", opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    volatile int *stop = cli_stop_flag();
    cli_set_threads(threads);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.threads = threads;
    rf_status s = rf_task_run_dir(&ctx, pos[0], stop, 0);
    if (s == RF_ERR_PREEMPTED) {
        fprintf(stderr, "raffle run: task preempted: %s\n", rf_ctx_error(&ctx));
        return EXIT_PREEMPTED;
    }
    if (s != RF_OK) {
        fprintf(stderr, "raffle run: task failed: %s\n", rf_ctx_error(&ctx));
        return 3;
    }
    return 0;
}
