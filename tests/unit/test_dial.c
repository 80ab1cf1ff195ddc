/* The dialer (core/net/dial.c) on real loopback sockets and a uv loop, with a keeper that
 * counts what the dial opens: refused, connected (preamble first), addresses in the
 * resolver's order, the per-attempt timeout, the upstream TLS handshake (done, peer
 * gone, timed out), and cancel during resolve, connect and handshake.
 * After each test every handle is closed and every lookup back. Links nothing of
 * core/http/ or core/lua/. */
#include "net/dial.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit.h"
#include "unit_tls.h"

typedef struct owner {
    uv_loop_t loop;
    sp_dial dial;
    int handles, lookups;     /* what the dial left open */
    int done_calls, attempts_started, attempts_failed;
    size_t bytes_read, bytes_written;
    sp_dial_result result;
    int status;
    uv_tcp_t *tcp;
} owner;

static void on_keeper_closed(uv_handle_t *h)
{
    owner *o = h->data;
    free(h);
    o->handles--;
}

static void keeper_adopt(void *ctx, uv_handle_t *h)
{
    owner *o = ctx;
    o->handles++;
}

static void keeper_close(void *ctx, uv_handle_t *h)
{
    h->data = ctx;
    uv_close(h, on_keeper_closed);
}

static void keeper_lookup(void *ctx, bool started)
{
    owner *o = ctx;
    o->lookups += started ? 1 : -1;
}

static void keeper_count(void *ctx, size_t read, size_t written)
{
    owner *o = ctx;
    o->bytes_read += read;
    o->bytes_written += written;
}

static const sp_dial_keeper keeper = {keeper_adopt, keeper_close, keeper_lookup, keeper_count};

static void on_done(sp_dial *d, sp_dial_result r, int status, uv_tcp_t *tcp)
{
    owner *o = d->owner;
    o->done_calls++;
    o->result = r;
    o->status = status;
    o->tcp = tcp;
}

static void on_attempt_started(sp_dial *d) { ((owner *)d->owner)->attempts_started++; }
static void on_attempt_failed(sp_dial *d, int status) { ((owner *)d->owner)->attempts_failed++; }

static const sp_dial_ops ops = {on_done, on_attempt_started, on_attempt_failed};

static void owner_init(owner *o)
{
    memset(o, 0, sizeof *o);
    uv_loop_init(&o->loop);
    sp_dial_init(&o->dial, &o->loop, &ops, &keeper, o, o);
}

/* Closes what the owner was handed, runs the loop dry and checks nothing is left. */
static void owner_finish(owner *o)
{
    if (o->tcp)
        keeper_close(o, (uv_handle_t *)o->tcp);
    o->tcp = NULL;
    uv_run(&o->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(o->handles, 0);
    CHECK_EQ_INT(o->lookups, 0);
    CHECK_EQ_INT(uv_loop_close(&o->loop), 0);
}

/* A loopback port that nothing listens on (bound once, then released). */
static uint16_t unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A listener on 127.0.0.1 that accepts one connection and collects what it receives;
 * with a TLS context it answers the handshake (through the same pump), and with
 * close_at_once it closes the connection as soon as it has it. */
typedef struct listener {
    uv_tcp_t server, peer;
    bool accepted, peer_closed, close_at_once;
    char got[256];
    size_t got_len;
    SSL_CTX *tls_ctx;
    size_t skip;              /* leading bytes that are not TLS (a preamble), collected */
    sp_tls_stream tls;
    char tls_in[32768];
} listener;

static void on_peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    listener *l = h->data;
    buf->base = l->got + l->got_len;
    buf->len = sizeof l->got - l->got_len;
}

static void on_peer_closed(uv_handle_t *h) { ((listener *)h->data)->peer_closed = true; }

static void *server_get_buf(void *ctx, size_t *cap)
{
    *cap = 16384;
    return malloc(16384);
}

static void server_put_buf(void *ctx, void *buf) { free(buf); }

static int server_send(void *ctx, void *buf, size_t len)
{
    listener *l = ctx;
    uv_buf_t b = uv_buf_init(buf, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&l->peer, &b, 1); /* a handshake flight fits a socket */
    free(buf);
    return n == (int)len ? 0 : -1;
}

