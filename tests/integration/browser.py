"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
open a page, read its DOM through JavaScript, collect its console errors, take a
screenshot. Only the standard library: the protocol on a pipe is JSON messages, each
ended by a NUL byte, written to the browser's fd 3 and read from its fd 4.

The browser is kept off the network: no background services, and every host name
resolves to nothing, so the only traffic is to the loopback address a test opens.
"""
import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import sp

CHROMIUM = shutil.which("chromium")

FLAGS = [
    "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--disable-dev-shm-usage",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--password-store=basic", "--mute-audio",
    "--hide-scrollbars", "--window-size=1280,1400", "--remote-debugging-pipe",
]


class BrowserError(AssertionError):
    pass


class Chromium:
    """One headless browser with one tab. Use as a context manager."""

    def __init__(self, workdir, timeout=60.0):
        self.dir = workdir
        self.timeout = timeout
        self.events = []                  # every protocol event: {"method", "params"}
        self._replies = {}
        self._replied = threading.Condition()
        self._next_id = 0
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        profile = os.path.join(workdir, "profile")
        os.makedirs(profile, exist_ok=True)
        self.stderr_path = os.path.join(workdir, "chromium.log")
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        args = [CHROMIUM, *FLAGS, "--no-sandbox", f"--user-data-dir={profile}", "about:blank"]
        # bash puts the pipe ends on fds 3 and 4, where the browser looks for them (not sh:
        # dash takes one-digit fd numbers only).
        cmd = ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash", *args]
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         pass_fds=(to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=self.session)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # protocol -----------------------------------------------------------------
    def _read(self):
        pending = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._replied:
                    self._replies[None] = "the browser closed the pipe"
                    self._replied.notify_all()
                return
            pending += chunk
            *messages, pending = pending.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                with self._replied:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._replied.notify_all()

    def call(self, method, session=None, **params):
        """Send one command; return its result (raise BrowserError on a protocol error)."""
        with self._replied:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._replied:
            while mid not in self._replies:
                if None in self._replies:
                    raise BrowserError(f"{method}: {self._replies[None]}; see {self.stderr_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer in {self.timeout}s")
                self._replied.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # the page -----------------------------------------------------------------
    def open(self, url):
        """Navigate, and wait until the page at url has loaded."""
        self.call("Page.navigate", session=self.session, url=url)
        self.wait_js(f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
                     msg=f"{url} to load")

    def js(self, expression):
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        r = self.call("Runtime.evaluate", session=self.session, expression=expression,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_js(self, expression, timeout=20.0, msg=None):
        """Wait (bounded) until the expression is truthy in the page; return its value.
        An exception (the element not there yet) counts as not yet."""
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        return sp.wait_until(lambda: self.js(guarded), timeout, interval=0.1, msg=msg or expression)

    def text(self, selector):
        return self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent")

    def errors(self):
        """Console errors, uncaught exceptions and browser-logged errors (CSP violations,
        failed loads): one line each."""
        out = []
        for e in list(self.events):
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                entry = p["entry"]
                out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return out

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", session=self.session, format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        self._reader.join(5)
        os.close(self._from_browser)
