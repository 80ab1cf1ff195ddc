/* admit: whether an accepted connection may be served at all, before anything is read
 * from it (its PROXY header aside): the global IP allow/block lists, then the per-IP
 * table shared by all workers (connections per IP, connection rate).
 *
 * A refused connection is counted by why and ended; on a port whose every route reads
 * plain HTTP the client is told why first (503 for too many connections, 429 for too
 * high a rate), then the connection closes after a flush and a lingering close. */
#ifndef SP_SESSION_ADMIT_H
#define SP_SESSION_ADMIT_H

#include <stdbool.h>

typedef struct sp_conn sp_conn;

/* true: admitted (and counted in the per-IP table); false: refused, and the connection
 * is ending. */
bool sp_session_admit(sp_conn *c);

#endif
