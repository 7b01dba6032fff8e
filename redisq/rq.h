/* redisq: everything about Redis (keys, Lua scripts, claim/ack/retry, enqueue,
 * statistics). Nothing else includes hiredis. The data model is in README.md.
 *
 * A `struct rq` is one synchronous connection to one queue, used by one thread at
 * a time. Functions return 0 (or a count) on success and a negative errno on
 * failure, with a one-line message naming the address in rq_error():
 *   -ECONNREFUSED / -EIO  Redis unreachable or the connection broke: reconnect
 *   -EACCES               wrong or missing password
 *   -ENOMEM               Redis is out of memory (OOM), or malloc failed
 *   -EROFS                the server is a read-only replica
 *   -ENOTSUP              the URL asks for something this build cannot do (TLS)
 *   -EINVAL               bad argument (bad URL, malformed address, ...)
 *   -ENOENT               unknown message id / name
 *   -EPROTO               unexpected reply
 * After -ECONNREFUSED, -EIO, -EROFS the engine may call rq_connect() again (with
 * backoff); buffered reports are kept and resent by the next rq_flush(). */
#ifndef SALVO_RQ_H
#define SALVO_RQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"

/* Validates a redis.url value; returns 0, or -1 with a static reason in `why`. */
int rq_url_check(const char *url, const char **why);

/* Checks an envelope address (RFC 5321 Mailbox: dot-atom or quoted local part,
 * LDH domain with at least one dot, or an address literal; length limits).
 * A domain whose last label is all digits ("1.2.3.4") is refused: an IP address must
 * be a bracketed literal (RFC 5321 4.1.3). A domain in UTF-8 (IDN U-labels) is checked
 * in its A-label form (common/idna.h), which jobs route by. Returns 0, or -EINVAL with
 * a static reason in `why`. */
int rq_addr_check(const char *addr, const char **why);

struct rq;

struct rq_opts {
    const char *url;   /* borrowed: redis://[[user]:pass@]host[:port][/db], unix:///path[?db=N] */
    const char *queue; /* borrowed: queue name; keys are salvo:{queue}:... */
    const char *password;   /* borrowed: used when the URL carries none (redis.password) */
    const char *consumer;   /* borrowed: consumer name in the group; NULL = "host:pid" */
    int connect_timeout_ms; /* 0 = 2000 */
    int command_timeout_ms; /* 0 = 10000 */
    long events_max;        /* approximate cap of the events stream; 0 = 100000 */
    long dead_max;          /* approximate cap of the dead-letter stream; 0 = 100000 */
    size_t body_cache_max;  /* bytes of bodies kept cached when unused; 0 = 64 MiB */
    int max_deliveries;     /* a job claimed more often without an outcome is dead; 0 = 5 */
    int64_t retention_ms;   /* a finished message's metadata is dropped after this; 0 = 7 days */
    bool read_only;         /* only read (stats, list, show, lookup): rq_connect() writes nothing,
                               so it works on a read-only replica, on a Redis at maxmemory, and
                               leaves a Redis without a queue untouched; scripts fail -EROFS */
};

/* Creates a handle (not yet connected); copies everything from `o`. Returns 0 and an
 * owned handle in *out, -EINVAL for a bad URL or queue name (message in *out's
 * rq_error() if *out is set), -ENOMEM. */
int rq_new(const struct rq_opts *o, struct rq **out);
/* (Re)connects: TCP/unix connect, AUTH, SELECT, then (unless read_only) loads the
 * Lua scripts and creates the consumer group. Returns 0 or a negative errno (see above). */
int rq_connect(struct rq *q);
void rq_free(struct rq *q); /* NULL-safe; drops the cached bodies it still holds */

/* The last error message ("redis 127.0.0.1:6379: connection refused"); borrowed. */
const char *rq_error(const struct rq *q);
/* The address as shown in messages ("127.0.0.1:6379", "/run/redis.sock"); borrowed. */
const char *rq_address(const struct rq *q);
/* Redis round trips made so far (one per write-then-wait cycle, however many
 * commands it pipelined). */
uint64_t rq_round_trips(const struct rq *q);

/* --- enqueue -------------------------------------------------------------- */

