"""The rock (rocks/): a git+https source with a branch (or a release tag), every library
module in it, and `luarocks --lua-version 5.1 make` installs a library LuaJIT can use."""
import re
import shutil
import subprocess

import pytest

import sp

ROCKSPEC = sp.REPO / "rocks" / "smartproxy-scm-1.rockspec"


def rockspec_field(name):
    """The value of a dotted field of the rockspec ("nil" when absent), read by LuaJIT as
    luarocks reads it: the file run in an environment of its own."""
    read = (f'local t = {{}}; setfenv(assert(loadfile("{ROCKSPEC}")), t)(); '
            f'for k in ("{name}"):gmatch("[^.]+") do t = type(t) == "table" and t[k] or nil end; '
            'io.write(tostring(t))')
    r = subprocess.run(["luajit", "-e", read], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_rockspec_source_is_a_git_https_url_with_a_branch():
    url = rockspec_field("source.url")
    assert re.fullmatch(r"git\+https://[^/\s]+/[^/\s]+/smartproxy\.git", url), url
    assert rockspec_field("source.branch") != "nil" or rockspec_field("source.tag") != "nil"


def test_rock_has_every_library_module():
    listed = set(re.findall(r'"(lua/smartproxy/[a-z_]+\.lua)"', ROCKSPEC.read_text()))
    present = {str(p.relative_to(sp.REPO)) for p in (sp.REPO / "lua" / "smartproxy").glob("*.lua")}
    assert listed == present, f"rockspec modules {sorted(listed)} != library files {sorted(present)}"


def test_luarocks_make_installs_a_library_luajit_loads(tmp_path):
    if not shutil.which("luarocks"):
        pytest.fail("luarocks is missing (.ci/deps installs it)")
    tree = tmp_path / "tree"
    r = subprocess.run(["luarocks", "--lua-version", "5.1", "make", str(ROCKSPEC), "--tree", str(tree)],
                       cwd=sp.REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lib = tree / "share" / "lua" / "5.1"
    probe = f"""
    package.path = "{lib}/?.lua;{lib}/?/init.lua"
    local sp = require "smartproxy"
    local route = sp.http_route("example.com", "127.0.0.1:8080")
    io.write(route.match.ports, " ", debug.getinfo(sp.http_route, "S").source)
    """
    r = subprocess.run(["luajit", "-e", probe], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"80 @{lib}/smartproxy/routes.lua", r.stdout
