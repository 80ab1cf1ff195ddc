/* The TLS pump (core/tls/stream.c): two sessions wired to each other in memory, each
 * with an owner that collects what it is asked to send and the plaintext it receives.
 * Handshake, plaintext both ways, backpressure, close_notify, a non-TLS peer, an owner
 * that ends, and no memory. No socket, nothing of core/net/, core/http/ or core/lua/. */
#include "tls/stream.h"

#include <stdlib.h>

#include "unit.h"
#include "unit_tls.h"

#define BUF_CAP 4096 /* small, so that flights and plaintext take several buffers */

typedef struct end {
    sp_tls_stream tls;
    char out[65536];          /* ciphertext the pump sent, for the peer */
    size_t out_len;
    char got[65536];          /* plaintext the pump handed over */
    size_t got_len;
    bool full, end_on_receive, no_memory;
    int bufs;                 /* buffers given out and not yet taken back */
} end;

static void *get_buf(void *ctx, size_t *cap)
{
    end *e = ctx;
    if (e->no_memory)
        return NULL;
    e->bufs++;
    *cap = BUF_CAP;
    return malloc(BUF_CAP);
}

static void put_buf(void *ctx, void *buf)
{
    end *e = ctx;
    e->bufs--;
    free(buf);
}

static int send_out(void *ctx, void *buf, size_t len)
{
    end *e = ctx;
    memcpy(e->out + e->out_len, buf, len);
    e->out_len += len;
    put_buf(ctx, buf);
    return 0;
}

static int receive(void *ctx, void *buf, size_t len)
{
    end *e = ctx;
    if (!e->end_on_receive) {
        memcpy(e->got + e->got_len, buf, len);
        e->got_len += len;
    }
    put_buf(ctx, buf);
    return e->end_on_receive ? -1 : 0;
}

static bool has_room(void *ctx) { return !((end *)ctx)->full; }

static const sp_tls_io io = {get_buf, put_buf, send_out, receive, has_room};

typedef struct pair {
    SSL_CTX *sctx, *cctx;
    end client, server;
} pair;

static void pair_init(pair *p)
{
    memset(p, 0, sizeof *p);
    p->sctx = unit_tls_server_ctx();
    p->cctx = SSL_CTX_new(TLS_client_method());
    sp_tls_init_server(&p->server.tls, p->sctx);
    sp_tls_init_client(&p->client.tls, p->cctx, "example.test", NULL);
}

static void pair_free(pair *p)
{
    CHECK_EQ_INT(p->client.bufs, 0); /* every buffer given out came back */
    CHECK_EQ_INT(p->server.bufs, 0);
    sp_tls_free(&p->client.tls);
    sp_tls_free(&p->server.tls);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
}

/* What `from` sent goes into `to`, which is pumped. */
static sp_tls_pump_status carry(end *from, end *to)
{
    sp_tls_feed(&to->tls, from->out, from->out_len);
    from->out_len = 0;
    return sp_tls_pump(&to->tls, &io, to);
}

static bool handshake(pair *p)
{
    if (sp_tls_pump(&p->client.tls, &io, &p->client) != SP_TLS_PUMP_HANDSHAKING) /* the ClientHello */
        return false;
    bool client_done = false, server_done = false;
    for (int i = 0; i < 8 && !(client_done && server_done); i++) {
        if (p->client.out_len && carry(&p->client, &p->server) == SP_TLS_PUMP_ESTABLISHED)
            server_done = true;
        if (p->server.out_len && carry(&p->server, &p->client) == SP_TLS_PUMP_ESTABLISHED)
            client_done = true;
    }
    return client_done && server_done;
}

