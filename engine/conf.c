/* The engine's typed configuration: schema, defaults and validation.
 *
 * Loading never stops at the first problem: every wrong type, bad value and
 * unknown key is reported (file:line:col), so one `salvo config check` shows an
 * operator everything to fix. Keys whose dotted path sched knows as an
 * expression setting are compiled to bytecode here, once.
 */
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "salvo_sched.h"

/* Used when there is no -c, no $SALVO_CONFIG and no ./salvo.toml. It goes through
 * the same parser and schema as a file, so it can never drift from them. */
static const char embedded_default[] = "# salvo's embedded default configuration\n"
                                       "[redis]\n"
                                       "url = \"redis://127.0.0.1:6379/0\"\n"
                                       "queue = \"default\"\n"
                                       "\n"
                                       "[server.workers]\n"
                                       "threads = 0   # one worker per online core\n"
                                       "pin = true\n"
                                       "\n"
                                       "[log]\n"
                                       "level = \"info\"\n";

static const char embedded_name[] = "(embedded default)";

struct loader;
typedef void (*store_fn)(struct loader *L, const char *path, const struct cfg_value *v);

/* One plain (non-expression) key. '*' matches any one key segment. */
struct schema_key {
    const char *path;
    enum cfg_type type;
    store_fn store; /* validates beyond the type and stores into the conf */
};

/* Paths come in two spellings: for people ("remote.\"mx.example\".port", segments
 * quoted when they are not bare keys) and for matching (segments joined by SEP, so
 * a quoted key holding a dot can never pass for two segments). */
#define SEP "\x1f"

struct loader {
    struct eng_conf *conf;
    struct cfg_diag *diag;
    const char *match; /* the SEP-joined path of the key being stored */
    bool oom;
};

static char *dup_str(struct loader *L, const struct cfg_value *v)
{
    char *s = strdup(v->u.str.ptr);
    if (!s)
        L->oom = true;
    return s;
}

/* Strings with NUL bytes cannot be passed on to C APIs; say so instead of
 * silently truncating. */
static bool plain_string(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (strlen(v->u.str.ptr) != v->u.str.len) {
        cfg_error(L->diag, v->pos, "%s: must not contain NUL characters", path);
        return false;
    }
    return true;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* Checks "[:PASSWORD@]HOST[:PORT][/DB]" (what follows redis://); NULL when fine. */
static const char *redis_url_problem(const char *rest)
{
    const char *at = strrchr(rest, '@');
    const char *host = at ? at + 1 : rest;
    const char *end;
    if (*host == '[') {
        end = strchr(host, ']');
        if (!end)
            return "unclosed '[' in the host";
        end++;
    } else {
        end = host + strcspn(host, ":/?# ");
    }
    if (end == host || (*host == '[' && end - host <= 2))
        return "no host";
    if (*end == ':') {
        const char *port = end + 1;
        size_t n = strcspn(port, "/");
        long p = all_digits(port, n) && n <= 5 ? strtol(port, NULL, 10) : 0;
        if (p < 1 || p > 65535)
            return "bad port";
        end = port + n;
    }
    if (*end == '/') {
        const char *db = end + 1;
        size_t n = strlen(db);
        if (n > 0 && (!all_digits(db, n) || n > 5))
            return "the database must be a number";
        end = db + n;
    }
    return *end ? "unexpected text after the host" : NULL;
}

static void store_redis_url(struct loader *L, const char *path, const struct cfg_value *v)
{
    const char *s = v->u.str.ptr;
    if (!plain_string(L, path, v))
        return;
    if (strncmp(s, "rediss://", 9) == 0) {
        cfg_error(L->diag, v->pos,
                  "%s: TLS to Redis is not supported by this hiredis (rediss://); use redis:// "
                  "on a trusted network or unix://",
                  path);
        return;
    }
    const char *rest = NULL;
    if (strncmp(s, "redis://", 8) == 0)
        rest = s + 8;
    else if (strncmp(s, "unix://", 7) == 0)
        rest = s + 7;
    if (!rest) {
        cfg_error(L->diag, v->pos, "%s: '%s' must start with redis:// or unix://", path, s);
        return;
    }
    bool is_unix = rest == s + 7;
    const char *why = is_unix ? NULL : redis_url_problem(rest);
    if (why) {
        cfg_error(L->diag, v->pos, "%s: '%s': %s (expected redis://[:PASSWORD@]HOST[:PORT][/DB])",
                  path, s, why);
        return;
    }
    if (is_unix && (rest[0] != '/' || rest[1] == '\0')) {
        cfg_error(L->diag, v->pos, "%s: '%s' needs an absolute socket path (unix:///PATH)", path,
                  s);
        return;
    }
    free(L->conf->redis_url);
    L->conf->redis_url = dup_str(L, v);
}

static void store_redis_queue(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (!plain_string(L, path, v))
        return;
    if (v->u.str.len == 0) {
        cfg_error(L->diag, v->pos, "%s: must not be empty", path);
        return;
    }
    free(L->conf->queue_name);
    L->conf->queue_name = dup_str(L, v);
}

static void store_redis_password(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (!plain_string(L, path, v))
        return;
    /* A secret in a world-readable file is worth a warning, not a refusal: the
     * operator may have reasons (a container with one user). */
    struct stat st;
    const char *file = L->conf->doc->file;
    if (strcmp(file, embedded_name) != 0 && strcmp(file, "<stdin>") != 0 && stat(file, &st) == 0 &&
        (st.st_mode & S_IROTH))
        cfg_warn(L->diag, v->pos, "%s is set but %s is readable by every user (chmod o-r %s)", path,
                 file, file);
    free(L->conf->redis_password);
    L->conf->redis_password = dup_str(L, v);
}

static void store_threads(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (v->u.integer < 0 || v->u.integer > 4096) {
        cfg_error(L->diag, v->pos, "%s: %lld is out of range (0 = one per core, up to 4096)", path,
                  (long long)v->u.integer);
        return;
    }
    L->conf->worker_threads = (int)v->u.integer;
}

static void store_pin(struct loader *L, const char *path, const struct cfg_value *v)
{
    (void)path;
    L->conf->worker_pin = v->u.boolean;
}

/* "500ms", "30s", "2m", "1h": a positive duration in milliseconds, or -1. */
static int64_t parse_duration(const char *s)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || n > 1000000000ULL)
        return -1;
    int64_t unit;
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return -1;
    return n ? (int64_t)n * unit : -1;
}

