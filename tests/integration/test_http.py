"""The HTTP/1.1 reverse-proxy engine (issue 4): routing per request (Host, path with params
and dot segments, headers), the upstream keep-alive pool (reuse, limit, idle timeout, retry
of a stale connection), streaming bodies (1 GiB both ways with bounded RSS, chunked,
until-close, 100-continue, HEAD, 1xx, pipelining), headers (hop-by-hop, X-Forwarded-*,
templates, rewrite_path), WebSocket (plain and TLS-terminated, past http_idle), redirect,
block, basic auth, rate limit, every error status, request smuggling and the ACME
challenge path; after every test nothing leaks (sp.assert_clean, via done()).

Backends are httputil.HttpBackend threads that record every request and every raw byte.
Where the contract leaves a choice open, the tests expect what nginx / HAProxy do (said
where it matters)."""
import base64
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
import zlib
from urllib.parse import quote

import pytest

import httputil as hu
import sp
import tlsutil
from httputil import Client, fetch, http_route

MiB = 1 << 20
GiB = 1 << 30
WORKERS = 2


_backends = []  # this test's HTTP backends, closed by finish()


@pytest.fixture(autouse=True)
def _track_backends():
    _backends.clear()
    yield
    _backends.clear()


def backend(serve, name, **kw):
    srv = hu.backend(serve, name, **kw)
    _backends.append(srv)
    return srv


def done(p):
    """The leak check, after closing this test's backends: pooled upstream connections
    end at once (the proxy must notice a backend closing an idle connection) instead of
    after upstream_idle, which keeps the run short."""
    for b in _backends:
        b.close()
    sp.assert_clean(p)


def http_proxy(start_proxy, routes, **config):
    """A proxy with HTTP-friendly defaults: 2 workers, pooled upstream connections idle
    out after 300 ms (so the leak check soon finds the fds back at the baseline)."""
    cfg = {"workers": WORKERS, "timeouts": {"upstream_idle": 300}}
    for k, v in config.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    cfg["routes"] = routes
    return start_proxy(cfg)


def one_route(start_proxy, b, **config):
    """http_proxy with one route "a" on a fresh port to backend b: (port, proxy)."""
    port = sp.free_port()
    return port, http_proxy(start_proxy, [http_route("a", port, "127.0.0.1", b.port)], **config)


def error_body_ok(r, status):
    """The proxy's own error answers: that status, a short text/plain body that starts
    with the status code."""
    assert r.status == status, r
    ctype = (r.header("content-type") or "").lower()
    assert ctype.startswith("text/plain"), r
    assert r.body.startswith(str(status).encode()), r
    assert len(r.body) < 1024, r


def backend_of(r):
    return r.header("x-backend")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not os.path.exists(tlsutil.OPENSSL):
        pytest.skip("the openssl command-line tool is missing")
    return tlsutil.PKI(tmp_path_factory.mktemp("pki-http"))


# ---------------------------------------------------------------------------- the tools

def test_harness_backend_and_client_speak_http(serve):
    """The test tools themselves, without the proxy: the backend's answers, framing,
    pipelining, 100-continue and WebSocket echo as the client helpers see them."""
    b = backend(serve, "A")
    with Client(b.port) as c:
        r = c.get("/x?y=1")
        assert (r.status, r.json()["target"], backend_of(r)) == (200, "/x?y=1", "A")
        c.send(hu.build_request("POST", "/c", headers=[("Transfer-Encoding", "chunked")])
               + b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n")
        assert c.response().json()["body"] == "hello!"
        r = c.request("HEAD", "/body?size=5000")
        assert (r.status, r.header("content-length"), r.body) == (200, "5000", b"")
        n = 3 * MiB + 5
        r = c.get(f"/body?size={n}&mode=chunked")
        assert r.framing == "chunked" and (len(r.body), zlib.crc32(r.body)) == hu.pattern_crc(n)
        assert [s for s, _ in c.get("/early").interim] == [103]
        c.send(hu.build_request("GET", "/sleep?ms=100") + hu.build_request("GET", "/a"))
        assert [c.response().json()["target"] for _ in range(2)] == ["/sleep?ms=100", "/a"]
        r, key = hu.ws_upgrade(c)
        assert r.status == 101 and r.header("sec-websocket-accept") == hu.ws_accept(key)
        hu.ws_echo_check(c, b"x" * 70000)
        hu.ws_close(c)
    with Client(b.port) as c:
        r = c.get("/body?size=1000&mode=close")
        assert (r.version, r.framing, len(r.body)) == ("HTTP/1.0", "close", 1000)
    with Client(b.port) as c:
        c.send(hu.build_request("POST", "/e", headers=[("Expect", "100-continue"),
                                                       ("Content-Length", "3")]))
        assert c.reader.head().startswith(b"HTTP/1.1 100 ")
        c.send(b"abc")
        assert c.response().json()["body"] == "abc"
    sp.wait_until(lambda: len(b.app.closed) == 3, 5, msg="backend connections ended")
    assert b"/x?y=1" in b.app.all_raw()


# ---------------------------------------------------------------------------- routing

def test_host_routing_exact_wildcard_fallback_and_404(start_proxy, serve):
    a, w, d = (backend(serve, n) for n in ("A", "WILD", "DEFAULT"))
    port, strict = sp.free_ports(2)
    p = http_proxy(start_proxy, [
        http_route("a", port, "127.0.0.1", a.port, domains="a.test"),
        http_route("wild", port, "127.0.0.1", w.port, domains="*.b.test"),
        http_route("any", port, "127.0.0.1", d.port, domains="*"),
        http_route("only", strict, "127.0.0.1", a.port, domains=["a.test", "c.test"]),
    ])
    cases = {"a.test": "A", f"a.test:{port}": "A", "A.Test": "A", "x.b.test": "WILD",
             "y.x.b.test": "WILD", "b.test": "DEFAULT", "other.test": "DEFAULT",
             "xb.test": "DEFAULT", "a.test.": "A", f"a.test.:{port}": "A"}
    for host, want in cases.items():
        r = fetch(port, "/", host=host)
        assert (r.status, backend_of(r)) == (200, want), (host, r)
        assert r.json()["target"] == "/"
    # HTTP/1.0 without a Host: "*" matches even none
    with Client(port) as c:
        r = c.request("GET", "/", host=None, version="HTTP/1.0")
    assert (r.status, backend_of(r)) == (200, "DEFAULT"), r

    assert backend_of(fetch(strict, "/", host="c.test")) == "A"
    r = fetch(strict, "/", host="nope.test")
    error_body_ok(r, 404)
    assert all("nope.test" not in str(req) for req in a.app.requests)
    done(p)


def test_path_routing_exact_params_prefix_and_dot_segments(start_proxy, serve):
    exact, p42, param, static = (backend(serve, n) for n in ("EXACT", "P42", "PARAM", "STATIC"))
    port = sp.free_port()
    pick = sp.Lua(f"function(ctx) if ctx.params and ctx.params.id == \"42\" then "
                  f"return {p42.port} end return {param.port} end")
    p = http_proxy(start_proxy, [
        http_route("exact", port, "127.0.0.1", exact.port, path="/a"),
        http_route("param", port, "127.0.0.1", pick, path="/users/:id"),
        http_route("static", port, "127.0.0.1", static.port, path="/static/*"),
        http_route("admin", port, type="block", path="/admin"),
    ])
    routed = {"/a": "EXACT", "/a?x=1": "EXACT", "/users/42": "P42", "/users/7": "PARAM",
              "/users/42?x=1": "P42", "/static": "STATIC", "/static/": "STATIC",
              "/static/css/x.css": "STATIC", "/static/./css": "STATIC",
              "/static//css": "STATIC"}
    with Client(port) as c:
        for target, want in routed.items():
            r = c.get(target)
            assert (r.status, backend_of(r)) == (200, want), (target, r)
            assert r.json()["target"] == target, "forwarded as sent (no rewrite_path)"
    for target in ("/nothing", "/a/b", "/ab", "/users/", "/users/1/x", "/staticx", "/"):
        r = fetch(port, target)
        error_body_ok(r, 404)
    # dot segments (plain and percent-encoded) cannot escape the /static/* route
    for target in ("/static/../admin", "/static/%2e%2e/admin", "/static/%2E%2E/admin",
                   "/a/../admin", "/static/x/../../admin?q=1"):
        r = fetch(port, target)
        error_body_ok(r, 403)
    assert not any("admin" in t for t in static.app.paths() + exact.app.paths())
    done(p)


def test_header_routing_names_case_insensitive_values_exact_or_regex(start_proxy, serve):
    prod, curl, d = (backend(serve, n) for n in ("PROD", "CURL", "DEFAULT"))
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("prod", port, "127.0.0.1", prod.port, priority=10,
                   headers={"x-env": "prod"}),
        http_route("curl", port, "127.0.0.1", curl.port, priority=5,
                   headers={"User-Agent": "/^curl.[0-9]+/"}),
        http_route("default", port, "127.0.0.1", d.port),
    ])
    cases = [([("X-Env", "prod")], "PROD"), ([("x-ENV", "prod")], "PROD"),
             ([("X-Env", "PROD")], "DEFAULT"), ([("X-Env", "prod2")], "DEFAULT"),
             ([("X-Env", "pro")], "DEFAULT"), ([], "DEFAULT"),
             ([("User-Agent", "curl/8.1")], "CURL"), ([("user-agent", "curl/x")], "DEFAULT"),
             ([("User-Agent", "xcurl/8")], "DEFAULT"), ([("User-Agent", "CURL/8")], "DEFAULT"),
             ([("User-Agent", "curl/8"), ("X-Env", "prod")], "PROD")]
    with Client(port) as c:
        for headers, want in cases:
            r = c.get("/", headers=headers)
            assert (r.status, backend_of(r)) == (200, want), (headers, r)
    done(p)


def test_each_request_on_a_keepalive_connection_is_routed_on_its_own(start_proxy, serve):
    a, b, s = (backend(serve, n) for n in ("A", "B", "STATIC"))
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("a", port, "127.0.0.1", a.port, domains="a.test"),
        http_route("b", port, "127.0.0.1", b.port, domains="b.test"),
        http_route("static", port, "127.0.0.1", s.port, domains="a.test", path="/static/*",
                   priority=5),
    ])
    seq = [("a.test", "/1", "A"), ("b.test", "/2", "B"), ("a.test", "/3", "A"),
           ("a.test", "/static/4", "STATIC"), ("b.test", "/static/5", "B"),
           ("a.test", "/6", "A")]
    with Client(port) as c:
        for host, target, want in seq:
            r = c.get(target, host=host)
            assert (r.status, backend_of(r), r.json()["target"]) == (200, want, target), r
    assert a.app.paths() == ["/1", "/3", "/6"]
    assert b.app.paths() == ["/2", "/static/5"]
    assert s.app.paths() == ["/static/4"]
    assert p.stats()["total_connections"] >= 1
    done(p)


