/* engine/deliver: one worker's delivery of claimed jobs (see deliver.h).
 *
 * Per job: rule variables -> next-hop (relay) or MX lookup -> for each address in
 * order (limits.mx x limits.multihomed): evaluate the TLS rules with `mx` set, take
 * a pooled session that satisfies them or open one, run the transaction(s); a
 * failure before MAIL FROM left moves on to the next address; then one outcome per
 * recipient. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conc.h"
#include "deliver.h"
#include "deliver_int.h"
#include "tls.h"

#define SETTINGS(X)                                                                                \
    X(STARTTLS, "queue.outbound.tls.starttls")                                                     \
    X(ALLOW_INVALID, "queue.outbound.tls.allow-invalid-certs")                                     \
    X(HOSTNAME, "queue.outbound.hostname")                                                         \
    X(NEXT_HOP, "queue.outbound.next-hop")                                                         \
    X(IP_STRATEGY, "queue.outbound.ip-strategy")                                                   \
    X(LIMIT_MX, "queue.outbound.limits.mx")                                                        \
    X(LIMIT_MULTIHOMED, "queue.outbound.limits.multihomed")                                        \
    X(T_CONNECT, "queue.outbound.timeouts.connect")                                                \
    X(T_GREETING, "queue.outbound.timeouts.greeting")                                              \
    X(T_TLS, "queue.outbound.timeouts.tls")                                                        \
    X(T_EHLO, "queue.outbound.timeouts.ehlo")                                                      \
    X(T_MAIL, "queue.outbound.timeouts.mail-from")                                                 \
    X(T_RCPT, "queue.outbound.timeouts.rcpt-to")                                                   \
    X(T_DATA, "queue.outbound.timeouts.data")                                                      \
    X(RETRY, "queue.schedule.retry")                                                               \
    X(EXPIRE, "queue.schedule.expire")

#define SET_ENUM(id, key) SET_##id,
enum { SETTINGS(SET_ENUM) SET_COUNT };
#undef SET_ENUM
#define SET_KEY(id, key) key,
static const char *const set_keys[] = {SETTINGS(SET_KEY)};
#undef SET_KEY

#define CONC_IDLE_MS 1000 /* idle time of a connection holding cluster-wide slots */

struct dhost {
    char *name;
    size_t naddrs;
    struct sockaddr_storage *addrs;
};

struct djob;

/* The structured TLS facts and duration of an attempt, for the events. */
struct tfacts {
    char version[16], cipher[64]; /* "" = plaintext */
    bool verified, resumed;
    int64_t us;
};

static void tfacts_of(struct tfacts *f, const struct smtp_txn *t)
{
    memcpy(f->version, t->tls_version, sizeof(f->version));
    memcpy(f->cipher, t->tls_cipher, sizeof(f->cipher));
    f->verified = t->tls_verified;
    f->resumed = t->tls_resumed;
    f->us = t->us;
}

struct eng_deliverer {
    struct eng_deliverer_opts o;
    struct rule_program *prog[SET_COUNT]; /* clones; NULL = the setting's default */
    const struct rule_setting *set[SET_COUNT];
    struct eng_dns *dns;
    struct tls_client *tls;
    struct tls_session_cache *tcache;
    struct eng_pool pool;
    size_t busy;
    uint64_t next_id;
    struct eng_deliver_stats st;
    bool shutting;
    void (*shut_done)(void *);
    void *shut_arg;
    ev_timer shut_timer;
    ev_idle shut_check;
    /* Jobs waiting for a pooled session to `key` to close: the pool is at
     * limits.connections and its sessions have all the transactions
     * limits.messages-per-connection allows. FIFO. */
    struct djob *wait_head, *wait_tail;
    struct eng_conc_local *conc; /* cluster-wide connection caps, or NULL */
    /* Slots of sessions that just closed: spares from the next loop iteration on,
     * once their sockets are closed too (the closed callback runs before). */
    struct eng_slot **stash;
    size_t nstash, stash_cap;
    ev_timer stash_timer;
    ev_timer warm_timer; /* wakes the jobs that waited for a session to settle */
    struct djob *jobs;   /* every job started and not yet called back */
    /* Settings replaced by eng_deliverer_reload(): open sessions and jobs in flight
     * may still point into them, so they are freed with the deliverer. */
    struct retired *retired;
};

struct retired {
    struct rule_program *prog[SET_COUNT];
    struct tls_client *tls;
    struct tls_session_cache *tcache;
    struct retired *next;
};

