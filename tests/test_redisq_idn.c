/* IDN recipients and sender through the queue: a job routes by the A-label form of
 * its domain, its recipients keep the UTF-8 form as enqueued (with the A-label form
 * beside it), the two spellings of one domain are separate jobs, and a deferred
 * job keeps both forms through the retry set. */
#include "test_redisq_util.h"

#define MUENCHEN "m\xc3\xbcnchen.test"
#define JOERG    "j\xc3\xb6rg"

static const struct rq_job *find(const struct rq_batch *b, const char *rcpt_domain)
{
    for (size_t i = 0; i < b->njobs; i++)
        if (strcmp(b->jobs[i].rcpt_domain, rcpt_domain) == 0)
            return &b->jobs[i];
    fail_msg("no job for %s", rcpt_domain);
    return NULL;
}

static void idn_jobs(void **state)
{
    (void)state;
    struct rq *q = tq_open(&tu_srv, "idn", "c1");
    const char body[] = "Subject: t\r\n\r\nbody\r\n";
    struct rq_msg_spec spec = {.from = "news@B\xc3\x9c"
                                       "CHER.test",
                               .body = body,
                               .body_len = sizeof(body) - 1};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    const char *rcpts[] = {"user@" MUENCHEN, JOERG "@M\xc3\x9cNCHEN.test",
                           "ascii@xn--mnchen-3ya.test", "plain@Example.test"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(rq_enq_add(e, rcpts[i], NULL), 0);
    assert_int_equal(rq_enq_end(e), 0);

    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 3);
    const struct rq_job *u = find(b, MUENCHEN);
    assert_string_equal(u->domain, "xn--mnchen-3ya.test");
    assert_int_equal(u->nrcpt, 2); /* the upper-case spelling maps to the same U-label */
    assert_string_equal(u->rcpt[0].addr, "user@" MUENCHEN);
    assert_string_equal(u->rcpt[0].addr_ascii, "user@xn--mnchen-3ya.test");
    assert_string_equal(u->rcpt[1].addr, JOERG "@" MUENCHEN);
    assert_string_equal(u->rcpt[1].addr_ascii, JOERG "@xn--mnchen-3ya.test");
    const struct rq_job *a = find(b, "xn--mnchen-3ya.test");
    assert_string_equal(a->domain, "xn--mnchen-3ya.test");
    assert_int_equal(a->nrcpt, 1);
    assert_string_equal(a->rcpt[0].addr, "ascii@xn--mnchen-3ya.test");
    assert_ptr_equal(a->rcpt[0].addr_ascii, a->rcpt[0].addr);
    const struct rq_job *p = find(b, "example.test");
    assert_string_equal(p->rcpt[0].addr, "plain@example.test");
    assert_ptr_equal(p->rcpt[0].addr_ascii, p->rcpt[0].addr);
    /* The sender: as given, and with its domain as A-labels for ASCII servers. */
    assert_string_equal(rq_body_from(u->body), "news@B\xc3\x9c"
                                               "CHER.test");
    assert_string_equal(rq_body_from_ascii(u->body), "news@xn--bcher-kva.test");

    /* Deferred: the retry job carries both forms again. */
    tq_report_all(q, u, RQ_DEFERRED, tq_now_ms() - 1, "rcpt");
    tq_report_all(q, a, RQ_DELIVERED, 0, "");
    tq_report_all(q, p, RQ_DELIVERED, 0, "");
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    int64_t next;
    assert_int_equal(rq_promote(q, tq_now_ms(), 10, &next), 1);
    assert_int_equal(rq_claim(q, 10, &b), 1);
    u = &b->jobs[0];
    assert_int_equal(u->retry_num, 1);
    assert_string_equal(u->domain, "xn--mnchen-3ya.test");
    assert_string_equal(u->rcpt_domain, MUENCHEN);
    assert_string_equal(u->rcpt[1].addr, JOERG "@" MUENCHEN);
    assert_string_equal(u->rcpt[1].addr_ascii, JOERG "@xn--mnchen-3ya.test");
    tq_report_all(q, u, RQ_DELIVERED, 0, "");
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    tq_stats(q, id, 0, 0, 0, 4, 0, 0);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idn_jobs),
    };
    return cmocka_run_group_tests(tests, tu_redis_group_setup, tu_redis_group_teardown);
}
