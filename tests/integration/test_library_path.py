"""The `smartproxy` library always comes from the binary's own library, never from files
beside the configuration; the user's own modules there are still found."""
import textwrap

import sp
from sp import Lua, run_cli
from luautil import handler_route

# Stand-ins for the library beside the config: loading any of them is the bug.
FAKE = 'error("the fake {} beside the config was loaded instead of the library")\n'

# Loads everything at config time (the main thread records what workers replay).
REQUIRES = Lua('(function() require "smartproxy"; require "smartproxy.http"; '
               'require "mymod"; require "mine"; return 1 end)()')

ANSWER = """
local sp = require "smartproxy"
local mine, pkg = require "mymod", require "mine"
sock:write(mine.greeting .. " " .. pkg.name .. " " .. type(sp.http_route) .. " " ..
           type(require("smartproxy.http").read_request) .. "\\n")
"""


def shadowing_folder(d):
    (d / "smartproxy").mkdir(parents=True)
    for name in ("init", "http", "routes", "template"):
        (d / "smartproxy" / f"{name}.lua").write_text(FAKE.format(f"smartproxy/{name}.lua"))
    (d / "mymod.lua").write_text('return { greeting = "hello" }\n')
    (d / "mine").mkdir()
    (d / "mine" / "init.lua").write_text('return { name = "mine" }\n')


def test_config_named_smartproxy_with_a_smartproxy_folder_uses_the_library(start_proxy, tmp_path):
    workdir = tmp_path / "proxy0"  # start_proxy's folder for the first proxy
    shadowing_folder(workdir)
    port = sp.free_port()
    p = start_proxy({"workers": REQUIRES, "routes": [handler_route("answer", port, ANSWER)]},
                    config_name="smartproxy.lua")
    with p.connect(port) as s:
        assert sp.recv_line(s).decode().strip() == "hello mine function function"
    assert p.reload()  # the reload records the same library
    with p.connect(port) as s:
        assert sp.recv_line(s).decode().strip() == "hello mine function function"

    r = run_cli("--check", p.config_path)
    assert r.returncode == 0, r.stderr


def test_a_handler_requiring_the_library_later_gets_the_library(start_proxy, tmp_path):
    """A library module the config did not load itself, first required by a handler in a
    worker (not in the recorded sources), still comes from the library."""
    shadowing_folder(tmp_path / "proxy0")
    port = sp.free_port()
    late = """
    local template = require "smartproxy.template"
    sock:write(type(template) .. " " .. require("mymod").greeting .. "\\n")
    """
    p = start_proxy({"workers": Lua('(function() require "mymod"; return 1 end)()'),
                     "routes": [handler_route("late", port, late)]}, config_name="smartproxy.lua")
    with p.connect(port) as s:
        assert sp.recv_line(s).decode().strip() == "table hello"


def test_a_missing_library_module_is_not_looked_for_beside_the_config(tmp_path):
    shadowing_folder(tmp_path)
    (tmp_path / "smartproxy" / "extra.lua").write_text(FAKE.format("smartproxy/extra.lua"))
    cfg = tmp_path / "smartproxy.lua"
    cfg.write_text(textwrap.dedent('''
        require "smartproxy.extra"
        return { routes = {} }
    '''))
    r = run_cli("--check", cfg)
    assert r.returncode == 1
    assert "not part of the smartproxy library" in r.stderr, r.stderr
    assert "fake" not in r.stderr, r.stderr
