"""TLS: SNI routing (exact, wildcard, "*", none, case, priority), tls_version matching,
passthrough, termination, re-encryption with and without upstream verification, the
ClientHello reader (real captures, byte by byte, split records, garbage, timeouts),
session resumption, the /stats "tls" block, ctx fields and certificate errors in --check.

Certificates come from a test CA made once per session with the openssl CLI. Backends
are python threads (plain or ssl) and `openssl s_server`; clients are python ssl,
`openssl s_client` and curl. Everything stays on loopback."""
import os
import re
import ssl
import time
from pathlib import Path

import pytest

import sp
import tlsutil
from sp import Lua, lua, route, run_cli
from tlsutil import client_context, tls_connect, tls_route

# shared/ lies beside the repository (also in CI's clone)
TESTDATA = Path(os.environ.get("SP_TESTDATA", sp.REPO.parent / "shared" / "testdata")) / "clienthello"

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if not os.path.exists(tlsutil.OPENSSL):
        pytest.skip("the openssl command-line tool is missing")
    return tlsutil.PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def certs(pki):
    """The leaf certificates most tests use, signed by the test CA."""
    out = {}
    for alg in ("rsa", "ecdsa"):
        out["a", alg] = pki.leaf("a.example.test", alg)
        out["b", alg] = pki.leaf("b.example.test", alg)
        out["wild", alg] = pki.leaf(["*.example.test"], alg)
    return out


@pytest.fixture
def s_server(tmp_path):
    """s_server(cert) -> tlsutil.SServer; every one is killed at teardown."""
    started = []

    def start(cert, **kw):
        s = tlsutil.SServer(tmp_path / "s_server", cert, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def capture(name):
    path = TESTDATA / name
    if not path.exists():
        pytest.skip(f"missing capture {path}")
    return path.read_bytes()


def ca_ctx(pki, **kw):
    return client_context(pki.ca, **kw)


def tls_tag(port, sni, ctx, **kw):
    """Connect over TLS, say "who", and return (the backend's tag line, the peer
    certificate DER); then check the stream echoes."""
    with tls_connect(port, sni, ctx, **kw) as c:
        der = c.getpeercert(binary_form=True)
        c.sendall(b"who\n")
        line = sp.recv_line(c).decode().strip()
        tlsutil.tls_roundtrip(c, b"ping " + (sni or "-").encode())
    return line, der


def terminate_tags(port, routes_by_tag, serve, cert, **route_kw):
    """Terminate routes, each to its own backend that answers the first bytes with its
    tag: {tag: dict(domains=..., priority=..., tls_version=..., cert=...)}."""
    out = []
    for tag, kw in routes_by_tag.items():
        b = serve(tlsutil.tag_on_data(tag))
        out.append(tls_route(tag, port, "127.0.0.1", b.port, cert=kw.pop("cert", cert),
                             **kw, **route_kw))
    return out


# ---------------------------------------------------------------------------- 1. passthrough

@pytest.mark.parametrize("alg", ["rsa", "ecdsa"])
def test_passthrough_to_s_server_shows_backend_certificate(start_proxy, serve, pki, certs,
                                                           s_server, alg):
    backend_cert = pki.leaf("a.example.test", alg, org="backend")
    assert backend_cert.der != certs["a", alg].der
    ss = s_server(backend_cert)
    decoy = serve(sp.tag("decoy"))
    port = sp.free_port()
    p = start_proxy({"routes": [
        tls_route("pass", port, "127.0.0.1", ss.port, mode="passthrough",
                  domains="a.example.test"),
        tls_route("other", port, "127.0.0.1", decoy.port, mode="passthrough",
                  domains="b.example.test"),
    ]})
    request = b"GET / HTTP/1.0\r\n\r\n"

    r, der = tlsutil.s_client(port, "a.example.test", ca=pki.ca,
                              args=["-verify_hostname", "a.example.test"], input=request)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert der == backend_cert.der, "s_client did not see the backend's certificate"
    assert b"HTTP/1.0 200 ok" in r.stdout, r.stdout[-2000:]
    assert b"Verification: OK" in r.stdout

    with tls_connect(port, "a.example.test", ca_ctx(pki)) as c:
        assert c.getpeercert(binary_form=True) == backend_cert.der
        assert c.getpeercert()["subject"][0] == (("organizationName", "backend"),)
        c.sendall(request)
        data, _ = tlsutil.tls_read_to_close(c, 5)
    assert data.startswith(b"HTTP/1.0 200 ok"), data[:200]
    assert decoy.accepted == 0
    sp.assert_clean(p)


def test_passthrough_is_byte_exact_both_ways(start_proxy, serve, pki, certs):
    """A python TLS backend behind a passthrough route: large data both ways, the
    backend sees the client's SNI (it is the client's own handshake)."""
    backend_cert = pki.leaf("a.example.test", "ecdsa", org="backend")
    backend = serve(tlsutil.tls_echo(backend_cert))
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("pass", port, "127.0.0.1", backend.port,
                                          mode="passthrough", domains="a.example.test")]})
    before = p.stats()
    data = os.urandom(1 << 20)
    with tls_connect(port, "a.example.test", ca_ctx(pki)) as c:
        assert c.getpeercert(binary_form=True) == backend_cert.der
        tlsutil.tls_roundtrip(c, data)
    [res] = backend.wait_results(1)
    assert res.get("sni") == "a.example.test", res
    assert res["bytes"] == len(data), res
    s = p.stats()
    assert tlsutil.tls_stats(s)["handshakes"] == tlsutil.tls_stats(before)["handshakes"], \
        "a passthrough connection is not a proxy handshake"
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 2. terminate

