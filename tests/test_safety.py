"""safety: scan/check/load_state_dict refuse dangerous pickles and never execute them.

Every payload here would create a marker file if anything unpickled it for real
(a positive control proves each one is live); the marker must never exist after
scan(), check(), load_state_dict() or probe() touched the files.
"""

from __future__ import annotations

import builtins
import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from invokeai_model_install.errors import ProbeError, UnsafeFileError
from invokeai_model_install.identify.probe import probe
from invokeai_model_install.identify.safety import ScanVerdict, check, classify_global, load_state_dict, scan

torch = pytest.importorskip("torch")


# --- payloads ------------------------------------------------------------------------------


class _Payload:
    """An object whose unpickling would create ``marker`` (each subclass by another route)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)


class OsSystem(_Payload):
    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class SubprocessPopen(_Payload):
    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


class SubprocessCheckCall(_Payload):
    def __reduce__(self):
        return (subprocess.check_call, (["touch", self.marker],))


class BuiltinsExec(_Payload):
    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


class BuiltinsEval(_Payload):
    def __reduce__(self):
        return (builtins.eval, (f"open({self.marker!r}, 'w').close()",))


class NestedReduce(_Payload):
    """Reduces to an OrderedDict whose construction first rebuilds another reducing object."""

    def __reduce__(self):
        return (collections.OrderedDict, ([("inner", OsSystem(Path(self.marker)))],))


PAYLOADS = {
    "os.system": (OsSystem, "system"),
    "subprocess.Popen": (SubprocessPopen, "Popen"),
    "subprocess.check_call": (SubprocessCheckCall, "check_call"),
    "builtins.exec": (BuiltinsExec, "exec"),
    "builtins.eval": (BuiltinsEval, "eval"),
    "nested-reduce": (NestedReduce, "system"),
}


def _tensors() -> dict:
    return {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
            "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(32, 768)}


def write_payload(path: Path, container: str, payload: object) -> Path:
    """``zip``: torch.save of a checkpoint dict; ``legacy``: the same, non-zip; ``bin``: a plain pickle (protocol 5)."""
    obj = {"state_dict": _tensors(), "global_step": 1, "callbacks": payload}
    if container == "zip":
        torch.save(obj, path)
    elif container == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=5))
    return path


@pytest.mark.parametrize("name", PAYLOADS)
def test_payloads_are_live_positive_control(tmp_path, name):
    """Each payload really creates the marker when unpickled for real: the refusals below mean something."""
    cls, _ = PAYLOADS[name]
    marker = tmp_path / "control-marker"
    result = pickle.loads(pickle.dumps(cls(marker)))
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists()


@pytest.mark.parametrize("container, suffix", [("zip", ".ckpt"), ("legacy", ".pt"), ("bin", ".bin")])
@pytest.mark.parametrize("name", PAYLOADS)
def test_payloads_are_refused_and_never_run(tmp_path, monkeypatch, name, container, suffix):
    cls, offending_name = PAYLOADS[name]
    marker = tmp_path / "marker"
    path = write_payload(tmp_path / f"evil{suffix}", container, cls(marker))

    verdict = scan(path)
    assert verdict.verdict == "dangerous" and not verdict.ok
    assert any(g.endswith(offending_name) for g in verdict.offending), verdict
    assert offending_name in verdict.message and path.name in verdict.message

    with pytest.raises(UnsafeFileError) as info:
        check(path)
    assert path.name in info.value.one_line() and offending_name in info.value.one_line()
    assert info.value.hint

    with pytest.raises(UnsafeFileError):
        load_state_dict(path)
    with pytest.raises(UnsafeFileError):
        load_state_dict(path, mmap=False)

    # probing reads the same pickle's bytes, or unpickles it with inert stand-ins: it runs nothing
    from invokeai_model_install.identify import headers as probe_mod

    for threshold in (0, 10**15):  # the in-place reader, and the whole-pickle reader
        monkeypatch.setattr(probe_mod, "PICKLE_IN_PLACE_ABOVE", threshold)
        monkeypatch.setattr(probe_mod, "RECORDS_IN_PLACE_ABOVE", threshold)
        try:
            r = probe(path)
            assert r.kind in ("main", "unknown")
        except ProbeError:
            pass
    assert not marker.exists()


def test_payload_in_a_diffusers_folder_makes_the_folder_dangerous(tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text("{}")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert scan(folder).verdict == "safe"
    (folder / "text_encoder").mkdir()
    write_payload(folder / "text_encoder" / "pytorch_model.bin", "zip", OsSystem(marker))
    verdict = scan(folder)
    assert verdict.verdict == "dangerous"
    assert "text_encoder/pytorch_model.bin" in verdict.message and "posix.system" in verdict.offending
    with pytest.raises(UnsafeFileError, match="posix.system"):
        check(folder)
    assert not marker.exists()


def test_a_pickle_hidden_under_another_name_is_still_scanned(tmp_path):
    marker = tmp_path / "marker"
    for name in ("evil.safetensors", "evil.json", "evil"):
        path = write_payload(tmp_path / name, "zip", OsSystem(marker))
        assert scan(path).verdict == "dangerous", name
    folder = tmp_path / "f"
    folder.mkdir()
    write_payload(folder / "weights.dat", "bin", OsSystem(marker))
    assert scan(folder).verdict == "dangerous"
    assert not marker.exists()


def test_hidden_stack_global_target_is_dangerous(tmp_path):
    # STACK_GLOBAL fed by non-string values: static reading cannot tell what it imports
    path = tmp_path / "hidden.pkl"
    path.write_bytes(b"\x80\x04K\x01K\x02\x93)R.")
    verdict = scan(path)
    assert verdict.verdict == "dangerous" and "hidden" in verdict.message


def test_stack_global_through_the_memo_is_resolved(tmp_path):
    # protocol 4: module and name strings memoized, then fetched back for STACK_GLOBAL
    raw = (b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x04true\x85R.")
    path = tmp_path / "memo.pkl"
    path.write_bytes(raw)
    assert "posix.system" in scan(path).offending


def test_picklescan_second_opinion_catches_what_our_list_lacks(tmp_path):
    path = tmp_path / "collect.pkl"
    path.write_bytes(b"\x80\x02ctorch.utils.collect_env\nrun\n)R.")
    assert classify_global("torch.utils.collect_env.run") == "suspicious"  # not on our own list...
    assert scan(path).verdict == "dangerous"  # ...but picklescan's block-list has it


# --- the SD releases' pytorch_lightning checkpoint ---------------------------------------------


@pytest.fixture
def lightning_ckpt(tmp_path):
    """A checkpoint shaped like sd-v1-4.ckpt: Lightning's ModelCheckpoint class as a callbacks key, numpy scalars."""
    import numpy as np

    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    mods = {n: types.ModuleType(n) for n in names}

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = names[-1]
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mods[names[-1]].ModelCheckpoint = ModelCheckpoint
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(mods)
    try:
        as_key = tmp_path / "sd-v1-4.ckpt"
        torch.save({"state_dict": _tensors(), "global_step": 470000, "epoch": 6,
                    "pytorch-lightning_version": "1.4.2",
                    "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": np.float64(0.25),
                                                    "current_score": np.int64(3), "best_model_path": "x.ckpt"}}},
                   as_key)
        inst = ModelCheckpoint()
        inst.monitor = "val/loss"
        as_instance = tmp_path / "instance.ckpt"
        torch.save({"state_dict": _tensors(), "global_step": 10, "callbacks": [inst]}, as_instance)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    assert "pytorch_lightning" not in sys.modules or saved["pytorch_lightning"] is not None
    return as_key, as_instance


