"""The admin endpoint cannot be driven by a web page (README: Admin endpoint): a
non-loopback metrics.listen needs a token; POST needs a JSON content type or the
X-Smartproxy-Admin header; Host and Origin must name the endpoint (DNS rebinding).
Every request here is a raw HTTP/1.1 request on loopback, the way a browser would send it."""
import sp
from sp import route

TOKEN = "a-token-of-at-least-16-characters"


def ask(p, method, path, headers=(), body=b"", host=None):
    """One request to p's admin endpoint with exactly these headers, after Host (the
    endpoint's address unless host says otherwise; none when host is False); returns
    (status, {lowercased name: value}, body)."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is None:
        host = f"127.0.0.1:{p.metrics_port}"
    if host is not False:
        lines.append(f"Host: {host}")
    lines += list(headers)
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    with p.connect(p.metrics_port) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data, _ = sp.read_to_close(s, 10)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode().split("\r\n")
    names = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
    return int(status_line.split()[1]), names, rest


def reloads(p):
    s = p.stats()
    return s["reloads"], s["config_generation"]


def test_non_loopback_listen_without_token_is_a_config_error_at_check(tmp_path):
    port = sp.free_port()
    cfg = tmp_path / "proxy.lua"

    def check(metrics):
        cfg.write_text("return " + sp.lua({"metrics": metrics, "routes": []}) + "\n")
        return sp.run_cli("--check", cfg)

    for listen in (f"0.0.0.0:{port}", f"[::]:{port}", f"192.0.2.10:{port}", f"[2001:db8::1]:{port}"):
        r = check({"listen": listen})
        assert r.returncode == 1, f"{listen}: {r.stdout}{r.stderr}"
        assert f'{cfg}: metrics.listen: "{listen}" is not a loopback address; set metrics.token' in r.stderr
    for listen in (f"127.0.0.1:{port}", f"127.0.0.9:{port}", f"[::1]:{port}"):
        r = check({"listen": listen})
        assert r.returncode == 0, f"{listen}: {r.stderr}"
    r = check({"listen": f"0.0.0.0:{port}", "token": TOKEN})
    assert r.returncode == 0, r.stderr
    # metrics.hosts: exact names or IP literals, never a pattern that would switch the check off
    r = check({"listen": f"127.0.0.1:{port}", "hosts": ["admin.example.test", "10.0.0.5", "::1"]})
    assert r.returncode == 0, r.stderr
    for hosts, want in ((["*"], 'metrics.hosts[1]: expected one host name, not a pattern, got string "*"'),
                        (["ok.test", "*.example.test"], "metrics.hosts[2]: expected one host name, not a pattern"),
                        (["a b"], 'metrics.hosts[1]: expected a host name, got string "a b"'),
                        (["admin.test:9100"], "metrics.hosts[1]: expected a host name"),
                        ([7], "metrics.hosts[1]: expected a host name, got number 7"),
                        ([], "metrics.hosts: expected a non-empty list of host names")):
        r = check({"listen": f"127.0.0.1:{port}", "hosts": hosts})
        assert r.returncode == 1 and want in r.stderr, f"{hosts}: {r.stderr}"


def test_reload_into_a_non_loopback_listen_without_token_is_refused(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    config = {"routes": [route("echo", port, "127.0.0.1", backend.port)]}
    p = start_proxy(config)
    before = p.stats()
    # Proxy.full_config always sets its own loopback listen: write the bad file by hand
    bad = p.full_config(config)
    bad["metrics"] = {"listen": f"0.0.0.0:{p.metrics_port}"}
    p.write_text("return " + sp.lua(bad) + "\n")
    status, body = p.post_reload()
    assert status == 422, body
    assert f'metrics.listen: "0.0.0.0:{p.metrics_port}" is not a loopback address; set metrics.token' in body.decode()
    after = p.stats()
    assert after["reloads_failed"] == before["reloads_failed"] + 1
    assert after["config_generation"] == before["config_generation"]
    assert "reload rejected, generation 1 keeps serving" in p.stderr_tail()
    with p.connect(port) as c:  # the old configuration still serves
        sp.roundtrip(c, b"still here")
    # SIGHUP goes the same way
    assert p.reload() is False
    assert p.stats()["config_generation"] == before["config_generation"]
    sp.assert_clean(p)


def test_reload_cannot_move_the_admin_endpoint(start_proxy):
    """Its token and hosts would be checked against a place it is not: started on
    loopback, a reload naming another port (or no metrics at all) is refused."""
    config = {"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]}
    p = start_proxy(config)
    moved = p.full_config(config)
    other = f"127.0.0.1:{sp.free_port()}"
    moved["metrics"] = {"listen": other}
    p.write_text("return " + sp.lua(moved) + "\n")
    status, body = p.post_reload()
    assert status == 422, body
    assert (f'metrics.listen: the admin endpoint stays on "127.0.0.1:{p.metrics_port}" until a restart; '
            f'a reload cannot change it to "{other}"') in body.decode()
    del moved["metrics"]
    p.write_text("return " + sp.lua(moved) + "\n")
    status, body = p.post_reload()
    assert status == 422 and b"a reload cannot change it to none" in body, body
    assert reloads(p) == (0, 1)
    p.write_config(config)
    assert p.post_reload()[0] == 200 and reloads(p) == (1, 2)


def test_state_change_needs_json_or_the_admin_header(start_proxy):
    """What an HTML form or a simple cross-origin fetch can send is refused, and nothing
    reloads; a JSON content type or X-Smartproxy-Admin is accepted."""
    p = start_proxy({"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    simple = ([], ["Content-Type: application/x-www-form-urlencoded"], ["Content-Type: text/plain"],
              ["Content-Type: multipart/form-data; boundary=x"], ["Content-Type: application/jsonx"],
              ["Content-Type: text/plain; application/json"])
    for headers in simple:
        status, _, body = ask(p, "POST", "/reload", headers, body=b"a=1")
        assert status == 403, f"{headers}: {status} {body!r}"
        assert b"Content-Type: application/json or an X-Smartproxy-Admin header" in body
    assert reloads(p) == (0, 1)
    deliberate = (["Content-Type: application/json"], ["Content-Type: Application/JSON; charset=utf-8"],
                  ["X-Smartproxy-Admin: 1"], ["Content-Type: text/plain", "x-smartproxy-admin: yes"])
    for n, headers in enumerate(deliberate, 1):
        status, _, body = ask(p, "POST", "/reload", headers, body=b"{}")
        assert status == 200 and body == b"reloaded\n", f"{headers}: {status} {body!r}"
        assert reloads(p) == (n, 1 + n)


def test_each_path_takes_its_method_only(start_proxy):
    p = start_proxy({"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    for method in ("GET", "PUT", "DELETE", "OPTIONS"):  # OPTIONS: no CORS preflight is ever granted
        status, headers, _ = ask(p, method, "/reload", ["X-Smartproxy-Admin: 1"])
        assert status == 405 and headers.get("allow") == "POST", (method, status, headers)
        assert not any(k.startswith("access-control-") for k in headers)
    for path in ("/stats", "/metrics", "/routes", "/healthz"):
        status, headers, _ = ask(p, "POST", path, ["X-Smartproxy-Admin: 1"])
        assert status == 405 and headers.get("allow") == "GET, HEAD", (path, status, headers)
        status, headers, body = ask(p, "HEAD", path)
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0, (path, status)
    assert reloads(p) == (0, 1)


def test_host_must_name_the_endpoint(start_proxy):
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name as Host."""
    p = start_proxy({"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    mp = p.metrics_port
    for host in (f"evil.example:{mp}", "evil.example", f"127.0.0.1.evil.example:{mp}", f"127.0.0.2:{mp}",
                 f"[::1]:{mp}", f"localhost.evil.example:{mp}", "", "127.0.0.1:x"):
        for path in ("/stats", "/metrics", "/routes", "/nope"):
            status, _, body = ask(p, "GET", path, host=host)
            assert status == 403 and b"Host must name this endpoint" in body, (host, path, status, body)
        status, _, body = ask(p, "POST", "/reload", ["X-Smartproxy-Admin: 1"], host=host)
        assert status == 403, (host, status, body)
    assert ask(p, "GET", "/stats", host=False)[0] == 403  # no Host at all
    two_hosts = ask(p, "GET", "/stats", ["Host: evil.example"], host=f"127.0.0.1:{mp}")
    assert two_hosts[0] == 400
    assert reloads(p) == (0, 1)
    # the address, with or without a port, and localhost (the listen is loopback)
    for host in (f"127.0.0.1:{mp}", "127.0.0.1", "127.0.0.1:8080", f"localhost:{mp}", "LOCALHOST", "localhost."):
        assert ask(p, "GET", "/stats", host=host)[0] == 200, host
    assert ask(p, "POST", "/reload", ["X-Smartproxy-Admin: 1"], host=f"localhost:{mp}")[0] == 200
    assert reloads(p) == (1, 2)
    # /healthz says "ok" and nothing more: probes reach it whatever Host they send
    assert ask(p, "GET", "/healthz", host=f"evil.example:{mp}")[0] == 200


def test_origin_must_name_the_endpoint(start_proxy):
    p = start_proxy({"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    mp = p.metrics_port
    for origin in ("http://evil.example", f"http://evil.example:{mp}", "https://evil.example", "null",
                   "file://", f"http://127.0.0.1:{mp}/path", "evil.example"):
        status, _, body = ask(p, "GET", "/stats", [f"Origin: {origin}"])
        assert status == 403 and b"Origin must name this endpoint" in body, (origin, status, body)
        status, _, _ = ask(p, "POST", "/reload", [f"Origin: {origin}", "Content-Type: application/json"])
        assert status == 403, origin
    assert reloads(p) == (0, 1)
    for origin in (f"http://127.0.0.1:{mp}", "http://127.0.0.1", f"http://localhost:{mp}"):
        assert ask(p, "GET", "/stats", [f"Origin: {origin}"])[0] == 200, origin
    status, _, body = ask(p, "POST", "/reload", [f"Origin: http://127.0.0.1:{mp}", "X-Smartproxy-Admin: 1"])
    assert status == 200, body
    assert reloads(p) == (1, 2)


def test_metrics_hosts_names_the_endpoint_too(start_proxy):
    """An operator reaching the endpoint through a name lists it; the token still applies."""
    p = start_proxy({"metrics": {"hosts": ["admin.example.test"], "token": TOKEN},
                     "routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    auth = f"Authorization: Bearer {TOKEN}"
    for host in ("admin.example.test", f"Admin.Example.Test:{p.metrics_port}", "admin.example.test:443"):
        status, _, body = ask(p, "GET", "/stats", [auth], host=host)
        assert status == 200 and b'"config_generation"' in body, (host, status)
    status, _, _ = ask(p, "GET", "/stats", [auth, "Origin: https://admin.example.test"], host="admin.example.test")
    assert status == 200
    assert ask(p, "GET", "/stats", host="admin.example.test")[0] == 401  # a name is not a token
    for host in ("other.example.test", "x.admin.example.test", "admin.example.test.evil.example"):
        assert ask(p, "GET", "/stats", [auth], host=host)[0] == 403, host
    status, _, body = ask(p, "POST", "/reload", [auth, "X-Smartproxy-Admin: 1"], host="admin.example.test")
    assert status == 200, body
    assert reloads(p) == (1, 2)
    # the list follows reloads: without it the name is refused again
    p.write_config({"metrics": {"token": TOKEN}, "routes": [route("r", sp.free_port(), "127.0.0.1", 9)]})
    assert p.post_reload()[0] == 200
    assert ask(p, "GET", "/stats", [auth], host="admin.example.test")[0] == 403
    assert b"Host must name this endpoint" in ask(p, "GET", "/routes", [auth], host="admin.example.test")[2]
