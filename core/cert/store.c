/* store: certbot-layout certificate folders with atomic writes (see store.h). */
#include "cert/store.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sp_cert_store_dir(const char *store, const char *name, char *out, size_t len)
{
    if (!*name || name[0] == '.' || strchr(name, '/') || strstr(name, ".."))
        return -1;
    int n = strncmp(name, "*.", 2) == 0 ? snprintf(out, len, "%s/_wildcard.%s", store, name + 2)
                                        : snprintf(out, len, "%s/%s", store, name);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

int sp_cert_read_file(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n + 1 < cap)
            break;
        char *bigger = cap < (1u << 22) ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "%s: %s", path, buf ? "read error" : "too large or out of memory");
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    return 0;
}

static int mkdirs(const char *dir, char *err, size_t errlen)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return -1;
}

int sp_cert_write_file(const char *path, const char *data, size_t len, int mode, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int sp_cert_store_load(const char *store, const char *name, char **cert_pem, char **key_pem,
                       char *err, size_t errlen)
{
    char dir[4096], path[4200];
    *cert_pem = *key_pem = NULL;
    if (sp_cert_store_dir(store, name, dir, sizeof dir) != 0) {
        snprintf(err, errlen, "%s: not a name the store can hold", name);
        return -1;
    }
    snprintf(path, sizeof path, "%s/fullchain.pem", dir);
    int rc = sp_cert_read_file(path, cert_pem, err, errlen);
    if (rc != 0)
        return rc;
    snprintf(path, sizeof path, "%s/privkey.pem", dir);
    rc = sp_cert_read_file(path, key_pem, err, errlen);
    if (rc == 1)
        snprintf(err, errlen, "%s has fullchain.pem but no privkey.pem", dir);
    if (rc != 0) {
        free(*cert_pem);
        *cert_pem = NULL;
        return -1;
    }
    return 0;
}

int sp_cert_store_save(const char *store, const char *name, const char *cert_pem, const char *key_pem,
                       char *err, size_t errlen)
{
    char dir[4096], path[4200];
    if (sp_cert_store_dir(store, name, dir, sizeof dir) != 0) {
        snprintf(err, errlen, "%s: not a name the store can hold", name);
        return -1;
    }
    if (mkdirs(dir, err, errlen) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/privkey.pem", dir);
    if (sp_cert_write_file(path, key_pem, strlen(key_pem), 0600, err, errlen) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/fullchain.pem", dir);
    return sp_cert_write_file(path, cert_pem, strlen(cert_pem), 0644, err, errlen);
}

int sp_cert_store_account_key(const char *store, char **key_pem, char *err, size_t errlen)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/_acme", store);
    snprintf(path, sizeof path, "%s/account.pem", dir);
    int rc = sp_cert_read_file(path, key_pem, err, errlen);
    if (rc <= 0)
        return rc;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = 0;
    if (!k || !b || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        (n = BIO_get_mem_data(b, &data)) <= 0) {
        snprintf(err, errlen, "cannot create an account key");
        rc = -1;
    } else if (mkdirs(dir, err, errlen) != 0 || sp_cert_write_file(path, data, (size_t)n, 0600, err, errlen) != 0) {
        rc = -1;
    } else if ((*key_pem = malloc((size_t)n + 1))) {
        memcpy(*key_pem, data, (size_t)n);
        (*key_pem)[n] = 0;
        rc = 0;
    } else {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    BIO_free(b);
    EVP_PKEY_free(k);
    return rc;
}
