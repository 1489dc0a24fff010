/* raffle train: the training loop every compression method runs inside,
 * evaluation, and model <-> checkpoint conversion.
 *
 * Methods plug in through hooks instead of forking the loop: gradual pruning
 * updates masks in before_step, distillation replaces the loss, QAT installs
 * an activation hook and swaps in fake-quantized weights around each step. */
#ifndef RAFFLE_TRAIN_H
#define RAFFLE_TRAIN_H

#include "raffle/core.h"
#include "raffle/nn.h"
#include "raffle/data.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_train_hooks {
    void *ud;
    /* Before each step's forward (step counts from 0 over the whole run). May
     * change masks/params (gradual pruning, weight fake-quant). */
    rf_status (*before_step)(void *ud, rf_model *m, int64_t step, int64_t total_steps);
    /* Replaces the loss. x: the batch input, idx: dataset indices of the batch.
     * Must fill dlogits [batch, classes] and *loss. */
    rf_status (*loss)(void *ud, rf_model *m, const float *x, const float *logits,
                      const int32_t *labels, const int64_t *idx, int batch,
                      float *dlogits, float *loss);
    /* After backward, before the optimizer step (grad surgery, STE). */
    rf_status (*after_backward)(void *ud, rf_model *m, int64_t step);
    /* After the optimizer step (restore shadow weights, re-apply masks). */
    rf_status (*after_step)(void *ud, rf_model *m, int64_t step);
    /* After each epoch, with that epoch's validation accuracy (-1 if not
     * evaluated: no validation split, or eval_every > 0). */
    rf_status (*after_epoch)(void *ud, rf_model *m, int epoch, double val_acc);
} rf_train_hooks;

/* Validation-based selection (docs/training.md): the best validation
 * accuracy so far, the step it was reached at, and a copy of the model then
 * (parameters and buffers), from which the test split is evaluated once at
 * the end. The caller may own it (rf_train_cfg.best) so that it survives a
 * preemption: a resumed run passes in what the interrupted one had. */
typedef struct rf_train_best {
    double   val_accuracy;   /* -1: none yet */
    double   val_loss;
    int64_t  iteration;      /* steps done when it was reached; -1: none yet */
    float   *params;         /* [n_params] (owned; NULL until the first best, or without a test split) */
    float   *buffers;        /* [n_buffers] (owned; NULL when the model has none) */
    size_t   n_params, n_buffers;
} rf_train_best;
/* No best yet, no copy. */
void rf_train_best_init(rf_train_best *b);
/* Frees the copy and re-initialises b; accepts NULL. */
void rf_train_best_free(rf_train_best *b);

/* The training curve (issue 23: kept per task): one point per evaluation
 * (each eval_every steps or epoch end, and the end of the run): the steps
 * done, the mean training loss of the steps since the previous point, and
 * the validation split's accuracy and loss (-1 / NaN without one). The
 * caller owns it; rf_train appends (v grows with rf_realloc; free v with
 * rf_free). A resumed run appends from its start step on. */
typedef struct rf_train_point { int64_t step; double train_loss, val_accuracy, val_loss; } rf_train_point;
typedef struct rf_train_curve {
    rf_train_point *v;
    int     n, cap;
    /* the training loss since the last point (sum, steps): a resumed run
     * carries it over, so its curve is the uninterrupted run's */
    double  pend_sum;
    int64_t pend_n;
} rf_train_curve;
/* Appends p to c (v grows with rf_realloc). RF_ERR_NOMEM when it cannot. */
rf_status rf_train_curve_push(rf_ctx *ctx, rf_train_curve *c, rf_train_point p);

typedef struct rf_train_cfg {
    int      epochs;            /* used if iterations == 0 */
    int64_t  iterations;        /* if > 0: train exactly this many steps */
    int      batch;
    uint64_t seed;              /* shuffling and dropout streams */
    rf_optim_cfg optim;
    float    label_smoothing;
    int      eval_every;        /* evaluate on validation every N steps (0: every epoch end) */
    int64_t  eval_limit;        /* evaluate on at most this many validation / test samples (0: all) */
    rf_augment augment;         /* training batches augmented (data.h; {0, 0}: none) */
    /* Selection state carried in and out (resume); NULL: rf_train keeps its
     * own. Borrowed; its copy is (re)allocated by rf_train. */
    rf_train_best *best;
    int64_t  start_step;        /* resume: first step to run (weights/optimizer restored by caller) */
    int      log_every;         /* progress to `log` every N steps (0: never) */
    void   (*log)(void *log_ud, const char *line);  /* progress lines (CLI prints them) */
    void    *log_ud;
    volatile int *stop_flag;    /* if set and non-zero: stop after the current step (preemption) */
    /* Network slimming's sparsity penalty (Liu et al. 2017, eq. 1): λ·Σ|γ|
     * over every batch norm's scale, its subgradient λ·sign(γ) added after
     * each backward (rf_model_bn_l1). 0: off; > 0 on a model without batch
     * norm is an error. */
    float    bn_l1;
    rf_train_curve *curve;      /* borrowed; NULL: no curve kept */
} rf_train_cfg;
void rf_train_cfg_default(rf_train_cfg *c);

