/* smartproxy: command line, signals, workers and reloads.
 *
 * The main thread owns the configuration: it loads and validates every generation,
 * hands the recorded sources to the workers, serves the admin endpoint and turns
 * signals into reloads and graceful stops. It never touches a proxied connection. */
#include <ctype.h>
#include <getopt.h>
#include <llhttp.h>
#include <luajit.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin.h"
#include "cert/live.h"
#include "cert/manager.h"
#include "config/describe.h"
#include "config/load.h"
#include "config/print.h"
#include "lua/budget.h"
#include "lua/memory.h"
#include "lua/shared.h"
#include "http/challenges.h"
#include "http/message.h"
#include "http/path_pattern.h"
#include "http/rate_limit.h"
#include "net/ip_table.h"
#include "net/listener.h"
#include "net/route_limits.h"
#include "nft/nft.h"
#include "route/router.h"
#include "tls/context.h"
#include "util/access_log.h"
#include "util/log.h"
#include "worker/worker.h"

#define MAX_WATCHED_DIRS 64
#define SHARED_CAPACITY 100000   /* entries of sp.shared */
#define RATE_WINDOW 10           /* seconds the rates in /metrics and /stats cover */

typedef struct app {
    const char *file;
    int cli_workers;              /* 0: not given */
    int cli_log_level;            /* -1: not given */
    int cli_log_json;             /* -1: not given */
    bool watch;

    uv_loop_t *loop;
    sp_gen *gen;                  /* main's copy of the current generation */
    sp_source_set *sources;
    uint64_t generation, reloads, reloads_failed;
    uint64_t started_ms;

    sp_process process;
    sp_worker *workers;
    sp_counters **counters;
    int nworkers, workers_exited;
    uv_async_t worker_exited;

    uv_signal_t sighup, sigterm, sigint, sigusr1;
    sp_admin *admin;
    sp_nft *nft;                  /* kernel forwarding (nftables routes) */
    sp_certmgr *certs;            /* certificate = "auto" (core/cert/) */
    uv_fs_event_t watchers[MAX_WATCHED_DIRS];
    int nwatchers;
    uv_timer_t watch_debounce;
    uv_timer_t sweep;             /* forgets idle per-IP entries */
    uv_timer_t sampler;           /* samples totals once a second for the rates */
    struct { uint64_t ms, total, from_clients, from_targets, http_requests; } samples[RATE_WINDOW + 1];
    unsigned nsamples, next_sample;
    bool stopping;
    uv_timer_t stop_deadline;     /* a worker that never stops does not hold the exit */
    bool *stalled;                /* per worker: its heartbeat is late (reported once) */
    uint64_t worker_stalls;       /* times a worker was found stalled */
} app;

static void usage(FILE *out)
{
    fputs("usage: smartproxy [options] [CONFIG]       CONFIG defaults to ./proxy.lua\n"
          "  -t, --check              load and validate CONFIG, print its ports and routes, exit\n"
          "  -w, --workers N          worker threads (default: config `workers`, else CPUs)\n"
          "      --watch              reload when CONFIG or a Lua file it requires changes\n"
          "  -l, --log-level LEVEL    error | warn | info | debug (default info)\n"
          "      --log-format FORMAT  text | json (default text)\n"
          "      --explain            with --port N [--client-ip IP] [--sni NAME] [--host H] [--path P]\n"
          "                           [--header Name:value]...: print the route that\n"
          "                           would match and why each other route does not\n"
          "      --nft-cleanup        remove the nftables tables (ip/ip6 smartproxy) a crashed\n"
          "                           process left behind, exit\n"
          "  -V, --version            print version and linked library versions\n"
          "  -h, --help\n"
          "signals: SIGHUP reloads; SIGTERM/SIGINT stop gracefully\n"
          "exit status: 0 clean stop or valid config, 1 configuration error, 2 runtime error\n",
          out);
}

static void print_version(void)
{
    printf("smartproxy %s\n", SP_VERSION);
    printf("  %s\n", LUAJIT_VERSION);
    printf("  libuv %s\n", uv_version_string());
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("  libnftnl %s, libmnl %s\n", SP_LIBNFTNL_VERSION, SP_LIBMNL_VERSION);
}

/* Settings from the command line win over the file's. */
static void apply_log_settings(app *a, const sp_gen *g)
{
    int level = a->cli_log_level >= 0 ? a->cli_log_level
              : g->settings.log_level >= 0 ? g->settings.log_level : SP_LOG_INFO;
    int json = a->cli_log_json >= 0 ? a->cli_log_json : g->settings.log_json == 1;
    sp_log_set_level((sp_log_level)level);
    sp_log_set_json(json);
}

/* ---- admin hooks ---- */

typedef struct rates { double connections, from_clients, from_targets, http_requests; } rates;

/* A worker whose loop has not run for this long is reported: Lua code the budget could
 * not stop (a loop LuaJIT compiled, with limits.lua_jit) or a call that blocks. */
static uint64_t stall_threshold_ms(const sp_gen *g)
{
    uint64_t budget = g->settings.timeouts.lua_budget;
    return (budget ? budget : 8000) + 2000;
}

static int stalled_workers(const app *a)
{
    int n = 0;
    for (int i = 0; i < a->nworkers; i++)
        n += a->stalled[i];
    return n;
}

static void check_heartbeats(app *a)
{
    uint64_t threshold = stall_threshold_ms(a->gen);
    for (int i = 0; i < a->nworkers; i++) {
        sp_worker *w = &a->workers[i];
        if (atomic_load(&w->exited))
            continue;
        uint64_t silent = sp_worker_silence_ms(w);
        if (silent >= threshold && !a->stalled[i]) {
            a->stalled[i] = true;
            a->worker_stalls++;
            sp_error("%s has not run its event loop for %llu ms: its connections wait (Lua code that "
                     "timeouts.lua_budget cannot stop, such as a compiled loop with limits.lua_jit, or a "
                     "blocking call)", w->name, (unsigned long long)silent);
        } else if (silent < threshold && a->stalled[i]) {
            a->stalled[i] = false;
            sp_warn("%s runs again", w->name);
        }
    }
}

static void on_sample(uv_timer_t *t)
{
    app *a = t->data;
    sp_counts c;
    sp_counters_sum(a->counters, a->nworkers, &c);
    unsigned i = a->next_sample;
    a->samples[i].ms = uv_now(a->loop);
    a->samples[i].total = c.total;
    a->samples[i].from_clients = c.bytes_from_clients;
    a->samples[i].from_targets = c.bytes_from_targets;
    a->samples[i].http_requests = c.http_requests;
    a->next_sample = (i + 1) % (RATE_WINDOW + 1);
    if (a->nsamples < RATE_WINDOW + 1)
        a->nsamples++;
    check_heartbeats(a);
}

