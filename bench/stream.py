"""Benchmark of ``retarget stream``: throughput and latency of the live path on the bundled example.

    .venv/bin/python bench/stream.py [--frames 60] [--variants weight-free full densepose-512 densepose-256
        keyframes-256] [--full-frames 12] [--densepose-frames 12] [--modes realtime fast] [--keyframe-loops 2]

The example driver (``examples/driver.mp4``, 480x360, 20 fps) is replayed into
:func:`retarget.pipeline.live_stream.run_stream` exactly as ``retarget stream --input examples/driver.mp4``
runs it, writing MPEG-TS to a temporary file:

- ``realtime``: ``--realtime --drop late`` (the file paced at 20 fps, as a camera; frames that come
  while the renderer is busy are dropped, oldest first);
- ``fast``: ``--drop none`` (as fast as possible, every frame rendered).

Variants: ``weight-free`` (no learned models, driver IUV from the example's sidecar: ``--input-iuv``),
``full`` (full-size inpainter + refiner, official widths, random weights; first ``--full-frames``
frames), ``densepose-512`` / ``densepose-256`` (weight-free render, but DensePose R50 run on every
frame at that input size: a random-weight model, so the timing is real and no person is found; the
frames then show the background, ``--on-missing``).

``keyframes-256`` is the live path of issue 30: ``--densepose-every auto``, the example driver replayed
at **25 fps** (a 25 fps copy of its frames, played forth and back ``--keyframe-loops`` times, 5 = 12 s;
``--realtime``), DensePose
asynchronous in its worker thread. Random DensePose weights detect nobody useful, so its backend is a
*replay*: each call runs the full-size random-weight R50 (``bench/densepose.py``'s model, one confident
box, so the DensePose head runs too) at ``--densepose-size 256`` on the frame — the real per-call cost,
on the same cores as the renderer — then answers the example's precomputed IUV of that frame (matched by
a thumbnail). The per-call time is measured twice: alone before the run (``densepose_call_ms``, the
thread count the run gives it) and inside the run (``in_stream_call_ms``). Only the ``realtime`` mode
runs for it. Also printed: ``render_cpu_ms_per_output_frame`` (CPU time of the rendering thread per output
frame, flow and checks included: less sensitive to other processes' load than wall time) and
``carry_ms_per_carried_frame`` (wall time of the keyframe stage per frame carried by flow).

One line per run (``variant=... mode=... fps=... latency_p50_ms=... latency_p95_ms=... dropped=...``)
and ``stream fps=<x> latency_p50_ms=<x> latency_p95_ms=<x> dropped=<n>`` of the weight-free realtime run,
then (last, when it ran) the same line for ``keyframes-256``. docs/performance.md records a run with the
CPU named and the load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retarget.pipeline.live import Retargeter  # noqa: E402
from retarget.pipeline.live_stream import StreamSettings, run_stream  # noqa: E402
from retarget.pipeline.precision import cpu_description  # noqa: E402

EXAMPLES = REPO / "examples"
VARIANTS = ("weight-free", "full", "densepose-512", "densepose-256", "keyframes-256")


def densepose_backend(size: int):
    sys.path.insert(0, str(REPO / "bench"))
    from densepose import make_model  # bench/densepose.py: the random-weight R50 it times

    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend

    model = make_model(fuse_bn=True)
    return TorchvisionDensePoseBackend(config=model.cfg, model=model, min_score=0.8, densepose_size=size,
                                       track=True)


class ReplayDensePose:
    """A DensePose backend with the real cost and the example's IUV: runs ``model`` on the frame, then
    answers the precomputed IUV of the example frame that looks most like it (32x24 thumbnails)."""

    name = "replay"

    def __init__(self, model, frames_rgb: list, sidecar):
        import cv2

        self.model = model
        self.sidecar = sidecar
        self.thumbs = np.stack([self._thumb(f[..., ::-1]) for f in frames_rgb])
        self.seconds: list[float] = []
        self._cv2 = cv2

    @staticmethod
    def _thumb(bgr):
        import cv2

        return cv2.resize(np.ascontiguousarray(bgr), (32, 24), interpolation=cv2.INTER_AREA).astype(np.int32)

    def reset_tracking(self):
        self.model.reset_tracking()

    def predict(self, images):
        tick = time.perf_counter()
        self.model.predict(images)  # the cost; its random-weight answer is not used
        self.seconds.append(time.perf_counter() - tick)
        out = []
        for bgr in images:
            index = int(np.abs(self.thumbs - self._thumb(bgr)).sum(axis=(1, 2, 3)).argmin())
            out.append(self.sidecar.get(index, bgr.shape[:2]))
        return out


def driver_at_25fps(folder: Path, loops: int) -> tuple[Path, list]:
    """The example driver's frames, ``loops`` times (forth, back, forth, ...), as a 25 fps file (H.264,
    near-lossless), and its frames."""
    import av

    from retarget.io.video import iter_frames

    frames = [f.rgb for f in iter_frames(EXAMPLES / "driver.mp4")]
    path = folder / "driver25.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "4", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        order = [k for loop in range(loops) for k in (range(len(frames)) if loop % 2 == 0
                                                      else range(len(frames) - 1, -1, -1))]
        for i, k in enumerate(order):  # forth and back: a continuous motion, no cut at the seams
            frame = av.VideoFrame.from_ndarray(frames[k], format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path, frames


def keyframe_retargeter(size: int, frames: list):
    from densepose_adapter.precomputed import PrecomputedIUV
    from retarget.pipeline.live_keyframes import thread_budget

    backend = ReplayDensePose(densepose_backend(size), frames, PrecomputedIUV(EXAMPLES / "driver.iuv"))
    with thread_budget() as threads:  # the per-call cost alone, at the thread count the stream gives it
        backend.predict([np.ascontiguousarray(frames[0][..., ::-1])])  # warm-up
        backend.seconds.clear()
        for f in frames[5:8]:
            backend.predict([np.ascontiguousarray(f[..., ::-1])])
    alone = 1000 * float(np.median(backend.seconds))
    backend.seconds.clear()
    live = Retargeter(EXAMPLES / "source.jpg", EXAMPLES / "source_IUV.png", models=None, engine="torch",
                      densepose_model=backend, densepose_every="auto")
    return live, backend, alone, threads


def retargeter(variant: str) -> Retargeter:
    options = {"models": None, "engine": "torch"}
    if variant == "full":
        sys.path.insert(0, str(REPO / "bench"))
        from video import full_size_models  # bench/video.py: the same random full-size models

        options["models"] = full_size_models()
    elif variant.startswith("densepose-"):
        options["densepose_model"] = densepose_backend(int(variant.split("-")[1]))
        options["on_missing"] = "background"
    return Retargeter(EXAMPLES / "source.jpg", EXAMPLES / "source_IUV.png", **options)


def run(live: Retargeter, variant: str, mode: str, frames: int, folder: Path):
    settings = StreamSettings(input=str(EXAMPLES / "driver.mp4"), output=str(folder / f"{variant}-{mode}.ts"),
                              input_iuv=None if variant.startswith("densepose-") else EXAMPLES / "driver.iuv",
                              realtime=mode == "realtime", drop="late" if mode == "realtime" else "none",
                              overwrite=True, max_frames=frames)
    return run_stream(live, settings, quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="Input frames per run (the example has 60).")
    parser.add_argument("--full-frames", type=int, default=12, help="Input frames for the full-size variant.")
    parser.add_argument("--densepose-frames", type=int, default=12, help="Input frames for the DensePose variants.")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--modes", nargs="+", default=["realtime", "fast"], choices=["realtime", "fast"])
    parser.add_argument("--keyframe-loops", type=int, default=5,
                        help="keyframes-256: times the example driver is replayed, forth and back (60 frames "
                             "each, 25 fps).")
    args = parser.parse_args()
    print(f"cpu: {cpu_description()}; torch threads: {torch.get_num_threads()}; "
          f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    headline = keyed = None
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            if variant == "keyframes-256":
                keyed = run_keyframes(Path(tmp), args.keyframe_loops)
                continue
            live = retargeter(variant)
            frames = (args.full_frames if variant == "full" else args.densepose_frames
                      if variant.startswith("densepose-") else args.frames)
            for mode in args.modes:
                summary = run(live, variant, mode, frames, Path(tmp))
                per_stage = {k: round(1000 * v / max(1, summary.frames_out), 1) for k, v in summary.times.items()}
                print(f"variant={variant} mode={mode} frames_in={summary.frames_in} frames_out={summary.frames_out} "
                      f"fps={summary.fps:.2f} latency_p50_ms={summary.percentile(50):.1f} "
                      f"latency_p95_ms={summary.percentile(95):.1f} dropped={summary.dropped} "
                      f"ms_per_output_frame={per_stage}", flush=True)
                if variant == "weight-free" and mode == "realtime":
                    headline = summary
    for result in (headline, keyed):
        if result is not None:
            print(f"stream fps={result.fps:.2f} latency_p50_ms={result.percentile(50):.1f} "
                  f"latency_p95_ms={result.percentile(95):.1f} dropped={result.dropped}")


def run_keyframes(folder: Path, loops: int):
    """The ``keyframes-256`` run (see the module docstring); prints its line, returns its summary."""
    driver, frames = driver_at_25fps(folder, loops)
    live, backend, alone, threads = keyframe_retargeter(256, frames)
    settings = StreamSettings(input=str(driver), output=str(folder / "keyframes-256.ts"), realtime=True,
                              drop="late", overwrite=True)
    cpu = time.thread_time()  # the rendering thread's own CPU time: less sensitive to the load than wall time
    summary = run_stream(live, settings, quiet=True)
    cpu = time.thread_time() - cpu
    log = summary.keyframes
    per_stage = {k: round(1000 * v / max(1, summary.frames_out), 1) for k, v in summary.times.items()}
    reasons = {}
    for why in log.reasons.values():
        reasons[why] = reasons.get(why, 0) + 1
    print(f"variant=keyframes-256 mode=realtime-25fps frames_in={summary.frames_in} "
          f"frames_out={summary.frames_out} fps={summary.fps:.2f} latency_p50_ms={summary.percentile(50):.1f} "
          f"latency_p95_ms={summary.percentile(95):.1f} dropped={summary.dropped} "
          f"densepose_calls={summary.densepose_calls} keyframes_used={len(log.keyframes)} reasons={reasons} "
          f"frames_carried={log.carried} frames_without_pose={log.missing} "
          f"keyframe_age_frames_mean={np.mean(log.lag) if log.lag else 0:.1f} densepose_call_ms={alone:.0f} "
          f"in_stream_call_ms={1000 * float(np.median(backend.seconds)) if backend.seconds else 0:.0f} "
          f"threads={threads} render_cpu_ms_per_output_frame={1000 * cpu / max(1, summary.frames_out):.1f} "
          f"carry_ms_per_carried_frame={1000 * summary.times.get('keyframe_flow', 0) / max(1, log.carried):.1f} "
          f"ms_per_output_frame={per_stage}", flush=True)
    return summary


if __name__ == "__main__":
    main()
