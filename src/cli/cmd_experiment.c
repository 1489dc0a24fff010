/* raffle lottery | ofa [flags]: a whole experiment of a job file, run here.
 *
 * The flags are the experiment's keys (the kind's descriptor, rf_kind.
 * exp_keys: --rounds, --rate, --controls, ...; training objects as
 * --qat-train-lr), the training keys of the job's "train" and data, model,
 * seed: the command builds the one-experiment job they spell, expands it
 * with the same code a sweep uses (rf_job_parse), and runs its tasks in
 * order, each the way a worker does (cli_run_kind), in DIR/NN-LABEL/ (NN the
 * task's position in the DAG's order, LABEL its report label: dense, imp,
 * imp-reinit, ...). So the chain of lottery rounds or the OFA pipeline here
 * is the sweep's, task for task. */
#include "cli/cli.h"
#include "raffle/job.h"

#include <stdio.h>
#include <string.h>

static double num(const cJSON *m, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

/* Routes the flat flags into a job: data/model/seed at the top level,
 * training keys under "train", engine, the kind's keys in the experiment. */
static cJSON *job_of(const rf_kind *k, const cJSON *flags, cJSON *engine) {
    cJSON *job = cJSON_CreateObject(), *train = cJSON_CreateObject(), *exp = cJSON_CreateObject();
    cJSON *exps = cJSON_CreateArray();
    int ok = job && train && exp && exps && cJSON_AddStringToObject(job, "name", "cli") &&
             cJSON_AddStringToObject(exp, "kind", k->experiment);
    for (const cJSON *c = flags ? flags->child : NULL; ok && c; c = c->next) {
        cJSON *d = cJSON_Duplicate(c, 1);
        const char *key = strcmp(c->string, "data") == 0 ? "dataset" : c->string;
        cJSON *into = rf_setting_find(rf_task_common_settings, c->string) || rf_setting_find(rf_data_settings, c->string) ? job
                    : rf_setting_find(rf_train_settings, c->string) ? train : exp;
        ok = d && cJSON_AddItemToObject(into, key, d);
        if (!ok) cJSON_Delete(d);
    }
    ok = ok && cJSON_AddItemToObject(job, "train", train) && (train = NULL, 1);
    ok = ok && cJSON_AddItemToArray(exps, exp) && (exp = NULL, 1);
    ok = ok && cJSON_AddItemToObject(job, "experiments", exps) && (exps = NULL, 1);
    if (ok && engine) ok = cJSON_AddItemToObject(job, "engine", cJSON_Duplicate(engine, 1)) != 0;
    cJSON_Delete(train); cJSON_Delete(exp); cJSON_Delete(exps);
    if (!ok) { cJSON_Delete(job); return NULL; }
    return job;
}

int cli_experiment_main(const rf_kind *k, int argc, char **argv) {
    const char *cmd = k->experiment, *out = NULL;
    static cli_list engine;
    memset(&engine, 0, sizeof engine);
    int json = 0, threads = 1, log_every = 0;
    const cli_opt opts[] = {
        {"out|out-dir", CLI_STR, &out, "DIR", "DIR/NN-LABEL/{model.rckpt,metrics.json,task.json} for every task", 1},
        {"engine", CLI_LIST, &engine, "KEY=VALUE", "engine option (docs/engine.md); repeatable", 0},
        {"threads", CLI_INT, &threads, "N", "BLAS threads (default 1)", CLI_POSITIVE},
        {"log-every", CLI_INT, &log_every, "N", "progress line every N training steps (0: the kinds' defaults; -1: none)", CLI_NEGATIVE_OK},
        {"json", CLI_FLAG, &json, NULL, "print {\"tasks\": [...]} (every task's metrics) as one JSON object", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    static const char *const omit[] = {"engine", "train_limit", NULL};
    cJSON *flags = cJSON_CreateObject();
    if (!flags) { cli_err(cmd, "out of memory"); return 1; }
    cli_tables t = {.tab = {rf_task_common_settings, rf_data_settings, rf_train_settings, k->exp_keys}, .n = 4, .omit = omit,
                    .settings = flags,
                    .title = {"data, model, seed (a job's top level)", "data preparation (a job's top level; docs/data.md)",
                              "training (a job's \"train\")", "the experiment's keys (docs/jobs.md)"}};
    char summary[1200];
    snprintf(summary, sizeof summary,
             "%s.\nRuns a job's \"%s\" experiment here, task for task as a sweep runs it: %s.",
             k->summary, k->experiment, k->exp_doc ? k->exp_doc : "");
    int done = 0;
    int rc = cli_parse_settings(cmd, "--data D --model M --out DIR [flags]", summary, opts, &t, argc, argv, NULL, 0, 0, &done);
    if (rc || done) { cJSON_Delete(flags); return rc; }
    cJSON *eng = cJSON_CreateObject();
    rc = eng ? cli_engine_settings(cmd, &engine, eng) : 1;
    cJSON *job = rc ? NULL : job_of(k, flags, cJSON_GetObjectItemCaseSensitive(eng, "engine"));
    cJSON_Delete(flags);
    cJSON_Delete(eng);
    if (rc) return rc;
    char *text = job ? cJSON_PrintUnformatted(job) : NULL;
    cJSON_Delete(job);
    if (!text) { cli_err(cmd, "out of memory"); return 1; }
    cli_set_threads(threads);
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_job *j = NULL;
    rf_status s = rf_job_parse(&ctx, text, strlen(text), "cli", &j);
    cJSON_free(text);
    if (s != RF_OK) { cli_err(cmd, "%s", rf_ctx_error(&ctx)); return 2; }
    s = rf_mkdirs(&ctx, out);
    if (s != RF_OK) { rf_job_free(j); return cli_fail(cmd, &ctx, s); }
    char (*dirs)[1100] = rf_calloc((size_t)j->n_tasks, sizeof *dirs);
    cJSON *all = cJSON_CreateArray();
    if (!dirs || !all) { rf_free(dirs); cJSON_Delete(all); rf_job_free(j); cli_err(cmd, "out of memory"); return 1; }
    rc = 0;
    for (int i = 0; i < j->n_tasks && !rc; i++) {
        const rf_kind *tk = rf_kind_get(j->tasks[i].kind);
        cJSON *st = cJSON_Parse(rf_job_settings(j, i));
        char lb[64];
        const char *label = tk->label ? tk->label(st, lb, sizeof lb) : tk->name;
        snprintf(dirs[i], sizeof dirs[i], "%s/%02d-%s", out, i, label);
        const char *parents[8];
        char paths[8][1200];
        int np = j->tasks[i].n_parents < 8 ? j->tasks[i].n_parents : 8;
        for (int p = 0; p < np; p++) {
            snprintf(paths[p], sizeof paths[p], "%s/model.rckpt", dirs[rf_job_parents(j, i)[p]]);
            parents[p] = paths[p];
        }
        fprintf(stderr, "raffle %s: task %d of %d: %s (%s) in %s\n", cmd, i + 1, j->n_tasks, tk->name, label, dirs[i]);
        cJSON *m = st ? cli_run_kind(cmd, tk, st, parents, np, dirs[i], log_every) : NULL;
        cJSON_Delete(st);
        if (!m) { rc = 1; break; }
        cJSON_AddStringToObject(m, "dir", dirs[i]);
        cJSON_AddStringToObject(m, "kind", tk->name);
        cJSON_AddStringToObject(m, "label", label);
        cJSON_AddItemToArray(all, m);
    }
    rf_free(dirs);
    rf_job_free(j);
    if (rc) { cJSON_Delete(all); return rc; }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "tasks", all);
        cli_print_json(o);
    } else {
        const cJSON *e;
        printf("%-44s %-13s %9s %9s %9s %10s\n", "task", "kind", "val acc", "test acc", "sparsity", "bytes");
        cJSON_ArrayForEach(e, all)
            printf("%-44s %-13s %9.4f %9.4f %9.4f %10.0f\n", cJSON_GetObjectItem(e, "dir")->valuestring,
                   cJSON_GetObjectItem(e, "kind")->valuestring, num(e, "val_accuracy"), num(e, "accuracy"), num(e, "sparsity"),
                   num(e, "bytes"));
        cJSON_Delete(all);
    }
    return 0;
}
