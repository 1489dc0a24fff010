/* The coordinator's wire protocol: fixed 48-byte little-endian headers (so a
 * header means the same on every rank and compiler), byte payloads, and
 * checkpoint streams cut into chunks of RF_COORD_CHUNK raw bytes (so any size
 * fits MPI's int counts), each a zstd frame or, when zstd cannot shrink it,
 * the bytes themselves on the "stored" tag. */
#define _GNU_SOURCE
#include "coord/coord_internal.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

/* A header's sizes are capped before anything is allocated from them. */
#define MAX_BLOB   (64ull << 20)
#define MAX_STREAM (1ull << 40)

void rf_coord_msg_encode(const rf_coord_msg *m, unsigned char out[RF_COORD_HDR_BYTES]) {
    memset(out, 0, RF_COORD_HDR_BYTES);
    rf_put_u32(out, RF_COORD_MAGIC);
    out[4] = (unsigned char)(m->version & 0xff); out[5] = (unsigned char)(m->version >> 8);
    out[6] = (unsigned char)(m->type & 0xff);    out[7] = (unsigned char)(m->type >> 8);
    rf_put_u32(out + 8, m->task);
    rf_put_u32(out + 12, m->attempt);
    rf_put_u32(out + 16, m->arg);
    rf_put_u64(out + 24, m->n1);
    rf_put_u64(out + 32, m->n2);
    rf_put_u64(out + 40, m->n3);
}

rf_status rf_coord_msg_decode(rf_ctx *ctx, const unsigned char *b, size_t n, rf_coord_msg *m) {
    memset(m, 0, sizeof *m);
    if (n != RF_COORD_HDR_BYTES) return rf_error(ctx, RF_ERR_MPI, "protocol: header of %zu bytes, expected %d", n, RF_COORD_HDR_BYTES);
    if (rf_get_u32(b) != RF_COORD_MAGIC) return rf_error(ctx, RF_ERR_MPI, "protocol: bad magic 0x%08x", rf_get_u32(b));
    m->version = (uint16_t)(b[4] | (b[5] << 8));
    m->type = (uint16_t)(b[6] | (b[7] << 8));
    if (m->version != RF_COORD_PROTO_VERSION)
        return rf_error(ctx, RF_ERR_VERSION, "protocol version %u, this build speaks %d: run the same raffle build on every rank",
                        m->version, RF_COORD_PROTO_VERSION);
    if (m->type == 0 || m->type >= RF_MSG_TYPE_COUNT_) return rf_error(ctx, RF_ERR_MPI, "protocol: unknown message type %u", m->type);
    m->task = rf_get_u32(b + 8);
    m->attempt = rf_get_u32(b + 12);
    m->arg = rf_get_u32(b + 16);
    m->n1 = rf_get_u64(b + 24);
    m->n2 = rf_get_u64(b + 32);
    m->n3 = rf_get_u64(b + 40);
    if (m->n1 > MAX_BLOB) return rf_error(ctx, RF_ERR_MPI, "protocol: payload of %llu bytes is over the limit", (unsigned long long)m->n1);
    if (m->n2 > MAX_STREAM || m->n3 != coord_chunks(m->n2))
        return rf_error(ctx, RF_ERR_MPI, "protocol: stream of %llu bytes in %llu chunks does not add up",
                        (unsigned long long)m->n2, (unsigned long long)m->n3);
    return RF_OK;
}

uint64_t coord_chunks(uint64_t raw) { return (raw + RF_COORD_CHUNK - 1) / RF_COORD_CHUNK; }

static rf_status mpi_fail(rf_ctx *ctx, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return rf_error(ctx, RF_ERR_MPI, "%s: %.*s", what, len, msg);
}

/* ---- the link: heartbeats ------------------------------------------------ */