static bool store_duration(struct loader *L, const char *path, const struct cfg_value *v,
                           int64_t min_ms, int64_t *out)
{
    if (!plain_string(L, path, v))
        return false;
    int64_t ms = parse_duration(v->u.str.ptr);
    if (ms < 0) {
        cfg_error(L->diag, v->pos, "%s: '%s' is not a duration (e.g. \"500ms\", \"30s\", \"2m\")",
                  path, v->u.str.ptr);
        return false;
    }
    if (ms < min_ms) {
        cfg_error(L->diag, v->pos, "%s: '%s' is too short (at least %lldms)", path, v->u.str.ptr,
                  (long long)min_ms);
        return false;
    }
    *out = ms;
    return true;
}

/* queue.lease: how long a claimed job may go unreported (and untouched) before
 * another process takes it over. */
static void store_lease(struct loader *L, const char *path, const struct cfg_value *v)
{
    store_duration(L, path, v, 300, &L->conf->lease_ms);
}

/* queue.retention: how long a finished message's metadata stays in Redis. */
static void store_retention(struct loader *L, const char *path, const struct cfg_value *v)
{
    store_duration(L, path, v, 1000, &L->conf->retention_ms);
}

/* server.shutdown-timeout: how long SIGTERM waits for transactions in flight. */
static void store_shutdown_timeout(struct loader *L, const char *path, const struct cfg_value *v)
{
    store_duration(L, path, v, 1, &L->conf->shutdown_timeout_ms);
}

static void store_log_level(struct loader *L, const char *path, const struct cfg_value *v)
{
    enum sv_log_level lvl;
    if (!plain_string(L, path, v) || sv_log_level_parse(v->u.str.ptr, &lvl) != 0) {
        cfg_error(L->diag, v->pos,
                  "%s: unknown level '%s' (expected error, warn, info, debug or trace)", path,
                  v->u.str.ptr);
        return;
    }
    L->conf->log_level = (int)lvl;
}

/* "ip", "ip:port" or "[ipv6]:port". */
static bool valid_nameserver(const char *s)
{
    char host[64];
    unsigned char addr[16];
    const char *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return false;
        hlen = (size_t)(close - s - 1);
        if (hlen >= sizeof(host))
            return false;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        port = close + 2;
        if (inet_pton(AF_INET6, host, addr) != 1)
            return false;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            return inet_pton(AF_INET6, s, addr) == 1; /* bare IPv6, no port */
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (hlen >= sizeof(host))
            return false;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        port = colon ? colon + 1 : NULL;
        if (inet_pton(AF_INET, host, addr) != 1)
            return false;
    }
    if (!port)
        return true;
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    return *port >= '0' && *port <= '9' && !*end && errno == 0 && p >= 1 && p <= 65535;
}

