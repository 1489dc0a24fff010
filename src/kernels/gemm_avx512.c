/* AVX-512 register tiles of the dense GEMM (gemm.c, layouts in
 * gemm_internal.h).
 *
 * A tile keeps R x nv zmm accumulators (24 for the main shapes 6 x 64,
 * 6 x 48 with 18, 12 x 32 and 24 x 16): with FMA latency 4 and two FMA
 * pipes, 8 independent chains keep the pipes busy, the rest hides loads.
 * Per k: nv aligned loads of the B panel row, then for each row one FMA
 * per vector with A's value broadcast straight from memory ({1to16}
 * embedded broadcast: no separate vbroadcastss, which takes an FP pipe slot
 * on AMD Zen 4; the broadcast costs a load slot instead, and loads have
 * room). The FMA is written in asm for two reasons: compilers merge repeated
 * broadcasts of one address into a register, and they treat the two
 * multiplicands as interchangeable, while the operand order decides which
 * NaN comes out when both are NaN. Here the B vector is the first
 * multiplicand (vfmadd231ps: dst = src2 x src3 + dst, src2 = B), as in
 * fmaf(b, a, acc) of the reference. */
#include "kernels/gemm_internal.h"

#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx2,fma"), optimize("O3")))
#define INLINE static inline __attribute__((always_inline))

#define FMA_ZMM(acc, b, a) __asm__("vfmadd231ps %2, %1, %0" : "+v"(acc) : "v"(b), "v"(a))

T512 INLINE void tile512(int kc, const float *A, size_t ps, const float *B, int nr, float *C, size_t ldc,
                         __mmask16 last, int load_c, const float *Cnext, const int R, const int NV) {
    __m512 c[24];
    if (Cnext) {
        _Pragma("GCC unroll 24")
        for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 4")
            for (int v = 0; v < NV; v++) _mm_prefetch((const char *)(Cnext + (size_t)r * ldc + 16 * v), _MM_HINT_T0);
    }
    const float *ap[4] = {A, A + ps, A + 2 * ps, A + 3 * ps};
    _Pragma("GCC unroll 24")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
            c[r * NV + v] = load_c ? _mm512_maskz_loadu_ps(m, C + (size_t)r * ldc + 16 * v) : _mm512_setzero_ps();
        }
    for (int k = 0; k < kc; k++) {
        __m512 b[4];
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++)
            b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, B + (size_t)k * nr + 16 * v)
                               : _mm512_loadu_ps(B + (size_t)k * nr + 16 * v);
        _Pragma("GCC unroll 24")
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_set1_ps(ap[r / RF_GEMM_MR][(size_t)k * RF_GEMM_MR + r % RF_GEMM_MR]);
            _Pragma("GCC unroll 4")
            for (int v = 0; v < NV; v++) FMA_ZMM(c[r * NV + v], b[v], a);
        }
    }
    _Pragma("GCC unroll 24")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16 * v, v == NV - 1 ? last : (__mmask16)0xFFFF,
                                  c[r * NV + v]);
}

/* One function per (rows, vectors) shape, so each is fully unrolled with
 * its accumulators in registers. */
#define TILE_FN(r, nv)                                                                                        \
    T512 static void t512_##r##_##nv(int kc, const float *A, size_t ps, const float *B, int nr, float *C,     \
                                     size_t ldc, __mmask16 last, int load_c, const float *Cn) {              \
        tile512(kc, A, ps, B, nr, C, ldc, last, load_c, Cn, r, nv);                                          \
    }
#define TILE_NV(r) TILE_FN(r, 1) TILE_FN(r, 2) TILE_FN(r, 3) TILE_FN(r, 4)
TILE_NV(1) TILE_NV(2) TILE_NV(3) TILE_NV(4) TILE_NV(5) TILE_NV(6)
TILE_FN(12, 2)
TILE_FN(24, 1)

typedef void (*t512_fn)(int, const float *, size_t, const float *, int, float *, size_t, __mmask16, int,
                        const float *);
#define ROW(r) {t512_##r##_1, t512_##r##_2, t512_##r##_3, t512_##r##_4}
static const t512_fn edge_tiles[7][4] = {{0}, ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

void rf_gemm_tile_avx512(int R, int nv, int kc, const float *A, size_t ps, const float *B, int nr, float *C,
                         size_t ldc, int lanes, int load_c, const float *Cnext) {
    __mmask16 last = (__mmask16)(lanes >= 16 ? 0xFFFFu : (1u << lanes) - 1u);
    if (R <= RF_GEMM_MR) edge_tiles[R][nv - 1](kc, A, ps, B, nr, C, ldc, last, load_c, Cnext);
    else if (R == 12) t512_12_2(kc, A, ps, B, nr, C, ldc, last, load_c, Cnext);
    else t512_24_1(kc, A, ps, B, nr, C, ldc, last, load_c, Cnext);
}
