/* SMTP command line parser (RFC 5321 4.1). Pure: no I/O, no allocation, so it can
 * be fuzzed (tests/fuzz/fuzz_sink_cmd.c). The line arrives without its CRLF. */
#include "sink.h"

#include <string.h>
#include <strings.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Case-insensitive prefix test on a length-bounded buffer. */
static bool has_prefix(const char *p, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    return len >= n && strncasecmp(p, pre, n) == 0;
}

static const struct {
    const char *name;
    enum sink_verb verb;
} verbs[] = {
    {"HELO", SINK_VERB_HELO}, {"EHLO", SINK_VERB_EHLO},         {"MAIL", SINK_VERB_MAIL},
    {"RCPT", SINK_VERB_RCPT}, {"DATA", SINK_VERB_DATA},         {"RSET", SINK_VERB_RSET},
    {"NOOP", SINK_VERB_NOOP}, {"QUIT", SINK_VERB_QUIT},         {"VRFY", SINK_VERB_VRFY},
    {"HELP", SINK_VERB_HELP}, {"STARTTLS", SINK_VERB_STARTTLS},
};

/* Reads a <path> at *pp (RFC 5321 4.1.2 Path / Reverse-path). Quoted local parts may
 * hold '>' and spaces; control characters are refused anywhere. On success out
 * points inside the brackets and *pp just past '>'. */
static int parse_path(const char **pp, const char *end, const char **out, size_t *out_len)
{
    const char *p = *pp;
    if (p >= end || *p != '<')
        return SINK_CMD_SYNTAX;
    p++;
    const char *start = p;
    bool quoted = false;
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            return SINK_CMD_SYNTAX;
        if (quoted) {
            if (c == '\\') {
                if (p + 1 >= end)
                    return SINK_CMD_SYNTAX;
                p++;
                if ((unsigned char)*p < 0x20)
                    return SINK_CMD_SYNTAX;
            } else if (c == '"') {
                quoted = false;
            }
            continue;
        }
        if (c == '"')
            quoted = true;
        else if (c == '>')
            break;
        else if (c == ' ' || c == '<')
            return SINK_CMD_SYNTAX;
    }
    if (p >= end)
        return SINK_CMD_SYNTAX;
    *out = start;
    *out_len = (size_t)(p - start);
    *pp = p + 1;
    return SINK_CMD_OK;
}

/* Parses "keyword[=value]" parameters separated by spaces (RFC 5321 4.1.2
 * Mail-parameters). `mail` selects the MAIL set; RCPT accepts its DSN parameters. */
