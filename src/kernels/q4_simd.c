/* int4 x u8 GEMM kernels (layout and arithmetic in kern_internal.h and
 * q4gemm.c): AVX-512 VNNI and AVX2. A 64-byte unit of nibbles is one load;
 * its low nibbles (masked) and high nibbles (shifted, masked), minus the
 * stored zero points, are two 16-channel x 4-k operands of signed weights
 * in [-15, 15]. Per group the kernels accumulate the exact int32 sum of
 * (u - zz) * a and add scale x float(sum) with one FMA per group and
 * channel, groups in increasing order: the reference's fmaf chain, so the
 * outputs are bit-identical to rf_q4gemm_ref.
 *
 * Subtracting the zero points in registers (two vpsubb per unit, shared by
 * every row of the block) measured faster than subtracting zz x (each
 * row's activation sum over the group) after the dot products: those sums
 * cost M x K byte additions per call, which the N = 10 heads cannot
 * amortise (10x800 at 64 rows: 2.15 against 4.08 us; int8 2.5 us), and the
 * wider layers came out within noise or better (docs/kernels.md).
 *
 * AVX2 has no vpdpbusd, but 4-bit weights make vpmaddubsw safe: a pair of
 * u8 x s8 products is at most 2 x 255 x 15 = 7,650 in magnitude, and the
 * pairs of a unit's low and high nibbles add to at most 15,300, far from
 * the int16 saturation that rules it out for int8 weights (simd_avx2.c);
 * vpmaddwd with ones then sums them into int32. */
#include "kernels/kern_internal.h"

#include <immintrin.h>
#include <string.h>

#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* vpshufb pattern (per 128-bit lane): bytes 4c..4c+3 take byte 4c, the low
 * byte of dword c, so a channel's zero point (zero-extended into dword c)
 * covers its 4 k. */
static const int8_t rep4[16] = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};

static inline int a_dword4(const uint8_t *a, size_t k) {
    int32_t v;
    memcpy(&v, a + k, 4);
    return v;
}

/* ---- AVX-512 VNNI --------------------------------------------------------- */
#define Q4MR 8
#define Q4NV 4

/* The stored zero points of block b, group g, as the 64 bytes of a
 * vpdpbusd operand (each channel's over its 4 k). */
T_VNNI INLINE __m512i zz_512(const rf_q4mat *W, int b, int g) {
    if (!W->affine) return _mm512_set1_epi8(8);
    __m512i z = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(const void *)(W->zz + ((size_t)b * W->G + (size_t)g) * 16)));
    return _mm512_shuffle_epi8(z, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)rep4)));
}

/* MR rows of A x NV blocks of 16 channels; U = 2 keeps the low- and
 * high-nibble products in separate accumulators (twice the independent
 * vpdpbusd chains, for the few-row blocks that would otherwise wait on
 * latency). */
T_VNNI INLINE void q4_block_vnni(const rf_q4mat *W, const uint8_t *A, float *Y, int m0, const int MR,
                                 int b0, const int NV, const int U) {
    const int N = W->N, K = W->K, G = W->G, T8 = W->gs / 8, K8 = K / 8;
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const uint8_t *wb[Q4NV];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; v++) wb[v] = W->w + (size_t)(b0 + v) * (size_t)K8 * 64;
    __m512 y[Q4MR][Q4NV];   /* MR x NV <= 8: the blocks the driver picks */
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 8")
        for (int v = 0; v < NV; v++) y[r][v] = _mm512_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m512i acc[2][Q4MR][Q4NV], zzb[Q4NV];
        _Pragma("GCC unroll 8")
        for (int v = 0; v < NV; v++) zzb[v] = zz_512(W, b0 + v, g);
        _Pragma("GCC unroll 8")
        for (int h = 0; h < U; h++)
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; r++)
                _Pragma("GCC unroll 8")
                for (int v = 0; v < NV; v++) acc[h][r][v] = _mm512_setzero_si512();
        for (int t = g * T8; t < (g + 1) * T8; t++) {
            __m512i lo[Q4NV], hi[Q4NV];
            _Pragma("GCC unroll 8")
            for (int v = 0; v < NV; v++) {
                __m512i p = _mm512_load_si512((const void *)(wb[v] + (size_t)t * 64));
                lo[v] = _mm512_sub_epi8(_mm512_and_si512(p, nib), zzb[v]);
                hi[v] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(p, 4), nib), zzb[v]);
            }
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; r++) {
                const uint8_t *a = A + (size_t)(m0 + r) * K + 8 * (size_t)t;
                __m512i a0 = _mm512_set1_epi32(a_dword4(a, 0)), a1 = _mm512_set1_epi32(a_dword4(a, 4));
                _Pragma("GCC unroll 8")
                for (int v = 0; v < NV; v++) {
                    acc[0][r][v] = _mm512_dpbusd_epi32(acc[0][r][v], a0, lo[v]);
                    acc[U - 1][r][v] = _mm512_dpbusd_epi32(acc[U - 1][r][v], a1, hi[v]);
                }
            }
        }
        _Pragma("GCC unroll 8")
        for (int v = 0; v < NV; v++) {
            __m512 s = _mm512_load_ps(W->scales + ((size_t)(b0 + v) * G + (size_t)g) * 16);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; r++) {
                __m512i i = U == 2 ? _mm512_add_epi32(acc[0][r][v], acc[1][r][v]) : acc[0][r][v];
                y[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, y[r][v]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; v++) {
        int nn = N - 16 * (b0 + v);
        __mmask16 mk = nn >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nn) - 1);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++) _mm512_mask_storeu_ps(Y + (size_t)(m0 + r) * N + 16 * (b0 + v), mk, y[r][v]);
    }
}

