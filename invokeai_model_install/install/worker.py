"""Run an :class:`InstallPlan`: item by item, reporting events, asking questions, cancellable.

Three ways in:

* :func:`run_plan` — the synchronous core: ``on_event`` gets every event,
  ``ask`` answers questions (None: nobody can; the item is skipped with an
  error naming the flag), ``cancel`` is an Event checked between steps.
* :func:`start_install` — the same in the background, for front ends: a
  **process** (``multiprocessing`` "spawn": torch's memory goes away with it,
  and it can be stopped even inside a C call) or a thread (tests).  Events and
  answers travel over queues; :class:`InstallHandle` is non-blocking.
* :func:`resolve_plan` — metadata only (no writes): what each item is, where it
  goes and how many bytes it needs, for ``--dry-run`` and the form's size line.

Items run independently: an error in one becomes an ``ItemFailed`` event and
the next item starts.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from invokeai_model_install.root import manifest as mf
from invokeai_model_install.errors import Cancelled, InstallerError, SourceError, UnknownModelError, from_os_error
from invokeai_model_install.events import (
    Event,
    EventSink,
    ItemFailed,
    ItemNote,
    ItemRegistered,
    ItemRemoved,
    ItemSkipped,
    ItemStarted,
    PlanFinished,
    PlanStarted,
    QuestionAsked,
    discard,
)
from invokeai_model_install.install.identity import local_path, source_key, staging_dir
from invokeai_model_install.install.item import ItemContext, ItemOutcome, WorkItem
from invokeai_model_install.install.pipeline import resolve_remote, run_item, spec_for
from invokeai_model_install.install.questions import SkippedByUser
from invokeai_model_install.install.removal import NotInstalled
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan

__all__ = [
    "InstallHandle",
    "InstallResult",
    "ItemOutcome",
    "PlannedItem",
    "build_items",
    "resolve_plan",
    "run_plan",
    "start_install",
]


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


@dataclass(frozen=True)
class PlannedItem:
    """One line of a dry run: what an item is, where it goes and how many bytes it needs.

    ``bytes_to_fetch`` is -1 when unknown; ``status`` is ``""`` (will run),
    ``already installed``, ``error`` (``message``/``hint`` say why) or ``remove``.
    """

    item: str
    label: str
    action: str
    what: str = ""
    destination: str = ""
    bytes_to_fetch: int = 0
    total_bytes: int = 0
    status: str = ""
    message: str = ""
    hint: str = ""


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
    seen: set[str] = set()
    for line in plan.imports:
        for entry in _parse_line(line):
            if isinstance(entry, InstallerError):
                items.append(WorkItem(id=next_id(), label=line, action="invalid", line=line, error=entry))
                continue
            key = source_key(entry)
            if key in seen:
                continue
            seen.add(key)
            items.append(WorkItem(id=next_id(), label=getattr(entry, "label", line) or line, line=line, source=entry))
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


def _parse_line(line: str) -> list[Any]:
    """Sources of one import line (a folder expands to its model files), or errors."""
    from invokeai_model_install.net import sources

    srcs, errors = sources.parse_import_text(line)
    out: list[Any] = []
    if errors:
        # one line, one report: "foo bar baz" is a typo'd line, not three failures
        first = errors[0]
        out.append(first if len(errors) == 1 else type(first)("; ".join(e.message for e in errors), first.hint))
    for src in srcs:
        if type(src).__name__ == "LocalFolderSource":
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


def run_plan(
    plan: InstallPlan,
    layout: RootLayout,
    *,
    settings: Any = None,
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
            on_event(dataclasses.replace(event, item=_id))

        emit(ItemStarted(label=item.label))
        ctx = ItemContext(layout=layout, plan=plan, settings=settings, emit=emit, ask=ask, cancel=cancel)
        try:
            outcome = run_item(item, ctx)
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
        outcomes.append(dataclasses.replace(outcome, fetched_bytes=ctx.fetched))
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
        if item.action != "install":
            continue
        if item.starter is None or not item.starter.size:
            return -1
        total += item.starter.size
    return total


# --- dry run ------------------------------------------------------------------------------------


def resolve_plan(plan: InstallPlan, layout: RootLayout, settings: Any = None, catalog_path: Path | None = None) -> list[PlannedItem]:
    """What running ``plan`` would do, item by item, reading metadata only (no writes)."""
    out: list[PlannedItem] = []
    stanzas = _load_stanzas(layout)
    for item in build_items(plan, layout, catalog_path):
        if item.action == "invalid":
            err = item.error
            out.append(PlannedItem(item.id, item.label, "invalid", status="error", message=err.message if err else "", hint=err.hint if err else ""))
            continue
        if item.action == "convert-installed":
            stanza = stanzas.get(item.line)
            where = str(stanza.get("weights") or "") if stanza else ""
            out.append(PlannedItem(item.id, item.label, "convert", what="convert to diffusers in place of its stanza"
                                   + (", deleting the original" if plan.delete_original else ""), destination=where,
                                   status="" if stanza else "not installed"))
            continue
        if item.action == "remove":
            stanza = stanzas.get(item.line)
            where = str(stanza.get("path") or stanza.get("weights") or "") if stanza else ""
            out.append(PlannedItem(item.id, item.label, "remove", what="remove from models.yaml" + (" and delete its files" if plan.purge else ""),
                                   destination=where, status="remove" if stanza else "not installed"))
            continue
        try:
            out.append(_plan_install(item, plan, layout, settings))
        except InstallerError as err:
            out.append(PlannedItem(item.id, item.label, "install", status="error", message=err.message, hint=err.hint, bytes_to_fetch=-1))
    return out


def _load_stanzas(layout: RootLayout) -> dict[str, dict]:
    from invokeai_model_install.root.registry import Registry

    try:
        return Registry(layout.models_yaml).load()
    except InstallerError:
        return {}


def _plan_install(item: WorkItem, plan: InstallPlan, layout: RootLayout, settings: Any) -> PlannedItem:
    spec = spec_for(item, plan)
    for key in ([spec.key + "#diffusers", spec.key] if plan.convert else [spec.key]):
        for m in mf.find_by_key(layout, key):
            if not mf.verify_manifest(layout, m):
                return PlannedItem(item.id, item.label, "install", what=f"{m.kind} ({m.format})", destination=m.path,
                                   bytes_to_fetch=0, total_bytes=m.total_size, status="already installed")
    if spec.starter is not None:
        from invokeai_model_install.install.register import registered_elsewhere

        older = registered_elsewhere(spec.starter, ItemContext(layout=layout, plan=plan, settings=settings, emit=discard))
        if older is not None:
            return PlannedItem(item.id, item.label, "install", what=older.message, destination=layout.relative(older.path),
                               bytes_to_fetch=0, status="already installed")
    local = local_path(spec.source)
    if local is not None:
        size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) if local.is_dir() else local.stat().st_size
        if plan.convert and local.is_file():
            what, dest = "local checkpoint, converted to diffusers", layout.relative(layout.kind_dir("main-diffusers") / spec.base_name)
        else:
            what, dest = "local " + ("diffusers folder" if local.is_dir() else "file") + ", registered where it is", str(local)
        return PlannedItem(item.id, item.label, "install", what=what, destination=dest, bytes_to_fetch=0, total_bytes=size)
    resolved = resolve_remote(spec, settings, plan.precision)
    total = sum(int(f.size or 0) for f in resolved.files)
    staged = staging_dir(layout, spec.key)
    have = 0
    for f in resolved.files:
        p = staged / f.relpath
        if p.is_file() and p.stat().st_size == f.size:
            have += f.size
    fetch = total - have
    what_parts = []
    if getattr(resolved, "kind_hint", None) == "main-diffusers":
        what_parts.append("diffusers pipeline")
        dest = layout.kind_dir("main-diffusers") / spec.base_name
    elif len(resolved.files) == 1:
        what_parts.append("single file " + Path(resolved.files[0].relpath).name)
        if plan.convert:
            what_parts.append("converted to diffusers")
            dest = layout.kind_dir("main-diffusers") / spec.base_name
        else:
            dest = layout.models_dir / "<kind>" / Path(resolved.files[0].relpath).name
    else:
        what_parts.append(f"{len(resolved.files)} files")
        dest = layout.models_dir / "<kind>" / spec.base_name
    if spec.starter is not None:
        what_parts.insert(0, f"starter {spec.starter.repo_id}")
        if spec.starter.vae is not None and spec.starter.vae.repo_id:
            from invokeai_model_install.net import sources

            vae_spec = dataclasses.replace(spec, starter=None, source=sources.HubSource(repo_id=spec.starter.vae.repo_id, subfolder=spec.starter.vae.subfolder))
            if not any(not mf.verify_manifest(layout, m) for m in mf.find_by_key(layout, source_key(vae_spec.source))):
                vres = resolve_remote(vae_spec, settings, plan.precision)
                vsize = sum(int(f.size or 0) for f in vres.files)
                total += vsize
                fetch += vsize
            what_parts.append(f"with VAE {spec.starter.vae.repo_id}")
    return PlannedItem(item.id, item.label, "install", what=", ".join(what_parts), destination=layout.relative(dest),
                       bytes_to_fetch=fetch, total_bytes=total)


def free_space(layout: RootLayout) -> int:
    """Free bytes on the disk that holds the root (its nearest existing parent)."""
    p = layout.models_dir
    while not p.exists() and p.parent != p:
        p = p.parent
    return shutil.disk_usage(p).free


# --- background execution --------------------------------------------------------------------------


def _serve(plan, layout, settings, catalog_path, events_q, answers_q, cancel_ev) -> None:
    """Body of the worker (process or thread): run the plan, send events, then the result."""

    def on_event(event: Event) -> None:
        events_q.put(("event", event))

    def ask(question: QuestionAsked) -> Optional[str]:
        # the question itself went out through on_event; wait for its answer or a cancel
        while True:
            if cancel_ev.is_set():
                raise Cancelled("cancelled while waiting for an answer")
            try:
                qid, choice = answers_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if qid == question.qid:
                return choice

    try:
        result = run_plan(plan, layout, settings=settings, catalog_path=catalog_path, on_event=on_event, ask=ask, cancel=cancel_ev)
        events_q.put(("result", result))
    except BaseException as exc:  # report, never hang the front end
        events_q.put(("crash", f"{type(exc).__name__}: {exc}"))


def _process_main(plan, layout, settings, catalog_path, events_q, answers_q, cancel_ev) -> None:
    # The front end owns the terminal (curses, rich, or one error line per failure on stderr):
    # whatever libraries print here (tqdm bars, warnings) goes to a log file instead.
    import signal

    # Ctrl-C reaches the whole foreground process group: the front end turns it into
    # cancel() (partials kept, item boundaries respected); the worker must not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        layout.partial_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(layout.partial_dir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        pass
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _serve(plan, layout, settings, catalog_path, events_q, answers_q, cancel_ev)


class InstallHandle:
    """A plan running in the background.  Every method is non-blocking unless it says otherwise."""

    def __init__(self, mode: str, runner: Any, events_q: Any, answers_q: Any, cancel_ev: Any) -> None:
        self.mode = mode
        self._runner = runner
        self._events = events_q
        self._answers = answers_q
        self._cancel = cancel_ev
        self._buffer: list[Event] = []
        self._result: InstallResult | None = None
        self._finished_sent = False
        # what we saw, to describe an abnormal end (a killed process sends no result)
        self._labels: dict[str, str] = {}
        self._status: dict[str, ItemOutcome] = {}

    @property
    def pid(self) -> int | None:
        """The worker process id (process mode), for tests and for stopping it hard."""
        return getattr(self._runner, "pid", None)

    def _alive(self) -> bool:
        return self._runner.is_alive()

    def _pump(self, timeout: float) -> bool:
        """Move one message from the queue into the buffer; False when none came."""
        try:
            if timeout > 0:
                kind, payload = self._events.get(timeout=timeout)
            else:
                kind, payload = self._events.get_nowait()
        except (queue.Empty, EOFError, OSError):
            return False
        if kind == "event":
            self._track(payload)
            self._buffer.append(payload)
        elif kind == "result":
            self._result = payload
        else:  # crash
            self._result = self._abnormal(str(payload))
            self._emit_finished()
        return True

    def _track(self, event: Event) -> None:
        if isinstance(event, PlanStarted):
            self._labels = dict(zip(event.items, event.labels))
        elif isinstance(event, ItemRegistered):
            self._status[event.item] = ItemOutcome(event.item, self._labels.get(event.item, ""), "installed", name=event.name, path=event.path)
        elif isinstance(event, ItemRemoved):
            self._status[event.item] = ItemOutcome(event.item, self._labels.get(event.item, ""), "removed", name=event.name)
        elif isinstance(event, ItemSkipped):
            self._status[event.item] = ItemOutcome(event.item, self._labels.get(event.item, ""), "skipped", message=event.reason)
        elif isinstance(event, ItemFailed):
            self._status[event.item] = ItemOutcome(event.item, self._labels.get(event.item, ""), "failed", message=event.message,
                                                   hint=event.hint, error=event.error)
        elif isinstance(event, PlanFinished):
            self._finished_sent = True

    def _abnormal(self, why: str) -> InstallResult:
        outcomes = []
        for item, label in self._labels.items():
            done = self._status.get(item)
            if done is None:
                done = ItemOutcome(item, label, "failed", message=f"not finished: {why}", hint="run the installer again to resume", error="WorkerDied")
            outcomes.append(done)
        return InstallResult(tuple(outcomes), 0, self._cancel.is_set(), error=why)

    def _emit_finished(self) -> None:
        if not self._finished_sent and self._result is not None:
            r = self._result
            self._buffer.append(PlanFinished(succeeded=r.count("installed") + r.count("removed"), skipped=r.count("skipped"),
                                             failed=r.count("failed"), cancelled=r.cancelled))
            self._finished_sent = True

    def _check_dead(self) -> None:
        if self._result is None and not self._alive():
            while self._pump(0):  # what it sent before it stopped
                pass
            if self._result is None:
                code = getattr(self._runner, "exitcode", None)
                self._result = self._abnormal(f"the worker stopped unexpectedly (exit code {code})")
                self._emit_finished()

    def poll(self, timeout: float = 0.0) -> Event | None:
        """The next event, or None when none is waiting (waits up to ``timeout`` seconds)."""
        if not self._buffer:
            self._pump(timeout)
            if not self._buffer:
                self._check_dead()
        return self._buffer.pop(0) if self._buffer else None

    def answer(self, qid: str, choice: str) -> None:
        """Answer the question ``qid`` with one of its ``choices``."""
        self._answers.put((qid, choice))

    def cancel(self) -> None:
        """Ask the worker to stop at its next check; partial downloads are kept."""
        self._cancel.set()

    def terminate(self) -> None:
        """Stop a worker process at once (process mode only); models.yaml stays valid."""
        if self.mode == "process" and self._alive():
            self._runner.terminate()

    @property
    def done(self) -> bool:
        """True once the worker has stopped (events may still be waiting in :meth:`poll`)."""
        return self._result is not None or not self._alive()

    def join(self, timeout: float | None = None) -> InstallResult:
        """Wait for the end and return the result; events seen meanwhile stay available to :meth:`poll`.

        Raises :class:`TimeoutError` when ``timeout`` passes first.
        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self._result is None:
            if not self._pump(0.05):
                self._check_dead()
            if deadline is not None and time.monotonic() >= deadline and self._result is None:
                raise TimeoutError("the install is still running")
        if self.mode == "process":
            self._runner.join(timeout=5)
        else:
            self._runner.join()
        return self._result


