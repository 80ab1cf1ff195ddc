/*
 * The connection's lifecycle in net/, driven with real sockets on loopback and a fake
 * application, with neither HTTP nor Lua linked: this binary links the lower folders
 * only (splower, see CMakeLists.txt), so its link succeeding is the proof that net/
 * needs nothing above it.
 *
 * The test plays the session layer (net/app.h's sp_session_hooks): each case says what
 * its hook does with an accepted connection (sniff, install the fake app, dial the
 * route's target and pipe). Clients and targets are plain non-blocking sockets; the
 * test waits by running the worker's loop until a condition holds (bounded, with a tick
 * timer so the loop wakes), never by sleeping. After each case every connection is
 * freed, every handle of it closed, the counters by state are back to zero and exactly
 * one end reason was counted.
 *
 * Loopback tricks: "refused" is a port nobody listens on; "reset" is a target that
 * accepts and closes with SO_LINGER 0; "timeout" is a listener whose accept queue is
 * full (Linux drops further SYNs), against a short timeouts.connect.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/app.h"
#include "net/conn.h"
#include "net/conn_impl.h"
#include "net/route_state.h"
#include "unit.h"
#include "util/log.h"

/* ---- the worker, the generation and the route, built by hand ---- */

static sp_worker W;
static sp_process P;
static sp_gen G;
static sp_route R;
static sp_target T;
static uv_timer_t tick; /* wakes the loop so waits can poll plain sockets */

/* ---- loopback sockets ---- */

