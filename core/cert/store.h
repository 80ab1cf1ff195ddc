/* store: certificates on disk, as certbot keeps them (SPEC 8).
 *
 *   <store>/<name>/fullchain.pem   the leaf, then its chain
 *   <store>/<name>/privkey.pem     the key, mode 0600
 *   <store>/_acme/account.pem      the ACME account key (P-256), mode 0600
 *
 * A wildcard name "*.example.com" lives in "_wildcard.example.com". Writes go to a
 * temporary file in the same folder, are fsync'ed and renamed over the old one, so a
 * reader (or a crash) sees the old pair or the new one, never half of one. The key is
 * written before the chain: a chain is only ever next to a key that matches it, or next
 * to the previous key for the instant between the two renames, which sp_cert_pair_parse
 * then refuses (and the next load retries). Main thread only (blocking file I/O). */
#ifndef SP_CERT_STORE_H
#define SP_CERT_STORE_H

#include <stddef.h>

/* "<store>/<folder for name>" into out; -1 when it does not fit or the name is unsafe
 * (a '/', "..", a leading '.'). */
int sp_cert_store_dir(const char *store, const char *name, char *out, size_t len);
/* Reads both files: 0 with malloc'ed *cert_pem and *key_pem; 1 when the folder has no
 * pair (not an error); -1 with a reason in err. */
int sp_cert_store_load(const char *store, const char *name, char **cert_pem, char **key_pem,
                       char *err, size_t errlen);
/* Writes both files atomically (creating the folders, 0700). 0, or -1 with a reason. */
int sp_cert_store_save(const char *store, const char *name, const char *cert_pem, const char *key_pem,
                       char *err, size_t errlen);
/* Reads a whole file (malloc'ed, NUL-terminated) into *out: 0; 1 when it does not exist;
 * -1 with a reason. */
int sp_cert_read_file(const char *path, char **out, char *err, size_t errlen);
/* Writes path atomically (temporary file, fsync, rename) with the given mode. */
int sp_cert_write_file(const char *path, const char *data, size_t len, int mode, char *err, size_t errlen);
/* The ACME account key's PEM, created (P-256) and stored on first use. */
int sp_cert_store_account_key(const char *store, char **key_pem, char *err, size_t errlen);

#endif
