/* head: request and response heads written by the proxy (see head.h). */
#include "http/head.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *sp_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static const char *const hop_by_hop[] = {"connection", "keep-alive", "proxy-connection", "te", "upgrade", NULL};

/* Fields that are never hop-by-hop, whatever Connection says (RFC 9110 7.6.1): the
 * framing of the body that passes through as it was framed, and Host. Dropping one
 * because Connection named it would let the next hop read the body as another message
 * (request smuggling), so such names in Connection are ignored, as HAProxy does. */
static const char *const end_to_end[] = {"content-length", "transfer-encoding", "host", NULL};

static bool listed(const char *const *names, const char *name)
{
    for (const char *const *p = names; *p; p++)
        if (strcasecmp(name, *p) == 0)
            return true;
    return false;
}

/* Is field f one we never pass on: hop-by-hop, or named by a Connection field?
 * has_connection: whether h has a Connection field at all (looked up once per head). */
static bool is_hop_by_hop(const sp_http_head *h, const sp_http_field *f, bool has_connection)
{
    const char *name = sp_http_name(h, f);
    if (listed(hop_by_hop, name))
        return true;
    if (listed(end_to_end, name))
        return false;
    for (size_t i = 0; has_connection && i < h->nfields; i++) {
        const sp_http_field *c = &h->fields[i];
        if (sp_http_name_is(h, c, "connection") &&
            sp_http_list_has(sp_http_value(h, c), c->value_len, name))
            return true;
    }
    return false;
}

static bool is_set(const sp_header_set *sets, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(sets[i].name, name) == 0)
            return true;
    return false;
}

static void write_field(sp_buf *out, const char *name, const char *value, size_t len)
{
    sp_buf_append(out, name, strlen(name));
    sp_buf_append(out, ": ", 2);
    sp_buf_append(out, value, len);
    sp_buf_append(out, "\r\n", 2);
}

static void write_sets(sp_buf *out, const sp_header_set *sets, size_t n, const sp_template_values *vals)
{
    for (size_t i = 0; i < n; i++) {
        sp_buf_append(out, sets[i].name, strlen(sets[i].name));
        sp_buf_append(out, ": ", 2);
        size_t before = out->len;
        sp_template_expand(&sets[i].value, vals, out);
        /* a value from the request must not end the field early */
        for (size_t k = before; k < out->len && out->data; k++)
            if (out->data[k] == '\r' || out->data[k] == '\n')
                out->data[k] = ' ';
        sp_buf_append(out, "\r\n", 2);
    }
}

static const sp_http_field *upgrade_field(const sp_http_head *h) { return sp_http_find(h, "upgrade", NULL); }