static int server_receive(void *ctx, void *buf, size_t len)
{
    free(buf);
    return 0;
}

static const sp_tls_io server_io = {server_get_buf, server_put_buf, server_send, server_receive, NULL};

static void on_peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    listener *l = s->data;
    if (n > 0 && l->tls_ctx) {
        size_t plain = (size_t)n < l->skip ? (size_t)n : l->skip;
        memcpy(l->got + l->got_len, buf->base, plain);
        l->got_len += plain;
        l->skip -= plain;
        sp_tls_feed(&l->tls, buf->base + plain, (size_t)n - plain);
        sp_tls_pump(&l->tls, &server_io, l);
    } else if (n > 0) {
        l->got_len += (size_t)n;
    } else if (n < 0) {
        uv_close((uv_handle_t *)s, on_peer_closed);
    }
}

static void on_tls_peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    listener *l = h->data;
    buf->base = l->tls_in;
    buf->len = sizeof l->tls_in;
}

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    uv_tcp_init(server->loop, &l->peer);
    l->peer.data = l;
    if (uv_accept(server, (uv_stream_t *)&l->peer) == 0) {
        l->accepted = true;
        if (l->close_at_once) {
            uv_close((uv_handle_t *)&l->peer, on_peer_closed);
        } else {
            if (l->tls_ctx)
                sp_tls_init_server(&l->tls, l->tls_ctx);
            uv_read_start((uv_stream_t *)&l->peer, l->tls_ctx ? on_tls_peer_alloc : on_peer_alloc, on_peer_read);
        }
    }
    uv_close((uv_handle_t *)server, NULL); /* one connection is all a test needs */
}

static uint16_t listen_loopback(uv_loop_t *loop, listener *l)
{
    memset(l, 0, sizeof *l);
    uv_tcp_init(loop, &l->server);
    l->server.data = l;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_bind(&l->server, (struct sockaddr *)&sa, 0);
    uv_listen((uv_stream_t *)&l->server, 8, on_connection);
    int len = sizeof sa;
    uv_tcp_getsockname(&l->server, (struct sockaddr *)&sa, &len);
    return ntohs(sa.sin_port);
}

static void run_until_done(owner *o)
{
    while (o->done_calls == 0 && uv_run(&o->loop, UV_RUN_ONCE))
        ;
}

TEST(literal_addresses)
{
    struct sockaddr_storage ss;
    CHECK(sp_dial_literal("127.0.0.1", 80, &ss) && ss.ss_family == AF_INET);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&ss)->sin_port), 80);
    CHECK(sp_dial_literal("::1", 443, &ss) && ss.ss_family == AF_INET6);
    CHECK(sp_dial_literal("[::1]", 443, &ss) && ss.ss_family == AF_INET6);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 443);
    CHECK(!sp_dial_literal("localhost", 80, &ss));
    CHECK(!sp_dial_literal("[127.0.0.1", 80, &ss));
}

TEST(refused_port_reports_the_refusal)
{
    owner o;
    owner_init(&o);
    sp_dial_start(&o.dial, "127.0.0.1", unused_port(), 5000, NULL, 0, NULL);
    CHECK(sp_dial_attempting(&o.dial));
    run_until_done(&o);
    CHECK_EQ_INT(o.done_calls, 1);
    CHECK_EQ_INT(o.result, SP_DIAL_CONNECT_FAILED);
    CHECK_EQ_INT(o.status, UV_ECONNREFUSED);
    CHECK_EQ_INT(o.attempts_started, 1);
    CHECK_EQ_INT(o.attempts_failed, 1);
    CHECK(o.tcp == NULL);
    CHECK(!sp_dial_attempting(&o.dial));
    owner_finish(&o);
}

/* RFC 6761 6.4: no lookup at all, the answer a name that does not exist gets */
TEST(invalid_names_fail_without_a_lookup)
{
    owner o;
    owner_init(&o);
    sp_dial_start(&o.dial, "no-such-host.invalid", 80, 5000, NULL, 0, NULL);
    CHECK_EQ_INT(o.lookups, 0);
    CHECK_EQ_INT(o.done_calls, 1);
    CHECK_EQ_INT(o.result, SP_DIAL_RESOLVE_FAILED);
    CHECK_EQ_INT(o.status, UV_EAI_NONAME);
    CHECK_EQ_INT(o.attempts_started, 0);
    owner_finish(&o);
}

