/* Statistics and the operator's commands: list, show, retry, cancel. */
#include "rq_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const stat_fields[] = {"ready",   "scheduled", "inflight",   "delivered",
                                          "bounced", "dead",      "duplicates", "reclaimed"};

static int64_t int_of(const redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING)
        return atoll(r->str);
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    return 0;
}

static void fill_stats(struct rq_stats *st, redisReply *const *e)
{
    st->ready = int_of(e[0]);
    st->scheduled = int_of(e[1]);
    st->inflight = int_of(e[2]);
    st->delivered = int_of(e[3]);
    st->bounced = int_of(e[4]);
    st->dead = int_of(e[5]);
    st->duplicates = int_of(e[6]);
    st->reclaimed = int_of(e[7]);
}

int rq_stats_get(struct rq *q, uint64_t msg, struct rq_stats *st)
{
    memset(st, 0, sizeof(*st));
    char key[200];
    if (msg)
        snprintf(key, sizeof(key), "%smsg:%llu", q->prefix, (unsigned long long)msg);
    else
        snprintf(key, sizeof(key), "%sstats", q->prefix);
    const char *av[2 + SV_ARRAY_LEN(stat_fields)] = {"HMGET", key};
    size_t lv[2 + SV_ARRAY_LEN(stat_fields)] = {5, strlen(key)};
    size_t nf = SV_ARRAY_LEN(stat_fields);
    for (size_t i = 0; i < nf; i++) {
        av[2 + i] = stat_fields[i];
        lv[2 + i] = strlen(stat_fields[i]);
    }
    redisReply *r;
    int rc = rq_cmd(q, &r, "stats", (int)(2 + nf), av, lv);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != nf) {
        freeReplyObject(r);
        return rq_fail(q, -EPROTO, "stats: unexpected reply");
    }
    if (msg && r->element[0]->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return rq_fail(q, -ENOENT, "no message %llu", (unsigned long long)msg);
    }
    fill_stats(st, r->element);
    freeReplyObject(r);
    return 0;
}

void rq_msg_info_free(struct rq_msg_info *info)
{
    if (!info)
        return;
    free(info->from);
    free(info->campaign);
    memset(info, 0, sizeof(*info));
}

int rq_msg_info_get(struct rq *q, uint64_t id, struct rq_msg_info *info)
{
    memset(info, 0, sizeof(*info));
    char key[200];
    snprintf(key, sizeof(key), "%smsg:%llu", q->prefix, (unsigned long long)id);
    static const char *const f[] = {"from",    "name",      "created",    "total",
                                    "tpl",     "open",      "cancelled",  "done",
                                    "ready",   "scheduled", "inflight",   "delivered",
                                    "bounced", "dead",      "duplicates", "reclaimed"};
    size_t nf = SV_ARRAY_LEN(f);
    const char *av[2 + SV_ARRAY_LEN(f)] = {"HMGET", key};
    size_t lv[2 + SV_ARRAY_LEN(f)] = {5, strlen(key)};
    for (size_t i = 0; i < nf; i++) {
        av[2 + i] = f[i];
        lv[2 + i] = strlen(f[i]);
    }
    redisReply *r;
    int rc = rq_cmd(q, &r, "show", (int)(2 + nf), av, lv);
    if (rc)
        return rc;
    /* The body length separately: HSTRLEN does not copy the body. */
    const char *bv[3] = {"HSTRLEN", key, "body"};
    size_t bl[3] = {7, strlen(key), 4};
    redisReply *blen;
    rc = rq_cmd(q, &blen, "show", 3, bv, bl);
    if (rc) {
        freeReplyObject(r);
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != nf) {
        rc = rq_fail(q, -EPROTO, "show: unexpected reply");
    } else if (r->element[0]->type != REDIS_REPLY_STRING) {
        rc = rq_fail(q, -ENOENT, "no message %llu", (unsigned long long)id);
    } else {
        redisReply **e = r->element;
        info->id = id;
        info->from = strdup(e[0]->str);
        info->campaign = strdup(e[1]->type == REDIS_REPLY_STRING ? e[1]->str : "");
        info->created_ms = int_of(e[2]);
        info->total = int_of(e[3]);
        info->personalised = int_of(e[4]) == 1;
        info->open = int_of(e[5]) == 1;
        info->cancelled = int_of(e[6]) == 1;
        info->done = e[7]->type == REDIS_REPLY_STRING;
        fill_stats(&info->st, e + 8);
        info->body_len = (size_t)int_of(blen);
        if (!info->from || !info->campaign) {
            rq_msg_info_free(info);
            rc = rq_fail(q, -ENOMEM, "out of memory");
        }
    }
    freeReplyObject(r);
    freeReplyObject(blen);
    return rc;
}

