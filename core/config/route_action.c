/* A route's action table; see route_action.h. */
#include "config/route_action.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/nft_options.h"
#include "config/schema.h"
#include "proto/client_hello.h"

static void compile_template(cfg_cx *cx, const char *field, const char *text, sp_template *out)
{
    char why[200];
    if (sp_template_compile(text, out, why, sizeof why) != 0)
        cfg_fail(cx, field, "%s", why);
}

/* action.tls.client_auth: { ca = PATH_OR_PEM, mode = "required" | "optional", crl = PATH } */
static void compile_client_auth(cfg_cx *cx, sp_route_tls *tls, int t)
{
    static const char *const keys[] = {"ca", "mode", "crl", NULL};
    cfg_check_keys(cx, t, "action.tls.client_auth", keys);
    const char *ca = cfg_opt_string(cx, t, "action.tls.client_auth", "ca");
    if (!ca)
        cfg_fail(cx, "action.tls.client_auth.ca", "required: the CA certificates that sign client certificates "
                                                  "(a PEM file path or inline PEM)");
    const char *mode = cfg_opt_string(cx, t, "action.tls.client_auth", "mode");
    if (!mode || strcmp(mode, "required") == 0)
        tls->client_auth = SP_CLIENT_AUTH_REQUIRED;
    else if (strcmp(mode, "optional") == 0)
        tls->client_auth = SP_CLIENT_AUTH_OPTIONAL;
    else
        cfg_fail(cx, "action.tls.client_auth.mode", "expected \"required\" or \"optional\", got string \"%s\"", mode);
    tls->client_ca = cfg_strdup(ca);
    const char *crl = cfg_opt_string(cx, t, "action.tls.client_auth", "crl");
    if (crl)
        tls->client_crl = cfg_strdup(crl);
}

/* action.tls: { mode, certificate, min_version, groups, sigalgs, client_auth,
 * upstream_verify, upstream_sni, upstream_ca_file, upstream_cert, upstream_key } */
