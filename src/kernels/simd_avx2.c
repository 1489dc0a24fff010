/* AVX2 + FMA kernels: sparse fp32 over transposed panels, int8 GEMM (dense and
 * sparse) through vpmaddwd, and the 8x8 panel transposes (also used by the
 * AVX-512 kernels).
 *
 * int8 without VNNI: vpmaddubsw (u8 x s8 pairs summed into int16) saturates:
 * 255*127 + 255*127 = 64770 > 32767, and no weight range restriction fixes
 * that for u8 activations. These kernels stay exact by working in 16 bits:
 * a dword of 4 bytes (b0 b1 b2 b3) is split into its even bytes (b0, b2) and
 * odd bytes (b1, b3) as 16-bit lanes (zero-extended for activations,
 * sign-extended for weights), and vpmaddwd sums each pair of 16x16-bit
 * products into int32, where |product| <= 255*128 cannot overflow. */
#include "kernels/kern_internal.h"

#include <immintrin.h>
#include <string.h>

#define T_AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* ---- transposes ----------------------------------------------------------
 * 8x8 blocks; the 128-bit lane exchange is done by the loads (vinsertf128
 * from memory) rather than by permutes, leaving 16 in-lane shuffles per block
 * instead of 24 (the shuffle port is the bottleneck of a transpose). The
 * destination rows are addressed from four base pointers so the compiler
 * keeps every stride in a register. */
T_AVX2 INLINE void tr8x8(const float *s, size_t sld, float *d, size_t dld) {
    float *d1 = d + dld, *d2 = d + 2 * dld, *d3 = d1 + 2 * dld;
    _Pragma("GCC unroll 2")
    for (int h = 0; h < 8; h += 4) {
        __m256 a0 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + h)), _mm_loadu_ps(s + 4 * sld + h), 1);
        __m256 a1 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + sld + h)), _mm_loadu_ps(s + 5 * sld + h), 1);
        __m256 a2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + 2 * sld + h)), _mm_loadu_ps(s + 6 * sld + h), 1);
        __m256 a3 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + 3 * sld + h)), _mm_loadu_ps(s + 7 * sld + h), 1);
        __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
        __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
        size_t o = (size_t)h * dld;
        _mm256_storeu_ps(d + o, _mm256_shuffle_ps(t0, t2, 0x44));
        _mm256_storeu_ps(d1 + o, _mm256_shuffle_ps(t0, t2, 0xEE));
        _mm256_storeu_ps(d2 + o, _mm256_shuffle_ps(t1, t3, 0x44));
        _mm256_storeu_ps(d3 + o, _mm256_shuffle_ps(t1, t3, 0xEE));
    }
}

/* P[k * ld + i] = src[i * K + k]; rows padded with zeros up to ld (ld % 8 == 0). */
T_AVX2 INLINE void panel_in_body(const float *s, int rows, int K, float *p, const int ld) {
    int i8 = rows & ~7, k8 = K & ~7;
    for (int i0 = 0; i0 < i8; i0 += 16) {
        int ib = i8 - i0 >= 16 ? 16 : 8;
        int k0 = 0;
        if (ib == 16)
            for (; k0 + 16 <= k8; k0 += 16) {
                const float *q = s + (size_t)i0 * K + k0;
                float *e = p + (size_t)k0 * ld + i0;
                tr8x8(q, (size_t)K, e, (size_t)ld);
                tr8x8(q + 8, (size_t)K, e + 8 * (size_t)ld, (size_t)ld);
                tr8x8(q + 8 * (size_t)K, (size_t)K, e + 8, (size_t)ld);
                tr8x8(q + 8 * (size_t)K + 8, (size_t)K, e + 8 * (size_t)ld + 8, (size_t)ld);
            }
        for (; k0 < k8; k0 += 16) {
            int kb = k8 - k0 >= 16 ? 16 : 8;
            for (int ii = 0; ii < ib; ii += 8)
                for (int kk = 0; kk < kb; kk += 8)
                    tr8x8(s + (size_t)(i0 + ii) * K + k0 + kk, (size_t)K, p + (size_t)(k0 + kk) * ld + i0 + ii, (size_t)ld);
        }
        for (int k = k8; k < K; k++)
            for (int i = i0; i < i0 + ib; i++) p[(size_t)k * ld + i] = s[(size_t)i * K + k];
    }
    /* Leftover rows and zero padding; skipped outright for whole panels
     * (an empty pass over K was a third of a 16x100 transpose). */
    if (i8 == ld) return;
    for (int k = 0; k < K; k++) {
        for (int i = i8; i < rows; i++) p[(size_t)k * ld + i] = s[(size_t)i * K + k];
        for (int i = rows; i < ld; i++) p[(size_t)k * ld + i] = 0.0f;
    }
}

