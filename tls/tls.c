#include "tls.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

int tls_global_init(void)
{
    return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -1;
}
