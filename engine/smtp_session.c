/* The SMTP client session, after OpenSMTPD's mta_session.c: one state enum from an
 * X-macro list, every transition through enter() (logged "old -> new"), one switch
 * for replies, one for I/O events, and a single teardown path (finish()).
 *
 *   CONNECT -> [TLS_IMPLICIT] -> GREETING -> EHLO [-> HELO] [-> STARTTLS -> TLS -> EHLO]
 *           -> READY <-> [RSET] -> MAIL -> RCPT... -> DATA -> BODY -> DOT -> READY ...
 *           -> QUIT -> CLOSED
 *
 * With PIPELINING (RFC 2920) MAIL, every RCPT and DATA leave in one write and the
 * replies are matched in order; the next transaction's commands follow the final
 * "." of the previous one in the same write. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtp.h"
#include "tls.h"

#define SMTP_STATES(X)                                                                             \
    X(CONNECT, "connect")                                                                          \
    X(TLS_IMPLICIT, "implicit TLS handshake")                                                      \
    X(GREETING, "greeting")                                                                        \
    X(EHLO, "EHLO")                                                                                \
    X(HELO, "HELO")                                                                                \
    X(STARTTLS, "STARTTLS")                                                                        \
    X(TLS, "TLS handshake")                                                                        \
    X(READY, "ready")                                                                              \
    X(RSET, "RSET")                                                                                \
    X(MAIL, "MAIL FROM")                                                                           \
    X(RCPT, "RCPT TO")                                                                             \
    X(DATA, "DATA")                                                                                \
    X(BODY, "message")                                                                             \
    X(DOT, "end of data")                                                                          \
    X(QUIT, "QUIT")                                                                                \
    X(CLOSED, "closed")

#define ST_ENUM(id, name) ST_##id,
enum smtp_state { SMTP_STATES(ST_ENUM) };
#undef ST_ENUM
#define ST_NAME(id, name) name,
static const char *const state_names[] = {SMTP_STATES(ST_NAME)};
#undef ST_NAME

#define ERR_NAME(id, name) name,
static const char *const err_names[] = {SMTP_ERRS(ERR_NAME)};
#undef ERR_NAME

const char *smtp_err_name(enum smtp_err e)
{
    return (unsigned)e < SV_ARRAY_LEN(err_names) ? err_names[e] : "?";
}

/* EHLO capabilities, parsed once per EHLO reply. */
enum {
    CAP_PIPELINING = 1u << 0,
    CAP_SIZE = 1u << 1,
    CAP_8BITMIME = 1u << 2,
    CAP_SMTPUTF8 = 1u << 3,
    CAP_STARTTLS = 1u << 4,
    CAP_ENHANCED = 1u << 5,
};

#define BODY_CHUNK 65536

struct smtp_session {
    struct smtp_session_opts o;
    char *host, *helo;
    enum smtp_state state;
    struct tls_conn *conn;
    int fd;
    ev_io io;
    int io_events;
    ev_timer timer;
    struct smtp_reply_parser rp;
    struct sv_buf out;
    size_t out_off;
    unsigned caps;
    uint64_t size_max;
    bool tls_done, resumed, need_rset, closing, offered_starttls, settled;
    bool refused;                 /* 5xx greeting: no SMTP service here */
    struct smtp_txn *head, *tail; /* head is the transaction in progress */
    unsigned ntxn;
    int depth; /* nesting of our own callbacks: free only at 0 */
    bool finished;
    enum smtp_err err;
    char errbuf[320];
    char tlsinfo[160];
    struct { /* the same facts, structured, for the events */
        char version[16], cipher[64];
        bool verified;
    } tf;
    double t_open;  /* ev_time() at smtp_session_open */
    bool open_used; /* the first MAIL FROM counts from t_open */
    /* body streaming state (the head transaction) */
    size_t bpos;
    bool bol, prev_cr, discard;
    /* a body that needs no change is written straight from the shared buffer */
    const char *zc;
    size_t zc_len, zc_off;
};

static void enter(struct smtp_session *s, enum smtp_state next)
{
    sv_debug("smtp %llu %s: %s -> %s", (unsigned long long)s->o.id, s->host, state_names[s->state],
             state_names[next]);
    s->state = next;
}

static void want(struct smtp_session *s, int events)
{
    if (s->io_events == events)
        return;
    ev_io_stop(s->o.loop, &s->io);
    if (events) {
        ev_io_set(&s->io, s->fd, events);
        ev_io_start(s->o.loop, &s->io);
    }
    s->io_events = events;
}

