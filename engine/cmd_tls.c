/* salvo tls probe: connect to a server (implicit TLS, or SMTP + STARTTLS), report what
 * TLS was negotiated and whether the peer verified, N times over one session cache so
 * resumption shows. Operators use it to check an MX before blaming the engine. */
#include "engine.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tls.h"

#define PROBE_REPLY_MAX 65536

struct probe_opts {
    char host[256];
    char port[16];
    char disp[300]; /* "host:port", "[v6]:port" */
    const char *servername;
    const char *ca;
    bool starttls, insecure, json;
    long repeat;
    int timeout_ms;
};

struct probe_result {
    bool connected, tls, verified, resumed;
    struct tls_info info;
    char error[600];
    const char *error_class; /* last_error vocabulary, as the engine classifies */
    const char *error_kind;  /* the precise kind ("hostname-mismatch", "connect", ...) */
};

/* The engine's last_error classes (engine/smtp.h SMTP_ERRS, "dns" from deliver.c), so
 * what the probe prints can be matched against rules and events as it is:
 *   dns         the name does not resolve
 *   connection  refused, reset, closed early, connect timeout
 *   io          connected, then a reply or a write timed out
 *   tls         handshake or verification failed, STARTTLS missing or refused
 *   unexpected-reply  malformed or hostile reply, greeting or EHLO refused */
#define CL_DNS   "dns"
#define CL_CONN  "connection"
#define CL_IO    "io"
#define CL_TLS   "tls"
#define CL_REPLY "unexpected-reply"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for what a TLS_IO_WANT_* result asks; 0, or -ETIMEDOUT / -errno. */
static int wait_io(int fd, int want, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = want == TLS_IO_WANT_WRITE ? POLLOUT : POLLIN};
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int fail(struct probe_result *r, const char *cls, const char *kind, const char *fmt, ...)
    SV_PRINTF(4, 5);
static int fail(struct probe_result *r, const char *cls, const char *kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    r->error_class = cls;
    r->error_kind = kind;
    return -1;
}

static int tcp_connect(const struct probe_opts *o, int64_t deadline, struct probe_result *r)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *res = NULL;
    int gai = getaddrinfo(o->host, o->port, &hints, &res);
    if (gai != 0)
        return fail(r, CL_DNS, "dns", "cannot resolve %s: %s", o->host, gai_strerror(gai));
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS && wait_io(fd, TLS_IO_WANT_WRITE, deadline) == 0) {
            socklen_t len = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
                break;
        } else {
            err = errno == EINPROGRESS ? ETIMEDOUT : errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return fail(r, CL_CONN, "connect", "connect to %s: %s", o->disp, strerror(err));
    return fd;
}

/* Reads one SMTP reply (RFC 5321 4.2: "ddd-" continuation lines, "ddd " last). Returns
 * the code, or -1 with the error in r. `extra` says whether bytes followed the reply. */
static int read_reply(struct tls_conn *c, char *buf, size_t cap, int64_t deadline,
                      struct probe_result *r, bool *extra)
{
    size_t len = 0;
    *extra = false;
    for (;;) {
        /* Complete when the last full line is "ddd" or "ddd <text>". */
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
            if (buf[i] != '\n')
                continue;
            size_t ll = i + 1 - start;
            if (ll < 4 || buf[start] < '2' || buf[start] > '5') {
                size_t shown = i - start; /* without the line end */
                if (shown && buf[start + shown - 1] == '\r')
                    shown--;
                return fail(r, CL_REPLY, "smtp", "malformed SMTP reply line: %.*s",
                            (int)(shown > 80 ? 80 : shown), buf + start);
            }
            if (buf[start + 3] == ' ' || buf[start + 3] == '\r') {
                *extra = i + 1 < len;
                buf[i + 1 < cap ? i + 1 : cap - 1] = '\0';
                return (int)strtol(buf + start, NULL, 10);
            }
            start = i + 1;
        }
        if (len + 1 >= cap)
            return fail(r, CL_REPLY, "smtp", "SMTP reply longer than %zu bytes", cap);
        ssize_t n = tls_conn_read(c, buf + len, cap - len - 1);
        if (n > 0) {
            len += (size_t)n;
            continue;
        }
        if (n == 0)
            return fail(r, CL_CONN, "smtp", "connection closed while waiting for an SMTP reply");
        if (n == TLS_IO_ERROR)
            return fail(r, CL_CONN, tls_err_name(tls_conn_error_kind(c)), "%s", tls_conn_error(c));
        int w = wait_io(tls_conn_fd(c), (int)n, deadline);
        if (w != 0)
            return w == -ETIMEDOUT
                       ? fail(r, CL_IO, "timeout", "timed out waiting for an SMTP reply")
                       : fail(r, CL_IO, "io", "poll: %s", strerror(-w));
    }
}

