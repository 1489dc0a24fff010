/* raffle's dense GEMM (src/kernels/gemm*.c) and thread pool (src/core/threads.c).
 *
 * The GEMM promises one exact sequence of fused multiply-adds per output
 * element, so every ISA (scalar, AVX2, AVX-512), every blocking and every
 * thread count must give the reference's bytes (memcmp, no tolerance): on
 * awkward sizes (1, 7, 15, 17, 33, 127; K = 1 and K past several K blocks),
 * all four transpose combinations, padded strides, beta 0 and 1, and with
 * NaN, Inf and signed zeros in the operands. The reference itself is
 * checked against a double-precision product. ISA legs the CPU lacks are
 * skipped with a reason, never passed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raffle/gemm.h"
#include "raffle/kernels.h"
#include "raffle/threads.h"

#define LEN(a) (int)(sizeof(a) / sizeof(a[0]))

static float *randv(rf_rng *r, size_t n) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    cr_assert(v);
    for (size_t i = 0; i < n; i++) v[i] = rf_rng_normal(r);
    return v;
}

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Sprinkles special values over v: NaNs with different payloads and signs,
 * infinities, signed zeros (about one element in `every`). */
static void specials(rf_rng *r, float *v, size_t n, int every) {
    const float sp[] = {bits_f(0x7fc00001u), bits_f(0xffc00002u), bits_f(0x7fa00003u) /* signalling */, INFINITY,
                        -INFINITY, 0.0f, -0.0f, 1e-40f /* subnormal */, 3e38f};
    for (size_t i = 0; i < n; i++)
        if (rf_rng_below(r, (uint32_t)every) == 0) v[i] = sp[rf_rng_below(r, (uint32_t)LEN(sp))];
}

typedef struct prob {
    int ta, tb, M, N, K, acc, lda, ldb, ldc;
    float *A, *B, *C0, *want;
} prob;

static void prob_make(prob *p, rf_rng *r, int ta, int tb, int M, int N, int K, int acc, int pad, int special) {
    *p = (prob){ta, tb, M, N, K, acc, 0, 0, 0, NULL, NULL, NULL, NULL};
    p->lda = (ta ? M : K) + (pad ? 3 : 0);
    p->ldb = (tb ? K : N) + (pad ? 5 : 0);
    p->ldc = N + (pad ? 2 : 0);
    if (p->lda < 1) p->lda = 1;
    if (p->ldb < 1) p->ldb = 1;
    if (p->ldc < 1) p->ldc = 1;
    size_t na = (size_t)(ta ? K : M) * p->lda, nb = (size_t)(tb ? N : K) * p->ldb, nc = (size_t)M * p->ldc;
    p->A = randv(r, na);
    p->B = randv(r, nb);
    p->C0 = randv(r, nc);
    if (special) {
        specials(r, p->A, na, special);
        specials(r, p->B, nb, special);
        specials(r, p->C0, nc, special);
    }
    p->want = malloc((nc ? nc : 1) * sizeof(float));
    cr_assert(p->want);
    memcpy(p->want, p->C0, nc * sizeof(float));
    rf_gemm_f32_ref(ta, tb, M, N, K, p->A, p->lda, p->B, p->ldb, acc, p->want, p->ldc);
}

static void prob_free(prob *p) {
    free(p->A); free(p->B); free(p->C0); free(p->want);
}

/* Runs p on g and compares every byte of C (padding columns included:
 * they must be untouched) with the reference. */
static void prob_check(rf_gemm *g, const prob *p, const char *what) {
    size_t nc = (size_t)p->M * p->ldc;
    float *C = malloc((nc ? nc : 1) * sizeof(float));
    cr_assert(C);
    memcpy(C, p->C0, nc * sizeof(float));
    cr_assert_eq(rf_gemm_f32(g, p->ta, p->tb, p->M, p->N, p->K, p->A, p->lda, p->B, p->ldb, p->acc, C, p->ldc), RF_OK,
                 "%s", rf_gemm_error(g));
    for (int i = 0; i < p->M; i++) {
        const float *got = C + (size_t)i * p->ldc, *want = p->want + (size_t)i * p->ldc;
        if (memcmp(got, want, (size_t)p->ldc * sizeof(float)) == 0) continue;
        int j = 0;
        while (memcmp(got + j, want + j, sizeof(float)) == 0) j++;
        uint32_t a, b;
        memcpy(&a, got + j, 4);
        memcpy(&b, want + j, 4);
        cr_assert_fail("%s (isa %s, %d threads): %dx%dx%d ta=%d tb=%d acc=%d: C[%d][%d] = %08x, reference %08x", what,
                 rf_gemm_isa_name(rf_gemm_isa_of(g)), rf_gemm_threads(g), p->M, p->N, p->K, p->ta, p->tb, p->acc,
                 i, j, a, b);
    }
    free(C);
}

