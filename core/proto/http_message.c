/* message: HTTP/1.1 message heads on llhttp, bodies passed through (see message.h). */
#include "proto/http_message.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the head being collected ---- */

static int arena_append(sp_http_head *h, const char *p, size_t n)
{
    if (h->arena_len + n + 1 > h->arena_cap) {
        size_t cap = h->arena_cap ? h->arena_cap : 512;
        while (cap < h->arena_len + n + 1)
            cap *= 2;
        char *a = realloc(h->arena, cap);
        if (!a)
            return -1;
        h->arena = a;
        h->arena_cap = cap;
    }
    memcpy(h->arena + h->arena_len, p, n);
    h->arena_len += n;
    h->arena[h->arena_len] = 0;
    return 0;
}

/* Ends the string being collected (NUL) and returns where it began. */
static int arena_end(sp_http_head *h, uint32_t start, uint32_t *off, uint32_t *len)
{
    if (arena_append(h, "", 0) != 0) /* makes sure a NUL exists even for empty strings */
        return -1;
    *off = start;
    *len = (uint32_t)(h->arena_len - start);
    h->arena_len++; /* keep the NUL */
    return 0;
}

static sp_http_msg *msg_of(llhttp_t *p) { return p->data; }

static int fail(llhttp_t *p, const char *why)
{
    llhttp_set_error_reason(p, why);
    return HPE_USER;
}

/* A string (URL, reason, name, value) may arrive in pieces: it starts at the first. */
static int on_data(llhttp_t *p, const char *at, size_t n)
{
    sp_http_msg *m = msg_of(p);
    if (!m->collecting) {
        m->str_start = (uint32_t)m->head.arena_len;
        m->collecting = true;
    }
    return arena_append(&m->head, at, n) == 0 ? 0 : fail(p, "out of memory");
}

/* Ends the string being collected; an empty one (no data callback) starts here. */
static int end_string(llhttp_t *p, uint32_t *off, uint32_t *len)
{
    sp_http_msg *m = msg_of(p);
    uint32_t start = m->collecting ? m->str_start : (uint32_t)m->head.arena_len;
    m->collecting = false;
    return arena_end(&m->head, start, off, len) == 0 ? 0 : fail(p, "out of memory");
}

static int on_url_complete(llhttp_t *p)
{
    sp_http_head *h = &msg_of(p)->head;
    return end_string(p, &h->url, &h->url_len);
}

static int on_status_complete(llhttp_t *p)
{
    sp_http_head *h = &msg_of(p)->head;
    return end_string(p, &h->reason, &h->reason_len);
}

static int on_field_complete(llhttp_t *p)
{
    sp_http_head *h = &msg_of(p)->head;
    if (h->nfields == h->fields_cap) {
        size_t cap = h->fields_cap ? h->fields_cap * 2 : 16;
        sp_http_field *f = realloc(h->fields, cap * sizeof *f);
        if (!f)
            return fail(p, "out of memory");
        h->fields = f;
        h->fields_cap = cap;
    }
    sp_http_field *f = &h->fields[h->nfields];
    int rc = end_string(p, &f->name, &f->name_len);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < f->name_len; i++)
        if (h->arena[f->name + i] == ' ' || h->arena[f->name + i] == '\t')
            return fail(p, "whitespace in a header name");
    return 0;
}

static int on_value_complete(llhttp_t *p)
{
    sp_http_msg *m = msg_of(p);
    sp_http_head *h = &m->head;
    sp_http_field *f = &h->fields[h->nfields];
    /* trailing whitespace is not part of the value (RFC 9112 5) */
    uint32_t start = m->collecting ? m->str_start : (uint32_t)h->arena_len;
    while (h->arena_len > start && (h->arena[h->arena_len - 1] == ' ' || h->arena[h->arena_len - 1] == '\t'))
        h->arena_len--;
    int rc = end_string(p, &f->value, &f->value_len);
    if (rc == 0)
        h->nfields++;
    return rc;
}

const sp_http_field *sp_http_find(const sp_http_head *h, const char *name, int *count)
{
    const sp_http_field *first = NULL;
    int n = 0;
    for (size_t i = 0; i < h->nfields; i++)
        if (strcasecmp(h->arena + h->fields[i].name, name) == 0) {
            if (!first)
                first = &h->fields[i];
            n++;
        }
    if (count)
        *count = n;
    return first;
}

bool sp_http_name_is(const sp_http_head *h, const sp_http_field *f, const char *name)
{
    return strcasecmp(h->arena + f->name, name) == 0;
}