static int write_all(struct tls_conn *c, const char *s, int64_t deadline, struct probe_result *r)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = tls_conn_write(c, s + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n == TLS_IO_ERROR)
            return fail(r, CL_CONN, tls_err_name(tls_conn_error_kind(c)), "%s", tls_conn_error(c));
        int w = wait_io(tls_conn_fd(c), (int)n, deadline);
        if (w != 0)
            return fail(r, CL_IO, "timeout", "write timed out");
    }
    return 0;
}

static int smtp_cmd(struct tls_conn *c, const char *cmd, int want, char *buf, int64_t deadline,
                    struct probe_result *r, bool *extra)
{
    if (write_all(c, cmd, deadline, r) != 0)
        return -1;
    int code = read_reply(c, buf, PROBE_REPLY_MAX, deadline, r, extra);
    if (code < 0)
        return -1;
    if (code != want) {
        char *nl = strpbrk(buf, "\r\n");
        if (nl)
            *nl = '\0';
        /* A refused STARTTLS is a TLS failure to the engine; anything else a reply
         * it cannot work with. */
        bool tls = strncmp(cmd, "STARTTLS", 8) == 0;
        return fail(r, tls ? CL_TLS : CL_REPLY, "smtp", "%.*s rejected: %s",
                    (int)strcspn(cmd, "\r\n"), cmd, buf);
    }
    return 0;
}

