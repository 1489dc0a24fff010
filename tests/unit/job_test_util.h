/* Helpers shared by the job-level unit tests (test_label.c, test_report.c). */
#ifndef RAFFLE_TESTS_JOB_TEST_UTIL_H
#define RAFFLE_TESTS_JOB_TEST_UTIL_H

#include <stdio.h>
#include <string.h>
#include "raffle/job.h"

/* One task of a job put together by hand: its experiment (index into the
 * names given), kind, canonical settings and parent (-1: none). */
typedef struct hand { int exp, kind; const char *settings; int parent; } hand;

/* A job of the tasks h[0..n) in experiments exps[0..n_exp), as a job file
 * could not spell it yet (the stages the pipelines phase expands "from"
 * into: a stage per parent with equal settings of its own). Task i's id is
 * 0x1000000000000000 + i * 0x0101010101; the id index works (rf_job_find).
 * Free with rf_job_free. */
static inline rf_job *hand_job(const char *const *exps, int n_exp, const hand *h, int n) {
    rf_job *j = rf_calloc(1, sizeof *j);
    snprintf(j->name, sizeof j->name, "hand");
    j->n_experiments = n_exp;
    j->exp_names = rf_calloc((size_t)n_exp, sizeof *j->exp_names);
    for (int e = 0; e < n_exp; e++) j->exp_names[e] = rf_strdup(exps[e]);
    j->n_tasks = n;
    j->tasks = rf_calloc((size_t)n, sizeof *j->tasks);
    j->parents = rf_calloc((size_t)n, sizeof *j->parents);
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(h[i].settings) + 1;
    j->strings = rf_malloc(len);
    size_t off = 0;
    int np = 0;
    for (int i = 0; i < n; i++) {
        j->tasks[i].id = 0x1000000000000000ull + (uint64_t)i * 0x0101010101ull;
        j->tasks[i].exp = (uint32_t)h[i].exp;
        j->tasks[i].kind = (uint8_t)h[i].kind;
        j->tasks[i].settings_off = (uint32_t)off;
        memcpy(j->strings + off, h[i].settings, strlen(h[i].settings) + 1);
        off += strlen(h[i].settings) + 1;
        j->tasks[i].parent_off = (uint32_t)np;
        if (h[i].parent >= 0) { j->parents[np++] = h[i].parent; j->tasks[i].n_parents = 1; }
    }
    j->strings_len = len;
    /* the plan's id index (src/task/plan.c: linear probing from id * golden ratio) */
    j->id_index_cap = 16;
    while (j->id_index_cap < 2 * (size_t)n) j->id_index_cap *= 2;
    j->id_index = rf_malloc(j->id_index_cap * sizeof *j->id_index);
    for (size_t k = 0; k < j->id_index_cap; k++) j->id_index[k] = -1;
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)(j->tasks[i].id * 0x9E3779B97F4A7C15ull) & (j->id_index_cap - 1);
        while (j->id_index[k] >= 0) k = (k + 1) & (j->id_index_cap - 1);
        j->id_index[k] = i;
    }
    return j;
}

#endif
