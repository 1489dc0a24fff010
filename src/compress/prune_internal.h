/* Internal to src/compress: what the pruning methods' files share — the
 * mini-batches and per-batch gradients of the gradient-based scores
 * (prune_grad.c) and the accumulation over the eligible items. */
#ifndef RAFFLE_PRUNE_INTERNAL_H
#define RAFFLE_PRUNE_INTERNAL_H

#include "raffle/prune.h"

/* nb mini-batches of the training set drawn in the batcher's deterministic
 * order for (cfg->seed, epoch 0), each of cfg->batch samples, and the model
 * state to give back: scoring a model never changes it (batchnorm running
 * statistics and the dropout stream are saved at open and restored at
 * close, and every gradient of one batch sees the same dropout mask). */
typedef struct rf_prune_batches {
    rf_model *m;
    int       nb, B;
    size_t    in_size;
    float    *x;          /* [nb, B, in_size] */
    int32_t  *y;          /* [nb, B] */
    float    *dlogits;    /* [B, classes] */
    float    *bufs;       /* saved m->buffers */
    rf_rng    rng0;       /* dropout stream to restore before every evaluation */
} rf_prune_batches;

/* Loads nb batches and applies m's masks. Close it on success. */
rf_status rf_prune_batches_open(rf_ctx *ctx, rf_prune_batches *g, rf_model *m, const rf_prune_cfg *cfg,
                                const rf_dataset *train, int nb);
/* The gradient of batch b's mean cross-entropy into m->grads (zeroed first). */
rf_status rf_prune_batch_grad(rf_ctx *ctx, rf_prune_batches *g, int b);
/* Restores m's buffers and dropout stream, zeroes its gradients, frees. */
void      rf_prune_batches_close(rf_prune_batches *g);

/* acc[f] += scale · src[f] (square: scale · src[f]²) over the items' ranges. */
void      rf_prune_acc(const rf_prune_item *it, int n, const float *src, float *acc, float scale, int square);
/* The number of batches a multi-batch estimate uses: cfg->batches (> 0), else 10. */
int       rf_prune_n_batches(const rf_prune_cfg *cfg);

/* Whether glob list `list` ("fc*,!fc3*") selects a tensor or layer name
 * (prune_model.c; NULL or empty: everything). */
int       rf_prune_glob_selects(const char *list, const char *pname, const char *lname);
/* Whether a '!' pattern of `list` matches pname or lname. */
int       rf_prune_glob_excludes(const char *list, const char *pname, const char *lname);
/* The per-layer rate of cfg->rate_patterns matching pname or lname, or -1. */
double    rf_prune_rate_for(const rf_prune_cfg *cfg, const char *pname, const char *lname);
/* N:M masks from scores sc (n_params entries) over the items: m->masks
 * updated (prune_model.c, "N:M masks"), each tensor's rf_param.nm_n/nm_m
 * set when its mask is exactly nm_n:nm_m. highest: prune the highest. */
rf_status rf_prune_nm_masks(rf_ctx *ctx, rf_model *m, const rf_prune_item *it, int n, const float *sc, int highest,
                            int nm_n, int nm_m);

/* The magnitude score |w| of every item (the rf_prune_score_fn of
 * magnitude pruning, and of filter_l1 and neuron_l1 per element). */
rf_status rf_prune_score_items_magnitude(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *it, int n,
                                         const rf_dataset *train, float *sc);
/* The selection of the structured methods (struct.c): group scores from
 * the method's element scores, exact counts per owning layer or globally,
 * whole units masked (the descriptor's `prune` of filter_l1, slimming,
 * neuron_l1). */
rf_status rf_prune_struct_apply(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *items,
                                int n_items, const rf_dataset *train);
/* rf_prune_struct_check for the head method (prune_head.c): an attention or
 * transformer layer is selected, and no layer `layers` names lacks heads. */
rf_status rf_prune_head_check(rf_ctx *ctx, const rf_model *m, const rf_prune_cfg *cfg);

#endif