@pytest.mark.parametrize("inline", [False, True], ids=["pem_files", "inline_pem"])
@pytest.mark.parametrize("alg", ["rsa", "ecdsa"])
def test_terminate_presents_route_certificate(start_proxy, serve, pki, certs, alg, inline):
    cert = certs["a", alg]
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("term", port, "127.0.0.1", backend.port, cert=cert,
                                          inline=inline, domains="a.example.test")]})
    before = p.stats()
    data = os.urandom(256 * 1024)
    with tls_connect(port, "a.example.test", ca_ctx(pki)) as c:
        assert c.getpeercert(binary_form=True) == cert.der
        assert c.version() == "TLSv1.3"
        tlsutil.tls_roundtrip(c, data)
        tlsutil.tls_roundtrip(c, b"and more")
    # the echo backend speaks no TLS: it got (and echoed) exactly the plaintext
    sp.wait_until(lambda: backend.bytes == len(data) + 8, msg="plaintext at the backend")
    tlsutil.wait_tls_counter(p, before, None, "handshakes")
    sp.assert_clean(p)


def test_terminate_forwards_plaintext_byte_stream(start_proxy, serve, pki, certs):
    backend = serve(tlsutil.recorder())
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("term", port, "127.0.0.1", backend.port,
                                          cert=certs["a", "rsa"])]})
    chunks = [b"first\n", os.urandom(70000), b"last"]
    with tls_connect(port, "a.example.test", ca_ctx(pki)) as c:
        for ch in chunks:
            c.sendall(ch)
            time.sleep(0.02)
        # close_notify, not a bare close: closing with the unread session tickets in the
        # receive buffer would make the kernel send RST and drop data in flight
        c.settimeout(5)
        try:
            c.unwrap()
        except (ssl.SSLError, OSError):
            pass  # the proxy may close without its own close_notify
    [got] = backend.wait_results(1)
    assert got == b"".join(chunks)
    sp.assert_clean(p)


@pytest.mark.parametrize("offer,chosen", [(["h2", "http/1.1"], "http/1.1"),
                                          (["http/1.1"], "http/1.1"),
                                          (["h2"], None), (None, None)],
                         ids=["h2+http1.1", "http1.1", "h2_only", "none"])
def test_terminate_alpn(start_proxy, serve, pki, certs, offer, chosen):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("term", port, "127.0.0.1", backend.port,
                                          cert=certs["a", "ecdsa"], domains="a.example.test")]})
    with tls_connect(port, "a.example.test", ca_ctx(pki, alpn=offer)) as c:
        assert c.selected_alpn_protocol() == chosen
        tlsutil.tls_roundtrip(c, b"alpn")
    sp.assert_clean(p)


@pytest.mark.skipif(tlsutil.CURL is None, reason="curl is missing")
@pytest.mark.parametrize("alg", ["rsa", "ecdsa"])
def test_curl_through_terminate_route(start_proxy, serve, pki, certs, alg):
    backend = serve(tlsutil.http_responder())
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("web", port, "127.0.0.1", backend.port,
                                          cert=certs["a", alg], domains="a.example.test")]})
    r = tlsutil.curl(f"https://a.example.test:{port}/some/path?q=1",
                     "--resolve", f"a.example.test:{port}:127.0.0.1", "--cacert", pki.ca,
                     "-w", "\nhttp_version=%{http_version}")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    out = r.stdout.decode()
    assert "hello from the backend" in out and "request: GET /some/path?q=1 HTTP/1.1" in out, out
    assert "http_version=1.1" in out, out
    [head] = backend.wait_results(1)
    assert head.startswith(b"GET /some/path?q=1 HTTP/1.1\r\n"), head  # plaintext HTTP/1.1
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 3. SNI routing

def test_two_domains_one_port_two_backends(start_proxy, serve, pki, certs):
    port = sp.free_port()
    ca, cb = certs["a", "rsa"], certs["b", "ecdsa"]
    routes = terminate_tags(port, {"A": {"domains": "a.example.test", "cert": ca},
                                   "B": {"domains": ["b.example.test"], "cert": cb}},
                            serve, None)
    p = start_proxy({"routes": routes})
    ctx = ca_ctx(pki)
    for _ in range(2):
        assert tls_tag(port, "a.example.test", ctx) == ("A", ca.der)
        assert tls_tag(port, "b.example.test", ctx) == ("B", cb.der)
    sp.assert_clean(p)


def test_passthrough_and_terminate_share_a_port(start_proxy, serve, pki, certs):
    port = sp.free_port()
    backend_cert = pki.leaf("b.example.test", "rsa", org="backend")
    tls_backend = serve(tlsutil.tls_echo(backend_cert, tag="B-tls"))
    plain = serve(tlsutil.tag_on_data("A-plain"))
    p = start_proxy({"routes": [
        tls_route("term", port, "127.0.0.1", plain.port, cert=certs["a", "rsa"],
                  domains="a.example.test"),
        tls_route("pass", port, "127.0.0.1", tls_backend.port, mode="passthrough",
                  domains="b.example.test"),
    ]})
    ctx = ca_ctx(pki)
    assert tls_tag(port, "a.example.test", ctx) == ("A-plain", certs["a", "rsa"].der)
    assert tls_tag(port, "b.example.test", ctx) == ("B-tls", backend_cert.der)
    sp.assert_clean(p)


def test_wildcard_route_and_wildcard_certificate(start_proxy, serve, pki, certs):
    port = sp.free_port()
    wild, fallback = certs["wild", "ecdsa"], pki.leaf("fallback.test")
    # the "*" route comes first in the file: the wildcard still wins, being more specific
    routes = terminate_tags(port, {"ANY": {"domains": "*", "cert": fallback},
                                   "WILD": {"domains": "*.example.test", "cert": wild}},
                            serve, None)
    p = start_proxy({"routes": routes})
    strict, loose = ca_ctx(pki), ca_ctx(pki, check_hostname=False)
    assert tls_tag(port, "x.example.test", strict) == ("WILD", wild.der)
    assert tls_tag(port, "y.z.example.test", loose) == ("WILD", wild.der)
    assert tls_tag(port, "a.b.c.example.test", loose) == ("WILD", wild.der)
    assert tls_tag(port, "example.test", loose) == ("ANY", fallback.der), \
        "*.example.test must not match the apex"
    assert tls_tag(port, "xexample.test", loose) == ("ANY", fallback.der)
    assert tls_tag(port, "other.test", loose) == ("ANY", fallback.der)
    sp.assert_clean(p)