int rq_msg_list(struct rq *q, size_t max, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    char key[200], stop[24];
    snprintf(key, sizeof(key), "%smsgs", q->prefix);
    snprintf(stop, sizeof(stop), "%zu", max ? max - 1 : 0);
    const char *av[5] = {"ZRANGE", key, "0", stop, "REV"};
    size_t lv[5] = {6, strlen(key), 1, strlen(stop), 3};
    redisReply *r;
    int rc = rq_cmd(q, &r, "list", 5, av, lv);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return rq_fail(q, -EPROTO, "list: unexpected reply");
    }
    if (r->elements && !(*ids = calloc(r->elements, sizeof(**ids)))) {
        freeReplyObject(r);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->elements; i++)
        (*ids)[i] = strtoull(r->element[i]->str, NULL, 10);
    *n = r->elements;
    freeReplyObject(r);
    return 0;
}

int rq_msg_lookup(struct rq *q, const char *s, uint64_t *id)
{
    bool digits = *s != 0;
    for (const char *p = s; *p; p++)
        digits = digits && isdigit((unsigned char)*p);
    char key[200];
    redisReply *r;
    int rc;
    if (digits && strlen(s) < 20) {
        snprintf(key, sizeof(key), "%smsg:%s", q->prefix, s);
        const char *av[2] = {"EXISTS", key};
        size_t lv[2] = {6, strlen(key)};
        if ((rc = rq_cmd(q, &r, "lookup", 2, av, lv)))
            return rc;
        bool found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (found) {
            *id = strtoull(s, NULL, 10);
            return 0;
        }
    }
    snprintf(key, sizeof(key), "%snames", q->prefix);
    const char *av[3] = {"HGET", key, s};
    size_t lv[3] = {4, strlen(key), strlen(s)};
    if ((rc = rq_cmd(q, &r, "lookup", 3, av, lv)))
        return rc;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return rq_fail(q, -ENOENT, "no message or campaign '%s'", s);
    }
    *id = strtoull(r->str, NULL, 10);
    freeReplyObject(r);
    /* The name outlives its message until a later finish sweeps it (retention). */
    snprintf(key, sizeof(key), "%smsg:%llu", q->prefix, (unsigned long long)*id);
    const char *ev[2] = {"EXISTS", key};
    size_t el[2] = {6, strlen(key)};
    if ((rc = rq_cmd(q, &r, "lookup", 2, ev, el)))
        return rc;
    bool found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return found ? 0 : rq_fail(q, -ENOENT, "no message or campaign '%s'", s);
}

int rq_msg_cancel(struct rq *q, uint64_t id, int64_t *n)
{
    struct rq_args a = {0};
    redisReply *r;
    if (rq_args_i64(&a, (int64_t)id) || rq_args_i64(&a, rq_now_ms()) ||
        rq_args_i64(&a, q->dead_max) || rq_args_i64(&a, q->retention_ms)) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    int rc = rq_eval(q, RQS_CANCEL, &a, &r);
    rq_args_free(&a);
    if (rc)
        return rc;
    int64_t v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (v < 0)
        return rq_fail(q, -ENOENT, "no message %llu", (unsigned long long)id);
    *n = v;
    return 0;
}

/* ZSCAN finds the message's retry jobs (members start with "<id>\t"); the MOVE
 * script removes each with ZREM before adding it to the stream, so a promoter
 * running at the same time cannot move the same job twice. */
