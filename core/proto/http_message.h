/* http_message: one direction of an HTTP/1.1 connection as a sequence of messages, on llhttp.
 *
 * The head of each message (request line or status line, header fields) is collected into
 * an sp_http_head; the body is NOT copied: the caller forwards the raw bytes it fed (with
 * their chunked framing, which llhttp has validated), so bodies stream without buffering.
 *
 *   feed(bytes) -> SP_MSG_MORE   all consumed, need more
 *               -> SP_MSG_HEAD   the head is complete (consumed stops right after it)
 *               -> SP_MSG_DONE   the message ended (consumed stops right after it); the
 *                                head may complete in the same call (bodiless messages)
 *               -> SP_MSG_ERROR  malformed or ambiguous: m->error_status (400, 431, 502)
 *
 * Strictness beyond llhttp's own (which rejects Content-Length with Transfer-Encoding,
 * duplicate or invalid Content-Length, bad chunk sizes, a request Transfer-Encoding not
 * ending in chunked): bare LF line endings, obs-fold continuation lines, whitespace before
 * a colon, Transfer-Encoding in HTTP/1.0, several Host fields. Requests that could be read
 * two ways are refused, never forwarded. Pure: no I/O. */
#ifndef SP_PROTO_HTTP_MESSAGE_H
#define SP_PROTO_HTTP_MESSAGE_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_http_field {
    uint32_t name, name_len, value, value_len;  /* offsets into the head's arena */
} sp_http_field;

typedef struct sp_http_head {
    char *arena;                 /* url, names and values, NUL after each */
    size_t arena_len, arena_cap;
    sp_http_field *fields;
    size_t nfields, fields_cap;
    uint32_t url, url_len;       /* requests: the request target as sent */
    uint32_t reason, reason_len; /* responses: the reason phrase */
    int method;                  /* llhttp_method_t (requests) */
    int status;                  /* responses */
    uint8_t major, minor;
    int64_t content_length;      /* -1: no Content-Length */
    bool chunked;
    bool keep_alive;             /* the sender allows another message after this one */
    bool upgrade;                /* Upgrade (requests: asked; responses: 101 switching) */
    bool expect_continue;        /* Expect: 100-continue */
    bool until_close;            /* responses: the body ends when the connection does */
} sp_http_head;

typedef enum { SP_MSG_MORE = 0, SP_MSG_HEAD, SP_MSG_DONE, SP_MSG_ERROR } sp_msg_event;

typedef struct sp_http_msg {
    llhttp_t parser;
    llhttp_settings_t settings;
    sp_http_head head;
    size_t head_bytes, max_head_bytes;
    bool in_body, head_ready, done;
    bool skip_body;              /* responses: the request was HEAD */
    bool collecting;             /* a string is being collected, from str_start */
    uint32_t str_start;
    char prev;                   /* last head byte seen, to spot bare LF across reads */
    bool line_start;
    /* when set, body bytes without their chunked framing (for an HTTP/1.0 client) */
    void (*on_body)(void *arg, const char *at, size_t len);
    void *on_body_arg;
    int ck_state;                /* chunked framing, checked beside llhttp */
    uint64_t ck_size;
    int error_status;            /* SP_MSG_ERROR: 400, 431 (requests), 502 (responses) */
    const char *error;           /* what was wrong, for logs */
} sp_http_msg;

void sp_http_msg_init(sp_http_msg *m, bool request, size_t max_head_bytes);
void sp_http_msg_free(sp_http_msg *m);
/* Ready for the next message on the same connection (after SP_MSG_DONE). */
void sp_http_msg_next(sp_http_msg *m);

/* Parses up to len bytes; *consumed tells how many belong to what the event reports. */
sp_msg_event sp_http_msg_feed(sp_http_msg *m, const char *data, size_t len, size_t *consumed);
/* The sender closed: ends an until-close body (SP_MSG_DONE), else SP_MSG_ERROR. */
sp_msg_event sp_http_msg_finish(sp_http_msg *m);

/* Field access. Names compare case-insensitively. */
static inline const char *sp_http_name(const sp_http_head *h, const sp_http_field *f)
{
    return h->arena + f->name;
}
static inline const char *sp_http_value(const sp_http_head *h, const sp_http_field *f)
{
    return h->arena + f->value;
}
static inline const char *sp_http_url(const sp_http_head *h) { return h->arena + h->url; }
/* The first field named `name`, or NULL; *count (optional) gets how many there are. */
const sp_http_field *sp_http_find(const sp_http_head *h, const char *name, int *count);
bool sp_http_name_is(const sp_http_head *h, const sp_http_field *f, const char *name);
/* True when a comma-separated field value lists `token` (case-insensitive). */
bool sp_http_list_has(const char *value, size_t len, const char *token);

#endif
