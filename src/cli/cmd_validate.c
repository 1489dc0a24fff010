/* raffle validate JOB.json: checks a job file completely before any work and
 * prints its task DAG summary (tasks per kind, longest chain, cost estimate). */
#include "cli/cli.h"
#include "raffle/job.h"

#include <stdio.h>
#include <string.h>

static void print_dur(double s) {
    if (s < 120) printf("%.0f s", s);
    else if (s < 7200) printf("%.1f min", s / 60);
    else printf("%.1f h", s / 3600);
}

int rf_cmd_validate(int argc, char **argv) {
    int done = 0, json = 0, list = 0;
    const char *pos[1];
    cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print the summary as one JSON object", 0},
        {"list", CLI_FLAG, &list, NULL, "also list every task: id, kind, parents, settings", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("validate", "JOB.json", "Checks a job file (every key, type and range; errors name the JSON path)\n"
                       "and prints the task DAG it expands to.", opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_diag diag = {0};
    ctx.diag = &diag;   /* every error of the job, not only the first */
    rf_job *j;
    rf_status s = rf_job_load(&ctx, pos[0], &j);
    if (s) {
        int rc = cli_fail_all("validate", &ctx, s, pos[0]);
        rf_diag_free(&diag);
        return rc;
    }
    rf_diag_free(&diag);
    rf_job_summary sum;
    rf_job_summarize(j, &sum);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", j->name);
        cJSON_AddNumberToObject(o, "tasks", sum.n_tasks);
        cJSON *k = cJSON_AddObjectToObject(o, "per_kind");
        for (int i = 0; i < RF_JOB_KIND_COUNT_; i++)
            if (sum.per_kind[i]) cJSON_AddNumberToObject(k, rf_job_kind_name(i), sum.per_kind[i]);
        cJSON_AddNumberToObject(o, "longest_chain", sum.longest_chain);
        cJSON_AddNumberToObject(o, "roots", sum.n_roots);
        cJSON_AddNumberToObject(o, "deduplicated", j->n_dedup);
        cJSON_AddNumberToObject(o, "est_seconds", sum.est_seconds);
        cJSON_AddNumberToObject(o, "est_critical_path_seconds", sum.est_critical_s);
        if (list) {
            cJSON *a = cJSON_AddArrayToObject(o, "task_list");
            for (int i = 0; i < j->n_tasks; i++) {
                cJSON *t = cJSON_CreateObject();
                char hx[17];
                rf_job_id_hex(j->tasks[i].id, hx);
                cJSON_AddStringToObject(t, "id", hx);
                cJSON_AddStringToObject(t, "kind", rf_job_kind_name(j->tasks[i].kind));
                cJSON *p = cJSON_AddArrayToObject(t, "parents");
                for (int k2 = 0; k2 < j->tasks[i].n_parents; k2++) {
                    rf_job_id_hex(j->tasks[rf_job_parents(j, i)[k2]].id, hx);
                    cJSON_AddItemToArray(p, cJSON_CreateString(hx));
                }
                cJSON_AddItemToObject(t, "settings", cJSON_Parse(rf_job_settings(j, i)));
                cJSON_AddItemToArray(a, t);
            }
        }
        cli_print_json(o);
        rf_job_free(j);
        return 0;
    }
    printf("%s: ok: job \"%s\", %d experiment(s) -> %d tasks", pos[0], j->name, j->n_experiments, sum.n_tasks);
    if (j->n_dedup) printf(" (%d duplicate task(s) merged)", j->n_dedup);
    printf("\n  tasks per kind:");
    for (int i = 0; i < RF_JOB_KIND_COUNT_; i++)
        if (sum.per_kind[i]) printf(" %s %d", rf_job_kind_name(i), sum.per_kind[i]);
    printf("\n  longest chain: %d tasks; %d root task(s)\n  estimated cost: ", sum.longest_chain, sum.n_roots);
    print_dur(sum.est_seconds);
    printf(" on one core; critical path ");
    print_dur(sum.est_critical_s);
    printf("\n  limits per task: %llu MiB, %g s, %d retr%s\n", (unsigned long long)(j->limits.memory_bytes >> 20),
           j->limits.time_s, j->limits.retries, j->limits.retries == 1 ? "y" : "ies");
    if (list) {
        for (int i = 0; i < j->n_tasks; i++) {
            char hx[17];
            rf_job_id_hex(j->tasks[i].id, hx);
            printf("  %s %-12s parents [", hx, rf_job_kind_name(j->tasks[i].kind));
            for (int k = 0; k < j->tasks[i].n_parents; k++) {
                rf_job_id_hex(j->tasks[rf_job_parents(j, i)[k]].id, hx);
                printf("%s%s", k ? " " : "", hx);
            }
            printf("] %s\n", rf_job_settings(j, i));
        }
    }
    rf_job_free(j);
    return 0;
}