typedef struct link_state {
    MPI_Comm   comm;
    int        rank, nranks, open;
    double     timeout, every, last_beat, last_drain;
    _Atomic double *heard;      /* per peer: rf_now() when it was last heard (read by a worker's watchdog) */
    unsigned char  *dropped;    /* rank 0: peers given up */
    unsigned char (*reap)[RF_COORD_HDR_BYTES];   /* rank 0: per given-up rank, its REAP message (in flight) */
    atomic_int      abandoned;  /* worker: rank 0 sent DROP */
    unsigned char   beat[RF_COORD_HDR_BYTES], drop[RF_COORD_HDR_BYTES];
    int             hushed;     /* rank 0: send nothing on the beat tag (coord_link_hush) */
} link_state;
static link_state L;

void coord_backoff(int *idle_spins) {
    int n = ++*idle_spins;
    if (n < 64) return;
    if (n < 2048) { sched_yield(); return; }
    struct timespec ts = {0, n < 2200 ? 50000 : 1000000};
    nanosleep(&ts, NULL);
}

rf_status coord_link_open(rf_ctx *ctx, MPI_Comm comm, int rank, int nranks, double timeout_s) {
    coord_link_close();
    if (!(timeout_s > 0) || nranks < 2) return RF_OK;
    L.heard = rf_calloc((size_t)nranks, sizeof *L.heard);
    L.dropped = rf_calloc((size_t)nranks, 1);
    L.reap = rank == 0 ? rf_calloc((size_t)nranks, sizeof *L.reap) : NULL;
    if (!L.heard || !L.dropped || (rank == 0 && !L.reap)) { coord_link_close(); return rf_error(ctx, RF_ERR_NOMEM, "out of memory"); }
    L.comm = comm;
    L.rank = rank;
    L.nranks = nranks;
    L.timeout = timeout_s;
    L.every = timeout_s / 4;
    double now = rf_now();
    for (int r = 0; r < nranks; r++) atomic_store(&L.heard[r], now);
    L.last_beat = -1e30;
    atomic_store(&L.abandoned, 0);
    rf_coord_msg b = {.version = RF_COORD_PROTO_VERSION, .type = RF_MSG_BEAT};
    rf_coord_msg_encode(&b, L.beat);
    b.type = RF_MSG_DROP;
    rf_coord_msg_encode(&b, L.drop);
    L.open = 1;
    return RF_OK;
}

void coord_link_close(void) {
    rf_free(L.heard);
    rf_free(L.dropped);
    rf_free(L.reap);   /* a REAP still in flight at the end: MPI_Finalize or the abort comes first */
    memset(&L, 0, sizeof L);
}

double coord_link_timeout(void) { return L.open ? L.timeout : 0; }
double coord_link_silence(int peer) {
    return L.open && peer >= 0 && peer < L.nranks ? rf_now() - atomic_load(&L.heard[peer]) : 0;
}
int coord_link_dropped(int peer) { return L.open && peer >= 0 && peer < L.nranks && L.dropped[peer]; }
int coord_link_abandoned(void) { return L.open && atomic_load(&L.abandoned); }

/* A beat is fire-and-forget: the buffer is static and never changes, so the
 * request can be freed at once and a send to a silent peer never blocks. */
static void beat_to(int peer, const unsigned char *msg) {
    if (L.hushed) return;
    MPI_Request rq;
    if (MPI_Isend(msg, RF_COORD_HDR_BYTES, MPI_BYTE, peer, COORD_TAG_BEAT, L.comm, &rq) == MPI_SUCCESS) MPI_Request_free(&rq);
}

void coord_link_drop(int peer) {
    if (!L.open || peer <= 0 || peer >= L.nranks || L.dropped[peer]) return;
    L.dropped[peer] = 1;
    beat_to(peer, L.drop);
}

void coord_link_hush(int on) { L.hushed = on; }

double coord_link_heard(int peer) {
    return L.open && peer >= 0 && peer < L.nranks ? atomic_load(&L.heard[peer]) : 0;
}

