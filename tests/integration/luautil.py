"""Helpers for the Lua socket-handler tests: handler routes, log lines, client threads.

Standard library only; builds on sp.py (which it does not change)."""
import re
import textwrap
import threading
import time

import sp
from sp import Lua

# The first line of most handler bodies.
CORE = 'local core = require "smartproxy.core"'

# Reads lines and writes each back (with "\n") until the client goes away.
ECHO_LINES = """
while true do
  local line = sock:read("*l")
  if not line then return end
  local ok = sock:write(line .. "\\n")
  if not ok then return end
end
"""

# Answers one line: the Lua heap of its state in KiB after a full collection.
LUA_MEMORY = """
collectgarbage()
collectgarbage()
sock:write(string.format("%.3f\\n", collectgarbage("count")))
"""


def handler(body):
    """The Lua source of `function(sock, ctx) <body> end`."""
    return Lua("function(sock, ctx)\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "      ")
               + "\n    end")


def handler_route(name, ports, body, *, domains=None, client_ip=None, priority=None):
    """A socket-handler route whose handler runs `body` (Lua) with `sock` and `ctx`."""
    match = {"ports": ports}
    if domains is not None:
        match["domains"] = domains
    if client_ip is not None:
        match["client_ip"] = client_ip
    r = {"name": name}
    if priority is not None:
        r["priority"] = priority
    r["match"] = match
    r["action"] = {"type": "socket-handler", "handler": handler(body)}
    return r


# ---------------------------------------------------------------------------- checks

def assert_clean(p, timeout=5.0):
    """sp.assert_clean, and no connection left in the "lua" state either."""
    sp.assert_clean(p, timeout=timeout)
    s = p.stats()
    assert s["by_state"].get("lua", 0) == 0, f"connections left in state lua: {s['by_state']}"


def log_lines(p, *needles):
    """stderr lines containing every needle."""
    return [ln for ln in p.stderr_tail(1 << 22).splitlines() if all(n in ln for n in needles)]


def wait_log(p, *needles, timeout=5.0):
    """Wait until a stderr line contains every needle; return the matching lines."""
    return sp.wait_until(lambda: log_lines(p, *needles), timeout,
                         msg=f"a stderr line with {needles!r}")


def failure_report(p, route_name, timeout=5.0):
    """The text of the first `handler failed` report of route_name: its line and what
    follows up to the next log line (where a multi-line traceback goes)."""
    pat = re.compile(r"conn=(\d+) route=" + re.escape(route_name) + r": handler failed: ")

    def find():
        text = p.stderr_tail(1 << 22)
        m = pat.search(text)
        if not m:
            return None
        rest = text[m.start():]
        # the next log line starts with a timestamp; the traceback lines do not
        nxt = re.search(r"\n\d{4}-\d\d-\d\dT", rest)
        return rest[:nxt.start()] if nxt else rest
    return sp.wait_until(find, timeout, msg=f"a 'handler failed' report for route {route_name}")


def lua_memory_kib(p, port):
    with p.connect(port) as c:
        return float(sp.recv_line(c).decode())


# ---------------------------------------------------------------------------- clients

def run_threads(n, fn, timeout=60.0):
    """Run fn(i) on n threads at once (released together); return their results in
    order. Raise AssertionError listing the failures (exceptions or threads that did not
    finish within timeout)."""
    results, errors = [None] * n, []
    lock = threading.Lock()
    gate = threading.Barrier(n)

    def run(i):
        try:
            gate.wait(10)
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        errors.append(f"{stuck} thread(s) still running after {timeout}s")
    assert not errors, f"{len(errors)} client failure(s): {errors[:5]}"
    return results


def recording_echo(banner=b""):
    """A backend that optionally sends `banner` first, then echoes; returns every byte
    it received."""
    def h(conn, srv):
        if banner:
            conn.sendall(banner)
        got = bytearray()
        while True:
            data = conn.recv(65536)
            if not data:
                return bytes(got)
            got += data
            srv.count(len(data))
            conn.sendall(data)
    return h


def recv_until_closed(s, timeout=5.0):
    """read_to_close that returns just the data (FIN or RST both end it)."""
    return sp.read_to_close(s, timeout)[0]
