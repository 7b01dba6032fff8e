/* salvo-sink STARTTLS: sessions from another TLS library (openssl s_client) and from
 * our own client (salvo tls probe), SNI picking the pair, full vs resumed handshake
 * counters, plaintext after STARTTLS dropped, no-starttls, certificate errors at
 * start-up, SIGHUP reload (good and bad files). Certificates are made at test time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_sink_util.h"
#include "test_tls_helpers.h"
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *g_dir;

static int setup(void **state)
{
    (void)state;
    g_dir = tu_mkdtemp();
    return g_dir && tt_make_certs(g_dir) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void counter(const char *json, const char *key, uint64_t want)
{
    uint64_t got = ts_json_u64(json, key);
    if (got != want)
        fail_msg("%s: expected %llu, got %llu in %s", key, (unsigned long long)want,
                 (unsigned long long)got, json);
}

static void has(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected '%s' in:\n%s", needle, hay);
}

/* openssl s_client -starttls smtp, feeding `input` after the handshake. */
static void s_client(int port, const char *servername, const char *sess_flag, const char *sess,
                     const char *input, struct tu_result *r)
{
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
    const char *argv[] = {"openssl",
                          "s_client",
                          "-starttls",
                          "smtp",
                          "-connect",
                          connect,
                          "-servername",
                          servername,
                          "-CAfile",
                          tt_path(g_dir, "ca.pem"),
                          "-verify_return_error",
                          "-ign_eof",
                          sess_flag,
                          sess,
                          NULL};
    assert_int_equal(tu_run(argv, input, 30, r), 0);
}

static void starttls_sessions_and_resumption(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--threads",  "2",
                          "--tls-cert", tt_path(g_dir, "wild.pem"),
                          "--tls-key",  tt_path(g_dir, "wild.key"),
                          "--tls-cert", tt_path(g_dir, "other.pem"),
                          "--tls-key",  tt_path(g_dir, "other.key"),
                          NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);

    /* Plain EHLO offers STARTTLS. */
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 5000), 220);
    assert_int_equal(ts_send(c, "EHLO x\r\n"), 0);
    char text[4096];
    assert_int_equal(ts_reply(c, text, sizeof(text), 5000), 250);
    has(text, "250-STARTTLS\r\n");
    ts_close(c);
    free(c);

    /* A whole transaction over TLS from OpenSSL (default pair: *.example.test). */
    char sess[600];
    snprintf(sess, sizeof(sess), "%s/s_client.sess", g_dir);
    const char *smtp = "EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
                       "Message-ID: <tls@x.test>\r\n\r\nover TLS\r\n.\r\nQUIT\r\n";
    struct tu_result r;
    s_client(s.port, "mx.example.test", "-sess_out", sess, smtp, &r);
    has(r.out, "New, TLSv1.3");
    has(r.out, "Verify return code: 0 (ok)");
    has(r.out, "subject=CN = wild");
    has(r.out, "250 2.0.0 Ok: queued as");
    has(r.out, "221 2.0.0 Bye");
    if (strstr(r.out, "250-STARTTLS")) /* EHLO after TLS must not offer it again */
        fail_msg("STARTTLS offered inside TLS:\n%s", r.out);
    tu_result_free(&r);
    /* Resumed with the ticket it got. */
    s_client(s.port, "mx.example.test", "-sess_in", sess, "QUIT\r\n", &r);
    has(r.out, "Reused, TLSv1.3");
    tu_result_free(&r);

    /* Our own client: SNI other.test selects the second pair; then resumes twice. */
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", s.port);
    const char *probe[] = {
        tu_salvo_bin(), "tls",        "probe",      "--connect", connect,
        "--servername", "other.test", "--starttls", "--ca",      tt_path(g_dir, "ca.pem"),
        "--repeat",     "3",          "--json",     NULL};
    assert_int_equal(tu_run(probe, NULL, 30, &r), 0);
    if (r.status != 0)
        fail_msg("probe exit %d: %s %s", r.status, r.out, r.err);
    char *l2 = strchr(r.out, '\n');
    assert_non_null(l2);
    *l2++ = '\0';
    has(r.out, "\"verified\":true,\"resumed\":false,\"peer_names\":[\"other.test\"]");
    has(l2, "\"verified\":true,\"resumed\":true");
    tu_result_free(&r);

    char json[4096];
    assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
    counter(json, "tls_handshakes_full", 2);
    counter(json, "tls_handshakes_resumed", 3);
    counter(json, "tls_handshakes_failed", 0);
    counter(json, "transactions", 1);
    counter(json, "pairs", 1);
    counter(json, "bytes", strlen("Message-ID: <tls@x.test>\r\n\r\nover TLS\r\n"));
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

