/* `salvo tls probe` against real servers: openssl s_server (implicit TLS, another TLS
 * library), a python3 ssl STARTTLS server (OpenSSL again, SMTP), and our own server
 * store (STARTTLS + SNI + tickets). Asserts on the JSON lines and exact error texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_tls_helpers.h"
#include "testutil.h"
#include "tls.h"

#include <wolfssl/options.h>

/* tls/ prefers ChaCha20-Poly1305 when wolfSSL has no AES-NI (tls/tls_int.h); OpenSSL's
 * s_server follows the client's order, our server its own. */
#ifdef WOLFSSL_AESNI
#define WANT_13 "TLS_AES_128_GCM_SHA256"
#define WANT_12 "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
#else
#define WANT_13 "TLS_CHACHA20_POLY1305_SHA256"
#define WANT_12 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
#endif

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    if (!dir || tt_make_certs(dir) != 0)
        return -1;
    return tls_global_init();
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    free(dir);
    return 0;
}

/* openssl s_server on a free port with one cert/key (and extra args); returns pid. */
static pid_t s_server2(int *port, const char *cert, const char *key, const char *extra,
                       const char *extra2)
{
    *port = tu_free_port();
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", *port);
    const char *argv[] = {
        "openssl",          "s_server", "-quiet",          "-accept", portbuf, "-cert",
        tt_path(dir, cert), "-key",     tt_path(dir, key), extra,     extra2,  NULL};
    pid_t pid = tt_spawn(argv);
    assert_true(pid > 0);
    assert_int_equal(tt_wait_port(*port, 5000), 0);
    return pid;
}

static pid_t s_server(int *port, const char *cert, const char *key, const char *extra)
{
    return s_server2(port, cert, key, extra, NULL);
}

struct probe {
    struct tu_result r;
    char *lines[16];
    int n;
};

