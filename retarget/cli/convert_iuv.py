"""``retarget convert-iuv``: DensePose IUV PNG(s) → SMPL-UV ``.npy`` map(s)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from retarget.cli.app import app
from retarget.errors import InputError, UsageError

IUV_SUFFIX = "_IUV"


class UVTable(str, enum.Enum):
    """Conversion tables, see docs/iuv_conversion.md."""

    training = "training"
    released = "released"


def default_output_name(iuv_path: Path) -> str:
    """``<stem minus _IUV>.npy``, e.g. ``person_IUV.png`` → ``person.npy``."""
    stem = iuv_path.stem
    if stem.endswith(IUV_SUFFIX) and len(stem) > len(IUV_SUFFIX):
        stem = stem[: -len(IUV_SUFFIX)]
    return stem + ".npy"


def _plan(input_path: Path, out: Path | None) -> list[tuple[Path, Path]]:
    """(IUV PNG, output .npy) pairs for a file or a folder input."""
    if input_path.is_dir():
        pngs = sorted(p for p in input_path.glob(f"*{IUV_SUFFIX}.png") if p.is_file())
        if not pngs:
            pngs = sorted(p for p in input_path.glob("*.png") if p.is_file())
        if not pngs:
            raise InputError(f"{input_path}: no *{IUV_SUFFIX}.png or *.png files in this folder")
        out_dir = out if out is not None else input_path
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"{out_dir}: with a folder input, -o must be a folder")
        return [(png, out_dir / default_output_name(png)) for png in pngs]
    if not input_path.is_file():
        raise InputError(f"{input_path}: no such file or folder")
    if out is None:
        target = input_path.with_name(default_output_name(input_path))
    elif out.is_dir():
        target = out / default_output_name(input_path)
    else:
        target = out
    return [(input_path, target)]


def _check_outputs(pairs: list[tuple[Path, Path]], overwrite: bool) -> None:
    inputs = {png.resolve() for png, _ in pairs}
    seen: set[Path] = set()
    for _, target in pairs:
        resolved = target.resolve()
        if resolved in inputs:
            raise UsageError(f"{target}: output would overwrite an input file; choose another output path")
        if resolved in seen:
            raise UsageError(f"{target}: two inputs would write the same output file")
        seen.add(resolved)
        if target.exists() and not overwrite:
            raise UsageError(f"{target}: output exists; pass --overwrite to replace it")
        if target.suffix.lower() != ".npy":
            raise UsageError(f"{target}: the output must be a .npy file")


@app.command(
    "convert-iuv",
    help=(
        "Convert DensePose IUV renders to SMPL-UV maps (.npy, the format of --source-uv/--target-uv).\n\n"
        "Examples:\n\n"
        "  retarget convert-iuv person_IUV.png            # writes person.npy beside it\n\n"
        "  retarget convert-iuv renders/ -o uv/ --table released\n\n"
        "The IUV PNG is DensePose's: blue = part 0..24, green = U*255, red = V*255. The output is a float "
        "(H, W, 2) array of SMPL-UV (u, v) in [-1, 1], NaN on the background. --table training (default) "
        "matches the official weights' training data; --table released matches the reference demo's "
        "smpltexmap.npy. A folder converts every *_IUV.png in it (else every *.png)."
    ),
)
def convert_iuv_command(
    input_path: Annotated[Path, typer.Argument(metavar="IUV", help="IUV PNG, or a folder of them.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="Output .npy (or folder). Default: beside the input, named <stem without _IUV>.npy.")] = None,
    table: Annotated[UVTable, typer.Option("--table", help="Conversion table.",
                                           case_sensitive=False)] = UVTable.training,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
) -> None:
    from tqdm import tqdm

    from retarget.io.iuv import read_iuv_png, write_uv_npy
    from retarget.uvmap import iuv_to_uv

    pairs = _plan(input_path, out)
    _check_outputs(pairs, overwrite)
    if len(pairs) > 1:
        pairs[0][1].parent.mkdir(parents=True, exist_ok=True)
    elif not pairs[0][1].parent.is_dir():
        raise InputError(f"{pairs[0][1].parent}: output folder does not exist")
    show_bar = len(pairs) > 1
    for png, target in tqdm(pairs, desc="convert-iuv", unit="file", disable=not show_bar):
        write_uv_npy(target, iuv_to_uv(read_iuv_png(png), table.value))
    if not show_bar:
        typer.echo(f"wrote {pairs[0][1]}")
    else:
        typer.echo(f"wrote {len(pairs)} UV maps to {pairs[0][1].parent}")
