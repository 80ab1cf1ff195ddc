"""The admin dashboard (GET / on the admin endpoint): how it is served, and what headless
Chromium shows after known traffic, with and without metrics.token. Each test keeps a
screenshot of the page in its pytest tmp dir and names it in its output."""
import json
import os
import urllib.request

import pytest

import browser
import httputil as hu
import sp
import tlsutil

TOKEN = "dashboard-token-0123456789"


@pytest.fixture
def chromium(tmp_path):
    if not browser.CHROMIUM:
        pytest.skip("chromium (Debian's chromium, installed by .ci/deps) is missing")
    with browser.Chromium(str(tmp_path / "chromium")) as b:
        yield b


def admin(p, path, headers=None, method="GET"):
    """(status, headers, body) of one admin request."""
    req = urllib.request.Request(f"http://127.0.0.1:{p.metrics_port}{path}", headers=headers or {},
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def traffic_proxy(start_proxy, serve, tmp_path, **metrics):
    """A proxy with an HTTP route "web" (5 answers 200, 2 answer 503) and a terminating
    TLS route "secure" (no traffic: its certificate, valid 30 days, is on the page)."""
    app = hu.HttpBackend("A")
    backend = serve(app)
    web, secure = sp.free_ports(2)
    cert = tlsutil.PKI(tmp_path / "pki").leaf("secure.example.test")
    p = start_proxy({"metrics": metrics, "routes": [
        hu.http_route("web", web, "127.0.0.1", backend.port),
        tlsutil.tls_route("secure", secure, "127.0.0.1", backend.port, cert=cert)]})
    for path in ["/ok"] * 5 + ["/status?code=503"] * 2:
        hu.fetch(web, path)
    sp.wait_until(lambda: p.stats()["http"]["requests"] == 7, 10, msg="7 requests counted")
    return p


def show_traffic(b, p):
    """The page, opened and polled by Chromium, shows what traffic_proxy produced."""
    sp.wait_until(lambda: b.text("#requests-total") == "7", 30,
                  msg="the page to show 7 requests (the figures of /stats)")
    # route, ports, action, open, connections, bytes in, bytes out, 2xx, 3xx, 4xx, 5xx
    # (a response may be counted a moment after the client has it: wait for the poll
    # that shows them all)
    want = {0: "web", 2: "forward", 4: "7", 7: "5", 10: "2"}

    def web_row():
        cells = b.js("[...document.querySelectorAll('tr[data-route=web] td')].map(td => td.textContent)")
        return cells if cells and all(cells[i] == v for i, v in want.items()) else None
    sp.wait_until(web_row, 30, interval=0.2, msg=f"route web's row to read {want}")
    sp.wait_until(lambda: b.text("#resp-5xx") == "2" and b.text("#resp-2xx") == "5", 30,
                  msg="5 2xx and 2 5xx responses")
    days = b.js("document.querySelector('tr[data-cert=\"route secure\"] td:last-child').textContent")
    assert days in ("29", "30"), days
    assert b.text("tr[data-route=secure] td") == "secure"  # no traffic: listed from /routes


def keep_screenshot(b, tmp_path, name):
    # Wait for a third read of the figures, so the charts have a line, then keep the picture.
    b.wait_js("Number(document.body.dataset.polls) >= 3", msg="three polls")
    shot = b.screenshot(str(tmp_path / name))
    print(f"dashboard screenshot: {shot}")
    return shot


def test_dashboard_page_is_served_self_contained_with_a_strict_policy(start_proxy):
    p = start_proxy({"routes": [sp.route("r", sp.free_port(), "127.0.0.1", sp.free_port())]})
    status, h, page = admin(p, "/")
    assert status == 200 and h["Content-Type"] == "text/html; charset=utf-8", (status, h)
    csp = h["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    assert "script-src 'sha256-" in csp and "style-src 'sha256-" in csp, csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, csp
    assert h["X-Content-Type-Options"] == "nosniff" and h["Cache-Control"] == "no-cache", h
    # no external assets: nothing the page loads or links comes from elsewhere
    text = page.decode()
    for needle in ("src=", "http://", "https://", "@import", "url("):
        assert needle not in text, needle
    # the browser keeps it: the same ETag gets a 304 without a body
    status, h304, body = admin(p, "/", {"If-None-Match": h["ETag"]})
    assert status == 304 and body == b"" and h304["ETag"] == h["ETag"], (status, h304)
    # validators the endpoint does not keep (a list too long, two headers) are only a
    # hint: the page, not a 400, on / as on every path
    long_list = ", ".join(['"%016x"' % i for i in range(40)])
    for path in ("/", "/stats"):
        status, body = sp.http_get(p.metrics_port, path, headers=[f"If-None-Match: {long_list}"])
        assert status == 200 and (path != "/" or body == page), (path, status)
        status, body = sp.http_get(p.metrics_port, path, headers=[f"If-None-Match: {h['ETag']}",
                                                                  f"If-None-Match: {h['ETag']}"])
        assert status == 200 and (path != "/" or body == page), (path, status)
    status, _, body = admin(p, "/", method="HEAD")
    assert status == 200 and body == b""
    # Host is checked as on every path but /healthz
    status, _, _ = admin(p, "/", {"Host": "rebound.example"})
    assert status == 403
    sp.assert_clean(p)


def test_dashboard_in_chromium_shows_the_traffic(start_proxy, serve, chromium, tmp_path):
    p = traffic_proxy(start_proxy, serve, tmp_path)
    chromium.open(f"http://127.0.0.1:{p.metrics_port}/")
    show_traffic(chromium, p)
    keep_screenshot(chromium, tmp_path, "dashboard.png")
    assert chromium.errors() == []
    assert chromium.js("document.getElementById('login').hidden") is True


def test_dashboard_behind_token_asks_for_it_then_shows_data(start_proxy, serve, chromium, tmp_path):
    p = traffic_proxy(start_proxy, serve, tmp_path, token=TOKEN)
    status, _, page = admin(p, "/")
    assert status == 200, "the page itself loads without the token"
    assert admin(p, "/stats")[0] == 401
    chromium.open(f"http://127.0.0.1:{p.metrics_port}/")
    chromium.wait_js("!document.getElementById('login').hidden", msg="the token form")
    assert chromium.js("document.getElementById('dash').hidden") is True
    print(f"token form screenshot: {chromium.screenshot(str(tmp_path / 'dashboard-login.png'))}")

    def submit(token):
        chromium.js(f"document.getElementById('token').value = {json.dumps(token)}; "
                    f"document.getElementById('login-form').requestSubmit(); true")

    submit("not-the-token-at-all")
    chromium.wait_js("document.getElementById('login-why').textContent.includes('refused')",
                     msg="a refused token said so")
    submit(TOKEN)
    show_traffic(chromium, p)
    assert chromium.js("sessionStorage.getItem('smartproxy.token')") == TOKEN
    keep_screenshot(chromium, tmp_path, "dashboard-token.png")
    # The only errors: the browser logging the 401s that made the page ask (no token,
    # then the wrong one), on /stats, the first data call.
    unexpected = [e for e in chromium.errors()
                  if not ("status of 401" in e and e.endswith(f":{p.metrics_port}/stats"))]
    assert unexpected == []
    assert len(chromium.errors()) == 2
    # a reload while the page is open appears among the recent events
    status, _ = p.post_reload()
    assert status == 200
    chromium.wait_js("document.getElementById('events').textContent.includes('generation 2')", 30,
                     msg="the reload in the page's events")
    assert os.path.getsize(tmp_path / "dashboard-token.png") > 10000
