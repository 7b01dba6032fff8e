/* redis-server killed -9 and restarted mid-way (AOF, appendfsync always): every
 * acknowledged write survives, the library reports the outage with the address,
 * reconnects, and every recipient is delivered exactly once in the end. */
#include "test_redisq_util.h"

static struct tu_redis srv;

static int setup(void **state)
{
    (void)state;
    return tu_redis_start(&srv, true, NULL);
}

static int teardown(void **state)
{
    (void)state;
    tu_redis_stop(&srv);
    return 0;
}

enum { N = 5000 };
static unsigned char delivered[N];

static void deliver(struct rq *q, const struct rq_job *j)
{
    for (size_t k = 0; k < j->nrcpt; k++) {
        int i = tq_index(j->rcpt[k].addr);
        assert_int_equal(delivered[i], 0);
        delivered[i] = 1;
    }
    tq_report_all(q, j, RQ_DELIVERED, 0, NULL);
}

static void kill9_restart_loses_nothing(void **state)
{
    (void)state;
    struct rq *q = tq_open(&srv, "crash", "c1");
    tq_enqueue(q, N, 10); /* 100 jobs of 50 */
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 40, &b), 40);
    for (int i = 0; i < 20; i++)
        deliver(q, &b->jobs[i]);
    int64_t due = tq_now_ms() + 500;
    for (int i = 20; i < 30; i++)
        tq_report_all(q, &b->jobs[i], RQ_DEFERRED, due, "conn");
    assert_int_equal(rq_flush(q), 0);
    /* Jobs 30..34 reported but not flushed when Redis dies; 35..39 never reported. */
    for (int i = 30; i < 35; i++)
        deliver(q, &b->jobs[i]);
    struct rq_stats before;
    assert_int_equal(rq_stats_get(q, 0, &before), 0);
    assert_int_equal(before.delivered, 1000);
    assert_int_equal(before.scheduled, 500);
    assert_int_equal(before.inflight, 500);
    assert_int_equal(before.ready, 3000);

    tu_redis_kill9(&srv);
    int rc = rq_flush(q);
    assert_true(rc == -EIO || rc == -ECONNREFUSED);
    char want[64];
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: ", srv.port);
    assert_non_null(strstr(rq_error(q), want));
    assert_int_equal(rq_buffered_reports(q), 5);
    assert_int_equal(rq_connect(q), -ECONNREFUSED);
    assert_non_null(strstr(rq_error(q), "connection refused"));

    assert_int_equal(tu_redis_restart(&srv), 0);
    assert_int_equal(rq_connect(q), 0);
    struct rq_stats after;
    assert_int_equal(rq_stats_get(q, 0, &after), 0);
    assert_memory_equal(&before, &after, sizeof(before));
    /* The buffered reports were kept and go through now. */
    assert_int_equal(rq_flush(q), 0);
    assert_int_equal(rq_buffered_reports(q), 0);

    /* Jobs 35..39 were claimed by a consumer that is gone: reclaim them. */
    struct rq *q2 = tq_open(&srv, "crash", "c2");
    struct rq_batch *rb;
    assert_int_equal(rq_reclaim(q2, 0, 100, &rb), 5);
    for (size_t i = 0; i < rb->njobs; i++)
        deliver(q2, &rb->jobs[i]);
    assert_int_equal(rq_flush(q2), 0);
    rq_batch_free(rb);
    rq_batch_free(b);

    /* Second crash in the middle of draining. */
    assert_int_equal(rq_claim(q2, 10, &rb), 10);
    for (size_t i = 0; i < rb->njobs; i++)
        deliver(q2, &rb->jobs[i]);
    assert_int_equal(rq_flush(q2), 0);
    rq_batch_free(rb);
    tu_redis_kill9(&srv);
    assert_int_equal(tu_redis_restart(&srv), 0);
    assert_int_equal(rq_connect(q2), 0);

    while (tq_now_ms() < due)
        tq_sleep_ms(50);
    assert_int_equal(rq_promote(q2, tq_now_ms(), 100, NULL), 10);
    int got;
    while ((got = rq_claim(q2, 16, &rb)) > 0) {
        for (size_t i = 0; i < rb->njobs; i++)
            deliver(q2, &rb->jobs[i]);
        assert_int_equal(rq_flush(q2), 0);
        rq_batch_free(rb);
    }
    assert_int_equal(got, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(delivered[i], 1);
    tq_stats(q2, 0, 0, 0, 0, N, 0, 0);
    struct rq_stats s;
    assert_int_equal(rq_stats_get(q2, 0, &s), 0);
    assert_int_equal(s.duplicates, 0);
    rq_free(q2);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill9_restart_loses_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