def test_wildcard_without_fallback_does_not_match_apex(start_proxy, serve, pki, certs):
    port = sp.free_port()
    routes = terminate_tags(port, {"WILD": {"domains": "*.example.test"}}, serve,
                            certs["wild", "rsa"])
    p = start_proxy({"routes": routes})
    before = p.stats()
    phase, detail, data = tlsutil.tls_connect_expect_close(
        port, "example.test", ca_ctx(pki, check_hostname=False))
    assert b"WILD" not in data, (phase, detail, data)
    sp.wait_counter(p, before, "terminations", "no_route")
    assert tls_tag(port, "x.example.test", ca_ctx(pki))[0] == "WILD"
    sp.assert_clean(p)


def test_route_choice_priority_then_specificity_then_order(start_proxy, serve, pki, certs):
    spec, prio = sp.free_port(), sp.free_port()
    cert = certs["wild", "rsa"]
    routes = terminate_tags(spec, {
        "WILD": {"domains": "*.example.test"},
        "DEEPWILD": {"domains": "*.z.example.test"},
        "EXACT": {"domains": "a.example.test"},
        "EXACT2": {"domains": "a.example.test"},  # same pattern, later in the file
        "NODOM": {},
    }, serve, cert)
    routes += terminate_tags(prio, {
        "P-EXACT": {"domains": "a.example.test"},
        "HIGHWILD": {"domains": "*.example.test", "priority": 5},
        "HIGHEST": {"domains": "*", "priority": 9, "tls_version": ["TLSv1.2"]},
    }, serve, cert)
    p = start_proxy({"routes": routes})
    loose = ca_ctx(pki, check_hostname=False)
    assert tls_tag(spec, "a.example.test", loose)[0] == "EXACT"
    assert tls_tag(spec, "c.example.test", loose)[0] == "WILD"
    assert tls_tag(spec, "y.z.example.test", loose)[0] == "DEEPWILD"
    assert tls_tag(spec, "z.example.test", loose)[0] == "WILD"
    assert tls_tag(spec, "elsewhere.test", loose)[0] == "NODOM"
    assert tls_tag(prio, "a.example.test", loose)[0] == "HIGHWILD"
    assert tls_tag(prio, "a.example.test", ca_ctx(pki, check_hostname=False,
                                                  max_version=TLS12))[0] == "HIGHEST"
    sp.assert_clean(p)


def test_sni_matching_is_case_insensitive_and_ignores_trailing_dot(start_proxy, serve, pki,
                                                                    certs):
    port = sp.free_port()
    routes = terminate_tags(port, {
        "A": {"domains": "a.example.test", "cert": certs["a", "rsa"]},
        "B": {"domains": ["B.Example.TEST."], "cert": certs["b", "rsa"]},  # as configured
        "ANY": {"domains": "*", "cert": certs["wild", "rsa"]},
    }, serve, None)
    p = start_proxy({"routes": routes})
    ctx, loose = ca_ctx(pki), ca_ctx(pki, check_hostname=False)
    assert tls_tag(port, "A.Example.TEST", ctx) == ("A", certs["a", "rsa"].der)
    assert tls_tag(port, "b.example.test", ctx) == ("B", certs["b", "rsa"].der)
    assert tls_tag(port, "b.EXAMPLE.test", ctx)[0] == "B"
    assert tls_tag(port, "a.example.test.", loose)[0] == "A", "a trailing dot in the SNI"
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 4. no SNI

def test_no_sni_goes_to_route_without_domains_or_star(start_proxy, serve, pki, certs):
    nodom_port, star_port = sp.free_port(), sp.free_port()
    cert = certs["a", "rsa"]
    routes = terminate_tags(nodom_port, {"A": {"domains": "a.example.test"}, "NODOM": {}},
                            serve, cert)
    routes += terminate_tags(star_port, {"A2": {"domains": "a.example.test"},
                                         "STAR": {"domains": "*"}}, serve, cert)
    p = start_proxy({"routes": routes})
    nosni = ca_ctx(pki, check_hostname=False)
    assert tls_tag(nodom_port, None, nosni) == ("NODOM", cert.der)
    assert tls_tag(star_port, None, nosni) == ("STAR", cert.der)
    assert tls_tag(nodom_port, "a.example.test", ca_ctx(pki))[0] == "A"
    assert tls_tag(star_port, "a.example.test", ca_ctx(pki))[0] == "A2"

    r, der = tlsutil.s_client(nodom_port, None, ca=pki.ca, input=b"who close\n")
    assert der == cert.der, r.stderr.decode(errors="replace")[-2000:]
    assert b"NODOM" in r.stdout, r.stdout[-2000:]
    sp.assert_clean(p)


def test_no_sni_without_fallback_route_is_no_route(start_proxy, serve, pki, certs):
    port = sp.free_port()
    routes = terminate_tags(port, {"A": {"domains": "a.example.test"},
                                   "B": {"domains": "*.example.test"}}, serve,
                            certs["wild", "rsa"])
    p = start_proxy({"routes": routes})
    before = p.stats()
    phase, detail, data = tlsutil.tls_connect_expect_close(
        port, None, ca_ctx(pki, check_hostname=False))
    assert not data, (phase, detail, data)
    s = sp.wait_counter(p, before, "terminations", "no_route")
    assert sp.delta(before, s, "terminations") == {"no_route": 1}, \
        sp.delta(before, s, "terminations")
    sp.assert_clean(p)


def test_plain_bytes_on_sniffing_port_go_to_route_without_domains(start_proxy, serve, pki,
                                                                  certs):
    port = sp.free_port()
    tls_side = serve(tlsutil.tag_on_data("TLS"))
    plain = serve(sp.echo)
    p = start_proxy({"routes": [
        tls_route("tls", port, "127.0.0.1", tls_side.port, cert=certs["a", "rsa"],
                  domains="a.example.test"),
        route("plain", port, "127.0.0.1", plain.port),
    ]})
    with p.connect(port) as c:
        sp.roundtrip(c, b"hello, not TLS\n")
    assert tls_tag(port, "a.example.test", ca_ctx(pki))[0] == "TLS"
    assert tls_side.accepted == 1 and plain.accepted == 1
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 5. tls_version

