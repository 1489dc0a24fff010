/* raffle nn: the compression core's training engine.
 *
 * A model is a list of layer records built from a JSON spec. All trainable
 * parameters live in ONE float block (`params`); gradients, optimizer moments
 * and pruning masks are blocks of the same size with the same offsets
 * (llm.c style): zeroing grads is one memset, the optimizer one flat loop, a
 * checkpoint one section, an MPI message one buffer. Non-trainable state
 * (batchnorm running statistics) lives in a separate `buffers` block.
 *
 * Layers are forward/backward pairs over plain arrays, dispatched through a
 * table indexed by rf_layer_type. Backward ADDS into parameter gradients.
 *
 * Activation layout: batch-major; per sample a layer sees either an image
 * (C, H, W) or a token sequence (T, D) stored as shape {T, D, 1}. An
 * inference forward of a deployed model may run stretches of layers on the
 * transposed activations instead (feature-major runs, model.c), where the
 * sparse kernels need no panel transposes; what it returns is the same.
 */
#ifndef RAFFLE_NN_H
#define RAFFLE_NN_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rf_layer_type {     /* values stored in metadata: never change */
    RF_L_LINEAR = 1, RF_L_CONV2D = 2, RF_L_MAXPOOL = 3, RF_L_AVGPOOL = 4,
    RF_L_GAP = 5, RF_L_BATCHNORM = 6, RF_L_LAYERNORM = 7, RF_L_RELU = 8,
    RF_L_GELU = 9, RF_L_TANH = 10, RF_L_DROPOUT = 11, RF_L_FLATTEN = 12,
    RF_L_RESIDUAL = 13,   /* out = in + output of layer `from` (same shape) */
    RF_L_PATCH_EMBED = 14,/* conv k=s=patch -> tokens, + cls token + pos emb */
    RF_L_ATTENTION = 15,  /* multi-head self-attention on (T, D)            */
    RF_L_TRANSFORMER = 16,/* pre-norm block: x+MHSA(LN(x)); x+MLP(LN(x))     */
    RF_L_CLS_POOL = 17,   /* (T, D) -> (D): token 0                         */
    RF_L_MEAN_POOL = 18,  /* (T, D) -> (D): mean over tokens                */
    RF_L_ADD = 19,        /* out = sum of its inputs; optional option-A shortcut */
    RF_L_CONCAT = 20,     /* inputs joined along channels (features)        */
    RF_L_TYPE_COUNT_
} rf_layer_type;

/* What a layer type is, for the code that treats layers by kind instead of
 * by name: deployment (src/deploy), quantization and QAT, pruning and the
 * collapse checks, checkpoints, distillation. Each layer type's op states
 * its traits (src/nn/layers.h rf_nn_op.traits; the op table is indexed by
 * rf_layer_type and a static_assert keeps it the enum's length, and a
 * positional op initializer without its traits does not compile under
 * -Wextra). Ask rf_layer_traits, never compare types. How a layer's units
 * connect (layer collapse, src/nn/connect.c) is the op's `conn`. */
typedef enum rf_layer_trait {
    RF_LT_PRODUCT  = 1 << 0,  /* one product with its weight, overridable whole (rf_layer.infer_gemm) */
    RF_LT_PRODUCTS = 1 << 1,  /* products inside, each overridable per weight (rf_param.infer_gemm) */
    RF_LT_ROWS     = 1 << 2,  /* deployed, its products run on row-major activations */
    RF_LT_FEAT     = 1 << 3,  /* deployed, its products run feature-major (conv's columns, the model's runs) */
    RF_LT_ROWS_OUT = 1 << 4,  /* GEMM rows per sample = output positions (conv); else tokens (products
                               * inside) or in_size / K (rf_layer_product_rows) */
    RF_LT_PRUNABLE = 1 << 8,  /* its weight tensors are prunable (rf_param.prunable) */
    RF_LT_QUANT    = 1 << 9,  /* its products can run int8 */
    RF_LT_STATS    = 1 << 10, /* running statistics in its buffers (batchnorm: running_mean, running_var) */
    RF_LT_BLOCK    = 1 << 11, /* a transformer block: hidden-state distillation pairs blocks */
} rf_layer_trait;

