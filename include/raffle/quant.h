/* raffle quant: int8 quantization (Jacob et al. 2018, "Quantization and
 * Training of Neural Networks for Efficient Integer-Arithmetic-Only
 * Inference").
 *
 * Scheme (docs/quantization.md):
 *  - weights: symmetric, per output channel (row n of W [N, K]):
 *        s_w[n] = max_k |W[n,k]| / 127,  q = clamp(round(W / s_w[n]), -127, 127);
 *  - activations: affine per tensor, uint8 (Jacob eq. 1: r = S (q - Z)),
 *        range [lo, hi] widened to contain 0 so that 0 is exact (Jacob §2.1),
 *        S = (hi - lo) / 255, Z = round(-lo / S);
 *  - a quantized linear/conv layer quantizes its GEMM input X to u8 with its
 *    calibrated (S_in, Z_in), computes C = A · Wq^T in exact int32 with
 *    rf_qgemm, subtracts the zero-point term Z_in · rowsum(Wq) (Jacob eq. 7),
 *    and rescales Y = S_in · s_w[n] · C' + bias[n]. The bias stays float32:
 *    the rescaled accumulator is already float, so a float bias is exact where
 *    Jacob's int32 bias (scale S_in·s_w) would add one more rounding. The
 *    output stays float for the layers in between (pooling, norms,
 *    activations run unchanged); the next quantized layer re-quantizes its
 *    own input, which is Jacob's "requantize" step moved to the consumer.
 *
 * The quantized path plugs into the ordinary forward through the inference
 * overrides of nn.h (rf_layer.infer_gemm for linear/conv/patch_embed,
 * rf_param.infer_gemm for the products inside transformer and attention
 * layers), so every caller of rf_model_forward in inference mode
 * (rf_evaluate, rf_predict, latency measurement) runs integer arithmetic.
 *
 * Quantization-aware training: fake-quant weights (swapped in before each
 * forward, real weights restored before the optimizer step: the straight-
 * through estimator) and fake-quant activations of every product's input
 * (the model's activation hook for linear/conv inputs, rf_param.train_act for
 * the products inside transformer blocks), with EMA range observers frozen after N steps; gradients
 * of clipped activations are zeroed (STE with clipping, Jacob §3).
 */
#ifndef RAFFLE_QUANT_H
#define RAFFLE_QUANT_H

#include <cjson/cJSON.h>
#include "raffle/core.h"
#include "raffle/nn.h"
#include "raffle/data.h"
#include "raffle/ckpt.h"
#include "raffle/train.h"
#include "raffle/lowbit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- primitives ------------------------------------------------------------ */

/* Affine uint8 parameters: real = scale * (q - zero_point). */
typedef struct rf_qparams {
    float   scale;
    int32_t zero_point;   /* in [0, 255] */
} rf_qparams;

/* Parameters covering [lo, hi] (widened to contain 0; a degenerate range
 * gets scale 1). */
rf_qparams rf_qparams_from_range(float lo, float hi);
/* round-to-nearest, clamped to [0, 255]. */
uint8_t    rf_quant_u8(float x, rf_qparams p);
float      rf_dequant_u8(uint8_t q, rf_qparams p);
/* quantize then dequantize (the float value the int8 path sees). */
float      rf_fake_quant_u8(float x, rf_qparams p);
/* rf_quant_u8 over x[0..n) into q (the GEMM input path; AVX2 when the
 * kernels' dispatch allows it) and its plain C reference. Same results. */
void       rf_quant_u8_array(const float *x, size_t n, rf_qparams p, uint8_t *q);
void       rf_quant_u8_array_ref(const float *x, size_t n, rf_qparams p, uint8_t *q);

/* Symmetric per-row int8 of W [N, K]: fills q [N*K] and scales [N].
 * An all-zero row gets scale 1 (its values stay 0). */
void rf_quant_rows_s8(const float *W, int64_t N, int64_t K, int8_t *q, float *scales);
/* In place: W <- s_w[n] * q (per-row symmetric fake quantization). */
void rf_fake_quant_rows(float *W, int64_t N, int64_t K);

