/* The "synthetic" dataset: a deterministic stand-in for MNIST used by fast
 * tests and smoke jobs.
 *
 * Digits are strokes, and different digits share strokes. The generator draws
 * a pool of POOL line segments from the seed, and gives each of the 10
 * classes its own set of STROKES segments from the pool (any two classes
 * differ in at least two). A sample of class k draws its class's strokes with
 * jittered end points, each dropped with probability P_DROP, plus with
 * probability P_EXTRA one stroke of another class; the whole image is shifted
 * by up to MAX_SHIFT pixels and gets additive noise. Shared strokes, drop-outs
 * and intruders make the classes overlap, so a linear model does not reach
 * 100% and a small MLP needs an epoch or two (about 85-95%).
 *
 * Only integer and basic float arithmetic is used (no libm transcendental
 * functions, whose last bits may differ between C libraries), and every
 * sample has its own RNG stream, so the data are bit-identical on every
 * machine and sample i does not depend on how many samples are drawn. */
#include "raffle/data.h"

#include <stdio.h>
#include <string.h>

enum { SIDE = 28, CLASSES = 10, POOL = 12, STROKES = 4, MAX_SHIFT = 2 };
#define P_DROP   0.05f
#define P_EXTRA  0.3f
#define NOISE    0.25f   /* half-width scale of the additive noise */
#define JITTER   1.0f    /* end-point jitter, pixels */

typedef struct stroke { float x0, y0, x1, y1, r; } stroke;

typedef struct synth {
    stroke pool[POOL];
    int    cls[CLASSES][STROKES];
} synth;

static float uni(rf_rng *r, float lo, float hi) { return lo + (hi - lo) * rf_rng_uniform(r); }

static int differ(const int *a, const int *b) {
    int d = 0;
    for (int i = 0; i < STROKES; i++) {
        int in = 0;
        for (int j = 0; j < STROKES; j++) in |= a[i] == b[j];
        d += !in;
    }
    return d;
}

static void synth_init(synth *s, uint64_t seed) {
    rf_rng r;
    rf_rng_init(&r, seed, rf_hash64("synthetic/prototypes", 20, 0));
    for (int i = 0; i < POOL; i++) {
        stroke *k = &s->pool[i];
        /* segments of length >= 6 px so each is a visible feature */
        do {
            k->x0 = uni(&r, 5, 23); k->y0 = uni(&r, 5, 23);
            k->x1 = uni(&r, 5, 23); k->y1 = uni(&r, 5, 23);
        } while ((k->x1 - k->x0) * (k->x1 - k->x0) + (k->y1 - k->y0) * (k->y1 - k->y0) < 36.0f);
        k->r = uni(&r, 1.8f, 2.6f);
    }
    for (int c = 0; c < CLASSES; c++) {
        for (;;) {
            uint32_t idx[POOL];
            for (int i = 0; i < POOL; i++) idx[i] = (uint32_t)i;
            rf_rng_shuffle_u32(&r, idx, POOL);
            for (int i = 0; i < STROKES; i++) s->cls[c][i] = (int)idx[i];
            int ok = 1;
            for (int o = 0; o < c && ok; o++) ok = differ(s->cls[c], s->cls[o]) >= 2;
            if (ok) break;
        }
    }
}

/* Adds one stroke into img as max(img, a * bump(distance)), with
 * bump(d) = (1 - d^2/r^2)^2 inside radius r: a smooth pen profile. */
static void draw(float *img, const stroke *k, float a) {
    float dx = k->x1 - k->x0, dy = k->y1 - k->y0, len2 = dx * dx + dy * dy, r2 = k->r * k->r;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            float px = (float)x - k->x0, py = (float)y - k->y0;
            float t = len2 > 0 ? (px * dx + py * dy) / len2 : 0.0f;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            float ex = px - t * dx, ey = py - t * dy, d2 = ex * ex + ey * ey;
            if (d2 >= r2) continue;
            float b = 1.0f - d2 / r2, v = a * b * b;
            if (v > img[y * SIDE + x]) img[y * SIDE + x] = v;
        }
}