struct djob {
    struct eng_deliverer *d;
    const struct rq_job *job;
    eng_deliver_cb cb;
    void *cb_arg;
    uint64_t id;
    struct eng_outcome *o;
    struct rule_vars vars;
    struct rule_val *rvals;
    const char *sender_domain;
    /* route */
    struct dhost *hosts;
    size_t nhosts, hi, ai;
    int port;
    bool implicit_tls, relay;
    /* transactions */
    struct smtp_txn *txns;
    size_t ntxn, pending;
    /* Transactions [cbeg, cend) are on a session; a personalised job with more than
     * limits.messages-per-connection goes in chunks, each over its own session. */
    size_t cbeg, cend;
    struct sv_buf *bodies; /* personalised: one rendered body per recipient */
    bool fresh_retry;      /* retried once on a new connection after a dead pooled one */
    bool tried;            /* at least one address was attempted */
    /* RFC 5321 3.1: addresses that refused service (5xx greeting), and whether any
     * other attempt failed: every address refusing means a permanent failure. */
    unsigned refused;
    bool temp_failed;
    /* a failure before anything was sent, kept when moving to the next address */
    enum smtp_err last_err;
    char last_text[320];
    char last_tls[160];
    struct tfacts last_f; /* of the failure kept in last_* */
    double t_start;       /* ev_time() at eng_deliver */
    char keybuf[512];
    struct smtp_policy pol;
    struct djob *wait_next;
    struct eng_conc_wait cw;   /* the connection-cap buckets it waits on */
    struct djob *prev, *next;  /* in d->jobs */
    size_t nrcpt;              /* job->nrcpt, for after the job is handed back */
    struct smtp_session *sess; /* holding this attempt's transactions, or NULL */
    bool waiting;              /* in d->wait_head */
    bool conc_waiting;         /* ... for a cluster-wide connection slot */
    bool rate_waiting;         /* ... for rate tokens (any session may serve it then) */
    bool warm_waiting;         /* ... for the first TLS session to its destination */
    /* Rate tokens (mx / remote_ip) of the chunk from paid_chunk - 1: the buckets
     * paid, the last at host paid_hi, address paid_ai (and those before it). */
    size_t paid_chunk, paid_hi, paid_ai;
    struct eng_conc_paid paid;
    bool in_dns;      /* a lookup is pending (its callback gets `j`) */
    bool handed_back; /* called back with NULL; freed by dns_done */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void eval(struct djob *j, int which, struct rule_result *r)
{
    struct eng_deliverer *d = j->d;
    if (!d->prog[which]) {
        rule_setting_default(d->set[which], r);
        return;
    }
    int rc = rule_eval_setting(d->prog[which], &j->vars, r);
    if (rc < 0)
        sv_warn("deliver %llu: %s: %s; using the default", (unsigned long long)j->id,
                set_keys[which], rule_strerror(rc));
}

/* --- outcomes ----------------------------------------------------------------- */

struct rres {
    enum rq_outcome outcome;
    int64_t retry_at;
    char *error, *reply, *tls;
    struct tfacts f;
};

static void classify_deferred(struct djob *j, struct rres *r, const char *cls, const char *reply)
{
    struct rule_result rr, ex;
    eval(j, SET_RETRY, &rr);
    eval(j, SET_EXPIRE, &ex);
    int64_t iv = 60000;
    if (rr.n > 0)
        iv = rr.list[j->job->retry_num < rr.n ? j->job->retry_num : rr.n - 1];
    int64_t now = now_ms(), at = now + iv;
    int64_t created = rq_body_created_ms(j->job->body);
    if (at > created + ex.i) {
        r->outcome = RQ_BOUNCED;
        size_t n = strlen(cls) + strlen(reply) + 64;
        r->error = malloc(n);
        if (r->error)
            snprintf(r->error, n, "expired (last error %s): %s", cls, reply);
        r->reply = strdup(reply);
        return;
    }
    r->outcome = RQ_DEFERRED;
    r->retry_at = at;
    r->error = strdup(cls);
    r->reply = strdup(reply);
}

static void set_bounced(struct rres *r, const char *reply)
{
    r->outcome = RQ_BOUNCED;
    r->error = strdup(reply);
    r->reply = strdup(reply);
}

/* The outcome of recipient k of transaction t (RFC 5321 4.2.1 classes). */
static void rcpt_outcome(struct djob *j, const struct smtp_txn *t, size_t k, struct rres *r)
{
    r->tls = strdup(t->tls[0] ? t->tls : "none");
    tfacts_of(&r->f, t);
    int mc = t->mail_code, rc = t->rcpt_code ? t->rcpt_code[k] : 0, dc = t->data_code;
    if (mc / 100 == 5) {
        set_bounced(r, t->mail_reply ? t->mail_reply : "5xx");
        return;
    }
    if (rc / 100 == 5) {
        set_bounced(r, t->rcpt_reply[k] ? t->rcpt_reply[k] : "5xx");
        return;
    }
    if (t->err != SMTP_ERR_NONE) {
        classify_deferred(j, r, smtp_err_name(t->err), t->err_text ? t->err_text : "");
        return;
    }
    if (mc / 100 == 4) {
        classify_deferred(j, r, "unexpected-reply", t->mail_reply ? t->mail_reply : "");
        return;
    }
    if (rc / 100 != 2) {
        classify_deferred(j, r, "unexpected-reply",
                          t->rcpt_reply[k] ? t->rcpt_reply[k] : "no reply to RCPT TO");
        return;
    }
    if (dc / 100 == 2) {
        r->outcome = RQ_DELIVERED;
        r->reply = strdup(t->data_reply ? t->data_reply : "");
        return;
    }
    if (dc / 100 == 5) {
        set_bounced(r, t->data_reply);
        return;
    }
    classify_deferred(j, r, "unexpected-reply", t->data_reply ? t->data_reply : "no reply to DATA");
}

static void djob_free(struct djob *j)
{
    if (!j)
        return;
    eng_conc_unwait(j->d->conc, &j->cw);
    for (size_t i = 0; i < j->nhosts; i++) {
        free(j->hosts[i].name);
        free(j->hosts[i].addrs);
    }
    free(j->hosts);
    for (size_t i = 0; i < j->ntxn; i++) {
        smtp_txn_clear(&j->txns[i]);
        free(j->txns[i].rcpt_code);
        free(j->txns[i].rcpt_reply);
        free((void *)j->txns[i].rcpt);
    }
    free(j->txns);
    if (j->bodies)
        for (size_t i = 0; i < j->nrcpt; i++)
            sv_buf_free(&j->bodies[i]);
    free(j->bodies);
    free(j->rvals);
    eng_conc_paid_clear(&j->paid);
    free(j);
}

static void check_shutdown(struct eng_deliverer *d);

static void unlink_job(struct djob *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else if (j->d->jobs == j)
        j->d->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

/* Packs the per-recipient results into the outcome's arena and calls back. */
static void finish_job(struct djob *j, struct rres *rr)
{
    struct eng_deliverer *d = j->d;
    struct eng_outcome *o = j->o;
    size_t n = j->job->nrcpt, total = 0;
    enum { NP = 5 }; /* strings per recipient: error, reply, tls, version, cipher */
    for (size_t i = 0; i < n; i++)
        total += (rr[i].error ? strlen(rr[i].error) : 0) + (rr[i].reply ? strlen(rr[i].reply) : 0) +
                 (rr[i].tls ? strlen(rr[i].tls) : 0) + strlen(rr[i].f.version) +
                 strlen(rr[i].f.cipher) + NP;
    bool oom = sv_buf_reserve(&o->arena, total + 1) < 0;
    size_t *offs = calloc(NP * n + 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        const char *parts[NP] = {rr[i].error, rr[i].reply, rr[i].tls, rr[i].f.version,
                                 rr[i].f.cipher};
        for (int p = 0; p < NP; p++) {
            if (!oom && offs) {
                offs[NP * i + p] = o->arena.len;
                const char *src = parts[p] ? parts[p] : "";
                memcpy(o->arena.ptr + o->arena.len, src, strlen(src) + 1);
                o->arena.len += strlen(src) + 1;
            }
        }
        free(rr[i].error);
        free(rr[i].reply);
        free(rr[i].tls);
        o->res[i].outcome = rr[i].outcome;
        o->res[i].retry_at_ms = rr[i].retry_at;
        o->res[i].tls_verified = rr[i].f.verified;
        o->res[i].tls_resumed = rr[i].f.resumed;
        o->res[i].us = rr[i].f.us;
        switch (rr[i].outcome) {
        case RQ_DELIVERED: d->st.rcpt_delivered++; break;
        case RQ_DEFERRED: d->st.rcpt_deferred++; break;
        case RQ_BOUNCED:
        case RQ_DEAD: d->st.rcpt_bounced++; break;
        default: abort();
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!oom && offs) {
            o->res[i].error = o->arena.ptr + offs[NP * i];
            o->res[i].reply = o->arena.ptr + offs[NP * i + 1];
            o->res[i].tls = o->arena.ptr + offs[NP * i + 2];
            o->res[i].tls_version = o->arena.ptr + offs[NP * i + 3];
            o->res[i].tls_cipher = o->arena.ptr + offs[NP * i + 4];
        } else {
            o->res[i].error = o->res[i].outcome == RQ_DELIVERED ? "" : "io";
            o->res[i].reply = "out of memory";
            o->res[i].tls = "none";
            o->res[i].tls_version = o->res[i].tls_cipher = "";
        }
        if (o->res[i].outcome == RQ_DELIVERED)
            o->res[i].error = NULL;
    }
    free(offs);
    free(rr);
    for (size_t i = 0; i < n; i++)
        sv_debug("deliver %llu: <%s>: %s: %s", (unsigned long long)j->id, j->job->rcpt[i].addr,
                 o->res[i].outcome == RQ_DELIVERED  ? "delivered"
                 : o->res[i].outcome == RQ_DEFERRED ? "deferred"
                                                    : "bounced",
                 o->res[i].reply ? o->res[i].reply : "");
    d->st.jobs++;
    d->busy--;
    unlink_job(j);
    eng_deliver_cb cb = j->cb;
    void *arg = j->cb_arg;
    djob_free(j);
    cb(arg, o);
    check_shutdown(d);
}

/* Every recipient gets the same local outcome (DNS, routing, connection failure). */
/* With `tls`, the TLS facts (text `tls`, structured j->last_f) are those of the
 * failed attempt kept in j->last_*; else there were none. */
static void finish_all(struct djob *j, bool permanent, const char *cls, const char *reply,
                       const char *tls)
{
    struct rres *rr = calloc(j->job->nrcpt ? j->job->nrcpt : 1, sizeof(*rr));
    if (!rr)
        abort(); /* tiny; nothing sensible to do without memory here */
    double us = (ev_time() - j->t_start) * 1e6;
    for (size_t i = 0; i < j->job->nrcpt; i++) {
        rr[i].tls = strdup(tls ? tls : "none");
        if (tls)
            rr[i].f = j->last_f;
        else
            rr[i].f.us = us > 0 ? (int64_t)(us + 0.5) : 0;
        if (permanent)
            set_bounced(&rr[i], reply);
        else
            classify_deferred(j, &rr[i], cls, reply);
    }
    finish_job(j, rr);
}

static void finish_txns(struct djob *j)
{
    struct rres *rr = calloc(j->job->nrcpt ? j->job->nrcpt : 1, sizeof(*rr));
    if (!rr)
        abort();
    size_t base = 0;
    for (size_t t = 0; t < j->ntxn; t++) {
        for (size_t k = 0; k < j->txns[t].nrcpt; k++)
            rcpt_outcome(j, &j->txns[t], k, &rr[base + k]);
        base += j->txns[t].nrcpt;
    }
    finish_job(j, rr);
}

/* --- attempts ------------------------------------------------------------------- */

static void try_next(struct djob *j);

/* The transactions from cbeg on, never sent, fail with `e`/`text` (chunks after a
 * first one that went out: the job cannot be handed back any more). */
static void fail_rest(struct djob *j, enum smtp_err e, const char *text)
{
    for (size_t i = j->cbeg; i < j->ntxn; i++) {
        struct smtp_txn *t = &j->txns[i];
        t->err = e;
        free(t->err_text);
        t->err_text = strdup(text);
    }
}

static void reset_txns(struct djob *j)
{
    for (size_t i = j->cbeg; i < j->cend; i++) {
        struct smtp_txn *t = &j->txns[i];
        smtp_txn_clear(t);
        t->mail_code = t->data_code = 0;
        memset(t->rcpt_code, 0, t->nrcpt * sizeof(int));
        memset(t->rcpt_reply, 0, t->nrcpt * sizeof(char *));
        t->err = SMTP_ERR_NONE;
        t->mail_sent = t->body_sent = t->reused = t->tls_new = t->tls_resumed = false;
        t->refused = false;
        t->tls[0] = t->tls_version[0] = t->tls_cipher[0] = '\0';
        t->tls_verified = false;
    }
}

static void txn_done(void *arg, struct smtp_txn *t)
{
    struct djob *j = arg;
    struct eng_deliverer *d = j->d;
    if (t->err == SMTP_ERR_NONE &&
        (t->data_code / 100 == 2 || t->data_code / 100 == 4 || t->data_code / 100 == 5) &&
        t->body_sent) {
        j->o->transactions++;
        d->st.transactions++;
    }
    if (t->err == SMTP_ERR_NONE || t->mail_sent) {
        if (t->reused) {
            j->o->connections_reused++;
            d->st.connections_reused++;
        }
        if (t->tls_new) {
            if (t->tls_resumed) {
                j->o->tls_resumed++;
                d->st.tls_resumed++;
            } else {
                j->o->tls_full++;
                d->st.tls_full++;
            }
        }
    }
    if (--j->pending > 0)
        return;
    /* All transactions are back. A session failure before any MAIL FROM left
     * means nothing reached the server: try the next address (or, when a pooled
     * session had died while idle, a fresh connection to the same one). */
    bool none_sent = true, failed = false, dead_pooled = false;
    for (size_t i = j->cbeg; i < j->cend; i++) {
        none_sent &=
            !j->txns[i].mail_sent || (j->txns[i].err == SMTP_ERR_CONNECTION && j->txns[i].reused &&
                                      !j->txns[i].body_sent && j->txns[i].mail_code == 0);
        failed |= j->txns[i].err != SMTP_ERR_NONE;
        dead_pooled |= j->txns[i].reused && j->txns[i].err == SMTP_ERR_CONNECTION;
    }
    if (failed && none_sent && !d->shutting) {
        const struct smtp_txn *f = &j->txns[j->cbeg];
        j->last_err = f->err;
        snprintf(j->last_text, sizeof(j->last_text), "%s", f->err_text ? f->err_text : "");
        snprintf(j->last_tls, sizeof(j->last_tls), "%s", f->tls[0] ? f->tls : "none");
        tfacts_of(&j->last_f, f);
        if (dead_pooled && !j->fresh_retry) {
            j->fresh_retry = true; /* same address, new connection */
        } else {
            if (f->refused)
                j->refused++;
            else
                j->temp_failed = true;
            j->ai++;
        }
        reset_txns(j);
        try_next(j);
        return;
    }
    j->cbeg = j->cend;
    if (j->cbeg < j->ntxn) {
        if (!d->shutting) { /* the next chunk, from the same address */
            j->fresh_retry = false;
            try_next(j);
            return;
        }
        fail_rest(j, SMTP_ERR_CONNECTION, "shutting down");
    }
    finish_txns(j);
}

/* A slot is free: the waiting jobs try again (those still blocked wait again). */
static void wake_waiters(struct eng_deliverer *d)
{
    struct djob *w = d->wait_head;
    d->wait_head = d->wait_tail = NULL;
    while (w) {
        struct djob *next = w->wait_next;
        w->wait_next = NULL;
        w->waiting = false;
        w->conc_waiting = false;
        w->rate_waiting = false;
        w->warm_waiting = false;
        try_next(w);
        w = next;
    }
    eng_conc_trim(d->conc);
}

static void unstash(struct eng_deliverer *d)
{
    eng_conc_put(d->conc, d->stash, d->nstash);
    d->nstash = 0;
}

static void stash_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct eng_deliverer *d = t->data;
    unstash(d);
    wake_waiters(d);
    check_shutdown(d);
}

static void session_closed(void *arg, struct smtp_session *s)
{
    struct eng_deliverer *d = arg;
    struct eng_pool_entry *e = eng_pool_entry_of(&d->pool, s);
    if (e && e->nslots) {
        if (d->nstash + e->nslots > d->stash_cap) {
            size_t cap = d->stash_cap ? d->stash_cap * 2 : 16;
            while (cap < d->nstash + e->nslots)
                cap *= 2;
            struct eng_slot **n = realloc(d->stash, cap * sizeof(*n));
            if (n) {
                d->stash = n;
                d->stash_cap = cap;
            }
        }
        if (d->nstash + e->nslots <= d->stash_cap) {
            memcpy(d->stash + d->nstash, e->slots, e->nslots * sizeof(*e->slots));
            d->nstash += e->nslots;
            if (!ev_is_active(&d->stash_timer)) {
                ev_timer_set(&d->stash_timer, 0.0, 0.0);
                ev_timer_start(d->o.loop, &d->stash_timer);
            }
        } else {
            eng_conc_put(d->conc, e->slots, e->nslots); /* no memory: at once */
        }
        e->nslots = 0;
    }
    eng_pool_remove(&d->pool, s);
    wake_waiters(d);
    check_shutdown(d);
}

void eng_deliverer_poll_slots(struct eng_deliverer *d)
{
    if (d && eng_conc_poll(d->conc)) {
        wake_waiters(d);
        check_shutdown(d);
    }
}

static void wait_push(struct djob *j)
{
    struct eng_deliverer *d = j->d;
    j->wait_next = NULL;
    j->waiting = true;
    if (d->wait_tail)
        d->wait_tail->wait_next = j;
    else
        d->wait_head = j;
    d->wait_tail = j;
}

/* TLS warm-up: the first connection to a destination pays a full handshake; a
 * second one opened before the first has its TLS session would pay another. So
 * while every connection to the destination is still connecting and no session is
 * cached for it, a job that would open one more waits for the first to settle
 * (milliseconds) and then resumes its session: one full handshake per worker and
 * destination instead of one per connection opened at the start. */
static bool tls_warming_up(const struct djob *j, const char *host)
{
    const struct eng_deliverer *d = j->d;
    if (!d->tcache || (!j->implicit_tls && j->pol.starttls == RULE_TLS_DISABLE))
        return false;
    enum tls_verify mode = j->pol.allow_invalid ? TLS_VERIFY_ALLOW_INVALID : TLS_VERIFY_STRICT;
    return !tls_session_cache_has(d->tcache, host, (uint16_t)j->port, mode) &&
           eng_pool_all_connecting(&d->pool, j->keybuf);
}

static void warm_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct eng_deliverer *d = t->data;
    wake_waiters(d);
    check_shutdown(d);
}

