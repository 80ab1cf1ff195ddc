"""Backpressure, timeouts, keep-alive treatments, connection limits, reload (SIGHUP and
--watch) and graceful stop."""
import os
import signal
import threading
import time
import zlib

import pytest

import sp
from sp import Lua, route

MiB = 1 << 20


def echo_proxy(start_proxy, serve, config=None, args=()):
    """A proxy with one route to an echo backend; returns (proxy, port)."""
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({**(config or {}), "routes": [route("echo", port, "127.0.0.1", backend.port)]},
                    args=args)
    return p, port


class Traffic:
    """Client threads that connect, echo a message and close, in a loop bounded in count
    and time, recording every failure."""

    def __init__(self, port, threads=4, max_seconds=20, max_per_thread=3000):
        self.ok, self.errors = 0, []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._run, args=(port, max_per_thread))
                        for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, port, max_count):
        for i in range(max_count):
            if self.stop_event.is_set() or time.monotonic() > self.deadline:
                return
            try:
                with sp.connect(port, timeout=5) as c:
                    sp.roundtrip(c, b"msg %d" % i)
                with self.lock:
                    self.ok += 1
            except (OSError, AssertionError) as e:
                with self.lock:
                    self.errors.append(f"{type(e).__name__}: {e}")

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        return self.ok, self.errors


def works(p, port):
    with p.connect(port) as c:
        sp.roundtrip(c, b"works?")
    return True


# ---------------------------------------------------------------- backpressure

def test_backpressure_bounds_memory(start_proxy, serve):
    """1 GiB into a backend that reads 64 KiB then sleeps 1 ms: the proxy's RSS may
    not grow by 32 MiB or more, and every byte arrives (count and CRC)."""
    backend = serve(sp.reader(pause=0.001))
    port = sp.free_port()
    p = start_proxy({"routes": [route("slow", port, "127.0.0.1", backend.port)]})
    with p.connect(port) as c:  # warm up, so lazy allocations are in the baseline
        c.sendall(b"warm-up")
    backend.wait_results(1)
    sp.assert_clean(p)
    idle_rss = p.rss_kib()

    samples, sampling = [], threading.Event()

    def sample():
        while not sampling.wait(0.05):
            samples.append(p.rss_kib())
    sampler = threading.Thread(target=sample)
    sampler.start()

    block, blocks = os.urandom(MiB), 1024
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    deadline = time.monotonic() + 55
    try:
        with p.connect(port, timeout=10) as c:
            for _ in range(blocks):
                assert time.monotonic() < deadline, "1 GiB not through in 55 s"
                c.sendall(block)
        results = backend.wait_results(2, timeout=max(5, deadline - time.monotonic()))
    finally:
        sampling.set()
        sampler.join()
    assert results[-1] == (blocks * MiB, crc), "bytes lost or changed on the way"
    growth_mib = (max(samples) - idle_rss) / 1024
    assert growth_mib < 32, f"RSS grew by {growth_mib:.1f} MiB (idle {idle_rss} KiB)"
    sp.assert_clean(p)


# ---------------------------------------------------------------- timeouts

def test_inactivity_timeout(start_proxy, serve):
    p, port = echo_proxy(start_proxy, serve, {"timeouts": {"inactivity": 300}})
    before = p.stats()
    with p.connect(port) as c:
        for _ in range(8):  # 0.8 s of traffic every 0.1 s: activity keeps it open
            time.sleep(0.1)
            sp.roundtrip(c, b"tick")
        t0 = time.monotonic()
        sp.wait_closed(c, 3)
        idle = time.monotonic() - t0
    assert 0.2 <= idle <= 2.5, f"closed after {idle:.2f}s idle, inactivity is 0.3s"
    sp.wait_counter(p, before, "terminations", "inactivity_timeout")
    sp.assert_clean(p)


def test_keep_alive_extended_multiplies_inactivity(start_proxy, serve):
    p, port = echo_proxy(start_proxy, serve, {
        "timeouts": {"inactivity": 300},
        "keep_alive": {"treatment": "extended", "inactivity_multiplier": 4}})
    before = p.stats()
    with p.connect(port) as c:
        sp.roundtrip(c, b"hello")
        t0 = time.monotonic()
        time.sleep(0.7)
        assert sp.is_open(c), "closed before 4 x 300 ms"
        sp.wait_closed(c, 5)
        idle = time.monotonic() - t0
    assert 1.0 <= idle <= 4.0, f"closed after {idle:.2f}s idle, expected about 1.2s"
    sp.wait_counter(p, before, "terminations", "inactivity_timeout")
    sp.assert_clean(p)


