#include "net/registry.h"

#include <stddef.h>
#include <string.h>

static const char *const state_names[SP_STATE_COUNT] = {
    "accepted", "proxy_header", "sniffing", "tls_handshake", "connecting", "piping", "lua", "http",
    "closing",
};

static const char *const end_names[SP_END_COUNT] = {
    "client_closed", "target_closed", "client_reset", "target_reset", "client_error",
    "target_error", "connect_refused", "connect_timeout", "connect_error", "resolve_failed",
    "no_route", "blocked", "initial_data_timeout", "inactivity_timeout", "max_lifetime",
    "lua_error", "shutdown", "internal_error", "bad_client_hello", "tls_handshake_failed",
    "tls_error", "upstream_tls_failed", "bad_proxy_header", "proxy_header_timeout",
    "max_connections_per_ip", "connection_rate", "handler_done", "ip_blocked", "ip_not_allowed",
    "route_max_connections", "route_max_connections_per_ip",
    "http_bad_request", "http_done", "http_idle_timeout", "upstream_timeout", "bad_response",
    "request_body_timeout", "lua_budget", "lua_memory",
};

static const char *const http_local_names[SP_HTTP_LOCAL_COUNT] = {
    "bad_request", "no_route", "blocked", "unauthorized", "rate_limited", "redirect",
    "body_too_large", "head_too_large", "bad_gateway", "gateway_timeout", "unavailable", "acme_challenge",
    "request_body_timeout",
};

static const char *const tls_failure_names[SP_TLSFAIL_COUNT] = {
    "protocol_version", "no_shared_cipher", "not_tls", "peer_alert", "verify_failed", "eof",
    "timeout", "other",
};

static const char *const refused_names[SP_REFUSED_COUNT] = {
    "max_connections", "accept_error", "max_connections_per_ip", "connection_rate",
    "ip_blocked", "ip_not_allowed", "route_max_connections", "route_max_connections_per_ip",
};

const double sp_connect_bucket_bounds[SP_CONNECT_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5,
};

void sp_counters_observe_connect(sp_counters *c, uint64_t ns)
{
    int i = 0;
    while (i < SP_CONNECT_BUCKETS && (double)ns / 1e9 > sp_connect_bucket_bounds[i])
        i++;
    sp_counter_add(&c->connect_buckets[i], 1);
    sp_counter_add(&c->connect_sum_ns, (int64_t)ns);
}

const char *sp_state_name(sp_conn_state s) { return state_names[s]; }
const char *sp_end_reason_name(sp_end_reason r) { return end_names[r]; }
const char *sp_refused_name(sp_refused_reason r) { return refused_names[r]; }
const char *sp_tls_failure_name(sp_tls_failure f) { return tls_failure_names[f]; }
const char *sp_http_local_name(sp_http_local l) { return http_local_names[l]; }

const char *sp_http_class_name(int status_class)
{
    static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    return classes[status_class];
}

/* sp_counters and sp_counts declare the same fields (SP_COUNTER_FIELDS), so the sum is
 * slot by slot; active follows them in sp_counts. */
_Static_assert(sizeof(sp_counters) == offsetof(sp_counts, active), "sp_counts mirrors sp_counters");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "one slot per counter");

void sp_counters_sum(sp_counters *const *workers, int n, sp_counts *out)
{
    enum { SLOTS = sizeof(sp_counters) / sizeof(uint64_t) };
    memset(out, 0, sizeof *out);
    uint64_t *sum = (uint64_t *)out;
    for (int w = 0; w < n; w++) {
        _Atomic uint64_t *slot = (_Atomic uint64_t *)workers[w];
        for (size_t i = 0; i < SLOTS; i++)
            sum[i] += sp_counter_get(&slot[i]);
    }
    for (int i = 0; i < SP_STATE_COUNT; i++)
        out->active += out->by_state[i];
}

static const char *state_label(int i) { return sp_state_name((sp_conn_state)i); }
static const char *end_label(int i) { return sp_end_reason_name((sp_end_reason)i); }
static const char *refused_label(int i) { return sp_refused_name((sp_refused_reason)i); }
static const char *tls_failure_label(int i) { return sp_tls_failure_name((sp_tls_failure)i); }
static const char *http_local_label(int i) { return sp_http_local_name((sp_http_local)i); }

#define AT(field) .offset = offsetof(sp_counts, field)
#define BY(lbl, names, n) .label = lbl, .label_value = names, .count = n
#define COUNTER .type = SP_METRIC_COUNTER
#define GAUGE .type = SP_METRIC_GAUGE

/* In the order of /metrics (a family's descriptors next to each other); /stats nests the
 * groups in the same order. The connect duration histogram is written by the admin report. */
