/* The global settings of a configuration; see settings.h. */
#include "config/settings.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "config/schema.h"
#include "pattern/ip_pattern.h"
#include "util/log.h"

static void compile_timeouts(cfg_cx *cx, int t)
{
    /* every timeout is a number of milliseconds up to a year: one table reads them all */
    static const struct { const char *name; size_t offset; } fields[] = {
#define TIMEOUT(f) {#f, offsetof(sp_timeouts, f)}
        TIMEOUT(connect), TIMEOUT(initial_data), TIMEOUT(http_idle), TIMEOUT(upstream_response),
        TIMEOUT(proxy_header), TIMEOUT(inactivity), TIMEOUT(max_lifetime), TIMEOUT(graceful_shutdown),
        TIMEOUT(upstream_idle), TIMEOUT(lua_hog_warning), TIMEOUT(lua_budget), TIMEOUT(config_load),
        TIMEOUT(request_body),
#undef TIMEOUT
    };
    enum { N = sizeof fields / sizeof fields[0] };
    const char *keys[N + 1];
    for (size_t i = 0; i < N; i++)
        keys[i] = fields[i].name;
    keys[N] = NULL;
    cfg_check_keys(cx, t, "timeouts", keys);
    const uint64_t max = 365ull * 24 * 3600 * 1000;
    for (size_t i = 0; i < N; i++)
        cfg_opt_uint(cx, t, "timeouts", fields[i].name, max,
                     (uint64_t *)((char *)&cx->g->settings.timeouts + fields[i].offset));
}

static void compile_keep_alive(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"treatment", "inactivity_multiplier", NULL};
    sp_settings *s = &cx->g->settings;
    cfg_check_keys(cx, t, "keep_alive", keys);
    const char *tr = cfg_opt_string(cx, t, "keep_alive", "treatment");
    if (tr) {
        if (strcmp(tr, "standard") == 0) s->keepalive = SP_KEEPALIVE_STANDARD;
        else if (strcmp(tr, "extended") == 0) s->keepalive = SP_KEEPALIVE_EXTENDED;
        else if (strcmp(tr, "immortal") == 0) s->keepalive = SP_KEEPALIVE_IMMORTAL;
        else cfg_fail(cx, "keep_alive.treatment", "expected \"standard\", \"extended\" or \"immortal\", got string \"%s\"", tr);
    }
    uint64_t m = s->inactivity_multiplier;
    cfg_opt_uint(cx, t, "keep_alive", "inactivity_multiplier", 1000, &m);
    if (m < 1)
        cfg_fail(cx, "keep_alive.inactivity_multiplier", "expected an integer from 1 to 1000, got number 0");
    s->inactivity_multiplier = (unsigned)m;
}

static void compile_limits(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"max_connections", "max_connections_per_ip",
                                       "connection_rate_per_minute", "max_header_bytes",
                                       "max_body_bytes", "upstream_keepalive", "lua_memory", "lua_jit",
                                       "request_body_min_rate", NULL};
    sp_settings *s = &cx->g->settings;
    cfg_check_keys(cx, t, "limits", keys);
    cfg_opt_uint(cx, t, "limits", "max_connections", 100000000, &s->max_connections);
    cfg_opt_uint(cx, t, "limits", "max_connections_per_ip", 100000000, &s->max_connections_per_ip);
    cfg_opt_uint(cx, t, "limits", "connection_rate_per_minute", 100000000, &s->connection_rate_per_minute);
    cfg_opt_uint(cx, t, "limits", "max_header_bytes", 1 << 20, &s->max_header_bytes);
    if (s->max_header_bytes < 256)
        cfg_fail(cx, "limits.max_header_bytes", "expected at least 256, got number %llu",
                 (unsigned long long)s->max_header_bytes);
    cfg_opt_uint(cx, t, "limits", "max_body_bytes", UINT64_MAX >> 2, &s->max_body_bytes);
    cfg_opt_uint(cx, t, "limits", "upstream_keepalive", 100000, &s->upstream_keepalive);
    cfg_opt_uint(cx, t, "limits", "lua_memory", UINT64_MAX >> 2, &s->lua_memory);
    if (s->lua_memory && s->lua_memory < (16u << 20))
        cfg_fail(cx, "limits.lua_memory", "expected 0 (no cap) or at least 16777216 (16 MiB), got number %llu",
                 (unsigned long long)s->lua_memory);
    lua_getfield(cx->L, t, "lua_jit");
    if (lua_type(cx->L, -1) == LUA_TBOOLEAN)
        s->lua_jit = lua_toboolean(cx->L, -1);
    else if (!lua_isnil(cx->L, -1))
        cfg_fail_type(cx, "limits.lua_jit", -1, "a boolean");
    lua_pop(cx->L, 1);
    cfg_opt_uint(cx, t, "limits", "request_body_min_rate", 1ull << 40, &s->request_body_min_rate);
}

