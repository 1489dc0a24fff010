/* Internal interface of the nn module: the per-type layer table, the spec
 * builder that layers declare their parameters through, and the plain-array
 * kernels layers share (GEMM wrappers, layer norm rows, multi-head attention).
 *
 * Kernel convention (llm.c): outputs first, inputs const, dimensions last;
 * backward ADDS into parameter gradients AND into the input gradient (the
 * model zeroes the activation-gradient block once per backward), so a
 * residual connection is just one more addition into its source's gradient.
 *
 * Integer hyper-parameters rf_layer.ip[], per type:
 *   linear      ip[0] out features, ip[1] bias (0/1)
 *   conv2d      ip[0] out channels, ip[1] kh, ip[2] kw, ip[3] stride, ip[4] padding, ip[5] bias
 *   maxpool,
 *   avgpool     ip[1] kernel, ip[3] stride, ip[4] padding
 *   patch_embed ip[0] width D, ip[1] patch, ip[2] cls token (0/1), ip[3] position embedding (0/1)
 *   attention   ip[0] heads
 *   transformer ip[0] heads, ip[1] MLP hidden width
 *   add         ip[0] shortcut (0 none, 1 option A), ip[1] front + 1 of option A (0: centred)
 *   every type  ip[6] init scheme of its weights (rf_nn_init), ip[7] kind of its output (rf_nn_kind)
 * Float hyper-parameters rf_layer.fp[]:
 *   batchnorm fp[0] eps, fp[1] momentum; layernorm, transformer fp[0] eps; dropout fp[0] p.
 */
#ifndef RAFFLE_NN_LAYERS_H
#define RAFFLE_NN_LAYERS_H

#include "raffle/nn.h"
#include "raffle/engine.h"
#include "raffle/threads.h"

#include <cJSON.h>
#include <string.h>

/* What a per-sample activation shape {d0, d1, d2} means. Shape inference
 * tracks it so that e.g. layernorm on an image is rejected. */
typedef enum rf_nn_kind { RF_NN_IMAGE = 0, RF_NN_TOKENS = 1, RF_NN_FLAT = 2 } rf_nn_kind;

/* Weight initialisation schemes (values stored in ip[6]). */
typedef enum rf_nn_init {
    RF_NN_INIT_KAIMING_NORMAL = 0, /* He et al. 2015: N(0, 2/fan_in)                        */
    RF_NN_INIT_GLOROT_NORMAL  = 1, /* Glorot & Bengio 2010: N(0, 2/(fan_in+fan_out))        */
    RF_NN_INIT_TRUNC_NORMAL   = 2, /* ViT (Dosovitskiy et al. 2021, timm): N(0, 0.02²) cut at ±2σ */
    RF_NN_INIT_PYTORCH        = 3, /* PyTorch default: U(±1/sqrt(fan_in)) for weight and bias */
    RF_NN_INIT_COUNT_
} rf_nn_init;
/* Spec names of the schemes, indexed by rf_nn_init. */
extern const char *const rf_nn_init_names[RF_NN_INIT_COUNT_];

#define RF_NN_MAX_LAYER_PARAMS 16

/* Shape inference state while a spec is turned into layer records. */
typedef struct rf_nn_builder {
    rf_ctx   *ctx;
    int       index;          /* current layer index (for error messages)   */
    const char *type_name;    /* current layer type                          */
    rf_nn_kind in_kind;       /* kind of the current layer's input           */
    rf_param *pt;             /* growing parameter-tensor table              */
    int       n_pt, cap_pt;
    size_t    n_params, n_buffers;
    const rf_layer *layers;   /* layers built so far (their output shapes)   */
    rf_shape3 input;          /* the model's per-sample input shape          */
    rf_nn_kind input_kind;    /* and its kind                                */
    const char *layer_name;   /* the current layer's "name" if the spec gives one */
} rf_nn_builder;

