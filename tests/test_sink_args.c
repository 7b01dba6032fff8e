/* salvo-sink command line: bad arguments exit 1 with one clear line naming what is
 * wrong; a port already taken exits 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_sink_util.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Runs the sink with args; expects `status` and exactly one stderr line `line`. */
static void expect_fail(const char *const args[], int status, const char *line)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = ts_sink_bin();
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    if (r.status != status || strcmp(r.err, line) != 0)
        fail_msg("%s ...: expected exit %d and '%s', got exit %d and '%s'", args[0], status, line,
                 r.status, r.err);
    tu_result_free(&r);
}

static void bad_arguments(void **state)
{
    (void)state;
    struct {
        const char *args[8];
        const char *line;
    } cases[] = {
        {{"--threads", "2", NULL}, "salvo-sink: --listen ADDR:PORT is required (see --help)\n"},
        {{"--listen", "127.0.0.1:0", "--threads", "0", NULL},
         "salvo-sink: --threads: expected a number from 1 to 256, got '0'\n"},
        {{"--listen", "127.0.0.1:0", "--threads", "two", NULL},
         "salvo-sink: --threads: expected a number from 1 to 256, got 'two'\n"},
        {{"--listen", "localhost", NULL},
         "salvo-sink: --listen 'localhost': expected ADDR:PORT (IPv6 as [ADDR]:PORT)\n"},
        {{"--listen", "127.0.0.1:99999", NULL},
         "salvo-sink: --listen '127.0.0.1:99999': bad port '99999'\n"},
        {{"--listen", "[::1:25", NULL}, "salvo-sink: --listen '[::1:25': expected [ADDR]:PORT\n"},
        {{"--listen", "127.0.0.1:0", "--bogus", NULL},
         "salvo-sink: unknown option '--bogus' (see --help)\n"},
        {{"--listen", "127.0.0.1:0", "extra", NULL},
         "salvo-sink: unexpected argument 'extra' (see --help)\n"},
        {{"--listen", NULL}, "salvo-sink: option '--listen' needs a value\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "bogus", NULL},
         "salvo-sink: bad --fault 'bogus': unknown kind (rcpt, mail, data, disconnect, stall, "
         "delay, hostile, greeting, no-starttls, no-pipelining, no-smtputf8, reset-idle)\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "delay:dot:0", NULL},
         "salvo-sink: bad --fault 'delay:dot:0': MS must be a number from 1 to 600000\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "rcpt:x:200", NULL},
         "salvo-sink: bad --fault 'rcpt:x:200': CODE must be a number from 400 to 599\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "rcpt:451", NULL},
         "salvo-sink: bad --fault 'rcpt:451': expected rcpt:PATTERN:CODE\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "data:every:0:451", NULL},
         "salvo-sink: bad --fault 'data:every:0:451': N must be a number >= 1\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "stall:forever", NULL},
         "salvo-sink: bad --fault 'stall:forever': STAGE must be greeting, ehlo, mail, rcpt, "
         "data or dot\n"},
        {{"--listen", "127.0.0.1:0", "--fault", "hostile:rude", NULL},
         "salvo-sink: bad --fault 'hostile:rude': hostile kinds are multiline, longline, "
         "badcode\n"},
        {{"--listen", "127.0.0.1:0", "--tls-cert", "/x/cert.pem", NULL},
         "salvo-sink: --tls-cert /x/cert.pem has no matching --tls-key\n"},
        {{"--listen", "127.0.0.1:0", "--tls-key", "/x/key.pem", NULL},
         "salvo-sink: --tls-key /x/key.pem has no matching --tls-cert\n"},
        {{"--listen", "127.0.0.1:0", "--idle-timeout", "-1", NULL},
         "salvo-sink: --idle-timeout: expected a number from 0 to 86400, got '-1'\n"},
        {{"--listen", "127.0.0.1:0", "--log-level", "loud", NULL},
         "salvo-sink: --log-level 'loud': expected error, warn, info, debug or trace\n"},
        {{"--listen", "127.0.0.1:0", "--hostname", "a b", NULL},
         "salvo-sink: --hostname 'a b': expected a host name without spaces\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_fail(cases[i].args, 1, cases[i].line);
}

/* A port held by a socket without SO_REUSEPORT: bind fails, exit 2 (runtime). */
static void port_in_use(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char spec[64], line[160];
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(line, sizeof(line), "salvo-sink: --listen %s: bind: Address already in use\n", spec);
    const char *args[] = {"--listen", spec, NULL};
    expect_fail(args, 2, line);
    close(fd);
}

static void help_and_version(void **state)
{
    (void)state;
    const char *argv[] = {ts_sink_bin(), "--help", NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo-sink --listen ADDR:PORT"));
    tu_result_free(&r);
    const char *v[] = {ts_sink_bin(), "--version", NULL};
    assert_int_equal(tu_run(v, NULL, 10, &r), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "salvo-sink " SALVO_VERSION "\n");
    tu_result_free(&r);
}

/* IPv6 and several --listen addresses: one process answers on both. */
static void two_listen_addresses(void **state)
{
    (void)state;
    struct ts_sink s;
    const char *args[] = {"--listen", "[::1]:0", "--threads", "1", NULL};
    assert_int_equal(ts_sink_start(&s, args), 0);
    char *err = ts_sink_stderr(&s);
    const char *v6 = strstr(err, " [::1]:");
    assert_non_null(v6);
    int port6 = atoi(v6 + strlen(" [::1]:"));
    free(err);
    struct ts_client *c = malloc(sizeof(*c));
    assert_int_equal(ts_connect(c, s.port), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 5000), 220);
    ts_close(c);
    c->len = 0;
    c->fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port6)};
    a6.sin6_addr = in6addr_loopback;
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a6, sizeof(a6)), 0);
    assert_int_equal(ts_reply(c, NULL, 0, 5000), 220);
    ts_close(c);
    free(c);
    char final[4096];
    assert_int_equal(ts_sink_stop(&s, final, sizeof(final)), 0);
    assert_int_equal(ts_json_u64(final, "connections"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(port_in_use),
        cmocka_unit_test(help_and_version),
        cmocka_unit_test(two_listen_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