static void compile_log(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"level", "format", "access", NULL};
    sp_settings *s = &cx->g->settings;
    cfg_check_keys(cx, t, "log", keys);
    const char *lv = cfg_opt_string(cx, t, "log", "level");
    if (lv && (s->log_level = sp_log_level_parse(lv)) < 0)
        cfg_fail(cx, "log.level", "expected \"error\", \"warn\", \"info\" or \"debug\", got string \"%s\"", lv);
    const char *fmt = cfg_opt_string(cx, t, "log", "format");
    if (fmt) {
        if (strcmp(fmt, "text") == 0) s->log_json = 0;
        else if (strcmp(fmt, "json") == 0) s->log_json = 1;
        else cfg_fail(cx, "log.format", "expected \"text\" or \"json\", got string \"%s\"", fmt);
    }
    lua_getfield(cx->L, t, "access");
    if (lua_type(cx->L, -1) == LUA_TBOOLEAN)
        s->log_access = lua_toboolean(cx->L, -1);
    else if (lua_type(cx->L, -1) == LUA_TSTRING && lua_objlen(cx->L, -1) > 0)
        s->access_log = cfg_strdup(lua_tostring(cx->L, -1));
    else if (!lua_isnil(cx->L, -1))
        cfg_fail_type(cx, "log.access", -1, "true, false or a file path");
    lua_pop(cx->L, 1);
}

/* metrics.hosts = { "admin.example.com", ... }: exact names or IP literals, no patterns
 * (a "*" would switch the Host check off). */
static void compile_metrics_hosts(cfg_cx *cx, int t)
{
    sp_settings *s = &cx->g->settings;
    if (!cfg_is_array(cx->L, t))
        cfg_fail(cx, "metrics.hosts", "expected a non-empty list of host names");
    size_t n = lua_objlen(cx->L, t);
    s->metrics_hosts = cfg_calloc(n, sizeof *s->metrics_hosts);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(cx->L, t, (int)i);
        char field[64];
        snprintf(field, sizeof field, "metrics.hosts[%zu]", i);
        if (lua_type(cx->L, -1) != LUA_TSTRING)
            cfg_fail_type(cx, field, -1, "a host name");
        const char *name = lua_tostring(cx->L, -1), *why = NULL;
        sp_domain_pattern *p = &s->metrics_hosts[s->nmetrics_hosts];
        if (sp_domain_pattern_parse(name, p, &why) != 0)
            cfg_fail(cx, field, "expected a host name, got string \"%s\" (%s)", name, why);
        if (p->kind != SP_DOMAIN_EXACT)
            cfg_fail(cx, field, "expected one host name, not a pattern, got string \"%s\"", name);
        s->nmetrics_hosts++;
        lua_pop(cx->L, 1);
    }
}

