/* Seeded, deterministic training-time augmentation: random crop from a
 * zero-padded image and random horizontal flip, the standard CIFAR recipe
 * (He et al. 2016, Sec. 4.2; open_lth and Synaptic-Flow use torchvision's
 * RandomCrop(32, padding=4) + RandomHorizontalFlip before normalising).
 *
 * Determinism: the three draws of a sample (row offset, column offset, flip)
 * come from its own Philox stream, rf_hash64("augment") ^ (epoch << 32 |
 * sample index), keyed by the run's seed. Nothing depends on which batch,
 * rank or thread handles the sample, or on what was drawn before, so any
 * split of the work gives the same bytes, and a resumed run replays them.
 *
 * The padding is a raw 0 pixel (black, as torchvision pads the PIL image
 * before ToTensor/Normalize); the data are normalised, so that is
 * -mean/std per channel. */
#include "data/data_internal.h"

#include <stdio.h>
#include <string.h>

#define DEFAULT_PAD 4

static uint64_t augment_stream(int64_t epoch, int64_t index) {
    return rf_hash64("augment", 7, 0) ^ (((uint64_t)epoch << 32) | (uint32_t)index);
}

int rf_augment_active(const rf_augment *a) { return a && (a->crop_pad > 0 || a->flip); }

void rf_augment_draw(const rf_augment *a, uint64_t seed, int64_t epoch, int64_t index, int *dy, int *dx, int *flip) {
    rf_rng r;
    rf_rng_init(&r, seed, augment_stream(epoch, index));
    uint32_t span = 2u * (uint32_t)a->crop_pad + 1u;
    *dy = (int)rf_rng_below(&r, span);
    *dx = (int)rf_rng_below(&r, span);
    *flip = a->flip ? (int)(rf_rng_u32(&r) >> 31) : 0;
}

void rf_augment_crop_flip_ref(const float *in, int c, int h, int w, const float *fill, int pad,
                              int dy, int dx, int flip, float *out) {
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int xs = flip ? w - 1 - x : x;
                int sy = y + dy - pad, sx = xs + dx - pad;
                out[((size_t)ch * h + y) * w + x] =
                    (sy >= 0 && sy < h && sx >= 0 && sx < w) ? in[((size_t)ch * h + sy) * w + sx] : fill[ch];
            }
}

static void fill_run(float *o, int n, float v) {
    for (int i = 0; i < n; i++) o[i] = v;
}

/* Row by row: the in-image part of a row is one memcpy (or one reversed
 * copy), the rest is fill. */
void rf_augment_crop_flip(const float *in, int c, int h, int w, const float *fill, int pad,
                          int dy, int dx, int flip, float *out) {
    const int oy = dy - pad, ox = dx - pad;
    /* source columns xs (before flipping) with xs + ox inside the image */
    int x0 = ox < 0 ? -ox : 0, x1 = ox > 0 ? w - ox : w;
    if (x1 < x0) x1 = x0;
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++) {
            float *o = out + ((size_t)ch * h + y) * w;
            const int sy = y + oy;
            if (sy < 0 || sy >= h || x0 == x1) { fill_run(o, w, fill[ch]); continue; }
            const float *row = in + ((size_t)ch * h + sy) * w;   /* row[xs + ox] */
            if (!flip) {
                fill_run(o, x0, fill[ch]);
                memcpy(o + x0, row + x0 + ox, (size_t)(x1 - x0) * sizeof *o);
                fill_run(o + x1, w - x1, fill[ch]);
            } else {
                /* out[x] = row[(w-1-x) + ox]; in-image for x in [w-x1, w-x0) */
                fill_run(o, w - x1, fill[ch]);
                for (int x = w - x1; x < w - x0; x++) o[x] = row[w - 1 - x + ox];
                fill_run(o + (w - x0), x0, fill[ch]);
            }
        }
}

