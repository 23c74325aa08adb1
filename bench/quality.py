"""Quality of the weight-free texture completion on held-out limbs of real photos, measured in one run.

    .venv/bin/python bench/quality.py [--samples DIR] [--fills nearest body] [--min-pixels 400]

Protocol (issue 13): for every photo in ``DIR/source_img`` that has a DensePose IUV render
(``DIR/source_iuv/<id>_IUV.png``) and a UV map (``DIR/source_uv/<id>.npy``), and every limb group
(DensePose parts {15,17}, {16,18}, {19,21}, {20,22}, {7,9}, {8,10}, {11,13}, {12,14}) with at least
``--min-pixels`` person pixels:

1. make those pixels background in the source UV (so their texels are not covered);
2. run ``retarget image --weight-free --fill F`` (the real command, in-process) from the photo and the
   held-out UV to the photo's own full UV map;
3. compare the held-out pixels of the output with the photo: PSNR over the held-out pixels (data range
   1), and SSIM (``skimage.metrics.structural_similarity`` with its defaults: 7×7 uniform window, sample
   covariance; data range 1; the per-pixel map averaged over the colour channels) over the region's
   bounding box, averaged over the held-out pixels.

Prints one line per limb and fill, then the means, and the difference body − nearest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LIMB_GROUPS = ((15, 17), (16, 18), (19, 21), (20, 22), (7, 9), (8, 10), (11, 13), (12, 14))


def sample_ids(samples: Path) -> list[str]:
    """Ids of photos that have an IUV render and a UV map."""
    ids = []
    for photo in sorted((samples / "source_img").glob("*.jpg")):
        if (samples / "source_iuv" / f"{photo.stem}_IUV.png").is_file() and (
                samples / "source_uv" / f"{photo.stem}.npy").is_file():
            ids.append(photo.stem)
    return ids


def region_scores(output: np.ndarray, photo: np.ndarray, held: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``output`` vs ``photo`` (float RGB in [0, 1]) over the held-out mask."""
    from skimage.metrics import structural_similarity

    mse = float(((output[held] - photo[held]) ** 2).mean())
    psnr = 10.0 * np.log10(1.0 / max(mse, 1e-12))
    rows, cols = np.nonzero(held)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    _, ssim_map = structural_similarity(output[box], photo[box], data_range=1.0, channel_axis=2, full=True)
    return psnr, float(ssim_map.mean(axis=2)[held[box]].mean())


def render_image(photo_path: Path, source_uv: Path, target_uv: Path, fill: str, out: Path) -> np.ndarray:
    """Run ``retarget image --weight-free --fill FILL`` in-process; the output as float RGB."""
    from typer.testing import CliRunner

    from retarget.cli import app
    from retarget.io.image import read_image_rgb

    args = ["image", "--source", str(photo_path), "--source-uv", str(source_uv), "--target-uv", str(target_uv),
            "--out", str(out), "--weight-free", "--fill", fill, "--overwrite"]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(f"retarget image failed ({result.exit_code}): {result.output}")
    return read_image_rgb(out).astype(np.float64) / 255.0


def photo_cases(sid: str, photo_path: Path, parts: np.ndarray, uv_path: Path, min_pixels: int):
    """Yield (id, limb group, photo path, full UV path, held-out mask, held-out UV) for one photo.

    ``parts``: ``(H, W)`` DensePose part index per pixel; ``uv_path``: the photo's UV map (``.npy``).
    """
    from retarget.io.iuv import read_uv_npy

    uv = read_uv_npy(uv_path)
    for group in LIMB_GROUPS:
        held = np.isin(parts, group) & ~np.isnan(uv).all(axis=2)
        if held.sum() < min_pixels:
            continue
        held_uv = uv.copy()
        held_uv[held] = np.nan
        yield sid, group, photo_path, uv_path, held, held_uv


def held_out_cases(samples: Path, min_pixels: int):
    """:func:`photo_cases` of every photo of ``samples`` (see :func:`sample_ids`)."""
    from retarget.io.iuv import read_iuv_png

    for sid in sample_ids(samples):
        parts = read_iuv_png(samples / "source_iuv" / f"{sid}_IUV.png")[..., 0]
        yield from photo_cases(sid, samples / "source_img" / f"{sid}.jpg", parts,
                               samples / "source_uv" / f"{sid}.npy", min_pixels)


def run(samples: Path, fills: list[str], min_pixels: int, keep: Path | None = None, cases=None) -> dict[str, list]:
    """Scores ``{fill: [(sid, group, n_pixels, psnr, ssim), ...]}`` over every held-out case
    (``cases``: an iterable like :func:`held_out_cases`, default: those of ``samples``)."""
    from retarget.io.image import read_image_rgb

    scores: dict[str, list] = {fill: [] for fill in fills}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for sid, group, photo_path, uv_path, held, held_uv in (cases or held_out_cases(samples, min_pixels)):
            held_path = tmp / "held.npy"
            np.save(held_path, held_uv.astype(np.float32))
            photo = read_image_rgb(photo_path).astype(np.float64) / 255.0
            for fill in fills:
                out = (keep or tmp) / f"{sid}_{group[0]}_{group[1]}_{fill}.png"
                output = render_image(photo_path, held_path, uv_path, fill, out)
                psnr, ssim = region_scores(output, photo, held)
                scores[fill].append((sid, group, int(held.sum()), psnr, ssim))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--fills", nargs="+", default=["nearest", "body"])
    parser.add_argument("--min-pixels", type=int, default=400)
    parser.add_argument("--keep", type=Path, help="also keep every rendered image in this folder")
    args = parser.parse_args()
    if not (args.samples / "source_img").is_dir():
        raise SystemExit(f"no samples at {args.samples} (give --samples DIR with source_img/, source_iuv/, "
                         "source_uv/)")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    scores = run(args.samples, args.fills, args.min_pixels, args.keep)
    for fill, rows in scores.items():
        for sid, group, n, psnr, ssim in rows:
            print(f"fill={fill:8s} sample={sid} parts={group[0]},{group[1]} pixels={n:5d} "
                  f"psnr={psnr:6.2f} ssim={ssim:.3f}")
    means = {}
    for fill, rows in scores.items():
        means[fill] = (float(np.mean([r[3] for r in rows])), float(np.mean([r[4] for r in rows])))
        print(f"mean fill={fill} limbs={len(rows)} psnr={means[fill][0]:.2f} ssim={means[fill][1]:.3f}")
    if "nearest" in means and "body" in means:
        print(f"body-nearest psnr={means['body'][0] - means['nearest'][0]:+.2f} dB "
              f"ssim={means['body'][1] - means['nearest'][1]:+.3f}")


if __name__ == "__main__":
    main()
