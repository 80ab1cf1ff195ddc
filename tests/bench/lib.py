"""Shared helpers for the smartproxy benchmarks (standard library only).

A Bench owns a temp dir and every process it starts; its cleanup (run on normal exit,
on an exception, on SIGINT/SIGTERM/SIGHUP) stops them all, by process group, each of
which was created for that process alone. Everything listens on 127.0.0.1 only.
"""
import atexit
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SMARTPROXY_BIN = os.environ.get("SMARTPROXY_BIN") or str(REPO / "build" / "smartproxy")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- settings

def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def env_float(name, default):
    v = os.environ.get(name)
    return float(v) if v not in (None, "") else default


def env_list(name, default):
    v = os.environ.get(name)
    return v.replace(",", " ").split() if v not in (None, "") else list(default)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- numbers

def median(values):
    """Median of the values that are not None; None when there are none."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def print_table(headers, rows, out=sys.stdout):
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(r)).rstrip()

    print(line(cells[0]), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells[1:]:
        print(line(r), file=out)
    out.flush()


# ---------------------------------------------------------------------------- ports

_handed_out = set()


def free_port(host="127.0.0.1"):
    """A port free on host, below the ephemeral range (so no outgoing connection of the
    benchmark can take it meanwhile), never handed out twice in this run."""
    lo_eph = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    lo, hi = (20000, lo_eph - 1) if lo_eph > 21000 else (10000, 19000)
    for _ in range(2000):
        port = random.randrange(lo, hi)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found")


def port_open(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, popen, log_path):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, n=20):
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def group_pids(self):
        """Our process and its children (e.g. nginx workers): every process whose process
        group is ours (start_new_session made pgid == pid)."""
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == self.pid:  # field 5 (pgrp), counted after the comm field
                pids.append(int(d))
        return pids

    def cpu_seconds(self):
        """user+system CPU time of the whole group so far (all threads of each process)."""
        total = 0
        for pid in self.group_pids():
            try:
                total += _stat_cpu(f"/proc/{pid}/stat")
            except OSError:
                continue
        return total / CLK_TCK

    def thread_cpu(self):
        """{(pid, tid): CPU seconds so far} for every thread of the group."""
        out = {}
        for pid in self.group_pids():
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    out[(pid, int(tid))] = _stat_cpu(f"/proc/{pid}/task/{tid}/stat") / CLK_TCK
                except OSError:
                    continue
        return out


def _stat_cpu(path):
    """utime + stime (fields 14 and 15 of a /proc stat file), in clock ticks."""
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def host_cpu():
    """CPU seconds of the whole machine so far, from /proc/stat: {"tasks": time charged to
    processes (user nice system irq steal; guest is inside user), "softirq": softirq time
    (the kernel keeps it apart from the process it ran on), "total": everything}."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v + [0] * (8 - len(v))
    return {"tasks": (user + nice + system + irq + steal) / CLK_TCK, "softirq": softirq / CLK_TCK,
            "total": sum(v) / CLK_TCK}


def wait_quiet(max_wait, threshold, sample=0.5):
    """Waits (at most max_wait seconds) until the machine is busy with less than `threshold`
    cores over a `sample`-second window. Returns (seconds waited, last busy cores)."""
    start = time.monotonic()
    while True:
        h0 = host_cpu()
        time.sleep(sample)
        h1 = host_cpu()
        busy = (h1["tasks"] + h1["softirq"] - h0["tasks"] - h0["softirq"]) / sample
        waited = time.monotonic() - start
        if busy < threshold or waited >= max_wait:
            return waited, busy


class Bench:
    def __init__(self, name):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"sp-bench-{name}-"))
        os.chmod(self.tmp, 0o755)  # nginx workers run as nobody and must read files here
        self.procs = []
        self.keep_tmp = os.environ.get("KEEP_TMP") == "1"
        self._cleaned = False
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        log(f"\ninterrupted by signal {signum}: stopping everything")
        self.cleanup()
        os._exit(128 + signum)

    def path(self, *parts):
        p = self.tmp.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def start(self, name, argv, cpus=None):
        """Starts argv in its own session (so its children can be stopped with it), output
        to <tmp>/<name>.log. cpus: a taskset CPU list, or None."""
        if cpus is not None:
            argv = ["taskset", "-c", str(cpus)] + list(argv)
        log_path = self.path(f"{name}.log")
        f = open(log_path, "ab")
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=self.tmp)
        f.close()
        p = Proc(name, popen, log_path)
        self.procs.append(p)
        return p

    def wait_port(self, proc, port, host="127.0.0.1", timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            if port_open(host, port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{proc.name} did not listen on {host}:{port} within {timeout}s:\n{proc.log_tail()}")

    def stop(self, proc, timeout=5.0):
        """SIGTERM to the process's own group, SIGKILL after timeout."""
        if proc in self.procs:
            self.procs.remove(proc)
        if proc.popen.poll() is not None:
            # exited; any children left in its group (nginx workers of a dead master) go too
            if proc.group_pids():
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return proc.popen.returncode
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{proc.name} (pid {proc.pid}) ignored SIGTERM for {timeout}s: SIGKILL")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return proc.popen.wait(5)

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        for p in list(reversed(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.name}: {e}")
        if self.keep_tmp:
            log(f"temp dir kept: {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- wrk

WRK_REPORT = r"""
-- prints one machine-readable line at the end of a wrk run
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"bytes":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,' ..
    '"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(bench, url, duration, threads, connections, headers=(), cpus=None, timeout_s=2):
    """Runs wrk for `duration` seconds; returns its summary (dict) plus wrk's own CPU time
    (cpu_s) and the rate fields rps and mib_s. Bounded: killed at duration + 30 s."""
    script = bench.path("wrk-report.lua")
    if not script.exists():
        script.write_text(WRK_REPORT)
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
            "--timeout", f"{timeout_s}s", "-s", str(script)]
    for h in headers:
        argv += ["-H", h]
    argv.append(url)
    if cpus is not None:
        argv = ["taskset", "-c", str(cpus)] + argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=duration + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((l for l in r.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    res = json.loads(line[len("WRKJSON "):])
    secs = res["duration_us"] / 1e6
    res["rps"] = res["requests"] / secs
    res["mib_s"] = res["bytes"] / secs / (1 << 20)
    res["errors"] = sum(res[k] for k in res if k.startswith("err_"))
    res["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    res["secs"] = secs
    return res


# ---------------------------------------------------------------------------- misc

def http_get(host, port, path, timeout=5.0):
    """(status, body) of one HTTP/1.1 GET, connection closed after."""
    import http.client
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def machine_info():
    model = "?"
    try:
        for l in Path("/proc/cpuinfo").read_text().splitlines():
            if l.startswith("model name"):
                model = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"nproc": os.cpu_count(), "cpu_model": model, "loadavg": " ".join(load),
            "kernel": os.uname().release}


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"