static void compile_metrics(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"listen", "token", "hosts", NULL};
    cfg_check_keys(cx, t, "metrics", keys);
    const char *token = cfg_opt_string(cx, t, "metrics", "token");
    if (token) {
        if (strlen(token) < 16 || strlen(token) > 200)
            cfg_fail(cx, "metrics.token", "expected a secret of 16 to 200 characters");
        cx->g->settings.metrics_token = cfg_strdup(token);
    }
    const char *l = cfg_opt_string(cx, t, "metrics", "listen");
    if (l) {
        sp_ip_endpoint addr;
        if (sp_ip_endpoint_parse(l, &addr) != 0)
            cfg_fail(cx, "metrics.listen", "expected \"ADDRESS:PORT\" (IPv6 as \"[::1]:9100\"), got string \"%s\"", l);
        /* Anyone who can reach it could read the figures and reload: only with a secret. */
        if (!addr.loopback && !token)
            cfg_fail(cx, "metrics.listen", "\"%s\" is not a loopback address; set metrics.token (a secret of "
                     "16 to 200 characters) to serve the admin endpoint there, or listen on 127.0.0.1 or [::1]", l);
        cx->g->settings.metrics_listen = cfg_strdup(l);
    }
    if (cfg_opt_table(cx, t, "metrics", "hosts")) {
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
    cfg_check_keys(cx, t, "acme", keys);
    const char *email = cfg_opt_string(cx, t, "acme", "email");
    const char *dir = cfg_opt_string(cx, t, "acme", "directory");
    const char *ca = cfg_opt_string(cx, t, "acme", "ca_file");
    if (!dir)
        cfg_fail(cx, "acme.directory", "required: the ACME server's directory URL (https://...)");
    if (strncmp(dir, "https://", 8) != 0 || !dir[8])
        cfg_fail(cx, "acme.directory", "expected an https:// URL, got string \"%s\"", dir);
    if (email && (!strchr(email, '@') || strpbrk(email, " \"\\\r\n")))
        cfg_fail(cx, "acme.email", "expected an e-mail address, got string \"%s\"", email);
    uint64_t port = a->challenge_port;
    cfg_opt_uint(cx, t, "acme", "challenge_port", 65535, &port);
    if (port < 1)
        cfg_fail(cx, "acme.challenge_port", "expected a port from 1 to 65535, got number 0");
    cfg_opt_uint(cx, t, "acme", "renew_before_days", 3650, &a->renew_before_days);
    cfg_opt_uint(cx, t, "acme", "renew_check_interval", 86400 * 7, &a->renew_check_interval);
    cfg_opt_uint(cx, t, "acme", "retry_interval", 86400, &a->retry_interval);
    if (a->renew_check_interval < 1 || a->retry_interval < 1)
        cfg_fail(cx, a->retry_interval < 1 ? "acme.retry_interval" : "acme.renew_check_interval",
                 "expected at least 1 (second)");
    a->enabled = true;
    a->challenge_port = (uint16_t)port;
    a->directory = cfg_strdup(dir);
    if (email)
        a->email = cfg_strdup(email);
    if (ca)
        a->ca_file = cfg_strdup(ca);
}

/* certificates = { store = DIR, provision = function(domain) ... end } */
static void compile_certificates(cfg_cx *cx, int t)
{
    static const char *const keys[] = {"store", "provision", NULL};
    sp_settings *s = &cx->g->settings;
    cfg_check_keys(cx, t, "certificates", keys);
    const char *store = cfg_opt_string(cx, t, "certificates", "store");
    if (store && !*store)
        cfg_fail(cx, "certificates.store", "expected a folder path, got an empty string");
    if (store)
        s->cert_store = cfg_strdup(store);
    lua_getfield(cx->L, t, "provision");
    if (lua_isfunction(cx->L, -1))
        s->cert_provision = luaL_ref(cx->L, LUA_REGISTRYINDEX);
    else if (!lua_isnil(cx->L, -1))
        cfg_fail_type(cx, "certificates.provision", -1, "a function(domain)");
    else
        lua_pop(cx->L, 1);
}

static void compile_listen_addresses(cfg_cx *cx, int t)
{
    sp_settings *s = &cx->g->settings;
    size_t n = lua_objlen(cx->L, t);
    if (n == 0)
        cfg_fail(cx, "listen_addresses", "expected a non-empty list of IP addresses");
    s->listen_addresses = cfg_calloc(n, sizeof(char *));
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(cx->L, t, (int)i);
        char field[64];
        snprintf(field, sizeof field, "listen_addresses[%zu]", i);
        sp_ip ip;
        if (lua_type(cx->L, -1) != LUA_TSTRING || sp_ip_parse(lua_tostring(cx->L, -1), &ip) != 0)
            cfg_fail_type(cx, field, -1, "an IPv4 or IPv6 address");
        if (sp_ip_is_v4(&ip) && strchr(lua_tostring(cx->L, -1), ':'))
            cfg_fail(cx, field, "an IPv4-mapped address cannot be bound: write \"%s\" as IPv4",
                     lua_tostring(cx->L, -1));
        s->listen_addresses[s->nlisten_addresses++] = cfg_strdup(lua_tostring(cx->L, -1));
        lua_pop(cx->L, 1);
    }
}

