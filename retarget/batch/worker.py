"""What runs inside one batch worker (a local process or a Ray actor).

A :class:`BatchWorker` loads the coordinate-inpainting models once, creates DensePose model backends
lazily (once per backend configuration) and then runs any number of jobs with them. It never raises
for a job: every outcome comes back as a result dict (status, one-line error, frames, seconds,
output hash, DensePose model calls). A finished job is also appended to the report's journal
(:func:`retarget.batch.report.append_journal`) before the result is returned, so it is known even if
the main process dies first.

Local worker processes are bound to the process that started them (:func:`bind_to_parent`): on Linux
the kernel sends them ``SIGKILL`` when it dies (``PR_SET_PDEATHSIG``), and everywhere a watcher
thread ends them when their parent process changes. A batch killed with ``kill -9`` leaves no
worker running.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retarget.batch.jobs import BatchJob, temporal_radius
from retarget.errors import RetargetError

#: Environment variables a worker takes over from the process that planned the batch.
PASSED_ENV = ("RETARGET_HOME", "RETARGET_CACHE_DIR")


@dataclass
class WorkerConfig:
    """Per-worker settings (everything that is not per job).

    Attributes:
        checkpoints: ``(inpainter.pth, refiner.pth)`` or ``None`` for the weight-free path.
        device: torch device.
        threads: torch intra-op threads of this worker.
        densepose_weights: DensePose ``.pkl`` (``None``: the installed one, resolved when first needed).
        densepose_config: ``r50``, ``r101`` or a JSON config file.
        allow_large: accept source photos above 50 megapixels (``--allow-large``).
        env: environment variables set in the worker before anything runs (cache/home folders).
        journal: file the worker appends each finished job to (``None``: none).
    """

    checkpoints: tuple[str, str] | None = None
    device: str = "cpu"
    threads: int = 1
    densepose_weights: str | None = None
    densepose_config: str | None = None
    allow_large: bool = False
    env: dict[str, str] = field(default_factory=dict)
    journal: str | None = None

    @classmethod
    def with_current_env(cls, **kwargs) -> WorkerConfig:
        env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
        return cls(env=env, **kwargs)


@dataclass
class Task:
    """One job handed to a worker: ``overwrite`` is decided by the plan (outputs this batch made)."""

    index: int
    job: BatchJob
    settings: dict[str, Any]
    overwrite: bool = False
    fingerprint: str | None = None


def _result(status: str, **values) -> dict[str, Any]:
    base = {"status": status, "error": None, "frames": None, "missing_frames": None, "densepose_calls": 0,
            "seconds": None, "output_sha256": None, "traceback": None}
    base.update(values)
    return base


_OS_HINTS = {errno.ENOSPC: "no space left on device; free some space or write the outputs elsewhere",
             errno.EDQUOT: "disk quota exceeded; free some space or write the outputs elsewhere",
             errno.EACCES: "permission denied; check the permissions, or choose another output folder",
             errno.EPERM: "permission denied; check the permissions, or choose another output folder",
             errno.EROFS: "read-only file system; choose another output folder",
             errno.EFBIG: "file too large; write the output elsewhere"}


def one_line(exc: BaseException) -> str:
    """One line for a job's failure: a library error's message; an ``OSError`` as ``<file>: <reason>; <advice>``
    (disk full, permission denied, ...); anything else ``<type>: <message>``."""
    text = " ".join(str(exc).split())
    if isinstance(exc, RetargetError):
        return text or type(exc).__name__
    if isinstance(exc, OSError):
        name = exc.filename if isinstance(exc.filename, str) else None
        reason = _OS_HINTS.get(exc.errno or -1) or " ".join(str(exc.strerror or text or type(exc).__name__).split())
        return f"{name}: {reason}" if name else reason
    if isinstance(exc, MemoryError):
        return "out of memory; use fewer --workers, a smaller --size, --batch-size or --densepose-size"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BatchWorker:
    """Models loaded once; :meth:`run` executes tasks."""

    def __init__(self, config: WorkerConfig):
        os.environ.update(config.env)
        import torch

        torch.set_num_threads(max(1, int(config.threads)))
        try:
            import cv2

            cv2.setNumThreads(max(1, int(config.threads)))
        except ImportError:  # pragma: no cover
            pass
        self.config = config
        self.models = None
        if config.checkpoints is not None:
            from retarget.models.loading import load_official_inpainter, load_official_refiner
            from retarget.pipeline.pair import Models

            inpainter, refiner = config.checkpoints
            self.models = Models(load_official_inpainter(Path(inpainter)),
                                 load_official_refiner(Path(refiner))).to(config.device)
        self._backends: dict[tuple, Any] = {}
        self.jobs_run = 0

    def densepose_backend(self, name: str, size: int, track: bool, engine: str = "torch"):
        """The DensePose model backend for these settings, created on first use and kept."""
        name = "torchvision" if name in ("auto", "precomputed") else name
        key = (name, int(size), bool(track) and name == "torchvision", engine if name == "torchvision" else "")
        if key not in self._backends:
            from retarget.pipeline.job import open_model_backend

            self._backends[key] = open_model_backend(name, self.config.densepose_weights, int(size), self.config.device,
                                                     self.config.densepose_config, bool(track), engine=engine,
                                                     quiet=True)
        return self._backends[key]

    def video_job(self, task: Task):
        """The :class:`retarget.pipeline.job.VideoJob` of a task."""
        from retarget.pipeline.job import VideoJob
        from retarget.pipeline.video import VideoOptions

        s = task.settings
        options = VideoOptions(batch_size=s["batch_size"], device=self.config.device, background=s["background"],
                               output_mode=s["output_mode"], on_missing=s["on_missing"], table=s["table"],
                               side_by_side=s["side_by_side"], precision=s.get("precision", "auto"),
                               engine=s.get("engine", "auto"),
                               fill=s.get("fill", "body"), temporal_radius=temporal_radius(s), quiet=True,
                               command="batch", person=str(s.get("person", "largest")),
                               codec=s.get("codec"), crf=s.get("crf"),
                               densepose_every=str(s.get("densepose_every", "1")),
                               steady=float(s.get("steady", 0.8)))
        values = dict(source=task.job.source, driver=task.job.driver, output=task.job.output,
                      source_iuv=Path(s["source_iuv"]) if s.get("source_iuv") else None,
                      driver_iuv=Path(s["driver_iuv"]) if s.get("driver_iuv") else None,
                      size=s["size"], overwrite=task.overwrite, densepose_backend=s["densepose_backend"],
                      densepose_weights=Path(self.config.densepose_weights) if self.config.densepose_weights else None,
                      densepose_size=s["densepose_size"], densepose_config=self.config.densepose_config,
                      densepose_track=s["densepose_track"], allow_large=self.config.allow_large, options=options,
                      texture=Path(s["texture"]) if s.get("texture") else None,
                      garment=Path(s["garment"]) if s.get("garment") else None,
                      garment_iuv=Path(s["garment_iuv"]) if s.get("garment_iuv") else None,
                      garment_region=s.get("garment_region", "upper"))
        names = {f.name for f in dataclasses.fields(VideoJob)}
        return VideoJob(**{k: v for k, v in values.items() if k in names})

    def needs_model(self, task: Task) -> bool:
        """Whether the job needs a DensePose model (driver or source without precomputed IUV)."""
        from retarget.pipeline.job import driver_iuv_sidecar, source_iuv_sidecar

        s = task.settings
        driver_iuv = s.get("driver_iuv") or (driver_iuv_sidecar(task.job.driver)
                                             if s["densepose_backend"] in ("auto", "precomputed") else None)
        source_iuv = s.get("source_iuv") or source_iuv_sidecar(task.job.source)
        if s.get("garment") and not s.get("garment_iuv") and source_iuv_sidecar(Path(s["garment"])) is None:
            return True
        if s["densepose_backend"] == "precomputed":
            return source_iuv is None and driver_iuv is not None
        return driver_iuv is None or source_iuv is None

    def record(self, task: Task, result: dict[str, Any]) -> None:
        """Append a finished job to the report's journal (before the result travels back)."""
        from retarget.batch.report import append_journal

        job = task.job
        append_journal(self.config.journal, {**result, "name": job.name, "source": str(job.source),
                                             "driver": str(job.driver), "output": str(job.output),
                                             "origin": job.origin, "fingerprint": task.fingerprint})

    def run(self, task: Task, on_frame: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Run one task; never raises (except KeyboardInterrupt)."""
        from retarget.io.output import output_digest
        from retarget.pipeline.job import run_video_job

        start = time.perf_counter()
        try:
            job = self.video_job(task)
            job.output.parent.mkdir(parents=True, exist_ok=True)
            backend = None
            if self.needs_model(task):
                from retarget.io.video import check_driver_size, probe_video

                # a bad or too small driver is reported as such, before any model is loaded
                check_driver_size(probe_video(job.driver), job.driver)
                from retarget.pipeline.people import driver_tracking

                s = task.settings
                backend = self.densepose_backend(s["densepose_backend"], s["densepose_size"],
                                                 driver_tracking(s["densepose_track"], str(s.get("person", "largest"))),
                                                 s.get("engine", "auto"))
            counter = [0]

            def frame_done(index, rgb):
                counter[0] += 1
                if on_frame is not None:
                    on_frame(task.index, counter[0])

            summary = run_video_job(job, self.models, backend, on_frame=frame_done)
            digest = output_digest(summary.output)
            self.jobs_run += 1
            result = _result("ok", frames=summary.frames, missing_frames=summary.missing_frames,
                             densepose_calls=summary.densepose_calls, seconds=round(time.perf_counter() - start, 3),
                             output_sha256=digest)
            self.record(task, result)
            return result
        except KeyboardInterrupt:
            raise
        except (RetargetError, OSError, MemoryError) as exc:  # one line, no traceback: disk full, permissions, ...
            return _result("failed", error=one_line(exc), seconds=round(time.perf_counter() - start, 3))
        except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the batch
            return _result("failed", error=one_line(exc), seconds=round(time.perf_counter() - start, 3),
                           traceback=traceback.format_exc())


# -- local process pool glue (module-level so that "spawn" workers can import it) -----------------
_WORKER: BatchWorker | None = None
_INIT_ERROR: str | None = None
_EVENTS = None


def bind_to_parent(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """End this process when ``parent_pid`` (the process that started it) dies, however it dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ctypes, so the kernel kills this process when its
    parent exits (also after ``kill -9``). Everywhere: a daemon thread that exits the process within
    ``poll_seconds`` once the parent process is no longer ``parent_pid`` (a dead parent's children are
    re-parented). Also covers a parent that died before this was called.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the watcher below still works
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="retarget-parent-watch", daemon=True).start()


