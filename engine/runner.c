/* engine/runner: the queue thread of `salvo run`.
 *
 * redisq is synchronous (hiredis blocking API, one `struct rq` per thread), so
 * instead of hiredis-async on libev the process has one dedicated queue thread
 * (the main thread) that drives it: it promotes due retries, claims about what
 * the workers can start soon (see claim()), routes each job by a hash of its domain to the worker
 * that owns that domain's connections and TLS sessions, collects outcomes,
 * reports and flushes them in batches, renews leases and reclaims jobs of dead
 * consumers. Workers never wait on Redis; a Redis round trip stalls only this
 * thread, and the rings absorb it.
 *
 * Nothing is lost: a job leaves Redis only through rq_report + rq_flush of its
 * final outcome. Jobs not finished at exit (or after kill -9) stay pending under
 * this consumer and are taken over after queue.lease by rq_reclaim. While Redis
 * is unreachable, outcomes stay buffered in the rq handle and are written after
 * the reconnect (backoff 100 ms doubling to 5 s). */
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "conc.h"
#include "run_int.h"
#include "tls.h"

/* Jobs a worker may hold (bounded in flight: at most 200 x 50 recipients); also
 * the size of its rings, so handing a task back can never fail. */
#define TASKS_PER_WORKER    200
#define CLAIM_MAX           200  /* jobs per rq_claim round trip */
#define CLAIM_HORIZON_MS    250  /* waiting jobs: about this long's worth of completions */
#define RATE_WINDOW_MS      200  /* completion rate: measured over windows this long */
#define FLUSH_EVERY_MS      20   /* reports wait at most this long for company ... */
#define FLUSH_AT_JOBS       64   /* ... or until this many are buffered */
#define TICK_S              0.02 /* housekeeping period */
#define IDLE_CLAIM_MS       100  /* after an empty claim, ask again this much later */
#define DRAIN_CHECK_MS      100
#define PROMOTE_MAX         1000
#define BACKOFF_MIN_MS      100
#define BACKOFF_MAX_MS      5000
#define DNS_CACHE_ENTRIES   65536
#define STOP_FLUSH_GRACE_MS 5000 /* after the shutdown bound: time to write the reports */

struct run_batch {
    struct rq_batch *b;
    size_t refs;
    struct eng_task tasks[];
};

struct counts {
    uint64_t delivered, deferred, bounced, dead;
    uint64_t transactions, connections, reused, tls_full, tls_resumed;
};

struct reloaded {
    struct eng_conf conf;
    struct reloaded *next;
};

struct runner {
    const struct eng_conf *conf;
    const struct eng_conf *conf0; /* the one started with: what a restart would change */
    struct eng_run_opts o;
    struct rq *q;
    struct ev_loop *loop;
    struct eng_dns_cache *dns;

    struct eng_worker **w;
    unsigned nw;
    size_t *given;                        /* tasks a worker holds */
    struct eng_task **bl_head, **bl_tail; /* tasks waiting for room at a worker */
    struct eng_task claimed;              /* sentinel: every task claimed and not back */
    size_t nclaimed;

    struct eng_limits *lim; /* NULL without [[queue.limiter.outbound]] */
    struct eng_conc *conc;  /* NULL without a limiter with concurrency */

    ev_async outcomes;
    ev_timer tick, reconnect, lim_wake;
    ev_signal sigterm, sigint, sighup;
    struct reloaded *reloaded; /* configs loaded on SIGHUP: kept until the end */

    bool redis_up;
    int backoff_ms;
    bool stopping;
    int64_t stop_deadline;
    int exit_code;

    /* Completed jobs per second (moving average over RATE_WINDOW_MS windows):
     * sizes how many claimed jobs may wait for a session. */
    double rate;
    uint64_t done, rate_done;
    int64_t rate_t;

    int64_t t_claim, t_promote, t_reclaim, t_touch, t_stats, t_flush, t_progress;
    double start;
    struct counts n;
    int64_t prog_t; /* time and delivered count of the last progress line */
    uint64_t prog_n;
};

static int64_t now_ms(void)
{
    return (int64_t)(ev_time() * 1000.0);
}

/* Called on worker threads. */
static void notify_outcomes(void *arg)
{
    struct runner *r = arg;
    ev_async_send(r->loop, &r->outcomes);
}

static void kick_worker(void *arg, unsigned which)
{
    struct runner *r = arg;
    if (which < r->nw && r->w[which])
        eng_worker_kick(r->w[which]);
}

/* --- Redis state ---------------------------------------------------------------- */

static bool redis_transient(int rc)
{
    return rc == -ECONNREFUSED || rc == -EIO || rc == -EROFS || rc == -ETIMEDOUT || rc == -EPROTO ||
           rc == -ENOMEM;
}

