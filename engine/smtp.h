/* engine/smtp: the SMTP client used by engine/deliver (engine-internal; not a module
 * header). Two parts:
 *   - an incremental reply parser (RFC 5321 4.2 multi-line replies, RFC 3463
 *     enhanced status codes) with hard limits, for hostile peers;
 *   - a client session on a libev loop: connect, greeting, EHLO/HELO, STARTTLS,
 *     pipelined transactions, RSET, QUIT, per-phase timeouts. */
#ifndef SALVO_ENG_SMTP_H
#define SALVO_ENG_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common.h"
#include "salvo_sched.h"

/* --- reply parser ------------------------------------------------------------ */

/* RFC 5321 4.5.3.1.5 allows 512 bytes per reply line; real servers send longer
 * ones (long enhanced texts), so we accept four times that, CRLF included. */
#define SMTP_REPLY_LINE_MAX 2048
/* An EHLO reply has a dozen lines; 100 is plenty and stops endless replies. */
#define SMTP_REPLY_LINES_MAX 100

struct smtp_reply {
    int code;           /* 200..559 */
    char esc[16];       /* RFC 3463 enhanced status ("5.1.1") from the first line, or "" */
    struct sv_buf text; /* each line's text (after "NNN-"/"NNN "), '\n'-separated */
    size_t nlines;
};

struct smtp_reply_parser {
    struct smtp_reply r;
    bool complete; /* r holds a whole reply; the next feed starts a new one */
    bool failed;   /* sticky: err says why */
    char err[160];
    size_t linelen;
    char line[SMTP_REPLY_LINE_MAX];
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
void smtp_reply_parser_free(struct smtp_reply_parser *p); /* frees r.text; NULL-safe */
/* Feeds `len` bytes, stopping after one complete reply. Returns 1 (a reply is in
 * p->r, valid until the next feed), 0 (everything consumed, reply incomplete) or -1
 * (malformed; p->err, sticky). *used = bytes consumed. The result does not depend on
 * how the input is split into calls. */
int smtp_reply_feed(struct smtp_reply_parser *p, const char *data, size_t len, size_t *used);
/* True while a reply is partly read (bytes of it are buffered). */
bool smtp_reply_partial(const struct smtp_reply_parser *p);
/* Formats the reply for people on one line: "550 5.1.1 <x@y>: no such user"
 * (lines joined by " "). Appends to out; 0 or -ENOMEM. */
int smtp_reply_format(const struct smtp_reply *r, struct sv_buf *out);

/* --- sessions ------------------------------------------------------------------ */

/* Error classes: the last_error values of the rule language. */
#define SMTP_ERRS(X)                                                                               \
    X(SMTP_ERR_NONE, "none")                                                                       \
    X(SMTP_ERR_CONNECTION, "connection")  /* refused, reset, closed early, connect timeout */      \
    X(SMTP_ERR_IO, "io")                  /* the peer stalled: a reply or write timed out */       \
    X(SMTP_ERR_TLS, "tls")                /* handshake/verification, STARTTLS missing */           \
    X(SMTP_ERR_REPLY, "unexpected-reply") /* malformed or hostile reply, refused EHLO... */

#define SMTP_X_ENUM(name, str) name,
enum smtp_err { SMTP_ERRS(SMTP_X_ENUM) };
#undef SMTP_X_ENUM
const char *smtp_err_name(enum smtp_err e);

/* What an attempt demands of a session (DESIGN.md hot-path rule 3). */
struct smtp_policy {
    enum rule_tls_mode starttls;
    bool allow_invalid; /* a session opened so is never used for a strict attempt */
};

struct smtp_timeouts { /* milliseconds, from queue.outbound.timeouts.* */
    int64_t connect, greeting, tls, ehlo, mail, rcpt, data;
};

/* One transaction (MAIL ... DATA ... "."). The deliverer owns it; the session
 * borrows it from smtp_session_submit() until its done callback. */
struct smtp_txn {
    const char *from;        /* borrowed */
    const char *const *rcpt; /* borrowed, nrcpt addresses */
    size_t nrcpt;
    /* The same with IDN domains as A-labels (borrowed; NULL = as above): what a
     * server without SMTPUTF8 gets for an address whose only non-ASCII part is the
     * domain (RFC 6531 3.2 leaves the domain to IDNA, RFC 5890). */
    const char *from_ascii;
    const char *const *rcpt_ascii;
    const char *body; /* borrowed; bare LFs become CRLF, lines starting with '.' get one more */
    size_t body_len;
    bool eightbit; /* body has bytes >= 0x80: BODY=8BITMIME when offered */
    bool smtputf8; /* an address is not ASCII: needs SMTPUTF8 */

