/* report: what GET /stats (JSON) and GET /metrics (Prometheus text) show.
 *
 * Both come from the same descriptor tables (util/metric.h): the workers' counters
 * (sp_counts_metrics in net/registry.c) and the main thread's own figures (reloads,
 * workers, uptime: report.c). Figures that are not plain counters keep a renderer of
 * their own, called from here: the upstream connect histogram, the rates, the busiest
 * client addresses, the per-route figures, certificate expiry, nftables and the
 * certificate manager. Main thread only: it reads what main.c hands it at each request. */
#ifndef SP_ADMIN_REPORT_H
#define SP_ADMIN_REPORT_H

#include <stdint.h>

#include "admin/rates.h"
#include "cert/manager.h"
#include "config/config.h"
#include "net/ip_table.h"
#include "net/registry.h"
#include "net/route_limits.h"
#include "nft/nft.h"
#include "util/buf.h"
#include "util/json.h"

/* The main thread's figures, as they are at the request. */
typedef struct sp_report_process {
    uint64_t generation, reloads, reloads_failed;
    uint64_t workers, workers_stalled, worker_stalls;
    uint64_t lua_budget_exceeded, lua_memory_errors;
    double uptime_seconds;
} sp_report_process;

/* Where the report reads from; main.c fills one per request. */
typedef struct sp_report {
    sp_counters *const *counters;   /* every worker's */
    int nworkers;
    const sp_rate_window *rates;
    sp_ip_table *ips;
    sp_route_limits *routes;
    const sp_gen *gen;              /* the generation serving now (certificate expiry) */
    sp_nft *nft;
    sp_certmgr *certs;
    sp_report_process process;
} sp_report;

/* One JSON object: the body of GET /stats. */
void sp_report_stats_json(const sp_report *r, sp_json *j);
/* The body of GET /metrics. */
void sp_report_metrics_text(const sp_report *r, sp_buf *b);

#endif
