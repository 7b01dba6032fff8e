/* Redis errors an operator meets, each a clear code and one line naming the
 * address: wrong/missing password, OOM, READONLY replica; URL forms (TCP, unix
 * socket with db, rediss refused); envelope address rules. */
#include "test_redisq_util.h"

#include "testutil.h"

static void url_forms(void **state)
{
    (void)state;
    const char *why;
    const char *good[] = {"redis://127.0.0.1:6379/0",   "redis://localhost",
                          "redis://:pw@h:1/15",         "redis://user:p%40ss@h:6380",
                          "redis://[::1]:6379/2",       "unix:///run/redis.sock",
                          "unix:///run/redis.sock?db=3"};
    for (size_t i = 0; i < SV_ARRAY_LEN(good); i++)
        if (rq_url_check(good[i], &why))
            fail_msg("%s: %s", good[i], why);
    struct {
        const char *url, *why;
    } bad[] = {
        {"rediss://h:6379", "TLS to Redis is not supported by this hiredis (0.14)"},
        {"http://h", "expected redis://[:password@]host:port/db or unix:///path"},
        {"redis://h:0/0", "bad port (expected 1..65535)"},
        {"redis://h:99999", "bad port (expected 1..65535)"},
        {"redis://h:6379/x", "bad database number after '/'"},
        {"redis://:pw@/0", "missing host"},
        {"unix://relative.sock", "expected unix:///absolute/path[?db=N]"},
        {"unix:///s?db=x", "expected unix:///absolute/path[?db=N]"},
    };
    for (size_t i = 0; i < SV_ARRAY_LEN(bad); i++) {
        assert_int_equal(rq_url_check(bad[i].url, &why), -1);
        assert_string_equal(why, bad[i].why);
    }
}

