"""Starter catalogue: the packaged INITIAL_MODELS.yaml and validation of hand-made ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from invokeai_model_install.root.catalog import (
    StarterModel,
    VaeRef,
    load_catalog,
    recommended_keys,
    support_models,
)
from invokeai_model_install.errors import ConfigError

SEED_TABLE = {  # the source page's table: name -> (repo id then, size in GB)
    "stable-diffusion-1.5": ("runwayml/stable-diffusion-v1-5", 4.27),
    "sd-inpainting-1.5": ("runwayml/stable-diffusion-inpainting", 4.27),
    "stable-diffusion-2.1": ("stabilityai/stable-diffusion-2-1", 5.21),
    "sd-inpainting-2.0": ("stabilityai/stable-diffusion-2-1", 5.21),
    "analog-diffusion-1.0": ("wavymulder/Analog-Diffusion", 2.13),
    "deliberate-1.0": ("XpucT/Deliberate", 4.27),
    "d&d-diffusion-1.0": ("0xJustin/Dungeons-and-Diffusion", 2.13),
    "dreamlike-photoreal-2.0": ("dreamlike-art/dreamlike-photoreal-2.0", 2.13),
    "inkpunk-1.0": ("Envvi/Inkpunk-Diffusion", 4.27),
    "openjourney-4.0": ("prompthero/openjourney", 2.13),
    "portrait-plus-1.0": ("wavymulder/portraitplus", 2.13),
    "seek-art-mega-1.0": ("coreco/seek.art_MEGA", 2.1),
    "trinart-2.0": ("naclbit/trinart_stable_diffusion_v2", 2.13),
    "waifu-diffusion-1.4": ("hakurei/waifu-diffusion", 2.13),
}


def test_packaged_catalogue_has_the_seed_models_and_sdxl() -> None:
    catalog = load_catalog()
    assert set(SEED_TABLE) <= set(catalog)
    assert {"stable-diffusion-xl-base-1.0", "stable-diffusion-xl-refiner-1.0", "stable-diffusion-2.1-base"} <= set(catalog)
    for key, (repo, gb) in SEED_TABLE.items():
        model = catalog[key]
        assert isinstance(model, StarterModel) and model.key == key
        assert model.size == round(gb * 1e9), key
        assert f"({gb} GB)" in model.description
        assert model.license and model.license.startswith("https://")
        assert model.format == "diffusers"
        if key not in ("stable-diffusion-1.5", "sd-inpainting-1.5", "sd-inpainting-2.0"):
            assert model.repo_id == repo


def test_moved_repos_use_the_new_home_and_keep_the_old_as_fallback() -> None:
    catalog = load_catalog()
    sd15 = catalog["stable-diffusion-1.5"]
    assert sd15.repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert sd15.fallback_repo_ids == ("runwayml/stable-diffusion-v1-5",)
    assert sd15.repo_ids == ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
    inpaint = catalog["sd-inpainting-1.5"]
    assert inpaint.repo_id == "stable-diffusion-v1-5/stable-diffusion-inpainting"
    assert inpaint.fallback_repo_ids == ("runwayml/stable-diffusion-inpainting",)
    # the source table's SD 2.0 inpainting row pointed at the 2.1 repo by mistake
    assert catalog["sd-inpainting-2.0"].repo_id == "stabilityai/stable-diffusion-2-inpainting"


def test_defaults_recommendations_and_support_vaes() -> None:
    catalog = load_catalog()
    assert [k for k, m in catalog.items() if m.default] == ["stable-diffusion-1.5"]
    assert recommended_keys(catalog) == [
        "stable-diffusion-1.5",
        "sd-inpainting-1.5",
        "stable-diffusion-2.1",
    ]
    # SDXL needs InvokeAI 3+: marked, never recommended for (or installed into) a 2.3 root
    for key in ("stable-diffusion-xl-base-1.0", "stable-diffusion-xl-refiner-1.0"):
        assert catalog[key].requires == "invokeai>=3" and not catalog[key].runs_in_invokeai23
        assert catalog[key].runs_in == ("InvokeAI 3+", "ComfyUI")
    assert all(m.runs_in_invokeai23 for k, m in catalog.items() if "-xl-" not in k)
    assert catalog["stable-diffusion-1.5"].vae == VaeRef(repo_id="stabilityai/sd-vae-ft-mse")
    assert catalog["stable-diffusion-2.1"].vae is None
    assert support_models(catalog) == [VaeRef(repo_id="stabilityai/sd-vae-ft-mse")]


def test_catalogue_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "zeta:\n  description: z\n  repo_id: a/z\n"
        "alpha:\n  description: a\n  repo_id: a/a\n  format: ckpt\n  file: model.safetensors\n"
        "  sha256: " + "AB" * 32 + "\n  vae: {path: /x/vae.pt, subfolder: s}\n"
    )
    catalog = load_catalog(path)
    assert list(catalog) == ["zeta", "alpha"]
    assert catalog["alpha"].file == "model.safetensors"
    assert catalog["alpha"].sha256 == "ab" * 32
    assert catalog["alpha"].vae == VaeRef(path="/x/vae.pt", subfolder="s")
    assert catalog["zeta"].size == 0 and catalog["zeta"].format == "diffusers"


def test_validation_collects_every_problem_naming_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        """\
good:
  description: fine
  repo_id: owner/good
  default: true
no-repo:
  description: missing its repo
bad-format:
  description: x
  repo_id: owner/x
  format: onnx
typo:
  description: x
  repo_id: owner/y
  reccomended: true
bad-size:
  description: x
  repo_id: owner/z
  size: "4 GB"
bad-vae:
  description: x
  repo_id: owner/v
  vae: {repo_id: a/b, path: /also/a/path}
ckpt-without-file:
  description: x
  repo_id: owner/c
  format: ckpt
second-default:
  description: x
  repo_id: owner/d
  default: true
not-a-mapping: just text
"""
    )
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    line = info.value.one_line()
    assert "\n" not in line and str(path) in line
    for expected in (
        "entry 'no-repo' field 'repo_id'",
        "entry 'bad-format' field 'format'",
        "entry 'typo' field 'reccomended': unknown field",
        "entry 'bad-size' field 'size'",
        "entry 'bad-vae' field 'vae': give exactly one of repo_id or path",
        "entry 'ckpt-without-file' field 'file'",
        "field 'default' is true in 2 entries (good, second-default)",
        "entry 'not-a-mapping': must be a mapping",
    ):
        assert expected in line, expected


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("a:\n  description: x\n  repo_id: [a/b\nb: 1\n")
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_catalog(path)


def test_entries_are_frozen() -> None:
    model = load_catalog()["stable-diffusion-1.5"]
    with pytest.raises(AttributeError):
        model.repo_id = "other/repo"  # type: ignore[misc]


def test_requires_field_is_validated_and_filters_recommendations(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("new:\n  description: n\n  repo_id: a/n\n  recommended: true\n  requires: invokeai>=3\n"
                    "old:\n  description: o\n  repo_id: a/o\n  recommended: true\n")
    catalog = load_catalog(path)
    assert recommended_keys(catalog) == ["old"]
    path.write_text("bad:\n  description: b\n  repo_id: a/b\n  requires: comfy\n")
    with pytest.raises(ConfigError, match="requires"):
        load_catalog(path)
