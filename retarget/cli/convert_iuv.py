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
    from retarget.io.guard import check_input, is_regular_file

    check_input(input_path, noun="an IUV PNG or a folder of them", kind="file_or_folder")
    if input_path.is_dir():
        pngs = sorted(p for p in input_path.glob(f"*{IUV_SUFFIX}.png") if is_regular_file(p))
        if not pngs:
            pngs = sorted(p for p in input_path.glob("*.png") if is_regular_file(p))
        if not pngs:
            raise InputError(f"{input_path}: no *{IUV_SUFFIX}.png or *.png files in this folder")
        out_dir = out if out is not None else input_path
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"{out_dir}: with a folder input, -o must be a folder")
        return [(png, out_dir / default_output_name(png)) for png in pngs]
    if out is None:
        target = input_path.with_name(default_output_name(input_path))
    elif out.is_dir():
        target = out / default_output_name(input_path)
    else:
        target = out
    return [(input_path, target)]


def _check_outputs(pairs: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Every output a new or regular ``.npy`` file, none an input, no two the same (:mod:`retarget.io.guard`)."""
    from retarget.io.guard import PathPlan

    plan = PathPlan()
    for png, _ in pairs:
        plan.input(png, noun="an IUV PNG")
    for _, target in pairs:
        plan.output(target, overwrite=overwrite, make_parents=len(pairs) > 1)
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
    from retarget.io.iuv import read_iuv_png, write_uv_npy
    from retarget.io.progress import progress_bar
    from retarget.uvmap import iuv_to_uv

    pairs = _plan(input_path, out)
    _check_outputs(pairs, overwrite)
    if len(pairs) > 1:
        pairs[0][1].parent.mkdir(parents=True, exist_ok=True)
    elif not pairs[0][1].parent.is_dir():
        raise InputError(f"{pairs[0][1].parent}: output folder does not exist")
    show_bar = len(pairs) > 1
    with progress_bar(len(pairs), "convert-iuv", unit="file", disable=not show_bar) as bar:
        for png, target in pairs:
            write_uv_npy(target, iuv_to_uv(read_iuv_png(png), table.value), overwrite=overwrite)
            bar.update(1)
    if not show_bar:
        typer.echo(f"wrote {pairs[0][1]}")
    else:
        typer.echo(f"wrote {len(pairs)} UV maps to {pairs[0][1].parent}")
