"""Regenerate docs/img/seams.png: the weight-free render without and with the seam smoothing.

The repository's example photo (256², its own IUV) is prepared weight-free and rendered in the pose of one frame
of the example driver (its DensePose IUV, cut to a square around the person as ``bench/quality.py`` cuts the real
photos), four panels: the smoothing off (``SEAMS.sigma = 0``: every output pixel read where its coordinate points);
as shipped (``retarget.ops.smooth_seams``: all the way where the pixel reads the photo, half way where it reads the
colour texture); all the way everywhere (``texture_strength = 1``); the seam pixels (white). Upper body, ×3,
nearest-neighbour.

    .venv/bin/python bench/seam_figure.py [-o docs/img/seams.png] [--frame 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 256


def main() -> None:
    import torch

    from bench.quality import person_crop
    from retarget import ops
    from retarget.pipeline import pair, prepare_source, render_targets
    from retarget.uvmap import iuv_to_uv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "img" / "seams.png")
    parser.add_argument("--frame", type=int, default=30, help="driver frame whose pose is rendered")
    args = parser.parse_args()
    photo = cv2.resize(cv2.imread(str(REPO / "examples" / "source.jpg")), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    iuv = cv2.resize(cv2.imread(str(REPO / "examples" / "source_IUV.png")), (SIZE, SIZE),
                     interpolation=cv2.INTER_NEAREST)
    target = cv2.imread(str(REPO / "examples" / "driver.iuv" / f"frame_{args.frame:06d}_IUV.png"))
    if target is None:
        raise SystemExit(f"no driver IUV for frame {args.frame} in examples/driver.iuv")
    _, target = person_crop(np.zeros_like(target), target, SIZE)
    as_uv = lambda i: torch.from_numpy(iuv_to_uv(i, table="clean")).permute(2, 0, 1)[None]  # noqa: E731  (the weight-free table)
    image = torch.from_numpy(photo[..., ::-1].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    state = prepare_source(image, as_uv(iuv), None)
    shipped = render_targets(state, as_uv(target))
    shipped_seams = pair.SEAMS
    try:
        pair.SEAMS = dataclasses.replace(shipped_seams, sigma=0.0)
        raw = render_targets(state, as_uv(target))
        pair.SEAMS = dataclasses.replace(shipped_seams, texture_strength=1.0)
        everywhere = render_targets(state, as_uv(target))
    finally:
        pair.SEAMS = shipped_seams
    seam = ops.coordinate_seams(raw.target_xy, raw.target_mask, (SIZE, SIZE), pair.SEAMS.jump_px,
                                grow=pair.SEAMS.grow)[0, 0].numpy()
    tiles = [b.output[0].permute(1, 2, 0).numpy() for b in (raw, shipped, everywhere)]
    tiles.append(np.repeat(seam[..., None].astype(np.float32), 3, axis=2))
    rows, cols = np.nonzero(target[..., 0] > 0)
    top, left = max(rows.min() - 4, 0), max(cols.min() - 4, 0)
    side = min(SIZE - top, (rows.max() - rows.min()) // 2 + 8)
    width = min(SIZE - left, cols.max() - cols.min() + 8)
    crops = [(t[top:top + side, left:left + width] * 255).round().astype(np.uint8) for t in tiles]
    gap = np.full((side, 4, 3), 255, np.uint8)
    strip = np.concatenate([crops[0], gap, crops[1], gap, crops[2], gap, crops[3]], axis=1)
    strip = cv2.resize(strip, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), strip[..., ::-1])
    person = raw.target_mask[0, 0].numpy() > 0.5
    print(f"wrote {args.out}: seam pixels {seam[person].mean():.1%} of the person")


if __name__ == "__main__":
    main()
