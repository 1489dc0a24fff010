/* Pruning: every method's mask against hand-computed masks on tiny tensors,
 * exact counts, tie-breaking, scopes, output rate, iterative pruning, the GMP
 * schedule, layer collapse; and, through the engine, SynFlow against a hand
 * computation, rewinding, checkpoint round-trips and masked training. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raffle/distill.h"
#include "raffle/prune.h"
#include "raffle/task.h"

static void ones(float *m, size_t n) { for (size_t i = 0; i < n; i++) m[i] = 1.0f; }

static void expect_mask(const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "mask[%zu] = %g, expected %g", i, got[i], want[i]);
}

/* Two tensors A = [0..4), B = [4..6) over w = {0.5,-0.1,0.3,-0.7,0.2,0.05}. */
static const float W6[6] = {0.5f, -0.1f, 0.3f, -0.7f, 0.2f, 0.05f};
static const rf_prune_item ITEMS2[2] = {
    {"a.weight", 0, 4, 0, -1.0}, {"b.weight", 4, 2, 1, -1.0},
};

Test(prune, magnitude_layer_scope) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float sc[6], mask[6];
    rf_prune_score_magnitude(W6, 6, sc);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(sc[i], fabsf(W6[i]), 0.0f);
    ones(mask, 6);
    rf_prune_plan plan = {RF_SCOPE_LAYER, 0.5, -1.0, 0, 0};
    size_t np = 0;
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &plan, &np), RF_OK, "%s", ctx.err);
    /* A: 2 of 4 lowest |w| are -0.1 (1) and 0.3 (2); B: 1 of 2, 0.05 (5). */
    const float want[6] = {1, 0, 0, 1, 1, 0};
    expect_mask(mask, want, 6);
    cr_assert_eq(np, 3);
}

Test(prune, magnitude_global_scope) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float sc[6], mask[6];
    rf_prune_score_magnitude(W6, 6, sc);
    ones(mask, 6);
    rf_prune_plan plan = {RF_SCOPE_GLOBAL, 0.5, -1.0, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &plan, NULL), RF_OK);
    /* 3 of 6 lowest overall: 0.05 (5), 0.1 (1), 0.2 (4): B loses both. */
    const float want[6] = {1, 0, 1, 1, 0, 0};
    expect_mask(mask, want, 6);
}

Test(prune, output_layer_rate_global_and_layer) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float sc[6], mask[6];
    rf_prune_score_magnitude(W6, 6, sc);
    /* Global at 0.5 with the output (B) at 0: A ranked alone -> 2 pruned. */
    ones(mask, 6);
    rf_prune_plan plan = {RF_SCOPE_GLOBAL, 0.5, 0.0, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &plan, NULL), RF_OK);
    const float want1[6] = {1, 0, 0, 1, 1, 1};
    expect_mask(mask, want1, 6);
    /* Layer scope, A at 0.25 (1 weight), output at 1.0 (both). */
    ones(mask, 6);
    rf_prune_plan plan2 = {RF_SCOPE_LAYER, 0.25, 1.0, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &plan2, NULL), RF_OK);
    const float want2[6] = {1, 0, 1, 1, 0, 0};
    expect_mask(mask, want2, 6);
    /* A per-item rate overrides the plan. */
    rf_prune_item it[2] = {ITEMS2[0], ITEMS2[1]};
    it[0].rate = 0.75;
    ones(mask, 6);
    cr_assert_eq(rf_prune_select(&ctx, it, 2, sc, mask, &plan2, NULL), RF_OK);
    const float want3[6] = {0, 0, 0, 1, 0, 0};
    expect_mask(mask, want3, 6);
}

Test(prune, ties_broken_by_index) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float sc[5] = {1, 1, 1, 1, 1}, mask[5];
    rf_prune_item it = {"t", 0, 5, 0, -1};
    ones(mask, 5);
    rf_prune_plan low = {RF_SCOPE_LAYER, 0.4, -1, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &low, NULL), RF_OK);
    const float want[5] = {0, 0, 1, 1, 1};
    expect_mask(mask, want, 5);
    /* Highest-first (GraSP) breaks ties by index as well. */
    float sc2[5] = {2, 3, 3, 1, 3};
    ones(mask, 5);
    rf_prune_plan high = {RF_SCOPE_LAYER, 0.4, -1, 0, 1};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc2, mask, &high, NULL), RF_OK);
    const float want2[5] = {1, 0, 0, 1, 1};
    expect_mask(mask, want2, 5);
}

Test(prune, exact_counts_awkward_sizes) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    const double rates[] = {0.0, 0.1, 0.2, 0.5, 0.9, 0.99, 0.999, 1.0};
    float *sc = malloc(1031 * sizeof *sc), *mask = malloc(1031 * sizeof *mask);
    for (size_t n = 1; n <= 1031; n += (n < 40 ? 1 : 97)) {
        rf_prune_score_random(7, n, n, sc);
        for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
            ones(mask, n);
            rf_prune_item it = {"t", 0, n, 0, -1};
            rf_prune_plan plan = {RF_SCOPE_LAYER, rates[r], -1, 0, 0};
            cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &plan, NULL), RF_OK);
            size_t pruned = 0, total = 0;
            rf_prune_count(&it, 1, mask, &pruned, &total);
            size_t want = (size_t)floor(rates[r] * (double)n + 0.5);
            cr_assert_eq(pruned, want, "n=%zu rate=%g: pruned %zu, want %zu", n, rates[r], pruned, want);
            /* every pruned score <= every kept score */
            float maxp = -1, mink = 2;
            for (size_t i = 0; i < n; i++) {
                if (mask[i] == 0) maxp = fmaxf(maxp, sc[i]); else mink = fminf(mink, sc[i]);
            }
            cr_assert(maxp <= mink);
        }
    }
    free(sc); free(mask);
}

Test(prune, iterative_prunes_remaining) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float sc[10], mask[10];
    for (int i = 0; i < 10; i++) sc[i] = (float)(10 - i);   /* index 9 lowest */
    rf_prune_item it = {"t", 0, 10, 0, -1};
    ones(mask, 10);
    rf_prune_plan p = {RF_SCOPE_LAYER, 0.2, -1, 1, 0};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &p, NULL), RF_OK);
    const float w1[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    expect_mask(mask, w1, 10);
    /* Second round: 20% of the 8 remaining = round(1.6) = 2 more. Pruned
     * entries are not revived even when their scores are now the highest. */
    sc[8] = sc[9] = 100;
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &p, NULL), RF_OK);
    const float w2[10] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    expect_mask(mask, w2, 10);
    /* Absolute target 0.5 counts the 4 already pruned: exactly 1 more. */
    rf_prune_plan a = {RF_SCOPE_LAYER, 0.5, -1, 0, 0};
    size_t np = 0;
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &a, &np), RF_OK);
    cr_assert_eq(np, 1);
    const float w3[10] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    expect_mask(mask, w3, 10);
    /* A target below the current sparsity prunes nothing and revives nothing. */
    rf_prune_plan lower = {RF_SCOPE_LAYER, 0.1, -1, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &lower, &np), RF_OK);
    cr_assert_eq(np, 0);
    expect_mask(mask, w3, 10);
}