/* dst[i * dld + n] = P[n * ld + i] for i < rows, n < N. 16x16 tiles (four
 * 8x8 blocks) so both sides touch whole cache lines; whole tiles are
 * unrolled (the generic loop over partial tiles kept the block offsets in
 * memory). */
T_AVX2 INLINE void panel_out_body(const float *p, const int ld, int rows, int N, float *d, int dld) {
    int i8 = rows & ~7, n8 = N & ~7;
    for (int i0 = 0; i0 < i8; i0 += 16) {
        int ib = i8 - i0 >= 16 ? 16 : 8;
        int n0 = 0;
        if (ib == 16)
            for (; n0 + 16 <= n8; n0 += 16) {
                const float *q = p + (size_t)n0 * ld + i0;
                float *e = d + (size_t)i0 * dld + n0;
                tr8x8(q, (size_t)ld, e, (size_t)dld);
                tr8x8(q + 8 * (size_t)ld, (size_t)ld, e + 8, (size_t)dld);
                tr8x8(q + 8, (size_t)ld, e + 8 * (size_t)dld, (size_t)dld);
                tr8x8(q + 8 * (size_t)ld + 8, (size_t)ld, e + 8 * (size_t)dld + 8, (size_t)dld);
            }
        for (; n0 < n8; n0 += 16) {
            int nb = n8 - n0 >= 16 ? 16 : 8;
            for (int ii = 0; ii < ib; ii += 8)
                for (int nn = 0; nn < nb; nn += 8)
                    tr8x8(p + (size_t)(n0 + nn) * ld + i0 + ii, (size_t)ld, d + (size_t)(i0 + ii) * dld + n0 + nn, (size_t)dld);
        }
        for (int i = i0; i < i0 + ib; i++)
            for (int n = n8; n < N; n++) d[(size_t)i * dld + n] = p[(size_t)n * ld + i];
    }
    for (int i = i8; i < rows; i++)
        for (int n = 0; n < N; n++) d[(size_t)i * dld + n] = p[(size_t)n * ld + i];
}

/* Full panels (ld = RF_KERN_PANEL: every panel but a partial last one) get
 * the panel stride as a compile-time constant, so the row addresses on the
 * panel side become immediate offsets. With the unrolled whole tiles above,
 * the 64x192 out-transpose measured 0.87 us instead of 1.12 us and the
 * 64x784 in-transpose 4.4 us instead of 6.7 us (either change alone gained
 * little: the run-time offsets were spilled to the stack). */
T_AVX2 void rf_panel_in32_avx2(const uint32_t *src, int rows, int K, uint32_t *P, int ld) {
    if (ld == RF_KERN_PANEL) panel_in_body((const float *)src, rows, K, (float *)P, RF_KERN_PANEL);
    else panel_in_body((const float *)src, rows, K, (float *)P, ld);
}

T_AVX2 void rf_panel_out32_avx2(const uint32_t *P, int ld, int rows, int N, uint32_t *dst, int dld) {
    if (ld == RF_KERN_PANEL) panel_out_body((const float *)P, RF_KERN_PANEL, rows, N, (float *)dst, dld);
    else panel_out_body((const float *)P, ld, rows, N, (float *)dst, dld);
}

/* A transpose is panel_out with src's rows as the panel's: d[c * ldd + r] =
 * src[r * lds + c]. */
T_AVX2 void rf_transpose_avx2(float *dst, int ldd, const float *src, int rows, int cols, int lds) {
    panel_out_body(src, lds, cols, rows, dst, ldd);
}

/* u8 activations into dword-group panels. With K % 4 != 0 the dword A[i,
 * 4g..4g+3] of row i starts at byte i*K + 4g, not on a dword boundary, so the
 * row stride is not a whole number of dwords: the 8x8 transposes take the
 * source as bytes (unaligned 128-bit loads); the partial last group and the
 * leftover rows are assembled byte by byte (no read past a row's K bytes). */
