/* Fuzz target: job file JSON -> validated job and task DAG (rf_job_parse),
 * plus the summaries computed from a parsed job. The text is copied into a
 * buffer of exactly `size` bytes (no NUL) so a parser that reads past the
 * length it was given is caught by ASan. */
#include <stdlib.h>
#include <string.h>
#include "raffle/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    memcpy(s, data, size);
    rf_job *j = NULL;
    if (rf_job_parse(&ctx, s, size, "fuzz", &j) == RF_OK) {
        rf_job_summary sum;
        rf_job_summarize(j, &sum);
        int32_t *h = malloc(((size_t)j->n_tasks + 1) * sizeof *h);
        if (h) rf_job_heights(j, h);
        for (int i = 0; i < j->n_tasks; i++)
            if (rf_job_find(j, j->tasks[i].id) < 0) __builtin_trap();   /* every task findable by its id */
        free(h);
        rf_job_free(j);
    }
    free(s);
    return 0;
}
