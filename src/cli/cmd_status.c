/* raffle status STORE/NAME: prints a sweep's status.json (rewritten by the
 * coordinator every few seconds) in a line a person reads, each running
 * task by its readable label (raffle/job.h), or as JSON (with "label" added
 * to each running worker). */
#include "cli/cli.h"
#include "raffle/job.h"
#include "raffle/report.h"
#include "raffle/store.h"

#include <stdio.h>

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int rf_cmd_status(int argc, char **argv) {
    int done = 0, json = 0;
    const char *pos[1];
    cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, "print status.json on one line", 0},
        {NULL, 0, NULL, NULL, NULL, 0},
    };
    int rc = cli_parse("status", "STORE/NAME", "Prints the status of a running or finished sweep.", opts, argc, argv, pos, 1, 1, &done);
    if (rc || done) return rc;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_store *s;
    rf_status st = rf_store_open_path(&ctx, pos[0], 0, &s);
    unsigned char *buf = NULL;
    size_t n = 0;
    if (!st) st = rf_store_read(&ctx, s, "status.json", &buf, &n);
    /* the labels come from the store's job; without one, ids it is */
    rf_job *job = NULL;
    rf_job_labels *labels = NULL;
    rf_ctx jctx;
    rf_ctx_init(&jctx);
    if (!st && rf_report_job(&jctx, s, &job) == RF_OK && rf_job_labels_new(&jctx, job, &labels) != RF_OK) labels = NULL;
    rf_store_close(s);
    if (st) return cli_fail("status", &ctx, st);
    cJSON *o = cJSON_ParseWithLength((const char *)buf, n);
    rf_free(buf);
    if (!o) { rf_job_labels_free(labels); rf_job_free(job); cli_err("status", "%s/status.json: not valid JSON", pos[0]); return 1; }
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(o, "workers");
    for (cJSON *w = ws ? ws->child : NULL; w && labels; w = w->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "task");
        uint64_t id;
        int i = cJSON_IsString(t) && !rf_job_id_parse(t->valuestring, &id) ? rf_job_find(job, id) : -1;
        if (i >= 0) cJSON_AddStringToObject(w, "label", rf_job_label(labels, i));
    }
    rf_job_labels_free(labels);
    rf_job_free(job);
    if (json) { cli_print_json(o); return 0; }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name"), *state = cJSON_GetObjectItemCaseSensitive(o, "state"),
                *up = cJSON_GetObjectItemCaseSensitive(o, "updated");
    printf("%s: %s (updated %s): %.0f/%.0f done (%.0f reused), %.0f running, %.0f failed, %.0f skipped, %.0f queued; "
           "elapsed %.0f s, ETA %.0f s\n",
           cJSON_IsString(nm) ? nm->valuestring : "?", cJSON_IsString(state) ? state->valuestring : "?",
           cJSON_IsString(up) ? up->valuestring : "?", num(o, "done"), num(o, "total"), num(o, "reused"), num(o, "running"),
           num(o, "failed"), num(o, "skipped"), num(o, "queued"), num(o, "elapsed_s"), num(o, "eta_s"));
    for (const cJSON *w = ws ? ws->child : NULL; w; w = w->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "task"), *k = cJSON_GetObjectItemCaseSensitive(w, "kind"),
                    *l = cJSON_GetObjectItemCaseSensitive(w, "label");
        if (cJSON_IsString(t) && cJSON_IsString(l))
            printf("  rank %.0f: running %s [%.8s] for %.0f s\n", num(w, "rank"), l->valuestring, t->valuestring, num(w, "running_s"));
        else if (cJSON_IsString(t))
            printf("  rank %.0f: running %s %s for %.0f s\n", num(w, "rank"), cJSON_IsString(k) ? k->valuestring : "?", t->valuestring, num(w, "running_s"));
        else printf("  rank %.0f: idle\n", num(w, "rank"));
    }
    cJSON_Delete(o);
    return 0;
}
