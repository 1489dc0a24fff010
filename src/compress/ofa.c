/* Prune Once For All (Zafrir et al. 2021, "Prune Once for All: Sparse
 * Pre-Trained Language Models", §3): one composite set of training hooks
 * that the three OFA stages configure differently.
 *
 *  sparse pre-training  GMP (Zhu & Gupta 2017, cubic) to 85/90% over the
 *                       first half of the run + 0.5·CE + 0.5·KD at T = 2;
 *  transfer             pattern locked (masks kept, no GMP) + KD from a dense
 *                       teacher fine-tuned on the downstream data;
 *  QAT                  pattern locked + fake quantization (Jacob et al. 2018).
 *
 * Hook order inside a step: GMP updates the masks first (the forward must see
 * the pruned weights), then QAT swaps in the fake-quantized weights of the
 * pruned model; after backward QAT restores the real weights before the
 * optimizer (the straight-through estimator). */
#include "raffle/distill.h"

#include <math.h>
#include <string.h>

void rf_ofa_hooks_init(rf_ofa_hooks *o, rf_ctx *ctx) {
    memset(o, 0, sizeof *o);
    o->ctx = ctx;
    o->end_fraction = 0.5;
    o->every_fraction = 0.01;
}

void rf_ofa_gmp_schedule(double sparsity, int64_t total, double end_fraction, double every_fraction,
                         rf_gmp_schedule *s) {
    rf_gmp_schedule_for_run(0.0, sparsity, total, 0.0, end_fraction, every_fraction, s);
}

static rf_status ofa_before_step(void *ud, rf_model *m, int64_t step, int64_t total) {
    rf_ofa_hooks *o = ud;
    if (o->gmp_on) {
        if (!o->gmp_ready) {
            rf_prune_cfg pc;
            rf_prune_cfg_default(&pc);
            pc.method = RF_PRUNE_MAGNITUDE;
            pc.scope = RF_SCOPE_LAYER;   /* uniform sparsity across layers (OFA §3) */
            pc.layers = o->layers;       /* e.g. keep the input layer dense, as OFA keeps BERT's embeddings */
            pc.nm_n = o->nm_n;           /* gradual N:M: M:M down to N:M (rf_gmp_apply) */
            pc.nm_m = o->nm_m;
            rf_gmp_schedule sched;
            rf_ofa_gmp_schedule(o->sparsity, total, o->end_fraction, o->every_fraction, &sched);
            RF_TRY(rf_gmp_init(o->ctx, &o->gmp, &pc, &sched));
            o->gmp.output_scale = 0.0;   /* the classifier is not pruned (OFA §3) */
            o->gmp_ready = 1;
        }
        RF_TRY(rf_gmp_apply(&o->gmp, m, step));
    }
    if (o->qat) RF_TRY(rf_qat_before_step(o->qat, m, step, total));
    return RF_OK;
}

static rf_status ofa_loss(void *ud, rf_model *m, const float *x, const float *logits,
                          const int32_t *labels, const int64_t *idx, int batch,
                          float *dlogits, float *loss) {
    rf_ofa_hooks *o = ud;
    if (o->distill) return rf_distill_loss(o->distill, m, x, logits, labels, idx, batch, dlogits, loss);
    *loss = rf_loss_xent(logits, labels, batch, m->n_classes, 0.0f, dlogits);
    return RF_OK;
}

static rf_status ofa_after_backward(void *ud, rf_model *m, int64_t step) {
    rf_ofa_hooks *o = ud;
    return o->qat ? rf_qat_after_backward(o->qat, m, step) : RF_OK;
}

void rf_ofa_train_hooks(rf_ofa_hooks *o, rf_train_hooks *h) {
    memset(h, 0, sizeof *h);
    h->ud = o;
    h->before_step = ofa_before_step;
    h->loss = ofa_loss;
    h->after_backward = ofa_after_backward;
}
