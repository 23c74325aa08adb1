"""Benchmark of the video pipeline against a naive reference-style loop, measured in one run.

    .venv/bin/python bench/video.py [--frames 8] [--batches 1 4 8] [--no-rss]
        [--engines torch openvino] [--precisions fp32 int8] [--device cpu|cuda]

- Builds full-size models (official widths: inpainter ngf 32, refiner ngf 256; random weights).
- Driver: the first ``--frames`` frames of ``examples/driver.mp4`` with its IUV sidecar.
- Ours: ``run_video_job`` (source work once, refiner source branch once, batched refiner) for every
  batch size; prints frames/s and per-stage seconds per frame.
- Naive: the reference's per-frame loop (rebuild the coordinate texture, inpaint, run the full
  refiner, batch 1) with the same decode, crop, composite and encode, on the same frames.
- Engines × precisions × batches (``--engines``, ``--precisions``): every variant renders the same
  frames; its error is that of its final frames vs torch fp32 (first batch size) on the same frames,
  in 0–255 grey levels over all pixels. OpenVINO conversion / int8 quantization happen before the
  timing (they are cached once per weights and shape). int8 runs even over its error budget here
  (``over_budget="run"``) so its error is reported; ``--accuracy-control`` lets NNCF revert layers.
  The last lines are one per variant:
  ``variant=<engine>-<precision>-b<batch> s_per_frame=<x> vs_naive=<r> err_mean=<grey> err_p99=<grey>``.
- ``--device cuda``: the same lines on a CUDA device (torch engine; fp16 autocast with ``--precisions fp16``).
- RSS: peak resident memory of ``retarget video`` (weight-free) on a 5 s and a 50 s driver, each in
  its own process.

Prints ratios; docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retarget.io.video import VideoWriter, iter_frames, probe_video  # noqa: E402
from retarget.models import Inpainter, Refiner  # noqa: E402
from retarget.pipeline import Models, prepare_source, render_targets  # noqa: E402
from retarget.pipeline.densepose_stage import FrameDensePose  # noqa: E402
from retarget.pipeline.job import VideoJob, driver_densepose, load_source, run_video_job  # noqa: E402
from retarget.pipeline.precision import cpu_description  # noqa: E402
from retarget.pipeline.video import (  # noqa: E402
    VideoOptions,
    _composite,
    _frame_jobs,
    analyse_driver,
)

EXAMPLES = REPO / "examples"


def trimmed_driver(folder: Path, frames: int) -> Path:
    """The first ``frames`` frames of the example driver (+ its IUV sidecar) in ``folder``."""
    src = EXAMPLES / "driver.mp4"
    info = probe_video(src)
    out = folder / "driver.mp4"
    with VideoWriter(out, info.width, info.height, info.fps, info.time_base) as writer:
        for frame in iter_frames(src):
            if frame.index >= frames:
                break
            writer.write(frame.rgb, frame.pts)
    sidecar = folder / "driver.iuv"
    sidecar.mkdir()
    for png in sorted((EXAMPLES / "driver.iuv").glob("*.png"))[:frames]:
        shutil.copy(png, sidecar / png.name)
    shutil.copy(EXAMPLES / "source.jpg", folder / "source.jpg")
    shutil.copy(EXAMPLES / "source_IUV.png", folder / "source_IUV.png")
    return out


def full_size_models() -> Models:
    torch.manual_seed(0)
    inpainter, refiner = Inpainter(ngf=32).eval(), Refiner(ngf=256).eval()
    for module in inpainter.modules():  # plausible BN statistics for random weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.fill_(1.0)
    return Models(inpainter, refiner)


def run_ours(folder: Path, models: Models, batch: int, precision: str = "fp32", engine: str = "torch",
             device: str = "cpu") -> dict:
    frames: dict[int, np.ndarray] = {}
    job = VideoJob(source=folder / "source.jpg", driver=folder / "driver.mp4", output=folder / f"ours_b{batch}.mp4",
                   overwrite=True, options=VideoOptions(batch_size=batch, quiet=True, precision=precision,
                                                        engine=engine, device=device))
    summary = run_video_job(job, models, on_frame=lambda i, rgb: frames.__setitem__(i, rgb.copy()))
    return {"frames": summary.frames, "seconds": summary.seconds, "timings": summary.timings, "rgb": frames}


def variant_models(models: Models, engine: str, precision: str, batch: int, accuracy_control: bool) -> Models:
    """``models`` for one variant; OpenVINO conversion / quantization done here, outside the timing."""
    if engine != "openvino":
        return models
    from retarget.engine.openvino_refiner import OpenVINORefiner
    from retarget.pipeline.calibration_frames import calibration_frames_for

    refiner = OpenVINORefiner(models.refiner, precision=precision, batch_size=batch, size=256,
                              calibration_frames=calibration_frames_for(models, 256), over_budget="run",
                              accuracy_control=accuracy_control)
    if precision == "int8":
        meta = refiner.meta
        fp32_layers = ", ".join(meta.get("fp32_convolutions", [])) or "none"
        print(f"  int8 refiner crop error on the example frames: mean {meta['err_mean']:.2f}, p99 "
              f"{meta['err_p99']:.1f} grey levels ({meta['method']}); within budget: {meta['within_budget']}; "
              f"convolutions in fp32: {fp32_layers}", flush=True)
    return Models(models.inpainter, refiner)


def frame_error(frames: dict, reference: dict) -> tuple[float, float]:
    """``(mean, p99)`` |difference| in grey levels over all pixels of the frames both runs rendered."""
    diffs = [np.abs(frames[i].astype(np.int16) - reference[i].astype(np.int16)).ravel()
             for i in sorted(set(frames) & set(reference))]
    d = np.concatenate(diffs) if diffs else np.zeros(1)
    return float(d.mean()), float(np.percentile(d, 99))


def run_naive(folder: Path, models: Models, device: str = "cpu") -> dict:
    """Reference-style: everything per frame, batch 1 (same decode / crop / composite / encode)."""
    start = time.perf_counter()
    job = VideoJob(source=folder / "source.jpg", driver=folder / "driver.mp4", output=folder / "naive.mp4",
                   overwrite=True, options=VideoOptions(batch_size=1, quiet=True))
    options = job.options
    source = load_source(job)
    densepose: FrameDensePose = driver_densepose(job)
    info = probe_video(job.driver)
    track = analyse_driver(job.driver, densepose, options, info)
    image = torch.from_numpy(source.image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    uv = torch.from_numpy(source.uv).permute(2, 0, 1)[None].to(device)
    size = source.image.shape[0]
    frames = 0
    last = None
    with VideoWriter(job.output, info.width, info.height, info.fps, info.time_base, audio_from=job.driver) as writer:
        for frame in iter_frames(job.driver, info.rotation):
            jobs, last = _frame_jobs([frame], track, densepose, size, options, 0, last)
            _, crop, target_uv, keep = jobs[0]
            person = None
            if target_uv is not None:
                state = prepare_source(image, uv, models)  # texture + inpainting + source branch, every frame
                target = torch.from_numpy(target_uv).permute(2, 0, 1)[None].to(device)
                result = render_targets(state, target, models)
                person = (result.output[0].permute(1, 2, 0).cpu().numpy(), result.target_mask[0, 0].cpu().numpy())
            writer.write(_composite(frame, crop, person, track.plate, options, size, keep), frame.pts)
            frames += 1
    return {"frames": frames, "seconds": time.perf_counter() - start}


def synthetic_driver(folder: Path, seconds: int, fps: int = 20) -> Path:
    """A 480x360 driver of ``seconds`` built by looping the example clip and its IUV sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    src_frames = [f.rgb for f in iter_frames(EXAMPLES / "driver.mp4")]
    pngs = sorted((EXAMPLES / "driver.iuv").glob("*.png"))
    out = folder / "driver.mp4"
    sidecar = folder / "driver.iuv"
    sidecar.mkdir(exist_ok=True)
    n = seconds * fps
    with VideoWriter(out, 480, 360, Fraction(fps), Fraction(1, fps)) as writer:
        for i in range(n):
            k = i % len(src_frames) if (i // len(src_frames)) % 2 == 0 else len(src_frames) - 1 - i % len(src_frames)
            writer.write(src_frames[k], i)
            os.link(pngs[k], sidecar / f"frame_{i:06d}_IUV.png")
    shutil.copy(EXAMPLES / "source.jpg", folder / "source.jpg")
    shutil.copy(EXAMPLES / "source_IUV.png", folder / "source_IUV.png")
    return out


# VmHWM (peak RSS of this process image), not ru_maxrss: Linux carries ru_maxrss over from the parent
# across fork/exec, so a child of this (large) benchmark process would report the parent's peak.
_RSS_SCRIPT = """
import sys
from retarget.cli import main
code = main(sys.argv[1:])
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print("MAXRSS_KB", hwm.split()[1])
sys.exit(code)
"""


def peak_rss(folder: Path) -> float:
    args = [sys.executable, "-c", _RSS_SCRIPT, "video", "--source", str(folder / "source.jpg"),
            "--driver", str(folder / "driver.mp4"), "--weight-free", "--quiet", "--overwrite",
            "-o", str(folder / "out.mp4")]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MAXRSS_KB")][0]
    return int(line.split()[1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                        help="precisions to measure ours with (the naive loop is always fp32): fp32, bf16, fp16 "
                             "(CUDA), int8 (OpenVINO)")
    parser.add_argument("--engines", nargs="+", default=["torch"], choices=["torch", "openvino"],
                        help="engines of the per-frame refiner")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--accuracy-control", action="store_true",
                        help="int8: let NNCF revert sensitive layers to fp32 when over the error budget (slow)")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--rss-only", action="store_true", help="only the 5 s / 50 s peak-RSS comparison")
    args = parser.parse_args()
    where = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
             else cpu_description())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}: {where}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.rss_only:
            timings(folder, args)
        if not args.no_rss:
            short = synthetic_driver(folder / "short", 5)
            long = synthetic_driver(folder / "long", 50)
            rss_short, rss_long = peak_rss(short.parent), peak_rss(long.parent)
            print(f"\npeak RSS (weight-free, 480x360): 5 s driver {rss_short:.0f} MB, 50 s driver "
                  f"{rss_long:.0f} MB, ratio {rss_long / rss_short:.3f}")


