/* Fuzz target: checkpoint container reader (rf_ckpt_decode), then the
 * dense conversion of every tensor it accepted and the model rebuilt from
 * it (rf_model_from_ckpt: spec from the metadata, tensors by name).
 *
 * Every byte of a checkpoint is covered by CRC32C checksums, so almost every
 * mutation would stop at the checksum check. Each input is therefore decoded
 * twice: as is (header and checksum rejection paths), and after a fix-up
 * that sets the header's file size and recomputes each directory entry's
 * payload CRC and the trailing CRC (docs/checkpoint-format.md), so the
 * mutations reach the directory, section and codec decoders. */
#include <stdlib.h>
#include <string.h>
#include "raffle/ckpt.h"
#include "raffle/train.h"

#define HDR_LEN 36

static void decode(const uint8_t *data, size_t size) {
    rf_ctx ctx; rf_ctx_init(&ctx);
    ctx.mem_cap = 64u << 20;
    rf_ckpt *c = NULL;
    if (rf_ckpt_decode(&ctx, data, size, &c) != RF_OK) return;
    for (int i = 0; i < c->n; i++) {
        float *f = NULL;
        if (rf_ckpt_tensor_to_f32(&ctx, &c->t[i], &f) == RF_OK) rf_free(f);
        (void)rf_ckpt_tensor_sparsity(&c->t[i]);
        (void)rf_ckpt_tensor_entropy_bound(&c->t[i]);
    }
    rf_model *m = NULL;
    if (rf_model_from_ckpt(&ctx, c, &m) == RF_OK) rf_model_free(m);
    rf_ckpt_free(c);
}

/* Recomputes the checksums the reader verifies; leaves anything it cannot
 * walk untouched (the reader must reject that itself). */
static void fixup(uint8_t *b, size_t n) {
    if (n < HDR_LEN + 4) return;
    rf_put_u64(b + 16, n);
    uint64_t meta_len = rf_get_u32(b + 24), n_t = rf_get_u32(b + 28), dir_len = rf_get_u32(b + 32);
    uint64_t pos = HDR_LEN + meta_len, end = pos + dir_len;
    if (end > n - 4) end = n - 4;
    for (uint64_t i = 0; i < n_t && pos + 2 <= end; i++) {
        uint64_t nl = b[pos] | (b[pos + 1] << 8);
        pos += 2 + nl;
        if (pos + 4 > end) break;
        uint64_t ndim = b[pos + 2];
        pos += 4 + 8 * ndim;
        if (pos + 36 > end) break;
        uint64_t off = rf_get_u64(b + pos), size = rf_get_u64(b + pos + 8);
        if (off <= n - 4 && size <= n - 4 - off) rf_put_u32(b + pos + 32, rf_crc32c(0, b + off, (size_t)size));
        pos += 36;
    }
    rf_put_u32(b + n - 4, rf_crc32c(0, b, n - 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    decode(data, size);
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    fixup(b, size);
    decode(b, size);
    free(b);
    return 0;
}