/* Fewer than 8 accumulators (mr x nv <= 4) split the low- and high-nibble
 * products (U = 2) so that 8 vpdpbusd chains stay independent. */
#define Q4_CASE(mr, nv) case (mr) * 8 + (nv): q4_block_vnni(W, A, Y, m0, mr, b0, nv, (mr) * (nv) <= 4 ? 2 : 1); break;
#define Q4_MR3(nv) Q4_CASE(1, nv) Q4_CASE(2, nv) Q4_CASE(3, nv)

/* Register blocks: 4 rows x 2 blocks of 16 channels; a matrix of one block
 * (N <= 16, the classifier heads) takes 8 rows at a time instead, so each
 * weight load serves 8 rows (10x256 at 64 rows: 1.06 -> 0.86 us, int8's
 * kernel takes 0.83); fewer than 4 rows take up to 4 blocks, so that a
 * single row still has 8 independent vpdpbusd chains. */
T_VNNI void rf_q4gemm_vnni(const rf_q4mat *W, const uint8_t *A, float *Y, int M) {
    if (M <= 0) return;
    const int nb = W->nb, NVB = nb == 1 ? 1 : M >= 4 ? 2 : Q4NV, MRB = nb == 1 ? Q4MR : 4;
    for (int b0 = 0; b0 < nb; b0 += NVB) {
        int nv = nb - b0 < NVB ? nb - b0 : NVB;
        for (int m0 = 0; m0 < M; m0 += MRB) {
            int mr = M - m0 < MRB ? M - m0 : MRB;
            switch (mr * 8 + nv) {
                Q4_CASE(1, 1) Q4_CASE(2, 1) Q4_CASE(3, 1) Q4_CASE(4, 1) Q4_CASE(5, 1) Q4_CASE(6, 1) Q4_CASE(7, 1) Q4_CASE(8, 1)
                Q4_CASE(4, 2) Q4_MR3(2) Q4_MR3(3) Q4_MR3(4)
            default: break;
            }
        }
    }
}

/* ---- AVX2 ------------------------------------------------------------------- */
/* The stored zero points of half h (8 channels) of block b, group g, each
 * over its 4 k. */
T_AVX2 INLINE __m256i zz_256(const rf_q4mat *W, int b, int g, int h) {
    if (!W->affine) return _mm256_set1_epi8(8);
    const uint8_t *z = W->zz + ((size_t)b * W->G + (size_t)g) * 16 + 8 * h;
    const __m256i rep = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)rep4));
    return _mm256_shuffle_epi8(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)z)), rep);
}

