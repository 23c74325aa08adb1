"""``retarget densepose``: DensePose IUV for an image or every frame of a video."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from retarget.cli.app import app
from retarget.errors import DensePoseWeightsMissing, InputError, UsageError, WeightsError
from retarget.io.atomic import write_bytes_atomic

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}

_HELP = (
    'Run DensePose on an image or a video and write IUV maps.\n\n'
    'IUV arrays are (H, W, 3) uint8 with channels [I, U*255, V*255] (I = body part 1..24, 0 = '
    'background). PNG files are written with OpenCV, so on disk B = I, G = U*255, R = V*255: the layout '
    "of DensePose's *_IUV.png files. Where people overlap, the most confident one is on top.\n\n"
    'Image + --out FILE.npz: `boxes` (N,4 xyxy, image pixels), `scores` (N,), `iuv` (H,W,3). Image + '
    '--out DIR: DIR/<name>_IUV.png. Video + --out DIR: DIR/<name>_<frame:06d>_IUV.png. Video + --out '
    'FILE.npz: `iuv` (T,H,W,3) and all boxes `boxes` (M,4), `scores` (M,) with their frame in '
    '`frame_index` (M,).\n\n'
    'Video + --render segm --out FILE.mp4: H.264 video of the part index drawn like DensePose\'s '
    'fine-segmentation visualiser on black; --render iuv: the IUV map as colour (R = V, G = U, B = I). '
    'Both keep the input\'s size, frame count and timing. --iuv DIR|NPZ reads precomputed IUV (the '
    'sidecar formats of `retarget video --driver-iuv`) instead of running the model; --temporal-filter '
    'stabilises a video\'s IUV over time; --densepose-every K runs DensePose (or reads --iuv) on every K-th '
    'frame only and carries the IUV between by optical flow.\n\n'
    'Examples:\n\n'
    '  retarget densepose photo.jpg --out photo_dp.npz\n\n'
    '  retarget densepose dance.mp4 --out iuv_frames/ --densepose-size 512\n\n'
    '  retarget densepose photo.jpg --out out/ --weights model_final_162be9.pkl --config r101\n\n'
    '  retarget densepose dance.mp4 --render segm --temporal-filter --out dance_segm.mp4\n\n'
    '  retarget densepose dance.mp4 --iuv dance.iuv/ --temporal-filter --out dance_stable.npz\n'
)


@app.command("densepose", help=_HELP)
def densepose_command(
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="Image or video file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder, a .npz file, or a video .mp4 (--render).",
                                      show_default=False)],
    weights: Annotated[Path | None, typer.Option(
        "--weights", help="detectron2 DensePose .pkl (default: the installed official file).")] = None,
    config: Annotated[str, typer.Option(
        "--config", help="r50, r101, or a JSON file {config, overrides: {detectron2 option: value}}.")] = "r50",
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Detection score threshold [default: 0.8, or the JSON config's].")] = None,
    densepose_size: Annotated[int, typer.Option(
        "--densepose-size", help="Shortest side of the network input (800 official; 512 is faster).")] = 800,
    backend_name: Annotated[str, typer.Option(
        "--densepose-backend", help="torchvision (port) or detectron2.")] = "torchvision",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
    track: Annotated[bool, typer.Option(
        "--track/--no-track",
        help="Videos: run on a crop around the previous frame's person (faster; single performer).")] = True,
    max_frames: Annotated[int, typer.Option(
        "--max-frames", help="Videos: stop after this many frames (0 = all).")] = 0,
    iuv: Annotated[Path | None, typer.Option(
        "--iuv", help="Videos: precomputed IUV (folder of *_IUV.png or .npz) instead of the model.")] = None,
    temporal_filter: Annotated[bool, typer.Option(
        "--temporal-filter/--no-temporal-filter", help="Videos: stabilise the IUV over time.")] = False,
    temporal_strength: Annotated[int, typer.Option(
        "--temporal-strength", min=1, max=8, help="Temporal filter window: frames on each side.")] = 2,
    render: Annotated[str | None, typer.Option(
        "--render", help="Videos: segm or iuv, written as an H.264 video to --out FILE.mp4.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Videos: frames per model call.")] = 1,
    densepose_every: Annotated[str, typer.Option(
        "--densepose-every", metavar="K|auto",
        help="Videos: DensePose (or --iuv) on every K-th frame only, IUV carried by optical flow between "
             "(auto: K from the motion); 1 = every frame.")] = "1",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    engine: Annotated[str, typer.Option(
        "--engine", help="torchvision backend: auto (OpenVINO backbone + FPN when installed, on CPU), torch or "
                         "openvino (pip install 'retarget[openvino]').")] = "auto",
) -> None:
    from retarget.io.guard import PathPlan
    from retarget.pipeline.bounds import check_bounds
    from retarget.weights.resolve import open_densepose_backend

    check_bounds("densepose_size", densepose_size)
    check_bounds("batch_size", batch_size)
    if max_frames < 0:  # (itertools.islice raised an internal error on it)
        raise UsageError(f"--max-frames must be 0 (every frame) or more, got {max_frames}")
    plan = PathPlan()  # the input (and --iuv) are regular files; no output is, or lies over, an input
    plan.input(input, noun="an image or video file")
    plan.input(iuv, role="IUV", noun="a folder of IUV PNGs or an .npz", kind="file_or_folder")
    if backend_name not in ("torchvision", "detectron2"):
        raise UsageError(f"--densepose-backend must be torchvision or detectron2, got {backend_name!r}")
    to_npz = out.suffix.lower() == ".npz"
    to_video = out.suffix.lower() in VIDEO_OUT_EXTS
    if render is None and to_video:
        render = "segm"
    if render is not None and render not in ("segm", "iuv"):
        raise UsageError(f"--render must be segm or iuv, got {render!r}")
    if render is not None and not to_video:
        raise UsageError(f"--render {render} writes a video: give --out FILE.mp4, got {out}")
    if not (to_npz or to_video) and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder (use a folder, a .npz or an .mp4 file)")
    from retarget.pipeline.keyframes import check_every

    every = check_every(densepose_every)
    is_video = _is_video(input)
    if not is_video and (iuv is not None or render is not None):
        raise UsageError("--iuv and --render need a video input")
    if to_npz or to_video:
        plan.output(out, overwrite=True)  # this command has always replaced its output file
    elif is_video:  # per-frame PNGs: none may replace an input (--iuv DIR --out DIR)
        plan.output_folder(out, names=re.compile(re.escape(input.stem) + r"_\d{6,}_IUV\.png"), make_parents=True)
    else:
        plan.output_folder(out, names=re.compile(re.escape(f"{input.stem}_IUV.png")), make_parents=True)
        if out.is_dir():
            plan.output(out / f"{input.stem}_IUV.png", overwrite=True)

    if iuv is not None:
        from densepose_adapter.precomputed import PrecomputedIUV

        try:
            backend = PrecomputedIUV(iuv)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    else:
        kwargs = {"weights": weights, "config": config, "min_score": min_score, "densepose_size": densepose_size,
                  "device": device}
        if backend_name == "torchvision":
            from retarget.engine import densepose_engine_kwargs

            kwargs["track"] = bool(track and is_video)
            kwargs.update(densepose_engine_kwargs(engine, device, quiet))
        try:
            backend = open_densepose_backend(backend_name, **kwargs)
        except DensePoseWeightsMissing as exc:
            from retarget.weights.resolve import densepose_missing_message

            raise WeightsError(densepose_missing_message(exc.model, [("input", input)], "densepose")) from None

    if not is_video:
        image = _read_image(input)
        result = backend.predict([image])[0]
        if to_npz:
            _write_npz(out, boxes=result.boxes.astype(np.float32), scores=result.scores.astype(np.float32),
                       iuv=result.iuv)
            typer.echo(f"wrote {out} ({len(result.scores)} person(s))")
        else:
            path = out / f"{input.stem}_IUV.png"
            _write_png(path, result.iuv)
            typer.echo(f"wrote {path} ({len(result.scores)} person(s))")
        return
    _video(input, out, backend, render, temporal_strength if temporal_filter else 0, max_frames, batch_size, quiet,
           every)


VIDEO_OUT_EXTS = {".mp4", ".m4v", ".mov"}


def _video(input: Path, out: Path, backend, render: str | None, radius: int, max_frames: int, batch_size: int,
           quiet: bool, every: int | None = 1) -> None:
    """Every frame of ``input`` through ``backend`` (cached; on keyframes only unless ``every`` is 1), the
    temporal filter, and one of the writers."""
    import itertools

    from densepose_adapter.render import RENDERERS
    from retarget.io.atomic import atomic_output
    from retarget.io.video import VideoWriter, iter_frames, probe_video
    from retarget.pipeline.densepose_stage import DensePoseCache, FrameDensePose
    from retarget.pipeline.keyframes import with_keyframes
    from retarget.pipeline.temporal import source_signature, with_temporal_filter
    from retarget.pipeline.video import _progress

    info = probe_video(input)
    if hasattr(backend, "reset_tracking"):
        backend.reset_tracking()
    cache = None if getattr(backend, "name", "") == "precomputed" else DensePoseCache(input, source_signature(backend))
    keyed = with_keyframes(FrameDensePose(backend, cache), input, every)
    stage = with_temporal_filter(keyed, input, radius)
    frames = iter_frames(input, info.rotation)
    if max_frames:
        frames = itertools.islice(frames, max_frames)
    total = min(info.frame_count, max_frames) if max_frames and info.frame_count else (max_frames or info.frame_count)
    bar = _progress(total, "densepose", quiet)
    iuvs, boxes, scores, frame_index = [], [], [], []
    n = with_person = 0
    try:
        with contextlib.ExitStack() as stack:
            writer = None
            if render is not None:
                tmp = stack.enter_context(atomic_output(out))
                writer = stack.enter_context(VideoWriter(tmp, info.width, info.height, info.fps, info.time_base))
            for frame, result in stage.stream(frames, batch_size):
                n += 1
                with_person += int(result.has_person)
                if writer is not None:
                    writer.write(RENDERERS[render](result.iuv), frame.pts)
                elif out.suffix.lower() == ".npz":
                    iuvs.append(result.iuv)
                    boxes.append(np.asarray(result.boxes, np.float32).reshape(-1, 4))
                    scores.append(np.asarray(result.scores, np.float32).reshape(-1))
                    frame_index.append(np.full(len(scores[-1]), frame.index, dtype=np.int64))
                else:
                    _write_png(out / f"{input.stem}_{frame.index:06d}_IUV.png", result.iuv)
                bar.update(1)
            if n == 0:
                raise InputError(f"{input}: no frames could be decoded")
    finally:
        bar.close()
    if render is None and out.suffix.lower() == ".npz":
        _write_npz(out, iuv=np.stack(iuvs), boxes=np.concatenate(boxes).astype(np.float32),
                   scores=np.concatenate(scores).astype(np.float32), frame_index=np.concatenate(frame_index))
    keyframes = getattr(keyed, "keyframes", None)
    note = f"; DensePose on {len(keyframes)} keyframe(s)" if keyframes is not None else ""
    typer.echo(f"wrote {n} frame(s) to {out} ({with_person} with a person{note})")


# ----------------------------------------------------------------------------------------------
def _is_video(path: Path) -> bool:
    """By the suffix; otherwise a file whose header is no image's is taken for a video (nothing is decoded)."""
    from densepose_adapter.image_header import UnreadableHeader, read_image_header

    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return False
    if ext in VIDEO_EXTS:
        return True
    try:
        read_image_header(path)
    except UnreadableHeader:
        return True
    return False


def _read_image(path: Path) -> np.ndarray:
    import cv2

    from retarget.io.image import checked_header

    checked_header(path, allow_large=None)  # the declared size first: a decompression bomb is refused unread
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{path}: not a readable image")
    return image


def _atomic_bytes(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data, make_parents=True)


def _write_png(path: Path, iuv: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(iuv))  # channel 0 (I) lands in B
    if not ok:
        raise InputError(f"{path}: PNG encoding failed")
    _atomic_bytes(path, buf.tobytes())


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_bytes(path, buf.getvalue())
