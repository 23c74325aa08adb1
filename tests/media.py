"""Synthetic media for tests: small driver clips with a moving 'person', their IUV, and a fake DensePose."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from densepose_adapter.types import DensePoseResult
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO



def sample_source(folder: Path) -> tuple[Path, Path]:
    """Copy the example photo and its IUV render into ``folder`` (photo, photo_IUV.png)."""
    photo = folder / "photo.jpg"
    photo.write_bytes(EXAMPLE_PHOTO.read_bytes())
    iuv = folder / "photo_IUV.png"
    iuv.write_bytes(EXAMPLE_IUV.read_bytes())
    return photo, iuv


def person_track(n: int, width: int) -> np.ndarray:
    """Centre x of the person per frame: left to right."""
    return np.linspace(0.3 * width, 0.7 * width, n)


def make_driver(path: Path, *, n: int = 12, width: int = 160, height: int = 120, fps: int = 10,
                audio: bool = True, sidecar: bool = True, person_scale: float = 0.42,
                missing: tuple[int, ...] = ()) -> np.ndarray:
    """Write a driver clip whose person (the example photo cut out by its IUV) moves left to right.

    Returns the per-frame IUV ``(n, H, W, 3)``; with ``sidecar`` also writes ``<stem>.iuv/`` PNGs.
    Frames listed in ``missing`` show no person.
    """
    person = cv2.imread(str(EXAMPLE_PHOTO))[..., ::-1]
    iuv_src = cv2.imread(str(EXAMPLE_IUV), cv2.IMREAD_UNCHANGED)
    scale = person_scale * height / 256
    background = np.full((height, width, 3), (90, 110, 130), np.uint8)
    xs = person_track(n, width)
    frames, iuvs = [], []
    for i in range(n):
        m = np.array([[scale, 0, xs[i] - 128 * scale], [0, scale, height / 2 - 128 * scale]], np.float32)
        iuv = cv2.warpAffine(iuv_src, m, (width, height), flags=cv2.INTER_NEAREST)
        body = cv2.warpAffine(person, m, (width, height), flags=cv2.INTER_LINEAR)
        if i in missing:
            iuv[:] = 0
        mask = (iuv[..., :1] > 0)
        frames.append(np.where(mask, body, background))
        iuvs.append(iuv)
    write_clip(path, frames, fps, audio=audio)
    iuv_stack = np.stack(iuvs)
    if sidecar:
        folder = path.with_name(path.stem + ".iuv")
        folder.mkdir(exist_ok=True)
        for i, iuv in enumerate(iuv_stack):
            cv2.imwrite(str(folder / f"frame_{i:05d}_IUV.png"), iuv)
    return iuv_stack


#: The two people of :func:`make_group_driver`: (scale × height/256, centre x at the first and last
#: frame as a fraction of the width, RGB tint). The right one is taller (largest); the left one is
#: nearer the frame centre (center).
GROUP = ((0.36, 0.30, 0.34, (1.0, 0.45, 0.45)), (0.46, 0.76, 0.71, (0.45, 1.0, 0.45)))


#: Two people of whom the right one stands lower (in front) and overlaps the left one.
OVERLAPPING = ((0.40, 0.39, 0.41, (1.0, 0.45, 0.45), 0.45), (0.46, 0.48, 0.46, (0.45, 1.0, 0.45), 0.55))


def make_group_driver(path: Path, *, n: int = 8, width: int = 200, height: int = 120, fps: int = 10,
                      sidecar: str = "png", people=GROUP) -> np.ndarray:
    """Write a driver clip with two people (the example photo, tinted red and green, see :data:`GROUP`)
    walking slowly towards each other without touching, and its IUV sidecar.

    ``sidecar``: ``png`` (a ``<stem>.iuv/`` folder: merged IUV, no boxes), ``npz`` (``<stem>.iuv.npz``
    with per-frame ``boxes`` (T, 2, 4) and ``scores``), ``detections`` (``<stem>.iuv.npz`` with one row
    per box and ``frame_index``, as ``retarget densepose VIDEO --out FILE.npz`` writes) or ``none``.

    ``people``: (scale, first and last centre x as a fraction of the width, tint[, centre y fraction]),
    drawn in order (a later person hides an earlier one where they overlap).

    Returns:
        ``(n, 2, H, W)`` bool masks of each person's visible pixels (in ``people`` order) per frame.
    """
    photo = cv2.imread(str(EXAMPLE_PHOTO))[..., ::-1].astype(np.float32)
    iuv_src = cv2.imread(str(EXAMPLE_IUV), cv2.IMREAD_UNCHANGED)
    ys, xs = np.nonzero(iuv_src[..., 0] > 0)
    own_cx, own_cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    background = np.full((height, width, 3), (90, 110, 130), np.uint8)
    frames, iuvs, masks, boxes = [], [], [], []
    for i in range(n):
        frame, iuv = background.copy(), np.zeros((height, width, 3), np.uint8)
        frame_masks, frame_boxes = [], []
        for scale, x_first, x_last, tint, *y in people:
            s = scale * height / 256
            cx = width * (x_first + (x_last - x_first) * i / max(1, n - 1))
            cy = height * (y[0] if y else 0.5)
            m = np.array([[s, 0, cx - own_cx * s], [0, s, cy - own_cy * s]], np.float32)
            part = cv2.warpAffine(iuv_src, m, (width, height), flags=cv2.INTER_NEAREST)
            body = cv2.warpAffine(photo * np.float32(tint), m, (width, height), flags=cv2.INTER_LINEAR)
            mask = part[..., 0] > 0
            frame[mask] = np.clip(np.round(body[mask]), 0, 255).astype(np.uint8)
            iuv[mask] = part[mask]
            frame_masks = [m & ~mask for m in frame_masks] + [mask]
            ys, xs = np.nonzero(mask)
            frame_boxes.append([xs.min() - 2, ys.min() - 2, xs.max() + 3, ys.max() + 3])
        frames.append(frame)
        iuvs.append(iuv)
        masks.append(frame_masks)
        boxes.append(frame_boxes)
    write_clip(path, frames, fps)
    if sidecar == "png":
        folder = path.with_name(path.stem + ".iuv")
        folder.mkdir(exist_ok=True)
        for i, iuv in enumerate(iuvs):
            cv2.imwrite(str(folder / f"frame_{i:05d}_IUV.png"), iuv)
    elif sidecar == "npz":
        np.savez(path.with_name(path.stem + ".iuv.npz"), iuv=np.stack(iuvs), boxes=np.array(boxes, np.float32),
                 scores=np.array([[0.8, 0.9]] * n, np.float32))
    elif sidecar == "detections":
        np.savez(path.with_name(path.stem + ".iuv.npz"), iuv=np.stack(iuvs),
                 boxes=np.array(boxes, np.float32).reshape(-1, 4), scores=np.full(2 * n, 0.9, np.float32),
                 frame_index=np.repeat(np.arange(n), 2))
    return np.array(masks)


def tinted_source(folder: Path, tint=(0.35, 0.35, 1.0)) -> Path:
    """The example photo tinted (blue by default) with its IUV render beside it: a source whose
    person is told apart from :func:`make_group_driver`'s people by colour."""
    photo = cv2.imread(str(EXAMPLE_PHOTO)).astype(np.float32)
    path = folder / "blue.png"
    cv2.imwrite(str(path), np.clip(photo * np.float32(tint[::-1]), 0, 255).astype(np.uint8))
    (folder / "blue_IUV.png").write_bytes(EXAMPLE_IUV.read_bytes())
    return path


