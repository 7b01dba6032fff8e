/* The rule language on bare expressions: every literal, operator, precedence
 * level, coercion and function, load errors with exact messages and offsets,
 * and the runtime bounds (budget, arena). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "salvo_sched.h"

static char long_sender[201];

static void context(struct rule_vars *v)
{
    rule_vars_init(v);
    memset(long_sender, 'x', 200);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_RETRY_NUM, "2"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_LAST_ERROR, "tls"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_RCPT, "User@Example.com"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_RCPT_DOMAIN, "example.com"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_REMOTE_IP, "192.0.2.1"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_MX, "mx1.example.com"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_SIZE, "1000"), 0);
    assert_int_equal(rule_vars_set_text(v, RULE_VAR_SENDER, long_sender), 0);
}

/* Compiles and evaluates `src`, returning the formatted value (static buffer) or
 * "ERR:<code>" for a runtime error. Fails the test on a load error. */
static const char *ev(const char *src)
{
    static char buf[1024];
    struct rule_vars vars;
    context(&vars);
    struct rule_error err;
    struct rule_program *p = rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err);
    if (!p)
        fail_msg("load error for %s: %zu: %s", src, err.offset, err.msg);
    struct rule_val v;
    int rc = rule_eval(p, &vars, &v);
    if (rc) {
        snprintf(buf, sizeof(buf), "ERR:%d", rc);
    } else {
        struct sv_buf b = {0};
        assert_int_equal(rule_val_format(&v, &b), 0);
        snprintf(buf, sizeof(buf), "%.*s", (int)b.len, b.ptr ? b.ptr : "");
        sv_buf_free(&b);
    }
    rule_program_free(p);
    return buf;
}

struct case_ {
    const char *expr, *want;
};

static void run_cases(const struct case_ *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *got = ev(c[i].expr);
        if (strcmp(got, c[i].want) != 0)
            fail_msg("%s: got '%s', want '%s'", c[i].expr, got, c[i].want);
    }
}

#define RUN(cases) run_cases(cases, sizeof(cases) / sizeof(cases[0]))

static void literals(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"42", "42"},
        {"-7", "-7"},
        {"3.5", "3.5"},
        {"'a\\tb'", "a\tb"},
        {"'a\\nb'", "a\nb"},
        {"'a\\rb'", "a\rb"},
        {"\"dq\"", "dq"},
        {"'it\\'s'", "it's"},
        {"'\\q'", "q"},
        {"true", "1"},
        {"false", "0"},
        {"2m", "120000"},
        {"90s", "90000"},
        {"100ms", "100"},
        {"1h", "3600000"},
        {"5d", "432000000"},
        {"1w", "604800000"},
        {"[1, 'a', 2.5]", "[1, a, 2.5]"},
        {"[]", "[]"},
        {"[10, 20, 30][1]", "20"},
        {"[10][5]", ""},
        {"[1, 2][-1]", ""},
        {"'h\xc3\xa9llo'[1]", "\xc3\xa9"},
        {"[[1, 2], 3][0][1]", "2"},
        {"[retry_num, last_error]", "[2, tls]"},
    };
    RUN(c);
}

static void arithmetic(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"1 + 2", "3"},
        {"1 + 2.5", "3.5"},
        {"'a' + 1", "a1"},
        {"1 + 'a'", "1a"},
        {"'x' + 1.5", "x1.5"},
        {"[1] + [2, 3]", "[1, 2, 3]"},
        {"[1] + 2", "[1, 2]"},
        {"2 + [1]", "[1, 2]"},
        {"9223372036854775807 + 1", "9223372036854775807"},
        {"-9223372036854775807 - 10", "-9223372036854775808"},
        {"5 - 7", "-2"},
        {"[1, 2, 1, 3] - 1", "[2, 3]"},
        {"[1, 2, 3] - [1, 3]", "[2]"},
        {"'10' - 4", "6"},
        {"'abc' - 1", "-1"},
        {"3 * 4", "12"},
        {"2.5 * 2", "5"},
        {"'3' * '4'", "12"},
        {"9223372036854775807 * 2", "9223372036854775807"},
        {"7 / 2", "3.5"},
        {"6 / 3", "2"},
        {"1 / 0", "0"},
        {"'9' / 3", "3"},
        {"-(2 + 3)", "-5"},
        {"- '4'", "-4"},
        {"2 - -3", "5"},
        {"-2.5", "-2.5"},
        {"retry_num + 1", "3"},
        {"size / 8", "125"},
        {"rcpt_domain + '.'", "example.com."},
    };
    RUN(c);
}

