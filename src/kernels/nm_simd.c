/* The N:M slot kernel (AVX-512; layout in kern_internal.h, the choice of
 * kernel in nmspmm.c). Per 8 rows of X and block of 16 output channels:
 * each row's 16-column chunk in a register, and per slot one vpmovzxbd of
 * the 16 offsets, one weight load, and per row one vpermps (which lines the
 * row's activations up with the 16 channels' weights) and one FMA. Each
 * accumulator starts from the bias and takes one FMA per slot in storage
 * order, as rf_nm_spmm_ref does with fmaf: bit-identical. */
#include "kernels/kern_internal.h"

#include <immintrin.h>

#define T_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))
#define NMR 8

T_512 INLINE void nm_rows_512(const rf_nmmat *s, const float *X, const float *bias, float *Y, int m0, int b, const int MR) {
    const int N = s->N, K = s->K, full = K / 16, nn = N - 16 * b;
    const __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1);
    const __mmask16 mk = nn >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nn) - 1);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + 16 * b) : _mm512_setzero_ps();
    const uint8_t *off = s->off + (size_t)b * (size_t)s->nslots * 16;
    const float *w = s->w + (size_t)b * (size_t)s->nslots * 16;
    const float *xb = X + (size_t)m0 * K;
    __m512 acc[NMR];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) acc[r] = bv;
    for (int c = 0; c < s->nc; c++) {
        __m512 xc[NMR];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++)
            xc[r] = c < full ? _mm512_loadu_ps(xb + (size_t)r * K + 16 * (size_t)c)
                             : _mm512_maskz_loadu_ps(tail, xb + (size_t)r * K + 16 * (size_t)c);
        for (int64_t t = s->cptr[c]; t < s->cptr[c + 1]; t++) {
            __m512i idx = _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(const void *)(off + (size_t)t * 16)));
            __m512 wv = _mm512_load_ps(w + (size_t)t * 16);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < MR; r++) acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, xc[r]), wv, acc[r]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) _mm512_mask_storeu_ps(Y + (size_t)(m0 + r) * N + 16 * b, mk, acc[r]);
}

T_512 void rf_nm_spmm_avx512(const rf_nmmat *W, const float *X, const float *bias, float *Y, int M) {
    int m0 = 0;
    for (; m0 + NMR <= M; m0 += NMR)
        for (int b = 0; b < W->nb; b++) nm_rows_512(W, X, bias, Y, m0, b, NMR);
    for (int b = 0; b < W->nb; b++) switch (M - m0) {
        case 7: nm_rows_512(W, X, bias, Y, m0, b, 7); break;
        case 6: nm_rows_512(W, X, bias, Y, m0, b, 6); break;
        case 5: nm_rows_512(W, X, bias, Y, m0, b, 5); break;
        case 4: nm_rows_512(W, X, bias, Y, m0, b, 4); break;
        case 3: nm_rows_512(W, X, bias, Y, m0, b, 3); break;
        case 2: nm_rows_512(W, X, bias, Y, m0, b, 2); break;
        case 1: nm_rows_512(W, X, bias, Y, m0, b, 1); break;
        default: break;
        }
}