/* Wakes the warm-up waiters from the loop, not from inside the session's callback. */
static void session_settled(void *arg, struct smtp_session *s)
{
    (void)s;
    struct eng_deliverer *d = arg;
    bool warm = false;
    for (const struct djob *w = d->wait_head; w && !warm; w = w->wait_next)
        warm = w->warm_waiting;
    if (warm && !ev_is_active(&d->warm_timer))
        ev_timer_start(d->o.loop, &d->warm_timer);
}

static void session_idle(void *arg, struct smtp_session *s)
{
    struct eng_deliverer *d = arg;
    const char *key = d->wait_head ? eng_pool_key(&d->pool, s) : NULL;
    /* Jobs that wait for a cluster-wide slot to open a connection to this
     * destination take this one instead. */
    bool conc_waiter = false;
    for (const struct djob *w = d->wait_head; w && key && !conc_waiter; w = w->wait_next)
        conc_waiter = w->conc_waiting && strcmp(w->keybuf, key) == 0;
    if (conc_waiter && !d->shutting &&
        smtp_session_transactions(s) < (unsigned)d->o.conf->out_msgs_per_conn) {
        wake_waiters(d);
        if (!eng_pool_entry_of(&d->pool, s) || smtp_session_busy(s))
            return;
        key = d->wait_head ? eng_pool_key(&d->pool, s) : NULL;
    }
    /* At the limit, or jobs wait for a slot they cannot get here (a session to
     * their destination, or a cluster-wide slot this one holds): QUIT (the closed
     * callback lets the waiting jobs in). */
    bool waited_for = false;
    const struct eng_pool_entry *e = d->wait_head ? eng_pool_entry_of(&d->pool, s) : NULL;
    for (const struct djob *w = d->wait_head; w && e && !waited_for; w = w->wait_next)
        for (size_t i = 0; i < e->nslots && w->conc_waiting && !waited_for; i++)
            waited_for = eng_conc_waits_for(&w->cw, e->slots[i]);
    for (const struct djob *w = d->wait_head; w && key && !waited_for; w = w->wait_next)
        waited_for = !w->warm_waiting && !w->rate_waiting && strcmp(w->keybuf, key) == 0;
    if (d->shutting || waited_for ||
        smtp_session_transactions(s) >= (unsigned)d->o.conf->out_msgs_per_conn)
        smtp_session_close(s, true, "done");
}

