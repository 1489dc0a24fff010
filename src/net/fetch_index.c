/* The report index a remote store serves (report.json), read by
 * `raffle fetch --checkpoints` to name the checkpoints to download. The
 * server is not trusted: a task id becomes a path component of the local
 * destination, so only the 16-hex-digit form the job module produces
 * (rf_job_id_hex) is accepted, never "..", "/" or an empty string. */
#include "raffle/net.h"

#include <cjson/cJSON.h>
#include <string.h>

static int is_task_id(const char *s) {
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= 16 || !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return i == 16;
}

rf_status rf_fetch_index_parse(rf_ctx *ctx, const char *text, size_t n, char (**ids)[17], int *count) {
    *ids = NULL;
    *count = 0;
    cJSON *rep = cJSON_ParseWithLength(text, n);
    if (!rep) return rf_error(ctx, RF_ERR_FORMAT, "report.json: not valid JSON");
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(rep, "tasks");
    if (!cJSON_IsArray(tasks)) { cJSON_Delete(rep); return rf_error(ctx, RF_ERR_FORMAT, "report.json: no 'tasks' array"); }
    int total = cJSON_GetArraySize(tasks);
    rf_status s = rf_check_cap(ctx, (uint64_t)total * sizeof **ids, "report.json task index");
    char (*out)[17] = NULL;
    if (!s && total > 0 && !(out = rf_malloc((size_t)total * sizeof *out)))
        s = rf_error(ctx, RF_ERR_NOMEM, "report.json: out of memory");
    int k = 0, i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tasks) {
        if (s) break;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(t, "status");
        if (!cJSON_IsObject(t) || !cJSON_IsString(id) || !is_task_id(id->valuestring))
            s = rf_error(ctx, RF_ERR_FORMAT, "report.json: tasks[%d].id is not a 16-hex-digit task id", i);
        else if (st && !cJSON_IsString(st))
            s = rf_error(ctx, RF_ERR_FORMAT, "report.json: tasks[%d].status is not a string", i);
        else if (!st || strcmp(st->valuestring, "done") == 0)
            memcpy(out[k++], id->valuestring, 17);
        i++;
    }
    cJSON_Delete(rep);
    if (s) { rf_free(out); return s; }
    if (k == 0) { rf_free(out); out = NULL; }
    *ids = out;
    *count = k;
    return RF_OK;
}
