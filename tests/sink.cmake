# tests of salvo-sink (bench/sink/); see tests/CMakeLists.txt for salvo_test().
# The tests run the real sink binary, found through $SALVO_SINK_BIN.
add_library(salvo_sink_testutil STATIC test_sink_util.c)
target_link_libraries(salvo_sink_testutil PUBLIC salvo_testutil)

function(salvo_sink_test NAME TIMEOUT)
  salvo_test(NAME ${NAME} SOURCES ${NAME}.c LIBS salvo_sink_testutil ${ARGN} TIMEOUT ${TIMEOUT})
  add_dependencies(${NAME} salvo-sink)
  # Appends to the environment salvo_test() set (SALVO_BIN, ...).
  get_test_property(${NAME} ENVIRONMENT _env)
  set_tests_properties(${NAME} PROPERTIES
    ENVIRONMENT "${_env};SALVO_SINK_BIN=$<TARGET_FILE:salvo-sink>")
endfunction()

salvo_sink_test(test_sink_smtp 60)
salvo_sink_test(test_sink_fault 60)
salvo_sink_test(test_sink_args 30)
salvo_sink_test(test_sink_parse 30 salvo_sink_core Threads::Threads)
salvo_sink_test(test_sink_tls 120 salvo_tls_testhelpers)
add_dependencies(test_sink_tls salvo-sink-load)
get_test_property(test_sink_tls ENVIRONMENT _env)
set_tests_properties(test_sink_tls PROPERTIES
  ENVIRONMENT "${_env};SALVO_SINK_LOAD_BIN=$<TARGET_FILE:salvo-sink-load>")
