"""Small immutable events that the core reports to front ends.

The download engine, the converter and the worker never print: they call an
``on_event`` callback (or put into a queue) with one of these frozen
dataclasses.  Front ends (rich renderer, TUI, ``--json``) only read them.

Every event has ``item``: the id of the plan item it belongs to.  Low layers
that do not know the item (the download engine) leave it empty; the worker
fills it with :func:`dataclasses.replace` before forwarding.

All events are plain data (str/int/float/tuples), so they pickle across a
process boundary.  This module imports nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union


@dataclass(frozen=True)
class Event:
    """Base class: ``item`` is the plan item id ("" when not yet known)."""

    item: str = field(default="", kw_only=True)


# --- plan level ------------------------------------------------------------------


@dataclass(frozen=True)
class PlanStarted(Event):
    """The worker began a plan of ``items`` (ids, in order) with ``total_bytes`` to fetch (-1: unknown)."""

    items: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    total_bytes: int = -1


@dataclass(frozen=True)
class PlanFinished(Event):
    """The worker finished (or was cancelled); counts per outcome."""

    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    cancelled: bool = False


# --- item level ------------------------------------------------------------------


@dataclass(frozen=True)
class ItemStarted(Event):
    """Work on one item began; ``label`` is a human name (catalogue key, repo id, file name)."""

    label: str = ""


@dataclass(frozen=True)
class StageChanged(Event):
    """An item entered a stage: resolve, download, verify, probe, place, convert, register, remove."""

    stage: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ItemVerified(Event):
    """All files of an item passed size and sha256 checks."""

    files: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class ItemConverted(Event):
    """A checkpoint was converted into a diffusers folder at ``path``."""

    path: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ItemRegistered(Event):
    """The item is now in models.yaml under ``name``."""

    name: str = ""
    path: str = ""


@dataclass(frozen=True)
class ItemRemoved(Event):
    """A model was removed from models.yaml; ``purged`` lists deleted paths."""

    name: str = ""
    purged: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemSkipped(Event):
    """Nothing to do for this item (e.g. "already installed")."""

    reason: str = ""


@dataclass(frozen=True)
class ItemFailed(Event):
    """The item failed; the plan goes on.  ``message`` names the input, ``hint`` says what to do."""

    message: str = ""
    hint: str = ""
    error: str = ""  # the error class name, for --json and tests


@dataclass(frozen=True)
class ItemNote(Event):
    """Something worth telling the user that is not a failure (e.g. a 'suspicious' pickle verdict)."""

    message: str = ""


# --- files (download engine) ---------------------------------------------------------


@dataclass(frozen=True)
class FileStarted(Event):
    """A file transfer began (or resumed at ``resumed_from`` bytes)."""

    name: str = ""
    total: int = -1
    resumed_from: int = 0


@dataclass(frozen=True)
class FileProgress(Event):
    """Bytes done of a file; ``speed`` in bytes/s over the last interval.  Rate-limited by the sender."""

    name: str = ""
    done: int = 0
    total: int = -1
    speed: float = 0.0


@dataclass(frozen=True)
class FileFinished(Event):
    """A file is verified and moved into place."""

    name: str = ""
    size: int = 0
    sha256: str = ""
    fetched: int = 0  # bytes actually transferred in this run (0 when already present)


@dataclass(frozen=True)
class Retrying(Event):
    """A transfer is retried after ``delay`` seconds because of ``reason``."""

    name: str = ""
    reason: str = ""
    delay: float = 0.0


# --- questions ------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionAsked(Event):
    """The worker needs an answer; reply with ``InstallHandle.answer(qid, choice)``.

    ``choices`` are machine values (e.g. ``("epsilon", "v", "skip")``) and
    ``labels`` their human text, in the same order.
    """

    qid: str = ""
    kind: str = ""  # e.g. "prediction_type"
    prompt: str = ""
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


AnyEvent = Union[
    PlanStarted,
    PlanFinished,
    ItemStarted,
    StageChanged,
    ItemVerified,
    ItemConverted,
    ItemRegistered,
    ItemRemoved,
    ItemSkipped,
    ItemFailed,
    ItemNote,
    FileStarted,
    FileProgress,
    FileFinished,
    Retrying,
    QuestionAsked,
]

#: The callback type every core layer takes.
EventSink = Callable[[Event], None]


def discard(_event: Event) -> None:
    """An :data:`EventSink` that drops everything (default for library calls)."""