def start_install(
    plan: InstallPlan,
    layout: RootLayout,
    *,
    settings: Any = None,
    catalog_path: Path | None = None,
    mode: str = "process",
) -> InstallHandle:
    """Start running ``plan`` in the background and return its handle.

    ``mode="process"`` (default) runs in a spawned process (memory is freed when
    it ends; :meth:`InstallHandle.terminate` can stop it); ``"thread"`` runs in a
    daemon thread of this process (cheap; for tests and small plans).
    """
    if mode == "process":
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        events_q, answers_q, cancel_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
        proc = ctx.Process(
            target=_process_main,
            args=(plan, layout, settings, catalog_path, events_q, answers_q, cancel_ev),
            name="invokeai-model-install-worker",
            daemon=True,
        )
        proc.start()
        return InstallHandle("process", proc, events_q, answers_q, cancel_ev)
    if mode == "thread":
        events_q, answers_q, cancel_ev = queue.Queue(), queue.Queue(), threading.Event()
        thread = threading.Thread(
            target=_serve,
            args=(plan, layout, settings, catalog_path, events_q, answers_q, cancel_ev),
            name="invokeai-model-install-worker",
            daemon=True,
        )
        thread.start()
        return InstallHandle("thread", thread, events_q, answers_q, cancel_ev)
    raise ValueError(f"mode must be 'process' or 'thread', not {mode!r}")