def test_lua_target_function_sees_the_request(start_proxy, serve):
    """ctx.method, ctx.path (no query), ctx.query, ctx.domain and ctx.headers (SPEC 5),
    evaluated for each request of a keep-alive connection."""
    a, b = backend(serve, "A"), backend(serve, "B")
    port = sp.free_port()
    pick = sp.Lua(
        "function(ctx) local h = ctx.headers or {} "
        "local v = h['x-pick'] or h['X-Pick'] "
        "if ctx.method == 'POST' and ctx.path == '/lua/x' and ctx.query == 'a=1' "
        f"and ctx.domain == 'app.test' and v == 'b' then return {b.port} end "
        f"return {a.port} end")
    p = http_proxy(start_proxy, [http_route("lua", port, "127.0.0.1", pick, path="/lua/*")])
    with Client(port) as c:
        assert backend_of(c.get("/lua/x?a=1", headers=[("X-Pick", "b")])) == "A"  # GET
        r = c.request("POST", "/lua/x?a=1", host=f"app.test:{port}",
                      headers=[("X-Pick", "b")], body=b"")
        assert backend_of(r) == "B", r
        assert backend_of(c.request("POST", "/lua/x?a=2", headers=[("X-Pick", "b")],
                                    body=b"")) == "A"
        assert backend_of(c.request("POST", "/lua/x?a=1", body=b"")) == "A"
    done(p)


def test_http_only_fields_make_a_route_http(start_proxy, serve):
    """Without action.protocol, a route using match.path, action.headers or
    security.rate_limit works at the HTTP level (X-Forwarded-For added), and the
    sp.http_route helper's route does too."""
    b = backend(serve, "A")
    by_path, by_headers, by_limit, helper = sp.free_ports(4)
    p = http_proxy(start_proxy, [
        http_route("path", by_path, "127.0.0.1", b.port, path="/p/*", protocol=None),
        http_route("hdrs", by_headers, "127.0.0.1", b.port, protocol=None,
                   request_headers={"X-Via": "{route_name}"}),
        http_route("limit", by_limit, "127.0.0.1", b.port, protocol=None,
                   security={"rate_limit": {"requests": 100, "window": 60}}),
        hu.LuaRoute(f'require("smartproxy").http_route("app.test", "127.0.0.1:{b.port}", '
                    f'{{ ports = {helper}, request_headers = {{ ["X-Via"] = "helper" }} }})',
                    helper),
    ])
    for port, target in ((by_path, "/p/1"), (by_headers, "/h"), (by_limit, "/l"),
                         (helper, "/helper")):
        with Client(port) as c:
            for i in range(2):  # request by request on one connection
                r = c.get(f"{target}?i={i}")
                assert r.status == 200 and r.json()["target"] == f"{target}?i={i}", r
                h = hu.Headers(r.json()["headers"])
                assert h.get("x-forwarded-for") == "127.0.0.1", (port, h)
    assert hu.Headers(b.app.requests[2]["headers"]).get("x-via") == "hdrs"
    assert hu.Headers(b.app.requests[-1]["headers"]).get("x-via") == "helper"
    error_body_ok(fetch(by_path, "/elsewhere"), 404)
    done(p)


# ---------------------------------------------------------------------------- upstream pool

def test_upstream_keepalive_pool_reuses_connections(start_proxy, serve):
    """200 requests over 10 client keep-alive connections (one after the other, the last
    request of each with Connection: close): the backend sees at most 2 per worker."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b,
                        timeouts={"upstream_idle": 5000})
    for i in range(10):
        with Client(port) as c:
            for j in range(20):
                last = j == 19
                r = c.get(f"/r{i}-{j}", headers=[("Connection", "close")] if last else [])
                assert r.status == 200 and r.json()["target"] == f"/r{i}-{j}", r
            assert c.closed(), "Connection: close must end the client side"
    assert len(b.app.requests) == 200
    assert b.app.conns() <= 2 * WORKERS, \
        f"{b.app.conns()} backend connections for 200 requests: no keep-alive pool?"
    assert not any("close" in (hu.Headers(r["headers"]).get("connection") or "").lower()
                   for r in b.app.requests), "the client's Connection: close is hop-by-hop"
    # the pool drains once upstream_idle passes (5 s here): do not wait, close the backend
    b.close()
    sp.assert_clean(p, timeout=8)


def test_upstream_keepalive_limit_and_idle_timeout(start_proxy, serve):
    """workers=1, upstream_keepalive=1, upstream_idle=600 ms: after 4 concurrent requests
    the pool keeps one idle connection (the other 3 are closed at once), which is reused,
    then closed once idle for 600 ms."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b, workers=1,
                        limits={"upstream_keepalive": 1}, timeouts={"upstream_idle": 600})
    results = []

    def one(i):
        results.append(fetch(port, f"/sleep?ms=400&i={i}").status)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 4
    assert b.app.conns() == 4, "4 requests in flight at once need 4 upstream connections"
    sp.wait_until(lambda: len(b.app.closed) >= 3, 0.5, msg="3 of 4 closed (keepalive = 1)")
    assert len(b.app.closed) == 3, "one idle connection is kept"
    r = fetch(port, "/again")
    assert r.status == 200 and b.app.conns() == 4, "the kept connection is reused"
    t0 = time.monotonic()
    sp.wait_until(lambda: len(b.app.closed) == 4, 3, msg="the idle connection closed")
    assert 0.3 <= time.monotonic() - t0 <= 2.0
    r = fetch(port, "/fresh")
    assert r.status == 200 and b.app.conns() == 5
    done(p)


def test_stale_pooled_connection_is_retried_once_for_idempotent_methods(start_proxy, serve):
    """The backend answers only the first request of each connection and closes when the
    next one arrives (a server-side idle timeout racing the reuse): GET and PUT are
    retried on a fresh connection, POST is not (502)."""
    b = backend(serve, "A", drop_second=True)
    port, p = one_route(start_proxy, b, workers=1,
                        timeouts={"upstream_idle": 5000})
    with Client(port) as c:
        assert c.get("/1").status == 200
        assert b.app.conns() == 1
        r = c.get("/2")
        assert r.status == 200 and r.json()["target"] == "/2", r
        assert b.app.conns() == 2, "one retry on a fresh connection"
        r = c.request("PUT", "/3", body=b"put-body")
        assert r.status == 200 and r.json()["body"] == "put-body", r
        assert b.app.conns() == 3
    with Client(port) as c:
        r = c.request("POST", "/4", body=b"post-body")
        error_body_ok(r, 502)
    assert b.app.conns() == 3, "a POST is never retried"
    assert b.app.paths().count("/4") == 1
    done(p)


def test_backend_connection_close_is_honoured(start_proxy, serve):
    """A response with Connection: close ends that upstream connection: the next request
    on the same client connection goes over a new one (and the client's stays open)."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b, workers=1)
    with Client(port) as c:
        r = c.get("/close")
        assert r.status == 200, r
        assert (r.header("connection") or "").lower() in ("", "keep-alive"), \
            "the backend's Connection: close is hop-by-hop"
        r = c.get("/next")
        assert r.status == 200 and r.json()["conn"] == 1, r
        assert c.get("/third").json()["conn"] == 1
    assert b.app.conns() == 2
    done(p)


def test_http10_client_gets_an_unchunked_response_and_a_close(start_proxy, serve):
    """HTTP/1.0 clients know no chunked coding: a chunked backend response reaches them
    de-chunked and delimited by the close (as nginx does)."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    n = 300001
    with Client(port) as c:
        r = c.request("GET", f"/body?size={n}&mode=chunked", version="HTTP/1.0")
        assert r.status == 200, r
        assert not r.headers.has("transfer-encoding"), r.headers
        assert (len(r.body), zlib.crc32(r.body)) == hu.pattern_crc(n)
        if r.framing != "close":
            assert c.closed()
    with Client(port) as c:
        r = c.request("GET", "/plain", version="HTTP/1.0")
        assert r.status == 200 and r.json()["target"] == "/plain"
        if r.framing != "close":
            assert c.closed(), "HTTP/1.0 without keep-alive: closed after the response"
    done(p)


def test_tcp_route_with_a_domain_stays_a_byte_stream(start_proxy, serve):
    """A route without HTTP-only fields forwards bytes as they are, even when its domain
    was read from the Host header (SPEC 4): no X-Forwarded-For, hop-by-hop headers and a
    second request untouched. On a port shared with an HTTP route, and on a port of its
    own (where nothing else needs the Host)."""
    rec = serve(tlsutil.recorder())
    web = backend(serve, "WEB")
    mixed, alone = sp.free_ports(2)

    def raw(port):
        r = sp.route(f"raw{port}", port, "127.0.0.1", rec.port)
        r["match"]["domains"] = "raw.test"
        return r
    p = http_proxy(start_proxy, [raw(mixed), raw(alone),
                                 http_route("web", mixed, "127.0.0.1", web.port,
                                            domains="web.test")])
    data = (b"GET /x HTTP/1.1\r\nHost: raw.test\r\nConnection: keep-alive, X-Drop\r\n"
            b"X-Drop: 1\r\nKeep-Alive: 5\r\n\r\nGET /second HTTP/1.1\r\nHost: other\r\n\r\n")
    for i, port in enumerate((mixed, alone)):
        with p.connect(port) as c:
            c.sendall(data)
            sp.wait_until(lambda: rec.bytes >= (i + 1) * len(data), 5,
                          msg=f"bytes at the backend (port {'mixed' if i == 0 else 'alone'})")
        got = rec.wait_results(i + 1)[i]
        assert got == data
    assert backend_of(fetch(mixed, "/", host="web.test")) == "WEB"
    done(p)


def test_extra_bytes_after_a_response_never_reach_the_next_request(start_proxy, serve):
    """A backend that sends more than its Content-Length (a second, unasked response):
    the pooled connection must not hand those bytes to the next request (response queue
    poisoning); nginx drops such a connection ("upstream sent more data than specified")."""
    def poisoning(conn, srv):
        r = hu.Reader(conn)
        n = 0
        while True:
            if r.head() is None:
                return n
            n += 1
            if n == 1:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
    b = serve(poisoning)
    port, p = one_route(start_proxy, b, workers=1,
                        timeouts={"upstream_idle": 5000})
    assert fetch(port, "/1").body == b"hello"
    time.sleep(0.1)  # the extra bytes are there before the next request
    for i in range(3):
        r = fetch(port, f"/{i + 2}")
        assert r.body != b"injected", "a response meant for nobody reached a client"
        assert r.status == 200 and r.body in (b"hello", b"second"), r
    done(p)


