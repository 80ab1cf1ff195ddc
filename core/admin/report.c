#include "admin/report.h"

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "tls/context.h"

#define TOP_CLIENT_IPS 10

#define RATES(field) .offset = offsetof(sp_rates, field), .real = true
#define PROCESS(field) .offset = offsetof(sp_report_process, field)

/* Rates over the sliding window (admin/rates.h). */
static const sp_metric rate_metrics[] = {
    {.key = "connections_per_second", .name = "smartproxy_connections_per_second", .type = SP_METRIC_GAUGE,
     .help = "New connections per second over the last 10 seconds.", RATES(connections)},
    {.key = "http_requests_per_second", .name = "smartproxy_http_requests_per_second", .type = SP_METRIC_GAUGE,
     .help = "HTTP requests per second over the last 10 seconds.", RATES(http_requests)},
    {.key = "bytes_per_second_from_clients", .name = "smartproxy_throughput_bytes_per_second",
     .type = SP_METRIC_GAUGE, .help = "Bytes received per second over the last 10 seconds, by peer.",
     .labels = "from=\"client\"", RATES(from_clients)},
    {.key = "bytes_per_second_from_targets", .name = "smartproxy_throughput_bytes_per_second",
     .type = SP_METRIC_GAUGE, .labels = "from=\"target\"", RATES(from_targets)},
};

/* The main thread's own figures. */
static const sp_metric process_metrics[] = {
    {.key = "config_generation", .name = "smartproxy_config_generation", .type = SP_METRIC_GAUGE,
     .help = "The configuration generation serving new connections.", PROCESS(generation)},
    {.key = "reloads", .name = "smartproxy_config_reloads_total", .type = SP_METRIC_COUNTER,
     .help = "Configuration reloads, by result.", .labels = "result=\"ok\"", PROCESS(reloads)},
    {.key = "reloads_failed", .name = "smartproxy_config_reloads_total", .type = SP_METRIC_COUNTER,
     .labels = "result=\"failed\"", PROCESS(reloads_failed)},
    {.key = "workers", .name = "smartproxy_workers", .type = SP_METRIC_GAUGE, .help = "Worker threads.",
     PROCESS(workers)},
    {.key = "workers_stalled", .name = "smartproxy_workers_stalled", .type = SP_METRIC_GAUGE,
     .help = "Workers whose event loop has not run for too long.", PROCESS(workers_stalled)},
    {.key = "worker_stalls", .name = "smartproxy_worker_stalls_total", .type = SP_METRIC_COUNTER,
     .help = "Times a worker was found stalled.", PROCESS(worker_stalls)},
    {.key = "lua_budget_exceeded", .name = "smartproxy_lua_budget_exceeded_total", .type = SP_METRIC_COUNTER,
     .help = "Lua runs stopped for running longer than timeouts.lua_budget without yielding.",
     PROCESS(lua_budget_exceeded)},
    {.key = "lua_memory_errors", .name = "smartproxy_lua_memory_errors_total", .type = SP_METRIC_COUNTER,
     .help = "Lua runs that failed for want of memory under limits.lua_memory.", PROCESS(lua_memory_errors)},
    {.key = "uptime_seconds", .name = "smartproxy_uptime_seconds", .type = SP_METRIC_GAUGE,
     .help = "Seconds since start.", PROCESS(uptime_seconds), .real = true},
};

#define COUNT(table) (sizeof table / sizeof *table)

void sp_report_stats_json(const sp_report *r, sp_json *j)
{
    sp_counts c;
    sp_counters_sum(r->counters, r->nworkers, &c);
    sp_rates rates;
    sp_rate_window_rates(r->rates, &rates);
    sp_json_obj_open(j);
    sp_metrics_json(sp_counts_metrics, sp_counts_nmetrics, &c, j);
    sp_metrics_json(rate_metrics, COUNT(rate_metrics), &rates, j);
    sp_metrics_json(process_metrics, COUNT(process_metrics), &r->process, j);
    sp_nft_stats_json(r->nft, j);
    sp_certmgr_stats_json(r->certs, j);
    sp_json_obj_close(j);
}

/* name{route="...",extra}: a series of a per-route figure; either label may be absent. */
static void series(sp_buf *b, const char *name, const char *route, const char *extra)
{
    sp_buf_appendf(b, "%s", name);
    if (!route && !extra)
        return;
    sp_buf_append(b, "{", 1);
    if (route) {
        sp_buf_appendf(b, "route=\"");
        sp_buf_append_label(b, route);
        sp_buf_append(b, "\"", 1);
    }
    sp_buf_appendf(b, "%s%s}", route && extra ? "," : "", extra ? extra : "");
}

