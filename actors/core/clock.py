"""Clocks: every engine reads time only through one of these.

Replay injects :class:`SimClock` (time advances when the kernel says so, so a replay is
deterministic); live injects :class:`WallClock`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What engines need of a clock."""

    def now_ns(self) -> int:
        """Return the current time in ns since the Unix epoch."""
        ...

    def advance_to(self, ts_ns: int) -> None:
        """Move simulated time forward to ``ts_ns`` (never backwards); no-op on a wall clock."""
        ...

    @property
    def is_simulated(self) -> bool: ...


class SimClock:
    """A clock that moves only when told to, and never backwards.

    Example:
        >>> c = SimClock(1_000)
        >>> c.advance_to(2_000); c.now_ns()
        2000
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = int(start_ns)

    def now_ns(self) -> int:
        return self._now

    def advance_to(self, ts_ns: int) -> None:
        if ts_ns > self._now:
            self._now = int(ts_ns)

    @property
    def is_simulated(self) -> bool:
        return True


class WallClock:
    """The real clock (``time.time_ns``)."""

    def now_ns(self) -> int:
        return time.time_ns()

    def advance_to(self, ts_ns: int) -> None:
        return None

    @property
    def is_simulated(self) -> bool:
        return False


def make_clock(simulated: bool, start_ns: int = 0) -> SimClock | WallClock:
    """Return a :class:`SimClock` for replay or a :class:`WallClock` for live."""
    return SimClock(start_ns) if simulated else WallClock()
