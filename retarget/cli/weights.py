"""``retarget weights list | fetch | import | verify``: manage the model checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from retarget.cli.app import app
from retarget.errors import WeightsError
from retarget.paths import weights_dir
from retarget.weights import all_statuses, fetch_model, import_weights, load_manifest
from retarget.weights.store import MISMATCH, MISSING, PRESENT, VERIFIED

weights_app = typer.Typer(
    help=(
        "Install and check model weights (stored in $RETARGET_HOME/weights).\n\n"
        "Examples:\n\n"
        "  retarget weights list\n\n"
        "  retarget weights fetch densepose-r50-fpn-s1x\n\n"
        "  retarget weights import ~/Downloads/coordinpaint-checkpoints.zip\n\n"
        "  retarget weights verify"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,  # as the main app: plain help, brackets kept
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(weights_app, name="weights")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def source_of(manifest, entry) -> str:
    """Where a model's file comes from: its download URL, or how to get it by hand."""
    archive = manifest.archive_of(entry)
    if archive is not None:
        page = archive.page or (archive.urls[0] if archive.urls else entry.source)
        return f"manual download: {page} ({archive.file}, then `retarget weights import FILE`)"
    if entry.urls:
        return entry.urls[0]
    return f"manual download: {entry.source}"


@weights_app.command("list")
def list_command() -> None:
    """Show every model: status (missing / present / verified / hash mismatch), size, license, where it is
    installed and where it comes from (download URL, or the page to download it from by hand).

    Example: retarget weights list
    """
    manifest = load_manifest()
    rows = [["NAME", "STATUS", "SIZE", "LICENSE", "PATH", "SOURCE"]]
    recorded = False
    for status in all_statuses(manifest):
        state = status.state
        if state == VERIFIED and status.reference == "recorded":
            state, recorded = "verified*", True
        size = _size(status.size) if status.size is not None else f"~{status.entry.approx_size}"
        rows.append([status.entry.name, state, size, status.entry.license, str(status.path),
                     source_of(manifest, status.entry)])
    typer.echo(f"weights folder: {weights_dir()}")
    typer.echo(_table(rows))
    if recorded:
        typer.echo("* checked against the sha256 recorded at first fetch/import "
                   "(the publisher gives none)")


@weights_app.command("fetch")
def fetch_command(
    name: str = typer.Argument(..., metavar="NAME", help="A model name from `retarget weights list`, or `all`."),
    force: bool = typer.Option(False, "--force", help="Download again even if a good copy is installed."),
    retries: int = typer.Option(3, "--retries", min=0, help="Resume attempts after a cut connection."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Download a model (resumable, verified) into the weights folder.

    Examples:

      retarget weights fetch densepose-r50-fpn-s1x

      retarget weights fetch all

    Without network access, download the file elsewhere and use `retarget weights import PATH`.
    """
    manifest = load_manifest()
    names = manifest.names if name == "all" else [manifest.get(name).name]
    failures: list[str] = []
    done: set[str] = set()
    for model in names:
        if model in done:
            continue
        try:
            results = fetch_model(model, manifest, force=force, progress=progress, retries=retries)
        except WeightsError as exc:
            if len(names) == 1:
                raise
            print(f"error: {exc}", file=sys.stderr)
            archive = manifest.archive_of(manifest.get(model))
            failed = list(archive.members) if archive else [model]  # one archive, one attempt
            failures.extend(failed)
            done.update(failed)
            continue
        for result in results:
            done.add(result.name)
            typer.echo(f"{result.name}: {result.action} ({result.path})")
    if failures:
        raise WeightsError(f"{len(failures)} of {len(names)} models could not be fetched: "
                           f"{', '.join(failures)}")


@weights_app.command("import")
def import_command(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH",
                                                help="Checkpoint files, folders, or zip/tar archives.")],
) -> None:
    """Install checkpoints you downloaded yourself, recognised by hash or content (not by name).

    Examples:

      retarget weights import ~/Downloads/coordinpaint-checkpoints.zip

      retarget weights import ~/Downloads/checkpoint/

      retarget weights import model_final_162be9.pkl
    """
    manifest = load_manifest()
    for path in paths:
        for outcome in import_weights(path, manifest):
            if outcome.action == "skipped":
                typer.echo(f"skipped {outcome.source}: {outcome.detail}", err=True)
            else:
                typer.echo(f"{outcome.name}: {outcome.action} from {outcome.source}")


@weights_app.command("verify")
def verify_command() -> None:
    """Re-hash every installed model. Exit status 0 when every installed model verifies, 1 on any
    mismatch, and 1 when nothing is installed (there is nothing to verify; the message says how to
    install). Models that are not installed are listed but are not an error.

    Example: retarget weights verify
    """
    manifest = load_manifest()
    statuses = all_statuses(manifest, rehash=True)
    if all(status.state == MISSING for status in statuses):
        raise WeightsError(nothing_installed_message(manifest))
    bad = []
    for status in statuses:
        if status.state == MISSING:
            line = f"not installed (`retarget weights fetch {status.entry.name}`)"
        elif status.state == MISMATCH:
            line = f"HASH MISMATCH: {status.detail}"
            bad.append(status.entry.name)
        elif status.state == PRESENT:
            line = "present, no reference hash (placed by hand? `retarget weights import` records one)"
        else:
            line = f"ok ({status.reference} sha256)" + (f"; note: {status.detail}" if status.detail else "")
        typer.echo(f"{status.entry.name}: {line}")
    if bad:
        raise WeightsError(f"{', '.join(bad)} failed verification; reinstall with "
                           "`retarget weights fetch NAME` or `retarget weights import PATH`")


def nothing_installed_message(manifest) -> str:
    """One line: nothing to verify, where weights would be, and how to install them."""
    hints = []
    for archive in manifest.archives:
        page = archive.page or (archive.urls[0] if archive.urls else "")
        hints.append(f"{archive.file} may need a browser: download {page} and run `retarget weights import FILE`")
    extra = f" ({'; '.join(hints)})" if hints else ""
    return (f"no weights are installed in {weights_dir()}, so there is nothing to verify; install them with "
            f"`retarget weights fetch all`{extra}; `retarget weights list` shows each model and where it comes from")