static rf_gemm *make_gemm(rf_gemm_isa isa, rf_pool *pool, int kc, int mc, int nc) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_gemm *g = NULL;
    rf_gemm_cfg cfg = {.isa = isa, .pool = pool, .kc = kc, .mc = mc, .nc = nc};
    cr_assert_eq(rf_gemm_create(&ctx, &cfg, &g), RF_OK, "%s", rf_ctx_error(&ctx));
    return g;
}

static rf_pool *make_pool(int threads) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_pool *p = NULL;
    cr_assert_eq(rf_pool_create(&ctx, threads, &p), RF_OK, "%s", rf_ctx_error(&ctx));
    return p;
}

static const int sizes[] = {1, 7, 15, 17, 33, 127};
static const int ksizes[] = {1, 2, 7, 17, 64, 300, 1100};

/* Every size pair and transpose/beta combination for one K on g. */
static void sweep(rf_gemm *g, rf_rng *r, int K, int special, const char *what) {
    for (int i = 0; i < LEN(sizes); i++)
        for (int j = 0; j < LEN(sizes); j++) {
            int combo = (int)rf_rng_below(r, 8);   /* one of the 8 (ta, tb, acc) per pair, rotating */
            prob p;
            prob_make(&p, r, combo & 1, (combo >> 1) & 1, sizes[i], sizes[j], K, combo >> 2, (i + j) & 1, special);
            prob_check(g, &p, what);
            prob_free(&p);
        }
}

/* The full check on one ISA: default blocking, and tiny blocks (K blocks
 * of 5, 12-row A blocks, 32-column B panels) so that every carry of C
 * between K blocks and every block edge is exercised on small shapes. */
static void isa_leg(rf_gemm_isa isa) {
    rf_rng r;
    rf_rng_init(&r, 22, (uint64_t)isa);
    rf_gemm *g = make_gemm(isa, NULL, 0, 0, 0), *tiny = make_gemm(isa, NULL, 5, 12, 32);
    cr_assert_eq(rf_gemm_isa_of(g), isa);
    for (int k = 0; k < LEN(ksizes); k++) {
        sweep(g, &r, ksizes[k], 0, "default blocking");
        if (ksizes[k] <= 300) sweep(tiny, &r, ksizes[k], 0, "tiny blocking");
    }
    /* all 8 combinations on two fixed shapes */
    for (int combo = 0; combo < 8; combo++) {
        prob p;
        prob_make(&p, &r, combo & 1, (combo >> 1) & 1, 33, 65, 129, combo >> 2, combo & 1, 0);
        prob_check(g, &p, "all combos");
        prob_check(tiny, &p, "all combos, tiny blocking");
        prob_free(&p);
        prob_make(&p, &r, combo & 1, (combo >> 1) & 1, 130, 70, 1, combo >> 2, 1, 0);
        prob_check(g, &p, "K=1");
        prob_free(&p);
    }
    rf_gemm_free(g);
    rf_gemm_free(tiny);
}

Test(gemm, reference_is_the_product) {
    rf_rng r;
    rf_rng_init(&r, 1, 0);
    for (int combo = 0; combo < 8; combo++) {
        prob p;
        prob_make(&p, &r, combo & 1, (combo >> 1) & 1, 17, 33, 300, combo >> 2, 1, 0);
        for (int i = 0; i < p.M; i++)
            for (int j = 0; j < p.N; j++) {
                double s = p.acc ? p.C0[(size_t)i * p.ldc + j] : 0.0;
                for (int k = 0; k < p.K; k++)
                    s += (double)(p.ta ? p.A[(size_t)k * p.lda + i] : p.A[(size_t)i * p.lda + k]) *
                         (p.tb ? p.B[(size_t)j * p.ldb + k] : p.B[(size_t)k * p.ldb + j]);
                cr_assert(fabs(s - p.want[(size_t)i * p.ldc + j]) <= 1e-4 * (1.0 + fabs(s)), "(%d,%d)", i, j);
            }
        prob_free(&p);
    }
}

/* Skips the calling test, visibly, on CPUs without the ISA. */
static void need_isa(rf_gemm_isa isa) {
    if (!rf_gemm_isa_supported(isa))
        cr_skip_test("this CPU has no %s: the %s leg is not run", isa == RF_GEMM_AVX512 ? "AVX-512" : "AVX2+FMA",
                     rf_gemm_isa_name(isa));
}

