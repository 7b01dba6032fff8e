/* `salvo enqueue` and `salvo queue` against a real redis-server: exact messages
 * for bad input (and nothing written), exit 2 naming the address when Redis is
 * down, and the operator commands. SALVO_REDIS_URL points the CLI at the test server. */
#include "test_redisq_util.h"

#include <unistd.h>

#include "testutil.h"

static struct tu_redis srv;
static char *dir;

static int setup(void **state)
{
    (void)state;
    if (tu_redis_start(&srv, false, NULL))
        return -1;
    dir = tu_mkdtemp();
    unsetenv("SALVO_CONFIG");
    setenv("SALVO_REDIS_URL", srv.url, 1);
    return dir && chdir(dir) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_redis_stop(&srv);
    tu_rmtree(dir);
    free(dir);
    return 0;
}

static struct tu_result run(const char *input, const char *const *args)
{
    const char *argv[16] = {tu_salvo_bin()};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    struct tu_result r;
    assert_int_equal(tu_run(argv, input, 60, &r), 0);
    return r;
}
#define RUN(input, ...) run(input, (const char *const[]){__VA_ARGS__, NULL})

static long long dbsize(void)
{
    return tq_cli_int(&srv, "DBSIZE", NULL, NULL);
}

static void help_everywhere(void **state)
{
    (void)state;
    struct tu_result r = RUN(NULL, "enqueue", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo enqueue"));
    tu_result_free(&r);
    r = RUN(NULL, "queue", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: salvo queue stats"));
    tu_result_free(&r);
    r = RUN(NULL, "queue", "frobnicate");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: queue: unknown subcommand 'frobnicate' (stats, list, "
                               "show, retry, cancel)\n");
    tu_result_free(&r);
}

static void bad_csv_reports_every_line_and_writes_nothing(void **state)
{
    (void)state;
    free(tu_write_file(".", "c.csv",
                       "email,first,code\r\n"
                       "ann@x.example,Ann,A1\r\n"
                       "bob@x,Bob,B2\r\n"
                       "carl@y.example,Carl\r\n"
                       "dan@y.example,\"Dan\nthe man\",D4\r\n"
                       "eve@y.example,Ev\xff,E5\r\n"
                       "fay@y.example,\"Fay\"x,F6\r\n"
                       "\r\n"
                       "gus@y.example,Gus,G7\r\n"));
    free(tu_write_file(".", "t.eml", "Subject: Hi {{first}}\n\n{{code}} {{nope}}\n"));
    long long before = dbsize();
    struct tu_result r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients",
                             "c.csv", "--template", "t.eml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err,
                        "t.eml:3: unknown placeholder {{nope}}: the CSV has no such column (email, "
                        "first, code)\n"
                        "c.csv:3: malformed address 'bob@x': domain has no dot\n"
                        "c.csv:4: expected 3 fields, found 2\n"
                        "c.csv:5: value of 'first' contains a line break\n"
                        "c.csv:7: not valid UTF-8 (byte 0xFF at column 17)\n"
                        "c.csv:8: unexpected character after a closing quote\n"
                        "salvo: c.csv: 6 errors; nothing was enqueued\n");
    tu_result_free(&r);
    assert_int_equal(dbsize(), before);

    /* Many bad lines: 20 shown, then a count. */
    struct sv_buf csv = {0};
    sv_buf_puts(&csv, "email\n");
    for (int i = 0; i < 25; i++)
        sv_buf_printf(&csv, "user%d@@x.example\n", i);
    free(tu_write_file(".", "many.csv", csv.ptr));
    sv_buf_free(&csv);
    free(tu_write_file(".", "plain.eml", "Subject: x\n\nsame for all\n"));
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "many.csv",
            "--template", "plain.eml");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "many.csv:2: malformed address 'user0@@x.example': more than "
                                  "one '@'\n"));
    assert_non_null(strstr(r.err, "many.csv:21: malformed address 'user19@@x.example'"));
    assert_null(strstr(r.err, "many.csv:22:"));
    assert_non_null(strstr(r.err, "\n... and 5 more\nsalvo: many.csv: 25 errors; nothing was "
                                  "enqueued\n"));
    tu_result_free(&r);

    free(tu_write_file(".", "nomail.csv", "name,code\nx,1\n"));
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "nomail.csv",
            "--template", "plain.eml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "nomail.csv:1: no 'email' column in the header\n"
                               "salvo: nomail.csv: 1 error; nothing was enqueued\n");
    tu_result_free(&r);

    r = RUN("x", "enqueue", "--from", "me@sender.example", "--to", "a@b.example,bad", "-");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: --to: malformed address 'bad': missing '@'\n");
    tu_result_free(&r);
    assert_int_equal(dbsize(), before);
}

static void redis_down_exits_2_naming_the_address(void **state)
{
    (void)state;
    int port = tu_free_port();
    char url[64], want[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    snprintf(want, sizeof(want), "salvo: redis 127.0.0.1:%d: cannot connect: connection refused\n",
             port);
    setenv("SALVO_REDIS_URL", url, 1);
    struct tu_result r = RUN(NULL, "queue", "stats");
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    r = RUN("Subject: x\n\nbody\n", "enqueue", "--from", "a@b.example", "--to", "c@d.example");
    assert_int_equal(r.status, 2);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    setenv("SALVO_REDIS_URL", "rediss://127.0.0.1:6379/0", 1);
    r = RUN(NULL, "queue", "stats");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: redis rediss://127.0.0.1:6379/0: bad redis.url: TLS to "
                               "Redis is not supported by this hiredis (0.14)\n");
    tu_result_free(&r);
    setenv("SALVO_REDIS_URL", srv.url, 1);
}

