"""Every example config is valid, and the quickstart does what the README says."""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

import sp

EXAMPLES = sorted((sp.REPO / "examples").glob("*.lua"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check(example):
    if "forwarding_engine" in example.read_text() and os.geteuid() != 0:
        pytest.skip("kernel forwarding: --check asks the kernel for a dry run, which needs CAP_NET_ADMIN")
    r = subprocess.run([sp.BIN, "--check", example.name], cwd=example.parent,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def listenable(port):
    """Could a server (with SO_REUSEADDR, as smartproxy sets) listen on this port?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.skipif(not (listenable(8080) and listenable(9100)),
                    reason="the quickstart's fixed ports 8080/9100 are taken on this machine")
def test_quickstart_serves_stats_through_the_proxy(tmp_path):
    err = open(tmp_path / "stderr.log", "wb")
    proc = subprocess.Popen([sp.BIN, str(sp.REPO / "examples" / "quickstart.lua")],
                            stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    try:
        def stats():
            with urllib.request.urlopen("http://127.0.0.1:8080/stats", timeout=2) as r:
                return json.loads(r.read())
        s = sp.wait_until(stats, 10, msg="the quickstart answering on 8080")
        assert s["total_connections"] >= 1 and s["config_generation"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


class Example:
    """An example config run as is (its fixed ports must be free)."""

    def __init__(self, name, tmp_path, ports):
        if not all(listenable(p) for p in ports):
            pytest.skip(f"{name}: its fixed ports {ports} are taken on this machine")
        self.err = open(tmp_path / f"{name}.stderr", "wb")
        self.proc = subprocess.Popen([sp.BIN, name], cwd=sp.REPO / "examples", stdout=self.err,
                                     stderr=self.err, stdin=subprocess.DEVNULL)
        sp.wait_until(lambda: all(not listenable(p) for p in ports), 10, msg=f"{name} listening")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(10) == 0


def ask(port, *lines):
    """Sends each line on its own connection; returns the first reply line of each."""
    out = []
    for line in lines:
        with sp.connect(port) as c:
            c.sendall(line.encode() + b"\r\n")
            out.append(sp.recv_line(c).decode().strip())
    return out


@pytest.fixture
def examples(tmp_path):
    started = []

    def start(name, ports):
        ex = Example(name, tmp_path, ports)
        started.append(ex)
        return ex
    yield start
    for ex in started:
        if ex.proc.poll() is None:
            ex.stop()


def test_line_protocol_example_shares_its_store_across_workers(examples):
    ex = examples("line-protocol.lua", [7001, 9102])
    # one connection per command: they land on both workers, and see one store
    assert ask(7001, "SET greeting hello world", "GET greeting") == ["OK", "VALUE hello world"]
    assert ask(7001, *["INCR visits"] * 6)[-1] == "6"
    assert ask(7001, "DEL greeting", "GET greeting", "NOPE") == ["1", "NIL", "ERR unknown command NOPE"]
    ex.stop()


def test_echo_and_custom_router_examples(examples):
    examples("echo.lua", [7000, 9101])
    examples("custom-router.lua", [7100, 9104])
    with sp.connect(7000) as c:
        sp.roundtrip(c, b"straight to echo\n")
    with sp.connect(7100) as c:  # not SSH, not HTTP: routed to the echo example
        sp.roundtrip(c, b"hello through the router\n")


def test_smtp_gateway_example_greets_first_then_relays(examples, serve):
    if not listenable(2526):
        pytest.skip("port 2526 (the example's SMTP backend) is taken")
    seen = []

    def smtp(conn, srv):
        conn.sendall(b"220 backend ready\r\n")
        line = conn.makefile("rb").readline()
        seen.append(line)
        conn.sendall(b"250 backend says hi\r\n")
    serve(smtp, port=2526)
    examples("smtp-gateway.lua", [2525, 9103])
    with sp.connect(2525) as c:
        greeting = sp.recv_line(c).decode()
        assert greeting.startswith("220 ") and "smartproxy" in greeting
        c.sendall(b"EHLO me\r\n")
        assert sp.recv_line(c).decode().startswith("250 backend says hi")
    assert seen == [b"EHLO me\r\n"]


def test_rock_installs_into_a_tree_and_loads(tmp_path):
    if not shutil.which("luarocks"):
        pytest.skip("luarocks not installed")
    tree = tmp_path / "tree"
    r = subprocess.run(["luarocks", "make", "--lua-version", "5.1", "--tree", str(tree),
                        "rocks/smartproxy-scm-1.rockspec"], cwd=sp.REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lua = (f'package.path = "{tree}/share/lua/5.1/?.lua;{tree}/share/lua/5.1/?/init.lua;" .. package.path '
           'local sp = require "smartproxy" '
           'assert(type(sp.http_route) == "function" and type(sp.handlers.echo) == "function") '
           'print(package.searchpath("smartproxy", package.path))')
    r = subprocess.run(["luajit", "-e", lua], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert str(tree) in r.stdout


def test_http_gateway_example(examples):
    examples("http-gateway.lua", [8082, 9105])

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None
    opener = urllib.request.build_opener(NoRedirect)

    def get(path, headers=None):
        req = urllib.request.Request(f"http://127.0.0.1:8082{path}", headers=headers or {})
        try:
            with opener.open(req, timeout=5) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    status, headers, body = get("/api/stats")
    assert status == 200 and headers["X-Served-By"] == "smartproxy stats"
    assert json.loads(body)["config_generation"] == 1
    status, headers, body = get("/private/x")
    assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="private"')
    auth = "Basic " + base64.b64encode(b"admin:change-me").decode()
    assert get("/private/x", {"Authorization": auth})[0] == 200
    codes = [get("/limited")[0] for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert get("/.git/config")[0] == 403
    status, headers, _ = get("/old/anything")
    assert status == 308 and headers["Location"] == "http://127.0.0.1:8082/api/stats"
    status, _, body = get("/nothing-here")
    assert status == 404 and body.startswith(b"404")


def test_route_helpers_example(examples):
    """Every route helper, run as the example's header comment says (curl, with --resolve
    instead of relying on *.localhost resolving)."""
    ports = [8400, 8401, 8402, 8443, 8444, 8480, 9106]
    ex = examples("route-helpers.lua", ports)
    ca = str(sp.REPO / "examples" / "certs" / "localhost" / "fullchain.pem")

    def curl(url, *args):
        host = url.split("/")[2]
        name, port = host.rsplit(":", 1)
        r = subprocess.run(["curl", "-sS", "-i", "--max-time", "5", "--cacert", ca,
                            "--resolve", f"{name}:{port}:127.0.0.1", *args, url],
                           capture_output=True, timeout=10)  # bytes: text mode eats \r
        assert r.returncode == 0, r.stderr
        head, _, body = r.stdout.decode().partition("\r\n\r\n")
        return head, body

    head, body = curl("http://app.localhost:8400/x")
    assert body == "backend A: /x\n" and "\r\nX-Route: app" in head
    # one worker: requests alternate between the two backends
    assert [curl("http://127.0.0.1:8400/y")[1] for _ in range(4)] == \
        ["backend A: /y\n", "backend B: /y\n"] * 2
    assert curl("https://localhost:8443/p")[1] == "backend A: /p\n"
    head, _ = curl("http://localhost:8480/p")
    assert head.startswith("HTTP/1.1 301") and "\r\nLocation: https://localhost:8443/p" in head
    assert curl("https://api.localhost:8443/q")[1] == "backend B: /q\n"
    head, _ = curl("http://api.localhost:8480/q")
    assert "\r\nLocation: https://api.localhost:8443/q" in head
    # passthrough: the TLS of secure.localhost reaches 8444 undecrypted and is ended there
    assert curl("https://secure.localhost:8443/z")[1] == "backend B: /z\n"
    ex.stop()
    log = open(ex.err.name, errors="replace").read()
    relayed = [ln for ln in log.splitlines() if " access " in ln and " route=secure " in ln]
    assert relayed and " tls=- " in relayed[0] and "target=127.0.0.1:8444" in relayed[0], log
    assert " route=secure-backend " in log and " tls=TLSv1.3 " in log
