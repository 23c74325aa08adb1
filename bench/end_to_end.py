"""End-to-end speed and accuracy of the offline pipeline (issue 30): keyframes, engines, overlap, in one run.

    .venv/bin/python bench/end_to_end.py [--clips DIR ...] [--every 2 3 4 auto] [--timed default keyframes engines
        all all+overlap] [--frames 60] [--batch-size 4] [--densepose-size 512] [--device cpu|cuda] [--cache DIR]
        [--no-timing]

Accuracy, on every folder of ``../shared/real`` holding ``rgb/`` + ``iuv/`` (cv2 order: B = I, G = U, R = V;
``<stem>_IUV.png`` or ``<stem>.png`` per ``rgb/<stem>.*``, frames sorted by the number in their name) and
on any ``--clips`` folder, for each K of ``--every`` (and 4, the timed one): the clip's real every-frame DensePose
is read at the keyframes only (what ``--driver-iuv … --densepose-every K`` does) and carried to the other frames
(:func:`densepose_adapter.keyframes.propagate`, the pipeline's settings).

- ``agree``: part-label agreement of the carried IUV with the real DensePose at the non-keyframes, over
  the person pixels of either (background counts as a label);
- ``self_agree``: DensePose's own consistency, the same measure between each frame's DensePose and the
  previous frame's carried to it by DIS flow (flow-compensated consecutive-frame agreement);
- ``densepose_calls``, and ``fewer`` = frames / calls. Target (issue 30): ``fewer ≥ 3`` with
  ``agree ≥ self_agree − 0.03`` on every clip.

Timing, ``render_video`` (pass 1 + pass 2) on the first ``--frames`` frames of ``examples/driver.mp4`` (480×360,
cut losslessly), full-size models with random weights (``bench/video.py``: inpainter ngf 32, refiner ngf 256),
crop 256, and DensePose *run in the pipeline* on every keyframe: :class:`SidecarTimedBackend` runs the
torchvision R50 port (full size, random weights with the box classifier biased to one confident person,
``bench/densepose.py``; ``--engine auto``: backbone + FPN on OpenVINO) in its tracked-region mode fed the
example sidecar's person box of the frame (random weights detect nobody), and returns the sidecar's IUV as the
frame's result. Conversions, the ``auto`` probe and the source photo's preparation happen before the timer.
Variants (:data:`VARIANTS`):

- ``default``: today's default before issue 30: every frame, ``--engine auto`` = OpenVINO fp32, passes in turn;
- ``keyframes``: ``--densepose-every 4`` only;
- ``engines``: ``--engine auto --precision auto`` only (the probed choice: :mod:`retarget.engine.auto`);
- ``all``: both (keyframes + engines, each on by its option);
- ``all+overlap``: and the overlap (the refiner rendering during pass 1, :class:`retarget.pipeline.video.RenderAhead`,
  ``VideoOptions.overlap``; off by default: slower than the passes in turn on a quiet 2-core CPU).

``frame_err_mean``: mean absolute difference (0–255 grey levels, all pixels, all frames) of the variant's output
frames vs ``default``'s (every-frame DensePose = the sidecar, fp32).

The last lines are one per variant:
``e2e variant=<name> s_per_frame=<x> vs_default=<r> densepose_calls=<n> agree=<x> self_agree=<x>
frame_err_mean=<grey>`` (agree and self_agree: means over the clips at K = 4; ``-`` without keyframes).
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

#: The variants timed: (name, --densepose-every, --engine, --precision, overlap). ``default`` is today's
#: default before issue 30: every frame, ``--engine auto`` = OpenVINO fp32 (the fixed rule), the passes in turn.
VARIANTS = {
    "default": ("1", "openvino", "fp32", False),
    "keyframes": ("4", "openvino", "fp32", False),
    "engines": ("1", "auto", "auto", False),
    "all": ("4", "auto", "auto", False),  # keyframes + engines: everything on by its option
    "all+overlap": ("4", "auto", "auto", True),  # and the overlap (VideoOptions.overlap, off by default)
}


class SidecarTimedBackend:
    """A DensePose model backend whose *time* is the full-size R50 port's and whose *results* are the example's
    precomputed IUV: each call runs the port (random weights, tracked-region mode fed the sidecar's person box of
    that frame — random weights detect nobody) and returns the sidecar's result for the frame (found by the
    frame's pixels). ``tag`` keys a fresh DensePose cache per variant."""

    name = "bench-r50-sidecar"

    def __init__(self, size: int, device: str, engine: str):
        from densepose import make_model  # bench/densepose.py

        from densepose_adapter.precomputed import PrecomputedIUV
        from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend
        from retarget.engine import densepose_engine_kwargs
        from retarget.io.video import iter_frames

        model = make_model(False)
        self.inner = TorchvisionDensePoseBackend(config=model.cfg, model=model, min_score=0.8, densepose_size=size,
                                                 track=True, device=device,
                                                 **densepose_engine_kwargs(engine, device, quiet=True))
        self.sidecar = PrecomputedIUV(EXAMPLES / "driver.iuv")
        self.iter_frames = iter_frames
        self.index: dict[str, int] = {}
        self.tag = ""
        self.calls = 0

    def use_driver(self, driver: Path) -> None:
        """Frames are recognised by their pixels in ``driver`` (a cut of the example driver)."""
        self.index = {self._digest(np.ascontiguousarray(f.rgb[..., ::-1])): f.index for f in self.iter_frames(driver)}

    @staticmethod
    def _digest(bgr: np.ndarray) -> str:
        import hashlib

        return hashlib.sha1(bgr.tobytes()).hexdigest()

    @property
    def model(self):  # the runner finds the OpenVINO backbone here (thread budget)
        return self.inner.model

    def cache_key(self) -> str:
        return f"{self.name}-{self.inner.cache_key()}-{self.tag}"

    def reset_tracking(self) -> None:
        self.inner.reset_tracking()

    def predict(self, images_bgr):
        import torch

        out = []
        for bgr in images_bgr:
            result = self.sidecar.get(self.index[self._digest(np.ascontiguousarray(bgr))], bgr.shape[:2])
            self.inner._prev_box = np.asarray(result.boxes[0]) if len(result.boxes) else None
            with torch.inference_mode():
                self.inner.predict([bgr])
            self.calls += 1
            out.append(result)
        return out