const sp_metric sp_counts_metrics[] = {
    {.key = "active_connections", .name = "smartproxy_connections_active", GAUGE,
     .help = "Proxied connections open now.", AT(active)},
    {.key = "by_state", .name = "smartproxy_connections_state", GAUGE,
     .help = "Open connections by lifecycle state.", BY("state", state_label, SP_STATE_COUNT), AT(by_state)},
    {.key = "total_connections", .name = "smartproxy_connections_total", COUNTER,
     .help = "Connections accepted.", AT(total)},
    {.key = "terminations", .name = "smartproxy_connections_ended_total", COUNTER,
     .help = "Connections ended, by termination reason.", BY("reason", end_label, SP_END_COUNT), AT(ended)},
    {.key = "refused", .name = "smartproxy_connections_refused_total", COUNTER,
     .help = "Connections refused by a limit.", BY("reason", refused_label, SP_REFUSED_COUNT), AT(refused)},
    {.key = "accept_pauses", .name = "smartproxy_accept_pauses_total", COUNTER,
     .help = "Times a listener paused accepting because accept failed for want of file descriptors or memory.",
     AT(accept_pauses)},
    {.key = "bytes_from_clients", .name = "smartproxy_received_bytes_total", COUNTER,
     .help = "Bytes received, by peer.", .labels = "from=\"client\"", AT(bytes_from_clients)},
    {.key = "bytes_from_targets", .name = "smartproxy_received_bytes_total", COUNTER,
     .labels = "from=\"target\"", AT(bytes_from_targets)},
    {.key = "bytes_to_clients", .name = "smartproxy_sent_bytes_total", COUNTER,
     .help = "Bytes sent, by peer (whatever produced them: pipe, HTTP or Lua).", .labels = "to=\"client\"",
     AT(bytes_to_clients)},
    {.key = "bytes_to_targets", .name = "smartproxy_sent_bytes_total", COUNTER,
     .labels = "to=\"target\"", AT(bytes_to_targets)},
    {.group = "tls", .key = "handshakes", .name = "smartproxy_tls_handshakes_total", COUNTER,
     .help = "Client TLS handshakes completed.", AT(tls_handshakes)},
    {.group = "tls", .key = "resumed", .name = "smartproxy_tls_resumed_total", COUNTER,
     .help = "Client TLS handshakes that resumed a session.", AT(tls_resumed)},
    {.group = "tls", .key = "failures", .name = "smartproxy_tls_handshake_failures_total", COUNTER,
     .help = "TLS handshakes failed, by side and reason.", .labels = "side=\"client\"",
     BY("reason", tls_failure_label, SP_TLSFAIL_COUNT), AT(tls_failures)},
    {.group = "tls", .key = "upstream_failures", .name = "smartproxy_tls_handshake_failures_total", COUNTER,
     .labels = "side=\"upstream\"", BY("reason", tls_failure_label, SP_TLSFAIL_COUNT), AT(upstream_tls_failures)},
    {.group = "proxy_protocol", .key = "accepted", .name = "smartproxy_proxy_protocol_headers_total", COUNTER,
     .help = "PROXY headers from trusted senders.", .labels = "result=\"accepted\"", AT(proxy_headers_accepted)},
    {.group = "proxy_protocol", .key = "rejected", .name = "smartproxy_proxy_protocol_headers_total", COUNTER,
     .labels = "result=\"rejected\"", AT(proxy_headers_rejected)},
    {.group = "http", .key = "requests", .name = "smartproxy_http_requests_total", COUNTER,
     .help = "HTTP requests parsed (routed or answered).", AT(http_requests)},
    {.group = "http", .key = "responses", .name = "smartproxy_http_responses_total", COUNTER,
     .help = "HTTP responses sent to clients, by status class.", BY("code", sp_http_class_name, 6), .first = 1,
     AT(http_responses)},
    {.group = "http", .key = "local", .name = "smartproxy_http_local_responses_total", COUNTER,
     .help = "HTTP answers given by the proxy itself, by cause.",
     BY("reason", http_local_label, SP_HTTP_LOCAL_COUNT), AT(http_local)},
    {.group = "http", .key = "upstream_connections_opened", .name = "smartproxy_http_upstream_connections_total",
     COUNTER, .help = "Upstream connections for HTTP requests: opened, reused from keep-alive, retried.",
     .labels = "kind=\"opened\"", AT(http_upstream_new)},
    {.group = "http", .key = "upstream_connections_reused", .name = "smartproxy_http_upstream_connections_total",
     COUNTER, .labels = "kind=\"reused\"", AT(http_upstream_reused)},
    {.group = "http", .key = "upstream_retries", .name = "smartproxy_http_upstream_connections_total",
     COUNTER, .labels = "kind=\"retried\"", AT(http_upstream_retried)},
};
const size_t sp_counts_nmetrics = sizeof sp_counts_metrics / sizeof *sp_counts_metrics;
