"""The model selection form (npyscreen): starters, imports, scan folder, convert, in place, DONE.

The form only shows state and collects values; :mod:`.model` turns them into an
:class:`InstallPlan` and the application (``app.py``) hands that to the worker.
"""

from __future__ import annotations


import npyscreen

from invokeai_model_install.app.tui import model
from invokeai_model_install.app.tui.model import FormData
from invokeai_model_install.app.tui.widgets import ActionButton, ImportBox, NotifyingCheckbox, TitleDirectory


#: Rows of the form that are not the two starter lists (see :meth:`ModelForm.create`).
FIXED_ROWS = 4 + 1 + 5 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1  # frame+title, header, import box, dir, dir field, autoscan, convert,
# in place, size, size note, buttons
INSTALLED_ROWS = 2  # header and purge checkbox


def required_size(n_installed: int, n_new: int) -> tuple[int, int]:
    """(columns, lines) the form needs: each list gets at least 2 rows (npyscreen's minimum; they scroll)."""
    lines = FIXED_ROWS + (INSTALLED_ROWS + 2 if n_installed else 0) + 2
    return model.MIN_COLUMNS, lines


def list_heights(lines: int, n_installed: int, n_new: int) -> tuple[int, int]:
    """Rows for the installed and the not-installed lists, sharing what the terminal has.

    A list never gets fewer than 2 rows (npyscreen refuses smaller lists) nor
    more rows than it has entries; the installed list gets up to a third.
    """
    free = lines - FIXED_ROWS - (INSTALLED_ROWS if n_installed else 0)
    h_inst = max(2, min(n_installed, free // 3)) if n_installed else 0
    h_new = max(2, min(n_new, free - h_inst))
    if n_installed:  # give rows the second list does not need back to the first
        h_inst = max(2, min(n_installed, free - h_new))
    return h_inst, h_new


class ModelForm(npyscreen.FormBaseNew):
    """The main form.  ``data`` is a :class:`FormData`; the app reads :meth:`values`."""

    FIX_MINIMUM_SIZE_WHEN_CREATED = True

    def __init__(self, *args, data: FormData, restore: model.FormValues | None = None, restore_editw: int = 0, **keywords) -> None:
        self.data = data
        self.restore = restore
        self.restore_editw = restore_editw
        self._last_size_line: tuple[str, str] = ("", "")
        # the pad is never smaller than what the form needs (npyscreen's default, 80x24, may be
        # larger or smaller); a terminal smaller than the pad shows it scrolled to the focus
        n_inst = len(data.installed_keys)
        keywords.setdefault("minimum_lines", required_size(n_inst, len(data.catalog) - n_inst)[1])
        super().__init__(*args, **keywords)
        self._built_for = self._max_physical()

    # --- building -------------------------------------------------------------------

    def create(self) -> None:
        data = self.data
        catalog = data.catalog
        self.installed = data.installed_keys
        self.installed_names = [model.installed_name(k, data.repo_ids[k], data.stanzas) for k in self.installed]
        self.new_keys = [k for k in catalog if k not in self.installed]
        h_inst, h_new = list_heights(self.lines, len(self.installed), len(self.new_keys))
        label_w = self.columns - 12

        self.w_installed = None
        self.w_purge = None
        if self.installed:
            self.add(npyscreen.FixedText, value="Installed starter models (uncheck to remove):", editable=False, color="LABEL")
            self.w_installed = self.add(
                npyscreen.MultiSelect,
                values=[self._label(k, label_w) for k in self.installed],
                value=list(range(len(self.installed))),
                max_height=h_inst,
                scroll_exit=True,
            )
            self.w_purge = self.add(
                npyscreen.Checkbox, name="Purge deleted models from disk (otherwise their files are kept)", value=False
            )
        if self.new_keys:
            header = "Starter models not yet installed (Space selects):"
        else:
            header = "All starter models are installed." if catalog else "No starter models in the catalogue."
        self.add(npyscreen.FixedText, value=header, editable=False, color="LABEL")
        preselect = [i for i, k in enumerate(self.new_keys) if data.first_run and getattr(catalog[k], "recommended", False)
                     and getattr(catalog[k], "runs_in_invokeai23", True)]
        self.w_new = self.add(
            npyscreen.MultiSelect,
            values=[self._label(k, label_w) for k in self.new_keys],
            value=preselect,
            max_height=h_new,
            scroll_exit=True,
            editable=bool(self.new_keys),
        )
        self.w_imports = self.add(
            ImportBox,
            name="IMPORT LOCAL AND REMOTE MODELS: URLs, paths, repo ids (paste OK)",
            max_height=5,
            scroll_exit=True,
        )
        had_dir = bool(data.previous_autoscan)
        self.w_use_dir = self.add(
            NotifyingCheckbox,
            name="Select a directory for models to import",
            value=had_dir,
            on_toggle=lambda _v: self.adjust_widgets(),
        )
        self.w_dir = self.add(
            TitleDirectory,  # Tab moves on (never completes); Ctrl-T completes
            name="Directory:",
            value=data.previous_autoscan or "",
            begin_entry_at=14,
            relx=self.nextrelx + 4,
            hidden=not had_dir,
            use_two_lines=False,
        )
        self.w_autoscan = self.add(
            npyscreen.Checkbox,
            name="Scan this directory each time InvokeAI starts",
            value=had_dir,
            relx=self.nextrelx + 4,
            hidden=not had_dir,
        )
        self.w_convert = self.add(
            npyscreen.Checkbox,
            name=f"{model.CONVERT_LABEL} (keeps the original: 2x disk)",
            value=False,
        )
        self.w_in_place = self.add(  # the CLI's --in-place; DONE refuses it with convert (model.validate)
            npyscreen.Checkbox,
            name=f"{model.IN_PLACE_LABEL} (no copy)",
            value=False,
        )
        self.w_size = self.add(npyscreen.FixedText, value="", editable=False, color="CAUTION")
        self.w_size_note = self.add(npyscreen.FixedText, value="", editable=False, color="CAUTION")
        row = self.nextrely
        buttons = [("DONE", self.on_done), ("CANCEL", self.on_cancel)]
        if data.wizard:
            buttons.append(("BACK", self.on_back))
        x = self.columns - 4
        placed = []
        for name, action in buttons:
            x -= len(name) + 5
            placed.append((name, action, x))
        # left to right: BACK, CANCEL, DONE
        for name, action, relx in reversed(placed):
            w = self.add(ActionButton, name=name, action=action, rely=row, relx=relx)
            setattr(self, f"w_{name.lower()}", w)
        if self.restore is not None:
            self._apply(self.restore)
            self.editw = max(0, min(self.restore_editw, len(self._widgets__) - 1))
            self.preserve_selected_widget = True
        self.update_size_line()

    def _apply(self, values: model.FormValues) -> None:
        """Put ``values`` back into the widgets (after a rebuild for a new terminal size)."""
        if self.w_installed is not None:
            self.w_installed.value = [i for i, n in enumerate(self.installed_names) if n in set(values.keep)]
            self.w_purge.value = values.purge
        self.w_new.value = [i for i, k in enumerate(self.new_keys) if k in set(values.install)]
        self.w_imports.value = values.import_text
        self.w_imports.entry_widget.cursor_position = len(values.import_text)
        self.w_use_dir.value = values.use_scan_dir
        self.w_dir.value = values.scan_dir
        self.w_autoscan.value = values.autoscan
        self.w_dir.hidden = self.w_autoscan.hidden = not values.use_scan_dir
        self.w_convert.value = values.convert
        self.w_in_place.value = values.in_place

    def _resize(self, *args) -> None:
        """A new terminal size: rebuild the form for it, keeping every value.

        npyscreen only grows a form's pad and moves nothing: on a smaller
        terminal the lists would stay too tall and the buttons off screen.
        """
        if self._max_physical() != self._built_for:
            self.parentApp.rebuild_main(self.values(), self.editw)
            return
        super()._resize(*args)

    def _label(self, key: str, width: int) -> str:
        m = self.data.catalog[key]
        description = m.description if getattr(m, "runs_in_invokeai23", True) else f"[needs InvokeAI 3+] {m.description}"
        return model.starter_label(key, description, getattr(m, "size", 0), width, model.name_column(self.data.catalog))

    # --- live updates ---------------------------------------------------------------

    def adjust_widgets(self) -> None:
        """Called by npyscreen after each key: show/hide the directory fields, refresh the size line."""
        show = bool(self.w_use_dir.value)
        if self.w_dir.hidden == show:
            self.w_dir.hidden = not show
            self.w_autoscan.hidden = not show
            self.w_dir.update()
            self.w_autoscan.update()
        self.update_size_line()

    def update_size_line(self) -> None:
        selected = [self.new_keys[i] for i in (self.w_new.value or [])]
        sizes = {k: getattr(m, "size", 0) for k, m in self.data.catalog.items()}
        scan = self.w_dir.value if self.w_use_dir.value else None
        text = model.size_line(
            sizes,
            selected,
            len(model.import_lines(self.w_imports.value or "")),
            scan,
            model.free_space(self.data.root),
            self.columns - 6,
        )  # (main line, note on imports)
        if text != self._last_size_line:
            self._last_size_line = text
            self.w_size.value, self.w_size_note.value = text
            self.w_size.update()
            self.w_size_note.update()

    # --- values and buttons ---------------------------------------------------------

    def values(self) -> model.FormValues:
        """The widgets' values as plain data."""
        keep = []
        if self.w_installed is not None:
            keep = [self.installed_names[i] for i in (self.w_installed.value or [])]
        return model.FormValues(
            installed=list(self.installed_names),
            keep=keep,
            purge=bool(self.w_purge.value) if self.w_purge is not None else False,
            install=[self.new_keys[i] for i in (self.w_new.value or [])],
            import_text=self.w_imports.value or "",
            use_scan_dir=bool(self.w_use_dir.value),
            scan_dir=self.w_dir.value or "",
            autoscan=bool(self.w_autoscan.value),
            previous_autoscan=self.data.previous_autoscan,
            convert=bool(self.w_convert.value),
            in_place=bool(self.w_in_place.value),
        )

    def on_done(self) -> None:
        values = self.values()
        problems = model.validate(values)
        if problems:
            npyscreen.notify_confirm("\n".join(problems), title="Please fix", wide=True, editw=1)
            self.display()
            return
        removals = values.removals
        if removals:
            what = "deleted from disk" if values.purge else "kept on disk (tick Purge to delete them)"
            ok = npyscreen.notify_yes_no(
                f"Remove {len(removals)} model(s): {', '.join(removals)}?\nTheir files will be {what}.",
                title="Confirm removal",
                editw=1,
            )
            if not ok:
                self.display()
                return
        self.parentApp.remember_values(values)
        self.parentApp.start_plan(model.build_plan(values))

    def on_cancel(self) -> None:
        self.parentApp.finish("cancel")

    def on_back(self) -> None:
        self.parentApp.finish("back")
