# tests of sched/ (see tests/CMakeLists.txt for salvo_test())
salvo_test(NAME test_sched_expr SOURCES test_sched_expr.c LIBS salvo_sched TIMEOUT 60)
salvo_test(NAME test_sched_settings SOURCES test_sched_settings.c LIBS salvo_sched TIMEOUT 60)
salvo_test(NAME test_rules_cli SOURCES test_rules_cli.c TIMEOUT 60)
