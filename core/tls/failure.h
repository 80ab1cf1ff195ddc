/* failure: why a TLS handshake failed, client side or upstream. A TLS stream classifies
 * its own failures (tls/stream.h); net/ counts them by this cause (net/registry.h). */
#ifndef SP_TLS_FAILURE_H
#define SP_TLS_FAILURE_H

/* Why a TLS handshake failed, client side or upstream (counted separately). */
typedef enum {
    SP_TLSFAIL_PROTOCOL_VERSION = 0, SP_TLSFAIL_NO_SHARED_CIPHER, SP_TLSFAIL_NOT_TLS,
    SP_TLSFAIL_PEER_ALERT, SP_TLSFAIL_VERIFY, SP_TLSFAIL_EOF, SP_TLSFAIL_TIMEOUT, SP_TLSFAIL_OTHER,
    SP_TLSFAIL_COUNT
} sp_tls_failure;

#endif
