"""Drive a full-screen program on a real pty and read its screen (pexpect + pyte).

CI has no tty, and npyscreen's own TEST_INPUT needs one (FACTS.md), so the
TUI tests spawn the real application on a pseudo-terminal with pexpect and
feed everything it writes into a pyte virtual screen.  Tests then wait for text
to appear on the *rendered* screen, never on the raw byte stream, so cursor
movement and partial redraws do not matter.

Usage::

    with PtyTerm([sys.executable, "-m", "invokeai_model_install", ...]) as term:
        term.wait_for("IMPORT LOCAL AND REMOTE MODELS")
        term.send(keys.DOWN, keys.SPACE)
        print(term.dump())
"""

from __future__ import annotations

import os
import re
import time
from typing import Iterable, Mapping, Sequence

import pexpect
import pyte


class keys:
    """Key sequences as an xterm in application-cursor mode sends them (TERM=xterm)."""

    UP = "\x1bOA"
    DOWN = "\x1bOB"
    RIGHT = "\x1bOC"
    LEFT = "\x1bOD"
    HOME = "\x1bOH"
    END = "\x1bOF"
    TAB = "\t"
    BTAB = "\x1b[Z"
    ENTER = "\r"
    SPACE = " "
    ESC = "\x1b"
    BACKSPACE = "\x7f"
    CTRL_C = "\x03"
    PASTE_START = "\x1b[200~"
    PASTE_END = "\x1b[201~"


#: The environment the application runs in: an 8-colour xterm, UTF-8, short ESC delay.
TERM_ENV = {
    "TERM": "xterm",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "ESCDELAY": "25",
    "NCURSES_NO_UTF8_ACS": "1",
}


class ScreenTimeout(AssertionError):
    """Expected text did not show up in time; the message holds the screen."""


