#include "admin/rates.h"

void sp_rate_window_sample(sp_rate_window *w, uint64_t now_ms, const sp_counts *c)
{
    unsigned i = w->next_sample;
    w->samples[i].ms = now_ms;
    w->samples[i].total = c->total;
    w->samples[i].from_clients = c->bytes_from_clients;
    w->samples[i].from_targets = c->bytes_from_targets;
    w->samples[i].http_requests = c->http_requests;
    w->next_sample = (i + 1) % (SP_RATE_WINDOW + 1);
    if (w->nsamples < SP_RATE_WINDOW + 1)
        w->nsamples++;
}

void sp_rate_window_rates(const sp_rate_window *w, sp_rates *r)
{
    *r = (sp_rates){0};
    if (w->nsamples < 2)
        return;
    unsigned newest = (w->next_sample + SP_RATE_WINDOW) % (SP_RATE_WINDOW + 1);
    unsigned oldest = w->nsamples < SP_RATE_WINDOW + 1 ? 0 : w->next_sample;
    double secs = (double)(w->samples[newest].ms - w->samples[oldest].ms) / 1000.0;
    if (secs <= 0)
        return;
    r->connections = (double)(w->samples[newest].total - w->samples[oldest].total) / secs;
    r->from_clients = (double)(w->samples[newest].from_clients - w->samples[oldest].from_clients) / secs;
    r->from_targets = (double)(w->samples[newest].from_targets - w->samples[oldest].from_targets) / secs;
    r->http_requests = (double)(w->samples[newest].http_requests - w->samples[oldest].http_requests) / secs;
}
