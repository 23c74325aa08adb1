"""The Gradio page of ``retarget ui`` (docs/ui.md): build it (:func:`build_app`), start it (:func:`start`),
serve it until Ctrl-C or SIGTERM (:func:`serve`).

Gradio is imported only here (optional extra ``retarget[ui]``). The render is the named endpoint
``/retarget``: ``(source photo, driving video, source IUV or None, driver IUV or None)`` plus the settings
as keyword inputs, returning the output video; it runs :func:`retarget.ui.jobs.run_job`, i.e. the job of
``retarget video``. One render runs at a time (Gradio queue, ``concurrency_limit=1``, and a lock, so a
cancelled job has stopped before the next one starts); the others wait in the queue.

Files: everything lives under one temporary folder made at start and removed on exit: Gradio's uploads and
served copies (``gradio/``), the bundled example's driver IUV zip (``example/``) and one folder per browser
session (``sessions/<id>/run-N/``: copied uploads, the output, the texture, stage frames), removed when the
session's tab closes.
"""

# no `from __future__ import annotations`: Gradio reads the handlers' annotations (gr.Request, gr.Progress)
import contextlib
import itertools
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from retarget.errors import InputError, RetargetError
from retarget.ui import require_gradio
from retarget.ui.jobs import (
    Cancelled,
    Limits,
    Settings,
    make_job,
    people_preview,
    public_message,
    run_job,
    stage_frames,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TITLE = "retarget: make the person in a photo perform a driving video's motion"
PERSON_RULES = ["largest", "center", "left", "right"]


class ServeError(InputError):
    """The page cannot listen on the address (a port in use, an address not of this machine)."""


@dataclass
class UiConfig:
    """Settings of the server (``retarget ui`` options)."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    defaults: Settings = field(default_factory=Settings)  # the page's initial settings


@dataclass
class Session:
    """One browser tab: its folder, its Cancel flag, its last render."""

    folder: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    runs: itertools.count = field(default_factory=lambda: itertools.count(1))
    last: object = None  # RunResult


class UiServer:
    """State shared by the page's handlers: the temporary folder, the sessions, the render lock, the models."""

    def __init__(self, config: UiConfig, root: Path | None = None):
        self.config = config
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="retarget-ui-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.render_lock = threading.Lock()
        self._models: dict[bool, object] = {}

    # -- sessions ---------------------------------------------------------------------------------------
    def session(self, request) -> Session:
        key = str(getattr(request, "session_hash", None) or "anonymous")
        key = "".join(c for c in key if c.isalnum() or c in "-_")[:64] or "anonymous"
        with self._lock:
            if key not in self.sessions:
                folder = self.root / "sessions" / key
                folder.mkdir(parents=True, exist_ok=True)
                self.sessions[key] = Session(folder)
            return self.sessions[key]

    def run_dir(self, session: Session, kind: str = "run") -> Path:
        return session.folder / f"{kind}-{next(session.runs)}"

    def end_session(self, request) -> None:
        """The tab closed: stop its job, remove its folder."""
        key = str(getattr(request, "session_hash", None) or "")
        with self._lock:
            session = self.sessions.pop(key, None)
        if session is not None:
            session.cancel.set()
            shutil.rmtree(session.folder, ignore_errors=True)

    def cancel_all(self) -> None:
        with self._lock:
            for session in self.sessions.values():
                session.cancel.set()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- models -----------------------------------------------------------------------------------------
    def models(self, weight_free: bool):
        """The coordinate-inpainting models (loaded once), or None: ``weight_free`` or none installed."""
        if weight_free:
            return None
        if False not in self._models:
            from retarget.pipeline import Models

            self._models[False] = Models.resolve(None, self.config.device)
        return self._models[False]

    # -- the example ------------------------------------------------------------------------------------
    def example(self) -> list[str] | None:
        """``[photo, driver, photo IUV, driver IUV zip]`` of the bundled example (examples/), or None."""
        photo, driver, photo_iuv = EXAMPLES / "source.jpg", EXAMPLES / "driver.mp4", EXAMPLES / "source_IUV.png"
        frames = sorted((EXAMPLES / "driver.iuv").glob("*_IUV.png"))
        if not (photo.is_file() and driver.is_file() and photo_iuv.is_file() and frames):
            return None
        archive = self.root / "example" / "driver_IUV.zip"
        if not archive.is_file():
            archive.parent.mkdir(parents=True, exist_ok=True)
            partial = archive.with_suffix(".part")
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as out:
                for frame in frames:
                    out.write(frame, frame.name)
            partial.replace(archive)
        return [str(photo), str(driver), str(photo_iuv), str(archive)]


def _settings(person, background, output_mode, side_by_side, weight_free, fill, engine, precision, densepose_size,
              size, on_missing) -> Settings:
    return Settings(person=str(person if person not in (None, "") else "largest"), background=background or "scene",
                    output_mode=output_mode, side_by_side=bool(side_by_side), weight_free=bool(weight_free),
                    fill=fill, engine=engine, precision=precision, densepose_size=densepose_size, size=size,
                    on_missing=on_missing)


def build_app(server: UiServer):
    """The page (a ``gr.Blocks``), its handlers bound to ``server``."""
    gr = require_gradio()
    config, d = server.config, server.config.defaults
    limits = config.limits

    def fail(exc: BaseException, run_dir: Path | None):
        if not isinstance(exc, (Cancelled, RetargetError)):
            traceback.print_exc(file=sys.stderr)  # a bug: the server's log gets the details
        return gr.Error(public_message(exc, run_dir), print_exception=False)

    def retarget(source_photo, driver_video, source_iuv=None, driver_iuv=None, person=d.person,
                 background=d.background, output_mode=d.output_mode, side_by_side=d.side_by_side,
                 weight_free=d.weight_free, fill=d.fill, engine=d.engine, precision=d.precision,
                 densepose_size=d.densepose_size, size=d.size, on_missing=d.on_missing,
                 request: gr.Request = None, progress=gr.Progress()):
        """Render the person of the source photo performing the driving video's motion (the job of
        `retarget video`); returns the output video (H.264 .mp4)."""
        session = server.session(request)
        settings = _settings(person, background, output_mode, side_by_side, weight_free, fill, engine, precision,
                             densepose_size, size, on_missing)
        run_dir = server.run_dir(session)
        with server.render_lock:  # one render at a time, also across a cancelled job still unwinding
            session.cancel.clear()
            try:
                job = make_job(source_photo, driver_video, source_iuv, driver_iuv, settings, run_dir,
                               limits=limits, device=config.device)

                def report(stage: str, done: int, total: int | None) -> None:
                    progress((done, total) if total else None, desc=stage, unit="frames")

                result = run_job(job, server.models(settings.weight_free), progress=report, cancel=session.cancel)
            except BaseException as exc:  # noqa: BLE001 - every failure becomes the page's one-line message
                raise fail(exc, run_dir) from None
        session.last = result
        return str(result.output)

    def extras(request: gr.Request):
        """After a render: the texture, a summary line, the download, the frame slider's range."""
        result = server.session(request).last
        if result is None:
            return None, "", None, gr.update()
        summary = result.summary
        path = "learned models" if result.models_learned else "weight-free path (no coordinate-inpainting weights)"
        line = (f"**{summary.frames} frames in {summary.seconds:.1f} s** ({summary.fps:.2f} frames/s, {path}); "
                f"{summary.missing_frames} without a person")
        return (str(result.texture) if result.texture else None, line, str(result.output),
                gr.update(maximum=max(0, summary.frames - 1), value=0, interactive=True))

    def cancel(request: gr.Request):
        server.session(request).cancel.set()
        return "**Cancelled**: the job stops at its next frame; nothing of it is kept."

    def people(driver_video, driver_iuv, person, densepose_size, request: gr.Request):
        session = server.session(request)
        run_dir = server.run_dir(session, "people")
        settings = Settings(person=str(person or "largest"), densepose_size=densepose_size)
        try:
            image, caption, numbers = people_preview(driver_video, driver_iuv, settings, run_dir, limits=limits,
                                                     device=config.device)
        except BaseException as exc:  # noqa: BLE001
            raise fail(exc, run_dir) from None
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        return image, caption, gr.update(choices=PERSON_RULES + numbers)

    def frames(frame, request: gr.Request):
        session = server.session(request)
        if session.last is None:
            raise gr.Error("render a video first; then the stages of any of its frames can be shown")
        out_dir = server.run_dir(session, "frames")
        try:
            found = stage_frames(session.last, int(frame), out_dir, server.models(not session.last.models_learned))
        except BaseException as exc:  # noqa: BLE001
            raise fail(exc, out_dir) from None
        entry = found.frames[0]
        gallery = [(str(out_dir / entry.sheet), f"contact sheet, frame {entry.index}")]
        gallery += [(str(out_dir / f.path), f.caption) for f in found.source + entry.figures]
        link = (f'<a href="/gradio_api/file={found.index_html}" target="_blank">all stages of frame {entry.index} '
                "(retarget frames page)</a>")
        return gallery, link

    example = server.example()
    with gr.Blocks(title="retarget", analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\nUpload a photo of a person and a driving video (or click the example below), "
                    "then **Render**. Without IUV files DensePose runs on them (its weights must be installed). "
                    f"Limits: uploads up to {limits.max_upload_mb:g} MB, driving videos up to "
                    f"{limits.max_seconds:g} s. Same job as `retarget video`.")
        with gr.Row():
            with gr.Column():
                source = gr.Image(label="Source photo (upload or webcam snapshot)", sources=["upload", "webcam"],
                                  type="filepath", image_mode=None, format="png", height=280, elem_id="source")
                # image_mode None: the uploaded file as it is (the pipeline decodes it as `retarget video` does);
                # png: a webcam snapshot is saved losslessly
                source_iuv = gr.File(label="Source IUV PNG (optional; else DensePose runs)", file_types=[".png"],
                                     elem_id="source_iuv", height=90)
            with gr.Column():
                driver = gr.Video(label="Driving video", sources=["upload"], height=280, elem_id="driver")
                driver_iuv = gr.File(label="Driver IUV: .npz or .zip of *_IUV.png (optional; else DensePose runs)",
                                     file_types=[".npz", ".zip"], elem_id="driver_iuv", height=90)
        with gr.Row():
            run_example = gr.Button("Run the example", elem_id="run_example", visible=example is not None)
            render = gr.Button("Render", variant="primary", elem_id="render")
            stop = gr.Button("Cancel", variant="stop", elem_id="cancel")
        if example is not None:
            gr.Examples([example], inputs=[source, driver, source_iuv, driver_iuv], label="Example (click to load)")
        with gr.Accordion("Settings (the defaults of retarget video)", open=False):
            with gr.Row():
                person = gr.Dropdown(PERSON_RULES, value=d.person, allow_custom_value=True, label="Person (--person)",
                                     info="largest, center, left, right or N: the N-th person from the left",
                                     elem_id="person")
                background = gr.Dropdown(["scene", "source"], value=d.background, allow_custom_value=True,
                                         label="Background (--background)", info="scene, source or #RRGGBB")
                output_mode = gr.Radio(["frame", "crop"], value=d.output_mode, label="Output mode (--output-mode)")
                on_missing = gr.Radio(["hold", "background", "skip"], value=d.on_missing,
                                      label="Frames without a person (--on-missing)")
            with gr.Row():
                side_by_side = gr.Checkbox(value=d.side_by_side, label="Side by side (--side-by-side)")
                weight_free = gr.Checkbox(value=d.weight_free, label="Weight-free (--weight-free)")
                fill = gr.Radio(["body", "nearest"], value=d.fill, label="Weight-free fill (--fill)")
                engine = gr.Dropdown(["auto", "torch", "openvino"], value=d.engine, label="Engine (--engine)")
                precision = gr.Dropdown(["auto", "fp32", "bf16", "fp16", "int8"], value=d.precision,
                                        label="Precision (--precision)")
            with gr.Row():
                densepose_size = gr.Number(value=d.densepose_size, precision=0, minimum=64, maximum=4096,
                                           label="DensePose size (--densepose-size)",
                                           info="input shortest side; 512 is much faster")
                size = gr.Number(value=d.size, precision=0, minimum=64, maximum=1024, label="Crop size (--size)",
                                 info="the official weights use 256", elem_id="size")
            with gr.Row():
                show_people = gr.Button("Number the people of the first frame", size="sm")
                people_caption = gr.Markdown()
            people_image = gr.Image(label="People of the first frame (numbers for Person)", interactive=False,
                                    height=260)
        with gr.Row():
            result = gr.Video(label="Result", interactive=False, elem_id="result", height=360,
                              buttons=["download"])
            texture = gr.Image(label="The person's texture (completed)", interactive=False, type="filepath",
                               height=360, elem_id="texture")
        status = gr.Markdown(elem_id="status")
        download = gr.File(label="Download the video", interactive=False)
        with gr.Accordion("Stages of one frame (retarget frames)", open=False):
            with gr.Row():
                frame = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False)
                show_frames = gr.Button("Show its stages")
            stage_link = gr.HTML()
            stages = gr.Gallery(label="Stages", columns=4, height=360)

        inputs = [source, driver, source_iuv, driver_iuv, person, background, output_mode, side_by_side,
                  weight_free, fill, engine, precision, densepose_size, size, on_missing]
        extra_outputs = [texture, status, download, frame]
        for button in (render, run_example):
            button.click(lambda: "Rendering… (the progress bar is on the result)", None, status, queue=False,
                         api_visibility="private")
        run_event = render.click(retarget, inputs, result, api_name="retarget", concurrency_limit=1,
                                 concurrency_id="render")
        run_event.success(extras, None, extra_outputs, api_visibility="private", queue=False)
        events = [run_event]
        if example is not None:
            load = run_example.click(lambda: example, None, [source, driver, source_iuv, driver_iuv],
                                     api_visibility="private", queue=False)
            example_event = load.then(retarget, inputs, result, api_visibility="private", concurrency_limit=1,
                                      concurrency_id="render")
            example_event.success(extras, None, extra_outputs, api_visibility="private", queue=False)
            events.append(example_event)
        stop.click(cancel, None, status, cancels=events, queue=False, api_visibility="private")
        show_people.click(people, [driver, driver_iuv, person, densepose_size], [people_image, people_caption, person],
                          api_visibility="private", concurrency_limit=1, concurrency_id="render")
        show_frames.click(frames, [frame], [stages, stage_link], api_visibility="private", concurrency_limit=1,
                          concurrency_id="render")

        def unload(request: gr.Request):
            server.end_session(request)

        demo.unload(unload)
    return demo


