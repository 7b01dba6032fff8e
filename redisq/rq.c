/* The connection: URL parsing, connect/auth/select, script loading, error mapping,
 * round-trip accounting, and the small codecs the other files share. */
#include "rq_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t rq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- URL ------------------------------------------------------------------ */

struct rq_url {
    char *host, *unix_path, *user, *pass;
    int port, db;
};

static void url_free(struct rq_url *u)
{
    free(u->host);
    free(u->unix_path);
    free(u->user);
    free(u->pass);
    memset(u, 0, sizeof(*u));
}

static char *pct_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = 0;
    return o;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
    if (n == 0 || n > 9)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int url_parse(const char *url, struct rq_url *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(url, "rediss://", 9) == 0) {
        *why = "TLS to Redis is not supported by this hiredis (0.14)";
        return -ENOTSUP;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/') {
            *why = "expected unix:///absolute/path[?db=N]";
            return -EINVAL;
        }
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || parse_int(q + 4, strlen(q + 4), 0, 9999, &u->db)) {
                *why = "expected unix:///absolute/path[?db=N]";
                return -EINVAL;
            }
        }
        u->unix_path = strndup(p, n);
        return u->unix_path ? 0 : -ENOMEM;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        *why = "expected redis://[:password@]host:port/db or unix:///path";
        return -EINVAL;
    }
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *at = NULL;
    for (const char *s = p; s < end; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p)
                u->user = pct_decode(p, (size_t)(colon - p));
            u->pass = pct_decode(colon + 1, (size_t)(at - colon - 1));
        } else {
            u->pass = pct_decode(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb) {
            *why = "unterminated [IPv6] host";
            goto bad;
        }
        u->host = strndup(p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (!hend)
            hend = end;
        u->host = strndup(p, (size_t)(hend - p));
    }
    if (!u->host || !*u->host) {
        *why = "missing host";
        goto bad;
    }
    if (hend < end) {
        if (*hend != ':' || parse_int(hend + 1, (size_t)(end - hend - 1), 1, 65535, &u->port)) {
            *why = "bad port (expected 1..65535)";
            goto bad;
        }
    }
    if (slash && slash[1] && parse_int(slash + 1, strlen(slash + 1), 0, 9999, &u->db)) {
        *why = "bad database number after '/'";
        goto bad;
    }
    return 0;
bad:
    url_free(u);
    return -EINVAL;
}

int rq_url_check(const char *url, const char **why)
{
    struct rq_url u;
    int rc = url_parse(url, &u, why);
    url_free(&u);
    if (rc == -ENOMEM)
        *why = "out of memory";
    return rc ? -1 : 0;
}

/* --- handle ------------------------------------------------------------------ */

int rq_fail(struct rq *q, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(q->err, sizeof(q->err), "redis %s: %s", q->addr, msg);
    return code;
}