static void arm(struct smtp_session *s, int64_t ms)
{
    ev_timer_stop(s->o.loop, &s->timer);
    if (ms <= 0)
        return;
    ev_timer_set(&s->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(s->o.loop, &s->timer);
}

static char *dupstr(const char *a)
{
    return strdup(a ? a : "");
}

/* Copies the session's TLS facts and the attempt's duration into `t`. */
static void stamp(const struct smtp_session *s, struct smtp_txn *t)
{
    snprintf(t->tls, sizeof(t->tls), "%s", s->tlsinfo);
    memcpy(t->tls_version, s->tf.version, sizeof(t->tls_version));
    memcpy(t->tls_cipher, s->tf.cipher, sizeof(t->tls_cipher));
    t->tls_verified = s->tf.verified;
    t->tls_resumed = s->resumed;
    double us = (ev_time() - t->t0) * 1e6;
    t->us = us > 0 ? (int64_t)(us + 0.5) : 0;
}

/* The single teardown path: fails what is queued, tells the owner, frees. */
static void finish(struct smtp_session *s)
{
    if (s->finished)
        return;
    s->finished = true;
    ev_io_stop(s->o.loop, &s->io);
    ev_timer_stop(s->o.loop, &s->timer);
    s->io_events = 0;
    if (s->state != ST_CLOSED)
        enter(s, ST_CLOSED);
    s->depth++;
    while (s->head) {
        struct smtp_txn *t = s->head;
        s->head = t->next;
        t->next = NULL;
        t->err = s->err != SMTP_ERR_NONE ? s->err : SMTP_ERR_CONNECTION;
        free(t->err_text);
        t->err_text = dupstr(s->errbuf[0] ? s->errbuf : "connection closed");
        t->refused = s->refused;
        stamp(s, t);
        t->done(t->arg, t);
    }
    s->tail = NULL;
    if (s->o.closed)
        s->o.closed(s->o.arg, s);
    s->depth--;
    tls_conn_free(s->conn); /* closes the fd */
    smtp_reply_parser_free(&s->rp);
    sv_buf_free(&s->out);
    free(s->host);
    free(s->helo);
    free(s);
}

/* Ends the session with an error; the caller returns right after. */
static void fail(struct smtp_session *s, enum smtp_err e, const char *fmt, ...) SV_PRINTF(3, 4);
static void fail(struct smtp_session *s, enum smtp_err e, const char *fmt, ...)
{
    if (s->state == ST_CLOSED)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errbuf, sizeof(s->errbuf), fmt, ap);
    va_end(ap);
    s->err = e;
    sv_info("smtp %llu %s: %s: %s (in %s)", (unsigned long long)s->o.id, s->host, smtp_err_name(e),
            s->errbuf, state_names[s->state]);
    enter(s, ST_CLOSED); /* the outermost frame (io_cb, timer_cb, an API call) frees */
}

static void trace_out(struct smtp_session *s, const char *p, size_t n)
{
    if (sv_log_get_level() < SV_LOG_TRACE)
        return;
    while (n > 0) {
        size_t l = 0;
        while (l < n && p[l] != '\n')
            l++;
        int w = (int)(l > 0 && p[l - 1] == '\r' ? l - 1 : l);
        sv_log(SV_LOG_TRACE, "smtp %llu >>> %.*s", (unsigned long long)s->o.id, w > 200 ? 200 : w,
               p);
        p += l < n ? l + 1 : l;
        n -= l < n ? l + 1 : l;
    }
}

static void send_cmd(struct smtp_session *s, const char *fmt, ...) SV_PRINTF(2, 3);
static void send_cmd(struct smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[1100];
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2)
        n = (int)sizeof(line) - 3;
    trace_out(s, line, (size_t)n);
    memcpy(line + n, "\r\n", 2);
    if (sv_buf_append(&s->out, line, (size_t)n + 2) < 0)
        fail(s, SMTP_ERR_CONNECTION, "out of memory");
}

static void flush_out(struct smtp_session *s);

/* Appends the next piece of the body, dot-stuffed, bare LF -> CRLF (RFC 5321
 * 4.5.2, 2.3.8); after the last piece the final ".". */
/* True when the body goes on the wire unchanged: CRLF line ends only, no line
 * starting with '.', ending with CRLF. One pass, no copy. */
static bool body_clean(const char *b, size_t len)
{
    if (len < 2 || b[0] == '.' || b[len - 2] != '\r' || b[len - 1] != '\n')
        return false;
    const char *p = b, *end = b + len;
    while ((p = memchr(p, '\n', (size_t)(end - p)))) {
        if (p == b || p[-1] != '\r' || (p + 1 < end && p[1] == '.'))
            return false;
        p++;
    }
    return true;
}

static void fill_body(struct smtp_session *s)
{
    struct smtp_txn *t = s->head;
    if (s->bpos == 0 && body_clean(t->body, t->body_len)) {
        s->zc = t->body;
        s->zc_len = t->body_len;
        s->zc_off = 0;
        s->bpos = t->body_len;
        if (sv_buf_append(&s->out, ".\r\n", 3) < 0)
            fail(s, SMTP_ERR_CONNECTION, "out of memory");
        return;
    }
    if (sv_buf_reserve(&s->out, 2 * BODY_CHUNK + 8) < 0) {
        fail(s, SMTP_ERR_CONNECTION, "out of memory");
        return;
    }
    char *o = s->out.ptr + s->out.len;
    size_t end = t->body_len - s->bpos > BODY_CHUNK ? s->bpos + BODY_CHUNK : t->body_len;
    for (size_t i = s->bpos; i < end; i++) {
        char c = t->body[i];
        if (s->bol && c == '.')
            *o++ = '.';
        if (c == '\n' && !s->prev_cr)
            *o++ = '\r';
        *o++ = c;
        s->bol = c == '\n';
        s->prev_cr = c == '\r';
    }
    s->bpos = end;
    if (s->bpos == t->body_len) {
        if (!s->bol) {
            if (!s->prev_cr)
                *o++ = '\r';
            *o++ = '\n';
        }
        memcpy(o, ".\r\n", 3);
        o += 3;
    }
    s->out.len = (size_t)(o - s->out.ptr);
    s->out.ptr[s->out.len] = '\0';
}

static bool rcpt_ok(const struct smtp_txn *t)
{
    for (size_t i = 0; i < t->nrcpt; i++)
        if (t->rcpt_code[i] >= 200 && t->rcpt_code[i] < 300)
            return true;
    return false;
}

