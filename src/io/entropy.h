/* Internal to src/io: entropy coders used by the checkpoint container.
 *
 * A byte-oriented range coder (the carry-propagating variant LZMA uses:
 * 32-bit range, 64-bit low, a cached byte plus a run of pending 0xFF bytes)
 * driven by two models:
 *  - an adaptive binary model for pruning masks, one Krichevsky-Trofimov
 *    estimator per context of the previous `order` bits, so an i.i.d. mask
 *    codes to n*H(density) bits plus O(log n);
 *  - a static order-0 model for int8 values with its frequency table stored
 *    in front of the code, so the values code to their empirical entropy plus
 *    the table.
 * Decoders never read outside their input and never write more than the
 * caller's count; corrupt input yields RF_ERR_FORMAT, not a crash. */
#ifndef RAFFLE_IO_ENTROPY_H
#define RAFFLE_IO_ENTROPY_H

#include "raffle/core.h"

#define RF_MASK_ORDER_MAX 12

/* Codes n mask bytes (0/1) with the adaptive binary model of the given context
 * order. Returns a new buffer (rf_free) in *out. */
rf_status rf_mask_arith_encode(rf_ctx *ctx, const uint8_t *mask, size_t n, int order,
                               unsigned char **out, size_t *out_len);
/* Decodes exactly n mask bytes into mask (caller-owned, n bytes). */
rf_status rf_mask_arith_decode(rf_ctx *ctx, const unsigned char *in, size_t in_len,
                               size_t n, int order, uint8_t *mask);

/* Largest alphabet of the order-0 symbol coder. */
#define RF_SYM_MAX 512
/* Codes n symbols < K (K <= RF_SYM_MAX): frequency table then range code.
 * Returns a new buffer (rf_free). */
rf_status rf_sym_encode(rf_ctx *ctx, const uint16_t *v, size_t n, unsigned K,
                        unsigned char **out, size_t *out_len);
/* Decodes exactly n symbols < K into v (caller-owned). */
rf_status rf_sym_decode(rf_ctx *ctx, const unsigned char *in, size_t in_len,
                        size_t n, unsigned K, uint16_t *v);

/* Codes n int8 values: frequency table then range code. Returns a new buffer. */
rf_status rf_sym_arith_encode(rf_ctx *ctx, const int8_t *v, size_t n,
                              unsigned char **out, size_t *out_len);
/* Decodes exactly n values into v (caller-owned). */
rf_status rf_sym_arith_decode(rf_ctx *ctx, const unsigned char *in, size_t in_len,
                              size_t n, int8_t *v);

/* LEB128 varints shared with the gap coding of masks. put returns bytes
 * written (at most 10); get returns bytes read, 0 on overrun or overlong. */
size_t rf_varint_put(unsigned char *p, uint64_t v);
size_t rf_varint_get(const unsigned char *p, size_t avail, uint64_t *v);

#endif