/* RFC 3207 4.2: what the client pipelined after STARTTLS is not acted upon. */
/* Many connections of one client thread share one session cache and resume at the same
 * time (what a pool of connections to one MX does). A TLS 1.3 session cached before its
 * connection received a new ticket paired the old ticket with the new resumption secret,
 * and the sink failed those handshakes ("binder does not verify"). */
static void concurrent_resumption_from_one_cache(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--threads",
                          "1",
                          "--no-track",
                          "--tls-cert",
                          tt_path(g_dir, "wild.pem"),
                          "--tls-key",
                          tt_path(g_dir, "wild.key"),
                          NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", s.port);
    const char *load = getenv("SALVO_SINK_LOAD_BIN");
    assert_non_null(load);
    const char *argv[] = {load,         "--connect", target,   "--connections", "30",
                          "--messages", "1200",      "--size", "500",           "--starttls",
                          "--per-conn", "2",         NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 60, &r), 0);
    printf("%s", r.out);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"errors\":0,"));
    uint64_t client_handshakes = ts_json_u64(r.out, "tls_full") + ts_json_u64(r.out, "tls_resumed");
    tu_result_free(&r);

    char json[4096];
    assert_int_equal(ts_sink_stop(&s, json, sizeof(json)), 0);
    counter(json, "transactions", 1200);
    counter(json, "tls_handshakes_failed", 0);
    uint64_t full = ts_json_u64(json, "tls_handshakes_full");
    uint64_t resumed = ts_json_u64(json, "tls_handshakes_resumed");
    assert_int_equal(full + resumed, client_handshakes);
    assert_true(client_handshakes >= 600); /* 1200 messages, 2 per connection */
    /* Only the first 30 connections need full handshakes; every reconnect resumes. */
    assert_true(full <= 30);
}

static void plaintext_after_starttls_dropped(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--tls-cert", tt_path(g_dir, "wild.pem"), "--tls-key",
                          tt_path(g_dir, "wild.key"), NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 5000), 220);
    assert_int_equal(ts_send(c, "EHLO x\r\nSTARTTLS\r\nNOOP\r\nNOOP\r\n"), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 5000), 250);
    char text[256];
    assert_int_equal(ts_reply(c, text, sizeof(text), 5000), 220);
    has(text, "220 2.0.0 Ready to start TLS");
    ts_close(c); /* leave mid-handshake */
    free(c);
    char json[4096];
    for (int i = 0; i < 100; i++) { /* the sink notices the close asynchronously */
        assert_int_equal(ts_sink_stats(&s, json, sizeof(json)), 0);
        if (ts_json_u64(json, "connections_open") == 0)
            break;
        usleep(20000);
    }
    counter(json, "commands", 2);
    counter(json, "tls_handshakes_failed", 1);
    counter(json, "connections_open", 0);
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

/* --fault no-starttls: certificates loaded, STARTTLS neither offered nor accepted. */
static void no_starttls_fault(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--tls-cert", tt_path(g_dir, "wild.pem"),
                          "--tls-key",  tt_path(g_dir, "wild.key"),
                          "--fault",    "no-starttls",
                          NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 5000), 220);
    assert_int_equal(ts_send(c, "EHLO x\r\nSTARTTLS\r\n"), 0);
    char text[4096];
    assert_int_equal(ts_reply(c, text, sizeof(text), 5000), 250);
    assert_null(strstr(text, "STARTTLS"));
    assert_int_equal(ts_reply(c, text, sizeof(text), 5000), 502);
    ts_close(c);
    free(c);
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