/* Role of a parameter tensor: decides default prunability. */
typedef enum rf_param_role {
    RF_P_WEIGHT = 0,   /* linear / conv / attention projection weights: prunable */
    RF_P_BIAS   = 1,
    RF_P_NORM   = 2,   /* batchnorm / layernorm scale and shift */
    RF_P_EMBED  = 3,   /* position embeddings, cls token        */
} rf_param_role;

#define RF_NAME_MAX 64
#define RF_NN_MAX_INPUTS 8        /* inputs of one layer (add, concat)         */
/* One named parameter tensor inside the params block. Weight matrices are
 * stored row-major as [out, in] (linear) or [out, in, kh, kw] (conv), the
 * layout PyTorch uses, so rows = shape[0] = output channels. */
typedef struct rf_param {
    char     name[RF_NAME_MAX];   /* PyTorch-style, e.g. "fc1.weight", "blocks.0.attn.qkv.weight" */
    int      layer;               /* index into model->layers                 */
    rf_param_role role;
    int      prunable;            /* 1 if masks apply (default: role == WEIGHT) */
    int      is_output;           /* 1 for the classifier layer's weight/bias */
    int      ndim;
    int64_t  shape[RF_MAX_DIMS];
    size_t   offset;              /* in floats, into params/grads/masks/...   */
    size_t   numel;
    /* Per-weight inference override (RF_P_WEIGHT tensors of the layers whose
     * products are not a whole layer: the transformer block's attn.qkv,
     * attn.proj, mlp.fc1, mlp.fc2 and the attention layer's qkv, proj). Same
     * contract as rf_layer.infer_gemm: when non-NULL and the forward is not
     * training, the product Y[M, N] = X[M, K] · W^T + bias of this weight
     * ([N, K] = shape) is computed by this call instead of sgemm; M = batch *
     * tokens, X and Y are contiguous. The callback adds the bias: the bias of
     * weight tensor i is ptensors[i + 1] when that entry has role RF_P_BIAS and
     * the same layer (every layer declares "x.weight" then "x.bias"). Which
     * mechanism applies where: linear, conv2d and patch_embed use only
     * rf_layer.infer_gemm; transformer and attention layers use only this one.
     * docs/quantization.md. */
    rf_status (*infer_gemm)(void *state, const float *X, float *Y, int M);
    void     *infer_state;        /* owned by whoever set infer_gemm          */
    /* Optional feature-major form of infer_gemm, same contract as
     * rf_layer.infer_gemm_feat: YT[N, M] = W · XT[K, M] (+ bias), row stride
     * ld. The block runs it when the model runs it feature-major (model.c,
     * "feature-major runs"); set and cleared together with infer_gemm. */
    rf_status (*infer_gemm_feat)(void *state, const float *XT, float *YT, int M, int ld);
    /* Optional training-time hook on this product's input (quantization-
     * aware training, Jacob et al. 2018 §3), layers as for infer_gemm: in a
     * training forward it is called with backward = 0 on the product's input
     * X [M*K] just before the product and may rewrite it in place (fake-
     * quant; the block's backward then uses the rewritten X for dW); in
     * backward it is called with backward = 1 on dL/dX [M*K] before that
     * gradient flows further, so it can zero clipped entries (STE). */
    rf_status (*train_act)(void *state, int backward, float *X, size_t n);
    void     *train_state;        /* owned by whoever set train_act           */
    /* N:M semi-structured mask (raffle/lowbit.h): nm_n kept in every group
     * of nm_m consecutive weights of a row (shape[0] rows), set by pruning
     * with an N:M constraint and by loading an N:M checkpoint tensor; 0
     * otherwise. Checkpoints store such a tensor in the N:M kind and
     * deployment may run it on the N:M kernel. */
    int       nm_n, nm_m;
} rf_param;

/* Per-sample activation shape: {C, H, W} for images, {T, D, 1} for tokens,
 * {N, 1, 1} for flat vectors. */
typedef struct rf_shape3 { int d[3]; } rf_shape3;

