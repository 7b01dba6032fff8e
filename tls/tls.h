/* tls: everything about wolfSSL. Nothing else includes wolfSSL headers. */
#ifndef SALVO_TLS_H
#define SALVO_TLS_H

/* Initialises the library once per process. Returns 0 or a negative code. */
int tls_global_init(void);

#endif