Test(gemm, scalar_matches_reference_bit_for_bit) { isa_leg(RF_GEMM_SCALAR); }
Test(gemm, avx2_matches_reference_bit_for_bit) { need_isa(RF_GEMM_AVX2); isa_leg(RF_GEMM_AVX2); }
Test(gemm, avx512_matches_reference_bit_for_bit) { need_isa(RF_GEMM_AVX512); isa_leg(RF_GEMM_AVX512); }

/* NaN (several payloads, both signs, a signalling one), infinities, signed
 * zeros and subnormals: which NaN comes out depends on operand order, so
 * this holds only because every kernel puts B first like the reference. */
/* Valgrind runs the vector code on its own FMA emulation, which returns a
 * different NaN than the hardware when several operands are NaN. */
static int under_valgrind(void) {
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

static void special_leg(rf_gemm_isa isa) {
    if (isa != RF_GEMM_SCALAR && under_valgrind())
        cr_skip_test("valgrind's FMA emulation does not follow x86's NaN operand order");
    rf_rng r;
    rf_rng_init(&r, 23, (uint64_t)isa);
    rf_gemm *g = make_gemm(isa, NULL, 0, 0, 0), *tiny = make_gemm(isa, NULL, 3, 6, 16);
    sweep(g, &r, 17, 7, "specials");
    sweep(tiny, &r, 40, 11, "specials, tiny blocking");
    /* beta 0 never reads C: a NaN there must not come through */
    prob p;
    prob_make(&p, &r, 0, 1, 9, 21, 13, 0, 1, 0);
    for (size_t i = 0; i < (size_t)p.M * p.ldc; i++) p.C0[i] = p.want[i] = bits_f(0x7fc0dead);
    rf_gemm_f32_ref(p.ta, p.tb, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, 0, p.want, p.ldc);
    for (int i = 0; i < p.M; i++)
        for (int j = 0; j < p.N; j++) cr_assert(!isnan(p.want[(size_t)i * p.ldc + j]));
    prob_check(g, &p, "beta 0 over NaN");
    prob_free(&p);
    rf_gemm_free(g);
    rf_gemm_free(tiny);
}

Test(gemm, specials_scalar) { special_leg(RF_GEMM_SCALAR); }
Test(gemm, specials_avx2) { need_isa(RF_GEMM_AVX2); special_leg(RF_GEMM_AVX2); }
Test(gemm, specials_avx512) { need_isa(RF_GEMM_AVX512); special_leg(RF_GEMM_AVX512); }

/* Same bytes for 1, 2, 3 and 4 threads (a 4-thread pool on a 2-core
 * machine still splits C four ways), on shapes large enough to be split,
 * with default and small blocking. */
Test(gemm, thread_count_does_not_change_the_bytes) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_pool *pool = make_pool(4);
    rf_rng r;
    rf_rng_init(&r, 24, 0);
    const int shapes[][3] = {{128, 300, 784}, {300, 784, 128}, {131, 67, 255}, {7, 1201, 150}, {1000, 9, 200}};
    rf_gemm_isa top = rf_gemm_isa_supported(RF_GEMM_AVX512) ? RF_GEMM_AVX512
                      : rf_gemm_isa_supported(RF_GEMM_AVX2) ? RF_GEMM_AVX2 : RF_GEMM_SCALAR;
    for (int t = 1; t <= 4; t++) {
        rf_gemm_cfg cfg = {.isa = top, .pool = pool, .threads = t};
        rf_gemm *g = NULL, *small = NULL;
        cr_assert_eq(rf_gemm_create(&ctx, &cfg, &g), RF_OK);
        cfg.kc = 50; cfg.mc = 30; cfg.nc = 64;
        cr_assert_eq(rf_gemm_create(&ctx, &cfg, &small), RF_OK);
        cr_assert_eq(rf_gemm_threads(g), t);
        for (int s = 0; s < LEN(shapes); s++) {
            prob p;
            prob_make(&p, &r, s & 1, (s >> 1) & 1, shapes[s][0], shapes[s][1], shapes[s][2], s & 1, s & 1, 0);
            prob_check(g, &p, "threads");
            prob_check(small, &p, "threads, small blocking");
            prob_free(&p);
        }
        rf_gemm_free(g);
        rf_gemm_free(small);
    }
    rf_pool_free(pool);
}

/* Winograd's batches of 16 and 36 products, and 72 (past the op list kept
 * on the stack, so it is allocated): the same bytes as single calls, on
 * one and two threads, with the A operands in permuted order. */
