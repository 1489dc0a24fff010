/* AVX2 register tiles and the packers of the dense GEMM (gemm.c, layouts
 * in gemm_internal.h).
 *
 * Tiles: 6 x 16 (12 ymm accumulators, 2 B vectors, 1 broadcast: 15 of the
 * 16 registers) and 12 x 8 for the last 8 columns of a panel. As on
 * AVX-512 the FMA is asm with the B vector as the first multiplicand
 * (vfmadd231ps, src2 = B), the order fmaf(b, a, acc) of the reference.
 *
 * Packers: A row-major into 6-row panels is a transpose (8 k by 8 rows,
 * the two rows past the panel taken from row 5 and never stored: each
 * 8-float store of a k overlaps the next k's, and the last runs 2 floats
 * past the panel into RF_GEMM_A_SLACK); B transposed into nr-wide panels
 * is an 8 x 8 transpose per block. Copies only: no arithmetic. */
#include "kernels/gemm_internal.h"

#include <immintrin.h>
#include <string.h>

#define T_AVX2 __attribute__((target("avx2,fma"), optimize("O3")))
#define INLINE static inline __attribute__((always_inline))

#define FMA_YMM(acc, b, a) __asm__("vfmadd231ps %2, %1, %0" : "+x"(acc) : "x"(b), "x"(a))

T_AVX2 INLINE __m256i lane_mask(int lanes) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

T_AVX2 INLINE void tile256(int kc, const float *A, size_t ps, const float *B, int nr, float *C, size_t ldc,
                           int lanes, int load_c, const float *Cnext, const int R, const int NV) {
    __m256 c[12];
    if (Cnext) {
        _Pragma("GCC unroll 12")
        for (int r = 0; r < R; r++) _mm_prefetch((const char *)(Cnext + (size_t)r * ldc), _MM_HINT_T0);
    }
    const __m256i mk = lane_mask(lanes);
    const int full = lanes == 8;
    const float *ap[2] = {A, A + ps};
    _Pragma("GCC unroll 12")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2")
        for (int v = 0; v < NV; v++) {
            const float *src = C + (size_t)r * ldc + 8 * v;
            c[r * NV + v] = !load_c ? _mm256_setzero_ps()
                            : v < NV - 1 || full ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mk);
        }
    for (int k = 0; k < kc; k++) {
        __m256 b[2];
        _Pragma("GCC unroll 2")
        for (int v = 0; v < NV; v++) {
            const float *src = B + (size_t)k * nr + 8 * v;
            b[v] = v < NV - 1 || full ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mk);
        }
        _Pragma("GCC unroll 12")
        for (int r = 0; r < R; r++) {
            __m256 a = _mm256_broadcast_ss(ap[r / RF_GEMM_MR] + (size_t)k * RF_GEMM_MR + r % RF_GEMM_MR);
            _Pragma("GCC unroll 2")
            for (int v = 0; v < NV; v++) FMA_YMM(c[r * NV + v], b[v], a);
        }
    }
    _Pragma("GCC unroll 12")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2")
        for (int v = 0; v < NV; v++) {
            float *dst = C + (size_t)r * ldc + 8 * v;
            if (v < NV - 1 || full) _mm256_storeu_ps(dst, c[r * NV + v]);
            else _mm256_maskstore_ps(dst, mk, c[r * NV + v]);
        }
}

#define TILE_FN(r, nv)                                                                                        \
    T_AVX2 static void t256_##r##_##nv(int kc, const float *A, size_t ps, const float *B, int nr, float *C,   \
                                       size_t ldc, int lanes, int load_c, const float *Cn) {                 \
        tile256(kc, A, ps, B, nr, C, ldc, lanes, load_c, Cn, r, nv);                                         \
    }
#define TILE_NV(r) TILE_FN(r, 1) TILE_FN(r, 2)
TILE_NV(1) TILE_NV(2) TILE_NV(3) TILE_NV(4) TILE_NV(5) TILE_NV(6)
TILE_FN(12, 1)

