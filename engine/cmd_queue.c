#include "engine.h"

int cmd_enqueue(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return eng_fail(EXIT_RUNTIME, "'enqueue' is not implemented yet (coming with the Redis queue)");
}

int cmd_queue(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return eng_fail(EXIT_RUNTIME, "'queue' is not implemented yet (coming with the Redis queue)");
}
