/* Shared pieces of the raffle command-line front-end (the only code allowed
 * to print to the terminal and to exit). Each subcommand lives in its own
 * src/cli/cmd_<name>.c and is listed in the table in main.c. */
#ifndef RAFFLE_CLI_H
#define RAFFLE_CLI_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/task.h"

typedef enum { CLI_FLAG, CLI_STR, CLI_INT, CLI_I64, CLI_U64, CLI_FLOAT, CLI_DOUBLE } cli_opt_type;

typedef struct cli_opt {
    const char  *name;      /* long name without "--" */
    cli_opt_type type;
    void        *dest;      /* int* for FLAG/INT, const char** for STR, int64_t*, uint64_t*, float*, double* */
    const char  *metavar;   /* "N", "FILE"; NULL for flags */
    const char  *help;
    int          required;
} cli_opt;

/* Parses argv (argv[0] is the subcommand name). Positional arguments are
 * collected into pos (up to max_pos; more is an error).
 * Returns 0 to go on, or an exit code: 0 after --help (sets *done), 2 on a
 * usage error (one-line message already printed to stderr). */
int cli_parse(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
              int argc, char **argv, const char **pos, int min_pos, int max_pos, int *done);

/* Prints "raffle CMD: message" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the ctx error for a failed status and returns the exit code (1). */
int  cli_fail(const char *cmd, rf_ctx *ctx, rf_status s);
/* Prints obj as one JSON object line on stdout (and frees it). */
void cli_print_json(cJSON *obj);
/* Progress line callback for library logs: prints to stderr. */
void cli_log(void *ud, const char *line);
/* Runs one task kind as a sweep would, for the CLI front-ends: loads the
 * dataset `data`, trains on its first train_limit samples when > 0, calls
 * fn with settings (borrowed) and the parents, frees the data. Returns the
 * metrics (free with cJSON_Delete), or NULL after printing the error. */
cJSON *cli_run_task(const char *cmd, rf_task_fn fn, const cJSON *settings, const char *data, int64_t train_limit,
                    const char *const *parents, int n_parents, const char *out_dir);
/* Applies --threads: pins OpenBLAS threads (default 1). */
void cli_set_threads(int threads);

#endif
