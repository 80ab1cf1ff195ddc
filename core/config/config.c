/* Compiles the configuration table into a generation. Every check names the file, the
 * route (name and 1-based index) and the field path, and says what was expected and
 * what was found (SPEC 10). Errors are raised with lua_error from inside a protected
 * call: whatever was allocated so far already hangs off the generation, which the caller
 * frees on failure, so the long jump leaks nothing. */
#include "config/config.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "admin/guard.h"
#include "lua/memory.h"
#include "nft/options.h"
#include "proto/client_hello.h"
#include "util/log.h"

typedef struct cfg_cx {
    lua_State *L;
    sp_gen *g;
    const char *file;
    const sp_route *route;   /* the route being compiled, for messages */
} cfg_cx;

/* Keys the SPEC defines that this build does not implement yet: rejected with a clear
 * message instead of being silently ignored. */
static const char *const planned_keys[] = {
    NULL,
};

static bool in_list(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (strcmp(*list, k) == 0)
            return true;
    return false;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort(); /* out of memory while loading config: nothing sensible to do */
    return d;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p)
        abort();
    return p;
}

/* "string \"abc\"", "number 5", "table", "nil" ... for messages. */
void sp_config_describe(lua_State *L, int idx, char *out, size_t len)
{
    int t = lua_type(L, idx);
    switch (t) {
    case LUA_TSTRING: snprintf(out, len, "string \"%.60s\"", lua_tostring(L, idx)); break;
    case LUA_TNUMBER: snprintf(out, len, "number %.14g", lua_tonumber(L, idx)); break;
    case LUA_TBOOLEAN: snprintf(out, len, "boolean %s", lua_toboolean(L, idx) ? "true" : "false"); break;
    default: snprintf(out, len, "%s", lua_typename(L, t)); break;
    }
}

__attribute__((noreturn, format(printf, 3, 4)))
static void fail(cfg_cx *cx, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cx->route)
        lua_pushfstring(cx->L, "%s: route \"%s\" (#%d): %s: %s", cx->file, cx->route->name,
                        cx->route->index, field, msg);
    else
        lua_pushfstring(cx->L, "%s: %s: %s", cx->file, field, msg);
    lua_error(cx->L);
    abort(); /* not reached */
}

__attribute__((noreturn))
static void fail_type(cfg_cx *cx, const char *field, int idx, const char *expected)
{
    char got[100];
    sp_config_describe(cx->L, idx, got, sizeof got);
    fail(cx, field, "expected %s, got %s", expected, got);
}

static void join(char *out, size_t len, const char *path, const char *key)
{
    if (path && *path)
        snprintf(out, len, "%s.%s", path, key);
    else
        snprintf(out, len, "%s", key);
}

/* Rejects keys of the table at idx that are not in allowed (typos must not pass). */
static void check_keys(cfg_cx *cx, int idx, const char *path, const char *const *allowed)
{
    lua_State *L = cx->L;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        char field[160];
        if (lua_type(L, -1) != LUA_TSTRING) {
            char got[100];
            sp_config_describe(L, -1, got, sizeof got);
            fail(cx, path && *path ? path : "(top level)", "unexpected key %s", got);
        }
        const char *k = lua_tostring(L, -1);
        if (!in_list(allowed, k)) {
            join(field, sizeof field, path, k);
            if (in_list(planned_keys, k))
                fail(cx, field, "not supported by this version of smartproxy yet");
            fail(cx, field, "unknown field");
        }
    }
}

static bool is_array(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TTABLE && lua_objlen(L, idx) > 0;
}

/* Reads a non-negative integer field; keeps *out when absent. */
static void opt_uint(cfg_cx *cx, int t, const char *path, const char *key, uint64_t max, uint64_t *out)
{
    lua_getfield(cx->L, t, key);
    if (!lua_isnil(cx->L, -1)) {
        char field[160];
        join(field, sizeof field, path, key);
        if (lua_type(cx->L, -1) != LUA_TNUMBER)
            fail_type(cx, field, -1, "a non-negative integer");
        double v = lua_tonumber(cx->L, -1);
        if (!(v >= 0) || v != floor(v) || v > (double)max) {
            char got[100];
            sp_config_describe(cx->L, -1, got, sizeof got);
            fail(cx, field, "expected an integer from 0 to %llu, got %s", (unsigned long long)max, got);
        }
        *out = (uint64_t)v;
    }
    lua_pop(cx->L, 1);
}

static const char *opt_string(cfg_cx *cx, int t, const char *path, const char *key)
{
    lua_getfield(cx->L, t, key);
    const char *s = NULL;
    if (!lua_isnil(cx->L, -1)) {
        if (lua_type(cx->L, -1) != LUA_TSTRING) {
            char field[160];
            join(field, sizeof field, path, key);
            fail_type(cx, field, -1, "a string");
        }
        s = lua_tostring(cx->L, -1); /* stays valid: the table still references it */
    }
    lua_pop(cx->L, 1);
    return s;
}

static int opt_bool(cfg_cx *cx, int t, const char *path, const char *key)
{
    lua_getfield(cx->L, t, key);
    int v = -1;
    if (!lua_isnil(cx->L, -1)) {
        if (lua_type(cx->L, -1) != LUA_TBOOLEAN) {
            char field[160];
            join(field, sizeof field, path, key);
            fail_type(cx, field, -1, "a boolean");
        }
        v = lua_toboolean(cx->L, -1);
    }
    lua_pop(cx->L, 1);
    return v;
}

/* Pushes t[key] and checks it is a table (or absent: returns false, nothing pushed). */
static bool opt_table(cfg_cx *cx, int t, const char *path, const char *key)
{
    lua_getfield(cx->L, t, key);
    if (lua_isnil(cx->L, -1)) {
        lua_pop(cx->L, 1);
        return false;
    }
    if (!lua_istable(cx->L, -1)) {
        char field[160];
        join(field, sizeof field, path, key);
        fail_type(cx, field, -1, "a table");
    }
    return true;
}

/* ---- global settings ---- */

static void compile_timeouts(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"connect", "initial_data", "http_idle", "upstream_response",
                                       "proxy_header", "inactivity", "max_lifetime",
                                       "graceful_shutdown", "upstream_idle", "lua_hog_warning",
                                       "lua_budget", "config_load", "request_body", NULL};
    sp_timeouts *to = &cx->g->settings.timeouts;
    check_keys(cx, t, "timeouts", keys);
    const uint64_t max = 365ull * 24 * 3600 * 1000;
    opt_uint(cx, t, "timeouts", "connect", max, &to->connect);
    opt_uint(cx, t, "timeouts", "initial_data", max, &to->initial_data);
    opt_uint(cx, t, "timeouts", "http_idle", max, &to->http_idle);
    opt_uint(cx, t, "timeouts", "upstream_response", max, &to->upstream_response);
    opt_uint(cx, t, "timeouts", "proxy_header", max, &to->proxy_header);
    opt_uint(cx, t, "timeouts", "inactivity", max, &to->inactivity);
    opt_uint(cx, t, "timeouts", "max_lifetime", max, &to->max_lifetime);
    opt_uint(cx, t, "timeouts", "graceful_shutdown", max, &to->graceful_shutdown);
    opt_uint(cx, t, "timeouts", "upstream_idle", max, &to->upstream_idle);
    opt_uint(cx, t, "timeouts", "lua_hog_warning", max, &to->lua_hog_warning);
    opt_uint(cx, t, "timeouts", "lua_budget", max, &to->lua_budget);
    opt_uint(cx, t, "timeouts", "config_load", max, &to->config_load);
    opt_uint(cx, t, "timeouts", "request_body", max, &to->request_body);
}

static void compile_keep_alive(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"treatment", "inactivity_multiplier", NULL};
    sp_settings *s = &cx->g->settings;
    check_keys(cx, t, "keep_alive", keys);
    const char *tr = opt_string(cx, t, "keep_alive", "treatment");
    if (tr) {
        if (strcmp(tr, "standard") == 0) s->keepalive = SP_KEEPALIVE_STANDARD;
        else if (strcmp(tr, "extended") == 0) s->keepalive = SP_KEEPALIVE_EXTENDED;
        else if (strcmp(tr, "immortal") == 0) s->keepalive = SP_KEEPALIVE_IMMORTAL;
        else fail(cx, "keep_alive.treatment", "expected \"standard\", \"extended\" or \"immortal\", got string \"%s\"", tr);
    }
    uint64_t m = s->inactivity_multiplier;
    opt_uint(cx, t, "keep_alive", "inactivity_multiplier", 1000, &m);
    if (m < 1)
        fail(cx, "keep_alive.inactivity_multiplier", "expected an integer from 1 to 1000, got number 0");
    s->inactivity_multiplier = (unsigned)m;
}

