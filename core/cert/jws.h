/* jws: the JOSE pieces ACME needs (RFC 7515, 7517, 7638, 8555 6.2), for P-256 keys.
 *
 * Pure: no I/O. Base64url without padding; the JWK of a P-256 public key in the
 * canonical member order RFC 7638 hashes; its SHA-256 thumbprint; and a flattened JWS
 * signed with ES256 (the raw 64-byte r||s signature, not DER). Errors are values: NULL
 * or -1 with a reason in err. */
#ifndef SP_CERT_JWS_H
#define SP_CERT_JWS_H

#include <stddef.h>

#include <openssl/evp.h>

/* Encodes n bytes; returns the length written (NUL-terminated), or 0 when out is too
 * small (it needs 4 * ceil(n / 3) + 1). */
size_t sp_b64url(const void *in, size_t n, char *out, size_t outlen);
/* Decodes base64url (padding optional); returns the byte count, or -1. */
long sp_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outlen);

/* {"crv":"P-256","kty":"EC","x":"...","y":"..."} for key's public half. */
int sp_jwk_json(EVP_PKEY *key, char *out, size_t len, char *err, size_t errlen);
/* base64url(SHA-256(JWK)), 43 characters. */
int sp_jwk_thumbprint(EVP_PKEY *key, char out[64], char *err, size_t errlen);
/* The request body for an ACME POST: {"protected":..,"payload":..,"signature":..}.
 * kid NULL puts the JWK in the header (newAccount); payload NULL is POST-as-GET (an
 * empty payload). malloc'ed. */
char *sp_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload, char *err, size_t errlen);

#endif
