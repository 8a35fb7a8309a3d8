"""The npyscreen application: the form, then the progress screen, then back or out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import npyscreen

from invokeai_model_install.errors import InstallerError
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.app.tui.form import ModelForm
from invokeai_model_install.app.tui.model import FormData, FormResult, load_form_data
from invokeai_model_install.app.tui.progress_form import ProgressForm
from invokeai_model_install.net.settings import DownloadSettings

log = logging.getLogger(__name__)


class InstallerApp(npyscreen.NPSAppManaged):
    """MAIN (the form) and PROGRESS (a running plan); ``result`` is a :class:`FormResult`."""

    def __init__(self, layout: RootLayout, data: FormData, *, settings: DownloadSettings | None = None, catalog_path: str | Path | None = None):
        super().__init__()
        self.layout = layout
        self.data = data
        self.settings = settings
        self.catalog_path = catalog_path
        self.handle: Any = None
        self.result: int = FormResult.OK
        self._install_result: int = FormResult.OK
        self._last_values: Any = None  # the form's values of the last plan (BACK TO THE FORM keeps what did not finish)

    # --- running ---------------------------------------------------------------------

    def run_app(self) -> None:
        """Run with the mouse left to the terminal, so that selecting and pasting text works as usual.

        Always in this process (``fork=False``): npyscreen's wrapper runs every application after the
        first one in a *forked child*, so a second form in one process (the ``invokeai`` menu, then its
        first-run wizard) lost its result (BACK read as OK) and everything it did to this process.
        """
        import warnings

        with warnings.catch_warnings():
            # "Repeated calls of endwin may cause a memory leak": a few kB per form, against a lost result
            warnings.simplefilter("ignore")
            npyscreen.npyssafewrapper.wrapper(
                lambda screen: self._NPSApp__remove_argument_call_main(screen, enable_mouse=False), fork=False
            )

    def onStart(self) -> None:
        npyscreen.setTheme(npyscreen.Themes.DefaultTheme)
        self._add_main_form()

    def remember_values(self, values: Any) -> None:
        """The form's values when DONE was pressed (see :meth:`back_to_form`)."""
        self._last_values = values

    def _add_main_form(self, **restore: Any) -> None:
        title = f"INVOKEAI MODEL INSTALLER  (root: {self.layout.root})"
        self.addForm("MAIN", ModelForm, data=self.data, name=title, **restore)

    def rebuild_main(self, values: Any, editw: int) -> None:
        """The terminal changed size: a new form laid out for it, with the same values and focus."""
        self._add_main_form(restore=values, restore_editw=editw)
        self.switchForm("MAIN")

    # --- called by the forms -----------------------------------------------------------

    def start_plan(self, plan: InstallPlan) -> None:
        """DONE: hand the plan to the worker and show the progress screen."""
        if plan.is_empty():
            npyscreen.notify_confirm("Nothing selected: nothing to install or remove.", title="Done", editw=1)
            self.finish("ok")
            return
        try:
            from invokeai_model_install.app.common import check_writable
            from invokeai_model_install.install.worker import start_install  # imports nothing heavy at module level

            check_writable(self.layout)  # a read-only root: one popup line, not one failure per item
            self.handle = start_install(plan, self.layout, settings=self.settings, catalog_path=self.catalog_path)
        except InstallerError as err:
            npyscreen.notify_confirm(err.one_line(), title="Cannot start", wide=True, editw=1)
            return
        except ImportError as exc:  # a broken installation: say so instead of a traceback under curses
            log.exception("cannot import the worker")
            npyscreen.notify_confirm(f"The installer's worker cannot be loaded: {exc}", title="Cannot start", wide=True, editw=1)
            return
        n_items = len(plan.install_starters) + len(plan.remove_starters) + len(plan.imports) + (1 if plan.scan_dir else 0)
        self.addForm("PROGRESS", ProgressForm, handle=self.handle, n_items=n_items, name="INSTALLING MODELS")
        self.switchForm("PROGRESS")

    def back_to_form(self) -> None:
        """After a plan: a fresh form showing the new state of the root."""
        self._remember_install_result()
        try:
            self.data = load_form_data(self.layout, self.catalog_path, self.data.wizard)
        except InstallerError as err:
            npyscreen.notify_confirm(err.one_line(), title="Cannot reload", wide=True, editw=1)
            self.finish("failed")
            return
        self._add_main_form(restore=self._values_to_keep())
        self.switchForm("MAIN")

    def _values_to_keep(self) -> Any:
        """What the new form starts with after a plan: the import lines, starters and folder that did not
        finish (cancelled or failed), so "run again to resume" needs no retyping; None after a full success."""
        values = self._last_values
        form = self._Forms.get("PROGRESS")
        state = getattr(form, "state", None)
        if values is None or state is None:
            return None
        finished = {row.label.strip() for row in state.items.values() if row.state in ("done", "skipped", "removed")}
        from invokeai_model_install.app.tui import model

        lines = [line for line in model.import_lines(values.import_text) if line.strip() not in finished]
        install = [k for k in values.install if k not in finished]
        if not lines and not install:
            return None
        data = self.data
        installed = [model.installed_name(k, data.repo_ids[k], data.stanzas) for k in data.installed_keys]
        import dataclasses

        return dataclasses.replace(
            values, installed=installed, keep=installed, purge=False, install=install,
            import_text="\n".join(lines) + "\n",
        )

    def finish(self, how: str) -> None:
        """Leave the application: ``ok``, ``failed``, ``cancel`` (form's CANCEL) or ``back``."""
        if how == "back":
            self.result = FormResult.BACK
        elif how in ("ok", "failed"):
            self._remember_install_result()
            self.result = self._install_result
        else:
            self.result = self._install_result
        self.switchForm(None)

    def _remember_install_result(self) -> None:
        form = self._Forms.get("PROGRESS")
        state = getattr(form, "state", None)
        if state is None or state.finished is None:
            return
        if state.finished.cancelled:
            self._install_result = FormResult.CANCELLED
        elif state.finished.failed:
            self._install_result = FormResult.FAILED
        else:
            self._install_result = FormResult.OK

    def stop_worker(self, timeout: float = 30.0) -> bool:
        """Cancel a running worker and wait for it (Ctrl-C); True when one was running."""
        handle = self.handle
        if handle is None or handle.done:
            return False
        try:
            handle.cancel()
            handle.join(timeout)
        except Exception:  # never let cleanup hide the interrupt
            log.exception("stopping the worker failed")
        return True