static void compile_tls(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"mode", "certificate", "min_version", "groups", "sigalgs",
                                       "client_auth", "upstream_verify", "upstream_sni",
                                       "upstream_ca_file", "upstream_cert", "upstream_key", NULL};
    static const char *const cert_keys[] = {"cert", "key", NULL};
    lua_State *L = cx->L;
    sp_route_tls *tls = &r->tls;
    cfg_check_keys(cx, t, "action.tls", keys);
    const char *mode = cfg_opt_string(cx, t, "action.tls", "mode");
    if (!mode)
        cfg_fail(cx, "action.tls.mode", "required: \"passthrough\", \"terminate\" or \"terminate-and-reencrypt\"");
    if (strcmp(mode, "passthrough") == 0) tls->mode = SP_TLS_PASSTHROUGH;
    else if (strcmp(mode, "terminate") == 0) tls->mode = SP_TLS_TERMINATE;
    else if (strcmp(mode, "terminate-and-reencrypt") == 0) tls->mode = SP_TLS_REENCRYPT;
    else cfg_fail(cx, "action.tls.mode", "expected \"passthrough\", \"terminate\" or \"terminate-and-reencrypt\", got string \"%s\"", mode);

    const char *minv = cfg_opt_string(cx, t, "action.tls", "min_version");
    tls->min_version = 0x0303;
    if (minv && ((tls->min_version = sp_tls_version_parse(minv)) < 0 || tls->min_version < 0x0303))
        cfg_fail(cx, "action.tls.min_version", "expected \"TLSv1.2\" or \"TLSv1.3\", got string \"%s\"", minv);

    lua_getfield(L, t, "certificate");
    bool terminating = tls->mode != SP_TLS_PASSTHROUGH;
    if (lua_isnil(L, -1)) {
        if (terminating)
            cfg_fail(cx, "action.tls.certificate", "required to terminate TLS: { cert = PATH_OR_PEM, key = PATH_OR_PEM }");
    } else if (!terminating) {
        cfg_fail(cx, "action.tls.certificate", "a passthrough route has no certificate (the target presents its own)");
    } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
        tls->cert_auto = true; /* names checked once the whole configuration is read */
    } else if (!lua_istable(L, -1)) {
        cfg_fail_type(cx, "action.tls.certificate", -1, "\"auto\" or { cert = PATH_OR_PEM, key = PATH_OR_PEM }");
    } else {
        int c = lua_gettop(L);
        cfg_check_keys(cx, c, "action.tls.certificate", cert_keys);
        const char *cert = cfg_opt_string(cx, c, "action.tls.certificate", "cert");
        const char *key = cfg_opt_string(cx, c, "action.tls.certificate", "key");
        if (!cert)
            cfg_fail(cx, "action.tls.certificate.cert", "required: a PEM file path or inline PEM");
        if (!key)
            cfg_fail(cx, "action.tls.certificate.key", "required: a PEM file path or inline PEM");
        tls->cert = cfg_strdup(cert);
        tls->key = cfg_strdup(key);
    }
    lua_pop(L, 1);

    const char *groups = cfg_opt_string(cx, t, "action.tls", "groups");
    const char *sigalgs = cfg_opt_string(cx, t, "action.tls", "sigalgs");
    if ((groups || sigalgs) && !terminating)
        cfg_fail(cx, groups ? "action.tls.groups" : "action.tls.sigalgs",
                 "a passthrough route does not take part in the handshake");
    if (groups)
        tls->groups = cfg_strdup(groups);
    if (sigalgs)
        tls->sigalgs = cfg_strdup(sigalgs);
    if (cfg_opt_table(cx, t, "action.tls", "client_auth")) {
        if (!terminating)
            cfg_fail(cx, "action.tls.client_auth", "a passthrough route does not see the client's certificate "
                                                   "(the target checks it)");
        compile_client_auth(cx, tls, lua_gettop(L));
        lua_pop(L, 1);
    }

    int verify = cfg_opt_bool(cx, t, "action.tls", "upstream_verify");
    const char *sni = cfg_opt_string(cx, t, "action.tls", "upstream_sni");
    const char *ca = cfg_opt_string(cx, t, "action.tls", "upstream_ca_file");
    const char *ucert = cfg_opt_string(cx, t, "action.tls", "upstream_cert");
    const char *ukey = cfg_opt_string(cx, t, "action.tls", "upstream_key");
    if ((verify >= 0 || sni || ca || ucert || ukey) && tls->mode != SP_TLS_REENCRYPT)
        cfg_fail(cx, verify >= 0 ? "action.tls.upstream_verify" : sni ? "action.tls.upstream_sni"
                     : ca ? "action.tls.upstream_ca_file" : ucert ? "action.tls.upstream_cert" : "action.tls.upstream_key",
                 "only a \"terminate-and-reencrypt\" route has an upstream TLS leg");
    if (!ucert != !ukey)
        cfg_fail(cx, ucert ? "action.tls.upstream_key" : "action.tls.upstream_cert",
                 "a client certificate for the target needs both upstream_cert and upstream_key");
    if (ucert) {
        tls->upstream_cert = cfg_strdup(ucert);
        tls->upstream_key = cfg_strdup(ukey);
    }
    tls->upstream_verify = verify == 1 || ca != NULL;
    if (sni)
        tls->upstream_sni = cfg_strdup(sni);
    if (ca)
        tls->upstream_ca_file = cfg_strdup(ca);
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
        cfg_fail_type(cx, field, idx, "a table { host = ..., port = ... }");
    cfg_check_keys(cx, idx, field, keys);
    char f[160];

    sp_target proto = {.host = NULL, .host_fn = LUA_NOREF, .port_fn = LUA_NOREF};
    lua_getfield(L, idx, "port");
    cfg_join(f, sizeof f, field, "port");
    if (lua_type(L, -1) == LUA_TNUMBER) {
        proto.port_kind = SP_PORT_FIXED;
        proto.port = cfg_port_value(cx, f, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "preserve") == 0) {
        proto.port_kind = SP_PORT_PRESERVE;
    } else if (lua_type(L, -1) == LUA_TFUNCTION) {
        proto.port_kind = SP_PORT_FUNCTION;
    } else {
        cfg_fail_type(cx, f, -1, "a port number, \"preserve\" or a function(ctx)");
    }
    /* port functions are referenced per candidate below, after the host is known */
    int port_idx = lua_gettop(L);

    lua_getfield(L, idx, "host");
    cfg_join(f, sizeof f, field, "host");
    int host_idx = lua_gettop(L);
    size_t nhosts = 1;
    bool list = false;
    if (lua_type(L, host_idx) == LUA_TSTRING) {
        if (lua_objlen(L, host_idx) == 0 || lua_objlen(L, host_idx) > 253)
            cfg_fail_type(cx, f, host_idx, "a host name or IP address");
    } else if (lua_type(L, host_idx) == LUA_TFUNCTION) {
    } else if (allow_host_list && cfg_is_array(L, host_idx)) {
        list = true;
        nhosts = lua_objlen(L, host_idx);
    } else {
        cfg_fail_type(cx, f, host_idx, allow_host_list ? "a host, a list of hosts or a function(ctx)"
                                                   : "a host or a function(ctx)");
    }
    for (size_t i = 1; i <= nhosts; i++) {
        sp_target tg = proto;
        if (list) {
            lua_rawgeti(L, host_idx, (int)i);
            char fi[180];
            snprintf(fi, sizeof fi, "%s[%zu]", f, i);
            if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0 || lua_objlen(L, -1) > 253)
                cfg_fail_type(cx, fi, -1, "a host name or IP address");
            tg.host = cfg_strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        } else if (lua_type(L, host_idx) == LUA_TFUNCTION) {
            tg.host_fn = ref_function(cx, host_idx);
        } else {
            tg.host = cfg_strdup(lua_tostring(L, host_idx));
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
    if (!cfg_opt_table(cx, t, "action.headers", key))
        return;
    int h = lua_gettop(L);
    size_t n = 0;
    for (lua_pushnil(L); lua_next(L, h); lua_pop(L, 1))
        n++;
    *out = cfg_calloc(n, sizeof **out);
    for (lua_pushnil(L); lua_next(L, h); lua_pop(L, 1)) {
        char field[200];
        if (lua_type(L, -2) != LUA_TSTRING || lua_objlen(L, -2) == 0 ||
            strpbrk(lua_tostring(L, -2), " \t\r\n:"))
            cfg_fail_type(cx, path, -2, "a header name");
        snprintf(field, sizeof field, "%s[\"%s\"]", path, lua_tostring(L, -2));
        if (lua_type(L, -1) != LUA_TSTRING || strpbrk(lua_tostring(L, -1), "\r\n"))
            cfg_fail_type(cx, field, -1, "a template string without line breaks");
        sp_header_set *hs = &(*out)[*nout];
        compile_template(cx, field, lua_tostring(L, -1), &hs->value);
        hs->name = cfg_strdup(lua_tostring(L, -2));
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
    if (cfg_opt_table(cx, t, "action", "headers")) {
        int ht = lua_gettop(L);
        cfg_check_keys(cx, ht, "action.headers", header_keys);
        compile_header_sets(cx, ht, "request", &h->request_headers, &h->nrequest_headers);
        compile_header_sets(cx, ht, "response", &h->response_headers, &h->nresponse_headers);
        lua_pop(L, 1);
        r->is_http = true;
    }
    const char *rw = cfg_opt_string(cx, t, "action", "rewrite_path");
    if (rw) {
        compile_template(cx, "action.rewrite_path", rw, &h->rewrite_path);
        h->has_rewrite = true;
        r->is_http = true;
    }
    if (cfg_opt_table(cx, t, "action", "websocket")) {
        cfg_check_keys(cx, lua_gettop(L), "action.websocket", ws_keys);
        h->websocket = cfg_opt_bool(cx, lua_gettop(L), "action.websocket", "enabled") != 0;
        lua_pop(L, 1);
        r->is_http = true;
    }
    if (cfg_opt_table(cx, t, "action", "redirect")) {
        int rt = lua_gettop(L);
        if (r->action != SP_ACTION_REDIRECT)
            cfg_fail(cx, "action.redirect", "only a \"redirect\" action has one");
        cfg_check_keys(cx, rt, "action.redirect", redirect_keys);
        const char *to = cfg_opt_string(cx, rt, "action.redirect", "to");
        if (!to)
            cfg_fail(cx, "action.redirect.to", "required: a template such as \"https://{domain}{url}\"");
        compile_template(cx, "action.redirect.to", to, &h->redirect_to);
        h->has_redirect = true;
        uint64_t status = 301;
        cfg_opt_uint(cx, rt, "action.redirect", "status", 999, &status);
        if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
            cfg_fail(cx, "action.redirect.status", "expected 301, 302, 303, 307 or 308, got number %llu",
                     (unsigned long long)status);
        h->redirect_status = (int)status;
        lua_pop(L, 1);
    } else if (r->action == SP_ACTION_REDIRECT) {
        cfg_fail(cx, "action.redirect", "required for a redirect action: { to = \"https://{domain}{url}\" }");
    }
    if (r->action == SP_ACTION_REDIRECT)
        r->is_http = true;
}

void cfg_compile_action(cfg_cx *cx, sp_route *r, int t)
{
    static const char *const keys[] = {"type", "protocol", "target", "targets", "forwarding_engine",
                                       "half_open", "tls", "send_proxy_protocol", "handler", "headers",
                                       "rewrite_path", "redirect", "websocket", "nftables", NULL};
    lua_State *L = cx->L;
    cfg_check_keys(cx, t, "action", keys);
    const char *type = cfg_opt_string(cx, t, "action", "type");
    if (!type)
        cfg_fail(cx, "action.type", "required: \"forward\", \"socket-handler\", \"redirect\" or \"block\"");
    if (strcmp(type, "forward") == 0)
        r->action = SP_ACTION_FORWARD;
    else if (strcmp(type, "block") == 0)
        r->action = SP_ACTION_BLOCK;
    else if (strcmp(type, "socket-handler") == 0)
        r->action = SP_ACTION_SOCKET_HANDLER;
    else if (strcmp(type, "redirect") == 0)
        r->action = SP_ACTION_REDIRECT;
    else
        cfg_fail(cx, "action.type", "expected \"forward\", \"socket-handler\", \"redirect\" or \"block\", got string \"%s\"", type);

    const char *proto = cfg_opt_string(cx, t, "action", "protocol");
    if (proto && strcmp(proto, "tcp") != 0 && strcmp(proto, "http") != 0)
        cfg_fail(cx, "action.protocol", "expected \"tcp\" or \"http\", got string \"%s\"", proto);
    compile_http_action(cx, r, t);
    r->is_http = (proto && strcmp(proto, "http") == 0) || r->is_http;
    char nft_field[160], nft_msg[400];
    if (sp_nft_parse_action(L, t, &r->nft, nft_field, sizeof nft_field, nft_msg, sizeof nft_msg) != 0)
        cfg_fail(cx, nft_field, "%s", nft_msg);
    r->half_open = cfg_opt_bool(cx, t, "action", "half_open") == 1;
    lua_getfield(L, t, "send_proxy_protocol");
    if (lua_type(L, -1) == LUA_TBOOLEAN)
        r->send_proxy_protocol = lua_toboolean(L, -1) ? 1 : 0;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "v1") == 0)
        r->send_proxy_protocol = 1;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "v2") == 0)
        r->send_proxy_protocol = 2;
    else if (!lua_isnil(L, -1))
        cfg_fail_type(cx, "action.send_proxy_protocol", -1, "false, true, \"v1\" or \"v2\"");
    lua_pop(L, 1);
    if (cfg_opt_table(cx, t, "action", "tls")) {
        if (r->action == SP_ACTION_BLOCK)
            cfg_fail(cx, "action.tls", "a block route has no TLS");
        compile_tls(cx, r, lua_gettop(L));
        if (r->action == SP_ACTION_SOCKET_HANDLER && r->tls.mode != SP_TLS_PASSTHROUGH)
            cfg_fail(cx, "action.tls.mode", "a socket handler behind TLS termination is not supported by "
                                            "this version of smartproxy yet");
        lua_pop(L, 1);
    }

    lua_getfield(L, t, "handler");
    if (r->action == SP_ACTION_SOCKET_HANDLER) {
        if (lua_type(L, -1) != LUA_TFUNCTION)
            cfg_fail_type(cx, "action.handler", -1, "a function(sock, ctx) for a socket-handler route");
        r->handler = ref_function(cx, lua_gettop(L));
    } else if (!lua_isnil(L, -1)) {
        cfg_fail(cx, "action.handler", "only a \"socket-handler\" route has a handler");
    }
    lua_pop(L, 1);

    lua_getfield(L, t, "target");
    lua_getfield(L, t, "targets");
    bool has_target = !lua_isnil(L, -2), has_targets = !lua_isnil(L, -1);
    if (r->action == SP_ACTION_FORWARD) {
        if (has_target && has_targets)
            cfg_fail(cx, "action.targets", "give either target or targets, not both");
        if (!has_target && !has_targets)
            cfg_fail(cx, "action.target", "required for a forward action: { host = ..., port = ... }");
        if (has_target) {
            compile_target(cx, r, -2, "action.target", true);
        } else {
            if (!cfg_is_array(L, -1))
                cfg_fail_type(cx, "action.targets", -1, "a non-empty list of { host = ..., port = ... }");
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
        cfg_fail(cx, has_target ? "action.target" : "action.targets", "only a forward action has a target");
    }
    lua_pop(L, 2);
}