static void enqueue_stats_show_cancel(void **state)
{
    (void)state;
    struct tu_result r = RUN("Subject: hi\r\n\r\nhello\r\n", "enqueue", "--from",
                             "me@sender.example", "--to", "a@x.example, b@x.example,c@y.example");
    assert_int_equal(r.status, 0);
    char single[24];
    snprintf(single, sizeof(single), "%s", r.out);
    assert_true(atoi(single) > 0);
    tu_result_free(&r);

    struct sv_buf csv = {0};
    sv_buf_puts(&csv, " Email , first\n"); /* spaces around names and addresses are trimmed */
    for (int i = 0; i < 120; i++)
        sv_buf_printf(&csv, " u%d@d%d.example ,\"Name, %d\"\n", i, i % 2, i);
    free(tu_write_file(".", "ok.csv", csv.ptr));
    sv_buf_free(&csv);
    free(tu_write_file(".", "ok.eml", "To: {{email}}\nSubject: Hi {{first}}\n\nHello\n"));
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "ok.csv", "--template",
            "ok.eml", "--campaign", "spring");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, ""); /* no progress bar: stderr is not a terminal */
    int camp = atoi(r.out);
    assert_int_equal(camp, atoi(single) + 1);
    tu_result_free(&r);

    r = RUN(NULL, "queue", "stats");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "ready      123\nscheduled  0\ninflight   0\ndelivered  0\n"
                               "bounced    0\ndead       0\n");
    tu_result_free(&r);
    r = RUN(NULL, "queue", "stats", "--json", "--campaign", "spring");
    assert_int_equal(r.status, 0);
    char want[256];
    snprintf(want, sizeof(want),
             "{\"message\": %d, \"ready\": 120, \"scheduled\": 0, \"inflight\": 0, "
             "\"delivered\": 0, \"bounced\": 0, \"dead\": 0, \"duplicates\": 0, "
             "\"reclaimed\": 0}\n",
             camp);
    assert_string_equal(r.out, want);
    tu_result_free(&r);
    /* Personalised: the job carries the one used field; jobs of 50 per domain. */
    assert_int_equal(tq_cli_int(&srv, "XLEN", "salvo:{default}:ready", NULL), 2 + 4);

    r = RUN(NULL, "queue", "show", "spring");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "from       me@sender.example\ncampaign   spring\n"));
    assert_non_null(strstr(r.out, "state      pending\nbody       43 bytes (template)\n"
                                  "recipients 120\nready      120\n"));
    tu_result_free(&r);
    r = RUN(NULL, "queue", "list");
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "ID       CREATED", 16) == 0);
    /* Newest first: the campaign, then the single message. */
    char *line2 = strchr(r.out, '\n') + 1, *line3 = strchr(line2, '\n') + 1;
    assert_int_equal(atoi(line2), camp);
    assert_non_null(strstr(line2, " pending    spring "));
    assert_int_equal(atoi(line3), atoi(single));
    tu_result_free(&r);

    r = RUN(NULL, "queue", "cancel", "spring");
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want), "message %d: 120 recipients cancelled\n", camp);
    assert_string_equal(r.out, want);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "stats");
    assert_string_equal(r.out, "ready      3\nscheduled  0\ninflight   0\ndelivered  0\n"
                               "bounced    0\ndead       120\n");
    tu_result_free(&r);
    r = RUN(NULL, "queue", "retry", "spring");
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "salvo: message %d was cancelled; nothing to retry\n", camp);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "show", "nope");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: no message or campaign 'nope' in this queue\n");
    tu_result_free(&r);
}

static void config_file_names_server_and_queue(void **state)
{
    (void)state;
    char toml[200];
    snprintf(toml, sizeof(toml), "[redis]\nurl = \"%s\"\nqueue = \"fromconf\"\n", srv.url);
    free(tu_write_file(".", "salvo.toml", toml));
    unsetenv("SALVO_REDIS_URL");
    struct tu_result r = RUN("Subject: x\n\nbody\n", "enqueue", "-c", "salvo.toml", "--from",
                             "a@b.example", "--to", "c@d.example");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    assert_int_equal(tq_cli_int(&srv, "XLEN", "salvo:{fromconf}:ready", NULL), 1);
    r = RUN(NULL, "queue", "stats", "--json", "-c", "salvo.toml");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "{\"ready\": 1, "));
    tu_result_free(&r);
    unlink("salvo.toml");
    setenv("SALVO_REDIS_URL", srv.url, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_everywhere),
        cmocka_unit_test(bad_csv_reports_every_line_and_writes_nothing),
        cmocka_unit_test(redis_down_exits_2_naming_the_address),
        cmocka_unit_test(enqueue_stats_show_cancel),
        cmocka_unit_test(config_file_names_server_and_queue),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
