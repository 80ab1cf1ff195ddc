"""User code is bounded like a client is (SPEC 10): timeouts.lua_budget stops a Lua run
that does not yield, timeouts.config_load bounds loading a config, limits.lua_memory caps
each Lua state, and a worker stuck where neither can reach is reported while SIGTERM still
ends the process."""
import signal
import socket

import luautil as lu
import sp
from sp import Lua

ECHO = Lua("""function(sock)
  local line = sock:read("*l")
  sock:write(line .. "\\n")
end""")


def echo_works(port):
    with sp.connect(port, timeout=10) as c:
        c.sendall(b"ping\n")
        return sp.recv_line(c) == b"ping\n"


def two_routes(handler, port_bad, port_echo):
    return [{"name": "bad", "match": {"ports": port_bad},
             "action": {"type": "socket-handler", "handler": handler}},
            {"name": "echo", "match": {"ports": port_echo},
             "action": {"type": "socket-handler", "handler": ECHO}}]


def test_a_handler_that_never_yields_is_stopped_and_its_worker_serves_again(start_proxy):
    """The issue's own handler: read a line, then loop forever. One worker, so everything
    else waits on that loop until the budget stops it."""
    bad, good = sp.free_ports(2)
    p = start_proxy({"workers": 1, "timeouts": {"lua_budget": 300},
                     "routes": two_routes(Lua("""function(sock)
                         sock:read("*l")
                         while true do end
                       end"""), bad, good)})
    before = p.stats()
    with sp.connect(bad) as c:
        c.sendall(b"go\n")
        assert sp.wait_closed(c, timeout=30) in ("fin", "rst")
    assert echo_works(good)
    after = sp.wait_counter(p, before, "terminations", "lua_budget", timeout=10)
    assert after["lua_budget_exceeded"] - before["lua_budget_exceeded"] == 1
    line = lu.wait_log(p, "route=bad", "handler stopped (timeouts.lua_budget)")[0]
    assert "took longer than 300 ms without yielding" in line
    assert "lua_budget" in p.stats()["terminations"]
    assert "smartproxy_lua_budget_exceeded_total 1" in sp.http_get(p.metrics_port, "/metrics")[1].decode()
    lu.assert_clean(p)


def test_a_pcall_cannot_swallow_the_budget(start_proxy):
    """The error is raised again at every instruction until the run has unwound, so user
    code that catches errors and carries on still ends."""
    bad, good = sp.free_ports(2)
    p = start_proxy({"workers": 1, "timeouts": {"lua_budget": 200},
                     "routes": two_routes(Lua("""function(sock)
                         sock:read("*l")
                         while true do
                           pcall(function() local x = 0 while true do x = x + 1 end end)
                         end
                       end"""), bad, good)})
    before = p.stats()
    with sp.connect(bad) as c:
        c.sendall(b"go\n")
        sp.wait_closed(c, timeout=30)
    sp.wait_counter(p, before, "terminations", "lua_budget", timeout=10)
    assert echo_works(good)
    lu.assert_clean(p)


def test_a_target_function_that_never_returns_is_stopped(start_proxy, serve):
    backend = serve(sp.echo)
    port, good = sp.free_ports(2)
    p = start_proxy({"workers": 1, "timeouts": {"lua_budget": 200},
                     "routes": [{"name": "fn", "match": {"ports": port},
                                 "action": {"type": "forward",
                                            "target": {"host": Lua("function(ctx) while true do end end"),
                                                       "port": backend.port}}},
                                {"name": "echo", "match": {"ports": good},
                                 "action": {"type": "socket-handler", "handler": ECHO}}]})
    before = p.stats()
    with sp.connect(port) as c:
        sp.wait_closed(c, timeout=30)
    sp.wait_until(lambda: p.stats()["lua_budget_exceeded"] > before["lua_budget_exceeded"], 10,
                  msg="lua_budget_exceeded to grow")
    assert echo_works(good)
    lu.wait_log(p, "took longer than 200 ms without yielding")
    lu.assert_clean(p)


def test_check_fails_on_a_config_that_never_finishes_loading(tmp_path):
    cfg = tmp_path / "proxy.lua"
    cfg.write_text("local x = 0\nwhile true do x = x + 1 end\nreturn { routes = {} }\n")
    r = sp.run_cli("--check", str(cfg), timeout=60)
    assert r.returncode == 1, r
    assert f"{cfg}:2: took longer than 10000 ms without yielding (timeouts.config_load" in r.stderr, r.stderr


