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

/* Writes `len` bytes (NULs allowed) to ./name. */
static void write_bytes(const char *name, const char *data, size_t len)
{
    FILE *f = fopen(name, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static long long seq(void)
{
    return tq_cli_int(&srv, "GET", "salvo:{default}:seq", NULL);
}

/* Excel's "CSV UTF-8" starts with a byte order mark: it is not part of the first
 * column's name. */
static void csv_with_bom_is_accepted(void **state)
{
    (void)state;
    free(tu_write_file(".", "bom.csv",
                       "\xEF\xBB\xBF"
                       "email,first\r\nann@x.example,Ann\r\nbob@x.example,Bob\r\n"));
    free(tu_write_file(".", "bom.eml", "Subject: Hi {{first}}\n\nx\n"));
    struct tu_result r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients",
                             "bom.csv", "--template", "bom.eml", "--campaign", "bom");
    assert_string_equal(r.err, "");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "stats", "--json", "--campaign", "bom");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"ready\": 2, "));
    tu_result_free(&r);
    /* A file starting with another 0xEF sequence is not a BOM: its header is read as it
     * is (a UTF-8 'ï' starts the first column's name) and the error names it. */
    free(tu_write_file(".", "ef.csv", "\xEF\xBB\x80mail,first\nann@x.example,Ann\n"));
    long long before = dbsize();
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "ef.csv", "--template",
            "bom.eml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "ef.csv:1: no 'email' column in the header\n"
                               "salvo: ef.csv: 1 error; nothing was enqueued\n");
    tu_result_free(&r);
    assert_int_equal(dbsize(), before);
}

/* A campaign name names one message: reusing it is refused before anything is written
 * (no new message, no id used, the name still finds the first campaign). */
static void campaign_name_reuse_is_refused(void **state)
{
    (void)state;
    free(tu_write_file(".", "a.csv", "email\nann@x.example\n"));
    free(tu_write_file(".", "a.eml", "Subject: a\n\nx\n"));
    struct tu_result r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients",
                             "a.csv", "--template", "a.eml", "--campaign", "autumn");
    assert_int_equal(r.status, 0);
    unsigned long long first = strtoull(r.out, NULL, 10);
    assert_true(first > 0);
    tu_result_free(&r);
    long long before = dbsize(), seq_before = seq();
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "a.csv", "--template",
            "a.eml", "--campaign", "autumn");
    assert_int_equal(r.status, 1);
    char want[200];
    snprintf(want, sizeof(want),
             "salvo: --campaign: 'autumn' already exists (message %llu); nothing was enqueued, "
             "choose another name\n",
             first);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    tu_result_free(&r);
    assert_int_equal(dbsize(), before);
    assert_int_equal(seq(), seq_before);
    r = RUN(NULL, "queue", "show", "autumn");
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want), "id         %llu\n", first);
    assert_memory_equal(r.out, want, strlen(want));
    tu_result_free(&r);
}

/* RFC 5321 4.1.3: an IP address is a bracketed literal; "1.2.3.4" is not a domain. */
static void unbracketed_ip_is_malformed(void **state)
{
    (void)state;
    long long before = dbsize();
    struct tu_result r =
        RUN("Subject: x\n\nbody\n", "enqueue", "--from", "a@b.example", "--to", "a@1.2.3.4");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: --to: malformed address 'a@1.2.3.4': numeric top-level "
                               "label (an IP address must be bracketed: [1.2.3.4])\n");
    tu_result_free(&r);
    free(tu_write_file(".", "ip.csv", "email\nok@x.example\nb@10.0.0.1\n"));
    free(tu_write_file(".", "ip.eml", "Subject: a\n\nx\n"));
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "ip.csv", "--template",
            "ip.eml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "ip.csv:3: malformed address 'b@10.0.0.1': numeric top-level "
                               "label (an IP address must be bracketed: [1.2.3.4])\n"
                               "salvo: ip.csv: 1 error; nothing was enqueued\n");
    tu_result_free(&r);
    assert_int_equal(dbsize(), before);
    /* The bracketed literal is fine. */
    r = RUN("Subject: x\n\nbody\n", "enqueue", "--from", "a@b.example", "--to", "a@[1.2.3.4]");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
}