Test(prune, obd_with_given_hessian_diagonal) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* ½·h·w²: {0.5·4·1, 0.5·0.5·4, 0.5·100·0.01, 0.5·1·9} = {2, 1, 0.5, 4.5}.
     * Magnitude would prune index 2 (w=0.1) and 0 (w=1); OBD prunes 2 and 1. */
    const float w[4] = {1.0f, -2.0f, 0.1f, 3.0f}, h[4] = {4.0f, 0.5f, 100.0f, 1.0f};
    float sc[4], mask[4];
    rf_prune_score_obd(w, h, 4, sc);
    const float want_sc[4] = {2.0f, 1.0f, 0.5f, 4.5f};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(sc[i], want_sc[i], 1e-6f);
    ones(mask, 4);
    rf_prune_item it = {"t", 0, 4, 0, -1};
    rf_prune_plan p = {RF_SCOPE_LAYER, 0.5, -1, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &p, NULL), RF_OK);
    const float want[4] = {1, 0, 0, 1};
    expect_mask(mask, want, 4);
}

Test(prune, snip_with_given_gradients) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* |g·w| = {0.2, 0.6, 0.05, 0.3}: keep the two connections with the largest
     * effect on the loss, 1 and 3. */
    const float w[4] = {0.5f, -0.3f, 0.5f, 0.1f}, g[4] = {-0.4f, -2.0f, 0.1f, 3.0f};
    float sc[4], mask[4];
    rf_prune_score_snip(w, g, 4, sc);
    const float want_sc[4] = {0.2f, 0.6f, 0.05f, 0.3f};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(sc[i], want_sc[i], 1e-6f);
    ones(mask, 4);
    rf_prune_item it = {"t", 0, 4, 0, -1};
    rf_prune_plan p = {RF_SCOPE_LAYER, 0.5, -1, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &p, NULL), RF_OK);
    const float want[4] = {0, 1, 0, 1};
    expect_mask(mask, want, 4);
}

Test(prune, grasp_prunes_highest) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    /* −w·Hg = {-0.5, 0.6, 0.4, -0.1}: prune the two highest, 1 and 2. */
    const float w[4] = {1.0f, 2.0f, -1.0f, 0.5f}, hg[4] = {0.5f, -0.3f, 0.4f, 0.2f};
    float sc[4], mask[4];
    rf_prune_score_grasp(w, hg, 4, sc);
    ones(mask, 4);
    rf_prune_item it = {"t", 0, 4, 0, -1};
    rf_prune_plan p = {RF_SCOPE_LAYER, 0.5, -1, 0, rf_prune_method_prunes_highest(RF_PRUNE_GRASP)};
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, sc, mask, &p, NULL), RF_OK);
    const float want[4] = {1, 0, 0, 1};
    expect_mask(mask, want, 4);
}

Test(prune, random_is_deterministic_and_exact) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    enum { N = 257 };
    float a[N], b[N], c[N], ma[N], mb[N], mc[N];
    rf_prune_score_random(42, 3, N, a);
    rf_prune_score_random(42, 3, N, b);
    rf_prune_score_random(43, 3, N, c);
    rf_prune_item it = {"t", 0, N, 0, -1};
    rf_prune_plan p = {RF_SCOPE_LAYER, 0.7, -1, 0, 0};
    ones(ma, N); ones(mb, N); ones(mc, N);
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, a, ma, &p, NULL), RF_OK);
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, b, mb, &p, NULL), RF_OK);
    cr_assert_eq(rf_prune_select(&ctx, &it, 1, c, mc, &p, NULL), RF_OK);
    cr_assert_eq(memcmp(ma, mb, sizeof ma), 0);
    cr_assert_neq(memcmp(ma, mc, sizeof ma), 0);
    size_t pruned; rf_prune_count(&it, 1, ma, &pruned, NULL);
    cr_assert_eq(pruned, 180);   /* round(0.7 · 257 = 179.9) */
    /* The scores are the Philox stream itself. */
    rf_rng r; rf_rng_init(&r, 42, 3);
    for (int i = 0; i < N; i++) cr_assert_eq(a[i], rf_rng_uniform(&r));
}

Test(prune, random_like_keeps_per_tensor_counts) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float mask[6] = {1, 0, 0, 1, 1, 0}, orig[6];
    memcpy(orig, mask, sizeof mask);
    cr_assert_eq(rf_prune_random_like(&ctx, ITEMS2, 2, mask, 9, 1), RF_OK);
    size_t pa, pb;
    rf_prune_count(&ITEMS2[0], 1, mask, &pa, NULL);
    rf_prune_count(&ITEMS2[1], 1, mask, &pb, NULL);
    cr_assert_eq(pa, 2); cr_assert_eq(pb, 1);
    float again[6];
    memcpy(again, orig, sizeof orig);
    cr_assert_eq(rf_prune_random_like(&ctx, ITEMS2, 2, again, 9, 1), RF_OK);
    cr_assert_eq(memcmp(again, mask, sizeof mask), 0);
}

Test(prune, rejects_bad_input) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float sc[6] = {0}, mask[6];
    ones(mask, 6);
    rf_prune_plan p = {RF_SCOPE_LAYER, 1.5, -1, 0, 0};
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &p, NULL), RF_ERR_INVALID);
    p.sparsity = -0.1;
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &p, NULL), RF_ERR_INVALID);
    p.sparsity = 0.5;
    sc[2] = NAN;
    cr_assert_eq(rf_prune_select(&ctx, ITEMS2, 2, sc, mask, &p, NULL), RF_ERR_NAN);
    sc[2] = 0;
    rf_prune_item ov[2] = {{"a", 0, 4, 0, -1}, {"b", 3, 3, 0, -1}};
    cr_assert_eq(rf_prune_select(&ctx, ov, 2, sc, mask, &p, NULL), RF_ERR_INVALID);
    for (int i = 0; i < 6; i++) cr_assert_eq(mask[i], 1.0f);
}