void coord_link_reap(int to, int dead, uint64_t pid) {
    if (!L.open || L.rank != 0 || to <= 0 || to >= L.nranks || dead <= 0 || dead >= L.nranks || L.dropped[to]) return;
    rf_coord_msg m = {.version = RF_COORD_PROTO_VERSION, .type = RF_MSG_REAP, .arg = (uint32_t)dead, .n1 = pid};
    rf_coord_msg_encode(&m, L.reap[dead]);
    beat_to(to, L.reap[dead]);
}

/* Receives the beat from src that a probe found (with no link open: one
 * left over from an earlier sweep in this process, dropped). */
static void take_beat(MPI_Comm comm, int src) {
    unsigned char in[RF_COORD_HDR_BYTES];
    MPI_Recv(in, RF_COORD_HDR_BYTES, MPI_BYTE, src, COORD_TAG_BEAT, comm, MPI_STATUS_IGNORE);
    if (!L.open || src < 0 || src >= L.nranks) return;
    rf_coord_msg m;
    rf_ctx tmp;
    rf_ctx_init(&tmp);
    if (rf_coord_msg_decode(&tmp, in, RF_COORD_HDR_BYTES, &m) != RF_OK) return;
    if (m.type == RF_MSG_DROP && L.rank != 0 && src == 0) atomic_store(&L.abandoned, 1);
    if (m.type == RF_MSG_REAP && L.rank != 0 && src == 0) coord_reap_children((long)m.n1);
    /* a given-up peer stays given up: its late beats change nothing */
    if (!L.dropped[src]) atomic_store(&L.heard[src], rf_now());
}

void coord_link_pump(void) {
    if (!L.open) return;
    /* beats come every timeout/4: draining them every 5 ms is plenty, and
     * keeps the probe out of the dispatch loop's hot path */
    double now = rf_now();
    if (now - L.last_drain < 0.005 && now - L.last_beat < L.every) return;
    L.last_drain = now;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, COORD_TAG_BEAT, L.comm, &flag, &st) != MPI_SUCCESS || !flag) break;
        take_beat(L.comm, st.MPI_SOURCE);
    }
    if (now - L.last_beat < L.every) return;
    L.last_beat = now;
    if (L.rank != 0) { beat_to(0, L.beat); return; }
    for (int r = 1; r < L.nranks; r++) if (!L.dropped[r]) beat_to(r, L.beat);
}

static void heard(int peer) {
    if (L.open && peer >= 0 && peer < L.nranks && !L.dropped[peer]) atomic_store(&L.heard[peer], rf_now());
}

rf_status coord_wait(rf_ctx *ctx, MPI_Request *rq, MPI_Status *st, int peer, const char *what) {
    MPI_Status ignored;
    if (!st) st = &ignored;
    int flag = 0, spins = 0;
    for (;;) {
        int rc = MPI_Test(rq, &flag, st);
        if (rc != MPI_SUCCESS) return mpi_fail(ctx, rc, what);
        if (flag) { heard(peer >= 0 ? peer : st->MPI_SOURCE); return RF_OK; }
        coord_link_pump();
        if (L.open && peer >= 0 && coord_link_silence(peer) > L.timeout)
            return rf_error(ctx, RF_ERR_TIMEOUT, "%s: rank %d silent for %.1f s (heartbeat timeout %g s)", what, peer,
                            coord_link_silence(peer), L.timeout);
        coord_backoff(&spins);
    }
}

/* ---- messages ------------------------------------------------------------ */

rf_status coord_send_hdr(rf_ctx *ctx, MPI_Comm comm, int dest, const rf_coord_msg *m) {
    unsigned char b[RF_COORD_HDR_BYTES];
    rf_coord_msg c = *m;
    c.version = RF_COORD_PROTO_VERSION;
    rf_coord_msg_encode(&c, b);
    MPI_Request rq;
    int rc = MPI_Isend(b, RF_COORD_HDR_BYTES, MPI_BYTE, dest, COORD_TAG_HDR, comm, &rq);
    return rc == MPI_SUCCESS ? coord_wait(ctx, &rq, NULL, dest, "send header") : mpi_fail(ctx, rc, "send header");
}