static bool addr_to_text(const struct sockaddr_storage *a, char *buf, size_t len)
{
    const void *p = a->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)a)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)a)->sin_addr;
    return inet_ntop(a->ss_family, p, buf, (socklen_t)len) != NULL;
}

static void try_next(struct djob *j)
{
    struct eng_deliverer *d = j->d;
    j->sess = NULL;
    while (j->hi < j->nhosts && j->ai >= j->hosts[j->hi].naddrs) {
        j->hi++;
        j->ai = 0;
    }
    if (j->hi >= j->nhosts) {
        if (j->cbeg > 0) { /* earlier chunks have their outcomes */
            fail_rest(j, j->last_err != SMTP_ERR_NONE ? j->last_err : SMTP_ERR_CONNECTION,
                      j->last_text[0] ? j->last_text : "no address to try");
            finish_txns(j);
            return;
        }
        if (j->refused > 0 && !j->temp_failed) { /* every address: "554 no service" */
            finish_all(j, true, "unexpected-reply", j->last_text, j->last_tls);
            return;
        }
        finish_all(j, false,
                   smtp_err_name(j->last_err != SMTP_ERR_NONE ? j->last_err : SMTP_ERR_CONNECTION),
                   j->last_text[0] ? j->last_text : "no address to try", j->last_tls);
        return;
    }
    struct dhost *h = &j->hosts[j->hi];
    const struct sockaddr_storage *a = &h->addrs[j->ai];
    char ip[INET6_ADDRSTRLEN] = "?";
    addr_to_text(a, ip, sizeof(ip));

    /* The attempt's policy, with `mx` known. */
    rule_vars_set_str(&j->vars, RULE_VAR_MX, h->name);
    rule_vars_set_str(&j->vars, RULE_VAR_REMOTE_IP, ip);
    struct rule_result r;
    eval(j, SET_STARTTLS, &r);
    j->pol.starttls = (enum rule_tls_mode)r.i;
    eval(j, SET_ALLOW_INVALID, &r);
    j->pol.allow_invalid = r.i != 0;
    snprintf(j->keybuf, sizeof(j->keybuf), "%s [%s]:%d%s", h->name, ip, j->port,
             j->implicit_tls ? "/tls" : "");
    sv_debug("deliver %llu: attempt via %s: starttls %s, %s certificates",
             (unsigned long long)j->id, j->keybuf,
             j->pol.starttls == RULE_TLS_REQUIRE   ? "require"
             : j->pol.starttls == RULE_TLS_DISABLE ? "disable"
                                                   : "optional",
             j->pol.allow_invalid ? "invalid allowed" : "strict");

    struct smtp_session *s = NULL;
    unsigned maxm = (unsigned)d->o.conf->out_msgs_per_conn;
    /* A personalised job with more transactions than the limit goes in chunks of
     * at most the limit, each over a session that has room for all of it. */
    size_t left = j->ntxn - j->cbeg;
    unsigned need = left < maxm ? (unsigned)left : maxm;
    size_t maxc = (size_t)d->o.conf->out_connections;
    /* Rates on mx / remote_ip: the chunk's recipients are paid for before it takes
     * or opens a session (a job waiting for tokens holds none), once per bucket. A
     * fallback after a failure before anything was sent pays the buckets the new
     * host or address adds (a limiter on mx, another MX host; on remote_ip, another
     * address); a fresh connection to the same address pays nothing more. */
    if (j->paid_chunk != j->cbeg + 1) {
        eng_conc_paid_clear(&j->paid);
        j->paid_chunk = j->cbeg + 1;
        j->paid_hi = SIZE_MAX; /* no address paid yet */
    }
    if (j->paid_hi != j->hi || j->paid_ai != j->ai) {
        int64_t cost = 0;
        for (size_t i = j->cbeg; i < j->cbeg + need; i++)
            cost += (int64_t)j->txns[i].nrcpt;
        if (!eng_conc_pay(d->conc, &j->vars, cost, &j->paid, &j->cw)) {
            sv_debug("deliver %llu: waiting for rate tokens for %s", (unsigned long long)j->id,
                     j->keybuf);
            wait_push(j);
            j->rate_waiting = true;
            return;
        }
        j->paid_hi = j->hi;
        j->paid_ai = j->ai;
    }
    if (!j->fresh_retry) {
        s = eng_pool_idle(&d->pool, j->keybuf, &j->pol);
        if (s && smtp_session_transactions(s) + need > maxm)
            s = NULL;
        if (!s && eng_pool_count(&d->pool, j->keybuf) >= maxc) {
            s = eng_pool_busy(&d->pool, j->keybuf, &j->pol, maxm, need);
            if (!s)
                eng_pool_evict_idle(&d->pool, j->keybuf); /* QUIT frees its slot now */
            if (!s && eng_pool_count(&d->pool, j->keybuf) >= maxc) {
                /* Every fitting session has its share of transactions, or the open
                 * ones are busy under another TLS policy: wait until one quits (an
                 * idle one does when jobs wait for its destination) rather than
                 * open more than limits.connections. */
                wait_push(j);
                return;
            }
        }
    }
    if (!s && !j->fresh_retry && tls_warming_up(j, h->name)) {
        sv_debug("deliver %llu: waiting for the first TLS session to %s", (unsigned long long)j->id,
                 j->keybuf);
        wait_push(j);
        j->warm_waiting = true;
        return;
    }
    /* A new connection holds a slot of every cluster-wide cap that applies; without
     * one here the job waits (not failed, not deferred) until the queue thread gets
     * it from Redis or a local connection closes. */
    struct eng_slot *slots[ENG_LIMITERS_MAX];
    size_t nslots = 0;
    if (!s && !eng_conc_take(d->conc, &j->vars, &j->cw, slots, &nslots)) {
        sv_debug("deliver %llu: waiting for a cluster-wide connection slot for %s",
                 (unsigned long long)j->id, j->keybuf);
        wait_push(j);
        j->conc_waiting = true;
        /* An idle connection of this worker elsewhere holding a slot it needs:
         * close it (its closed callback brings the slot here) rather than wait for
         * its idle timeout. */
        for (struct eng_pool_entry *e = d->pool.head; e; e = e->next) {
            bool holds = false;
            for (size_t i = 0; i < e->nslots && !holds; i++)
                holds = eng_conc_waits_for(&j->cw, e->slots[i]);
            if (holds && smtp_session_usable(e->s) && !smtp_session_busy(e->s)) {
                smtp_session_close(e->s, true, "slot wanted elsewhere");
                break;
            }
        }
        return;
    }
    j->tried = true;
    if (!s) {
        struct rule_result tr;
        struct smtp_session_opts so = {
            .loop = d->o.loop,
            .id = ++d->next_id,
            .addr = *a,
            .host = h->name,
            .port = (uint16_t)j->port,
            .implicit_tls = j->implicit_tls,
            .policy = j->pol,
            .tls = d->tls,
            .tls_cache = d->tcache,
            .closed = session_closed,
            .idle = session_idle,
            .settled = session_settled,
            .arg = d,
            .idle_ms = (int64_t)d->o.conf->out_idle_timeout_s * 1000,
        };
        /* An idle connection holding cluster-wide slots lets them go soon: other
         * processes may wait for them. */
        if (nslots && (so.idle_ms == 0 || so.idle_ms > CONC_IDLE_MS))
            so.idle_ms = CONC_IDLE_MS;
        so.id |= (uint64_t)d->o.worker_id << 48;
        eval(j, SET_T_CONNECT, &tr);
        so.to.connect = tr.i;
        eval(j, SET_T_GREETING, &tr);
        so.to.greeting = tr.i;
        eval(j, SET_T_TLS, &tr);
        so.to.tls = tr.i;
        eval(j, SET_T_EHLO, &tr);
        so.to.ehlo = tr.i;
        eval(j, SET_T_MAIL, &tr);
        so.to.mail = tr.i;
        eval(j, SET_T_RCPT, &tr);
        so.to.rcpt = tr.i;
        eval(j, SET_T_DATA, &tr);
        so.to.data = tr.i;
        char helo[256];
        eval(j, SET_HOSTNAME, &tr);
        snprintf(helo, sizeof(helo), "%.*s", (int)tr.len, tr.s ? tr.s : "localhost");
        so.helo = helo;
        int rc = smtp_session_open(&so, &s);
        if (rc < 0)
            eng_conc_put(d->conc, slots, nslots);
        if (rc < 0) {
            snprintf(j->last_text, sizeof(j->last_text), "cannot open a socket to %.200s: %s",
                     j->keybuf, strerror(-rc));
            j->last_err = SMTP_ERR_CONNECTION;
            snprintf(j->last_tls, sizeof(j->last_tls), "none");
            memset(&j->last_f, 0, sizeof(j->last_f));
            j->temp_failed = true;
            j->ai++;
            try_next(j);
            return;
        }
        if (eng_pool_add(&d->pool, j->keybuf, s) < 0) {
            eng_conc_put(d->conc, slots, nslots);
            smtp_session_close(s, false, "out of memory");
            finish_all(j, false, "connection", "out of memory", NULL);
            return;
        }
        struct eng_pool_entry *e = eng_pool_entry_of(&d->pool, s);
        for (size_t i = 0; i < nslots; i++)
            e->slots[e->nslots++] = slots[i];
        j->o->connections_opened++;
        d->st.connections_opened++;
    }
    j->fresh_retry = false;
    j->sess = s;
    j->cend = j->cbeg + need;
    j->pending = need;
    /* A transaction may end inside submit (a pooled, ready session refusing a
     * UTF-8 address at once); the last one to end frees j, so the loop reads
     * only locals. */
    struct smtp_txn *txns = j->txns;
    for (size_t i = j->cbeg, end = j->cend; i < end; i++)
        smtp_session_submit(s, &txns[i]);
}