def test_keep_alive_immortal_disables_inactivity(start_proxy, serve):
    p, port = echo_proxy(start_proxy, serve, {
        "timeouts": {"inactivity": 300}, "keep_alive": {"treatment": "immortal"}})
    with p.connect(port) as c:
        sp.roundtrip(c, b"hello")
        time.sleep(1.5)
        assert sp.is_open(c), "an immortal connection was closed for inactivity"
        sp.roundtrip(c, b"still here")
    sp.assert_clean(p)


def test_max_lifetime_closes_busy_connection(start_proxy, serve):
    p, port = echo_proxy(start_proxy, serve, {"timeouts": {"max_lifetime": 800,
                                                           "inactivity": 60000}})
    before = p.stats()
    t0 = time.monotonic()
    with p.connect(port) as c:
        with pytest.raises(OSError):  # busy all along, until the proxy closes it
            while time.monotonic() - t0 < 5:
                sp.roundtrip(c, b"busy")
                time.sleep(0.05)
    lived = time.monotonic() - t0
    assert 0.6 <= lived <= 3.5, f"lived {lived:.2f}s, max_lifetime is 0.8s"
    sp.wait_counter(p, before, "terminations", "max_lifetime")
    sp.assert_clean(p)


# ---------------------------------------------------------------- limits

def test_max_connections_refuses_excess_at_accept(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"workers": 2, "limits": {"max_connections": 3},
                     "routes": [route("limited", port, "127.0.0.1", backend.port)]})
    admitted = [p.connect(port) for _ in range(3)]
    for c in admitted:
        sp.roundtrip(c, b"admitted")
    before = p.stats()
    assert before["active_connections"] == 3
    for _ in range(2):
        sp.closed_on_arrival(port)
    sp.wait_counter(p, before, "refused", "max_connections", 2)
    assert backend.accepted == 3, "a refused connection reached the backend"
    for c in admitted:
        sp.roundtrip(c, b"still served")
    admitted.pop().close()
    sp.wait_until(lambda: p.stats()["active_connections"] == 2, 5, msg="a slot to free up")
    with p.connect(port) as c:
        sp.roundtrip(c, b"a freed slot is usable")
    for c in admitted:
        c.close()
    sp.assert_clean(p)


def test_max_connections_per_ip_counts_each_client_across_workers(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"workers": 2, "limits": {"max_connections_per_ip": 2},
                     "routes": [route("per-ip", port, "127.0.0.1", backend.port)]})
    two = [p.connect(port, src="127.0.0.2") for _ in range(2)]
    for c in two:
        sp.roundtrip(c, b"admitted")
    before = p.stats()
    with p.connect(port, src="127.0.0.2") as third:
        assert sp.wait_closed(third, 5)
    sp.wait_counter(p, before, "refused", "max_connections_per_ip")
    # the termination is counted when the refused connection's close completes
    sp.wait_counter(p, before, "terminations", "max_connections_per_ip")
    with p.connect(port, src="127.0.0.3") as other:  # another client is not affected
        sp.roundtrip(other, b"another address")
    two.pop().close()
    sp.wait_until(lambda: p.stats()["active_connections"] == 1, 5, msg="a slot to free up")
    with p.connect(port, src="127.0.0.2") as again:
        sp.roundtrip(again, b"a freed slot is usable")
    for c in two:
        c.close()
    sp.assert_clean(p)


def test_connection_rate_per_minute_per_ip(start_proxy, serve):
    backend = serve(sp.echo)
    port = sp.free_port()
    p = start_proxy({"workers": 2, "limits": {"connection_rate_per_minute": 3},
                     "routes": [route("rate", port, "127.0.0.1", backend.port)]})
    for _ in range(3):
        with p.connect(port, src="127.0.0.4") as c:
            sp.roundtrip(c, b"within the rate")
    before = p.stats()
    with p.connect(port, src="127.0.0.4") as fourth:
        assert sp.wait_closed(fourth, 5)
    sp.wait_counter(p, before, "refused", "connection_rate")
    with p.connect(port, src="127.0.0.5") as other:
        sp.roundtrip(other, b"another address has its own rate")
    sp.assert_clean(p)


# ---------------------------------------------------------------- reload