typedef struct rf_layer {
    rf_layer_type type;
    char      name[RF_NAME_MAX];  /* "fc1", "conv2", "blocks.3"               */
    rf_shape3 in, out;
    size_t    in_size, out_size;  /* per-sample element counts                */
    int       ip[8];              /* integer hyper-parameters, per type (see src/nn/layers.h) */
    float     fp[4];              /* float hyper-parameters (dropout p, eps, …) */
    /* The layers whose outputs this one reads, in order (-1: the model
     * input). The spec's "inputs" (default: the previous layer); every input
     * comes earlier in `layers`, so the layer order is a topological order
     * of the DAG. A residual layer's second input is its "from". */
    int       n_inputs;
    int       inputs[RF_NN_MAX_INPUTS];
    int       first_param, n_params; /* range in model->ptensors               */
    size_t    buf_offset, buf_numel; /* range in model->buffers                */
    size_t    act_offset;         /* this layer's output in model->acts (floats, per batch) */
    size_t    save_offset, save_numel; /* extra per-layer saved state for backward (per batch) */
    /* Inference override, set by deployment (sparse / int8 kernels): when
     * non-NULL and the forward is not training, a linear or conv layer computes
     * its matrix product Y[M, N] = X[M, K] · W^T (+ bias) by calling this
     * instead of sgemm. Linear: M = batch, K = in, N = out. Conv: M = batch *
     * out_h * out_w (im2col rows), K = in_c * kh * kw, N = out_c; the layer
     * arranges X and Y around the call (M may be a chunk of the batch).
     * patch_embed: M = batch * patches, K = C * p * p, N = width. The
     * callback adds the bias. See docs/nn.md. */
    rf_status (*infer_gemm)(void *state, const float *X, float *Y, int M);
    void     *infer_state;    /* owned by whoever set infer_gemm */
    /* Optional feature-major form of infer_gemm over the same state:
     * YT[N, M] = W · XT[K, M] (+ bias), kernels.h RF_FEAT, both with row
     * stride ld >= M (rf_feat_ld). A conv layer calls
     * it instead when both are set: its column matrix and its per-channel
     * output are feature-major already, so neither side is transposed.
     * Whoever sets or clears infer_gemm sets or clears this one too (NULL:
     * no feature-major form); it is never called without infer_gemm.
     * Linear and patch_embed layers call it inside feature-major runs. */
    rf_status (*infer_gemm_feat)(void *state, const float *XT, float *YT, int M, int ld);
    /* Optional, beside infer_gemm: whether the override computes a
     * (non-training, row-major) forward of `batch` samples; when it returns
     * 0 the layer runs the path it runs without an override (a conv layer
     * Winograd, the direct conv or im2col + GEMM, on the engine's GEMM).
     * NULL: every forward. Deployment sets it where its sparse kernel wins
     * at one sample or at the deployed batch only (src/deploy). Whoever
     * sets or clears infer_gemm sets or clears this one too. */
    int (*infer_takes)(const void *state, int batch);
    /* Set by an inference forward that ran this layer inside a feature-major
     * run and kept its output only transposed, in the run's own buffers:
     * rf_model_layer_output(m, i) is NULL then. */
    int       out_feat;
    /* Set by a forward that ran this layer fused with the ReLU after it
     * (model.c, "fusion"): its output went straight through the ReLU and
     * was never written, so rf_model_layer_output(m, i) is NULL then. */
    int       out_fused;
    /* Set by a forward that folded this batch norm's affine map into the
     * add + ReLU that alone reads its output (model.c, "bn fold"): its
     * statistics ran, its output was never written, so
     * rf_model_layer_output(m, i) is NULL then. */
    int       out_folded;
    /* Borrowed view of this layer's n_params entries of model->ptensors,
     * refreshed by the model before every layer call, so that a layer can
     * reach the per-weight overrides (rf_param.infer_gemm / train_act). */
    const rf_param *pt;
} rf_layer;

/* Optional hook called on each layer's output (forward) and on the gradient
 * flowing into it (backward): used by quantization-aware training for
 * activation fake-quant with the straight-through estimator, and by hidden-
 * state distillation to read block outputs. Return non-zero status to abort. */
typedef rf_status (*rf_act_hook)(void *ud, int layer, int backward, float *data, size_t n);

