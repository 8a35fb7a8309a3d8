"""Issue 11 item 9: what a new user reads first matches what the program does."""

from __future__ import annotations

import re
from pathlib import Path

from invokeai_model_install.app import cli

REPO = Path(__file__).resolve().parent.parent


def _subcommands() -> list[str]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return list(sub.choices)


def test_readme_usage_block_lists_every_subcommand():
    readme = (REPO / "README.md").read_text()
    usage = readme[readme.index("## Usage"):]
    usage = usage[: usage.index("```", usage.index("```") + 3)]
    missing = [c for c in _subcommands() if not re.search(rf"invokeai-model-install {re.escape(c)}\b", usage)]
    assert not missing, f"README usage block lacks {missing}"


def test_readme_set_up_has_a_virtual_environment_and_says_which_root():
    readme = (REPO / "README.md").read_text()
    setup = readme[readme.index("## Set up"): readme.index("## Usage")]
    assert "python3 -m venv" in setup and "pipx install ." in setup
    assert "~/invokeai" in setup and "--root" in setup and "INVOKEAI_ROOT" in setup
    assert "--create-root" in setup


def test_docs_never_name_an_interpreter_the_steps_do_not_create():
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert ".venv/bin/python" not in path.read_text(), path


def test_docs_say_exit_2_for_unknown_names():
    cli_md = (REPO / "docs" / "cli.md").read_text()
    headless_md = (REPO / "docs" / "headless.md").read_text()
    assert "**2** bad usage or an unknown" in cli_md
    assert "`--delete` of a model not in models.yaml" in headless_md and "closest starter name" in headless_md
