"""Every example config is valid, and the quickstart does what the README says."""
import json
import signal
import socket
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
