/* Shared harness of the engine/deliver tests: a real redis-server (jobs come from
 * rq_claim), a real salvo-sink, a TOML config loaded with eng_conf_load, and a
 * deliverer on a libev loop run by the test. Header only (static functions). */
#ifndef SALVO_TEST_ENGINE_DELIVER_UTIL_H
#define SALVO_TEST_ENGINE_DELIVER_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deliver.h"
#include "dns.h"
#include "engine.h"
#include "redis_server.h"
#include "rq.h"
#include "test_sink_util.h"
#include "testutil.h"
#include "tls.h"

static struct tu_redis td_redis;
static char *td_dir; /* temp dir: configs, certificates */
static int td_queue_seq;

struct td {
    struct eng_conf conf;
    struct rq *q;
    char queue[32];
    struct ev_loop *loop;
    struct eng_dns_cache *cache;
    struct eng_deliverer *d;
    struct eng_outcome *out[64];
    size_t nout, want;
};

/* Loads `toml`; with port > 0 a [remote.sink] table pointing at 127.0.0.1:port
 * and next-hop = "sink" are prepended. */
static inline void td_setup(struct td *t, int port, const char *toml)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->queue, sizeof(t->queue), "q%d", ++td_queue_seq);
    char *text = NULL;
    if (port > 0)
        assert_true(asprintf(&text,
                             "[remote.sink]\naddress = \"127.0.0.1\"\nport = %d\n"
                             "[queue.outbound]\nnext-hop = \"sink\"\n%s",
                             port, toml) > 0);
    else
        assert_true(asprintf(&text, "%s", toml) > 0);
    char name[48];
    snprintf(name, sizeof(name), "%s.toml", t->queue);
    char *path = tu_write_file(td_dir, name, text);
    free(text);
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    int rc = eng_conf_load(path, &t->conf, &diag);
    cfg_diag_print(&diag, stderr);
    cfg_diag_free(&diag);
    free(path);
    assert_int_equal(rc, 0);
    struct rq_opts o = {.url = td_redis.url, .queue = t->queue, .consumer = "t"};
    assert_int_equal(rq_new(&o, &t->q), 0);
    assert_int_equal(rq_connect(t->q), 0);
    t->loop = ev_loop_new(EVFLAG_AUTO);
    t->cache = eng_dns_cache_new(100);
    struct eng_deliverer_opts dopts = {
        .loop = t->loop, .conf = &t->conf, .dns_cache = t->cache, .worker_id = 1};
    assert_int_equal(eng_deliverer_new(&dopts, &t->d), 0);
}

static inline void td_shut_done(void *arg)
{
    *(int *)arg = 1;
}

static inline void td_teardown(struct td *t)
{
    int done = 0;
    eng_deliverer_shutdown(t->d, 2000, td_shut_done, &done);
    for (int i = 0; i < 400 && !done; i++)
        ev_run(t->loop, EVRUN_ONCE);
    assert_int_equal(done, 1);
    eng_deliverer_free(t->d);
    eng_dns_cache_free(t->cache);
    ev_loop_destroy(t->loop);
    for (size_t i = 0; i < t->nout; i++)
        eng_outcome_free(t->out[i]);
    rq_free(t->q);
    eng_conf_free(&t->conf);
}

/* Enqueues one message to `rcpts` (NULL-terminated), one job per domain. */
/* Enqueues one message as `spec` says (job_rcpts 50 when unset) to `rcpts`
 * (NULL-terminated, no fields). */
static inline uint64_t td_enqueue_spec(struct td *t, struct rq_msg_spec spec,
                                       const char *const *rcpts)
{
    if (!spec.job_rcpts)
        spec.job_rcpts = 50;
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(t->q, &spec, &e, &id), 0);
    for (size_t i = 0; rcpts[i]; i++)
        assert_int_equal(rq_enq_add(e, rcpts[i], NULL), 0);
    assert_int_equal(rq_enq_end(e), 0);
    return id;
}

static inline uint64_t td_enqueue_from(struct td *t, const char *from, const char *const *rcpts,
                                       const char *body)
{
    return td_enqueue_spec(
        t, (struct rq_msg_spec){.from = from, .body = body, .body_len = strlen(body)}, rcpts);
}

static inline uint64_t td_enqueue(struct td *t, const char *const *rcpts, const char *body)
{
    return td_enqueue_from(t, "sender@src.test", rcpts, body);
}

static inline void td_cb(void *arg, struct eng_outcome *o)
{
    struct td *t = arg;
    assert_true(t->nout < 64);
    t->out[t->nout++] = o;
    if (t->nout >= t->want)
        ev_break(t->loop, EVBREAK_ALL);
}

static inline void td_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Claims every ready job and delivers them all at once; runs the loop until every
 * outcome is back (or 20 s). Returns the batch (caller frees); outcomes appended
 * to t->out from index *first. */
static inline struct rq_batch *td_run(struct td *t, size_t *first)
{
    struct rq_batch *b = NULL;
    int n = rq_claim(t->q, 64, &b);
    assert_true(n > 0);
    *first = t->nout;
    t->want = t->nout + (size_t)n;
    for (int i = 0; i < n; i++)
        assert_int_equal(eng_deliver(t->d, &b->jobs[i], td_cb, t), 0);
    ev_timer tm;
    ev_timer_init(&tm, td_timeout, 20., 0.);
    ev_timer_start(t->loop, &tm);
    if (t->nout < t->want)
        ev_run(t->loop, 0);
    ev_timer_stop(t->loop, &tm);
    assert_int_equal(t->nout, t->want);
    return b;
}

/* Reports every outcome from `first` on, flushes, and makes retries due now. */
static inline void td_report_and_promote(struct td *t, struct rq_batch *b, size_t first)
{
    for (size_t i = first; i < t->nout; i++)
        assert_int_equal(rq_report(t->q, t->out[i]->job, t->out[i]->res), 0);
    assert_int_equal(rq_flush(t->q), 0);
    rq_batch_free(b);
    int64_t next;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rq_promote(t->q, (int64_t)ts.tv_sec * 1000 + 10LL * 24 * 3600 * 1000, 1000, &next);
}

static inline uint64_t td_stat(struct ts_sink *s, const char *key)
{
    char buf[4096];
    assert_int_equal(ts_sink_stats(s, buf, sizeof(buf)), 0);
    return ts_json_u64(buf, key);
}

static inline int td_group_setup(void **state)
{
    (void)state;
    enum sv_log_level lvl;
    if (getenv("TD_LOG") && sv_log_level_parse(getenv("TD_LOG"), &lvl) == 0)
        sv_log_set_level(lvl);
    if (tu_redis_start(&td_redis, false, NULL) != 0)
        return -1;
    td_dir = tu_mkdtemp();
    return td_dir ? 0 : -1;
}

static inline int td_group_teardown(void **state)
{
    (void)state;
    tu_redis_stop(&td_redis);
    tu_rmtree(td_dir);
    free(td_dir);
    tls_thread_cleanup();
    return 0;
}

#endif
