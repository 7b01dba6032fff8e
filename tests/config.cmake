# tests of config/ (see tests/CMakeLists.txt for salvo_test())
