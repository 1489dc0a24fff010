/* raffle run DIR: runs one task of a sweep in this process. Workers start it
 * as a child (fork + exec) so a crash, an OOM kill or a hang takes down only
 * this process; it never initialises MPI. Exit status: 0 done, 3 the task
 * failed (DIR/result.json holds the class and message), 2 usage. */
#include "cli/cli.h"
#include "raffle/coord.h"

#include <stdio.h>

int rf_cmd_run(int argc, char **argv) {
    int done = 0, threads = 1;
    const char *pos[1];
    cli_opt opts[] = {
        {"threads", CLI_INT, &threads, "N", "compute threads for the task (default 1)", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("run", "TASK_DIR", "Runs one sweep task described by TASK_DIR/task.json; writes model.rckpt,\n"
                       "metrics.json and result.json there (used by sweep workers).", opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    cli_set_threads(threads);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    ctx.threads = threads;
    rf_status s = rf_coord_run_dir(&ctx, pos[0]);
    if (s != RF_OK) {
        fprintf(stderr, "raffle run: task failed: %s\n", rf_ctx_error(&ctx));
        return 3;
    }
    return 0;
}
