/* Quantization-aware training (Jacob et al. 2018, §3 "Training with simulated
 * quantization").
 *
 * Weights: before each forward the real weights of every quantized layer are
 * saved and replaced by their per-channel fake-quantized values; after
 * backward (before the optimizer step) the real weights come back, so the
 * gradient computed at the quantized point updates the float weights: the
 * straight-through estimator. Symmetric weight ranges never clip, so the STE
 * passes every weight gradient through.
 *
 * Activations: each quantized product's input is fake-quantized with affine u8
 * parameters from an EMA of the per-batch min/max (Jacob §3: "exponential
 * moving averages of the ranges", frozen after N steps so the last steps
 * train against fixed parameters). In backward the gradient is zeroed where
 * the forward value fell outside the representable range: the STE with
 * clipping. The first layer's input is the normalised image, whose 8-bit
 * pixels already sit on a 255-step grid between the data's min and max, so
 * its range comes from the data and is fixed.
 *
 * Where the fake-quant runs: for a linear/conv/patch_embed layer its input is
 * the output of the layer it reads (rf_layer.inputs[0]), reached through the
 * model's activation hook (backward: the gradient flowing into that output);
 * products reading the same output share its observer. The products inside a
 * transformer block (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) read block-
 * internal tensors (LN outputs, attention context, GELU output) that no
 * layer outputs, so there the weight's rf_param.train_act hook (nn.h) gets
 * the product input in the training forward and its gradient in backward.
 *
 * A tensor that products and other layers read (a ResNet block's input:
 * the block's first conv, or its projection, and the residual add): the
 * int8 model quantizes only the products' copies and the add reads the
 * float tensor (docs/quantization.md, "everything between products runs
 * in fp32"), so QAT must train that graph. The hook fake-quantizes the
 * producer's output in place for its quantized readers and, after the last
 * of them, puts the float values back for the others (which must come
 * after the quantized readers in layer order, as in every ResNet block;
 * rf_qat_new refuses other orders). In backward, at the last quantized
 * reader, the gradient the float readers left is set aside and the
 * quantized values are put back for the products' weight gradients; at the
 * producer the STE clips only the products' part, adds the float readers'
 * part back, and the float output is restored. Before this QAT fake-
 * quantized the add's shortcut too: on ResNet-20 the QAT graph and the
 * converted int8 model differed by 5e-2 in the logits, on ResNet-18 by
 * 0.2; now by float rounding (tests/unit/test_model_paths.c). */
#include "raffle/quant.h"

#include <string.h>

typedef struct qat_obs {
    struct rf_qat *owner;
    int      producer;   /* layer whose output is this quantized layer's input; -1 = model input */
    int      same_as;    /* another product reads the same output: its observer, else -1 */
    float    lo, hi;
    int      init;
    uint8_t *clip;       /* 1 where the last training forward clipped */
    size_t   cap, n_clip;
    /* A producer that non-products read too (see the top): the last
     * quantized reader's layer index (-1: only products read it), the float
     * output while its quantized readers run (keep) and the float readers'
     * gradient (keep_g), and whether this forward swapped the output. */
    int      last;
    float   *keep, *keep_g;
    size_t   cap_keep, cap_keep_g;
    int      swapped;
} qat_obs;

struct rf_qat {
    rf_quant   *desc;      /* the quantized layers (owned) */
    rf_qat_cfg  cfg;
    int         n_model_layers;
    int        *obs_of;    /* [n_model_layers]: observer index, or -1 */
    int        *last_of;   /* [n_model_layers]: observer whose last quantized reader this is, or -1 */
    qat_obs    *obs;       /* [desc n] */
    float      *shadow;    /* real weights of the quantized layers while swapped out */
    size_t      shadow_n;
    int8_t     *gq;        /* group fake-quant scratch: values, scales, zero points */
    float      *gs;
    int32_t    *gz;
    int64_t     step;
    int         in_step;   /* between before_step and after_backward */
    rf_act_hook prev_hook; /* chained: called first */
    void       *prev_ud;
    rf_model   *m;         /* borrowed */
};

void rf_qat_cfg_default(rf_qat_cfg *c) {
    c->freeze_after = 200;
    c->ema_decay = 0.99f;
    c->formats = NULL;
}

