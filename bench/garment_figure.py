"""Regenerate docs/img/garment_swap.png: A, B, A with B's upper region, A with B's full region.

Weight-free ``retarget image`` in A's own pose on two shared sample photos (DeepFashion via the reference
repository, research use only). ``--no-skin`` renders the swaps without keeping A's skin where B shows
skin (the behaviour before the per-person skin model), for comparison.

    PYTHONPATH=$PWD .venv/bin/python bench/garment_figure.py --samples ../shared/samples -o docs/img/garment_swap.png

``--before-after FILE`` writes docs/img/garment_fill.png instead: per row A, B, A wearing B's region as
before the garment fill (B's own completion of the region, B's skin from its completed texture with an
unbounded skin spread) and now (:func:`retarget.pipeline.texture.fill_garment`); both photos framed and
prepared at 256² like ``retarget video`` does, rendered in A's own pose, weight-free. Rows: the sample
photos and the DeepFashion photos of ``../shared/real/pose-with-style`` (``--real``; IUV in PIL channel
order), the last row with ``--fill nearest``.

    PYTHONPATH=$PWD .venv/bin/python bench/garment_figure.py --before-after docs/img/garment_fill.png
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

A = "WOMEN#Blouses_Shirts#id_00007424#02_7_additional"
B = "WOMEN#Blouses_Shirts#id_00000442#01_2_side"


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (4, img.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


#: Rows of the before/after figure: (A, B, region, fill); names in :func:`_photo`.
PAIRS = (("7424", "442", "full", "body"), ("7424", "dress", "upper", "body"), ("106", "shirt", "full", "body"),
         ("7424", "442", "full", "nearest"))
REAL = {"dress": "fashionWOMENDressesid0000262902_3back", "shirt": "fashionWOMENBlouses_Shirtsid0000635004_1front"}


def _photo(name: str, samples: Path, real: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(photo RGB, IUV [I, U, V])`` of a sample photo (id ending) or a pose-with-style photo (:data:`REAL`)."""
    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_iuv_png

    if name in REAL:  # PIL channel order: R = I (see its PROVENANCE.md)
        return (read_image_rgb(real / f"{REAL[name]}.png"),
                np.ascontiguousarray(cv2.imread(str(real / f"{REAL[name]}_iuv.png"))[..., ::-1]))
    stem = next(p.stem for p in sorted((samples / "source_img").glob("*.jpg")) if name in p.stem)
    return read_image_rgb(samples / "source_img" / f"{stem}.jpg"), read_iuv_png(
        samples / "source_iuv" / f"{stem}_IUV.png")


def _before(person, garment, region: str):
    """The garment swap as it was before :func:`~retarget.pipeline.texture.fill_garment`: the region from B's
    own completed texture, B's skin classified on that texture with no ceiling on the model's spread."""
    import torch

    from retarget.pipeline import texture
    from retarget.uvmap.layout import texture_layout

    rgb = garment.pred_textures[0].permute(1, 2, 0).numpy()
    part = texture_layout(*rgb.shape[:2]).part
    ceiling, texture.SKIN_MAX_SPREAD = texture.SKIN_MAX_SPREAD, np.inf
    try:
        model = texture.skin_model(rgb, garment.coverage[0, 0].numpy() > 0.5, part)
    finally:
        texture.SKIN_MAX_SPREAD = ceiling
    mask = texture.region_mask(region, rgb.shape[:2])
    if model is not None:
        mask &= ~texture.skin_texels(rgb, model, mask)
    combined = torch.where(torch.from_numpy(mask)[None, None], garment.pred_textures, person.pred_textures)
    return texture.with_texture(person, combined)


def before_after(out: Path, samples: Path, real: Path) -> None:
    import torch

    from retarget.pipeline import render_targets
    from retarget.pipeline.source import frame_source, prepare_source_crop
    from retarget.pipeline.texture import with_garment

    rows = []
    for a, b, region, fill in PAIRS:
        crops = [frame_source(photo, iuv=iuv, size=256) for photo, iuv in (_photo(a, samples, real),
                                                                           _photo(b, samples, real))]
        person, garment = (prepare_source_crop(c, None, fill=fill) for c in crops)
        uv = torch.from_numpy(np.ascontiguousarray(crops[0].uv)).permute(2, 0, 1)[None]
        panels = [_label(crops[0].image[..., ::-1], "A"), _label(crops[1].image[..., ::-1], f"B ({region})")]
        for name, state in (("before", _before(person, garment, region)),
                            ("now", with_garment(person, garment, region, None, b))):
            img = render_targets(state, uv, None).output[0].permute(1, 2, 0).numpy()
            text = f"{name}" + (" (--fill nearest)" if fill == "nearest" else "")
            panels.append(_label(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)[..., ::-1], text))
        rows.append(np.concatenate([cv2.resize(p, (192, 192), interpolation=cv2.INTER_AREA) for p in panels], 1))
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)[..., ::-1]).quantize(256).save(out, optimize=True)
    print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("../shared/samples"))
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/img/garment_swap.png"))
    parser.add_argument("--no-skin", action="store_true", help="take B's skin too (the old behaviour)")
    parser.add_argument("--a", default=A)
    parser.add_argument("--b", default=B)
    parser.add_argument("--before-after", type=Path, default=None, metavar="FILE",
                        help="write the before/after figure of the garment fill to FILE instead")
    parser.add_argument("--real", type=Path, default=Path("../shared/real/pose-with-style"))
    args = parser.parse_args()
    if args.before_after is not None:
        before_after(args.before_after, args.samples, args.real)
        return

    from retarget.cli import main as cli
    from retarget.pipeline import texture

    if args.no_skin:  # (the run then prints the note of a garment photo without a skin model)
        texture.garment_skin = lambda garment, region: None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, stem in (("A", args.a), ("B", args.b)):
            shutil.copy(args.samples / "source_img" / f"{stem}.jpg", root / f"{name}.jpg")
            shutil.copy(args.samples / "source_iuv" / f"{stem}_IUV.png", root / f"{name}_IUV.png")
        panels = [_label(cv2.imread(str(root / "A.jpg")), "A"),
                  _label(cv2.imread(str(root / "B.jpg")), "B (--garment)")]
        for region in ("upper", "full"):
            out = root / f"{region}.png"
            code = cli(["image", "--source", str(root / "A.jpg"), "--source-iuv", str(root / "A_IUV.png"),
                        "--target-iuv", str(root / "A_IUV.png"),
                        "--weight-free", "--garment", str(root / "B.jpg"), "--garment-iuv", str(root / "B_IUV.png"),
                        "--garment-region", region, "-o", str(out)])
            if code != 0:
                raise SystemExit(code)
            panels.append(_label(cv2.imread(str(out)), f"A, --garment-region {region}"))
        size = panels[0].shape[:2]
        panels = [cv2.resize(p, size[::-1], interpolation=cv2.INTER_AREA) for p in panels]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image  # a 256-colour palette keeps the docs figure small

        Image.fromarray(np.concatenate(panels, axis=1)[..., ::-1]).quantize(256).save(args.out, optimize=True)
        print(args.out)


if __name__ == "__main__":
    main()
