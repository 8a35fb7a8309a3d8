"""The installer form: its pure logic (no curses), then the real application on a pty.

The pty tests run ``python -m invokeai_model_install`` (the real command) on a
pseudo-terminal and read the screen through pyte (tests/ptyterm.py); they do
not need the worker: every path here ends before a plan runs (or with an empty
plan).  Installing through the form is in test_tui_end_to_end.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.app.tui import model
from invokeai_model_install.app.tui.form import list_heights, required_size
from tests.ptyterm import PtyTerm, keys

# --- pure logic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, text",
    [(0, "?"), (None, "?"), (999, "999 B"), (4_270_000_000, "4.27 GB"), (2_130_000_000, "2.13 GB"), (150_000_000, "150 MB")],
)
def test_human_size_matches_the_catalogue_style(n, text):
    assert model.human_size(n) == text


def test_cut_marks_cut_text_and_keeps_short_text():
    assert model.cut("abcdef", 10) == "abcdef"
    assert model.cut("abcdef", 4) == "abc…"
    assert model.cut("abcdef", 0) == ""


@pytest.mark.parametrize("width", [40, 60, 88, 120])
def test_starter_label_fits_the_width_and_always_shows_name_and_size(width):
    label = model.starter_label(
        "stable-diffusion-1.5", "Stable Diffusion version 1.5 diffusers model, a long description (4.27 GB)", 4_270_000_000, width, 24
    )
    assert len(label) <= width
    assert label.startswith("stable-diffusion-1.5")
    assert label.rstrip().endswith("4.27 GB")
    assert label.count("4.27 GB") == 1  # the size written in the description is not repeated


def test_starter_label_narrow_keeps_name_and_size_only():
    label = model.starter_label("sd-inpainting-1.5", "RunwayML inpainting model", 4_270_000_000, 30, 28)
    assert len(label) <= 30 and "RunwayML" not in label and "4.27 GB" in label


def test_size_line_sums_selection_and_notes_imports_on_a_second_line():
    sizes = {"a": 1_000_000_000, "b": 2_000_000_000, "c": 0}
    assert model.size_line(sizes, ["a", "b"], 0, None, 50_000_000_000, 200) == (
        "To download: 3.00 GB (2 starters) | Free disk: 50.00 GB",
        "",
    )
    first, note = model.size_line(sizes, ["a", "c"], 2, "/models", 50_000_000_000, 200)
    assert first == "To download: 1.00 GB (2 starters, 1 of unknown size) | Free disk: 50.00 GB"
    assert note == "+ 2 import lines and a folder: size known after resolving"
    assert model.size_line(sizes, [], 1, None, -1, 200) == (
        "To download: nothing selected | Free disk: unknown",
        "+ 1 import line: size known after resolving",
    )
    assert all(len(line) <= 40 for line in model.size_line(sizes, ["a"], 3, "/x", 1, 40))


def test_free_space_of_a_missing_root_uses_its_parent(tmp_path):
    assert model.free_space(tmp_path / "not" / "yet") > 0


def test_installed_starters_by_name_or_repo_id():
    stanzas = {"sd-1": {"repo_id": "x/sd1"}, "my-copy": {"repo_id": "y/sd2-moved", "format": "diffusers"}}
    repo_ids = {"sd-1": ("x/sd1",), "sd-2": ("y/sd2", "y/sd2-moved"), "xl": ("z/xl",)}
    assert model.installed_starters(["sd-1", "sd-2", "xl"], repo_ids, stanzas) == ["sd-1", "sd-2"]
    assert model.installed_name("sd-2", repo_ids["sd-2"], stanzas) == "my-copy"


def test_import_lines_drop_blanks_and_carriage_returns():
    assert model.import_lines(" a/b \r\n\n  https://x/y.safetensors c/d\n\t\n") == ["a/b", "https://x/y.safetensors c/d"]


def test_validate_scan_dir(tmp_path):
    ok = model.FormValues(use_scan_dir=True, scan_dir=str(tmp_path))
    assert model.validate(ok) == []
    missing = model.validate(model.FormValues(use_scan_dir=True, scan_dir=str(tmp_path / "nope")))
    assert len(missing) == 1 and "does not exist" in missing[0] and str(tmp_path / "nope") in missing[0]
    (tmp_path / "f.ckpt").write_bytes(b"x")
    assert "is a file" in model.validate(model.FormValues(use_scan_dir=True, scan_dir=str(tmp_path / "f.ckpt")))[0]
    assert "No directory given" in model.validate(model.FormValues(use_scan_dir=True, scan_dir="  "))[0]
    assert model.validate(model.FormValues(use_scan_dir=False, scan_dir="/nope")) == []


def test_build_plan_from_form_values(tmp_path):
    values = model.FormValues(
        installed=["sd-1", "sd-2"],
        keep=["sd-2"],
        purge=True,
        install=["xl"],
        import_text="a/b\n\nhttps://h/x.safetensors c/d\n",
        use_scan_dir=True,
        scan_dir=str(tmp_path),
        autoscan=True,
        convert=True,
    )
    plan = model.build_plan(values)
    assert plan == InstallPlan(
        install_starters=("xl",),
        remove_starters=("sd-1",),
        purge=True,
        imports=("a/b", "https://h/x.safetensors c/d"),
        scan_dir=tmp_path.absolute(),
        autoscan=True,
        convert=True,
    )


def test_build_plan_autoscan_is_left_alone_unless_changed(tmp_path):
    base = dict(installed=["sd-1"], keep=["sd-1"], purge=True)
    plan = model.build_plan(model.FormValues(**base))
    assert plan.is_empty() and plan.autoscan is None and plan.purge is False  # purge only with removals
    # a folder scanned at startup before: unticking the checkbox (or the folder) turns it off
    prev = str(tmp_path)
    assert model.build_plan(model.FormValues(use_scan_dir=True, scan_dir=prev, autoscan=False, previous_autoscan=prev)).autoscan is False
    assert model.build_plan(model.FormValues(use_scan_dir=False, previous_autoscan=prev)).autoscan is False
    # a one-off import of a folder does not touch invokeai.init
    once = model.build_plan(model.FormValues(use_scan_dir=True, scan_dir=prev, autoscan=False))
    assert once.autoscan is None and once.scan_dir == tmp_path.absolute()


def test_build_plan_in_place_only_when_ticked(tmp_path):
    """The in-place checkbox reaches the plan through build_plan alone; the default copies/links as before."""
    folder = tmp_path / "ComfyUI" / "models"
    folder.mkdir(parents=True)
    ticked = model.FormValues(import_text=f"{folder}\n", use_scan_dir=True, scan_dir=str(folder), in_place=True)
    assert model.validate(ticked) == []
    assert model.build_plan(ticked) == InstallPlan(imports=(str(folder),), scan_dir=folder.absolute(), in_place=True)
    assert model.build_plan(model.FormValues(import_text=str(folder))).in_place is False
    assert model.FormValues().in_place is False


def test_validate_refuses_in_place_with_convert_in_one_line():
    """The CLI refuses --in-place --convert (exit 2); the form's DONE says the same in one line."""
    both = model.validate(model.FormValues(import_text="/models", convert=True, in_place=True))
    assert len(both) == 1 and "\n" not in both[0]
    assert model.IN_PLACE_LABEL in both[0] and model.CONVERT_LABEL in both[0] and "untick one" in both[0]
    assert model.validate(model.FormValues(import_text="/models", convert=True)) == []
    assert model.validate(model.FormValues(import_text="/models", in_place=True)) == []