_BUSY = False


def _on_interrupt(signum, frame) -> None:
    """SIGINT in a pool process (Ctrl-C reaches the whole process group): a running job stops as in
    ``retarget video`` (its temporary output removed, the interruption sent back to the batch); an idle process
    ignores it, as the batch's process stops the pool (before, it died in the pool's queue read with a traceback)."""
    if _BUSY:
        raise KeyboardInterrupt()


def init_process(config: WorkerConfig, events=None, parent_pid: int | None = None) -> None:
    """Pool initializer: bind this process to the batch's process (:func:`bind_to_parent`), route Ctrl-C
    (:func:`_on_interrupt`), then load the models once (a failure is reported by every job)."""
    import signal

    global _WORKER, _EVENTS, _INIT_ERROR
    if parent_pid is not None:
        bind_to_parent(parent_pid)
    signal.signal(signal.SIGINT, _on_interrupt)
    try:  # tqdm's default lock is a multiprocessing semaphore, which a worker killed on cancel never releases
        import threading

        from tqdm import tqdm  # (the resource tracker then warned of "leaked semaphore objects" at exit)

        tqdm.set_lock(threading.RLock())
    except ImportError:  # pragma: no cover - tqdm is a dependency
        pass
    _EVENTS = events
    try:
        _WORKER = BatchWorker(config)
    except Exception as exc:  # noqa: BLE001 - an initializer that raises would break the whole pool
        _INIT_ERROR = one_line(exc)


def run_in_process(task: Task) -> dict[str, Any]:
    """Pool task: run ``task`` on this process's worker, reporting frame progress on the event queue."""
    if _WORKER is None:
        return _result("failed", error=f"worker start failed: {_INIT_ERROR or 'not initialised'}")
    events = _EVENTS
    last = [0.0]

    def on_frame(index: int, frames: int) -> None:
        now = time.monotonic()
        if events is not None and now - last[0] > 0.25:
            last[0] = now
            try:
                events.put_nowait((index, frames))
            except Exception:  # noqa: BLE001 - progress is best effort
                pass

    if events is not None:
        try:
            events.put_nowait((task.index, 0))
        except Exception:  # noqa: BLE001
            pass
    global _BUSY
    _BUSY = True
    try:
        return _WORKER.run(task, on_frame)
    finally:
        _BUSY = False
