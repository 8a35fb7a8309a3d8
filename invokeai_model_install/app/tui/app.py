"""Entry point of the full-screen installer: :func:`run_form`.

Order matters for a fast, robust start: the tty check and the reading of the
catalogue, models.yaml and invokeai.init happen *before* curses starts, so a
problem prints as one clean line; npyscreen is imported only then; torch,
diffusers and huggingface_hub are never imported here (the worker loads them
lazily in its own process).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from invokeai_model_install.errors import InstallerError
from invokeai_model_install.app.common import is_interactive
from invokeai_model_install.app.tui.model import FormResult, load_form_data
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.net.settings import DownloadSettings

log = logging.getLogger("invokeai_model_install.app.tui")


NO_TTY_MESSAGE = (
    "invokeai-model-install: the model selection form needs a terminal (stdin and stdout must be a tty); "
    "without one use the headless flags, e.g. `invokeai-model-install --yes` (recommended starters) "
    "or `--add URL_OR_REPO_ID ...` (see --help)."
)


def terminal_size() -> tuple[int, int]:
    """(columns, lines) of the controlling terminal (stdout, else stderr); (0, 0) when unknown."""
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        try:
            size = os.get_terminal_size(stream.fileno())
            return size.columns, size.lines
        except (AttributeError, ValueError, OSError):
            continue
    return 0, 0


def _log_to_file(root: Path) -> logging.Handler | None:
    """Send our log records and Python warnings to ROOT/model-install.log (appended to).

    Nothing may write to fd 2 while curses owns the screen (FACTS.md), so
    logging's last-resort stderr handler must never be reached.
    """
    if not root.is_dir():
        return None
    handler: logging.Handler
    try:  # opened now: a root that cannot be written (read-only, permissions) gets no log, and the form still works
        handler = logging.FileHandler(root / "model-install.log", encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()  # and never logging's last resort (stderr, under curses)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    ours = logging.getLogger("invokeai_model_install")
    handler._iami_level = ours.level  # type: ignore[attr-defined]  # restored by _stop_logging
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)  # each item's outcome is an INFO record
    for name in ("invokeai_model_install", "py.warnings"):
        logging.getLogger(name).addHandler(handler)
    logging.captureWarnings(True)
    return handler


def _stop_logging(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    for name in ("invokeai_model_install", "py.warnings"):
        logging.getLogger(name).removeHandler(handler)
    logging.getLogger("invokeai_model_install").setLevel(getattr(handler, "_iami_level", logging.NOTSET))
    handler.close()
    logging.captureWarnings(False)


def run_form(
    layout: RootLayout,
    *,
    catalog_path: str | Path | None = None,
    wizard: bool = False,
    settings: DownloadSettings | None = None,
) -> int:
    """Show the installer form on this terminal; install what the user chose.

    :param layout: the root to manage.
    :param catalog_path: a starter catalogue instead of the packaged one.
    :param wizard: shown as a page of the first-run wizard: adds BACK.
    :param settings: ``DownloadSettings`` for the worker (default: from the environment).
    :returns: a :class:`FormResult` (an int).  Never raises for a missing tty,
        a small terminal, a bad catalogue or Ctrl-C: it prints one line instead.
    """
    if not is_interactive():
        print(NO_TTY_MESSAGE, file=sys.stderr)
        return FormResult.NO_TTY
    try:
        data = load_form_data(layout, catalog_path, wizard)
    except InstallerError as err:
        print(err.one_line(), file=sys.stderr)
        return FormResult.FAILED

    from invokeai_model_install.app.tui.form import required_size

    need_c, need_l = required_size(len(data.installed_keys), len(data.catalog) - len(data.installed_keys))
    cols, lines = terminal_size()
    if cols and lines and (cols < need_c or lines < need_l):
        print(too_small_message(cols, lines, need_c, need_l), file=sys.stderr)
        return FormResult.TOO_SMALL

    import npyscreen  # only now: the no-tty and too-small paths never pay for it

    from invokeai_model_install.app.tui.installer_app import InstallerApp

    handler = _log_to_file(layout.root)
    app = InstallerApp(layout, data, settings=settings, catalog_path=catalog_path)
    try:
        app.run_app()
    except npyscreen.NotEnoughSpaceForWidget:
        cols, lines = terminal_size()
        print(too_small_message(cols, lines, need_c, need_l), file=sys.stderr)
        app.stop_worker()
        return FormResult.TOO_SMALL
    except KeyboardInterrupt:
        stopped = app.stop_worker()
        msg = "Interrupted."
        if stopped:
            msg += f" The install was cancelled; partial downloads are kept in {layout.partial_dir} and resume on the next run."
        print(msg + " models.yaml was left as it was after the last finished model.", file=sys.stderr)
        return FormResult.INTERRUPTED
    finally:
        _stop_logging(handler)
    return app.result


def too_small_message(cols: int, lines: int, need_c: int, need_l: int) -> str:
    """One line: the terminal's size and the size the form needs."""
    return (
        f"invokeai-model-install: the terminal is {cols}x{lines}; the form needs at least {need_c}x{need_l} "
        "(columns x lines). Enlarge the window (or reduce the font) and try again, or use the headless flags (see --help)."
    )
