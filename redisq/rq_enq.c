/* Enqueue: the body once, then recipients grouped into jobs by domain and written
 * in pipelined batches (one script call per batch of up to 256 jobs / 1 MiB).
 * Memory is bounded: at most OPEN_MAX jobs are open (being filled) at a time. */
#include "rq_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define OPEN_SLOTS  8192 /* power of two */
#define OPEN_MAX    (OPEN_SLOTS / 2)
#define BATCH_JOBS  256
#define BATCH_BYTES (1u << 20)

struct open_job {
    char *domain; /* owned: the payload's domain field; NULL = free slot */
    struct sv_buf rcpts;
    size_t n;
};

struct rq_enq {
    struct rq *q;
    uint64_t id;
    char idstr[24];
    size_t nfields, job_rcpts;
    struct open_job *slots;
    size_t nopen;
    size_t nused;         /* slots ever used since the last emit_all(): open + tombstones */
    struct rq_args batch; /* ARGV[1] = message id, then payloads */
    struct sv_buf tmp;
};

int rq_enq_begin(struct rq *q, const struct rq_msg_spec *spec, struct rq_enq **out, uint64_t *id)
{
    *out = NULL;
    const char *why;
    if (!spec->from || rq_addr_check(spec->from, &why))
        return rq_fail(q, -EINVAL, "bad sender '%s': %s", spec->from ? spec->from : "",
                       spec->from ? why : "missing");
    struct rq_args a = {0};
    struct sv_buf fields = {0};
    for (size_t i = 0; i < spec->nfields; i++) {
        if ((i && sv_buf_putc(&fields, '\t')) ||
            rq_esc_append(&fields, spec->fields[i], strlen(spec->fields[i])))
            goto nomem;
    }
    if (rq_args_str(&a, spec->from) || rq_args_add(&a, spec->body, spec->body_len) ||
        rq_args_str(&a, spec->personalised ? "1" : "0") ||
        rq_args_add(&a, fields.ptr ? fields.ptr : "", fields.len) ||
        rq_args_str(&a, spec->campaign ? spec->campaign : "") || rq_args_i64(&a, rq_now_ms()))
        goto nomem;
    sv_buf_free(&fields);
    redisReply *r;
    int rc = rq_eval(q, RQS_ENQ_BEGIN, &a, &r);
    rq_args_free(&a);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        *id = strtoull(r->element[0]->str, NULL, 10);
        freeReplyObject(r);
        return rq_fail(q, -EEXIST, "campaign '%s' already exists (message %llu)", spec->campaign,
                       (unsigned long long)*id);
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return rq_fail(q, -EPROTO, "enqueue: unexpected reply");
    }
    struct rq_enq *e = calloc(1, sizeof(*e));
    if (!e || !(e->slots = calloc(OPEN_SLOTS, sizeof(*e->slots)))) {
        free(e);
        freeReplyObject(r);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    e->q = q;
    e->id = (uint64_t)r->integer;
    freeReplyObject(r);
    snprintf(e->idstr, sizeof(e->idstr), "%llu", (unsigned long long)e->id);
    e->nfields = spec->nfields;
    e->job_rcpts = spec->job_rcpts ? spec->job_rcpts : 50;
    if (rq_args_str(&e->batch, e->idstr)) {
        rq_enq_free(e);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    *id = e->id;
    *out = e;
    return 0;
nomem:
    rq_args_free(&a);
    sv_buf_free(&fields);
    return rq_fail(q, -ENOMEM, "out of memory");
}

static int flush_batch(struct rq_enq *e)
{
    if (e->batch.n <= 1)
        return 0;
    redisReply *r;
    int rc = rq_eval(e->q, RQS_ENQ_ADD, &e->batch, &r);
    if (rc)
        return rc;
    freeReplyObject(r);
    rq_args_reset(&e->batch);
    return rq_args_str(&e->batch, e->idstr) ? rq_fail(e->q, -ENOMEM, "out of memory") : 0;
}

/* Turns an open job into a payload in the batch and frees the slot. */
static int emit(struct rq_enq *e, struct open_job *j)
{
    struct sv_buf *t = &e->tmp;
    sv_buf_reset(t);
    if (sv_buf_printf(t, "%s\t%s\t0\t%zu\t\n", e->idstr, j->domain, j->n) ||
        sv_buf_append(t, j->rcpts.ptr, j->rcpts.len) || rq_args_add(&e->batch, t->ptr, t->len))
        return rq_fail(e->q, -ENOMEM, "out of memory");
    free(j->domain);
    j->domain = NULL;
    sv_buf_reset(&j->rcpts);
    j->n = 0;
    e->nopen--;
    if (e->batch.n > BATCH_JOBS || e->batch.data.len >= BATCH_BYTES)
        return flush_batch(e);
    return 0;
}

/* Emits every open job and clears the table (tombstones included). */
static int emit_all(struct rq_enq *e)
{
    for (size_t i = 0; i < OPEN_SLOTS; i++) {
        if (e->slots[i].domain) {
            int rc = emit(e, &e->slots[i]);
            if (rc)
                return rc;
        }
        sv_buf_free(&e->slots[i].rcpts);
    }
    e->nused = 0;
    return 0;
}

static uint64_t hash_domain(const char *d)
{
    uint64_t h = 1469598103934665603ull;
    for (; *d; d++)
        h = (h ^ (unsigned char)*d) * 1099511628211ull;
    return h;
}

/* The payload's domain field: the routing domain (A-labels), then, for a domain
 * given in UTF-8, a space and that form (the one the recipients' addresses carry).
 * A space is in no domain, and the scripts never look inside the field. */
static int domain_field(const char *dom, char *key, size_t cap, const char **why)
{
    char route[RQ_DOMAIN_MAX], given[RQ_DOMAIN_MAX];
    int rc = rq_addr_domains(dom, route, given, why);
    if (rc)
        return rc;
    if (strcmp(route, given) == 0)
        snprintf(key, cap, "%s", route);
    else
        snprintf(key, cap, "%s %s", route, given);
    return 0;
}

int rq_enq_add(struct rq_enq *e, const char *addr, const char *const *values)
{
    const char *why;
    if (rq_addr_check(addr, &why))
        return rq_fail(e->q, -EINVAL, "bad recipient '%s': %s", addr, why);
    const char *at = strrchr(addr, '@');
    char dom[2 * RQ_DOMAIN_MAX];
    if (domain_field(at + 1, dom, sizeof(dom), &why))
        return rq_fail(e->q, -EINVAL, "bad recipient '%s': %s", addr, why);
    if (e->nused >= OPEN_MAX) {
        int rc = emit_all(e);
        if (rc)
            return rc;
    }
    /* Open addressing: a job emitted because it is full leaves a tombstone (domain
     * NULL, buffer kept) so probe chains stay intact; the chain ends at a slot never
     * used (buffer NULL). nused bounds open jobs + tombstones to half the table. */
    size_t mask = OPEN_SLOTS - 1, i = hash_domain(dom) & mask, free_slot = SIZE_MAX;
    struct open_job *j = NULL;
    for (size_t probes = 0; probes < OPEN_SLOTS; probes++, i = (i + 1) & mask) {
        struct open_job *s = &e->slots[i];
        if (!s->domain) {
            if (free_slot == SIZE_MAX)
                free_slot = i;
            if (s->rcpts.ptr == NULL)
                break; /* never used: the end of the chain */
            continue;
        }
        if (strcmp(s->domain, dom) == 0) {
            j = s;
            break;
        }
    }
    if (!j) {
        j = &e->slots[free_slot];
        if (!j->rcpts.ptr)
            e->nused++;
        j->domain = strdup(dom);
        if (!j->domain)
            return rq_fail(e->q, -ENOMEM, "out of memory");
        e->nopen++;
    }
    if (rq_esc_append(&j->rcpts, addr, (size_t)(at - addr)))
        return rq_fail(e->q, -ENOMEM, "out of memory");
    for (size_t f = 0; f < e->nfields; f++) {
        const char *v = values[f] ? values[f] : "";
        if (sv_buf_putc(&j->rcpts, '\t') || rq_esc_append(&j->rcpts, v, strlen(v)))
            return rq_fail(e->q, -ENOMEM, "out of memory");
    }
    if (sv_buf_putc(&j->rcpts, '\n'))
        return rq_fail(e->q, -ENOMEM, "out of memory");
    if (++j->n >= e->job_rcpts)
        return emit(e, j);
    return 0;
}

int rq_enq_end(struct rq_enq *e)
{
    int rc = emit_all(e);
    if (!rc)
        rc = flush_batch(e);
    if (!rc) {
        struct rq_args a = {0};
        redisReply *r = NULL;
        if (rq_args_str(&a, e->idstr) || rq_args_i64(&a, rq_now_ms()) ||
            rq_args_i64(&a, e->q->retention_ms))
            rc = rq_fail(e->q, -ENOMEM, "out of memory");
        else
            rc = rq_eval(e->q, RQS_ENQ_END, &a, &r);
        if (r)
            freeReplyObject(r);
        rq_args_free(&a);
    }
    rq_enq_free(e);
    return rc;
}

void rq_enq_free(struct rq_enq *e)
{
    if (!e)
        return;
    for (size_t i = 0; e->slots && i < OPEN_SLOTS; i++) {
        free(e->slots[i].domain);
        sv_buf_free(&e->slots[i].rcpts);
    }
    free(e->slots);
    rq_args_free(&e->batch);
    sv_buf_free(&e->tmp);
    free(e);
}
