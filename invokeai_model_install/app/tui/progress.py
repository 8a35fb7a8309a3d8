"""What the progress screen shows, computed from worker events (no curses here).

:class:`ProgressState` folds the events of :mod:`invokeai_model_install.events`
into three things the screen draws: one status line per plan item, a bar for
the file(s) being transferred (with speed and ETA), and a log of finished and
failed items with their hints.  The npyscreen screen (``progress_form.py``)
only copies these strings into widgets, so all of it is unit-testable.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from typing import Callable

from invokeai_model_install import events as ev
from invokeai_model_install.app.tui.model import cut, human_size

#: Marks in front of an item's status line (ASCII: they draw on any terminal).
MARKS = {"waiting": " ", "running": ">", "done": "+", "skipped": "=", "failed": "!", "removed": "-", "cancelled": "x"}


@dataclass
class ItemRow:
    """One plan item as the screen shows it."""

    label: str
    state: str = "waiting"  # waiting|running|done|skipped|failed|removed|cancelled
    stage: str = ""
    detail: str = ""


@dataclass
class FileRow:
    """A file being transferred."""

    name: str
    done: int = 0
    total: int = -1
    speed: float = 0.0


def _without_prefix(message: str, label: str) -> str:
    """``message`` without a leading ``"label: "`` (core messages already name their input)."""
    if label and message.startswith(label + ":"):
        return message[len(label) + 1 :].lstrip()
    return message


def format_eta(seconds: float | None) -> str:
    """``h:mm:ss`` or ``m:ss``; "--:--" when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds or seconds > 99 * 3600:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def bar(fraction: float, width: int) -> str:
    """``[=====>    ]`` of ``width`` characters for ``fraction`` in 0..1."""
    inner = max(1, width - 2)
    fraction = min(1.0, max(0.0, fraction))
    filled = int(inner * fraction)
    body = "=" * filled + (">" if filled < inner else "") + " " * max(0, inner - filled - 1)
    return f"[{body[:inner]}]"


