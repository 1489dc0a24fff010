/* Data preparation: the validation split (disjoint, covering, deterministic,
 * nested, independent of call order; in-place views that move every sample
 * with its label), rf_data_open (statistics from the training part only,
 * given statistics, none, 28x28 -> 32x32), padding, and the crop + flip
 * augmentation (fast kernel against the per-pixel _ref, hand-computed cases,
 * draws as a pure function of (seed, epoch, index): the same bytes for any
 * batch size, thread split or call order). */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "raffle/data.h"

TestSuite(split);
TestSuite(prep);
TestSuite(augment);

/* A raw dataset whose sample i has label i % classes and pixels
 * i * 1000 + j, so where each sample went can be read off its pixels. */
static rf_dataset *tagged(int64_t n, int c, int h, int w, int classes) {
    rf_dataset *d = calloc(1, sizeof *d);
    size_t dim = (size_t)c * h * w;
    d->n = n; d->c = c; d->h = h; d->w = w; d->n_classes = classes;
    d->x = rf_malloc((size_t)n * dim * sizeof(float));
    d->y = rf_malloc((size_t)n * sizeof(int32_t));
    snprintf(d->name, sizeof d->name, "tagged");
    for (int i = 0; i < 4; i++) { d->mean[i] = 0; d->std[i] = 1; }
    for (int64_t i = 0; i < n; i++) {
        d->y[i] = (int32_t)(i % classes);
        for (size_t j = 0; j < dim; j++) d->x[(size_t)i * dim + j] = (float)(i * 1000 + (int64_t)j);
    }
    return d;
}
static void tagged_free(rf_dataset *d) { rf_free(d->x); rf_free(d->y); free(d); }
static int64_t tag_of(const rf_dataset *v, int64_t i) {
    return (int64_t)v->x[(size_t)i * v->c * v->h * v->w] / 1000;
}

/* ---- split ------------------------------------------------------------------ */

Test(split, indices_are_disjoint_cover_everything_and_are_sorted) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int64_t n = 1000;
    const int64_t nv[] = {0, 1, 137, 500, 999};
    for (size_t k = 0; k < sizeof nv / sizeof nv[0]; k++)
        for (uint64_t seed = 0; seed < 3; seed++) {
            uint32_t tr[1000], va[1000];
            cr_assert_eq(rf_data_split_indices(&ctx, n, nv[k], seed, tr, va), RF_OK);
            int seen[1000] = {0};
            for (int64_t i = 0; i < nv[k]; i++) { seen[va[i]]++; if (i) cr_assert_lt(va[i - 1], va[i]); }
            for (int64_t i = 0; i < n - nv[k]; i++) { seen[tr[i]]++; if (i) cr_assert_lt(tr[i - 1], tr[i]); }
            for (int i = 0; i < n; i++) cr_assert_eq(seen[i], 1, "index %d seen %d times (n_val %lld)", i, seen[i], (long long)nv[k]);
        }
}

Test(split, indices_are_deterministic_nested_and_seeded) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    uint32_t a[200], b[200], big[500], other[200];
    cr_assert_eq(rf_data_split_indices(&ctx, 5000, 200, 7, NULL, a), RF_OK);
    cr_assert_eq(rf_data_split_indices(&ctx, 5000, 200, 7, NULL, b), RF_OK);
    cr_assert_arr_eq(a, b, sizeof a);
    /* a smaller split is inside a larger one of the same seed */
    cr_assert_eq(rf_data_split_indices(&ctx, 5000, 500, 7, NULL, big), RF_OK);
    for (int i = 0, j = 0; i < 200; i++) {
        while (j < 500 && big[j] < a[i]) j++;
        cr_assert(j < 500 && big[j] == a[i], "%u of the 200-split is not in the 500-split", a[i]);
    }
    /* another seed holds out other samples (200 of 5000 twice: ~8 shared expected) */
    cr_assert_eq(rf_data_split_indices(&ctx, 5000, 200, 8, NULL, other), RF_OK);
    int shared = 0;
    for (int i = 0, j = 0; i < 200; i++) {
        while (j < 200 && other[j] < a[i]) j++;
        shared += j < 200 && other[j] == a[i];
    }
    cr_assert_lt(shared, 40);
    /* the held-out samples are spread over the whole range, not a block */
    cr_assert_lt(a[0], 500);
    cr_assert_gt(a[199], 4500);
}