struct rq_msg_spec {
    const char *from; /* borrowed: envelope sender */
    const char *body; /* borrowed: RFC 5322 text, or the template */
    size_t body_len;
    bool personalised;         /* the body has {{placeholders}}: render per recipient */
    const char *const *fields; /* borrowed: names of the per-recipient values stored */
    size_t nfields;
    const char *campaign; /* borrowed: optional name (NULL or "") */
    size_t job_rcpts;     /* recipients per job (one SMTP transaction); 0 = 50 */
};

struct rq_enq;

/* Stores the message (body once) and opens it for recipients; returns 0 with an
 * owned session in *out and the message id in *id. A campaign name already in use:
 * -EEXIST with that message's id in *id, nothing written. */
int rq_enq_begin(struct rq *q, const struct rq_msg_spec *spec, struct rq_enq **out, uint64_t *id);
/* Adds one recipient; `values` (borrowed, nfields strings) are its stored fields.
 * Recipients are grouped into jobs by domain and written in pipelined batches, so
 * memory stays bounded. Returns 0, -EINVAL for a bad address, or a Redis error. */
int rq_enq_add(struct rq_enq *e, const char *addr, const char *const *values);
/* Writes what is buffered and closes the message (it can now be finalised). */
int rq_enq_end(struct rq_enq *e);
/* Frees the session (NULL-safe); unflushed recipients are discarded. */
void rq_enq_free(struct rq_enq *e);

/* --- bodies ------------------------------------------------------------------
 * A message body shared by all jobs of the message in this process, fetched once
 * and refcounted (thread-safe counts: workers may drop references). */
struct rq_body;

struct rq_body *rq_body_ref(struct rq_body *b); /* returns b with one more reference */
void rq_body_unref(struct rq_body *b);          /* NULL-safe; any thread */
const char *rq_body_data(const struct rq_body *b, size_t *len);
const char *rq_body_from(const struct rq_body *b);
/* The sender with its domain in A-labels: rq_body_from() unless that domain is an
 * IDN given in UTF-8 (the local part stays as it is, maybe UTF-8). */
const char *rq_body_from_ascii(const struct rq_body *b);
bool rq_body_personalised(const struct rq_body *b);
int64_t rq_body_created_ms(const struct rq_body *b); /* enqueue time, for expiry */

/* --- claim and report ------------------------------------------------------ */

struct rq_rcpt {
    const char *addr;          /* "local@domain" as enqueued (domain lower case, maybe UTF-8) */
    const char *addr_ascii;    /* "local@A-labels": == addr unless the domain is UTF-8 */
    const char *const *values; /* the message's fields, in rq_msg_spec order */
};

struct rq_job {
    char sid[32];            /* stream entry id: what is acknowledged */
    uint64_t msg;            /* message id */
    const char *domain;      /* recipient domain as A-labels, lower case: for routing */
    const char *rcpt_domain; /* the domain in rcpt[].addr: == domain unless given in UTF-8 */
    unsigned retry_num;      /* 0 on the first attempt */
    const char *last_error;  /* "" on the first attempt */
    size_t nrcpt;
    const struct rq_rcpt *rcpt;
    struct rq_body *body; /* borrowed from the batch; rq_body_ref() to keep it */
};

struct rq_batch {
    size_t njobs;
    struct rq_job *jobs;
    void *priv; /* owned memory */
};

/* Claims up to `max_jobs` ready jobs for this consumer (XREADGROUP); bodies not yet
 * cached are fetched in one more round trip. Returns the number of jobs (>= 0) and an
 * owned batch in *out (NULL when 0), or a negative errno. */
int rq_claim(struct rq *q, size_t max_jobs, struct rq_batch **out);
/* Takes over jobs claimed by any consumer that has not reported for `min_idle_ms`
 * (XAUTOCLAIM, a dead process's lease), up to `max_jobs`. A job claimed more than
 * max_deliveries times becomes a dead letter instead. Same returns as rq_claim. */
int rq_reclaim(struct rq *q, int64_t min_idle_ms, size_t max_jobs, struct rq_batch **out);
/* Renews the lease of jobs still being worked on (XCLAIM ... JUSTID resets their
 * idle time; they become this consumer's), so rq_reclaim() elsewhere leaves them.
 * `sids` borrowed. One round trip; returns the number of jobs still pending. */
int rq_touch(struct rq *q, const char *const *sids, size_t n);
void rq_batch_free(struct rq_batch *b); /* NULL-safe */