def test_tls_version_matching(start_proxy, serve, pki, certs):
    port = sp.free_port()
    cert = certs["a", "rsa"]
    routes = terminate_tags(port, {"V13": {"tls_version": ["TLSv1.3"]},
                                   "V12": {"tls_version": ["TLSv1.2"]}}, serve, cert)
    p = start_proxy({"routes": routes})
    assert tls_tag(port, "a.example.test", ca_ctx(pki))[0] == "V13"
    assert tls_tag(port, "a.example.test", ca_ctx(pki, max_version=TLS12))[0] == "V12"
    assert tls_tag(port, None, ca_ctx(pki, check_hostname=False, max_version=TLS12))[0] == "V12"
    r, _ = tlsutil.s_client(port, "a.example.test", ca=pki.ca, args=["-tls1_2"],
                            input=b"who close\n")
    assert b"V12" in r.stdout and b"V13" not in r.stdout, r.stdout[-2000:]
    r, _ = tlsutil.s_client(port, "a.example.test", ca=pki.ca, args=["-tls1_3"],
                            input=b"who close\n")
    assert b"V13" in r.stdout, r.stdout[-2000:]
    sp.assert_clean(p)


def test_tls_version_with_domains_and_no_match(start_proxy, serve, pki, certs):
    """tls_version and domains both must match; a TLS 1.2 client with only a TLSv1.3
    route for its name is no_route."""
    port = sp.free_port()
    routes = terminate_tags(port, {"A13": {"domains": "a.example.test",
                                           "tls_version": "TLSv1.3"},
                                   "B": {"domains": "b.example.test"}},
                            serve, certs["wild", "rsa"])
    p = start_proxy({"routes": routes})
    loose = ca_ctx(pki, check_hostname=False)
    assert tls_tag(port, "a.example.test", loose)[0] == "A13"
    before = p.stats()
    phase, detail, data = tlsutil.tls_connect_expect_close(
        port, "a.example.test", ca_ctx(pki, check_hostname=False, max_version=TLS12))
    assert not data, (phase, detail, data)
    sp.wait_counter(p, before, "terminations", "no_route")
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 6. min_version

def test_min_version_tls13_refuses_tls12_client(start_proxy, serve, pki, certs):
    strict_port, default_port = sp.free_port(), sp.free_port()
    backend = serve(sp.echo)
    p = start_proxy({"routes": [
        tls_route("strict", strict_port, "127.0.0.1", backend.port, cert=certs["a", "rsa"],
                  min_version="TLSv1.3"),
        tls_route("default", default_port, "127.0.0.1", backend.port, cert=certs["a", "rsa"]),
    ]})
    before = p.stats()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(strict_port, "a.example.test", ca_ctx(pki, max_version=TLS12)).close()
    s = tlsutil.wait_tls_counter(p, before, "failures", "protocol_version")
    s = sp.wait_counter(p, before, "terminations", "tls_handshake_failed")
    assert tlsutil.tls_delta(before, s, "failures") == {"protocol_version": 1}

    with tls_connect(strict_port, "a.example.test", ca_ctx(pki)) as c:
        assert c.version() == "TLSv1.3"
        tlsutil.tls_roundtrip(c, b"1.3 is fine")
    with tls_connect(default_port, "a.example.test", ca_ctx(pki, max_version=TLS12)) as c:
        assert c.version() == "TLSv1.2"
        tlsutil.tls_roundtrip(c, b"1.2 is fine by default")
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 7. re-encrypt

def reencrypt_proxy(start_proxy, port, target_port, cert, host="127.0.0.1", **tls_opts):
    return start_proxy({"routes": [tls_route("re", port, host, target_port,
                                             mode="terminate-and-reencrypt", cert=cert,
                                             **tls_opts)]})


@pytest.mark.parametrize("alg", ["rsa", "ecdsa"])
def test_reencrypt_with_verification(start_proxy, serve, pki, certs, alg):
    proxy_cert = certs["a", "rsa"]
    backend_cert = pki.leaf("a.example.test", alg, org="backend")
    backend = serve(tlsutil.tls_echo(backend_cert, tag="via-tls", speak_first=True))
    port = sp.free_port()
    p = reencrypt_proxy(start_proxy, port, backend.port, proxy_cert, domains="a.example.test",
                        upstream_verify=True, upstream_ca_file=pki.ca)
    data = os.urandom(200_000)
    with tls_connect(port, "a.example.test", ca_ctx(pki)) as c:
        assert c.getpeercert(binary_form=True) == proxy_cert.der, "client must see the proxy"
        assert sp.recv_line(c) == b"via-tls\n"
        tlsutil.tls_roundtrip(c, data)
    [res] = backend.wait_results(1)
    assert "error" not in res, res
    assert res["sni"] == "a.example.test", res
    assert res["bytes"] == len(data)
    sp.assert_clean(p)


def test_reencrypt_upstream_sni(start_proxy, serve, pki, certs):
    backend_cert = pki.leaf("internal.example.test", "ecdsa", org="backend")
    backend = serve(tlsutil.tls_echo(backend_cert, tag="internal"))
    port = sp.free_port()
    p = reencrypt_proxy(start_proxy, port, backend.port, certs["a", "rsa"],
                        upstream_verify=True, upstream_ca_file=pki.ca,
                        upstream_sni="internal.example.test")
    assert tls_tag(port, "a.example.test", ca_ctx(pki))[0] == "internal"
    [res] = backend.wait_results(1)
    assert res["sni"] == "internal.example.test", res
    sp.assert_clean(p)


@pytest.mark.parametrize("case", ["wrong_name", "unknown_issuer", "ca_file_implies_verify",
                                  "upstream_sni_mismatch"])
