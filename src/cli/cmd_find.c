/* raffle find STORE/NAME KEY=VALUE ...: the task directories of a sweep
 * whose settings match, one per line (so `raffle eval $(raffle find ...
 * | head -1)/model.rckpt` works), or with --json their ids, labels,
 * states and settings.
 *
 * KEY is a task setting (flattened: "engine.conv", the fine-tuning "lr"),
 * or experiment, kind, method (the setting, else the method label: imp,
 * int8-ptq, dense), label, id (a prefix) and status (pending, running,
 * done, failed, skipped, preempted). Numbers compare as numbers
 * (sparsity=0.90 is 0.9). Every condition must hold. Exit 0 when something
 * matched, 1 when nothing did, 2 on a key no task has (with a did-you-mean). */
#include "cli/cli.h"
#include "raffle/job.h"
#include "raffle/report.h"
#include "raffle/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_COND = 32 };

int rf_cmd_find(int argc, char **argv) {
    int done = 0, json = 0;
    const char *pos[1 + MAX_COND];
    cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print {store, matched, tasks: [{id, label, status, dir, ...}]} on one line", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("find", "STORE/NAME [KEY=VALUE ...]",
                       "Prints the directories of a sweep's tasks whose settings match every KEY=VALUE\n"
                       "(e.g. method=synflow sparsity=0.9 seed=1; also experiment, kind, label, id, status).",
                       opts, argc, argv, pos, 1, 1 + MAX_COND, &done);
    if (rc || done) return rc;
    const char *key[MAX_COND], *val[MAX_COND];
    char kbuf[MAX_COND][128];
    int nc = 0;
    for (int i = 1; i <= MAX_COND && pos[i]; i++, nc++) {
        const char *eq = strchr(pos[i], '=');
        if (!eq || eq == pos[i] || (size_t)(eq - pos[i]) >= sizeof kbuf[0]) {
            cli_err("find", "'%s': expected KEY=VALUE", pos[i]);
            return 2;
        }
        snprintf(kbuf[nc], sizeof kbuf[nc], "%.*s", (int)(eq - pos[i]), pos[i]);
        key[nc] = kbuf[nc];
        val[nc] = eq + 1;
    }
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s = NULL;
    rf_job *job = NULL;
    rf_job_labels *labels = NULL;
    const char **state = NULL;
    rf_status st = rf_store_open_path(&ctx, pos[0], 0, &s);
    if (!st) st = rf_report_job(&ctx, s, &job);
    if (!st) st = rf_job_labels_new(&ctx, job, &labels);
    if (!st && !(state = rf_calloc((size_t)(job->n_tasks ? job->n_tasks : 1), sizeof *state)))
        st = rf_error(&ctx, RF_ERR_NOMEM, "out of memory");
    if (!st) st = rf_report_states(&ctx, s, job, state);
    rf_store_close(s);
    if (st) {
        rf_free(state);
        rf_job_labels_free(labels);
        rf_job_free(job);
        return cli_fail("find", &ctx, st);
    }
    rc = 0;
    for (int c = 0; c < nc && !rc; c++) {
        if (strcmp(key[c], "status") == 0 || rf_job_has_key(labels, key[c])) continue;
        const char *near = rf_job_key_suggest(labels, key[c]);
        cli_err("find", "no task of %s has a setting '%s'%s%s%s", pos[0], key[c], near ? " (did you mean '" : "", near ? near : "",
                near ? "'?)" : "");
        rc = 2;
    }
    cJSON *out = json && !rc ? cJSON_CreateObject() : NULL, *arr = out ? cJSON_AddArrayToObject(out, "tasks") : NULL;
    int matched = 0;
    for (int i = 0; i < job->n_tasks && !rc; i++) {
        cJSON *set = cJSON_Parse(rf_job_settings(job, i));
        int ok = set != NULL;
        for (int c = 0; ok && c < nc; c++)
            ok = strcmp(key[c], "status") == 0 ? strcmp(state[i], val[c]) == 0 : rf_job_task_match(labels, i, set, key[c], val[c]);
        if (ok) {
            char hx[17], dir[4200];
            rf_job_id_hex(job->tasks[i].id, hx);
            snprintf(dir, sizeof dir, "%s/tasks/%s", pos[0], hx);
            matched++;
            if (!arr) printf("%s\n", dir);
            else {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "id", hx);
                cJSON_AddStringToObject(t, "label", rf_job_label(labels, i));
                cJSON_AddStringToObject(t, "status", state[i]);
                cJSON_AddStringToObject(t, "dir", dir);
                cJSON_AddStringToObject(t, "experiment", job->exp_names[job->tasks[i].exp]);
                cJSON_AddStringToObject(t, "kind", rf_job_kind_name(job->tasks[i].kind));
                cJSON_AddItemToObject(t, "settings", set);
                set = NULL;
                cJSON_AddItemToArray(arr, t);
            }
        }
        cJSON_Delete(set);
    }
    if (out) {
        cJSON_AddStringToObject(out, "store", pos[0]);
        cJSON_AddNumberToObject(out, "matched", matched);
        cli_print_json(out);
    }
    rf_free(state);
    rf_job_labels_free(labels);
    rf_job_free(job);
    if (rc) return rc;
    if (!matched && !json) fprintf(stderr, "raffle find: no task of %s matches\n", pos[0]);
    return matched ? 0 : 1;
}