static bool is_ascii(const char *a)
{
    for (; *a; a++)
        if ((unsigned char)*a >= 0x80)
            return false;
    return true;
}

/* The first recipient from `i` on that is to be sent: one already answered
 * locally (a non-ASCII address without SMTPUTF8) is skipped. */
static size_t rcpt_next(const struct smtp_txn *t, size_t i)
{
    while (i < t->nrcpt && t->rcpt_code[i] != 0)
        i++;
    return i;
}

/* What goes on the wire for an address (`ascii` = its form with A-labels, may be
 * NULL): as it is to a server with SMTPUTF8, else an ASCII form; NULL when there is
 * none (a UTF-8 local part cannot be downgraded, RFC 6531 3.2). */
static const char *wire_addr(const struct smtp_session *s, const char *addr, const char *ascii)
{
    if ((s->caps & CAP_SMTPUTF8) || is_ascii(addr))
        return addr;
    return ascii && is_ascii(ascii) ? ascii : NULL;
}

static const char *wire_from(const struct smtp_session *s, const struct smtp_txn *t)
{
    return wire_addr(s, t->from, t->from_ascii);
}

static const char *wire_rcpt(const struct smtp_session *s, const struct smtp_txn *t, size_t i)
{
    return wire_addr(s, t->rcpt[i], t->rcpt_ascii ? t->rcpt_ascii[i] : NULL);
}

/* An address of t cannot be sent to this server (no SMTPUTF8). */
static bool utf8_blocked(const struct smtp_session *s, const struct smtp_txn *t)
{
    if (!t->smtputf8 || (s->caps & CAP_SMTPUTF8))
        return false;
    if (!wire_from(s, t))
        return true;
    for (size_t i = 0; i < t->nrcpt; i++)
        if (!wire_rcpt(s, t, i))
            return true;
    return false;
}

/* The server does not offer SMTPUTF8 (RFC 6531 3.2): an address with a UTF-8 local
 * part cannot be sent (an IDN domain alone goes as A-labels). Returns true when
 * nothing can (the sender, or every recipient: MAIL gets the local refusal); else
 * those recipients get it and the others go ahead. 553 5.6.7 (RFC 3463): permanent. */
static bool refuse_utf8(struct smtp_session *s, struct smtp_txn *t)
{
    char why[300];
    snprintf(why, sizeof(why),
             "553 5.6.7 local: the address needs SMTPUTF8, %s does not offer it (RFC 6531 3.2)",
             s->host);
    size_t left = 0;
    for (size_t i = 0; i < t->nrcpt; i++)
        left += wire_rcpt(s, t, i) != NULL;
    if (!wire_from(s, t) || left == 0) {
        t->mail_code = 553;
        free(t->mail_reply);
        t->mail_reply = dupstr(why);
        return true;
    }
    for (size_t i = 0; i < t->nrcpt; i++)
        if (!wire_rcpt(s, t, i)) {
            t->rcpt_code[i] = 553;
            free(t->rcpt_reply[i]);
            t->rcpt_reply[i] = dupstr(why);
        }
    return false;
}

/* MAIL FROM (+ every RCPT and DATA with PIPELINING). */
static void send_mail(struct smtp_session *s, struct smtp_txn *t)
{
    char params[96] = "";
    size_t pl = 0;
    if (s->caps & CAP_SIZE)
        pl += (size_t)snprintf(params + pl, sizeof(params) - pl, " SIZE=%zu", t->body_len);
    if (t->eightbit && (s->caps & CAP_8BITMIME))
        pl += (size_t)snprintf(params + pl, sizeof(params) - pl, " BODY=8BITMIME");
    if (t->smtputf8 && (s->caps & CAP_SMTPUTF8))
        snprintf(params + pl, sizeof(params) - pl, " SMTPUTF8");
    send_cmd(s, "MAIL FROM:<%s>%s", wire_from(s, t), params);
    t->t0 = s->open_used ? ev_time() : s->t_open; /* a new connection counts from connect */
    s->open_used = true;
    t->mail_sent = true;
    t->rcpt_sent = 0;
    t->rcpt_replied = rcpt_next(t, 0);
    if (s->caps & CAP_PIPELINING) {
        for (size_t i = rcpt_next(t, 0); i < t->nrcpt; i = rcpt_next(t, i + 1))
            send_cmd(s, "RCPT TO:<%s>", wire_rcpt(s, t, i));
        t->rcpt_sent = t->nrcpt;
        send_cmd(s, "DATA");
    }
}

static void start_next(struct smtp_session *s);

static void txn_done(struct smtp_session *s)
{
    struct smtp_txn *t = s->head;
    s->head = t->next;
    if (!s->head)
        s->tail = NULL;
    t->next = NULL;
    stamp(s, t);
    t->tls_new = s->ntxn == 0 && s->tls_done;
    s->ntxn++;
    s->depth++;
    t->done(t->arg, t);
    s->depth--;
    /* The callback may have closed the session, or sent QUIT on it (a graceful
     * close of a ready session): going on would make it ready again. */
    if (s->state == ST_CLOSED || s->state == ST_QUIT)
        return;
    start_next(s);
}

