"""How many connections a large file gets: start with one, add them while the link rewards it.

Why: extra connections only pay where each connection is capped (CDNs cap every connection at tens
of MB/s: there eight connections are eight times faster).  Where one connection already fills the
link (a LAN mirror, loopback) eight of them only fight the hasher for the CPU: measured on two cores,
1 GB from nginx on loopback, whole process, same run: one connection 0.99 s, two 1.11 s, eight
1.25 s (curl 1.01 s; docs/performance.md).  aria2c and hf_transfer always open all of theirs; we
measure first.

:class:`ConnectionRamp` is pure bookkeeping (no threads, no clock of its own), fed by the engine
with ``(time, bytes received so far, connections busy)`` about every 25 ms; rates are taken over
``window`` seconds, the first from the first byte on.  With every allowed connection busy:

* a slow rate (below ``floor``): the connections are capped or the line is slow; allow what the
  shortfall asks for at once (``ceil(limit * enough / rate)``, at most ``most``), never taken back
  (more connections cost a slow link nothing, and on a long round trip new ones need a while to
  deliver, so judging them would be unfair);
* a fast rate: try twice as many and judge them one settling window later: a rate grown by
  ``gain`` keeps them (and the next window may double again); a rate that stayed high without
  growing means the CPU, not the link, is the limit: back to the count before, frozen there until
  the rate falls well below what it was (then the link changed: probe again); a rate that fell
  low is a link that slowed down (servers let the start of a response through uncapped, as nginx's
  ``limit_rate`` does for its first second): the slow rule applies.
"""

from __future__ import annotations

import math

ENOUGH = 400e6  # bytes/s a slow link's jump aims for (more than any CDN gives one connection)
CPU_BOUND_FLOOR = 150e6  # bytes/s: below this a link is slow (never judged); at or above, increases are judged
GAIN = 1.15  # a judged increase must raise the rate by this factor to stay
WINDOW = 0.05  # seconds per rate sample (the first starts with the first byte)


class ConnectionRamp:
    """The number of connections allowed for split files, adapted to the measured rate."""

    def __init__(self, start: int, most: int, *, enough: float = ENOUGH, cpu_bound_floor: float = CPU_BOUND_FLOOR,
                 gain: float = GAIN, window: float = WINDOW) -> None:
        self.most = max(1, most)
        self.limit = max(1, min(start, self.most))
        self.enough = enough
        self.floor = cpu_bound_floor
        self.gain = gain
        self.window = window
        self.frozen_at: float | None = None  # the rate at which more connections stopped paying
        self._t0: float | None = None
        self._bytes0 = 0
        self._judge: tuple[int, float, int] | None = None  # (limit before, rate before, windows to wait)
        self.history: list[tuple[float, int]] = []  # (rate, limit after the sample): for logs and tests

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None

    def observe(self, now: float, total_bytes: int, busy: int) -> int:
        """One sample; -> the limit from now on."""
        if self._t0 is None:
            if total_bytes > 0:  # time spent connecting and asking is not part of a rate
                self._t0, self._bytes0 = now, total_bytes
            return self.limit
        dt = now - self._t0
        if dt < self.window:
            return self.limit
        rate = (total_bytes - self._bytes0) / dt
        self._t0, self._bytes0 = now, total_bytes
        self._step(rate, busy)
        self.history.append((rate, self.limit))
        return self.limit

    def _step(self, rate: float, busy: int) -> None:
        if self._judge is not None:
            before, before_rate, wait = self._judge
            if wait > 0:  # the new connections are still opening: let them settle one window
                self._judge = (before, before_rate, wait - 1)
                return
            self._judge = None
            if before_rate * self.gain > rate >= self.floor:
                self.limit = before  # they did not pay and the rate stayed high: the CPU is the limit
                self.frozen_at = rate
                return
        if self.frozen_at is not None:
            if rate * self.gain * self.gain >= self.frozen_at:
                return
            self.frozen_at = None  # the rate fell well below: the link changed, probe again
        if self.limit >= self.most or busy < self.limit:
            return
        if rate < self.floor:
            # straight to what the shortfall asks for: overshooting costs a slow link nothing
            want = math.ceil(self.limit * self.enough / max(rate, 1.0))
            self.limit = min(self.most, max(self.limit + 1, want))
        else:
            self._judge = (self.limit, rate, 1)
            self.limit = min(self.most, 2 * self.limit)