Test(prune, names_and_rewind_parse) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    for (int m = 0; m < rf_prune_method_count(); m++) {
        cr_assert_eq(rf_prune_method_from_name(rf_prune_method_name(m)), m);
        const rf_prune_method_desc *d = rf_prune_method_get(m);
        cr_assert(d->score != NULL, "%s has no score", d->name);
        cr_assert(d->flags & (RF_PM_LAYER | RF_PM_GLOBAL), "%s supports no scope", d->name);
    }
    /* the enum names table positions */
    static const char *const named[] = {"magnitude", "random", "obd", "snip", "grasp", "synflow"};
    for (int m = 0; m < 6; m++) cr_assert_str_eq(rf_prune_method_name(m), named[m]);
    cr_assert_null(rf_prune_method_get(rf_prune_method_count()));
    cr_assert_eq(rf_prune_method_from_name("l1"), -1);
    cr_assert_eq(rf_prune_scope_from_name("global"), RF_SCOPE_GLOBAL);
    cr_assert_eq(rf_prune_scope_from_name("net"), -1);
    rf_rewind_kind k; int64_t step;
    cr_assert_eq(rf_rewind_parse(&ctx, "init", &k, &step), RF_OK); cr_assert_eq(k, RF_REWIND_INIT);
    cr_assert_eq(rf_rewind_parse(&ctx, "lr", &k, &step), RF_OK); cr_assert_eq(k, RF_REWIND_LR);
    cr_assert_eq(rf_rewind_parse(&ctx, "step:500", &k, &step), RF_OK);
    cr_assert_eq(k, RF_REWIND_STEP); cr_assert_eq(step, 500);
    cr_assert_eq(rf_rewind_parse(&ctx, "step:", &k, &step), RF_ERR_INVALID);
    cr_assert_eq(rf_rewind_parse(&ctx, "step:-3", &k, &step), RF_ERR_INVALID);
    cr_assert_eq(rf_rewind_parse(&ctx, "step:2x", &k, &step), RF_ERR_INVALID);
    cr_assert_eq(rf_rewind_parse(&ctx, "late", &k, &step), RF_ERR_INVALID);
}

Test(prune, gmp_schedule_values) {
    /* Zhu & Gupta 2017 eq. 1 with s_i = 0, s_f = 0.9, t0 = 100, nΔt = 1000, Δt = 100. */
    rf_gmp_schedule s = {0.0, 0.9, 100, 1100, 100};
    cr_assert_float_eq(rf_gmp_sparsity(&s, 0), 0.0, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 100), 0.0, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 199), 0.0, 1e-12);          /* holds until the next update */
    cr_assert_float_eq(rf_gmp_sparsity(&s, 200), 0.9 - 0.9 * 0.729, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 600), 0.9 - 0.9 * 0.125, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 650), 0.9 - 0.9 * 0.125, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 1100), 0.9, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 99999), 0.9, 1e-12);
    cr_assert(rf_gmp_is_update_step(&s, 100));
    cr_assert(rf_gmp_is_update_step(&s, 600));
    cr_assert(!rf_gmp_is_update_step(&s, 650));
    cr_assert(!rf_gmp_is_update_step(&s, 99));
    cr_assert(!rf_gmp_is_update_step(&s, 1200));
    /* Non-zero initial sparsity and a span that is not a multiple of Δt. */
    rf_gmp_schedule u = {0.5, 0.8, 0, 10, 4};
    cr_assert_float_eq(rf_gmp_sparsity(&u, 4), 0.8 - 0.3 * 0.216, 1e-12);
    cr_assert_float_eq(rf_gmp_sparsity(&u, 9), 0.8 - 0.3 * 0.008, 1e-12);
    cr_assert(rf_gmp_is_update_step(&u, 10));
    cr_assert_float_eq(rf_gmp_sparsity(&u, 10), 0.8, 1e-12);
    /* Monotone non-decreasing. */
    double prev = -1;
    for (int64_t t = 0; t < 1300; t++) { double v = rf_gmp_sparsity(&s, t); cr_assert(v >= prev); prev = v; }
}

/* The schedule of a run from fractions (the gmp kind's prune_start,
 * prune_end, prune_every), against eq. 1 worked by hand. s_i = 0.2,
 * s_f = 0.9, 1000 steps, t0 = 100, end 600, Δt = 100 (n = 5):
 *   t = 200: 0.9 − 0.7·0.8³ = 0.5416;  300: 0.9 − 0.7·0.6³ = 0.7488;
 *   400: 0.9 − 0.7·0.4³ = 0.8552;       500: 0.9 − 0.7·0.2³ = 0.8944. */
Test(prune, gmp_schedule_for_run_hand_values) {
    rf_gmp_schedule s;
    rf_gmp_schedule_for_run(0.2, 0.9, 1000, 0.1, 0.6, 0.1, &s);
    cr_assert(s.start == 100 && s.end == 600 && s.every == 100, "%lld %lld %lld", (long long)s.start, (long long)s.end,
              (long long)s.every);
    cr_assert(!rf_gmp_is_update_step(&s, 0) && !rf_gmp_is_update_step(&s, 99), "dense before t0");
    cr_assert(rf_gmp_is_update_step(&s, 100));
    const int64_t t[] = {100, 199, 200, 300, 400, 450, 500, 600, 999};
    const double want[] = {0.2, 0.2, 0.5416, 0.7488, 0.8552, 0.8552, 0.8944, 0.9, 0.9};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cr_assert_float_eq(rf_gmp_sparsity(&s, t[i]), want[i], 1e-12, "step %lld: %.17g", (long long)t[i], rf_gmp_sparsity(&s, t[i]));
    /* 100 steps, t0 = 5, target at 50, Δt = 10: the span 45 rounds down to
     * 4 intervals (end 45, reached on an update step); step 15: (15 − 5)/40
     * = 0.25 of the span, s = 0.8·(1 − 0.75³) = 0.4625 */
    rf_gmp_schedule_for_run(0.0, 0.8, 100, 0.05, 0.5, 0.1, &s);
    cr_assert(s.start == 5 && s.end == 45 && s.every == 10);
    cr_assert_float_eq(rf_gmp_sparsity(&s, 15), 0.8 * (1 - 0.421875), 1e-12);
    cr_assert(rf_gmp_is_update_step(&s, 45) && !rf_gmp_is_update_step(&s, 50));
    /* start 0 is the OFA schedule (the one the gmp kind had before t0) */
    rf_gmp_schedule o;
    rf_ofa_gmp_schedule(0.9, 1234, 0.5, 0.05, &o);
    rf_gmp_schedule_for_run(0.0, 0.9, 1234, 0.0, 0.5, 0.05, &s);
    cr_assert(o.start == s.start && o.end == s.end && o.every == s.every && o.s_init == s.s_init);
}

/* rf_model_collapsed (nn.h) on model with these masks on its weights, in order. */
static void collapse_of(const char *spec, float *const *masks, int n, int *col) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, spec, &m), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    unsigned char c[16];
    int k = 0;
    for (int t = 0; t < m->n_ptensors && k < n; t++)
        if (m->ptensors[t].prunable) memcpy(m->masks + m->ptensors[t].offset, masks[k++], m->ptensors[t].numel * sizeof(float));
    cr_assert_eq(rf_model_collapsed(&ctx, m, m->masks, c), RF_OK);
    k = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].n_params) col[k++] = c[l];
    rf_model_free(m);
}

