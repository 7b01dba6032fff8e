# tests of the salvo process (engine/runner.c, worker.c, ring.h, cmd_run.c); see
# tests/CMakeLists.txt for salvo_test(). End-to-end tests run the real salvo,
# redis-server and salvo-sink ($SALVO_SINK_BIN).
salvo_test(NAME test_engine_ring SOURCES test_engine_ring.c LIBS salvo_engine Threads::Threads TIMEOUT 60)
