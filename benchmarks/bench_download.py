"""Download engine benchmark (run by hand; prints ratios against references measured in the same run).

    .venv/bin/python benchmarks/bench_download.py [--size-mb 2048] [--files 12] [--repeat 3]

1. One large file over loopback from the test FileServer: ours (verified: sha256 included) vs ``curl -o``,
   and vs ``hf_hub_download`` from the stand-in HubServer.  Goal: ours <= 1.0x curl's time.
2. A repo of ``--files`` files (~the same total) from the HubServer: ours (resolve + download) vs
   ``snapshot_download(max_workers=8)``.  Goal: <= 0.5x.
3. Peak RSS of ours (ru_maxrss of the child that downloaded the large file).  Goal: < 300 MB.
4. A re-run of ours into the same folder fetches 0 bytes (files verified by sha256, kept).

The whole-process runs against real servers (nginx over TLS with a per-connection cap, aria2c, curl)
live in ``bench_tls.py``.

Servers run in their own process (sendfile), each client in its own child process timing itself
(curl: wall time of the process).  Test data lives in a temporary folder under /tmp, deleted at the end.
The machine is shared: numbers are medians of ``--repeat`` runs and still noisy; compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_ETAG_TIMEOUT": "30",
    "HF_HUB_DOWNLOAD_TIMEOUT": "60",
    "PYTHONPATH": str(ROOT),
}
for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
    ENV.pop(var, None)

SERVE = """
import sys, time
from tests.fileserver import FileServer
from tests.hubserver import HubServer
fs = FileServer(sys.argv[1]).start()
hub = HubServer().start()
hub.add_repo("bench/big", sys.argv[1])
hub.add_repo("bench/many", sys.argv[2])
print(fs.url, hub.url, flush=True)
while True:
    time.sleep(3600)
"""

OURS = """
import json, resource, sys, time
from pathlib import Path
from invokeai_model_install.net import engine, hub, sources, urls
from invokeai_model_install.net.settings import DownloadSettings
mode, target, dest, part = sys.argv[1:5]
s = DownloadSettings.from_env()
t0 = time.perf_counter()
if mode == "url":
    r = urls.resolve_url(sources.UrlSource(target), s)
else:
    s = DownloadSettings.from_env({"HF_ENDPOINT": target.split("|")[0], "HF_TOKEN_PATH": "/nonexistent"})
    r = hub.resolve_hub(sources.HubSource(target.split("|")[1]), s, precision="fp32")
res = engine.download(r, Path(dest), partial_dir=Path(part), settings=s)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
assert res.fetched_bytes == r.total_size, (res.fetched_bytes, r.total_size)
again = engine.download(r, Path(dest), partial_dir=Path(part), settings=s)  # a re-run: files verified, nothing fetched
print(json.dumps({"seconds": dt, "maxrss_mb": rss, "bytes": res.fetched_bytes, "rerun_bytes": again.fetched_bytes}))
"""

HF = """
import json, sys, time
mode, endpoint, repo, dest = sys.argv[1:5]
from huggingface_hub import hf_hub_download, snapshot_download
t0 = time.perf_counter()
if mode == "file":
    hf_hub_download(repo, sys.argv[5], endpoint=endpoint, cache_dir=dest, token=False)
else:
    snapshot_download(repo, endpoint=endpoint, cache_dir=dest, max_workers=8, token=False)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def make_file(path: Path, size: int) -> None:
    """Incompressible-looking data without spending minutes in os.urandom."""
    block = os.urandom(16 << 20)
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            fh.write(bytes([i & 0xFF]) + chunk[1:])  # every block differs a little
            left -= len(chunk)
            i += 1


