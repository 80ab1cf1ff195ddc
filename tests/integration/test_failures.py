"""Targets that fail and clients that vanish: every connection ends promptly, is counted
with the right reason and leaves nothing behind (assert_clean after each scenario)."""
import os
import socket
import threading
import time

import pytest

import sp
from sp import route


def closes_promptly(p, port, limit):
    """Connect, send, and return the seconds until the proxy closes the client."""
    elapsed = sp.closed_on_arrival(port, net=p.net, send=b"hello", timeout=limit + 3)
    assert elapsed <= limit, f"client closed after {elapsed:.2f}s, expected <= {limit}s"
    return elapsed


def test_target_refuses(start_proxy):
    closed, port = sp.free_port(), sp.free_port()  # nothing listens on `closed`
    p = start_proxy({"routes": [route("refused", port, "127.0.0.1", closed)]})
    before = p.stats()
    for _ in range(3):
        closes_promptly(p, port, 2)
    s = sp.wait_counter(p, before, "terminations", "connect_refused", 3)
    assert sp.delta(before, s, "terminations") == {"connect_refused": 3}
    sp.assert_clean(p)


def test_target_accepts_then_resets(start_proxy, serve):
    backend = serve(sp.reset(after_data=True))
    port = sp.free_port()
    p = start_proxy({"routes": [route("reset", port, "127.0.0.1", backend.port)]})
    before = p.stats()
    closes_promptly(p, port, 2)
    sp.wait_counter(p, before, "terminations", "target_reset")
    sp.assert_clean(p)


def check_connect_timeout(p, port, connect_ms):
    before = p.stats()
    elapsed = closes_promptly(p, port, connect_ms / 1000 + 3)
    assert elapsed >= connect_ms / 1000 * 0.8, f"closed after {elapsed:.2f}s: before the timeout"
    sp.wait_counter(p, before, "terminations", "connect_timeout")
    sp.assert_clean(p)


@pytest.mark.netns
def test_connect_timeout_target_drops_syn(start_proxy, netns):
    """In a namespace of its own, nft drops every SYN to the target port."""
    dropped, port = 20001, 20002  # the namespace is empty: any port is free
    try:
        netns.drop_tcp_port(dropped)
    except OSError as e:
        pytest.skip(f"cannot install the nft drop rule: {e}")
    probe = netns.socket()
    probe.settimeout(0.3)
    with pytest.raises(socket.timeout):  # the harness's precondition, not the proxy's
        probe.connect(("127.0.0.1", dropped))
    probe.close()
    p = start_proxy({"timeouts": {"connect": 1000},
                     "routes": [route("dropped", port, "127.0.0.1", dropped)]}, net=netns)
    check_connect_timeout(p, port, 1000)


def test_connect_timeout_target_backlog_full(start_proxy, blackhole):
    """The same on plain loopback: a full accept queue makes the kernel drop SYNs."""
    port = sp.free_port()
    p = start_proxy({"timeouts": {"connect": 1000},
                     "routes": [route("full", port, "127.0.0.1", blackhole.port)]})
    check_connect_timeout(p, port, 1000)


# ---------------------------------------------------------------- vanishing clients

def open_clients(p, port, n):
    return [p.connect(port) for _ in range(n)]


def wait_state(p, state, n):
    sp.wait_until(lambda: p.stats()["by_state"].get(state, 0) >= n, 5,
                  msg=f"{n} connections in state {state}")


def vanish_immediately(p, port, **_):
    for i in range(100):
        c = p.connect(port)
        sp.rst_close(c) if i % 2 else c.close()


def vanish_while_connecting(p, port, blackhole, **_):
    clients = open_clients(p, port, 6)
    wait_state(p, "connecting", 6)
    for i, c in enumerate(clients):
        sp.rst_close(c) if i % 2 else c.close()


def vanish_with_upload_in_flight(p, port, **_):
    clients = open_clients(p, port, 4)
    wait_state(p, "piping", 4)
    block = os.urandom(1 << 20)
    for c in clients:
        c.setblocking(False)
        for _ in range(8):  # as much as fits, without blocking
            try:
                c.send(block)
            except BlockingIOError:
                break
    for i, c in enumerate(clients):
        sp.rst_close(c) if i % 2 else c.close()


def vanish_with_download_in_flight(p, port, **_):
    clients = open_clients(p, port, 4)
    for c in clients:
        sp.recv_exact(c, 256 * 1024)  # the firehose is flowing
    for c in clients:
        c.close()  # unread data: the kernel answers with RST


def vanish_with_rst_while_idle(p, port, **_):
    clients = open_clients(p, port, 4)
    for c in clients:
        sp.roundtrip(c, b"ping")
    for c in clients:
        sp.rst_close(c)


VANISH = {  # phase: (how the client vanishes, the backend, the termination to expect)
    "immediately": (vanish_immediately, sp.echo, None),
    "while_connecting": (vanish_while_connecting, None, None),
    "upload_in_flight": (vanish_with_upload_in_flight, sp.reader(pause=0.005), None),
    "download_in_flight": (vanish_with_download_in_flight, sp.firehose(), None),
    "rst_while_piping": (vanish_with_rst_while_idle, sp.echo, ("client_reset", 4)),
}


@pytest.mark.parametrize("phase", list(VANISH))
def test_client_vanishes(start_proxy, serve, blackhole, phase):
    vanish, handler, counted = VANISH[phase]
    target_port = serve(handler).port if handler else blackhole.port
    port = sp.free_port()
    # a long connect timeout: cleanup must come from the client going away, not a timer
    p = start_proxy({"timeouts": {"connect": 20000},
                     "routes": [route(phase, port, "127.0.0.1", target_port)]})
    before = p.stats()
    vanish(p, port, blackhole=blackhole)
    sp.assert_clean(p)
    if counted:
        sp.wait_counter(p, before, "terminations", *counted)
    sp.assert_accounted(p, before)
    assert "connect_timeout" not in sp.delta(before, p.stats(), "terminations")


def test_rapid_connect_close_cycles(start_proxy, serve):
    """5,000 connect/close cycles from 20 threads: a third exchange a byte, a third close
    at once, a third reset. Bounded at 90 s."""
    backend = serve(sp.echo, backlog=1024)
    port = sp.free_port()
    p = start_proxy({"routes": [route("rapid", port, "127.0.0.1", backend.port)]})
    before = p.stats()
    n_threads, per_thread = 20, 250
    deadline = time.monotonic() + 90
    errors, lock = [], threading.Lock()

    def client(i):
        for j in range(per_thread):
            if time.monotonic() > deadline:
                with lock:
                    errors.append("deadline reached")
                return
            try:
                c = sp.connect(port, timeout=10)
                kind = (i + j) % 3
                if kind == 0:
                    sp.roundtrip(c, b"x")
                    c.close()
                elif kind == 1:
                    c.close()
                else:
                    sp.rst_close(c)
            except (OSError, AssertionError) as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not errors, f"{len(errors)} client errors, first: {errors[:5]}"
    total = n_threads * per_thread
    sp.wait_until(lambda: p.stats()["total_connections"] - before["total_connections"] >= total,
                  10, msg=f"{total} connections counted")
    sp.assert_clean(p, timeout=10)
    assert p.stats()["total_connections"] - before["total_connections"] == total
    sp.assert_accounted(p, before)
