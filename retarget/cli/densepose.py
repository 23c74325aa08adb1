"""``retarget densepose``: DensePose IUV for an image or every frame of a video."""

from __future__ import annotations

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
    'Examples:\n\n'
    '  retarget densepose photo.jpg --out photo_dp.npz\n\n'
    '  retarget densepose dance.mp4 --out iuv_frames/ --densepose-size 512\n\n'
    '  retarget densepose photo.jpg --out out/ --weights model_final_162be9.pkl --config r101\n'
)


@app.command("densepose", help=_HELP)
def densepose_command(
    input: Annotated[Path, typer.Argument(metavar="INPUT", help="Image or video file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder, or a .npz file.",
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
) -> None:
    from densepose_adapter.backends import make_backend

    if not input.is_file():
        raise InputError(f"{input}: no such file")
    if backend_name not in ("torchvision", "detectron2"):
        raise UsageError(f"--densepose-backend must be torchvision or detectron2, got {backend_name!r}")
    to_npz = out.suffix.lower() == ".npz"
    if not to_npz and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder (use a folder or a .npz file)")
    is_video = _is_video(input)

    kwargs = {"weights": weights, "config": config, "min_score": min_score, "densepose_size": densepose_size,
              "device": device}
    if backend_name == "torchvision":
        kwargs["track"] = bool(track and is_video)
    try:
        backend = make_backend(backend_name, **kwargs)
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

    iuvs, boxes, scores, frame_index = [], [], [], []
    n = 0
    with_person = 0
    for idx, frame in enumerate(_read_video(input)):
        if max_frames and idx >= max_frames:
            break
        result = backend.predict([frame])[0]
        n += 1
        with_person += int(len(result.scores) > 0)
        if to_npz:
            iuvs.append(result.iuv)
            boxes.append(result.boxes.reshape(-1, 4))
            scores.append(result.scores.reshape(-1))
            frame_index.append(np.full(len(result.scores), idx, dtype=np.int64))
        else:
            _write_png(out / f"{input.stem}_{idx:06d}_IUV.png", result.iuv)
    if n == 0:
        raise InputError(f"{input}: no frames could be decoded")
    if to_npz:
        _write_npz(out, iuv=np.stack(iuvs), boxes=np.concatenate(boxes).astype(np.float32),
                   scores=np.concatenate(scores).astype(np.float32), frame_index=np.concatenate(frame_index))
    typer.echo(f"wrote {n} frame(s) to {out} ({with_person} with a person)")


# ----------------------------------------------------------------------------------------------
def _is_video(path: Path) -> bool:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return False
    if ext in VIDEO_EXTS:
        return True
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_COLOR) is None


def _read_image(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{path}: not a readable image")
    return image


def _read_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001 - any decoder error is an input problem
        raise InputError(f"{path}: not a readable video ({type(exc).__name__})") from None
    try:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: video decoding failed ({type(exc).__name__})") from None
    finally:
        container.close()


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