    /* Results, filled by the session. Reply strings are owned (malloc) by the txn. */
    int mail_code;
    char *mail_reply;
    int *rcpt_code; /* nrcpt entries (0 = no reply) */
    char **rcpt_reply;
    int data_code; /* the reply to DATA when not 354, else the reply after "." */
    char *data_reply;
    enum smtp_err err; /* the session failed during this transaction */
    char *err_text;
    bool refused;   /* the server refused service: 5xx greeting (RFC 5321 3.1) */
    bool mail_sent; /* MAIL FROM left (nothing is known to have arrived before) */
    bool body_sent; /* the final "." left: the message may have been delivered */
    bool reused;    /* ran over a session that had done a transaction before */
    char tls[160];  /* TLS facts of the session: "TLSv1.3 ... verified" or "none" */
    char tls_version[16], tls_cipher[64]; /* "" on a plaintext session */
    bool tls_verified;
    double t0;        /* ev_time() the attempt started: MAIL FROM, or connect (new session) */
    int64_t us;       /* from t0 to the final reply (or the failure), microseconds */
    bool tls_new;     /* first transaction on a session whose handshake succeeded */
    bool tls_resumed; /* ... and that handshake resumed a cached session */

    void (*done)(void *arg, struct smtp_txn *t);
    void *arg;
    struct smtp_txn *next; /* session queue */
    size_t rcpt_sent, rcpt_replied;
    bool presented; /* commands were already written (pipelined behind a body) */
};
void smtp_txn_clear(struct smtp_txn *t); /* frees the result strings; NULL-safe */

struct ev_loop;
struct tls_client;
struct tls_session_cache;
struct smtp_session;

struct smtp_session_opts {
    struct ev_loop *loop;
    uint64_t id;                  /* for logs */
    struct sockaddr_storage addr; /* with port */
    const char *host;             /* MX/relay name: SNI, verification, logs (copied) */
    uint16_t port;
    bool implicit_tls;
    struct smtp_policy policy;
    struct smtp_timeouts to;
    const char *helo;                    /* our host name (copied) */
    int64_t idle_ms;                     /* idle in READY this long: QUIT (0 = never) */
    struct tls_client *tls;              /* borrowed */
    struct tls_session_cache *tls_cache; /* borrowed, may be NULL */
    /* Called when the session ends (closed, failed, QUIT done), after every queued
     * transaction got its done callback. The session is freed after it returns. */
    void (*closed)(void *arg, struct smtp_session *s);
    /* Called when the session has nothing left to do and is idle (pool it). */
    void (*idle)(void *arg, struct smtp_session *s);
    /* Called once, when the session first got through greeting/EHLO/STARTTLS (its
     * TLS session, if any, is in the cache by then). May be NULL. */
    void (*settled)(void *arg, struct smtp_session *s);
    void *arg;
};

/* Starts connecting. Returns 0 and the session (owned by the loop: it frees itself
 * after `closed`), or a negative errno (socket() failed; nothing to free). */
int smtp_session_open(const struct smtp_session_opts *o, struct smtp_session **out);
/* Queues a transaction; it runs once the session is ready. Borrowed until t->done,
 * which may run before this returns (refused locally); the session itself always
 * outlives the call (one that fails here ends from the loop). */
void smtp_session_submit(struct smtp_session *s, struct smtp_txn *t);
/* Takes back a queued transaction nothing of which was sent yet (no MAIL FROM, not
 * the one the session is working on): true and `t` is no longer borrowed, or false
 * (in progress: it completes or fails through t->done as usual). */
bool smtp_session_withdraw(struct smtp_session *s, struct smtp_txn *t);
/* Sends QUIT (when idle) or aborts; queued transactions fail with `why`. */
void smtp_session_close(struct smtp_session *s, bool graceful, const char *why);

bool smtp_session_usable(const struct smtp_session *s); /* ready or getting there, not closing */
bool smtp_session_busy(const struct smtp_session *s);   /* has queued transactions */
bool smtp_session_is_tls(const struct smtp_session *s);
const struct smtp_policy *smtp_session_policy(const struct smtp_session *s);
/* Transactions completed plus queued on this connection. */
unsigned smtp_session_transactions(const struct smtp_session *s);
uint64_t smtp_session_id(const struct smtp_session *s);
bool smtp_session_tls_resumed(const struct smtp_session *s);
bool smtp_session_tls_done(const struct smtp_session *s);         /* a handshake completed */
bool smtp_session_offered_starttls(const struct smtp_session *s); /* in the last EHLO */
/* The session got through greeting/EHLO/STARTTLS at least once: its TLS state is
 * final. */
bool smtp_session_settled(const struct smtp_session *s);

#endif
