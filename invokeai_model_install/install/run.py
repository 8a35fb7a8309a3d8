"""Run an :class:`InstallPlan` synchronously: the work list, then item by item, reporting events, asking questions.

:func:`run_plan` — ``on_event`` gets every event, ``ask`` answers questions (None: nobody can; the item
is skipped with an error naming the flag), ``cancel`` is an Event checked between steps.  Items run
independently: an error in one becomes an ``ItemFailed`` event and the next item starts.
:mod:`worker` runs the same in a spawned process or a thread; :mod:`dry_run` says what it would do.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from invokeai_model_install.errors import Cancelled, InstallerError, SourceError, UnknownModelError, from_os_error
from invokeai_model_install.events import (
    Event,
    EventSink,
    ItemFailed,
    ItemNote,
    ItemSkipped,
    ItemStarted,
    PlanFinished,
    PlanStarted,
    QuestionAsked,
    discard,
)
from invokeai_model_install.install.identity import source_key
from invokeai_model_install.install.item import ItemContext, ItemOutcome, WorkItem
from invokeai_model_install.install.pipeline import run_item
from invokeai_model_install.install.questions import SkippedByUser
from invokeai_model_install.install.removal import NotInstalled
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.redact import redact_text
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.net.sources import Source


@dataclass(frozen=True)
class InstallResult:
    """The end of a plan: one outcome per item, bytes fetched, whether it was cancelled.

    ``error`` is set when the worker itself stopped abnormally (e.g. its process was killed).
    """

    outcomes: tuple[ItemOutcome, ...] = ()
    fetched_bytes: int = 0
    cancelled: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing failed and the run was neither cancelled nor cut short."""
        return not self.cancelled and not self.error and all(o.status != "failed" for o in self.outcomes)

    @property
    def failed(self) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document (see docs/headless.md)."""
        return {
            "ok": self.ok,
            "cancelled": self.cancelled,
            "error": self.error,
            "fetched_bytes": self.fetched_bytes,
            "items": [dataclasses.asdict(o) for o in self.outcomes],
        }



# --- building the work list -------------------------------------------------------------------


def build_items(plan: InstallPlan, layout: RootLayout, catalog_path: Path | None = None) -> list[WorkItem]:
    """The plan as a list of work items (removals first, then starters, imports, the scan).

    Lines that cannot be parsed become ``invalid`` items carrying their error, so
    each is reported on its own and the good ones still run.
    """
    items: list[WorkItem] = []

    def next_id() -> str:
        return f"item{len(items) + 1}"

    for name in plan.remove_starters:
        items.append(WorkItem(id=next_id(), label=f"remove {name}", action="remove", line=name))
    for name in plan.convert_models:  # installed checkpoints to diffusers (install.convert_installed)
        items.append(WorkItem(id=next_id(), label=f"convert {name}", action="convert-installed", line=name))
    for model in plan.locked:  # a lock file's models (install.locked)
        items.append(WorkItem(id=next_id(), label=f"{model.name} (locked)", action="locked", line=model.name, source=model))
    if plan.install_starters:
        from invokeai_model_install.root.catalog import load_catalog

        catalog = load_catalog(catalog_path)
        for key in plan.install_starters:
            starter = catalog.get(key)
            if starter is None:
                err = UnknownModelError(f"{key!r} is not a starter model in the catalogue", "see the form or --help for the names")
                items.append(WorkItem(id=next_id(), label=key, action="invalid", line=key, error=err))
            else:
                items.append(WorkItem(id=next_id(), label=key, line=key, starter=starter))
    if plan.support_models:
        from invokeai_model_install.install.support import SUPPORT_MODELS

        for repo in SUPPORT_MODELS:
            items.append(WorkItem(id=next_id(), label=repo.label, action="support", line=repo.repo_id, source=repo))
    seen: set[str] = set()
    for line in plan.imports:
        for entry in _parse_line(line):
            if isinstance(entry, InstallerError):
                shown = redact_text(line)  # a line we could not parse may still hold ?token=...
                items.append(WorkItem(id=next_id(), label=shown, action="invalid", line=shown, error=entry))
                continue
            key = source_key(entry)
            if key in seen:
                continue
            seen.add(key)
            items.append(WorkItem(id=next_id(), label=getattr(entry, "label", None) or redact_text(line),
                                  line=redact_text(line), source=entry))
    if plan.scan_dir is not None:
        from invokeai_model_install.install import scan

        try:
            found = scan.scan_dir(plan.scan_dir, layout)
        except InstallerError as err:
            items.append(WorkItem(id=next_id(), label=f"scan {plan.scan_dir}", action="invalid", error=err))
        else:
            for src in found:
                key = source_key(src)
                if key not in seen:
                    seen.add(key)
                    items.append(WorkItem(id=next_id(), label=str(src.path), line=str(src.path), source=src))
    return items


_SHOWN_FIELDS = ("label", "message", "hint", "reason", "detail", "name", "prompt", "error")


def _redacted(value: Any) -> Any:
    """An event or outcome with credentials in URLs masked in every text field it shows (one last net)."""
    changes = {}
    for name in _SHOWN_FIELDS:
        text = getattr(value, name, None)
        if isinstance(text, str) and "://" in text:
            clean = redact_text(text)
            if clean != text:
                changes[name] = clean
    return dataclasses.replace(value, **changes) if changes else value


def _parse_line(line: str) -> list[Source | SourceError]:
    """Sources of one import line (a folder expands to its model files), or errors."""
    from invokeai_model_install.net import sources

    srcs, errors = sources.parse_import_text(line)
    out: list[Source | SourceError] = []
    if errors:
        # one line, one report: "foo bar baz" is a typo'd line, not three failures
        first = errors[0]
        if len(errors) == 1:
            out.append(first)
        elif not srcs:  # nothing on the line is usable: the line is the one thing that is wrong
            out.append(type(first)(
                f"{' '.join(line.split())!r} is not a URL, a HuggingFace repo id (owner/name), or an existing file or folder",
                first.hint,
            ))
        else:
            import re

            bad = [m.group(1) if (m := re.match(r"^'(.*?)' ", e.message)) else e.message for e in errors]
            out.append(type(first)(
                ", ".join(repr(b) for b in bad) + " on this line are not URLs, repo ids (owner/name), or existing files or folders",
                first.hint,
            ))
    for src in srcs:
        if isinstance(src, sources.LocalFolderSource):
            expanded = sources.expand_folder(Path(str(src.path)))
            if not expanded:
                out.append(SourceError(f"{src.path}: no model files (.safetensors, .ckpt, diffusers folders) in this folder", "check the folder"))
            out.extend(expanded)
        else:
            out.append(src)
    return out



# --- the synchronous core ------------------------------------------------------------------------


def _apply_autoscan(plan: InstallPlan, layout: RootLayout, on_event: EventSink) -> None:
    """``autoscan`` True writes ``--autoconvert "DIR"`` to invokeai.init; False removes it."""
    if plan.autoscan is None:
        return
    from invokeai_model_install.root import initfile

    if plan.autoscan and plan.scan_dir is not None:
        value = str(Path(os.path.expanduser(str(plan.scan_dir))).absolute())
        if initfile.set_option(layout.init_file, "--autoconvert", value):
            on_event(ItemNote(message=f"{layout.init_file}: InvokeAI will scan {value} for new models at startup"))
    elif plan.autoscan is False:
        if initfile.set_option(layout.init_file, "--autoconvert", None):
            on_event(ItemNote(message=f"{layout.init_file}: the startup scan (--autoconvert) is off"))


def _run_one(item: WorkItem, ctx: ItemContext) -> ItemOutcome:
    if item.action == "support":  # the support models InvokeAI 2.3.5 needs for checkpoints (install/support.py)
        from invokeai_model_install.install.support import install_support_item

        return install_support_item(item, ctx)
    return run_item(item, ctx)


def _migrate(layout: RootLayout, on_event: EventSink) -> None:
    """A root written by an earlier version of this package: moved to the InvokeAI 2.3.5 layout first."""
    if layout.flavour != "invokeai" or not layout.has_registry:
        return
    from invokeai_model_install.install.migrate import migrate_root

    migrate_root(layout, note=lambda line: on_event(ItemNote(message=line)))


def run_plan(
    plan: InstallPlan,
    layout: RootLayout,
    *,
    settings: DownloadSettings | None = None,
    catalog_path: Path | None = None,
    on_event: EventSink = discard,
    ask: Optional[Callable[[QuestionAsked], Optional[str]]] = None,
    cancel: Any = None,
) -> InstallResult:
    """Run every item of ``plan`` in order; one item's failure never stops the others.

    :param ask: answers questions (``QuestionAsked`` -> one of its ``choices``, or
        None when nobody can answer: the item then fails with a hint naming the flag).
    :param cancel: an Event; when set, the current item stops at its next check
        (partial downloads are kept) and the remaining items are not started.
    """
    outcomes: list[ItemOutcome] = []
    fetched = 0
    cancelled = False
    try:
        try:
            _migrate(layout, on_event)
            _apply_autoscan(plan, layout, on_event)
            items = build_items(plan, layout, catalog_path)
        except OSError as exc:  # e.g. a read-only invokeai.init
            raise from_os_error(exc) from None
    except InstallerError as err:  # e.g. a broken catalogue or invokeai.init: the plan cannot start
        on_event(PlanStarted(items=("plan",), labels=("plan",), total_bytes=-1))
        on_event(ItemFailed(item="plan", message=err.message, hint=err.hint, error=type(err).__name__))
        on_event(PlanFinished(failed=1))
        return InstallResult((ItemOutcome("plan", "plan", "failed", message=err.message, hint=err.hint, error=type(err).__name__),))
    total = _known_total(items)
    on_event(PlanStarted(items=tuple(i.id for i in items), labels=tuple(i.label for i in items), total_bytes=total))
    for item in items:
        if cancel is not None and cancel.is_set():
            cancelled = True
            outcomes.append(ItemOutcome(item.id, item.label, "failed", message="cancelled before it started", error="Cancelled",
                                        hint=Cancelled.default_hint))
            continue

        def emit(event: Event, _id: str = item.id) -> None:
            on_event(_redacted(dataclasses.replace(event, item=_id)))

        emit(ItemStarted(label=item.label))
        ctx = ItemContext(layout=layout, plan=plan, settings=settings, emit=emit, ask=ask, cancel=cancel)
        try:
            outcome = _run_one(item, ctx)
            if outcome.status == "skipped":
                emit(ItemSkipped(reason=outcome.message))
        except (SkippedByUser, NotInstalled) as err:
            outcome = ItemOutcome(item.id, item.label, "skipped", name=item.line, message=err.message)
            emit(ItemSkipped(reason=err.message))
        except Cancelled as err:
            cancelled = True
            outcome = ItemOutcome(item.id, item.label, "failed", message=err.message, hint=err.hint, error="Cancelled")
            emit(ItemFailed(message=err.message, hint=err.hint, error="Cancelled"))
        except (InstallerError, OSError) as exc:
            err = exc if isinstance(exc, InstallerError) else from_os_error(exc)  # read-only root, full disk, ...
            outcome = ItemOutcome(item.id, item.label, "failed", message=err.message, hint=err.hint, error=type(err).__name__)
            emit(ItemFailed(message=err.message, hint=err.hint, error=type(err).__name__))
        except Exception as exc:  # a bug in a lower layer must not take the other items down
            import logging

            logging.getLogger(__name__).error("item %s failed unexpectedly:\n%s", item.label, traceback.format_exc())
            message = f"unexpected {type(exc).__name__}: {exc}"
            hint = "this is a bug in the installer; please report it with this message"
            outcome = ItemOutcome(item.id, item.label, "failed", message=message, hint=hint, error=type(exc).__name__)
            emit(ItemFailed(message=message, hint=hint, error=type(exc).__name__))
        fetched += ctx.fetched
        outcomes.append(_redacted(dataclasses.replace(outcome, fetched_bytes=ctx.fetched)))
    result = InstallResult(tuple(outcomes), fetched, cancelled)
    on_event(
        PlanFinished(
            succeeded=result.count("installed") + result.count("removed"),
            skipped=result.count("skipped"),
            failed=result.count("failed"),
            cancelled=cancelled,
        )
    )
    return result


def _known_total(items: list[WorkItem]) -> int:
    """Bytes to fetch when every item is a starter with a catalogue size, else -1 (unknown)."""
    total = 0
    for item in items:
        if item.action == "locked":
            total += item.source.total_size
        if item.action == "support":
            total += item.source.size
            continue
        if item.action != "install":
            continue
        if item.starter is None or not item.starter.size:
            return -1
        total += item.starter.size
    return total
