"""PROXY protocol helpers for the integration tests: header builders and an independent
parser (HAProxy's doc/proxy-protocol.txt, written from the spec, not from the C code),
backends that parse the header they get, a Lua route that records the ctx it is called
with, HAProxy as a peer process, and a leak check over several proxies.

Only the standard library. Loopback only.
"""
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import sp
from sp import Lua

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# Every state /stats may report under by_state (sp.CONN_STATES predates the PROXY header
# and TLS handshake states).
ALL_STATES = ("accepted", "proxy_header", "sniffing", "tls_handshake", "connecting",
              "piping", "closing")

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# v2 TLV types
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30

CMD_LOCAL, CMD_PROXY = 0x0, 0x1
AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX = 0x0, 0x1, 0x2, 0x3
T_UNSPEC, T_STREAM, T_DGRAM = 0x0, 0x1, 0x2


# ---------------------------------------------------------------------------- CRC32C

def _crc32c_table():
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


# ---------------------------------------------------------------------------- builders

def v1(src, dst, sport, dport, proto=None):
    """A v1 line; proto defaults to TCP4/TCP6 from the source address."""
    if proto is None:
        proto = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, dst=None, sport=0, dport=0, *, cmd=CMD_PROXY, family=None,
       transport=T_STREAM, tlvs=(), crc=False, bad_crc=False):
    """A v2 header. family defaults from src (AF_UNSPEC when src is None). tlvs: a list
    of (type, bytes). crc appends a CRC32C TLV over the final header; bad_crc makes it
    wrong by one bit."""
    if family is None:
        family = AF_UNSPEC if src is None else (AF_INET6 if ":" in src else AF_INET)
    if family == AF_INET:
        addr = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
                + struct.pack("!HH", sport, dport))
    elif family == AF_INET6:
        addr = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
                + struct.pack("!HH", sport, dport))
    elif family == AF_UNIX:
        addr = (src or "").encode().ljust(108, b"\0") + (dst or "").encode().ljust(108, b"\0")
    else:
        addr = b""
    body = addr + b"".join(bytes([t]) + struct.pack("!H", len(v)) + v for t, v in tlvs)
    if crc or bad_crc:
        body += bytes([PP2_TYPE_CRC32C]) + struct.pack("!H", 4) + b"\0\0\0\0"
    head = V2_SIG + bytes([0x20 | cmd, family << 4 | transport]) + struct.pack("!H", len(body))
    out = bytearray(head + body)
    if crc or bad_crc:
        value = crc32c(bytes(out)) ^ (1 if bad_crc else 0)
        out[-4:] = struct.pack("!I", value)
    return bytes(out)


# ---------------------------------------------------------------------------- parser

class Invalid(ValueError):
    pass


_V1 = re.compile(rb"PROXY (TCP4|TCP6) (\S+) (\S+) (0|[1-9][0-9]{0,4}) (0|[1-9][0-9]{0,4})\r\n")


def _port(text):
    n = int(text)
    if n > 65535:
        raise Invalid(f"port out of range: {n}")
    return n