static struct sockaddr_in loopback(uint16_t port)
{
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A non-blocking socket, listening on an ephemeral loopback port (in *port) or, when
 * backlog < 0, connected to *port. -1 on failure. */
static int loopback_socket(uint16_t *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(backlog < 0 ? *port : 0);
    socklen_t len = sizeof a;
    bool ok = fd >= 0 && (backlog < 0 ? connect(fd, (struct sockaddr *)&a, sizeof a) == 0
                                      : bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                                        listen(fd, backlog) == 0 &&
                                        getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    if (!ok) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    *port = ntohs(a.sin_port);
    return fd;
}

static int listen_on(uint16_t *port, int backlog) { return loopback_socket(port, backlog); }
static int connect_to(uint16_t port) { return loopback_socket(&port, -1); }

static void close_with_reset(int fd)
{
    struct linger rst = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    close(fd);
}

/* A port nothing listens on: bound, then closed. */
static uint16_t closed_port(void)
{
    uint16_t port = 0;
    int fd = listen_on(&port, 1);
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- waiting on the loop ---- */

static void on_tick(uv_timer_t *t) {}

/* Runs the worker's loop until pred(arg) holds or about five seconds pass. */
static bool run_until(bool (*pred)(void *), void *arg)
{
    uint64_t end = uv_now(&W.loop) + 5000;
    while (!pred(arg)) {
        if (uv_now(&W.loop) > end)
            return false;
        uv_run(&W.loop, UV_RUN_ONCE);
    }
    return true;
}

static bool no_connections(void *arg) { return W.conns == NULL; }

/* The newest connection (the worker's list starts with it) left state *arg. */
static bool newest_left_state(void *arg)
{
    return W.conns && W.conns->state != *(sp_conn_state *)arg;
}

static bool at_most_one_connection(void *arg) { return W.nconns <= 1; }

static bool session_sniffed(void *arg);
static bool app_has_target(void *arg);

/* Bytes a plain socket received, gathered across waits. */
typedef struct peer {
    int fd;
    char got[256];
    size_t len;
    bool eof, reset;
} peer;

static bool peer_read(peer *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, p->got + p->len, sizeof p->got - 1 - p->len, 0);
        if (n > 0) {
            p->len += (size_t)n;
            p->got[p->len] = 0;
            continue;
        }
        if (n == 0)
            p->eof = true;
        else if (errno == ECONNRESET)
            p->reset = true;
        return n == 0 || (n < 0 && errno != EAGAIN);
    }
}

static bool peer_got_eof(void *arg)
{
    peer *p = arg;
    peer_read(p);
    return p->eof;
}

typedef struct wanted {
    peer *p;
    const char *text;
} wanted;

static bool peer_got(void *arg)
{
    wanted *w = arg;
    peer_read(w->p);
    return strstr(w->p->got, w->text) != NULL;
}

/* A target on loopback: the listener, and the connection the proxy makes to it. */
typedef struct target {
    int lfd;
    peer conn;
} target;

static bool target_accepted(void *arg)
{
    target *t = arg;
    if (t->conn.fd < 0) {
        t->conn.fd = accept(t->lfd, NULL, NULL);
        if (t->conn.fd >= 0)
            fcntl(t->conn.fd, F_SETFL, O_NONBLOCK);
    }
    return t->conn.fd >= 0;
}

/* ---- the fake application ---- */

typedef struct fake_calls {
    int input, side_ended, target_ready, target_failed, closing, abort, release, stopping;
    size_t input_bytes;
    sp_end_reason failed_why;
} fake_calls;

static fake_calls calls;

/* What each case's session hook does with an accepted connection. */
typedef enum { BEGIN_APP, BEGIN_APP_DIAL, BEGIN_SNIFF, BEGIN_PIPE } begin_mode;
static begin_mode mode;
static int sniffed_calls;
static sp_conn *last_conn;

static void fake_input(sp_conn *c, sp_side *from, void *buf, size_t len)
{
    calls.input++;
    calls.input_bytes += len;
    if (from == &c->client)
        sp_pipe_send(c, &c->client, buf, len); /* an echo: the connection's own writes */
    else
        sp_bufpool_put(&c->w->pool, buf);
}

static void fake_side_ended(sp_conn *c, sp_side *from, bool error, sp_end_reason reason)
{
    calls.side_ended++;
    if (error)
        sp_conn_abort(c, reason);
    else
        sp_conn_close(c, from == &c->client ? SP_END_CLIENT_CLOSED : SP_END_TARGET_CLOSED);
}

static void fake_worker_stopping(sp_conn *c)
{
    calls.stopping++;
    sp_conn_close(c, SP_END_SHUTDOWN);
}

static void fake_target_ready(sp_conn *c)
{
    calls.target_ready++;
    c->target_ready = true;
    sp_conn_set_state(c, SP_STATE_LUA); /* the app drives again, and reads its target */
    sp_pipe_start_reading(c, &c->target);
    sp_conn_arm_timer(c);
}

static void fake_target_failed(sp_conn *c, sp_end_reason why)
{
    calls.target_failed++;
    calls.failed_why = why;
    sp_conn_abort(c, why);
}

static bool app_has_target(void *arg) { return calls.target_ready > 0; }

static void fake_closing(sp_conn *c) { calls.closing++; }
static void fake_abort(sp_conn *c) { calls.abort++; }

static void fake_release(sp_conn *c)
{
    calls.release++;
    free(c->app_ctx); /* freed exactly once, or ASan tells */
}

static const sp_app_ops fake_app = {
    .state = SP_STATE_LUA,
    .input = fake_input,
    .side_ended = fake_side_ended,
    .deadline = sp_conn_stream_deadline,
    .timeout = sp_conn_stream_timeout,
    .worker_stopping = fake_worker_stopping,
    .target_ready = fake_target_ready,
    .target_failed = fake_target_failed,
    .closing = fake_closing,
    .abort = fake_abort,
    .release = fake_release,
};

/* ---- the session hooks the test installs ---- */

static void test_begin(sp_conn *c)
{
    last_conn = c;
    c->route = &R;
    switch (mode) {
    case BEGIN_SNIFF:
        sp_conn_set_state(c, SP_STATE_SNIFFING);
        sp_conn_arm_timer(c);
        sp_pipe_start_reading(c, &c->client);
        return;
    case BEGIN_PIPE:
        sp_conn_set_state(c, SP_STATE_CONNECTING);
        sp_conn_arm_timer(c);
        sp_pipe_start_reading(c, &c->client);
        sp_connect_next(c);
        return;
    case BEGIN_APP:
    case BEGIN_APP_DIAL:
        c->app = &fake_app;
        c->app_ctx = malloc(16);
        if (mode == BEGIN_APP) {
            sp_conn_set_state(c, SP_STATE_LUA);
            sp_conn_arm_timer(c);
            sp_pipe_start_reading(c, &c->client);
            return;
        }
        sp_conn_set_state(c, SP_STATE_CONNECTING);
        sp_conn_arm_timer(c);
        sp_connect_next(c);
        return;
    }
}

static void test_sniffed(sp_conn *c) { sniffed_calls++; }

static bool session_sniffed(void *arg) { return sniffed_calls > 0; }
static void test_handshake_done(sp_conn *c) {}
static void test_route_stream(sp_conn *c, const sp_route *r) {}

static const sp_session_hooks test_session = {
    .begin = test_begin,
    .sniffed = test_sniffed,
    .handshake_done = test_handshake_done,
    .route_stream = test_route_stream,
};

/* ---- the fixture ---- */

static int proxy_lfd;
static uint16_t proxy_port;

static void count_handle(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&tick)
        (*(int *)arg)++;
}