/* Starts the head transaction, or goes idle. */
static void start_next(struct smtp_session *s)
{
    if (!s->settled) {
        s->settled = true;
        if (s->o.settled) {
            s->depth++;
            s->o.settled(s->o.arg, s);
            s->depth--;
            if (s->state == ST_CLOSED)
                return;
        }
    }
    struct smtp_txn *t = s->head;
    if (!t) {
        enter(s, ST_READY);
        arm(s, s->o.idle_ms);
        if (s->o.idle) {
            s->depth++;
            s->o.idle(s->o.arg, s);
            s->depth--;
        }
        return;
    }
    t->reused = s->ntxn > 0;
    if (utf8_blocked(s, t) && refuse_utf8(s, t)) {
        s->head = t; /* txn_done pops it */
        txn_done(s);
        return;
    }
    if (t->presented) {
        enter(s, ST_MAIL);
        arm(s, s->o.to.mail);
        return;
    }
    if (s->need_rset) {
        send_cmd(s, "RSET");
        s->need_rset = false;
        enter(s, ST_RSET);
        if (s->caps & CAP_PIPELINING) {
            send_mail(s, t);
            t->presented = true;
        }
    } else {
        send_mail(s, t);
        enter(s, ST_MAIL);
    }
    arm(s, s->o.to.mail);
    flush_out(s);
}

static void parse_caps(struct smtp_session *s, const struct smtp_reply *r)
{
    s->caps = 0;
    s->size_max = 0;
    const char *t = r->text.ptr ? r->text.ptr : "";
    bool first = true;
    while (*t) {
        size_t n = strcspn(t, "\n");
        if (!first) {
            size_t k = strcspn(t, " \n");
            if (k == 10 && strncasecmp(t, "PIPELINING", 10) == 0)
                s->caps |= CAP_PIPELINING;
            else if (k == 4 && strncasecmp(t, "SIZE", 4) == 0) {
                s->caps |= CAP_SIZE;
                if (n > 5)
                    s->size_max = strtoull(t + 5, NULL, 10);
            } else if (k == 8 && strncasecmp(t, "8BITMIME", 8) == 0)
                s->caps |= CAP_8BITMIME;
            else if (k == 8 && strncasecmp(t, "SMTPUTF8", 8) == 0)
                s->caps |= CAP_SMTPUTF8;
            else if (k == 8 && strncasecmp(t, "STARTTLS", 8) == 0)
                s->caps |= CAP_STARTTLS;
            else if (k == 19 && strncasecmp(t, "ENHANCEDSTATUSCODES", 19) == 0)
                s->caps |= CAP_ENHANCED;
        }
        first = false;
        t += n;
        if (*t == '\n')
            t++;
    }
}

static void start_tls(struct smtp_session *s, enum smtp_state st);

/* After EHLO/HELO: STARTTLS if the policy and the server allow, else ready. */
static void after_hello(struct smtp_session *s)
{
    if (!tls_conn_is_tls(s->conn)) {
        if (s->o.policy.starttls != RULE_TLS_DISABLE && (s->caps & CAP_STARTTLS)) {
            send_cmd(s, "STARTTLS");
            enter(s, ST_STARTTLS);
            arm(s, s->o.to.ehlo);
            flush_out(s);
            return;
        }
        if (s->o.policy.starttls == RULE_TLS_REQUIRE) {
            s->err = SMTP_ERR_TLS;
            fail(s, SMTP_ERR_TLS, "STARTTLS required but not offered by %s", s->host);
            return;
        }
    }
    start_next(s);
}

static char *fmt_reply(const struct smtp_reply *r)
{
    struct sv_buf b = {0};
    if (smtp_reply_format(r, &b) < 0) {
        sv_buf_free(&b);
        return NULL;
    }
    return b.ptr ? b.ptr : strdup("");
}

