/* DATA stream scanner (RFC 5321 4.1.1.4 and 4.5.2).
 *
 * The message ends at CRLF "." CRLF; the first CRLF may be the one that ended the
 * DATA command, so the scanner starts "at the start of a line". A line that starts
 * with "." has that dot removed (transparency). Only CRLF ends a line: a bare LF or
 * CR is message content, as in Postfix with smtpd_forbid_bare_newline unset, which
 * keeps the terminator unambiguous.
 *
 *   LS --'.'--> DOT --CR--> DOTCR --LF--> end
 *   LS --CR--> CR,  LS --x--> MID,  MID --CR--> CR,  CR --LF--> LS
 *   DOT --x--> MID (dot removed),  DOTCR --x--> CR/MID (dot removed, CR is content)
 *
 * While in the header section we copy each unstuffed line into d->hdr to find
 * Message-ID (folded continuation lines included); after it, a memchr() for CR skips
 * the body at memory speed. */
#include "sink.h"

#include <string.h>
#include <strings.h>

enum { ST_LS, ST_DOT, ST_DOTCR, ST_MID, ST_CR };

void sink_data_begin(struct sink_data *d)
{
    d->state = ST_LS;
    d->consumed = 0;
    d->dots_removed = 0;
    d->in_headers = true;
    d->hdr_is_msgid = false;
    d->have_msgid = false;
    d->hdr_len = 0;
    d->msgid_len = 0;
}

static void hdr_put(struct sink_data *d, char c)
{
    if (d->in_headers && d->hdr_len < sizeof(d->hdr))
        d->hdr[d->hdr_len++] = c;
}

/* Appends the header value [p, end) to the Message-ID with surrounding white space
 * trimmed (a folded value continues on the next line). */
static void msgid_append(struct sink_data *d, const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t n = (size_t)(end - p);
    if (n > sizeof(d->msgid) - d->msgid_len)
        n = sizeof(d->msgid) - d->msgid_len;
    memcpy(d->msgid + d->msgid_len, p, n);
    d->msgid_len += n;
}

/* A complete header line (CRLF stripped) is in d->hdr. */
static void header_line(struct sink_data *d)
{
    const char *h = d->hdr, *end = d->hdr + d->hdr_len;
    if (d->hdr_len == 0) {
        d->in_headers = false; /* the empty line ends the header section */
        return;
    }
    if (h[0] == ' ' || h[0] == '\t') { /* RFC 5322 2.2.3 folding */
        if (d->hdr_is_msgid)
            msgid_append(d, h, end);
        return;
    }
    d->hdr_is_msgid = false;
    if (!d->have_msgid && d->hdr_len >= 11 && strncasecmp(h, "Message-ID:", 11) == 0) {
        d->have_msgid = true;
        d->hdr_is_msgid = true;
        msgid_append(d, h + 11, end);
    }
}

size_t sink_data_feed(struct sink_data *d, const char *buf, size_t len, bool *done)
{
    const char *p = buf, *end = buf + len;
    *done = false;
    while (p < end) {
        if (d->state == ST_MID && !d->in_headers) {
            const char *cr = memchr(p, '\r', (size_t)(end - p));
            if (!cr) {
                p = end;
                break;
            }
            p = cr + 1;
            d->state = ST_CR;
            continue;
        }
        char c = *p++;
        switch (d->state) {
        case ST_LS:
            if (c == '.') {
                d->state = ST_DOT;
            } else if (c == '\r') {
                d->state = ST_CR;
            } else {
                hdr_put(d, c);
                d->state = ST_MID;
            }
            break;
        case ST_DOT:
            if (c == '\r') {
                d->state = ST_DOTCR;
            } else {
                d->dots_removed++;
                hdr_put(d, c);
                d->state = ST_MID;
            }
            break;
        case ST_DOTCR:
            if (c == '\n') {
                d->consumed += (uint64_t)(p - buf);
                *done = true;
                return (size_t)(p - buf);
            }
            /* ".\r" then not LF: the dot was stuffing, the CR is content. */
            d->dots_removed++;
            if (c == '\r') {
                hdr_put(d, '\r');
                d->state = ST_CR;
            } else {
                hdr_put(d, '\r');
                hdr_put(d, c);
                d->state = ST_MID;
            }
            break;
        case ST_MID:
            if (c == '\r')
                d->state = ST_CR;
            else
                hdr_put(d, c);
            break;
        case ST_CR:
            if (c == '\n') {
                if (d->in_headers) {
                    header_line(d);
                    d->hdr_len = 0;
                }
                d->state = ST_LS;
            } else if (c == '\r') {
                hdr_put(d, '\r');
            } else {
                hdr_put(d, '\r');
                hdr_put(d, c);
                d->state = ST_MID;
            }
            break;
        default: __builtin_trap(); /* broken invariant: state is private to this file */
        }
    }
    d->consumed += (uint64_t)(p - buf);
    return (size_t)(p - buf);
}

uint64_t sink_data_bytes(const struct sink_data *d)
{
    /* consumed = unstuffed body + removed dots + the final ".CRLF" (3 bytes). */
    uint64_t overhead = d->dots_removed + 3;
    return d->consumed >= overhead ? d->consumed - overhead : 0;
}
