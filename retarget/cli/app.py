"""The typer application and the error model shared by all commands.

Exit codes: 0 success, 1 input/processing error, 2 usage error. Errors are printed as one line on
stderr (``error: ...``); ``--debug`` (before the command) shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="retarget",
    help=(
        "Make the person in a photo perform the motion of a driving video.\n\n"
        "Example:\n\n"
        "  retarget video --source photo.jpg --driver dance.mp4\n\n"
        "  retarget image --source S.jpg --source-uv S.npy --target-uv T.npy --out O.png"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: rich markup would eat every [bracketed] fragment ([[job]], [default: ...]) of the texts
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from retarget import __version__

        typer.echo(f"retarget {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    _state["debug"] = debug


# Every other module in this package defines commands and registers them on `app` when imported.
def _register_commands() -> None:
    import pkgutil
    from pathlib import Path

    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name not in ("app", "__main__") and not info.name.startswith("_"):
            importlib.import_module(f"retarget.cli.{info.name}")
    _keep_examples_verbatim(app)


def verbatim_examples(text: str) -> str:
    """Mark every paragraph of indented command lines (the examples) as not to be re-wrapped.

    Help is rendered by click, which re-wraps paragraphs to the terminal width; a paragraph starting
    with a ``\\b`` line is printed as written, so an example stays one line that can be copied.
    """
    paragraphs = text.split("\n\n")
    for i, paragraph in enumerate(paragraphs):
        lines = [line for line in paragraph.splitlines() if line.strip()]
        if lines and all(line.startswith("  ") for line in lines) and not paragraph.startswith("\b"):
            paragraphs[i] = "\b\n" + paragraph
    return "\n\n".join(paragraphs)


def _keep_examples_verbatim(typer_app: typer.Typer) -> None:
    import inspect

    if isinstance(typer_app.info.help, str):
        typer_app.info.help = verbatim_examples(typer_app.info.help)
    for command in typer_app.registered_commands:
        text = command.help if isinstance(command.help, str) else inspect.getdoc(command.callback)
        if text:
            command.help = verbatim_examples(text)
    for group in typer_app.registered_groups:
        _keep_examples_verbatim(group.typer_instance)


_register_commands()


_INTERRUPTED = "error: interrupted; nothing half-written was kept (a rerun resumes from the DensePose cache)"


def _line_start() -> str:
    """``"\n"`` when a forced progress bar (``RETARGET_PROGRESS=1``) may have left a line open in a log, so
    that the error line starts a line of its own (``grep '^error:'``); else ``""`` (retarget/io/progress.py)."""
    import os

    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "\n" if os.environ.get("RETARGET_PROGRESS", "").strip() == "1" and not tty else ""


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: every failure becomes one ``error: ...`` line on stderr.

    Exit codes: 0 success, 2 usage errors (bad options, typer/click parse errors, :class:`UsageError`),
    1 input/processing errors (:class:`RetargetError`, and at this boundary also ``OSError`` such as a
    full disk or a folder without write permission, video-library errors, ``MemoryError``), 130 when
    interrupted. Any other exception is a bug: one line naming it, and ``--debug`` (before the
    command) shows the traceback instead. Returns the exit code when ``argv`` is given (tests), else
    exits.
    """
    from retarget.cli._errors import describe_exception

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = app(args=args, prog_name="retarget", standalone_mode=False)
        code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        if code == 130:  # typer turns Ctrl-C into a returned exit code 130
            print(_INTERRUPTED, file=sys.stderr)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        print(_INTERRUPTED, file=sys.stderr)
        code = 130
    except BaseException as exc:  # noqa: BLE001 - the one place where errors become messages
        described = describe_exception(exc)
        if described is None or (debug and described.traceback_in_debug):
            raise
        if described.text is not None:
            print(_line_start() + described.text, file=sys.stderr)
        code = described.exit_code
    if argv is None:
        sys.exit(code)
    return code