/* One complete reply, matched to what we are waiting for. */
static void on_reply(struct smtp_session *s, const struct smtp_reply *r)
{
    if (sv_log_get_level() >= SV_LOG_TRACE) {
        char *f = fmt_reply(r);
        sv_log(SV_LOG_TRACE, "smtp %llu <<< %.300s", (unsigned long long)s->o.id, f ? f : "");
        free(f);
    }
    struct smtp_txn *t = s->head;
    int c = r->code;
    char *text;
    switch (s->state) {
    case ST_GREETING:
        if (c / 100 == 5) {
            /* RFC 5321 3.1: "554 no SMTP service here": say QUIT and leave; the
             * queued transactions fail with this reply, marked refused. */
            text = fmt_reply(r);
            snprintf(s->errbuf, sizeof(s->errbuf), "greeting from %s: %s", s->host,
                     text ? text : "");
            free(text);
            s->err = SMTP_ERR_REPLY;
            s->refused = true;
            s->closing = true;
            sv_info("smtp %llu %s: refused: %s", (unsigned long long)s->o.id, s->host, s->errbuf);
            send_cmd(s, "QUIT");
            enter(s, ST_QUIT);
            arm(s, 2000);
            flush_out(s);
            return;
        }
        if (c != 220) {
            text = fmt_reply(r);
            fail(s, SMTP_ERR_REPLY, "greeting from %s: %s", s->host, text ? text : "");
            free(text);
            return;
        }
        send_cmd(s, "EHLO %s", s->helo);
        enter(s, ST_EHLO);
        arm(s, s->o.to.ehlo);
        flush_out(s);
        return;
    case ST_EHLO:
        if (c / 100 == 2) {
            parse_caps(s, r);
            if (!tls_conn_is_tls(s->conn))
                s->offered_starttls = (s->caps & CAP_STARTTLS) != 0;
            after_hello(s);
            return;
        }
        if (c / 100 == 5 && !tls_conn_is_tls(s->conn)) { /* RFC 5321 4.1.4: fall back to HELO */
            send_cmd(s, "HELO %s", s->helo);
            enter(s, ST_HELO);
            arm(s, s->o.to.ehlo);
            flush_out(s);
            return;
        }
        text = fmt_reply(r);
        fail(s, SMTP_ERR_REPLY, "EHLO refused by %s: %s", s->host, text ? text : "");
        free(text);
        return;
    case ST_HELO:
        if (c / 100 == 2) {
            s->caps = 0;
            after_hello(s);
            return;
        }
        text = fmt_reply(r);
        fail(s, SMTP_ERR_REPLY, "HELO refused by %s: %s", s->host, text ? text : "");
        free(text);
        return;
    case ST_STARTTLS:
        if (c != 220) {
            /* Offered but refused: never plaintext on this attempt. */
            text = fmt_reply(r);
            fail(s, SMTP_ERR_TLS, "STARTTLS refused by %s: %s", s->host, text ? text : "");
            free(text);
            return;
        }
        enter(s, ST_TLS); /* do_read checks for injected data, then starts TLS */
        return;
    case ST_RSET:
        if (c == 421) {
            /* RFC 5321 3.8: the server closed the pooled session while it was idle
             * (typically its idle timeout); nothing of ours was taken: a
             * connection failure, retried on a fresh connection. */
            text = fmt_reply(r);
            fail(s, SMTP_ERR_CONNECTION, "%s closed the idle session: %s", s->host,
                 text ? text : "");
            free(text);
            return;
        }
        if (c / 100 != 2) {
            text = fmt_reply(r);
            fail(s, SMTP_ERR_REPLY, "RSET refused by %s: %s", s->host, text ? text : "");
            free(text);
            return;
        }
        if (t && t->presented) {
            enter(s, ST_MAIL);
        } else if (t) {
            send_mail(s, t);
            enter(s, ST_MAIL);
            flush_out(s);
        }
        arm(s, s->o.to.mail);
        return;
    case ST_MAIL:
        t->mail_code = c;
        t->mail_reply = fmt_reply(r);
        if (t->rcpt_sent == 0 && c / 100 == 2) {
            send_cmd(s, "RCPT TO:<%s>", wire_rcpt(s, t, t->rcpt_replied));
            t->rcpt_sent = t->rcpt_replied + 1;
            flush_out(s);
        } else if (t->rcpt_sent == 0) {
            txn_done(s); /* nothing else was sent */
            return;
        }
        enter(s, ST_RCPT);
        arm(s, s->o.to.rcpt);
        return;
    case ST_RCPT:
        t->rcpt_code[t->rcpt_replied] = c;
        t->rcpt_reply[t->rcpt_replied] = fmt_reply(r);
        t->rcpt_replied = rcpt_next(t, t->rcpt_replied + 1);
        if (t->rcpt_replied < t->nrcpt) {
            if (t->rcpt_sent <= t->rcpt_replied) { /* one at a time: the next one */
                send_cmd(s, "RCPT TO:<%s>", wire_rcpt(s, t, t->rcpt_replied));
                t->rcpt_sent = t->rcpt_replied + 1;
                flush_out(s);
            }
            arm(s, s->o.to.rcpt);
            return;
        }
        if (!(s->caps & CAP_PIPELINING)) {
            if (t->mail_code / 100 != 2 || !rcpt_ok(t)) {
                s->need_rset = t->mail_code / 100 == 2;
                txn_done(s);
                return;
            }
            send_cmd(s, "DATA");
            flush_out(s);
        }
        enter(s, ST_DATA);
        arm(s, s->o.to.data);
        return;
    case ST_DATA:
        if (c == 354) {
            s->bpos = 0;
            s->bol = true;
            s->prev_cr = false;
            s->discard = t->mail_code / 100 != 2 || !rcpt_ok(t);
            if (s->discard) {
                /* RFC 2920 3.1: a server that accepts DATA with no valid recipient
                 * gets an empty message, whose reply is then ignored. */
                if (sv_buf_append(&s->out, ".\r\n", 3) < 0) {
                    fail(s, SMTP_ERR_CONNECTION, "out of memory");
                    return;
                }
            }
            enter(s, ST_BODY);
            arm(s, s->o.to.data);
            flush_out(s);
            return;
        }
        t->data_code = c;
        t->data_reply = fmt_reply(r);
        s->need_rset = t->mail_code / 100 == 2;
        txn_done(s);
        return;
    case ST_DOT:
        if (!s->discard) {
            t->data_code = c;
            t->data_reply = fmt_reply(r);
        }
        txn_done(s);
        return;
    case ST_BODY:
        text = fmt_reply(r);
        fail(s, SMTP_ERR_REPLY, "%s replied before the end of the message: %s", s->host,
             text ? text : "");
        free(text);
        return;
    case ST_READY:
        /* Unsolicited while idle: typically "421 timeout" before a close. */
        text = fmt_reply(r);
        fail(s, SMTP_ERR_CONNECTION, "%s closed the idle session: %s", s->host, text ? text : "");
        free(text);
        return;
    case ST_QUIT: enter(s, ST_CLOSED); return;
    case ST_CONNECT:
    case ST_TLS_IMPLICIT:
    case ST_TLS:
    case ST_CLOSED: return;
    default: abort();
    }
}

static void on_eof(struct smtp_session *s)
{
    if (s->state == ST_QUIT) {
        enter(s, ST_CLOSED);
        return;
    }
    fail(s, SMTP_ERR_CONNECTION, "connection closed by %s during %s", s->host,
         state_names[s->state]);
}