static void store_nameservers(struct loader *L, const char *path, const struct cfg_value *v)
{
    size_t n = v->u.array.len;
    char **list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        L->oom = true;
        return;
    }
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cfg_value *item = v->u.array.items[i];
        if (item->type != CFG_STRING) {
            cfg_error(L->diag, item->pos, "%s[%zu]: expected a string, found %s", path, i,
                      cfg_type_name(item->type));
            continue;
        }
        if (!plain_string(L, path, item) || !valid_nameserver(item->u.str.ptr)) {
            cfg_error(L->diag, item->pos,
                      "%s[%zu]: '%s' is not an IP address, IP:port or [IPv6]:port", path, i,
                      item->u.str.ptr);
            continue;
        }
        if (!(list[ok++] = dup_str(L, item)))
            break;
    }
    for (size_t i = 0; i < L->conf->n_nameservers; i++)
        free(L->conf->nameservers[i]);
    free(L->conf->nameservers);
    L->conf->nameservers = list;
    L->conf->n_nameservers = ok;
}

/* The remote named by segment 1 of remote.<name>.…, created on first use. */
static struct eng_remote *remote_for(struct loader *L)
{
    const char *name = L->match + strlen("remote" SEP);
    size_t len = strcspn(name, SEP);
    struct eng_conf *c = L->conf;
    for (size_t i = 0; i < c->n_remotes; i++)
        if (strlen(c->remotes[i].name) == len && memcmp(c->remotes[i].name, name, len) == 0)
            return &c->remotes[i];
    struct eng_remote *r = realloc(c->remotes, (c->n_remotes + 1) * sizeof(*r));
    if (!r) {
        L->oom = true;
        return NULL;
    }
    c->remotes = r;
    r = &c->remotes[c->n_remotes];
    *r = (struct eng_remote){.name = strndup(name, len), .port = 25};
    if (!r->name) {
        L->oom = true;
        return NULL;
    }
    c->n_remotes++;
    return r;
}

static void store_remote_address(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (!plain_string(L, path, v))
        return;
    if (v->u.str.len == 0 || strpbrk(v->u.str.ptr, " \t/")) {
        cfg_error(L->diag, v->pos, "%s: '%s' is not a host name or IP address", path, v->u.str.ptr);
        return;
    }
    struct eng_remote *r = remote_for(L);
    if (r) {
        free(r->address);
        r->address = dup_str(L, v);
    }
}

static void store_remote_port(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (v->u.integer < 1 || v->u.integer > 65535) {
        cfg_error(L->diag, v->pos, "%s: port %lld is out of range (1-65535)", path,
                  (long long)v->u.integer);
        return;
    }
    struct eng_remote *r = remote_for(L);
    if (r)
        r->port = (int)v->u.integer;
}

static void store_remote_protocol(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (strcmp(v->u.str.ptr, "smtp") != 0 || v->u.str.len != 4) {
        cfg_error(L->diag, v->pos, "%s: unsupported protocol '%s' (only \"smtp\")", path,
                  v->u.str.ptr);
        return;
    }
    remote_for(L);
}

static void store_remote_tls_implicit(struct loader *L, const char *path, const struct cfg_value *v)
{
    (void)path;
    struct eng_remote *r = remote_for(L);
    if (r)
        r->tls_implicit = v->u.boolean;
}

static bool int_in(struct loader *L, const char *path, const struct cfg_value *v, long long lo,
                   long long hi)
{
    if (v->u.integer < lo || v->u.integer > hi) {
        cfg_error(L->diag, v->pos, "%s: %lld is out of range (%lld-%lld)", path,
                  (long long)v->u.integer, lo, hi);
        return false;
    }
    return true;
}

static void store_out_connections(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (int_in(L, path, v, 1, 10000))
        L->conf->out_connections = (int)v->u.integer;
}

static void store_out_msgs(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (int_in(L, path, v, 1, 1000000))
        L->conf->out_msgs_per_conn = (int)v->u.integer;
}

static void store_out_idle(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (int_in(L, path, v, 0, 86400))
        L->conf->out_idle_timeout_s = (int)v->u.integer;
}

static void store_out_mx_port(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (int_in(L, path, v, 1, 65535))
        L->conf->out_mx_port = (int)v->u.integer;
}

