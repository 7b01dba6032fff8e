# tests of redisq/ (see tests/CMakeLists.txt for salvo_test())
# Each starts its own redis-server (tests/util/redis_server.c) on a free port.
salvo_test(NAME test_redisq_roundtrip SOURCES test_redisq_roundtrip.c LIBS salvo_redisq TIMEOUT 120)
salvo_test(NAME test_redisq_retry SOURCES test_redisq_retry.c LIBS salvo_redisq TIMEOUT 60)
salvo_test(NAME test_redisq_reclaim SOURCES test_redisq_reclaim.c LIBS salvo_redisq TIMEOUT 60)
salvo_test(NAME test_redisq_crash SOURCES test_redisq_crash.c LIBS salvo_redisq TIMEOUT 120)
salvo_test(NAME test_redisq_cli SOURCES test_redisq_cli.c LIBS salvo_redisq salvo_common TIMEOUT 120)
salvo_test(NAME test_redisq_errors SOURCES test_redisq_errors.c LIBS salvo_redisq TIMEOUT 60)
salvo_test(NAME test_redisq_memory SOURCES test_redisq_memory.c LIBS salvo_redisq TIMEOUT 120)
salvo_test(NAME test_redisq_bulk SOURCES test_redisq_bulk.c LIBS salvo_redisq TIMEOUT 300)
if(SALVO_SANITIZE)
  # Sanitizer shadow memory makes RSS figures meaningless: keep the counts only.
  target_compile_definitions(test_redisq_bulk PRIVATE SALVO_SANITIZED)
endif()
