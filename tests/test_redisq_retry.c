/* Deferred recipients: a job split by outcome, retries scheduled and promoted at
 * the right time, bounces and expiries as dead letters, retry-now, cancel and the
 * revival of dead letters. */
#include "test_redisq_util.h"

static void split_job_and_promote_on_time(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "retry", "c1");
    uint64_t id = tq_enqueue(q, 10, 1);
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 1);
    const struct rq_job *j = &b->jobs[0];
    assert_int_equal(j->nrcpt, 10);

    int64_t due = tq_now_ms() + 1500;
    struct rq_result res[10];
    for (int k = 0; k < 10; k++) {
        if (k < 4)
            res[k] = (struct rq_result){.outcome = RQ_DELIVERED, .reply = "250 ok"};
        else if (k < 7)
            res[k] = (struct rq_result){.outcome = RQ_DEFERRED,
                                        .retry_at_ms = due,
                                        .error = "tls",
                                        .reply = "454 TLS not available"};
        else if (k < 9)
            res[k] = (struct rq_result){.outcome = RQ_DEFERRED,
                                        .retry_at_ms = due,
                                        .error = "rcpt",
                                        .reply = "452 mailbox full"};
        else
            res[k] = (struct rq_result){.outcome = RQ_BOUNCED, .reply = "550 5.1.1 no such user"};
    }
    assert_int_equal(rq_report(q, j, res), 0);
    assert_int_equal(rq_flush(q), 0);
    char want_tls[3][32], want_rcpt[2][32];
    for (int k = 0; k < 3; k++)
        snprintf(want_tls[k], 32, "%s", j->rcpt[4 + k].addr);
    for (int k = 0; k < 2; k++)
        snprintf(want_rcpt[k], 32, "%s", j->rcpt[7 + k].addr);
    rq_batch_free(b);

    tq_stats(q, 0, 0, 0, 5, 4, 1, 0);
    tq_stats(q, id, 0, 0, 5, 4, 1, 0);
    /* Two retry jobs (one per error), one dead letter with the reply. */
    assert_int_equal(tq_cli_int(&tu_srv, "ZCARD", "salvo:{retry}:retry", NULL), 2);
    assert_int_equal(tq_cli_int(&tu_srv, "XLEN", "salvo:{retry}:dead", NULL), 1);
    const char *dl[] = {"XRANGE", "salvo:{retry}:dead", "-", "+", NULL};
    char *letters = tu_redis_cli(&tu_srv, dl);
    assert_non_null(strstr(letters, "550 5.1.1 no such user"));
    free(letters);
    assert_int_equal(tq_cli_int(&tu_srv, "XLEN", "salvo:{retry}:events", NULL), 10);

    /* Not due yet: nothing moves, and the next due time is reported. */
    int64_t next = 0;
    assert_int_equal(rq_promote(q, due - 1, 100, &next), 0);
    assert_int_equal(next, due);
    assert_int_equal(rq_claim(q, 10, &b), 0);
    /* At the due time both move. */
    while (tq_now_ms() < due)
        tq_sleep_ms(50);
    assert_int_equal(rq_promote(q, tq_now_ms(), 100, &next), 2);
    assert_int_equal(next, -1);
    tq_stats(q, 0, 5, 0, 0, 4, 1, 0);

    assert_int_equal(rq_claim(q, 10, &b), 2);
    int seen_tls = 0, seen_rcpt = 0;
    for (size_t i = 0; i < b->njobs; i++) {
        const struct rq_job *r = &b->jobs[i];
        assert_int_equal(r->retry_num, 1);
        if (strcmp(r->last_error, "tls") == 0) {
            assert_int_equal(r->nrcpt, 3);
            for (int k = 0; k < 3; k++)
                assert_string_equal(r->rcpt[k].addr, want_tls[k]);
            seen_tls++;
            /* Deferred again, far away: retry-now brings it back. */
            tq_report_all(q, r, RQ_DEFERRED, tq_now_ms() + 3600 * 1000, "tls");
        } else {
            assert_string_equal(r->last_error, "rcpt");
            assert_int_equal(r->nrcpt, 2);
            for (int k = 0; k < 2; k++)
                assert_string_equal(r->rcpt[k].addr, want_rcpt[k]);
            seen_rcpt++;
            tq_report_all(q, r, RQ_DELIVERED, 0, NULL);
        }
    }
    assert_int_equal(seen_tls, 1);
    assert_int_equal(seen_rcpt, 1);
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, 0, 0, 0, 3, 6, 1, 0);

    int64_t n = 0;
    assert_int_equal(rq_msg_retry_now(q, id, &n), 0);
    assert_int_equal(n, 3);
    tq_stats(q, 0, 3, 0, 0, 6, 1, 0);
    assert_int_equal(rq_claim(q, 10, &b), 1);
    assert_int_equal(b->jobs[0].retry_num, 2);
    /* Expired: dead, and with that every recipient is final and the body goes. */
    tq_report_all(q, &b->jobs[0], RQ_DEAD, 0, "expired after 2 attempts");
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, 0, 0, 0, 0, 6, 1, 3);
    char key[64];
    snprintf(key, sizeof(key), "salvo:{retry}:msg:%llu", (unsigned long long)id);
    assert_int_equal(tq_cli_int(&tu_srv, "HEXISTS", key, "body"), 0);
    struct rq_msg_info info;
    assert_int_equal(rq_msg_info_get(q, id, &info), 0);
    assert_true(info.done);
    assert_int_equal(info.body_len, 0);
    assert_int_equal(info.total, 10);
    rq_msg_info_free(&info);
    rq_free(q);
}

