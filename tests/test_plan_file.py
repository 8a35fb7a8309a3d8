"""Plan files (--plan FILE.yaml) -> InstallPlan: every key, relative paths, all problems at once."""

from pathlib import Path

import pytest

from invokeai_model_install.errors import ConfigError
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.plan_file import load_plan_file, parse_plan, plan_to_dict


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "plan.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_every_key(tmp_path):
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "local.safetensors").write_bytes(b"x")
    plan = load_plan_file(
        write(
            tmp_path,
            """
install: [stable-diffusion-1.5, sd-inpainting-1.5]
add:
  - https://example.com/a.safetensors
  - owner/repo
  - local.safetensors
remove: old-model
purge: true
scan_dir: ckpts
autoscan: true
convert: true
precision: fp32
device: cpu
prediction_type: v
""",
        )
    )
    assert plan.install_starters == ("stable-diffusion-1.5", "sd-inpainting-1.5")
    assert plan.imports == ("https://example.com/a.safetensors", "owner/repo", str(tmp_path / "local.safetensors"))
    assert plan.remove_starters == ("old-model",)
    assert plan.purge is True
    assert plan.scan_dir == tmp_path / "ckpts"
    assert plan.autoscan is True and plan.convert is True
    assert (plan.precision, plan.device, plan.prediction_type) == ("fp32", "cpu", "v")


def test_empty_file_is_an_empty_plan(tmp_path):
    assert load_plan_file(write(tmp_path, "# nothing\n")) == InstallPlan()


def test_all_problems_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_plan_file(write(tmp_path, "instal: [x]\nconvert: yes please\nprecision: fp8\nautoscan: true\n"))
    text = exc.value.one_line()
    for part in ("'instal'", "'convert' must be true or false", "'precision' must be one of fp16, fp32", "needs 'scan_dir'", "plan.yaml"):
        assert part in text


def test_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"plan.yaml line 2"):
        load_plan_file(write(tmp_path, "install: [a\nadd: b: c\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan_file(tmp_path / "nope.yaml")


def test_top_level_must_be_mapping():
    with pytest.raises(ConfigError, match="top level"):
        parse_plan(["install"])


def test_round_trip():
    plan = InstallPlan(install_starters=("a",), imports=("o/r",), remove_starters=("b",), purge=True,
                       scan_dir=Path("/x/y"), autoscan=False, convert=True, precision="fp32", device="cuda", prediction_type="epsilon")
    assert parse_plan(plan_to_dict(plan)) == plan
