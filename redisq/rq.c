#include "rq.h"

#include <string.h>

int rq_url_check(const char *url, const char **why)
{
    if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "unix://", 7) == 0)
        return 0;
    *why = "expected redis://host:port/db or unix:///path";
    return -1;
}
