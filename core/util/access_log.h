/* access_log: one line per connection that ended, as text (key=value) or JSON, to
 * stderr or to a file that SIGUSR1 reopens (for logrotate).
 *
 * A line is formatted by the pure sp_access_format and written with a single write(2)
 * on an O_APPEND descriptor, so lines from several workers never interleave. Reopening
 * dup2()s the new file onto the same descriptor: a worker writing at that moment lands
 * in the old or the new file, never in a closed or reused descriptor. Like nginx's
 * unbuffered access_log, the write is synchronous: appending to the page cache. */
#ifndef SP_UTIL_ACCESS_LOG_H
#define SP_UTIL_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct sp_access_entry {
    uint64_t id;
    const char *route;         /* NULL: no route matched */
    const char *client_ip;     /* the real client (after a PROXY header) */
    uint16_t client_port;
    const char *via;           /* the trusted proxy that sent a PROXY header, or NULL */
    uint16_t port;             /* the port the client connected to */
    const char *sni;           /* or NULL */
    const char *tls_version;   /* negotiated when terminating, or NULL */
    const char *target;        /* "host:port", or NULL */
    uint64_t bytes_in, bytes_out, duration_ms;
    const char *end;           /* termination reason */
} sp_access_entry;

/* One HTTP request on a connection (several per keep-alive connection). */
typedef struct sp_access_request {
    uint64_t conn;
    const char *route;         /* NULL: no route matched */
    const char *client_ip;
    uint16_t client_port;
    const char *method, *host, *url;   /* as sent; host may be NULL */
    int status;                /* sent to the client; 0 when none was */
    const char *target;        /* "host:port" of the upstream, NULL when answered locally */
    uint64_t bytes_out;        /* response bytes sent to the client (head and body) */
    uint64_t duration_ms;      /* from the complete request head to the end of the response */
} sp_access_request;

void sp_access_format_request(sp_buf *out, const sp_access_request *e, const char *time, bool json);

/* Appends one line (with its newline) for e to out; `time` is an RFC 3339 timestamp. */
void sp_access_format(sp_buf *out, const sp_access_entry *e, const char *time, bool json);

/* Changing where access lines go takes two steps, so that a reload refused after its
 * file was opened keeps writing to the old one: sp_access_log_open readies the new
 * destination (the step that can fail) and sp_access_log_switch makes it the one in use
 * (a step that cannot). A readied destination that is never switched to is dropped with
 * sp_access_log_discard. These three and sp_access_log_reopen run on the main thread. */
typedef struct sp_access_log_file {
    bool change;               /* the switch moves the lines (false: the same path, or zeroed) */
    int fd;                    /* the opened file; -1 for stderr */
    char *path;                /* its path; NULL for stderr */
} sp_access_log_file;

/* Readies path (NULL: stderr) without sending any line there. Returns 0, or -1 with the
 * reason in err. */
int sp_access_log_open(const char *path, sp_access_log_file *out, char *err, size_t errlen);
/* Sends access lines to f from now on, and takes it. */
void sp_access_log_switch(sp_access_log_file *f);
/* Closes f, readied but not switched to. */
void sp_access_log_discard(sp_access_log_file *f);
/* Reopens the file (SIGUSR1); a no-op for stderr. */
int sp_access_log_reopen(char *err, size_t errlen);
void sp_access_log_write(const sp_buf *line);

#endif