enum rq_outcome { RQ_DELIVERED, RQ_DEFERRED, RQ_BOUNCED, RQ_DEAD };

struct rq_result {
    enum rq_outcome outcome;
    int64_t retry_at_ms; /* RQ_DEFERRED: unix time (ms) of the next attempt */
    const char *error;   /* DEFERRED: last_error for the rules ("tls", "dns", ...);
                            BOUNCED/DEAD: the reason kept in the dead letter */
    const char *reply;   /* SMTP reply text for the event (opaque, may be NULL) */
    const char *tls;     /* TLS facts for people and logs (not in the event) */
    /* TLS facts for the event: tls_version NULL or "" = plaintext (event: tls=none). */
    const char *tls_version, *tls_cipher;
    bool tls_verified, tls_resumed;
    int64_t us; /* attempt duration in µs: MAIL FROM (or connect, new connection) to the
                   reply; the event shows it as `ms` with three decimals */
};

/* Records the outcome of every recipient of `job` (res[job->nrcpt], borrowed;
 * copied). Buffered: nothing is sent until rq_flush() (or 256 buffered jobs). A job
 * is acknowledged and deleted; deferred recipients become retry jobs (grouped by
 * retry time and error), bounced/dead ones dead letters; every recipient an event. */
int rq_report(struct rq *q, const struct rq_job *job, const struct rq_result *res);
/* Sends the buffered reports in one round trip. On a connection error they stay
 * buffered and are resent (idempotently: a job already acknowledged is counted as
 * a duplicate, not twice) by the next rq_flush(). */
int rq_flush(struct rq *q);
size_t rq_buffered_reports(const struct rq *q);

/* Moves retry jobs due at `now_ms` to the ready stream (atomic Lua: any number of
 * processes may call it at once without duplicating). Returns the number of jobs
 * moved; *next_due_ms gets the next due time, or -1 when nothing is scheduled. */
int rq_promote(struct rq *q, int64_t now_ms, size_t max_jobs, int64_t *next_due_ms);

/* --- cluster-wide rate limits (rq_limit.c) ------------------------------------ */

/* One bucket's request for tokens; the bucket is salvo:{queue}:limit:<key>. */
struct rq_limit_req {
    const char *key; /* borrowed: "<limiter id>:<key value>" */
    size_t key_len;
    int64_t interval_us;  /* one token per interval: period / rate */
    int64_t tolerance_us; /* how far ahead of now the bucket may be and still grant */
    int64_t want;         /* tokens wanted, granted all or nothing */
    int64_t granted;      /* out: want or 0 */
    int64_t valid_ms;     /* out: spend the grant within this, or drop it */
    int64_t retry_ms;     /* out: the bucket grants again this much later */
};

/* Takes tokens from n buckets in one round trip (one atomic script on the Redis
 * clock), shared by every process of the queue; see README.md. `reqs` borrowed.
 * Returns 0 or a negative errno. */
int rq_limit_take(struct rq *q, struct rq_limit_req *reqs, size_t n);

/* One slot operation of a cluster-wide concurrency cap; the bucket is the sorted
 * set salvo:{queue}:conc:<key>. */
struct rq_conc_op {
    bool release;    /* false: take (or renew) the slot; true: give it back */
    const char *key; /* borrowed: "<limiter id>:<key value>" */
    size_t key_len;
    const char *member; /* borrowed: the holder, unique in the cluster */
    int64_t cap;        /* take: slots the bucket has */
    int64_t lease_ms;   /* take: the slot frees itself this long after the last renewal */
    int result;         /* out: take: 1 held, 0 the bucket is full; release: 1 was held */
};

/* Runs n slot operations in one round trip (one atomic script on the Redis clock);
 * a take drops the bucket's expired holders first. `ops` borrowed. Returns 0 or a
 * negative errno. */
int rq_conc_run(struct rq *q, struct rq_conc_op *ops, size_t n);

/* --- statistics and administration ---------------------------------------- */

struct rq_stats {
    int64_t ready, scheduled, inflight; /* recipients not yet final */
    int64_t delivered, bounced, dead;   /* final recipients */
    int64_t duplicates;                 /* reports for jobs already acknowledged */
    int64_t reclaimed;                  /* jobs taken over from idle consumers */
};

