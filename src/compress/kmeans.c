/* k-means weight sharing (Han, Mao and Dally 2016, "Deep Compression:
 * Compressing Deep Neural Networks with Pruning, Trained Quantization and
 * Huffman Coding", §3). The equations and the tie rules are in
 * include/raffle/lowbit.h; docs/quantization.md has the pipeline.
 *
 * Why linear initialisation: §3.2 compares Forgy (random), density-based and
 * linear initialisation and keeps linear, because the few large weights
 * matter most and only linear spacing gives them centroids of their own.
 *
 * The assignment step is the one-dimensional nearest-centroid search: with
 * the centroids sorted (by value, then index), a weight's nearest centroid
 * is the last one below it or the first one at or above it; among centroids
 * of equal value the lowest index wins, and between the two candidates the
 * smaller |w - c| (in double), the lower index on a tie. */
#include "raffle/lowbit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cent { float v; int j; } cent;

static int cmp_cent(const void *a, const void *b) {
    const cent *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Nearest centroid of w in the sorted table s[k]. */
static int nearest(const cent *s, int k, float w) {
    int lo = 0, hi = k;   /* first position with value >= w */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s[mid].v < w) lo = mid + 1; else hi = mid;
    }
    if (lo == k) { int a = k - 1; while (a > 0 && s[a - 1].v == s[a].v) a--; return s[a].j; }
    if (lo == 0) return s[0].j;
    int a = lo - 1;
    while (a > 0 && s[a - 1].v == s[a].v) a--;
    double da = fabs((double)w - (double)s[a].v), db = fabs((double)s[lo].v - (double)w);
    if (da != db) return da < db ? s[a].j : s[lo].j;
    return s[a].j < s[lo].j ? s[a].j : s[lo].j;
}

rf_status rf_kmeans_share(rf_ctx *ctx, const float *w, const uint8_t *mask, size_t n, int bits, int max_iter,
                          float *codebook, uint8_t *idx, rf_kmeans_info *info) {
    if (bits < RF_KMEANS_BITS_MIN || bits > RF_KMEANS_BITS_MAX)
        return rf_error(ctx, RF_ERR_INVALID, "k-means: bits %d outside [%d, %d]", bits, RF_KMEANS_BITS_MIN, RF_KMEANS_BITS_MAX);
    if (n && (!w || !idx)) return rf_error(ctx, RF_ERR_INVALID, "k-means: NULL weights or indices");
    if (!codebook) return rf_error(ctx, RF_ERR_INVALID, "k-means: NULL codebook");
    const int k = 1 << bits;
    if (max_iter <= 0) max_iter = RF_KMEANS_MAX_ITER_DEFAULT;
    float lo = INFINITY, hi = -INFINITY;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i]) continue;
        if (!isfinite(w[i])) return rf_error(ctx, RF_ERR_INVALID, "k-means: weight %zu is not finite", i);
        if (w[i] < lo) lo = w[i];
        if (w[i] > hi) hi = w[i];
        kept++;
    }
    if (n) memset(idx, 0, n);
    rf_kmeans_info inf = {0, 1, (int)(kept < (size_t)INT32_MAX ? kept : INT32_MAX), 0};
    if (kept == 0) {
        memset(codebook, 0, sizeof(float) * (size_t)k);
        inf.empty = k;
        if (info) *info = inf;
        return RF_OK;
    }
    /* Deep Compression §3.2, linear initialisation. (hi - lo) * j is exact in
     * double, so c_{k-1} = hi exactly. */
    for (int j = 0; j < k; j++) codebook[j] = (float)((double)lo + ((double)hi - (double)lo) * j / (k - 1));
    cent *s = rf_malloc(sizeof *s * (size_t)k);
    double *sum = rf_malloc(sizeof *sum * (size_t)k);
    size_t *cnt = rf_malloc(sizeof *cnt * (size_t)k);
    if (!s || !sum || !cnt) {
        rf_free(s); rf_free(sum); rf_free(cnt);
        return rf_error(ctx, RF_ERR_NOMEM, "k-means: out of memory");
    }
    inf.converged = 0;
    for (int it = 0; it < max_iter; it++) {
        for (int j = 0; j < k; j++) { s[j].v = codebook[j]; s[j].j = j; }
        qsort(s, (size_t)k, sizeof *s, cmp_cent);
        int changed = it == 0;
        for (size_t i = 0; i < n; i++) {
            if (mask && !mask[i]) continue;
            uint8_t j = (uint8_t)nearest(s, k, w[i]);
            changed |= j != idx[i];
            idx[i] = j;
        }
        memset(sum, 0, sizeof *sum * (size_t)k);
        memset(cnt, 0, sizeof *cnt * (size_t)k);
        for (size_t i = 0; i < n; i++) {
            if (mask && !mask[i]) continue;
            sum[idx[i]] += w[i];
            cnt[idx[i]]++;
        }
        for (int j = 0; j < k; j++)
            if (cnt[j]) codebook[j] = (float)(sum[j] / (double)cnt[j]);
        inf.iterations = it + 1;
        if (!changed) { inf.converged = 1; break; }
    }
    for (int j = 0; j < k; j++) inf.empty += cnt[j] == 0;
    rf_free(s); rf_free(sum); rf_free(cnt);
    if (info) *info = inf;
    return RF_OK;
}

void rf_kmeans_decode(const float *codebook, const uint8_t *idx, const uint8_t *mask, size_t n, float *w) {
    for (size_t i = 0; i < n; i++) w[i] = mask && !mask[i] ? 0.0f : codebook[idx[i]];
}

void rf_kmeans_centroid_grad(const float *grad, const uint8_t *idx, const uint8_t *mask, size_t n, int bits,
                             float *cgrad) {
    RF_ASSERT(bits >= 1 && bits <= RF_KMEANS_BITS_MAX);
    const int k = 1 << bits;
    double acc[1 << RF_KMEANS_BITS_MAX] = {0};
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i]) acc[idx[i] & (k - 1)] += grad[i];
    for (int j = 0; j < k; j++) cgrad[j] = (float)acc[j];
}

void rf_kmeans_sgd_step(float *codebook, const float *cgrad, int bits, float lr) {
    for (int j = 0; j < 1 << bits; j++) codebook[j] -= lr * cgrad[j];
}
