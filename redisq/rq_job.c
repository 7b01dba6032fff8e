/* The delivery side: claim (XREADGROUP), reclaim (XAUTOCLAIM), bodies (fetched
 * once per message per process), buffered outcome reports, retry promotion. */
#include "rq_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_BUCKETS 256

/* --- bodies ------------------------------------------------------------------ */

struct rq_body *rq_body_ref(struct rq_body *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void rq_body_unref(struct rq_body *b)
{
    if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < b->nfields; i++)
        free(b->fields[i]);
    free(b->fields);
    free(b->from);
    free(b->from_ascii);
    free(b->data);
    free(b);
}

const char *rq_body_data(const struct rq_body *b, size_t *len)
{
    *len = b->len;
    return b->data;
}
const char *rq_body_from(const struct rq_body *b)
{
    return b->from;
}
const char *rq_body_from_ascii(const struct rq_body *b)
{
    return b->from_ascii ? b->from_ascii : b->from;
}
bool rq_body_personalised(const struct rq_body *b)
{
    return b->personalised;
}
int64_t rq_body_created_ms(const struct rq_body *b)
{
    return b->created_ms;
}

struct rq_body *rq_cache_get(struct rq *q, uint64_t msg)
{
    if (!q->cache)
        return NULL;
    for (struct rq_body *b = q->cache[msg % CACHE_BUCKETS]; b; b = b->next)
        if (b->msg == msg)
            return b;
    return NULL;
}

void rq_cache_put(struct rq *q, struct rq_body *b)
{
    if (!q->cache && !(q->cache = calloc(CACHE_BUCKETS, sizeof(*q->cache)))) {
        rq_body_unref(b);
        return;
    }
    struct rq_body **head = &q->cache[b->msg % CACHE_BUCKETS];
    b->next = *head;
    *head = b;
    q->cache_bytes += b->len;
}

/* Drops cached bodies nobody else holds while the cache is over its budget. */
void rq_cache_trim(struct rq *q)
{
    for (size_t i = 0; q->cache && q->cache_bytes > q->body_cache_max && i < CACHE_BUCKETS; i++) {
        for (struct rq_body **pp = &q->cache[i]; *pp;) {
            struct rq_body *b = *pp;
            if (atomic_load(&b->refs) == 1) {
                *pp = b->next;
                q->cache_bytes -= b->len;
                rq_body_unref(b);
            } else {
                pp = &b->next;
            }
        }
    }
}

void rq_cache_clear(struct rq *q)
{
    for (size_t i = 0; q->cache && i < CACHE_BUCKETS; i++) {
        while (q->cache[i]) {
            struct rq_body *b = q->cache[i];
            q->cache[i] = b->next;
            rq_body_unref(b);
        }
    }
    q->cache_bytes = 0;
}

static char *dup_str(const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING)
        return NULL;
    char *s = malloc(r->len + 1);
    if (s) {
        memcpy(s, r->str, r->len);
        s[r->len] = 0;
    }
    return s;
}

/* Builds a body from HMGET from body tpl fields created; NULL if the body is gone. */
static struct rq_body *body_from_reply(uint64_t msg, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return NULL;
    struct rq_body *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->msg = msg;
    b->from = dup_str(r->element[0]);
    b->data = dup_str(r->element[1]);
    b->len = r->element[1]->len;
    b->personalised = r->element[2]->type == REDIS_REPLY_STRING && r->element[2]->str[0] == '1';
    b->created_ms = r->element[4]->type == REDIS_REPLY_STRING ? atoll(r->element[4]->str) : 0;
    char *fields = dup_str(r->element[3]);
    if (!b->from || !b->data || !fields)
        goto fail;
    const char *at = strrchr(b->from, '@'), *why;
    char route[RQ_DOMAIN_MAX], given[RQ_DOMAIN_MAX];
    if (at && at[1] && rq_addr_domains(at + 1, route, given, &why) == 0 &&
        strcmp(route, given) != 0) {
        size_t ll = (size_t)(at - b->from), rl = strlen(route);
        if (!(b->from_ascii = malloc(ll + rl + 2)))
            goto fail;
        memcpy(b->from_ascii, b->from, ll + 1);
        memcpy(b->from_ascii + ll + 1, route, rl + 1);
    }
    if (*fields) {
        size_t n = 1;
        for (char *p = fields; *p; p++)
            n += *p == '\t';
        b->fields = calloc(n, sizeof(*b->fields));
        if (!b->fields)
            goto fail;
        char *p = fields;
        for (size_t i = 0; i < n; i++) {
            char *tok = p;
            rq_unesc_token(tok, &p);
            if (!(b->fields[i] = strdup(tok)))
                goto fail;
            b->nfields++;
        }
    }
    free(fields);
    return b;
fail:
    free(fields);
    rq_body_unref(b);
    return NULL;
}

