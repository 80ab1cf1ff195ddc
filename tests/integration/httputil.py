"""HTTP helpers for the integration tests of the HTTP/1.1 engine: route tables, an HTTP/1.1
origin backend that records what it receives (requests, headers, bodies and every raw byte)
and answers by path, a small HTTP/1.1 client over any socket (plain or TLS) that keeps
pipelined responses apart, and a minimal WebSocket (RFC 6455) client and echo backend.

Only the standard library. Loopback only.

The backend (HttpBackend, a handler for sp.Server) answers, by path:
  /body?size=N&mode=cl|chunked|close   N pattern bytes (pattern_block) with Content-Length,
                                       chunked, or HTTP/1.0 until close; HEAD gets no body
  /sleep?ms=N                          waits, then the echo answer
  /early                               a 103 Early Hints, then the echo answer
  /drip?n=N&ms=M                       N chunks "event i\n", one every M ms
  /status?code=N                       that status, echo body (none for 204/304)
  /hop                                 the echo answer with hop-by-hop response headers
  /respheaders                         the echo answer with X-Backend-Set, X-Override-Me
                                       and two Set-Cookie fields
  ?stall_ms=N (any path)               waits N ms before reading the request body
  ?connection=V (echo and /body)       adds "Connection: V" to the response head
  /close                               the echo answer with Connection: close, then closes
  /noresp                              never answers (until the peer or the test goes away)
  /reset                               resets the connection (RST) without answering
  /garbage                             answers bytes that are not HTTP, then closes
  /ws...  (with Upgrade: websocket)    the handshake, then echoes frames (/ws-eager: a
                                       "welcome" frame in the same write as the 101)
  anything else                        200 with a JSON description of the request (echo)
It sends "100 Continue" when asked (Expect: 100-continue) before reading the body.
"""
import base64
import hashlib
import json
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
import zlib
from urllib.parse import parse_qs, urlsplit

import sp

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MiB = 1 << 20
RAW_LIMIT = 1 * MiB      # raw bytes recorded per backend connection
BODY_KEEP = 64 * 1024    # request body bytes kept per request (the rest is counted + CRC)


# ---------------------------------------------------------------------------- routes

def http_route(name, ports, host=None, port=None, *, domains=None, path=None, headers=None,
               priority=None, client_ip=None, request_headers=None, response_headers=None,
               rewrite_path=None, websocket=None, security=None, type="forward",
               redirect=None, tls=None, protocol="http", targets=None):
    """A route working at the HTTP level (action.protocol = "http" unless protocol=None)."""
    match = {"ports": ports}
    if domains is not None:
        match["domains"] = domains
    if path is not None:
        match["path"] = path
    if headers is not None:
        match["headers"] = headers
    if client_ip is not None:
        match["client_ip"] = client_ip
    action = {"type": type}
    if protocol is not None:
        action["protocol"] = protocol
    if type == "forward":
        if targets is not None:
            action["targets"] = [{"host": h, "port": p} for h, p in targets]
        else:
            action["target"] = {"host": host, "port": port}
    if redirect is not None:
        action["redirect"] = redirect
    if tls is not None:
        action["tls"] = tls
    hdrs = {}
    if request_headers is not None:
        hdrs["request"] = request_headers
    if response_headers is not None:
        hdrs["response"] = response_headers
    if hdrs:
        action["headers"] = hdrs
    if rewrite_path is not None:
        action["rewrite_path"] = rewrite_path
    if websocket is not None:
        action["websocket"] = websocket
    r = {"name": name}
    if priority is not None:
        r["priority"] = priority
    r["match"] = match
    r["action"] = action
    if security is not None:
        r["security"] = security
    return r


class LuaRoute(sp.Lua):
    """A route given as a Lua expression (e.g. a call of a smartproxy helper), which the
    harness can still ask for its ports (route["match"]["ports"])."""

    def __new__(cls, text, ports):
        obj = super().__new__(cls, text)
        obj.ports = ports
        return obj

    def __getitem__(self, key):
        if key == "match":
            return {"ports": self.ports}
        return super().__getitem__(key)


# ---------------------------------------------------------------------------- data

_PATTERN = None


def pattern_block():
    """1 MiB of fixed pseudo-random bytes: bodies are this block repeated (and cut)."""
    global _PATTERN
    if _PATTERN is None:
        import random
        _PATTERN = random.Random(4242).randbytes(MiB)
    return _PATTERN


def pattern_crc(size):
    """(size, crc32) of the first `size` bytes of the repeated pattern."""
    block = pattern_block()
    crc, left = 0, size
    while left > 0:
        n = min(left, len(block))
        crc = zlib.crc32(memoryview(block)[:n], crc)
        left -= n
    return size, crc