/* --- routing ---------------------------------------------------------------------- */

static void dns_done(void *arg, const struct eng_mx_result *r)
{
    struct djob *j = arg;
    j->in_dns = false;
    if (j->handed_back) {
        djob_free(j); /* the job went back to the queue at shutdown */
        return;
    }
    switch (r->status) {
    case ENG_DNS_OK: break;
    case ENG_DNS_NULL_MX: finish_all(j, true, "dns", r->error ? r->error : "null MX", NULL); return;
    case ENG_DNS_NODOMAIN:
        finish_all(j, true, "dns", r->error ? r->error : "no such domain", NULL);
        return;
    case ENG_DNS_TEMPFAIL:
        finish_all(j, false, "dns", r->error ? r->error : "DNS lookup failed", NULL);
        return;
    default: abort();
    }
    j->hosts = calloc(r->nhosts ? r->nhosts : 1, sizeof(*j->hosts));
    if (!j->hosts) {
        finish_all(j, false, "dns", "out of memory", NULL);
        return;
    }
    for (size_t i = 0; i < r->nhosts; i++) {
        struct dhost *h = &j->hosts[i];
        h->name = strdup(r->hosts[i].name);
        h->addrs = calloc(r->hosts[i].naddrs ? r->hosts[i].naddrs : 1, sizeof(*h->addrs));
        j->nhosts++;
        if (!h->name || !h->addrs) {
            finish_all(j, false, "dns", "out of memory", NULL);
            return;
        }
        memcpy(h->addrs, r->hosts[i].addrs, r->hosts[i].naddrs * sizeof(*h->addrs));
        h->naddrs = r->hosts[i].naddrs;
    }
    try_next(j);
}