rf_status coord_recv_hdr(rf_ctx *ctx, MPI_Comm comm, int src, rf_coord_msg *m, int *from) {
    unsigned char b[RF_COORD_HDR_BYTES];
    MPI_Status st;
    MPI_Request rq;
    int rc = MPI_Irecv(b, RF_COORD_HDR_BYTES, MPI_BYTE, src, COORD_TAG_HDR, comm, &rq);
    if (rc != MPI_SUCCESS) return mpi_fail(ctx, rc, "receive header");
    RF_TRY(coord_wait(ctx, &rq, &st, src == MPI_ANY_SOURCE ? -1 : src, "receive header"));
    int cnt = 0;
    MPI_Get_count(&st, MPI_BYTE, &cnt);
    if (from) *from = st.MPI_SOURCE;
    return rf_coord_msg_decode(ctx, b, (size_t)cnt, m);
}

rf_status coord_send_bytes(rf_ctx *ctx, MPI_Comm comm, int dest, const void *data, size_t n) {
    if (n > INT_MAX) return rf_error(ctx, RF_ERR_MPI, "payload too large for one message");
    MPI_Request rq;
    int rc = MPI_Isend(data, (int)n, MPI_BYTE, dest, COORD_TAG_DATA, comm, &rq);
    return rc == MPI_SUCCESS ? coord_wait(ctx, &rq, NULL, dest, "send payload") : mpi_fail(ctx, rc, "send payload");
}

rf_status coord_recv_bytes(rf_ctx *ctx, MPI_Comm comm, int src, void *data, size_t n) {
    if (n > INT_MAX) return rf_error(ctx, RF_ERR_MPI, "payload too large for one message");
    MPI_Status st;
    MPI_Request rq;
    int rc = MPI_Irecv(data, (int)n, MPI_BYTE, src, COORD_TAG_DATA, comm, &rq);
    if (rc != MPI_SUCCESS) return mpi_fail(ctx, rc, "receive payload");
    RF_TRY(coord_wait(ctx, &rq, &st, src, "receive payload"));
    int cnt = 0;
    MPI_Get_count(&st, MPI_BYTE, &cnt);
    if ((size_t)cnt != n) return rf_error(ctx, RF_ERR_MPI, "protocol: payload of %d bytes, header said %zu", cnt, n);
    return RF_OK;
}

/* Compresses one chunk into dst, or returns 0 when the chunk is not worth
 * compressing: an .rckpt's payload is already zstd, so a 64 KiB sample that
 * does not shrink by 5% means the chunk goes out stored (tag
 * COORD_TAG_STORED), straight from the caller's buffer, at MPI speed. */
static size_t compress_chunk(ZSTD_CCtx *zc, unsigned char *dst, size_t cap, const unsigned char *src, size_t n,
                             unsigned char *scratch, size_t scap) {
    size_t probe = n < (64u << 10) ? n : (64u << 10);
    size_t pn = ZSTD_compress2(zc, scratch, scap, src, probe);
    if (!ZSTD_isError(pn) && pn * 100 >= probe * 95) return 0;
    return ZSTD_compress2(zc, dst, cap, src, n);
}

