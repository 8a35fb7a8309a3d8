"""invokeai.init: reading options, replacing one option and keeping every other line."""

from __future__ import annotations

from pathlib import Path

import pytest

from invokeai_model_install.errors import ConfigError
from invokeai_model_install.root.initfile import (
    DEFAULT_INIT,
    ensure_init_file,
    get_option,
    read_options,
    set_option,
)

EXAMPLE = '''\
# InvokeAI initialization file
--outdir="/home/fred/invokeai/outputs"

--no-nsfw_checker
--autoconvert /home/fred/stable-diffusion-checkpoints
--autoconvert_extra keep-me
'''


@pytest.fixture
def init(tmp_path: Path) -> Path:
    path = tmp_path / "invokeai.init"
    path.write_text(EXAMPLE, encoding="utf-8")
    return path


def test_read_options_skips_comments_and_blanks(init: Path) -> None:
    assert read_options(init) == [
        '--outdir="/home/fred/invokeai/outputs"',
        "--no-nsfw_checker",
        "--autoconvert /home/fred/stable-diffusion-checkpoints",
        "--autoconvert_extra keep-me",
    ]
    assert read_options(init.parent / "missing.init") == []


def test_get_option_handles_space_equals_quotes_and_flags(init: Path) -> None:
    assert get_option(init, "--outdir") == "/home/fred/invokeai/outputs"
    assert get_option(init, "--autoconvert") == "/home/fred/stable-diffusion-checkpoints"
    assert get_option(init, "--no-nsfw_checker") is True
    assert get_option(init, "--model") is None


@pytest.mark.parametrize(
    "line",
    ["--autoconvert /old/dir", "--autoconvert=/old/dir", '--autoconvert "/old dir"', "  --autoconvert   '/old'"],
)
def test_set_option_replaces_any_spelling_in_place(tmp_path: Path, line: str) -> None:
    path = tmp_path / "invokeai.init"
    path.write_text(f"# top\n--first\n{line}\n--last x\n", encoding="utf-8")
    assert set_option(path, "--autoconvert", "/new dir/models") is True
    assert path.read_text(encoding="utf-8") == '# top\n--first\n--autoconvert "/new dir/models"\n--last x\n'
    assert get_option(path, "--autoconvert") == "/new dir/models"


def test_set_option_keeps_every_other_line_and_similar_names(init: Path) -> None:
    set_option(init, "--autoconvert", "/scan")
    text = init.read_text(encoding="utf-8")
    assert text == EXAMPLE.replace("--autoconvert /home/fred/stable-diffusion-checkpoints", '--autoconvert "/scan"')
    assert "--autoconvert_extra keep-me" in text


def test_duplicates_collapse_to_one_line(tmp_path: Path) -> None:
    path = tmp_path / "invokeai.init"
    path.write_text("--autoconvert /a\n--x\n--autoconvert=/b\n", encoding="utf-8")
    set_option(path, "--autoconvert", "/c")
    assert path.read_text(encoding="utf-8") == '--autoconvert "/c"\n--x\n'


def test_remove_option(init: Path) -> None:
    assert set_option(init, "--autoconvert", None) is True
    assert "--autoconvert /home" not in init.read_text(encoding="utf-8")
    assert get_option(init, "--autoconvert") is None
    assert "--autoconvert_extra keep-me" in init.read_text(encoding="utf-8")
    assert set_option(init, "--autoconvert", None) is False  # nothing left to remove


def test_append_to_file_without_final_newline_and_create_missing(tmp_path: Path) -> None:
    path = tmp_path / "invokeai.init"
    path.write_text("--a 1", encoding="utf-8")
    set_option(path, "--autoconvert", "/d")
    assert path.read_text(encoding="utf-8") == '--a 1\n--autoconvert "/d"\n'
    fresh = tmp_path / "new" / "invokeai.init"
    assert set_option(fresh, "--autoconvert", None) is False and not fresh.exists()
    set_option(fresh, "--autoconvert", "/e")
    assert fresh.read_text(encoding="utf-8") == DEFAULT_INIT + '--autoconvert "/e"\n'


def test_values_with_quotes_survive(tmp_path: Path) -> None:
    path = tmp_path / "invokeai.init"
    set_option(path, "--autoconvert", 'it"s here')
    assert get_option(path, "--autoconvert") == 'it"s here'
    set_option(path, "--no-nsfw_checker", True)
    assert get_option(path, "--no-nsfw_checker") is True


def test_write_is_atomic_and_leaves_no_temp_files(init: Path, monkeypatch) -> None:
    from invokeai_model_install.root import atomic

    def crash(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        set_option(init, "--autoconvert", "/new")
    monkeypatch.undo()
    assert init.read_text(encoding="utf-8") == EXAMPLE
    assert [p.name for p in init.parent.iterdir()] == ["invokeai.init"]


def test_bad_option_name(init: Path) -> None:
    with pytest.raises(ConfigError):
        set_option(init, "autoconvert", "/x")


def test_ensure_init_file_never_touches_an_existing_one(init: Path, tmp_path: Path) -> None:
    assert ensure_init_file(init) is False
    assert init.read_text(encoding="utf-8") == EXAMPLE
    new = tmp_path / "other.init"
    assert ensure_init_file(new) is True
    assert new.read_text(encoding="utf-8") == DEFAULT_INIT
    assert read_options(new) == []