static void comparison_and_logic(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"2 > 1", "1"},
        {"1 >= 1", "1"},
        {"1 => 1", "1"},
        {"1 <= 0", "0"},
        {"1 =< 1", "1"},
        {"1 < 2", "1"},
        {"'b' > 'a'", "1"},
        {"'ab' < 'b'", "1"},
        {"'10' > 9", "1"},
        {"'abc' == 0", "1"},
        {"'2.5' == 2.5", "1"},
        {"1 == 1.0", "1"},
        {"'a' = 'a'", "1"},
        {"'a' == 'A'", "0"},
        {"'a' != 'b'", "1"},
        {"[1, 2] == [1, 2]", "1"},
        {"[1] == 1", "0"},
        {"last_error == 'tls'", "1"},
        {"retry_num > 1", "1"},
        {"1 && 0", "0"},
        {"2 && 'x'", "1"},
        {"0 || ''", "0"},
        {"0 | 3", "1"},
        {"1 & 1", "1"},
        {"1 ^ 1", "0"},
        {"1 ^ 0", "1"},
        {"!0", "1"},
        {"!'a'", "0"},
        {"![]", "1"},
        {"!!'x'", "1"},
        {"!0.0", "1"},
        {"retry_num && last_error", "1"},
        /* short-circuit: the right side would fail at run time */
        {"retry_num == 0 && email_part(rcpt, last_error)", "0"},
        {"retry_num == 2 || email_part(rcpt, last_error)", "1"},
        {"retry_num == 2 && email_part(rcpt, last_error)", "ERR:-1005"},
    };
    RUN(c);
}

static void precedence(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"1 + 2 * 3", "7"},                                /* * over + */
        {"(1 + 2) * 3", "9"},    {"10 - 4 - 3", "3"},      /* left-associative */
        {"8 / 4 / 2", "1"},      {"2 * 3 > 5", "1"},       /* arithmetic over comparison */
        {"1 + 2 > 2", "1"},      {"1 < 2 == 1", "1"},      /* comparison over equality */
        {"2 > 1 == 1", "1"},     {"1 == 1 ^ 1 == 0", "1"}, /* equality over xor */
        {"2 == 2 ^ 1", "0"},     {"1 ^ 0 && 0", "0"},      /* xor over && */
        {"0 && 0 ^ 1", "0"},     {"1 || 0 && 0", "1"},     /* && over || */
        {"!0 + 1", "2"},                                   /* unary over everything */
        {"-2 * 3", "-6"},        {"-[1][0]", "-1"},        /* indexing binds tighter than unary */
        {"!(1 && 0) || 0", "1"},
    };
    RUN(c);
}

static void text_functions(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"trim('  a b  ')", "a b"},
        {"trim_start('  a ')", "a "},
        {"trim_end(' a  ')", " a"},
        {"len('h\xc3\xa9llo')", "6"},
        {"len([1, 2, 3])", "3"},
        {"len(12345)", "5"},
        {"to_lowercase('AbC')", "abc"},
        {"to_uppercase('aBc')", "ABC"},
        {"to_lowercase(rcpt)", "user@example.com"},
        {"is_uppercase('ABC1')", "1"},
        {"is_uppercase('AbC')", "0"},
        {"is_lowercase('abc')", "1"},
        {"is_lowercase('aBc')", "0"},
        {"has_digits('a1')", "1"},
        {"has_digits('ab')", "0"},
        {"count_spaces('a b  c')", "3"},
        {"count_uppercase('AbC')", "2"},
        {"count_lowercase('AbC')", "1"},
        {"count_chars('h\xc3\xa9llo')", "5"},
        {"contains('hello', 'ell')", "1"},
        {"contains('hello', 'xyz')", "0"},
        {"contains(['a', 'b'], 'b')", "1"},
        {"contains(['ab'], 'a')", "0"},
        {"contains_ignore_case('HeLLo', 'ell')", "1"},
        {"contains_ignore_case(['A'], 'a')", "1"},
        {"eq_ignore_case('ABC', 'abc')", "1"},
        {"eq_ignore_case('ABC', 'abd')", "0"},
        {"starts_with('hello', 'he')", "1"},
        {"starts_with('hello', 'lo')", "0"},
        {"ends_with('hello', 'lo')", "1"},
        {"ends_with('lo', 'hello')", "0"},
        {"lines('a\\nb\\r\\nc')", "[a, b, c]"},
        {"lines('a\\n')", "[a]"},
        {"substring('h\xc3\xa9llo', 1, 3)", "\xc3\xa9ll"},
        {"substring('abc', 2, 10)", "c"},
        {"strip_prefix('foobar', 'foo')", "bar"},
        {"strip_prefix('foobar', 'x')", ""},
        {"strip_suffix('foobar', 'bar')", "foo"},
        {"split('a,b,,c', ',')", "[a, b, , c]"},
        {"rsplit('a,b,c', ',')", "[c, b, a]"},
        {"split_once('a=b=c', '=')", "[a, b=c]"},
        {"rsplit_once('a=b=c', '=')", "[a=b, c]"},
        {"split_once('abc', '=')", "[]"},
        {"split_n('a,b,c', ',', 2)", "[a, b,c]"},
        {"split_words('  hi  there ')", "[hi, there]"},
        {"split(rcpt, '@')[1]", "Example.com"},
    };
    RUN(c);
}

