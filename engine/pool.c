/* Per-worker pools of open SMTP sessions (see deliver_int.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "deliver_int.h"

bool eng_pool_satisfies(const struct smtp_session *s, const struct smtp_policy *want)
{
    const struct smtp_policy *have = smtp_session_policy(s);
    bool cert_ok = want->allow_invalid || !have->allow_invalid;
    if (smtp_session_is_tls(s))
        return cert_ok;
    if (!smtp_session_settled(s)) {
        /* Still connecting: judge by the policy it was opened with, which decides
         * what it will become (require: TLS or nothing; optional: TLS when offered). */
        switch (have->starttls) {
        case RULE_TLS_REQUIRE: return cert_ok;
        case RULE_TLS_OPTIONAL: return want->starttls == RULE_TLS_OPTIONAL && cert_ok;
        case RULE_TLS_DISABLE: return want->starttls == RULE_TLS_DISABLE;
        default: abort();
        }
    }
    switch (want->starttls) {
    case RULE_TLS_REQUIRE: return false;
    case RULE_TLS_OPTIONAL: return !smtp_session_offered_starttls(s);
    case RULE_TLS_DISABLE: return true;
    default: abort();
    }
}

struct smtp_session *eng_pool_idle(struct eng_pool *p, const char *key,
                                   const struct smtp_policy *want)
{
    for (struct eng_pool_entry *e = p->head; e; e = e->next)
        if (strcmp(e->key, key) == 0 && smtp_session_usable(e->s) && !smtp_session_busy(e->s) &&
            eng_pool_satisfies(e->s, want))
            return e->s;
    return NULL;
}

struct smtp_session *eng_pool_busy(struct eng_pool *p, const char *key,
                                   const struct smtp_policy *want, unsigned max_msgs, unsigned need)
{
    for (struct eng_pool_entry *e = p->head; e; e = e->next)
        if (strcmp(e->key, key) == 0 && smtp_session_usable(e->s) &&
            smtp_session_transactions(e->s) + need <= max_msgs && eng_pool_satisfies(e->s, want))
            return e->s;
    return NULL;
}

const char *eng_pool_key(const struct eng_pool *p, const struct smtp_session *s)
{
    for (const struct eng_pool_entry *e = p->head; e; e = e->next)
        if (e->s == s)
            return e->key;
    return NULL;
}

bool eng_pool_all_connecting(const struct eng_pool *p, const char *key)
{
    size_t n = 0;
    for (const struct eng_pool_entry *e = p->head; e; e = e->next) {
        if (strcmp(e->key, key) != 0 || !smtp_session_usable(e->s))
            continue;
        if (smtp_session_settled(e->s))
            return false;
        n++;
    }
    return n > 0;
}

size_t eng_pool_count(const struct eng_pool *p, const char *key)
{
    size_t n = 0;
    for (const struct eng_pool_entry *e = p->head; e; e = e->next)
        n += strcmp(e->key, key) == 0 && smtp_session_usable(e->s);
    return n;
}

bool eng_pool_evict_idle(struct eng_pool *p, const char *key)
{
    for (struct eng_pool_entry *e = p->head; e; e = e->next)
        if (strcmp(e->key, key) == 0 && smtp_session_usable(e->s) && !smtp_session_busy(e->s)) {
            smtp_session_close(e->s, true, "evicted");
            return true;
        }
    return false;
}

int eng_pool_add(struct eng_pool *p, const char *key, struct smtp_session *s)
{
    struct eng_pool_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return -ENOMEM;
    }
    e->s = s;
    e->next = p->head;
    p->head = e;
    p->n++;
    return 0;
}

struct eng_pool_entry *eng_pool_entry_of(struct eng_pool *p, const struct smtp_session *s)
{
    for (struct eng_pool_entry *e = p->head; e; e = e->next)
        if (e->s == s)
            return e;
    return NULL;
}

void eng_pool_remove(struct eng_pool *p, struct smtp_session *s)
{
    for (struct eng_pool_entry **pp = &p->head; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            struct eng_pool_entry *e = *pp;
            *pp = e->next;
            free(e->key);
            free(e);
            p->n--;
            return;
        }
}

void eng_pool_close_all(struct eng_pool *p, bool graceful, const char *why)
{
    /* Closing may remove entries (closed callback): walk a snapshot of sessions. */
    size_t n = p->n, i = 0;
    struct smtp_session **v = n ? calloc(n, sizeof(*v)) : NULL;
    if (n && !v)
        return;
    for (struct eng_pool_entry *e = p->head; e && i < n; e = e->next)
        v[i++] = e->s;
    for (size_t k = 0; k < i; k++) {
        bool still = false;
        for (struct eng_pool_entry *e = p->head; e; e = e->next)
            still |= e->s == v[k];
        /* Graceful: busy sessions finish their transactions; the owner closes them
         * when they go idle. */
        if (still && !(graceful && smtp_session_busy(v[k])))
            smtp_session_close(v[k], graceful, why);
    }
    free(v);
}