rf_status coord_send_stream(rf_ctx *ctx, MPI_Comm comm, int dest, const unsigned char *buf, int fd,
                            uint64_t raw, int level) {
    if (raw == 0) return RF_OK;
    size_t bound = ZSTD_compressBound(RF_COORD_CHUNK);
    unsigned char *cb = rf_malloc(bound);
    unsigned char *rb = buf ? NULL : rf_malloc(RF_COORD_CHUNK);
    size_t pcap = ZSTD_compressBound(64u << 10);
    unsigned char *probe = rf_malloc(pcap);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    rf_status s = RF_OK;
    if (!cb || (!buf && !rb) || !zc || !probe) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
    ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, level);
    uint64_t nch = coord_chunks(raw);
    for (uint64_t k = 0; k < nch; k++) {
        size_t len = (size_t)((raw - k * RF_COORD_CHUNK) < RF_COORD_CHUNK ? raw - k * RF_COORD_CHUNK : RF_COORD_CHUNK);
        const unsigned char *src = buf ? buf + k * RF_COORD_CHUNK : rb;
        if (!buf) {
            size_t got = 0;
            while (got < len) {
                ssize_t r = pread(fd, rb + got, len - got, (off_t)(k * RF_COORD_CHUNK + got));
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) { s = rf_error(ctx, RF_ERR_IO, "checkpoint read failed: %s", r < 0 ? strerror(errno) : "file shrank"); goto done; }
                got += (size_t)r;
            }
        }
        /* one chunk in flight, waited for at once: with shared memory the
         * copy through MPI is the cost, and overlapping makes no progress
         * while this rank compresses (Open MPI progresses rendezvous
         * transfers only inside MPI calls), which measured slower. The wait
         * gives up on a silent receiver; the request then stays pending
         * with its buffers, which are left allocated for it */
        size_t cn = compress_chunk(zc, cb, bound, src, len, probe, pcap);
        if (ZSTD_isError(cn)) { s = rf_error(ctx, RF_ERR_COMPRESS, "zstd: %s", ZSTD_getErrorName(cn)); goto done; }
        MPI_Request rq;
        int rc = cn ? MPI_Isend(cb, (int)cn, MPI_BYTE, dest, COORD_TAG_DATA, comm, &rq)
                    : MPI_Isend(src, (int)len, MPI_BYTE, dest, COORD_TAG_STORED, comm, &rq);
        if (rc != MPI_SUCCESS) { s = mpi_fail(ctx, rc, "send chunk"); goto done; }
        if ((s = coord_wait(ctx, &rq, NULL, dest, "send chunk")) != RF_OK) { cb = rb = probe = NULL; goto done; }
    }
done:
    ZSTD_freeCCtx(zc);
    rf_free(cb); rf_free(rb); rf_free(probe);
    return s;
}

/* The tag of the next message from src other than a beat (beats met on
 * the way are taken), waiting as coord_wait does. */
static rf_status next_tag(rf_ctx *ctx, MPI_Comm comm, int src, int *tag) {
    int spins = 0;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        int rc = MPI_Iprobe(src, MPI_ANY_TAG, comm, &flag, &st);
        if (rc != MPI_SUCCESS) return mpi_fail(ctx, rc, "probe chunk");
        if (flag && st.MPI_TAG == COORD_TAG_BEAT) { take_beat(comm, src); spins = 0; continue; }
        if (flag) { *tag = st.MPI_TAG; return RF_OK; }
        coord_link_pump();
        if (L.open && coord_link_silence(src) > L.timeout)
            return rf_error(ctx, RF_ERR_TIMEOUT, "receive chunk: rank %d silent for %.1f s (heartbeat timeout %g s)", src,
                            coord_link_silence(src), L.timeout);
        coord_backoff(&spins);
    }
}

