"""Command-line interface: ``retarget <command> ...``.

The CLI is thin: each sub-module parses options and calls importable functions.
Every subcommand registers itself on :data:`app` in its own module; :func:`main` maps
:class:`retarget.errors.RetargetError` to a one-line message and an exit code.
"""

from retarget.cli.app import app, main

__all__ = ["app", "main"]
