/* engine/dns_cache: the process-wide TTL cache of DNS record sets.
 *
 * Every worker's resolver reads it for each delivery attempt, so it is split in
 * shards, each with its own mutex, hash table and LRU list: two workers contend
 * only when their names hash to the same shard, and a hit costs one short
 * critical section (find, move to the LRU head, copy out). Entries are copied out
 * rather than shared, so an eviction never pulls records from under a reader. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns_int.h"

#define CACHE_SHARDS 16

struct cache_entry {
    struct cache_entry *hnext;               /* hash chain */
    struct cache_entry *lru_prev, *lru_next; /* head = most recently used */
    uint64_t hash;
    uint16_t qtype;
    double expires; /* CLOCK_MONOTONIC seconds */
    char name[DNS_NAME_MAX + 1];
    enum dns_rr_status status;
    size_t n;
    struct dns_rr rr[]; /* n records */
};

struct cache_shard {
    pthread_mutex_t mu;
    struct cache_entry **buckets;
    size_t nbuckets; /* power of two */
    struct cache_entry *lru_head, *lru_tail;
    size_t count, max;
};

struct eng_dns_cache {
    struct cache_shard shard[CACHE_SHARDS];
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* FNV-1a over qtype and name. */
static uint64_t key_hash(uint16_t qtype, const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    h = (h ^ (qtype & 0xff)) * 1099511628211ULL;
    h = (h ^ (qtype >> 8)) * 1099511628211ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

struct eng_dns_cache *eng_dns_cache_new(size_t max_entries)
{
    if (max_entries < CACHE_SHARDS)
        max_entries = CACHE_SHARDS;
    struct eng_dns_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    size_t per = (max_entries + CACHE_SHARDS - 1) / CACHE_SHARDS;
    size_t nb = 8;
    while (nb < per)
        nb <<= 1;
    size_t i;
    for (i = 0; i < CACHE_SHARDS; i++) {
        struct cache_shard *s = &c->shard[i];
        s->buckets = calloc(nb, sizeof(*s->buckets));
        if (!s->buckets)
            goto fail;
        s->nbuckets = nb;
        s->max = per;
        pthread_mutex_init(&s->mu, NULL);
    }
    return c;
fail:
    while (i-- > 0) {
        free(c->shard[i].buckets);
        pthread_mutex_destroy(&c->shard[i].mu);
    }
    free(c);
    return NULL;
}

void eng_dns_cache_free(struct eng_dns_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < CACHE_SHARDS; i++) {
        struct cache_shard *s = &c->shard[i];
        struct cache_entry *e = s->lru_head;
        while (e) {
            struct cache_entry *next = e->lru_next;
            free(e);
            e = next;
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}

static void lru_unlink(struct cache_shard *s, struct cache_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        s->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_head(struct cache_shard *s, struct cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = e;
    s->lru_head = e;
    if (!s->lru_tail)
        s->lru_tail = e;
}

/* Unlinks e from its hash chain and the LRU list and frees it. */
static void entry_drop(struct cache_shard *s, struct cache_entry *e)
{
    struct cache_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    free(e);
}

static struct cache_entry *shard_find(struct cache_shard *s, uint64_t h, uint16_t qtype,
                                      const char *name)
{
    for (struct cache_entry *e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->qtype == qtype && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int dns_cache_get(struct eng_dns_cache *c, uint16_t qtype, const char *name, struct dns_rrset *out)
{
    if (!c)
        return -ENOENT;
    uint64_t h = key_hash(qtype, name);
    struct cache_shard *s = &c->shard[h % CACHE_SHARDS];
    double now = mono_now();
    int rc = -ENOENT;
    pthread_mutex_lock(&s->mu);
    struct cache_entry *e = shard_find(s, h, qtype, name);
    if (e && e->expires <= now) {
        entry_drop(s, e);
        e = NULL;
    }
    if (e) {
        lru_unlink(s, e);
        lru_push_head(s, e);
        out->status = e->status;
        out->n = e->n;
        memcpy(out->rr, e->rr, e->n * sizeof(e->rr[0]));
        rc = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void dns_cache_put(struct eng_dns_cache *c, uint16_t qtype, const char *name,
                   const struct dns_rrset *rs, uint32_t ttl)
{
    if (!c || ttl == 0 || strlen(name) > DNS_NAME_MAX)
        return;
    size_t n = rs->n > DNS_MAX_RR ? DNS_MAX_RR : rs->n;
    struct cache_entry *ne = malloc(sizeof(*ne) + n * sizeof(ne->rr[0]));
    if (!ne)
        return; /* a cache that cannot grow just misses */
    uint64_t h = key_hash(qtype, name);
    ne->hnext = ne->lru_prev = ne->lru_next = NULL;
    ne->hash = h;
    ne->qtype = qtype;
    ne->expires = mono_now() + ttl;
    strcpy(ne->name, name);
    ne->status = rs->status;
    ne->n = n;
    memcpy(ne->rr, rs->rr, n * sizeof(ne->rr[0]));

    struct cache_shard *s = &c->shard[h % CACHE_SHARDS];
    pthread_mutex_lock(&s->mu);
    struct cache_entry *old = shard_find(s, h, qtype, name);
    if (old)
        entry_drop(s, old);
    /* Full: the least recently used entries make room. */
    while (s->count >= s->max && s->lru_tail)
        entry_drop(s, s->lru_tail);
    struct cache_entry **b = &s->buckets[h & (s->nbuckets - 1)];
    ne->hnext = *b;
    *b = ne;
    lru_push_head(s, ne);
    s->count++;
    pthread_mutex_unlock(&s->mu);
}
