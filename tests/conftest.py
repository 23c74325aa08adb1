"""Shared test helpers: location of ../shared (reference goldens) and the repo's own example files.

A fresh clone has no ``../shared``. Only tests that compare against the reference goldens need it
(:func:`require_shared`); they are skipped there with a one-line reason, and fail instead when ``CI``
is set, so that CI never skips them silently. Everything else uses ``examples/`` or files generated
in the test (``tests/assets.py``).
"""

from __future__ import annotations

import os
import threading
import traceback
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RETARGET_SHARED", REPO.parent / "shared"))
COORDINPAINT = SHARED / "fixtures" / "coordinpaint"
DENSEPOSE_FIXTURE = SHARED / "fixtures" / "densepose"
SAMPLES = SHARED / "samples"
EXAMPLES = REPO / "examples"
#: A photo and its DensePose IUV render that ship with the repository (the reference sample
#: ``WOMEN#Blouses_Shirts#id_00007424#02_7_additional``, see examples/README.md).
EXAMPLE_PHOTO = EXAMPLES / "source.jpg"
EXAMPLE_IUV = EXAMPLES / "source_IUV.png"

SKIP_REASON = ("needs the reference goldens in ../shared (not part of a clone; set RETARGET_SHARED to the "
               "shared/ folder to run it)")


def in_ci() -> bool:
    """``CI`` is set to something other than empty/0/false (``.ci/run`` sets ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep caches and weights of every test out of the user's home."""
    home = tmp_path_factory.mktemp("retarget_home")
    monkeypatch.setenv("RETARGET_HOME", str(home))
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("RETARGET_ENGINE", "torch")  # `--engine auto` = torch: only tests/test_engine.py converts
    yield home


def require_shared(path: Path) -> Path:
    """Return ``path``; when it is missing skip the test with a one-line reason, or fail under CI."""
    if not path.exists():
        if in_ci():
            pytest.fail(f"missing shared fixture {path} (set RETARGET_SHARED to the shared/ folder)")
        pytest.skip(f"{SKIP_REASON}: {path} is missing")
    return path


def fixture_dirs(prefix: str, marker: str) -> list[Path]:
    """Every ``../shared/fixtures/<prefix>*`` folder holding ``marker`` (more fixtures may be dropped in)."""
    root = SHARED / "fixtures"
    found = sorted(p for p in root.glob(f"{prefix}*") if (p / marker).exists()) if root.is_dir() else []
    return found or [root / prefix]  # a missing fixture is then skipped (fails under CI) in require_shared


@pytest.fixture
def no_leaked_threads():
    """Every thread a test starts is gone when it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(threading.enumerate()) - before:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


def one_error_line(capsys) -> str:
    """The one ``error…`` line a failed command printed on stderr (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


# -- OpenVINO precision: every compile states it (issue 24) -----------------------------------------------
# OpenVINO's CPU plugin picks bf16 by default on CPUs with native bf16 (AVX512-BF16, AMX) and f32 elsewhere,
# so a compile without INFERENCE_PRECISION_HINT gives CPU-dependent numbers. For the whole test session,
# openvino.Core.compile_model (which openvino.compile_model and NNCF also call) records every CPU compile
# whose config lacks the hint; the autouse fixture below fails the test that made it, on any CPU.
# The list lives on the wrapper, so the conftest module pytest loads and a ``tests.conftest`` imported by a
# test share it.
_UNPINNED_COMPILES: list[str] = []


def _pin_openvino_precision() -> list[str]:
    global _UNPINNED_COMPILES
    try:
        import openvino
    except ImportError:  # the engine tests skip; nothing compiles
        return _UNPINNED_COMPILES
    original = openvino.Core.compile_model
    if hasattr(original, "unpinned"):
        _UNPINNED_COMPILES = original.unpinned
        return _UNPINNED_COMPILES

    def compile_model(self, model, device_name=None, config=None, *args, **kwargs):
        keys = {str(key) for key in (config or {})}
        if "INFERENCE_PRECISION_HINT" not in keys:
            where = "".join(traceback.format_stack(limit=6)[:-1])
            _UNPINNED_COMPILES.append(f"compile_model(device={device_name!r}, config={config!r}) without "
                                      f"INFERENCE_PRECISION_HINT, from:\n{where}")
        return original(self, model, device_name, config, *args, **kwargs)

    compile_model.unpinned = _UNPINNED_COMPILES
    openvino.Core.compile_model = compile_model
    return _UNPINNED_COMPILES


_pin_openvino_precision()


@pytest.fixture(autouse=True)
def _openvino_precision_is_explicit():
    """Fails a test during which OpenVINO compiled a model without an explicit inference precision."""
    _UNPINNED_COMPILES.clear()
    yield
    found, _UNPINNED_COMPILES[:] = list(_UNPINNED_COMPILES), []
    assert not found, ("OpenVINO compiled without an explicit precision (use "
                       "densepose_adapter.openvino_cache.compile_cpu):\n" + found[0])