Test(prune, collapse_on_hand_made_masks) {
    /* 3 -> 2 -> 2 -> 1. Stage 1 keeps only 0->0 connections into hidden unit
     * 0 of stage 2, which stage 2 only connects from input unit 1: no path.
     * Stage 0 still has weights but none on a path either. */
    const char *chain = "{\"input\":[3],\"layers\":[{\"type\":\"linear\",\"out\":2,\"bias\":0},{\"type\":\"relu\"},"
                        "{\"type\":\"linear\",\"out\":2,\"bias\":0},{\"type\":\"linear\",\"out\":1,\"bias\":0}]}";
    float m0[2 * 3] = {1, 0, 0,  0, 0, 0};
    float m1[2 * 2] = {1, 0,  0, 0};
    float m2[1 * 2] = {0, 1};
    float *st[3] = {m0, m1, m2};
    int col[3];
    collapse_of(chain, st, 3, col);
    cr_assert_eq(col[0], 1); cr_assert_eq(col[1], 1); cr_assert_eq(col[2], 1);
    /* Add 0->1 in stage 1 (row 1, col 0): now input 0 -> h0 -> h1' -> out. */
    m1[2] = 1;
    collapse_of(chain, st, 3, col);
    cr_assert_eq(col[0], 0); cr_assert_eq(col[1], 0); cr_assert_eq(col[2], 0);
    /* An empty layer collapses everything around it. */
    float z[2 * 2] = {0};
    st[1] = z;
    collapse_of(chain, st, 3, col);
    cr_assert_eq(col[0] + col[1] + col[2], 3);
    /* Conv (2 ch, 2x2 kernel: k = 4) on a 1x2x3 input, two positions per
     * channel flattened into a linear of 4 inputs -> 1. */
    const char *conv = "{\"input\":[1,2,3],\"layers\":[{\"type\":\"conv2d\",\"out\":2,\"kernel\":2,\"bias\":0},"
                       "{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":1,\"bias\":0}]}";
    float c0[2 * 1 * 4] = {0, 0, 0, 0,  0, 1, 0, 0};  /* only output channel 1 alive */
    float l1[1 * 4] = {1, 1, 0, 0};                    /* reads channel 0's two pixels only */
    float *cs[2] = {c0, l1};
    int cc[2];
    collapse_of(conv, cs, 2, cc);
    cr_assert_eq(cc[0], 1); cr_assert_eq(cc[1], 1);
    l1[3] = 1;                                         /* channel 1, pixel 1 */
    collapse_of(conv, cs, 2, cc);
    cr_assert_eq(cc[0], 0); cr_assert_eq(cc[1], 0);
}

/* ---- through the engine ------------------------------------------------------ */

/* 3 inputs -> fc1 (2, no bias) -> relu -> fc2 (2 classes, no bias). */
static const char *TINY =
    "{\"input\":[3,1,1],\"classes\":2,\"layers\":[{\"type\":\"flatten\"},"
    "{\"type\":\"linear\",\"name\":\"fc1\",\"out\":2,\"bias\":0},{\"type\":\"relu\"},"
    "{\"type\":\"linear\",\"name\":\"fc2\",\"out\":2,\"bias\":0}]}";

static rf_model *tiny_model(void) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_from_spec(&ctx, TINY, &m), RF_OK, "%s", ctx.err);
    const rf_param *w1 = rf_model_param(m, "fc1.weight"), *w2 = rf_model_param(m, "fc2.weight");
    cr_assert(w1 && w2);
    const float W1[6] = {0.5f, -1.0f, 0.25f,  -2.0f, 0.125f, 1.5f};  /* [2, 3] */
    const float W2[4] = {-1.0f, 0.5f,  3.0f, -0.25f};                 /* [2, 2] */
    memcpy(m->params + w1->offset, W1, sizeof W1);
    memcpy(m->params + w2->offset, W2, sizeof W2);
    return m;
}

Test(prune_engine, synflow_scores_match_hand_computation) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = tiny_model();
    const rf_param *w1 = rf_model_param(m, "fc1.weight"), *w2 = rf_model_param(m, "fc2.weight");
    float orig[6 + 4];
    memcpy(orig, m->params + w1->offset, 6 * sizeof(float));
    memcpy(orig + 6, m->params + w2->offset, 4 * sizeof(float));
    /* R = 1ᵀ|W2||W1|1. ∂R/∂W1[j,i] = Σ_k |W2[k,j]| (column sums of |W2|: 4, 0.75);
     * ∂R/∂W2[k,j] = Σ_i |W1[j,i]| (row sums of |W1|: 1.75, 3.625). */
    const float c2[2] = {4.0f, 0.75f}, r1[2] = {1.75f, 3.625f};
    float want1[6], want2[4];
    for (int j = 0; j < 2; j++) for (int i = 0; i < 3; i++) want1[j * 3 + i] = fabsf(orig[j * 3 + i]) * c2[j];
    for (int k = 0; k < 2; k++) for (int j = 0; j < 2; j++) want2[k * 2 + j] = fabsf(orig[6 + k * 2 + j]) * r1[j];
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.method = RF_PRUNE_SYNFLOW;
    float *sc = NULL;
    cr_assert_eq(rf_prune_scores(&ctx, m, &cfg, NULL, &sc), RF_OK, "%s", ctx.err);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(sc[w1->offset + i], want1[i], 1e-5f, "fc1[%d] %g vs %g", i, sc[w1->offset + i], want1[i]);
    for (int i = 0; i < 4; i++) cr_assert_float_eq(sc[w2->offset + i], want2[i], 1e-5f, "fc2[%d]", i);
    rf_free(sc);
    /* Signs are restored. */
    cr_assert_eq(memcmp(m->params + w1->offset, orig, 6 * sizeof(float)), 0);
    cr_assert_eq(memcmp(m->params + w2->offset, orig + 6, 4 * sizeof(float)), 0);
    /* One round, global, 50% of 10: the 5 lowest scores of
     * fc1 {2, 4, 1, 1.5, 0.09375, 1.125}, fc2 {1.75, 1.8125, 5.25, 0.90625}. */
    cfg.synflow_rounds = 1; cfg.scope = RF_SCOPE_GLOBAL; cfg.sparsity = 0.5;
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, NULL), RF_OK, "%s", ctx.err);
    const float m1[6] = {1, 1, 0, 0, 0, 0}, m2[4] = {1, 1, 1, 0};
    expect_mask(m->masks + w1->offset, m1, 6);
    expect_mask(m->masks + w2->offset, m2, 4);
    for (int i = 0; i < 6; i++) cr_assert_eq(m->params[w1->offset + i], m1[i] ? orig[i] : 0.0f);
    rf_model_free(m);
}

Test(prune_engine, synflow_iterative_reaches_exact_sparsity_without_collapse) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_model_init(&ctx, m, 3), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.method = RF_PRUNE_SYNFLOW; cfg.scope = RF_SCOPE_GLOBAL; cfg.sparsity = 0.999; cfg.synflow_rounds = 20;
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, NULL), RF_OK, "%s", ctx.err);
    size_t rem = 0, tot = rf_model_prunable_count(m, &rem);
    cr_assert_eq(tot - rem, (size_t)floor(0.999 * (double)tot + 0.5));
    cJSON *list = cJSON_CreateArray();
    int nc = -1;
    cr_assert_eq(rf_prune_collapsed_layers(&ctx, m, list, &nc), RF_OK);
    cr_assert_eq(nc, 0, "synflow collapsed %d layers", nc);
    cJSON_Delete(list);
    rf_model_free(m);
}