@dataclass
class RunningUi:
    """A started page: its ``url``; :meth:`close` stops it and removes its files."""

    server: UiServer
    demo: object
    url: str
    _environ: dict = field(default_factory=dict)

    def close(self) -> None:
        self.server.cancel_all()  # a running job stops at its next frame
        with contextlib.suppress(Exception):
            self.demo.close()
        with self.server.render_lock:  # wait for it to unwind before its files go
            pass
        self.server.cleanup()
        for name, value in self._environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start(config: UiConfig, root: Path | None = None) -> RunningUi:
    """Build the page and serve it in background threads (``config.host``/``port``); returns at once."""
    server = UiServer(config, root)
    saved = {name: os.environ.get(name) for name in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    os.environ["GRADIO_TEMP_DIR"] = str(server.root / "gradio")  # uploads and served copies: removed on exit
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        demo = build_app(server)
        demo.queue(default_concurrency_limit=1)
        allowed = [str(server.root)] + ([str(EXAMPLES)] if server.example() is not None else [])
        try:
            _, url, _ = demo.launch(server_name=config.host, server_port=config.port, share=config.share,
                                    prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False,
                                    max_file_size=int(config.limits.max_upload_mb * 1e6), allowed_paths=allowed,
                                    footer_links=["api"])
        except OSError as exc:
            raise ServeError(f"cannot serve on {config.host}:{config.port} ({' '.join(str(exc).split())})") from None
    except BaseException:
        server.cleanup()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        raise
    url = url or f"http://{config.host}:{config.port}/"
    return RunningUi(server=server, demo=demo, url=url, _environ=saved)


def serve(config: UiConfig, announce=print) -> None:
    """Serve the page until Ctrl-C (SIGINT) or SIGTERM, then stop the running job (at its next frame) and
    remove every file; a second signal while stopping raises ``KeyboardInterrupt``."""
    stopping = threading.Event()

    def on_signal(*_) -> None:
        if stopping.is_set():  # a second Ctrl-C while stopping: give up waiting (exit 130)
            raise KeyboardInterrupt
        stopping.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, on_signal)
    running = None
    try:
        running = start(config)
        announce(f"retarget ui: serving {running.url} (uploads and outputs in {running.server.root}, removed on "
                 "exit; Ctrl-C stops it)")
        while not stopping.wait(0.5):
            pass
        announce("retarget ui: stopping")
    finally:
        if running is not None:
            running.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