typedef struct rf_model {
    int        n_layers;
    rf_layer  *layers;
    int        n_ptensors;
    rf_param  *ptensors;
    size_t     n_params;          /* total trainable floats */
    float     *params;            /* [n_params]                                */
    float     *grads;             /* [n_params]                                */
    float     *masks;             /* [n_params] of 0.0/1.0, NULL while dense   */
    size_t     n_buffers;
    float     *buffers;           /* non-trainable state (BN running stats)    */
    rf_shape3  input;             /* per-sample input shape                    */
    int        input_kind;        /* what input is: 0 image, 1 tokens, 2 flat  */
    int        n_classes;
    char      *spec_json;         /* canonical spec (owned)                    */
    /* activations for a batch of up to max_batch (owned, sized on demand)    */
    int        max_batch, batch;
    float     *acts, *dacts;      /* per-layer outputs / their gradients       */
    float     *saved;             /* per-layer extra state for backward        */
    float     *scratch;           /* shared temporary (im2col etc.)            */
    size_t     acts_numel, saved_numel, scratch_numel;
    const float *input_ptr;       /* borrowed input of the last forward        */
    int        training;          /* mode of the last forward                  */
    rf_rng     dropout_rng;
    rf_act_hook hook;             /* NULL unless QAT / hidden distillation     */
    void      *hook_ud;
    /* Feature-major runs (inference forwards of deployed models, model.c):
     * the transposed activations of a run and its layers' temporaries. */
    float     *feat;
    size_t     feat_numel;
    /* Input gradient (saliency, gradient checks): set input_grad = 1 before
     * rf_model_backward and dL/dx [batch, C*H*W] is left in dinput (owned). */
    int        input_grad;
    float     *dinput;
    /* 1: run every layer on its own (no batch-norm/add + ReLU fusion,
     * model.c). Fusion computes the same bits (tests/unit/test_fuse.c), so
     * this is the reference path for tests, not a setting. */
    int        no_fuse;
} rf_model;

/* ---- construction ---------------------------------------------------------
 * Spec JSON: {"input":[C,H,W], "classes":K, "layers":[{"type":"linear","out":300,
 *   "name":"fc1"}, ...]}. A layer reads the previous layer's output, or the
 * earlier layers (or "input") its "inputs" lists: the layers form a DAG in
 * topological order. Shape inference fills every layer's in/out; errors
 * name the layer: "layers[3] linear: expects 784 inputs, gets 400",
 * "layers[7] add 'layer2.0.add': input 'layer2.0.bn2' has shape …".
 * Returns a new model with zeroed params (call rf_model_init); free with rf_model_free. */
rf_status rf_model_from_spec(rf_ctx *ctx, const char *spec_json, rf_model **out);
/* rf_model_from_spec in two steps, for callers that check what a spec
 * declares before memory is committed to it (a checkpoint's spec against its
 * tensor directory): rf_model_plan returns a new model with its layer records
 * and parameter table (names, shapes, n_params) but no params, grads or
 * buffers blocks; rf_model_alloc_blocks then allocates them (zeroed), after
 * checking them against the memory cap. Free with rf_model_free. */
rf_status rf_model_plan(rf_ctx *ctx, const char *spec_json, rf_model **out);
rf_status rf_model_alloc_blocks(rf_ctx *ctx, rf_model *m);
/* Returns the JSON spec text of a preset (static string), or NULL if unknown.
 * Presets: lenet-300-100, conv-2, conv-4, conv-6, lenet-5, mlp-1200x2,
 * mlp-800x2, vit-tiny (1x28x28 inputs), resnet-20, resnet-32, resnet-56,
 * resnet-18, vgg-11, vgg-16, vgg-19 (3x32x32); 10 classes. */
const char *rf_model_preset(const char *name);
/* Comma-separated list of preset names (static). */
const char *rf_model_preset_names(void);
/* Checks what rf_model_create would build, without building it: a preset
 * name, or a spec file that reads and plans (rf_model_plan: layers and
 * shapes, no parameter memory). A name that is neither a preset nor a file
 * is RF_ERR_NOTFOUND (the caller suggests a preset); a spec's error is
 * prefixed with its path. */
rf_status rf_model_check(rf_ctx *ctx, const char *name_or_path);
/* Builds from a preset name or, if `name_or_path` is not a preset, a spec file. */
rf_status rf_model_create(rf_ctx *ctx, const char *name_or_path, rf_model **out);
/* The same for data of per-sample shape c×h×w with labels below
 * min_classes: a preset is rebuilt for that input (every layer infers its
 * shape from it: the CIFAR presets, 32×32×3 by default, also take 28×28×1)
 * and, if min_classes exceeds its class count, for min_classes classes; a
 * spec file must already take c×h×w inputs (RF_ERR_SHAPE naming both).
 * Returns a new model (rf_model_free). */
rf_status rf_model_create_for(rf_ctx *ctx, const char *name_or_path, int c, int h, int w, int min_classes,
                              rf_model **out);
/* Initialises parameters as the preset's paper does (Glorot/Kaiming/trunc-normal),
 * deterministically from seed. Resets buffers (BN stats) too. */
