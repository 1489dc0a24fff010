/* Lottery-ticket rewinding (Frankle & Carbin 2019 §2; Frankle et al. 2020
 * §3): after a round prunes the trained network, the surviving weights take
 * the values they had at the rewind point (initialisation, or step K of the
 * dense run) and pruned ones are exactly zero. The rewind source is a model
 * of the same architecture; its own mask (if any) is ignored. */
#include "raffle/prune.h"

#include <string.h>

rf_status rf_lottery_rewind(rf_ctx *ctx, rf_model *m, const rf_model *from) {
    if (from->n_params != m->n_params || from->n_buffers != m->n_buffers || from->n_ptensors != m->n_ptensors)
        return rf_error(ctx, RF_ERR_SHAPE, "rewind: the rewind weights have %zu parameters, the model %zu",
                        from->n_params, m->n_params);
    for (int i = 0; i < m->n_ptensors; i++)
        if (from->ptensors[i].numel != m->ptensors[i].numel || from->ptensors[i].offset != m->ptensors[i].offset ||
            strcmp(from->ptensors[i].name, m->ptensors[i].name) != 0)
            return rf_error(ctx, RF_ERR_SHAPE, "rewind: tensor %d is %s in the model, %s in the rewind weights",
                            i, m->ptensors[i].name, from->ptensors[i].name);
    memcpy(m->params, from->params, m->n_params * sizeof *m->params);
    if (m->n_buffers) memcpy(m->buffers, from->buffers, m->n_buffers * sizeof *m->buffers);
    rf_model_apply_masks(m);
    return RF_OK;
}
