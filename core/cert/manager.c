/* manager: resolve, order, renew and swap "auto" certificates (see manager.h). */
#include "cert/manager.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cert/acme.h"
#include "tls/cert_live.h"
#include "tls/cert_pair.h"
#include "cert/store.h"
#include "lua/budget.h"
#include "util/log.h"
#include "util/metric.h"

#define RETRY_MAX_MS (6ull * 3600 * 1000)
#define REQUEST_TIMEOUT_MS 10000

typedef enum { ST_NONE = 0, ST_OK, ST_ORDERING, ST_WAITING } dom_state;
static const char *const state_names[] = {"missing", "ok", "ordering", "retry_wait"};

struct sp_certmgr;

typedef struct job {
    struct sp_certmgr *m;
    struct job *next_done;
    uv_thread_t thread;
    char *domain, *directory, *email, *ca_file, *account_key;
    sp_acme_params params;
    char *cert_pem, *key_pem;
    int rc;
    char err[1024];
} job;

typedef struct domain {
    struct domain *next;
    struct sp_certmgr *m;
    char *name;
    bool wanted;
    sp_cert_pair *pair;
    const char *source;       /* "store" | "provision" | "acme" */
    dom_state state;
    job *job;
    unsigned failures;        /* consecutive failed orders */
    uint64_t orders_ok, orders_failed;
    char last_error[1024];
    uv_timer_t *retry;        /* allocated: closes asynchronously */
} domain;

struct sp_certmgr {
    uv_loop_t *loop;
    struct sp_challenges *challenges;
    sp_gen *gen;              /* current settings and the hook's Lua state */
    domain *domains;
    uv_timer_t check;
    uv_async_t done_wake;
    uv_mutex_t lock;          /* guards done and closed */
    job *done;
    bool closed;
    _Atomic bool cancel;
    job **threads;            /* every job started, joined at free */
    size_t nthreads;
};

static const sp_acme_settings *acme(const sp_certmgr *m) { return &m->gen->settings.acme; }

