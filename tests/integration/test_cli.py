"""The command line: help, version, --check, configuration errors, exit statuses."""
import json
import re
import socket
import textwrap

import pytest

import sp
from sp import lua, route, run_cli


def write(tmp_path, text, name="proxy.lua"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def valid_config(ports=(18081, 18082)):
    return "return " + lua({"routes": [
        route("api", ports[0], "127.0.0.1", 9001),
        route("web", {"from": ports[1], "to": ports[1] + 2}, "127.0.0.1", "preserve"),
    ]}) + "\n"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    r = run_cli(flag)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for opt in ("--check", "--workers", "--watch", "--log-level", "--log-format", "--version"):
        assert opt in out, f"{opt} missing from help:\n{out}"


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_names_linked_libraries(flag):
    r = run_cli(flag)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert re.search(r"smartproxy\D*\d+\.\d+", out, re.I), out
    for lib in ("LuaJIT", "libuv", "OpenSSL"):
        assert re.search(re.escape(lib) + r"\D{0,20}\d+\.\d+", out, re.I), \
            f"{lib} version missing:\n{out}"


def test_unknown_option_fails():
    r = run_cli("--no-such-option")
    assert r.returncode != 0
    assert r.stderr.strip(), "an unknown option must say so on stderr"


def test_check_valid_config_prints_summary(tmp_path):
    path = write(tmp_path, valid_config())
    for flag in ("-t", "--check"):
        r = run_cli(flag, path)
        assert r.returncode == 0, r.stderr
        out = r.stdout + r.stderr
        for word in ("api", "web", "18081", "18082"):
            assert word in out, f"{word!r} missing from the --check summary:\n{out}"


def shadowing_config(ports):
    http = route("web", ports[1], "127.0.0.1", 9002, priority=1)
    http["action"]["protocol"] = "http"
    return "return " + lua({"routes": [
        route("all", ports[0], "127.0.0.1", 9001),
        route("never", ports[0], "127.0.0.1", 9001),
        http,
        route("raw", ports[1], "127.0.0.1", 9003, priority=5),
    ]}) + "\n"


def test_check_warns_about_likely_mistakes(tmp_path):
    ports = (sp.free_port(), sp.free_port())
    r = run_cli("--check", write(tmp_path, shadowing_config(ports)))
    assert r.returncode == 0, r.stderr
    warnings = r.stdout.split("warnings:\n", 1)[1].splitlines()
    assert warnings == [
        '  route "never" (#2) never wins: route "all" (#1, priority 0) matches everything it matches '
        'and is chosen first',
        f'  port {ports[1]}: stream route "raw" (#4, priority 5) is chosen before HTTP route "web" '
        '(#3, priority 1) for the requests it matches, and then keeps the whole connection; give the '
        'HTTP routes a higher priority if requests should reach them'], r.stdout
    assert "warnings:" not in run_cli("--check", write(tmp_path, valid_config(), "ok.lua")).stdout


def test_check_format_json(tmp_path):
    ports = (sp.free_port(), sp.free_port())
    r = run_cli("--check", "--format", "json", write(tmp_path, shadowing_config(ports)))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True and out["ports"] == sorted(ports)
    assert [x["name"] for x in out["routes"]] == ["all", "never", "web", "raw"]
    web = out["routes"][2]
    assert web == {"name": "web", "index": 3, "priority": 1, "enabled": True, "description": None,
                   "tags": [], "ports": [[ports[1], ports[1]]],
                   "protocol": "http", "tls": None, "domains": [], "action": "forward",
                   "targets": [{"host": "127.0.0.1", "port": 9002}]}, web
    assert [w["route"] for w in out["warnings"]] == ["never", "raw"]
    assert out["warnings"][0]["message"].startswith('route "never" (#2) never wins')

    r = run_cli("--check", "--format", "json", write(tmp_path, "return { routes = 1 }", "bad.lua"))
    assert r.returncode == 1
    err = json.loads(r.stdout)
    assert err["ok"] is False and "routes" in err["error"], err
    r = run_cli("--check", "--format", "yaml", write(tmp_path, valid_config(), "ok.lua"))
    assert r.returncode == 1 and "--format" in r.stderr


def test_check_warns_about_expiring_certificates(tmp_path):
    import tlsutil
    pki = tlsutil.PKI(tmp_path / "pki")
    soon, later = pki.leaf("soon.example.test", days=5), pki.leaf("later.example.test", days=60)
    port = sp.free_port()
    routes = [tlsutil.tls_route(name, port, "127.0.0.1", 9001, cert=c, domains=f"{name}.example.test")
              for name, c in (("soon", soon), ("later", later))]
    r = run_cli("--check", "--format", "json", write(tmp_path, "return " + lua({"routes": routes}) + "\n"))
    assert r.returncode == 0, r.stderr
    warnings = json.loads(r.stdout)["warnings"]
    assert len(warnings) == 1 and warnings[0]["route"] == "soon", warnings
    assert re.fullmatch(r'route "soon" \(#1\): its certificate expires in [45] days', warnings[0]["message"])


def test_check_defaults_to_proxy_lua_in_cwd(tmp_path):
    write(tmp_path, valid_config())
    r = run_cli("--check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "api" in r.stdout + r.stderr


def test_check_does_not_bind_ports(tmp_path):
    """`smartproxy -t` is run next to the live proxy before a reload: it must not need
    the ports the running instance holds."""
    port = sp.free_port()
    path = write(tmp_path, valid_config((port, 18090)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        r = run_cli("--check", path)
    assert r.returncode == 0, r.stderr


# Each case: (config text, substrings the error must contain). The file is always
# proxy.lua; a route error names the route ("name" and #index, from 1) and the field.
OK_ROUTE = '{ name = "ok", match = { ports = 18100 }, action = { type = "forward", ' \
           'target = { host = "127.0.0.1", port = 9000 } } }'


def routes_cfg(*routes, extra=""):
    return "return {\n  routes = {\n    " + ",\n    ".join(routes) + "\n  },\n" + extra + "}\n"


def bad_route(name="api", match="ports = 18200", target='host = "127.0.0.1", port = 9000',
              extra=""):
    return (f'{{ name = "{name}", match = {{ {match} }}, '
            f'action = {{ type = "forward", target = {{ {target} }} }}{extra} }}')


CONFIG_ERRORS = {
    "syntax_error": ("return {\n  routes = {},\n  workers = = 2,\n}\n", ["proxy.lua:3"]),
    "runtime_error": ('local t = {}\nerror("custom failure")\nreturn { routes = {} }\n',
                      ["proxy.lua:2", "custom failure"]),
    "index_nil": ("local x\nlocal y = x.field\nreturn { routes = {} }\n", ["proxy.lua:2"]),
    "returns_number": ("return 42\n", ["proxy.lua", "table"]),
    "returns_nothing": ("local x = 1\n", ["proxy.lua", "table"]),
    "missing_routes": ("return { workers = 1 }\n", ["proxy.lua", "routes"]),
    "unknown_top_level_key": (routes_cfg(OK_ROUTE, extra="  wrokers = 2,\n"),
                              ["proxy.lua", "wrokers"]),
    "unknown_route_key": (routes_cfg(OK_ROUTE, bad_route(extra=", prio = 3")),
                          ["proxy.lua", '"api"', "#2", "prio"]),
    "unknown_match_key": (routes_cfg(bad_route(match="ports = 18200, prots = 1")),
                          ["proxy.lua", '"api"', "#1", "prots"]),
    "ports_wrong_type": (routes_cfg(OK_ROUTE, bad_route(name="x"), bad_route(match='ports = "abc"')),
                         ['proxy.lua: route "api" (#3): match.ports: expected a port, a range '
                          'or a list, got string "abc"']),
    "port_out_of_range": (routes_cfg(bad_route(match="ports = 70000")),
                          ["proxy.lua", '"api"', "#1", "match.ports", "70000"]),
    "port_zero": (routes_cfg(bad_route(match="ports = 0")),
                  ["proxy.lua", '"api"', "#1", "match.ports"]),
    "range_reversed": (routes_cfg(bad_route(match="ports = { from = 9000, to = 8000 }")),
                       ["proxy.lua", '"api"', "#1", "match.ports"]),
    "range_missing_to": (routes_cfg(bad_route(match="ports = { from = 9000 }")),
                         ["proxy.lua", '"api"', "#1", "match.ports"]),
    "bad_cidr": (routes_cfg(bad_route(match='ports = 18200, client_ip = { "10.0.0.0/33" }')),
                 ["proxy.lua", '"api"', "#1", "client_ip", "10.0.0.0/33"]),
    "bad_ip_pattern": (routes_cfg(bad_route(match='ports = 18200, client_ip = { "not-an-ip" }')),
                       ["proxy.lua", '"api"', "#1", "client_ip", "not-an-ip"]),
    "bad_target_host_type": (routes_cfg(OK_ROUTE, bad_route(target="host = 42, port = 9000")),
                             ["proxy.lua", '"api"', "#2", "target.host"]),
    "bad_target_port": (routes_cfg(bad_route(target='host = "127.0.0.1", port = "http"')),
                        ["proxy.lua", '"api"', "#1", "target.port"]),
    "timeout_wrong_type": (routes_cfg(OK_ROUTE, extra='  timeouts = { connect = "soon" },\n'),
                           ["proxy.lua", "timeouts.connect"]),
    "timeout_negative": (routes_cfg(OK_ROUTE, extra="  timeouts = { inactivity = -5 },\n"),
                         ["proxy.lua", "timeouts.inactivity"]),
    "timeout_unknown_key": (routes_cfg(OK_ROUTE, extra="  timeouts = { conect = 5 },\n"),
                            ["proxy.lua", "conect"]),
    "duplicate_route_names": (routes_cfg(bad_route(), bad_route(match="ports = 18201")),
                              ["proxy.lua", '"api"', "#2", "name"]),
    "bad_keep_alive_treatment": (
        routes_cfg(OK_ROUTE, extra='  keep_alive = { treatment = "forever" },\n'),
        ["proxy.lua", "keep_alive.treatment", "forever"]),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_error_is_reported_with_location(tmp_path, case):
    text, expected = CONFIG_ERRORS[case]
    path = write(tmp_path, text)
    r = run_cli("--check", path)
    assert r.returncode == 1, f"exit {r.returncode}, stderr:\n{r.stderr}"
    for want in expected:
        assert want in r.stderr, f"{want!r} missing from stderr:\n{r.stderr}"


@pytest.mark.parametrize("case", ["syntax_error", "ports_wrong_type", "unknown_top_level_key"])
def test_config_error_at_startup_exits_1(tmp_path, case):
    text, expected = CONFIG_ERRORS[case]
    path = write(tmp_path, text)
    r = run_cli(path)
    assert r.returncode == 1, f"exit {r.returncode}, stderr:\n{r.stderr}"
    assert expected[0] in r.stderr, r.stderr


@pytest.mark.parametrize("which", ["route_port", "metrics_port"])
def test_port_in_use_exits_2(tmp_path, which):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    route_port, metrics_port = (taken, sp.free_port()) if which == "route_port" \
        else (sp.free_port(), taken)
    cfg = {"listen_addresses": ["127.0.0.1"], "routes": [route("r", route_port, "127.0.0.1", 9)],
           "metrics": {"listen": f"127.0.0.1:{metrics_port}"}}
    path = write(tmp_path, "return " + lua(cfg) + "\n")
    try:
        r = run_cli(path, timeout=15)
    finally:
        busy.close()
    assert r.returncode == 2, f"exit {r.returncode}, stderr:\n{r.stderr}"
    assert str(taken) in r.stderr, f"the error should name port {taken}:\n{r.stderr}"


def test_workers_option_starts_worker_threads(start_proxy):
    threads = {}
    for n in (1, 3):
        p = start_proxy({"workers": None, "routes": [route("r", sp.free_port(), "127.0.0.1", 9)]},
                        args=["-w", n])
        threads[n] = p.status_field("Threads")
        p.stop()
    assert threads[3] - threads[1] >= 2, f"thread counts by -w: {threads}"


def test_log_format_json(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [route("r", port, "127.0.0.1", backend.port)],
                     "log": {"access": True}},
                    args=["--log-format", "json", "-l", "debug"])
    with p.connect(port) as c:
        sp.roundtrip(c, b"ping")
    assert p.stop() == 0
    lines = [ln for ln in (p.stderr_tail() + p.stdout_path.read_text()).splitlines()
             if ln.strip()]
    assert lines, "debug level with access logs on printed nothing"
    for ln in lines:
        assert isinstance(json.loads(ln), dict), f"not a JSON object: {ln!r}"
