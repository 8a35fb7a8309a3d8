"""Small npyscreen widgets the installer needs beyond the stock ones.

Imported only after the terminal check passed (npyscreen is fast to import,
but there is no reason to pay for it when printing the no-tty message).
"""

from __future__ import annotations

import curses
import curses.ascii
import os
import textwrap
from typing import Callable, Sequence

import npyscreen

#: What npyscreen turns ESC + "[" into (it reads ESC x as Alt-x): the start of a CSI sequence.
_ALT_BRACKET = curses.ascii.alt(ord("["))


class ImportEditor(npyscreen.MultiLineEdit):
    """The import box's text area: many lines, pasting allowed.

    * ``autowrap`` is off: npyscreen's wrap inserts newlines at hyphens and
      would cut long URLs and repo ids in two.
    * A terminal with bracketed paste on sends ``ESC [200~`` ... ``ESC [201~``
      around a paste; those markers (and any other CSI sequence npyscreen does
      not know) are swallowed instead of being typed as ``[200~``.
    """

    def __init__(self, screen, **keywords) -> None:
        keywords.setdefault("autowrap", False)
        super().__init__(screen, **keywords)
        self._csi: str | None = None  # characters of a CSI sequence being swallowed

    def handle_input(self, _input) -> bool:  # noqa: D401 - npyscreen's signature
        if self._csi is not None:
            ch = chr(_input) if isinstance(_input, int) and 0 <= _input < 256 else str(_input)
            if ch.isdigit() or ch == ";":
                self._csi += ch
                return True
            self._csi = None  # the final byte (~ or a letter) ends the sequence
            if ch == "~" or ch.isalpha():
                return True
        if _input == _ALT_BRACKET:
            self._csi = ""
            return True
        return super().handle_input(_input)


class ImportBox(npyscreen.BoxTitle):
    """A framed :class:`ImportEditor` with a title."""

    _contained_widget = ImportEditor


def complete_directory(value: str) -> str:
    """``value`` completed to the folder names that start with its last part (their common prefix;
    a trailing ``/`` when only one matches).  Unchanged when nothing matches or the folder cannot be read."""
    text = os.path.expanduser(value)
    if not text:
        return value
    head, tail = os.path.split(text)
    try:
        names = sorted(n for n in os.listdir(head or ".") if n.startswith(tail) and os.path.isdir(os.path.join(head or ".", n)))
    except OSError:
        return value
    if not names:
        return value
    common = os.path.commonprefix(names)
    completed = os.path.join(head, common) + (os.sep if len(names) == 1 else "")
    return completed if len(completed) >= len(text) else value


#: The key that completes a path in :class:`DirectoryField` (Tab only moves on).
COMPLETE_KEY = "^T"


class DirectoryField(npyscreen.Textfield):
    """A folder path entry where moving never changes the value.

    npyscreen's ``Filename`` completes on Tab, so tabbing through the form silently turned
    ``.../scan`` into ``.../scan/my-vae/``.  Here Tab leaves the field like everywhere else;
    completion is an explicit key, Ctrl-T (:data:`COMPLETE_KEY`).
    """

    def set_up_handlers(self) -> None:
        super().set_up_handlers()
        self.handlers.update({curses.ascii.TAB: self.h_exit_down, COMPLETE_KEY: self.h_complete})

    def h_complete(self, _input) -> None:
        completed = complete_directory(self.value or "")
        if completed == (self.value or ""):
            curses.beep()
            return
        self.value = completed
        self.cursor_position = len(self.value)


class TitleDirectory(npyscreen.TitleText):
    """A titled :class:`DirectoryField`."""

    _entry_type = DirectoryField


class NotifyingCheckbox(npyscreen.Checkbox):
    """A checkbox that calls ``on_toggle(value)`` when it changes."""

    def __init__(self, screen, on_toggle: Callable[[bool], None] | None = None, **keywords) -> None:
        self.on_toggle = on_toggle
        super().__init__(screen, **keywords)

    def whenToggled(self) -> None:
        if self.on_toggle is not None:
            self.on_toggle(bool(self.value))


class ActionButton(npyscreen.ButtonPress):
    """A button calling ``action()`` when pressed (Enter or Space)."""

    def __init__(self, screen, action: Callable[[], None] | None = None, **keywords) -> None:
        self.action = action
        super().__init__(screen, **keywords)

    def whenPressed(self) -> None:
        if self.action is not None:
            self.action()


def ask_choice(title: str, prompt: str, labels: Sequence[str], default: int = 0) -> int:
    """A popup with ``prompt`` and one choice per label; returns the chosen index.

    The popup is modal: it runs its own edit loop until OK is pressed.
    """
    lines = textwrap.wrap(prompt, 66) or [""]
    lines = lines[:6]
    height = len(lines) + len(labels) + 6
    popup = npyscreen.Popup(name=title, lines=height, columns=72)
    for line in lines:
        popup.add(npyscreen.FixedText, value=line, editable=False)
    popup.nextrely += 1
    choice = popup.add(
        npyscreen.SelectOne, values=list(labels), value=[default], max_height=len(labels), scroll_exit=True
    )
    popup.edit()
    selected = choice.value
    return int(selected[0]) if selected else default