static void publish(domain *d, sp_cert_pair *p, const char *source)
{
    if (sp_cert_live_set(d->name, p) != 0) {
        sp_error("certificate for %s: out of memory", d->name);
        sp_cert_pair_unref(p);
        return;
    }
    sp_cert_pair_unref(d->pair);
    d->pair = p;
    d->source = source;
    d->state = ST_OK;
    char when[32];
    struct tm tm;
    gmtime_r(&p->not_after, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    sp_info("certificate for %s from the %s, valid until %s", d->name, source, when);
}

/* Parses and checks a PEM pair for d; NULL (logged) when unusable. */
static sp_cert_pair *usable(domain *d, const char *cert, const char *key, const char *from)
{
    char err[512];
    sp_cert_pair *p = sp_cert_pair_parse(cert, key, err, sizeof err);
    if (!p) {
        sp_error("certificate for %s from the %s: %s", d->name, from, err);
        return NULL;
    }
    if (!sp_cert_pair_covers(p, d->name)) {
        sp_error("certificate for %s from the %s: it does not cover the name", d->name, from);
        sp_cert_pair_unref(p);
        return NULL;
    }
    return p;
}

static bool due(const sp_certmgr *m, const sp_cert_pair *p)
{
    time_t now = time(NULL);
    return (uint64_t)p->not_after <= (uint64_t)now + acme(m)->renew_before_days * 86400;
}

/* ---- ACME jobs ---- */

static void job_free(job *j)
{
    free(j->domain);
    free(j->directory);
    free(j->email);
    free(j->ca_file);
    free(j->account_key);
    free(j->cert_pem);
    free(j->key_pem);
    free(j);
}

static void job_main(void *arg)
{
    job *j = arg;
    j->rc = sp_acme_obtain(&j->params, &j->cert_pem, &j->key_pem, j->err, sizeof j->err);
    sp_certmgr *m = j->m;
    uv_mutex_lock(&m->lock);
    j->next_done = m->done;
    m->done = j;
    if (!m->closed)
        uv_async_send(&m->done_wake);
    uv_mutex_unlock(&m->lock);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void start_order(domain *d)
{
    sp_certmgr *m = d->m;
    const sp_acme_settings *a = acme(m);
    if (strncmp(d->name, "*.", 2) == 0) {
        snprintf(d->last_error, sizeof d->last_error, "a wildcard name cannot be validated with HTTP-01");
        sp_error("certificate for %s: %s; no certificate", d->name, d->last_error);
        return;
    }
    char err[512];
    char *key = NULL;
    if (sp_cert_store_account_key(m->gen->settings.cert_store, &key, err, sizeof err) != 0) {
        snprintf(d->last_error, sizeof d->last_error, "ACME account key: %s", err);
        sp_error("certificate for %s: %s", d->name, d->last_error);
        return;
    }
    job *j = calloc(1, sizeof *j);
    job **grown = realloc(m->threads, (m->nthreads + 1) * sizeof *m->threads);
    if (grown)
        m->threads = grown;
    if (!j || !grown || !(j->domain = strdup(d->name)) || !(j->directory = strdup(a->directory))) {
        free(key);
        if (j)
            job_free(j);
        sp_error("certificate for %s: out of memory", d->name);
        return;
    }
    j->m = m;
    j->account_key = key;
    j->email = dup_or_null(a->email);
    j->ca_file = dup_or_null(a->ca_file);
    j->params = (sp_acme_params){.directory = j->directory, .email = j->email, .ca_file = j->ca_file,
                                 .account_key_pem = j->account_key, .domain = j->domain,
                                 .challenges = m->challenges, .cancel = &m->cancel,
                                 .timeout_ms = REQUEST_TIMEOUT_MS};
    if (uv_thread_create(&j->thread, job_main, j) != 0) {
        sp_error("certificate for %s: cannot start the ACME thread", d->name);
        job_free(j);
        return;
    }
    m->threads[m->nthreads++] = j;
    d->job = j;
    d->state = ST_ORDERING;
    sp_info("certificate for %s: ordering from %s", d->name, a->directory);
}

static void on_retry(uv_timer_t *t)
{
    domain *d = t->data;
    if (d->wanted && !d->job)
        start_order(d);
}

static void handle_result(sp_certmgr *m, job *j);
static void drop(struct domain *d);

static void on_jobs_done(uv_async_t *h)
{
    sp_certmgr *m = h->data;
    uv_mutex_lock(&m->lock);
    job *list = m->done;
    m->done = NULL;
    uv_mutex_unlock(&m->lock);
    for (job *j = list, *next; j; j = next) {
        next = j->next_done;
        handle_result(m, j);
        for (domain **pp = &m->domains; *pp; pp = &(*pp)->next)
            if ((*pp)->job == NULL && !(*pp)->wanted) { /* dropped by a reload meanwhile */
                domain *d = *pp;
                *pp = d->next;
                drop(d);
                break;
            }
        uv_thread_join(&j->thread); /* it has returned, or is about to */
        for (size_t i = 0; i < m->nthreads; i++)
            if (m->threads[i] == j)
                m->threads[i] = m->threads[--m->nthreads];
        job_free(j);
    }
}

static void handle_result(sp_certmgr *m, job *j)
{
    {
        domain *d = NULL;
        for (domain *x = m->domains; x; x = x->next)
            if (x->job == j)
                d = x;
        if (!d)
            return; /* the name was dropped meanwhile: the result is not needed */
        d->job = NULL;
        sp_cert_pair *p = NULL;
        if (j->rc == 0 && (p = usable(d, j->cert_pem, j->key_pem, "ACME server"))) {
            char err[512];
            if (sp_cert_store_save(m->gen->settings.cert_store, d->name, j->cert_pem, j->key_pem, err, sizeof err) != 0)
                sp_error("certificate for %s: issued but not stored (it is served; it will be ordered "
                         "again after a restart): %s", d->name, err);
            d->failures = 0;
            d->orders_ok++;
            d->last_error[0] = 0;
            if (d->wanted)
                publish(d, p, "ACME server");
            else
                sp_cert_pair_unref(p);
            return;
        }
        if (j->rc == 0)
            snprintf(j->err, sizeof j->err, "the issued certificate is unusable");
        for (char *c = j->err; *c; c++) /* one log line, whatever the server wrote */
            if ((unsigned char)*c < 0x20)
                *c = ' ';
        d->orders_failed++;
        d->failures++;
        snprintf(d->last_error, sizeof d->last_error, "%s", j->err);
        uint64_t wait = acme(m)->retry_interval * 1000;
        for (unsigned i = 1; i < d->failures && wait < RETRY_MAX_MS; i++)
            wait *= 2;
        if (wait > RETRY_MAX_MS)
            wait = RETRY_MAX_MS;
        sp_error("certificate for %s: ACME order failed (attempt %u): %s; retrying in %llu s%s", d->name,
                 d->failures, j->err, (unsigned long long)(wait / 1000),
                 d->pair ? " (the current certificate keeps serving)" : "");
        if (!d->pair)
            d->state = ST_WAITING;
        else
            d->state = ST_OK;
        if (d->wanted && !m->closed)
            uv_timer_start(d->retry, on_retry, wait, 0);
    }
}

/* ---- resolving ---- */

/* Calls certificates.provision(name). Returns 1 with *pair, 2 for "acme", 0 when the
 * hook declined or failed (logged). */
static int provision(domain *d, sp_cert_pair **pair)
{
    sp_gen *g = d->m->gen;
    lua_State *L = g->L;
    int top = lua_gettop(L);
    int rc = 0;
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_remove(L, -2);
    int tb = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->settings.cert_provision);
    lua_pushstring(L, d->name);
    sp_lua_budget_enter(L, g->settings.timeouts.lua_budget);
    int failed = lua_pcall(L, 1, 1, tb);
    sp_lua_budget_leave(NULL);
    if (failed) {
        snprintf(d->last_error, sizeof d->last_error, "certificates.provision failed: %s", lua_tostring(L, -1));
        sp_error("certificate for %s: %s", d->name, d->last_error);
    } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "acme") == 0) {
        rc = 2;
    } else if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "cert");
        lua_getfield(L, -2, "key");
        const char *cert = lua_tostring(L, -2), *key = lua_tostring(L, -1);
        if (!cert || !key || lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
            snprintf(d->last_error, sizeof d->last_error,
                     "certificates.provision returned a table without cert and key PEM strings");
            sp_error("certificate for %s: %s", d->name, d->last_error);
        } else if ((*pair = usable(d, cert, key, "provision hook"))) {
            char err[512];
            if (sp_cert_store_save(g->settings.cert_store, d->name, cert, key, err, sizeof err) != 0)
                sp_warn("certificate for %s from the provision hook: not stored: %s", d->name, err);
            rc = 1;
        }
    } else if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        snprintf(d->last_error, sizeof d->last_error, "certificates.provision returned nothing");
        sp_warn("certificate for %s: %s: no certificate", d->name, d->last_error);
    } else {
        snprintf(d->last_error, sizeof d->last_error,
                 "certificates.provision returned a %s (expected { cert = PEM, key = PEM } or \"acme\")",
                 luaL_typename(L, -1));
        sp_error("certificate for %s: %s", d->name, d->last_error);
    }
    lua_settop(L, top);
    return rc;
}