def test_unfinished_exchanges_never_poison_the_pool(start_proxy, serve):
    """An upstream connection whose exchange did not finish cleanly (the client left in
    the middle of the response or of its body, or the response came after the 504) is
    not reused: the next request gets its own answer."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b, workers=1,
                        timeouts={"upstream_idle": 5000, "upstream_response": 400})

    def clean_answer(target):
        r = fetch(port, target)
        assert r.status == 200 and r.json()["target"] == target, r

    with Client(port) as c:  # leaves in the middle of a 64 MiB response
        c.send(hu.build_request("GET", f"/body?size={64 * MiB}"))
        c.reader.head()
        c.reader.some(65536)
    clean_answer("/after-download")
    with Client(port) as c:  # leaves in the middle of its request body
        c.send(hu.build_request("POST", "/upload", headers=[("Content-Length", "1000000")])
               + b"u" * 1000)
        sp.wait_until(lambda: "/upload" in b.app.paths(), 3, msg="the upload at the backend")
    clean_answer("/after-upload")
    error_body_ok(fetch(port, "/sleep?ms=800"), 504)  # the answer comes 400 ms too late
    time.sleep(0.6)
    for i in range(3):
        clean_answer(f"/after-504-{i}")
    done(p)


def test_proxy_protocol_upstream_connections_are_never_shared(start_proxy, serve):
    """With send_proxy_protocol the PROXY header names one client: an upstream connection
    carries only that client's requests (never another client's, even from the pool)."""
    b = backend(serve, "PP", proxy_protocol=True)
    port = sp.free_port()
    r = http_route("pp", port, "127.0.0.1", b.port)
    r["action"]["send_proxy_protocol"] = "v1"
    p = http_proxy(start_proxy, [r], workers=1, timeouts={"upstream_idle": 5000})
    for round_ in range(2):
        for src in ("127.0.0.2", "127.0.0.3"):
            with Client(port, src=src) as c:
                for i in range(2):
                    j = c.get(f"/{src}/{round_}/{i}").json()
                    assert j["proxy"] and j["proxy"].split()[2] == src, (src, j["proxy"])
    done(p)


def test_targets_list_skips_a_refusing_target(start_proxy, serve):
    b = backend(serve, "A")
    closed, port = sp.free_port(), sp.free_port()
    p = http_proxy(start_proxy, [http_route("two", port, targets=[("127.0.0.1", closed),
                                                                  ("127.0.0.1", b.port)])])
    for i in range(4):  # round-robin lands on the dead one every other time
        r = fetch(port, f"/{i}")
        assert r.status == 200 and backend_of(r) == "A", r
    done(p)


# ---------------------------------------------------------------------------- bodies

def rss_sampler(p):
    samples, stop = [], threading.Event()

    def run():
        while not stop.wait(0.05):
            try:
                samples.append(p.rss_kib())
            except (OSError, KeyError):
                return
    t = threading.Thread(target=run)
    t.start()

    def finish():
        stop.set()
        t.join()
        return samples
    return finish


BIG = 128 * MiB if sp.SANITIZED else GiB


def check_rss(samples, idle_rss):
    if sp.SANITIZED:
        return  # ASan keeps freed memory in quarantine: RSS says nothing there
    growth = (max(samples) - idle_rss) / 1024
    assert growth < 32, f"RSS grew by {growth:.1f} MiB (idle {idle_rss} KiB): a body buffered?"


def test_large_upload_streams_with_bounded_memory(start_proxy, serve):
    """1 GiB POST (Content-Length) into a backend that stalls 0.5 s before reading."""
    b = backend(serve, "SINK")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("sink", port, "127.0.0.1", b.port)])
    assert fetch(port, "/warm", method="POST", body=b"x" * 100000).status == 200
    sp.assert_clean(p)  # the warm-up's pooled connection idles out
    idle = p.rss_kib()
    finish = rss_sampler(p)
    deadline = time.monotonic() + 60
    try:
        with Client(port, timeout=30) as c:
            c.send(hu.build_request("POST", "/upload?stall_ms=500",
                                    headers=[("Content-Length", str(BIG))]))
            for chunk in hu.pattern_chunks(BIG):
                assert time.monotonic() < deadline, "upload not through in 60 s"
                c.send(chunk)
            r = c.response()
    finally:
        samples = finish()
    assert r.status == 200, r
    j = r.json()
    assert (j["body_len"], j["body_crc"]) == hu.pattern_crc(BIG), "body lost or changed"
    check_rss(samples, idle)
    done(p)


def test_large_download_streams_with_bounded_memory(start_proxy, serve):
    """1 GiB response (Content-Length) to a client that stops reading for 0.5 s."""
    b = backend(serve, "SOURCE")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("src", port, "127.0.0.1", b.port)])
    assert len(fetch(port, "/body?size=100000").body) == 100000
    sp.assert_clean(p)  # the warm-up's pooled connection idles out
    idle = p.rss_kib()
    body = hu.Body(keep=0)
    paused = []
    deadline = time.monotonic() + 60

    def sink(data):
        body(data)
        assert time.monotonic() < deadline, "download not through in 60 s"
        if not paused and body.len > 64 * MiB:
            paused.append(1)
            time.sleep(0.5)
    finish = rss_sampler(p)
    try:
        with Client(port, timeout=30) as c:
            r = c.request("GET", f"/body?size={BIG}", sink=sink)
    finally:
        samples = finish()
    assert r.status == 200 and r.header("content-length") == str(BIG), r
    assert (body.len, body.crc) == hu.pattern_crc(BIG)
    check_rss(samples, idle)
    done(p)


def test_bodies_are_not_held_back(start_proxy, serve):
    """Streaming, not store-and-forward: the first half of a request body reaches the
    backend before the client sends the rest, and each chunk of a slow response reaches
    the client before the backend sends the next."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    with Client(port) as c:
        c.send(hu.build_request("POST", "/half", headers=[("Content-Length", "20000")])
               + b"F" * 10000)
        sp.wait_until(lambda: b"F" * 10000 in b.app.all_raw(), 3,
                      msg="the first half of the body at the backend")
        c.send(b"S" * 10000)
        r = c.response()
        assert r.status == 200 and r.json()["body_len"] == 20000
        c.send(hu.build_request("GET", "/drip?n=3&ms=400"))
        t0 = time.monotonic()
        head = c.reader.head()
        assert head.startswith(b"HTTP/1.1 200"), head
        times = []
        for i in range(3):
            line = c.reader.line()  # chunk size
            data = c.reader.exact(int(line.split(b";")[0], 16))
            c.reader.exact(2)
            assert data == f"event {i}\n".encode()
            times.append(time.monotonic() - t0)
        assert c.reader.line() == b"0\r\n" and c.reader.line() == b"\r\n"
        assert times[0] < 0.3 and 0.2 < times[1] < 0.7, f"chunks arrived at {times}"
        assert c.get("/after").status == 200
    done(p)


def test_slow_request_heads_are_cut_by_initial_data_and_http_idle(start_proxy, serve):
    """A head trickled a byte at a time (slowloris) must be complete within
    timeouts.initial_data; an idle keep-alive connection that starts a second head and
    stalls is closed too."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b,
                        timeouts={"initial_data": 800, "http_idle": 800})
    head = hu.build_request("GET", "/slow", headers=[("X-Pad", "p" * 200)])
    t0 = time.monotonic()
    with Client(port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closed = False
        for i in range(len(head) - 1):  # never complete; at most ~2.5 s
            try:
                c.send(head[i:i + 1])
            except OSError:
                closed = True
                break
            if not sp.is_open(c.sock):
                closed = True
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        assert closed or not sp.is_open(c.sock), "a trickled head was let in past initial_data"
        assert elapsed < 2.0, f"closed after {elapsed:.1f}s (initial_data 0.8 s)"
    with Client(port) as c:
        assert c.get("/first").status == 200
        c.send(b"GET /second HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        data, how = c.read_to_close(timeout=4)
        assert time.monotonic() - t0 < 2.5, "a stalled second head is closed in time"
    assert b.app.paths() == ["/first"]
    done(p)


def test_chunked_bodies_both_ways(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    data = os.urandom(300000)
    sizes = [1, 10, 4095, 65536, 70001, 160357 - 1]
    assert sum(sizes) < len(data)
    chunks, i = [], 0
    for n in sizes:
        chunks.append(b"%x;name=val\r\n" % n + data[i:i + n] + b"\r\n")
        i += n
    sent = data[:i]
    with Client(port) as c:
        c.send(hu.build_request("POST", "/up", headers=[("Transfer-Encoding", "chunked")])
               + b"".join(chunks) + b"0\r\nX-Trailer: t\r\n\r\n")
        r = c.response()
        assert r.status == 200, r
        j = r.json()
        assert (j["body_len"], j["body_crc"]) == (len(sent), zlib.crc32(sent))
        # framing exact: the next request on the connection is intact
        r = c.request("POST", "/next", body=b"after-chunked")
        assert r.json()["body"] == "after-chunked" and r.json()["target"] == "/next"
        n = 5 * MiB + 3
        r = c.get(f"/body?size={n}&mode=chunked")
        assert r.status == 200 and (len(r.body), zlib.crc32(r.body)) == hu.pattern_crc(n)
        assert c.get("/last").json()["target"] == "/last"
    # the first chunked request reached the backend as one request, with its body
    assert b.app.paths() == ["/up", "/next", f"/body?size={n}&mode=chunked", "/last"]
    done(p)


def test_until_close_response_from_http10_backend(start_proxy, serve):
    """An HTTP/1.0 backend without Content-Length: the body ends at its close. The client
    gets every byte and a correctly framed end (a close, or chunked / a length and then
    the connection stays usable)."""
    b = backend(serve, "OLD")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("old", port, "127.0.0.1", b.port)])
    n = 3 * MiB + 11
    with Client(port) as c:
        r = c.get(f"/body?size={n}&mode=close")
        assert r.status == 200, r
        assert (len(r.body), zlib.crc32(r.body)) == hu.pattern_crc(n)
        if r.framing != "close":
            assert c.get("/after").json()["target"] == "/after"
    done(p)


def test_expect_100_continue(start_proxy, serve, tmp_path):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    # raw client: the interim 100 comes before the body is sent
    with Client(port) as c:
        c.send(hu.build_request("POST", "/e", headers=[("Expect", "100-continue"),
                                                       ("Content-Length", "5000")]))
        head = c.reader.head()
        assert re.match(rb"HTTP/1\.1 100 ", head), head
        c.send(b"z" * 5000)
        r = c.response()
        assert r.status == 200 and r.json()["body_len"] == 5000, r
        assert c.get("/next").status == 200
    # curl, waiting up to 5 s for the 100: it must come at once
    if not tlsutil.CURL:
        pytest.skip("curl missing")
    f = tmp_path / "body"
    f.write_bytes(os.urandom(200000))
    t0 = time.monotonic()
    r = subprocess.run([tlsutil.CURL, "-sS", "--max-time", "10", "--expect100-timeout", "5",
                        "-H", "Expect: 100-continue", "-H", "Host: app.test",
                        "--data-binary", f"@{f}", f"http://127.0.0.1:{port}/curl"],
                       capture_output=True, timeout=15)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert (j["body_len"], j["body_crc"]) == (200000, zlib.crc32(f.read_bytes()))
    assert elapsed < 3, f"curl waited {elapsed:.1f}s: no 100 Continue reached it"
    done(p)


def test_head_response_has_length_but_no_body(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    with Client(port) as c:
        r = c.request("HEAD", "/body?size=5000")
        assert (r.status, r.header("content-length"), r.body) == (200, "5000", b"")
        r = c.request("HEAD", "/body?size=7000&mode=chunked")
        assert r.status == 200 and r.body == b""
        r = c.get("/after-head")  # nothing of a body was sent in between
        assert r.status == 200 and r.json()["target"] == "/after-head", r
        r = c.request("HEAD", "/status?code=204")
        assert r.status == 204
        assert c.get("/again").json()["target"] == "/again"
        for code in (204, 304):  # GET answers that never have a body
            r = c.get(f"/status?code={code}")
            assert r.status == code and r.body == b"", r
            assert c.get(f"/after-{code}").json()["target"] == f"/after-{code}"
    done(p)


def test_interim_1xx_responses_are_relayed(start_proxy, serve):
    """A 103 Early Hints before the 200 reaches the client (as HAProxy does; nginx drops
    1xx other than 100/101 — the contract lists 1xx as supported)."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    with Client(port) as c:
        r = c.get("/early")
        assert r.status == 200 and r.json()["target"] == "/early", r
        assert [s for s, _ in r.interim] == [103], r.interim
        assert r.interim[0][1].get("link") == "</style.css>; rel=preload"
        assert c.get("/next").status == 200
    done(p)