Test(split, indices_do_not_depend_on_call_order) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    uint32_t s1[100], s2[100], t1[100], t2[100];
    cr_assert_eq(rf_data_split_indices(&ctx, 1000, 100, 1, NULL, s1), RF_OK);
    cr_assert_eq(rf_data_split_indices(&ctx, 1000, 100, 2, NULL, s2), RF_OK);
    /* other RNG users in between: a batcher's shuffle, augmentation draws */
    rf_dataset *d = tagged(64, 1, 2, 2, 3);
    rf_batcher b;
    cr_assert_eq(rf_batcher_init(&ctx, &b, d, 8, 1, 0, 1, 0), RF_OK);
    while (rf_batcher_next(&b, NULL, NULL, NULL)) {}
    rf_batcher_free(&b);
    int dy, dx, f;
    rf_augment a = {4, 1};
    rf_augment_draw(&a, 1, 0, 5, &dy, &dx, &f);
    cr_assert_eq(rf_data_split_indices(&ctx, 1000, 100, 2, NULL, t2), RF_OK);
    cr_assert_eq(rf_data_split_indices(&ctx, 1000, 100, 1, NULL, t1), RF_OK);
    cr_assert_arr_eq(s1, t1, sizeof s1);
    cr_assert_arr_eq(s2, t2, sizeof s2);
    tagged_free(d);
}

Test(split, bad_counts_are_rejected) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    uint32_t v[8];
    cr_assert_eq(rf_data_split_indices(&ctx, 8, 8, 0, NULL, v), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "at least one must stay"));
    cr_assert_eq(rf_data_split_indices(&ctx, 8, -1, 0, NULL, v), RF_ERR_INVALID);
    cr_assert_eq(rf_data_split_indices(&ctx, 0, 0, 0, NULL, v), RF_ERR_INVALID);
}

Test(split, dataset_split_moves_samples_with_their_labels_into_two_views) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const int64_t n = 301, nv = 57;
    rf_dataset *d = tagged(n, 3, 4, 5, 7);
    uint32_t tr[301], va[301];
    cr_assert_eq(rf_data_split_indices(&ctx, n, nv, 42, tr, va), RF_OK);
    rf_dataset t, v;
    float *x0 = d->x;
    cr_assert_eq(rf_dataset_split(&ctx, d, nv, 42, &t, &v), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(d->x, x0, "no new storage");
    cr_assert_eq(t.n, n - nv);
    cr_assert_eq(v.n, nv);
    cr_assert_eq(t.x, d->x);
    cr_assert_eq(v.x, d->x + (size_t)(n - nv) * 60);
    cr_assert_eq(v.y, d->y + (n - nv));
    cr_assert_eq(t.split, 0);
    cr_assert(d->split && d->split_val == nv && d->split_seed == 42);
    for (int64_t i = 0; i < t.n; i++) {
        cr_assert_eq(tag_of(&t, i), tr[i], "train %lld", (long long)i);
        cr_assert_eq(t.y[i], (int32_t)(tr[i] % 7));
        for (int j = 0; j < 60; j++) cr_assert_eq(t.x[i * 60 + j], (float)(tr[i] * 1000 + j));
    }
    for (int64_t i = 0; i < v.n; i++) {
        cr_assert_eq(tag_of(&v, i), va[i], "val %lld", (long long)i);
        cr_assert_eq(v.y[i], (int32_t)(va[i] % 7));
        for (int j = 0; j < 60; j++) cr_assert_eq(v.x[i * 60 + j], (float)(va[i] * 1000 + j));
    }
    /* the same split again only refills the views; another one is refused
     * and changes nothing */
    rf_dataset t2, v2;
    cr_assert_eq(rf_dataset_split(&ctx, d, nv, 42, &t2, &v2), RF_OK);
    cr_assert(t2.x == t.x && v2.x == v.x && t2.n == t.n && v2.n == v.n);
    cr_assert_eq(tag_of(&v2, 0), va[0]);
    cr_assert_eq(rf_dataset_split(&ctx, d, nv, 43, &t2, &v2), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "already holds out 57"), "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_dataset_split(&ctx, d, 10, 42, &t2, &v2), RF_ERR_INVALID);
    cr_assert_eq(tag_of(&v, 0), va[0]);
    tagged_free(d);
}

