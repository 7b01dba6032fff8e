# tests of redisq/ (see tests/CMakeLists.txt for salvo_test())
