"""Quality of the weight-free texture completion on held-out limbs of real photos, measured in one run.

    .venv/bin/python bench/quality.py [--split tuning|held-out|extra|all] [--samples DIR] [--real DIR]
                                      [--photos DIR ...] [--per-clip 2] [--table clean]
                                      [--fills nearest body] [--min-pixels 400] [--keep DIR]
                                      [--save FILE] [--against FILE]

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
   bounding box, averaged over the held-out pixels, with the output pasted onto the photo outside the
   person (the target UV's person pixels; as a transfer is pasted into its driver frame: issue 31, ninth
   session). ``ssim_flat`` is the same on the output as written, the person on the constant colour
   ``retarget image`` puts around it (the figure of the earlier sessions): there a held-out pixel's 7×7
   window near the silhouette compares the fill's contrast against that colour with the truth's contrast
   against the real scene, which the fill does not control.

4. also the colour error of the region: ΔE (CIE76) between the mean CIELAB colour of the held-out pixels
   in the output and in the photo.

Photos and splits (``--split``, fixed, written here and in docs/weight_free.md): the fill was tuned on the
**tuning** split only; the **held-out** split holds photos (and clips) never looked at while tuning; the
**extra** split is whatever ``--photos`` names (folders of photos with ``<stem>_IUV.png`` beside them, or clip
folders with ``rgb/`` + ``iuv/``, ``--per-clip`` frames each): other photos, checked the same way.

- tuning: the shipped samples (``--samples``, default ``../shared/samples``: the photos with IUV and UV),
  ``real/dwnet-taichi/clip1`` frames 0000263 and 0000278, ``real/pose-with-style`` blouse (front);
- held-out: ``real/dwnet-fashion/clip2`` frames 146 and 157, ``real/dwnet-taichi/clip2`` frames 0000000 and
  0000011, ``real/pose-with-style`` dress (back) and skirt (front), ``real/hdnet-tiktok`` 0043,
  ``real/imaginaire-vid2vid-pose`` frame000100.

Real photos (``--real``, default ``../shared/real``) are cropped to a square around the person (its IUV
box, 10 % margin, padded with black), resized to 256² (the IUV with nearest-neighbour) and their UV is
computed from the IUV (``training`` table); ``pose-with-style`` IUV is read in its PIL channel order.

Prints one line per limb and fill, then per split the means and the gains of every fill over
``nearest``, and the tuning − held-out gap of the gains; each gain and the gap with its 95 % bootstrap
interval over photos (:func:`gain_interval`): how far a figure could move with other photos of the
same kind. ``--save FILE`` keeps every limb's scores; a later run of another version with ``--against FILE``
prints its *paired* change per split and fill (each limb against itself; :func:`changes`), with its interval:
the reading for deciding whether a change helps.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LIMB_GROUPS = ((15, 17), (16, 18), (19, 21), (20, 22), (7, 9), (8, 10), (11, 13), (12, 14))

#: Real photos per split: (split, name, photo path, IUV path) relative to ``--real``; the ``pose-with-style`` IUV
#: files are in PIL channel order (R = I), which ``read_iuv_png`` recognises.
REAL_PHOTOS = (
    ("tuning", "taichi1-263", "dwnet-taichi/clip1/rgb/0000263.png", "dwnet-taichi/clip1/iuv/0000263_IUV.png"),
    ("tuning", "taichi1-278", "dwnet-taichi/clip1/rgb/0000278.png", "dwnet-taichi/clip1/iuv/0000278_IUV.png"),
    ("tuning", "pws-blouse", "pose-with-style/fashionWOMENBlouses_Shirtsid0000635004_1front.png",
     "pose-with-style/fashionWOMENBlouses_Shirtsid0000635004_1front_iuv.png"),
    ("held-out", "fashion2-146", "dwnet-fashion/clip2/rgb/frame146.png", "dwnet-fashion/clip2/iuv/frame146_IUV.png"),
    ("held-out", "fashion2-157", "dwnet-fashion/clip2/rgb/frame157.png", "dwnet-fashion/clip2/iuv/frame157_IUV.png"),
    ("held-out", "taichi2-000", "dwnet-taichi/clip2/rgb/0000000.png", "dwnet-taichi/clip2/iuv/0000000_IUV.png"),
    ("held-out", "taichi2-011", "dwnet-taichi/clip2/rgb/0000011.png", "dwnet-taichi/clip2/iuv/0000011_IUV.png"),
    ("held-out", "pws-dress-back", "pose-with-style/fashionWOMENDressesid0000262902_3back.png",
     "pose-with-style/fashionWOMENDressesid0000262902_3back_iuv.png"),
    ("held-out", "pws-skirt", "pose-with-style/fashionWOMENSkirtsid0000177102_1front.png",
     "pose-with-style/fashionWOMENSkirtsid0000177102_1front_iuv.png"),
    ("held-out", "tiktok-0043", "hdnet-tiktok/0043_img.png", "hdnet-tiktok/0043_dp.png"),
    ("held-out", "vid2vid-100", "imaginaire-vid2vid-pose/rgb/frame000100.jpg",
     "imaginaire-vid2vid-pose/iuv/frame000100.png"),
)
SPLITS = ("tuning", "held-out")
#: Side of the square crops the real photos are resized to.
CROP_SIDE = 256


def sample_ids(samples: Path) -> list[str]:
    """Ids of photos that have an IUV render and a UV map."""
    ids = []
    for photo in sorted((samples / "source_img").glob("*.jpg")):
        if (samples / "source_iuv" / f"{photo.stem}_IUV.png").is_file() and (
                samples / "source_uv" / f"{photo.stem}.npy").is_file():
            ids.append(photo.stem)
    return ids


def person_crop(image: np.ndarray, iuv: np.ndarray, side: int = CROP_SIDE, margin: float = 0.1
                ) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around the person (IUV part > 0; ``margin`` of the box's long side on each side, padded
    with 0 outside the image), resized to ``side``²: the photo (area / linear) and the IUV (nearest)."""
    import cv2

    rows, cols = np.nonzero(iuv[..., 0])
    half = (1 + 2 * margin) * max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) / 2
    cy, cx = (rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2
    top, left, size = int(round(cy - half)), int(round(cx - half)), int(round(2 * half))
    pad = max(0, -top, -left, top + size - image.shape[0], left + size - image.shape[1])
    crops = []
    for array, interp in ((image, cv2.INTER_AREA if size > side else cv2.INTER_LINEAR), (iuv, cv2.INTER_NEAREST)):
        padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)))
        crop = padded[top + pad:top + pad + size, left + pad:left + pad + size]
        crops.append(cv2.resize(crop, (side, side), interpolation=interp))
    return crops[0], crops[1]