Test(prune_engine, collapsed_layers_by_name) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = tiny_model();
    cr_assert_eq(rf_model_ensure_masks(&ctx, m), RF_OK);
    const rf_param *w1 = rf_model_param(m, "fc1.weight"), *w2 = rf_model_param(m, "fc2.weight");
    /* fc2 reads only hidden unit 1, whose inputs are all pruned: no path. */
    for (int i = 0; i < 3; i++) m->masks[w1->offset + 3 + i] = 0;
    m->masks[w2->offset + 0] = 0; m->masks[w2->offset + 2] = 0;
    cJSON *list = cJSON_CreateArray();
    int n = 0;
    cr_assert_eq(rf_prune_collapsed_layers(&ctx, m, list, &n), RF_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(cJSON_GetArrayItem(list, 0)->valuestring, "fc1");
    cr_assert_str_eq(cJSON_GetArrayItem(list, 1)->valuestring, "fc2");
    cJSON_Delete(list);
    m->masks[w2->offset + 0] = 1;   /* hidden 0 -> class 0 restores a path */
    list = cJSON_CreateArray();
    cr_assert_eq(rf_prune_collapsed_layers(&ctx, m, list, &n), RF_OK);
    cr_assert_eq(n, 0);
    cJSON_Delete(list);
    rf_model_free(m);
}

Test(prune_engine, layer_glob_and_per_layer_rates) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 1), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    const char *pats[1] = {"fc2"};
    const double rates[1] = {0.25};
    cfg.layers = "fc*,!fc3*"; cfg.sparsity = 0.5; cfg.n_layer_rates = 1; cfg.rate_patterns = pats; cfg.rates = rates;
    rf_prune_item *it = NULL; int n = 0;
    cr_assert_eq(rf_prune_items(&ctx, m, &cfg, &it, &n), RF_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(it[0].name, "fc1.weight"); cr_assert_str_eq(it[1].name, "fc2.weight");
    cr_assert_eq(it[1].rate, 0.25);
    rf_free(it);
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, NULL), RF_OK, "%s", ctx.err);
    rf_prune_layer_stat *st = NULL; int ns = 0;
    cr_assert_eq(rf_prune_stats(&ctx, m, &st, &ns, NULL, NULL), RF_OK);
    cr_assert_eq(ns, 3);
    cr_assert_eq(st[0].total - st[0].kept, 117600);   /* 0.5 · 784·300 */
    cr_assert_eq(st[1].total - st[1].kept, 7500);     /* 0.25 · 300·100 */
    cr_assert_eq(st[2].kept, st[2].total);            /* fc3 excluded */
    rf_free(st);
    cfg.layers = "conv*";
    cr_assert_eq(rf_prune_items(&ctx, m, &cfg, &it, &n), RF_ERR_INVALID);
    rf_model_free(m);
}

Test(prune_engine, rewind_restores_exact_values) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL, *init = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 11), RF_OK);
    cr_assert_eq(rf_model_clone(&ctx, m, &init), RF_OK);
    /* "Training": move every weight. */
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = m->params[i] * 1.5f + 0.01f;
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.sparsity = 0.2; cfg.of_remaining = 1; cfg.output_rate = 0.1;
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, NULL), RF_OK);
    /* Re-creating the init from the seed gives the same values as the copy. */
    rf_model *again = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &again), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, again, 11), RF_OK);
    cr_assert_eq(memcmp(again->params, init->params, m->n_params * sizeof(float)), 0);
    cr_assert_eq(rf_lottery_rewind(&ctx, m, again), RF_OK);
    for (size_t i = 0; i < m->n_params; i++)
        cr_assert_eq(m->params[i], m->masks[i] != 0.0f ? init->params[i] : 0.0f, "param %zu", i);
    /* Output layer pruned at its own (10%) rate, hidden at 20%. */
    const rf_param *f3 = rf_model_param(m, "fc3.weight"), *f1 = rf_model_param(m, "fc1.weight");
    size_t z3 = 0, z1 = 0;
    for (size_t e = 0; e < f3->numel; e++) z3 += m->masks[f3->offset + e] == 0.0f;
    for (size_t e = 0; e < f1->numel; e++) z1 += m->masks[f1->offset + e] == 0.0f;
    cr_assert_eq(z3, 100); cr_assert_eq(z1, 47040);
    rf_model *other = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-5", &other), RF_OK);
    cr_assert_eq(rf_lottery_rewind(&ctx, m, other), RF_ERR_SHAPE);
    rf_model_free(other); rf_model_free(again); rf_model_free(init); rf_model_free(m);
}

Test(prune_engine, gmp_hook_follows_schedule) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 5), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    rf_gmp_schedule sch = {0.0, 0.9, 10, 50, 10};
    rf_gmp g;
    cr_assert_eq(rf_gmp_init(&ctx, &g, &cfg, &sch), RF_OK);
    const rf_param *f1 = rf_model_param(m, "fc1.weight");
    for (int64_t t = 0; t <= 60; t++) {
        cr_assert_eq(rf_gmp_before_step(&g, m, t, 100), RF_OK, "%s", ctx.err);
        if (t >= 10) {
            size_t z = 0;
            for (size_t e = 0; e < f1->numel; e++) z += m->masks[f1->offset + e] == 0.0f;
            cr_assert_eq(z, (size_t)floor(rf_gmp_sparsity(&sch, t) * (double)f1->numel + 0.5), "step %lld", (long long)t);
        }
    }
    cr_assert_eq(g.updates, 5);
    cfg.method = RF_PRUNE_SNIP;
    cr_assert_eq(rf_gmp_init(&ctx, &g, &cfg, &sch), RF_ERR_INVALID);
    rf_model_free(m);
}

/* Per-tensor final rates under the schedule (Deep Compression's per-layer
 * rates, pruned gradually): fc1 to 0.9 and fc2 to 0.6 follow r·s_t/s_f, fc3
 * (no pattern) follows s_t; the counts are exact (layer scope: each tensor
 * ends with round(rate·numel) pruned). Rates with global scope, N:M or
 * s_f = 0 are refused. */