T_AVX2 INLINE void tr8x8_bytes(const uint8_t *s, size_t sld, float *d, size_t dld) {
    float *d1 = d + dld, *d2 = d + 2 * dld, *d3 = d1 + 2 * dld;
    _Pragma("GCC unroll 2")
    for (int h = 0; h < 8; h += 4) {
        const uint8_t *c = s + 4 * h;
        __m256 a0 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps((const float *)(const void *)c)),
                                         _mm_loadu_ps((const float *)(const void *)(c + 4 * sld)), 1);
        __m256 a1 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps((const float *)(const void *)(c + sld))),
                                         _mm_loadu_ps((const float *)(const void *)(c + 5 * sld)), 1);
        __m256 a2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps((const float *)(const void *)(c + 2 * sld))),
                                         _mm_loadu_ps((const float *)(const void *)(c + 6 * sld)), 1);
        __m256 a3 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps((const float *)(const void *)(c + 3 * sld))),
                                         _mm_loadu_ps((const float *)(const void *)(c + 7 * sld)), 1);
        __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
        __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
        size_t o = (size_t)h * dld;
        _mm256_storeu_ps(d + o, _mm256_shuffle_ps(t0, t2, 0x44));
        _mm256_storeu_ps(d1 + o, _mm256_shuffle_ps(t0, t2, 0xEE));
        _mm256_storeu_ps(d2 + o, _mm256_shuffle_ps(t1, t3, 0x44));
        _mm256_storeu_ps(d3 + o, _mm256_shuffle_ps(t1, t3, 0xEE));
    }
}

T_AVX2 void rf_panel_in_u8x4_avx2(const uint8_t *A, int rows, int K, uint32_t *P, int ld) {
    const int G = (K + 3) / 4, full = K / 4, i8 = rows & ~7, g8 = full & ~7;
    for (int i0 = 0; i0 < i8; i0 += 8)
        for (int g0 = 0; g0 < g8; g0 += 8)
            tr8x8_bytes(A + (size_t)i0 * K + 4 * (size_t)g0, (size_t)K, (float *)(P + (size_t)g0 * ld + i0), (size_t)ld);
    for (int i = 0; i < rows; i++) {
        const uint8_t *a = A + (size_t)i * K;
        for (int g = i < i8 ? g8 : 0; g < full; g++) {
            uint32_t v;
            memcpy(&v, a + 4 * g, 4);   /* little-endian host: byte j -> bits 8j */
            P[(size_t)g * ld + i] = v;
        }
        if (full < G) {
            uint32_t v = 0;
            for (int j = 0; 4 * full + j < K; j++) v |= (uint32_t)a[4 * full + j] << (8 * j);
            P[(size_t)full * ld + i] = v;
        }
    }
    if (rows == ld) return;
    for (int g = 0; g < G; g++)
        for (int i = rows; i < ld; i++) P[(size_t)g * ld + i] = 0;
}

/* ---- sparse fp32 ----------------------------------------------------------
 * One row of W against a panel of 8R batch rows. FMA latency is 4 cycles
 * with two pipes, so 8 independent chains are needed to keep them busy: with
 * R < 8 registers per set, U accumulator sets take alternate non-zeros. */
T_AVX2 INLINE void sp_rows_avx2(const rf_spmat *W, const float *XT, int ldx, const float *bias,
                                float *YT, int ldy, const int R, const int U) {
    const int N = W->N;
    for (int c = 0; c < W->nchunks; c++) {
        const int64_t *ptr = W->ptr + (size_t)c * N;
        for (int n = 0; n < N; n++) {
            __m256 acc[2][8];
            _Pragma("GCC unroll 8")
            for (int u = 0; u < U; u++)
                _Pragma("GCC unroll 8")
                for (int r = 0; r < R; r++) acc[u][r] = _mm256_setzero_ps();
            int64_t j = ptr[n], e = ptr[n + 1];
            for (; j + U <= e; j += U)
                _Pragma("GCC unroll 8")
                for (int u = 0; u < U; u++) {
                    const float *x = XT + (size_t)W->idx[j + u] * ldx;
                    __m256 w = _mm256_broadcast_ss(W->val + j + u);
                    _Pragma("GCC unroll 8")
                    for (int r = 0; r < R; r++) acc[u][r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8 * r), acc[u][r]);
                }
            for (; j < e; j++) {
                const float *x = XT + (size_t)W->idx[j] * ldx;
                __m256 w = _mm256_broadcast_ss(W->val + j);
                _Pragma("GCC unroll 8")
                for (int r = 0; r < R; r++) acc[0][r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + 8 * r), acc[0][r]);
            }
            float *y = YT + (size_t)n * ldy;
            __m256 base = c ? _mm256_setzero_ps() : _mm256_set1_ps(bias ? bias[n] : 0.0f);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) {
                __m256 s = acc[0][r];
                _Pragma("GCC unroll 8")
                for (int u = 1; u < U; u++) s = _mm256_add_ps(s, acc[u][r]);
                s = _mm256_add_ps(s, c ? _mm256_loadu_ps(y + 8 * r) : base);
                _mm256_storeu_ps(y + 8 * r, s);
            }
        }
    }
}

