"""The headless front end: flags -> plan, usage errors (exit 2), --json, --dry-run, verify, scan's arguments.

Installs over the network are in tests/test_end_to_end.py; here the plans need none.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from invokeai_model_install.app import cli, headless
from invokeai_model_install.root import manifest as mf
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.registry import Registry

CATALOG = """
tiny-sd:
  description: Tiny SD (1 MB)
  repo_id: test/tiny-sd
  format: diffusers
  recommended: true
  default: true
  size: 1000000
tiny-inpaint:
  description: Tiny inpainting (1 MB)
  repo_id: test/tiny-inpaint
  format: diffusers
  recommended: true
  size: 1000000
tiny-extra:
  description: Not recommended (1 MB)
  repo_id: test/tiny-extra
  format: diffusers
  size: 1000000
"""


@pytest.fixture
def catalog(tmp_path):
    p = tmp_path / "catalog.yaml"
    p.write_text(CATALOG)
    return p


@pytest.fixture
def root(tmp_path):
    layout = RootLayout(tmp_path / "root")
    create_layout(layout)
    f = layout.kind_dir("main") / "a.safetensors"
    f.write_bytes(b"x" * 10)
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add("a", {"description": "A", "weights": "models/checkpoints/a.safetensors", "format": "ckpt"})
    return layout


def parse(argv):
    return cli.build_parser().parse_args(argv)


def test_plan_from_flags(catalog, tmp_path):
    args = parse(["--yes", "--add", "tiny-extra", "owner/repo", "--add", "https://h/x.safetensors", "--delete", "old",
                  "--purge", "--scan-dir", str(tmp_path), "--autoscan", "--convert", "--full-precision",
                  "--prediction-type", "v", "--device", "cpu"])
    assert headless.has_plan_flags(args)
    plan = headless.build_plan(args, catalog)
    assert plan.install_starters == ("tiny-sd", "tiny-inpaint", "tiny-extra")  # --add of a starter name
    assert plan.imports == ("owner/repo", "https://h/x.safetensors")
    assert plan.remove_starters == ("old",) and plan.purge
    assert plan.scan_dir == tmp_path and plan.autoscan is True
    assert (plan.convert, plan.precision, plan.prediction_type, plan.device) == (True, "fp32", "v", "cpu")


def test_default_only_and_no_flags(catalog):
    assert headless.build_plan(parse(["--default_only"]), catalog).install_starters == ("tiny-sd",)
    args = parse([])
    assert not headless.has_plan_flags(args)
    assert headless.build_plan(args, catalog) == InstallPlan()


def test_flags_add_to_a_plan_file(catalog, tmp_path):
    pf = tmp_path / "p.yaml"
    pf.write_text("install: [tiny-extra]\nadd: [owner/one]\nprecision: fp32\n")
    plan = headless.build_plan(parse(["--plan", str(pf), "--add", "owner/two", "--convert"]), catalog)
    assert plan.install_starters == ("tiny-extra",) and plan.imports == ("owner/one", "owner/two")
    assert plan.precision == "fp32" and plan.convert


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--purge"], "--purge needs --delete"),
        (["--autoscan"], "--autoscan needs --scan-dir"),
        (["--prediction-type", "x"], "invalid choice"),
        (["--autoscan", "--no-autoscan"], "not allowed with"),
    ],
)
def test_usage_errors_exit_2(root, catalog, capsys, argv, text):
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), *argv])
    assert code == 2
    assert text in capsys.readouterr().err


def test_nothing_to_do_is_a_usage_error(root, capsys, monkeypatch):
    monkeypatch.setattr(headless, "_interactive", lambda: False)
    assert cli.main(["--root", str(root.root)]) == 2  # no tty, no flags
    assert "Nothing to install" in capsys.readouterr().err


def test_json_result_and_exit_codes(root, catalog, capsys, monkeypatch):
    monkeypatch.setenv("INVOKEAI_INSTALL_WORKER", "thread")
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--json", "--delete", "a", "--purge"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert code == 0 and doc["exit_code"] == 0 and doc["ok"] is True
    assert [(i["label"], i["status"]) for i in doc["items"]] == [("remove a", "removed")]
    assert err == ""
    assert not (root.kind_dir("main") / "a.safetensors").exists()


def test_failure_is_one_line_on_stderr_exit_1(root, catalog, capsys, monkeypatch):
    monkeypatch.setenv("INVOKEAI_INSTALL_WORKER", "thread")
    pf = root.root / "plan.yaml"
    pf.write_text("add: [/no/such/model.safetensors]\nremove: [a]\n")  # (an unknown starter name is exit 2: test_cli)
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--plan", str(pf)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: /no/such/model.safetensors:") and "(" in lines[0]  # message and hint
    assert "removed a from models.yaml" in out  # plain lines off a terminal
    assert Registry(root.models_yaml).names() == []


def test_dry_run_writes_nothing(root, catalog, capsys, tmp_path):
    before = sorted(p for p in root.root.rglob("*"))
    pf = tmp_path / "p.yaml"
    pf.write_text("remove: [a]\npurge: true\n")
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--plan", str(pf), "--dry-run", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["dry_run"] and doc["free_bytes"] > 0
    assert doc["items"][0]["action"] == "remove" and doc["items"][0]["destination"] == "models/checkpoints/a.safetensors"
    assert sorted(p for p in root.root.rglob("*")) == before
    code = cli.main(["--root", str(root.root), "--catalog", str(catalog), "--plan", str(pf), "--dry-run"])
    text = capsys.readouterr().out
    assert "nothing will be downloaded or written" in text and "free space" in text
    assert Registry(root.models_yaml).names() == ["a"]


def test_verify(root, capsys):
    f = root.kind_dir("main") / "a.safetensors"
    mf.write_manifest(root, mf.Manifest(name="a", key="file:x", source="x", kind="main", format="safetensors",
                                        path="models/checkpoints/a.safetensors", files=mf.record_files(root, [f])))
    assert cli.main(["--root", str(root.root), "verify"]) == 0
    assert "a: ok, 1 file(s)" in capsys.readouterr().out
    f.write_bytes(b"y" * 10)
    assert cli.main(["--root", str(root.root), "verify", "a"]) == 1
    err = capsys.readouterr().err
    assert "error: a: models/checkpoints/a.safetensors has changed" in err
    assert cli.main(["--root", str(root.root), "verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["models"][0]["problems"][0]["problem"] == "sha256"
    assert cli.main(["--root", str(root.root), "verify", "zzz"]) == 2


def test_scan_without_folder_is_a_usage_error(root, capsys):
    assert cli.main(["--root", str(root.root), "scan"]) == 2
    assert "no folder to scan" in capsys.readouterr().err


def test_every_flag_has_help():
    parser = cli.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest in headless._PLAN_DESTS:
            assert action.help, action.dest
    text = parser.format_help()
    for flag in ("--yes", "--default_only", "--add", "--delete", "--purge", "--scan-dir", "--autoscan", "--convert",
                 "--full-precision", "--prediction-type", "--device", "--dry-run", "--plan", "--json"):
        assert flag in text


def test_headless_imports_fast():
    code = "import sys, invokeai_model_install.app.headless; print([m for m in sys.modules if m.split('.')[0] in ('torch','diffusers','huggingface_hub','rich','npyscreen')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_terminal_question(monkeypatch, capsys):
    from invokeai_model_install.events import QuestionAsked

    q = QuestionAsked(qid="q1", kind="prediction_type", prompt="epsilon or v?", choices=("epsilon", "v", "skip"),
                      labels=("eps", "v-pred", "skip it"))
    answers = iter(["9", "v-pred", "2"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert headless._ask_on_terminal(q, None) == "v"
    assert "1) eps" in capsys.readouterr().out

    def eof(prompt):
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert headless._ask_on_terminal(q, None) == "skip"


def test_exit_code_mapping():
    from invokeai_model_install.install.item import ItemOutcome
    from invokeai_model_install.install.run import InstallResult

    ok = ItemOutcome("i1", "a", "installed")
    assert headless.exit_code(InstallResult((ok, ItemOutcome("i2", "b", "skipped")))) == 0
    assert headless.exit_code(InstallResult((ok, ItemOutcome("i2", "b", "failed")))) == 1
    assert headless.exit_code(InstallResult((ok,), error="the worker stopped")) == 1
    assert headless.exit_code(InstallResult((ItemOutcome("i1", "a", "failed", error="Cancelled"),), cancelled=True)) == 130


def test_max_connections_flag_sets_the_download_settings(monkeypatch, capsys):
    monkeypatch.setenv("INVOKEAI_MAX_CONNECTIONS", "5")
    assert headless.settings_from_args(parse(["--yes"])) is None  # the worker reads the environment: 5
    settings = headless.settings_from_args(parse(["--yes", "--max-connections", "3"]))
    assert settings.max_connections == 3
    for bad in ("0", "65", "many"):
        with pytest.raises(SystemExit) as info:
            parse(["--yes", "--max-connections", bad])
        assert info.value.code == 2
        assert "from 1 to 64" in capsys.readouterr().err
