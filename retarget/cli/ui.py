"""``retarget ui``: the web page (docs/ui.md)."""

from __future__ import annotations

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app


@app.command(
    "ui",
    help=(
        "Serve a web page that runs `retarget video`: upload a photo (or take a webcam snapshot) and a "
        "driving video, choose the settings, watch the progress, play and download the result.\n\n"
        "Example:\n\n"
        "  retarget ui\n\n"
        "then open http://127.0.0.1:7860/ in a browser. Needs the optional extra: pip install 'retarget[ui]'. "
        "The render is also an API endpoint (/retarget, docs/ui.md). Ctrl-C stops the page and removes its "
        "uploads and outputs."
    ),
)
def ui_command(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (0.0.0.0: every network interface; anyone who reaches it "
                                  "can render)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to listen on."),
    share: bool = typer.Option(False, "--share/--no-share",
                               help="Also publish a temporary public gradio.live link (needs internet)."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", min=0.001, help="Largest upload accepted, in MB."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", min=0.001,
                                      help="Longest driving video accepted, in seconds."),
    device: opt.Device = "cpu",
) -> None:
    from retarget.cli.common import resolve_device
    from retarget.ui import require_gradio
    from retarget.errors import InputError
    from retarget.ui.app import ServeError, UiConfig, serve
    from retarget.ui.jobs import Limits

    require_gradio()  # one line naming the extra when Gradio is missing, before anything starts
    config = UiConfig(host=host, port=port, share=share, device=resolve_device(device),
                      limits=Limits(max_upload_mb=max_upload_mb, max_seconds=max_seconds))
    try:
        serve(config, announce=lambda line: typer.echo(line, err=True))
    except ServeError as exc:
        raise InputError(f"{exc}; choose another port with --port N, or another address with --host") from None
