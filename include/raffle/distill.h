/* raffle distill: knowledge distillation (Hinton, Vinyals, Dean 2015,
 * "Distilling the Knowledge in a Neural Network") as a training hook, with
 * teacher ensembles, a per-sample teacher-logit cache and hidden-state
 * distillation for transformer students; and the Prune-Once-For-All pipeline
 * (Zafrir et al. 2021) built from distillation, gradual magnitude pruning and
 * quantization-aware training (docs/distillation.md).
 *
 * Loss (rf_loss_distill, nn.h): α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))
 * + (1−α)·CE(y, softmax(z_s)); the T² keeps the soft-target gradients at the
 * hard-target scale when T changes (Hinton §2). With hidden-state pairs the
 * loss adds β·Σ_pairs mean((h_s·Pᵀ − h_t)²) over the chosen blocks' outputs,
 * P a learned linear projection when the widths differ (identity otherwise);
 * its gradient enters the student at the block output through the model's
 * activation hook in backward. */
#ifndef RAFFLE_DISTILL_H
#define RAFFLE_DISTILL_H

#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/nn.h"
#include "raffle/data.h"
#include "raffle/train.h"
#include "raffle/prune.h"
#include "raffle/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- teachers ----------------------------------------------------------------
 * One model or an ensemble; the ensemble's logits are the mean of its
 * members' logits (Hinton §1: "the knowledge of an ensemble of models"). */
typedef struct rf_teacher rf_teacher;   /* opaque */

/* Loads n >= 1 checkpoints (float, sparse or int8: a quantized teacher runs
 * its int8 path). Paths are borrowed. Returns a new teacher; rf_teacher_free. */
rf_status rf_teacher_load(rf_ctx *ctx, const char *const *paths, int n, rf_teacher **out);
/* Wraps n existing models (borrowed: they must outlive the teacher). */
rf_status rf_teacher_from_models(rf_ctx *ctx, rf_model *const *models, int n, rf_teacher **out);
void      rf_teacher_free(rf_teacher *t);   /* accepts NULL */
int       rf_teacher_size(const rf_teacher *t);
int       rf_teacher_classes(const rf_teacher *t);
rf_model *rf_teacher_model(rf_teacher *t, int i);   /* borrowed */
/* Precomputes the ensemble logits of every sample of ds (inference mode,
 * rf_predict). Valid because the training pipeline has no data augmentation:
 * sample i's teacher logits never change, so they are computed once and
 * looked up by dataset index. ds is borrowed and must outlive the teacher. */
rf_status rf_teacher_cache(rf_ctx *ctx, rf_teacher *t, const rf_dataset *ds, int batch);
/* Ensemble logits of a batch into out [batch, classes]: from the cache when
 * it exists and idx is given (idx = indices into the cached dataset), else by
 * running every member in inference mode on x. */
rf_status rf_teacher_logits(rf_ctx *ctx, rf_teacher *t, const float *x, const int64_t *idx,
                            int batch, float *out);

/* ---- the distillation hook ------------------------------------------------------ */
#define RF_DISTILL_MAX_PAIRS 16
typedef struct rf_distill_cfg {
    float T;                 /* temperature (Hinton's MNIST run: 20)                 */
    float alpha;             /* weight of the soft-target term                       */
    /* hidden-state distillation (transformer students); n_pairs = 0: off */
    int   n_pairs;
    int   student_layers[RF_DISTILL_MAX_PAIRS];  /* layer indices, output (T, D) */
    int   teacher_layers[RF_DISTILL_MAX_PAIRS];  /* in teacher member 0            */
    float hidden_weight;     /* β                                                     */
    float proj_lr;           /* Adam learning rate of the projections                */
    uint64_t seed;           /* projection initialisation                            */
} rf_distill_cfg;
void rf_distill_cfg_default(rf_distill_cfg *c);   /* T 4, alpha 0.9, no pairs, β 1, proj_lr 1e-3 */

