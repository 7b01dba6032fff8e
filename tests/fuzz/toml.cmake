# TOML parser: arbitrary bytes -> parse -> toml-test JSON -> free.
salvo_fuzz(NAME fuzz_toml SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_toml.c LIBS salvo_config)
