/* engine/conc: what the workers ask of Redis: cluster-wide connection caps
 * ([[queue.limiter.outbound]] with `concurrency`) and the rates of limiters on mx /
 * remote_ip (token requests, the same way as slot wants). Module-private.
 *
 *   worker i (deliver.c)                        queue thread (runner.c)
 *   new connection -> eng_conc_take: a spare  |
 *     slot per bucket, or a want ---- inbox --+-> eng_conc_step: one rq_conc_run
 *   eng_conc_poll <-------- outbox[i] <-------+   (takes, renewals, releases)
 *   session closed -> spare; no waiter ------>+   every lease/3: renew held slots
 *     -> release ------------------ inbox ----+
 *
 * Workers never talk to Redis: the queue thread, which owns the process's Redis
 * connection, batches every slot operation of a step into one round trip. The
 * hand-offs are per connection, not per message, and unbounded in number (a
 * worker cannot wait for room), so they are mutex-guarded lists, not rings. */
#ifndef SALVO_ENG_CONC_H
#define SALVO_ENG_CONC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "rq.h"
#include "salvo_sched.h"

struct eng_conc;
struct eng_conc_local;
struct eng_slot;
struct conc_bucket;

struct eng_conc_opts {
    const struct eng_conf *conf; /* borrowed; outlives the broker */
    unsigned nworkers;
    int64_t lease_ms;                               /* a dead holder's slot frees itself after */
    void (*wake_queue)(void *arg);                  /* any thread: step soon */
    void (*wake_worker)(void *arg, unsigned which); /* queue thread: grants are ready */
    void *arg;
};

/* Returns an owned broker, or NULL on ENOMEM. */
struct eng_conc *eng_conc_new(const struct eng_conc_opts *o);
/* Queue thread: writes the step's slot operations in one round trip at most (more
 * only past 256 operations) and hands grants to the workers. Returns 0 or
 * rq_conc_run()'s negative errno (wants stay pending: jobs wait, fail-closed). */
int eng_conc_step(struct eng_conc *c, struct rq *q, int64_t now_ms);
/* After the workers are joined: gives back every slot still held (`q` may be NULL
 * when Redis is down: the leases free them) and frees the broker. NULL-safe. */
void eng_conc_free(struct eng_conc *c, struct rq *q);

/* --- worker side: one per deliverer, used on its loop thread only ------------- */

/* What a job waiting for slots holds: a reference on each bucket it waits on. */
struct eng_conc_wait {
    struct conc_bucket *bk[ENG_LIMITERS_MAX];
    size_t n;
};

/* The rate buckets one chunk of a job has paid for (64-bit hashes of their keys):
 * a fallback to another MX host or address pays only the buckets it adds. Zeroed
 * to start; h is NULL while inl has room. */
struct eng_conc_paid {
    uint64_t *h; /* owned, past ENG_LIMITERS_MAX buckets */
    size_t n, cap;
    uint64_t inl[ENG_LIMITERS_MAX];
};

/* Returns owned state of worker `which`, or NULL (ENOMEM). NULL `c`: NULL. */
struct eng_conc_local *eng_conc_local_new(struct eng_conc *c, unsigned which);
/* Gives back the spare slots (open sessions must have been closed). NULL-safe. */
void eng_conc_local_free(struct eng_conc_local *l);
/* A new connection for an attempt with `vars` (borrowed): true and the slots it
 * must hold in out[0..*n) (taken; give them to eng_conc_put when it closes), or
 * false: some bucket has no slot here; `w` now waits on the buckets without one
 * (asked for) and the caller queues the job until eng_conc_poll() says so. */
bool eng_conc_take(struct eng_conc_local *l, const struct rule_vars *vars, struct eng_conc_wait *w,
                   struct eng_slot **out, size_t *n);
/* Before a chunk of `cost` recipients is sent by an attempt with `vars`: true when
 * every worker-side rate (a limiter on mx / remote_ip) not in `paid` yet had the
 * tokens (spent, and added to `paid`), or false: `w` waits on the buckets short of
 * them (asked for); as eng_conc_take. */
bool eng_conc_pay(struct eng_conc_local *l, const struct rule_vars *vars, int64_t cost,
                  struct eng_conc_paid *paid, struct eng_conc_wait *w);
/* Frees what `p` owns (not `p`); it is zeroed, ready for another chunk. */
void eng_conc_paid_clear(struct eng_conc_paid *p);
/* A job stops waiting (started, handed back or freed). */
void eng_conc_unwait(struct eng_conc_local *l, struct eng_conc_wait *w);
/* Does `w` wait on the bucket of slot `s`? */
bool eng_conc_waits_for(const struct eng_conc_wait *w, const struct eng_slot *s);
/* A connection closed: its slots (taken) become spares for waiting jobs. */
void eng_conc_put(struct eng_conc_local *l, struct eng_slot **slots, size_t n);
/* Takes the grants the queue thread handed over; true when there were any (wake
 * the waiting jobs, then call eng_conc_trim). */
bool eng_conc_poll(struct eng_conc_local *l);
/* Gives back spares no job waits for and forgets idle buckets. */
void eng_conc_trim(struct eng_conc_local *l);

#endif
