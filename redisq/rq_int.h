/* redisq internals: the handle, the argv builder, the payload codec, the scripts. */
#ifndef SALVO_RQ_INT_H
#define SALVO_RQ_INT_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>

#include "rq.h"

#define RQ_GROUP            "salvo"
#define RQ_DOMAIN_MAX       256 /* a domain and its NUL */
#define RQ_REPORT_AUTOFLUSH 256

/* A growing list of binary-safe arguments for one Redis command. */
struct rq_args {
    struct sv_buf data;
    size_t *off, *len;
    size_t n, cap;
};
int rq_args_add(struct rq_args *a, const void *p, size_t len);
int rq_args_str(struct rq_args *a, const char *s);
int rq_args_i64(struct rq_args *a, int64_t v);
void rq_args_reset(struct rq_args *a);
void rq_args_free(struct rq_args *a);

enum rq_script {
    RQS_ENQ_BEGIN,
    RQS_ENQ_ADD,
    RQS_ENQ_END,
    RQS_CLAIM,
    RQS_RECLAIM,
    RQS_REPORT,
    RQS_PROMOTE,
    RQS_MOVE,
    RQS_CANCEL,
    RQS_REVIVE,
    RQS_LIMIT,
    RQS_CONC,
    RQS__COUNT
};

struct rq_body {
    atomic_int refs;
    uint64_t msg;
    char *from;
    char *from_ascii; /* from with an IDN domain as A-labels; NULL = same as from */
    char *data;
    size_t len;
    bool personalised;
    size_t nfields;
    char **fields;
    int64_t created_ms;
    struct rq_body *next; /* cache chain */
};

struct rq {
    /* configuration */
    char *url, *queue, *consumer;
    char *host, *unix_path, *user, *pass;
    int port, db;
    int connect_timeout_ms, command_timeout_ms;
    long events_max, dead_max;
    int max_deliveries;
    int64_t retention_ms;
    bool read_only;
    size_t body_cache_max;
    char addr[300]; /* the node talked to: redis.url's, or where MOVED sent us */
    char home[300]; /* redis.url's */
    char node[256]; /* host MOVED sent us to; empty = redis.url's */
    char *prefix;   /* "salvo:{queue}:" */
    size_t prefix_len;

    redisContext *c;
    char sha[RQS__COUNT][41];
    uint64_t round_trips;
    char err[768];

    /* buffered reports: one REPORT script call */
    struct rq_args report;
    size_t report_jobs;

    /* body cache: msg id -> body (a short chain per bucket) */
    struct rq_body **cache;
    size_t cache_buckets, cache_bytes;

    char reclaim_cursor[32];
};

/* The two forms of a checked address's domain d (rq_addr.c): `route` (A-labels,
 * lower case: DNS, job grouping, limiters) and `given` (as enqueued, lower-cased:
 * what RCPT TO carries when SMTPUTF8 is offered). Equal unless d is an IDN given
 * in UTF-8. Both buffers RQ_DOMAIN_MAX. Returns 0 or -EINVAL with a reason. */
int rq_addr_domains(const char *d, char *route, char *given, const char **why);

/* Sets the sticky error ("redis ADDR: ...") and returns `code`. */
int rq_fail(struct rq *q, int code, const char *fmt, ...) SV_PRINTF(3, 4);
/* Maps a Redis error reply to a code + message. */
int rq_reply_error(struct rq *q, const redisReply *r, const char *what);
/* Runs one script with KEYS[1] = the prefix and `a` as ARGV: one round trip.
 * Returns 0 with an owned reply in *out, or a negative errno. */
int rq_eval(struct rq *q, enum rq_script s, const struct rq_args *a, redisReply **out);
/* Runs one plain command; same contract. */
int rq_cmd(struct rq *q, redisReply **out, const char *what, int argc, const char **argv,
           const size_t *lens);

/* Payload codec (see README.md: one job = one string).
 *   <msg>\t<domain>\t<retry>\t<nrcpt>\t<last_error>\n
 *   <local>[\t<value>]*\n   (per recipient; \\ \t \n \r escaped) */
int rq_esc_append(struct sv_buf *b, const char *s, size_t len);
/* Unescapes the token at `p` in place and NUL-terminates it; returns the separator
 * that ended it ('\t', '\n' or 0) and where the next token starts in *next. */
char rq_unesc_token(char *p, char **next);

int64_t rq_now_ms(void);

/* Body cache. */
struct rq_body *rq_cache_get(struct rq *q, uint64_t msg);
void rq_cache_put(struct rq *q, struct rq_body *b); /* takes one reference */
void rq_cache_trim(struct rq *q);
void rq_cache_clear(struct rq *q);

extern const char *const rq_script_src[RQS__COUNT];
extern const char rq_limit_lua[]; /* rq_limit.c */
extern const char rq_conc_lua[];  /* rq_limit.c */

#endif