/* MR rows of A x one block of 16 channels (two ymm halves). */
T_AVX2 INLINE void q4_block_avx2(const rf_q4mat *W, const uint8_t *A, float *Y, int m0, const int MR, int b) {
    const int N = W->N, K = W->K, G = W->G, T8 = W->gs / 8;
    const uint8_t *wb = W->w + (size_t)b * (size_t)(K / 8) * 64;
    const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 y[2][2];
    _Pragma("GCC unroll 2")
    for (int r = 0; r < MR; r++) y[r][0] = y[r][1] = _mm256_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m256i acc[2][2], zz[2] = {zz_256(W, b, g, 0), zz_256(W, b, g, 1)};
        _Pragma("GCC unroll 2")
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int t = g * T8; t < (g + 1) * T8; t++) {
            _Pragma("GCC unroll 2")
            for (int h = 0; h < 2; h++) {
                __m256i p = _mm256_load_si256((const __m256i *)(const void *)(wb + (size_t)t * 64 + 32 * h));
                __m256i lo = _mm256_sub_epi8(_mm256_and_si256(p, nib), zz[h]);
                __m256i hi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(p, 4), nib), zz[h]);
                _Pragma("GCC unroll 2")
                for (int r = 0; r < MR; r++) {
                    const uint8_t *a = A + (size_t)(m0 + r) * K + 8 * (size_t)t;
                    __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(a_dword4(a, 0)), lo),
                                                  _mm256_maddubs_epi16(_mm256_set1_epi32(a_dword4(a, 4)), hi));
                    acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_madd_epi16(pr, ones));
                }
            }
        }
        const float *s = W->scales + ((size_t)b * G + (size_t)g) * 16;
        __m256 s0 = _mm256_load_ps(s), s1 = _mm256_load_ps(s + 8);
        _Pragma("GCC unroll 2")
        for (int r = 0; r < MR; r++) {
            y[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][0]), s0, y[r][0]);
            y[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][1]), s1, y[r][1]);
        }
    }
    int nn = N - 16 * b < 16 ? N - 16 * b : 16;
    _Pragma("GCC unroll 2")
    for (int r = 0; r < MR; r++) {
        float *o = Y + (size_t)(m0 + r) * N + 16 * b;
        if (nn == 16) {
            _mm256_storeu_ps(o, y[r][0]);
            _mm256_storeu_ps(o + 8, y[r][1]);
        } else {
            float tmp[16];
            _mm256_storeu_ps(tmp, y[r][0]);
            _mm256_storeu_ps(tmp + 8, y[r][1]);
            memcpy(o, tmp, sizeof(float) * (size_t)nn);
        }
    }
}

/* MR rows of A x one 8-channel half h of block b: with the halves apart
 * the unpacked weights serve 4 rows within the 16 ymm registers. */
T_AVX2 INLINE void q4_half_avx2(const rf_q4mat *W, const uint8_t *A, float *Y, int m0, const int MR, int b, int h) {
    const int N = W->N, K = W->K, G = W->G, T8 = W->gs / 8;
    const uint8_t *wb = W->w + (size_t)b * (size_t)(K / 8) * 64 + 32 * h;
    const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 y[4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < MR; r++) y[r] = _mm256_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m256i acc[4], zz = zz_256(W, b, g, h);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < MR; r++) acc[r] = _mm256_setzero_si256();
        for (int t = g * T8; t < (g + 1) * T8; t++) {
            __m256i p = _mm256_load_si256((const __m256i *)(const void *)(wb + (size_t)t * 64));
            __m256i lo = _mm256_sub_epi8(_mm256_and_si256(p, nib), zz);
            __m256i hi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(p, 4), nib), zz);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < MR; r++) {
                const uint8_t *a = A + (size_t)(m0 + r) * K + 8 * (size_t)t;
                __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(a_dword4(a, 0)), lo),
                                              _mm256_maddubs_epi16(_mm256_set1_epi32(a_dword4(a, 4)), hi));
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pr, ones));
            }
        }
        __m256 s = _mm256_load_ps(W->scales + ((size_t)b * G + (size_t)g) * 16 + 8 * h);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < MR; r++) y[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r]), s, y[r]);
    }
    int nn = N - 16 * b - 8 * h;
    if (nn <= 0) return;
    _Pragma("GCC unroll 4")
    for (int r = 0; r < MR; r++) {
        float *o = Y + (size_t)(m0 + r) * N + 16 * b + 8 * h;
        if (nn >= 8) _mm256_storeu_ps(o, y[r]);
        else { float tmp[8]; _mm256_storeu_ps(tmp, y[r]); memcpy(o, tmp, sizeof(float) * (size_t)nn); }
    }
}

/* 4 rows per half from 4 rows of A (2-13% faster than 2 rows over both
 * halves at 17-1,088 rows, side by side on the bench shapes); fewer rows
 * take both halves at once, whose two accumulators per row hide more
 * latency (256x12544 at one row: 35.1 against 37.6 us). */
T_AVX2 void rf_q4gemm_avx2(const rf_q4mat *W, const uint8_t *A, float *Y, int M) {
    for (int b = 0; b < W->nb; b++) {
        if (M < 4) {
            int m0 = 0;
            for (; m0 + 2 <= M; m0 += 2) q4_block_avx2(W, A, Y, m0, 2, b);
            if (m0 < M) q4_block_avx2(W, A, Y, m0, 1, b);
            continue;
        }
        for (int h = 0; h < 2; h++) {
            int m0 = 0;
            for (; m0 + 4 <= M; m0 += 4) q4_half_avx2(W, A, Y, m0, 4, b, h);
            switch (M - m0) {
            case 3: q4_half_avx2(W, A, Y, m0, 3, b, h); break;
            case 2: q4_half_avx2(W, A, Y, m0, 2, b, h); break;
            case 1: q4_half_avx2(W, A, Y, m0, 1, b, h); break;
            default: break;
            }
        }
    }
}
