#!/usr/bin/env python3
"""Benchmark: our converter vs diffusers' from_single_file + save_pretrained (run by hand).

    .venv/bin/python benchmarks/bench_convert.py [--workdir /tmp] [--keep] [--device cpu]

1. Builds a full-size SD1.5-shaped fp32 checkpoint with random weights (~4.27 GB, LDM keys,
   written with the tests' own diffusers -> LDM writer) in a temporary folder.
2. Runs each conversion in a fresh subprocess and reads its own peak RSS from ``wait4``:
   diffusers fp32, ours fp32, diffusers fp32->fp16, ours fp32->fp16.
   diffusers gets a local config folder (our packaged skeleton) and ``local_files_only=True``
   so it converts offline too.
3. Prints times (whole process, and inside the call), peak RSS, and the ratios the goals
   are stated in: time <= 0.7x diffusers, peak RSS <= 1.1x the checkpoint size.
Everything is deleted at the end unless ``--keep``.  The machine may be shared: the load
average is printed before and after; rerun when it was high.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUILD = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from tests import modelgen
    from invokeai_model_install.convert.ldm_keys import expected_clip_keys
    skel = Path(sys.argv[1]); out = sys.argv[2]
    gen = torch.Generator().manual_seed(0)
    def rand(shapes):
        return {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    def meta_shapes(cls, cfg):
        with torch.device("meta"):
            m = cls.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}
    ucfg = json.loads((skel / "unet/config.json").read_text())
    vcfg = json.loads((skel / "vae/config.json").read_text())
    tcfg = json.loads((skel / "text_encoder/config.json").read_text())
    sd = {}
    for k, v in modelgen._unet_to_ldm(rand(meta_shapes(UNet2DConditionModel, ucfg)), ucfg).items():
        sd["model.diffusion_model." + k] = v
    for k, v in modelgen._vae_to_ldm(rand(meta_shapes(AutoencoderKL, vcfg)), vcfg).items():
        sd["first_stage_model." + k] = v
    for k, v in modelgen._clip_to_hf_ldm(rand(expected_clip_keys(tcfg, with_projection=False))).items():
        sd["cond_stage_model." + k] = v
    save_file(sd, out)
""")

OURS = textwrap.dedent("""
    import sys, time
    t = time.perf_counter()
    from invokeai_model_install.convert.checkpoint import convert_checkpoint
    convert_checkpoint(sys.argv[1], sys.argv[2], precision=sys.argv[3], device=sys.argv[4])
    print("INNER", time.perf_counter() - t)
""")

DIFFUSERS = textwrap.dedent("""
    import sys, time
    t = time.perf_counter()
    import torch
    from diffusers import StableDiffusionPipeline
    kw = {"torch_dtype": torch.float16} if sys.argv[3] == "fp16" else {}
    pipe = StableDiffusionPipeline.from_single_file(sys.argv[1], config=sys.argv[4], local_files_only=True, **kw)
    pipe.save_pretrained(sys.argv[2])
    print("INNER", time.perf_counter() - t)
""")