static void address_rules(void **state)
{
    (void)state;
    const char *why;
    const char *good[] = {"a@b.example", "first.last+tag@sub.example.org", "\"john doe\"@x.example",
                          "\"a\\\"b\"@x.example", "x@[192.0.2.1]", "x@[IPv6:2001:db8::1]",
                          "o'neil@x-y.example", "a@123.example", "a@1.2.3.x4",
                          /* RFC 6531: UTF-8 local parts (2, 3 and 4-byte sequences) */
                          "j\xc3\xb6rg@x.example", "\xe7\x94\xa8\xe6\x88\xb7@x.example",
                          ("a\xf0\x9f\x98\x80" /* split: \x80b would be one escape */
                           "b@x.example"),
                          "\"j\xc3\xb6rg doe\"@x.example",
                          /* IDN domains (RFC 5890), given in UTF-8 or as A-labels */
                          "a@m\xc3\xbcnchen.example", "j\xc3\xb6rg@\xe4\xbe\x8b\xe3\x81\x88.jp",
                          "a@XN--MNCHEN-3YA.example", "a@M\xc3\x9cNCHEN.example"};
    for (size_t i = 0; i < SV_ARRAY_LEN(good); i++)
        if (rq_addr_check(good[i], &why))
            fail_msg("%s: %s", good[i], why);
    char longlocal[80], longlabel[100];
    memset(longlocal, 'a', 65);
    strcpy(longlocal + 65, "@x.example");
    memset(longlabel, 'b', 64);
    strcpy(longlabel, "a@");
    memset(longlabel + 2, 'b', 64);
    strcpy(longlabel + 66, ".example");
    /* 60 + 1 + 191 octets fit 254 in UTF-8, but the A-label form of the domain is
     * 223 octets (and the A-label form is what a server without SMTPUTF8 sees). */
#define IDNLABEL                                                                                   \
    "\xc3\xbc\xcf\x89\xd1\x8f\xe4\xb8\xad\xc3\xa9\xce\xb1\xd0\xb6\xe6\x96\x87\xc3\xb6\xce\xb2\xd1" \
    "\x84"                                                                                         \
    "\xe6\x97\xa5\xc3\xa4\xce\xb3\xd1\x89\xe6\x9c\xac\xc3\xa7\xce\xb4\xd1\x8e\xe8\xaa\x9e"
    char idnlong[300];
    memset(idnlong, 'l', 60);
    snprintf(idnlong + 60, sizeof(idnlong) - 60, "@%s",
             IDNLABEL "." IDNLABEL "." IDNLABEL "." IDNLABEL ".example");
    assert_int_equal(strlen(idnlong), 252);
    struct {
        const char *a, *why;
    } bad[] = {
        {"", "empty address"},
        {"plain", "missing '@'"},
        {"@x.example", "empty local part"},
        {"a@", "empty domain"},
        {"a@localhost", "domain has no dot"},
        {"a..b@x.example", "misplaced dot in local part (leading, trailing or double)"},
        {".a@x.example", "misplaced dot in local part (leading, trailing or double)"},
        {"a b@x.example", "invalid character in local part (quote it)"},
        {"a@b@x.example", "more than one '@'"},
        {"a@x..example", "empty label in domain (leading, trailing or double dot)"},
        {"a@-x.example", "domain label starts with '-'"},
        {"a@x-.example", "domain label ends with '-'"},
        {"a@x_y.example", "invalid character in domain"},
        {"a@x.example.", "empty label in domain (leading, trailing or double dot)"},
        /* IDN: checked in A-label form (common/idna.c has the full list). */
        {"a@b\xe2\x98\x83.example", "symbol or emoji in domain"},
        {"a@xn--zz.example", "invalid A-label (xn--...) in domain"},
        {"a@\xe4\xbe\x8b.123",
         "numeric top-level label (an IP address must be bracketed: [1.2.3.4])"},
        {idnlong, "address longer than 254 octets in A-label form"},
        {"a@b\xc3"
         ".example",
         "invalid UTF-8 in domain"},
        /* RFC 6531 3.3: well-formed UTF-8 only; no C1 controls, overlong forms,
         * surrogates, stray continuation bytes, truncated sequences, CR/LF. */
        {"j\xc3rg@x.example", "invalid UTF-8 or control character in local part"},
        {"j\xc2\x85rg@x.example", "invalid UTF-8 or control character in local part"},
        {"\xc0\xaf"
         "a@x.example",
         "invalid UTF-8 or control character in local part"},
        {"\xed\xa0\x80"
         "a@x.example",
         "invalid UTF-8 or control character in local part"},
        {"\x80"
         "a@x.example",
         "invalid UTF-8 or control character in local part"},
        {"\xf4\x90\x80\x80@x.example", "invalid UTF-8 or control character in local part"},
        {"a\xe2\x82@x.example", "invalid UTF-8 or control character in local part"},
        {"a\rb@x.example", "control character in local part"},
        {"a\nb@x.example", "control character in local part"},
        {"\"a\nb\"@x.example", "control character in local part"},
        {"\"a\xff"
         "b\"@x.example",
         "invalid UTF-8 or control character in local part"},
        {"\"open@x.example", "unterminated quoted local part"},
        {"a@[300.1.1.1]", "bad address literal"},
        {"a@1.2.3.4", "numeric top-level label (an IP address must be bracketed: [1.2.3.4])"},
        {"a@mail.example.123",
         "numeric top-level label (an IP address must be bracketed: [1.2.3.4])"},
        {longlocal, "local part longer than 64 octets"},
        {longlabel, "domain label longer than 63 octets"},
    };
    for (size_t i = 0; i < SV_ARRAY_LEN(bad); i++) {
        if (rq_addr_check(bad[i].a, &why) != -EINVAL)
            fail_msg("accepted: %s", bad[i].a);
        assert_string_equal(why, bad[i].why);
    }
}

static struct rq *new_q(const char *url)
{
    struct rq *q;
    struct rq_opts o = {.url = url, .queue = "err"};
    assert_int_equal(rq_new(&o, &q), 0);
    return q;
}

static void password_errors(void **state)
{
    (void)state;
    struct tu_redis srv;
    const char *extra[] = {"--requirepass", "s3cret", NULL};
    assert_int_equal(tu_redis_start(&srv, false, extra), 0);
    char url[128], want[160];

    struct rq *q = new_q(srv.url);
    assert_int_equal(rq_connect(q), -EACCES);
    snprintf(want, sizeof(want),
             "redis 127.0.0.1:%d: authentication required (put the password in redis.url)",
             srv.port);
    assert_string_equal(rq_error(q), want);
    rq_free(q);

    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", srv.port);
    q = new_q(url);
    assert_int_equal(rq_connect(q), -EACCES);
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: authentication failed: WRONGPASS", srv.port);
    assert_memory_equal(rq_error(q), want, strlen(want));
    rq_free(q);

    /* The CLI: exit 2, one line. */
    setenv("SALVO_REDIS_URL", url, 1);
    unsetenv("SALVO_CONFIG");
    const char *argv[] = {tu_salvo_bin(), "queue", "stats", NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 30, &r), 0);
    assert_int_equal(r.status, 2);
    snprintf(want, sizeof(want), "salvo: redis 127.0.0.1:%d: authentication failed: WRONGPASS",
             srv.port);
    assert_memory_equal(r.err, want, strlen(want));
    assert_non_null(strchr(r.err, '\n'));
    assert_null(strchr(r.err, '\n') + 1 < r.err + r.err_len ? r.err : NULL);
    tu_result_free(&r);

    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/4", srv.port);
    q = new_q(url);
    assert_int_equal(rq_connect(q), 0);
    tq_enqueue(q, 3, 1);
    rq_free(q);
    /* db 4 was selected: the keys are there, not in db 0. */
    const char *args[] = {"-a", "s3cret", "--no-auth-warning", "-n", "4", "DBSIZE", NULL};
    assert_true(tu_redis_int(&srv, args) >= 5);
    tu_redis_stop(&srv);
}

