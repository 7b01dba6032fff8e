/* libFuzzer: host name matching. Input "pattern\nhost". Besides not crashing, checks
 * invariants that any correct RFC 6125 matcher keeps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *nl = strchr(buf, '\n');
    const char *pattern = buf, *host = "";
    if (nl) {
        *nl = '\0';
        host = nl + 1;
    }
    bool m = tls_name_matches(pattern, host);
    if (m) {
        /* A match never involves a '*' in the host. */
        if (strchr(host, '*'))
            abort();
        size_t pl = strlen(pattern), hl = strlen(host);
        if (pl && pattern[pl - 1] == '.')
            pl--;
        if (hl && host[hl - 1] == '.')
            hl--;
        if (pattern[0] != '*') {
            /* Without a wildcard: case-insensitive equality, trailing dots aside. */
            if (pl != hl || strncasecmp(pattern, host, pl) != 0)
                abort();
        } else {
            /* With one: the host is one non-empty label + the pattern's suffix. */
            const char *dot = memchr(host, '.', hl);
            if (!dot || dot == host)
                abort();
            size_t rest = hl - (size_t)(dot - host);
            if (rest != pl - 1 || strncasecmp(dot, pattern + 1, rest) != 0)
                abort();
        }
    }
    free(buf);
    return 0;
}