static bool queue_name_ok(const char *s)
{
    /* No braces (they would break the hash tag) and nothing unprintable. */
    if (!*s || strlen(s) > 100)
        return false;
    for (; *s; s++)
        if (*s == '{' || *s == '}' || (unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

int rq_new(const struct rq_opts *o, struct rq **out)
{
    *out = NULL;
    struct rq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    *out = q;
    q->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000;
    q->command_timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 10000;
    q->events_max = o->events_max > 0 ? o->events_max : 100000;
    q->dead_max = o->dead_max > 0 ? o->dead_max : 100000;
    q->max_deliveries = o->max_deliveries > 0 ? o->max_deliveries : 5;
    q->retention_ms = o->retention_ms > 0 ? o->retention_ms : 7 * 86400000LL;
    q->read_only = o->read_only;
    q->body_cache_max = o->body_cache_max ? o->body_cache_max : (size_t)64 << 20;
    strcpy(q->reclaim_cursor, "0-0");
    snprintf(q->addr, sizeof(q->addr), "%s", o->url ? o->url : "(no url)");
    memcpy(q->home, q->addr, sizeof(q->home));

    const char *queue = o->queue && *o->queue ? o->queue : "default";
    if (!queue_name_ok(queue))
        return rq_fail(q, -EINVAL, "bad queue name '%s' (no spaces or braces, 1-100 chars)", queue);
    struct rq_url u;
    const char *why = NULL;
    int rc = url_parse(o->url ? o->url : "", &u, &why);
    if (rc == -ENOMEM)
        return -ENOMEM;
    if (rc)
        return rq_fail(q, rc, "bad redis.url: %s", why);
    q->host = u.host;
    q->unix_path = u.unix_path;
    q->user = u.user;
    q->pass = u.pass;
    if (!q->pass && o->password && *o->password && !(q->pass = strdup(o->password)))
        return -ENOMEM;
    q->port = u.port;
    q->db = u.db;
    if (q->unix_path)
        snprintf(q->addr, sizeof(q->addr), "%s", q->unix_path);
    else if (strchr(q->host, ':'))
        snprintf(q->addr, sizeof(q->addr), "[%s]:%d", q->host, q->port);
    else
        snprintf(q->addr, sizeof(q->addr), "%s:%d", q->host, q->port);
    memcpy(q->home, q->addr, sizeof(q->home));

    char cons[300];
    if (o->consumer && *o->consumer) {
        snprintf(cons, sizeof(cons), "%s", o->consumer);
    } else {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(cons, sizeof(cons), "%s:%ld", host, (long)getpid());
    }
    q->url = strdup(o->url);
    q->queue = strdup(queue);
    q->consumer = strdup(cons);
    size_t plen = strlen(queue) + 16;
    q->prefix = malloc(plen);
    if (!q->url || !q->queue || !q->consumer || !q->prefix)
        return -ENOMEM;
    q->prefix_len = (size_t)snprintf(q->prefix, plen, "salvo:{%s}:", queue);
    return 0;
}

static void drop_conn(struct rq *q)
{
    if (q->c)
        redisFree(q->c);
    q->c = NULL;
}

void rq_free(struct rq *q)
{
    if (!q)
        return;
    drop_conn(q);
    rq_cache_clear(q);
    free(q->cache);
    rq_args_free(&q->report);
    free(q->url);
    free(q->queue);
    free(q->consumer);
    free(q->host);
    free(q->unix_path);
    free(q->user);
    free(q->pass);
    free(q->prefix);
    free(q);
}

const char *rq_error(const struct rq *q)
{
    return q ? q->err : "out of memory";
}
const char *rq_address(const struct rq *q)
{
    return q->addr;
}
uint64_t rq_round_trips(const struct rq *q)
{
    return q->round_trips;
}

/* A broken connection: remember why, and forget the context (rq_connect makes a new one). */
static int io_error(struct rq *q, const char *what)
{
    int code = -EIO;
    const char *why = q->c ? q->c->errstr : "not connected";
    if (q->c && q->c->err == REDIS_ERR_IO && errno == ECONNREFUSED)
        code = -ECONNREFUSED;
    if (q->c && q->c->err == REDIS_ERR_EOF)
        why = "connection closed by the server";
    rq_fail(q, code, "%s: %s", what, why && *why ? why : "I/O error");
    drop_conn(q);
    return code;
}

int rq_reply_error(struct rq *q, const redisReply *r, const char *what)
{
    const char *s = r->str ? r->str : "";
    if (strncmp(s, "NOAUTH", 6) == 0)
        return rq_fail(q, -EACCES, "authentication required (put the password in redis.url)");
    if (strncmp(s, "WRONGPASS", 9) == 0 || strstr(s, "invalid password") ||
        strstr(s, "without any password configured") || strstr(s, "invalid username-password"))
        return rq_fail(q, -EACCES, "authentication failed: %s", s);
    if (strncmp(s, "OOM", 3) == 0)
        return rq_fail(q, -ENOMEM, "out of memory (maxmemory reached): %s", s);
    if (strncmp(s, "READONLY", 8) == 0)
        return rq_fail(q, -EROFS, "read-only replica: writes must go to the master");
    if (strncmp(s, "LOADING", 7) == 0)
        return rq_fail(q, -EAGAIN, "still loading its dataset");
    if (strncmp(s, "BUSY ", 5) == 0)
        return rq_fail(q, -EBUSY, "busy running a script");
    if (strncmp(s, "MOVED ", 6) == 0 || strncmp(s, "ASK ", 4) == 0 ||
        strncmp(s, "TRYAGAIN", 8) == 0)
        return rq_fail(q, -EAGAIN, "%s: Redis Cluster is moving the queue's slot (%s)", what, s);
    if (strncmp(s, "CLUSTERDOWN", 11) == 0)
        return rq_fail(q, -EAGAIN, "%s: Redis Cluster is down: %s", what, s);
    if (strncmp(s, "MISCONF", 7) == 0)
        return rq_fail(q, -EIO, "cannot persist (MISCONF): %s", s);
    return rq_fail(q, -EPROTO, "%s: %s", what, s);
}

/* One write-then-wait cycle for `n` commands already appended; replies in r[]. */
static int roundtrip(struct rq *q, size_t n, redisReply **r, const char *what)
{
    q->round_trips++;
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (redisGetReply(q->c, &rep) != REDIS_OK) {
            for (size_t j = 0; j < i; j++)
                freeReplyObject(r[j]);
            return io_error(q, what);
        }
        r[i] = rep;
    }
    return 0;
}

/* --- Redis Cluster redirects ---------------------------------------------------- */

/* All keys of a queue share one hash slot, so one connection to the slot's owner
 * serves everything; a node that does not own it answers MOVED or ASK. */
#define RQ_REDIRECTS_MAX 5

struct redirect {
    bool ask;
    long slot;
    char host[256];
    int port;
};

static int open_conn(struct rq *q, const char *host, int port);
static int load_scripts(struct rq *q);

/* Parses "MOVED <slot> <host>:<port>" / "ASK ...". An empty host (Redis 7's
 * unknown endpoint) means the host we are talking to. */
static bool parse_redirect(const struct rq *q, const redisReply *r, struct redirect *rd)
{
    if (r->type != REDIS_REPLY_ERROR || !r->str)
        return false;
    const char *s = r->str;
    if (strncmp(s, "MOVED ", 6) == 0)
        rd->ask = false, s += 6;
    else if (strncmp(s, "ASK ", 4) == 0)
        rd->ask = true, s += 4;
    else
        return false;
    char *end;
    rd->slot = strtol(s, &end, 10);
    if (end == s || *end != ' ' || rd->slot < 0 || rd->slot > 16383)
        return false;
    s = end + 1;
    const char *colon = strrchr(s, ':');
    if (!colon || parse_int(colon + 1, strlen(colon + 1), 1, 65535, &rd->port))
        return false;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']')
        s++, hl -= 2;
    if (hl == 0) {
        const char *cur = q->node[0] ? q->node : q->host;
        if (!cur)
            return false; /* a unix socket has no host to reuse */
        snprintf(rd->host, sizeof(rd->host), "%s", cur);
        return true;
    }
    if (hl >= sizeof(rd->host))
        return false;
    memcpy(rd->host, s, hl);
    rd->host[hl] = 0;
    return true;
}

static void set_node(struct rq *q, const char *host, int port)
{
    snprintf(q->node, sizeof(q->node), "%s", host);
    if (strchr(host, ':'))
        snprintf(q->addr, sizeof(q->addr), "[%s]:%d", host, port);
    else
        snprintf(q->addr, sizeof(q->addr), "%s:%d", host, port);
}

/* MOVED: the slot's owner is elsewhere; connect there and stay. */
static int move_to(struct rq *q, const struct redirect *rd)
{
    set_node(q, rd->host, rd->port);
    int rc = open_conn(q, rd->host, rd->port);
    if (rc == 0 && !q->read_only)
        rc = load_scripts(q);
    if (rc)
        drop_conn(q);
    return rc;
}

/* ASK: the slot is migrating; this one command goes to the importing node after
 * ASKING, on a connection of its own; q->c stays with the owner. */
static int ask_once(struct rq *q, const struct redirect *rd, int argc, const char **argv,
                    const size_t *lens, const char *what, redisReply **out)
{
    redisContext *owner = q->c;
    char addr[sizeof(q->addr)], node[sizeof(q->node)];
    memcpy(addr, q->addr, sizeof(addr));
    memcpy(node, q->node, sizeof(node));
    q->c = NULL;
    set_node(q, rd->host, rd->port);
    int rc = open_conn(q, rd->host, rd->port);
    if (rc == 0 && (redisAppendCommand(q->c, "ASKING") != REDIS_OK ||
                    redisAppendCommandArgv(q->c, argc, argv, lens) != REDIS_OK))
        rc = io_error(q, what);
    redisReply *r[2];
    if (rc == 0 && (rc = roundtrip(q, 2, r, what)) == 0) {
        freeReplyObject(r[0]);
        *out = r[1];
    }
    drop_conn(q);
    q->c = owner;
    memcpy(q->node, node, sizeof(node));
    memcpy(q->addr, addr, sizeof(addr)); /* an error already named the node that failed */
    return rc;
}

/* Sends one command and returns its reply (maybe an error reply) in *out,
 * following cluster redirects a few times. */
static int send_cmd(struct rq *q, int argc, const char **argv, const size_t *lens, const char *what,
                    bool script, redisReply **out)
{
    *out = NULL;
    for (int hop = 0;; hop++) {
        if (!q->c)
            return rq_fail(q, -EIO, "%s: not connected", what);
        if (redisAppendCommandArgv(q->c, argc, argv, lens) != REDIS_OK)
            return io_error(q, what);
        redisReply *r = NULL;
        int rc = roundtrip(q, 1, &r, what);
        if (rc)
            return rc;
        struct redirect rd;
        if (!parse_redirect(q, r, &rd)) {
            *out = r;
            return 0;
        }
        freeReplyObject(r);
        if (hop == RQ_REDIRECTS_MAX)
            return rq_fail(q, -EAGAIN,
                           "%s: redirected more than %d times for cluster slot %ld (last to "
                           "%s:%d); is the cluster being resharded?",
                           what, RQ_REDIRECTS_MAX, rd.slot, rd.host, rd.port);
        if (rd.ask && script)
            /* A script reads keys it does not declare: half of them may already be on
             * the other node. Wait until the slot has moved (then MOVED). */
            return rq_fail(q, -EAGAIN,
                           "%s: cluster slot %ld is migrating to %s:%d; the queue waits until the "
                           "move is done",
                           what, rd.slot, rd.host, rd.port);
        if (rd.ask)
            return ask_once(q, &rd, argc, argv, lens, what, out);
        if ((rc = move_to(q, &rd)))
            return rc;
    }
}

int rq_cmd(struct rq *q, redisReply **out, const char *what, int argc, const char **argv,
           const size_t *lens)
{
    *out = NULL;
    redisReply *r = NULL;
    int rc = send_cmd(q, argc, argv, lens, what, false, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        rc = rq_reply_error(q, r, what);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return 0;
}

static const char *script_name(enum rq_script s)
{
    static const char *const names[RQS__COUNT] = {"enqueue", "enqueue", "enqueue", "claim",
                                                  "reclaim", "report",  "promote", "retry",
                                                  "cancel",  "limit"};
    return names[s];
}

static int load_scripts(struct rq *q)
{
    for (int s = 0; s < RQS__COUNT; s++)
        if (redisAppendCommand(q->c, "SCRIPT LOAD %s", rq_script_src[s]) != REDIS_OK)
            return io_error(q, "SCRIPT LOAD");
    redisReply *r[RQS__COUNT];
    int rc = roundtrip(q, RQS__COUNT, r, "SCRIPT LOAD");
    if (rc)
        return rc;
    for (int s = 0; s < RQS__COUNT; s++) {
        if (rc == 0 && r[s]->type == REDIS_REPLY_ERROR)
            rc = rq_reply_error(q, r[s], "SCRIPT LOAD");
        else if (rc == 0 && (r[s]->type != REDIS_REPLY_STRING || r[s]->len != 40))
            rc = rq_fail(q, -EPROTO, "SCRIPT LOAD: unexpected reply");
        else if (rc == 0)
            memcpy(q->sha[s], r[s]->str, 41);
        freeReplyObject(r[s]);
    }
    return rc;
}

/* Creates the consumer group (and the stream) unless it exists. Start at 0, not $:
 * entries written before the group existed must be delivered. */
static int ensure_group(struct rq *q)
{
    char stream[160];
    snprintf(stream, sizeof(stream), "%sready", q->prefix);
    const char *av[6] = {"XGROUP", "CREATE", stream, RQ_GROUP, "0", "MKSTREAM"};
    size_t lv[6] = {6, 6, strlen(stream), strlen(RQ_GROUP), 1, 8};
    redisReply *r;
    int rc = rq_cmd(q, &r, "XGROUP CREATE", 6, av, lv);
    if (rc == -EPROTO && strstr(q->err, "BUSYGROUP")) {
        q->err[0] = 0;
        return 0;
    }
    if (rc == 0)
        freeReplyObject(r);
    return rc;
}

int rq_eval(struct rq *q, enum rq_script s, const struct rq_args *a, redisReply **out)
{
    *out = NULL;
    const char *what = script_name(s);
    if (q->read_only)
        return rq_fail(q, -EROFS, "%s: this handle was opened read-only", what);
    size_t argc = 4 + a->n;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return rq_fail(q, -ENOMEM, "%s: out of memory", what);
    }
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[2] = "1";
    lens[2] = 1;
    argv[3] = q->prefix;
    lens[3] = q->prefix_len;
    for (size_t i = 0; i < a->n; i++) {
        argv[4 + i] = a->data.ptr + a->off[i];
        lens[4 + i] = a->len[i];
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        argv[1] = q->sha[s];
        lens[1] = 40;
        redisReply *r = NULL;
        rc = send_cmd(q, (int)argc, argv, lens, what, true, &r);
        if (rc)
            break;
        /* A restarted server forgot its script cache: load again, once. */
        if (attempt == 0 && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            rc = load_scripts(q);
            if (rc)
                break;
            continue;
        }
        /* The stream was deleted under us (FLUSHDB, DEL): recreate it, once. */
        if (attempt == 0 && r->type == REDIS_REPLY_ERROR && strstr(r->str, "NOGROUP")) {
            freeReplyObject(r);
            rc = ensure_group(q);
            if (rc)
                break;
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            rc = rq_reply_error(q, r, what);
            freeReplyObject(r);
            break;
        }
        *out = r;
        break;
    }
    free(argv);
    free(lens);
    return rc;
}

/* Connects to host:port (host NULL: redis.url's address), sets the timeout, authenticates
 * and selects the database (a cluster node has only db 0, so only at home). */
static int open_conn(struct rq *q, const char *host, int port)
{
    drop_conn(q);
    struct timeval ct = {q->connect_timeout_ms / 1000, (q->connect_timeout_ms % 1000) * 1000};
    if (!host && q->unix_path)
        q->c = redisConnectUnixWithTimeout(q->unix_path, ct);
    else
        q->c = redisConnectWithTimeout(host ? host : q->host, host ? port : q->port, ct);
    if (!q->c)
        return rq_fail(q, -ENOMEM, "out of memory");
    if (q->c->err) {
        int code = -ECONNREFUSED;
        char why[200];
        snprintf(why, sizeof(why), "%s", q->c->errstr);
        /* hiredis says "Connection refused" / "Connection timed out" / resolver text. */
        for (char *p = why; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        drop_conn(q);
        return rq_fail(q, code, "cannot connect: %s", why);
    }
    struct timeval tv = {q->command_timeout_ms / 1000, (q->command_timeout_ms % 1000) * 1000};
    redisSetTimeout(q->c, tv);

    redisReply *r;
    int rc;
    if (q->pass) {
        const char *av[3] = {"AUTH", q->user ? q->user : q->pass, q->pass};
        size_t lv[3] = {4, strlen(av[1]), strlen(q->pass)};
        rc = rq_cmd(q, &r, "AUTH", q->user ? 3 : 2, av, lv);
        if (rc)
            goto fail;
        freeReplyObject(r);
    }
    if (q->db && !host) {
        char db[16];
        snprintf(db, sizeof(db), "%d", q->db);
        const char *av[2] = {"SELECT", db};
        size_t lv[2] = {6, strlen(db)};
        rc = rq_cmd(q, &r, "SELECT", 2, av, lv);
        if (rc)
            goto fail;
        freeReplyObject(r);
    }
    return 0;
fail:
    drop_conn(q);
    return rc;
}

int rq_connect(struct rq *q)
{
    q->err[0] = 0;
    /* Always start from redis.url: after a failover the old slot owner may be gone. */
    memcpy(q->addr, q->home, sizeof(q->addr));
    q->node[0] = 0;
    int rc = open_conn(q, NULL, 0);
    if (rc)
        return rc;
    /* Both write (SCRIPT LOAD is refused at maxmemory, XGROUP CREATE MKSTREAM on a
     * replica and creates a key): a reader does neither. */
    if (q->read_only)
        return 0;
    rc = load_scripts(q);
    if (rc)
        goto fail;
    rc = ensure_group(q);
    if (rc)
        goto fail;
    return 0;
fail:
    drop_conn(q);
    return rc;
}

/* --- argv builder ------------------------------------------------------------- */

int rq_args_add(struct rq_args *a, const void *p, size_t len)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        size_t *off = realloc(a->off, cap * sizeof(*off));
        if (!off)
            return -ENOMEM;
        a->off = off;
        size_t *ln = realloc(a->len, cap * sizeof(*ln));
        if (!ln)
            return -ENOMEM;
        a->len = ln;
        a->cap = cap;
    }
    size_t at = a->data.len;
    if (sv_buf_append(&a->data, p, len))
        return -ENOMEM;
    a->off[a->n] = at;
    a->len[a->n] = len;
    a->n++;
    return 0;
}

