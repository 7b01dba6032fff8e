/* engine/ring: allocation of the SPSC ring (the operations are inline in ring.h).
 * Out of line on purpose: GCC 12 inlining the allocation into a caller that then
 * uses the atomics reports a bogus -Wstringop-overflow. */
#include "ring.h"

#include <stdlib.h>

struct eng_ring *eng_ring_new(size_t min_cap)
{
    size_t cap = 2;
    while (cap < min_cap) {
        if (cap > SIZE_MAX / 2 / sizeof(void *))
            return NULL;
        cap <<= 1;
    }
    void *mem = NULL;
    if (posix_memalign(&mem, ENG_RING_CACHELINE, sizeof(struct eng_ring)))
        return NULL;
    struct eng_ring *r = mem;
    r->slots = calloc(cap, sizeof(void *));
    if (!r->slots) {
        free(r);
        return NULL;
    }
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->tail_cache = 0;
    r->head_cache = 0;
    r->mask = cap - 1;
    return r;
}

void eng_ring_free(struct eng_ring *r)
{
    if (!r)
        return;
    free(r->slots);
    free(r);
}
