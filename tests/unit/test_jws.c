/* The JOSE pieces of the ACME client (core/cert/jws.h) and its JSON reader
 * (core/cert/jsonr.h). Signatures are checked by verifying them with OpenSSL. */
#include "cert/jws.h"
#include "cert/jsonr.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* RFC 7515 appendix A.3's P-256 key, built from its JWK members d, x and y. */
static EVP_PKEY *a3_key(void)
{
    static const char *const d64 = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
    static const char *const x64 = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    static const char *const y64 = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    unsigned char d[32], pub[65];
    pub[0] = 4;
    if (sp_b64url_decode(d64, strlen(d64), d, 32) != 32 || sp_b64url_decode(x64, strlen(x64), pub + 1, 32) != 32 ||
        sp_b64url_decode(y64, strlen(y64), pub + 33, 32) != 32)
        return NULL;
    BIGNUM *priv = BN_bin2bn(d, 32, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params) != 1)
        k = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(priv);
    return k;
}

TEST(b64url_round_trips_and_has_no_padding)
{
    char out[64];
    unsigned char back[64];
    CHECK_EQ_INT(sp_b64url("", 0, out, sizeof out), 0);
    CHECK(sp_b64url("f", 1, out, sizeof out) == 2 && strcmp(out, "Zg") == 0);
    CHECK(sp_b64url("fo", 2, out, sizeof out) == 3 && strcmp(out, "Zm8") == 0);
    CHECK(sp_b64url("foo", 3, out, sizeof out) == 4 && strcmp(out, "Zm9v") == 0);
    CHECK(sp_b64url("\xfb\xff", 2, out, sizeof out) == 3 && strcmp(out, "-_8") == 0);
    CHECK_EQ_INT(sp_b64url("foo", 3, out, 4), 0); /* no room for the NUL */
    CHECK_EQ_INT(sp_b64url_decode("-_8", 3, back, sizeof back), 2);
    CHECK(back[0] == 0xfb && back[1] == 0xff);
    CHECK_EQ_INT(sp_b64url_decode("Zm9v", 4, back, sizeof back), 3);
    CHECK_EQ_INT(sp_b64url_decode("Zg==", 4, back, sizeof back), 1);
    CHECK_EQ_INT(sp_b64url_decode("Z+==", 4, back, sizeof back), -1);
    CHECK_EQ_INT(sp_b64url_decode("Z", 1, back, sizeof back), -1);
}

TEST(jwk_is_canonical_and_thumbprint_matches_rfc7638_shape)
{
    EVP_PKEY *k = a3_key();
    REQUIRE(k != NULL);
    char jwk[256], err[256], thumb[64];
    REQUIRE(sp_jwk_json(k, jwk, sizeof jwk, err, sizeof err) == 0);
    CHECK_STR_EQ(jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                      "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}");
    REQUIRE(sp_jwk_thumbprint(k, thumb, err, sizeof err) == 0);
    unsigned char md[32];
    char want[64];
    SHA256((const unsigned char *)jwk, strlen(jwk), md);
    sp_b64url(md, 32, want, sizeof want);
    CHECK_STR_EQ(thumb, want);
    CHECK_EQ_INT((int)strlen(thumb), 43);
    EVP_PKEY_free(k);
}

TEST(jwk_refuses_a_non_p256_key)
{
    EVP_PKEY *k = EVP_EC_gen("P-384");
    REQUIRE(k != NULL);
    char jwk[256], err[256] = "";
    CHECK_EQ_INT(sp_jwk_json(k, jwk, sizeof jwk, err, sizeof err), -1);
    CHECK(strstr(err, "P-256") != NULL);
    EVP_PKEY_free(k);
}

/* Pulls "name":"value" out of the flattened JWS (values are base64url, no escapes). */
static void member(const char *jws, const char *name, char *out, size_t len)
{
    char key[32];
    snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *p = strstr(jws, key);
    out[0] = 0;
    if (!p)
        return;
    p += strlen(key);
    size_t n = strcspn(p, "\"");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), p);
}