Test(gemm, batch_equals_single_products) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_pool *pool = make_pool(2);
    rf_rng r;
    rf_rng_init(&r, 25, 0);
    enum { PMAX = 72, MX = 64, NX = 196, KX = 64 };
    float *A = randv(&r, (size_t)PMAX * MX * KX), *B = randv(&r, (size_t)PMAX * KX * NX);
    float *C0 = randv(&r, (size_t)PMAX * MX * NX);
    float *want = malloc(sizeof(float) * PMAX * MX * NX), *got = malloc(sizeof(float) * PMAX * MX * NX);
    const float *pa[PMAX], *pb[PMAX];
    float *pc[PMAX];
    /* count, M, N, K: the larger batches on smaller products (test time) */
    static const int cases[3][4] = {{16, MX, NX, KX}, {36, 32, 100, 48}, {72, 16, 40, 24}};
    for (int ci = 0; ci < 3; ci++)
        for (int acc = 0; acc < 2; acc++)
            for (int ta = 0; ta < 2; ta++) {
                const int P = cases[ci][0], M = cases[ci][1], N = cases[ci][2], K = cases[ci][3];
                memcpy(want, C0, sizeof(float) * P * M * N);
                for (int p = 0; p < P; p++) {
                    pa[p] = A + (size_t)(P - 1 - p) * M * K;
                    pb[p] = B + (size_t)p * K * N;
                    pc[p] = got + (size_t)p * M * N;
                    rf_gemm_f32_ref(ta, 0, M, N, K, pa[p], ta ? M : K, pb[p], N, acc, want + (size_t)p * M * N, N);
                }
                for (int t = 1; t <= 2; t++) {
                    rf_gemm *g = NULL;
                    rf_gemm_cfg cfg = {.pool = pool, .threads = t};
                    cr_assert_eq(rf_gemm_create(&ctx, &cfg, &g), RF_OK);
                    memcpy(got, C0, sizeof(float) * P * M * N);
                    cr_assert_eq(rf_gemm_f32_batch(g, ta, 0, M, N, K, P, pa, ta ? M : K, pb, N, acc, pc, N), RF_OK);
                    cr_assert(memcmp(got, want, sizeof(float) * P * M * N) == 0, "batch of %d ta=%d acc=%d threads=%d",
                              P, ta, acc, t);
                    rf_gemm_free(g);
                }
            }
    free(A); free(B); free(C0); free(want); free(got);
    rf_pool_free(pool);
}

/* A pre-packed op(A) (rf_gemm_pack_a, then rf_gemm_f32_packed_a on a
 * workspace): the reference's bytes on every ISA, with default and tiny
 * blocking (several K blocks, the multi-A-block order for M > mc, an odd
 * last panel), both transposes, beta 0 and 1, NaN/Inf in the operands; a
 * buffer packed by one rf_gemm read by another of the same blocking (the
 * Winograd layers pack on one thread and multiply on others). ~0.2 s. */
