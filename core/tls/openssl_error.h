/* openssl_error: OpenSSL's reason for the last failure, as text for an error value.
 *
 * Writes "what: <reason>" (just "<reason>" when what is NULL) into out, where reason is
 * the last error OpenSSL queued or `otherwise` when it queued none, and clears the queue
 * so the next failure is not blamed on this one. */
#ifndef SP_TLS_OPENSSL_ERROR_H
#define SP_TLS_OPENSSL_ERROR_H

#include <openssl/err.h>
#include <stdio.h>

static inline void sp_openssl_error(char *out, size_t len, const char *what, const char *otherwise)
{
    unsigned long e = ERR_peek_last_error();
    char reason[200];
    snprintf(reason, sizeof reason, "%s", otherwise);
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    if (what)
        snprintf(out, len, "%s: %s", what, reason);
    else
        snprintf(out, len, "%s", reason);
}

#endif