def parse(buf):
    """Parse a PROXY header at the start of buf. Returns (header dict, length), or None
    while buf is a proper prefix of a header; raises Invalid otherwise. The dict has
    version, command ("PROXY" | "LOCAL"), family ("TCP4" | "TCP6" | "UNKNOWN" | "UNIX" |
    "UNSPEC"), transport ("STREAM" | "DGRAM" | None), src, dst, sport, dport and, for v2,
    tlvs {type: hex}, authority, alpn, crc_ok."""
    buf = bytes(buf)
    if not buf:
        return None
    if buf[:1] == b"P":
        n = min(len(buf), 6)
        if buf[:n] != b"PROXY "[:n]:
            raise Invalid("bad v1 signature")
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) >= 107:
                raise Invalid("v1 line too long")
            return None
        line = buf[:end + 2]
        if len(line) > 107:
            raise Invalid("v1 line too long")
        if line.startswith(b"PROXY UNKNOWN"):
            return ({"version": 1, "command": "LOCAL", "family": "UNKNOWN", "transport": None,
                     "src": None, "dst": None, "sport": None, "dport": None,
                     "raw": line.decode()}, len(line))
        m = _V1.fullmatch(line)
        if not m:
            raise Invalid(f"bad v1 line {line!r}")
        fam = m.group(1).decode()
        cls = ipaddress.IPv4Address if fam == "TCP4" else ipaddress.IPv6Address
        try:
            src, dst = cls(m.group(2).decode()), cls(m.group(3).decode())
        except ValueError as e:
            raise Invalid(str(e)) from None
        return ({"version": 1, "command": "PROXY", "family": fam, "transport": "STREAM",
                 "src": str(src), "dst": str(dst), "sport": _port(m.group(4)),
                 "dport": _port(m.group(5)), "raw": line.decode()}, len(line))
    if buf[:1] == b"\r":
        n = min(len(buf), 12)
        if buf[:n] != V2_SIG[:n]:
            raise Invalid("bad v2 signature")
        if len(buf) < 16:
            return None
        ver, cmd = buf[12] >> 4, buf[12] & 0xF
        if ver != 2 or cmd not in (CMD_LOCAL, CMD_PROXY):
            raise Invalid(f"bad version/command byte {buf[12]:#x}")
        fam, tr = buf[13] >> 4, buf[13] & 0xF
        if fam > 3 or tr > 2:
            raise Invalid(f"bad family/transport byte {buf[13]:#x}")
        length = struct.unpack("!H", buf[14:16])[0]
        if len(buf) < 16 + length:
            return None
        hdr = bytes(buf[:16 + length])
        body = hdr[16:]
        alen = {AF_UNSPEC: 0, AF_INET: 12, AF_INET6: 36, AF_UNIX: 216}[fam]
        if alen > length:
            raise Invalid("address block overruns header")
        out = {"version": 2, "command": "PROXY" if cmd == CMD_PROXY else "LOCAL",
               "family": {0: "UNSPEC", 1: "TCP4", 2: "TCP6", 3: "UNIX"}[fam],
               "transport": {0: None, 1: "STREAM", 2: "DGRAM"}[tr],
               "src": None, "dst": None, "sport": None, "dport": None,
               "tlvs": {}, "authority": None, "alpn": None, "crc_ok": None}
        if fam == AF_INET:
            out["src"] = str(ipaddress.IPv4Address(body[0:4]))
            out["dst"] = str(ipaddress.IPv4Address(body[4:8]))
            out["sport"], out["dport"] = struct.unpack("!HH", body[8:12])
        elif fam == AF_INET6:
            out["src"] = str(ipaddress.IPv6Address(body[0:16]))
            out["dst"] = str(ipaddress.IPv6Address(body[16:32]))
            out["sport"], out["dport"] = struct.unpack("!HH", body[32:36])
        i = alen
        while i < length:
            if i + 3 > length:
                raise Invalid("TLV head overruns header")
            t, n = body[i], struct.unpack("!H", body[i + 1:i + 3])[0]
            if i + 3 + n > length:
                raise Invalid("TLV overruns header")
            val = body[i + 3:i + 3 + n]
            if t in out["tlvs"] and t != PP2_TYPE_NOOP:
                raise Invalid(f"duplicate TLV {t:#x}")
            out["tlvs"][t] = val.hex()
            if t == PP2_TYPE_AUTHORITY:
                out["authority"] = val.decode()
            elif t == PP2_TYPE_ALPN:
                out["alpn"] = val.decode()
            elif t == PP2_TYPE_CRC32C:
                if n != 4:
                    raise Invalid("bad CRC32C length")
                zeroed = hdr[:16 + i + 3] + b"\0\0\0\0" + hdr[16 + i + 7:]
                out["crc_ok"] = crc32c(zeroed) == struct.unpack("!I", val)[0]
                if not out["crc_ok"]:
                    raise Invalid("CRC32C mismatch")
            i += 3 + n
        out["tlvs"] = {f"{k:#04x}": v for k, v in out["tlvs"].items()}
        out["raw_hex"] = hdr.hex()
        return out, len(hdr)
    raise Invalid(f"not a PROXY header: {buf[:16]!r}")


def _selftest():
    line = v1("127.0.0.2", "127.0.0.1", 4000, 80)
    h, n = parse(line + b"x")
    assert (h["src"], h["sport"], h["dport"], n) == ("127.0.0.2", 4000, 80, len(line)), (h, n)
    b = v2("2001:db8::1", "2001:db8::2", 1, 2, tlvs=[(PP2_TYPE_AUTHORITY, b"a.test")], crc=True)
    h, n = parse(b + b"rest")
    assert n == len(b) and h["authority"] == "a.test" and h["crc_ok"] and h["src"] == "2001:db8::1"
    assert parse(b[:20]) is None
    try:
        parse(v2("1.2.3.4", "5.6.7.8", 1, 2, bad_crc=True))
    except Invalid:
        pass
    else:
        raise AssertionError("bad CRC accepted by the test parser")


