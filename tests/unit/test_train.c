/* Training engine: losses against hand-computed values and double-precision
 * finite differences, optimizers against hand-computed PyTorch-semantics
 * steps, masked updates, schedules, and the training loop end to end
 * (determinism to the byte, NaN detection, stop flag, bad input). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raffle/ckpt.h"
#include "raffle/train.h"
#include "raffle/gemm.h"
#include "raffle/kernels.h"

/* ---- double-precision references --------------------------------------- */
static void ref_log_softmax(const double *z, int k, double T, double *lp) {
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < k; j++) if (z[j] / T > mx) mx = z[j] / T;
    for (int j = 0; j < k; j++) s += exp(z[j] / T - mx);
    for (int j = 0; j < k; j++) lp[j] = z[j] / T - mx - log(s);
}

static double ref_xent(const double *z, const int32_t *y, int B, int K, double eps) {
    double tot = 0, lp[16];
    for (int b = 0; b < B; b++) {
        ref_log_softmax(z + b * K, K, 1.0, lp);
        for (int j = 0; j < K; j++) tot -= (eps / K + (j == y[b] ? 1 - eps : 0)) * lp[j];
    }
    return tot / B;
}

static double ref_distill(const double *s, const double *t, const int32_t *y, int B, int K, double T, double a) {
    double tot = 0, lps[16], lpt[16], lp1[16];
    for (int b = 0; b < B; b++) {
        ref_log_softmax(s + b * K, K, T, lps);
        ref_log_softmax(t + b * K, K, T, lpt);
        ref_log_softmax(s + b * K, K, 1.0, lp1);
        double kl = 0;
        for (int j = 0; j < K; j++) kl += exp(lpt[j]) * (lpt[j] - lps[j]);
        tot += a * T * T * kl + (1 - a) * (-lp1[y[b]]);
    }
    return tot / B;
}

static void random_logits(rf_rng *r, double *d, float *f, int n, double scale) {
    for (int i = 0; i < n; i++) { f[i] = (float)(scale * rf_rng_normal(r)); d[i] = f[i]; }
}

Test(loss, xent_hand_computed) {
    float z[3] = {1, 2, 3}, dz[3];
    int32_t y = 2;
    /* log(e^1 + e^2 + e^3) - 3 */
    const double lse = 3.40760596444438;
    cr_assert_float_eq(rf_loss_xent(z, &y, 1, 3, 0.0f, dz), lse - 3, 1e-6);
    double p[3] = {exp(1 - lse), exp(2 - lse), exp(3 - lse)};
    cr_assert_float_eq(dz[0], p[0], 1e-6);
    cr_assert_float_eq(dz[2], p[2] - 1, 1e-6);
    /* smoothing 0.3 with K=3: q = {0.1, 0.1, 0.8} */
    double want = -(0.1 * (1 - lse) + 0.1 * (2 - lse) + 0.8 * (3 - lse));
    cr_assert_float_eq(rf_loss_xent(z, &y, 1, 3, 0.3f, dz), want, 1e-6);
    cr_assert_float_eq(dz[0], p[0] - 0.1, 1e-6);
    cr_assert_float_eq(dz[2], p[2] - 0.8, 1e-6);
    /* huge logits: log-sum-exp must not overflow */
    float big[2] = {1e4f, -1e4f};
    int32_t y1 = 1;
    float l = rf_loss_xent(big, &y1, 1, 2, 0.0f, dz);
    cr_assert(isfinite(l));
    cr_assert_float_eq(l, 2e4, 1.0);
    cr_assert_float_eq(dz[0], 1.0, 1e-6);
}

Test(loss, xent_matches_finite_differences) {
    enum { B = 4, K = 7 };
    rf_rng r; rf_rng_init(&r, 11, 0);
    double zd[B * K]; float zf[B * K], g[B * K];
    int32_t y[B] = {0, 3, 6, 2};
    for (int si = 0; si < 2; si++) {
        double eps = si ? 0.1 : 0.0;
        random_logits(&r, zd, zf, B * K, 2.0);
        float l = rf_loss_xent(zf, y, B, K, (float)eps, g);
        cr_assert_float_eq(l, ref_xent(zd, y, B, K, eps), 1e-5);
        for (int i = 0; i < B * K; i++) {
            const double h = 1e-5, z0 = zd[i];
            zd[i] = z0 + h; double lp = ref_xent(zd, y, B, K, eps);
            zd[i] = z0 - h; double lm = ref_xent(zd, y, B, K, eps);
            zd[i] = z0;
            cr_assert_float_eq(g[i], (lp - lm) / (2 * h), 1e-5, "i=%d eps=%g: %g vs %g", i, eps, g[i], (lp - lm) / (2 * h));
        }
    }
}

Test(loss, distill_hand_computed) {
    /* Identical student and teacher: KL = 0, so the loss is (1-alpha) * CE. */
    float z[3] = {0.5f, -1, 2}, dz[3];
    int32_t y = 0;
    float ce = rf_loss_xent(z, &y, 1, 3, 0, NULL);
    cr_assert_float_eq(rf_loss_distill(z, z, &y, 1, 3, 4.0f, 0.5f, dz), 0.5 * ce, 1e-6);
    cr_assert_float_eq(rf_loss_distill(z, z, &y, 1, 3, 4.0f, 1.0f, dz), 0.0, 1e-6);
    for (int j = 0; j < 3; j++) cr_assert_float_eq(dz[j], 0.0, 1e-7);
    /* alpha = 0 is plain cross-entropy, gradient included. */
    float t[3] = {3, 0, 0}, dce[3];
    rf_loss_xent(z, &y, 1, 3, 0, dce);
    cr_assert_float_eq(rf_loss_distill(z, t, &y, 1, 3, 2.0f, 0.0f, dz), ce, 1e-6);
    for (int j = 0; j < 3; j++) cr_assert_float_eq(dz[j], dce[j], 1e-7);
    /* Two classes, T = 2, alpha = 1: student logits {0,0} -> p_s = {.5,.5};
     * teacher {2,0}/2 -> p_t = {e/(e+1), 1/(e+1)}.
     * L = 4 * sum p_t log(p_t / .5); dL/dz_s = 2 * (p_s - p_t). */
    float s2[2] = {0, 0}, t2[2] = {2, 0}, d2[2];
    double pt0 = exp(1.0) / (exp(1.0) + 1), pt1 = 1 - pt0;
    double want = 4 * (pt0 * log(pt0 / 0.5) + pt1 * log(pt1 / 0.5));
    cr_assert_float_eq(rf_loss_distill(s2, t2, &y, 1, 2, 2.0f, 1.0f, d2), want, 1e-6);
    cr_assert_float_eq(d2[0], 2 * (0.5 - pt0), 1e-6);
    cr_assert_float_eq(d2[1], 2 * (0.5 - pt1), 1e-6);
}