static bool ip_literal(const char *s, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    char buf[64];
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = '\0';
        s = buf;
    }
    if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        return true;
    }
    return false;
}

/* Builds the transactions: one for all recipients, or one per recipient with its
 * own rendered body (personalised). */
static int build_txns(struct djob *j)
{
    const struct rq_job *job = j->job;
    size_t blen = 0;
    const char *body = rq_body_data(job->body, &blen);
    const char *from = rq_body_from(job->body);
    bool personal = rq_body_personalised(job->body);
    bool utf8 = false;
    for (const char *p = from; *p; p++)
        utf8 |= (unsigned char)*p >= 0x80;
    for (size_t i = 0; i < job->nrcpt; i++)
        for (const char *p = job->rcpt[i].addr; *p; p++)
            utf8 |= (unsigned char)*p >= 0x80;
    j->ntxn = personal ? job->nrcpt : 1;
    j->txns = calloc(j->ntxn, sizeof(*j->txns));
    if (!j->txns)
        return -ENOMEM;
    if (personal) {
        j->bodies = calloc(job->nrcpt, sizeof(*j->bodies));
        if (!j->bodies)
            return -ENOMEM;
    }
    for (size_t t = 0; t < j->ntxn; t++) {
        struct smtp_txn *x = &j->txns[t];
        size_t first = personal ? t : 0, n = personal ? 1 : job->nrcpt;
        /* rc[0..n): the addresses as enqueued; rc[n..2n): with A-labels (IDN only). */
        bool idn = job->rcpt_domain && strcmp(job->rcpt_domain, job->domain) != 0;
        const char **rc = calloc(idn ? 2 * n : n, sizeof(*rc));
        x->rcpt_code = calloc(n, sizeof(int));
        x->rcpt_reply = calloc(n, sizeof(char *));
        x->rcpt = rc;
        x->nrcpt = n;
        if (!rc || !x->rcpt_code || !x->rcpt_reply)
            return -ENOMEM;
        for (size_t k = 0; k < n; k++) {
            rc[k] = job->rcpt[first + k].addr;
            if (idn)
                rc[n + k] = job->rcpt[first + k].addr_ascii;
        }
        x->rcpt_ascii = idn ? rc + n : NULL;
        x->from = from;
        x->from_ascii = rq_body_from_ascii(job->body);
        if (personal) {
            if (rq_render(job->body, &job->rcpt[t], &j->bodies[t]) < 0)
                return -ENOMEM;
            x->body = j->bodies[t].ptr ? j->bodies[t].ptr : "";
            x->body_len = j->bodies[t].len;
        } else {
            x->body = body;
            x->body_len = blen;
        }
        for (size_t i = 0; i < x->body_len && !x->eightbit; i++)
            x->eightbit = (unsigned char)x->body[i] >= 0x80;
        x->smtputf8 = utf8;
        x->done = txn_done;
        x->arg = j;
    }
    return 0;
}

