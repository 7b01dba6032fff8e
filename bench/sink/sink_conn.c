/* One SMTP server session per connection, run by the worker thread that accepted
 * it. No locks: everything here belongs to one thread, except the counters (single
 * writer) and the (Message-ID, recipient) set (lock-free CAS).
 *
 * PIPELINING (RFC 2920): every complete line in the input buffer is handled before
 * we write, so the replies of a pipelined group leave in one write(2). While replies
 * cannot be written (the peer does not read), we stop reading: the output buffer is
 * bounded by one input buffer's worth of replies.
 *
 * Teardown: command handlers only set c->want_close / c->close_after_flush; the
 * connection is freed (conn_free, the one teardown path) by whoever drives its I/O: the
 * two ev_io callbacks, conn_new when the greeting already fails, and shutdown. */
#include "sink_srv.h"

#include "common.h"
#include "tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

_Atomic uint64_t sink_data_seq;
_Atomic unsigned sink_tls_gen;

/* Session states, and their names for the transition log. */
#define CONN_STATES(X)                                                                             \
    X(CMD)       /* reading command lines */                                                       \
    X(DATA)      /* reading message content up to CRLF.CRLF */                                     \
    X(HANDSHAKE) /* STARTTLS accepted, TLS handshake in progress */                                \
    X(STALL)     /* fault: never answer again; input is read and dropped */                        \
    X(MULTILINE) /* fault: an endless multi-line reply */

enum conn_state {
#define X(s) CS_##s,
    CONN_STATES(X)
#undef X
};

static const char *const conn_state_names[] = {
#define X(s) #s,
    CONN_STATES(X)
#undef X
};

struct sink_conn {
    struct sink_worker *w;
    struct tls_conn *tc; /* plain or TLS: all I/O goes through its transport table */
    uint64_t id;
    ev_tstamp last_active; /* last time input arrived (the loop's cached clock) */
    ev_io rio, wio;
    enum conn_state st;
    bool helo;         /* HELO/EHLO seen (reset by STARTTLS) */
    bool in_mail;      /* MAIL accepted, transaction open */
    bool utf8;         /* ... with SMTPUTF8 (RFC 6531): non-ASCII addresses allowed */
    bool discard_line; /* skipping the rest of an over-long command line */
    bool want_close;   /* close now, unsent replies dropped */
    bool close_after_flush;
    bool open_counted;    /* in sink_open_now */
    bool reading;         /* rio is active */
    bool tls_after_flush; /* "220 Ready to start TLS" queued: handshake once it is out */
    bool io_swapped;      /* TLS wants the other direction: a read waits for writable
                             or a write for readable */
    bool delay_pending;   /* fault delay: a queued reply must be held back... */
    bool delaying;        /* ...and the timer holding it runs */
    uint32_t delay_ms;
    ev_timer delay;
    uint32_t nrcpt, rcpt_cap;
    uint64_t *rcpt; /* hashes of the accepted recipients of this transaction */
    struct sink_data data;
    struct sink_conn *prev, *next;
    struct sv_buf out;
    size_t out_off;
    size_t in_len;
    char in[SINK_IN_CAP];
};

/* The protocol code reads and writes only through tls/'s transport table (Redis's
 * connection.h idea): a plain connection until STARTTLS swaps in TLS in place.
 * conn_read/conn_write return bytes, 0 (read: EOF), -EAGAIN, or -EIO; a TLS
 * operation that needs the other direction sets c->io_swapped. */
static ssize_t conn_read(struct sink_conn *c, void *buf, size_t len)
{
    ssize_t n = tls_conn_read(c->tc, buf, len);
    if (n >= 0)
        return n;
    if (n == TLS_IO_WANT_READ)
        return -EAGAIN;
    if (n == TLS_IO_WANT_WRITE) {
        c->io_swapped = true;
        return -EAGAIN;
    }
    return -EIO;
}

static ssize_t conn_write(struct sink_conn *c, const void *buf, size_t len)
{
    ssize_t n = tls_conn_write(c->tc, buf, len);
    if (n >= 0)
        return n;
    if (n == TLS_IO_WANT_WRITE)
        return -EAGAIN;
    if (n == TLS_IO_WANT_READ) {
        c->io_swapped = true;
        return -EAGAIN;
    }
    return -EIO;
}