/* After the store (or for a renewal): the hook, then ACME. */
static void obtain(domain *d)
{
    sp_certmgr *m = d->m;
    if (d->job)
        return;
    if (m->gen->settings.cert_provision != LUA_NOREF) {
        sp_cert_pair *p = NULL;
        int rc = provision(d, &p);
        if (rc == 1) {
            if (d->pair && p->not_after <= d->pair->not_after) {
                sp_cert_pair_unref(p); /* the hook gave the same (or an older) certificate */
                return;
            }
            publish(d, p, "provision hook");
            return;
        }
        if (rc == 0)
            return;
    }
    if (!acme(m)->enabled) {
        if (d->pair)
            sp_warn("certificate for %s expires within %llu days and nothing can renew it "
                    "(no acme configured%s)", d->name, (unsigned long long)acme(m)->renew_before_days,
                    m->gen->settings.cert_provision != LUA_NOREF ? ", the provision hook said \"acme\"" : "");
        else {
            snprintf(d->last_error, sizeof d->last_error, "not in the store%s and no acme configured",
                     m->gen->settings.cert_provision != LUA_NOREF ? ", the provision hook said \"acme\"" : "");
            sp_error("certificate for %s: %s: no certificate", d->name, d->last_error);
        }
        return;
    }
    if (uv_is_active((uv_handle_t *)d->retry))
        return; /* backing off after a failure: the retry timer orders */
    start_order(d);
}

