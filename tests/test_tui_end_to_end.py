"""The installer form end to end: the real command on a pty, the loopback hub and file server, tiny real models.

Each test drives ``python -m invokeai_model_install --root R --catalog C`` with keys, as a
user would, and checks the result on disk (models.yaml, invokeai.init, the model folders),
not the screen alone.  HF_ENDPOINT reaches the child through the environment (the
``hub_server`` fixture sets it).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.app.configure import create_layout
from invokeai_model_install.root.initfile import get_option
from invokeai_model_install.root.layout import RootLayout
from tests.ptyterm import PtyTerm, keys

#: Generous: conversions and downloads run on a shared 2-core machine.
SLOW = 600

CATALOG = """
tiny-sd:
  description: Tiny SD-1 starter served by the stand-in hub (45 MB)
  repo_id: test/tiny-sd
  format: diffusers
  recommended: true
  default: true
  size: 45000000
tiny-unwanted:
  description: A recommended starter that the test deselects
  repo_id: test/not-served
  format: diffusers
  recommended: true
  size: 1000000
"""


@pytest.fixture
def root(tmp_path) -> RootLayout:
    layout = RootLayout(tmp_path / "invokeai")
    create_layout(layout)
    return layout


@pytest.fixture
def catalog(tmp_path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return path


def launch(root: RootLayout, catalog: Path, cols: int = 100, rows: int = 35) -> PtyTerm:
    return PtyTerm(
        [sys.executable, "-m", "invokeai_model_install", "--root", str(root.root), "--catalog", str(catalog)],
        cols=cols,
        rows=rows,
        timeout=120,
    )


def stanzas(layout: RootLayout) -> dict:
    if not layout.models_yaml.exists():
        return {}
    return yaml.safe_load(layout.models_yaml.read_text()) or {}


def model_dir(layout: RootLayout, stanza: dict) -> Path:
    return layout.absolute(stanza.get("path") or stanza.get("weights"))


def test_install_starters_imports_and_a_scan_folder_from_the_form(root, catalog, hub_server, file_server, tiny_models, tiny_checkpoints, tmp_path):
    hub_server.add_repo("test/tiny-sd", tiny_models["sd-1"])
    hub_server.add_repo("test/pasted-sd2", tiny_models["sd-2"])
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "remote-sd1.safetensors")
    url = file_server.url_for("remote-sd1.safetensors")
    scan = tmp_path / "my models"
    scan.mkdir()
    shutil.copy(tiny_checkpoints["sd-1-inpaint", "safetensors"], scan / "scanned-inpaint.safetensors")

    with launch(root, catalog) as term:
        term.wait_for("[X]  tiny-sd ")
        term.wait_for("To download: 46.00 MB (2 starters)")
        term.send(keys.DOWN, keys.SPACE)  # deselect the unwanted recommended starter
        term.wait_for("[ ]  tiny-unwanted")
        term.wait_for("To download: 45.00 MB (1 starter)")
        term.send(keys.TAB)  # into the import box
        term.type(url + "\n")
        term.send(keys.PASTE_START)  # a repo id pasted with the terminal's bracketed-paste mode on
        term.type("test/pasted-sd2")
        term.send(keys.PASTE_END)
        term.wait_for("+ 2 import lines")
        term.focus("Select a directory for models to import")
        term.send(keys.SPACE, keys.DOWN)
        term.type(str(scan))
        term.send(keys.ENTER)  # Enter leaves the directory field (Tab would autocomplete)
        term.focus("Scan this directory each time InvokeAI starts")
        term.send(keys.SPACE)
        term.focus("Convert imported models into diffusers")
        term.send(keys.SPACE)
        term.wait_for("[X]  Convert imported models")
        term.press("DONE")

        term.wait_for("INSTALLING MODELS")
        term.wait_for("Finished:", timeout=SLOW)
        text = term.text()
        assert "0 failed" in text, term.dump()
        assert "installed as tiny-sd" in text
        term.wait_for("BACK TO THE FORM")

        reg = stanzas(root)
        assert "tiny-sd" in reg and "tiny-unwanted" not in reg
        assert (model_dir(root, reg["tiny-sd"]) / "model_index.json").is_file()
        others = {n: s for n, s in reg.items() if n != "tiny-sd"}
        assert len(others) == 3, reg
        assert any("pasted-sd2" in n for n in others), reg
        for stanza in others.values():  # the hub pipeline, and both single files converted: diffusers folders
            assert stanza["format"] == "diffusers"
            assert (model_dir(root, stanza) / "unet" / "config.json").is_file()
        assert (scan / "scanned-inpaint.safetensors").is_file()  # the original is kept
        assert get_option(root.init_file, "--autoconvert") == str(scan)

        # back to the form: it shows the new state
        term.press("BACK TO THE FORM", keys.BTAB)
        term.wait_for("Installed starter models (uncheck to remove):")
        assert "[X]  tiny-sd " in term.lines()[term.row_of("tiny-sd ")]
        assert "[ ]  tiny-unwanted" in term.text()  # no preselection once models are installed
        term.press("CANCEL")
        assert term.wait_exit() == 0


def _in_place_from_the_form(root: RootLayout, catalog: Path, folder: Path) -> str:
    """Type ``folder`` into the import box, tick the in-place box, DONE; the progress screen's text at the end."""
    with launch(root, catalog) as term:
        term.wait_for("No starter models in the catalogue.")
        # with nothing to select above it, the import box has the focus from the start
        term.type(str(folder))
        term.wait_for("+ 1 import line")
        term.focus("Register local files and folders where they are (no copy)")
        term.send(keys.SPACE)
        term.wait_for("[X]  Register local files and folders where they are (no copy)")
        assert "[ ]  Convert imported models" in term.text()
        term.press("DONE")
        term.wait_for("INSTALLING MODELS")
        term.wait_for("Finished:", timeout=SLOW)
        term.settle()
        text = term.text()
        term.press("EXIT", keys.TAB)
        assert term.wait_exit() == 0, text
    return text


