/* libFuzzer target for salvo-sink's SMTP command line parser (sink_cmd_parse) and,
 * with the same input, its DATA scanner. Invariants checked: returned pointers stay
 * inside the line; a DATA stream split anywhere gives the same result as whole. */
#include "sink.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_cmd(const char *line, size_t len)
{
    struct sink_cmd c;
    int rc = sink_cmd_parse(line, len, &c);
    if (rc > 0 || rc < SINK_CMD_TOOLARGE)
        abort();
    if (c.arg && (c.arg < line || c.arg + c.arg_len > line + len))
        abort();
    if (c.path && (c.path < line || c.path + c.path_len > line + len))
        abort();
    if (rc == SINK_CMD_OK && c.verb == SINK_VERB_UNKNOWN)
        abort();
    if (rc == SINK_CMD_OK && (c.verb == SINK_VERB_MAIL || c.verb == SINK_VERB_RCPT) && !c.path)
        abort();
}

static void check_data(const uint8_t *data, size_t size)
{
    static struct sink_data whole, split;
    bool done1 = false, done2 = false;
    sink_data_begin(&whole);
    size_t n1 = sink_data_feed(&whole, (const char *)data, size, &done1);
    sink_data_begin(&split);
    size_t n2 = 0;
    while (n2 < size && !done2) {
        size_t chunk = 1 + (data[n2] % 7);
        if (chunk > size - n2)
            chunk = size - n2;
        n2 += sink_data_feed(&split, (const char *)data + n2, chunk, &done2);
    }
    if (n1 != n2 || done1 != done2 || n1 > size)
        abort();
    if (done1 && sink_data_bytes(&whole) != sink_data_bytes(&split))
        abort();
    if (whole.have_msgid != split.have_msgid || whole.msgid_len != split.msgid_len ||
        memcmp(whole.msgid, split.msgid, whole.msgid_len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Each line of the input is a command, as the server would cut it. */
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t l = len > 0 && p[len - 1] == '\r' ? len - 1 : len;
        char *copy = malloc(l ? l : 1); /* exact size: ASan sees any overread */
        memcpy(copy, p, l);
        check_cmd(copy, l);
        free(copy);
        p += len + (nl ? 1 : 0);
    }
    check_data(data, size);
    return 0;
}