void cfg_compile_settings(cfg_cx *cx, int top)
{
    lua_State *L = cx->L;
    sp_gen *g = cx->g;
    uint64_t workers = 0;
    cfg_opt_uint(cx, top, "", "workers", 256, &workers);
    g->settings.workers = (int)workers;

    lua_getfield(L, top, "listen_addresses");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) == LUA_TSTRING) { /* one address: wrap it in a list */
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 1);
            lua_remove(L, -2);
        }
        if (!cfg_is_array(L, -1))
            cfg_fail_type(cx, "listen_addresses", -1, "a list of IP addresses");
        compile_listen_addresses(cx, lua_gettop(L));
    } else {
        static const char *const defaults[] = {"0.0.0.0", "::"};
        g->settings.listen_addresses = cfg_calloc(2, sizeof(char *));
        for (int i = 0; i < 2; i++)
            g->settings.listen_addresses[g->settings.nlisten_addresses++] = cfg_strdup(defaults[i]);
    }
    lua_pop(L, 1);

    if (cfg_opt_table(cx, top, "", "timeouts")) { compile_timeouts(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (cfg_opt_table(cx, top, "", "keep_alive")) { compile_keep_alive(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (cfg_opt_table(cx, top, "", "limits")) { compile_limits(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (cfg_opt_table(cx, top, "", "security")) {
        /* every connection, on accept (after a PROXY header): block wins over allow */
        static const char *const sec_keys[] = {"ip_allow_list", "ip_block_list", NULL};
        cfg_check_keys(cx, lua_gettop(L), "security", sec_keys);
        cfg_ip_list(cx, lua_gettop(L), "ip_allow_list", "security.ip_allow_list", &g->settings.ip_allow_list);
        cfg_ip_list(cx, lua_gettop(L), "ip_block_list", "security.ip_block_list", &g->settings.ip_block_list);
        lua_pop(L, 1);
    }
    if (cfg_opt_table(cx, top, "", "log")) { compile_log(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (cfg_opt_table(cx, top, "", "metrics")) { compile_metrics(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (cfg_opt_table(cx, top, "", "acme")) { compile_acme(cx, lua_gettop(L)); lua_pop(L, 1); }
    if (cfg_opt_table(cx, top, "", "certificates")) { compile_certificates(cx, lua_gettop(L)); lua_pop(L, 1); }

    cfg_ip_list(cx, top, "proxy_ips", "proxy_ips", &g->settings.proxy_ips);
    int accept = cfg_opt_bool(cx, top, "", "accept_proxy_protocol");
    g->settings.accept_proxy_protocol = accept >= 0 ? accept == 1 : g->settings.proxy_ips.n > 0;
    if (g->settings.accept_proxy_protocol && g->settings.proxy_ips.n == 0)
        cfg_fail(cx, "accept_proxy_protocol", "needs proxy_ips: the addresses allowed to send a PROXY header");
}

void sp_settings_defaults(sp_settings *s)
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

void sp_settings_free(sp_settings *s)
{
    for (size_t i = 0; i < s->nlisten_addresses; i++)
        free(s->listen_addresses[i]);
    free(s->listen_addresses);
    free(s->metrics_listen);
    free(s->metrics_token);
    free(s->metrics_hosts);
    free(s->access_log);
    free(s->acme.email);
    free(s->acme.directory);
    free(s->acme.ca_file);
    free(s->cert_store);
    sp_ip_list_free(&s->proxy_ips);
    sp_ip_list_free(&s->ip_allow_list);
    sp_ip_list_free(&s->ip_block_list);
}

uint64_t sp_settings_stream_inactivity(const sp_settings *s)
{
    switch (s->keepalive) {
    case SP_KEEPALIVE_IMMORTAL: return 0;
    case SP_KEEPALIVE_EXTENDED: return s->timeouts.inactivity * s->inactivity_multiplier;
    default: return s->timeouts.inactivity;
    }
}
