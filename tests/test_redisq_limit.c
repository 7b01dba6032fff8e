/* redisq/rq_limit.c against a real redis-server: two connections (two "processes")
 * ask one bucket for tokens as fast as they can; what they are granted together
 * never beats the rate (plus the tolerance and one grant), and comes within 10% of
 * it; grants are whole, keys carry the queue's hash tag and expire when idle. */
#include "test_redisq_util.h"

static struct tu_redis srv;

static int setup(void **state)
{
    (void)state;
    return tu_redis_start(&srv, false, NULL);
}

static int teardown(void **state)
{
    (void)state;
    tu_redis_stop(&srv);
    return 0;
}

static struct rq_limit_req req(const char *key, int64_t iv, int64_t tol, int64_t want)
{
    return (struct rq_limit_req){
        .key = key, .key_len = strlen(key), .interval_us = iv, .tolerance_us = tol, .want = want};
}

/* 200/1s (one slot per 5 ms), a 100 ms tolerance, grants of 10: two handles
 * alternate for 1.5 s. */
static void two_connections_share_the_rate(void **state)
{
    (void)state;
    struct rq *a = tq_open(&srv, "lim", "a"), *b = tq_open(&srv, "lim", "b");
    const int64_t iv = 5000, tol = 100000, want = 10;
    int64_t got[2] = {0, 0}, t0 = tq_now_ms(), end = t0 + 1500;
    int64_t asks = 0;
    while (tq_now_ms() < end) {
        for (int i = 0; i < 2; i++) {
            struct rq_limit_req r = req("per-domain:example.org", iv, tol, want);
            assert_int_equal(rq_limit_take(i ? b : a, &r, 1), 0);
            assert_true(r.granted == 0 || r.granted == want); /* all or nothing */
            if (r.granted)
                assert_true(r.valid_ms >= 1 && r.valid_ms <= (tol + want * iv) / 1000 + 1);
            else
                assert_true(r.retry_ms >= 0 && r.retry_ms <= want * iv / 1000 + 1);
            got[i] += r.granted;
            asks++;
        }
        tq_sleep_ms(1);
    }
    double secs = (double)(tq_now_ms() - t0) / 1000.0;
    int64_t total = got[0] + got[1];
    print_message("granted %lld + %lld in %.3f s (%.1f/s, limit 200/s) over %lld asks\n",
                  (long long)got[0], (long long)got[1], secs, (double)total / secs,
                  (long long)asks);
    /* Upper bound: slots elapsed + the tolerance + one grant. */
    assert_true(total <= (int64_t)(secs * 200.0) + tol / iv + want);
    assert_true((double)total >= 0.9 * secs * 200.0);
    assert_true(got[0] > 0 && got[1] > 0);
    /* The key lives under the queue's hash tag and has a TTL. */
    long long ttl = tq_cli_int(&srv, "PTTL", "salvo:{lim}:limit:per-domain:example.org", NULL);
    assert_true(ttl > 0 && ttl <= 1000 + (tol + want * iv) / 1000 + 50);
    rq_free(a);
    rq_free(b);
}

/* Several buckets in one round trip; a spent bucket does not hold up the others,
 * and answers when to ask again. A job bigger than the tolerance is still granted
 * whole (once the bucket is not ahead), then makes the bucket wait for its slots. */
static void many_buckets_one_round_trip(void **state)
{
    (void)state;
    struct rq *q = tq_open(&srv, "lim2", "a");
    /* 10 per second: 100 ms slots; tolerance 0 (no burst beyond one grant) */
    struct rq_limit_req r[3] = {req("x:a", 100000, 0, 1), req("x:b", 100000, 0, 5),
                                req("x:c", 100000, 0, 50)};
    uint64_t rt = rq_round_trips(q);
    assert_int_equal(rq_limit_take(q, r, 3), 0);
    assert_int_equal(rq_round_trips(q), rt + 1);
    assert_int_equal(r[0].granted, 1);
    assert_int_equal(r[1].granted, 5);
    assert_int_equal(r[2].granted, 50);
    assert_true(r[2].retry_ms > 4900 && r[2].retry_ms <= 5000);
    /* again at once: a is 100 ms ahead, b 500 ms, c 5 s: nothing */
    assert_int_equal(rq_limit_take(q, r, 3), 0);
    assert_int_equal(r[0].granted, 0);
    assert_int_equal(r[1].granted, 0);
    assert_int_equal(r[2].granted, 0);
    assert_true(r[0].retry_ms > 0 && r[0].retry_ms <= 100);
    assert_true(r[1].retry_ms > 300 && r[1].retry_ms <= 500);
    tq_sleep_ms((int)r[0].retry_ms + 5);
    struct rq_limit_req one = req("x:a", 100000, 0, 1);
    assert_int_equal(rq_limit_take(q, &one, 1), 0);
    assert_int_equal(one.granted, 1);
    /* bad requests are refused before Redis sees them */
    struct rq_limit_req bad = req("x:a", 0, 0, 1);
    assert_int_equal(rq_limit_take(q, &bad, 1), -EINVAL);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_connections_share_the_rate),
        cmocka_unit_test(many_buckets_one_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