@dataclass
class ProgressState:
    """Everything the progress screen displays, updated by :meth:`apply`."""

    clock: Callable[[], float] = time.monotonic
    items: dict[str, ItemRow] = field(default_factory=dict)
    files: dict[tuple[str, str], FileRow] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    total_bytes: int = -1
    fetched_bytes: int = 0
    finished: ev.PlanFinished | None = None
    cancelling: bool = False
    started_at: float = 0.0
    #: bytes received in this run for files that did not finish (a cancel, a failure)
    partial_fetched: int = 0
    #: bytes on disk of the downloads of cancelled items, kept under models/.partial for the next run
    kept_bytes: int = 0
    #: bytes of the files each item finished (kept for resume too when the item is cancelled)
    _finished_bytes: dict[str, int] = field(default_factory=dict)
    #: where each file started (bytes already there from an earlier run)
    _resumed: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    # --- events -------------------------------------------------------------------

    def _row(self, item: str, label: str = "") -> ItemRow:
        row = self.items.get(item)
        if row is None:
            row = self.items[item] = ItemRow(label or item or "(plan)")
        elif label:
            row.label = label
        return row

    def _label(self, item: str) -> str:
        """The label of ``item`` without creating a row ("" for plan-level events)."""
        row = self.items.get(item)
        return row.label if row is not None else item

    def apply(self, event: ev.Event) -> None:
        """Fold one event into the state (unknown event types are ignored)."""
        item = event.item
        if isinstance(event, ev.PlanStarted):
            labels = list(event.labels) + [""] * max(0, len(event.items) - len(event.labels))
            for item_id, label in zip(event.items, labels):
                self._row(item_id, label)
            self.total_bytes = event.total_bytes
        elif isinstance(event, ev.ItemStarted):
            row = self._row(item, event.label)
            row.state = "running"
        elif isinstance(event, ev.StageChanged):
            row = self._row(item)
            if row.state == "waiting":
                row.state = "running"
            row.stage, row.detail = event.stage, event.detail
        elif isinstance(event, ev.FileStarted):
            self.files[(item, event.name)] = FileRow(event.name, event.resumed_from, event.total)
            self._resumed[(item, event.name)] = event.resumed_from
        elif isinstance(event, ev.FileProgress):
            f = self.files.setdefault((item, event.name), FileRow(event.name))
            f.done, f.speed = event.done, event.speed
            if event.total >= 0:
                f.total = event.total
        elif isinstance(event, ev.FileFinished):
            self.files.pop((item, event.name), None)
            self._resumed.pop((item, event.name), None)
            self.fetched_bytes += max(0, event.fetched)
            self._finished_bytes[item] = self._finished_bytes.get(item, 0) + max(0, event.size)
        elif isinstance(event, ev.ItemVerified):
            self._row(item).detail = f"verified {event.files} file{'s' if event.files != 1 else ''}, {human_size(event.bytes)}"
        elif isinstance(event, ev.ItemConverted):
            self._row(item).detail = f"converted in {event.seconds:.0f} s"
        elif isinstance(event, ev.ItemRegistered):
            row = self._row(item)
            row.state, row.stage, row.detail = "done", f"installed as {event.name}", ""
            self.log.append(f"+ {row.label}: installed as {event.name}" + (f" ({event.path})" if event.path else ""))
            self._drop_files(item)
        elif isinstance(event, ev.ItemRemoved):
            row = self._row(item, event.name)
            row.state, row.stage = "removed", "removed"
            row.detail = f"files deleted: {len(event.purged)}" if event.purged else "files kept on disk"
            self.log.append(f"- {event.name or row.label}: removed from models.yaml" + (f", {len(event.purged)} path(s) deleted" if event.purged else ""))
        elif isinstance(event, ev.ItemSkipped):
            row = self._row(item)
            row.state, row.stage, row.detail = "skipped", "skipped", event.reason
            self.log.append(f"= {row.label}: skipped ({event.reason})" if event.reason else f"= {row.label}: skipped")
            self._drop_files(item)
        elif isinstance(event, ev.ItemFailed) and event.error == "Cancelled":
            row = self._row(item)
            kept = self._finished_bytes.get(item, 0) + sum(f.done for k, f in self.files.items() if k[0] == item)
            self.kept_bytes += kept
            row.state, row.stage = "cancelled", "cancelled"
            row.detail = f"kept {human_size(kept)} for resume" if kept else "nothing downloaded yet"
            self.log.append(f"x {row.label}: cancelled" + (f", {human_size(kept)} kept for resume" if kept else ""))
            self._drop_files(item)
        elif isinstance(event, ev.ItemFailed):
            row = self._row(item)
            message = _without_prefix(event.message, row.label)
            row.state, row.stage, row.detail = "failed", "failed", message
            self.log.append(f"! {row.label}: {message}")
            if event.hint:
                self.log.append(f"    hint: {event.hint}")
            self._drop_files(item)
        elif isinstance(event, ev.ItemNote):
            label = self._label(item)
            self.log.append(f"  {label}: {_without_prefix(event.message, label)}" if label else f"  {event.message}")
        elif isinstance(event, ev.Retrying):
            self.log.append(f"  {event.name or self._label(item)}: retrying in {event.delay:.0f} s ({event.reason})")
        elif isinstance(event, ev.PlanFinished):
            self.finished = event
            for key in list(self.files):
                self._drop_files(key[0])
            for row in self.items.values():
                if row.state in ("waiting", "running"):
                    row.state = "cancelled" if event.cancelled else row.state
                    if event.cancelled:
                        row.detail = "cancelled (partial download kept)"

    def _drop_files(self, item: str) -> None:
        for key in [k for k in self.files if k[0] == item]:
            f = self.files.pop(key)
            self.partial_fetched += max(0, f.done - self._resumed.pop(key, 0))

    def log_lines(self, width: int) -> list[str]:
        """The log wrapped to ``width`` columns (long errors and hints are read in full, never cut)."""
        out: list[str] = []
        for entry in self.log:
            indent = " " * (len(entry) - len(entry.lstrip()) + 2)
            out += textwrap.wrap(entry, max(20, width), subsequent_indent=indent, break_on_hyphens=False) or [""]
        return out

    # --- rendering -------------------------------------------------------------------

    def status_lines(self, width: int) -> list[str]:
        """One line per item: mark, label, stage and detail."""
        label_w = min(40, max((len(r.label) for r in self.items.values()), default=10))
        out = []
        for row in self.items.values():
            stage = row.stage or row.state
            text = f"{MARKS.get(row.state, ' ')} {cut(row.label, label_w).ljust(label_w)}  {stage}"
            if row.detail:
                text += f": {row.detail}"
            out.append(cut(text, width))
        return out

    def status_view(self, width: int, height: int) -> tuple[list[str], int]:
        """The status lines for a box ``height`` rows high, and the first row to show.

        More items than rows (a folder of models is one line of the form but one row per model here):
        while running, the running row stays in view; otherwise the first row says how many are not
        shown and the failures come first, then the newest rows.
        """
        lines = self.status_lines(width)
        if len(lines) <= height:
            return lines, 0
        states = [row.state for row in self.items.values()]
        if "running" in states:
            running = states.index("running")
            return lines, max(0, min(running, len(lines) - height))
        room = max(1, height - 1)
        order = [i for i, st in enumerate(states) if st == "failed"] + [i for i, st in enumerate(states) if st != "failed"][::-1]
        shown = sorted(order[:room])
        return [cut(f"  ({len(lines) - len(shown)} more, every one in the log below)", width)] + [lines[i] for i in shown], 0

    def bar_line(self, width: int) -> str:
        """The current transfer(s): bar, percent, bytes, speed, ETA and file name(s)."""
        if not self.files:
            if self.finished is not None:
                got = self.fetched_bytes + self.partial_fetched
                fetched = human_size(got) if got else "0 B"
                text = f"Downloaded {fetched} in {format_eta(self.clock() - self.started_at)}"
                if self.kept_bytes:
                    text += f"; kept {human_size(self.kept_bytes)} for resume"
                return cut(text, width)
            return cut("Waiting for the next file...", width)
        files = list(self.files.values())
        done = sum(f.done for f in files)
        known = all(f.total > 0 for f in files)
        total = sum(f.total for f in files) if known else -1
        speed = sum(f.speed for f in files)
        eta = (total - done) / speed if known and speed > 0 else None
        name = files[0].name if len(files) == 1 else f"{len(files)} files"
        fraction = done / total if known and total > 0 else 0.0
        pct = f"{fraction * 100:3.0f}%" if known else "  ?%"
        tail = f" {pct} {human_size(done)}/{human_size(total) if known else '?'} {human_size(int(speed))}/s ETA {format_eta(eta)}  {name}"
        bar_w = max(10, min(40, width - len(tail)))
        return cut(bar(fraction, bar_w) + tail, width)

    def summary(self) -> str:
        """One line for the end: counts per outcome, or what is going on while running."""
        if self.finished is None:
            if self.cancelling:
                return "Cancelling... partial downloads are kept and resume on the next run."
            return "Installing. Press c to cancel (partial downloads are kept for resume)."
        f = self.finished
        text = f"Finished: {f.succeeded} done, {f.skipped} skipped, {f.failed} failed."
        if f.cancelled:
            n_cancelled = sum(1 for row in self.items.values() if row.state == "cancelled")
            failed = max(0, f.failed - n_cancelled)  # the worker counts a cancelled item as failed
            kept = f"kept {human_size(self.kept_bytes)} for resume" if self.kept_bytes else "partial downloads are kept for resume"
            text = f"Cancelled: {f.succeeded} done, {f.skipped} skipped, {failed} failed, {n_cancelled} cancelled; {kept}."
        return text

    @property
    def failed(self) -> bool:
        """True when the plan finished with failures."""
        return self.finished is not None and self.finished.failed > 0