rf_status coord_recv_stream(rf_ctx *ctx, MPI_Comm comm, int src, uint64_t raw, uint64_t nchunks,
                            coord_sink sink, void *ud) {
    if (nchunks == 0) return RF_OK;
    size_t bound = ZSTD_compressBound(RF_COORD_CHUNK);
    unsigned char *cb = rf_malloc(bound);
    unsigned char *rb = rf_malloc(RF_COORD_CHUNK);
    ZSTD_DCtx *zd = ZSTD_createDCtx();
    rf_status s = RF_OK;
    if (!cb || !rb || !zd) { s = rf_error(ctx, RF_ERR_NOMEM, "out of memory"); goto done; }
    for (uint64_t k = 0; k < nchunks; k++) {
        MPI_Status st;
        MPI_Request rq;
        /* the chunk is on tag 2 or 3, whichever comes first from src; a
         * beat from src (tag 4) in front of it is taken out of the way */
        int tag = COORD_TAG_DATA;
        if ((s = next_tag(ctx, comm, src, &tag)) != RF_OK) goto done;
        int rc = MPI_Irecv(cb, (int)bound, MPI_BYTE, src, tag, comm, &rq);
        if (rc != MPI_SUCCESS) { s = mpi_fail(ctx, rc, "receive chunk"); goto done; }
        if ((s = coord_wait(ctx, &rq, &st, src, "receive chunk")) != RF_OK) { cb = rb = NULL; goto done; }
        int cnt = 0;
        MPI_Get_count(&st, MPI_BYTE, &cnt);
        size_t want = (size_t)((raw - k * RF_COORD_CHUNK) < RF_COORD_CHUNK ? raw - k * RF_COORD_CHUNK : RF_COORD_CHUNK);
        if (st.MPI_TAG == COORD_TAG_STORED) {
            if ((size_t)cnt != want) { s = rf_error(ctx, RF_ERR_MPI, "protocol: stored chunk %llu has %d bytes, expected %zu", (unsigned long long)k, cnt, want); goto done; }
            if (sink && (s = sink(ctx, ud, cb, want)) != RF_OK) goto done;
            continue;
        }
        if (st.MPI_TAG != COORD_TAG_DATA) { s = rf_error(ctx, RF_ERR_MPI, "protocol: tag %d inside a checkpoint stream", st.MPI_TAG); goto done; }
        size_t got = ZSTD_decompressDCtx(zd, rb, RF_COORD_CHUNK, cb, (size_t)cnt);
        if (ZSTD_isError(got)) { s = rf_error(ctx, RF_ERR_COMPRESS, "chunk %llu: zstd: %s", (unsigned long long)k, ZSTD_getErrorName(got)); goto done; }
        if (got != want) { s = rf_error(ctx, RF_ERR_MPI, "protocol: chunk %llu has %zu bytes, expected %zu", (unsigned long long)k, got, want); goto done; }
        if (sink && (s = sink(ctx, ud, rb, got)) != RF_OK) goto done;
    }
done:
    ZSTD_freeDCtx(zd);
    rf_free(cb); rf_free(rb);
    return s;
}

rf_status coord_blob_pack(rf_ctx *ctx, const char *meta, size_t mn, const unsigned char *metrics, size_t xn,
                          const unsigned char *log, size_t ln, unsigned char **out, size_t *n) {
    size_t total = 24 + mn + xn + ln;
    unsigned char *b = rf_malloc(total);
    if (!b) return rf_error(ctx, RF_ERR_NOMEM, "out of memory");
    size_t o = 0;
    const unsigned char *sec[3] = {(const unsigned char *)meta, metrics, log};
    size_t len[3] = {mn, xn, ln};
    for (int i = 0; i < 3; i++) {
        rf_put_u64(b + o, len[i]);
        o += 8;
        if (len[i]) memcpy(b + o, sec[i], len[i]);
        o += len[i];
    }
    *out = b; *n = total;
    return RF_OK;
}

rf_status coord_blob_unpack(rf_ctx *ctx, const unsigned char *blob, size_t n, const unsigned char *sec[3], size_t len[3]) {
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        if (n - o < 8) return rf_error(ctx, RF_ERR_MPI, "protocol: result blob truncated");
        uint64_t l = rf_get_u64(blob + o);
        o += 8;
        if (l > n - o) return rf_error(ctx, RF_ERR_MPI, "protocol: result blob section %d overruns", i);
        sec[i] = blob + o;
        len[i] = (size_t)l;
        o += (size_t)l;
    }
    if (o != n) return rf_error(ctx, RF_ERR_MPI, "protocol: %zu stray bytes after the result blob", n - o);
    return RF_OK;
}
