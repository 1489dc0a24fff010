/* Dense fp32 GEMM (include/raffle/gemm.h): driver, blocking, threads, the
 * scalar level and the reference.
 *
 * Goto/BLIS structure (Goto & van de Geijn 2008, "Anatomy of
 * High-Performance Matrix Multiplication"; Van Zee & van de Geijn 2015,
 * BLIS): for each nc-wide column block of C, for each kc-deep block of K,
 * pack op(B)[kc, nc] into nr-wide panels (L3-resident); for each mc-row
 * block, pack op(A)[mc, kc] into 6-row panels (L2-resident); then for each
 * B panel (L1-resident), for each A panel, one register tile.
 *
 * Why the result does not depend on any of it: a register tile loads its C
 * elements (or starts from +0 when this is the first K block of a beta = 0
 * product), performs one fma per k of the block in increasing k, and stores
 * them. A float survives a store and a load unchanged, so the chain of
 * fmas an element sees across K blocks is exactly the definition's, k = 0 ..
 * K-1, whatever kc, mc, nc, the tile shape or the thread that ran it; and
 * a fused multiply-add is one correctly rounded operation, the same in a
 * 16-lane, 8-lane or scalar instruction. Threads split C into disjoint
 * rectangles (each element computed by exactly one thread, with the K
 * blocks in order), so the thread count changes nothing either. */
#include "kernels/gemm_internal.h"

#include "raffle/engine.h"
#include "raffle/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- reference -------------------------------------------------------------
 * fma_b: fmaf(b, a, c) with x86's NaN rule made explicit. When operands are
 * NaN, an x86 FMA returns the first NaN (quieted) among its first
 * multiplicand, its second, and the addend, whatever their sign or
 * signalling bit (Intel SDM vol. 1, table 14-17; AMD does the same). The
 * vector kernels put B's value first. A C call fmaf(b, a, c) does not pin
 * that down: compilers treat the two multiplicands as interchangeable and
 * may swap them, and a libm without hardware FMA has its own rule; so the
 * NaN cases are decided here and fmaf only sees numbers (where the order
 * cannot matter: Inf x 0 gives the default NaN either way). */
static inline float quiet(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u |= 0x00400000u;
    memcpy(&x, &u, sizeof u);
    return x;
}

static inline float fma_b(float b, float a, float c) {
    if (isnan(b)) return quiet(b);
    if (isnan(a)) return quiet(a);
    if (isnan(c)) return quiet(c);
    return fmaf(b, a, c);
}

static inline float opA(const float *A, int lda, int ta, int i, int k) {
    return ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}
static inline float opB(const float *B, int ldb, int tb, int k, int j) {
    return tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

void rf_gemm_f32_ref(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, int accumulate, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = accumulate ? C[(size_t)i * ldc + j] : 0.0f;
            for (int k = 0; k < K; k++) acc = fma_b(opB(B, ldb, trans_b, k, j), opA(A, lda, trans_a, i, k), acc);
            C[(size_t)i * ldc + j] = acc;
        }
}