Test(loss, distill_matches_finite_differences) {
    enum { B = 3, K = 5 };
    rf_rng r; rf_rng_init(&r, 12, 0);
    double sd[B * K], td[B * K]; float sf[B * K], tf[B * K], g[B * K];
    int32_t y[B] = {4, 0, 2};
    const float Ts[3] = {1.0f, 2.0f, 20.0f}, alphas[3] = {0.0f, 0.5f, 1.0f};
    for (int ti = 0; ti < 3; ti++)
        for (int ai = 0; ai < 3; ai++) {
            random_logits(&r, sd, sf, B * K, 3.0);
            random_logits(&r, td, tf, B * K, 3.0);
            double T = Ts[ti], a = alphas[ai];
            float l = rf_loss_distill(sf, tf, y, B, K, Ts[ti], alphas[ai], g);
            double want = ref_distill(sd, td, y, B, K, T, a);
            cr_assert_float_eq(l, want, 1e-5 * (1 + fabs(want)), "T=%g a=%g", T, a);
            for (int i = 0; i < B * K; i++) {
                const double h = 1e-5, z0 = sd[i];
                sd[i] = z0 + h; double lp = ref_distill(sd, td, y, B, K, T, a);
                sd[i] = z0 - h; double lm = ref_distill(sd, td, y, B, K, T, a);
                sd[i] = z0;
                double fd = (lp - lm) / (2 * h);
                cr_assert_float_eq(g[i], fd, 2e-5 * (1 + fabs(fd)), "T=%g a=%g i=%d: %g vs %g", T, a, i, g[i], fd);
            }
        }
}

/* ---- optimizers -------------------------------------------------------- */
/* A parameter-only model: the optimizer touches params, grads and masks. */
static void fake_model(rf_model *m, float *p, float *g, float *mask, size_t n) {
    memset(m, 0, sizeof *m);
    m->params = p; m->grads = g; m->masks = mask; m->n_params = n;
}

static float one_param_run(rf_optim_cfg *c, const float *grads, int steps) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float p = 1.0f, g;
    rf_model m; fake_model(&m, &p, &g, NULL, 1);
    rf_optim o;
    cr_assert_eq(rf_optim_init(&ctx, &o, c, 1), RF_OK);
    for (int s = 0; s < steps; s++) { g = grads[s]; rf_optim_step(&o, &m, c->lr); }
    rf_optim_free(&o);
    return p;
}

Test(optim, sgd_momentum_nesterov_weight_decay) {
    rf_optim_cfg c; rf_optim_cfg_default(&c, RF_OPT_SGD);
    const float g[2] = {0.5f, 0.5f};
    c.lr = 0.1f; c.momentum = 0.0f; c.weight_decay = 0.0f;
    cr_assert_float_eq(one_param_run(&c, g, 1), 0.95, 1e-7);
    /* momentum 0.9, wd 0.01: d1 = .51, buf1 = .51, p1 = .949;
     * d2 = .5 + .00949 = .50949, buf2 = .9*.51 + .50949 = .96849, p2 = .949 - .096849 */
    c.momentum = 0.9f; c.weight_decay = 0.01f;
    cr_assert_float_eq(one_param_run(&c, g, 1), 0.949, 1e-6);
    cr_assert_float_eq(one_param_run(&c, g, 2), 0.852151, 1e-6);
    /* Nesterov: step 1 uses d + mu*buf = .51 + .459 = .969 -> p = .9031;
     * step 2: d = .5 + .009031 = .509031, buf = .459 + .509031, upd = d + .9 * buf */
    c.nesterov = 1;
    cr_assert_float_eq(one_param_run(&c, g, 1), 0.9031, 1e-6);
    cr_assert_float_eq(one_param_run(&c, g, 2), 0.9031 - 0.1 * (0.509031 + 0.9 * (0.459 + 0.509031)), 1e-6);
}

