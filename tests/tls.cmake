# tests of tls/ (see tests/CMakeLists.txt for salvo_test())
add_library(salvo_tls_testhelpers STATIC test_tls_helpers.c)
target_link_libraries(salvo_tls_testhelpers PUBLIC salvo_tls salvo_testutil Threads::Threads)

salvo_test(NAME test_tls_names SOURCES test_tls_names.c LIBS salvo_tls TIMEOUT 10)
salvo_test(NAME test_tls_store SOURCES test_tls_store.c LIBS salvo_tls_testhelpers TIMEOUT 60)
salvo_test(NAME test_tls_probe SOURCES test_tls_probe.c LIBS salvo_tls_testhelpers TIMEOUT 120)
salvo_test(NAME test_tls_cache SOURCES test_tls_cache.c LIBS salvo_tls_testhelpers TIMEOUT 60)
salvo_test(NAME test_tls_hook SOURCES test_tls_hook.c LIBS salvo_tls_testhelpers TIMEOUT 30)