static void unix_socket_and_db(void **state)
{
    (void)state;
    struct tu_redis srv;
    char *sockdir = tu_mkdtemp();
    char sock[300], url[320];
    snprintf(sock, sizeof(sock), "%s/r.sock", sockdir);
    const char *extra[] = {"--unixsocket", sock, NULL};
    assert_int_equal(tu_redis_start(&srv, false, extra), 0);
    snprintf(url, sizeof(url), "unix://%s?db=2", sock);
    struct rq *q = new_q(url);
    assert_string_equal(rq_address(q), sock);
    assert_int_equal(rq_connect(q), 0);
    tq_enqueue(q, 2, 1);
    tq_stats(q, 0, 2, 0, 0, 0, 0, 0);
    rq_free(q);
    const char *args[] = {"-n", "2", "EXISTS", "salvo:{err}:ready", NULL};
    assert_int_equal(tu_redis_int(&srv, args), 1);
    tu_redis_stop(&srv);
    tu_rmtree(sockdir);
    free(sockdir);
}

static void out_of_memory(void **state)
{
    (void)state;
    struct tu_redis srv;
    const char *extra[] = {"--maxmemory", "3mb", "--maxmemory-policy", "noeviction", NULL};
    assert_int_equal(tu_redis_start(&srv, false, extra), 0);
    struct rq *q = new_q(srv.url);
    assert_int_equal(rq_connect(q), 0);
    size_t len = 512 * 1024;
    char *body = malloc(len);
    memset(body, 'x', len);
    struct rq_msg_spec spec = {.from = "a@b.example", .body = body, .body_len = len};
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++) {
        struct rq_enq *e;
        uint64_t id;
        rc = rq_enq_begin(q, &spec, &e, &id);
        if (rc == 0 && (rc = rq_enq_add(e, "x@y.example", NULL)) != 0)
            rq_enq_free(e);
        else if (rc == 0)
            rc = rq_enq_end(e);
    }
    free(body);
    assert_int_equal(rc, -ENOMEM);
    char want[160];
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: out of memory (maxmemory reached): OOM",
             srv.port);
    assert_memory_equal(rq_error(q), want, strlen(want));
    /* Reading still works. */
    struct rq_stats st;
    assert_int_equal(rq_stats_get(q, 0, &st), 0);
    /* The CLI: exit 2, the address and the reason on one line. */
    setenv("SALVO_REDIS_URL", srv.url, 1);
    unsetenv("SALVO_CONFIG");
    const char *argv[] = {tu_salvo_bin(), "enqueue",     "--from", "a@b.example",
                          "--to",         "c@d.example", NULL};
    struct tu_result r;
    char big[300 * 1024];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(tu_run(argv, big, 30, &r), 0);
    assert_int_equal(r.status, 2);
    snprintf(want, sizeof(want),
             "salvo: redis 127.0.0.1:%d: out of memory (maxmemory reached): OOM", srv.port);
    assert_memory_equal(r.err, want, strlen(want));
    assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)r.err_len);
    tu_result_free(&r);
    rq_free(q);
    tu_redis_stop(&srv);
}

static struct tu_result cli(const char *input, const char *const *args)
{
    const char *argv[16] = {tu_salvo_bin()};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    struct tu_result r;
    assert_int_equal(tu_run(argv, input, 30, &r), 0);
    return r;
}
#define CLI(input, ...) cli(input, (const char *const[]){__VA_ARGS__, NULL})

static long long dbsize(const struct tu_redis *srv)
{
    const char *args[] = {"DBSIZE", NULL};
    return tu_redis_int(srv, args);
}

/* The operator's read-only commands print the right counts on `srv`, where the
 * queue holds message 1 (two recipients, ready) and message 2 (campaign "c1", one). */