static void array_email_ip_functions(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"count([1, 2, 3])", "3"},
        {"count('x')", "1"},
        {"count('')", "0"},
        {"sort([3, 1, 2], false)", "[1, 2, 3]"},
        {"sort(['b', 'a', 'c'], true)", "[c, b, a]"},
        {"sort(['b', 1], false)", "[1, b]"},
        {"dedup([1, 2, 1, 3, 2])", "[1, 2, 3]"},
        {"winnow(['a', '', 'b', []])", "[a, b]"},
        {"is_intersect([1, 2], [2, 3])", "1"},
        {"is_intersect([1], [3])", "0"},
        {"is_intersect('a', ['a'])", "1"},
        {"is_email('a@b.com')", "1"},
        {"is_email('a@b')", "0"},
        {"is_email('nope')", "0"},
        {"is_email(rcpt)", "1"},
        {"email_part('user@example.com', 'local')", "user"},
        {"email_part(rcpt, 'domain')", "Example.com"},
        {"is_empty('')", "1"},
        {"is_empty([])", "1"},
        {"is_empty(0)", "0"},
        {"is_empty('a')", "0"},
        {"is_number(1.5)", "1"},
        {"is_number(3)", "1"},
        {"is_number('1')", "0"},
        {"is_ip_addr('192.0.2.1')", "1"},
        {"is_ip_addr(remote_ip)", "1"},
        {"is_ip_addr('x')", "0"},
        {"is_ipv4_addr('::1')", "0"},
        {"is_ipv4_addr('10.0.0.1')", "1"},
        {"is_ipv6_addr('::1')", "1"},
        {"ip_reverse_name('192.0.2.1')", "1.2.0.192"},
        {"ip_reverse_name('2001:db8::1')",
         "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"},
        {"ip_reverse_name('bad')", ""},
        {"if_then(retry_num > 1, 'a', 'b')", "a"},
        {"if_then(retry_num > 5, 'a', 'b')", "b"},
        {"if_then(1, 'x', email_part(rcpt, last_error))", "x"},
        {"matches('^(\\\\w+)@(.+)$', rcpt)", "1"},
        {"matches('^nope', rcpt)", "0"},
        {"matches('^(\\\\w+)@', rcpt) && $1 == 'User'", "1"},
        {"matches('@(.+)$', rcpt) + $1", "1Example.com"},
        {"$3", ""},
    };
    RUN(c);
}

#define A10  "aaaaaaaaaa"
#define A111 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 "a"

