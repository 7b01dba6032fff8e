salvo_fuzz(NAME fuzz_rules SOURCES fuzz_rules.c LIBS salvo_sched)