static void compile_limits(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"max_connections", "max_connections_per_ip",
                                       "connection_rate_per_minute", "max_header_bytes",
                                       "max_body_bytes", "upstream_keepalive", "lua_memory", "lua_jit",
                                       "request_body_min_rate", NULL};
    sp_settings *s = &cx->g->settings;
    check_keys(cx, t, "limits", keys);
    opt_uint(cx, t, "limits", "max_connections", 100000000, &s->max_connections);
    opt_uint(cx, t, "limits", "max_connections_per_ip", 100000000, &s->max_connections_per_ip);
    opt_uint(cx, t, "limits", "connection_rate_per_minute", 100000000, &s->connection_rate_per_minute);
    opt_uint(cx, t, "limits", "max_header_bytes", 1 << 20, &s->max_header_bytes);
    if (s->max_header_bytes < 256)
        fail(cx, "limits.max_header_bytes", "expected at least 256, got number %llu",
             (unsigned long long)s->max_header_bytes);
    opt_uint(cx, t, "limits", "max_body_bytes", UINT64_MAX >> 2, &s->max_body_bytes);
    opt_uint(cx, t, "limits", "upstream_keepalive", 100000, &s->upstream_keepalive);
    opt_uint(cx, t, "limits", "lua_memory", UINT64_MAX >> 2, &s->lua_memory);
    if (s->lua_memory && s->lua_memory < (16u << 20))
        fail(cx, "limits.lua_memory", "expected 0 (no cap) or at least 16777216 (16 MiB), got number %llu",
             (unsigned long long)s->lua_memory);
    lua_getfield(cx->L, t, "lua_jit");
    if (lua_type(cx->L, -1) == LUA_TBOOLEAN)
        s->lua_jit = lua_toboolean(cx->L, -1);
    else if (!lua_isnil(cx->L, -1))
        fail_type(cx, "limits.lua_jit", -1, "a boolean");
    lua_pop(cx->L, 1);
    opt_uint(cx, t, "limits", "request_body_min_rate", 1ull << 40, &s->request_body_min_rate);
}

static void compile_log(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"level", "format", "access", NULL};
    sp_settings *s = &cx->g->settings;
    check_keys(cx, t, "log", keys);
    const char *lv = opt_string(cx, t, "log", "level");
    if (lv && (s->log_level = sp_log_level_parse(lv)) < 0)
        fail(cx, "log.level", "expected \"error\", \"warn\", \"info\" or \"debug\", got string \"%s\"", lv);
    const char *fmt = opt_string(cx, t, "log", "format");
    if (fmt) {
        if (strcmp(fmt, "text") == 0) s->log_json = 0;
        else if (strcmp(fmt, "json") == 0) s->log_json = 1;
        else fail(cx, "log.format", "expected \"text\" or \"json\", got string \"%s\"", fmt);
    }
    lua_getfield(cx->L, t, "access");
    if (lua_type(cx->L, -1) == LUA_TBOOLEAN)
        s->log_access = lua_toboolean(cx->L, -1);
    else if (lua_type(cx->L, -1) == LUA_TSTRING && lua_objlen(cx->L, -1) > 0)
        s->access_log = xstrdup(lua_tostring(cx->L, -1));
    else if (!lua_isnil(cx->L, -1))
        fail_type(cx, "log.access", -1, "true, false or a file path");
    lua_pop(cx->L, 1);
}

/* metrics.hosts = { "admin.example.com", ... }: exact names or IP literals, no patterns
 * (a "*" would switch the Host check off). */
static void compile_metrics_hosts(cfg_cx *cx, int t)
{
    sp_settings *s = &cx->g->settings;
    if (!is_array(cx->L, t))
        fail(cx, "metrics.hosts", "expected a non-empty list of host names");
    size_t n = lua_objlen(cx->L, t);
    s->metrics_hosts = xcalloc(n, sizeof *s->metrics_hosts);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(cx->L, t, (int)i);
        char field[64];
        snprintf(field, sizeof field, "metrics.hosts[%zu]", i);
        if (lua_type(cx->L, -1) != LUA_TSTRING)
            fail_type(cx, field, -1, "a host name");
        const char *name = lua_tostring(cx->L, -1), *why = NULL;
        sp_domain_pattern *p = &s->metrics_hosts[s->nmetrics_hosts];
        if (sp_domain_pattern_parse(name, p, &why) != 0)
            fail(cx, field, "expected a host name, got string \"%s\" (%s)", name, why);
        if (p->kind != SP_DOMAIN_EXACT)
            fail(cx, field, "expected one host name, not a pattern, got string \"%s\"", name);
        s->nmetrics_hosts++;
        lua_pop(cx->L, 1);
    }
}

static void compile_metrics(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"listen", "token", "hosts", NULL};
    check_keys(cx, t, "metrics", keys);
    const char *token = opt_string(cx, t, "metrics", "token");
    if (token) {
        if (strlen(token) < 16 || strlen(token) > 200)
            fail(cx, "metrics.token", "expected a secret of 16 to 200 characters");
        cx->g->settings.metrics_token = xstrdup(token);
    }
    const char *l = opt_string(cx, t, "metrics", "listen");
    if (l) {
        sp_admin_address addr;
        if (sp_admin_address_parse(l, &addr) != 0)
            fail(cx, "metrics.listen", "expected \"ADDRESS:PORT\" (IPv6 as \"[::1]:9100\"), got string \"%s\"", l);
        /* Anyone who can reach it could read the figures and reload: only with a secret. */
        if (!addr.loopback && !token)
            fail(cx, "metrics.listen", "\"%s\" is not a loopback address; set metrics.token (a secret of "
                 "16 to 200 characters) to serve the admin endpoint there, or listen on 127.0.0.1 or [::1]", l);
        cx->g->settings.metrics_listen = xstrdup(l);
    }
    if (opt_table(cx, t, "metrics", "hosts")) {
        compile_metrics_hosts(cx, lua_gettop(cx->L));
        lua_pop(cx->L, 1);
    }
}

/* acme = { email, directory, ca_file, challenge_port, renew_before_days } */
static void compile_acme(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"email", "directory", "ca_file", "challenge_port",
                                       "renew_before_days", "renew_check_interval", "retry_interval", NULL};
    sp_acme_settings *a = &cx->g->settings.acme;
    check_keys(cx, t, "acme", keys);
    const char *email = opt_string(cx, t, "acme", "email");
    const char *dir = opt_string(cx, t, "acme", "directory");
    const char *ca = opt_string(cx, t, "acme", "ca_file");
    if (!dir)
        fail(cx, "acme.directory", "required: the ACME server's directory URL (https://...)");
    if (strncmp(dir, "https://", 8) != 0 || !dir[8])
        fail(cx, "acme.directory", "expected an https:// URL, got string \"%s\"", dir);
    if (email && (!strchr(email, '@') || strpbrk(email, " \"\\\r\n")))
        fail(cx, "acme.email", "expected an e-mail address, got string \"%s\"", email);
    uint64_t port = a->challenge_port;
    opt_uint(cx, t, "acme", "challenge_port", 65535, &port);
    if (port < 1)
        fail(cx, "acme.challenge_port", "expected a port from 1 to 65535, got number 0");
    opt_uint(cx, t, "acme", "renew_before_days", 3650, &a->renew_before_days);
    opt_uint(cx, t, "acme", "renew_check_interval", 86400 * 7, &a->renew_check_interval);
    opt_uint(cx, t, "acme", "retry_interval", 86400, &a->retry_interval);
    if (a->renew_check_interval < 1 || a->retry_interval < 1)
        fail(cx, a->retry_interval < 1 ? "acme.retry_interval" : "acme.renew_check_interval",
             "expected at least 1 (second)");
    a->enabled = true;
    a->challenge_port = (uint16_t)port;
    a->directory = xstrdup(dir);
    if (email)
        a->email = xstrdup(email);
    if (ca)
        a->ca_file = xstrdup(ca);
}

/* certificates = { store = DIR, provision = function(domain) ... end } */
static void compile_certificates(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"store", "provision", NULL};
    sp_settings *s = &cx->g->settings;
    check_keys(cx, t, "certificates", keys);
    const char *store = opt_string(cx, t, "certificates", "store");
    if (store && !*store)
        fail(cx, "certificates.store", "expected a folder path, got an empty string");
    if (store)
        s->cert_store = xstrdup(store);
    lua_getfield(cx->L, t, "provision");
    if (lua_isfunction(cx->L, -1))
        s->cert_provision = luaL_ref(cx->L, LUA_REGISTRYINDEX);
    else if (!lua_isnil(cx->L, -1))
        fail_type(cx, "certificates.provision", -1, "a function(domain)");
    else
        lua_pop(cx->L, 1);
}

