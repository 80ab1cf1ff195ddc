/* jws: base64url, JWK, thumbprint, ES256 JWS (see jws.h). */
#include "cert/jws.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/openssl_error.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sp_b64url(const void *in, size_t n, char *out, size_t outlen)
{
    const unsigned char *p = in;
    size_t need = (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
    if (outlen < need + 1)
        return 0;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = 0;
    return o;
}

long sp_b64url_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
    while (n && in[n - 1] == '=')
        n--;
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = in[i] ? strchr(alphabet, in[i]) : NULL;
        if (!c)
            return -1;
        acc = acc << 6 | (unsigned)(c - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outlen)
                return -1;
            out[o++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    if (n % 4 == 1)
        return -1;
    return (long)o;
}

static int coord(EVP_PKEY *key, const char *param, char out[64])
{
    BIGNUM *bn = NULL;
    unsigned char raw[32];
    int ok = EVP_PKEY_get_bn_param(key, param, &bn) == 1 && BN_bn2binpad(bn, raw, 32) == 32 &&
             sp_b64url(raw, 32, out, 64) == 43;
    BN_free(bn);
    return ok ? 0 : -1;
}

int sp_jwk_json(EVP_PKEY *key, char *out, size_t len, char *err, size_t errlen)
{
    char x[64], y[64], group[32];
    size_t gl = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        ERR_clear_error();
        snprintf(err, errlen, "the account key is not a P-256 key");
        return -1;
    }
    if (coord(key, OSSL_PKEY_PARAM_EC_PUB_X, x) != 0 || coord(key, OSSL_PKEY_PARAM_EC_PUB_Y, y) != 0) {
        sp_openssl_error(err, errlen, "cannot read the account key", "unknown error");
        return -1;
    }
    int n = snprintf(out, len, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "JWK buffer too small");
        return -1;
    }
    return 0;
}

int sp_jwk_thumbprint(EVP_PKEY *key, char out[64], char *err, size_t errlen)
{
    char jwk[256];
    unsigned char md[SHA256_DIGEST_LENGTH];
    if (sp_jwk_json(key, jwk, sizeof jwk, err, errlen) != 0)
        return -1;
    SHA256((const unsigned char *)jwk, strlen(jwk), md);
    sp_b64url(md, sizeof md, out, 64);
    return 0;
}

/* ES256: the DER ECDSA signature turned into r||s, 32 bytes each. */
static int es256(EVP_PKEY *key, const char *data, size_t n, unsigned char sig[64], char *err, size_t errlen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dl = sizeof der;
    ECDSA_SIG *s = NULL;
    int rc = -1;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, der, &dl, (const unsigned char *)data, n) != 1) {
        sp_openssl_error(err, errlen, "cannot sign", "unknown error");
        goto out;
    }
    const unsigned char *p = der;
    if (!(s = d2i_ECDSA_SIG(NULL, &p, (long)dl)) ||
        BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, 32) != 32 || BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + 32, 32) != 32) {
        sp_openssl_error(err, errlen, "cannot encode the signature", "unknown error");
        goto out;
    }
    rc = 0;
out:
    ECDSA_SIG_free(s);
    EVP_MD_CTX_free(md);
    return rc;
}

char *sp_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload, char *err, size_t errlen)
{
    char jwk[256];
    if (!kid && sp_jwk_json(key, jwk, sizeof jwk, err, errlen) != 0)
        return NULL;
    if (strpbrk(url, "\"\\") || strpbrk(nonce, "\"\\") || (kid && strpbrk(kid, "\"\\"))) {
        snprintf(err, errlen, "refusing to sign a URL or nonce with quotes");
        return NULL;
    }
    size_t hl = strlen(url) + strlen(nonce) + (kid ? strlen(kid) : strlen(jwk)) + 64;
    char *header = malloc(hl);
    size_t pl = payload ? strlen(payload) : 0;
    size_t h64l = hl * 4 / 3 + 4, p64l = pl * 4 / 3 + 4;
    char *h64 = malloc(h64l), *p64 = malloc(p64l), *input = NULL, *out = NULL;
    if (!header || !h64 || !p64)
        goto oom;
    if (kid)
        snprintf(header, hl, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"nonce\":\"%s\",\"url\":\"%s\"}", kid, nonce, url);
    else
        snprintf(header, hl, "{\"alg\":\"ES256\",\"jwk\":%s,\"nonce\":\"%s\",\"url\":\"%s\"}", jwk, nonce, url);
    size_t h64n = sp_b64url(header, strlen(header), h64, h64l);
    size_t p64n = pl ? sp_b64url(payload, pl, p64, p64l) : 0;
    p64[p64n] = 0;
    if (!(input = malloc(h64n + p64n + 2)))
        goto oom;
    snprintf(input, h64n + p64n + 2, "%s.%s", h64, p64);
    unsigned char sig[64];
    char s64[100];
    if (es256(key, input, h64n + 1 + p64n, sig, err, errlen) != 0)
        goto done;
    sp_b64url(sig, sizeof sig, s64, sizeof s64);
    size_t ol = h64n + p64n + strlen(s64) + 64;
    if (!(out = malloc(ol)))
        goto oom;
    snprintf(out, ol, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", h64, p64, s64);
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    free(header);
    free(h64);
    free(p64);
    free(input);
    return out;
}
