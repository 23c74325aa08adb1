"""``retarget image``: one source photo, one target pose, one output image."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device, resolve_models
from retarget.errors import InputError, UsageError


#: ``retarget image`` does not run DensePose itself: how to make the IUV render it needs.
_MAKE_IUV = ("; `image` does not run DensePose: make an IUV render of {what} with `retarget densepose PHOTO --out "
             "DIR/` (writes DIR/<name>_IUV.png; needs the DensePose weights: `retarget weights fetch "
             "densepose-r50-fpn-s1x`)")


@app.command(
    "image",
    help=(
        "Render the person of a source photo in the pose of a target UV map.\n\n"
        "Example:\n\n"
        "  retarget image --source S.jpg --source-uv S.npy --target-uv T.npy --out O.png\n\n"
        "  retarget image --source S.jpg --source-iuv S_IUV.png --target-iuv T_IUV.png --out O.png\n\n"
        "UV files are (H, W, 2) float .npy maps of SMPL-UV in [-1, 1] with NaN background; DensePose IUV "
        "PNGs are converted with --table (see `retarget convert-iuv`). Without weights the weight-free "
        "path runs.\n\n"
        "  retarget image --source A.jpg --source-iuv A_IUV.png --target-iuv T_IUV.png --garment B.jpg "
        "--garment-region upper -o O.png\n\n"
        "--texture renders an edited texture (from `retarget texture --size` with the photo's side), --garment "
        "another photo's clothes (its IUV from --garment-iuv or B_IUV.png beside it); see docs/textures.md."
    ),
)
def image_command(
    source: Path = typer.Option(..., "--source", help="Source photo (RGB image)."),
    source_uv: Optional[Path] = typer.Option(None, "--source-uv", help="UV map of the source photo (.npy)."),
    target_uv: Optional[Path] = typer.Option(None, "--target-uv", help="UV map of the target pose (.npy)."),
    source_iuv: Optional[Path] = typer.Option(None, "--source-iuv",
                                              help="DensePose IUV PNG of the source (instead of --source-uv)."),
    target_iuv: Optional[Path] = typer.Option(None, "--target-iuv",
                                              help="DensePose IUV PNG of the target (instead of --target-uv)."),
    table: str = typer.Option("auto", "--table", help="IUV→UV table for IUV inputs: auto (clean without weights, "
                                                       "training with them), training, released or clean."),
    out: Path = typer.Option(..., "--out", "-o", help="Output image (.png/.jpg)."),
    checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir",
                                                  help="Folder with inpainter.pth and refiner.pth."),
    weight_free: opt.WeightFree = False,
    fill: opt.Fill = "body",
    dump_stages: Optional[Path] = typer.Option(None, "--dump-stages",
                                               help="Also write every stage to this .npz."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    texture: opt.Texture = None,
    garment: opt.Garment = None,
    garment_iuv: opt.GarmentIUV = None,
    garment_region: opt.GarmentRegion = "upper",
    engine: str = typer.Option("auto", "--engine",
                               help="Refiner engine: auto (torch here: one frame does not repay a conversion), "
                                    "torch or openvino (pip install 'retarget[openvino]')."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept a source photo above 50 megapixels."),
    size: Optional[int] = typer.Option(
        None, "--size", help="Render a person crop of this side (as `video --size`) and paste it back into a frame "
                             "of the target map's size. Default: the photo's own size when its sides are multiples "
                             "of 4, at most 1024 px, and the target map has its size; else a 256 crop."),
) -> None:
    from retarget.io.atomic import atomic_output
    from retarget.io.guard import PathPlan
    from retarget.io.image import MIN_SIDE as PHOTO_MIN_SIDE
    from retarget.io.image import read_image_rgb, to_uint8, write_image_rgb
    from retarget.io.iuv import read_iuv_png, read_uv_npy
    from retarget.pipeline import run_pair, stage_arrays
    from retarget.pipeline.bounds import check_bounds
    from retarget.pipeline.image_pair import FRAMED_SIZE, frame_pair, framing_reason, paste_pair, shows_person
    from retarget.pipeline.pair import FILLS
    from retarget.uvmap import TABLE_CHOICES, iuv_to_uv, resolve_table

    if fill not in FILLS:
        raise UsageError(f"--fill {fill!r}: expected one of {', '.join(FILLS)}")
    if table not in TABLE_CHOICES:
        raise UsageError(f"--table {table!r}: expected one of {', '.join(TABLE_CHOICES)}")
    if (source_uv is None) == (source_iuv is None):
        raise UsageError(f"give exactly one of --source-uv or --source-iuv{_MAKE_IUV.format(what='the source photo')}"
                         if source_uv is None else "give only one of --source-uv or --source-iuv")
    if (target_uv is None) == (target_iuv is None):
        raise UsageError(f"give exactly one of --target-uv or --target-iuv{_MAKE_IUV.format(what='the target pose')}"
                         if target_uv is None else "give only one of --target-uv or --target-iuv")
    from retarget.pipeline.texture import GARMENT_REGIONS

    if texture is not None and garment is not None:
        raise UsageError("give --texture or --garment, not both (paint the garment into the texture instead)")
    if garment_region not in GARMENT_REGIONS:
        raise UsageError(f"--garment-region {garment_region!r}: expected one of {', '.join(GARMENT_REGIONS)}")
    if garment_iuv is not None and garment is None:
        raise UsageError("--garment-iuv is the DensePose of the --garment photo; give that photo too")
    plan = PathPlan()  # every input and output, before any work: no output may be an input
    plan.input(source, noun="an image file")
    if garment is not None:
        plan.input(garment, role="garment photo", noun="an image file")
    if garment is not None and garment_iuv is None:
        garment_iuv = garment.with_name(garment.stem + "_IUV.png")
        if not garment_iuv.is_file():
            raise UsageError(f"{garment}: give --garment-iuv, or {garment_iuv.name} beside it"
                             f"{_MAKE_IUV.format(what='the garment photo')}")
    for path, role in ((source_uv, "source UV"), (target_uv, "target UV"), (source_iuv, "source IUV"),
                       (target_iuv, "target IUV"), (texture, "texture"), (garment_iuv, "garment IUV")):
        plan.input(path, role=role, noun="an image file" if role == "texture" else "an IUV PNG or UV .npy")
    if dump_stages is not None and dump_stages.suffix != ".npz":
        raise UsageError(f"{dump_stages}: --dump-stages needs a .npz file name")
    plan.output(out, overwrite=overwrite)
    if dump_stages is not None:
        plan.output(dump_stages, overwrite=overwrite)
    torch_device = resolve_device(device)

    if size is not None:
        check_bounds("size", size)
    image = read_image_rgb(source, allow_large=allow_large)
    wh = (image.shape[1], image.shape[0])
    # UV maps (H, W, 2) as given, IUV (H, W, 3) converted once the path (and so the table) is known. The target
    # map may have any size when the pair is framed (the output then has its size)
    suv = read_uv_npy(source_uv) if source_uv is not None else read_iuv_png(source_iuv, size=wh, size_of="the photo")
    tuv = read_uv_npy(target_uv) if target_uv is not None else read_iuv_png(target_iuv)
    source_uv, target_uv = source_uv or source_iuv, target_uv or target_iuv
    if suv.shape[:2] != image.shape[:2]:
        raise InputError(f"{source_uv}: UV map is {suv.shape[1]}x{suv.shape[0]} but the photo is "
                         f"{image.shape[1]}x{image.shape[0]}; they must come from the same image")
    reason = None if size is not None else framing_reason(image.shape[:2], tuv.shape[:2])
    framed = size is not None or reason is not None
    work = size or FRAMED_SIZE
    if framed and min(image.shape[:2]) < PHOTO_MIN_SIDE:
        raise InputError(f"{source}: image is {image.shape[1]}x{image.shape[0]}, smaller than {PHOTO_MIN_SIDE} px "
                         "on a side; use a larger photo")

    edited_texture = None
    if texture is not None:  # a bad texture fails before any work
        from retarget.pipeline.texture import read_texture

        h, w = (work, work) if framed else image.shape[:2]
        hint = (f"; `retarget image` uses textures of the size it renders at: export one with `retarget texture "
                f"--size N` (N = {w})" if h == w else "; `retarget image` uses textures of the photo's size "
                "(non-square here): pass --size N to render a person crop of N x N with a texture of that size")
        edited_texture = read_texture(texture, (h, w), hint)
    from retarget.engine import check_engine, wrap_models

    check_engine(engine)
    models = None if weight_free else resolve_models(checkpoint_dir, torch_device)
    table = resolve_table(table, models is None)
    if not shows_person(suv):
        raise InputError(f"{source_uv}: no person found in the source photo's DensePose map; use a photo that shows "
                         "one person clearly, whole body if possible")
    if not shows_person(tuv):
        typer.echo(f"note: {target_uv}: the target pose shows no person; the output is the background only", err=True)
    if framed:  # IUV maps are cut first and converted at the crop's size
        pair = frame_pair(image, suv, tuv, work, table)
        if reason is not None:
            h, w = pair.frame_hw
            typer.echo(f"note: {reason}: rendering a {work}x{work} crop around each person, pasted back into a "
                       f"{w}x{h} frame (--size N sets the crop)", err=True)
    else:
        pair = None
        suv, tuv = (iuv_to_uv(m, table=table) if m.shape[-1] == 3 else m for m in (suv, tuv))
    photo, photo_uv, pose = (pair.image, pair.uv, pair.target_uv) if pair is not None else (image, suv, tuv)
    if engine == "openvino":
        models = wrap_models(models, engine, torch_device, "fp32", 1, photo.shape[:2])
    if texture is None and garment is None:
        result = run_pair(photo, photo_uv, pose, models, device=torch_device, fill=fill)
    else:
        result = _edited_pair(photo, photo_uv, pose, models, torch_device, fill, texture=edited_texture,
                              garment=garment, garment_iuv=garment_iuv, region=garment_region, table=table,
                              allow_large=allow_large)
    output = result.target.output[0].permute(1, 2, 0).cpu().numpy()
    if pair is not None:
        output = paste_pair(pair, result)
    write_image_rgb(out, to_uint8(output), overwrite=overwrite)
    if dump_stages is not None:
        arrays = stage_arrays(result)
        with atomic_output(dump_stages, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
    typer.echo(f"wrote {out}" + (f" and {dump_stages}" if dump_stages else ""), err=True)


def _edited_pair(image, suv, tuv, models, device, fill, *, texture, garment, garment_iuv, region, table,
                 allow_large):
    """:func:`run_pair` with an edited texture (``texture``: ``(H, W, 3)`` float, read by :func:`read_texture`)
    or another photo's clothes (``--garment``)."""
    import torch

    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_iuv_png, read_uv_npy
    from retarget.pipeline import PairResult, prepare_source, render_targets
    from retarget.pipeline.source import frame_source
    from retarget.pipeline.texture import with_garment, with_texture
    from retarget.uvmap import iuv_to_uv

    def tensor(array):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None].to(device)

    h, w = image.shape[:2]
    state = prepare_source(tensor(image / 255.0), tensor(suv), models, fill=fill)
    if texture is not None:
        state = with_texture(state, texture, models)
    else:
        photo = read_image_rgb(garment, allow_large=allow_large)
        guv = read_uv_npy(garment_iuv) if garment_iuv.suffix == ".npy" else iuv_to_uv(read_iuv_png(
            garment_iuv, size=(photo.shape[1], photo.shape[0]), size_of="the garment photo"), table=table)
        if guv.shape[:2] != photo.shape[:2]:
            raise InputError(f"{garment_iuv}: DensePose map is {guv.shape[1]}x{guv.shape[0]} but the garment photo "
                             f"is {photo.shape[1]}x{photo.shape[0]}; it must be computed on the same image")
        try:
            crop = frame_source(photo, uv=guv, size=256)
        except ValueError:
            raise InputError(f"{garment}: no person found in the garment photo; the garment must be worn by a "
                             "person whose DensePose is given") from None
        worn = prepare_source(tensor(crop.image / 255.0), tensor(crop.uv), models, texture_hw=(h, w), fill=fill)
        state = with_garment(state, worn, region, models, garment)
    target = torch.from_numpy(np.ascontiguousarray(tuv[None], dtype=np.float32)).permute(0, 3, 1, 2).to(device)
    return PairResult(state, render_targets(state, target, models))
