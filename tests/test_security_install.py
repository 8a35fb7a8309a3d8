"""Install-level security (issue 11): suspicious pickles are refused unless allowed file by file (item 17)."""

from __future__ import annotations

import sys
import types

import pytest
import yaml

from invokeai_model_install import events as ev
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.plan_file import parse_plan, plan_to_dict
from invokeai_model_install.install.worker import run_plan
from invokeai_model_install.root.layout import RootLayout

torch = pytest.importorskip("torch")


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


def stanzas(layout):
    return yaml.safe_load(layout.models_yaml.read_text()) or {}


def _save_with_class(path, module: str, qualname: str, payload: dict) -> None:
    """torch.save ``payload`` plus an instance of a class named ``module.qualname`` (a stand-in module)."""
    names = module.split(".")
    mods = {".".join(names[: i + 1]): types.ModuleType(".".join(names[: i + 1])) for i in range(len(names))}
    cls = type(qualname, (), {})
    cls.__module__ = module
    cls.__qualname__ = qualname
    setattr(mods[module], qualname, cls)
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        torch.save({**payload, "extra": cls()}, path)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _embedding(path, module="mytrainer", qualname="Config"):
    _save_with_class(path, module, qualname, {"string_to_param": {"*": torch.zeros(2, 768)}, "name": path.stem})
    return path


def test_suspicious_pickle_is_refused_by_default_with_the_reason(root, tmp_path):
    f = _embedding(tmp_path / "odd-embedding.pt")
    seen = []
    result = run_plan(InstallPlan(imports=(str(f),)), root, on_event=seen.append)
    failed = [e for e in seen if isinstance(e, ev.ItemFailed)]
    assert len(failed) == 1 and not result.ok
    text = failed[0].message + " " + failed[0].hint
    assert "suspicious" in text and "mytrainer.Config" in text and "--allow-suspicious odd-embedding.pt" in text
    assert stanzas(root) == {} or "odd-embedding" not in stanzas(root)
    assert not any((root.models_dir / "embedding").glob("*")) if (root.models_dir / "embedding").exists() else True


def test_allow_suspicious_installs_that_file_only(root, tmp_path):
    allowed = _embedding(tmp_path / "allowed.pt")
    other = _embedding(tmp_path / "other.pt", "othertrainer", "Thing")
    seen = []
    result = run_plan(InstallPlan(imports=(str(allowed), str(other)), allow_suspicious=("allowed.pt",)), root,
                      on_event=seen.append)
    outcomes = {o.label.rsplit("/", 1)[-1]: o.status for o in result.outcomes}
    assert outcomes == {"allowed.pt": "installed", "other.pt": "failed"}, outcomes
    notes = [e.message for e in seen if isinstance(e, ev.ItemNote)]
    assert any("allowed.pt" in n and "allowed it" in n for n in notes)
    # a path works as well as a name
    result = run_plan(InstallPlan(imports=(str(other),), allow_suspicious=(str(other),)), root)
    assert [o.status for o in result.outcomes] == ["installed"]


@pytest.mark.parametrize("answer, status", [("install", "installed"), ("refuse", "failed"), (None, "failed")])
def test_the_front_end_is_asked_and_refuse_is_the_default(root, tmp_path, answer, status):
    f = _embedding(tmp_path / "asked.pt")
    questions = []

    def ask(q):
        questions.append(q)
        return answer

    result = run_plan(InstallPlan(imports=(str(f),)), root, on_event=lambda e: None, ask=ask)
    assert [o.status for o in result.outcomes] == [status]
    assert len(questions) == 1 and questions[0].kind == "suspicious"
    assert questions[0].choices[0] == "refuse" and "mytrainer.Config" in questions[0].prompt


def test_dangerous_is_refused_even_when_allowed(root, tmp_path):
    f = _embedding(tmp_path / "evil.pt", "os", "system")
    result = run_plan(InstallPlan(imports=(str(f),), allow_suspicious=("evil.pt",)), root, ask=lambda q: "install")
    assert [o.status for o in result.outcomes] == ["failed"] and "dangerous" in result.outcomes[0].message


def test_sd1_release_lightning_globals_stay_allowed_but_other_lightning_classes_do_not(root, tmp_path):
    ok = tmp_path / "sd-v1-4-like.pt"
    _save_with_class(ok, "pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint",
                     {"string_to_param": {"*": torch.zeros(2, 768)}, "name": "x"})
    bad = tmp_path / "lambda-callback.pt"
    _save_with_class(bad, "pytorch_lightning.callbacks.lambda_function", "LambdaCallback",
                     {"string_to_param": {"*": torch.zeros(2, 768)}, "name": "y"})
    result = run_plan(InstallPlan(imports=(str(ok), str(bad))), root)
    assert [o.status for o in result.outcomes] == ["installed", "failed"]
    assert "LambdaCallback" in result.outcomes[1].message


def test_allow_suspicious_on_the_command_line_and_in_a_plan_file(tmp_path):
    import argparse

    from invokeai_model_install.app import headless

    parser = argparse.ArgumentParser()
    headless.add_plan_arguments(parser)
    (tmp_path / "x.ckpt").write_bytes(b"")
    args = parser.parse_args(["--add", str(tmp_path / "x.ckpt"), "--allow-suspicious", "x.ckpt", "y.pt"])
    plan = headless.build_plan(args, None)
    assert plan.allow_suspicious == ("x.ckpt", "y.pt")
    again = parse_plan(plan_to_dict(plan))
    assert again.allow_suspicious == ("x.ckpt", "y.pt")
