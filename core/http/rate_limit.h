/* rate_limit: security.rate_limit's sliding windows, shared by every worker.
 *
 * A key (route name plus the client IP, the route itself, or a header's value) counts
 * requests in fixed windows; the sliding estimate is the current window's count plus the
 * previous window's weighted by how much of it still overlaps the sliding window - the
 * usual two-counter approximation (nginx limit_req and Cloudflare use the same idea),
 * exact at window boundaries and never more than one window's worth generous.
 * One mutex; the table forgets keys idle for two windows when it grows. */
#ifndef SP_HTTP_RATE_LIMIT_H
#define SP_HTTP_RATE_LIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct sp_rate_table sp_rate_table;

sp_rate_table *sp_rate_table_new(void);
void sp_rate_table_free(sp_rate_table *t);

/* Counts one request for key; returns 0 when it is within `limit` per `window_ms`, else 1
 * (not counted) with *retry_after_ms set to when one more would be allowed. */
int sp_rate_admit(sp_rate_table *t, const char *key, size_t key_len, uint64_t limit, uint64_t window_ms,
                  uint64_t now_ms, uint64_t *retry_after_ms);

#endif