_selftest()


# ---------------------------------------------------------------------------- backends

def read_header(conn, limit=16 + 65535, timeout=5.0):
    """Read from conn until parse() completes; returns (header, header bytes, leftover)."""
    conn.settimeout(timeout)
    buf = bytearray()
    while True:
        got = parse(buf)
        if got is not None:
            hdr, n = got
            return hdr, bytes(buf[:n]), bytes(buf[n:])
        if len(buf) > limit:
            raise Invalid("header too long")
        chunk = conn.recv(65536)
        if not chunk:
            raise Invalid(f"EOF before a complete header: {bytes(buf)!r}")
        buf += chunk


def pp_backend(tag=None):
    """A target that expects a PROXY header: parses it, answers one line
    b"PP <json header>\\n" (or b"BAD <reason>\\n"), echoes the bytes that followed the
    header, then echoes everything else. Returns {"header", "raw", "first"} (first: the
    application bytes that arrived with the header) or the Invalid exception."""
    def handler(conn, srv):
        try:
            hdr, raw, rest = read_header(conn)
        except Invalid as e:
            conn.sendall(b"BAD " + str(e).encode() + b"\n")
            return e
        if tag:
            hdr["tag"] = tag
        conn.sendall(b"PP " + json.dumps(hdr).encode() + b"\n")
        if rest:
            conn.sendall(rest)
        conn.settimeout(10)
        result = {"header": hdr, "raw": raw, "first": rest}
        try:
            sp.echo(conn, srv)
        except OSError:
            pass
        return result
    return handler


def read_pp_line(s):
    """The line a pp_backend answers: the parsed header as a dict (AssertionError on
    BAD)."""
    line = sp.recv_line(s, limit=1 << 16)
    assert line.startswith(b"PP "), f"the target refused the header: {line!r}"
    return json.loads(line[3:])


def record_bytes(n):
    """A target that reads exactly n bytes (or to EOF), sends them back, then echoes;
    returns the first n bytes as it received them."""
    def handler(conn, srv):
        conn.settimeout(10)
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        conn.sendall(bytes(buf))
        try:
            sp.echo(conn, srv)
        except OSError:
            pass
        return bytes(buf)
    return handler


# ---------------------------------------------------------------------------- the ctx recorder

def recording_route(name, ports, path, by_ip, default_port=None, *, client_ip=None,
                    priority=None, send=None, host="127.0.0.1"):
    """A forward route whose target port is chosen by a Lua function that first appends
    the ctx it was called with to `path` (one tab-separated line per connection), then
    picks by_ip[ctx.client_ip] (or default_port; no default: a Lua error)."""
    table = "{" + ", ".join(f"[{sp.lua(ip)}] = {p}" for ip, p in by_ip.items()) + "}"
    fallback = str(default_port) if default_port else 'error("no target for " .. ctx.client_ip)'
    fn = Lua(
        "function(ctx) "
        f"local f = assert(io.open({sp.lua(str(path))}, \"a\")) "
        "f:write(table.concat({tostring(ctx.connection_id), tostring(ctx.client_ip), "
        "tostring(ctx.client_port), tostring(ctx.proxied_by), tostring(ctx.server_ip), "
        "tostring(ctx.server_port), tostring(ctx.domain), tostring(ctx.route_name)}, \"\\t\") "
        ".. \"\\n\") "
        "f:close() "
        f"local m = {table} "
        f"return m[ctx.client_ip] or {fallback} "
        "end")
    r = sp.route(name, ports, host, fn, client_ip=client_ip, priority=priority)
    if send is not None:
        r["action"]["send_proxy_protocol"] = send
    return r


CTX_FIELDS = ("connection_id", "client_ip", "client_port", "proxied_by", "server_ip",
              "server_port", "domain", "route_name")


