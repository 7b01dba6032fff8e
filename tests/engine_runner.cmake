# tests of the salvo process (engine/runner.c, worker.c, ring.h, cmd_run.c); see
# tests/CMakeLists.txt for salvo_test(). End-to-end tests run the real salvo,
# redis-server and salvo-sink ($SALVO_SINK_BIN).
salvo_test(NAME test_engine_ring SOURCES test_engine_ring.c LIBS salvo_engine Threads::Threads TIMEOUT 60)
add_library(salvo_engine_runtestutil STATIC test_engine_run_util.c)
target_link_libraries(salvo_engine_runtestutil PUBLIC salvo_testutil)
salvo_test(NAME test_engine_run SOURCES test_engine_run.c LIBS salvo_engine_runtestutil TIMEOUT 60)
# End to end with the real salvo-sink ($SALVO_SINK_BIN, as in tests/sink.cmake).
add_library(salvo_engine_e2etestutil STATIC test_engine_e2e_util.c)
target_link_libraries(salvo_engine_e2etestutil PUBLIC salvo_engine_runtestutil
                      salvo_sink_testutil salvo_tls_testhelpers PkgConfig::CMOCKA)
salvo_test(NAME test_engine_e2e SOURCES test_engine_e2e.c
           LIBS salvo_engine_e2etestutil TIMEOUT 240)
add_dependencies(test_engine_e2e salvo-sink)
get_test_property(test_engine_e2e ENVIRONMENT _e2e_env)
set_tests_properties(test_engine_e2e PROPERTIES
  ENVIRONMENT "${_e2e_env};SALVO_SINK_BIN=$<TARGET_FILE:salvo-sink>")
# Several salvo run processes on one Redis (issue #9), and --progress.
salvo_test(NAME test_engine_scale SOURCES test_engine_scale.c LIBS salvo_engine_e2etestutil TIMEOUT 120)
add_dependencies(test_engine_scale salvo-sink)
get_test_property(test_engine_scale ENVIRONMENT _scale_env)
set_tests_properties(test_engine_scale PROPERTIES
  ENVIRONMENT "${_scale_env};SALVO_SINK_BIN=$<TARGET_FILE:salvo-sink>")
# IDN through `salvo enqueue` and `salvo run --drain`.
salvo_test(NAME test_engine_e2e_idn SOURCES test_engine_e2e_idn.c LIBS salvo_engine_e2etestutil TIMEOUT 120)
add_dependencies(test_engine_e2e_idn salvo-sink)
get_test_property(test_engine_e2e_idn ENVIRONMENT _idn_env)
set_tests_properties(test_engine_e2e_idn PROPERTIES
  ENVIRONMENT "${_idn_env};SALVO_SINK_BIN=$<TARGET_FILE:salvo-sink>")
# A real 3-node Redis Cluster; salvo pointed at a node that does not own the queue.
salvo_test(NAME test_engine_cluster SOURCES test_engine_cluster.c LIBS salvo_engine_e2etestutil TIMEOUT 90)
add_dependencies(test_engine_cluster salvo-sink)
get_test_property(test_engine_cluster ENVIRONMENT _cluster_env)
set_tests_properties(test_engine_cluster PROPERTIES
  ENVIRONMENT "${_cluster_env};SALVO_SINK_BIN=$<TARGET_FILE:salvo-sink>")
