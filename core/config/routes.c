/* Routes of a configuration; see routes.h. */
#include "config/routes.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/nft_options.h"
#include "config/route_action.h"
#include "config/schema.h"
#include "proto/client_hello.h"

static void add_port_range(cfg_cx *cx, sp_route *r, int idx, const char *field)
{
    lua_State *L = cx->L;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    sp_port_range pr;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        pr.from = pr.to = cfg_port_value(cx, field, idx);
    } else if (lua_istable(L, idx) && lua_objlen(L, idx) == 0) {
        static const char *const keys[] = {"from", "to", NULL};
        cfg_check_keys(cx, idx, field, keys);
        char f[160];
        lua_getfield(L, idx, "from");
        cfg_join(f, sizeof f, field, "from");
        pr.from = cfg_port_value(cx, f, -1);
        lua_getfield(L, idx, "to");
        cfg_join(f, sizeof f, field, "to");
        pr.to = cfg_port_value(cx, f, -1);
        lua_pop(L, 2);
        if (pr.from > pr.to)
            cfg_fail(cx, field, "expected from <= to, got from = %u, to = %u", pr.from, pr.to);
    } else {
        cfg_fail_type(cx, field, idx, "a port, a range or a list");
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
        cfg_fail(cx, "match.ports", "required: a port, a range or a list");
    if (cfg_is_array(L, -1)) {
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


static void add_domain(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_route *r = dst;
    if (!r->domains)
        r->domains = cfg_calloc(n, sizeof *r->domains);
    const char *why = "invalid";
    if (sp_domain_pattern_parse(lua_tostring(cx->L, idx), &r->domains[r->ndomains], &why) != 0)
        cfg_fail(cx, field, "expected a domain, \"*.domain\", \"*\" or a glob, got string \"%s\" (%s)",
                 lua_tostring(cx->L, idx), why);
    r->ndomains++;
}

static void add_tls_version(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_route *r = dst;
    if (!r->tls_versions)
        r->tls_versions = cfg_calloc(n, sizeof *r->tls_versions);
    int v = sp_tls_version_parse(lua_tostring(cx->L, idx));
    if (v < 0)
        cfg_fail(cx, field, "expected \"TLSv1\", \"TLSv1.1\", \"TLSv1.2\" or \"TLSv1.3\", got string \"%s\"",
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
    r->http.match_headers = cfg_calloc(n, sizeof *r->http.match_headers);
    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
        char field[200];
        if (lua_type(L, -2) != LUA_TSTRING)
            cfg_fail_type(cx, "match.headers", -2, "a header name");
        snprintf(field, sizeof field, "match.headers[\"%s\"]", lua_tostring(L, -2));
        if (lua_type(L, -1) != LUA_TSTRING)
            cfg_fail_type(cx, field, -1, "a value or a \"/regex/\"");
        sp_header_match *hm = &r->http.match_headers[r->http.nmatch_headers];
        const char *v = lua_tostring(L, -1);
        size_t len = lua_objlen(L, -1);
        hm->name = cfg_strdup(lua_tostring(L, -2));
        if (len >= 2 && v[0] == '/' && v[len - 1] == '/') {
            char *re = cfg_strdup(v + 1);
            re[len - 2] = 0;
            int rc = regcomp(&hm->re, re, REG_EXTENDED | REG_NOSUB);
            free(re);
            if (rc != 0) {
                free(hm->name);
                cfg_fail(cx, field, "expected a POSIX extended regular expression, got string \"%s\"", v);
            }
        } else {
            hm->value = cfg_strdup(v);
        }
        r->http.nmatch_headers++;
    }
}

static void compile_match(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"ports", "client_ip", "domains", "tls_version", "path", "headers", NULL};
    cfg_check_keys(cx, t, "match", keys);
    const char *path = cfg_opt_string(cx, t, "match", "path");
    if (path) {
        char why[200];
        if (sp_path_pattern_compile(path, &r->http.path, why, sizeof why) != 0)
            cfg_fail(cx, "match.path", "%s, got string \"%s\"", why, path);
        r->http.has_path = true;
    }
    if (cfg_opt_table(cx, t, "match", "headers")) {
        compile_match_headers(cx, r, lua_gettop(cx->L));
        lua_pop(cx->L, 1);
    }
    compile_ports(cx, r, t);
    cfg_ip_list(cx, t, "client_ip", "match.client_ip", &r->client_ip);
    cfg_for_each_string(cx, r, t, "domains", "match.domains", "a domain or a list of domains", add_domain);
    cfg_for_each_string(cx, r, t, "tls_version", "match.tls_version", "a TLS version or a list of them",
                        add_tls_version);
}

static void compile_security(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"ip_allow_list", "ip_block_list", "max_connections",
                                       "max_connections_per_ip", "basic_auth", "rate_limit", NULL};
    cfg_check_keys(cx, t, "security", keys);
    cfg_ip_list(cx, t, "ip_allow_list", "security.ip_allow_list", &r->ip_allow_list);
    cfg_ip_list(cx, t, "ip_block_list", "security.ip_block_list", &r->ip_block_list);
    cfg_opt_uint(cx, t, "security", "max_connections", 100000000, &r->max_connections);
    cfg_opt_uint(cx, t, "security", "max_connections_per_ip", 100000000, &r->max_connections_per_ip);
    lua_State *L = cx->L;
    if (cfg_opt_table(cx, t, "security", "basic_auth")) {
        static const char *const auth_keys[] = {"realm", "users", NULL};
        static const char *const user_keys[] = {"username", "password", NULL};
        int a = lua_gettop(L);
        cfg_check_keys(cx, a, "security.basic_auth", auth_keys);
        const char *realm = cfg_opt_string(cx, a, "security.basic_auth", "realm");
        if (realm && strpbrk(realm, "\"\\\r\n"))
            cfg_fail(cx, "security.basic_auth.realm", "expected text without quotes, backslashes or line breaks");
        r->http.auth_realm = cfg_strdup(realm ? realm : r->name);
        lua_getfield(L, a, "users");
        if (!cfg_is_array(L, -1))
            cfg_fail_type(cx, "security.basic_auth.users", -1, "a list of { username = ..., password = ... }");
        size_t n = lua_objlen(L, -1);
        r->http.auth_credentials = cfg_calloc(n, sizeof(char *));
        for (size_t i = 1; i <= n; i++) {
            char f[64];
            snprintf(f, sizeof f, "security.basic_auth.users[%zu]", i);
            lua_rawgeti(L, -1, (int)i);
            if (!lua_istable(L, -1))
                cfg_fail_type(cx, f, -1, "{ username = ..., password = ... }");
            cfg_check_keys(cx, lua_gettop(L), f, user_keys);
            const char *u = cfg_opt_string(cx, lua_gettop(L), f, "username");
            const char *pw = cfg_opt_string(cx, lua_gettop(L), f, "password");
            if (!u || !*u || strchr(u, ':') || !pw)
                cfg_fail(cx, f, "needs a username (without ':') and a password");
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
    if (cfg_opt_table(cx, t, "security", "rate_limit")) {
        static const char *const rl_keys[] = {"requests", "window", "key", NULL};
        int rl = lua_gettop(L);
        cfg_check_keys(cx, rl, "security.rate_limit", rl_keys);
        uint64_t window = 60;
        cfg_opt_uint(cx, rl, "security.rate_limit", "requests", 1000000000, &r->http.rate_requests);
        cfg_opt_uint(cx, rl, "security.rate_limit", "window", 86400, &window);
        if (r->http.rate_requests == 0 || window == 0)
            cfg_fail(cx, "security.rate_limit", "needs requests >= 1 and window >= 1 (seconds)");
        r->http.rate_window_ms = window * 1000;
        const char *key = cfg_opt_string(cx, rl, "security.rate_limit", "key");
        if (!key || strcmp(key, "ip") == 0)
            r->http.rate_key = SP_RATE_KEY_IP;
        else if (strcmp(key, "route") == 0)
            r->http.rate_key = SP_RATE_KEY_ROUTE;
        else if (strncmp(key, "header:", 7) == 0 && key[7]) {
            r->http.rate_key = SP_RATE_KEY_HEADER;
            r->http.rate_header = cfg_strdup(key + 7);
        } else
            cfg_fail(cx, "security.rate_limit.key", "expected \"ip\", \"route\" or \"header:NAME\", got string \"%s\"", key);
        lua_pop(L, 1);
    }
}

static void add_tag(cfg_cx *cx, void *dst, int idx, const char *field, size_t n)
{
    sp_route *r = dst;
    size_t len;
    const char *tag = lua_tolstring(cx->L, idx, &len);
    if (len == 0 || len > 64 || strcspn(tag, " \t\r\n,&=?#%+") != len)
        cfg_fail(cx, field, "expected tags of 1 to 64 characters without spaces or \",&=?#%%+\", got string \"%s\"",
                 tag);
    if (!r->tags)
        r->tags = cfg_calloc(n, sizeof *r->tags);
    r->tags[r->ntags++] = cfg_strdup(tag);
}

/* description, tags, enabled: what people read about a route, and a switch. */
static void compile_metadata(cfg_cx *cx, sp_route *r, int t)
{
    const char *d = cfg_opt_string(cx, t, "", "description");
    if (d)
        r->description = cfg_strdup(d);
    cfg_for_each_string(cx, r, t, "tags", "tags", "a tag or a list of tags", add_tag);
    r->disabled = cfg_opt_bool(cx, t, "", "enabled") == 0;
}

static void compile_route(cfg_cx *cx, sp_route *r, int t, int index)
{
    static const char *const keys[] = {"name", "priority", "description", "tags", "enabled",
                                       "match", "action", "security", NULL};
    lua_State *L = cx->L;
    r->index = index;
    r->handler = LUA_NOREF;
    char provisional[32];
    snprintf(provisional, sizeof provisional, "route-%d", index);
    r->name = cfg_strdup(provisional);
    cx->route = r;
    if (!lua_istable(L, t))
        cfg_fail_type(cx, "(route)", t, "a table");

    lua_getfield(L, t, "name");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0)
            cfg_fail_type(cx, "name", -1, "a non-empty string");
        free(r->name);
        r->name = cfg_strdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    cfg_check_keys(cx, t, "", keys);

    lua_getfield(L, t, "priority");
    if (!lua_isnil(L, -1)) {
        double p = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || p != floor(p) || fabs(p) > 1e9)
            cfg_fail_type(cx, "priority", -1, "an integer");
        r->priority = (int)p;
    }
    lua_pop(L, 1);
    compile_metadata(cx, r, t);

    if (!cfg_opt_table(cx, t, "", "match"))
        cfg_fail(cx, "match", "required: { ports = ... }");
    compile_match(cx, r, lua_gettop(L));
    lua_pop(L, 1);
    if (!cfg_opt_table(cx, t, "", "action"))
        cfg_fail(cx, "action", "required: { type = ... }");
    cfg_compile_action(cx, r, lua_gettop(L));
    lua_pop(L, 1);
    if (cfg_opt_table(cx, t, "", "security")) {
        compile_security(cx, r, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (r->http.has_path || r->http.nmatch_headers || r->http.auth_realm || r->http.rate_requests)
        r->is_http = true;
    if (r->is_http) {
        if (r->action == SP_ACTION_SOCKET_HANDLER)
            cfg_fail(cx, "action.protocol", "a socket handler reads the stream itself: it cannot be an HTTP route");
        if (r->tls.mode == SP_TLS_PASSTHROUGH)
            cfg_fail(cx, "action.tls.mode", "an HTTP route needs the requests: \"terminate\" or "
                                            "\"terminate-and-reencrypt\", not \"passthrough\"");
        if (r->half_open)
            cfg_fail(cx, "action.half_open", "applies to byte streams, not to HTTP routes");
        if (r->nft.enabled)
            cfg_fail(cx, "action.forwarding_engine", "the kernel forwards packets, not HTTP requests: "
                                                     "an HTTP route needs \"node\"");
    }
    char nft_field[160], nft_msg[400];
    if (sp_nft_check_route(r, nft_field, sizeof nft_field, nft_msg, sizeof nft_msg) != 0)
        cfg_fail(cx, nft_field, "%s", nft_msg);
    cx->route = NULL;
}

bool sp_route_on_port(const sp_route *r, unsigned port)
{
    for (size_t i = 0; i < r->nports; i++)
        if (r->ports[i].from <= port && port <= r->ports[i].to)
            return true;
    return false;
}

bool sp_route_has_tag(const sp_route *r, const char *tag)
{
    for (size_t i = 0; i < r->ntags; i++)
        if (strcmp(r->tags[i], tag) == 0)
            return true;
    return false;
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
                cfg_fail(cx, "match.domains", "\"*.%s\": a wildcard certificate cannot be obtained with "
                         "ACME HTTP-01 (put it in certificates.store or supply it from certificates.provision)",
                         r->domains[k].name);
        }
        if (!names)
            cfg_fail(cx, "action.tls.certificate", "\"auto\" needs match.domains with names to get certificates for");
        cx->route = NULL;
    }
    if (any_auto && !g->settings.cert_store)
        cfg_fail(cx, "certificates.store", "required by certificate = \"auto\": a folder for the certificates");
    if (!g->settings.acme.enabled)
        return;
    if (!g->settings.cert_store)
        cfg_fail(cx, "certificates.store", "required by acme: a folder for the account key and the certificates");
    uint16_t port = g->settings.acme.challenge_port;
    bool used = false, heads = false;
    for (size_t i = 0; i < g->nroutes; i++)
        if (sp_route_on_port(&g->routes[i], port)) {
            sp_route *r = &g->routes[i];
            if (r->tls.mode != SP_TLS_NONE) {
                cx->route = r;
                cfg_fail(cx, "match.ports", "port %u is acme.challenge_port: HTTP-01 needs plain HTTP there", port);
            }
            used = true;
            heads |= r->is_http || sp_route_needs_sniff(r); /* as sp_port_index_build decides */
        }
    if (used && !heads)
        cfg_fail(cx, "acme.challenge_port", "port %u only has byte-stream routes, so its requests are never read: "
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
    r->name = cfg_strdup(SP_ACME_ROUTE_NAME);
    r->ports = cfg_calloc(1, sizeof *r->ports);
    r->ports[0] = (sp_port_range){port, port};
    r->nports = 1;
    r->domains = cfg_calloc(1, sizeof *r->domains);
    if (sp_domain_pattern_parse(SP_ACME_ROUTE_DOMAIN, &r->domains[0], NULL) != 0)
        abort();
    r->ndomains = 1;
    r->action = SP_ACTION_BLOCK;
    r->is_http = true;
}

void cfg_compile_routes(cfg_cx *cx, int top)
{
    lua_State *L = cx->L;
    sp_gen *g = cx->g;
    lua_getfield(L, top, "routes");
    if (lua_isnil(L, -1))
        cfg_fail(cx, "routes", "required: a list of routes");
    int routes = lua_gettop(L);
    if (!lua_istable(L, routes))
        cfg_fail_type(cx, "routes", routes, "a list of routes");
    if (lua_objlen(L, routes) == 0) {
        lua_pushnil(L);
        if (lua_next(L, routes) != 0) /* a table, but not a list */
            cfg_fail(cx, "routes", "expected a list of routes, got a table with named keys");
    }
    size_t n = lua_objlen(L, routes);
    g->routes = cfg_calloc(n, sizeof *g->routes);
    for (size_t i = 1; i <= n; i++) {
        g->nroutes = i; /* counted before compiling so a failure frees the partial route */
        lua_rawgeti(L, routes, (int)i);
        compile_route(cx, &g->routes[i - 1], lua_gettop(L), (int)i);
        lua_pop(L, 1);
        for (size_t k = 0; k + 1 < i; k++)
            if (strcmp(g->routes[k].name, g->routes[i - 1].name) == 0) {
                cx->route = &g->routes[i - 1];
                cfg_fail(cx, "name", "duplicate route name (also route #%d)", g->routes[k].index);
            }
    }
    lua_pop(L, 1);
    char nft_field[160], nft_msg[400];
    const sp_route *nft_bad = NULL;
    if (sp_nft_check_ports(g, &nft_bad, nft_field, sizeof nft_field, nft_msg, sizeof nft_msg) != 0) {
        cx->route = nft_bad;
        cfg_fail(cx, nft_field, "%s", nft_msg);
    }
    check_auto_certificates(cx);
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

void sp_route_free(sp_route *r, lua_State *unref_in)
{
    free(r->name);
    free(r->description);
    for (size_t i = 0; i < r->ntags; i++)
        free(r->tags[i]);
    free(r->tags);
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
    free(r->tls.groups);
    free(r->tls.sigalgs);
    free(r->tls.client_ca);
    free(r->tls.client_crl);
    free(r->tls.upstream_cert);
    free(r->tls.upstream_key);
    SSL_CTX_free(r->tls.server_ctx);
    SSL_CTX_free(r->tls.client_ctx);
    for (size_t k = 0; k < r->ntargets; k++)
        free_target(unref_in, &r->targets[k]);
    if (unref_in)
        luaL_unref(unref_in, LUA_REGISTRYINDEX, r->handler);
    free(r->targets);
    free_route_http(&r->http);
}