/* Everything one layer call needs, resolved by the model. */
typedef struct rf_nn_run {
    const rf_layer *L;
    const rf_engine *eng;     /* engine of this call (the ctx's options: conv path, GEMM backend, chunking; its pool and GEMM) */
    int          B;           /* batch size                                  */
    int          training;
    const float *in;          /* [B, in_size]                                */
    float       *out;         /* [B, out_size]                               */
    const float *dout;        /* backward: [B, out_size]                     */
    float       *din;         /* backward: [B, in_size], ADD into; NULL: not needed */
    const float *p[RF_NN_MAX_LAYER_PARAMS]; /* the layer's tensors, in declaration order */
    float       *g[RF_NN_MAX_LAYER_PARAMS]; /* their gradients                          */
    float       *buf;         /* the layer's buffers (batchnorm running stats) */
    float       *save;        /* [B * save_numel] state kept from forward to backward */
    float       *scratch;     /* at least op->scratch(L, B, eng) floats       */
    rf_rng      *rng;         /* dropout stream                              */
    /* Every input of a layer with several (add, concat, residual): ins[0]
     * is `in`, dins[0] is `din`; dins[k] is NULL when nothing upstream of
     * input k needs its gradient. */
    const float *ins[RF_NN_MAX_INPUTS];
    float       *dins[RF_NN_MAX_INPUTS];
    rf_shape3    in_shape[RF_NN_MAX_INPUTS];  /* their per-sample shapes  */
    /* Backward of a fused layer (model.c, fusion) or a conv2d only: bit k
     * set = dins[k] was not zeroed (this layer is its only reader), and the
     * layer writes every element of it with the value it would add to +0. */
    unsigned     fresh;
    /* Backward of a fused layer only: the place of its own output gradient
     * ([B, out_size], read by no other layer, not zeroed), free for it to
     * use; NULL elsewhere. */
    float       *dself;
    /* A batch norm folded into its reader (model.c, "bn fold"). In that
     * batch norm's forward, bn_fold = 1: statistics (and running
     * statistics) only, its per-channel affine map y = x·a + b put into its
     * saved state (rf_nn_bn_affine), its output not written. In the forward
     * of the fused add + ReLU that reads it as input 0 (and nothing else
     * does), bn_x is the batch norm's input and bn_save its saved state:
     * the add computes relu((x·a + b) + in1) with the two layers'
     * operations in their order, the same bits. NULL / 0 elsewhere. */
    const float *bn_x;
    const float *bn_save;
    int          bn_fold;
    /* Backward of a fused add + ReLU: leave input 0's gradient unwritten
     * (model.c, "shared dz": it equals input 1's, which its batch norm
     * reads instead). */
    int          skip_in0;
} rf_nn_run;

/* Whether r's forward goes through its layer's inference override
 * (nn.h rf_layer.infer_gemm, and infer_takes for r's batch). */
static inline int rf_nn_overridden(const rf_nn_run *r) {
    const rf_layer *L = r->L;
    return L->infer_gemm && !r->training && (!L->infer_takes || L->infer_takes(L->infer_state, r->B));
}

/* One layer call inside a feature-major run (model.c). An activation is
 * viewed as a matrix [rows, width]: rows = B·T and width = D for tokens,
 * rows = B and width = the per-sample size otherwise (rf_nn_feat_view); in
 * a run it is stored transposed, [width][ld] with ld = rf_feat_ld(rows)
 * (kernels.h RF_FEAT), so a product is YT = W · XT with no transposes. */
typedef struct rf_nn_feat {
    const rf_nn_run *r;       /* L, B, p (r->in, r->out, r->save unused)       */
    const float *in;          /* [in width][ldi]; row-major r->in for ops with feat_reads_rows */
    int          ldi;
    float       *out;         /* [out width][ldo], never overlapping in       */
    int          ldo;
    float       *scratch;     /* scratch_feat(L, B) floats                     */
} rf_nn_feat;

