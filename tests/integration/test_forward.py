"""Forwarding: targets, round-robin, preserve, Lua-chosen targets, client_ip matching and
priorities, no route, servers that speak first, half-close."""
import collections
import os
import socket

import pytest

import sp
from sp import Lua, route


def tags(p, port, n, host="127.0.0.1", src=None):
    """The tag line of each of n sequential connections."""
    out = []
    for _ in range(n):
        with p.connect(port, host, src=src) as c:
            out.append(sp.recv_line(c).decode().strip())
    return out


def test_forward_ipv4(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [route("echo", port, "127.0.0.1", backend.port)]})
    data = os.urandom(512 * 1024)
    before = p.stats()
    with p.connect(port) as c:
        sp.roundtrip(c, data)
        sp.roundtrip(c, b"second message")
    s = sp.wait_counter(p, before, "terminations", "client_closed")
    assert s["total_connections"] - before["total_connections"] == 1
    sp.assert_clean(p)


@pytest.mark.skipif(not sp.ipv6_available(), reason="no IPv6 loopback")
def test_forward_ipv6(start_proxy, serve):
    backend = serve(sp.echo, hosts=("::1",))
    port = sp.free_port(hosts=("127.0.0.1", "::1"))
    p = start_proxy({"listen_addresses": ["127.0.0.1", "::1"],
                                        "routes": [route("v6", port, "::1", backend.port)]})
    for client_host in ("::1", "127.0.0.1"):
        with p.connect(port, client_host) as c:
            sp.roundtrip(c, b"over " + client_host.encode())
    assert backend.accepted == 2
    sp.assert_clean(p)


def test_target_hostname_localhost(start_proxy, serve):
    hosts = ("127.0.0.1", "::1") if sp.ipv6_available() else ("127.0.0.1",)
    backend = serve(sp.echo, hosts=hosts)  # whichever family localhost resolves to
    port = sp.free_port()
    p = start_proxy({"routes": [route("dns", port, "localhost", backend.port)]})
    for _ in range(3):
        with p.connect(port) as c:
            sp.roundtrip(c, b"resolved")
    sp.assert_clean(p)


def test_round_robin_over_host_list(start_proxy, serve):
    addrs = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    bport = sp.free_port(hosts=addrs)
    for a in addrs:
        serve(sp.tag(a), hosts=(a,), port=bport)
    port = sp.free_port()
    p = start_proxy({"workers": 1, "routes": [route("rr", port, addrs, bport)]})
    got = tags(p, port, 9)
    assert collections.Counter(got) == {a: 3 for a in addrs}, got
    assert len(set(got[:3])) == 3, f"not rotating: {got}"


def test_round_robin_over_targets(start_proxy, serve):
    a, b = serve(sp.tag("A")), serve(sp.tag("B"))
    port = sp.free_port()
    p = start_proxy({"workers": 1, "routes": [
        route("lb", port, targets=[("127.0.0.1", a.port), ("127.0.0.1", b.port)])]})
    got = tags(p, port, 6)
    assert collections.Counter(got) == {"A": 3, "B": 3}, got


def test_port_preserve_over_range(start_proxy, serve):
    ports = sp.free_ports(3, hosts=("127.0.0.1", "127.0.0.2"))
    for port in ports:  # the same port numbers, on 127.0.0.2
        serve(sp.tag(f"p{port}"), hosts=("127.0.0.2",), port=port)
    p = start_proxy({"routes": [
        route("keep", {"from": ports[0], "to": ports[-1]}, "127.0.0.2", "preserve")]})
    for port in reversed(ports):
        assert tags(p, port, 1) == [f"p{port}"]
    sp.assert_clean(p)


def lua_target_route(port, bport, on_three="127.0.0.3"):
    """host and port chosen by Lua from ctx; the functions check every ctx field."""
    check = (f'if ctx.route_name ~= "fn" or ctx.server_ip ~= "127.0.0.1" '
             f'or ctx.server_port ~= {port} or type(ctx.client_port) ~= "number" '
             f'or ctx.connection_id == nil then error("unexpected ctx") end')
    other = f"return {sp.lua(on_three)}" if on_three else 'error("no target")'
    host = Lua(f'function(ctx) {check} if ctx.client_ip == "127.0.0.2" then return "127.0.0.2" '
               f'end {other} end')
    tport = Lua(f"function(ctx) {check} return ctx.server_port - {port} + {bport} end")
    return route("fn", port, host, tport)


def test_target_chosen_by_lua_functions(start_proxy, serve):
    bport = sp.free_port(hosts=("127.0.0.2", "127.0.0.3"))
    serve(sp.tag("two"), hosts=("127.0.0.2",), port=bport)
    serve(sp.tag("three"), hosts=("127.0.0.3",), port=bport)
    port = sp.free_port()
    p = start_proxy({"routes": [lua_target_route(port, bport)]})
    assert tags(p, port, 2, src="127.0.0.2") == ["two", "two"]
    assert tags(p, port, 2, src="127.0.0.3") == ["three", "three"]
    sp.assert_clean(p)


def test_lua_error_closes_only_that_connection(start_proxy, serve):
    bport = sp.free_port(hosts=("127.0.0.2",))
    serve(sp.tag("two"), hosts=("127.0.0.2",), port=bport)
    port = sp.free_port()
    p = start_proxy({"routes": [lua_target_route(port, bport, on_three=None)]})
    with p.connect(port, src="127.0.0.2") as ok:
        with p.connect(port, src="127.0.0.3") as failing:
            sp.wait_closed(failing, 3)
        assert sp.recv_line(ok) == b"two\n"
        sp.roundtrip(ok, b"still fine")
    assert tags(p, port, 1, src="127.0.0.2") == ["two"]
    sp.assert_clean(p)


