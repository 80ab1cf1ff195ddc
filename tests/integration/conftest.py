"""Fixtures: start_proxy (a factory of smartproxy processes), serve (backends),
netns (a throw-away network namespace). Every process, thread and namespace they make
is torn down after the test, also when it fails; a failed test shows the proxy's stderr."""
import os

import pytest

import sp


@pytest.fixture(scope="session", autouse=True)
def _binary_and_reaper():
    if not (os.path.isfile(sp.BIN) and os.access(sp.BIN, os.X_OK)):
        pytest.fail(f"smartproxy binary not found at {sp.BIN} (build it first, or set "
                    f"SMARTPROXY_BIN)", pytrace=False)
    yield
    leaked = [p.pid for p in sp._live if p.alive()]
    sp._reap_all()
    assert not leaked, f"smartproxy processes left running: {leaked}"


@pytest.fixture
def start_proxy(request, tmp_path):
    """start_proxy(config, args=(), net=sp.HOST, wait=True, **kw) -> sp.Proxy, ready to
    serve: admin /healthz answers and every route port listens. kw: sp.Proxy's
    config_name and env."""
    started = []
    request.node._sp_proxies = started

    def start(config, *, args=(), net=sp.HOST, wait=True, **kw):
        p = sp.Proxy(tmp_path / f"proxy{len(started)}", config, args=args, net=net, **kw)
        started.append(p)
        return p.start(wait=wait)

    yield start
    for p in started:
        p.kill()
    # A sanitizer build reports memory errors and leaks on stderr (leaks at exit); any
    # such report fails the test that ran the proxy, even if its assertions passed.
    for p in started:
        text = p.stderr_tail(200000)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, f"sanitizer report from smartproxy:\n{text[-8000:]}"


@pytest.fixture
def serve():
    """serve(handler, hosts=("127.0.0.1",), port=None, ...) -> sp.Server."""
    servers = []

    def start(handler, **kw):
        s = sp.Server(handler, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def blackhole():
    bh = sp.Blackhole()
    yield bh
    bh.close()


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    try:
        ns = sp.NetNS()
    except OSError as e:
        pytest.skip(f"cannot create a network namespace: {e}")
    yield ns
    ns.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for i, p in enumerate(getattr(item, "_sp_proxies", [])):
            rep.sections.append((f"smartproxy #{i} stderr ({p.stderr_path})",
                                 p.stderr_tail() or "(empty)"))
