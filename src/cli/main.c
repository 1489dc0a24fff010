/* raffle: the command-line entry point. Dispatches to subcommands through a
 * table; each subcommand returns its process exit code (0 ok, 1 failure,
 * 2 usage error). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

typedef int (*cmd_fn)(int argc, char **argv);

int rf_cmd_train(int, char **), rf_cmd_eval(int, char **), rf_cmd_inspect(int, char **), rf_cmd_prune(int, char **), rf_cmd_lottery(int, char **), rf_cmd_distill(int, char **);
int rf_cmd_quantize(int, char **), rf_cmd_ofa(int, char **), rf_cmd_export(int, char **), rf_cmd_import(int, char **), rf_cmd_bench(int, char **), rf_cmd_sweep(int, char **);
int rf_cmd_validate(int, char **), rf_cmd_run(int, char **), rf_cmd_status(int, char **), rf_cmd_report(int, char **), rf_cmd_fetch(int, char **), rf_cmd_data(int, char **);

/* One table: the name, the entry point and the help line of each command. */
static const struct { const char *name; cmd_fn fn; const char *help; } commands[] = {
    {"train", rf_cmd_train, "train a model (preset or spec) on a dataset"},
    {"eval", rf_cmd_eval, "evaluate a checkpoint on a dataset's test split"},
    {"inspect", rf_cmd_inspect, "show a checkpoint's metadata and tensors"},
    {"prune", rf_cmd_prune, "one-shot pruning (magnitude, random, obd, snip, grasp, synflow) + fine-tuning"},
    {"lottery", rf_cmd_lottery, "iterative magnitude pruning with rewinding (lottery tickets)"},
    {"distill", rf_cmd_distill, "train a student on a teacher's soft targets"},
    {"quantize", rf_cmd_quantize, "int8 post-training quantization or quantization-aware training"},
    {"ofa", rf_cmd_ofa, "the Prune-Once-For-All pipeline"},
    {"export", rf_cmd_export, "export a checkpoint (safetensors)"},
    {"import", rf_cmd_import, "import weights (safetensors) into a checkpoint"},
    {"bench", rf_cmd_bench, "benchmarks: kernels, coord (make bench also runs the training bench)"},
    {"sweep", rf_cmd_sweep, "run a job file's whole study (under mpirun or in-process)"},
    {"validate", rf_cmd_validate, "check a job file and print its task DAG summary"},
    {"run", rf_cmd_run, "run one task of a sweep (used by workers)"},
    {"status", rf_cmd_status, "print a sweep's status"},
    {"report", rf_cmd_report, "regenerate a sweep's report from its store"},
    {"fetch", rf_cmd_fetch, "download a sweep's report from a remote store"},
    {"data", rf_cmd_data, "prepare or describe datasets"},
};

static cmd_fn lookup(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) return commands[i].fn;
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: raffle COMMAND [options]   (raffle COMMAND --help for its options)\n\n"
               "raffle runs neural-network compression studies: pruning, lottery tickets,\n"
               "distillation, quantization, Prune-Once-For-All, as sweeps across MPI ranks.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  --version  print the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    const char *c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) { usage(stdout); return 0; }
    if (strcmp(c, "--version") == 0) { printf("raffle %s\n", RF_VERSION_STRING); return 0; }
    cmd_fn fn = lookup(c);
    if (!fn) {
        fprintf(stderr, "raffle: unknown command '%s' (see 'raffle --help')\n", c);
        return 2;
    }
    return fn(argc - 1, argv + 1);
}