def read_ctx(path):
    """The ctx records written so far by recording_route functions."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        rec = dict(zip(CTX_FIELDS, line.split("\t")))
        for k in ("client_port", "server_port"):
            rec[k] = int(rec[k])
        if rec["proxied_by"] == "nil":
            rec["proxied_by"] = None
        out.append(rec)
    return out


def wait_ctx(path, n, timeout=5.0):
    return sp.wait_until(lambda: len(read_ctx(path)) >= n and read_ctx(path), timeout,
                         msg=f"{n} ctx record(s) in {path}")


def with_send(r, send):
    r["action"]["send_proxy_protocol"] = send
    return r


# ---------------------------------------------------------------------------- clients

def send_with_header(port, header, data=b"", *, src=None, split=None, pause=0.003,
                     host="127.0.0.1", timeout=5.0):
    """Connect (from src), send header + data in one write, or `split` bytes per write
    with a pause between writes (TCP_NODELAY). Returns the socket."""
    c = sp.connect(port, host, src=src, timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = header + data
    if split:
        for i in range(0, len(payload), split):
            c.sendall(payload[i:i + split])
            time.sleep(pause)
    else:
        c.sendall(payload)
    return c


def http_get_from(port, path="/", *, src=None, host="127.0.0.1", timeout=5.0):
    """GET with Connection: close from a chosen source address; (status, body, the
    client's source port)."""
    s = sp.connect(port, host, src=src, timeout=timeout)
    with s:
        cport = s.getsockname()[1]
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        data, _ = sp.read_to_close(s, timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ValueError(f"bad HTTP response {data[:200]!r}")
    return int(head.split(b" ", 2)[1]), body, cport


def outcome(s, timeout=3.0):
    """What happens to a connection within timeout: ("closed", how, data) if the peer
    closes (FIN/RST), else ("open", None, data)."""
    try:
        data, how = sp.read_to_close(s, timeout)
        return "closed", how, data
    except AssertionError:
        return "open", None, b""


# ---------------------------------------------------------------------------- leak check

def assert_clean(*proxies, timeout=5.0):
    """sp.assert_clean on each proxy, and no connection in any state /stats knows
    (proxy_header and tls_handshake included)."""
    for p in proxies:
        sp.assert_clean(p, timeout=timeout)

        def idle():
            st = p.stats().get("by_state", {})
            return all(st.get(k, 0) == 0 for k in ALL_STATES) or None
        sp.wait_until(idle, timeout, msg=f"all by_state counters at 0 on proxy {p.dir.name}")


def pp_stats(p):
    s = p.stats()
    assert "proxy_protocol" in s, f"/stats has no proxy_protocol object: {sorted(s)}"
    return s["proxy_protocol"]


def access_lines(p):
    return [ln for ln in p.stderr_tail(1 << 20).splitlines() if " route=" in ln and "conn=" in ln]


def wait_access_line(p, pattern, timeout=5.0):
    rx = re.compile(pattern)
    return sp.wait_until(lambda: next((ln for ln in access_lines(p) if rx.search(ln)), None),
                         timeout, msg=f"an access log line matching {pattern!r}")


# ---------------------------------------------------------------------------- HAProxy

def tcp_listening(port, host="127.0.0.1"):
    """True when some socket in this namespace listens on host:port (read from
    /proc/net/tcp, without connecting)."""
    want = ipaddress.ip_address(host)
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A":
                continue
            addr_hex, port_hex = f[1].split(":")
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(raw)
            if ip == want or (getattr(ip, "ipv4_mapped", None) == want) or ip.is_unspecified:
                return True
    return False


class HAProxy:
    """haproxy in the foreground (-db) with a config made from `body` (frontends and
    backends; global and defaults are added). Killed by close()."""

    def __init__(self, workdir, body, ports):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "haproxy.cfg"
        self.log = self.dir / "haproxy.log"
        self.ports = list(ports)
        self.conf.write_text(
            "global\n"
            "    maxconn 256\n"
            "defaults\n"
            "    timeout connect 3s\n"
            "    timeout client 15s\n"
            "    timeout server 15s\n"
            + body)
        chk = subprocess.run([HAPROXY, "-c", "-f", str(self.conf)], capture_output=True,
                             text=True, timeout=30)
        if chk.returncode != 0:
            raise AssertionError(f"haproxy -c failed:\n{chk.stdout}{chk.stderr}\n"
                                 f"{self.conf.read_text()}")
        cmd = []
        if shutil.which("setpriv"):
            cmd += ["setpriv", "--pdeathsig", "KILL", "--"]
        cmd += [HAPROXY, "-f", str(self.conf), "-db"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            return all(tcp_listening(p) for p in self.ports)
        sp.wait_until(ready, 10, msg=f"haproxy listening on {self.ports}")

    def log_tail(self, limit=8000):
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def haproxy_available():
    return os.path.exists(HAPROXY) and os.access(HAPROXY, os.X_OK)


# ---------------------------------------------------------------------------- feature probes

def check_config(tmp_dir, config_text):
    """Run `smartproxy --check` on a config; CompletedProcess."""
    path = Path(tmp_dir) / "probe.lua"
    path.write_text(config_text)
    return sp.run_cli("--check", path)
