/* The one parser of numbers written as text (issue 19, defect 12): job
 * strings such as "synthetic:N:SEED", command-line options, environment
 * variables, Slurm's variables, file headers. strtoull and friends saturate
 * silently at their limits ("synthetic:64:<a seed above 2^64>" became
 * UINT64_MAX, so different seeds gave the same data), accept leading blanks
 * and signs where none belong, and depend on errno being cleared first; here
 * a value is either exactly the whole span or an error naming what it was. */
#include "raffle/core.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Digits of s[0..n) as an unsigned value; -1 if a character is not a digit
 * or the span is empty, -2 if the value does not fit 64 bits. */
static int digits_u64(const char *s, size_t n, uint64_t *out) {
    if (n == 0) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            /* keep scanning: "123x" with an overflowing prefix is still not a number */
            for (size_t k = i; k < n; k++) if (s[k] < '0' || s[k] > '9') return -1;
            return -2;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

rf_status rf_parse_u64(rf_ctx *ctx, const char *s, size_t n, uint64_t lo, uint64_t hi, const char *what, uint64_t *out) {
    uint64_t v = 0;
    int rc = s ? digits_u64(s, n, &v) : -1;
    if (rc == -1) return rf_error(ctx, RF_ERR_INVALID, "%s: \"%.*s\" is not a whole number", what, (int)(n > 64 ? 64 : n), s ? s : "");
    if (rc == -2 || v < lo || v > hi)
        return rf_error(ctx, RF_ERR_INVALID, "%s: %.*s%s is out of range [%llu, %llu]", what, (int)(n > 64 ? 64 : n), s,
                        n > 64 ? "..." : "", (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return RF_OK;
}

rf_status rf_parse_i64(rf_ctx *ctx, const char *s, size_t n, int64_t lo, int64_t hi, const char *what, int64_t *out) {
    int neg = s && n > 0 && s[0] == '-';
    uint64_t v = 0;
    int rc = s ? digits_u64(s + neg, n - (size_t)neg, &v) : -1;
    if (rc == -1) return rf_error(ctx, RF_ERR_INVALID, "%s: \"%.*s\" is not a whole number", what, (int)(n > 64 ? 64 : n), s ? s : "");
    /* |INT64_MIN| = INT64_MAX + 1 */
    int fits = rc == 0 && (neg ? v <= (uint64_t)INT64_MAX + 1 : v <= (uint64_t)INT64_MAX);
    int64_t x = !fits ? 0 : neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    if (!fits || x < lo || x > hi)
        return rf_error(ctx, RF_ERR_INVALID, "%s: %.*s%s is out of range [%lld, %lld]", what, (int)(n > 64 ? 64 : n), s,
                        n > 64 ? "..." : "", (long long)lo, (long long)hi);
    *out = x;
    return RF_OK;
}

rf_status rf_parse_f64(rf_ctx *ctx, const char *s, size_t n, double lo, double hi, const char *what, double *out) {
    char buf[128];
    /* strtod needs a NUL and skips leading blanks; neither belongs in a number */
    int bad = !s || n == 0 || n >= sizeof buf || s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r');
    if (!bad) {
        memcpy(buf, s, n);
        buf[n] = '\0';
        bad = memchr(buf, '\0', n) != NULL;
    }
    char *end = NULL;
    double x = 0;
    if (!bad) {
        errno = 0;
        x = strtod(buf, &end);
        bad = end != buf + n || !isfinite(x);
    }
    if (bad) return rf_error(ctx, RF_ERR_INVALID, "%s: \"%.*s\" is not a finite number", what, (int)(n > 64 ? 64 : n), s ? s : "");
    /* ERANGE: too large for a double, or so small it lost its value */
    if (errno == ERANGE || x < lo || x > hi)
        return rf_error(ctx, RF_ERR_INVALID, "%s: %s is out of range [%g, %g]", what, buf, lo, hi);
    *out = x;
    return RF_OK;
}