def test_client_ip_exact_cidr_glob_and_default(start_proxy, serve):
    names = ["exact", "cidr", "glob", "default"]
    backends = {n: serve(sp.tag(n)) for n in names}
    port = sp.free_port()
    p = start_proxy({"routes": [
        route("exact", port, "127.0.0.1", backends["exact"].port, client_ip=["127.0.0.2"],
              priority=10),
        route("cidr", port, "127.0.0.1", backends["cidr"].port, client_ip=["127.0.0.4/31"],
              priority=10),
        route("glob", port, "127.0.0.1", backends["glob"].port, client_ip=["127.0.1.*"],
              priority=10),
        route("default", port, "127.0.0.1", backends["default"].port),
    ]})
    expect = {"127.0.0.2": "exact", "127.0.0.4": "cidr", "127.0.0.5": "cidr",
              "127.0.1.7": "glob", "127.0.0.3": "default", "127.0.0.6": "default"}
    got = {src: tags(p, port, 1, src=src)[0] for src in expect}
    assert got == expect


def test_priority_then_file_order(start_proxy, serve):
    backends = {n: serve(sp.tag(n)) for n in ("low", "high", "first", "second")}
    by_prio, by_order = sp.free_port(), sp.free_port()
    p = start_proxy({"routes": [
        route("low", by_prio, "127.0.0.1", backends["low"].port, priority=1,
              client_ip=["127.0.0.0/8"]),
        route("high", by_prio, "127.0.0.1", backends["high"].port, priority=5,
              client_ip=["127.0.0.0/8"]),
        route("first", by_order, "127.0.0.1", backends["first"].port),
        route("second", by_order, "127.0.0.1", backends["second"].port),
    ]})
    assert tags(p, by_prio, 3) == ["high"] * 3
    assert tags(p, by_order, 3) == ["first"] * 3


def test_no_route_closes_and_counts(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [
        route("only-two", port, "127.0.0.1", backend.port, client_ip=["127.0.0.2"])]})
    before = p.stats()
    with p.connect(port, src="127.0.0.3") as c:
        sp.wait_closed(c, 3)
    sp.wait_counter(p, before, "terminations", "no_route")
    assert backend.accepted == 0
    with p.connect(port, src="127.0.0.2") as c:
        sp.roundtrip(c, b"routed")
    sp.assert_clean(p)


def test_server_speaks_first(start_proxy, serve):
    backend = serve(sp.banner(b"220 hello\r\n"))
    port = sp.free_port()
    p = start_proxy({"routes": [route("smtp", port, "127.0.0.1", backend.port)]})
    with p.connect(port, timeout=3) as c:  # the client sends nothing first
        assert sp.recv_line(c) == b"220 hello\r\n"
        sp.roundtrip(c, b"QUIT\r\n")
    sp.assert_clean(p)


@pytest.mark.parametrize("half_open", [True, False], ids=["half_open", "default"])
def test_client_half_close(start_proxy, serve, half_open):
    """The client sends, then shutdown(SHUT_WR); the backend answers 1 s after it sees
    EOF. half_open keeps the way back open; the default flushes and closes both."""
    backend = serve(sp.reply_after_eof(2.0))
    port = sp.free_port()
    p = start_proxy({"routes": [
        route("h", port, "127.0.0.1", backend.port, half_open=True if half_open else None)]})
    payload = os.urandom(200_000)
    with p.connect(port) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        data, _ = sp.read_to_close(c, 6 if half_open else 1.8)
    assert backend.wait_results(1) == [len(payload)], "the client's bytes were not all flushed"
    if half_open:
        assert data == b"got %d\n" % len(payload)
    else:
        assert data == b""
    sp.assert_clean(p)


def test_failing_target_is_skipped_for_the_next(start_proxy, serve):
    """SPEC 4: a target that refuses is skipped for the next; the client never notices."""
    a, b = serve(sp.tag("A")), serve(sp.tag("B"))
    dead = sp.free_port()  # nothing listens there: connect() is refused
    port = sp.free_port()
    p = start_proxy({"workers": 1, "routes": [
        route("lb", port, targets=[("127.0.0.1", dead), ("127.0.0.1", a.port),
                                   ("127.0.0.1", b.port)])]})
    before = p.stats()
    got = tags(p, port, 6)
    assert set(got) == {"A", "B"} and len(got) == 6, got
    s = sp.wait_counter(p, before, "terminations", "client_closed", 6)
    assert sp.delta(before, s, "terminations").get("connect_refused", 0) == 0
    sp.assert_clean(p)


def test_all_targets_failing_closes_the_client(start_proxy):
    port, dead1, dead2 = sp.free_port(), sp.free_port(), sp.free_port()
    p = start_proxy({"routes": [route("lb", port, targets=[("127.0.0.1", dead1),
                                                           ("127.0.0.1", dead2)])]})
    before = p.stats()
    with p.connect(port) as c:
        assert sp.wait_closed(c, 5)
    sp.wait_counter(p, before, "terminations", "connect_refused")
    sp.assert_clean(p)


def test_unresolvable_target_name_closes_the_client(start_proxy):
    port = sp.free_port()
    p = start_proxy({"routes": [route("nx", port, "no-such-host.invalid", 80)]})
    before = p.stats()
    with p.connect(port) as c:
        assert sp.wait_closed(c, 10)
    sp.wait_counter(p, before, "terminations", "resolve_failed")
    sp.assert_clean(p)