def cropped_cases(photos, folder: Path, min_pixels: int, table: str = "clean"):
    """:func:`photo_cases` of ``photos`` (``(name, photo path, IUV path)``): each cut to a square around its
    person (:func:`person_crop`), written to ``folder``, its UV from the IUV with ``table`` (``clean``: what
    ``--table auto`` gives on the weight-free path)."""
    import cv2

    from retarget.uvmap import iuv_to_uv

    for name, photo, iuv_path in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"error: {photo}: not a readable image")
        iuv = _read_iuv(iuv_path)
        if iuv.shape[:2] != image.shape[:2]:
            raise SystemExit(f"error: {iuv_path}: {iuv.shape[1]}x{iuv.shape[0]}, its photo is "
                             f"{image.shape[1]}x{image.shape[0]}")
        image, iuv = person_crop(image, iuv)
        photo_path, uv_path = folder / f"{name}.png", folder / f"{name}.npy"
        cv2.imwrite(str(photo_path), image)
        np.save(uv_path, iuv_to_uv(iuv, table=table))
        yield from photo_cases(name, photo_path, iuv[..., 0], uv_path, min_pixels)


def real_cases(real: Path, split: str, folder: Path, min_pixels: int, table: str = "clean"):
    """:func:`cropped_cases` of the real photos of ``split`` (:data:`REAL_PHOTOS`) that ``real`` holds."""
    photos = [(name, real / photo, real / iuv) for photo_split, name, photo, iuv in REAL_PHOTOS
              if photo_split == split and (real / photo).is_file() and (real / iuv).is_file()]
    yield from cropped_cases(photos, folder, min_pixels, table)


#: Image files ``--photos`` reads as photos (an IUV PNG beside one is not a photo).
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