/* Reads and parses until the socket has nothing more or the state wants to stop
 * reading (TLS handshake next, closed). */
static void do_read(struct smtp_session *s)
{
    char buf[16384];
    for (;;) {
        ssize_t n = tls_conn_read(s->conn, buf, sizeof(buf));
        if (n == TLS_IO_WANT_READ)
            return;
        if (n == TLS_IO_WANT_WRITE) {
            want(s, EV_READ | EV_WRITE);
            return;
        }
        if (n == TLS_IO_ERROR) {
            fail(s, SMTP_ERR_CONNECTION, "read from %s during %s: %s", s->host,
                 state_names[s->state], tls_conn_error(s->conn));
            return;
        }
        if (n == 0) {
            on_eof(s);
            return;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used = 0;
            int rc = smtp_reply_feed(&s->rp, buf + off, (size_t)n - off, &used);
            off += used;
            if (rc < 0) {
                fail(s, SMTP_ERR_REPLY, "%s during %s: %s", s->host, state_names[s->state],
                     s->rp.err);
                return;
            }
            if (rc == 0)
                break;
            on_reply(s, &s->rp.r);
            if (s->state == ST_CLOSED)
                return;
            if (s->state == ST_TLS) {
                /* RFC 3207 5: anything after the 220 was sent in the clear before
                 * the handshake and must not be taken as TLS-protected. */
                if (off < (size_t)n || smtp_reply_partial(&s->rp) || s->rp.linelen > 0) {
                    fail(s, SMTP_ERR_TLS,
                         "%s sent data after its 220 reply to STARTTLS (response injection)",
                         s->host);
                    return;
                }
                start_tls(s, ST_TLS);
                return;
            }
        }
    }
}

/* Writes what the transport takes now. Returns the bytes written, or -1 when the
 * caller must return: the session waits for the socket, or has failed. */
static ssize_t write_some(struct smtp_session *s, const char *p, size_t len)
{
    ssize_t n = tls_conn_write(s->conn, p, len);
    if (n == TLS_IO_WANT_WRITE || n == TLS_IO_WANT_READ) {
        want(s, EV_READ | EV_WRITE);
        return -1;
    }
    if (n < 0) {
        fail(s, SMTP_ERR_CONNECTION, "write to %s during %s: %s", s->host, state_names[s->state],
             tls_conn_error(s->conn));
        return -1;
    }
    return n;
}

static void flush_out(struct smtp_session *s)
{
    while (s->state != ST_CLOSED) {
        if (s->zc && s->zc_off < s->zc_len) { /* the body itself comes before out */
            ssize_t n = write_some(s, s->zc + s->zc_off, s->zc_len - s->zc_off);
            if (n < 0)
                return;
            s->zc_off += (size_t)n;
            arm(s, s->o.to.data); /* the data timeout bounds a stall, not a long body */
            continue;
        }
        if (s->out_off == s->out.len) {
            s->out_off = 0;
            s->out.len = 0;
            if (s->state == ST_BODY && !s->discard && s->bpos < s->head->body_len + 1 &&
                !s->head->body_sent) {
                fill_body(s);
                if (s->state == ST_CLOSED)
                    return;
                if (s->bpos == s->head->body_len) {
                    s->head->body_sent = true;
                    /* Pipeline the next transaction behind the final dot (RFC 2920
                     * 3.1: the message content may start a group). */
                    struct smtp_txn *n = s->head->next;
                    if (n && (s->caps & CAP_PIPELINING) && !n->presented && !utf8_blocked(s, n)) {
                        send_mail(s, n);
                        n->presented = true;
                    }
                }
                continue;
            }
            if (s->state == ST_BODY) {
                if (s->discard)
                    s->head->body_sent = false;
                s->zc = NULL;
                enter(s, ST_DOT);
                arm(s, s->o.to.data);
            }
            want(s, EV_READ);
            return;
        }
        ssize_t n = write_some(s, s->out.ptr + s->out_off, s->out.len - s->out_off);
        if (n < 0)
            return;
        s->out_off += (size_t)n;
        if (s->state == ST_BODY)
            arm(s, s->o.to.data);
    }
}

static void tls_facts(struct smtp_session *s)
{
    struct tls_info ti;
    if (tls_conn_info(s->conn, &ti) < 0) {
        snprintf(s->tlsinfo, sizeof(s->tlsinfo), "none");
        return;
    }
    s->resumed = ti.resumed;
    snprintf(s->tf.version, sizeof(s->tf.version), "%s", ti.version ? ti.version : "?");
    snprintf(s->tf.cipher, sizeof(s->tf.cipher), "%s", ti.cipher ? ti.cipher : "?");
    s->tf.verified = ti.verified;
    if (ti.verified)
        snprintf(s->tlsinfo, sizeof(s->tlsinfo), "%s %s verified", ti.version, ti.cipher);
    else
        snprintf(s->tlsinfo, sizeof(s->tlsinfo), "%s %s unverified: %s", ti.version, ti.cipher,
                 ti.why_unverified ? ti.why_unverified : "?");
}

