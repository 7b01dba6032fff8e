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