static void nul_byte_in_body_is_refused(void **state)
{
    (void)state;
    long long before = dbsize(), seq_before = seq();
    static const char body[] = "Subject: x\n\nab\0cd\n"; /* the NUL is byte 15 */
    write_bytes("nul.eml", body, sizeof(body) - 1);
    struct tu_result r =
        RUN(NULL, "enqueue", "--from", "a@b.example", "--to", "c@d.example", "nul.eml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: nul.eml: byte 15: message contains a NUL byte\n");
    tu_result_free(&r);
    /* The same on stdin: tu_run feeds a C string, so run it through a shell. */
    const char *sh[] = {"/bin/sh", "-c",
                        "printf 'S: x\\n\\n\\000' | \"$0\" enqueue --from "
                        "a@b.example --to c@d.example",
                        tu_salvo_bin(), NULL};
    assert_int_equal(tu_run(sh, NULL, 30, &r), 0);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: (stdin): byte 7: message contains a NUL byte\n");
    tu_result_free(&r);
    /* A campaign template. */
    free(tu_write_file(".", "n.csv", "email\nann@x.example\n"));
    static const char tpl[] = "\0Subject: x\n\nhi\n"; /* byte 1 */
    write_bytes("nul-tpl.eml", tpl, sizeof(tpl) - 1);
    r = RUN(NULL, "enqueue", "--from", "me@sender.example", "--recipients", "n.csv", "--template",
            "nul-tpl.eml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: nul-tpl.eml: byte 1: message contains a NUL byte\n");
    tu_result_free(&r);
    assert_int_equal(dbsize(), before);
    assert_int_equal(seq(), seq_before);
}

/* The stats line of `queue stats --json --campaign ID` for message `id`. */
static void msg_stats_is(uint64_t id, long long ready, long long inflight, long long delivered,
                         long long bounced, long long dead)
{
    char ids[24], want[256];
    snprintf(ids, sizeof(ids), "%llu", (unsigned long long)id);
    struct tu_result r =
        RUN(NULL, "queue", "stats", "-c", "revive.toml", "--json", "--campaign", ids);
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want),
             "{\"message\": %s, \"ready\": %lld, \"scheduled\": 0, \"inflight\": %lld, "
             "\"delivered\": %lld, \"bounced\": %lld, \"dead\": %lld, ",
             ids, ready, inflight, delivered, bounced, dead);
    assert_true(strncmp(r.out, want, strlen(want)) == 0);
    tu_result_free(&r);
}

/* `salvo queue retry ID --dead` on the real binary: a message with 3 bounced and 2
 * expired recipients (and a job still in flight, so its body is kept) gets all 5
 * back to ready, with both lines printed; a second call finds nothing. Refused,
 * exit 1 with the exact line: a cancelled message, and one whose every recipient
 * is final (its body is gone). */
static void retry_dead_revives_letters(void **state)
{
    (void)state;
    free(tu_write_file(".", "revive.toml", "[redis]\nqueue = \"revive\"\n"));
    struct rq *q = tq_open(&srv, "revive", "cli-revive");
    uint64_t id = tq_enqueue(q, 20, 2); /* 2 jobs of 10 */
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 100, &b), 2);
    const struct rq_job *j = b->jobs[0].msg == id ? &b->jobs[0] : &b->jobs[1];
    struct rq_result res[10];
    for (int k = 0; k < 10; k++) {
        if (k < 5)
            res[k] = (struct rq_result){.outcome = RQ_DELIVERED, .reply = "250 ok"};
        else if (k < 8)
            res[k] = (struct rq_result){.outcome = RQ_BOUNCED, .reply = "550 5.1.1 no such user"};
        else
            res[k] = (struct rq_result){.outcome = RQ_DEAD, .error = "expired after 3 attempts"};
    }
    assert_int_equal(rq_report(q, j, res), 0);
    assert_int_equal(rq_flush(q), 0);
    msg_stats_is(id, 0, 10, 5, 3, 2);

    char ids[24], want[256];
    snprintf(ids, sizeof(ids), "%llu", (unsigned long long)id);
    struct tu_result r = RUN(NULL, "queue", "retry", ids, "--dead", "-c", "revive.toml");
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want),
             "message %s: 0 recipients ready now\n"
             "message %s: 5 dead recipients ready again (retry_num 0)\n",
             ids, ids);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    tu_result_free(&r);
    msg_stats_is(id, 5, 10, 5, 0, 0);

    r = RUN(NULL, "queue", "retry", ids, "--dead", "-c", "revive.toml");
    assert_int_equal(r.status, 0);
    snprintf(want, sizeof(want),
             "message %s: 0 recipients ready now\n"
             "message %s: 0 dead recipients ready again (retry_num 0)\n",
             ids, ids);
    assert_string_equal(r.out, want);
    tu_result_free(&r);
    msg_stats_is(id, 5, 10, 5, 0, 0);

    /* Everything final: the revived job and the other one delivered. */
    const struct rq_job *other = j == &b->jobs[0] ? &b->jobs[1] : &b->jobs[0];
    tq_report_all(q, other, RQ_DELIVERED, 0, NULL);
    struct rq_batch *b2;
    assert_int_equal(rq_claim(q, 100, &b2), 2); /* a letter per outcome: 2 jobs */
    for (size_t i = 0; i < b2->njobs; i++) {
        assert_int_equal(b2->jobs[i].msg, id);
        assert_int_equal(b2->jobs[i].retry_num, 0);
        tq_report_all(q, &b2->jobs[i], RQ_BOUNCED, 0, "550 5.1.1 no such user");
    }
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    rq_batch_free(b2);
    msg_stats_is(id, 0, 0, 15, 5, 0);
    r = RUN(NULL, "queue", "retry", ids, "--dead", "-c", "revive.toml");
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want),
             "salvo: message %s: its body was dropped when its last recipient became final "
             "(enqueue it again); its dead letters cannot be retried\n",
             ids);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    msg_stats_is(id, 0, 0, 15, 5, 0);

    /* Cancelled: refused before anything moves. */
    uint64_t c = tq_enqueue(q, 4, 1);
    int64_t n;
    assert_int_equal(rq_msg_cancel(q, c, &n), 0);
    assert_int_equal(n, 4);
    snprintf(ids, sizeof(ids), "%llu", (unsigned long long)c);
    r = RUN(NULL, "queue", "retry", ids, "--dead", "-c", "revive.toml");
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "salvo: message %s was cancelled; nothing to retry\n", ids);
    assert_string_equal(r.err, want);
    assert_string_equal(r.out, "");
    tu_result_free(&r);
    msg_stats_is(c, 0, 0, 0, 0, 4);
    rq_free(q);
    unlink("revive.toml");
}