static void packed_leg(rf_gemm_isa isa) {
    rf_rng r;
    rf_rng_init(&r, 26, (uint64_t)isa);
    rf_pool *pool = make_pool(2);
    rf_gemm *g[2] = {make_gemm(isa, pool, 0, 0, 0), make_gemm(isa, NULL, 5, 12, 32)};
    rf_gemm *g2 = make_gemm(isa, NULL, 0, 0, 0);
    static const int shapes[][3] = {{64, 128, 64}, {33, 65, 129}, {7, 17, 300}, {127, 15, 17}, {1, 1, 1}, {130, 70, 1}};
    for (int s = 0; s < LEN(shapes); s++)
        for (int combo = 0; combo < 8; combo++)
            for (int b = 0; b < 2; b++) {
                prob p;
                prob_make(&p, &r, combo & 1, (combo >> 1) & 1, shapes[s][0], shapes[s][1], shapes[s][2], combo >> 2,
                          (s + combo) & 1, combo == 5 ? 7 : 0);
                size_t na = rf_gemm_packed_a_floats(p.M, p.K), nc = (size_t)p.M * p.ldc;
                float *Ap = malloc(na * sizeof(float)), *C = malloc(nc * sizeof(float));
                cr_assert(Ap && C);
                cr_assert_eq(rf_gemm_pack_a(g[b], p.ta, p.M, p.K, p.A, p.lda, Ap), RF_OK);
                rf_gemm *use = b == 0 && (combo & 1) ? g2 : g[b];   /* another rf_gemm, same blocking */
                for (int t = 0; t < rf_gemm_threads(use); t++) {
                    memcpy(C, p.C0, nc * sizeof(float));
                    cr_assert_eq(rf_gemm_f32_packed_a(use, t, p.M, p.N, p.K, Ap, p.tb, p.B, p.ldb, p.acc, C, p.ldc),
                                 RF_OK);
                    cr_assert(memcmp(C, p.want, nc * sizeof(float)) == 0,
                              "packed A, isa %s, blocking %d, workspace %d: %dx%dx%d ta=%d tb=%d acc=%d",
                              rf_gemm_isa_name(isa), b, t, p.M, p.N, p.K, p.ta, p.tb, p.acc);
                }
                free(Ap);
                free(C);
                prob_free(&p);
            }
    /* rejections: bad sizes, strides, workspace, NULL buffers */
    float A[4] = {0}, B[4] = {0}, C[4] = {0}, Ap[64];
    cr_assert_eq(rf_gemm_packed_a_floats(-1, 2), 0);
    cr_assert_eq(rf_gemm_pack_a(g[0], 0, 2, 2, A, 1, Ap), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_pack_a(g[0], 0, 2, 2, NULL, 2, Ap), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_pack_a(g[0], 0, -1, 2, A, 2, Ap), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_f32_packed_a(g[0], 2, 2, 2, 2, Ap, 0, B, 2, 0, C, 2), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_f32_packed_a(g[0], 0, 2, 2, 2, Ap, 0, B, 1, 0, C, 2), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_f32_packed_a(g[0], 0, 2, 2, 2, NULL, 0, B, 2, 0, C, 2), RF_ERR_INVALID);
    for (int i = 0; i < 4; i++) cr_assert_eq(C[i], 0.0f);
    rf_gemm_free(g[0]);
    rf_gemm_free(g[1]);
    rf_gemm_free(g2);
    rf_pool_free(pool);
}
Test(gemm, packed_a_scalar) { packed_leg(RF_GEMM_SCALAR); }
Test(gemm, packed_a_avx2) { need_isa(RF_GEMM_AVX2); packed_leg(RF_GEMM_AVX2); }
Test(gemm, packed_a_avx512) { need_isa(RF_GEMM_AVX512); packed_leg(RF_GEMM_AVX512); }

/* rf_gemm_pack_a_rows, every K row once in groups, gives the bytes
 * of rf_gemm_pack_a (trans_a, lda = M) with default and tiny blocking
 * (several K blocks, an odd last panel); bad rows rejected. ~1 ms. */
Test(gemm, pack_a_rows_match_pack_a) {
    rf_rng r;
    rf_rng_init(&r, 27, 0);
    rf_gemm *g[2] = {make_gemm(RF_GEMM_SCALAR, NULL, 0, 0, 0), make_gemm(RF_GEMM_SCALAR, NULL, 5, 12, 32)};
    static const int shapes[][2] = {{64, 128}, {33, 65}, {7, 300}, {1, 1}, {130, 7}};
    for (int s = 0; s < LEN(shapes); s++)
        for (int b = 0; b < 2; b++) {
            const int M = shapes[s][0], K = shapes[s][1];
            size_t na = rf_gemm_packed_a_floats(M, K);
            float *A = malloc((size_t)M * K * sizeof(float)), *want = calloc(na, sizeof(float)),
                  *got = calloc(na, sizeof(float));
            cr_assert(A && want && got);
            for (size_t i = 0; i < (size_t)M * K; i++) A[i] = rf_rng_uniform(&r) - 0.5f;
            cr_assert_eq(rf_gemm_pack_a(g[b], 1, M, K, A, M, want), RF_OK);
            /* groups of 1-9 rows (crossing K blocks), in a scrambled group order */
            int starts[301], ng = 0;
            for (int kk = 0; kk < K; kk += 1 + ng % 9) starts[ng++] = kk;
            starts[ng] = K;
            for (int i = 0; i < ng; i++) {
                int q = (int)(((long)i * 37) % ng);   /* a permutation: no group count here is a multiple of 37 */
                cr_assert_eq(rf_gemm_pack_a_rows(g[b], M, K, starts[q], starts[q + 1] - starts[q],
                                                 A + (size_t)starts[q] * M, M, got), RF_OK);
            }
            cr_assert(memcmp(want, got, (size_t)(M + 5) / 6 * 6 * K * sizeof(float)) == 0, "M %d K %d blocking %d", M, K, b);
            free(A);
            free(want);
            free(got);
        }
    float a[4] = {0}, Ap[64];
    cr_assert_eq(rf_gemm_pack_a_rows(g[0], 2, 2, 1, 2, a, 2, Ap), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_pack_a_rows(g[0], 2, 2, -1, 1, a, 2, Ap), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_pack_a_rows(g[0], 2, 2, 0, 1, a, 1, Ap), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_pack_a_rows(g[0], 2, 2, 0, 1, NULL, 2, Ap), RF_ERR_INVALID);
    rf_gemm_free(g[0]);
    rf_gemm_free(g[1]);
}