/* Observes (training forward before the freeze), fake-quantizes, and in
 * backward zeroes the gradient where the forward clipped. */
static rf_status obs_apply(rf_qat *q, qat_obs *o, int backward, float *data, size_t n) {
    if (backward) {
        if (q->in_step && o->n_clip == n)
            for (size_t i = 0; i < n; i++) if (o->clip[i]) data[i] = 0.0f;
        return RF_OK;
    }
    if (q->in_step && q->step < q->cfg.freeze_after && n > 0) {
        float lo = data[0], hi = data[0];
        for (size_t i = 1; i < n; i++) { if (data[i] < lo) lo = data[i]; if (data[i] > hi) hi = data[i]; }
        if (!o->init) { o->lo = lo; o->hi = hi; o->init = 1; }
        else {
            float d = q->cfg.ema_decay;
            o->lo = d * o->lo + (1.0f - d) * lo;
            o->hi = d * o->hi + (1.0f - d) * hi;
        }
    }
    if (!o->init) return RF_OK;   /* nothing observed yet: the float model */
    rf_qparams p = rf_qparams_from_range(o->lo, o->hi);
    float rlo = p.scale * (float)(0 - p.zero_point), rhi = p.scale * (float)(255 - p.zero_point);
    o->n_clip = 0;
    if (q->in_step) {
        if (n > o->cap) {
            uint8_t *c = rf_realloc(o->clip, n);
            if (!c) return RF_ERR_NOMEM;
            o->clip = c;
            o->cap = n;
        }
        for (size_t i = 0; i < n; i++) o->clip[i] = (uint8_t)(data[i] < rlo || data[i] > rhi);
        o->n_clip = n;
    }
    for (size_t i = 0; i < n; i++) data[i] = rf_fake_quant_u8(data[i], p);
    return RF_OK;
}

/* Whether product i of desc is overridden per weight (nn.h). */
static int per_param(const rf_quant *desc, const rf_model *m, int i) {
    return (rf_layer_traits(m->layers[rf_quant_layer((rf_quant *)desc, i)->layer].type) & RF_LT_PRODUCTS) != 0;
}

