# tests of engine/dns (c-ares on libev + the shared cache) against a real dnsmasq;
# see tests/CMakeLists.txt for salvo_test().
salvo_test(NAME test_engine_dns SOURCES test_engine_dns.c LIBS salvo_engine TIMEOUT 60)
salvo_test(NAME test_engine_dns_cache SOURCES test_engine_dns_cache.c LIBS salvo_engine TIMEOUT 60)