void rf_augment_sample(const rf_augment *a, const rf_dataset *ds, uint64_t seed, int64_t epoch,
                       int64_t index, float *out) {
    int dy, dx, flip;
    rf_augment_draw(a, seed, epoch, index, &dy, &dx, &flip);
    float fill[4];
    for (int ch = 0; ch < 4; ch++) fill[ch] = ch < ds->c ? -ds->mean[ch] / ds->std[ch] : 0.0f;
    const size_t d = (size_t)ds->c * ds->h * ds->w;
    rf_augment_crop_flip(ds->x + (size_t)index * d, ds->c, ds->h, ds->w, fill, a->crop_pad, dy, dx, flip, out);
}

rf_status rf_batcher_set_augment(rf_ctx *ctx, rf_batcher *b, const rf_augment *a) {
    if (a->crop_pad < 0 || a->crop_pad > RF_AUGMENT_MAX_PAD || (a->flip != 0 && a->flip != 1))
        return rf_error(ctx, RF_ERR_INVALID, "augment: crop padding %d (0 to %d) and flip %d (0 or 1)",
                        a->crop_pad, RF_AUGMENT_MAX_PAD, a->flip);
    b->augment = *a;
    b->augment_on = rf_augment_active(a);
    return RF_OK;
}

/* ---- the `augment` setting's text ----------------------------------------- */

typedef struct aug_term {
    const char *name;
    int         takes_pad;   /* "crop" and "crop:P" */
} aug_term;

static const aug_term terms[] = {{"crop", 1}, {"flip", 0}};

rf_status rf_augment_parse(rf_ctx *ctx, const char *text, rf_augment *a) {
    rf_augment r = {0, 0};
    if (strcmp(text, "none") == 0) { *a = r; return RF_OK; }
    const char *p = text;
    int seen[sizeof terms / sizeof terms[0]] = {0};
    for (;;) {
        size_t len = strcspn(p, "+");
        size_t t = 0;
        for (; t < sizeof terms / sizeof terms[0]; t++) {
            size_t k = strlen(terms[t].name);
            if (len >= k && strncmp(p, terms[t].name, k) == 0 && (len == k || (terms[t].takes_pad && p[k] == ':'))) break;
        }
        if (t == sizeof terms / sizeof terms[0] || seen[t])
            return rf_error(ctx, RF_ERR_INVALID, "augment '%s': expected \"none\" or terms crop, crop:P, flip joined by '+'", text);
        seen[t] = 1;
        if (terms[t].takes_pad) {
            size_t k = strlen(terms[t].name);
            int pad = DEFAULT_PAD;
            if (len > k) {
                pad = 0;
                size_t i = k + 1;
                if (i == len) pad = -1;
                for (; i < len && pad >= 0; i++)
                    pad = (p[i] >= '0' && p[i] <= '9' && pad <= RF_AUGMENT_MAX_PAD) ? pad * 10 + (p[i] - '0') : -1;
            }
            if (pad < 1 || pad > RF_AUGMENT_MAX_PAD)
                return rf_error(ctx, RF_ERR_INVALID, "augment '%s': crop padding must be 1 to %d pixels", text, RF_AUGMENT_MAX_PAD);
            r.crop_pad = pad;
        } else {
            r.flip = 1;
        }
        if (!p[len]) break;
        p += len + 1;
    }
    *a = r;
    return RF_OK;
}

void rf_augment_format(const rf_augment *a, char *buf, size_t n) {
    if (!rf_augment_active(a)) { snprintf(buf, n, "none"); return; }
    char crop[32] = "";
    if (a->crop_pad == DEFAULT_PAD) snprintf(crop, sizeof crop, "crop");
    else if (a->crop_pad > 0) snprintf(crop, sizeof crop, "crop:%d", a->crop_pad);
    snprintf(buf, n, "%s%s%s", crop, crop[0] && a->flip ? "+" : "", a->flip ? "flip" : "");
}
