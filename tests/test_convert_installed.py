"""``invokeai-model-install convert NAME [--delete-original]``: an installed checkpoint becomes diffusers in place."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from invokeai_model_install.app import cli
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.dry_run import resolve_plan
from invokeai_model_install.install.run import run_plan
from invokeai_model_install.root.registry import Registry
from tests.web_support import LEGACY, LORA, OUTSIDE, build_template_root, copy_root


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_checkpoints, tiny_extras):
    base = tmp_path_factory.mktemp("convert-template")
    return build_template_root(base / "root", base / "outside", tiny_checkpoints, tiny_extras)


@pytest.fixture
def layout(template, tmp_path, monkeypatch):
    monkeypatch.setenv("INVOKEAI_INSTALL_WORKER", "thread")
    return copy_root(template, tmp_path / "root")


def run(layout, *args: str) -> int:
    return cli.main(["--root", str(layout.root), *args])


def test_convert_replaces_the_stanza_and_keeps_the_original(layout, capsys):
    with Registry(layout.models_yaml).transaction() as doc:
        doc.set_default(LEGACY)
        doc.get(LEGACY)["custom_note"] = "keep me"
    ckpt = layout.kind_dir("main") / f"{LEGACY}.safetensors"
    assert run(layout, "convert", LEGACY) == 0
    doc = yaml.safe_load(layout.models_yaml.read_text())
    assert list(doc) == [LEGACY, OUTSIDE]  # same name, same place (the LoRA has no stanza)
    stanza = doc[LEGACY]
    assert stanza["format"] == "diffusers" and stanza["path"] == f"models/converted_ckpts/{LEGACY}"
    assert stanza["default"] is True and stanza["custom_note"] == "keep me" and stanza["base"] == "sd-1"
    assert "weights" not in stanza and "config" not in stanza
    assert ckpt.exists()
    folder = layout.converted_dir / LEGACY
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    manifest = json.loads((layout.manifests_dir / f"{LEGACY}.json").read_text())
    assert manifest["format"] == "diffusers" and manifest["state"] == "installed"
    assert list(manifest["source_sha256"]) == [f"models/checkpoints/{LEGACY}.safetensors"]
    # the kept original is known by content: a scan of its folder does not import it again
    from invokeai_model_install.install import scan

    assert scan.find_new_models(layout.kind_dir("main"), layout) == []
    assert run(layout, "verify", LEGACY) == 0


def test_delete_original(layout):
    ckpt = layout.kind_dir("main") / f"{LEGACY}.safetensors"
    assert run(layout, "convert", LEGACY, "--delete-original") == 0
    assert not ckpt.exists()
    assert Registry(layout.models_yaml).get(LEGACY)["format"] == "diffusers"


def test_delete_original_never_outside_models(layout, tmp_path, tiny_checkpoints):
    outside = tmp_path / "mine" / "mine.safetensors"
    outside.parent.mkdir()
    shutil.copyfile(tiny_checkpoints["sd-1", "safetensors"], outside)
    assert run_plan(InstallPlan(imports=(str(outside),)), layout).ok
    result = run_plan(InstallPlan(convert_models=("mine",), delete_original=True), layout)
    assert result.ok, result.to_json()
    assert outside.exists()
    assert "kept the original" in result.outcomes[0].message and "outside" in result.outcomes[0].message


def test_sd2_prediction_type_comes_from_its_config(layout, tmp_path, tiny_checkpoints):
    src = tmp_path / "sd2.safetensors"
    shutil.copyfile(tiny_checkpoints["sd-2", "safetensors"], src)
    assert run_plan(InstallPlan(imports=(str(src),), prediction_type="v"), layout).ok
    assert Registry(layout.models_yaml).get("sd2")["config"].endswith("v2-inference-v.yaml")
    result = run_plan(InstallPlan(convert_models=("sd2",)), layout, ask=lambda q: pytest.fail("asked"))
    assert result.ok, result.to_json()
    sched = json.loads((layout.converted_dir / "sd2" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction"


@pytest.mark.parametrize("name,code,words", [
    ("nope", 2, "no model named 'nope'"),
    (LORA, 1, "not a main model"),
])
def test_refusals(layout, capsys, name, code, words):
    before = layout.models_yaml.read_text()
    assert run(layout, "convert", name) == code
    assert words in capsys.readouterr().err
    assert layout.models_yaml.read_text() == before


def test_already_diffusers(layout, capsys):
    assert run(layout, "convert", LEGACY) == 0
    capsys.readouterr()
    assert run(layout, "convert", LEGACY) == 1
    assert "already a diffusers model" in capsys.readouterr().err


def test_dry_run_names_the_conversion(layout):
    planned = resolve_plan(InstallPlan(convert_models=(LEGACY,), delete_original=True), layout)
    assert planned[0].action == "convert" and "deleting the original" in planned[0].what