/* The _bucket (cumulative), _sum and _count series of one histogram. */
static void histogram(sp_buf *b, const char *name, const char *route, const double *bounds, int nbounds,
                      const uint64_t *buckets, double sum, int sum_digits)
{
    char series_name[128], le[40];
    uint64_t cum = 0;
    snprintf(series_name, sizeof series_name, "%s_bucket", name);
    for (int i = 0; i <= nbounds; i++) {
        cum += buckets[i];
        if (i < nbounds)
            snprintf(le, sizeof le, "le=\"%g\"", bounds[i]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        series(b, series_name, route, le);
        sp_buf_appendf(b, " %llu\n", (unsigned long long)cum);
    }
    snprintf(series_name, sizeof series_name, "%s_sum", name);
    series(b, series_name, route, NULL);
    sp_buf_appendf(b, " %.*f\n", sum_digits, sum);
    snprintf(series_name, sizeof series_name, "%s_count", name);
    series(b, series_name, route, NULL);
    sp_buf_appendf(b, " %llu\n", (unsigned long long)cum);
}

static void route_metric_active(void *ud, const sp_route_figures *f)
{
    series(ud, "smartproxy_route_connections_active", f->name, NULL);
    sp_buf_appendf(ud, " %llu\n", (unsigned long long)f->active);
}

static void route_metric_total(void *ud, const sp_route_figures *f)
{
    series(ud, "smartproxy_route_connections_total", f->name, NULL);
    sp_buf_appendf(ud, " %llu\n", (unsigned long long)f->total);
}

static void route_metric_bytes(void *ud, const sp_route_figures *f)
{
    series(ud, "smartproxy_route_received_bytes_total", f->name, "from=\"client\"");
    sp_buf_appendf(ud, " %llu\n", (unsigned long long)f->bytes_from_clients);
    series(ud, "smartproxy_route_received_bytes_total", f->name, "from=\"target\"");
    sp_buf_appendf(ud, " %llu\n", (unsigned long long)f->bytes_from_targets);
}

static void route_metric_http(void *ud, const sp_route_figures *f)
{
    for (int i = 1; i < 6; i++) {
        if (!f->http_responses[i])
            continue;
        char code[16];
        snprintf(code, sizeof code, "code=\"%s\"", sp_http_class_name(i));
        series(ud, "smartproxy_http_route_responses_total", f->name, code);
        sp_buf_appendf(ud, " %llu\n", (unsigned long long)f->http_responses[i]);
    }
}

static void route_metric_duration(void *ud, const sp_route_figures *f)
{
    uint64_t answered = 0;
    for (int i = 0; i <= SP_HTTP_DURATION_BUCKETS; i++)
        answered += f->http_duration_buckets[i];
    if (!answered)
        return; /* not an HTTP route, or nothing answered yet */
    histogram(ud, "smartproxy_http_request_duration_seconds", f->name, sp_http_duration_bounds,
              SP_HTTP_DURATION_BUCKETS, f->http_duration_buckets, (double)f->http_duration_sum_us / 1e6, 6);
}

static void top_client_ips(sp_ip_table *ips, sp_buf *b)
{
    sp_metric_head(b, "smartproxy_client_connections_active", SP_METRIC_GAUGE,
                   "Open connections of the busiest client addresses (top 10 only).");
    sp_ip_count top[TOP_CLIENT_IPS];
    size_t n = sp_ip_table_top(ips, top, TOP_CLIENT_IPS);
    for (size_t i = 0; i < n; i++) {
        char ip[SP_IP_STRLEN];
        sp_ip_format(&top[i].ip, ip, sizeof ip);
        sp_buf_appendf(b, "smartproxy_client_connections_active{client_ip=\"%s\"} %llu\n", ip,
                       (unsigned long long)top[i].active);
    }
}

static void route_figures(sp_route_limits *routes, sp_buf *b)
{
    sp_metric_head(b, "smartproxy_route_connections_active", SP_METRIC_GAUGE, "Open connections by route.");
    sp_route_limits_each(routes, route_metric_active, b);
    sp_metric_head(b, "smartproxy_route_connections_total", SP_METRIC_COUNTER, "Connections admitted by route.");
    sp_route_limits_each(routes, route_metric_total, b);
    sp_metric_head(b, "smartproxy_route_received_bytes_total", SP_METRIC_COUNTER,
                   "Bytes received by route and peer (counted when a connection ends).");
    sp_route_limits_each(routes, route_metric_bytes, b);
    sp_metric_head(b, "smartproxy_http_route_responses_total", SP_METRIC_COUNTER,
                   "HTTP responses sent to clients per route, by status class.");
    sp_route_limits_each(routes, route_metric_http, b);
    sp_metric_head(b, "smartproxy_http_request_duration_seconds", SP_METRIC_HISTOGRAM,
                   "From a complete request head to the end of its response, per route.");
    sp_route_limits_each(routes, route_metric_duration, b);
}

static void certificate_expiry(const sp_gen *g, sp_buf *b)
{
    sp_metric_head(b, "smartproxy_certificate_expiry_timestamp_seconds", SP_METRIC_GAUGE,
                   "When each terminating route's certificate expires (Unix time).");
    for (size_t i = 0; i < g->nroutes; i++) {
        const sp_route *r = &g->routes[i];
        time_t not_after;
        if (!sp_tls_route_cert_expiry(r, &not_after))
            continue;
        series(b, "smartproxy_certificate_expiry_timestamp_seconds", r->name, NULL);
        sp_buf_appendf(b, " %lld\n", (long long)not_after);
    }
}

void sp_report_metrics_text(const sp_report *r, sp_buf *b)
{
    sp_counts c;
    sp_counters_sum(r->counters, r->nworkers, &c);
    sp_rates rates;
    sp_rate_window_rates(r->rates, &rates);
    sp_metrics_text(sp_counts_metrics, sp_counts_nmetrics, &c, b);
    sp_metric_head(b, "smartproxy_upstream_connect_duration_seconds", SP_METRIC_HISTOGRAM,
                   "Time to establish the TCP connection to a target.");
    histogram(b, "smartproxy_upstream_connect_duration_seconds", NULL, sp_connect_bucket_bounds,
              SP_CONNECT_BUCKETS, c.connect_buckets, (double)c.connect_sum_ns / 1e9, 9);
    sp_metrics_text(rate_metrics, COUNT(rate_metrics), &rates, b);
    top_client_ips(r->ips, b);
    route_figures(r->routes, b);
    certificate_expiry(r->gen, b);
    sp_metrics_text(process_metrics, COUNT(process_metrics), &r->process, b);
    sp_nft_metrics_text(r->nft, b);
    sp_certmgr_metrics_text(r->certs, b);
}