/* Unreadable, mismatched, expired: exit 1 at start-up, one line naming the file. */
static void bad_certificates_refused(void **state)
{
    (void)state;
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing.key", g_dir);
    struct {
        const char *cert, *key;
        char want[1200];
    } cases[3];
    cases[0].cert = tt_path(g_dir, "wild.pem");
    cases[0].key = missing;
    snprintf(cases[0].want, sizeof(cases[0].want),
             "salvo-sink: tls: cannot read key %s: No such file or directory\n", missing);
    cases[1].cert = strdup(tt_path(g_dir, "wild.pem"));
    cases[1].key = strdup(tt_path(g_dir, "other.key"));
    snprintf(cases[1].want, sizeof(cases[1].want),
             "salvo-sink: tls: key %s does not match certificate %s\n", cases[1].key,
             cases[1].cert);
    cases[2].cert = strdup(tt_path(g_dir, "expired.pem"));
    cases[2].key = strdup(tt_path(g_dir, "expired.key"));
    snprintf(cases[2].want, sizeof(cases[2].want), "salvo-sink: tls: certificate %s expired on",
             cases[2].cert);
    for (int i = 0; i < 3; i++) {
        const char *argv[] = {ts_sink_bin(), "--listen",  "127.0.0.1:0", "--tls-cert",
                              cases[i].cert, "--tls-key", cases[i].key,  NULL};
        struct tu_result r;
        assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
        assert_int_equal(r.status, 1);
        if (i < 2)
            assert_string_equal(r.err, cases[i].want);
        else
            has(r.err, cases[i].want);
        assert_null(strstr(r.err, "listening")); /* never started serving */
        tu_result_free(&r);
    }
    for (int i = 1; i < 3; i++) {
        free((char *)cases[i].cert);
        free((char *)cases[i].key);
    }
}

static void copy(const char *from, const char *to)
{
    const char *argv[] = {"cp", from, to, NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
}

static void wait_log(struct ts_sink *s, const char *needle)
{
    for (int i = 0; i < 200; i++) {
        char *err = ts_sink_stderr(s);
        bool found = strstr(err, needle) != NULL;
        free(err);
        if (found)
            return;
        usleep(20000);
    }
    char *err = ts_sink_stderr(s);
    fail_msg("no '%s' in the sink's log:\n%s", needle, err);
}

/* The names the sink presents to a client asking for `sni` (insecure: any cert). */
static void probe_names(int port, const char *sni, const char *want)
{
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
    const char *probe[] = {tu_salvo_bin(), "tls",          "probe", "--connect",
                           connect,        "--servername", sni,     "--starttls",
                           "--insecure",   "--json",       NULL};
    struct tu_result r;
    assert_int_equal(tu_run(probe, NULL, 30, &r), 0);
    has(r.out, want);
    tu_result_free(&r);
}

/* SIGHUP loads the files again: good files are swapped in, bad ones are refused and
 * the current certificates stay in service. */
static void sighup_reload(void **state)
{
    (void)state;
    char cert[600], key[600];
    snprintf(cert, sizeof(cert), "%s/live.pem", g_dir);
    snprintf(key, sizeof(key), "%s/live.key", g_dir);
    copy(tt_path(g_dir, "wild.pem"), cert);
    copy(tt_path(g_dir, "wild.key"), key);
    struct ts_sink s;
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    probe_names(s.port, "mx.example.test", "\"peer_names\":[\"*.example.test\",\"example.test\"]");

    copy(tt_path(g_dir, "other.pem"), cert);
    copy(tt_path(g_dir, "other.key"), key);
    kill(s.pid, SIGHUP);
    wait_log(&s, "SIGHUP: reloaded 1 certificate/key pair(s)");
    probe_names(s.port, "other.test", "\"peer_names\":[\"other.test\"]");

    copy(tt_path(g_dir, "wild.key"), key); /* now the key does not match */
    kill(s.pid, SIGHUP);
    wait_log(&s, "SIGHUP: reload failed, keeping the current certificates: tls: key");
    probe_names(s.port, "other.test", "\"peer_names\":[\"other.test\"]");
    assert_int_equal(ts_sink_stop(&s, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(starttls_sessions_and_resumption),
        cmocka_unit_test(concurrent_resumption_from_one_cache),
        cmocka_unit_test(plaintext_after_starttls_dropped),
        cmocka_unit_test(no_starttls_fault),
        cmocka_unit_test(bad_certificates_refused),
        cmocka_unit_test(sighup_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