static void reads_work(const struct tu_redis *srv)
{
    setenv("SALVO_REDIS_URL", srv->url, 1);
    long long keys = dbsize(srv);
    struct tu_result r = CLI(NULL, "queue", "stats", "--json");
    assert_string_equal(r.err, "");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out,
                        "{\"ready\": 3, \"scheduled\": 0, \"inflight\": 0, \"delivered\": 0, "
                        "\"bounced\": 0, \"dead\": 0, \"duplicates\": 0, \"reclaimed\": 0}\n");
    tu_result_free(&r);
    r = CLI(NULL, "queue", "stats", "--json", "--campaign", "c1");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "{\"message\": 2, \"ready\": 1, "));
    tu_result_free(&r);
    r = CLI(NULL, "queue", "list");
    assert_int_equal(r.status, 0);
    char *l2 = strchr(r.out, '\n') + 1, *l1 = strchr(l2, '\n') + 1;
    /* ID CREATED STATE CAMPAIGN TOTAL PENDING DELIVERED BOUNCED DEAD, newest first */
    char tail[128];
    assert_memory_equal(l2, "2 ", 2);
    snprintf(tail, sizeof(tail), " %-10s %-16s %8d %8d %9d %7d %6d\n", "pending", "c1", 1, 1, 0, 0,
             0);
    assert_non_null(strstr(l2, tail));
    assert_memory_equal(l1, "1 ", 2);
    snprintf(tail, sizeof(tail), " %-10s %-16s %8d %8d %9d %7d %6d\n", "pending", "-", 2, 2, 0, 0,
             0);
    assert_non_null(strstr(l1, tail));
    assert_null(strchr(l1, '\n')[1] ? l1 : NULL); /* two messages, no more */
    tu_result_free(&r);
    r = CLI(NULL, "queue", "show", "1");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "from       a@b.example\ncampaign   -\n"));
    assert_non_null(strstr(r.out, "recipients 2\nready      2\nscheduled  0\n"));
    tu_result_free(&r);
    assert_int_equal(dbsize(srv), keys);
}

/* Enqueues message 1 (two recipients) and campaign "c1" (one) with the CLI. */
static void enqueue_two(const struct tu_redis *srv, const char *dir)
{
    setenv("SALVO_REDIS_URL", srv->url, 1);
    struct tu_result r = CLI("Subject: x\n\nbody\n", "enqueue", "--from", "a@b.example", "--to",
                             "c@d.example,e@d.example");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "1\n");
    tu_result_free(&r);
    char *csv = tu_write_file(dir, "c.csv", "email\nf@g.example\n");
    char *tpl = tu_write_file(dir, "t.eml", "Subject: y\n\nbody\n");
    r = CLI(NULL, "enqueue", "--from", "a@b.example", "--recipients", csv, "--template", tpl,
            "--campaign", "c1");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "2\n");
    tu_result_free(&r);
    free(csv);
    free(tpl);
}

/* A write command gets exit 2 and one line with the reason. */
static void write_refused(const struct tu_redis *srv, const char *why)
{
    setenv("SALVO_REDIS_URL", srv->url, 1);
    char want[200];
    snprintf(want, sizeof(want), "salvo: redis 127.0.0.1:%d: %s", srv->port, why);
    struct tu_result r = CLI(NULL, "queue", "cancel", "1");
    assert_int_equal(r.status, 2);
    assert_memory_equal(r.err, want, strlen(want));
    assert_int_equal(strchr(r.err, '\n') - r.err + 1, (long)r.err_len);
    tu_result_free(&r);
    r = CLI("Subject: x\n\nbody\n", "enqueue", "--from", "a@b.example", "--to", "c@d.example");
    assert_int_equal(r.status, 2);
    assert_memory_equal(r.err, want, strlen(want));
    tu_result_free(&r);
}