static void resolve(domain *d)
{
    sp_certmgr *m = d->m;
    char *cert = NULL, *key = NULL, err[512];
    int rc = sp_cert_store_load(m->gen->settings.cert_store, d->name, &cert, &key, err, sizeof err);
    if (rc < 0)
        sp_error("certificate for %s: store: %s", d->name, err);
    if (rc == 0) {
        sp_cert_pair *p = usable(d, cert, key, "store");
        if (p)
            publish(d, p, "store");
    }
    free(cert);
    free(key);
    if (!d->pair || due(m, d->pair))
        obtain(d);
}

static void on_check(uv_timer_t *t)
{
    sp_certmgr *m = t->data;
    for (domain *d = m->domains; d; d = d->next) {
        if (!d->wanted || d->job)
            continue;
        if (!d->pair) {
            if (!uv_is_active((uv_handle_t *)d->retry))
                resolve(d);
        } else if (due(m, d->pair)) {
            sp_info("certificate for %s: expires within %llu days: renewing", d->name,
                    (unsigned long long)acme(m)->renew_before_days);
            obtain(d);
        }
    }
}

static domain *find(sp_certmgr *m, const char *name)
{
    for (domain *d = m->domains; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static void add_name(sp_certmgr *m, const sp_domain_pattern *p)
{
    char name[260];
    if (p->kind == SP_DOMAIN_ANY)
        return;
    snprintf(name, sizeof name, "%s%s", p->kind == SP_DOMAIN_WILDCARD ? "*." : "", p->name);
    domain *d = find(m, name);
    if (d) {
        d->wanted = true;
        return;
    }
    d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(name)) || !(d->retry = malloc(sizeof *d->retry))) {
        if (d)
            free(d->name);
        free(d);
        sp_error("certificate for %s: out of memory", name);
        return;
    }
    d->m = m;
    d->wanted = true;
    uv_timer_init(m->loop, d->retry);
    d->retry->data = d;
    d->next = m->domains;
    m->domains = d;
}

static void close_free(uv_handle_t *h) { free(h); }

static void drop(domain *d)
{
    sp_cert_live_set(d->name, NULL);
    sp_cert_pair_unref(d->pair);
    uv_close((uv_handle_t *)d->retry, close_free);
    free(d->name);
    free(d);
}

sp_certmgr *sp_certmgr_new(uv_loop_t *loop, struct sp_challenges *challenges)
{
    sp_certmgr *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->loop = loop;
    m->challenges = challenges;
    uv_mutex_init(&m->lock);
    uv_async_init(loop, &m->done_wake, on_jobs_done);
    m->done_wake.data = m;
    uv_timer_init(loop, &m->check);
    m->check.data = m;
    atomic_init(&m->cancel, false);
    return m;
}

void sp_certmgr_sync(sp_certmgr *m, sp_gen *g)
{
    if (!m || m->closed)
        return;
    sp_gen_ref(g);
    if (m->gen)
        sp_gen_unref(m->gen);
    m->gen = g;
    for (domain *d = m->domains; d; d = d->next)
        d->wanted = false;
    for (size_t i = 0; i < g->nroutes; i++)
        if (g->routes[i].tls.cert_auto)
            for (size_t k = 0; k < g->routes[i].ndomains; k++)
                add_name(m, &g->routes[i].domains[k]);
    for (domain **pp = &m->domains; *pp;) {
        domain *d = *pp;
        if (!d->wanted && !d->job) {
            *pp = d->next;
            drop(d);
            continue;
        }
        if (d->wanted && !d->pair && !d->job && !uv_is_active((uv_handle_t *)d->retry))
            resolve(d);
        pp = &d->next;
    }
    if (m->domains) {
        uint64_t every = acme(m)->renew_check_interval * 1000;
        uv_timer_start(&m->check, on_check, every, every);
    } else {
        uv_timer_stop(&m->check);
    }
}

