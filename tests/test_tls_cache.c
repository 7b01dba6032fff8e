/* The client side in-process: the transport table (plain -> tls in place), non-blocking
 * handshakes driven by poll, and the per-MX session cache (resumption counts, keying by
 * verification mode, LRU eviction, expiry, nothing stored for failed verification). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_tls_helpers.h"
#include "testutil.h"
#include "tls.h"

static char *dir;
static struct tls_server *srv;
static struct tt_smtpd *smtpd;
static int port;
static struct tls_client *cl;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    if (!dir || tt_make_certs(dir) != 0 || tls_global_init() != 0)
        return -1;
    struct tls_cert_pair p = {tt_path(dir, "wild.pem"), tt_path(dir, "wild.key")};
    char err[512];
    if (tls_server_new(&p, 1, &srv, err, sizeof(err)) != 0)
        return -1;
    smtpd = tt_smtpd_start(srv, TT_IMPLICIT, &port);
    struct tls_client_opts o = {.ca_file = tt_path(dir, "ca.pem")};
    if (!smtpd || tls_client_new(&o, &cl, err, sizeof(err)) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tt_smtpd_stop(smtpd);
    tls_server_free(srv);
    tls_client_free(cl);
    tls_thread_cleanup();
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static int wait_for(int fd, int want)
{
    struct pollfd p = {fd, want == TLS_IO_WANT_WRITE ? POLLOUT : POLLIN, 0};
    return poll(&p, 1, 10000) == 1 ? 0 : -1;
}

struct outcome {
    int rc; /* 0 or TLS_IO_ERROR */
    bool resumed, verified;
    char transport_before[8], transport_after[8];
    char error[512];
    enum tls_err kind;
};

/* One connection: connect, upgrade to TLS in place, handshake, a line of data,
 * close_notify, read to EOF (where TLS 1.3 tickets arrive). */
static struct outcome connect_once(const char *host, enum tls_verify mode,
                                   struct tls_session_cache *cache)
{
    struct outcome o;
    memset(&o, 0, sizeof(o));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
    assert_true(r == 0 || wait_for(fd, TLS_IO_WANT_WRITE) == 0);
    struct tls_conn *c = NULL;
    assert_int_equal(tls_conn_new_plain(fd, &c), 0);
    snprintf(o.transport_before, sizeof(o.transport_before), "%s", tls_conn_transport(c));
    assert_false(tls_conn_is_tls(c));
    assert_int_equal(tls_conn_start_client(c, cl, host, (uint16_t)port, mode, cache), 0);
    snprintf(o.transport_after, sizeof(o.transport_after), "%s", tls_conn_transport(c));
    /* Upgrading twice is refused. */
    assert_int_equal(tls_conn_start_client(c, cl, host, (uint16_t)port, mode, cache), -EINVAL);
    for (;;) {
        int h = tls_conn_handshake(c);
        if (h == 0)
            break;
        if (h == TLS_IO_ERROR) {
            o.rc = h;
            o.kind = tls_conn_error_kind(c);
            snprintf(o.error, sizeof(o.error), "%s", tls_conn_error(c));
            tls_conn_free(c);
            return o;
        }
        assert_int_equal(wait_for(fd, h), 0);
    }
    struct tls_info in;
    assert_int_equal(tls_conn_info(c, &in), 0);
    o.resumed = in.resumed;
    o.verified = in.verified;
    const char *line = "hello over tls\n";
    size_t off = 0;
    while (off < strlen(line)) {
        ssize_t n = tls_conn_write(c, line + off, strlen(line) - off);
        if (n > 0)
            off += (size_t)n;
        else
            assert_int_equal(wait_for(fd, (int)n), 0);
    }
    int s;
    while ((s = tls_conn_shutdown(c)) != 0)
        assert_int_equal(wait_for(fd, s), 0);
    char buf[256];
    for (;;) {
        ssize_t n = tls_conn_read(c, buf, sizeof(buf));
        if (n == 0 || n == TLS_IO_ERROR)
            break;
        if (n < 0)
            assert_int_equal(wait_for(fd, (int)n), 0);
    }
    tls_conn_free(c);
    return o;
}