def pattern_chunks(size, chunk=MiB):
    """The first `size` bytes of the repeated pattern as memoryviews of <= chunk bytes."""
    block = memoryview(pattern_block())
    pos, left = 0, size
    while left > 0:
        n = min(left, chunk, len(block) - pos)
        yield block[pos:pos + n]
        pos = (pos + n) % len(block)
        left -= n


# ---------------------------------------------------------------------------- reading

class Reader:
    """Buffered reads from a socket (plain or TLS). Raw bytes may be recorded (up to a
    limit) into `record`; `on_bytes(n)` is called for every read."""

    def __init__(self, sock, record=None, on_bytes=None, record_limit=RAW_LIMIT):
        self.sock = sock
        self.buf = bytearray()
        self.record = record
        self.on_bytes = on_bytes
        self.record_limit = record_limit
        self.eof = False

    def _fill(self, want=65536):
        if self.eof:
            return False
        data = self.sock.recv(max(want, 65536))
        if not data:
            self.eof = True
            return False
        if self.record is not None and len(self.record) < self.record_limit:
            self.record += data[:self.record_limit - len(self.record)]
        if self.on_bytes:
            self.on_bytes(len(data))
        self.buf += data
        return True

    def head(self, limit=1 << 20):
        """Bytes up to and including the first blank line (CRLF CRLF); None at EOF
        before any byte; ConnectionError at EOF inside a head."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                out = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return out
            if len(self.buf) > limit:
                raise ValueError("head too long")
            if not self._fill():
                if not self.buf:
                    return None
                raise ConnectionError(f"EOF inside a head: {bytes(self.buf[:200])!r}")

    def line(self, limit=65536):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill():
                raise ConnectionError(f"EOF inside a line: {bytes(self.buf[:200])!r}")

    def exact(self, n):
        while len(self.buf) < n:
            if not self._fill(n - len(self.buf)):
                raise ConnectionError(f"EOF after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def some(self, n):
        """Up to n bytes (at least 1), b"" at EOF."""
        if not self.buf and not self._fill(n):
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def to_eof(self, sink=None):
        out = bytearray()
        while True:
            data = self.some(1 << 20)
            if not data:
                return bytes(out)
            if sink:
                sink(data)
            else:
                out += data


def parse_headers(lines):
    out = []
    for line in lines:
        name, _, value = line.partition(":")
        out.append((name, value.strip(" \t")))
    return out


class Headers(list):
    """[(name, value)] in order; lookups are case-insensitive on the name."""

    def get(self, name, default=None):
        name = name.lower()
        for k, v in self:
            if k.lower() == name:
                return v
        return default

    def all(self, name):
        name = name.lower()
        return [v for k, v in self if k.lower() == name]

    def has(self, name):
        return bool(self.all(name))


def read_body(reader, headers, sink, *, until_eof=False):
    """Reads a message body framed by `headers` (chunked / Content-Length / to EOF when
    until_eof), passing its bytes to sink(bytes). Returns the framing used."""
    te = headers.get("transfer-encoding")
    if te is not None and te.strip().lower().endswith("chunked"):
        while True:
            line = reader.line()
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while reader.line() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return "chunked"
            left = size
            while left:
                data = reader.some(min(left, 1 << 20))
                if not data:
                    raise ConnectionError("EOF inside a chunk")
                sink(data)
                left -= len(data)
            if reader.exact(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
    cl = headers.get("content-length")
    if cl is not None:
        left = int(cl)
        while left:
            data = reader.some(min(left, 1 << 20))
            if not data:
                raise ConnectionError(f"EOF with {left} body bytes to go")
            sink(data)
            left -= len(data)
        return "length"
    if until_eof:
        reader.to_eof(sink)
        return "close"
    return "none"


class Body:
    """A sink keeping the first `keep` bytes, the length and the CRC32."""

    def __init__(self, keep=BODY_KEEP):
        self.keep = keep
        self.data = bytearray()
        self.len = 0
        self.crc = 0

    def __call__(self, data):
        self.len += len(data)
        self.crc = zlib.crc32(data, self.crc)
        if len(self.data) < self.keep:
            self.data += data[:self.keep - len(self.data)]


# ---------------------------------------------------------------------------- client

class Response:
    def __init__(self, version, status, reason, headers, body=b"", interim=(), framing=None):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.interim = list(interim)   # [(status, Headers)] of 1xx responses before it
        self.framing = framing         # "length" | "chunked" | "close" | "none"

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} headers={list(self.headers)} "
                f"body={self.body[:300]!r}>")


def parse_response_head(head):
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
    if not m:
        raise ValueError(f"bad status line {lines[0]!r}")
    return m.group(1), int(m.group(2)), m.group(3) or "", Headers(parse_headers(
        [ln for ln in lines[1:] if ln]))


def read_response(reader, method="GET", sink=None):
    """The next response from reader (1xx interim responses are collected on it)."""
    interim = []
    while True:
        head = reader.head()
        if head is None:
            raise ConnectionError("connection closed before a response")
        version, status, reason, headers = parse_response_head(head)
        if 100 <= status < 200 and status != 101:
            interim.append((status, headers))
            continue
        break
    body = Body(keep=1 << 62) if sink is None else sink
    if method == "HEAD" or status in (101, 204, 304):
        framing = "none"
    else:
        framing = read_body(reader, headers, body, until_eof=True)
    data = bytes(body.data) if sink is None else b""
    return Response(version, status, reason, headers, data, interim, framing)


def build_request(method="GET", target="/", host="app.test", headers=(), body=None,
                  version="HTTP/1.1"):
    out = [f"{method} {target} {version}\r\n".encode()]
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        out.append(f"Host: {host}\r\n".encode())
    for k, v in headers:
        out.append(f"{k}: {v}\r\n".encode("latin-1"))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        out.append(f"Content-Length: {len(body)}\r\n".encode())
    out.append(b"\r\n")
    if body:
        out.append(body)
    return b"".join(out)


class Client:
    """One client connection (plain, or TLS when given a wrapped socket)."""

    def __init__(self, port=None, *, sock=None, host="127.0.0.1", src=None, timeout=10.0):
        self.sock = sock if sock is not None else sp.connect(port, host, src=src,
                                                              timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = Reader(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", target="/", host="app.test", headers=(), body=None,
                version="HTTP/1.1", sink=None):
        self.send(build_request(method, target, host, headers, body, version))
        return self.response(method, sink=sink)

    def get(self, target="/", host="app.test", headers=()):
        return self.request("GET", target, host, headers)

    def response(self, method="GET", sink=None):
        return read_response(self.reader, method, sink)

    def read_to_close(self, timeout=5.0):
        """Whatever is buffered plus the rest until the peer closes; (bytes, "fin"|"rst")."""
        data = bytearray(self.reader.buf)
        self.reader.buf.clear()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout}s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(data), "rst"
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"connection still open after {timeout}s") from None
            except ssl.SSLError as e:  # e.g. an EOF without close_notify
                return bytes(data), f"ssl:{e.reason or e}"
            if not chunk:
                return bytes(data), "fin"
            data += chunk

    def closed(self, timeout=5.0):
        """Waits for the peer to close; returns "fin", "rst" or "ssl:...". Fails on
        unexpected data."""
        data, how = self.read_to_close(timeout)
        assert data == b"", f"unexpected bytes before the close: {data[:300]!r}"
        return how

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fetch(port, target="/", host="app.test", method="GET", headers=(), body=None, **kw):
    """One request on a fresh connection, closed afterwards."""
    with Client(port, **kw) as c:
        return c.request(method, target, host, headers, body)


def raw_exchange(port, data, timeout=5.0, src=None):
    """Sends raw bytes and reads until the proxy closes: (bytes, "fin"|"rst")."""
    with sp.connect(port, src=src, timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        return sp.read_to_close(s, timeout)


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------- WebSocket

def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(payload, opcode=1, mask=True, fin=True):
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        head += key
        payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes(head) + payload


def ws_read_frame(reader):
    """(opcode, payload) of the next frame (unmasked)."""
    b0, b1 = reader.exact(2)
    opcode = b0 & 0x0F
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.exact(8))[0]
    key = reader.exact(4) if b1 & 0x80 else None
    payload = reader.exact(n)
    if key:
        payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return opcode, payload


def ws_upgrade(client, target="/ws", host="app.test", headers=()):
    """Sends the upgrade request; returns the Response (101 expected) and the key."""
    key = ws_key()
    hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"), *headers]
    resp = client.request("GET", target, host, hdrs)
    return resp, key


def ws_echo_check(client, payload):
    client.send(ws_frame(payload))
    op, data = ws_read_frame(client.reader)
    assert (op, data) == (1, payload), (op, data[:100])


def ws_close(client):
    client.send(ws_frame(b"\x03\xe8", opcode=8))
    op, _ = ws_read_frame(client.reader)
    assert op == 8, op


# ---------------------------------------------------------------------------- backend

def _send_head(conn, status, reason, headers, version="HTTP/1.1", body=b""):
    lines = [f"{version} {status} {reason}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in headers]
    lines.append("\r\n")
    conn.sendall("".join(lines).encode("latin-1") + body)  # one write: no Nagle stall


REASONS = {100: "Continue", 101: "Switching Protocols", 103: "Early Hints", 200: "OK",
           201: "Created", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
           404: "Not Found", 418: "I'm a teapot", 500: "Internal Server Error"}


class HttpBackend:
    """An HTTP/1.1 origin (handler for sp.Server) that records every request and every
    raw byte it receives. drop_second: every connection answers its first request only
    and closes (without answering) when the second request's head arrives, like a
    server that timed the idle connection out just as it was reused."""

    def __init__(self, name, *, drop_second=False, proxy_protocol=False):
        self.name = name
        self.drop_second = drop_second
        self.proxy_protocol = proxy_protocol  # expect a PROXY v1 line first on each connection
        self.lock = threading.Lock()
        self.requests = []       # dicts, in arrival order
        self.raw = []            # per connection: the first RAW_LIMIT bytes received
        self.closed = []         # ids of connections whose peer has gone (EOF / error)

    # what the tests look at ------------------------------------------------
    def all_raw(self):
        with self.lock:
            return b"".join(bytes(r) for r in self.raw)

    def conns(self):
        with self.lock:
            return len(self.raw)

    def paths(self):
        with self.lock:
            return [r["target"] for r in self.requests]

    # serving ----------------------------------------------------------------
    def __call__(self, conn, srv):
        raw = bytearray()
        with self.lock:
            cid = len(self.raw)
            self.raw.append(raw)
        conn.settimeout(60)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = Reader(conn, raw, srv.count)
        served = 0
        try:
            proxy_line = None
            if self.proxy_protocol:
                proxy_line = reader.line().decode("latin-1").strip()
            while not srv.stopping.is_set():
                head = reader.head()
                if head is None:
                    return ("eof", served)
                if self.drop_second and served >= 1:
                    target = head.split(b" ", 2)[1].decode("latin-1")
                    with self.lock:
                        self.requests.append({"backend": self.name, "conn": cid,
                                              "target": target, "dropped": True})
                    return ("dropped", served)
                keep = self._serve_one(conn, srv, reader, head, cid, proxy_line)
                served += 1
                if not keep:
                    return ("closed", served)
            return ("stopping", served)
        except (OSError, ValueError) as e:
            return ("error", repr(e))
        finally:
            with self.lock:
                self.closed.append(cid)

    def _serve_one(self, conn, srv, reader, head, cid, proxy_line=None):
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = Headers(parse_headers([ln for ln in lines[1:] if ln]))
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        req = {"backend": self.name, "conn": cid, "method": method, "target": target,
               "version": version, "headers": [list(h) for h in headers],
               "proxy": proxy_line}
        with self.lock:
            self.requests.append(req)

        if "100-continue" in (headers.get("expect") or "").lower():
            _send_head(conn, 100, "Continue", [])
        if (headers.get("upgrade") or "").lower() == "websocket" and url.path.startswith("/ws"):
            self._websocket(conn, reader, headers, eager=url.path == "/ws-eager")
            return False
        if "stall_ms" in q:  # a slow reader: the proxy must hold the client back
            srv.stopping.wait(int(q["stall_ms"]) / 1000)
        body = Body()
        read_body(reader, headers, body)
        req.update(body_len=body.len, body_crc=body.crc,
                   body=bytes(body.data[:4096]).decode("latin-1"))
        wants_close = "close" in (headers.get("connection") or "").lower() or version == "HTTP/1.0"
        path = url.path

        if path == "/noresp":
            while not srv.stopping.is_set():  # until the proxy gives up (EOF) or the test ends
                try:
                    conn.settimeout(0.2)
                    if not conn.recv(65536):
                        return False
                except socket.timeout:
                    continue
            return False
        if path == "/reset":
            sp.rst_close(conn)
            return False
        if path == "/garbage":
            conn.sendall(b"this is not HTTP at all\r\n\r\n")
            return False
        if path == "/drip":  # chunked, one chunk every ms milliseconds
            _send_head(conn, 200, "OK", [("Content-Type", "text/event-stream"),
                                         ("Transfer-Encoding", "chunked"),
                                         ("X-Backend", self.name)])
            for i in range(int(q.get("n", "3"))):
                if i and srv.stopping.wait(int(q.get("ms", "300")) / 1000):
                    return False
                data = f"event {i}\n".encode()
                conn.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
            return not wants_close
        named = [("Connection", q["connection"])] if "connection" in q else []
        if path == "/body":
            return self._body(conn, method, int(q.get("size", "0")), q.get("mode", "cl"),
                              wants_close, named)
        if path == "/sleep":
            if self._sleep(conn, reader, srv, int(q.get("ms", "0")) / 1000):
                return False
        extra = named
        status = 200
        if path == "/early":
            _send_head(conn, 103, "Early Hints", [("Link", "</style.css>; rel=preload")])
        if path == "/status":
            status = int(q.get("code", "200"))
        if path == "/hop":
            extra = [("Connection", "X-Hop-Secret"), ("X-Hop-Secret", "1"),
                     ("Keep-Alive", "timeout=5, max=100"), ("Upgrade", "h2c"),
                     ("Proxy-Connection", "keep-alive")]
        if path == "/respheaders":
            extra = [("X-Backend-Set", "from-backend"), ("X-Override-Me", "backend"),
                     ("Set-Cookie", "a=1; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
                     ("Set-Cookie", "b=2; HttpOnly")]
        if path == "/close":
            wants_close = True
        payload = json.dumps(req).encode()
        hdrs = [("Content-Type", "application/json"), ("X-Backend", self.name),
                ("X-Conn", str(cid)), *extra]
        if status in (204, 304):
            payload = b""
        else:
            hdrs.append(("Content-Length", str(len(payload))))
        if wants_close:
            hdrs.append(("Connection", "close"))
        _send_head(conn, status, REASONS.get(status, "Whatever"), hdrs,
                   body=payload if method != "HEAD" else b"")
        return not wants_close

    @staticmethod
    def _sleep(conn, reader, srv, seconds):
        """Waits; True when the test ends or the peer closes meanwhile (seen at once: a
        proxy that drops the exchange is noticed without waiting for the full time)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if srv.stopping.is_set():
                return True
            ready, _, _ = select.select([conn], [], [], min(left, 0.05))
            if ready and not reader.eof:
                try:
                    peek = conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    return True
                if not peek:
                    return True
                time.sleep(min(left, 0.05))  # pipelined bytes: not an end
        return False

    def _body(self, conn, method, size, mode, wants_close, extra=()):
        hdrs = [("Content-Type", "application/octet-stream"), ("X-Backend", self.name), *extra]
        if mode == "close":
            _send_head(conn, 200, "OK", hdrs, version="HTTP/1.0")
            if method != "HEAD":
                for chunk in pattern_chunks(size):
                    conn.sendall(chunk)
            return False
        if mode == "chunked":
            hdrs.append(("Transfer-Encoding", "chunked"))
        else:
            hdrs.append(("Content-Length", str(size)))
        if wants_close:
            hdrs.append(("Connection", "close"))
        _send_head(conn, 200, "OK", hdrs)
        if method != "HEAD":
            if mode == "chunked":
                for chunk in pattern_chunks(size, 100_000):  # odd sizes: chunks != reads
                    conn.sendall(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
                conn.sendall(b"0\r\n\r\n")
            else:
                for chunk in pattern_chunks(size):
                    conn.sendall(chunk)
        return not wants_close

    def _websocket(self, conn, reader, headers, eager=False):
        key = headers.get("sec-websocket-key") or ""
        # eager: a first frame in the same write as the 101 (a server that speaks first)
        _send_head(conn, 101, "Switching Protocols", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", ws_accept(key)), ("X-Backend", self.name)],
            body=ws_frame(b"welcome", mask=False) if eager else b"")
        while True:
            try:
                op, payload = ws_read_frame(reader)
            except ConnectionError:
                return
            if op == 8:
                conn.sendall(ws_frame(payload[:2], opcode=8, mask=False))
                return
            if op == 9:
                conn.sendall(ws_frame(payload, opcode=10, mask=False))
                continue
            conn.sendall(ws_frame(payload, opcode=op, mask=False))


def backend(serve, name, **kw):
    """A started HttpBackend: returns the sp.Server; its .app is the HttpBackend."""
    app = HttpBackend(name, **kw)
    srv = serve(app)
    srv.app = app
    return srv


def raw_responder(response, *, close=True):
    """A raw backend: reads one request head, records it, answers `response` bytes
    verbatim, then closes (or not)."""
    def handler(conn, srv):
        conn.settimeout(10)
        raw = bytearray()
        r = Reader(conn, raw)
        r.head()
        conn.sendall(response)
        if not close:
            r.to_eof()
        return bytes(raw)
    return handler
