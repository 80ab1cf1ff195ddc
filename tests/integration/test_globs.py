"""SmartProxy's glob patterns for domains (Host and SNI) and client addresses
(docs/patterns.md), through the real binary: routing picks by glob, the most specific
pattern wins, client_ip globs admit and refuse real loopback sources."""
import pytest

import sp
import tlsutil
from httputil import backend, fetch, http_route


def test_host_globs_route_with_specificity(start_proxy, serve):
    exact, prefix, braces, tld, anything = (backend(serve, n) for n in ("EXACT", "PREFIX", "BRACES", "TLD", "ANY"))
    port = sp.free_port()
    p = start_proxy({"routes": [
        http_route("any", port, "127.0.0.1", anything.port, domains="*"),
        http_route("tld", port, "127.0.0.1", tld.port, domains="example.*"),
        http_route("braces", port, "127.0.0.1", braces.port, domains="{www,static}.example.com"),
        http_route("prefix", port, "127.0.0.1", prefix.port, domains="api-*.example.com"),
        http_route("exact", port, "127.0.0.1", exact.port, domains="api-eu.example.com"),
    ]})
    cases = {
        "api-eu.example.com": "EXACT",          # exact beats the longer glob
        "api-us.example.com": "PREFIX",         # "api-*" has more literal characters than "{www,static}"
        "API-US.Example.Com": "PREFIX",
        "www.example.com": "BRACES",
        "static.example.com": "BRACES",
        "cdn.example.com": "ANY",
        "example.org": "TLD",
        "example.co.uk": "TLD",                 # '*' spans dots, as in minimatch
        "other.test": "ANY",
    }
    for host, want in cases.items():
        r = fetch(port, "/", host=host)
        assert (r.status, r.header("x-backend")) == (200, want), (host, r)
    for b in (exact, prefix, braces, tld, anything):
        b.close()
    sp.assert_clean(p)


def test_sni_globs_route_tls_streams(start_proxy, serve):
    glob_backend, exact_backend = serve(sp.echo), serve(sp.echo)
    port = sp.free_port()
    glob = sp.route("glob", port, "127.0.0.1", glob_backend.port)
    glob["match"]["domains"] = "?1.*.test"
    exact = sp.route("exact", port, "127.0.0.1", exact_backend.port)
    exact["match"]["domains"] = "b1.example.test"
    p = start_proxy({"routes": [glob, exact]})
    # a stream route with domains routes on the SNI and passes the ClientHello on: the
    # echo sends it back, so each backend's byte count tells where it went
    for name, backend in (("a1.example.test", glob_backend), ("b1.example.test", exact_backend),
                          ("c1.x.y.test", glob_backend)):
        before = backend.bytes
        hello = tlsutil.client_hello(name)
        with sp.connect(port) as s:
            s.sendall(hello)
            assert sp.recv_exact(s, len(hello)) == hello
        sp.wait_until(lambda: backend.bytes == before + len(hello), msg=f"{name} at its backend")
    with sp.connect(port) as s: # "a12.example.test": '?' is one character
        s.sendall(tlsutil.client_hello("a12.example.test"))
        assert sp.read_to_close(s, 5.0)[0] == b""
    sp.assert_clean(p)


@pytest.mark.parametrize("pattern, admitted", [
    ("127.0.0.*", True), ("127.?.?.1", True), ("127.0.0.{1,2}", True), ("127.*", True),
    ("10.*", False), ("127.0.0.{2,3}", False), ("127.??.0.1", False),
])
def test_client_ip_globs(start_proxy, serve, pattern, admitted):
    server = serve(sp.echo)
    port = sp.free_port()
    r = sp.route("g", port, "127.0.0.1", server.port, client_ip=pattern)
    p = start_proxy({"routes": [r]})
    with sp.connect(port) as s:
        s.sendall(b"ping")
        data, how = (sp.recv_exact(s, 4), None) if admitted else sp.read_to_close(s, 5.0)
    assert (data == b"ping") == admitted, (pattern, data, how)
    sp.assert_clean(p)
