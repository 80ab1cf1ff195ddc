/* Heads the proxy writes (core/http/head.h): hop-by-hop fields out, X-Forwarded-* in,
 * templates replacing fields, upgrades, local answers. */
#include "http/head.h"

#include <string.h>

#include "unit.h"

static void parse(sp_http_msg *m, bool request, const char *text)
{
    size_t used;
    sp_http_msg_init(m, request, 65536);
    sp_msg_event ev = sp_http_msg_feed(m, text, strlen(text), &used);
    if (ev != SP_MSG_HEAD && ev != SP_MSG_DONE)
        unit_fail_(__FILE__, __LINE__, "test head does not parse");
}

static bool has(const sp_buf *b, const char *s) { return b->data && strstr(b->data, s) != NULL; }

TEST(request_drops_hop_by_hop_and_adds_forwarded_fields)
{
    sp_http_msg m;
    parse(&m, true, "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n"
                    "X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\n"
                    "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Keep: yes\r\n\r\n");
    sp_template t;
    char err[100];
    REQUIRE(sp_template_compile("{client_ip}:{path}", &t, err, sizeof err) == 0);
    sp_header_set sets[] = {{.name = "X-Keep", .value = t}};
    sp_template_values vals = {0};
    vals.v[SP_TV_CLIENT_IP] = "192.0.2.7";
    vals.len[SP_TV_CLIENT_IP] = 9;
    vals.v[SP_TV_PATH] = "/a";
    vals.len[SP_TV_PATH] = 2;
    sp_request_out r = {.in = &m.head, .target = "/a?b=1", .target_len = 6, .client_ip = "192.0.2.7",
                        .proto = "http", .host = "example.com", .port = 80, .sets = sets, .nsets = 1,
                        .vals = &vals};
    sp_buf out;
    sp_buf_init(&out);
    sp_head_write_request(&out, &r);
    CHECK(strncmp(out.data, "GET /a?b=1 HTTP/1.1\r\n", 21) == 0);
    CHECK(has(&out, "Host: example.com\r\n"));
    CHECK(!has(&out, "Connection"));
    CHECK(!has(&out, "X-Secret"));
    CHECK(!has(&out, "Keep-Alive"));
    CHECK(!has(&out, "TE:"));
    CHECK(has(&out, "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"));
    CHECK(has(&out, "X-Forwarded-Proto: http\r\n"));
    CHECK(!has(&out, "https"));
    CHECK(has(&out, "X-Forwarded-Host: example.com\r\n"));
    CHECK(has(&out, "X-Forwarded-Port: 80\r\n"));
    CHECK(has(&out, "X-Keep: 192.0.2.7:/a\r\n"));
    CHECK(!has(&out, "X-Keep: yes"));
    CHECK(out.len >= 4 && memcmp(out.data + out.len - 4, "\r\n\r\n", 4) == 0);
    sp_buf_free(&out);
    sp_template_free(&t);
    sp_http_msg_free(&m);
}