/* ---- quantized model ---------------------------------------------------------
 * One entry per matrix product with a weight tensor ("product" below; the
 * rf_qlayer_info name predates products inside layers): one per linear, conv
 * and patch_embed layer (installed as rf_layer.infer_gemm) and one per weight
 * of a transformer block (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) or attention
 * layer (qkv, proj), installed as that weight's rf_param.infer_gemm. Entries
 * are in model order (layer, then parameter declaration order). */
typedef enum rf_calib {   /* stored in metadata by name */
    RF_CALIB_MINMAX = 0,      /* min and max over the calibration batches        */
    RF_CALIB_PERCENTILE = 1,  /* mean over batches of the p / (100-p) percentiles */
    RF_CALIB_QAT = 2,         /* EMA observers of quantization-aware training     */
    RF_CALIB_COUNT_
} rf_calib;
const char *rf_calib_name(rf_calib c);       /* "minmax", "percentile", "qat" */
int         rf_calib_from_name(const char *s); /* -1 if unknown */

typedef struct rf_qlayer_info {
    int        layer;      /* index into model->layers */
    int        param;      /* index into model->ptensors of the product's weight */
    int        N, K;       /* GEMM sizes: output features, reduction length */
    float      lo, hi;     /* calibrated input range */
    rf_qparams act;        /* input activation qparams */
    int        calibrated; /* 1 once lo/hi hold a range */
    /* Weight format (rf_quant_set_weights): bits 8 = int8, one scale per
     * output channel (the default); 2-4 = groups of group_size consecutive
     * weights of a row (group_size == K: one group per row), group_mode
     * symmetric or affine, run by rf_q4gemm. */
    int        bits, group_size;
    rf_group_mode group_mode;
} rf_qlayer_info;

typedef struct rf_quant rf_quant;   /* opaque; owns the packed int8 weights */

/* Returns a new description of m's quantizable products (nothing attached
 * yet); free with rf_quant_free. RF_ERR_UNSUPPORTED if m has none. */
rf_status rf_quant_new(rf_ctx *ctx, const rf_model *m, rf_quant **out);
/* Detaches nothing: call rf_quant_detach first if it is attached. Accepts NULL. */
void      rf_quant_free(rf_quant *q);
int       rf_quant_n_layers(const rf_quant *q);
/* Borrowed view of layer i's info (i < rf_quant_n_layers). */
rf_qlayer_info *rf_quant_layer(rf_quant *q, int i);
rf_calib  rf_quant_calib(const rf_quant *q);
/* Records where the ranges in rf_quant_layer() came from (QAT, or set by hand). */
void      rf_quant_set_calib(rf_quant *q, rf_calib c);

/* Sets product i's weight format before its weights are quantized (before
 * the first rf_quant_enable): bits 8 (int8 per output channel, the default)
 * or 2-4 (rf_group_quantize: one fp32 scale, affine also a zero point, per
 * group of group_size weights along a row). group_size must be 32, 64 or
 * 128 and divide the row length K, or equal K (one group per row, the
 * fallback for rows no group size divides; K up to 4,096). bits 8 ignores
 * group_size and mode. RF_ERR_INVALID naming the weight otherwise. */
rf_status rf_quant_set_weights(rf_ctx *ctx, rf_quant *q, const rf_model *m, int i, int bits, int group_size,
                               rf_group_mode mode);
/* Largest row (K) one group per row can take: rf_q4gemm's group limit. */
#define RF_QUANT_ROW_GROUP_MAX 4096

/* PTQ calibration (Jacob §3, post-training variant): runs n_batches batches of
 * ds (file order, inference mode, float weights) and records every quantized
 * layer's GEMM input range. percentile (e.g. 99.99) is used by
 * RF_CALIB_PERCENTILE only. m must not be attached. */
rf_status rf_quant_calibrate(rf_ctx *ctx, rf_quant *q, rf_model *m, const rf_dataset *ds,
                             int batch, int n_batches, rf_calib method, double percentile);

/* Which product a quantized layer computes. */
typedef enum rf_qpath {
    RF_QPATH_INT8 = 0,      /* u8 x s8 -> s32 with the dispatched rf_qgemm (int4
                               products: u8 x int4 with rf_q4gemm)              */
    RF_QPATH_INT8_REF = 1,  /* the same integers with rf_qgemm_ref / rf_q4gemm_ref */
    RF_QPATH_FAKE_F32 = 2,  /* float simulation: fake-quant input x dequantized
                               weights in fp32 (what QAT trains against)      */
} rf_qpath;

