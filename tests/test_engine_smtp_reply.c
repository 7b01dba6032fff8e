/* The SMTP reply parser (engine/smtp_reply.c): multi-line replies, enhanced status
 * codes, limits against hostile peers, and the same result however input is split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

/* Feeds `in` in pieces of `step` bytes; returns the rc of the first completed or
 * failed reply, with the formatted reply or error in out. */
static int parse(const char *in, size_t len, size_t step, char *out, size_t outlen, int *code,
                 char *esc)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t off = 0;
    int rc = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step, used = 0;
        rc = smtp_reply_feed(&p, in + off, n, &used);
        off += used;
        if (rc != 0)
            break;
    }
    if (rc == 1) {
        struct sv_buf b = {0};
        smtp_reply_format(&p.r, &b);
        snprintf(out, outlen, "%s", b.ptr);
        sv_buf_free(&b);
        *code = p.r.code;
        strcpy(esc, p.r.esc);
    } else if (rc < 0) {
        snprintf(out, outlen, "%s", p.err);
    } else {
        snprintf(out, outlen, "(incomplete)");
    }
    smtp_reply_parser_free(&p);
    return rc;
}

static void expect(const char *in, int want_rc, const char *want_text, int want_code,
                   const char *want_esc)
{
    size_t len = strlen(in);
    size_t steps[] = {1, 2, 3, 7, 64, 100000};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char out[4096], esc[16] = "";
        int code = 0;
        int rc = parse(in, len, steps[i], out, sizeof(out), &code, esc);
        if (rc != want_rc || strcmp(out, want_text) != 0)
            fail_msg("input %.60s step %zu: rc %d '%s', want %d '%s'", in, steps[i], rc, out,
                     want_rc, want_text);
        if (rc == 1) {
            assert_int_equal(code, want_code);
            assert_string_equal(esc, want_esc);
        }
    }
}

static void test_single_and_multi(void **state)
{
    (void)state;
    expect("220 mx.example.test ESMTP\r\n", 1, "220 mx.example.test ESMTP", 220, "");
    expect("250\r\n", 1, "250", 250, "");
    expect("550 5.1.1 <x@y>: no such user\r\n", 1, "550 5.1.1 <x@y>: no such user", 550, "5.1.1");
    expect("250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 1,
           "250 mx.example.test PIPELINING SIZE 1000", 250, "");
    /* bare LF tolerated as a line end */
    expect("421 4.4.2 bye\n", 1, "421 4.4.2 bye", 421, "4.4.2");
    /* enhanced code must match the class */
    expect("550 4.1.1 odd\r\n", 1, "550 4.1.1 odd", 550, "");
    expect("250 2.0.0\r\n", 1, "250 2.0.0", 250, "2.0.0");
    expect("250-first\r\n250-second", 0, "(incomplete)", 0, "");
}

static void test_bad(void **state)
{
    (void)state;
    expect("XYZ salvo-sink fault\r\n", -1,
           "bad reply code (want 200-559): \"XYZ salvo-sink fault\"", 0, "");
    expect("600 no\r\n", -1, "bad reply code (want 200-559): \"600 no\"", 0, "");
    expect("25\r\n", -1, "bad reply code (want 200-559): \"25\"", 0, "");
    expect("250x\r\n", -1, "bad separator after the reply code: \"250x\"", 0, "");
    expect("250-a\r\n251 b\r\n", -1,
           "reply code changed from 250 within a multi-line reply: \"251 b\"", 0, "");
    /* over-long line */
    size_t n = SMTP_REPLY_LINE_MAX + 10;
    char *big = malloc(n + 3);
    memcpy(big, "250 ", 4);
    memset(big + 4, 'x', n - 4);
    memcpy(big + n, "\r\n", 3);
    expect(big, -1, "reply line longer than 2048 bytes", 0, "");
    /* exactly at the limit: 2048 bytes with the CRLF */
    memset(big + 4, 'y', SMTP_REPLY_LINE_MAX - 6);
    memcpy(big + SMTP_REPLY_LINE_MAX - 2, "\r\n", 3);
    char out[4096], esc[16];
    int code;
    assert_int_equal(parse(big, strlen(big), 5, out, sizeof(out), &code, esc), 1);
    free(big);
    /* endless multi-line */
    struct sv_buf b = {0};
    for (int i = 0; i < 150; i++)
        sv_buf_puts(&b, "250-more\r\n");
    expect(b.ptr, -1, "reply of more than 100 lines", 0, "");
    sv_buf_free(&b);
}

static void test_sequence(void **state)
{
    (void)state;
    /* several replies in one buffer come out one by one, and an error is sticky */
    const char in[] = "220 hi\r\n250-a\r\n250 b\r\n354 go\r\nbad\r\n250 ok\r\n";
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t off = 0, used;
    int codes[3] = {220, 250, 354};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(smtp_reply_feed(&p, in + off, sizeof(in) - 1 - off, &used), 1);
        off += used;
        assert_int_equal(p.r.code, codes[i]);
    }
    assert_int_equal(p.r.nlines, 1);
    assert_int_equal(smtp_reply_feed(&p, in + off, sizeof(in) - 1 - off, &used), -1);
    assert_int_equal(smtp_reply_feed(&p, "250 ok\r\n", 8, &used), -1);
    smtp_reply_parser_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_and_multi),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
