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


def run_wrk(bench, url, duration, threads, connections, headers=(), cpus=None, timeout_s=2,
            extra_lua=None):
    """Runs wrk for `duration` seconds; returns its summary (dict) plus wrk's own CPU time
    (cpu_s) and the rate fields rps and mib_s. Bounded: killed at duration + 30 s.
    extra_lua: more wrk script (e.g. a `request` function), put before the report."""
    if extra_lua is None:
        script = bench.path("wrk-report.lua")
        if not script.exists():
            script.write_text(WRK_REPORT)
    else:
        import hashlib
        script = bench.path(f"wrk-{hashlib.sha1(extra_lua.encode()).hexdigest()[:10]}.lua")
        if not script.exists():
            script.write_text(extra_lua + "\n" + WRK_REPORT)
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
    if res["errors"]:
        res["wrk_output"] = r.stdout + r.stderr  # wrk's own report, for the error report
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


# ---------------------------------------------------------------------------- added for tls and lua

def start_nginx(bench, name, body, cpus=None, modules=()):
    """Starts an nginx in the foreground with `body` (events/http/stream blocks and any
    top-level directives) in its own directory under the temp dir; error log, pid and temp
    paths there. modules: load_module paths, loaded first. Returns the Proc."""
    d = bench.path(name)
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o755)
    conf = d / "nginx.conf"
    loads = "".join(f"load_module {m};\n" for m in modules)
    conf.write_text(f"""{loads}
error_log {d}/error.log warn;
pid {d}/nginx.pid;
{body}
""")
    return bench.start(name, ["nginx", "-p", str(d), "-e", f"{d}/error.log", "-c", str(conf),
                              "-g", "daemon off;"], cpus=cpus)