def test_a_reload_into_a_config_that_never_finishes_is_refused(start_proxy):
    """The serving config's timeouts.config_load bounds the next load; the main thread (the
    admin endpoint, signals) is free again at once and the old routes keep serving."""
    good = sp.free_port()
    p = start_proxy({"timeouts": {"config_load": 300},
                     "routes": [{"name": "echo", "match": {"ports": good},
                                 "action": {"type": "socket-handler", "handler": ECHO}}]})
    text = p.config_path.read_text()
    p.write_text("while true do end\n" + text)
    assert p.reload(timeout=30) is False
    lu.wait_log(p, "reload rejected", "took longer than 300 ms without yielding (timeouts.config_load")
    assert echo_works(good)
    assert p.stats()["config_generation"] == 1


def test_a_compiled_loop_is_reported_and_sigterm_still_ends_the_process(start_proxy):
    """With limits.lua_jit the user's loop may be machine code, which no hook reaches: the
    main thread sees the worker's heartbeat stop, says so, and a stop does not wait for it
    beyond timeouts.graceful_shutdown."""
    bad, good = sp.free_ports(2)
    p = start_proxy({"workers": 2, "timeouts": {"lua_budget": 200, "graceful_shutdown": 500},
                     "limits": {"lua_jit": True},
                     "routes": two_routes(Lua("""function(sock)
                         sock:read("*l")
                         while true do end
                       end"""), bad, good)})
    stuck = sp.connect(bad)
    stuck.sendall(b"go\n")
    sp.wait_until(lambda: p.stats()["workers_stalled"] == 1, 30, msg="a worker reported stalled")
    lu.wait_log(p, "has not run its event loop for")
    assert p.stats()["worker_stalls"] == 1
    assert "smartproxy_workers_stalled 1" in sp.http_get(p.metrics_port, "/metrics")[1].decode()
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait_exit(30) == 2
    lu.wait_log(p, "did not stop within timeouts.graceful_shutdown")
    stuck.close()


def test_lua_memory_fails_the_allocating_handler_alone(start_proxy):
    """A string that doubles and a table that grows stop at the cap with a memory error;
    the worker goes on serving and hands the memory back."""
    grow, table, good = sp.free_ports(3)
    cap = 64 << 20
    p = start_proxy({"workers": 1, "limits": {"lua_memory": cap},
                     "routes": [
                         {"name": "grow", "match": {"ports": grow}, "action": {
                             "type": "socket-handler", "handler": Lua("""function(sock)
                                 sock:read("*l")
                                 local s = "x"
                                 while true do s = s .. s end
                               end""")}},
                         {"name": "table", "match": {"ports": table}, "action": {
                             "type": "socket-handler", "handler": Lua("""function(sock)
                                 sock:read("*l")
                                 local t, i = {}, 0
                                 while true do i = i + 1; t[i] = { i } end
                               end""")}},
                         {"name": "echo", "match": {"ports": good},
                          "action": {"type": "socket-handler", "handler": ECHO}}]})
    before = p.stats()
    for port in (grow, table, grow):
        with sp.connect(port) as c:
            c.sendall(b"go\n")
            sp.wait_closed(c, timeout=60)
    after = sp.wait_counter(p, before, "terminations", "lua_memory", n=3, timeout=10)
    assert after["lua_memory_errors"] - before["lua_memory_errors"] == 3
    assert echo_works(good)
    lu.wait_log(p, "route=table", "handler failed: not enough memory (limits.lua_memory)")
    if not sp.SANITIZED:  # the sanitizer's allocator keeps what it is given
        assert p.rss_kib() < (cap >> 10) + 64 * 1024, p.rss_kib()
    lu.assert_clean(p)


def test_lua_limits_are_validated(tmp_path):
    cfg = tmp_path / "proxy.lua"
    cfg.write_text('return { limits = { lua_memory = 1000 }, routes = {} }\n')
    r = sp.run_cli("--check", str(cfg))
    assert r.returncode == 1 and "limits.lua_memory: expected 0 (no cap) or at least 16777216" in r.stderr, r
    cfg.write_text('return { limits = { lua_jit = "yes" }, routes = {} }\n')
    r = sp.run_cli("--check", str(cfg))
    assert r.returncode == 1 and "limits.lua_jit" in r.stderr, r