Test(optim, adam_and_adamw_first_steps) {
    rf_optim_cfg c; rf_optim_cfg_default(&c, RF_OPT_ADAM);
    c.lr = 0.1f;
    const float g[2] = {0.5f, -1.0f};
    /* Step 1 of Adam moves by lr * sign(g) (bias correction cancels). */
    cr_assert_float_eq(one_param_run(&c, g, 1), 0.9, 1e-6);
    /* Step 2: m = .9*.05 - .1 = -.055; v = .999*.00025 + .001 = .00124975;
     * p = .9 - (.1/.19) * m / (sqrt(v / (1-.999^2)) + 1e-8) */
    double want = 0.9 - (0.1 / 0.19) * -0.055 / (sqrt(0.00124975 / (1 - 0.999 * 0.999)) + 1e-8);
    cr_assert_float_eq(one_param_run(&c, g, 2), want, 1e-6);
    /* Adam with L2 (coupled) weight decay 0.1: d1 = .6 -> still a sign step;
     * d2 = -1 + .09 = -.91: m = .054 - .091 = -.037, v = .000359640 + .0008281 */
    c.weight_decay = 0.1f;
    cr_assert_float_eq(one_param_run(&c, g, 1), 0.9, 1e-6);
    double v2 = 0.999 * 0.001 * 0.36 + 0.001 * 0.91 * 0.91;
    want = 0.9 - (0.1 / 0.19) * -0.037 / (sqrt(v2 / (1 - 0.999 * 0.999)) + 1e-8);
    cr_assert_float_eq(one_param_run(&c, g, 2), want, 1e-6);
    /* AdamW: p *= 1 - lr*wd first (decoupled), then the plain Adam step. */
    c.type = RF_OPT_ADAMW;
    cr_assert_float_eq(one_param_run(&c, g, 1), 0.99 - 0.1, 1e-6);
    want = 0.89 * 0.99 - (0.1 / 0.19) * -0.055 / (sqrt(0.00124975 / (1 - 0.999 * 0.999)) + 1e-8);
    cr_assert_float_eq(one_param_run(&c, g, 2), want, 1e-6);
}

Test(optim, masked_entries_stay_exactly_zero) {
    enum { N = 64 };
    rf_ctx ctx; rf_ctx_init(&ctx);
    float p[N], g[N], mask[N];
    rf_rng r; rf_rng_init(&r, 3, 0);
    for (int i = 0; i < N; i++) { p[i] = rf_rng_normal(&r); mask[i] = (i % 3 == 0) ? 0.0f : 1.0f; }
    for (int t = 0; t < 3; t++) {
        rf_optim_cfg c; rf_optim_cfg_default(&c, (rf_optim_type)t);
        c.weight_decay = 0.05f;
        float pp[N]; memcpy(pp, p, sizeof p);
        rf_model m; fake_model(&m, pp, g, mask, N);
        rf_optim o;
        cr_assert_eq(rf_optim_init(&ctx, &o, &c, N), RF_OK);
        for (int s = 0; s < 10; s++) {
            for (int i = 0; i < N; i++) g[i] = rf_rng_normal(&r);
            rf_optim_step(&o, &m, c.lr);
        }
        for (int i = 0; i < N; i++) {
            if (mask[i] == 0.0f) {
                cr_assert_eq(pp[i], 0.0f, "opt %d: pruned param %d = %g", t, i, pp[i]);
                cr_assert(signbit(pp[i]) == 0);
                if (o.m) cr_assert_eq(o.m[i], 0.0f);
                if (o.v) cr_assert_eq(o.v[i], 0.0f);
            } else {
                cr_assert_neq(pp[i], p[i]);
                if (o.v) cr_assert_gt(o.v[i], 0.0f);
            }
        }
        rf_optim_free(&o);
    }
}

/* The SIMD optimizer kernels must give the scalar reference's bits. */
Test(optim, simd_variants_match_scalar_bit_for_bit) {
    enum { N = 1000 + 13 };  /* not a multiple of 8 or 16: tails */
    rf_ctx ctx; rf_ctx_init(&ctx);
    static float p0[N], g[N], mask[N], pr[N], pv[N];
    rf_rng r; rf_rng_init(&r, 9, 0);
    for (int i = 0; i < N; i++) { p0[i] = rf_rng_normal(&r); mask[i] = rf_rng_uniform(&r) < 0.3f ? 0.0f : 1.0f; }
    const rf_isa isas[2] = {RF_ISA_AVX2, RF_ISA_AVX512};
    const int n_isa = rf_kernels_cpu_isa() >= RF_ISA_AVX512 ? 2 : 1;
    if (rf_kernels_cpu_isa() < RF_ISA_AVX2)
        cr_skip_test("this CPU has no AVX2: only the scalar optimizer runs, nothing to compare it with");
    if (n_isa < 2) cr_log_warn("no AVX-512 on this CPU: only the AVX2 optimizer kernels are compared");
    for (int variant = 0; variant < 5; variant++) {
        rf_optim_cfg c; rf_optim_cfg_default(&c, variant < 2 ? RF_OPT_SGD : variant < 4 ? RF_OPT_ADAM : RF_OPT_ADAMW);
        c.weight_decay = 0.01f; c.nesterov = variant == 1; c.clip_norm = variant == 3 ? 0.5f : 0.0f;
        for (int ii = 0; ii < n_isa; ii++) {
            cr_assert_eq(rf_kernels_force(isas[ii]), isas[ii]);
            float *outs[2] = {pr, pv};
            float norms[2][6];
            for (int run = 0; run < 2; run++) {
                rf_kernels_force(run == 0 ? RF_ISA_SCALAR : isas[ii]);
                memcpy(outs[run], p0, sizeof p0);
                rf_model m; fake_model(&m, outs[run], g, variant == 2 ? NULL : mask, N);
                rf_optim o;
                cr_assert_eq(rf_optim_init(&ctx, &o, &c, N), RF_OK);
                rf_rng gr; rf_rng_init(&gr, 10, 0);
                for (int s = 0; s < 6; s++) {
                    for (int i = 0; i < N; i++) g[i] = rf_rng_normal(&gr);
                    norms[run][s] = rf_optim_step(&o, &m, c.lr);
                }
                rf_optim_free(&o);
            }
            for (int s = 0; s < 6; s++) cr_assert_float_eq(norms[0][s], norms[1][s], 1e-5 * norms[0][s]);
            cr_assert_eq(memcmp(pr, pv, sizeof pr), 0, "variant %d isa %s differs from scalar", variant, rf_isa_name(isas[ii]));
        }
    }
    rf_kernels_force(rf_kernels_cpu_isa());
}