static int open_handles(void)
{
    int n = 0;
    uv_walk(&W.loop, count_handle, &n);
    return n;
}

static uint64_t live_by_state(void)
{
    uint64_t n = 0;
    for (int s = 0; s < SP_STATE_COUNT; s++)
        n += sp_counter_get(&W.counters.by_state[s]);
    return n;
}

static uint64_t ended_total(void)
{
    uint64_t n = 0;
    for (int r = 0; r < SP_END_COUNT; r++)
        n += sp_counter_get(&W.counters.ended[r]);
    return n;
}

/* Each case starts from defaults; what it changes it sets after this. */
static void fresh_case(begin_mode m)
{
    mode = m;
    memset(&calls, 0, sizeof calls);
    sniffed_calls = 0;
    last_conn = NULL;
    sp_timeouts *t = &G.settings.timeouts;
    memset(t, 0, sizeof *t);
    t->connect = 5000;
    t->initial_data = 5000;
    t->proxy_header = 5000;
    G.settings.accept_proxy_protocol = false;
    R.half_open = false;
    T.port = 0;
    W.route_states->at[0].rr_next = 0;
}

/* Accepts one client the way a listener does and hands it to net/. */
static int accept_client(void)
{
    int cfd = connect_to(proxy_port);
    if (cfd < 0)
        return -1;
    struct sockaddr_storage peer_addr;
    socklen_t len = sizeof peer_addr;
    int fd = accept(proxy_lfd, (struct sockaddr *)&peer_addr, &len); /* queued by connect */
    if (fd < 0) {
        close(cfd);
        return -1;
    }
    sp_conn_accept(&W, fd, (struct sockaddr *)&peer_addr, proxy_port, NULL);
    return cfd;
}

/* Opens a target that the route's one candidate names. */
static bool target_open(target *t)
{
    memset(t, 0, sizeof *t);
    t->conn.fd = -1;
    t->lfd = listen_on(&T.port, 8);
    return t->lfd >= 0;
}

static void target_close(target *t)
{
    if (t->conn.fd >= 0)
        close(t->conn.fd);
    close(t->lfd);
}

/* A client through the proxy to target t, once the bytes flow both ways. */
static bool pipe_client(target *t, peer *client)
{
    memset(client, 0, sizeof *client);
    client->fd = accept_client();
    sp_conn_state connecting = SP_STATE_CONNECTING;
    return client->fd >= 0 && run_until(target_accepted, t) && run_until(newest_left_state, &connecting);
}

/* After a case: the connection ended with `why`, counted once, and left nothing open. */
static void expect_ended(sp_end_reason why, uint64_t ended_before, uint64_t why_before)
{
    CHECK(run_until(no_connections, NULL));
    CHECK_EQ_INT(W.nconns, 0);
    CHECK_EQ_INT(atomic_load(&P.active), 0);
    CHECK_EQ_INT(live_by_state(), 0);
    CHECK_EQ_INT(open_handles(), 0);
    CHECK_EQ_INT(ended_total(), ended_before + 1);
    if (sp_counter_get(&W.counters.ended[why]) != why_before + 1)
        for (int r = 0; r < SP_END_COUNT; r++)
            if (sp_counter_get(&W.counters.ended[r]))
                fprintf(stderr, "    ended %s: %llu\n", sp_end_reason_name(r),
                        (unsigned long long)sp_counter_get(&W.counters.ended[r]));
    CHECK_EQ_INT(sp_counter_get(&W.counters.ended[why]), why_before + 1);
}

