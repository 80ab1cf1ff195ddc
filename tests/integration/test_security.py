"""A route's security: IP allow and block lists (block wins), and its connection limits,
counted across workers."""
import sp
from sp import route


def secured(name, port, backend_port, **security):
    r = route(name, port, "127.0.0.1", backend_port)
    r["security"] = security
    return r


def test_block_list_wins_over_allow_list(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [secured("guarded", port, backend.port,
                                        ip_allow_list=["127.0.0.0/24", "127.0.1.*"],
                                        ip_block_list=["127.0.0.3"])]})
    before = p.stats()
    with p.connect(port, src="127.0.0.2") as c:  # allowed
        sp.roundtrip(c, b"allowed")
    with p.connect(port, src="127.0.1.9") as c:  # allowed by the glob
        sp.roundtrip(c, b"allowed too")
    with p.connect(port, src="127.0.0.3") as c:  # allowed, but blocked: block wins
        assert sp.wait_closed(c, 5)
    with p.connect(port, src="127.0.2.1") as c:  # not on the allow list
        assert sp.wait_closed(c, 5)
    s = sp.wait_counter(p, before, "refused", "ip_not_allowed")
    d = sp.delta(before, s, "refused")
    assert d == {"ip_blocked": 1, "ip_not_allowed": 1}, d
    assert backend.accepted == 2
    sp.assert_clean(p)


def test_route_limits_count_across_workers(start_proxy, serve):
    backend = serve(sp.echo)
    port, other = sp.free_port(), sp.free_port()
    p = start_proxy({"workers": 2, "routes": [
        secured("small", port, backend.port, max_connections=3, max_connections_per_ip=2),
        route("free", other, "127.0.0.1", backend.port)]})
    held = [p.connect(port, src="127.0.0.2") for _ in range(2)]
    for c in held:
        sp.roundtrip(c, b"in")
    before = p.stats()
    with p.connect(port, src="127.0.0.2") as c:  # a third from .2: over its per-IP share
        assert sp.wait_closed(c, 5)
    sp.wait_counter(p, before, "refused", "route_max_connections_per_ip")
    held.append(p.connect(port, src="127.0.0.4"))
    sp.roundtrip(held[-1], b"third overall")
    with p.connect(port, src="127.0.0.5") as c:  # a fourth overall: over the route's limit
        assert sp.wait_closed(c, 5)
    sp.wait_counter(p, before, "refused", "route_max_connections")
    with p.connect(other, src="127.0.0.2") as c:  # other routes are not limited
        sp.roundtrip(c, b"elsewhere")
    for c in held:
        c.close()
    sp.wait_until(lambda: p.stats()["active_connections"] == 0, 5, msg="all closed")
    with p.connect(port, src="127.0.0.5") as c:  # slots come back
        sp.roundtrip(c, b"free again")
    sp.assert_clean(p)


def test_global_lists_apply_to_every_route_before_routing(start_proxy, serve):
    """Top-level security lists: checked on accept for every port, block wins; IPv6 too."""
    backend = serve(sp.echo)
    a, b = sp.free_port(), sp.free_port()
    p = start_proxy({"security": {"ip_allow_list": ["127.0.0.0/24", "::1"],
                                  "ip_block_list": ["127.0.0.5"]},
                     "routes": [sp.route("a", a, "127.0.0.1", backend.port),
                                sp.route("b", b, "127.0.0.1", backend.port)]})
    before = p.stats()
    for port in (a, b):
        with p.connect(port, src="127.0.0.2") as c:
            sp.roundtrip(c, b"allowed")
        with p.connect(port, src="127.0.0.5") as c:
            assert sp.wait_closed(c, 5)
        with p.connect(port, src="127.0.1.1") as c:
            assert sp.wait_closed(c, 5)
    s = sp.wait_counter(p, before, "refused", "ip_not_allowed", 2)
    assert sp.delta(before, s, "refused") == {"ip_blocked": 2, "ip_not_allowed": 2}
    assert backend.accepted == 2
    sp.assert_clean(p)


def test_http_clients_over_the_global_limits_get_503_and_429(start_proxy, serve):
    """On a port whose routes are all plain HTTP, a client refused by the per-IP limits is
    told why (503, or 429 with Retry-After for the connection rate) before the close."""
    import http.client

    def app(conn, srv):
        f = conn.makefile("rb")
        while f.readline():
            while f.readline() not in (b"\r\n", b""):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    backend = serve(app)
    port = sp.free_port()
    http_route = {"name": "web", "match": {"ports": port},
                  "action": {"type": "forward", "protocol": "http",
                             "target": {"host": "127.0.0.1", "port": backend.port}}}
    p = start_proxy({"limits": {"max_connections_per_ip": 1}, "routes": [http_route]})
    held = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    held.request("GET", "/")
    assert held.getresponse().read() == b"ok"
    extra = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    extra.request("GET", "/")
    r = extra.getresponse()
    assert r.status == 503 and r.read() == b"503 Service Unavailable\n"
    extra.close()
    held.close()
    backend.close()
    sp.assert_clean(p)

    backend2 = serve(app)
    port2 = sp.free_port()
    p2 = start_proxy({"limits": {"connection_rate_per_minute": 2}, "routes": [
        {"name": "web", "match": {"ports": port2},
         "action": {"type": "forward", "protocol": "http",
                    "target": {"host": "127.0.0.1", "port": backend2.port}}}]})
    statuses = []
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", port2, timeout=5)
        c.request("GET", "/")
        r = c.getresponse()
        statuses.append((r.status, r.getheader("Retry-After")))
        r.read()
        c.close()
    assert statuses == [(200, None), (200, None), (429, "60")], statuses
    backend2.close()
    sp.assert_clean(p2)