void sp_head_write_request(sp_buf *out, const sp_request_out *r)
{
    const sp_http_head *h = r->in;
    const char *method = llhttp_method_name((llhttp_method_t)h->method);
    sp_buf_append(out, method, strlen(method));
    sp_buf_append(out, " ", 1);
    sp_buf_append(out, r->target, r->target_len);
    sp_buf_append(out, " HTTP/1.1\r\n", 11);
    const sp_http_field *xff = NULL;
    bool has_connection = sp_http_find(h, "connection", NULL) != NULL;
    for (size_t i = 0; i < h->nfields; i++) {
        const sp_http_field *f = &h->fields[i];
        const char *name = sp_http_name(h, f);
        if (is_hop_by_hop(h, f, has_connection) || is_set(r->sets, r->nsets, name))
            continue;
        if (strncasecmp(name, "x-forwarded-", 12) == 0) {
            if (strcasecmp(name + 12, "for") == 0 && !xff)
                xff = f; /* appended to below; later duplicates are folded into it */
            if (strcasecmp(name + 12, "for") == 0 || strcasecmp(name + 12, "proto") == 0 ||
                strcasecmp(name + 12, "host") == 0 || strcasecmp(name + 12, "port") == 0)
                continue;
        }
        write_field(out, name, sp_http_value(h, f), f->value_len);
    }
    if (!r->host && r->default_host)
        write_field(out, "Host", r->default_host, strlen(r->default_host));
    if (!is_set(r->sets, r->nsets, "x-forwarded-for")) {
        sp_buf_append(out, "X-Forwarded-For: ", 17);
        for (size_t i = 0; xff && i < h->nfields; i++) {
            const sp_http_field *f = &h->fields[i];
            if (sp_http_name_is(h, f, "x-forwarded-for") && f->value_len) {
                sp_buf_append(out, sp_http_value(h, f), f->value_len);
                sp_buf_append(out, ", ", 2);
            }
        }
        sp_buf_append(out, r->client_ip, strlen(r->client_ip));
        sp_buf_append(out, "\r\n", 2);
    }
    if (!is_set(r->sets, r->nsets, "x-forwarded-proto"))
        write_field(out, "X-Forwarded-Proto", r->proto, strlen(r->proto));
    if (r->host && !is_set(r->sets, r->nsets, "x-forwarded-host"))
        write_field(out, "X-Forwarded-Host", r->host, strlen(r->host));
    if (!is_set(r->sets, r->nsets, "x-forwarded-port"))
        sp_buf_appendf(out, "X-Forwarded-Port: %u\r\n", r->port);
    write_sets(out, r->sets, r->nsets, r->vals);
    const sp_http_field *up = r->upgrade ? upgrade_field(h) : NULL;
    if (up) {
        write_field(out, "Upgrade", sp_http_value(h, up), up->value_len);
        sp_buf_append(out, "Connection: upgrade\r\n", 21);
    }
    sp_buf_append(out, "\r\n", 2);
}

void sp_head_write_response(sp_buf *out, const sp_response_out *r)
{
    const sp_http_head *h = r->in;
    sp_buf_appendf(out, "HTTP/1.1 %d ", h->status);
    if (h->reason_len)
        sp_buf_append(out, h->arena + h->reason, h->reason_len);
    else
        sp_buf_append(out, sp_http_reason(h->status), strlen(sp_http_reason(h->status)));
    sp_buf_append(out, "\r\n", 2);
    bool has_connection = sp_http_find(h, "connection", NULL) != NULL;
    for (size_t i = 0; i < h->nfields; i++) {
        const sp_http_field *f = &h->fields[i];
        const char *name = sp_http_name(h, f);
        if (is_hop_by_hop(h, f, has_connection) || is_set(r->sets, r->nsets, name))
            continue;
        if (r->dechunk && (strcasecmp(name, "transfer-encoding") == 0 || strcasecmp(name, "trailer") == 0))
            continue;
        write_field(out, name, sp_http_value(h, f), f->value_len);
    }
    bool informational = h->status < 200;
    if (!informational || r->upgrade)
        write_sets(out, r->sets, r->nsets, r->vals);
    const sp_http_field *up = r->upgrade ? upgrade_field(h) : NULL;
    if (up) {
        write_field(out, "Upgrade", sp_http_value(h, up), up->value_len);
        sp_buf_append(out, "Connection: upgrade\r\n", 21);
    } else if (!informational && r->close) {
        sp_buf_append(out, "Connection: close\r\n", 19);
    } else if (!informational && r->keep_alive_10) {
        sp_buf_append(out, "Connection: keep-alive\r\n", 24);
    }
    sp_buf_append(out, "\r\n", 2);
}

void sp_head_write_local(sp_buf *out, int status, const char *extra, const char *body, bool close,
                         bool head_request)
{
    char line[96];
    const char *reason = sp_http_reason(status);
    if (!body) {
        snprintf(line, sizeof line, "%d %s\n", status, reason);
        body = line;
    }
    size_t blen = strlen(body);
    sp_buf_appendf(out, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n",
                   status, reason, blen);
    if (extra)
        sp_buf_append(out, extra, strlen(extra));
    if (close)
        sp_buf_append(out, "Connection: close\r\n", 19);
    sp_buf_append(out, "\r\n", 2);
    if (!head_request)
        sp_buf_append(out, body, blen);
}
