"""``retarget frames``: intermediate images of a job for chosen frames, with an HTML index."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device, resolve_models

_HELP = """Write every intermediate image of a job, for inspection.

For the source once: the IUV render, the partial coordinate texture and its coverage mask, the
completed coordinate texture and the colour texture (legend.png explains the colour code). Per
selected frame: driver frame, driver IUV, target UV, warped coarse image, refined crop, final
composite, and a labelled contact sheet. OUT/index.html shows everything.

Examples:

  retarget frames --source photo.jpg --driver dance.mp4 --out inspect/ --frames 10:40

  retarget frames --source photo.jpg --driver dance.mp4 --out inspect/ --every 15

  retarget frames --driver dance.mp4 --out dp/ --only-densepose

--frames takes START:STOP[:STEP] (STOP excluded) or a list like 3,10,42; default: 8 frames spread
over the clip. DensePose inputs are found as in `retarget video` (sidecars, cache, model).
"""


@app.command("frames", help=_HELP)
def frames_command(
    driver: Path = typer.Option(..., "--driver", help="Driving video."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; must be empty unless --overwrite)."),
    source: Optional[Path] = typer.Option(None, "--source", help="Source photo (not with --only-densepose)."),
    frames: Optional[str] = typer.Option(None, "--frames", help="START:STOP[:STEP] or 3,10,42."),
    every: Optional[int] = typer.Option(None, "--every", help="Every N-th frame."),
    only_densepose: bool = typer.Option(False, "--only-densepose", help="Only the driver's DensePose."),
    checkpoint_dir: Optional[Path] = typer.Option(None, "--checkpoint-dir",
                                                  help="Folder with inpainter.pth and refiner.pth."),
    weight_free: bool = typer.Option(False, "--weight-free", help="Ignore installed weights."),
    fill: opt.Fill = "body",
    engine: opt.Engine = "auto",
    temporal_filter: opt.TemporalFilter = True,
    temporal_strength: opt.TemporalStrength = 2,
    densepose_every: opt.DensePoseEvery = "1",
    texture: opt.Texture = None,
    garment: opt.Garment = None,
    garment_iuv: opt.GarmentIUV = None,
    garment_region: opt.GarmentRegion = "upper",
    source_iuv: Optional[Path] = typer.Option(None, "--source-iuv",
                                              help="DensePose IUV PNG (or UV .npy) of the photo."),
    driver_iuv: Optional[Path] = typer.Option(None, "--driver-iuv", help="Per-frame IUV: folder of *_IUV.png or .npz."),
    densepose_backend: str = typer.Option("auto", "--densepose-backend",
                                          help="auto, precomputed, torchvision or detectron2."),
    densepose_weights: Optional[Path] = typer.Option(None, "--densepose-weights", help="DensePose .pkl."),
    densepose_config: Optional[str] = typer.Option(None, "--densepose-config",
                                                   help="r50 (default), r101 or a JSON config file."),
    densepose_size: int = typer.Option(800, "--densepose-size", help="DensePose input shortest side."),
    densepose_track: bool = typer.Option(True, "--densepose-track/--no-densepose-track",
                                         help="Run the detector around the previous frame's person."),
    person: opt.Person = "largest",
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    size: int = typer.Option(256, "--size", help="Person crop side."),
    background: str = typer.Option("scene", "--background", help="scene, source or #RRGGBB."),
    output_mode: str = typer.Option("frame", "--output-mode", help="frame (pasted back) or crop."),
    on_missing: str = typer.Option("hold", "--on-missing", help="hold, background or skip."),
    table: opt.Table = "auto",
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out folder."),
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept a source photo above 50 megapixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    from retarget.inspect.frames import extract_densepose_frames, extract_frames, prepare_frames_job
    from retarget.pipeline.video import VideoOptions

    options = VideoOptions(device=resolve_device(device), background=background, output_mode=output_mode,
                           on_missing=on_missing, table=table, quiet=quiet, fill=fill,
                           temporal_radius=temporal_strength if temporal_filter else 0, command="frames",
                           person=person, engine=engine, densepose_every=densepose_every)
    created = not out.exists()  # a failed run removes the folder it made (and what it wrote into it)
    job, selection, out = prepare_frames_job(
        driver, out, source=source, frames=frames, every=every, only_densepose=only_densepose, overwrite=overwrite,
        options=options, size=size, source_iuv=source_iuv, driver_iuv=driver_iuv,
        densepose_backend=densepose_backend, densepose_weights=densepose_weights, densepose_size=densepose_size,
        densepose_config=densepose_config, densepose_track=densepose_track, allow_large=allow_large,
        texture=texture, garment=garment, garment_iuv=garment_iuv, garment_region=garment_region)
    try:
        if only_densepose:
            result = extract_densepose_frames(job, out, selection)
        else:
            models = None if weight_free else resolve_models(checkpoint_dir, options.device)
            result = extract_frames(job, out, selection, models, quiet=quiet)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: what this run wrote is already removed
        raise
    if result.note:
        typer.echo(f"note: {driver}: {result.note}", err=True)
    if not quiet:
        typer.echo(f"{len(result.frames)} frame{'s' * (len(result.frames) != 1)}, {len(result.files)} files in "
                   f"{result.seconds:.1f} s", err=True)
    typer.echo(str(result.index_html))