/* Runs salvo tls probe --json with the given extra args; splits the output lines. */
static void run_probe(struct probe *p, int port, const char *servername, const char *const *extra)
{
    memset(p, 0, sizeof(*p));
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
    const char *argv[24] = {tu_salvo_bin(), "tls",      "probe",  "--connect", connect,
                            "--servername", servername, "--json", "--timeout", "10"};
    int n = 10;
    for (int i = 0; extra && extra[i] && n < 22; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(tu_run(argv, NULL, 60, &p->r), 0);
    for (char *s = p->r.out; *s && p->n < 16;) {
        char *nl = strchr(s, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p->lines[p->n++] = s;
        s = nl + 1;
    }
}

static void probe_free(struct probe *p)
{
    tu_result_free(&p->r);
}

static void has(const char *line, const char *needle)
{
    if (!strstr(line, needle))
        fail_msg("'%s' not in: %s", needle, line);
}

/* The whole JSON line of a failed, unencrypted attempt. */
static void expect_failure_line(const char *line, bool connected, bool starttls, const char *error,
                                const char *cls, const char *kind)
{
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"n\":1,\"connected\":%s,\"starttls\":%s,\"tls\":false,\"version\":null,"
             "\"cipher\":null,\"verified\":false,\"resumed\":false,\"peer_names\":[],"
             "\"unverified_reason\":null,\"error\":\"%s\",\"error_class\":\"%s\","
             "\"error_kind\":\"%s\"}",
             connected ? "true" : "false", starttls ? "true" : "false", error, cls, kind);
    assert_string_equal(line, want);
}

/* ---- openssl s_server: interop, verification outcomes, resumption ------------------- */

/* One probe of an s_server showing `cert`, with the test CA trusted: it must be
 * refused before encryption with exactly `error` (class tls, kind `kind`). */
static void expect_refused(const char *cert, const char *key, const char *servername,
                           const char *error, const char *kind)
{
    int port;
    pid_t pid = s_server(&port, cert, key, NULL);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    struct probe p;
    run_probe(&p, port, servername, args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 1);
    assert_int_equal(p.n, 1);
    expect_failure_line(p.lines[0], true, false, error, "tls", kind);
    probe_free(&p);
}

static void s_server_verified_and_resumed_tls13(void **state)
{
    (void)state;
    int port;
    pid_t pid = s_server(&port, "wild.pem", "wild.key", NULL);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--repeat", "3", NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 3);
    for (int i = 0; i < 3; i++) {
        has(p.lines[i], "\"connected\":true");
        has(p.lines[i], "\"tls\":true");
        has(p.lines[i], "\"version\":\"TLSv1.3\"");
        has(p.lines[i], "\"cipher\":\"" WANT_13 "\"");
        has(p.lines[i], "\"verified\":true");
        has(p.lines[i], "\"peer_names\":[\"*.example.test\",\"example.test\"]");
        has(p.lines[i], "\"error\":null");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
}

static void s_server_verified_and_resumed_tls12(void **state)
{
    (void)state;
    int port;
    pid_t pid = s_server(&port, "wild.pem", "wild.key", "-tls1_2");
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--repeat", "3", NULL};
    struct probe p;
    run_probe(&p, port, "MX.Example.Test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 3);
    for (int i = 0; i < 3; i++) {
        has(p.lines[i], "\"version\":\"TLSv1.2\"");
        has(p.lines[i], "\"cipher\":\"" WANT_12 "\"");
        has(p.lines[i], "\"verified\":true");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
}

static void s_server_tls12_session_ids_resume(void **state)
{
    (void)state;
    int port;
    /* No tickets: resumption through the TLS 1.2 session id alone. */
    pid_t pid = s_server2(&port, "wild.pem", "wild.key", "-tls1_2", "-no_ticket");
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--repeat", "3", NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 3);
    for (int i = 0; i < 3; i++) {
        has(p.lines[i], "\"version\":\"TLSv1.2\"");
        has(p.lines[i], "\"verified\":true");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
}

static void s_server_host_name_mismatch(void **state)
{
    (void)state;
    /* a.b.example.test: two labels under the wildcard. */
    expect_refused("wild.pem", "wild.key", "a.b.example.test",
                   "host name mismatch: wanted a.b.example.test, certificate has "
                   "*.example.test, example.test",
                   "hostname-mismatch");
}

/* An IP-literal reference identity (RFC 6125 6.2.1): verified against an iPAddress
 * SAN with the same address; another address, or the address as a dNSName, fails
 * with the exact reason. */
static void s_server_ip_address_san(void **state)
{
    (void)state;
    int port;
    pid_t pid = s_server(&port, "ipsan.pem", "ipsan.key", NULL);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    struct probe p;
    run_probe(&p, port, "127.0.0.1", args);
    assert_int_equal(p.r.status, 0);
    assert_true(p.n >= 1);
    has(p.lines[0], "\"tls\":true");
    has(p.lines[0], "\"verified\":true");
    has(p.lines[0], "\"peer_names\":[\"IP:127.0.0.1\",\"IP:2001:db8::25\",\"mail.example.test\"]");
    probe_free(&p);
    /* The v6 SAN, written differently (bracketed, zeros spelt out). */
    run_probe(&p, port, "[2001:db8:0:0::25]", args);
    assert_int_equal(p.r.status, 0);
    has(p.lines[0], "\"verified\":true");
    probe_free(&p);
    run_probe(&p, port, "127.0.0.2", args);
    assert_int_equal(p.r.status, 1);
    expect_failure_line(p.lines[0], true, false,
                        "host name mismatch: wanted 127.0.0.2, certificate has IP:127.0.0.1, "
                        "IP:2001:db8::25, mail.example.test",
                        "tls", "hostname-mismatch");
    probe_free(&p);
    tt_stop(pid);
    /* DNS:127.0.0.1 is a name: it never stands for the address. */
    expect_refused("ipdns.pem", "ipdns.key", "127.0.0.1",
                   "host name mismatch: wanted 127.0.0.1, certificate has 127.0.0.1",
                   "hostname-mismatch");
}

static void s_server_expired(void **state)
{
    (void)state;
    expect_refused("expired.pem", "expired.key", "mail.example.test",
                   "certificate expired: expired (depth 0) not valid after "
                   "2020-01-02 00:00:00 UTC",
                   "expired");
}

static void s_server_not_yet_valid(void **state)
{
    (void)state;
    expect_refused("future.pem", "future.key", "mail.example.test",
                   "certificate not yet valid: future (depth 0) not valid before "
                   "2099-01-01 00:00:00 UTC",
                   "not-yet-valid");
}

static void s_server_self_signed_untrusted(void **state)
{
    (void)state;
    int port;
    pid_t pid = s_server(&port, "self.pem", "self.key", NULL);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    assert_int_equal(p.r.status, 1);
    expect_failure_line(p.lines[0], true, false,
                        "untrusted chain: self-signed certificate self (depth 0) is not "
                        "in the trust store",
                        "tls", "untrusted");
    probe_free(&p);

    /* --insecure: encrypted, not verified, the reason kept; exit 0. */
    const char *ins[] = {"--ca", tt_path(dir, "ca.pem"), "--insecure", "--repeat", "2", NULL};
    run_probe(&p, port, "mail.example.test", ins);
    tt_stop(pid);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 2);
    for (int i = 0; i < 2; i++) {
        has(p.lines[i], "\"tls\":true");
        has(p.lines[i], "\"verified\":false");
        has(p.lines[i], "\"unverified_reason\":\"untrusted chain: self-signed certificate self "
                        "(depth 0) is not in the trust store\"");
        has(p.lines[i], "\"error\":null");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
}

static void system_trust_store_does_not_know_the_test_ca(void **state)
{
    (void)state;
    int port;
    pid_t pid = s_server(&port, "wild.pem", "wild.key", NULL);
    struct probe p;
    run_probe(&p, port, "mail.example.test", NULL); /* no --ca: the system bundle */
    tt_stop(pid);
    assert_int_equal(p.r.status, 1);
    has(p.lines[0], "\"error\":\"untrusted chain: issuer salvo test CA of wild (depth 0) is not "
                    "in the trust store\"");
    probe_free(&p);
}

static void old_protocol_refused_with_alert(void **state)
{
    (void)state;
    int port;
    pid_t pid = s_server(&port, "wild.pem", "wild.key", "-tls1_1");
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 1);
    has(p.lines[0], "\"error\":\"handshake failed: peer sent alert protocol_version (70)\"");
    expect_failure_line(p.lines[0], true, false,
                        "handshake failed: peer sent alert protocol_version (70)", "tls", "alert");
    probe_free(&p);
}

/* ---- python3 ssl (OpenSSL) STARTTLS server ------------------------------------------ */

static const char py_server[] =
    "import socket, ssl, sys\n"
    "port, cert, key, offer = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == '1'\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(cert, key)\n"
    "ls = socket.socket()\n"
    "ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "ls.bind(('127.0.0.1', port))\n"
    "ls.listen(8)\n"
    "def line(c):\n"
    "    b = b''\n"
    "    while not b.endswith(b'\\n'):\n"
    "        x = c.recv(1)\n"
    "        if not x:\n"
    "            return None\n"
    "        b += x\n"
    "    return b\n"
    "def serve(c):\n"
    "    c.sendall(b'220 py.test ESMTP\\r\\n')\n"
    "    tls = False\n"
    "    while True:\n"
    "        l = line(c)\n"
    "        if l is None:\n"
    "            return\n"
    "        u = l.upper()\n"
    "        if u.startswith(b'EHLO'):\n"
    "            c.sendall(b'250-py.test\\r\\n250-SIZE 1000000\\r\\n' +\n"
    "                      (b'250 STARTTLS\\r\\n' if offer and not tls else b'250 "
    "8BITMIME\\r\\n'))\n"
    "        elif u.startswith(b'STARTTLS') and offer and not tls:\n"
    "            c.sendall(b'220 2.0.0 ready\\r\\n')\n"
    "            c = ctx.wrap_socket(c, server_side=True)\n"
    "            tls = True\n"
    "        elif u.startswith(b'QUIT'):\n"
    "            c.sendall(b'221 2.0.0 bye\\r\\n')\n"
    "            return\n"
    "        else:\n"
    "            c.sendall(b'502 5.5.2 no\\r\\n')\n"
    "while True:\n"
    "    c, _ = ls.accept()\n"
    "    try:\n"
    "        serve(c)\n"
    "    except Exception as e:\n"
    "        print(e, file=sys.stderr)\n"
    "    finally:\n"
    "        c.close()\n";

static pid_t py_starttls(int *port, bool offer)
{
    char *script = tu_write_file(dir, "starttls_server.py", py_server);
    assert_non_null(script);
    *port = tu_free_port();
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", *port);
    const char *argv[] = {
        "python3",         script, portbuf, tt_path(dir, "wild.pem"), tt_path(dir, "wild.key"),
        offer ? "1" : "0", NULL};
    pid_t pid = tt_spawn(argv);
    free(script);
    assert_true(pid > 0);
    assert_int_equal(tt_wait_port(*port, 10000), 0);
    return pid;
}

static void python_starttls_verified_and_resumed(void **state)
{
    (void)state;
    /* scripts/deps installs python3: missing is a failure, not a skip. */
    assert_int_equal(access("/usr/bin/python3", X_OK), 0);
    int port;
    pid_t pid = py_starttls(&port, true);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--starttls", "--repeat", "3", NULL};
    struct probe p;
    run_probe(&p, port, "smtp.example.test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 3);
    for (int i = 0; i < 3; i++) {
        has(p.lines[i], "\"starttls\":true");
        has(p.lines[i], "\"tls\":true");
        has(p.lines[i], "\"version\":\"TLSv1.3\"");
        has(p.lines[i], "\"verified\":true");
        has(p.lines[i], "\"peer_names\":[\"*.example.test\",\"example.test\"]");
        has(p.lines[i], "\"error\":null");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
}

static void python_no_starttls_offered(void **state)
{
    (void)state;
    /* scripts/deps installs python3: missing is a failure, not a skip. */
    assert_int_equal(access("/usr/bin/python3", X_OK), 0);
    int port;
    pid_t pid = py_starttls(&port, false);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--starttls", NULL};
    struct probe p;
    run_probe(&p, port, "smtp.example.test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 1);
    char want[128];
    snprintf(want, sizeof(want),
             "\"error\":\"no STARTTLS offered by 127.0.0.1:%d in its EHLO reply\"", port);
    has(p.lines[0], want);
    has(p.lines[0], "\"tls\":false");
    snprintf(want, sizeof(want), "no STARTTLS offered by 127.0.0.1:%d in its EHLO reply", port);
    expect_failure_line(p.lines[0], true, true, want, "tls", "no-starttls");
    probe_free(&p);
}

/* ---- our own server store: STARTTLS, SNI, tickets ----------------------------------- */

static struct tls_server *two_pair_store(void)
{
    struct tls_cert_pair pairs[] = {{tt_path(dir, "wild.pem"), tt_path(dir, "wild.key")},
                                    {tt_path(dir, "other.pem"), tt_path(dir, "other.key")}};
    struct tls_server *srv = NULL;
    char err[512] = "";
    assert_int_equal(tls_server_new(pairs, 2, &srv, err, sizeof(err)), 0);
    return srv;
}

static void own_server_starttls_sni_and_resumption(void **state)
{
    (void)state;
    struct tls_server *srv = two_pair_store();
    int port;
    struct tt_smtpd *d = tt_smtpd_start(srv, TT_STARTTLS, &port);
    assert_non_null(d);
    char sni[256];

    /* SNI other.test: the second pair. */
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--starttls", "--repeat", "3", NULL};
    struct probe p;
    run_probe(&p, port, "other.test", args);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 3);
    for (int i = 0; i < 3; i++) {
        has(p.lines[i], "\"verified\":true");
        has(p.lines[i], "\"peer_names\":[\"other.test\"]");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
    tt_smtpd_last_sni(d, sni, sizeof(sni));
    assert_string_equal(sni, "other.test");
    int resumed = 0;
    assert_int_equal(tt_smtpd_handshakes(d, &resumed), 1);
    assert_int_equal(resumed, 2);

    /* SNI under the wildcard: the first pair. */
    const char *one[] = {"--ca", tt_path(dir, "ca.pem"), "--starttls", NULL};
    run_probe(&p, port, "mail.example.test", one);
    assert_int_equal(p.r.status, 0);
    has(p.lines[0], "\"verified\":true");
    has(p.lines[0], "\"peer_names\":[\"*.example.test\",\"example.test\"]");
    probe_free(&p);
    tt_smtpd_last_sni(d, sni, sizeof(sni));
    assert_string_equal(sni, "mail.example.test");

    /* A name no pair has: the default (first) pair, so the client reports a mismatch. */
    run_probe(&p, port, "mx.unknown.test", one);
    assert_int_equal(p.r.status, 1);
    has(p.lines[0], "\"error\":\"host name mismatch: wanted mx.unknown.test, certificate has "
                    "*.example.test, example.test\"");
    probe_free(&p);

    tt_smtpd_stop(d);
    tls_server_free(srv);
}

static void own_server_implicit_tls_resumes(void **state)
{
    (void)state;
    struct tls_server *srv = two_pair_store();
    int port;
    struct tt_smtpd *d = tt_smtpd_start(srv, TT_IMPLICIT, &port);
    assert_non_null(d);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), "--repeat", "3", NULL};
    struct probe p;
    run_probe(&p, port, "example.test", args);
    assert_int_equal(p.r.status, 0);
    assert_int_equal(p.n, 3);
    for (int i = 0; i < 3; i++) {
        has(p.lines[i], "\"verified\":true");
        has(p.lines[i], i == 0 ? "\"resumed\":false" : "\"resumed\":true");
    }
    probe_free(&p);
    tt_smtpd_stop(d);
    tls_server_free(srv);
}

static void own_server_no_starttls(void **state)
{
    (void)state;
    struct tls_server *srv = two_pair_store();
    int port;
    struct tt_smtpd *d = tt_smtpd_start(srv, TT_NO_STARTTLS, &port);
    const char *args[] = {"--starttls", "--insecure", NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    assert_int_equal(p.r.status, 1);
    char want[128];
    snprintf(want, sizeof(want), "no STARTTLS offered by 127.0.0.1:%d in its EHLO reply", port);
    expect_failure_line(p.lines[0], true, true, want, "tls", "no-starttls");
    probe_free(&p);
    tt_smtpd_stop(d);
    tls_server_free(srv);
}

static void cbc_only_server_refused(void **state)
{
    (void)state;
    /* s_server() takes one extra argument; -cipher needs two: start it here. */
    int port = tu_free_port();
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    const char *argv[] = {"openssl",
                          "s_server",
                          "-quiet",
                          "-accept",
                          portbuf,
                          "-cert",
                          tt_path(dir, "wild.pem"),
                          "-key",
                          tt_path(dir, "wild.key"),
                          "-tls1_2",
                          "-cipher",
                          "ECDHE-ECDSA-AES128-SHA",
                          NULL};
    pid_t pid = tt_spawn(argv);
    assert_int_equal(tt_wait_port(port, 5000), 0);
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    tt_stop(pid);
    assert_int_equal(p.r.status, 1);
    has(p.lines[0], "\"error\":\"handshake failed: peer sent alert handshake_failure (40)\"");
    probe_free(&p);
}

/* Our server's policy seen from OpenSSL's client: CBC suites and TLS 1.1 are refused,
 * TLS 1.2 with AEAD works. */
static void own_server_policy_seen_by_openssl_client(void **state)
{
    (void)state;
    struct tls_server *srv = two_pair_store();
    int port;
    struct tt_smtpd *d = tt_smtpd_start(srv, TT_IMPLICIT, &port);
    assert_non_null(d);
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
    struct {
        const char *a, *b, *c;
        int ok;
        const char *want_alert, *want_out;
    } cases[] = {
        {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA", 0, "SSL alert number 40"},
        {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", 0, "SSL alert number 70"},
        {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", 1, NULL},
        {"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", 1, NULL},
        /* the client prefers AES-GCM; our server picks by its own order */
        {"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256", 1, NULL,
         "Cipher is " WANT_13},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[] = {"openssl",
                              "s_client",
                              "-connect",
                              connect,
                              "-servername",
                              "mail.example.test",
                              "-CAfile",
                              tt_path(dir, "ca.pem"),
                              "-verify_return_error",
                              cases[i].a,
                              cases[i].b,
                              cases[i].c,
                              NULL};
        struct tu_result r;
        assert_int_equal(tu_run(argv, "", 20, &r), 0);
        if (cases[i].ok) {
            assert_int_equal(r.status, 0);
            assert_non_null(strstr(r.out, "Verify return code: 0 (ok)"));
            if (cases[i].want_out && !strstr(r.out, cases[i].want_out))
                fail_msg("'%s' not in s_client's output", cases[i].want_out);
        } else {
            assert_int_not_equal(r.status, 0);
            /* refused by our server's alert, not by the client's own policy */
            assert_non_null(strstr(r.err, cases[i].want_alert));
        }
        tu_result_free(&r);
    }
    /* SNI seen from OpenSSL's client: no SNI gets the default (first) pair, other.test
     * the second (the seeds/000 situation, done right). */
    struct {
        const char *sni_opt, *sni, *want;
    } sn[] = {{"-noservername", NULL, "subject=CN = wild"},
              {"-servername", "other.test", "subject=CN = other"},
              {"-servername", "mail.example.test", "subject=CN = wild"}};
    for (size_t i = 0; i < sizeof(sn) / sizeof(sn[0]); i++) {
        const char *argv[] = {"openssl",     "s_client", "-connect",
                              connect,       "-CAfile",  tt_path(dir, "ca.pem"),
                              sn[i].sni_opt, sn[i].sni,  NULL};
        struct tu_result r;
        assert_int_equal(tu_run(argv, "", 20, &r), 0);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, sn[i].want));
        tu_result_free(&r);
    }
    /* TLS 1.2 session tickets from our server, resumed by OpenSSL's client. */
    char sess[600];
    snprintf(sess, sizeof(sess), "%s/s_client.sess", dir);
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"openssl",     "s_client",
                              "-connect",    connect,
                              "-servername", "mail.example.test",
                              "-CAfile",     tt_path(dir, "ca.pem"),
                              "-tls1_2",     i == 0 ? "-sess_out" : "-sess_in",
                              sess,          NULL};
        struct tu_result r;
        assert_int_equal(tu_run(argv, "", 20, &r), 0);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, i == 0 ? "New, TLSv1.2" : "Reused, TLSv1.2"));
        assert_non_null(strstr(r.out, "TLS session ticket:"));
        tu_result_free(&r);
    }
    tt_smtpd_stop(d);
    tls_server_free(srv);
}

static void plain_output_one_line_per_connection(void **state)
{
    (void)state;
    struct tls_server *srv = two_pair_store();
    int port;
    struct tt_smtpd *d = tt_smtpd_start(srv, TT_STARTTLS, &port);
    assert_non_null(d);
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
    const char *argv[] = {tu_salvo_bin(),
                          "tls",
                          "probe",
                          "--connect",
                          connect,
                          "--servername",
                          "example.test",
                          "--starttls",
                          "--ca",
                          tt_path(dir, "ca.pem"),
                          "--repeat",
                          "2",
                          NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 30, &r), 0);
    assert_int_equal(r.status, 0);
    char want[1024];
    snprintf(want, sizeof(want),
             "#1 127.0.0.1:%d starttls TLSv1.3 " WANT_13 " verified=yes resumed=no "
             "names=*.example.test,example.test\n"
             "#2 127.0.0.1:%d starttls TLSv1.3 " WANT_13 " verified=yes resumed=yes "
             "names=*.example.test,example.test\n"
             "handshakes: 1 full, 1 resumed\n",
             port, port);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    tu_result_free(&r);
    tt_smtpd_stop(d);
    tls_server_free(srv);
}

/* A server that reads the ClientHello and hangs up: a precise "closed" error, and with
 * --starttls (it never greets) a timeout. */
static const char py_closer[] = "import socket, sys\n"
                                "s = socket.socket()\n"
                                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
                                "s.listen(8)\n"
                                "while True:\n"
                                "    c, _ = s.accept()\n"
                                "    c.recv(65536)\n"
                                "    c.close()\n";

static void peer_closing_mid_handshake_and_silent_server(void **state)
{
    (void)state;
    /* scripts/deps installs python3: missing is a failure, not a skip. */
    assert_int_equal(access("/usr/bin/python3", X_OK), 0);
    char *script = tu_write_file(dir, "closer.py", py_closer);
    int port = tu_free_port();
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    const char *argv[] = {"python3", script, portbuf, NULL};
    pid_t pid = tt_spawn(argv);
    free(script);
    assert_int_equal(tt_wait_port(port, 10000), 0);
    struct probe p;
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    run_probe(&p, port, "mail.example.test", args);
    assert_int_equal(p.r.status, 1);
    has(p.lines[0], "\"error\":\"handshake failed: connection closed by peer\"");
    expect_failure_line(p.lines[0], true, false, "handshake failed: connection closed by peer",
                        "tls", "closed");
    probe_free(&p);
    const char *st[] = {"--starttls", "--timeout", "1", NULL};
    run_probe(&p, port, "mail.example.test", st);
    tt_stop(pid);
    assert_int_equal(p.r.status, 1);
    has(p.lines[0], "\"error\":\"timed out waiting for an SMTP reply\"");
    /* Connected, then the peer stalled: "io", as the engine says. */
    expect_failure_line(p.lines[0], true, true, "timed out waiting for an SMTP reply", "io",
                        "timeout");
    probe_free(&p);
}

/* ---- error classes: the engine's last_error vocabulary ------------------------------- */

/* A plain TCP server: on each connection sends argv[2] (Python escapes: "" = nothing)
 * and then closes at once ("close") or after reading what the client sends ("wait"). */
/* The sayer binds port 0 and writes the port it got to argv[1]: a port picked in
 * advance may be taken by a parallel test before it binds. */
static const char py_sayer[] = "import os, socket, sys\n"
                               "s = socket.socket()\n"
                               "s.bind(('127.0.0.1', 0))\n"
                               "s.listen(8)\n"
                               "with open(sys.argv[1] + '.tmp', 'w') as f:\n"
                               "    f.write(str(s.getsockname()[1]))\n"
                               "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
                               "say = sys.argv[2].encode().decode('unicode_escape').encode()\n"
                               "while True:\n"
                               "    c, _ = s.accept()\n"
                               "    if say: c.sendall(say)\n"
                               "    if sys.argv[3] == 'wait': c.recv(65536)\n"
                               "    c.close()\n";

static pid_t sayer(int *port, const char *say, const char *mode)
{
    assert_int_equal(access("/usr/bin/python3", X_OK), 0);
    char *script = tu_write_file(dir, "sayer.py", py_sayer);
    const char *portfile = tt_path(dir, "sayer.port");
    unlink(portfile);
    const char *argv[] = {"python3", script, portfile, say, mode, NULL};
    pid_t pid = tt_spawn(argv);
    free(script);
    *port = 0;
    for (int waited = 0; waited < 10000 && *port <= 0; waited += 20) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            if (fscanf(f, "%d", port) != 1)
                *port = 0;
            fclose(f);
        }
        if (*port <= 0)
            usleep(20000);
    }
    assert_true(*port > 0);
    return pid;
}

