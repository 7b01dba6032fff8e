/* engine/runner_limit: cluster-wide rate limits ([[queue.limiter.outbound]]),
 * enforced by the queue thread before a job reaches a worker.
 *
 * Each enabled limiter whose `match` fits a job puts it in one bucket per distinct
 * key value ("per-domain:example.org"). A held job waits, in claim order, until
 * each of its buckets has tokens for it; tokens come from Redis in batches
 * (rq_limit_take: one round trip for every bucket short of tokens, at most one per
 * step) and are spent here. A held job stays claimed: the runner's lease renewal
 * covers it, a graceful stop hands it back unstarted, and it is never dropped.
 *
 * Cost: one token per recipient, i.e. per message as the receiver counts them. A
 * job carries the recipients of one domain (one transaction for a plain message,
 * one per recipient for a personalised one); either way k recipients cost k. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "run_int.h"
#include "salvo_sched.h"

#define MAX_REQS     64     /* buckets asked for in one round trip */
#define SWEEP_MS     1000   /* idle buckets are forgotten at most this often */
#define JITTER_US    100000 /* slots a late wake-up may still use (see tolerance) */
#define BUCKET_SLOTS 1024

struct lim_bucket {
    struct lim_bucket *hnext;
    const struct eng_limiter *lim;
    int64_t tokens;      /* granted and not spent */
    int64_t valid_until; /* local ms: unspent tokens are dropped after this */
    int64_t retry_at;    /* local ms: no request before this */
    int64_t demand;      /* step scratch: tokens the jobs waiting on it want */
    int64_t head_cost;   /* step scratch: what the first job waiting on it costs */
    bool blocked;        /* step scratch: an earlier job waits on it */
    size_t refs;         /* held tasks that wait on it */
    uint32_t hash;
    size_t key_len;
    char key[]; /* "<id>:<value>[:<value>...]" */
};

struct eng_limits {
    const struct eng_conf *conf;
    struct lim_bucket *tab[BUCKET_SLOTS];
    size_t nbuckets;
    struct eng_task *head, *tail; /* held, in claim order */
    size_t nheld;
    int64_t t_sweep;
    int64_t wake; /* the last step's *wake_ms; INT64_MAX: none */
    bool dirty;   /* jobs were held since the last step */
    struct rule_vars vars;
};

struct eng_limits *eng_limits_new(const struct eng_conf *conf)
{
    struct eng_limits *l = calloc(1, sizeof(*l));
    if (l)
        l->conf = conf;
    return l;
}

void eng_limits_free(struct eng_limits *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < BUCKET_SLOTS; i++)
        while (l->tab[i]) {
            struct lim_bucket *b = l->tab[i];
            l->tab[i] = b->hnext;
            free(b);
        }
    free(l);
}

size_t eng_limits_held(const struct eng_limits *l)
{
    return l ? l->nheld : 0;
}

static struct lim_bucket *bucket_get(struct eng_limits *l, const struct eng_limiter *lim,
                                     const char *key, size_t len)
{
    uint32_t h = sv_hash32(key, len);
    struct lim_bucket **slot = &l->tab[h % BUCKET_SLOTS];
    for (struct lim_bucket *b = *slot; b; b = b->hnext)
        if (b->hash == h && b->key_len == len && memcmp(b->key, key, len) == 0)
            return b;
    struct lim_bucket *b = calloc(1, sizeof(*b) + len + 1);
    if (!b)
        return NULL;
    b->lim = lim;
    b->hash = h;
    b->key_len = len;
    memcpy(b->key, key, len);
    b->hnext = *slot;
    *slot = b;
    l->nbuckets++;
    return b;
}

/* The variables a limiter may use (conf.c's LIMIT_MATCH_VARS), as deliver.c sets them. */
static void job_vars(struct eng_limits *l, const struct rq_job *job, int64_t now)
{
    struct rule_vars *v = &l->vars;
    rule_vars_init(v);
    const char *from = rq_body_from(job->body);
    const char *at = strrchr(rq_body_from_ascii(job->body), '@'); /* IDN: A-labels */
    rule_vars_set_str(v, RULE_VAR_SENDER, from);
    rule_vars_set_str(v, RULE_VAR_SENDER_DOMAIN, at ? at + 1 : "");
    rule_vars_set_str(v, RULE_VAR_RCPT, job->nrcpt ? job->rcpt[0].addr : "");
    rule_vars_set_str(v, RULE_VAR_RCPT_DOMAIN, job->domain);
    rule_vars_set_int(v, RULE_VAR_RETRY_NUM, job->retry_num);
    rule_vars_set_str(v, RULE_VAR_LAST_ERROR,
                      job->last_error && *job->last_error ? job->last_error : "none");
    rule_vars_set_str(v, RULE_VAR_QUEUE_NAME,
                      l->conf->queue_name ? l->conf->queue_name : "default");
    rule_vars_set_int(v, RULE_VAR_QUEUE_AGE, (now - rq_body_created_ms(job->body)) / 1000);
    size_t blen = 0;
    rq_body_data(job->body, &blen);
    rule_vars_set_int(v, RULE_VAR_SIZE, (int64_t)blen);
}

