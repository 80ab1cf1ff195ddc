"""examples/prometheus/alerts.yml and examples/grafana/smartproxy.json: the rules pass
promtool's check and their unit tests, every query parses, and every smartproxy metric
they use is one a real /metrics prints."""
import json
import re
import shutil
import subprocess

import pytest

import httputil as hu
import sp
import tlsutil

PROMETHEUS = sp.REPO / "examples" / "prometheus"
GRAFANA = sp.REPO / "examples" / "grafana" / "smartproxy.json"
# Metrics the examples use before the proxy prints them, each with why.
PENDING = {
    "smartproxy_upstream_healthy": "upstream health checks (issue 19) are to add it",
}

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"),
                                    reason="promtool (Debian's prometheus) not installed")


def promtool(*args, cwd=PROMETHEUS):
    r = subprocess.run(["promtool", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def grafana_queries():
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    dash = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20, exprs
    variables = [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs, variables


def metric_names(text):
    return set(re.findall(r"\bsmartproxy_[a-z0-9_]+", text))


def real_metrics(start_proxy, serve, tmp_path):
    """The metric names of /metrics after HTTP traffic (a 200 and a 503) and with a
    terminating route, so the per-route, histogram and certificate series exist."""
    backend = serve(hu.HttpBackend("A"))
    web, secure = sp.free_ports(2)
    cert = tlsutil.PKI(tmp_path / "pki").leaf("secure.example.test")
    p = start_proxy({"routes": [hu.http_route("web", web, "127.0.0.1", backend.port),
                                tlsutil.tls_route("secure", secure, "127.0.0.1", backend.port, cert=cert)]})
    assert hu.fetch(web, "/ok").status == 200
    assert hu.fetch(web, "/status?code=503").status == 503
    sp.wait_until(lambda: p.stats()["http"]["requests"] == 2, 10, msg="2 requests counted")
    status, body = sp.http_get(p.metrics_port, "/metrics")
    assert status == 200
    names = set()
    for line in body.decode().splitlines():
        # a sample's name, or a declared one (a series only printed for "auto" names)
        m = re.match(r"(?:# TYPE )?([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
        if m and not line.startswith("# HELP"):
            names.add(m.group(1))
    # sanity: the series only printed after traffic are there
    assert "smartproxy_http_request_duration_seconds_bucket" in names, sorted(names)
    return names


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests():
    assert "SUCCESS: 9 rules found" in promtool("check", "rules", "alerts.yml")
    out = promtool("test", "rules", "alerts.test.yml")
    assert "SUCCESS" in out, out
    # every alert the issue names has a rule, and a unit test that expects it to fire
    rules = (PROMETHEUS / "alerts.yml").read_text()
    tests = (PROMETHEUS / "alerts.test.yml").read_text()
    for alert in ("SmartproxyDown", "SmartproxyReloadFailed", "SmartproxyCertificateExpiringSoon",
                  "SmartproxyHighErrorRatio", "SmartproxyUpstreamUnhealthy", "SmartproxyConnectionsNearLimit"):
        assert f"alert: {alert}\n" in rules, alert
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:", tests), alert


@needs_promtool
def test_grafana_queries_parse(tmp_path):
    """Each query, with Grafana's variables given values, is a PromQL expression promtool
    accepts (as a recording rule)."""
    exprs, variables = grafana_queries()
    rules = []
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace('"$job"', '".*"').replace('"$instance"', '".*"')
        assert "$" not in e, e
        rules.append({"record": f"grafana:query_{i}", "expr": e})
    f = tmp_path / "grafana-queries.yml"
    f.write_text(json.dumps({"groups": [{"name": "grafana", "rules": rules}]}))  # JSON is YAML
    promtool("check", "rules", f, cwd=tmp_path)
    for v in variables:
        assert re.fullmatch(r"label_values\(smartproxy_\w+(\{[^}]*\})?, \w+\)", v), v


def test_examples_use_only_metrics_the_proxy_prints(start_proxy, serve, tmp_path):
    printed = real_metrics(start_proxy, serve, tmp_path)
    exprs, variables = grafana_queries()
    used_by_grafana = metric_names(" ".join(exprs + variables))
    used_by_alerts = metric_names((PROMETHEUS / "alerts.yml").read_text())
    assert used_by_grafana - printed == set(), "the dashboard queries metrics /metrics does not print"
    assert used_by_alerts - printed == set(PENDING), "the alerts use metrics /metrics does not print"
    assert not set(PENDING) & printed, f"now printed: drop it from PENDING ({PENDING})"
    # the test files feed the rules series of the same names
    used_by_tests = metric_names((PROMETHEUS / "alerts.test.yml").read_text())
    assert used_by_tests - printed <= set(PENDING), used_by_tests - printed
