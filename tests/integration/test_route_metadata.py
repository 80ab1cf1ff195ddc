"""Route metadata (issue 21): description and tags for people and GET /routes?tag=, and
enabled = false, which keeps a route validated and listed but never chosen (its port is
not even bound when no other route uses it), until a reload enables it again."""
import json
import socket

import sp
from sp import lua, route, run_cli


def config(port_a, port_b, backend_port, enabled):
    a = route("edge-api", port_a, "127.0.0.1", backend_port)
    a.update(description="the public API, by way of the edge", tags=["edge", "api"])
    b = route("beta", port_b, "127.0.0.1", backend_port)
    b.update(enabled=enabled, tags="beta")
    return {"routes": [a, b]}


def routes(p, query=""):
    status, body = sp.http_get(p.metrics_port, "/routes" + query, token=p.admin_token())
    assert status == 200, body
    return json.loads(body)["routes"]


def test_disabled_route_is_listed_but_never_chosen_until_enabled(start_proxy, serve):
    backend = serve(sp.echo)
    port_a, port_b = sp.free_ports(2)
    p = start_proxy(config(port_a, port_b, backend.port, enabled=False))

    with sp.connect(port_a) as s:
        sp.roundtrip(s, b"through the enabled route")
    try:
        sp.connect(port_b).close()
        raise AssertionError(f"port {port_b} of the disabled route accepted a connection")
    except ConnectionRefusedError:
        pass

    listed = {r["name"]: r for r in routes(p)}
    assert listed["edge-api"]["enabled"] is True
    assert listed["edge-api"]["description"] == "the public API, by way of the edge"
    assert listed["edge-api"]["tags"] == ["edge", "api"]
    assert listed["beta"]["enabled"] is False and listed["beta"]["description"] is None
    assert [r["name"] for r in routes(p, "?tag=edge")] == ["edge-api"]
    assert [r["name"] for r in routes(p, "?tag=beta")] == ["beta"]
    assert routes(p, "?tag=nothing") == []
    assert [r["name"] for r in routes(p, "?x=1&tag=api")] == ["edge-api"]

    p.write_config(config(port_a, port_b, backend.port, enabled=True))
    assert p.reload()
    with sp.connect(port_b) as s:
        sp.roundtrip(s, b"through the route a reload enabled")
    assert all(r["enabled"] for r in routes(p))
    sp.assert_clean(p)


def test_check_and_explain_show_disabled_routes(tmp_path):
    port_a, port_b = sp.free_ports(2)
    cfg = config(port_a, port_b, 9, enabled=False)
    cfg["routes"][1]["match"]["ports"] = port_a  # same port: a candidate that is switched off
    path = tmp_path / "proxy.lua"
    path.write_text("return " + lua(cfg) + "\n")
    r = run_cli("--check", path)
    assert r.returncode == 0, r.stderr
    assert f"#2 beta (priority 0, disabled) ports {port_a}" in r.stdout, r.stdout
    out = json.loads(run_cli("--check", "--format", "json", path).stdout)
    assert [(x["name"], x["enabled"]) for x in out["routes"]] == [("edge-api", True), ("beta", False)]
    assert out["warnings"] == []  # a disabled route is not "never winning"
    r = run_cli("--explain", "--port", str(port_a), path)
    assert r.returncode == 0, r.stderr
    assert 'route "edge-api" (#1, priority 0): wins' in r.stdout, r.stdout
    assert 'route "beta" (#2, priority 0): disabled (enabled = false)' in r.stdout, r.stdout


def test_metadata_errors_name_the_field(tmp_path):
    for bad, want in (({"tags": ["a b"]}, 'route "x" (#1): tags[1]: expected tags of 1 to 64 characters'),
                      ({"tags": 5}, 'route "x" (#1): tags: expected a tag or a list of tags'),
                      ({"description": 7}, 'route "x" (#1): description: expected a string'),
                      ({"enabled": "no"}, 'route "x" (#1): enabled: expected a boolean')):
        r = route("x", 9999, "127.0.0.1", 9)
        r.update(bad)
        path = tmp_path / "bad.lua"
        path.write_text("return " + lua({"routes": [r]}) + "\n")
        out = run_cli("--check", path)
        assert out.returncode == 1 and want in out.stderr, (bad, out.stderr)