rf_status rf_model_init(rf_ctx *ctx, rf_model *m, uint64_t seed);
void      rf_model_free(rf_model *m);   /* accepts NULL */
/* Deep copy (params, masks, buffers; not activations). Returns new model. */
rf_status rf_model_clone(rf_ctx *ctx, const rf_model *m, rf_model **out);
/* Batch norm folded for inference (src/nn/fold.c): returns a new model that
 * computes in eval mode what m computes in eval mode, with every batch norm
 * whose input is a conv2d or linear layer read by nothing else folded into
 * that layer (W' = a·W, b' = a·(b − μ) + β, a = γ/sqrt(σ² + eps); the layer
 * gains a bias). Other layers, names, masks and statistics are copied; the
 * new spec names every layer and lists its inputs. *n_folded (may be NULL)
 * counts the folded batch norms. Free with rf_model_free. */
rf_status rf_model_fold_bn(rf_ctx *ctx, const rf_model *m, rf_model **out, int *n_folded);
/* Finds a parameter tensor by name; NULL if absent. */
const rf_param *rf_model_param(const rf_model *m, const char *name);
/* Allocates the mask block (all ones) if absent. */
rf_status rf_model_ensure_masks(rf_ctx *ctx, rf_model *m);
/* Multiplies params by masks (no-op while dense). */
void      rf_model_apply_masks(rf_model *m);
/* The traits of a layer type (rf_layer_trait bits; 0 for a value that is
 * not a layer type). */
unsigned  rf_layer_traits(int type);
/* GEMM rows per sample of a product layer's product with K inputs: output
 * positions (RF_LT_ROWS_OUT), tokens (RF_LT_PRODUCTS), else in_size / K (a
 * linear layer on tokens, the patch embedding's patches; 1 when K does not
 * divide in_size). */
long      rf_layer_product_rows(const rf_layer *L, int K);

/* ---- forward / backward ---------------------------------------------------
 * x: [batch, C*H*W] (borrowed; must stay alive until backward).
 * training=1: batchnorm uses batch statistics and updates running stats,
 * dropout is active (stream from m->dropout_rng). Returns logits [batch, K]
 * inside the model (valid until the next forward). */
rf_status rf_model_forward(rf_ctx *ctx, rf_model *m, const float *x, int batch, int training, const float **logits);
/* Runs layer i's forward again, in inference mode, on the inputs the last
 * forward left (same batch), with the layer's current overrides (infer_gemm,
 * infer_takes): deployment's calibration times a layer's real path with it.
 * The last forward must have been an inference forward that kept every
 * output row-major (no feature-major runs: none happen on a model without
 * feature-major overrides) and have run layer i: else RF_ERR_INVALID. */
rf_status rf_model_layer_forward(rf_ctx *ctx, rf_model *m, int i);
/* Allocates (zeroed, so every page is already mapped) the blocks a training
 * step of `batch` samples uses on ctx's threads: activations, saved values,
 * the layers' scratch, the activation gradients (and the input gradient when
 * m->input_grad). The first forward and backward would make them; calling
 * this first moves that setup out of the first step (the training loop does,
 * before its clock starts). Nothing else changes: a step reads none of them
 * before writing it. */
rf_status rf_model_reserve(rf_ctx *ctx, rf_model *m, int batch);
/* dlogits: [batch, K]. Accumulates into m->grads (call rf_model_zero_grad first). */
rf_status rf_model_backward(rf_ctx *ctx, rf_model *m, const float *dlogits);
void      rf_model_zero_grad(rf_model *m);
/* The same over ctx's threads (rf_ctx.engine.pool; ctx NULL: this thread). */
void      rf_model_zero_grad_on(const rf_ctx *ctx, rf_model *m);
/* Output of layer i from the last forward: [batch, out_size]; NULL when i is
 * out of range or the forward kept that output only feature-major (inside a
 * feature-major run: rf_layer.out_feat). */
float    *rf_model_layer_output(rf_model *m, int i);
/* Number of prunable weights, and of non-zero mask entries among them. */
size_t    rf_model_prunable_count(const rf_model *m, size_t *remaining);
/* Layer collapse (Tanaka et al. 2020, Sec. 4) over the DAG (src/nn/connect.c):
 * sets collapsed[l] (n_layers entries) to 1 for each layer with a prunable
 * weight that no signal from the input to the logits can cross: one of its
 * prunable tensors keeps nothing, or (linear, conv) none of its kept
 * weights joins a unit reachable from the input to a unit that reaches the
 * output, following every branch (add, concat, option-A shortcuts). keep:
 * n_params floats, non-zero where a weight is kept (m->masks, or m->params
 * for the weights' own zeros); borrowed. */