static void sample(const synth *s, uint64_t seed, uint64_t stream, float *img, int32_t *label) {
    rf_rng r;
    rf_rng_init(&r, seed, stream);
    int c = (int)rf_rng_below(&r, CLASSES);
    float sx = (float)((int)rf_rng_below(&r, 2 * MAX_SHIFT + 1) - MAX_SHIFT);
    float sy = (float)((int)rf_rng_below(&r, 2 * MAX_SHIFT + 1) - MAX_SHIFT);
    memset(img, 0, SIDE * SIDE * sizeof(float));
    for (int i = 0; i < STROKES; i++) {
        stroke k = s->pool[s->cls[c][i]];
        float keep = rf_rng_uniform(&r), a = uni(&r, 0.7f, 1.0f);
        k.x0 += sx + uni(&r, -JITTER, JITTER); k.y0 += sy + uni(&r, -JITTER, JITTER);
        k.x1 += sx + uni(&r, -JITTER, JITTER); k.y1 += sy + uni(&r, -JITTER, JITTER);
        if (keep >= P_DROP) draw(img, &k, a);
    }
    if (rf_rng_uniform(&r) < P_EXTRA) {
        int o = (int)rf_rng_below(&r, CLASSES - 1);
        if (o >= c) o++;
        stroke k = s->pool[s->cls[o][rf_rng_below(&r, STROKES)]];
        k.x0 += sx; k.y0 += sy; k.x1 += sx; k.y1 += sy;
        draw(img, &k, uni(&r, 0.5f, 0.9f));
    }
    for (int i = 0; i < SIDE * SIDE; i++) {
        /* sum of three uniforms: a cheap, libm-free bell-shaped noise */
        float e = rf_rng_uniform(&r) + rf_rng_uniform(&r) + rf_rng_uniform(&r) - 1.5f;
        float v = img[i] + NOISE * e;
        img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
    *label = c;
}

static rf_status make_split(rf_ctx *ctx, const synth *s, const char *name, const char *split, int64_t n,
                            uint64_t seed, rf_dataset **out) {
    *out = NULL;
    if (n <= 0) return rf_error(ctx, RF_ERR_INVALID, "synthetic: %s split needs at least one sample", split);
    RF_TRY(rf_check_cap(ctx, (uint64_t)n * SIDE * SIDE * sizeof(float), "synthetic dataset"));
    rf_dataset *ds = rf_calloc(1, sizeof *ds);
    if (!ds) return rf_error(ctx, RF_ERR_NOMEM, "synthetic: out of memory");
    ds->x = rf_aligned_alloc(64, (size_t)n * SIDE * SIDE * sizeof(float));
    ds->y = rf_malloc((size_t)n * sizeof(int32_t));
    if (!ds->x || !ds->y) { rf_dataset_free(ds); return rf_error(ctx, RF_ERR_NOMEM, "synthetic: out of memory"); }
    snprintf(ds->name, sizeof ds->name, "%s", name ? name : "synthetic");
    ds->n = n; ds->c = 1; ds->h = SIDE; ds->w = SIDE; ds->n_classes = CLASSES;
    for (int i = 0; i < 4; i++) { ds->mean[i] = 0.0f; ds->std[i] = 1.0f; }
    uint64_t base = rf_hash64(split, strlen(split), 0);
    for (int64_t i = 0; i < n; i++) sample(s, seed, base + (uint64_t)i, ds->x + i * SIDE * SIDE, &ds->y[i]);
    *out = ds;
    return RF_OK;
}

rf_status rf_data_synthetic(rf_ctx *ctx, const char *name, int64_t n_train, int64_t n_test, uint64_t seed,
                            rf_dataset **train, rf_dataset **test) {
    *train = NULL; *test = NULL;
    synth s;
    synth_init(&s, seed);
    RF_TRY(make_split(ctx, &s, name, "synthetic/train", n_train, seed, train));
    rf_status st = make_split(ctx, &s, name, "synthetic/test", n_test, seed, test);
    if (st) { rf_dataset_free(*train); *train = NULL; }
    return st;
}
