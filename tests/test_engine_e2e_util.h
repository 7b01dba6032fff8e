/* Set-up shared by the end-to-end tests of `salvo run` (test_engine_e2e.c,
 * test_engine_scale.c): a real redis-server (AOF on) reached through
 * $SALVO_REDIS_URL, a temp dir with salvo.toml, test certificates, campaigns
 * enqueued with `salvo enqueue --recipients`, the sink's counters. The helpers
 * fail the current cmocka test on error. */
#ifndef SALVO_TEST_ENGINE_E2E_UTIL_H
#define SALVO_TEST_ENGINE_E2E_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "redis_server.h"
#include "test_sink_util.h"

struct te_env {
    struct tu_redis srv;
    char *dir;   /* owned temp dir: salvo.toml, campaigns, process output */
    char *certs; /* owned temp dir: tt_make_certs() */
};

/* Group set-up: starts Redis, makes the dirs and certificates, sets
 * SALVO_REDIS_URL and unsets SALVO_CONFIG. Returns 0 or -1. */
int te_env_setup(struct te_env *e);
void te_env_teardown(struct te_env *e);
/* A fresh queue: FLUSHALL. Returns 0 or -1. */
int te_env_flush(struct te_env *e);

/* dir/salvo.toml: two workers, a 1 s lease, plus `extra`; with sink_port > 0
 * everything goes to the sink as a relay (queue.outbound.next-hop). */
void te_write_conf(const struct te_env *e, int sink_port, const char *extra);
/* The same into dir/NAME. */
void te_write_conf_as(const struct te_env *e, const char *name, int sink_port, const char *extra);

/* Enqueues campaign `tag` (Message-ID <tag@salvo.test>) of n recipients
 * user<i>@d<i % ndomains>.<tld>; returns n. A personalised body ({{email}}) goes
 * out in one transaction per recipient, a plain one in one transaction per job
 * (up to 50 recipients of one domain). */
long long te_enqueue(const struct te_env *e, const char *tag, int n, int ndomains, const char *tld,
                     bool personalised);

/* One counter of the sink's JSON stats. */
uint64_t te_sink_stat(struct ts_sink *s, const char *key);
/* Waits until the sink has accepted at least `n` transactions. */
void te_wait_transactions(struct ts_sink *s, uint64_t n, int timeout_ms);

/* `salvo run --drain` in the foreground, output in dir/NAME.out|err; returns its
 * stdout (owned). Fails the test unless it exits 0 within timeout_ms. */
char *te_run_drain(const struct te_env *e, const char *name, int timeout_ms);

/* The sink has exactly n distinct (Message-ID, recipient) pairs and the queue
 * counts n delivered, nothing ready, scheduled or in flight. */
void te_check_all_delivered(const struct te_env *e, struct ts_sink *s, long long n,
                            const char *what);

#endif
