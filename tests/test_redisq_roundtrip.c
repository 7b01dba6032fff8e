/* Enqueue -> claim -> report round trip against a real redis-server: counts,
 * grouping by domain, body stored once and fetched once, round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_server.h"
#include "rq.h"

static struct rq *open_q(const char *queue, const char *consumer)
{
    struct rq *q;
    struct rq_opts o = {.url = tu_srv.url, .queue = queue, .consumer = consumer};
    assert_int_equal(rq_new(&o, &q), 0);
    if (rq_connect(q) != 0)
        fail_msg("connect: %s", rq_error(q));
    return q;
}

static long long cli_int(const char *a0, const char *a1, const char *a2)
{
    const char *args[] = {a0, a1, a2, NULL};
    return tu_redis_int(&tu_srv, args);
}

static void check_stats(struct rq *q, uint64_t msg, int64_t ready, int64_t inflight,
                        int64_t scheduled, int64_t delivered, int64_t bounced, int64_t dead)
{
    struct rq_stats st;
    assert_int_equal(rq_stats_get(q, msg, &st), 0);
    assert_int_equal(st.ready, ready);
    assert_int_equal(st.inflight, inflight);
    assert_int_equal(st.scheduled, scheduled);
    assert_int_equal(st.delivered, delivered);
    assert_int_equal(st.bounced, bounced);
    assert_int_equal(st.dead, dead);
}

static void jobs_grouped_by_domain_and_acked(void **state)
{
    (void)state;
    struct rq *q = open_q("rt", "c1");
    const char body[] = "Subject: hello\r\n\r\nHello world\r\n";
    struct rq_msg_spec spec = {
        .from = "news@sender.example", .body = body, .body_len = strlen(body)};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    assert_true(id > 0);
    char addr[64];
    /* 120 + 30 + 1 recipients, interleaved: jobs of 50 -> 50, 50, 20, 30, 1. */
    for (int i = 0; i < 120; i++) {
        snprintf(addr, sizeof(addr), "a%d@A.example", i);
        assert_int_equal(rq_enq_add(e, addr, NULL), 0);
        if (i < 30) {
            snprintf(addr, sizeof(addr), "b%d@b.example", i);
            assert_int_equal(rq_enq_add(e, addr, NULL), 0);
        }
    }
    assert_int_equal(rq_enq_add(e, "solo@c.example", NULL), 0);
    assert_int_equal(rq_enq_add(e, "bad@@c.example", NULL), -EINVAL);
    assert_non_null(strstr(rq_error(q), "bad recipient 'bad@@c.example'"));
    assert_int_equal(rq_enq_end(e), 0);

    check_stats(q, 0, 151, 0, 0, 0, 0, 0);
    check_stats(q, id, 151, 0, 0, 0, 0, 0);
    assert_int_equal(cli_int("XLEN", "salvo:{rt}:ready", NULL), 5);

    uint64_t rt0 = rq_round_trips(q);
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 100, &b), 5);
    /* One claim + one body fetch. */
    assert_int_equal(rq_round_trips(q) - rt0, 2);
    check_stats(q, 0, 0, 151, 0, 0, 0, 0);

    int sizes[5];
    size_t total = 0;
    for (size_t i = 0; i < b->njobs; i++) {
        const struct rq_job *j = &b->jobs[i];
        sizes[i] = (int)j->nrcpt;
        total += j->nrcpt;
        assert_int_equal(j->msg, id);
        assert_int_equal(j->retry_num, 0);
        assert_string_equal(j->last_error, "");
        for (size_t k = 0; k < j->nrcpt; k++) {
            const char *at = strrchr(j->rcpt[k].addr, '@');
            assert_non_null(at);
            assert_string_equal(at + 1, j->domain);
        }
        /* Every job shares the one body object. */
        assert_ptr_equal(j->body, b->jobs[0].body);
        size_t len;
        const char *data = rq_body_data(j->body, &len);
        assert_int_equal(len, strlen(body));
        assert_memory_equal(data, body, len);
        assert_string_equal(rq_body_from(j->body), "news@sender.example");
    }
    assert_int_equal(total, 151);
    assert_string_equal(b->jobs[0].domain, "a.example");
    int want[5] = {50, 50, 50, 50, 50};
    (void)want;
    int n50 = 0, n20 = 0, n30 = 0, n1 = 0;
    for (int i = 0; i < 5; i++) {
        n50 += sizes[i] == 50;
        n20 += sizes[i] == 20;
        n30 += sizes[i] == 30;
        n1 += sizes[i] == 1;
    }
    assert_int_equal(n50, 2);
    assert_int_equal(n20, 1);
    assert_int_equal(n30, 1);
    assert_int_equal(n1, 1);

    /* Nothing more to claim. */
    struct rq_batch *none;
    assert_int_equal(rq_claim(q, 100, &none), 0);
    assert_null(none);

    rt0 = rq_round_trips(q);
    for (size_t i = 0; i < b->njobs; i++) {
        struct rq_result res[50];
        for (size_t k = 0; k < b->jobs[i].nrcpt; k++)
            res[k] = (struct rq_result){.outcome = RQ_DELIVERED,
                                        .reply = "250 2.0.0 ok",
                                        .tls_version = "TLSv1.3",
                                        .tls_cipher = "TLS_AES_128_GCM_SHA256",
                                        .tls_verified = true};
        assert_int_equal(rq_report(q, &b->jobs[i], res), 0);
    }
    assert_int_equal(rq_buffered_reports(q), 5);
    assert_int_equal(rq_round_trips(q) - rt0, 0);
    assert_int_equal(rq_flush(q), 0);
    assert_int_equal(rq_round_trips(q) - rt0, 1);
    rq_batch_free(b);

    check_stats(q, 0, 0, 0, 0, 151, 0, 0);
    check_stats(q, id, 0, 0, 0, 151, 0, 0);
    assert_int_equal(cli_int("XLEN", "salvo:{rt}:ready", NULL), 0);
    assert_int_equal(cli_int("XLEN", "salvo:{rt}:events", NULL), 151);
    /* The last final recipient dropped the body. */
    char key[64];
    snprintf(key, sizeof(key), "salvo:{rt}:msg:%llu", (unsigned long long)id);
    assert_int_equal(cli_int("HEXISTS", key, "body"), 0);
    const char *pend[] = {"XPENDING", "salvo:{rt}:ready", "salvo", NULL};
    char *p = tu_redis_cli(&tu_srv, pend);
    assert_non_null(p);
    assert_int_equal(atoi(p), 0);
    free(p);
    rq_free(q);
}

