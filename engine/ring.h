/* engine/ring: a bounded single-producer/single-consumer ring of pointers, the
 * hand-off between the queue thread and a worker (jobs in, outcomes out).
 *
 * Lock-free with C11 acquire/release: the producer owns `head`, the consumer owns
 * `tail`; each reads the other's index with acquire ordering and publishes its own
 * with release ordering, so a slot's contents written before a push are visible
 * after the pop that sees it. The two indices live on separate cache lines (and
 * each side caches the other's last seen value) so producer and consumer do not
 * bounce one line between cores on every operation.
 *
 *   slots[0 .. cap-1]     cap a power of two; index & mask
 *   tail <= head <= tail + cap   (free-running 64-bit counters)
 *
 * Exactly one thread may push and exactly one thread may pop. */
#ifndef SALVO_ENG_RING_H
#define SALVO_ENG_RING_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define ENG_RING_CACHELINE 64

/* Explicit padding rather than alignas: the struct is allocated with
 * posix_memalign at a cache-line boundary, and GCC 12 misreads atomics on
 * over-aligned members of heap objects (-Wstringop-overflow false positive). */
struct eng_ring {
    /* Producer side. */
    _Atomic uint64_t head;
    uint64_t tail_cache; /* producer's last seen tail */
    char pad1[ENG_RING_CACHELINE - 2 * sizeof(uint64_t)];
    /* Consumer side. */
    _Atomic uint64_t tail;
    uint64_t head_cache; /* consumer's last seen head */
    char pad2[ENG_RING_CACHELINE - 2 * sizeof(uint64_t)];
    /* Read-only after creation. */
    uint64_t mask;
    void **slots;
};

/* Returns an owned ring holding at least `min_cap` pointers (rounded up to a power
 * of two, at least 2), or NULL (ENOMEM, or min_cap too large). */
struct eng_ring *eng_ring_new(size_t min_cap);
/* NULL-safe; the pointers still inside are not freed (the owner drains first). */
void eng_ring_free(struct eng_ring *r);

static inline size_t eng_ring_capacity(const struct eng_ring *r)
{
    return (size_t)r->mask + 1;
}

/* Producer only. Returns 0, or -EAGAIN when the ring is full. */
static inline int eng_ring_push(struct eng_ring *r, void *p)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h - r->tail_cache > r->mask) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h - r->tail_cache > r->mask)
            return -EAGAIN;
    }
    r->slots[h & r->mask] = p;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return 0;
}

/* Producer only: free slots right now (a lower bound: the consumer may free more). */
static inline size_t eng_ring_space(struct eng_ring *r)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
    return (size_t)(r->mask + 1 - (h - r->tail_cache));
}

/* Consumer only. Returns the oldest pointer, or NULL when the ring is empty (so
 * NULL itself cannot be pushed meaningfully). */
static inline void *eng_ring_pop(struct eng_ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t == r->head_cache) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t == r->head_cache)
            return NULL;
    }
    void *p = r->slots[t & r->mask];
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return p;
}

/* Consumer only: pops up to `max` pointers into out[] with one release store.
 * Returns how many. */
static inline size_t eng_ring_pop_batch(struct eng_ring *r, void **out, size_t max)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (r->head_cache - t < max)
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t n = (size_t)(r->head_cache - t);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++)
        out[i] = r->slots[(t + i) & r->mask];
    if (n)
        atomic_store_explicit(&r->tail, t + n, memory_order_release);
    return n;
}

/* Consumer only: is there nothing to pop right now? */
static inline int eng_ring_empty(struct eng_ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    return t == atomic_load_explicit(&r->head, memory_order_acquire);
}

#endif
