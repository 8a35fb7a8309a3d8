"""Show worker events on a terminal: rich progress bars, or plain lines when not a terminal.

Rendering is apart from the work (as in rich's own ``progress.py``): a renderer
is just an ``on_event`` callable.  :func:`make_renderer` picks rich progress
(per-file bars and an overall bar, speed and ETA) on a terminal, else
:class:`PlainRenderer` (one line per step, no progress spam: log files stay
readable).  Failures are printed by the caller as one line each on stderr; the
renderers only mark them in the flow.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from invokeai_model_install.events import (
    Event,
    FileFinished,
    FileProgress,
    FileStarted,
    ItemConverted,
    ItemFailed,
    ItemNote,
    ItemRegistered,
    ItemRemoved,
    ItemSkipped,
    ItemStarted,
    ItemVerified,
    PlanFinished,
    PlanStarted,
    QuestionAsked,
    Retrying,
    StageChanged,
)
from invokeai_model_install.units import human_bytes




class _Base:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.order: dict[str, int] = {}
        self.count = 0

    def label(self, item: str) -> str:
        return self.labels.get(item, item)

    def _on_plan(self, event: PlanStarted) -> None:
        self.labels = dict(zip(event.items, event.labels))
        self.order = {item: i + 1 for i, item in enumerate(event.items)}
        self.count = len(event.items)

    def start(self) -> None:
        """Begin drawing (rich: start the live display)."""

    def stop(self) -> None:
        """Stop drawing; safe to call twice."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def line_for(self, event: Event) -> str | None:
        """The plain-text line for an event, or None when it does not deserve one."""
        lab = self.label(event.item)
        if isinstance(event, PlanStarted):
            total = f", {human_bytes(event.total_bytes)} to fetch" if event.total_bytes > 0 else ""
            return f"Installing {len(event.items)} item(s){total}"
        if isinstance(event, ItemStarted):
            return f"[{self.order.get(event.item, '?')}/{self.count}] {event.label or lab}"
        if isinstance(event, StageChanged):
            if event.stage in ("download", "convert", "remove", "vae", "wait"):
                return f"  {lab}: {event.stage}" + (f" {event.detail}" if event.detail else "")
            return None
        if isinstance(event, FileStarted):
            if not event.resumed_from:
                return None  # the "done" line says it all; a resume is worth a line of its own
            return f"  {lab}: fetching {event.name} ({human_bytes(event.total)}, resuming at {human_bytes(event.resumed_from)})"
        if isinstance(event, FileFinished):
            return f"  {lab}: {event.name} done ({human_bytes(event.size)}, {human_bytes(event.fetched)} fetched)"
        if isinstance(event, Retrying):
            return f"  {lab}: retrying {event.name} in {event.delay:.0f} s ({event.reason})"
        if isinstance(event, ItemVerified):
            return f"  {lab}: verified {event.files} file(s), {human_bytes(event.bytes)}"
        if isinstance(event, ItemConverted):
            return f"  {lab}: converted to diffusers in {event.seconds:.1f} s -> {event.path}"
        if isinstance(event, ItemRegistered):
            return f"  {lab}: installed as {event.name} ({event.path})"
        if isinstance(event, ItemRemoved):
            extra = f", deleted {len(event.purged)} path(s)" if event.purged else ""
            return f"  {lab}: removed {event.name} from models.yaml{extra}"
        if isinstance(event, ItemSkipped):
            return f"  {lab}: skipped ({event.reason})"
        if isinstance(event, ItemFailed):
            return f"  {lab}: FAILED ({event.error or 'error'}; see the summary)"
        if isinstance(event, ItemNote):
            return f"  {lab + ': ' if event.item else ''}note: {event.message}"
        if isinstance(event, QuestionAsked):
            return f"  {lab}: question: {event.prompt}"
        if isinstance(event, PlanFinished):
            state = " (cancelled)" if event.cancelled else ""
            return f"Finished{state}: {event.succeeded} done, {event.skipped} skipped, {event.failed} failed"
        return None


class PlainRenderer(_Base):
    """One line per step on ``stream`` (stdout by default); progress ticks are not printed."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, event: Event) -> None:
        if isinstance(event, PlanStarted):
            self._on_plan(event)
        if isinstance(event, FileProgress):
            return
        line = self.line_for(event)
        if line is not None:
            print(line, file=self.stream, flush=True)


class RichRenderer(_Base):
    """rich progress: an overall bar plus one bar per file being fetched, with speed and ETA."""

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            expand=True,
        )
        self.overall = None
        self.files: dict[tuple[str, str], Any] = {}
        self.file_done: dict[tuple[str, str], int] = {}
        self.known_total = -1
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.progress.start()
            self.started = True

    def stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def _overall_advance(self, n: int) -> None:
        if self.overall is not None and n > 0:
            self.progress.advance(self.overall, n)

    def __call__(self, event: Event) -> None:
        p = self.progress
        if isinstance(event, PlanStarted):
            self._on_plan(event)
            self.known_total = event.total_bytes
            self.overall = p.add_task("[bold]overall", total=event.total_bytes if event.total_bytes > 0 else None)
        key = (event.item, getattr(event, "name", ""))
        if isinstance(event, FileStarted):
            task = p.add_task(f"  {event.name}", total=event.total if event.total > 0 else None, completed=event.resumed_from)
            self.files[key] = task
            self.file_done[key] = event.resumed_from
            if self.known_total <= 0 and self.overall is not None and event.total > 0:
                current = p.tasks[self.overall].total or 0  # unknown plan size: grow it file by file
                p.update(self.overall, total=current + event.total)
            self._overall_advance(event.resumed_from)
            return
        if isinstance(event, FileProgress):
            task = self.files.get(key)
            if task is not None:
                self._overall_advance(event.done - self.file_done.get(key, 0))
                self.file_done[key] = event.done
                p.update(task, completed=event.done, total=event.total if event.total > 0 else None)
            return
        if isinstance(event, FileFinished):
            task = self.files.pop(key, None)
            if task is not None:
                self._overall_advance(event.size - self.file_done.pop(key, 0))
                p.remove_task(task)
        line = self.line_for(event)
        if line is not None and not isinstance(event, (FileStarted, FileFinished)):
            p.console.print(line, highlight=False, markup=False)


def make_renderer(stream: IO[str] | None = None, *, plain: bool | None = None) -> _Base:
    """Rich progress when ``stream`` is a terminal (and ``plain`` is not forced), else plain lines."""
    stream = stream if stream is not None else sys.stdout
    if plain is None:
        try:
            plain = not stream.isatty()
        except (AttributeError, ValueError):
            plain = True
    if plain:
        return PlainRenderer(stream)
    from rich.console import Console

    return RichRenderer(Console(file=stream))