/* Every accuracy names its split: selection reads the validation split
 * only; the test split is evaluated after training, on the final model and
 * on the model at best_iteration, and only reported. */
typedef struct rf_train_result {
    double  test_accuracy, test_loss;  /* final model on test (-1 / NaN without a test set or when stopped) */
    double  val_accuracy, val_loss;    /* final model on validation (-1 / NaN without one or when stopped) */
    double  train_loss;            /* mean over the last epoch              */
    double  best_val_accuracy;     /* best validation accuracy, periodic and final (-1 without validation) */
    int64_t best_iteration;        /* steps done when it was reached (LTH early-stopping measure; -1) */
    double  test_accuracy_at_best_val; /* the model at best_iteration on test (-1 without validation or test) */
    double  test_loss_at_best_val;
    int64_t steps;                 /* steps run                             */
    double  seconds, samples_per_s;
    int     stopped;               /* 1 if stop_flag ended the run early    */
    /* Process CPU time of the training steps (evaluation excluded): on a
     * shared machine samples / cpu_seconds measures the code, not the load. */
    double  cpu_seconds;
} rf_train_result;

/* Trains m on `train`. `val` (may be NULL) is the selection set: evaluated
 * every eval_every steps (each epoch when 0) and at the end; the best
 * accuracy on it gives best_iteration. `test` (may be NULL) is never read
 * while training: it is evaluated at the end, on the final model and on the
 * model at best_iteration (a copy kept when the best is found). With no
 * `val` there is no periodic evaluation and no best. Epoch e's batches
 * come from rf_batcher(seed, e) (augmented by cfg->augment), full batches only; dropout at step s uses
 * Philox stream (seed, "dropout" + s), so a run resumed at start_step with the
 * same optimizer state replays the uninterrupted run exactly. The dataset must
 * match the model's input size and have at most its number of outputs as
 * classes (else RF_ERR_SHAPE). docs/training.md describes the loop. On a NaN/Inf loss
 * returns RF_ERR_NAN naming the step and the first layer whose output went
 * non-finite. opt may be NULL (one is created from cfg->optim and freed);
 * pass one to keep its state (resume, learning-rate rewinding). */
rf_status rf_train(rf_ctx *ctx, rf_model *m, const rf_dataset *train, const rf_dataset *val,
                   const rf_dataset *test, const rf_train_cfg *cfg, rf_optim *opt, const rf_train_hooks *hooks,
                   rf_train_result *res);

/* rf_model_create_for (nn.h) for ds's sample shape and classes: a preset is
 * built for the data (resnet-20 on 28x28x1 Fashion-MNIST or 32x32x3
 * CIFAR), a spec file must match it. ds NULL: rf_model_create. Returns a
 * new model (rf_model_free). */
rf_status rf_model_create_for_data(rf_ctx *ctx, const char *name_or_path, const rf_dataset *ds, rf_model **out);

/* Accuracy and mean cross-entropy of m on ds (inference mode). */
rf_status rf_evaluate(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch,
                      double *accuracy, double *loss);
/* rf_evaluate that also writes every sample's logits, in ds's order, into
 * logits [n, classes] (caller-allocated; NULL: not kept). The accuracy is
 * the fraction whose first maximal logit is the label. */
rf_status rf_evaluate_logits(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, double *accuracy,
                             double *loss, float *logits);
/* Logits for all of ds: returns a new [n, classes] array (rf_free). */
rf_status rf_predict(rf_ctx *ctx, rf_model *m, const rf_dataset *ds, int batch, float **logits);

/* Optimizer / schedule names ("sgd", "adam", "adamw"; "constant", "step",
 * "cosine", "linear"): the spelling used by the CLI, task settings and docs.
 * *_from_name returns the enum value or -1 if unknown; *_name returns a static
 * string ("?" if out of range). */
int         rf_optim_type_from_name(const char *s);
int         rf_sched_type_from_name(const char *s);
const char *rf_optim_type_name(rf_optim_type t);
const char *rf_sched_type_name(rf_sched_type t);

#ifdef __cplusplus
}
#endif
#endif
