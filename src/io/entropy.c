/* Range coder and the two models the checkpoint container codes with (see
 * entropy.h). The coder is the one in LZMA (Pavlov): encoder state is a 64-bit
 * `low` whose bit 32 is a carry, a cached output byte and a count of pending
 * bytes that a carry may still turn from 0xFF into 0x00. With a 32-bit range
 * kept >= 2^24 and totals <= 2^16, each division leaves >= 8 bits of range,
 * so the coding loss is below 2^-8 of a bit per symbol. */
#include "io/entropy.h"

#include <math.h>
#include <string.h>

#define RC_TOP   (1u << 24)
#define BIT_BITS 16
#define BIT_TOT  (1u << BIT_BITS)
/* Counts are halved past this so a mask whose density drifts (per row or per
 * layer) is tracked; for a stationary mask the estimate's noise costs about
 * 1e-4 bit per bit at density 0.1. */
#define BIT_COUNT_LIMIT (1u << 15)
#define SYM_TOT_MAX (1u << 16)

size_t rf_varint_put(unsigned char *p, uint64_t v) {
    size_t i = 0;
    while (v >= 0x80) { p[i++] = (unsigned char)(v | 0x80); v >>= 7; }
    p[i++] = (unsigned char)v;
    return i;
}

size_t rf_varint_get(const unsigned char *p, size_t avail, uint64_t *v) {
    uint64_t x = 0;
    for (size_t i = 0; i < avail && i < 10; i++) {
        uint64_t b = p[i] & 0x7f;
        if (i == 9 && b > 1) return 0;   /* would overflow 64 bits */
        x |= b << (7 * i);
        if (!(p[i] & 0x80)) { *v = x; return i + 1; }
    }
    return 0;
}

/* ---- encoder -------------------------------------------------------------- */
typedef struct enc {
    unsigned char *buf;
    size_t len, cap;
    uint64_t low;
    uint32_t range;
    uint8_t  cache;
    uint64_t pending;
    int      oom;
} enc;

static void enc_init(enc *e, size_t guess) {
    memset(e, 0, sizeof *e);
    e->cap = guess < 64 ? 64 : guess;
    e->buf = rf_malloc(e->cap);
    if (!e->buf) e->oom = 1;
    e->range = 0xFFFFFFFFu;
    e->pending = 1;
}

static void enc_byte(enc *e, unsigned char b) {
    if (e->oom) return;
    if (e->len == e->cap) {
        unsigned char *nb = rf_realloc(e->buf, e->cap * 2);
        if (!nb) { e->oom = 1; return; }
        e->buf = nb; e->cap *= 2;
    }
    e->buf[e->len++] = b;
}