static void drive_tls(struct smtp_session *s)
{
    int rc = tls_conn_handshake(s->conn);
    if (rc == TLS_IO_WANT_READ) {
        want(s, EV_READ);
        return;
    }
    if (rc == TLS_IO_WANT_WRITE) {
        want(s, EV_READ | EV_WRITE);
        return;
    }
    if (rc < 0) {
        fail(s, SMTP_ERR_TLS, "TLS handshake with %s failed: %s: %s", s->host,
             tls_err_name(tls_conn_error_kind(s->conn)), tls_conn_error(s->conn));
        return;
    }
    s->tls_done = true;
    tls_facts(s);
    sv_debug("smtp %llu %s: TLS %s%s", (unsigned long long)s->o.id, s->host, s->tlsinfo,
             s->resumed ? " (resumed)" : "");
    want(s, EV_READ);
    if (s->state == ST_TLS_IMPLICIT) {
        enter(s, ST_GREETING);
        arm(s, s->o.to.greeting);
    } else {
        /* RFC 3207 4.2: forget what we knew and say EHLO again. */
        s->caps = 0;
        send_cmd(s, "EHLO %s", s->helo);
        enter(s, ST_EHLO);
        arm(s, s->o.to.ehlo);
        flush_out(s);
        if (s->state == ST_CLOSED)
            return;
    }
    do_read(s); /* records may already be decrypted and buffered */
}

static void start_tls(struct smtp_session *s, enum smtp_state st)
{
    enum tls_verify mode = s->o.policy.allow_invalid ? TLS_VERIFY_ALLOW_INVALID : TLS_VERIFY_STRICT;
    int rc = tls_conn_start_client(s->conn, s->o.tls, s->host, s->o.port, mode, s->o.tls_cache);
    if (rc < 0) {
        fail(s, SMTP_ERR_TLS, "cannot start TLS with %s: %s", s->host, strerror(-rc));
        return;
    }
    if (s->state != st)
        enter(s, st);
    arm(s, s->o.to.tls);
    drive_tls(s);
}

static void on_connected(struct smtp_session *s)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return;
    if (soerr) {
        fail(s, SMTP_ERR_CONNECTION, "connect to %s port %u: %s", s->host, s->o.port,
             strerror(soerr));
        return;
    }
    want(s, EV_READ);
    if (s->o.implicit_tls) {
        start_tls(s, ST_TLS_IMPLICIT);
        return;
    }
    enter(s, ST_GREETING);
    arm(s, s->o.to.greeting);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct smtp_session *s = w->data;
    s->depth++;
    switch (s->state) {
    case ST_CONNECT: on_connected(s); break;
    case ST_TLS_IMPLICIT:
    case ST_TLS: drive_tls(s); break;
    case ST_GREETING:
    case ST_EHLO:
    case ST_HELO:
    case ST_STARTTLS:
    case ST_READY:
    case ST_RSET:
    case ST_MAIL:
    case ST_RCPT:
    case ST_DATA:
    case ST_BODY:
    case ST_DOT:
    case ST_QUIT:
        if (revents & EV_WRITE)
            flush_out(s);
        if (s->state != ST_CLOSED && (revents & EV_READ))
            do_read(s);
        break;
    case ST_CLOSED: break;
    default: abort();
    }
    s->depth--;
    if (s->state == ST_CLOSED && s->depth == 0)
        finish(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct smtp_session *s = w->data;
    s->depth++;
    switch (s->state) {
    case ST_CONNECT:
        fail(s, SMTP_ERR_CONNECTION, "connect to %s port %u timed out after %lld ms", s->host,
             s->o.port, (long long)s->o.to.connect);
        break;
    case ST_QUIT: enter(s, ST_CLOSED); break;
    case ST_TLS_IMPLICIT:
    case ST_TLS: fail(s, SMTP_ERR_TLS, "TLS handshake with %s timed out", s->host); break;
    case ST_READY: /* idle too long in the pool */
        s->closing = true;
        send_cmd(s, "QUIT");
        enter(s, ST_QUIT);
        arm(s, 2000);
        flush_out(s);
        break;
    case ST_GREETING:
    case ST_EHLO:
    case ST_HELO:
    case ST_STARTTLS:
    case ST_RSET:
    case ST_MAIL:
    case ST_RCPT:
    case ST_DATA:
    case ST_BODY:
    case ST_DOT:
        fail(s, SMTP_ERR_IO, "timed out waiting for %s during %s",
             s->state == ST_BODY ? "the peer to read the message" : "a reply",
             state_names[s->state]);
        break;
    case ST_CLOSED: break;
    default: abort();
    }
    s->depth--;
    if (s->state == ST_CLOSED && s->depth == 0)
        finish(s);
}

int smtp_session_open(const struct smtp_session_opts *o, struct smtp_session **out)
{
    struct smtp_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = *o;
    s->host = strdup(o->host ? o->host : "?");
    s->helo = strdup(o->helo && *o->helo ? o->helo : "localhost");
    s->fd = -1;
    s->t_open = ev_time();
    snprintf(s->tlsinfo, sizeof(s->tlsinfo), "none");
    smtp_reply_parser_init(&s->rp);
    if (!s->host || !s->helo) {
        free(s->host);
        free(s->helo);
        free(s);
        return -ENOMEM;
    }
    struct sockaddr_storage a = o->addr;
    socklen_t alen;
    if (a.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)&a)->sin6_port = htons(o->port);
        alen = sizeof(struct sockaddr_in6);
    } else {
        ((struct sockaddr_in *)&a)->sin_port = htons(o->port);
        alen = sizeof(struct sockaddr_in);
    }
    int fd = socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -errno : tls_conn_new_plain(fd, &s->conn);
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        free(s->host);
        free(s->helo);
        free(s);
        return rc;
    }
    s->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_init(&s->io, io_cb, fd, EV_WRITE);
    s->io.data = s;
    ev_init(&s->timer, timer_cb);
    s->timer.data = s;
    s->state = ST_CONNECT;
    *out = s;
    sv_debug("smtp %llu %s: connecting to port %u", (unsigned long long)o->id, s->host, o->port);
    if (connect(fd, (struct sockaddr *)&a, alen) < 0 && errno != EINPROGRESS) {
        /* Report through the normal path: the owner gets `closed` from the loop. */
        int e = errno;
        s->depth++;
        fail(s, SMTP_ERR_CONNECTION, "connect to %s port %u: %s", s->host, o->port, strerror(e));
        s->depth--;
        /* finish() later, from a zero timer, so callers never see a callback
         * before this returns. */
        ev_timer_set(&s->timer, 0., 0.);
        ev_timer_start(o->loop, &s->timer);
        return 0;
    }
    ev_io_start(o->loop, &s->io);
    s->io_events = EV_WRITE;
    arm(s, o->to.connect);
    return 0;
}

