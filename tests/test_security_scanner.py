"""Security of the scanner and the probe's inert reader (issue 11, items 16 and 17).

16: a hostile pickle must not make the scanner allocate what it asks for: ``bytearray(10**10)``,
``bytes(10**10)``, a declared 10 GB BINBYTES8, memo references multiplied through ``str()`` or
nested dicts, a zip bomb ``data.pkl``.  Each is judged quickly in a child process whose address
space is capped (so a regression fails the test instead of eating the shared machine), and the
child's peak RSS stays small.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from invokeai_model_install.identify.safety import scan

GB = 10**10  # ten gigabytes


def _long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _call(module: str, name: str, arg_ops: bytes) -> bytes:
    """Opcodes that push ``module.name(arg)`` (GLOBAL, the argument, TUPLE1, REDUCE)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n" + arg_ops + b"\x85R"


def _wrap(value_ops: bytes) -> bytes:
    """``{"state_dict": {"w": <value>}}`` as a protocol-2 pickle."""
    return (b"\x80\x02}" + b"X\x0a\x00\x00\x00state_dict" + b"}" + b"X\x01\x00\x00\x00w" + value_ops
            + b"s" + b"s" + b".")


def _zip_ckpt(path: Path, data_pkl: bytes, *, compress: bool = False) -> Path:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/version", "3\n")
    return path


def _judge_in_child(path: Path, what: str = "scan") -> dict:
    """Run scan() (or probe()) on ``path`` in a child with a 4 GB address-space cap; verdict and peak RSS."""
    code = textwrap.dedent(f"""
        import json, resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        from invokeai_model_install.identify import safety, probe
        from invokeai_model_install.errors import ProbeError
        t = time.monotonic()
        out = {{}}
        if {what!r} == "scan":
            v = safety.scan({str(path)!r})
            out.update(verdict=v.verdict, message=v.message, globals=list(v.globals))
        else:
            try:
                r = probe.probe({str(path)!r})
                out.update(kind=r.kind)
            except ProbeError as exc:
                out.update(error=exc.message)
        out["seconds"] = time.monotonic() - t
        # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across fork+exec)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
        out["maxrss_mb"] = int(hwm.split()[1]) / 1024
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


HOSTILE = {
    "bytearray(10**10)": _call("builtins", "bytearray", _long1(GB)),
    "bytes(10**10)": _call("__builtin__", "bytes", _long1(GB)),
}


@pytest.mark.parametrize("container", ["pickle", "zip"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_allocation_bomb_is_dangerous_without_allocating(tmp_path, name, container):
    data = _wrap(HOSTILE[name])
    path = tmp_path / ("bomb.ckpt" if container == "zip" else "bomb.pt")
    if container == "zip":
        _zip_ckpt(path, data)
    else:
        path.write_bytes(data)
    out = _judge_in_child(path)
    assert out["verdict"] == "dangerous", out
    assert "memory bomb" in out["message"] and name.split("(")[0] in out["message"], out
    assert out["maxrss_mb"] < 200, out
    # the probe (which reads the same pickle) fails with one line, also without allocating
    probed = _judge_in_child(path, "probe")
    assert "memory bomb" in probed.get("error", ""), probed
    assert probed["maxrss_mb"] < 200, probed


def test_declared_huge_binbytes_is_not_read_into_memory(tmp_path):
    # BINBYTES8 declaring 10 GB, followed by only a few bytes: a truncated pickle, judged unreadable
    path = tmp_path / "declared.pt"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", GB) + b"x" * 100)
    out = _judge_in_child(path)
    assert out["verdict"] in ("unreadable", "dangerous"), out
    assert out["maxrss_mb"] < 200, out


def test_pickle_larger_than_the_limit_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    from invokeai_model_install.formats import pickle_header
    from invokeai_model_install.identify import safety

    monkeypatch.setattr(pickle_header, "MAX_PICKLE_BYTES", 1 << 20)
    monkeypatch.setattr(safety, "MAX_PICKLE_BYTES", 1 << 20)
    big = pickle.dumps({"state_dict": {"blob": b"\0" * (3 << 20)}}, protocol=4)
    path = tmp_path / "big.pt"
    path.write_bytes(big)
    v = scan(path)
    assert v.verdict == "unreadable" and "larger than 1 MB" in v.message, v


def test_memo_references_multiplied_through_str_do_not_render(tmp_path):
    # a 1 MB string, memoised, referenced 100,000 times in a list, then str(list): 100 GB if rendered
    ops = (b"\x80\x04" + b"cbuiltins\nstr\n" + b"]" + b"(" + b"\x8d" + struct.pack("<Q", 1 << 20) + b"a" * (1 << 20)
           + b"\x94" + b"h\x00" * 100_000 + b"e" + b"\x85R" + b".")
    path = tmp_path / "render.pt"
    path.write_bytes(ops)
    out = _judge_in_child(path)
    assert out["verdict"] in ("safe", "suspicious", "dangerous"), out
    assert out["seconds"] < 10 and out["maxrss_mb"] < 200, out


def test_shared_nested_dicts_do_not_multiply_in_the_probe(tmp_path):
    # d0 = {"k0": t, ...}; d1 = {"k0": d0, "k1": d0, ...}: 1000**4 entries if walked naively
    import collections

    leaf = collections.OrderedDict((f"model.diffusion_model.k{i}", 0) for i in range(8))
    level = leaf
    for _ in range(4):
        level = {f"d{i}": level for i in range(300)}
    path = tmp_path / "nested.pt"
    path.write_bytes(pickle.dumps({"state_dict": level}, protocol=2))
    assert path.stat().st_size < 1 << 20
    out = _judge_in_child(path, "probe")
    assert out["seconds"] < 10 and out["maxrss_mb"] < 200, out


def test_zip_bomb_data_pkl_is_refused_without_inflating(tmp_path):
    # 200 MB of zeros deflate to ~200 KB; the member declares its size, over the limit
    path = tmp_path / "zipbomb.ckpt"
    big = b"\x80\x02" + b"N" * (200 << 20) + b"."
    _zip_ckpt(path, big, compress=True)
    assert path.stat().st_size < 2 << 20
    out = _judge_in_child(path)
    assert out["verdict"] == "unreadable" and "larger than" in out["message"], out
    assert out["maxrss_mb"] < 200, out


def test_large_but_honest_bytes_are_not_a_bomb(tmp_path):
    # bytearray(b"...") of 3 MB (how protocol 2-4 pickle a bytearray): a copy as large as the file, no multiplication
    path = tmp_path / "honest.pt"
    path.write_bytes(pickle.dumps({"state_dict": {}, "blob": bytearray(b"x" * (3 << 20))}, protocol=4))
    assert b"bytearray" in path.read_bytes()
    assert scan(path).verdict == "safe"