def _iuv_beside(photo: Path, folder: Path) -> Path | None:
    """The IUV PNG of ``photo`` in ``folder``: ``<stem>_IUV.png``, ``<stem>_iuv.png`` or ``<stem>.png``."""
    for name in (f"{photo.stem}_IUV.png", f"{photo.stem}_iuv.png", f"{photo.stem}.png"):
        if (folder / name).is_file() and (folder / name) != photo:
            return folder / name
    return None


def _read_iuv(path: Path) -> np.ndarray:
    """A DensePose IUV PNG (either channel order, as ``retarget`` reads it); a bad file is a one-line error."""
    from densepose_adapter.errors import InputError
    from retarget.io.iuv import read_iuv_png

    try:
        return read_iuv_png(path)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None


def extra_photos(folders: list[Path], per_clip: int, min_pixels: int) -> list[tuple[str, Path, Path]]:
    """``(name, photo, IUV)`` of ``--photos``: a clip folder (``rgb/`` + ``iuv/``, the layout of ``bench/real.py``)
    gives ``per_clip`` frames whose IUV shows a person, evenly spaced; any other folder gives every photo with
    an IUV PNG beside it (``<stem>_IUV.png`` or ``<stem>_iuv.png``) that shows a person. A person: at least
    ``min_pixels`` person pixels (``--min-pixels``: fewer cannot hold a limb the protocol holds out). Names are
    ``<folder>-<file stem>``."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"error: --photos {folder}: not a folder")
        clip = (folder / "rgb").is_dir() and (folder / "iuv").is_dir()
        images = sorted(p for p in (folder / "rgb" if clip else folder).iterdir()
                        if p.suffix.lower() in PHOTO_SUFFIXES and not p.stem.lower().endswith("_iuv"))
        found = [(p, _iuv_beside(p, folder / "iuv" if clip else folder)) for p in images]
        found = [(p, i) for p, i in found if i is not None]
        with_person = [(p, i) for p, i in found if int((_read_iuv(i)[..., 0] > 0).sum()) >= min_pixels]
        if len(with_person) < len(found) and not clip:
            print(f"note: --photos {folder}: {len(found) - len(with_person)} photo(s) whose IUV shows no person "
                  f"(fewer than {min_pixels} pixels) left out", flush=True)
        found = with_person
        if clip:
            if len(found) > per_clip:
                found = [found[k] for k in np.unique(np.round(np.linspace(0, len(found) - 1, per_clip)).astype(int))]
        if not found:
            raise SystemExit(f"error: --photos {folder}: no photo with an IUV PNG beside it (<stem>_IUV.png) "
                             f"showing a person, and no rgb/ + iuv/ clip with a person")
        out += [(f"{folder.name}-{p.stem}", p, i) for p, i in found]
    return out


def split_cases(split: str, samples: Path, real: Path, folder: Path, min_pixels: int, table: str = "clean",
                photos: list[tuple[str, Path, Path]] | None = None):
    """Every held-out case of ``split`` (see the module docstring); ``photos`` (:func:`extra_photos`) are the
    split ``extra``."""
    if split == "extra":
        yield from cropped_cases(photos or [], folder, min_pixels, table)
        return
    if split == "tuning" and (samples / "source_img").is_dir():
        yield from held_out_cases(samples, min_pixels)
    yield from real_cases(real, split, folder, min_pixels, table)


def delta_e(output: np.ndarray, photo: np.ndarray, held: np.ndarray) -> float:
    """CIE76 ΔE between the mean CIELAB colours of ``output`` and ``photo`` (RGB in [0, 1]) over ``held``."""
    from skimage.color import rgb2lab

    means = [rgb2lab(image[held][None].astype(np.float64))[0].mean(axis=0) for image in (output, photo)]
    return float(np.linalg.norm(means[0] - means[1]))


def detail_ratio(output: np.ndarray, photo: np.ndarray, held: np.ndarray) -> float:
    """Mean Sobel gradient magnitude of the luminance of ``output`` over the pixels of ``held`` at least 2
    pixels inside it, divided by that of ``photo`` (RGB in [0, 1]); NaN where no such pixel exists or the
    photo is flat there."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(held, np.ones((3, 3), bool), iterations=2)
    if not inner.any():
        return float("nan")

    def energy(image: np.ndarray) -> float:
        y = image[..., :3] @ np.array([0.299, 0.587, 0.114])
        return float(np.hypot(ndimage.sobel(y, 0), ndimage.sobel(y, 1))[inner].mean())

    truth = energy(photo)
    return energy(output) / truth if truth > 1e-6 else float("nan")


