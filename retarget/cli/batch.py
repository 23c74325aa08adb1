"""``retarget batch``: many ``retarget video`` jobs, DensePose once per driver, a verified report."""

from __future__ import annotations

from pathlib import Path

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device
from retarget.errors import InputError, UsageError

_HELP = """Run many source × driver jobs with models loaded once per worker.

Jobs come from a jobs file (CSV with a header `source,driver[,output][,setting...]`, or TOML with
[[job]] tables) or from --sources and --drivers (every source × every driver). Outputs default to
OUT_DIR/<driver-stem>_as_<source-stem>.mp4; the report is OUT_DIR/batch_report.json.

Examples:

  retarget batch --sources photos/ --drivers 'clips/*.mp4' --out-dir out/

  retarget batch --jobs jobs.csv --out-dir out/ --workers 2

  retarget batch --sources photos/ --drivers clips/ --out-dir /shared/out --backend ray --address auto

The plan is printed first (jobs, distinct drivers, finished outputs to skip); jobs that need DensePose
weights that are not installed are reported then, before any work (also with --dry-run). DensePose runs once per
distinct driver and is shared through the cache. Running the same command again skips jobs the report
records as finished (output hash and inputs verified) and retries failed ones. Exit code 1 when any
job failed.
"""


@app.command("batch", help=_HELP)
def batch_command(
    jobs_file: Path | None = typer.Option(None, "--jobs", help="Jobs file (.csv or .toml)."),
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
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and exit."),
    checkpoint_dir: opt.CheckpointDir = None,
    weight_free: opt.WeightFree = False,
    densepose_backend: opt.DensePoseBackendName = "auto",
    densepose_weights: opt.DensePoseWeights = None,
    densepose_config: opt.DensePoseConfig = None,
    densepose_size: opt.DensePoseSize = 800,
    densepose_track: opt.DensePoseTrack = True,
    batch_size: opt.BatchSize = 4,
    device: opt.Device = "cpu",
    size: opt.CropSize = 256,
    background: opt.Background = "scene",
    output_mode: opt.OutputMode = "frame",
    on_missing: opt.OnMissing = "hold",
    table: opt.Table = "training",
    side_by_side: opt.SideBySide = False,
    precision: opt.Precision = "fp32",
    fill: opt.Fill = "body",
    # --- inference engine (issue 14) ---
    engine: opt.Engine = "auto",
    # ---
    temporal_filter: opt.TemporalFilter = True,
    temporal_strength: opt.TemporalStrength = 2,
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept source photos above 50 megapixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No plan, progress bar or table."),
) -> None:
    from retarget.batch import (
        REPORT_NAME,
        LocalExecutor,
        WorkerConfig,
        cross_jobs,
        default_threads,
        default_workers,
        load_jobs_file,
        load_report,
        make_plan,
        run_plan,
        summary_table,
    )
    from retarget.batch.plan import check_densepose_weights

    if backend not in ("local", "ray"):
        raise UsageError(f"--backend {backend!r}: expected local or ray")
    if address is not None and backend != "ray":
        raise UsageError("--address is for --backend ray")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if jobs_file is not None and (sources or drivers):
        raise UsageError("give either --jobs FILE or --sources/--drivers, not both")
    if jobs_file is None and not (sources and drivers):
        raise UsageError("give --jobs FILE, or both --sources and --drivers")
    if jobs_file is None and out_dir is None:
        raise UsageError("--sources/--drivers need --out-dir")
    if out_dir is None:
        out_dir = Path(jobs_file).absolute().parent
    out_dir = out_dir.absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out-dir is not a folder")
    report_path = (report or out_dir / REPORT_NAME).absolute()
    previous = load_report(report_path)

    if jobs_file is not None:
        jobs = load_jobs_file(jobs_file, out_dir)
    else:
        jobs = cross_jobs(sources, drivers, out_dir, exclude_drivers=[Path(p) for p in previous])
        outputs = {j.output for j in jobs}
        jobs = [j for j in jobs if j.driver not in outputs]  # never take this batch's outputs as drivers

    device = resolve_device(device)
    checkpoints = None
    if not weight_free:
        from retarget.weights import resolve_coordinpaint_checkpoints, warn_weight_free_once

        found = resolve_coordinpaint_checkpoints(checkpoint_dir)
        if found is None:
            warn_weight_free_once()
        else:
            checkpoints = (str(found[0]), str(found[1]))
    config = WorkerConfig.with_current_env(
        checkpoints=checkpoints, device=device, allow_large=allow_large,
        densepose_weights=str(densepose_weights.absolute()) if densepose_weights else None,
        densepose_config=str(Path(densepose_config).absolute()) if densepose_config and Path(densepose_config).suffix
        else densepose_config)
    defaults = {"size": size, "background": background, "output_mode": output_mode, "on_missing": on_missing,
                "table": table, "batch_size": batch_size, "side_by_side": side_by_side,
                "precision": precision, "fill": fill, "engine": engine,
                "temporal_filter": temporal_filter, "temporal_strength": temporal_strength,
                "densepose_backend": densepose_backend, "densepose_size": densepose_size,
                "densepose_track": densepose_track}
    plan = make_plan(jobs, defaults, config, previous, overwrite=overwrite, rerun=rerun)

    to_run = plan.to_run
    if backend == "local":
        n_workers = workers or default_workers(len(to_run), any(p.model_densepose for p in to_run), device)
        n_workers = min(n_workers, max(1, len(to_run)))
        config.threads = threads or default_threads(n_workers)
    else:
        n_workers = workers
        config.threads = threads or 1
    if not quiet:
        typer.echo(plan.describe(n_workers, backend), err=True)
    check_densepose_weights(plan, config.densepose_weights, config.densepose_config)  # also with --dry-run
    if dry_run:
        return

    out_dir.mkdir(parents=True, exist_ok=True)
    for planned in plan.jobs:
        folder = planned.job.output.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
    if to_run and backend == "ray":
        from retarget.batch.ray_backend import RayExecutor

        executor = RayExecutor(config, n_workers, address)
        n_workers = executor.workers
    else:
        executor = LocalExecutor(config, n_workers if to_run else 1)
    meta = {"backend": backend, "workers": n_workers, "threads": config.threads}
    records = run_plan(plan, executor, report_path, meta, quiet=quiet)

    if not quiet:
        typer.echo(summary_table(records), err=True)
    typer.echo(str(report_path))
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        raise InputError(f"{len(failed)} of {len(records)} job{'s' * (len(records) != 1)} failed "
                         f"(see {report_path})")