Test(gemm, empty_and_zero_k) {
    rf_gemm *g = make_gemm(RF_GEMM_AUTO, NULL, 0, 0, 0);
    float C[12], A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4};
    for (int i = 0; i < 12; i++) C[i] = (float)i + 0.5f;
    /* M = 0, N = 0: nothing touched, NULL operands allowed */
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 0, 3, 2, NULL, 2, NULL, 3, 0, NULL, 3), RF_OK);
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 3, 0, 2, NULL, 2, NULL, 1, 0, C, 1), RF_OK);
    cr_assert_eq(C[0], 0.5f);
    /* K = 0 with accumulate: unchanged; without: zeros, padding kept */
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 3, 3, 0, NULL, 1, NULL, 3, 1, C, 4), RF_OK);
    for (int i = 0; i < 12; i++) cr_assert_eq(C[i], (float)i + 0.5f);
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 3, 3, 0, NULL, 1, NULL, 3, 0, C, 4), RF_OK);
    for (int i = 0; i < 12; i++) cr_assert_eq(C[i], i % 4 == 3 ? (float)i + 0.5f : 0.0f, "C[%d]", i);
    /* 1x1x1 */
    cr_assert_eq(rf_gemm_f32(g, 1, 1, 1, 1, 1, A, 1, B, 1, 1, C, 1), RF_OK);
    cr_assert_eq(C[0], 1.0f);
    rf_gemm_free(g);
}

Test(gemm, bad_arguments_are_rejected_untouched) {
    rf_gemm *g = make_gemm(RF_GEMM_AUTO, NULL, 0, 0, 0);
    float A[64] = {0}, B[64] = {0}, C[64];
    for (int i = 0; i < 64; i++) C[i] = 7.0f;
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 4, 4, 4, A, 3, B, 4, 0, C, 4), RF_ERR_INVALID);   /* lda < K */
    cr_assert(strstr(rf_gemm_error(g), "lda"), "%s", rf_gemm_error(g));
    cr_assert_eq(rf_gemm_f32(g, 1, 0, 4, 4, 4, A, 3, B, 4, 0, C, 4), RF_ERR_INVALID);   /* lda < M */
    cr_assert_eq(rf_gemm_f32(g, 0, 1, 4, 5, 4, A, 4, B, 3, 0, C, 5), RF_ERR_INVALID);   /* ldb < K */
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 4, 5, 4, A, 4, B, 5, 0, C, 4), RF_ERR_INVALID);   /* ldc < N */
    cr_assert_eq(rf_gemm_f32(g, 0, 0, -1, 4, 4, A, 4, B, 4, 0, C, 4), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_f32(g, 0, 0, 4, 4, 4, NULL, 4, B, 4, 0, C, 4), RF_ERR_INVALID);
    const float *pa[1] = {A}, *pb[1] = {B};
    float *pc[1] = {C};
    cr_assert_eq(rf_gemm_f32_batch(g, 0, 0, 4, 4, 4, -1, pa, 4, pb, 4, 0, pc, 4), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_f32_batch(g, 0, 0, 4, 4, 4, 1, pa, 2, pb, 4, 0, pc, 4), RF_ERR_INVALID);
    for (int i = 0; i < 64; i++) cr_assert_eq(C[i], 7.0f);
    rf_gemm_free(g);

    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_gemm *h = NULL;
    cr_assert_eq(rf_gemm_create(&ctx, &(rf_gemm_cfg){.isa = (rf_gemm_isa)9}, &h), RF_ERR_INVALID);
    cr_assert_eq(rf_gemm_create(&ctx, &(rf_gemm_cfg){.kc = -1}, &h), RF_ERR_INVALID);
    cr_assert_null(h);
    cr_assert_str_eq(rf_gemm_isa_name(RF_GEMM_AVX512), "avx512");
    cr_assert_str_eq(rf_gemm_isa_name((rf_gemm_isa)42), "?");
    rf_gemm_free(NULL);
}