/* Fetches the bodies of `mids` that are not cached yet, in one round trip. */
static int fetch_bodies(struct rq *q, const uint64_t *mids, size_t n)
{
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        if (rq_cache_get(q, mids[i]))
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = mids[j] == mids[i];
        if (seen)
            continue;
        if (redisAppendCommand(q->c, "HMGET %smsg:%llu from body tpl fields created", q->prefix,
                               (unsigned long long)mids[i]) != REDIS_OK)
            return rq_fail(q, -EIO, "body fetch: %s", q->c->errstr);
        want++;
    }
    if (!want)
        return 0;
    q->round_trips++;
    int rc = 0;
    for (size_t i = 0, got = 0; i < n && got < want; i++) {
        bool seen = rq_cache_get(q, mids[i]) != NULL;
        for (size_t j = 0; j < i && !seen; j++)
            seen = mids[j] == mids[i];
        if (seen)
            continue;
        got++;
        void *rep;
        if (redisGetReply(q->c, &rep) != REDIS_OK) {
            rc = rq_fail(q, -EIO, "body fetch: %s", q->c->errstr);
            redisFree(q->c);
            q->c = NULL;
            return rc;
        }
        redisReply *r = rep;
        if (r->type == REDIS_REPLY_ERROR && !rc)
            rc = rq_reply_error(q, r, "body fetch");
        struct rq_body *b = body_from_reply(mids[i], r);
        if (b)
            rq_cache_put(q, b);
        freeReplyObject(r);
    }
    return rc;
}

/* --- claim -------------------------------------------------------------------- */

struct job_mem {
    char *text; /* the payload copy, unescaped in place */
    struct rq_rcpt *rcpt;
    const char **values;
    char *addrs;
};

static void job_mem_free(struct job_mem *m)
{
    free(m->text);
    free(m->rcpt);
    free(m->values);
    free(m->addrs);
}