def test_pipelined_requests_are_answered_in_order(start_proxy, serve):
    """Three requests in one write, the first slow and to another backend than the
    second: the answers come back in request order; then a pipelined POST."""
    a, b = backend(serve, "A"), backend(serve, "B")
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("a", port, "127.0.0.1", a.port, domains="a.test"),
        http_route("b", port, "127.0.0.1", b.port, domains="b.test"),
    ])
    with Client(port) as c:
        c.send(hu.build_request("GET", "/sleep?ms=300", "a.test")
               + hu.build_request("GET", "/second", "b.test")
               + hu.build_request("GET", "/third", "a.test"))
        got = [c.response() for _ in range(3)]
        assert [(r.status, backend_of(r), r.json()["target"]) for r in got] == [
            (200, "A", "/sleep?ms=300"), (200, "B", "/second"), (200, "A", "/third")]
        c.send(hu.build_request("POST", "/p1", "a.test", body=b"one")
               + hu.build_request("POST", "/p2", "b.test", body=b"two")
               + hu.build_request("GET", "/p3", "a.test"))
        got = [c.response() for _ in range(3)]
        assert [r.json()["target"] for r in got] == ["/p1", "/p2", "/p3"]
        assert [r.json()["body"] for r in got] == ["one", "two", ""]
        # 100 requests in one write, 100 KiB answers: not read until all are sent, so
        # the proxy must hold back (no deadlock, nothing lost, order kept)
        c.send(b"".join(hu.build_request("GET", f"/body?size={100 * 1024 + i}",
                                         "a.test" if i % 2 else "b.test")
                        for i in range(100)))
        for i in range(100):
            r = c.response()
            assert r.status == 200 and len(r.body) == 100 * 1024 + i, (i, r)
            assert backend_of(r) == ("A" if i % 2 else "B")
    done(p)


def test_request_sent_byte_by_byte(start_proxy, serve):
    """A head and body arriving one byte per segment parse the same."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    req = hu.build_request("POST", "/slow?x=1", headers=[("X-Long", "v" * 50)], body=b"body!")
    chunked = (hu.build_request("POST", "/slow2", headers=[("Transfer-Encoding", "chunked")])
               + b"3\r\nabc\r\n0\r\n\r\n")
    with Client(port) as c:
        for data, target, body in ((req, "/slow?x=1", "body!"), (chunked, "/slow2", "abc")):
            tlsutil.send_slowly(c.sock, data, step=1, pause=0.0005)
            r = c.response()
            assert r.status == 200, r
            assert (r.json()["target"], r.json()["body"]) == (target, body)
    done(p)


# ---------------------------------------------------------------------------- headers

def test_forwarded_headers_and_hop_by_hop_removal(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    host = f"App.Test:{port}"
    with Client(port, src="127.0.0.2") as c:
        r = c.get("/h", host=host, headers=[
            ("Connection", "keep-alive, X-Drop-Me"), ("X-Drop-Me", "secret"),
            ("Keep-Alive", "timeout=300"), ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"), ("Upgrade", "h2c"), ("X-Keep-Me", "yes"),
            ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2"),
            ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test"),
            ("X-Forwarded-Port", "1")])
        assert r.status == 200, r
        h = hu.Headers(r.json()["headers"])
        for gone in ("X-Drop-Me", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade"):
            assert not h.has(gone), (gone, h)
        for v in h.all("connection"):
            assert v.strip().lower() in ("keep-alive", "close"), h
        assert h.all("x-keep-me") == ["yes"]
        assert h.all("host") == [host], "Host is forwarded as sent"
        xff = ", ".join(h.all("x-forwarded-for"))
        assert xff == "1.1.1.1, 2.2.2.2, 127.0.0.2", h
        assert h.all("x-forwarded-proto") == ["http"], h
        assert h.all("x-forwarded-host") == [host], h
        assert h.all("x-forwarded-port") == [str(port)], h
        # no previous X-Forwarded-For: just the client
        h = hu.Headers(c.get("/h2", host="app.test").json()["headers"])
        assert h.all("x-forwarded-for") == ["127.0.0.2"], h
        assert h.all("x-forwarded-host") == ["app.test"], h
        # hop-by-hop response headers are removed too
        r = c.get("/hop")
        assert r.status == 200
        for gone in ("X-Hop-Secret", "Keep-Alive", "Upgrade", "Proxy-Connection"):
            assert not r.headers.has(gone), (gone, r.headers)
        for v in r.headers.all("connection"):
            assert v.strip().lower() in ("keep-alive",), r.headers
        assert c.get("/still-open").status == 200
        # obs-text (bytes 0x80-0xFF) in a value is valid; many fields keep their order
        many = [(f"X-Many-{i}", f"v{i}") for i in range(100)]
        r = c.get("/many", headers=[("X-Obs", "caf\xe9"), *many])
        assert r.status == 200, r
        h = hu.Headers(r.json()["headers"])
        assert h.all("x-obs") == ["caf\xe9"]
        assert [(k, v) for k, v in h if k.startswith("X-Many-")] == many
    done(p)


@pytest.mark.skipif(not sp.ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_client_and_bracketed_host(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port(("127.0.0.1", "::1"))
    p = http_proxy(start_proxy, [http_route("any", port, "127.0.0.1", b.port, domains="*")],
                   listen_addresses=["127.0.0.1", "::1"])
    with Client(port, host="::1") as c:
        r = c.get("/v6", host=f"[::1]:{port}")
        assert r.status == 200, r
        h = hu.Headers(r.json()["headers"])
        assert h.all("x-forwarded-for") == ["::1"], h
        assert h.all("x-forwarded-host") == [f"[::1]:{port}"], h
        assert h.all("x-forwarded-port") == [str(port)], h
        assert c.get("/again", host="[::1]").status == 200
    done(p)


def test_header_templates_set_request_and_response_headers(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route(
        "tmpl", port, "127.0.0.1", b.port,
        request_headers={
            "X-Real-IP": "{client_ip}",
            "X-Client-Port": "{client_port}",
            "X-Info": "d={domain} h={host} p={port} path={path} q={query} u={url} "
                      "proto={proto} r={route_name}",
            "X-Conn-Id": "{connection_id}",
            "X-Static": "literal value",
        },
        response_headers={
            "Strict-Transport-Security": "max-age=31536000",
            "X-Override-Me": "proxy",
            "X-Route": "{route_name} {path}",
        })])
    with Client(port, src="127.0.0.2") as c:
        cport = c.sock.getsockname()[1]
        r = c.get("/some/path?a=1&b=2", host=f"app.test:{port}", headers=[
            ("X-Real-IP", "6.6.6.6"), ("X-Static", "a"), ("X-Static", "b"),
            ("X-User", "{client_ip}")])
        assert r.status == 200, r
        h = hu.Headers(r.json()["headers"])
        assert h.all("x-real-ip") == ["127.0.0.2"], "templates replace what the client sent"
        assert h.all("x-client-port") == [str(cport)]
        assert h.all("x-info") == [f"d=app.test h=app.test:{port} p={port} path=/some/path "
                                   f"q=a=1&b=2 u=/some/path?a=1&b=2 proto=http r=tmpl"], h
        assert h.all("x-static") == ["literal value"], h
        assert h.all("x-user") == ["{client_ip}"], "client values are not templates"
        conn_id = h.get("x-conn-id")
        assert conn_id, h
        r = c.get("/respheaders")
        assert r.headers.all("x-override-me") == ["proxy"], r.headers
        assert r.headers.all("x-backend-set") == ["from-backend"]
        assert r.headers.all("set-cookie") == [
            "a=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "b=2; HttpOnly"], \
            "Set-Cookie fields stay separate (they cannot be joined with commas)"
        assert r.header("strict-transport-security") == "max-age=31536000"
        assert r.header("x-route") == "tmpl /respheaders"
        assert hu.Headers(r.json()["headers"]).get("x-conn-id") == conn_id, \
            "one connection, one connection_id"
    other = hu.Headers(fetch(port, "/x").json()["headers"]).get("x-conn-id")
    assert other and other != conn_id
    done(p)


def test_rewrite_path_keeps_the_query_unless_the_template_uses_it(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("v2", port, "127.0.0.1", b.port, path="/api/*", rewrite_path="/v2{path}"),
        http_route("q", port, "127.0.0.1", b.port, path="/q/*",
                   rewrite_path="/search?{query}&via=proxy"),
        http_route("u", port, "127.0.0.1", b.port, path="/u/*", rewrite_path="/wrapped{url}"),
        http_route("fixed", port, "127.0.0.1", b.port, path="/fixed",
                   rewrite_path="/static-target"),
    ])
    cases = {"/api/users?x=1": "/v2/api/users?x=1", "/api/users": "/v2/api/users",
             "/q/x?term=a": "/search?term=a&via=proxy", "/u/x?y=1": "/wrapped/u/x?y=1",
             "/fixed": "/static-target", "/fixed?k=v": "/static-target?k=v"}
    with Client(port) as c:
        for sent, want in cases.items():
            r = c.get(sent)
            assert (r.status, r.json()["target"]) == (200, want), (sent, r)
    done(p)


# ---------------------------------------------------------------------------- WebSocket

def check_websocket(p, make_client, backend_srv, idle_s):
    """Upgrade, stay idle past http_idle, then echo (small and 200 KiB), then close."""
    with make_client() as c:
        r, key = hu.ws_upgrade(c, "/ws/chat")
        assert r.status == 101, r
        assert r.header("sec-websocket-accept") == hu.ws_accept(key)
        assert (r.header("upgrade") or "").lower() == "websocket"
        req = backend_srv.app.requests[-1]
        h = hu.Headers(req["headers"])
        assert (h.get("upgrade") or "").lower() == "websocket", "Upgrade kept when upgrading"
        assert "upgrade" in (h.get("connection") or "").lower(), h
        hu.ws_echo_check(c, b"before idle")
        time.sleep(idle_s)
        hu.ws_echo_check(c, b"after idle")
        hu.ws_echo_check(c, os.urandom(200 * 1024))
        hu.ws_close(c)
    with make_client() as c:  # a plain keep-alive connection does idle out
        assert c.get("/plain").status == 200
        t0 = time.monotonic()
        how = c.closed(timeout=idle_s + 3)
        assert how and time.monotonic() - t0 < idle_s + 2


def test_websocket_tunnel_outlives_http_idle(start_proxy, serve):
    b = backend(serve, "WS")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("ws", port, "127.0.0.1", b.port,
                                            websocket={"enabled": True})],
                   timeouts={"http_idle": 300})
    check_websocket(p, lambda: Client(port), b, 1.0)
    done(p)


def test_websocket_bytes_next_to_the_handshake_are_not_lost(start_proxy, serve):
    """A frame the client sends in the same write as the upgrade request, and one the
    backend sends in the same write as its 101, both get through the tunnel."""
    b = backend(serve, "WS")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("ws", port, "127.0.0.1", b.port)])
    with Client(port) as c:
        key = hu.ws_key()
        c.send(hu.build_request("GET", "/ws-eager", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13")]) + hu.ws_frame(b"early bird"))
        r = c.response()
        assert r.status == 101 and r.header("sec-websocket-accept") == hu.ws_accept(key), r
        assert hu.ws_read_frame(c.reader) == (1, b"welcome"), "the backend's first frame"
        assert hu.ws_read_frame(c.reader) == (1, b"early bird"), "the client's early frame"
        hu.ws_echo_check(c, b"later")
        hu.ws_close(c)
    done(p)


def test_websocket_through_tls_termination(start_proxy, serve, pki):
    cert = pki.leaf("app.test", "ecdsa")
    b = backend(serve, "WS")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route(
        "wss", port, "127.0.0.1", b.port, domains="app.test",
        tls={"mode": "terminate", "certificate": cert.paths()})],
        timeouts={"http_idle": 300})
    ctx = tlsutil.client_context(pki.ca)
    check_websocket(p, lambda: Client(sock=tlsutil.tls_connect(port, "app.test", ctx)), b, 1.0)
    # X-Forwarded-Proto says https behind termination
    with Client(sock=tlsutil.tls_connect(port, "app.test", ctx)) as c:
        h = hu.Headers(c.get("/proto").json()["headers"])
        assert h.all("x-forwarded-proto") == ["https"], h
    done(p)


def test_upgrade_refused_by_the_backend_stays_http(start_proxy, serve):
    """The backend answers an Upgrade: websocket request with a 200 (no 101): no tunnel,
    the connection goes on request by request."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    with Client(port) as c:
        r, _ = hu.ws_upgrade(c, "/not-ws")
        assert r.status == 200 and r.json()["target"] == "/not-ws", r
        r = c.get("/next")
        assert r.status == 200 and r.json()["target"] == "/next", r
    done(p)


