"""Progress of a running cell on the console (issue 16).

A cell that runs longer than ``delay`` seconds (2 s) shows what it is doing:

* on a terminal, one line redrawn in place and erased when the cell ends::

      [ctxbench] toy_clip x aesthetics_synthetic: [########............] 240/615 images, 4s

* when the stream is not a terminal (CI logs, ``| tee``), a plain line at ``delay``
  and then every ``interval`` seconds (10 s)::

      [ctxbench] toy_clip x aesthetics_synthetic: 240/615 images encoded, 12s

Between encodings (probe training, bootstrap) the line says ``evaluating``. The
encoder reports its counts with :meth:`CellProgress.update`; a daemon thread draws.
``--no-progress`` (``RunOptions.progress=False``) draws nothing. Standard library only.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

DELAY = 2.0       # seconds before anything is shown
INTERVAL = 10.0   # seconds between plain lines (not a terminal)
REFRESH = 0.25    # seconds between redraws of the terminal line
BAR_WIDTH = 20

UNITS = {"image": "images", "text": "texts", "video": "clips"}


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####.....]`` filled in proportion to ``done / total``."""
    filled = width if total <= 0 else min(width, int(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class CellProgress:
    """The progress indication of one cell (``label``: "backend x task").

    ``tick(now)`` draws whatever is due and is what the background thread calls every
    ``refresh`` seconds; tests drive it with a fake ``clock`` and no thread."""

    def __init__(self, label: str, stream: TextIO | None = None, *, tty: bool | None = None,
                 delay: float = DELAY, interval: float = INTERVAL, refresh: float = REFRESH,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_tty(self.stream) if tty is None else tty
        self.delay, self.interval, self.refresh = delay, interval, refresh
        self.clock = clock
        self.started = clock()
        self._work: tuple[int, int, str] | None = None   # (done, total, kind)
        self._next = self.started + delay                 # when the next plain line is due
        self._drawn = 0                                   # width of the terminal line on screen
        self._last = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines: list[str] = []                        # every text shown (for tests, logs)

    # -- what the cell reports -------------------------------------------------
    def update(self, done: int, total: int, kind: str) -> None:
        """``done`` of ``total`` items of ``kind`` ("image", "text", "video") encoded."""
        self._work = (int(done), int(total), kind)

    def idle(self) -> None:
        """No encoding under way (the evaluator is computing)."""
        self._work = None

    # -- drawing ---------------------------------------------------------------
    def text(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = f"{now - self.started:.0f}s"
        work = self._work
        if work is None:
            what = "evaluating"
        else:
            done, total, kind = work
            unit = UNITS.get(kind, kind + "s")
            what = (f"{bar(done, total)} {done}/{total} {unit}" if self.tty
                    else f"{done}/{total} {unit} encoded")
        return f"[ctxbench] {self.label}: {what}, {elapsed}"

    def tick(self, now: float | None = None) -> str | None:
        """Draw if something is due; returns the text drawn (None: nothing)."""
        now = self.clock() if now is None else now
        if now - self.started < self.delay:
            return None
        with self._lock:
            if self._stop.is_set():
                return None
            text = self.text(now)
            if self.tty:
                if text == self._last:
                    return None
                self._write("\r" + text.ljust(self._drawn))
                self._drawn = len(text)
            else:
                if now < self._next:
                    return None
                self._write(text + "\n")
                self._next = now + self.interval
            self._last = text
            self.lines.append(text)
            return text

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            pass   # a closed or broken stream never fails a cell

    # -- lifetime --------------------------------------------------------------
    def start(self) -> "CellProgress":
        """Draw from a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ctxbench-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh):
            self.tick()

    def stop(self) -> None:
        """Stop drawing and erase the terminal line (the cell's status line follows)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self.tty and self._drawn:
                self._write("\r" + " " * self._drawn + "\r")
                self._drawn = 0

    def __enter__(self) -> "CellProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
