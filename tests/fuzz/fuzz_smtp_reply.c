/* libFuzzer target for the SMTP reply parser (engine/smtp_reply.c). The first byte
 * picks a chunk size; the rest is the server's output. Invariant checked: the
 * sequence of replies (codes, enhanced codes, text) and the final error are the
 * same whether the input arrives in one piece or in chunks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

static void run(const uint8_t *data, size_t len, size_t chunk, struct sv_buf *out)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        size_t used = 0;
        int rc = smtp_reply_feed(&p, (const char *)data + off, n, &used);
        if (used > n)
            abort();
        off += used;
        if (rc < 0) {
            sv_buf_printf(out, "ERR %s\n", p.err);
            break;
        }
        if (rc == 1) {
            if (p.r.code < 200 || p.r.code > 559 || p.r.nlines == 0 ||
                p.r.nlines > SMTP_REPLY_LINES_MAX)
                abort();
            sv_buf_printf(out, "%d [%s] ", p.r.code, p.r.esc);
            smtp_reply_format(&p.r, out);
            sv_buf_putc(out, '\n');
        } else if (used != n) {
            abort(); /* "need more" must have consumed everything */
        }
    }
    smtp_reply_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 17 + 1;
    data++;
    size--;
    struct sv_buf a = {0}, b = {0};
    run(data, size, size ? size : 1, &a);
    run(data, size, chunk, &b);
    if (a.len != b.len || (a.len && memcmp(a.ptr, b.ptr, a.len) != 0))
        abort();
    sv_buf_free(&a);
    sv_buf_free(&b);
    return 0;
}
