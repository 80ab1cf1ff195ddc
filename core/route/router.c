#include "route/router.h"

const char *sp_route_mismatch(const sp_route *r, const sp_conn_info *info)
{
    if (r->client_ip.n && !sp_ip_list_match(&r->client_ip, &info->client_ip))
        return "match.client_ip";
    return NULL;
}

const sp_route *sp_route_select(const sp_gen *g, uint16_t port, const sp_conn_info *info)
{
    const sp_port_entry *e = sp_gen_port(g, port);
    if (!e)
        return NULL;
    for (size_t i = 0; i < e->nroutes; i++)
        if (!sp_route_mismatch(e->routes[i], info))
            return e->routes[i];
    return NULL;
}