T_AVX2 static void sp_panel_avx2(const rf_spmat *W, const float *XT, int ldx, const float *bias, float *YT,
                                 int ldy, int lanes) {
    switch (lanes / 8) {
    case 1: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 1, 2); break;
    case 2: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 2, 2); break;
    case 3: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 3, 2); break;
    case 4: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 4, 2); break;
    case 5: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 5, 1); break;
    case 6: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 6, 1); break;
    case 7: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 7, 1); break;
    default: sp_rows_avx2(W, XT, ldx, bias, YT, ldy, 8, 1); break;
    }
}

T_AVX2 void rf_spmm_avx2(const rf_spmat *W, const float *X, const float *bias, float *Y, int M) {
    if (M <= 0 || W->N <= 0) return;
    if (M < RF_KERN_SMALL_M) { rf_spmm_small_(W, X, bias, Y, M); return; }
    rf_spmm_panels_(W, X, RF_ROWS, bias, Y, RF_ROWS, M, M, 8, sp_panel_avx2);
}

/* A feature-major operand (rf_spmm_lay sends row-major ones to rf_spmm_avx2). */
T_AVX2 void rf_spmm_lay_avx2(const rf_spmat *W, const float *X, rf_layout xl, const float *bias, float *Y,
                             rf_layout yl, int M, int ld) {
    rf_spmm_panels_(W, X, xl, bias, Y, yl, M, ld, 8, sp_panel_avx2);
}

/* ---- int8 via vpmaddwd -------------------------------------------------- */
/* acc += even/odd 16-bit pair products of activations a (4 u8 per dword)
 * and weights split into sign-extended even (we) and odd (wo) bytes. */
T_AVX2 INLINE __m256i dot4_avx2(__m256i acc, __m256i a, __m256i we, __m256i wo) {
    const __m256i lo = _mm256_set1_epi32(0x00FF00FF);
    __m256i ae = _mm256_and_si256(a, lo);
    __m256i ao = _mm256_and_si256(_mm256_srli_epi16(a, 8), lo);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(ae, we), _mm256_madd_epi16(ao, wo)));
}

T_AVX2 INLINE __m256i sext_even(__m256i w) { return _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8); }
T_AVX2 INLINE __m256i sext_odd(__m256i w) { return _mm256_srai_epi16(w, 8); }

/* Activation dword A[m, 4g..4g+3], zero past K (no read past the row). */
INLINE uint32_t a_dword(const uint8_t *a, int g, int K) {
    uint32_t v = 0;
    if (4 * g + 4 <= K) { memcpy(&v, a + 4 * g, 4); return v; }
    for (int j = 0; 4 * g + j < K; j++) v |= (uint32_t)a[4 * g + j] << (8 * j);
    return v;
}

/* MR rows of A x one 16-channel block of W (two ymm halves). The split of
 * the broadcast activation into even/odd bytes is done once per row and
 * group, the weight split once per group. */
T_AVX2 INLINE void qd_block_avx2(const rf_qmat *W, const uint8_t *A, int32_t *C, int m0, const int MR, int b) {
    const int N = W->N, K = W->K, G = W->G;
    const int8_t *wb = W->vnni + (size_t)b * G * 64;
    __m256i acc[4][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int g = 0; g < G; g++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(wb + (size_t)g * 64));
        __m256i w1 = _mm256_load_si256((const __m256i *)(wb + (size_t)g * 64 + 32));
        __m256i we0 = sext_even(w0), wo0 = sext_odd(w0), we1 = sext_even(w1), wo1 = sext_odd(w1);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < MR; r++) {
            uint32_t a = a_dword(A + (size_t)(m0 + r) * K, g, K);
            __m256i ae = _mm256_set1_epi32((int)(a & 0x00FF00FFu));
            __m256i ao = _mm256_set1_epi32((int)((a >> 8) & 0x00FF00FFu));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_add_epi32(_mm256_madd_epi16(ae, we0), _mm256_madd_epi16(ao, wo0)));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_add_epi32(_mm256_madd_epi16(ae, we1), _mm256_madd_epi16(ao, wo1)));
        }
    }
    int nn = N - 16 * b < 16 ? N - 16 * b : 16;
    _Pragma("GCC unroll 8")
    for (int r = 0; r < MR; r++) {
        int32_t *c = C + (size_t)(m0 + r) * N + 16 * b;
        if (nn == 16) {
            _mm256_storeu_si256((__m256i *)c, acc[r][0]);
            _mm256_storeu_si256((__m256i *)(c + 8), acc[r][1]);
        } else {
            int32_t tmp[16];
            _mm256_storeu_si256((__m256i *)tmp, acc[r][0]);
            _mm256_storeu_si256((__m256i *)(tmp + 8), acc[r][1]);
            memcpy(c, tmp, sizeof(int32_t) * (size_t)nn);
        }
    }
}