bool sp_http_list_has(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

/* Does the last coding of the last Transfer-Encoding field, as stored (trimmed), say
 * chunked? */
static bool stored_te_ends_in_chunked(const sp_http_head *h)
{
    const sp_http_field *last = NULL;
    for (size_t i = 0; i < h->nfields; i++)
        if (sp_http_name_is(h, &h->fields[i], "transfer-encoding"))
            last = &h->fields[i];
    if (!last)
        return false;
    const char *v = sp_http_value(h, last);
    const char *comma = strrchr(v, ',');
    const char *coding = comma ? comma + 1 : v;
    while (*coding == ' ' || *coding == '\t')
        coding++;
    return strcasecmp(coding, "chunked") == 0;
}

static int on_headers_complete(llhttp_t *p)
{
    sp_http_msg *m = msg_of(p);
    sp_http_head *h = &m->head;
    h->major = p->http_major;
    h->minor = p->http_minor;
    h->method = p->method;
    h->status = p->status_code;
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    h->upgrade = p->upgrade != 0;
    h->keep_alive = llhttp_should_keep_alive(p) != 0;
    /* The head the proxy writes carries the stored values, trimmed of trailing whitespace
     * (on_value_complete). llhttp does not read "chunked<TAB>" as chunked: such a message
     * would be framed one way here and the other way by the next hop. */
    if ((p->flags & F_TRANSFER_ENCODING) && !h->chunked && stored_te_ends_in_chunked(h))
        return fail(p, "ambiguous Transfer-Encoding");
    if (p->type == HTTP_REQUEST) {
        int hosts;
        sp_http_find(h, "host", &hosts);
        if (hosts > 1)
            return fail(p, "more than one Host field");
        if ((p->flags & F_TRANSFER_ENCODING) && h->major == 1 && h->minor == 0)
            return fail(p, "Transfer-Encoding in an HTTP/1.0 request");
        const char *u = sp_http_url(h);
        if (!(u[0] == '/' || (u[0] == '*' && u[1] == 0 && h->method == HTTP_OPTIONS) ||
              strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0 ||
              (h->method == HTTP_CONNECT && u[0] && u[0] != ' ')))
            return fail(p, "malformed request target");
        const sp_http_field *e = sp_http_find(h, "expect", NULL);
        h->expect_continue = e && strcasecmp(sp_http_value(h, e), "100-continue") == 0;
    } else {
        h->until_close = !m->skip_body && llhttp_message_needs_eof(p);
    }
    m->head_ready = true;
    m->in_body = true;
    if (p->type == HTTP_RESPONSE && m->skip_body && h->status >= 200)
        return 1; /* the answer to HEAD: no body whatever the fields say; completes now */
    /* a pause after the head only when a body follows: else the end comes at once */
    if (h->chunked || h->content_length > 0 || h->until_close)
        return HPE_PAUSED;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    sp_http_msg *m = msg_of(p);
    if (m->on_body)
        m->on_body(m->on_body_arg, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    msg_of(p)->done = true;
    return HPE_PAUSED;
}

void sp_http_msg_init(sp_http_msg *m, bool request, size_t max_head_bytes)
{
    memset(m, 0, sizeof *m);
    llhttp_settings_init(&m->settings);
    m->settings.on_url = on_data;
    m->settings.on_status = on_data;
    m->settings.on_header_field = on_data;
    m->settings.on_header_value = on_data;
    m->settings.on_url_complete = on_url_complete;
    m->settings.on_status_complete = on_status_complete;
    m->settings.on_header_field_complete = on_field_complete;
    m->settings.on_header_value_complete = on_value_complete;
    m->settings.on_headers_complete = on_headers_complete;
    m->settings.on_message_complete = on_message_complete;
    m->settings.on_body = on_body;
    llhttp_init(&m->parser, request ? HTTP_REQUEST : HTTP_RESPONSE, &m->settings);
    m->parser.data = m;
    m->max_head_bytes = max_head_bytes;
    m->head.content_length = -1;
    m->line_start = true;
}

static void head_reset(sp_http_head *h)
{
    char *a = h->arena;
    size_t cap = h->arena_cap;
    sp_http_field *f = h->fields;
    size_t fcap = h->fields_cap;
    memset(h, 0, sizeof *h);
    h->arena = a;
    h->arena_cap = cap;
    h->fields = f;
    h->fields_cap = fcap;
    h->content_length = -1;
}

void sp_http_msg_next(sp_http_msg *m)
{
    head_reset(&m->head);
    m->head_bytes = 0;
    m->in_body = m->head_ready = m->done = false;
    m->skip_body = false;
    m->prev = 0;
    m->line_start = true;
    m->error_status = 0;
    m->error = NULL;
    m->ck_state = 0;
    m->ck_size = 0;
    llhttp_reset(&m->parser);
}

void sp_http_msg_free(sp_http_msg *m)
{
    free(m->head.arena);
    free(m->head.fields);
    m->head.arena = NULL;
    m->head.fields = NULL;
}

/* Chunked framing checked byte by byte beside llhttp, which (8.x) does not insist on
 * the CRLF after chunk data: "5\r\nhelloXX0\r\n\r\n" must not be read as a chunk. */
enum { CK_SIZE = 0, CK_SIZE_DIGITS, CK_EXT, CK_SIZE_LF, CK_DATA, CK_DATA_CR, CK_DATA_LF, CK_TRAILER_START,
       CK_TRAILER, CK_TRAILER_LF, CK_END_LF, CK_DONE };

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static const char *chunk_scan(sp_http_msg *m, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char b = p[i];
        switch (m->ck_state) {
        case CK_SIZE:
        case CK_SIZE_DIGITS: {
            int v = hexval(b);
            if (v >= 0) {
                if (m->ck_size >> 56)
                    return "chunk size too large";
                m->ck_size = m->ck_size * 16 + (uint64_t)v;
                m->ck_state = CK_SIZE_DIGITS;
            } else if (m->ck_state == CK_SIZE_DIGITS && b == ';') {
                m->ck_state = CK_EXT;
            } else if (m->ck_state == CK_SIZE_DIGITS && b == '\r') {
                m->ck_state = CK_SIZE_LF;
            } else {
                return "bad chunk size";
            }
            break;
        }
        case CK_EXT:
            if (b == '\r')
                m->ck_state = CK_SIZE_LF;
            else if (b == '\n')
                return "bare LF in chunk framing";
            break;
        case CK_SIZE_LF:
            if (b != '\n')
                return "bad chunk size line";
            m->ck_state = m->ck_size ? CK_DATA : CK_TRAILER_START;
            break;
        case CK_DATA: {
            size_t take = n - i < m->ck_size ? n - i : (size_t)m->ck_size;
            m->ck_size -= take;
            i += take - 1;
            if (m->ck_size == 0)
                m->ck_state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (b != '\r')
                return "chunk data not followed by CRLF";
            m->ck_state = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (b != '\n')
                return "chunk data not followed by CRLF";
            m->ck_state = CK_SIZE;
            break;
        case CK_TRAILER_START:
            if (b == '\r')
                m->ck_state = CK_END_LF;
            else if (b == '\n' || b == ' ' || b == '\t')
                return "bad trailer";
            else
                m->ck_state = CK_TRAILER;
            break;
        case CK_TRAILER:
            if (b == '\r')
                m->ck_state = CK_TRAILER_LF;
            else if (b == '\n')
                return "bare LF in trailer";
            break;
        case CK_TRAILER_LF:
            if (b != '\n')
                return "bad trailer line";
            m->ck_state = CK_TRAILER_START;
            break;
        case CK_END_LF:
            if (b != '\n')
                return "bad end of chunked body";
            m->ck_state = CK_DONE;
            break;
        default:
            return "bytes after the chunked body";
        }
    }
    return NULL;
}

static sp_msg_event error(sp_http_msg *m, int status, const char *why)
{
    m->error_status = status;
    m->error = why;
    return SP_MSG_ERROR;
}

/* Checks head bytes llhttp tolerates but we do not: bare LF and obs-fold. */
static const char *scan_head(sp_http_msg *m, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char b = p[i];
        if (b == '\n' && m->prev != '\r')
            return "bare LF line ending";
        if (m->line_start && (b == ' ' || b == '\t') && m->head_bytes + i > 0)
            return "obs-fold continuation line";
        m->line_start = b == '\n';
        m->prev = b;
    }
    return NULL;
}

sp_msg_event sp_http_msg_feed(sp_http_msg *m, const char *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (m->done)
        return SP_MSG_DONE;
    bool request = m->parser.type == HTTP_REQUEST, was_head = !m->head_ready;
    int rc = llhttp_execute(&m->parser, data, len);
    size_t used = rc == HPE_OK ? len : (size_t)(llhttp_get_error_pos(&m->parser) - data);
    if (was_head) {
        /* everything up to the pause after the head (or all of it) was head bytes */
        size_t head_part = m->head_ready ? used : (rc == HPE_OK ? len : used);
        if (m->head_bytes + head_part > m->max_head_bytes)
            return error(m, request ? 431 : 502, "head too large");
        const char *bad = scan_head(m, data, head_part);
        m->head_bytes += head_part;
        if (bad)
            return error(m, request ? 400 : 502, bad);
    }
    if (!was_head && m->head.chunked && rc != HPE_USER) {
        const char *bad = chunk_scan(m, data, rc == HPE_OK ? len : used);
        if (bad)
            return error(m, request ? 400 : 502, bad);
    }
    if (rc != HPE_OK && rc != HPE_PAUSED && rc != HPE_PAUSED_UPGRADE) {
        const char *why = llhttp_get_error_reason(&m->parser);
        return error(m, request ? 400 : 502, why ? why : llhttp_errno_name(rc));
    }
    *consumed = used;
    if (rc == HPE_PAUSED && !m->done)
        llhttp_resume(&m->parser); /* paused by us after the head; the caller goes on */
    if (m->done)
        return SP_MSG_DONE;
    if (was_head && m->head_ready)
        return SP_MSG_HEAD;
    return SP_MSG_MORE;
}

sp_msg_event sp_http_msg_finish(sp_http_msg *m)
{
    if (m->done)
        return SP_MSG_DONE;
    int rc = llhttp_finish(&m->parser);
    if ((rc == HPE_OK || rc == HPE_PAUSED) && m->done)
        return SP_MSG_DONE;
    return error(m, m->parser.type == HTTP_REQUEST ? 400 : 502, "closed before the message ended");
}
