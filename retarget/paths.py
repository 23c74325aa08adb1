"""Where retarget keeps its files.

- ``home_dir()``: ``$RETARGET_HOME``, else the platform user cache dir + ``/retarget``
  (``$XDG_CACHE_HOME/retarget`` or ``~/.cache/retarget`` on Linux, ``~/Library/Caches/retarget`` on
  macOS, ``%LOCALAPPDATA%/retarget`` on Windows).
- ``weights_dir()``: ``home_dir()/weights`` — installed checkpoints.
- ``cache_dir()``: ``$RETARGET_CACHE_DIR``, else ``home_dir()/cache`` — DensePose results, UV tables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _platform_cache_root() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def home_dir() -> Path:
    """Root folder for weights and caches (not created here)."""
    env = os.environ.get("RETARGET_HOME")
    return Path(env).expanduser() if env else _platform_cache_root() / "retarget"


def weights_dir() -> Path:
    """Folder holding installed weights (not created here)."""
    return home_dir() / "weights"


def cache_dir() -> Path:
    """Folder for recomputable caches (not created here)."""
    env = os.environ.get("RETARGET_CACHE_DIR")
    return Path(env).expanduser() if env else home_dir() / "cache"
