#include "test_engine_e2e_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_engine_run_util.h"
#include "test_tls_helpers.h"
#include "testutil.h"

int te_env_setup(struct te_env *e)
{
    if (tu_redis_start(&e->srv, true, NULL))
        return -1;
    e->dir = tu_mkdtemp();
    e->certs = tu_mkdtemp();
    unsetenv("SALVO_CONFIG");
    setenv("SALVO_REDIS_URL", e->srv.url, 1);
    if (!e->dir || !e->certs || tt_make_certs(e->certs))
        return -1;
    return 0;
}

void te_env_teardown(struct te_env *e)
{
    tu_redis_stop(&e->srv);
    tu_rmtree(e->dir);
    tu_rmtree(e->certs);
    free(e->dir);
    free(e->certs);
    e->dir = e->certs = NULL;
}

int te_env_flush(struct te_env *e)
{
    char *r = tu_redis_cli(&e->srv, (const char *const[]){"FLUSHALL", NULL});
    int ok = r && strcmp(r, "OK") == 0;
    free(r);
    return ok ? 0 : -1;
}

void te_write_conf(const struct te_env *e, int sink_port, const char *extra)
{
    te_write_conf_as(e, "salvo.toml", sink_port, extra);
}

void te_write_conf_as(const struct te_env *e, const char *name, int sink_port, const char *extra)
{
    char buf[4096], relay[256] = "";
    if (sink_port > 0)
        snprintf(relay, sizeof(relay),
                 "[queue.outbound]\nnext-hop = \"'sink'\"\n"
                 "[remote.sink]\naddress = \"127.0.0.1\"\nport = %d\n",
                 sink_port);
    snprintf(buf, sizeof(buf),
             "[server.workers]\nthreads = 2\npin = false\n"
             "[queue]\nlease = \"1s\"\n"
             "%s%s",
             relay, extra ? extra : "");
    char *p = tu_write_file(e->dir, name, buf);
    assert_non_null(p);
    free(p);
}

long long te_enqueue(const struct te_env *e, const char *tag, int n, int ndomains, const char *tld,
                     bool personalised)
{
    char name[64];
    snprintf(name, sizeof(name), "%s.csv", tag);
    size_t cap = (size_t)n * 48 + 16;
    char *csv = malloc(cap);
    assert_non_null(csv);
    size_t len = (size_t)snprintf(csv, cap, "email\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(csv + len, cap - len, "user%d@d%d.%s\n", i, i % ndomains, tld);
    free(tu_write_file(e->dir, name, csv));
    free(csv);
    char tmpl[256];
    snprintf(tmpl, sizeof(tmpl),
             "Message-ID: <%s@salvo.test>\nFrom: news@sender.example\nSubject: %s\n\n"
             "Hello %s\n",
             tag, tag, personalised ? "{{email}}" : "all");
    char tname[64];
    snprintf(tname, sizeof(tname), "%s.eml", tag);
    free(tu_write_file(e->dir, tname, tmpl));
    const char *argv[] = {tu_salvo_bin(), "enqueue", "--from",     "news@sender.example",
                          "--recipients", name,      "--template", tname,
                          "--campaign",   tag,       NULL};
    struct tu_result r;
    assert_int_equal(tu_run_env(argv, NULL, 60, e->dir, NULL, &r), 0);
    if (r.status != 0)
        print_message("enqueue: %s\n", r.err);
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    return n;
}

uint64_t te_sink_stat(struct ts_sink *s, const char *key)
{
    char buf[4096];
    assert_int_equal(ts_sink_stats(s, buf, sizeof(buf)), 0);
    return ts_json_u64(buf, key);
}

void te_wait_transactions(struct ts_sink *s, uint64_t n, int timeout_ms)
{
    int64_t end = tr_now_ms() + timeout_ms;
    while (te_sink_stat(s, "transactions") < n) {
        if (tr_now_ms() > end)
            fail_msg("the sink saw fewer than %llu transactions", (unsigned long long)n);
        tr_sleep_ms(20);
    }
}

char *te_run_drain(const struct te_env *e, const char *name, int timeout_ms)
{
    struct tr_proc p;
    assert_int_equal(tr_start(&p, e->dir, name, (const char *const[]){"run", "--drain", NULL}), 0);
    int st = tr_wait(&p, timeout_ms);
    if (st != 0) {
        char *err = tr_err(&p);
        print_message("salvo run --drain: status %d; stderr:\n%s\n", st, err);
        free(err);
        tr_kill9(&p);
    }
    assert_int_equal(st, 0);
    return tr_out(&p);
}

void te_check_all_delivered(const struct te_env *e, struct ts_sink *s, long long n,
                            const char *what)
{
    char buf[4096];
    assert_int_equal(ts_sink_stats(s, buf, sizeof(buf)), 0);
    print_message("%s: sink %s", what, buf);
    assert_int_equal(ts_json_u64(buf, "pairs"), (uint64_t)n);
    assert_int_equal(tr_queue_stat(e->dir, "delivered"), n);
    assert_int_equal(tr_queue_stat(e->dir, "ready"), 0);
    assert_int_equal(tr_queue_stat(e->dir, "scheduled"), 0);
    assert_int_equal(tr_queue_stat(e->dir, "inflight"), 0);
}