def test_lightning_checkpoint_is_safe_and_loads(lightning_ckpt):
    as_key, as_instance = lightning_ckpt
    for path in (as_key, as_instance):
        verdict = scan(path)
        assert verdict.verdict == "safe", verdict
        assert "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint" in verdict.globals
        assert check(path) == verdict
        sd = load_state_dict(path)
        assert set(sd) == set(_tensors()) and sd["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    r = probe(as_key)
    assert (r.kind, r.base, r.global_step) == ("main", "sd-1", 470000)


def test_picklescan_alone_calls_the_lightning_checkpoint_suspicious(lightning_ckpt):
    """The false positive we correct (FACTS.md): picklescan flags ModelCheckpoint, not as dangerous."""
    from picklescan.scanner import SafetyLevel, scan_file_path

    result = scan_file_path(str(lightning_ckpt[0]))
    levels = {f"{g.module}.{g.name}": g.safety for g in result.globals}
    assert levels["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"] == SafetyLevel.Suspicious


def test_weights_only_without_our_allow_list_refuses_lightning(lightning_ckpt):
    import pickle as _pickle

    with pytest.raises(_pickle.UnpicklingError):
        torch.load(str(lightning_ckpt[0]), weights_only=True)


# --- suspicious, unreadable, safetensors -----------------------------------------------------------


def test_unknown_harmless_global_is_suspicious_but_torch_still_refuses_loading(tmp_path):
    mod = types.ModuleType("mytrainer")

    class Config:
        pass

    Config.__module__ = "mytrainer"
    Config.__qualname__ = "Config"
    mod.Config = Config
    sys.modules["mytrainer"] = mod
    try:
        path = tmp_path / "custom.ckpt"
        torch.save({"state_dict": _tensors(), "config": Config()}, path)
    finally:
        sys.modules.pop("mytrainer", None)
    verdict = scan(path)
    assert verdict.verdict == "suspicious" and verdict.ok
    assert verdict.offending == ("mytrainer.Config",) and "mytrainer.Config" in verdict.message
    assert check(path).verdict == "suspicious"
    # weights_only stays the last line of defence: a global we did not allow is refused, not run
    with pytest.raises(UnsafeFileError, match="mytrainer"):
        load_state_dict(path)


def test_safetensors_are_safe_by_header_and_load(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"a": torch.arange(4, dtype=torch.float32)}, str(path))
    assert scan(path) == ScanVerdict("safe", (), "m.safetensors: safetensors (holds no code)")
    sd = load_state_dict(path)
    assert torch.equal(sd["a"], torch.arange(4, dtype=torch.float32))