rf_status rf_model_collapsed(rf_ctx *ctx, const rf_model *m, const float *keep, unsigned char *collapsed);
/* ---- channel groups and slicing (src/nn/slice.c) ---------------------------
 * Structured pruning removes output units (an image's channels, a flat
 * vector's features) of conv2d and linear layers. Units that the DAG ties
 * together must go together: an add sums unit u of each input into its
 * unit u (an option-A shortcut's unit c into unit c + front; the
 * zero-padded units outside take only the other inputs), so those are one
 * group; batch norm, activations and pooling pass units through; flatten
 * spreads a channel over H·W features; concat places its inputs' units
 * side by side. A group is "pinned" (cannot be removed) when it reaches
 * the logits or the model input, or a layer that mixes units in a way the
 * slicer does not follow (layer norm, attention, transformer blocks, patch
 * embedding). rf_chan_groups lists, for every output unit of every layer,
 * its group (-1: pinned or not produced by a product); a group is owned by
 * the first product layer whose output rows make it. */
typedef struct rf_chan_groups {
    int     n_layers, n_groups;
    size_t *off;          /* [n_layers + 1]: layer i's units are unit[off[i] .. off[i + 1]) */
    int    *unit;         /* group of each unit, -1 when it cannot be removed */
    int    *owner;        /* [n_groups]: the owning product layer */
    /* [n_layers]: for a product layer whose outputs cannot be removed, the
     * layer that pins them (-2: the logits, -3: not followed, -1: the
     * layer's units are removable) */
    int    *pinned_by;
    /* Units inside a layer (rf_layer_inner): layer i's are
     * inner_unit[inner_off[i] .. inner_off[i + 1]), each its own group
     * owned by layer i. */
    size_t *inner_off;
    int    *inner_unit;
} rf_chan_groups;
/* Units inside layer li that slicing can remove without touching its
 * output: a transformer block's MLP hidden features (timm's Block: row j
 * of mlp.fc1.weight and mlp.fc1.bias[j] make feature j, column j of
 * mlp.fc2.weight reads it; the spec's "mlp"). Returns their count (0: none)
 * and the tensors (each may be NULL). */
int       rf_layer_inner(const rf_model *m, int li, const rf_param **rows, const rf_param **bias, const rf_param **cols);
/* The spec's name of a layer type ("conv2d"), "?" for a value that is not one. */
const char *rf_layer_type_name(int type);
/* The units of layer L's output (channels of an image, features of tokens
 * or of a flat vector); *image (may be NULL) is 1 for an image. */
int       rf_layer_units(const rf_layer *L, int *image);
/* Returns new groups of m's DAG (free with rf_chan_groups_free). */
rf_status rf_model_chan_groups(rf_ctx *ctx, const rf_model *m, rf_chan_groups **out);
void      rf_chan_groups_free(rf_chan_groups *g);   /* accepts NULL */
/* Why product layer li's units cannot be removed, into buf ("its outputs are
 * the logits", "layer 'blocks.0' (transformer) reads them and cannot drop
 * input units"); "" when they can. */
void      rf_chan_groups_why(const rf_model *m, const rf_chan_groups *g, int li, char *buf, size_t n);
/* The groups whose every unit is dead in m's masks: each member product
 * row and its bias masked to 0, and each member unit's per-unit parameters
 * (batch norm's weight and bias) masked to 0, so the unit outputs exactly
 * 0 and removing it changes no logit. dead[n_groups] is filled (1: dead).
 * Without masks no group is dead. */
void      rf_chan_groups_dead(const rf_model *m, const rf_chan_groups *g, unsigned char *dead);
/* The physically smaller model: m without the units of the dead groups.
 * A new spec (each sliced conv2d/linear's "out", an option-A add's
 * "front"; every layer named, inputs listed) and m's parameters, masks and
 * buffers sliced (weight rows and input columns, biases, batch-norm
 * weights, biases and running statistics). In eval mode it computes what
 * m computes with its masks applied. *removed (may be NULL) gets the
 * number of units removed. Errors: a layer left with no unit. Returns a new
 * model (rf_model_free). */