int rq_args_str(struct rq_args *a, const char *s)
{
    return rq_args_add(a, s ? s : "", s ? strlen(s) : 0);
}

int rq_args_i64(struct rq_args *a, int64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%lld", (long long)v);
    return rq_args_add(a, b, (size_t)n);
}

void rq_args_reset(struct rq_args *a)
{
    sv_buf_reset(&a->data);
    a->n = 0;
}

void rq_args_free(struct rq_args *a)
{
    sv_buf_free(&a->data);
    free(a->off);
    free(a->len);
    memset(a, 0, sizeof(*a));
}

/* --- payload escaping ---------------------------------------------------------- */

int rq_esc_append(struct sv_buf *b, const char *s, size_t len)
{
    if (sv_buf_reserve(b, len))
        return -ENOMEM;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        char e = 0;
        switch (s[i]) {
        case '\\': e = '\\'; break;
        case '\t': e = 't'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        default: continue;
        }
        char esc[2] = {'\\', e};
        if (sv_buf_append(b, s + start, i - start) || sv_buf_append(b, esc, 2))
            return -ENOMEM;
        start = i + 1;
    }
    return sv_buf_append(b, s + start, len - start) ? -ENOMEM : 0;
}

char rq_unesc_token(char *p, char **next)
{
    char *w = p, *r = p;
    while (*r && *r != '\t' && *r != '\n') {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
            r++;
        } else {
            *w++ = *r++;
        }
    }
    char sep = *r;
    *w = 0;
    *next = sep ? r + 1 : r;
    return sep;
}
