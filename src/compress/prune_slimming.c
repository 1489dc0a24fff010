/* Network slimming (Liu, Li, Shen, Huang, Yan & Zhang 2017, "Learning
 * Efficient Convolutional Networks through Network Slimming", §3-4): each
 * channel's importance is the scale γ of the batch norm after it; training
 * with an L1 penalty λ Σ|γ| (the training setting bn_l1, train.h) drives
 * the unneeded ones to 0, and the channels with the smallest |γ| go,
 * ranked globally in the paper ("a global threshold"). A channel group
 * (channels joined by an add) scores the sum of |γ| over its batch norms;
 * every eligible group needs one (struct.c). */
#include "compress/prune_internal.h"

#include <math.h>

static rf_status score_gamma(rf_ctx *ctx, rf_model *m, const rf_prune_cfg *cfg, const rf_prune_item *it, int n,
                             const rf_dataset *train, float *sc) {
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        if (!(rf_layer_traits(L->type) & RF_LT_STATS) || L->n_params < 1) continue;
        const rf_param *g = &m->ptensors[L->first_param];   /* batch norm's weight γ, then its bias β */
        for (size_t c = 0; g->role == RF_P_NORM && c < g->numel; c++) sc[g->offset + c] = fabsf(m->params[g->offset + c]);
    }
    return RF_OK;
}

const rf_prune_method_desc rf_prune_method_slimming = {
    .name = "slimming", .summary = "channels by |γ| of their batch norms, trained with bn_l1 (Liu et al. 2017, network slimming); structured",
    .flags = RF_PM_CHANNELS | RF_PM_NEURONS | RF_PM_BNSCALE | RF_PM_LAYER | RF_PM_GLOBAL, .score = score_gamma,
    .prune = rf_prune_struct_apply,
};
