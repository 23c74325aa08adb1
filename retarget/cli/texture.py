"""``retarget texture``: export the completed colour texture of a photo, to edit and render with ``--texture``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device, resolve_models
from retarget.errors import UsageError

_HELP = """Write the person's completed colour texture (SMPL-UV atlas) as a PNG, to edit and render.

Example:

  retarget texture --source photo.jpg -o person_texture.png --legend

  retarget video --source photo.jpg --driver dance.mp4 --texture person_texture.png

Writes OUT.png (the texture, --size x --size texels: the size `retarget video --size` renders with),
OUT.mask.png (white: seen in the photo, grey: completed, black: off the body, never rendered) and
OUT.npz (the completed coordinate texture `xy`, `seen`, the DensePose `part` of every texel, and the
photo crop `crop` = x0, y0, side); with --legend also OUT.legend.png, the texture enlarged with part
borders and part names. Edit OUT.png in any image editor (keep the size, save as PNG without
transparency) and pass it to video, image, frames or batch with --texture. DensePose for the photo
comes from --source-iuv, photo_IUV.png beside it, or the DensePose model.
"""


@app.command("texture", help=_HELP)
def texture_command(
    source: Path = typer.Option(..., "--source", help="Photo of the person."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Output .png (default: <photo-stem>_texture.png beside the photo)."),
    source_iuv: Optional[Path] = typer.Option(None, "--source-iuv",
                                              help="DensePose IUV PNG (or UV .npy) of the photo."),
    legend: bool = typer.Option(False, "--legend", help="Also write OUT.legend.png with part borders and names."),
    checkpoint_dir: opt.CheckpointDir = None,
    weight_free: opt.WeightFree = False,
    fill: opt.Fill = "body",
    size: opt.CropSize = 256,
    densepose_backend: opt.DensePoseBackendName = "auto",
    densepose_weights: opt.DensePoseWeights = None,
    densepose_size: opt.DensePoseSize = 800,
    densepose_config: opt.DensePoseConfig = None,
    table: opt.Table = "auto",
    device: opt.Device = "cpu",
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept a photo above 50 megapixels."),
) -> None:
    import io

    import numpy as np

    from retarget.io.atomic import atomic_outputs
    from retarget.io.guard import PathPlan
    from retarget.io.image import encode_image
    from retarget.pipeline.bounds import check_bounds
    from retarget.pipeline.job import (
        VideoJob,
        check_densepose_weights,
        load_source,
        source_iuv_sidecar,
        with_resolved_table,
    )
    from retarget.pipeline.pair import FILLS
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.texture import export_texture, texture_legend
    from retarget.pipeline.video import VideoOptions
    from retarget.uvmap import TABLE_CHOICES

    if fill not in FILLS:
        raise UsageError(f"--fill {fill!r}: expected one of {', '.join(FILLS)}")
    if table not in TABLE_CHOICES:
        raise UsageError(f"--table {table!r}: expected one of {', '.join(TABLE_CHOICES)}")
    check_bounds("size", size)
    check_bounds("densepose_size", densepose_size)
    output = Path(output) if output is not None else source.with_name(f"{source.stem}_texture.png")
    if output.suffix.lower() != ".png":
        raise UsageError(f"{output}: the texture is written as PNG (lossless); give an output ending in .png")
    outputs = {"texture": output, "mask": output.with_suffix(".mask.png"), "npz": output.with_suffix(".npz")}
    if legend:
        outputs["legend"] = output.with_suffix(".legend.png")
    plan = PathPlan()  # every input (the IUV sidecar beside the photo too) and output, before any work
    plan.input(source, noun="an image file")
    plan.input(source_iuv or source_iuv_sidecar(source), role="source IUV", noun="an IUV PNG or UV .npy")
    for path in outputs.values():
        plan.output(path, overwrite=overwrite)
    device = resolve_device(device)
    job = VideoJob(source=source, driver=Path("-"), source_iuv=source_iuv, size=size,
                   densepose_backend=densepose_backend, densepose_weights=densepose_weights,
                   densepose_size=densepose_size, densepose_config=densepose_config, allow_large=allow_large,
                   options=VideoOptions(device=device, table=table, fill=fill, command="texture"))
    if source_iuv is None and source_iuv_sidecar(source) is None:
        check_densepose_weights(job, [("source", source)])
    models = None if weight_free else resolve_models(checkpoint_dir, device)
    job = with_resolved_table(job, models)
    crop = load_source(job)
    exported = export_texture(prepare_source_crop(crop, models, device, fill=fill))

    mask = exported.mask_image()
    npz = io.BytesIO()
    np.savez_compressed(npz, xy=exported.xy, seen=exported.seen, part=exported.part.astype(np.uint8),
                        crop=np.array([crop.crop.x0, crop.crop.y0, crop.crop.side], np.int64))
    contents = {"texture": encode_image(outputs["texture"], exported.rgb),
                "mask": encode_image(outputs["mask"], np.repeat(mask[..., None], 3, axis=2)),
                "npz": npz.getvalue()}
    if legend:
        contents["legend"] = encode_image(outputs["legend"], texture_legend(exported))
    # all or nothing: every file goes to a temporary file first, and only a complete set is renamed into place
    with atomic_outputs(outputs.values(), overwrite=overwrite) as temps:
        for tmp, key in zip(temps, outputs):
            tmp.write_bytes(contents[key])
    seen = exported.seen[exported.part > 0].mean() if (exported.part > 0).any() else 0.0
    typer.echo(f"{size}x{size} texture, {100 * seen:.0f} % of the body seen in the photo; wrote "
               + ", ".join(str(p) for p in outputs.values()), err=True)
    typer.echo(str(output))