TEST(listening_port_connects_and_gets_the_preamble_first)
{
    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l);
    static const char preamble[] = "PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n";
    sp_dial_start(&o.dial, "127.0.0.1", port, 5000, preamble, sizeof preamble - 1, NULL);
    run_until_done(&o);
    REQUIRE(o.done_calls == 1);
    CHECK_EQ_INT(o.result, SP_DIAL_CONNECTED);
    REQUIRE(o.tcp != NULL);
    CHECK_EQ_INT(o.dial.preamble_len, sizeof preamble - 1);
    CHECK(o.dial.preamble == NULL); /* the copy is gone; the socket has the bytes */
    uv_buf_t after = uv_buf_init("after", 5);
    CHECK_EQ_INT(uv_try_write((uv_stream_t *)o.tcp, &after, 1), 5);
    while (l.got_len < sizeof preamble - 1 + 5 && uv_run(&o.loop, UV_RUN_ONCE))
        ;
    CHECK(l.accepted);
    CHECK_EQ_INT(l.got_len, sizeof preamble - 1 + 5);
    CHECK(memcmp(l.got, "PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nafter", l.got_len) == 0);
    owner_finish(&o);
    CHECK(l.peer_closed);
}

/* "localhost" resolves to one or more addresses (127.0.0.1, maybe ::1): they are tried in
 * the resolver's order. With listeners on every loopback address the dial gets the
 * first; with 127.0.0.1 alone the others fail first. */
TEST(addresses_tried_in_resolver_order)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    REQUIRE(getaddrinfo("localhost", NULL, &hints, &res) == 0);
    int first = 0;
    for (struct addrinfo *ai = res; ai && !first; ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            first = ai->ai_family;
    freeaddrinfo(res);
    REQUIRE(first != 0);

    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l);
    uv_tcp_t v6;
    struct sockaddr_in6 sa6;
    uv_ip6_addr("::1", port, &sa6);
    uv_tcp_init(&o.loop, &v6);
    bool both = uv_tcp_bind(&v6, (struct sockaddr *)&sa6, 0) == 0 &&
                uv_listen((uv_stream_t *)&v6, 8, NULL) == 0;
    sp_dial_start(&o.dial, "localhost", port, 5000, NULL, 0, NULL);
    CHECK(!sp_dial_attempting(&o.dial)); /* resolving first */
    CHECK_EQ_INT(o.lookups, 1);
    run_until_done(&o);
    REQUIRE(o.done_calls == 1);
    CHECK_EQ_INT(o.result, SP_DIAL_CONNECTED);
    CHECK_EQ_INT(o.attempts_failed, o.attempts_started - 1);
    REQUIRE(o.tcp != NULL);
    struct sockaddr_storage peer;
    int len = sizeof peer;
    REQUIRE(uv_tcp_getpeername(o.tcp, (struct sockaddr *)&peer, &len) == 0);
    CHECK_EQ_INT(peer.ss_family, both ? first : AF_INET);
    if (both)
        CHECK_EQ_INT(o.attempts_started, 1);
    uv_close((uv_handle_t *)&v6, NULL);
    if (!uv_is_closing((uv_handle_t *)&l.server))
        uv_close((uv_handle_t *)&l.server, NULL);
    owner_finish(&o);
}

TEST(timed_out_attempt_moves_on_and_reports_the_timeout)
{
    owner o;
    owner_init(&o);
    sp_dial_start(&o.dial, "127.0.0.1", unused_port(), 250, NULL, 0, NULL);
    REQUIRE(sp_dial_attempting(&o.dial));
    CHECK_EQ_INT(sp_dial_deadline(&o.dial), o.dial.attempt_started_ms + 250);
    sp_dial_timed_out(&o.dial); /* as the owner's timer would, past the deadline */
    CHECK_EQ_INT(o.done_calls, 1); /* the only address: the dial ends at once */
    CHECK_EQ_INT(o.result, SP_DIAL_CONNECT_FAILED);
    CHECK_EQ_INT(o.status, UV_ETIMEDOUT);
    CHECK_EQ_INT(o.attempts_failed, 0); /* the abandoned connect's callback is not reported */
    CHECK(sp_dial_deadline(&o.dial) == UINT64_MAX);
    owner_finish(&o);
    CHECK_EQ_INT(o.done_calls, 1);
}

