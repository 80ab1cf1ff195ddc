/* manager: certificate = "auto" on the main thread.
 *
 * For every name of every "auto" route (match.domains, "*" excepted) it finds a
 * certificate, in the SPEC 8 order: the store (certificates.store), then the Lua hook
 * certificates.provision(domain) called on the main thread's Lua state (a table
 * { cert = PEM, key = PEM } is stored and served; "acme" asks ACME; nil declines), then
 * ACME when `acme` is configured. What it finds is published in core/tls/cert_live.h, from
 * where every worker's handshakes pick it up: a new or renewed certificate takes effect
 * without a reload and without touching live connections.
 *
 * ACME orders run on threads of their own (core/cert/acme.h), one per name, so several
 * proceed at once and neither the main loop nor a worker ever waits on the network. A
 * failed order is logged once with the server's problem document and retried after
 * acme.retry_interval, doubling per consecutive failure up to 6 hours. A timer every
 * acme.renew_check_interval renews what expires within acme.renew_before_days (the hook
 * first when there is one, else ACME). Main thread only, except the job threads. */
#ifndef SP_CERT_MANAGER_H
#define SP_CERT_MANAGER_H

#include <uv.h>

#include "config/config.h"
#include "util/buf.h"
#include "util/json.h"

struct sp_challenges;
typedef struct sp_certmgr sp_certmgr;

sp_certmgr *sp_certmgr_new(uv_loop_t *loop, struct sp_challenges *challenges);
/* After every successful load: takes the names of g's "auto" routes and g's settings
 * (keeping a reference to g for the provision hook), resolves names it has no
 * certificate for, forgets names no longer used. */
void sp_certmgr_sync(sp_certmgr *m, sp_gen *g);
/* "certificates": { "no_certificate_handshakes": N, "domains": { name: {...} } } */
void sp_certmgr_stats_json(sp_certmgr *m, sp_json *j);
/* smartproxy_certificate_domain_expiry_timestamp_seconds{domain} and friends. */
void sp_certmgr_metrics_text(sp_certmgr *m, sp_buf *b);
/* Cancels running orders and closes the handles (at stop, on the main loop). */
void sp_certmgr_stop(sp_certmgr *m);
/* After the loop ended: joins the order threads and frees everything. */
void sp_certmgr_free(sp_certmgr *m);

#endif