def test_reencrypt_verification_failure_closes_client(start_proxy, serve, pki, certs, case):
    opts = {"upstream_verify": True, "upstream_ca_file": pki.ca}
    if case == "wrong_name":
        backend_cert = pki.leaf("other.example.test", org="backend")
    elif case == "unknown_issuer":
        backend_cert = pki.leaf("a.example.test", org="selfsigned", self_signed=True)
    elif case == "ca_file_implies_verify":
        backend_cert = pki.leaf("other.example.test", org="backend")
        opts = {"upstream_ca_file": pki.ca}
    else:  # the backend's cert is for the client's SNI, but the proxy must check upstream_sni
        backend_cert = pki.leaf("a.example.test", org="backend")
        opts["upstream_sni"] = "internal.example.test"
    backend = serve(tlsutil.tls_echo(backend_cert, tag="SHOULD-NOT-SEE"))
    port = sp.free_port()
    p = reencrypt_proxy(start_proxy, port, backend.port, certs["a", "rsa"], **opts)
    before = p.stats()
    phase, detail, data = tlsutil.tls_connect_expect_close(port, "a.example.test", ca_ctx(pki),
                                                           send=b"secret")
    assert b"SHOULD-NOT-SEE" not in data, (phase, detail, data)
    s = tlsutil.wait_tls_counter(p, before, "upstream_failures", "verify_failed")
    s = sp.wait_counter(p, before, "terminations", "upstream_tls_failed")
    assert tlsutil.tls_delta(before, s, "upstream_failures") == {"verify_failed": 1}
    res = backend.wait_results(1)
    assert all(r.get("bytes", 0) == 0 for r in res), f"plaintext reached the backend: {res}"
    sp.assert_clean(p)


def test_reencrypt_without_verification_to_self_signed(start_proxy, serve, pki, certs):
    backend_cert = pki.leaf("whatever.invalid", "ecdsa", org="selfsigned", self_signed=True)
    backend = serve(tlsutil.tls_echo(backend_cert, tag="self-signed"))
    port = sp.free_port()
    p = reencrypt_proxy(start_proxy, port, backend.port, certs["a", "ecdsa"],
                        domains="*.example.test")
    before = p.stats()
    assert tls_tag(port, "a.example.test", ca_ctx(pki)) == ("self-signed",
                                                            certs["a", "ecdsa"].der)
    [res] = backend.wait_results(1)
    assert res["sni"] == "a.example.test", res
    assert res["version"] == "TLSv1.3"
    assert sum(tlsutil.tls_delta(before, p.stats(), "upstream_failures").values()) == 0
    sp.assert_clean(p)


def test_reencrypt_without_client_sni_verifies_target_host(start_proxy, serve, pki, certs):
    hosts = ("127.0.0.1", "::1") if sp.ipv6_available() else ("127.0.0.1",)
    backend_cert = pki.leaf("localhost", org="backend")
    backend = serve(tlsutil.tls_echo(backend_cert, tag="localhost"), hosts=hosts)
    port = sp.free_port()
    p = reencrypt_proxy(start_proxy, port, backend.port, certs["a", "rsa"], host="localhost",
                        upstream_verify=True, upstream_ca_file=pki.ca)
    assert tls_tag(port, None, ca_ctx(pki, check_hostname=False))[0] == "localhost"
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 8. ClientHello reader

CAPTURES = {  # file -> the backend tag it must reach
    "curl.bin": "api",
    "chromium.bin": "shop",
    "chromium-split-512.bin": "shop",
    "openssl-sni-alpn.bin": "mixed",
    "openssl-nosni-tls12.bin": "tls12",
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_real_client_hellos_route_byte_exact(start_proxy, serve, name):
    hello = capture(name)
    want = CAPTURES[name]
    port = sp.free_port()
    trailer = b"after the hello"
    backends = {t: serve(tlsutil.recorder(until=len(hello) + len(trailer)))
                for t in ("api", "shop", "mixed", "tls12", "decoy")}
    p = start_proxy({"timeouts": {"initial_data": 10000}, "routes": [
        tls_route("decoy", port, "127.0.0.1", backends["decoy"].port, mode="passthrough",
                  domains="*", tls_version="TLSv1.3"),
        tls_route("api", port, "127.0.0.1", backends["api"].port, mode="passthrough",
                  domains="api.example.test"),
        tls_route("shop", port, "127.0.0.1", backends["shop"].port, mode="passthrough",
                  domains=["shop.example.test"]),
        tls_route("mixed", port, "127.0.0.1", backends["mixed"].port, mode="passthrough",
                  domains="mixed.case.example.test"),
        tls_route("tls12", port, "127.0.0.1", backends["tls12"].port, mode="passthrough",
                  tls_version=["TLSv1.2"]),
    ]})
    ways = {
        "whole": lambda c: c.sendall(hello),
        "byte_by_byte": lambda c: tlsutil.send_slowly(c, hello, 1, 0.0005),
        "records": lambda c: [tlsutil.send_slowly(c, rec, len(rec), 0.05)
                              for rec in tlsutil.split_records(hello)],
        "odd_cuts": lambda c: tlsutil.send_slowly(c, hello, 7, 0.002),
    }
    for i, (how, send) in enumerate(ways.items(), 1):
        with p.connect(port) as c:
            send(c)
            c.sendall(trailer)
            # the backend returns (and closes) once it has all the bytes: no client FIN
            # is needed, so nothing depends on how a FIN racing the target connect is taken
            got = backends[want].wait_results(i)[-1]
            sp.wait_closed(c, 5)
        assert got == hello + trailer, (f"{how}: {len(got)} bytes at {want!r}, not the "
                                        f"{len(hello)}-byte ClientHello + trailer")
    for t, b in backends.items():
        if t != want:
            assert b.accepted == 0, f"{t} got a connection"
    sp.assert_clean(p)


def test_python_client_hello_byte_by_byte_then_real_handshake(start_proxy, serve, pki, certs):
    """A live passthrough handshake whose ClientHello reaches the proxy one byte at a
    time (a MemoryBIO client; its first flight is written byte by byte)."""
    backend_cert = pki.leaf("a.example.test", org="backend")
    backend = serve(tlsutil.tls_echo(backend_cert, tag="slow-ok"))
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("pass", port, "127.0.0.1", backend.port,
                                          mode="passthrough", domains="a.example.test")]})
    with p.connect(port) as c:
        bio = tlsutil.BioClient(c, ca_ctx(pki), "a.example.test")
        bio.send_client_hello(step=1, pause=0.0005)
        bio.handshake()
        assert bio.obj.getpeercert(binary_form=True) == backend_cert.der
        bio.write(b"who\n")
        assert bio.read_line() == b"slow-ok\n"
    [res] = backend.wait_results(1)
    assert res.get("sni") == "a.example.test", res
    sp.assert_clean(p)


