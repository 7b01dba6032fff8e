/* engine/conc: cluster-wide connection caps; see conc.h for the threads and
 * redisq/rq_limit.c for the slots in Redis.
 *
 * A slot is one allocation for the life of one connection. Where it is:
 *   want     worker -> inbox -> pending (queue thread, FIFO) until Redis grants it
 *   held     in c->held (renewed every lease/3) and in outbox / a worker's hands
 *   release  worker -> inbox -> rel (queue thread) -> ZREM -> freed
 * Only the queue thread frees slots, so the broker's lists always know them all. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "conc.h"
#include "run_int.h"

#define MAX_OPS      256 /* slot operations per round trip */
#define RETRY_MS     50  /* a full bucket is asked again this often */
#define LOCAL_SLOTS  256
#define MEMBER_BYTES 96
#define MAX_TAKES    64 /* rate buckets per rq_limit_take */

enum slot_state { SLOT_WANT, SLOT_HELD, SLOT_RELEASE };

struct eng_slot {
    struct eng_slot *next;          /* inbox, pending, rel, outbox */
    struct eng_slot *hprev, *hnext; /* c->held (queue thread) */
    struct eng_slot *wnext;         /* a worker's spares */
    const struct eng_limiter *lim;
    unsigned worker;
    enum slot_state state;
    bool lost; /* a renewal found it gone (warned once) */
    /* A rate limiter's request for tokens (not a slot): asked until granted. */
    bool tokens;
    int64_t want, got, valid_ms, retry_at;
    char member[MEMBER_BYTES];
    size_t key_len;
    char *key; /* "<id>:<value>[:<value>...]", in the same allocation, after the struct
                  (not a flexible array: c->held embeds a slot as its list head) */
};

struct eng_conc {
    struct eng_conc_opts o;
    pthread_mutex_t mu;
    struct eng_slot *inbox;             /* mu: wants and releases, newest first */
    struct eng_slot **outbox;           /* mu: grants per worker */
    struct eng_slot *pend, **pend_tail; /* queue thread from here on */
    struct eng_slot *rel;
    struct eng_slot *tpend, **tpend_tail; /* token requests not granted yet */
    struct eng_slot held;                 /* sentinel */
    bool fresh;                           /* wants arrived since the last round trip */
    int64_t t_retry, t_renew;
    bool failed; /* the last round trip failed: renew before anything is taken */
    uint64_t serial;
    char self[64];
    struct eng_slot **batch; /* step scratch */
    size_t batch_cap;
};

struct conc_bucket {
    struct conc_bucket *hnext;
    const struct eng_limiter *lim;
    int64_t tokens, valid_until; /* rate: granted and not spent, until (local ms) */
    bool tasked;                 /* rate: a token request is out */
    struct eng_slot *spare;      /* granted, used by no connection */
    size_t refs;                 /* jobs waiting on it */
    bool asked;                  /* a want is out */
    uint32_t hash;
    size_t key_len;
    char key[];
};

struct eng_conc_local {
    struct eng_conc *c;
    unsigned which;
    struct rule_program *match[ENG_LIMITERS_MAX]; /* clones: one thread per program */
    struct conc_bucket *tab[LOCAL_SLOTS];
};

/* --- queue thread ------------------------------------------------------------------ */

