"""The sharing commands through the command line: what they print and their exit status."""

from __future__ import annotations

import errno
import json
import os

import pytest

from invokeai_model_install.app import cli
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.share import lockfile
from tests.sharefixtures import populate_root


@pytest.fixture
def root(tmp_path, hub_server, tiny_models, tiny_extras, tiny_checkpoints):
    return populate_root(tmp_path / "invokeai", hub_server, tiny_models, tiny_extras, tiny_checkpoints, hub_models=False)


def main(root, *args):
    return cli.main(["--root", str(root.root), *args])


def test_link_unlink_dedupe_freeze_on_the_command_line(root, tmp_path, capsys):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    webui = tmp_path / "webui"
    (webui / "models").mkdir(parents=True)
    capsys.readouterr()
    assert main(root, "link", "comfyui", str(comfy)) == 0
    out = capsys.readouterr().out
    assert f"Wrote section 'invokeai' of {comfy / 'extra_model_paths.yaml'}" in out and "loras" in out
    assert main(root, "link", "comfyui", str(comfy)) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert main(root, "link", "a1111", str(webui)) == 0
    out = capsys.readouterr().out
    assert "Linked 5 file(s)" in out and "no file was copied" in out
    assert main(root, "dedupe", "--dry-run", "--json", "--min-size", "1") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] and report["reclaimed_bytes"] == 0  # the links share one copy already
    lock = tmp_path / "lock.yaml"
    assert main(root, "freeze") == 0  # stdout
    doc = lockfile.freeze(root)
    assert {m["name"] for m in doc["locked"]} == {m.name for m in mf.all_manifests(root)}
    assert "lock_version: 1" in capsys.readouterr().out
    assert main(root, "freeze", "--output", str(lock)) == 0 and lock.is_file()
    assert main(root, "unlink", "a1111", str(webui)) == 0
    assert "Removed 5 link(s)" in capsys.readouterr().out
    assert main(root, "unlink", "comfyui", str(comfy)) == 0
    assert "Removed section 'invokeai'" in capsys.readouterr().out
    assert main(root, "link", "comfyui", str(tmp_path / "missing")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_link_a1111_where_links_cannot_be_made_exits_1_with_the_flags(root, tmp_path, capsys, monkeypatch):
    webui = tmp_path / "webui"
    (webui / "models").mkdir(parents=True)

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)  # a filesystem with neither hard links...
    monkeypatch.setattr(os, "symlink", refuse)  # ...nor symlinks (exFAT, FAT32)
    capsys.readouterr()
    assert main(root, "link", "a1111", str(webui)) == 1
    out = capsys.readouterr().out
    assert f"--ckpt-dir {root.kind_dir('main')}" in out and f"--lora-dir {root.kind_dir('lora')}" in out
    assert not [p for p in webui.rglob("*") if p.is_file()]


def test_origin_of_every_source_key():
    def m(key):
        return mf.Manifest(name="x", key=key, source="", kind="main", format="diffusers", path="p")

    assert lockfile.origin_of(m("hub:org/name")) == {"hub": "org/name"}
    assert lockfile.origin_of(m("hub:org/name@v1.0")) == {"hub": "org/name"}
    assert lockfile.origin_of(m("hub:org/name:vae")) == {"hub": "org/name", "subfolder": "vae"}
    assert lockfile.origin_of(m("hub:org/name/sub/model.safetensors")) == {"hub": "org/name", "path_in_repo": "sub/model.safetensors"}
    assert lockfile.origin_of(m("url:https://civitai.com/api/download/models/1")) == {"url": "https://civitai.com/api/download/models/1"}
    assert lockfile.origin_of(m("file:/data/x.safetensors")) == {"file": "/data/x.safetensors"}
    assert lockfile.origin_of(m("hub:org/name#diffusers")) == {"converted_from": "hub:org/name"}