bool eng_limits_hold(struct eng_limits *l, struct eng_task *t, int64_t now)
{
    const struct eng_conf *c = l->conf;
    t->nbk = 0;
    t->cost = t->job->nrcpt ? (uint32_t)t->job->nrcpt : 1;
    job_vars(l, t->job, now);
    for (size_t i = 0; i < c->n_limiters; i++) {
        const struct eng_limiter *lim = &c->limiters[i];
        if (lim->rate == 0 || lim->at_connect)
            continue; /* applied by the worker (conc.c) */
        if (lim->match) {
            struct rule_val out;
            int rc = rule_eval(lim->match, &l->vars, &out);
            if (rc)
                sv_warn("job %s: limiter '%s': match failed (%s); the limit applies", t->job->sid,
                        lim->id, rule_strerror(rc));
            else if (!rule_truthy(&out))
                continue;
        }
        char key[1024];
        size_t n = (size_t)snprintf(key, sizeof(key), "%s", lim->id);
        for (size_t k = 0; k < lim->nkeys && n < sizeof(key); k++) {
            const struct rule_val *v = &l->vars.v[lim->keys[k]];
            n += (size_t)snprintf(key + n, sizeof(key) - n, ":%.*s", (int)v->len, v->u.s);
        }
        if (n >= sizeof(key))
            n = sizeof(key) - 1;
        struct lim_bucket *b = bucket_get(l, lim, key, n);
        if (!b) {
            /* Holding it without a bucket would hold it forever; the lease brings it
             * back if this process cannot even allocate. */
            sv_error("job %s: out of memory for limiter '%s'; not limited", t->job->sid, lim->id);
            continue;
        }
        t->bk[t->nbk++] = b;
    }
    if (t->nbk == 0)
        return false;
    for (size_t i = 0; i < t->nbk; i++)
        t->bk[i]->refs++;
    t->hnext = NULL;
    if (l->tail)
        l->tail->hnext = t;
    else
        l->head = t;
    l->tail = t;
    l->nheld++;
    l->dirty = true;
    return true;
}

/* Tokens one grant buys at most (unless a job costs more: a job's tokens come in
 * one grant), the slot interval, and how far ahead of now the bucket may run: a
 * batch, and at least JITTER_US, so that a wake-up a tick late loses no slots
 * (which would bring the rate under the limit). */
void eng_limiter_params(const struct eng_limiter *lim, int64_t *batch, int64_t *interval_us,
                        int64_t *tolerance_us)
{
    *batch = lim->rate / 20 > 1 ? lim->rate / 20 : 1;
    *interval_us = lim->period_ms * 1000 / lim->rate;
    if (*interval_us < 1)
        *interval_us = 1;
    int64_t tol = *batch * *interval_us, jitter = JITTER_US;
    if (jitter > lim->period_ms * 1000)
        jitter = lim->period_ms * 1000;
    *tolerance_us = tol > jitter ? tol : jitter;
}

/* One pass over the held jobs in order: a job whose buckets all have tokens for
 * it goes; one that waits blocks its short buckets for the jobs behind it (no
 * overtaking within a bucket) and adds to their demand. */
static void pass(struct eng_limits *l, int64_t now, void (*release)(void *, struct eng_task *),
                 void *arg)
{
    for (struct eng_task *t = l->head; t; t = t->hnext)
        for (size_t i = 0; i < t->nbk; i++) {
            struct lim_bucket *b = t->bk[i];
            b->blocked = false;
            b->demand = 0;
            if (b->tokens && now > b->valid_until)
                b->tokens = 0; /* the slots it stood for are past */
        }
    struct eng_task **pp = &l->head, *prev = NULL;
    while (*pp) {
        struct eng_task *t = *pp;
        bool ok = true;
        for (size_t i = 0; i < t->nbk; i++)
            if (t->bk[i]->blocked || t->bk[i]->tokens < t->cost)
                ok = false;
        if (!ok) {
            for (size_t i = 0; i < t->nbk; i++) {
                struct lim_bucket *b = t->bk[i];
                if (b->blocked || b->tokens < t->cost) {
                    if (!b->blocked)
                        b->head_cost = t->cost;
                    b->blocked = true;
                    b->demand += t->cost;
                }
            }
            prev = t;
            pp = &t->hnext;
            continue;
        }
        for (size_t i = 0; i < t->nbk; i++) {
            t->bk[i]->tokens -= t->cost;
            t->bk[i]->refs--;
        }
        *pp = t->hnext;
        if (l->tail == t)
            l->tail = prev;
        l->nheld--;
        t->hnext = NULL;
        release(arg, t);
    }
}