/* --- helpers -------------------------------------------------------------------- */

static void set_state(struct sink_conn *c, enum conn_state st)
{
    sv_debug("conn %llx: state %s -> %s", (unsigned long long)c->id, conn_state_names[c->st],
             conn_state_names[st]);
    c->st = st;
}

static void out_put(struct sink_conn *c, const char *s, size_t n)
{
    if (sv_buf_append(&c->out, s, n) < 0)
        c->want_close = true; /* out of memory: drop the session, not the process */
}

_Atomic uint64_t sink_open_now, sink_open_max;

/* A connection stops counting as open once it closes or its QUIT is answered:
 * the client may see the 221 and connect again before this thread gets to the
 * close, and another thread may accept that connection first. */
static void open_done(struct sink_conn *c)
{
    if (c->open_counted)
        atomic_fetch_sub_explicit(&sink_open_now, 1, memory_order_relaxed);
    c->open_counted = false;
}

static void reply(struct sink_conn *c, const char *fmt, ...) SV_PRINTF(2, 3);
static void reply(struct sink_conn *c, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 3)
        n = (int)sizeof(line) - 3;
    sv_debug("conn %llx: >>> %.*s", (unsigned long long)c->id, n, line);
    line[n++] = '\r';
    line[n++] = '\n';
    out_put(c, line, (size_t)n);
}

static bool stage_has(uint32_t mask, enum sink_stage s)
{
    return (mask >> s) & 1u;
}

static bool ascii(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return false;
    return true;
}

/* Faults that replace the reply at `stage` altogether (disconnect, stall, endless
 * multi-line). Returns true when the normal reply must not be sent. */
static bool fault_preempts(struct sink_conn *c, enum sink_stage s)
{
    const struct sink_faults *f = &c->w->cfg->faults;
    if (stage_has(f->disconnect, s)) {
        sv_debug("conn %llx: fault disconnect:%s", (unsigned long long)c->id, sink_stage_name(s));
        c->want_close = true;
        return true;
    }
    if (stage_has(f->stall, s)) {
        set_state(c, CS_STALL);
        return true;
    }
    if (stage_has(f->multiline, s)) {
        set_state(c, CS_MULTILINE);
        return true;
    }
    return false;
}

/* delay:STAGE:MS: the reply about to be queued (and everything before it) leaves
 * only MS milliseconds later; no further input is handled meanwhile, so replies keep
 * their order. */
static void stage_delay(struct sink_conn *c, enum sink_stage s)
{
    uint32_t ms = c->w->cfg->faults.delay_ms[s];
    if (ms) {
        c->delay_pending = true;
        c->delay_ms = ms;
    }
}

/* Sends the reply for `stage`, unless a hostile fault mangles it: longline sends one
 * 100,000-byte line with the same code, badcode a line whose code is not 3 digits. */
static void stage_reply(struct sink_conn *c, enum sink_stage s, const char *fmt, ...)
    SV_PRINTF(3, 4);
static void stage_reply(struct sink_conn *c, enum sink_stage s, const char *fmt, ...)
{
    const struct sink_faults *f = &c->w->cfg->faults;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 3)
        return;
    stage_delay(c, s);
    if (stage_has(f->longline, s)) {
        out_put(c, line, 3);
        out_put(c, " ", 1);
        if (sv_buf_reserve(&c->out, 100000 + 2) < 0) {
            c->want_close = true;
            return;
        }
        memset(c->out.ptr + c->out.len, 'x', 100000);
        c->out.len += 100000;
        out_put(c, "\r\n", 2);
        return;
    }
    if (stage_has(f->badcode, s)) {
        reply(c, "XYZ salvo-sink fault: not a reply code");
        return;
    }
    reply(c, "%s", line);
}

static void txn_reset(struct sink_conn *c)
{
    c->in_mail = false;
    c->nrcpt = 0;
}

/* --- commands -------------------------------------------------------------------- */

