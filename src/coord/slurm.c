/* What a sweep learns from Slurm (docs/hpc.md): the job's metadata for the
 * ledger and the report, the walltime end for preemption, and the task count
 * to check the MPI launch against. Only environment variables and, for the
 * end time where Slurm does not export SLURM_JOB_END_TIME (22.05 and older),
 * one `scontrol show job` call. */
#define _GNU_SOURCE
#include "raffle/coord.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Environment variable -> key in the "slurm" object. Numbers stay strings
 * where Slurm may put lists or ranges in them. */
static const struct { const char *var, *key; int number; } slurm_vars[] = {
    {"SLURM_JOB_ID",         "job_id",         0},
    {"SLURM_ARRAY_JOB_ID",   "array_job_id",   0},
    {"SLURM_ARRAY_TASK_ID",  "array_task_id",  0},
    {"SLURM_JOB_NODELIST",   "nodelist",       0},
    {"SLURM_JOB_PARTITION",  "partition",      0},
    {"SLURM_RESTART_COUNT",  "restart_count",  1},
    {"SLURM_NTASKS",         "ntasks",         1},
    {"SLURM_JOB_NUM_NODES",  "nodes",          1},
};

rf_status rf_slurm_env(rf_ctx *ctx, cJSON **out) {
    *out = NULL;
    if (!getenv("SLURM_JOB_ID")) return RF_OK;
    cJSON *o = cJSON_CreateObject();
    if (!o) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < sizeof slurm_vars / sizeof slurm_vars[0]; i++) {
        const char *v = getenv(slurm_vars[i].var);
        if (!v || !*v) continue;
        int64_t n = 0;
        int num = slurm_vars[i].number && rf_parse_i64(NULL, v, strlen(v), 0, INT32_MAX, slurm_vars[i].var, &n) == RF_OK;
        cJSON *item = num ? cJSON_CreateNumber((double)n) : cJSON_CreateString(v);
        if (!item) { cJSON_Delete(o); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
        cJSON_AddItemToObject(o, slurm_vars[i].key, item);
    }
    /* requeues: Slurm sets no SLURM_RESTART_COUNT before the first one */
    if (!cJSON_GetObjectItemCaseSensitive(o, "restart_count")) cJSON_AddNumberToObject(o, "restart_count", 0);
    *out = o;
    return RF_OK;
}

int rf_slurm_ntasks(void) {
    const char *v = getenv("SLURM_NTASKS");
    int64_t n = 0;
    return v && rf_parse_i64(NULL, v, strlen(v), 1, (1 << 24) - 1, "SLURM_NTASKS", &n) == RF_OK ? (int)n : 0;
}

rf_status rf_slurm_parse_end_time(rf_ctx *ctx, const char *text, double *end_epoch) {
    *end_epoch = 0;
    const char *p = text;
    /* "EndTime=" at the start of a word (not "...EndTime=" of another key) */
    while ((p = strstr(p, "EndTime=")) != NULL && p != text && !isspace((unsigned char)p[-1])) p++;
    if (!p) return rf_error(ctx, RF_ERR_FORMAT, "scontrol output has no EndTime");
    p += 8;
    if (strncmp(p, "Unknown", 7) == 0 || strncmp(p, "None", 4) == 0) return RF_OK;   /* no time limit */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *e = strptime(p, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e || (*e && !isspace((unsigned char)*e)))
        return rf_error(ctx, RF_ERR_FORMAT, "scontrol EndTime \"%.32s\" is not YYYY-MM-DDTHH:MM:SS", p);
    tm.tm_isdst = -1;   /* scontrol prints local time */
    time_t t = mktime(&tm);
    if (t == (time_t)-1) return rf_error(ctx, RF_ERR_FORMAT, "scontrol EndTime \"%.32s\" is out of range", p);
    *end_epoch = (double)t;
    return RF_OK;
}

rf_status rf_slurm_end_time(rf_ctx *ctx, double *end_epoch) {
    *end_epoch = 0;
    const char *v = getenv("SLURM_JOB_END_TIME");
    double t = 0;
    if (v && *v && rf_parse_f64(NULL, v, strlen(v), 1, 1e12, "SLURM_JOB_END_TIME", &t) == RF_OK) { *end_epoch = t; return RF_OK; }
    const char *id = getenv("SLURM_JOB_ID");
    if (!id || !*id) return RF_OK;
    /* the id goes into a shell command: digits (and an array "_N") only */
    for (const char *c = id; *c; c++)
        if (!isdigit((unsigned char)*c) && *c != '_') return rf_error(ctx, RF_ERR_INVALID, "SLURM_JOB_ID \"%.32s\" is not a job id", id);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "scontrol show job %s 2>/dev/null", id);
    FILE *f = popen(cmd, "r");
    if (!f) return rf_error(ctx, RF_ERR_IO, "cannot run scontrol");
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    int rc = pclose(f);
    if (rc != 0 || n == 0) return rf_error(ctx, RF_ERR_IO, "scontrol show job %s failed (exit %d)", id, rc);
    return rf_slurm_parse_end_time(ctx, buf, end_epoch);
}
