"""End-to-end speed and accuracy of DensePose keyframes (``--densepose-every``), in one run.

    .venv/bin/python bench/end_to_end.py [--clips DIR ...] [--variants 2 3 4 auto] [--densepose-size 512]
        [--device cpu|cuda] [--no-timing]

Accuracy, on every folder of ``../shared/real`` holding ``rgb/`` + ``iuv/`` (cv2 order: B = I, G = U, R = V;
``<stem>_IUV.png`` or ``<stem>.png`` per ``rgb/<stem>.*``, frames sorted by the number in their name) and
on any ``--clips`` folder, for each K: the clip's real every-frame DensePose is read at the keyframes only
(what ``--driver-iuv … --densepose-every K`` does) and carried to the other frames
(:func:`densepose_adapter.keyframes.propagate`, the pipeline's settings).

- ``agree``: part-label agreement of the carried IUV with the real DensePose at the non-keyframes, over
  the person pixels of either (background counts as a label);
- ``self_agree``: DensePose's own consistency, the same measure between each frame's DensePose and the
  previous frame's carried to it by DIS flow (flow-compensated consecutive-frame agreement);
- ``densepose_calls``, and ``fewer`` = frames / calls. Target (issue 30): ``fewer ≥ 3`` with
  ``agree ≥ self_agree − 0.03`` on every clip.

Timing, on ``examples/driver.mp4`` (60 frames, 480×360) with its precomputed IUV ``examples/driver.iuv/``,
weight-free path (``run_video_job`` pieces; an empty DensePose cache per variant, so the flow work is
timed): the pipeline's own seconds, plus DensePose's as measured per call of the torchvision port with
the full-size R50 and random weights (``bench/densepose.py``'s model: the box classifier biased to one
confident person, the tracked-region mode fed the sidecar's person box of the frame: random weights
detect nobody) at ``--densepose-size``, times the number of keyframes. ``frame_err_mean``: mean absolute
difference (0–255 grey levels, all pixels, all frames) of the variant's output frames vs the default's
(every-frame DensePose = the sidecar).

The last lines are one per variant:
``e2e variant=<name> s_per_frame=<x> vs_default=<r> densepose_calls=<n> agree=<x> self_agree=<x>
frame_err_mean=<grey>`` (agree and self_agree: means over the clips; ``-`` for the default).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from densepose_adapter.keyframes import KeyframeSettings, carry_iuv, dense_flow, propagate  # noqa: E402
from densepose_adapter.types import DensePoseResult  # noqa: E402
from retarget.pipeline.keyframes import check_every  # noqa: E402
from retarget.pipeline.precision import cpu_description  # noqa: E402

EXAMPLES = REPO / "examples"
SHARED_REAL = REPO.parent / "shared" / "real"


# -- accuracy ----------------------------------------------------------------------------------------

def find_clips(extra: list[Path]) -> list[Path]:
    """Folders with ``rgb/`` and ``iuv/`` under ``../shared/real`` (two levels) and ``extra``."""
    found = []
    if SHARED_REAL.is_dir():
        for folder in sorted([SHARED_REAL, *SHARED_REAL.glob("*"), *SHARED_REAL.glob("*/*")]):
            if (folder / "rgb").is_dir() and (folder / "iuv").is_dir():
                found.append(folder)
    return found + [Path(p) for p in extra]


def _number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else 0


def load_clip(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(grey, iuv [I, U, V])`` per frame, in frame order."""
    out = []
    for rgb in sorted((p for p in (folder / "rgb").iterdir() if p.is_file()), key=_number):
        iuv_path = next((p for p in (folder / "iuv" / f"{rgb.stem}_IUV.png", folder / "iuv" / f"{rgb.stem}.png")
                         if p.is_file()), None)
        if iuv_path is None:
            continue
        image, iuv = cv2.imread(str(rgb), cv2.IMREAD_COLOR), cv2.imread(str(iuv_path), cv2.IMREAD_COLOR)
        if image is None or iuv is None or image.shape[:2] != iuv.shape[:2]:
            continue
        out.append((cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), iuv))  # cv2 order: channel 0 = B = I
    return out


def agreement(labels: np.ndarray, truth: np.ndarray) -> float:
    person = (labels > 0) | (truth > 0)
    return float(np.mean(labels[person] == truth[person])) if person.any() else 1.0


def self_agreement(frames) -> float:
    values = []
    for (g0, i0), (g1, i1) in zip(frames, frames[1:]):
        values.append(agreement(carry_iuv(i0, dense_flow(g1, g0))[..., 0], i1[..., 0]))
    return float(np.mean(values))


def keyframe_accuracy(frames, every: int | None) -> tuple[int, float]:
    """``(DensePose calls, agreement at the non-keyframes)`` of a K on a clip."""
    calls: list[int] = []

    def densepose(t: int) -> DensePoseResult:
        calls.append(t)
        return DensePoseResult.from_iuv(frames[t][1])

    values = [agreement(c.result.iuv[..., 0], frames[t][1][..., 0])
              for t, c in propagate(((t, g) for t, (g, _) in enumerate(frames)), densepose,
                                    KeyframeSettings(every=every)) if not c.keyframe]
    return len(calls), float(np.mean(values)) if values else float("nan")


# -- timing ------------------------------------------------------------------------------------------