#define BEFORE(why) uint64_t ended_before = ended_total(), why_before = sp_counter_get(&W.counters.ended[why])
#define AFTER(why) expect_ended(why, ended_before, why_before)

/* A client accepted (as the case says) whose connection ends with `why` on its own. */
static void ends_by_itself(sp_end_reason why)
{
    BEFORE(why);
    int cfd = accept_client();
    REQUIRE(cfd >= 0);
    AFTER(why);
    close(cfd);
}

/* ---- the cases ---- */

/* Accept, the app's input (an echo), the client's FIN: a flushed close, one release. */
TEST(accept_echo_client_closes)
{
    fresh_case(BEGIN_APP);
    BEFORE(SP_END_CLIENT_CLOSED);
    peer client = {.fd = accept_client()};
    REQUIRE(client.fd >= 0);
    REQUIRE(last_conn && last_conn->state == SP_STATE_LUA);
    CHECK_EQ_INT(W.nconns, 1);
    CHECK_EQ_INT(sp_counter_get(&W.counters.by_state[SP_STATE_LUA]), 1);
    REQUIRE(send(client.fd, "hello", 5, 0) == 5);
    wanted echo = {&client, "hello"};
    CHECK(run_until(peer_got, &echo));
    shutdown(client.fd, SHUT_WR);
    CHECK(run_until(peer_got_eof, &client)); /* our FIN after the flushed close */
    close(client.fd);
    AFTER(SP_END_CLIENT_CLOSED);
    CHECK_EQ_INT(calls.input_bytes, 5);
    CHECK_EQ_INT(calls.side_ended, 1);
    CHECK_EQ_INT(calls.closing, 1);
    CHECK_EQ_INT(calls.release, 1);
}

/* A client that sends nothing while its first bytes are awaited. */
TEST(initial_data_timeout)
{
    fresh_case(BEGIN_SNIFF);
    G.settings.timeouts.initial_data = 30;
    ends_by_itself(SP_END_INITIAL_DATA_TIMEOUT);
    CHECK_EQ_INT(sniffed_calls, 0);
}

/* The first bytes reach the session's sniff hook, all kept in c->sniffed. */
TEST(sniffed_bytes_reach_the_session)
{
    fresh_case(BEGIN_SNIFF);
    BEFORE(SP_END_SHUTDOWN);
    int cfd = accept_client();
    REQUIRE(cfd >= 0);
    REQUIRE(send(cfd, "GET", 3, 0) == 3);
    CHECK(run_until(session_sniffed, NULL));
    CHECK_EQ_INT(last_conn->sniffed.len, 3);
    sp_conn_abort(last_conn, SP_END_SHUTDOWN);
    AFTER(SP_END_SHUTDOWN);
    close(cfd);
}

/* A piped stream where nothing moves for timeouts.inactivity. */
TEST(inactivity_timeout)
{
    fresh_case(BEGIN_PIPE);
    G.settings.timeouts.inactivity = 40;
    target t;
    REQUIRE(target_open(&t));
    BEFORE(SP_END_INACTIVITY_TIMEOUT);
    peer client;
    CHECK(pipe_client(&t, &client));
    AFTER(SP_END_INACTIVITY_TIMEOUT);
    close(client.fd);
    target_close(&t);
}

/* Sends text from one plain socket and waits until the other has it. */
static bool passes(peer *from, peer *to, const char *text)
{
    wanted w = {to, text};
    return send(from->fd, text, strlen(text), 0) == (ssize_t)strlen(text) && run_until(peer_got, &w);
}

/* Half-open: one side's FIN reaches the other, which still sends back; then it closes
 * and the connection ends with `why`. */