/* Grows *buf to n floats. */
static int grow_f(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    float *p = rf_realloc(*buf, n * sizeof(float));
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* Output (or its gradient, from block = m->dacts) of a shared observer's
 * producer in the current batch, and its length. */
static float *producer_slot(const rf_qat *q, const qat_obs *o, float *block, size_t *n) {
    const rf_layer *P = &q->m->layers[o->producer];
    *n = (size_t)q->m->batch * P->out_size;
    return block + P->act_offset * (size_t)q->m->max_batch;
}

/* Layer `layer` is the last quantized reader of shared observer o: forward,
 * the float readers after it get the float output back; backward (before
 * this layer's backward), the float readers' gradient is set aside and the
 * products see their quantized input again for their weight gradients. */
static rf_status after_last_reader(rf_qat *q, qat_obs *o, int backward) {
    if (!o->swapped || (backward && !q->in_step)) return RF_OK;
    size_t n;
    float *out = producer_slot(q, o, q->m->acts, &n);
    if (!backward) { memcpy(out, o->keep, n * sizeof(float)); return RF_OK; }
    float *g = producer_slot(q, o, q->m->dacts, &n);
    if (grow_f(&o->keep_g, &o->cap_keep_g, n)) return RF_ERR_NOMEM;
    memcpy(o->keep_g, g, n * sizeof(float));
    memset(g, 0, n * sizeof(float));
    rf_qparams p = rf_qparams_from_range(o->lo, o->hi);   /* the forward's: observers move only in forward */
    for (size_t i = 0; i < n; i++) out[i] = rf_fake_quant_u8(o->keep[i], p);
    return RF_OK;
}

static rf_status qat_hook(void *ud, int layer, int backward, float *data, size_t n) {
    rf_qat *q = ud;
    if (q->prev_hook) RF_TRY(q->prev_hook(q->prev_ud, layer, backward, data, n));
    if (layer < 0 || layer >= q->n_model_layers) return RF_OK;
    if (q->last_of[layer] >= 0) RF_TRY(after_last_reader(q, &q->obs[q->last_of[layer]], backward));
    if (q->obs_of[layer] < 0) return RF_OK;
    qat_obs *o = &q->obs[q->obs_of[layer]];
    if (o->last < 0) return obs_apply(q, o, backward, data, n);
    if (!backward) {   /* keep the float output for the float readers */
        if (grow_f(&o->keep, &o->cap_keep, n)) return RF_ERR_NOMEM;
        memcpy(o->keep, data, n * sizeof(float));
        RF_TRY(obs_apply(q, o, 0, data, n));
        o->swapped = o->init;
        return RF_OK;
    }
    /* the products' gradient, clipped, plus the float readers' */
    RF_TRY(obs_apply(q, o, 1, data, n));
    if (!o->swapped || !q->in_step) return RF_OK;
    for (size_t i = 0; i < n; i++) data[i] += o->keep_g[i];
    memcpy(q->m->acts + q->m->layers[layer].act_offset * (size_t)q->m->max_batch, o->keep, n * sizeof(float));
    return RF_OK;
}

/* Marks the observers whose producer non-products read too (see the top)
 * with their last quantized reader; RF_ERR_UNSUPPORTED when a float reader
 * comes before a quantized one. */
static rf_status find_shared(rf_ctx *ctx, rf_qat *q, const rf_model *m) {
    const int nq = rf_quant_n_layers(q->desc);
    for (int i = 0; i < m->n_layers; i++) q->last_of[i] = -1;
    for (int i = 0; i < nq; i++) q->obs[i].last = -1;
    for (int i = 0; i < nq; i++) {
        qat_obs *o = &q->obs[i];
        if (o->same_as >= 0 || o->producer < 0 || per_param(q->desc, m, i)) continue;
        int last = -1, first_float = -1;
        for (int j = o->producer + 1; j < m->n_layers; j++) {
            int reads = 0, quantized = 0;
            for (int k = 0; k < m->layers[j].n_inputs; k++) reads |= m->layers[j].inputs[k] == o->producer;
            if (!reads) continue;
            for (int p = 0; p < nq && !quantized; p++)
                quantized = rf_quant_layer(q->desc, p)->layer == j && !per_param(q->desc, m, p);
            if (quantized) last = j;
            else if (first_float < 0) first_float = j;
        }
        if (first_float < 0) continue;
        if (first_float < last)
            return rf_error(ctx, RF_ERR_UNSUPPORTED, "qat: layer %s reads %s's output in float before its quantized reader %s "
                            "(QAT needs the float readers of a tensor after its quantized readers)",
                            m->layers[first_float].name, m->layers[o->producer].name, m->layers[last].name);
        o->last = last;
        q->last_of[last] = i;
    }
    return RF_OK;
}

/* rf_param.train_act of a product inside a transformer/attention layer. */
static rf_status qat_param_act(void *state, int backward, float *X, size_t n) {
    qat_obs *o = state;
    return obs_apply(o->owner, o, backward, X, n);
}


rf_status rf_qat_new(rf_ctx *ctx, rf_model *m, const rf_dataset *train, const rf_qat_cfg *cfg,
                     rf_qat **out) {
    *out = NULL;
    rf_qat *q = rf_calloc(1, sizeof *q);
    if (!q) return rf_error(ctx, RF_ERR_NOMEM, "qat: out of memory");
    rf_status s = rf_quant_new(ctx, m, &q->desc);
    if (s != RF_OK) { rf_free(q); return s; }
    if (cfg) q->cfg = *cfg; else rf_qat_cfg_default(&q->cfg);
    if (q->cfg.ema_decay < 0.0f || q->cfg.ema_decay >= 1.0f || q->cfg.freeze_after < 1) {
        rf_qat_free(q, NULL);
        return rf_error(ctx, RF_ERR_INVALID, "qat: ema_decay must be in [0, 1) and freeze_after >= 1");
    }
    int nq = rf_quant_n_layers(q->desc);
    if (q->cfg.formats && rf_quant_n_layers((rf_quant *)q->cfg.formats) != nq) {
        rf_qat_free(q, NULL);
        return rf_error(ctx, RF_ERR_INVALID, "qat: the weight formats describe another model");
    }
    size_t max_nk = 0;
    for (int i = 0; i < nq; i++) {
        rf_qlayer_info *in = rf_quant_layer(q->desc, i);
        if (q->cfg.formats) {
            const rf_qlayer_info *f = rf_quant_layer((rf_quant *)q->cfg.formats, i);
            in->bits = f->bits;
            in->group_size = f->group_size;
            in->group_mode = f->group_mode;
        }
        if (in->bits < 8 && (size_t)in->N * (size_t)in->K > max_nk) max_nk = (size_t)in->N * (size_t)in->K;
    }
    q->cfg.formats = NULL;   /* borrowed only here */
    if (max_nk) {
        q->gq = rf_malloc(max_nk);
        q->gs = rf_malloc(max_nk * sizeof(float));
        q->gz = rf_malloc(max_nk * sizeof(int32_t));
        if (!q->gq || !q->gs || !q->gz) { rf_qat_free(q, NULL); return rf_error(ctx, RF_ERR_NOMEM, "qat: out of memory"); }
    }
    q->n_model_layers = m->n_layers;
    q->obs_of = rf_malloc((size_t)m->n_layers * sizeof(int));
    q->last_of = rf_malloc((size_t)m->n_layers * sizeof(int));
    q->obs = rf_calloc((size_t)nq, sizeof *q->obs);
    for (int i = 0; i < nq; i++) {
        const rf_qlayer_info *in = rf_quant_layer(q->desc, i);
        q->shadow_n += (size_t)in->N * (size_t)in->K;
    }
    q->shadow = rf_malloc(q->shadow_n * sizeof(float));
    if (!q->obs_of || !q->last_of || !q->obs || !q->shadow) { rf_qat_free(q, NULL); return rf_error(ctx, RF_ERR_NOMEM, "qat: out of memory"); }
    for (int i = 0; i < m->n_layers; i++) q->obs_of[i] = -1;
    for (int i = 0; i < nq; i++) {
        const rf_qlayer_info *in = rf_quant_layer(q->desc, i);
        int L = in->layer;
        int src = m->layers[L].inputs[0];   /* the DAG: not always layer L - 1 */
        q->obs[i].owner = q;
        q->obs[i].producer = src;
        q->obs[i].same_as = -1;
        if (per_param(q->desc, m, i)) {
            m->ptensors[in->param].train_act = qat_param_act;
            m->ptensors[in->param].train_state = &q->obs[i];
        } else if (src >= 0 && q->obs_of[src] >= 0) {
            /* a block input read by its branch and its projection: one tensor,
             * fake-quantized once, so one range for both products */
            q->obs[i].same_as = q->obs_of[src];
        } else if (src >= 0) q->obs_of[src] = i;
        else if (train && train->n > 0) {
            size_t n = (size_t)train->n * (size_t)train->c * (size_t)train->h * (size_t)train->w;
            float lo = train->x[0], hi = train->x[0];
            for (size_t k = 1; k < n; k++) { if (train->x[k] < lo) lo = train->x[k]; if (train->x[k] > hi) hi = train->x[k]; }
            q->obs[i].lo = lo; q->obs[i].hi = hi; q->obs[i].init = 1;
        }
    }
    s = find_shared(ctx, q, m);
    if (s != RF_OK) { rf_qat_free(q, NULL); return s; }
    q->m = m;
    q->prev_hook = m->hook;
    q->prev_ud = m->hook_ud;
    m->hook = qat_hook;
    m->hook_ud = q;
    *out = q;
    return RF_OK;
}

/* Copies the quantized products' weights between the model and the shadow. */
static void shadow_copy(rf_qat *q, rf_model *m, int to_shadow) {
    size_t off = 0;
    for (int i = 0; i < rf_quant_n_layers(q->desc); i++) {
        const rf_qlayer_info *in = rf_quant_layer(q->desc, i);
        size_t nk = (size_t)in->N * (size_t)in->K;
        float *w = m->params + m->ptensors[in->param].offset;
        if (to_shadow) memcpy(q->shadow + off, w, nk * sizeof(float));
        else memcpy(w, q->shadow + off, nk * sizeof(float));
        off += nk;
    }
}

rf_status rf_qat_before_step(void *ud, rf_model *m, int64_t step, int64_t total) {
    rf_qat *q = ud;
    q->step = step;
    shadow_copy(q, m, 1);
    q->in_step = 1;
    for (int i = 0; i < rf_quant_n_layers(q->desc); i++) {
        const rf_qlayer_info *in = rf_quant_layer(q->desc, i);
        float *w = m->params + m->ptensors[in->param].offset;
        if (in->bits >= 8) { rf_fake_quant_rows(w, in->N, in->K); continue; }
        /* int4 products: quantize-dequantize by groups, the weights the
         * int4 path will run (rf_group_quantize; zero stays zero) */
        rf_ctx tmp;
        rf_ctx_init(&tmp);
        int32_t *zp = in->group_mode == RF_GROUP_AFFINE ? q->gz : NULL;
        rf_status s = rf_group_quantize(&tmp, w, in->N, in->K, in->bits, in->group_size, in->group_mode, q->gq, q->gs, zp);
        if (s != RF_OK) return s;   /* a non-finite weight: the loss reports it */
        rf_group_dequantize(q->gq, in->N, in->K, in->group_size, q->gs, zp, w);
    }
    return RF_OK;
}

rf_status rf_qat_after_backward(void *ud, rf_model *m, int64_t step) {
    rf_qat *q = ud;
    if (q->in_step) shadow_copy(q, m, 0);
    q->in_step = 0;
    return RF_OK;
}

void rf_qat_hooks(rf_qat *q, rf_train_hooks *h) {
    h->ud = q;
    h->before_step = rf_qat_before_step;
    h->after_backward = rf_qat_after_backward;
}

static void unhook(rf_qat *q, rf_model *m) {
    if (!m) return;
    if (q->in_step) { shadow_copy(q, m, 0); q->in_step = 0; }
    if (m->hook == qat_hook && m->hook_ud == q) { m->hook = q->prev_hook; m->hook_ud = q->prev_ud; }
    for (int i = 0; q->obs && i < rf_quant_n_layers(q->desc); i++) {
        rf_param *p = &m->ptensors[rf_quant_layer(q->desc, i)->param];
        if (p->train_state == &q->obs[i]) { p->train_act = NULL; p->train_state = NULL; }
    }
}

void rf_qat_free(rf_qat *q, rf_model *m) {
    if (!q) return;
    unhook(q, m);
    for (int i = 0; q->obs && q->desc && i < rf_quant_n_layers(q->desc); i++) {
        rf_free(q->obs[i].clip);
        rf_free(q->obs[i].keep);
        rf_free(q->obs[i].keep_g);
    }
    rf_quant_free(q->desc);
    rf_free(q->obs);
    rf_free(q->obs_of);
    rf_free(q->last_of);
    rf_free(q->shadow);
    rf_free(q->gq); rf_free(q->gs); rf_free(q->gz);
    rf_free(q);
}

rf_status rf_qat_convert(rf_ctx *ctx, rf_qat *q, rf_model *m, rf_quant **out) {
    *out = NULL;
    unhook(q, m);
    rf_quant *r;
    RF_TRY(rf_quant_new(ctx, m, &r));
    for (int i = 0; i < rf_quant_n_layers(r); i++) {
        const qat_obs *o = q->obs[i].same_as >= 0 ? &q->obs[q->obs[i].same_as] : &q->obs[i];
        rf_qlayer_info *in = rf_quant_layer(r, i);
        if (!o->init) {
            rf_quant_free(r);
            return rf_error(ctx, RF_ERR_INVALID, "qat: the input range of product %s was never observed (no training steps?)",
                            m->ptensors[in->param].name);
        }
        in->lo = o->lo;
        in->hi = o->hi;
        in->act = rf_qparams_from_range(o->lo, o->hi);
        in->calibrated = 1;
        const rf_qlayer_info *f = rf_quant_layer(q->desc, i);
        rf_status s = rf_quant_set_weights(ctx, r, m, i, f->bits, f->group_size, f->group_mode);
        if (s != RF_OK) { rf_quant_free(r); return s; }
    }
    rf_quant_set_calib(r, RF_CALIB_QAT);
    *out = r;
    return RF_OK;
}
