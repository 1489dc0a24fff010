/* raffle core: status codes, per-call context, allocation hook, tensors,
 * activation arena and the counter-based RNG.
 *
 * Everything else in raffle builds on this header. Conventions (CONTRIBUTING.md):
 *  - library functions return rf_status and put detail in ctx->err;
 *  - ownership is stated on every prototype;
 *  - status values are fixed forever: add new ones at the end, never renumber. */
#ifndef RAFFLE_CORE_H
#define RAFFLE_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RF_VERSION_STRING "0.1.0"

/* ---- status codes (values never change) ---------------------------------- */
typedef enum rf_status {
    RF_OK              = 0,
    RF_ERR_NOMEM       = 1,  /* an allocation failed                           */
    RF_ERR_INVALID     = 2,  /* bad argument or option value                   */
    RF_ERR_IO          = 3,  /* open/read/write/fsync/rename failed             */
    RF_ERR_FORMAT      = 4,  /* a file's content is not what its format says   */
    RF_ERR_MAGIC       = 5,  /* wrong magic number                              */
    RF_ERR_VERSION     = 6,  /* format version newer than this build reads     */
    RF_ERR_CHECKSUM    = 7,  /* checksum mismatch                               */
    RF_ERR_TRUNCATED   = 8,  /* file shorter than its header says              */
    RF_ERR_SIZE        = 9,  /* sizes inside a file don't add up               */
    RF_ERR_SHAPE       = 10, /* tensor/layer shapes don't fit                   */
    RF_ERR_SPEC        = 11, /* bad model spec                                  */
    RF_ERR_JOB         = 12, /* bad job file                                    */
    RF_ERR_NAN         = 13, /* NaN or Inf appeared in training                 */
    RF_ERR_LIMIT       = 14, /* a configured memory or size cap would be passed */
    RF_ERR_UNSUPPORTED = 15, /* valid but not supported by this build          */
    RF_ERR_NOTFOUND    = 16, /* named thing (file, tensor, preset) not found    */
    RF_ERR_MPI         = 17, /* MPI call failed or protocol violated           */
    RF_ERR_NET         = 18, /* network / HTTP failure                          */
    RF_ERR_COMPRESS    = 19, /* zstd/zlib failure                               */
    RF_ERR_DATA        = 20, /* dataset content invalid                         */
    RF_ERR_INTERNAL    = 21, /* a bug in raffle                                 */
    RF_ERR_TIMEOUT     = 22, /* a time limit was hit                            */
    RF_ERR_PREEMPTED   = 23, /* stopped on request; resumable state saved       */
    RF_ERR_CHILD       = 24, /* a child process crashed or was killed           */
    RF_ERR_BUSY        = 25, /* held by another process (a store's sweep lock)  */
    RF_STATUS_COUNT_
} rf_status;

/* Returns a static, stable name for a status ("checksum mismatch"). */
const char *rf_strerror(rf_status s);

/* ---- engine options --------------------------------------------------------
 * How the compute engine runs: the convolution path, the GEMM backend, ... as
 * explicit values carried in rf_ctx (raffle/engine.h has the table: names,
 * values, defaults, environment variables, docs). Values are indices into an
 * option's value names, or integers. */
typedef enum rf_engine_opt {
    RF_ENGINE_ISA = 0, RF_ENGINE_CONV, RF_ENGINE_GEMM, RF_ENGINE_TB_CHUNK, RF_ENGINE_FEAT_RUNS, RF_ENGINE_THREADS,
    RF_ENGINE_BN,
    RF_ENGINE_COUNT_
} rf_engine_opt;
struct rf_pool;
struct rf_gemm;
/* v: the options' values. pool, gemm: the compute resources of the task
 * these options run (its thread pool and dense GEMM context, created once
 * per task by rf_gemm_attach, raffle/gemm.h, and owned by whoever attached
 * them); NULL outside a task, where products run on the calling thread.
 * The engine that work inside part t of a job on the pool gets is a copy
 * with pool = NULL (no nested threads) and slot = t: its products run on
 * the calling thread with the GEMM's workspace t. None of these are
 * options: never parsed, compared or recorded. */
typedef struct rf_engine {
    int v[RF_ENGINE_COUNT_];
    struct rf_pool *pool;
    struct rf_gemm *gemm;
    int slot;
} rf_engine;

/* ---- context -------------------------------------------------------------
 * One per thread of work. Carries the last error's message and settings that
 * library code consults (memory cap, engine options, among them the compute
 * threads). Plain struct so it can live on the stack: rf_ctx ctx;
 * rf_ctx_init(&ctx); */