int rq_msg_retry_now(struct rq *q, uint64_t id, int64_t *n)
{
    *n = 0;
    char key[200], match[40], cursor[32] = "0";
    snprintf(key, sizeof(key), "%sretry", q->prefix);
    snprintf(match, sizeof(match), "%llu\t*", (unsigned long long)id);
    do {
        const char *av[7] = {"ZSCAN", key, cursor, "MATCH", match, "COUNT", "1000"};
        size_t lv[7] = {5, strlen(key), strlen(cursor), 5, strlen(match), 5, 4};
        redisReply *r;
        int rc = rq_cmd(q, &r, "retry", 7, av, lv);
        if (rc)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            return rq_fail(q, -EPROTO, "retry: unexpected reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *m = r->element[1];
        struct rq_args a = {0};
        for (size_t i = 0; i + 1 < m->elements; i += 2) /* member, score */
            if (rq_args_add(&a, m->element[i]->str, m->element[i]->len)) {
                freeReplyObject(r);
                rq_args_free(&a);
                return rq_fail(q, -ENOMEM, "out of memory");
            }
        freeReplyObject(r);
        if (a.n) {
            redisReply *mv;
            rc = rq_eval(q, RQS_MOVE, &a, &mv);
            if (rc) {
                rq_args_free(&a);
                return rc;
            }
            *n += mv->type == REDIS_REPLY_INTEGER ? mv->integer : 0;
            freeReplyObject(mv);
        }
        rq_args_free(&a);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* One run of the revive script for the letters `ids` (may be none: the checks). */
static int revive_run(struct rq *q, const char *mid, const redisReply *const *ids, size_t nids,
                      int64_t *n)
{
    struct rq_args a = {0};
    int rc = rq_args_str(&a, mid);
    for (size_t i = 0; i < nids && !rc; i++)
        rc = rq_args_add(&a, ids[i]->str, ids[i]->len);
    if (rc) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "out of memory");
    }
    redisReply *r;
    rc = rq_eval(q, RQS_REVIVE, &a, &r);
    rq_args_free(&a);
    if (rc)
        return rc;
    int64_t v = r->type == REDIS_REPLY_INTEGER ? r->integer : -4;
    freeReplyObject(r);
    switch (v) {
    case -1: return rq_fail(q, -ENOENT, "no message %s", mid);
    case -2: return rq_fail(q, -ECANCELED, "message %s was cancelled", mid);
    case -3:
        return rq_fail(q, -ENODATA,
                       "message %s: its body was dropped when its last recipient became final; "
                       "enqueue it again",
                       mid);
    case -4: return rq_fail(q, -EPROTO, "revive: unexpected reply");
    default: *n += v; return 0;
    }
}

/* XRANGE pages of the dead-letter stream (capped, 100,000 by default); the
 * letters of the message go to the revive script, which re-checks each one. */
int rq_msg_revive_dead(struct rq *q, uint64_t id, int64_t *n)
{
    *n = 0;
    char key[200], mid[24], start[64] = "-";
    snprintf(key, sizeof(key), "%sdead", q->prefix);
    snprintf(mid, sizeof(mid), "%llu", (unsigned long long)id);
    int rc = revive_run(q, mid, NULL, 0, n); /* the message's checks, nothing moved */
    if (rc)
        return rc;
    for (;;) {
        const char *av[6] = {"XRANGE", key, start, "+", "COUNT", "1000"};
        size_t lv[6] = {6, strlen(key), strlen(start), 1, 5, 4};
        redisReply *r;
        rc = rq_cmd(q, &r, "revive", 6, av, lv);
        if (rc)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return rq_fail(q, -EPROTO, "revive: unexpected reply");
        }
        const redisReply **ids = calloc(r->elements ? r->elements : 1, sizeof(*ids));
        if (!ids) {
            freeReplyObject(r);
            return rq_fail(q, -ENOMEM, "out of memory");
        }
        size_t nids = 0;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            const redisReply *f = e->element[1];
            for (size_t k = 0; k + 1 < f->elements; k += 2)
                if (strcmp(f->element[k]->str, "m") == 0 &&
                    strcmp(f->element[k + 1]->str, mid) == 0)
                    ids[nids++] = e->element[0];
        }
        size_t got = r->elements;
        if (got)
            snprintf(start, sizeof(start), "(%s", r->element[got - 1]->element[0]->str);
        rc = nids ? revive_run(q, mid, ids, nids, n) : 0;
        free(ids);
        freeReplyObject(r);
        if (rc)
            return rc;
        if (got < 1000)
            return 0;
    }
}
