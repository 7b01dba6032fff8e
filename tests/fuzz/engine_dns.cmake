# engine/dns: the DNS response parser (untrusted bytes from the network).
salvo_fuzz(NAME fuzz_dns_answer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_dns_answer.c LIBS salvo_engine)