static void compile_listen_addresses(cfg_cx *cx, int t)
{
    sp_settings *s = &cx->g->settings;
    size_t n = lua_objlen(cx->L, t);
    if (n == 0)
        fail(cx, "listen_addresses", "expected a non-empty list of IP addresses");
    s->listen_addresses = xcalloc(n, sizeof(char *));
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(cx->L, t, (int)i);
        char field[64];
        snprintf(field, sizeof field, "listen_addresses[%zu]", i);
        sp_ip ip;
        if (lua_type(cx->L, -1) != LUA_TSTRING || sp_ip_parse(lua_tostring(cx->L, -1), &ip) != 0)
            fail_type(cx, field, -1, "an IPv4 or IPv6 address");
        if (sp_ip_is_v4(&ip) && strchr(lua_tostring(cx->L, -1), ':'))
            fail(cx, field, "an IPv4-mapped address cannot be bound: write \"%s\" as IPv4",
                 lua_tostring(cx->L, -1));
        s->listen_addresses[s->nlisten_addresses++] = xstrdup(lua_tostring(cx->L, -1));
        lua_pop(cx->L, 1);
    }
}

/* ---- routes ---- */

static uint16_t port_value(cfg_cx *cx, const char *field, int idx)
{
    if (lua_type(cx->L, idx) != LUA_TNUMBER)
        fail_type(cx, field, idx, "a port, a range or a list");
    double v = lua_tonumber(cx->L, idx);
    if (!(v >= 1 && v <= 65535) || v != floor(v))
        fail(cx, field, "expected a port from 1 to 65535, got number %.14g", v);
    return (uint16_t)v;
}

static void add_port_range(cfg_cx *cx, sp_route *r, int idx, const char *field)
{
    lua_State *L = cx->L;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    sp_port_range pr;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        pr.from = pr.to = port_value(cx, field, idx);
    } else if (lua_istable(L, idx) && lua_objlen(L, idx) == 0) {
        static const char *const keys[] = {"from", "to", NULL};
        check_keys(cx, idx, field, keys);
        char f[160];
        lua_getfield(L, idx, "from");
        join(f, sizeof f, field, "from");
        pr.from = port_value(cx, f, -1);
        lua_getfield(L, idx, "to");
        join(f, sizeof f, field, "to");
        pr.to = port_value(cx, f, -1);
        lua_pop(L, 2);
        if (pr.from > pr.to)
            fail(cx, field, "expected from <= to, got from = %u, to = %u", pr.from, pr.to);
    } else {
        fail_type(cx, field, idx, "a port, a range or a list");
    }
    r->ports = realloc(r->ports, (r->nports + 1) * sizeof *r->ports);
    if (!r->ports)
        abort();
    r->ports[r->nports++] = pr;
}

static void compile_ports(cfg_cx *cx, sp_route *r, int t)
{
    lua_State *L = cx->L;
    lua_getfield(L, t, "ports");
    if (lua_isnil(L, -1))
        fail(cx, "match.ports", "required: a port, a range or a list");
    if (is_array(L, -1)) {
        size_t n = lua_objlen(L, -1);
        for (size_t i = 1; i <= n; i++) {
            char field[64];
            snprintf(field, sizeof field, "match.ports[%zu]", i);
            lua_rawgeti(L, -1, (int)i);
            add_port_range(cx, r, -1, field);
            lua_pop(L, 1);
        }
    } else {
        add_port_range(cx, r, -1, "match.ports");
    }
    lua_pop(L, 1);
}

/* Calls each(cx, dst, value_index, field, count) for every string of a field that is a
 * string or a list of strings; returns the count. */
static size_t for_each_string(cfg_cx *cx, void *dst, int t, const char *key, const char *field,
                              const char *expected,
                              void (*each)(cfg_cx *, void *, int, const char *, size_t))
{
    lua_State *L = cx->L;
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    bool single = lua_type(L, -1) == LUA_TSTRING;
    if (!single && !is_array(L, -1))
        fail_type(cx, field, -1, expected);
    size_t n = single ? 1 : lua_objlen(L, -1);
    for (size_t i = 1; i <= n; i++) {
        char f[160];
        if (single) {
            lua_pushvalue(L, -1);
            snprintf(f, sizeof f, "%s", field);
        } else {
            lua_rawgeti(L, -1, (int)i);
            snprintf(f, sizeof f, "%s[%zu]", field, i);
        }
        if (lua_type(L, -1) != LUA_TSTRING)
            fail_type(cx, f, -1, expected);
        each(cx, dst, lua_gettop(L), f, n);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

static void add_ip_pattern(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_ip_list *out = dst;
    if (!out->items)
        out->items = xcalloc(n, sizeof *out->items);
    const char *why = "invalid";
    if (sp_ip_pattern_parse(lua_tostring(cx->L, idx), &out->items[out->n], &why) != 0)
        fail(cx, field, "expected an IP address, CIDR or glob, got string \"%s\" (%s)",
             lua_tostring(cx->L, idx), why);
    out->n++;
}

/* A string or a list of strings, each an IP pattern. */
static void compile_ip_list(cfg_cx *cx, int t, const char *key, const char *field, sp_ip_list *out)
{
    for_each_string(cx, out, t, key, field, "an IP address, CIDR or glob, or a list of them",
                    add_ip_pattern);
}

static void add_domain(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_route *r = dst;
    if (!r->domains)
        r->domains = xcalloc(n, sizeof *r->domains);
    const char *why = "invalid";
    if (sp_domain_pattern_parse(lua_tostring(cx->L, idx), &r->domains[r->ndomains], &why) != 0)
        fail(cx, field, "expected a domain, \"*.domain\" or \"*\", got string \"%s\" (%s)",
             lua_tostring(cx->L, idx), why);
    r->ndomains++;
}

static void add_tls_version(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_route *r = dst;
    if (!r->tls_versions)
        r->tls_versions = xcalloc(n, sizeof *r->tls_versions);
    int v = sp_tls_version_parse(lua_tostring(cx->L, idx));
    if (v < 0)
        fail(cx, field, "expected \"TLSv1\", \"TLSv1.1\", \"TLSv1.2\" or \"TLSv1.3\", got string \"%s\"",
             lua_tostring(cx->L, idx));
    r->tls_versions[r->ntls_versions++] = (uint16_t)v;
}

/* match.headers: { ["x-env"] = "prod", ["user-agent"] = "/curl/" } */
static void compile_match_headers(cfg_cx *cx, sp_route *r, int t)
{
    lua_State *L = cx->L;
    size_t n = 0;
    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1))
        n++;
    r->http.match_headers = xcalloc(n, sizeof *r->http.match_headers);
    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
        char field[200];
        if (lua_type(L, -2) != LUA_TSTRING)
            fail_type(cx, "match.headers", -2, "a header name");
        snprintf(field, sizeof field, "match.headers[\"%s\"]", lua_tostring(L, -2));
        if (lua_type(L, -1) != LUA_TSTRING)
            fail_type(cx, field, -1, "a value or a \"/regex/\"");
        sp_header_match *hm = &r->http.match_headers[r->http.nmatch_headers];
        const char *v = lua_tostring(L, -1);
        size_t len = lua_objlen(L, -1);
        hm->name = xstrdup(lua_tostring(L, -2));
        if (len >= 2 && v[0] == '/' && v[len - 1] == '/') {
            char *re = xstrdup(v + 1);
            re[len - 2] = 0;
            int rc = regcomp(&hm->re, re, REG_EXTENDED | REG_NOSUB);
            free(re);
            if (rc != 0) {
                free(hm->name);
                fail(cx, field, "expected a POSIX extended regular expression, got string \"%s\"", v);
            }
        } else {
            hm->value = xstrdup(v);
        }
        r->http.nmatch_headers++;
    }
}

static void compile_template(cfg_cx *cx, const char *field, const char *text, sp_template *out)
{
    char why[200];
    if (sp_template_compile(text, out, why, sizeof why) != 0)
        fail(cx, field, "%s", why);
}

static void compile_match(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"ports", "client_ip", "domains", "tls_version", "path", "headers", NULL};
    check_keys(cx, t, "match", keys);
    const char *path = opt_string(cx, t, "match", "path");
    if (path) {
        char why[200];
        if (sp_path_pattern_compile(path, &r->http.path, why, sizeof why) != 0)
            fail(cx, "match.path", "%s, got string \"%s\"", why, path);
        r->http.has_path = true;
    }
    if (opt_table(cx, t, "match", "headers")) {
        compile_match_headers(cx, r, lua_gettop(cx->L));
        lua_pop(cx->L, 1);
    }
    compile_ports(cx, r, t);
    compile_ip_list(cx, t, "client_ip", "match.client_ip", &r->client_ip);
    for_each_string(cx, r, t, "domains", "match.domains", "a domain or a list of domains", add_domain);
    for_each_string(cx, r, t, "tls_version", "match.tls_version", "a TLS version or a list of them",
                    add_tls_version);
}

