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

import os
import queue
import threading
from pathlib import Path
from typing import Any, Optional

from invokeai_model_install.errors import Cancelled
from invokeai_model_install.events import (
    Event,
    ItemFailed,
    ItemRegistered,
    ItemRemoved,
    ItemSkipped,
    PlanFinished,
    PlanStarted,
    QuestionAsked,
)
from invokeai_model_install.install.item import ItemOutcome
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.install.run import InstallResult, run_plan
from invokeai_model_install.net.settings import DownloadSettings


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
        # never through a symlink someone planted in a shared root (such a link is removed, not followed)
        from invokeai_model_install.net.partial import open_nofollow

        fd = open_nofollow(layout.partial_dir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
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
    settings: DownloadSettings | None = None,
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
