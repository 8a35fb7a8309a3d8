"""Where the files we ship live: the starter catalogue and the legacy LDM configs.

In a checkout (or an editable install) they sit in the top-level ``configs/``
folder next to the package.  The wheel carries the same folder *inside* the
package as ``invokeai_model_install/configs`` (pyproject force-include), so an
installed copy works from any directory.  We look inside the package first:
when both exist, the copy that travels with the code wins.
"""

from __future__ import annotations

from pathlib import Path

from invokeai_model_install.errors import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: Names of the legacy LDM/SGM inference configs we ship under ``configs/stable-diffusion/``.
LEGACY_CONFIG_NAMES: tuple[str, ...] = (
    "v1-inference.yaml",
    "v1-inpainting-inference.yaml",
    "v2-inference.yaml",
    "v2-inference-v.yaml",
    "sd_xl_base.yaml",
    "sd_xl_refiner.yaml",
)


def package_configs_dir() -> Path:
    """The folder holding ``INITIAL_MODELS.yaml`` and ``stable-diffusion/``.

    ``invokeai_model_install/configs`` when installed from the wheel, else the
    checkout's top-level ``configs/``.
    """
    inside = _PACKAGE_DIR / "configs"
    if inside.is_dir():
        return inside
    beside = _PACKAGE_DIR.parent / "configs"
    if beside.is_dir():
        return beside
    raise ConfigError(
        f"the packaged configs folder is missing (looked in {inside} and {beside})",
        "reinstall invokeai-model-install",
    )


def initial_models_path() -> Path:
    """The packaged starter catalogue, ``INITIAL_MODELS.yaml``."""
    return package_configs_dir() / "INITIAL_MODELS.yaml"


def legacy_configs_dir() -> Path:
    """The packaged ``stable-diffusion/`` folder of legacy inference configs."""
    return package_configs_dir() / "stable-diffusion"


def legacy_config_path(name: str) -> Path:
    """One packaged legacy config by file name, e.g. ``"v1-inference.yaml"``.

    A name without a suffix gets ``.yaml``.  Raises :class:`ConfigError` when we
    do not ship it.
    """
    if not name.endswith((".yaml", ".yml")):
        name = f"{name}.yaml"
    path = legacy_configs_dir() / name
    if Path(name).name != name or not path.is_file():
        raise ConfigError(
            f"no packaged legacy config named {name!r}",
            "use one of: " + ", ".join(LEGACY_CONFIG_NAMES),
        )
    return path
