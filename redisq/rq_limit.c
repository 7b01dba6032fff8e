/* Cluster-wide rate limits: a GCRA ("generic cell rate algorithm", a token bucket
 * kept as one timestamp) per (queue, limiter, key value), shared by every salvo
 * process through one Lua script on the Redis clock.
 *
 * The key salvo:{queue}:limit:<id>:<value> holds the bucket's TAT (theoretical
 * arrival time, microseconds): the end of the last slot handed out. A limiter of N
 * per period has one slot per interval T = period / N. A request for k tokens is
 * granted whole, as the next k slots, when the bucket is not more than the
 * tolerance ahead of now (TAT - now <= tolerance); otherwise it gets nothing and
 * the time to ask again. So however many processes ask and however they
 * interleave, the tokens granted over any stretch of time L are at most
 * L/T + tolerance/T + k: the rate holds, with bursts of one grant.
 *
 * A grant is valid until the end of its slots (`valid_ms`): a process that kept
 * tokens longer would spend slots that belong to the past. The key expires one
 * second after its TAT: an idle bucket is then full again, same as missing. */
#include "rq_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
/* ARGV: groups of (key suffix, interval us, tolerance us, want) ->
 * {granted, valid ms, retry ms} per group. */
const char rq_limit_lua[] =
    "local P = KEYS[1]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local out = {}\n"
    "for i = 1, #ARGV, 4 do\n"
    "  local k = P .. 'limit:' .. ARGV[i]\n"
    "  local T = math.max(1, tonumber(ARGV[i + 1]) or 1)\n"
    "  local tol = math.max(0, tonumber(ARGV[i + 2]) or 0)\n"
    "  local want = math.max(1, tonumber(ARGV[i + 3]) or 1)\n"
    "  local tat = tonumber(redis.call('GET', k) or '0') or 0\n"
    "  if tat < now then tat = now end\n"
    "  local g = 0\n"
    "  if tat - now <= tol then\n"
    "    g = want\n"
    "    tat = tat + g * T\n"
    "    redis.call('SET', k, string.format('%d', tat), 'PX',\n"
    "      math.floor((tat - now) / 1000) + 1000)\n"
    "  end\n"
    "  out[#out + 1] = g\n"
    "  out[#out + 1] = math.ceil((tat - now) / 1000)\n"
    "  out[#out + 1] = math.max(0, math.ceil((tat - tol - now) / 1000))\n"
    "end\n"
    "return out\n";
/* clang-format on */

int rq_limit_take(struct rq *q, struct rq_limit_req *reqs, size_t n)
{
    if (n == 0)
        return 0;
    struct rq_args a = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct rq_limit_req *r = &reqs[i];
        if (!r->key || r->interval_us < 1 || r->tolerance_us < 0 || r->want < 1) {
            rq_args_free(&a);
            return rq_fail(q, -EINVAL, "limit: bad request for '%s'", r->key ? r->key : "?");
        }
        rc = rq_args_add(&a, r->key, r->key_len) || rq_args_i64(&a, r->interval_us) ||
             rq_args_i64(&a, r->tolerance_us) || rq_args_i64(&a, r->want);
    }
    if (rc) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "limit: out of memory");
    }
    redisReply *rep = NULL;
    rc = rq_eval(q, RQS_LIMIT, &a, &rep);
    rq_args_free(&a);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 * n) {
        freeReplyObject(rep);
        return rq_fail(q, -EPROTO, "limit: unexpected reply");
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *const *e = &rep->element[3 * i];
        if (e[0]->type != REDIS_REPLY_INTEGER || e[1]->type != REDIS_REPLY_INTEGER ||
            e[2]->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(rep);
            return rq_fail(q, -EPROTO, "limit: unexpected reply");
        }
        reqs[i].granted = e[0]->integer;
        reqs[i].valid_ms = e[1]->integer;
        reqs[i].retry_ms = e[2]->integer;
    }
    freeReplyObject(rep);
    return 0;
}

/* Cluster-wide concurrency caps: one sorted set per (queue, limiter, key value),
 * salvo:{queue}:conc:<id>:<value>, member = the holder ("<process>:<worker>:<n>"),
 * score = the lease's end in ms on the Redis clock. A take first drops expired
 * members (holders that died without giving back), then adds the holder when it
 * is already there (a renewal) or the set has fewer than `cap` members. The key
 * lives as long as its longest lease, so an abandoned bucket disappears. */

/* clang-format off */
/* ARGV: groups of (op 't' take/renew | 'r' release, key suffix, member, cap, lease ms)
 * -> one 1/0 per group. */
const char rq_conc_lua[] =
    "local P = KEYS[1]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local out = {}\n"
    "for i = 1, #ARGV, 5 do\n"
    "  local k = P .. 'conc:' .. ARGV[i + 1]\n"
    "  local m = ARGV[i + 2]\n"
    "  if ARGV[i] == 'r' then\n"
    "    out[#out + 1] = redis.call('ZREM', k, m)\n"
    "  else\n"
    "    local cap = tonumber(ARGV[i + 3]) or 1\n"
    "    local lease = math.max(1, tonumber(ARGV[i + 4]) or 1)\n"
    "    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)\n"
    "    local g = 0\n"
    "    if redis.call('ZSCORE', k, m) or redis.call('ZCARD', k) < cap then\n"
    "      redis.call('ZADD', k, now + lease, m)\n"
    "      if redis.call('PTTL', k) < lease then redis.call('PEXPIRE', k, lease) end\n"
    "      g = 1\n"
    "    end\n"
    "    out[#out + 1] = g\n"
    "  end\n"
    "end\n"
    "return out\n";
/* clang-format on */

int rq_conc_run(struct rq *q, struct rq_conc_op *ops, size_t n)
{
    if (n == 0)
        return 0;
    struct rq_args a = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct rq_conc_op *o = &ops[i];
        if (!o->key || !o->member || (!o->release && (o->cap < 1 || o->lease_ms < 1))) {
            rq_args_free(&a);
            return rq_fail(q, -EINVAL, "concurrency: bad request for '%s'", o->key ? o->key : "?");
        }
        rc = rq_args_add(&a, o->release ? "r" : "t", 1) || rq_args_add(&a, o->key, o->key_len) ||
             rq_args_add(&a, o->member, strlen(o->member)) || rq_args_i64(&a, o->cap) ||
             rq_args_i64(&a, o->lease_ms);
    }
    if (rc) {
        rq_args_free(&a);
        return rq_fail(q, -ENOMEM, "concurrency: out of memory");
    }
    redisReply *rep = NULL;
    rc = rq_eval(q, RQS_CONC, &a, &rep);
    rq_args_free(&a);
    if (rc)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n) {
        freeReplyObject(rep);
        return rq_fail(q, -EPROTO, "concurrency: unexpected reply");
    }
    for (size_t i = 0; i < n; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(rep);
            return rq_fail(q, -EPROTO, "concurrency: unexpected reply");
        }
        ops[i].result = rep->element[i]->integer != 0;
    }
    freeReplyObject(rep);
    return 0;
}
