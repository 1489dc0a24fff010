/* Streaming tar reader for dataset archives (cifar-10-binary.tar.gz, ...).
 *
 * A tar stream is a sequence of 512-byte headers, each followed by the
 * member's data padded to a multiple of 512 bytes, and ends with (at least)
 * one all-zero block. The header fields used here (POSIX.1-1988 ustar; GNU
 * and v7 headers share them):
 *
 *   offset 0    name[100]     NUL-terminated unless exactly 100 bytes
 *   offset 124  size[12]      octal ASCII (or GNU base-256: first byte 0x80)
 *   offset 148  chksum[8]     octal sum of the header's bytes, this field
 *                             counted as 8 spaces (unsigned; old tars signed)
 *   offset 156  typeflag      '0' or NUL regular file, '7' contiguous file;
 *                             anything else (directory, link, pax 'x'/'g',
 *                             GNU 'L'/'K' long names) is skipped
 *   offset 257  magic[6]      "ustar\0" (POSIX: prefix below is valid),
 *                             "ustar " (GNU), or nothing (v7)
 *   offset 345  prefix[155]   POSIX: directory part of the name
 *
 * The archive is read front to back once; nothing is written to disk, so a
 * hostile name cannot escape anywhere: names are only compared, and shown in
 * errors with non-printable bytes replaced. Sizes are taken from the header
 * but data is only ever read into buffers the caller sized, and a stream that
 * ends early is RF_ERR_TRUNCATED. gzip input (magic 1f 8b, concatenated
 * members allowed) is inflated on the fly; after the end-of-archive block the
 * rest of the stream is inflated too, so gzip's CRC-32 covers every byte. */
#include "data/data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define BLOCK 512
#define IN_CHUNK 65536

struct rf_tar {
    FILE         *f;
    char          path[1024];
    int           gz;
    z_stream      z;
    int           z_live;
    int           src_eof;      /* the file has no more bytes */
    int           done;         /* the (decompressed) stream has no more bytes */
    unsigned char in[IN_CHUNK]; /* file bytes not yet consumed: [in_pos, in_len) */
    size_t        in_pos, in_len;
    uint64_t      off;          /* bytes of the tar stream consumed */
    uint64_t      left, pad;    /* unread bytes of the current member, and its padding */
    int           end;          /* end-of-archive block seen */
    char          name[BLOCK];
    unsigned char scratch[16384];
};

static rf_status fill(rf_ctx *ctx, rf_tar *t) {
    t->in_pos = 0;
    t->in_len = fread(t->in, 1, sizeof t->in, t->f);
    if (t->in_len == 0) {
        if (ferror(t->f)) return rf_error(ctx, RF_ERR_IO, "%s: read error", t->path);
        t->src_eof = 1;
    }
    return RF_OK;
}

/* Reads up to n bytes of the tar stream; *got < n only at its end. */
static rf_status src_read(rf_ctx *ctx, rf_tar *t, unsigned char *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n && !t->done) {
        if (t->in_pos == t->in_len && !t->src_eof) RF_TRY(fill(ctx, t));
        if (!t->gz) {
            if (t->in_pos == t->in_len) { t->done = 1; break; }
            size_t k = t->in_len - t->in_pos;
            if (k > n - *got) k = n - *got;
            memcpy(buf + *got, t->in + t->in_pos, k);
            t->in_pos += k;
            *got += k;
            continue;
        }
        size_t want = n - *got;
        t->z.next_in = t->in + t->in_pos;
        t->z.avail_in = (uInt)(t->in_len - t->in_pos);
        t->z.next_out = buf + *got;
        t->z.avail_out = (uInt)(want < (1u << 30) ? want : (1u << 30));
        uInt ai = t->z.avail_in, ao = t->z.avail_out;
        int r = inflate(&t->z, Z_NO_FLUSH);
        t->in_pos += ai - t->z.avail_in;
        *got += ao - t->z.avail_out;
        if (r == Z_STREAM_END) {
            /* another gzip member may follow (as gunzip accepts) */
            if (t->in_pos == t->in_len && !t->src_eof) RF_TRY(fill(ctx, t));
            if (t->in_pos == t->in_len) { t->done = 1; break; }
            if (inflateReset(&t->z) != Z_OK) return rf_error(ctx, RF_ERR_COMPRESS, "%s: zlib reset failed", t->path);
            continue;
        }
        if (r == Z_OK) continue;
        if (r == Z_BUF_ERROR) {
            if (t->in_pos == t->in_len && t->src_eof)
                return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated gzip stream", t->path);
            continue;
        }
        if (r == Z_MEM_ERROR) return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory inflating", t->path);
        return rf_error(ctx, RF_ERR_COMPRESS, "%s: corrupt gzip data (%s)", t->path, t->z.msg ? t->z.msg : "zlib error");
    }
    t->off += *got;
    return RF_OK;
}