Test(prune_engine, gmp_hook_per_tensor_rates) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 6), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.scope = RF_SCOPE_LAYER;
    const char *const pats[] = {"fc1.weight", "fc2"};
    const double rates[] = {0.9, 0.6};
    cfg.n_layer_rates = 2; cfg.rate_patterns = pats; cfg.rates = rates;
    rf_gmp_schedule sch = {0.0, 0.75, 10, 50, 10};
    rf_gmp g;
    cr_assert_eq(rf_gmp_init(&ctx, &g, &cfg, &sch), RF_OK, "%s", ctx.err);
    const rf_param *f[3] = {rf_model_param(m, "fc1.weight"), rf_model_param(m, "fc2.weight"), rf_model_param(m, "fc3.weight")};
    const double r[3] = {0.9, 0.6, 0.75};   /* fc3: no pattern, the schedule's own target */
    for (int64_t t = 0; t <= 60; t++) {
        cr_assert_eq(rf_gmp_before_step(&g, m, t, 100), RF_OK, "%s", ctx.err);
        const double st = t >= 10 ? rf_gmp_sparsity(&sch, t) : 0.0;
        for (int k = 0; k < 3; k++) {
            size_t z = 0;
            for (size_t e = 0; e < f[k]->numel; e++) z += m->masks && m->masks[f[k]->offset + e] == 0.0f;
            cr_assert_eq(z, (size_t)floor(r[k] * (st / 0.75) * (double)f[k]->numel + 0.5), "step %lld tensor %d: %zu",
                         (long long)t, k, z);
        }
    }
    /* at the end: exactly the final rates (fc1 0.9 of 235200 = 211680, fc2 0.6 of 30000 = 18000, fc3 0.75 of 1000) */
    size_t z1 = 0;
    for (size_t e = 0; e < f[0]->numel; e++) z1 += m->masks[f[0]->offset + e] == 0.0f;
    cr_assert_eq(z1, 211680);
    cfg.scope = RF_SCOPE_GLOBAL;
    cr_assert_eq(rf_gmp_init(&ctx, &g, &cfg, &sch), RF_ERR_INVALID);
    cr_assert(strstr(ctx.err, "layer scope"), "%s", ctx.err);
    cfg.scope = RF_SCOPE_LAYER;
    rf_gmp_schedule zero = {0.0, 0.0, 0, 10, 5};
    cr_assert_eq(rf_gmp_init(&ctx, &g, &cfg, &zero), RF_ERR_INVALID);
    cfg.nm_n = 2; cfg.nm_m = 4;
    rf_gmp_schedule half = {0.0, 0.5, 0, 10, 5};
    cr_assert_eq(rf_gmp_init(&ctx, &g, &cfg, &half), RF_ERR_INVALID);
    rf_model_free(m);
}

Test(prune_engine, pruned_weights_stay_zero_through_adam_training) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *train = NULL, *test = NULL;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:512:1", &train, &test), RF_OK, "%s", ctx.err);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 2), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.method = RF_PRUNE_SNIP; cfg.sparsity = 0.8; cfg.batch = 64;
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, train), RF_OK, "%s", ctx.err);
    float *mask0 = malloc(m->n_params * sizeof(float));
    memcpy(mask0, m->masks, m->n_params * sizeof(float));
    rf_train_cfg tc; rf_train_cfg_default(&tc);
    tc.iterations = 20; tc.batch = 32;
    rf_optim_cfg_default(&tc.optim, RF_OPT_ADAM);
    tc.optim.lr = 1e-2f;
    tc.eval_limit = 64;
    rf_optim opt;
    cr_assert_eq(rf_optim_init(&ctx, &opt, &tc.optim, m->n_params), RF_OK);
    rf_train_result res;
    cr_assert_eq(rf_train(&ctx, m, train, NULL, test, &tc, &opt, NULL, &res), RF_OK, "%s", ctx.err);
    cr_assert_eq(res.steps, 20);
    size_t pruned = 0, moved = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        cr_assert_eq(m->masks[i], mask0[i]);
        if (mask0[i] == 0.0f) {
            pruned++;
            cr_assert_eq(m->params[i], 0.0f, "pruned param %zu = %g", i, m->params[i]);
            cr_assert_eq(opt.m[i], 0.0f);
            cr_assert_eq(opt.v[i], 0.0f);
        } else {
            moved += opt.v[i] != 0.0f;
        }
    }
    cr_assert(pruned > 200000);
    cr_assert(moved > 0);
    rf_optim_free(&opt);
    free(mask0);
    rf_model_free(m);
    rf_dataset_free(train); rf_dataset_free(test);
}

/* The model-level glue of the data methods: SNIP and OBD scores equal the
 * kernels applied to gradients computed here by hand on the same batches. */
Test(prune_engine, snip_and_obd_scores_from_gradients) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *train = NULL, *test = NULL;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:256:2", &train, &test), RF_OK, "%s", ctx.err);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 4), RF_OK);
    enum { B = 16, NB = 2 };
    size_t in = 784, np = m->n_params;
    float *x = malloc(NB * B * in * sizeof(float)), *dl = malloc(B * 10 * sizeof(float));
    int32_t y[NB * B];
    rf_batcher bt;
    cr_assert_eq(rf_batcher_init(&ctx, &bt, train, B, 9, 0, 1, 1), RF_OK);
    for (int b = 0; b < NB; b++) cr_assert_eq(rf_batcher_next(&bt, x + (size_t)b * B * in, y + b * B, NULL), B);
    rf_batcher_free(&bt);
    float *g0 = malloc(np * sizeof(float)), *h = calloc(np, sizeof(float));
    for (int b = 0; b < NB; b++) {
        const float *logits;
        rf_model_zero_grad(m);
        cr_assert_eq(rf_model_forward(&ctx, m, x + (size_t)b * B * in, B, 1, &logits), RF_OK);
        rf_loss_xent(logits, y + b * B, B, 10, 0.0f, dl);
        cr_assert_eq(rf_model_backward(&ctx, m, dl), RF_OK);
        if (b == 0) memcpy(g0, m->grads, np * sizeof(float));
        for (size_t i = 0; i < np; i++) h[i] += (float)B / NB * m->grads[i] * m->grads[i];
    }
    float *w0 = malloc(np * sizeof(float));
    memcpy(w0, m->params, np * sizeof(float));
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.seed = 9; cfg.batch = B; cfg.batches = NB;
    cfg.method = RF_PRUNE_SNIP;
    float *sc = NULL;
    cr_assert_eq(rf_prune_scores(&ctx, m, &cfg, train, &sc), RF_OK, "%s", ctx.err);
    const rf_param *f1 = rf_model_param(m, "fc1.weight"), *b1 = rf_model_param(m, "fc1.bias");
    for (size_t e = 0; e < f1->numel; e += 97) {
        size_t i = f1->offset + e;
        cr_assert_float_eq(sc[i], fabsf(g0[i] * w0[i]), 1e-6f * fabsf(g0[i] * w0[i]) + 1e-12f, "snip %zu", e);
    }
    cr_assert_eq(sc[b1->offset], 0.0f);            /* biases are not eligible */
    rf_free(sc);
    cfg.method = RF_PRUNE_OBD;
    cr_assert_eq(rf_prune_scores(&ctx, m, &cfg, train, &sc), RF_OK, "%s", ctx.err);
    for (size_t e = 0; e < f1->numel; e += 97) {
        size_t i = f1->offset + e;
        float want = 0.5f * h[i] * w0[i] * w0[i];
        cr_assert_float_eq(sc[i], want, 1e-5f * want + 1e-12f, "obd %zu: %g vs %g", e, sc[i], want);
    }
    rf_free(sc);
    /* Scoring leaves the model as it was. */
    cr_assert_eq(memcmp(m->params, w0, np * sizeof(float)), 0);
    cr_assert_eq(rf_prune_scores(&ctx, m, &cfg, NULL, &sc), RF_ERR_INVALID);
    free(x); free(dl); free(g0); free(h); free(w0);
    rf_model_free(m);
    rf_dataset_free(train); rf_dataset_free(test);
}