struct eng_conc *eng_conc_new(const struct eng_conc_opts *o)
{
    struct eng_conc *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->o = *o;
    c->outbox = calloc(o->nworkers ? o->nworkers : 1, sizeof(*c->outbox));
    if (!c->outbox) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->pend_tail = &c->pend;
    c->tpend_tail = &c->tpend;
    c->held.hnext = c->held.hprev = &c->held;
    /* Holder names unique in the cluster: host, pid and start time. */
    char host[40] = "host";
    gethostname(host, sizeof(host) - 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(c->self, sizeof(c->self), "%.39s:%ld:%" PRIx64, host, (long)getpid(),
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    return c;
}

static void held_unlink(struct eng_slot *s)
{
    s->hprev->hnext = s->hnext;
    s->hnext->hprev = s->hprev;
    s->hprev = s->hnext = NULL;
}

static int grow_batch(struct eng_conc *c, size_t n)
{
    if (n <= c->batch_cap)
        return 0;
    size_t cap = c->batch_cap ? c->batch_cap * 2 : 64;
    while (cap < n)
        cap *= 2;
    struct eng_slot **b = realloc(c->batch, cap * sizeof(*b));
    if (!b)
        return -ENOMEM;
    c->batch = b;
    c->batch_cap = cap;
    return 0;
}

/* Runs the operations for who[0..n) in rounds of MAX_OPS: the first nrel give their
 * slot back, the others take or renew it; res[i] gets each answer. (Not from
 * s->state: a worker may be changing it for a slot this thread renews.) */
static int run_ops(struct eng_conc *c, struct rq *q, struct eng_slot **who, size_t n, size_t nrel,
                   int *res)
{
    struct rq_conc_op ops[MAX_OPS];
    for (size_t base = 0; base < n; base += MAX_OPS) {
        size_t k = n - base < MAX_OPS ? n - base : MAX_OPS;
        for (size_t i = 0; i < k; i++) {
            const struct eng_slot *s = who[base + i];
            ops[i] = (struct rq_conc_op){
                .release = base + i < nrel,
                .key = s->key,
                .key_len = s->key_len,
                .member = s->member,
                .cap = s->lim->concurrency,
                .lease_ms = c->o.lease_ms,
            };
        }
        int rc = rq_conc_run(q, ops, k);
        if (rc)
            return rc;
        for (size_t i = 0; i < k; i++)
            res[base + i] = ops[i].result;
    }
    return 0;
}

static void to_worker(struct eng_conc *c, struct eng_slot *s)
{
    /* Once in the outbox, s belongs to the worker (which may free it at once): the
     * wake-up uses a copy. */
    unsigned worker = s->worker;
    pthread_mutex_lock(&c->mu);
    s->next = c->outbox[worker];
    c->outbox[worker] = s;
    pthread_mutex_unlock(&c->mu);
    c->o.wake_worker(c->o.arg, worker);
}

/* The workers' rates (limiters on mx / remote_ip): every token request that may be
 * asked again, MAX_TAKES buckets per round trip (rq_limit.c's GCRA, the same as
 * the queue thread's own rates). */
static int take_tokens(struct eng_conc *c, struct rq *q, int64_t now)
{
    struct rq_limit_req reqs[MAX_TAKES];
    struct eng_slot *who[MAX_TAKES];
    struct eng_slot **pp = &c->tpend;
    while (*pp) {
        size_t n = 0;
        for (struct eng_slot **qq = pp; *qq && n < MAX_TAKES; qq = &(*qq)->next) {
            struct eng_slot *s = *qq;
            if (s->retry_at > now)
                continue;
            int64_t batch, iv, tol;
            eng_limiter_params(s->lim, &batch, &iv, &tol);
            reqs[n] = (struct rq_limit_req){.key = s->key,
                                            .key_len = s->key_len,
                                            .interval_us = iv,
                                            .tolerance_us = tol,
                                            .want = s->want};
            who[n++] = s;
        }
        if (n == 0)
            break;
        int rc = rq_limit_take(q, reqs, n);
        if (rc)
            return rc;
        for (size_t i = 0; i < n; i++) {
            who[i]->retry_at = now + (reqs[i].retry_ms > 0 ? reqs[i].retry_ms : 1);
            who[i]->got = reqs[i].granted;
            who[i]->valid_ms = reqs[i].valid_ms > 0 ? reqs[i].valid_ms : 1;
        }
        /* Granted ones go to their workers; the others wait for retry_at. */
        size_t left = n;
        while (*pp && left) {
            struct eng_slot *s = *pp;
            bool asked = false;
            for (size_t i = 0; i < n && !asked; i++)
                asked = who[i] == s;
            if (!asked) {
                pp = &s->next;
                continue;
            }
            left--;
            if (s->got > 0) {
                *pp = s->next;
                to_worker(c, s);
            } else {
                pp = &s->next;
            }
        }
    }
    c->tpend_tail = &c->tpend;
    while (*c->tpend_tail)
        c->tpend_tail = &(*c->tpend_tail)->next;
    return 0;
}

int eng_conc_step(struct eng_conc *c, struct rq *q, int64_t now)
{
    pthread_mutex_lock(&c->mu);
    struct eng_slot *in = c->inbox;
    c->inbox = NULL;
    pthread_mutex_unlock(&c->mu);
    struct eng_slot *rev = NULL; /* oldest first */
    while (in) {
        struct eng_slot *s = in;
        in = s->next;
        s->next = rev;
        rev = s;
    }
    while (rev) {
        struct eng_slot *s = rev;
        rev = s->next;
        s->next = NULL;
        if (s->tokens) {
            *c->tpend_tail = s;
            c->tpend_tail = &s->next;
        } else if (s->state == SLOT_WANT) {
            *c->pend_tail = s;
            c->pend_tail = &s->next;
            c->fresh = true;
        } else {
            held_unlink(s);
            s->next = c->rel;
            c->rel = s;
        }
    }
    int rc = take_tokens(c, q, now);
    if (rc)
        return rc;
    bool ask = c->pend && (c->fresh || now >= c->t_retry);
    bool renew = c->held.hnext != &c->held && (now >= c->t_renew || c->failed);
    if (!c->rel && !ask && !renew)
        return 0;

    size_t n = 0, cap = 0;
    for (struct eng_slot *s = c->rel; s; s = s->next)
        cap++;
    if (ask)
        for (struct eng_slot *s = c->pend; s; s = s->next)
            cap++;
    if (renew)
        for (struct eng_slot *s = c->held.hnext; s != &c->held; s = s->hnext)
            cap++;
    int *res = NULL;
    if (grow_batch(c, cap) || !(res = malloc(cap * sizeof(*res)))) {
        sv_error("concurrency: out of memory; slots wait for the next step");
        return 0;
    }
    for (struct eng_slot *s = c->rel; s; s = s->next)
        c->batch[n++] = s;
    size_t nrel = n;
    /* Renewals before new takes: after an outage longer than the lease, the slots of
     * open connections are taken back first; the new ones get what is left. */
    if (renew)
        for (struct eng_slot *s = c->held.hnext; s != &c->held; s = s->hnext)
            c->batch[n++] = s;
    size_t nrenew = n - nrel;
    if (ask)
        for (struct eng_slot *s = c->pend; s; s = s->next)
            c->batch[n++] = s;
    size_t nask = n - nrel - nrenew, ask0 = nrel + nrenew;
    rc = run_ops(c, q, c->batch, n, nrel, res);
    if (rc) {
        free(res);
        c->failed = true;
        return rc; /* everything stays as it was: asked again after the reconnect */
    }
    c->failed = false;
    while (c->rel) {
        struct eng_slot *s = c->rel;
        c->rel = s->next;
        free(s);
    }
    bool woke[64] = {false};
    bool wake_all = false;
    if (ask) {
        c->fresh = false;
        c->t_retry = now + RETRY_MS;
        struct eng_slot **pp = &c->pend;
        for (size_t i = 0; i < nask; i++) {
            struct eng_slot *s = c->batch[ask0 + i];
            while (*pp != s)
                pp = &(*pp)->next;
            if (!res[ask0 + i]) {
                pp = &s->next;
                continue;
            }
            *pp = s->next;
            s->state = SLOT_HELD;
            s->hnext = &c->held;
            s->hprev = c->held.hprev;
            c->held.hprev->hnext = s;
            c->held.hprev = s;
            unsigned worker = s->worker; /* the worker's from here on */
            pthread_mutex_lock(&c->mu);
            s->next = c->outbox[worker];
            c->outbox[worker] = s;
            pthread_mutex_unlock(&c->mu);
            if (worker < 64)
                woke[worker] = true;
            else
                wake_all = true;
        }
        c->pend_tail = &c->pend;
        while (*c->pend_tail)
            c->pend_tail = &(*c->pend_tail)->next;
    }
    if (renew) {
        c->t_renew = now + (c->o.lease_ms / 3 > 50 ? c->o.lease_ms / 3 : 50);
        for (size_t i = nrel; i < nrel + nrenew; i++) {
            struct eng_slot *s = c->batch[i];
            if (!res[i] && !s->lost)
                sv_warn("concurrency '%s': slot of %s expired in Redis and its bucket is full; "
                        "the connection keeps it until it closes",
                        s->lim->id, s->key);
            s->lost = !res[i];
        }
    }
    free(res);
    for (unsigned w = 0; w < c->o.nworkers; w++)
        if (wake_all || (w < 64 && woke[w]))
            c->o.wake_worker(c->o.arg, w);
    return 0;
}

void eng_conc_free(struct eng_conc *c, struct rq *q)
{
    if (!c)
        return;
    /* Grants of tokens nobody took (the slots there are in c->held too). */
    for (unsigned w = 0; w < c->o.nworkers; w++)
        for (struct eng_slot *s = c->outbox[w], *next; s; s = next) {
            next = s->next;
            if (s->tokens)
                free(s);
        }
    /* The workers are gone: what they still held comes back as releases. */
    pthread_mutex_lock(&c->mu);
    struct eng_slot *in = c->inbox;
    c->inbox = NULL;
    pthread_mutex_unlock(&c->mu);
    while (in) {
        struct eng_slot *s = in;
        in = s->next;
        if (s->tokens || s->state == SLOT_WANT) {
            free(s);
            continue;
        }
        held_unlink(s);
        s->next = c->rel;
        c->rel = s;
    }
    while (c->held.hnext != &c->held) {
        struct eng_slot *s = c->held.hnext;
        held_unlink(s);
        s->state = SLOT_RELEASE;
        s->next = c->rel;
        c->rel = s;
    }
    while (c->pend) {
        struct eng_slot *s = c->pend;
        c->pend = s->next;
        free(s);
    }
    while (c->tpend) {
        struct eng_slot *s = c->tpend;
        c->tpend = s->next;
        free(s);
    }
    size_t n = 0;
    for (struct eng_slot *s = c->rel; s; s = s->next)
        n++;
    int *res = n ? malloc(n * sizeof(*res)) : NULL;
    if (q && res && grow_batch(c, n) == 0) {
        size_t i = 0;
        for (struct eng_slot *s = c->rel; s; s = s->next)
            c->batch[i++] = s;
        if (run_ops(c, q, c->batch, n, n, res))
            sv_warn(
                "concurrency: %zu slots not given back (%s); they free themselves after %lld ms", n,
                rq_error(q), (long long)c->o.lease_ms);
    }
    free(res);
    while (c->rel) {
        struct eng_slot *s = c->rel;
        c->rel = s->next;
        free(s);
    }
    free(c->batch);
    free(c->outbox);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* --- worker side ------------------------------------------------------------------- */

static void post(struct eng_conc *c, struct eng_slot *s)
{
    pthread_mutex_lock(&c->mu);
    s->next = c->inbox;
    c->inbox = s;
    pthread_mutex_unlock(&c->mu);
    c->o.wake_queue(c->o.arg);
}

struct eng_conc_local *eng_conc_local_new(struct eng_conc *c, unsigned which)
{
    if (!c)
        return NULL;
    struct eng_conc_local *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->c = c;
    l->which = which;
    const struct eng_conf *conf = c->o.conf;
    for (size_t i = 0; i < conf->n_limiters && i < ENG_LIMITERS_MAX; i++)
        if (conf->limiters[i].match &&
            (conf->limiters[i].concurrency || conf->limiters[i].at_connect) &&
            !(l->match[i] = rule_program_clone(conf->limiters[i].match))) {
            eng_conc_local_free(l);
            return NULL;
        }
    return l;
}

static struct conc_bucket *bucket_find(struct eng_conc_local *l, const char *key, size_t len,
                                       uint32_t h)
{
    for (struct conc_bucket *b = l->tab[h % LOCAL_SLOTS]; b; b = b->hnext)
        if (b->hash == h && b->key_len == len && memcmp(b->key, key, len) == 0)
            return b;
    return NULL;
}

static void give_back(struct eng_conc_local *l, struct eng_slot *s)
{
    s->state = SLOT_RELEASE;
    s->wnext = NULL;
    post(l->c, s);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void eng_conc_trim(struct eng_conc_local *l)
{
    if (!l)
        return;
    int64_t now = mono_ms();
    for (size_t i = 0; i < LOCAL_SLOTS; i++) {
        struct conc_bucket **pp = &l->tab[i];
        while (*pp) {
            struct conc_bucket *b = *pp;
            if (b->refs == 0)
                while (b->spare) {
                    struct eng_slot *s = b->spare;
                    b->spare = s->wnext;
                    give_back(l, s);
                }
            if (b->refs == 0 && !b->asked && !b->tasked &&
                (b->tokens == 0 || now > b->valid_until)) {
                *pp = b->hnext;
                free(b);
            } else {
                pp = &b->hnext;
            }
        }
    }
}

void eng_conc_local_free(struct eng_conc_local *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < LOCAL_SLOTS; i++)
        for (struct conc_bucket *b = l->tab[i]; b; b = b->hnext)
            b->refs = 0, b->asked = b->tasked = false, b->tokens = 0;
    eng_conc_trim(l); /* wants still out come back as grants: eng_conc_free gives them back */
    for (size_t i = 0; i < ENG_LIMITERS_MAX; i++)
        rule_program_free(l->match[i]);
    free(l);
}

void eng_conc_unwait(struct eng_conc_local *l, struct eng_conc_wait *w)
{
    if (!l)
        return;
    for (size_t i = 0; i < w->n; i++)
        w->bk[i]->refs--;
    bool any = w->n > 0;
    w->n = 0;
    if (any)
        eng_conc_trim(l);
}

/* The buckets of the limiters that apply to an attempt with `vars`: those with a
 * cap (rate = false) or a rate applied here (rate = true). Returns how many. */
static size_t buckets_for(struct eng_conc_local *l, const struct rule_vars *vars, bool rate,
                          struct conc_bucket **need)
{
    const struct eng_conf *conf = l->c->o.conf;
    size_t nneed = 0;
    for (size_t i = 0; i < conf->n_limiters && i < ENG_LIMITERS_MAX; i++) {
        const struct eng_limiter *lim = &conf->limiters[i];
        if (rate ? !(lim->rate && lim->at_connect) : !lim->concurrency)
            continue;
        if (l->match[i]) {
            struct rule_val rv;
            int rc = rule_eval(l->match[i], vars, &rv);
            if (rc)
                sv_warn("concurrency '%s': match failed (%s); the cap applies", lim->id,
                        rule_strerror(rc));
            else if (!rule_truthy(&rv))
                continue;
        }
        char key[512];
        size_t len = (size_t)snprintf(key, sizeof(key), "%s", lim->id);
        for (size_t k = 0; k < lim->nkeys && len < sizeof(key); k++) {
            const struct rule_val *v = &vars->v[lim->keys[k]];
            bool str = v->type == RULE_STR;
            len += (size_t)snprintf(key + len, sizeof(key) - len, ":%.*s", str ? (int)v->len : 0,
                                    str ? v->u.s : "");
        }
        if (len >= sizeof(key))
            len = sizeof(key) - 1;
        uint32_t h = sv_hash32(key, len);
        struct conc_bucket *b = bucket_find(l, key, len, h);
        if (!b) {
            b = calloc(1, sizeof(*b) + len + 1);
            if (!b) {
                sv_error("concurrency '%s': out of memory; not capped", lim->id);
                continue;
            }
            b->lim = lim;
            b->hash = h;
            b->key_len = len;
            memcpy(b->key, key, len);
            b->hnext = l->tab[h % LOCAL_SLOTS];
            l->tab[h % LOCAL_SLOTS] = b;
        }
        need[nneed++] = b;
    }
    return nneed;
}

static bool paid_has(const struct eng_conc_paid *p, uint64_t h)
{
    const uint64_t *v = p->h ? p->h : p->inl;
    for (size_t i = 0; i < p->n; i++)
        if (v[i] == h)
            return true;
    return false;
}

/* Without memory the bucket is not recorded: a later fallback pays it again (a
 * slower rate, never a faster one). */
static void paid_add(struct eng_conc_paid *p, uint64_t h)
{
    size_t cap = p->h ? p->cap : ENG_LIMITERS_MAX;
    if (p->n == cap) {
        uint64_t *n = realloc(p->h, 2 * cap * sizeof(*n));
        if (!n)
            return;
        if (!p->h)
            memcpy(n, p->inl, sizeof(p->inl));
        p->h = n;
        p->cap = 2 * cap;
    }
    (p->h ? p->h : p->inl)[p->n++] = h;
}

void eng_conc_paid_clear(struct eng_conc_paid *p)
{
    free(p->h);
    memset(p, 0, sizeof(*p));
}

bool eng_conc_pay(struct eng_conc_local *l, const struct rule_vars *vars, int64_t cost,
                  struct eng_conc_paid *paid, struct eng_conc_wait *w)
{
    if (!l)
        return true;
    struct conc_bucket *need[ENG_LIMITERS_MAX];
    uint64_t hash[ENG_LIMITERS_MAX];
    size_t nall = buckets_for(l, vars, true, need), nneed = 0;
    /* A bucket this chunk paid at an earlier address (the same MX host, or a limiter
     * keyed on neither mx nor remote_ip) is not paid again. */
    for (size_t i = 0; i < nall; i++) {
        /* a chunk tells its buckets apart by this alone (a collision, 2^-64
         * per pair, would leave one bucket unpaid for one chunk) */
        uint64_t h = sv_hash64(need[i]->key, need[i]->key_len);
        if (paid_has(paid, h))
            continue;
        hash[nneed] = h;
        need[nneed++] = need[i];
    }
    int64_t now = mono_ms();
    size_t short_of = 0;
    for (size_t i = 0; i < nneed; i++) {
        need[i]->refs++;
        if (need[i]->tokens && now > need[i]->valid_until)
            need[i]->tokens = 0; /* the slots they stood for are past */
        short_of += need[i]->tokens < cost;
    }
    for (size_t i = 0; i < w->n; i++)
        w->bk[i]->refs--;
    w->n = 0;
    if (short_of == 0) {
        for (size_t i = 0; i < nneed; i++) {
            need[i]->tokens -= cost;
            need[i]->refs--;
            paid_add(paid, hash[i]);
        }
        return true;
    }
    for (size_t i = 0; i < nneed; i++) {
        struct conc_bucket *b = need[i];
        w->bk[w->n++] = b;
        if (b->tokens >= cost || b->tasked)
            continue;
        struct eng_slot *s = calloc(1, sizeof(*s) + b->key_len + 1);
        if (!s) {
            sv_error("concurrency '%s': out of memory; the job waits", b->lim->id);
            continue;
        }
        s->key = (char *)(s + 1);
        int64_t batch, iv, tol;
        eng_limiter_params(b->lim, &batch, &iv, &tol);
        s->lim = b->lim;
        s->worker = l->which;
        s->tokens = true;
        s->want = cost - b->tokens > batch ? cost - b->tokens : batch;
        s->key_len = b->key_len;
        memcpy(s->key, b->key, b->key_len);
        b->tasked = true;
        post(l->c, s);
    }
    return false;
}

/* Caps are taken in the order of their keys ("id:value..."), which every process
 * of a cluster agrees on whatever the order of the limiters in its file: a rolling
 * change of that order cannot make two processes wait for each other. */
static void sort_by_key(struct conc_bucket **b, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct conc_bucket *x = b[i];
        size_t j = i;
        for (; j > 0; j--) {
            const struct conc_bucket *y = b[j - 1];
            size_t m = x->key_len < y->key_len ? x->key_len : y->key_len;
            int c = memcmp(y->key, x->key, m);
            if (c < 0 || (c == 0 && y->key_len <= x->key_len))
                break;
            b[j] = b[j - 1];
        }
        b[j] = x;
    }
}

bool eng_conc_take(struct eng_conc_local *l, const struct rule_vars *vars, struct eng_conc_wait *w,
                   struct eng_slot **out, size_t *n)
{
    *n = 0;
    if (!l)
        return true;
    struct conc_bucket *need[ENG_LIMITERS_MAX];
    size_t nneed = buckets_for(l, vars, false, need);
    sort_by_key(need, nneed);
    /* The new references first: dropping the old ones may not trim a spare this
     * job is about to take. */
    size_t short_of = 0;
    for (size_t i = 0; i < nneed; i++) {
        need[i]->refs++;
        short_of += need[i]->spare == NULL;
    }
    for (size_t i = 0; i < w->n; i++)
        w->bk[i]->refs--;
    w->n = 0;
    if (short_of == 0) {
        for (size_t i = 0; i < nneed; i++) {
            struct conc_bucket *b = need[i];
            struct eng_slot *s = b->spare;
            b->spare = s->wnext;
            s->wnext = NULL;
            b->refs--;
            out[(*n)++] = s;
        }
        return true;
    }
    /* In key order, up to the first bucket without a spare: the job keeps the
     * spares before it and neither keeps nor asks for the ones after. Two workers
     * (or processes) holding one slot each of two caps of one, each waiting for
     * the other's, would wait for ever; taken in one order, one of them has both. */
    size_t first = 0;
    while (need[first]->spare)
        first++;
    for (size_t i = first + 1; i < nneed; i++)
        need[i]->refs--;
    for (size_t i = 0; i <= first; i++) {
        struct conc_bucket *b = need[i];
        w->bk[w->n++] = b;
        if (b->spare || b->asked)
            continue;
        struct eng_slot *s = calloc(1, sizeof(*s) + b->key_len + 1);
        if (!s) {
            sv_error("concurrency '%s': out of memory; the job waits", b->lim->id);
            continue; /* asked again when a connection closes */
        }
        s->key = (char *)(s + 1);
        s->lim = b->lim;
        s->worker = l->which;
        s->state = SLOT_WANT;
        s->key_len = b->key_len;
        memcpy(s->key, b->key, b->key_len);
        snprintf(s->member, sizeof(s->member), "%s:%u:%p", l->c->self, l->which, (void *)s);
        b->asked = true;
        post(l->c, s);
    }
    return false;
}

bool eng_conc_waits_for(const struct eng_conc_wait *w, const struct eng_slot *s)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->bk[i]->key_len == s->key_len && memcmp(w->bk[i]->key, s->key, s->key_len) == 0)
            return true;
    return false;
}

