"""The form's logic without curses: labels, the size line, plan building, validation.

Everything here is plain Python so it can be unit-tested without a terminal;
``form.py`` only moves values between these functions and npyscreen widgets.
Nothing here imports torch, diffusers or huggingface_hub (the form must draw
before any of them is loaded).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.catalog import StarterModel
from invokeai_model_install.root.disk import free_space as free_space  # the size line's free bytes (form.py)
from invokeai_model_install.root.layout import RootLayout

#: A trailing "(4.27 GB)" in a catalogue description; we show the size in its own column.
_SIZE_SUFFIX = re.compile(r"\s*\(\s*[\d.,]+\s*[KMGT]?i?B\s*\)\s*$", re.IGNORECASE)


def human_size(n: int | None) -> str:
    """Bytes as a short decimal size ("4.27 GB"), as the catalogue writes them; "?" when unknown."""
    if n is None or n <= 0:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.2f} {unit}" if size < 100 else f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.0f} TB"  # pragma: no cover - loop always returns


def cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in "…" when cut (never negative widths)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    return text[: width - 1].rstrip() + "…"


def starter_label(key: str, description: str, size: int, width: int, name_width: int = 28) -> str:
    """One line of a starter list: name padded to ``name_width``, description cut to fit, size at the right.

    ``width`` is the room for the label (the checkbox is drawn before it).  The
    size is always shown; the description gives way first, then the name.  A
    size already written at the end of the description ("(4.27 GB)") is dropped
    since it has its own column.
    """
    size_text = human_size(size).rjust(8)
    description = _SIZE_SUFFIX.sub("", description).strip()
    name = cut(key, name_width).ljust(name_width)
    room = width - name_width - len(size_text) - 4  # two gaps of 2 spaces
    if room < 8:  # too narrow for a description: name and size only
        name_room = max(1, width - len(size_text) - 2)
        return f"{cut(key, name_room).ljust(name_room)}  {size_text}"[: max(0, width)]
    return f"{name}  {cut(description, room).ljust(room)}  {size_text}"


def name_column(keys: Iterable[str], cap: int = 28) -> int:
    """Width of the name column: the longest key, at most ``cap``."""
    return min(cap, max((len(k) for k in keys), default=10))


def import_lines(text: str) -> list[str]:
    """Non-empty, stripped lines of the import box (one line may hold several items: the worker splits them)."""
    return [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]


def size_line(
    sizes: Mapping[str, int],
    selected: Iterable[str],
    import_count: int,
    scan_dir: str | None,
    free_bytes: int,
    width: int,
) -> tuple[str, str]:
    """The live lines under the form: (download size of the selection and free disk, a note on imports).

    ``sizes`` maps starter keys to catalogue sizes; import lines and a scan
    directory are counted in the second line ("" when there are none): their
    size is only known after resolving.
    """
    keys = list(selected)
    total = sum(max(0, sizes.get(k, 0)) for k in keys)
    unknown = [k for k in keys if sizes.get(k, 0) <= 0]
    if keys:
        first = f"To download: {human_size(total) if total else '0 B'} ({len(keys)} starter{'s' if len(keys) != 1 else ''}"
        if unknown:
            first += f", {len(unknown)} of unknown size"
        first += ")"
    else:
        first = "To download: nothing selected"
    first += f" | Free disk: {human_size(free_bytes) if free_bytes >= 0 else 'unknown'}"
    extra = []
    if import_count:
        extra.append(f"{import_count} import line{'s' if import_count != 1 else ''}")
    if scan_dir:
        extra.append("a folder")
    note = ("+ " + " and ".join(extra) + ": size known after resolving") if extra else ""
    return cut(first, width), cut(note, width)


def installed_starters(catalog_keys: Sequence[str], repo_ids: Mapping[str, Sequence[str]], stanzas: Mapping[str, Any]) -> list[str]:
    """Catalogue keys that are installed: registered under their key, or a stanza has one of their repo ids."""
    registered_repos = {
        str(s.get("repo_id")) for s in stanzas.values() if isinstance(s, Mapping) and s.get("repo_id")
    }
    out = []
    for key in catalog_keys:
        if key in stanzas or any(r in registered_repos for r in repo_ids.get(key, ())):
            out.append(key)
    return out


def installed_name(key: str, repo_ids: Sequence[str], stanzas: Mapping[str, Any]) -> str:
    """The models.yaml name under which starter ``key`` is installed (the key itself when registered so)."""
    if key in stanzas:
        return key
    for name, stanza in stanzas.items():
        if isinstance(stanza, Mapping) and stanza.get("repo_id") in repo_ids:
            return name
    return key


@dataclass
class FormValues:
    """What the widgets hold when DONE is pressed (plain values, no curses).

    :param installed: installed starters, as shown (models.yaml names).
    :param keep: the installed ones still checked.
    :param install: starter keys checked in the "not yet installed" list.
    :param previous_autoscan: the ``--autoconvert`` folder found in invokeai.init, if any.
    :param in_place: local files and folders (import lines, the directory) are registered where they
        are, never copied or converted (the CLI's ``--in-place``).
    """

    installed: Sequence[str] = ()
    keep: Sequence[str] = ()
    purge: bool = False
    install: Sequence[str] = ()
    import_text: str = ""
    use_scan_dir: bool = False
    scan_dir: str = ""
    autoscan: bool = False
    previous_autoscan: str | None = None
    convert: bool = False
    in_place: bool = False
    precision: str = "fp16"
    extra_notes: tuple[tuple[str, str], ...] = field(default=())

    @property
    def removals(self) -> list[str]:
        """Installed models the user unchecked."""
        keep = set(self.keep)
        return [name for name in self.installed if name not in keep]


#: The two checkboxes that exclude each other (short names, as :func:`validate` quotes them).
CONVERT_LABEL = "Convert imported models into diffusers"
IN_PLACE_LABEL = "Register local files and folders where they are"


def validate(values: FormValues) -> list[str]:
    """Problems that stop DONE, each a sentence naming the input and what to do (empty: fine)."""
    problems = []
    if values.use_scan_dir:
        raw = values.scan_dir.strip()
        if not raw:
            problems.append("No directory given for models to import: type one, or untick \"Select a directory\".")
        else:
            path = Path(os.path.expanduser(raw))
            if not path.exists():
                problems.append(f"The directory {raw} does not exist: check the path (Ctrl-T completes a folder name).")
            elif not path.is_dir():
                problems.append(f"{raw} is a file, not a directory: put files in the import box instead.")
    if values.in_place and values.convert:  # the CLI refuses --in-place --convert the same way (exit 2)
        problems.append(f"\"{IN_PLACE_LABEL}\" and \"{CONVERT_LABEL}\" exclude each other "
                        "(conversion writes a diffusers copy): untick one.")
    return problems


def build_plan(values: FormValues) -> InstallPlan:
    """The one :class:`InstallPlan` for the form's values (call :func:`validate` first).

    ``autoscan`` follows the checkbox when a directory is selected; unticking a
    directory that invokeai.init scanned at startup turns the startup scan off;
    otherwise invokeai.init is left alone (``None``).
    """
    scan_dir: Path | None = None
    autoscan: bool | None = None
    if values.use_scan_dir and values.scan_dir.strip():
        scan_dir = Path(os.path.expanduser(values.scan_dir.strip())).absolute()
        if values.autoscan:
            autoscan = True
        elif values.previous_autoscan:
            autoscan = False
    elif values.previous_autoscan:
        autoscan = False
    return InstallPlan(
        install_starters=tuple(values.install),
        remove_starters=tuple(values.removals),
        purge=bool(values.purge and values.removals),
        imports=tuple(import_lines(values.import_text)),
        scan_dir=scan_dir,
        autoscan=autoscan,
        convert=bool(values.convert),
        in_place=bool(values.in_place),
        precision="fp32" if values.precision == "fp32" else "fp16",
        extra=values.extra_notes,
    )




#: The form's narrowest usable width.
MIN_COLUMNS = 80


# --- what the form shows, and how it ends ------------------------------------------------------


class FormResult(IntEnum):
    """What :func:`run_form` returns (an ``int``: usable as the exit status).

    ``BACK`` is returned only in wizard mode, when the user pressed BACK: the
    first-run wizard goes to its previous page.  Every other value means the
    form is over.
    """

    OK = 0  #: DONE and every item succeeded, nothing to do, or CANCEL pressed on the form
    FAILED = 1  #: some items failed (or the catalogue / models.yaml could not be read)
    NO_TTY = 2  #: stdin or stdout is not a terminal: nothing was shown
    TOO_SMALL = 3  #: the terminal is too small for the form: nothing was shown
    CANCELLED = 4  #: a running install was cancelled (partial downloads are kept)
    BACK = 10  #: wizard mode only: the user pressed BACK
    INTERRUPTED = 130  #: Ctrl-C (the worker was cancelled, partial downloads kept)


@dataclass
class FormData:
    """What the form shows, read before curses starts (so read errors print cleanly).

    :param catalog: starter key -> StarterModel (catalogue order).
    :param stanzas: models.yaml stanzas (name -> mapping).
    :param previous_autoscan: the folder of ``--autoconvert`` in invokeai.init, if any.
    """

    root: Path
    catalog: Mapping[str, StarterModel]
    stanzas: Mapping[str, Any]
    previous_autoscan: str | None = None
    wizard: bool = False

    @property
    def repo_ids(self) -> dict[str, tuple[str, ...]]:
        return {k: tuple(getattr(m, "repo_ids", (m.repo_id,))) for k, m in self.catalog.items()}

    @property
    def installed_keys(self) -> list[str]:
        return installed_starters(list(self.catalog), self.repo_ids, self.stanzas)

    @property
    def first_run(self) -> bool:
        """No model registered yet: recommended starters are preselected."""
        return not self.stanzas


def load_form_data(layout: RootLayout, catalog_path: str | Path | None = None, wizard: bool = False):
    """Read what the form shows (catalogue, models.yaml, invokeai.init); raises InstallerError subclasses."""
    from invokeai_model_install.root.catalog import load_catalog
    from invokeai_model_install.root.initfile import get_option
    from invokeai_model_install.root.registry import Registry

    catalog = load_catalog(catalog_path)
    stanzas = Registry(layout.models_yaml).load()
    autoscan = get_option(layout.init_file, "--autoconvert") if layout.init_file.exists() else None
    return FormData(
        root=layout.root,
        catalog=catalog,
        stanzas=stanzas,
        previous_autoscan=autoscan if isinstance(autoscan, str) and autoscan else None,
        wizard=wizard,
    )
