"""``python -m invokeai_model_install.app.tui --root DIR [--catalog FILE] [--wizard]``: the form alone.

Used by the start-up benchmark; users run ``invokeai-model-install``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the few options and run the form; returns its :class:`FormResult`."""
    from invokeai_model_install.root.layout import RootLayout, resolve_root
    from invokeai_model_install.app.tui.app import run_form

    parser = argparse.ArgumentParser(prog="python -m invokeai_model_install.app.tui")
    parser.add_argument("--root", help="InvokeAI root directory")
    parser.add_argument("--catalog", help="starter catalogue (default: the packaged one)")
    parser.add_argument("--wizard", action="store_true", help="show BACK, as in the first-run wizard")
    args = parser.parse_args(argv)
    layout = RootLayout(resolve_root(args.root))
    return int(run_form(layout, catalog_path=args.catalog, wizard=args.wizard))


if __name__ == "__main__":
    sys.exit(main())
