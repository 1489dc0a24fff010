/* Shared pieces of the raffle command-line front-end (the only code allowed
 * to print to the terminal and to exit). Each subcommand lives in its own
 * src/cli/cmd_<name>.c and is listed in the table in main.c. */
#ifndef RAFFLE_CLI_H
#define RAFFLE_CLI_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/task.h"
#include "raffle/settings.h"
#include "raffle/threads.h"

/* CLI_LIST: a cli_list; the option may be repeated and each value may be a
 * comma-separated list. */
typedef enum { CLI_FLAG, CLI_STR, CLI_INT, CLI_I64, CLI_U64, CLI_FLOAT, CLI_DOUBLE, CLI_LIST } cli_opt_type;
#define CLI_LIST_MAX 64
typedef struct cli_list { const char *v[CLI_LIST_MAX]; int n; char buf[8192]; size_t used; } cli_list;

typedef struct cli_opt {
    const char  *name;      /* long name without "--"; "out|out-dir": the second is another spelling (an old name) */
    cli_opt_type type;
    void        *dest;      /* int* for FLAG/INT, const char** for STR, int64_t*, uint64_t*, float*, double*, cli_list* */
    const char  *metavar;   /* "N", "FILE"; NULL for flags */
    const char  *help;
    /* CLI_REQUIRED (1: the option must be given), and for numbers what
     * they take: by default 0 and above; CLI_POSITIVE above 0 only;
     * CLI_NEGATIVE_OK any. A value outside is refused with exit 2, never
     * taken as the default (issue 23). */
    int          required;
} cli_opt;
enum { CLI_REQUIRED = 1, CLI_POSITIVE = 2, CLI_NEGATIVE_OK = 4 };

/* Settings tables a command takes as flags (raffle/settings.h): key
 * "weight_decay" is --weight-decay, an entry's alias is another spelling,
 * boolean keys are --key / --no-key / --key=true|false, lists are comma-
 * separated. Values are checked with the table's own checker and land in
 * `settings` with the table's types. Keys in `omit` are not flags. */
typedef struct cli_tables {
    const rf_setting *tab[RF_KIND_MAX_TABLES];
    const char       *title[RF_KIND_MAX_TABLES];   /* help section of each table */
    int               n;
    const char *const *omit;      /* NULL-terminated, may be NULL */
    cJSON            *settings;   /* receives the flags given (borrowed) */
} cli_tables;

/* Parses argv (argv[0] is the subcommand name). Positional arguments are
 * collected into pos (up to max_pos; more is an error).
 * Returns 0 to go on, or an exit code: 0 after --help (sets *done), 2 on a
 * usage error (one-line message already printed to stderr). */
int cli_parse(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
              int argc, char **argv, const char **pos, int min_pos, int max_pos, int *done);
/* cli_parse that also takes the flags of settings tables (tabs may be NULL). */
int cli_parse_settings(const char *cmd, const char *usage, const char *summary, const cli_opt *opts,
                       cli_tables *tabs, int argc, char **argv, const char **pos, int min_pos, int max_pos, int *done);

/* Prints "raffle CMD: message" to stderr. */
void cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the ctx error for a failed status and returns the exit code (1). */
int  cli_fail(const char *cmd, rf_ctx *ctx, rf_status s);
/* cli_fail of every error ctx->diag recorded (a job's, issue 23), one line
 * each, prefixed with where (a file; may be NULL), then their count; with
 * --json one object whose "errors" lists them. Fewer than two: cli_fail
 * (ctx's message, which names where already). */
int  cli_fail_all(const char *cmd, rf_ctx *ctx, rf_status s, const char *where);
/* Fetches every pinned URL ("URL#sha256=HEX": datasets, checkpoints) the
 * string values of settings (borrowed; may be NULL) name into the download
 * cache, each checked against its digest (issue 19: datasets and teachers
 * by URL). A wrong digest is an error naming the URL and leaves nothing. */
rf_status cli_fetch_pinned(rf_ctx *ctx, const cJSON *settings);
/* Prints obj as one JSON object line on stdout (and frees it). */
void cli_print_json(cJSON *obj);
/* Removes directory dir and everything under it (best effort; symlinks
 * are removed, not followed). */
void cli_rmtree(const char *dir);
/* --json for command cmd: errors reported with cli_err / cli_fail are
 * remembered, and cli_json_end(rc) prints {"ok": false, "command", "exit",
 * "error"} on stdout when the command failed without printing its own
 * JSON object (a command's stdout then always holds one object). Returns rc. */
void cli_json_begin(const char *cmd);
int  cli_json_end(int rc);
/* Progress line callback for library logs: prints to stderr. */
void cli_log(void *ud, const char *line);
/* Runs one task of kind k in directory dir the way a sweep's worker does
 * (writes dir/task.json, then rf_task_run_dir: dir/model.rckpt,
 * metrics.json with "timing" and "engine", result.json). settings are
 * completed with the kind's defaults here (not consumed); threads as
 * cli_threads. Returns the
 * metrics as written (free with cJSON_Delete), or NULL after printing the
 * error. */
cJSON *cli_run_kind(const char *cmd, const rf_kind *k, cJSON *settings, const char *const *parents, int n_parents,
                    const char *dir, int log_every, int threads);
/* Adds the --engine KEY=VALUE values of l to settings as its "engine"
 * object (checked with the engine table), except threads=N, which is the
 * process's (the same as --threads N): stored in *threads (-1: not given;
 * a different --threads already there is a usage error). Returns 0, or 2
 * after printing a usage error. */
int    cli_engine_settings(const char *cmd, const cli_list *l, cJSON *settings, int *threads);
/* The installed stop flag (SIGTERM/SIGUSR1 set it): kind commands
 * pass it to stop-aware kinds, which then save resumable state. */
volatile int *cli_stop_flag(void);
/* The generic command of a task kind: `raffle KIND [flags]`, flags from the
 * kind's settings tables (common, training, its own). */
int    cli_kind_main(const rf_kind *k, int argc, char **argv);
/* The command of an experiment kind that is a pipeline (lottery, ofa): the
 * one-experiment job its flags spell, expanded and run here task by task. */
int    cli_experiment_main(const rf_kind *k, int argc, char **argv);
/* Applies --threads N to ctx (may be NULL): the engine option "threads"
 * (N < 0: not given, the environment's RAFFLE_THREADS or 0; 0: auto,
 * SLURM_CPUS_PER_TASK under Slurm, else 1), and as many OpenBLAS threads
 * (the gemm=openblas backend). Returns 0, or 2 after printing a usage error
 * for N above the pool's maximum. */
int    cli_threads(const char *cmd, rf_ctx *ctx, int threads);
/* The help line of every --threads flag. */
#define CLI_THREADS_DOC "compute threads (default: SLURM_CPUS_PER_TASK under Slurm, else 1; results do not depend on it)"

#endif