static void refused_connection_is_class_connection(void **state)
{
    (void)state;
    int port = tu_free_port();
    struct probe p;
    run_probe(&p, port, "mail.example.test", NULL);
    assert_int_equal(p.r.status, 1);
    assert_int_equal(p.n, 1);
    char err[128];
    snprintf(err, sizeof(err), "connect to 127.0.0.1:%d: Connection refused", port);
    expect_failure_line(p.lines[0], false, false, err, "connection", "connect");
    probe_free(&p);
}

static void unresolvable_name_is_class_dns(void **state)
{
    (void)state;
    /* .invalid never resolves (RFC 6761); the resolver's own words are expected. */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo("no-such-host.invalid", "25", &hints, &res);
    assert_int_not_equal(gai, 0);
    const char *argv[] = {tu_salvo_bin(),
                          "tls",
                          "probe",
                          "--connect",
                          "no-such-host.invalid:25",
                          "--servername",
                          "mail.example.test",
                          "--json",
                          NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 60, &r), 0);
    assert_int_equal(r.status, 1);
    char err[256], line[1100];
    snprintf(err, sizeof(err), "cannot resolve no-such-host.invalid: %s", gai_strerror(gai));
    char *nl = strchr(r.out, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
    snprintf(line, sizeof(line), "%.*s", (int)(nl - r.out), r.out);
    expect_failure_line(line, false, false, err, "dns", "dns");
    tu_result_free(&r);
}