/* Digests cross-checked with coreutils md5sum/sha1sum/sha256sum/sha512sum. */
static void hash_function(void **state)
{
    (void)state;
    static const struct case_ c[] = {
        {"hash('abc', 'md5')", "900150983cd24fb0d6963f7d28e17f72"},
        {"hash('abc', 'sha1')", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"hash('abc', 'sha256')",
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"hash('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 'md5')",
         "8215ef0796a20bcaaae116d3876c664a"},
        {"hash(rcpt, 'sha256')",
         "24299c4b99779e0b3e7742511429c3faa5f9419efb020605493afe2e70d5e6e3"},
        {"hash(rcpt, 'md5')", "e54904819ebdad8561f017bdede16a97"},
        {"hash(rcpt, 'sha1')", "da9646a4aa567d2a55934d244909f12c0711479f"},
        {"hash(sender, 'sha256')",
         "aa20c23e3201834050679e1d88941b9a6fed0557c9a705cb2c315e2e63fd486d"},
        /* FIPS 180-4 / NIST examples: "abc", the empty string, the 896-bit message */
        {"hash('abc', 'sha512')",
         "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
         "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
        {"hash('', 'sha512')", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                               "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
        {"hash('abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
         "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu', 'sha512')",
         "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
         "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"},
        /* the padding boundary: 111 bytes fit one block, 112 need two (sha512sum) */
        {"hash('" A111 "', 'sha512')",
         "fa9121c7b32b9e01733d034cfc78cbf67f926c7ed83e82200ef86818196921760"
         "b4beff48404df811b953828274461673c68d04e297b0eb7b2b4d60fc6b566a2"},
        {"hash('" A111 "a', 'sha512')",
         "c01d080efd492776a1c43bd23dd99d0a2e626d481e16782e75d54c2503b5dc32"
         "bd05f0f1ba33e568b88fd2d970929b719ecbb152f58f130a407c8830604b70ca"},
        {"hash(rcpt, last_error)", "ERR:-1005"},
    };
    RUN(c);
}

/* Load errors: exact message and 1-based column. */
static void load_errors(void **state)
{
    (void)state;
    static const struct {
        const char *expr;
        size_t col;
        const char *msg;
    } c[] = {
        {"'abc", 1, "unterminated string"},
        {"1 + \"abc", 5, "unterminated string"},
        {"(1 + 2", 1, "unbalanced parentheses: '(' is never closed"},
        {"((1)", 1, "unbalanced parentheses: '(' is never closed"},
        {"1 + 2)", 6, "unbalanced parentheses: unexpected ')'"},
        {"trim('a'", 5, "unbalanced parentheses: '(' of trim() is never closed"},
        {"foo > 1", 1, "unknown variable 'foo'"},
        {"retry_nun > 1", 1, "unknown variable 'retry_nun' (did you mean 'retry_num'?)"},
        {"trim('a', 'b')", 1, "function 'trim' takes 1 argument, got 2"},
        {"1 + substring('a')", 5, "function 'substring' takes 3 arguments, got 1"},
        {"nosuch(1)", 1, "unknown function 'nosuch'"},
        {"trim", 1, "function 'trim' needs its arguments: trim(...)"},
        {"1 + key_get('a', 'b')", 5, "key_get: not supported yet"},
        {"counter_incr('a', 'b', 1)", 1, "counter_incr: not supported yet"},
        {"is_local_domain('', rcpt_domain)", 1, "is_local_domain: not supported yet"},
        {"dns_query(rcpt_domain, 'mx')", 1, "dns_query: not supported yet"},
        {"is_local_address('', rcpt)", 1, "is_local_address: not supported yet"},
        {"key_exists('s', rcpt)", 1, "key_exists: not supported yet"},
        {"key_set('s', rcpt, 1)", 1, "key_set: not supported yet"},
        {"!counter_get('s', rcpt)", 2, "counter_get: not supported yet"},
        {"matches('(', rcpt)", 9,
         "invalid regular expression in matches(): missing closing parenthesis at offset 1"},
        {"matches(rcpt, 'x')", 9, "matches(): the regular expression must be a string literal"},
        {"1 +", 4, "unexpected end of expression"},
        {"", 1, "unexpected end of expression"},
        {"1 2", 3, "unexpected '2' after the expression"},
        {"3x", 1, "invalid duration '3x' (use ms, s, m, h, d or w, e.g. 90s)"},
        {"hash('a', 'crc')", 11,
         "hash(): unknown algorithm (expected 'md5', 'sha1', 'sha256' or 'sha512')"},
        {"$12", 1, "unknown capture '$12' (matches() captures are $0..$9)"},
        {"99999999999999999999", 1, "integer literal '99999999999999999999' is out of range"},
        {"1 # 2", 3, "unexpected character '#'"},
        {"[1, 2", 1, "unbalanced brackets: '[' is never closed"},
        {"1 * * 2", 5, "unexpected '*'"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct rule_error err;
        struct rule_program *p =
            rule_compile_expr(c[i].expr, strlen(c[i].expr), RULE_VARS_ALL, &err);
        if (p)
            fail_msg("%s: compiled, want error '%s'", c[i].expr, c[i].msg);
        if (strcmp(err.msg, c[i].msg) != 0 || err.offset + 1 != c[i].col)
            fail_msg("%s: got %zu: '%s', want %zu: '%s'", c[i].expr, err.offset + 1, err.msg,
                     c[i].col, c[i].msg);
    }
}

static void variable_not_allowed(void **state)
{
    (void)state;
    struct rule_error err;
    const char *src = "mx == 'a'";
    uint32_t mask = RULE_VARS_ALL & ~(1u << RULE_VAR_MX);
    assert_null(rule_compile_expr(src, strlen(src), mask, &err));
    assert_string_equal(err.msg, "variable 'mx' is not available here");
}

static void constants_are_folded(void **state)
{
    (void)state;
    struct rule_error err;
    const char *src = "1 + 2 * 3 > 5 && to_uppercase('a' + 'b') == 'AB'";
    struct rule_program *p = rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err);
    assert_non_null(p);
    struct sv_buf d = {0};
    assert_int_equal(rule_disasm(p, &d), 0);
    assert_string_equal(d.ptr, "0000  RETK   K0     ; 1\n0001  RET\n");
    sv_buf_free(&d);
    rule_program_free(p);
}

static void disassembly(void **state)
{
    (void)state;
    struct rule_error err;
    const char *src = "-size + [retry_num][0] * 2 > 3 || !matches('^a', rcpt) && $0 != 'b'";
    struct rule_program *p = rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err);
    assert_non_null(p);
    struct sv_buf d = {0};
    assert_int_equal(rule_disasm(p, &d), 0);
    assert_string_equal(d.ptr, "0000  VAR    17     ; size\n"
                               "0001  NEG\n"
                               "0002  VAR    9      ; retry_num\n"
                               "0003  ARRAY  1\n"
                               "0004  CONST  K0     ; 0\n"
                               "0005  INDEX\n"
                               "0006  CONST  K1     ; 2\n"
                               "0007  MUL\n"
                               "0008  ADD\n"
                               "0009  GTK    K2     ; 3\n"
                               "0010  ORJ    -> 0020\n"
                               "0011  VAR    2      ; rcpt\n"
                               "0012  MATCH  R0     ; jit\n"
                               "0013  NOT\n"
                               "0014  ANDJ   -> 0019\n"
                               "0015  CAP    $0\n"
                               "0016  CONST  K3     ; 'b'\n"
                               "0017  NE\n"
                               "0018  BOOL\n"
                               "0019  BOOL\n"
                               "0020  RET\n");
    assert_int_equal(rule_program_size(p), 21);
    sv_buf_free(&d);
    rule_program_free(p);
}

static void runtime_limits(void **state)
{
    (void)state;
    struct rule_vars vars;
    context(&vars);
    struct rule_error err;
    struct rule_val v;
    const char *src = "retry_num + 1 + 2 + 3 + 4";
    struct rule_program *p = rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err);
    assert_non_null(p);
    rule_program_set_limits(p, 3, 8192);
    assert_int_equal(rule_eval(p, &vars, &v), RULE_E_BUDGET);
    rule_program_set_limits(p, 100, 8192);
    assert_int_equal(rule_eval(p, &vars, &v), 0);
    assert_int_equal(v.u.i, 12);
    rule_program_free(p);

    src = "sender + sender";
    p = rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err);
    assert_non_null(p);
    rule_program_set_limits(p, 100, 300);
    assert_int_equal(rule_eval(p, &vars, &v), RULE_E_ARENA);
    rule_program_set_limits(p, 100, 400);
    assert_int_equal(rule_eval(p, &vars, &v), 0);
    assert_int_equal(v.len, 400);
    /* the arena is reset per evaluation: many evaluations never exhaust it */
    for (int i = 0; i < 100; i++)
        assert_int_equal(rule_eval(p, &vars, &v), 0);
    rule_program_free(p);
}

