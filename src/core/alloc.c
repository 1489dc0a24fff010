/* The allocation hook: every library allocation passes through here so tests
 * can make the n-th one fail (SQLite's fault-injection approach). The counters
 * are atomics, so concurrent threads can allocate. */
#include "raffle/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_after = -1;   /* <0: never fail */
static atomic_ulong n_allocs;
static atomic_long n_live;

void rf_alloc_fail_after(long n) { atomic_store(&fail_after, n); }
unsigned long rf_alloc_count(void) { return atomic_load(&n_allocs); }
long rf_alloc_live(void) { return atomic_load(&n_live); }

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
    if (p) { atomic_fetch_add(&n_allocs, 1); atomic_fetch_add(&n_live, 1); }
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
    void *q = realloc(p, n ? n : 1);
    if (q) atomic_fetch_add(&n_allocs, 1);
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
    free(p);
}

char *rf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = rf_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