/* Queue-wide counts (msg == 0) or one message's/campaign's. -ENOENT if unknown. */
int rq_stats_get(struct rq *q, uint64_t msg, struct rq_stats *st);

struct rq_msg_info {
    uint64_t id;
    char *from;     /* owned */
    char *campaign; /* owned, "" when none */
    int64_t created_ms;
    int64_t total;   /* recipients enqueued */
    size_t body_len; /* 0 once the body was dropped (all recipients final) */
    bool personalised, open, cancelled, done;
    struct rq_stats st;
};

/* Reads one message's metadata and counts; -ENOENT if unknown. */
int rq_msg_info_get(struct rq *q, uint64_t id, struct rq_msg_info *info);
void rq_msg_info_free(struct rq_msg_info *info); /* NULL-safe; frees the strings */
/* Ids of the newest `max` messages, newest first; *ids owned (free()). */
int rq_msg_list(struct rq *q, size_t max, uint64_t **ids, size_t *n);
/* Resolves a message id ("42") or a campaign name to an id; -ENOENT if unknown. */
int rq_msg_lookup(struct rq *q, const char *id_or_name, uint64_t *id);
/* Makes every pending recipient of the message dead with reason "cancelled";
 * returns the count in *n. Jobs already claimed may still be delivered (their
 * events tell); they are not counted twice. */
int rq_msg_cancel(struct rq *q, uint64_t id, int64_t *n);
/* Makes the message's scheduled retries ready now; returns recipients moved in *n. */
int rq_msg_retry_now(struct rq *q, uint64_t id, int64_t *n);
/* Moves the message's dead letters (bounced or dead recipients) back to the ready
 * stream with retry_num 0; returns recipients moved in *n. -ECANCELED for a
 * cancelled message, -ENODATA once its body was dropped (all recipients were
 * final: enqueue it again), -ENOENT if unknown. Scans the dead-letter stream. */
int rq_msg_revive_dead(struct rq *q, uint64_t id, int64_t *n);

/* --- templates -------------------------------------------------------------- */

/* Renders a personalised body for one recipient: {{name}} is replaced by the field
 * `name` ({{email}} by the address); appends to `out`. Returns 0 or -ENOMEM. */
int rq_render(const struct rq_body *b, const struct rq_rcpt *r, struct sv_buf *out);
/* The same for any template text with `fields` (borrowed) naming r->values. */
int rq_render_text(const char *text, size_t len, const char *const *fields, size_t nfields,
                   const struct rq_rcpt *r, struct sv_buf *out);

/* Calls `fn` for every {{placeholder}} in `text` (name without spaces, its line).
 * Stops and returns fn's value when non-zero. */
int rq_placeholders(const char *text, size_t len,
                    int (*fn)(void *arg, const char *name, size_t name_len, size_t line),
                    void *arg);

/* --- CSV (RFC 4180) for campaign recipient lists --------------------------- */

struct rq_csv;

/* A streaming reader of `f` (borrowed; not closed). Returns 0 or -ENOMEM. */
int rq_csv_new(FILE *f, struct rq_csv **out);
void rq_csv_free(struct rq_csv *c); /* NULL-safe */
/* Reads the next record, skipping blank lines (and a UTF-8 BOM at the start of the
 * file): 1, 0 at end of file, -ENOMEM (-EIO: a first byte 0xEF not starting a BOM on
 * a stream that cannot seek back). A record with a syntax error still returns 1, with
 * rq_csv_error() set. */
int rq_csv_next(struct rq_csv *c);
/* Back to the first line (for a second pass); 0 or negative errno. */
int rq_csv_rewind(struct rq_csv *c);
size_t rq_csv_nfields(const struct rq_csv *c);
/* Field i of the record; borrowed until the next record (may be edited in place). */
char *rq_csv_field(struct rq_csv *c, size_t i);
size_t rq_csv_line(const struct rq_csv *c);       /* line where the record starts */
const char *rq_csv_error(const struct rq_csv *c); /* this record's syntax error, or NULL */
/* The record's first byte that is not valid UTF-8 (strict: no overlong forms,
 * surrogates or values above U+10FFFF): true with its line, column and value. */
bool rq_csv_utf8_error(const struct rq_csv *c, size_t *line, size_t *col, unsigned char *byte);

#endif
