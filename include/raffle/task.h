/* raffle task: one unit of work of a sweep (train, prune, lottery round,
 * distill, quantize, OFA stage), run the same way by the command line, by
 * `raffle run DIR` in a worker's child process, and in-process.
 *
 * Every task kind is ONE descriptor, rf_kind, in the file that implements
 * it (src/task/task_<kind>.c): its name, its settings (keys, types,
 * defaults, bounds, docs: raffle/settings.h), how a job's experiment
 * expands into tasks of it (raffle/plan.h), its runner, its parents and its
 * flags. src/job (validation, expansion), the child runner
 * (rf_task_run_dir), src/report (labels, plots), the command line (flags,
 * --help) and docs/jobs.md (generated: `raffle help --markdown`) all read
 * that descriptor; the table of descriptors is src/task/kinds.c.
 *
 * A task reads its settings (a canonical JSON object), its parents'
 * checkpoints and the datasets; it writes OUT_DIR/model.rckpt and fills a
 * metrics object. It never does MPI or store policy (CONTRIBUTING.md rule 9). */
#ifndef RAFFLE_TASK_H
#define RAFFLE_TASK_H

#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/data.h"
#include "raffle/nn.h"
#include "raffle/train.h"
#include "raffle/settings.h"
#include "raffle/distill.h"
#include "raffle/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_task_io {
    const cJSON  *settings;        /* borrowed: the task's canonical settings */
    int           n_parents;
    const char  *const *parent_ckpts; /* borrowed paths of parents' model.rckpt, DAG order */
    const char   *out_dir;         /* existing directory to write model.rckpt etc. */
    const rf_dataset *train, *test;/* borrowed, already loaded (settings "data") */
    /* borrowed: the validation split held out of the training set
     * (settings "validation"), the only set selection reads (best
     * iteration, early stopping, the lottery ticket's best); the test split
     * is evaluated at the end and reported. NULL: no validation split. */
    const rf_dataset *val;
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
    /* A file of OUT_DIR that is part of the resumable state (borrowed name,
     * NULL: none): rf_task_train_resumable stores its bytes in the resume
     * point and puts them back into OUT_DIR when resuming, so a state
     * written before a preemption survives it (the lottery's rewind point
     * at step K; it is not a parent's file, and a new attempt runs in a new
     * work directory). */
    const char   *resume_aux;
    int           log_every;       /* progress line every N training steps (0: the kind's default) */
    /* The task's identity (borrowed, may be NULL): its 16-hex-digit id and
     * the hash of its canonical settings. A resume point records both and
     * one that names another task or other settings is refused (issue 19,
     * defect 5: seed 0's state was accepted by seed 1). */
    const char   *task_id;
    const char   *settings_hash;
} rf_task_io;

/* A task kind's entry point: fills `metrics` (a cJSON object owned by the
 * caller) with at least "accuracy", "loss", "sparsity", "bytes", "parameters",
 * "seconds". The engine options are ctx->engine. Returns RF_OK or an error
 * status with detail in ctx. */