/* Parses one payload into `j` (memory in `m`); nfields values per recipient. */
static int parse_job(const char *pay, size_t len, size_t nfields, struct rq_job *j,
                     struct job_mem *m)
{
    memset(m, 0, sizeof(*m));
    if (!(m->text = malloc(len + 1)))
        return -ENOMEM;
    memcpy(m->text, pay, len);
    m->text[len] = 0;
    char *p = m->text, *tok[5];
    for (int i = 0; i < 5; i++) {
        tok[i] = p;
        char sep = rq_unesc_token(p, &p);
        if (sep != (i == 4 ? '\n' : '\t'))
            return -EPROTO;
    }
    j->msg = strtoull(tok[0], NULL, 10);
    /* "<A-labels>[ <UTF-8 form>]": see domain_field() in rq_enq.c. */
    char *sp = strchr(tok[1], ' ');
    if (sp)
        *sp++ = 0;
    j->domain = tok[1];
    j->rcpt_domain = sp ? sp : tok[1];
    j->retry_num = (unsigned)strtoul(tok[2], NULL, 10);
    j->nrcpt = strtoull(tok[3], NULL, 10);
    j->last_error = tok[4];
    if (j->nrcpt == 0 || j->nrcpt > len)
        return -EPROTO;
    m->rcpt = calloc(j->nrcpt, sizeof(*m->rcpt));
    m->values = calloc(j->nrcpt * (nfields ? nfields : 1), sizeof(*m->values));
    size_t dlen = strlen(j->domain), glen = strlen(j->rcpt_domain);
    /* Per recipient "local@given", and "local@domain" too when the two differ. */
    m->addrs = malloc(2 * len + j->nrcpt * (dlen + glen + 4));
    if (!m->rcpt || !m->values || !m->addrs)
        return -ENOMEM;
    char *w = m->addrs;
    for (size_t r = 0; r < j->nrcpt; r++) {
        if (!*p)
            return -EPROTO;
        char *local = p;
        char sep = rq_unesc_token(p, &p);
        const char **vals = m->values + r * nfields;
        for (size_t f = 0; f < nfields; f++) {
            vals[f] = "";
            if (sep == '\t') {
                vals[f] = p;
                sep = rq_unesc_token(p, &p);
            }
        }
        while (sep == '\t') /* fields the body no longer names: skip */
            sep = rq_unesc_token(p, &p);
        size_t ll = strlen(local);
        memcpy(w, local, ll);
        w[ll] = '@';
        memcpy(w + ll + 1, j->rcpt_domain, glen + 1);
        m->rcpt[r].addr = m->rcpt[r].addr_ascii = w;
        m->rcpt[r].values = vals;
        w += ll + glen + 2;
        if (sp) {
            memcpy(w, local, ll);
            w[ll] = '@';
            memcpy(w + ll + 1, j->domain, dlen + 1);
            m->rcpt[r].addr_ascii = w;
            w += ll + dlen + 2;
        }
    }
    j->rcpt = m->rcpt;
    return 0;
}

void rq_batch_free(struct rq_batch *b)
{
    if (!b)
        return;
    struct job_mem *mem = b->priv;
    for (size_t i = 0; i < b->njobs; i++) {
        rq_body_unref(b->jobs[i].body);
        if (mem)
            job_mem_free(&mem[i]);
    }
    free(mem);
    free(b->jobs);
    free(b);
}

/* Turns a flat reply [sid, payload, ...] (starting at element `from`) into a
 * batch. Jobs whose body is gone are reported dead right away. */
static int make_batch(struct rq *q, const redisReply *r, size_t from, struct rq_batch **out)
{
    *out = NULL;
    size_t n = (r->elements - from) / 2;
    if (n == 0)
        return 0;
    struct rq_batch *b = calloc(1, sizeof(*b));
    uint64_t *mids = calloc(n, sizeof(*mids));
    if (!b || !mids || !(b->jobs = calloc(n, sizeof(*b->jobs))) ||
        !(b->priv = calloc(n, sizeof(struct job_mem)))) {
        free(mids);
        rq_batch_free(b);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        mids[i] = strtoull(r->element[from + 2 * i + 1]->str, NULL, 10);
    int rc = fetch_bodies(q, mids, n);
    free(mids);
    if (rc) {
        rq_batch_free(b);
        return rc;
    }
    struct job_mem *mem = b->priv;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *sid = r->element[from + 2 * i], *pay = r->element[from + 2 * i + 1];
        struct rq_job *j = &b->jobs[kept];
        memset(j, 0, sizeof(*j));
        snprintf(j->sid, sizeof(j->sid), "%s", sid->str);
        uint64_t mid = strtoull(pay->str, NULL, 10);
        struct rq_body *body = rq_cache_get(q, mid);
        b->njobs = kept + 1;
        rc = parse_job(pay->str, pay->len, body ? body->nfields : 0, j, &mem[kept]);
        if (rc) {
            sv_warn("redisq: job %s: malformed payload, dropped as dead", j->sid);
            /* A malformed job cannot be parsed into recipients: acknowledge it alone. */
            struct rq_job bad = {.msg = mid, .domain = "invalid", .nrcpt = 0};
            snprintf(bad.sid, sizeof(bad.sid), "%s", sid->str);
            job_mem_free(&mem[kept]);
            b->njobs = kept;
            rq_report(q, &bad, NULL);
            continue;
        }
        if (!body) {
            struct rq_result *res = calloc(j->nrcpt, sizeof(*res));
            for (size_t k = 0; res && k < j->nrcpt; k++)
                res[k] = (struct rq_result){.outcome = RQ_DEAD, .error = "message body missing"};
            if (res)
                rq_report(q, j, res);
            free(res);
            job_mem_free(&mem[kept]);
            b->njobs = kept;
            continue;
        }
        j->body = rq_body_ref(body);
        kept++;
    }
    b->njobs = kept;
    rq_cache_trim(q);
    if (kept == 0) {
        rq_batch_free(b);
        return 0;
    }
    *out = b;
    return (int)kept;
}

