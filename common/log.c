#include "common.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum sv_log_level g_level = SV_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void sv_log_set_level(enum sv_log_level level)
{
    g_level = level;
}

enum sv_log_level sv_log_get_level(void)
{
    return g_level;
}

int sv_log_level_parse(const char *name, enum sv_log_level *out)
{
    for (size_t i = 0; i < SV_ARRAY_LEN(level_names); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum sv_log_level)i;
            return 0;
        }
    }
    return -1;
}

void sv_vlog(enum sv_log_level level, const char *fmt, va_list ap)
{
    if (level > g_level)
        return;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level]);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated: still one line */
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void sv_log(enum sv_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sv_vlog(level, fmt, ap);
    va_end(ap);
}