def test_requests_after_tls_termination_are_routed_one_by_one(start_proxy, serve, pki):
    """Behind termination each request is routed among the port's terminating HTTP
    routes by its Host (as nginx does after SNI); X-Forwarded-Proto is https."""
    cert = pki.leaf(["a.test", "b.test"], "ecdsa")
    a, b = backend(serve, "A"), backend(serve, "B")
    port = sp.free_port()
    tls = {"mode": "terminate", "certificate": cert.paths()}
    p = http_proxy(start_proxy, [
        http_route("a", port, "127.0.0.1", a.port, domains="a.test", tls=tls),
        http_route("b", port, "127.0.0.1", b.port, domains="b.test", tls=tls),
    ])
    ctx = tlsutil.client_context(pki.ca)
    with Client(sock=tlsutil.tls_connect(port, "a.test", ctx)) as c:
        for host, want in (("a.test", "A"), ("b.test", "B"), ("a.test", "A")):
            r = c.get("/", host=host)
            assert (r.status, backend_of(r)) == (200, want), r
            assert hu.Headers(r.json()["headers"]).get("x-forwarded-proto") == "https"
        error_body_ok(c.get("/", host="c.test"), 404)
    done(p)


# ---------------------------------------------------------------------------- actions

def test_redirect_routes_and_helper(start_proxy, serve):
    port, helper_port, helper_port2 = sp.free_ports(3)
    p = http_proxy(start_proxy, [
        http_route("perm", port, type="redirect", path="/perm/*", priority=5,
                   redirect={"to": "https://secure.test:8443{path}", "status": 308}),
        http_route("r", port, type="redirect", redirect={"to": "https://{domain}{url}"}),
        hu.LuaRoute(f'require("smartproxy").http_to_https_redirect("*", '
                    f'{{ ports = {helper_port} }})', helper_port),
        hu.LuaRoute(f'require("smartproxy").http_to_https_redirect("app.test", '
                    f'{{ ports = {helper_port2}, https_port = 8443, status = 302 }})',
                    helper_port2),
    ])
    with Client(port) as c:
        r = c.get("/a/b?x=1", host=f"app.test:{port}")
        assert r.status == 301, r
        assert r.header("location") == "https://app.test/a/b?x=1"
        assert len(r.body) < 1024
        r = c.get("/perm/p?q=2")  # keep-alive after a redirect
        assert r.status == 308 and r.header("location") == "https://secure.test:8443/perm/p", r
    r = fetch(helper_port, "/x?y=z", host="www.app.test")
    assert (r.status, r.header("location")) == (301, "https://www.app.test/x?y=z"), r
    r = fetch(helper_port2, "/x", host="app.test")
    assert (r.status, r.header("location")) == (302, "https://app.test:8443/x"), r
    done(p)


def test_block_answers_403(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("blocked", port, type="block", path="/private/*", priority=5),
        http_route("open", port, "127.0.0.1", b.port),
    ])
    with Client(port) as c:
        error_body_ok(c.get("/private/x"), 403)
        assert c.get("/public").status == 200  # the connection goes on
    assert b.app.paths() == ["/public"]
    done(p)


def test_basic_auth(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route(
        "api", port, "127.0.0.1", b.port,
        security={"basic_auth": {"realm": "api", "users": [
            {"username": "u", "password": "p"}, {"username": "admin", "password": "s3:cret"}]}})])

    def auth(user, pw):
        return [("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())]
    with Client(port) as c:
        for headers in ([], auth("u", "wrong"), auth("nobody", "p"), auth("u", "p2"),
                        auth("u", ""), [("Authorization", "Basic !!!notbase64")],
                        [("Authorization", "Bearer abc")]):
            r = c.get("/secret", headers=headers)
            error_body_ok(r, 401)
            # RFC 7617 allows auth-params after the realm (e.g. charset="UTF-8")
            assert re.match(r'Basic realm="api"(\s*,|$)', r.header("www-authenticate") or ""), r
        r = c.get("/secret", headers=auth("u", "p"))
        assert r.status == 200 and backend_of(r) == "A"
        r = c.get("/secret2", headers=auth("admin", "s3:cret"))
        assert r.status == 200
    assert b.app.paths() == ["/secret", "/secret2"]
    done(p)


def test_rate_limit_by_ip_route_and_header(start_proxy, serve):
    b = backend(serve, "A")
    by_ip, by_route, by_header = sp.free_ports(3)

    def limited(name, port, key):
        return http_route(name, port, "127.0.0.1", b.port,
                          security={"rate_limit": {"requests": 3, "window": 10, "key": key}})
    short, one = sp.free_ports(2)
    p = http_proxy(start_proxy, [limited("ip", by_ip, "ip"), limited("route", by_route, "route"),
                                 limited("hdr", by_header, "header:X-Api-Key"),
                                 http_route("short", short, "127.0.0.1", b.port, security={
                                     "rate_limit": {"requests": 2, "window": 1}}),
                                 http_route("one", one, "127.0.0.1", b.port, security={
                                     "rate_limit": {"requests": 1, "window": 10}})])

    def status(port, src="127.0.0.1", headers=()):
        r = fetch(port, "/", src=src, headers=headers)  # a new connection each: any worker
        if r.status == 429:
            error_body_ok(r, 429)
            ra = r.header("retry-after")
            assert ra and ra.isdigit() and 1 <= int(ra) <= 10, r
        return r.status

    assert [status(by_ip, "127.0.0.2") for _ in range(5)] == [200, 200, 200, 429, 429]
    assert status(by_ip, "127.0.0.3") == 200, "another client IP has its own count"
    assert [status(by_route, src) for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4",
                                              "127.0.0.5")] == [200, 200, 200, 429]
    k1, k2 = [("X-Api-Key", "k1")], [("X-Api-Key", "k2")]
    assert [status(by_header, "127.0.0.2", k1) for _ in range(4)] == [200, 200, 200, 429]
    assert status(by_header, "127.0.0.2", k2) == 200
    assert len(b.app.requests) == 3 + 1 + 3 + 3 + 1
    # the window slides: a 1 s window lets requests in again after a while (2 s: room
    # for a sliding-window approximation that weighs the previous window in)
    assert [status(short) for _ in range(3)] == [200, 200, 429]
    time.sleep(2.1)
    assert status(short) == 200, "the window did not slide"
    # pipelined on one connection: each request is judged on its own
    with Client(one) as c:
        c.send(hu.build_request("GET", "/x") * 3)
        assert [c.response().status for _ in range(3)] == [200, 429, 429]
    done(p)


def test_acme_challenge_for_a_token_the_proxy_does_not_hold_reaches_the_routes(start_proxy, serve):
    """The proxy answers /.well-known/acme-challenge/<token> itself only for tokens its own
    ACME client is validating (tested with pebble in the certificates tests); any other
    token is routed like every request, so a backend can run its own ACME client."""
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("all", port, "127.0.0.1", b.port)])
    with Client(port) as c:
        r = c.get("/.well-known/acme-challenge/tok-123", host="app.test")
        assert r.status == 200 and r.json()["target"] == "/.well-known/acme-challenge/tok-123", r
    done(p)


# ---------------------------------------------------------------------------- errors

