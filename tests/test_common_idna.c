/* common/idna: Punycode against the RFC 3492 section 7.1 samples, decoder errors
 * and overflow (6.4), and domain conversion (A-labels, mapping, refusals). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "idna.h"

struct sample {
    const char *name;
    uint32_t cp[48];
    size_t n;
    const char *puny;
};

/* RFC 3492 7.1, code points as listed there (upper-case letters in the Punycode
 * column are the optional mixed-case annotation, which salvo does not write). */
static const struct sample samples[] = {
    {"A",
     {0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A, 0x0643, 0x0644, 0x0645, 0x0648,
      0x0634, 0x0639, 0x0631, 0x0628, 0x064A, 0x061F},
     17,
     "egbpdaj6bu4bxfgehfvwxn"},
    {"B",
     {0x4ED6, 0x4EEC, 0x4E3A, 0x4EC0, 0x4E48, 0x4E0D, 0x8BF4, 0x4E2D, 0x6587},
     9,
     "ihqwcrb4cv8a8dqg056pqjye"},
    {"C",
     {0x4ED6, 0x5011, 0x7232, 0x4EC0, 0x9EBD, 0x4E0D, 0x8AAA, 0x4E2D, 0x6587},
     9,
     "ihqwctvzc91f659drss3x8bo0yb"},
    {"D",
     {0x0050, 0x0072, 0x006F, 0x010D, 0x0070, 0x0072, 0x006F, 0x0073, 0x0074, 0x011B, 0x006E,
      0x0065, 0x006D, 0x006C, 0x0075, 0x0076, 0x00ED, 0x010D, 0x0065, 0x0073, 0x006B, 0x0079},
     22,
     "Proprostnemluvesky-uyb24dma41a"},
    {"E",
     {0x05DC, 0x05DE, 0x05D4, 0x05D4, 0x05DD, 0x05E4, 0x05E9, 0x05D5, 0x05D8, 0x05DC, 0x05D0,
      0x05DE, 0x05D3, 0x05D1, 0x05E8, 0x05D9, 0x05DD, 0x05E2, 0x05D1, 0x05E8, 0x05D9, 0x05EA},
     22,
     "4dbcagdahymbxekheh6e0a7fei0b"},
    {"F",
     {0x092F, 0x0939, 0x0932, 0x094B, 0x0917, 0x0939, 0x093F, 0x0928, 0x094D, 0x0926,
      0x0940, 0x0915, 0x094D, 0x092F, 0x094B, 0x0902, 0x0928, 0x0939, 0x0940, 0x0902,
      0x092C, 0x094B, 0x0932, 0x0938, 0x0915, 0x0924, 0x0947, 0x0939, 0x0948, 0x0902},
     30,
     "i1baa7eci9glrd9b2ae1bj0hfcgg6iyaf8o0a1dig0cd"},
    {"G",
     {0x306A, 0x305C, 0x307F, 0x3093, 0x306A, 0x65E5, 0x672C, 0x8A9E, 0x3092, 0x8A71, 0x3057,
      0x3066, 0x304F, 0x308C, 0x306A, 0x3044, 0x306E, 0x304B},
     18,
     "n8jok5ay5dzabd5bym9f0cm5685rrjetr6pdxa"},
    {"H",
     {0xC138, 0xACC4, 0xC758, 0xBAA8, 0xB4E0, 0xC0AC, 0xB78C, 0xB4E4,
      0xC774, 0xD55C, 0xAD6D, 0xC5B4, 0xB97C, 0xC774, 0xD574, 0xD55C,
      0xB2E4, 0xBA74, 0xC5BC, 0xB9C8, 0xB098, 0xC88B, 0xC744, 0xAE4C},
     24,
     "989aomsvi5e83db1d2a355cv1e0vak1dwrv93d5xbh15a0dt30a5jpsd879ccm6fea98c"},
    {"I",
     {0x043F, 0x043E, 0x0447, 0x0435, 0x043C, 0x0443, 0x0436, 0x0435, 0x043E, 0x043D,
      0x0438, 0x043D, 0x0435, 0x0433, 0x043E, 0x0432, 0x043E, 0x0440, 0x044F, 0x0442,
      0x043F, 0x043E, 0x0440, 0x0443, 0x0441, 0x0441, 0x043A, 0x0438},
     28,
     "b1abfaaepdrnnbgefbaDotcwatmq2g4l"},
    {"J",
     {0x0050, 0x006F, 0x0072, 0x0071, 0x0075, 0x00E9, 0x006E, 0x006F, 0x0070, 0x0075,
      0x0065, 0x0064, 0x0065, 0x006E, 0x0073, 0x0069, 0x006D, 0x0070, 0x006C, 0x0065,
      0x006D, 0x0065, 0x006E, 0x0074, 0x0065, 0x0068, 0x0061, 0x0062, 0x006C, 0x0061,
      0x0072, 0x0065, 0x006E, 0x0045, 0x0073, 0x0070, 0x0061, 0x00F1, 0x006F, 0x006C},
     40,
     "PorqunopuedensimplementehablarenEspaol-fmd56a"},
    {"K",
     {0x0054, 0x1EA1, 0x0069, 0x0073, 0x0061, 0x006F, 0x0068, 0x1ECD, 0x006B, 0x0068, 0x00F4,
      0x006E, 0x0067, 0x0074, 0x0068, 0x1EC3, 0x0063, 0x0068, 0x1EC9, 0x006E, 0x00F3, 0x0069,
      0x0074, 0x0069, 0x1EBF, 0x006E, 0x0067, 0x0056, 0x0069, 0x1EC7, 0x0074},
     31,
     "TisaohkhngthchnitingVit-kjcr8268qyxafd2f1b9g"},
    {"L",
     {0x0033, 0x5E74, 0x0042, 0x7D44, 0x91D1, 0x516B, 0x5148, 0x751F},
     8,
     "3B-ww4c5e180e575a65lsy2b"},
    {"M",
     {0x5B89, 0x5BA4, 0x5948, 0x7F8E, 0x6075, 0x002D, 0x0077, 0x0069,
      0x0074, 0x0068, 0x002D, 0x0053, 0x0055, 0x0050, 0x0045, 0x0052,
      0x002D, 0x004D, 0x004F, 0x004E, 0x004B, 0x0045, 0x0059, 0x0053},
     24,
     "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n"},
    {"N",
     {0x0048, 0x0065, 0x006C, 0x006C, 0x006F, 0x002D, 0x0041, 0x006E, 0x006F,
      0x0074, 0x0068, 0x0065, 0x0072, 0x002D, 0x0057, 0x0061, 0x0079, 0x002D,
      0x305D, 0x308C, 0x305E, 0x308C, 0x306E, 0x5834, 0x6240},
     25,
     "Hello-Another-Way--fc4qua05auwb3674vfr0b"},
    {"O",
     {0x3072, 0x3068, 0x3064, 0x5C4B, 0x6839, 0x306E, 0x4E0B, 0x0032},
     8,
     "2-u9tlzr9756bt3uc0v"},
    {"P",
     {0x004D, 0x0061, 0x006A, 0x0069, 0x3067, 0x004B, 0x006F, 0x0069, 0x3059, 0x308B, 0x0035,
      0x79D2, 0x524D},
     13,
     "MajiKoi5-783gue6qz075azm5e"},
    {"Q",
     {0x30D1, 0x30D5, 0x30A3, 0x30FC, 0x0064, 0x0065, 0x30EB, 0x30F3, 0x30D0},
     9,
     "de-jg4avhby1noc0d"},
    {"R", {0x305D, 0x306E, 0x30B9, 0x30D4, 0x30FC, 0x30C9, 0x3067}, 7, "d9juau41awczczp"},
    {"S",
     {0x002D, 0x003E, 0x0020, 0x0024, 0x0031, 0x002E, 0x0030, 0x0030, 0x0020, 0x003C, 0x002D},
     11,
     "-> $1.00 <--"},
};