/* The step over threads (optim.c: whole 64K-entry blocks a part): 1, 2 and
 * 3 threads give the same parameters and the same returned norm, for SGD,
 * Adam and AdamW, masked or not, with the norm in a pass of its own
 * (clipping) and taken in the update's pass (no clipping); and the two
 * passes' norm is the fused one's, bit for bit (clipping that never
 * scales). 5 blocks and a tail: parts of unequal block counts. */
Test(optim, threads_give_the_same_bytes) {
    enum { N = 5 * 65536 + 77, STEPS = 3 };
    float *p0 = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float)), *mask = malloc(N * sizeof(float));
    float *out[3];
    cr_assert(p0 && g && mask);
    rf_rng r; rf_rng_init(&r, 12, 0);
    for (int i = 0; i < N; i++) { p0[i] = rf_rng_normal(&r); mask[i] = rf_rng_uniform(&r) < 0.2f ? 0.0f : 1.0f; }
    for (int variant = 0; variant < 8; variant++) {
        rf_optim_cfg c; rf_optim_cfg_default(&c, variant % 4 == 0 ? RF_OPT_SGD : variant % 4 == 3 ? RF_OPT_ADAMW : RF_OPT_ADAM);
        c.weight_decay = 0.01f;
        c.clip_norm = variant < 4 ? 0.0f : variant == 5 ? 1e30f : 0.5f;
        float norms[3][STEPS];
        for (int t = 0; t < 3; t++) {
            rf_ctx ctx; rf_ctx_init(&ctx);
            ctx.engine.v[RF_ENGINE_THREADS] = t + 1;
            cr_assert_eq(rf_gemm_attach(&ctx), RF_OK, "%s", rf_ctx_error(&ctx));
            out[t] = malloc(N * sizeof(float));
            cr_assert_not_null(out[t]);
            memcpy(out[t], p0, N * sizeof(float));
            rf_model m; fake_model(&m, out[t], g, variant == 2 ? NULL : mask, N);
            rf_optim o;
            cr_assert_eq(rf_optim_init(&ctx, &o, &c, N), RF_OK);
            rf_rng gr; rf_rng_init(&gr, 13, 0);
            for (int s = 0; s < STEPS; s++) {
                for (int i = 0; i < N; i++) g[i] = rf_rng_normal(&gr);
                norms[t][s] = rf_optim_step(&o, &m, c.lr);
            }
            rf_optim_free(&o);
            rf_gemm_detach(&ctx);
        }
        for (int t = 1; t < 3; t++) {
            cr_assert_eq(memcmp(out[0], out[t], N * sizeof(float)), 0, "variant %d: %d threads differ from 1", variant, t + 1);
            cr_assert_eq(memcmp(norms[0], norms[t], sizeof norms[0]), 0, "variant %d: norm on %d threads", variant, t + 1);
        }
        static float fused[STEPS], fused_p[2];
        if (variant == 1) { memcpy(fused, norms[0], sizeof fused); memcpy(fused_p, out[0], sizeof fused_p); }
        if (variant == 5) {   /* Adam, clipping that never scales: the fused run's bits */
            cr_assert_eq(memcmp(fused, norms[0], sizeof fused), 0, "the norm's own pass differs from the fused one");
            cr_assert_eq(memcmp(fused_p, out[0], sizeof fused_p), 0, "clipping by 1 changed the update");
        }
        for (int t = 0; t < 3; t++) free(out[t]);
    }
    free(p0); free(g); free(mask);
}

Test(optim, grad_norm_clipping) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    float p[3] = {0, 0, 0}, g[3] = {3, 4, 100}, mask[3] = {1, 1, 0};
    rf_model m; fake_model(&m, p, g, mask, 3);
    rf_optim_cfg c; rf_optim_cfg_default(&c, RF_OPT_SGD);
    c.momentum = 0; c.clip_norm = 1.0f;
    rf_optim o;
    cr_assert_eq(rf_optim_init(&ctx, &o, &c, 3), RF_OK);
    /* the masked gradient (100) is not part of the norm */
    float norm = rf_optim_step(&o, &m, 1.0f);  /* criterion macros evaluate twice */
    cr_assert_float_eq(norm, 5.0, 1e-6);
    cr_assert_float_eq(p[0], -0.6, 1e-6);
    cr_assert_float_eq(p[1], -0.8, 1e-6);
    cr_assert_eq(p[2], 0.0f);
    /* below the threshold nothing is scaled */
    g[0] = 0.3f; g[1] = 0.4f;
    norm = rf_optim_step(&o, &m, 1.0f);
    cr_assert_float_eq(norm, 0.5, 1e-6);
    cr_assert_float_eq(p[0], -0.9, 1e-6);
    rf_optim_free(&o);
    c.lr = NAN;
    cr_assert_eq(rf_optim_init(&ctx, &o, &c, 3), RF_ERR_INVALID);
}

Test(optim, schedules) {
    rf_optim_cfg c; rf_optim_cfg_default(&c, RF_OPT_ADAM);
    c.lr = 1.0f;
    cr_assert_float_eq(rf_sched_lr(&c, 7, 10), 1.0, 1e-7);
    c.sched = RF_SCHED_COSINE;
    cr_assert_float_eq(rf_sched_lr(&c, 0, 10), 1.0, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 5, 10), 0.5, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 10, 10), 0.0, 1e-7);
    c.sched = RF_SCHED_LINEAR;
    cr_assert_float_eq(rf_sched_lr(&c, 5, 10), 0.5, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 8, 10), 0.2, 1e-6);
    c.warmup_steps = 4;  /* ramp .25, .5, .75, 1 then decay over steps 4..14 */
    cr_assert_float_eq(rf_sched_lr(&c, 0, 14), 0.25, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 3, 14), 1.0, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 9, 14), 0.5, 1e-7);
    c.warmup_steps = 0; c.sched = RF_SCHED_STEP; c.step_size = 3; c.gamma = 0.1f;
    cr_assert_float_eq(rf_sched_lr(&c, 2, 10), 1.0, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 3, 10), 0.1, 1e-7);
    cr_assert_float_eq(rf_sched_lr(&c, 7, 10), 0.01, 1e-7);
    cr_assert_eq(rf_optim_type_from_name("adamw"), RF_OPT_ADAMW);
    cr_assert_eq(rf_optim_type_from_name("rmsprop"), -1);
    cr_assert_eq(rf_sched_type_from_name("cosine"), RF_SCHED_COSINE);
    cr_assert_str_eq(rf_sched_type_name(RF_SCHED_LINEAR), "linear");
}

