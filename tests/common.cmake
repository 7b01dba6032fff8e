# tests of common/ (see tests/CMakeLists.txt for salvo_test())
salvo_test(NAME test_common_idna SOURCES test_common_idna.c LIBS salvo_common TIMEOUT 30)
