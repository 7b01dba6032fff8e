#include "engine.h"

int cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return eng_fail(EXIT_RUNTIME, "'run' is not implemented yet (coming with the delivery engine)");
}
