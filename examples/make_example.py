"""Generate the bundled example (run from the repository root; needs ../shared/samples).

    .venv/bin/python examples/make_example.py [--samples ../shared/samples] [--out examples]

Writes:
- ``source.jpg`` and ``source_IUV.png``: a reference sample photo and its DensePose IUV render;
- ``driver.mp4``: 480×360, 20 fps, 3 s, H.264 + AAC tone: another sample person cut out by its IUV
  render, moving along a smooth translation / scale / rotation path over a textured background;
- ``driver.iuv/frame_<index>_IUV.png``: the driver's per-frame DensePose IUV renders (on disk B = I,
  G = U·255, R = V·255), warped exactly like the person: the precomputed DensePose sidecar.

The sample photos come from DeepFashion via the reference repository (research use only).
"""

from __future__ import annotations

import argparse
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

SOURCE_ID = "WOMEN#Blouses_Shirts#id_00007424#02_7_additional"
DRIVER_ID = "WOMEN#Dresses#id_00000106#03_7_additional"
WIDTH, HEIGHT, FPS, SECONDS = 480, 360, 20, 3


def textured_background(rng: np.random.Generator) -> np.ndarray:
    """A soft gradient with some blobs, so that the scene plate has something to show."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    bg = np.stack([150 + 60 * x / WIDTH, 170 - 40 * y / HEIGHT, 190 + 0 * x], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(15, 50)
        colour = rng.uniform(60, 230, size=3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        bg = bg * (1 - 0.6 * blob) + colour * 0.6 * blob
    return np.clip(bg, 0, 255).astype(np.uint8)


def pose_at(t: float) -> tuple[float, float, float, float]:
    """Smooth path: centre x, centre y, scale, rotation (degrees) at time t in [0, 1]."""
    cx = WIDTH / 2 + 110 * np.sin(2 * np.pi * t)
    cy = HEIGHT / 2 + 10 * np.sin(4 * np.pi * t)
    scale = 1.15 + 0.15 * np.sin(2 * np.pi * t + 1.0)
    angle = 8 * np.sin(2 * np.pi * t)
    return cx, cy, scale, angle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("../shared/samples"))
    parser.add_argument("--out", type=Path, default=Path("examples"))
    args = parser.parse_args()
    samples, out = args.samples, args.out
    out.mkdir(parents=True, exist_ok=True)

    shutil.copyfile(samples / "source_img" / f"{SOURCE_ID}.jpg", out / "source.jpg")
    shutil.copyfile(samples / "source_iuv" / f"{SOURCE_ID}_IUV.png", out / "source_IUV.png")

    person = cv2.imread(str(samples / "source_img" / f"{DRIVER_ID}.jpg"))[..., ::-1]
    iuv = cv2.imread(str(samples / "source_iuv" / f"{DRIVER_ID}_IUV.png"), cv2.IMREAD_UNCHANGED)
    alpha = cv2.GaussianBlur(cv2.dilate((iuv[..., 0] > 0).astype(np.float32), np.ones((5, 5))), (5, 5), 1.0)
    background = textured_background(np.random.default_rng(0))
    ph, pw = person.shape[:2]

    frames_iuv = []
    tmp = out / "driver.tmp.mp4"
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "23", "preset": "veryslow"}
        audio = container.add_stream("aac", rate=22050)
        audio.layout = "mono"
        n = FPS * SECONDS
        for i in range(n):
            cx, cy, scale, angle = pose_at(i / n)
            m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, scale)
            m[:, 2] += (cx - pw / 2, cy - ph / 2)
            warped = cv2.warpAffine(person, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
            a = cv2.warpAffine(alpha, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)[..., None]
            frame = (background * (1 - a) + warped * a).astype(np.uint8)
            frames_iuv.append(cv2.warpAffine(iuv, m, (WIDTH, HEIGHT), flags=cv2.INTER_NEAREST))
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, FPS)
            for packet in video.encode(vf):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        # a quiet two-tone melody so the audio pass-through is audible
        samples_total = 22050 * SECONDS
        t = np.arange(samples_total) / 22050
        tone = 0.15 * np.sin(2 * np.pi * np.where((t * 2).astype(int) % 2, 440, 330) * t)
        for start in range(0, samples_total, 1024):
            chunk = tone[start:start + 1024].astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            af.sample_rate, af.pts = 22050, start
            for packet in audio.encode(af):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    tmp.replace(out / "driver.mp4")
    sidecar = out / "driver.iuv"
    shutil.rmtree(sidecar, ignore_errors=True)
    sidecar.mkdir()
    for i, frame_iuv in enumerate(frames_iuv):
        cv2.imwrite(str(sidecar / f"frame_{i:06d}_IUV.png"), frame_iuv, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file() and p.suffix != ".py"}
    sizes["driver.iuv/"] = sum(p.stat().st_size for p in sidecar.iterdir())
    print(f"wrote {out}: " + ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in sorted(sizes.items())))


if __name__ == "__main__":
    main()