static void peer_closing_before_greeting_is_class_connection(void **state)
{
    (void)state;
    int port;
    pid_t pid = sayer(&port, "", "close");
    struct probe p;
    const char *st[] = {"--starttls", NULL};
    run_probe(&p, port, "mail.example.test", st);
    assert_int_equal(p.r.status, 1);
    expect_failure_line(p.lines[0], true, true, "connection closed while waiting for an SMTP reply",
                        "connection", "smtp");
    probe_free(&p);
    tt_stop(pid);
}

static void garbage_and_refused_greeting_are_class_unexpected_reply(void **state)
{
    (void)state;
    int port;
    pid_t pid = sayer(&port, "hello, I am not SMTP\\r\\n", "wait");
    struct probe p;
    const char *st[] = {"--starttls", NULL};
    run_probe(&p, port, "mail.example.test", st);
    assert_int_equal(p.r.status, 1);
    expect_failure_line(p.lines[0], true, true, "malformed SMTP reply line: hello, I am not SMTP",
                        "unexpected-reply", "smtp");
    probe_free(&p);
    tt_stop(pid);
    pid = sayer(&port, "554 5.3.2 no service here\\r\\n", "wait");
    run_probe(&p, port, "mail.example.test", st);
    assert_int_equal(p.r.status, 1);
    expect_failure_line(p.lines[0], true, true, "greeting: 554 5.3.2 no service here",
                        "unexpected-reply", "smtp");
    probe_free(&p);
    tt_stop(pid);
}