static void store_out_ca_file(struct loader *L, const char *path, const struct cfg_value *v)
{
    if (!plain_string(L, path, v))
        return;
    if (v->u.str.len == 0) {
        cfg_error(L->diag, v->pos, "%s: must not be empty", path);
        return;
    }
    free(L->conf->out_ca_file);
    L->conf->out_ca_file = dup_str(L, v);
}

static const char *expected(enum cfg_type t);

/* --- [[queue.limiter.outbound]] --------------------------------------------------- */

/* "100/1s", "6000/1m", "10/500ms": N messages per duration. Returns 0 or -1. */
static int parse_rate(const char *s, int64_t *n, int64_t *period_ms)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || v < 1 || v > 1000000000ULL || *end != '/')
        return -1;
    int64_t ms = parse_duration(end + 1);
    if (ms < 0)
        return -1;
    *n = (int64_t)v;
    *period_ms = ms;
    return 0;
}

/* Variables the queue thread knows about a job before a worker has it; a rate on
 * those is applied there, before the job reaches a worker. A limiter keyed or
 * matched on mx or remote_ip (found later, by the worker) is applied by the worker
 * as it sends (rate) and connects (concurrency); connection caps always are. */
#define LIMIT_VAR(v) (1u << RULE_VAR_##v)
#define LIMIT_MATCH_VARS                                                                           \
    (LIMIT_VAR(SENDER) | LIMIT_VAR(SENDER_DOMAIN) | LIMIT_VAR(RCPT) | LIMIT_VAR(RCPT_DOMAIN) |     \
     LIMIT_VAR(RETRY_NUM) | LIMIT_VAR(LAST_ERROR) | LIMIT_VAR(QUEUE_NAME) | LIMIT_VAR(QUEUE_AGE) | \
     LIMIT_VAR(SIZE))
#define CONC_MATCH_VARS (LIMIT_MATCH_VARS | LIMIT_VAR(MX) | LIMIT_VAR(REMOTE_IP))
static const char *const limit_key_names[] = {"rcpt_domain", "sender_domain", "sender", "mx",
                                              "remote_ip"};
static const char *const limit_fields[] = {"id", "key", "match", "rate", "enable", "concurrency"};

static void limiter_key(struct loader *L, const char *path, const struct cfg_value *v,
                        struct eng_limiter *lim)
{
    if (v->type != CFG_STRING || !plain_string(L, path, v)) {
        if (v->type != CFG_STRING)
            cfg_error(L->diag, v->pos, "%s: expected a string, found %s", path,
                      cfg_type_name(v->type));
        return;
    }
    const char *name = v->u.str.ptr;
    int var = -1;
    for (size_t i = 0; i < SV_ARRAY_LEN(limit_key_names); i++)
        if (strcmp(name, limit_key_names[i]) == 0)
            var = rule_var_find(name);
    if (var < 0) {
        const char *hint = cfg_suggest(name, limit_key_names, SV_ARRAY_LEN(limit_key_names));
        if (hint)
            cfg_error(L->diag, v->pos, "%s: unknown key variable '%s' (did you mean '%s'?)", path,
                      name, hint);
        else
            cfg_error(L->diag, v->pos,
                      "%s: unknown key variable '%s' (use rcpt_domain, sender_domain, sender, mx "
                      "or remote_ip)",
                      path, name);
        return;
    }
    if (var == RULE_VAR_MX || var == RULE_VAR_REMOTE_IP)
        lim->at_connect = true;
    for (size_t i = 0; i < lim->nkeys; i++)
        if (lim->keys[i] == var) {
            cfg_error(L->diag, v->pos, "%s: '%s' is listed twice", path, name);
            return;
        }
    if (lim->nkeys < ENG_LIMITER_KEYS_MAX)
        lim->keys[lim->nkeys++] = var;
}