static void half_close(bool client_first, sp_end_reason why)
{
    fresh_case(BEGIN_PIPE);
    R.half_open = true;
    target t;
    REQUIRE(target_open(&t));
    BEFORE(why);
    peer client;
    REQUIRE(pipe_client(&t, &client));
    peer *first = client_first ? &client : &t.conn, *second = client_first ? &t.conn : &client;
    CHECK(passes(first, second, "ask"));
    shutdown(first->fd, SHUT_WR);
    CHECK(run_until(peer_got_eof, second));
    CHECK(passes(second, first, "answer"));
    close(second->fd);
    if (second == &t.conn)
        t.conn.fd = -1;
    CHECK(run_until(peer_got_eof, first));
    AFTER(why);
    if (first == &client)
        close(client.fd);
    target_close(&t);
}

TEST(half_close_client_first) { half_close(true, SP_END_TARGET_CLOSED); }
TEST(half_close_target_first) { half_close(false, SP_END_CLIENT_CLOSED); }

/* Not half-open: the client's FIN ends the pipe with a flushed close. */
TEST(client_fin_closes_pipe)
{
    fresh_case(BEGIN_PIPE);
    target t;
    REQUIRE(target_open(&t));
    BEFORE(SP_END_CLIENT_CLOSED);
    peer client;
    REQUIRE(pipe_client(&t, &client));
    CHECK(passes(&client, &t.conn, "bye"));
    shutdown(client.fd, SHUT_WR);
    CHECK(run_until(peer_got_eof, &t.conn));
    CHECK(run_until(peer_got_eof, &client));
    AFTER(SP_END_CLIENT_CLOSED);
    close(client.fd);
    target_close(&t);
}

/* The app's target refuses: the app hears why and ends the connection. */
TEST(target_refused)
{
    fresh_case(BEGIN_APP_DIAL);
    T.port = closed_port();
    ends_by_itself(SP_END_CONNECT_REFUSED);
    CHECK_EQ_INT(calls.target_failed, 1);
    CHECK_EQ_INT(calls.failed_why, SP_END_CONNECT_REFUSED);
    CHECK_EQ_INT(calls.target_ready, 0);
    CHECK_EQ_INT(calls.abort, 1);
    CHECK_EQ_INT(calls.release, 1);
}

/* A plain pipe whose target refuses: the client is closed with that reason. */
TEST(pipe_target_refused)
{
    fresh_case(BEGIN_PIPE);
    T.port = closed_port();
    ends_by_itself(SP_END_CONNECT_REFUSED);
}

/* The target accepts, then resets: the app hears a side that failed. */
TEST(target_reset)
{
    fresh_case(BEGIN_APP_DIAL);
    target t;
    REQUIRE(target_open(&t));
    BEFORE(SP_END_TARGET_RESET);
    int cfd = accept_client();
    REQUIRE(cfd >= 0);
    REQUIRE(run_until(target_accepted, &t));
    REQUIRE(run_until(app_has_target, NULL)); /* a reset before that fails the connect */
    close_with_reset(t.conn.fd);
    t.conn.fd = -1;
    AFTER(SP_END_TARGET_RESET);
    CHECK_EQ_INT(calls.target_ready, 1);
    CHECK_EQ_INT(calls.side_ended, 1);
    CHECK_EQ_INT(calls.release, 1);
    close(cfd);
    target_close(&t);
}

/* A listener whose accept queue is full drops further SYNs: a connect that cannot
 * complete, on loopback. The route's candidate names it. */
typedef struct full_listener {
    int lfd;
    int fillers[4];
} full_listener;

static bool fill_backlog(full_listener *f)
{
    f->lfd = listen_on(&T.port, 0);
    if (f->lfd < 0)
        return false;
    struct sockaddr_in a = loopback(T.port);
    /* backlog 0 queues one; a few more make sure it is full (their SYNs are dropped) */
    for (int i = 0; i < 4; i++) {
        f->fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (f->fillers[i] >= 0)
            connect(f->fillers[i], (struct sockaddr *)&a, sizeof a);
    }
    return true;
}