def test_layout_sizes():
    cols, lines = required_size(0, 14)
    assert cols == 80 and lines <= 24  # the classic terminal fits the first run
    assert required_size(3, 3)[1] > required_size(0, 3)[1]
    h_inst, h_new = list_heights(35, 3, 14)
    assert h_inst == 3 and 2 <= h_new <= 14
    h_inst, h_new = list_heights(24, 10, 10)
    assert h_inst >= 2 and h_new >= 2 and h_inst + h_new <= 24 - 14


# --- the real application on a pty ------------------------------------------------------------

CATALOG = {
    "tiny-sd1": {"description": "A tiny SD-1 model for tests (1.00 MB)", "repo_id": "tests/tiny-sd1", "recommended": True, "default": True, "size": 1_000_000},
    "tiny-sd2": {"description": "A tiny SD-2 model for tests", "repo_id": "tests/tiny-sd2", "size": 2_000_000},
    "tiny-xl": {"description": "A tiny SDXL model for tests", "repo_id": "tests/tiny-xl", "recommended": True, "size": 3_000_000},
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "invokeai"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    return root


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG, sort_keys=False))
    return path


def register(root: Path, stanzas: dict) -> str:
    text = yaml.safe_dump(stanzas, sort_keys=False)
    (root / "configs" / "models.yaml").write_text(text)
    return text