/* action.tls: { mode, certificate, min_version, upstream_verify, upstream_sni, upstream_ca_file } */
static void compile_tls(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"mode", "certificate", "min_version", "upstream_verify",
                                       "upstream_sni", "upstream_ca_file", NULL};
    static const char *const cert_keys[] = {"cert", "key", NULL};
    lua_State *L = cx->L;
    sp_route_tls *tls = &r->tls;
    check_keys(cx, t, "action.tls", keys);
    const char *mode = opt_string(cx, t, "action.tls", "mode");
    if (!mode)
        fail(cx, "action.tls.mode", "required: \"passthrough\", \"terminate\" or \"terminate-and-reencrypt\"");
    if (strcmp(mode, "passthrough") == 0) tls->mode = SP_TLS_PASSTHROUGH;
    else if (strcmp(mode, "terminate") == 0) tls->mode = SP_TLS_TERMINATE;
    else if (strcmp(mode, "terminate-and-reencrypt") == 0) tls->mode = SP_TLS_REENCRYPT;
    else fail(cx, "action.tls.mode", "expected \"passthrough\", \"terminate\" or \"terminate-and-reencrypt\", got string \"%s\"", mode);

    const char *minv = opt_string(cx, t, "action.tls", "min_version");
    tls->min_version = 0x0303;
    if (minv && ((tls->min_version = sp_tls_version_parse(minv)) < 0 || tls->min_version < 0x0303))
        fail(cx, "action.tls.min_version", "expected \"TLSv1.2\" or \"TLSv1.3\", got string \"%s\"", minv);

    lua_getfield(L, t, "certificate");
    bool terminating = tls->mode != SP_TLS_PASSTHROUGH;
    if (lua_isnil(L, -1)) {
        if (terminating)
            fail(cx, "action.tls.certificate", "required to terminate TLS: { cert = PATH_OR_PEM, key = PATH_OR_PEM }");
    } else if (!terminating) {
        fail(cx, "action.tls.certificate", "a passthrough route has no certificate (the target presents its own)");
    } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
        tls->cert_auto = true; /* names checked once the whole configuration is read */
    } else if (!lua_istable(L, -1)) {
        fail_type(cx, "action.tls.certificate", -1, "\"auto\" or { cert = PATH_OR_PEM, key = PATH_OR_PEM }");
    } else {
        int c = lua_gettop(L);
        check_keys(cx, c, "action.tls.certificate", cert_keys);
        const char *cert = opt_string(cx, c, "action.tls.certificate", "cert");
        const char *key = opt_string(cx, c, "action.tls.certificate", "key");
        if (!cert)
            fail(cx, "action.tls.certificate.cert", "required: a PEM file path or inline PEM");
        if (!key)
            fail(cx, "action.tls.certificate.key", "required: a PEM file path or inline PEM");
        tls->cert = xstrdup(cert);
        tls->key = xstrdup(key);
    }
    lua_pop(L, 1);

    int verify = opt_bool(cx, t, "action.tls", "upstream_verify");
    const char *sni = opt_string(cx, t, "action.tls", "upstream_sni");
    const char *ca = opt_string(cx, t, "action.tls", "upstream_ca_file");
    if ((verify >= 0 || sni || ca) && tls->mode != SP_TLS_REENCRYPT)
        fail(cx, verify >= 0 ? "action.tls.upstream_verify" : sni ? "action.tls.upstream_sni" : "action.tls.upstream_ca_file",
             "only a \"terminate-and-reencrypt\" route has an upstream TLS leg");
    tls->upstream_verify = verify == 1 || ca != NULL;
    if (sni)
        tls->upstream_sni = xstrdup(sni);
    if (ca)
        tls->upstream_ca_file = xstrdup(ca);
}

static int ref_function(cfg_cx *cx, int idx)
{
    lua_pushvalue(cx->L, idx);
    return luaL_ref(cx->L, LUA_REGISTRYINDEX);
}

static void add_target(sp_route *r, sp_target tg)
{
    r->targets = realloc(r->targets, (r->ntargets + 1) * sizeof *r->targets);
    if (!r->targets)
        abort();
    r->targets[r->ntargets++] = tg;
}

/* Compiles { host = ..., port = ... } at idx into one or more candidates (a host list
 * becomes one candidate per host, all with the same port). */
static void compile_target(cfg_cx *cx, sp_route *r, int idx, const char *field, bool allow_host_list)
{
    static const char *const keys[] = {"host", "port", NULL};
    lua_State *L = cx->L;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    if (!lua_istable(L, idx))
        fail_type(cx, field, idx, "a table { host = ..., port = ... }");
    check_keys(cx, idx, field, keys);
    char f[160];

    sp_target proto = {.host = NULL, .host_fn = LUA_NOREF, .port_fn = LUA_NOREF};
    lua_getfield(L, idx, "port");
    join(f, sizeof f, field, "port");
    if (lua_type(L, -1) == LUA_TNUMBER) {
        proto.port_kind = SP_PORT_FIXED;
        proto.port = port_value(cx, f, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "preserve") == 0) {
        proto.port_kind = SP_PORT_PRESERVE;
    } else if (lua_type(L, -1) == LUA_TFUNCTION) {
        proto.port_kind = SP_PORT_FUNCTION;
    } else {
        fail_type(cx, f, -1, "a port number, \"preserve\" or a function(ctx)");
    }
    /* port functions are referenced per candidate below, after the host is known */
    int port_idx = lua_gettop(L);

    lua_getfield(L, idx, "host");
    join(f, sizeof f, field, "host");
    int host_idx = lua_gettop(L);
    size_t nhosts = 1;
    bool list = false;
    if (lua_type(L, host_idx) == LUA_TSTRING) {
        if (lua_objlen(L, host_idx) == 0 || lua_objlen(L, host_idx) > 253)
            fail_type(cx, f, host_idx, "a host name or IP address");
    } else if (lua_type(L, host_idx) == LUA_TFUNCTION) {
    } else if (allow_host_list && is_array(L, host_idx)) {
        list = true;
        nhosts = lua_objlen(L, host_idx);
    } else {
        fail_type(cx, f, host_idx, allow_host_list ? "a host, a list of hosts or a function(ctx)"
                                                   : "a host or a function(ctx)");
    }
    for (size_t i = 1; i <= nhosts; i++) {
        sp_target tg = proto;
        if (list) {
            lua_rawgeti(L, host_idx, (int)i);
            char fi[180];
            snprintf(fi, sizeof fi, "%s[%zu]", f, i);
            if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0 || lua_objlen(L, -1) > 253)
                fail_type(cx, fi, -1, "a host name or IP address");
            tg.host = xstrdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        } else if (lua_type(L, host_idx) == LUA_TFUNCTION) {
            tg.host_fn = ref_function(cx, host_idx);
        } else {
            tg.host = xstrdup(lua_tostring(L, host_idx));
        }
        if (tg.port_kind == SP_PORT_FUNCTION)
            tg.port_fn = ref_function(cx, port_idx);
        add_target(r, tg);
    }
    lua_pop(L, 2);
}

/* action.headers.request / .response: name -> template */
static void compile_header_sets(cfg_cx *cx, int t, const char *key, sp_header_set **out, size_t *nout)
{
    lua_State *L = cx->L;
    char path[64];
    snprintf(path, sizeof path, "action.headers.%s", key);
    if (!opt_table(cx, t, "action.headers", key))
        return;
    int h = lua_gettop(L);
    size_t n = 0;
    for (lua_pushnil(L); lua_next(L, h); lua_pop(L, 1))
        n++;
    *out = xcalloc(n, sizeof **out);
    for (lua_pushnil(L); lua_next(L, h); lua_pop(L, 1)) {
        char field[200];
        if (lua_type(L, -2) != LUA_TSTRING || lua_objlen(L, -2) == 0 ||
            strpbrk(lua_tostring(L, -2), " \t\r\n:"))
            fail_type(cx, path, -2, "a header name");
        snprintf(field, sizeof field, "%s[\"%s\"]", path, lua_tostring(L, -2));
        if (lua_type(L, -1) != LUA_TSTRING || strpbrk(lua_tostring(L, -1), "\r\n"))
            fail_type(cx, field, -1, "a template string without line breaks");
        sp_header_set *hs = &(*out)[*nout];
        compile_template(cx, field, lua_tostring(L, -1), &hs->value);
        hs->name = xstrdup(lua_tostring(L, -2));
        (*nout)++;
    }
    lua_pop(L, 1);
}

