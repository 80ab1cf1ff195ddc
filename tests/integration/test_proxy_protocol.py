"""The PROXY protocol (SPEC 3, 4, 5, 10): receiving v1/v2 headers from trusted senders
(proxy_ips), refusing bad, late and untrusted ones, sending v1/v2 headers to targets; with
HAProxy as the sender in front and as the receiver behind, and with two smartproxy
processes chained.

Headers are built and parsed by pputil, written from HAProxy's proxy-protocol.txt
independently of the C parser. What the proxy believes about a client is read from a
Lua target function that records its ctx (pputil.recording_route), from client_ip route
matching, from the access log and from the header the proxy sends on. Loopback only:
distinct clients are distinct 127.0.0.x source addresses."""
import os
import socket
import time
from pathlib import Path

import pytest

import pputil
import sp
import tlsutil
from pputil import recording_route, with_send
from sp import route

# shared/ lies beside the repository (also in CI's clone)
TESTDATA = Path(os.environ.get("SP_TESTDATA", sp.REPO.parent / "shared" / "testdata")) / "clienthello"

TRUSTED = "127.0.0.1"  # the sender address most tests trust


def capture(name):
    path = TESTDATA / name
    if not path.exists():
        pytest.skip(f"missing capture {path}")
    return path.read_bytes()


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture
def haproxy(tmp_path):
    """haproxy(body, ports) -> pputil.HAProxy, killed at teardown."""
    if not pputil.haproxy_available():
        pytest.skip(f"haproxy not installed at {pputil.HAPROXY}")
    started = []

    def start(body, ports):
        h = pputil.HAProxy(tmp_path / f"haproxy{len(started)}", body, ports)
        started.append(h)
        return h

    yield start
    for h in started:
        h.close()


def ctx_file(tmp_path, name="ctx"):
    return tmp_path / f"{name}.tsv"


def pp_delta(before, p):
    """Growth of stats.proxy_protocol since `before` (a pputil.pp_stats() snapshot)."""
    now = pputil.pp_stats(p)
    return {k: now.get(k, 0) - before.get(k, 0) for k in ("accepted", "rejected")}


def expect_refused(p, port, payload, reason, *, src=None, backend=None, split=None,
                   close_within=2.0):
    """Send payload from a trusted sender and expect the proxy to close the connection
    with terminations[reason] and proxy_protocol.rejected +1; no target is reached.
    Returns how long the close took."""
    before, pp_before = p.stats(), pputil.pp_stats(p)
    accepted_before = backend.accepted if backend else 0
    t0 = time.monotonic()
    try:
        with pputil.send_with_header(port, payload, src=src, split=split) as c:
            data, _ = sp.read_to_close(c, close_within + 3)
    except ConnectionResetError:
        data = b""
    took = time.monotonic() - t0
    assert data == b"", f"the proxy answered a refused header: {data[:100]!r}"
    s = sp.wait_counter(p, before, "terminations", reason)
    assert sp.delta(before, s, "terminations") == {reason: 1}, sp.delta(before, s, "terminations")
    assert pp_delta(pp_before, p) == {"accepted": 0, "rejected": 1}
    if backend is not None:
        assert backend.accepted == accepted_before, "a refused connection reached the target"
    assert took < close_within, f"closed after {took:.2f}s"
    return took


# ---------------------------------------------------------------------------- 1. HAProxy in front

HAPROXY_SEND = {"send-proxy": 1, "send-proxy-v2": 2}


def haproxy_sender(haproxy, front_port, target_port, option):
    return haproxy(
        "frontend fe\n"
        "    mode tcp\n"
        f"    bind 127.0.0.1:{front_port}\n"
        "    default_backend be\n"
        "backend be\n"
        "    mode tcp\n"
        f"    server s1 127.0.0.1:{target_port} {option}\n", [front_port])


@pytest.mark.parametrize("option", sorted(HAPROXY_SEND))
def test_haproxy_in_front_real_client_drives_lua_target(start_proxy, serve, haproxy, tmp_path,
                                                        option):
    """HAProxy (send-proxy / send-proxy-v2) relays clients from 127.0.0.2 and 127.0.0.3;
    smartproxy trusts it and a Lua function picks the backend by ctx.client_ip."""
    a, b = serve(sp.tag("A")), serve(sp.tag("B"))
    port, front = sp.free_port(), sp.free_port()
    rec = ctx_file(tmp_path)
    p = start_proxy({"proxy_ips": TRUSTED, "routes": [
        recording_route("by-ip", port, rec, {"127.0.0.2": a.port, "127.0.0.3": b.port})]})
    haproxy_sender(haproxy, front, port, option)
    pp_before = pputil.pp_stats(p)
    clients = []
    for src, want in (("127.0.0.2", "A"), ("127.0.0.3", "B"), ("127.0.0.2", "A")):
        with sp.connect(front, src=src) as c:
            assert sp.recv_line(c) == want.encode() + b"\n", f"client {src}"
            sp.roundtrip(c, b"through haproxy from " + src.encode())
            clients.append((src, c.getsockname()[1]))
    records = pputil.wait_ctx(rec, 3)
    got = sorted((r["client_ip"], r["client_port"], r["proxied_by"]) for r in records)
    assert got == sorted((src, cport, TRUSTED) for src, cport in clients), records
    assert all(r["server_port"] == port for r in records), records
    assert pp_delta(pp_before, p) == {"accepted": 3, "rejected": 0}
    src, cport = clients[0]
    pputil.wait_access_line(p, rf"route=by-ip client={src}:{cport} via={TRUSTED} ")
    pputil.assert_clean(p)