static void empty_backlog(full_listener *f)
{
    for (int i = 0; i < 4; i++)
        if (f->fillers[i] >= 0)
            close(f->fillers[i]);
    close(f->lfd);
}

/* The target never completes the connect within timeouts.connect. */
TEST(target_connect_timeout)
{
    fresh_case(BEGIN_APP_DIAL);
    G.settings.timeouts.connect = 50;
    full_listener full;
    REQUIRE(fill_backlog(&full));
    ends_by_itself(SP_END_CONNECT_TIMEOUT);
    CHECK_EQ_INT(calls.target_failed, 1);
    CHECK_EQ_INT(calls.failed_why, SP_END_CONNECT_TIMEOUT);
    empty_backlog(&full);
}

/* Aborts the newest connection in the state it is in, and checks the one end. */
static void abort_now_and_check(sp_conn_state expect_state)
{
    BEFORE(SP_END_SHUTDOWN);
    sp_conn *c = W.conns; /* the newest: its session may not have begun */
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_EQ_INT(c->state, expect_state);
    CHECK_EQ_INT(sp_counter_get(&W.counters.by_state[expect_state]), 1);
    sp_conn_abort(c, SP_END_SHUTDOWN);
    sp_conn_abort(c, SP_END_INTERNAL_ERROR); /* a second end changes nothing */
    AFTER(SP_END_SHUTDOWN);
}

/* Accepts a client in mode m and aborts it in the state it reaches. */
static void abort_accepted(begin_mode m, bool proxy_header, sp_conn_state expect_state)
{
    fresh_case(m);
    G.settings.accept_proxy_protocol = proxy_header;
    int cfd = accept_client();
    CHECK(cfd >= 0);
    abort_now_and_check(expect_state);
    close(cfd);
}

TEST(abort_in_every_state)
{
    abort_accepted(BEGIN_APP, true, SP_STATE_PROXY_HEADER); /* a trusted proxy's header */
    abort_accepted(BEGIN_SNIFF, false, SP_STATE_SNIFFING);

    full_listener full; /* connecting to a target that cannot answer */
    REQUIRE(fill_backlog(&full));
    uint16_t unanswered = T.port;
    fresh_case(BEGIN_PIPE);
    T.port = unanswered;
    int cfd = accept_client();
    REQUIRE(cfd >= 0);
    abort_now_and_check(SP_STATE_CONNECTING);
    close(cfd);
    empty_backlog(&full);

    fresh_case(BEGIN_PIPE);
    target t;
    REQUIRE(target_open(&t));
    peer client;
    REQUIRE(pipe_client(&t, &client));
    abort_now_and_check(SP_STATE_PIPING);
    close(client.fd);
    target_close(&t);

    abort_accepted(BEGIN_APP, false, SP_STATE_LUA); /* the application's own state */
    CHECK(calls.abort >= 1); /* each abort asks the app to close its handles: harmless */
    CHECK_EQ_INT(calls.release, 1);

    /* closing: the client has not closed its side, so the close lingers */
    fresh_case(BEGIN_APP);
    cfd = accept_client();
    REQUIRE(cfd >= 0);
    BEFORE(SP_END_HANDLER_DONE);
    sp_conn_close(last_conn, SP_END_HANDLER_DONE);
    CHECK_EQ_INT(last_conn->state, SP_STATE_CLOSING);
    sp_conn_abort(last_conn, SP_END_SHUTDOWN); /* the first end's reason stays */
    AFTER(SP_END_HANDLER_DONE);
    close(cfd);
}

/* A trusted proxy's PROXY header names the real client, then the session begins. */
TEST(proxy_header_then_begin)
{
    fresh_case(BEGIN_APP);
    G.settings.accept_proxy_protocol = true;
    BEFORE(SP_END_CLIENT_CLOSED);
    int cfd = accept_client();
    REQUIRE(cfd >= 0);
    static const char hdr[] = "PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\nhi";
    REQUIRE(send(cfd, hdr, sizeof hdr - 1, 0) == (ssize_t)(sizeof hdr - 1));
    sp_conn *c = W.conns;
    sp_conn_state reading_header = SP_STATE_PROXY_HEADER;
    REQUIRE(run_until(newest_left_state, &reading_header));
    REQUIRE(c->state == SP_STATE_LUA);
    char ip[SP_IP_STRLEN];
    sp_ip_format(&c->info.client_ip, ip, sizeof ip);
    CHECK_STR_EQ(ip, "192.0.2.7");
    CHECK_EQ_INT(sp_counter_get(&W.counters.proxy_headers_accepted), 1);
    shutdown(cfd, SHUT_WR);
    AFTER(SP_END_CLIENT_CLOSED);
    close(cfd);
}

