/* `salvo config check -c FILE` on bad configs: every error, one per line, as
 * file:line:col: message, exit 1; warnings print but do not fail. Real processes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

/* Writes `toml` to tu_dir/name, runs `salvo config check -c` on it, and checks the exit
 * code and the exact stderr ("%F" in `want_err` stands for the file's path). */
static void check(const char *name, const char *toml, int want_status, const char *want_err)
{
    char *path = tu_write_file(tu_dir, name, toml);
    assert_non_null(path);
    char want[4096] = "";
    for (const char *s = want_err; *s; s++) {
        if (s[0] == '%' && s[1] == 'F') {
            strcat(want, path);
            s++;
        } else {
            strncat(want, s, 1);
        }
    }
    const char *argv[] = {tu_salvo_bin(), "config", "check", "-c", path, NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_string_equal(r.err, want);
    assert_int_equal(r.status, want_status);
    if (want_status == 0) {
        char ok[4200];
        snprintf(ok, sizeof(ok), "%s: ok\n", path);
        assert_string_equal(r.out, ok);
    } else {
        assert_string_equal(r.out, "");
    }
    tu_result_free(&r);
    free(path);
}

static void syntax_error_is_one_positioned_line(void **state)
{
    (void)state;
    check("syntax.toml",
          "[redis]\n"
          "url = \"redis://127.0.0.1:6379/0\"\n"
          "queue = default\n",
          1, "%F:3:9: invalid value 'default' (strings need quotes)\n");
    check("unclosed.toml", "[server.workers\nthreads = 2\n", 1,
          "%F:1:16: expected ']' to close the table header, found newline\n");
}

static void wrong_type_is_reported_at_the_value(void **state)
{
    (void)state;
    check("type.toml",
          "[redis]\n"
          "url = 6379\n",
          1, "%F:2:7: redis.url: expected a string, found integer\n");
    check("type2.toml",
          "server.workers.threads = \"4\"\n"
          "server.workers.pin = 1\n",
          1,
          "%F:1:26: server.workers.threads: expected an integer, found string\n"
          "%F:2:22: server.workers.pin: expected a boolean (true or false), found integer\n");
}

/* queue.retention shares the duration checks: too short, or not a duration. */
static void retention_must_be_a_duration_of_at_least_1s(void **state)
{
    (void)state;
    check("ret.toml", "[queue]\nretention = \"500ms\"\n", 1,
          "%F:2:13: queue.retention: '500ms' is too short (at least 1000ms)\n");
    check("ret2.toml", "[queue]\nretention = \"7 days\"\n", 1,
          "%F:2:13: queue.retention: '7 days' is not a duration (e.g. \"500ms\", \"30s\", "
          "\"2m\")\n");
}

static void unknown_key_gets_a_suggestion(void **state)
{
    (void)state;
    check("unknown.toml",
          "[redis]\n"
          "  urll = \"redis://127.0.0.1:6379/0\"\n",
          1, "%F:2:3: unknown key 'redis.urll' (did you mean 'redis.url'?)\n");
    check("unknown-table.toml", "[sevrer.workers]\nthreads = 2\n", 1,
          "%F:1:2: unknown key 'sevrer' (did you mean 'server'?)\n");
    check("unknown-far.toml", "colour = \"blue\"\n", 1, "%F:1:1: unknown key 'colour'\n");
    check("unknown-remote.toml",
          "[remote.relay1]\n"
          "address = \"relay.example.net\"\n"
          "prot = 587\n",
          1, "%F:3:1: unknown key 'remote.relay1.prot' (did you mean 'remote.relay1.port'?)\n");
}

static void every_error_is_reported_in_file_order(void **state)
{
    (void)state;
    check("many.toml",
          "[remote.mx]\n"
          "port = 70000\n"
          "[redis]\n"
          "url = \"http://localhost\"\n"
          "queue = \"\"\n"
          "[log]\n"
          "level = \"loud\"\n"
          "[resolver]\n"
          "nameservers = [\"127.0.0.1:53\", \"[::1]:5353\", \"dns.example\", 53]\n"
          "[server]\n"
          "workers.threads = -2\n"
          "worker.pin = true\n",
          1,
          "%F:1:1: remote.mx: missing 'address'\n"
          "%F:2:8: remote.mx.port: port 70000 is out of range (1-65535)\n"
          "%F:4:7: redis.url: 'http://localhost' must start with redis:// or unix://\n"
          "%F:5:9: redis.queue: must not be empty\n"
          "%F:7:9: log.level: unknown level 'loud' (expected error, warn, info, debug or trace)\n"
          "%F:9:46: resolver.nameservers[2]: 'dns.example' is not an IP address, IP:port or "
          "[IPv6]:port\n"
          "%F:9:61: resolver.nameservers[3]: expected a string, found integer\n"
          "%F:11:19: server.workers.threads: -2 is out of range (0 = one per core, up to 4096)\n"
          "%F:12:1: unknown key 'server.worker' (did you mean 'server.workers'?)\n");
}

/* Quoted keys are one segment: a dot inside quotes never makes a schema path, and
 * remote names may hold dots or spaces. */
static void quoted_keys_are_single_segments(void **state)
{
    (void)state;
    check("quoted.toml",
          "\"redis.url\" = \"redis://elsewhere\"\n"
          "redis = \"localhost\"\n"
          "[remote.\"mx.example.com\"]\n"
          "address = \"192.0.2.1\"\n"
          "adress = 1\n"
          "[remote.\"a b\".tls]\n"
          "implicit = false\n",
          1,
          "%F:1:1: unknown key '\"redis.url\"'\n"
          "%F:2:9: redis: expected a table, found string\n"
          "%F:5:1: unknown key 'remote.\"mx.example.com\".adress' (did you mean "
          "'remote.\"mx.example.com\".address'?)\n"
          "%F:6:9: remote.\"a b\": missing 'address'\n");
}

static void rediss_is_a_clear_error(void **state)
{
    (void)state;
    check("tls.toml", "redis.url = \"rediss://redis.example:6380\"\n", 1,
          "%F:1:13: redis.url: TLS to Redis is not supported by this hiredis (rediss://); use "
          "redis:// on a trusted network or unix://\n");
    check("port.toml", "redis.url = \"redis://127.0.0.1:70000/0\"\n", 1,
          "%F:1:13: redis.url: 'redis://127.0.0.1:70000/0': bad port (expected "
          "redis://[:PASSWORD@]HOST[:PORT][/DB])\n");
    check("unix.toml", "redis.url = \"unix://relative.sock\"\n", 1,
          "%F:1:13: redis.url: 'unix://relative.sock' needs an absolute socket path "
          "(unix:///PATH)\n");
}

static void a_full_valid_config_loads(void **state)
{
    (void)state;
    check("good.toml",
          "[redis]\n"
          "url = \"unix:///run/redis/redis.sock\"\n"
          "queue = \"newsletters\"\n"
          "[server.workers]\n"
          "threads = 8\n"
          "pin = false\n"
          "[log]\n"
          "level = \"DEBUG\"\n"
          "[resolver]\n"
          "nameservers = [\"127.0.0.1\", \"127.0.0.53:53\", \"::1\", \"[2001:db8::1]:53\"]\n"
          "[remote.relay]\n"
          "address = \"smtp.example.net\"\n"
          "port = 465\n"
          "protocol = \"smtp\"\n"
          "tls.implicit = true\n",
          0, "");
}

static void warnings_print_but_do_not_fail(void **state)
{
    (void)state;
    const char *toml = "[redis]\npassword = \"s3cret\"\n";
    char *path = tu_write_file(tu_dir, "secret.toml", toml);
    assert_non_null(path);
    assert_int_equal(chmod(path, 0644), 0);
    const char *argv[] = {tu_salvo_bin(), "config", "check", "-c", path, NULL};
    struct tu_result r;
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    char want[4096];
    snprintf(want, sizeof(want),
             "%s:2:12: warning: redis.password is set but %s is readable by every user (chmod "
             "o-r %s)\n",
             path, path, path);
    assert_string_equal(r.err, want);
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    /* Once private, the warning goes away. */
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(tu_run(argv, NULL, 10, &r), 0);
    assert_string_equal(r.err, "");
    assert_int_equal(r.status, 0);
    tu_result_free(&r);
    free(path);
}

/* [[queue.limiter.outbound]]: bad rate, unknown or unsupported key variable, bad
 * match expression, missing id, duplicate id; each at its file:line:col. A valid
 * limiter (and a disabled one, still checked) loads. */
static void limiter_errors_are_positioned(void **state)
{
    (void)state;
    check("limiter-ok.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"per-domain\"\n"
          "key = [\"rcpt_domain\", \"sender\"]\n"
          "match = \"rcpt_domain == 'example.org'\"\n"
          "rate = \"100/1s\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"off\"\n"
          "key = \"sender_domain\"\n"
          "rate = \"10/500ms\"\n"
          "enable = false\n",
          0, "");
    check("limiter-rate.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"a\"\n"
          "rate = \"100/fortnight\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"b\"\n"
          "rate = \"0/1s\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"c\"\n"
          "rate = \"5000000/1s\"\n",
          1,
          "%F:3:8: queue.limiter.outbound[0].rate: '100/fortnight' is not a rate (N per "
          "duration: \"100/1s\", \"6000/1m\", \"10/500ms\")\n"
          "%F:6:8: queue.limiter.outbound[1].rate: '0/1s' is not a rate (N per duration: "
          "\"100/1s\", \"6000/1m\", \"10/500ms\")\n"
          "%F:9:8: queue.limiter.outbound[2].rate: '5000000/1s' is too fast (at most 1000000 per "
          "second)\n");
    check("limiter-key.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"k\"\n"
          "rate = \"1/1s\"\n"
          "key = [\"rcpt_domian\", \"mx\", \"colour\"]\n",
          1,
          "%F:4:8: queue.limiter.outbound[0].key: unknown key variable 'rcpt_domian' (did you "
          "mean 'rcpt_domain'?)\n"
          "%F:4:29: queue.limiter.outbound[0].key: unknown key variable 'colour' (use "
          "rcpt_domain, sender_domain, sender, mx or remote_ip)\n");
    check("limiter-conc-ok.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"per-mx\"\n"
          "key = [\"mx\", \"remote_ip\"]\n"
          "match = \"mx == 'gmail-smtp-in.l.google.com' || remote_ip == '127.0.0.1'\"\n"
          "concurrency = 20\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"both\"\n"
          "key = \"rcpt_domain\"\n"
          "rate = \"10/1s\"\n"
          "concurrency = 2\n",
          0, "");
    check("limiter-conc.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"a\"\n"
          "concurrency = 0\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"b\"\n"
          "concurrency = \"3\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"c\"\n"
          "key = \"remote_ip\"\n"
          "rate = \"1/1s\"\n"
          "concurrency = 3\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"d\"\n"
          "key = \"rcpt_domain\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"e\"\n"
          "concurrency = -2\n"
          "concurency = 2\n",
          1,
          "%F:3:15: queue.limiter.outbound[0].concurrency: 0 is out of range (1-1000000)\n"
          "%F:4:1: queue.limiter.outbound[1]: missing 'rate' or 'concurrency'\n"
          "%F:6:15: queue.limiter.outbound[1].concurrency: expected an integer, found string\n"
          "%F:12:1: queue.limiter.outbound[3]: missing 'rate' or 'concurrency'\n"
          "%F:17:15: queue.limiter.outbound[4].concurrency: -2 is out of range (1-1000000)\n"
          "%F:18:1: unknown key 'queue.limiter.outbound[4].concurency' (did you mean "
          "'queue.limiter.outbound[4].concurrency'?)\n");
    check("limiter-match.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"m\"\n"
          "rate = \"1/1s\"\n"
          "match = \"rcpt_domain == 'a' && local_ip == '1.2.3.4'\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"m2\"\n"
          "rate = \"1/1s\"\n"
          "match = \"rcpt_domain == \"\n",
          1,
          "%F:4:32: queue.limiter.outbound[0].match: variable 'local_ip' is not available "
          "here\n"
          "%F:8:25: queue.limiter.outbound[1].match: unexpected end of expression\n");
    check("limiter-dup.toml",
          "[[queue.limiter.outbound]]\n"
          "id = \"x\"\n"
          "rate = \"1/1s\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"x\"\n"
          "rate = \"2/1s\"\n",
          1, "%F:5:6: queue.limiter.outbound[1].id: 'x' is used twice\n");
    check("limiter-id.toml",
          "[[queue.limiter.outbound]]\n"
          "rate = \"1/1s\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"x\"\n"
          "rate = \"1/1s\"\n"
          "[[queue.limiter.outbound]]\n"
          "id = \"x\"\n"
          "rat = \"1/1s\"\n",
          1,
          "%F:1:1: queue.limiter.outbound[0]: missing 'id'\n"
          "%F:6:1: queue.limiter.outbound[2]: missing 'rate' or 'concurrency'\n"
          "%F:8:1: unknown key 'queue.limiter.outbound[2].rat' (did you mean "
          "'queue.limiter.outbound[2].rate'?)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(syntax_error_is_one_positioned_line),
        cmocka_unit_test(wrong_type_is_reported_at_the_value),
        cmocka_unit_test(unknown_key_gets_a_suggestion),
        cmocka_unit_test(every_error_is_reported_in_file_order),
        cmocka_unit_test(quoted_keys_are_single_segments),
        cmocka_unit_test(rediss_is_a_clear_error),
        cmocka_unit_test(a_full_valid_config_loads),
        cmocka_unit_test(warnings_print_but_do_not_fail),
        cmocka_unit_test(limiter_errors_are_positioned),
        cmocka_unit_test(retention_must_be_a_duration_of_at_least_1s),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
