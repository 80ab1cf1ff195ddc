"""Helpers for the smartproxy integration tests: the proxy process, small backends,
client sockets, free ports, network namespaces and the leak check.

Only the standard library. All traffic stays on loopback (127.0.0.0/8, ::1) or inside
network namespaces made by the tests themselves.
"""
import ctypes
import ipaddress
import json
import os
import random
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SMARTPROXY_BIN") or str(REPO / "build" / "smartproxy")
# tests/run sets this for the ASan + UBSan binary: memory figures mean little there
SANITIZED = os.environ.get("SMARTPROXY_SANITIZED") == "1"
PYTHON = "/usr/bin/python3"

CONN_STATES = ("accepted", "proxy_header", "sniffing", "tls_handshake", "connecting", "piping",
               "lua", "http", "closing")


# ---------------------------------------------------------------------------- waiting

def wait_until(pred, timeout=5.0, interval=0.02, msg="condition"):
    """Poll pred() until it returns something truthy; return that value.
    Raise AssertionError naming msg (and the last value or exception) at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError) as e:  # e.g. the admin endpoint not up yet
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {msg} (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------- Lua config

class Lua(str):
    """Lua source inserted verbatim into a generated config (functions, expressions)."""


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LUA_KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
                 "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
                 "true", "until", "while"}


def lua(value, indent=0):
    """Render a Python value as a Lua expression (dicts keep their order)."""
    pad = "  " * (indent + 1)
    if isinstance(value, Lua):
        return str(value)
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # for ASCII, a JSON string literal is a Lua one
    if isinstance(value, (list, tuple)):
        if not value:
            return "{}"
        items = ",\n".join(pad + lua(v, indent + 1) for v in value)
        return "{\n" + items + "\n" + "  " * indent + "}"
    if isinstance(value, dict):
        if not value:
            return "{}"
        rows = []
        for k, v in value.items():
            key = k if _IDENT.match(k) and k not in _LUA_KEYWORDS else f"[{json.dumps(k)}]"
            rows.append(f"{pad}{key} = {lua(v, indent + 1)}")
        return "{\n" + ",\n".join(rows) + "\n" + "  " * indent + "}"
    raise TypeError(f"cannot render {type(value).__name__} as Lua")


def route(name, ports, host=None, port=None, *, client_ip=None, priority=None,
          targets=None, half_open=None):
    """A forward route. host/port may be Lua(...) functions, port may be "preserve"."""
    match = {"ports": ports}
    if client_ip is not None:
        match["client_ip"] = client_ip
    action = {"type": "forward"}
    if targets is not None:
        action["targets"] = [{"host": h, "port": p} for h, p in targets]
    else:
        action["target"] = {"host": host, "port": port}
    if half_open is not None:
        action["half_open"] = half_open
    r = {"name": name}
    if priority is not None:
        r["priority"] = priority
    r["match"] = match
    r["action"] = action
    return r


def route_ports(routes):
    """Every port the routes listen on (numbers, {from=,to=} ranges and lists of both;
    not the ports of kernel-forwarded or disabled routes)."""
    out = set()

    def add(p):
        if isinstance(p, int):
            out.add(p)
        elif isinstance(p, dict):
            out.update(range(p["from"], p["to"] + 1))
        elif isinstance(p, (list, tuple)):
            for q in p:
                add(q)

    for r in routes:
        if isinstance(r, dict) and (r.get("action", {}).get("forwarding_engine") == "nftables"
                                    or r.get("enabled") is False):
            continue  # forwarded by the kernel, or switched off: no listener
        add(r["match"]["ports"])
    return out


# ---------------------------------------------------------------------------- ports

_handed_out = set()
_port_lock = threading.Lock()


def _bindable(port, hosts):
    socks = []
    try:
        for h in hosts:
            s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
            socks.append(s)
            s.bind((h, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_ports(n=1, hosts=("127.0.0.1",)):
    """n consecutive ports free on every host, below the ephemeral range (so outgoing
    connections never grab them) and never handed out twice in this run."""
    lo_eph = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    lo, hi = (20000, lo_eph - n) if lo_eph > 21000 else (10000, 19000)
    with _port_lock:
        for _ in range(2000):
            base = random.randrange(lo, hi)
            ports = range(base, base + n)
            if any(p in _handed_out for p in ports):
                continue
            if all(_bindable(p, hosts) for p in ports):
                _handed_out.update(ports)
                return list(ports)
    raise RuntimeError("no free port range found")


def free_port(hosts=("127.0.0.1",)):
    return free_ports(1, hosts)[0]


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- namespaces

class HostNet:
    """The test process's own network namespace."""
    name = None
    prefix = ()

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        return socket.socket(family, type)


