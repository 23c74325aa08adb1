"""``retarget stream``: live input (pipe, camera, network URL, file) to live output, frame by frame."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from retarget.cli import _options as opt
from retarget.cli.app import app
from retarget.cli.common import resolve_device, resolve_models


@contextlib.contextmanager
def _graceful_stop(stop: threading.Event):
    """Ctrl-C / SIGTERM set ``stop`` (the stream ends cleanly); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@app.command(
    "stream",
    help=(
        "Make the person in a photo follow a live stream: a camera, a network stream, a pipe or a file, "
        "frame by frame with bounded latency.\n\n"
        "Examples:\n\n"
        "  ffmpeg -i dance.mp4 -f yuv4mpegpipe - | retarget stream --source photo.jpg --input - | ffplay -\n\n"
        "  retarget stream --source photo.jpg --input /dev/video0 --output vcam\n\n"
        "  retarget stream --source photo.jpg --input udp://127.0.0.1:5000 --output udp://127.0.0.1:5001\n\n"
        "  retarget stream --source photo.jpg --input dance.mp4 --realtime --output live.mp4 --stats stats.jsonl\n\n"
        "--input: - (stdin: YUV4MPEG2 or any container FFmpeg detects; else --input-format), /dev/videoN, "
        "a URL (udp://, rtsp://, srt://, http://, ...) or a file. --output: - (stdout, YUV4MPEG2 unless "
        "--output-format), a URL (udp://, srt://, tcp:// as MPEG-TS, rtmp:// as FLV), a file (.ts, fragmented "
        ".mp4, .mkv, .y4m, .nut, .flv) or vcam (pip install 'retarget[vcam]'). Output frames keep the input "
        "timestamps. DensePose runs on every frame (weights needed) unless --input-iuv gives it; with "
        "--densepose-every it runs on keyframes only, in the background on live inputs. Ctrl-C or "
        "SIGTERM ends the stream cleanly (exit 0); see docs/stream.md."
    ),
)
def stream_command(
    source: Path = typer.Option(..., "--source", help="Source photo of the person to animate."),
    input_spec: str = typer.Option(..., "--input", "-i",
                                   help="- (stdin), /dev/videoN, a URL or a video file."),
    output_spec: str = typer.Option("-", "--output", "-o",
                                    help="- (stdout, default), a URL, a .ts/.mp4/.mkv/.y4m/.nut/.flv file, or vcam."),
    input_format: Optional[str] = typer.Option(None, "--input-format",
                                               help="Input container (FFmpeg demuxer, e.g. y4m, mpegts, matroska, "
                                                    "v4l2); default: detected."),
    output_format: Optional[str] = typer.Option(None, "--output-format",
                                                help="Output container (FFmpeg muxer, e.g. y4m, mpegts, nut, flv); "
                                                     "default: from --output."),
    realtime: bool = typer.Option(False, "--realtime",
                                  help="Read a file at its own frame rate, as a camera would deliver it."),
    drop: Optional[str] = typer.Option(None, "--drop",
                                       help="late: when behind, drop the oldest waiting frames (default for cameras, "
                                            "URLs, --realtime); none: render every frame (default for pipes, files)."),
    queue: int = typer.Option(1, "--queue", help="Frames that may wait for the renderer with --drop late."),
    timeout: float = typer.Option(10.0, "--timeout",
                                  help="Seconds to wait for a network or camera input to open, and for its next "
                                       "frame (then the stream ends)."),
    stats: Optional[Path] = typer.Option(None, "--stats",
                                         help="Write one JSON line per frame (pts, arrival, output, latency, dropped) "
                                              "to this .jsonl file."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many input frames."),
    crf: Optional[int] = typer.Option(None, "--crf",
                                      help="H.264 quality 0..51 of encoded outputs (files, URLs): 0 = lossless, "
                                           "default 20; lower is better. Not for raw (y4m) or vcam outputs."),
    source_iuv: Optional[Path] = typer.Option(None, "--source-iuv",
                                              help="DensePose IUV PNG (or UV .npy) of the photo."),
    input_iuv: Optional[Path] = typer.Option(None, "--input-iuv",
                                             help="Precomputed per-frame IUV of the input (folder of *_IUV.png or an "
                                                  ".npz, by frame number) instead of running DensePose."),
    checkpoint_dir: opt.CheckpointDir = None,
    weight_free: opt.WeightFree = False,
    fill: opt.Fill = "body",
    densepose_backend: opt.DensePoseBackendName = "auto",
    densepose_weights: opt.DensePoseWeights = None,
    densepose_size: opt.DensePoseSize = 512,
    densepose_config: opt.DensePoseConfig = None,
    densepose_track: opt.DensePoseTrack = True,
    person: opt.Person = "largest",
    device: opt.Device = "cpu",
    size: opt.CropSize = 256,
    background: opt.Background = "scene",
    output_mode: opt.OutputMode = "frame",
    on_missing: opt.OnMissing = "hold",
    table: opt.Table = "auto",
    precision: opt.Precision = "fp32",
    side_by_side: opt.SideBySide = False,
    engine: opt.Engine = "auto",
    temporal_filter: opt.TemporalFilter = True,
    steady: opt.Steady = 0.8,
    densepose_every: str = typer.Option(
        "1", "--densepose-every", metavar="K|auto",
        help="DensePose on keyframes only; every frame is rendered at once from the newest keyframe's IUV "
             "carried forward by optical flow. With a DensePose model on a live input it runs in the "
             "background and no frame waits for it; auto: a new keyframe as soon as the previous one is "
             "done; K: every K frames; a cut or unreliable flow asks for one at once. 1 = every frame "
             "(default). See docs/stream.md."),
    temporal_strength: int = typer.Option(1, "--temporal-strength", min=1, max=8,
                                          help="Temporal filter window: past frames used (no look-ahead in a "
                                               "stream); more is steadier but follows fast moves later."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (or stats) file."),
    allow_large: bool = typer.Option(False, "--allow-large", help="Accept a source photo above 50 megapixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line."),
) -> None:
    from retarget.pipeline.live import Retargeter
    from retarget.pipeline.live_stream import StreamSettings, check_outputs, run_stream

    settings = StreamSettings(input=input_spec, output=output_spec, input_format=input_format,
                              output_format=output_format, input_iuv=input_iuv, drop=drop, queue=queue,
                              realtime=realtime, timeout=timeout, stats=stats, overwrite=overwrite,
                              max_frames=max_frames, crf=crf)
    settings.validate()
    device = resolve_device(device)
    inputs = [source, source_iuv, input_iuv, Path(input_spec) if input_spec not in ("-",) else None]
    check_outputs(settings, inputs)
    models = None if weight_free else resolve_models(checkpoint_dir, device)
    retargeter = Retargeter(source, source_iuv, models=models, size=size, densepose_weights=densepose_weights,
                            densepose_size=densepose_size, densepose_config=densepose_config,
                            densepose_track=densepose_track, densepose_backend=densepose_backend,
                            allow_large=allow_large, device=device, background=background, output_mode=output_mode,
                            on_missing=on_missing, table=table, precision=precision, side_by_side=side_by_side,
                            engine=engine, fill=fill, person=person, densepose_every=densepose_every, steady=steady,
                            temporal_radius=temporal_strength if temporal_filter else 0, quiet=quiet)
    stop = threading.Event()
    with _graceful_stop(stop):
        summary = run_stream(retargeter, settings, stop, quiet=quiet)
    if not quiet:
        typer.echo(summary.line(), err=True)