/* ---- the training loop ---------------------------------------------------- */
static const char *MLP_SPEC =
    "{\"input\":[1,28,28],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},"
    "{\"type\":\"linear\",\"out\":32,\"name\":\"fc1\"},{\"type\":\"relu\"},"
    "{\"type\":\"dropout\",\"p\":0.1},{\"type\":\"linear\",\"out\":10,\"name\":\"fc2\"}]}";

/* 1,280 synthetic training samples: 1,024 to train on, 256 held out for
 * validation (selection); the test split (320) is only reported. */
typedef struct fixture { rf_ctx ctx; rf_data_splits sp; rf_dataset *train, *val, *test; rf_model *m; } fixture;

static void setup_fx(fixture *f, const char *spec, uint64_t seed) {
    rf_ctx_init(&f->ctx);
    rf_data_opts o;
    rf_data_opts_default(&o);
    o.validation = 256;
    cr_assert_eq(rf_data_open(&f->ctx, "synthetic:1280", &o, &f->sp), RF_OK, "%s", rf_ctx_error(&f->ctx));
    f->train = &f->sp.train;
    f->val = &f->sp.val;
    f->test = f->sp.test;
    cr_assert_eq(f->train->n, 1024);
    cr_assert_eq(rf_model_from_spec(&f->ctx, spec, &f->m), RF_OK, "%s", rf_ctx_error(&f->ctx));
    cr_assert_eq(rf_model_init(&f->ctx, f->m, seed), RF_OK);
}

static void teardown_fx(fixture *f) {
    rf_model_free(f->m);
    rf_data_splits_free(&f->sp);
}

static void small_cfg(rf_train_cfg *c, int64_t iters) {
    rf_train_cfg_default(c);
    c->iterations = iters;
    c->batch = 32;
    c->seed = 5;
    c->optim.sched = RF_SCHED_COSINE;
}

/* rf_model_reserve (called by the training loop before its clock starts)
 * makes the step's blocks up front; the steps that follow compute the same
 * bytes as a model that makes them in its first forward and backward. */
Test(train, reserve_makes_the_blocks_and_changes_no_bit) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_model *a, *b;
    cr_assert_eq(rf_model_from_spec(&ctx, MLP_SPEC, &a), RF_OK);
    cr_assert_eq(rf_model_from_spec(&ctx, MLP_SPEC, &b), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, a, 3), RF_OK);
    cr_assert_eq(rf_model_init(&ctx, b, 3), RF_OK);
    a->input_grad = b->input_grad = 1;
    cr_assert_eq(rf_model_reserve(&ctx, a, 0), RF_ERR_INVALID);
    cr_assert_eq(rf_model_reserve(&ctx, a, 16), RF_OK, "%s", rf_ctx_error(&ctx));
    cr_assert(a->acts && a->dacts && a->saved && a->dinput);
    cr_assert_eq(a->max_batch, 16);
    float x[16 * 784], dl[16 * 10];
    rf_rng g;
    rf_rng_init(&g, 9, 0);
    for (int i = 0; i < 16 * 784; i++) x[i] = rf_rng_normal(&g);
    for (int i = 0; i < 16 * 10; i++) dl[i] = rf_rng_normal(&g) / 16;
    for (int batch = 16; batch >= 8; batch -= 8) {   /* a smaller batch reuses the blocks */
        rf_model *ms[2] = {a, b};
        for (int k = 0; k < 2; k++) {
            const float *logits;
            rf_rng_init(&ms[k]->dropout_rng, 1, (uint64_t)batch);
            rf_model_zero_grad(ms[k]);
            cr_assert_eq(rf_model_forward(&ctx, ms[k], x, batch, 1, &logits), RF_OK);
            cr_assert_eq(rf_model_backward(&ctx, ms[k], dl), RF_OK);
        }
        cr_assert_eq(memcmp(a->grads, b->grads, a->n_params * sizeof(float)), 0, "batch %d", batch);
        cr_assert_eq(memcmp(a->dinput, b->dinput, (size_t)batch * 784 * sizeof(float)), 0, "batch %d", batch);
    }
    cr_assert_eq(a->max_batch, 16);
    rf_model_free(a);
    rf_model_free(b);
}