Test(gemm, allocation_failures_leak_nothing) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    for (long n = 0; n < 8; n++) {
        long live = rf_alloc_live();
        rf_pool *pool = NULL;
        rf_gemm *g = NULL;
        rf_alloc_fail_after(n);
        rf_status a = rf_pool_create(&ctx, 2, &pool);
        rf_status b = a == RF_OK ? rf_gemm_create(&ctx, &(rf_gemm_cfg){.pool = pool}, &g) : RF_ERR_NOMEM;
        rf_alloc_fail_after(-1);
        cr_assert(a == RF_OK || a == RF_ERR_NOMEM);
        cr_assert(b == RF_OK || b == RF_ERR_NOMEM);
        cr_assert((b == RF_OK) == (g != NULL));
        rf_gemm_free(g);
        rf_pool_free(pool);
        cr_assert_eq(rf_alloc_live(), live, "leak after failing allocation %ld", n);
    }
}

Test(gemm, cache_sizes_and_blocking) {
    long l1, l2, l3;
    rf_gemm_cache_sizes(&l1, &l2, &l3);
    cr_assert(l1 >= 4096 && l2 >= l1 && l3 > 0, "%ld %ld %ld", l1, l2, l3);
    rf_gemm *g = make_gemm(RF_GEMM_AUTO, NULL, 0, 0, 0);
    int kc, mc, nc, mr, nr;
    rf_gemm_blocking(g, &kc, &mc, &nc, &mr, &nr);
    cr_assert(kc >= 128 && kc <= 512 && mc >= 24 && mc % 24 == 0 && nc >= nr && nc % nr == 0 && mr == 6);
    rf_gemm_free(g);
}

/* ---- thread pool ------------------------------------------------------------ */
typedef struct count_job { int hits[8]; int n_seen[8]; } count_job;

static void count_part(void *arg, int t, int n) {
    count_job *j = arg;
    j->hits[t]++;
    j->n_seen[t] = n;
}

Test(threads, every_part_runs_once_per_job) {
    rf_pool *p = make_pool(3);
    cr_assert_eq(rf_pool_threads(p), 3);
    for (int iter = 0; iter < 2000; iter++) {
        int n = 1 + iter % 5;   /* 4 and 5 are clamped to 3 */
        count_job j = {{0}, {0}};
        rf_pool_run(p, n, count_part, &j);
        int m = n > 3 ? 3 : n;
        for (int t = 0; t < 8; t++) {
            cr_assert_eq(j.hits[t], t < m ? 1 : 0, "iter %d part %d", iter, t);
            if (t < m) cr_assert_eq(j.n_seen[t], m);
        }
    }
    rf_pool_free(p);
    /* NULL pool: the caller alone */
    count_job j = {{0}, {0}};
    rf_pool_run(NULL, 4, count_part, &j);
    cr_assert_eq(j.hits[0], 1);
    cr_assert_eq(j.n_seen[0], 1);
    cr_assert_eq(rf_pool_threads(NULL), 1);
    rf_pool_free(NULL);
}

/* After the workers fall asleep (longer than their spin), a job still wakes them. */
Test(threads, sleeping_workers_wake_up) {
    rf_pool *p = make_pool(2);
    for (int iter = 0; iter < 5; iter++) {
        struct timespec ts = {0, 2000000};   /* 2 ms */
        nanosleep(&ts, NULL);
        count_job j = {{0}, {0}};
        rf_pool_run(p, 2, count_part, &j);
        cr_assert_eq(j.hits[0] + j.hits[1], 2);
    }
    rf_pool_free(p);
}

