# tests of config/ (see tests/CMakeLists.txt for salvo_test())
salvo_test(NAME test_config_conformance SOURCES test_config_conformance.c TIMEOUT 120)
