/* raffle: the command-line entry point. Dispatches to subcommands through a
 * table; each subcommand returns its process exit code (0 ok, 1 failure,
 * 2 usage error). */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

typedef int (*cmd_fn)(int argc, char **argv);

#define CMD(name) int rf_cmd_##name(int argc, char **argv);
#define CMDS(X) \
    X(train) X(eval) X(inspect) X(prune) X(lottery) X(distill) X(quantize) X(ofa) \
    X(export) X(import) X(bench) X(sweep) X(validate) X(run) X(status) X(report) X(fetch) X(data)
CMDS(CMD)
#undef CMD

static const struct { const char *name; const char *help; } commands[] = {
    {"train", "train a model (preset or spec) on a dataset"},
    {"eval", "evaluate a checkpoint on a dataset's test split"},
    {"inspect", "show a checkpoint's metadata and tensors"},
    {"prune", "one-shot pruning (magnitude, random, obd, snip, grasp, synflow) + fine-tuning"},
    {"lottery", "iterative magnitude pruning with rewinding (lottery tickets)"},
    {"distill", "train a student on a teacher's soft targets"},
    {"quantize", "int8 post-training quantization or quantization-aware training"},
    {"ofa", "the Prune-Once-For-All pipeline"},
    {"export", "export a checkpoint (safetensors)"},
    {"import", "import weights (safetensors) into a checkpoint"},
    {"bench", "benchmarks: kernels, coord (make bench also runs the training bench)"},
    {"sweep", "run a job file's whole study (under mpirun or in-process)"},
    {"validate", "check a job file and print its task DAG summary"},
    {"run", "run one task of a sweep (used by workers)"},
    {"status", "print a sweep's status"},
    {"report", "regenerate a sweep's report from its store"},
    {"fetch", "download a sweep's report from a remote store"},
    {"data", "prepare or describe datasets"},
};

static cmd_fn lookup(const char *name) {
#define CMD(n) if (strcmp(name, #n) == 0) return rf_cmd_##n;
    CMDS(CMD)
#undef CMD
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
