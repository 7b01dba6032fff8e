/* Shared bits of the redisq tests (header only, static functions). */
#ifndef SALVO_TEST_REDISQ_UTIL_H
#define SALVO_TEST_REDISQ_UTIL_H

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

static inline struct rq *tq_open(const struct tu_redis *srv, const char *queue,
                                 const char *consumer)
{
    struct rq *q;
    struct rq_opts o = {.url = srv->url, .queue = queue, .consumer = consumer};
    assert_int_equal(rq_new(&o, &q), 0);
    if (rq_connect(q) != 0)
        fail_msg("connect: %s", rq_error(q));
    return q;
}

#define tq_stats(q, msg, rdy, infl, sched, deliv, bnc, dd)                                         \
    do {                                                                                           \
        struct rq_stats st_;                                                                       \
        assert_int_equal(rq_stats_get((q), (msg), &st_), 0);                                       \
        assert_int_equal(st_.ready, (rdy));                                                        \
        assert_int_equal(st_.inflight, (infl));                                                    \
        assert_int_equal(st_.scheduled, (sched));                                                  \
        assert_int_equal(st_.delivered, (deliv));                                                  \
        assert_int_equal(st_.bounced, (bnc));                                                      \
        assert_int_equal(st_.dead, (dd));                                                          \
    } while (0)

static inline long long tq_cli_int(const struct tu_redis *srv, const char *a0, const char *a1,
                                   const char *a2)
{
    const char *args[] = {a0, a1, a2, NULL};
    return tu_redis_int(srv, args);
}

static inline int64_t tq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void tq_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Enqueues `n` recipients "u<i>@d<i % ndomains>.example" in one message. */
static inline uint64_t tq_enqueue(struct rq *q, int n, int ndomains)
{
    const char body[] = "Subject: t\r\n\r\nbody\r\n";
    struct rq_msg_spec spec = {
        .from = "from@sender.example", .body = body, .body_len = sizeof(body) - 1};
    struct rq_enq *e;
    uint64_t id;
    assert_int_equal(rq_enq_begin(q, &spec, &e, &id), 0);
    char addr[64];
    for (int i = 0; i < n; i++) {
        snprintf(addr, sizeof(addr), "u%d@d%d.example", i, i % ndomains);
        assert_int_equal(rq_enq_add(e, addr, NULL), 0);
    }
    assert_int_equal(rq_enq_end(e), 0);
    return id;
}

/* Reports every recipient of `j` with one outcome. */
static inline void tq_report_all(struct rq *q, const struct rq_job *j, enum rq_outcome o,
                                 int64_t retry_at, const char *err)
{
    struct rq_result *res = calloc(j->nrcpt, sizeof(*res));
    assert_non_null(res);
    for (size_t k = 0; k < j->nrcpt; k++)
        res[k] = (struct rq_result){.outcome = o,
                                    .retry_at_ms = retry_at,
                                    .error = err,
                                    .reply = o == RQ_DELIVERED ? "250 ok" : "451 later"};
    assert_int_equal(rq_report(q, j, res), 0);
    free(res);
}

/* The index i of "u<i>@...". */
static inline int tq_index(const char *addr)
{
    return atoi(addr + 1);
}

#endif
