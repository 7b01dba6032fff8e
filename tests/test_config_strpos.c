/* cfg_string_pos(): a byte offset in a string value's decoded text maps back to
 * the line and column where it was written, through every escape form and all
 * four TOML string kinds (so a rule error inside a string points at the exact
 * character, not at the opening quote). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"

struct doc {
    struct cfg_doc *doc;
    struct cfg_diag diag;
    const struct cfg_value *v;
};

static void open_doc(struct doc *d, const char *src, const char *key)
{
    cfg_diag_init(&d->diag);
    d->doc = cfg_doc_parse("t.toml", src, strlen(src), &d->diag);
    if (!d->doc)
        fail_msg("did not parse: %s", d->diag.len ? d->diag.items[0].msg : "?");
    d->v = cfg_get(d->doc->root, key);
    assert_non_null(d->v);
}

static void close_doc(struct doc *d)
{
    cfg_doc_free(d->doc);
    cfg_diag_free(&d->diag);
}

/* Asserts that decoded offset `off` is at line:col, and that the decoded byte
 * there is `ch` (0: do not check, e.g. for the end of the string). */
#define AT(d, off, ch, line_, col_)                                                                \
    do {                                                                                           \
        struct cfg_pos p_ = cfg_string_pos((d)->v, (off));                                         \
        if ((ch) != 0)                                                                             \
            assert_int_equal((d)->v->u.str.ptr[(off)], (ch));                                      \
        char got_[32], want_[32];                                                                  \
        snprintf(got_, sizeof(got_), "%u:%u", (unsigned)p_.line, (unsigned)p_.col);                \
        snprintf(want_, sizeof(want_), "%d:%d", (line_), (col_));                                  \
        assert_string_equal(got_, want_);                                                          \
    } while (0)

static void basic_string_escapes(void **state)
{
    (void)state;
    struct doc d;
    /* col 5 is the quote: a=6, \\=7-8, .=9, b=10, \"=11-12, c=13, ' '=14, X=15 */
    open_doc(&d, "k = \"a\\\\.b\\\"c X\"\n", "k");
    assert_string_equal(d.v->u.str.ptr, "a\\.b\"c X");
    AT(&d, 0, 'a', 1, 6);
    AT(&d, 1, '\\', 1, 7);
    AT(&d, 2, '.', 1, 9);
    AT(&d, 4, '"', 1, 11);
    AT(&d, 5, 'c', 1, 13);
    AT(&d, 7, 'X', 1, 15);
    AT(&d, 8, 0, 1, 16); /* the end: the closing quote */
    AT(&d, 99, 0, 1, 16);
    close_doc(&d);

    /* \u0072 = 6 bytes for 1, \U0001F600 = 10 bytes for 4 (UTF-8) */
    open_doc(&d, "k = \"\\u0072\\U0001F600 X\\t\"\n", "k");
    AT(&d, 0, 'r', 1, 6);
    AT(&d, 1, (char)0xf0, 1, 12);
    AT(&d, 3, (char)0x98, 1, 12); /* inside the escape's bytes: the escape */
    AT(&d, 5, ' ', 1, 22);
    AT(&d, 6, 'X', 1, 23);
    AT(&d, 7, '\t', 1, 24);
    close_doc(&d);

    /* nested in an inline table, not at the start of the line */
    open_doc(&d, "\n\nt = { s = \"x\\\\y\" }\n", "t.s");
    AT(&d, 0, 'x', 3, 12);
    AT(&d, 2, 'y', 3, 15);
    close_doc(&d);
}

static void literal_strings(void **state)
{
    (void)state;
    struct doc d;
    open_doc(&d, "k = 'a\\b X'\n", "k"); /* no escapes in a literal string */
    AT(&d, 1, '\\', 1, 7);
    AT(&d, 4, 'X', 1, 10);
    close_doc(&d);

    open_doc(&d, "k = '''\none\\\ntwo X'''\n", "k");
    assert_string_equal(d.v->u.str.ptr, "one\\\ntwo X");
    AT(&d, 0, 'o', 2, 1);
    AT(&d, 3, '\\', 2, 4);
    AT(&d, 4, '\n', 2, 5);
    AT(&d, 9, 'X', 3, 5);
    AT(&d, 10, 0, 3, 6);
    close_doc(&d);

    /* one line, and quotes just before the closing delimiter */
    open_doc(&d, "k = '''ab X''''\n", "k");
    assert_string_equal(d.v->u.str.ptr, "ab X'");
    AT(&d, 3, 'X', 1, 11);
    AT(&d, 4, '\'', 1, 12);
    close_doc(&d);
}

static void multi_line_basic_strings(void **state)
{
    (void)state;
    struct doc d;
    open_doc(&d, "k = \"\"\"abc X\"\"\"\n", "k");
    AT(&d, 4, 'X', 1, 12);
    close_doc(&d);

    /* first newline trimmed, a line-ending backslash (with blanks after it) eats
     * the newlines and the indentation that follow */
    open_doc(&d, "k = \"\"\"\nab\\  \n\n   cd\ne\\tX\"\"\"\n", "k");
    assert_string_equal(d.v->u.str.ptr, "abcd\ne\tX");
    AT(&d, 0, 'a', 2, 1);
    AT(&d, 1, 'b', 2, 2);
    AT(&d, 2, 'c', 4, 4);
    AT(&d, 3, 'd', 4, 5);
    AT(&d, 4, '\n', 4, 6);
    AT(&d, 5, 'e', 5, 1);
    AT(&d, 6, '\t', 5, 2);
    AT(&d, 7, 'X', 5, 4);
    AT(&d, 8, 0, 5, 5);
    close_doc(&d);

    /* CRLF line ends decode to one LF each */
    open_doc(&d, "k = \"\"\"\r\nab\r\n\\u0058\"\"\"\r\n", "k");
    assert_string_equal(d.v->u.str.ptr, "ab\nX");
    AT(&d, 1, 'b', 2, 2);
    AT(&d, 2, '\n', 2, 3);
    AT(&d, 3, 'X', 3, 1);
    close_doc(&d);
}

static void non_strings_give_their_start(void **state)
{
    (void)state;
    struct doc d;
    open_doc(&d, "n = 12345\n", "n");
    struct cfg_pos p = cfg_string_pos(d.v, 3);
    assert_int_equal(p.line, 1);
    assert_int_equal(p.col, 5);
    close_doc(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(basic_string_escapes),
        cmocka_unit_test(literal_strings),
        cmocka_unit_test(multi_line_basic_strings),
        cmocka_unit_test(non_strings_give_their_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
