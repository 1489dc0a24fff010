/* The allocation hook: every library allocation passes through here so tests
 * can make the n-th one fail (SQLite's fault-injection approach). The counters
 * are atomics, so concurrent threads can allocate.
 *
 * It also keeps the bytes live (malloc_usable_size of each block), so the
 * memory cap can be checked against the total a process holds, not object by
 * object (issue 19, defect 7: a 1 G-parameter model passed the cap for its
 * parameters, its masks and its optimizer state separately and went on to
 * allocate 16 GB). */
#define _GNU_SOURCE
#include "raffle/core.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_after = -1;   /* <0: never fail */
static atomic_ulong n_allocs;
static atomic_long n_live;
static atomic_size_t live_bytes, peak_bytes;

void rf_alloc_fail_after(long n) { atomic_store(&fail_after, n); }
unsigned long rf_alloc_count(void) { return atomic_load(&n_allocs); }
long rf_alloc_live(void) { return atomic_load(&n_live); }
size_t rf_alloc_live_bytes(void) { return atomic_load(&live_bytes); }
size_t rf_alloc_peak_bytes(void) { return atomic_load(&peak_bytes); }
void rf_alloc_peak_reset(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }

static void add_bytes(size_t n) {
    size_t now = atomic_fetch_add(&live_bytes, n) + n;
    size_t peak = atomic_load(&peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {}
}

/* Returns 1 if this allocation must fail (injected fault). */
static int inject_failure(void) {
    long f = atomic_load(&fail_after);
    if (f < 0) return 0;
    while (f > 0) {
        if (atomic_compare_exchange_weak(&fail_after, &f, f - 1)) return 0;
        if (f < 0) return 0;
    }
    return 1;
}

static void *counted(void *p) {
    if (p) { atomic_fetch_add(&n_allocs, 1); atomic_fetch_add(&n_live, 1); add_bytes(malloc_usable_size(p)); }
    return p;
}

void *rf_malloc(size_t n) {
    if (inject_failure()) return NULL;
    return counted(malloc(n ? n : 1));
}

void *rf_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    if (inject_failure()) return NULL;
    size_t n = count * size;
    return counted(calloc(n ? n : 1, 1));
}

void *rf_realloc(void *p, size_t n) {
    if (!p) return rf_malloc(n);
    if (inject_failure()) return NULL;
    /* Counted like any allocation (fault-injection loops compare this count
     * with the n given to rf_alloc_fail_after); the live count is unchanged. */
    size_t old = malloc_usable_size(p);
    void *q = realloc(p, n ? n : 1);
    if (q) {
        atomic_fetch_add(&n_allocs, 1);
        atomic_fetch_sub(&live_bytes, old);
        add_bytes(malloc_usable_size(q));
    }
    return q;
}

void *rf_aligned_alloc(size_t align, size_t n) {
    if (inject_failure()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, n ? n : 1) != 0) return NULL;
    return counted(p);
}

void rf_free(void *p) {
    if (!p) return;
    atomic_fetch_sub(&n_live, 1);
    atomic_fetch_sub(&live_bytes, malloc_usable_size(p));
    free(p);
}

char *rf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = rf_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