void smtp_session_submit(struct smtp_session *s, struct smtp_txn *t)
{
    t->next = NULL;
    t->presented = false;
    t->t0 = ev_time(); /* until its MAIL FROM leaves: a failure counts from here */
    t->rcpt_sent = t->rcpt_replied = 0;
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    if (s->state == ST_READY && s->head == t) {
        /* Taken from the pool after a previous transaction: RSET first (RFC 5321
         * 4.1.1.5; pipelined with MAIL, it costs no round trip and checks that the
         * server still holds no transaction state for us). */
        if (s->ntxn > 0)
            s->need_rset = true;
        s->depth++;
        start_next(s);
        s->depth--;
        if (s->state == ST_CLOSED && s->depth == 0) {
            /* The write failed (a pooled session the server reset while idle).
             * Finished from a zero timer, not here: the caller may go on
             * submitting the rest of a chunk to `s`. */
            ev_timer_stop(s->o.loop, &s->timer);
            ev_timer_set(&s->timer, 0., 0.);
            ev_timer_start(s->o.loop, &s->timer);
        }
    }
}

bool smtp_session_withdraw(struct smtp_session *s, struct smtp_txn *t)
{
    if (t->presented || t->mail_sent)
        return false;
    /* The head is being worked on once the session is past its opening (RSET or
     * MAIL on the wire); before that nothing of it has been sent. */
    if (t == s->head && s->state >= ST_READY)
        return false;
    struct smtp_txn *prev = NULL;
    for (struct smtp_txn *x = s->head; x; prev = x, x = x->next)
        if (x == t) {
            if (prev)
                prev->next = t->next;
            else
                s->head = t->next;
            if (s->tail == t)
                s->tail = prev;
            t->next = NULL;
            return true;
        }
    return false;
}

void smtp_session_close(struct smtp_session *s, bool graceful, const char *why)
{
    if (s->state == ST_CLOSED) {
        /* Ended inside open or submit, its zero timer not run yet: finish now, so
         * that closing every session (eng_deliverer_free) leaves none behind. */
        if (s->depth == 0)
            finish(s);
        return;
    }
    if (graceful && s->state == ST_QUIT)
        return;
    s->closing = true;
    s->depth++;
    if (graceful && s->state == ST_READY && !s->head) {
        send_cmd(s, "QUIT");
        enter(s, ST_QUIT);
        arm(s, 2000);
        flush_out(s);
    } else {
        s->err = SMTP_ERR_CONNECTION;
        snprintf(s->errbuf, sizeof(s->errbuf), "%s", why ? why : "session closed");
        enter(s, ST_CLOSED);
    }
    s->depth--;
    if (s->state == ST_CLOSED && s->depth == 0)
        finish(s);
}

bool smtp_session_usable(const struct smtp_session *s)
{
    return !s->closing && s->state != ST_CLOSED && s->state != ST_QUIT;
}
bool smtp_session_busy(const struct smtp_session *s)
{
    return s->head != NULL || s->state != ST_READY;
}
bool smtp_session_is_tls(const struct smtp_session *s)
{
    return s->conn && tls_conn_is_tls(s->conn);
}
const struct smtp_policy *smtp_session_policy(const struct smtp_session *s)
{
    return &s->o.policy;
}
unsigned smtp_session_transactions(const struct smtp_session *s)
{
    /* Completed plus queued: what this connection will have carried once its queue
     * drains, so the messages-per-connection limit also covers waiting jobs. */
    unsigned n = s->ntxn;
    for (const struct smtp_txn *t = s->head; t; t = t->next)
        n++;
    return n;
}
uint64_t smtp_session_id(const struct smtp_session *s)
{
    return s->o.id;
}
bool smtp_session_tls_resumed(const struct smtp_session *s)
{
    return s->resumed;
}
bool smtp_session_settled(const struct smtp_session *s)
{
    return s->settled;
}
bool smtp_session_offered_starttls(const struct smtp_session *s)
{
    return s->offered_starttls;
}
bool smtp_session_tls_done(const struct smtp_session *s)
{
    return s->tls_done;
}

void smtp_txn_clear(struct smtp_txn *t)
{
    if (!t)
        return;
    free(t->mail_reply);
    free(t->data_reply);
    free(t->err_text);
    if (t->rcpt_reply)
        for (size_t i = 0; i < t->nrcpt; i++)
            free(t->rcpt_reply[i]);
    t->mail_reply = t->data_reply = t->err_text = NULL;
}
