#include "net/registry.h"

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

void sp_counters_sum(sp_counters *const *workers, int n, sp_counts *out)
{
    memset(out, 0, sizeof *out);
    for (int w = 0; w < n; w++) {
        sp_counters *c = workers[w];
        for (int i = 0; i < SP_STATE_COUNT; i++)
            out->by_state[i] += sp_counter_get(&c->by_state[i]);
        for (int i = 0; i < SP_END_COUNT; i++)
            out->ended[i] += sp_counter_get(&c->ended[i]);
        for (int i = 0; i < SP_REFUSED_COUNT; i++)
            out->refused[i] += sp_counter_get(&c->refused[i]);
        out->accept_pauses += sp_counter_get(&c->accept_pauses);
        out->total += sp_counter_get(&c->total);
        out->bytes_from_clients += sp_counter_get(&c->bytes_from_clients);
        out->bytes_from_targets += sp_counter_get(&c->bytes_from_targets);
        out->bytes_to_clients += sp_counter_get(&c->bytes_to_clients);
        out->bytes_to_targets += sp_counter_get(&c->bytes_to_targets);
        out->tls_handshakes += sp_counter_get(&c->tls_handshakes);
        out->tls_resumed += sp_counter_get(&c->tls_resumed);
        out->proxy_headers_accepted += sp_counter_get(&c->proxy_headers_accepted);
        out->proxy_headers_rejected += sp_counter_get(&c->proxy_headers_rejected);
        for (int i = 0; i <= SP_CONNECT_BUCKETS; i++)
            out->connect_buckets[i] += sp_counter_get(&c->connect_buckets[i]);
        out->connect_sum_ns += sp_counter_get(&c->connect_sum_ns);
        for (int i = 0; i < SP_TLSFAIL_COUNT; i++) {
            out->tls_failures[i] += sp_counter_get(&c->tls_failures[i]);
            out->upstream_tls_failures[i] += sp_counter_get(&c->upstream_tls_failures[i]);
        }
        out->http_requests += sp_counter_get(&c->http_requests);
        for (int i = 0; i < 6; i++)
            out->http_responses[i] += sp_counter_get(&c->http_responses[i]);
        for (int i = 0; i < SP_HTTP_LOCAL_COUNT; i++)
            out->http_local[i] += sp_counter_get(&c->http_local[i]);
        out->http_upstream_new += sp_counter_get(&c->http_upstream_new);
        out->http_upstream_reused += sp_counter_get(&c->http_upstream_reused);
        out->http_upstream_retried += sp_counter_get(&c->http_upstream_retried);
    }
    for (int i = 0; i < SP_STATE_COUNT; i++)
        out->active += out->by_state[i];
}
