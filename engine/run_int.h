/* engine/run_int.h: the parts of `salvo run` shared by the queue thread
 * (runner.c) and the worker threads (worker.c). Module-private.
 *
 *   queue thread                         worker i (pinned, own ev_loop)
 *   rq_claim -> task ---- jobs ring ----> eng_deliver()
 *            <- ev_async (outcomes) <---- outcomes ring <- eng_outcome
 *   rq_report, rq_flush
 *
 * Each ring has one producer and one consumer. A task travels to its worker and
 * back exactly once; the queue thread never gives a worker more tasks than its
 * outcome ring holds, so the worker's push back can never fail. */
#ifndef SALVO_ENG_RUN_INT_H
#define SALVO_ENG_RUN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "deliver.h"
#include "engine.h"
#include "rq.h"

struct run_batch;

/* One claimed job on its way through the process. */
struct eng_task {
    const struct rq_job *job;     /* borrowed from batch */
    struct run_batch *batch;      /* the claim it came with (queue thread only) */
    struct eng_outcome *outcome;  /* set by the worker; NULL: the job was not started
                                     (shutdown, or eng_deliver refused it) and stays
                                     pending in Redis for a later reclaim */
    struct eng_task *prev, *next; /* the queue thread's list of claimed tasks */
    struct eng_task *qnext;       /* the queue thread's backlog for a busy worker */
    unsigned worker;              /* index of the worker that owns job->domain */
    struct eng_worker *owner;     /* set by the worker while it holds the task */
    /* rate limits (runner_limit.c), queue thread only */
    struct eng_task *hnext;                  /* held for tokens, in claim order */
    struct lim_bucket *bk[ENG_LIMITERS_MAX]; /* the buckets it needs tokens of */
    uint32_t nbk, cost;                      /* cost: tokens per bucket (recipients) */
};

struct eng_worker;

struct eng_worker_opts {
    unsigned id;
    int cpu;                         /* core to pin to, -1 = not pinned */
    const struct eng_conf *conf;     /* borrowed; outlives the worker */
    struct eng_dns_cache *dns_cache; /* borrowed, shared */
    size_t max_tasks;                /* tasks the queue thread may have given it at once */
    int shutdown_timeout_ms;         /* bound for eng_deliverer_shutdown() */
    struct eng_conc *conc;           /* borrowed: cluster-wide connection caps, or NULL */
    void (*notify)(void *arg);       /* called on the worker thread after outcomes were pushed */
    void *notify_arg;
};

/* Starts the thread and waits until its deliverer is set up. Returns 0 and an
 * owned worker, or a negative errno (the reason was logged). */
int eng_worker_start(const struct eng_worker_opts *o, struct eng_worker **out);

/* Queue thread only. Hands `t` over (0), or -EAGAIN when the ring is full. Call
 * eng_worker_kick() after a batch of submissions. */
int eng_worker_submit(struct eng_worker *w, struct eng_task *t);
void eng_worker_kick(struct eng_worker *w);
/* Queue thread only: pops up to `max` returned tasks. */
size_t eng_worker_collect(struct eng_worker *w, struct eng_task **out, size_t max);

/* Asks for a graceful stop: tasks not started come back without outcome, those in
 * flight finish (bounded by shutdown_timeout_ms), pooled sessions are closed. */
void eng_worker_stop(struct eng_worker *w);
/* Queue thread: the worker applies `conf` (borrowed; it must outlive the worker)
 * to the attempts it starts from its next wake-up on (eng_deliverer_reload). */
void eng_worker_reload(struct eng_worker *w, const struct eng_conf *conf);
/* Queue thread: the worker's open sessions as of its last event (a gauge of the
 * tasks it can have in a transaction; the rest of what it holds waits). */
size_t eng_worker_sessions(const struct eng_worker *w);
/* Has the thread finished (after eng_worker_stop)? Any outcomes it left are still
 * to be collected. */
bool eng_worker_finished(const struct eng_worker *w);
/* Joins the thread (it must be stopped) and frees; tasks left in the rings are not
 * touched (collect first). NULL-safe. */
void eng_worker_free(struct eng_worker *w);

/* --- rate limits (runner_limit.c), queue thread only ------------------------- */

struct eng_limits;
struct lim_bucket;

/* Returns owned limits for conf->limiters (borrowed; conf outlives it), NULL on ENOMEM. */
struct eng_limits *eng_limits_new(const struct eng_conf *conf);
void eng_limits_free(struct eng_limits *l); /* NULL-safe; held tasks are not touched */
/* Holds `t` (borrowed until released or dropped) when a limiter applies to its job:
 * true. False: no limiter applies, hand it on. */
bool eng_limits_hold(struct eng_limits *l, struct eng_task *t, int64_t now_ms);
/* Hands held tasks that have tokens to release(); asks Redis (one round trip at
 * most) for the buckets short of tokens. *wake_ms: the clock() time worth another
 * step, or -1. Returns 0 or rq_limit_take()'s negative errno (tasks stay held). */
int eng_limits_step(struct eng_limits *l, struct rq *q, int64_t (*clock)(void),
                    void (*release)(void *arg, struct eng_task *t), void *arg, int64_t *wake_ms);
/* Hands every held task to drop() (graceful stop: they stay pending in Redis). */
void eng_limits_drop(struct eng_limits *l, void (*drop)(void *arg, struct eng_task *t), void *arg);
size_t eng_limits_held(const struct eng_limits *l); /* NULL-safe */
/* A rate limiter's grant size (tokens per request, at least one job's), slot
 * interval and GCRA tolerance; shared with the workers' rates (conc.c). */
void eng_limiter_params(const struct eng_limiter *lim, int64_t *batch, int64_t *interval_us,
                        int64_t *tolerance_us);

/* --- the queue thread (runner.c) ---------------------------------------------- */

struct eng_run_opts {
    bool drain;            /* exit once nothing is ready, scheduled or in flight */
    bool progress;         /* a progress line on stderr every second */
    bool progress_lines;   /* ... as plain lines with the pid (not a tty), not \r */
    const char *conf_path; /* borrowed: re-read on SIGHUP; NULL = built-in default */
};

/* Runs the engine with `conf` (borrowed) until drained or signalled. Prints the
 * summary line on stdout. Returns the process exit code. */
int eng_run(const struct eng_conf *conf, const struct eng_run_opts *o);

#endif