static void test_rfc3492_samples(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof(samples) / sizeof(samples[0]); s++) {
        const struct sample *x = &samples[s];
        char out[128];
        size_t n = sizeof(out);
        if (sv_punycode_encode(x->cp, x->n, out, &n) != 0)
            fail_msg("(%s): encode failed", x->name);
        out[n] = 0;
        /* Only (I) carries annotations in its digits; basic code points keep case. */
        if (strcmp(x->name, "I") == 0 ? strcasecmp(out, x->puny) : strcmp(out, x->puny))
            fail_msg("(%s): encoded %s, want %s", x->name, out, x->puny);
        uint32_t cp[64];
        size_t m = 64;
        if (sv_punycode_decode(x->puny, strlen(x->puny), cp, &m) != 0)
            fail_msg("(%s): decode failed", x->name);
        assert_int_equal(m, x->n);
        assert_memory_equal(cp, x->cp, m * sizeof(cp[0]));
        /* Round trip of our own output. */
        m = 64;
        assert_int_equal(sv_punycode_decode(out, n, cp, &m), 0);
        assert_int_equal(m, x->n);
        assert_memory_equal(cp, x->cp, m * sizeof(cp[0]));
    }
}

static int dec(const char *s, size_t *n)
{
    static uint32_t cp[64];
    *n = 64;
    return sv_punycode_decode(s, strlen(s), cp, n);
}