/* Forgets buckets no job waits on whose tokens are spent or stale. */
static void sweep(struct eng_limits *l, int64_t now)
{
    for (size_t i = 0; i < BUCKET_SLOTS; i++) {
        struct lim_bucket **pp = &l->tab[i];
        while (*pp) {
            struct lim_bucket *b = *pp;
            if (b->refs == 0 && (b->tokens == 0 || now > b->valid_until) && now >= b->retry_at) {
                *pp = b->hnext;
                free(b);
                l->nbuckets--;
            } else {
                pp = &b->hnext;
            }
        }
    }
}

int eng_limits_step(struct eng_limits *l, struct rq *q, int64_t (*clock)(void),
                    void (*release)(void *, struct eng_task *), void *arg, int64_t *wake)
{
    *wake = -1;
    int64_t now = clock();
    if (now >= l->t_sweep) {
        l->t_sweep = now + SWEEP_MS;
        sweep(l, now);
    }
    /* Nothing to do until a job comes or a bucket may be asked again: the
     * runner steps on every outcome, far more often than that. */
    if (!l->head || (!l->dirty && now < l->wake)) {
        *wake = l->head && l->wake != INT64_MAX ? l->wake : -1;
        return 0;
    }
    l->dirty = false;
    pass(l, now, release, arg);

    struct rq_limit_req reqs[MAX_REQS];
    struct lim_bucket *who[MAX_REQS];
    size_t n = 0;
    for (struct eng_task *t = l->head; t && n < MAX_REQS; t = t->hnext)
        for (size_t i = 0; i < t->nbk && n < MAX_REQS; i++) {
            struct lim_bucket *b = t->bk[i];
            if (b->demand <= b->tokens || now < b->retry_at)
                continue;
            int64_t batch, iv, tol;
            eng_limiter_params(b->lim, &batch, &iv, &tol);
            int64_t want = b->demand - b->tokens,
                    most = batch > b->head_cost ? batch : b->head_cost;
            reqs[n] = (struct rq_limit_req){
                .key = b->key,
                .key_len = b->key_len,
                .interval_us = iv,
                .tolerance_us = tol,
                .want = want < most ? want : most,
            };
            who[n++] = b;
            b->retry_at = INT64_MAX; /* asked once per step */
        }
    int rc = 0;
    if (n) {
        rc = rq_limit_take(q, reqs, n);
        int64_t at = clock();
        for (size_t i = 0; i < n; i++) {
            struct lim_bucket *b = who[i];
            if (rc) {
                b->retry_at = 0; /* ask again once Redis is back */
                continue;
            }
            if (reqs[i].granted > 0) {
                if (now > b->valid_until)
                    b->tokens = 0;
                b->tokens += reqs[i].granted;
                int64_t until = at + (reqs[i].valid_ms > 0 ? reqs[i].valid_ms : 1);
                if (until > b->valid_until)
                    b->valid_until = until;
            }
            b->retry_at = at + reqs[i].retry_ms;
        }
        if (rc == 0)
            pass(l, at, release, arg);
        now = at;
    }
    /* Wake when the first bucket short of tokens may be asked again (only those:
     * a bucket with enough tokens for its jobs has nothing to ask for). */
    for (struct eng_task *t = l->head; t; t = t->hnext)
        for (size_t i = 0; i < t->nbk; i++) {
            const struct lim_bucket *b = t->bk[i];
            if (b->demand <= b->tokens || b->retry_at == INT64_MAX)
                continue;
            int64_t w = b->retry_at > now ? b->retry_at : now;
            if (*wake < 0 || w < *wake)
                *wake = w;
        }
    l->wake = rc ? 0 : *wake >= 0 ? *wake : INT64_MAX;
    return rc;
}

void eng_limits_drop(struct eng_limits *l, void (*drop)(void *, struct eng_task *), void *arg)
{
    if (!l)
        return;
    while (l->head) {
        struct eng_task *t = l->head;
        l->head = t->hnext;
        for (size_t i = 0; i < t->nbk; i++)
            t->bk[i]->refs--;
        l->nheld--;
        t->hnext = NULL;
        drop(arg, t);
    }
    l->tail = NULL;
}
