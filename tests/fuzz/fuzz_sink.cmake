salvo_fuzz(NAME fuzz_sink_cmd SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_sink_cmd.c LIBS salvo_sink_core)
