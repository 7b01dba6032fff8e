#include "engine.h"

int cmd_rules(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return eng_fail(EXIT_RUNTIME, "'rules' is not implemented yet (coming with the rule language)");
}
