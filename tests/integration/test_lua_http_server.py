"""sp.handlers.http_server on the proxy's real sockets: the request head is parsed in C
(sock:read_request_head, the proxy's own llhttp parser), the body and the response in Lua."""
import http.client
import signal
import socket
import threading

import luautil as lu
import sp
from sp import Lua

SERVER = Lua("""require("smartproxy").handlers.http_server(function(req, res)
  res.headers["X-Method"] = req.method
  res.headers["X-Path"] = req.path
  res.headers["X-Query"] = req.query
  res.headers["X-Host"] = req.headers["HOST"] or "-"
  res.body = "hello " .. #req.body .. " " .. req.body
end)""")


def server(start_proxy):
    port = sp.free_port()
    p = start_proxy({"routes": [{"name": "srv", "match": {"ports": port},
                                 "action": {"type": "socket-handler", "handler": SERVER}}]})
    return p, port


def test_keep_alive_requests_with_bodies(start_proxy):
    p, port = server(start_proxy)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for i in range(20):
        conn.request("GET", f"/a/b?i={i}", headers={"Host": "example.test"})
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"hello 0 "
        assert r.headers["X-Path"] == "/a/b" and r.headers["X-Query"] == f"i={i}"
        assert r.headers["X-Host"] == "example.test"
    conn.request("POST", "/post", body=b"x" * 1000)
    r = conn.getresponse()
    assert r.read() == b"hello 1000 " + b"x" * 1000 and r.headers["X-Method"] == "POST"
    conn.request("POST", "/chunked", body=iter([b"ab", b"cd"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert conn.getresponse().read() == b"hello 4 abcd"
    conn.close()
    lu.assert_clean(p)


def test_pipelined_requests_in_one_write_are_answered_in_order(start_proxy):
    p, port = server(start_proxy)
    with sp.connect(port) as c:
        c.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                  b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = lu.recv_until_closed(c)
    assert data.count(b"HTTP/1.1 200") == 3
    assert data.index(b"X-Path: /1") < data.index(b"X-Path: /2") < data.index(b"X-Path: /3")
    lu.assert_clean(p)


def test_bad_requests_get_400_and_a_close(start_proxy):
    p, port = server(start_proxy)
    for bad in (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                b"GET / HTTP/1.1\nHost: a\n\n",
                b"GET / HTTP/1.1\r\n\r\n"):
        with sp.connect(port) as c:
            c.sendall(bad)
            data = lu.recv_until_closed(c)
        assert data.startswith(b"HTTP/1.1 400"), (bad, data[:80])
    with sp.connect(port) as c:  # a head over the handler's max_head_size (64 KiB)
        c.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
        data = lu.recv_until_closed(c)
    assert data.startswith(b"HTTP/1.1 431"), data[:80]
    lu.assert_clean(p)


def test_head_split_across_many_writes(start_proxy):
    p, port = server(start_proxy)
    with sp.connect(port) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n":
            c.sendall(bytes([b]))
        data = lu.recv_until_closed(c)
    assert data.startswith(b"HTTP/1.1 200") and b"X-Path: /slow" in data
    lu.assert_clean(p)


def test_long_header_names_are_kept_whole(start_proxy):
    """Header names longer than the C side's stack buffer (256) reach Lua whole and
    lowercased: two names that share their first 299 bytes stay two headers."""
    port = sp.free_port()
    handler = Lua("""require("smartproxy").handlers.http_server(function(req, res)
      local long = string.rep("x", 299)
      res.body = tostring(req.headers[long .. "a"]) .. "|" .. tostring(req.headers[long .. "b"])
    end)""")
    p = start_proxy({"routes": [{"name": "srv", "match": {"ports": port},
                                 "action": {"type": "socket-handler", "handler": handler}}]})
    long = "X" * 299
    with sp.connect(port) as c:
        c.sendall(f"GET / HTTP/1.1\r\nHost: a\r\n{long}A: 1\r\n{long}B: 2\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = lu.recv_until_closed(c)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n1|2"), data[-80:]
    lu.assert_clean(p)


def test_graceful_stop_ends_idle_keepalive_and_answers_a_started_request(start_proxy):
    """SIGTERM: a connection waiting for its next request is closed at once (as the HTTP
    engine and nginx do), one with half a request head is still answered and then closed,
    and the proxy exits long before timeouts.graceful_shutdown."""
    port = sp.free_port()
    p = start_proxy({"timeouts": {"graceful_shutdown": 60000},
                     "routes": [{"name": "srv", "match": {"ports": port},
                                 "action": {"type": "socket-handler", "handler": SERVER}}]})
    first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
    half = b"GET /2 HTTP/1.1\r\nHost: a\r\n"
    idle = sp.connect(port)
    idle.sendall(first)
    assert sp.recv_line(idle).startswith(b"HTTP/1.1 200")
    partial = sp.connect(port)
    partial.sendall(half)
    # the stop must find the partial head already read: wait for the proxy to count its bytes
    sp.wait_until(lambda: p.stats()["bytes_from_clients"] >= len(first) + len(half), 10,
                  msg="the partial head read by the proxy")
    assert p.stats()["active_connections"] == 2
    p.proc.send_signal(signal.SIGTERM)
    # Closed at once means: while the started request still holds the stop open (the
    # proxy cannot exit before it is answered), not when graceful_shutdown runs out.
    lu.recv_until_closed(idle, timeout=30)  # the rest of the first response, then EOF
    assert p.alive() and sp.is_open(partial), "the stop did not wait for the started request"
    partial.sendall(b"\r\n")
    data = lu.recv_until_closed(partial, timeout=30)
    assert data.startswith(b"HTTP/1.1 200") and b"X-Path: /2" in data, data[:80]
    assert p.wait_exit(30) == 0  # half of graceful_shutdown: it did not wait that out
    idle.close()
    partial.close()


def test_graceful_stop_closes_pooled_upstream_connections(start_proxy):
    """An HTTP route's idle pooled upstream connection is closed when the stop begins: the
    backend sees EOF at once, not when the proxy finally exits."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    seen = {}

    def backend():
        c, _ = srv.accept()
        with c:
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            c.settimeout(10)
            try:
                seen["eof"] = c.recv(1) == b""
            except OSError:
                seen["eof"] = False
    t = threading.Thread(target=backend, daemon=True)
    t.start()
    port = sp.free_port()
    p = start_proxy({"timeouts": {"graceful_shutdown": 60000},
                     "routes": [{"name": "fwd", "match": {"ports": port},
                                 "action": {"type": "forward", "protocol": "http",
                                            "target": {"host": "127.0.0.1",
                                                       "port": srv.getsockname()[1]}}}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/x")
    assert conn.getresponse().read() == b"ok"
    conn.close()  # the upstream connection goes to the pool
    sp.wait_until(lambda: p.stats()["active_connections"] == 0, 10, msg="client gone")
    hold = sp.connect(port)  # half a request head: the drain waits for this one
    hold.sendall(b"GET /y HTTP/1.1\r\nHost: a\r\n")
    sp.wait_until(lambda: p.stats()["active_connections"] == 1, 10, msg="hold accepted")
    p.proc.send_signal(signal.SIGTERM)
    # At once means: while the other connection still holds the stop open, not at exit.
    t.join(30)
    assert seen.get("eof"), seen
    assert p.proc.poll() is None, "still draining the other connection"
    hold.close()
    assert p.wait_exit(30) == 0
    srv.close()