/* The HTTP-only fields of an action; any of them makes the route an HTTP one. */
static void compile_http_action(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const header_keys[] = {"request", "response", NULL};
    static const char *const redirect_keys[] = {"to", "status", NULL};
    static const char *const ws_keys[] = {"enabled", NULL};
    lua_State *L = cx->L;
    sp_route_http *h = &r->http;
    h->websocket = true;
    if (opt_table(cx, t, "action", "headers")) {
        int ht = lua_gettop(L);
        check_keys(cx, ht, "action.headers", header_keys);
        compile_header_sets(cx, ht, "request", &h->request_headers, &h->nrequest_headers);
        compile_header_sets(cx, ht, "response", &h->response_headers, &h->nresponse_headers);
        lua_pop(L, 1);
        r->is_http = true;
    }
    const char *rw = opt_string(cx, t, "action", "rewrite_path");
    if (rw) {
        compile_template(cx, "action.rewrite_path", rw, &h->rewrite_path);
        h->has_rewrite = true;
        r->is_http = true;
    }
    if (opt_table(cx, t, "action", "websocket")) {
        check_keys(cx, lua_gettop(L), "action.websocket", ws_keys);
        h->websocket = opt_bool(cx, lua_gettop(L), "action.websocket", "enabled") != 0;
        lua_pop(L, 1);
        r->is_http = true;
    }
    if (opt_table(cx, t, "action", "redirect")) {
        int rt = lua_gettop(L);
        if (r->action != SP_ACTION_REDIRECT)
            fail(cx, "action.redirect", "only a \"redirect\" action has one");
        check_keys(cx, rt, "action.redirect", redirect_keys);
        const char *to = opt_string(cx, rt, "action.redirect", "to");
        if (!to)
            fail(cx, "action.redirect.to", "required: a template such as \"https://{domain}{url}\"");
        compile_template(cx, "action.redirect.to", to, &h->redirect_to);
        h->has_redirect = true;
        uint64_t status = 301;
        opt_uint(cx, rt, "action.redirect", "status", 999, &status);
        if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
            fail(cx, "action.redirect.status", "expected 301, 302, 303, 307 or 308, got number %llu",
                 (unsigned long long)status);
        h->redirect_status = (int)status;
        lua_pop(L, 1);
    } else if (r->action == SP_ACTION_REDIRECT) {
        fail(cx, "action.redirect", "required for a redirect action: { to = \"https://{domain}{url}\" }");
    }
    if (r->action == SP_ACTION_REDIRECT)
        r->is_http = true;
}

static void compile_action(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"type", "protocol", "target", "targets", "forwarding_engine",
                                       "half_open", "tls", "send_proxy_protocol", "handler", "headers",
                                       "rewrite_path", "redirect", "websocket", "nftables", NULL};
    lua_State *L = cx->L;
    check_keys(cx, t, "action", keys);
    const char *type = opt_string(cx, t, "action", "type");
    if (!type)
        fail(cx, "action.type", "required: \"forward\", \"socket-handler\", \"redirect\" or \"block\"");
    if (strcmp(type, "forward") == 0)
        r->action = SP_ACTION_FORWARD;
    else if (strcmp(type, "block") == 0)
        r->action = SP_ACTION_BLOCK;
    else if (strcmp(type, "socket-handler") == 0)
        r->action = SP_ACTION_SOCKET_HANDLER;
    else if (strcmp(type, "redirect") == 0)
        r->action = SP_ACTION_REDIRECT;
    else
        fail(cx, "action.type", "expected \"forward\", \"socket-handler\", \"redirect\" or \"block\", got string \"%s\"", type);

    const char *proto = opt_string(cx, t, "action", "protocol");
    if (proto && strcmp(proto, "tcp") != 0 && strcmp(proto, "http") != 0)
        fail(cx, "action.protocol", "expected \"tcp\" or \"http\", got string \"%s\"", proto);
    compile_http_action(cx, r, t);
    r->is_http = (proto && strcmp(proto, "http") == 0) || r->is_http;
    char nft_field[160], nft_msg[400];
    if (sp_nft_parse_action(L, t, &r->nft, nft_field, sizeof nft_field, nft_msg, sizeof nft_msg) != 0)
        fail(cx, nft_field, "%s", nft_msg);
    r->half_open = opt_bool(cx, t, "action", "half_open") == 1;
    lua_getfield(L, t, "send_proxy_protocol");
    if (lua_type(L, -1) == LUA_TBOOLEAN)
        r->send_proxy_protocol = lua_toboolean(L, -1) ? 1 : 0;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "v1") == 0)
        r->send_proxy_protocol = 1;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "v2") == 0)
        r->send_proxy_protocol = 2;
    else if (!lua_isnil(L, -1))
        fail_type(cx, "action.send_proxy_protocol", -1, "false, true, \"v1\" or \"v2\"");
    lua_pop(L, 1);
    if (opt_table(cx, t, "action", "tls")) {
        if (r->action == SP_ACTION_BLOCK)
            fail(cx, "action.tls", "a block route has no TLS");
        compile_tls(cx, r, lua_gettop(L));
        if (r->action == SP_ACTION_SOCKET_HANDLER && r->tls.mode != SP_TLS_PASSTHROUGH)
            fail(cx, "action.tls.mode", "a socket handler behind TLS termination is not supported by "
                                        "this version of smartproxy yet");
        lua_pop(L, 1);
    }

    lua_getfield(L, t, "handler");
    if (r->action == SP_ACTION_SOCKET_HANDLER) {
        if (lua_type(L, -1) != LUA_TFUNCTION)
            fail_type(cx, "action.handler", -1, "a function(sock, ctx) for a socket-handler route");
        r->handler = ref_function(cx, lua_gettop(L));
    } else if (!lua_isnil(L, -1)) {
        fail(cx, "action.handler", "only a \"socket-handler\" route has a handler");
    }
    lua_pop(L, 1);

    lua_getfield(L, t, "target");
    lua_getfield(L, t, "targets");
    bool has_target = !lua_isnil(L, -2), has_targets = !lua_isnil(L, -1);
    if (r->action == SP_ACTION_FORWARD) {
        if (has_target && has_targets)
            fail(cx, "action.targets", "give either target or targets, not both");
        if (!has_target && !has_targets)
            fail(cx, "action.target", "required for a forward action: { host = ..., port = ... }");
        if (has_target) {
            compile_target(cx, r, -2, "action.target", true);
        } else {
            if (!is_array(L, -1))
                fail_type(cx, "action.targets", -1, "a non-empty list of { host = ..., port = ... }");
            size_t n = lua_objlen(L, -1);
            for (size_t i = 1; i <= n; i++) {
                char f[64];
                snprintf(f, sizeof f, "action.targets[%zu]", i);
                lua_rawgeti(L, -1, (int)i);
                compile_target(cx, r, -1, f, false);
                lua_pop(L, 1);
            }
        }
    } else if (has_target || has_targets) {
        fail(cx, has_target ? "action.target" : "action.targets", "only a forward action has a target");
    }
    lua_pop(L, 2);
}

