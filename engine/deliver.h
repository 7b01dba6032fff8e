/* engine/deliver: one worker thread's delivery machinery. Given a claimed job (one
 * message, one recipient domain, up to N recipients), it evaluates the rules for
 * the attempt, routes (next-hop relay or MX via engine/dns), takes or opens a
 * pooled SMTP session that satisfies the attempt's TLS policy, runs the
 * transaction(s) and returns one outcome per recipient, ready for rq_report().
 *
 * Single-threaded: every function is called on the worker's loop thread, and
 * every callback runs there. Nothing here blocks. */
#ifndef SALVO_ENG_DELIVER_H
#define SALVO_ENG_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "dns.h"
#include "engine.h"
#include "rq.h"

struct ev_loop;
struct eng_deliverer;
struct eng_conc;

struct eng_deliverer_opts {
    struct ev_loop *loop;            /* borrowed: the worker's loop */
    const struct eng_conf *conf;     /* borrowed: rules are cloned per deliverer */
    struct eng_dns_cache *dns_cache; /* borrowed, shared by all workers */
    unsigned worker_id;              /* for logs */
    struct eng_conc *conc;           /* borrowed: cluster-wide connection caps, or NULL */
};

/* Returns 0 and an owned deliverer, or a negative errno with a logged reason
 * (e.g. the CA file cannot be read). */
int eng_deliverer_new(const struct eng_deliverer_opts *o, struct eng_deliverer **out);

/* The result of one job. The deliverer fills it and hands it over in the callback;
 * the receiver (typically another thread) owns it and frees it with
 * eng_outcome_free() after rq_report(job, res). */
struct eng_outcome {
    const struct rq_job *job; /* borrowed from the caller of eng_deliver() */
    struct rq_result *res;    /* job->nrcpt entries; their strings point into `arena` */
    struct sv_buf arena;      /* owned backing store for the strings of res[] */
    /* Facts for statistics and the final summary. */
    unsigned connections_opened; /* new TCP connections this job caused */
    unsigned connections_reused; /* transactions sent over an already open session */
    unsigned tls_full, tls_resumed;
    unsigned transactions; /* SMTP transactions (MAIL FROM ... DATA) completed */
};
void eng_outcome_free(struct eng_outcome *o); /* NULL-safe */

/* Called once per eng_deliver(), on the loop thread; takes ownership of `o`.
 * `o` is NULL when the job was handed back unstarted at eng_deliverer_shutdown():
 * nothing of it reached a server, so there is no outcome to report; the caller
 * leaves it pending in the queue (reclaimed later, no attempt counted). */
typedef void (*eng_deliver_cb)(void *arg, struct eng_outcome *o);

/* Starts delivering `job` (borrowed until the callback). The outcome of each
 * recipient:
 *   2xx                                    -> RQ_DELIVERED
 *   4xx, connection, io, tls, dns temp.    -> RQ_DEFERRED with retry_at_ms from
 *        queue.schedule.retry (the last interval repeats) and `error` the
 *        last_error class ("tls", "connection", "unexpected-reply", "io", "dns", ...)
 *        unless the next attempt would come after queue.schedule.expire -> RQ_BOUNCED
 *   5xx, null MX, no such domain           -> RQ_BOUNCED
 *   5xx greeting ("554 no SMTP service here", RFC 5321 3.1) from every address
 *        tried (the next MX is tried first)  -> RQ_BOUNCED with that reply
 * `reply` holds the remote reply or the local reason; `tls` the TLS facts
 * ("TLSv1.3 TLS_AES_128_GCM_SHA256 verified" / "none"). Never plaintext unless the
 * attempt's rules say starttls "disable", or "optional" and STARTTLS is not offered.
 * Returns 0 (cb will be called, possibly before this returns) or a negative errno
 * (cb will not be called). */
int eng_deliver(struct eng_deliverer *d, const struct rq_job *job, eng_deliver_cb cb, void *arg);

/* Takes the cluster-wide connection slots the queue thread granted (conc.h) and
 * lets the jobs waiting for them start. Loop thread. */
void eng_deliverer_poll_slots(struct eng_deliverer *d);

/* Number of jobs started and not yet called back. */
size_t eng_deliverer_busy(const struct eng_deliverer *d);
/* Number of sessions open or opening (busy or idle in the pool): how many jobs
 * could be in a transaction right now. */
size_t eng_deliverer_sessions(const struct eng_deliverer *d);

/* Graceful stop: no new jobs; jobs not started yet (routing, waiting for a
 * session, queued behind other transactions) are called back at once with a NULL
 * outcome; transactions in progress finish; pooled sessions get QUIT.
 * `done` runs (on the loop) once nothing is left open, or after `timeout_ms`, when
 * remaining sessions are aborted (their jobs' recipients come back RQ_DEFERRED with
 * error "connection" and reply "shutting down"). */
void eng_deliverer_shutdown(struct eng_deliverer *d, int timeout_ms, void (*done)(void *arg),
                            void *arg);
void eng_deliverer_free(struct eng_deliverer *d); /* NULL-safe; aborts what is left */

/* Configuration reload (loop thread): attempts started from now on use the rules,
 * limits, remotes and queue.outbound.tls.ca-file of `conf` (borrowed; it must
 * outlive the deliverer), with a new TLS context and session cache. Open sessions
 * stay; they are reused only when they satisfy the new attempt's policy. The
 * resolver is not changed. Returns 0, or a negative errno with `err` set (the old
 * settings stay). */
int eng_deliverer_reload(struct eng_deliverer *d, const struct eng_conf *conf, char *err,
                         size_t errlen);

/* Cumulative counters, for the summary and the benchmarks. */
struct eng_deliver_stats {
    uint64_t jobs, transactions, rcpt_delivered, rcpt_deferred, rcpt_bounced;
    uint64_t connections_opened, connections_reused, tls_full, tls_resumed;
};
void eng_deliverer_stats(const struct eng_deliverer *d, struct eng_deliver_stats *st);

#endif