typedef struct rf_nn_op {
    const char *name;                 /* the spec's "type"                    */
    const char *const *keys;          /* accepted keys besides type/name/init, NULL-terminated */
    /* Parses the layer's keys from j, infers L->out from L->in and declares
     * parameters (rf_nn_param), buffers and L->save_numel. */
    rf_status (*setup)(rf_nn_builder *b, rf_layer *L, const cJSON *j);
    /* Floats of scratch for a batch of B on engine e (its options, and its
     * threads, rf_nn_threads: per-thread buffers included); NULL: none. */
    size_t    (*scratch)(const rf_layer *L, int B, const rf_engine *e);
    rf_status (*forward)(const rf_nn_run *r);
    void      (*backward)(const rf_nn_run *r);
    /* Feature-major inference, optional (NULL: the layer ends a run).
     * feat(L): < 0 the layer cannot run feature-major as deployed now (a
     * product with a row-major-only override: int8); else the floats per
     * sample its feature-major overrides would not transpose (K + N per row
     * of each such product; 0 without any), what a run gains (model.c).
     * L->pt is current when it is called. */
    long      (*feat)(const rf_layer *L);
    rf_status (*forward_feat)(const rf_nn_feat *f);
    size_t    (*scratch_feat)(const rf_layer *L, int B);   /* floats; NULL: none */
    int        feat_reads_rows;  /* forward_feat reads r->in row-major: only starts a run */
    /* How the layer's output units (image channels, token features, flat
     * features) depend on its inputs' units (rf_nn_conn): what the
     * connectivity check (connect.c, layer collapse) follows through the
     * DAG. 0 = RF_NN_CONN_ALL, the conservative default. */
    int        conn;
    /* Most inputs the layer takes (0: one). Only add, concat and residual
     * read more than one (rf_nn_run.ins). */
    int        max_inputs;
    /* What the layer is (rf_layer_trait, nn.h): deployment, quantization,
     * QAT, pruning, finishing, checkpoints and distillation ask this, not
     * the type. Last, so a positional initializer cannot leave it out. */
    unsigned   traits;
} rf_nn_op;

/* Unit-level connectivity of an op (rf_nn_op.conn). */
typedef enum rf_nn_conn {
    RF_NN_CONN_ALL = 0,     /* every output unit may depend on every input unit */
    RF_NN_CONN_PASS = 1,    /* output unit u depends on input unit u only (element-wise, pooling, batch norm) */
    RF_NN_CONN_PRODUCT = 2, /* through the layer's weight [out, in, ...]: o depends on i where W[o, i] != 0 */
    RF_NN_CONN_FLATTEN = 3, /* feature f of the flat output is unit f / (H·W) of an image (f % D of tokens) */
    RF_NN_CONN_SUM = 4,     /* add: output unit u from unit u of each input (option A: u - front) */
    RF_NN_CONN_CONCAT = 5,  /* inputs' units side by side */
} rf_nn_conn;

/* The matrix view of an activation of per-sample shape s and kind k for a
 * batch of B (rf_nn_feat). */
static inline void rf_nn_feat_view(rf_shape3 s, int kind, int B, int *rows, int *width) {
    if (kind == RF_NN_TOKENS) { *rows = B * s.d[0]; *width = s.d[1]; }
    else { *rows = B; *width = s.d[0] * s.d[1] * s.d[2]; }
}
/* feat() of a layer whose one product (K inputs, N outputs, `rows` rows per
 * sample) has its override in the layer record, and of one without
 * products. */
long rf_nn_feat_product(const rf_layer *L, int K, int N, int rows);
long rf_nn_feat_always(const rf_layer *L);
/* The product weight of a linear or conv layer L of model m: [O, I, ...]
 * with I = in_units (its input's units) and O = out_units, else NULL
 * (connect.c, slice.c). */