/* Reads exactly n bytes; a short stream is RF_ERR_TRUNCATED naming `what`. */
static rf_status read_exact(rf_ctx *ctx, rf_tar *t, void *buf, size_t n, const char *what) {
    size_t got;
    RF_TRY(src_read(ctx, t, buf, n, &got));
    if (got < n)
        return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated archive (%s ends after %llu bytes of the tar stream)",
                        t->path, what, (unsigned long long)t->off);
    return RF_OK;
}

static rf_status skip(rf_ctx *ctx, rf_tar *t, uint64_t n, const char *what) {
    while (n > 0) {
        size_t k = n < sizeof t->scratch ? (size_t)n : sizeof t->scratch;
        RF_TRY(read_exact(ctx, t, t->scratch, k, what));
        n -= k;
    }
    return RF_OK;
}

rf_status rf_tar_open(rf_ctx *ctx, const char *path, rf_tar **out) {
    *out = NULL;
    rf_tar *t = rf_calloc(1, sizeof *t);
    if (!t) return rf_error(ctx, RF_ERR_NOMEM, "%s: out of memory", path);
    snprintf(t->path, sizeof t->path, "%s", path);
    t->f = fopen(path, "rb");
    if (!t->f) {
        int e = errno;
        rf_free(t);
        return rf_error(ctx, e == ENOENT ? RF_ERR_NOTFOUND : RF_ERR_IO, "%s: %s", path, strerror(e));
    }
    rf_status s = fill(ctx, t);
    if (s) { rf_tar_close(t); return s; }
    if (t->in_len == 0) { rf_tar_close(t); return rf_error(ctx, RF_ERR_TRUNCATED, "%s: empty file, not an archive", path); }
    if (t->in_len >= 2 && t->in[0] == 0x1f && t->in[1] == 0x8b) {
        t->gz = 1;
        if (inflateInit2(&t->z, 15 + 32) != Z_OK) {
            rf_tar_close(t);
            return rf_error(ctx, RF_ERR_COMPRESS, "%s: zlib init failed", path);
        }
        t->z_live = 1;
    }
    *out = t;
    return RF_OK;
}

void rf_tar_close(rf_tar *t) {
    if (!t) return;
    if (t->z_live) inflateEnd(&t->z);
    if (t->f) fclose(t->f);
    rf_free(t);
}

/* Parses a numeric header field: octal digits after optional spaces, ended by
 * NUL or space; or GNU base-256 (first byte 0x80, big-endian in the rest).
 * Returns 0 and sets *v, or -1 if malformed or at least 2^62. */
static int parse_number(const unsigned char *p, size_t len, uint64_t *v) {
    uint64_t x = 0;
    if (p[0] == 0x80) {
        for (size_t i = 1; i < len; i++) {
            if (x >> 54) return -1;
            x = (x << 8) | p[i];
        }
        *v = x;
        return 0;
    }
    size_t i = 0;
    while (i < len && p[i] == ' ') i++;
    size_t digits = 0;
    for (; i < len && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (x >> 58) return -1;
        x = (x << 3) | (uint64_t)(p[i] - '0');
    }
    if (digits == 0) return -1;
    for (; i < len; i++)
        if (p[i] != ' ' && p[i] != '\0') return -1;
    *v = x;
    return 0;
}

