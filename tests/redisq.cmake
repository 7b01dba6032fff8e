# tests of redisq/ (see tests/CMakeLists.txt for salvo_test())
# Each starts its own redis-server (tests/util/redis_server.c) on a free port.
salvo_test(NAME test_redisq_roundtrip SOURCES test_redisq_roundtrip.c LIBS salvo_redisq TIMEOUT 120)