/* EHLO keywords: each line "250-KEYWORD params" / "250 KEYWORD". */
static bool ehlo_has(const char *reply, const char *kw)
{
    size_t kl = strlen(kw);
    for (const char *line = reply; *line;) {
        if (strlen(line) > 4 && strncasecmp(line + 4, kw, kl) == 0 &&
            (line[4 + kl] == '\r' || line[4 + kl] == '\n' || line[4 + kl] == ' ' ||
             line[4 + kl] == '\0'))
            return true;
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    return false;
}

static int handshake(struct tls_conn *c, int64_t deadline, struct probe_result *r)
{
    for (;;) {
        int rc = tls_conn_handshake(c);
        if (rc == 0)
            return 0;
        if (rc == TLS_IO_ERROR)
            return fail(r, CL_TLS, tls_err_name(tls_conn_error_kind(c)), "%s", tls_conn_error(c));
        int w = wait_io(tls_conn_fd(c), rc, deadline);
        if (w != 0)
            return fail(r, CL_TLS, "timeout", "TLS handshake timed out");
    }
}

/* After close_notify, read until the peer closes: TLS 1.3 tickets come after the
 * handshake, so this is where an implicit-TLS probe receives them. */
static void drain(struct tls_conn *c, int64_t deadline)
{
    char buf[4096];
    for (;;) {
        ssize_t n = tls_conn_read(c, buf, sizeof(buf));
        if (n > 0)
            continue;
        if (n == 0 || n == TLS_IO_ERROR)
            return;
        if (wait_io(tls_conn_fd(c), (int)n, deadline) != 0)
            return;
    }
}

static int probe_once(const struct probe_opts *o, struct tls_client *cl,
                      struct tls_session_cache *cache, char *buf, struct probe_result *r,
                      struct tls_conn **keep)
{
    int64_t deadline = now_ms() + o->timeout_ms;
    bool extra = false;
    int fd = tcp_connect(o, deadline, r);
    if (fd < 0)
        return -1;
    r->connected = true;
    struct tls_conn *c = NULL;
    if (tls_conn_new_plain(fd, &c) != 0) {
        close(fd);
        return fail(r, CL_CONN, "internal", "out of memory");
    }
    *keep = c;
    const char *ehlo = "EHLO salvo-probe.invalid\r\n";
    if (o->starttls) {
        int code = read_reply(c, buf, PROBE_REPLY_MAX, deadline, r, &extra);
        if (code < 0)
            return -1;
        if (code != 220) {
            buf[strcspn(buf, "\r\n")] = '\0';
            return fail(r, CL_REPLY, "smtp", "greeting: %s", buf);
        }
        if (smtp_cmd(c, ehlo, 250, buf, deadline, r, &extra) != 0)
            return -1;
        if (!ehlo_has(buf, "STARTTLS")) {
            (void)write_all(c, "QUIT\r\n", deadline, r);
            return fail(r, CL_TLS, "no-starttls", "no STARTTLS offered by %s in its EHLO reply",
                        o->disp);
        }
        if (smtp_cmd(c, "STARTTLS\r\n", 220, buf, deadline, r, &extra) != 0)
            return -1;
        /* Anything after the 220 was sent in the clear and must not be read as if it
         * came over TLS (the STARTTLS command injection of CVE-2011-0411). */
        if (extra)
            return fail(r, CL_TLS, "smtp", "server sent data after its STARTTLS reply");
    }
    uint16_t port = (uint16_t)strtoul(o->port, NULL, 10);
    int rc =
        tls_conn_start_client(c, cl, o->servername, port,
                              o->insecure ? TLS_VERIFY_ALLOW_INVALID : TLS_VERIFY_STRICT, cache);
    if (rc != 0)
        return fail(r, CL_TLS, "internal", "cannot start TLS: %s", strerror(-rc));
    if (handshake(c, deadline, r) != 0)
        return -1;
    r->tls = true;
    tls_conn_info(c, &r->info);
    r->verified = r->info.verified;
    r->resumed = r->info.resumed;
    if (o->starttls) {
        if (smtp_cmd(c, ehlo, 250, buf, deadline, r, &extra) != 0)
            return -1;
        if (smtp_cmd(c, "QUIT\r\n", 221, buf, deadline, r, &extra) != 0)
            return -1;
    }
    if (tls_conn_shutdown(c) == 0)
        drain(c, now_ms() + 2000 < deadline ? now_ms() + 2000 : deadline);
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void print_result(const struct probe_opts *o, long i, const struct probe_result *r)
{
    const struct tls_info *in = &r->info;
    if (o->json) {
        printf("{\"n\":%ld,\"connected\":%s,\"starttls\":%s,\"tls\":%s,\"version\":", i,
               r->connected ? "true" : "false", o->starttls ? "true" : "false",
               r->tls ? "true" : "false");
        json_str(stdout, r->tls ? in->version : NULL);
        printf(",\"cipher\":");
        json_str(stdout, r->tls ? in->cipher : NULL);
        printf(",\"verified\":%s,\"resumed\":%s,\"peer_names\":[", r->verified ? "true" : "false",
               r->resumed ? "true" : "false");
        for (size_t k = 0; r->tls && k < in->n_peer_names; k++) {
            if (k)
                putchar(',');
            json_str(stdout, in->peer_names[k]);
        }
        printf("],\"unverified_reason\":");
        json_str(stdout, r->tls ? in->why_unverified : NULL);
        printf(",\"error\":");
        json_str(stdout, r->error[0] ? r->error : NULL);
        printf(",\"error_class\":");
        json_str(stdout, r->error[0] ? r->error_class : NULL);
        printf(",\"error_kind\":");
        json_str(stdout, r->error[0] ? r->error_kind : NULL);
        printf("}\n");
    } else if (r->error[0]) {
        printf("#%ld %s %s error: %s\n", i, o->disp,
               r->tls ? "tls" : (r->connected ? "connected" : "not-connected"), r->error);
    } else {
        printf("#%ld %s %s %s %s verified=%s resumed=%s names=", i, o->disp,
               o->starttls ? "starttls" : "tls", in->version, in->cipher,
               r->verified ? "yes" : "no", r->resumed ? "yes" : "no");
        for (size_t k = 0; k < in->n_peer_names; k++)
            printf("%s%s", k ? "," : "", in->peer_names[k]);
        if (!r->verified && in->why_unverified)
            printf(" unverified: %s", in->why_unverified);
        putchar('\n');
    }
    fflush(stdout);
}

static int split_hostport(const char *s, struct probe_opts *o)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        if ((size_t)(end - s - 1) >= sizeof(o->host))
            return -1;
        memcpy(o->host, s + 1, (size_t)(end - s - 1));
        o->host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof(o->host) ||
            memchr(s, ':', (size_t)(colon - s)))
            return -1;
        memcpy(o->host, s, (size_t)(colon - s));
        o->host[colon - s] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 1 || port > 65535)
        return -1;
    snprintf(o->port, sizeof(o->port), "%ld", port);
    snprintf(o->disp, sizeof(o->disp), strchr(o->host, ':') ? "[%s]:%s" : "%s:%s", o->host,
             o->port);
    return 0;
}