def child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], env=ENV, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_curl(url: str, dest: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mb << 20
    work = Path(tempfile.mkdtemp(prefix="bench-dl-", dir="/tmp"))
    server = None
    try:
        big, many = work / "big", work / "many"
        big.mkdir()
        many.mkdir()
        print(f"making test data in {work} ...", flush=True)
        make_file(big / "model.safetensors", size)
        per = size // args.files
        # a pipeline-shaped repo: model_index.json listing N components, each config + one weights file
        index = {"_class_name": "StableDiffusionPipeline"}
        for i in range(args.files):
            comp = many / f"c{i:02d}"
            comp.mkdir()
            (comp / "config.json").write_text("{}")
            make_file(comp / "diffusion_pytorch_model.safetensors", per)
            index[comp.name] = ["diffusers", "UNet2DConditionModel"]
        (many / "model_index.json").write_text(json.dumps(index))
        server = subprocess.Popen([sys.executable, "-c", SERVE, str(big), str(many)], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        file_url, hub_url = server.stdout.readline().split()
        url = f"{file_url}/model.safetensors"
        results: dict[str, list[float]] = {"curl": [], "ours": [], "hf_hub_download": [], "ours_repo": [], "snapshot_download": []}
        rss: list[float] = []
        rerun: list[int] = []
        out = work / "out"

        def fresh() -> None:
            # each timed run starts with no dirty pages from the previous one: otherwise the kernel's
            # write-back of the last 2 GB throttles whoever runs next
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            os.sync()
            time.sleep(1)

        def run_curl() -> None:
            results["curl"].append(timed_curl(url, out / "curl.bin"))

        def run_ours() -> None:
            r = child(OURS, "url", url, str(out / "ours"), str(out / "part"))
            results["ours"].append(r["seconds"])
            rss.append(r["maxrss_mb"])
            rerun.append(r["rerun_bytes"])

        def run_hf() -> None:
            results["hf_hub_download"].append(child(HF, "file", hub_url, "bench/big", str(out / "hf"), "model.safetensors")["seconds"])

        def run_ours_repo() -> None:
            r = child(OURS, "hub", f"{hub_url}|bench/many", str(out / "ours_repo"), str(out / "part"))
            results["ours_repo"].append(r["seconds"])
            rerun.append(r["rerun_bytes"])

        def run_snapshot() -> None:
            results["snapshot_download"].append(child(HF, "repo", hub_url, "bench/many", str(out / "snap"))["seconds"])

        order = [run_curl, run_ours, run_hf, run_ours_repo, run_snapshot]
        for i in range(args.repeat):
            # rotate the order so no tool always runs right after another one
            for fn in order[i % len(order):] + order[: i % len(order)]:
                fresh()
                fn()
            shutil.rmtree(out, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        mb = size / 1e6
        print(f"\none file, {args.size_mb} MiB over loopback (median of {args.repeat}; shared 2-core machine: noisy)")
        for k in ("ours", "curl", "hf_hub_download"):
            print(f"  {k:18s} {med[k]:6.2f} s  {mb / med[k]:7.0f} MB/s   runs: {', '.join(f'{x:.2f}' for x in results[k])}")
        print(f"  ratio ours/curl            {med['ours'] / med['curl']:.2f}x   (goal <= 1.0x; ours includes sha256)")
        print(f"  ratio ours/hf_hub_download {med['ours'] / med['hf_hub_download']:.2f}x")
        print(f"\n{args.files}-file repo, {args.size_mb} MiB total, from the stand-in hub")
        for k in ("ours_repo", "snapshot_download"):
            print(f"  {k:18s} {med[k]:6.2f} s  {mb / med[k]:7.0f} MB/s   runs: {', '.join(f'{x:.2f}' for x in results[k])}")
        print(f"  ratio ours/snapshot_download(max_workers=8) {med['ours_repo'] / med['snapshot_download']:.2f}x   (goal <= 0.5x)")
        print(f"\npeak RSS of ours (large file): {max(rss):.0f} MB   (goal < 300 MB)")
        print(f"bytes fetched by re-runs of ours: {max(rerun)} (goal 0; {len(rerun)} re-runs)")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
