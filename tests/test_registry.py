"""models.yaml registry: round trips, atomic writes, locking across processes, corrupt files."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.root import atomic
from invokeai_model_install.errors import ConfigError, NameClashError, RegistryLockedError, UnknownModelError
from invokeai_model_install.root.registry import (
    DEFAULT_HEADER,
    Registry,
    sanitize_name,
    stanza_format,
    stanza_paths,
)

HEADER = "# This file describes the models InvokeAI can use.\n# Keep this comment.\n\n"

SAMPLE = HEADER + """\
arabian-nights-1.0:
  description: A great fine-tune in Arabian Nights style
  weights: ./path/to/arabian-nights-1.0.ckpt
  config: ./configs/stable-diffusion/v1-inference.yaml
  format: ckpt
  vae: models/vae/vae-ft-mse.ckpt
  width: 512
  height: 512
  default: false
  my_custom_field: {nested: [1, 2, 3], note: kept}
arabian-nights-1.1:
  description: An even better fine-tune of the Arabian Nights
  repo_id: captahab/arabian-nights-1.1
  format: diffusers
  vae:
    repo_id: stabilityai/sd-vae-ft-mse
    subfolder: vae
  default: true
  zz_unknown: 42
  aa_unknown: last
local-folder:
  description: A downloaded directory
  path: models/diffusers/captahab-arabian-nights-1.1
  format: diffusers
  default: false