/* A failed Redis call: one log line, then reconnect with backoff. */
static void redis_down(struct runner *r, int rc)
{
    if (!r->redis_up)
        return;
    r->redis_up = false;
    r->backoff_ms = BACKOFF_MIN_MS;
    sv_warn("%s; %zu reports buffered; reconnecting", rq_error(r->q), rq_buffered_reports(r->q));
    (void)rc;
    ev_timer_set(&r->reconnect, r->backoff_ms / 1000.0, 0.0);
    ev_timer_start(r->loop, &r->reconnect);
}

static void on_reconnect(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct runner *r = t->data;
    int rc = rq_connect(r->q);
    if (rc == 0) {
        r->redis_up = true;
        sv_info("redis %s: connected", rq_address(r->q));
        /* Leases first: jobs in flight must not look abandoned to a reclaim. */
        r->t_touch = r->t_claim = r->t_promote = r->t_flush = 0;
        return;
    }
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    sv_debug("%s; next try in %d ms", rq_error(r->q), r->backoff_ms);
    ev_timer_set(&r->reconnect, r->backoff_ms / 1000.0, 0.0);
    ev_timer_start(r->loop, &r->reconnect);
}

/* --- tasks ------------------------------------------------------------------------ */

static void task_link(struct runner *r, struct eng_task *t)
{
    t->prev = r->claimed.prev;
    t->next = &r->claimed;
    r->claimed.prev->next = t;
    r->claimed.prev = t;
    r->nclaimed++;
}

static void task_release(struct runner *r, struct eng_task *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    r->nclaimed--;
    struct run_batch *b = t->batch;
    if (--b->refs == 0) {
        rq_batch_free(b->b);
        free(b);
    }
}

static void count_outcome(struct runner *r, const struct eng_outcome *o)
{
    for (size_t i = 0; i < o->job->nrcpt; i++) {
        switch (o->res[i].outcome) {
        case RQ_DELIVERED: r->n.delivered++; break;
        case RQ_DEFERRED: r->n.deferred++; break;
        case RQ_BOUNCED: r->n.bounced++; break;
        case RQ_DEAD: r->n.dead++; break;
        }
    }
    r->n.transactions += o->transactions;
    r->n.connections += o->connections_opened;
    r->n.reused += o->connections_reused;
    r->n.tls_full += o->tls_full;
    r->n.tls_resumed += o->tls_resumed;
}

/* Takes back what the workers returned: outcomes are reported (buffered). */
static void collect(struct runner *r)
{
    struct eng_task *back[64];
    for (unsigned i = 0; i < r->nw; i++) {
        size_t n;
        while ((n = eng_worker_collect(r->w[i], back, SV_ARRAY_LEN(back))) > 0) {
            for (size_t k = 0; k < n; k++) {
                struct eng_task *t = back[k];
                r->given[i]--;
                if (t->outcome) {
                    r->done++;
                    count_outcome(r, t->outcome);
                    int rc = rq_report(r->q, t->job, t->outcome->res);
                    if (rc && redis_transient(rc) && rq_buffered_reports(r->q) > 0)
                        redis_down(r, rc); /* kept buffered, written after the reconnect */
                    else if (rc)
                        sv_error("job %s: cannot record the outcome (%s); it will be "
                                 "delivered again after the lease",
                                 t->job->sid, rq_error(r->q));
                    eng_outcome_free(t->outcome);
                    t->outcome = NULL;
                }
                task_release(r, t);
            }
        }
    }
}

/* Moves backlog tasks to their workers while they have room. */
static void feed(struct runner *r)
{
    for (unsigned i = 0; i < r->nw; i++) {
        bool sent = false;
        while (r->bl_head[i] && r->given[i] < TASKS_PER_WORKER) {
            struct eng_task *t = r->bl_head[i];
            if (eng_worker_submit(r->w[i], t))
                break;
            r->bl_head[i] = t->qnext;
            if (!r->bl_head[i])
                r->bl_tail[i] = NULL;
            r->given[i]++;
            sent = true;
        }
        if (sent)
            eng_worker_kick(r->w[i]);
    }
}

static bool held(struct runner *r, const char *sid)
{
    for (struct eng_task *t = r->claimed.next; t != &r->claimed; t = t->next)
        if (strcmp(t->job->sid, sid) == 0)
            return true;
    return false;
}

static void backlog_push(struct runner *r, struct eng_task *t)
{
    t->qnext = NULL;
    if (r->bl_tail[t->worker])
        r->bl_tail[t->worker]->qnext = t;
    else
        r->bl_head[t->worker] = t;
    r->bl_tail[t->worker] = t;
}

