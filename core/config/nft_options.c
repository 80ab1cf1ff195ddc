/* Checks of kernel-forwarded routes; see nft_options.h. */
#include "config/nft_options.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config/schema.h"

__attribute__((format(printf, 6, 7)))
static int bad(char *field, size_t fieldlen, const char *f, char *msg, size_t msglen, const char *fmt, ...)
{
    snprintf(field, fieldlen, "%s", f);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return -1;
}


int sp_nft_parse_rate(const char *s, uint64_t *out)
{
    static const struct { const char *unit; uint64_t mul, div; } units[] = {
        {"bps", 1, 8}, {"kbps", 1000, 8}, {"mbps", 1000000, 8}, {"gbps", 1000000000, 8},
        {"bytes", 1, 1}, {"kbytes", 1024, 1}, {"mbytes", 1024 * 1024, 1},
        {"gbytes", 1024ull * 1024 * 1024, 1},
    };
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    uint64_t n = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (n > 1000000000000ull)
            return -1;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    size_t ul = 0;
    while (isalpha((unsigned char)s[ul]))
        ul++;
    const char *rest = s + ul;
    if (*rest && strcmp(rest, "/s") != 0 && strcmp(rest, "/second") != 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strlen(units[i].unit) != ul || strncasecmp(units[i].unit, s, ul) != 0)
            continue;
        if (n > UINT64_MAX / units[i].mul)
            return -1;
        uint64_t v = n * units[i].mul / units[i].div;
        /* the kernel's limit keeps the rate in 64 bits of nanoseconds per byte and more */
        if (v < 1 || v > (1ull << 40))
            return -1;
        *out = v;
        return 0;
    }
    return -1;
}

int sp_nft_parse_action(lua_State *L, int t, sp_route_nft *out, char *field, size_t fl, char *msg, size_t ml)
{
    char got[100];
    *out = (sp_route_nft){.protocols = SP_NFT_TCP};
    lua_getfield(L, t, "forwarding_engine");
    if (!lua_isnil(L, -1)) {
        const char *e = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (e && strcmp(e, "nftables") == 0)
            out->enabled = true;
        else if (!e || strcmp(e, "node") != 0) {
            sp_config_describe(L, -1, got, sizeof got);
            lua_pop(L, 1);
            return bad(field, fl, "action.forwarding_engine", msg, ml,
                       "expected \"node\" or \"nftables\", got %s", got);
        }
    }
    lua_pop(L, 1);

    lua_getfield(L, t, "nftables");
    int n = lua_gettop(L);
    int rc = 0;
    if (lua_isnil(L, n))
        goto done;
    if (!lua_istable(L, n)) {
        sp_config_describe(L, n, got, sizeof got);
        rc = bad(field, fl, "action.nftables", msg, ml,
                 "expected { preserve_source_ip = ..., protocol = ..., max_rate = ... }, got %s", got);
        goto done;
    }
    if (!out->enabled) {
        rc = bad(field, fl, "action.nftables", msg, ml, "applies only with forwarding_engine = \"nftables\"");
        goto done;
    }
    lua_pushnil(L);
    while (lua_next(L, n)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!k || (strcmp(k, "preserve_source_ip") != 0 && strcmp(k, "protocol") != 0 &&
                   strcmp(k, "max_rate") != 0)) {
            char f[160];
            sp_config_describe(L, -1, got, sizeof got);
            snprintf(f, sizeof f, "action.nftables%s%s", k ? "." : "", k ? k : "");
            rc = k ? bad(field, fl, f, msg, ml, "unknown field")
                   : bad(field, fl, f, msg, ml, "unexpected key %s", got);
            lua_pop(L, 1);
            goto done;
        }
    }
    lua_getfield(L, n, "preserve_source_ip");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN) {
            sp_config_describe(L, -1, got, sizeof got);
            rc = bad(field, fl, "action.nftables.preserve_source_ip", msg, ml, "expected a boolean, got %s", got);
        }
        out->preserve_source_ip = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    if (rc)
        goto done;
    lua_getfield(L, n, "protocol");
    if (!lua_isnil(L, -1)) {
        const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(p, "tcp") == 0) out->protocols = SP_NFT_TCP;
        else if (strcmp(p, "udp") == 0) out->protocols = SP_NFT_UDP;
        else if (strcmp(p, "all") == 0) out->protocols = SP_NFT_TCP | SP_NFT_UDP;
        else {
            sp_config_describe(L, -1, got, sizeof got);
            rc = bad(field, fl, "action.nftables.protocol", msg, ml,
                     "expected \"tcp\", \"udp\" or \"all\", got %s", got);
        }
    }
    lua_pop(L, 1);
    if (rc)
        goto done;
    lua_getfield(L, n, "max_rate");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING || sp_nft_parse_rate(lua_tostring(L, -1), &out->max_rate) != 0) {
            sp_config_describe(L, -1, got, sizeof got);
            rc = bad(field, fl, "action.nftables.max_rate", msg, ml,
                     "expected a rate such as \"10mbps\" or \"500kbytes\" (units bps, kbps, mbps, "
                     "gbps, bytes, kbytes, mbytes, gbytes), got %s", got);
        }
    }
    lua_pop(L, 1);