const rf_param *rf_nn_product_weight(const rf_model *m, const rf_layer *L, int in_units, int out_units);
/* YT[N][ld] = W · XT[K][ld] + b over M columns: gemm_feat (an
 * infer_gemm_feat override on state) when set, else the dense product
 * (kernels.h rf_linear_f32_lay). */
rf_status rf_nn_product_feat(rf_status (*gemm_feat)(void *, const float *, float *, int, int), void *state,
                             float *YT, const float *XT, const float *W, const float *b, int M, int N, int K,
                             int ld);
/* forward_feat of the identity layers (flatten, dropout at inference). */
rf_status rf_nn_feat_copy(const rf_nn_feat *f);
/* y = f(x) row by row over the first M of each of n rows of stride ld. */
void rf_nn_feat_rows(float *y, const float *x, int n, int M, int ld, void (*f)(float *, const float *, size_t));

/* A layer fused with the ReLU that follows it (model.c, "fusion"): r is the
 * layer's run, except that r->out is the ReLU's output (forward: written
 * with max(layer output, 0); the layer's own output is never written) and,
 * backward, r->dout the ReLU's output gradient, and r->fresh may mark
 * input gradients to write rather than add to. The same bits as the layer
 * then the ReLU, forward and backward (tests/unit/test_fuse.c). Batch
 * norm (layer_norm.c; fresh bit 0) and add / residual with two inputs
 * (layer_merge.c; fresh bits of inputs of the output's shape). */
rf_status rf_nn_bn_forward_relu(const rf_nn_run *r);
void      rf_nn_bn_backward_relu(const rf_nn_run *r);
/* Batch norm's plane sums (layer_norm.c) and their plain reference, for
 * tests; the same bits. s, q: RF_NN_LANES doubles (the caller's), element
 * i added to lane i mod RF_NN_LANES. kind 0: s += x; 1: s += (x − k)²;
 * 2 (engine bn=onepass): s += x − k, q += (x − k)²; 3 (backward): s += g,
 * q += g·(x − k), g = dy, or with relu the fused ReLU's gradient
 * +0 + (x·fa + fb > 0 ? dy : +0). dy is read by kind 3 only. */
void      rf_nn_bn_sums(int kind, double *s, double *q, const float *dy, const float *x, size_t hw, double k, int relu,
                        float fa, float fb);
/* The fused BN + ReLU backward's input-gradient plane (dx += or, set, =
 * +0 + k0·(dz − k1 − (x − mu)·rs·k2), dz the ReLU's gradient of z = x·fa +
 * fb) and its plain reference (the two-loop form it replaced); same bits. */
void      rf_nn_bn_dx_relu(float *dx, const float *dy, const float *x, size_t hw, float fa, float fb, float k0, float k1,
                           float mu, float rs, float k2, int set);
void      rf_nn_bn_dx_relu_ref(float *dx, const float *dy, const float *x, size_t hw, float fa, float fb, float k0,
                               float k1, float mu, float rs, float k2, int set);
void      rf_nn_bn_sums_ref(int kind, double *s, double *q, const float *dy, const float *x, size_t hw, double k,
                            int relu, float fa, float fb);
/* A folded batch norm's affine map in its saved state (rf_nn_run.bn_fold):
 * a[C] then b[C]. */
const float *rf_nn_bn_affine(const float *save, int C);
/* The folded add + ReLU's plane kernels (layer_merge.c): y = relu((x·a +
 * b) + s) (s NULL: relu(x·a + b)), and their plain reference (batch norm's
 * plane_affine into a buffer, then add's add2_relu / relu_v); same bits. */