Test(train, learns_synthetic_and_reports) {
    fixture f; setup_fx(&f, MLP_SPEC, 1);
    rf_train_cfg c; rf_train_cfg_default(&c);
    c.epochs = 3; c.batch = 32; c.eval_every = 16;
    rf_train_result r;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_OK, "%s", rf_ctx_error(&f.ctx));
    cr_assert_eq(r.steps, 3 * (1024 / 32));
    cr_assert_gt(r.test_accuracy, 0.6, "accuracy %g", r.test_accuracy);
    cr_assert_gt(r.val_accuracy, 0.6, "accuracy %g", r.val_accuracy);
    cr_assert_geq(r.best_val_accuracy, r.val_accuracy);
    cr_assert_gt(r.best_iteration, 0);
    cr_assert_eq(r.best_iteration % 16, 0);
    cr_assert_geq(r.test_accuracy_at_best_val, 0.0);
    if (r.best_iteration == r.steps) cr_assert_eq(r.test_accuracy_at_best_val, r.test_accuracy);
    double vacc;
    cr_assert_eq(rf_evaluate(&f.ctx, f.m, f.val, 100, &vacc, NULL), RF_OK);
    cr_assert_float_eq(vacc, r.val_accuracy, 1e-12);
    cr_assert(isfinite(r.train_loss) && r.train_loss < 2.3);
    cr_assert_gt(r.samples_per_s, 0);
    double acc, loss;
    cr_assert_eq(rf_evaluate(&f.ctx, f.m, f.test, 100, &acc, &loss), RF_OK);
    cr_assert_float_eq(acc, r.test_accuracy, 1e-12);
    float *logits;
    cr_assert_eq(rf_predict(&f.ctx, f.m, f.test, 7, &logits), RF_OK);
    int64_t correct = 0;
    for (int64_t i = 0; i < f.test->n; i++) {
        int arg = 0;
        for (int j = 1; j < 10; j++) if (logits[i * 10 + j] > logits[i * 10 + arg]) arg = j;
        correct += arg == f.test->y[i];
    }
    cr_assert_float_eq((double)correct / f.test->n, acc, 1e-12);
    rf_free(logits);
    teardown_fx(&f);
}

static void read_all(const char *path, unsigned char **buf, size_t *n) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    cr_assert_eq(rf_read_file(&ctx, path, buf, n), RF_OK, "%s", rf_ctx_error(&ctx));
}

Test(train, same_seed_gives_byte_identical_checkpoint) {
    char dir[] = "/tmp/raffle_train_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[2][256];
    for (int run = 0; run < 2; run++) {
        fixture f; setup_fx(&f, MLP_SPEC, 7);
        rf_train_cfg c; small_cfg(&c, 40);
        rf_train_result r;
        cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_OK, "%s", rf_ctx_error(&f.ctx));
        snprintf(path[run], sizeof path[run], "%s/run%d.rckpt", dir, run);
        cr_assert_eq(rf_model_save(&f.ctx, f.m, "{\"test\":1}", path[run]), RF_OK, "%s", rf_ctx_error(&f.ctx));
        teardown_fx(&f);
    }
    unsigned char *a, *b; size_t na, nb;
    read_all(path[0], &a, &na);
    read_all(path[1], &b, &nb);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(a, b, na), 0, "checkpoints differ");
    rf_free(a); rf_free(b);
    /* a different seed must give a different model */
    fixture f; setup_fx(&f, MLP_SPEC, 7);
    rf_train_cfg c; small_cfg(&c, 40); c.seed = 6;
    rf_train_result r;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_OK);
    char p3[300]; snprintf(p3, sizeof p3, "%s/run2.rckpt", dir);
    cr_assert_eq(rf_model_save(&f.ctx, f.m, "{\"test\":1}", p3), RF_OK);
    read_all(p3, &b, &nb);
    read_all(path[0], &a, &na);
    cr_assert(na != nb || memcmp(a, b, na) != 0);
    rf_free(a); rf_free(b);
    teardown_fx(&f);
    unlink(path[0]); unlink(path[1]); unlink(p3); rmdir(dir);
}

static volatile int stop_now;
static int64_t stop_at;
static rf_status stop_hook(void *ud, rf_model *m, int64_t step) {
    if (step == stop_at) stop_now = 1;
    return RF_OK;
}

Test(train, stop_and_resume_replays_the_same_run) {
    fixture a; setup_fx(&a, MLP_SPEC, 3);
    fixture b; setup_fx(&b, MLP_SPEC, 3);
    rf_train_cfg c; small_cfg(&c, 50);  /* 50 steps cross the 32-step epoch boundary */
    rf_train_result r;
    cr_assert_eq(rf_train(&a.ctx, a.m, a.train, NULL, NULL, &c, NULL, NULL, &r), RF_OK);
    cr_assert_eq(r.steps, 50);
    cr_assert_eq(r.stopped, 0);

    rf_optim opt;
    cr_assert_eq(rf_optim_init(&b.ctx, &opt, &c.optim, b.m->n_params), RF_OK);
    rf_train_hooks h = {.after_step = stop_hook};
    stop_now = 0; stop_at = 19;
    c.stop_flag = &stop_now;
    cr_assert_eq(rf_train(&b.ctx, b.m, b.train, NULL, NULL, &c, &opt, &h, &r), RF_OK);
    cr_assert_eq(r.stopped, 1);
    cr_assert_eq(r.steps, 20);
    stop_now = 0; stop_at = -1;
    c.start_step = 20;
    cr_assert_eq(rf_train(&b.ctx, b.m, b.train, NULL, NULL, &c, &opt, &h, &r), RF_OK);
    cr_assert_eq(r.steps, 30);
    cr_assert_eq(memcmp(a.m->params, b.m->params, a.m->n_params * sizeof(float)), 0, "resumed run differs");
    rf_optim_free(&opt);
    teardown_fx(&a);
    teardown_fx(&b);
}

static int64_t poison_step;
static rf_status poison(void *ud, rf_model *m, int64_t step, int64_t total) {
    if (step == poison_step) m->params[m->ptensors[2].offset] = NAN;  /* fc2.weight */
    return RF_OK;
}

static rf_status blow_up(void *ud, rf_model *m, int64_t step, int64_t total) {
    if (step == 2) {
        const rf_param *w = rf_model_param(m, "fc2.weight");
        for (size_t i = 0; i < w->numel; i++) m->params[w->offset + i] = 3e38f;
    }
    return RF_OK;
}

