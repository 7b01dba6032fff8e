/* --fault SPEC parser. The grammar is documented in bench/README.md:
 *
 *   rcpt:PATTERN:CODE   mail:PATTERN:CODE   data:every:N:CODE
 *   disconnect:STAGE    stall:STAGE         delay:STAGE:MS      no-starttls
 *   greeting:CODE       no-pipelining       no-smtputf8         reset-idle
 *   hostile:multiline[:STAGE]  hostile:longline[:STAGE]  hostile:badcode[:STAGE]
 *
 * STAGE is greeting|ehlo|mail|rcpt|data|dot; CODE is 400..599. */
#include "sink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const stage_names[SINK_STAGE_COUNT] = {
    [SINK_STAGE_GREETING] = "greeting", [SINK_STAGE_EHLO] = "ehlo", [SINK_STAGE_MAIL] = "mail",
    [SINK_STAGE_RCPT] = "rcpt",         [SINK_STAGE_DATA] = "data", [SINK_STAGE_DOT] = "dot",
};

const char *sink_stage_name(enum sink_stage s)
{
    return (unsigned)s < SINK_STAGE_COUNT ? stage_names[s] : "?";
}

static int stage_parse(const char *s, uint32_t *bit)
{
    for (int i = 0; i < SINK_STAGE_COUNT; i++) {
        if (strcmp(s, stage_names[i]) == 0) {
            *bit = 1u << i;
            return 0;
        }
    }
    return -1;
}

/* Parses a decimal in [lo, hi]; the whole string must be digits. */
static int num_parse(const char *s, long lo, long hi, long *out)
{
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 9)
        return -1;
    long v = strtol(s, NULL, 10);
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -EINVAL;                                                                            \
    } while (0)

static int match_rule(struct sink_fault_match *rules, int *n, const char *spec, const char *rest,
                      char *err, size_t errlen)
{
    const char *colon = strrchr(rest, ':');
    long code;
    if (!colon || colon == rest)
        FAIL("bad --fault '%s': expected %.4s:PATTERN:CODE", spec, spec);
    if (num_parse(colon + 1, 400, 599, &code))
        FAIL("bad --fault '%s': CODE must be a number from 400 to 599", spec);
    if (*n >= SINK_FAULT_MAX_RULES)
        FAIL("bad --fault '%s': at most %d rules of this kind", spec, SINK_FAULT_MAX_RULES);
    char *pat = strndup(rest, (size_t)(colon - rest));
    if (!pat)
        FAIL("out of memory");
    rules[*n].pattern = pat;
    rules[*n].code = (int)code;
    (*n)++;
    return 0;
}

int sink_fault_parse(struct sink_faults *f, const char *spec, char *err, size_t errlen)
{
    if (strncmp(spec, "rcpt:", 5) == 0)
        return match_rule(f->rcpt, &f->n_rcpt, spec, spec + 5, err, errlen);
    if (strncmp(spec, "mail:", 5) == 0)
        return match_rule(f->mail, &f->n_mail, spec, spec + 5, err, errlen);
    if (strncmp(spec, "data:every:", 11) == 0) {
        char buf[64];
        long n, code;
        snprintf(buf, sizeof(buf), "%s", spec + 11);
        char *colon = strchr(buf, ':');
        if (!colon)
            FAIL("bad --fault '%s': expected data:every:N:CODE", spec);
        *colon = '\0';
        if (num_parse(buf, 1, 1000000000, &n))
            FAIL("bad --fault '%s': N must be a number >= 1", spec);
        if (num_parse(colon + 1, 400, 599, &code))
            FAIL("bad --fault '%s': CODE must be a number from 400 to 599", spec);
        f->data_every = (uint32_t)n;
        f->data_code = (int)code;
        return 0;
    }
    if (strncmp(spec, "delay:", 6) == 0) {
        char buf[64];
        long ms;
        uint32_t bit;
        snprintf(buf, sizeof(buf), "%s", spec + 6);
        char *colon = strchr(buf, ':');
        if (!colon)
            FAIL("bad --fault '%s': expected delay:STAGE:MS", spec);
        *colon = '\0';
        if (stage_parse(buf, &bit))
            FAIL("bad --fault '%s': STAGE must be greeting, ehlo, mail, rcpt, data or dot", spec);
        if (num_parse(colon + 1, 1, 600000, &ms))
            FAIL("bad --fault '%s': MS must be a number from 1 to 600000", spec);
        f->delay_ms[__builtin_ctz(bit)] = (uint32_t)ms;
        return 0;
    }
    if (strcmp(spec, "no-starttls") == 0) {
        f->no_starttls = true;
        return 0;
    }
    if (strcmp(spec, "no-pipelining") == 0) {
        f->no_pipelining = true;
        return 0;
    }
    if (strcmp(spec, "no-smtputf8") == 0) {
        f->no_smtputf8 = true;
        return 0;
    }
    if (strcmp(spec, "reset-idle") == 0) {
        f->reset_idle = true;
        return 0;
    }
    if (strncmp(spec, "greeting:", 9) == 0) {
        long code;
        if (num_parse(spec + 9, 400, 599, &code))
            FAIL("bad --fault '%s': CODE must be a number from 400 to 599", spec);
        f->greeting_code = (int)code;
        return 0;
    }
    uint32_t *mask = NULL;
    const char *stage = NULL;
    if (strncmp(spec, "disconnect:", 11) == 0) {
        mask = &f->disconnect;
        stage = spec + 11;
    } else if (strncmp(spec, "stall:", 6) == 0) {
        mask = &f->stall;
        stage = spec + 6;
    } else if (strncmp(spec, "hostile:", 8) == 0) {
        const char *kind = spec + 8;
        size_t klen = strcspn(kind, ":");
        if (klen == 9 && strncmp(kind, "multiline", 9) == 0)
            mask = &f->multiline;
        else if (klen == 8 && strncmp(kind, "longline", 8) == 0)
            mask = &f->longline;
        else if (klen == 7 && strncmp(kind, "badcode", 7) == 0)
            mask = &f->badcode;
        else
            FAIL("bad --fault '%s': hostile kinds are multiline, longline, badcode", spec);
        stage = kind[klen] == ':' ? kind + klen + 1 : "greeting";
    } else {
        FAIL("bad --fault '%s': unknown kind (rcpt, mail, data, disconnect, stall, delay, "
             "hostile, greeting, no-starttls, no-pipelining, no-smtputf8, reset-idle)",
             spec);
    }
    uint32_t bit;
    if (stage_parse(stage, &bit))
        FAIL("bad --fault '%s': STAGE must be greeting, ehlo, mail, rcpt, data or dot", spec);
    *mask |= bit;
    return 0;
}

void sink_faults_free(struct sink_faults *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_rcpt; i++)
        free(f->rcpt[i].pattern);
    for (int i = 0; i < f->n_mail; i++)
        free(f->mail[i].pattern);
    memset(f, 0, sizeof(*f));
}

int sink_fault_match(const struct sink_fault_match *rules, int n, const char *addr, size_t len)
{
    for (int i = 0; i < n; i++)
        if (memmem(addr, len, rules[i].pattern, strlen(rules[i].pattern)))
            return rules[i].code;
    return 0;
}