void      rf_nn_affine_add_relu(float *y, const float *x, const float *s, size_t n, float a, float b);
void      rf_nn_affine_add_relu_ref(float *y, const float *x, const float *s, size_t n, float a, float b);
rf_status rf_nn_add_forward_relu(const rf_nn_run *r);
void      rf_nn_add_backward_relu(const rf_nn_run *r);
/* conv2d (layer_conv.c; fresh bit 0: the Winograd input gradient is
 * stored, other paths zero din and add): on the Winograd path the ReLU runs
 * on each output plane right after its scatter, and its gradient is made in
 * the bias sums' pass into r->dself; on the other paths the conv writes
 * r->out, then the ReLU runs in place, and backward writes the ReLU's
 * gradient into r->dself (not zeroed, where the plain path zeroes and adds)
 * for the conv's backward. */
rf_status rf_nn_conv_forward_relu(const rf_nn_run *r);
void      rf_nn_conv_backward_relu(const rf_nn_run *r);
/* The ReLU layer's forward in place (y = max(y, 0), its expression), and
 * its backward written: dx = +0 + (y > 0 ? dy : 0). Split over e's threads. */
void rf_nn_relu_inplace(const rf_engine *e, float *y, size_t n);
void rf_nn_relu_grad_write(const rf_engine *e, float *dx, const float *dy, const float *y, size_t n);

/* The table, indexed by rf_layer_type (NULL for unused values). */
const rf_nn_op *rf_nn_op_get(int type);
/* Allocates the zeroed params, grads and buffers blocks of a model whose
 * layer records and parameter table are built (model.c). */
rf_status rf_nn_model_alloc_blocks(rf_ctx *ctx, rf_model *m);

extern const rf_nn_op rf_nn_op_linear, rf_nn_op_conv2d, rf_nn_op_maxpool, rf_nn_op_avgpool,
    rf_nn_op_gap, rf_nn_op_batchnorm, rf_nn_op_layernorm, rf_nn_op_relu, rf_nn_op_gelu,
    rf_nn_op_tanh, rf_nn_op_dropout, rf_nn_op_flatten, rf_nn_op_residual, rf_nn_op_patch_embed,
    rf_nn_op_attention, rf_nn_op_transformer, rf_nn_op_cls_pool, rf_nn_op_mean_pool, rf_nn_op_add,
    rf_nn_op_concat;

/* ---- builder helpers (spec.c) ---------------------------------------------
 * Errors are RF_ERR_SPEC / RF_ERR_SHAPE with "layers[i] type: " prefixed, or
 * "layers[i] type 'name': " when the spec names the layer. */
