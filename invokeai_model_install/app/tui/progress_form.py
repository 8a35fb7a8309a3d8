"""The progress screen: live status of a running plan, inside the application.

Events are read ONLY in :meth:`ProgressForm.while_waiting`, which npyscreen
calls on the UI thread whenever no key arrived within ``keypress_timeout``
tenths of a second: no other thread ever touches a widget (curses is not
thread-safe).  Questions from the worker become a modal popup, answered with
``handle.answer``.
"""

from __future__ import annotations

import logging
from typing import Any

import npyscreen

from invokeai_model_install import events as ev
from invokeai_model_install.app.tui.progress import ProgressState
from invokeai_model_install.app.tui.widgets import ActionButton, ask_choice

log = logging.getLogger(__name__)

#: Events drained per tick at most, so a burst of progress events cannot freeze the keys.
MAX_EVENTS_PER_TICK = 500


class ProgressForm(npyscreen.FormBaseNew):
    """Shows a :class:`ProgressState` fed from ``handle.poll()``."""

    def __init__(self, *args, handle: Any, n_items: int = 0, **keywords) -> None:
        self.handle = handle
        self.state = ProgressState()
        self.n_items = n_items
        self._closed = False
        self._logged = 0  # entries of state.log already written to ROOT/model-install.log
        super().__init__(*args, **keywords)
        self.keypress_timeout = 1  # tenths of a second between event polls

    def create(self) -> None:
        width = self.columns - 6
        self.w_summary = self.add(npyscreen.FixedText, value=self.state.summary(), editable=False, color="LABEL")
        self.nextrely += 1
        rest = self.lines - 4 - 2 - 1 - 1 - 1 - 2  # frame, summary+gap, bar, log title, gap, buttons
        h_items = max(2, min(max(self.n_items, 1), rest // 2))
        self.w_items = self.add(npyscreen.Pager, values=["Starting the installer..."], max_height=h_items, editable=False)
        self.w_bar = self.add(npyscreen.FixedText, value="", editable=False, color="GOOD", max_width=width)
        self.add(npyscreen.FixedText, value="Log:", editable=False, color="LABEL")
        self.w_log = self.add(npyscreen.Pager, values=[], max_height=max(2, rest - h_items), editable=False, autowrap=False)
        self.nextrely += 1
        row = self.nextrely
        self.w_cancel = self.add(ActionButton, name="CANCEL (c)", action=self.on_cancel, rely=row, relx=4)
        self.w_back = self.add(ActionButton, name="BACK TO THE FORM", action=self.on_back, rely=row, relx=4, hidden=True)
        self.w_exit = self.add(ActionButton, name="EXIT", action=self.on_exit, rely=row, relx=26, hidden=True)
        self.add_handlers({"c": self.h_cancel, "C": self.h_cancel})

    # --- keys and buttons -----------------------------------------------------------

    def h_cancel(self, _key: Any = None) -> None:
        if self.state.finished is None:
            self.on_cancel()

    def on_cancel(self) -> None:
        if self.state.finished is None and not self.state.cancelling:
            self.state.cancelling = True
            self.handle.cancel()
            self.refresh_widgets()

    def on_back(self) -> None:
        self.parentApp.back_to_form()

    def on_exit(self) -> None:
        self.parentApp.finish("failed" if self.state.failed else "ok")

    # --- events ----------------------------------------------------------------------

    def while_waiting(self) -> None:
        """Drain the worker's events into the state, ask questions, redraw."""
        if self._closed:
            return
        changed = self._drain()
        if self.state.finished is None and self.handle.done:
            changed = self._drain() or changed  # what it sent just before it stopped
            if self.state.finished is None:
                self._worker_ended_without_summary()
                changed = True
        if changed:
            self._write_log()
        if changed or self.state.files:
            self.refresh_widgets()
        if self.state.finished is not None and not self._closed:
            self._show_end()

    def _drain(self) -> bool:
        """Apply waiting events (at most :data:`MAX_EVENTS_PER_TICK`); True when there were any."""
        changed = False
        for _ in range(MAX_EVENTS_PER_TICK):
            event = self.handle.poll(0)
            if event is None:
                break
            changed = True
            if isinstance(event, ev.QuestionAsked):
                self.refresh_widgets()
                self.ask(event)
                continue
            self.state.apply(event)
        return changed

    def ask(self, question: ev.QuestionAsked) -> None:
        """A modal popup for the worker's question; the answer goes back through the handle."""
        labels = list(question.labels) if len(question.labels) == len(question.choices) else list(question.choices)
        index = ask_choice("Question", question.prompt, labels)
        self.handle.answer(question.qid, question.choices[index])
        self.display()

    def _worker_ended_without_summary(self) -> None:
        """The worker stopped without PlanFinished: say so instead of waiting forever."""
        log.error("the worker stopped without reporting the end of the plan")
        self.state.log.append("! the installer's worker stopped unexpectedly; see models/.partial/worker.log")
        self.state.apply(ev.PlanFinished(failed=1, cancelled=self.state.cancelling))

    def _write_log(self) -> None:
        """New log entries, whole (the screen wraps them), to ROOT/model-install.log; then the summary."""
        for entry in self.state.log[self._logged:]:
            (log.error if entry.lstrip().startswith(("!", "hint:")) else log.info)("%s", entry)
        self._logged = len(self.state.log)
        if self.state.finished is not None and not self._closed:
            log.info("%s %s", self.state.summary(), self.state.bar_line(200))

    def _show_end(self) -> None:
        """Swap the cancel button for BACK TO THE FORM / EXIT and move the cursor there."""
        self._closed = True
        self.w_cancel.hidden = True
        self.w_cancel.editable = False
        self.w_back.hidden = False
        self.w_exit.hidden = False
        self.refresh_widgets()
        # leave the cancel button's edit loop as if Tab was pressed: the form's loop then
        # moves to the next editable, visible widget (BACK TO THE FORM)
        self.w_cancel.editing = False
        self.w_cancel.how_exited = True

    def refresh_widgets(self) -> None:
        width = self.columns - 8
        self.w_summary.value = self.state.summary()
        lines, first = self.state.status_view(width, self.w_items.height)
        self.w_items.values = lines or ["(nothing to do)"]
        self.w_items.start_display_at = first
        self.w_bar.value = self.state.bar_line(width)
        self.w_log.values = self.state.log_lines(width)
        # keep the newest log lines in view
        self.w_log.start_display_at = max(0, len(self.w_log.values) - self.w_log.height)
        self.display()
