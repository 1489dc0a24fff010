/* N:M semi-structured masks: N kept in every group of M consecutive weights
 * of a row (along the input dimension), the pattern of NVIDIA's sparse
 * tensor cores for 2:4 (Mishra et al. 2021, "Accelerating Sparse Deep
 * Neural Networks") and of N:M training (Zhou et al. 2021). Selection keeps
 * the N highest scores of each group; the scores are the caller's
 * (|w| for magnitude pruning, |g w| for SNIP, ...). The storage kind is
 * RF_STORE_NM (ckpt.h), the fp32 kernel rf_nm_spmm (kernels.h). */
#include "raffle/lowbit.h"
#include "raffle/ckpt.h"

#include <math.h>

static rf_status check_nm(rf_ctx *ctx, const char *what, int64_t rows, int64_t cols, int n, int m) {
    if (n < 1 || m < 2 || m > RF_NM_MAX_M)
        return rf_error(ctx, RF_ERR_INVALID, "%s: %d:%d is not an N:M pattern (N >= 1, 2 <= M <= %d)", what, n, m, RF_NM_MAX_M);
    if (n > m) return rf_error(ctx, RF_ERR_INVALID, "%s: N = %d > M = %d", what, n, m);
    if (rows < 0 || cols <= 0 || cols % m)
        return rf_error(ctx, RF_ERR_INVALID, "%s: M = %d does not divide the row length %lld", what, m, (long long)cols);
    return RF_OK;
}

rf_status rf_nm_select(rf_ctx *ctx, const float *scores, int64_t rows, int64_t cols, int n, int m, uint8_t *mask) {
    RF_TRY(check_nm(ctx, "N:M selection", rows, cols, n, m));
    for (int64_t i = 0; i < rows * cols; i++)
        if (isnan(scores[i])) return rf_error(ctx, RF_ERR_INVALID, "N:M selection: score %lld is NaN", (long long)i);
    for (int64_t g = 0; g < rows * cols / m; g++) {
        const float *s = scores + g * m;
        for (int j = 0; j < m; j++) {
            /* rank of j: group members that beat it (higher score, or the
             * same score at a lower index) */
            int beaten = 0;
            for (int i = 0; i < m; i++) beaten += s[i] > s[j] || (s[i] == s[j] && i < j);
            mask[g * m + j] = beaten < n;
        }
    }
    return RF_OK;
}

rf_status rf_nm_check(rf_ctx *ctx, const uint8_t *mask, int64_t rows, int64_t cols, int n, int m, int exact) {
    RF_TRY(check_nm(ctx, "N:M check", rows, cols, n, m));
    for (int64_t g = 0; g < rows * cols / m; g++) {
        int kept = 0;
        for (int j = 0; j < m; j++) kept += mask[g * m + j] != 0;
        if (kept > n || (exact && kept != n))
            return rf_error(ctx, RF_ERR_INVALID, "N:M check: row %lld, group %lld keeps %d of %d (%s %d)", (long long)(g * m / cols),
                            (long long)((g * m % cols) / m), kept, m, exact ? "need exactly" : "at most", n);
    }
    return RF_OK;
}
