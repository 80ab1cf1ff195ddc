"""Kernel forwarding (action.forwarding_engine = "nftables").

Three network namespaces the test makes and always deletes, joined by veth pairs:

    client 10.203.1.2 (and .3) --- 10.203.1.1  proxy  10.203.2.1 --- 10.203.2.2 (and .3) backend

smartproxy runs in the proxy namespace (IP forwarding on) and installs NAT rules there;
clients connect to 10.203.1.1. No packet leaves these namespaces."""
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import sp

PROXY_IP, CLIENT_IP, CLIENT_IP2 = "10.203.1.1", "10.203.1.2", "10.203.1.3"
GATEWAY_B, BACKEND_IP, BACKEND_IP2 = "10.203.2.1", "10.203.2.2", "10.203.2.3"
FWD_PORT, BACKEND_PORT = 7000, 9000
PROXY6, CLIENT6, GATEWAY6, BACKEND6 = "fd00:203:1::1", "fd00:203:1::2", "fd00:203:2::1", "fd00:203:2::2"


class Topology:
    """client / proxy / backend namespaces; close() deletes them (and their veths)."""

    def __init__(self):
        self.ns = []
        try:
            self.client, self.proxy, self.backend = (self._ns() for _ in range(3))
            c, p, b = self.client.name, self.proxy.name, self.backend.name
            run("ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "pc", "netns", p)
            run("ip", "-n", p, "link", "add", "pb", "type", "veth", "peer", "name", "b0", "netns", b)
            for ns, dev, addrs in ((c, "c0", (CLIENT_IP, CLIENT_IP2, CLIENT6)), (p, "pc", (PROXY_IP, PROXY6)),
                                   (p, "pb", (GATEWAY_B, GATEWAY6)), (b, "b0", (BACKEND_IP, BACKEND_IP2, BACKEND6))):
                for a in addrs:
                    if ":" in a:  # no duplicate address detection: usable at once
                        run("ip", "-n", ns, "addr", "add", f"{a}/64", "dev", dev, "nodad")
                    else:
                        run("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", dev)
                run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", c, "route", "add", "default", "via", PROXY_IP)
            run("ip", "-n", b, "route", "add", "default", "via", GATEWAY_B)
            run("ip", "-n", c, "-6", "route", "add", "default", "via", PROXY6)
            run("ip", "-n", b, "-6", "route", "add", "default", "via", GATEWAY6)
            self.proxy.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.proxy.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        except BaseException:
            self.close()
            raise

    def _ns(self):
        ns = sp.NetNS()
        self.ns.append(ns)
        return ns

    def tables(self):
        """The nftables tables in the proxy namespace, e.g. {"ip smartproxy"}."""
        out = self.proxy.run("nft", "list", "tables")
        return {" ".join(line.split()[1:3]) for line in out.splitlines() if line.startswith("table")}

    def close(self):
        for ns in self.ns:
            ns.close()


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {r.stderr.strip()}")


@pytest.fixture
def topo():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    try:
        t = Topology()
    except OSError as e:
        pytest.skip(f"cannot create network namespaces and veth pairs: {e}")
    yield t
    t.close()


def who_tcp(name):
    """Backend handler: sends "<name> <peer address>\\n", then echoes."""
    def handler(conn, srv):
        conn.sendall(f"{name} {conn.getpeername()[0]}\n".encode())
        return sp.echo(conn, srv)
    return handler


class UdpWho:
    """A UDP server in a namespace answering every datagram with "<name> <sender>"."""

    def __init__(self, net, host, port, name):
        self.sock = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.name = name
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while not self.stop.is_set():
            for _ in sel.select(0.05):
                try:
                    data, addr = self.sock.recvfrom(65536)
                except OSError:
                    continue
                self.sock.sendto(f"{self.name} {addr[0]} ".encode() + data, addr)
        sel.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def backends(topo, serve):
    """TCP and UDP backends on 10.203.2.2:9000 ("one") and 10.203.2.3:9000 ("two")."""
    udp = [UdpWho(topo.backend, BACKEND_IP, BACKEND_PORT, "one"),
           UdpWho(topo.backend, BACKEND_IP2, BACKEND_PORT, "two")]
    tcp = [serve(who_tcp("one"), hosts=(BACKEND_IP,), port=BACKEND_PORT, net=topo.backend),
           serve(who_tcp("two"), hosts=(BACKEND_IP2,), port=BACKEND_PORT, net=topo.backend)]
    yield tcp
    for u in udp:
        u.close()


def nft_route(name="fwd", host=BACKEND_IP, port=BACKEND_PORT, ports=FWD_PORT, nftables=None,
              security=None, match=None):
    r = {"name": name, "match": {"ports": ports, **(match or {})},
         "action": {"type": "forward", "target": {"host": host, "port": port},
                    "forwarding_engine": "nftables"}}
    if nftables:
        r["action"]["nftables"] = nftables
    if security:
        r["security"] = security
    return r


def tcp_who(topo, src=None, port=FWD_PORT, timeout=5.0):
    """Connects from the client namespace through the proxy; returns "<backend> <peer>"
    and checks the echo."""
    s = sp.connect(port, PROXY_IP, src=src, net=topo.client, timeout=timeout)
    try:
        line = sp.recv_line(s).decode().strip()
        assert sp.roundtrip(s, b"x" * 10000) == b"x" * 10000
        return line
    finally:
        s.close()


def udp_who(topo, port=FWD_PORT, payload=b"ping", timeout=3.0):
    s = topo.client.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(payload, (PROXY_IP, port))
        data, addr = s.recvfrom(65536)
        assert addr == (PROXY_IP, port)
        name, peer, echoed = data.decode().split(" ", 2)
        assert echoed == payload.decode()
        return f"{name} {peer}"
    finally:
        s.close()


def metric(proxy, name, route):
    status, body = sp.http_get(proxy.metrics_port, "/metrics", net=proxy.net)
    assert status == 200
    m = re.search(rf'^{name}{{route="{route}"}} (\d+)$', body.decode(), re.M)
    return int(m.group(1)) if m else None


def test_tcp_and_udp_through_kernel_nat_with_masquerade(topo, backends, start_proxy):
    proxy = start_proxy({"routes": [nft_route(nftables={"protocol": "all"})]}, net=topo.proxy)
    assert "ip smartproxy" in topo.tables()
    assert FWD_PORT not in proxy.listening_ports()  # no user-space listener
    assert tcp_who(topo) == f"one {GATEWAY_B}"     # masqueraded: the backend sees the proxy
    assert udp_who(topo) == f"one {GATEWAY_B}"
    s = proxy.stats()["nftables"]
    assert s["rules"] > 0
    fwd = s["routes"]["fwd"]
    assert fwd["packets"] >= 6 and fwd["bytes"] >= 20000, fwd
    assert metric(proxy, "smartproxy_nftables_packets_total", "fwd") >= fwd["packets"]
    assert metric(proxy, "smartproxy_nftables_bytes_total", "fwd") >= fwd["bytes"]
    if shutil.which("promtool"):
        _, body = sp.http_get(proxy.metrics_port, "/metrics", net=proxy.net)
        r = subprocess.run(["promtool", "check", "metrics"], input=body.decode(), capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    before = fwd["bytes"]
    tcp_who(topo)
    assert proxy.stats()["nftables"]["routes"]["fwd"]["bytes"] >= before + 20000
    assert proxy.stop() == 0
    assert "ip smartproxy" not in topo.tables()    # a graceful stop removes the rules


def test_preserve_source_ip(topo, backends, start_proxy):
    start_proxy({"routes": [nft_route(nftables={"preserve_source_ip": True, "protocol": "all"})]},
                net=topo.proxy)
    assert tcp_who(topo) == f"one {CLIENT_IP}"
    assert tcp_who(topo, src=CLIENT_IP2) == f"one {CLIENT_IP2}"
    assert udp_who(topo) == f"one {CLIENT_IP}"


def test_port_range_preserve_and_udp_only(topo, serve, start_proxy):
    backend = serve(who_tcp("range"), hosts=(BACKEND_IP,), port=FWD_PORT + 3, net=topo.backend)
    udp = UdpWho(topo.backend, BACKEND_IP, FWD_PORT + 4, "u")
    try:
        start_proxy({"routes": [
            nft_route("tcp-range", port="preserve", ports={"from": FWD_PORT, "to": FWD_PORT + 3}),
            nft_route("udp-only", port="preserve", ports=FWD_PORT + 4, nftables={"protocol": "udp"}),
        ]}, net=topo.proxy)
        assert tcp_who(topo, port=FWD_PORT + 3) == f"range {GATEWAY_B}"
        assert udp_who(topo, port=FWD_PORT + 4) == f"u {GATEWAY_B}"
        with pytest.raises(OSError):  # TCP is not forwarded on the UDP route: refused locally
            sp.connect(FWD_PORT + 4, PROXY_IP, net=topo.client, timeout=2)
    finally:
        udp.close()
        backend.close()


def test_client_ip_and_allow_list_are_rule_conditions(topo, backends, start_proxy):
    start_proxy({"routes": [nft_route(match={"client_ip": "10.203.1.0/24"},
                                      security={"ip_allow_list": [CLIENT_IP]})]}, net=topo.proxy)
    assert tcp_who(topo) == f"one {GATEWAY_B}"
    with pytest.raises(OSError):  # matched the route, not allowed: dropped (a timeout)
        tcp_who(topo, src=CLIENT_IP2, timeout=1.5)


def test_block_list_drops(topo, backends, start_proxy):
    start_proxy({"routes": [nft_route(security={"ip_block_list": [CLIENT_IP2]})]}, net=topo.proxy)
    assert tcp_who(topo) == f"one {GATEWAY_B}"
    with pytest.raises(OSError):
        tcp_who(topo, src=CLIENT_IP2, timeout=1.5)


def test_ipv6_target(topo, serve, start_proxy):
    serve(who_tcp("six"), hosts=(BACKEND6,), port=BACKEND_PORT, net=topo.backend)
    proxy = start_proxy({"routes": [nft_route(host=BACKEND6)]}, net=topo.proxy)
    assert topo.tables() == {"ip6 smartproxy"}
    s = sp.connect(FWD_PORT, PROXY6, net=topo.client)
    try:
        assert sp.recv_line(s).decode().strip() == f"six {GATEWAY6}"
        assert sp.roundtrip(s, b"v6" * 1000) == b"v6" * 1000
    finally:
        s.close()
    assert proxy.stats()["nftables"]["routes"]["fwd"]["bytes"] > 2000
    with pytest.raises(OSError):  # an IPv6 target serves IPv6 clients only
        sp.connect(FWD_PORT, PROXY_IP, net=topo.client, timeout=2)


def test_reload_switches_target_and_keeps_counters(topo, backends, start_proxy):
    proxy = start_proxy({"routes": [nft_route()]}, net=topo.proxy)
    live = sp.connect(FWD_PORT, PROXY_IP, net=topo.client)  # opened before the reload
    assert sp.recv_line(live).decode().startswith("one ")
    tcp_who(topo)
    before = proxy.stats()["nftables"]["routes"]["fwd"]
    proxy.write_config({"routes": [nft_route(host=BACKEND_IP2)]})
    assert proxy.reload()
    assert tcp_who(topo) == f"two {GATEWAY_B}"   # new connections: the new target
    assert sp.roundtrip(live, b"still here") == b"still here"  # conntrack keeps the old one
    live.close()
    after = proxy.stats()["nftables"]["routes"]["fwd"]
    assert after["packets"] > before["packets"] and after["bytes"] > before["bytes"]
    # a reload to a config without kernel routes removes the tables
    proxy.write_config({"routes": [sp.route("plain", sp.free_port(), "127.0.0.1", 9)]})
    assert proxy.reload()
    assert "ip smartproxy" not in topo.tables()
    assert proxy.stats()["nftables"]["routes"] == {}


def test_bad_reload_keeps_rules(topo, backends, start_proxy):
    proxy = start_proxy({"routes": [nft_route()]}, net=topo.proxy)
    proxy.write_config({"routes": [nft_route(match={"domains": "a.example"})]})
    assert not proxy.reload()
    assert "match.domains" in proxy.stderr_tail()
    assert tcp_who(topo) == f"one {GATEWAY_B}"


def test_kill_then_nft_cleanup(topo, backends, start_proxy):
    proxy = start_proxy({"routes": [nft_route()]}, net=topo.proxy)
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.wait_exit(5)
    assert "ip smartproxy" in topo.tables()        # a crash leaves the rules
    assert tcp_who(topo) == f"one {GATEWAY_B}"     # ... and they still forward
    r = subprocess.run([*topo.proxy.prefix, sp.BIN, "--nft-cleanup"], capture_output=True, text=True,
                       timeout=15)
    assert r.returncode == 0, r.stderr
    assert topo.tables() == set()
    r = subprocess.run([*topo.proxy.prefix, sp.BIN, "--nft-cleanup"], capture_output=True, text=True,
                       timeout=15)
    assert r.returncode == 0, r.stderr             # nothing left: still fine


def test_max_rate_limits_throughput(topo, backends, start_proxy):
    start_proxy({"routes": [nft_route(nftables={"max_rate": "4mbps"})]}, net=topo.proxy)
    s = sp.connect(FWD_PORT, PROXY_IP, net=topo.client, timeout=20)
    try:
        sp.recv_line(s)
        payload = b"r" * (1500 * 1000)  # 1.5 MB each way at 0.5 MB/s for both directions
        t0 = time.monotonic()
        assert sp.roundtrip(s, payload) == payload
        took = time.monotonic() - t0
    finally:
        s.close()
    assert took > 2.0, f"1.5 MB echoed in {took:.2f}s through a 4 mbit/s limit"


def test_without_cap_net_admin_the_config_check_fails(topo, tmp_path):
    cfg = tmp_path / "proxy.lua"
    cfg.write_text("return " + sp.lua({"routes": [nft_route()]}) + "\n")
    for args in (["--check"], []):
        cmd = [*topo.proxy.prefix, "setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
               sp.BIN, *args, str(cfg)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert re.search(r'proxy\.lua: route "fwd" \(#1\): action\.forwarding_engine: .*CAP_NET_ADMIN',
                         r.stderr), r.stderr
    assert topo.tables() == set()


def test_check_prints_kernel_rules(topo, tmp_path):
    cfg = tmp_path / "proxy.lua"
    cfg.write_text("return " + sp.lua({"routes": [nft_route()]}) + "\n")
    r = subprocess.run([*topo.proxy.prefix, sp.BIN, "--check", str(cfg)], capture_output=True, text=True,
                       timeout=15)
    assert r.returncode == 0, r.stderr
    assert "forward in the kernel (nftables)" in r.stdout
    assert f"dnat ip to {BACKEND_IP}:{BACKEND_PORT}" in r.stdout
    assert topo.tables() == set()  # a dry run


@pytest.mark.parametrize("extra,field", [
    ({"match": {"ports": 7000, "domains": "a.example"}}, "match.domains"),
    ({"action": {"type": "socket-handler", "handler": sp.Lua("function() end"),
                 "forwarding_engine": "nftables"}}, "action.forwarding_engine"),
    ({"action": {"type": "forward", "target": {"host": BACKEND_IP, "port": 1},
                 "forwarding_engine": "nftables", "tls": {"mode": "passthrough"}}}, "action.tls"),
    ({"action": {"type": "forward", "target": {"host": BACKEND_IP, "port": 1},
                 "forwarding_engine": "nftables", "nftables": {"max_rate": "fast"}}},
     "action.nftables.max_rate"),
])
def test_config_errors(tmp_path, extra, field):
    r = {**nft_route(), **extra}
    cfg = tmp_path / "proxy.lua"
    cfg.write_text("return " + sp.lua({"routes": [r]}) + "\n")
    res = sp.run_cli("--check", cfg)
    assert res.returncode == 1
    assert f'route "fwd" (#1): {field}: ' in res.stderr, res.stderr


def test_the_example_config_forwards(topo, serve, tmp_path):
    """examples/nftables.lua, run as is in the test's namespaces."""
    udp = UdpWho(topo.backend, BACKEND_IP, BACKEND_PORT, "app")
    tcp = serve(who_tcp("app"), hosts=(BACKEND_IP,), port=BACKEND_PORT, net=topo.backend)
    rng = serve(who_tcp("range"), hosts=(BACKEND_IP2,), port=7105, net=topo.backend)
    log = tmp_path / "stderr.log"
    try:
        with open(log, "wb") as err:
            proc = subprocess.Popen([*topo.proxy.prefix, "setpriv", "--pdeathsig", "KILL", "--", sp.BIN,
                                     str(sp.REPO / "examples" / "nftables.lua")],
                                    stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        try:
            sp.wait_until(lambda: sp.http_get(9105, "/healthz", net=topo.proxy)[0] == 200, 10,
                          msg="the example's admin endpoint")
            assert tcp_who(topo) == f"app {CLIENT_IP}"
            assert udp_who(topo) == f"app {CLIENT_IP}"
            assert tcp_who(topo, port=7105) == f"range {GATEWAY_B}"
            status, body = sp.http_get(9105, "/stats", net=topo.proxy)
            assert status == 200 and b'"range"' in body
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait(5)
        text = log.read_text(errors="replace")
        assert rc == 0, text
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, text
        assert topo.tables() == set()
    finally:
        rng.close()
        tcp.close()
        udp.close()
