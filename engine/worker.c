/* engine/worker: one delivery thread. It owns a libev loop, a deliverer (SMTP
 * sessions, pools, TLS session cache, DNS resolver) and two rings: jobs in from
 * the queue thread, outcomes back. Nothing here blocks or takes a lock on the
 * per-job path; the only wake-ups are ev_async (jobs arrived, slots granted, stop) and the
 * notify callback (outcomes ready). */
#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ring.h"
#include "run_int.h"
#include "tls.h"

#define POP_BATCH 64

struct eng_worker {
    struct eng_worker_opts o;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake; /* jobs arrived, or stop requested */
    struct eng_ring *in, *out;
    struct eng_deliverer *deliverer;

    atomic_bool stop_requested;
    atomic_bool finished;
    _Atomic(const struct eng_conf *) reload; /* a new config to apply, or NULL */
    atomic_size_t sessions;                  /* the deliverer's, after the last event */
    bool shutting_down;                      /* worker thread only */

    /* Start-up handshake: the creator waits until the deliverer exists (or not). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int start_rc; /* 1 = pending */
};

/* Hands a task back to the queue thread. */
static void give_back(struct eng_worker *w, struct eng_task *t)
{
    t->owner = NULL;
    if (eng_ring_push(w->out, t)) {
        /* The queue thread bounds tasks per worker by the ring's size: reaching
         * this is a bug in that accounting, and dropping the task would lose it. */
        sv_error("worker %u: outcome ring full (bug)", w->o.id);
        abort();
    }
}

static void on_outcome(void *arg, struct eng_outcome *o)
{
    struct eng_task *t = arg;
    struct eng_worker *w = t->owner;
    t->outcome = o;
    atomic_store_explicit(&w->sessions, eng_deliverer_sessions(w->deliverer), memory_order_relaxed);
    give_back(w, t);
    w->o.notify(w->o.notify_arg);
}

static void on_shutdown_done(void *arg)
{
    struct eng_worker *w = arg;
    ev_break(w->loop, EVBREAK_ALL);
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct eng_worker *w = a->data;
    bool stop = atomic_load_explicit(&w->stop_requested, memory_order_acquire);
    /* A reload first: the jobs popped below already use it. */
    const struct eng_conf *conf = atomic_exchange_explicit(&w->reload, NULL, memory_order_acq_rel);
    if (conf && !w->shutting_down) {
        char err[256];
        if (eng_deliverer_reload(w->deliverer, conf, err, sizeof(err)))
            sv_error("worker %u: reload failed: %s; it keeps the old settings", w->o.id, err);
    }
    void *tasks[POP_BATCH];
    size_t n, returned = 0;
    while ((n = eng_ring_pop_batch(w->in, tasks, POP_BATCH)) > 0) {
        for (size_t i = 0; i < n; i++) {
            struct eng_task *t = tasks[i];
            t->owner = w;
            t->outcome = NULL;
            if (stop || w->shutting_down) {
                give_back(w, t); /* not started: stays pending in Redis */
                returned++;
                continue;
            }
            int rc = eng_deliver(w->deliverer, t->job, on_outcome, t);
            if (rc) {
                /* Left pending in Redis: the lease brings it back (rq_reclaim). */
                sv_error("worker %u: job %s (%s): cannot start delivery: %s", w->o.id, t->job->sid,
                         t->job->domain, strerror(-rc));
                give_back(w, t);
                returned++;
            }
        }
    }
    atomic_store_explicit(&w->sessions, eng_deliverer_sessions(w->deliverer), memory_order_relaxed);
    if (returned)
        w->o.notify(w->o.notify_arg);
    eng_deliverer_poll_slots(w->deliverer); /* the queue thread granted slots */
    if (stop && !w->shutting_down) {
        w->shutting_down = true;
        eng_deliverer_shutdown(w->deliverer, w->o.shutdown_timeout_ms, on_shutdown_done, w);
    }
}