int rq_claim(struct rq *q, size_t max_jobs, struct rq_batch **out)
{
    *out = NULL;
    struct rq_args a = {0};
    redisReply *r;
    if (rq_args_str(&a, q->consumer) || rq_args_i64(&a, (int64_t)(max_jobs ? max_jobs : 1))) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    int rc = rq_eval(q, RQS_CLAIM, &a, &r);
    rq_args_free(&a);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return rq_fail(q, -EPROTO, "claim: unexpected reply");
    }
    rc = make_batch(q, r, 0, out);
    freeReplyObject(r);
    return rc;
}

int rq_reclaim(struct rq *q, int64_t min_idle_ms, size_t max_jobs, struct rq_batch **out)
{
    *out = NULL;
    struct rq_args a = {0};
    redisReply *r;
    if (rq_args_str(&a, q->consumer) || rq_args_i64(&a, min_idle_ms) ||
        rq_args_str(&a, q->reclaim_cursor) || rq_args_i64(&a, (int64_t)(max_jobs ? max_jobs : 1)) ||
        rq_args_i64(&a, q->max_deliveries) || rq_args_i64(&a, rq_now_ms()) ||
        rq_args_i64(&a, q->dead_max) || rq_args_i64(&a, q->retention_ms)) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    int rc = rq_eval(q, RQS_RECLAIM, &a, &r);
    rq_args_free(&a);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return rq_fail(q, -EPROTO, "reclaim: unexpected reply");
    }
    snprintf(q->reclaim_cursor, sizeof(q->reclaim_cursor), "%s", r->element[0]->str);
    rc = make_batch(q, r, 1, out);
    freeReplyObject(r);
    return rc;
}