Test(split, split_of_zero_and_failures_leave_the_dataset_alone) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *d = tagged(50, 1, 2, 3, 5);
    rf_dataset t, v;
    cr_assert_eq(rf_dataset_split(&ctx, d, 0, 9, &t, &v), RF_OK);
    cr_assert_eq(t.n, 50); cr_assert_eq(v.n, 0);
    cr_assert_eq(d->split, 0);
    for (int64_t i = 0; i < 50; i++) cr_assert_eq(tag_of(d, i), i);
    cr_assert_eq(rf_dataset_split(&ctx, d, 50, 9, &t, &v), RF_ERR_INVALID);
    long live = rf_alloc_live();
    int ok = 0;
    for (long k = 0; k < 20 && !ok; k++) {
        rf_alloc_fail_after(k);
        rf_status s = rf_dataset_split(&ctx, d, 20, 9, &t, &v);
        rf_alloc_fail_after(-1);
        cr_assert_eq(rf_alloc_live(), live, "k=%ld leaked", k);
        if (s == RF_OK) { ok = 1; break; }
        cr_assert_eq(s, RF_ERR_NOMEM);
        cr_assert_eq(d->split, 0);
        for (int64_t i = 0; i < 50; i++) cr_assert_eq(tag_of(d, i), i, "k=%ld: sample %lld moved", k, (long long)i);
    }
    cr_assert(ok);
    cr_assert_eq(v.n, 20);
    tagged_free(d);
}

Test(split, validation_setting_count_or_fraction) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    int64_t k;
    cr_assert_eq(rf_data_validation_count(&ctx, 0, 1000, &k), RF_OK); cr_assert_eq(k, 0);
    cr_assert_eq(rf_data_validation_count(&ctx, 0.1, 1000, &k), RF_OK); cr_assert_eq(k, 100);
    cr_assert_eq(rf_data_validation_count(&ctx, 0.0001, 1000, &k), RF_OK); cr_assert_eq(k, 1);
    cr_assert_eq(rf_data_validation_count(&ctx, 5000, 60000, &k), RF_OK); cr_assert_eq(k, 5000);
    cr_assert_eq(rf_data_validation_count(&ctx, 1, 2, &k), RF_OK); cr_assert_eq(k, 1);
    const double bad[] = {-1, 2.5, NAN, INFINITY, 5000, 0.9999};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(rf_data_validation_count(&ctx, bad[i], i == 4 ? 5000 : 10, &k), RF_ERR_INVALID, "%g", bad[i]);
        cr_assert_eq(k, 0);
    }
    cr_assert_eq(rf_data_default_validation("cifar10:/d"), 5000);
    cr_assert_eq(rf_data_default_validation("cifar100-coarse"), 5000);
    cr_assert_eq(rf_data_default_validation("fashion-mnist"), 5000);
    cr_assert_eq(rf_data_default_validation("mnist"), 1000);
    cr_assert_eq(rf_data_default_validation("synthetic:100"), 0.1);
    cr_assert_eq(rf_data_default_validation("a.npy,b.npy,c.npy,d.npy"), 0.1);
}

/* ---- rf_data_open ----------------------------------------------------------------- */

static rf_data_opts opts(double validation, rf_norm_mode norm, int pad_to) {
    rf_data_opts o;
    rf_data_opts_default(&o);
    o.validation = validation;
    o.norm = norm;
    o.pad_to = pad_to;
    return o;
}

