"""Regenerate docs/img/garment_swap.png: A, B, A with B's upper region, A with B's full region.

Weight-free ``retarget image`` in A's own pose on two shared sample photos (DeepFashion via the reference
repository, research use only). ``--no-skin`` renders the swaps without keeping A's skin where B shows
skin (the behaviour before the per-person skin model), for comparison; ``--mask`` adds B's skin texels.

    PYTHONPATH=$PWD .venv/bin/python bench/garment_figure.py --samples ../shared/samples -o docs/img/garment_swap.png
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=Path("../shared/samples"))
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/img/garment_swap.png"))
    parser.add_argument("--no-skin", action="store_true", help="take B's skin too (the old behaviour)")
    parser.add_argument("--a", default=A)
    parser.add_argument("--b", default=B)
    args = parser.parse_args()

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
