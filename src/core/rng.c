/* Counter-based RNG: Philox4x32-10 (Salmon et al., "Parallel random numbers:
 * as easy as 1, 2, 3", SC'11). The output is a pure function of
 * (key = seed, counter = (block, stream)), so any rank can reproduce any
 * stream without sharing state, and results do not depend on rank count. */
#include "raffle/core.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ ctr[1] ^ k0, n2 = hi0 ^ ctr[3] ^ k1;
        ctr[0] = n0; ctr[1] = lo1; ctr[2] = n2; ctr[3] = lo0;
        k0 += PHILOX_W0; k1 += PHILOX_W1;
    }
}

void rf_rng_init(rf_rng *r, uint64_t seed, uint64_t stream) {
    r->key = seed;
    r->stream = stream;
    r->counter = 0;
    r->pos = 4;
}

static void refill(rf_rng *r) {
    uint32_t c[4] = {(uint32_t)r->counter, (uint32_t)(r->counter >> 32),
                     (uint32_t)r->stream, (uint32_t)(r->stream >> 32)};
    philox4x32_10(c, (uint32_t)r->key, (uint32_t)(r->key >> 32));
    r->buf[0] = c[0]; r->buf[1] = c[1]; r->buf[2] = c[2]; r->buf[3] = c[3];
    r->counter++;
    r->pos = 0;
}

uint32_t rf_rng_u32(rf_rng *r) {
    if (r->pos >= 4) refill(r);
    return r->buf[r->pos++];
}

void rf_rng_skip(rf_rng *r, uint64_t n) {
    uint64_t avail = 4 - (uint64_t)r->pos;
    if (n <= avail) { r->pos += (int)n; return; }
    n -= avail;
    r->counter += n / 4;
    r->pos = 4;
    if (n % 4) {
        refill(r);
        r->pos = (int)(n % 4);
    }
}

void rf_rng_u32_range(const rf_rng *r, uint64_t first, uint32_t *out, size_t n) {
    uint64_t avail = 4 - (uint64_t)r->pos;
    size_t j = 0;
    for (; j < n && first + j < avail; j++) out[j] = r->buf[r->pos + first + j];
    while (j < n) {
        uint64_t m = first + j - avail, blk = r->counter + m / 4;
        uint32_t c[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), (uint32_t)r->stream, (uint32_t)(r->stream >> 32)};
        philox4x32_10(c, (uint32_t)r->key, (uint32_t)(r->key >> 32));
        for (int e = (int)(m % 4); e < 4 && j < n; e++) out[j++] = c[e];
    }
}

uint64_t rf_rng_u64(rf_rng *r) {
    uint64_t hi = rf_rng_u32(r);
    return (hi << 32) | rf_rng_u32(r);
}

float rf_rng_uniform(rf_rng *r) { return (float)(rf_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double rf_rng_uniform_double(rf_rng *r) { return (double)(rf_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float rf_rng_normal(rf_rng *r) {
    /* Box-Muller in double: one normal per call (the pair's second half is
     * dropped so the stream position never depends on call history). */
    double u1 = ((rf_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0); /* (0, 1] */
    double u2 = rf_rng_uniform_double(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t rf_rng_below(rf_rng *r, uint32_t n) {
    if (n <= 1) return 0;
    /* Lemire's nearly-divisionless unbiased method. */
    uint64_t m = (uint64_t)rf_rng_u32(r) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (l < t) { m = (uint64_t)rf_rng_u32(r) * n; l = (uint32_t)m; }
    }
    return (uint32_t)(m >> 32);
}

void rf_rng_shuffle_u32(rf_rng *r, uint32_t *v, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = rf_rng_below(r, (uint32_t)i);
        uint32_t t = v[i - 1]; v[i - 1] = v[j]; v[j] = t;
    }
}

uint64_t rf_hash64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ull; }
    /* final avalanche (splitmix64) so nearby inputs spread */
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 27; h *= 0x94d049bb133111ebull; h ^= h >> 31;
    return h;
}
