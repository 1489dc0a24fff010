/* Neuron pruning of linear layers: a neuron's importance is the L1 norm of
 * its incoming weights (its row of W), the norm criterion of Li et al. 2017
 * (§3.1) applied to fully connected units; the smallest go, with the
 * columns of the next layer that read them (struct.c), and the model is
 * sliced (rf_model_slice). */
#include "compress/prune_internal.h"

const rf_prune_method_desc rf_prune_method_neuron_l1 = {
    .name = "neuron_l1", .summary = "linear neurons by the L1 norm of their incoming weights (Li et al. 2017's criterion); structured",
    .flags = RF_PM_NEURONS | RF_PM_LAYER | RF_PM_GLOBAL, .score = rf_prune_score_items_magnitude, .prune = rf_prune_struct_apply,
};
