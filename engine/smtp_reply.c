/* The SMTP reply parser: a byte-at-a-time line assembler in a fixed buffer, so
 * the result is the same however the input is split, and nothing a peer sends
 * can make it allocate more than SMTP_REPLY_LINES_MAX lines of text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "smtp.h"

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    memset(p, 0, sizeof(*p));
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
    if (!p)
        return;
    sv_buf_free(&p->r.text);
    memset(&p->r, 0, sizeof(p->r));
}

bool smtp_reply_partial(const struct smtp_reply_parser *p)
{
    return !p->complete && (p->linelen > 0 || p->r.nlines > 0);
}

/* Printable excerpt of a line for error messages. */
static void excerpt(char *dst, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < cap && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[o] = '\0';
}

static int fail(struct smtp_reply_parser *p, const char *what, const char *line, size_t len)
{
    char ex[48];
    excerpt(ex, sizeof(ex), line, len);
    snprintf(p->err, sizeof(p->err), "%s: \"%s\"", what, ex);
    p->failed = true;
    return -1;
}

/* RFC 3463: class "." subject "." detail, class matching the reply's first digit,
 * subject and detail 1-3 digits, then a space or the end. */
static void parse_esc(struct smtp_reply *r, const char *t, size_t len)
{
    if (len < 5 || t[0] != (char)('0' + r->code / 100) || t[1] != '.')
        return;
    size_t i = 2, n = 0;
    while (i < len && t[i] >= '0' && t[i] <= '9' && n < 4)
        i++, n++;
    if (n < 1 || n > 3 || i >= len || t[i] != '.')
        return;
    i++;
    n = 0;
    while (i < len && t[i] >= '0' && t[i] <= '9' && n < 4)
        i++, n++;
    if (n < 1 || n > 3 || (i < len && t[i] != ' '))
        return;
    memcpy(r->esc, t, i);
    r->esc[i] = '\0';
}

/* One whole line (CR LF stripped) of the reply in progress: 1 = last line,
 * 0 = more follow, -1 = malformed. */
static int take_line(struct smtp_reply_parser *p, const char *s, size_t len)
{
    struct smtp_reply *r = &p->r;
    if (len < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '5' || s[2] < '0' || s[2] > '9')
        return fail(p, "bad reply code (want 200-559)", s, len);
    if (len > 3 && s[3] != ' ' && s[3] != '-')
        return fail(p, "bad separator after the reply code", s, len);
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (r->nlines > 0 && code != r->code) {
        char what[96];
        snprintf(what, sizeof(what), "reply code changed from %d within a multi-line reply",
                 r->code);
        return fail(p, what, s, len);
    }
    if (r->nlines >= SMTP_REPLY_LINES_MAX) {
        snprintf(p->err, sizeof(p->err), "reply of more than %d lines", SMTP_REPLY_LINES_MAX);
        p->failed = true;
        return -1;
    }
    r->code = code;
    const char *t = len > 4 ? s + 4 : "";
    size_t tl = len > 4 ? len - 4 : 0;
    if (r->nlines == 0)
        parse_esc(r, t, tl);
    if ((r->nlines > 0 && sv_buf_putc(&r->text, '\n') < 0) ||
        sv_buf_reserve(&r->text, tl + 1) < 0) {
        snprintf(p->err, sizeof(p->err), "out of memory");
        p->failed = true;
        return -1;
    }
    /* Control bytes would corrupt log lines and events: shown as '?'. */
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)t[i];
        r->text.ptr[r->text.len++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
    }
    r->text.ptr[r->text.len] = '\0';
    r->nlines++;
    return len == 3 || s[3] == ' ' ? 1 : 0;
}

int smtp_reply_feed(struct smtp_reply_parser *p, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (p->failed)
        return -1;
    if (p->complete) {
        p->complete = false;
        p->r.code = 0;
        p->r.esc[0] = '\0';
        p->r.nlines = 0;
        sv_buf_reset(&p->r.text);
    }
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c != '\n') {
            /* Keep room for the LF: a line is at most SMTP_REPLY_LINE_MAX bytes. */
            if (p->linelen + 1 >= SMTP_REPLY_LINE_MAX) {
                *used = i + 1;
                snprintf(p->err, sizeof(p->err), "reply line longer than %d bytes",
                         SMTP_REPLY_LINE_MAX);
                p->failed = true;
                return -1;
            }
            p->line[p->linelen++] = c;
            continue;
        }
        size_t l = p->linelen;
        if (l > 0 && p->line[l - 1] == '\r')
            l--;
        p->linelen = 0;
        int rc = take_line(p, p->line, l);
        *used = i + 1;
        if (rc < 0)
            return -1;
        if (rc == 1) {
            p->complete = true;
            return 1;
        }
    }
    *used = len;
    return 0;
}

int smtp_reply_format(const struct smtp_reply *r, struct sv_buf *out)
{
    if (sv_buf_printf(out, "%d", r->code) < 0)
        return -ENOMEM;
    const char *t = r->text.ptr ? r->text.ptr : "";
    while (*t) {
        size_t n = strcspn(t, "\n");
        if (sv_buf_putc(out, ' ') < 0 || sv_buf_append(out, t, n) < 0)
            return -ENOMEM;
        t += n;
        if (*t == '\n')
            t++;
    }
    return 0;
}
