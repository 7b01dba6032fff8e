# tests of engine/deliver (SMTP client, pools, rules per attempt) against real
# redis-server and salvo-sink processes; see tests/CMakeLists.txt for salvo_test().
salvo_test(NAME test_engine_smtp_reply SOURCES test_engine_smtp_reply.c LIBS salvo_engine
           TIMEOUT 30)
salvo_sink_test(test_engine_deliver 120 salvo_engine)
salvo_sink_test(test_engine_deliver_tls 120 salvo_engine salvo_tls_testhelpers)
salvo_sink_test(test_engine_deliver_mx 120 salvo_engine salvo_tls_testhelpers)
salvo_sink_test(test_engine_smtp_session 60 salvo_engine Threads::Threads)
salvo_sink_test(test_engine_deliver_idn 120 salvo_engine)