/* An operator points stats/list/show at a replica: they read; writes are refused. */
static void readonly_replica(void **state)
{
    (void)state;
    unsetenv("SALVO_CONFIG");
    char *dir = tu_mkdtemp();
    struct tu_redis master, replica;
    assert_int_equal(tu_redis_start(&master, false, NULL), 0);
    enqueue_two(&master, dir);
    char port[16];
    snprintf(port, sizeof(port), "%d", master.port);
    const char *extra[] = {"--replicaof", "127.0.0.1", port, NULL};
    assert_int_equal(tu_redis_start(&replica, false, extra), 0);
    /* Wait for the initial sync (up to 10 s). */
    const char *role[] = {"INFO", "replication", NULL};
    for (int i = 0; i < 200; i++) {
        char *info = tu_redis_cli(&replica, role);
        bool up = info && strstr(info, "master_link_status:up");
        free(info);
        if (up && dbsize(&replica) == dbsize(&master))
            break;
        tq_sleep_ms(50);
    }
    assert_int_equal(dbsize(&replica), dbsize(&master));

    struct rq *q = new_q(replica.url);
    assert_int_equal(rq_connect(q), -EROFS);
    char want[128];
    snprintf(want, sizeof(want),
             "redis 127.0.0.1:%d: read-only replica: writes must go to the master", replica.port);
    assert_string_equal(rq_error(q), want);
    rq_free(q);
    /* A read-only handle connects and reads; a script is refused without a round trip. */
    struct rq_opts o = {.url = replica.url, .queue = "default", .read_only = true};
    assert_int_equal(rq_new(&o, &q), 0);
    assert_int_equal(rq_connect(q), 0);
    tq_stats(q, 0, 3, 0, 0, 0, 0, 0);
    int64_t n;
    assert_int_equal(rq_msg_cancel(q, 1, &n), -EROFS);
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: cancel: this handle was opened read-only",
             replica.port);
    assert_string_equal(rq_error(q), want);
    rq_free(q);

    reads_work(&replica);
    write_refused(&replica, "read-only replica: writes must go to the master\n");
    tu_redis_stop(&replica);
    tu_redis_stop(&master);
    tu_rmtree(dir);
    free(dir);
}

/* A Redis at maxmemory (noeviction) still answers reads: so do stats/list/show. */
static void readonly_at_maxmemory(void **state)
{
    (void)state;
    unsetenv("SALVO_CONFIG");
    char *dir = tu_mkdtemp();
    struct tu_redis srv;
    const char *extra[] = {"--maxmemory-policy", "noeviction", NULL};
    assert_int_equal(tu_redis_start(&srv, false, extra), 0);
    /* Pointing the read commands at a Redis creates nothing there. */
    setenv("SALVO_REDIS_URL", srv.url, 1);
    struct tu_result r = CLI(NULL, "queue", "stats");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "ready      0\nscheduled  0\ninflight   0\ndelivered  0\n"
                               "bounced    0\ndead       0\n");
    tu_result_free(&r);
    r = CLI(NULL, "queue", "list");
    assert_int_equal(r.status, 0);
    assert_null(strchr(r.out, '\n') + 1 < r.out + r.out_len ? r.out : NULL); /* header only */
    tu_result_free(&r);
    r = CLI(NULL, "queue", "show", "1");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: no message or campaign '1' in this queue\n");
    tu_result_free(&r);
    assert_int_equal(dbsize(&srv), 0);

    enqueue_two(&srv, dir);
    /* Every byte is now over the limit: each write command is refused with OOM. */
    const char *full[] = {"CONFIG", "SET", "maxmemory", "1", NULL};
    free(tu_redis_cli(&srv, full));
    const char *probe[] = {"SET", "k", "v", NULL};
    char *oom = tu_redis_cli(&srv, probe);
    assert_non_null(oom);
    assert_memory_equal(oom, "OOM", 3);
    free(oom);
    reads_work(&srv);
    write_refused(&srv, "out of memory (maxmemory reached): OOM");
    tu_redis_stop(&srv);
    tu_rmtree(dir);
    free(dir);
}

/* The queue tests run Redis as production should: AOF on, fsync every second unless a
 * test asks for every write (the crash test). */
static void test_redis_runs_with_aof(void **state)
{
    (void)state;
    struct tu_redis srv;
    const char *aof[] = {"CONFIG", "GET", "append*", NULL};
    assert_int_equal(tu_redis_start(&srv, false, NULL), 0);
    char *s = tu_redis_cli(&srv, aof);
    assert_non_null(s);
    assert_non_null(strstr(s, "appendonly\nyes"));
    assert_non_null(strstr(s, "appendfsync\neverysec"));
    free(s);
    tu_redis_stop(&srv);
    assert_int_equal(tu_redis_start(&srv, true, NULL), 0);
    s = tu_redis_cli(&srv, aof);
    assert_non_null(s);
    assert_non_null(strstr(s, "appendonly\nyes"));
    assert_non_null(strstr(s, "appendfsync\nalways"));
    free(s);
    tu_redis_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_forms),
        cmocka_unit_test(address_rules),
        cmocka_unit_test(password_errors),
        cmocka_unit_test(unix_socket_and_db),
        cmocka_unit_test(out_of_memory),
        cmocka_unit_test(readonly_replica),
        cmocka_unit_test(readonly_at_maxmemory),
        cmocka_unit_test(test_redis_runs_with_aof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