def nginx_http_temp_paths(d):
    """The http-block temp path directives, inside directory d (so nothing outside the temp
    dir is written)."""
    return "".join(f"    {k}_temp_path {d}/{k};\n"
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def measure_run(bench, url, proc, backend, duration, warmup, threads, connections, headers=(),
                quiet_wait=20, quiet_cores=0.3, pause=0.5, extra_lua=None, cpus=None, runner=None):
    """One measured wrk run (after waiting for a quiet machine and a warm-up run), with the
    CPU accounting of tcp-forward: proxy_cores, proxy_top_thread_cores, backend_cores,
    wrk_cores, softirq_cores, other_cores (CPU of processes outside the benchmark).
    proc: the server measured (or None: wrk straight to the backend); backend: a Proc or None.
    runner: instead of wrk, a function(seconds) returning a dict like run_wrk's (e.g. run_s_time)."""
    if runner is None:
        def runner(secs):
            return run_wrk(bench, url, secs, threads, connections, headers, cpus, extra_lua=extra_lua)
    if quiet_wait > 0:
        waited, busy = wait_quiet(quiet_wait, quiet_cores)
        if waited >= 1:
            log(f"  (waited {waited:.0f}s for the machine to calm down; busy {busy:.2f} cores)")
    if warmup > 0:
        runner(warmup)
        time.sleep(pause)
    t0 = proc.thread_cpu() if proc else {}
    k0 = backend.cpu_seconds() if backend else 0.0
    h0, w0 = host_cpu(), time.monotonic()
    r = runner(duration)
    wall = time.monotonic() - w0
    for p in (proc, backend):
        if p is not None and not p.alive():
            raise RuntimeError(f"{p.name} exited ({p.popen.returncode}) during the run:\n{p.log_tail()}")
    k1 = backend.cpu_seconds() if backend else 0.0
    h1 = host_cpu()
    t1 = proc.thread_cpu() if proc else {}
    per_thread = [t1[k] - t0.get(k, 0) for k in t1]
    r["proxy_cores"] = sum(per_thread) / wall if proc else None
    r["proxy_top_thread_cores"] = max(per_thread) / wall if per_thread else None
    r["proxy_threads"] = len(per_thread)
    r["backend_cores"] = (k1 - k0) / wall
    r["wrk_cores"] = r["cpu_s"] / wall
    r["softirq_cores"] = (h1["softirq"] - h0["softirq"]) / wall
    busy = (h1["tasks"] + h1["softirq"] - h0["tasks"] - h0["softirq"]) / wall
    r["other_cores"] = max(0.0, busy - (r["proxy_cores"] or 0) - r["backend_cores"] - r["wrk_cores"])
    time.sleep(pause)
    return r


def smartproxy_stats(proc):
    """smartproxy's /stats (proc.metrics_port) as a dict, or a dict with the error."""
    try:
        st, body = http_get("127.0.0.1", proc.metrics_port, "/stats")
        return json.loads(body) if st == 200 else {"status": st}
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def log_problems(path):
    """Lines of a log that look like warnings or errors."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    keys = ("warn", "error", "fatal", "alert", "crit", "emerg", "sanitizer")
    return [l for l in text.splitlines() if any(k in l.lower() for k in keys)]


def cpu_rows(runs, workers, scenarios, peers, bulk_scenarios=()):
    """Rows of the CPU table (medians over rounds), as in tcp-forward; per-unit columns are
    per request, or per MiB for the scenarios in bulk_scenarios."""
    rows = []
    for w in workers:
        for scenario in scenarios:
            for peer in peers:
                sel = [r for r in runs if r["scenario"] == scenario and r["w"] == w and r["peer"] == peer]
                if not sel:
                    continue
                bulk = scenario in bulk_scenarios

                def m(key):
                    return median([r.get(key) for r in sel])

                def per_unit(r, cores):
                    units = r["bytes"] / (1 << 20) if bulk else r["requests"]
                    return cores * r["secs"] / units * 1e6 if cores is not None and units else None

                unit = "us/MiB" if bulk else "us/req"
                per = median([per_unit(r, r["proxy_cores"]) for r in sel])
                per_all = median([per_unit(r, (r["proxy_cores"] or 0) + r["backend_cores"]
                                           + r["wrk_cores"]) for r in sel])
                rows.append([scenario, w, peer, fmt(m("proxy_cores"), 2),
                             fmt(m("proxy_top_thread_cores"), 2), fmt(m("backend_cores"), 2),
                             fmt(m("wrk_cores"), 2), fmt(m("softirq_cores"), 2),
                             fmt(m("other_cores"), 2),
                             "-" if per is None else f"{per:,.1f} {unit}",
                             "-" if per_all is None else f"{per_all:,.1f} {unit}",
                             sum(r["errors"] for r in sel)])
    return rows


CPU_HEADERS = ["scenario", "W", "peer", "proxy", "top thr", "backend", "wrk", "softirq",
               "other", "proxy CPU", "all CPU", "wrk errors"]


def run_s_time(host, port, duration, clients, path="/"):
    """`clients` concurrent `openssl s_time -new -www path` processes for `duration` seconds:
    each makes one TLS connection after the other, every one a full handshake (a new SSL
    object and no session: no resumption), sends "GET path HTTP/1.0" and reads the reply to
    the close. Returns a dict like run_wrk's: requests (connections), rps (per second of wall
    time from start to the last exit), bytes, errors (processes that failed), cpu_s (the
    clients' CPU time), lat_p99_us None. Bounded: killed at duration + 30 s."""
    import re
    argv = ["openssl", "s_time", "-connect", f"{host}:{port}", "-new", "-time", str(duration),
            "-www", path]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    ps = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True) for _ in range(clients)]
    conns, nbytes, errors = 0, 0, 0
    for p in ps:
        try:
            out, _ = p.communicate(timeout=max(1, duration + 30 - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            errors += 1
        m = re.search(r"(\d+) connections in [\d.]+ real seconds, (\d+) bytes read per connection", out)
        if p.returncode != 0 or not m:
            errors += 1
            continue
        conns += int(m.group(1))
        nbytes += int(m.group(1)) * int(m.group(2))
    secs = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"requests": conns, "bytes": nbytes, "duration_us": int(secs * 1e6), "secs": secs,
            "rps": conns / secs, "mib_s": nbytes / secs / (1 << 20), "errors": errors,
            "lat_p99_us": None, "lat_p50_us": None,
            "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}
