"""Crash safety: an interrupted `retarget video` resumes from the DensePose cache and writes the same frames.

- fast: in-process, a DensePose stand-in whose results depend on its tracking state (like the
  torchvision port's tracked-region mode) is interrupted mid-video; the resumed run must compute the
  remaining frames exactly as an uninterrupted run did;
- slow (CI): ``kill -9`` of a real ``retarget video`` process running the DensePose port with the
  tiny official-format checkpoint, then the same command again; its frames (before encoding) equal
  those of an uninterrupted run, and a corrupted cache entry is recomputed, not trusted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from densepose_adapter.types import DensePoseResult
from retarget.pipeline.densepose_stage import DensePoseCache
from retarget.pipeline.job import VideoJob, run_video_job
from retarget.pipeline.video import VideoOptions
from tests import badmedia
from tests.assets import densepose_args, densepose_dir
from tests.conftest import REPO

N_FRAMES = 10


def _marked_driver(folder: Path, n: int = N_FRAMES) -> tuple[Path, np.ndarray]:
    """A driver whose frames carry their index in a corner block (so a stand-in can recognise them)."""
    frames, iuvs = badmedia.person_frames(n, 96, 96)
    for i, frame in enumerate(frames):
        frame[:8, :8] = 8 + 16 * i
        iuvs[i, :8, :8] = 0
    return badmedia.write_video(folder / "marked.mp4", frames), iuvs


class TrackingLookup:
    """DensePose stand-in with tracking state: each box is averaged with the previous frame's box."""

    name = "tracking-lookup"

    def __init__(self, iuvs: np.ndarray, fail_after: int | None = None, observes: bool = True):
        self.iuvs, self.fail_after, self.calls = iuvs, fail_after, 0
        self.prev: np.ndarray | None = None
        if not observes:
            self.observe = None  # behave like a backend that cannot be told about cached frames

    def cache_key(self) -> str:
        return "tracking-lookup-1"

    def reset_tracking(self) -> None:
        self.prev = None

    def observe(self, result: DensePoseResult) -> None:
        self.prev = result.boxes[int(np.argmax(result.scores))].copy() if len(result.scores) else None

    def predict(self, images_bgr):
        out = []
        for image in images_bgr:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt  # the user pressed Ctrl-C (or the machine went down)
            index = int(round((float(image[:8, :8].mean()) - 8) / 16))
            result = DensePoseResult.from_iuv(self.iuvs[index])
            if len(result.boxes) and self.prev is not None:
                result.boxes = ((result.boxes + self.prev) / 2).astype(np.float32)
            TrackingLookup.observe(self, result)  # the tracker follows what it just computed
            self.calls += 1
            out.append(result)
        return out


def _run(source: Path, driver: Path, out: Path, backend) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    job = VideoJob(source=source, driver=driver, output=out, size=64, overwrite=True,
                   densepose_backend="torchvision", options=VideoOptions(quiet=True, batch_size=3))
    run_video_job(job, None, backend, on_frame=lambda i, rgb: frames.append(rgb.copy()))
    return frames