/* ---- scalar level: the blocked driver with plain C tiles ----------------- */
static void tile_scalar(int R, int nv, int kc, const float *A, size_t ps, const float *B, int nr, float *C,
                        size_t ldc, int lanes, int load_c, const float *Cnext) {
    enum { VL = 4 };
    const int cols = VL * (nv - 1) + lanes;
    float acc[24][16];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < cols; j++) acc[r][j] = load_c ? C[(size_t)r * ldc + j] : 0.0f;
    for (int k = 0; k < kc; k++) {
        const float *b = B + (size_t)k * nr;
        for (int r = 0; r < R; r++) {
            float a = A[(size_t)(r / RF_GEMM_MR) * ps + (size_t)k * RF_GEMM_MR + r % RF_GEMM_MR];
            for (int j = 0; j < cols; j++) acc[r][j] = fma_b(b[j], a, acc[r][j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < cols; j++) C[(size_t)r * ldc + j] = acc[r][j];
}

static void pack_a_ref(float *Ap, const float *A, int lda, int ta, int i0, int mb, int k0, int kb) {
    for (int p = 0; p * RF_GEMM_MR < mb; p++) {
        float *d = Ap + (size_t)p * RF_GEMM_MR * kb;
        int rows = mb - p * RF_GEMM_MR < RF_GEMM_MR ? mb - p * RF_GEMM_MR : RF_GEMM_MR;
        for (int k = 0; k < kb; k++)
            for (int r = 0; r < RF_GEMM_MR; r++)
                d[(size_t)k * RF_GEMM_MR + r] = r < rows ? opA(A, lda, ta, i0 + p * RF_GEMM_MR + r, k0 + k) : 0.0f;
    }
}

static void pack_b_ref(float *Bp, const float *B, int ldb, int tb, int k0, int kb, int j0, int nb, int nr, int vl) {
    for (int q = 0; q * nr < nb; q++) {
        float *d = Bp + (size_t)q * nr * kb;
        int cols = nb - q * nr < nr ? nb - q * nr : nr, width = (cols + vl - 1) / vl * vl;
        for (int k = 0; k < kb; k++)
            for (int j = 0; j < width; j++)
                d[(size_t)k * nr + j] = j < cols ? opB(B, ldb, tb, k0 + k, j0 + q * nr + j) : 0.0f;
    }
}

/* One table, indexed by rf_gemm_isa. Main tile rows per vector count:
 * 24 x 16, 12 x 32, 6 x 48 and 6 x 64 floats on AVX-512 (18-24 zmm
 * accumulators, enough independent chains to cover the FMA latency at two
 * per cycle); 12 x 8 and 6 x 16 on AVX2 (12 ymm). */
static const rf_gemm_impl impls[RF_GEMM_ISA_COUNT_] = {
    [RF_GEMM_SCALAR] = {4, 16, {0, 6, 6, 6, 6}, tile_scalar, pack_a_ref, pack_b_ref},
    [RF_GEMM_AVX2] = {8, 16, {0, 12, 6, 0, 0}, rf_gemm_tile_avx2, rf_gemm_pack_a_avx2, rf_gemm_pack_b_avx2},
    [RF_GEMM_AVX512] = {16, 64, {0, 24, 12, 6, 6}, rf_gemm_tile_avx512, rf_gemm_pack_a_avx2, rf_gemm_pack_b_avx2},
};

static const char *const isa_names[RF_GEMM_ISA_COUNT_] = {
    [RF_GEMM_AUTO] = "auto", [RF_GEMM_SCALAR] = "scalar", [RF_GEMM_AVX2] = "avx2", [RF_GEMM_AVX512] = "avx512"};

const char *rf_gemm_isa_name(rf_gemm_isa isa) {
    return (unsigned)isa < RF_GEMM_ISA_COUNT_ ? isa_names[isa] : "?";
}

static rf_gemm_isa from_kernels_isa(rf_isa k) {
    return k >= RF_ISA_AVX512 ? RF_GEMM_AVX512 : k >= RF_ISA_AVX2 ? RF_GEMM_AVX2 : RF_GEMM_SCALAR;
}

int rf_gemm_isa_supported(rf_gemm_isa isa) {
    if ((unsigned)isa >= RF_GEMM_ISA_COUNT_) return 0;
    return isa == RF_GEMM_AUTO || isa <= from_kernels_isa(rf_kernels_cpu_isa());
}

/* ---- cache sizes (read once) --------------------------------------------- */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static long cache_l1, cache_l2, cache_l3;   /* written once under cache_once */

/* The first line of a small sysfs file into buf ("" if unreadable). */
static void read_line(const char *path, char *buf, int n) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(buf, n, f)) buf[0] = 0;
    fclose(f);
}

/* Parses "48K", "1024K", "32M" (sysfs style); 0 if unreadable. */
static long read_size(const char *path) {
    char buf[64];
    read_line(path, buf, sizeof buf);
    size_t nd = strspn(buf, "0123456789");
    int64_t v;
    if (rf_parse_i64(NULL, buf, nd, 1, 1L << 40, "cache size", &v) != RF_OK) return 0;
    if (buf[nd] == 'K') v *= 1024;
    else if (buf[nd] == 'M') v *= 1024 * 1024;
    else if (buf[nd] == 'G') v *= 1024L * 1024 * 1024;
    return (long)v;
}

/* CPUs listed in a sysfs cpu list ("0-1", "0,2,4-7"). */
static int count_cpus(const char *path) {
    char buf[256];
    read_line(path, buf, sizeof buf);
    int n = 0;
    for (char *s = buf; *s && *s != '\n';) {
        int64_t a, b;
        size_t na = strspn(s, "0123456789");
        if (rf_parse_i64(NULL, s, na, 0, 1 << 20, "cpu", &a) != RF_OK) break;
        char *end = s + na;
        b = a;
        if (*end == '-') {
            size_t nb = strspn(end + 1, "0123456789");
            if (rf_parse_i64(NULL, end + 1, nb, 0, 1 << 20, "cpu", &b) != RF_OK) break;
            end += 1 + nb;
        }
        if (b >= a) n += (int)(b - a + 1);
        if (*end != ',') break;
        s = end + 1;
    }
    return n;
}

static void cache_init(void) {
    long l1 = 0, l2 = 0, l3 = 0;
    for (int i = 0; i < 8; i++) {
        char base[96], path[128], type[32];
        snprintf(base, sizeof base, "/sys/devices/system/cpu/cpu0/cache/index%d", i);
        snprintf(path, sizeof path, "%s/type", base);
        read_line(path, type, sizeof type);
        if (!type[0] || strncmp(type, "Instruction", 11) == 0) continue;
        snprintf(path, sizeof path, "%s/level", base);
        long level = read_size(path);
        snprintf(path, sizeof path, "%s/size", base);
        long size = read_size(path);
        snprintf(path, sizeof path, "%s/shared_cpu_list", base);
        int share = count_cpus(path);
        if (level == 1) l1 = size;
        else if (level == 2) l2 = size;
        else if (level == 3) l3 = share > 1 ? size / share : size;
    }
#ifdef _SC_LEVEL1_DCACHE_SIZE
    if (l1 <= 0) l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (l2 <= 0) l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l3 <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (l3 > 0 && n > 1) l3 /= n;
    }
