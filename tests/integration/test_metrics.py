"""The admin endpoint's Prometheus text: valid for promtool, and the figures agree with
/stats after known traffic."""
import re
import shutil
import subprocess
import urllib.request

import pytest

import sp
from sp import route


def metrics(p):
    with urllib.request.urlopen(f"http://127.0.0.1:{p.metrics_port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$"
    m = re.search(pattern, text, re.M)
    assert m, f"{name}{{{want}}} missing from /metrics"
    return float(m.group(1))


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian's prometheus) not installed")
def test_metrics_pass_promtool_and_match_traffic(start_proxy, serve):
    backend = serve(sp.echo)
    port, dead = sp.free_port(), sp.free_port()
    p = start_proxy({"routes": [route("echo", port, "127.0.0.1", backend.port),
                                route("dead", dead, "127.0.0.1", sp.free_port())]})
    for _ in range(3):
        with p.connect(port) as c:
            sp.roundtrip(c, b"x" * 1000)
    with p.connect(dead) as c:
        sp.wait_closed(c, 5)
    held = p.connect(port, src="127.0.0.7")
    sp.roundtrip(held, b"held open")
    sp.wait_until(lambda: p.stats()["terminations"]["connect_refused"] == 1, 5, msg="refused counted")
    text = metrics(p)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert value(text, "smartproxy_connections_total") == 5
    assert value(text, "smartproxy_connections_active") == 1
    assert value(text, "smartproxy_connections_ended_total", reason="connect_refused") == 1
    assert value(text, "smartproxy_received_bytes_total", **{"from": "client"}) >= 3000
    assert value(text, "smartproxy_client_connections_active", client_ip="127.0.0.7") == 1
    assert value(text, "smartproxy_config_generation") == 1
    assert value(text, "smartproxy_route_connections_total", route="echo") == 4
    assert value(text, "smartproxy_route_connections_active", route="echo") == 1
    assert value(text, "smartproxy_route_connections_total", route="dead") == 1
    assert value(text, "smartproxy_route_received_bytes_total", route="echo", **{"from": "client"}) == 3000
    # 4 connects succeeded (the dead route's was refused): the histogram counts them
    assert value(text, "smartproxy_upstream_connect_duration_seconds_count") == 4
    assert value(text, "smartproxy_upstream_connect_duration_seconds_bucket", le="+Inf") == 4
    assert 0 < value(text, "smartproxy_upstream_connect_duration_seconds_sum") < 4
    sp.wait_until(lambda: value(metrics(p), "smartproxy_connections_per_second") > 0, 5,
                  msg="a connection rate over the sliding window")
    held.close()
    sp.assert_clean(p)


def test_access_log_file_json_lines_and_reopen_on_sigusr1(start_proxy, serve, tmp_path):
    import json
    import os
    import signal
    backend = serve(sp.echo)
    port = sp.free_port()
    log = tmp_path / "access.log"
    p = start_proxy({"log": {"access": str(log)}, "routes": [route("logged", port, "127.0.0.1", backend.port)]},
                    args=["--log-format", "json"])
    with p.connect(port, src="127.0.0.3") as c:
        sp.roundtrip(c, b"12345")
    line = sp.wait_until(lambda: log.exists() and log.read_text().strip(), 5, msg="an access line")
    entry = json.loads(line.splitlines()[0])
    assert entry["type"] == "access" and entry["route"] == "logged"
    assert entry["client_ip"] == "127.0.0.3" and entry["port"] == port
    assert entry["bytes_in"] == 5 and entry["bytes_out"] == 5 and entry["end"] == "client_closed"
    assert entry["target"] == f"127.0.0.1:{backend.port}"

    os.rename(log, tmp_path / "access.log.1")  # what logrotate does, then SIGUSR1
    p.proc.send_signal(signal.SIGUSR1)
    sp.wait_until(log.exists, 5, msg="the access log reopened")
    with p.connect(port) as c:
        sp.roundtrip(c, b"after rotation")
    sp.wait_until(lambda: log.read_text().count("\n") == 1, 5, msg="the new line in the new file")
    assert (tmp_path / "access.log.1").read_text().count("\n") == 1
    sp.assert_clean(p)


def test_bytes_a_lua_handler_sends_are_counted(start_proxy, tmp_path):
    """`out` is what was sent to the client, whatever produced it: a socket handler's
    writes and an http_server's responses count in the access log, /stats and /metrics."""
    import json
    from sp import Lua
    echo, web = sp.free_ports(2)
    log = tmp_path / "access.log"
    p = start_proxy({"log": {"access": str(log)}, "routes": [
        {"name": "echo", "match": {"ports": echo}, "action": {"type": "socket-handler", "handler": Lua(
            'function(sock) local l = sock:read("*l") sock:write(l .. l .. "\\n") end')}},
        {"name": "web", "match": {"ports": web}, "action": {"type": "socket-handler", "handler": Lua(
            'require("smartproxy").handlers.http_server(function(req, res) res.body = ("x"):rep(1000) end)')}},
    ]}, args=["--log-format", "json"])
    before = p.stats()
    with p.connect(echo) as c:
        c.sendall(b"12345\n")
        assert sp.recv_line(c) == b"1234512345\n"
    request = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    with p.connect(web) as c:
        c.sendall(request)
        response = sp.read_to_close(c)[0]
    assert response.endswith(b"x" * 1000)
    lines = sp.wait_until(lambda: log.exists() and log.read_text().count("\n") >= 2 and log.read_text(),
                          5, msg="two access lines")
    entries = {e["route"]: e for e in map(json.loads, lines.splitlines())}
    assert entries["echo"]["bytes_in"] == 6 and entries["echo"]["bytes_out"] == 11
    assert entries["web"]["bytes_in"] == len(request) and entries["web"]["bytes_out"] == len(response)
    after = p.stats()
    assert after["bytes_to_clients"] - before["bytes_to_clients"] == 11 + len(response)
    assert after["bytes_from_clients"] - before["bytes_from_clients"] == 6 + len(request)
    metrics = sp.http_get(p.metrics_port, "/metrics")[1].decode()
    assert f'smartproxy_sent_bytes_total{{to="client"}} {after["bytes_to_clients"]}' in metrics
    sp.assert_clean(p)


def test_admin_token_guards_everything_but_healthz(start_proxy):
    import urllib.error
    token = "s3cret-token-of-some-length"
    p = start_proxy({"metrics": {"token": token}, "routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    base = f"http://127.0.0.1:{p.metrics_port}"

    def get(path, auth=None, method="GET"):
        req = urllib.request.Request(base + path, method=method)
        if auth:
            req.add_header("Authorization", auth)
        if method == "POST":
            req.add_header(*sp.ADMIN_HEADER.split(": "))
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert get("/healthz") == 200
    for path in ("/stats", "/metrics", "/routes"):
        assert get(path) == 401
        assert get(path, "Bearer wrong-token-of-some-length") == 401
        assert get(path, f"Bearer {token}") == 200
    assert get("/reload", method="POST") == 401
    assert get("/reload", f"Bearer {token}", method="POST") == 200


def test_error_log_is_rate_limited_under_a_flood(start_proxy):
    port = sp.free_port()
    # every connection from 127.0.0.9 finds no route: one log line each, until the limit
    p = start_proxy({"log": {"access": False},
                     "routes": [route("only", port, "127.0.0.1", 9, client_ip="127.0.0.2")]})
    for _ in range(3000):
        with p.connect(port, src="127.0.0.9") as c:
            c.close()
    sp.wait_until(lambda: p.stats()["terminations"]["no_route"] == 3000, 20, msg="all counted")
    with p.connect(port, src="127.0.0.9"):  # after the flood: the next line reports the drop
        pass
    text = sp.wait_until(lambda: "suppressed" in p.stderr_tail(10**7) and p.stderr_tail(10**7), 10,
                         msg="a suppressed-lines report")
    lines = [l for l in text.splitlines() if "no route matched" in l]
    assert len(lines) < 2600, f"{len(lines)} lines for 3000 refused connections: not limited"
    sp.assert_clean(p)


def test_certificate_expiry_is_exported(start_proxy, tmp_path):
    import ssl
    import tlsutil
    leaf = tlsutil.PKI(tmp_path / "pki").leaf("a.example.test", "ecdsa")
    p = start_proxy({"routes": [tlsutil.tls_route("shop", sp.free_port(), "127.0.0.1", 9, cert=leaf)]})
    end = subprocess.run(["openssl", "x509", "-in", str(leaf.cert), "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    want = ssl.cert_time_to_seconds(end)
    assert value(metrics(p), "smartproxy_certificate_expiry_timestamp_seconds", route="shop") == want


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian's prometheus) not installed")
def test_http_figures_in_metrics_and_stats(start_proxy, serve):
    """HTTP requests by route and status class, local answers by reason, the request
    duration histogram, upstream reuse and the request rate, after known traffic."""
    import http.client

    def app(conn, srv):
        f = conn.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            while f.readline() not in (b"\r\n", b""):
                pass
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    backend = serve(app)
    port = sp.free_port()
    p = start_proxy({"routes": [
        {"name": "web", "match": {"ports": port, "path": "/app/*"},
         "action": {"type": "forward", "protocol": "http",
                    "target": {"host": "127.0.0.1", "port": backend.port}}}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(5):
        conn.request("GET", "/app/x")
        assert conn.getresponse().read() == b"ok"
    for _ in range(2):
        conn.request("GET", "/elsewhere")
        r404 = conn.getresponse()
        assert r404.status == 404 and r404.read().startswith(b"404")
    conn.close()
    sp.wait_until(lambda: p.stats()["http"]["responses"]["4xx"] == 2, 5, msg="the 404s counted")
    text = metrics(p)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert value(text, "smartproxy_http_requests_total") == 7
    assert value(text, "smartproxy_http_responses_total", code="2xx") == 5
    assert value(text, "smartproxy_http_local_responses_total", reason="no_route") == 2
    assert value(text, "smartproxy_http_route_responses_total", route="web", code="2xx") == 5
    assert value(text, "smartproxy_http_request_duration_seconds_count", route="web") == 5
    assert value(text, "smartproxy_http_request_duration_seconds_bucket", route="web", le="+Inf") == 5
    assert value(text, "smartproxy_http_upstream_connections_total", kind="opened") == 1
    assert value(text, "smartproxy_http_upstream_connections_total", kind="reused") == 4
    s = p.stats()["http"]
    assert s["requests"] == 7 and s["local"]["no_route"] == 2 and s["upstream_connections_reused"] == 4
    sp.wait_until(lambda: value(metrics(p), "smartproxy_http_requests_per_second") > 0, 5,
                  msg="a request rate over the sliding window")
    backend.close()  # the pooled upstream connection ends with it
    sp.assert_clean(p)
