"""Whole-process download benchmark against real servers and clients (run by hand, never in CI).

    .venv/bin/python benchmarks/bench_tls.py [--rounds 2] [--parts tls1g,tls200,plain,start] [--curl-tls-rounds 1]

It starts ``nginx`` from a temporary folder (``-p DIR -c FILE``, ``daemon off;``) with a self-signed
certificate made by ``openssl`` and serves two model-shaped files (a LoRA-like safetensors, random
payload): 1 GB and 200 MB.  Two listeners:

* https with ``limit_rate 40m`` per connection: a CDN-like cap, where segmented clients win;
* plain http on loopback, no cap (nginx ``sendfile``): raw throughput.

What is timed, always the whole process, from spawn to exit:

* ours: ``python -m invokeai_model_install --root R --add URL#sha256=HEX`` on a fresh root: resolve,
  download, sha256 verified before the file moves into place, identify, register in models.yaml.
  The certificate is trusted through ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``/``SSL_CERT_FILE``
  (the engine's CA setting, in that order; all three point at the test certificate).
* ``aria2c -x8 -s8 -k1M`` (the segmented-download anchor; it does not hash), ``curl`` (one stream).

The CPU time (user + system) of each run is printed too: on a shared machine it says more than the
wall time about what each tool costs.  Tools run in alternation, the order rotated every round; each run starts from a synced disk with its
output deleted (so nobody pays for the previous run's write-back).  Best of ``--rounds`` is compared
(``curl`` over the capped TLS link runs ``--curl-tls-rounds`` times: it is link-bound at ~40 MB/s).

The start-up part (``start``) uses a small file over plain http: the time from spawn to nginx's
receipt of the first request (``$msec`` - ``$request_time`` in the access log), spawn to exit of a
small URL install, and spawn to exit of ``--add`` of a small local file (registered in place).

Goals printed: 1 GB TLS <= 1.0x aria2c (best of 2 each); 200 MB TLS <= 1.2x aria2c; 1 GB plain http
<= 1.0x curl; start -> first request <= 0.25 s; small local file registered <= 0.4 s.
The script installs nothing: it says which tool is missing (Debian: ``apt-get install nginx aria2 curl``).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOALS = {"tls1g": 1.0, "tls200": 1.2, "plain": 1.0, "first_request": 0.25, "local_add": 0.4}
MB = 1_000_000

NGINX_CONF = """
{user}
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
    types {{ }}
    default_type application/octet-stream;
    log_format timed '$msec $request_time $status "$request"';
    access_log {d}/access.log timed;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        root {d}/www;
        limit_rate 40m;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        root {d}/www;
    }}
}}
"""


# --------------------------------------------------------------------------- set-up


def missing_tools() -> list[str]:
    need = {"nginx": "nginx", "openssl": "openssl", "aria2c": "aria2", "curl": "curl"}
    out = []
    for tool, pkg in need.items():
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            out.append(f"{tool} (Debian package {pkg})")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(path: Path, size: int) -> str:
    """A LoRA-shaped safetensors file of ``size`` bytes (random payload); -> its sha256.

    One small ``attn2.to_k`` lora_down tensor (768 wide: an SD-1 LoRA to the probe) and one large filler
    tensor; the installer identifies and registers it like a real LoRA.
    """
    small = 4 * 768 * 2
    header_probe = {"__metadata__": {"ss_network_module": "networks.lora"}}
    name_k = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    name_f = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"
    # header length depends on the numbers in it: fix the payload after a first guess
    for _ in range(3):
        hdr_len = len(json.dumps(header_probe).encode()) + 8
        filler = (size - 8 - hdr_len - small) // 2 * 2
        cols = 4
        rows = filler // (2 * cols)
        filler = rows * cols * 2
        header_probe = {
            "__metadata__": {"ss_network_module": "networks.lora"},
            name_k: {"dtype": "F16", "shape": [4, 768], "data_offsets": [0, small]},
            name_f: {"dtype": "F16", "shape": [rows, cols], "data_offsets": [small, small + filler]},
        }
    header = json.dumps(header_probe).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    h = hashlib.sha256()
    block = os.urandom(16 << 20)
    with open(path, "wb") as fh:
        head = struct.pack("<Q", len(header)) + header
        fh.write(head)
        h.update(head)
        left = small + filler
        i = 0
        while left > 0:
            chunk = bytes([i & 0xFF]) + block[1 : min(left, len(block))]
            fh.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


class Nginx:
    def __init__(self, d: Path) -> None:
        self.d = d
        self.tls_port = free_port()
        self.http_port = free_port()
        (d / "tmp").mkdir(exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
             "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )
        user = "user root;" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, d=d, tls_port=self.tls_port, http_port=self.http_port))
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([exe, "-p", str(d), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.proc.stderr.read().decode()}")
                time.sleep(0.05)
        self.cert = d / "cert.pem"

    def url(self, name: str, tls: bool) -> str:
        return f"https://127.0.0.1:{self.tls_port}/{name}" if tls else f"http://127.0.0.1:{self.http_port}/{name}"

    def log_size(self) -> int:
        try:
            return (self.d / "access.log").stat().st_size
        except OSError:
            return 0

    def first_request_since(self, offset: int) -> float | None:
        """Wall-clock start of the first request logged after ``offset``."""
        with open(self.d / "access.log", "rb") as fh:
            fh.seek(offset)
            for line in fh.read().decode().splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    return float(parts[0]) - float(parts[1])
        return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- runners


class Bench:
    def __init__(self, work: Path, nginx: Nginx) -> None:
        self.work = work
        self.nginx = nginx
        self.out = work / "out"
        self.env = {
            **os.environ,
            # our settings take REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, then SSL_CERT_FILE: name the test
            # certificate in all three (machines often set the first two to the system bundle)
            "SSL_CERT_FILE": str(nginx.cert),
            "REQUESTS_CA_BUNDLE": str(nginx.cert),
            "CURL_CA_BUNDLE": str(nginx.cert),
            "HF_HOME": str(work / "hf"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONPATH": str(REPO),
        }
        for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "INVOKEAI_MAX_CONNECTIONS", "INVOKEAI_INSTALL_WORKER"):
            self.env.pop(var, None)
        self.rss_mb: list[float] = []
        self.cpu: dict[str, list[float]] = {}  # CPU seconds (user + system) of each run, by tool

    def fresh(self) -> None:
        # no dirty pages from the previous run: the kernel's write-back would throttle whoever runs next
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir()
        os.sync()
        time.sleep(0.5)

    def _timed(self, argv: list[str], env: dict | None = None) -> tuple[float, int, float, str]:
        """-> (seconds, exit status, peak RSS of the process tree in MB, stderr tail); CPU time in ``last_cpu``."""
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env or self.env, cwd=self.work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        self.last_cpu = usage.ru_utime + usage.ru_stime  # the process and the children it waited for
        proc.returncode = os.waitstatus_to_exitcode(status)
        return dt, proc.returncode, usage.ru_maxrss / 1024, err.decode(errors="replace")[-2000:]

    def ours(self, url: str, sha: str, *, expect: str | None = None, env: dict[str, str] | None = None) -> float:
        root = self.out / "root"
        (root / "configs").mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "invokeai_model_install", "--root", str(root), "--add", f"{url}#sha256={sha}" if sha else url]
        dt, rc, rss, err = self._timed(argv, {**self.env, **env} if env else None)
        if rc != 0:
            raise RuntimeError(f"ours failed (exit {rc}): {err}")
        if expect is not None:
            got = list(root.rglob(expect))  # a LoRA lands in ROOT/loras (the InvokeAI 2.3 layout)
            if not got:
                raise RuntimeError(f"ours exited 0 but {expect} is not under {root}")
        self.rss_mb.append(rss)
        return dt

    def local_add(self, path: Path) -> float:
        root = self.out / "root"
        (root / "configs").mkdir(parents=True, exist_ok=True)
        dt, rc, _, err = self._timed([sys.executable, "-m", "invokeai_model_install", "--root", str(root), "--add", str(path)])
        if rc != 0:
            raise RuntimeError(f"ours --add {path} failed (exit {rc}): {err}")
        return dt

    def aria2c(self, url: str) -> float:
        dt, rc, _, err = self._timed(
            ["aria2c", "-x8", "-s8", "-k1M", f"--ca-certificate={self.nginx.cert}", "-d", str(self.out), "-o", "aria2.bin",
             "--allow-overwrite=true", "--auto-file-renaming=false", "--console-log-level=warn", "--summary-interval=0",
             "--download-result=hide", "-q", url]
        )
        if rc != 0:
            raise RuntimeError(f"aria2c failed ({rc}): {err}")
        return dt

    def curl(self, url: str) -> float:
        dt, rc, _, err = self._timed(["curl", "-s", "-f", "--cacert", str(self.nginx.cert), "-o", str(self.out / "curl.bin"), url])
        if rc != 0:
            raise RuntimeError(f"curl failed ({rc}): {err}")
        return dt

    def first_request(self, url: str, sha: str) -> tuple[float, float]:
        """-> (spawn to first request at the server, spawn to exit)."""
        offset = self.nginx.log_size()
        t_wall = time.time()
        dt = self.ours(url, sha)
        first = self.nginx.first_request_since(offset)
        if first is None:
            raise RuntimeError("nginx logged no request")
        return first - t_wall, dt


def show(name: str, runs: list[float]) -> str:
    if not runs:
        return f"  {name:8s}   (not run)"
    spread = f"spread {100 * (max(runs) - min(runs)) / min(runs):.0f}%" if len(runs) > 1 else ""
    return f"  {name:8s} best {min(runs):6.2f} s  median {statistics.median(runs):6.2f} s  runs {', '.join(f'{x:.2f}' for x in runs)}  {spread}"


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else f"NOT met (over by {100 * (value / goal - 1):.0f}%)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="runs of each tool per part (best is compared; default 2)")
    ap.add_argument("--curl-tls-rounds", type=int, default=1, help="curl runs over the capped TLS link (link-bound; default 1)")
    ap.add_argument("--parts", default="tls1g,tls200,plain,start", help="comma-separated subset of tls1g,tls200,plain,start")
    ap.add_argument("--big-mb", type=int, default=1000)
    ap.add_argument("--mid-mb", type=int, default=200)
    ap.add_argument("--json", metavar="FILE", help="also write every run's numbers to FILE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                    help="also run ours with these environment variables, as tool NAME, in the same alternation "
                    "(e.g. all8:INVOKEAI_START_CONNECTIONS=8); repeatable")
    args = ap.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    variants: dict[str, dict[str, str]] = {}
    for spec in args.variant:
        name, _, assigns = spec.partition(":")
        variants[name] = dict(a.split("=", 1) for a in assigns.split(",") if "=" in a)
    missing = missing_tools()
    if missing:
        print("missing: " + ", ".join(missing) + "\nthis script installs nothing; as root: apt-get install -y nginx aria2 curl", file=sys.stderr)
        return 2
    # pip compiles the package's bytecode when it installs it; a checkout run with PYTHONDONTWRITEBYTECODE set
    # (this machine sets it) would compile every module again on every start: ~60 ms a run, measured
    compileall.compile_dir(str(REPO / "invokeai_model_install"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="bench-tls-", dir="/tmp"))
    nginx = None
    results: dict[str, dict[str, list[float]]] = {}
    try:
        www = work / "www"
        www.mkdir()
        print(f"making test data in {work} ...", flush=True)
        sha = {
            "big": make_model(www / "big.safetensors", args.big_mb * MB),
            "mid": make_model(www / "mid.safetensors", args.mid_mb * MB),
            "small": make_model(www / "small.safetensors", 2 * MB),
        }
        local = work / "local-lora.safetensors"
        make_model(local, 40 * MB)
        nginx = Nginx(work)
        bench = Bench(work, nginx)
        print(f"nginx up (https :{nginx.tls_port} limit_rate 40m, http :{nginx.http_port}); {args.rounds} round(s)\n", flush=True)

        def alternate(part: str, fetch: tuple[str, str, str], others: dict, rounds: dict[str, int]) -> None:
            """``fetch``: (url, sha256, file name expected in the root) for ours and every --variant of ours."""
            url, digest, expect = fetch
            tools = {"ours": lambda: bench.ours(url, digest, expect=expect)}
            for name, env in variants.items():
                tools[name] = lambda env=env: bench.ours(url, digest, expect=expect, env=env)
                rounds[name] = rounds["ours"]
            tools.update(others)
            res: dict[str, list[float]] = {t: [] for t in tools}
            names = list(tools)
            for i in range(max(rounds.values())):
                order = names[i % len(names):] + names[: i % len(names)]
                for t in order:
                    if i >= rounds[t]:
                        continue
                    bench.fresh()
                    res[t].append(tools[t]())
                    bench.cpu.setdefault(f"{part}/{t}", []).append(bench.last_cpu)
                    print(f"    {part} round {i + 1}: {t} {res[t][-1]:.2f} s (CPU {bench.last_cpu:.2f} s)", flush=True)
            results[part] = res

        if "tls1g" in parts:
            u = nginx.url("big.safetensors", True)
            alternate("tls1g", (u, sha["big"], "big.safetensors"), {"aria2c": lambda: bench.aria2c(u), "curl": lambda: bench.curl(u)},
                      {"ours": args.rounds, "aria2c": args.rounds, "curl": args.curl_tls_rounds})
        if "tls200" in parts:
            u = nginx.url("mid.safetensors", True)
            alternate("tls200", (u, sha["mid"], "mid.safetensors"), {"aria2c": lambda: bench.aria2c(u), "curl": lambda: bench.curl(u)},
                      {"ours": args.rounds, "aria2c": args.rounds, "curl": args.curl_tls_rounds})
        if "plain" in parts:
            u = nginx.url("big.safetensors", False)
            alternate("plain", (u, sha["big"], "big.safetensors"), {"curl": lambda: bench.curl(u), "aria2c": lambda: bench.aria2c(u)},
                      {"ours": args.rounds, "curl": args.rounds, "aria2c": args.rounds})
        if "start" in parts:
            u = nginx.url("small.safetensors", False)
            fr: list[float] = []
            small_exit: list[float] = []
            local_exit: list[float] = []
            for i in range(max(3, args.rounds * 2)):
                bench.fresh()
                a, b = bench.first_request(u, sha["small"])
                fr.append(a)
                small_exit.append(b)
                bench.fresh()
                local_exit.append(bench.local_add(local))
                print(f"    start round {i + 1}: first request {a:.3f} s, small URL exit {b:.3f} s, local add {local_exit[-1]:.3f} s", flush=True)
            results["start"] = {"first_request": fr, "small_url": small_exit, "local_add": local_exit}

        print(f"\nresults (whole processes; shared 2-core machine, load {os.getloadavg()[0]:.1f}: compare ratios within one run)")
        for part, title, gkey in (
            ("tls1g", f"{args.big_mb} MB over TLS, limit_rate 40m per connection", "tls1g"),
            ("tls200", f"{args.mid_mb} MB over TLS, limit_rate 40m per connection", "tls200"),
            ("plain", f"{args.big_mb} MB plain http on loopback (no cap)", "plain"),
        ):
            if part not in results:
                continue
            res = results[part]
            print(f"\n{title}")
            for t, runs in res.items():
                cpu = bench.cpu.get(f"{part}/{t}", [])
                print(show(t, runs) + (f"  CPU median {statistics.median(cpu):.2f} s" if cpu else ""))
            anchor = "curl" if part == "plain" else "aria2c"
            ratio = min(res["ours"]) / min(res[anchor])
            print(f"  ours / {anchor} (best of each) = {ratio:.2f}x   goal <= {GOALS[gkey]}x: {verdict(ratio, GOALS[gkey])}")
            other = "aria2c" if part == "plain" else "curl"
            if res.get(other):
                print(f"  ours / {other} = {min(res['ours']) / min(res[other]):.2f}x")
            for name in variants:
                print(f"  {name} / {anchor} (best of each) = {min(res[name]) / min(res[anchor]):.2f}x")
        if "start" in results:
            s = results["start"]
            print("\nstart-up (small files; median and best of each)")
            for k, label in (("first_request", "spawn -> first request at nginx"), ("small_url", "2 MB URL installed, spawn -> exit"),
                             ("local_add", "40 MB local file registered, spawn -> exit")):
                med = statistics.median(s[k])
                line = f"  {label:40s} median {med:.3f} s  best {min(s[k]):.3f} s  runs {', '.join(f'{x:.3f}' for x in s[k])}"
                if k in GOALS:
                    line += f"   goal <= {GOALS[k]} s: {verdict(med, GOALS[k])}"
                print(line)
        if bench.rss_mb:
            print(f"\npeak RSS of ours (whole process tree, any run): {max(bench.rss_mb):.0f} MB   (goal < 300 MB)")
        if args.json:
            Path(args.json).write_text(json.dumps({"results": results, "cpu": bench.cpu, "rss_mb": bench.rss_mb}, indent=1))
        return 0
    finally:
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