#define RF_ERR_MAX 512
struct rf_diag;
struct rf_inputs;
typedef struct rf_ctx {
    rf_status status;          /* last error status, RF_OK if none            */
    char      err[RF_ERR_MAX]; /* last error message, "" if none              */
    size_t    mem_cap;         /* max bytes live at once, a new object included (0 = default 8 GiB) */
    size_t    task_cap;        /* max tasks one job may expand to (0 = default 100,000) */
    rf_engine engine;          /* engine options the computations of this ctx use */
    /* NULL, or where checks that go on after an error (rf_diag) record
     * each; borrowed (the caller owns it) */
    struct rf_diag *diag;
    /* NULL, or the files whose digests a job is parsed with (raffle/plan.h
     * rf_inputs): checks take them as present, the file may be gone (the
     * report of an old store); borrowed */
    const struct rf_inputs *pinned;
} rf_ctx;

#define RF_TASK_CAP_DEFAULT 100000
#define RF_TASK_CAP_MAX     2000000

/* Zeroes ctx, and mem_cap from the environment variable
 * RAFFLE_MEM_CAP (bytes, optional K/M/G/T binary suffix: "512M", "2G");
 * unset or unparseable leaves 0, the default cap of 8 GiB; and task_cap from
 * RAFFLE_MAX_TASKS (a plain count, at most RF_TASK_CAP_MAX; anything else
 * leaves 0, the default RF_TASK_CAP_DEFAULT); engine options from their
 * built-in defaults and environment variables (raffle/engine.h; a value an
 * option does not take is skipped here: rf_engine_from_env reports it). */
void rf_ctx_init(rf_ctx *ctx);
/* The task cap in force: ctx->task_cap, or the default when it is 0, never
 * above RF_TASK_CAP_MAX. */
size_t rf_ctx_task_cap(const rf_ctx *ctx);
/* Returns the message of the last error (never NULL). */
const char *rf_ctx_error(const rf_ctx *ctx);
/* Records status and a printf-style message in ctx; returns status so callers
 * can write `return rf_error(ctx, RF_ERR_IO, "%s: %s", path, strerror(errno));`
 * ctx may be NULL (then nothing is recorded). */
