# tests of tls/ (see tests/CMakeLists.txt for salvo_test())
