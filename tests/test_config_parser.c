/* The config API in-process: cfg_doc_parse, positions of keys and values, cfg_get,
 * value types, error positions and texts, diagnostics output, cfg_suggest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct cfg_doc *parse(const char *src, struct cfg_diag *d)
{
    cfg_diag_init(d);
    return cfg_doc_parse("t.toml", src, strlen(src), d);
}

/* Parses `src`, which must fail; returns the single diagnostic as printed. */
static char *parse_error(const char *src)
{
    struct cfg_diag d;
    struct cfg_doc *doc = parse(src, &d);
    assert_null(doc);
    assert_int_equal(d.errors, 1);
    assert_int_equal(d.len, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cfg_diag_print(&d, f);
    fclose(f);
    cfg_diag_free(&d);
    return buf;
}

static void assert_error(const char *src, const char *want)
{
    char *got = parse_error(src);
    assert_string_equal(got, want);
    free(got);
}

static void positions_of_keys_and_values(void **state)
{
    (void)state;
    struct cfg_diag d;
    const char *src = "# comment\n"
                      "title = \"x\"\n"
                      "[server.workers]\n"
                      "  threads   =  4\n"
                      "ml = \"\"\"\n"
                      "one\n"
                      "two\"\"\"\n"
                      "after = [ 1,\n"
                      "          { k = true } ]\n";
    struct cfg_doc *doc = parse(src, &d);
    assert_non_null(doc);
    assert_int_equal(d.len, 0);
    assert_string_equal(doc->file, "t.toml");

    const struct cfg_entry *title = cfg_table_find(doc->root, "title");
    assert_non_null(title);
    assert_int_equal(title->key_pos.line, 2);
    assert_int_equal(title->key_pos.col, 1);
    assert_int_equal(title->value->pos.line, 2);
    assert_int_equal(title->value->pos.col, 9);
    assert_string_equal(title->value->pos.file, "t.toml");

    const struct cfg_value *server = cfg_get(doc->root, "server");
    assert_non_null(server);
    assert_int_equal(server->type, CFG_TABLE);
    assert_int_equal(server->pos.line, 3); /* created by the header's first segment */
    assert_int_equal(server->pos.col, 2);
    const struct cfg_value *workers = cfg_get(doc->root, "server.workers");
    assert_int_equal(workers->pos.line, 3); /* the header itself */
    assert_int_equal(workers->pos.col, 1);

    const struct cfg_entry *threads = cfg_table_find(workers, "threads");
    assert_int_equal(threads->key_pos.line, 4);
    assert_int_equal(threads->key_pos.col, 3);
    assert_int_equal(threads->value->pos.col, 16);
    assert_int_equal(threads->value->type, CFG_INTEGER);
    assert_int_equal(threads->value->u.integer, 4);

    /* A multi-line string moves the line count on for what follows. */
    const struct cfg_value *ml = cfg_get(workers, "ml");
    assert_string_equal(ml->u.str.ptr, "one\ntwo");
    assert_int_equal(ml->pos.line, 5);
    const struct cfg_entry *after = cfg_table_find(workers, "after");
    assert_int_equal(after->key_pos.line, 8);
    const struct cfg_value *arr = after->value;
    assert_int_equal(arr->type, CFG_ARRAY);
    assert_int_equal(arr->u.array.len, 2);
    assert_int_equal(arr->u.array.items[0]->pos.line, 8);
    assert_int_equal(arr->u.array.items[0]->pos.col, 11);
    const struct cfg_value *inl = arr->u.array.items[1];
    assert_int_equal(inl->type, CFG_TABLE);
    assert_int_equal(inl->pos.line, 9);
    assert_int_equal(inl->pos.col, 11);
    const struct cfg_entry *k = cfg_table_find(inl, "k");
    assert_int_equal(k->key_pos.col, 13);
    assert_int_equal(k->value->pos.col, 17);
    assert_true(k->value->u.boolean);
    cfg_doc_free(doc);
    cfg_diag_free(&d);
}

static void crlf_lines_count_once(void **state)
{
    (void)state;
    struct cfg_diag d;
    struct cfg_doc *doc = parse("a = 1\r\n\r\nb = 2\r\n", &d);
    assert_non_null(doc);
    const struct cfg_entry *b = cfg_table_find(doc->root, "b");
    assert_int_equal(b->key_pos.line, 3);
    assert_int_equal(b->key_pos.col, 1);
    cfg_doc_free(doc);
    cfg_diag_free(&d);
    /* Multi-line strings hold LF whatever the file used. */
    doc = parse("s = \"\"\"\r\none\r\ntwo\"\"\"\r\nt = '''x\r\ny'''\r\n", &d);
    assert_non_null(doc);
    assert_string_equal(cfg_get(doc->root, "s")->u.str.ptr, "one\ntwo");
    assert_string_equal(cfg_get(doc->root, "t")->u.str.ptr, "x\ny");
    assert_int_equal(cfg_table_find(doc->root, "t")->key_pos.line, 4);
    cfg_doc_free(doc);
    cfg_diag_free(&d);
    assert_error("a = 1\r\nb = 2\rc = 3\n",
                 "t.toml:2:6: unexpected carriage return after the value, expected a newline\n");
}

static void cfg_get_paths(void **state)
{
    (void)state;
    struct cfg_diag d;
    struct cfg_doc *doc = parse("a.b.c = 1\n[x]\ny = \"s\"\n[[arr]]\nz = 1\n", &d);
    assert_non_null(doc);
    assert_int_equal(cfg_get(doc->root, "a.b.c")->u.integer, 1);
    assert_int_equal(cfg_get(doc->root, "a.b")->type, CFG_TABLE);
    assert_string_equal(cfg_get(doc->root, "x.y")->u.str.ptr, "s");
    assert_null(cfg_get(doc->root, "a.b.d"));
    assert_null(cfg_get(doc->root, "x.y.z")); /* through a string */
    assert_null(cfg_get(doc->root, "arr.z")); /* arrays are not walked */
    assert_null(cfg_get(doc->root, "a."));
    assert_null(cfg_get(doc->root, ""));
    assert_int_equal(cfg_get(doc->root, "arr")->type, CFG_ARRAY);
    assert_null(cfg_table_find(doc->root, "nope"));
    assert_null(cfg_table_find(cfg_get(doc->root, "a.b.c"), "x")); /* not a table */
    cfg_doc_free(doc);
    cfg_diag_free(&d);
}

static void value_types_and_text(void **state)
{
    (void)state;
    struct cfg_diag d;
    struct cfg_doc *doc = parse("hex = 0xdead_BEEF\n"
                                "oct = 0o755\n"
                                "bin = -0\n"
                                "min = -9223372036854775808\n"
                                "max = 0x7fffffffffffffff\n"
                                "f = 6.02e+23\n"
                                "ninf = -inf\n"
                                "nan = nan\n"
                                "odt = 1979-05-27 07:32:00.5z\n"
                                "ldt = 1979-05-27t07:32:00\n"
                                "ld = 2024-02-29\n"
                                "lt = 23:59:60.123456\n"
                                "s = \"tab\\there \\u00e9 nul\\u0000end\"\n"
                                "lit = 'C:\\path'\n",
                                &d);
    assert_non_null(doc);
    const struct cfg_value *r = doc->root;
    assert_int_equal(cfg_get(r, "hex")->u.integer, 0xdeadbeef);
    assert_int_equal(cfg_get(r, "oct")->u.integer, 0755);
    assert_int_equal(cfg_get(r, "bin")->u.integer, 0);
    assert_true(cfg_get(r, "min")->u.integer == INT64_MIN);
    assert_true(cfg_get(r, "max")->u.integer == INT64_MAX);
    assert_int_equal(cfg_get(r, "f")->type, CFG_FLOAT);
    assert_true(cfg_get(r, "f")->u.flt == 6.02e+23);
    assert_true(isinf(cfg_get(r, "ninf")->u.flt) && cfg_get(r, "ninf")->u.flt < 0);
    assert_true(isnan(cfg_get(r, "nan")->u.flt));
    assert_int_equal(cfg_get(r, "odt")->type, CFG_DATETIME);
    assert_string_equal(cfg_get(r, "odt")->u.str.ptr, "1979-05-27T07:32:00.500Z");
    assert_int_equal(cfg_get(r, "ldt")->type, CFG_DATETIME_LOCAL);
    assert_string_equal(cfg_get(r, "ldt")->u.str.ptr, "1979-05-27T07:32:00");
    assert_int_equal(cfg_get(r, "ld")->type, CFG_DATE_LOCAL);
    assert_int_equal(cfg_get(r, "lt")->type, CFG_TIME_LOCAL);
    assert_string_equal(cfg_get(r, "lt")->u.str.ptr, "23:59:60.123456");
    const struct cfg_value *s = cfg_get(r, "s");
    assert_int_equal(s->u.str.len, strlen("tab\there \xc3\xa9 nul") + 1 + 3);
    assert_memory_equal(s->u.str.ptr, "tab\there \xc3\xa9 nul\0end", s->u.str.len);
    assert_string_equal(cfg_get(r, "lit")->u.str.ptr, "C:\\path");
    assert_string_equal(cfg_type_name(CFG_DATETIME_LOCAL), "datetime-local");
    assert_string_equal(cfg_type_name(CFG_BOOL), "bool");

    struct sv_buf out = {0};
    assert_int_equal(cfg_to_json(cfg_get(r, "s"), &out), 0);
    assert_string_equal(
        out.ptr, "{\"type\": \"string\", \"value\": \"tab\\there \xc3\xa9 nul\\u0000end\"}\n");
    sv_buf_free(&out);
    cfg_doc_free(doc);
    cfg_diag_free(&d);
}

static void errors_name_the_token_and_position(void **state)
{
    (void)state;
    assert_error("a = 1\na = 2\n", "t.toml:2:1: duplicate key 'a' (first defined at line 1, "
                                   "column 1)\n");
    assert_error("x = 9223372036854775808\n",
                 "t.toml:1:5: integer '9223372036854775808' is out of range (64-bit signed)\n");
    assert_error("x = 0x8000000000000000\n",
                 "t.toml:1:5: integer '0x8000000000000000' is out of range (64-bit signed)\n");
    assert_error("x = 1e999\n", "t.toml:1:5: float '1e999' is out of range\n");
    assert_error("[a]\nb = 1\n[a]\n", "t.toml:3:2: table 'a' is already defined (line 1)\n");
    assert_error("s = \"bad \\q\"\n", "t.toml:1:10: invalid escape sequence '\\q' in string\n");
    assert_error("d = 2023-02-29\n",
                 "t.toml:1:5: invalid date/time '2023-02-29': day out of range\n");
    assert_error("t = { a = 1, }\n", "t.toml:1:14: trailing comma in inline table\n");
    assert_error("k = \"\xff\"\n", "t.toml:1:6: invalid UTF-8 byte 0xFF (TOML files must be "
                                   "UTF-8)\n");
    assert_error("v = yes\n", "t.toml:1:5: invalid value 'yes' (strings need quotes)\n");
    assert_error("a = 1 b = 2\n",
                 "t.toml:1:7: unexpected 'b' after the value, expected a newline\n");
    assert_error("[t]\nx.y = 1\n[t.x]\n", "t.toml:3:4: table 't.x' is already defined (line 2)\n");
}

static void deep_nesting_is_an_error_not_a_crash(void **state)
{
    (void)state;
    char src[1024] = "a = ";
    for (int i = 0; i < 500; i++)
        strcat(src, "[");
    char *got = parse_error(src);
    assert_non_null(strstr(got, "nested too deeply"));
    free(got);
}

/* Big tables switch to a hash index: every key must still be found, and a
 * duplicate far down still caught with both positions. */
static void many_keys_are_found_and_duplicates_caught(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct sv_buf src = {0};
    for (int i = 0; i < N; i++)
        assert_int_equal(sv_buf_printf(&src, "k%d = %d\n", i, i), 0);
    struct cfg_diag d;
    cfg_diag_init(&d);
    struct cfg_doc *doc = cfg_doc_parse("t.toml", src.ptr, src.len, &d);
    assert_non_null(doc);
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        const struct cfg_entry *e = cfg_table_find(doc->root, key);
        assert_non_null(e);
        assert_int_equal(e->value->u.integer, i);
        assert_int_equal(e->key_pos.line, i + 1);
    }
    assert_null(cfg_table_find(doc->root, "k3000"));
    cfg_doc_free(doc);
    cfg_diag_free(&d);
    assert_int_equal(sv_buf_puts(&src, "k1234 = 0\n"), 0);
    char *got = parse_error(src.ptr);
    assert_string_equal(got, "t.toml:3001:1: duplicate key 'k1234' (first defined at line 1235, "
                             "column 1)\n");
    free(got);
    sv_buf_free(&src);
}