TEST(no_timeout_means_no_deadline)
{
    owner o;
    owner_init(&o);
    sp_dial_start(&o.dial, "127.0.0.1", unused_port(), 0, NULL, 0, NULL);
    CHECK(sp_dial_attempting(&o.dial));
    CHECK(sp_dial_deadline(&o.dial) == UINT64_MAX);
    run_until_done(&o);
    owner_finish(&o);
}

TEST(cancel_during_connect_closes_the_attempt_once)
{
    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l);
    sp_dial_start(&o.dial, "127.0.0.1", port, 5000, "x", 1, NULL);
    REQUIRE(sp_dial_attempting(&o.dial));
    CHECK_EQ_INT(o.handles, 1);
    sp_dial_cancel(&o.dial);
    sp_dial_cancel(&o.dial); /* a second cancel finds nothing to do */
    CHECK(!sp_dial_attempting(&o.dial));
    CHECK(o.dial.preamble == NULL);
    if (!uv_is_closing((uv_handle_t *)&l.server))
        uv_close((uv_handle_t *)&l.server, NULL);
    owner_finish(&o); /* the close callback comes once: handles back to 0, never below */
    CHECK_EQ_INT(o.done_calls, 0);
}

TEST(cancel_during_resolve_waits_for_the_lookup)
{
    owner o;
    owner_init(&o);
    sp_dial_start(&o.dial, "localhost", 9, 5000, NULL, 0, NULL);
    CHECK_EQ_INT(o.lookups, 1);
    sp_dial_cancel(&o.dial);
    CHECK(o.dial.resolving); /* its callback still comes */
    owner_finish(&o);
    CHECK(!o.dial.resolving);
    CHECK_EQ_INT(o.done_calls, 0);
    CHECK_EQ_INT(o.attempts_started, 0);
}

TEST(an_ended_dial_starts_again)
{
    owner o;
    owner_init(&o);
    uint16_t port = unused_port();
    sp_dial_start(&o.dial, "127.0.0.1", port, 5000, NULL, 0, NULL);
    run_until_done(&o);
    REQUIRE(o.done_calls == 1);
    sp_dial_start(&o.dial, "::1", port, 5000, NULL, 0, NULL); /* the next candidate, say */
    o.done_calls = 0;
    run_until_done(&o);
    CHECK_EQ_INT(o.done_calls, 1);
    CHECK_EQ_INT(o.result, SP_DIAL_CONNECT_FAILED); /* refused, or no IPv6 here */
    owner_finish(&o);
}

TEST(tls_handshake_done_before_the_socket_is_handed_over)
{
    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l);
    l.tls_ctx = unit_tls_server_ctx();
    l.skip = 5;
    SSL_CTX *client = SSL_CTX_new(TLS_client_method());
    sp_dial_tls tls = {.ctx = client, .sni = "example.test", .verify_host = "example.test"};
    sp_dial_start(&o.dial, "127.0.0.1", port, 5000, "PRE\r\n", 5, &tls);
    run_until_done(&o);
    REQUIRE(o.done_calls == 1);
    CHECK_EQ_INT(o.result, SP_DIAL_CONNECTED);
    REQUIRE(o.tcp != NULL);
    sp_tls_stream taken;
    sp_dial_take_tls(&o.dial, &taken);
    CHECK(taken.ssl != NULL && taken.established);
    CHECK(o.dial.tls.ssl == NULL);
    CHECK(o.bytes_written > 5 && o.bytes_read > 0); /* the preamble, then the handshake */
    CHECK(l.got_len == 5 && memcmp(l.got, "PRE\r\n", 5) == 0);
    while (!l.tls.established && uv_run(&o.loop, UV_RUN_ONCE)) /* the client's Finished, sent before */
        ;
    CHECK(l.tls.established);
    CHECK(o.dial.tls_buf == NULL);
    owner_finish(&o);
    sp_tls_free(&taken);
    sp_tls_free(&l.tls);
    SSL_CTX_free(l.tls_ctx);
    SSL_CTX_free(client);
}

