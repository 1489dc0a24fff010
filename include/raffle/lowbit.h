/* raffle lowbit: fewer than 8 bits per weight, on plain arrays.
 *
 *  - k-means weight sharing (Han, Mao and Dally 2016, "Deep Compression",
 *    §3): the kept weights of one tensor are clustered into 2^b shared
 *    values; a weight is then a b-bit index into that codebook. Pruned
 *    weights stay 0 and take no part. Centroid fine-tuning (§3.3, eq. 3)
 *    sums the gradients of the weights that share a value.
 *  - group quantization to int4 (and int3 / int2 in the same container):
 *    one fp32 scale (and, affine, one zero point) per group of 32, 64 or
 *    128 consecutive weights of a row, i.e. along the input dimension of
 *    W[N, K].
 *  - N:M semi-structured masks: N kept in every group of M consecutive
 *    weights of a row (2:4, 1:4, 4:8).
 *
 * Nothing here knows about models, layers or files: the checkpoint kinds
 * that store the results are in ckpt.h (rf_ckpt_add_codebook, _int4, _nm),
 * the int4 GEMM in kernels.h. docs/quantization.md has the equations. */
#ifndef RAFFLE_LOWBIT_H
#define RAFFLE_LOWBIT_H

#include "raffle/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- k-means weight sharing -------------------------------------------------- */
#define RF_KMEANS_BITS_MIN 2
#define RF_KMEANS_BITS_MAX 8
#define RF_KMEANS_MAX_ITER_DEFAULT 1000

typedef struct rf_kmeans_info {
    int iterations;   /* Lloyd rounds run (assign, then update)                */
    int converged;    /* 1 if the last round changed no assignment              */
    int kept;         /* weights clustered (mask != 0)                          */
    int empty;        /* clusters with no weight at the end (kept their value)  */
} rf_kmeans_info;

/* Shares the kept weights w[i] (mask[i] != 0; all of them when mask is NULL)
 * of one tensor among 2^bits values, bits in [2, 8]:
 *  - linear initialisation over [min, max] of the kept weights (Deep
 *    Compression §3.2): c_j = min + j (max - min) / (2^bits - 1);
 *  - Lloyd iterations: each kept weight goes to the centroid with the
 *    smallest |w - c_j| (in double; ties to the lower index j), then each
 *    centroid becomes the mean of its weights (summed in double in index
 *    order; a centroid left without weights keeps its value), until a round
 *    changes no assignment or max_iter rounds have run (max_iter <= 0: the
 *    default RF_KMEANS_MAX_ITER_DEFAULT).
 * Fills codebook[2^bits] and idx[n] (pruned entries get index 0) and *info
 * (may be NULL). Deterministic: the same inputs give the same bits on every
 * machine. No kept weight: an all-zero codebook. RF_ERR_INVALID for bits
 * out of range or a non-finite kept weight. */
rf_status rf_kmeans_share(rf_ctx *ctx, const float *w, const uint8_t *mask, size_t n, int bits, int max_iter,
                          float *codebook, uint8_t *idx, rf_kmeans_info *info);
/* The shared weights: w[i] = codebook[idx[i]] where kept, 0 where pruned
 * (mask may be NULL). */
void rf_kmeans_decode(const float *codebook, const uint8_t *idx, const uint8_t *mask, size_t n, float *w);
/* Centroid gradient (Deep Compression eq. 3): cgrad[j] = sum of grad[i] over
 * the kept i with idx[i] == j (in double, in index order), for j < 2^bits
 * (overwritten). Pruned weights contribute nothing, so the mask is kept. */
void rf_kmeans_centroid_grad(const float *grad, const uint8_t *idx, const uint8_t *mask, size_t n, int bits,
                             float *cgrad);
/* One SGD step on the shared values: codebook[j] -= lr * cgrad[j]. Follow it
 * with rf_kmeans_decode to refresh the weights the forward uses. */
void rf_kmeans_sgd_step(float *codebook, const float *cgrad, int bits, float lr);

/* ---- group quantization (int4 container) ------------------------------------- */
typedef enum rf_group_mode {
    RF_GROUP_SYMMETRIC = 0,   /* q = clamp(round(w / s), -qmax, qmax), s = max|w| / qmax, qmax = 2^(b-1) - 1 */
    RF_GROUP_AFFINE = 1,      /* q = clamp(round(w / s) + z, 0, 2^b - 1), s = (hi - lo) / (2^b - 1),
                                 z = round(-lo / s), [lo, hi] the group's range widened to contain 0 */
    RF_GROUP_MODE_COUNT_
} rf_group_mode;
const char *rf_group_mode_name(rf_group_mode m);     /* "symmetric", "affine" */
int         rf_group_mode_from_name(const char *s);  /* -1 if unknown */
#define RF_GROUP_BITS_MIN 2
#define RF_GROUP_BITS_MAX 4
/* 1 if g is a group size the quantizer accepts (32, 64, 128). */
int rf_group_size_ok(int g);

/* Quantizes W[rows, cols] with `bits` bits (2-4; 4 is int4) per weight and
 * one scale (affine: and zero point) per group of group_size consecutive
 * weights of a row. Fills q[rows * cols] (symmetric: [-qmax, qmax]; affine:
 * [0, 2^bits - 1]), scales[rows * cols / group_size] and, for affine,
 * zero_points (same count; must be NULL for symmetric). Rounding is to
 * nearest, ties to even. An all-zero group gets scale 1 (its values stay
 * 0). group_size == cols is one group per row (for rows no group size
 * divides). Errors (RF_ERR_INVALID, naming the setting): bits out of range,
 * group size not 32/64/128 (nor cols) or not dividing cols, a non-finite
 * weight. */
rf_status rf_group_quantize(rf_ctx *ctx, const float *W, int64_t rows, int64_t cols, int bits, int group_size,
                            rf_group_mode mode, int8_t *q, float *scales, int32_t *zero_points);
/* W[i] = (q[i] - zp[g]) * scales[g] (zp = 0 when zero_points is NULL), g
 * the group of element i. */
void rf_group_dequantize(const int8_t *q, int64_t rows, int64_t cols, int group_size, const float *scales,
                         const int32_t *zero_points, float *W);

/* ---- N:M semi-structured masks ----------------------------------------------- */
/* Keeps, in every group of m consecutive elements of each row of
 * scores[rows, cols], the n with the highest score: mask[i] = 1 for kept,
 * 0 otherwise. Ties go to the lower index (an element is kept when fewer
 * than n elements of its group score higher or score the same at a lower
 * index). Errors (RF_ERR_INVALID): n < 1, n > m, m < 2 or m > RF_NM_MAX_M
 * (ckpt.h), m not dividing cols, a NaN score. */
rf_status rf_nm_select(rf_ctx *ctx, const float *scores, int64_t rows, int64_t cols, int n, int m, uint8_t *mask);
/* Checks the N:M constraint: every group of m along each row keeps at most
 * n (exactly n when exact != 0). RF_OK, or RF_ERR_INVALID naming the first
 * offending row and group (and the bad n:m settings as rf_nm_select). */
rf_status rf_nm_check(rf_ctx *ctx, const uint8_t *mask, int64_t rows, int64_t cols, int n, int m, int exact);

#ifdef __cplusplus
}
#endif
#endif
