/* salvo: command dispatch. */
#include "engine.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", cmd_run, "deliver queued mail (--drain: exit once the queue is empty)"},
    {"enqueue", cmd_enqueue, "queue one message, or a campaign from a CSV and a template"},
    {"queue", cmd_queue, "inspect and manage the queue: stats, list, show, retry, cancel"},
    {"config", cmd_config, "check a config file, or decode TOML to JSON"},
    {"rules", cmd_rules, "evaluate, benchmark or disassemble delivery rules"},
    {"tls", cmd_tls, "probe a server's STARTTLS/TLS setup"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: salvo <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < SV_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "Config: -c FILE, else $SALVO_CONFIG, else ./salvo.toml, else an embedded default.\n"
            "Start with:  salvo config check      (then: salvo <command> --help)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USER;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("salvo %s\n", SALVO_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < SV_ARRAY_LEN(commands); i++) {
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    }
    const char *names[SV_ARRAY_LEN(commands)];
    for (size_t i = 0; i < SV_ARRAY_LEN(commands); i++)
        names[i] = commands[i].name;
    const char *hint = cfg_suggest(name, names, SV_ARRAY_LEN(names));
    if (hint)
        return eng_fail(EXIT_USER, "unknown command '%s' (did you mean '%s'?); see salvo --help",
                        name, hint);
    return eng_fail(EXIT_USER, "unknown command '%s'; see salvo --help", name);
}