static void diagnostics_print_and_outlive_the_document(void **state)
{
    (void)state;
    struct cfg_diag d;
    cfg_diag_init(&d);
    char *name = strdup("gone.toml");
    cfg_error(&d, ((struct cfg_pos){name, 3, 7}), "bad %s", "thing");
    cfg_warn(&d, ((struct cfg_pos){name, 4, 1}), "odd");
    cfg_error(&d, ((struct cfg_pos){NULL, 0, 0}), "no position");
    free(name); /* entries keep their own copy of the file name */
    assert_int_equal(d.errors, 2);
    assert_int_equal(d.len, 3);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cfg_diag_print(&d, f);
    fclose(f);
    assert_string_equal(buf, "gone.toml:3:7: bad thing\n"
                             "gone.toml:4:1: warning: odd\n"
                             "salvo: no position\n");
    free(buf);
    cfg_diag_free(&d);
    cfg_diag_free(NULL);
    cfg_doc_free(NULL);
}

static void suggest_picks_the_closest_within_reach(void **state)
{
    (void)state;
    const char *const names[] = {"redis.url", "redis.queue", "server.workers.threads", "log.level"};
    size_t n = sizeof(names) / sizeof(names[0]);
    assert_string_equal(cfg_suggest("redis.ur", names, n), "redis.url");
    assert_string_equal(cfg_suggest("redis.qeueu", names, n), "redis.queue");
    assert_string_equal(cfg_suggest("REDIS.URL", names, n), "redis.url");
    assert_string_equal(cfg_suggest("server.workers.thraeds", names, n), "server.workers.threads");
    assert_string_equal(cfg_suggest("log.levle", names, n), "log.level");
    assert_null(cfg_suggest("colour", names, n));
    assert_null(cfg_suggest("redis.password", names, n));
    assert_null(cfg_suggest("x", names, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(positions_of_keys_and_values),
        cmocka_unit_test(crlf_lines_count_once),
        cmocka_unit_test(cfg_get_paths),
        cmocka_unit_test(value_types_and_text),
        cmocka_unit_test(errors_name_the_token_and_position),
        cmocka_unit_test(deep_nesting_is_an_error_not_a_crash),
        cmocka_unit_test(many_keys_are_found_and_duplicates_caught),
        cmocka_unit_test(diagnostics_print_and_outlive_the_document),
        cmocka_unit_test(suggest_picks_the_closest_within_reach),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
