/* challenges: ACME HTTP-01 answers shared by every worker.
 *
 * The ACME client (main thread) publishes token -> key authorization while an order is
 * being validated; any worker that gets "GET /.well-known/acme-challenge/<token>" on a
 * plain-HTTP port answers it before routing. An unknown token falls through to the
 * routes (a backend may run its own ACME client). One mutex; the table is tiny. */
#ifndef SP_HTTP_CHALLENGES_H
#define SP_HTTP_CHALLENGES_H

#include <stdbool.h>
#include <stddef.h>

#define SP_ACME_CHALLENGE_PREFIX "/.well-known/acme-challenge/"

typedef struct sp_challenges sp_challenges;

sp_challenges *sp_challenges_new(void);
void sp_challenges_free(sp_challenges *t);
/* Returns 0, or -1 when out of memory. Replaces an existing token. */
int sp_challenges_put(sp_challenges *t, const char *token, const char *key_authorization);
void sp_challenges_remove(sp_challenges *t, const char *token);
/* Copies the key authorization for token[0..len) into out (NUL-terminated); false when
 * the token is unknown or out is too small. */
bool sp_challenges_get(sp_challenges *t, const char *token, size_t len, char *out, size_t outlen);

#endif
