"""TLS helpers for the integration tests: a throw-away PKI made with the openssl CLI,
TLS route tables, TLS backends (python ssl on sp.Server threads, `openssl s_server`
processes), TLS clients (python ssl, `openssl s_client`, curl) and the /stats "tls" block.

Only the standard library and the openssl / curl command-line tools. Loopback only.
"""
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import sp

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CURL = shutil.which("curl")

TLS_FAILURE_KEYS = ("protocol_version", "no_shared_cipher", "not_tls", "peer_alert",
                    "verify_failed", "eof", "timeout", "other")


# ---------------------------------------------------------------------------- PKI

class Cert:
    """A certificate and its key, as files (PEM)."""

    def __init__(self, cert, key, names, alg):
        self.cert = Path(cert)
        self.key = Path(key)
        self.names = list(names)
        self.alg = alg

    @property
    def pem(self):
        return self.cert.read_text()

    @property
    def key_pem(self):
        return self.key.read_text()

    @property
    def der(self):
        return ssl.PEM_cert_to_DER_cert(self.pem)

    def paths(self):
        """The route's action.tls.certificate, as file paths."""
        return {"cert": str(self.cert), "key": str(self.key)}

    def inline(self):
        """The route's action.tls.certificate, as inline PEM strings."""
        return {"cert": self.pem, "key": self.key_pem}

    def __repr__(self):
        return f"Cert({self.names}, {self.alg}, {self.cert.name})"


def _openssl(*args, cwd=None, input=None):
    r = subprocess.run([OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, timeout=60,
                       input=input)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n"
                           f"{r.stderr.decode(errors='replace')}")
    return r.stdout


def _newkey_args(alg):
    if alg == "rsa":
        return ["-newkey", "rsa:2048"]
    if alg == "ecdsa":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    raise ValueError(alg)


class PKI:
    """A test CA in `dir` and leaf certificates signed by it (or self-signed), made once
    per (names, alg, org, self_signed) and cached."""

    def __init__(self, dir):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key,
                 "-out", self.ca, "-days", "30", "-subj", "/O=smartproxy tests/CN=sp test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._cache = {}
        self._lock = threading.Lock()
        self._serial = 0

    def leaf(self, names, alg="rsa", org="proxy", self_signed=False, days=30):
        """A server certificate for names (a string or list; the first is the CN, all go
        in the SAN), valid for `days` from now. org tells certificates for the same name
        apart."""
        if isinstance(names, str):
            names = [names]
        k = (tuple(names), alg, org, self_signed, days)
        with self._lock:
            if k in self._cache:
                return self._cache[k]
            self._serial += 1
            base = self.dir / f"leaf{self._serial}-{alg}"
            cert, key, csr, ext = (base.with_suffix(s) for s in (".pem", ".key", ".csr", ".ext"))
            san = ",".join(("IP:" if re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", n)
                            else "DNS:") + n for n in names)
            ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                           f"keyUsage=critical,digitalSignature,keyEncipherment\n"
                           f"extendedKeyUsage=serverAuth\n")
            subj = f"/O={org}/CN={names[0]}"
            if self_signed:
                _openssl("req", "-x509", *_newkey_args(alg), "-nodes", "-keyout", key,
                         "-out", cert, "-days", str(days), "-subj", subj,
                         "-addext", f"subjectAltName={san}")
            else:
                _openssl("req", "-new", *_newkey_args(alg), "-nodes", "-keyout", key,
                         "-out", csr, "-subj", subj)
                _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                         "-set_serial", str(1000 + self._serial), "-out", cert, "-days", str(days),
                         "-extfile", ext)
            c = Cert(cert, key, names, alg)
            self._cache[k] = c
            return c


# ---------------------------------------------------------------------------- routes

def tls_route(name, ports, host, port, *, mode="terminate", cert=None, inline=False,
              domains=None, tls_version=None, priority=None, **tls_opts):
    """A forward route with action.tls. cert: a Cert (as paths, or inline PEM when
    inline=True), a dict given verbatim, or None. tls_opts: min_version, upstream_verify,
    upstream_sni, upstream_ca_file (None values are left out)."""
    r = sp.route(name, ports, host, port, priority=priority)
    if domains is not None:
        r["match"]["domains"] = domains
    if tls_version is not None:
        r["match"]["tls_version"] = tls_version
    tls = {"mode": mode}
    if isinstance(cert, Cert):
        tls["certificate"] = cert.inline() if inline else cert.paths()
    elif cert is not None:
        tls["certificate"] = cert
    for k, v in tls_opts.items():
        if v is not None:
            tls[k] = str(v) if isinstance(v, Path) else v
    r["action"]["tls"] = tls
    return r


# ---------------------------------------------------------------------------- stats

def tls_stats(stats, group=None):
    """stats["tls"] (group None), or one of its counter objects ("failures",
    "upstream_failures")."""
    t = stats.get("tls")
    assert isinstance(t, dict), f"/stats has no \"tls\" object: {sorted(stats)}"
    return t if group is None else t.get(group, {})