def write_clip(path: Path, frames: list[np.ndarray], fps: int, audio: bool = False) -> None:
    """Encode RGB ``frames`` as an H.264 ``.mp4``; ``audio``: with a 440 Hz AAC tone as long as the video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if audio:
            astream = container.add_stream("aac", rate=16000)
            astream.layout = "mono"
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio:
            total = int(16000 * len(frames) / fps)
            tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(total) / 16000)).astype(np.float32)
            for start in range(0, total, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, start
                for packet in astream.encode(af):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)


class LookupDensePose:
    """A stand-in DensePose *model* backend for tests: returns known IUVs in call order, counts calls.

    ``predict`` is given frames in decode order; the lookup is by the frame's mean colour signature
    (robust to codec noise), falling back to call order.
    """

    name = "lookup"

    def __init__(self, iuvs: np.ndarray, fail_after: int | None = None):
        self.iuvs = iuvs
        self.calls = 0
        self.fail_after = fail_after
        self._next = 0

    def cache_key(self) -> str:
        return f"lookup:{self.iuvs.shape}:{int(self.iuvs.sum())}"

    def predict(self, images_bgr):
        out = []
        for image in images_bgr:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("injected DensePose failure")
            # find the IUV whose person mask best matches the non-background pixels of this frame
            fg = np.abs(image.astype(np.int16) - np.array([130, 110, 90])).sum(axis=2) > 40
            scores = [(fg & (iuv[..., 0] > 0)).sum() - (fg ^ (iuv[..., 0] > 0)).sum() for iuv in self.iuvs]
            self.calls += 1
            out.append(DensePoseResult.from_iuv(self.iuvs[int(np.argmax(scores))]))
        return out


def read_video(path: Path) -> tuple[list[np.ndarray], dict]:
    """All frames (RGB) and stream facts of a video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        info = {"fps": float(stream.average_rate), "width": stream.width, "height": stream.height,
                "duration": float(stream.duration * stream.time_base) if stream.duration else None,
                "audio": len(container.streams.audio) > 0}
    return frames, info


def faststart_copy(src: Path, dst: Path) -> Path:
    """Remux ``src`` with the index (moov) at the front, as streaming-friendly files are (so that a cut file
    still lists every frame)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst
