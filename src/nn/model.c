/* The model: the layer table, block allocation, forward and backward passes,
 * masks, cloning and lookups.
 *
 * Activations of a batch are one block `acts`: layer i's output is
 * acts[act_offset·max_batch ...] as [batch, out_size]; `dacts` mirrors it
 * with gradients and `saved` holds per-layer state for backward the same way.
 * Backward zeroes dacts once and every layer ADDS into its input gradient
 * (llm.c), which makes fan-out in the DAG (a layer read by several) a plain
 * addition. Layers run in spec order, a topological order of the DAG (every
 * input comes earlier), and backward in the reverse order. */
#include "nn/layers.h"
#include "raffle/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The op table: one entry per layer type, with the op's traits in the op
 * (layers.h rf_nn_op.traits). A type added to rf_layer_type without its
 * entry here does not compile. */
static const rf_nn_op *const ops[] = {
    [RF_L_LINEAR] = &rf_nn_op_linear,       [RF_L_CONV2D] = &rf_nn_op_conv2d,
    [RF_L_MAXPOOL] = &rf_nn_op_maxpool,     [RF_L_AVGPOOL] = &rf_nn_op_avgpool,
    [RF_L_GAP] = &rf_nn_op_gap,             [RF_L_BATCHNORM] = &rf_nn_op_batchnorm,
    [RF_L_LAYERNORM] = &rf_nn_op_layernorm, [RF_L_RELU] = &rf_nn_op_relu,
    [RF_L_GELU] = &rf_nn_op_gelu,           [RF_L_TANH] = &rf_nn_op_tanh,
    [RF_L_DROPOUT] = &rf_nn_op_dropout,     [RF_L_FLATTEN] = &rf_nn_op_flatten,
    [RF_L_RESIDUAL] = &rf_nn_op_residual,   [RF_L_PATCH_EMBED] = &rf_nn_op_patch_embed,
    [RF_L_ATTENTION] = &rf_nn_op_attention, [RF_L_TRANSFORMER] = &rf_nn_op_transformer,
    [RF_L_CLS_POOL] = &rf_nn_op_cls_pool,   [RF_L_MEAN_POOL] = &rf_nn_op_mean_pool,
    [RF_L_ADD] = &rf_nn_op_add,             [RF_L_CONCAT] = &rf_nn_op_concat,
};
_Static_assert(sizeof ops / sizeof ops[0] == RF_L_TYPE_COUNT_, "every rf_layer_type needs its op (and traits) in this table");

const rf_nn_op *rf_nn_op_get(int type) {
    return type >= 0 && type < RF_L_TYPE_COUNT_ ? ops[type] : NULL;
}

unsigned rf_layer_traits(int type) {
    const rf_nn_op *op = rf_nn_op_get(type);
    return op ? op->traits : 0;
}

long rf_layer_product_rows(const rf_layer *L, int K) {
    unsigned t = rf_layer_traits(L->type);
    if (t & RF_LT_ROWS_OUT) return (long)L->out.d[1] * L->out.d[2];
    if (t & RF_LT_PRODUCTS) return L->in.d[0];
    return K > 0 && L->in_size % (size_t)K == 0 ? (long)(L->in_size / (size_t)K) : 1;
}

static float *alloc_floats(size_t n) {
    float *p = rf_aligned_alloc(64, (n ? n : 1) * sizeof(float));
    if (p) memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

rf_status rf_nn_model_alloc_blocks(rf_ctx *ctx, rf_model *m) {
    /* A spec declares its sizes: refuse what would pass the memory cap before
     * allocating (params + grads + buffers now; masks and optimizer moments
     * come later and are checked when they are made). */
    uint64_t floats = (uint64_t)m->n_params * 2 + (uint64_t)m->n_buffers;
    if (floats / 2 < (uint64_t)m->n_params / 2 || floats > UINT64_MAX / sizeof(float))
        return rf_error(ctx, RF_ERR_LIMIT, "model: parameter count overflows");
    RF_TRY(rf_check_cap(ctx, floats * sizeof(float), "model parameters and gradients"));
    m->params = alloc_floats(m->n_params);
    m->grads = alloc_floats(m->n_params);
    m->buffers = alloc_floats(m->n_buffers);
    if (!m->params || !m->grads || !m->buffers) return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory");
    return RF_OK;
}

static void free_acts(rf_model *m) {
    rf_free(m->acts); rf_free(m->dacts); rf_free(m->saved); rf_free(m->scratch); rf_free(m->dinput);
    rf_free(m->feat);
    m->acts = m->dacts = m->saved = m->scratch = m->dinput = m->feat = NULL;
    m->acts_numel = m->saved_numel = m->scratch_numel = m->feat_numel = 0;
    m->max_batch = 0;
}

void rf_model_free(rf_model *m) {
    /* The calling thread's GEMM scratch (W^T packs, attention head packs) is
     * regrown on demand by the next model; releasing it here keeps a freed
     * model from leaving memory behind. */
    rf_nn_gemm_release();
    if (!m) return;
    free_acts(m);
    rf_free(m->layers);
    rf_free(m->ptensors);
    rf_free(m->params);
    rf_free(m->grads);
    rf_free(m->masks);
    rf_free(m->buffers);
    rf_free(m->spec_json);
    rf_free(m);
}

/* Sizes the activation blocks for `batch` samples (grow only: a smaller
 * batch reuses them, so steady-state training never allocates). */
/* The scratch the layers need for `batch` samples on the ctx's threads
 * (per-thread buffers of layers that split their work); grown when a batch
 * or a thread count needs more. */
static rf_status ensure_scratch(rf_ctx *ctx, rf_model *m, int batch) {
    int threads = rf_nn_threads(&ctx->engine);
    size_t scratch = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_nn_op *op = ops[m->layers[i].type];
        size_t s = op->scratch ? op->scratch(&m->layers[i], batch, &ctx->engine) : 0;
        if (s > scratch) scratch = s;
    }
    if (m->scratch && scratch <= m->scratch_numel) return RF_OK;
    RF_TRY(rf_check_cap(ctx, (uint64_t)scratch * sizeof(float), "layer scratch"));
    rf_free(m->scratch);
    m->scratch_numel = 0;
    if (!(m->scratch = alloc_floats(scratch)))
        return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for the layers' scratch (batch %d, %d threads)", batch,
                        threads);
    m->scratch_numel = scratch;
    return RF_OK;
}

static rf_status ensure_acts(rf_ctx *ctx, rf_model *m, int batch) {
    if (batch <= m->max_batch && m->acts) return ensure_scratch(ctx, m, m->max_batch);
    free_acts(m);
    size_t per = 0, save = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        per += L->out_size;
        save += L->save_numel;
    }
    uint64_t bytes = ((uint64_t)per * 2 + save) * (uint64_t)batch * sizeof(float);
    RF_TRY(rf_check_cap(ctx, bytes, "activations"));
    m->acts_numel = per * (size_t)batch;
    m->saved_numel = save * (size_t)batch;
    m->acts = alloc_floats(m->acts_numel);
    m->saved = alloc_floats(m->saved_numel);
    if (!m->acts || !m->saved) {
        free_acts(m);
        return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for activations of batch %d", batch);
    }
    m->max_batch = batch;
    rf_status st = ensure_scratch(ctx, m, batch);
    if (st) free_acts(m);
    return st;
}

static float *act_of(const rf_model *m, float *block, int i) {
    return block + m->layers[i].act_offset * (size_t)m->max_batch;
}

static void fill_run(rf_nn_run *r, rf_model *m, int i, const rf_engine *eng) {
    /* Refreshed on every call rather than once at build time: clones and
     * models rebuilt from checkpoints get their own ptensors block. */
    m->layers[i].pt = m->ptensors + m->layers[i].first_param;
    const rf_layer *L = &m->layers[i];
    memset(r, 0, sizeof *r);
    r->L = L;
    r->eng = eng;
    r->B = m->batch;
    r->training = m->training;
    for (int k = 0; k < L->n_inputs; k++) {
        int src = L->inputs[k];
        r->ins[k] = src >= 0 ? act_of(m, m->acts, src) : m->input_ptr;
        r->in_shape[k] = src >= 0 ? m->layers[src].out : m->input;
    }
    r->in = r->ins[0];
    r->out = act_of(m, m->acts, i);
    for (int t = 0; t < L->n_params; t++) {
        const rf_param *p = &m->ptensors[L->first_param + t];
        r->p[t] = m->params + p->offset;
        r->g[t] = m->grads + p->offset;
    }
    r->buf = m->buffers + L->buf_offset;
    r->save = m->saved + L->save_offset * (size_t)m->max_batch;
    r->scratch = m->scratch;
    r->rng = &m->dropout_rng;
}

/* ---- feature-major runs -----------------------------------------------------
 * The sparse kernels multiply W by panels of 16 activation columns
 * (kernels.h rf_layout): fed row-major activations they transpose every
 * input panel in and every output panel back, and at vit-tiny's widths
 * (K = 64, 95% sparse) those transposes cost more than the multiply-adds.
 * So an inference forward of a deployed model can run a stretch of layers
 * that have a feature-major form (rf_nn_op.forward_feat: linear, patch
 * embedding, transformer block, layer norm, cls pooling, the element-wise
 * layers, flatten) on transposed activations, [width][ld] (layers.h
 * rf_nn_feat): its input is transposed once (none for the patch embedding,
 * which gathers its patches feature-major itself) and its last output once
 * back into that layer's row-major slot. Outputs inside a run stay in the
 * run's buffers (rf_layer.out_feat). Element-wise steps, layer norms,
 * attention and the sparse panels give the same values in either layout;
 * a dense product inside a run is sgemm on the transposed operands.
 *
 * When (bench/deploy/feat_runs.c, docs/kernels.md): a run pays when the
 * transposes its sparse products skip (rf_nn_op.feat) clearly outweigh
 * the two at its ends, which copy whole activations through memory where
 * the kernels' panel transposes stay in cache. Measured whole-model, 90-95%
 * sparse, batch 64-256: vit-tiny (skips ~12,000 floats per sample, ends
 * 10) 1.4-1.5x faster; lenet-300-100 (1,594 against 794) 0.99-1.06x;
 * conv-2's classifier (13,578 against 12,554) 0.91-1.02x. A stretch runs
 * feature-major when it skips at least FEAT_RUN_GAIN times what its ends
 * copy, and for batches of 2 samples and more (one vit-tiny sample:
 * 0.86-1.0x). A rule, not a timing, so every run and rank computes the same
 * floats. Never in training or with a hook, which read row-major outputs. */
#define FEAT_RUN_GAIN 4

static int in_kind(const rf_model *m, int i) {
    int src = m->layers[i].inputs[0];
    return src >= 0 ? m->layers[src].ip[7] : m->input_kind;
}

static long feat_of(rf_model *m, int i) {
    const rf_nn_op *op = ops[m->layers[i].type];
    if (!op->feat || !op->forward_feat) return -1;
    m->layers[i].pt = m->ptensors + m->layers[i].first_param;
    return op->feat(&m->layers[i]);
}

/* Whether a layer other than k + 1 reads k's output, or k + 1 reads more
 * than it: then k's output must reach acts, so k may only end a run. */
static int read_elsewhere(const rf_model *m, int k) {
    if (k + 1 < m->n_layers && (m->layers[k + 1].n_inputs != 1 || m->layers[k + 1].inputs[0] != k)) return 1;
    for (int i = k + 2; i < m->n_layers; i++)
        for (int q = 0; q < m->layers[i].n_inputs; q++)
            if (m->layers[i].inputs[q] == k) return 1;
    return 0;
}

/* End (exclusive) of the run that starts at layer i, or i if none does. A
 * run is a chain: each layer after the first reads the one before it and
 * only it does; a layer whose output is read elsewhere only ends a run (its
 * output must reach acts). */
static int feat_run_end(rf_model *m, int i, const rf_engine *eng) {
    int mode = eng->v[RF_ENGINE_FEAT_RUNS];   /* off, by the rule, always (raffle/engine.h) */
    if (m->training || m->hook || mode == RF_ENGINE_FEAT_OFF || (mode == RF_ENGINE_FEAT_RULE && m->batch < 2)) return i;
    int j = i, reads_rows = ops[m->layers[i].type]->feat_reads_rows;
    long gain = 0, f;
    while (j < m->n_layers && (j == i || !ops[m->layers[j].type]->feat_reads_rows) && (f = feat_of(m, j)) >= 0) {
        gain += f;
        if (read_elsewhere(m, j++)) break;
    }
    if (j == i || gain == 0) return i;
    long ends = (reads_rows ? 0 : (long)m->layers[i].in_size) + (long)m->layers[j - 1].out_size;
    return mode == RF_ENGINE_FEAT_ALWAYS || gain >= FEAT_RUN_GAIN * ends ? j : i;
}

/* Layer k's input (out = 0) or output (out = 1) as a feature-major matrix:
 * its rows and width (rf_nn_feat_view); returns its row stride. */
static int feat_mat(const rf_model *m, int k, int out, int *rows, int *width) {
    const rf_layer *L = &m->layers[k];
    rf_nn_feat_view(out ? L->out : L->in, out ? L->ip[7] : in_kind(m, k), m->batch, rows, width);
    return rf_feat_ld(*rows);
}

static rf_status feat_run(rf_ctx *ctx, rf_model *m, int i, int j) {
    const int B = m->batch;
    int rows, width, ld;
    size_t act = 0, scr = 0;
    for (int k = i; k < j; k++) {
        const rf_layer *L = &m->layers[k];
        for (int out = 0; out < 2; out++) {
            ld = feat_mat(m, k, out, &rows, &width);
            size_t n = (size_t)width * (size_t)ld;
            act = n > act ? n : act;
        }
        size_t n = ops[L->type]->scratch_feat ? ops[L->type]->scratch_feat(L, B) : 0;
        scr = n > scr ? n : scr;
    }
    if (2 * act + scr > m->feat_numel) {
        rf_free(m->feat);
        m->feat_numel = 0;
        RF_TRY(rf_check_cap(ctx, (2 * act + scr) * sizeof(float), "feature-major activations"));
        if (!(m->feat = alloc_floats(2 * act + scr)))
            return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for feature-major activations of batch %d", B);
        m->feat_numel = 2 * act + scr;
    }
    float *cur = m->feat, *nxt = m->feat + act;
    rf_nn_run r;
    fill_run(&r, m, i, &ctx->engine);
    if (!ops[m->layers[i].type]->feat_reads_rows) {
        ld = feat_mat(m, i, 0, &rows, &width);
        rf_transpose_f32(cur, ld, r.in, rows, width, width);
    }
    for (int k = i; k < j; k++) {
        rf_layer *L = &m->layers[k];
        fill_run(&r, m, k, &ctx->engine);
        rf_nn_feat f = {&r, cur, feat_mat(m, k, 0, &rows, &width), nxt, feat_mat(m, k, 1, &rows, &width),
                        m->feat + 2 * act};
        if (k == i && ops[L->type]->feat_reads_rows) f.in = r.in;
        rf_status st = ops[L->type]->forward_feat(&f);
        if (st) { rf_error_prefix(ctx, "layers[%d] %s", k, L->name); return st; }
        L->out_feat = 1;
        float *t = cur; cur = nxt; nxt = t;
    }
    ld = feat_mat(m, j - 1, 1, &rows, &width);
    rf_transpose_f32(act_of(m, m->acts, j - 1), width, cur, width, rows, ld);
    m->layers[j - 1].out_feat = 0;
    return RF_OK;
}

/* ---- fusion -------------------------------------------------------------------
 * A batch norm, a two-input add or a conv whose only reader is the ReLU
 * right after it runs together with that ReLU (the op's fused pair in relu_fusions):
 * forward, the ReLU's output is written in the layer's last pass and the
 * layer's own output is never written (rf_layer.out_fused); backward, the
 * layer reads the ReLU's output gradient and makes the ReLU's gradient on
 * the fly (batch norm from its input and the forward's affine map, add from
 * the ReLU's output), and neither the layer's output nor its gradient is
 * touched, not even zeroed. That takes two to four memory passes over an
 * activation out of each pair (ResNet-20: 28 of its 66 activations). Every
 * value is computed with the operations of the two layers in their order,
 * so fused and plain (rf_model.no_fuse) give the same bits
 * (tests/unit/test_fuse.c). Not with a hook (it sees every layer's output),
 * nor where the ReLU would start a feature-major run, nor for a layer under
 * an inference override (rf_layer.infer_gemm). */
typedef struct relu_fusion {
    rf_status (*forward)(const rf_nn_run *r);
    void      (*backward)(const rf_nn_run *r);
    /* inputs whose gradient backward can write instead of add (rf_nn_run.fresh;
     * an add's option-A shortcut too since session 7: shortcut_a_set) */
    unsigned   fresh;
} relu_fusion;
static const relu_fusion relu_fusions[RF_L_TYPE_COUNT_] = {
    [RF_L_BATCHNORM] = {rf_nn_bn_forward_relu, rf_nn_bn_backward_relu, 1},
    [RF_L_ADD] = {rf_nn_add_forward_relu, rf_nn_add_backward_relu, 3},
    [RF_L_RESIDUAL] = {rf_nn_add_forward_relu, rf_nn_add_backward_relu, 3},
    [RF_L_CONV2D] = {rf_nn_conv_forward_relu, rf_nn_conv_backward_relu, 1},
};

/* Unfused layer types whose backward takes rf_nn_run.fresh too (bit k: input
 * k): conv2d writes its input gradient where it runs the direct kernel's
 * (layer_conv.c, direct_dx) and zeroes it itself on its other paths; batch
 * norm writes +0 + its value (layer_norm.c plane_dx; ResNet's bn2 before
 * the block's add: its conv's output gradient is then neither zeroed nor
 * read back). */
static const unsigned fresh_plain[RF_L_TYPE_COUNT_] = {[RF_L_CONV2D] = 1, [RF_L_BATCHNORM] = 1};

/* "shared dz": an identity add + ReLU (layer i, fused) that writes both
 * input gradients (fresh bits 0 and 1) stores the same value g in both.
 * Where input 0 is an unfused batch norm that only this add reads (ResNet's
 * bn2) and neither it nor anything that runs backward between the two (the
 * layers after it, before the add) reads input 1, input 1's gradient still
 * holds g when the batch norm's backward runs: the batch norm reads it as
 * its output gradient, and the add does not store input 0's (one store of
 * an activation less). Same bits. Returns the batch norm's index or -1. */
static int shared_dz_source(const rf_model *m, int i, unsigned fresh) {
    const rf_layer *L = &m->layers[i];
    if (m->hook || !L->out_fused || (L->type != RF_L_ADD && L->type != RF_L_RESIDUAL) || L->n_inputs != 2 ||
        (fresh & 3u) != 3u)
        return -1;
    int src = L->inputs[0], s1 = L->inputs[1];
    if (src < 0 || s1 < 0 || s1 == src || m->layers[src].type != RF_L_BATCHNORM || m->layers[src].out_fused ||
        memcmp(&m->layers[s1].out, &L->out, sizeof L->out))
        return -1;
    for (int k = 0; k < m->n_layers; k++)
        for (int q = 0; q < m->layers[k].n_inputs; q++) {
            if (m->layers[k].inputs[q] == src && k != i) return -1;
            if (m->layers[k].inputs[q] == s1 && k >= src && k < i) return -1;   /* the batch norm included */
        }
    return src;
}

static int fuses_relu(rf_model *m, int i, const rf_engine *eng) {
    const rf_layer *L = &m->layers[i];
    if (m->no_fuse || m->hook || !relu_fusions[L->type].forward || L->n_inputs > 2 || i + 1 >= m->n_layers) return 0;
    const rf_layer *R = &m->layers[i + 1];
    if (R->type != RF_L_RELU || read_elsewhere(m, i)) return 0;   /* i + 1 reads i alone, nothing else reads i */
    /* a layer under an inference override (int8, sparse: quantize, deploy)
     * keeps its output, which per-layer checks of those paths read */
    if (L->infer_gemm) return 0;
    return feat_run_end(m, i + 1, eng) == i + 1;
}

/* "bn fold": an unfused batch norm (layer i) whose output only a fused add
 * + ReLU reads, as its input 0 (ResNet's bn2), runs its statistics only;
 * the add computes relu((x·a + b) + shortcut) from the batch norm's input
 * (layer_merge.c), so the batch norm's output is neither written nor read
 * back: one write and one read of an activation less, two passes become
 * one. The same operations in the same order (fused and no_fuse give the
 * same bits, test_fuse.c). Backward is unchanged: batch norm reads its
 * input, the add the ReLU's output. Returns the add's index or -1. */
static int bn_fold_reader(rf_model *m, int i, const rf_engine *eng) {
    if (m->no_fuse || m->hook || m->layers[i].type != RF_L_BATCHNORM) return -1;
    int j = -1;
    for (int k = i + 1; k < m->n_layers; k++)
        for (int q = 0; q < m->layers[k].n_inputs; q++)
            if (m->layers[k].inputs[q] == i) {
                if (j >= 0 || q != 0) return -1;
                j = k;
            }
    if (j < 0 || (m->layers[j].type != RF_L_ADD && m->layers[j].type != RF_L_RESIDUAL) ||
        m->layers[j].n_inputs != 2 || feat_run_end(m, j, eng) != j || !fuses_relu(m, j, eng))
        return -1;
    return j;
}

rf_status rf_model_forward(rf_ctx *ctx, rf_model *m, const float *x, int batch, int training, const float **logits) {
    if (!x || batch < 1) return rf_error(ctx, RF_ERR_INVALID, "forward: need an input and a batch >= 1");
    RF_TRY(ensure_acts(ctx, m, batch));
    m->batch = batch;
    m->training = training ? 1 : 0;
    m->input_ptr = x;
    for (int i = 0; i < m->n_layers; i++) m->layers[i].out_fused = m->layers[i].out_folded = 0;
    for (int i = 0; i < m->n_layers;) {
        int j = feat_run_end(m, i, &ctx->engine);
        if (j > i) {
            RF_TRY(feat_run(ctx, m, i, j));
            i = j;
            continue;
        }
        rf_nn_run r;
        fill_run(&r, m, i, &ctx->engine);
        m->layers[i].out_feat = 0;
        if (fuses_relu(m, i, &ctx->engine)) {
            m->layers[i].out_fused = 1;
            m->layers[i + 1].out_feat = 0;
            r.out = act_of(m, m->acts, i + 1);
            int f = m->layers[i].inputs[0];
            if (f >= 0 && m->layers[f].out_folded) {
                rf_nn_run b;
                fill_run(&b, m, f, &ctx->engine);
                r.bn_x = b.in;
                r.bn_save = b.save;
            }
            rf_status st = relu_fusions[m->layers[i].type].forward(&r);
            if (st) { rf_error_prefix(ctx, "layers[%d] %s", i, m->layers[i].name); return st; }
            i += 2;
            continue;
        }
        r.bn_fold = bn_fold_reader(m, i, &ctx->engine) >= 0;
        rf_status st = ops[m->layers[i].type]->forward(&r);
        if (st) { rf_error_prefix(ctx, "layers[%d] %s", i, m->layers[i].name); return st; }
        m->layers[i].out_folded = r.bn_fold;
        if (m->hook) {
            st = m->hook(m->hook_ud, i, 0, r.out, (size_t)batch * m->layers[i].out_size);
            if (st) return st;
        }
        i++;
    }
    if (logits) *logits = act_of(m, m->acts, m->n_layers - 1);
    return RF_OK;
}

rf_status rf_model_layer_forward(rf_ctx *ctx, rf_model *m, int i) {
    if (!m->input_ptr || m->batch < 1 || m->training || i < 0 || i >= m->n_layers)
        return rf_error(ctx, RF_ERR_INVALID, "layer forward: no inference forward of layer %d to repeat", i);
    for (int k = 0; k < m->n_layers; k++)
        if (m->layers[k].out_feat)
            return rf_error(ctx, RF_ERR_INVALID, "layer forward: layer %d's output was kept feature-major", k);
    for (int k = 0; k < m->layers[i].n_inputs; k++)
        if (m->layers[i].inputs[k] >= 0 && (m->layers[m->layers[i].inputs[k]].out_fused ||
                                             m->layers[m->layers[i].inputs[k]].out_folded))
            return rf_error(ctx, RF_ERR_INVALID, "layer forward: layer %d's input was fused into it", i);
    rf_nn_run r;
    fill_run(&r, m, i, &ctx->engine);
    rf_status st = ops[m->layers[i].type]->forward(&r);
    if (st) rf_error_prefix(ctx, "layers[%d] %s", i, m->layers[i].name);
    return st;
}

/* The activation gradients (and the input gradient when m->input_grad),
 * made once at max_batch: by rf_model_reserve or the first backward. */
static rf_status ensure_grads(rf_ctx *ctx, rf_model *m) {
    if (!m->dacts && !(m->dacts = alloc_floats(m->acts_numel)))
        return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for activation gradients");
    if (m->input_grad && !m->dinput &&
        !(m->dinput = alloc_floats((size_t)m->max_batch * m->input.d[0] * m->input.d[1] * m->input.d[2])))
        return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for the input gradient");
    return RF_OK;
}

rf_status rf_model_reserve(rf_ctx *ctx, rf_model *m, int batch) {
    if (batch < 1) return rf_error(ctx, RF_ERR_INVALID, "model: reserve for %d samples", batch);
    RF_TRY(ensure_acts(ctx, m, batch));
    return ensure_grads(ctx, m);
}

rf_status rf_model_backward(rf_ctx *ctx, rf_model *m, const float *dlogits) {
    if (!m->input_ptr || m->batch < 1 || !dlogits) return rf_error(ctx, RF_ERR_INVALID, "backward: no forward pass to differentiate");
    RF_TRY(ensure_scratch(ctx, m, m->max_batch));   /* this ctx may have more threads than the forward's */
    RF_TRY(ensure_grads(ctx, m));
    size_t in_numel = (size_t)m->batch * m->input.d[0] * m->input.d[1] * m->input.d[2];
    if (m->input_grad) rf_nn_zero(&ctx->engine, m->dinput, in_numel);
    /* The gradient of an activation is computed only if something upstream
     * uses it: a layer with parameters at or before it on some path, or the
     * caller (input_grad) where a path reaches the model input. This skips
     * e.g. fc1's dX [batch, 784] behind a flatten, a third of an MLP's
     * backward. wants[i]: layer i's output gradient is used. */
    unsigned char *wants = rf_calloc((size_t)m->n_layers, 2);
    int *lastr = rf_calloc((size_t)m->n_layers, sizeof(int));
    float **dz_at = rf_calloc((size_t)m->n_layers, sizeof(float *));   /* shared dz: a batch norm's output gradient */
    if (!wants || !lastr || !dz_at) {
        rf_free(wants); rf_free(lastr); rf_free(dz_at);
        return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for backward");
    }
    unsigned char *fresh = wants + m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        wants[i] = L->n_params > 0;
        for (int k = 0; k < L->n_inputs; k++) {
            int src = L->inputs[k];
            wants[i] |= src >= 0 ? wants[src] : (unsigned char)m->input_grad;
            if (src >= 0) lastr[src] = i;   /* the last reader */
        }
    }
    /* A fused layer (or a conv, fresh_plain) that is the first to add into
     * a layer's output gradient (the last of its readers: backward runs
     * them in reverse order) and reads that output once writes the
     * gradient (rf_nn_run.fresh) where it would add to the zeroed one, so
     * that gradient is not zeroed: the other readers then add to what it
     * wrote, +0 + g first as before (ResNet: the add of a block writes
     * the block input's gradient, the block's first conv adds). Nor is a
     * fused layer's own output gradient zeroed (never used), nor the
     * logits' (copied). The rest: zeroed, the batch's rows. */
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        unsigned can = L->out_fused ? relu_fusions[L->type].fresh : fresh_plain[L->type];
        for (int k = 0; k < L->n_inputs; k++) {
            int src = L->inputs[k], once = 1;
            for (int q = 0; q < L->n_inputs; q++) once &= q == k || L->inputs[q] != src;
            if (src >= 0 && wants[src] && lastr[src] == i && once && (can >> k & 1u)) fresh[src] = 1;
        }
    }
    if (m->dacts)
        for (int i = 0; i + 1 < m->n_layers; i++)
            if (!m->layers[i].out_fused && !fresh[i])
                rf_nn_zero(&ctx->engine, act_of(m, m->dacts, i), (size_t)m->batch * m->layers[i].out_size);
    int last = m->n_layers - 1;
    memcpy(act_of(m, m->dacts, last), dlogits, (size_t)m->batch * m->layers[last].out_size * sizeof(float));
    rf_status st = RF_OK;
    for (int i = last; i >= 0 && !st; i--) {
        rf_nn_run r;
        float *dout = act_of(m, m->dacts, i);
        if (m->hook && (st = m->hook(m->hook_ud, i, 1, dout, (size_t)m->batch * m->layers[i].out_size))) break;
        /* a ReLU fused with layer i - 1 (fusion, above): both, as layer i - 1
         * with the ReLU's output and output gradient */
        int fused = i > 0 && m->layers[i - 1].out_fused;
        if (fused) i--;
        const rf_layer *L = &m->layers[i];
        fill_run(&r, m, i, &ctx->engine);
        if (fused) {
            r.out = act_of(m, m->acts, i + 1);
            r.dself = act_of(m, m->dacts, i);
        }
        r.dout = dout;
        /* Every consumer of layer k runs before k (reverse topological order)
         * and ADDS into k's gradient: fan-out sums with no extra step. */
        for (int k = 0; k < L->n_inputs; k++) {
            int src = L->inputs[k];
            r.dins[k] = src >= 0 ? (wants[src] ? act_of(m, m->dacts, src) : NULL) : (m->input_grad ? m->dinput : NULL);
        }
        r.din = r.dins[0];
        for (int k = 0; k < L->n_inputs; k++)   /* fresh for its last reader only, which is the one marked above */
            if (L->inputs[k] >= 0 && fresh[L->inputs[k]] && lastr[L->inputs[k]] == i) r.fresh |= 1u << k;
        int bs = fused ? shared_dz_source(m, i, r.fresh) : -1;
        if (bs >= 0 && r.dins[0] && r.dins[1]) {
            r.skip_in0 = 1;
            dz_at[bs] = r.dins[1];
        }
        if (dz_at[i]) r.dout = dz_at[i];
        if (fused) relu_fusions[L->type].backward(&r);
        else ops[L->type]->backward(&r);
    }
    rf_free(wants);
    rf_free(lastr);
    rf_free(dz_at);
    return st;
}

void rf_model_zero_grad(rf_model *m) { rf_model_zero_grad_on(NULL, m); }
void rf_model_zero_grad_on(const rf_ctx *ctx, rf_model *m) {
    rf_nn_zero(ctx ? &ctx->engine : NULL, m->grads, m->n_params);
}

float *rf_model_layer_output(rf_model *m, int i) {
    if (!m->acts || i < 0 || i >= m->n_layers || m->layers[i].out_feat || m->layers[i].out_fused ||
        m->layers[i].out_folded)
        return NULL;
    return act_of(m, m->acts, i);
}