/* Rates between the oldest and the newest sample of the window. */
static void current_rates(const app *a, rates *r)
{
    *r = (rates){0};
    if (a->nsamples < 2)
        return;
    unsigned newest = (a->next_sample + RATE_WINDOW) % (RATE_WINDOW + 1);
    unsigned oldest = a->nsamples < RATE_WINDOW + 1 ? 0 : a->next_sample;
    double secs = (double)(a->samples[newest].ms - a->samples[oldest].ms) / 1000.0;
    if (secs <= 0)
        return;
    r->connections = (double)(a->samples[newest].total - a->samples[oldest].total) / secs;
    r->from_clients = (double)(a->samples[newest].from_clients - a->samples[oldest].from_clients) / secs;
    r->from_targets = (double)(a->samples[newest].from_targets - a->samples[oldest].from_targets) / secs;
    r->http_requests = (double)(a->samples[newest].http_requests - a->samples[oldest].http_requests) / secs;
}



static void stats_json(void *ud, sp_json *j)
{
    app *a = ud;
    sp_counts c;
    sp_counters_sum(a->counters, a->nworkers, &c);
    sp_json_obj_open(j);
    sp_json_key(j, "active_connections");
    sp_json_uint(j, c.active);
    sp_json_key(j, "total_connections");
    sp_json_uint(j, c.total);
    sp_json_key(j, "by_state");
    sp_json_obj_open(j);
    for (int i = 0; i < SP_STATE_COUNT; i++) {
        sp_json_key(j, sp_state_name((sp_conn_state)i));
        sp_json_uint(j, c.by_state[i]);
    }
    sp_json_obj_close(j);
    sp_json_key(j, "terminations");
    sp_json_obj_open(j);
    for (int i = 0; i < SP_END_COUNT; i++) {
        sp_json_key(j, sp_end_reason_name((sp_end_reason)i));
        sp_json_uint(j, c.ended[i]);
    }
    sp_json_obj_close(j);
    sp_json_key(j, "refused");
    sp_json_obj_open(j);
    for (int i = 0; i < SP_REFUSED_COUNT; i++) {
        sp_json_key(j, sp_refused_name((sp_refused_reason)i));
        sp_json_uint(j, c.refused[i]);
    }
    sp_json_obj_close(j);
    sp_json_key(j, "accept_pauses");
    sp_json_uint(j, c.accept_pauses);
    sp_json_key(j, "tls");
    sp_json_obj_open(j);
    sp_json_key(j, "handshakes");
    sp_json_uint(j, c.tls_handshakes);
    sp_json_key(j, "resumed");
    sp_json_uint(j, c.tls_resumed);
    sp_json_key(j, "failures");
    sp_json_obj_open(j);
    for (int i = 0; i < SP_TLSFAIL_COUNT; i++) {
        sp_json_key(j, sp_tls_failure_name((sp_tls_failure)i));
        sp_json_uint(j, c.tls_failures[i]);
    }
    sp_json_obj_close(j);
    sp_json_key(j, "upstream_failures");
    sp_json_obj_open(j);
    for (int i = 0; i < SP_TLSFAIL_COUNT; i++) {
        sp_json_key(j, sp_tls_failure_name((sp_tls_failure)i));
        sp_json_uint(j, c.upstream_tls_failures[i]);
    }
    sp_json_obj_close(j);
    sp_json_obj_close(j);
    sp_json_key(j, "proxy_protocol");
    sp_json_obj_open(j);
    sp_json_key(j, "accepted");
    sp_json_uint(j, c.proxy_headers_accepted);
    sp_json_key(j, "rejected");
    sp_json_uint(j, c.proxy_headers_rejected);
    sp_json_obj_close(j);
    sp_json_key(j, "http");
    sp_json_obj_open(j);
    sp_json_key(j, "requests");
    sp_json_uint(j, c.http_requests);
    sp_json_key(j, "responses");
    sp_json_obj_open(j);
    for (int i = 1; i < 6; i++) {
        char k[4] = {(char)('0' + i), 'x', 'x', 0};
        sp_json_key(j, k);
        sp_json_uint(j, c.http_responses[i]);
    }
    sp_json_obj_close(j);
    sp_json_key(j, "local");
    sp_json_obj_open(j);
    for (int i = 0; i < SP_HTTP_LOCAL_COUNT; i++) {
        sp_json_key(j, sp_http_local_name((sp_http_local)i));
        sp_json_uint(j, c.http_local[i]);
    }
    sp_json_obj_close(j);
    sp_json_key(j, "upstream_connections_opened");
    sp_json_uint(j, c.http_upstream_new);
    sp_json_key(j, "upstream_connections_reused");
    sp_json_uint(j, c.http_upstream_reused);
    sp_json_key(j, "upstream_retries");
    sp_json_uint(j, c.http_upstream_retried);
    sp_json_obj_close(j);
    sp_json_key(j, "bytes_from_clients");
    sp_json_uint(j, c.bytes_from_clients);
    sp_json_key(j, "bytes_from_targets");
    sp_json_uint(j, c.bytes_from_targets);
    sp_json_key(j, "bytes_to_clients");
    sp_json_uint(j, c.bytes_to_clients);
    sp_json_key(j, "bytes_to_targets");
    sp_json_uint(j, c.bytes_to_targets);
    rates r;
    current_rates(a, &r);
    sp_json_key(j, "http_requests_per_second");
    sp_json_double(j, r.http_requests);
    sp_json_key(j, "connections_per_second");
    sp_json_double(j, r.connections);
    sp_json_key(j, "bytes_per_second_from_clients");
    sp_json_double(j, r.from_clients);
    sp_json_key(j, "bytes_per_second_from_targets");
    sp_json_double(j, r.from_targets);
    sp_json_key(j, "config_generation");
    sp_json_uint(j, a->generation);
    sp_json_key(j, "reloads");
    sp_json_uint(j, a->reloads);
    sp_json_key(j, "reloads_failed");
    sp_json_uint(j, a->reloads_failed);
    sp_json_key(j, "workers");
    sp_json_int(j, a->nworkers);
    sp_json_key(j, "workers_stalled");
    sp_json_int(j, stalled_workers(a));
    sp_json_key(j, "worker_stalls");
    sp_json_uint(j, a->worker_stalls);
    sp_json_key(j, "lua_budget_exceeded");
    sp_json_uint(j, sp_lua_budget_exceeded());
    sp_json_key(j, "lua_memory_errors");
    sp_json_uint(j, sp_lua_memory_errors());
    sp_json_key(j, "uptime_seconds");
    sp_json_double(j, (double)(uv_now(a->loop) - a->started_ms) / 1000.0);
    sp_nft_stats_json(a->nft, j);
    sp_certmgr_stats_json(a->certs, j);
    sp_json_obj_close(j);
}