def launch(root: Path, catalog: Path, *extra: str, cols: int = 100, rows: int = 35, module: str = "invokeai_model_install") -> PtyTerm:
    return PtyTerm([sys.executable, "-m", module, "--root", str(root), "--catalog", str(catalog), *extra], cols=cols, rows=rows)


def test_first_run_preselects_recommended_and_shows_sizes(root, catalog):
    with launch(root, catalog) as term:
        term.wait_for("IMPORT LOCAL AND REMOTE MODELS")
        assert "Installed starter models" not in term.text()  # nothing installed yet
        assert term.wait_for("[X]  tiny-sd1")
        assert "[ ]  tiny-sd2" in term.text() and "[X]  tiny-xl" in term.text()
        line = term.wait_for("To download: 4.00 MB (2 starters)")
        assert line
        assert "Free disk:" in term.text()
        # deselect tiny-sd1, select tiny-sd2: the size line follows live
        term.send(keys.SPACE)
        term.wait_for("To download: 3.00 MB (1 starter)")
        term.send(keys.DOWN, keys.SPACE)
        term.wait_for("To download: 5.00 MB (2 starters)")
        term.press("CANCEL")
        assert term.wait_exit() == 0
    assert not (root / "configs" / "models.yaml").exists()


def test_installed_starters_are_listed_checked_and_nothing_is_preselected(root, catalog):
    register(root, {"tiny-sd2": {"repo_id": "tests/tiny-sd2", "format": "diffusers", "description": "x"}})
    with launch(root, catalog) as term:
        term.wait_for("Installed starter models (uncheck to remove):")
        installed_row = term.row_of("tiny-sd2")
        assert "[X]" in term.lines()[installed_row]
        assert installed_row < term.row_of("Purge deleted models from disk") < term.row_of("Starter models not yet installed")
        assert "[ ]  tiny-sd1" in term.text() and "[ ]  tiny-xl" in term.text()  # not a first run
        term.wait_for("To download: nothing selected")


def test_removal_asks_for_confirmation_and_no_keeps_everything(root, catalog):
    before = register(root, {"tiny-sd2": {"repo_id": "tests/tiny-sd2", "format": "diffusers", "description": "x"}})
    with launch(root, catalog) as term:
        term.wait_for("Installed starter models")
        term.send(keys.SPACE)  # uncheck the installed tiny-sd2
        term.wait_for("[ ]  tiny-sd2")
        term.press("DONE")
        term.wait_for("Remove 1 model(s): tiny-sd2?")
        term.wait_for("kept on disk")
        term.focus("No", keys.BTAB)  # "No" has the focus first: Enter alone must not remove anything
        term.send(keys.ENTER)
        term.wait_gone("Confirm removal")
        term.wait_for("IMPORT LOCAL AND REMOTE MODELS")
        term.press("CANCEL", keys.BTAB)
        assert term.wait_exit() == 0
    assert (root / "configs" / "models.yaml").read_text() == before


def test_scan_directory_must_exist(root, catalog, tmp_path):
    with launch(root, catalog) as term:
        term.focus("Select a directory for models to import")
        assert "Directory:" not in term.text()  # shown only when ticked
        term.send(keys.SPACE)
        term.wait_for("Directory:")
        term.wait_for("Scan this directory each time InvokeAI starts")
        term.send(keys.DOWN)
        term.type(str(tmp_path / "no-such-dir"))
        term.send(keys.ENTER)  # Enter (or Tab) leaves the field
        term.wait_for("+ a folder: size known after resolving")
        term.press("DONE")
        term.wait_for("Please fix")
        term.settle()
        flat = " ".join(" ".join(line.strip("│ ") for line in term.lines()).split())  # the popup wraps by path length
        assert "does not exist: check the path" in flat and "no-such-dir" in flat, term.dump()
        term.send(keys.ENTER)  # OK
        term.wait_gone("Please fix")
        term.press("CANCEL", keys.BTAB)
        assert term.wait_exit() == 0


def test_import_box_takes_typed_and_pasted_lines(root, catalog):
    with launch(root, catalog) as term:
        term.wait_for("IMPORT LOCAL")
        term.send(keys.TAB)  # leave the starter list: the import box is next
        term.type("owner/one https://example.invalid/two.safetensors\n")
        # a bracketed paste (terminals with paste mode send ESC[200~ ... ESC[201~)
        term.send(keys.PASTE_START)
        term.type("owner/three\n/tmp/four.ckpt")
        term.send(keys.PASTE_END)
        term.wait_for("+ 3 import lines: size known after resolving")
        text = term.text()
        assert "owner/one https://example.invalid/two.safetensors" in text
        assert "owner/three" in text and "/tmp/four.ckpt" in text
        assert "200~" not in text and "201~" not in text


