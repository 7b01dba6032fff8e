# SMTP reply parser of engine/ (the client side of every delivery).
salvo_fuzz(NAME fuzz_smtp_reply SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_smtp_reply.c LIBS salvo_engine)
