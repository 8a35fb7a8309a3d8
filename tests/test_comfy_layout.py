"""`--layout comfyui --root COMFY_DIR`: each kind into ComfyUI's folder, verified like any install, no models.yaml;
manifests make re-runs, list, delete and verify work."""

from __future__ import annotations

import json
import shutil

import pytest

from invokeai_model_install.app import cli
from invokeai_model_install.root.layout import ComfyLayout
from tests.sharefixtures import publish
from tests.test_probe_families import flux_dit, rrdbnet, write
from tests.test_share_links import comfy_lists


@pytest.fixture(autouse=True)
def thread_worker(monkeypatch):
    monkeypatch.setenv("INVOKEAI_INSTALL_WORKER", "thread")


@pytest.fixture
def comfy(tmp_path):
    d = tmp_path / "ComfyUI"
    (d / "models" / "checkpoints").mkdir(parents=True)
    (d / "main.py").write_text("")
    return d


def run(comfy, *args):
    return cli.main(["--layout", "comfyui", "--root", str(comfy), *args])


def test_every_kind_lands_in_comfyuis_folder(comfy, hub_server, tiny_models, tiny_checkpoints, tiny_extras, file_server, capsys):
    publish(hub_server, tiny_models)
    shutil.copy(tiny_checkpoints[("sd-1", "safetensors")], file_server.folder / "dreamshaper.safetensors")
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], file_server.folder / "style.safetensors")
    shutil.copy(tiny_extras["embedding.pt"], file_server.folder / "easyneg.pt")
    write(file_server.folder / "RealESRGAN_x4plus.pth", {"params_ema": rrdbnet()}, "pt")
    write(file_server.folder / "flux1-dev.safetensors", flux_dit())
    urls = [file_server.url_for(n) for n in ("dreamshaper.safetensors", "style.safetensors", "easyneg.pt",
                                             "RealESRGAN_x4plus.pth", "flux1-dev.safetensors")]
    capsys.readouterr()
    assert run(comfy, "--add", "test/tiny-sd", "test/tiny-vae", *urls, "--json") == 0, capsys.readouterr()
    models = comfy / "models"
    expected = {  # ComfyUI folder type -> what its loader lists
        "checkpoints": models / "checkpoints" / "dreamshaper.safetensors",
        "loras": models / "loras" / "style.safetensors",
        "embeddings": models / "embeddings" / "easyneg.pt",
        "upscale_models": models / "upscale_models" / "RealESRGAN_x4plus.pth",
        "diffusion_models": models / "diffusion_models" / "flux1-dev.safetensors",
        "vae": models / "vae" / "tiny-vae" / "diffusion_pytorch_model.safetensors",
        "diffusers": models / "diffusers" / "tiny-sd",
    }
    for folder_type, path in expected.items():
        assert str(path) in comfy_lists([str(models / folder_type)], folder_type), folder_type
    assert not list(comfy.rglob("models.yaml*")) and not (comfy / "configs").exists()
    # list, verify, a re-run: all from the manifests
    capsys.readouterr()
    assert run(comfy, "list", "--json") == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"tiny-sd", "tiny-vae", "dreamshaper", "style", "easyneg", "RealESRGAN_x4plus", "flux1-dev"}
    assert listed["flux1-dev"]["kind"] == "diffusion_model" and listed["style"]["path"] == "models/loras/style.safetensors"
    assert run(comfy, "verify") == 0
    assert "not in models.yaml" not in capsys.readouterr().out
    assert run(comfy, "--add", "test/tiny-sd", *urls, "--json") == 0
    assert {o["status"] for o in json.loads(capsys.readouterr().out)["items"]} == {"skipped"}
    # delete --purge removes the file and the record; the folder stays
    assert run(comfy, "delete", "style", "--purge") == 0
    assert not expected["loras"].exists() and (models / "loras").is_dir()
    capsys.readouterr()
    assert run(comfy, "delete", "style") == 2


def test_comfyui_layout_usage_errors(comfy, tmp_path, capsys):
    assert cli.main(["--layout", "comfyui", "--add", "x/y"]) == 2
    assert "--layout comfyui needs --root" in capsys.readouterr().err
    assert run(tmp_path / "nowhere", "--add", "x/y") == 1
    assert "no ComfyUI models folder" in capsys.readouterr().err
    assert run(comfy, "--add", "x/y", "--convert") == 2
    assert run(comfy, "default", "x") == 2
    assert "no models.yaml" in capsys.readouterr().err
    assert run(comfy, "link", "a1111", str(comfy)) == 2
    capsys.readouterr()
    assert run(comfy, "--add", "test/none", "--dry-run") in (0, 1)
    assert "Dry run for" in capsys.readouterr().out and not (comfy / "models" / ".invokeai-manifests").exists()
    layout = ComfyLayout(comfy)
    assert layout.kind_dir("t2i_adapter") == comfy / "models" / "controlnet" and not layout.has_registry
