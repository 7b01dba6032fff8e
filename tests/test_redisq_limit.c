/* redisq/rq_limit.c against a real redis-server: two connections (two "processes")
 * ask one bucket for tokens as fast as they can; what they are granted together
 * never beats the rate (plus the tolerance and one grant), and comes within 10% of
 * it; grants are whole, keys carry the queue's hash tag and expire when idle. */
#include "test_redisq_util.h"

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
    struct rq *a = tq_open(&tu_srv, "lim", "a"), *b = tq_open(&tu_srv, "lim", "b");
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
    long long ttl = tq_cli_int(&tu_srv, "PTTL", "salvo:{lim}:limit:per-domain:example.org", NULL);
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
    struct rq *q = tq_open(&tu_srv, "lim2", "a");
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

/* --- concurrency caps (rq_conc_run) --------------------------------------------- */

static struct rq_conc_op take(const char *key, const char *member, int64_t cap, int64_t lease)
{
    return (struct rq_conc_op){
        .key = key, .key_len = strlen(key), .member = member, .cap = cap, .lease_ms = lease};
}

static struct rq_conc_op give(const char *key, const char *member)
{
    return (struct rq_conc_op){
        .release = true, .key = key, .key_len = strlen(key), .member = member};
}

/* Two connections take and give back slots of one bucket of 3 in a pseudo-random
 * order: a take succeeds exactly when fewer than 3 are held in all, so the two
 * together never hold more than 3. */
static void conc_cap_is_never_exceeded(void **state)
{
    (void)state;
    struct rq *h[2] = {tq_open(&tu_srv, "conc", "a"), tq_open(&tu_srv, "conc", "b")};
    const char *key = "per-mx:mx.example.org";
    bool held[2][4] = {{false}};
    char names[2][4][16];
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 4; k++)
            snprintf(names[p][k], sizeof(names[p][k]), "p%d:0:%d", p, k);
    unsigned seed = 12345, takes = 0, refused = 0;
    for (int it = 0; it < 2000; it++) {
        seed = seed * 1103515245u + 12345u;
        int p = (int)((seed >> 16) & 1), k = (int)((seed >> 17) & 3);
        int total = 0;
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 4; b++)
                total += held[a][b];
        struct rq_conc_op op =
            held[p][k] ? give(key, names[p][k]) : take(key, names[p][k], 3, 60000);
        assert_int_equal(rq_conc_run(h[p], &op, 1), 0);
        if (held[p][k]) {
            assert_int_equal(op.result, 1);
            held[p][k] = false;
        } else {
            assert_int_equal(op.result, total < 3);
            held[p][k] = op.result;
            takes += op.result;
            refused += !op.result;
        }
        assert_true(tq_cli_int(&tu_srv, "ZCARD", "salvo:{conc}:conc:per-mx:mx.example.org", NULL) <=
                    3);
    }
    print_message("%u slots taken, %u refused at the cap\n", takes, refused);
    assert_true(takes > 100 && refused > 100);
    /* A holder renews its slots in one round trip; a renewal is a take that finds
     * itself, so it succeeds at the cap. */
    struct rq_conc_op ops[4];
    size_t n = 0;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 4; k++)
            if (held[p][k])
                ops[n++] = take(key, names[p][k], 3, 60000);
    uint64_t rt = rq_round_trips(h[0]);
    assert_int_equal(rq_conc_run(h[0], ops, n), 0);
    assert_int_equal(rq_round_trips(h[0]), rt + 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ops[i].result, 1);
    rq_free(h[0]);
    rq_free(h[1]);
}

/* A holder that dies keeps its slots until their lease ends; then they are free
 * for the others, and its own late renewal finds the bucket full. */
static void conc_expiry_frees_a_dead_holders_slots(void **state)
{
    (void)state;
    struct rq *a = tq_open(&tu_srv, "conc2", "a"), *b = tq_open(&tu_srv, "conc2", "b");
    const char *key = "per-domain:example.org";
    struct rq_conc_op ops[3] = {take(key, "a:0:1", 2, 400), take(key, "a:0:2", 2, 400),
                                take(key, "a:0:3", 2, 400)};
    assert_int_equal(rq_conc_run(a, ops, 3), 0);
    assert_int_equal(ops[0].result, 1);
    assert_int_equal(ops[1].result, 1);
    assert_int_equal(ops[2].result, 0);
    long long ttl = tq_cli_int(&tu_srv, "PTTL", "salvo:{conc2}:conc:per-domain:example.org", NULL);
    assert_true(ttl > 0 && ttl <= 400);
    struct rq_conc_op ob = take(key, "b:0:1", 2, 400);
    assert_int_equal(rq_conc_run(b, &ob, 1), 0);
    assert_int_equal(ob.result, 0);
    int64_t t0 = tq_now_ms(), freed_after = -1;
    while (tq_now_ms() - t0 < 2000) { /* "a" is dead: it never renews */
        ob = take(key, "b:0:1", 2, 400);
        assert_int_equal(rq_conc_run(b, &ob, 1), 0);
        if (ob.result) {
            freed_after = tq_now_ms() - t0;
            break;
        }
        tq_sleep_ms(20);
    }
    print_message("the dead holder's slots were free after %lld ms (lease 400 ms)\n",
                  (long long)freed_after);
    assert_true(freed_after >= 300 && freed_after <= 600);
    ob = take(key, "b:0:2", 2, 400);
    assert_int_equal(rq_conc_run(b, &ob, 1), 0);
    assert_int_equal(ob.result, 1);
    /* The dead holder's renewal comes too late: the bucket is full. */
    ops[0] = take(key, "a:0:1", 2, 400);
    assert_int_equal(rq_conc_run(a, ops, 1), 0);
    assert_int_equal(ops[0].result, 0);
    /* Given back: the key goes with its last slot. */
    struct rq_conc_op rel[2] = {give(key, "b:0:1"), give(key, "b:0:2")};
    assert_int_equal(rq_conc_run(b, rel, 2), 0);
    assert_int_equal(rel[0].result + rel[1].result, 2);
    assert_int_equal(
        tq_cli_int(&tu_srv, "EXISTS", "salvo:{conc2}:conc:per-domain:example.org", NULL), 0);
    rq_free(a);
    rq_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_connections_share_the_rate),
        cmocka_unit_test(many_buckets_one_round_trip),
        cmocka_unit_test(conc_cap_is_never_exceeded),
        cmocka_unit_test(conc_expiry_frees_a_dead_holders_slots),
    };
    return cmocka_run_group_tests(tests, tu_redis_group_setup, tu_redis_group_teardown);
}
