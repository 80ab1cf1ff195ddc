"""Mutual TLS (issue 20, first part): client certificates checked by terminating routes
(`tls.client_auth`: required/optional, a CA, a CRL), the key exchange groups a route
offers (`tls.groups`), and a client certificate presented to targets by re-encrypting
routes (`tls.upstream_cert`). Certificates come from CAs the test makes with `openssl
ca`, so dates and revocations are real."""
import subprocess
import textwrap
from pathlib import Path

import pytest

import sp
import tlsutil
from tlsutil import OPENSSL, tls_route


class ClientCA:
    """A CA for client certificates with an `openssl ca` database: issue (any validity
    window), revoke, and publish a CRL."""

    def __init__(self, dir, name):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self.dir / "ca.pem", self.dir / "ca.key"
        (self.dir / "index.txt").write_text("")
        (self.dir / "crlnumber").write_text("01\n")
        (self.dir / "serial").write_text("1000\n")
        self.cnf = self.dir / "ca.cnf"
        self.cnf.write_text(textwrap.dedent(f"""
            [ca]
            default_ca = test
            [test]
            dir = {self.dir}
            database = $dir/index.txt
            serial = $dir/serial
            crlnumber = $dir/crlnumber
            new_certs_dir = $dir
            certificate = $dir/ca.pem
            private_key = $dir/ca.key
            default_md = sha256
            default_crl_days = 30
            policy = anything
            unique_subject = no
            copy_extensions = none
            [anything]
            commonName = supplied
            [client]
            basicConstraints = CA:FALSE
            keyUsage = critical,digitalSignature
            extendedKeyUsage = clientAuth
        """))
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.key, "-out", self.cert, "-days", "30", "-subj", f"/CN={name}",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _run(self, *args):
        r = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode(errors="replace")

    def issue(self, cn, start="-1d", end="+30d"):
        """A client certificate valid from start to end: "+Nd"/"-Nd" from now, or an
        openssl ca date (YYMMDDHHMMSSZ)."""
        import datetime
        def date(s):
            if s[0] in "+-":
                d = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=int(s[:-1]))
                return d.strftime("%y%m%d%H%M%SZ")
            return s
        key, csr, cert = (self.dir / f"{cn}{ext}" for ext in (".key", ".csr", ".pem"))
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        self._run("ca", "-batch", "-config", self.cnf, "-extensions", "client", "-startdate", date(start),
                  "-enddate", date(end), "-in", csr, "-out", cert, "-notext")
        return cert, key

    def revoke(self, cert):
        self._run("ca", "-config", self.cnf, "-revoke", cert)

    def crl(self):
        out = self.dir / "crl.pem"
        self._run("ca", "-config", self.cnf, "-gencrl", "-out", out)
        return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return tlsutil.PKI(tmp_path_factory.mktemp("pki-mtls"))


@pytest.fixture(scope="module")
def cas(tmp_path_factory):
    base = tmp_path_factory.mktemp("client-cas")
    ours, theirs = ClientCA(base / "ours", "sp test client CA"), ClientCA(base / "theirs", "another CA")
    certs = {
        "good": ours.issue("alice"),
        "revoked": ours.issue("mallory"),
        "expired": ours.issue("bob", start="-20d", end="-10d"),
        "foreign": theirs.issue("eve"),
    }
    ours.revoke(certs["revoked"][0])
    return ours, certs, ours.crl()


def client_ctx(pki, cert=None):
    ctx = tlsutil.client_context(pki.ca)
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def mtls_proxy(start_proxy, serve, pki, ca, mode, crl=None):
    backend = serve(sp.echo)
    port = sp.free_port()
    auth = {"ca": str(ca.cert), "mode": mode}
    if crl:
        auth["crl"] = str(crl)
    r = tls_route("m", port, "127.0.0.1", backend.port, cert=pki.leaf("m.example.test"),
                  domains="m.example.test")
    r["action"]["tls"]["client_auth"] = auth
    return start_proxy({"routes": [r]}), port


def echoes(port, ctx):
    try:
        with tlsutil.tls_connect(port, "m.example.test", ctx) as s:
            tlsutil.tls_roundtrip(s, b"hello over mutual TLS")
            return True
    except (OSError, ConnectionError, AssertionError):
        return False


