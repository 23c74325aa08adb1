"""Progress bars on stderr, shown only where they cannot garble a log: on a terminal.

tqdm redraws its bar with carriage returns (``\\r``) and, with ``leave=False``, erases it the same way,
so in a log file or a pipe the bar and the next line (``error: ...``) end up on one line and
``grep '^error:'`` misses the error. Bars are therefore drawn only when stderr is a terminal;
``RETARGET_PROGRESS=1`` forces them (the command line then ends the bar's line before an error),
``RETARGET_PROGRESS=0`` hides them everywhere. ``--quiet`` hides them too.

A program that shows progress itself (the web page of ``retarget ui``) installs a listener with
:func:`progress_listener`: every bar made in that context (the same thread) reports
``listener(desc, done, total)`` when it starts and after each update, whether it is drawn or not. The
listener may raise (to cancel a job); the exception leaves from the ``update`` call, between frames.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from typing import Callable, Iterator

__all__ = ["progress_bar", "progress_enabled", "progress_listener"]

#: ``listener(desc, done, total)`` of the bars made in this context (:func:`progress_listener`).
_LISTENER: contextvars.ContextVar[Callable[[str, int, int | None], None] | None] = contextvars.ContextVar(
    "retarget_progress_listener", default=None)


@contextlib.contextmanager
def progress_listener(listener: Callable[[str, int, int | None], None]) -> Iterator[None]:
    """Report every :func:`progress_bar` made inside the block to ``listener(desc, done, total)``
    (``total`` None when unknown): once when the bar is made (``done`` 0), then after each update."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


class _Reported:
    """A tqdm bar that also reports its count to a listener (tqdm counts nothing when disabled)."""

    def __init__(self, bar, listener, desc: str, total: int | None):
        self._bar, self._listener, self.desc, self.total, self.done = bar, listener, desc, total, 0
        listener(desc, 0, total)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)
        self.done += n
        self._listener(self.desc, self.done, self.total)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "_Reported":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        return getattr(self._bar, name)


def progress_enabled(quiet: bool = False) -> bool:
    """Whether a progress bar is drawn: not ``quiet``, and stderr is a terminal (or ``RETARGET_PROGRESS=1``)."""
    if quiet:
        return False
    forced = os.environ.get("RETARGET_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(total: int | None = None, desc: str = "", *, unit: str = "frame", quiet: bool = False, **kwargs):
    """A tqdm bar on stderr, disabled unless :func:`progress_enabled`; ``kwargs`` go to tqdm."""
    from tqdm import tqdm

    options = dict(total=total or None, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
    options.update(kwargs)
    options["disable"] = bool(kwargs.get("disable", False)) or not progress_enabled(quiet)
    bar = tqdm(**options)
    listener = _LISTENER.get()
    return bar if listener is None else _Reported(bar, listener, desc, total or None)