static void cancel_makes_pending_dead(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "cancel", "c1");
    uint64_t id = tq_enqueue(q, 300, 3); /* 3 domains x 100 -> 6 jobs of 50 */
    uint64_t other = tq_enqueue(q, 5, 1);
    struct rq_batch *b;
    /* Two jobs in flight, one deferred, the rest ready. */
    assert_int_equal(rq_claim(q, 3, &b), 3);
    tq_report_all(q, &b->jobs[2], RQ_DEFERRED, tq_now_ms() + 100, "conn");
    assert_int_equal(rq_flush(q), 0);
    tq_stats(q, id, 150, 100, 50, 0, 0, 0);

    int64_t n = 0;
    assert_int_equal(rq_msg_cancel(q, id, &n), 0);
    assert_int_equal(n, 300);
    tq_stats(q, id, 0, 0, 0, 0, 0, 300);
    tq_stats(q, 0, 5, 0, 0, 0, 0, 300);
    assert_int_equal(rq_msg_cancel(q, id, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(rq_msg_cancel(q, 999, &n), -ENOENT);

    /* A job already in flight finishes: its delivery is an event, not a count. */
    tq_report_all(q, &b->jobs[0], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, id, 0, 0, 0, 0, 0, 300);
    /* The cancelled message's jobs never come out again; the other message's do. */
    tq_sleep_ms(150);
    assert_int_equal(rq_promote(q, tq_now_ms(), 100, NULL), 0);
    assert_int_equal(rq_claim(q, 100, &b), 1);
    assert_int_equal(b->jobs[0].msg, other);
    rq_batch_free(b);
    assert_int_equal(tq_cli_int(&tu_srv, "ZCARD", "salvo:{cancel}:retry", NULL), 0);
    rq_free(q);
}

/* `queue retry --dead`: the message's dead letters (bounced and dead recipients) go
 * back to the ready stream with retry_num 0 and leave their counters; a second
 * revival finds nothing; once every recipient is final the body is gone and a
 * revival is refused, as for a cancelled message. */
static void revive_dead_letters(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "revive", "c1");
    uint64_t id = tq_enqueue(q, 20, 2); /* 2 jobs of 10 */
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 2);
    const struct rq_job *j = &b->jobs[0];
    assert_int_equal(j->nrcpt, 10);
    struct rq_result res[10];
    for (int k = 0; k < 10; k++) {
        if (k < 4)
            res[k] = (struct rq_result){.outcome = RQ_DELIVERED, .reply = "250 ok"};
        else if (k < 7)
            res[k] = (struct rq_result){.outcome = RQ_BOUNCED, .reply = "550 5.1.1 no such user"};
        else
            res[k] = (struct rq_result){.outcome = RQ_DEAD, .error = "expired after 3 attempts"};
    }
    char want[6][32];
    for (int k = 0; k < 6; k++)
        snprintf(want[k], sizeof(want[k]), "%s", j->rcpt[4 + k].addr);
    assert_int_equal(rq_report(q, j, res), 0);
    assert_int_equal(rq_flush(q), 0);
    /* The other job stays in flight: the message is not final, its body is kept. */
    tq_stats(q, id, 0, 10, 0, 4, 3, 3);
    assert_int_equal(tq_cli_int(&tu_srv, "XLEN", "salvo:{revive}:dead", NULL), 2);
    uint64_t other = tq_enqueue(q, 3, 1);
    (void)other;

    int64_t n = 0;
    assert_int_equal(rq_msg_revive_dead(q, id, &n), 0);
    assert_int_equal(n, 6);
    tq_stats(q, id, 6, 10, 0, 4, 0, 0);
    assert_int_equal(tq_cli_int(&tu_srv, "XLEN", "salvo:{revive}:dead", NULL), 0);
    assert_int_equal(rq_msg_revive_dead(q, id, &n), 0);
    assert_int_equal(n, 0);

    /* Two jobs again (one per letter), first attempt, the same recipients. */
    struct rq_batch *b2;
    assert_int_equal(rq_claim(q, 10, &b2), 3);
    int seen = 0, jobs = 0;
    for (size_t i = 0; i < b2->njobs; i++) {
        const struct rq_job *r = &b2->jobs[i];
        if (r->msg != id)
            continue;
        jobs++;
        assert_int_equal(r->retry_num, 0);
        for (size_t k = 0; k < r->nrcpt; k++)
            for (int w = 0; w < 6; w++)
                if (strcmp(r->rcpt[k].addr, want[w]) == 0)
                    seen |= 1 << w;
        tq_report_all(q, r, RQ_DELIVERED, 0, NULL);
    }
    assert_int_equal(jobs, 2);
    assert_int_equal(seen, 0x3f);
    tq_report_all(q, &b->jobs[1], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    rq_batch_free(b2);
    tq_stats(q, id, 0, 0, 0, 20, 0, 0);

    /* Final now: the body was dropped, nothing can be sent again. */
    assert_int_equal(rq_msg_revive_dead(q, id, &n), -ENODATA);
    uint64_t c = tq_enqueue(q, 5, 1);
    assert_int_equal(rq_msg_cancel(q, c, &n), 0);
    assert_int_equal(rq_msg_revive_dead(q, c, &n), -ECANCELED);
    assert_int_equal(rq_msg_revive_dead(q, 999, &n), -ENOENT);
    rq_free(q);
}