def run_variant(name: str, models, backend: SidecarTimedBackend, frames: int, device: str, batch: int):
    """``(seconds of render_video, frames, DensePose calls, output frames, timings, summary)`` of one variant on
    the first ``frames`` frames of the example driver."""
    from retarget.pipeline.job import VideoJob, driver_densepose, load_source
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.video import VideoOptions, engine_models, render_video

    every, engine, precision, overlap = VARIANTS[name]
    if not device.startswith("cpu"):  # CUDA: torch (OpenVINO is CPU-only; --precision auto is fp32 there)
        engine = "auto"
    out_frames: list[np.ndarray] = []
    options = VideoOptions(quiet=True, densepose_every=every, engine=engine, precision=precision, overlap=overlap,
                           device=device, batch_size=batch)
    backend.tag, backend.calls = f"{name}-{time.time_ns()}", 0
    with tempfile.TemporaryDirectory() as tmp:
        driver = trimmed_driver(Path(tmp), frames)
        backend.use_driver(driver)
        job = VideoJob(source=EXAMPLES / "source.jpg", driver=driver, output=Path(tmp) / "out.mp4",
                       densepose_backend="torchvision", options=options)
        source = load_source(job)
        state = prepare_source_crop(source, models, options.device, fill=options.fill)
        wrapped = engine_models(models, options, state.image.shape[-1])  # converted / probed before the timing
        densepose = driver_densepose(job, backend)
        tick = time.perf_counter()
        summary = render_video(source, state, job.driver, job.output, densepose, wrapped, options,
                               on_frame=lambda i, rgb: out_frames.append(rgb.copy()))
        seconds = time.perf_counter() - tick
    return seconds, summary.frames, backend.calls, out_frames, summary.timings, summary