def timings(folder: Path, args) -> None:
    """Naive loop vs ours at every engine, precision and batch size, on the same frames."""
    models = full_size_models().to(args.device)
    trimmed_driver(folder, args.frames)
    naive = run_naive(folder, models, args.device)
    naive_per_frame = naive["seconds"] / naive["frames"]
    print(f"\nnaive reference-style loop: {naive_per_frame:.2f} s/frame ({naive['frames']} frames)")
    reference = run_ours(folder, models, args.batches[0], "fp32", "torch", args.device)["rgb"]
    print(f"\n{'engine':>8} {'precision':>9} {'batch':>5} {'s/frame':>8} {'frames/s':>9} {'vs naive':>9}")
    rows = []
    for engine in args.engines:
        for precision in args.precisions:
            if engine == "torch" and precision == "int8":
                continue  # int8 is OpenVINO's
            if engine == "openvino" and precision == "fp16":
                continue  # fp16 is the CUDA autocast path
            for batch in args.batches:
                variant = variant_models(models, engine, precision, batch, args.accuracy_control)
                ours = run_ours(folder, variant, batch, precision, engine, args.device)
                per_frame = ours["seconds"] / ours["frames"]
                err = frame_error(ours["rgb"], reference)
                rows.append((batch, per_frame, ours, precision, engine, err))
                print(f"{engine:>8} {precision:>9} {batch:>5} {per_frame:>8.2f} {1 / per_frame:>9.3f} "
                      f"{per_frame / naive_per_frame:>8.2f}x", flush=True)
    best = min(rows, key=lambda r: r[1])
    print(f"\nper-stage seconds per frame (ours, {best[4]} {best[3]}, batch {best[0]}):")
    for stage, seconds in best[2]["timings"].items():
        if stage not in ("analysis_s", "total_s"):
            print(f"  {stage:<18} {seconds / best[2]['frames']:.4f}")
    print()
    for batch, per_frame, _, precision, engine, (err_mean, err_p99) in rows:
        print(f"variant={engine}-{precision}-b{batch} s_per_frame={per_frame:.3f} "
              f"vs_naive={per_frame / naive_per_frame:.3f} err_mean={err_mean:.3f} err_p99={err_p99:.1f}")


if __name__ == "__main__":
    main()