def test_in_place_and_convert_ticked_together_are_refused_on_done(root, catalog):
    with launch(root, catalog) as term:
        term.wait_for("IMPORT LOCAL")
        term.send(keys.TAB)
        term.type("/somewhere/models")
        term.focus("Convert imported models into diffusers")
        term.send(keys.SPACE)
        term.wait_for("[X]  Convert imported models")
        term.focus("Register local files and folders where they are (no copy)")
        term.send(keys.SPACE)
        term.wait_for("[X]  Register local files and folders")
        assert "[X]  Convert imported models" in term.text()  # ticking one never changes the other
        term.press("DONE")
        term.wait_for("Please fix")
        term.settle()
        flat = " ".join(" ".join(line.strip("│ ") for line in term.lines()).split())  # the popup wraps
        assert "exclude each other" in flat and "untick one" in flat, term.dump()
        term.send(keys.ENTER)  # OK: back to the form, both boxes as they were
        term.wait_gone("Please fix")
        term.wait_for("[X]  Register local files and folders")
        term.press("CANCEL", keys.BTAB)
        assert term.wait_exit() == 0
    assert not (root / "configs" / "models.yaml").exists()


def test_wizard_mode_has_back(root, catalog):
    with launch(root, catalog, "--wizard", module="invokeai_model_install.app.tui") as term:
        term.wait_for("BACK")
        term.press("BACK")
        assert term.wait_exit() == 10


def test_done_with_nothing_selected_says_so_and_exits(root, catalog):
    register(root, {"other": {"path": "models/x", "format": "diffusers", "description": "x"}})
    with launch(root, catalog) as term:
        term.wait_for("To download: nothing selected")
        term.press("DONE")
        term.wait_for("Nothing selected")
        term.send(keys.ENTER)
        assert term.wait_exit() == 0


def test_too_small_terminal_says_the_size_needed(root, catalog):
    with launch(root, catalog, cols=60, rows=15) as term:
        status = term.wait_exit()
        flat = "".join(term.lines())  # the message wraps at 60 columns: join the rows back
        raw = term.raw.decode("utf-8", "replace")
    assert status == 3
    assert "the terminal is 60x15; the form needs at least 80x" in flat
    assert "Traceback" not in raw


def test_resize_lays_the_form_out_again_and_keeps_the_values(root, catalog):
    with launch(root, catalog, cols=100, rows=35) as term:
        term.wait_for("[X]  tiny-sd1")
        term.send(keys.SPACE)  # deselect tiny-sd1
        term.wait_for("[ ]  tiny-sd1")
        term.send(keys.TAB)
        term.type("owner/typed-before-resize")
        term.wait_for("+ 1 import line")
        term.resize(80, 24)  # smaller: everything, buttons included, must fit again
        term.wait_for(re.compile(r"^└─+┘$", re.M))  # the frame's bottom corner is on screen
        assert term.row_of("DONE") < 24 and term.row_of("To download") < 24
        assert "[ ]  tiny-sd1" in term.text() and "owner/typed-before-resize" in term.text()
        term.type("-more")  # the focus and the cursor stayed in the import box, at the end
        term.wait_for("owner/typed-before-resize-more")
        term.resize(130, 45)
        term.wait_for(re.compile(r"^│ \[ \]  tiny-sd1 .{100,}3\.00 MB|^│ \[ \]  tiny-sd1 .{100,}1\.00 MB", re.M))
        assert "owner/typed-before-resize-more" in term.text()
        term.focus("Register local files and folders where they are")
        term.send(keys.SPACE)
        term.wait_for("[X]  Register local files and folders")
        term.resize(80, 24)
        term.wait_for(re.compile(r"^└─+┘$", re.M))
        assert "[X]  Register local files and folders" in term.text(), term.dump()  # the rebuilt form keeps it
        term.press("CANCEL")
        assert term.wait_exit() == 0
        assert "Traceback" not in term.raw.decode("utf-8", "replace")


def test_ctrl_c_restores_the_terminal(root, catalog):
    with launch(root, catalog) as term:
        term.wait_for("IMPORT LOCAL")
        term.send(keys.CTRL_C)
        term.wait_for("Interrupted.")
        status = term.wait_exit()
        raw = term.raw.decode("utf-8", "replace")
    assert status == 130
    assert "Traceback" not in raw
    # the alternate screen was left (xterm's rmcup) before the message was printed
    assert raw.rfind("\x1b[?1049l") < raw.rfind("Interrupted.")
    assert not (root / "configs" / "models.yaml").exists()