Test(prep, statistics_come_from_the_training_part_only) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_data_opts o = opts(50, RF_NORM_NONE, 0);
    rf_data_splits raw, sp;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:200:3", &o, &raw), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(raw.train.n, 150);
    cr_assert_eq(raw.val.n, 50);
    cr_assert_eq(raw.test->n, 50);
    cr_assert_eq(raw.train.mean[0], 0.0f);
    float mean[4], std[4], mall[4], sall[4];
    rf_dataset_channel_stats(&raw.train, mean, std);
    rf_dataset_channel_stats(raw.train_all, mall, sall);
    cr_assert_neq(mean[0], mall[0], "the held-out samples should shift the statistics");
    o.norm = RF_NORM_TRAIN;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:200:3", &o, &sp), RF_OK);
    cr_assert_eq(sp.train.mean[0], mean[0]);
    cr_assert_eq(sp.val.mean[0], mean[0]);
    cr_assert_eq(sp.test->mean[0], mean[0]);
    cr_assert_eq(sp.train_all->std[0], std[0]);
    float m2[4], s2[4];
    rf_dataset_channel_stats(&sp.train, m2, s2);
    cr_assert_float_eq(m2[0], 0.0f, 1e-5);
    cr_assert_float_eq(s2[0], 1.0f, 1e-5);
    /* same samples, same places: x = (raw - mean) / std */
    for (int64_t i = 0; i < 784 * 200; i += 331)
        cr_assert_float_eq(sp.train_all->x[i], (raw.train_all->x[i] - mean[0]) / std[0], 1e-6);
    for (int64_t i = 0; i < 784 * 50; i += 97)
        cr_assert_float_eq(sp.test->x[i], (raw.test->x[i] - mean[0]) / std[0], 1e-6);
    rf_data_splits_free(&raw);
    rf_data_splits_free(&sp);
    rf_data_splits_free(&sp);   /* freeing twice is harmless: zeroed */
}

Test(prep, without_validation_it_is_rf_data_load) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_data_opts o = opts(0, RF_NORM_TRAIN, 0);
    rf_data_splits sp;
    rf_dataset *tr, *te;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:120:5", &o, &sp), RF_OK);
    cr_assert_eq(rf_data_load(&ctx, "synthetic:120:5", &tr, &te), RF_OK);
    cr_assert_eq(sp.train.n, tr->n);
    cr_assert_eq(sp.val.n, 0);
    cr_assert_arr_eq(sp.train.x, tr->x, (size_t)tr->n * 784 * sizeof(float));
    cr_assert_arr_eq(sp.test->x, te->x, (size_t)te->n * 784 * sizeof(float));
    cr_assert_arr_eq(sp.train.y, tr->y, (size_t)tr->n * sizeof(int32_t));
    cr_assert_eq(sp.train.mean[0], tr->mean[0]);
    rf_dataset_free(tr); rf_dataset_free(te);
    rf_data_splits_free(&sp);
    /* the default split of synthetic is 10% */
    cr_assert_eq(rf_data_open(&ctx, "synthetic:120:5", NULL, &sp), RF_OK);
    cr_assert_eq(sp.val.n, 12);
    rf_data_splits_free(&sp);
}

Test(prep, given_or_no_normalisation) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_data_opts o = opts(0, RF_NORM_NONE, 0);
    rf_data_splits raw, sp;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:64:2", &o, &raw), RF_OK);
    cr_assert_eq(rf_data_norm_parse(&ctx, "0.5/0.25", &o), RF_OK);
    cr_assert_eq(o.norm, RF_NORM_GIVEN);
    cr_assert_eq(rf_data_open(&ctx, "synthetic:64:2", &o, &sp), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(sp.train.mean[0], 0.5f);
    cr_assert_eq(sp.train.std[0], 0.25f);
    for (int64_t i = 0; i < 64 * 784; i += 101)
        cr_assert_float_eq(sp.train.x[i], (raw.train.x[i] - 0.5f) / 0.25f, 1e-6);
    rf_data_splits_free(&sp);
    /* three channels' statistics for one-channel data */
    cr_assert_eq(rf_data_norm_parse(&ctx, "0.49,0.48,0.45/0.25,0.24,0.26", &o), RF_OK);
    cr_assert_eq(o.norm_channels, 3);
    cr_assert_eq(rf_data_open(&ctx, "synthetic:64:2", &o, &sp), RF_ERR_INVALID);
    cr_assert(strstr(rf_ctx_error(&ctx), "1 channel but statistics are given for 3"), "%s", rf_ctx_error(&ctx));
    cr_assert_null(sp.train_all);
    cr_assert_eq(rf_data_norm_parse(&ctx, "none", &o), RF_OK);
    cr_assert_eq(o.norm, RF_NORM_NONE);
    cr_assert_eq(rf_data_norm_parse(&ctx, "train", &o), RF_OK);
    cr_assert_eq(o.norm, RF_NORM_TRAIN);
    const char *bad[] = {"", "Train", "0.5", "0.5/", "/0.5", "0.5/0", "0.5/-1", "a/b", "0.1,0.2/0.3",
                         "1,2,3,4,5/1,1,1,1,1", "0.5,/0.5,", "0.5/nan", "0.5/0.25/1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.norm = RF_NORM_TRAIN;
        cr_assert_eq(rf_data_norm_parse(&ctx, bad[i], &o), RF_ERR_INVALID, "'%s' accepted", bad[i]);
        cr_assert_eq(o.norm, RF_NORM_TRAIN);
        cr_assert(strstr(rf_ctx_error(&ctx), "normalize"));
    }
    rf_data_splits_free(&raw);
}