static void compile_security(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"ip_allow_list", "ip_block_list", "max_connections",
                                       "max_connections_per_ip", "basic_auth", "rate_limit", NULL};
    check_keys(cx, t, "security", keys);
    compile_ip_list(cx, t, "ip_allow_list", "security.ip_allow_list", &r->ip_allow_list);
    compile_ip_list(cx, t, "ip_block_list", "security.ip_block_list", &r->ip_block_list);
    opt_uint(cx, t, "security", "max_connections", 100000000, &r->max_connections);
    opt_uint(cx, t, "security", "max_connections_per_ip", 100000000, &r->max_connections_per_ip);
    lua_State *L = cx->L;
    if (opt_table(cx, t, "security", "basic_auth")) {
        static const char *const auth_keys[] = {"realm", "users", NULL};
        static const char *const user_keys[] = {"username", "password", NULL};
        int a = lua_gettop(L);
        check_keys(cx, a, "security.basic_auth", auth_keys);
        const char *realm = opt_string(cx, a, "security.basic_auth", "realm");
        if (realm && strpbrk(realm, "\"\\\r\n"))
            fail(cx, "security.basic_auth.realm", "expected text without quotes, backslashes or line breaks");
        r->http.auth_realm = xstrdup(realm ? realm : r->name);
        lua_getfield(L, a, "users");
        if (!is_array(L, -1))
            fail_type(cx, "security.basic_auth.users", -1, "a list of { username = ..., password = ... }");
        size_t n = lua_objlen(L, -1);
        r->http.auth_credentials = xcalloc(n, sizeof(char *));
        for (size_t i = 1; i <= n; i++) {
            char f[64];
            snprintf(f, sizeof f, "security.basic_auth.users[%zu]", i);
            lua_rawgeti(L, -1, (int)i);
            if (!lua_istable(L, -1))
                fail_type(cx, f, -1, "{ username = ..., password = ... }");
            check_keys(cx, lua_gettop(L), f, user_keys);
            const char *u = opt_string(cx, lua_gettop(L), f, "username");
            const char *pw = opt_string(cx, lua_gettop(L), f, "password");
            if (!u || !*u || strchr(u, ':') || !pw)
                fail(cx, f, "needs a username (without ':') and a password");
            size_t len = strlen(u) + strlen(pw) + 2;
            char *cred = malloc(len);
            if (!cred)
                abort();
            snprintf(cred, len, "%s:%s", u, pw);
            r->http.auth_credentials[r->http.nauth++] = cred;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    if (opt_table(cx, t, "security", "rate_limit")) {
        static const char *const rl_keys[] = {"requests", "window", "key", NULL};
        int rl = lua_gettop(L);
        check_keys(cx, rl, "security.rate_limit", rl_keys);
        uint64_t window = 60;
        opt_uint(cx, rl, "security.rate_limit", "requests", 1000000000, &r->http.rate_requests);
        opt_uint(cx, rl, "security.rate_limit", "window", 86400, &window);
        if (r->http.rate_requests == 0 || window == 0)
            fail(cx, "security.rate_limit", "needs requests >= 1 and window >= 1 (seconds)");
        r->http.rate_window_ms = window * 1000;
        const char *key = opt_string(cx, rl, "security.rate_limit", "key");
        if (!key || strcmp(key, "ip") == 0)
            r->http.rate_key = SP_RATE_KEY_IP;
        else if (strcmp(key, "route") == 0)
            r->http.rate_key = SP_RATE_KEY_ROUTE;
        else if (strncmp(key, "header:", 7) == 0 && key[7]) {
            r->http.rate_key = SP_RATE_KEY_HEADER;
            r->http.rate_header = xstrdup(key + 7);
        } else
            fail(cx, "security.rate_limit.key", "expected \"ip\", \"route\" or \"header:NAME\", got string \"%s\"", key);
        lua_pop(L, 1);
    }
}

static void compile_route(cfg_cx *cx, sp_route *r, int t, int index)
{
    static const char *const keys[] = {"name", "priority", "match", "action", "security", NULL};
    lua_State *L = cx->L;
    r->index = index;
    r->handler = LUA_NOREF;
    char provisional[32];
    snprintf(provisional, sizeof provisional, "route-%d", index);
    r->name = xstrdup(provisional);
    cx->route = r;
    if (!lua_istable(L, t))
        fail_type(cx, "(route)", t, "a table");

    lua_getfield(L, t, "name");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0)
            fail_type(cx, "name", -1, "a non-empty string");
        free(r->name);
        r->name = xstrdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    check_keys(cx, t, "", keys);

    lua_getfield(L, t, "priority");
    if (!lua_isnil(L, -1)) {
        double p = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || p != floor(p) || fabs(p) > 1e9)
            fail_type(cx, "priority", -1, "an integer");
        r->priority = (int)p;
    }
    lua_pop(L, 1);

    if (!opt_table(cx, t, "", "match"))
        fail(cx, "match", "required: { ports = ... }");
    compile_match(cx, r, lua_gettop(L));
    lua_pop(L, 1);
    if (!opt_table(cx, t, "", "action"))
        fail(cx, "action", "required: { type = ... }");
    compile_action(cx, r, lua_gettop(L));
    lua_pop(L, 1);
    if (opt_table(cx, t, "", "security")) {
        compile_security(cx, r, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (r->http.has_path || r->http.nmatch_headers || r->http.auth_realm || r->http.rate_requests)
        r->is_http = true;
    if (r->is_http) {
        if (r->action == SP_ACTION_SOCKET_HANDLER)
            fail(cx, "action.protocol", "a socket handler reads the stream itself: it cannot be an HTTP route");
        if (r->tls.mode == SP_TLS_PASSTHROUGH)
            fail(cx, "action.tls.mode", "an HTTP route needs the requests: \"terminate\" or "
                                        "\"terminate-and-reencrypt\", not \"passthrough\"");
        if (r->half_open)
            fail(cx, "action.half_open", "applies to byte streams, not to HTTP routes");
        if (r->nft.enabled)
            fail(cx, "action.forwarding_engine", "the kernel forwards packets, not HTTP requests: "
                                                 "an HTTP route needs \"node\"");
    }
    char nft_field[160], nft_msg[400];
    if (sp_nft_check_route(r, nft_field, sizeof nft_field, nft_msg, sizeof nft_msg) != 0)
        fail(cx, nft_field, "%s", nft_msg);
    cx->route = NULL;
}

bool sp_route_needs_sniff(const sp_route *r)
{
    if (r->ntls_versions)
        return true;
    for (size_t i = 0; i < r->ndomains; i++)
        if (r->domains[i].kind != SP_DOMAIN_ANY)
            return true;
    return false;
}

static int route_order(const void *a, const void *b)
{
    const sp_route *x = *(sp_route *const *)a, *y = *(sp_route *const *)b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->index - y->index;
}

static int entry_order(const void *a, const void *b)
{
    return (int)((const sp_port_entry *)a)->port - (int)((const sp_port_entry *)b)->port;
}

/* Builds the port index: for each port, its candidate routes, best first. */
static void build_port_index(sp_gen *g)
{
    /* count routes per port */
    uint32_t *count = xcalloc(65536, sizeof *count);
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route *r = &g->routes[i];
        if (r->nft.enabled)
            continue; /* forwarded by the kernel (core/nft): no listener */
        for (size_t k = 0; k < r->nports; k++)
            for (uint32_t p = r->ports[k].from; p <= r->ports[k].to; p++)
                count[p]++;
    }
    size_t nports = 0;
    for (uint32_t p = 1; p < 65536; p++)
        nports += count[p] > 0;
    g->ports = xcalloc(nports, sizeof *g->ports);
    uint32_t *slot = xcalloc(65536, sizeof *slot);
    for (uint32_t p = 1; p < 65536; p++) {
        if (!count[p])
            continue;
        sp_port_entry *e = &g->ports[g->nports];
        e->port = (uint16_t)p;
        e->routes = xcalloc(count[p], sizeof *e->routes);
        slot[p] = (uint32_t)g->nports++;
    }
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route *r = &g->routes[i];
        if (r->nft.enabled)
            continue;
        for (size_t k = 0; k < r->nports; k++)
            for (uint32_t p = r->ports[k].from; p <= r->ports[k].to; p++) {
                sp_port_entry *e = &g->ports[slot[p]];
                /* a route listing a port twice is a candidate once */
                if (e->nroutes && e->routes[e->nroutes - 1] == r)
                    continue;
                e->routes[e->nroutes++] = r;
            }
    }
    for (size_t i = 0; i < g->nports; i++) {
        sp_port_entry *e = &g->ports[i];
        qsort(e->routes, e->nroutes, sizeof(sp_route *), route_order);
        for (size_t k = 0; k < e->nroutes; k++) {
            e->sniff |= sp_route_needs_sniff(e->routes[k]) || e->routes[k]->is_http;
            e->http |= e->routes[k]->is_http;
            e->http_head |= e->routes[k]->tls.mode == SP_TLS_NONE &&
                            (e->routes[k]->is_http || sp_route_needs_sniff(e->routes[k]));
        }
    }
    qsort(g->ports, g->nports, sizeof *g->ports, entry_order);
    free(count);
    free(slot);
}

/* certificate = "auto" routes need names to get certificates for and a store to keep
 * them in; with ACME, the HTTP-01 challenge port must be served even when no route uses
 * it: an implicit HTTP route is added there (it matches only the reserved name below,
 * so every other request gets 404, while challenges are answered before routing). */
#define SP_ACME_ROUTE_NAME "(acme-challenge)"
#define SP_ACME_ROUTE_DOMAIN "acme-challenge.invalid"