rf_status rf_model_slice(rf_ctx *ctx, const rf_model *m, rf_model **out, long *removed);
/* Network slimming's L1 penalty on batch-norm scales (Liu et al. 2017,
 * eq. 1): grads of every batch norm's weight γ += lambda·sign(γ).
 * RF_ERR_INVALID when m has no batch norm. */
rf_status rf_model_bn_l1(rf_ctx *ctx, rf_model *m, float lambda);
/* Multiply-adds of one forward of one sample: every product with a weight
 * (conv2d, linear, patch embedding: output positions x weight elements;
 * the products inside attention and transformer blocks, and attention's
 * q·kᵀ and att·v, 2·T²·D). Element-wise layers, batch norm and pooling are
 * not counted (Li et al. 2017 count FLOPs of the products the same way). */
double    rf_model_flops(const rf_model *m);

/* Index of the first layer whose output in the last forward holds a NaN or
 * Inf (the training loop names it on a non-finite loss), or -1 if none. */
int       rf_model_first_nonfinite(const rf_model *m);

/* ---- losses ----------------------------------------------------------------
 * Softmax cross-entropy, mean over batch, optional label smoothing eps.
 * Writes dlogits (d mean loss / d logits) if non-NULL. */
float rf_loss_xent(const float *logits, const int32_t *labels, int batch, int classes,
                   float smoothing, float *dlogits);
/* Distillation (Hinton et al. 2015): alpha*T^2*KL(softmax(t/T) || softmax(s/T))
 * + (1-alpha)*CE(y, softmax(s)), mean over batch; writes dlogits if non-NULL. */
float rf_loss_distill(const float *student, const float *teacher, const int32_t *labels,
                      int batch, int classes, float T, float alpha, float *dlogits);

/* ---- optimizers and schedules --------------------------------------------- */
typedef enum rf_optim_type { RF_OPT_SGD = 0, RF_OPT_ADAM = 1, RF_OPT_ADAMW = 2 } rf_optim_type;
typedef enum rf_sched_type {
    RF_SCHED_CONSTANT = 0, RF_SCHED_STEP = 1, RF_SCHED_COSINE = 2, RF_SCHED_LINEAR = 3 /* linear decay to 0 */
} rf_sched_type;

typedef struct rf_optim_cfg {
    rf_optim_type type;
    float lr, momentum, weight_decay, beta1, beta2, eps;
    int   nesterov;
    float clip_norm;           /* 0 = off */
    rf_sched_type sched;
    int64_t warmup_steps;      /* linear warm-up from 0 */
    int64_t step_size;         /* RF_SCHED_STEP: decay every step_size steps */
    float gamma;               /* RF_SCHED_STEP factor */
} rf_optim_cfg;
void rf_optim_cfg_default(rf_optim_cfg *c, rf_optim_type t);
/* Learning rate at `step` of `total` steps. */
float rf_sched_lr(const rf_optim_cfg *c, int64_t step, int64_t total);

struct rf_pool;
typedef struct rf_optim {
    rf_optim_cfg cfg;
    size_t  n;
    float  *m, *v;             /* moments, same offsets as params (owned)  */
    int64_t t;                 /* steps taken */
    struct rf_pool *pool;      /* the threads of a step: the init ctx's (borrowed; NULL: one) */
} rf_optim;
rf_status rf_optim_init(rf_ctx *ctx, rf_optim *o, const rf_optim_cfg *cfg, size_t n_params);
void      rf_optim_free(rf_optim *o);
/* One step with learning rate lr. Pruned entries (mask 0) get zero update and
 * their moments are zeroed: pruned weights stay exactly 0.0. Applies
 * gradient-norm clipping if configured. Returns the pre-clip grad norm.
 * Runs on o->pool's threads (the ctx rf_optim_init got, rf_ctx.engine.pool);
 * the result is the same bits on any thread count and ISA. */
float     rf_optim_step(rf_optim *o, rf_model *m, float lr);
/* The same step on any flat block of o->n parameters with their gradients
 * and masks (NULL: none), e.g. the codebooks of weight sharing, which are
 * not model parameters. rf_optim_step(o, m, lr) is this on m's blocks. */
float     rf_optim_step_flat(rf_optim *o, float *params, const float *grads, const float *masks, float lr);

#ifdef __cplusplus
}
#endif
#endif