Test(prep, pad_28_to_32_centres_and_fills_with_raw_black) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_data_opts o = opts(0, RF_NORM_NONE, 0);
    rf_data_splits raw, sp;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:40:4", &o, &raw), RF_OK);
    o.pad_to = 32;
    o.norm = RF_NORM_TRAIN;
    o.validation = 8;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:40:4", &o, &sp), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(sp.train.h, 32); cr_assert_eq(sp.train.w, 32);
    cr_assert_eq(sp.val.h, 32); cr_assert_eq(sp.test->w, 32);
    cr_assert_eq(sp.train.n + sp.val.n, 40);
    const float m = sp.train.mean[0], s = sp.train.std[0];
    /* test samples are not reordered: compare with the raw 28x28 ones */
    for (int64_t i = 0; i < sp.test->n; i++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                float got = sp.test->x[i * 1024 + y * 32 + x] * s + m;
                int in = y >= 2 && y < 30 && x >= 2 && x < 30;
                float want = in ? raw.test->x[i * 784 + (y - 2) * 28 + (x - 2)] : 0.0f;
                cr_assert_float_eq(got, want, 1e-5, "sample %lld (%d,%d)", (long long)i, y, x);
            }
    rf_data_splits_free(&raw);
    rf_data_splits_free(&sp);
    o.pad_to = 20;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:40:4", &o, &sp), RF_ERR_SHAPE);
    cr_assert(strstr(rf_ctx_error(&ctx), "cannot pad 28x28 samples to 20x20"), "%s", rf_ctx_error(&ctx));
}

Test(prep, pad_places_odd_extra_bottom_right_and_keeps_metadata) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *d = tagged(2, 2, 2, 3, 2);
    d->mean[0] = 0.5f; d->std[0] = 0.25f;   /* as if normalised: raw 0 is -2 */
    d->mean[1] = -1.0f; d->std[1] = 2.0f;   /* raw 0 is 0.5 */
    rf_dataset *p;
    cr_assert_eq(rf_dataset_pad(&ctx, d, 5, 6, &p), RF_OK);
    cr_assert_eq(p->h, 5); cr_assert_eq(p->w, 6); cr_assert_eq(p->n_classes, 2);
    cr_assert_eq(p->mean[1], -1.0f);
    /* top = (5-2)/2 = 1, left = (6-3)/2 = 1: rows 1-2, cols 1-3 hold the image */
    for (int i = 0; i < 2; i++)
        for (int ch = 0; ch < 2; ch++)
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 6; x++) {
                    float got = p->x[((i * 2 + ch) * 5 + y) * 6 + x];
                    int in = y >= 1 && y <= 2 && x >= 1 && x <= 3;
                    float want = in ? (float)(i * 1000 + ch * 6 + (y - 1) * 3 + (x - 1)) : (ch ? 0.5f : -2.0f);
                    cr_assert_eq(got, want, "i%d c%d (%d,%d)", i, ch, y, x);
                }
    rf_dataset_free(p);
    cr_assert_eq(rf_dataset_pad(&ctx, d, 1, 6, &p), RF_ERR_SHAPE);
    tagged_free(d);
}

