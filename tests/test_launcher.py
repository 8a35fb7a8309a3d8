"""The `invokeai` menu: numbered choices read from stdin, each running the matching command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from invokeai_model_install.app import launcher
from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.root.registry import Registry


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    layout = RootLayout(root)
    create_layout(layout)
    with Registry(layout.models_yaml).transaction() as doc:
        doc.add("menu-model-a", {"description": "first", "repo_id": "o/a", "format": "diffusers", "default": True})
        doc.add("menu-model-b", {"description": "second", "weights": "models/checkpoints/b.ckpt", "format": "ckpt"})
    return root


def _inputs(*answers: str):
    it = iter(answers)

    def read(prompt: str) -> str:
        print(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read


def test_menu_lists_the_entries(root: Path, capsys) -> None:
    assert launcher.main(["--root", str(root)], input_fn=_inputs("6")) == 0
    out = capsys.readouterr().out
    for number, label in enumerate(
        (
            "Download and install models",
            "List installed models",
            "Scan the autoscan folder for new models",
            "Re-run the first-run setup",
            "Manage models in the browser (web page)",
            "Quit",
        ),
        start=1,
    ):
        assert f"{number}. {label}" in out
    assert str(root) in out


def test_list_choice_runs_the_list_command(root: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert launcher.main(["--root", str(root)], input_fn=_inputs("2", "6")) == 0
    out = capsys.readouterr().out
    assert "== List installed models ==" in out
    assert "menu-model-a" in out and "menu-model-b" in out
    assert out.count("Choose 1-6") == 2


def test_bad_choices_are_asked_again_and_end_of_input_quits(root: Path, capsys) -> None:
    assert launcher.main(["--root", str(root)], input_fn=_inputs("x", "0", "9", "")) == 0
    out = capsys.readouterr().out
    assert out.count("Please enter a number from 1 to 6.") == 4


def test_setup_choice_creates_a_missing_root(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    root = tmp_path / "new-root"
    launcher.main(["--root", str(root), "--catalog", str(empty)], input_fn=_inputs("4", "6"))
    out = capsys.readouterr().out
    assert "== Re-run the first-run setup ==" in out
    assert RootLayout(root).models_yaml.is_file()
    assert (RootLayout(root).legacy_configs_dir / "sd_xl_base.yaml").is_file()


def test_failed_command_status_is_shown_and_menu_goes_on(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing"
    status = launcher.main(["--root", str(missing)], input_fn=_inputs("2", "6"))
    out = capsys.readouterr()
    assert status == 1
    assert "List installed models ended with exit status 1" in out.out
    assert str(missing) in out.err


def test_menu_through_a_pipe(root: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INVOKEAI_ROOT"}
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "invokeai_model_install.app.launcher", "--root", str(root)],
        input="2\n6\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "menu-model-a" in done.stdout and "6. Quit" in done.stdout


def test_scan_choice_asks_for_a_folder_when_none_is_set(root: Path, tmp_path: Path, capsys) -> None:
    scan = tmp_path / "scan-me"
    scan.mkdir()
    assert launcher.main(["--root", str(root)], input_fn=_inputs("3", str(scan), "3", "", "6")) == 0
    out = capsys.readouterr().out
    assert out.count("No autoscan folder is set in invokeai.init.") == 2
    assert "Finished: 0 done, 0 skipped, 0 failed" in out  # the scan command ran on the empty folder
    assert "ended with exit status" not in out


def test_scan_choice_uses_the_autoscan_folder(root: Path, tmp_path: Path, capsys) -> None:
    from invokeai_model_install.root.initfile import set_option

    scan = tmp_path / "auto scan"
    scan.mkdir()
    set_option(RootLayout(root).init_file, "--autoconvert", str(scan))
    assert launcher.main(["--root", str(root)], input_fn=_inputs("3", "6")) == 0
    out = capsys.readouterr().out
    assert "No autoscan folder" not in out
    assert "Finished: 0 done" in out
    assert "ended with exit status" not in out


def test_web_choice_runs_the_web_manager(root: Path, capsys, monkeypatch) -> None:
    from invokeai_model_install.app import web

    calls = []
    monkeypatch.setattr(web, "serve", lambda layout, **kw: calls.append((layout.root, kw)) or 0)
    assert launcher.main(["--root", str(root)], input_fn=_inputs("5", "6")) == 0
    assert "== Manage models in the browser (web page) ==" in capsys.readouterr().out
    assert calls and calls[0][0] == root and calls[0][1]["host"] == "127.0.0.1" and calls[0][1]["open_browser"] is True


# --- issue 11 item 3: several forms in one menu session ------------------------------------------


def test_wizard_back_after_an_earlier_form_in_the_same_menu_session(root: Path, tmp_path: Path) -> None:
    """npyscreen runs every application after the first one of a process in a forked child: the
    wizard's BACK was lost and the menu came back instead of the token page."""
    import re

    import yaml

    from tests.ptyterm import PtyTerm

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"tiny-sd1": {"description": "x", "repo_id": "tests/tiny-sd1", "size": 1000}}))
    setup = launcher.MENU.index("Re-run the first-run setup") + 1
    install = launcher.MENU.index("Download and install models") + 1
    argv = [sys.executable, "-m", "invokeai_model_install.app.launcher", "--root", str(root), "--catalog", str(catalog)]
    with PtyTerm(argv, env={"HF_HOME": str(tmp_path / "hf")}) as term:
        term.wait_for(f"Choose 1-{len(launcher.MENU)}")
        term.send(f"{install}\r")
        term.wait_for("IMPORT LOCAL")  # the first form of this process
        term.press("CANCEL")
        term.wait_for(f"Choose 1-{len(launcher.MENU)}")
        term.send(f"{setup}\r")
        term.wait_for("HuggingFace access token")
        term.send("\r")  # skip the token
        term.wait_for("BACK")  # the wizard's form, the second of this process
        term.press("BACK")
        term.wait_for("Back to the first-run setup.")
        term.wait_for(re.compile(r"Back to the first-run setup\.\s+HuggingFace access token"))
        term.send("\r")
        term.wait_for("BACK")  # the token page leads to the form again
        term.press("CANCEL")
        term.wait_for(re.compile(r"Choose 1-\d+:\s*$"))
        term.send(f"{len(launcher.MENU)}\r")  # Quit
        assert term.wait_exit() == 0
