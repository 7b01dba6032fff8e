# tests of sched/ (see tests/CMakeLists.txt for salvo_test())