@pytest.mark.parametrize("option", sorted(HAPROXY_SEND))
def test_haproxy_in_front_smartproxy_sends_v2_with_original_client(start_proxy, serve, haproxy,
                                                                   option):
    """HAProxy -> smartproxy (send_proxy_protocol = "v2") -> a target that parses the
    header itself: it names the client at 127.0.0.2 and the address that client dialled
    (HAProxy's frontend), not HAProxy's own connection."""
    backend = serve(pputil.pp_backend())
    port, front = sp.free_port(), sp.free_port()
    p = start_proxy({"proxy_ips": TRUSTED, "routes": [
        with_send(route("v2", port, "127.0.0.1", backend.port), "v2")]})
    haproxy_sender(haproxy, front, port, option)
    with sp.connect(front, src="127.0.0.2") as c:
        hdr = pputil.read_pp_line(c)
        sp.roundtrip(c, b"payload after the header")
        cport = c.getsockname()[1]
    assert hdr["version"] == 2 and hdr["command"] == "PROXY", hdr
    assert (hdr["family"], hdr["src"], hdr["sport"]) == ("TCP4", "127.0.0.2", cport), hdr
    assert (hdr["dst"], hdr["dport"]) == ("127.0.0.1", front), hdr
    [res] = backend.wait_results(1)
    assert res["first"] == b"", "bytes arrived in the header's packet that no one sent"
    pputil.assert_clean(p)


# ---------------------------------------------------------------------------- 2. HAProxy behind

@pytest.mark.parametrize("send", [True, "v1", "v2"], ids=["true", "v1", "v2"])
def test_haproxy_behind_accept_proxy_sees_real_client(start_proxy, haproxy, send):
    """smartproxy sends the header to HAProxy (bind ... accept-proxy, mode http), which
    answers with what it believes: %[src] %[src_port] %[dst] %[dst_port]."""
    port, hport = sp.free_port(), sp.free_port()
    haproxy(
        "frontend fe\n"
        "    mode http\n"
        f"    bind 127.0.0.1:{hport} accept-proxy\n"
        "    http-request return status 200 content-type text/plain "
        "lf-string \"%[src] %[src_port] %[dst] %[dst_port]\"\n", [hport])
    p = start_proxy({"routes": [with_send(route("to-haproxy", port, "127.0.0.1", hport), send)]})
    for src in ("127.0.0.2", "127.0.0.3"):
        status, body, cport = pputil.http_get_from(port, src=src)
        assert status == 200, body
        assert body.decode().split() == [src, str(cport), "127.0.0.1", str(port)], \
            f"HAProxy saw {body!r}; the client was {src}:{cport} and dialled 127.0.0.1:{port}"
    pputil.assert_clean(p)


# ---------------------------------------------------------------------------- 3. two smartproxies

def chain(start_proxy, inner_routes, outer_port, inner_port, inner_extra=None):
    inner_cfg = {"proxy_ips": TRUSTED, "routes": inner_routes}
    inner_cfg.update(inner_extra or {})
    inner = start_proxy(inner_cfg)
    outer = start_proxy({"routes": [
        with_send(route("to-inner", outer_port, "127.0.0.1", inner_port), "v2")]})
    return outer, inner