/* GraSP's glue (eligible weights only, averaging, sign, restoring the
 * weights) against an independent central difference in double at a 3x
 * larger step. Float gradients and ReLU kinks make finite-difference Hg
 * estimates at different steps agree only to a correlation of about 0.9
 * (docs/pruning.md), so the test asks for > 0.8; a sign or scaling error
 * gives a negative or unchanged-but-wrong correlation. */
Test(prune_engine, grasp_matches_independent_hessian_gradient_product) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *train = NULL, *test = NULL;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:128:3", &train, &test), RF_OK, "%s", ctx.err);
    rf_model *m = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 8), RF_OK);
    enum { B = 32 };
    size_t in = 784, np = m->n_params;
    float *x = malloc(B * in * sizeof(float)), *dl = malloc(B * 10 * sizeof(float));
    int32_t y[B];
    rf_batcher bt;
    cr_assert_eq(rf_batcher_init(&ctx, &bt, train, B, 1, 0, 1, 1), RF_OK);
    cr_assert_eq(rf_batcher_next(&bt, x, y, NULL), B);
    rf_batcher_free(&bt);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.method = RF_PRUNE_GRASP; cfg.seed = 1; cfg.batch = B; cfg.batches = 1;
    rf_prune_item *it = NULL; int n = 0;
    cr_assert_eq(rf_prune_items(&ctx, m, &cfg, &it, &n), RF_OK);
    double *g = calloc(np, sizeof(double)), *hg = calloc(np, sizeof(double));
    float *w0 = malloc(np * sizeof(float));
    memcpy(w0, m->params, np * sizeof(float));
    const float *logits;
    rf_model_zero_grad(m);
    cr_assert_eq(rf_model_forward(&ctx, m, x, B, 1, &logits), RF_OK);
    rf_loss_xent(logits, y, B, 10, 0.0f, dl);
    cr_assert_eq(rf_model_backward(&ctx, m, dl), RF_OK);
    double wn = 0, gn = 0;
    for (int k = 0; k < n; k++) for (size_t e = 0; e < it[k].numel; e++) {
        size_t i = it[k].offset + e;
        g[i] = m->grads[i]; wn += (double)w0[i] * w0[i]; gn += g[i] * g[i];
    }
    double delta = 3.0 * cfg.grasp_eps * sqrt(wn) / sqrt(gn);
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (int k = 0; k < n; k++) for (size_t e = 0; e < it[k].numel; e++) {
            size_t i = it[k].offset + e;
            m->params[i] = (float)(w0[i] + sign * delta * g[i]);
        }
        rf_model_zero_grad(m);
        cr_assert_eq(rf_model_forward(&ctx, m, x, B, 1, &logits), RF_OK);
        rf_loss_xent(logits, y, B, 10, 0.0f, dl);
        cr_assert_eq(rf_model_backward(&ctx, m, dl), RF_OK);
        for (size_t i = 0; i < np; i++) hg[i] += sign * (double)m->grads[i] / (2.0 * delta);
    }
    memcpy(m->params, w0, np * sizeof(float));
    float *sc = NULL;
    cr_assert_eq(rf_prune_scores(&ctx, m, &cfg, train, &sc), RF_OK, "%s", ctx.err);
    const char *names[3] = {"fc1.weight", "fc2.weight", "fc3.weight"};
    for (int k = 0; k < 3; k++) {
        const rf_param *p = rf_model_param(m, names[k]);
        double sxy = 0, sxx = 0, syy = 0;
        for (size_t e = 0; e < p->numel; e++) {
            size_t i = p->offset + e;
            double ref = -(double)w0[i] * hg[i];
            sxy += ref * sc[i]; sxx += ref * ref; syy += (double)sc[i] * sc[i];
        }
        double corr = sxy / sqrt(sxx * syy);
        cr_assert(corr > 0.8, "GraSP scores vs reference on %s: correlation %g", names[k], corr);
    }
    cr_assert_eq(sc[rf_model_param(m, "fc1.bias")->offset], 0.0f);
    cr_assert_eq(memcmp(m->params, w0, np * sizeof(float)), 0);
    rf_free(sc); rf_free(it);
    free(x); free(dl); free(g); free(hg); free(w0);
    rf_model_free(m);
    rf_dataset_free(train); rf_dataset_free(test);
}

Test(prune_engine, random_method_is_seeded) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *a = NULL, *b = NULL, *c = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &a), RF_OK);
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &b), RF_OK);
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &c), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.method = RF_PRUNE_RANDOM; cfg.sparsity = 0.6; cfg.seed = 77;
    cr_assert_eq(rf_prune_model(&ctx, a, &cfg, NULL), RF_OK);
    cr_assert_eq(rf_prune_model(&ctx, b, &cfg, NULL), RF_OK);
    cfg.seed = 78;
    cr_assert_eq(rf_prune_model(&ctx, c, &cfg, NULL), RF_OK);
    cr_assert_eq(memcmp(a->masks, b->masks, a->n_params * sizeof(float)), 0);
    cr_assert_neq(memcmp(a->masks, c->masks, a->n_params * sizeof(float)), 0);
    size_t rem = 0, tot = rf_model_prunable_count(a, &rem);
    cr_assert_eq(tot - rem, 141120 + 18000 + 600);   /* round(0.6·n) per layer */
    rf_model_free(a); rf_model_free(b); rf_model_free(c);
}

Test(prune_engine, masks_survive_checkpoint_round_trip) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_model *m = NULL, *r = NULL;
    cr_assert_eq(rf_model_create(&ctx, "lenet-300-100", &m), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, m, 6), RF_OK);
    rf_prune_cfg cfg; rf_prune_cfg_default(&cfg);
    cfg.sparsity = 0.7; cfg.scope = RF_SCOPE_GLOBAL; cfg.output_rate = 0.35;
    cr_assert_eq(rf_prune_model(&ctx, m, &cfg, NULL), RF_OK);
    /* A kept weight that happens to be exactly 0.0 must keep its mask bit. */
    const rf_param *f2 = rf_model_param(m, "fc2.weight");
    size_t kept0 = f2->offset;
    while (m->masks[kept0] == 0.0f) kept0++;
    m->params[kept0] = 0.0f;
    char path[] = "/tmp/test_prune_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(rf_model_save(&ctx, m, NULL, path), RF_OK, "%s", ctx.err);
    cr_assert_eq(rf_model_load(&ctx, path, &r), RF_OK, "%s", ctx.err);
    unlink(path);
    cr_assert_not_null(r->masks);
    cr_assert_eq(r->n_params, m->n_params);
    cr_assert_eq(memcmp(r->masks, m->masks, m->n_params * sizeof(float)), 0);
    for (size_t i = 0; i < m->n_params; i++) cr_assert_eq(r->params[i], m->params[i], "param %zu: %a vs %a (mask %g)", i, r->params[i], m->params[i], m->masks[i]);
    cr_assert_eq(r->masks[kept0], 1.0f);
    /* Iterative pruning continues from the loaded mask: 20% of the remaining. */
    size_t rem0 = 0;
    rf_model_prunable_count(r, &rem0);
    rf_prune_cfg it; rf_prune_cfg_default(&it);
    it.sparsity = 0.2; it.of_remaining = 1; it.scope = RF_SCOPE_GLOBAL;
    cr_assert_eq(rf_prune_model(&ctx, r, &it, NULL), RF_OK);
    size_t rem1 = 0;
    rf_model_prunable_count(r, &rem1);
    cr_assert_eq(rem0 - rem1, (size_t)floor(0.2 * (double)rem0 + 0.5));
    for (size_t i = 0; i < m->n_params; i++) if (m->masks[i] == 0.0f) cr_assert_eq(r->masks[i], 0.0f);
    rf_model_free(m); rf_model_free(r);
}

