"""``retarget batch``: many ``retarget video`` jobs, DensePose once per driver, a verified report."""

from __future__ import annotations

from pathlib import Path

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device
from retarget.errors import InputError

_HELP = """Run many source × driver jobs with models loaded once per worker.

Jobs come from a jobs file (.csv or .txt: comma-separated with a header `source,driver[,output][,setting...]`;
.tsv: the same, tab-separated; or TOML with [[job]] tables, .toml) or from --sources and --drivers (every source ×
every driver). Outputs default to OUT_DIR/<driver-stem>_as_<source-stem>.mp4 (.mkv with --codec ffv1, .mov with
prores, a PNG-sequence folder with png; a jobs file's relative outputs are relative to OUT_DIR, and stay in it);
the report is OUT_DIR/batch_report.json.

Examples:

  retarget batch --sources photos/ --drivers 'clips/*.mp4' --out-dir out/

  retarget batch --jobs jobs.csv --out-dir out/ --workers 2

  retarget batch --sources photos/ --drivers clips/ --out-dir /shared/out --backend ray --address auto

The plan is printed first (jobs, distinct drivers, finished outputs to skip, and each job that cannot run
with its reason: a missing, unreadable or damaged input, a bad row, DensePose needed without weights). Every
job that can run runs; the others are reported as failed (--fail-fast refuses the whole batch up front instead).
DensePose runs once per distinct driver and is shared through the cache. Running the same command again skips
jobs the report records as finished (output hash and inputs verified) and retries failed ones. Exit code 1
when any job failed (with --dry-run: when any job cannot run).
"""


@app.command("batch", help=_HELP)
def batch_command(
    jobs_file: Path | None = typer.Option(None, "--jobs", help="Jobs file: .csv or .txt (comma-separated), .tsv "
                                                                 "(tab-separated) or .toml."),
    sources: list[str] | None = typer.Option(None, "--sources", help="Photos: folder, file or glob (repeatable)."),
    drivers: list[str] | None = typer.Option(None, "--drivers", help="Videos: folder, file or glob (repeatable)."),
    out_dir: Path | None = typer.Option(None, "--out-dir",
                                           help="Output folder (default with --jobs: the jobs file's folder)."),
    report: Path | None = typer.Option(None, "--report", help="Report path (default OUT_DIR/batch_report.json)."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes/actors (default: fits the "
                                                                 "machine's cores and memory)."),
    threads: int | None = typer.Option(None, "--threads", help="torch threads per worker (default: cores / "
                                                                 "workers locally, 1 on Ray)."),
    backend: str = typer.Option("local", "--backend", help="local (process pool) or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (default: start a local "
                                                                 "Ray instance)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs the report does not "
                                                              "record as finished."),
    rerun: bool = typer.Option(False, "--rerun", help="Render finished jobs again too."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and exit (1 when a job cannot run)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Refuse the whole batch before any work when a job "
                                                              "cannot run, and start no job after one failed."),
    checkpoint_dir: opt.CheckpointDir = None,
    weight_free: opt.WeightFree = False,
    densepose_backend: opt.DensePoseBackendName = "auto",
    densepose_weights: opt.DensePoseWeights = None,
    densepose_config: opt.DensePoseConfig = None,
    densepose_size: opt.DensePoseSize = 800,
    densepose_track: opt.DensePoseTrack = True,
    person: opt.Person = "largest",
    batch_size: opt.BatchSize = 4,
    device: opt.Device = "cpu",
    size: opt.CropSize = 256,
    background: opt.Background = "scene",
    output_mode: opt.OutputMode = "frame",
    on_missing: opt.OnMissing = "hold",
    table: opt.Table = "auto",
    side_by_side: opt.SideBySide = False,
    precision: opt.Precision = "auto",
    fill: opt.Fill = "body",
    engine: opt.Engine = "auto",
    temporal_filter: opt.TemporalFilter = True,
    temporal_strength: opt.TemporalStrength = 2,
    codec: opt.Codec = None,
    crf: opt.Crf = None,
    densepose_every: opt.DensePoseEvery = "1",
    steady: opt.Steady = 0.8,
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept source photos above 50 megapixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No plan, progress bar or table."),
) -> None:
    from retarget.batch import run_batch
    from retarget.cli.app import _state

    settings = {"size": size, "background": background, "output_mode": output_mode, "on_missing": on_missing,
                "table": table, "batch_size": batch_size, "side_by_side": side_by_side, "precision": precision,
                "fill": fill, "engine": engine, "temporal_filter": temporal_filter,
                "temporal_strength": temporal_strength,
                "densepose_backend": densepose_backend, "densepose_size": densepose_size,
                "densepose_track": densepose_track, "person": person, "codec": codec, "crf": crf,
                "densepose_every": densepose_every, "steady": steady}
    result = run_batch(jobs_file, sources=sources, drivers=drivers, out_dir=out_dir, report=report, workers=workers,
                       threads=threads, backend=backend, address=address, overwrite=overwrite, rerun=rerun,
                       dry_run=dry_run, checkpoint_dir=checkpoint_dir, weight_free=weight_free,
                       device=resolve_device(device), densepose_weights=densepose_weights,
                       densepose_config=densepose_config, allow_large=allow_large, settings=settings, quiet=quiet,
                       echo=lambda text: typer.echo(text, err=True), fail_fast=fail_fast,
                       tracebacks=bool(_state.get("debug")))
    if dry_run:
        if result.failed:
            raise InputError(result.failure_message())
        return
    if not quiet:
        typer.echo(result.summary_table(), err=True)
    typer.echo(str(result.report))
    if result.failed:
        raise InputError(result.failure_message())