def test_broken_safetensors_is_unreadable_with_a_clear_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    raw = b'{"a": {"dtype"'
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    verdict = scan(path)
    assert verdict.verdict == "unreadable" and "broken.safetensors" in verdict.message
    with pytest.raises(ProbeError, match="broken.safetensors"):
        check(path)
    with pytest.raises(ProbeError, match="not valid JSON"):
        load_state_dict(path)


def test_benign_pickle_renamed_safetensors_is_unreadable(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(_tensors(), path)
    verdict = scan(path)
    assert verdict.verdict == "unreadable" and "renamed .safetensors" in verdict.message
    with pytest.raises(ProbeError, match="renamed"):
        check(path)


@pytest.mark.parametrize("content", [b"\x80\x02}q\x00(X", b"hello world", b"PK\x03\x04broken zip"])
def test_garbage_is_unreadable(tmp_path, content):
    path = tmp_path / "model.ckpt"
    path.write_bytes(content)
    assert scan(path).verdict == "unreadable"
    with pytest.raises(ProbeError, match="model.ckpt"):
        check(path)
    with pytest.raises(ProbeError):
        load_state_dict(path)


def test_zip_without_data_pkl_and_missing_file_are_unreadable(tmp_path):
    z = tmp_path / "x.ckpt"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.txt", "hi")
    assert scan(z).verdict == "unreadable"
    assert scan(tmp_path / "nope.ckpt").verdict == "unreadable"


def test_folder_verdicts(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"a": 1}))
    (folder / "merges.txt").write_text("a b\n")
    save_file({"a": torch.zeros(2)}, str(folder / "w.safetensors"))
    torch.save(_tensors(), folder / "pytorch_model.bin")
    verdict = scan(folder)
    assert verdict.verdict == "safe" and "torch._utils._rebuild_tensor_v2" in verdict.globals
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scan(empty).verdict == "safe"
    (folder / "junk.ckpt").write_bytes(b"\x80\x02garbage")
    assert scan(folder).verdict == "unreadable"


