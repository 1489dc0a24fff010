/* raffle report: aggregates a sweep's store into report.json, report.csv and
 * a self-contained report.html with inline SVG plots (docs/jobs.md).
 *
 * Inputs are the store only: job.json (re-expanded for the task list and
 * each task's settings), the ledger (status, attempts, failure class and
 * message) and tasks/ID/metrics.json. So `raffle report STORE/NAME` after a
 * sweep reproduces what the sweep wrote, and works on a partial store. */
#ifndef RAFFLE_REPORT_H
#define RAFFLE_REPORT_H

#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/job.h"
#include "raffle/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Report columns, in report.csv order (then one column per varied setting,
 * the report's "setting_columns"); report.json's task objects have the same
 * keys plus "series", "link", "settings", "engine_detail" and, where the
 * metrics have them, "layer_remaining" and "curve" (docs/jobs.md). */
extern const char *const rf_report_columns[];

/* One sweep of a report: its store (borrowed), its job (borrowed; NULL:
 * read the store's job.json), its name in a comparison (NULL: the job's
 * name) and the path from the report's directory to the store's (links to
 * each task's log and metrics; NULL or "" when the report is in the store). */
typedef struct rf_report_source {
    rf_store     *store;
    const rf_job *job;
    const char   *sweep;
    const char   *link;
} rf_report_source;

/* Builds one report over n sweeps (n > 1: a comparison; labels, groups and
 * series start with the sweep's name, so sweeps are never averaged
 * together). Returns a new object; free with cJSON_Delete. */
rf_status rf_report_build_sources(rf_ctx *ctx, const rf_report_source *src, int n, cJSON **out);
/* Writes report.json, report.csv and report.html of rep into directory dir
 * (created when missing; each file atomically). */
rf_status rf_report_write_dir(rf_ctx *ctx, const char *dir, const cJSON *rep);

/* Builds the report object {"name", "summary": {...}, "tasks": [...]} from the
 * store. job may be NULL (then job.json is read from the store). Returns a
 * new object; free with cJSON_Delete. */
rf_status rf_report_build(rf_ctx *ctx, rf_store *s, const rf_job *job, cJSON **out);
/* The job of a store (its job.json, named after the store when it has no
 * "name"; pipelines resolved with rf_report_job_text). Returns a new job; free with rf_job_free. */
rf_status rf_report_job(rf_ctx *ctx, rf_store *s, rf_job **out);
/* What store s (borrowed) knows of its tasks, for pipelines' `best`
 * selections (raffle/job.h rf_job_facts): each task's latest ledger state,
 * a done task's metric from its metrics.json. rf_report_fact is the
 * rf_job_fact_fn (ud: the rf_report_facts). Free with rf_report_facts_free. */
typedef struct rf_report_facts rf_report_facts;
rf_status rf_report_facts_open(rf_ctx *ctx, rf_store *s, rf_report_facts **out);
void      rf_report_facts_free(rf_report_facts *f);   /* accepts NULL */
rf_fact   rf_report_fact(void *ud, uint64_t id, const char *metric, double *value);
/* Parses job text (n bytes; hint names it when it has no "name"; pins,
 * may be NULL, the files' digests as rf_job_parse_pinned takes them) with
 * the facts of store s, so its `best` stages expand when their candidates
 * have ended. log (may be NULL): every fact read is added to it, in the
 * form rf_job_fact_json reads (what rank 0 sends the other ranks). */
rf_status rf_report_job_text(rf_ctx *ctx, rf_store *s, const char *text, size_t n, const char *hint, const char *pins,
                             cJSON *log, rf_job **out);
/* Each task's state as the store's ledger records it: out[i] (job->n_tasks
 * entries) gets "pending", "running", "done", "failed", "skipped" or
 * "preempted" (static strings; the report also demotes a "done" task whose
 * metrics.json cannot be read to "pending"). */
rf_status rf_report_states(rf_ctx *ctx, rf_store *s, const rf_job *job, const char **out);
/* Writes report.json, report.csv and report.html into the store. */
rf_status rf_report_write(rf_ctx *ctx, rf_store *s, const rf_job *job);
/* Opens the store directory DIR ("results/NAME") and writes the three files. */
rf_status rf_report_generate(rf_ctx *ctx, const char *dir);
/* Renders the HTML page for a report object; returns a new string (rf_free). */
rf_status rf_report_html(rf_ctx *ctx, const cJSON *report, char **out);

#ifdef __cplusplus
}
#endif
#endif