int eng_deliver(struct eng_deliverer *d, const struct rq_job *job, eng_deliver_cb cb, void *arg)
{
    if (d->shutting)
        return -ESHUTDOWN;
    if (!job || job->nrcpt == 0 || !job->body)
        return -EINVAL;
    struct djob *j = calloc(1, sizeof(*j));
    struct eng_outcome *o = calloc(1, sizeof(*o));
    if (!j || !o) {
        free(j);
        free(o);
        return -ENOMEM;
    }
    o->job = job;
    o->res = calloc(job->nrcpt, sizeof(*o->res));
    j->rvals = calloc(job->nrcpt, sizeof(*j->rvals));
    j->d = d;
    j->job = job;
    j->cb = cb;
    j->cb_arg = arg;
    j->o = o;
    j->id = ((uint64_t)d->o.worker_id << 48) | ++d->next_id;
    snprintf(j->last_tls, sizeof(j->last_tls), "none");
    j->t_start = ev_time();
    if (!o->res || !j->rvals || build_txns(j) < 0) {
        djob_free(j);
        eng_outcome_free(o);
        return -ENOMEM;
    }

    /* Rule variables for this job. */
    struct rule_vars *v = &j->vars;
    rule_vars_init(v);
    const char *from = rq_body_from(job->body);
    const char *at = strrchr(rq_body_from_ascii(job->body), '@'); /* IDN: A-labels */
    rule_vars_set_str(v, RULE_VAR_SENDER, from);
    rule_vars_set_str(v, RULE_VAR_SENDER_DOMAIN, at ? at + 1 : "");
    rule_vars_set_str(v, RULE_VAR_RCPT, job->rcpt[0].addr);
    rule_vars_set_str(v, RULE_VAR_RCPT_DOMAIN, job->domain);
    for (size_t i = 0; i < job->nrcpt; i++) {
        j->rvals[i].type = RULE_STR;
        j->rvals[i].len = (uint32_t)strlen(job->rcpt[i].addr);
        j->rvals[i].u.s = job->rcpt[i].addr;
    }
    v->v[RULE_VAR_RECIPIENTS].type = RULE_ARR;
    v->v[RULE_VAR_RECIPIENTS].len = (uint32_t)job->nrcpt;
    v->v[RULE_VAR_RECIPIENTS].u.a = j->rvals;
    rule_vars_set_int(v, RULE_VAR_RETRY_NUM, job->retry_num);
    rule_vars_set_str(v, RULE_VAR_LAST_ERROR,
                      job->last_error && *job->last_error ? job->last_error : "none");
    rule_vars_set_str(v, RULE_VAR_QUEUE_NAME,
                      d->o.conf->queue_name ? d->o.conf->queue_name : "default");
    int64_t now = now_ms(), created = rq_body_created_ms(job->body);
    rule_vars_set_int(v, RULE_VAR_QUEUE_AGE, (now - created) / 1000);
    size_t blen = 0;
    rq_body_data(job->body, &blen);
    rule_vars_set_int(v, RULE_VAR_SIZE, (int64_t)blen);
    struct rule_result ex;
    eval(j, SET_EXPIRE, &ex);
    rule_vars_set_int(v, RULE_VAR_EXPIRES_IN, (created + ex.i - now) / 1000);

    d->busy++;
    j->nrcpt = job->nrcpt;
    j->next = d->jobs;
    if (d->jobs)
        d->jobs->prev = j;
    d->jobs = j;
    struct rule_result nh, strat, lmx, lmh;
    eval(j, SET_NEXT_HOP, &nh);
    eval(j, SET_IP_STRATEGY, &strat);
    eval(j, SET_LIMIT_MX, &lmx);
    eval(j, SET_LIMIT_MULTIHOMED, &lmh);
    size_t max_mx = lmx.i > 0 ? (size_t)lmx.i : 1, max_addrs = lmh.i > 0 ? (size_t)lmh.i : 1;
    j->port = d->o.conf->out_mx_port > 0 ? d->o.conf->out_mx_port : 25;
    if (nh.s) {
        const struct eng_remote *rem = NULL;
        for (size_t i = 0; i < d->o.conf->n_remotes; i++)
            if (strlen(d->o.conf->remotes[i].name) == nh.len &&
                memcmp(d->o.conf->remotes[i].name, nh.s, nh.len) == 0)
                rem = &d->o.conf->remotes[i];
        if (!rem) {
            char why[200];
            snprintf(why, sizeof(why), "next-hop '%.*s' is not a configured [remote.%.*s]",
                     (int)nh.len, nh.s, (int)nh.len, nh.s);
            finish_all(j, false, "connection", why, NULL);
            return 0;
        }
        j->relay = true;
        j->port = rem->port;
        j->implicit_tls = rem->tls_implicit;
        struct sockaddr_storage sa;
        if (ip_literal(rem->address, &sa)) {
            j->hosts = calloc(1, sizeof(*j->hosts));
            if (j->hosts) {
                j->hosts[0].name = strdup(rem->address);
                j->hosts[0].addrs = malloc(sizeof(sa));
            }
            if (!j->hosts || !j->hosts[0].name || !j->hosts[0].addrs) {
                j->nhosts = j->hosts ? 1 : 0;
                finish_all(j, false, "connection", "out of memory", NULL);
                return 0;
            }
            j->nhosts = 1;
            j->hosts[0].addrs[0] = sa;
            j->hosts[0].naddrs = 1;
            try_next(j);
            return 0;
        }
        j->in_dns = true;
        int rc = eng_dns_resolve_host(d->dns, rem->address, (enum rule_ip_strategy)strat.i,
                                      max_addrs, dns_done, j);
        if (rc < 0)
            j->in_dns = false;
        if (rc < 0)
            finish_all(j, false, "dns", "cannot start the address lookup", NULL);
        return 0;
    }
    j->in_dns = true;
    int rc = eng_dns_resolve_mx(d->dns, job->domain, (enum rule_ip_strategy)strat.i, max_mx,
                                max_addrs, dns_done, j);
    if (rc < 0)
        j->in_dns = false;
    if (rc < 0)
        finish_all(j, false, "dns", "cannot start the MX lookup", NULL);
    return 0;
}

/* --- life cycle --------------------------------------------------------------------- */

int eng_deliverer_new(const struct eng_deliverer_opts *o, struct eng_deliverer **out)
{
    struct eng_deliverer *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->o = *o;
    ev_timer_init(&d->stash_timer, stash_cb, 0.0, 0.0);
    d->stash_timer.data = d;
    ev_timer_init(&d->warm_timer, warm_cb, 0.0, 0.0);
    d->warm_timer.data = d;
    int rc = -ENOMEM;
    for (int i = 0; i < SET_COUNT; i++) {
        d->set[i] = rule_setting_find(set_keys[i]);
        if (!d->set[i]) {
            sv_error("deliver: unknown setting %s", set_keys[i]);
            rc = -EINVAL;
            goto fail;
        }
        for (size_t k = 0; k < o->conf->n_rules; k++)
            if (strcmp(o->conf->rules[k].key, set_keys[i]) == 0) {
                d->prog[i] = rule_program_clone(o->conf->rules[k].program);
                if (!d->prog[i])
                    goto fail;
            }
    }
    if (tls_global_init() < 0) {
        rc = -EIO;
        goto fail;
    }
    char err[256];
    struct tls_client_opts to = {.ca_file = o->conf->out_ca_file};
    rc = tls_client_new(&to, &d->tls, err, sizeof(err));
    if (rc < 0) {
        sv_error("deliver: %s", err);
        goto fail;
    }
    rc = tls_session_cache_new(1024, 3600, &d->tcache);
    if (rc < 0)
        goto fail;
    struct eng_dns_opts dopts = {
        .loop = o->loop,
        .cache = o->dns_cache,
        .nameservers = (const char *const *)o->conf->nameservers,
        .n_nameservers = o->conf->n_nameservers,
    };
    rc = eng_dns_new(&dopts, &d->dns);
    if (rc < 0)
        goto fail;
    if (o->conc && !(d->conc = eng_conc_local_new(o->conc, o->worker_id))) {
        rc = -ENOMEM;
        goto fail;
    }
    *out = d;
    return 0;
fail:
    eng_deliverer_free(d);
    return rc;
}

