"""What one plan item is and what it needs: the values the install pipeline passes around.

:class:`WorkItem` (one unit of work, built by the worker from a plan), :class:`ItemContext` (root,
settings, plan options, how to report and ask), :class:`Spec` (what to install, before any network
access), :class:`Installed` and :class:`ItemOutcome` (how it ended).  The steps live in
:mod:`pipeline`; identity in :mod:`identity`; placement, stanzas, registration, questions and
removal each in their own module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from invokeai_model_install.errors import Cancelled, InstallerError
from invokeai_model_install.events import Event, ItemNote, QuestionAsked, StageChanged
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.net.settings import DownloadSettings
from invokeai_model_install.net.sources import Source
from invokeai_model_install.root.catalog import StarterModel
from invokeai_model_install.root.layout import RootLayout

Ask = Callable[[QuestionAsked], Optional[str]]


@dataclass(frozen=True)
class WorkItem:
    """One unit of work.  ``action`` is ``install``, ``remove`` or ``invalid`` (``error`` says why).

    ``source`` is a :mod:`sources` value for imports; ``starter`` a catalogue entry.
    """

    id: str
    label: str
    action: str = "install"
    line: str = ""
    source: Optional[Source] = None
    starter: Optional[StarterModel] = None
    error: Optional[InstallerError] = None


@dataclass(frozen=True)
class ItemOutcome:
    """How one item ended: ``status`` is installed, skipped, failed or removed."""

    item: str
    label: str
    status: str
    name: str = ""
    message: str = ""
    hint: str = ""
    error: str = ""
    path: str = ""
    fetched_bytes: int = 0

    def one_line(self) -> str:
        """``label: message (hint)``; a message that already starts with the label keeps it once."""
        message = self.message
        while self.label and message.startswith(self.label + ":"):
            message = message[len(self.label) + 1:].lstrip()
        if self.label and message.startswith(self.label + " "):
            text = message  # "URL sent a text page ...": it names the item already
        else:
            text = f"{self.label}: {message}" if message else self.label
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())


@dataclass
class ItemContext:
    """What one item needs: the root, settings, plan options, and how to report and ask."""

    layout: RootLayout
    plan: InstallPlan
    settings: Optional[DownloadSettings]  # None: read from the environment when a download needs it
    emit: Callable[[Event], None]
    ask: Optional[Ask] = None
    cancel: Any = None  # threading.Event or multiprocessing.Event
    fetched: int = 0
    qcount: list[int] = field(default_factory=lambda: [0])

    def stage(self, stage: str, detail: str = "") -> None:
        self.check_cancel()
        self.emit(StageChanged(stage=stage, detail=detail))

    def note(self, message: str) -> None:
        self.emit(ItemNote(message=message))

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled by the user")

    @property
    def registry(self):
        from invokeai_model_install.root.registry import Registry

        return Registry(self.layout.models_yaml)


@dataclass
class Spec:
    """What to install for one item, before any network access."""

    key: str
    label: str
    base_name: str
    source: Optional[Source] = None  # None for a starter (tries its repo ids)
    starter: Optional[StarterModel] = None
    description: str = ""
    want_kind: str | None = None  # "vae" for a starter's VAE


@dataclass
class Installed:
    name: str
    path: Path
    kind: str
    status: str  # installed | skipped
    message: str = ""