"""


@pytest.fixture
def models_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "configs" / "models.yaml"
    path.parent.mkdir()
    path.write_text(SAMPLE, encoding="utf-8")
    return path


def test_round_trip_keeps_both_stanza_kinds_unknown_fields_order_and_header(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    before = reg.load()
    with reg.transaction() as doc:
        doc.add("new-one", {"description": "added", "path": "models/diffusers/new", "format": "diffusers"})
    text = models_yaml.read_text(encoding="utf-8")
    assert text.startswith(HEADER)
    after = reg.load()
    assert list(after) == ["arabian-nights-1.0", "arabian-nights-1.1", "local-folder", "new-one"]
    for name, stanza in before.items():
        assert after[name] == stanza
        assert list(after[name]) == list(stanza)  # key order inside stanzas
    assert after["arabian-nights-1.0"]["my_custom_field"] == {"nested": [1, 2, 3], "note": "kept"}
    assert list(after["arabian-nights-1.1"])[-2:] == ["zz_unknown", "aa_unknown"]
    # the previous version is kept next to it
    assert (models_yaml.parent / "models.yaml.orig").read_text(encoding="utf-8") == SAMPLE


def test_unchanged_transaction_does_not_rewrite(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    with reg.transaction() as doc:
        assert doc.get("local-folder")["format"] == "diffusers"
    assert models_yaml.read_text(encoding="utf-8") == SAMPLE
    assert not (models_yaml.parent / "models.yaml.orig").exists()


def test_stanza_helpers_understand_both_kinds(models_yaml: Path) -> None:
    stanzas = Registry(models_yaml).load()
    assert stanza_format(stanzas["arabian-nights-1.0"]) == "ckpt"
    assert stanza_format({"weights": "x.ckpt"}) == "ckpt"
    assert stanza_format({"repo_id": "a/b"}) == "diffusers"
    assert stanza_paths(stanzas["arabian-nights-1.0"]) == [
        ("weights", "./path/to/arabian-nights-1.0.ckpt"),
        ("vae", "models/vae/vae-ft-mse.ckpt"),
    ]
    assert stanza_paths(stanzas["arabian-nights-1.1"]) == []  # hub repo and hub VAE: nothing local
    assert stanza_paths(stanzas["local-folder"]) == [("path", "models/diffusers/captahab-arabian-nights-1.1")]
    assert stanza_paths({"vae": {"path": "models/vae/x"}}) == [("vae.path", "models/vae/x")]


def test_get_and_names(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    assert reg.names() == ["arabian-nights-1.0", "arabian-nights-1.1", "local-folder"]
    assert reg.get("local-folder")["path"].startswith("models/diffusers")
    assert reg.default_name() == "arabian-nights-1.1"
    with pytest.raises(UnknownModelError) as info:
        reg.get("nope")
    line = info.value.one_line()
    assert "'nope'" in line and "invokeai-model-install list" in line and "\n" not in line


def test_load_returns_a_snapshot(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    snap = reg.load()
    snap["local-folder"]["description"] = "changed in memory"
    assert reg.get("local-folder")["description"] == "A downloaded directory"


def test_default_is_unique(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    with reg.transaction() as doc:
        doc.set_default("local-folder")
    defaults = [n for n, s in reg.load().items() if s.get("default") is True]
    assert defaults == ["local-folder"]
    with reg.transaction() as doc:
        doc.add("newer", {"description": "d", "repo_id": "a/b", "format": "diffusers", "default": True})
    defaults = [n for n, s in reg.load().items() if s.get("default") is True]
    assert defaults == ["newer"]
    with pytest.raises(UnknownModelError):
        with reg.transaction() as doc:
            doc.set_default("missing")


def test_add_clash_remove_rename_and_unique_name(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    with pytest.raises(NameClashError):
        with reg.transaction() as doc:
            doc.add("local-folder", {"description": "dup"})
    with reg.transaction() as doc:
        assert doc.unique_name("local-folder") == "local-folder-2"
        doc.add(doc.unique_name("local-folder"), {"description": "second"})
        assert doc.unique_name("My Model: v1") == "My-Model-v1"
        assert doc.unique_name("local-folder") == "local-folder-3"
        removed = doc.remove("arabian-nights-1.0")
        assert removed["format"] == "ckpt"
        doc.rename("arabian-nights-1.1", "renamed")
    assert reg.names() == ["renamed", "local-folder", "local-folder-2"]
    with pytest.raises(UnknownModelError):
        with reg.transaction() as doc:
            doc.remove("arabian-nights-1.0")


def test_sanitize_name() -> None:
    assert sanitize_name("  My Model: v1/2 ") == "My-Model-v1-2"
    assert sanitize_name("d&d-diffusion-1.0") == "d&d-diffusion-1.0"
    assert sanitize_name("///") == "model"
    assert ".." not in sanitize_name("a/../../b")


def test_exception_inside_transaction_writes_nothing(models_yaml: Path) -> None:
    reg = Registry(models_yaml)
    with pytest.raises(RuntimeError):
        with reg.transaction() as doc:
            doc.remove("local-folder")
            raise RuntimeError("boom")
    assert models_yaml.read_text(encoding="utf-8") == SAMPLE


def test_crash_before_replace_keeps_old_file_and_no_temp_files(models_yaml: Path, monkeypatch) -> None:
    reg = Registry(models_yaml)

    def crash(src, dst):  # the process "dies" between writing the temp file and the rename
        raise OSError("simulated crash before os.replace")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        with reg.transaction() as doc:
            doc.add("lost", {"description": "never written"})
    monkeypatch.undo()
    assert models_yaml.read_text(encoding="utf-8") == SAMPLE
    leftovers = sorted(p.name for p in models_yaml.parent.iterdir())
    assert leftovers == ["models.yaml", "models.yaml.lock"]


def test_crash_on_the_final_replace_keeps_old_file(models_yaml: Path, monkeypatch) -> None:
    """The backup rename succeeds, the final one fails: models.yaml still holds the old content."""
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == "models.yaml":
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError):
        with Registry(models_yaml).transaction() as doc:
            doc.add("lost", {"description": "never written"})
    assert calls == ["models.yaml.orig", "models.yaml"]
    assert models_yaml.read_text(encoding="utf-8") == SAMPLE
    assert not [p for p in models_yaml.parent.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_yaml_names_file_and_line_and_is_never_overwritten(models_yaml: Path) -> None:
    bad = SAMPLE.replace("  width: 512\n", "  width: [512\n")
    models_yaml.write_text(bad, encoding="utf-8")
    reg = Registry(models_yaml)
    with pytest.raises(ConfigError) as info:
        reg.load()
    line = info.value.one_line()
    assert str(models_yaml) in line
    # the broken flow list opens on line 10; PyYAML notices on the next line
    assert "line 11:" in line
    with pytest.raises(ConfigError):
        with reg.transaction() as doc:
            doc.add("x", {"description": "y"})
    assert models_yaml.read_text(encoding="utf-8") == bad


def test_duplicate_model_names_are_refused_with_line(models_yaml: Path) -> None:
    text = SAMPLE + "local-folder:\n  description: twice\n"
    models_yaml.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Registry(models_yaml).load()
    assert "'local-folder' appears twice" in str(info.value)
    assert f"line {text.count(chr(10)) - 1}" in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="line 1"):
        Registry(path).load()


def test_missing_and_comment_only_files_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "configs" / "models.yaml"
    reg = Registry(path)
    assert reg.load() == {}
    reg.ensure_exists()
    assert path.read_text() == DEFAULT_HEADER
    assert reg.load() == {}
    with reg.transaction() as doc:
        doc.add("a", {"description": "first", "weights": "models/checkpoints/a.safetensors", "format": "ckpt"})
    text = path.read_text()
    assert text.startswith(DEFAULT_HEADER)
    assert yaml.safe_load(text) == {"a": {"description": "first", "weights": "models/checkpoints/a.safetensors", "format": "ckpt"}}


def test_metadata_entries_are_kept_but_not_listed(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("__metadata__:\n  version: 2.3.0\nm:\n  description: x\n  repo_id: a/b\n")
    reg = Registry(path)
    assert reg.names() == ["m"]
    with reg.transaction() as doc:
        doc.add("n", {"description": "y", "repo_id": "c/d"})
    assert yaml.safe_load(path.read_text())["__metadata__"] == {"version": "2.3.0"}


def test_write_keeps_file_mode(models_yaml: Path) -> None:
    models_yaml.chmod(0o640)
    with Registry(models_yaml).transaction() as doc:
        doc.add("x", {"description": "y"})
    assert (models_yaml.stat().st_mode & 0o777) == 0o640


def test_lock_timeout_raises_registry_locked(models_yaml: Path) -> None:
    holder = Registry(models_yaml)
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with holder.transaction():
            entered.set()
            release.wait(30)

    # filelock locks are per-thread by default; a second thread blocks like another process would
    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(30)
        with pytest.raises(RegistryLockedError) as info:
            with Registry(models_yaml, lock_timeout=0.2).transaction():
                pass
        assert "models.yaml" in info.value.one_line() and "another installer" in info.value.one_line()
    finally:
        release.set()
        thread.join()
    assert models_yaml.read_text(encoding="utf-8") == SAMPLE


def _add_many(path: str, prefix: str, count: int, start: "multiprocessing.synchronize.Event") -> None:
    start.wait(60)
    reg = Registry(path, lock_timeout=120)
    for i in range(count):
        with reg.transaction() as doc:
            doc.add(f"{prefix}-{i}", {"description": f"{prefix} number {i}", "repo_id": f"{prefix}/m{i}", "format": "diffusers"})
            time.sleep(0)  # yield inside the lock: the other process must wait, not interleave


def test_two_processes_adding_fifty_each_keep_all_hundred(tmp_path: Path) -> None:
    path = tmp_path / "configs" / "models.yaml"
    path.parent.mkdir()
    path.write_text(HEADER, encoding="utf-8")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_add_many, args=(str(path), prefix, 50, start)) for prefix in ("alpha", "beta")]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(240)
        assert proc.exitcode == 0
    names = Registry(path).names()
    assert len(names) == 100
    assert set(names) == {f"{p}-{i}" for p in ("alpha", "beta") for i in range(50)}
    assert path.read_text(encoding="utf-8").startswith(HEADER)


def test_model_names_are_kept_as_written(tmp_path: Path) -> None:
    """YAML 1.1 would read `yes:` as True and `1.50:` as 1.5; a rewrite must not rename those models."""
    path = tmp_path / "models.yaml"
    path.write_text("yes:\n  description: a\n  repo_id: o/a\n1.50:\n  description: b\n  repo_id: o/b\n  sizes: [1, 2]\n")
    reg = Registry(path)
    with reg.transaction() as doc:
        doc.add("c", {"description": "c"})
    assert reg.names() == ["yes", "1.50", "c"]
    assert reg.get("1.50")["sizes"] == [1, 2]


def test_purge_model_files_deletes_only_inside_models(tmp_path: Path) -> None:
    from invokeai_model_install.root.layout import RootLayout
    from invokeai_model_install.root.registry import purge_model_files

    layout = RootLayout(tmp_path / "root")
    mine = layout.kind_dir("lora") / "mine.safetensors"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"x")
    layout.partial_dir.mkdir(parents=True)
    outside = tmp_path / "outside.ckpt"
    outside.write_bytes(b"y")
    shared = layout.kind_dir("vae") / "shared.pt"
    shared.parent.mkdir()
    shared.write_bytes(b"z")
    removed = {"weights": "loras/mine.safetensors", "path": "models/.partial", "vae": "models/vae/shared.pt"}
    deleted, kept = purge_model_files(layout, removed, {"other": {"vae": str(shared)}})
    assert deleted == [mine] and not mine.exists()
    assert {(p, why.split(" ")[0]) for p, why in kept} == {(layout.partial_dir, "a"), (shared, "still")}
    assert layout.partial_dir.is_dir() and shared.exists()
    deleted, kept = purge_model_files(layout, {"weights": str(outside)}, {})
    assert deleted == [] and kept == [(outside, f"outside {layout.models_dir}")] and outside.exists()


def test_nested_transaction_fails_at_once_instead_of_waiting_on_itself(models_yaml: Path) -> None:
    reg = Registry(models_yaml, lock_timeout=60)
    with pytest.raises(RuntimeError, match="nested"):
        with reg.transaction():
            with Registry(models_yaml).transaction():
                pass
    with reg.transaction() as doc:  # the lock was released: usable again
        doc.add("after", {"description": "ok"})
    assert "after" in reg.names()
