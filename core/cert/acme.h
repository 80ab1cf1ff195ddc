/* acme: the RFC 8555 client, one order from start to certificate, blocking.
 *
 * sp_acme_obtain runs on a thread of its own (core/cert/manager.c starts one per
 * domain being ordered, so several orders proceed at once and no event loop ever
 * waits): directory, nonce, account (created, or found again, for the stored key),
 * new order, HTTP-01 for each authorization (the key authorization is published in the
 * process-wide challenge table that every worker answers from on plain-HTTP ports, and
 * withdrawn afterwards), polling with bounded waits, finalize with a CSR for a fresh
 * P-256 key, download of the chain. badNonce answers are retried with the new nonce.
 * Failures come back as one line naming the step and, when the server sent one, its
 * problem document (type, detail, and the challenge's error). */
#ifndef SP_CERT_ACME_H
#define SP_CERT_ACME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct sp_challenges;

typedef struct sp_acme_params {
    const char *directory;        /* https URL of the directory */
    const char *email;            /* account contact, or NULL */
    const char *ca_file;          /* trust store for the ACME server, or NULL: the system's */
    const char *account_key_pem;  /* P-256 */
    const char *domain;           /* one name (no wildcard: HTTP-01 cannot validate one) */
    struct sp_challenges *challenges;
    _Atomic bool *cancel;         /* checked between steps (shutdown) */
    int timeout_ms;               /* per request; polls give up after 30 s */
} sp_acme_params;

/* 0 with malloc'ed PEM chain and key; -1 with a one-line reason in err. */
int sp_acme_obtain(const sp_acme_params *p, char **cert_pem, char **key_pem, char *err, size_t errlen);

#endif