TEST(handshake_then_plaintext_both_ways)
{
    pair p;
    pair_init(&p);
    REQUIRE(handshake(&p));
    CHECK(p.client.tls.established && p.server.tls.established);
    char big[10000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    REQUIRE(sp_tls_write(&p.client.tls, big, sizeof big) == 0);
    CHECK_EQ_INT(sp_tls_flush(&p.client.tls, &io, &p.client), 0);
    CHECK_EQ_INT(carry(&p.client, &p.server), SP_TLS_PUMP_DRAINED);
    CHECK_EQ_INT(p.server.got_len, sizeof big); /* in several buffers of BUF_CAP */
    CHECK(memcmp(p.server.got, big, sizeof big) == 0);
    REQUIRE(sp_tls_write(&p.server.tls, "pong", 4) == 0);
    CHECK_EQ_INT(sp_tls_flush(&p.server.tls, &io, &p.server), 0);
    CHECK_EQ_INT(carry(&p.server, &p.client), SP_TLS_PUMP_DRAINED);
    CHECK_EQ_INT(p.client.got_len, 4);
    CHECK(memcmp(p.client.got, "pong", 4) == 0);
    pair_free(&p);
}

TEST(a_full_owner_gets_nothing_until_it_has_room)
{
    pair p;
    pair_init(&p);
    REQUIRE(handshake(&p));
    REQUIRE(sp_tls_write(&p.client.tls, "held", 4) == 0);
    sp_tls_flush(&p.client.tls, &io, &p.client);
    p.server.full = true;
    CHECK_EQ_INT(carry(&p.client, &p.server), SP_TLS_PUMP_FULL);
    CHECK_EQ_INT(p.server.got_len, 0);
    p.server.full = false;
    CHECK_EQ_INT(sp_tls_pump(&p.server.tls, &io, &p.server), SP_TLS_PUMP_DRAINED);
    CHECK_EQ_INT(p.server.got_len, 4);
    pair_free(&p);
}

TEST(close_notify_is_the_peer_closing)
{
    pair p;
    pair_init(&p);
    REQUIRE(handshake(&p));
    sp_tls_shutdown(&p.client.tls);
    CHECK_EQ_INT(sp_tls_flush(&p.client.tls, &io, &p.client), 0);
    CHECK(p.client.out_len > 0);
    CHECK_EQ_INT(carry(&p.client, &p.server), SP_TLS_PUMP_PEER_CLOSED);
    CHECK(p.server.tls.peer_closed);
    pair_free(&p);
}

TEST(a_peer_that_is_not_tls_fails_the_handshake)
{
    pair p;
    pair_init(&p);
    static const char get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    memcpy(p.client.out, get, sizeof get - 1);
    p.client.out_len = sizeof get - 1;
    CHECK_EQ_INT(carry(&p.client, &p.server), SP_TLS_PUMP_HANDSHAKE_FAILED);
    CHECK_EQ_INT(p.server.tls.failure, SP_TLSFAIL_NOT_TLS);
    pair_free(&p);
}

TEST(an_owner_that_ends_stops_the_pump)
{
    pair p;
    pair_init(&p);
    REQUIRE(handshake(&p));
    REQUIRE(sp_tls_write(&p.client.tls, "bye", 3) == 0);
    sp_tls_flush(&p.client.tls, &io, &p.client);
    p.server.end_on_receive = true;
    CHECK_EQ_INT(carry(&p.client, &p.server), SP_TLS_PUMP_OWNER_ENDED);
    pair_free(&p);
}

TEST(no_buffer_is_out_of_memory)
{
    pair p;
    pair_init(&p);
    p.client.no_memory = true;
    CHECK_EQ_INT(sp_tls_pump(&p.client.tls, &io, &p.client), SP_TLS_PUMP_OUT_OF_MEMORY);
    CHECK_EQ_INT(sp_tls_flush(&p.client.tls, &io, &p.client), -2);
    pair_free(&p);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(handshake_then_plaintext_both_ways),
        UNIT(a_full_owner_gets_nothing_until_it_has_room),
        UNIT(close_notify_is_the_peer_closing),
        UNIT(a_peer_that_is_not_tls_fails_the_handshake),
        UNIT(an_owner_that_ends_stops_the_pump),
        UNIT(no_buffer_is_out_of_memory),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
