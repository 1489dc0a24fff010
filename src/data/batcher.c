/* Deterministic mini-batching.
 *
 * The permutation for an epoch comes from the counter-based RNG keyed by the
 * run's seed, on a stream named by hashing "shuffle" and mixing in the epoch,
 * so the order is a pure function of (seed, epoch): every rank and every
 * resumed run sees the same batches, and no RNG state has to be saved.
 * Augmentation (augment.c), when set, is a pure function of (seed, epoch,
 * sample index) too. */
#include "raffle/data.h"
#include "raffle/threads.h"

#include <string.h>

static uint64_t shuffle_stream(int64_t epoch) {
    return rf_hash64("shuffle", 7, 0) ^ (uint64_t)epoch;
}

rf_status rf_batcher_init(rf_ctx *ctx, rf_batcher *b, const rf_dataset *ds, int batch,
                          uint64_t seed, int64_t epoch, int shuffle, int drop_last) {
    memset(b, 0, sizeof *b);
    if (batch <= 0) return rf_error(ctx, RF_ERR_INVALID, "batcher: batch size must be positive, got %d", batch);
    if (ds->n < 0 || ds->n > (int64_t)UINT32_MAX)
        return rf_error(ctx, RF_ERR_INVALID, "batcher: %lld samples (at most 2^32-1)", (long long)ds->n);
    b->order = rf_malloc((size_t)(ds->n ? ds->n : 1) * sizeof(uint32_t));
    if (!b->order) return rf_error(ctx, RF_ERR_NOMEM, "batcher: out of memory");
    for (int64_t i = 0; i < ds->n; i++) b->order[i] = (uint32_t)i;
    if (shuffle) {
        rf_rng r;
        rf_rng_init(&r, seed, shuffle_stream(epoch));
        rf_rng_shuffle_u32(&r, b->order, (size_t)ds->n);
    }
    b->ds = ds;
    b->seed = seed;
    b->epoch = epoch;
    b->batch = batch;
    b->drop_last = drop_last;
    b->pos = 0;
    return RF_OK;
}

typedef struct batch_job { const rf_batcher *b; float *x; int count; } batch_job;

/* Samples [count·t/n, count·(t+1)/n) of the batch into x. */
static void batch_part(void *arg, int t, int n) {
    const batch_job *j = arg;
    const rf_batcher *b = j->b;
    const rf_dataset *ds = b->ds;
    size_t d = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    int i1 = (int)((int64_t)j->count * (t + 1) / n);
    for (int i = (int)((int64_t)j->count * t / n); i < i1; i++) {
        uint32_t s = b->order[b->pos + i];
        if (b->augment_on) rf_augment_sample(&b->augment, ds, b->seed, b->epoch, s, j->x + (size_t)i * d);
        else memcpy(j->x + (size_t)i * d, ds->x + (size_t)s * d, d * sizeof(float));
    }
}

/* A part copies at least this many floats (128 KiB): a batch of 128
 * Fashion-MNIST images (400 KB) takes 2 threads, a CIFAR batch more. */
#define BATCH_PART_MIN (1 << 15)

int rf_batcher_next(rf_batcher *b, float *x, int32_t *y, int64_t *idx) {
    const rf_dataset *ds = b->ds;
    if (!ds || b->pos >= ds->n) return 0;
    int64_t left = ds->n - b->pos;
    if (left < b->batch && b->drop_last) { b->pos = ds->n; return 0; }
    int count = left < b->batch ? (int)left : b->batch;
    size_t d = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    if (x) {
        batch_job j = {b, x, count};
        size_t parts = rf_threads_split_all_on() ? (size_t)count : (size_t)count * d / BATCH_PART_MIN;
        int n = rf_pool_threads(b->pool);
        if ((size_t)n > parts) n = parts > 0 ? (int)parts : 1;
        if (n > count) n = count;
        rf_pool_run(b->pool, n, batch_part, &j);
    }
    for (int i = 0; i < count; i++) {
        uint32_t s = b->order[b->pos + i];
        if (y) y[i] = ds->y[s];
        if (idx) idx[i] = s;
    }
    b->pos += count;
    return count;
}

void rf_batcher_free(rf_batcher *b) {
    if (!b) return;
    rf_free(b->order);
    b->order = NULL;
    b->ds = NULL;
}
