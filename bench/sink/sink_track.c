/* The (Message-ID, recipient) set: proves "delivered exactly once" across all
 * worker threads without a lock on the per-message path.
 *
 * A fixed power-of-two table of 64-bit keys with linear probing; a slot goes from 0
 * to its key by one compare-and-swap and never changes again, so a reader that sees
 * a key sees it for good, and two threads inserting the same key meet at the same
 * slot (the loser's CAS returns the winner's key: a duplicate). The table is never
 * resized (a lock-free resize is not worth it here): it is sized for max_entries at
 * load <= 0.5 and refuses new keys past that. Memory comes from mmap so that only
 * the pages that are touched count toward RSS. */
#include "sink.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct sink_track {
    _Atomic uint64_t *slots;
    size_t mask;
    size_t map_len;
    size_t max_entries;
    _Atomic size_t count;
};

/* splitmix64's finaliser: a cheap full-avalanche 64-bit mix. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t sink_hash(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = mix64(seed ^ (len * 0x9e3779b97f4a7c15ULL));
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) * 0x9e3779b97f4a7c15ULL;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    return mix64(h ^ w ^ ((uint64_t)len << 56));
}

uint64_t sink_pair_key(uint64_t msgid_hash, uint64_t rcpt_hash)
{
    return mix64(msgid_hash ^ mix64(rcpt_hash + 0x632be59bd9b4e019ULL));
}

struct sink_track *sink_track_new(size_t max_entries)
{
    if (max_entries == 0 || max_entries > ((size_t)1 << 40))
        return NULL;
    struct sink_track *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    size_t slots = 1024;
    while (slots < max_entries * 2)
        slots <<= 1;
    t->map_len = slots * sizeof(uint64_t);
    void *m = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        free(t);
        return NULL;
    }
    t->slots = m;
    t->mask = slots - 1;
    t->max_entries = max_entries;
    atomic_init(&t->count, 0);
    return t;
}

int sink_track_insert(struct sink_track *t, uint64_t key)
{
    if (key == 0)
        key = 1; /* 0 marks an empty slot */
    size_t i = (size_t)(key ^ (key >> 32)) & t->mask;
    for (;;) {
        uint64_t cur = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (cur == key)
            return 0;
        if (cur == 0) {
            /* Room is checked before claiming a slot; the count may overshoot by the
             * number of threads racing here, which the 2x table absorbs. */
            if (atomic_load_explicit(&t->count, memory_order_relaxed) >= t->max_entries)
                return -ENOSPC;
            uint64_t expect = 0;
            if (atomic_compare_exchange_strong_explicit(
                    &t->slots[i], &expect, key, memory_order_acq_rel, memory_order_acquire)) {
                atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
                return 1;
            }
            if (expect == key)
                return 0;
            /* Another key took the slot: keep probing. */
        }
        i = (i + 1) & t->mask;
    }
}

void sink_track_free(struct sink_track *t)
{
    if (!t)
        return;
    munmap((void *)t->slots, t->map_len);
    free(t);
}
