"""systemd: the sd_notify protocol (Type=notify) read from a datagram socket the test
binds as NOTIFY_SOCKET, and the packaged unit file checked by systemd-analyze verify."""
import os
import re
import shutil
import signal
import socket
import subprocess
import uuid

import pytest

import sp
from sp import route

UNIT = sp.REPO / "packaging" / "smartproxy.service"


class NotifySocket:
    """An abstract AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET; keeps what arrives."""

    def __init__(self):
        self.name = f"smartproxy-test-{os.getpid()}-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        self.messages = []

    @property
    def address(self):
        return "@" + self.name

    def received(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def wait_for(self, pattern, start=0, timeout=10.0):
        """Index of the first message from `start` on matching `pattern` (a regex)."""
        def find():
            for i, m in enumerate(self.received()[start:], start):
                if re.search(pattern, m, re.M):
                    return i + 1  # (0 would read as "not yet")
            return None
        return sp.wait_until(find, timeout, msg=f"notify message {pattern!r}: {self.messages}") - 1

    def close(self):
        self.sock.close()


@pytest.fixture
def notify():
    n = NotifySocket()
    yield n
    n.close()


def env_with(**kw):
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(kw)
    return env


def test_notify_ready_status_reload_and_stopping(start_proxy, serve, notify):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"routes": [route("r", port, "127.0.0.1", backend.port)]},
                    env=env_with(NOTIFY_SOCKET=notify.address), wait=False)
    ready = notify.wait_for(r"^READY=1$", timeout=15)
    # READY=1 comes after the ports are bound: they listen the moment it arrives
    assert p.ports() <= p.listening_ports(), notify.messages
    assert re.search(r"^STATUS=generation 1, 0 connection\(s\)$", notify.messages[ready], re.M)
    p.wait_ready()

    with p.connect(port) as c:  # STATUS follows the connections (sampled once a second)
        sp.roundtrip(c, b"x")
        notify.wait_for(r"^STATUS=generation 1, 1 connection\(s\)$", ready)

    p.reload()  # SIGHUP: RELOADING=1 with the monotonic time, then READY=1 for generation 2
    reloading = notify.wait_for(r"^RELOADING=1$", ready + 1)
    assert re.search(r"^MONOTONIC_USEC=\d+$", notify.messages[reloading], re.M), notify.messages[reloading]
    again = notify.wait_for(r"^READY=1$", reloading + 1)
    assert "STATUS=generation 2," in notify.messages[again]

    p.write_text("return {")  # a refused reload still ends with READY=1: generation 2 serves
    assert not p.reload()
    refused = notify.wait_for(r"^READY=1$", notify.wait_for(r"^RELOADING=1$", again + 1))
    assert re.search(r"^STATUS=generation 2, .*last reload refused: ", notify.messages[refused], re.M)

    assert p.stop() == 0
    notify.wait_for(r"^STOPPING=1$", refused + 1)
    assert not any(m.startswith("WATCHDOG=1") for m in notify.received()), "no WATCHDOG_USEC, no pings"


def test_no_reloading_or_ready_once_stopping(start_proxy, serve, notify):
    """A SIGHUP while connections drain is refused and tells systemd nothing: after
    STOPPING=1 it waits for the exit."""
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"timeouts": {"graceful_shutdown": 30000},
                     "routes": [route("r", port, "127.0.0.1", backend.port)]},
                    env=env_with(NOTIFY_SOCKET=notify.address))
    live = p.connect(port)
    sp.roundtrip(live, b"x")  # keeps the drain going
    p.proc.send_signal(signal.SIGTERM)
    stopping = notify.wait_for(r"^STOPPING=1$")
    p.proc.send_signal(signal.SIGHUP)
    sp.wait_until(lambda: "SIGHUP: reloading" in p.stderr_tail(), 10, msg="the SIGHUP handled")
    # SIGUSR1 is handled after the SIGHUP handler returned: whatever it sent is here by then
    p.proc.send_signal(signal.SIGUSR1)
    sp.wait_until(lambda: "SIGUSR1" in p.stderr_tail(), 10, msg="the SIGUSR1 handled")
    after = notify.received()[stopping + 1:]
    assert not [m for m in after if re.search(r"^(RELOADING|READY)=1$", m, re.M)], after
    live.close()
    assert p.wait_exit(15) == 0


def test_watchdog_pings_from_the_main_loop(start_proxy, notify):
    p = start_proxy({"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]},
                    env=env_with(NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="200000"))
    first = notify.wait_for(r"^WATCHDOG=1$")
    notify.wait_for(r"^WATCHDOG=1$", notify.wait_for(r"^WATCHDOG=1$", first + 1) + 1)
    assert "systemd watchdog: pinging every 100 ms" in p.stderr_tail()
    assert p.stop() == 0


def test_without_notify_socket_nothing_is_sent(start_proxy):
    p = start_proxy({"routes": [route("r", sp.free_port(), "127.0.0.1", 9)]},
                    env=env_with(WATCHDOG_USEC="200000"))
    assert p.stop() == 0
    assert "systemd" not in p.stderr_tail()


def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    """systemd-analyze verify, which needs no running systemd: every directive known, the
    commands executable (ExecStart names the binary under test here, /usr/bin/smartproxy
    in the package) and the Documentation= man pages present (MANPATH: docs/man)."""
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing (.ci/deps installs systemd)")
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecStart=/usr/bin/smartproxy /etc/smartproxy/proxy.lua",
                 "ExecReload=/bin/kill -HUP $MAINPID", "User=smartproxy", "StateDirectory=smartproxy",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "WatchdogSec="):
        assert re.search(rf"^{re.escape(line)}", text, re.M), f"{line} missing from {UNIT}"
    for section in ("man1", "man5"):
        (tmp_path / "man" / section).mkdir(parents=True)
    for page in (sp.REPO / "docs" / "man").iterdir():
        (tmp_path / "man" / f"man{page.suffix[1:]}" / page.name).symlink_to(page)
    unit = tmp_path / "smartproxy.service"
    unit.write_text(text.replace("ExecStart=/usr/bin/smartproxy", f"ExecStart={sp.BIN}"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANPATH": str(tmp_path / "man")})
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
