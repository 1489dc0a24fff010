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

/* Report columns, in report.csv order; report.json's task objects have the
 * same keys (plus "settings"). */
extern const char *const rf_report_columns[];

/* Builds the report object {"name", "summary": {...}, "tasks": [...]} from the
 * store. job may be NULL (then job.json is read from the store). Returns a
 * new object; free with cJSON_Delete. */
rf_status rf_report_build(rf_ctx *ctx, rf_store *s, const rf_job *job, cJSON **out);
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
