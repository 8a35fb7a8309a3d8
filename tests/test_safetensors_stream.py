"""safetensors_stream: our streaming writer and mmap reader agree with the safetensors library."""

from __future__ import annotations

import pytest

from invokeai_model_install.formats.safetensors_stream import SafetensorsFormatError, SafetensorsReader, StreamingWriter


def _tensors():
    import torch

    g = torch.Generator().manual_seed(0)
    return {
        "b.weight": torch.randn((3, 5), generator=g),
        "a.half": torch.randn((7,), generator=g).half(),
        "c.bf16": torch.randn((2, 2, 2), generator=g).bfloat16(),
        "d.int": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "e.scalar": torch.tensor(1.5),
        "f.empty": torch.zeros((0, 4)),
    }


CODES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.int64": "I64"}


def test_writer_output_reads_back_with_safetensors(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = _tensors()
    order = ["d.int", "b.weight", "f.empty", "a.half", "e.scalar", "c.bf16"]  # data order != name order
    specs = [(n, CODES[str(tensors[n].dtype)], tuple(tensors[n].shape)) for n in order]
    w = StreamingWriter(tmp_path / "x.safetensors", specs, metadata={"format": "pt"})
    for n in order:
        w.write(n, tensors[n].contiguous().reshape(-1).view(torch.uint8).numpy())
    w.close()
    back = load_file(str(tmp_path / "x.safetensors"))
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
    raw = (tmp_path / "x.safetensors").read_bytes()
    assert int.from_bytes(raw[:8], "little") % 8 == 0  # data stays 8-byte aligned


def test_reader_views_are_the_bytes(tmp_path):
    import torch
    from safetensors.torch import save_file

    tensors = _tensors()
    save_file(tensors, str(tmp_path / "y.safetensors"), metadata={"global_step": "5"})
    with SafetensorsReader(tmp_path / "y.safetensors") as r:
        assert r.metadata == {"global_step": "5"}
        for name, t in tensors.items():
            assert r.entries[name].shape == tuple(t.shape)
            assert bytes(r.view(name)) == t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            r.prefetch(name)
            r.release(name)
            # still readable after the pages were dropped (they come back from the file)
            assert bytes(r.view(name)) == t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_writer_refuses_wrong_order_size_or_missing(tmp_path):
    w = StreamingWriter(tmp_path / "z.safetensors", [("a", "F32", (2,)), ("b", "F16", (1,))])
    with pytest.raises(ValueError, match="out of order"):
        w.write("b", b"\0\0")
    with pytest.raises(ValueError, match="bytes"):
        w.write("a", b"\0" * 7)
    w.write("a", b"\0" * 8)
    with pytest.raises(ValueError, match="never written"):
        w.close()


def test_reader_rejects_truncated_and_garbage(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1000)}, str(tmp_path / "t.safetensors"))
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(SafetensorsFormatError, match="truncated"):
        SafetensorsReader(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"<html>login</html>")
    with pytest.raises(SafetensorsFormatError):
        SafetensorsReader(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_copy_from_another_file(tmp_path, monkeypatch, kernel_copy):
    import errno
    import os

    src = tmp_path / "src.bin"
    payload = bytes(range(256)) * 1000
    src.write_bytes(b"xx" + payload + b"yy")
    if not kernel_copy:  # e.g. across filesystems on an old kernel: falls back to pread + write
        def refuse(*args):
            raise OSError(errno.EXDEV, "cross-device")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    w = StreamingWriter(tmp_path / "c.safetensors", [("a", "U8", (len(payload) - 6,)), ("b", "U8", (6,))])
    fd = os.open(src, os.O_RDONLY)
    try:
        w.copy("a", fd, 2, len(payload) - 6)
        w.copy("b", fd, 2 + len(payload) - 6, 6)
    finally:
        os.close(fd)
    w.close()
    with SafetensorsReader(tmp_path / "c.safetensors") as r:
        assert bytes(r.view("a")) + bytes(r.view("b")) == payload
