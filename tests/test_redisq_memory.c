/* Redis memory per queued recipient (INFO used_memory before/after 100k
 * recipients): the body is stored once, a recipient costs its local part and a
 * share of its job's stream entry. Target <= 100 bytes without personalisation. */
#include "test_redisq_util.h"

enum { N = 100000 };

/* Realistic addresses: "firstname.lastname1234@<one of 500 domains>". */
static double bytes_per_rcpt(const char *queue, bool personalised, int ndomains)
{
    struct rq *q = tq_open(&tu_srv, queue, NULL);
    long long before = tu_redis_info(&tu_srv, "used_memory");
    const char tpl[] = "Subject: Hello {{first}}\r\n\r\nYour code is {{code}}.\r\n";
    const char *fields[] = {"first", "code"};
    struct rq_msg_spec spec = {.from = "news@sender.example",
                               .body = tpl,
                               .body_len = sizeof(tpl) - 1,
                               .personalised = personalised,
                               .fields = personalised ? fields : NULL,
                               .nfields = personalised ? 2 : 0};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    char addr[96], first[16], code[16];
    for (int i = 0; i < N; i++) {
        snprintf(addr, sizeof(addr), "firstname.lastname%d@domain%d.example", i, i % ndomains);
        snprintf(first, sizeof(first), "Name%d", i % 997);
        snprintf(code, sizeof(code), "C%08d", i);
        const char *v[] = {first, code};
        assert_int_equal(rq_enq_add(e, addr, personalised ? v : NULL), 0);
    }
    assert_int_equal(rq_enq_end(e), 0);
    long long after = tu_redis_info(&tu_srv, "used_memory");
    tq_stats(q, id, N, 0, 0, 0, 0, 0);
    rq_free(q);
    return (double)(after - before) / N;
}

static void memory_per_recipient(void **state)
{
    (void)state;
    double plain = bytes_per_rcpt("mem1", false, 500);
    double pers = bytes_per_rcpt("mem2", true, 500);
    double tail = bytes_per_rcpt("mem3", false, N); /* every recipient its own domain */
    printf("redis memory per queued recipient (100k, 500 domains): %.1f bytes plain, %.1f bytes "
           "with 2 fields; %.1f bytes when every recipient has its own domain\n",
           plain, pers, tail);
    assert_true(plain > 0);
    assert_true(plain <= 100);
    assert_true(pers > plain);
    assert_true(pers <= 150);
    assert_true(tail <= 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(memory_per_recipient),
    };
    return cmocka_run_group_tests(tests, tu_redis_group_setup, tu_redis_group_teardown);
}