static void personalised_fields_render(void **state)
{
    (void)state;
    struct rq *q = open_q("pers", NULL);
    const char tpl[] = "To: {{email}}\r\nSubject: Hi {{ first }}\r\n\r\nCode {{code}}.\r\n";
    const char *fields[] = {"first", "code"};
    struct rq_msg_spec spec = {.from = "a@b.example",
                               .body = tpl,
                               .body_len = strlen(tpl),
                               .personalised = true,
                               .fields = fields,
                               .nfields = 2};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    const char *v1[] = {"Ann\tTab", "X1"};
    const char *v2[] = {"Bob\\", "Y2\nZ"};
    assert_int_equal(rq_enq_add(e, "ann@x.example", v1), 0);
    assert_int_equal(rq_enq_add(e, "\"b o\\\"b\"@x.example", v2), 0);
    assert_int_equal(rq_enq_end(e), 0);

    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 1);
    const struct rq_job *j = &b->jobs[0];
    assert_int_equal(j->nrcpt, 2);
    assert_true(rq_body_personalised(j->body));
    assert_string_equal(j->rcpt[0].addr, "ann@x.example");
    assert_string_equal(j->rcpt[1].addr, "\"b o\\\"b\"@x.example");
    assert_string_equal(j->rcpt[1].values[1], "Y2\nZ");
    struct sv_buf out = {0};
    assert_int_equal(rq_render(j->body, &j->rcpt[0], &out), 0);
    assert_string_equal(out.ptr, "To: ann@x.example\r\nSubject: Hi Ann\tTab\r\n\r\nCode X1.\r\n");
    sv_buf_reset(&out);
    assert_int_equal(rq_render(j->body, &j->rcpt[1], &out), 0);
    assert_string_equal(out.ptr,
                        "To: \"b o\\\"b\"@x.example\r\nSubject: Hi Bob\\\r\n\r\nCode Y2\nZ.\r\n");
    sv_buf_free(&out);
    rq_batch_free(b);
    rq_free(q);
}

/* Steady state with a campaign: claim 64 jobs of 50 and report them: well under
 * 0.1 round trips per recipient (the figure goes to BENCHMARKS.md). */
