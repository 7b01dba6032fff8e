#include "engine.h"

int cmd_tls(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return eng_fail(EXIT_RUNTIME, "'tls' is not implemented yet (coming with the TLS layer)");
}