static void lim_release(void *arg, struct eng_task *t)
{
    backlog_push(arg, t);
}

static void lim_drop(void *arg, struct eng_task *t)
{
    task_release(arg, t);
}

/* Gives the jobs of a claim to their workers' backlogs (or to the rate limits,
 * which hand them on when there are tokens). `recheck`: the claim came
 * from rq_reclaim, which may return jobs this process still works on (after the
 * queue thread was held up longer than the lease): those are not started twice. */
static void route(struct runner *r, struct rq_batch *b, bool recheck)
{
    struct run_batch *rb = calloc(1, sizeof(*rb) + b->njobs * sizeof(struct eng_task));
    if (!rb) {
        /* Left pending: the lease brings the jobs back. */
        sv_error("out of memory: %zu claimed jobs wait for their lease", b->njobs);
        rq_batch_free(b);
        return;
    }
    rb->b = b;
    rb->refs = 1; /* held while routing */
    for (size_t i = 0; i < b->njobs; i++) {
        if (recheck && held(r, b->jobs[i].sid))
            continue;
        rb->refs++;
        struct eng_task *t = &rb->tasks[i];
        t->job = &b->jobs[i];
        t->batch = rb;
        t->worker = sv_hash32(t->job->domain, strlen(t->job->domain)) % r->nw;
        task_link(r, t);
        if (r->lim && eng_limits_hold(r->lim, t, now_ms()))
            continue;
        backlog_push(r, t);
    }
    if (--rb->refs == 0) {
        rq_batch_free(b);
        free(rb);
    }
}

/* Drops tasks not handed to a worker yet: they stay pending in Redis. */
static void drop_backlog(struct runner *r)
{
    for (unsigned i = 0; i < r->nw; i++) {
        while (r->bl_head[i]) {
            struct eng_task *t = r->bl_head[i];
            r->bl_head[i] = t->qnext;
            task_release(r, t);
        }
        r->bl_tail[i] = NULL;
    }
}

/* --- the summary --------------------------------------------------------------------- */

static void print_summary(struct runner *r)
{
    double secs = ev_time() - r->start;
    if (secs < 0.001)
        secs = 0.001;
    printf("delivered %" PRIu64 ", deferred %" PRIu64 ", bounced %" PRIu64 ", transactions %" PRIu64
           ", connections %" PRIu64 " (reused %" PRIu64 "), tls full %" PRIu64 " resumed %" PRIu64
           ", in %.2fs (%.0f msgs/s)\n",
           r->n.delivered, r->n.deferred, r->n.bounced + r->n.dead, r->n.transactions,
           r->n.connections, r->n.reused, r->n.tls_full, r->n.tls_resumed, secs,
           (double)r->n.delivered / secs);
    fflush(stdout);
}