/* Quantizes m's weights per channel from its current float params, snaps the
 * float params to their dequantized values (so the float forward is the
 * weight-fake-quant model), packs them (sparse packing when the layer is
 * at least 70% pruned) and installs the quantized infer_gemm on every
 * quantized layer. Every layer must be calibrated. q stays owned by the
 * caller and must outlive the attachment; enabling again switches the path. */
rf_status rf_quant_enable(rf_ctx *ctx, rf_quant *q, rf_model *m, rf_qpath path);
/* Removes the int8 path from m (float forward again). Accepts NULL q. */
void      rf_quant_detach(rf_quant *q, rf_model *m);

/* Checkpoint of an enabled quantized model: quantized weights stored as
 * RF_STORE_INT8 (RF_STORE_SPARSE_INT8 with the mask when the model is pruned)
 * with per-row scales; the activation qparams go into the metadata's "extra"
 * object under "quant" (merged with extra_json, an object or NULL).
 * Returns a new checkpoint; free with rf_ckpt_free. */
rf_status rf_quant_to_ckpt(rf_ctx *ctx, const rf_quant *q, const rf_model *m,
                           const char *extra_json, rf_ckpt **out);
/* rf_quant_to_ckpt + atomic write. Fills *bytes (may be NULL) with the file size. */
rf_status rf_quant_save(rf_ctx *ctx, const rf_quant *q, const rf_model *m,
                        const char *extra_json, const char *path, uint64_t *bytes);

/* Rebuilds the int8 inference path of a model loaded from checkpoint c: if c
 * carries quantization metadata, takes its int8 values and scales as they
 * are, writes the dequantized weights into m's params, and installs the int8
 * infer_gemm; *out gets a new rf_quant (free with rf_quant_free after
 * rf_quant_detach or after freeing m). If c is not quantized, *out = NULL and
 * RF_OK. Borrows c. */
rf_status rf_quant_attach(rf_ctx *ctx, rf_model *m, const rf_ckpt *c, rf_quant **out);
/* Returns 1 if c carries quantization metadata. */
int       rf_quant_ckpt_is_quantized(const rf_ckpt *c);
/* Loads any checkpoint (float, sparse, int8): builds the model (int8 tensors
 * are dequantized for rf_model_from_ckpt) and, for a quantized checkpoint,
 * attaches the int8 path. Returns a new model (rf_model_free) and *q (new,
 * or NULL when not quantized; free with rf_quant_free after the model). */
rf_status rf_quant_load(rf_ctx *ctx, const char *path, rf_model **m, rf_quant **q);

/* ---- quantization-aware training --------------------------------------------- */
typedef struct rf_qat rf_qat;   /* opaque */

typedef struct rf_qat_cfg {
    int64_t freeze_after;  /* observers stop updating after this many steps   */
    float   ema_decay;     /* range EMA: r <- decay*r + (1-decay)*batch range  */
    /* Weight formats (bits, group_size, group_mode of each product) taken
     * from this description of the same model (borrowed while rf_qat_new
     * runs); NULL: int8 per channel everywhere. */
    const rf_quant *formats;
} rf_qat_cfg;
void rf_qat_cfg_default(rf_qat_cfg *c);   /* freeze_after 200, decay 0.99, int8 weights */

/* Returns new QAT state for m and installs its activation hook on m
 * (m->hook, m->hook_ud) for the inputs of linear/conv/patch_embed layers, and
 * rf_param.train_act on the weights of transformer/attention products (their
 * inputs are block-internal tensors the model hook never sees). The first quantized layer's input range (the model
 * input) is taken from `train`'s min/max: normalised 8-bit pixels sit on a
 * 255-step grid, so that input quantization is exact. Free with rf_qat_free,
 * which removes the hook. */
rf_status rf_qat_new(rf_ctx *ctx, rf_model *m, const rf_dataset *train, const rf_qat_cfg *cfg,
                     rf_qat **out);
/* Removes the hook and the train_act entries from m (pass the model given to
 * rf_qat_new, or NULL if it is already freed). Accepts NULL q. */