static void check_auto_certificates(cfg_cx *cx)
{
    sp_gen *g = cx->g;
    bool any_auto = false;
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route *r = &g->routes[i];
        if (!r->tls.cert_auto)
            continue;
        any_auto = true;
        cx->route = r;
        size_t names = 0;
        for (size_t k = 0; k < r->ndomains; k++) {
            if (r->domains[k].kind == SP_DOMAIN_ANY)
                continue;
            names++;
            if (r->domains[k].kind == SP_DOMAIN_WILDCARD && g->settings.acme.enabled &&
                g->settings.cert_provision == LUA_NOREF)
                fail(cx, "match.domains", "\"*.%s\": a wildcard certificate cannot be obtained with "
                     "ACME HTTP-01 (put it in certificates.store or supply it from certificates.provision)",
                     r->domains[k].name);
        }
        if (!names)
            fail(cx, "action.tls.certificate", "\"auto\" needs match.domains with names to get certificates for");
        cx->route = NULL;
    }
    if (any_auto && !g->settings.cert_store)
        fail(cx, "certificates.store", "required by certificate = \"auto\": a folder for the certificates");
    if (!g->settings.acme.enabled)
        return;
    if (!g->settings.cert_store)
        fail(cx, "certificates.store", "required by acme: a folder for the account key and the certificates");
    uint16_t port = g->settings.acme.challenge_port;
    bool used = false, heads = false;
    for (size_t i = 0; i < g->nroutes; i++)
        for (size_t k = 0; k < g->routes[i].nports; k++)
            if (g->routes[i].ports[k].from <= port && port <= g->routes[i].ports[k].to) {
                sp_route *r = &g->routes[i];
                if (r->tls.mode != SP_TLS_NONE) {
                    cx->route = r;
                    fail(cx, "match.ports", "port %u is acme.challenge_port: HTTP-01 needs plain HTTP there", port);
                }
                used = true;
                heads |= r->is_http || sp_route_needs_sniff(r); /* as build_port_index decides */
            }
    if (used && !heads)
        fail(cx, "acme.challenge_port", "port %u only has byte-stream routes, so its requests are never read: "
             "give one of them domains or protocol = \"http\" (or use another port)", port);
    if (used)
        return;
    g->routes = realloc(g->routes, (g->nroutes + 1) * sizeof *g->routes);
    if (!g->routes)
        abort();
    sp_route *r = &g->routes[g->nroutes];
    *r = (sp_route){0};
    g->nroutes++;
    r->index = (int)g->nroutes;
    r->handler = LUA_NOREF;
    r->name = xstrdup(SP_ACME_ROUTE_NAME);
    r->ports = xcalloc(1, sizeof *r->ports);
    r->ports[0] = (sp_port_range){port, port};
    r->nports = 1;
    r->domains = xcalloc(1, sizeof *r->domains);
    if (sp_domain_pattern_parse(SP_ACME_ROUTE_DOMAIN, &r->domains[0], NULL) != 0)
        abort();
    r->ndomains = 1;
    r->action = SP_ACTION_BLOCK;
    r->is_http = true;
}

