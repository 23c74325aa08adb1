"""Shared test helpers: location of ../shared (fixtures and samples)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RETARGET_SHARED", REPO.parent / "shared"))
COORDINPAINT = SHARED / "fixtures" / "coordinpaint"
DENSEPOSE_FIXTURE = SHARED / "fixtures" / "densepose"
SAMPLES = SHARED / "samples"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep caches and weights of every test out of the user's home."""
    home = tmp_path_factory.mktemp("retarget_home")
    monkeypatch.setenv("RETARGET_HOME", str(home))
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(home / "cache"))
    yield home


def require_shared(path: Path) -> Path:
    """Return ``path`` or fail loudly: the shared fixtures are part of CI, never silently skipped."""
    if not path.exists():
        pytest.fail(f"missing shared fixture {path} (set RETARGET_SHARED to the shared/ folder)")
    return path


def fixture_dirs(prefix: str, marker: str) -> list[Path]:
    """Every ``../shared/fixtures/<prefix>*`` folder holding ``marker`` (more fixtures may be dropped in)."""
    root = SHARED / "fixtures"
    found = sorted(p for p in root.glob(f"{prefix}*") if (p / marker).exists()) if root.is_dir() else []
    return found or [root / prefix]  # a missing fixture then fails loudly in require_shared