@pytest.mark.parametrize("finished_delay", [0.0, 0.3], ids=["fast_client", "slow_finished"])
def test_terminate_to_target_that_speaks_first(start_proxy, serve, pki, certs, finished_delay):
    """SPEC 4: servers that speak first must work. The target's banner may reach the
    proxy while the client's handshake is still going on (slow_finished holds the
    client's Finished back 0.3 s to make sure of it): the banner must wait for the
    handshake, not break the connection."""
    backend = serve(sp.banner(b"220 banner\r\n"))
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("smtps", port, "127.0.0.1", backend.port,
                                          cert=certs["a", "rsa"], domains="a.example.test")]})
    ctx = ca_ctx(pki)
    got = []
    for i in range(20 if finished_delay == 0 else 3):
        try:
            with p.connect(port) as c:
                bio = tlsutil.BioClient(c, ctx, "a.example.test")
                bio.send_client_hello()
                bio.handshake(hold_last_flight=True)
                time.sleep(finished_delay)
                bio.flush()
                got.append(bio.read_line())
                bio.write(b"EHLO %d\r\n" % i)
                assert bio.read_line() == b"EHLO %d\r\n" % i
        except (OSError, ConnectionError, ssl.SSLError) as e:
            got.append(repr(e))
    bad = [g for g in got if g != b"220 banner\r\n"]
    assert not bad, f"{len(bad)} of {len(got)} connections lost the banner: {bad[:3]}"
    sp.assert_clean(p)


@pytest.mark.parametrize("client", ["plain_bytes", "tls12_to_min_tls13", "stalled_handshake"])
def test_failed_client_handshake_never_reaches_target(start_proxy, serve, pki, certs, client):
    """A client that never completes the TLS handshake must not get a target connection
    (the target is chosen with ctx.tls_version/ctx.alpn, known only after it)."""
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"timeouts": {"initial_data": 500}, "routes": [
        tls_route("term", port, "127.0.0.1", backend.port, cert=certs["a", "rsa"],
                  min_version="TLSv1.3")]})
    before = p.stats()
    if client == "plain_bytes":
        sp.closed_on_arrival(port, send=b"hello", timeout=5)
    elif client == "tls12_to_min_tls13":
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(port, "a.example.test", ca_ctx(pki, max_version=TLS12)).close()
    else:
        sp.closed_on_arrival(port, send=tlsutil.client_hello("a.example.test"), timeout=5)
    sp.wait_counter(p, before, "terminations", "tls_handshake_failed")
    assert backend.accepted == 0, "the proxy connected to the target for a failed handshake"
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 9. bad input

@pytest.mark.parametrize("first,reason", [
    (b"\x16\x03\x01\xff\xff" + bytes(range(64)), "bad_client_hello"),
    (b"\x16\x03\x01\x00\x00", "bad_client_hello"),
    (b"\x16\x03\x01\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00", "bad_client_hello"),
    (b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", "bad_client_hello"),
    (b"GET / HTTP/1.1\r\n", "no_route"),
], ids=["record_too_long", "empty_record", "server_hello", "truncated_body", "http"])
def test_garbage_on_sniffing_port_closed_promptly(start_proxy, serve, first, reason):
    backend = serve(tlsutil.recorder())
    port = sp.free_port()
    p = start_proxy({"timeouts": {"initial_data": 10000}, "routes": [
        tls_route("a", port, "127.0.0.1", backend.port, mode="passthrough",
                  domains="a.example.test"),
        tls_route("w", port, "127.0.0.1", backend.port, mode="passthrough",
                  domains="*.other.test"),
    ]})
    before = p.stats()
    took = sp.closed_on_arrival(port, send=first, timeout=5)
    assert took < 2.0, f"closed after {took:.2f}s, not promptly"
    s = sp.wait_counter(p, before, "terminations", reason)
    assert sp.delta(before, s, "terminations") == {reason: 1}, sp.delta(before, s, "terminations")
    assert backend.accepted == 0
    sp.assert_clean(p)


def test_half_client_hello_then_silence_times_out(start_proxy, serve):
    hello = capture("curl.bin")
    backend = serve(tlsutil.recorder())
    port = sp.free_port()
    p = start_proxy({"timeouts": {"initial_data": 500}, "routes": [
        tls_route("api", port, "127.0.0.1", backend.port, mode="passthrough",
                  domains="api.example.test")]})
    before = p.stats()
    took = sp.closed_on_arrival(port, send=hello[:len(hello) // 2], timeout=5)
    assert 0.4 <= took < 3.0, f"closed after {took:.2f}s (initial_data is 0.5 s)"
    s = sp.wait_counter(p, before, "terminations", "initial_data_timeout")
    assert sp.delta(before, s, "terminations") == {"initial_data_timeout": 1}
    assert backend.accepted == 0
    sp.assert_clean(p)


@pytest.mark.parametrize("sniffing", [True, False], ids=["sniffing_port", "plain_port"])
def test_client_stalling_in_terminate_handshake_times_out(start_proxy, serve, pki, certs,
                                                          sniffing):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"timeouts": {"initial_data": 500}, "routes": [
        tls_route("term", port, "127.0.0.1", backend.port, cert=certs["a", "rsa"],
                  domains="a.example.test" if sniffing else None)]})
    before = p.stats()
    hello = tlsutil.client_hello("a.example.test")
    t0 = time.monotonic()
    with p.connect(port) as c:
        c.sendall(hello)  # and never answer the server's flight
        data, _ = sp.read_to_close(c, 5)
    took = time.monotonic() - t0
    assert data[:1] == b"\x16", f"expected the server's handshake flight, got {data[:20]!r}"
    assert 0.3 <= took < 3.0, f"closed after {took:.2f}s (initial_data is 0.5 s)"
    s = tlsutil.wait_tls_counter(p, before, "failures", "timeout")
    s = sp.wait_counter(p, before, "terminations", "tls_handshake_failed")
    assert tlsutil.tls_delta(before, s, "failures") == {"timeout": 1}
    sp.assert_clean(p)


@pytest.mark.parametrize("domains", [None, "*"], ids=["no_domains", "star"])
def test_plain_tcp_client_on_terminate_route(start_proxy, serve, certs, domains):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"timeouts": {"initial_data": 10000}, "routes": [
        tls_route("term", port, "127.0.0.1", backend.port, cert=certs["a", "rsa"],
                  domains=domains)]})
    before = p.stats()
    took = sp.closed_on_arrival(port, send=b"hello", timeout=5)
    assert took < 2.0, f"closed after {took:.2f}s, not promptly"
    s = tlsutil.wait_tls_counter(p, before, "failures", "not_tls")
    s = sp.wait_counter(p, before, "terminations", "tls_handshake_failed")
    assert tlsutil.tls_delta(before, s, "failures") == {"not_tls": 1}
    sp.assert_clean(p)