def run(code: str, args: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, seconds inside the call, peak RSS bytes, output) of ``python -c code args`` alone."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed ({proc.returncode}):\n{out[-3000:]}")
    inner = float(next(line.split()[1] for line in out.splitlines() if line.startswith("INNER")))
    return wall, inner, usage.ru_maxrss * 1024, out  # ru_maxrss is KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--device", default="auto", help="our converter's device (auto|cpu|cuda)")
    # With a GPU present, ours also runs fp16 with --device cpu and cuda, and prints the ratio.
    ap.add_argument("--checkpoint", type=Path, help="reuse an SD1.5-shaped checkpoint instead of building one")
    ap.add_argument("--only", choices=("ours", "diffusers"), help="run one side only (quick iterations)")
    ap.add_argument("--ckpt", action="store_true",
                    help="also time ours on the same weights saved as a torch zip .ckpt (pickle path)")
    args = ap.parse_args()

    from invokeai_model_install.convert.skeletons import materialize_skeleton

    work = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=args.workdir))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT),
               HF_HOME=str(work / "hf-home"))
    try:
        print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs")
        skel = materialize_skeleton("sd-1", work / "skeleton")
        ckpt = args.checkpoint or work / "sd15-random.safetensors"
        if args.checkpoint is None:
            t = time.perf_counter()
            run(BUILD + "\nprint('INNER 0')", [str(skel), str(ckpt)], env)
            print(f"built {ckpt.name}: {ckpt.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s")
        size = ckpt.stat().st_size
        # read it once so every contender starts from the same (warm) page cache
        with open(ckpt, "rb") as f:
            while f.read(64 << 20):
                pass

        results = {}
        for precision in ("fp32", "fp16"):
            for name, code, extra in (("diffusers", DIFFUSERS, str(skel)), ("ours", OURS, args.device)):
                if args.only and name != args.only:
                    continue
                out = work / f"out-{name}-{precision}"
                wall, inner, rss, _ = run(code, [str(ckpt), str(out), precision, extra], env)
                bytes_out = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
                results[name, precision] = (wall, inner, rss)
                print(f"{name:9s} {precision}: {wall:6.1f} s process, {inner:6.1f} s in call, "
                      f"peak RSS {rss / 1e9:5.2f} GB ({rss / size:4.2f}x checkpoint), output {bytes_out / 1e9:.2f} GB")
                shutil.rmtree(out)

        if args.ckpt:
            pickle_ckpt = work / "sd15-random.ckpt"
            run("import sys, torch\nfrom safetensors.torch import load_file\n"
                "torch.save({'state_dict': load_file(sys.argv[1]), 'global_step': 840000}, sys.argv[2])\n"
                "print('INNER 0')", [str(ckpt), str(pickle_ckpt)], env)
            with open(pickle_ckpt, "rb") as f:
                while f.read(64 << 20):
                    pass
            for precision in ("fp32", "fp16"):
                out = work / f"out-ckpt-{precision}"
                wall, inner, rss, _ = run(OURS, [str(pickle_ckpt), str(out), precision, args.device], env)
                results["ours-ckpt", precision] = (wall, inner, rss)
                print(f"ours .ckpt {precision}: {wall:6.1f} s process, {inner:6.1f} s in call, "
                      f"peak RSS {rss / 1e9:5.2f} GB ({rss / size:4.2f}x checkpoint)")
                shutil.rmtree(out)
            pickle_ckpt.unlink()

        print()
        for precision in ("fp32", "fp16") if not args.only else ():
            (dw, di, dr), (ow, oi, orss) = results["diffusers", precision], results["ours", precision]
            print(f"{precision}: time ours/diffusers = {ow / dw:.2f} (process), {oi / di:.2f} (in call)   "
                  f"[goal <= 0.70];  peak RSS ours = {orss / size:.2f}x checkpoint [goal <= 1.10], "
                  f"diffusers {dr / size:.2f}x")
        print(f"load average after: {os.getloadavg()}")
        import torch

        if torch.cuda.is_available():  # the casts on the GPU vs on the CPU (copies never touch it)
            print("GPU:", torch.cuda.get_device_name(0))
            for dev in ("cpu", "cuda"):
                out = work / f"out-{dev}"
                wall, inner, rss, _ = run(OURS, [str(ckpt), str(out), "fp16", dev], env)
                results[f"ours-device-{dev}", "fp16"] = (wall, inner, rss)
                print(f"ours fp16 on {dev}: {wall:6.1f} s process, {inner:6.1f} s in call, peak RSS {rss / 1e9:5.2f} GB")
                shutil.rmtree(out)
            cpu, gpu = results["ours-device-cpu", "fp16"], results["ours-device-cuda", "fp16"]
            print(f"GPU/CPU time (fp16) = {gpu[1] / cpu[1]:.2f} in call: faster here: "
                  f"{'cuda' if gpu[1] < cpu[1] else 'cpu'} (device=auto picks cuda when present)")
        else:
            print("GPU: none (CPU only; GPU vs CPU not measured)")
        print(json.dumps({f"{k[0]}-{k[1]}": {"wall_s": round(v[0], 2), "call_s": round(v[1], 2),
                                               "peak_rss_gb": round(v[2] / 1e9, 3)} for k, v in results.items()}))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