def densepose_seconds_per_call(size: int, device: str, image_rgb: np.ndarray, box: np.ndarray, calls: int = 2):
    """Median seconds of one tracked call of the full-size R50 port (random weights) on ``image_rgb``."""
    import torch
    from densepose import make_model  # bench/densepose.py

    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend

    backend = TorchvisionDensePoseBackend(config=make_model(False).cfg, model=make_model(False), min_score=0.8,
                                          densepose_size=size, track=True, device=device)
    bgr = np.ascontiguousarray(image_rgb[..., ::-1])
    times = []
    with torch.inference_mode():
        for k in range(calls + 1):  # the first is a warm-up
            backend._prev_box = box.copy()  # a tracked frame around the sidecar's person
            tick = time.perf_counter()
            backend.predict([bgr])
            if k:
                times.append(time.perf_counter() - tick)
    return float(np.median(times))


def run_variant(every: str, cache: Path):
    """``(seconds, frames, keyframes, output frames)`` of the weight-free example job with ``every``."""
    os.environ["RETARGET_CACHE_DIR"] = str(cache)
    from retarget.pipeline.job import VideoJob, driver_densepose, load_source
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.video import VideoOptions, render_video

    out_frames: list[np.ndarray] = []
    options = VideoOptions(quiet=True, densepose_every=every)
    with tempfile.TemporaryDirectory() as tmp:
        job = VideoJob(source=EXAMPLES / "source.jpg", driver=EXAMPLES / "driver.mp4",
                       driver_iuv=EXAMPLES / "driver.iuv", output=Path(tmp) / "out.mp4", options=options)
        tick = time.perf_counter()
        source = load_source(job)
        state = prepare_source_crop(source, None, options.device, fill=options.fill)
        densepose = driver_densepose(job)
        summary = render_video(source, state, job.driver, job.output, densepose, None, options,
                               on_frame=lambda i, rgb: out_frames.append(rgb.copy()))
        seconds = time.perf_counter() - tick
    stage = getattr(densepose, "inner", densepose)
    keyframes = getattr(stage, "keyframes", None)
    calls = len(keyframes) if keyframes is not None else summary.frames
    return seconds, summary.frames, calls, out_frames, summary.timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, nargs="*", default=[], help="more folders with rgb/ + iuv/")
    ap.add_argument("--variants", nargs="+", default=["2", "3", "4", "auto"], help="values of K")
    ap.add_argument("--densepose-size", type=int, default=512)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (DensePose timing)")
    ap.add_argument("--no-timing", action="store_true", help="accuracy only")
    args = ap.parse_args()
    for value in args.variants:
        check_every(value)
    import torch

    where = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
             else cpu_description())
    print(f"# {args.device}: {where}")

    clips = find_clips(args.clips)
    accuracy: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
    for folder in clips:
        frames = load_clip(folder)
        if len(frames) < 2:
            print(f"clip={folder} skipped (fewer than 2 frames with IUV)")
            continue
        self_agree = self_agreement(frames)
        name = folder.relative_to(SHARED_REAL) if folder.is_relative_to(SHARED_REAL) else folder
        for value in args.variants:
            calls, agree = keyframe_accuracy(frames, check_every(value))
            fewer = len(frames) / calls
            ok = fewer >= 3 and agree >= self_agree - 0.03
            accuracy[value].append((agree, self_agree))
            print(f"clip={name} variant=keyframes-{value} frames={len(frames)} densepose_calls={calls} "
                  f"fewer={fewer:.2f}x agree={agree:.3f} self_agree={self_agree:.3f} "
                  f"agree-self={agree - self_agree:+.3f} target={'met' if ok else 'missed'}", flush=True)
    if args.no_timing:
        return

    import itertools

    from densepose_adapter.precomputed import PrecomputedIUV
    from retarget.io.video import iter_frames

    first = next(itertools.islice(iter_frames(EXAMPLES / "driver.mp4"), 1))
    person = PrecomputedIUV(EXAMPLES / "driver.iuv").get(0, first.rgb.shape[:2])
    dp_s = densepose_seconds_per_call(args.densepose_size, args.device, first.rgb, np.asarray(person.boxes[0]))
    print(f"# DensePose (torchvision port, R50 full size, random weights, tracked, --densepose-size "
          f"{args.densepose_size}, {args.device}): {dp_s:.3f} s per call", flush=True)
    lines = []
    reference = None
    base = None
    for value in ["1"] + list(args.variants):
        with tempfile.TemporaryDirectory(prefix="e2e-cache-") as cache:
            seconds, n, calls, frames, timings = run_variant(value, Path(cache))
        total = seconds + calls * dp_s
        per_frame = total / n
        if reference is None:
            reference, base = frames, per_frame
        err = float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
                             for a, b in zip(frames, reference)]))
        name = "default" if value == "1" else f"keyframes-{value}"
        pairs = accuracy.get(value, [])
        agree = f"{np.mean([a for a, _ in pairs]):.3f}" if pairs else "-"
        self_agree = f"{np.mean([s for _, s in pairs]):.3f}" if pairs else "-"
        where_time = ", ".join(f"{k} {v / n * 1000:.1f}" for k, v in timings.items()
                               if k not in ("total_s", "analysis_s"))
        print(f"# {name}: pipeline {seconds:.2f} s for {n} frames + DensePose {calls} × {dp_s:.3f} s; "
              f"ms per frame: {where_time}", flush=True)
        lines.append(f"e2e variant={name} s_per_frame={per_frame:.3f} vs_default={per_frame / base:.3f} "
                     f"densepose_calls={calls} agree={agree} self_agree={self_agree} frame_err_mean={err:.2f}")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