def region_scores(output: np.ndarray, photo: np.ndarray, held: np.ndarray,
                  person: np.ndarray | None = None) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``output`` vs ``photo`` (float RGB in [0, 1], ``(H, W, 3)``) over the held-out mask
    ``held`` (``(H, W)`` bool).

    ``person`` (``(H, W)`` bool, the target pose's person pixels): the output is first pasted onto the photo
    there (outside it, the photo's own pixels), as a transfer is pasted into its driver frame; the SSIM
    windows of held-out pixels near the silhouette then compare the fill against the real scene, not against
    the constant colour ``retarget image`` puts around the person. PSNR (held-out pixels only) is the same
    either way.
    """
    from skimage.metrics import structural_similarity

    if person is not None:
        output = np.where(person[..., None], output, photo)
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
    """Scores ``{fill: [(sid, group, n_pixels, psnr, ssim, delta_e, detail, ssim_flat), ...]}`` over every
    held-out case (``cases``: an iterable like :func:`held_out_cases`, default: those of ``samples``).

    ``ssim``: the output pasted onto the photo outside the person (:func:`region_scores` with ``person``, the
    figure the targets use since the ninth session of issue 31); ``ssim_flat``: the output as written, on its
    constant background (the figure of the earlier sessions)."""
    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_uv_npy

    scores: dict[str, list] = {fill: [] for fill in fills}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for sid, group, photo_path, uv_path, held, held_uv in (cases or held_out_cases(samples, min_pixels)):
            held_path = tmp / "held.npy"
            np.save(held_path, held_uv.astype(np.float32))
            photo = read_image_rgb(photo_path).astype(np.float64) / 255.0
            person = ~np.isnan(read_uv_npy(uv_path)).all(axis=2)
            for fill in fills:
                out = (keep or tmp) / f"{sid}_{group[0]}_{group[1]}_{fill}.png"
                output = render_image(photo_path, held_path, uv_path, fill, out)
                psnr, ssim = region_scores(output, photo, held, person)
                scores[fill].append((sid, group, int(held.sum()), psnr, ssim, delta_e(output, photo, held),
                                     detail_ratio(output, photo, held), region_scores(output, photo, held)[1]))
    return scores


#: Bootstrap resamples of :func:`gain_interval` (fixed seed: the printed intervals are reproducible).
BOOTSTRAP = 2000


def paired(rows: list, reference: list, columns: tuple[int, ...] = (3, 4)) -> dict[str, np.ndarray]:
    """Per photo, the ``(limbs, len(columns))`` differences ``rows − reference`` of the score ``columns``
    (indices into a score row: 3 PSNR, 4 SSIM, 5 ΔE, 6 detail) on the limbs both hold, matched by photo and
    limb group."""
    ref = {(r[0], tuple(r[1])): r for r in reference}
    out: dict[str, list] = {}
    for r in rows:
        b = ref.get((r[0], tuple(r[1])))
        if b is not None:
            out.setdefault(r[0], []).append([r[k] - b[k] for k in columns])
    return {sid: np.array(v, dtype=float) for sid, v in out.items()}


def limb_gains(scores: dict[str, list], fill: str, base: str = "nearest") -> dict[str, np.ndarray]:
    """Per photo, the ``(limbs, 2)`` gains (PSNR dB, SSIM) of ``fill`` over ``base`` on each of its limbs."""
    return paired(scores[fill], scores[base])


def gain_interval(per_photo: dict[str, np.ndarray], minus: dict[str, np.ndarray] | None = None,
                  level: float = 0.95, seed: int = 0) -> np.ndarray:
    """``(2, K)`` bootstrap interval (low row, high row) of the mean over limbs of each of the ``K`` columns of
    ``per_photo`` (e.g. :func:`limb_gains`: PSNR dB, SSIM); NaN entries are left out of the means.

    Photos are resampled (with replacement), not limbs: the limbs of one photo share its person, clothes and
    light, so they are not independent evidence. With ``minus`` (another split's :func:`limb_gains`), the
    interval is that of the difference of the two means (each split resampled on its own): the tuning −
    held-out gap.
    """
    rng = np.random.default_rng(seed)

    def resampled(groups: dict[str, np.ndarray]) -> np.ndarray:
        photos = list(groups)
        means = np.empty((BOOTSTRAP, groups[photos[0]].shape[1]))
        for k in range(BOOTSTRAP):
            picked = np.concatenate([groups[photos[i]] for i in rng.integers(0, len(photos), len(photos))])
            means[k] = np.nanmean(picked, axis=0)
        return means

    means = resampled(per_photo) - (resampled(minus) if minus is not None else 0.0)
    tail = 100 * (1 - level) / 2
    return np.nanpercentile(means, [tail, 100 - tail], axis=0)


#: Score columns compared by ``--against``: PSNR, SSIM, detail.
CHANGE_COLUMNS = (3, 4, 6)


def changes(current: dict[str, dict[str, list]], saved: dict[str, dict[str, list]]) -> dict:
    """Paired change of every split and fill in both ``current`` and ``saved`` (``{split: {fill: rows}}``, rows
    as :func:`run` gives them): ``{(split, fill): (mean (3,), interval (2, 3), limbs matched)}`` over
    :data:`CHANGE_COLUMNS`. Each limb is compared with itself, so the photo-to-photo spread that makes
    :func:`gain_interval` of a gain over nearest wide cancels: this is the reading for "is this version better".
    """
    out = {}
    for split, fills in current.items():
        for fill, rows in fills.items():
            if fill not in saved.get(split, {}):
                continue
            diff = paired(rows, saved[split][fill], CHANGE_COLUMNS)
            if not diff:
                continue
            every = np.concatenate(list(diff.values()))
            out[split, fill] = (np.nanmean(every, axis=0), gain_interval(diff), len(every))
    return out


def save_scores(path: Path, scores: dict[str, dict[str, list]]) -> None:
    """Write ``{split: {fill: rows}}`` as JSON (temp file + rename: never a half-written file)."""
    import json
    import os

    rows = {split: {fill: [[r[0], list(r[1]), *[float(x) for x in r[2:]]] for r in v] for fill, v in fills.items()}
            for split, fills in scores.items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)


def summary(scores: dict[str, list]) -> dict[str, tuple[float, float, float, float, float]]:
    """Mean (PSNR, SSIM, ΔE, detail, SSIM on the flat background) per fill (detail: over the limbs that have
    one)."""
    return {fill: tuple(float(np.nanmean([r[k] for r in rows])) for k in (3, 4, 5, 6, 7))
            for fill, rows in scores.items() if rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "samples")
    parser.add_argument("--real", type=Path, default=REPO.parent / "shared" / "real")
    parser.add_argument("--split", choices=[*SPLITS, "extra", "all"], default="all",
                        help="all: tuning, held-out and (with --photos) extra")
    parser.add_argument("--photos", type=Path, nargs="+", default=[],
                        help="more photos, the split 'extra': folders of photos with <stem>_IUV.png beside them, or "
                             "clip folders (rgb/ + iuv/, as bench/real.py reads them)")
    parser.add_argument("--per-clip", type=int, default=2, help="photos taken from each clip folder of --photos")
    parser.add_argument("--fills", nargs="+", default=["nearest", "body"])
    parser.add_argument("--min-pixels", type=int, default=400)
    from retarget.uvmap import TABLES

    parser.add_argument("--table", default="clean", choices=TABLES,
                        help="IUV→UV table of the real photos (default clean: what the weight-free path uses; the "
                             "shipped samples come with their UV maps)")
    parser.add_argument("--keep", type=Path,
                        help="also keep every rendered image (and the real photos' crops) in this folder")
    parser.add_argument("--save", type=Path, help="write every limb's scores here (JSON), for a later --against")
    parser.add_argument("--against", type=Path,
                        help="scores saved by --save from another version: print the paired change of this one")
    args = parser.parse_args()
    saved = None
    if args.against:
        import json

        try:
            saved = json.loads(args.against.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: --against {args.against}: cannot read saved scores ({exc})") from None
    same = args.save and args.against and args.save.resolve() == args.against.resolve()
    if args.save and (not args.save.parent.is_dir() or same):
        raise SystemExit(f"error: --save {args.save}: its folder must exist and it must not be the --against file")
    if args.per_clip < 1:
        raise SystemExit(f"error: --per-clip must be at least 1, got {args.per_clip}")
    photos = extra_photos(args.photos, args.per_clip, args.min_pixels)
    if args.split == "extra" and not photos:
        raise SystemExit("error: --split extra needs --photos")
    if not (args.samples / "source_img").is_dir() and not args.real.is_dir() and not photos:
        raise SystemExit(f"no samples at {args.samples} and no real photos at {args.real}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    means, gains, per_photo, every = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for split in ((*SPLITS, *(("extra",) if photos else ())) if args.split == "all" else (args.split,)):
            cases = split_cases(split, args.samples, args.real, args.keep or Path(folder), args.min_pixels, args.table,
                                photos)
            scores = run(args.samples, args.fills, args.min_pixels, args.keep, cases=cases)
            every[split] = scores
            for fill, rows in scores.items():
                for sid, group, n, psnr, ssim, de, detail, flat in rows:
                    print(f"split={split} fill={fill:8s} sample={sid} parts={group[0]},{group[1]} pixels={n:5d} "
                          f"psnr={psnr:6.2f} ssim={ssim:.3f} dE={de:5.1f} detail={detail:.2f} ssim_flat={flat:.3f}")
            means[split] = summary(scores)
            for fill, (psnr, ssim, de, detail, flat) in means[split].items():
                print(f"mean split={split} fill={fill} limbs={len(scores[fill])} photos="
                      f"{len({r[0] for r in scores[fill]})} psnr={psnr:.2f} ssim={ssim:.3f} dE={de:.2f} "
                      f"detail={detail:.2f} ssim_flat={flat:.3f}")
            if "nearest" in means[split]:
                base = means[split]["nearest"]
                for fill, (psnr, ssim, de, detail, flat) in means[split].items():
                    if fill != "nearest":
                        gains[split, fill] = (psnr - base[0], ssim - base[1])
                        per_photo[split, fill] = limb_gains(scores, fill)
                        (lo_db, lo_ss), (hi_db, hi_ss) = gain_interval(per_photo[split, fill])
                        print(f"gain split={split} {fill}-nearest psnr={psnr - base[0]:+.2f} dB "
                              f"[{lo_db:+.2f}, {hi_db:+.2f}] ssim={ssim - base[1]:+.3f} [{lo_ss:+.3f}, {hi_ss:+.3f}] "
                              f"dE ratio={de / base[2]:.2f} detail {detail:.2f} (nearest {base[3]:.2f}) "
                              f"ssim_flat={flat - base[4]:+.3f}")
    for fill, other in itertools.product(args.fills, ("held-out", "extra")):
        if ("tuning", fill) in gains and (other, fill) in gains:
            tune, held = gains["tuning", fill], gains[other, fill]
            (lo_db, lo_ss), (hi_db, hi_ss) = gain_interval(per_photo["tuning", fill], per_photo[other, fill])
            flat = [means[split][fill][4] - means[split]["nearest"][4] for split in ("tuning", other)]
            print(f"gap tuning-{other} {fill}: psnr={tune[0] - held[0]:+.2f} dB [{lo_db:+.2f}, {hi_db:+.2f}] "
                  f"ssim={tune[1] - held[1]:+.3f} [{lo_ss:+.3f}, {hi_ss:+.3f}] ssim_flat={flat[0] - flat[1]:+.3f}")
    if saved is not None:
        for (split, fill), (mean, (lo, hi), n) in changes(every, saved).items():
            print(f"change split={split} fill={fill} vs {args.against.name} ({n} limbs): "
                  f"psnr={mean[0]:+.2f} dB [{lo[0]:+.2f}, {hi[0]:+.2f}] "
                  f"ssim={mean[1]:+.3f} [{lo[1]:+.3f}, {hi[1]:+.3f}] "
                  f"detail={mean[2]:+.3f} [{lo[2]:+.3f}, {hi[2]:+.3f}]")
    if args.save:
        save_scores(args.save, every)


if __name__ == "__main__":
    main()
