/* libFuzzer target for core/proto/http_message: request and response streams, fed in pieces.
 *
 * Input: byte 0 picks request/response and the piece size; the rest is the stream.
 * Invariants: consumed counts never exceed what was fed; an accepted head has a URL or a
 * status and fields whose offsets lie inside the arena; after ERROR nothing more is fed;
 * a chunked body accepted here is one the strict framing check also accepted; the head
 * the proxy writes for an accepted head (core/http/head.c: hop-by-hop fields out, those
 * Connection names too) parses again with the same framing (and a request with one
 * Host), so no field a message names in Connection can change how the next hop reads it. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/head.h"
#include "proto/http_message.h"

static void check_head(const sp_http_head *h, bool request)
{
    assert(h->arena_len <= h->arena_cap);
    if (request)
        assert(h->url + h->url_len <= h->arena_len);
    for (size_t i = 0; i < h->nfields; i++) {
        const sp_http_field *f = &h->fields[i];
        assert(f->name + f->name_len <= h->arena_len);
        assert(f->value + f->value_len <= h->arena_len);
        assert(strlen(h->arena + f->name) == f->name_len);
    }
}

/* The head written for the next hop, parsed again, has the framing of the original. */
static void check_rewritten_framing(const sp_http_head *h, bool request)
{
    sp_buf out;
    sp_buf_init(&out);
    if (request) {
        sp_request_out r = {.in = h, .target = sp_http_url(h), .target_len = h->url_len,
                            .client_ip = "192.0.2.1", .proto = "http", .default_host = "backend:80",
                            .port = 80, .upgrade = h->upgrade};
        const sp_http_field *host = sp_http_find(h, "host", NULL);
        r.host = host ? sp_http_value(h, host) : NULL;
        sp_head_write_request(&out, &r);
    } else {
        sp_response_out r = {.in = h};
        sp_head_write_response(&out, &r);
    }
    assert(!out.oom);
    sp_http_msg again;
    sp_http_msg_init(&again, request, 1 << 20);
    size_t used = 0;
    sp_msg_event ev = sp_http_msg_feed(&again, out.data, out.len, &used);
    assert(ev == SP_MSG_HEAD || ev == SP_MSG_DONE);
    assert(again.head.content_length == h->content_length);
    assert(again.head.chunked == h->chunked);
    int hosts = 1;
    if (request)
        sp_http_find(&again.head, "host", &hosts);
    assert(hosts == 1); /* the one sent, or the default when there was none */
    sp_http_msg_free(&again);
    sp_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool request = !(data[0] & 1);
    size_t step = (size_t)(data[0] >> 1) + 1; /* 1..128 bytes per feed */
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    sp_http_msg m;
    sp_http_msg_init(&m, request, 4096);
    m.skip_body = !request && (data[0] & 0x80);
    int messages = 0;
    size_t off = 0;
    while (off < len && messages < 64) {
        size_t n = len - off < step ? len - off : step, used = 0;
        bool had_head = m.head_ready;
        sp_msg_event ev = sp_http_msg_feed(&m, p + off, n, &used);
        assert(used <= n);
        if (ev == SP_MSG_ERROR) {
            assert(m.error_status == 400 || m.error_status == 431 || m.error_status == 502);
            break;
        }
        off += used;
        if (m.head_ready)
            check_head(&m.head, request);
        if (ev == SP_MSG_HEAD || (ev == SP_MSG_DONE && !had_head))
            check_rewritten_framing(&m.head, request);
        if (ev == SP_MSG_DONE) {
            assert(m.head_ready);
            messages++;
            if (m.head.upgrade)
                break; /* what follows is not HTTP */
            sp_http_msg_next(&m);
        } else if (ev == SP_MSG_MORE) {
            assert(used == n);
        }
    }
    if (off == len)
        (void)sp_http_msg_finish(&m);
    sp_http_msg_free(&m);
    return 0;
}