/* Prometheus text format: names smartproxy_*, base units, _total for counters. */
static void metric_head(sp_buf *b, const char *name, const char *type, const char *help)
{
    sp_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define TOP_CLIENT_IPS 10


static void route_metric_active(void *ud, const sp_route_figures *f)
{
    sp_buf_appendf(ud, "%s", "smartproxy_route_connections_active{route=\"");
    sp_buf_append_label(ud, f->name);
    sp_buf_appendf(ud, "\"} %llu\n", (unsigned long long)f->active);
}

static void route_metric_total(void *ud, const sp_route_figures *f)
{
    sp_buf_appendf(ud, "%s", "smartproxy_route_connections_total{route=\"");
    sp_buf_append_label(ud, f->name);
    sp_buf_appendf(ud, "\"} %llu\n", (unsigned long long)f->total);
}

static void route_metric_bytes(void *ud, const sp_route_figures *f)
{
    sp_buf_appendf(ud, "%s", "smartproxy_route_received_bytes_total{route=\"");
    sp_buf_append_label(ud, f->name);
    sp_buf_appendf(ud, "\",from=\"client\"} %llu\n", (unsigned long long)f->bytes_from_clients);
    sp_buf_appendf(ud, "%s", "smartproxy_route_received_bytes_total{route=\"");
    sp_buf_append_label(ud, f->name);
    sp_buf_appendf(ud, "\",from=\"target\"} %llu\n", (unsigned long long)f->bytes_from_targets);
}

static void route_metric_http(void *ud, const sp_route_figures *f)
{
    for (int i = 1; i < 6; i++) {
        if (!f->http_responses[i])
            continue;
        sp_buf_appendf(ud, "%s", "smartproxy_http_route_responses_total{route=\"");
        sp_buf_append_label(ud, f->name);
        sp_buf_appendf(ud, "\",code=\"%dxx\"} %llu\n", i, (unsigned long long)f->http_responses[i]);
    }
}

static void route_metric_duration(void *ud, const sp_route_figures *f)
{
    uint64_t cum = 0;
    for (int i = 0; i <= SP_HTTP_DURATION_BUCKETS; i++)
        cum += f->http_duration_buckets[i];
    if (!cum)
        return; /* not an HTTP route, or nothing answered yet */
    uint64_t n = cum;
    cum = 0;
    for (int i = 0; i <= SP_HTTP_DURATION_BUCKETS; i++) {
        cum += f->http_duration_buckets[i];
        sp_buf_appendf(ud, "%s", "smartproxy_http_request_duration_seconds_bucket{route=\"");
        sp_buf_append_label(ud, f->name);
        if (i < SP_HTTP_DURATION_BUCKETS)
            sp_buf_appendf(ud, "\",le=\"%g\"} %llu\n", sp_http_duration_bounds[i], (unsigned long long)cum);
        else
            sp_buf_appendf(ud, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sp_buf_appendf(ud, "%s", "smartproxy_http_request_duration_seconds_sum{route=\"");
    sp_buf_append_label(ud, f->name);
    sp_buf_appendf(ud, "\"} %.6f\n", (double)f->http_duration_sum_us / 1e6);
    sp_buf_appendf(ud, "%s", "smartproxy_http_request_duration_seconds_count{route=\"");
    sp_buf_append_label(ud, f->name);
    sp_buf_appendf(ud, "\"} %llu\n", (unsigned long long)n);
}

static void metrics_text(void *ud, sp_buf *b)
{
    app *a = ud;
    sp_counts c;
    sp_counters_sum(a->counters, a->nworkers, &c);
    metric_head(b, "smartproxy_connections_active", "gauge", "Proxied connections open now.");
    sp_buf_appendf(b, "smartproxy_connections_active %llu\n", (unsigned long long)c.active);
    metric_head(b, "smartproxy_connections_state", "gauge", "Open connections by lifecycle state.");
    for (int i = 0; i < SP_STATE_COUNT; i++)
        sp_buf_appendf(b, "smartproxy_connections_state{state=\"%s\"} %llu\n", sp_state_name((sp_conn_state)i),
                       (unsigned long long)c.by_state[i]);
    metric_head(b, "smartproxy_connections_total", "counter", "Connections accepted.");
    sp_buf_appendf(b, "smartproxy_connections_total %llu\n", (unsigned long long)c.total);
    metric_head(b, "smartproxy_connections_ended_total", "counter", "Connections ended, by termination reason.");
    for (int i = 0; i < SP_END_COUNT; i++)
        sp_buf_appendf(b, "smartproxy_connections_ended_total{reason=\"%s\"} %llu\n",
                       sp_end_reason_name((sp_end_reason)i), (unsigned long long)c.ended[i]);
    metric_head(b, "smartproxy_connections_refused_total", "counter", "Connections refused by a limit.");
    for (int i = 0; i < SP_REFUSED_COUNT; i++)
        sp_buf_appendf(b, "smartproxy_connections_refused_total{reason=\"%s\"} %llu\n",
                       sp_refused_name((sp_refused_reason)i), (unsigned long long)c.refused[i]);
    metric_head(b, "smartproxy_accept_pauses_total", "counter",
                "Times a listener paused accepting because accept failed for want of file "
                "descriptors or memory.");
    sp_buf_appendf(b, "smartproxy_accept_pauses_total %llu\n", (unsigned long long)c.accept_pauses);
    metric_head(b, "smartproxy_received_bytes_total", "counter", "Bytes received, by peer.");
    sp_buf_appendf(b, "smartproxy_received_bytes_total{from=\"client\"} %llu\n", (unsigned long long)c.bytes_from_clients);
    sp_buf_appendf(b, "smartproxy_received_bytes_total{from=\"target\"} %llu\n", (unsigned long long)c.bytes_from_targets);
    metric_head(b, "smartproxy_sent_bytes_total", "counter", "Bytes sent, by peer (whatever produced them: pipe, HTTP or Lua).");
    sp_buf_appendf(b, "smartproxy_sent_bytes_total{to=\"client\"} %llu\n", (unsigned long long)c.bytes_to_clients);
    sp_buf_appendf(b, "smartproxy_sent_bytes_total{to=\"target\"} %llu\n", (unsigned long long)c.bytes_to_targets);
    metric_head(b, "smartproxy_tls_handshakes_total", "counter", "Client TLS handshakes completed.");
    sp_buf_appendf(b, "smartproxy_tls_handshakes_total %llu\n", (unsigned long long)c.tls_handshakes);
    metric_head(b, "smartproxy_tls_resumed_total", "counter", "Client TLS handshakes that resumed a session.");
    sp_buf_appendf(b, "smartproxy_tls_resumed_total %llu\n", (unsigned long long)c.tls_resumed);
    metric_head(b, "smartproxy_tls_handshake_failures_total", "counter", "TLS handshakes failed, by side and reason.");
    for (int i = 0; i < SP_TLSFAIL_COUNT; i++) {
        sp_buf_appendf(b, "smartproxy_tls_handshake_failures_total{side=\"client\",reason=\"%s\"} %llu\n",
                       sp_tls_failure_name((sp_tls_failure)i), (unsigned long long)c.tls_failures[i]);
        sp_buf_appendf(b, "smartproxy_tls_handshake_failures_total{side=\"upstream\",reason=\"%s\"} %llu\n",
                       sp_tls_failure_name((sp_tls_failure)i), (unsigned long long)c.upstream_tls_failures[i]);
    }
    metric_head(b, "smartproxy_proxy_protocol_headers_total", "counter", "PROXY headers from trusted senders.");
    sp_buf_appendf(b, "smartproxy_proxy_protocol_headers_total{result=\"accepted\"} %llu\n",
                   (unsigned long long)c.proxy_headers_accepted);
    sp_buf_appendf(b, "smartproxy_proxy_protocol_headers_total{result=\"rejected\"} %llu\n",
                   (unsigned long long)c.proxy_headers_rejected);
    metric_head(b, "smartproxy_http_requests_total", "counter", "HTTP requests parsed (routed or answered).");
    sp_buf_appendf(b, "smartproxy_http_requests_total %llu\n", (unsigned long long)c.http_requests);
    metric_head(b, "smartproxy_http_responses_total", "counter", "HTTP responses sent to clients, by status class.");
    for (int i = 1; i < 6; i++)
        sp_buf_appendf(b, "smartproxy_http_responses_total{code=\"%dxx\"} %llu\n", i,
                       (unsigned long long)c.http_responses[i]);
    metric_head(b, "smartproxy_http_local_responses_total", "counter",
                "HTTP answers given by the proxy itself, by cause.");
    for (int i = 0; i < SP_HTTP_LOCAL_COUNT; i++)
        sp_buf_appendf(b, "smartproxy_http_local_responses_total{reason=\"%s\"} %llu\n",
                       sp_http_local_name((sp_http_local)i), (unsigned long long)c.http_local[i]);
    metric_head(b, "smartproxy_http_upstream_connections_total", "counter",
                "Upstream connections for HTTP requests: opened, reused from keep-alive, retried.");
    sp_buf_appendf(b, "smartproxy_http_upstream_connections_total{kind=\"opened\"} %llu\n",
                   (unsigned long long)c.http_upstream_new);
    sp_buf_appendf(b, "smartproxy_http_upstream_connections_total{kind=\"reused\"} %llu\n",
                   (unsigned long long)c.http_upstream_reused);
    sp_buf_appendf(b, "smartproxy_http_upstream_connections_total{kind=\"retried\"} %llu\n",
                   (unsigned long long)c.http_upstream_retried);
    metric_head(b, "smartproxy_upstream_connect_duration_seconds", "histogram",
                "Time to establish the TCP connection to a target.");
    uint64_t cum = 0;
    for (int i = 0; i <= SP_CONNECT_BUCKETS; i++) {
        cum += c.connect_buckets[i];
        if (i < SP_CONNECT_BUCKETS)
            sp_buf_appendf(b, "smartproxy_upstream_connect_duration_seconds_bucket{le=\"%g\"} %llu\n",
                           sp_connect_bucket_bounds[i], (unsigned long long)cum);
        else
            sp_buf_appendf(b, "smartproxy_upstream_connect_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                           (unsigned long long)cum);
    }
    sp_buf_appendf(b, "smartproxy_upstream_connect_duration_seconds_sum %.9f\n", (double)c.connect_sum_ns / 1e9);
    sp_buf_appendf(b, "smartproxy_upstream_connect_duration_seconds_count %llu\n", (unsigned long long)cum);
    rates rt;
    current_rates(a, &rt);
    metric_head(b, "smartproxy_connections_per_second", "gauge", "New connections per second over the last 10 seconds.");
    sp_buf_appendf(b, "smartproxy_connections_per_second %.3f\n", rt.connections);
    metric_head(b, "smartproxy_http_requests_per_second", "gauge", "HTTP requests per second over the last 10 seconds.");
    sp_buf_appendf(b, "smartproxy_http_requests_per_second %.3f\n", rt.http_requests);
    metric_head(b, "smartproxy_throughput_bytes_per_second", "gauge",
                "Bytes received per second over the last 10 seconds, by peer.");
    sp_buf_appendf(b, "smartproxy_throughput_bytes_per_second{from=\"client\"} %.3f\n", rt.from_clients);
    sp_buf_appendf(b, "smartproxy_throughput_bytes_per_second{from=\"target\"} %.3f\n", rt.from_targets);
    metric_head(b, "smartproxy_client_connections_active", "gauge",
                "Open connections of the busiest client addresses (top 10 only).");
    sp_ip_count top[TOP_CLIENT_IPS];
    size_t n = sp_ip_table_top(a->process.ips, top, TOP_CLIENT_IPS);
    for (size_t i = 0; i < n; i++) {
        char ip[SP_IP_STRLEN];
        sp_ip_format(&top[i].ip, ip, sizeof ip);
        sp_buf_appendf(b, "smartproxy_client_connections_active{client_ip=\"%s\"} %llu\n", ip,
                       (unsigned long long)top[i].active);
    }
    metric_head(b, "smartproxy_route_connections_active", "gauge", "Open connections by route.");
    sp_route_limits_each(a->process.routes, route_metric_active, b);
    metric_head(b, "smartproxy_route_connections_total", "counter", "Connections admitted by route.");
    sp_route_limits_each(a->process.routes, route_metric_total, b);
    metric_head(b, "smartproxy_route_received_bytes_total", "counter",
                "Bytes received by route and peer (counted when a connection ends).");
    sp_route_limits_each(a->process.routes, route_metric_bytes, b);
    metric_head(b, "smartproxy_http_route_responses_total", "counter",
                "HTTP responses sent to clients per route, by status class.");
    sp_route_limits_each(a->process.routes, route_metric_http, b);
    metric_head(b, "smartproxy_http_request_duration_seconds", "histogram",
                "From a complete request head to the end of its response, per route.");
    sp_route_limits_each(a->process.routes, route_metric_duration, b);
    metric_head(b, "smartproxy_certificate_expiry_timestamp_seconds", "gauge",
                "When each terminating route's certificate expires (Unix time).");
    for (size_t i = 0; i < a->gen->nroutes; i++) {
        const sp_route *r = &a->gen->routes[i];
        X509 *x = r->tls.server_ctx ? SSL_CTX_get0_certificate(r->tls.server_ctx) : NULL;
        struct tm tm;
        if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
            continue;
        sp_buf_appendf(b, "%s", "smartproxy_certificate_expiry_timestamp_seconds{route=\"");
        sp_buf_append_label(b, r->name);
        sp_buf_appendf(b, "\"} %lld\n", (long long)timegm(&tm));
    }
    metric_head(b, "smartproxy_config_generation", "gauge", "The configuration generation serving new connections.");
    sp_buf_appendf(b, "smartproxy_config_generation %llu\n", (unsigned long long)a->generation);
    metric_head(b, "smartproxy_config_reloads_total", "counter", "Configuration reloads, by result.");
    sp_buf_appendf(b, "smartproxy_config_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)a->reloads);
    sp_buf_appendf(b, "smartproxy_config_reloads_total{result=\"failed\"} %llu\n", (unsigned long long)a->reloads_failed);
    metric_head(b, "smartproxy_workers", "gauge", "Worker threads.");
    sp_buf_appendf(b, "smartproxy_workers %d\n", a->nworkers);
    metric_head(b, "smartproxy_workers_stalled", "gauge", "Workers whose event loop has not run for too long.");
    sp_buf_appendf(b, "smartproxy_workers_stalled %d\n", stalled_workers(a));
    metric_head(b, "smartproxy_worker_stalls_total", "counter", "Times a worker was found stalled.");
    sp_buf_appendf(b, "smartproxy_worker_stalls_total %llu\n", (unsigned long long)a->worker_stalls);
    metric_head(b, "smartproxy_lua_budget_exceeded_total", "counter",
                "Lua runs stopped for running longer than timeouts.lua_budget without yielding.");
    sp_buf_appendf(b, "smartproxy_lua_budget_exceeded_total %llu\n", (unsigned long long)sp_lua_budget_exceeded());
    metric_head(b, "smartproxy_lua_memory_errors_total", "counter",
                "Lua runs that failed for want of memory under limits.lua_memory.");
    sp_buf_appendf(b, "smartproxy_lua_memory_errors_total %llu\n", (unsigned long long)sp_lua_memory_errors());
    metric_head(b, "smartproxy_uptime_seconds", "gauge", "Seconds since start.");
    sp_buf_appendf(b, "smartproxy_uptime_seconds %.3f\n", (double)(uv_now(a->loop) - a->started_ms) / 1000.0);
    sp_nft_metrics_text(a->nft, b);
    sp_certmgr_metrics_text(a->certs, b);
}

static void admin_access(void *ud, sp_admin_access *out)
{
    const sp_settings *s = &((app *)ud)->gen->settings;
    *out = (sp_admin_access){.token = s->metrics_token, .hosts = s->metrics_hosts, .nhosts = s->nmetrics_hosts};
}

static void routes_json(void *ud, sp_json *j)
{
    app *a = ud;
    const sp_gen *g = a->gen;
    sp_json_obj_open(j);
    sp_json_key(j, "config_generation");
    sp_json_uint(j, a->generation);
    sp_json_key(j, "routes");
    sp_json_arr_open(j);
    for (size_t i = 0; i < g->nroutes; i++) {
        sp_route_desc d;
        sp_route_describe(&g->routes[i], &d);
        sp_json_obj_open(j);
        sp_json_key(j, "name");
        sp_json_str(j, d.name);
        sp_json_key(j, "index");
        sp_json_int(j, d.index);
        sp_json_key(j, "priority");
        sp_json_int(j, d.priority);
        sp_json_key(j, "ports");
        sp_json_arr_open(j);
        for (size_t k = 0; k < d.nports; k++) {
            sp_json_arr_open(j);
            sp_json_int(j, d.ports[k].from);
            sp_json_int(j, d.ports[k].to);
            sp_json_arr_close(j);
        }
        sp_json_arr_close(j);
        sp_json_key(j, "action");
        sp_json_str(j, d.action == SP_ACTION_BLOCK ? "block" : "forward");
        if (d.kernel) {
            sp_json_key(j, "forwarding_engine");
            sp_json_str(j, "nftables");
        }
        sp_json_key(j, "targets");
        sp_json_arr_open(j);
        for (size_t k = 0; k < d.ntargets; k++) {
            sp_target_desc t;
            sp_target_describe(&d.targets[k], &t);
            sp_json_obj_open(j);
            sp_json_key(j, "host");
            sp_json_str(j, t.host);
            sp_json_key(j, "port");
            if (t.port_kind == SP_PORT_FIXED)
                sp_json_int(j, t.port);
            else
                sp_json_str(j, t.port_word);
            sp_json_obj_close(j);
        }
        sp_json_arr_close(j);
        sp_json_obj_close(j);
    }
    sp_json_arr_close(j);
    sp_json_obj_close(j);
}

/* ---- reload ---- */

static void watch_sources(app *a);

static bool listens_on(const sp_gen *g, const char *addr, uint16_t port)
{
    if (!g || !sp_gen_port(g, port))
        return false;
    for (size_t i = 0; i < g->settings.nlisten_addresses; i++)
        if (strcmp(g->settings.listen_addresses[i], addr) == 0)
            return true;
    return false;
}

/* A port the new generation adds must be bindable, or the reload is refused whole. */
static int check_new_ports(const sp_gen *old, const sp_gen *g, char *err, size_t errlen)
{
    for (size_t a = 0; a < g->settings.nlisten_addresses; a++)
        for (size_t p = 0; p < g->nports; p++) {
            const char *addr = g->settings.listen_addresses[a];
            uint16_t port = g->ports[p].port;
            if (listens_on(old, addr, port))
                continue;
            int fd = sp_bind_tcp(addr, port, true);
            if (fd < 0) {
                snprintf(err, errlen, "cannot listen on %s port %u: %s", addr, port, strerror(-fd));
                return -1;
            }
            close(fd);
        }
    return 0;
}

/* The admin endpoint keeps the address it started on. A reload naming another one (or
 * none) is refused rather than ignored: its token and hosts would be checked against a
 * place the endpoint is not (a token dropped for 127.0.0.1 while it listens on 0.0.0.0). */
static int check_admin_listen(const app *a, const sp_gen *g, char *err, size_t errlen)
{
    const char *now = a->gen->settings.metrics_listen, *next = g->settings.metrics_listen;
    if (now == next || (now && next && strcmp(now, next) == 0))
        return 0;
    snprintf(err, errlen, "%s: metrics.listen: the admin endpoint stays %s%s%s until a restart; "
             "a reload cannot change it to %s%s%s", a->file,
             now ? "on \"" : "off", now ? now : "", now ? "\"" : "",
             next ? "\"" : "none", next ? next : "", next ? "\"" : "");
    return -1;
}

/* Loads a new generation, from the file (routes_text NULL) or from the current sources
 * with the routes sp.update_routes sent; on success every worker gets it. */
static int load_and_install(app *a, const char *routes_text, char *err, size_t errlen)
{
    if (a->stopping) {
        snprintf(err, errlen, "shutting down");
        return -1;
    }
    sp_source_set *sources = NULL;
    sp_gen *g = routes_text ? sp_config_load_routes(a->file, a->sources, routes_text, &sources, err, errlen)
                            : sp_config_load(a->file, NULL, &sources, err, errlen);
    if (g && (check_new_ports(a->gen, g, err, errlen) != 0 || check_admin_listen(a, g, err, errlen) != 0)) {
        sp_gen_unref(g);
        sp_source_set_unref(sources);
        g = NULL;
    }
    if (g && sp_access_log_open(g->settings.access_log, err, errlen) != 0) {
        sp_gen_unref(g);
        sp_source_set_unref(sources);
        g = NULL;
    }
    sp_nft_ruleset *kernel = NULL;  /* checked, then installed atomically before any worker sees g */
    if (g && (sp_nft_prepare(g, &kernel, err, errlen) != 0 || sp_nft_install(a->nft, kernel, err, errlen) != 0)) {
        sp_nft_ruleset_destroy(kernel);
        sp_gen_unref(g);
        sp_source_set_unref(sources);
        g = NULL;
    }
    if (!g) {
        a->reloads_failed++;
        sp_error("reload rejected, generation %llu keeps serving: %s",
                 (unsigned long long)a->generation, err);
        return -1;
    }
    a->generation++;
    a->reloads++;
    g->number = a->generation;
    for (int i = 0; i < a->nworkers; i++)
        sp_worker_post_generation(&a->workers[i], sources, a->generation);
    sp_gen_unref(a->gen);
    a->gen = g;
    sp_source_set_unref(a->sources);
    a->sources = sources;
    apply_log_settings(a, g);
    sp_config_load_bounds(g->settings.timeouts.config_load, g->settings.lua_memory);
    sp_certmgr_sync(a->certs, g);
    if (a->watch)
        watch_sources(a);
    sp_info("%s: generation %llu, %zu route(s) on %zu port(s)",
            routes_text ? "routes updated from Lua" : "configuration reloaded",
            (unsigned long long)a->generation, g->nroutes, g->nports);
    return 0;
}

static int do_reload(void *ud, char *err, size_t errlen)
{
    return load_and_install(ud, NULL, err, errlen);
}

static void on_routes_update(uv_async_t *h)
{
    app *a = h->data;
    sp_routes_mailbox *mb = a->process.updates;
    uv_mutex_lock(&mb->lock);
    char *text = mb->pending;
    mb->pending = NULL;
    uv_mutex_unlock(&mb->lock);
    /* every worker may send the same set (a timer runs in each): apply it once */
    if (text && !(a->sources->routes_override && strcmp(a->sources->routes_override, text) == 0)) {
        char err[1024];
        load_and_install(a, text, err, sizeof err);
    }
    free(text);
}

static void on_sigusr1(uv_signal_t *s, int signum)
{
    char err[512];
    if (sp_access_log_reopen(err, sizeof err) != 0)
        sp_error("SIGUSR1: %s", err);
    else
        sp_info("SIGUSR1: access log reopened");
}

static void on_sighup(uv_signal_t *s, int signum)
{
    char err[1024];
    sp_info("SIGHUP: reloading %s", ((app *)s->data)->file);
    do_reload(s->data, err, sizeof err);
}

/* ---- --watch ---- */

static void on_debounced(uv_timer_t *t)
{
    char err[1024];
    app *a = t->data;
    sp_info("configuration changed on disk: reloading %s", a->file);
    do_reload(a, err, sizeof err);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    app *a = h->data;
    if (status < 0 || !filename)
        return;
    char dir[1024];
    size_t dl = sizeof dir;
    if (uv_fs_event_getpath(h, dir, &dl) != 0)
        return;
    /* only files the configuration actually loaded count, e.g. not editor swap files */
    for (size_t i = 0; i < a->sources->n; i++) {
        const char *p = a->sources->items[i].path;
        const char *slash = strrchr(p, '/');
        const char *base = slash ? slash + 1 : p;
        size_t plen = slash ? (size_t)(slash - p) : 1;
        const char *pdir = slash ? p : ".";
        if (strcmp(base, filename) == 0 && plen == dl && strncmp(pdir, dir, dl) == 0) {
            uv_timer_start(&a->watch_debounce, on_debounced, 150, 0);
            return;
        }
    }
}

/* Watches the folders of every recorded source (editors replace files by renaming, which
 * a watch on the file itself would lose). */
static void watch_sources(app *a)
{
    for (int i = 0; i < a->nwatchers; i++)
        uv_close((uv_handle_t *)&a->watchers[i], NULL);
    /* handles are reused only after their close callbacks ran: run them now */
    uv_run(a->loop, UV_RUN_NOWAIT);
    a->nwatchers = 0;
    for (size_t i = 0; i < a->sources->n && a->nwatchers < MAX_WATCHED_DIRS; i++) {
        const char *p = a->sources->items[i].path;
        const char *slash = strrchr(p, '/');
        char dir[1024];
        if (slash)
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - p), p);
        else
            snprintf(dir, sizeof dir, ".");
        bool seen = false;
        for (int k = 0; k < a->nwatchers && !seen; k++) {
            char wd[1024];
            size_t wl = sizeof wd;
            seen = uv_fs_event_getpath(&a->watchers[k], wd, &wl) == 0 && strcmp(wd, dir) == 0;
        }
        if (seen)
            continue;
        uv_fs_event_t *h = &a->watchers[a->nwatchers];
        uv_fs_event_init(a->loop, h);
        h->data = a;
        if (uv_fs_event_start(h, on_fs_event, dir, 0) == 0)
            a->nwatchers++;
        else
            uv_close((uv_handle_t *)h, NULL);
    }
}

/* ---- stop ---- */

static void close_main_handles(app *a)
{
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigusr1, NULL);
    uv_close((uv_handle_t *)&a->worker_exited, NULL);
    uv_close((uv_handle_t *)&a->watch_debounce, NULL);
    uv_close((uv_handle_t *)&a->sweep, NULL);
    uv_close((uv_handle_t *)&a->sampler, NULL);
    uv_close((uv_handle_t *)&a->stop_deadline, NULL);
    for (int i = 0; i < a->nwatchers; i++)
        uv_close((uv_handle_t *)&a->watchers[i], NULL);
    a->nwatchers = 0;
    sp_admin_stop(a->admin);
    a->admin = NULL;
    sp_certmgr_stop(a->certs);
    uv_close((uv_handle_t *)&a->process.updates->wake, NULL);
}

static void on_worker_exited(uv_async_t *h)
{
    app *a = h->data;
    int exited = 0;
    for (int i = 0; i < a->nworkers; i++)
        exited += atomic_load(&a->workers[i].exited);
    if (exited == a->nworkers && a->stopping)
        close_main_handles(a);
}

/* graceful_shutdown is over and a worker has still not stopped: its thread is stuck
 * (see check_heartbeats) and cannot be joined, so the process ends without it. */
static void on_stop_deadline(uv_timer_t *t)
{
    app *a = t->data;
    for (int i = 0; i < a->nworkers; i++)
        if (!atomic_load(&a->workers[i].exited))
            sp_error("%s did not stop within timeouts.graceful_shutdown (silent for %llu ms); exiting "
                     "without it", a->workers[i].name, (unsigned long long)sp_worker_silence_ms(&a->workers[i]));
    sp_nft_uninstall(a->nft);
    _exit(2);
}

/* Workers end their own drain at graceful_shutdown; this is their margin to close. */
#define STOP_MARGIN_MS 2000

static void begin_stop(app *a, const char *why)
{
    if (a->stopping)
        return;
    a->stopping = true;
    uint64_t drain = a->gen->settings.timeouts.graceful_shutdown;
    sp_info("%s: stopping, draining connections for up to %llu ms", why, (unsigned long long)drain);
    sp_nft_uninstall(a->nft);
    for (int i = 0; i < a->nworkers; i++)
        sp_worker_post_stop(&a->workers[i], drain);
    uv_timer_start(&a->stop_deadline, on_stop_deadline, drain + STOP_MARGIN_MS, 0);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    begin_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_sweep(uv_timer_t *t)
{
    app *a = t->data;
    sp_ip_table_sweep(a->process.ips, uv_now(a->loop));
}

static void worker_exit_hook(void *ud)
{
    uv_async_send(ud);
}

/* ---- explain ---- */

typedef struct explain_args {
    int port;
    const char *client_ip, *sni, *host, *path;
    sp_buf headers;            /* "Name: value\r\n" lines from --header */
} explain_args;

/* --host/--path/--header make it an HTTP request: parsed by the real message parser, so
 * what is explained is what a request with those fields would meet. */
static int explain(const sp_gen *g, explain_args *x)
{
    char domain[256];
    const char *name = x->host ? x->host : x->sni;
    size_t dl = 0;
    for (; name[dl] && name[dl] != ':' && dl < sizeof domain - 1; dl++)
        domain[dl] = (char)tolower((unsigned char)name[dl]);
    domain[dl] = 0;
    sp_conn_info info = {.server_port = (uint16_t)x->port, .domain = domain, .domain_len = dl,
                         .tls_offered = x->sni[0] ? 0x0304 : 0, .tls = x->sni[0] != 0};
    if (sp_ip_parse(x->client_ip, &info.client_ip) != 0) {
        fprintf(stderr, "--client-ip: not an IP address: %s\n", x->client_ip);
        return 1;
    }
    sp_http_msg msg;
    sp_http_msg_init(&msg, true, 65536);
    char norm[4096];
    bool http = x->host || x->path || x->headers.len;
    if (http) {
        sp_buf req;
        sp_buf_init(&req);
        sp_buf_appendf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", x->path ? x->path : "/", x->host ? x->host : domain);
        if (x->headers.len)
            sp_buf_append(&req, x->headers.data, x->headers.len);
        sp_buf_append(&req, "\r\n", 2);
        size_t used;
        sp_msg_event ev = req.oom ? SP_MSG_ERROR : sp_http_msg_feed(&msg, req.data, req.len, &used);
        sp_buf_free(&req);
        const char *path = x->path ? x->path : "/";
        size_t plen = strcspn(path, "?");
        long n = plen < sizeof norm ? sp_path_normalize(path, plen, norm) : -1;
        if (ev != SP_MSG_DONE || n < 0) {
            fprintf(stderr, "smartproxy: --explain: not a valid HTTP request: %s\n",
                    ev == SP_MSG_ERROR && msg.error ? msg.error : "bad path");
            sp_http_msg_free(&msg);
            return 1;
        }
        norm[n] = 0;
        info.http = &msg.head;
        info.path = norm;
        info.path_len = (size_t)n;
    }
    const sp_port_entry *e = sp_gen_port(g, (uint16_t)x->port);
    const sp_route *winner = sp_route_select(g, (uint16_t)x->port, &info);
    if (!e) {
        printf("port %d: no route listens on this port\n", x->port);
        sp_http_msg_free(&msg);
        return 0;
    }
    printf("port %d, client %s, sni %s", x->port, x->client_ip, x->sni[0] ? x->sni : "(none)");
    if (http)
        printf(", host %s, path %s", x->host ? x->host : dl ? domain : "(none)", x->path ? x->path : "/");
    printf(": %s\n", winner ? "matched" : http ? "no route matched (HTTP: 404)" : "no route matched (the connection would be closed)");
    for (size_t i = 0; i < e->nroutes; i++) {
        const sp_route *r = e->routes[i];
        const char *why = sp_route_mismatch(r, &info);
        sp_route_desc d;
        sp_route_describe(r, &d);
        if (r == winner)
            printf("  -> route \"%s\" (#%d, priority %d): wins\n", d.name, d.index, d.priority);
        else if (why)
            printf("     route \"%s\" (#%d, priority %d): %s does not match\n", d.name, d.index, d.priority, why);
        else
            printf("     route \"%s\" (#%d, priority %d): matches, but a better route wins\n", d.name, d.index, d.priority);
    }
    sp_http_msg_free(&msg);
    return 0;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"check", no_argument, NULL, 't'},       {"workers", required_argument, NULL, 'w'},
        {"watch", no_argument, NULL, 'W'},       {"log-level", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, 'F'}, {"explain", no_argument, NULL, 'E'},
        {"port", required_argument, NULL, 'P'},  {"client-ip", required_argument, NULL, 'C'},
        {"sni", required_argument, NULL, 'S'},   {"host", required_argument, NULL, 'H'},
        {"path", required_argument, NULL, 'Q'},  {"header", required_argument, NULL, 'R'},
        {"nft-cleanup", no_argument, NULL, 'N'},
        {"version", no_argument, NULL, 'V'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app a = {.file = "proxy.lua", .cli_log_level = -1, .cli_log_json = -1};
    bool check = false, do_explain = false, nft_cleanup = false;
    explain_args ex = {.client_ip = "127.0.0.1", .sni = ""};
    int opt;
    while ((opt = getopt_long(argc, argv, "tw:l:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': check = true; break;
        case 'w': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "smartproxy: --workers: expected 1 to 256, got \"%s\"\n", optarg);
                return 1;
            }
            a.cli_workers = (int)n;
            break;
        }
        case 'W': a.watch = true; break;
        case 'l':
            if ((a.cli_log_level = sp_log_level_parse(optarg)) < 0) {
                fprintf(stderr, "smartproxy: --log-level: expected error, warn, info or debug, got \"%s\"\n", optarg);
                return 1;
            }
            break;
        case 'F':
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "smartproxy: --log-format: expected text or json, got \"%s\"\n", optarg);
                return 1;
            }
            a.cli_log_json = strcmp(optarg, "json") == 0;
            break;
        case 'E': do_explain = true; break;
        case 'P': ex.port = atoi(optarg); break;
        case 'C': ex.client_ip = optarg; break;
        case 'S': ex.sni = optarg; break;
        case 'H': ex.host = optarg; break;
        case 'Q': ex.path = optarg; break;
        case 'R':
            if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n")) {
                fprintf(stderr, "smartproxy: --header: expected Name:value, got \"%s\"\n", optarg);
                return 1;
            }
            sp_buf_appendf(&ex.headers, "%s\r\n", optarg);
            break;
        case 'N': nft_cleanup = true; break;
        case 'V': print_version(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc)
        a.file = argv[optind++];
    if (optind < argc) {
        usage(stderr);
        return 1;
    }
    if (a.cli_log_level >= 0)
        sp_log_set_level((sp_log_level)a.cli_log_level);
    if (a.cli_log_json >= 0)
        sp_log_set_json(a.cli_log_json);

    char err[2048];
    if (nft_cleanup) {
        if (sp_nft_cleanup(err, sizeof err) != 0) {
            fprintf(stderr, "smartproxy: --nft-cleanup: %s\n", err);
            return 2;
        }
        printf("smartproxy: nftables tables ip %s and ip6 %s removed (if there were any)\n", SP_NFT_TABLE, SP_NFT_TABLE);
        return 0;
    }
    /* static: the watchdog thread may look at it until the process has exited */
    static sp_lua_budget main_budget;
    if (sp_lua_budget_register(&main_budget, "main") != 0)
        sp_warn("no Lua budget watchdog: timeouts.config_load and timeouts.lua_budget are not enforced");
    a.gen = sp_config_load(a.file, NULL, &a.sources, err, sizeof err);
    if (a.gen)
        sp_config_load_bounds(a.gen->settings.timeouts.config_load, a.gen->settings.lua_memory);
    sp_nft_ruleset *kernel = NULL;
    if (a.gen && sp_nft_prepare(a.gen, &kernel, err, sizeof err) != 0) {
        sp_gen_unref(a.gen);
        sp_source_set_unref(a.sources);
        a.gen = NULL;
    }
    if (!a.gen) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check || do_explain) {
        int rc = 0;
        if (check) {
            sp_gen_print_summary(a.gen, stdout);
            sp_nft_print(kernel, stdout);
        }
        else if (ex.port < 1 || ex.port > 65535) {
            fprintf(stderr, "smartproxy: --explain needs --port N\n");
            rc = 1;
        } else
            rc = explain(a.gen, &ex);
        sp_nft_ruleset_destroy(kernel);
        sp_gen_unref(a.gen);
        sp_source_set_unref(a.sources);
        return rc;
    }
    apply_log_settings(&a, a.gen);
    signal(SIGPIPE, SIG_IGN);
    if (sp_access_log_open(a.gen->settings.access_log, err, sizeof err) != 0 ||
        (!(a.nft = sp_nft_new()) && snprintf(err, sizeof err, "smartproxy: out of memory") > 0)) {
        fprintf(stderr, "%s\n", err);
        sp_nft_ruleset_destroy(kernel);
        return 2;
    }

    a.loop = uv_default_loop();
    a.started_ms = uv_now(a.loop);
    a.generation = 1;
    a.gen->number = 1;
    a.nworkers = a.cli_workers ? a.cli_workers
               : a.gen->settings.workers ? a.gen->settings.workers : (int)uv_available_parallelism();
    a.workers = calloc((size_t)a.nworkers, sizeof *a.workers);
    a.counters = calloc((size_t)a.nworkers, sizeof *a.counters);
    a.stalled = calloc((size_t)a.nworkers, sizeof *a.stalled);
    if (!a.workers || !a.counters || !a.stalled) {
        fprintf(stderr, "smartproxy: out of memory\n");
        return 2;
    }
    a.process.ips = sp_ip_table_new();
    a.process.routes = sp_route_limits_new();
    a.process.rates = sp_rate_table_new();
    a.process.challenges = sp_challenges_new();
    a.certs = sp_certmgr_new(a.loop, a.process.challenges);
    sp_certmgr_sync(a.certs, a.gen); /* before any worker accepts: stored certificates serve at once */
    a.process.shared = sp_shared_new(SHARED_CAPACITY);
    a.process.lua_tls[0] = sp_tls_lua_client_ctx(false);
    a.process.lua_tls[1] = sp_tls_lua_client_ctx(true);
    if (!a.process.ips || !a.process.routes || !a.process.shared || !a.process.lua_tls[0] || !a.process.lua_tls[1]) {
        fprintf(stderr, "smartproxy: out of memory\n");
        return 2;
    }
    static sp_routes_mailbox updates;
    uv_mutex_init(&updates.lock);
    uv_async_init(a.loop, &updates.wake, on_routes_update);
    updates.wake.data = &a;
    a.process.updates = &updates;
    uv_async_init(a.loop, &a.worker_exited, on_worker_exited);
    uv_timer_init(a.loop, &a.sweep);
    a.sweep.data = &a;
    uv_timer_start(&a.sweep, on_sweep, 60000, 60000);
    uv_unref((uv_handle_t *)&a.sweep); /* housekeeping never keeps the loop alive */
    uv_timer_init(a.loop, &a.sampler);
    a.sampler.data = &a;
    uv_timer_init(a.loop, &a.stop_deadline);
    a.stop_deadline.data = &a;
    uv_unref((uv_handle_t *)&a.stop_deadline);
    uv_timer_start(&a.sampler, on_sample, 0, 1000);
    uv_unref((uv_handle_t *)&a.sampler);
    a.worker_exited.data = &a;

    a.process.counters = a.counters;
    a.process.nworkers = a.nworkers;
    int status = 0;
    int started = 0;
    for (int i = 0; i < a.nworkers; i++) {
        a.counters[i] = &a.workers[i].counters;
        a.workers[i].exit_hook = worker_exit_hook;
        a.workers[i].exit_hook_arg = &a.worker_exited;
        if (sp_worker_start(&a.workers[i], i, a.file, &a.process, a.sources) != 0) {
            fprintf(stderr, "smartproxy: cannot start worker thread %d\n", i);
            status = 2;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        uv_sem_wait(&a.workers[i].ready);
        if (a.workers[i].start_status > status)
            status = a.workers[i].start_status;
    }
    if (status == 0 && sp_nft_install(a.nft, kernel, err, sizeof err) != 0) {
        sp_error("%s", err);
        status = 2;
    } else if (status == 0) {
        kernel = NULL; /* installed: a.nft owns it */
    }
    sp_nft_ruleset_destroy(kernel);
    if (status == 0 && a.gen->settings.metrics_listen) {
        sp_admin_hooks hooks = {.ud = &a, .stats_json = stats_json, .routes_json = routes_json,
                                .metrics_text = metrics_text, .access = admin_access,
                                .reload = do_reload};
        a.admin = sp_admin_start(a.loop, a.gen->settings.metrics_listen, &hooks, err, sizeof err);
        if (!a.admin) {
            sp_error("%s", err);
            status = 2;
        }
    }

    uv_signal_init(a.loop, &a.sighup);
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigusr1);
    a.sighup.data = a.sigterm.data = a.sigint.data = a.sigusr1.data = &a;
    uv_timer_init(a.loop, &a.watch_debounce);
    a.watch_debounce.data = &a;
    a.nworkers = started;
    if (status == 0) {
        uv_signal_start(&a.sighup, on_sighup, SIGHUP);
        uv_signal_start(&a.sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&a.sigint, on_stop_signal, SIGINT);
        uv_signal_start(&a.sigusr1, on_sigusr1, SIGUSR1);
        if (a.watch)
            watch_sources(&a);
        sp_info("smartproxy %s: %d worker(s), %zu route(s) on %zu port(s), generation 1", SP_VERSION,
                a.nworkers, a.gen->nroutes, a.gen->nports);
    } else {
        a.gen->settings.timeouts.graceful_shutdown = 0;
        begin_stop(&a, "startup failed");
    }
    on_worker_exited(&a.worker_exited); /* covers workers that already exited */
    uv_run(a.loop, UV_RUN_DEFAULT);

    for (int i = 0; i < started; i++)
        sp_worker_join(&a.workers[i]);
    uv_loop_close(a.loop);
    sp_nft_uninstall(a.nft);
    sp_nft_free(a.nft);
    sp_gen_unref(a.gen);
    sp_source_set_unref(a.sources);
    sp_ip_table_free(a.process.ips);
    sp_route_limits_free(a.process.routes);
    sp_rate_table_free(a.process.rates);
    sp_certmgr_free(a.certs);
    sp_cert_live_clear();
    sp_challenges_free(a.process.challenges);
    free(updates.pending);
    uv_mutex_destroy(&updates.lock);
    sp_shared_free(a.process.shared);
    SSL_CTX_free(a.process.lua_tls[0]);
    SSL_CTX_free(a.process.lua_tls[1]);
    free(a.workers);
    free(a.counters);
    free(a.stalled);
    if (status == 0)
        sp_info("stopped");
    return status;
}
