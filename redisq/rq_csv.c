/* CSV reader for campaign recipient lists (RFC 4180): quoted fields with "" escapes
 * and line breaks, CRLF or LF, streaming one record at a time so a file of any
 * size is read in bounded memory. Records keep their raw bytes for UTF-8 checks. */
#include "rq_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECORD (64 * 1024)

struct rq_csv {
    FILE *f;
    size_t line;        /* current physical line (1-based) */
    size_t rec_line;    /* first line of the record just read */
    struct sv_buf raw;  /* the record's bytes as read, for UTF-8 checks */
    struct sv_buf text; /* fields, each NUL-terminated */
    size_t *off;
    size_t nfields, cap;
    const char *error; /* set with a record-level syntax error */
    bool bom_checked;  /* the first byte of the file was looked at */
};

int rq_csv_new(FILE *f, struct rq_csv **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    (*out)->f = f;
    (*out)->line = 1;
    return 0;
}

void rq_csv_free(struct rq_csv *c)
{
    if (!c)
        return;
    sv_buf_free(&c->raw);
    sv_buf_free(&c->text);
    free(c->off);
    free(c);
}

int rq_csv_rewind(struct rq_csv *c)
{
    c->line = 1;
    c->bom_checked = false;
    return fseek(c->f, 0, SEEK_SET) ? -errno : 0;
}

size_t rq_csv_nfields(const struct rq_csv *c)
{
    return c->nfields;
}
char *rq_csv_field(struct rq_csv *c, size_t i)
{
    return c->text.ptr + c->off[i];
}
size_t rq_csv_line(const struct rq_csv *c)
{
    return c->rec_line;
}
const char *rq_csv_error(const struct rq_csv *c)
{
    return c->error;
}

static int push_field(struct rq_csv *c, size_t start)
{
    if (c->nfields == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        size_t *o = realloc(c->off, cap * sizeof(*o));
        if (!o)
            return -ENOMEM;
        c->off = o;
        c->cap = cap;
    }
    c->off[c->nfields++] = start;
    return sv_buf_putc(&c->text, 0) ? -ENOMEM : 0;
}

/* One record, blank or not: 1, 0 at end of file, -ENOMEM. */
static int next_record(struct rq_csv *c)
{
    sv_buf_reset(&c->raw);
    sv_buf_reset(&c->text);
    c->nfields = 0;
    c->error = NULL;
    c->rec_line = c->line;
    int ch = getc(c->f);
    /* A UTF-8 byte order mark (Excel's "CSV UTF-8") is not part of the first column
     * name. Anything else starting with 0xEF is put back (the file is seekable: it is
     * read twice anyway). */
    if (ch == 0xEF && !c->bom_checked) {
        long pos = ftell(c->f);
        int b2 = getc(c->f), b3 = getc(c->f);
        if (b2 == 0xBB && b3 == 0xBF)
            ch = getc(c->f);
        else if (pos < 0 || fseek(c->f, pos, SEEK_SET) != 0)
            return -EIO;
    }
    c->bom_checked = true;
    if (ch == EOF)
        return 0;
    bool quoted = false, after_quote = false;
    size_t start = 0;
    for (;; ch = getc(c->f)) {
        /* Over-long records keep being consumed (to find the next line) but not kept. */
        if (c->raw.len > MAX_RECORD) {
            if (!c->error)
                c->error = "record longer than 64 KiB";
            sv_buf_reset(&c->text);
            c->nfields = 0;
            start = 0;
        }
        if (ch != EOF && c->raw.len <= MAX_RECORD && sv_buf_putc(&c->raw, (char)ch))
            return -ENOMEM;
        if (quoted) {
            if (ch == EOF) {
                c->error = "unterminated quoted field";
                return push_field(c, start) ? -ENOMEM : 1;
            }
            if (ch == '"') {
                int nx = getc(c->f);
                if (nx == '"') {
                    if (sv_buf_putc(&c->raw, '"') || sv_buf_putc(&c->text, '"'))
                        return -ENOMEM;
                    continue;
                }
                ungetc(nx, c->f);
                quoted = false;
                after_quote = true;
                continue;
            }
            if (ch == '\n')
                c->line++;
            if (sv_buf_putc(&c->text, (char)ch))
                return -ENOMEM;
            continue;
        }
        if (ch == ',' || ch == '\n' || ch == EOF) {
            /* A CR before LF ends the line too (CRLF files). */
            if (ch != ',' && c->text.len > start && c->text.ptr[c->text.len - 1] == '\r' &&
                !after_quote)
                c->text.len--;
            if (push_field(c, start))
                return -ENOMEM;
            start = c->text.len;
            after_quote = false;
            if (ch == '\n')
                c->line++;
            if (ch != ',')
                return 1;
            continue;
        }
        if (after_quote) {
            if (ch == '\r')
                continue;
            if (!c->error)
                c->error = "unexpected character after a closing quote";
            continue;
        }
        if (ch == '"' && c->text.len == start) {
            quoted = true;
            continue;
        }
        if (sv_buf_putc(&c->text, (char)ch))
            return -ENOMEM;
    }
}

int rq_csv_next(struct rq_csv *c)
{
    int rc;
    do {
        rc = next_record(c);
    } while (rc == 1 && c->nfields == 1 && c->text.ptr[c->off[0]] == 0 && !c->error);
    return rc;
}

/* Returns the byte offset of the first invalid UTF-8 sequence, or -1. Strict:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static long utf8_invalid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return (long)i;
        }
        if (i + len > n)
            return (long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return (long)i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return (long)i;
        i += len;
    }
    return -1;
}

bool rq_csv_utf8_error(const struct rq_csv *c, size_t *line, size_t *col, unsigned char *byte)
{
    long off = utf8_invalid((const unsigned char *)c->raw.ptr, c->raw.len);
    if (off < 0)
        return false;
    size_t l = c->rec_line, cl = 1;
    for (long i = 0; i < off; i++) {
        if (c->raw.ptr[i] == '\n') {
            l++;
            cl = 1;
        } else {
            cl++;
        }
    }
    *line = l;
    *col = cl;
    *byte = (unsigned char)c->raw.ptr[off];
    return true;
}