static int compile_protected(lua_State *L)
{
    cfg_cx *cx = lua_touserdata(L, 1);
    sp_gen *g = cx->g;
    lua_settop(L, 2);
    int top = 2;
    if (!lua_istable(L, top))
        fail_type(cx, "(config)", top, "the file to return a table");
    static const char *const keys[] = {"routes", "workers", "listen_addresses", "timeouts",
                                       "keep_alive", "limits", "metrics", "log", "proxy_ips",
                                       "accept_proxy_protocol", "security", "acme", "certificates", NULL};
    check_keys(cx, top, "", keys);

    uint64_t workers = 0;
    opt_uint(cx, top, "", "workers", 256, &workers);
    g->settings.workers = (int)workers;

    lua_getfield(L, top, "listen_addresses");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) == LUA_TSTRING) { /* one address: wrap it in a list */
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 1);
            lua_remove(L, -2);
        }
        if (!is_array(L, -1))
            fail_type(cx, "listen_addresses", -1, "a list of IP addresses");
        compile_listen_addresses(cx, lua_gettop(L));
    } else {
        static const char *const defaults[] = {"0.0.0.0", "::"};
        g->settings.listen_addresses = xcalloc(2, sizeof(char *));
        for (int i = 0; i < 2; i++)
            g->settings.listen_addresses[g->settings.nlisten_addresses++] = xstrdup(defaults[i]);
    }
    lua_pop(L, 1);

    if (opt_table(cx, top, "", "timeouts")) { compile_timeouts(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (opt_table(cx, top, "", "keep_alive")) { compile_keep_alive(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (opt_table(cx, top, "", "limits")) { compile_limits(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (opt_table(cx, top, "", "security")) {
        /* every connection, on accept (after a PROXY header): block wins over allow */
        static const char *const sec_keys[] = {"ip_allow_list", "ip_block_list", NULL};
        check_keys(cx, lua_gettop(L), "security", sec_keys);
        compile_ip_list(cx, lua_gettop(L), "ip_allow_list", "security.ip_allow_list", &g->settings.ip_allow_list);
        compile_ip_list(cx, lua_gettop(L), "ip_block_list", "security.ip_block_list", &g->settings.ip_block_list);
        lua_pop(L, 1);
    }
    if (opt_table(cx, top, "", "log")) { compile_log(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (opt_table(cx, top, "", "metrics")) { compile_metrics(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (opt_table(cx, top, "", "acme")) { compile_acme(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (opt_table(cx, top, "", "certificates")) { compile_certificates(cx, lua_gettop(L)); lua_pop(L, 1); }

    compile_ip_list(cx, top, "proxy_ips", "proxy_ips", &g->settings.proxy_ips);
    int accept = opt_bool(cx, top, "", "accept_proxy_protocol");
    g->settings.accept_proxy_protocol = accept >= 0 ? accept == 1 : g->settings.proxy_ips.n > 0;
    if (g->settings.accept_proxy_protocol && g->settings.proxy_ips.n == 0)
        fail(cx, "accept_proxy_protocol", "needs proxy_ips: the addresses allowed to send a PROXY header");

    lua_getfield(L, top, "routes");
    if (lua_isnil(L, -1))
        fail(cx, "routes", "required: a list of routes");
    int routes = lua_gettop(L);
    if (!lua_istable(L, routes))
        fail_type(cx, "routes", routes, "a list of routes");
    if (lua_objlen(L, routes) == 0) {
        lua_pushnil(L);
        if (lua_next(L, routes) != 0) /* a table, but not a list */
            fail(cx, "routes", "expected a list of routes, got a table with named keys");
    }
    size_t n = lua_objlen(L, routes);
    g->routes = xcalloc(n, sizeof *g->routes);
    for (size_t i = 1; i <= n; i++) {
        g->nroutes = i; /* counted before compiling so a failure frees the partial route */
        lua_rawgeti(L, routes, (int)i);
        compile_route(cx, &g->routes[i - 1], lua_gettop(L), (int)i);
        lua_pop(L, 1);
        for (size_t k = 0; k + 1 < i; k++)
            if (strcmp(g->routes[k].name, g->routes[i - 1].name) == 0) {
                cx->route = &g->routes[i - 1];
                fail(cx, "name", "duplicate route name (also route #%d)", g->routes[k].index);
            }
    }
    lua_pop(L, 1);
    char nft_field[160], nft_msg[400];
    const sp_route *nft_bad = NULL;
    if (sp_nft_check_ports(g, &nft_bad, nft_field, sizeof nft_field, nft_msg, sizeof nft_msg) != 0) {
        cx->route = nft_bad;
        fail(cx, nft_field, "%s", nft_msg);
    }
    check_auto_certificates(cx);
    build_port_index(g);
    return 0;
}

static void settings_defaults(sp_settings *s)
{
    s->timeouts = (sp_timeouts){
        .connect = 30000, .initial_data = 60000, .http_idle = 60000, .upstream_response = 60000,
        .proxy_header = 5000, .inactivity = 14400000, .max_lifetime = 86400000,
        .graceful_shutdown = 30000, .upstream_idle = 60000, .lua_hog_warning = 100,
        .lua_budget = 4000, .config_load = 10000, .request_body = 60000,
    };
    s->max_header_bytes = 65536;
    s->upstream_keepalive = 32;
    s->lua_memory = 1024ull << 20;
    s->request_body_min_rate = 1024;
    s->keepalive = SP_KEEPALIVE_STANDARD;
    s->inactivity_multiplier = 6;
    s->log_level = -1;
    s->log_json = -1;
    s->log_access = true;
    s->acme.challenge_port = 80;
    s->acme.renew_before_days = 30;
    s->acme.renew_check_interval = 43200;
    s->acme.retry_interval = 60;
    s->cert_provision = LUA_NOREF;
}

static void free_target(lua_State *L, sp_target *t)
{
    free(t->host);
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->host_fn);
        luaL_unref(L, LUA_REGISTRYINDEX, t->port_fn);
    }
}

static void free_route_http(sp_route_http *h)
{
    if (h->has_path)
        sp_path_pattern_free(&h->path);
    for (size_t i = 0; i < h->nmatch_headers; i++) {
        free(h->match_headers[i].name);
        if (h->match_headers[i].value)
            free(h->match_headers[i].value);
        else
            regfree(&h->match_headers[i].re);
    }
    free(h->match_headers);
    for (size_t i = 0; i < h->nrequest_headers; i++) {
        free(h->request_headers[i].name);
        sp_template_free(&h->request_headers[i].value);
    }
    free(h->request_headers);
    for (size_t i = 0; i < h->nresponse_headers; i++) {
        free(h->response_headers[i].name);
        sp_template_free(&h->response_headers[i].value);
    }
    free(h->response_headers);
    if (h->has_rewrite)
        sp_template_free(&h->rewrite_path);
    if (h->has_redirect)
        sp_template_free(&h->redirect_to);
    free(h->auth_realm);
    for (size_t i = 0; i < h->nauth; i++)
        free(h->auth_credentials[i]);
    free(h->auth_credentials);
    free(h->rate_header);
}

static void gen_free(sp_gen *g, bool close_state)
{
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route *r = &g->routes[i];
        free(r->name);
        free(r->ports);
        sp_ip_list_free(&r->client_ip);
        sp_ip_list_free(&r->ip_allow_list);
        sp_ip_list_free(&r->ip_block_list);
        free(r->domains);
        free(r->tls_versions);
        free(r->tls.cert);
        free(r->tls.key);
        free(r->tls.upstream_sni);
        free(r->tls.upstream_ca_file);
        SSL_CTX_free(r->tls.server_ctx);
        SSL_CTX_free(r->tls.client_ctx);
        for (size_t k = 0; k < r->ntargets; k++)
            free_target(close_state ? NULL : g->L, &r->targets[k]);
        if (!close_state && g->L)
            luaL_unref(g->L, LUA_REGISTRYINDEX, r->handler);
        free(r->targets);
        free_route_http(&r->http);
    }
    free(g->routes);
    for (size_t i = 0; i < g->nports; i++)
        free(g->ports[i].routes);
    free(g->ports);
    for (size_t i = 0; i < g->settings.nlisten_addresses; i++)
        free(g->settings.listen_addresses[i]);
    free(g->settings.listen_addresses);
    free(g->settings.metrics_listen);
    free(g->settings.metrics_token);
    free(g->settings.metrics_hosts);
    free(g->settings.access_log);
    free(g->settings.acme.email);
    free(g->settings.acme.directory);
    free(g->settings.acme.ca_file);
    free(g->settings.cert_store);
    sp_ip_list_free(&g->settings.proxy_ips);
    sp_ip_list_free(&g->settings.ip_allow_list);
    sp_ip_list_free(&g->settings.ip_block_list);
    free(g->file);
    if (close_state && g->L)
        sp_lua_state_close(g->L);
    free(g);
}

sp_gen *sp_gen_compile(lua_State *L, const char *file, char *err, size_t errlen)
{
    sp_gen *g = xcalloc(1, sizeof *g);
    g->refs = 1;
    g->file = xstrdup(file);
    settings_defaults(&g->settings);
    cfg_cx cx = {.L = L, .g = g, .file = file};

    int value = lua_gettop(L);
    lua_pushcfunction(L, compile_protected);
    lua_pushlightuserdata(L, &cx);
    lua_pushvalue(L, value);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        gen_free(g, false);
        return NULL;
    }
    g->L = L;
    return g;
}

void sp_gen_ref(sp_gen *g) { g->refs++; }

void sp_gen_unref(sp_gen *g)
{
    if (--g->refs == 0)
        gen_free(g, true);
}

const sp_port_entry *sp_gen_port(const sp_gen *g, uint16_t port)
{
    size_t lo = 0, hi = g->nports;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->ports[mid].port == port)
            return &g->ports[mid];
        if (g->ports[mid].port < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t sp_settings_stream_inactivity(const sp_settings *s)
{
    switch (s->keepalive) {
    case SP_KEEPALIVE_IMMORTAL: return 0;
    case SP_KEEPALIVE_EXTENDED: return s->timeouts.inactivity * s->inactivity_multiplier;
    default: return s->timeouts.inactivity;
    }
}

static void print_target(const sp_target *t, FILE *out)
{
    if (t->host)
        fprintf(out, strchr(t->host, ':') ? "[%s]" : "%s", t->host);
    else
        fputs("<lua function>", out);
    switch (t->port_kind) {
    case SP_PORT_FIXED: fprintf(out, ":%u", t->port); break;
    case SP_PORT_PRESERVE: fputs(":<preserve>", out); break;
    case SP_PORT_FUNCTION: fputs(":<lua function>", out); break;
    }
}

void sp_gen_print_summary(const sp_gen *g, FILE *out)
{
    fprintf(out, "%s: configuration OK: %zu route(s) on %zu port(s)\n", g->file, g->nroutes, g->nports);
    fputs("ports:", out);
    for (size_t i = 0; i < g->nports; i++) {
        /* print runs of consecutive ports as ranges */
        size_t j = i;
        while (j + 1 < g->nports && g->ports[j + 1].port == g->ports[j].port + 1)
            j++;
        if (j > i)
            fprintf(out, " %u-%u", g->ports[i].port, g->ports[j].port);
        else
            fprintf(out, " %u", g->ports[i].port);
        i = j;
    }
    if (g->settings.accept_proxy_protocol)
        fprintf(out, "\nPROXY protocol accepted from %zu pattern(s)", g->settings.proxy_ips.n);
    fputs("\nlisten addresses:", out);
    for (size_t i = 0; i < g->settings.nlisten_addresses; i++)
        fprintf(out, " %s", g->settings.listen_addresses[i]);
    fputs("\nroutes:\n", out);
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        fprintf(out, "  #%d %s (priority %d) ports", r->index, r->name, r->priority);
        for (size_t k = 0; k < r->nports; k++) {
            if (r->ports[k].from == r->ports[k].to)
                fprintf(out, "%s%u", k ? "," : " ", r->ports[k].from);
            else
                fprintf(out, "%s%u-%u", k ? "," : " ", r->ports[k].from, r->ports[k].to);
        }
        if (r->client_ip.n)
            fprintf(out, " client_ip(%zu pattern%s)", r->client_ip.n, r->client_ip.n > 1 ? "s" : "");
        for (size_t k = 0; k < r->ndomains; k++) {
            const sp_domain_pattern *d = &r->domains[k];
            fprintf(out, "%s%s%.*s", k ? "," : " domains ", d->kind == SP_DOMAIN_WILDCARD ? "*." : "",
                    d->kind == SP_DOMAIN_ANY ? 1 : (int)d->len, d->kind == SP_DOMAIN_ANY ? "*" : d->name);
        }
        for (size_t k = 0; k < r->ntls_versions; k++)
            fprintf(out, "%s%s", k ? "," : " tls_version ", sp_tls_version_name(r->tls_versions[k]));
        if (r->http.has_path)
            fprintf(out, " path %s", r->http.path.text);
        if (r->http.nmatch_headers)
            fprintf(out, " headers(%zu)", r->http.nmatch_headers);
        if (r->action == SP_ACTION_BLOCK) {
            fputs(r->is_http ? " -> block (http 403)\n" : " -> block\n", out);
            continue;
        }
        if (r->action == SP_ACTION_REDIRECT) {
            fprintf(out, " -> redirect %d %s\n", r->http.redirect_status, r->http.redirect_to.text);
            continue;
        }
        if (r->action == SP_ACTION_SOCKET_HANDLER) {
            static const char *const hmodes[] = {"", " (tls passthrough)", " (tls terminate)", " (tls terminate)"};
            fprintf(out, " -> socket-handler%s\n", hmodes[r->tls.mode]);
            continue;
        }
        fputs(r->nft.enabled ? " -> forward in the kernel (nftables)" : r->is_http ? " -> forward http" : " -> forward", out);
        for (size_t k = 0; k < r->ntargets; k++) {
            fputs(k ? ", " : " ", out);
            print_target(&r->targets[k], out);
        }
        static const char *const modes[] = {"", " tls passthrough", " tls terminate", " tls terminate-and-reencrypt"};
        fputs(modes[r->tls.mode], out);
        if (r->tls.cert_auto)
            fputs(" (certificate auto)", out);
        if (r->send_proxy_protocol)
            fprintf(out, " send-proxy-v%d", r->send_proxy_protocol);
        if (r->nft.enabled)
            fprintf(out, " %s%s%s", r->nft.protocols == SP_NFT_TCP ? "tcp" : r->nft.protocols == SP_NFT_UDP ? "udp" : "tcp+udp",
                    r->nft.preserve_source_ip ? " preserve-source-ip" : " masquerade",
                    r->nft.max_rate ? " max-rate" : "");
        fputs(r->half_open ? " (half-open)\n" : "\n", out);
    }
}