/* Pairs every transformer block of the student with a teacher block, spread
 * uniformly (student block k of S gets teacher block ⌈(k+1)·Tn/S⌉−1, so the
 * last blocks meet). Fills cfg->n_pairs and the layer arrays. RF_ERR_INVALID
 * if either model has no transformer block. */
rf_status rf_distill_pairs_default(rf_ctx *ctx, const rf_model *student, const rf_model *teacher,
                                   rf_distill_cfg *cfg);

typedef struct rf_distill rf_distill;   /* opaque */
/* Returns new distillation state. teacher and ctx are borrowed. With hidden
 * pairs it installs its activation hook on the student (chaining any hook
 * already there) and checks the pairs' shapes. Free with rf_distill_free. */
rf_status rf_distill_new(rf_ctx *ctx, rf_teacher *teacher, rf_model *student,
                         const rf_distill_cfg *cfg, rf_distill **out);
void      rf_distill_free(rf_distill *d, rf_model *student);   /* accepts NULL d */
/* rf_train_hooks.loss (ud = the rf_distill). */
rf_status rf_distill_loss(void *ud, rf_model *m, const float *x, const float *logits,
                          const int32_t *labels, const int64_t *idx, int batch,
                          float *dlogits, float *loss);
void      rf_distill_hooks(rf_distill *d, rf_train_hooks *h);   /* sets ud and loss */
/* Hidden-state loss of the last rf_distill_loss call (0 without pairs). */
float     rf_distill_hidden_loss(const rf_distill *d);


/* ---- Prune Once For All (Zafrir et al. 2021) ----------------------------------------
 * One composite set of train hooks for the three OFA stages: gradual
 * magnitude pruning (prune.h's rf_gmp, cubic, uniform per layer, classifier
 * not pruned), distillation (loss), and QAT (weight swap + activation hook).
 * Each part is optional. The GMP schedule is fixed at the first step, when
 * the run's length is known (rf_ofa_gmp_schedule). */
typedef struct rf_ofa_hooks {
    rf_ctx     *ctx;          /* borrowed, for error detail */
    rf_distill *distill;      /* borrowed; NULL: plain cross-entropy */
    rf_qat     *qat;          /* borrowed; NULL: no fake quantization */
    int         gmp_on;       /* 1: prune gradually to `sparsity` */
    double      sparsity;
    double      end_fraction;   /* pruning ends at this fraction of the run (paper: 1/2) */
    double      every_fraction; /* mask update interval as a fraction of the run */
    const char *layers;       /* borrowed glob list of the tensors to prune (rf_prune_cfg.layers,
                               * e.g. "!conv1*"); NULL: every prunable tensor (the classifier is
                               * never pruned) */
    int         nm_n, nm_m;   /* N:M constraint of the gradual pruning (rf_prune_cfg); 0: none */
    rf_gmp      gmp;
    int         gmp_ready;
} rf_ofa_hooks;
/* Zeroes o and sets the defaults: end_fraction 0.5, every_fraction 0.01. */
void      rf_ofa_hooks_init(rf_ofa_hooks *o, rf_ctx *ctx);
/* Fills h with o's adapters (ud = o). */
void      rf_ofa_train_hooks(rf_ofa_hooks *o, rf_train_hooks *h);
/* The cubic schedule of a run of `total` steps: from 0 at step 0 to
 * `sparsity` at end_fraction·total, masks updated every
 * max(1, round(every_fraction·total)) steps. The paper updates every 1,000
 * steps of a BERT pre-training run; on runs of a few thousand steps a fixed
 * fraction (default 1%: about 50 updates before the target) keeps the same
 * smoothness at any length. */
void      rf_ofa_gmp_schedule(double sparsity, int64_t total, double end_fraction, double every_fraction,
                              rf_gmp_schedule *s);

#ifdef __cplusplus
}
#endif
#endif
