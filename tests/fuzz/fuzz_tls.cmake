salvo_fuzz(NAME fuzz_tls_names SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_tls_names.c LIBS salvo_tls)
