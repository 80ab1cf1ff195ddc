"""docs/man: smartproxy(1) and smartproxy.lua(5) render without a warning (groff -ww,
man -l) and keep up with the binary and the configuration compiler."""
import os
import re
import subprocess

import pytest

import sp
from sp import run_cli

MAN = sp.REPO / "docs" / "man"
PAGES = [MAN / "smartproxy.1", MAN / "smartproxy.lua.5"]


def plain(page):
    """The page's text with roff escapes for '-' and quotes undone, for word searches."""
    return page.read_text().replace("\\-", "-").replace("\\(dq", '"').replace("\\&", "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_renders_without_warnings(page):
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr
    env = {**os.environ, "MANWIDTH": "80", "MANROFFOPT": "-ww", "LC_ALL": "C.UTF-8"}
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert "NAME" in r.stdout and "SEE ALSO" in r.stdout


def test_smartproxy_1_has_every_option_signal_and_exit_status():
    text = plain(MAN / "smartproxy.1")
    help_text = run_cli("--help").stdout
    options = set(re.findall(r"--[a-z][a-z-]+", help_text))
    assert options >= {"--check", "--workers", "--explain", "--nft-cleanup", "--version"}, help_text
    for opt in sorted(options):
        assert opt in text, f"{opt} (from --help) is not in smartproxy(1)"
    signals = text[text.index(".SH SIGNALS"):text.index(".SH EXIT STATUS")]
    for signal in ("SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"):
        assert signal in signals, f"{signal} is not in smartproxy(1) SIGNALS"
    section = text[text.index(".SH EXIT STATUS"):text.index(".SH ENVIRONMENT")]
    assert re.findall(r"^\.B ([0-9])$", section, re.M) == ["0", "1", "2"]
    version = re.search(r"smartproxy (\d+\.\d+\.\d+)", run_cli("--version").stdout).group(1)
    assert f'"smartproxy {version}"' in text, f"smartproxy(1) is not for version {version}"


def test_smartproxy_lua_5_has_every_timeout_and_limit():
    text = plain(MAN / "smartproxy.lua.5")
    settings = (sp.REPO / "core" / "config" / "settings.c").read_text()
    timeouts = [t for t in re.findall(r"TIMEOUT\((\w+)\)", settings) if t != "f"]  # (not the macro's own)
    limits = re.findall(r'"(\w+)"', re.search(r'compile_limits.*?keys\[\] = \{(.*?)NULL\}', settings, re.S).group(1))
    assert len(timeouts) >= 10 and len(limits) >= 8, (timeouts, limits)
    for section, keys in (("timeouts", timeouts), ("limits", limits)):
        part = text[text.index(f".SS {section}"):]
        part = part[:part.index(".SS", 4)]
        for key in keys:
            assert f".B {key}\n" in part, f"{section}.{key} is not in smartproxy.lua(5)"