def test_400_malformed_requests_close_the_connection(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    bad = {
        "garbage": b"GARBAGE\r\n\r\n",
        "no target": b"GET HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "header without colon": b"GET / HTTP/1.1\r\nHost: app.test\r\nNoColonHere\r\n\r\n",
        "bad header name": b"GET / HTTP/1.1\r\nHost: app.test\r\nBad[Name]: x\r\n\r\n",
        "NUL in value": b"GET / HTTP/1.1\r\nHost: app.test\r\nX: a\x00b\r\n\r\n",
        "bad version": b"GET / HTTP/1.x\r\nHost: app.test\r\n\r\n",
        "HTTP/1.1 without Host": b"GET / HTTP/1.1\r\nX: y\r\n\r\n",  # nginx: 400
        "control char in target": b"GET /a\x01b HTTP/1.1\r\nHost: app.test\r\n\r\n",
    }

    failures = []
    for name, data in bad.items():
        raw, how = hu.raw_exchange(port, data)
        if hu.status_of(raw) != 400 or not raw.split(b"\r\n\r\n", 1)[-1].startswith(b"400"):
            failures.append(f"{name}: got {raw[:120]!r} ({how})")
    # a malformed request after a good one on the same connection
    with Client(port) as c:
        assert c.get("/good").status == 200
        c.send(b"NOT A REQUEST\r\n\r\n")
        error_body_ok(c.response(), 400)
        assert c.closed()
    assert not failures, "\n".join(failures)
    assert b.app.paths() == ["/good"]
    done(p)


def test_connect_is_refused_with_405(start_proxy, serve):
    """CONNECT is not for a reverse proxy: 405 and a close (docs/http.md's table)."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    raw, how = hu.raw_exchange(port, b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n")
    assert hu.status_of(raw) == 405, raw[:200]
    assert raw.split(b"\r\n\r\n", 1)[-1].startswith(b"405"), raw[:200]
    assert b.app.conns() == 0
    done(p)


def test_404_when_no_route_matches_and_the_connection_goes_on(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("a", port, "127.0.0.1", b.port, domains="a.test")])
    with Client(port) as c:
        error_body_ok(c.get("/", host="b.test"), 404)
        assert c.get("/", host="a.test").status == 200
        # pipelined: a 404 between two forwarded requests
        c.send(hu.build_request("GET", "/1", "a.test") + hu.build_request("GET", "/2", "b.test")
               + hu.build_request("GET", "/4", "a.test"))
        got = [c.response() for _ in range(3)]
        assert [r.status for r in got] == [200, 404, 200], got
        assert got[2].json()["target"] == "/4"
        # a 404 to a request with a body: the body is skipped (nginx) or the connection
        # is closed, but then the 404 says so (Connection: close)
        c.send(hu.build_request("POST", "/3", "b.test", body=b"ignored body")
               + hu.build_request("GET", "/5", "a.test"))
        r = c.response()
        error_body_ok(r, 404)
        if "close" in (r.header("connection") or "").lower():
            assert c.closed()
        else:
            assert c.response().json()["target"] == "/5"
    done(p)


def test_413_body_over_max_body_bytes(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b,
                        limits={"max_body_bytes": 1000})
    assert fetch(port, "/ok", method="POST", body=b"x" * 1000).status == 200
    with Client(port) as c:  # judged on Content-Length, before any body byte is sent
        c.send(hu.build_request("POST", "/big", headers=[("Content-Length", "1001")]))
        error_body_ok(c.response(), 413)
        assert c.closed()
    with Client(port) as c:  # with Expect: 100-continue: 413 instead of the 100
        c.send(hu.build_request("POST", "/big2", headers=[("Content-Length", "5000000"),
                                                          ("Expect", "100-continue")]))
        r = c.response()
        assert not r.interim, r.interim
        error_body_ok(r, 413)
    assert b.app.paths() == ["/ok"]
    done(p)


def _body_timeout_counted(p, before, answered):
    """The request_body_timeout end: in /stats (terminations, and http.local when the
    proxy answered 408), /metrics and the access log."""
    s = sp.wait_counter(p, before, "terminations", "request_body_timeout")
    local = [x["http"]["local"]["request_body_timeout"] for x in (before, s)]
    assert local[1] - local[0] == (1 if answered else 0), local
    status, text = sp.http_get(p.metrics_port, "/metrics")
    assert status == 200
    want = {b"connections_ended_total": 1, b"http_local_responses_total": 1 if answered else 0}
    for metric, n in want.items():
        m = re.search(rb'(?m)^smartproxy_%s\{reason="request_body_timeout"\} (\d+)$' % metric, text)
        assert m and int(m.group(1)) == n, (metric, m and m.group(0))
    sp.wait_until(lambda: "end=request_body_timeout" in p.stderr_tail(), 5,
                  msg="the access line with end=request_body_timeout")


def _trickle_until_answered(c, limit=200):
    """One body byte every 50 ms until the proxy answers or closes (at most `limit`
    bytes, ~10 s); returns how many were sent."""
    for i in range(limit):
        if select.select([c.sock], [], [], 0.05)[0]:
            return i
        try:
            c.send(b"x")
        except OSError:
            return i
    raise AssertionError(f"no answer after {limit} body bytes")


def test_slow_request_body_gets_408_and_frees_both_connections(start_proxy, serve):
    """A body not complete within timeouts.request_body and slower than
    limits.request_body_min_rate: 408 with Connection: close, the upstream connection
    closed at once (not pooled: upstream_idle is long), the end counted and logged as
    request_body_timeout, nothing left behind."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b, timeouts={"request_body": 300, "upstream_idle": 60000},
                        limits={"request_body_min_rate": 1_000_000})
    before = p.stats()
    t0 = time.monotonic()
    with Client(port) as c:
        c.send(hu.build_request("POST", "/upload", headers=[("Content-Length", "1000")]) + b"x")
        _trickle_until_answered(c)
        r = c.response("POST")
        error_body_ok(r, 408)
        assert r.header("connection") == "close", r
        assert c.closed() in ("fin", "rst")
    assert time.monotonic() - t0 < 5, "cut long after timeouts.request_body (300 ms)"
    sp.wait_until(lambda: b.app.closed, 5, msg="the upstream connection closed")
    assert b.app.paths() == ["/upload"]
    _body_timeout_counted(p, before, answered=True)
    assert re.search(r"request .*url=/upload status=408", p.stderr_tail()), p.stderr_tail()
    done(p)


def test_slow_request_body_after_the_response_began_is_cut(start_proxy, serve):
    """A target that answers before the body is in: when the body then times out, the
    client, which has part of a response already, is cut (no 408 after it)."""
    started = threading.Event()

    def early_answer(conn, srv):
        r = hu.Reader(conn)
        r.head()
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        started.set()
        r.to_eof()
    t = serve(early_answer)
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("early", port, "127.0.0.1", t.port)],
                   timeouts={"request_body": 300}, limits={"request_body_min_rate": 1_000_000})
    before = p.stats()
    with Client(port) as c:
        c.send(hu.build_request("POST", "/upload", headers=[("Content-Length", "1000")]) + b"x")
        assert c.reader.head().startswith(b"HTTP/1.1 200 ")
        assert started.wait(5)
        _trickle_until_answered(c)
        rest, _ = c.read_to_close(timeout=5)
        assert b"408" not in rest, rest
    _body_timeout_counted(p, before, answered=False)
    t.wait_results(1)  # the upstream connection was closed
    t.close()
    done(p)