static void cmd_ehlo(struct sink_conn *c, const struct sink_cmd *cmd)
{
    const struct sink_config *cfg = c->w->cfg;
    txn_reset(c);
    if (fault_preempts(c, SINK_STAGE_EHLO))
        return;
    c->helo = true;
    if (cmd->verb == SINK_VERB_HELO) {
        stage_reply(c, SINK_STAGE_EHLO, "250 %s", cfg->hostname);
        return;
    }
    const struct sink_faults *f = &cfg->faults;
    if (stage_has(f->longline, SINK_STAGE_EHLO) || stage_has(f->badcode, SINK_STAGE_EHLO)) {
        stage_reply(c, SINK_STAGE_EHLO, "250 %s", cfg->hostname);
        return;
    }
    /* RFC 5321 4.1.1.1: the first line names us, then one capability per line. The
     * client's name is echoed printable-only: a bare CR in it must not let a client
     * forge reply lines. */
    char name[256];
    size_t n = cmd->arg_len < sizeof(name) - 1 ? cmd->arg_len : sizeof(name) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)cmd->arg[i];
        name[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    name[n] = '\0';
    stage_delay(c, SINK_STAGE_EHLO);
    reply(c, "250-%s greets %s", cfg->hostname, name);
    const char *caps = tls_conn_is_tls(c->tc) ? cfg->ehlo_tail_tls : cfg->ehlo_tail;
    out_put(c, caps, strlen(caps));
}

