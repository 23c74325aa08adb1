"""Regenerate docs/img/background_rim.png: the wall a photo's DensePose took in, pasted into another scene.

The repository's example photo, put on a white studio wall with DensePose's mask grown 2 px over the wall (each
new pixel takes its nearest person pixel's I, U, V: what DensePose does at a soft edge), prepared weight-free at
256² and rendered onto its own pose grown 3 px (so the target's silhouette also reaches past the person), then
pasted on a dark green "park" with the person mask as alpha (left: the studio wall rims the person) and with
``TargetBatch.paste_alpha`` (right: those rim pixels show the park). Upper body, ×2, nearest-neighbour.

    PYTHONPATH=$PWD .venv/bin/python bench/rim_figure.py -o docs/img/background_rim.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 256
WALL = np.array([0.95, 0.95, 0.95], np.float32)
PARK = np.array([0.18, 0.32, 0.16], np.float32)


def grown(iuv: np.ndarray, pixels: float) -> np.ndarray:
    """``iuv`` with its person grown by ``pixels`` (each new pixel copies its nearest person pixel)."""
    from scipy import ndimage

    person = iuv[..., 0] > 0
    distance, (rows, cols) = ndimage.distance_transform_edt(~person, return_indices=True)
    return np.where((distance <= pixels)[..., None], iuv[rows, cols], 0).astype(np.uint8)


def main() -> None:
    import torch

    from retarget.pipeline import prepare_source, render_targets
    from retarget.uvmap import iuv_to_uv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "img" / "background_rim.png")
    args = parser.parse_args()
    photo = cv2.resize(cv2.imread(str(REPO / "examples" / "source.jpg")), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    iuv = cv2.resize(cv2.imread(str(REPO / "examples" / "source_IUV.png")), (SIZE, SIZE),
                     interpolation=cv2.INTER_NEAREST)
    rgb = photo[..., ::-1].astype(np.float32) / 255.0
    image = np.where((iuv[..., :1] > 0), rgb, WALL)
    as_uv = lambda i: torch.from_numpy(iuv_to_uv(i, table="clean")).permute(2, 0, 1)[None]  # noqa: E731  (the weight-free table)
    state = prepare_source(torch.from_numpy(image).permute(2, 0, 1)[None], as_uv(grown(iuv, 2)), None)
    batch = render_targets(state, as_uv(grown(iuv, 3)))
    out = batch.output[0].permute(1, 2, 0).numpy()
    tiles = []
    for alpha in (batch.target_mask, batch.paste_alpha):
        a = alpha[0, 0].numpy()[..., None]
        tiles.append(out * a + PARK * (1 - a))
    rows, cols = np.nonzero(iuv[..., 0] > 0)
    top, bottom = max(rows.min() - 6, 0), rows.min() + (rows.max() - rows.min()) // 2
    left, right = max(cols.min() - 6, 0), min(cols.max() + 7, SIZE)
    cut = [np.clip(t[top:bottom, left:right] * 255, 0, 255).astype(np.uint8) for t in tiles]
    gap = np.full((cut[0].shape[0], 4, 3), 255, np.uint8)
    figure = cv2.resize(np.hstack([cut[0], gap, cut[1]]), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), figure[..., ::-1])
    cut_pixels = int(((batch.target_mask > 0.5) & (batch.paste_alpha < 0.5)).sum())
    print(f"{args.out}: {cut_pixels} rim pixels left to the background of {int(batch.target_mask.sum())}")


if __name__ == "__main__":
    main()