TEST(tls_peer_that_closes_fails_the_handshake_with_eof)
{
    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l);
    l.close_at_once = true;
    SSL_CTX *client = SSL_CTX_new(TLS_client_method());
    sp_dial_tls tls = {.ctx = client};
    sp_dial_start(&o.dial, "127.0.0.1", port, 5000, NULL, 0, &tls);
    run_until_done(&o);
    REQUIRE(o.done_calls == 1);
    CHECK_EQ_INT(o.result, SP_DIAL_TLS_FAILED);
    CHECK_EQ_INT(o.dial.tls_failure, SP_TLSFAIL_EOF);
    CHECK(o.tcp == NULL && o.dial.tls.ssl == NULL);
    owner_finish(&o);
    SSL_CTX_free(client);
}

TEST(tls_handshake_shares_the_attempts_deadline)
{
    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l); /* plain: it reads and never answers */
    SSL_CTX *client = SSL_CTX_new(TLS_client_method());
    sp_dial_tls tls = {.ctx = client};
    sp_dial_start(&o.dial, "127.0.0.1", port, 250, NULL, 0, &tls);
    uint64_t due = sp_dial_deadline(&o.dial);
    while (o.dial.handshaking == NULL && o.done_calls == 0 && uv_run(&o.loop, UV_RUN_ONCE))
        ;
    REQUIRE(o.dial.handshaking != NULL);
    CHECK(!sp_dial_attempting(&o.dial));
    CHECK_EQ_INT(sp_dial_deadline(&o.dial), due); /* the handshake is within the attempt's bound */
    sp_dial_timed_out(&o.dial);
    CHECK_EQ_INT(o.done_calls, 1);
    CHECK_EQ_INT(o.result, SP_DIAL_TLS_FAILED);
    CHECK_EQ_INT(o.dial.tls_failure, SP_TLSFAIL_TIMEOUT);
    owner_finish(&o);
    SSL_CTX_free(client);
}

TEST(cancel_during_the_handshake_closes_its_socket)
{
    owner o;
    owner_init(&o);
    listener l;
    uint16_t port = listen_loopback(&o.loop, &l);
    SSL_CTX *client = SSL_CTX_new(TLS_client_method());
    sp_dial_tls tls = {.ctx = client};
    sp_dial_start(&o.dial, "127.0.0.1", port, 5000, NULL, 0, &tls);
    while (o.dial.handshaking == NULL && o.done_calls == 0 && uv_run(&o.loop, UV_RUN_ONCE))
        ;
    REQUIRE(o.dial.handshaking != NULL);
    sp_dial_cancel(&o.dial);
    CHECK(o.dial.handshaking == NULL && o.dial.tls.ssl == NULL && o.dial.tls_buf == NULL);
    owner_finish(&o);
    CHECK_EQ_INT(o.done_calls, 0);
    SSL_CTX_free(client);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(literal_addresses),
        UNIT(refused_port_reports_the_refusal),
        UNIT(invalid_names_fail_without_a_lookup),
        UNIT(listening_port_connects_and_gets_the_preamble_first),
        UNIT(addresses_tried_in_resolver_order),
        UNIT(timed_out_attempt_moves_on_and_reports_the_timeout),
        UNIT(no_timeout_means_no_deadline),
        UNIT(cancel_during_connect_closes_the_attempt_once),
        UNIT(cancel_during_resolve_waits_for_the_lookup),
        UNIT(an_ended_dial_starts_again),
        UNIT(tls_handshake_done_before_the_socket_is_handed_over),
        UNIT(tls_peer_that_closes_fails_the_handshake_with_eof),
        UNIT(tls_handshake_shares_the_attempts_deadline),
        UNIT(cancel_during_the_handshake_closes_its_socket),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