HOST = HostNet()
_CLONE_NEWNET = 0x40000000


class NetNS:
    """A throw-away network namespace with lo up. Sockets made by .socket() live in it
    (created on a helper thread that setns()es; the socket keeps its namespace)."""

    def __init__(self):
        self.name = f"sp-{secrets.token_hex(4)}"
        r = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(f"ip netns add failed: {r.stderr.strip()}")
        self.prefix = ("ip", "netns", "exec", self.name)
        try:
            self.run("ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def run(self, *cmd, input=None):
        r = subprocess.run([*self.prefix, *cmd], input=input, capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise OSError(f"{' '.join(cmd)} in {self.name}: {r.stderr.strip()}")
        return r.stdout

    def drop_tcp_port(self, port):
        """Silently drop every TCP segment to port (a target that never answers the SYN)."""
        self.run("nft", "-f", "-", input=(
            "table inet sptest {\n"
            "  chain input { type filter hook input priority 0; policy accept;\n"
            f"    tcp dport {port} drop\n"
            "  }\n"
            "}\n"))

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        out = {}

        def make():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    out["err"] = OSError(ctypes.get_errno(), "setns")
                    return
            finally:
                os.close(fd)
            out["sock"] = socket.socket(family, type)

        t = threading.Thread(target=make)
        t.start()
        t.join()
        if "err" in out:
            raise out["err"]
        return out["sock"]

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


# ---------------------------------------------------------------------------- clients

def connect(port, host="127.0.0.1", *, src=None, net=HOST, timeout=5.0):
    s = net.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_line(s, limit=4096):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            raise ConnectionError(f"EOF after {bytes(buf)!r}")
        buf += c
        if len(buf) > limit:
            raise ValueError("line too long")
    return bytes(buf)


def roundtrip(s, data):
    """Send data to an echo peer and check it comes back unchanged."""
    s.sendall(data)
    got = recv_exact(s, len(data))
    assert got == data, "echo mismatch"
    return got


def read_to_close(s, timeout=3.0):
    """Read until the peer closes (FIN or RST); return (data, "fin" | "rst").
    AssertionError if it is still open at the deadline."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return bytes(data), "rst"
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s") from None
        if not chunk:
            return bytes(data), "fin"
        data += chunk


def wait_closed(s, timeout=3.0):
    """Wait (dropping data) until the peer closes; return "fin" or "rst"."""
    return read_to_close(s, timeout)[1]


def is_open(s):
    """True while the peer has neither closed nor reset (nothing is consumed, no wait)."""
    timeout = s.gettimeout()
    s.settimeout(0)
    try:
        return bool(s.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.settimeout(timeout)


def closed_on_arrival(port, host="127.0.0.1", *, net=HOST, send=b"", timeout=3.0):
    """Connect, optionally send, and wait for the proxy to close (FIN or RST; a reset
    that beats connect() counts too). Return the seconds it took."""
    t0 = time.monotonic()
    try:
        with connect(port, host, net=net) as c:
            if send:
                try:
                    c.sendall(send)
                except OSError:
                    pass  # already reset
            wait_closed(c, timeout)
    except ConnectionResetError:
        pass
    return time.monotonic() - t0


def rst_close(s):
    """Close with RST (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def refused(port, host="127.0.0.1", net=HOST):
    """True when nothing listens on host:port (connect refused)."""
    try:
        connect(port, host, net=net, timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


# ---------------------------------------------------------------------------- backends

class Server:
    """A threaded TCP server on one port of one or more loopback addresses; every
    connection runs handler(conn, server) on its own thread. Handlers may call
    server.count(n) for live byte counts; their return values collect in .results."""

    def __init__(self, handler, hosts=("127.0.0.1",), port=None, net=HOST, backlog=128):
        self.handler = handler
        self.port = port or free_port(hosts)
        self.host = hosts[0]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.accepted = 0
        self.bytes = 0
        self.results = []
        self.conns = set()
        self.threads = []
        self.listeners = []
        for h in hosts:
            ls = net.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((h, self.port))
            ls.listen(backlog)
            ls.setblocking(False)
            self.listeners.append(ls)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self):
        sel = selectors.DefaultSelector()
        for ls in self.listeners:
            sel.register(ls, selectors.EVENT_READ)
        while not self.stopping.is_set():
            for key, _ in sel.select(0.05):
                try:
                    conn, _addr = key.fileobj.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                with self.lock:
                    self.accepted += 1
                    self.conns.add(conn)
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self.threads.append(t)
                t.start()
        sel.close()

    def _serve(self, conn):
        result = None
        try:
            result = self.handler(conn, self)
        except OSError as e:
            result = e
        finally:
            with self.lock:
                self.conns.discard(conn)
                self.results.append(result)
            conn.close()

    def count(self, n):
        with self.lock:
            self.bytes += n

    def wait_results(self, n, timeout=5.0):
        wait_until(lambda: len(self.results) >= n, timeout,
                   msg=f"{n} finished connection(s) on backend :{self.port}")
        return list(self.results)

    def close(self):
        self.stopping.set()
        self._acceptor.join(2)
        for ls in self.listeners:
            ls.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(2)


# Handlers: each takes (conn, server).

def echo(conn, srv):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        srv.count(len(data))
        conn.sendall(data)


def banner(text=b"220 hello\r\n"):
    """A server that speaks first, then echoes."""
    def handler(conn, srv):
        conn.sendall(text)
        return echo(conn, srv)
    return handler


def tag(name):
    """Sends "<name>\\n" on accept (to tell backends apart), then echoes."""
    return banner(name.encode() + b"\n")


def reset(after_data=True):
    """Accepts, optionally waits for the first bytes, then resets (SO_LINGER 0)."""
    def handler(conn, srv):
        if after_data:
            conn.recv(1)
        rst_close(conn)
    return handler


def reader(pause=0.0, chunk=65536):
    """Reads to EOF, sleeping `pause` seconds after every `chunk` bytes; returns
    (bytes, crc32)."""
    def handler(conn, srv):
        buf = bytearray(chunk)
        mv = memoryview(buf)
        total, crc, since_pause = 0, 0, 0
        while True:
            n = conn.recv_into(mv[:chunk - since_pause])
            if not n:
                return total, crc
            crc = zlib.crc32(mv[:n], crc)
            total += n
            since_pause += n
            srv.count(n)
            if since_pause >= chunk:
                since_pause = 0
                if pause:
                    if srv.stopping.is_set():
                        return total, crc
                    time.sleep(pause)
    return handler


sink = reader()


def reply_after_eof(delay=0.5):
    """Reads to EOF, waits `delay`, then answers b"got N\\n" and closes."""
    def handler(conn, srv):
        total = 0
        while True:
            data = conn.recv(65536)
            if not data:
                break
            total += len(data)
            srv.count(len(data))
        if srv.stopping.wait(delay):
            return total
        try:
            conn.sendall(b"got %d\n" % total)
        except OSError:
            pass
        return total
    return handler


def firehose(limit=256 << 20):
    """Sends until the peer goes away (at most `limit` bytes)."""
    def handler(conn, srv):
        block = os.urandom(65536)
        sent = 0
        while sent < limit and not srv.stopping.is_set():
            conn.sendall(block)
            sent += len(block)
        return sent
    return handler


class Blackhole:
    """A loopback port where a connect hangs in SYN_SENT: a listener with a one-slot
    accept queue, filled and never accepted, makes the kernel drop further SYNs."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
            if self._hangs(c):
                return
        raise RuntimeError("could not fill the accept queue")

    @staticmethod
    def _hangs(c):
        sel = selectors.DefaultSelector()
        sel.register(c, selectors.EVENT_WRITE)
        done = sel.select(0.3)
        sel.close()
        return not done

    def close(self):
        for c in self.fillers:
            c.close()
        self.listener.close()


# ---------------------------------------------------------------------------- the proxy

def run_cli(*args, cwd=None, timeout=15):
    """Run the binary to completion; CompletedProcess with text stdout/stderr."""
    return subprocess.run([BIN, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def http_request(port, method, path, host="127.0.0.1", net=HOST, timeout=5.0, token=None,
                 headers=(), body=b""):
    """Minimal HTTP/1.1 request with Connection: close; returns (status, body bytes).
    headers: ("Name: value", ...) after Host (and Authorization when token is set)."""
    s = connect(port, host, net=net, timeout=timeout)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += list(headers)
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        data = bytearray()
        head_end = -1
        length = None
        while True:
            if head_end < 0:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", data[:head_end])
                    length = int(m.group(1)) if m else None
            if length is not None and len(data) >= head_end + 4 + length:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if head_end < 0:
        raise ValueError(f"bad HTTP response {bytes(data[:200])!r}")
    status = int(data.split(b" ", 2)[1])
    body = bytes(data[head_end + 4:])
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", data[:head_end]):
        body = _dechunk(body)
    elif length is not None:
        body = body[:length]
    return status, body


def http_get(port, path, host="127.0.0.1", net=HOST, timeout=5.0, token=None, headers=()):
    return http_request(port, "GET", path, host, net, timeout, token, headers)


# What the admin endpoint wants on a state change (POST): a header no browser sends
# cross-origin without a preflight.
ADMIN_HEADER = "X-Smartproxy-Admin: 1"


def admin_post(port, path, host="127.0.0.1", net=HOST, timeout=10.0, token=None):
    """POST to the admin endpoint the way a script should (README: Admin endpoint)."""
    return http_request(port, "POST", path, host, net, timeout, token, [ADMIN_HEADER])


def _dechunk(body):
    out, i = bytearray(), 0
    while True:
        j = body.index(b"\r\n", i)
        size = int(body[i:j].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[j + 2:j + 2 + size]
        i = j + 2 + size + 2


DEFAULTS = {
    "workers": 2,
    "listen_addresses": ["127.0.0.1"],
    "timeouts": {"connect": 5000, "graceful_shutdown": 2000},
}

_live = set()  # every Proxy not yet reaped, for the session's leak guard


def _reap_all():
    for p in list(_live):
        p.kill()


class Proxy:
    """One smartproxy process: config in dir/proxy.lua, stderr/stdout in dir/."""

    def __init__(self, workdir, config, *, args=(), net=HOST):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "proxy.lua"
        self.stderr_path = self.dir / "stderr.log"
        self.stdout_path = self.dir / "stdout.log"
        self.args = list(map(str, args))
        self.net = net
        self.metrics_port = free_port()
        self.proc = None
        self.returncode = None
        self.fd_baseline = None  # idle conn_fds(), taken when start() finds it ready
        self.write_config(config)

    # config ------------------------------------------------------------------
    def full_config(self, config):
        cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
        for k, v in config.items():
            cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
        cfg["metrics"] = {**(cfg.get("metrics") or {}), "listen": f"127.0.0.1:{self.metrics_port}"}
        return cfg

    def write_config(self, config):
        """Write a config dict (merged over DEFAULTS, admin port added) atomically."""
        self.config = self.full_config(config)
        self.write_text("return " + lua(self.config) + "\n")

    def write_text(self, text):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def ports(self):
        return route_ports(self.config["routes"])

    # process -----------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True, timeout=15.0):
        cmd = [*self.net.prefix]
        if shutil.which("setpriv"):  # die with the test run even if it is killed hard
            cmd += ["setpriv", "--pdeathsig", "KILL", "--"]
        cmd += [BIN, *self.args, str(self.config_path)]
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         cwd=self.dir)
        _live.add(self)
        if wait:
            self.wait_ready(timeout)
            self.fd_baseline = settled_fds(self)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=15.0):
        def ready():
            if not self.alive():
                raise AssertionError(f"smartproxy exited with {self.proc.returncode} during "
                                     f"startup:\n{self.stderr_tail()}")
            status, body = self.healthz()
            if status != 200 or body.strip() != b"ok":
                return False
            return self.ports() <= self.listening_ports()
        wait_until(ready, timeout, interval=0.05, msg="admin /healthz and route ports")
        self.wait_all_listening()

    def wait_all_listening(self, timeout=5.0):
        """Every route port is listening on every listen address."""
        want = {(ipaddress.ip_address(a), p)
                for a in self.config["listen_addresses"] for p in self.ports()}
        wait_until(lambda: want <= self.listening(), timeout,
                   msg=f"listeners {sorted((str(a), p) for a, p in want)}")

    def _listeners(self):
        """[(inode, ip_address, port)] of the LISTEN sockets this process holds (read
        from /proc, without connecting, so no connection is counted or routed)."""
        inodes = set()
        for link in self.fds():
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        out = []
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if f[3] != "0A" or f[9] not in inodes:
                    continue
                addr_hex, port_hex = f[1].split(":")
                raw = bytes.fromhex(addr_hex)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                out.append((f[9], ipaddress.ip_address(raw), int(port_hex, 16)))
        return out

    def listening(self):
        """{(ip_address, port)} this process listens on."""
        return {(ip, port) for _, ip, port in self._listeners()}

    def listening_ports(self):
        return {p for _, p in self.listening()}

    def healthz(self):
        return http_get(self.metrics_port, "/healthz", net=self.net)

    def admin_token(self):
        return self.config.get("metrics", {}).get("token")

    def post_reload(self):
        """POST /reload as a script should; (status, body). The reload is done when it answers."""
        return admin_post(self.metrics_port, "/reload", net=self.net, token=self.admin_token())

    def stats(self):
        status, body = http_get(self.metrics_port, "/stats", net=self.net, token=self.admin_token())
        assert status == 200, f"/stats answered {status}: {body[:200]!r}"
        return json.loads(body)

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def conn_fds(self):
        """Open fds other than listening sockets (whose number a reload may change):
        what a leaked connection, timer or pipe would raise."""
        return self.fd_count() - len(self._listeners())

    def fds(self):
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
            except OSError:
                pass
        return sorted(out)

    def status_field(self, name):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise KeyError(name)

    def rss_kib(self):
        return self.status_field("VmRSS")

    def connect(self, port, host="127.0.0.1", **kw):
        return connect(port, host, net=self.net, **kw)

    # signals -----------------------------------------------------------------
    def reload(self, timeout=10.0):
        """SIGHUP; wait until config_generation or reloads_failed moves. True when the
        reload succeeded (then also wait for the new config's ports to listen)."""
        before = self.stats()
        self.proc.send_signal(signal.SIGHUP)

        def moved():
            s = self.stats()
            if s["config_generation"] > before["config_generation"]:
                return "ok"
            if s["reloads_failed"] > before["reloads_failed"]:
                return "failed"
            return None
        ok = wait_until(moved, timeout, msg="config_generation or reloads_failed to change") == "ok"
        if ok:
            self.wait_all_listening()
        return ok

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send sig and wait for the exit; return the exit status."""
        self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"smartproxy did not exit within {timeout}s") from None
        _live.discard(self)
        return self.returncode

    def kill(self):
        """Teardown: SIGTERM, then SIGKILL; never leaves the process behind."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        _live.discard(self)

    def stderr_tail(self, limit=20000):
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-limit:]


def delta(before, after, key):
    """Per-reason growth of a counter object (terminations, refused) between two stats."""
    b, a = before.get(key, {}), after.get(key, {})
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}


def wait_counter(proxy, before, key, reason, n=1, timeout=5.0):
    """Wait until stats[key][reason] grew by at least n since `before`; return the stats."""
    def grown():
        s = proxy.stats()
        return s if s[key].get(reason, 0) - before[key].get(reason, 0) >= n else None
    return wait_until(grown, timeout, msg=f"{key}.{reason} to grow by {n} (since {before.get(key)})")


def assert_accounted(proxy, before):
    """Every connection accepted since `before` has ended with exactly one reason."""
    after = proxy.stats()
    accepted = after["total_connections"] - before["total_connections"]
    ended = sum(delta(before, after, "terminations").values())
    assert ended == accepted, (f"{accepted} connections but {ended} terminations: "
                               f"{delta(before, after, 'terminations')}")


def settled_fds(proxy, timeout=5.0):
    """proxy.conn_fds() once no connection is live and it is stable: a baseline."""
    def stable():
        if proxy.stats()["active_connections"] != 0:
            return None
        a = proxy.conn_fds()
        time.sleep(0.1)
        return a if proxy.conn_fds() == a else None
    return wait_until(stable, timeout, msg="an idle, stable fd count")


def assert_clean(proxy, fd_baseline=None, timeout=5.0):
    """Every connection has ended and left nothing behind: no live connection in any
    state and the process's fds (listening sockets aside) back at the baseline (default:
    the one taken at start)."""
    if fd_baseline is None:
        fd_baseline = proxy.fd_baseline
    last = {}

    def clean():
        s = proxy.stats()
        last["stats"] = s
        last["fds"] = proxy.conn_fds()
        by_state = s.get("by_state", {})
        return (s["active_connections"] == 0
                and all(by_state.get(st, 0) == 0 for st in CONN_STATES)
                and last["fds"] == fd_baseline)
    try:
        wait_until(clean, timeout, interval=0.05, msg="no live connections and baseline fds")
    except AssertionError:
        s = last.get("stats", {})
        raise AssertionError(
            f"proxy not clean after {timeout}s: active_connections="
            f"{s.get('active_connections')} by_state={s.get('by_state')} "
            f"fds={last.get('fds')} (baseline {fd_baseline})\nopen fds: {proxy.fds()}") from None
