"""``densepose_adapter`` stands alone: it never imports ``retarget``, and docs/densepose.md's example runs
in a process where ``retarget`` cannot be imported."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.assets import densepose_dir
from tests.conftest import EXAMPLES, REPO

#: Installed in the child before anything else: every import of ``retarget`` (or a submodule) fails.
_BLOCK_RETARGET = textwrap.dedent('''
    import sys

    class _NoRetarget:
        def find_spec(self, name, path=None, target=None):
            if name == "retarget" or name.startswith("retarget."):
                raise ImportError(f"{name} is blocked: densepose_adapter must work without retarget")
            return None

    sys.meta_path.insert(0, _NoRetarget())
''')


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_package_imports_retarget():
    files = sorted((REPO / "densepose_adapter").rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(REPO)): sorted(n for n in _imported_modules(f) if n.split(".")[0] == "retarget")
                 for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}


def _docs_example() -> str:
    text = (REPO / "docs" / "densepose.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run_child(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # retarget would be importable but for the blocker
    return subprocess.run([sys.executable, "-c", _BLOCK_RETARGET + code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_blocker_really_hides_retarget(tmp_path):
    done = _run_child("import retarget\n", tmp_path)
    assert done.returncode == 1 and "retarget is blocked" in done.stderr


def _short_clip(path: Path, frames: int = 5) -> Path:
    source = cv2.VideoCapture(str(EXAMPLES / "driver.mp4"))
    writer = None
    for _ in range(frames):
        ok, frame = source.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    return path


def test_docs_example_runs_without_retarget(tmp_path):
    tiny = densepose_dir()
    clip = _short_clip(tmp_path / "dance.avi")
    example = _docs_example()
    constants = re.search(r"^WEIGHTS, CONFIG, PHOTO, VIDEO = .*$", example, re.M).group(0)
    example = example.replace(constants, f"WEIGHTS, CONFIG, PHOTO, VIDEO = {str(tiny / 'model_tiny.pkl')!r}, "
                                         f"{str(tiny / 'meta.json')!r}, {str(tiny / 'image.png')!r}, {str(clip)!r}")
    # After the example, in the same process: an error is the package's own one-line error, and
    # nothing of retarget was loaded along the way.
    epilogue = textwrap.dedent('''
        from densepose_adapter.errors import DensePoseError, WeightsNotGiven
        try:
            make_backend("torchvision", config=CONFIG)
        except WeightsNotGiven as exc:
            assert isinstance(exc, DensePoseError) and exc.exit_code == 1 and exc.depth == 50, exc
            print("missing weights:", exc)
        assert not [m for m in sys.modules if m == "retarget" or m.startswith("retarget.")]
        print("persons:", len(result.scores))
    ''')
    done = _run_child(example + epilogue, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "missing weights: no DensePose weights given: pass the detectron2 .pkl of the r50 config" in done.stdout
    assert "persons: 1" in done.stdout

    # The exported IUV is what the backend gives in this (retarget-importing) process.
    from densepose_adapter.backends import make_backend
    from densepose_adapter.iuv import read_iuv_png

    backend = make_backend("torchvision", weights=tiny / "model_tiny.pkl", config=tiny / "meta.json",
                           densepose_size=512)
    expected = backend.predict([cv2.imread(str(tiny / "image.png"))])[0].iuv
    exported = read_iuv_png(tmp_path / "photo_IUV.png")
    assert (expected[..., 0] > 0).any()
    np.testing.assert_array_equal(exported, expected)
    # One filtered IUV per frame of the clip, each of the frame's size.
    written = sorted(tmp_path.glob("dance_*_IUV.png"))
    assert [p.name for p in written] == [f"dance_{i:06d}_IUV.png" for i in range(5)]
    assert all(read_iuv_png(p).shape[:2] == (360, 480) for p in written)


@pytest.mark.parametrize("name", ["DensePoseError", "UsageError", "InputError", "WeightsError"])
def test_retarget_reports_the_package_errors_as_its_own(name):
    import densepose_adapter.errors as dp_errors
    from retarget import errors
    from retarget.cli._errors import describe_exception

    cls = getattr(dp_errors, name)
    assert issubclass(cls, errors.RetargetError)
    described = describe_exception(cls("photo.png: first line\nsecond line"))
    assert described.text == "error: photo.png: first line second line"
    assert described.exit_code == (2 if name == "UsageError" else 1)