/* ---- arguments --------------------------------------------------------------------- */

static void expect_usage_error(const char *const *argv_tail, const char *want)
{
    const char *argv[16] = {tu_salvo_bin(), "tls"};
    int n = 2;
    for (int i = 0; argv_tail[i]; i++)
        argv[n++] = argv_tail[i];
    argv[n] = NULL;
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    tu_result_free(&r);
}

static void bad_arguments_exit_1_with_one_line(void **state)
{
    (void)state;
    const char *a1[] = {"probe", "--servername", "x.test", NULL};
    expect_usage_error(a1, "salvo: tls probe: --connect HOST:PORT is required\n");
    const char *a2[] = {"probe", "--connect", "127.0.0.1", "--servername", "x.test", NULL};
    expect_usage_error(a2, "salvo: tls probe: --connect '127.0.0.1': expected HOST:PORT\n");
    const char *a3[] = {"probe", "--connect", "127.0.0.1:70000", "--servername", "x.test", NULL};
    expect_usage_error(a3, "salvo: tls probe: --connect '127.0.0.1:70000': expected HOST:PORT\n");
    const char *a4[] = {"probe", "--connect", "127.0.0.1:25", NULL};
    expect_usage_error(a4, "salvo: tls probe: --servername NAME is required\n");
    const char *a5[] = {"probe", "--connect", "127.0.0.1:25", "--servername", "x", "--repeat",
                        "0",     NULL};
    expect_usage_error(a5, "salvo: tls probe: --repeat: '0' is not a number in range\n");
    const char *a6[] = {"probe", "--bogus", NULL};
    expect_usage_error(a6, "salvo: tls probe: unknown option '--bogus'; see salvo tls probe "
                           "--help\n");
    const char *a7[] = {"probe", "--connect", "127.0.0.1:25", "--servername", "x", "--ca", NULL};
    expect_usage_error(a7, "salvo: tls probe: --ca needs a value\n");
    const char *a8[] = {"frobnicate", NULL};
    expect_usage_error(a8, "salvo: tls: unknown subcommand 'frobnicate' (expected 'probe')\n");
    char missing[600], want[800];
    snprintf(missing, sizeof(missing), "%s/no-such-ca.pem", dir);
    snprintf(want, sizeof(want), "salvo: tls: cannot read CA file %s: No such file or directory\n",
             missing);
    const char *a9[] = {"probe", "--connect", "127.0.0.1:25", "--servername",
                        "x",     "--ca",      missing,        NULL};
    expect_usage_error(a9, want);
}