T_AVX2 void rf_qgemm_dense_avx2(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    const int nb = (W->N + 15) / 16;
    for (int b = 0; b < nb; b++)
        for (int m0 = 0; m0 < M; m0 += 4) {
            switch (M - m0 < 4 ? M - m0 : 4) {
            case 1: qd_block_avx2(W, A, C, m0, 1, b); break;
            case 2: qd_block_avx2(W, A, C, m0, 2, b); break;
            case 3: qd_block_avx2(W, A, C, m0, 3, b); break;
            default: qd_block_avx2(W, A, C, m0, 4, b); break;
            }
        }
}

/* Sparse int8 over dword panels: P[g][i] holds A[m0+i, 4g..4g+3]. */
T_AVX2 INLINE void qs_rows_avx2(const rf_qmat *W, const uint32_t *P, int ld, int32_t *CT, const int R) {
    const int N = W->N;
    for (int c = 0; c < W->gchunks; c++) {
        const int64_t *ptr = W->gptr + (size_t)c * N;
        for (int n = 0; n < N; n++) {
            __m256i acc[8];
            int32_t *ct = CT + (size_t)n * ld;
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++)
                acc[r] = c ? _mm256_loadu_si256((const __m256i *)(ct + 8 * r)) : _mm256_setzero_si256();
            for (int64_t p = ptr[n]; p < ptr[n + 1]; p++) {
                const uint32_t *x = P + (size_t)W->gidx[p] * ld;
                __m256i w = _mm256_set1_epi32(W->gval[p]);
                __m256i we = sext_even(w), wo = sext_odd(w);
                _Pragma("GCC unroll 8")
                for (int r = 0; r < R; r++)
                    acc[r] = dot4_avx2(acc[r], _mm256_loadu_si256((const __m256i *)(x + 8 * r)), we, wo);
            }
            _Pragma("GCC unroll 8")
            for (int r = 0; r < R; r++) _mm256_storeu_si256((__m256i *)(ct + 8 * r), acc[r]);
        }
    }
}

T_AVX2 void rf_qgemm_sparse_avx2(const rf_qmat *W, const uint8_t *A, int32_t *C, int M) {
    const int N = W->N, K = W->K, G = W->G;
    if (M <= 0 || N <= 0) return;
    uint32_t *ws = rf_kern_workspace(((size_t)G + (size_t)N) * RF_KERN_PANEL * sizeof(uint32_t));
    if (!ws) { rf_qgemm_sparse_ref_(W, A, C, M); return; }
    uint32_t *P = ws;
    int32_t *CT = (int32_t *)(ws + (size_t)G * RF_KERN_PANEL);
    for (int m0 = 0; m0 < M; m0 += RF_KERN_PANEL) {
        int mp = M - m0 < RF_KERN_PANEL ? M - m0 : RF_KERN_PANEL;
        int R = (mp + 7) / 8, ld = 8 * R;
        /* With K % 4 == 0 (and dword-aligned A) the dword panel is a plain
         * 32-bit transpose of A seen as [rows][K/4] dwords. */
        if (K % 4 == 0 && ((uintptr_t)A & 3) == 0)
            rf_panel_in32_avx2((const uint32_t *)(const void *)(A + (size_t)m0 * K), mp, K / 4, P, ld);
        else
            rf_panel_in_u8x4_avx2(A + (size_t)m0 * K, mp, K, P, ld);
        switch (R) {
        case 1: qs_rows_avx2(W, P, ld, CT, 1); break;
        case 2: qs_rows_avx2(W, P, ld, CT, 2); break;
        case 3: qs_rows_avx2(W, P, ld, CT, 3); break;
        case 4: qs_rows_avx2(W, P, ld, CT, 4); break;
        case 5: qs_rows_avx2(W, P, ld, CT, 5); break;
        case 6: qs_rows_avx2(W, P, ld, CT, 6); break;
        case 7: qs_rows_avx2(W, P, ld, CT, 7); break;
        default: qs_rows_avx2(W, P, ld, CT, 8); break;
        }
        rf_panel_out32_avx2((const uint32_t *)CT, ld, mp, N, (uint32_t *)(C + (size_t)m0 * N), N);
    }
}