/* Graceful stop: the app's idle connection ends at once, a piped stream carries on until
 * the drain deadline ends it. */
TEST(graceful_drain)
{
    fresh_case(BEGIN_APP);
    target t;
    REQUIRE(target_open(&t));
    uint64_t ended_before = ended_total();
    uint64_t shutdowns = sp_counter_get(&W.counters.ended[SP_END_SHUTDOWN]);
    int idle = accept_client();
    REQUIRE(idle >= 0);
    mode = BEGIN_PIPE;
    peer busy;
    REQUIRE(pipe_client(&t, &busy));
    sp_conn *piped = last_conn;
    CHECK_EQ_INT(W.nconns, 2);

    sp_conns_stop_idle(&W);
    CHECK_EQ_INT(calls.stopping, 1);
    CHECK_EQ_INT(piped->state, SP_STATE_PIPING);
    close(idle); /* the idle one's lingering close ends with its client */
    CHECK(run_until(at_most_one_connection, NULL));
    CHECK(W.conns == piped);

    sp_conns_abort_all(&W, SP_END_SHUTDOWN); /* the drain deadline */
    CHECK(run_until(no_connections, NULL));
    CHECK_EQ_INT(atomic_load(&P.active), 0);
    CHECK_EQ_INT(live_by_state(), 0);
    CHECK_EQ_INT(open_handles(), 0);
    CHECK_EQ_INT(ended_total(), ended_before + 2);
    CHECK_EQ_INT(sp_counter_get(&W.counters.ended[SP_END_SHUTDOWN]), shutdowns + 2);
    close(busy.fd);
    target_close(&t);
}

int main(int argc, char **argv)
{
    sp_log_set_level(SP_LOG_ERROR);
    uv_loop_init(&W.loop);
    uv_timer_init(&W.loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    W.process = &P;
    W.gen = &G;
    G.refs = 1; /* the test's own: the generation is never freed */
    const char *why;
    sp_ip_list_add(&G.settings.proxy_ips, "127.0.0.1", &why);
    T.host = "127.0.0.1";
    T.port_kind = SP_PORT_FIXED;
    R.name = "test";
    R.index = 1;
    R.targets = &T;
    R.ntargets = 1;
    W.route_states = sp_route_states_new(1, NULL); /* no route figures: admission is the session's */
    sp_conn_install_session(&test_session);
    proxy_lfd = listen_on(&proxy_port, 64);
    if (proxy_lfd < 0) {
        perror("listen");
        return 1;
    }

    static const unit_test tests[] = {
        UNIT(accept_echo_client_closes),
        UNIT(initial_data_timeout),
        UNIT(sniffed_bytes_reach_the_session),
        UNIT(inactivity_timeout),
        UNIT(half_close_client_first),
        UNIT(half_close_target_first),
        UNIT(client_fin_closes_pipe),
        UNIT(target_refused),
        UNIT(pipe_target_refused),
        UNIT(target_reset),
        UNIT(target_connect_timeout),
        UNIT(abort_in_every_state),
        UNIT(proxy_header_then_begin),
        UNIT(graceful_drain),
    };
    int rc = unit_main(tests, UNIT_COUNT(tests), argc, argv);
    close(proxy_lfd);
    sp_ip_list_free(&G.settings.proxy_ips);
    for (void *buf; (buf = W.pool.n ? W.pool.free[--W.pool.n] : NULL);)
        free(buf);
    free(W.pool.free);
    sp_route_states_unref(W.route_states);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&W.loop, UV_RUN_DEFAULT);
    uv_loop_close(&W.loop);
    return rc;
}
