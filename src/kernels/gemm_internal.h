/* Internal to the dense GEMM (gemm.c, gemm_avx2.c, gemm_avx512.c).
 *
 * Packed layouts (one kc block of K):
 *  - A: micro-panels of RF_GEMM_MR rows: panel p holds rows 6p .. 6p+5 of
 *    the block as Ap[p·6·kc + k·6 + r] (zero past the last row).
 *  - B: panels of `nr` columns (the ISA's widest register tile): panel q
 *    holds columns q·nr .. as Bp[q·nr·kc + k·nr + j], zero from the last
 *    column up to the next multiple of the vector length; 64-byte aligned.
 * B may also be read in place (not transposed, rows ldb apart: the tile's
 * `nr` argument is then ldb), so tiles load B unaligned and the last vector
 * through the lane mask. A register tile is R rows x nv vectors of C. R is a multiple of 6 for the
 * main tiles (a 12- or 24-row tile reads 2 or 4 consecutive A panels,
 * `ps` = 6·kc floats apart) or 1..6 at the bottom edge; the last vector
 * stores `lanes` columns. */
#ifndef RAFFLE_GEMM_INTERNAL_H
#define RAFFLE_GEMM_INTERNAL_H

#include <stddef.h>

#include "raffle/gemm.h"

#define RF_GEMM_MR 6
/* Floats of slack after a packed A block: the AVX2 packer stores 8 floats
 * per k of a 6-row panel, the last store running 2 floats past the panel. */
#define RF_GEMM_A_SLACK 16

/* C tile (R x nv vectors, rows ldc apart) = (load_c ? C : 0) + the kc-step
 * product of the packed panels, one fused multiply-add per k per element
 * with the B value as the first multiplicand. Cnext: the next tile's C (its
 * lines are prefetched while this tile computes, since a tile must load its
 * C before its first FMA), or NULL. */
typedef void (*rf_gemm_tile_fn)(int R, int nv, int kc, const float *A, size_t ps, const float *B, int nr, float *C,
                                size_t ldc, int lanes, int load_c, const float *Cnext);
/* Ap (layout above) from rows i0 .. i0+mb-1, k0 .. k0+kb-1 of op(A). */
typedef void (*rf_gemm_pack_a_fn)(float *Ap, const float *A, int lda, int ta, int i0, int mb, int k0, int kb);
/* Bp (layout above, panel width nr, zero padding to a multiple of vl) from
 * k0 .. k0+kb-1, columns j0 .. j0+nb-1 of op(B). */
typedef void (*rf_gemm_pack_b_fn)(float *Bp, const float *B, int ldb, int tb, int k0, int kb, int j0, int nb, int nr,
                                  int vl);

typedef struct rf_gemm_impl {
    int vl;                  /* lanes per vector                          */
    int nr;                  /* B panel width: vl x the widest tile's nv  */
    int rows[5];             /* main tile rows for nv = 1 .. nr / vl      */
    rf_gemm_tile_fn tile;
    rf_gemm_pack_a_fn pack_a;
    rf_gemm_pack_b_fn pack_b;
} rf_gemm_impl;

void rf_gemm_tile_avx2(int R, int nv, int kc, const float *A, size_t ps, const float *B, int nr, float *C,
                       size_t ldc, int lanes, int load_c, const float *Cnext);
void rf_gemm_tile_avx512(int R, int nv, int kc, const float *A, size_t ps, const float *B, int nr, float *C,
                         size_t ldc, int lanes, int load_c, const float *Cnext);
/* Packers with AVX2 8x8 transposes (used by the AVX2 and AVX-512 levels;
 * they copy values, so they cannot change results). */
void rf_gemm_pack_a_avx2(float *Ap, const float *A, int lda, int ta, int i0, int mb, int k0, int kb);
void rf_gemm_pack_b_avx2(float *Bp, const float *B, int ldb, int tb, int k0, int kb, int j0, int nb, int nr, int vl);

#endif