rf_status rf_nn_err(rf_nn_builder *b, rf_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Reads integer key `key` (absent: dflt) and checks lo <= v <= hi. */
rf_status rf_nn_int(rf_nn_builder *b, const cJSON *j, const char *key, int dflt, int lo, int hi, int *v);
rf_status rf_nn_float(rf_nn_builder *b, const cJSON *j, const char *key, double dflt, double lo, double hi, float *v);
/* Declares a parameter tensor "<prefix><suffix>" (prefix: L->name + "." unless
 * suffix starts with '/', which means a top-level name without the prefix). */
rf_status rf_nn_param(rf_nn_builder *b, rf_layer *L, const char *suffix, rf_param_role role,
                      int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Requires the input kind; error names what the layer expects. */
rf_status rf_nn_need_kind(rf_nn_builder *b, const rf_layer *L, int kinds_mask);
/* Shape and kind of input k of L (an earlier layer's output or the model
 * input), and its name for messages ("input" for the model input). */
rf_shape3   rf_nn_input_shape(const rf_nn_builder *b, const rf_layer *L, int k, rf_nn_kind *kind);
const char *rf_nn_input_name(const rf_nn_builder *b, const rf_layer *L, int k);
/* The option-A shortcut of an add (He et al. 2016, Sec. 4.2): input shape
 * s reaches output shape o by taking every stride-th row and column and
 * placing its channels at front .. front + s.d[0] - 1 of o (zeros
 * elsewhere). Returns 0 when s cannot reach o that way. */
int rf_nn_shortcut_a(rf_shape3 s, rf_shape3 o, int *stride, int *front);
/* The same for input shape s of add layer L, with the front its spec sets
 * ("front", ip[1] = front + 1; 0: the default above). 0 when s cannot
 * reach L's output that way. */
int rf_nn_add_shortcut(const rf_layer *L, rf_shape3 s, int *stride, int *front);
#define RF_NN_K(k) (1 << (k))

static inline void rf_nn_set_out(rf_layer *L, int d0, int d1, int d2, rf_nn_kind kind) {
    L->out.d[0] = d0; L->out.d[1] = d1; L->out.d[2] = d2;
    L->out_size = (size_t)d0 * (size_t)d1 * (size_t)d2;
    L->ip[7] = (int)kind;
}

/* ---- threads ------------------------------------------------------------------
 * A layer splits its work over the engine's pool (rf_engine.pool) in static
 * parts: part t of n takes the items [t·N/n, (t+1)·N/n) (rf_nn_span), every
 * output element is written by exactly one part, and every reduction runs
 * in an order fixed by the shapes alone (a whole reduction inside one part,
 * or partial sums over groups fixed by the shapes, combined in a fixed
 * order), never by n. So no result depends on the thread count (the dense
 * products split the same way, raffle/gemm.h). */
/* Threads a layer may split its work over: e's pool, or 1 without one (and
 * with gemm=openblas, whose calls must not run concurrently). */
int  rf_nn_threads(const rf_engine *e);
/* Parts for `work` units when a part should get at least `min_work` of
 * them: 1 .. rf_nn_threads(e). */
int  rf_nn_parts(const rf_engine *e, double work, double min_work);
/* fn(arg, t, n) for t < n on e's pool (n = 1: here). */
void rf_nn_par(const rf_engine *e, int n, rf_pool_fn fn, void *arg);
/* The engine of part t: e's options, no pool, products on the calling
 * thread with the GEMM's workspace t (core.h rf_engine.slot). Code inside
 * a part passes it down instead of e. e NULL (no engine: one part, the
 * built-in options): the built-in options, products on the thread's GEMM. */
static inline rf_engine rf_nn_part_engine(const rf_engine *e, int t) {
    rf_engine p;
    if (e) p = *e;
    else rf_engine_builtin(&p);
    p.pool = NULL;
    p.slot = e && e->pool ? t : e ? e->slot : 0;
    return p;
}
/* Part t of n of [0, len): [*lo, *hi). */
static inline void rf_nn_span(size_t len, int t, int n, size_t *lo, size_t *hi) {
    *lo = len * (size_t)t / (size_t)n;
    *hi = len * (size_t)(t + 1) / (size_t)n;
}
/* The same in whole units of `unit` items (the last part takes the rest). */
static inline void rf_nn_span_aligned(size_t len, size_t unit, int t, int n, size_t *lo, size_t *hi) {
    size_t units = (len + unit - 1) / unit;
    *lo = units * (size_t)t / (size_t)n * unit;
    *hi = units * (size_t)(t + 1) / (size_t)n * unit;
    if (*lo > len) *lo = len;
    if (*hi > len) *hi = len;
}
/* An element-wise loop y[i] = f(a[i], b[i]) (b, a may be NULL where f does
 * not read them) over [0, n), split over e's threads in 64-byte units. */
typedef void (*rf_nn_ew_fn)(float *y, const float *a, const float *b, size_t n);
void rf_nn_ew(const rf_engine *e, rf_nn_ew_fn f, float *y, const float *a, const float *b, size_t n);
/* y[0 .. n) = 0 over e's threads (the step's gradient buffers: tens of MB
 * for a conv net, a memory-bound pass that one thread would do alone). */
void rf_nn_zero(const rf_engine *e, float *y, size_t n);

/* ---- vectorised loops -------------------------------------------------------
 * Element-wise loops are compiled once per ISA (AVX-512, AVX2+FMA, baseline
 * x86-64) with GCC function multi-versioning: the loader picks the clone from
 * CPUID at start-up (an ifunc), so nothing depends on -march. The baseline
 * clone is the plain-C reference; the build's -O2 does not vectorise, so these
 * functions ask for -O3. Floating-point semantics are unchanged (no
 * fast-math), which is why conditions below compare integer bit patterns:
 * with trapping math, float compares block if-conversion.
 * Only static functions carry RF_NN_VEC: clang (14) names a target_clones
 * function's resolver NAME.ifunc, so a call from another file would not
 * link. Entry points other files call are plain wrappers around a static
 * clone (rf_nn_add -> add_v). */
#if defined(__clang__)
/* clang: one feature per version, no optimize attribute (it vectorises at -O2) */
#define RF_NN_VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RF_NN_VEC __attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("O3")))
#endif

/* Vectorisable, deterministic row reductions. Without -ffast-math the
 * compiler may not reorder a float sum, so `s += x[i]` runs as one serial
 * add chain (4 cycles an element). Instead lane l (of 16) sums the elements
 * i ≡ l (mod 16) of each full 16-block in order, the tail goes to lanes
 * 0 .. D%16-1, and the lanes are combined by a fixed tree: one zmm (or two
 * ymm) of independent chains, and the same additions in the same order on
 * every ISA. */
#define RF_NN_LANES 16
static inline float rf_nn_lanes_sum(const float *a) {
    float b[8], c[4];
    for (int l = 0; l < 8; l++) b[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) c[l] = b[l] + b[l + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* exp(-u/2) for u >= 0 (u = x² for the Gaussian density), relative error
 * < 1e-5: Cody-Waite split into 2^n · 2^f, degree-6 polynomial for 2^f
 * (f in [-1/2, 1/2]), 2^n built in the exponent bits. u is capped at 174
 * (result ~1e-38) with an integer compare on its bit pattern. */
static inline float rf_nn_exp_neg_half(float u) {
    int32_t ub;
    memcpy(&ub, &u, 4);
    ub = ub < 0x432E0000 ? ub : 0x432E0000;   /* 174.0f; u >= 0 so bits order like values */
    memcpy(&u, &ub, 4);
    float t = u * -0.72134752044448170f;      /* -u/2 · log2(e) */
    float r = t + 12582912.0f;                /* 1.5·2^23: rounds t to an integer in r's low bits */
    float f = t - (r - 12582912.0f);
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    int32_t ib;
    memcpy(&ib, &r, 4);
    ib = (ib - 0x4B400000 + 127) * (1 << 23);
    float s;
    memcpy(&s, &ib, 4);
    return p * s;
}

/* erf(x), absolute error < 5e-7: the odd/even rational minimax fit on
 * [-4, 4] used by Eigen and XLA for float erf; |x| is capped at 4 (erf = ±1
 * in float beyond) through its bit pattern. */
static inline float rf_nn_erf(float a) {
    int32_t b;
    memcpy(&b, &a, 4);
    int32_t sign = b & (int32_t)0x80000000, mag = b & 0x7FFFFFFF;
    mag = mag < 0x40800000 ? mag : 0x40800000;   /* 4.0f */
    b = sign | mag;
    float x;
    memcpy(&x, &b, 4);
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * x;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return p / q;
}

/* ---- shared kernels -------------------------------------------------------
 * Row-major Y[M, N] = X[M, K] · W[N, K]^T + b (b may be NULL). */
void rf_nn_linear_fwd(const rf_engine *e, float *Y, const float *X, const float *W, const float *b, int M, int N,
                      int K, int ldx, int ldy);
/* dX[M, K] += dY · W;  dW[N, K] += dY^T · X;  db[N] += colsum(dY). Any of
 * dX, dW, db may be NULL. */
void rf_nn_linear_bwd(const rf_engine *e, float *dX, float *dW, float *db, const float *dY, const float *X,
                      const float *W, int M, int N, int K, int ldx, int ldy);
/* dX[M, K] (ldx) += dY[M, N] (ldy) · W[N, K]: the input-gradient product
 * alone (dense.c: the engine's backend, raffle/gemm.h rf_gemm_engine). */
void rf_nn_linear_dx(const rf_engine *e, float *dX, const float *dY, const float *W, int M, int N, int K, int ldx,
                     int ldy);
/* db[j] += Σ_i dY[i, j] over M rows (ldy), rows in order. */
void rf_nn_colsum_add(float *db, const float *dY, int M, int N, int ldy);
/* dW[N, K] += dY[M, N]^T · X[M, K] (ldy, ldx). */
void rf_nn_linear_dw(const rf_engine *e, float *dW, const float *dY, const float *X, int M, int N, int K, int ldx,
                     int ldy);
/* dst[c * rows + r] = src[r * lds + c] for r < rows, c < cols: the
 * transposed copy of a rows × cols block with row stride lds. */
void rf_nn_transpose(float *dst, const float *src, int rows, int cols, int lds);
/* The calling thread's scratch of at least n floats (64-byte aligned; valid
 * until the next call on this thread), or NULL when it cannot be allocated. */
float *rf_nn_gemm_scratch(size_t n);
/* Frees the calling thread's scratch buffer and its own GEMM
 * (rf_gemm_thread_release). */
void rf_nn_gemm_release(void);

/* Layer norm over rows of length D: y = (x - mean) * rstd * g + b; stats[2r]
 * = mean, stats[2r+1] = rstd. */
void rf_nn_layernorm_fwd(float *y, float *stats, const float *x, const float *g, const float *b,
                         int rows, int D, float eps);
/* The same on feature-major x, y [D][ld] over columns [0, M) (no stats):
 * the same values as rf_nn_layernorm_fwd on the transposed rows. */
void rf_nn_layernorm_fwd_feat(float *y, const float *x, const float *g, const float *b, int M, int D, int ld,
                              float eps);
/* dx += ..., dg += ..., db += ... (dx may be NULL). */
void rf_nn_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                         const float *stats, const float *g, int rows, int D);

/* y[i] += x[i];  y[i] += a[i]·b[i]. */
void rf_nn_add(float *y, const float *x, size_t n);
void rf_nn_mul_add(float *y, const float *a, const float *b, size_t n);

/* GELU, exact form x·Φ(x) (Hendrycks & Gimpel 2016; PyTorch nn.GELU default). */
void rf_nn_gelu_fwd(float *y, const float *x, size_t n);
void rf_nn_gelu_bwd(float *dx, const float *dy, const float *x, size_t n);  /* dx += */

/* Multi-head self-attention (Vaswani et al. 2017, eq. 1) on x [B, T, D]:
 * qkv = x·Wqkv^T + bqkv ([B, T, 3D], q|k|v, head h at columns h·D/H),
 * att = softmax(q k^T / sqrt(D/H)) [B, H, T, T], ctx = att·v [B, T, D],
 * y = ctx·Wproj^T + bproj. qkv, att, ctx are saved for backward. */
void rf_nn_mhsa_fwd(const rf_engine *e, float *y, float *qkv, float *att, float *ctx, const float *x,
                    const float *Wqkv, const float *bqkv, const float *Wproj, const float *bproj,
                    int B, int T, int D, int H);
/* dx += (may be NULL); parameter grads +=. scratch: rf_nn_mhsa_scratch floats. */
void rf_nn_mhsa_bwd(const rf_engine *e, float *dx, float *dWqkv, float *dbqkv, float *dWproj, float *dbproj,
                    const float *dy, const float *x, const float *qkv, const float *att, const float *ctx,
                    const float *Wqkv, const float *Wproj, float *scratch, int B, int T, int D, int H);
size_t rf_nn_mhsa_scratch(int B, int T, int D, int H);

#endif