Test(train, nan_loss_names_step_and_layer) {
    fixture f; setup_fx(&f, MLP_SPEC, 1);
    rf_train_cfg c; small_cfg(&c, 20);
    rf_train_hooks h = {.before_step = poison};
    poison_step = 4;
    rf_train_result r;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, &h, &r), RF_ERR_NAN);
    const char *msg = rf_ctx_error(&f.ctx);
    cr_assert(strstr(msg, "step 4"), "%s", msg);
    cr_assert(strstr(msg, f.m->ptensors[2].name), "%s", msg);
    teardown_fx(&f);
    /* finite but huge weights: the parameters are finite, fc2's output is not */
    setup_fx(&f, MLP_SPEC, 1);
    small_cfg(&c, 20);
    h.before_step = blow_up;
    rf_status st = rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, &h, &r);
    cr_assert_eq(st, RF_ERR_NAN, "%d %s", st, rf_ctx_error(&f.ctx));
    msg = rf_ctx_error(&f.ctx);
    cr_assert(strstr(msg, "step 2"), "%s", msg);
    cr_assert(strstr(msg, "layers[4] fc2"), "%s", msg);
    teardown_fx(&f);
    /* a diverging learning rate ends in the same error, not in garbage */
    setup_fx(&f, MLP_SPEC, 1);
    small_cfg(&c, 200);
    rf_optim_cfg_default(&c.optim, RF_OPT_SGD);
    c.optim.lr = 1e30f;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_ERR_NAN);
    cr_assert(strstr(rf_ctx_error(&f.ctx), "step "), "%s", rf_ctx_error(&f.ctx));
    teardown_fx(&f);
}

static int loss_calls, epochs_seen;
static rf_status loss_hook(void *ud, rf_model *m, const float *x, const float *logits, const int32_t *labels,
                           const int64_t *idx, int batch, float *dlogits, float *loss) {
    loss_calls++;
    for (int i = 0; i < batch; i++) cr_assert_eq(labels[i], ((rf_dataset *)ud)->y[idx[i]]);
    *loss = rf_loss_xent(logits, labels, batch, m->n_classes, 0.0f, dlogits);
    return RF_OK;
}
static rf_status epoch_hook(void *ud, rf_model *m, int epoch, double acc) {
    cr_assert_eq(epoch, epochs_seen);
    cr_assert(acc > 0.0 && acc <= 1.0, "epoch %d: accuracy %g", epoch, acc);  /* every epoch is evaluated */
    epochs_seen++;
    return RF_OK;
}

Test(train, hooks_are_called) {
    fixture f; setup_fx(&f, MLP_SPEC, 1);
    rf_train_cfg c; small_cfg(&c, 0);
    c.iterations = 0; c.epochs = 2;
    rf_train_hooks h = {.ud = f.train, .loss = loss_hook, .after_epoch = epoch_hook};
    loss_calls = epochs_seen = 0;
    rf_train_result r;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, &h, &r), RF_OK, "%s", rf_ctx_error(&f.ctx));
    cr_assert_eq(loss_calls, 64);
    cr_assert_eq(epochs_seen, 2);
    teardown_fx(&f);
}

/* ---- selection reads the validation split only ----------------------------
 * The adversarial test split is the validation samples with every label
 * moved to the next class: the better a model is on validation, the worse
 * it is there, so selecting on it would pick an early epoch. The hook
 * records, at the end of every epoch, the validation accuracy rf_train
 * reports and what the adversarial split says (evaluated by the test
 * itself). rf_train must pick the validation argmax, report the adversarial
 * accuracy at exactly that epoch, and train and select identically whatever
 * test split it is given (or none). */
typedef struct sel_log {
    const rf_dataset *adv;
    double val[8], adv_acc[8];
    int n;
} sel_log;

static rf_status sel_epoch(void *ud, rf_model *m, int epoch, double val_acc) {
    sel_log *L = ud;
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    cr_assert_lt(L->n, 8);
    cr_assert_eq(epoch, L->n);
    L->val[L->n] = val_acc;
    cr_assert_eq(rf_evaluate(&ctx, m, L->adv, 64, &L->adv_acc[L->n], NULL), RF_OK);
    L->n++;
    return RF_OK;
}

static int argmax_first(const double *x, int n) {
    int a = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[a]) a = i;
    return a;
}

Test(train, selection_never_reads_the_test_split) {
    enum { EPOCHS = 6, PER_EPOCH = 1024 / 64 };
    fixture f[3];
    for (int i = 0; i < 3; i++) setup_fx(&f[i], MLP_SPEC, 11);
    /* the adversarial "test" split: validation samples, labels rotated */
    rf_dataset adv = *f[0].val;
    int32_t *rot = malloc((size_t)adv.n * sizeof *rot);
    for (int64_t i = 0; i < adv.n; i++) rot[i] = (f[0].val->y[i] + 1) % 10;
    adv.y = rot;
    const rf_dataset *tests[3] = {&adv, f[1].test, NULL};
    rf_train_result r[3];
    sel_log L[3];
    for (int i = 0; i < 3; i++) {
        rf_train_cfg c;
        rf_train_cfg_default(&c);
        c.epochs = EPOCHS; c.batch = 64; c.seed = 4;
        c.optim.lr = 3e-4f;   /* slow enough that validation accuracy rises over the epochs */
        memset(&L[i], 0, sizeof L[i]);
        L[i].adv = &adv;
        rf_train_hooks h = {.ud = &L[i], .after_epoch = sel_epoch};
        cr_assert_eq(rf_train(&f[i].ctx, f[i].m, f[i].train, f[i].val, tests[i], &c, NULL, &h, &r[i]), RF_OK, "%s",
                     rf_ctx_error(&f[i].ctx));
        cr_assert_eq(L[i].n, EPOCHS);
    }
    const int best_val = argmax_first(L[0].val, EPOCHS), best_adv = argmax_first(L[0].adv_acc, EPOCHS);
    /* the data discriminate: selecting on the test split would choose differently */
    cr_assert_neq(best_val, best_adv, "val and adversarial test agree on epoch %d: the test proves nothing", best_val);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(r[i].best_iteration, (int64_t)(best_val + 1) * PER_EPOCH, "run %d: best at %lld, val argmax epoch %d",
                     i, (long long)r[i].best_iteration, best_val);
        cr_assert_eq(r[i].best_val_accuracy, L[0].val[best_val]);
        cr_assert_eq(memcmp(f[i].m->params, f[0].m->params, f[0].m->n_params * sizeof(float)), 0,
                     "run %d: the test split changed training", i);
    }
    /* the test split is reported at the selected epoch, from the kept copy */
    cr_assert_float_eq(r[0].test_accuracy_at_best_val, L[0].adv_acc[best_val], 1e-12);
    cr_assert_float_eq(r[0].test_accuracy, L[0].adv_acc[EPOCHS - 1], 1e-12);
    cr_assert_eq(r[2].test_accuracy, -1.0);
    cr_assert_eq(r[2].test_accuracy_at_best_val, -1.0);
    /* without a validation split there is nothing to select on */
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 1; c.batch = 64;
    rf_train_result nr;
    cr_assert_eq(rf_train(&f[2].ctx, f[2].m, f[2].train, NULL, &adv, &c, NULL, NULL, &nr), RF_OK);
    cr_assert_eq(nr.best_iteration, -1);
    cr_assert_eq(nr.best_val_accuracy, -1.0);
    cr_assert_eq(nr.test_accuracy_at_best_val, -1.0);
    cr_assert_geq(nr.test_accuracy, 0.0);
    free(rot);
    for (int i = 0; i < 3; i++) teardown_fx(&f[i]);
}

