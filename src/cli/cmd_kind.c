/* raffle KIND [flags]: the command of every task kind (train, prune,
 * distill, quantize, ofa-sparse, ofa-transfer, ofa-qat), made from its
 * descriptor (raffle/task.h rf_kind): its settings tables are the flags,
 * with the same names, defaults and bounds as in job files, its parents
 * are --parent, and the task runs exactly as a sweep's worker runs it
 * (rf_task_run_dir in the output directory). So `raffle prune ...` and the
 * same prune task of a sweep write byte-identical checkpoints
 * (tests/integration/cli_sweep_same.sh). */
#define _GNU_SOURCE
#include "cli/cli.h"


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The spellings the parents had in the commands before the descriptors. */
static const struct { const char *kind, *flag; } parent_alias[] = {
    {"prune", "parent|ckpt"}, {"quantize", "parent|ckpt"}, {"distill", "parent|teacher"},
};

static double num(const cJSON *m, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

int cli_kind_main(const rf_kind *k, int argc, char **argv) {
    const char *cmd = k->name, *out = NULL, *parent_name = "parent";
    for (size_t i = 0; i < sizeof parent_alias / sizeof parent_alias[0]; i++)
        if (strcmp(parent_alias[i].kind, k->name) == 0) parent_name = parent_alias[i].flag;
    static cli_list parents, engine;   /* large: not on the stack */
    memset(&parents, 0, sizeof parents);
    memset(&engine, 0, sizeof engine);
    int json = 0, threads = -1, log_every = 0;
    char parent_help[256];
    snprintf(parent_help, sizeof parent_help, "parent checkpoint(s): %s", k->parents_doc ? k->parents_doc : "none");
    const cli_opt opts[] = {
        {parent_name, CLI_LIST, &parents, "CKPT[,CKPT]", parent_help, k->min_parents > 0},
        {"out", CLI_STR, &out, "DIR", "output directory: DIR/model.rckpt, metrics.json, task.json (default: a temporary one, removed)", 0},
        {"engine", CLI_LIST, &engine, "KEY=VALUE", "engine option (docs/engine.md); repeatable", 0},
        {"threads", CLI_INT, &threads, "N", CLI_THREADS_DOC, CLI_POSITIVE},
        {"log-every", CLI_INT, &log_every, "N", "progress line every N training steps (0: the kind's default; -1: none)", CLI_NEGATIVE_OK},
        {"json", CLI_FLAG, &json, NULL, "print metrics.json as one JSON object", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    cJSON *settings = cJSON_CreateObject();
    if (!settings) { cli_err(cmd, "out of memory"); return 1; }
    cli_tables t = {.omit = k->train_omit, .settings = settings};
    const rf_setting *tabs[RF_KIND_MAX_TABLES];
    int n = rf_kind_tables(k, tabs);
    for (int i = 0; i < n; i++) {
        t.tab[t.n] = tabs[i];
        t.title[t.n++] = tabs[i] == rf_task_common_settings ? "data, model, seed (as in a job file)"
                       : tabs[i] == rf_data_settings ? "data preparation (a job's top level or experiment; docs/data.md)"
                       : tabs[i] == rf_train_settings ? (k->train_when ? "training (the keys of a job's \"train\"; only when the condition of the kind holds)"
                                                                       : "training (the keys of a job's \"train\")")
                       : "settings of the kind (docs/jobs.md, Task settings)";
    }
    char usage[160], summary[600];
    snprintf(usage, sizeof usage, "%s[flags]", k->min_parents > 0 ? "--parent CKPT " : "");
    snprintf(summary, sizeof summary,
             "%s.\nRuns one \"%s\" task the way a sweep's worker does; flags are its settings, with the names,\n"
             "defaults and bounds of job files (docs/jobs.md). Writes DIR/model.rckpt and DIR/metrics.json.",
             k->summary, k->name);
    int done = 0;
    int rc = cli_parse_settings(cmd, usage, summary, opts, &t, argc, argv, NULL, 0, 0, &done);
    if (!rc && !done) rc = cli_engine_settings(cmd, &engine, settings, &threads);
    if (rc || done) { cJSON_Delete(settings); return rc; }
    if (parents.n < k->min_parents || parents.n > k->max_parents) {
        cli_err(cmd, "takes %d to %d parents (%s), got %d", k->min_parents, k->max_parents,
                k->parents_doc ? k->parents_doc : "none", parents.n);
        cJSON_Delete(settings);
        return 2;
    }
    if (threads > RF_POOL_MAX) { cli_err(cmd, "--threads %d: at most %d", threads, RF_POOL_MAX); cJSON_Delete(settings); return 2; }
    char tmp[4096];
    int own = !out;
    if (own) {
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/raffle-%s-XXXXXX", td && *td ? td : "/tmp", cmd);
        if (!mkdtemp(tmp)) { cli_err(cmd, "cannot create a temporary directory in %s", td && *td ? td : "/tmp"); cJSON_Delete(settings); return 1; }
        out = tmp;
    }
    cJSON *m = cli_run_kind(cmd, k, settings, parents.v, parents.n, out, log_every, threads);
    cJSON_Delete(settings);
    if (own) cli_rmtree(tmp);
    if (!m) return 1;
    if (json) {
        cli_print_json(m);
    } else {
        /* every accuracy with its split: selection read validation only */
        printf("%s: test accuracy %.4f  loss %.4f", cmd, num(m, "accuracy"), num(m, "loss"));
        if (num(m, "val_accuracy") >= 0) printf("  val accuracy %.4f", num(m, "val_accuracy"));
        if (num(m, "best_iteration") >= 0 && cJSON_GetObjectItemCaseSensitive(m, "best_val_accuracy"))
            printf("  (best val %.4f at step %.0f: test %.4f)", num(m, "best_val_accuracy"), num(m, "best_iteration"),
                   num(m, "test_accuracy_at_best_val"));
        printf("  sparsity %.4f  %.0f bytes  %s%s\n", num(m, "sparsity"), num(m, "bytes"), own ? "(no --out: not kept)" : "in ",
               own ? "" : out);
        cJSON_Delete(m);
    }
    return 0;
}