def test_request_body_above_the_minimum_rate_is_not_cut(start_proxy, serve):
    """A body still coming well past timeouts.request_body, at an average rate above
    limits.request_body_min_rate, is forwarded whole."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b, timeouts={"request_body": 300},
                        limits={"request_body_min_rate": 2000})
    first, trickle = 64 * 1024, 100  # 64 KiB keeps the average over 2000 B/s for 30 s
    total = first + trickle
    body = b"".join(bytes(ch) for ch in hu.pattern_chunks(total))
    with Client(port) as c:
        c.send(hu.build_request("POST", "/upload", headers=[("Content-Length", str(total))])
               + body[:first])
        t0, sent = time.monotonic(), first
        while sent < total - 1 and time.monotonic() - t0 < 1.0:  # at most 100 x 50 ms
            assert not select.select([c.sock], [], [], 0.05)[0], "answered while the body came"
            c.send(body[sent:sent + 1])
            sent += 1
        elapsed = time.monotonic() - t0
        c.send(body[sent:])
        r = c.response("POST")
    assert elapsed >= 1.0, f"the body lasted only {elapsed:.2f}s (request_body 0.3 s)"
    assert r.status == 200, r
    got = r.json()
    assert (got["body_len"], got["body_crc"]) == hu.pattern_crc(total), got
    done(p)


def test_431_request_head_over_max_header_bytes(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b,
                        limits={"max_header_bytes": 2048})
    assert fetch(port, "/ok", headers=[("X-Fill", "a" * 1500)]).status == 200
    with Client(port) as c:
        c.send(hu.build_request("GET", "/big", headers=[("X-Fill", "a" * 3000)]))
        error_body_ok(c.response(), 431)
        assert c.closed()
    with Client(port) as c:  # many small headers count too
        c.send(hu.build_request("GET", "/many", headers=[(f"X-H{i}", "v" * 20)
                                                          for i in range(200)]))
        error_body_ok(c.response(), 431)
    assert b.app.paths() == ["/ok"]
    done(p)


def test_431_default_limit_is_64_kib(start_proxy, serve):
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    assert fetch(port, "/ok", headers=[("X-Fill", "a" * 60000)]).status == 200
    raw, _ = hu.raw_exchange(port, hu.build_request("GET", "/big",
                                                    headers=[("X-Fill", "a" * 70000)]))
    assert hu.status_of(raw) == 431, raw[:200]
    assert b.app.paths() == ["/ok"]
    done(p)


def test_502_refused_reset_unresolvable_and_bad_response(start_proxy, serve):
    b = backend(serve, "A")
    # backends used once each: the failing request always goes over a fresh connection
    # (a pooled one would take the stale-connection retry path instead)
    resetting, garbling = backend(serve, "RST"), backend(serve, "GARBAGE")
    closed = sp.free_port()  # nothing listens there
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("refused", port, "127.0.0.1", closed, path="/refused"),
        http_route("nx", port, "no-such-host.invalid", 80, path="/nx"),
        http_route("reset", port, "127.0.0.1", resetting.port, path="/reset"),
        http_route("garbage", port, "127.0.0.1", garbling.port, path="/garbage"),
        http_route("ok", port, "127.0.0.1", b.port),
    ])
    failures = []
    for target in ("/refused", "/reset", "/garbage", "/nx"):
        # each on a fresh connection, then the connection goes on (502 does not close it,
        # as with nginx): the next request is answered
        with Client(port, timeout=15 if target == "/nx" else 5) as c:
            try:
                error_body_ok(c.get(target), 502)
            except (AssertionError, OSError) as e:
                failures.append(f"{target}: {e!r}"[:300])
                continue
            try:
                c.sock.settimeout(3)
                r = c.get("/fine")
                if r.status != 200:
                    failures.append(f"{target}: then /fine got {r.status}")
            except (AssertionError, OSError) as e:
                failures.append(f"{target}: then /fine on the same connection: {e!r}"[:300])
    assert not failures, "\n".join(failures)
    assert fetch(port, "/fine").status == 200
    done(p)


def test_504_no_response_head_in_time_and_connect_timeout(start_proxy, serve, blackhole):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [
        http_route("hole", port, "127.0.0.1", blackhole.port, path="/hole"),
        http_route("slow", port, "127.0.0.1", b.port),
    ], timeouts={"upstream_response": 500, "connect": 500})
    for target in ("/noresp", "/hole"):
        t0 = time.monotonic()
        r = fetch(port, target)
        elapsed = time.monotonic() - t0
        error_body_ok(r, 504)
        assert 0.4 <= elapsed < 3, f"{target}: 504 after {elapsed:.2f}s"
    # a response that starts in time is not cut by upstream_response
    assert fetch(port, "/sleep?ms=200").status == 200
    done(p)


def test_503_over_route_max_connections(start_proxy, serve):
    b = backend(serve, "A")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("small", port, "127.0.0.1", b.port,
                                            security={"max_connections": 1})])
    holder = Client(port)
    holder.send(hu.build_request("GET", "/sleep?ms=1500"))
    sp.wait_until(lambda: "/sleep?ms=1500" in b.app.paths(), 3, msg="first request in flight")
    error_body_ok(fetch(port, "/second"), 503)
    assert holder.response().status == 200
    holder.close()
    sp.wait_until(lambda: fetch(port, "/third").status == 200, 5, msg="the slot back")
    done(p)


# ---------------------------------------------------------------------------- smuggling

SMUG = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"
POST = b"POST /first HTTP/1.1\r\nHost: app.test\r\n"


def _cl(n):
    return b"Content-Length: %d\r\n" % n


CHUNKED_SMUG = b"0\r\n\r\n" + SMUG
TE = b"Transfer-Encoding: chunked\r\n"

SMUGGLING = {
    # both framings
    "CL then TE": POST + _cl(len(CHUNKED_SMUG)) + TE + b"\r\n" + CHUNKED_SMUG,
    "TE then CL": POST + TE + _cl(len(CHUNKED_SMUG)) + b"\r\n" + CHUNKED_SMUG,
    "CL 0 then TE": POST + _cl(0) + TE + b"\r\n" + b"%x\r\n" % len(SMUG) + SMUG + b"\r\n0\r\n\r\n",
    # Content-Length
    "CL duplicate conflicting": POST + _cl(0) + _cl(len(SMUG)) + b"\r\n" + SMUG,
    "CL duplicate conflicting reversed": POST + _cl(len(SMUG)) + _cl(0) + b"\r\n" + SMUG,
    "CL duplicate equal": POST + _cl(5) + _cl(5) + b"\r\nhello" + SMUG,
    "CL list": POST + b"Content-Length: 5, %d\r\n\r\nhello" % (len(SMUG) + 5) + SMUG,
    "CL plus sign": POST + b"Content-Length: +5\r\n\r\nhello" + SMUG,
    "CL negative": POST + b"Content-Length: -5\r\n\r\nhello" + SMUG,
    "CL hex": POST + b"Content-Length: 0x5\r\n\r\nhello" + SMUG,
    "CL inner space": POST + b"Content-Length: 5 5\r\n\r\nhello" + SMUG,
    "CL letters": POST + b"Content-Length: 5a\r\n\r\nhello" + SMUG,
    "CL empty": POST + b"Content-Length: \r\n\r\n" + SMUG,
    "CL overflow (2^64+5)": POST + b"Content-Length: 18446744073709551621\r\n\r\nhello" + SMUG,
    # Transfer-Encoding not a final "chunked"
    "TE chunked, identity": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n" + CHUNKED_SMUG,
    "TE identity": POST + b"Transfer-Encoding: identity\r\n" + _cl(5) + b"\r\nhello" + SMUG,
    "TE gzip": POST + b"Transfer-Encoding: gzip\r\n\r\n" + CHUNKED_SMUG,
    "TE xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n" + CHUNKED_SMUG,
    "TE chunkedx": POST + b"Transfer-Encoding: chunkedx\r\n\r\n" + CHUNKED_SMUG,
    "TE chunked, chunked": POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n" + CHUNKED_SMUG,
    "TE two headers, last identity": POST + TE + b"Transfer-Encoding: identity\r\n\r\n"
                                     + CHUNKED_SMUG,
    "TE vertical tab": POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n" + CHUNKED_SMUG,
    "TE form feed": POST + b"Transfer-Encoding:\x0cchunked\r\n\r\n" + CHUNKED_SMUG,
    "TE space before colon": POST + b"Transfer-Encoding : chunked\r\n\r\n" + CHUNKED_SMUG,
    "TE tab before colon": POST + b"Transfer-Encoding\t: chunked\r\n\r\n" + CHUNKED_SMUG,
    "TE leading space (fold of Host)": POST + b" Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_SMUG,
    "TE value folded": POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + CHUNKED_SMUG,
    "TE in HTTP/1.0": b"POST /first HTTP/1.0\r\nHost: app.test\r\n" + TE + b"\r\n" + CHUNKED_SMUG,
    # chunk sizes
    "chunk size not hex": POST + TE + b"\r\nzz\r\nhello\r\n0\r\n\r\n" + SMUG,
    "chunk size negative": POST + TE + b"\r\n-5\r\nhello\r\n0\r\n\r\n" + SMUG,
    "chunk size 0x": POST + TE + b"\r\n0x5\r\nhello\r\n0\r\n\r\n" + SMUG,
    "chunk size overflow (2^64+5)": POST + TE + b"\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"
                                    + SMUG,
    "chunk longer than its size": POST + TE + b"\r\n3\r\nhello\r\n0\r\n\r\n" + SMUG,
    "chunk size bare LF": POST + TE + b"\r\n5\nhello\r\n0\r\n\r\n" + SMUG,
    "chunk data bare LF": POST + TE + b"\r\n5\r\nhello\n0\r\n\r\n" + SMUG,
    # header syntax
    "obs-fold": POST + _cl(0) + b"X-Foo: a\r\n b\r\n\r\n" + SMUG,
    "obs-fold tab": POST + _cl(0) + b"X-Foo: a\r\n\tb\r\n\r\n" + SMUG,
    "bare LF everywhere": b"POST /first HTTP/1.1\nHost: app.test\nContent-Length: 0\n\n" + SMUG,
    "bare LF in one header": POST + b"X-A: 1\nContent-Length: %d\r\n\r\n" % len(SMUG) + SMUG,
    "bare CR in a header": POST + b"X-A: 1\rContent-Length: %d\r\n\r\n" % len(SMUG) + SMUG,
    "space before colon (CL)": POST + b"Content-Length : %d\r\n\r\n" % len(SMUG) + SMUG,
    "space before colon (other)": POST + _cl(0) + b"X-Foo : bar\r\n\r\n" + SMUG,
    "duplicate Host": b"POST /first HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n"
                      + _cl(0) + b"\r\n" + SMUG,
}


def test_request_smuggling_vectors_are_rejected(start_proxy, serve):
    """Every vector: 400, the connection closed, and the smuggled request never reaches
    the backend (which records every byte it receives). All vectors run; the failure
    lists every one that got through."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    # control: a valid chunked request and a pipelined follow-up both reach the backend
    ok = POST + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n" + SMUG.replace(b"smuggled", b"notsmuggled")
    with Client(port) as c:
        c.send(ok)
        assert [c.response().status for _ in range(2)] == [200, 200]
    sp.wait_until(lambda: b"/notsmuggled" in b.app.all_raw(), 2, msg="the control request")

    failures = []
    for name, data in SMUGGLING.items():
        seen = b.app.all_raw().count(b"/smuggled")
        try:
            raw, how = hu.raw_exchange(port, data, timeout=2)
        except AssertionError as e:  # still open
            failures.append(f"{name}: connection not closed ({e})")
            continue
        except OSError as e:
            failures.append(f"{name}: {e!r}")
            continue
        statuses = re.findall(rb"HTTP/1\.[01] (\d{3})", raw)
        if statuses[:1] != [b"400"]:
            failures.append(f"{name}: answered {[s.decode() for s in statuses]} "
                            f"instead of one 400 ({raw[:80]!r})")
        elif len(statuses) > 1:
            failures.append(f"{name}: 400 then more responses {statuses}")
        if b.app.all_raw().count(b"/smuggled") > seen:
            failures.append(f"{name}: THE SMUGGLED REQUEST REACHED THE BACKEND")
    time.sleep(0.2)
    if b.app.all_raw().count(b"/smuggled") > seen:
        failures.append("a smuggled request reached the backend late")
    assert not failures, f"{len(failures)} of {len(SMUGGLING)} vectors:\n" + "\n".join(failures)
    done(p)


# A request that names its own framing field (or Host) in Connection: the name is ignored
# (RFC 9110 7.6.1, as HAProxy does), the field goes to the backend and the body stays a
# body. A proxy that dropped the field would let the backend read HIDDEN as two more
# requests that were never routed: one to a path a block route answers with 403, one to a
# path behind basic auth.
HIDDEN = (b"GET /secret/x HTTP/1.1\r\nHost: secret.test\r\n\r\n"
          b"GET /private/x HTTP/1.1\r\nHost: app.test\r\n\r\n")


def _conn(*values):
    return b"".join(b"Connection:" + v + b"\r\n" for v in values)


UPGRADE = b"Upgrade: websocket\r\n"

# name: (Connection and other extra field lines, framing of HIDDEN: "cl" | "chunked", version)
CONNECTION_NAMES_FRAMING = {
    "CL": (_conn(b" Content-Length"), "cl", "1.1"),
    "CL lower case": (_conn(b" content-length"), "cl", "1.1"),
    "CL upper case": (_conn(b" CONTENT-LENGTH"), "cl", "1.1"),
    "keep-alive, CL": (_conn(b" keep-alive, Content-Length"), "cl", "1.1"),
    "CL, keep-alive": (_conn(b" Content-Length, keep-alive"), "cl", "1.1"),
    "close,content-length": (_conn(b" close,content-length"), "cl", "1.1"),
    "CL extra spaces": (_conn(b"    Content-Length   "), "cl", "1.1"),
    "CL tabs": (_conn(b"\tContent-Length\t"), "cl", "1.1"),
    "CL empty list elements": (_conn(b" ,, Content-Length ,"), "cl", "1.1"),
    "CL in a second Connection": (_conn(b" keep-alive", b" Content-Length"), "cl", "1.1"),
    "CL in two Connections": (_conn(b" Content-Length", b"content-length"), "cl", "1.1"),
    "CL among others": (_conn(b" X-A, Content-Length, X-B") + b"X-A: 1\r\nX-B: 2\r\n", "cl", "1.1"),
    "Host": (_conn(b" Host"), "cl", "1.1"),
    "host, content-length": (_conn(b" host, content-length"), "cl", "1.1"),
    "CL and TE named, CL body": (_conn(b" Content-Length, Transfer-Encoding"), "cl", "1.1"),
    "CL, HTTP/1.0 keep-alive": (_conn(b" keep-alive, Content-Length"), "cl", "1.0"),
    "Upgrade, CL": (_conn(b" Upgrade, Content-Length") + UPGRADE, "cl", "1.1"),
    "TE": (_conn(b" Transfer-Encoding"), "chunked", "1.1"),
    "TE lower case": (_conn(b" transfer-encoding"), "chunked", "1.1"),
    "TE upper case": (_conn(b" TRANSFER-ENCODING"), "chunked", "1.1"),
    "keep-alive, TE": (_conn(b" keep-alive, Transfer-Encoding"), "chunked", "1.1"),
    "close,transfer-encoding": (_conn(b" close,transfer-encoding"), "chunked", "1.1"),
    "TE extra spaces": (_conn(b"   transfer-encoding  ,   keep-alive "), "chunked", "1.1"),
    "TE in a second Connection": (_conn(b" keep-alive", b" Transfer-Encoding"), "chunked", "1.1"),
    "TE with the TE field": (_conn(b" TE, Transfer-Encoding") + b"TE: trailers\r\n", "chunked",
                             "1.1"),
    "TE, CL, Host": (_conn(b" Transfer-Encoding, Content-Length, Host"), "chunked", "1.1"),
    "Upgrade, TE": (_conn(b" Upgrade, Transfer-Encoding") + UPGRADE, "chunked", "1.1"),
}


