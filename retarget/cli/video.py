"""``retarget video``: the main job."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device, resolve_models


@app.command(
    "video",
    help=(
        "Make the person in a photo perform the motion of a driving video.\n\n"
        "Example:\n\n"
        "  retarget video --source photo.jpg --driver dance.mp4\n\n"
        "writes dance_as_photo.mp4 next to the driver. DensePose for the photo comes from --source-iuv or "
        "photo_IUV.png beside it; for the driver from --driver-iuv, a dance.iuv/ folder or dance.iuv.npz "
        "beside it, or the DensePose model (weights needed). Without coordinate-inpainting weights the "
        "weight-free path runs.\n\n"
        "  retarget video --source photo.jpg --driver dance.mp4 --texture person_texture.png\n\n"
        "  retarget video --source A.jpg --garment B.jpg --garment-region upper --driver dance.mp4\n\n"
        "render with an edited texture (from `retarget texture`), or with B's clothes on A (docs/textures.md)."
    ),
)
def video_command(
    source: Path = typer.Option(..., "--source", help="Source photo of the person to animate."),
    driver: Path = typer.Option(..., "--driver", help="Driving video."),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="Output video (.mp4, .m4v, .mov, .mkv), folder/ or name_%05d.png for a "
                                              "PNG sequence (default: <driver-stem>_as_<source-stem>.mp4 beside "
                                              "the driver; .mkv/.mov/folder for --codec ffv1/prores/png)."),
    codec: opt.Codec = None,
    crf: opt.Crf = None,
    checkpoint_dir: opt.CheckpointDir = None,
    weight_free: opt.WeightFree = False,
    fill: opt.Fill = "body",
    source_iuv: Optional[Path] = typer.Option(None, "--source-iuv",
                                              help="DensePose IUV PNG (or UV .npy) of the photo."),
    driver_iuv: Optional[Path] = typer.Option(None, "--driver-iuv",
                                              help="Per-frame IUV: folder of *_IUV.png or an .npz."),
    densepose_backend: opt.DensePoseBackendName = "auto",
    densepose_weights: opt.DensePoseWeights = None,
    densepose_size: opt.DensePoseSize = 800,
    densepose_config: opt.DensePoseConfig = None,
    densepose_track: opt.DensePoseTrack = True,
    person: opt.Person = "largest",
    batch_size: opt.BatchSize = 4,
    device: opt.Device = "cpu",
    size: opt.CropSize = 256,
    background: opt.Background = "scene",
    output_mode: opt.OutputMode = "frame",
    on_missing: opt.OnMissing = "hold",
    table: opt.Table = "auto",
    precision: opt.Precision = "auto",
    side_by_side: opt.SideBySide = False,
    engine: opt.Engine = "auto",
    temporal_filter: opt.TemporalFilter = True,
    temporal_strength: opt.TemporalStrength = 2,
    densepose_every: opt.DensePoseEvery = "1",
    steady: opt.Steady = 0.8,
    texture: opt.Texture = None,
    garment: opt.Garment = None,
    garment_iuv: opt.GarmentIUV = None,
    garment_region: opt.GarmentRegion = "upper",
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept a source photo above 50 megapixels."),
    keep_partial: bool = typer.Option(False, "--keep-partial",
                                      help="Driver corrupt or truncated: still render the frames before the damage "
                                           "to <output-stem>.partial.mp4 (exit code stays 1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    from retarget.pipeline.job import VideoJob, run_video_job
    from retarget.pipeline.video import VideoOptions

    options = VideoOptions(batch_size=batch_size, device=resolve_device(device), background=background,
                           output_mode=output_mode, on_missing=on_missing, table=table,
                           side_by_side=side_by_side, quiet=quiet, precision=precision, keep_partial=keep_partial,
                           fill=fill, temporal_radius=temporal_strength if temporal_filter else 0, person=person,
                           engine=engine, codec=codec, crf=crf, densepose_every=densepose_every,
                           steady=steady)
    job = VideoJob(source=source, driver=driver, output=output, source_iuv=source_iuv, driver_iuv=driver_iuv,
                   size=size, overwrite=overwrite, densepose_backend=densepose_backend,
                   densepose_weights=densepose_weights, densepose_size=densepose_size,
                   densepose_config=densepose_config, densepose_track=densepose_track, allow_large=allow_large,
                   options=options, texture=texture, garment=garment, garment_iuv=garment_iuv,
                   garment_region=garment_region)
    options.validate()
    job.output_spec()  # codec, crf and output type checked before any model is loaded
    models = None if weight_free else resolve_models(checkpoint_dir, options.device)
    summary = run_video_job(job, models)
    if not quiet:
        typer.echo(summary.line(), err=True)
    typer.echo(str(summary.output))
