"""Packaged files: the catalogue and the legacy LDM/SGM inference configs."""

from __future__ import annotations

import pytest
import yaml

from invokeai_model_install.root import resources
from invokeai_model_install.errors import ConfigError


def test_checkout_configs_dir_holds_catalogue_and_legacy_configs() -> None:
    configs = resources.package_configs_dir()
    assert configs.is_dir()
    assert resources.initial_models_path() == configs / "INITIAL_MODELS.yaml"
    assert resources.initial_models_path().is_file()
    for name in resources.LEGACY_CONFIG_NAMES:
        assert resources.legacy_config_path(name).is_file()


def test_legacy_config_by_stem_and_unknown_name() -> None:
    assert resources.legacy_config_path("v2-inference-v") == resources.legacy_config_path("v2-inference-v.yaml")
    with pytest.raises(ConfigError) as info:
        resources.legacy_config_path("v3-inference.yaml")
    assert "v3-inference.yaml" in info.value.one_line() and "v1-inference.yaml" in info.value.one_line()
    with pytest.raises(ConfigError):
        resources.legacy_config_path("../INITIAL_MODELS.yaml")


def _params(name: str) -> dict:
    return yaml.safe_load(resources.legacy_config_path(name).read_text())["model"]["params"]


def test_legacy_configs_carry_what_conversion_reads() -> None:
    v1 = _params("v1-inference")
    assert v1["unet_config"]["params"]["context_dim"] == 768
    assert v1["unet_config"]["params"]["in_channels"] == 4
    assert v1["cond_stage_config"]["target"].endswith("FrozenCLIPEmbedder")
    assert _params("v1-inpainting-inference")["unet_config"]["params"]["in_channels"] == 9
    v2 = _params("v2-inference")
    v2v = _params("v2-inference-v")
    assert v2["unet_config"]["params"]["context_dim"] == 1024
    assert "parameterization" not in v2
    assert v2v["parameterization"] == "v"
    assert v2v["image_size"] == 96 and v2["image_size"] == 64
    xl = _params("sd_xl_base")
    assert xl["network_config"]["params"]["context_dim"] == 2048
    assert xl["network_config"]["params"]["adm_in_channels"] == 2816
    refiner = _params("sd_xl_refiner")
    assert refiner["network_config"]["params"]["adm_in_channels"] == 2560
    assert refiner["network_config"]["params"]["model_channels"] == 384


def test_diffusers_reads_the_legacy_configs() -> None:
    """diffusers' own LDM->diffusers config builders accept every packaged config."""
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    expected = {  # name: (cross_attention_dim, in_channels, vae scaling factor)
        "v1-inference.yaml": (768, 4, 0.18215),
        "v1-inpainting-inference.yaml": (768, 9, 0.18215),
        "v2-inference.yaml": (1024, 4, 0.18215),
        "v2-inference-v.yaml": (1024, 4, 0.18215),
        "sd_xl_base.yaml": (2048, 4, 0.13025),
        "sd_xl_refiner.yaml": (1280, 4, 0.13025),
    }
    for name, (cross, in_ch, scale) in expected.items():
        original = yaml.safe_load(resources.legacy_config_path(name).read_text())
        unet = create_unet_diffusers_config_from_ldm(original, {})
        vae = create_vae_diffusers_config_from_ldm(original, {})
        assert (unet["cross_attention_dim"], unet["in_channels"], vae["scaling_factor"]) == (cross, in_ch, scale), name