void eng_conc_put(struct eng_conc_local *l, struct eng_slot **slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct eng_slot *s = slots[i];
        struct conc_bucket *b = bucket_find(l, s->key, s->key_len, sv_hash32(s->key, s->key_len));
        if (!b) {
            give_back(l, s);
            continue;
        }
        s->wnext = b->spare;
        b->spare = s;
    }
}

bool eng_conc_poll(struct eng_conc_local *l)
{
    if (!l)
        return false;
    struct eng_conc *c = l->c;
    pthread_mutex_lock(&c->mu);
    struct eng_slot *g = c->outbox[l->which];
    c->outbox[l->which] = NULL;
    pthread_mutex_unlock(&c->mu);
    bool any = g != NULL;
    while (g) {
        struct eng_slot *s = g;
        g = s->next;
        s->next = NULL;
        struct conc_bucket *b = bucket_find(l, s->key, s->key_len, sv_hash32(s->key, s->key_len));
        if (!b && s->tokens) {
            free(s); /* nobody waits for them any more */
            continue;
        }
        if (!b) {
            give_back(l, s);
            continue;
        }
        if (s->tokens) {
            int64_t now = mono_ms();
            if (b->tokens && now > b->valid_until)
                b->tokens = 0;
            b->tokens += s->got;
            if (now + s->valid_ms > b->valid_until)
                b->valid_until = now + s->valid_ms;
            b->tasked = false;
            free(s);
            continue;
        }
        b->asked = false;
        s->wnext = b->spare;
        b->spare = s;
    }
    return any;
}
