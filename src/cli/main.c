/* raffle: the command-line entry point. Dispatches to subcommands through a
 * table; each subcommand returns its process exit code (0 ok, 1 failure,
 * 2 usage error). The commands of the task kinds are not listed here: they
 * come from the kind descriptors (raffle/task.h), one generic front-end
 * each (cmd_kind.c), and the experiments that are pipelines (lottery, ofa)
 * run as one-experiment jobs (cmd_experiment.c). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

typedef int (*cmd_fn)(int argc, char **argv);

int rf_cmd_eval(int, char **), rf_cmd_inspect(int, char **), rf_cmd_export(int, char **), rf_cmd_import(int, char **);
int rf_cmd_bench(int, char **), rf_cmd_sweep(int, char **), rf_cmd_validate(int, char **), rf_cmd_run(int, char **);
int rf_cmd_status(int, char **), rf_cmd_report(int, char **), rf_cmd_fetch(int, char **), rf_cmd_data(int, char **);
int rf_cmd_help(int, char **), rf_cmd_find(int, char **);

/* One table: the name, the entry point and the help line of each command. */
static const struct { const char *name; cmd_fn fn; const char *help; } commands[] = {
    {"eval", rf_cmd_eval, "evaluate a checkpoint on a dataset's test split"},
    {"inspect", rf_cmd_inspect, "show a checkpoint's metadata and tensors"},
    {"export", rf_cmd_export, "export a checkpoint (safetensors)"},
    {"import", rf_cmd_import, "import weights (safetensors) into a checkpoint"},
    {"bench", rf_cmd_bench, "benchmarks: kernels, coord (make bench also runs the training bench)"},
    {"sweep", rf_cmd_sweep, "run a job file's whole study (under mpirun or in-process)"},
    {"validate", rf_cmd_validate, "check a job file and print its task DAG summary"},
    {"run", rf_cmd_run, "run one task of a sweep (used by workers)"},
    {"status", rf_cmd_status, "print a sweep's status"},
    {"report", rf_cmd_report, "regenerate a sweep's report from its store, or compare sweeps (--compare)"},
    {"find", rf_cmd_find, "print the task directories of a sweep whose settings match KEY=VALUE ..."},
    {"fetch", rf_cmd_fetch, "download a sweep's report from a remote store"},
    {"data", rf_cmd_data, "prepare or describe datasets"},
    {"help", rf_cmd_help, "this list; --markdown: the settings reference docs/jobs.md holds"},
};

/* Experiments run whole by their command: their kinds' tasks form a chain. */
static const char *const pipelines[] = {"lottery", "ofa"};

static int is_pipeline(const char *name) {
    for (size_t i = 0; i < sizeof pipelines / sizeof pipelines[0]; i++)
        if (strcmp(pipelines[i], name) == 0) return 1;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: raffle COMMAND [options]   (raffle COMMAND --help for its options)\n\n"
               "raffle runs neural-network compression studies: pruning, lottery tickets,\n"
               "distillation, quantization, Prune-Once-For-All, as sweeps across MPI ranks.\n\n"
               "task kinds (flags = their settings, as in job files):\n");
    for (int k = 0; k < RF_JOB_KIND_COUNT_; k++) {
        const rf_kind *d = rf_kind_get(k);
        if (!(d->flags & RF_KIND_DIAG) && !is_pipeline(d->name)) fprintf(f, "  %-12s %s\n", d->name, d->summary);
    }
    fprintf(f, "\nexperiments run whole (a one-experiment job):\n");
    for (size_t i = 0; i < sizeof pipelines / sizeof pipelines[0]; i++) {
        const rf_kind *d = rf_kind_get(rf_kind_find_experiment(pipelines[i]));
        fprintf(f, "  %-12s %s\n", pipelines[i], d ? d->summary : "");
    }
    fprintf(f, "\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  --version    print the version\n");
}

int rf_cmd_help(int argc, char **argv);

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    const char *c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || (strcmp(c, "help") == 0 && argc == 2)) { usage(stdout); return 0; }
    if (strcmp(c, "--version") == 0) { printf("raffle %s\n", RF_VERSION_STRING); return 0; }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0) cli_json_begin(c);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(c, commands[i].name) == 0) return cli_json_end(commands[i].fn(argc - 1, argv + 1));
    if (is_pipeline(c)) return cli_json_end(cli_experiment_main(rf_kind_get(rf_kind_find_experiment(c)), argc - 1, argv + 1));
    const rf_kind *k = rf_kind_get(rf_kind_find(c));
    if (k && !(k->flags & RF_KIND_DIAG)) return cli_json_end(cli_kind_main(k, argc - 1, argv + 1));
    fprintf(stderr, "raffle: unknown command '%s' (see 'raffle --help')\n", c);
    return 2;
}