static void transport_swaps_in_place_and_resumes(void **state)
{
    (void)state;
    struct tls_session_cache *cache = NULL;
    assert_int_equal(tls_session_cache_new(8, 3600, &cache), 0);
    struct tls_server_stats before, after;
    tls_server_stats(&before);
    for (int i = 0; i < 3; i++) {
        struct outcome o = connect_once("mail.example.test", TLS_VERIFY_STRICT, cache);
        assert_int_equal(o.rc, 0);
        assert_string_equal(o.transport_before, "plain");
        assert_string_equal(o.transport_after, "tls");
        assert_true(o.verified);
        assert_int_equal(o.resumed, i > 0);
    }
    struct tls_cache_stats st;
    tls_session_cache_stats(cache, &st);
    assert_int_equal(st.full_handshakes, 1);
    assert_int_equal(st.resumed_handshakes, 2);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.hits, 2);
    /* The server side counted the same (its handshake ends before our EOF arrives). */
    tls_server_stats(&after);
    assert_int_equal(after.full_handshakes - before.full_handshakes, 1);
    assert_int_equal(after.resumed_handshakes - before.resumed_handshakes, 2);
    assert_int_equal(after.failed_handshakes - before.failed_handshakes, 0);
    tls_session_cache_free(cache);
}

static void allow_invalid_sessions_never_serve_strict(void **state)
{
    (void)state;
    struct tls_session_cache *cache = NULL;
    assert_int_equal(tls_session_cache_new(8, 3600, &cache), 0);
    /* wrong name: allowed, unverified, cached under allow-invalid */
    struct outcome o = connect_once("mx.wrong.test", TLS_VERIFY_ALLOW_INVALID, cache);
    assert_int_equal(o.rc, 0);
    assert_false(o.verified);
    o = connect_once("mx.wrong.test", TLS_VERIFY_ALLOW_INVALID, cache);
    assert_true(o.resumed);
    assert_false(o.verified); /* the facts come from the cached session */
    /* Strict to the same host: no session offered, full handshake, refused. */
    o = connect_once("mx.wrong.test", TLS_VERIFY_STRICT, cache);
    assert_int_equal(o.rc, TLS_IO_ERROR);
    assert_int_equal(o.kind, TLS_ERR_HOSTNAME);
    assert_string_equal(o.error, "host name mismatch: wanted mx.wrong.test, certificate has "
                                 "*.example.test, example.test");
    struct tls_cache_stats st;
    tls_session_cache_stats(cache, &st);
    assert_int_equal(st.full_handshakes, 1);
    assert_int_equal(st.resumed_handshakes, 1);
    assert_int_equal(st.entries, 1); /* the failed strict connection stored nothing */
    tls_session_cache_free(cache);
}

static void lru_evicts_oldest(void **state)
{
    (void)state;
    struct tls_session_cache *cache = NULL;
    assert_int_equal(tls_session_cache_new(2, 3600, &cache), 0);
    assert_false(connect_once("a.example.test", TLS_VERIFY_STRICT, cache).resumed);
    assert_false(connect_once("b.example.test", TLS_VERIFY_STRICT, cache).resumed);
    assert_true(connect_once("a.example.test", TLS_VERIFY_STRICT, cache).resumed);  /* a newest */
    assert_false(connect_once("c.example.test", TLS_VERIFY_STRICT, cache).resumed); /* evicts b */
    assert_false(connect_once("b.example.test", TLS_VERIFY_STRICT, cache).resumed); /* evicts a */
    assert_true(connect_once("c.example.test", TLS_VERIFY_STRICT, cache).resumed);
    struct tls_cache_stats st;
    tls_session_cache_stats(cache, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.full_handshakes, 4);
    assert_int_equal(st.resumed_handshakes, 2);
    tls_session_cache_free(cache);
}

static void entries_expire(void **state)
{
    (void)state;
    struct tls_session_cache *cache = NULL;
    assert_int_equal(tls_session_cache_new(4, 1, &cache), 0);
    assert_false(connect_once("mail.example.test", TLS_VERIFY_STRICT, cache).resumed);
    sleep(2);
    assert_false(connect_once("mail.example.test", TLS_VERIFY_STRICT, cache).resumed);
    struct tls_cache_stats st;
    tls_session_cache_stats(cache, &st);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.full_handshakes, 2);
    tls_session_cache_free(cache);
}

static void bad_cache_arguments(void **state)
{
    (void)state;
    struct tls_session_cache *cache = NULL;
    assert_int_equal(tls_session_cache_new(0, 10, &cache), -EINVAL);
    assert_null(cache);
    tls_session_cache_free(NULL);
    tls_conn_free(NULL);
    tls_client_free(NULL);
    tls_server_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transport_swaps_in_place_and_resumes),
        cmocka_unit_test(allow_invalid_sessions_never_serve_strict),
        cmocka_unit_test(lru_evicts_oldest),
        cmocka_unit_test(entries_expire),
        cmocka_unit_test(bad_cache_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