static void test_punycode_errors(void **state)
{
    (void)state;
    size_t n;
    assert_int_equal(dec("\xc3\xa9-abc", &n), -EINVAL);      /* non-basic in the basic part */
    assert_int_equal(dec("abc-de!", &n), -EINVAL);           /* not a digit */
    assert_int_equal(dec("-", &n), -EINVAL);                 /* '-' at 0 is a (bad) digit */
    assert_int_equal(dec("a-9", &n), -EINVAL);               /* truncated variable-length number */
    assert_int_equal(dec("99999999999999", &n), -EOVERFLOW); /* w * (base - t) overflows */
    assert_int_equal(dec("a-999999999999999999999", &n), -EOVERFLOW); /* after a basic part */
    assert_int_equal(dec("a-999999a", &n), -EINVAL);                  /* decodes past U+10FFFF */
    assert_int_equal(dec("", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(dec("abc-", &n), 0); /* basic only */
    assert_int_equal(n, 3);
    /* No room. */
    uint32_t cp[2];
    n = 2;
    assert_int_equal(sv_punycode_decode("mnchen-3ya", 10, cp, &n), -EOVERFLOW);
    n = 2;
    assert_int_equal(sv_punycode_decode("abc-", 4, cp, &n), -EOVERFLOW);
    /* Encoder: not a scalar value, no room. */
    char out[8];
    size_t on = sizeof(out);
    assert_int_equal(sv_punycode_encode((const uint32_t[]){0x110000}, 1, out, &on), -EINVAL);
    on = sizeof(out);
    assert_int_equal(sv_punycode_encode((const uint32_t[]){'a', 0xD800}, 2, out, &on), -EINVAL);
    on = 5;
    const uint32_t mu[] = {'m', 0xFC, 'n', 'c', 'h', 'e', 'n'};
    assert_int_equal(sv_punycode_encode(mu, 7, out, &on), -EOVERFLOW);
}

static const char *conv(const char *in, enum sv_idna_form form)
{
    static char out[512];
    const char *why = NULL;
    int rc = sv_idna_domain(in, strlen(in), form, out, sizeof(out), &why);
    if (rc)
        fail_msg("'%s': %d %s", in, rc, why ? why : "");
    return out;
}

static const char *refused(const char *in)
{
    char out[512];
    const char *why = NULL;
    if (sv_idna_domain(in, strlen(in), SV_IDNA_ASCII, out, sizeof(out), &why) != -EINVAL)
        fail_msg("'%s' accepted as '%s'", in, out);
    assert_non_null(why);
    return why;
}

static void test_domain_pairs(void **state)
{
    (void)state;
    /* Expected values from Python's 'x'.encode('idna') / the punycode codec. */
    static const char *const pairs[][2] = {
        {"m\xc3\xbcnchen.test", "xn--mnchen-3ya.test"},
        {"b\xc3\xbc"
         "cher.example",
         "xn--bcher-kva.example"},
        {"\xe4\xbe\x8b\xe3\x81\x88.jp", "xn--r8jz45g.jp"},
        {"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80."
         "\xd0\xb8\xd1\x81\xd0\xbf\xd1\x8b\xd1\x82\xd0\xb0\xd0\xbd\xd0\xb8\xd0\xb5",
         "xn--e1afmkfd.xn--80akhbyknj4f"},
        {"\xce\xb5\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac.test",
         "xn--hxargifdar.test"},
        {"\xe4\xb8\xad\xe6\x96\x87.test", "xn--fiq228c.test"},
        {"catal\xc3\xa0.test", "xn--catal-vqa.test"},
        {"col\xc2\xb7legi.cat", "xn--collegi-xma.cat"}, /* l.l (RFC 5892 A.3) */
        {"stra\xc3\x9f"
         "e.de",
         "xn--strae-oqa.de"}, /* IDNA2008 keeps sharp s */
        {"Example.ORG", "example.org"},
        {"xn--MNCHEN-3YA.test", "xn--mnchen-3ya.test"}, /* a valid A-label, lower-cased */
        /* Mapping: upper case of the blocks salvo knows, full stops, full-width. */
        {"M\xc3\x9cNCHEN.DE", "xn--mnchen-3ya.de"},
        {"\xd0\x9f\xd0\xa0\xd0\x98\xd0\x9c\xd0\x95\xd0\xa0.test", "xn--e1afmkfd.test"},
        {"\xe4\xbe\x8b\xe3\x81\x88\xe3\x80\x82jp", "xn--r8jz45g.jp"}, /* U+3002 */
        {"\xe4\xbe\x8b\xe3\x81\x88\xef\xbc\x8ejp", "xn--r8jz45g.jp"}, /* U+FF0E */
        {"\xef\xbd\x8d\xef\xbc\xb5nchen.de", "munchen.de"},           /* full-width m U */
        {"\xc4\xb0stanbul.tr", "xn--istanbul-o0e.tr"},                /* I dot -> i U+0307 */
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
        assert_string_equal(conv(pairs[i][0], SV_IDNA_ASCII), pairs[i][1]);
    /* 57 u-umlauts make a 63-octet A-label: the longest there is. */
    char lab[256] = "", dom[300];
    for (int i = 0; i < 57; i++)
        strcat(lab, "\xc3\xbc");
    snprintf(dom, sizeof(dom), "%s.test", lab);
    assert_int_equal(strlen(conv(dom, SV_IDNA_ASCII)), 63 + 5);
    strcat(lab, "\xc3\xbc");
    snprintf(dom, sizeof(dom), "%s.test", lab);
    assert_string_equal(refused(dom), "domain label longer than 63 octets in A-label form");
}

static void test_domain_forms(void **state)
{
    (void)state;
    const char *in = "M\xc3\x9cnchen.XN--bcher-kva.Test";
    assert_string_equal(conv(in, SV_IDNA_ASCII), "xn--mnchen-3ya.xn--bcher-kva.test");
    assert_string_equal(conv(in, SV_IDNA_MAPPED), "m\xc3\xbcnchen.xn--bcher-kva.test");
    assert_string_equal(conv(in, SV_IDNA_UNICODE), "m\xc3\xbcnchen.b\xc3\xbc"
                                                   "cher.test");
    /* Round trip: UNICODE of the ASCII form gives the mapped input back. */
    const char *u = "\xe4\xbe\x8b\xe3\x81\x88.\xd0\xb8\xd1\x81\xd0\xbf.\xce\xb5\xce\xbb.test";
    char a[512];
    snprintf(a, sizeof(a), "%s", conv(u, SV_IDNA_ASCII));
    assert_string_equal(conv(a, SV_IDNA_UNICODE), u);
    /* Too small an output buffer. */
    char small[8];
    const char *why;
    assert_int_equal(sv_idna_domain(in, strlen(in), SV_IDNA_ASCII, small, sizeof(small), &why),
                     -ENOSPC);
    assert_string_equal(small, "");
}

static void test_domain_refused(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"", "empty domain"},
        {"m\xc3\xbcnchen..de", "empty label in domain (leading, trailing or double dot)"},
        {"m\xc3\xbcnchen.de.", "empty label in domain (leading, trailing or double dot)"},
        {"m\xc3\xbc nchen.de", "invalid character in domain"},
        {"m\xc3\xbc_nchen.de", "invalid character in domain"},
        {"-m\xc3\xbcnchen.de", "domain label starts with '-'"},
        {"m\xc3\xbcnchen-.de", "domain label ends with '-'"},
        {"ab--m\xc3\xbcnchen.de", "'--' in the third and fourth positions of a domain label"},
        {"\xcc\x81"
         "a.de",
         "domain label starts with a combining mark"},
        {"a\xc2\xa0"
         "b.de",
         "symbol or punctuation in domain"}, /* NBSP */
        {"a\xc2\xa9"
         "b.de",
         "symbol or punctuation in domain"}, /* (c) */
        {"a\xc3\x97"
         "b.de",
         "symbol or punctuation in domain"}, /* multiplication */
        {"a\xc2\x85"
         "b.de",
         "control character in domain"}, /* NEL */
        {"a\xe2\x80\x8d"
         "b.de",
         "zero-width joiner or non-joiner in domain (not supported)"},
        {"a\xe2\x80\x8b"
         "b.de",
         "space, punctuation or format character in domain"},
        {"a\xe3\x80\x80"
         "b.de",
         "space, punctuation or format character in domain"},
        {"\xe2\x98\x83.de", "symbol or emoji in domain"},     /* snowman */
        {"\xf0\x9f\x98\x80.de", "symbol or emoji in domain"}, /* emoji */
        {"a\xee\x80\x80.de", "private-use code point in domain"},
        {"a\xef\xb7\x90.de", "noncharacter in domain"},
        {"a\xef\xb8\x8f.de", "variation selector in domain"},
        {"a\xef\xbd\xa1\xef\xbd\xb1.de",
         "compatibility form or special code point in domain (not mapped)"},
        {"a\xc2\xb7"
         "b.cat",
         "middle dot (U+00B7) in domain not between two 'l'"},
        {"\xc3\x28.de", "invalid UTF-8 in domain"},
        {"\xc0\xaf.de", "invalid UTF-8 in domain"},         /* overlong '/' */
        {"\xed\xa0\x80.de", "invalid UTF-8 in domain"},     /* surrogate */
        {"\xf4\x90\x80\x80.de", "invalid UTF-8 in domain"}, /* > U+10FFFF */
        {"xn--zz.test", "invalid A-label (xn--...) in domain"},
        {"xn--a-jfa.test", "invalid A-label (xn--...) in domain"}, /* decodes to upper case */
        {"xn--abc-.test", "domain label ends with '-'"},
        {"xn--mnchen-iia.test", "invalid A-label (xn--...) in domain"}, /* (c) */
        {"xn--tda-.test", "domain label ends with '-'"},
        /* decode to "a\u3002b" and "\u00fc\u3002": an ideographic full stop is a
         * separator, not a label character (found by fuzz_idna) */
        {"xn--ab-r13a.test", "invalid A-label (xn--...) in domain"},
        {"xn--tda091v.test", "invalid A-label (xn--...) in domain"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = refused(cases[i][0]);
        if (strcmp(why, cases[i][1]) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, why, cases[i][1]);
    }
    /* 253 octets in A-label form is the limit: 4 + 240 + 9 ("xn--m-eha") fits. */
    char d[400] = "abc.";
    for (int i = 0; i < 24; i++)
        strcat(d, "abcdefghi.");
    strcat(d, "m\xc3\xbc");
    assert_int_equal(strlen(conv(d, SV_IDNA_ASCII)), 253);
    char d2[410];
    snprintf(d2, sizeof(d2), "a%s", d);
    assert_string_equal(refused(d2), "domain longer than 253 octets in A-label form");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3492_samples), cmocka_unit_test(test_punycode_errors),
        cmocka_unit_test(test_domain_pairs),    cmocka_unit_test(test_domain_forms),
        cmocka_unit_test(test_domain_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
