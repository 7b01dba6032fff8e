/* redisq's parsers of user input: the campaign CSV reader (with UTF-8 checks),
 * envelope addresses, redis.url, template placeholders and rendering. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rq.h"

static int count(void *arg, const char *name, size_t len, size_t line)
{
    (void)name;
    (void)line;
    *(size_t *)arg += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    const char *why;
    rq_url_check(s, &why);
    rq_addr_check(s, &why);
    size_t total = 0;
    rq_placeholders(s, size, count, &total);

    /* Render the input as a template with two fields taken from its own text. */
    const char *fields[] = {"first", "code"};
    const char *values[] = {s, "x"};
    struct rq_rcpt r = {.addr = "a@b.example", .values = values};
    struct sv_buf out = {0};
    rq_render_text(s, size, fields, 2, &r, &out);
    sv_buf_free(&out);

    FILE *f = fmemopen((void *)data, size ? size : 1, "rb");
    struct rq_csv *c = NULL;
    if (f && size && rq_csv_new(f, &c) == 0) {
        for (int pass = 0; pass < 2; pass++) {
            while (rq_csv_next(c) == 1) {
                size_t line, col;
                unsigned char byte;
                rq_csv_utf8_error(c, &line, &col, &byte);
                for (size_t i = 0; i < rq_csv_nfields(c); i++)
                    rq_addr_check(rq_csv_field(c, i), &why);
            }
            rq_csv_rewind(c);
        }
    }
    rq_csv_free(c);
    if (f)
        fclose(f);
    free(s);
    return 0;
}
