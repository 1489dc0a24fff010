/* Weight sharing of a model (Han, Mao and Dally 2016, "Deep Compression",
 * §3): k-means per weight tensor (rf_kmeans_share, kmeans.c), centroid
 * fine-tuning inside the ordinary training loop, and the codebook
 * checkpoint. The API is in include/raffle/quant.h; docs/quantization.md
 * has the pipeline.
 *
 * Centroid fine-tuning (§3.3, eq. 3): the forward uses the decoded weights
 * W = C[idx]; backward gives dL/dW as usual; the gradient of centroid j is
 * the sum of dL/dW over the kept weights assigned to it. The codebooks are
 * a small parameter block of their own (one optimizer with its own
 * moments); after the model's optimizer step the shared weights are
 * decoded again, which undoes whatever that step did to them, so only the
 * codebooks, and the parameters that are not shared, move. The assignments
 * never change during fine-tuning, and pruned weights stay 0. */
#include "raffle/quant.h"
#include "raffle/ckpt.h"

#include <stdio.h>
#include <string.h>

typedef struct share_rt {
    rf_share_tensor info;
    size_t   offset, numel;  /* the weight's place in the model's params */
    size_t   coff;           /* its codebook's place in the codebook block */
    uint8_t *idx;            /* [numel] (owned) */
    uint8_t *mask;           /* [numel] 0/1, NULL when the model is dense (owned) */
} share_rt;

struct rf_share {
    int       n;
    share_rt *t;
    float    *codebooks;     /* all codebooks back to back: sum of 2^bits */
    float    *cgrad;         /* their gradients */
    size_t    n_codes;
    rf_optim  opt;
    int       have_opt;
    int64_t   total;         /* steps of the fine-tuning run (from before_step) */
};

void rf_share_free(rf_share *s) {
    if (!s) return;
    for (int i = 0; s->t && i < s->n; i++) { rf_free(s->t[i].idx); rf_free(s->t[i].mask); }
    if (s->have_opt) rf_optim_free(&s->opt);
    rf_free(s->t);
    rf_free(s->codebooks);
    rf_free(s->cgrad);
    rf_free(s);
}

int rf_share_count(const rf_share *s) { return s->n; }
const rf_share_tensor *rf_share_get(const rf_share *s, int i) { return i >= 0 && i < s->n ? &s->t[i].info : NULL; }
const float *rf_share_codebook(const rf_share *s, int i) { return i >= 0 && i < s->n ? s->codebooks + s->t[i].coff : NULL; }

/* The shared tensors' weights from their codebooks (pruned entries 0). */
static void decode_all(const rf_share *s, rf_model *m) {
    for (int i = 0; i < s->n; i++) {
        const share_rt *t = &s->t[i];
        rf_kmeans_decode(s->codebooks + t->coff, t->idx, t->mask, t->numel, m->params + t->offset);
    }
}

rf_status rf_share_new(rf_ctx *ctx, rf_model *m, const int *bits, int max_iter, rf_share **out) {
    *out = NULL;
    int n = 0;
    size_t codes = 0;
    for (int i = 0; i < m->n_ptensors; i++) {
        if (!bits[i]) continue;
        if (bits[i] < RF_KMEANS_BITS_MIN || bits[i] > RF_KMEANS_BITS_MAX)
            return rf_error(ctx, RF_ERR_INVALID, "weight sharing: %s: bits %d outside [%d, %d]", m->ptensors[i].name, bits[i],
                            RF_KMEANS_BITS_MIN, RF_KMEANS_BITS_MAX);
        n++;
        codes += (size_t)1 << bits[i];
    }
    if (n == 0) return rf_error(ctx, RF_ERR_INVALID, "weight sharing: no tensor to share");
    rf_share *s = rf_calloc(1, sizeof *s);
    if (!s) return rf_error(ctx, RF_ERR_NOMEM, "weight sharing: out of memory");
    s->t = rf_calloc((size_t)n, sizeof *s->t);
    s->codebooks = rf_calloc(codes, sizeof(float));
    s->cgrad = rf_calloc(codes, sizeof(float));
    s->n_codes = codes;
    if (!s->t || !s->codebooks || !s->cgrad) { rf_share_free(s); return rf_error(ctx, RF_ERR_NOMEM, "weight sharing: out of memory"); }
    rf_status st = RF_OK;
    size_t coff = 0;
    for (int i = 0; i < m->n_ptensors && st == RF_OK; i++) {
        if (!bits[i]) continue;
        const rf_param *p = &m->ptensors[i];
        share_rt *t = &s->t[s->n++];
        t->info.param = i;
        t->info.bits = bits[i];
        t->offset = p->offset;
        t->numel = p->numel;
        t->coff = coff;
        coff += (size_t)1 << bits[i];
        t->idx = rf_malloc(p->numel ? p->numel : 1);
        const int masked = m->masks && p->prunable;
        if (masked) t->mask = rf_malloc(p->numel ? p->numel : 1);
        if (!t->idx || (masked && !t->mask)) { st = rf_error(ctx, RF_ERR_NOMEM, "weight sharing: out of memory"); break; }
        for (size_t k = 0; t->mask && k < p->numel; k++) t->mask[k] = m->masks[p->offset + k] != 0.0f;
        st = rf_kmeans_share(ctx, m->params + p->offset, t->mask, p->numel, bits[i], max_iter, s->codebooks + t->coff,
                             t->idx, &t->info.km);
        if (st != RF_OK) rf_error_prefix(ctx, "weight sharing: %s", p->name);
    }
    if (st != RF_OK) { rf_share_free(s); return st; }
    decode_all(s, m);
    *out = s;
    return RF_OK;
}

