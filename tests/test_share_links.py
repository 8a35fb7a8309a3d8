"""`link comfyui` / `link a1111`: ComfyUI's extra_model_paths.yaml and A1111's folders see every installed model.

ComfyUI's side is checked the way ComfyUI itself reads the file (utils/extra_config.py): every top-level
section, ``base_path`` joined with each path of each key, values split on newlines; a folder type lists
the model files under its folders recursively (diffusers: folders holding model_index.json).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.errors import UsageError
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.share import a1111, comfyui
from tests.sharefixtures import populate_root

COMFY_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

USER_FILE = """\
# my own settings: keep them
comfyui:
    base_path: /opt/other-comfy/
    is_default: true
    checkpoints: models/checkpoints/   # trailing comment
    loras: |
        models/loras
        models/LyCORIS

#a111:
#    base_path: path/to/stable-diffusion-webui/
"""


def comfy_search_paths(yaml_path: Path) -> dict[str, list[str]]:
    """Folder type -> folders, exactly as ComfyUI's load_extra_path_config adds them."""
    config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    out: dict[str, list[str]] = {}
    for section in config:
        conf = dict(config[section] or {})
        base_path = conf.pop("base_path", None)
        if base_path:
            base_path = os.path.expandvars(os.path.expanduser(base_path))
            if not os.path.isabs(base_path):
                base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        conf.pop("is_default", None)
        for folder_type, value in conf.items():
            for line in str(value).split("\n"):
                if not line:
                    continue
                full = os.path.join(base_path, line) if base_path else os.path.abspath(os.path.join(yaml_dir, line))
                out.setdefault(folder_type, []).append(os.path.normpath(full))
    return out


def comfy_lists(paths: list[str], folder_type: str) -> set[str]:
    """What ComfyUI's loader nodes offer for a folder type: files (recursively), or diffusers folders."""
    found: set[str] = set()
    for base in paths:
        for dirpath, _dirs, files in os.walk(base, followlinks=True):
            if folder_type == "diffusers":
                if "model_index.json" in files:
                    found.add(os.path.normpath(dirpath))
                continue
            found.update(os.path.normpath(os.path.join(dirpath, f)) for f in files if os.path.splitext(f)[1] in COMFY_EXTENSIONS)
    return found


#: independent statement of where ComfyUI looks for each kind (its folder_paths names)
EXPECTED_FOLDER = {("main", "diffusers"): "diffusers", ("main", "safetensors"): "checkpoints", ("vae", "diffusers"): "vae",
                   ("vae", "safetensors"): "vae", ("lora", "safetensors"): "loras", ("embedding", "ckpt"): "embeddings",
                   ("controlnet", "safetensors"): "controlnet"}


@pytest.fixture
def root(tmp_path, hub_server, tiny_models, tiny_extras, tiny_checkpoints):
    return populate_root(tmp_path / "invokeai", hub_server, tiny_models, tiny_extras, tiny_checkpoints)


@pytest.fixture
def comfy(tmp_path):
    d = tmp_path / "ComfyUI"
    (d / "models" / "checkpoints").mkdir(parents=True)
    (d / "main.py").write_text("")
    return d


def test_comfyui_sees_every_installed_model_under_its_folder_type(root, comfy):
    result = comfyui.link(root, comfy)
    assert result.changed and result.backup is None
    paths = comfy_search_paths(comfy / "extra_model_paths.yaml")
    manifests = list(mf.all_manifests(root))
    assert len(manifests) == 7
    for m in manifests:
        folder_type = EXPECTED_FOLDER[(m.kind, m.format)]
        listed = comfy_lists(paths[folder_type], folder_type)
        model = os.path.normpath(root.absolute(m.path))
        if m.format == "diffusers" and m.kind == "main":
            assert model in listed, (m.name, folder_type)
        else:  # a file, or the weights inside a diffusers component folder (ComfyUI loads the file)
            weights = {os.path.normpath(root.absolute(f.path)) for f in m.files
                       if os.path.splitext(f.path)[1] in COMFY_EXTENSIONS}
            assert weights and weights <= listed, (m.name, folder_type)


def test_comfyui_keeps_the_users_sections_keys_and_comments(root, comfy):
    f = comfy / "extra_model_paths.yaml"
    f.write_text(USER_FILE)
    first = comfyui.link(root, comfy)
    text = f.read_text()
    assert text.startswith(USER_FILE)  # every byte of the user's file, then our section
    assert (comfy / "extra_model_paths.yaml.bak").read_text() == USER_FILE
    data = yaml.safe_load(text)
    assert data["comfyui"] == yaml.safe_load(USER_FILE)["comfyui"]
    assert data["invokeai"]["base_path"] == str(root.root)
    assert comfy_search_paths(f)["loras"][:2] == ["/opt/other-comfy/models/loras", "/opt/other-comfy/models/LyCORIS"]
    assert first.changed
    # a re-run changes nothing (not even the backup)
    mtime = f.stat().st_mtime_ns
    again = comfyui.link(root, comfy)
    assert not again.changed and f.read_text() == text and f.stat().st_mtime_ns == mtime
    # our section is updated in place when the root's folders change; the user's lines after it stay
    f.write_text(text + "extra:\n    vae: /somewhere/vae\n")
    (root.kind_dir("vae")).mkdir(parents=True, exist_ok=True)
    comfyui.link(root, comfy)
    assert yaml.safe_load(f.read_text())["extra"] == {"vae": "/somewhere/vae"}
    # unlink removes exactly our section
    gone = comfyui.unlink(root, comfy)
    assert gone.changed and f.read_text() == USER_FILE + "extra:\n    vae: /somewhere/vae\n"