def test_required_client_certificates(start_proxy, serve, pki, cas):
    ca, certs, crl = cas
    p, port = mtls_proxy(start_proxy, serve, pki, ca, "required", crl)
    assert echoes(port, client_ctx(pki, certs["good"]))
    for name in ("revoked", "expired", "foreign"):
        assert not echoes(port, client_ctx(pki, certs[name])), f"a {name} client certificate was accepted"
    assert not echoes(port, client_ctx(pki)), "a client without a certificate was accepted"
    sp.assert_clean(p)


def test_optional_client_certificates(start_proxy, serve, pki, cas):
    ca, certs, _ = cas
    p, port = mtls_proxy(start_proxy, serve, pki, ca, "optional")
    assert echoes(port, client_ctx(pki))                     # none: fine
    assert echoes(port, client_ctx(pki, certs["good"]))      # a good one: fine
    assert not echoes(port, client_ctx(pki, certs["foreign"]))  # a bad one: never
    sp.assert_clean(p)


def test_groups_limit_the_key_exchange(start_proxy, serve, pki):
    backend = serve(sp.echo)
    port = sp.free_port()
    r = tls_route("g", port, "127.0.0.1", backend.port, cert=pki.leaf("g.example.test"), domains="g.example.test")
    r["action"]["tls"]["groups"] = "P-384"
    p = start_proxy({"routes": [r]})

    def handshake(groups):  # stdin at EOF: s_client leaves right after the handshake
        return subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                               "g.example.test", "-CAfile", str(pki.ca), "-verify_return_error",
                               "-groups", groups, "-brief"], input=b"", capture_output=True, timeout=15)
    ok = handshake("P-384")
    assert ok.returncode == 0 and b"secp384r1" in ok.stdout + ok.stderr, ok.stderr
    bad = handshake("X25519")
    assert bad.returncode != 0 and b"CONNECTION ESTABLISHED" not in bad.stderr, bad.stderr
    sp.assert_clean(p)


@pytest.mark.parametrize("field, value, want", [
    ("groups", "NOPE-1", 'action.tls.groups: this OpenSSL cannot use "NOPE-1"'),
    ("sigalgs", "RSA+NOPE", 'action.tls.sigalgs: this OpenSSL cannot use "RSA+NOPE"'),
    ("client_auth", {"ca": "/nonexistent/ca.pem"}, "action.tls.client_auth.ca: cannot load /nonexistent/ca.pem"),
    ("client_auth", {"ca": "x", "mode": "sometimes"}, 'action.tls.client_auth.mode: expected "required" or "optional"'),
    ("client_auth", {"mode": "required"}, "action.tls.client_auth.ca: required"),
])
def test_tls_option_errors_name_the_field(tmp_path, pki, field, value, want):
    r = tls_route("e", 9443, "127.0.0.1", 9, cert=pki.leaf("e.example.test"))
    r["action"]["tls"][field] = value
    path = tmp_path / "proxy.lua"
    path.write_text("return " + sp.lua({"routes": [r]}) + "\n")
    out = sp.run_cli("--check", path)
    assert out.returncode == 1 and want in out.stderr, out.stderr


def test_reencrypting_route_presents_a_client_certificate(start_proxy, pki, cas, tmp_path):
    ca, certs, _ = cas
    target = tlsutil.SServer(tmp_path / "s_server", pki.leaf("t.example.test"),
                             args=["-Verify", "1", "-CAfile", str(ca.cert)])
    try:
        port = sp.free_port()
        r = tls_route("re", port, "127.0.0.1", target.port, mode="terminate-and-reencrypt",
                      cert=pki.leaf("re.example.test"), domains="re.example.test")
        r["action"]["tls"].update(upstream_cert=str(certs["good"][0]), upstream_key=str(certs["good"][1]))
        p = start_proxy({"routes": [r]})
        with tlsutil.tls_connect(port, "re.example.test", client_ctx(pki)) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            page, _ = tlsutil.tls_read_to_close(s, 10)
        # s_server -www prints the verified client certificate's subject in its page
        assert b"CN = alice" in page or b"CN=alice" in page, page[-800:]
        sp.assert_clean(p)
    finally:
        target.close()