/* ---- augmentation ------------------------------------------------------------------ */

static float frand(uint32_t *s) { *s = *s * 1664525u + 1013904223u; return (float)(*s >> 8) / 16777216.0f - 0.5f; }

Test(augment, kernel_matches_the_per_pixel_definition) {
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {2, 8, 3}, {3, 32, 32}, {1, 28, 28}, {4, 2, 9}};
    const int pads[] = {0, 1, 3, 4, 9};
    uint32_t seed = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int c = shapes[s][0], h = shapes[s][1], w = shapes[s][2];
        size_t n = (size_t)c * h * w;
        float *in = malloc(n * sizeof *in), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        float fill[4] = {-1.5f, 2.0f, 0.25f, -0.75f};
        for (size_t i = 0; i < n; i++) in[i] = frand(&seed);
        for (size_t k = 0; k < sizeof pads / sizeof pads[0]; k++) {
            int p = pads[k];
            for (int dy = 0; dy <= 2 * p; dy++)
                for (int dx = 0; dx <= 2 * p; dx++)
                    for (int f = 0; f < 2; f++) {
                        memset(a, 0xff, n * sizeof *a);
                        memset(b, 0xee, n * sizeof *b);
                        rf_augment_crop_flip(in, c, h, w, fill, p, dy, dx, f, a);
                        rf_augment_crop_flip_ref(in, c, h, w, fill, p, dy, dx, f, b);
                        cr_assert_arr_eq(a, b, n * sizeof *a, "%dx%dx%d pad %d dy %d dx %d flip %d", c, h, w, p, dy, dx, f);
                    }
        }
        free(in); free(a); free(b);
    }
}

Test(augment, hand_computed_crops_and_flips) {
    const float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, F = -9.0f;
    const float fill[1] = {F};
    float out[9];
    /* dy = dx = pad, no flip: identity */
    rf_augment_crop_flip(in, 1, 3, 3, fill, 1, 1, 1, 0, out);
    cr_assert_arr_eq(out, in, sizeof in);
    /* flip only */
    const float flipped[9] = {3, 2, 1, 6, 5, 4, 9, 8, 7};
    rf_augment_crop_flip(in, 1, 3, 3, fill, 1, 1, 1, 1, out);
    cr_assert_arr_eq(out, flipped, sizeof out);
    /* crop from the top-right of the padded image: out[y][x] = in[y-1][x+1] */
    const float shifted[9] = {F, F, F, 2, 3, F, 5, 6, F};
    rf_augment_crop_flip(in, 1, 3, 3, fill, 1, 0, 2, 0, out);
    cr_assert_arr_eq(out, shifted, sizeof out);
    /* the same crop, then flipped (torchvision order: crop, then flip) */
    const float shifted_flipped[9] = {F, F, F, F, 3, 2, F, 6, 5};
    rf_augment_crop_flip(in, 1, 3, 3, fill, 1, 0, 2, 1, out);
    cr_assert_arr_eq(out, shifted_flipped, sizeof out);
    /* padding wider than the image: all fill */
    rf_augment_crop_flip(in, 1, 3, 3, fill, 4, 0, 0, 0, out);
    for (int i = 0; i < 9; i++) cr_assert_eq(out[i], F);
}