void sp_certmgr_stats_json(sp_certmgr *m, sp_json *j)
{
    sp_json_key(j, "certificates");
    sp_json_obj_open(j);
    sp_json_key(j, "no_certificate_handshakes");
    sp_json_uint(j, sp_cert_live_missing());
    sp_json_key(j, "domains");
    sp_json_obj_open(j);
    time_t now = time(NULL);
    for (domain *d = m ? m->domains : NULL; d; d = d->next) {
        if (!d->wanted)
            continue;
        sp_json_key(j, d->name);
        sp_json_obj_open(j);
        sp_json_key(j, "state");
        sp_json_str(j, d->job ? "ordering" : state_names[d->state]);
        sp_json_key(j, "source");
        sp_json_str(j, d->pair ? d->source : NULL);
        sp_json_key(j, "not_after");
        if (d->pair)
            sp_json_int(j, (long long)d->pair->not_after);
        else
            sp_json_str(j, NULL);
        sp_json_key(j, "expires_in_seconds");
        if (d->pair)
            sp_json_int(j, (long long)(d->pair->not_after - now));
        else
            sp_json_str(j, NULL);
        sp_json_key(j, "orders");
        sp_json_uint(j, d->orders_ok);
        sp_json_key(j, "orders_failed");
        sp_json_uint(j, d->orders_failed);
        sp_json_key(j, "last_error");
        sp_json_str(j, d->last_error[0] ? d->last_error : NULL);
        sp_json_obj_close(j);
    }
    sp_json_obj_close(j);
    sp_json_obj_close(j);
}

void sp_certmgr_metrics_text(sp_certmgr *m, sp_buf *b)
{
    sp_metric_head(b, "smartproxy_certificate_domain_expiry_timestamp_seconds", SP_METRIC_GAUGE,
                   "When the certificate served for each \"auto\" name expires (Unix time).");
    for (domain *d = m ? m->domains : NULL; d; d = d->next) {
        if (!d->wanted || !d->pair)
            continue;
        sp_buf_appendf(b, "smartproxy_certificate_domain_expiry_timestamp_seconds{domain=\"");
        sp_buf_append_label(b, d->name);
        sp_buf_appendf(b, "\"} %lld\n", (long long)d->pair->not_after);
    }
    sp_metric_head(b, "smartproxy_certificate_orders_total", SP_METRIC_COUNTER, "ACME orders finished, by result.");
    uint64_t ok = 0, failed = 0;
    for (domain *d = m ? m->domains : NULL; d; d = d->next)
        ok += d->orders_ok, failed += d->orders_failed;
    sp_buf_appendf(b, "smartproxy_certificate_orders_total{result=\"ok\"} %llu\n", (unsigned long long)ok);
    sp_buf_appendf(b, "smartproxy_certificate_orders_total{result=\"failed\"} %llu\n", (unsigned long long)failed);
    sp_metric_head(b, "smartproxy_tls_no_certificate_total", SP_METRIC_COUNTER,
                   "Client handshakes refused because no certificate existed (yet) for the name.");
    sp_buf_appendf(b, "smartproxy_tls_no_certificate_total %llu\n", (unsigned long long)sp_cert_live_missing());
}

void sp_certmgr_stop(sp_certmgr *m)
{
    if (!m || m->closed)
        return;
    atomic_store(&m->cancel, true);
    uv_mutex_lock(&m->lock);
    m->closed = true;
    uv_mutex_unlock(&m->lock);
    uv_close((uv_handle_t *)&m->done_wake, NULL);
    uv_close((uv_handle_t *)&m->check, NULL);
    for (domain *d = m->domains; d; d = d->next)
        uv_close((uv_handle_t *)d->retry, close_free);
}

void sp_certmgr_free(sp_certmgr *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nthreads; i++) {
        uv_thread_join(&m->threads[i]->thread);
        job_free(m->threads[i]);
    }
    free(m->threads);
    for (domain *d = m->domains, *n; d; d = n) {
        n = d->next;
        sp_cert_pair_unref(d->pair);
        free(d->name);
        free(d);
    }
    uv_mutex_destroy(&m->lock);
    if (m->gen)
        sp_gen_unref(m->gen);
    free(m);
}
