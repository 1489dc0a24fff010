/* The validation split, and padding a dataset to a larger image size.
 *
 * Selection (early stopping, best iteration, the lottery ticket's "best"
 * accuracy) must not look at the test set, so a validation split is held out
 * of the training set: the first n_val entries of a seeded permutation of the
 * training indices (Philox stream "validation"), as in Frankle & Carbin 2019,
 * App. E (5,000 of CIFAR-10's 50,000). Which samples are held out is a pure
 * function of (n, n_val, seed), so every rank and every task of a sweep holds
 * out the same ones.
 *
 * rf_dataset_split does not copy the samples: it reorders the dataset once,
 * in place (cycle by cycle, one sample of scratch), to [training samples |
 * validation samples], each part in its original order, and hands out two
 * views. A [n, c*h*w] layout leaves no other way to view a random subset
 * without an index indirection every consumer would have to honour. */
#include "data/data_internal.h"

#include <math.h>
#include <string.h>

rf_status rf_data_split_indices(rf_ctx *ctx, int64_t n, int64_t n_val, uint64_t seed,
                                uint32_t *train_idx, uint32_t *val_idx) {
    if (n < 1 || n > (int64_t)UINT32_MAX)
        return rf_error(ctx, RF_ERR_INVALID, "validation split of %lld samples (1 to 2^32-1)", (long long)n);
    if (n_val < 0 || n_val >= n)
        return rf_error(ctx, RF_ERR_INVALID, "validation split of %lld of %lld samples (at least one must stay for training)",
                        (long long)n_val, (long long)n);
    uint32_t *perm = rf_malloc((size_t)n * sizeof *perm);
    unsigned char *held = rf_calloc((size_t)n, 1);
    if (!perm || !held) {
        rf_free(perm); rf_free(held);
        return rf_error(ctx, RF_ERR_NOMEM, "validation split: out of memory");
    }
    for (int64_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    rf_rng r;
    rf_rng_init(&r, seed, rf_hash64("validation", 10, 0));
    rf_rng_shuffle_u32(&r, perm, (size_t)n);
    for (int64_t i = 0; i < n_val; i++) held[perm[i]] = 1;
    int64_t kt = 0, kv = 0;
    for (int64_t i = 0; i < n; i++) {
        if (held[i]) { if (val_idx) val_idx[kv] = (uint32_t)i; kv++; }
        else         { if (train_idx) train_idx[kt] = (uint32_t)i; kt++; }
    }
    rf_free(perm);
    rf_free(held);
    return RF_OK;
}

static void make_views(const rf_dataset *ds, int64_t n_val, rf_dataset *train, rf_dataset *val) {
    size_t d = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    int64_t nt = ds->n - n_val;
    *train = *ds;
    train->n = nt;
    train->split = 0; train->split_val = 0; train->split_seed = 0;
    *val = *train;
    val->n = n_val;
    val->x = ds->x + (size_t)nt * d;
    val->y = ds->y + nt;
}

rf_status rf_dataset_split(rf_ctx *ctx, rf_dataset *ds, int64_t n_val, uint64_t seed,
                           rf_dataset *train, rf_dataset *val) {
    if (ds->split) {
        if (ds->split_val != n_val || ds->split_seed != seed)
            return rf_error(ctx, RF_ERR_INVALID,
                            "dataset %s already holds out %lld validation samples (seed %llu); cannot split it again "
                            "with %lld (seed %llu)", ds->name, (long long)ds->split_val,
                            (unsigned long long)ds->split_seed, (long long)n_val, (unsigned long long)seed);
        make_views(ds, n_val, train, val);
        return RF_OK;
    }
    if (n_val == 0 && ds->n > 0) { make_views(ds, 0, train, val); return RF_OK; }
    const int64_t n = ds->n;
    const size_t d = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    /* everything that can fail comes before the first sample moves */
    uint32_t *src = rf_malloc((n > 0 ? (size_t)n : 1) * sizeof *src);
    int32_t *ycopy = rf_malloc((n > 0 ? (size_t)n : 1) * sizeof *ycopy);
    unsigned char *done = rf_calloc(n > 0 ? (size_t)n : 1, 1);
    float *tmp = rf_malloc(d * sizeof *tmp);
    rf_status s = (!src || !ycopy || !done || !tmp) ? rf_error(ctx, RF_ERR_NOMEM, "validation split: out of memory") : RF_OK;
    /* src[p] = original index of the sample that goes to position p */
    if (!s) s = rf_data_split_indices(ctx, n, n_val, seed, src, src + (n - n_val));
    if (!s) {
        memcpy(ycopy, ds->y, (size_t)n * sizeof *ycopy);
        for (int64_t p = 0; p < n; p++) ds->y[p] = ycopy[src[p]];
        for (int64_t p0 = 0; p0 < n; p0++) {
            if (done[p0] || src[p0] == (uint32_t)p0) continue;
            memcpy(tmp, ds->x + (size_t)p0 * d, d * sizeof *tmp);
            int64_t p = p0;
            for (;;) {
                int64_t q = src[p];
                done[p] = 1;
                if (q == p0) { memcpy(ds->x + (size_t)p * d, tmp, d * sizeof *tmp); break; }
                memcpy(ds->x + (size_t)p * d, ds->x + (size_t)q * d, d * sizeof *tmp);
                p = q;
            }
        }
        ds->split = 1;
        ds->split_val = n_val;
        ds->split_seed = seed;
        make_views(ds, n_val, train, val);
    }
    rf_free(src); rf_free(ycopy); rf_free(done); rf_free(tmp);
    return s;
}

rf_status rf_data_validation_count(rf_ctx *ctx, double v, int64_t n_train, int64_t *n_val) {
    *n_val = 0;
    if (!(v >= 0.0) || !isfinite(v))
        return rf_error(ctx, RF_ERR_INVALID, "validation %g: must be 0 (none), a fraction in (0, 1) or a sample count", v);
    int64_t k;
    if (v == 0.0) k = 0;
    else if (v < 1.0) { k = (int64_t)llround(v * (double)n_train); if (k < 1) k = 1; }
    else if (v != floor(v) || v > 9007199254740992.0)
        return rf_error(ctx, RF_ERR_INVALID, "validation %g: a count must be a whole number (a fraction must be below 1)", v);
    else k = (int64_t)v;
    if (k >= n_train)
        return rf_error(ctx, RF_ERR_INVALID, "validation %g holds out %lld of %lld training samples; at least one must remain",
                        v, (long long)k, (long long)n_train);
    *n_val = k;
    return RF_OK;
}

rf_status rf_dataset_pad(rf_ctx *ctx, const rf_dataset *d, int h, int w, rf_dataset **out) {
    *out = NULL;
    if (h < d->h || w < d->w || h > 65536 || w > 65536)
        return rf_error(ctx, RF_ERR_SHAPE, "dataset %s: cannot pad %dx%d samples to %dx%d", d->name, d->h, d->w, h, w);
    rf_dataset *p;
    RF_TRY(rf_dataset_alloc_(ctx, d->name, d->n, d->c, h, w, d->name, &p));
    /* the sample order is unchanged, so a recorded split stays true */
    p->n_classes = d->n_classes;
    p->split = d->split; p->split_val = d->split_val; p->split_seed = d->split_seed;
    memcpy(p->mean, d->mean, sizeof p->mean);
    memcpy(p->std, d->std, sizeof p->std);
    memcpy(p->y, d->y, (size_t)d->n * sizeof *p->y);
    const int top = (h - d->h) / 2, left = (w - d->w) / 2;
    const size_t din = (size_t)d->c * d->h * d->w, dout = (size_t)d->c * h * w;
    for (int64_t i = 0; i < d->n; i++)
        for (int ch = 0; ch < d->c; ch++) {
            const float fill = -d->mean[ch] / d->std[ch];   /* a raw 0 pixel */
            float *o = p->x + (size_t)i * dout + (size_t)ch * h * w;
            const float *s = d->x + (size_t)i * din + (size_t)ch * d->h * d->w;
            for (int y = 0; y < h; y++) {
                int sy = y - top;
                for (int x = 0; x < w; x++) {
                    int sx = x - left;
                    o[(size_t)y * w + x] = (sy >= 0 && sy < d->h && sx >= 0 && sx < d->w) ? s[(size_t)sy * d->w + sx] : fill;
                }
            }
        }
    *out = p;
    return RF_OK;
}