def test_reload_under_traffic(start_proxy, serve):
    backend = serve(sp.echo, backlog=1024)
    a, b, c = sp.free_port(), sp.free_port(), sp.free_port()

    def config(*extra):
        return {"routes": [route("a", a, "127.0.0.1", backend.port),
                           *(route(f"r{port}", port, "127.0.0.1", backend.port)
                             for port in extra)]}
    p = start_proxy(config())
    traffic = Traffic(a)
    try:
        sp.wait_until(lambda: traffic.ok >= 20, 10, msg="traffic flowing")

        p.write_config(config(b))
        assert p.reload(), "reload adding a route failed"
        assert works(p, b)

        p.write_config(config(c))
        assert p.reload(), "reload moving a route failed"
        assert works(p, c)
        sp.wait_until(lambda: sp.refused(b), 5, msg=f"removed port {b} to stop listening")

        generation = p.stats()["config_generation"]
        p.write_text("return {\n  routes = {\n")  # a syntax error
        assert not p.reload(), "a broken config was accepted"
        assert p.stats()["config_generation"] == generation
        assert works(p, a) and works(p, c)
        assert "proxy.lua" in p.stderr_tail(), "the failed reload was not logged"

        for _ in range(3):  # several reloads in a row, back to a good config
            p.write_config(config(b, c))
            assert p.reload()
        assert works(p, b) and works(p, c)
        assert p.stats()["config_generation"] == 6
    finally:
        ok, errors = traffic.stop()
    assert not errors, f"{len(errors)} failed connections during reloads: {errors[:5]}"
    assert ok > 0
    sp.assert_clean(p)


def test_a_refused_reload_keeps_writing_the_old_access_log(start_proxy, serve, tmp_path):
    """A reload that names a new log.access file and is then refused by nftables (a
    kernel route whose target does not resolve: refused after the file could be opened)
    changes nothing: access lines keep going to the old file."""
    backend = serve(sp.echo)
    port = sp.free_port()
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    p = start_proxy({"log": {"access": str(old)}, "routes": [route("a", port, "127.0.0.1", backend.port)]})
    with p.connect(port) as c:
        sp.roundtrip(c, b"before the reload")
    sp.wait_until(lambda: old.exists() and old.read_text().count("\n") == 1, 5, msg="the first access line")
    p.write_config({"log": {"access": str(new)}, "routes": [
        route("a", port, "127.0.0.1", backend.port),
        {"name": "kernel", "match": {"ports": sp.free_port()},
         "action": {"type": "forward", "target": {"host": "no-such-host.invalid", "port": 9},
                    "forwarding_engine": "nftables"}}]})
    status, body = p.post_reload()
    assert status == 422 and b'cannot resolve "no-such-host.invalid"' in body, (status, body)
    assert p.stats()["config_generation"] == 1
    with p.connect(port) as c:
        sp.roundtrip(c, b"after the refused reload")
    sp.wait_until(lambda: old.read_text().count("\n") == 2, 5, msg="the second access line in the old file")
    assert not new.exists() or new.read_text() == ""
    sp.assert_clean(p)


def test_live_connection_keeps_its_generation(start_proxy, serve):
    old, new = serve(sp.echo), serve(sp.tag("new"))
    port, other = sp.free_port(), sp.free_port()
    p = start_proxy({"routes": [route("a", port, "127.0.0.1", old.port)]})
    with p.connect(port) as live:
        sp.roundtrip(live, b"before reload")
        p.write_config({"routes": [route("a", port, "127.0.0.1", new.port)]})
        assert p.reload()
        sp.roundtrip(live, b"after reload: still the old target")
        with p.connect(port) as fresh:
            assert sp.recv_line(fresh) == b"new\n", "a new connection used the old config"
        p.write_config({"routes": [route("a", other, "127.0.0.1", new.port)]})
        assert p.reload()  # the live connection's port is gone now
        sp.wait_until(lambda: sp.refused(port), 5, msg=f"port {port} to close")
        sp.roundtrip(live, b"after the port was removed")
    sp.assert_clean(p)


def test_watch_reloads_on_file_change(start_proxy, serve):
    backend = serve(sp.echo)
    a, b, c = sp.free_port(), sp.free_port(), sp.free_port()
    routes = [route("a", a, "127.0.0.1", backend.port)]
    p = start_proxy({"routes": routes}, args=["--watch"])

    def generation(n):
        sp.wait_until(lambda: p.stats()["config_generation"] >= n, 10,
                      msg=f"config_generation {n} after the file changed")
        p.wait_all_listening()

    routes.append(route("b", b, "127.0.0.1", backend.port))
    p.write_config({"routes": routes})  # replaced by rename, as many editors save
    generation(2)
    assert works(p, b)

    routes.append(route("c", c, "127.0.0.1", backend.port))
    p.config = p.full_config({"routes": routes})
    with open(p.config_path, "w") as f:  # rewritten in place
        f.write("return " + sp.lua(p.config) + "\n")
    generation(3)
    assert works(p, c) and works(p, a)