/* One [[queue.limiter.outbound]] table; returns true when it is valid. */
static bool limiter_parse(struct loader *L, size_t idx, const struct cfg_value *t,
                          struct eng_limiter *lim, bool *enable)
{
    size_t errors = L->diag->errors;
    char base[64], path[96];
    snprintf(base, sizeof(base), "queue.limiter.outbound[%zu]", idx);
    *enable = true;
    bool have_id = false, have_rate = false, have_conc = false;
    for (size_t i = 0; i < t->u.table.len; i++) {
        const struct cfg_entry *e = &t->u.table.items[i];
        const struct cfg_value *v = e->value;
        snprintf(path, sizeof(path), "%s.%.20s", base, e->key);
        size_t f = 0;
        while (f < SV_ARRAY_LEN(limit_fields) && strcmp(e->key, limit_fields[f]) != 0)
            f++;
        if (f == SV_ARRAY_LEN(limit_fields)) {
            const char *hint = cfg_suggest(e->key, limit_fields, SV_ARRAY_LEN(limit_fields));
            if (hint)
                cfg_error(L->diag, e->key_pos, "unknown key '%s.%s' (did you mean '%s.%s'?)", base,
                          e->key, base, hint);
            else
                cfg_error(L->diag, e->key_pos,
                          "unknown key '%s.%s' (expected id, key, match, rate, concurrency, "
                          "enable)",
                          base, e->key);
            continue;
        }
        enum cfg_type want = f == 1   ? CFG_ARRAY
                             : f == 4 ? CFG_BOOL
                             : f == 5 ? CFG_INTEGER
                                      : CFG_STRING;
        if (f == 1 && v->type == CFG_STRING) { /* key = "rcpt_domain": a list of one */
            limiter_key(L, path, v, lim);
            continue;
        }
        if (v->type != want) {
            cfg_error(L->diag, v->pos, "%s: expected %s, found %s", path, expected(want),
                      cfg_type_name(v->type));
            continue;
        }
        if (want == CFG_STRING && !plain_string(L, path, v))
            continue;
        switch (f) {
        case 0:
            if (v->u.str.len == 0 || strpbrk(v->u.str.ptr, " \t\r\n{}")) {
                cfg_error(L->diag, v->pos, "%s: '%s' is not a name (no spaces or braces)", path,
                          v->u.str.ptr);
                break;
            }
            have_id = true;
            free(lim->id);
            lim->id = dup_str(L, v);
            break;
        case 1:
            for (size_t k = 0; k < v->u.array.len; k++)
                limiter_key(L, path, v->u.array.items[k], lim);
            break;
        case 2: {
            /* mx or remote_ip in the match: the limiter applies in the worker. */
            struct rule_error err;
            struct rule_program *p =
                rule_compile_expr(v->u.str.ptr, v->u.str.len, LIMIT_MATCH_VARS, &err);
            if (!p && (p = rule_compile_expr(v->u.str.ptr, v->u.str.len, CONC_MATCH_VARS, &err)))
                lim->at_connect = true;
            if (!p) {
                cfg_error(L->diag, cfg_string_pos(v, err.offset), "%s: %s", path, err.msg);
                break;
            }
            rule_program_free(lim->match);
            lim->match = p;
            break;
        }
        case 3:
            have_rate = true;
            if (parse_rate(v->u.str.ptr, &lim->rate, &lim->period_ms)) {
                cfg_error(L->diag, v->pos,
                          "%s: '%s' is not a rate (N per duration: \"100/1s\", \"6000/1m\", "
                          "\"10/500ms\")",
                          path, v->u.str.ptr);
            } else if (lim->period_ms * 1000 / lim->rate < 1) {
                cfg_error(L->diag, v->pos, "%s: '%s' is too fast (at most 1000000 per second)",
                          path, v->u.str.ptr);
            }
            break;
        case 4: *enable = v->u.boolean; break;
        case 5:
            have_conc = true;
            if (int_in(L, path, v, 1, 1000000))
                lim->concurrency = v->u.integer;
            break;
        }
    }
    if (!have_id)
        cfg_error(L->diag, t->pos, "%s: missing 'id'", base);
    if (!have_rate && !have_conc)
        cfg_error(L->diag, t->pos, "%s: missing 'rate' or 'concurrency'", base);
    return L->diag->errors == errors;
}

static void limiter_free(struct eng_limiter *lim)
{
    free(lim->id);
    rule_program_free(lim->match);
    memset(lim, 0, sizeof(*lim));
}