#endif
    cache_l1 = l1 > 0 ? l1 : 32 * 1024;
    cache_l2 = l2 > 0 ? l2 : 1024 * 1024;
    cache_l3 = l3 > 0 ? l3 : 2 * 1024 * 1024;
}

void rf_gemm_cache_sizes(long *l1d, long *l2, long *l3_per_core) {
    pthread_once(&cache_once, cache_init);
    if (l1d) *l1d = cache_l1;
    if (l2) *l2 = cache_l2;
    if (l3_per_core) *l3_per_core = cache_l3;
}

/* ---- context ---------------------------------------------------------------- */
struct rf_gemm {
    rf_gemm_isa isa;
    const rf_gemm_impl *im;
    rf_pool *pool;
    int threads;
    int kc, mc, nc;
    int nc2;             /* B block columns when all rows fit one A block (L2-sized) */
    size_t ws_a, ws_b;   /* floats per thread: packed A block, packed B panel */
    float **ws;          /* [threads], each ws_a + ws_b floats, 64-byte aligned */
    char err[256];
};

static rf_status gemm_err(rf_gemm *g, rf_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static rf_status gemm_err(rf_gemm *g, rf_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return s;
}

static int round_down(int v, int m) { return v / m * m < m ? m : v / m * m; }

/* Blocking from the cache sizes (docs/kernels.md, "Dense fp32 GEMM"):
 *  kc: a K block is at most 384 deep (K is cut into near-equal blocks).
 *      Every K block loads and stores each C tile once, so for the
 *      training products (C often larger than L2, K 100 .. 1200) fewer,
 *      deeper blocks beat a kc x nr B panel sized for L1: on Zen 5 the
 *      tile streams its B panel from L2 at full speed (96% of peak in L1,
 *      88-92% from L2), while a C round trip to L3 or memory costs more;
 *  mc: the mc x kc A block takes about half of L2 (it is reused by every
 *      B panel);
 *  nc: the kc x nc B block takes about half of this core's L3 share, at
 *      most 4096 columns (the per-thread buffer). */
static void default_blocking(const rf_gemm_impl *im, int *kc, int *mc, int *nc, int *nc2) {
    long l2, l3;
    rf_gemm_cache_sizes(NULL, &l2, &l3);
    long k = 384;
    long m = l2 / 2 / (k * (long)sizeof(float));
    if (m > 2048) m = 2048;
    long n = l3 / 2 / (k * (long)sizeof(float));
    if (n > 4096) n = 4096;
    *kc = (int)k;
    *mc = round_down((int)m, 24);
    *nc = round_down((int)n, im->nr);
    *nc2 = round_down((int)(l2 / 2 / (k * (long)sizeof(float))), im->nr);
    if (*nc2 > *nc) *nc2 = *nc;
}

rf_status rf_gemm_create(rf_ctx *ctx, const rf_gemm_cfg *cfg, rf_gemm **out) {
    *out = NULL;
    rf_gemm_cfg c = cfg ? *cfg : (rf_gemm_cfg){0};
    if ((unsigned)c.isa >= RF_GEMM_ISA_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "gemm: unknown isa %d", (int)c.isa);
    if (!rf_gemm_isa_supported(c.isa))
        return rf_error(ctx, RF_ERR_UNSUPPORTED, "gemm: isa %s is not supported by this CPU", rf_gemm_isa_name(c.isa));
    if (c.threads < 0 || c.kc < 0 || c.mc < 0 || c.nc < 0)
        return rf_error(ctx, RF_ERR_INVALID, "gemm: negative threads or blocking (threads %d kc %d mc %d nc %d)",
                        c.threads, c.kc, c.mc, c.nc);
    rf_gemm_isa isa = c.isa == RF_GEMM_AUTO ? from_kernels_isa(rf_kernels_isa()) : c.isa;
    rf_gemm *g = rf_calloc(1, sizeof *g);
    if (!g) return rf_error(ctx, RF_ERR_NOMEM, "gemm: out of memory");
    g->isa = isa;
    g->im = &impls[isa];
    g->pool = c.pool;
    int pt = rf_pool_threads(c.pool);
    g->threads = c.threads && c.threads < pt ? c.threads : pt;
    default_blocking(g->im, &g->kc, &g->mc, &g->nc, &g->nc2);
    if (c.kc) g->kc = c.kc;
    if (c.mc) g->mc = (c.mc + RF_GEMM_MR - 1) / RF_GEMM_MR * RF_GEMM_MR;
    if (c.nc) g->nc = g->nc2 = (c.nc + g->im->vl - 1) / g->im->vl * g->im->vl;
    if (g->nc2 > g->nc) g->nc2 = g->nc;
    g->ws_a = (size_t)g->mc * g->kc + RF_GEMM_A_SLACK;
    g->ws_a = (g->ws_a + 15) / 16 * 16;
    g->ws_b = ((size_t)g->nc + (size_t)g->im->nr) * g->kc;
    g->ws = rf_calloc((size_t)g->threads, sizeof *g->ws);
    for (int t = 0; g->ws && t < g->threads; t++) {
        g->ws[t] = rf_aligned_alloc(64, (g->ws_a + g->ws_b) * sizeof(float));
        if (!g->ws[t]) break;
    }
    if (!g->ws || !g->ws[g->threads - 1]) {
        rf_gemm_free(g);
        return rf_error(ctx, RF_ERR_NOMEM, "gemm: out of memory for packing buffers");
    }
    *out = g;
    return RF_OK;
}

void rf_gemm_free(rf_gemm *g) {
    if (!g) return;
    for (int t = 0; g->ws && t < g->threads; t++) rf_free(g->ws[t]);
    rf_free(g->ws);
    rf_free(g);
}

rf_gemm_isa rf_gemm_isa_of(const rf_gemm *g) { return g->isa; }
int rf_gemm_threads(const rf_gemm *g) { return g->threads; }
const char *rf_gemm_error(const rf_gemm *g) { return g ? g->err : ""; }

void rf_gemm_blocking(const rf_gemm *g, int *kc, int *mc, int *nc, int *mr, int *nr) {
    if (kc) *kc = g->kc;
    if (mc) *mc = g->mc;
    if (nc) *nc = g->nc;
    if (mr) *mr = RF_GEMM_MR;
    if (nr) *nr = g->im->nr;
}

/* ---- the blocked product on one thread ------------------------------------ */
typedef struct gemm_op {
    int ta, tb, M, N, K;
    const float *A;
    int lda;
    const float *Ap;   /* op(A) packed by rf_gemm_pack_a (A unused), or NULL */
    const float *B;
    int ldb;
    int acc;
    float *C;
    int ldc;
} gemm_op;

/* The register tiles of one packed A block (rows ic .. ic+mb-1) times one
 * B block (columns jc .. jc+nb-1), K block of depth kb: packed (Bb = Bp,
 * panel q at Bp + q·nr·kb, rows nr apart) or read in place (Bb = &op(B)[k0][jc],
 * rows ldb apart). */
static void run_tiles(const rf_gemm *g, const gemm_op *o, const float *Ap, const float *Bb, int inplace, int ic,
                      int mb, int jc, int nb, int kb, int load_c) {
    const rf_gemm_impl *im = g->im;
    const int nr = im->nr, vl = im->vl;
    const size_t ps = (size_t)RF_GEMM_MR * kb;
    for (int jr = 0; jr < nb; jr += nr) {
        int cols = nb - jr < nr ? nb - jr : nr, nv = (cols + vl - 1) / vl, lanes = cols - vl * (nv - 1);
        int rt = im->rows[nv];
        const float *Bq = inplace ? Bb + jr : Bb + (size_t)jr * kb;
        const int bstride = inplace ? o->ldb : nr;
        float *Cq = o->C + (size_t)ic * o->ldc + jc + jr;
        for (int ir = 0; ir < mb;) {
            int R = mb - ir >= rt ? rt : mb - ir < RF_GEMM_MR ? mb - ir : RF_GEMM_MR;
            const float *next = ir + R < mb ? Cq + (size_t)(ir + R) * o->ldc
                                : jr + nr < nb ? o->C + (size_t)ic * o->ldc + jc + jr + nr : NULL;
            im->tile(R, nv, kb, Ap + (size_t)ir * kb, ps, Bq, bstride, Cq + (size_t)ir * o->ldc, (size_t)o->ldc,
                     lanes, load_c, next);
            ir += R;
        }
    }
}

/* Whether the tiles read op(B) where it is instead of packing it: B not
 * transposed (rows of op(B) contiguous), a stride short enough that a K
 * block of rows stays within L2 and a few pages, and not a multiple of
 * 256 floats (rows 1 KiB apart share L1 sets). Packing B costs about as
 * much as 1/M of the product's FMAs per element, which matters for the
 * batch-128 and Winograd (M = 64) products. */
static int b_in_place(const gemm_op *o) {
    return !o->tb && o->ldb <= 1024 && o->ldb % 256 != 0;
}

/* C rows [m0, m1) x columns [n0, n1) of the product, with buffer ws. K is
 * cut into nk near-equal blocks of at most kc; block b of every element is
 * applied after block b - 1 in both loop orders below. */
static void run_block(const rf_gemm *g, const gemm_op *o, int m0, int m1, int n0, int n1, float *ws) {
    const rf_gemm_impl *im = g->im;
    float *Ap = ws, *Bp = ws + g->ws_a;
    const int nk = (o->K + g->kc - 1) / g->kc;
    /* a pre-packed A: K block b at Ap + Mp·k0, its rows from i at + i·kb */
    const size_t Mp = (size_t)(o->M + RF_GEMM_MR - 1) / RF_GEMM_MR * RF_GEMM_MR;
#define K_BLOCK(b, k0, kb) \
    int k0 = (int)((long)o->K * (b) / nk), kb = (int)((long)o->K * ((b) + 1) / nk) - k0
#define A_BLOCK(i0, mb, k0, kb) \
    (o->Ap ? o->Ap + Mp * (size_t)(k0) + (size_t)(i0) * (size_t)(kb) \
           : (im->pack_a(Ap, o->A, o->lda, o->ta, i0, mb, k0, kb), Ap))
    if (m1 - m0 <= g->mc) {
        /* All rows in one A block (the batch-128 products): K blocks
         * outermost, A packed once per K block, B in blocks of nc2 columns
         * that stay in L2 while the tiles read them. */
        const int inplace = b_in_place(o);
        for (int b = 0; b < nk; b++) {
            K_BLOCK(b, k0, kb);
            const float *Ab = A_BLOCK(m0, m1 - m0, k0, kb);
            for (int jc = n0; jc < n1; jc += g->nc2) {
                int nb = n1 - jc < g->nc2 ? n1 - jc : g->nc2;
                if (!inplace) im->pack_b(Bp, o->B, o->ldb, o->tb, k0, kb, jc, nb, im->nr, im->vl);
                run_tiles(g, o, Ab, inplace ? o->B + (size_t)k0 * o->ldb + jc : Bp, inplace, m0, m1 - m0, jc, nb, kb,
                          o->acc || b > 0);
            }
        }
        return;
    }
    /* Goto's order: B block (L3) per nc columns and K block, A block (L2)
     * per mc rows. */
    for (int jc = n0; jc < n1; jc += g->nc) {
        int nb = n1 - jc < g->nc ? n1 - jc : g->nc;
        for (int b = 0; b < nk; b++) {
            K_BLOCK(b, k0, kb);
            im->pack_b(Bp, o->B, o->ldb, o->tb, k0, kb, jc, nb, im->nr, im->vl);
            for (int ic = m0; ic < m1; ic += g->mc) {
                int mb = m1 - ic < g->mc ? m1 - ic : g->mc;
                run_tiles(g, o, A_BLOCK(ic, mb, k0, kb), Bp, 0, ic, mb, jc, nb, kb, o->acc || b > 0);
            }
        }
    }
#undef A_BLOCK
#undef K_BLOCK
}

/* K = 0: C = 0 (beta 0) on rows [m0, m1) x [n0, n1); with accumulate nothing. */
static void zero_block(const gemm_op *o, int m0, int m1, int n0, int n1) {
    if (o->acc) return;
    for (int i = m0; i < m1; i++) memset(o->C + (size_t)i * o->ldc + n0, 0, (size_t)(n1 - n0) * sizeof(float));
}

static void do_block(const rf_gemm *g, const gemm_op *o, int m0, int m1, int n0, int n1, float *ws) {
    if (m0 >= m1 || n0 >= n1) return;
    if (o->K == 0) zero_block(o, m0, m1, n0, n1);
    else run_block(g, o, m0, m1, n0, n1, ws);
}

/* ---- threads: a static grid of C rectangles -------------------------------- */
/* Multiply-adds a part gets at least (so a product below twice this runs on
 * one thread): 2^18 is 2-3 us of work, against well under a microsecond to
 * start and join a spinning worker. The output layers of the batch-128
 * training steps (mlp-1200x2's 1200x10, vit-tiny's head: ~1.5M
 * multiply-adds a product) split; with 2^20 they ran on one thread, 5% of
 * mlp-1200x2's 2-thread step (bench/train/probe threads). */
#define MT_MIN_WORK (1L << 18)

typedef struct grid { int tm, tn; } grid;

/* tm x tn = n threads minimising the packing each thread repeats: thread
 * (i, j) packs its rows of A and its columns of B, so the total is
 * K (tn M + tm N); each part keeps at least one 6-row panel and one vector. */
static grid pick_grid(int n, int M, int N, int vl) {
    grid best = {1, 1};
    double cost = -1.0;
    for (int tm = 1; tm <= n; tm++) {
        if (n % tm) continue;
        int tn = n / tm;
        if ((M + RF_GEMM_MR - 1) / RF_GEMM_MR < tm || (N + vl - 1) / vl < tn) continue;
        double c = (double)tn * M + (double)tm * N;
        if (cost < 0 || c < cost) { cost = c; best = (grid){tm, tn}; }
    }
    return best;
}

/* Start of part t of n over `len` split in units of `unit` (the last part
 * takes the remainder). */
static int split_at(int len, int unit, int t, int n) {
    int units = (len + unit - 1) / unit;
    int u = (int)((long)units * t / n) * unit;
    return u < len ? u : len;
}

typedef struct gemm_job {
    const rf_gemm *g;
    const gemm_op *ops;   /* one product, or `count` (batch) */
    int count;
    grid gr;
} gemm_job;

static void job_part(void *arg, int t, int n) {
    const gemm_job *j = arg;
    float *ws = j->g->ws[t];
    if (j->count > 1) {
        int p0 = (int)((long)j->count * t / n), p1 = (int)((long)j->count * (t + 1) / n);
        for (int p = p0; p < p1; p++) do_block(j->g, &j->ops[p], 0, j->ops[p].M, 0, j->ops[p].N, ws);
        return;
    }
    const gemm_op *o = j->ops;
    int i = t / j->gr.tn, jj = t % j->gr.tn;
    do_block(j->g, o, split_at(o->M, RF_GEMM_MR, i, j->gr.tm), split_at(o->M, RF_GEMM_MR, i + 1, j->gr.tm),
             split_at(o->N, j->g->im->vl, jj, j->gr.tn), split_at(o->N, j->g->im->vl, jj + 1, j->gr.tn), ws);
}


static int threads_for(const rf_gemm *g, long work) {
    long min_work = rf_threads_split_all_on() ? 1 : MT_MIN_WORK;
    if (g->threads <= 1 || work < min_work) return 1;
    long n = work / min_work;
    return n < g->threads ? (int)n : g->threads;
}

static rf_status check_op(rf_gemm *g, const gemm_op *o) {
    if (o->M < 0 || o->N < 0 || o->K < 0)
        return gemm_err(g, RF_ERR_INVALID, "gemm: negative size M=%d N=%d K=%d", o->M, o->N, o->K);
    int lda_min = o->ta ? o->M : o->K, ldb_min = o->tb ? o->K : o->N;
    if (o->lda < 1 || o->lda < lda_min || o->ldb < 1 || o->ldb < ldb_min || o->ldc < 1 || o->ldc < o->N)
        return gemm_err(g, RF_ERR_INVALID, "gemm: stride too small (lda %d >= %d, ldb %d >= %d, ldc %d >= %d)",
                        o->lda, lda_min, o->ldb, ldb_min, o->ldc, o->N);
    if (o->M && o->N && (!o->C || (o->K && (!o->A || !o->B))))
        return gemm_err(g, RF_ERR_INVALID, "gemm: NULL operand for a %dx%dx%d product", o->M, o->N, o->K);
    return RF_OK;
}

rf_status rf_gemm_f32(rf_gemm *g, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                      const float *B, int ldb, int accumulate, float *C, int ldc) {
    gemm_op o = {!!trans_a, !!trans_b, M, N, K, A, lda, NULL, B, ldb, !!accumulate, C, ldc};
    g->err[0] = 0;
    RF_TRY(check_op(g, &o));
    if (M == 0 || N == 0) return RF_OK;
    int n = threads_for(g, (long)M * N * (K ? K : 1));
    gemm_job j = {g, &o, 1, pick_grid(n, M, N, g->im->vl)};
    rf_pool_run(g->pool, j.gr.tm * j.gr.tn, job_part, &j);
    return RF_OK;
}

rf_status rf_gemm_f32_batch(rf_gemm *g, int trans_a, int trans_b, int M, int N, int K, int count,
                            const float *const *A, int lda, const float *const *B, int ldb, int accumulate,
                            float *const *C, int ldc) {
    g->err[0] = 0;
    if (count < 0) return gemm_err(g, RF_ERR_INVALID, "gemm batch: count %d", count);
    if (count == 0 || M == 0 || N == 0) return RF_OK;
    if (!A || !B || !C) return gemm_err(g, RF_ERR_INVALID, "gemm batch: NULL pointer array");
    /* F(4x4)'s 36 products a chunk fit: with 32, conv-6's weight gradients
     * allocated the list ~85 times a step (every chunk of every layer) */
    enum { STACK = 64 };
    gemm_op stack_ops[STACK], *ops = count <= STACK ? stack_ops : rf_malloc((size_t)count * sizeof *ops);
    /* Beyond 64 products the op list needs memory; rather than fail, run
     * them one by one (same bits). */
    if (!ops) {
        for (int p = 0; p < count; p++)
            RF_TRY(rf_gemm_f32(g, trans_a, trans_b, M, N, K, A[p], lda, B[p], ldb, accumulate, C[p], ldc));
        return RF_OK;
    }
    rf_status st = RF_OK;
    for (int p = 0; p < count && st == RF_OK; p++) {
        ops[p] = (gemm_op){!!trans_a, !!trans_b, M, N, K, A[p], lda, NULL, B[p], ldb, !!accumulate, C[p], ldc};
        st = check_op(g, &ops[p]);
    }
    if (st == RF_OK) {
        long work = (long)M * N * (K ? K : 1);
        int n = threads_for(g, work * count);
        if (n > 1 && count < n) {
            /* fewer products than threads: each product split over threads */
            for (int p = 0; p < count; p++) {
                gemm_job j = {g, &ops[p], 1, pick_grid(threads_for(g, work), M, N, g->im->vl)};
                rf_pool_run(g->pool, j.gr.tm * j.gr.tn, job_part, &j);
            }
        } else {
            gemm_job j = {g, ops, count, {1, 1}};
            if (count == 1) j.gr = pick_grid(n, M, N, g->im->vl);
            rf_pool_run(g->pool, count == 1 ? j.gr.tm * j.gr.tn : n, job_part, &j);
        }
    }
    if (ops != stack_ops) rf_free(ops);
    return st;
}

rf_status rf_gemm_f32_part(rf_gemm *g, int t, int trans_a, int trans_b, int M, int N, int K, const float *A,
                           int lda, const float *B, int ldb, int accumulate, float *C, int ldc) {
    gemm_op o = {!!trans_a, !!trans_b, M, N, K, A, lda, NULL, B, ldb, !!accumulate, C, ldc};
    if (t < 0 || t >= g->threads) return RF_ERR_INVALID;
    /* check_op writes its message into g, which parts share: check a copy */
    rf_gemm probe = *g;
    RF_TRY(check_op(&probe, &o));
    if (M && N) do_block(g, &o, 0, M, 0, N, g->ws[t]);
    return RF_OK;
}

/* ---- a pre-packed A ------------------------------------------------------------
 * The K blocks' micro-panels of op(A), all rows, one block after another:
 * block b (K_BLOCK of g's kc) at Ap + Mp·k0, Mp = M rounded up to 6. The
 * products read it where they would read their own packed block (rows from
 * i at + i·kb), so the tiles, and the bits, are those of rf_gemm_f32. */
size_t rf_gemm_packed_a_floats(int M, int K) {
    if (M < 0 || K < 0) return 0;
    return (size_t)(M + RF_GEMM_MR - 1) / RF_GEMM_MR * RF_GEMM_MR * (size_t)K + RF_GEMM_A_SLACK;
}

rf_status rf_gemm_pack_a(const rf_gemm *g, int trans_a, int M, int K, const float *A, int lda, float *Ap) {
    if (M < 0 || K < 0 || lda < 1 || lda < (trans_a ? M : K) || (M && K && (!A || !Ap))) return RF_ERR_INVALID;
    if (M == 0 || K == 0) return RF_OK;
    const int nk = (K + g->kc - 1) / g->kc;
    const size_t Mp = (size_t)(M + RF_GEMM_MR - 1) / RF_GEMM_MR * RF_GEMM_MR;
    /* in increasing b: the AVX2 packer's last store runs 2 floats past a
     * block, into the next one (packed after it) or the slack */
    for (int b = 0; b < nk; b++) {
        int k0 = (int)((long)K * b / nk), kb = (int)((long)K * (b + 1) / nk) - k0;
        g->im->pack_a(Ap + Mp * (size_t)k0, A, lda, !!trans_a, 0, M, k0, kb);
    }
    return RF_OK;
}

rf_status rf_gemm_pack_a_rows(const rf_gemm *g, int M, int K, int kk, int n, const float *a, int lda, float *Ap) {
    if (M < 0 || K < 0 || n < 0 || kk < 0 || kk + n > K || lda < 1 || lda < M || (M && n && (!a || !Ap)))
        return RF_ERR_INVALID;
    if (M == 0 || n == 0) return RF_OK;
    const int nk = (K + g->kc - 1) / g->kc, full = M / RF_GEMM_MR;
    const size_t Mp = (size_t)(M + RF_GEMM_MR - 1) / RF_GEMM_MR * RF_GEMM_MR;
    int b = 0;   /* the K block holding row kk + i, as rf_gemm_pack_a cuts them */
    for (int i = 0; i < n;) {
        while ((long)K * (b + 1) / nk <= kk + i) b++;
        const int k0 = (int)((long)K * b / nk), kb = (int)((long)K * (b + 1) / nk) - k0;
        const int m = n - i < k0 + kb - (kk + i) ? n - i : k0 + kb - (kk + i);
        float *d = Ap + Mp * (size_t)k0 + (size_t)(kk + i - k0) * RF_GEMM_MR;
        const float *s = a + (size_t)i * lda;
        /* panel by panel: the m rows' runs of 6 are adjacent there */
        for (int p = 0; p < full; p++)
            for (int q = 0; q < m; q++)
                memcpy(d + (size_t)p * RF_GEMM_MR * kb + (size_t)q * RF_GEMM_MR, s + (size_t)q * lda + p * RF_GEMM_MR,
                       RF_GEMM_MR * sizeof(float));
        if (full * RF_GEMM_MR < M)
            for (int q = 0; q < m; q++)
                for (int r = 0; r < RF_GEMM_MR; r++)
                    d[(size_t)full * RF_GEMM_MR * kb + (size_t)q * RF_GEMM_MR + r] =
                        full * RF_GEMM_MR + r < M ? s[(size_t)q * lda + full * RF_GEMM_MR + r] : 0.0f;
        i += m;
    }
    return RF_OK;
}

rf_status rf_gemm_f32_packed_a(rf_gemm *g, int t, int M, int N, int K, const float *Ap, int trans_b, const float *B,
                               int ldb, int accumulate, float *C, int ldc) {
    gemm_op o = {0, !!trans_b, M, N, K, Ap, K > 0 ? K : 1, Ap, B, ldb, !!accumulate, C, ldc};
    if (t < 0 || t >= g->threads) return RF_ERR_INVALID;
    rf_gemm probe = *g;   /* as rf_gemm_f32_part: parts share g's message */
    RF_TRY(check_op(&probe, &o));
    if (M && N) do_block(g, &o, 0, M, 0, N, g->ws[t]);
    return RF_OK;
}

/* ---- the engine's backend ----------------------------------------------------- */
rf_status rf_gemm_attach(rf_ctx *ctx) {
    rf_gemm_detach(ctx);
    rf_pool *p = NULL;
    rf_gemm *g = NULL;
    RF_TRY(rf_pool_create(ctx, rf_engine_threads(&ctx->engine), &p));
    rf_gemm_cfg c = {.pool = p};
    rf_status st = rf_gemm_create(ctx, &c, &g);
    if (st) {
        rf_pool_free(p);
        return st;
    }
    ctx->engine.pool = p;
    ctx->engine.gemm = g;
    return RF_OK;
}

void rf_gemm_detach(rf_ctx *ctx) {
    rf_gemm_free(ctx->engine.gemm);
    rf_pool_free(ctx->engine.pool);
    ctx->engine.gemm = NULL;
    ctx->engine.pool = NULL;
}

/* The calling thread's own handle: like the kernels' per-thread workspace
 * (rf_kern_workspace), state of the thread's scratch, not an option. */
static _Thread_local rf_gemm *thread_gemm;

rf_gemm *rf_gemm_thread(void) {
    rf_gemm_isa want = from_kernels_isa(rf_kernels_isa());
    if (thread_gemm && thread_gemm->isa == want) return thread_gemm;
    rf_gemm_thread_release();
    rf_gemm_cfg c = {.isa = want};
    rf_ctx tmp;
    memset(&tmp, 0, sizeof tmp);
    if (rf_gemm_create(&tmp, &c, &thread_gemm) != RF_OK) thread_gemm = NULL;
    /* a pool worker frees its handle when it exits (cannot fail: see
     * rf_kern_workspace) */
    (void)rf_pool_on_worker_exit(rf_gemm_thread_release);
    return thread_gemm;
}

void rf_gemm_thread_release(void) {
    rf_gemm_free(thread_gemm);
    thread_gemm = NULL;
}

static int openblas_of(const rf_engine *e) { return e && e->v[RF_ENGINE_GEMM] == RF_ENGINE_GEMM_OPENBLAS; }

static void openblas(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, int acc,
                     float *C, int ldc) {
    if (K == 0) {   /* cblas rejects the strides of an empty operand */
        gemm_op o = {ta, tb, M, N, K, A, lda, NULL, B, ldb, acc, C, ldc};
        zero_block(&o, 0, M, 0, N);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}

void rf_gemm_engine(const rf_engine *e, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                    const float *B, int ldb, int accumulate, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (openblas_of(e)) { openblas(trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc); return; }
    rf_status st;
    if (e && e->gemm && !e->pool) {   /* inside part e->slot of a job on the pool */
        st = rf_gemm_f32_part(e->gemm, e->slot, trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
        RF_ASSERT(st == RF_OK);
        return;
    }
    rf_gemm *g = e && e->gemm ? e->gemm : rf_gemm_thread();
    if (!g) { rf_gemm_f32_ref(trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc); return; }
    st = rf_gemm_f32(g, trans_a, trans_b, M, N, K, A, lda, B, ldb, accumulate, C, ldc);
    RF_ASSERT(st == RF_OK);
}

rf_gemm *rf_gemm_engine_gemm(const rf_engine *e, int *slot) {
    *slot = 0;
    if (openblas_of(e)) return NULL;
    if (e && e->gemm) {
        if (!e->pool) *slot = e->slot;
        return e->gemm;
    }
    return rf_gemm_thread();
}

void rf_gemm_engine_batch(const rf_engine *e, int trans_a, int trans_b, int M, int N, int K, int count,
                          const float *const *A, int lda, const float *const *B, int ldb, int accumulate,
                          float *const *C, int ldc) {
    rf_gemm *g = e && e->gemm && e->pool && !openblas_of(e) ? e->gemm : NULL;
    if (!g) {
        for (int p = 0; p < count; p++)
            rf_gemm_engine(e, trans_a, trans_b, M, N, K, A[p], lda, B[p], ldb, accumulate, C[p], ldc);
        return;
    }
    rf_status st = rf_gemm_f32_batch(g, trans_a, trans_b, M, N, K, count, A, lda, B, ldb, accumulate, C, ldc);
    RF_ASSERT(st == RF_OK);
}