def _reference_then_interrupted(tmp_path, monkeypatch):
    """An uninterrupted run's frames, then the same job interrupted at its 5th DensePose call."""
    source, _ = badmedia.write_source(tmp_path, (96, 128))
    driver, iuvs = _marked_driver(tmp_path)
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(tmp_path / "cache-reference"))
    reference = _run(source, driver, tmp_path / "reference.mp4", TrackingLookup(iuvs))
    monkeypatch.setenv("RETARGET_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(KeyboardInterrupt):
        _run(source, driver, tmp_path / "out.mp4", TrackingLookup(iuvs, fail_after=4))
    return source, driver, iuvs, reference


def test_interrupted_run_resumes_with_identical_frames(tmp_path, monkeypatch):
    source, driver, iuvs, reference = _reference_then_interrupted(tmp_path, monkeypatch)
    assert not (tmp_path / "out.mp4").exists()
    raw = DensePoseCache(driver, TrackingLookup(iuvs).cache_key()).folder  # (the filtered frames have their own)
    entries = sorted(raw.glob("*.npz"))
    assert len(entries) == 3  # the finished DensePose batch (of 3) was kept; the interrupted one is redone

    resumed_backend = TrackingLookup(iuvs)
    resumed = _run(source, driver, tmp_path / "out.mp4", resumed_backend)
    assert resumed_backend.calls == N_FRAMES - 3  # resumed, not recomputed
    assert len(resumed) == len(reference) == N_FRAMES
    for a, b in zip(reference, resumed):
        np.testing.assert_array_equal(a, b)

    # a corrupted entry is detected by its checksum and recomputed, in order, giving the same frames
    victim = entries[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    again_backend = TrackingLookup(iuvs)
    again = _run(source, driver, tmp_path / "out.mp4", again_backend)
    assert again_backend.calls == 1
    for a, b in zip(reference, again):
        np.testing.assert_array_equal(a, b)


def test_the_resume_check_has_teeth(tmp_path, monkeypatch):
    """Without telling the tracker about cached frames, the resumed frames differ: the fix matters."""
    source, driver, iuvs, reference = _reference_then_interrupted(tmp_path, monkeypatch)
    resumed = _run(source, driver, tmp_path / "out.mp4", TrackingLookup(iuvs, observes=False))
    assert any(not np.array_equal(a, b) for a, b in zip(reference, resumed))


# ------------------------------------------------------------------------------------------ kill -9
_DUMP_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
import retarget.pipeline.job as job

dump = Path(sys.argv[1])
dump.mkdir(parents=True, exist_ok=True)
real = job.render_video

def render(*args, on_frame=None, **kwargs):
    summary = real(*args, on_frame=lambda i, rgb: np.save(dump / f"{i:05d}.npy", rgb), **kwargs)
    (dump / "densepose_calls").write_text(str(summary.densepose_calls))
    return summary

job.render_video = render
from retarget.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _fixture_driver(folder: Path, n: int) -> Path:
    """Frames of a photo (on which the tiny generated checkpoint finds a person), panning."""
    import cv2

    image = cv2.imread(str(densepose_dir() / "image.png"))[..., ::-1]
    image = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
    return badmedia.write_video(folder / "walk.mp4", [np.roll(image, 3 * i, axis=1) for i in range(n)])


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_from_the_cache(tmp_path):
    n = 8
    source, _ = badmedia.write_source(tmp_path, (96, 128))
    driver = _fixture_driver(tmp_path, n)
    script = tmp_path / "dump_frames.py"
    script.write_text(_DUMP_SCRIPT)
    cache = tmp_path / "cache"

    def command(dump: str, out: str) -> list[str]:
        return [sys.executable, str(script), str(tmp_path / dump), "video", "--source", str(source), "--driver",
                str(driver), "-o", str(tmp_path / out), "--densepose-backend", "torchvision",
                *densepose_args(96),
                "--size", "64", "--weight-free", "-q",
                "--no-temporal-filter"]  # counts raw DensePose entries (the filter, on, is covered above)

    def run(dump: str, out: str, cache_dir: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "RETARGET_CACHE_DIR": str(cache_dir)}
        result = subprocess.run(command(dump, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result

    def frames(dump: str) -> list[np.ndarray]:
        return [np.load(p) for p in sorted((tmp_path / dump).glob("*.npy"))]

    # 1. start, and kill -9 once a few frames are in the cache
    env = {**os.environ, "RETARGET_CACHE_DIR": str(cache)}
    victim = subprocess.Popen(command("killed", "out.mp4"), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(cache.rglob("0*.npz"))) < 3:
        assert victim.poll() is None, "finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done_before = len(list(cache.rglob("0*.npz")))
    assert 3 <= done_before < n and not (tmp_path / "out.mp4").exists()

    # 2. the same command again resumes: only the missing frames go through DensePose
    run("resumed", "out.mp4", cache)
    assert int((tmp_path / "resumed" / "densepose_calls").read_text()) == n - done_before
    assert (tmp_path / "out.mp4").is_file() and not list(tmp_path.glob(".out.*"))

    # 3. an uninterrupted run (fresh cache) writes the same frames
    run("reference", "reference.mp4", tmp_path / "fresh-cache")
    reference, resumed = frames("reference"), frames("resumed")
    assert len(reference) == len(resumed) == n
    for a, b in zip(reference, resumed):
        np.testing.assert_array_equal(a, b)

    # 4. a corrupted cache entry is recomputed, not trusted
    entry = sorted(cache.rglob("0*.npz"))[1]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    run("recomputed", "again.mp4", cache)
    assert int((tmp_path / "recomputed" / "densepose_calls").read_text()) == 1
    for a, b in zip(reference, frames("recomputed")):
        np.testing.assert_array_equal(a, b)