class PtyTerm:
    """A program running on a pty of ``cols`` x ``rows``, rendered by pyte.

    :param argv: the command and its arguments.
    :param env: extra environment (merged over ``os.environ`` and :data:`TERM_ENV`).
    :param timeout: default seconds for waits (generous: the test machine is shared).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cols: int = 100,
        rows: int = 35,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(TERM_ENV)
        if env:
            full_env.update(env)
        self.timeout = timeout
        self.cols, self.rows = cols, rows
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()  # everything the program wrote, for post-mortems
        self.child = pexpect.spawn(
            argv[0],
            list(argv[1:]),
            env=full_env,
            cwd=None if cwd is None else str(cwd),
            dimensions=(rows, cols),
            echo=False,
        )

    # --- reading ------------------------------------------------------------------

    def pump(self, timeout: float = 0.05) -> bool:
        """Read what the program wrote within ``timeout`` seconds into the screen; False at EOF."""
        try:
            while True:
                data = self.child.read_nonblocking(65536, timeout=timeout)
                self.raw += data
                self.stream.feed(data)
                timeout = 0.01  # drain the rest of a burst quickly
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False

    def settle(self, quiet: float = 0.2, max_wait: float = 10.0) -> None:
        """Read until the program has been silent for ``quiet`` seconds (at most ``max_wait``).

        Used between keys whose effect is checked: on a loaded machine a redraw
        can lag, and a key sent before it lands would be counted twice.
        """
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            try:
                data = self.child.read_nonblocking(65536, timeout=quiet)
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                return
            self.raw += data
            self.stream.feed(data)

    def lines(self) -> list[str]:
        """The rendered screen, one string per row (trailing blanks kept)."""
        return list(self.screen.display)

    def text(self) -> str:
        """The rendered screen as one string, rows joined by newlines."""
        return "\n".join(line.rstrip() for line in self.screen.display)

    def dump(self) -> str:
        """The screen framed with row numbers, for failure messages and docs."""
        width = self.cols
        out = ["+" + "-" * width + "+"]
        out += [f"|{line}|{i:3d}" for i, line in enumerate(self.screen.display)]
        out.append("+" + "-" * width + "+")
        return "\n".join(out)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float | None = None) -> re.Match[str]:
        """Wait until ``pattern`` (plain text or compiled regex) is on the screen; return the match.

        Raises :class:`ScreenTimeout` with the screen dump when it never shows,
        or when the program exits first.
        """
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        alive = True
        while True:
            match = regex.search(self.text())
            if match:
                return match
            if not alive or time.monotonic() > deadline:
                why = "program exited" if not alive else "timed out"
                raise ScreenTimeout(f"{why} waiting for {regex.pattern!r}; screen:\n{self.dump()}")
            alive = self.pump(0.1)

    def wait_gone(self, pattern: str, timeout: float | None = None) -> None:
        """Wait until ``pattern`` (plain text) is no longer on the screen."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while pattern in self.text():
            if time.monotonic() > deadline:
                raise ScreenTimeout(f"timed out waiting for {pattern!r} to go; screen:\n{self.dump()}")
            if not self.pump(0.1):
                break

    def row_of(self, text: str) -> int:
        """Index of the first screen row containing ``text`` (-1 when absent)."""
        for i, line in enumerate(self.screen.display):
            if text in line:
                return i
        return -1

    def cursor_row(self) -> int:
        """The row the terminal cursor is on."""
        return self.screen.cursor.y

    def highlighted(self, text: str) -> bool:
        """True when an occurrence of ``text`` is drawn in reverse video (npyscreen's focus mark)."""
        for y, line in enumerate(self.screen.display):
            start = line.find(text)
            while start >= 0:
                if self.screen.buffer[y][start].reverse:
                    return True
                start = line.find(text, start + 1)
        return False

    def _reverse_cells(self) -> tuple[tuple[int, int], ...]:
        return tuple(
            (y, x) for y in range(self.rows) for x, ch in self.screen.buffer[y].items() if ch.reverse
        )

    def focus(self, text: str, key: str = keys.TAB, tries: int = 30, timeout: float | None = None) -> None:
        """Press ``key`` until ``text`` is highlighted (focused); waits for each redraw.

        Raises :class:`ScreenTimeout` with the screen when ``text`` never gets the focus.
        """
        for _ in range(tries):
            self.wait_for(text, timeout)
            self.settle()
            if self.highlighted(text):
                return
            before = (self._reverse_cells(), self.text())
            self.child.send(key.encode("utf-8"))
            deadline = time.monotonic() + 10.0
            while (self._reverse_cells(), self.text()) == before and time.monotonic() < deadline:
                if not self.pump(0.05):
                    break
        raise ScreenTimeout(f"{text!r} never got the focus; screen:\n{self.dump()}")

    def press(self, label: str, key: str = keys.TAB) -> None:
        """Focus the button (or checkbox) ``label`` with ``key`` presses, then press Enter/Space on it."""
        self.focus(label, key)
        self.send(keys.ENTER)

    # --- writing ------------------------------------------------------------------

    def send(self, *parts: str | Iterable[str], settle: float = 0.05) -> None:
        """Send keys one part at a time (each part is one key or a burst such as a paste).

        Between parts the screen is pumped for ``settle`` seconds so that
        curses sees separate keys (an ESC too close to the next key reads as Alt).
        """
        for part in parts:
            chunks = [part] if isinstance(part, str) else list(part)
            for chunk in chunks:
                self.child.send(chunk.encode("utf-8"))
                self.pump(settle)

    def type(self, text: str, settle: float = 0.0) -> None:
        """Type ``text`` as one fast burst (like a paste without bracketing)."""
        self.child.send(text.encode("utf-8"))
        self.pump(max(settle, 0.05))

    def resize(self, cols: int, rows: int) -> None:
        """Resize the pty (the program gets SIGWINCH) and the virtual screen."""
        self.cols, self.rows = cols, rows
        self.screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)
        self.pump(0.1)

    # --- ending -------------------------------------------------------------------

    def wait_exit(self, timeout: float | None = None) -> int:
        """Wait for the program to exit; return its exit status (128+N for signal N)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.pump(0.1):
            if time.monotonic() > deadline:
                raise ScreenTimeout(f"program did not exit; screen:\n{self.dump()}")
        self.child.close()
        if self.child.signalstatus is not None:
            return 128 + self.child.signalstatus
        return self.child.exitstatus if self.child.exitstatus is not None else -1

    def close(self) -> None:
        """Terminate the program if it still runs (SIGHUP, then SIGKILL)."""
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)

    def __enter__(self) -> "PtyTerm":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