/* 1234567 -> "1,234,567" into buf (at least 27 bytes). */
static const char *group3(char *buf, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Once a second: this process's delivered count and rate (since the last line),
 * deferred, bounced; the whole queue's ready + scheduled and in-flight recipients
 * (one HMGET); the share of this process's TLS handshakes that resumed a session.
 * On a terminal one line rewritten in place; otherwise one line per second with
 * the pid, so the lines of several processes can be told apart. */
static void progress(struct runner *r, int64_t now, bool final)
{
    if (!r->o.progress || (!final && now < r->t_progress))
        return;
    r->t_progress = now + 1000;
    char queue[32] = "?", inflight[32] = "?";
    if (r->redis_up) {
        struct rq_stats st;
        int rc = rq_stats_get(r->q, 0, &st);
        if (rc == 0) {
            group3(queue, (uint64_t)(st.ready + st.scheduled));
            group3(inflight, (uint64_t)st.inflight);
        }
        if (rc && !final)
            redis_down(r, rc);
    }
    /* The last line's rate is the run's average (since the previous line it is
     * mostly the tail of the run). */
    double dt = final ? ev_time() - r->start : r->prog_t ? (double)(now - r->prog_t) / 1000.0 : 0.0;
    uint64_t n = final ? r->n.delivered : r->n.delivered - r->prog_n;
    uint64_t rate = dt > 0.05 ? (uint64_t)((double)n / dt + 0.5) : 0;
    r->prog_t = now;
    r->prog_n = r->n.delivered;
    char tls[16] = "-";
    uint64_t hs = r->n.tls_full + r->n.tls_resumed;
    if (hs)
        snprintf(tls, sizeof(tls), "%d%%", (int)(100.0 * (double)r->n.tls_resumed / (double)hs));
    char d[32], ps[32], df[32], b[32];
    if (r->o.progress_lines)
        fprintf(stderr, "salvo[%ld]: ", (long)getpid());
    else
        fputc('\r', stderr);
    fprintf(stderr,
            "%s delivered (%s/s), %s deferred, %s bounced, queue %s (%s in flight), TLS "
            "resumed %s%s",
            group3(d, r->n.delivered), group3(ps, rate), group3(df, r->n.deferred),
            group3(b, r->n.bounced + r->n.dead), queue, inflight, tls,
            final || r->o.progress_lines ? "\n" : "   ");
    fflush(stderr);
}

/* --- the loop ----------------------------------------------------------------------- */

static bool all_finished(struct runner *r)
{
    for (unsigned i = 0; i < r->nw; i++)
        if (!eng_worker_finished(r->w[i]))
            return false;
    return true;
}

static void finish(struct runner *r, int code)
{
    r->exit_code = code;
    ev_break(r->loop, EVBREAK_ALL);
}

static void stopping_step(struct runner *r, int64_t now)
{
    if (!all_finished(r))
        return;
    collect(r);
    if (rq_buffered_reports(r->q) == 0) {
        finish(r, EXIT_OK);
        return;
    }
    if (r->redis_up) {
        int rc = rq_flush(r->q);
        if (rc == 0) {
            finish(r, EXIT_OK);
            return;
        }
        redis_down(r, rc);
    }
    if (now > r->stop_deadline) {
        sv_error("%s; %zu reports not written: their jobs will be delivered again", rq_error(r->q),
                 rq_buffered_reports(r->q));
        finish(r, EXIT_RUNTIME);
    }
}

static void measure_rate(struct runner *r, int64_t now)
{
    if (r->rate_t == 0) {
        r->rate_t = now;
        r->rate_done = r->done;
        return;
    }
    int64_t dt = now - r->rate_t;
    if (dt < RATE_WINDOW_MS)
        return;
    double inst = (double)(r->done - r->rate_done) * 1000.0 / (double)dt;
    r->rate = r->rate > 0 ? 0.5 * r->rate + 0.5 * inst : inst;
    r->rate_t = now;
    r->rate_done = r->done;
}

/* Claims what the workers can start soon, not all they could hold: with every
 * process claiming its fill at once, the first one started would take a small
 * campaign whole and a slow one would sit on jobs others could do. A job is
 * waiting when its worker has no session for it (held tasks beyond the worker's
 * open sessions, plus the backlog). Allowed to wait: the completions of the last
 * CLAIM_HORIZON_MS, at least limits.connections per worker. Claims top that up
 * once half of it is gone, so a claim brings several jobs (round trips stay far
 * below one per job). */
static void claim(struct runner *r, int64_t now)
{
    /* Jobs held for rate-limit tokens have their own allowance of the same size, so
     * that jobs of other domains still flow past them. */
    size_t cap = (size_t)r->nw * TASKS_PER_WORKER;
    size_t held = eng_limits_held(r->lim), active = r->nclaimed - held;
    measure_rate(r, now);
    if (now < r->t_claim || active >= cap || held >= cap)
        return;
    size_t given = 0, waiting = 0;
    for (unsigned i = 0; i < r->nw; i++) {
        size_t s = eng_worker_sessions(r->w[i]);
        given += r->given[i];
        waiting += r->given[i] > s ? r->given[i] - s : 0;
    }
    waiting += active > given ? active - given : 0; /* the backlog */
    size_t conns = r->conf->out_connections > 0 ? (size_t)r->conf->out_connections : 1;
    size_t allow = (size_t)(r->rate * CLAIM_HORIZON_MS / 1000.0);
    if (allow < r->nw * conns)
        allow = r->nw * conns;
    if (allow > cap)
        allow = cap;
    if (active > 0 && waiting > allow / 2)
        return;
    size_t room = allow > waiting ? allow - waiting : 1;
    if (room > cap - active)
        room = cap - active;
    struct rq_batch *b = NULL;
    int n = rq_claim(r->q, room < CLAIM_MAX ? room : CLAIM_MAX, &b);
    if (n < 0) {
        redis_down(r, n);
        return;
    }
    r->t_claim = n > 0 ? 0 : now + IDLE_CLAIM_MS;
    if (n > 0)
        route(r, b, false);
}

static void housekeeping(struct runner *r, int64_t now)
{
    int rc;
    if (now >= r->t_promote) {
        int64_t next = -1;
        rc = rq_promote(r->q, now, PROMOTE_MAX, &next);
        if (rc < 0) {
            redis_down(r, rc);
            return;
        }
        if (rc >= PROMOTE_MAX)
            r->t_promote = now;
        else if (next < 0 || next > now + 1000)
            r->t_promote = now + 1000; /* other processes may schedule retries */
        else
            r->t_promote = next > now + 10 ? next : now + 10;
        if (rc > 0)
            r->t_claim = 0;
    }
    int64_t lease = r->conf->lease_ms;
    if (now >= r->t_touch) {
        r->t_touch = now + (lease / 3 > 100 ? lease / 3 : 100);
        if (r->nclaimed) {
            const char **sids = malloc(r->nclaimed * sizeof(*sids));
            if (sids) {
                size_t k = 0;
                for (struct eng_task *t = r->claimed.next; t != &r->claimed; t = t->next)
                    sids[k++] = t->job->sid;
                rc = rq_touch(r->q, sids, k);
                free(sids);
                if (rc < 0) {
                    redis_down(r, rc);
                    return;
                }
            }
        }
    }
    if (now >= r->t_reclaim && !r->stopping) {
        size_t cap = (size_t)r->nw * TASKS_PER_WORKER;
        int64_t every = lease / 4 < 200 ? 200 : lease / 4 > 10000 ? 10000 : lease / 4;
        r->t_reclaim = now + every;
        if (r->nclaimed < cap) {
            struct rq_batch *b = NULL;
            rc = rq_reclaim(r->q, lease, cap - r->nclaimed, &b);
            if (rc < 0) {
                redis_down(r, rc);
                return;
            }
            if (rc > 0) {
                sv_info("reclaimed %d jobs idle for more than %" PRId64 " ms", rc, lease);
                route(r, b, true);
            }
        }
    }
}

static void limit_step(struct runner *r)
{
    if (!r->lim)
        return;
    int64_t wake;
    int rc = eng_limits_step(r->lim, r->q, now_ms, lim_release, r, &wake);
    if (rc) {
        redis_down(r, rc);
        return;
    }
    ev_timer_stop(r->loop, &r->lim_wake);
    if (wake >= 0) {
        int64_t d = wake - now_ms();
        ev_timer_set(&r->lim_wake, d > 0 ? (double)d / 1000.0 : 0.0, 0.0);
        ev_timer_start(r->loop, &r->lim_wake);
    }
}

static void conc_step(struct runner *r, int64_t now)
{
    int rc = r->conc ? eng_conc_step(r->conc, r->q, now) : 0;
    if (rc)
        redis_down(r, rc);
}

static void drain_check(struct runner *r, int64_t now)
{
    if (!r->o.drain || r->nclaimed || rq_buffered_reports(r->q) || r->t_claim == 0 ||
        now < r->t_stats)
        return;
    r->t_stats = now + DRAIN_CHECK_MS;
    struct rq_stats st;
    int rc = rq_stats_get(r->q, 0, &st);
    if (rc) {
        redis_down(r, rc);
        return;
    }
    if (st.ready + st.scheduled + st.inflight == 0)
        finish(r, EXIT_OK);
}

static void pump(struct runner *r)
{
    int64_t now = now_ms();
    collect(r);
    if (r->stopping) {
        if (r->redis_up)
            conc_step(r, now); /* slots of transactions still finishing stay renewed */
        stopping_step(r, now);
        return;
    }
    feed(r);
    progress(r, now, false);
    if (!r->redis_up)
        return;
    size_t buffered = rq_buffered_reports(r->q);
    if (buffered && (buffered >= FLUSH_AT_JOBS || now >= r->t_flush || r->nclaimed == 0)) {
        int rc = rq_flush(r->q);
        if (rc) {
            redis_down(r, rc);
            return;
        }
        r->t_flush = now + FLUSH_EVERY_MS;
    }
    housekeeping(r, now);
    if (!r->redis_up)
        return;
    claim(r, now);
    if (!r->redis_up)
        return;
    limit_step(r);
    if (!r->redis_up)
        return;
    conc_step(r, now);
    if (!r->redis_up)
        return;
    feed(r);
    drain_check(r, now);
}

static void on_outcomes(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    pump(a->data);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    pump(t->data);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct runner *r = s->data;
    if (r->stopping) {
        /* Second signal: out at once. What was reported is flushed if Redis is up;
         * everything else stays pending in Redis (at-least-once). */
        collect(r);
        if (r->redis_up)
            rq_flush(r->q);
        progress(r, now_ms(), true);
        print_summary(r);
        fprintf(stderr, "salvo: stopped at once (signal %d); unfinished jobs stay queued\n",
                s->signum);
        _exit(128 + s->signum);
    }
    sv_info("signal %d: stopping (finishing transactions in flight, at most %" PRId64 " ms)",
            s->signum, r->conf->shutdown_timeout_ms);
    r->stopping = true;
    r->stop_deadline = now_ms() + r->conf->shutdown_timeout_ms + STOP_FLUSH_GRACE_MS;
    drop_backlog(r);
    eng_limits_drop(r->lim, lim_drop, r);
    ev_timer_stop(r->loop, &r->lim_wake);
    for (unsigned i = 0; i < r->nw; i++)
        eng_worker_stop(r->w[i]);
}

/* SIGHUP: re-reads the config file. Invalid: one line, the run goes on unchanged.
 * Valid: the workers apply its rules, limits, remotes and TLS trust to the
 * attempts they start from now on (and queue.lease applies to the leases renewed
 * from now on); settings of the process itself (Redis, queue, threads, shutdown
 * timeout, resolver, log level) need a restart. Old configs stay allocated until
 * exit, since jobs and sessions in flight may point into them. */
static void reload(struct runner *r)
{
    const char *path = r->o.conf_path;
    if (!path) {
        sv_warn("reload: no configuration file (built-in defaults); nothing to reload");
        return;
    }
    struct reloaded *n = calloc(1, sizeof(*n));
    if (!n) {
        fprintf(stderr, "salvo: reload failed: out of memory; the run goes on unchanged\n");
        return;
    }
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    int rc = eng_conf_load(path, &n->conf, &diag);
    if (rc) {
        const struct cfg_diag_entry *e = NULL;
        for (size_t i = 0; i < diag.len && !e; i++)
            if (diag.items[i].severity == CFG_ERROR)
                e = &diag.items[i];
        if (e && e->pos.line)
            fprintf(stderr, "salvo: reload failed: %s:%u:%u: %s; the run goes on unchanged\n",
                    e->pos.file ? e->pos.file : path, e->pos.line, e->pos.col, e->msg);
        else
            fprintf(stderr, "salvo: reload failed: %s: %s; the run goes on unchanged\n",
                    e && e->pos.file ? e->pos.file : path, e ? e->msg : "invalid");
        cfg_diag_free(&diag);
        eng_conf_free(&n->conf);
        free(n);
        return;
    }
    cfg_diag_print(&diag, stderr); /* warnings */
    cfg_diag_free(&diag);
    /* The workers cannot fail on the trust file after this check. */
    char err[256];
    struct tls_client *probe = NULL;
    struct tls_client_opts to = {.ca_file = n->conf.out_ca_file};
    if (tls_client_new(&to, &probe, err, sizeof(err)) < 0) {
        fprintf(stderr, "salvo: reload failed: %s: %s; the run goes on unchanged\n", path, err);
        eng_conf_free(&n->conf);
        free(n);
        return;
    }
    tls_client_free(probe);
    /* Against the start: a setting that needs a restart warns at every reload. */
    const struct eng_conf *old = r->conf0, *c = &n->conf;
    bool ns_same = old->n_nameservers == c->n_nameservers;
    for (size_t i = 0; ns_same && i < c->n_nameservers; i++)
        ns_same = strcmp(old->nameservers[i], c->nameservers[i]) == 0;
    /* The limiters' buckets and held jobs live in r->lim, and the caps and worker
     * rates in r->conc, both built once; a match expression is compared by
     * presence only (its text is not kept). */
    bool lim_same = old->n_limiters == c->n_limiters;
    for (size_t i = 0; lim_same && i < c->n_limiters; i++) {
        const struct eng_limiter *a = &old->limiters[i], *b = &c->limiters[i];
        lim_same = strcmp(a->id, b->id) == 0 && a->rate == b->rate &&
                   a->period_ms == b->period_ms && a->concurrency == b->concurrency &&
                   a->at_connect == b->at_connect && a->nkeys == b->nkeys &&
                   memcmp(a->keys, b->keys, a->nkeys * sizeof(a->keys[0])) == 0 &&
                   !a->match == !b->match;
    }
    const struct {
        const char *key;
        bool same;
    } fixed[] = {
        {"redis.url", strcmp(old->redis_url, c->redis_url) == 0 || getenv("SALVO_REDIS_URL")},
        {"redis.queue", strcmp(old->queue_name, c->queue_name) == 0},
        {"redis.password", (!old->redis_password && !c->redis_password) ||
                               (old->redis_password && c->redis_password &&
                                strcmp(old->redis_password, c->redis_password) == 0)},
        {"server.workers.threads", old->worker_threads == c->worker_threads},
        {"server.workers.pin", old->worker_pin == c->worker_pin},
        {"server.shutdown-timeout", old->shutdown_timeout_ms == c->shutdown_timeout_ms},
        {"resolver.nameservers", ns_same},
        {"log.level", old->log_level == c->log_level},
        {"queue.limiter.outbound", lim_same},
    };
    for (size_t i = 0; i < SV_ARRAY_LEN(fixed); i++)
        if (!fixed[i].same)
            sv_warn("reload: %s changed: restart salvo run to apply it", fixed[i].key);
    n->next = r->reloaded;
    r->reloaded = n;
    r->conf = c;
    for (unsigned i = 0; i < r->nw; i++)
        eng_worker_reload(r->w[i], c);
    sv_info("reload: %s applied to new delivery attempts", path);
}

static void on_sighup(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct runner *r = s->data;
    if (r->stopping)
        return;
    reload(r);
}

/* --- setup --------------------------------------------------------------------------- */

static int start_workers(struct runner *r)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    r->nw = r->conf->worker_threads > 0 ? (unsigned)r->conf->worker_threads : (unsigned)cores;
    r->w = calloc(r->nw, sizeof(*r->w));
    r->given = calloc(r->nw, sizeof(*r->given));
    r->bl_head = calloc(r->nw, sizeof(*r->bl_head));
    r->bl_tail = calloc(r->nw, sizeof(*r->bl_tail));
    if (!r->w || !r->given || !r->bl_head || !r->bl_tail)
        return -ENOMEM;
    /* Workers inherit a mask without the stop signals: they reach the queue
     * thread's ev_signal watchers only. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = 0;
    for (unsigned i = 0; i < r->nw && rc == 0; i++) {
        struct eng_worker_opts wo = {
            .id = i,
            .cpu = r->conf->worker_pin ? (int)(i % (unsigned)cores) : -1,
            .conf = r->conf,
            .dns_cache = r->dns,
            .max_tasks = TASKS_PER_WORKER,
            .shutdown_timeout_ms = (int)r->conf->shutdown_timeout_ms,
            .notify = notify_outcomes,
            .notify_arg = r,
            .conc = r->conc,
        };
        rc = eng_worker_start(&wo, &r->w[i]);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void stop_workers(struct runner *r)
{
    if (!r->w)
        return;
    for (unsigned i = 0; i < r->nw; i++)
        if (r->w[i])
            eng_worker_stop(r->w[i]);
    for (unsigned i = 0; i < r->nw; i++)
        eng_worker_free(r->w[i]);
}

static void cleanup(struct runner *r)
{
    stop_workers(r);
    /* Whatever is still claimed stays pending in Redis. */
    while (r->claimed.next && r->claimed.next != &r->claimed)
        task_release(r, r->claimed.next);
    free(r->w);
    free(r->given);
    free(r->bl_head);
    free(r->bl_tail);
    eng_dns_cache_free(r->dns);
    eng_limits_free(r->lim);
    eng_conc_free(r->conc, NULL);
    rq_free(r->q);
    while (r->reloaded) {
        struct reloaded *n = r->reloaded;
        r->reloaded = n->next;
        eng_conf_free(&n->conf);
        free(n);
    }
}

