"""``invokeai``: a numbered terminal menu over the installer commands.

Each entry runs exactly the code of the matching command (``cli.main`` with
the same arguments, or ``configure.main``), so the menu adds no behaviour of
its own.  Choices are read line by line from stdin, which makes the menu
scriptable (``printf '2\\n6\\n' | invokeai --root R``); end of input quits.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

#: (label, function of the common arguments returning an exit status); order is the menu numbering.
MENU: tuple[str, ...] = (
    "Download and install models",
    "List installed models",
    "Scan the autoscan folder for new models",
    "Re-run the first-run setup",
    "Manage models in the browser (web page)",
    "Quit",
)


def _run(choice: int, common: list[str], layout, input_fn: Callable[[str], str]) -> int | None:
    """Run menu entry ``choice`` (1-based); None means quit."""
    from invokeai_model_install.app import cli, configure

    if choice == 1:
        return cli.main(common)
    if choice == 2:
        return cli.main(common + ["list"])
    if choice == 3:
        from invokeai_model_install.root.initfile import get_option

        if isinstance(get_option(layout.init_file, "--autoconvert"), str):
            return cli.main(common + ["scan"])
        # No autoscan folder yet: ask for one rather than fail (the scan command can then remember it).
        print("No autoscan folder is set in invokeai.init.")
        try:
            folder = input_fn("Folder to scan for model files (Enter to go back): ").strip()
        except EOFError:
            folder = ""
        if not folder:
            return 0
        return cli.main(common + ["scan", folder])
    if choice == 4:
        return configure.main(common)
    if choice == 5:  # runs until Ctrl-C, then the menu comes back
        return cli.main(common + ["web"])
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invokeai", description="Menu of InvokeAI model tools (install, list, scan, setup, web page).")
    parser.add_argument("--root", metavar="DIR", help="InvokeAI root directory (default: $INVOKEAI_ROOT, else ~/invokeai)")
    parser.add_argument("--config_file", "--config-file", dest="config_file", metavar="FILE", help="use this models.yaml")
    parser.add_argument("--catalog", metavar="FILE", help="use this starter catalogue instead of the packaged one")
    return parser


def main(argv: Sequence[str] | None = None, *, input_fn: Callable[[str], str] = input) -> int:
    """Show the menu until Quit (or end of input); returns the last command's exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from invokeai_model_install.app.common import make_layout

    common: list[str] = []
    if args.root:
        common += ["--root", args.root]
    if args.config_file:
        common += ["--config_file", args.config_file]
    if args.catalog:
        common += ["--catalog", args.catalog]
    layout = make_layout(args)
    status = 0
    while True:
        print(f"\nInvokeAI model tools (root: {layout.root})")
        for number, label in enumerate(MENU, start=1):
            print(f"  {number}. {label}")
        try:
            text = input_fn(f"Choose 1-{len(MENU)}: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return status
        if not text.isdigit() or not 1 <= int(text) <= len(MENU):
            print(f"Please enter a number from 1 to {len(MENU)}.")
            continue
        choice = int(text)
        if choice == len(MENU):
            return status
        print(f"\n== {MENU[choice - 1]} ==")
        sys.stdout.flush()
        result = _run(choice, common, layout, input_fn)
        status = int(result or 0)
        if status:
            print(f"({MENU[choice - 1]} ended with exit status {status})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