static void cmd_mail(struct sink_conn *c, const struct sink_cmd *cmd)
{
    const struct sink_config *cfg = c->w->cfg;
    if (!c->helo) {
        reply(c, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (c->in_mail) {
        reply(c, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (fault_preempts(c, SINK_STAGE_MAIL))
        return;
    if (cmd->has_size && cmd->size > cfg->max_size) {
        SINK_INC(c->w, mail_rejected, 1);
        reply(c, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    if (!ascii(cmd->path, cmd->path_len) && (!cmd->smtputf8 || cfg->faults.no_smtputf8)) {
        SINK_INC(c->w, mail_rejected, 1);
        reply(c, "553 5.6.7 Error: non-ASCII address needs SMTPUTF8");
        return;
    }
    int code = sink_fault_match(cfg->faults.mail, cfg->faults.n_mail, cmd->path, cmd->path_len);
    if (code) {
        SINK_INC(c->w, mail_rejected, 1);
        stage_reply(c, SINK_STAGE_MAIL, "%d %d.7.1 <%.*s>: sender rejected (salvo-sink fault)",
                    code, code / 100, (int)(cmd->path_len > 900 ? 900 : cmd->path_len), cmd->path);
        return;
    }
    c->in_mail = true;
    c->utf8 = cmd->smtputf8 && !cfg->faults.no_smtputf8;
    c->nrcpt = 0;
    stage_reply(c, SINK_STAGE_MAIL, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct sink_conn *c, const struct sink_cmd *cmd)
{
    const struct sink_config *cfg = c->w->cfg;
    if (!c->in_mail) {
        reply(c, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (fault_preempts(c, SINK_STAGE_RCPT))
        return;
    if (!c->utf8 && !ascii(cmd->path, cmd->path_len)) { /* RFC 6531 3.4 */
        SINK_INC(c->w, rcpt_rejected, 1);
        reply(c, "553 5.6.7 Error: non-ASCII address needs SMTPUTF8");
        return;
    }
    int code = sink_fault_match(cfg->faults.rcpt, cfg->faults.n_rcpt, cmd->path, cmd->path_len);
    if (code) {
        SINK_INC(c->w, rcpt_rejected, 1);
        stage_reply(c, SINK_STAGE_RCPT, "%d %d.1.1 <%.*s>: recipient rejected (salvo-sink fault)",
                    code, code / 100, (int)(cmd->path_len > 900 ? 900 : cmd->path_len), cmd->path);
        return;
    }
    if (c->nrcpt >= SINK_MAX_RCPT) {
        SINK_INC(c->w, rcpt_rejected, 1);
        stage_reply(c, SINK_STAGE_RCPT, "452 4.5.3 Error: too many recipients");
        return;
    }
    if (c->nrcpt == c->rcpt_cap) {
        uint32_t cap = c->rcpt_cap ? c->rcpt_cap * 2 : 16;
        uint64_t *r = realloc(c->rcpt, cap * sizeof(*r));
        if (!r) {
            reply(c, "452 4.3.1 Error: out of memory");
            return;
        }
        c->rcpt = r;
        c->rcpt_cap = cap;
    }
    c->rcpt[c->nrcpt++] = sink_hash(cmd->path, cmd->path_len, 0);
    stage_reply(c, SINK_STAGE_RCPT, "250 2.1.5 Ok");
}

static void cmd_data(struct sink_conn *c)
{
    if (!c->in_mail) {
        reply(c, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (c->nrcpt == 0) {
        reply(c, "554 5.5.1 Error: no valid recipients");
        return;
    }
    const struct sink_faults *f = &c->w->cfg->faults;
    /* disconnect:data closes mid-message, after the 354 (see message_chunk). */
    if (!stage_has(f->disconnect, SINK_STAGE_DATA) && fault_preempts(c, SINK_STAGE_DATA))
        return;
    stage_reply(c, SINK_STAGE_DATA, "354 End data with <CR><LF>.<CR><LF>");
    sink_data_begin(&c->data);
    set_state(c, CS_DATA);
}

/* The final "." arrived: accept (and count) or reject the message. */
static void message_done(struct sink_conn *c)
{
    struct sink_worker *w = c->w;
    const struct sink_config *cfg = w->cfg;
    set_state(c, CS_CMD);
    uint32_t nrcpt = c->nrcpt;
    txn_reset(c);
    if (fault_preempts(c, SINK_STAGE_DOT))
        return;
    uint64_t bytes = sink_data_bytes(&c->data);
    if (bytes > cfg->max_size) {
        SINK_INC(w, data_rejected, 1);
        stage_reply(c, SINK_STAGE_DOT, "552 5.3.4 Error: message too big");
        return;
    }
    if (cfg->faults.data_every) {
        uint64_t seq = atomic_fetch_add_explicit(&sink_data_seq, 1, memory_order_relaxed) + 1;
        if (seq % cfg->faults.data_every == 0) {
            SINK_INC(w, data_rejected, 1);
            stage_reply(c, SINK_STAGE_DOT, "%d %d.3.0 Error: message rejected (salvo-sink fault)",
                        cfg->faults.data_code, cfg->faults.data_code / 100);
            return;
        }
    }
    /* Counters move before the reply is queued: a client that has read the 250 may
     * rely on seeing this message in the next statistics. */
    SINK_INC(w, transactions, 1);
    SINK_INC(w, recipients, nrcpt);
    SINK_INC(w, bytes, bytes);
    if (w->track) {
        if (c->data.have_msgid) {
            uint64_t hm = sink_hash(c->data.msgid, c->data.msgid_len, 0x5a17);
            uint64_t fresh = 0, dup = 0, full = 0;
            for (uint32_t i = 0; i < nrcpt; i++) {
                int r = sink_track_insert(w->track, sink_pair_key(hm, c->rcpt[i]));
                if (r == 1)
                    fresh++;
                else if (r == 0)
                    dup++;
                else
                    full++;
            }
            SINK_INC(w, pairs, fresh);
            SINK_INC(w, duplicates, dup);
            SINK_INC(w, track_full, full);
        } else {
            SINK_INC(w, no_message_id, 1);
        }
    }
    stage_reply(c, SINK_STAGE_DOT, "250 2.0.0 Ok: queued as %02X%014llX", w->id,
                (unsigned long long)(++w->next_queue_id & 0xffffffffffffffULL));
}

static void command(struct sink_conn *c, const char *line, size_t len)
{
    struct sink_cmd cmd;
    sv_debug("conn %llx: <<< %.*s", (unsigned long long)c->id, (int)(len > 512 ? 512 : len), line);
    SINK_INC(c->w, commands, 1);
    int rc = sink_cmd_parse(line, len, &cmd);
    switch (rc) {
    case SINK_CMD_OK: break;
    case SINK_CMD_UNKNOWN:
        SINK_INC(c->w, syntax_errors, 1);
        reply(c, "500 5.5.2 Error: command not recognized");
        return;
    case SINK_CMD_SYNTAX:
        SINK_INC(c->w, syntax_errors, 1);
        reply(c, "501 5.5.4 Syntax error in parameters or arguments");
        return;
    case SINK_CMD_BADPARAM:
        SINK_INC(c->w, syntax_errors, 1);
        reply(c, "555 5.5.4 Unsupported or malformed parameter");
        return;
    case SINK_CMD_TOOLARGE:
        SINK_INC(c->w, mail_rejected, 1);
        reply(c, "552 5.3.4 Message size exceeds fixed limit");
        return;
    default: __builtin_trap();
    }
    if (c->w->cfg->faults.greeting_code && cmd.verb != SINK_VERB_QUIT) {
        /* RFC 5321 3.1: after a refusing greeting, wait for QUIT. */
        reply(c, "503 5.5.1 Error: no SMTP service here");
        return;
    }
    switch (cmd.verb) {
    case SINK_VERB_HELO:
    case SINK_VERB_EHLO: cmd_ehlo(c, &cmd); break;
    case SINK_VERB_MAIL: cmd_mail(c, &cmd); break;
    case SINK_VERB_RCPT: cmd_rcpt(c, &cmd); break;
    case SINK_VERB_DATA: cmd_data(c); break;
    case SINK_VERB_RSET:
        txn_reset(c);
        reply(c, "250 2.0.0 Ok");
        break;
    case SINK_VERB_NOOP: reply(c, "250 2.0.0 Ok"); break;
    case SINK_VERB_QUIT:
        open_done(c);
        reply(c, "221 2.0.0 Bye");
        c->close_after_flush = true;
        break;
    case SINK_VERB_VRFY: reply(c, "252 2.0.0 Cannot VRFY user, but will accept message"); break;
    case SINK_VERB_HELP: reply(c, "214 2.0.0 salvo-sink: see bench/README.md"); break;
    case SINK_VERB_STARTTLS:
        if (!c->w->cfg->starttls) {
            reply(c, "502 5.5.1 Error: STARTTLS not available");
        } else if (tls_conn_is_tls(c->tc)) {
            reply(c, "503 5.5.1 Error: TLS already active");
        } else {
            /* RFC 3207 4.2: anything the client pipelined after STARTTLS is plaintext
             * we must not act on; conn_input drops it (tls_after_flush ends the loop). */
            reply(c, "220 2.0.0 Ready to start TLS");
            c->tls_after_flush = true;
        }
        break;
    case SINK_VERB_UNKNOWN:
    default: __builtin_trap();
    }
}

/* Handles everything complete in c->in; keeps an incomplete tail for the next read. */
static void conn_input(struct sink_conn *c)
{
    size_t off = 0;
    while (off < c->in_len && !c->want_close && !c->close_after_flush && !c->tls_after_flush &&
           !c->delay_pending) {
        char *s = c->in + off;
        size_t avail = c->in_len - off;
        if (c->st == CS_DATA) {
            if (stage_has(c->w->cfg->faults.disconnect, SINK_STAGE_DATA)) {
                sv_debug("conn %llx: fault disconnect:data", (unsigned long long)c->id);
                c->want_close = true;
                break;
            }
            bool done;
            off += sink_data_feed(&c->data, s, avail, &done);
            if (done)
                message_done(c);
            continue;
        }
        if (c->st == CS_STALL || c->st == CS_MULTILINE || c->st == CS_HANDSHAKE) {
            off = c->in_len; /* never answered: drop */
            break;
        }
        char *nl = memchr(s, '\n', avail);
        if (!nl) {
            if (c->discard_line) {
                off = c->in_len;
            } else if (avail >= SINK_LINE_MAX) {
                SINK_INC(c->w, lines_too_long, 1);
                reply(c, "500 5.5.2 Error: line too long");
                c->discard_line = true;
                off = c->in_len;
            }
            break;
        }
        size_t line_len = (size_t)(nl - s) + 1;
        off += line_len;
        if (c->discard_line) {
            c->discard_line = false; /* the end of the over-long line */
            continue;
        }
        if (line_len > SINK_LINE_MAX) {
            SINK_INC(c->w, lines_too_long, 1);
            reply(c, "500 5.5.2 Error: line too long");
            continue;
        }
        size_t l = line_len - 1;
        if (l > 0 && s[l - 1] == '\r')
            l--;
        command(c, s, l);
    }
    if (c->want_close || c->close_after_flush || c->tls_after_flush)
        off = c->in_len; /* nothing after QUIT (RFC 5321 4.1.1.10) or STARTTLS is read */
    if (off < c->in_len)
        memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

/* --- I/O ---------------------------------------------------------------------------- */

static void conn_free(struct sink_conn *c)
{
    struct sink_worker *w = c->w;
    sv_debug("conn %llx: closed", (unsigned long long)c->id);
    /* Counted before the close: a client that has seen EOF sees the count too. */
    SINK_INC(w, connections_closed, 1);
    open_done(c);
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->delay);
    tls_conn_free(c->tc); /* closes the fd */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sv_buf_free(&c->out);
    free(c->rcpt);
    free(c);
}

static void set_reading(struct sink_conn *c, bool on)
{
    if (on && !c->reading)
        ev_io_start(c->w->loop, &c->rio);
    else if (!on && c->reading)
        ev_io_stop(c->w->loop, &c->rio);
    c->reading = on;
}

/* Refills the endless multi-line reply (fault hostile:multiline). */
static void multiline_fill(struct sink_conn *c)
{
    static const char line[] = "250-salvo-sink fault: this reply never ends\r\n";
    while (c->out.len < 16384 && !c->want_close)
        out_put(c, line, sizeof(line) - 1);
}

/* Drives the server handshake after STARTTLS. Returns -1 if the connection is to be
 * freed. On success the session starts over (RFC 3207 4.2: forget EHLO). */
static int conn_handshake(struct sink_conn *c)
{
    struct sink_worker *w = c->w;
    int rc = tls_conn_handshake(c->tc);
    if (rc == TLS_IO_WANT_READ || rc == TLS_IO_WANT_WRITE) {
        set_reading(c, rc == TLS_IO_WANT_READ);
        if (rc == TLS_IO_WANT_WRITE)
            ev_io_start(w->loop, &c->wio);
        else
            ev_io_stop(w->loop, &c->wio);
        return 0;
    }
    if (rc != 0) {
        SINK_INC(w, tls_handshakes_failed, 1);
        sv_info("conn %llx: TLS handshake failed: %s", (unsigned long long)c->id,
                tls_conn_error(c->tc));
        return -1;
    }
    struct tls_info info;
    bool resumed = tls_conn_info(c->tc, &info) == 0 && info.resumed;
    if (resumed)
        SINK_INC(w, tls_handshakes_resumed, 1);
    else
        SINK_INC(w, tls_handshakes_full, 1);
    sv_debug("conn %llx: TLS established (%s)", (unsigned long long)c->id,
             resumed ? "resumed" : "full");
    c->helo = false;
    txn_reset(c);
    set_state(c, CS_CMD);
    ev_io_stop(w->loop, &c->wio);
    set_reading(c, true);
    return 0;
}

/* Starts the TLS handshake once "220 Ready to start TLS" has left in the clear. */
static int conn_start_tls(struct sink_conn *c)
{
    c->tls_after_flush = false;
    c->in_len = 0; /* plaintext pipelined after STARTTLS is dropped (RFC 3207 4.2) */
    struct sink_worker *w = c->w;
    unsigned gen = atomic_load_explicit(&sink_tls_gen, memory_order_acquire);
    if (!w->tls_srv || w->tls_gen != gen) { /* first use, or reloaded since */
        tls_server_free(w->tls_srv);
        w->tls_srv = tls_server_slot_get(w->cfg->tls_slot);
        w->tls_gen = gen;
    }
    int rc = w->tls_srv ? tls_conn_start_server(c->tc, w->tls_srv) : -ENOMEM;
    if (rc < 0) {
        SINK_INC(c->w, tls_handshakes_failed, 1);
        sv_warn("conn %llx: cannot start TLS: %s", (unsigned long long)c->id, strerror(-rc));
        return -1;
    }
    set_state(c, CS_HANDSHAKE);
    return conn_handshake(c);
}

/* Writes what is queued. Returns -1 if the connection is to be freed. */
static int conn_flush(struct sink_conn *c)
{
    if (c->want_close)
        return -1;
    if (c->delay_pending && (c->st == CS_CMD || c->st == CS_DATA)) {
        c->delay_pending = false;
        c->delaying = true;
        ev_timer_set(&c->delay, c->delay_ms / 1000.0, 0.);
        ev_timer_start(c->w->loop, &c->delay);
    }
    if (c->delaying) { /* hold everything (and stop reading) until the timer fires */
        set_reading(c, false);
        ev_io_stop(c->w->loop, &c->wio);
        return 0;
    }
    if (c->st == CS_HANDSHAKE)
        return conn_handshake(c);
    if (c->st == CS_MULTILINE) {
        /* One chunk per wake-up, so an eager reader cannot starve the other
         * connections of this thread. */
        if (c->out_off == c->out.len) {
            sv_buf_reset(&c->out);
            c->out_off = 0;
        }
        multiline_fill(c);
        ssize_t n = conn_write(c, c->out.ptr + c->out_off, c->out.len - c->out_off);
        if (n < 0 && n != -EAGAIN)
            return -1;
        if (n > 0)
            c->out_off += (size_t)n;
        ev_io_start(c->w->loop, &c->wio);
        set_reading(c, true); /* keeps reading to notice the peer leaving */
        return c->want_close ? -1 : 0;
    }
    while (c->out_off < c->out.len) {
        c->io_swapped = false;
        ssize_t n = conn_write(c, c->out.ptr + c->out_off, c->out.len - c->out_off);
        if (n == -EAGAIN) {
            /* Backpressure: read again once the peer has taken our replies (unless
             * TLS needs to read before it can write). */
            if (c->io_swapped) {
                ev_io_stop(c->w->loop, &c->wio);
                set_reading(c, true);
            } else {
                ev_io_start(c->w->loop, &c->wio);
                set_reading(c, false);
            }
            return 0;
        }
        if (n < 0)
            return -1;
        c->out_off += (size_t)n;
    }
    sv_buf_reset(&c->out);
    c->out_off = 0;
    ev_io_stop(c->w->loop, &c->wio);
    if (c->close_after_flush)
        return -1;
    if (c->tls_after_flush)
        return conn_start_tls(c);
    set_reading(c, true);
    return 0;
}

static void conn_delay_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct sink_conn *c = t->data;
    c->delaying = false;
    if (conn_flush(c) < 0) {
        conn_free(c);
        return;
    }
    /* Commands that arrived behind the delayed reply are still in the buffer. */
    if (c->reading && (c->st == CS_CMD || c->st == CS_DATA) && c->in_len > 0) {
        conn_input(c);
        if (conn_flush(c) < 0)
            conn_free(c);
    }
}

/* Reads and handles input until the socket (and TLS's buffer) is drained or replies
 * back up. Returns -1 if the connection is to be freed. */
static int conn_pump(struct sink_conn *c)
{
    for (int rounds = 0; rounds < 16; rounds++) { /* bounded: fairness within the thread */
        if (c->st == CS_HANDSHAKE)
            return conn_handshake(c);
        if (c->out_off < c->out.len) /* a write waits (e.g. TLS needed to read first) */
            return conn_flush(c);
        if (c->in_len == sizeof(c->in))
            return -1; /* cannot happen: conn_input keeps < SINK_LINE_MAX */
        c->io_swapped = false;
        ssize_t n = conn_read(c, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (n == -EAGAIN) {
            if (c->io_swapped) { /* TLS must write before it can read on */
                ev_io_start(c->w->loop, &c->wio);
                set_reading(c, false);
            }
            return 0;
        }
        if (n <= 0)
            return -1; /* EOF or error: the peer is gone */
        c->last_active = ev_now(c->w->loop);
        c->in_len += (size_t)n;
        conn_input(c);
        if (conn_flush(c) < 0)
            return -1;
        if (!c->reading)
            return 0;
        /* A TLS record may hold more than we had room for: libev will not tell us. */
        if (c->st != CS_HANDSHAKE && tls_conn_pending(c->tc) == 0)
            return 0;
    }
    ev_feed_event(c->w->loop, &c->rio, EV_READ); /* more next loop iteration */
    return 0;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct sink_conn *c = io->data;
    if (conn_pump(c) < 0)
        conn_free(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct sink_conn *c = io->data;
    bool swapped_read = c->io_swapped && c->out_off == c->out.len;
    if (swapped_read) { /* a TLS read that wanted to write: retry the read */
        c->io_swapped = false;
        ev_io_stop(c->w->loop, &c->wio);
        if (conn_pump(c) < 0)
            conn_free(c);
        return;
    }
    if (conn_flush(c) < 0) {
        conn_free(c);
        return;
    }
    /* Input that arrived while we were not reading may already hold commands. */
    if (c->reading && c->st == CS_CMD && c->in_len > 0 && c->out.len == 0) {
        conn_input(c);
        if (conn_flush(c) < 0)
            conn_free(c);
    }
}

static void conn_new(struct sink_worker *w, int fd)
{
    struct sink_conn *c = malloc(sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    memset(c, 0, offsetof(struct sink_conn, in));
    if (tls_conn_new_plain(fd, &c->tc) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->w = w;
    c->id = ((uint64_t)w->id << 48) | ++w->next_id;
    c->last_active = ev_now(w->loop);
    c->st = CS_CMD;
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    c->rio.data = c;
    c->wio.data = c;
    ev_timer_init(&c->delay, conn_delay_cb, 0., 0.);
    c->delay.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    SINK_INC(w, connections, 1);
    c->open_counted = true;
    uint64_t open = atomic_fetch_add_explicit(&sink_open_now, 1, memory_order_relaxed) + 1;
    uint64_t seen = atomic_load_explicit(&sink_open_max, memory_order_relaxed);
    while (open > seen &&
           !atomic_compare_exchange_weak_explicit(&sink_open_max, &seen, open, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    sv_debug("conn %llx: accepted on thread %d", (unsigned long long)c->id, w->id);
    if (w->cfg->faults.greeting_code)
        stage_reply(c, SINK_STAGE_GREETING, "%d %s salvo-sink fault: no SMTP service here",
                    w->cfg->faults.greeting_code, w->cfg->hostname);
    else if (!fault_preempts(c, SINK_STAGE_GREETING))
        stage_reply(c, SINK_STAGE_GREETING, "220 %s ESMTP salvo-sink", w->cfg->hostname);
    if (conn_flush(c) < 0)
        conn_free(c);
}

/* Out of file descriptors: the listener stays readable, so pause accepting for a
 * moment instead of spinning (and log once per pause). */
static void accept_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct sink_worker *w = t->data;
    for (int i = 0; i < w->n_listen; i++)
        ev_io_start(loop, &w->lio[i]);
}

void sink_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct sink_worker *w = io->data;
    for (int i = 0; i < 64; i++) { /* bounded: other listeners get their turn */
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                sv_warn("thread %d: accept: %s; pausing accepts for 100 ms", w->id,
                        strerror(errno));
                for (int j = 0; j < w->n_listen; j++)
                    ev_io_stop(loop, &w->lio[j]);
                if (!ev_is_active(&w->accept_pause)) {
                    ev_timer_init(&w->accept_pause, accept_resume_cb, 0.1, 0.);
                    w->accept_pause.data = w;
                    ev_timer_start(loop, &w->accept_pause);
                }
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_new(w, fd);
    }
}

/* RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next
 * command, then may close with 421. One sweep per second over the thread's
 * connections costs less than a timer per connection touched on every read. */
void sink_idle_sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct sink_worker *w = t->data;
    ev_tstamp now = ev_now(loop);
    struct sink_conn *next;
    for (struct sink_conn *c = w->conns; c; c = next) {
        next = c->next;
        if (now - c->last_active < w->cfg->idle_timeout)
            continue;
        SINK_INC(w, timeouts, 1);
        sv_info("conn %llx: idle for %.0f s, closing", (unsigned long long)c->id,
                now - c->last_active);
        if (w->cfg->faults.reset_idle) {
            /* Fault reset-idle: a server or middlebox that drops the connection
             * (RST, no 421); the client learns it only when it writes or reads. */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(tls_conn_fd(c->tc), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        } else if ((c->st == CS_CMD || c->st == CS_DATA) && c->out.len == c->out_off) {
            char line[300];
            int n = snprintf(line, sizeof(line), "421 4.4.2 %s Error: timeout exceeded\r\n",
                             w->cfg->hostname);
            conn_write(c, line, (size_t)n); /* best effort: we close anyway */
        }
        conn_free(c);
    }
}

void sink_conns_close_all(struct sink_worker *w)
{
    while (w->conns)
        conn_free(w->conns);
}