static void too_deep_is_a_load_error(void **state)
{
    (void)state;
    char src[512];
    memset(src, '(', 200);
    strcpy(src + 200, "1");
    struct rule_error err;
    assert_null(rule_compile_expr(src, strlen(src), RULE_VARS_ALL, &err));
    assert_string_equal(err.msg, "expression nested too deeply (more than 48 levels)");
    /* wide but shallow: a long sum needs 2 stack slots and compiles */
    char wide[4096] = "retry_num";
    for (int i = 0; i < 300; i++)
        strcat(wide, " + retry_num");
    struct rule_program *p = rule_compile_expr(wide, strlen(wide), RULE_VARS_ALL, &err);
    assert_non_null(p);
    rule_program_free(p);
    /* longer than the instruction budget: refused at load, never cut short at run time */
    static char huge[40000];
    strcpy(huge, "retry_num");
    for (int i = 0; i < 2100; i++)
        strcat(huge, " + retry_num");
    assert_null(rule_compile_expr(huge, strlen(huge), RULE_VARS_ALL, &err));
    assert_string_equal(err.msg, "expression too long (more than 4094 instructions)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literals),
        cmocka_unit_test(arithmetic),
        cmocka_unit_test(comparison_and_logic),
        cmocka_unit_test(precedence),
        cmocka_unit_test(text_functions),
        cmocka_unit_test(array_email_ip_functions),
        cmocka_unit_test(hash_function),
        cmocka_unit_test(load_errors),
        cmocka_unit_test(variable_not_allowed),
        cmocka_unit_test(constants_are_folded),
        cmocka_unit_test(disassembly),
        cmocka_unit_test(runtime_limits),
        cmocka_unit_test(too_deep_is_a_load_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
