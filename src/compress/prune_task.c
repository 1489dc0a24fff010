/* The model a pruning or lottery task starts from. Kept apart from the rest
 * of the pruning code because it reads checkpoints: code that only scores
 * and selects links without the checkpoint module. */
#include "raffle/prune.h"
#include "raffle/train.h"

rf_status rf_prune_open_model(rf_ctx *ctx, const char *ckpt, const char *model, const rf_dataset *ds, uint64_t seed,
                              rf_model **out) {
    *out = NULL;
    if (ckpt) {
        rf_status s = rf_model_load(ctx, ckpt, out);
        if (s != RF_OK) rf_error_prefix(ctx, "loading %s", ckpt);
        return s;
    }
    if (!model) return rf_error(ctx, RF_ERR_INVALID, "no parent checkpoint and no settings \"model\"");
    rf_model *m = NULL;
    RF_TRY(rf_model_create_for_data(ctx, model, ds, &m));
    rf_status s = rf_model_init(ctx, m, seed);
    if (s != RF_OK) { rf_model_free(m); return s; }
    *out = m;
    return RF_OK;
}
