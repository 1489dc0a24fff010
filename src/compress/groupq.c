/* Group quantization of weights to 2-4 bits, held in the int4 container
 * (RF_STORE_INT4, the int4 GEMM of kernels.h): one fp32 scale, and for the
 * affine mode one zero point, per group of 32, 64 or 128 consecutive weights
 * of a row of W[N, K], i.e. along the input dimension, as in the group-wise
 * 4-bit schemes of GPTQ (Frantar et al. 2023) and AWQ (Lin et al. 2024).
 * Equations in include/raffle/lowbit.h and docs/quantization.md.
 *
 * Why groups: at 4 bits one scale per output row (raffle's int8 scheme) lets
 * a row's largest weight set the step for all K weights; a group of 32-128
 * bounds the damage an outlier does to its neighbours, at 32 / group_size
 * extra bits per weight for the fp32 scale. */
#include "raffle/lowbit.h"

#include <math.h>
#include <string.h>

static const char *const mode_names[RF_GROUP_MODE_COUNT_] = {"symmetric", "affine"};

const char *rf_group_mode_name(rf_group_mode m) { return (unsigned)m < RF_GROUP_MODE_COUNT_ ? mode_names[m] : "?"; }

int rf_group_mode_from_name(const char *s) {
    for (int m = 0; s && m < RF_GROUP_MODE_COUNT_; m++)
        if (strcmp(s, mode_names[m]) == 0) return m;
    return -1;
}

int rf_group_size_ok(int g) { return g == 32 || g == 64 || g == 128; }

rf_status rf_group_quantize(rf_ctx *ctx, const float *W, int64_t rows, int64_t cols, int bits, int group_size,
                            rf_group_mode mode, int8_t *q, float *scales, int32_t *zero_points) {
    if (bits < RF_GROUP_BITS_MIN || bits > RF_GROUP_BITS_MAX)
        return rf_error(ctx, RF_ERR_INVALID, "group quantization: bits %d outside [%d, %d] (the int4 container holds at most 4)",
                        bits, RF_GROUP_BITS_MIN, RF_GROUP_BITS_MAX);
    /* one group per row (group_size == cols) is the fallback for rows that
     * no group size divides (784, 300, 100 in lenet-300-100) */
    if (!rf_group_size_ok(group_size) && group_size != cols)
        return rf_error(ctx, RF_ERR_INVALID, "group quantization: group size %d (32, 64 or 128, or the row length %lld)",
                        group_size, (long long)cols);
    if (rows < 0 || cols <= 0 || cols % group_size)
        return rf_error(ctx, RF_ERR_INVALID, "group quantization: group size %d does not divide the row length %lld", group_size,
                        (long long)cols);
    if ((unsigned)mode >= RF_GROUP_MODE_COUNT_) return rf_error(ctx, RF_ERR_INVALID, "group quantization: unknown mode %d", (int)mode);
    if ((mode == RF_GROUP_AFFINE) != (zero_points != NULL))
        return rf_error(ctx, RF_ERR_INVALID, "group quantization: %s mode %s zero points", rf_group_mode_name(mode),
                        mode == RF_GROUP_AFFINE ? "needs" : "takes no");
    const int64_t gpr = cols / group_size;
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(W[i])) return rf_error(ctx, RF_ERR_INVALID, "group quantization: weight %lld is not finite", (long long)i);
    const int qmax = (1 << (bits - 1)) - 1, levels = (1 << bits) - 1;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < gpr; g++) {
            const float *w = W + r * cols + g * group_size;
            int8_t *o = q + r * cols + g * group_size;
            const int64_t gi = r * gpr + g;
            float lo = 0.0f, hi = 0.0f;   /* the range always contains 0: pruned weights stay exact */
            for (int k = 0; k < group_size; k++) { if (w[k] < lo) lo = w[k]; if (w[k] > hi) hi = w[k]; }
            if (mode == RF_GROUP_SYMMETRIC) {
                float m = fmaxf(-lo, hi);
                float s = m > 0.0f ? m / (float)qmax : 1.0f;
                scales[gi] = s;
                for (int k = 0; k < group_size; k++) {
                    float v = nearbyintf(w[k] / s);
                    o[k] = (int8_t)(v < -qmax ? -qmax : v > qmax ? qmax : v);
                }
            } else {
                float s = hi > lo ? (hi - lo) / (float)levels : 1.0f;
                float zf = nearbyintf(-lo / s);
                int32_t z = (int32_t)(zf < 0.0f ? 0.0f : zf > (float)levels ? (float)levels : zf);
                scales[gi] = s;
                zero_points[gi] = z;
                for (int k = 0; k < group_size; k++) {
                    float v = nearbyintf(w[k] / s) + (float)z;
                    o[k] = (int8_t)(v < 0.0f ? 0.0f : v > (float)levels ? (float)levels : v);
                }
            }
        }
    return RF_OK;
}

void rf_group_dequantize(const int8_t *q, int64_t rows, int64_t cols, int group_size, const float *scales,
                         const int32_t *zero_points, float *W) {
    const int64_t gpr = cols / group_size;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) {
            const int64_t gi = r * gpr + k / group_size;
            W[r * cols + k] = (float)(q[r * cols + k] - (zero_points ? zero_points[gi] : 0)) * scales[gi];
        }
}