static int parse_params(const char *p, const char *end, bool mail, struct sink_cmd *out)
{
    while (p < end) {
        while (p < end && is_space(*p))
            p++;
        if (p >= end)
            break;
        const char *kw = p;
        while (p < end && !is_space(*p) && *p != '=')
            p++;
        size_t kw_len = (size_t)(p - kw);
        const char *val = NULL;
        size_t val_len = 0;
        if (p < end && *p == '=') {
            val = ++p;
            while (p < end && !is_space(*p))
                p++;
            val_len = (size_t)(p - val);
        }
        if (kw_len == 0)
            return SINK_CMD_BADPARAM;
        for (size_t i = 0; i < val_len; i++)
            if ((unsigned char)val[i] < 0x21 || (unsigned char)val[i] == 0x7f)
                return SINK_CMD_BADPARAM;
#define KW(s) (kw_len == sizeof(s) - 1 && strncasecmp(kw, s, kw_len) == 0)
        if (mail && KW("SIZE")) {
            if (!val || val_len == 0 || val_len > 20)
                return val_len > 20 ? SINK_CMD_TOOLARGE : SINK_CMD_BADPARAM;
            uint64_t v = 0;
            for (size_t i = 0; i < val_len; i++) {
                if (val[i] < '0' || val[i] > '9')
                    return SINK_CMD_BADPARAM;
                uint64_t d = (uint64_t)(val[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                    return SINK_CMD_TOOLARGE;
                v = v * 10 + d;
            }
            out->size = v;
            out->has_size = true;
        } else if (mail && KW("BODY")) {
            if (val && val_len == 4 && strncasecmp(val, "7BIT", 4) == 0)
                out->body = SINK_BODY_7BIT;
            else if (val && val_len == 8 && strncasecmp(val, "8BITMIME", 8) == 0)
                out->body = SINK_BODY_8BITMIME;
            else
                return SINK_CMD_BADPARAM;
        } else if (mail && KW("SMTPUTF8")) {
            if (val) /* RFC 6531 3.4: SMTPUTF8 takes no value */
                return SINK_CMD_BADPARAM;
            out->smtputf8 = true;
        } else if (mail && (KW("RET") || KW("ENVID") || KW("AUTH"))) {
            if (!val || val_len == 0)
                return SINK_CMD_BADPARAM;
        } else if (!mail && (KW("NOTIFY") || KW("ORCPT"))) {
            if (!val || val_len == 0)
                return SINK_CMD_BADPARAM;
        } else {
            return SINK_CMD_BADPARAM;
        }
#undef KW
    }
    return SINK_CMD_OK;
}

/* "MAIL FROM:" / "RCPT TO:" followed by a path and parameters. Some clients put a
 * space after the colon; RFC 5321 does not allow it but every MTA accepts it. */
static int parse_mail_rcpt(const char *p, const char *end, bool mail, struct sink_cmd *out)
{
    const char *kw = mail ? "FROM:" : "TO:";
    if (!has_prefix(p, (size_t)(end - p), kw))
        return SINK_CMD_SYNTAX;
    p += strlen(kw);
    while (p < end && is_space(*p))
        p++;
    int rc = parse_path(&p, end, &out->path, &out->path_len);
    if (rc)
        return rc;
    if (!mail && out->path_len == 0)
        return SINK_CMD_SYNTAX; /* a null path is only a reverse-path */
    if (p < end && !is_space(*p))
        return SINK_CMD_SYNTAX;
    return parse_params(p, end, mail, out);
}

int sink_cmd_parse(const char *line, size_t len, struct sink_cmd *out)
{
    memset(out, 0, sizeof(*out));
    if (memchr(line, '\0', len))
        return SINK_CMD_SYNTAX;
    const char *end = line + len;
    /* Trailing spaces are common from hand-typed sessions and harmless. */
    while (end > line && is_space(end[-1]))
        end--;
    const char *p = line;
    while (p < end && !is_space(*p))
        p++;
    size_t vlen = (size_t)(p - line);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strlen(verbs[i].name) == vlen && strncasecmp(line, verbs[i].name, vlen) == 0) {
            out->verb = verbs[i].verb;
            break;
        }
    }
    if (out->verb == SINK_VERB_UNKNOWN)
        return SINK_CMD_UNKNOWN;
    const char *args = p;
    while (args < end && is_space(*args))
        args++;
    bool has_args = args < end;
    switch (out->verb) {
    case SINK_VERB_HELO:
    case SINK_VERB_EHLO:
        if (!has_args)
            return SINK_CMD_SYNTAX;
        out->arg = args;
        out->arg_len = (size_t)(end - args);
        return SINK_CMD_OK;
    case SINK_VERB_MAIL:
    case SINK_VERB_RCPT:
        /* The verb must be followed by exactly the keyword (one space). */
        if (p >= end || *p != ' ')
            return SINK_CMD_SYNTAX;
        return parse_mail_rcpt(p + 1, end, out->verb == SINK_VERB_MAIL, out);
    case SINK_VERB_DATA:
    case SINK_VERB_RSET:
    case SINK_VERB_QUIT:
    case SINK_VERB_STARTTLS: return has_args ? SINK_CMD_SYNTAX : SINK_CMD_OK;
    case SINK_VERB_NOOP:
    case SINK_VERB_VRFY:
    case SINK_VERB_HELP:
        if (out->verb == SINK_VERB_VRFY && !has_args)
            return SINK_CMD_SYNTAX;
        out->arg = has_args ? args : NULL;
        out->arg_len = has_args ? (size_t)(end - args) : 0;
        return SINK_CMD_OK;
    case SINK_VERB_UNKNOWN: break;
    }
    return SINK_CMD_UNKNOWN;
}