int rq_touch(struct rq *q, const char *const *sids, size_t n)
{
    if (n == 0)
        return 0;
    char stream[200];
    snprintf(stream, sizeof(stream), "%sready", q->prefix);
    size_t argc = n + 6;
    const char **av = calloc(argc, sizeof(*av));
    size_t *lv = calloc(argc, sizeof(*lv));
    if (!av || !lv) {
        free(av);
        free(lv);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    const char *head[5] = {"XCLAIM", stream, RQ_GROUP, q->consumer, "0"};
    for (size_t i = 0; i < 5; i++)
        av[i] = head[i];
    for (size_t i = 0; i < n; i++)
        av[5 + i] = sids[i];
    av[argc - 1] = "JUSTID";
    for (size_t i = 0; i < argc; i++)
        lv[i] = strlen(av[i]);
    redisReply *r;
    int rc = rq_cmd(q, &r, "touch", (int)argc, av, lv);
    free(av);
    free(lv);
    if (rc)
        return rc;
    rc = r->type == REDIS_REPLY_ARRAY ? (int)r->elements : 0;
    freeReplyObject(r);
    return rc;
}

/* --- reports -------------------------------------------------------------------- */

static const char *outcome_name(enum rq_outcome o)
{
    switch (o) {
    case RQ_DELIVERED: return "delivered";
    case RQ_DEFERRED: return "deferred";
    case RQ_BOUNCED: return "bounced";
    case RQ_DEAD: return "dead";
    }
    return "?";
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* Appends a payload of the recipients of `j` selected by sel[k] == g. */
static int group_payload(struct sv_buf *b, const struct rq_job *j, const unsigned *sel, unsigned g,
                         size_t count, unsigned retry, const char *err)
{
    sv_buf_reset(b);
    if (sv_buf_printf(b, "%llu\t", (unsigned long long)j->msg) ||
        rq_esc_append(b, j->domain, strlen(j->domain)) ||
        (j->rcpt_domain && strcmp(j->rcpt_domain, j->domain) != 0 &&
         (sv_buf_putc(b, ' ') || rq_esc_append(b, j->rcpt_domain, strlen(j->rcpt_domain)))) ||
        sv_buf_printf(b, "\t%u\t%zu\t", retry, count) || rq_esc_append(b, err, strlen(err)) ||
        sv_buf_putc(b, '\n'))
        return -ENOMEM;
    size_t nf = j->body ? j->body->nfields : 0;
    for (size_t k = 0; k < j->nrcpt; k++) {
        if (sel[k] != g)
            continue;
        const char *a = j->rcpt[k].addr, *at = strrchr(a, '@');
        if (rq_esc_append(b, a, at ? (size_t)(at - a) : strlen(a)))
            return -ENOMEM;
        for (size_t f = 0; f < nf; f++) {
            const char *v = nz(j->rcpt[k].values[f]);
            if (sv_buf_putc(b, '\t') || rq_esc_append(b, v, strlen(v)))
                return -ENOMEM;
        }
        if (sv_buf_putc(b, '\n'))
            return -ENOMEM;
    }
    return 0;
}

static int report_job(struct rq *q, const struct rq_job *j, const struct rq_result *res)
{
    struct rq_args *a = &q->report;
    size_t n = j->nrcpt;
    if (a->n == 0 && (rq_args_i64(a, rq_now_ms()) || rq_args_i64(a, q->events_max) ||
                      rq_args_i64(a, q->dead_max) || rq_args_i64(a, q->retention_ms)))
        return -ENOMEM;
    size_t mark_n = a->n, mark_len = a->data.len;
    unsigned *grp = calloc(n ? n : 1, sizeof(*grp)); /* deferred groups: 1.. */
    unsigned *let = calloc(n ? n : 1, sizeof(*let)); /* dead-letter groups: 1.. */
    struct sv_buf pay = {0};
    int rc = -ENOMEM;
    if (!grp || !let)
        goto out;
    size_t nd = 0, nb = 0, nx = 0;
    unsigned ng = 0, nl = 0;
    for (size_t k = 0; k < n; k++) {
        const struct rq_result *x = &res[k];
        switch (x->outcome) {
        case RQ_DELIVERED: nd++; break;
        case RQ_DEFERRED:
            for (size_t p = 0; p < k && !grp[k]; p++)
                if (grp[p] && res[p].retry_at_ms == x->retry_at_ms &&
                    strcmp(nz(res[p].error), nz(x->error)) == 0)
                    grp[k] = grp[p];
            if (!grp[k])
                grp[k] = ++ng;
            break;
        case RQ_BOUNCED:
        case RQ_DEAD:
            if (x->outcome == RQ_BOUNCED)
                nb++;
            else
                nx++;
            for (size_t p = 0; p < k && !let[k]; p++)
                if (let[p] && res[p].outcome == x->outcome &&
                    strcmp(nz(res[p].error), nz(x->error)) == 0)
                    let[k] = let[p];
            if (!let[k])
                let[k] = ++nl;
            break;
        }
    }
    char mid[24];
    snprintf(mid, sizeof(mid), "%llu", (unsigned long long)j->msg);
    if (rq_args_str(a, j->sid) || rq_args_str(a, mid) || rq_args_i64(a, (int64_t)nd) ||
        rq_args_i64(a, (int64_t)nb) || rq_args_i64(a, (int64_t)nx) || rq_args_i64(a, ng))
        goto out;
    for (unsigned g = 1; g <= ng; g++) {
        size_t first = 0, count = 0;
        for (size_t k = n; k-- > 0;)
            if (grp[k] == g) {
                first = k;
                count++;
            }
        if (group_payload(&pay, j, grp, g, count, j->retry_num + 1, nz(res[first].error)) ||
            rq_args_i64(a, res[first].retry_at_ms) || rq_args_i64(a, (int64_t)count) ||
            rq_args_add(a, pay.ptr, pay.len))
            goto out;
    }
    if (rq_args_i64(a, nl))
        goto out;
    for (unsigned g = 1; g <= nl; g++) {
        size_t first = 0, count = 0;
        for (size_t k = n; k-- > 0;)
            if (let[k] == g) {
                first = k;
                count++;
            }
        const char *why = res[first].error ? res[first].error : nz(res[first].reply);
        if (group_payload(&pay, j, let, g, count, j->retry_num, why) || rq_args_str(a, why) ||
            rq_args_i64(a, (int64_t)count) || rq_args_add(a, pay.ptr, pay.len) ||
            rq_args_str(a, outcome_name(res[first].outcome)))
            goto out;
    }
    if (rq_args_i64(a, (int64_t)n))
        goto out;
    for (size_t k = 0; k < n; k++) {
        const struct rq_result *x = &res[k];
        bool tls = x->tls_version && *x->tls_version;
        int64_t us = x->us < 0 ? 0 : x->us;
        char ms[32];
        snprintf(ms, sizeof(ms), "%lld.%03lld", (long long)(us / 1000), (long long)(us % 1000));
        if (rq_args_str(a, outcome_name(x->outcome)) || rq_args_str(a, j->rcpt[k].addr) ||
            rq_args_str(a, x->reply) || rq_args_str(a, ms) ||
            rq_args_str(a, tls ? x->tls_version : "") || rq_args_str(a, tls ? x->tls_cipher : "") ||
            rq_args_str(a, x->tls_verified ? "yes" : "no") ||
            rq_args_str(a, x->tls_resumed ? "yes" : "no"))
            goto out;
    }
    q->report_jobs++;
    rc = 0;
out:
    if (rc) { /* roll back this job's partial arguments */
        a->n = mark_n;
        a->data.len = mark_len;
    }
    free(grp);
    free(let);
    sv_buf_free(&pay);
    return rc;
}

int rq_report(struct rq *q, const struct rq_job *job, const struct rq_result *res)
{
    if (job->nrcpt && !res)
        return rq_fail(q, -EINVAL, "report: no results for job %s", job->sid);
    if (report_job(q, job, res))
        return rq_fail(q, -ENOMEM, "out of memory");
    if (q->report_jobs >= RQ_REPORT_AUTOFLUSH)
        return rq_flush(q);
    return 0;
}

int rq_flush(struct rq *q)
{
    if (q->report_jobs == 0)
        return 0;
    redisReply *r;
    int rc = rq_eval(q, RQS_REPORT, &q->report, &r);
    if (rc)
        return rc; /* kept: resent by the next flush */
    freeReplyObject(r);
    rq_args_reset(&q->report);
    q->report_jobs = 0;
    return 0;
}

size_t rq_buffered_reports(const struct rq *q)
{
    return q->report_jobs;
}

/* --- retries ---------------------------------------------------------------------- */

int rq_promote(struct rq *q, int64_t now_ms, size_t max_jobs, int64_t *next_due_ms)
{
    struct rq_args a = {0};
    redisReply *r;
    if (rq_args_i64(&a, now_ms) || rq_args_i64(&a, (int64_t)(max_jobs ? max_jobs : 1))) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    int rc = rq_eval(q, RQS_PROMOTE, &a, &r);
    rq_args_free(&a);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return rq_fail(q, -EPROTO, "promote: unexpected reply");
    }
    rc = (int)r->element[0]->integer;
    if (next_due_ms)
        *next_due_ms = (int64_t)strtod(r->element[1]->str, NULL);
    freeReplyObject(r);
    return rc;
}