def tls_delta(before, after, group):
    b, a = tls_stats(before, group), tls_stats(after, group)
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}


def wait_tls_counter(proxy, before, group, key, n=1, timeout=5.0):
    """Wait until stats.tls[group][key] (or stats.tls[key] when group is None) grew by n."""
    def value(s):
        t = tls_stats(s, group)
        return t.get(key, 0)

    b = value(before)

    def grown():
        s = proxy.stats()
        return s if value(s) - b >= n else None
    return sp.wait_until(grown, timeout,
                         msg=f"tls.{group + '.' if group else ''}{key} to grow by {n} "
                             f"(before: {tls_stats(before)})")


# ---------------------------------------------------------------------------- clients

def client_context(ca=None, *, check_hostname=True, verify=True, alpn=None, min_version=None,
                   max_version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.check_hostname = check_hostname
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_connect(port, server_hostname, ctx, *, host="127.0.0.1", session=None, timeout=5.0):
    """A TLS client connection through the proxy; the handshake is done on return."""
    raw = sp.connect(port, host, timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except BaseException:
        raw.close()
        raise


def tls_roundtrip(s, data):
    s.sendall(data)
    got = sp.recv_exact(s, len(data))
    assert got == data, "echo mismatch over TLS"
    return got


def tls_read_to_close(s, timeout=3.0):
    """Read an SSLSocket until the peer closes (close_notify, FIN, RST or a TLS error);
    return (data, how). AssertionError when it is still open at the deadline."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"TLS connection still open after {timeout}s")
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (socket.timeout, TimeoutError):
            raise AssertionError(f"TLS connection still open after {timeout}s") from None
        except ConnectionResetError:
            return bytes(data), "rst"
        except ssl.SSLError as e:
            return bytes(data), f"ssl:{e.reason or e}"
        except OSError as e:
            return bytes(data), f"os:{e}"
        if not chunk:
            return bytes(data), "eof"
        data += chunk


def tls_connect_expect_close(port, server_hostname, ctx, *, send=b"x", timeout=3.0):
    """Connect and expect the proxy to end the connection (during the handshake, or
    after it without ever answering `send`). Returns (phase, detail, data): phase is
    "handshake" or "after"."""
    raw = sp.connect(port, timeout=timeout)
    try:
        try:
            s = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            return "handshake", repr(e), b""
        with s:
            try:
                if send:
                    s.sendall(send)
            except (ssl.SSLError, OSError) as e:
                return "after", repr(e), b""
            data, how = tls_read_to_close(s, timeout)
            return "after", how, data
    finally:
        raw.close()


def client_hello(server_hostname, ctx=None, **ctx_kw):
    """The bytes of the ClientHello the python ssl client would send (via MemoryBIO)."""
    ctx = ctx or client_context(verify=False, **ctx_kw)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    assert data[:1] == b"\x16", data[:16]
    return data


def send_slowly(s, data, step=1, pause=0.001):
    """Send data `step` bytes at a time (TCP_NODELAY, a pause between writes)."""
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(data), step):
        s.sendall(data[i:i + step])
        if pause:
            time.sleep(pause)


def split_records(data):
    """A TLS byte stream cut into its records (header + body each)."""
    out, i = [], 0
    while i + 5 <= len(data):
        n = int.from_bytes(data[i + 3:i + 5], "big")
        out.append(data[i:i + 5 + n])
        i += 5 + n
    assert i == len(data), "trailing partial record"
    return out


PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def s_client(port, servername=None, *, ca=None, args=(), input=b"", timeout=15):
    """Run `openssl s_client` against 127.0.0.1:port, feeding `input` (then waiting for
    the server to close: -ign_eof). Returns (CompletedProcess, DER of the first peer
    certificate or None)."""
    cmd = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", "-ign_eof"]
    if servername is None:
        cmd.append("-noservername")
    else:
        cmd += ["-servername", servername]
    if ca:
        cmd += ["-CAfile", str(ca), "-verify_return_error"]
    cmd += list(args)
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    m = PEM_CERT.search(r.stdout)
    der = ssl.PEM_cert_to_DER_cert(m.group(0).decode()) if m else None
    return r, der


def curl(url, *args, timeout=15):
    r = subprocess.run([CURL, "-sS", "--max-time", "10", *map(str, args), url],
                       capture_output=True, timeout=timeout)
    return r


# ---------------------------------------------------------------------------- backends

def server_context(cert, *, min_version=None, max_version=None):
    """A server SSLContext for cert whose sni_callback records the SNI on the socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version

    def sni(sslsock, name, _ctx):
        sslsock._sp_sni = name  # None when the client sent no SNI
        return None
    ctx.sni_callback = sni
    return ctx


def tls_echo(cert, tag=None, speak_first=False, **ctx_kw):
    """A TLS backend (handler for sp.Server): handshake with cert, then echo. With a tag:
    answer the client's first bytes with "<tag>\\n" instead of echoing them (or, with
    speak_first, send it right after the handshake). Returns {"sni", "version", "bytes"}
    ("bytes": plaintext received), or {"error"} when the handshake failed."""
    ctx = server_context(cert, **ctx_kw)

    def handler(conn, srv):
        conn.settimeout(10)
        try:
            ss = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            return {"error": repr(e), "bytes": 0}
        info = {"sni": getattr(ss, "_sp_sni", None), "version": ss.version(), "bytes": 0}
        with ss:
            try:
                pending_tag = tag
                if tag and speak_first:
                    ss.sendall(tag.encode() + b"\n")
                    pending_tag = None
                while True:
                    data = ss.recv(65536)
                    if not data:
                        break
                    info["bytes"] += len(data)
                    srv.count(len(data))
                    if pending_tag:
                        ss.sendall(pending_tag.encode() + b"\n")
                        pending_tag = None
                    else:
                        ss.sendall(data)
            except (ssl.SSLError, OSError) as e:
                info["end"] = repr(e)
        return info
    return handler


def recorder(tag=None, until=None):
    """A plain backend that sends "<tag>\\n" when given, then records every byte to EOF
    (or until `until` bytes arrived); returns them as bytes."""
    def handler(conn, srv):
        conn.settimeout(10)
        if tag:
            conn.sendall(tag.encode() + b"\n")
        buf = bytearray()
        while until is None or len(buf) < until:
            try:
                data = conn.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            srv.count(len(data))
        return bytes(buf)
    return handler


def tag_on_data(name):
    """A plain backend that waits for the client's first bytes, answers "<name>\\n" (to
    tell backends apart without speaking first), then echoes what follows; when the
    first bytes say "close", it closes after the answer (for `openssl s_client`)."""
    def handler(conn, srv):
        conn.settimeout(10)
        first = conn.recv(65536)
        if not first:
            return None
        conn.sendall(name.encode() + b"\n")
        if b"close" in first:
            return None
        return sp.echo(conn, srv)
    return handler


def http_responder(body=b"hello from the backend\n"):
    """A plain HTTP/1.1 backend: reads one request head, answers 200 with body plus the
    request line, closes. Returns the request head."""
    def handler(conn, srv):
        conn.settimeout(10)
        head = bytearray()
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = conn.recv(65536)
            if not data:
                break
            head += data
        line = bytes(head).split(b"\r\n", 1)[0]
        payload = body + b"request: " + line + b"\n"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(payload) + payload)
        return bytes(head)
    return handler


class SServer:
    """`openssl s_server -www` on 127.0.0.1:port (answers an HTTP GET with a status page
    and closes). Killed by close()."""

    def __init__(self, workdir, cert, port=None, args=()):
        self.port = port or sp.free_port()
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out = self.dir / f"s_server-{self.port}.out"
        self.err = self.dir / f"s_server-{self.port}.err"
        cmd = [OPENSSL, "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(cert.cert),
               "-key", str(cert.key), "-www", *args]
        if shutil.which("setpriv"):
            cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        try:
            sp.wait_until(self._ready, 10, msg=f"openssl s_server on :{self.port}")
        except BaseException:
            self.close()
            raise

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"s_server exited {self.proc.returncode}: "
                                 f"{self.err.read_text(errors='replace')}")
        return b"ACCEPT" in self.out.read_bytes()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class BioClient:
    """A TLS client over a MemoryBIO on a plain socket, so a test controls when each
    flight leaves: the ClientHello byte by byte, the client's Finished held back, ..."""

    def __init__(self, sock, ctx, server_hostname, deadline=10.0):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.deadline = time.monotonic() + deadline

    def _step(self, op, hold=False):
        """Run op() until it completes, moving bytes; with hold, the bytes op produced
        in its final (successful) call stay in self.out for the caller to send."""
        while True:
            assert time.monotonic() < self.deadline, "TLS over the MemoryBIO did not finish"
            try:
                result = op()
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    self.sock.sendall(pending)
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by the peer")
                self.inc.write(data)
                continue
            if not hold:
                self.flush()
            return result

    def flush(self, step=None, pause=0.0):
        pending = self.out.read()
        if pending:
            if step:
                send_slowly(self.sock, pending, step, pause)
            else:
                self.sock.sendall(pending)

    def send_client_hello(self, step=None, pause=0.0):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.flush(step, pause)

    def handshake(self, hold_last_flight=False):
        """Finish the handshake; with hold_last_flight the client's Finished is not sent
        (call flush() to send it)."""
        return self._step(self.obj.do_handshake, hold=hold_last_flight)

    def write(self, data):
        return self._step(lambda: self.obj.write(data))

    def read(self, n=65536):
        return self._step(lambda: self.obj.read(n))

    def read_line(self, limit=4096):
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self.read(limit)
            if not chunk:
                raise ConnectionError(f"EOF after {buf!r}")
            buf += chunk
        return buf
