"""Benchmark of ``retarget stream``: throughput and latency of the live path on the bundled example.

    .venv/bin/python bench/stream.py [--frames 60] [--variants weight-free full densepose-512 densepose-256]
        [--full-frames 12] [--densepose-frames 12] [--modes realtime fast]

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

One line per run (``variant=... mode=... fps=... latency_p50_ms=... latency_p95_ms=... dropped=...``)
and, last, ``stream fps=<x> latency_p50_ms=<x> latency_p95_ms=<x> dropped=<n>`` of the weight-free
realtime run. docs/performance.md records a run with the CPU named.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retarget.pipeline.live import Retargeter  # noqa: E402
from retarget.pipeline.live_stream import StreamSettings, run_stream  # noqa: E402
from retarget.pipeline.precision import cpu_description  # noqa: E402

EXAMPLES = REPO / "examples"
VARIANTS = ("weight-free", "full", "densepose-512", "densepose-256")


def full_size_models():
    from retarget.models import Inpainter, Refiner
    from retarget.pipeline import Models

    torch.manual_seed(0)
    inpainter, refiner = Inpainter(ngf=32).eval(), Refiner(ngf=256).eval()
    for module in inpainter.modules():  # plausible BN statistics for random weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.fill_(1.0)
    return Models(inpainter, refiner)


def densepose_backend(size: int):
    sys.path.insert(0, str(REPO / "bench"))
    from densepose import make_model  # bench/densepose.py: the random-weight R50 it times

    from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend

    model = make_model(fuse_bn=True)
    return TorchvisionDensePoseBackend(config=model.cfg, model=model, min_score=0.8, densepose_size=size,
                                       track=True)


def retargeter(variant: str) -> Retargeter:
    options = {"models": None, "engine": "torch"}
    if variant == "full":
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
    args = parser.parse_args()
    print(f"cpu: {cpu_description()}; torch threads: {torch.get_num_threads()}")
    headline = None
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
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
    if headline is None:
        headline = summary
    print(f"stream fps={headline.fps:.2f} latency_p50_ms={headline.percentile(50):.1f} "
          f"latency_p95_ms={headline.percentile(95):.1f} dropped={headline.dropped}")


if __name__ == "__main__":
    main()
