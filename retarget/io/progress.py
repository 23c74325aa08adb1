"""Progress bars on stderr, shown only where they cannot garble a log: on a terminal.

tqdm redraws its bar with carriage returns (``\\r``) and, with ``leave=False``, erases it the same way,
so in a log file or a pipe the bar and the next line (``error: ...``) end up on one line and
``grep '^error:'`` misses the error. Bars are therefore drawn only when stderr is a terminal;
``RETARGET_PROGRESS=1`` forces them (the command line then ends the bar's line before an error),
``RETARGET_PROGRESS=0`` hides them everywhere. ``--quiet`` hides them too.
"""

from __future__ import annotations

import os
import sys

__all__ = ["progress_bar", "progress_enabled"]


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
    return tqdm(**options)