@pytest.mark.parametrize("module", ["invokeai_model_install.app.tui"])
def test_no_tty_prints_one_line_and_exits_2(root, catalog, module):
    proc = subprocess.run(
        [sys.executable, "-m", module, "--root", str(root), "--catalog", str(catalog)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "needs a terminal" in lines[0] and "--yes" in lines[0] and "--add" in lines[0] and "--help" in lines[0]


def test_run_form_without_tty_in_process(root, catalog, capsys):
    """Under pytest stdin is not a terminal: run_form itself must say so, not crash."""
    from invokeai_model_install.root.layout import RootLayout
    from invokeai_model_install.app.tui.app import FormResult, run_form

    assert run_form(RootLayout(root), catalog_path=catalog) == FormResult.NO_TTY
    assert "needs a terminal" in capsys.readouterr().err


def test_bad_catalogue_prints_one_line_before_curses(root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        broken:
          description: no repo id
        """))
    with launch(root, bad, module="invokeai_model_install.app.tui") as term:
        term.wait_for("repo_id")
        status = term.wait_exit()
        assert "Traceback" not in term.raw.decode("utf-8", "replace")
    assert status == 1


def test_colours_on_an_8_colour_terminal(root, catalog):
    """TERM=xterm has 8 colours: the form uses them (buttons, size line) and draws fine."""
    assert subprocess.run(["tput", "-T", "xterm", "colors"], capture_output=True, text=True).stdout.strip() == "8"
    with launch(root, catalog) as term:
        term.wait_for("To download:")
        colours = {
            term.screen.buffer[y][x].fg
            for y in range(term.rows)
            for x in range(term.cols)
            if term.screen.buffer[y][x].data.strip()
        }
        assert len(colours - {"default"}) >= 2, colours
        term.press("CANCEL")
        assert term.wait_exit() == 0


def test_the_form_imports_nothing_heavy():
    """The form must draw before torch/diffusers/huggingface_hub load: the TUI never imports them."""
    code = (
        "import sys\n"
        "import invokeai_model_install.app.tui.app, invokeai_model_install.app.tui.installer_app\n"
        "import invokeai_model_install.app.tui.__main__, invokeai_model_install.app.cli, invokeai_model_install.install.worker\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'huggingface_hub', 'transformers', 'safetensors') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


# --- issue 11 item 2: moving through the form never changes a value ----------------------------


def _form_text(term: PtyTerm) -> str:
    """The screen without the size line (free disk space may change under a shared machine)."""
    return "\n".join(line for line in term.text().splitlines() if "Free disk" not in line)


def test_tab_through_every_field_changes_no_value(root, catalog, tmp_path):
    scan = tmp_path / "scan"
    (scan / "my-vae").mkdir(parents=True)  # the only entry: npyscreen's Filename completed to it on Tab
    (root / "invokeai.init").write_text(f'--autoconvert "{scan}"\n')
    with launch(root, catalog) as term:
        term.wait_for(f"Directory:    {scan}")
        term.send(keys.TAB)
        term.type("owner/typed-line")
        term.wait_for("+ 1 import line")
        # the in-place checkbox ticked (and convert not): moving through it must keep both as they are
        term.focus("Register local files and folders where they are (no copy)")
        term.send(keys.SPACE)
        term.wait_for("[X]  Register local files and folders where they are (no copy)")
        term.settle()
        before = _form_text(term)
        assert "[ ]  Convert imported models" in before
        for key in (keys.TAB, keys.BTAB, keys.DOWN):
            # twice round the whole form, through the directory field and every other widget
            for _ in range(2 * 13):
                term.send(key)
                term.settle(quiet=0.1)
            after = _form_text(term)
            assert after == before, f"after {key!r}:\n{term.dump()}"
        assert f"{scan}/my-vae" not in term.text()
        # completion is an explicit key: Ctrl-T in the directory field
        term.focus("Select a directory for models to import", keys.BTAB)
        term.send(keys.DOWN)  # into the directory field
        term.send("\x14")  # ".../scan" -> ".../scan/"
        term.wait_for(f"Directory:    {scan}/ ")
        term.send("\x14")  # its only folder
        term.wait_for(f"Directory:    {scan}/my-vae/")
        term.press("CANCEL")
        assert term.wait_exit() == 0