def test_stats_tls_block_shape(start_proxy, serve, certs):
    port = sp.free_port()
    p = start_proxy({"routes": [tls_route("t", port, "127.0.0.1", 9, cert=certs["a", "rsa"])]})
    s = p.stats()
    t = tlsutil.tls_stats(s)
    assert isinstance(t.get("handshakes"), int) and isinstance(t.get("resumed"), int), t
    for group in ("failures", "upstream_failures"):
        assert set(tlsutil.TLS_FAILURE_KEYS) <= set(t.get(group, {})), (group, t)
        assert all(v == 0 for v in t[group].values()), t
    for reason in ("bad_client_hello", "tls_handshake_failed", "tls_error",
                   "upstream_tls_failed"):
        assert reason in s["terminations"], (reason, s["terminations"])


# ---------------------------------------------------------------------------- 10. resumption

@pytest.mark.parametrize("version", [TLS13, TLS12], ids=["tls13", "tls12"])
def test_session_resumption_on_terminate(start_proxy, serve, pki, certs, version):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"workers": 2, "routes": [
        tls_route("term", port, "127.0.0.1", backend.port, cert=certs["a", "ecdsa"],
                  domains="a.example.test")]})
    before = p.stats()
    ctx = ca_ctx(pki, min_version=version, max_version=version)
    with tls_connect(port, "a.example.test", ctx) as c:
        assert not c.session_reused
        tlsutil.tls_roundtrip(c, b"first")  # TLS 1.3: the ticket arrives after the handshake
        session = c.session
    assert session is not None
    n = 6
    reused = []
    for i in range(n):
        with tls_connect(port, "a.example.test", ctx, session=session) as c:
            tlsutil.tls_roundtrip(c, b"again %d" % i)
            reused.append(c.session_reused)
            session = c.session or session
    assert all(reused), f"session_reused per connection: {reused}"
    s = tlsutil.wait_tls_counter(p, before, None, "resumed", n)
    t0, t1 = tlsutil.tls_stats(before), tlsutil.tls_stats(s)
    assert t1["resumed"] - t0["resumed"] == n
    assert t1["handshakes"] - t0["handshakes"] == n + 1
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- ctx for Lua

@pytest.mark.parametrize("mode,sni,max_version,alpn,expect", [
    ("terminate", "A.Example.TEST", None, ["h2", "http/1.1"],
     {"domain": "a.example.test", "tls": True, "tls_version": "TLSv1.3", "alpn": "http/1.1"}),
    ("terminate", "a.example.test", TLS12, None,
     {"domain": "a.example.test", "tls": True, "tls_version": "TLSv1.2"}),
    ("passthrough", "A.EXAMPLE.test", None, None, {"domain": "a.example.test"}),
], ids=["terminate_tls13_alpn", "terminate_tls12", "passthrough"])
def test_ctx_fields_in_lua_target_function(start_proxy, serve, pki, certs, mode, sni,
                                           max_version, alpn, expect):
    backend_cert = pki.leaf("a.example.test", org="backend")
    backend = serve(tlsutil.tls_echo(backend_cert, tag="ok") if mode == "passthrough"
                    else tlsutil.tag_on_data("ok"))
    port = sp.free_port()
    checks = " or ".join(f"ctx.{k} ~= {lua(v)}" for k, v in expect.items())
    if mode == "passthrough":
        checks += " or ctx.tls == true"
    fn = Lua(f'function(ctx) if {checks} then error(string.format('
             f'"unexpected ctx: domain=%s tls=%s tls_version=%s alpn=%s", tostring(ctx.domain), '
             f'tostring(ctx.tls), tostring(ctx.tls_version), tostring(ctx.alpn))) end '
             f'return {backend.port} end')
    p = start_proxy({"routes": [tls_route("ctx", port, "127.0.0.1", fn, mode=mode,
                                          cert=certs["a", "rsa"] if mode != "passthrough"
                                          else None, domains="a.example.test")]})
    ctx = ca_ctx(pki, max_version=max_version, alpn=alpn)
    try:
        line, _ = tls_tag(port, sni, ctx)
    except (OSError, AssertionError) as e:
        raise AssertionError(f"connection failed ({e!r}); proxy stderr:\n"
                             f"{p.stderr_tail(3000)}") from None
    assert line == "ok"
    sp.assert_clean(p)


# ---------------------------------------------------------------------------- 11. --check

def check_config(tmp_path, bad_route):
    ok = tls_route("ok", 18443, "127.0.0.1", 9000, mode="passthrough", domains="ok.test")
    path = tmp_path / "proxy.lua"
    path.write_text("return " + lua({"routes": [ok, bad_route]}) + "\n")
    return path