static void shut_finish(struct eng_deliverer *d)
{
    ev_timer_stop(d->o.loop, &d->shut_timer);
    ev_idle_stop(d->o.loop, &d->shut_check);
    void (*done)(void *) = d->shut_done;
    d->shut_done = NULL;
    if (done)
        done(d->shut_arg);
}

static void check_shutdown(struct eng_deliverer *d)
{
    if (!d->shutting || !d->shut_done)
        return;
    if (d->busy == 0)
        eng_pool_close_all(&d->pool, true, "shutting down");
    if (d->busy == 0 && d->pool.n == 0)
        ev_idle_start(d->o.loop, &d->shut_check); /* call `done` from the loop, not here */
}

static void shut_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    shut_finish(w->data);
}

static void shut_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct eng_deliverer *d = w->data;
    eng_pool_close_all(&d->pool, false, "shutting down");
    if (d->busy == 0 && d->pool.n == 0)
        shut_finish(d);
}

/* A job nothing of which reached a server yet (routing, waiting for a pooled
 * session, queued behind other transactions or on a session still opening) goes
 * back untouched: called back with NULL, it stays pending in the queue without
 * an attempt counted. Returns false for a job in progress. */
static bool hand_back(struct djob *j)
{
    struct eng_deliverer *d = j->d;
    if (j->waiting) {
        struct djob **pp = &d->wait_head, *last = NULL;
        while (*pp && *pp != j) {
            last = *pp;
            pp = &(*pp)->wait_next;
        }
        if (*pp)
            *pp = j->wait_next;
        if (d->wait_tail == j)
            d->wait_tail = last;
        j->wait_next = NULL;
        j->waiting = false;
        j->conc_waiting = false;
        j->rate_waiting = false;
    } else if (j->in_dns) {
        j->handed_back = true; /* the lookup's callback frees it */
    } else if (j->sess && j->cbeg == 0 && j->pending == j->cend &&
               smtp_session_withdraw(j->sess, &j->txns[0])) {
        /* Submitted together and in order: the later ones are not started either. */
        for (size_t i = 1; i < j->cend; i++)
            smtp_session_withdraw(j->sess, &j->txns[i]);
    } else {
        return false;
    }
    sv_debug("deliver %llu: not started; handed back", (unsigned long long)j->id);
    d->busy--;
    unlink_job(j);
    eng_deliver_cb cb = j->cb;
    void *arg = j->cb_arg;
    eng_outcome_free(j->o);
    if (!j->handed_back)
        djob_free(j);
    cb(arg, NULL);
    return true;
}

void eng_deliverer_shutdown(struct eng_deliverer *d, int timeout_ms, void (*done)(void *arg),
                            void *arg)
{
    d->shutting = true;
    for (struct djob *j = d->jobs, *next; j; j = next) {
        next = j->next;
        hand_back(j);
    }
    d->shut_done = done;
    d->shut_arg = arg;
    ev_init(&d->shut_timer, shut_timer_cb);
    d->shut_timer.data = d;
    ev_idle_init(&d->shut_check, shut_idle_cb);
    d->shut_check.data = d;
    ev_timer_set(&d->shut_timer, timeout_ms > 0 ? timeout_ms / 1000.0 : 0., 0.);
    ev_timer_start(d->o.loop, &d->shut_timer);
    check_shutdown(d);
}

size_t eng_deliverer_busy(const struct eng_deliverer *d)
{
    return d->busy;
}

size_t eng_deliverer_sessions(const struct eng_deliverer *d)
{
    return d->pool.n;
}

void eng_deliverer_stats(const struct eng_deliverer *d, struct eng_deliver_stats *st)
{
    *st = d->st;
}

int eng_deliverer_reload(struct eng_deliverer *d, const struct eng_conf *conf, char *err,
                         size_t errlen)
{
    struct retired *old = calloc(1, sizeof(*old));
    struct rule_program *prog[SET_COUNT] = {0};
    struct tls_client *tls = NULL;
    struct tls_session_cache *tcache = NULL;
    int rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
    if (!old)
        goto fail;
    for (int i = 0; i < SET_COUNT; i++)
        for (size_t k = 0; k < conf->n_rules; k++)
            if (strcmp(conf->rules[k].key, set_keys[i]) == 0) {
                rule_program_free(prog[i]);
                prog[i] = rule_program_clone(conf->rules[k].program);
                if (!prog[i])
                    goto fail;
            }
    /* New trust: a new client context, and a new session cache so that no session
     * verified under the old trust is resumed under the new one. */
    struct tls_client_opts to = {.ca_file = conf->out_ca_file};
    rc = tls_client_new(&to, &tls, err, errlen);
    if (rc < 0)
        goto fail;
    rc = tls_session_cache_new(1024, 3600, &tcache);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create the TLS session cache");
        goto fail;
    }
    memcpy(old->prog, d->prog, sizeof(old->prog));
    old->tls = d->tls;
    old->tcache = d->tcache;
    old->next = d->retired;
    d->retired = old;
    memcpy(d->prog, prog, sizeof(d->prog));
    d->tls = tls;
    d->tcache = tcache;
    d->o.conf = conf;
    return 0;
fail:
    for (int i = 0; i < SET_COUNT; i++)
        rule_program_free(prog[i]);
    tls_client_free(tls);
    free(old);
    return rc;
}

void eng_deliverer_free(struct eng_deliverer *d)
{
    if (!d)
        return;
    d->shutting = true;
    d->shut_done = NULL;
    if (d->o.loop) {
        ev_timer_stop(d->o.loop, &d->shut_timer);
        ev_idle_stop(d->o.loop, &d->shut_check);
    }
    /* The waiting jobs first: a session closed below wakes the waiters, which
     * would open new sessions that nothing closes any more. */
    while (d->wait_head) {
        struct djob *w = d->wait_head;
        d->wait_head = w->wait_next;
        finish_all(w, false, "connection", "shutting down", NULL);
    }
    d->wait_tail = NULL;
    eng_pool_close_all(&d->pool, false, "shutting down");
    eng_dns_free(d->dns); /* pending lookups call back with TEMPFAIL */
    if (d->o.loop)
        ev_timer_stop(d->o.loop, &d->stash_timer);
    if (d->o.loop)
        ev_timer_stop(d->o.loop, &d->warm_timer);
    unstash(d);
    free(d->stash);
    eng_conc_local_free(d->conc); /* after the sessions: their slots are spares now */
    d->conc = NULL;
    for (int i = 0; i < SET_COUNT; i++)
        rule_program_free(d->prog[i]);
    tls_session_cache_free(d->tcache);
    tls_client_free(d->tls);
    while (d->retired) {
        struct retired *r = d->retired;
        d->retired = r->next;
        for (int i = 0; i < SET_COUNT; i++)
            rule_program_free(r->prog[i]);
        tls_session_cache_free(r->tcache);
        tls_client_free(r->tls);
        free(r);
    }
    free(d);
}

void eng_outcome_free(struct eng_outcome *o)
{
    if (!o)
        return;
    free(o->res);
    sv_buf_free(&o->arena);
    free(o);
}