static void round_trips_per_recipient(void **state)
{
    (void)state;
    struct rq *q = open_q("rtt", NULL);
    const char body[] = "Subject: x\r\n\r\nbody\r\n";
    struct rq_msg_spec spec = {.from = "a@b.example", .body = body, .body_len = strlen(body)};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    char addr[64];
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        snprintf(addr, sizeof(addr), "u%d@d%d.example", i, i % 40);
        assert_int_equal(rq_enq_add(e, addr, NULL), 0);
    }
    assert_int_equal(rq_enq_end(e), 0);
    uint64_t rt0 = rq_round_trips(q);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int done = 0;
    for (;;) {
        struct rq_batch *b;
        int got = rq_claim(q, 64, &b);
        assert_true(got >= 0);
        if (got == 0)
            break;
        for (size_t i = 0; i < b->njobs; i++) {
            struct rq_result res[50];
            for (size_t k = 0; k < b->jobs[i].nrcpt; k++)
                res[k] = (struct rq_result){.outcome = RQ_DELIVERED, .reply = "250 ok"};
            assert_int_equal(rq_report(q, &b->jobs[i], res), 0);
            done += (int)b->jobs[i].nrcpt;
        }
        assert_int_equal(rq_flush(q), 0);
        rq_batch_free(b);
    }
    assert_int_equal(done, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("claim+report (delivered, one event each): %d recipients in %.3f s = %.0f/s\n", n, secs,
           n / secs);
    double per = (double)(rq_round_trips(q) - rt0) / n;
    printf("claim+report: %llu round trips for %d recipients = %.4f per recipient\n",
           (unsigned long long)(rq_round_trips(q) - rt0), n, per);
    assert_true(per < 0.1);
    check_stats(q, 0, 0, 0, 0, n, 0, 0);

    /* Worst case: one recipient per job (every recipient at its own domain). */
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(addr, sizeof(addr), "u@d%d.example", i);
        assert_int_equal(rq_enq_add(e, addr, NULL), 0);
    }
    assert_int_equal(rq_enq_end(e), 0);
    rt0 = rq_round_trips(q);
    for (;;) {
        struct rq_batch *b;
        int got = rq_claim(q, 64, &b);
        if (got <= 0)
            break;
        for (size_t i = 0; i < b->njobs; i++) {
            struct rq_result res = {.outcome = RQ_DELIVERED, .reply = "250 ok"};
            assert_int_equal(rq_report(q, &b->jobs[i], &res), 0);
        }
        assert_int_equal(rq_flush(q), 0);
        rq_batch_free(b);
    }
    per = (double)(rq_round_trips(q) - rt0) / 2000;
    printf("claim+report, 1 recipient per job: %.4f round trips per recipient\n", per);
    assert_true(per < 0.1);
    rq_free(q);
}

static void enqueue_one(struct rq *q)
{
    const char body[] = "Subject: x\r\n\r\nbody\r\n";
    struct rq_msg_spec spec = {.from = "a@b.example", .body = body, .body_len = strlen(body)};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    assert_int_equal(rq_enq_add(e, "one@x.example", NULL), 0);
    assert_int_equal(rq_enq_end(e), 0);
}

/* Someone flushed the database under a connected consumer: claim recreates the
 * stream and group instead of failing forever. */
static void stream_deleted_under_consumer(void **state)
{
    (void)state;
    struct rq *q = open_q("gone", NULL);
    const char *args[] = {"DEL", "salvo:{gone}:ready", NULL};
    char *out = tu_redis_cli(&tu_srv, args);
    free(out);
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 0);
    assert_int_equal(cli_int("EXISTS", "salvo:{gone}:ready", NULL), 1);
    /* A hand-written entry the scripts cannot read goes to the dead letters
     * instead of blocking every claim. */
    const char *junk[] = {"XADD", "salvo:{gone}:ready", "*", "j", "garbage", NULL};
    out = tu_redis_cli(&tu_srv, junk);
    free(out);
    enqueue_one(q);
    assert_int_equal(rq_claim(q, 10, &b), 1);
    assert_string_equal(b->jobs[0].rcpt[0].addr, "one@x.example");
    rq_batch_free(b);
    assert_int_equal(cli_int("XLEN", "salvo:{gone}:dead", NULL), 1);
    rq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jobs_grouped_by_domain_and_acked),
        cmocka_unit_test(personalised_fields_render),
        cmocka_unit_test(round_trips_per_recipient),
        cmocka_unit_test(stream_deleted_under_consumer),
    };
    return cmocka_run_group_tests(tests, tu_redis_group_setup, tu_redis_group_teardown);
}
