/* int4 x u8 GEMM kernels (layout and arithmetic in kern_internal.h and
 * q4gemm.c): AVX-512 VNNI and AVX2. Both unpack a 32-byte unit of nibbles
 * into 16 channels x 4 k signed bytes in registers (low nibbles channels
 * 0-7, high nibbles 8-15, minus the stored zero points), accumulate one
 * group's exact int32 dot products, then add scale x float(sum) with one
 * FMA per group and channel, groups in increasing order: the reference's
 * fmaf chain, so the outputs are bit-identical to rf_q4gemm_ref.
 *
 * AVX2 has no vpdpbusd, but int4 weights make vpmaddubsw safe: a pair of
 * u8 x s8 products is at most 2 x 255 x 15 = 7,650 in magnitude, far from
 * the int16 saturation that rules it out for int8 weights (simd_avx2.c);
 * vpmaddwd with ones then sums the pairs into int32. */
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

static inline uint32_t a_dword4(const uint8_t *a, int t) {
    uint32_t v;
    memcpy(&v, a + 4 * (size_t)t, 4);
    return v;
}

/* ---- AVX-512 VNNI --------------------------------------------------------- */
#define Q4MR 4
#define Q4NV 4

/* The 64 signed weights of one unit: the 32 packed bytes broadcast to both
 * halves, the upper half shifted right by 4 (a 64-bit lane shift: the bits
 * that cross into a byte from its neighbour are masked off), low nibbles
 * kept, stored zero points subtracted. */
T_VNNI INLINE __m512i unit_512(const uint8_t *unit, __m512i shift, __m512i zzb) {
    __m512i p = _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(const void *)unit));
    __m512i u = _mm512_and_si512(_mm512_srlv_epi64(p, shift), _mm512_set1_epi8(0x0F));
    return _mm512_sub_epi8(u, zzb);
}

T_VNNI INLINE __m512i zz_512(const rf_q4mat *W, int b, int g) {
    if (!W->affine) return _mm512_set1_epi8(8);
    __m512i z = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(const void *)(W->zz + ((size_t)b * W->G + (size_t)g) * 16)));
    return _mm512_shuffle_epi8(z, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)rep4)));
}

/* MR rows of A x NV blocks of 16 channels. */
T_VNNI INLINE void q4_block_vnni(const rf_q4mat *W, const uint8_t *A, float *Y, int m0, const int MR, int b0, const int NV) {
    const int N = W->N, K = W->K, G = W->G, T = W->gs / 4, K4 = K / 4;
    const __m512i shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    const uint8_t *wb[Q4NV];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < NV; v++) wb[v] = W->w + (size_t)(b0 + v) * (size_t)K4 * 32;
    const uint8_t *a[Q4MR];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) a[r] = A + (size_t)(m0 + r) * K;
    __m512 y[Q4MR][Q4NV];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 8")
        for (int v = 0; v < NV; v++) y[r][v] = _mm512_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m512i zzb[Q4NV], acc[Q4MR][Q4NV];
        _Pragma("GCC unroll 8")
        for (int v = 0; v < NV; v++) zzb[v] = zz_512(W, b0 + v, g);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++)
            _Pragma("GCC unroll 8")
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_si512();
        for (int t = g * T; t < (g + 1) * T; t++) {
            __m512i w[Q4NV];
            _Pragma("GCC unroll 8")
            for (int v = 0; v < NV; v++) w[v] = unit_512(wb[v] + (size_t)t * 32, shift, zzb[v]);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; r++) {
                __m512i av = _mm512_set1_epi32((int)a_dword4(a[r], t));
                _Pragma("GCC unroll 8")
                for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, w[v]);
            }
        }
        _Pragma("GCC unroll 8")
        for (int v = 0; v < NV; v++) {
            __m512 s = _mm512_load_ps(W->scales + ((size_t)(b0 + v) * G + (size_t)g) * 16);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; r++) y[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][v]), s, y[r][v]);
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

#define Q4_CASE(mr, nv) case (mr) * 8 + (nv): q4_block_vnni(W, A, Y, m0, mr, b0, nv); break;
#define Q4_NV(mr) Q4_CASE(mr, 1) Q4_CASE(mr, 2) Q4_CASE(mr, 3) Q4_CASE(mr, 4)
#define Q4_ALL Q4_NV(1) Q4_NV(2) Q4_NV(3) Q4_NV(4)

/* Register blocks: 4 rows x 2 blocks (16 accumulators and float sums)
 * from 4 rows of A; below that, up to 4 blocks per row, so a single row
 * still has 4 independent vpdpbusd chains. */
T_VNNI void rf_q4gemm_vnni(const rf_q4mat *W, const uint8_t *A, float *Y, int M) {
    const int nb = W->nb, NVB = M >= Q4MR ? 2 : Q4NV;
    for (int b0 = 0; b0 < nb; b0 += NVB) {
        int nv = nb - b0 < NVB ? nb - b0 : NVB;
        for (int m0 = 0; m0 < M; m0 += Q4MR) {
            int mr = M - m0 < Q4MR ? M - m0 : Q4MR;
            switch (mr * 8 + nv) {
                Q4_ALL
            default: break;
            }
        }
    }
}

/* ---- AVX2 ------------------------------------------------------------------- */
T_AVX2 INLINE void zz_256(const rf_q4mat *W, int b, int g, __m256i *lo, __m256i *hi) {
    if (!W->affine) { *lo = *hi = _mm256_set1_epi8(8); return; }
    const uint8_t *z = W->zz + ((size_t)b * W->G + (size_t)g) * 16;
    const __m256i rep = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)rep4));
    *lo = _mm256_shuffle_epi8(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)z)), rep);
    *hi = _mm256_shuffle_epi8(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(z + 8))), rep);
}

/* MR rows of A x one block of 16 channels (two ymm halves). */
T_AVX2 INLINE void q4_block_avx2(const rf_q4mat *W, const uint8_t *A, float *Y, int m0, const int MR, int b) {
    const int N = W->N, K = W->K, G = W->G, T = W->gs / 4;
    const uint8_t *wb = W->w + (size_t)b * (size_t)(K / 4) * 32;
    const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 y[2][2];
    _Pragma("GCC unroll 2")
    for (int r = 0; r < MR; r++) y[r][0] = y[r][1] = _mm256_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m256i zlo, zhi, acc[2][2];
        zz_256(W, b, g, &zlo, &zhi);
        _Pragma("GCC unroll 2")
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int t = g * T; t < (g + 1) * T; t++) {
            __m256i p = _mm256_load_si256((const __m256i *)(const void *)(wb + (size_t)t * 32));
            __m256i wlo = _mm256_sub_epi8(_mm256_and_si256(p, nib), zlo);
            __m256i whi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(p, 4), nib), zhi);
            _Pragma("GCC unroll 2")
            for (int r = 0; r < MR; r++) {
                __m256i av = _mm256_set1_epi32((int)a_dword4(A + (size_t)(m0 + r) * K, t));
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, wlo), ones));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, whi), ones));
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

T_AVX2 void rf_q4gemm_avx2(const rf_q4mat *W, const uint8_t *A, float *Y, int M) {
    for (int b = 0; b < W->nb; b++) {
        int m0 = 0;
        for (; m0 + 2 <= M; m0 += 2) q4_block_avx2(W, A, Y, m0, 2, b);
        if (m0 < M) q4_block_avx2(W, A, Y, m0, 1, b);
    }
}