void      rf_qat_free(rf_qat *q, rf_model *m);
/* Train hooks (ud = the rf_qat): swap fake-quant weights in before the
 * forward, restore the real weights after backward. Use these directly, or
 * call them from a composite hook. */
rf_status rf_qat_before_step(void *ud, rf_model *m, int64_t step, int64_t total);
rf_status rf_qat_after_backward(void *ud, rf_model *m, int64_t step);
void      rf_qat_hooks(rf_qat *q, rf_train_hooks *h);   /* fills the two above */
/* Ends QAT: removes the hook and returns a new calibrated rf_quant with the
 * observers' ranges (RF_CALIB_QAT), ready for rf_quant_enable. */
rf_status rf_qat_convert(rf_ctx *ctx, rf_qat *q, rf_model *m, rf_quant **out);

/* ---- weight sharing of a model (Han et al. 2016, Deep Compression §3) -------------
 * k-means sharing (rf_kmeans_share, lowbit.h) of chosen weight tensors of a
 * model, centroid fine-tuning inside rf_train, and the codebook checkpoint.
 * Activations stay float: a shared model's forward is the float forward of
 * its decoded weights (pruned entries stay 0, so sparse kernels still
 * apply). */
typedef struct rf_share rf_share;   /* opaque; owns codebooks and indices */

typedef struct rf_share_tensor {
    int            param;   /* index into model->ptensors */
    int            bits;    /* 2^bits shared values */
    rf_kmeans_info km;      /* the clustering (rounds, kept weights, empty clusters) */
} rf_share_tensor;

/* Shares every tensor i of m with bits[i] != 0 (bits[i] in [2, 8]; bits
 * has m->n_ptensors entries) among 2^bits[i] values: k-means over its kept
 * weights (mask != 0 when m is masked; linear initialisation), then writes
 * the shared values into m's params (pruned entries 0). max_iter <= 0: the
 * k-means default. Returns a new rf_share (rf_share_free; it borrows
 * nothing from m). RF_ERR_INVALID for bits out of range, or no tensor
 * to share. */
rf_status rf_share_new(rf_ctx *ctx, rf_model *m, const int *bits, int max_iter, rf_share **out);
void      rf_share_free(rf_share *s);   /* accepts NULL */
int       rf_share_count(const rf_share *s);
/* Borrowed view of shared tensor i (i < rf_share_count), model order. */
const rf_share_tensor *rf_share_get(const rf_share *s, int i);
/* Borrowed: the 2^bits values of shared tensor i. */
const float *rf_share_codebook(const rf_share *s, int i);

/* Centroid fine-tuning (Deep Compression §3.3, eq. 3) as rf_train hooks
 * (h->ud = s): after each backward the gradients of each shared tensor's
 * kept weights are summed per cluster (rf_kmeans_centroid_grad) and those
 * weight gradients zeroed, an optimizer of the kind cfg describes (its own
 * moments; the same schedule over the run's steps) steps the codebooks,
 * and after the model's optimizer step the shared weights are decoded
 * again from the codebooks, pruned ones 0: assignments and masks are
 * kept, every other parameter (biases, unshared tensors) trains as usual.
 * s must outlive the training run. RF_ERR_INVALID for a bad cfg. */
rf_status rf_share_hooks(rf_ctx *ctx, rf_share *s, const rf_optim_cfg *cfg, rf_train_hooks *h);

/* Checkpoint of m with its shared tensors stored as RF_STORE_CODEBOOK
 * (RF_STORE_SPARSE_CODEBOOK with the mask of a masked model) and the rest
 * as rf_model_to_ckpt stores them; extra_json (object or NULL) gets a
 * "share" object ({"scheme": "kmeans", "init": "linear", "layers":
 * [{"weight", "bits"}]}). m's params must be the decoded shared values
 * (they are after rf_share_new and the hooks). Returns a new checkpoint
 * (rf_ckpt_free). */
rf_status rf_share_to_ckpt(rf_ctx *ctx, const rf_share *s, const rf_model *m, const char *extra_json, rf_ckpt **out);
/* rf_share_to_ckpt + atomic write; *bytes (may be NULL) gets the file size. */
rf_status rf_share_save(rf_ctx *ctx, const rf_share *s, const rf_model *m, const char *extra_json, const char *path,
                        uint64_t *bytes);

#ifdef __cplusplus
}
#endif
#endif
