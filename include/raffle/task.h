/* raffle task: one unit of work of a sweep (train, prune, lottery round,
 * distill, quantize, OFA stage), run the same way by the CLI front-ends,
 * by `raffle run TASK` in a worker's child process, and in-process.
 *
 * A task reads its settings (a canonical JSON object), its parents'
 * checkpoints, and the datasets; it writes OUT_DIR/model.rckpt and fills a
 * metrics object. It never does MPI or store policy (STYLE.md rule 9). */
#ifndef RAFFLE_TASK_H
#define RAFFLE_TASK_H

#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/data.h"
#include "raffle/nn.h"
#include "raffle/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_task_io {
    const cJSON  *settings;        /* borrowed: the task's canonical settings */
    int           n_parents;
    const char  *const *parent_ckpts; /* borrowed paths of parents' model.rckpt, DAG order */
    const char   *out_dir;         /* existing directory to write model.rckpt etc. */
    const rf_dataset *train, *test;/* borrowed, already loaded (settings "data") */
    volatile int *stop_flag;       /* preemption request (may be NULL) */
    void        (*log)(void *ud, const char *line);  /* progress (may be NULL) */
    void         *log_ud;
    /* Resumable training (docs/hpc.md). resume_from: a resume.rckpt left by
     * an earlier attempt of this same task (borrowed path; NULL: start
     * fresh). resume_every_s > 0: also save OUT_DIR/resume.rckpt that often
     * while training. Kinds that train through rf_task_train_resumable save
     * OUT_DIR/resume.rckpt when stop_flag ends the run and return
     * RF_ERR_PREEMPTED. */
    const char   *resume_from;
    double        resume_every_s;
    /* The task's identity (borrowed, may be NULL): its 16-hex-digit id and
     * the hash of its canonical settings. A resume point records both and
     * one that names another task or other settings is refused (issue 19,
     * defect 5: seed 0's state was accepted by seed 1). */
    const char   *task_id;
    const char   *settings_hash;
} rf_task_io;

/* A task kind's entry point: fills `metrics` (a cJSON object owned by the
 * caller) with at least "accuracy", "loss", "sparsity", "bytes", "parameters",
 * "seconds". Returns RF_OK or an error status with detail in ctx. */
typedef rf_status (*rf_task_fn)(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

typedef struct rf_task_kind {
    const char *name;      /* "train", "prune", "lottery", "distill", "quantize", "ofa-*" */
    rf_task_fn  run;
    int         needs_data;/* 1: rf_task_run loads settings "data" before calling run */
} rf_task_kind;

/* Looks up a kind by name; NULL if unknown. */
const rf_task_kind *rf_task_kind_find(const char *name);
/* Runs a task: loads data named by settings "data" (unless io gives it), calls
 * the kind named by settings "kind". */
rf_status rf_task_run(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

/* Fills cfg from the canonical training keys of a task's settings (see
 * docs/training.md): seed, epochs, iterations, batch, optimizer, lr, momentum,
 * weight_decay, schedule, warmup, label_smoothing, eval_limit (and clip_norm,
 * eval_every). Absent keys keep the defaults of "train" (Adam, lr 1e-3, cosine,
 * batch 128, 10 epochs). Unknown names or out-of-range values -> RF_ERR_INVALID
 * naming the key. Borrows settings. */
rf_status rf_task_train_cfg(rf_ctx *ctx, const cJSON *settings, rf_train_cfg *cfg);
/* Sets the defaults rf_task_train_cfg starts from. */
void      rf_task_train_cfg_default(rf_train_cfg *cfg);

/* rf_train with resumable state: restores params, masks, buffers,
 * optimizer moments and step from io->resume_from (which must come from the
 * same task: same parameter count), saves them atomically to
 * OUT_DIR/resume.rckpt every io->resume_every_s seconds and when stop_flag
 * stops the run (then returns RF_ERR_PREEMPTED). Data order and dropout are
 * functions of (seed, epoch, step), so a resumed run is bit-identical to an
 * uninterrupted one. res covers the whole run: steps counts from 0 and
 * best_accuracy/best_iteration include the saved ones. opt may be NULL.
 * cfg->stop_flag is taken from io. */
rf_status rf_task_train_resumable(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_dataset *train,
                                  const rf_dataset *test, const rf_train_cfg *cfg, rf_optim *opt,
                                  const rf_train_hooks *hooks, rf_train_result *res);
#define RF_TASK_RESUME_FILE "resume.rckpt"

/* Shared finishing step for every kind: saves the model to OUT_DIR/model.rckpt
 * (storage picked from masks / quantization), evaluates it, and adds the
 * common metrics: accuracy, loss, sparsity, layer_sparsity, collapsed_layers,
 * parameters, bytes, dense_bytes, compression_ratio, latency_ms,
 * dense_latency_ms, throughput. extra_json goes into the checkpoint metadata. */
rf_status rf_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m,
                         const char *extra_json, cJSON *metrics);

/* Accuracy and loss of m (borrowed) on ds at `batch`, run the way a deployed
 * model runs: layers pruned at least rf_deploy_eval_min_sparsity(batch) use
 * the sparse kernel (RF_DEPLOY_RULE: no timing, so the numbers repeat on
 * every run and rank), layers with an inference hook already (int8) keep
 * it. The sparse hooks are removed before returning. n_sparse (may be NULL)
 * gets the number of sparse sites. */
rf_status rf_evaluate_deployed(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, double *acc,
                               double *loss, int *n_sparse);
/* rf_evaluate_deployed on io's test split, capped by the "eval_limit"
 * setting, at batch 256: the accuracy every task reports. *acc = -1 and
 * *loss = 0 without a test split. */
rf_status rf_task_evaluate(rf_ctx *ctx, const rf_task_io *io, rf_model *m, double *acc, double *loss,
                           int *n_sparse);

#ifdef __cplusplus
}
#endif
#endif