/* A campaign whose hash expired (queue.retention) while nothing else finished since:
 * `queue show` calls it unknown, so `enqueue --campaign` with its name makes a new
 * message rather than answer that it already exists. */
static void expired_campaign_name_is_free(void **state)
{
    (void)state;
    free(tu_write_file(".", "exp.toml", "[redis]\nqueue = \"exp\"\n[queue]\nretention = \"1s\"\n"));
    free(tu_write_file(".", "exp.csv", "email\nx@y.example\n"));
    free(tu_write_file(".", "exp.eml", "Subject: exp\n\nhi\n"));
    struct tu_result r =
        RUN(NULL, "enqueue", "-c", "exp.toml", "--from", "a@b.example", "--recipients", "exp.csv",
            "--template", "exp.eml", "--campaign", "winter");
    assert_int_equal(r.status, 0);
    int first = atoi(r.out);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "cancel", "winter", "-c", "exp.toml");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    tq_sleep_ms(1200);
    r = RUN(NULL, "queue", "show", "winter", "-c", "exp.toml");
    assert_int_equal(r.status, 1);
    tu_result_free(&r);
    r = RUN(NULL, "enqueue", "-c", "exp.toml", "--from", "a@b.example", "--recipients", "exp.csv",
            "--template", "exp.eml", "--campaign", "winter");
    if (r.status != 0)
        print_message("enqueue: %s", r.err);
    assert_int_equal(r.status, 0);
    int second = atoi(r.out);
    assert_true(second > first);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "show", "winter", "-c", "exp.toml");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "state      pending\n"));
    tu_result_free(&r);
    unlink("exp.toml");
    unlink("exp.csv");
    unlink("exp.eml");
}

/* queue.retention = "1s": a finished message's hash expires 1 s after its end, both
 * when its last outcome is reported (engine path) and when it is cancelled (CLI);
 * then `queue show` by id or name calls it unknown, `queue list` leaves it out, and
 * once the next message finishes its name is free again. A message not finished
 * keeps everything. */