static bool verifies(EVP_PKEY *k, const char *jws)
{
    char prot[1024], payload[1024], sig[256], input[2100];
    unsigned char raw[64];
    member(jws, "protected", prot, sizeof prot);
    member(jws, "payload", payload, sizeof payload);
    member(jws, "signature", sig, sizeof sig);
    if (sp_b64url_decode(sig, strlen(sig), raw, sizeof raw) != 64)
        return false;
    snprintf(input, sizeof input, "%s.%s", prot, payload);
    ECDSA_SIG *s = ECDSA_SIG_new();
    ECDSA_SIG_set0(s, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    unsigned char *der = NULL;
    int dl = i2d_ECDSA_SIG(s, &der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
              EVP_DigestVerify(md, der, (size_t)dl, (const unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(s);
    return ok;
}

TEST(jws_es256_verifies_and_carries_the_header)
{
    EVP_PKEY *k = a3_key();
    REQUIRE(k != NULL);
    char err[256], prot64[1024], prot[1024];
    char *jws = sp_jws_sign(k, NULL, "nonce-1", "https://ca/new-acct", "{\"a\":1}", err, sizeof err);
    REQUIRE(jws != NULL);
    CHECK(verifies(k, jws));
    member(jws, "protected", prot64, sizeof prot64);
    long n = sp_b64url_decode(prot64, strlen(prot64), (unsigned char *)prot, sizeof prot - 1);
    REQUIRE(n > 0);
    prot[n] = 0;
    CHECK(strstr(prot, "\"alg\":\"ES256\"") && strstr(prot, "\"jwk\":{\"crv\":\"P-256\"") &&
          strstr(prot, "\"nonce\":\"nonce-1\"") && strstr(prot, "\"url\":\"https://ca/new-acct\""));
    free(jws);
    /* with a kid, and POST-as-GET: an empty payload */
    jws = sp_jws_sign(k, "https://ca/acct/1", "n2", "https://ca/order/1", NULL, err, sizeof err);
    REQUIRE(jws != NULL);
    CHECK(strstr(jws, "\"payload\":\"\"") != NULL);
    CHECK(verifies(k, jws));
    member(jws, "protected", prot64, sizeof prot64);
    n = sp_b64url_decode(prot64, strlen(prot64), (unsigned char *)prot, sizeof prot - 1);
    REQUIRE(n > 0);
    prot[n] = 0;
    CHECK(strstr(prot, "\"kid\":\"https://ca/acct/1\"") && !strstr(prot, "jwk"));
    free(jws);
    CHECK(sp_jws_sign(k, NULL, "bad\"nonce", "https://ca/x", NULL, err, sizeof err) == NULL);
    EVP_PKEY_free(k);
}

TEST(jsonr_reads_acme_documents)
{
    const char *doc = "{ \"status\": \"pending\", \"expires\": \"2026-12-01T00:00:00Z\",\n"
                      "  \"identifier\": {\"type\":\"dns\",\"value\":\"a.test\"},\n"
                      "  \"challenges\": [ {\"type\":\"dns-01\",\"url\":\"u1\",\"token\":\"t1\"},\n"
                      "                  {\"type\":\"http-01\",\"url\":\"u2\",\"token\":\"t\\u00e9\\/2\"} ],\n"
                      "  \"wildcard\": false, \"n\": -1.5e2, \"z\": null }";
    sp_jv *v = sp_jv_parse(doc, strlen(doc));
    REQUIRE(v != NULL);
    CHECK_STR_EQ(sp_jv_str(v, "status"), "pending");
    CHECK_STR_EQ(sp_jv_str(sp_jv_get(v, "identifier"), "value"), "a.test");
    const sp_jv *ch = sp_jv_get(v, "challenges");
    REQUIRE(ch && ch->type == SP_JV_ARR && ch->child && ch->child->next);
    CHECK_STR_EQ(sp_jv_str(ch->child->next, "token"), "t\xc3\xa9/2");
    CHECK(sp_jv_get(v, "wildcard")->type == SP_JV_BOOL && !sp_jv_get(v, "wildcard")->b);
    CHECK(sp_jv_get(v, "n")->num == -150.0);
    CHECK(sp_jv_get(v, "z")->type == SP_JV_NULL);
    CHECK(sp_jv_str(v, "n") == NULL && sp_jv_str(v, "missing") == NULL);
    sp_jv_free(v);
}

TEST(jsonr_rejects_bad_text)
{
    static const char *const bad[] = {"", "{", "{\"a\":}", "[1,]", "{\"a\" 1}", "\"unterminated",
                                      "{\"a\":1} x", "tru", "\"ctl\x01\"", "\"\\q\"", "\"\\u12\"", NULL};
    for (int i = 0; bad[i]; i++) {
        sp_jv *v = sp_jv_parse(bad[i], strlen(bad[i]));
        if (v)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(v == NULL);
        sp_jv_free(v);
    }
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    CHECK(sp_jv_parse(deep, sizeof deep) == NULL); /* deeper than 32 */
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(b64url_round_trips_and_has_no_padding),
        UNIT(jwk_is_canonical_and_thumbprint_matches_rfc7638_shape),
        UNIT(jwk_refuses_a_non_p256_key),
        UNIT(jws_es256_verifies_and_carries_the_header),
        UNIT(jsonr_reads_acme_documents),
        UNIT(jsonr_rejects_bad_text),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
