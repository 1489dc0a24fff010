/* raffle deploy: run a pruned model's inference through the sparse kernels.
 *
 * rf_deploy_model() looks at every linear, conv and patch-embedding layer and
 * every weight product inside transformer blocks, measures the
 * fraction of zero weights, and plugs the sparse fp32 kernel (kernels.h) into
 * the layer's inference hook (rf_layer.infer_gemm, nn.h) when it is FASTER
 * than the dense path the engine runs for that layer (a conv layer's
 * Winograd, direct conv or im2col + GEMM; the engine's GEMM backend and
 * threads) at the deployment batch size. The decision is measured, not
 * guessed: a calibration times the layer's own forward, dense and through
 * the sparse kernel on its packed weights, at that batch and for one
 * sample, and the result is cached per (layer shape, batch, density,
 * engine options) for the rest of the process.
 * Training forwards never use the hooks; results match the dense path within
 * float rounding (the sum order differs).
 *
 * Layers whose hook is already set (e.g. the int8 path installed by the
 * quantization code with rf_qgemm) are left alone. */
#ifndef RAFFLE_DEPLOY_H
#define RAFFLE_DEPLOY_H

#include "raffle/core.h"
#include "raffle/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rf_deploy_mode {
    RF_DEPLOY_AUTO = 0,    /* sparse where calibration says it is faster */
    RF_DEPLOY_DENSE = 1,   /* install nothing (reference runs)             */
    RF_DEPLOY_SPARSE = 2,  /* sparse on every linear/conv layer (tests)    */
    /* sparse where the layer is at least min_sparsity pruned: a measured
     * break-even and no timing, so the choice (and every float it affects)
     * is the same on every run and rank. Evaluation uses it. */
    RF_DEPLOY_RULE = 3,
} rf_deploy_mode;

/* One timing of the calibration (RF_DEPLOY_AUTO): what rf_deploy_opts.measure
 * is asked to time. */
typedef struct rf_deploy_probe {
    int  layer, param;   /* the site, as in rf_deploy_layer */
    int  sparse;         /* 0: the dense path the engine runs without the hook; 1: the sparse kernel */
    int  batch;          /* samples of the call */
    int  feat;           /* 1: the feature-major layout (kernels.h rf_layout) */
    /* 1: run() is the layer's whole forward (rf_model_layer_forward: a
     * layer site; its output lands in the model's activations); 0: one
     * kernel call (per-weight sites, feature-major runs) */
    int  layer_forward;
    rf_status (*run)(void *arg);   /* one call of what is timed */
    void *arg;
} rf_deploy_probe;

/* Seconds one call of p->run takes (it may call p->run, any number of
 * times). */
typedef rf_status (*rf_deploy_measure_fn)(void *ud, const rf_deploy_probe *p, double *seconds);

typedef struct rf_deploy_opts {
    int            batch;        /* deployment batch size (samples); <= 0: 64 */
    rf_deploy_mode mode;
    /* Sparse must beat dense by this factor to be chosen (<= 0: 1.05, so
     * timing noise does not flip layers that are a tie). */
    double         min_speedup;
    /* The same for the calls of one sample (rf_deploy_layer.rows1); <= 0:
     * min_speedup. */
    double         min_speedup_1;
    /* RF_DEPLOY_RULE: fraction of zero weights from which a site runs the
     * sparse kernel (<= 0: rf_deploy_eval_min_sparsity(batch)). */
    double         min_sparsity;
    /* RF_DEPLOY_AUTO: NULL times each probe (best of 3, CPU time of the
     * calling thread, wall time when the engine runs several threads);
     * else this is asked instead (tests: decisions from given times) and
     * nothing is cached. measure_ud is passed through. */
    rf_deploy_measure_fn measure;
    void          *measure_ud;
} rf_deploy_opts;

/* The measured break-even sparsity of the sparse fp32 kernel against sgemm
 * on this project's layer shapes (bench/deploy/fp32_breakeven.c,
 * docs/kernels.md): at 256 samples per batch and more, sparse is faster on
 * every bench shape from 50% pruned; at 64 and 16 samples the N = 10
 * classifier heads need 70-80%, so below 256 it is 80%. */
double rf_deploy_eval_min_sparsity(int batch);

