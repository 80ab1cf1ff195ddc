"""The Debian package: built by CPack from the install rules, installed with dpkg into a
throwaway root (dpkg --root with --force-script-chrootless: the maintainer scripts run on
this machine with DPKG_ROOT set, so the system user is made inside that root), checked
with the INSTALLED binary and library, then removed and purged without a trace."""
import filecmp
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SMARTPROXY_DEB_BUILD") or REPO / "build-deb")
ACCOUNTS = ("passwd", "group", "shadow", "gshadow")


def run(*cmd, timeout=120, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def deb():
    for old in BUILD.glob("smartproxy_*.deb"):
        old.unlink()
    run("cmake", "-S", REPO, "-B", BUILD, "-DCMAKE_INSTALL_PREFIX=/usr", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        "-DSP_WERROR=ON", timeout=600)
    run("cmake", "--build", BUILD, "-j", str(os.cpu_count() or 2), "--target", "package", timeout=1800)
    debs = list(BUILD.glob("smartproxy_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


def dpkg(root, *args):
    return run("dpkg", f"--root={root}", "--force-script-chrootless", *args)


def status(root):
    r = subprocess.run(["dpkg", f"--root={root}", "-s", "smartproxy"], capture_output=True, text=True, timeout=60)
    m = re.search(r"^Status: (.*)$", r.stdout, re.M)
    return m.group(1) if m else None


def account_lines(root):
    return [line for name in ACCOUNTS if (root / "etc" / name).exists()
            for line in (root / "etc" / name).read_text().splitlines() if line.startswith("smartproxy:")]


def test_dependencies_are_met_by_debian(deb):
    """apt would install nothing but the package itself on this Debian (a simulation: no lock)."""
    r = run("apt-get", "-s", "install", deb)
    assert re.search(r"^0 upgraded, 1 newly installed, 0 to remove", r.stdout, re.M), r.stdout
    assert re.search(r"^Inst smartproxy ", r.stdout, re.M), r.stdout


def test_install_check_remove_and_purge(deb, tmp_path):
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()

    # dependencies are this machine's (the test above); the throwaway root has no packages
    dpkg(root, "--force-depends", "-i", deb)
    assert status(root) == "install ok installed"
    info = run("dpkg", f"--root={root}", "-s", "smartproxy").stdout
    assert re.search(r"^Conffiles:\n /etc/smartproxy/proxy.lua [0-9a-f]{32}$", info, re.M), info
    for path in ("usr/bin/smartproxy", "usr/share/lua/5.1/smartproxy/init.lua", "etc/smartproxy/proxy.lua",
                 "lib/systemd/system/smartproxy.service", "usr/lib/sysusers.d/smartproxy.conf",
                 "usr/share/man/man1/smartproxy.1", "usr/share/man/man5/smartproxy.lua.5"):
        assert (root / path).is_file(), f"/{path} not installed"
    assert filecmp.cmp(root / "lib/systemd/system/smartproxy.service", REPO / "packaging/smartproxy.service",
                       shallow=False)
    assert re.search(r"^smartproxy:x:\d+:\d+:[^:]*:/var/lib/smartproxy:/usr/sbin/nologin$",
                     (root / "etc/passwd").read_text(), re.M), "postinst made no smartproxy system user"
    uid = int((root / "etc/passwd").read_text().split("smartproxy:x:")[1].split(":")[0])
    assert uid < 1000, f"uid {uid}: not a system user"

    # the installed binary checks the installed config with the installed library
    binary, config = root / "usr/bin/smartproxy", root / "etc/smartproxy/proxy.lua"
    r = run(binary, "--check", config)
    assert "configuration OK" in r.stdout, r.stdout
    probe = tmp_path / "probe.lua"
    probe.write_text('error("library: " .. debug.getinfo(require("smartproxy").http_route, "S").source)\n')
    r = subprocess.run([binary, "--check", probe], capture_output=True, text=True, timeout=60)
    assert f"library: @{root}/usr/share/lua/5.1/smartproxy/routes.lua" in r.stderr, r.stderr
    for page in ("man1/smartproxy.1", "man5/smartproxy.lua.5"):
        r = run("man", "-l", root / "usr/share/man" / page, env={**os.environ, "MANWIDTH": "80"})
        assert "SEE ALSO" in r.stdout and not r.stderr

    # remove: the edited conffile stays, as does the user (its files may still exist)
    config.write_text(config.read_text() + "-- edited by the admin\n")
    dpkg(root, "-r", "smartproxy")
    assert status(root) == "deinstall ok config-files"
    assert config.is_file() and not binary.exists()
    assert account_lines(root)

    # purge: nothing of it is left, the user and group included
    (root / "var/lib/smartproxy/certs").mkdir(parents=True)  # as the service would have made
    dpkg(root, "--purge", "smartproxy")
    assert status(root) is None
    assert not account_lines(root), account_lines(root)
    left = [str(p.relative_to(root)) for p in root.rglob("*")
            if not str(p.relative_to(root)).startswith("var/lib/dpkg")  # dpkg's own records
            and p.name not in ACCOUNTS and p.name.rstrip("-") not in ACCOUNTS  # (backups: shadow's own)
            and p.name != ".pwd.lock" and not p.is_dir()]
    assert not left, f"left after purge: {left}"
    dirs = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}
    assert not any("smartproxy" in d for d in dirs), dirs