static const char probe_usage[] =
    "usage: salvo tls probe --connect HOST:PORT --servername NAME [--starttls] [--ca FILE]\n"
    "                       [--insecure] [--repeat N] [--json] [--timeout SECONDS]\n";

static int cmd_tls_probe(int argc, char **argv)
{
    struct probe_opts o = {.repeat = 1, .timeout_ms = 10000};
    const char *connect_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(probe_usage, stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--starttls") == 0) {
            o.starttls = true;
        } else if (strcmp(a, "--insecure") == 0) {
            o.insecure = true;
        } else if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (strcmp(a, "--connect") == 0 || strcmp(a, "--servername") == 0 ||
                   strcmp(a, "--ca") == 0 || strcmp(a, "--repeat") == 0 ||
                   strcmp(a, "--timeout") == 0) {
            if (!has_val)
                return eng_fail(EXIT_USER, "tls probe: %s needs a value", a);
            const char *v = argv[++i];
            if (strcmp(a, "--connect") == 0) {
                connect_arg = v;
            } else if (strcmp(a, "--servername") == 0) {
                o.servername = v;
            } else if (strcmp(a, "--ca") == 0) {
                o.ca = v;
            } else {
                char *end;
                long n = strtol(v, &end, 10);
                if (!*v || *end || n < 1 || n > (strcmp(a, "--repeat") == 0 ? 10000 : 3600))
                    return eng_fail(EXIT_USER, "tls probe: %s: '%s' is not a number in range", a,
                                    v);
                if (strcmp(a, "--repeat") == 0)
                    o.repeat = n;
                else
                    o.timeout_ms = (int)n * 1000;
            }
        } else {
            return eng_fail(EXIT_USER, "tls probe: unknown option '%s'; see salvo tls probe --help",
                            a);
        }
    }
    if (!connect_arg)
        return eng_fail(EXIT_USER, "tls probe: --connect HOST:PORT is required");
    if (split_hostport(connect_arg, &o) != 0)
        return eng_fail(EXIT_USER, "tls probe: --connect '%s': expected HOST:PORT", connect_arg);
    if (!o.servername || !*o.servername)
        return eng_fail(EXIT_USER, "tls probe: --servername NAME is required");

    signal(SIGPIPE, SIG_IGN);
    char err[512];
    struct tls_client *cl = NULL;
    struct tls_client_opts copts = {.ca_file = o.ca};
    int rc = tls_client_new(&copts, &cl, err, sizeof(err));
    if (rc != 0)
        return eng_fail(EXIT_USER, "%s", err);
    struct tls_session_cache *cache = NULL;
    char *buf = malloc(PROBE_REPLY_MAX);
    if (!buf || tls_session_cache_new(16, 3600, &cache) != 0) {
        free(buf);
        tls_client_free(cl);
        return eng_fail(EXIT_RUNTIME, "out of memory");
    }
    bool last_ok = false;
    for (long i = 1; i <= o.repeat; i++) {
        struct probe_result r;
        memset(&r, 0, sizeof(r));
        struct tls_conn *c = NULL;
        probe_once(&o, cl, cache, buf, &r, &c);
        print_result(&o, i, &r); /* before tls_conn_free: info strings are borrowed */
        tls_conn_free(c);
        last_ok = !r.error[0] && r.tls && (r.verified || o.insecure);
    }
    if (!o.json) {
        struct tls_cache_stats st;
        tls_session_cache_stats(cache, &st);
        printf("handshakes: %llu full, %llu resumed\n", (unsigned long long)st.full_handshakes,
               (unsigned long long)st.resumed_handshakes);
    }
    free(buf);
    tls_session_cache_free(cache);
    tls_client_free(cl);
    return last_ok ? EXIT_OK : EXIT_USER;
}

int cmd_tls(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(probe_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USER : EXIT_OK;
    }
    if (strcmp(argv[1], "probe") == 0)
        return cmd_tls_probe(argc - 1, argv + 1);
    return eng_fail(EXIT_USER, "tls: unknown subcommand '%s' (expected 'probe')", argv[1]);
}