def test_comfyui_link_then_unlink_restores_the_file_exactly(root, comfy):
    f = comfy / "extra_model_paths.yaml"
    f.write_text(USER_FILE.rstrip("\n"))  # no newline at the end
    comfyui.link(root, comfy)
    comfyui.unlink(root, comfy)
    assert f.read_text() == USER_FILE  # only a final newline was added
    assert not comfyui.unlink(root, comfy).changed


def test_comfyui_never_takes_over_a_section_it_did_not_write(root, comfy):
    f = comfy / "extra_model_paths.yaml"
    f.write_text("invokeai:\n    base_path: /mine\n    checkpoints: x\n")
    with pytest.raises(UsageError, match="did not write") as err:
        comfyui.link(root, comfy)
    assert "--section" in err.value.one_line()
    with pytest.raises(UsageError):
        comfyui.unlink(root, comfy)
    assert f.read_text() == "invokeai:\n    base_path: /mine\n    checkpoints: x\n"
    result = comfyui.link(root, comfy, section="invokeai_root2")
    assert result.changed and "invokeai_root2" in yaml.safe_load(f.read_text())


def test_comfyui_refuses_a_folder_that_is_not_comfyui(root, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="does not look like a ComfyUI folder"):
        comfyui.link(root, tmp_path / "empty")


# --- A1111 -------------------------------------------------------------------------------------------

A1111_FOLDER = {"main": "models/Stable-diffusion", "vae": "models/VAE", "lora": "models/Lora",
                "controlnet": "models/ControlNet", "embedding": "embeddings"}


@pytest.fixture
def webui(tmp_path):
    d = tmp_path / "stable-diffusion-webui"
    (d / "models" / "Stable-diffusion").mkdir(parents=True)
    (d / "webui.py").write_text("")
    return d


def _single_file_models(root):
    return [m for m in mf.all_manifests(root) if m.format != "diffusers"]


def test_a1111_hard_links_every_single_file_model(root, webui):
    result = a1111.link(root, webui)
    singles = _single_file_models(root)
    assert len(singles) == 5
    for m in singles:
        ours = root.absolute(m.path)
        theirs = webui / A1111_FOLDER[m.kind] / ours.name
        assert theirs.stat().st_ino == ours.stat().st_ino and ours.stat().st_nlink == 2  # one copy, two names
    assert {method for method, _, _ in result.linked} == {"hardlink"}
    assert not result.flags
    # the diffusers models are not linked (A1111 loads single files): nothing of theirs appears
    assert not any("diffusion_pytorch_model" in t for _, t, _ in result.linked)
    again = a1111.link(root, webui)
    assert not again.linked and len(again.already) == len(result.linked)
    gone = a1111.unlink(root, webui)
    assert sorted(gone.removed) == sorted(t for _, t, _ in result.linked)
    assert all(root.absolute(m.path).stat().st_nlink == 1 for m in singles)


def test_a1111_on_another_filesystem_uses_symlinks(root):
    if os.stat("/dev/shm").st_dev == root.root.stat().st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the test folder here")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        webui = Path(other) / "webui"
        (webui / "models").mkdir(parents=True)
        result = a1111.link(root, webui)
        assert {method for method, _, _ in result.linked} == {"symlink"}
        for m in _single_file_models(root):
            theirs = webui / A1111_FOLDER[m.kind] / root.absolute(m.path).name
            assert theirs.is_symlink() and theirs.resolve() == root.absolute(m.path).resolve()
        a1111.unlink(root, webui)
        assert not any(p.is_symlink() for p in webui.rglob("*"))


def test_a1111_where_no_link_can_be_made_prints_flags_and_copies_nothing(root, webui):
    def no_links(src, dest):
        raise OSError(errno.EPERM, "Operation not permitted")

    result = a1111.link(root, webui, _linker=no_links)
    assert not result.linked
    assert result.flags == {
        "--ckpt-dir": str(root.kind_dir("main")), "--vae-dir": str(root.kind_dir("vae")),
        "--lora-dir": str(root.kind_dir("lora")), "--controlnet-dir": str(root.kind_dir("controlnet")),
        "--embeddings-dir": str(root.kind_dir("embedding")),
    }
    assert not [p for p in webui.rglob("*") if p.is_file() and p.name != "webui.py"]  # never a silent copy


def test_a1111_leaves_a_different_file_of_the_same_name_alone(root, webui):
    ckpt = next(m for m in _single_file_models(root) if m.kind == "main")
    theirs = webui / "models/Stable-diffusion" / root.absolute(ckpt.path).name
    theirs.write_bytes(b"the user's own file")
    result = a1111.link(root, webui)
    assert (str(theirs), "a different file of that name is already there") in result.skipped
    assert theirs.read_bytes() == b"the user's own file"
    a1111.unlink(root, webui)
    assert theirs.read_bytes() == b"the user's own file"