/* ---- centroid fine-tuning ------------------------------------------------------ */
static rf_status share_before_step(void *ud, rf_model *m, int64_t step, int64_t total) {
    (void)m; (void)step;
    ((rf_share *)ud)->total = total;
    return RF_OK;
}

static rf_status share_after_backward(void *ud, rf_model *m, int64_t step) {
    rf_share *s = ud;
    for (int i = 0; i < s->n; i++) {
        const share_rt *t = &s->t[i];
        float *g = m->grads + t->offset;
        rf_kmeans_centroid_grad(g, t->idx, t->mask, t->numel, t->info.bits, s->cgrad + t->coff);
        /* the weights themselves do not move: their gradient went to the
         * codebook (and must not enter the model optimizer's clipping norm) */
        memset(g, 0, t->numel * sizeof(float));
    }
    rf_optim_step_flat(&s->opt, s->codebooks, s->cgrad, NULL, rf_sched_lr(&s->opt.cfg, step, s->total));
    return RF_OK;
}

static rf_status share_after_step(void *ud, rf_model *m, int64_t step) {
    (void)step;
    decode_all(ud, m);
    return RF_OK;
}

rf_status rf_share_hooks(rf_ctx *ctx, rf_share *s, const rf_optim_cfg *cfg, rf_train_hooks *h) {
    memset(h, 0, sizeof *h);
    if (s->have_opt) { rf_optim_free(&s->opt); s->have_opt = 0; }
    RF_TRY(rf_optim_init(ctx, &s->opt, cfg, s->n_codes));
    s->have_opt = 1;
    h->ud = s;
    h->before_step = share_before_step;
    h->after_backward = share_after_backward;
    h->after_step = share_after_step;
    return RF_OK;
}

/* ---- checkpoint -------------------------------------------------------------------- */
static char *share_extra(const rf_share *s, const rf_model *m, const char *extra_json) {
    cJSON *e = extra_json ? cJSON_Parse(extra_json) : cJSON_CreateObject();
    if (!cJSON_IsObject(e)) { cJSON_Delete(e); return NULL; }
    cJSON_DeleteItemFromObjectCaseSensitive(e, "share");
    cJSON *o = cJSON_AddObjectToObject(e, "share");
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "layers") : NULL;
    int ok = arr && cJSON_AddStringToObject(o, "scheme", "kmeans") && cJSON_AddStringToObject(o, "init", "linear");
    for (int i = 0; ok && i < s->n; i++) {
        cJSON *l = cJSON_CreateObject();
        ok = l && cJSON_AddItemToArray(arr, l) && cJSON_AddStringToObject(l, "weight", m->ptensors[s->t[i].info.param].name) &&
             cJSON_AddNumberToObject(l, "bits", s->t[i].info.bits);
    }
    char *txt = ok ? cJSON_PrintUnformatted(e) : NULL;
    cJSON_Delete(e);
    return txt;
}

rf_status rf_share_to_ckpt(rf_ctx *ctx, const rf_share *s, const rf_model *m, const char *extra_json, rf_ckpt **out) {
    *out = NULL;
    char *extra = share_extra(s, m, extra_json);
    if (!extra) return rf_error(ctx, RF_ERR_INVALID, "weight sharing: extra metadata is not a JSON object (or out of memory)");
    rf_ckpt *base = NULL, *c = NULL;
    rf_status st = rf_model_to_ckpt(ctx, m, extra, &base);
    cJSON_free(extra);
    if (st == RF_OK) st = rf_ckpt_new(ctx, &c);
    if (st == RF_OK) st = rf_ckpt_set_meta(ctx, c, base->meta_json);
    for (int i = 0; st == RF_OK && i < base->n; i++) {
        const rf_ckpt_tensor *t = &base->t[i];
        const share_rt *sh = NULL;
        for (int k = 0; k < s->n && !sh; k++)
            if (strcmp(m->ptensors[s->t[k].info.param].name, t->name) == 0) sh = &s->t[k];
        if (sh)
            st = rf_ckpt_add_codebook(ctx, c, t->name, t->ndim, t->shape, sh->idx, sh->mask, sh->info.bits,
                                      s->codebooks + sh->coff);
        else
            st = rf_ckpt_add_copy(ctx, c, t);
    }
    rf_ckpt_free(base);
    if (st != RF_OK) { rf_ckpt_free(c); return st; }
    *out = c;
    return RF_OK;
}

rf_status rf_share_save(rf_ctx *ctx, const rf_share *s, const rf_model *m, const char *extra_json, const char *path,
                        uint64_t *bytes) {
    rf_ckpt *c;
    RF_TRY(rf_share_to_ckpt(ctx, s, m, extra_json, &c));
    rf_status st = rf_ckpt_write(ctx, c, path);
    if (st == RF_OK && bytes) *bytes = c->file_bytes;
    rf_ckpt_free(c);
    return st;
}
