/* salvo config check|decode: validate the configuration, or show how TOML parses. */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char config_usage[] =
    "usage: salvo config check [-c FILE]\n"
    "       salvo config decode [FILE|-]\n"
    "\n"
    "  check    load and validate the config; exit 0 and print \"FILE: ok\", or exit 1\n"
    "           with every error as file:line:col: message (one per line)\n"
    "  decode   parse TOML (FILE, or stdin for - or no FILE) and print it as toml-test\n"
    "           JSON; exit 1 with file:line:col: message on invalid TOML\n"
    "\n"
    "Config lookup for check: -c FILE, else $SALVO_CONFIG, else ./salvo.toml, else the\n"
    "embedded default.\n";

static const char check_usage[] =
    "usage: salvo config check [-c FILE]\n"
    "\n"
    "Loads the config (-c FILE, else $SALVO_CONFIG, else ./salvo.toml, else the embedded\n"
    "default) and checks every key against the schema: types, allowed values, unknown\n"
    "keys (with a suggestion), expressions. Exit 0 and print \"FILE: ok\" when it loads;\n"
    "exit 1 with every error on stderr, one per line, as file:line:col: message.\n"
    "Warnings are printed but do not fail the check.\n";

static const char decode_usage[] =
    "usage: salvo config decode [FILE|-]\n"
    "\n"
    "Parses TOML 1.0 from FILE (stdin when FILE is - or missing) and prints the toml-test\n"
    "JSON encoding: tables as objects, arrays as arrays, every other value as\n"
    "{\"type\": \"...\", \"value\": \"...\"}. Exit 1 with file:line:col: message on invalid\n"
    "TOML.\n";

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int config_decode(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(decode_usage, stdout);
            return EXIT_OK;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return eng_fail(EXIT_USER,
                            "config decode: unknown option '%s'; see salvo config "
                            "decode --help",
                            argv[i]);
        if (path)
            return eng_fail(EXIT_USER,
                            "config decode: only one FILE is allowed (got '%s' and "
                            "'%s')",
                            path, argv[i]);
        path = argv[i];
    }
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    struct cfg_doc *doc = cfg_doc_load_file(path ? path : "-", &diag);
    if (!doc) {
        cfg_diag_print(&diag, stderr);
        cfg_diag_free(&diag);
        return EXIT_USER;
    }
    struct sv_buf out = {0};
    int rc = cfg_to_json(doc->root, &out);
    if (rc == 0 && fwrite(out.ptr, 1, out.len, stdout) != out.len)
        rc = -1;
    if (rc == 0 && fflush(stdout) != 0)
        rc = -1;
    sv_buf_free(&out);
    cfg_doc_free(doc);
    cfg_diag_free(&diag);
    return rc == 0 ? EXIT_OK : eng_fail(EXIT_RUNTIME, "config decode: cannot write the output");
}

static int config_check(int argc, char **argv)
{
    const char *opt = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(check_usage, stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return eng_fail(EXIT_USER, "config check: %s needs a FILE", argv[i]);
            opt = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            opt = argv[i] + 9;
        } else {
            return eng_fail(EXIT_USER,
                            "config check: unexpected argument '%s'; see salvo config check --help",
                            argv[i]);
        }
    }
    struct eng_conf conf;
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    int rc = eng_conf_load(eng_conf_path(opt), &conf, &diag);
    cfg_diag_print(&diag, stderr);
    if (rc == 0)
        printf("%s: ok\n", conf.source);
    cfg_diag_free(&diag);
    eng_conf_free(&conf);
    return rc == 0 ? EXIT_OK : EXIT_USER;
}

int cmd_config(int argc, char **argv)
{
    if (argc < 2) {
        fputs(config_usage, stderr);
        return EXIT_USER;
    }
    const char *sub = argv[1];
    if (is_help(sub) || strcmp(sub, "help") == 0) {
        fputs(config_usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(sub, "check") == 0)
        return config_check(argc - 1, argv + 1);
    if (strcmp(sub, "decode") == 0)
        return config_decode(argc - 1, argv + 1);
    static const char *const subs[] = {"check", "decode"};
    const char *hint = cfg_suggest(sub, subs, SV_ARRAY_LEN(subs));
    if (hint)
        return eng_fail(EXIT_USER, "config: unknown subcommand '%s' (did you mean '%s'?)", sub,
                        hint);
    return eng_fail(EXIT_USER, "config: unknown subcommand '%s'; see salvo config --help", sub);
}