def _connection_vector(i, fields, framing, version):
    head = b"POST /first?v=%d HTTP/%s\r\nHost: app.test\r\n" % (i, version.encode()) + fields
    if framing == "cl":
        return head + _cl(len(HIDDEN)) + b"\r\n" + HIDDEN
    return head + TE + b"\r\n" + b"%x\r\n" % len(HIDDEN) + HIDDEN + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("transport", ["plain", "tls"])
def test_connection_naming_framing_fields_keeps_them(start_proxy, serve, pki, transport):
    """Every vector: one 200 from the backend, which received exactly that one request
    with its Host and framing field and HIDDEN as its body; the hidden requests never
    reach it, and their paths still answer 403 (block) and 401 (basic auth). Over plain
    HTTP and after TLS termination; all vectors run, the failure lists every one."""
    b = backend(serve, "A")
    port = sp.free_port()
    blocked = http_route("blocked", port, type="block", path="/secret/*", priority=5)
    tls = None
    if transport == "tls":
        # a block route has no TLS: a terminating route's block list answers 403 per
        # request; its own name keeps it from refusing the app.test connection itself
        cert = pki.leaf(["app.test", "secret.test"], "ecdsa")
        tls = {"mode": "terminate", "certificate": cert.paths()}
        ctx = tlsutil.client_context(pki.ca)
        blocked = http_route("blocked", port, "127.0.0.1", b.port, domains="secret.test",
                             path="/secret/*", priority=5, tls=tls,
                             security={"ip_block_list": ["127.0.0.0/8"]})
    p = http_proxy(start_proxy, [
        blocked,
        http_route("guarded", port, "127.0.0.1", b.port, path="/private/*", priority=5, tls=tls,
                   security={"basic_auth": {"realm": "r", "users": [
                       {"username": "u", "password": "p"}]}}),
        http_route("open", port, "127.0.0.1", b.port, tls=tls),
    ])

    def client():
        if transport == "tls":
            return Client(sock=tlsutil.tls_connect(port, "app.test", ctx))
        return Client(port)

    def received(target):
        return [r for r in b.app.requests if r["target"] == target]

    failures = []
    for i, (name, (fields, framing, version)) in enumerate(CONNECTION_NAMES_FRAMING.items()):
        with client() as c:
            c.send(_connection_vector(i, fields, framing, version))
            try:
                r = c.response("POST")
            except (OSError, ValueError) as e:
                failures.append(f"{name}: no response ({e!r})")
                continue
        if r.status != 200 or backend_of(r) != "A":
            failures.append(f"{name}: answered {r.status} {r.body[:80]!r}")
            continue
        got = received(f"/first?v={i}")
        if len(got) != 1:
            failures.append(f"{name}: the backend received it {len(got)} times")
            continue
        h = hu.Headers(got[0]["headers"])
        want = ([str(len(HIDDEN))], []) if framing == "cl" else ([], ["chunked"])
        if (h.all("content-length"), h.all("transfer-encoding")) != want:
            failures.append(f"{name}: the backend got Content-Length {h.all('content-length')}, "
                            f"Transfer-Encoding {h.all('transfer-encoding')}")
        if h.all("host") != ["app.test"]:
            failures.append(f"{name}: the backend got Host {h.all('host')}")
        if got[0]["body"] != HIDDEN.decode():
            failures.append(f"{name}: the backend read the body as {got[0]['body']!r}")
    # every backend connection has ended (pooled ones idle out): all it read is recorded
    sp.wait_until(lambda: len(b.app.closed) == b.app.conns(), 5, msg="backend connections ended")
    smuggled = [t for t in b.app.paths() if not t.startswith("/first?")]
    if smuggled:
        failures.append(f"REQUESTS NEVER ROUTED REACHED THE BACKEND: {smuggled}")
    assert not failures, (f"{len(failures)} failures over {len(CONNECTION_NAMES_FRAMING)} "
                          f"vectors:\n" + "\n".join(failures))
    with client() as c:
        error_body_ok(c.get("/secret/x", host="secret.test"), 403)
        error_body_ok(c.get("/private/x"), 401)
    assert len(b.app.paths()) == len(CONNECTION_NAMES_FRAMING)
    done(p)


def test_backend_connection_naming_framing_fields_keeps_them(start_proxy, serve):
    """A response that names its Content-Length or Transfer-Encoding in Connection keeps
    that field on the way to the client: the client reads exactly that body and the
    keep-alive connection goes on."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    with Client(port) as c:
        for mode, value, field in (("cl", "Content-Length", "content-length"),
                                   ("cl", "keep-alive, content-length", "content-length"),
                                   ("chunked", "Transfer-Encoding", "transfer-encoding"),
                                   ("chunked", "X-A,transfer-encoding", "transfer-encoding")):
            target = f"/body?size=3000&mode={mode}&connection={quote(value)}"
            c.send(hu.build_request("GET", target))
            version, status, _, headers = hu.parse_response_head(c.reader.head())
            assert status == 200 and headers.has(field), (value, list(headers))
            body = hu.Body()
            hu.read_body(c.reader, headers, body)
            assert (body.len, body.crc) == hu.pattern_crc(3000), value
        r = c.get("/after")
        assert r.status == 200 and r.json()["target"] == "/after", r
    done(p)


# ---------------------------------------------------------------------------- leaks

def test_clients_vanishing_mid_request_leave_nothing_behind(start_proxy, serve):
    """Clients reset or close while the head is partial, the body is uploading, the
    backend has not answered, the body is downloading and a WebSocket is open."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b)
    before = p.stats()
    clients = []
    for i in range(4):
        c = Client(port)
        c.send(b"GET /partial HTTP/1.1\r\nHost: app.te")  # a partial head
        clients.append(c)
        c = Client(port)
        c.send(hu.build_request("POST", "/upload", headers=[("Content-Length", str(GiB))])
               + b"x" * 100000)
        clients.append(c)
        c = Client(port)
        c.send(hu.build_request("GET", "/sleep?ms=2000"))
        clients.append(c)
        c = Client(port)
        c.send(hu.build_request("GET", f"/body?size={GiB}"))
        c.reader.head()
        c.reader.some(65536)
        clients.append(c)
        c = Client(port)
        r, _ = hu.ws_upgrade(c)
        assert r.status == 101
        clients.append(c)
    sp.wait_until(lambda: len(b.app.requests) >= 16, 5, msg="requests at the backend")
    for i, c in enumerate(clients):
        if i % 2:
            sp.rst_close(c.sock)
        else:
            c.close()
    sp.wait_until(lambda: p.stats()["active_connections"] == 0, 6, msg="all client connections gone")
    after = p.stats()
    assert after["total_connections"] - before["total_connections"] == len(clients)
    done(p)


def test_client_reset_while_waiting_for_the_response_ends_both_sides(start_proxy, serve):
    """A client that resets while its request waits for a slow backend: the proxy sees it
    at once (nginx does, by default) and closes the upstream connection, instead of holding
    both until the backend answers."""
    b = backend(serve, "SLOW")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("slow", port, "127.0.0.1", b.port)])
    c = Client(port)
    c.send(hu.build_request("GET", "/sleep?ms=4000"))
    sp.wait_until(lambda: b.app.requests, 3, msg="the request at the backend")
    sp.rst_close(c.sock)
    t0 = time.monotonic()
    sp.wait_until(lambda: p.stats()["active_connections"] == 0, 6, msg="the client gone")
    elapsed = time.monotonic() - t0
    sp.wait_until(lambda: b.app.closed, 6, msg="the upstream connection closed")
    assert elapsed < 2, f"the reset client was noticed only after {elapsed:.1f}s"
    done(p)


def test_reload_with_keepalive_connections(start_proxy, serve):
    """SIGHUP moving the route to another backend: new connections go there; a live
    keep-alive connection is still answered (by either generation) and nothing leaks."""
    a, b = backend(serve, "A"), backend(serve, "B")
    port = sp.free_port()
    p = http_proxy(start_proxy, [http_route("r", port, "127.0.0.1", a.port)])
    old = Client(port)
    assert backend_of(old.get("/1")) == "A"
    p.write_config({**p.config, "routes": [http_route("r", port, "127.0.0.1", b.port)]})
    assert p.reload()
    assert backend_of(fetch(port, "/new")) == "B"
    r = old.get("/2")
    assert r.status == 200 and backend_of(r) in ("A", "B"), r
    old.close()
    done(p)


def test_graceful_stop_closes_idle_keepalive_and_finishes_requests(start_proxy, serve):
    """SIGTERM: an idle keep-alive client is closed at once (as nginx does), a request in
    flight still gets its answer, and the process exits long before graceful_shutdown."""
    b = backend(serve, "A")
    port, p = one_route(start_proxy, b,
                        timeouts={"graceful_shutdown": 8000})
    idle = Client(port)
    assert idle.get("/idle").status == 200
    busy = Client(port)
    busy.send(hu.build_request("GET", "/sleep?ms=700"))
    sp.wait_until(lambda: "/sleep?ms=700" in b.app.paths(), 3, msg="request in flight")
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert idle.closed(timeout=3), "the idle keep-alive connection is closed"
    assert time.monotonic() - t0 < 1.5, "idle keep-alive connections do not hold the drain"
    r = busy.response()
    assert r.status == 200 and r.json()["target"] == "/sleep?ms=700", r
    assert p.wait_exit(8) == 0
    assert time.monotonic() - t0 < 3, "exit once the last request is answered"
    idle.close()
    busy.close()