def test_in_place_import_from_the_form_registers_the_models_where_they_are(root, tiny_checkpoints, tiny_extras, tmp_path):
    """The form's "Register ... where they are (no copy)" is the CLI's --in-place: a folder of models typed into the
    import box is registered where it lies, nothing is copied into the root, a file the root cannot use is skipped
    with a note instead of failing; a second run of the form finds the models already installed."""
    tree = tmp_path / "ComfyUI" / "models"
    ckpt = tree / "checkpoints" / "dreamshaper.safetensors"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], ckpt)
    lora = tree / "loras" / "style.safetensors"
    lora.parent.mkdir(parents=True)
    shutil.copy(tiny_extras["lora-sd-1.safetensors"], lora)
    noise = tree / "unknown" / "noise.safetensors"
    noise.parent.mkdir(parents=True)
    shutil.copy(tiny_extras["random.safetensors"], noise)
    inodes = {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in tree.rglob("*") if p.is_file()}
    root_files = {p for p in root.root.rglob("*") if p.is_file()}
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")

    text = _in_place_from_the_form(root, catalog, tree)
    flat = " ".join(text.split())
    assert "Finished: 2 done, 1 skipped, 0 failed." in flat, text
    log = (root.root / "model-install.log").read_text()  # the screen's log, whole lines
    assert f"{noise}: skipped (left where it is, not registered" in log, log
    assert "lists LoRAs from this folder" not in log, log  # it is not in ROOT/loras: no note may say so

    reg = stanzas(root)
    assert reg["dreamshaper"]["weights"] == str(ckpt), reg  # its own path, outside the root
    assert not any("noise" in name for name in reg), reg
    from invokeai_model_install.root import manifest as mf

    placed = {m.name: m.path for m in mf.all_manifests(root)}
    assert placed.get("style") == str(lora), placed  # the LoRA is recorded where it is, not linked into ROOT/loras
    assert {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in tree.rglob("*") if p.is_file()} == inodes
    new = {p for p in root.root.rglob("*") if p.is_file()} - root_files
    assert not [p for p in new if p.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin")], new  # no copy
    assert not [p for p in root.models_dir.rglob("*") if p.is_file() and p.stat().st_ino in {i for i, _, _ in inodes.values()}]
    before = root.models_yaml.read_text()

    # a second run of the form: the same folder, in place again, is already installed (nothing changes)
    text = _in_place_from_the_form(root, catalog, tree)
    flat = " ".join(text.split())
    assert "Finished: 0 done, 3 skipped, 0 failed." in flat, text
    log = (root.root / "model-install.log").read_text()
    assert f"{ckpt}: skipped (already installed)" in log and f"{lora}: skipped (already installed)" in log, log
    assert root.models_yaml.read_text() == before
    assert {p: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in tree.rglob("*") if p.is_file()} == inodes


def test_removal_confirmed_with_purge(root, catalog, tiny_models):
    folder = root.kind_dir("main-diffusers") / "tiny-sd"
    shutil.copytree(tiny_models["sd-1"], folder)
    root.models_yaml.write_text(
        yaml.safe_dump(
            {
                "tiny-sd": {"path": root.relative(folder), "format": "diffusers", "description": "x", "default": True},
                "keep-me": {"repo_id": "someone/else", "format": "diffusers", "description": "y"},
            },
            sort_keys=False,
        )
    )
    with launch(root, catalog) as term:
        term.wait_for("Installed starter models")
        term.send(keys.SPACE)  # uncheck tiny-sd
        term.focus("Purge deleted models from disk")
        term.send(keys.SPACE)
        term.press("DONE")
        term.wait_for("Remove 1 model(s): tiny-sd?")
        term.wait_for("deleted from disk")
        term.focus("Yes")
        term.send(keys.ENTER)
        term.wait_for("Finished:", timeout=SLOW)
        term.wait_for("removed from models.yaml")
        term.press("EXIT", keys.TAB)
        assert term.wait_exit() == 0
    reg = stanzas(root)
    assert "tiny-sd" not in reg and "keep-me" in reg
    assert not folder.exists()


def test_sd2_checkpoint_asks_the_prediction_type(root, tmp_path, tiny_checkpoints):
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    ckpt = tiny_checkpoints["sd-2", "safetensors"]  # global_step 0: the prediction type is undecided
    with launch(root, catalog) as term:
        term.wait_for("No starter models in the catalogue.")
        # with nothing to select above it, the import box has the focus from the start
        term.type(str(ckpt))
        term.wait_for(ckpt.name)
        term.focus("Convert imported models into diffusers")
        term.send(keys.SPACE)
        term.press("DONE")
        term.wait_for("INSTALLING MODELS")
        # the popup wraps by the path's length, and the form behind it shows through at the edges of a line
        term.wait_for(re.compile(r"trained for epsilon.*?prediction\?", re.S), timeout=SLOW)
        term.wait_for("skip this model")
        term.focus("v-prediction (SD-2 768)", keys.DOWN)
        term.send(keys.SPACE)
        term.press("OK")
        term.wait_for("Finished:", timeout=SLOW)
        assert "1 done" in term.text() and "0 failed" in term.text(), term.dump()
        term.press("EXIT", keys.TAB)
        assert term.wait_exit() == 0
    (stanza,) = stanzas(root).values()
    scheduler = json.loads((model_dir(root, stanza) / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"


def test_cancel_keeps_partial_downloads_and_the_registry(root, tmp_path, file_server, tiny_checkpoints):
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "slow.safetensors")
    file_server.faults.throttle("*.safetensors", 300_000)
    before = root.models_yaml.read_text() if root.models_yaml.exists() else None
    with launch(root, catalog) as term:
        term.wait_for("No starter models in the catalogue.")
        term.type(file_server.url_for("slow.safetensors"))
        term.wait_for("slow.safetensors")
        term.press("DONE")
        term.wait_for("INSTALLING MODELS")
        term.wait_for("ETA", timeout=SLOW)  # the bar of a running transfer
        term.send("c")
        term.wait_for("Cancel", timeout=SLOW)
        term.wait_for(re.compile(r"Cancelled: .*; (kept \S+ \S?B for resume|partial downloads are kept for resume)\."), timeout=SLOW)
        term.press("EXIT", keys.TAB)
        assert term.wait_exit() == 4  # FormResult.CANCELLED
    after = root.models_yaml.read_text() if root.models_yaml.exists() else None
    assert after == before
    partials = [p for p in root.partial_dir.rglob("*") if p.is_file() and p.name != "worker.log"]
    assert partials and any(p.stat().st_size > 0 for p in partials)


def test_ctrl_c_during_install_cancels_and_restores_the_terminal(root, tmp_path, file_server, tiny_checkpoints):
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "slow.safetensors")
    file_server.faults.throttle("*.safetensors", 300_000)
    with launch(root, catalog) as term:
        term.wait_for("No starter models in the catalogue.")
        term.type(file_server.url_for("slow.safetensors"))
        term.wait_for("slow.safetensors")
        term.press("DONE")
        term.wait_for("ETA", timeout=SLOW)
        term.send(keys.CTRL_C)
        term.wait_for("Interrupted.", timeout=SLOW)
        status = term.wait_exit(timeout=SLOW)
        raw = term.raw.decode("utf-8", "replace")
        flat = "".join(term.lines())
    assert status == 130
    assert "Traceback" not in raw
    assert raw.rfind("\x1b[?1049l") < raw.rfind("Interrupted.")
    assert "partial downloads are kept" in flat
    assert "slow" not in (root.models_yaml.read_text() if root.models_yaml.exists() else "")


# --- issue 11 items 4 and 6 ------------------------------------------------------------------------


def test_cancel_shows_x_counts_the_bytes_kept_and_back_keeps_the_import_line(root, tmp_path, file_server, tiny_checkpoints):
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    shutil.copy(tiny_checkpoints["sd-1", "safetensors"], file_server.folder / "slow.safetensors")
    file_server.faults.throttle("*.safetensors", 300_000)
    url = file_server.url_for("slow.safetensors")
    with launch(root, catalog) as term:
        term.wait_for("No starter models in the catalogue.")
        term.type(url)
        term.wait_for("slow.safetensors")
        term.press("DONE")
        term.wait_for("ETA", timeout=SLOW)
        term.wait_for(re.compile(r"\d\.\d\d MB/"), timeout=SLOW)  # some bytes are in
        term.send("c")
        summary = term.wait_for(re.compile(r"Cancelled: 0 done, 0 skipped, 0 failed, 1 cancelled; kept (\S+ \S?B) for resume"),
                                timeout=SLOW)
        assert summary.group(1) not in ("0 B",)
        assert re.search(r"^│ x http://\S+slow\.safet", term.text(), re.M), term.dump()  # the docs' cancel mark
        assert re.search(r"Downloaded \S+ \S?B in \d+:\d\d; kept " + re.escape(summary.group(1)), term.text())
        term.press("BACK TO THE FORM", keys.TAB)
        term.wait_for("IMPORT LOCAL AND REMOTE MODELS")
        term.wait_for(url)  # run again to resume: nothing to retype
        term.press("CANCEL")
        assert term.wait_exit() == 4  # FormResult.CANCELLED (of the install)
    log = (root.root / "model-install.log").read_text()
    assert "slow.safetensors: cancelled" in log and "kept" in log


def test_a_long_error_is_wrapped_on_screen_and_written_to_the_log(root, tmp_path):
    catalog = tmp_path / "empty-catalog.yaml"
    catalog.write_text("")
    missing = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "and-a-model-file-that-is-not-there.safetensors"
    with launch(root, catalog) as term:
        term.wait_for("No starter models in the catalogue.")
        term.type(str(missing))
        term.wait_for("+ 1 import line")
        term.press("DONE")
        term.wait_for("Finished: 0 done, 0 skipped, 1 failed.", timeout=SLOW)
        term.settle()
        rows = term.lines()
        log_start = next(i for i, line in enumerate(rows) if line.startswith("│ Log:"))
        shown = " ".join(line.strip("│ ").strip() for line in rows[log_start + 1:] if line.strip("│ ").strip())
        assert "hint:" in shown  # the hint line is there, after the whole message
        assert missing.name in shown.replace(" ", "") or missing.name in shown  # never cut at the right edge
        term.press("EXIT", keys.TAB)
        assert term.wait_exit() == 1
    log = (root.root / "model-install.log").read_text()
    assert str(missing) in log and "hint:" in log and "Finished: 0 done, 0 skipped, 1 failed." in log