/* The same address listed twice (here one recipient per job, so the two jobs are
 * identical), both deferred with the same due time and error: two retry jobs, not
 * one (the retry set's member used to be the payload alone, and the second ZADD
 * only updated the first: one delivery lost while the message still finished).
 * Both come back, both are delivered, and the counters add up to the total. */
static void identical_deferred_jobs_stay_two(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "twins", "c1");
    const char body[] = "Subject: t\r\n\r\nbody\r\n";
    struct rq_msg_spec spec = {
        .from = "from@sender.example", .body = body, .body_len = sizeof(body) - 1, .job_rcpts = 1};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    assert_int_equal(rq_enq_add(e, "twin@d.example", NULL), 0);
    assert_int_equal(rq_enq_add(e, "twin@d.example", NULL), 0);
    assert_int_equal(rq_enq_end(e), 0);
    tq_stats(q, id, 2, 0, 0, 0, 0, 0);

    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 2);
    int64_t due = tq_now_ms() + 300;
    for (size_t i = 0; i < 2; i++)
        tq_report_all(q, &b->jobs[i], RQ_DEFERRED, due, "rcpt");
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, id, 0, 0, 2, 0, 0, 0);
    assert_int_equal(tq_cli_int(&tu_srv, "ZCARD", "salvo:{twins}:retry", NULL), 2);

    /* Due: both promoted, with the address, retry_num 1 and the error. */
    int64_t next = 0;
    assert_int_equal(rq_promote(q, due + 1, 100, &next), 2);
    assert_int_equal(next, -1);
    tq_stats(q, id, 2, 0, 0, 0, 0, 0);
    assert_int_equal(rq_claim(q, 10, &b), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(b->jobs[i].nrcpt, 1);
        assert_string_equal(b->jobs[i].rcpt[0].addr, "twin@d.example");
        assert_int_equal(b->jobs[i].retry_num, 1);
        assert_string_equal(b->jobs[i].last_error, "rcpt");
        /* Deferred once more, the same due time: still two (retry now moves both). */
        tq_report_all(q, &b->jobs[i], RQ_DEFERRED, due + 60000, "rcpt");
    }
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, id, 0, 0, 2, 0, 0, 0);
    int64_t n = 0;
    assert_int_equal(rq_msg_retry_now(q, id, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rq_claim(q, 10, &b), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(b->jobs[i].retry_num, 2);
        tq_report_all(q, &b->jobs[i], RQ_DELIVERED, 0, NULL);
    }
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, id, 0, 0, 0, 2, 0, 0);
    struct rq_msg_info m;
    assert_int_equal(rq_msg_info_get(q, id, &m), 0);
    assert_int_equal(m.total, 2);
    assert_true(m.done);
    rq_msg_info_free(&m);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_job_and_promote_on_time),
        cmocka_unit_test(cancel_makes_pending_dead),
        cmocka_unit_test(revive_dead_letters),
        cmocka_unit_test(identical_deferred_jobs_stay_two),
    };
    return cmocka_run_group_tests(tests, tu_redis_group_setup, tu_redis_group_teardown);
}