int rf_model_first_nonfinite(const rf_model *m) {
    if (!m->acts || m->batch < 1) return -1;
    for (int i = 0; i < m->n_layers; i++) {
        /* not in acts: an inference forward's run, or fused into the ReLU
         * after it (whose output is checked: a non-finite batch norm or
         * add output then goes unnamed, the ReLU makes it 0) */
        if (m->layers[i].out_feat || m->layers[i].out_fused || m->layers[i].out_folded) continue;
        const float *y = m->acts + m->layers[i].act_offset * (size_t)m->max_batch;
        size_t n = (size_t)m->batch * m->layers[i].out_size;
        for (size_t k = 0; k < n; k++)
            if (!isfinite(y[k])) return i;
    }
    return -1;
}

const rf_param *rf_model_param(const rf_model *m, const char *name) {
    for (int i = 0; i < m->n_ptensors; i++)
        if (strcmp(m->ptensors[i].name, name) == 0) return &m->ptensors[i];
    return NULL;
}

rf_status rf_model_ensure_masks(rf_ctx *ctx, rf_model *m) {
    if (m->masks) return RF_OK;
    m->masks = rf_aligned_alloc(64, (m->n_params ? m->n_params : 1) * sizeof(float));
    if (!m->masks) return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory for masks");
    for (size_t i = 0; i < m->n_params; i++) m->masks[i] = 1.0f;
    return RF_OK;
}

void rf_model_apply_masks(rf_model *m) {
    if (!m->masks) return;
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= m->masks[i];
}

size_t rf_model_prunable_count(const rf_model *m, size_t *remaining) {
    size_t total = 0, left = 0;
    for (int i = 0; i < m->n_ptensors; i++) {
        const rf_param *p = &m->ptensors[i];
        if (!p->prunable) continue;
        total += p->numel;
        if (!m->masks) { left += p->numel; continue; }
        for (size_t k = 0; k < p->numel; k++) left += m->masks[p->offset + k] != 0.0f;
    }
    if (remaining) *remaining = left;
    return total;
}

rf_status rf_model_clone(rf_ctx *ctx, const rf_model *m, rf_model **out) {
    *out = NULL;
    rf_model *c;
    RF_TRY(rf_model_from_spec(ctx, m->spec_json, &c));
    memcpy(c->params, m->params, m->n_params * sizeof(float));
    memcpy(c->buffers, m->buffers, m->n_buffers * sizeof(float));
    memcpy(c->ptensors, m->ptensors, (size_t)m->n_ptensors * sizeof *m->ptensors);
    if (m->masks) {
        rf_status st = rf_model_ensure_masks(ctx, c);
        if (st) { rf_model_free(c); return st; }
        memcpy(c->masks, m->masks, m->n_params * sizeof(float));
    }
    c->dropout_rng = m->dropout_rng;
    *out = c;
    return RF_OK;
}

rf_status rf_model_check(rf_ctx *ctx, const char *name_or_path) {
    if (!name_or_path || !name_or_path[0]) return rf_error(ctx, RF_ERR_INVALID, "model: no preset or spec given");
    if (rf_model_preset(name_or_path)) return RF_OK;
    unsigned char *txt;
    size_t n;
    rf_status st = rf_read_file(ctx, name_or_path, &txt, &n);
    if (st) return st;
    char *s = rf_malloc(n + 1);
    if (!s) { rf_free(txt); return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory"); }
    memcpy(s, txt, n);
    s[n] = '\0';
    rf_free(txt);
    /* the layer records and the parameter table, no blocks: a spec of
     * 10^9 parameters is checked without the memory it would take */
    rf_model *m = NULL;
    st = rf_model_plan(ctx, s, &m);
    rf_model_free(m);
    rf_free(s);
    if (st) rf_error_prefix(ctx, "%s", name_or_path);
    return st;
}

rf_status rf_model_create(rf_ctx *ctx, const char *name_or_path, rf_model **out) {
    *out = NULL;
    if (!name_or_path) return rf_error(ctx, RF_ERR_INVALID, "model: no preset or spec given");
    const char *preset = rf_model_preset(name_or_path);
    if (preset) return rf_model_from_spec(ctx, preset, out);
    unsigned char *txt;
    size_t n;
    rf_status st = rf_read_file(ctx, name_or_path, &txt, &n);
    if (st) {
        rf_error_prefix(ctx, "model \"%s\" is neither a preset (%s) nor a readable spec file", name_or_path,
                        rf_model_preset_names());
        return st;
    }
    char *s = rf_malloc(n + 1);
    if (!s) { rf_free(txt); return rf_error(ctx, RF_ERR_NOMEM, "model: out of memory"); }
    memcpy(s, txt, n);
    s[n] = '\0';
    rf_free(txt);
    st = rf_model_from_spec(ctx, s, out);
    if (st) rf_error_prefix(ctx, "%s", name_or_path);
    rf_free(s);
    return st;
}
