salvo_test(NAME test_cli_basics SOURCES test_cli_basics.c)
