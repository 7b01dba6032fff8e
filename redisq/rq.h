/* redisq: everything about Redis (keys, Lua scripts, claim/ack/retry, enqueue,
 * statistics). Nothing else includes hiredis. */
#ifndef SALVO_RQ_H
#define SALVO_RQ_H

/* Validates a redis.url value; returns 0, or -1 with a reason in `why`. */
int rq_url_check(const char *url, const char **why);

#endif