static void enc_shift_low(enc *e) {
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        unsigned char carry = (unsigned char)(e->low >> 32);
        unsigned char temp = e->cache;
        do { enc_byte(e, (unsigned char)(temp + carry)); temp = 0xFF; } while (--e->pending != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static void enc_code(enc *e, uint32_t cum, uint32_t freq, uint32_t tot) {
    uint32_t r = e->range / tot;
    e->low += (uint64_t)r * cum;
    e->range = r * freq;
    while (e->range < RC_TOP) { e->range <<= 8; enc_shift_low(e); }
}

static rf_status enc_finish(rf_ctx *ctx, enc *e, unsigned char **out, size_t *out_len) {
    for (int i = 0; i < 5; i++) enc_shift_low(e);
    if (e->oom) {
        rf_free(e->buf);
        return rf_error(ctx, RF_ERR_NOMEM, "range coder: out of memory");
    }
    *out = e->buf; *out_len = e->len;
    return RF_OK;
}

/* ---- decoder -------------------------------------------------------------- */
typedef struct dec {
    const unsigned char *p;
    size_t n, pos;
    uint32_t range, code, r;
    int bad;       /* read past the end or code outside the range */
} dec;

static unsigned char dec_byte(dec *d) {
    if (d->pos < d->n) return d->p[d->pos++];
    d->bad = 1;
    return 0;
}

static void dec_init(dec *d, const unsigned char *p, size_t n) {
    memset(d, 0, sizeof *d);
    d->p = p; d->n = n;
    d->range = 0xFFFFFFFFu;
    if (dec_byte(d) != 0) d->bad = 1;    /* the encoder's first byte is always 0 */
    for (int i = 0; i < 4; i++) d->code = (d->code << 8) | dec_byte(d);
}

/* Returns the scaled target in [0, tot); flags corruption when outside. */
static uint32_t dec_target(dec *d, uint32_t tot) {
    d->r = d->range / tot;
    uint32_t v = d->code / d->r;
    if (v >= tot) { d->bad = 1; v = tot - 1; }
    return v;
}

static void dec_update(dec *d, uint32_t cum, uint32_t freq) {
    uint32_t lo = d->r * cum;
    if (d->code < lo) { d->bad = 1; d->code = lo; }
    d->code -= lo;
    d->range = d->r * freq;
    if (d->code >= d->range) { d->bad = 1; d->code = d->range - 1; }
    while (d->range < RC_TOP) { d->range <<= 8; d->code = (d->code << 8) | dec_byte(d); }
}

/* ---- adaptive binary model (masks) ---------------------------------------- */
typedef struct bitctx { uint32_t n0, n1; } bitctx;

/* Krichevsky-Trofimov estimate of P(bit = 1), scaled to BIT_TOT, clamped so
 * both symbols stay codable. */
static uint32_t kt_f1(const bitctx *c) {
    uint64_t f = ((uint64_t)(2u * c->n1 + 1) << BIT_BITS) / (2u * (uint64_t)(c->n0 + c->n1) + 2u);
    if (f < 1) f = 1;
    if (f > BIT_TOT - 1) f = BIT_TOT - 1;
    return (uint32_t)f;
}

static void kt_update(bitctx *c, int bit) {
    if (bit) c->n1++; else c->n0++;
    if (c->n0 + c->n1 >= BIT_COUNT_LIMIT) { c->n0 = (c->n0 + 1) / 2; c->n1 = (c->n1 + 1) / 2; }
}

rf_status rf_mask_arith_encode(rf_ctx *ctx, const uint8_t *mask, size_t n, int order,
                               unsigned char **out, size_t *out_len) {
    *out = NULL; *out_len = 0;
    if (order < 0 || order > RF_MASK_ORDER_MAX) return rf_error(ctx, RF_ERR_INVALID, "mask coder: bad context order %d", order);
    bitctx *cx = rf_calloc((size_t)1 << order, sizeof *cx);
    if (!cx) return rf_error(ctx, RF_ERR_NOMEM, "mask coder: out of memory");
    enc e;
    enc_init(&e, n / 16 + 16);
    uint32_t hist = 0, hmask = (1u << order) - 1;
    for (size_t i = 0; i < n; i++) {
        bitctx *c = &cx[hist & hmask];
        uint32_t f1 = kt_f1(c);
        int bit = mask[i] != 0;
        if (bit) enc_code(&e, 0, f1, BIT_TOT); else enc_code(&e, f1, BIT_TOT - f1, BIT_TOT);
        kt_update(c, bit);
        hist = (hist << 1) | (uint32_t)bit;
    }
    rf_free(cx);
    return enc_finish(ctx, &e, out, out_len);
}

rf_status rf_mask_arith_decode(rf_ctx *ctx, const unsigned char *in, size_t in_len,
                               size_t n, int order, uint8_t *mask) {
    if (order < 0 || order > RF_MASK_ORDER_MAX) return rf_error(ctx, RF_ERR_FORMAT, "mask coder: bad context order %d", order);
    if (n == 0) return in_len == 0 ? RF_OK : rf_error(ctx, RF_ERR_FORMAT, "mask coder: %zu bytes for an empty mask", in_len);
    bitctx *cx = rf_calloc((size_t)1 << order, sizeof *cx);
    if (!cx) return rf_error(ctx, RF_ERR_NOMEM, "mask coder: out of memory");
    dec d;
    dec_init(&d, in, in_len);
    uint32_t hist = 0, hmask = (1u << order) - 1;
    for (size_t i = 0; i < n && !d.bad; i++) {
        bitctx *c = &cx[hist & hmask];
        uint32_t f1 = kt_f1(c);
        uint32_t v = dec_target(&d, BIT_TOT);
        int bit = v < f1;
        if (bit) dec_update(&d, 0, f1); else dec_update(&d, f1, BIT_TOT - f1);
        mask[i] = (uint8_t)bit;
        kt_update(c, bit);
        hist = (hist << 1) | (uint32_t)bit;
    }
    rf_free(cx);
    if (d.bad || d.pos != in_len)
        return rf_error(ctx, RF_ERR_FORMAT, "mask code is corrupt (%zu of %zu bytes used)", d.pos, in_len);
    return RF_OK;
}

/* ---- static order-0 model (int8 values and other small alphabets) ---------
 * Table: a bitmap of ceil(K/8) bytes marking the symbols present, then one
 * varint frequency (>= 1) per present symbol in increasing order. The total
 * must be <= 2^16. The range code follows. */
typedef struct symtab {
    uint32_t freq[RF_SYM_MAX], cum[RF_SYM_MAX + 1];
    int      n_present;
    uint16_t sym[RF_SYM_MAX];      /* present symbols in order */
} symtab;

static void symtab_finish(symtab *t, unsigned K) {
    t->cum[0] = 0;
    t->n_present = 0;
    for (unsigned s = 0; s < K; s++) {
        t->cum[s + 1] = t->cum[s] + t->freq[s];
        if (t->freq[s]) t->sym[t->n_present++] = (uint16_t)s;
    }
}

/* Bits needed for counts c coded with frequencies f, plus the table. */
static double table_cost_bits(const uint64_t *c, const uint32_t *f, unsigned K) {
    uint64_t tot = 0;
    size_t table = (K + 7) / 8;
    unsigned char tmp[10];
    for (unsigned s = 0; s < K; s++) if (f[s]) { tot += f[s]; table += rf_varint_put(tmp, f[s]); }
    double bits = 8.0 * (double)table;
    for (unsigned s = 0; s < K; s++) if (c[s]) bits += (double)c[s] * log2((double)tot / (double)f[s]);
    return bits;
}

/* Frequencies for counts c over n values scaled to about T (T = 0: exact). */
static void scale_freqs(const uint64_t *c, uint64_t n, uint32_t T, uint32_t *f, unsigned K) {
    for (unsigned s = 0; s < K; s++) {
        if (!c[s]) { f[s] = 0; continue; }
        if (T == 0) { f[s] = (uint32_t)c[s]; continue; }
        uint64_t v = (c[s] * T + n / 2) / n;
        f[s] = v < 1 ? 1 : (uint32_t)v;
    }
}

rf_status rf_sym_encode(rf_ctx *ctx, const uint16_t *v, size_t n, unsigned K,
                        unsigned char **out, size_t *out_len) {
    *out = NULL; *out_len = 0;
    if (K == 0 || K > RF_SYM_MAX) return rf_error(ctx, RF_ERR_INVALID, "symbol coder: alphabet of %u", K);
    if (n == 0) {
        *out = rf_malloc(1);
        return *out ? RF_OK : rf_error(ctx, RF_ERR_NOMEM, "value coder: out of memory");
    }
    symtab *t = rf_calloc(1, sizeof *t);
    uint64_t *c = rf_calloc(RF_SYM_MAX, sizeof *c);
    uint32_t *f = rf_calloc(RF_SYM_MAX, sizeof *f);
    if (!t || !c || !f) { rf_free(t); rf_free(c); rf_free(f); return rf_error(ctx, RF_ERR_NOMEM, "value coder: out of memory"); }
    for (size_t i = 0; i < n; i++) {
        if (v[i] >= K) { rf_free(t); rf_free(c); rf_free(f); return rf_error(ctx, RF_ERR_INVALID, "symbol %u outside alphabet %u", v[i], K); }
        c[v[i]]++;
    }
    /* The precision of the table trades table bytes against coding loss;
     * pick the cheapest of a few by the exact cost formula. */
    static const uint32_t Ts[] = {0, 1u << 8, 1u << 10, 1u << 12, 1u << 14, 1u << 15};
    double best = INFINITY;
    for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
        if (Ts[k] == 0 && n > SYM_TOT_MAX) continue;
        if (Ts[k] != 0 && (uint64_t)Ts[k] + K > SYM_TOT_MAX) continue;
        scale_freqs(c, n, Ts[k], f, K);
        double b = table_cost_bits(c, f, K);
        if (b < best) { best = b; memcpy(t->freq, f, K * sizeof *f); }
    }
    rf_free(c); rf_free(f);
    symtab_finish(t, K);
    enc e;
    enc_init(&e, 64 + (size_t)(best / 8.0));
    unsigned char bm[RF_SYM_MAX / 8] = {0};
    for (unsigned s = 0; s < K; s++) if (t->freq[s]) bm[s >> 3] |= (unsigned char)(1u << (s & 7));
    for (unsigned i = 0; i < (K + 7) / 8; i++) enc_byte(&e, bm[i]);
    for (unsigned s = 0; s < K; s++) if (t->freq[s]) {
        unsigned char tmp[10];
        size_t k = rf_varint_put(tmp, t->freq[s]);
        for (size_t j = 0; j < k; j++) enc_byte(&e, tmp[j]);
    }
    /* the range code follows the table; its first byte is the cache byte */
    uint32_t tot = t->cum[K];
    for (size_t i = 0; i < n; i++) enc_code(&e, t->cum[v[i]], t->freq[v[i]], tot);
    rf_free(t);
    return enc_finish(ctx, &e, out, out_len);
}

rf_status rf_sym_decode(rf_ctx *ctx, const unsigned char *in, size_t in_len,
                        size_t n, unsigned K, uint16_t *v) {
    if (K == 0 || K > RF_SYM_MAX) return rf_error(ctx, RF_ERR_FORMAT, "symbol coder: alphabet of %u", K);
    if (n == 0) return in_len == 0 ? RF_OK : rf_error(ctx, RF_ERR_FORMAT, "value code: %zu bytes for no values", in_len);
    size_t tb = (K + 7) / 8;
    if (in_len < tb) return rf_error(ctx, RF_ERR_FORMAT, "value code: table cut short");
    if ((K & 7) && (in[tb - 1] >> (K & 7))) return rf_error(ctx, RF_ERR_FORMAT, "value code: table marks symbols past the alphabet");
    symtab *t = rf_calloc(1, sizeof *t);
    if (!t) return rf_error(ctx, RF_ERR_NOMEM, "value coder: out of memory");
    size_t pos = tb;
    uint64_t tot = 0;
    for (unsigned s = 0; s < K; s++) {
        if (!(in[s >> 3] & (1u << (s & 7)))) continue;
        uint64_t f;
        size_t k = rf_varint_get(in + pos, in_len - pos, &f);
        if (k == 0 || f == 0 || f > SYM_TOT_MAX) { rf_free(t); return rf_error(ctx, RF_ERR_FORMAT, "value code: bad frequency table"); }
        pos += k;
        t->freq[s] = (uint32_t)f;
        tot += f;
    }
    if (tot == 0 || tot > SYM_TOT_MAX) { rf_free(t); return rf_error(ctx, RF_ERR_FORMAT, "value code: frequency total %llu out of range", (unsigned long long)tot); }
    symtab_finish(t, K);
    dec d;
    dec_init(&d, in + pos, in_len - pos);
    for (size_t i = 0; i < n && !d.bad; i++) {
        uint32_t x = dec_target(&d, (uint32_t)tot);
        /* binary search for the last present symbol with cum <= x */
        int lo = 0, hi = t->n_present - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (t->cum[t->sym[mid]] <= x) lo = mid; else hi = mid - 1;
        }
        uint16_t s = t->sym[lo];
        dec_update(&d, t->cum[s], t->freq[s]);
        v[i] = s;
    }
    rf_free(t);
    if (d.bad || pos + d.pos != in_len)
        return rf_error(ctx, RF_ERR_FORMAT, "value code is corrupt");
    return RF_OK;
}

rf_status rf_sym_arith_encode(rf_ctx *ctx, const int8_t *v, size_t n,
                              unsigned char **out, size_t *out_len) {
    *out = NULL; *out_len = 0;
    uint16_t *u = rf_malloc(n * sizeof *u + 1);
    if (!u) return rf_error(ctx, RF_ERR_NOMEM, "value coder: out of memory");
    for (size_t i = 0; i < n; i++) u[i] = (uint8_t)v[i];
    rf_status s = rf_sym_encode(ctx, u, n, 256, out, out_len);
    rf_free(u);
    return s;
}

rf_status rf_sym_arith_decode(rf_ctx *ctx, const unsigned char *in, size_t in_len,
                              size_t n, int8_t *v) {
    uint16_t *u = rf_malloc(n * sizeof *u + 1);
    if (!u) return rf_error(ctx, RF_ERR_NOMEM, "value coder: out of memory");
    rf_status s = rf_sym_decode(ctx, in, in_len, n, 256, u);
    for (size_t i = 0; !s && i < n; i++) v[i] = (int8_t)(uint8_t)u[i];
    rf_free(u);
    return s;
}