TEST(upgrade_passes_upgrade_and_connection)
{
    sp_http_msg m;
    parse(&m, true, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Key: x\r\n\r\n");
    sp_request_out r = {.in = &m.head, .target = "/ws", .target_len = 3, .client_ip = "1.2.3.4",
                        .proto = "http", .host = "a", .port = 80, .upgrade = true};
    sp_buf out;
    sp_buf_init(&out);
    sp_head_write_request(&out, &r);
    CHECK(has(&out, "Upgrade: websocket\r\nConnection: upgrade\r\n"));
    CHECK(has(&out, "Sec-WebSocket-Key: x\r\n"));
    sp_buf_reset(&out);
    r.upgrade = false; /* websocket disabled on the route: no Upgrade passes */
    sp_head_write_request(&out, &r);
    CHECK(!has(&out, "Upgrade"));
    sp_buf_free(&out);
    sp_http_msg_free(&m);
}

TEST(response_keeps_framing_and_adds_close_when_asked)
{
    sp_http_msg m;
    parse(&m, false, "HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Hop\r\n"
                     "X-Hop: 1\r\nServer: s\r\n\r\n");
    sp_response_out r = {.in = &m.head, .close = true};
    sp_buf out;
    sp_buf_init(&out);
    sp_head_write_response(&out, &r);
    CHECK(strncmp(out.data, "HTTP/1.1 200 Fine\r\n", 19) == 0);
    CHECK(has(&out, "Transfer-Encoding: chunked\r\n"));
    CHECK(has(&out, "Server: s\r\n"));
    CHECK(!has(&out, "X-Hop"));
    CHECK(has(&out, "Connection: close\r\n"));
    sp_buf_reset(&out);
    r.close = false;
    r.dechunk = true; /* for an HTTP/1.0 client */
    sp_head_write_response(&out, &r);
    CHECK(!has(&out, "Transfer-Encoding"));
    CHECK(!has(&out, "Connection"));
    sp_buf_free(&out);
    sp_http_msg_free(&m);
}

/* Connection naming a framing field or Host: the name is ignored and the field stays,
 * in requests (upgrading or not) and responses; other names it lists still go. */
TEST(connection_never_removes_framing_or_host)
{
    static const struct {
        bool request, upgrade;
        const char *head, *kept, *gone;
    } cases[] = {
        {true, false, "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
         "Content-Length: 5\r\n", NULL},
        {true, false, "POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, content-LENGTH, X-A\r\nX-A: 1\r\n"
         "Content-Length: 5\r\n\r\n", "Content-Length: 5\r\n", "X-A"},
        {true, false, "POST / HTTP/1.1\r\nHost: a\r\nConnection: close,transfer-encoding\r\n"
         "Transfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding: chunked\r\n", NULL},
        {true, false, "POST / HTTP/1.1\r\nConnection: keep-alive\r\nHost: a\r\nConnection:  Host ,X-B\r\n"
         "X-B: 2\r\nContent-Length: 5\r\n\r\n", "\r\nHost: a\r\n", "X-B"},
        {true, true, "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Content-Length\r\nUpgrade: websocket\r\n"
         "Content-Length: 5\r\n\r\n", "Content-Length: 5\r\n", NULL},
        {false, false, "HTTP/1.1 200 OK\r\nConnection: Content-Length, X-C\r\nX-C: 3\r\nContent-Length: 5\r\n\r\n",
         "Content-Length: 5\r\n", "X-C"},
        {false, false, "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
         "Transfer-Encoding: chunked\r\n", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sp_http_msg m;
        parse(&m, cases[i].request, cases[i].head);
        sp_buf out;
        sp_buf_init(&out);
        if (cases[i].request) {
            sp_request_out r = {.in = &m.head, .target = "/", .target_len = 1, .client_ip = "192.0.2.1",
                                .proto = "http", .host = "a", .port = 80, .upgrade = cases[i].upgrade};
            sp_head_write_request(&out, &r);
        } else {
            sp_response_out r = {.in = &m.head};
            sp_head_write_response(&out, &r);
        }
        if (!has(&out, cases[i].kept))
            fprintf(stderr, "case %zu lost \"%s\":\n%s\n", i, cases[i].kept, out.data ? out.data : "");
        CHECK(has(&out, cases[i].kept));
        CHECK(!cases[i].gone || !has(&out, cases[i].gone));
        sp_buf_free(&out);
        sp_http_msg_free(&m);
    }
}

TEST(local_answers)
{
    sp_buf out;
    sp_buf_init(&out);
    sp_head_write_local(&out, 404, NULL, NULL, false, false);
    CHECK_STR_EQ(out.data, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           "Content-Length: 14\r\n\r\n404 Not Found\n");
    sp_buf_reset(&out);
    sp_head_write_local(&out, 401, "WWW-Authenticate: Basic realm=\"x\"\r\n", NULL, true, true);
    CHECK(has(&out, "WWW-Authenticate: Basic realm=\"x\"\r\nConnection: close\r\n\r\n"));
    CHECK(!has(&out, "401 Unauthorized\n")); /* HEAD: no body */
    sp_buf_free(&out);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(request_drops_hop_by_hop_and_adds_forwarded_fields), UNIT(upgrade_passes_upgrade_and_connection),
        UNIT(response_keeps_framing_and_adds_close_when_asked), UNIT(connection_never_removes_framing_or_host),
        UNIT(local_answers),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