static void connection_refused_is_reported(void **state)
{
    (void)state;
    int port = tu_free_port();
    const char *args[] = {"--ca", tt_path(dir, "ca.pem"), NULL};
    struct probe p;
    run_probe(&p, port, "mail.example.test", args);
    assert_int_equal(p.r.status, 1);
    char want[128];
    snprintf(want, sizeof(want), "\"error\":\"connect to 127.0.0.1:%d: Connection refused\"", port);
    has(p.lines[0], "\"connected\":false");
    has(p.lines[0], want);
    probe_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_arguments_exit_1_with_one_line),
        cmocka_unit_test(s_server_ip_address_san),
        cmocka_unit_test(connection_refused_is_reported),
        cmocka_unit_test(refused_connection_is_class_connection),
        cmocka_unit_test(unresolvable_name_is_class_dns),
        cmocka_unit_test(peer_closing_before_greeting_is_class_connection),
        cmocka_unit_test(garbage_and_refused_greeting_are_class_unexpected_reply),
        cmocka_unit_test(s_server_verified_and_resumed_tls13),
        cmocka_unit_test(s_server_verified_and_resumed_tls12),
        cmocka_unit_test(s_server_tls12_session_ids_resume),
        cmocka_unit_test(s_server_host_name_mismatch),
        cmocka_unit_test(s_server_expired),
        cmocka_unit_test(s_server_not_yet_valid),
        cmocka_unit_test(s_server_self_signed_untrusted),
        cmocka_unit_test(system_trust_store_does_not_know_the_test_ca),
        cmocka_unit_test(old_protocol_refused_with_alert),
        cmocka_unit_test(python_starttls_verified_and_resumed),
        cmocka_unit_test(python_no_starttls_offered),
        cmocka_unit_test(own_server_starttls_sni_and_resumption),
        cmocka_unit_test(own_server_implicit_tls_resumes),
        cmocka_unit_test(own_server_no_starttls),
        cmocka_unit_test(plain_output_one_line_per_connection),
        cmocka_unit_test(cbc_only_server_refused),
        cmocka_unit_test(peer_closing_mid_handshake_and_silent_server),
        cmocka_unit_test(own_server_policy_seen_by_openssl_client),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
