/* Filter pruning by L1 norm (Li, Kadav, Durdanovic, Samet & Graf 2017,
 * "Pruning Filters for Efficient ConvNets", §3.1): a conv filter's
 * importance is the sum of its absolute kernel weights, s_j = Σ|F_j|, and
 * the filters with the smallest sums go, with their feature maps and the
 * next layer's kernels that read them. Filters joined by an add (a
 * residual stage) are one group scored by the sum of its filters' norms
 * (struct.c); the pruned model is then sliced (rf_model_slice). */
#include "compress/prune_internal.h"

const rf_prune_method_desc rf_prune_method_filter_l1 = {
    .name = "filter_l1", .summary = "conv2d filters by the L1 norm of their weights, with the channels they feed (Li et al. 2017, §3.1); structured",
    .flags = RF_PM_CHANNELS | RF_PM_LAYER | RF_PM_GLOBAL, .score = rf_prune_score_items_magnitude, .prune = rf_prune_struct_apply,
};
