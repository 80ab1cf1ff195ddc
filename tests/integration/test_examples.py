"""Every example config is valid, and the quickstart does what the README says."""
import json
import signal
import subprocess
import urllib.request

import pytest

import sp

EXAMPLES = sorted((sp.REPO / "examples").glob("*.lua"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check(example):
    r = subprocess.run([sp.BIN, "--check", example.name], cwd=example.parent,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


@pytest.mark.skipif(not sp._bindable(8080, ("127.0.0.1",)) or not sp._bindable(9100, ("127.0.0.1",)),
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
