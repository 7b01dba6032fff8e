# redisq input parsers: CSV reader, addresses, redis.url, templates.
salvo_fuzz(NAME fuzz_rq_input SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_rq_input.c LIBS salvo_redisq)