static void retention_drops_finished_messages(void **state)
{
    (void)state;
    free(tu_write_file(".", "keep.toml",
                       "[redis]\nqueue = \"keep\"\n[queue]\nretention = \"1s\"\n"));
    /* Delivered through the library with the same retention (what salvo run does). */
    struct rq *q;
    struct rq_opts o = {.url = srv.url, .queue = "keep", .consumer = "c1", .retention_ms = 1000};
    assert_int_equal(rq_new(&o, &q), 0);
    assert_int_equal(rq_connect(q), 0);
    uint64_t done = tq_enqueue(q, 3, 1), pending = tq_enqueue(q, 2, 1);
    struct rq_batch *b;
    assert_int_equal(rq_claim(q, 10, &b), 2);
    for (size_t i = 0; i < b->njobs; i++)
        if (b->jobs[i].msg == done)
            tq_report_all(q, &b->jobs[i], RQ_DELIVERED, 0, NULL);
    assert_int_equal(rq_flush(q), 0);
    char key[64];
    snprintf(key, sizeof(key), "salvo:{keep}:msg:%llu", (unsigned long long)done);
    long long ttl = tq_cli_int(&srv, "PTTL", key, NULL);
    assert_true(ttl > 0 && ttl <= 1000);
    snprintf(key, sizeof(key), "salvo:{keep}:msg:%llu", (unsigned long long)pending);
    assert_int_equal(tq_cli_int(&srv, "PTTL", key, NULL), -1);

    /* Cancelled through the CLI: finished too. */
    struct tu_result r = RUN("Subject: x\n\nbody\n", "enqueue", "-c", "keep.toml", "--from",
                             "a@b.example", "--to", "c@d.example");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    free(tu_write_file(".", "keep.csv", "email\nx@y.example\n"));
    free(tu_write_file(".", "keep.eml", "Subject: keep\n\nhi\n"));
    r = RUN(NULL, "enqueue", "-c", "keep.toml", "--from", "a@b.example", "--recipients", "keep.csv",
            "--template", "keep.eml", "--campaign", "autumn");
    assert_int_equal(r.status, 0);
    int camp = atoi(r.out);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "cancel", "autumn", "-c", "keep.toml");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "show", "autumn", "-c", "keep.toml");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "state      cancelled\n"));
    tu_result_free(&r);

    tq_sleep_ms(1200);
    char ids[24], want[128];
    snprintf(ids, sizeof(ids), "%llu", (unsigned long long)done);
    r = RUN(NULL, "queue", "show", ids, "-c", "keep.toml");
    assert_int_equal(r.status, 1);
    snprintf(want, sizeof(want), "salvo: no message or campaign '%s' in this queue\n", ids);
    assert_string_equal(r.err, want);
    tu_result_free(&r);
    r = RUN(NULL, "queue", "show", "autumn", "-c", "keep.toml");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "salvo: no message or campaign 'autumn' in this queue\n");
    tu_result_free(&r);
    /* Not finished: still there. */
    snprintf(ids, sizeof(ids), "%llu", (unsigned long long)pending);
    r = RUN(NULL, "queue", "show", ids, "-c", "keep.toml");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "state      pending\n"));
    tu_result_free(&r);

    /* The next finish sweeps the index entries of the expired ones. */
    for (size_t i = 0; i < b->njobs; i++)
        if (b->jobs[i].msg == pending)
            tq_report_all(q, &b->jobs[i], RQ_BOUNCED, 0, "550 no");
    assert_int_equal(rq_flush(q), 0);
    rq_batch_free(b);
    assert_int_equal(tq_cli_int(&srv, "HEXISTS", "salvo:{keep}:names", "autumn"), 0);
    /* `queue list` shows the others (the single message, still pending; the one
     * just finished), not the expired ones. */
    r = RUN(NULL, "queue", "list", "-c", "keep.toml");
    assert_int_equal(r.status, 0);
    int listed = 0, seen_pending = 0;
    for (const char *l = strchr(r.out, '\n') + 1; l && *l;
         l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        assert_true(atoi(l) != camp && (uint64_t)atoi(l) != done);
        seen_pending += (uint64_t)atoi(l) == pending;
        listed++;
    }
    assert_int_equal(listed, 2);
    assert_int_equal(seen_pending, 1);
    tu_result_free(&r);
    r = RUN(NULL, "enqueue", "-c", "keep.toml", "--from", "a@b.example", "--recipients", "keep.csv",
            "--template", "keep.eml", "--campaign", "autumn");
    assert_int_equal(r.status, 0);
    assert_true(atoi(r.out) > camp);
    tu_result_free(&r);
    rq_free(q);
    unlink("keep.toml");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_everywhere),
        cmocka_unit_test(bad_csv_reports_every_line_and_writes_nothing),
        cmocka_unit_test(redis_down_exits_2_naming_the_address),
        cmocka_unit_test(enqueue_stats_show_cancel),
        cmocka_unit_test(config_file_names_server_and_queue),
        cmocka_unit_test(csv_with_bom_is_accepted),
        cmocka_unit_test(campaign_name_reuse_is_refused),
        cmocka_unit_test(unbracketed_ip_is_malformed),
        cmocka_unit_test(nul_byte_in_body_is_refused),
        cmocka_unit_test(retry_dead_revives_letters),
        cmocka_unit_test(retention_drops_finished_messages),
        cmocka_unit_test(expired_campaign_name_is_free),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