def trimmed_driver(folder: Path, frames: int) -> Path:
    """The example driver's first ``frames`` frames (lossless FFV1, so the pixels are the decoded ones)."""
    from fractions import Fraction

    import av

    from retarget.io.video import iter_frames, probe_video

    path = folder / "driver.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=Fraction(probe_video(EXAMPLES / "driver.mp4").fps).limit_denominator(1001))
        for frame in iter_frames(EXAMPLES / "driver.mp4"):
            if frame.index >= frames:
                break
            if frame.index == 0:
                stream.width, stream.height = frame.rgb.shape[1], frame.rgb.shape[0]
                stream.pix_fmt = "bgr0"
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, nargs="*", default=[], help="more folders with rgb/ + iuv/")
    ap.add_argument("--every", nargs="+", default=["4"], help="values of K whose accuracy is measured on the clips "
                    "(the timed keyframe variants use K = 4)")
    ap.add_argument("--timed", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                    help="variants timed (default first: the others are compared with it)")
    ap.add_argument("--frames", type=int, default=60, help="first frames of the example driver timed (≤ 60)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--densepose-size", type=int, default=512)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--cache", type=Path, default=None, help="RETARGET_CACHE_DIR (converted engines, the auto "
                    "choice) kept between runs; default: a temporary folder")
    ap.add_argument("--no-timing", action="store_true", help="accuracy only")
    args = ap.parse_args()
    for value in args.every + [VARIANTS["keyframes"][0]]:
        check_every(value)
    import torch

    where = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
             else cpu_description())
    print(f"# {args.device}: {where}", flush=True)

    clips = find_clips(args.clips)
    every = sorted(set(args.every) | {VARIANTS["keyframes"][0]})
    accuracy: dict[str, list[tuple[float, float]]] = {v: [] for v in every}
    for folder in clips:
        frames = load_clip(folder)
        if len(frames) < 2:
            print(f"clip={folder} skipped (fewer than 2 frames with IUV)")
            continue
        self_agree = self_agreement(frames)
        name = folder.relative_to(SHARED_REAL) if folder.is_relative_to(SHARED_REAL) else folder
        for value in every:
            calls, agree = keyframe_accuracy(frames, check_every(value))
            fewer = len(frames) / calls
            ok = fewer >= 3 and agree >= self_agree - 0.03
            accuracy[value].append((agree, self_agree))
            print(f"clip={name} variant=keyframes-{value} frames={len(frames)} densepose_calls={calls} "
                  f"fewer={fewer:.2f}x agree={agree:.3f} self_agree={self_agree:.3f} "
                  f"agree-self={agree - self_agree:+.3f} target={'met' if ok else 'missed'}", flush=True)
    if args.no_timing:
        return

    from video import full_size_models  # bench/video.py

    with tempfile.TemporaryDirectory(prefix="e2e-cache-") as tmp:
        os.environ["RETARGET_CACHE_DIR"] = str(args.cache or tmp)
        os.environ.pop("RETARGET_ENGINE", None)
        models = full_size_models()
        backend = SidecarTimedBackend(args.densepose_size, args.device, "auto")
        print(f"# timing: full-size models (random weights), the first {args.frames} frames of examples/driver.mp4, "
              f"batch {args.batch_size}; DensePose: the torchvision R50 port (random weights, tracked region fed "
              f"the sidecar's person box, --densepose-size {args.densepose_size}, --engine auto) run on every "
              f"keyframe, its results the sidecar's; {os.getloadavg()[0]:.1f} load at start", flush=True)
        lines, reference, base = [], None, None
        for name in ["default"] + [v for v in args.timed if v != "default"]:
            seconds, n, calls, frames, timings, summary = run_variant(name, models, backend, args.frames,
                                                                      args.device, args.batch_size)
            per_frame = seconds / n
            if reference is None:
                reference, base = frames, per_frame
            err = float(np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()
                                 for a, b in zip(frames, reference)]))
            k = VARIANTS[name][0]
            pairs = accuracy.get(k, []) if k != "1" else []
            agree = f"{np.mean([a for a, _ in pairs]):.3f}" if pairs else "-"
            self_agree = f"{np.mean([s for _, s in pairs]):.3f}" if pairs else "-"
            where_time = ", ".join(f"{key} {v / n * 1000:.0f}" for key, v in timings.items()
                                   if key not in ("total_s", "analysis_s"))
            print(f"# {name}: {seconds:.1f} s for {n} frames (pass 1 {timings['analysis_s']:.1f} s), {calls} DensePose "
                  f"calls, {summary.overlap.get('rendered_ahead', 0)} frames rendered during pass 1 "
                  f"({summary.overlap.get('threads')}); load {os.getloadavg()[0]:.1f}; ms per frame: {where_time}",
                  flush=True)
            lines.append(f"e2e variant={name} s_per_frame={per_frame:.3f} vs_default={per_frame / base:.3f} "
                         f"densepose_calls={calls} agree={agree} self_agree={self_agree} frame_err_mean={err:.2f}")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
