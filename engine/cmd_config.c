#include "engine.h"

int cmd_config(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return eng_fail(EXIT_RUNTIME, "'config' is not implemented yet (coming with the config loading)");
}