static int checksum_ok(const unsigned char *h) {
    uint64_t want;
    if (parse_number(h + 148, 8, &want)) return 0;
    uint64_t us = 0;
    int64_t ss = 0;
    for (int i = 0; i < BLOCK; i++) {
        unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
        us += c;
        ss += (signed char)c;
    }
    return want == us || (int64_t)want == ss;
}

/* Copies a name field (up to len bytes, stops at NUL), replacing bytes that
 * are not printable ASCII so an error message stays one clean line. */
static size_t copy_name(char *dst, const unsigned char *src, size_t len) {
    size_t k = 0;
    for (; k < len && src[k]; k++) dst[k] = (src[k] >= 0x20 && src[k] < 0x7f) ? (char)src[k] : '?';
    dst[k] = '\0';
    return k;
}

/* After the end-of-archive block: inflate what follows (zero padding) so a
 * corrupt or truncated gzip stream is still reported. Plain tar: nothing to
 * check. */
static rf_status drain(rf_ctx *ctx, rf_tar *t) {
    if (!t->gz) return RF_OK;
    size_t got;
    do RF_TRY(src_read(ctx, t, t->scratch, sizeof t->scratch, &got));
    while (got == sizeof t->scratch);
    return RF_OK;
}

rf_status rf_tar_next(rf_ctx *ctx, rf_tar *t, const char **name, uint64_t *size) {
    *name = NULL; *size = 0;
    if (t->end) return RF_OK;
    RF_TRY(skip(ctx, t, t->left + t->pad, t->name));
    t->left = t->pad = 0;
    for (;;) {
        unsigned char h[BLOCK];
        uint64_t at = t->off;
        size_t got;
        RF_TRY(src_read(ctx, t, h, BLOCK, &got));
        if (got == 0)
            return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated archive (no end-of-archive block after %llu bytes)",
                            t->path, (unsigned long long)at);
        if (got < BLOCK)
            return rf_error(ctx, RF_ERR_TRUNCATED, "%s: truncated archive (header at byte %llu has %zu of 512 bytes)",
                            t->path, (unsigned long long)at, got);
        int zero = 1;
        for (int i = 0; i < BLOCK && zero; i++) zero = h[i] == 0;
        if (zero) {
            t->end = 1;
            return drain(ctx, t);
        }
        if (!checksum_ok(h))
            return rf_error(ctx, RF_ERR_CHECKSUM, "%s: tar header at byte %llu has a bad checksum (not a tar archive, or corrupt)",
                            t->path, (unsigned long long)at);
        uint64_t sz;
        if (parse_number(h + 124, 12, &sz))
            return rf_error(ctx, RF_ERR_FORMAT, "%s: tar header at byte %llu has a malformed size field",
                            t->path, (unsigned long long)at);
        size_t k = 0;
        if (memcmp(h + 257, "ustar", 6) == 0 && h[345]) {   /* POSIX: "ustar\0" and a prefix */
            k = copy_name(t->name, h + 345, 155);
            t->name[k++] = '/';
        }
        copy_name(t->name + k, h, 100);
        uint64_t pad = (BLOCK - sz % BLOCK) % BLOCK;
        unsigned char type = h[156];
        if (type == '0' || type == '\0' || type == '7') {
            t->left = sz;
            t->pad = pad;
            *name = t->name;
            *size = sz;
            return RF_OK;
        }
        RF_TRY(skip(ctx, t, sz + pad, t->name));
    }
}

rf_status rf_tar_read(rf_ctx *ctx, rf_tar *t, void *buf, size_t n) {
    if (n > t->left)
        return rf_error(ctx, RF_ERR_INTERNAL, "%s: read of %zu bytes past the end of member %s", t->path, n, t->name);
    RF_TRY(read_exact(ctx, t, buf, n, t->name));
    t->left -= n;
    return RF_OK;
}