rf_status rf_error(rf_ctx *ctx, rf_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the current message with "prefix: " (keeps status). */
void rf_error_prefix(rf_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rf_ctx_clear(rf_ctx *ctx);
/* Checks that `bytes` more, on top of every live allocation
 * (rf_alloc_live_bytes), fit under ctx's memory cap: the total, not each
 * object on its own. Error RF_ERR_LIMIT naming `what` if not. */
rf_status rf_check_cap(rf_ctx *ctx, uint64_t bytes, const char *what);

#define RF_TRY(expr) do { rf_status rf_try_s_ = (expr); if (rf_try_s_ != RF_OK) return rf_try_s_; } while (0)

/* RF_ASSERT: programmer bugs only, never on input; no side effects inside. */
void rf_assert_fail_(const char *expr, const char *file, int line);
#define RF_ASSERT(x) ((x) ? (void)0 : rf_assert_fail_(#x, __FILE__, __LINE__))

/* ---- SHA-256 (FIPS 180-4) -------------------------------------------------
 * Pins downloads (raffle/net.h) and gives the files a task reads their
 * content identity (task ids, raffle/plan.h). */
typedef struct rf_sha256 { uint32_t h[8]; uint64_t len; unsigned char buf[64]; size_t nbuf; } rf_sha256;
void rf_sha256_init(rf_sha256 *s);
void rf_sha256_update(rf_sha256 *s, const void *data, size_t n);
void rf_sha256_final(rf_sha256 *s, unsigned char out[32]);
/* hex: 65 bytes (64 hex digits + NUL). */
void rf_sha256_hex(const void *data, size_t n, char hex[65]);
/* The digest of a regular file's content (opened without blocking: a FIFO
 * or a device is RF_ERR_INVALID, a missing file RF_ERR_NOTFOUND, each
 * naming path). */
rf_status rf_sha256_file(rf_ctx *ctx, const char *path, char hex[65]);

/* ---- allocation hook -----------------------------------------------------
 * All library allocations go through these so tests can make the n-th one
 * fail (SQLite-style fault injection). rf_malloc(0) returns a valid pointer. */
void *rf_malloc(size_t n);
void *rf_calloc(size_t count, size_t size);      /* overflow-checked          */
void *rf_realloc(void *p, size_t n);
void *rf_aligned_alloc(size_t align, size_t n);  /* free with rf_free         */
void  rf_free(void *p);                          /* accepts NULL              */
char *rf_strdup(const char *s);                  /* returns new string; rf_free */
/* Test hook: after `n` more successful allocations, every allocation fails
 * until reset. n < 0 disables failure injection. */
void  rf_alloc_fail_after(long n);
/* Number of allocations made since start (for fault-injection loops). */
unsigned long rf_alloc_count(void);   /* successful rf_malloc/calloc/realloc/aligned_alloc calls */
/* Live allocation count (allocs - frees) since start: leak checks in tests. */
long  rf_alloc_live(void);
/* Bytes held by live allocations (the allocator's usable size of each), the
 * most held since start or since rf_alloc_peak_reset (which sets the peak to
 * what is live now). rf_check_cap counts the live bytes. */
size_t rf_alloc_live_bytes(void);
size_t rf_alloc_peak_bytes(void);
void   rf_alloc_peak_reset(void);

/* ---- tensors ------------------------------------------------------------- */
typedef enum rf_dtype {   /* values are stored in files: never change */
    RF_F32 = 0, RF_I8 = 1, RF_U8 = 2, RF_I32 = 3, RF_I64 = 4,
    RF_DTYPE_COUNT_
} rf_dtype;
size_t      rf_dtype_size(rf_dtype t);   /* bytes per element, 0 if invalid   */
const char *rf_dtype_name(rf_dtype t);   /* "f32", "i8", ...; "?" if invalid   */
int         rf_dtype_from_name(const char *s); /* -1 if unknown              */

#define RF_MAX_DIMS 4
typedef struct rf_tensor {
    rf_dtype dtype;
    int      ndim;
    int64_t  shape[RF_MAX_DIMS];
    int64_t  stride[RF_MAX_DIMS]; /* in elements, row-major when contiguous  */
    void    *data;
    int      owns;                /* 1: rf_tensor_free frees data             */
} rf_tensor;

/* Returns a new zeroed contiguous tensor; free with rf_tensor_free. */
rf_status rf_tensor_new(rf_ctx *ctx, rf_dtype t, int ndim, const int64_t *shape, rf_tensor **out);
/* Fills *out as a view of `data` (borrowed: caller keeps it alive). */
rf_status rf_tensor_view(rf_ctx *ctx, rf_tensor *out, rf_dtype t, int ndim, const int64_t *shape, void *data);
void      rf_tensor_free(rf_tensor *t);  /* accepts NULL */
int64_t   rf_tensor_numel(const rf_tensor *t);
/* Element count of a shape, or -1 on overflow / negative dims. */
int64_t   rf_shape_numel(int ndim, const int64_t *shape);

/* ---- arena: bump allocator for activations ------------------------------ */
typedef struct rf_arena {
    unsigned char *base;
    size_t cap, used;
} rf_arena;
rf_status rf_arena_init(rf_ctx *ctx, rf_arena *a, size_t cap);  /* allocates cap bytes */
/* Returns 64-byte aligned memory from the arena, or NULL (error in ctx) when full. */
void     *rf_arena_alloc(rf_ctx *ctx, rf_arena *a, size_t bytes);
void      rf_arena_reset(rf_arena *a);
void      rf_arena_free(rf_arena *a);

/* ---- RNG: counter-based (Philox4x32-10) ----------------------------------
 * The stream is a pure function of (seed, stream, counter): the same on every
 * machine, rank and thread count. Derive independent streams for independent
 * purposes (init, shuffle, dropout, pruning) with rf_rng_init(seed, stream). */
typedef struct rf_rng {
    uint64_t key;      /* seed */
    uint64_t stream;   /* which independent stream */
    uint64_t counter;  /* block counter */
    uint32_t buf[4];
    int      pos;      /* next unused word in buf (4 = empty) */
} rf_rng;
void     rf_rng_init(rf_rng *r, uint64_t seed, uint64_t stream);
uint32_t rf_rng_u32(rf_rng *r);
uint64_t rf_rng_u64(rf_rng *r);
float    rf_rng_uniform(rf_rng *r);            /* [0, 1), 24-bit resolution  */
double   rf_rng_uniform_double(rf_rng *r);     /* [0, 1), 53-bit resolution  */
float    rf_rng_normal(rf_rng *r);             /* N(0,1), Box-Muller         */
uint32_t rf_rng_below(rf_rng *r, uint32_t n);  /* uniform in [0, n), unbiased */
void     rf_rng_shuffle_u32(rf_rng *r, uint32_t *v, size_t n); /* Fisher-Yates */
/* Counter-based skip-ahead, so that several threads can draw one stream:
 * out[j] = what the (first + j)-th of the next rf_rng_u32 calls returns
 * (first = 0: the next one); r is not changed. rf_rng_skip moves r past n
 * draws, as n calls of rf_rng_u32 would. */
void     rf_rng_u32_range(const rf_rng *r, uint64_t first, uint32_t *out, size_t n);
void     rf_rng_skip(rf_rng *r, uint64_t n);
/* Stable 64-bit hash of a string (FNV-1a): names streams, task ids etc. */
uint64_t rf_hash64(const void *data, size_t n, uint64_t seed);

/* ---- small utilities ----------------------------------------------------- */
double   rf_now(void);  /* monotonic seconds */
/* CRC32C (Castagnoli) of data, continuing from crc (start with 0). */
uint32_t rf_crc32c(uint32_t crc, const void *data, size_t n);
/* The plain table version rf_crc32c is tested against (same results). */
uint32_t rf_crc32c_ref(uint32_t crc, const void *data, size_t n);
/* Little-endian fixed-width encode/decode. */
static inline void rf_put_u32(unsigned char *p, uint32_t v) { p[0]=(unsigned char)v; p[1]=(unsigned char)(v>>8); p[2]=(unsigned char)(v>>16); p[3]=(unsigned char)(v>>24); }
static inline void rf_put_u64(unsigned char *p, uint64_t v) { rf_put_u32(p, (uint32_t)v); rf_put_u32(p+4, (uint32_t)(v>>32)); }
static inline uint32_t rf_get_u32(const unsigned char *p) { return (uint32_t)p[0] | ((uint32_t)p[1]<<8) | ((uint32_t)p[2]<<16) | ((uint32_t)p[3]<<24); }
static inline uint64_t rf_get_u64(const unsigned char *p) { return (uint64_t)rf_get_u32(p) | ((uint64_t)rf_get_u32(p+4) << 32); }

/* A growable string (report pages, generated docs). Zero-initialise it; on
 * an allocation failure oom is set and later appends are dropped. p is NUL-
 * terminated once anything was appended; free it with rf_buf_free. */
typedef struct rf_buf { char *p; size_t n, cap; int oom; } rf_buf;
void rf_buf_printf(rf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rf_buf_free(rf_buf *b);

/* ---- every error at once ---------------------------------------------------
 * A check that can go on after an error (a job file's keys, issue 23:
 * `raffle validate` reports every error of a job at once) records each in
 * ctx->diag when the caller set one, goes on, and leaves the first in ctx.
 * Without ctx->diag it stops at the first, as every other check does. */
typedef struct rf_diag {
    rf_buf lines;   /* "message\n" per error, in the order found */
    int    n;
} rf_diag;
/* Records ctx's current message in ctx->diag (nothing without one). */
void rf_diag_note(rf_ctx *ctx);
/* Error i's message (0-based) into buf (n bytes); "" when out of range. */
void rf_diag_line(const rf_diag *d, int i, char *buf, size_t n);
void rf_diag_free(rf_diag *d);   /* frees the lines; the struct is the caller's */

/* Atomically writes `n` bytes to `path`: temp file in the same directory,
 * fsync, rename, fsync of the directory. Nothing half-written is ever visible. */
rf_status rf_write_file_atomic(rf_ctx *ctx, const char *path, const void *data, size_t n);
/* Reads a whole file; returns a new buffer (free with rf_free) and its size.
 * Refuses files larger than ctx's memory cap. */
rf_status rf_read_file(rf_ctx *ctx, const char *path, unsigned char **out, size_t *n);
/* mkdir -p; mode 0755. */
rf_status rf_mkdirs(rf_ctx *ctx, const char *path);
/* 1 if process pid exists on this host and has not exited (a zombie that
 * awaits its parent's wait counts as exited), else 0. */
int       rf_pid_alive(long pid);

/* ---- numbers written as text (src/core/parse.c) ---------------------------
 * The one strict parser every text parser uses (job strings, options,
 * environment variables, file headers). The n bytes at s must be exactly the
 * number: decimal digits (rf_parse_i64: an optional leading '-'; rf_parse_f64:
 * what strtod reads, but no leading blanks, no nan/inf); a value outside
 * [lo, hi], or one that does not fit 64 bits / a double, is RF_ERR_INVALID
 * naming `what` (never silently saturated). *out is written only on RF_OK. */
rf_status rf_parse_u64(rf_ctx *ctx, const char *s, size_t n, uint64_t lo, uint64_t hi, const char *what, uint64_t *out);
rf_status rf_parse_i64(rf_ctx *ctx, const char *s, size_t n, int64_t lo, int64_t hi, const char *what, int64_t *out);
rf_status rf_parse_f64(rf_ctx *ctx, const char *s, size_t n, double lo, double hi, const char *what, double *out);

#ifdef __cplusplus
}
#endif
#endif