def _bad_cases(pki, certs, tmp_path):
    a, b = certs["a", "rsa"], certs["b", "rsa"]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    missing_key = tmp_path / "nowhere" / "missing.key"
    missing_cert = tmp_path / "nowhere" / "missing.pem"
    bad_inline = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

    def term(**kw):
        kw.setdefault("cert", a)
        return tls_route("web", 18444, "127.0.0.1", 9001, **kw)

    F = "action.tls.certificate"
    return {
        "missing_key_file": (term(cert={"cert": str(a.cert), "key": str(missing_key)}),
                             [F + ".key", "missing.key"]),
        "missing_cert_file": (term(cert={"cert": str(missing_cert), "key": str(a.key)}),
                              [F + ".cert", "missing.pem"]),
        "key_not_matching_cert": (term(cert={"cert": str(a.cert), "key": str(b.key)}),
                                  [re.compile(r"action\.tls\.certificate\.(cert|key)")]),
        "garbage_cert_file": (term(cert={"cert": str(garbage), "key": str(a.key)}),
                              [F + ".cert", "garbage.pem"]),
        "garbage_key_file": (term(cert={"cert": str(a.cert), "key": str(garbage)}),
                             [F + ".key", "garbage.pem"]),
        "bad_inline_cert": (term(cert={"cert": bad_inline, "key": a.key_pem}), [F + ".cert"]),
        "cert_on_passthrough": (term(mode="passthrough"), [F]),
        "terminate_without_cert": (tls_route("web", 18444, "127.0.0.1", 9001), [F]),
        "reencrypt_without_cert": (tls_route("web", 18444, "127.0.0.1", 9001,
                                             mode="terminate-and-reencrypt"), [F]),
        "upstream_verify_on_terminate": (term(upstream_verify=True),
                                         ["action.tls.upstream_verify"]),
        "upstream_sni_on_passthrough": (tls_route("web", 18444, "127.0.0.1", 9001,
                                                  mode="passthrough", upstream_sni="x.test"),
                                        ["action.tls.upstream_sni"]),
        "upstream_ca_file_on_terminate": (term(upstream_ca_file=pki.ca),
                                          ["action.tls.upstream_ca_file"]),
        "bad_mode": (term(mode="terminate-reencrypt"), ["action.tls.mode",
                                                        "terminate-reencrypt"]),
        "bad_min_version": (term(min_version="TLSv1.4"), ["action.tls.min_version", "TLSv1.4"]),
        "min_version_below_1_2": (term(min_version="TLSv1.1"), ["action.tls.min_version"]),
        # "*.*.example.com" and "a.*.example.com" are globs since issue 21: these are not
        "domain_two_wildcards": (term(domains="*..example.com"),
                                 ["match.domains", "*..example.com", "empty label"]),
        "domain_with_space": (term(domains=["ok.example.com", "exa mple.com"]),
                              ["match.domains", "exa mple.com"]),
        "domain_inner_wildcard": (term(domains="a.{*}.example.com"), ["match.domains", "two alternatives"]),
        "bad_tls_version": (term(tls_version=["TLSv2"]), ["match.tls_version", "TLSv2"]),
    }


BAD_CASE_IDS = ["missing_key_file", "missing_cert_file", "key_not_matching_cert",
                "garbage_cert_file", "garbage_key_file", "bad_inline_cert", "cert_on_passthrough",
                "terminate_without_cert", "reencrypt_without_cert",
                "upstream_verify_on_terminate", "upstream_sni_on_passthrough",
                "upstream_ca_file_on_terminate", "bad_mode", "bad_min_version",
                "min_version_below_1_2", "domain_two_wildcards", "domain_with_space",
                "domain_inner_wildcard", "bad_tls_version"]


@pytest.mark.parametrize("case", BAD_CASE_IDS)
def test_check_rejects_bad_tls_config(tmp_path, pki, certs, case):
    bad, wants = _bad_cases(pki, certs, tmp_path)[case]
    path = check_config(tmp_path, bad)
    r = run_cli("--check", path)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    err = r.stderr
    for want in ["proxy.lua", 'route "web" (#2)', *wants]:
        if isinstance(want, re.Pattern):
            assert want.search(err), f"{want.pattern!r} not in:\n{err}"
        else:
            assert want in err, f"{want!r} not in:\n{err}"


def test_check_accepts_valid_tls_config(tmp_path, pki, certs):
    a = certs["a", "ecdsa"]
    routes = [
        tls_route("pass", 18443, "127.0.0.1", 9000, mode="passthrough",
                  domains=["a.example.test", "*.b.example.test"], tls_version=["TLSv1.3"]),
        tls_route("files", 18444, "127.0.0.1", 9001, cert=a, domains="A.Example.TEST.",
                  min_version="TLSv1.3"),
        tls_route("inline", 18444, "127.0.0.1", 9001, cert=certs["wild", "rsa"], inline=True,
                  domains="*.example.test"),
        tls_route("re", 18445, "127.0.0.1", 9002, mode="terminate-and-reencrypt", cert=a,
                  domains="*", upstream_verify=True, upstream_sni="internal.test",
                  upstream_ca_file=pki.ca),
    ]
    path = tmp_path / "proxy.lua"
    path.write_text("return " + lua({"routes": routes}) + "\n")
    r = run_cli("--check", path)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for word in ("pass", "files", "inline", "re", "18443", "18444", "18445"):
        assert word in out, f"{word!r} missing from the --check summary:\n{out}"


def test_close_notify_to_a_vanished_client_is_survived(start_proxy, serve, pki, certs):
    """The target closes while the client has just reset: writing our close_notify to
    that client fails, which ends the connection in the middle of closing it (once a
    NULL dereference). Many rounds, to get both orders of the two events."""
    def close_on_data(conn, srv):
        conn.recv(1)
        conn.close()
    backend = serve(close_on_data, backlog=512)
    port = sp.free_port()
    p = start_proxy({"workers": 2, "routes": [tls_route("term", port, "127.0.0.1", backend.port,
                                                        cert=certs["a", "ecdsa"])]})
    ctx = ca_ctx(pki)
    for _ in range(300):
        s = tls_connect(port, "a.example.test", ctx)
        s.sendall(b"x")
        sp.rst_close(s)
    assert p.proc.poll() is None, "the proxy died"
    with tls_connect(port, "a.example.test", ctx) as s:
        s.sendall(b"x")
    sp.assert_clean(p)