static void store_limiters(struct loader *L, const char *path, const struct cfg_value *v)
{
    struct eng_conf *c = L->conf;
    for (size_t i = 0; i < v->u.array.len; i++) {
        const struct cfg_value *t = v->u.array.items[i];
        if (t->type != CFG_TABLE) {
            cfg_error(L->diag, t->pos, "%s[%zu]: expected a table, found %s", path, i,
                      cfg_type_name(t->type));
            continue;
        }
        struct eng_limiter lim = {0};
        bool enable;
        if (!limiter_parse(L, i, t, &lim, &enable) || !lim.id) {
            limiter_free(&lim);
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < c->n_limiters && !dup; j++)
            dup = strcmp(c->limiters[j].id, lim.id) == 0;
        if (dup) {
            const struct cfg_entry *e = cfg_table_find(t, "id");
            cfg_error(L->diag, e ? e->value->pos : t->pos, "%s[%zu].id: '%s' is used twice", path,
                      i, lim.id);
            limiter_free(&lim);
            continue;
        }
        if (!enable) {
            limiter_free(&lim);
            continue;
        }
        if (c->n_limiters == ENG_LIMITERS_MAX) {
            cfg_error(L->diag, t->pos, "%s[%zu]: at most %d enabled limiters", path, i,
                      ENG_LIMITERS_MAX);
            limiter_free(&lim);
            continue;
        }
        struct eng_limiter *n = realloc(c->limiters, (c->n_limiters + 1) * sizeof(*n));
        if (!n) {
            limiter_free(&lim);
            L->oom = true;
            return;
        }
        c->limiters = n;
        c->limiters[c->n_limiters++] = lim;
    }
}

static const struct schema_key schema[] = {
    {"redis.url", CFG_STRING, store_redis_url},
    {"redis.queue", CFG_STRING, store_redis_queue},
    {"redis.password", CFG_STRING, store_redis_password},
    {"server.workers.threads", CFG_INTEGER, store_threads},
    {"server.workers.pin", CFG_BOOL, store_pin},
    {"server.shutdown-timeout", CFG_STRING, store_shutdown_timeout},
    {"queue.lease", CFG_STRING, store_lease},
    {"queue.retention", CFG_STRING, store_retention},
    {"log.level", CFG_STRING, store_log_level},
    {"resolver.nameservers", CFG_ARRAY, store_nameservers},
    {"remote.*.address", CFG_STRING, store_remote_address},
    {"remote.*.port", CFG_INTEGER, store_remote_port},
    {"remote.*.protocol", CFG_STRING, store_remote_protocol},
    {"remote.*.tls.implicit", CFG_BOOL, store_remote_tls_implicit},
    {"queue.outbound.limits.connections", CFG_INTEGER, store_out_connections},
    {"queue.outbound.limits.messages-per-connection", CFG_INTEGER, store_out_msgs},
    {"queue.outbound.limits.idle-timeout", CFG_INTEGER, store_out_idle},
    {"queue.outbound.tls.ca-file", CFG_STRING, store_out_ca_file},
    {"queue.outbound.mx-port", CFG_INTEGER, store_out_mx_port},
    {"queue.limiter.outbound", CFG_ARRAY, store_limiters},
};

/* --- matching paths against the schema ---------------------------------------- */

/* Does `pattern` (dotted, with '*' segments) match the SEP-joined `path` exactly
 * (prefix=false), or is `path` a strict prefix of it (prefix=true)? */
static bool pattern_match(const char *pattern, const char *path, bool prefix)
{
    const char *p = pattern, *s = path;
    for (;;) {
        size_t pl = strcspn(p, "."), sl = strcspn(s, SEP);
        if (!(pl == 1 && *p == '*') && (pl != sl || memcmp(p, s, pl) != 0))
            return false;
        p += pl;
        s += sl;
        if (*s == '\0')
            return prefix ? *p == '.' : *p == '\0';
        if (*p == '\0')
            return false;
        p++;
        s++;
    }
}

static const struct schema_key *schema_find(const char *path)
{
    for (size_t i = 0; i < SV_ARRAY_LEN(schema); i++)
        if (pattern_match(schema[i].path, path, false))
            return &schema[i];
    return NULL;
}

/* Is `path` a table that holds known keys (a schema key or an expression setting)? */
static bool known_table(const char *path)
{
    for (size_t i = 0; i < SV_ARRAY_LEN(schema); i++)
        if (pattern_match(schema[i].path, path, true))
            return true;
    size_t n = 0;
    const char *const *names = rule_setting_names(&n);
    for (size_t i = 0; i < n; i++)
        if (pattern_match(names[i], path, true))
            return true;
    return false;
}

