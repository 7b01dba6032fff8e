/* The SMTP client session against a scripted server (a thread on a loopback
 * socket answering each command line from a table): HELO fallback, MAIL
 * parameters from EHLO capabilities, dot-stuffing on the wire, STARTTLS response
 * injection refused, a refusing greeting. Jobs still come from a real Redis. */
#include "test_engine_deliver_util.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

struct rule {
    const char *prefix; /* command line prefix */
    const char *reply;  /* raw reply (CRLFs included) */
};

struct script {
    const char *greeting;
    const struct rule *rules;
    const char *dot_reply;
    int lfd, port;
    pthread_t th;
    struct sv_buf log; /* every line received, '\n'-terminated; the body as received */
};

static void send_all(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void *serve(void *arg)
{
    struct script *sc = arg;
    struct pollfd pf = {sc->lfd, POLLIN, 0};
    if (poll(&pf, 1, 10000) != 1)
        return NULL;
    int fd = accept(sc->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    send_all(fd, sc->greeting);
    char buf[8192];
    size_t len = 0;
    bool data = false;
    for (;;) {
        pf = (struct pollfd){fd, POLLIN, 0};
        if (poll(&pf, 1, 10000) != 1)
            break;
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        char *nl;
        bool quit = false;
        while ((nl = memchr(buf, '\n', len))) {
            size_t l = (size_t)(nl - buf) + 1;
            sv_buf_append(&sc->log, buf, l - 2 < l ? l - 2 : 0);
            sv_buf_putc(&sc->log, '\n');
            char line[1024];
            snprintf(line, sizeof(line), "%.*s", (int)(l >= 2 ? l - 2 : 0), buf);
            memmove(buf, buf + l, len - l);
            len -= l;
            if (data) {
                if (strcmp(line, ".") == 0) {
                    data = false;
                    send_all(fd, sc->dot_reply);
                }
                continue;
            }
            const char *reply = "500 5.5.2 unknown\r\n";
            for (const struct rule *r = sc->rules; r->prefix; r++)
                if (strncmp(line, r->prefix, strlen(r->prefix)) == 0) {
                    reply = r->reply;
                    break;
                }
            send_all(fd, reply);
            if (strncmp(line, "DATA", 4) == 0 && strncmp(reply, "354", 3) == 0)
                data = true;
            if (strncmp(line, "QUIT", 4) == 0 || strncmp(line, "STARTTLS", 8) == 0)
                quit = true;
        }
        if (quit)
            break;
    }
    close(fd);
    return NULL;
}

static void script_start(struct script *sc)
{
    sc->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sc->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(sc->lfd, (struct sockaddr *)&a, &al);
    sc->port = ntohs(a.sin_port);
    assert_int_equal(listen(sc->lfd, 4), 0);
    assert_int_equal(pthread_create(&sc->th, NULL, serve, sc), 0);
}

static void script_stop(struct script *sc)
{
    sv_buf_free(&sc->log);
}

/* Runs one job for `rcpt` with `body` through the scripted server. */
static struct eng_outcome *one_job(struct td *t, struct script *sc, const char *body,
                                   struct rq_batch **b)
{
    script_start(sc);
    td_setup(t, sc->port, "");
    td_enqueue(t, (const char *[]){"a@example.test", NULL}, body);
    size_t first;
    *b = td_run(t, &first);
    return t->out[first];
}

/* Ends the test's deliverer (QUIT to the pooled session: the server thread ends)
 * and joins the server; sc->log stays for the caller (free with script_stop). */
static void finish(struct td *t, struct script *sc, struct rq_batch *b)
{
    td_report_and_promote(t, b, 0);
    td_teardown(t);
    pthread_join(sc->th, NULL);
    close(sc->lfd);
}

static void test_helo_fallback_dot_stuffing(void **state)
{
    (void)state;
    static const struct rule rules[] = {{"EHLO", "502 5.5.1 no EHLO here\r\n"},
                                        {"HELO", "250 old.example\r\n"},
                                        {"MAIL", "250 ok\r\n"},
                                        {"RCPT", "250 ok\r\n"},
                                        {"DATA", "354 go\r\n"},
                                        {"QUIT", "221 bye\r\n"},
                                        {NULL, NULL}};
    struct script sc = {.greeting = "220 old.example\r\n",
                        .rules = rules,
                        .dot_reply = "250 2.0.0 queued as X1\r\n"};
    struct td t;
    struct rq_batch *b;
    struct eng_outcome *o = one_job(&t, &sc, "Subject: s\n\n.dot\n..two\nend", &b);
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    assert_string_equal(o->res[0].reply, "250 2.0.0 queued as X1");
    finish(&t, &sc, b);
    /* HELO after the refused EHLO; one command at a time (no PIPELINING); no MAIL
     * parameters (no SIZE/8BITMIME); bare LF -> CRLF and dots doubled on the wire. */
    assert_string_equal(sc.log.ptr, "EHLO localhost\nHELO localhost\n"
                                    "MAIL FROM:<sender@src.test>\nRCPT TO:<a@example.test>\nDATA\n"
                                    "Subject: s\n\n..dot\n...two\nend\n.\nQUIT\n");
    script_stop(&sc);
}

static void test_injection_and_params(void **state)
{
    (void)state;
    /* 1. STARTTLS response injection: data after the 220 is refused. */
    static const struct rule inj[] = {{"EHLO", "250-inj.example\r\n250 STARTTLS\r\n"},
                                      {"STARTTLS", "220 go ahead\r\n250 injected\r\n"},
                                      {"QUIT", "221 bye\r\n"},
                                      {NULL, NULL}};
    struct script sc = {.greeting = "220 inj.example\r\n", .rules = inj, .dot_reply = ""};
    struct td t;
    struct rq_batch *b;
    struct eng_outcome *o = one_job(&t, &sc, "x\r\n", &b);
    assert_int_equal(o->res[0].outcome, RQ_DEFERRED);
    assert_string_equal(o->res[0].error, "tls");
    assert_string_equal(o->res[0].reply,
                        "127.0.0.1 sent data after its 220 reply to STARTTLS (response injection)");
    finish(&t, &sc, b);
    script_stop(&sc);

    /* 2. A refusing greeting (RFC 5321 3.1), the only address: QUIT, and bounced
     * with the reply. */
    static const struct rule none[] = {{"QUIT", "221 bye\r\n"}, {NULL, NULL}};
    struct script sc2 = {.greeting = "554 5.7.1 go away\r\n", .rules = none, .dot_reply = ""};
    o = one_job(&t, &sc2, "x\r\n", &b);
    assert_int_equal(o->res[0].outcome, RQ_BOUNCED);
    assert_string_equal(o->res[0].reply, "greeting from 127.0.0.1: 554 5.7.1 go away");
    finish(&t, &sc2, b);
    assert_string_equal(sc2.log.ptr, "QUIT\n");
    script_stop(&sc2);
}

static void test_mail_params(void **state)
{
    (void)state;
    static const struct rule rules[] = {
        {"EHLO", "250-p.example\r\n250-8BITMIME\r\n250-SIZE 100000\r\n250 PIPELINING\r\n"},
        {"MAIL", "250 ok\r\n"},
        {"RCPT", "250 ok\r\n"},
        {"DATA", "354 go\r\n"},
        {"QUIT", "221 bye\r\n"},
        {NULL, NULL}};
    struct script sc = {.greeting = "220 p.example\r\n", .rules = rules, .dot_reply = "250 ok\r\n"};
    struct td t;
    struct rq_batch *b;
    const char body[] = "Subject: caf\xc3\xa9\r\n\r\nx\r\n";
    struct eng_outcome *o = one_job(&t, &sc, body, &b);
    assert_int_equal(o->res[0].outcome, RQ_DELIVERED);
    char want[128];
    snprintf(want, sizeof(want), "MAIL FROM:<sender@src.test> SIZE=%zu BODY=8BITMIME\n",
             strlen(body));
    finish(&t, &sc, b);
    if (!strstr(sc.log.ptr, want))
        fail_msg("log:\n%s", sc.log.ptr);
    script_stop(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helo_fallback_dot_stuffing),
        cmocka_unit_test(test_injection_and_params),
        cmocka_unit_test(test_mail_params),
    };
    if (getenv("TD_FILTER"))
        cmocka_set_test_filter(getenv("TD_FILTER"));
    return cmocka_run_group_tests(tests, td_group_setup, td_group_teardown);
}