/* Augmentation reaches the batches: with crop+flip the run differs from the
 * plain one, and is the same for the same seed (a pure function of it). */
Test(train, augment_changes_batches_deterministically) {
    fixture f[3];
    for (int i = 0; i < 3; i++) setup_fx(&f[i], MLP_SPEC, 2);
    for (int i = 0; i < 3; i++) {
        rf_train_cfg c;
        small_cfg(&c, 20);
        if (i > 0) cr_assert_eq(rf_augment_parse(&f[i].ctx, "crop:2+flip", &c.augment), RF_OK);
        rf_train_result r;
        cr_assert_eq(rf_train(&f[i].ctx, f[i].m, f[i].train, NULL, NULL, &c, NULL, NULL, &r), RF_OK);
    }
    size_t bytes = f[0].m->n_params * sizeof(float);
    cr_assert_neq(memcmp(f[0].m->params, f[1].m->params, bytes), 0, "augmentation changed nothing");
    cr_assert_eq(memcmp(f[1].m->params, f[2].m->params, bytes), 0, "augmented runs differ");
    for (int i = 0; i < 3; i++) teardown_fx(&f[i]);
}

Test(train, rejects_bad_input) {
    fixture f; setup_fx(&f, MLP_SPEC, 1);
    rf_train_cfg c; small_cfg(&c, 5);
    rf_train_result r;
    rf_model *small;
    const char *two = "{\"input\":[1,28,28],\"classes\":2,\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":2}]}";
    cr_assert_eq(rf_model_from_spec(&f.ctx, two, &small), RF_OK, "%s", rf_ctx_error(&f.ctx));
    cr_assert_eq(rf_train(&f.ctx, small, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_ERR_SHAPE);
    cr_assert(strstr(rf_ctx_error(&f.ctx), "10 classes"), "%s", rf_ctx_error(&f.ctx));
    rf_model_free(small);
    const char *wide = "{\"input\":[1,32,32],\"classes\":10,\"layers\":[{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":10}]}";
    cr_assert_eq(rf_model_from_spec(&f.ctx, wide, &small), RF_OK);
    cr_assert_eq(rf_train(&f.ctx, small, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_ERR_SHAPE);
    rf_model_free(small);
    c.iterations = 0; c.epochs = 0;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_ERR_INVALID);
    small_cfg(&c, 5);
    c.label_smoothing = 1.5f;
    cr_assert_eq(rf_train(&f.ctx, f.m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_ERR_INVALID);
    teardown_fx(&f);
}

/* Every allocation the loop (and what it calls) makes may fail: the result is
 * RF_ERR_NOMEM, never a crash or a half-trained "success". */
Test(train, allocation_failures_are_errors) {
    fixture f; setup_fx(&f, MLP_SPEC, 1);
    rf_train_cfg c; small_cfg(&c, 3);
    c.eval_limit = 64;
    rf_train_result r;
    {   /* one clean run first so process-wide lazy state (kernel workspaces) exists */
        rf_model *m;
        cr_assert_eq(rf_model_clone(&f.ctx, f.m, &m), RF_OK);
        cr_assert_eq(rf_train(&f.ctx, m, f.train, f.val, f.test, &c, NULL, NULL, &r), RF_OK);
        rf_model_free(m);
    }
    const long live = rf_alloc_live();
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        rf_model *m;
        cr_assert_eq(rf_model_clone(&f.ctx, f.m, &m), RF_OK);
        rf_alloc_fail_after(n);
        rf_status s = rf_train(&f.ctx, m, f.train, f.val, f.test, &c, NULL, NULL, &r);
        rf_alloc_fail_after(-1);
        cr_assert(s == RF_OK || s == RF_ERR_NOMEM, "n=%ld: %s (%s)", n, rf_strerror(s), rf_ctx_error(&f.ctx));
        if (s == RF_OK) { ok = 1; cr_assert_eq(r.steps, 3); }
        rf_model_free(m);
        cr_assert_eq(rf_alloc_live(), live, "n=%ld: %ld allocations leaked", n, rf_alloc_live() - live);
    }
    cr_assert(ok, "training never succeeded");
    teardown_fx(&f);
}
