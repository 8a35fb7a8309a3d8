"""Writing the output: one safetensors file per component, streamed tensor by tensor, cast on the way; configs; fsync."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invokeai_model_install.convert import ldm_keys
from invokeai_model_install.convert.tensors import TensorSource
from invokeai_model_install.errors import Cancelled
from invokeai_model_install.formats.safetensors_stream import DTYPE_SIZES, FLOAT_CODES, TORCH_NAMES
from invokeai_model_install.root.atomic import fsync_path


@dataclass
class Output:
    folder: str
    filename: str
    plan: ldm_keys.ComponentPlan
    source: TensorSource


def out_code(src_code: str, precision: str) -> str:
    if src_code not in FLOAT_CODES:
        return src_code
    return "F16" if precision == "fp16" else "F32"


def _file_range(source: TensorSource, move: ldm_keys.Move, out_code: str) -> tuple[int, int, int] | None:
    """Where a tensor's output bytes already sit in the input file, when they need no change."""
    code = source.codes[move.src]
    if code != out_code or move.transpose:
        return None
    where = source.file_range(move.src)
    if where is None:
        return None
    fd, offset, nbytes = where
    if move.rows is not None:
        row = nbytes // max(1, source.shapes[move.src][0])
        offset, nbytes = offset + move.rows[0] * row, (move.rows[1] - move.rows[0]) * row
    return fd, offset, nbytes


class _Scratch:
    """One reusable output buffer for casts: a fresh allocation per tensor would page-fault
    every output byte in again (measured: most of the fp16 path's cost after the copy itself)."""

    def __init__(self) -> None:
        self._buf = None

    def get(self, shape: tuple[int, ...], dtype):
        import torch

        n = 1
        for d in shape:
            n *= d
        nbytes = n * torch.empty((), dtype=dtype).element_size()
        if self._buf is None or self._buf.numel() < nbytes:
            self._buf = torch.empty(max(nbytes, 1 << 20), dtype=torch.uint8)
        return self._buf[:nbytes].view(dtype).view(shape)


def _tensor_bytes(source: TensorSource, move: ldm_keys.Move, out_code: str, device: str, scratch: _Scratch):
    """The output bytes of one planned tensor: a zero-copy slice when no cast or transpose is needed."""
    code = source.codes[move.src]
    view = source.view(move.src)
    shape = source.shapes[move.src]
    if move.rows is not None:
        row = DTYPE_SIZES[code]
        for d in shape[1:]:
            row *= d
        view = view[move.rows[0] * row: move.rows[1] * row]
        shape = (move.rows[1] - move.rows[0],) + tuple(shape[1:])
    if code == out_code and not move.transpose:
        return view
    import torch

    if view.nbytes == 0:
        return b""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "non-writable buffer": we only read it
        t = torch.frombuffer(view, dtype=getattr(torch, TORCH_NAMES[code])).reshape(shape)
    if move.transpose:
        t = t.t()
    target = getattr(torch, TORCH_NAMES[out_code])
    if device != "cpu":
        t = t.to(device).to(target)
    out = scratch.get(tuple(t.shape), target)
    out.copy_(t)  # cast (and transpose) straight into the reused buffer
    return memoryview(out.reshape(-1).view(torch.uint8).numpy())


def _check_cancel(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("conversion cancelled by the user")


def write_component(out: Output, folder: Path, precision: str, device: str, cancel: Any = None) -> None:
    """Write one component's weights file, tensor by tensor, in input order.

    Two stages overlap: this thread casts tensor n (torch releases the GIL) while a writer
    thread pushes tensor n-1 to the file (syscalls release it too); two scratch buffers
    alternate so a cast never overwrites bytes still being written.
    """
    from concurrent.futures import ThreadPoolExecutor

    from invokeai_model_install.formats.safetensors_stream import StreamingWriter

    moves = sorted(out.plan.moves, key=lambda m: (out.source.position(m.src), m.rows or (0, 0)))
    specs = [(m.out, out_code(out.source.codes[m.src], precision), m.shape) for m in moves]
    writer = StreamingWriter(folder / out.filename, specs, metadata={"format": "pt"})
    scratches = (_Scratch(), _Scratch())
    pending: dict[str, int] = {}
    for m in moves:  # a fused in_proj feeds three outputs: release it after the last
        pending[m.src] = pending.get(m.src, 0) + 1

    def emit(m: ldm_keys.Move, where: tuple[int, int, int] | None, data: Any) -> None:
        if where is not None:  # unchanged bytes: let the kernel copy them
            writer.copy(m.out, *where)
        else:
            writer.write(m.out, data)
        pending[m.src] -= 1
        if pending[m.src] == 0:
            out.source.release(m.src)

    in_flight = None
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="convert-writer") as pool:
            try:
                for n, m in enumerate(moves):
                    _check_cancel(cancel)
                    if n + 1 < len(moves):
                        out.source.prefetch(moves[n + 1].src)
                    code = out_code(out.source.codes[m.src], precision)
                    where = _file_range(out.source, m, code)
                    data = None if where is not None else _tensor_bytes(out.source, m, code, device,
                                                                         scratches[n % 2])
                    if in_flight is not None:
                        in_flight.result()  # tensor n-1 is out: its scratch may be reused next round
                    in_flight = pool.submit(emit, m, where, data)
                if in_flight is not None:
                    in_flight.result()
            finally:
                if in_flight is not None and not in_flight.done():
                    in_flight.cancel()
                    try:
                        in_flight.result()
                    except BaseException:
                        pass
        writer.close()
    except BaseException:
        writer.abort()
        raise


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def nbytes(shape: tuple[int, ...], code: str) -> int:
    n = DTYPE_SIZES.get(code, 4)
    for d in shape:
        n *= d
    return n


def fsync_tree(root: Path) -> None:
    """fsync the small files (the weights were fsynced as written) and every folder of ``root``."""
    for p in [root, *sorted(root.rglob("*"))]:
        if p.is_file() and p.suffix == ".safetensors":
            continue
        fsync_path(p)
