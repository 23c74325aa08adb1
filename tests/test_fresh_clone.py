"""A fresh clone has no ../shared: only golden comparisons skip (one line), and under CI they fail."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import assets
from tests.conftest import REPO, SKIP_REASON, in_ci, require_shared


def test_missing_golden_skips_with_one_line_reason(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception) as info:
        require_shared(tmp_path / "nothing.npz")
    message = str(info.value)
    assert SKIP_REASON in message and "RETARGET_SHARED" in message and "\n" not in message


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_missing_golden_fails_under_ci(monkeypatch, tmp_path, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="missing shared fixture"):
        require_shared(tmp_path / "nothing.npz")
    monkeypatch.setenv("CI", "false")
    assert not in_ci()


def test_present_fixture_is_returned(tmp_path):
    assert require_shared(tmp_path) == tmp_path


def test_suite_collects_without_shared():
    """Collection must not touch ../shared (a module-level fixture lookup broke every clone once)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(RETARGET_SHARED=str(REPO / "no-such-shared-folder"), PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) >= 200


def test_generated_checkpoints_use_the_official_format():
    from retarget.models.loading import load_official_inpainter, load_official_refiner
    from retarget.weights import identify_checkpoint

    folder = assets.coordinpaint_dir()
    assert identify_checkpoint(folder / "inpainter.pth") == "coordinpaint-inpainter"
    assert identify_checkpoint(folder / "refiner.pth") == "coordinpaint-refiner"
    assert load_official_inpainter(folder / "inpainter.pth").ngf == 8
    assert load_official_refiner(folder / "refiner.pth").ngf == 16
    assert identify_checkpoint(assets.densepose_dir() / "model_tiny.pkl") == "densepose-r50-fpn-s1x"