Test(augment, draws_are_uniform_and_a_pure_function_of_seed_epoch_index) {
    rf_augment a = {4, 1};
    int counts[9][9][2];
    memset(counts, 0, sizeof counts);
    const int N = 81 * 2 * 400;
    for (int i = 0; i < N; i++) {
        int dy, dx, f;
        rf_augment_draw(&a, 11, 3, i, &dy, &dx, &f);
        cr_assert(dy >= 0 && dy <= 8 && dx >= 0 && dx <= 8 && (f == 0 || f == 1));
        counts[dy][dx][f]++;
    }
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++)
            for (int f = 0; f < 2; f++)   /* expected 400, sd 20 */
                cr_assert(counts[y][x][f] > 300 && counts[y][x][f] < 500, "(%d,%d,%d): %d", y, x, f, counts[y][x][f]);
    /* pure: same arguments, same draws, in any order */
    int d1[3], d2[3], e[3];
    rf_augment_draw(&a, 11, 3, 77, &d1[0], &d1[1], &d1[2]);
    rf_augment_draw(&a, 11, 4, 77, &e[0], &e[1], &e[2]);
    rf_augment_draw(&a, 12, 3, 77, &e[0], &e[1], &e[2]);
    rf_augment_draw(&a, 11, 3, 77, &d2[0], &d2[1], &d2[2]);
    cr_assert_arr_eq(d1, d2, sizeof d1);
    /* epoch and seed change the draws */
    int diff_epoch = 0, diff_seed = 0;
    for (int i = 0; i < 200; i++) {
        int p[3], q[3], r[3];
        rf_augment_draw(&a, 11, 3, i, &p[0], &p[1], &p[2]);
        rf_augment_draw(&a, 11, 5, i, &q[0], &q[1], &q[2]);
        rf_augment_draw(&a, 99, 3, i, &r[0], &r[1], &r[2]);
        diff_epoch += memcmp(p, q, sizeof p) != 0;
        diff_seed += memcmp(p, r, sizeof p) != 0;
    }
    cr_assert_gt(diff_epoch, 180);
    cr_assert_gt(diff_seed, 180);
    /* options off: no offsets, no flips */
    rf_augment none = {0, 0}, flip_only = {0, 1};
    int flips = 0;
    for (int i = 0; i < 100; i++) {
        int dy, dx, f;
        rf_augment_draw(&none, 1, 0, i, &dy, &dx, &f);
        cr_assert(dy == 0 && dx == 0 && f == 0);
        rf_augment_draw(&flip_only, 1, 0, i, &dy, &dx, &f);
        cr_assert(dy == 0 && dx == 0);
        flips += f;
    }
    cr_assert(flips > 25 && flips < 75);
}

/* What a batcher with augmentation gives for one epoch, as [n, d] in the
 * batcher's order, and the order. */
static void epoch_batches(const rf_dataset *d, int batch, const rf_augment *a, uint64_t seed, int64_t epoch,
                          float *out, int64_t *order) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_batcher b;
    cr_assert_eq(rf_batcher_init(&ctx, &b, d, batch, seed, epoch, 1, 0), RF_OK);
    cr_assert_eq(rf_batcher_set_augment(&ctx, &b, a), RF_OK);
    size_t dim = (size_t)d->c * d->h * d->w;
    int64_t at = 0;
    int k;
    while ((k = rf_batcher_next(&b, out + (size_t)at * dim, NULL, order + at)) > 0) at += k;
    cr_assert_eq(at, d->n);
    rf_batcher_free(&b);
}

typedef struct job { const rf_augment *a; const rf_dataset *d; const int64_t *idx; int64_t lo, hi; float *out; } job;
static void *run_job(void *p) {
    job *j = p;
    size_t dim = (size_t)j->d->c * j->d->h * j->d->w;
    for (int64_t i = j->lo; i < j->hi; i++) rf_augment_sample(j->a, j->d, 5, 2, j->idx[i], j->out + (size_t)i * dim);
    return NULL;
}