/* Burns about ms milliseconds of this thread's CPU time. */
static void burn_cpu(double ms) {
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    volatile double x = 1.0;
    do {
        for (int i = 0; i < 1000; i++) x = x * 1.0000001 + 1e-9;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    } while ((double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6 < ms);
}

/* Part t burns (t + 1) ms. */
static void burn_part(void *arg, int t, int n) {
    (void)arg; (void)n;
    burn_cpu(1.0 + t);
}

/* The profile counters (thread CPU time): the caller's work between jobs
 * is serial, each job's longest part its span, all parts its work; jobs on
 * one thread are serial too, and the counters start at zero. */
Test(threads, profile_counters) {
    rf_pool *p = make_pool(3);
    rf_pool_stats st;
    rf_pool_stats_get(p, &st);
    cr_assert_eq(st.jobs, 0);
    rf_pool_profile(p, 1);
    burn_cpu(2.0);
    for (int i = 0; i < 3; i++) rf_pool_run(p, 3, burn_part, NULL);   /* parts of 1, 2, 3 ms */
    rf_pool_run(p, 1, burn_part, NULL);                                /* 1 ms here: serial */
    rf_pool_stats_get(p, &st);
    cr_assert_eq(st.jobs, 3);
    cr_assert(st.serial_s >= 3.0e-3 && st.serial_s < 3.0e-3 + 3.0e-3, "serial %g s", st.serial_s);
    cr_assert(st.span_s >= 9.0e-3 && st.span_s < 9.0e-3 + 3.0e-3, "span %g s", st.span_s);
    cr_assert(st.work_s >= 18.0e-3 && st.work_s < 18.0e-3 + 6.0e-3, "work %g s", st.work_s);
    cr_assert(st.span_s <= st.work_s);
    rf_pool_profile(p, 1);   /* reset */
    rf_pool_stats_get(p, &st);
    cr_assert_eq(st.jobs, 0);
    cr_assert(st.span_s == 0.0 && st.work_s == 0.0);
    rf_pool_profile(p, 0);
    rf_pool_run(p, 3, burn_part, NULL);
    rf_pool_stats_get(p, &st);
    cr_assert_eq(st.jobs, 0, "off: nothing counted");
    rf_pool_free(p);
    rf_pool_stats_get(NULL, &st);
    cr_assert_eq(st.jobs, 0);
    rf_pool_profile(NULL, 1);
}

Test(threads, bad_counts_and_default) {
    rf_ctx ctx;
    rf_ctx_init(&ctx);
    rf_pool *p = (rf_pool *)&ctx;
    cr_assert_eq(rf_pool_create(&ctx, 0, &p), RF_ERR_INVALID);
    cr_assert_null(p);
    cr_assert_eq(rf_pool_create(&ctx, RF_POOL_MAX + 1, &p), RF_ERR_INVALID);
    setenv("SLURM_CPUS_PER_TASK", "2", 1);
    cr_assert_eq(rf_pool_default_threads(), 2);
    setenv("SLURM_CPUS_PER_TASK", "2x", 1);
    cr_assert_eq(rf_pool_default_threads(), 1);
    setenv("SLURM_CPUS_PER_TASK", "0", 1);
    cr_assert_eq(rf_pool_default_threads(), 1);
    unsetenv("SLURM_CPUS_PER_TASK");
    cr_assert_eq(rf_pool_default_threads(), 1);
}

/* rf_pool_on_worker_exit: every worker runs the registered functions once
 * as it exits, the caller does not; a function registered twice runs once.
 * The parts grow per-thread state (rf_gemm_thread's handle): under `make
 * asan` LeakSanitizer reports it if the workers' exit does not free it. */
static atomic_int worker_exits;
static void count_exit(void) { atomic_fetch_add(&worker_exits, 1); }
static void thread_handle_part(void *arg, int t, int n) {
    (void)n;
    ((int *)arg)[t] = rf_gemm_thread() != NULL;
}

Test(threads, workers_run_exit_functions) {
    cr_assert_eq(rf_pool_on_worker_exit(NULL), RF_ERR_INVALID);
    cr_assert_eq(rf_pool_on_worker_exit(count_exit), RF_OK);
    cr_assert_eq(rf_pool_on_worker_exit(count_exit), RF_OK);
    rf_pool *p = make_pool(3);
    int got[3] = {0, 0, 0};
    rf_pool_run(p, 3, thread_handle_part, got);
    for (int t = 0; t < 3; t++) cr_assert_eq(got[t], 1, "part %d had no GEMM handle", t);
    cr_assert_eq(atomic_load(&worker_exits), 0);
    rf_pool_free(p);
    cr_assert_eq(atomic_load(&worker_exits), 2, "2 workers exited, %d exit calls", atomic_load(&worker_exits));
    rf_gemm_thread_release();   /* the caller's own handle */
}

/* The table is bounded: RF_POOL_MAX_EXIT_FNS different functions, then
 * RF_ERR_NOMEM (each test runs in its own process: the table starts empty). */
#define EXIT_FN(i) static void exit_fn##i(void) {}
EXIT_FN(0) EXIT_FN(1) EXIT_FN(2) EXIT_FN(3) EXIT_FN(4) EXIT_FN(5) EXIT_FN(6) EXIT_FN(7) EXIT_FN(8)
Test(threads, exit_function_table_is_bounded) {
    void (*fns[])(void) = {exit_fn0, exit_fn1, exit_fn2, exit_fn3, exit_fn4, exit_fn5, exit_fn6, exit_fn7, exit_fn8};
    cr_assert_eq(RF_POOL_MAX_EXIT_FNS, 8);
    for (int i = 0; i < RF_POOL_MAX_EXIT_FNS; i++) cr_assert_eq(rf_pool_on_worker_exit(fns[i]), RF_OK, "fn %d", i);
    cr_assert_eq(rf_pool_on_worker_exit(fns[0]), RF_OK);   /* already held */
    cr_assert_eq(rf_pool_on_worker_exit(fns[8]), RF_ERR_NOMEM);
}
