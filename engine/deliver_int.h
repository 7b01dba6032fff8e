/* engine/deliver internals shared by deliver.c and pool.c. */
#ifndef SALVO_ENG_DELIVER_INT_H
#define SALVO_ENG_DELIVER_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"
#include "smtp.h"

struct eng_slot;

/* Open sessions of one worker, keyed by "host [address]:port[/implicit]". One
 * list per deliverer: a worker talks to a bounded set of MX hosts. */
struct eng_pool_entry {
    char *key; /* owned */
    struct smtp_session *s;
    bool implicit_tls;
    struct eng_slot *slots[ENG_LIMITERS_MAX]; /* cluster-wide connection slots it holds */
    size_t nslots;
    struct eng_pool_entry *next;
};

struct eng_pool {
    struct eng_pool_entry *head;
    size_t n;
};

/* May a session serve an attempt with policy `want`? DESIGN.md hot-path rule 3:
 * `require` never goes over plaintext; a strict attempt never goes over a session
 * opened with allow-invalid-certs; plaintext serves `optional` only when the server
 * did not offer STARTTLS, and `disable` always. */
bool eng_pool_satisfies(const struct smtp_session *s, const struct smtp_policy *want);

/* An idle usable session for `key` satisfying `want`, or NULL. */
struct smtp_session *eng_pool_idle(struct eng_pool *p, const char *key,
                                   const struct smtp_policy *want);
/* A usable session for `key` satisfying `want` (the first found) that can take
 * `need` more transactions without carrying more than max_msgs in all (done plus
 * queued), or NULL. */
struct smtp_session *eng_pool_busy(struct eng_pool *p, const char *key,
                                   const struct smtp_policy *want, unsigned max_msgs,
                                   unsigned need);
/* The key `s` was added under (borrowed), or NULL. */
const char *eng_pool_key(const struct eng_pool *p, const struct smtp_session *s);
/* Are there usable sessions to `key`, all of them still connecting (none settled)? */
bool eng_pool_all_connecting(const struct eng_pool *p, const char *key);
/* Usable sessions open to `key`. */
size_t eng_pool_count(const struct eng_pool *p, const char *key);
/* Closes (QUIT) one idle session to `key` that does not satisfy `want`; true if one. */
bool eng_pool_evict_idle(struct eng_pool *p, const char *key);
/* Adds `s` under `key` (copied); 0 or -ENOMEM. */
int eng_pool_add(struct eng_pool *p, const char *key, struct smtp_session *s);
/* The entry of `s`, or NULL. */
struct eng_pool_entry *eng_pool_entry_of(struct eng_pool *p, const struct smtp_session *s);
/* Forgets `s` (from its closed callback). */
void eng_pool_remove(struct eng_pool *p, struct smtp_session *s);
/* Closes every session (graceful: QUIT the idle ones; else abort with `why`). */
void eng_pool_close_all(struct eng_pool *p, bool graceful, const char *why);

#endif
