# common/: Punycode and IDNA domain conversion.
salvo_fuzz(NAME fuzz_idna SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_idna.c LIBS salvo_common)