done:
    lua_settop(L, n - 1);
    return rc;
}

int sp_nft_check_route(const sp_route *r, char *field, size_t fl, char *msg, size_t ml)
{
    if (!r->nft.enabled)
        return 0;
    if (r->action == SP_ACTION_SOCKET_HANDLER)
        return bad(field, fl, "action.forwarding_engine", msg, ml,
                   "\"nftables\" forwards in the kernel: a socket-handler route cannot use it");
    if (r->action != SP_ACTION_FORWARD)
        return bad(field, fl, "action.forwarding_engine", msg, ml,
                   "\"nftables\" applies only to a forward action");
    for (size_t i = 0; i < r->ndomains; i++)
        if (r->domains[i].kind != SP_DOMAIN_ANY)
            return bad(field, fl, "match.domains", msg, ml,
                       "kernel forwarding (forwarding_engine = \"nftables\") never sees an SNI or "
                       "Host: only \"*\" can apply");
    if (r->ntls_versions)
        return bad(field, fl, "match.tls_version", msg, ml,
                   "kernel forwarding (forwarding_engine = \"nftables\") never sees a ClientHello");
    const struct { const sp_ip_list *l; const char *name; } lists[] = {
        {&r->client_ip, "match.client_ip"}, {&r->ip_allow_list, "security.ip_allow_list"},
        {&r->ip_block_list, "security.ip_block_list"},
    };
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++)
        for (size_t i = 0; i < lists[k].l->n; i++)
            if (lists[k].l->items[i].glob[0])
                return bad(field, fl, lists[k].name, msg, ml,
                           "kernel rules match prefixes: the glob \"%s\" cannot become one (use a CIDR or "
                           "whole '*' octets)", lists[k].l->items[i].glob);
    if (r->tls.mode != SP_TLS_NONE)
        return bad(field, fl, "action.tls", msg, ml,
                   "kernel forwarding (forwarding_engine = \"nftables\") passes packets: no TLS "
                   "(the target's TLS passes through unchanged)");
    if (r->send_proxy_protocol)
        return bad(field, fl, "action.send_proxy_protocol", msg, ml,
                   "kernel forwarding (forwarding_engine = \"nftables\") cannot write a PROXY header "
                   "(use nftables.preserve_source_ip)");
    if (r->max_connections || r->max_connections_per_ip)
        return bad(field, fl, r->max_connections ? "security.max_connections" : "security.max_connections_per_ip",
                   msg, ml, "kernel forwarding (forwarding_engine = \"nftables\") does not count "
                            "connections (use nftables.max_rate)");
    if (r->ntargets != 1)
        return bad(field, fl, "action.targets", msg, ml,
                   "kernel forwarding (forwarding_engine = \"nftables\") takes one target");
    const sp_target *t = &r->targets[0];
    if (!t->host)
        return bad(field, fl, "action.target.host", msg, ml,
                   "kernel forwarding (forwarding_engine = \"nftables\") needs an IP address or a "
                   "name (resolved once at load), not a function");
    if (t->port_kind == SP_PORT_FUNCTION)
        return bad(field, fl, "action.target.port", msg, ml,
                   "kernel forwarding (forwarding_engine = \"nftables\") needs a port number or "
                   "\"preserve\", not a function");
    return 0;
}

static bool overlap(const sp_route *a, const sp_route *b, unsigned *port)
{
    for (size_t i = 0; i < a->nports; i++)
        for (size_t k = 0; k < b->nports; k++) {
            unsigned lo = a->ports[i].from > b->ports[k].from ? a->ports[i].from : b->ports[k].from;
            unsigned hi = a->ports[i].to < b->ports[k].to ? a->ports[i].to : b->ports[k].to;
            if (lo <= hi) {
                *port = lo;
                return true;
            }
        }
    return false;
}

int sp_nft_check_ports(const sp_gen *g, const sp_route **badr, char *field, size_t fl, char *msg, size_t ml)
{
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        if (!r->nft.enabled || !(r->nft.protocols & SP_NFT_TCP))
            continue;
        for (size_t k = 0; k < g->nroutes; k++) {
            const sp_route *u = &g->routes[k];
            unsigned port;
            if (u->nft.enabled || !overlap(r, u, &port))
                continue;
            *badr = r;
            return bad(field, fl, "match.ports", msg, ml,
                       "port %u is also served in user space by route \"%s\" (#%d): the kernel "
                       "would take its TCP traffic first", port, u->name, u->index);
        }
    }
    return 0;
}