/* What was decided for one GEMM site: a linear/conv/patch-embedding layer
 * (layer hook), or one weight's product inside a transformer block or
 * attention layer (per-weight hook, nn.h rf_param.infer_gemm). */
typedef struct rf_deploy_layer {
    int    layer;            /* index into model->layers          */
    int    rows, N, K;       /* GEMM shape at the deployment batch */
    double sparsity;         /* fraction of zero weights           */
    double dense_us, sparse_us; /* calibrated times (0 if not timed): a layer site's whole forward */
    int    sparse;           /* 1 if the sparse kernel was installed (for either batch below) */
    int    param;            /* index into model->ptensors for a per-weight site, -1 for a layer */
    /* The calls of one sample (rows1 = rows per sample: batch-1 latency) are
     * decided separately: the sparse kernels' small-batch paths differ from
     * their batched ones, and sgemm is far from peak there. The hook runs
     * the sparse kernel for M <= rows1 iff sparse_at_1, for larger M iff
     * sparse_at_batch (in RF_DEPLOY_SPARSE mode both are 1). */
    int    rows1;
    double dense1_us, sparse1_us;   /* calibrated times at rows1 (0 if not timed) */
    int    sparse_at_1, sparse_at_batch;
    /* Sites of layers that can run in the model's feature-major runs
     * (linear, patch embedding, transformer block products: nn.h, model.c)
     * are timed at the deployment batch in both layouts (kernels.h
     * rf_layout): dense_us/sparse_us row-major, these feature-major, and the
     * feature-major hook (infer_gemm_feat) follows sparse_at_batch_feat for
     * M > rows1. Conv sites run feature-major only: dense_us/sparse_us and
     * sparse_at_batch are that layout's and these repeat them. Attention
     * layers run row-major only: these are 0. */
    double dense_feat_us, sparse_feat_us;
    int    sparse_at_batch_feat;
    /* 1 when the weight is N:M (rf_param.nm_n, an exact N:M mask the N:M
     * kernel takes: M dividing 16 and K): its row-major calls run
     * rf_nm_spmm (slots for small batches, docs/kernels.md "N:M"), timed
     * as the sparse kernel above; feature-major calls rf_spmm. */
    int    nm;
} rf_deploy_layer;

void rf_deploy_opts_default(rf_deploy_opts *o);

/* Installs sparse kernels on `model` (borrowed; its layers' and block
 * weights' infer_gemm / infer_state are set, the states are owned by the model until
 * rf_deploy_release). Weights are copied at this point: call again after
 * changing parameters. opts may be NULL (defaults). If info is non-NULL, up
 * to max_info per-layer decisions are written and *n_info set (n_info may be
 * NULL). Any previous deployment by this module is released first. On
 * error, hooks installed before the failing layer stay in place (they are
 * valid); rf_deploy_release removes them. info has one entry per GEMM site:
 * size it n_layers + n_ptensors to see them all. */
rf_status rf_deploy_model(rf_ctx *ctx, rf_model *model, const rf_deploy_opts *opts,
                          rf_deploy_layer *info, int max_info, int *n_info);

/* Removes and frees every hook installed by rf_deploy_model (others' hooks
 * stay), and frees the calling thread's kernel scratch
 * (rf_kernels_release_workspace). Accepts NULL. */
void rf_deploy_release(rf_model *model);

/* The model a deployment runs: m with every batch norm whose input is a
 * conv2d or linear layer that nothing else reads folded into that layer
 * (rf_model_fold_bn, nn.h; Jacob et al. 2018 §3.2), so the deployed forward
 * has no batch-norm pass and the sparse kernel computes the folded
 * product (a·W keeps W's zeros). Returns a new model in *out (free with
 * rf_model_free) and the count in *n_folded (may be NULL); *out = NULL when
 * nothing folds, or when m already carries an inference override (int8:
 * the quantize kind folds before quantizing, and a copy would lose the
 * integer kernels), and the caller deploys m itself. Borrows m. */
rf_status rf_deploy_fold(rf_ctx *ctx, const rf_model *m, rf_model **out, int *n_folded);

/* Drops the process-wide calibration cache (tests). */
void rf_deploy_clear_cache(void);

#ifdef __cplusplus
}
#endif
#endif
