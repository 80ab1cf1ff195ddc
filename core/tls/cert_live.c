/* cert_live: the certificates "auto" routes serve, swapped atomically (see cert_live.h). */
#include "tls/cert_live.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "util/log.h"

typedef struct entry {
    struct entry *next;
    char *name;
    sp_cert_pair *pair;
} entry;

static uv_rwlock_t lock;
static uv_once_t once = UV_ONCE_INIT;
static entry *head;
static _Atomic uint64_t missing;

static void init_lock(void) { uv_rwlock_init(&lock); }

int sp_cert_live_set(const char *name, sp_cert_pair *pair)
{
    uv_once(&once, init_lock);
    entry *fresh = NULL;
    if (pair) { /* allocate outside the lock */
        fresh = calloc(1, sizeof *fresh);
        if (!fresh || !(fresh->name = strdup(name))) {
            free(fresh);
            return -1;
        }
        sp_cert_pair_ref(pair);
        fresh->pair = pair;
    }
    sp_cert_pair *old = NULL;
    uv_rwlock_wrlock(&lock);
    entry **pp = &head;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->name, name) == 0)
            break;
    if (*pp && fresh) {
        old = (*pp)->pair;
        (*pp)->pair = fresh->pair;
        free(fresh->name);
        free(fresh);
    } else if (*pp) {
        entry *e = *pp;
        *pp = e->next;
        old = e->pair;
        free(e->name);
        free(e);
    } else if (fresh) {
        fresh->next = head;
        head = fresh;
    }
    uv_rwlock_wrunlock(&lock);
    sp_cert_pair_unref(old);
    return 0;
}

static sp_cert_pair *find_locked(const char *name)
{
    for (entry *e = head; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e->pair;
    return NULL;
}

sp_cert_pair *sp_cert_live_get(const char *sni)
{
    uv_once(&once, init_lock);
    char name[256], wild[258];
    size_t n = strlen(sni);
    if (n == 0 || n >= sizeof name)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        name[i] = (char)tolower((unsigned char)sni[i]);
    if (n > 1 && name[n - 1] == '.')
        name[--n] = 0;
    const char *dot = strchr(name, '.');
    snprintf(wild, sizeof wild, "*%s", dot ? dot : "");
    uv_rwlock_rdlock(&lock);
    sp_cert_pair *p = find_locked(name);
    if (!p && dot)
        p = find_locked(wild);
    if (p)
        sp_cert_pair_ref(p);
    uv_rwlock_rdunlock(&lock);
    return p;
}

int sp_cert_live_select(SSL *ssl, void *arg)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    sp_cert_pair *p = sni ? sp_cert_live_get(sni) : NULL;
    if (!p) {
        atomic_fetch_add_explicit(&missing, 1, memory_order_relaxed);
        sp_warn("TLS handshake refused: no certificate (yet) for %s%s%s", sni ? "\"" : "",
                sni ? sni : "a client without SNI", sni ? "\"" : "");
        return 0;
    }
    int ok = SSL_use_certificate(ssl, p->leaf) == 1 && SSL_use_PrivateKey(ssl, p->key) == 1 &&
             SSL_set1_chain(ssl, p->chain) == 1;
    sp_cert_pair_unref(p);
    return ok ? 1 : 0;
}

uint64_t sp_cert_live_missing(void) { return atomic_load_explicit(&missing, memory_order_relaxed); }

void sp_cert_live_clear(void)
{
    uv_once(&once, init_lock);
    uv_rwlock_wrlock(&lock);
    entry *e = head;
    head = NULL;
    uv_rwlock_wrunlock(&lock);
    while (e) {
        entry *n = e->next;
        sp_cert_pair_unref(e->pair);
        free(e->name);
        free(e);
        e = n;
    }
}