# --- loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_load_state_dict_unwraps_and_maps(tmp_path, legacy):
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": _tensors(), "global_step": 3}, path, _use_new_zipfile_serialization=not legacy)
    sd = load_state_dict(path)
    assert set(sd) == set(_tensors())
    sd = load_state_dict(path, mmap=False)
    assert sd["model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"].shape == (32, 768)


def test_load_state_dict_refuses_non_dicts(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ProbeError, match="not a dict"):
        load_state_dict(path)


def test_classify_global():
    assert classify_global("torch._utils._rebuild_tensor_v2") == "safe"
    assert classify_global("torch.HalfStorage") == "safe"
    assert classify_global("posix.system") == "dangerous"
    assert classify_global("nt.system") == "dangerous"
    assert classify_global("os.path.join") == "dangerous"
    assert classify_global("builtins.__import__") == "dangerous"
    assert classify_global("__builtin__.getattr") == "dangerous"
    assert classify_global("runpy._run_code") == "dangerous"
    assert classify_global("socket.create_connection") == "dangerous"
    assert classify_global("builtins.set") == "safe"
    assert classify_global("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint") == "safe"
    assert classify_global("pytorch_lightning.callbacks.early_stopping.EarlyStopping") == "suspicious"
    assert classify_global("mytrainer.Config") == "suspicious"
    assert classify_global("pandas.read_pickle") == "dangerous"
    assert classify_global("torch.serialization.load") == "dangerous"


# --- the shared tiny models (tests/plugin_models.py) ---------------------------------------------


def test_tiny_lightning_checkpoint_is_safe_and_loads(tiny_checkpoints):
    path = tiny_checkpoints["sd-1", "ckpt", "lightning"]
    verdict = scan(path)
    assert verdict.verdict == "safe"
    assert any(g.startswith("pytorch_lightning.") for g in verdict.globals)
    sd = load_state_dict(path)
    assert any(k.startswith("model.diffusion_model.") for k in sd)
    assert all(hasattr(v, "shape") for k, v in sd.items() if k.startswith("model.diffusion_model."))


@pytest.mark.parametrize("kind", ["sd-1", "sdxl"])
def test_tiny_models_and_checkpoints_are_safe(tiny_models, tiny_checkpoints, kind):
    assert scan(tiny_models[kind]).verdict == "safe"
    for fmt in ("safetensors", "ckpt"):
        path = tiny_checkpoints[kind, fmt]
        assert check(path).verdict == "safe"
        assert len(load_state_dict(path)) > 100


@pytest.mark.parametrize("name", ["vae.ckpt", "embedding.pt", "embedding-sd-2.pt"])
def test_tiny_pickle_extras_are_safe(tiny_extras, name):
    path = tiny_extras[name]
    assert scan(path).verdict == "safe"
    assert load_state_dict(path)


def test_a_pickle_that_breaks_the_fast_scan_is_walked_statically(tmp_path):
    # BINPERSID with a one-element pid breaks the inert unpickler early; posix.system comes after
    raw = b"\x80\x02K\x01\x85Q" + b"0" + b"cposix\nsystem\nX\x04\x00\x00\x00true\x85R."
    path = tmp_path / "odd.pkl"
    path.write_bytes(raw)
    verdict = scan(path)
    assert verdict.verdict == "dangerous" and "posix.system" in verdict.offending
