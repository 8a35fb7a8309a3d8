"""Benchmark the probe (run by hand): header-only identification of SD1.5-shaped checkpoints.

    .venv/bin/python benchmarks/bench_probe.py [--files 1000] [--full] [--dir DIR]

1. A folder of ``--files`` header-only files (half ``.safetensors``, half zip ``.ckpt``),
   each with the ~1,130 real SD1.5 key names and full shapes (4.27 GB of fp32 tensors
   described; the safetensors data area is a sparse hole, the ckpt's storages are on
   the ``meta`` device).  Prints the warm probe time per file (goal < 1 ms), and the
   references measured in the same run: ``safetensors.safe_open`` reading the same
   keys/shapes, and ``torch.load(weights_only=True, mmap=True)`` of the ckpt.
2. ``--full``: a real SD1.5-shaped fp16 checkpoint (2.1 GB written to disk, both formats):
   probe vs ``torch.load(weights_only=True, mmap=True)`` vs a full ``torch.load``
   and ``safetensors.torch.load_file`` (all pages touched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invokeai_model_install.identify.probe import probe  # noqa: E402


# --- an SD1.5 key list with full shapes (LDM names) ------------------------------------------


def sd15_spec() -> dict[str, tuple[int, ...]]:
    """Names and shapes of an SD1.5 LDM checkpoint (UNet, VAE, CLIP-L): ~1,130 tensors."""
    spec: dict[str, tuple[int, ...]] = {}
    U = "model.diffusion_model."

    def lin(name, out, inp, bias=True):
        spec[name + ".weight"] = (out, inp)
        if bias:
            spec[name + ".bias"] = (out,)

    def conv(name, out, inp, k=3):
        spec[name + ".weight"] = (out, inp, k, k)
        spec[name + ".bias"] = (out,)

    def norm(name, c):
        spec[name + ".weight"] = (c,)
        spec[name + ".bias"] = (c,)

    def res(p, cin, cout):
        norm(p + "in_layers.0", cin)
        conv(p + "in_layers.2", cout, cin)
        lin(p + "emb_layers.1", cout, 1280)
        norm(p + "out_layers.0", cout)
        conv(p + "out_layers.3", cout, cout)
        if cin != cout:
            conv(p + "skip_connection", cout, cin, 1)

    def attn(p, c, ctx=768):
        norm(p + "norm", c)
        conv(p + "proj_in", c, c, 1)
        t = p + "transformer_blocks.0."
        for a, kv in (("attn1", c), ("attn2", ctx)):
            lin(t + a + ".to_q", c, c, bias=False)
            lin(t + a + ".to_k", c, kv, bias=False)
            lin(t + a + ".to_v", c, kv, bias=False)
            lin(t + a + ".to_out.0", c, c)
        lin(t + "ff.net.0.proj", c * 8, c)
        lin(t + "ff.net.2", c, c * 4)
        for n in ("norm1", "norm2", "norm3"):
            norm(t + n, c)
        conv(p + "proj_out", c, c, 1)

    lin(U + "time_embed.0", 1280, 320)
    lin(U + "time_embed.2", 1280, 1280)
    conv(U + "input_blocks.0.0", 320, 4)
    chans, skips, i, cin = [320, 640, 1280, 1280], [320], 1, 320
    for level, c in enumerate(chans):
        for _ in range(2):
            res(f"{U}input_blocks.{i}.0.", cin, c)
            if level < 3:
                attn(f"{U}input_blocks.{i}.1.", c)
            cin = c
            skips.append(c)
            i += 1
        if level < 3:
            conv(f"{U}input_blocks.{i}.0.op", c, c)
            skips.append(c)
            i += 1
    res(U + "middle_block.0.", 1280, 1280)
    attn(U + "middle_block.1.", 1280)
    res(U + "middle_block.2.", 1280, 1280)
    i = 0
    for level, c in enumerate(reversed(chans)):
        for j in range(3):
            res(f"{U}output_blocks.{i}.0.", cin + skips.pop(), c)
            cin = c
            if level > 0:
                attn(f"{U}output_blocks.{i}.1.", c)
            if j == 2 and level < 3:
                conv(f"{U}output_blocks.{i}.{2 if level > 0 else 1}.conv", c, c)
            i += 1
    norm(U + "out.0", 320)
    conv(U + "out.2", 4, 320)

    V = "first_stage_model."

    def vres(p, cin, cout):
        norm(p + "norm1", cin)
        conv(p + "conv1", cout, cin)
        norm(p + "norm2", cout)
        conv(p + "conv2", cout, cout)
        if cin != cout:
            conv(p + "nin_shortcut", cout, cin, 1)

    def vmid(p, c):
        vres(p + "mid.block_1.", c, c)
        norm(p + "mid.attn_1.norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(p + "mid.attn_1." + n, c, c, 1)
        vres(p + "mid.block_2.", c, c)

    vch = [128, 256, 512, 512]
    conv(V + "encoder.conv_in", 128, 3)
    cin = 128
    for level, c in enumerate(vch):
        for b in range(2):
            vres(f"{V}encoder.down.{level}.block.{b}.", cin, c)
            cin = c
        if level < 3:
            conv(f"{V}encoder.down.{level}.downsample.conv", c, c)
    vmid(V + "encoder.", 512)
    norm(V + "encoder.norm_out", 512)
    conv(V + "encoder.conv_out", 8, 512)
    conv(V + "decoder.conv_in", 512, 4)
    vmid(V + "decoder.", 512)
    cin = 512
    for level in reversed(range(4)):
        c = vch[level]
        for b in range(3):
            vres(f"{V}decoder.up.{level}.block.{b}.", cin, c)
            cin = c
        if level > 0:
            conv(f"{V}decoder.up.{level}.upsample.conv", c, c)
    norm(V + "decoder.norm_out", 128)
    conv(V + "decoder.conv_out", 3, 128)
    conv(V + "quant_conv", 8, 8, 1)
    conv(V + "post_quant_conv", 4, 4, 1)

    T = "cond_stage_model.transformer.text_model."
    spec[T + "embeddings.token_embedding.weight"] = (49408, 768)
    spec[T + "embeddings.position_embedding.weight"] = (77, 768)
    for layer in range(12):
        p = f"{T}encoder.layers.{layer}."
        for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
            lin(p + "self_attn." + n, 768, 768)
        norm(p + "layer_norm1", 768)
        norm(p + "layer_norm2", 768)
        lin(p + "mlp.fc1", 3072, 768)
        lin(p + "mlp.fc2", 768, 3072)
    norm(T + "final_layer_norm", 768)
    return spec


def write_sparse_safetensors(path: Path, spec: dict, width: int = 4, code: str = "F32") -> None:
    header, offset = {}, 0
    for name, shape in spec.items():
        n = width
        for s in shape:
            n *= s
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_folder(root: Path, n_files: int) -> None:
    import torch

    spec = sd15_spec()
    print(f"SD1.5 key list: {len(spec)} tensors, {sum(_numel(s) for s in spec.values()) * 4 / 1e9:.2f} GB as fp32")
    folder = root / "headers"
    folder.mkdir()
    first_st = folder / "m0000.safetensors"
    write_sparse_safetensors(first_st, spec)
    # real storages of one element each, expanded to the full shapes: the zip holds the
    # real pickle and 1,130 storage members, but no 4 GB of bytes
    meta = {"state_dict": {k: torch.zeros(1).expand(*s) for k, s in spec.items()}, "global_step": 840000}
    first_ck = folder / "m0001.ckpt"
    torch.save(meta, first_ck)
    with open(first_st, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(0)
        st_head = f.read(8 + n)
    st_size = first_st.stat().st_size
    for i in range(2, n_files):
        if i % 2 == 0:
            # never copy the sparse file: a copy would write its 4 GB hole as zeros
            with open(folder / f"m{i:04d}.safetensors", "wb") as f:
                f.write(st_head)
                f.truncate(st_size)
        else:
            shutil.copyfile(first_ck, folder / f"m{i:04d}.ckpt")
    files = sorted(folder.iterdir())
    print(f"header sizes: safetensors {len(st_head)} bytes, "
          f"ckpt data.pkl+zip {first_ck.stat().st_size} bytes")
    for f in files[:2]:
        r = probe(f)
        assert (r.kind, r.base) == ("main", "sd-1"), r
    for _ in range(2):  # warm the page cache and the interpreter
        for f in files:
            probe(f)
    sts = [f for f in files if f.suffix == ".safetensors"]
    cks = [f for f in files if f.suffix == ".ckpt"]
    t_all = timed(lambda: [probe(f) for f in files], 3)
    t_st = timed(lambda: [probe(f) for f in sts], 3)
    t_ck = timed(lambda: [probe(f) for f in cks], 3)
    print(f"probe, {len(files)} files warm: {t_all / len(files) * 1e3:.3f} ms/file "
          f"(safetensors {t_st / len(sts) * 1e3:.3f} ms, zip ckpt {t_ck / len(cks) * 1e3:.3f} ms)  goal < 1 ms")

    # references, same run
    from safetensors import safe_open

    def with_safe_open():
        for f in sts[:100]:
            with safe_open(str(f), "pt") as h:
                for k in h.keys():
                    h.get_slice(k).get_shape()
    t_so = timed(with_safe_open, 3) / 100
    t_json = timed(lambda: json.loads(st_head[8:]), 20)
    print(f"  reference safetensors.safe_open keys+shapes: {t_so * 1e3:.3f} ms/file "
          f"(ours is {t_so / (t_st / len(sts)):.1f}x faster); json.loads alone of one header {t_json * 1e3:.3f} ms")
    from invokeai_model_install.identify.safety import scan

    t_scan_ck = timed(lambda: [scan(f) for f in cks[:20]], 2) / 20
    t_scan_st = timed(lambda: [scan(f) for f in sts[:20]], 2) / 20
    print(f"safety.scan: zip ckpt {t_scan_ck * 1e3:.2f} ms/file (inert-unpickler scan + picklescan classifier), "
          f"safetensors {t_scan_st * 1e3:.2f} ms/file (whole-header check)")
    t_tl = timed(lambda: [torch.load(str(f), weights_only=True, mmap=True) for f in cks[:20]], 2) / 20
    print(f"  reference torch.load(weights_only=True, mmap=True) of the ckpt: {t_tl * 1e3:.2f} ms/file "
          f"(ours is {t_tl / (t_ck / len(cks)):.1f}x faster)")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def bench_full(root: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    spec = sd15_spec()
    sd = {k: torch.zeros(s, dtype=torch.float16) for k, s in spec.items()}
    st, ck = root / "full.safetensors", root / "full.ckpt"
    t0 = time.perf_counter()
    save_file(sd, str(st))
    torch.save({"state_dict": sd, "global_step": 840000}, ck)
    del sd
    print(f"full SD1.5 fp16 files written: {st.stat().st_size / 1e9:.2f} GB each ({time.perf_counter() - t0:.0f} s)")
    os.sync()
    rows = [
        ("probe(.safetensors)", lambda: probe(st)),
        ("probe(.ckpt)", lambda: probe(ck)),
        ("torch.load(weights_only, mmap) .ckpt", lambda: torch.load(str(ck), weights_only=True, mmap=True)),
        ("torch.load full .ckpt", lambda: torch.load(str(ck), weights_only=True)),
        ("safetensors load_file + touch", lambda: [t.sum() for t in load_file(str(st)).values()]),
    ]
    ref = None
    for label, fn in rows:
        fn()  # warm (page cache)
        t = timed(fn, 3)
        ref = ref or t
        print(f"  {label:40s} {t * 1e3:10.2f} ms   ({t / ref:8.0f}x the safetensors probe)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--full", action="store_true", help="also write real 2.1 GB checkpoints and load them")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-probe-", dir=args.dir))
    try:
        bench_folder(root, args.files)
        if args.full:
            bench_full(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
