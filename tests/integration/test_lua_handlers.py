"""Lua socket handlers (SPEC 7): cosocket reads and writes, servers that speak first,
core.connect/core.pipe, sleep/log/stats, error isolation, hogs, hot reload, the
lifecycle of many connections and of clients that vanish, and timeouts."""
import os
import socket
import threading
import time
import zlib

import pytest

import sp
import tlsutil
from luautil import CORE, ECHO_LINES, LUA_MEMORY, handler_route
from sp import Lua
import luautil as lu

MiB = 1 << 20


def one_route(start_proxy, name, body, config=None, **kw):
    """A proxy with one handler route on a fresh port; returns (proxy, port)."""
    port = sp.free_port()
    p = start_proxy({**(config or {}), "routes": [handler_route(name, port, body, **kw)]})
    return p, port


def has_data(s):
    """True when bytes wait to be read on s (nothing consumed, no wait)."""
    t = s.gettimeout()
    s.settimeout(0)
    try:
        return bool(s.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        s.settimeout(t)


# ---------------------------------------------------------------- 1. reading and writing

def test_echo_lines_many_clients_on_two_workers(start_proxy):
    p, port = one_route(start_proxy, "echo", ECHO_LINES)
    assert p.config["workers"] == 2
    before = p.stats()
    n_clients, n_lines = 10, 30

    def client(i):
        with p.connect(port) as c:
            # pipelined: many lines in one send, both line ends
            lines = [b"client %d line %d %s" % (i, k, os.urandom(4).hex().encode())
                     for k in range(n_lines)]
            c.sendall(b"".join(ln + (b"\r\n" if k % 2 else b"\n") for k, ln in enumerate(lines)))
            for ln in lines:
                assert sp.recv_line(c) == ln + b"\n"
            # then one at a time, one split across two sends
            for k in range(5):
                msg = b"again %d %d" % (i, k)
                sp.roundtrip(c, msg + b"\n")
            c.sendall(b"split ")
            c.sendall(b"line\r\n")
            assert sp.recv_line(c) == b"split line\n"
            c.sendall(b"\n")  # an empty line is a line
            assert sp.recv_line(c) == b"\n"
        return True

    assert all(lu.run_threads(n_clients, client))
    s = sp.wait_counter(p, before, "terminations", "handler_done", n_clients)
    assert s["total_connections"] - before["total_connections"] == n_clients
    sp.assert_accounted(p, before)
    lu.assert_clean(p)


def test_n_byte_reads_with_data_in_small_pieces(start_proxy):
    body = """
    while true do
      local hdr, err, part = sock:read(4)
      if not hdr then
        sock:write("eof:" .. tostring(err) .. ":" .. part .. "\\n")
        return
      end
      local n = tonumber(hdr)
      local data, err2, part2 = sock:read(n)
      if not data then
        sock:write("short:" .. tostring(err2) .. ":" .. part2 .. "\\n")
        return
      end
      sock:write(string.format("%d=%s|", n, data))
    end
    """
    p, port = one_route(start_proxy, "nbytes", body)
    msgs = [b"hello", b"abcdefghijkl", b"x", b"", b"0123456789" * 30]
    stream = b"".join(b"%04d" % len(m) + m for m in msgs)
    expect = b"".join(b"%d=%s|" % (len(m), m) for m in msgs)
    with p.connect(port) as c:
        tlsutil.send_slowly(c, stream[:200], step=1, pause=0.001)
        tlsutil.send_slowly(c, stream[200:], step=7, pause=0.001)
        assert sp.recv_exact(c, len(expect)) == expect
        # a read cut short by EOF: nil, "closed", and what had arrived
        c.sendall(b"0010abc")
        c.shutdown(socket.SHUT_WR)
        assert lu.recv_until_closed(c) == b"short:closed:abc\n"
    with p.connect(port) as c:  # EOF inside the 4-byte header
        c.sendall(b"00")
        c.shutdown(socket.SHUT_WR)
        assert lu.recv_until_closed(c) == b"eof:closed:00\n"
    lu.assert_clean(p)


def test_read_all_until_the_client_shuts_down_writing(start_proxy):
    body = """
    local data, err, part = sock:read("*a")
    sock:write(string.format("%s:%s:%d:", type(data), tostring(err), data and #data or -1))
    sock:write(data or part)
    """
    p, port = one_route(start_proxy, "all", body)
    payload = os.urandom(300_000)
    before = p.stats()
    with p.connect(port) as c:
        for i in range(0, len(payload), 50_000):
            c.sendall(payload[i:i + 50_000])
        time.sleep(0.05)  # pacing only: the handler must still be waiting for EOF
        assert not has_data(c), "*a answered before EOF"
        c.shutdown(socket.SHUT_WR)
        data = lu.recv_until_closed(c)
    head = b"string:nil:%d:" % len(payload)
    assert data[:len(head)] == head, data[:60]
    assert data[len(head):] == payload
    sp.wait_counter(p, before, "terminations", "handler_done")
    lu.assert_clean(p)


def test_read_timeout_returns_partial_and_handler_continues(start_proxy):
    body = """
    sock:set_timeout(250)
    local d, err, part = sock:read(10)
    sock:write(string.format("%s|%s|%s\\n", tostring(d), tostring(err), tostring(part)))
    local l, err2, part2 = sock:read("*l")
    sock:write(string.format("%s|%s|%s\\n", tostring(l), tostring(err2), tostring(part2)))
    sock:set_timeout(5000)
    local line = sock:read("*l")
    sock:write("after:" .. tostring(line) .. "\\n")
    """
    p, port = one_route(start_proxy, "timeout", body)
    before = p.stats()
    with p.connect(port) as c:
        t0 = time.monotonic()
        c.sendall(b"abc")
        assert sp.recv_line(c) == b"nil|timeout|abc\n"
        took = time.monotonic() - t0
        assert 0.2 <= took <= 2.0, f"read(10) with a 250 ms timeout answered after {took:.2f}s"
        t0 = time.monotonic()
        c.sendall(b"xy")
        assert sp.recv_line(c) == b"nil|timeout|xy\n"
        assert 0.2 <= time.monotonic() - t0 <= 2.0
        # the partial bytes were consumed: the next line starts fresh
        c.sendall(b"fine\n")
        assert sp.recv_line(c) == b"after:fine\n"
        assert sp.wait_closed(c) == "fin"
    s = sp.wait_counter(p, before, "terminations", "handler_done")
    assert sp.delta(before, s, "terminations") == {"handler_done": 1}
    lu.assert_clean(p)


def test_each_wait_gets_its_own_timeout(start_proxy):
    """The wait timer is armed lazily (a resume leaves it running): a longer timeout after
    a shorter wait must not end early, a shorter one must not end late, and sp.sleep
    between them must not disturb either."""
    body = f"""
    {CORE}
    sock:set_timeout(400)
    sock:write(tostring(sock:read("*l")) .. "\\n")        -- answered at once
    sock:set_timeout(1500)
    local _, err = sock:read("*l")                         -- nothing comes
    sock:write("long:" .. tostring(err) .. "\\n")
    core.sleep(50)
    sock:set_timeout(200)
    _, err = sock:read("*l")
    sock:write("short:" .. tostring(err) .. "\\n")
    """
    p, port = one_route(start_proxy, "timers", body)
    with p.connect(port) as c:
        c.sendall(b"first\n")
        assert sp.recv_line(c) == b"first\n"
        t0 = time.monotonic()
        assert sp.recv_line(c) == b"long:timeout\n"
        took = time.monotonic() - t0
        assert 1.35 <= took <= 3.0, f"a 1500 ms read timeout ended after {took:.2f}s"
        t0 = time.monotonic()
        assert sp.recv_line(c) == b"short:timeout\n"
        took = time.monotonic() - t0
        assert 0.2 <= took <= 1.0, f"sleep 50 + a 200 ms read timeout took {took:.2f}s"
        assert sp.wait_closed(c) == "fin"
    lu.assert_clean(p)


@pytest.mark.skipif(sp.SANITIZED, reason="ASan keeps freed memory in quarantine: RSS says nothing there")
def test_large_writes_to_slow_clients_are_bounded(start_proxy):
    """12 clients with small receive buffers that read slowly each get 8 MiB from a
    handler writing 64 KiB blocks: every byte arrives and the proxy's RSS grows by less
    than 32 MiB (without backpressure it would queue most of 96 MiB)."""
    body = """
    local block = string.rep("0123456789abcdef", 4096)
    for i = 1, 128 do
      local ok, err = sock:write(block)
      if not ok then return end
    end
    sock:write("END\\n")
    """
    p, port = one_route(start_proxy, "big", body)
    with p.connect(port) as c:  # warm up the route's Lua state and buffers
        c.settimeout(10)
        sp.recv_exact(c, 8 * MiB + 4)
    lu.assert_clean(p)
    idle_rss = p.rss_kib()
    expect_crc = zlib.crc32(b"0123456789abcdef" * 4096 * 128 + b"END\n")
    samples, stop = [], threading.Event()

    def sample():
        while not stop.wait(0.02):
            samples.append(p.rss_kib())
    sampler = threading.Thread(target=sample)
    sampler.start()

    def client(i):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        with s:
            time.sleep(0.5)  # not reading at first: the handler fills every buffer
            total, crc = 0, 0
            buf = bytearray(64 * 1024)
            while True:
                n = s.recv_into(buf)
                if not n:
                    break
                crc = zlib.crc32(buf[:n], crc)
                total += n
                if total % (256 * 1024) < n:
                    time.sleep(0.005)
        return total, crc

    try:
        results = lu.run_threads(12, client, timeout=60)
    finally:
        stop.set()
        sampler.join()
    assert results == [(8 * MiB + 4, expect_crc)] * 12, "bytes lost or changed"
    growth_mib = (max(samples) - idle_rss) / 1024
    assert growth_mib < 32, f"RSS grew by {growth_mib:.1f} MiB (idle {idle_rss} KiB)"
    lu.assert_clean(p)


# ---------------------------------------------------------------- 2. server speaks first

def test_handler_speaks_first(start_proxy):
    body = """
    sock:write("220 smartproxy ready\\r\\n")
    while true do
      local line = sock:read("*l")
      if not line or line == "QUIT" then sock:write("221 bye\\r\\n") return end
      sock:write("250 " .. line .. "\\r\\n")
    end
    """
    p, port = one_route(start_proxy, "smtpish", body)
    with p.connect(port, timeout=3) as c:  # the client sends nothing first
        assert sp.recv_line(c) == b"220 smartproxy ready\r\n"
        s = p.stats()
        assert s["active_connections"] == 1 and s["by_state"].get("lua") == 1, s["by_state"]
        c.sendall(b"HELO me\r\n")
        assert sp.recv_line(c) == b"250 HELO me\r\n"
        c.sendall(b"QUIT\r\n")
        data, how = sp.read_to_close(c)
        assert (data, how) == (b"221 bye\r\n", "fin")
    lu.assert_clean(p)


def test_bytes_read_while_routing_come_first(start_proxy):
    """On a port with domain routes the proxy reads the ClientHello (or the first plain
    bytes) to route; the chosen handler reads exactly those bytes first."""
    hello_body = """
    local hdr = assert(sock:read(5))
    local n = hdr:byte(4) * 256 + hdr:byte(5)
    local rest = assert(sock:read(n))
    sock:write(string.format("%s|%d|", tostring(ctx.domain), 5 + n))
    sock:write(hdr .. rest)
    """
    plain_body = """
    local line = sock:read("*l")
    sock:write("plain:" .. tostring(line) .. "|" .. tostring(ctx.domain) .. "\\n")
    """
    port = sp.free_port()
    p = start_proxy({"routes": [
        handler_route("hello", port, hello_body, domains=["hello.example"]),
        handler_route("other", port, 'sock:write("other\\n")', domains=["other.example"]),
        handler_route("plain", port, plain_body),
    ]})
    hello = tlsutil.client_hello("hello.example")
    with p.connect(port) as c:
        c.sendall(hello)
        head = b"hello.example|%d|" % len(hello)
        got = sp.recv_exact(c, len(head) + len(hello))
        assert got == head + hello
    with p.connect(port) as c:
        c.sendall(tlsutil.client_hello("other.example"))
        assert sp.recv_line(c) == b"other\n"
    with p.connect(port) as c:
        c.sendall(b"not tls at all\r\n")
        line = sp.recv_line(c)
        assert line in (b"plain:not tls at all|\n", b"plain:not tls at all|nil\n"), line
    lu.assert_clean(p)


def test_ctx_and_peer(start_proxy):
    body = """
    local ip, port = sock:peer()
    local f = {ctx.client_ip, ctx.client_port, ctx.server_ip, ctx.server_port,
               ctx.domain, ctx.tls, ctx.route_name, ctx.connection_id, ctx.proxied_by,
               ip, port, type(ctx.connection_id)}
    for i = 1, 12 do f[i] = tostring(f[i]) end
    sock:write(table.concat(f, "|") .. "\\n")
    """
    p, port = one_route(start_proxy, "ctxr", body)
    ids = []
    for src in ("127.0.0.1", "127.0.0.2"):
        with p.connect(port, src=src) as c:
            cip, cport = c.getsockname()
            f = sp.recv_line(c).decode().rstrip("\n").split("|")
        assert f[0:4] == [cip, str(cport), "127.0.0.1", str(port)], f
        assert f[4] in ("", "nil"), f"domain without SNI: {f[4]!r}"
        assert f[5] == "false" and f[6] == "ctxr" and f[8] == "nil", f
        assert f[9:11] == [cip, str(cport)], f"sock:peer() {f[9:11]} vs {cip}:{cport}"
        assert f[11] == "number", f
        ids.append(f[7])
    assert ids[0] != ids[1], f"connection ids repeat: {ids}"
    lu.assert_clean(p)


# ---------------------------------------------------------------- 3. connect and pipe

def test_connect_and_pipe_unconsumed_bytes_first(start_proxy, serve):
    backend = serve(lu.recording_echo(banner=b"BANNER-rest\n"))
    body = f"""
    {CORE}
    local head = assert(sock:read(5))
    local up, err = core.connect("127.0.0.1", {backend.port}, {{timeout = 2000}})
    if not up then sock:write("ERR " .. tostring(err) .. "\\n") return end
    local b = assert(up:read(6))
    sock:write("<" .. b .. ">")
    assert(up:write(head))
    core.pipe(sock, up)
    error("core.pipe returned")
    """
    p, port = one_route(start_proxy, "piper", body)
    payload = os.urandom(100_000)
    before = p.stats()
    with p.connect(port) as c:
        c.sendall(b"HELLOworld" + payload)  # one send: the handler reads 5 of it
        first = b"<BANNER>-rest\n"
        assert sp.recv_exact(c, len(first)) == first
        assert sp.recv_exact(c, 10 + len(payload)) == b"HELLOworld" + payload
        sp.roundtrip(c, b"and more")
    assert backend.wait_results(1) == [b"HELLOworld" + payload + b"and more"]
    lu.assert_clean(p)
    d = sp.delta(before, p.stats(), "terminations")
    assert "lua_error" not in d, f"the handler ran on after core.pipe: {d}\n{p.stderr_tail()}"
    sp.assert_accounted(p, before)


def test_connect_refused_reports_and_handler_goes_on(start_proxy):
    dead = sp.free_port()
    body = f"""
    {CORE}
    local up, err = core.connect("127.0.0.1", {dead}, {{timeout = 2000}})
    sock:write(string.format("%s|%s\\n", tostring(up), tostring(err)))
    sock:write("ERR cannot reach the service\\n")
    """
    p, port = one_route(start_proxy, "refused", body)
    before = p.stats()
    with p.connect(port) as c:
        t0 = time.monotonic()
        first = sp.recv_line(c).decode()
        assert time.monotonic() - t0 < 1.5, "a refused connect took long"
        assert sp.read_to_close(c) == (b"ERR cannot reach the service\n", "fin")
    up, err = first.rstrip("\n").split("|", 1)
    assert up == "nil" and err not in ("", "nil", "timeout"), first
    s = sp.wait_counter(p, before, "terminations", "handler_done")
    assert sp.delta(before, s, "terminations") == {"handler_done": 1}
    lu.assert_clean(p)


def test_connect_timeout(start_proxy, blackhole):
    body = f"""
    {CORE}
    sock:read("*l")
    local up, err = core.connect("127.0.0.1", {blackhole.port}, {{timeout = 400}})
    sock:write(string.format("%s|%s\\n", tostring(up), tostring(err)))
    sock:write("still here\\n")
    """
    p, port = one_route(start_proxy, "bh", body)
    with p.connect(port) as c:
        c.sendall(b"go\n")
        t0 = time.monotonic()
        line = sp.recv_line(c)
        took = time.monotonic() - t0
        assert line == b"nil|timeout\n"
        assert 0.3 <= took <= 1.5, f"a 400 ms connect timeout answered after {took:.2f}s"
        assert sp.read_to_close(c) == (b"still here\n", "fin")
    lu.assert_clean(p)  # the abandoned attempt's socket is closed too


def test_connect_by_host_name(start_proxy, serve):
    hosts = ("127.0.0.1", "::1") if sp.ipv6_available() else ("127.0.0.1",)
    backend = serve(sp.echo, hosts=hosts)
    body = f"""
    {CORE}
    local up, err = core.connect("localhost", {backend.port}, {{timeout = 3000}})
    if not up then sock:write("ERR " .. tostring(err) .. "\\n") return end
    local ip, port = up:peer()
    sock:write(string.format("peer %s %s\\n", tostring(ip), tostring(port)))
    core.pipe(sock, up)
    """
    p, port = one_route(start_proxy, "byname", body)
    for _ in range(3):
        with p.connect(port) as c:
            line = sp.recv_line(c).decode().split()
            assert line[0] == "peer", line
            assert line[1] in hosts and line[2] == str(backend.port), line
            sp.roundtrip(c, b"resolved and piped")
    assert backend.accepted == 3
    lu.assert_clean(p)


@pytest.fixture(scope="module")
def leaf(tmp_path_factory):
    """A test CA and a leaf certificate for a.example.test."""
    pki = tlsutil.PKI(tmp_path_factory.mktemp("pki"))
    return pki.leaf("a.example.test", "ecdsa")


def test_connect_tls_sni_and_pipe_a_tls_upstream(start_proxy, serve, leaf):
    backend = serve(tlsutil.tls_echo(leaf))
    body = f"""
    {CORE}
    local up, err = core.connect("127.0.0.1", {backend.port}, {{tls = true, sni = "a.example.test"}})
    if not up then sock:write("ERR " .. tostring(err) .. "\\n") return end
    up:write("ping\\n")
    local echoed = up:read("*l")
    sock:write("tls said " .. tostring(echoed) .. "\\n")
    core.pipe(sock, up)
    """
    p, port = one_route(start_proxy, "tlsup", body)
    with p.connect(port) as c:
        assert sp.recv_line(c) == b"tls said ping\n"
        sp.roundtrip(c, b"through the TLS upstream after sp.pipe")
    info = backend.wait_results(1)[0]
    assert info.get("sni") == "a.example.test", info
    lu.assert_clean(p)


def test_connect_tls_verify_refuses_an_unknown_ca(start_proxy, serve, leaf):
    backend = serve(tlsutil.tls_echo(leaf))
    body = f"""
    {CORE}
    local up, err = core.connect("127.0.0.1", {backend.port}, {{tls = true, verify = true, sni = "a.example.test"}})
    sock:write(up and "connected\\n" or ("refused " .. tostring(err) .. "\\n"))
    """
    p, port = one_route(start_proxy, "tlsverify", body)
    before = p.stats()
    with p.connect(port) as c:
        assert sp.recv_line(c) == b"refused tls handshake failed: verify_failed\n"
    s = p.stats()
    assert s["tls"]["upstream_failures"]["verify_failed"] - before["tls"]["upstream_failures"]["verify_failed"] == 1
    lu.assert_clean(p)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_connect_sends_a_proxy_header_for_the_client(start_proxy, serve, version):
    # a recorder that does not echo: closing with an unread echo would reset the backend
    # before it has read everything (a race, not what this test is about)
    backend = serve(tlsutil.recorder())
    body = f"""
    {CORE}
    local up = assert(core.connect("127.0.0.1", {backend.port}, {{proxy_protocol = "{version}"}}))
    up:write("after the header")
    up:close()
    """
    p, port = one_route(start_proxy, "ppup", body)
    with p.connect(port, src="127.0.0.2") as c:
        lu.recv_until_closed(c)
    got = backend.wait_results(1)[0]
    data = got if isinstance(got, (bytes, bytearray)) else got.get("bytes", b"")
    if version == "v1":
        assert data.startswith(b"PROXY TCP4 127.0.0.2 127.0.0.1 "), data[:60]
    else:
        assert data.startswith(b"\r\n\r\n\x00\r\nQUIT\n"), data[:20]
        assert bytes(data[16:20]) == bytes([127, 0, 0, 2])
    assert data.endswith(b"after the header")
    lu.assert_clean(p)


# ---------------------------------------------------------------- 4. sleep, log, stats

def test_sleep_orders_and_does_not_block_the_worker(start_proxy):
    body = f"""
    {CORE}
    local ms = tonumber(sock:read("*l"))
    core.sleep(ms)
    sock:write("woke " .. ms .. "\\n")
    """
    p, port = one_route(start_proxy, "sleeper", body, config={"workers": 1})
    delays = [600, 200, 400]
    order, lock = [], threading.Lock()

    def client(i):
        with p.connect(port) as c:
            t0 = time.monotonic()
            c.sendall(b"%d\n" % delays[i])
            line = sp.recv_line(c)
            took = time.monotonic() - t0
            with lock:
                order.append(delays[i])
        assert line == b"woke %d\n" % delays[i]
        assert took >= delays[i] / 1000 - 0.02, f"sleep({delays[i]}) woke after {took:.3f}s"
        return took

    t0 = time.monotonic()
    took = lu.run_threads(3, client)
    total = time.monotonic() - t0
    assert order == sorted(delays), f"woke in order {order}"
    assert total < 1.1, f"sleeps ran one after another ({total:.2f}s, took {took})"
    lu.assert_clean(p)


def test_log_goes_to_stderr_with_the_route_name(start_proxy):
    body = f"""
    {CORE}
    core.log("warn", "hello-from-lua", 42, ctx.connection_id)
    sock:write("logged " .. ctx.connection_id .. "\\n")
    """
    p, port = one_route(start_proxy, "logger", body)
    with p.connect(port) as c:
        conn_id = sp.recv_line(c).decode().split()[1]
    lines = lu.wait_log(p, "hello-from-lua 42 " + conn_id)
    assert "route=logger" in lines[0], lines
    assert "warn" in lines[0], lines


def test_stats_and_version_inside_a_handler(start_proxy):
    body = f"""
    {CORE}
    local s = core.stats()
    sock:write(string.format("%d %d %d %d %s %s %s\\n", s.active_connections,
      s.total_connections, s.by_state.lua or -1, s.worker, type(s.terminations),
      type(s.terminations.handler_done), type(core.version) == "string" and core.version ~= ""))
    """
    p, port = one_route(start_proxy, "stats", body)
    for n in (1, 2):
        with p.connect(port) as c:
            f = sp.recv_line(c).decode().split()
        active, total, lua_state, worker = map(int, f[:4])
        assert active >= 1 and total >= n and lua_state >= 1, f
        assert 0 <= worker < 2, f
        assert f[4:] == ["table", "number", "true"], f
    lu.assert_clean(p)


def test_stats_inside_a_handler_has_the_counters_of_stats(start_proxy):
    """sp.stats() walks the same descriptor table as /stats: the same nesting."""
    body = f"""
    {CORE}
    local s = core.stats()
    sock:write(string.format("%d %d %d %d %d %d\\n", s.tls.handshakes, s.tls_handshakes,
      s.http.requests, s.http.responses["2xx"], s.refused.max_connections, s.bytes_to_clients))
    """
    p, port = one_route(start_proxy, "stats", body)
    with p.connect(port) as c:
        f = list(map(int, sp.recv_line(c).decode().split()))
    s = p.stats()
    assert f[0] == f[1] == s["tls"]["handshakes"] == 0, f
    assert f[2] == s["http"]["requests"] and f[3] == s["http"]["responses"]["2xx"], f
    assert f[4] == s["refused"]["max_connections"] and f[5] <= s["bytes_to_clients"], f
    lu.assert_clean(p)


# ---------------------------------------------------------------- 5. isolation

ISOLATION = """
local function explode(how)
  if how == "string" then error("kaboom-" .. ctx.connection_id) end
  if how == "runtime" then local t = nil; return t.field end
  if how == "table" then error({code = 7}) end
end
if ctx.client_ip == "127.0.0.3" then explode("string") end  -- before any yield
sock:write("id " .. ctx.connection_id .. "\\n")
while true do
  local line = sock:read("*l")
  if not line then return end
  if line == "string" or line == "runtime" or line == "table" then explode(line) end
  sock:write(line .. "\\n")
end
"""


@pytest.mark.parametrize("how", ["string", "runtime", "table", "first_resume"])
def test_error_closes_only_its_connection(start_proxy, how):
    p, port = one_route(start_proxy, "iso", ISOLATION, config={"workers": 1})
    before = p.stats()
    with p.connect(port) as ok:
        assert sp.recv_line(ok).startswith(b"id ")
        if how == "first_resume":
            with p.connect(port, src="127.0.0.3") as bad:
                data, _ = sp.read_to_close(bad)
            assert data == b""
            needle = "kaboom-"
        else:
            with p.connect(port) as bad:
                bad_id = sp.recv_line(bad).split()[1].decode()
                sp.roundtrip(bad, b"fine so far\n")
                bad.sendall(how.encode() + b"\n")
                data, _ = sp.read_to_close(bad)
            assert data == b""
            needle = {"string": "kaboom-" + bad_id, "runtime": "attempt to index",
                      "table": "error object is not a string"}[how]
        sp.roundtrip(ok, b"the other connection lives on\n")
        sp.wait_counter(p, before, "terminations", "lua_error")
        sp.wait_until(lambda: p.stats()["active_connections"] == 1, 3,
                      msg="only the good connection left")
    report = lu.failure_report(p, "iso")
    assert needle in report, report
    assert "stack traceback:" in report, f"no traceback logged:\n{report}"
    if how != "first_resume":
        assert f"conn={bad_id} " in report, report
        assert "explode" in report or "proxy.lua" in report, f"traceback without frames:\n{report}"
    with p.connect(port) as again:  # the route still serves
        assert sp.recv_line(again).startswith(b"id ")
    s = sp.wait_counter(p, before, "terminations", "handler_done", 2)
    assert sp.delta(before, s, "terminations") == {"lua_error": 1, "handler_done": 2}
    lu.assert_clean(p)


# ---------------------------------------------------------------- 6. hogs

def test_hog_is_reported_and_still_served(start_proxy):
    hog = """
    sock:write("id " .. ctx.connection_id .. "\\n")
    local t0 = os.clock()
    local x = 0
    while os.clock() - t0 < 0.2 do x = x + 1 end
    sock:write("done\\n")
    """
    hport, eport = sp.free_ports(2)
    p = start_proxy({"workers": 1, "routes": [handler_route("hog", hport, hog),
                                              handler_route("calm", eport, ECHO_LINES)]})
    with p.connect(eport) as calm:
        sp.roundtrip(calm, b"before\n")
        with p.connect(hport) as c:
            hog_id = sp.recv_line(c).split()[1].decode()
            assert sp.recv_line(c) == b"done\n"
        sp.roundtrip(calm, b"after\n")
    lines = lu.wait_log(p, "without yielding", "route=hog")
    assert any(f"conn={hog_id} " in ln for ln in lines), lines
    assert not lu.log_lines(p, "without yielding", "route=calm"), "a calm handler was reported"
    lu.assert_clean(p)


def test_hog_warning_threshold_is_configurable(start_proxy):
    """timeouts.lua_hog_warning: a 200 ms resume is not reported under a 1 s threshold,
    and nothing is under 0 (never)."""
    hog = """
    local t0 = os.clock()
    while os.clock() - t0 < 0.2 do end
    sock:write("done\\n")
    """
    for threshold in (1000, 0):
        hport, eport = sp.free_ports(2)
        p = start_proxy({"workers": 1, "timeouts": {"lua_hog_warning": threshold},
                         "routes": [handler_route("hog", hport, hog),
                                    handler_route("calm", eport, ECHO_LINES)]})
        with p.connect(hport) as c:
            assert sp.recv_line(c) == b"done\n"
        with p.connect(eport) as calm:  # the same worker: the hog's resume has ended
            sp.roundtrip(calm, b"after\n")
        time.sleep(0.1)
        assert not lu.log_lines(p, "without yielding"), threshold
        lu.assert_clean(p)
        p.stop()


# ---------------------------------------------------------------- 7. hot reload

def versioned(port, tag):
    return {"routes": [handler_route("hot", port, f"""
    sock:set_timeout(0)
    while true do
      local line = sock:read("*l")
      if not line then return end
      sock:write("{tag}:" .. line .. "\\n")
    end
    """)]}


def test_reload_keeps_live_handlers_on_their_code(start_proxy):
    port = sp.free_port()
    p = start_proxy(versioned(port, "v1"))
    with p.connect(port) as live:
        live.sendall(b"a\n")
        assert sp.recv_line(live) == b"v1:a\n"  # now waiting in sock:read
        # a broken config: refused, v1 goes on serving
        p.write_text("return {\n  routes = {\n")
        failed_before = p.stats()["reloads_failed"]
        assert not p.reload(), "a config with a syntax error was accepted"
        assert p.stats()["reloads_failed"] == failed_before + 1
        with p.connect(port) as c:
            c.sendall(b"b\n")
            assert sp.recv_line(c) == b"v1:b\n"
        live.sendall(b"c\n")
        assert sp.recv_line(live) == b"v1:c\n"
        # v2: new connections run v2, the live one stays on v1
        p.write_config(versioned(port, "v2"))
        assert p.reload(), f"reload to v2 failed:\n{p.stderr_tail()}"
        live.sendall(b"d\n")
        assert sp.recv_line(live) == b"v1:d\n"
        for _ in range(4):  # both workers
            with p.connect(port) as c:
                c.sendall(b"e\n")
                assert sp.recv_line(c) == b"v2:e\n"
        live.sendall(b"f\n")
        assert sp.recv_line(live) == b"v1:f\n"
    lu.assert_clean(p)


# ---------------------------------------------------------------- 8. lifecycle

def test_ten_thousand_connections_leave_nothing_behind(start_proxy):
    eport, mport = sp.free_ports(2)
    p = start_proxy({"workers": 1, "routes": [handler_route("echo", eport, ECHO_LINES),
                                              handler_route("mem", mport, LUA_MEMORY)]})
    threads, per_thread = 20, 500

    def traffic(count):
        def client(i):
            for k in range(count):
                with sp.connect(eport, timeout=10) as c:
                    msg = b"t%d n%d\n" % (i, k)
                    c.sendall(msg)
                    got = sp.recv_line(c)
                    assert got == msg, (got, msg)
            return count
        return sum(lu.run_threads(threads, client, timeout=300))

    traffic(10)  # warm-up: the same concurrency, so tables have grown to it
    lu.lua_memory_kib(p, mport)
    mem_before = lu.lua_memory_kib(p, mport)
    lu.assert_clean(p)  # the memory queries have ended (and been counted) too
    before = p.stats()
    t0 = time.monotonic()
    assert traffic(per_thread) == threads * per_thread
    took = time.monotonic() - t0
    lu.assert_clean(p, timeout=10)
    s = p.stats()
    assert s["total_connections"] - before["total_connections"] == threads * per_thread
    assert sp.delta(before, s, "terminations") == {"handler_done": threads * per_thread}
    lu.lua_memory_kib(p, mport)
    mem_after = lu.lua_memory_kib(p, mport)
    assert mem_after - mem_before < 512, (
        f"Lua heap grew from {mem_before:.0f} KiB to {mem_after:.0f} KiB over "
        f"{threads * per_thread} connections ({took:.1f}s)")


VANISH = {
    # the handler greets, then reads; clients go before sending anything
    "before_read": """
      sock:write("hi\\n")
      local line = sock:read("*l")
      if line then sock:write(line .. "\\n") end
    """,
    # the handler waits in a read (default 60 s timeout) on a partial line
    "reading": """
      local line = sock:read("*l")
      sock:write(tostring(line) .. "\\n")
    """,
    "sleeping": f"""
      {CORE}
      core.sleep(300)
      sock:write("woke\\n")
      sock:read("*l")
    """,
    "connecting": f"""
      {CORE}
      local up, err = core.connect("127.0.0.1", BLACKHOLE, {{timeout = 500}})
      sock:write(tostring(err) .. "\\n")
      sock:read("*l")
    """,
    "piping": f"""
      {CORE}
      local up = assert(core.connect("127.0.0.1", BACKEND, {{timeout = 2000}}))
      core.pipe(sock, up)
    """,
    "writing": """
      local block = string.rep("x", 65536)
      for i = 1, 256 do
        if not sock:write(block) then return end
      end
    """,
}


@pytest.mark.parametrize("phase", list(VANISH))
def test_clients_vanishing_in_every_phase(start_proxy, serve, blackhole, phase):
    backend = serve(sp.echo)
    body = (VANISH[phase].replace("BLACKHOLE", str(blackhole.port))
            .replace("BACKEND", str(backend.port)))
    p, port = one_route(start_proxy, "vanish", body)
    before = p.stats()
    n = 8

    def client(i):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        if phase == "reading":
            s.sendall(b"partial line without its end")
        elif phase == "piping":
            sp.roundtrip(s, b"through the pipe")
        elif phase == "writing":
            sp.recv_exact(s, 1000)  # the handler is writing
        elif phase in ("sleeping", "connecting"):  # the handler is in core.sleep / connect
            sp.wait_until(lambda: p.stats()["by_state"].get("lua", 0) >= 1, 3,
                          msg="the handler to run")
        # "before_read": gone at once, maybe before the proxy even accepted
        if i % 2:
            sp.rst_close(s)
        else:
            s.close()
        return True

    lu.run_threads(n, client, timeout=20)
    sp.wait_until(lambda: p.stats()["total_connections"] - before["total_connections"] >= n,
                  msg=f"{n} accepted connections")
    lu.assert_clean(p, timeout=8)  # "connecting" ends when its 500 ms timeout passes
    s = p.stats()
    assert s["total_connections"] - before["total_connections"] == n
    sp.assert_accounted(p, before)
    assert "lua_error" not in sp.delta(before, s, "terminations"), (
        f"{sp.delta(before, s, 'terminations')}\n{p.stderr_tail()}")
    if phase == "piping":
        sp.wait_until(lambda: not backend.conns, 3, msg="the backend side to close")
    assert p.alive()


# ---------------------------------------------------------------- 9. timeouts

def test_inactivity_timeout_closes_a_handler_waiting_without_read_timeout(start_proxy):
    body = """
    sock:set_timeout(0)
    local line = sock:read("*l")
    sock:write("got " .. tostring(line) .. "\\n")
    """
    ticker = """
    local core = require "smartproxy.core"
    for i = 1, 8 do core.sleep(100); sock:write("tick\\n") end
    sock:write("done\\n")
    """
    iport, tport, eport = sp.free_ports(3)
    p = start_proxy({"timeouts": {"inactivity": 300}, "routes": [
        handler_route("idle", iport, body),
        handler_route("ticker", tport, ticker),
        handler_route("chatty", eport, "sock:set_timeout(0)\n" + ECHO_LINES),
    ]})
    before = p.stats()
    with p.connect(iport) as idle:
        t0 = time.monotonic()
        data, _ = sp.read_to_close(idle, 3)
        took = time.monotonic() - t0
    assert data == b"", f"the handler's read returned: {data!r}"
    assert 0.2 <= took <= 2.5, f"closed after {took:.2f}s idle, inactivity is 0.3s"
    sp.wait_counter(p, before, "terminations", "inactivity_timeout")
    # activity keeps handler connections open: the handler's writes, the client's bytes
    mid = p.stats()
    with p.connect(tport) as t, p.connect(eport) as e:
        for _ in range(8):
            time.sleep(0.1)
            sp.roundtrip(e, b"tick\n")
        data, how = sp.read_to_close(t, 3)
    assert data == b"tick\n" * 8 + b"done\n" and how == "fin"
    s = sp.wait_counter(p, mid, "terminations", "handler_done", 2)
    assert "inactivity_timeout" not in sp.delta(mid, s, "terminations")
    lu.assert_clean(p)


def test_max_lifetime_closes_a_busy_handler(start_proxy):
    body = """
    local core = require "smartproxy.core"
    while true do
      core.sleep(50)
      if not sock:write("tick\\n") then return end
    end
    """
    p, port = one_route(start_proxy, "forever", body,
                        config={"timeouts": {"max_lifetime": 600, "inactivity": 300}})
    before = p.stats()
    with p.connect(port) as c:
        t0 = time.monotonic()
        data, _ = sp.read_to_close(c, 4)
        took = time.monotonic() - t0
    assert data.startswith(b"tick\n") and 0.5 <= took <= 3, f"closed after {took:.2f}s"
    s = sp.wait_counter(p, before, "terminations", "max_lifetime")
    assert sp.delta(before, s, "terminations") == {"max_lifetime": 1}
    lu.assert_clean(p)


# ---------------------------------------------------------------- background tasks

def background(key, every_ms):
    """A config value that, as the config loads, starts an sp.every bumping sp.shared[key]
    and an sp.timer setting key.."_once" (a function call inside the returned table)."""
    return Lua(f"""(function()
      local sp = require "smartproxy"
      sp.every({every_ms}, function() sp.shared:incr("{key}", 1, 0) end)
      sp.timer(50, function() sp.shared:set("{key}_once", "done") end)
      return 1
    end)()""")


SHOW_SHARED = """
    local sp = require "smartproxy"
    local key = sock:read("*l")
    sock:write(tostring(sp.shared:get(key)) .. "\\n")
"""


def shared_value(p, port, key):
    with p.connect(port) as c:
        c.sendall(key.encode() + b"\n")
        v = sp.recv_line(c).decode().strip()
    return None if v == "nil" else v


def test_timers_run_in_the_background_and_stop_with_their_generation(start_proxy):
    port = sp.free_port()
    p = start_proxy({"workers": background("v1", 50),
                     "routes": [handler_route("show", port, SHOW_SHARED)]})
    sp.wait_until(lambda: shared_value(p, port, "v1_once") == "done", 5, msg="sp.timer ran")
    sp.wait_until(lambda: int(shared_value(p, port, "v1") or 0) >= 5, 5, msg="sp.every ticking")
    assert p.stats()["active_connections"] <= 1, "background tasks must not count as connections"

    p.write_config({"workers": background("v2", 50), "routes": [handler_route("show", port, SHOW_SHARED)]})
    assert p.reload()
    sp.wait_until(lambda: int(shared_value(p, port, "v2") or 0) >= 3, 5, msg="the new generation's timer")
    frozen = int(shared_value(p, port, "v1"))
    time.sleep(0.3)  # six periods: the old generation's timer must have stopped
    assert int(shared_value(p, port, "v1")) <= frozen + 2  # (a tick may have been in flight)
    lu.assert_clean(p)
    t0 = time.monotonic()
    assert p.stop() == 0
    assert time.monotonic() - t0 < 3, "background loops must not hold up a stop"


def test_update_routes_from_lua_opens_and_closes_listeners(start_proxy, serve):
    backend = serve(sp.echo)
    control, added = sp.free_port(), sp.free_port()
    body = f"""
    local sp = require "smartproxy"
    local want = sock:read("*l")
    local routes = {{
      {{ name = "control", match = {{ ports = {control} }}, action = {{ type = "forward",
         target = {{ host = "127.0.0.1", port = {backend.port} }} }} }},
    }}
    if want == "add" then
      routes[2] = {{ name = "added", match = {{ ports = {added} }}, action = {{ type = "forward",
                     target = {{ host = "127.0.0.1", port = {backend.port} }} }} }}
    elseif want == "bad" then
      routes[2] = {{ name = "bad", match = {{ ports = "nope" }}, action = {{ type = "block" }} }}
    elseif want == "function" then
      routes[1].action.handler = function() end
    end
    local ok, err = sp.update_routes(routes)
    sock:write(tostring(ok) .. " " .. tostring(err) .. "\\n")
    """
    p = start_proxy({"routes": [handler_route("control", control, body)]})

    def ask(word):
        with p.connect(control) as c:
            c.sendall(word.encode() + b"\n")
            return sp.recv_line(c).decode().strip()

    answer = ask("function")  # functions cannot travel to other workers' Lua states
    assert answer.startswith("nil sp.update_routes: routes[1].action.handler is a function"), answer
    before = p.stats()
    assert ask("bad") == "true nil"  # queued; rejected by the main thread, old routes serve
    sp.wait_until(lambda: p.stats()["reloads_failed"] == before["reloads_failed"] + 1, 5, msg="rejected")
    assert p.stats()["config_generation"] == before["config_generation"]
    assert ask("add") == "true nil"
    sp.wait_until(lambda: p.stats()["config_generation"] == before["config_generation"] + 1, 5,
                  msg="the new generation")
    sp.wait_until(lambda: sp._bindable(added, ("127.0.0.1",)) is False, 5, msg="the added port listening")
    with p.connect(added) as c:
        sp.roundtrip(c, b"through a route added from Lua")
    with p.connect(control) as c:  # the control port is now a plain forward
        sp.roundtrip(c, b"forwarded now")
    lu.assert_clean(p)
