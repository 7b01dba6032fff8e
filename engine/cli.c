/* Helpers shared by the commands: config lookup and one-line failures. */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *eng_conf_path(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *env = getenv("SALVO_CONFIG");
    if (env && *env)
        return env;
    if (access("salvo.toml", F_OK) == 0)
        return "salvo.toml";
    return NULL;
}

int eng_conf_load_or_report(const char *opt_path, struct eng_conf *conf)
{
    struct cfg_diag diag;
    cfg_diag_init(&diag);
    int rc = eng_conf_load(eng_conf_path(opt_path), conf, &diag);
    cfg_diag_print(&diag, stderr);
    cfg_diag_free(&diag);
    if (rc != 0) {
        eng_conf_free(conf); /* nothing for the caller to free; a second free is a no-op */
        return EXIT_USER;
    }
    sv_log_set_level((enum sv_log_level)conf->log_level);
    return EXIT_OK;
}

int eng_fail(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "salvo: %s\n", msg);
    return code;
}