typedef void (*t256_fn)(int, const float *, size_t, const float *, int, float *, size_t, int, int, const float *);
#define ROW(r) {t256_##r##_1, t256_##r##_2}
static const t256_fn edge_tiles[7][2] = {{0}, ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

void rf_gemm_tile_avx2(int R, int nv, int kc, const float *A, size_t ps, const float *B, int nr, float *C,
                       size_t ldc, int lanes, int load_c, const float *Cnext) {
    if (R <= RF_GEMM_MR) edge_tiles[R][nv - 1](kc, A, ps, B, nr, C, ldc, lanes, load_c, Cnext);
    else t256_12_1(kc, A, ps, B, nr, C, ldc, lanes, load_c, Cnext);
}

/* ---- packers ----------------------------------------------------------------- */
/* The 8 x 8 block s[r * sld + c] (r, c < 8) transposed: out[c] = column c. */
T_AVX2 INLINE void tr8(const __m256 in[8], __m256 out[8]) {
    __m256 t0 = _mm256_unpacklo_ps(in[0], in[1]), t1 = _mm256_unpackhi_ps(in[0], in[1]);
    __m256 t2 = _mm256_unpacklo_ps(in[2], in[3]), t3 = _mm256_unpackhi_ps(in[2], in[3]);
    __m256 t4 = _mm256_unpacklo_ps(in[4], in[5]), t5 = _mm256_unpackhi_ps(in[4], in[5]);
    __m256 t6 = _mm256_unpacklo_ps(in[6], in[7]), t7 = _mm256_unpackhi_ps(in[6], in[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    out[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    out[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    out[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    out[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    out[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    out[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    out[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    out[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Rows of the next copy that are requested ahead of use: the packers read
 * short runs (a panel's columns or a K block of a row) from rows far apart,
 * where the hardware prefetchers barely start before the run ends. */
#define PF_ROWS 4

T_AVX2 INLINE void prefetch_run(const float *p, int n) {
    for (int o = 0; o < n; o += 16) _mm_prefetch((const char *)(p + o), _MM_HINT_T0);
}

T_AVX2 void rf_gemm_pack_a_avx2(float *Ap, const float *A, int lda, int ta, int i0, int mb, int k0, int kb) {
    enum { MR = RF_GEMM_MR };
    if (ta) {   /* op(A) row i is column i of A: row k of A holds k for every panel */
        const int full = mb / MR;
        for (int k = 0; k < kb; k++) {
            const float *s = A + (size_t)(k0 + k) * lda + i0;
            if (k + PF_ROWS < kb) prefetch_run(s + (size_t)PF_ROWS * lda, mb);
            for (int p = 0; p < full; p++) memcpy(Ap + (size_t)p * MR * kb + (size_t)k * MR, s + p * MR, MR * sizeof(float));
            if (full * MR < mb) {
                float *d = Ap + (size_t)full * MR * kb + (size_t)k * MR;
                for (int r = 0; r < MR; r++) d[r] = full * MR + r < mb ? s[full * MR + r] : 0.0f;
            }
        }
        return;
    }
    for (int p = 0; p * MR < mb; p++) {
        float *d = Ap + (size_t)p * MR * kb;
        const int rows = mb - p * MR < MR ? mb - p * MR : MR, ib = i0 + p * MR;
        const float *s[MR];
        for (int r = 0; r < MR; r++) s[r] = A + (size_t)(ib + (r < rows ? r : rows - 1)) * lda + k0;
        if ((p + 1) * MR < mb)
            for (int r = 0; r < MR && (p + 1) * MR + r < mb; r++) prefetch_run(s[0] + (size_t)(MR + r) * lda, kb);
        int k = 0;
        if (rows == MR) {
            for (; k + 8 <= kb; k += 8) {
                __m256 in[8], out[8];
                for (int r = 0; r < MR; r++) in[r] = _mm256_loadu_ps(s[r] + k);
                in[6] = in[7] = in[5];
                tr8(in, out);
                for (int q = 0; q < 8; q++) _mm256_storeu_ps(d + (size_t)(k + q) * MR, out[q]);
            }
        }
        for (; k < kb; k++)
            for (int r = 0; r < MR; r++) d[(size_t)k * MR + r] = r < rows ? s[r][k] : 0.0f;
    }
}

T_AVX2 void rf_gemm_pack_b_avx2(float *Bp, const float *B, int ldb, int tb, int k0, int kb, int j0, int nb, int nr,
                                int vl) {
    if (!tb) {   /* row k of the block, nb contiguous floats, into every panel */
        for (int k = 0; k < kb; k++) {
            const float *s = B + (size_t)(k0 + k) * ldb + j0;
            if (k + PF_ROWS < kb) prefetch_run(s + (size_t)PF_ROWS * ldb, nb);
            for (int q = 0; q * nr < nb; q++) {
                const int cols = nb - q * nr < nr ? nb - q * nr : nr, width = (cols + vl - 1) / vl * vl;
                float *dk = Bp + (size_t)q * nr * kb + (size_t)k * nr;
                memcpy(dk, s + q * nr, (size_t)cols * sizeof(float));
                for (int j = cols; j < width; j++) dk[j] = 0.0f;
            }
        }
        return;
    }
    for (int q = 0; q * nr < nb; q++) {
        float *d = Bp + (size_t)q * nr * kb;
        const int jb = j0 + q * nr, cols = nb - q * nr < nr ? nb - q * nr : nr;
        const int width = (cols + vl - 1) / vl * vl;
        /* op(B)[k][j] = B[j][k]: 8 x 8 blocks of (j, k) transposed */
        int j = 0;
        for (; j + 8 <= cols; j += 8) {
            const float *s = B + (size_t)(jb + j) * ldb + k0;
            int k = 0;
            for (; k + 8 <= kb; k += 8) {
                __m256 in[8], out[8];
                for (int r = 0; r < 8; r++) in[r] = _mm256_loadu_ps(s + (size_t)r * ldb + k);
                tr8(in, out);
                for (int c = 0; c < 8; c++) _mm256_storeu_ps(d + (size_t)(k + c) * nr + j, out[c]);
            }
            for (; k < kb; k++)
                for (int r = 0; r < 8; r++) d[(size_t)k * nr + j + r] = s[(size_t)r * ldb + k];
        }
        for (int k = 0; k < kb; k++) {
            float *dk = d + (size_t)k * nr;
            for (int jj = j; jj < width; jj++) dk[jj] = jj < cols ? B[(size_t)(jb + jj) * ldb + k0 + k] : 0.0f;
        }
    }
}