/* ---- the task kinds ------------------------------------------------------------ */

rf_status rf_task_prune(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);
rf_status rf_task_lottery(rf_ctx *ctx, const rf_task_io *io, cJSON *metrics);

static rf_status run_task(rf_status (*fn)(rf_ctx *, const rf_task_io *, cJSON *), const char *settings,
                          const char *parent, const char *dir, const rf_dataset *tr, const rf_dataset *te,
                          cJSON **metrics) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_mkdirs(&ctx, dir), RF_OK);
    cJSON *st = cJSON_Parse(settings);
    cr_assert_not_null(st);
    const char *parents[1] = {parent};
    rf_task_io io;
    memset(&io, 0, sizeof io);
    io.settings = st;
    io.n_parents = parent ? 1 : 0;
    io.parent_ckpts = parents;
    io.out_dir = dir;
    io.train = tr;
    io.test = te;
    *metrics = cJSON_CreateObject();
    rf_status s = fn(&ctx, &io, *metrics);
    if (s != RF_OK) cr_log_info("task: %s", ctx.err);
    cJSON_Delete(st);
    return s;
}

static double mnum(const cJSON *m, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    cr_assert(cJSON_IsNumber(v), "metric %s missing", k);
    return v->valuedouble;
}

Test(prune_task, lottery_rounds_with_step_rewind_and_prune_task) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    rf_dataset *tr = NULL, *te = NULL;
    cr_assert_eq(rf_data_load(&ctx, "synthetic:256:5", &tr, &te), RF_OK);
    char base[] = "/tmp/test_prune_task_XXXXXX";
    cr_assert_not_null(mkdtemp(base));
    char d0[256], d1[256], dk[256], dp[256], p0[300], path[300];
    snprintf(d0, sizeof d0, "%s/r0", base); snprintf(d1, sizeof d1, "%s/r1", base);
    snprintf(dk, sizeof dk, "%s/k", base); snprintf(dp, sizeof dp, "%s/p", base);
    const char *common = "\"model\":\"lenet-300-100\",\"seed\":3,\"batch\":16,\"optimizer\":\"adam\",\"lr\":0.002,\"eval_limit\":64";
    char st[512];
    cJSON *m0 = NULL, *m1 = NULL, *mk = NULL, *mp = NULL;
    snprintf(st, sizeof st, "{%s,\"round\":0,\"iterations\":12,\"rewind\":\"step:5\"}", common);
    cr_assert_eq(run_task(rf_task_lottery, st, NULL, d0, tr, te, &m0), RF_OK);
    cr_assert_eq(mnum(m0, "remaining"), 1.0);
    /* The stored rewind point equals an independent 5-step run. */
    snprintf(st, sizeof st, "{%s,\"round\":0,\"iterations\":5,\"rewind\":\"init\"}", common);
    cr_assert_eq(run_task(rf_task_lottery, st, NULL, dk, tr, te, &mk), RF_OK);
    rf_model *a = NULL, *b = NULL;
    snprintf(path, sizeof path, "%s/rewind.rckpt", d0);
    cr_assert_eq(rf_model_load(&ctx, path, &a), RF_OK, "%s", ctx.err);
    snprintf(path, sizeof path, "%s/model.rckpt", dk);
    cr_assert_eq(rf_model_load(&ctx, path, &b), RF_OK, "%s", ctx.err);
    cr_assert_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    rf_model_free(a); rf_model_free(b);
    /* Round 1: 20% of hidden, 10% of output weights; the rewind file travels. */
    snprintf(p0, sizeof p0, "%s/model.rckpt", d0);
    snprintf(st, sizeof st, "{%s,\"round\":1,\"iterations\":12,\"rewind\":\"step:5\",\"prune_fraction\":0.2,\"output_fraction\":0.1}", common);
    cr_assert_eq(run_task(rf_task_lottery, st, p0, d1, tr, te, &m1), RF_OK);
    double want = (0.8 * 235200 + 0.8 * 30000 + 0.9 * 1000) / 266200.0;
    cr_assert_float_eq(mnum(m1, "remaining"), want, 1e-9);
    mnum(m1, "accuracy");
    /* no validation split given: no selection, rather than one on the test split */
    cr_assert_eq(mnum(m1, "best_iteration"), -1);
    cr_assert_eq(mnum(m1, "best_val_accuracy"), -1);
    cr_assert_eq(mnum(m1, "test_accuracy_at_best_val"), -1);
    snprintf(path, sizeof path, "%s/rewind.rckpt", d1);
    cr_assert_eq(access(path, R_OK), 0);
    /* Rejections: a round without parent, a control at round 0. */
    cJSON *bad = NULL;
    cr_assert_eq(run_task(rf_task_lottery, st, NULL, d1, tr, te, &bad), RF_ERR_INVALID);
    cJSON_Delete(bad);
    snprintf(st, sizeof st, "{%s,\"round\":0,\"iterations\":2,\"control\":\"reinit\"}", common);
    cr_assert_eq(run_task(rf_task_lottery, st, NULL, d1, tr, te, &bad), RF_ERR_INVALID);
    cJSON_Delete(bad);
    /* Prune task: SynFlow at init, 99%, a few fine-tuning steps. */
    snprintf(st, sizeof st, "{%s,\"method\":\"synflow\",\"synflow_rounds\":10,\"sparsity\":0.99,\"scope\":\"global\",\"finetune_iterations\":4}", common);
    cr_assert_eq(run_task(rf_task_prune, st, NULL, dp, tr, te, &mp), RF_OK);
    cr_assert_float_eq(mnum(mp, "sparsity"), 0.99, 1e-4);
    cr_assert_float_eq(mnum(mp, "remaining"), 1.0 - floor(0.99 * 266200 + 0.5) / 266200.0, 1e-12);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(mp, "collapsed_layers")));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(mp, "collapsed_at_prune")), 0);
    mnum(mp, "accuracy");
    cJSON_Delete(m0); cJSON_Delete(m1); cJSON_Delete(mk); cJSON_Delete(mp);
    rf_dataset_free(tr); rf_dataset_free(te);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    cr_assert_eq(system(cmd), 0);
}
