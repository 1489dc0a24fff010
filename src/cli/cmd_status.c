/* raffle status STORE/NAME: prints a sweep's status.json (rewritten by the
 * coordinator every few seconds) in a line a person reads, or as JSON. */
#include "cli/cli.h"
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
    rf_store_close(s);
    if (st) return cli_fail("status", &ctx, st);
    cJSON *o = cJSON_ParseWithLength((const char *)buf, n);
    rf_free(buf);
    if (!o) { cli_err("status", "%s/status.json: not valid JSON", pos[0]); return 1; }
    if (json) { cli_print_json(o); return 0; }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name"), *state = cJSON_GetObjectItemCaseSensitive(o, "state"),
                *up = cJSON_GetObjectItemCaseSensitive(o, "updated");
    printf("%s: %s (updated %s): %.0f/%.0f done (%.0f reused), %.0f running, %.0f failed, %.0f skipped, %.0f queued; "
           "elapsed %.0f s, ETA %.0f s\n",
           cJSON_IsString(nm) ? nm->valuestring : "?", cJSON_IsString(state) ? state->valuestring : "?",
           cJSON_IsString(up) ? up->valuestring : "?", num(o, "done"), num(o, "total"), num(o, "reused"), num(o, "running"),
           num(o, "failed"), num(o, "skipped"), num(o, "queued"), num(o, "elapsed_s"), num(o, "eta_s"));
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(o, "workers");
    for (const cJSON *w = ws ? ws->child : NULL; w; w = w->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "task"), *k = cJSON_GetObjectItemCaseSensitive(w, "kind");
        if (cJSON_IsString(t))
            printf("  rank %.0f: running %s %s for %.0f s\n", num(w, "rank"), cJSON_IsString(k) ? k->valuestring : "?", t->valuestring, num(w, "running_s"));
        else printf("  rank %.0f: idle\n", num(w, "rank"));
    }
    cJSON_Delete(o);
    return 0;
}