def test_chain_preserves_client_ip_and_cleans_up(start_proxy, serve):
    """client -> outer (sends v2) -> inner (trusts outer, routes by client_ip, sends v1 on
    the .2 route) -> backends. Then clients and a backend come and go; both proxies end
    with no live connection."""
    a, b = serve(pputil.pp_backend()), serve(sp.tag("three"))
    op, ip = sp.free_port(), sp.free_port()
    outer, inner = chain(start_proxy, [
        with_send(route("two", ip, "127.0.0.1", a.port, client_ip=["127.0.0.2"]), "v1"),
        route("three", ip, "127.0.0.1", b.port, client_ip=["127.0.0.3"]),
    ], op, ip)
    in_before, pp_before = inner.stats(), pputil.pp_stats(inner)

    with sp.connect(op, src="127.0.0.2") as c:
        hdr = pputil.read_pp_line(c)
        sp.roundtrip(c, b"end to end")
        cport = c.getsockname()[1]
    assert hdr["version"] == 1, hdr
    assert (hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == \
        ("127.0.0.2", cport, "127.0.0.1", op), hdr
    with sp.connect(op, src="127.0.0.3") as c:
        assert sp.recv_line(c) == b"three\n"
        sp.roundtrip(c, b"from three")
    # .4 matches no route on the inner: only the header can have told it the client
    with sp.connect(op, src="127.0.0.4") as c:
        sp.wait_closed(c, 5)
    sp.wait_counter(inner, in_before, "terminations", "no_route")
    pputil.wait_access_line(inner, rf"route=two client=127.0.0.2:{cport} via=127.0.0.1 ")

    # clients that come and go: some reset mid-stream, some half-close, some just leave
    socks = []
    for i in range(6):
        c = sp.connect(op, src="127.0.0.2" if i % 2 else "127.0.0.3")
        socks.append(c)
        if i % 2:
            pputil.read_pp_line(c)
        else:
            assert sp.recv_line(c) == b"three\n"
        sp.roundtrip(c, os.urandom(10000))
    sp.rst_close(socks[0])
    socks[1].shutdown(socket.SHUT_WR)
    sp.wait_closed(socks[1], 5)
    for c in socks[1:]:
        c.close()
    pputil.assert_clean(outer, inner)

    # the .3 backend goes away: connect refused on the inner, a clean close for the client
    b.close()
    before = inner.stats()
    with sp.connect(op, src="127.0.0.3") as c:
        sp.wait_closed(c, 5)
    sp.wait_counter(inner, before, "terminations", "connect_refused")
    # and the .2 one still works
    with sp.connect(op, src="127.0.0.2") as c:
        assert pputil.read_pp_line(c)["src"] == "127.0.0.2"
    pputil.assert_clean(outer, inner)
    d = pp_delta(pp_before, inner)
    assert d["rejected"] == 0 and d["accepted"] == inner.stats()["total_connections"] - \
        in_before["total_connections"], d


def per_ip_limit_supported(tmp_path):
    r = pputil.check_config(tmp_path, (
        "return { limits = { max_connections_per_ip = 2 }, proxy_ips = \"127.0.0.1\",\n"
        "  routes = { { match = { ports = 1 }, action = { type = \"forward\",\n"
        "    target = { host = \"127.0.0.1\", port = 2 } } } } }\n"))
    if r.returncode != 0 and "not supported" in r.stderr:
        return False, r.stderr.strip()
    assert r.returncode == 0, f"--check failed on a valid config:\n{r.stdout}{r.stderr}"
    return True, ""


def test_chain_per_ip_limit_counts_real_clients(start_proxy, serve, tmp_path):
    """limits.max_connections_per_ip = 2 on the inner, whose every connection comes from
    the outer at 127.0.0.1: 3 concurrent clients from .2 and 2 from .3 -> exactly one from
    .2 refused, none from .3."""
    ok, why = per_ip_limit_supported(tmp_path)
    if not ok:
        pytest.skip(f"limits.max_connections_per_ip not implemented in this build: {why}")
    a, b = serve(sp.tag("two")), serve(sp.tag("three"))
    op, ip = sp.free_port(), sp.free_port()
    outer, inner = chain(start_proxy, [
        route("two", ip, "127.0.0.1", a.port, client_ip=["127.0.0.2"]),
        route("three", ip, "127.0.0.1", b.port, client_ip=["127.0.0.3"]),
    ], op, ip, {"limits": {"max_connections_per_ip": 2}})
    before = inner.stats()
    served = {"127.0.0.2": 0, "127.0.0.3": 0}
    refused = dict(served)
    socks = []
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3", "127.0.0.2"):
        c = sp.connect(op, src=src)
        socks.append(c)
        try:
            line = sp.recv_line(c)
            served[src] += 1
            assert line == {"127.0.0.2": b"two\n", "127.0.0.3": b"three\n"}[src], line
        except (ConnectionError, OSError):
            refused[src] += 1
    try:
        assert refused == {"127.0.0.2": 1, "127.0.0.3": 0}, (refused, served)
        s = sp.wait_counter(inner, before, "refused", "max_connections_per_ip")
        assert sp.delta(before, s, "refused") == {"max_connections_per_ip": 1}
    finally:
        for c in socks:
            c.close()
    pputil.assert_clean(outer, inner)
    # the slots are given back: two more from .2 are served
    with sp.connect(op, src="127.0.0.2") as c1, sp.connect(op, src="127.0.0.2") as c2:
        for c in (c1, c2):
            assert sp.recv_line(c) == b"two\n"
            sp.roundtrip(c, b"again")
    pputil.assert_clean(outer, inner)


# ---------------------------------------------------------------------------- 4. untrusted senders

def test_untrusted_proxy_header_is_plain_data(start_proxy, serve, tmp_path):
    line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    payload = line + b"hello"
    backend = serve(pputil.record_bytes(len(payload)))
    port = sp.free_port()
    rec = ctx_file(tmp_path)
    p = start_proxy({"proxy_ips": "127.0.0.9", "routes": [
        recording_route("r", port, rec, {}, backend.port)]})
    pp_before = pputil.pp_stats(p)
    with sp.connect(port, src="127.0.0.1") as c:
        c.sendall(payload)
        assert sp.recv_exact(c, len(payload)) == payload
    assert backend.wait_results(1) == [payload]
    [r] = pputil.wait_ctx(rec, 1)
    assert (r["client_ip"], r["proxied_by"]) == ("127.0.0.1", None), r
    assert pp_delta(pp_before, p) == {"accepted": 0, "rejected": 0}
    cport = pputil.read_ctx(rec)[0]["client_port"]
    line_seen = pputil.wait_access_line(p, rf"route=r client=127\.0\.0\.1:{cport} ")
    assert " via=" not in line_seen, line_seen
    # the same bytes from the trusted 127.0.0.9 are a header
    with sp.connect(port, src="127.0.0.9") as c:
        c.sendall(payload)
        c.sendall(b"x" * (len(payload) - 5))
        assert sp.recv_exact(c, len(payload)) == b"hello" + b"x" * (len(payload) - 5)
    records = pputil.wait_ctx(rec, 2)
    assert (records[1]["client_ip"], records[1]["client_port"], records[1]["proxied_by"]) == \
        ("1.2.3.4", 1, "127.0.0.9"), records[1]
    assert backend.wait_results(2)[1] == b"hello" + b"x" * (len(payload) - 5)
    assert pp_delta(pp_before, p) == {"accepted": 1, "rejected": 0}
    pputil.assert_clean(p)


# ---------------------------------------------------------------------------- 5. stalls and garbage

def trusted_proxy(start_proxy, serve, **timeouts):
    backend = serve(sp.echo)
    port = sp.free_port()
    cfg = {"proxy_ips": TRUSTED, "routes": [route("r", port, "127.0.0.1", backend.port)]}
    if timeouts:
        cfg["timeouts"] = timeouts
    return start_proxy(cfg), port, backend


@pytest.mark.parametrize("sent", [b"", b"PROXY TCP4 127.0.0.",
                                  pputil.v2("127.0.0.2", "127.0.0.1", 1, 2)[:20]],
                         ids=["nothing", "half_v1", "half_v2"])
def test_stalling_sender_times_out(start_proxy, serve, sent):
    p, port, backend = trusted_proxy(start_proxy, serve, proxy_header=400)
    before, pp_before = p.stats(), pputil.pp_stats(p)
    t0 = time.monotonic()
    with sp.connect(port) as c:
        if sent:
            c.sendall(sent)
        st = sp.wait_until(lambda: p.stats()["by_state"].get("proxy_header") == 1 or None, 2,
                           msg="by_state.proxy_header == 1")
        assert st
        try:
            data, _ = sp.read_to_close(c, 4)
        except ConnectionResetError:
            data = b""
    took = time.monotonic() - t0
    assert data == b""
    assert 0.3 <= took < 1.5, f"closed after {took:.2f}s; timeouts.proxy_header is 0.4 s"
    s = sp.wait_counter(p, before, "terminations", "proxy_header_timeout")
    assert sp.delta(before, s, "terminations") == {"proxy_header_timeout": 1}
    assert pp_delta(pp_before, p) == {"accepted": 0, "rejected": 1}
    assert backend.accepted == 0
    pputil.assert_clean(p)


def test_garbage_instead_of_header_is_refused_at_once(start_proxy, serve):
    """Refused from the first impossible byte, long before timeouts.proxy_header."""
    p, port, backend = trusted_proxy(start_proxy, serve, proxy_header=3000)
    expect_refused(p, port, b"GET / HTTP/1.1\r\n", "bad_proxy_header", backend=backend,
                   close_within=1.0)
    assert "PROXY header from trusted 127.0.0.1 refused" in p.stderr_tail()
    pputil.assert_clean(p)


@pytest.mark.parametrize("sent", [b"", b"PROXY TCP4 1"], ids=["nothing", "partial"])
def test_sender_closing_before_header_is_bad_header(start_proxy, serve, sent):
    p, port, backend = trusted_proxy(start_proxy, serve)  # proxy_header: the 5 s default
    before, pp_before = p.stats(), pputil.pp_stats(p)
    t0 = time.monotonic()
    with sp.connect(port) as c:
        if sent:
            c.sendall(sent)
        c.shutdown(socket.SHUT_WR)
        try:
            sp.read_to_close(c, 3)
        except ConnectionResetError:
            pass
    assert time.monotonic() - t0 < 1.0, "not closed promptly after the sender's EOF"
    s = sp.wait_counter(p, before, "terminations", "bad_proxy_header")
    assert sp.delta(before, s, "terminations") == {"bad_proxy_header": 1}
    assert pp_delta(pp_before, p) == {"accepted": 0, "rejected": 1}
    assert backend.accepted == 0
    pputil.assert_clean(p)


# ---------------------------------------------------------------------------- 6. edge cases

def v1_unknown(total):
    """A v1 UNKNOWN line of exactly `total` bytes, CRLF included."""
    head = b"PROXY UNKNOWN "
    return head + b"x" * (total - len(head) - 2) + b"\r\n"


SOCK = None  # "keep the socket's own address"

ACCEPTED = {  # header -> (expected ctx.client_ip, client_port) (SOCK: the sender's socket)
    "v1_tcp4": (pputil.v1("192.0.2.10", "198.51.100.1", 12345, 443), ("192.0.2.10", 12345)),
    "v1_unknown": (b"PROXY UNKNOWN\r\n", SOCK),
    "v1_unknown_with_addresses": (b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\n", SOCK),
    "v1_107_bytes": (v1_unknown(107), SOCK),
    "v1_tcp6": (pputil.v1("2001:db8::10", "2001:db8::1", 40000, 443), ("2001:db8::10", 40000)),
    "v2_tcp4": (pputil.v2("192.0.2.11", "198.51.100.1", 2222, 443), ("192.0.2.11", 2222)),
    "v2_tcp6": (pputil.v2("2001:db8:1::7", "2001:db8::1", 1, 443), ("2001:db8:1::7", 1)),
    "v2_local": (pputil.v2(cmd=pputil.CMD_LOCAL), SOCK),
    "v2_local_with_address_block": (
        pputil.v2("192.0.2.12", "198.51.100.1", 5, 6, cmd=pputil.CMD_LOCAL), SOCK),
    "v2_good_crc32c": (pputil.v2("192.0.2.13", "198.51.100.1", 7, 8, crc=True),
                       ("192.0.2.13", 7)),
    "v2_tlvs": (pputil.v2("192.0.2.14", "198.51.100.1", 9, 10, tlvs=[
        (pputil.PP2_TYPE_NOOP, b"\0" * 5), (pputil.PP2_TYPE_AUTHORITY, b"x.example.test"),
        (0xE0, b"custom tlv value"), (pputil.PP2_TYPE_UNIQUE_ID, b"id-1")], crc=True),
        ("192.0.2.14", 9)),
}

REFUSED = {
    "v1_108_bytes": v1_unknown(108),
    "v1_bad_octet": b"PROXY TCP4 256.1.1.1 127.0.0.1 1 2\r\n",
    "v1_port_out_of_range": b"PROXY TCP4 1.1.1.1 127.0.0.1 65536 2\r\n",
    "v1_tcp4_with_v6_address": b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n",
    "v1_lf_only": b"PROXY TCP4 1.1.1.1 127.0.0.1 1 2\n",
    "v2_bad_crc32c": pputil.v2("192.0.2.13", "198.51.100.1", 7, 8, bad_crc=True),
    "v2_udp4": pputil.v2("192.0.2.15", "198.51.100.1", 53, 53, transport=pputil.T_DGRAM),
    "v2_udp6": pputil.v2("2001:db8::15", "2001:db8::1", 53, 53, transport=pputil.T_DGRAM),
    "v2_version_1": pputil.v2("192.0.2.1", "198.51.100.1", 1, 2)[:12] + b"\x11"
    + pputil.v2("192.0.2.1", "198.51.100.1", 1, 2)[13:],
    "v2_tlv_overruns": (lambda h: h[:14] + (int.from_bytes(h[14:16], "big") + 3)
                        .to_bytes(2, "big") + h[16:] + b"\x02\x00\x09")(
                            pputil.v2("192.0.2.1", "198.51.100.1", 1, 2)),
}


@pytest.fixture
def edge_proxy(start_proxy, serve, tmp_path):
    """A trusted-sender proxy whose Lua target function records ctx, to an echo backend."""
    backend = serve(sp.echo)
    port = sp.free_port()
    rec = ctx_file(tmp_path)
    p = start_proxy({"proxy_ips": TRUSTED, "timeouts": {"proxy_header": 2000}, "routes": [
        recording_route("edge", port, rec, {}, backend.port)]})
    return p, port, backend, rec


def expect_accepted(p, port, rec, header, want, data=b"hello after the header", *, src=None,
                    split=None):
    """Send header + data (in one write, or `split` bytes per write); the echo backend
    must return exactly data; the recorded ctx must show `want` (SOCK: the socket)."""
    pp_before = pputil.pp_stats(p)
    n = len(pputil.read_ctx(rec))
    with pputil.send_with_header(port, header, data, src=src, split=split) as c:
        assert sp.recv_exact(c, len(data)) == data, "the application bytes were not forwarded"
        sp.roundtrip(c, b"and more")
        local = c.getsockname()
    r = pputil.wait_ctx(rec, n + 1)[n]
    if want is SOCK:
        assert (r["client_ip"], r["client_port"]) == local, r
    else:
        assert (r["client_ip"], r["client_port"]) == want, r
        assert r["proxied_by"] == (src or TRUSTED), r
    assert pp_delta(pp_before, p) == {"accepted": 1, "rejected": 0}
    return r


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_header_accepted(edge_proxy, case):
    p, port, _backend, rec = edge_proxy
    header, want = ACCEPTED[case]
    expect_accepted(p, port, rec, header, want)
    pputil.assert_clean(p)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_header_refused(edge_proxy, case):
    p, port, backend, _rec = edge_proxy
    expect_refused(p, port, REFUSED[case] + b"data", "bad_proxy_header", backend=backend,
                   close_within=1.0)
    pputil.assert_clean(p)


@pytest.mark.parametrize("version", [1, 2])
def test_header_one_byte_per_write(edge_proxy, version):
    p, port, _backend, rec = edge_proxy
    if version == 1:
        header = pputil.v1("192.0.2.20", "198.51.100.1", 3000, 443)
    else:
        header = pputil.v2("192.0.2.20", "198.51.100.1", 3000, 443,
                           tlvs=[(pputil.PP2_TYPE_AUTHORITY, b"slow.example.test")], crc=True)
    expect_accepted(p, port, rec, header, ("192.0.2.20", 3000), data=b"byte by byte",
                    split=1)
    pputil.assert_clean(p)


def test_v2_tlvs_and_data_in_one_packet_byte_exact(start_proxy, serve, tmp_path):
    header = ACCEPTED["v2_tlvs"][0]
    data = bytes(range(256)) * 64 + b"\r\n\r\n\x00\r\nQUIT\n" + b"PROXY TCP4 not a header\r\n"
    backend = serve(pputil.record_bytes(len(data)))
    port = sp.free_port()
    rec = ctx_file(tmp_path)
    p = start_proxy({"proxy_ips": TRUSTED, "routes": [
        recording_route("r", port, rec, {"192.0.2.14": backend.port})]})
    with sp.connect(port) as c:
        c.sendall(header + data)
        assert sp.recv_exact(c, len(data)) == data
    assert backend.wait_results(1) == [data], "the target did not get the data byte-exact"
    assert pputil.wait_ctx(rec, 1)[0]["client_ip"] == "192.0.2.14"
    pputil.assert_clean(p)


def test_v4_mapped_addresses(start_proxy, serve, tmp_path):
    """proxy_ips written as ::ffff:127.0.0.1 trusts the IPv4 sender 127.0.0.1; a TCP6
    header with a v4-mapped source is the IPv4 client for client_ip matching."""
    mapped, other = serve(sp.tag("mapped")), serve(sp.tag("other"))
    port = sp.free_port()
    rec = ctx_file(tmp_path)
    p = start_proxy({"proxy_ips": "::ffff:127.0.0.1", "routes": [
        recording_route("v4", port, rec, {}, mapped.port, client_ip=["198.51.100.0/24"],
                        priority=5),
        route("other", port, "127.0.0.1", other.port),
    ]})
    pp_before = pputil.pp_stats(p)
    hdr = pputil.v1("::ffff:198.51.100.7", "::ffff:127.0.0.1", 4321, port, proto="TCP6")
    with pputil.send_with_header(port, hdr) as c:
        assert sp.recv_line(c) == b"mapped\n", "the v4-mapped client did not match 198.51.100.0/24"
    [r] = pputil.wait_ctx(rec, 1)
    assert r["client_ip"] in ("198.51.100.7", "::ffff:198.51.100.7"), r
    assert r["client_port"] == 4321
    hdr2 = pputil.v2("::ffff:198.51.100.8", "::ffff:127.0.0.1", 4322, port)
    with pputil.send_with_header(port, hdr2) as c:
        assert sp.recv_line(c) == b"mapped\n"
    assert pp_delta(pp_before, p) == {"accepted": 2, "rejected": 0}
    pputil.assert_clean(p)


@pytest.mark.skipif(not sp.ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_sender(start_proxy, serve, tmp_path):
    """A trusted sender on ::1 (the proxy also listens on ::1); 127.0.0.1 is not trusted."""
    backend = serve(sp.echo)
    port = sp.free_port(hosts=("127.0.0.1", "::1"))
    rec = ctx_file(tmp_path)
    p = start_proxy({"listen_addresses": ["127.0.0.1", "::1"], "proxy_ips": "::1", "routes": [
        recording_route("r", port, rec, {}, backend.port)]})
    header = pputil.v1("192.0.2.30", "198.51.100.1", 555, 443)
    with pputil.send_with_header(port, header, b"six", host="::1") as c:
        assert sp.recv_exact(c, 3) == b"six"
    with pputil.send_with_header(port, header, b"four") as c:
        assert sp.recv_exact(c, len(header) + 4) == header + b"four"
    r6, r4 = pputil.wait_ctx(rec, 2)
    assert (r6["client_ip"], r6["client_port"], r6["proxied_by"]) == ("192.0.2.30", 555, "::1")
    assert (r4["client_ip"], r4["proxied_by"]) == ("127.0.0.1", None)
    pputil.assert_clean(p)


# ---------------------------------------------------------------------------- 7. the send side

@pytest.mark.parametrize("send", [True, "v1"], ids=["true", "v1"])
def test_send_v1_exact_line(start_proxy, serve, send):
    backend = serve(pputil.pp_backend())
    port = sp.free_port()
    p = start_proxy({"routes": [with_send(route("v1", port, "127.0.0.1", backend.port), send)]})
    with sp.connect(port, src="127.0.0.2") as c:
        c.sendall(b"first bytes")
        hdr = pputil.read_pp_line(c)
        assert sp.recv_exact(c, 11) == b"first bytes"
        cport = c.getsockname()[1]
    [res] = backend.wait_results(1)
    assert res["raw"] == f"PROXY TCP4 127.0.0.2 127.0.0.1 {cport} {port}\r\n".encode(), res["raw"]
    assert hdr["version"] == 1
    pputil.assert_clean(p)


def test_send_v2_to_a_target_that_speaks_first(start_proxy, serve):
    """The header precedes everything, also when the client says nothing."""
    backend = serve(pputil.pp_backend())
    port = sp.free_port()
    p = start_proxy({"routes": [with_send(route("v2", port, "127.0.0.1", backend.port), "v2")]})
    with sp.connect(port, src="127.0.0.3") as c:
        hdr = pputil.read_pp_line(c)
        cport = c.getsockname()[1]
    assert (hdr["version"], hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == \
        (2, "127.0.0.3", cport, "127.0.0.1", port), hdr
    assert hdr["authority"] is None and hdr["alpn"] is None, hdr
    pputil.assert_clean(p)


def sni_routes(port, api, decoy, send="v2"):
    return [
        with_send(tlsutil.tls_route("api", port, "127.0.0.1", api.port, mode="passthrough",
                                    domains="api.example.test"), send),
        tlsutil.tls_route("decoy", port, "127.0.0.1", decoy.port, mode="passthrough",
                          domains="other.example.test"),
    ]


def test_send_v2_authority_is_the_sni_on_passthrough(start_proxy, serve):
    hello = capture("curl.bin")
    api, decoy = serve(pputil.pp_backend()), serve(sp.tag("decoy"))
    port = sp.free_port()
    p = start_proxy({"routes": sni_routes(port, api, decoy)})
    with sp.connect(port, src="127.0.0.2") as c:
        c.sendall(hello)
        hdr = pputil.read_pp_line(c)
        assert sp.recv_exact(c, len(hello)) == hello, "the ClientHello did not follow the header"
        cport = c.getsockname()[1]
    assert hdr["authority"] == "api.example.test", hdr
    assert (hdr["version"], hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == \
        (2, "127.0.0.2", cport, "127.0.0.1", port), hdr
    [res] = api.wait_results(1)
    assert res["first"] == hello[:len(res["first"])]
    assert decoy.accepted == 0
    pputil.assert_clean(p)


@pytest.mark.parametrize("incoming", ["v1", "v2"])
def test_sni_routing_after_received_header_sends_it_on(start_proxy, serve, incoming):
    """A trusted sender's header and a ClientHello in one write: SNI routing sees the
    ClientHello, and the v2 header sent on names the received source and destination
    plus the SNI."""
    hello = capture("curl.bin")
    api, decoy = serve(pputil.pp_backend()), serve(sp.tag("decoy"))
    port = sp.free_port()
    p = start_proxy({"proxy_ips": TRUSTED, "routes": sni_routes(port, api, decoy)})
    build = pputil.v1 if incoming == "v1" else pputil.v2
    with pputil.send_with_header(port, build("203.0.113.7", "198.51.100.9", 40000, 443),
                                 hello) as c:
        hdr = pputil.read_pp_line(c)
        assert sp.recv_exact(c, len(hello)) == hello
    assert (hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"], hdr["authority"]) == \
        ("203.0.113.7", 40000, "198.51.100.9", 443, "api.example.test"), hdr
    assert decoy.accepted == 0
    pputil.assert_clean(p)


RECEIVED = {  # incoming header -> the (family, src, sport, dst, dport) sent on
    "v1_tcp4": (pputil.v1("203.0.113.7", "198.51.100.9", 40000, 443),
                ("TCP4", "203.0.113.7", 40000, "198.51.100.9", 443)),
    "v2_tcp4": (pputil.v2("203.0.113.8", "198.51.100.10", 40001, 8443),
                ("TCP4", "203.0.113.8", 40001, "198.51.100.10", 8443)),
    "v1_tcp6": (pputil.v1("2001:db8::7", "2001:db8::9", 1, 65535),
                ("TCP6", "2001:db8::7", 1, "2001:db8::9", 65535)),
    "v2_tcp6": (pputil.v2("2001:db8::8", "2001:db8:ffff::1", 65535, 0),
                ("TCP6", "2001:db8::8", 65535, "2001:db8:ffff::1", 0)),
}


@pytest.mark.parametrize("send", ["v1", "v2"])
@pytest.mark.parametrize("case", sorted(RECEIVED))
def test_send_carries_received_source_and_destination(start_proxy, serve, case, send):
    incoming, want = RECEIVED[case]
    backend = serve(pputil.pp_backend())
    port = sp.free_port()
    p = start_proxy({"proxy_ips": TRUSTED, "routes": [
        with_send(route("on", port, "127.0.0.1", backend.port), send)]})
    with pputil.send_with_header(port, incoming, b"data") as c:
        hdr = pputil.read_pp_line(c)
        assert sp.recv_exact(c, 4) == b"data"
    assert hdr["version"] == int(send[1]), hdr
    assert (hdr["family"], hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == want, hdr
    if case == "v1_tcp4" and send == "v1":
        [res] = backend.wait_results(1)
        assert res["raw"] == incoming, "a v1 line in should go out unchanged"
    pputil.assert_clean(p)


def test_send_after_local_header_uses_socket_addresses(start_proxy, serve):
    backend = serve(pputil.pp_backend())
    port = sp.free_port()
    p = start_proxy({"proxy_ips": TRUSTED, "routes": [
        with_send(route("on", port, "127.0.0.1", backend.port), "v1")]})
    with pputil.send_with_header(port, pputil.v2(cmd=pputil.CMD_LOCAL), b"data") as c:
        hdr = pputil.read_pp_line(c)
        assert sp.recv_exact(c, 4) == b"data"
        cport = c.getsockname()[1]
    assert (hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == \
        ("127.0.0.1", cport, "127.0.0.1", port), hdr
    pputil.assert_clean(p)


@pytest.fixture(scope="module")
def leaf(tmp_path_factory):
    if not os.path.exists(tlsutil.OPENSSL):
        pytest.skip("the openssl command-line tool is missing")
    pki = tlsutil.PKI(tmp_path_factory.mktemp("pki"))
    return pki, pki.leaf("a.example.test", "ecdsa")


@pytest.mark.parametrize("offer,alpn", [(["h2", "http/1.1"], "http/1.1"), (None, None)],
                         ids=["alpn", "no_alpn"])
def test_send_v2_alpn_and_authority_on_terminate(start_proxy, serve, leaf, offer, alpn):
    """TLS terminated: the v2 header names the SNI and the negotiated ALPN (if any)."""
    pki, cert = leaf
    backend = serve(pputil.pp_backend())
    port = sp.free_port()
    p = start_proxy({"routes": [with_send(
        tlsutil.tls_route("term", port, "127.0.0.1", backend.port, cert=cert,
                          domains="a.example.test"), "v2")]})
    raw = sp.connect(port, src="127.0.0.2")
    with tlsutil.client_context(pki.ca, alpn=offer).wrap_socket(
            raw, server_hostname="a.example.test") as c:
        assert c.selected_alpn_protocol() == alpn
        hdr = pputil.read_pp_line(c)
        tlsutil.tls_roundtrip(c, b"decrypted by the proxy")
        cport = c.getsockname()[1]
    assert (hdr["version"], hdr["src"], hdr["sport"], hdr["dst"], hdr["dport"]) == \
        (2, "127.0.0.2", cport, "127.0.0.1", port), hdr
    assert (hdr["authority"], hdr["alpn"]) == ("a.example.test", alpn), hdr
    pputil.assert_clean(p)


# ---------------------------------------------------------------------------- configuration

def test_config_errors(tmp_path):
    cases = {
        "accept_proxy_protocol = true,": "accept_proxy_protocol",
        'proxy_ips = "not an address",': "proxy_ips",
        'proxy_ips = "127.0.0.1", timeouts = { proxy_header = "soon" },': "proxy_header",
    }
    for extra, field in cases.items():
        path = tmp_path / "bad.lua"
        path.write_text("return { " + extra + "\n routes = { { match = { ports = 1 },\n"
                        "  action = { type = \"forward\",\n"
                        "    target = { host = \"127.0.0.1\", port = 2 } } } } }\n")
        r = sp.run_cli("--check", path)
        assert r.returncode == 1, (extra, r.stdout, r.stderr)
        assert field in r.stderr and "bad.lua" in r.stderr, (extra, r.stderr)
    bad_send = tmp_path / "send.lua"
    bad_send.write_text("return { routes = { { name = \"s\", match = { ports = 1 },\n"
                        "  action = { type = \"forward\", send_proxy_protocol = \"v3\",\n"
                        "    target = { host = \"127.0.0.1\", port = 2 } } } } }\n")
    r = sp.run_cli("--check", bad_send)
    assert r.returncode == 1 and "action.send_proxy_protocol" in r.stderr and '"s"' in r.stderr, \
        r.stderr


def test_accept_proxy_protocol_false_forwards_headers_as_data(start_proxy, serve, tmp_path):
    payload = pputil.v2("192.0.2.1", "198.51.100.1", 1, 2) + b"data"
    backend = serve(pputil.record_bytes(len(payload)))
    port = sp.free_port()
    rec = ctx_file(tmp_path)
    p = start_proxy({"proxy_ips": TRUSTED, "accept_proxy_protocol": False, "routes": [
        recording_route("r", port, rec, {}, backend.port)]})
    with sp.connect(port) as c:
        c.sendall(payload)
        assert sp.recv_exact(c, len(payload)) == payload
    assert backend.wait_results(1) == [payload]
    assert pputil.wait_ctx(rec, 1)[0]["client_ip"] == "127.0.0.1"
    pputil.assert_clean(p)