typedef rf_status (*rf_task_fn)(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

/* ---- kinds ------------------------------------------------------------------
 * Ids index the descriptor table; they are stored nowhere on disk (a task's
 * settings name its kind). Adding a kind: its file with one rf_kind, one
 * value here and one entry in src/task/kinds.c (CONTRIBUTING.md). */
typedef enum rf_job_kind {
    RF_JOB_TRAIN = 0, RF_JOB_PRUNE, RF_JOB_LOTTERY, RF_JOB_DISTILL, RF_JOB_QUANTIZE,
    RF_JOB_OFA_SPARSE, RF_JOB_OFA_TRANSFER, RF_JOB_OFA_QAT, RF_JOB_NOOP, RF_JOB_FAIL, RF_JOB_GMP,
    RF_JOB_KIND_COUNT_
} rf_job_kind;

/* rf_kind.flags */
enum {
    RF_KIND_DATA      = 1 << 0, /* rf_task_run loads settings "data" before calling run   */
    RF_KIND_TRAINS    = 1 << 1, /* the training keys (rf_train_settings) are settings of it */
    RF_KIND_STOP      = 1 << 2, /* stop-aware: a stop request ends it with RF_ERR_PREEMPTED */
    RF_KIND_RESUMABLE = 1 << 3, /* saves OUT_DIR/resume.rckpt and continues from it        */
    RF_KIND_CKPT      = 1 << 4, /* writes OUT_DIR/model.rckpt                               */
    RF_KIND_DIAG      = 1 << 5, /* sweep machinery diagnostics (no command, not in docs)    */
    RF_KIND_FROM      = 1 << 6, /* its experiment can start from an earlier one's models ("from") */
    RF_KIND_INT8      = 1 << 7, /* writes an int8 model (no later stage takes it)           */
    /* its model is a new one (a student), not its first parent's: unless
     * settings "init" is "parent", then the last parent's */
    RF_KIND_STUDENT   = 1 << 8,
};

/* The report's plot a kind's finished tasks appear in (src/report). */
typedef enum rf_kind_plot {
    RF_PLOT_NONE = 0, RF_PLOT_SPARSITY, RF_PLOT_LOTTERY, RF_PLOT_DISTILL, RF_PLOT_QUANT
} rf_kind_plot;

typedef struct rf_plan rf_plan;     /* raffle/plan.h */
typedef struct rf_point rf_point;

typedef struct rf_kind {
    const char *name;          /* the task kind ("train", "ofa-sparse"): settings "kind" */
    const char *summary;       /* one line (command list, --help, docs)                 */
    unsigned    flags;         /* RF_KIND_*                                             */
    /* The kind's task settings besides the common ones (data, model, seed,
     * engine, train_limit) and, with RF_KIND_TRAINS, the training keys:
     * what its runner reads, with the defaults it falls back to, and the
     * command line's flags. */
    const rf_setting *keys;
    /* Training keys this kind does not take (prune takes its length as
     * finetune_epochs / finetune_iterations); NULL-terminated, may be NULL. */
    const char *const *train_omit;
    /* The training keys are settings only when this holds ("mode=qat");
     * NULL: always. */
    const char *train_when;
    /* Parents: how many, and what they are (docs, --help). */
    int         min_parents, max_parents;
    const char *parents_doc;
    rf_task_fn  run;
    /* Job files: the experiment "kind" expanded by `expand`, its keys
     * besides the common experiment keys, and the expansion (a grid point
     * into tasks with parents). NULL experiment: only another kind's
     * expansion produces this kind. */
    const char *experiment;
    const rf_setting *exp_keys;
    const char *exp_doc;       /* the DAG the experiment expands to, for docs/jobs.md */
    int       (*expand)(rf_plan *p, const rf_point *pt);
    /* The report's "method" column for a task of this kind (buf has n
     * bytes; may return a static string). NULL: the kind's name. */
    const char *(*label)(const cJSON *settings, char *buf, size_t n);
    rf_kind_plot plot;
} rf_kind;

/* The descriptors (each defined in its kind's file; src/task/kinds.c is the
 * table of them, indexed by rf_job_kind). */
extern const rf_kind rf_kind_train, rf_kind_prune, rf_kind_lottery, rf_kind_distill, rf_kind_quantize,
    rf_kind_ofa_sparse, rf_kind_ofa_transfer, rf_kind_ofa_qat, rf_kind_noop, rf_kind_fail, rf_kind_gmp;

/* The descriptor of kind id k (RF_JOB_*), NULL if out of range. */
const rf_kind *rf_kind_get(int k);
/* Kind ids by task kind name / by job experiment name; -1 if unknown. */
int            rf_kind_find(const char *name);
int            rf_kind_find_experiment(const char *name);
/* Names of the experiment kinds, NULL-terminated (static). */
const char *const *rf_kind_experiment_names(void);
/* The common task settings: data, model, seed, engine, train_limit. */
extern const rf_setting rf_task_common_settings[];
/* The tables a kind's settings are checked against: common and data
 * preparation (rf_data_settings; kinds that read data), training (if the
 * kind trains), its own. Fills up to RF_KIND_MAX_TABLES, returns how many. */
#define RF_KIND_MAX_TABLES 4
int            rf_kind_tables(const rf_kind *k, const rf_setting *tabs[RF_KIND_MAX_TABLES]);
/* Completes settings s of kind k (in place): "kind", and the default of
 * every key of its tables that is absent (training keys only where
 * train_when holds, never train_omit ones). Returns 0 out of memory. */
int            rf_kind_complete(const rf_kind *k, cJSON *s);
/* A task's settings as a sweep stores them: a new object holding given
 * (borrowed), "kind" and every default rf_kind_complete adds, with every
 * object's keys sorted (byte order), the form a task's id hashes and its
 * checkpoint records. NULL when out of memory. */
cJSON         *rf_kind_settings(const rf_kind *k, const cJSON *given);
/* Checks s against kind k's tables (unknown keys, types, bounds, training
 * keys given where train_when does not hold). path prefixes errors;
 * RF_ERR_INVALID with the message in ctx. */
rf_status      rf_kind_check(rf_ctx *ctx, const rf_kind *k, const cJSON *s, const char *path);

/* Compatibility names (before the descriptors): rf_task_kind is rf_kind. */
typedef rf_kind rf_task_kind;
/* The descriptor of a task kind name, NULL if unknown. */
const rf_task_kind *rf_task_kind_find(const char *name);

/* ---- entry points (one per kind; rf_kind.run) -------------------------------- */
rf_status rf_task_train(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_prune(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_lottery(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_distill(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_quantize(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_ofa_sparse(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_ofa_transfer(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_ofa_qat(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_gmp(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

/* Runs a task: loads data named by settings "data" through rf_data_open
 * with the data preparation keys (unless io gives it: io->train, io->val,
 * io->test; "train_limit" keeps the first N training samples, after the
 * validation split), calls the kind named by settings "kind". */
rf_status rf_task_run(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
/* The data preparation keys of settings (rf_data_settings: validation,
 * split_seed, normalize, pad_to) as rf_data_open options; an absent
 * validation is the dataset's default. A value the table refuses is
 * RF_ERR_INVALID naming the key. Borrows settings (may be NULL). */
rf_status rf_task_data_opts(rf_ctx *ctx, const cJSON *settings, rf_data_opts *o);
/* rf_data_open of settings "data" with rf_task_data_opts: the splits a
 * task with these settings trained, selected and was tested on. Fills *sp
 * (free with rf_data_splits_free); errors name the dataset. */
rf_status rf_task_open_data(rf_ctx *ctx, const cJSON *settings, rf_data_splits *sp);

/* ---- the child's side of a sweep (`raffle run DIR`) ---------------------------
 * Reads DIR/task.json ({"id", "settings", "parents", optional "resume",
 * "resume_every_s"}), sets ctx's engine from the environment's defaults and
 * the settings' "engine" object, runs rf_task_run with out_dir DIR (a
 * stop-aware kind gets stop_flag, borrowed, may be NULL), and writes
 * DIR/metrics.json (deterministic keys at the top, timings under "timing",
 * the engine under "engine") and DIR/result.json ({"class", "status",
 * "message"}). The thread pool and GEMM rf_task_engine attached to ctx are
 * freed before it returns. Returns the task's status. */
rf_status rf_task_run_dir(rf_ctx *ctx, const char *dir, volatile int *stop_flag, int log_every);
/* The failure class name ("", "error", "nan", "oom", "timeout",
 * "preempted", "crash") result.json records for a task's status. */
const char *rf_task_status_class(rf_status s);
/* Moves timing keys (seconds, latency_ms, throughput, ...) of metrics into a
 * "timing" object so the rest is reproducible byte for byte. */
void      rf_task_split_timing(cJSON *metrics);
/* Sets ctx->engine for a task: the environment's defaults (a bad variable
 * is an error naming it), then the settings' "engine" object, keeping the
 * options that do not change results (threads: the caller's, from the
 * command line or the environment); applies the ISA option to the kernels
 * (process-wide, rf_kernels_force) and attaches the task's thread pool and
 * dense GEMM (raffle/gemm.h rf_gemm_attach; rf_gemm_detach frees them). */
rf_status rf_task_engine(rf_ctx *ctx, const cJSON *settings);
/* An "engine" settings object in its canonical form (value names as
 * strings, integers as numbers: "conv": 3 is "conv": "gemm"), so a job and
 * the command line write the same settings. New object; NULL when an entry
 * is not an engine option's value (check first) or out of memory. */
cJSON    *rf_task_engine_settings(const cJSON *engine);
/* A new object describing the engine that ran: "isa" (used), "cpu_isa",
 * "threads" (the task's pool), "dense" {backend: raffle | openblas, isa:
 * the GEMM's ISA or OpenBLAS's core}, "blas" {name, version, core, config},
 * and every option's effective value under "options" (what metrics.json
 * holds under "engine"). */
cJSON    *rf_task_engine_json(const rf_ctx *ctx);

/* The progress-line period a kind uses: 0 without io->log or when
 * io->log_every < 0, io->log_every when > 0, else the kind's default. */
int       rf_task_log_every(const rf_task_io *io, int dflt);

/* ---- helpers the kinds share --------------------------------------------------- */
/* The model a task starts from: the checkpoint at parent_ckpt if non-NULL
 * (trained weights and its mask), else the settings' "model" (preset name
 * or spec path) built for ds's samples (rf_model_create_for_data; ds may be
 * NULL) and initialised from seed. Errors name `kind`. Returns a new model;
 * free with rf_model_free. */
rf_status rf_task_open_model(rf_ctx *ctx, const char *kind, const char *parent_ckpt, const cJSON *settings,
                             const rf_dataset *ds, uint64_t seed, rf_model **out);
/* Best-of-N seconds of one inference forward of `batch` samples x into
 * *best: at least 5 and at most 200 runs, more while under budget_s (the
 * minimum is the most repeatable statistic on a shared machine). */
rf_status rf_task_time_forward(rf_ctx *ctx, rf_model *m, const float *x, int batch, double budget_s, double *best);
/* The checkpoint metadata ("extra") of a task that records its settings:
 * {"kind", "settings": io->settings, "teachers" (when teachers >= 0),
 * "steps" (when steps >= 0)} printed unformatted into *out (new; free()).
 * Deterministic content only: same settings, same bytes. */
rf_status rf_task_ckpt_extra(rf_ctx *ctx, const char *kind, const rf_task_io *io, int teachers, int64_t steps,
                             char **out);
/* Reads the distillation keys of settings into cfg: temperature and alpha
 * with tab's defaults (the kind's table: distill T 4, alpha 0.9; OFA T 2,
 * alpha 0.5), hidden_weight, proj_lr, and the seed. A value outside the
 * table's bounds is RF_ERR_INVALID naming it. */
rf_status rf_task_distill_cfg(rf_ctx *ctx, const cJSON *settings, const rf_setting *tab, rf_distill_cfg *cfg);
/* rf_task_distill_cfg with the "distill" kind's table. */
rf_status rf_distill_cfg_from_json(rf_ctx *ctx, const cJSON *settings, rf_distill_cfg *cfg);
/* Shared by "quantize" (mode qat) and "ofa-qat": QAT of m on io->train with
 * the task's training settings (observers frozen after "freeze_after" steps,
 * default half the run; "ema_decay"), distilling from t when non-NULL (dc
 * borrowed; NULL t: cross-entropy); the mask pattern of m, if any, stays
 * locked. formats (borrowed; NULL: int8 per channel) gives each product's
 * weight format (rf_quant_set_weights: int4 groups train against group
 * fake-quant). curve (borrowed; NULL: none) gets the run's training curve.
 * Returns the converted model description in *out (new;
 * rf_quant_free) with the integer path enabled on m. */
rf_status rf_ofa_run_qat(rf_ctx *ctx, const rf_task_io *io, rf_model *m, rf_teacher *t,
                         const rf_distill_cfg *dc, const rf_quant *formats, rf_train_curve *curve, rf_quant **out,
                         rf_train_result *res);
/* The finishing step of a task whose model m has q enabled: rf_task_finish
 * (evaluation and latency run the int8 path), then OUT_DIR/model.rckpt is
 * replaced by the int8 checkpoint (rf_quant_save) and "bytes" /
 * "compression_ratio" are set from its real size; adds "quantized": true,
 * "calib" and "int8_layers". */
rf_status rf_quant_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_quant *q,
                               const char *extra_json, cJSON *metrics);

/* ---- training ------------------------------------------------------------------ */
/* Fills cfg from the training keys of a task's settings (rf_train_settings
 * and "seed"): absent keys take the table's defaults; a value the table
 * refuses is RF_ERR_INVALID naming the key. Borrows settings (may be NULL). */
rf_status rf_task_train_cfg(rf_ctx *ctx, const cJSON *settings, rf_train_cfg *cfg);
/* rf_task_train_cfg of io->settings, wired to the task: progress lines to
 * io->log every rf_task_log_every(io, log_every) steps, io->stop_flag. */
rf_status rf_task_train_cfg_io(rf_ctx *ctx, const rf_task_io *io, int log_every, rf_train_cfg *cfg);
/* The table's defaults (rf_task_train_cfg of no settings). */
void      rf_task_train_cfg_default(rf_train_cfg *cfg);

/* rf_train(train, io->val, test) with resumable state: restores params,
 * masks, buffers, optimizer moments, step and the selection state (best
 * validation accuracy, its step, the model then) from io->resume_from
 * (which must come from the same task: same parameter count), saves them
 * atomically to OUT_DIR/resume.rckpt every io->resume_every_s seconds and
 * when stop_flag stops the run (then returns RF_ERR_PREEMPTED). Data order,
 * augmentation and dropout are functions of (seed, epoch, step), so a
 * resumed run is bit-identical to an uninterrupted one. res covers the
 * whole run: steps counts from 0 and best_val_accuracy/best_iteration
 * include the saved ones. Selection reads io->val only; test is evaluated
 * at the end. opt may be NULL. cfg->stop_flag and cfg->best are set here. */
rf_status rf_task_train_resumable(rf_ctx *ctx, const rf_task_io *io, rf_model *m, const rf_dataset *train,
                                  const rf_dataset *test, const rf_train_cfg *cfg, rf_optim *opt,
                                  const rf_train_hooks *hooks, rf_train_result *res);
#define RF_TASK_RESUME_FILE "resume.rckpt"
#define RF_TASK_RESUME_VERSION 3   /* the resume state's format version (task_train.c) */
/* Adds the selection metrics of a training run to metrics (replacing them):
 * best_val_accuracy, best_iteration (validation; -1 without a validation
 * split), test_accuracy_at_best_val (the test split at that step, reported,
 * never selected on). Returns 0 when out of memory. */
int       rf_task_add_selection(const rf_train_result *r, cJSON *metrics);

/* ---- finishing ------------------------------------------------------------------ */
/* Shared finishing step for every kind: saves the model to OUT_DIR/model.rckpt
 * (storage picked from masks / quantization), evaluates it, and adds the
 * common metrics: accuracy, loss, sparsity, layer_sparsity, collapsed_layers,
 * parameters, bytes, dense_bytes, compression_ratio, latency_ms,
 * dense_latency_ms, throughput, deploy_folded_batchnorms (the batch norms the
 * deployed form folds). extra_json goes into the checkpoint metadata. */
rf_status rf_task_finish(rf_ctx *ctx, const rf_task_io *io, rf_model *m,
                         const char *extra_json, cJSON *metrics);
/* compression_ratio's numerator (Han et al. 2016): the raw fp32 bytes (4 a
 * parameter or buffer) of the dense model at the root of the task's chain.
 * A task that continues a parent's model (its first parent; a student from
 * "init": "parent", its last) takes the number its parent's checkpoint
 * recorded (metadata extra.raw_fp32_bytes), so pruning, slicing, folding
 * and quantizing never shrink the baseline; a new model counts its own. */
double    rf_task_raw_fp32_bytes(const rf_task_io *io, const rf_model *m);
/* The checkpoint metadata a task writes: the kind's extra object (NULL:
 * {}) with "settings" (io's) and "raw_fp32_bytes" added when absent. New
 * string (cJSON_free); NULL when extra is not an object or out of memory. */
char     *rf_task_ckpt_meta(const char *extra_json, const rf_task_io *io, double raw_fp32_bytes);
/* Adds the training curve as "curve": [{"step", "train_loss",
 * "val_accuracy", "val_loss"}] (replacing one). 0 out of memory. */
int       rf_task_add_curve(cJSON *metrics, const rf_train_curve *c);
/* Accuracy of m on io's test and validation splits (as rf_task_finish
 * measures them; -1 without the split). */
rf_status rf_task_evaluate_both(rf_ctx *ctx, const rf_task_io *io, rf_model *m, double *test_acc, double *val_acc);

/* Accuracy and loss of m (borrowed) on ds at `batch`, run the way a deployed
 * model runs: batch norms folded into the conv / linear before them
 * (rf_deploy_fold, on a copy: m is not changed), layers pruned at least
 * rf_deploy_eval_min_sparsity(batch) use
 * the sparse kernel (RF_DEPLOY_RULE: no timing, so the numbers repeat on
 * every run and rank), layers with an inference hook already (int8) keep
 * it. The sparse hooks are removed before returning. n_sparse (may be NULL)
 * gets the number of sparse sites. logits (may be NULL): every sample's
 * logits [n, classes] (caller-allocated). */
rf_status rf_evaluate_deployed(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, double *acc,
                               double *loss, int *n_sparse, float *logits);
/* rf_evaluate_deployed on ds writing what m predicted, each file
 * atomically, so the accuracy can be checked outside raffle:
 *   PREFIX.logits.npy  float32 [n, classes]  every sample's logits, in ds's order
 *   PREFIX.pred.npy    int32 [n]             the predicted label: the first maximal logit
 *   PREFIX.labels.npy  int32 [n]             ds's labels
 * (mean(pred == labels) is *acc). A failure leaves none of the three. */
rf_status rf_task_write_predictions(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, const char *prefix,
                                    double *acc, double *loss, int *n_sparse);
/* The settings the task that wrote checkpoint `path` recorded in its
 * metadata (extra.settings), as a new object (cJSON_Delete), or *out = NULL
 * when it recorded none (a checkpoint not written by a task). */
rf_status rf_task_ckpt_settings(rf_ctx *ctx, const char *path, cJSON **out);
/* rf_evaluate_deployed on io's test split, capped by the "eval_limit"
 * setting, at batch 256: the accuracy every task reports. *acc = -1 and
 * *loss = 0 without a test split. */
rf_status rf_task_evaluate(rf_ctx *ctx, const rf_task_io *io, rf_model *m, double *acc, double *loss,
                           int *n_sparse);

#ifdef __cplusplus
}
#endif
#endif