Test(augment, batches_are_the_same_bytes_for_any_batch_size_or_thread_split) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_data_opts o = opts(0, RF_NORM_TRAIN, 32);
    rf_data_splits sp;
    cr_assert_eq(rf_data_open(&ctx, "synthetic:96:1", &o, &sp), RF_OK);
    const rf_dataset *d = &sp.train;
    const size_t dim = 1024, n = (size_t)d->n;
    rf_augment a;
    cr_assert_eq(rf_augment_parse(&ctx, "crop+flip", &a), RF_OK);
    float *b32 = malloc(n * dim * sizeof(float)), *b7 = malloc(n * dim * sizeof(float)), *thr = malloc(n * dim * sizeof(float));
    int64_t *o32 = malloc(n * sizeof(int64_t)), *o7 = malloc(n * sizeof(int64_t));
    epoch_batches(d, 32, &a, 5, 2, b32, o32);
    epoch_batches(d, 7, &a, 5, 2, b7, o7);
    cr_assert_arr_eq(o32, o7, n * sizeof(int64_t));   /* the order does not depend on the batch size */
    cr_assert_arr_eq(b32, b7, n * dim * sizeof(float));
    /* two threads, each half the samples */
    pthread_t t[2];
    job jobs[2] = {{&a, d, o32, 0, (int64_t)n / 3, thr}, {&a, d, o32, (int64_t)n / 3, (int64_t)n, thr}};
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&t[i], NULL, run_job, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    cr_assert_arr_eq(b32, thr, n * dim * sizeof(float));
    /* augmentation changes most samples, and only by cropping and flipping:
     * the padding is raw black */
    int changed = 0;
    const float black = -d->mean[0] / d->std[0];
    for (size_t i = 0; i < n; i++) {
        changed += memcmp(b32 + i * dim, d->x + (size_t)o32[i] * dim, dim * sizeof(float)) != 0;
        int dy, dx, f;
        rf_augment_draw(&a, 5, 2, o32[i], &dy, &dx, &f);
        if (dy == 0) for (int x = 0; x < 32; x++) cr_assert_eq(b32[i * dim + x], black);   /* top 4 rows padded */
    }
    cr_assert_gt(changed, (int)n * 8 / 10);
    /* another epoch, other crops */
    epoch_batches(d, 32, &a, 5, 3, b7, o7);
    int64_t same = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (o7[j] == o32[i]) same += memcmp(b32 + i * dim, b7 + j * dim, dim * sizeof(float)) == 0;
    cr_assert_lt(same, (int64_t)n / 4);
    /* no augmentation: the batcher copies */
    rf_augment none = {0, 0};
    epoch_batches(d, 32, &none, 5, 2, b7, o7);
    for (size_t i = 0; i < n; i++) cr_assert_arr_eq(b7 + i * dim, d->x + (size_t)o7[i] * dim, dim * sizeof(float));
    rf_batcher b;
    cr_assert_eq(rf_batcher_init(&ctx, &b, d, 8, 1, 0, 1, 0), RF_OK);
    rf_augment bad = {RF_AUGMENT_MAX_PAD + 1, 0};
    cr_assert_eq(rf_batcher_set_augment(&ctx, &b, &bad), RF_ERR_INVALID);
    rf_batcher_free(&b);
    free(b32); free(b7); free(thr); free(o32); free(o7);
    rf_data_splits_free(&sp);
}

Test(augment, setting_text_parses_and_round_trips) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    struct { const char *text; int pad, flip; const char *canon; } ok[] = {
        {"none", 0, 0, "none"}, {"crop", 4, 0, "crop"}, {"flip", 0, 1, "flip"}, {"crop+flip", 4, 1, "crop+flip"},
        {"flip+crop", 4, 1, "crop+flip"}, {"crop:2+flip", 2, 1, "crop:2+flip"}, {"crop:16", 16, 0, "crop:16"},
        {"crop:4", 4, 0, "crop"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        rf_augment a = {-1, -1};
        cr_assert_eq(rf_augment_parse(&ctx, ok[i].text, &a), RF_OK, "%s: %s", ok[i].text, rf_ctx_error(&ctx));
        cr_assert(a.crop_pad == ok[i].pad && a.flip == ok[i].flip, "%s", ok[i].text);
        char buf[32];
        rf_augment_format(&a, buf, sizeof buf);
        cr_assert_str_eq(buf, ok[i].canon);
        cr_assert_eq(rf_augment_active(&a), strcmp(ok[i].text, "none") != 0);
    }
    const char *bad[] = {"", "crop+crop", "crop:0", "crop:17", "crop:", "blur", "crop+", "+flip", "crop:4x",
                         "cropflip", "flip:2", "crop:99999999999", "None", "crop+none"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rf_augment a = {7, 7};
        cr_assert_eq(rf_augment_parse(&ctx, bad[i], &a), RF_ERR_INVALID, "'%s' accepted", bad[i]);
        cr_assert(a.crop_pad == 7 && a.flip == 7, "'%s' changed the output", bad[i]);
        cr_assert(strstr(rf_ctx_error(&ctx), "augment"));
    }
}
