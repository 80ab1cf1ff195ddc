/* The certificate store (core/cert/store.h) and parsed pairs (core/tls/cert_pair.h): the
 * certbot layout, wildcard folders, unsafe names, atomic writes with modes, the account
 * key made once, and a pair's checks (key match, names covered). */
#include "tls/cert_pair.h"
#include "cert/store.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "unit_tls.h"

static char root[256];

static void fresh_root(void)
{
    snprintf(root, sizeof root, "/tmp/sp-store-test-XXXXXX");
    if (!mkdtemp(root))
        abort();
}

static char *pem_of_key(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

/* A self-signed P-256 certificate for the SAN list (e.g. "DNS:a.test,DNS:*.w.test"), as PEM. */
static char *self_signed(EVP_PKEY *k, const char *san)
{
    X509 *x = unit_self_signed(k, san);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(b);
    X509_free(x);
    return out;
}

TEST(folders_follow_certbot_and_refuse_unsafe_names)
{
    char dir[512];
    REQUIRE(sp_cert_store_dir("/s", "a.example.com", dir, sizeof dir) == 0);
    CHECK_STR_EQ(dir, "/s/a.example.com");
    REQUIRE(sp_cert_store_dir("/s", "*.example.com", dir, sizeof dir) == 0);
    CHECK_STR_EQ(dir, "/s/_wildcard.example.com");
    CHECK_EQ_INT(sp_cert_store_dir("/s", "../etc", dir, sizeof dir), -1);
    CHECK_EQ_INT(sp_cert_store_dir("/s", "a/b", dir, sizeof dir), -1);
    CHECK_EQ_INT(sp_cert_store_dir("/s", ".hidden", dir, sizeof dir), -1);
    CHECK_EQ_INT(sp_cert_store_dir("/s", "", dir, sizeof dir), -1);
    CHECK_EQ_INT(sp_cert_store_dir("/s", "a.example.com", dir, 8), -1);
}

TEST(save_then_load_round_trips_with_modes)
{
    fresh_root();
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char *key = pem_of_key(k), *cert = self_signed(k, "DNS:a.test"), err[512];
    char *c = NULL, *kk = NULL, path[600];
    CHECK_EQ_INT(sp_cert_store_load(root, "a.test", &c, &kk, err, sizeof err), 1); /* nothing yet */
    REQUIRE(sp_cert_store_save(root, "a.test", cert, key, err, sizeof err) == 0);
    REQUIRE(sp_cert_store_load(root, "a.test", &c, &kk, err, sizeof err) == 0);
    CHECK_STR_EQ(c, cert);
    CHECK_STR_EQ(kk, key);
    struct stat st;
    snprintf(path, sizeof path, "%s/a.test/privkey.pem", root);
    REQUIRE(stat(path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/a.test", root);
    REQUIRE(stat(path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0700);
    free(c);
    free(kk);
    /* a chain without its key is an error, not "nothing stored" */
    snprintf(path, sizeof path, "%s/a.test/privkey.pem", root);
    unlink(path);
    CHECK_EQ_INT(sp_cert_store_load(root, "a.test", &c, &kk, err, sizeof err), -1);
    CHECK(strstr(err, "no privkey.pem") != NULL);
    snprintf(path, sizeof path, "%s/a.test/fullchain.pem", root);
    unlink(path);
    snprintf(path, sizeof path, "%s/a.test", root);
    rmdir(path);
    rmdir(root);
    free(key);
    free(cert);
    EVP_PKEY_free(k);
}

TEST(account_key_is_made_once)
{
    fresh_root();
    char *a = NULL, *b = NULL, err[512], path[600];
    REQUIRE(sp_cert_store_account_key(root, &a, err, sizeof err) == 0);
    REQUIRE(sp_cert_store_account_key(root, &b, err, sizeof err) == 0);
    CHECK_STR_EQ(a, b);
    CHECK(strstr(a, "PRIVATE KEY") != NULL);
    struct stat st;
    snprintf(path, sizeof path, "%s/_acme/account.pem", root);
    REQUIRE(stat(path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    unlink(path);
    snprintf(path, sizeof path, "%s/_acme", root);
    rmdir(path);
    rmdir(root);
    free(a);
    free(b);
}

TEST(pair_checks_key_and_names)
{
    EVP_PKEY *k = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    char *key = pem_of_key(k), *wrong = pem_of_key(other), err[512];
    char *cert = self_signed(k, "DNS:a.test,DNS:*.w.test");
    sp_cert_pair *p = sp_cert_pair_parse(cert, key, err, sizeof err);
    REQUIRE(p != NULL);
    CHECK(p->not_after > p->not_before);
    CHECK(sp_cert_pair_covers(p, "a.test"));
    CHECK(sp_cert_pair_covers(p, "x.w.test"));
    CHECK(sp_cert_pair_covers(p, "*.w.test"));
    CHECK(!sp_cert_pair_covers(p, "b.test"));
    CHECK(!sp_cert_pair_covers(p, "*.a.test"));
    sp_cert_pair_unref(p);
    CHECK(sp_cert_pair_parse(cert, wrong, err, sizeof err) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    CHECK(sp_cert_pair_parse("not pem", key, err, sizeof err) == NULL);
    CHECK(sp_cert_pair_parse(cert, "not pem", err, sizeof err) == NULL);
    free(key);
    free(wrong);
    free(cert);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(folders_follow_certbot_and_refuse_unsafe_names),
        UNIT(save_then_load_round_trips_with_modes),
        UNIT(account_key_is_made_once),
        UNIT(pair_checks_key_and_names),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