# ---------------------------------------------------------------- graceful stop

def test_graceful_stop_lets_transfer_finish(start_proxy, serve):
    backend = serve(sp.reader(pause=0.005))  # about 12 MiB/s
    port = sp.free_port()
    p = start_proxy({"timeouts": {"graceful_shutdown": 10000},
                     "routes": [route("slow", port, "127.0.0.1", backend.port)]})
    block, blocks = os.urandom(MiB), 32
    errors = []

    def upload():
        try:
            with p.connect(port, timeout=30) as c:
                for _ in range(blocks):
                    c.sendall(block)
        except OSError as e:
            errors.append(e)
    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        sp.wait_until(lambda: backend.bytes >= MiB, 10, msg="the transfer to start")
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        sp.wait_until(lambda: port not in p.listening_ports(), 3,
                      msg="the listener to close on SIGTERM")
        assert backend.bytes < blocks * MiB, "the transfer ended before the test could see it"
    finally:
        uploader.join(60)
    assert not errors, f"upload failed during graceful stop: {errors}"
    [(received, _crc)] = backend.wait_results(1, timeout=30)
    done = time.monotonic()
    assert received == blocks * MiB
    assert p.wait_exit(15) == 0
    exited = time.monotonic()
    assert exited - t0 <= 10 + 1, "exceeded graceful_shutdown"
    assert exited - done <= 3, "did not exit promptly once the last connection ended"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_closes_leftovers_at_deadline(start_proxy, serve, sig):
    p, port = echo_proxy(start_proxy, serve, {"timeouts": {"graceful_shutdown": 1000}})
    with p.connect(port) as c:
        sp.roundtrip(c, b"live")
        t0 = time.monotonic()
        p.proc.send_signal(sig)
        time.sleep(0.2)
        sp.roundtrip(c, b"still served while draining")
        sp.wait_closed(c, 5)
        closed = time.monotonic() - t0
    assert 0.8 <= closed <= 3.5, f"closed {closed:.2f}s after the signal, deadline 1s"
    assert p.wait_exit(5) == 0
    assert time.monotonic() - t0 <= 4.5


def test_stop_without_connections_is_prompt(start_proxy, serve):
    p, _ = echo_proxy(start_proxy, serve, {"timeouts": {"graceful_shutdown": 10000}})
    t0 = time.monotonic()
    assert p.stop(timeout=5) == 0
    assert time.monotonic() - t0 <= 3


def test_reload_runs_changed_required_module_and_keeps_live_connections(start_proxy, serve, tmp_path):
    """A Lua module the config requires is reloaded with it (SIGHUP and --watch): new
    connections run the new code, a live connection keeps the generation it started on."""
    a, b, c = serve(sp.tag("A")), serve(sp.tag("B")), serve(sp.tag("C"))
    port = sp.free_port()
    workdir = tmp_path / "proxy0"  # start_proxy's folder for the first proxy
    workdir.mkdir(parents=True, exist_ok=True)
    module = workdir / "picker.lua"

    def pick(backend):
        tmp = module.with_suffix(".tmp")
        tmp.write_text(f"return {{ port = function(ctx) return {backend.port} end }}\n")
        os.replace(tmp, module)

    pick(a)
    p = start_proxy({"workers": 2, "routes": [
        route("m", port, "127.0.0.1", Lua('require("picker").port'))]}, args=["--watch"])

    def tag_of_new_connection():
        with p.connect(port) as s:
            return sp.recv_line(s).decode().strip()

    assert {tag_of_new_connection() for _ in range(4)} == {"A"}
    live = p.connect(port)
    assert sp.recv_line(live).decode().strip() == "A"

    pick(b)  # --watch sees the module change
    sp.wait_until(lambda: p.stats()["config_generation"] >= 2, 10, msg="reload after module change")
    sp.wait_until(lambda: tag_of_new_connection() == "B", 5, msg="new code on new connections")
    assert {tag_of_new_connection() for _ in range(4)} == {"B"}

    pick(c)
    p.reload()  # SIGHUP too
    sp.wait_until(lambda: tag_of_new_connection() == "C", 5, msg="new code after SIGHUP")

    sp.roundtrip(live, b"still on generation 1")  # the old generation keeps serving it
    live.close()
    sp.assert_clean(p)