static bool is_bare(const char *k, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Candidate names for "did you mean": every known key cut to as many segments as
 * `path` has, with '*' replaced by the segment written at that place. */
static void suggest_unknown(struct loader *L, const struct cfg_entry *e, const char *path,
                            const char *match)
{
    size_t nseg = 1;
    for (const char *c = match; *c; c++)
        nseg += *c == SEP[0];
    size_t n_rules = 0;
    const char *const *rule_names = rule_setting_names(&n_rules);
    size_t total = SV_ARRAY_LEN(schema) + n_rules;
    char **cands = calloc(total ? total : 1, sizeof(*cands));
    size_t nc = 0;
    for (size_t i = 0; cands && i < total; i++) {
        const char *name =
            i < SV_ARRAY_LEN(schema) ? schema[i].path : rule_names[i - SV_ARRAY_LEN(schema)];
        char buf[512];
        size_t o = 0, seg = 0;
        const char *p = name, *s = match;
        while (seg < nseg && *p) {
            size_t pl = strcspn(p, "."), sl = strcspn(s, SEP);
            bool star = pl == 1 && *p == '*';
            const char *src = star ? s : p;
            size_t len = star ? sl : pl;
            bool quote = star && !is_bare(s, sl);
            if (o + len + 4 >= sizeof(buf))
                break;
            if (seg)
                buf[o++] = '.';
            if (quote)
                buf[o++] = '"';
            memcpy(buf + o, src, len);
            o += len;
            if (quote)
                buf[o++] = '"';
            seg++;
            p += pl + (p[pl] == '.');
            s += sl + (s[sl] == SEP[0]);
        }
        buf[o] = '\0';
        if (seg != nseg)
            continue;                      /* a shorter known name cannot be what was meant */
        bool dup = strcmp(buf, path) == 0; /* the key itself: not a suggestion */
        for (size_t j = 0; j < nc && !dup; j++)
            dup = strcmp(cands[j], buf) == 0;
        if (!dup && (cands[nc] = strdup(buf)) != NULL)
            nc++;
    }
    const char *hint = cands ? cfg_suggest(path, (const char *const *)cands, nc) : NULL;
    if (hint)
        cfg_error(L->diag, e->key_pos, "unknown key '%s' (did you mean '%s'?)", path, hint);
    else
        cfg_error(L->diag, e->key_pos, "unknown key '%s'", path);
    for (size_t j = 0; j < nc; j++)
        free(cands[j]);
    free(cands);
}

static void add_rule(struct loader *L, const char *path, const struct rule_setting *s,
                     const struct cfg_value *v)
{
    struct rule_program *prog = rule_compile_setting(s, v, L->diag);
    if (!prog)
        return; /* the compiler reported why */
    struct eng_conf *c = L->conf;
    struct eng_rule *r = realloc(c->rules, (c->n_rules + 1) * sizeof(*r));
    char *key = strdup(path);
    if (!r || !key) {
        if (r)
            c->rules = r;
        free(key);
        rule_program_free(prog);
        L->oom = true;
        return;
    }
    c->rules = r;
    c->rules[c->n_rules++] = (struct eng_rule){key, s, prog};
}

static const char *expected(enum cfg_type t)
{
    switch (t) {
    case CFG_INTEGER: return "an integer";
    case CFG_ARRAY: return "an array";
    case CFG_BOOL: return "a boolean (true or false)";
    case CFG_TABLE: return "a table";
    case CFG_STRING:
    case CFG_FLOAT:
    case CFG_DATETIME:
    case CFG_DATETIME_LOCAL:
    case CFG_DATE_LOCAL:
    case CFG_TIME_LOCAL: break;
    }
    return "a string";
}

static void walk(struct loader *L, const struct cfg_value *table, const char *prefix,
                 const char *mprefix)
{
    for (size_t i = 0; i < table->u.table.len; i++) {
        const struct cfg_entry *e = &table->u.table.items[i];
        char path[512], match[512];
        bool bare = is_bare(e->key, e->key_len);
        int w = snprintf(path, sizeof(path), bare ? "%s%s%s" : "%s%s\"%s\"", prefix,
                         *prefix ? "." : "", e->key);
        int wm = snprintf(match, sizeof(match), "%s%s%s", mprefix, *mprefix ? SEP : "", e->key);
        if (w < 0 || (size_t)w >= sizeof(path) || wm < 0 || (size_t)wm >= sizeof(match)) {
            cfg_error(L->diag, e->key_pos, "unknown key '%.60s...' (name too long)", path);
            continue;
        }
        if (strlen(e->key) != e->key_len) {
            cfg_error(L->diag, e->key_pos, "unknown key %s (keys here cannot contain NUL)", path);
            continue;
        }
        const struct rule_setting *rs = rule_setting_find(path);
        if (rs) {
            add_rule(L, path, rs, e->value);
            continue;
        }
        const struct schema_key *sk = schema_find(match);
        if (sk) {
            L->match = match;
            if (e->value->type != sk->type)
                cfg_error(L->diag, e->value->pos, "%s: expected %s, found %s", path,
                          expected(sk->type), cfg_type_name(e->value->type));
            else
                sk->store(L, path, e->value);
            continue;
        }
        if (known_table(match)) {
            if (e->value->type == CFG_TABLE)
                walk(L, e->value, path, match);
            else
                cfg_error(L->diag, e->value->pos, "%s: expected a table, found %s", path,
                          cfg_type_name(e->value->type));
            continue;
        }
        suggest_unknown(L, e, path, match);
    }
}

/* After the walk: each [remote.<name>] needs an address. */
static void check_remotes(struct loader *L, const struct cfg_value *root)
{
    const struct cfg_value *remotes = cfg_get(root, "remote");
    if (!remotes || remotes->type != CFG_TABLE)
        return;
    for (size_t i = 0; i < remotes->u.table.len; i++) {
        const struct cfg_entry *e = &remotes->u.table.items[i];
        if (e->value->type != CFG_TABLE)
            continue; /* already reported as an unknown key */
        if (!cfg_table_find(e->value, "address")) {
            cfg_error(L->diag, e->value->pos,
                      is_bare(e->key, e->key_len) ? "remote.%s: missing 'address'"
                                                  : "remote.\"%s\": missing 'address'",
                      e->key);
            continue;
        }
        for (size_t j = 0; j < L->conf->n_remotes; j++)
            if (strcmp(L->conf->remotes[j].name, e->key) == 0)
                L->conf->remotes[j].pos = e->value->pos;
    }
}

/* Orders the entries from `from` on by position (stable), so a report reads top to
 * bottom like the file even though some checks run after the walk. */
static void sort_diag(struct cfg_diag *d, size_t from)
{
    for (size_t i = from + 1; i < d->len; i++) {
        struct cfg_diag_entry e = d->items[i];
        size_t j = i;
        while (j > from &&
               (d->items[j - 1].pos.line > e.pos.line ||
                (d->items[j - 1].pos.line == e.pos.line && d->items[j - 1].pos.col > e.pos.col))) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = e;
    }
}

int eng_conf_load(const char *path, struct eng_conf *conf, struct cfg_diag *diag)
{
    memset(conf, 0, sizeof(*conf));
    size_t errors_before = diag->errors, entries_before = diag->len;
    if (path)
        conf->doc = cfg_doc_load_file(path, diag);
    else
        conf->doc =
            cfg_doc_parse(embedded_name, embedded_default, sizeof(embedded_default) - 1, diag);
    if (!conf->doc)
        return -1;
    conf->source = conf->doc->file;

    struct loader L = {conf, diag, NULL, false};
    conf->redis_url = strdup("redis://127.0.0.1:6379/0");
    conf->queue_name = strdup("default");
    conf->worker_threads = 0;
    conf->worker_pin = true;
    conf->lease_ms = 60000;
    conf->retention_ms = 7 * 86400000LL;
    conf->shutdown_timeout_ms = 10000;
    conf->log_level = SV_LOG_INFO;
    conf->out_connections = 8;
    conf->out_msgs_per_conn = 1000;
    conf->out_idle_timeout_s = 30;
    conf->out_mx_port = 25;
    if (!conf->redis_url || !conf->queue_name)
        L.oom = true;
    walk(&L, conf->doc->root, "", "");
    check_remotes(&L, conf->doc->root);
    sort_diag(diag, entries_before);
    if (L.oom)
        cfg_error(diag, ((struct cfg_pos){NULL, 0, 0}), "out of memory while loading %s",
                  conf->source);
    return diag->errors > errors_before ? -1 : 0;
}

void eng_conf_free(struct eng_conf *conf)
{
    if (!conf)
        return;
    free(conf->redis_url);
    free(conf->queue_name);
    free(conf->redis_password);
    free(conf->out_ca_file);
    for (size_t i = 0; i < conf->n_nameservers; i++)
        free(conf->nameservers[i]);
    free(conf->nameservers);
    for (size_t i = 0; i < conf->n_remotes; i++) {
        free(conf->remotes[i].name);
        free(conf->remotes[i].address);
    }
    free(conf->remotes);
    for (size_t i = 0; i < conf->n_rules; i++) {
        free(conf->rules[i].key);
        rule_program_free(conf->rules[i].program);
    }
    free(conf->rules);
    for (size_t i = 0; i < conf->n_limiters; i++)
        limiter_free(&conf->limiters[i]);
    free(conf->limiters);
    cfg_doc_free(conf->doc); /* last: conf->source points into it */
    memset(conf, 0, sizeof(*conf));
}
