/* Internal to src/task: settings entries that several kinds' tables hold
 * (raffle/settings.h), written once so they cannot disagree. */
#ifndef RAFFLE_TASK_KEYS_H
#define RAFFLE_TASK_KEYS_H

#include "raffle/settings.h"

/* QAT ("quantize" mode qat, "ofa-qat": rf_ofa_run_qat reads them). */
#define RF_KEY_FREEZE_AFTER {.key = "freeze_after", .type = RF_SET_INT, .flags = RF_SF_OPTIONAL, .lo = 1, .hi = 1e15, \
    .unit = "steps", .doc = "QAT: freeze the range observers after N steps (absent: half the run)"}
#define RF_KEY_EMA_DECAY {.key = "ema_decay", .type = RF_SET_NUM, .flags = RF_SF_OPTIONAL, .lo = 0, .hi = 1, .hi_open = 1, \
    .def = "0.99", .doc = "QAT: range EMA decay of the observers"}
/* Distillation from a teacher checkpoint ("distill", "ofa-*"). */
#define RF_KEY_TEACHER_CACHE {.key = "teacher_cache", .type = RF_SET_BOOL, .flags = RF_SF_OPTIONAL, .def = "true", \
    .alias = "cache", .doc = "compute the teacher's logits once (false: a teacher forward every batch)"}

/* The QAT keys as a table (rf_ofa_run_qat reads through it). */
extern const rf_setting rf_task_qat_keys[];

/* The "prune" experiment's keys, also the "quantize" experiment's `prune`
 * object (a pruned parent: Deep Compression's prune -> share pipeline). */
extern const rf_setting rf_prune_exp_keys[];
struct rf_plan;
struct rf_point;
/* Adds the prune task the experiment keys x (rf_prune_exp_keys) describe
 * for grid point pt, with its dense parent unless x's at_init; returns its
 * index or -1 (ctx of p set). */
int32_t rf_prune_plan_task(struct rf_plan *p, const struct rf_point *pt, const cJSON *x);

struct rf_prune_cfg;
/* Reads the settings' "layer_sparsity" {glob: rate} (absent: none) into
 * cfg's per-tensor rates ("prune" and "gmp" tasks). The patterns borrow
 * from st; the arrays are one new block, *owned (rf_free; NULL when
 * absent). */
rf_status rf_task_layer_rates(rf_ctx *ctx, const cJSON *st, struct rf_prune_cfg *cfg, void **owned);

#endif
