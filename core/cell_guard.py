"""What keeps one cell from taking the run down: readable error records and a timeout.

Used by the runner around every cell and backend load; nothing here knows about
tasks or families.
"""

from __future__ import annotations

import signal
import threading
import traceback
from contextlib import contextmanager

from .errors import CtxbenchError


def error_info(exc: BaseException) -> dict[str, str]:
    """type, message (never empty: a bare ``assert`` says where it was) and traceback."""
    message = str(exc).strip()
    if not message:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        message = f"{type(exc).__name__} with no message{where}"
    if isinstance(exc, SystemExit):
        message = f"the plugin called sys.exit({exc.code!r}); a backend must raise instead"
    return {"type": type(exc).__name__, "message": message,
            "traceback": "".join(traceback.format_exception(exc)[-6:])}


def first_line(message: str, width: int = 160) -> str:
    lines = message.strip().splitlines()
    return (lines[0] if lines else "")[:width]


class CellTimeout(CtxbenchError):
    """A cell ran longer than --cell-timeout."""


@contextmanager
def cell_timeout(seconds: float | None):
    """Raise :class:`CellTimeout` in the main thread after ``seconds`` (SIGALRM; a
    no-op when ``seconds`` is None, off the main thread, or where there is no SIGALRM)."""
    usable = seconds and hasattr(signal, "SIGALRM") and \
        threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise CellTimeout(f"the cell ran longer than --cell-timeout {seconds:g} s and was "
                          "stopped; raise the limit or check the backend for a hang")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
