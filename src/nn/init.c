/* Parameter initialisation. Each tensor draws from its own Philox stream,
 * keyed by (seed, hash of its name), so a tensor's initial values depend only
 * on the seed and its name: adding a layer elsewhere, or re-initialising one
 * tensor for a lottery-ticket control, leaves every other tensor unchanged. */
#include "nn/layers.h"

#include <math.h>
#include <string.h>

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Normal truncated at ±2σ by resampling (timm's trunc_normal_ with std 0.02). */
static float trunc_normal(rf_rng *r, float std) {
    for (;;) {
        float z = rf_rng_normal(r);
        if (z >= -2.0f && z <= 2.0f) return z * std;
    }
}

static void fans(const rf_param *p, double *fan_in, double *fan_out) {
    double rec = 1.0;
    for (int i = 2; i < p->ndim; i++) rec *= (double)p->shape[i];
    *fan_in = p->ndim >= 2 ? (double)p->shape[1] * rec : (double)p->shape[0];
    *fan_out = (double)p->shape[0] * rec;
}

rf_status rf_model_init(rf_ctx *ctx, rf_model *m, uint64_t seed) {
    double last_fan_in = 1.0;   /* of the weight a bias follows (PyTorch's bias bound) */
    for (int t = 0; t < m->n_ptensors; t++) {
        const rf_param *p = &m->ptensors[t];
        int scheme = m->layers[p->layer].ip[6];
        float *w = m->params + p->offset;
        rf_rng r;
        rf_rng_init(&r, seed, rf_hash64(p->name, strlen(p->name), 0));
        switch (p->role) {
        case RF_P_WEIGHT: {
            double fi, fo;
            fans(p, &fi, &fo);
            last_fan_in = fi;
            if (scheme == RF_NN_INIT_TRUNC_NORMAL) {
                for (size_t i = 0; i < p->numel; i++) w[i] = trunc_normal(&r, 0.02f);
            } else if (scheme == RF_NN_INIT_PYTORCH) {
                float bound = (float)(1.0 / sqrt(fi));   /* kaiming_uniform(a=√5) */
                for (size_t i = 0; i < p->numel; i++) w[i] = (2.0f * rf_rng_uniform(&r) - 1.0f) * bound;
            } else {
                float std = (float)(scheme == RF_NN_INIT_GLOROT_NORMAL ? sqrt(2.0 / (fi + fo)) : sqrt(2.0 / fi));
                for (size_t i = 0; i < p->numel; i++) w[i] = rf_rng_normal(&r) * std;
            }
            break;
        }
        case RF_P_BIAS:
            if (scheme == RF_NN_INIT_PYTORCH) {
                float bound = (float)(1.0 / sqrt(last_fan_in));
                for (size_t i = 0; i < p->numel; i++) w[i] = (2.0f * rf_rng_uniform(&r) - 1.0f) * bound;
            } else {
                memset(w, 0, p->numel * sizeof(float));
            }
            break;
        case RF_P_NORM: {
            float v = ends_with(p->name, ".weight") ? 1.0f : 0.0f;
            for (size_t i = 0; i < p->numel; i++) w[i] = v;
            break;
        }
        case RF_P_EMBED:
            for (size_t i = 0; i < p->numel; i++) w[i] = trunc_normal(&r, 0.02f);
            break;
        default:
            return rf_error(ctx, RF_ERR_INTERNAL, "init: parameter %s has unknown role %d", p->name, (int)p->role);
        }
    }
    /* Batch-norm running statistics start at mean 0, variance 1 (PyTorch). */
    memset(m->buffers, 0, m->n_buffers * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const rf_layer *L = &m->layers[i];
        if (!(rf_layer_traits(L->type) & RF_LT_STATS)) continue;
        float *var = m->buffers + L->buf_offset + L->in.d[0];
        for (int c = 0; c < L->in.d[0]; c++) var[c] = 1.0f;
    }
    rf_rng_init(&m->dropout_rng, seed, rf_hash64("dropout", 7, 0));
    rf_model_apply_masks(m);
    return RF_OK;
}