int eng_run(const struct eng_conf *conf, const struct eng_run_opts *o)
{
    struct runner run = {.conf = conf, .conf0 = conf, .o = *o, .exit_code = EXIT_OK};
    struct runner *r = &run;
    r->claimed.next = r->claimed.prev = &r->claimed;
    signal(SIGPIPE, SIG_IGN);
    /* First the loop and its signal watchers: a signal from now on is caught (and
     * handled once the loop runs), never the default action. */
    r->loop = ev_default_loop(EVFLAG_AUTO);
    if (!r->loop)
        return eng_fail(EXIT_RUNTIME, "cannot create the event loop");
    ev_signal_init(&r->sigterm, on_signal, SIGTERM);
    r->sigterm.data = r;
    ev_signal_start(r->loop, &r->sigterm);
    ev_signal_init(&r->sigint, on_signal, SIGINT);
    r->sigint.data = r;
    ev_signal_start(r->loop, &r->sigint);
    ev_signal_init(&r->sighup, on_sighup, SIGHUP);
    r->sighup.data = r;
    ev_signal_start(r->loop, &r->sighup);

    const char *env = getenv("SALVO_REDIS_URL");
    struct rq_opts qo = {
        .url = env && *env ? env : conf->redis_url,
        .queue = conf->queue_name,
        .password = conf->redis_password,
        .retention_ms = conf->retention_ms,
    };
    int rc = rq_new(&qo, &r->q);
    if (rc) {
        rc = eng_fail(rc == -ENOMEM ? EXIT_RUNTIME : EXIT_USER, "%s",
                      r->q ? rq_error(r->q) : strerror(-rc));
        rq_free(r->q);
        return rc;
    }
    rc = rq_connect(r->q);
    if (rc && !redis_transient(rc)) {
        rc = eng_fail(EXIT_RUNTIME, "%s", rq_error(r->q));
        rq_free(r->q);
        return rc;
    }
    r->redis_up = rc == 0;
    if (rc)
        sv_warn("%s; reconnecting", rq_error(r->q));

    if (tls_global_init()) {
        rq_free(r->q);
        return eng_fail(EXIT_RUNTIME, "tls: cannot initialise the TLS library");
    }
    r->dns = eng_dns_cache_new(DNS_CACHE_ENTRIES);
    bool rates = false, caps = false;
    for (size_t i = 0; i < conf->n_limiters; i++) {
        const struct eng_limiter *l = &conf->limiters[i];
        rates |= l->rate > 0 && !l->at_connect;
        caps |= l->concurrency > 0 || (l->rate > 0 && l->at_connect);
    }
    if (rates)
        r->lim = eng_limits_new(conf);
    if (caps)
        r->conc = eng_conc_new(&(struct eng_conc_opts){
            .conf = conf,
            .nworkers = conf->worker_threads > 0 ? (unsigned)conf->worker_threads
                        : sysconf(_SC_NPROCESSORS_ONLN) > 0
                            ? (unsigned)sysconf(_SC_NPROCESSORS_ONLN)
                            : 1,
            .lease_ms = conf->lease_ms,
            .wake_queue = notify_outcomes,
            .wake_worker = kick_worker,
            .arg = r,
        });
    if (!r->dns || (rates && !r->lim) || (caps && !r->conc)) {
        cleanup(r);
        return eng_fail(EXIT_RUNTIME, "out of memory");
    }
    ev_async_init(&r->outcomes, on_outcomes);
    r->outcomes.data = r;
    ev_async_start(r->loop, &r->outcomes);
    rc = start_workers(r);
    if (rc) {
        cleanup(r);
        return eng_fail(EXIT_RUNTIME, "cannot start the workers: %s", strerror(-rc));
    }
    sv_info("running: %u workers%s, queue '%s' at %s, lease %" PRId64 " ms%s", r->nw,
            conf->worker_pin ? " (pinned)" : "", conf->queue_name, rq_address(r->q), conf->lease_ms,
            o->drain ? ", until drained" : "");

    ev_timer_init(&r->tick, on_tick, 0.0, TICK_S);
    r->tick.data = r;
    ev_timer_start(r->loop, &r->tick);
    ev_timer_init(&r->reconnect, on_reconnect, 0.0, 0.0);
    r->reconnect.data = r;
    ev_timer_init(&r->lim_wake, on_tick, 0.0, 0.0);
    r->lim_wake.data = r;
    if (!r->redis_up) {
        r->redis_up = true; /* so redis_down() arms the backoff */
        redis_down(r, rc);
    }
    r->start = ev_time();

    for (size_t i = 0; i < conf->n_limiters; i++) {
        const struct eng_limiter *l = &conf->limiters[i];
        if (l->rate)
            sv_info("rate limit '%s': %" PRId64 " per %" PRId64 " ms%s%s", l->id, l->rate,
                    l->period_ms, l->match ? " (jobs that match)" : "",
                    l->at_connect ? ", taken by the workers per MX/address" : "");
        if (l->concurrency)
            sv_info("connection cap '%s': %" PRId64 " at once across the cluster%s", l->id,
                    l->concurrency, l->match ? " (connections that match)" : "");
    }
    ev_run(r->loop, 0);

    /* Drained, or stopped by a signal: the workers close their sessions and end;
     * their last outcomes are reported before the threads are freed. */
    for (unsigned i = 0; i < r->nw; i++)
        eng_worker_stop(r->w[i]);
    while (!all_finished(r))
        usleep(2000);
    collect(r);
    for (unsigned i = 0; i < r->nw; i++) {
        eng_worker_free(r->w[i]);
        r->w[i] = NULL;
    }
    eng_conc_free(r->conc, r->redis_up ? r->q : NULL); /* gives the slots back */
    r->conc = NULL;
    if (rq_buffered_reports(r->q) && (!r->redis_up || rq_flush(r->q))) {
        sv_error("%s; %zu reports not written: their jobs will be delivered again", rq_error(r->q),
                 rq_buffered_reports(r->q));
        r->exit_code = EXIT_RUNTIME;
    }
    progress(r, now_ms(), true);
    uint64_t rt = rq_round_trips(r->q);
    sv_info("stopped: %" PRIu64 " redis round trips (%.4f per recipient outcome)", rt,
            (double)rt / (double)(r->n.delivered + r->n.deferred + r->n.bounced + r->n.dead + 1));
    print_summary(r);
    ev_signal_stop(r->loop, &r->sigterm);
    ev_signal_stop(r->loop, &r->sigint);
    ev_signal_stop(r->loop, &r->sighup);
    ev_timer_stop(r->loop, &r->tick);
    ev_timer_stop(r->loop, &r->reconnect);
    ev_timer_stop(r->loop, &r->lim_wake);
    ev_async_stop(r->loop, &r->outcomes);
    cleanup(r);
    return r->exit_code;
}
