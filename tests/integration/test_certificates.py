"""certificate = "auto": the store, the provision hook, ACME against a real pebble
(Debian's `pebble` and `pebble-challtestsrv`, on loopback), renewal that swaps the
certificate under live connections, failures that back off and leave other routes alone.

pebble validates HTTP-01 by connecting to the proxy's acme.challenge_port; its DNS
questions go to pebble-challtestsrv, which answers 127.0.0.1 for every name. The ACME
server's own TLS certificate comes from the test CA (acme.ca_file); the certificates it
issues chain to a root fetched from its management endpoint (/roots/0), which is what
curl is given to verify the proxy."""
import json
import os
import shutil
import ssl
import stat
import subprocess
import time
from pathlib import Path

import pytest

import sp
import tlsutil
from sp import Lua, route, run_cli

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")

pytestmark = pytest.mark.skipif(not (PEBBLE and CHALLTESTSRV and tlsutil.CURL),
                                reason="pebble, pebble-challtestsrv or curl missing (.ci/deps installs them)")


def _spawn(cmd, log, env=None):
    if shutil.which("setpriv"):
        cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})


def _stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Pebble:
    """pebble on 127.0.0.1 (ACME on .port, management on .mgmt_port) validating HTTP-01
    on challenge_port, resolving through the DNS server at dns_port."""

    def __init__(self, workdir, pki, challenge_port, dns_port, env=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.mgmt_port = sp.free_port(), sp.free_port()
        cert = pki.leaf(["localhost", "127.0.0.1"], "ecdsa", org="pebble")
        self.ca = pki.ca
        self.log = self.dir / f"pebble-{self.port}.log"
        cfg = self.dir / f"pebble-{self.port}.json"
        cfg.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(cert.cert), "privateKey": str(cert.key),
            "httpPort": challenge_port, "tlsPort": sp.free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
        self.proc = _spawn([PEBBLE, "-config", str(cfg), "-dnsserver", f"127.0.0.1:{dns_port}"], self.log,
                           {"PEBBLE_VA_NOSLEEP": "1", **(env or {})})
        try:
            sp.wait_until(self._ready, 15, interval=0.1, msg="pebble's directory")
        except BaseException:
            self.close()
            raise

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def _get(self, url):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.check_hostname = False
        import urllib.request
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.read()

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"pebble exited {self.proc.returncode}: {self.log.read_text()}")
        return b"newOrder" in self._get(self.directory)

    def root(self):
        """The root that signs what pebble issues, as a file for curl."""
        path = self.dir / f"pebble-root-{self.port}.pem"
        path.write_bytes(self._get(f"https://127.0.0.1:{self.mgmt_port}/roots/0"))
        return path

    def orders(self):
        """newOrder requests pebble has logged (a request rejected for its nonce and
        retried counts twice)."""
        return self.log.read_text(errors="replace").count("POST /order-plz")

    def close(self):
        _stop(self.proc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return tlsutil.PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    """pebble-challtestsrv answering 127.0.0.1 (and no AAAA) for every name."""
    d = tmp_path_factory.mktemp("challtestsrv")
    port, mgmt = sp.free_port(), sp.free_port()
    proc = _spawn([CHALLTESTSRV, "-dns01", f"127.0.0.1:{port}", "-management", f"127.0.0.1:{mgmt}",
                   "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", "",
                   "-defaultIPv4", "127.0.0.1"], d / "challtestsrv.log")
    time.sleep(0.3)
    assert proc.poll() is None, (d / "challtestsrv.log").read_text()
    yield port
    _stop(proc)


@pytest.fixture
def pebble(tmp_path, pki, dns):
    """pebble(challenge_port, env=None) -> Pebble; closed at teardown."""
    started = []

    def start(challenge_port, env=None):
        p = Pebble(tmp_path / "pebble", pki, challenge_port, dns, env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def auto_route(name, port, domains, backend_port):
    r = route(name, port, "127.0.0.1", backend_port)
    r["match"]["domains"] = domains
    r["action"]["tls"] = {"mode": "terminate", "certificate": "auto"}
    return r


def acme_config(pebble_or_url, challenge_port, pki, **extra):
    url = pebble_or_url if isinstance(pebble_or_url, str) else pebble_or_url.directory
    return {"email": "ops@example.test", "directory": url, "ca_file": str(pki.ca),
            "challenge_port": challenge_port, "retry_interval": 1, **extra}


def cert_state(proxy, name):
    return proxy.stats()["certificates"]["domains"].get(name, {})


def wait_cert(proxy, name, timeout=30):
    def ok():
        st = cert_state(proxy, name)
        return st if st.get("state") == "ok" else None
    return sp.wait_until(ok, timeout, interval=0.1, msg=f"a certificate for {name} "
                                                        f"(stderr: {proxy.stderr_tail(3000)})")


def served_der(port, name):
    ctx = tlsutil.client_context(verify=False)
    with tlsutil.tls_connect(port, name, ctx) as s:
        return s.getpeercert(binary_form=True)


def curl_https(port, name, root):
    return tlsutil.curl(f"https://{name}:{port}/", "--cacert", root, "--resolve", f"{name}:{port}:127.0.0.1")


# ---------------------------------------------------------------------------- ACME

def test_acme_issues_serves_and_stores(start_proxy, serve, pebble, pki, tmp_path):
    """Two names ordered at once from pebble (which rejects 30 % of nonces), served
    through a terminating route that curl verifies against pebble's root; the store holds
    them certbot-style; a restart reuses them without a second order."""
    backend = serve(tlsutil.http_responder(b"through auto\n"))
    tls_port, challenge_port = sp.free_port(), sp.free_port()
    peb = pebble(challenge_port, {"PEBBLE_WFE_NONCEREJECT": "30"})
    store = tmp_path / "store"
    config = {"routes": [auto_route("auto", tls_port, ["a.test", "b.test"], backend.port)],
              "acme": acme_config(peb, challenge_port, pki),
              "certificates": {"store": str(store)}}
    proxy = start_proxy(config)
    # the challenge port is served although no route uses it: 404 for anything else
    with sp.connect(challenge_port) as c:
        c.sendall(b"GET /anything HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        assert sp.read_to_close(c)[0].startswith(b"HTTP/1.1 404 ")
    for name in ("a.test", "b.test"):
        st = wait_cert(proxy, name)
        assert st["source"] == "ACME server" and st["orders"] == 1, st
        assert st["expires_in_seconds"] > 86400
    root = peb.root()
    for name in ("a.test", "b.test"):
        r = curl_https(tls_port, name, root)
        assert r.returncode == 0, r.stderr
        assert b"through auto" in r.stdout
    for name in ("a.test", "b.test"):
        assert (store / name / "fullchain.pem").read_text().count("BEGIN CERTIFICATE") >= 2
        key = store / name / "privkey.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((store / "_acme" / "account.pem").stat().st_mode) == 0o600
    status, body = sp.http_get(proxy.metrics_port, "/metrics")
    assert status == 200
    assert b'smartproxy_certificate_domain_expiry_timestamp_seconds{domain="a.test"}' in body
    assert b'smartproxy_certificate_orders_total{result="ok"} 2' in body
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
        assert r.returncode == 0, r.stdout + r.stderr
    orders = peb.orders()
    assert orders >= 2
    proxy.stop()

    again = start_proxy(config)
    for name in ("a.test", "b.test"):
        st = cert_state(again, name)
        assert st["state"] == "ok" and st["source"] == "store" and st["orders"] == 0, st
    r = curl_https(tls_port, "a.test", root)
    assert r.returncode == 0, r.stderr
    assert peb.orders() == orders, "a restart ordered again instead of using the store"


def test_renewal_swaps_certificate_under_live_connections(start_proxy, serve, pebble, pki, tmp_path):
    """renew_before_days beyond the certificate's lifetime: every check renews. New
    handshakes get the new certificate; a connection opened before keeps working. The
    challenge port has a route of its own here (a redirect to HTTPS): challenges are
    answered before it."""
    backend = serve(sp.echo)
    tls_port, challenge_port = sp.free_port(), sp.free_port()
    peb = pebble(challenge_port)
    redirect = {"name": "to-https", "match": {"ports": challenge_port, "domains": "*"},
                "action": {"type": "redirect", "redirect": {"to": "https://{domain}{path}", "status": 301}}}
    config = {"routes": [auto_route("auto", tls_port, "r.test", backend.port), redirect],
              "acme": acme_config(peb, challenge_port, pki, renew_before_days=3650, renew_check_interval=1),
              "certificates": {"store": str(tmp_path / "store")}}
    proxy = start_proxy(config)
    wait_cert(proxy, "r.test")
    ctx = tlsutil.client_context(verify=False)
    with tlsutil.tls_connect(tls_port, "r.test", ctx) as old:
        first = old.getpeercert(binary_form=True)
        tlsutil.tls_roundtrip(old, b"before renewal\n")
        sp.wait_until(lambda: served_der(tls_port, "r.test") != first, 30, interval=0.2,
                      msg="a renewed certificate on new handshakes")
        tlsutil.tls_roundtrip(old, b"after renewal, same connection\n")
        assert old.getpeercert(binary_form=True) == first
    assert cert_state(proxy, "r.test")["orders"] >= 2
    with sp.connect(challenge_port) as c:
        c.sendall(b"GET /x HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n")
        assert sp.read_to_close(c)[0].startswith(b"HTTP/1.1 301 ")


def test_reload_adds_a_name_without_touching_the_others(start_proxy, serve, pebble, pki, tmp_path):
    """A reload that adds a name orders that name only; the certificate of the name that
    was there keeps serving unchanged, and a connection from before the reload lives on."""
    backend = serve(sp.echo)
    tls_port, challenge_port = sp.free_port(), sp.free_port()
    peb = pebble(challenge_port)
    config = {"routes": [auto_route("auto", tls_port, ["old.test"], backend.port)],
              "acme": acme_config(peb, challenge_port, pki),
              "certificates": {"store": str(tmp_path / "store")}}
    proxy = start_proxy(config)
    wait_cert(proxy, "old.test")
    first = served_der(tls_port, "old.test")
    with tlsutil.tls_connect(tls_port, "old.test", tlsutil.client_context(verify=False)) as live:
        config["routes"][0]["match"]["domains"] = ["old.test", "new.test"]
        proxy.write_config(config)
        proxy.reload()
        assert wait_cert(proxy, "new.test")["orders"] == 1
        tlsutil.tls_roundtrip(live, b"across the reload\n")
    st = cert_state(proxy, "old.test")
    assert st["orders"] == 1 and st["source"] == "ACME server", st
    assert served_der(tls_port, "old.test") == first
    assert served_der(tls_port, "new.test") != first


# ---------------------------------------------------------------------------- hook and store

def test_provision_hook_and_acme_fallback(start_proxy, serve, pebble, pki, tmp_path):
    """The hook supplies p.test itself (no ACME traffic for it), says "acme" for q.test,
    and fails for e.test: that error is logged with the name, and e.test's handshakes
    fail cleanly and are counted while the others serve."""
    backend = serve(sp.echo)
    tls_port, challenge_port = sp.free_port(), sp.free_port()
    # no rejected nonces here: a badNonce retry would repeat the newOrder POST it counts
    peb = pebble(challenge_port, {"PEBBLE_WFE_NONCEREJECT": "0"})
    own = pki.leaf("p.test", "ecdsa", org="hook")
    hook = Lua(f"""function(domain)
      if domain == "p.test" then return {{ cert = {json.dumps(own.pem)}, key = {json.dumps(own.key_pem)} }} end
      if domain == "e.test" then error("no such customer") end
      return "acme"
    end""")
    store = tmp_path / "store"
    config = {"routes": [auto_route("auto", tls_port, ["p.test", "q.test", "e.test"], backend.port)],
              "acme": acme_config(peb, challenge_port, pki),
              "certificates": {"store": str(store), "provision": hook}}
    proxy = start_proxy(config)
    st = cert_state(proxy, "p.test")
    assert st["state"] == "ok" and st["source"] == "provision hook" and st["orders"] == 0, st
    assert served_der(tls_port, "p.test") == own.der
    assert (store / "p.test" / "fullchain.pem").read_text() == own.pem
    assert wait_cert(proxy, "q.test")["source"] == "ACME server"
    assert peb.log.read_text().count("POST /order-plz") == 1, "only q.test is ordered"
    assert "certificate for e.test: certificates.provision failed" in proxy.stderr_tail()
    assert "no such customer" in proxy.stderr_tail()
    before = proxy.stats()["certificates"]["no_certificate_handshakes"]
    phase, _, _ = tlsutil.tls_connect_expect_close(tls_port, "e.test", tlsutil.client_context(verify=False))
    assert phase == "handshake"
    sp.wait_until(lambda: proxy.stats()["certificates"]["no_certificate_handshakes"] > before, 5,
                  msg="the refused handshake counted")
    assert served_der(tls_port, "p.test") == own.der


def test_store_only_without_acme(start_proxy, serve, pki, tmp_path):
    """A certificate put in the store (wildcard folder name) serves; a name with nothing
    anywhere fails its handshakes cleanly while the stored one keeps serving."""
    backend = serve(sp.echo)
    tls_port = sp.free_port()
    wild = pki.leaf(["*.w.test"], "ecdsa", org="store")
    folder = tmp_path / "store" / "_wildcard.w.test"
    folder.mkdir(parents=True)
    shutil.copy(wild.cert, folder / "fullchain.pem")
    shutil.copy(wild.key, folder / "privkey.pem")
    config = {"routes": [auto_route("auto", tls_port, ["*.w.test", "none.test"], backend.port)],
              "certificates": {"store": str(tmp_path / "store")}}
    proxy = start_proxy(config)
    assert served_der(tls_port, "x.w.test") == wild.der
    with tlsutil.tls_connect(tls_port, "y.w.test", tlsutil.client_context(pki.ca)) as s:
        tlsutil.tls_roundtrip(s, b"wildcard from the store\n")
    phase, _, _ = tlsutil.tls_connect_expect_close(tls_port, "none.test", tlsutil.client_context(verify=False))
    assert phase == "handshake"
    assert "no certificate" in proxy.stderr_tail() and "none.test" in proxy.stderr_tail()
    assert cert_state(proxy, "none.test")["state"] == "missing"
    sp.assert_clean(proxy)


# ---------------------------------------------------------------------------- failures

def test_acme_failures_back_off_and_other_routes_serve(start_proxy, serve, pebble, pki, tmp_path):
    """pebble cannot validate (its HTTP-01 port has no proxy behind it) and a second
    directory is down: each order fails with a clear log line (pebble's problem document;
    the connection error), is retried with growing waits, and a route with a fixed
    certificate serves throughout."""
    backend = serve(sp.echo)
    tls_port, fixed_port, challenge_port = sp.free_port(), sp.free_port(), sp.free_port()
    # validates for real (PEBBLE_VA_ALWAYS_VALID=0) against a port nobody listens on
    peb = pebble(sp.free_port(), {"PEBBLE_VA_ALWAYS_VALID": "0"})
    dead = f"https://127.0.0.1:{sp.free_port()}/dir"
    fixed = pki.leaf("fixed.test", "ecdsa")
    config = {"routes": [auto_route("auto", tls_port, ["f.test"], backend.port),
                         tlsutil.tls_route("fixed", fixed_port, "127.0.0.1", backend.port, cert=fixed)],
              "acme": acme_config(peb, challenge_port, pki),
              "certificates": {"store": str(tmp_path / "store")}}
    proxy = start_proxy(config)

    def attempts(n):
        text = proxy.stderr_tail(200000)
        return text if text.count("certificate for f.test: ACME order failed") >= n else None
    text = sp.wait_until(lambda: attempts(2), 30, interval=0.2, msg="two failed attempts")
    assert "(attempt 1)" in text and "(attempt 2)" in text
    assert "retrying in 1 s" in text and "retrying in 2 s" in text
    assert "urn:ietf:params:acme:error:" in text, text[-3000:]
    st = cert_state(proxy, "f.test")
    assert st["state"] in ("retry_wait", "ordering") and st["orders_failed"] >= 2 and st["last_error"]
    with tlsutil.tls_connect(fixed_port, "fixed.test", tlsutil.client_context(pki.ca)) as s:
        tlsutil.tls_roundtrip(s, b"unaffected\n")
    phase, _, _ = tlsutil.tls_connect_expect_close(tls_port, "f.test", tlsutil.client_context(verify=False))
    assert phase == "handshake"

    config["acme"] = acme_config(dead, challenge_port, pki)
    config["routes"][0]["match"]["domains"] = ["g.test"]
    proxy.write_config(config)
    proxy.reload()

    def down(n):
        text = proxy.stderr_tail(200000)
        return text if text.count("certificate for g.test: ACME order failed") >= n else None
    text = sp.wait_until(lambda: down(2), 30, interval=0.2, msg="two failed attempts against a dead server")
    assert "cannot connect to 127.0.0.1" in text
    with tlsutil.tls_connect(fixed_port, "fixed.test", tlsutil.client_context(pki.ca)) as s:
        tlsutil.tls_roundtrip(s, b"still unaffected\n")
    assert "f.test" not in proxy.stats()["certificates"]["domains"]


# ---------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("extra,message", [
    ({"routes": [auto_route("w", 4443, "*.x.test", 9)], "certificates": {"store": "s"},
      "acme": {"directory": "https://127.0.0.1:1/dir"}},
     'route "w" (#1): match.domains: "*.x.test": a wildcard certificate cannot be obtained with ACME HTTP-01'),
    ({"routes": [auto_route("n", 4443, "x.test", 9)]},
     'certificates.store: required by certificate = "auto"'),
    ({"routes": [auto_route("a", 4443, "*", 9)], "certificates": {"store": "s"}},
     'route "a" (#1): action.tls.certificate: "auto" needs match.domains with names'),
    ({"routes": [auto_route("h", 4443, "x.test", 9)], "certificates": {"store": "s"},
      "acme": {"directory": "http://plain/dir"}},
     'acme.directory: expected an https:// URL'),
    ({"routes": [auto_route("t", 4443, "x.test", 9), route("tcp", 8081, "127.0.0.1", 9)],
      "certificates": {"store": "s"}, "acme": {"directory": "https://ca/dir", "challenge_port": 8081}},
     'acme.challenge_port: port 8081 only has byte-stream routes'),
    ({"routes": [auto_route("t", 4443, "x.test", 9)],
      "certificates": {"store": "s"}, "acme": {"directory": "https://ca/dir", "challenge_port": 4443}},
     'route "t" (#1): match.ports: port 4443 is acme.challenge_port: HTTP-01 needs plain HTTP there'),
])
def test_config_errors(tmp_path, extra, message):
    cfg = tmp_path / "proxy.lua"
    cfg.write_text("return " + sp.lua(extra) + "\n")
    r = run_cli("--check", cfg)
    assert r.returncode == 1, r.stdout
    assert message in r.stderr, r.stderr