static void pin(struct eng_worker *w)
{
    if (w->o.cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->o.cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc)
        sv_warn("worker %u: cannot pin to core %d: %s (running unpinned)", w->o.id, w->o.cpu,
                strerror(rc));
}

static void started(struct eng_worker *w, int rc)
{
    pthread_mutex_lock(&w->mu);
    w->start_rc = rc;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
    struct eng_worker *w = arg;
    pin(w);
    struct eng_deliverer_opts d = {
        .loop = w->loop,
        .conf = w->o.conf,
        .dns_cache = w->o.dns_cache,
        .worker_id = w->o.id,
        .conc = w->o.conc,
    };
    int rc = eng_deliverer_new(&d, &w->deliverer);
    started(w, rc);
    if (rc == 0) {
        ev_run(w->loop, 0);
        eng_deliverer_free(w->deliverer);
        w->deliverer = NULL;
    }
    tls_thread_cleanup();
    atomic_store_explicit(&w->finished, true, memory_order_release);
    w->o.notify(w->o.notify_arg);
    return NULL;
}

static void worker_destroy(struct eng_worker *w)
{
    if (w->loop)
        ev_loop_destroy(w->loop);
    eng_ring_free(w->in);
    eng_ring_free(w->out);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

int eng_worker_start(const struct eng_worker_opts *o, struct eng_worker **out)
{
    *out = NULL;
    struct eng_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->o = *o;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->start_rc = 1;
    atomic_init(&w->stop_requested, false);
    atomic_init(&w->finished, false);
    atomic_init(&w->reload, NULL);
    atomic_init(&w->sessions, 0);
    w->in = eng_ring_new(o->max_tasks);
    w->out = eng_ring_new(o->max_tasks);
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->in || !w->out || !w->loop) {
        sv_error("worker %u: out of memory", o->id);
        worker_destroy(w);
        return -ENOMEM;
    }
    ev_async_init(&w->wake, on_wake);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
        sv_error("worker %u: cannot start a thread: %s", o->id, strerror(rc));
        worker_destroy(w);
        return -rc;
    }
    pthread_mutex_lock(&w->mu);
    while (w->start_rc == 1)
        pthread_cond_wait(&w->cv, &w->mu);
    rc = w->start_rc;
    pthread_mutex_unlock(&w->mu);
    if (rc) {
        pthread_join(w->thread, NULL);
        worker_destroy(w);
        return rc;
    }
    *out = w;
    return 0;
}

int eng_worker_submit(struct eng_worker *w, struct eng_task *t)
{
    return eng_ring_push(w->in, t);
}

void eng_worker_kick(struct eng_worker *w)
{
    ev_async_send(w->loop, &w->wake);
}

size_t eng_worker_collect(struct eng_worker *w, struct eng_task **out, size_t max)
{
    void *p[POP_BATCH];
    size_t n = eng_ring_pop_batch(w->out, p, max < POP_BATCH ? max : POP_BATCH);
    for (size_t i = 0; i < n; i++)
        out[i] = p[i];
    return n;
}

void eng_worker_stop(struct eng_worker *w)
{
    atomic_store_explicit(&w->stop_requested, true, memory_order_release);
    ev_async_send(w->loop, &w->wake);
}

void eng_worker_reload(struct eng_worker *w, const struct eng_conf *conf)
{
    atomic_store_explicit(&w->reload, conf, memory_order_release);
    ev_async_send(w->loop, &w->wake);
}

size_t eng_worker_sessions(const struct eng_worker *w)
{
    return atomic_load_explicit(&((struct eng_worker *)w)->sessions, memory_order_relaxed);
}

bool eng_worker_finished(const struct eng_worker *w)
{
    return atomic_load_explicit(&((struct eng_worker *)w)->finished, memory_order_acquire);
}

void eng_worker_free(struct eng_worker *w)
{
    if (!w)
        return;
    pthread_join(w->thread, NULL);
    worker_destroy(w);
}
