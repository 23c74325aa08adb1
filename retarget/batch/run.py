"""Running a batch: :func:`run_batch` (``retarget batch`` as a Python call: check the arguments,
collect and plan the jobs, run them, return a :class:`BatchResult`) and what it is built from:
driver-aware scheduling over a pool of workers, progress, the report.

    from retarget.batch import run_batch

    result = run_batch(sources=["photos/"], drivers=["clips/"], out_dir=Path("out"), workers=2,
                       settings={"size": 256, "background": "source"})
    print(result.summary_table(), result.failure_message() or "all ok")

Scheduling shares DensePose between the jobs of one driver without races: of the jobs whose driver
needs the DensePose *model*, only the first job per distinct driver (the "lead") starts at once; it
computes every frame's DensePose into the content-keyed cache
(:mod:`retarget.pipeline.densepose_stage`). When the lead finishes, the driver's other jobs are
released and read the cache (0 model calls). If a lead fails, the next job of its driver becomes the
lead. Jobs with precomputed IUV have no such dependency and start right away.

Executors (:class:`LocalExecutor`: the calling process or a ``spawn`` process pool;
:class:`retarget.batch.ray_backend.RayExecutor`: Ray actors) all run
:class:`retarget.batch.worker.BatchWorker` and return the same result dicts, so reports and outputs
do not depend on the backend.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from retarget.batch.jobs import DEFAULT_OPTIONS, BatchJob, cross_jobs, load_jobs_file
from retarget.batch.plan import (
    CONFLICT,
    FAIL,
    RUN,
    SKIP,
    BatchPlan,
    PlannedJob,
    check_densepose_weights,
    check_settings,
    make_plan,
    refuse_failed,
)
from retarget.batch.report import (
    REPORT_NAME,
    RUNNING,
    journal_path,
    load_report,
    now_iso,
    remove_journal,
    write_report,
)
from retarget.batch.worker import BatchWorker, Task, WorkerConfig, init_process, one_line, run_in_process
from retarget.errors import InputError, UsageError

GIB = 1 << 30


class Executor(Protocol):
    """Where tasks run."""

    name: str
    workers: int

    def free_slots(self) -> int: ...

    def submit(self, task: Task) -> None: ...

    def wait(self, timeout: float) -> list[tuple[Task, dict[str, Any]]]: ...

    def progress(self) -> list[tuple[int, int]]: ...

    def close(self, cancel: bool = False) -> None: ...


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes of memory available to new processes (``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_workers(jobs_to_run: int, model_densepose: bool, device: str = "cpu") -> int:
    """Workers that fit this machine: one per core, at most one per ~3 GiB free (1.5 GiB without the
    DensePose model), one on a GPU, never more than there are jobs."""
    if device != "cpu":
        return 1
    limit = cpu_count()
    memory = available_memory()
    if memory is not None:
        limit = min(limit, max(1, int(memory // ((3.0 if model_densepose else 1.5) * GIB))))
    return max(1, min(limit, max(1, jobs_to_run)))


def default_threads(workers: int) -> int:
    """torch threads per worker: the cores shared out evenly."""
    return max(1, cpu_count() // max(1, workers))


class LocalExecutor:
    """``workers == 1``: run tasks in this process; otherwise a ``spawn`` process pool whose
    initializer loads the models once per process."""

    name = "local"

    def __init__(self, config: WorkerConfig, workers: int):
        self.config = config
        self.workers = max(1, int(workers))
        self._pending: deque[Task] = deque()
        self._events: list[tuple[int, int]] = []
        self._worker: BatchWorker | None = None
        self._init_error: str | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Any, Task] = {}
        self._queue = None
        if self.workers > 1:
            self._start_pool()

    def _start_pool(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_process,
                                         initargs=(self.config, self._queue, os.getpid()))

    def free_slots(self) -> int:
        if self._pool is None:
            return 0 if self._pending else 1
        return self.workers - len(self._futures)

    def submit(self, task: Task) -> None:
        if self._pool is None:
            self._pending.append(task)
        else:
            self._futures[self._pool.submit(run_in_process, task)] = task

    def wait(self, timeout: float) -> list[tuple[Task, dict[str, Any]]]:
        if self._pool is None:
            if not self._pending:
                return []
            task = self._pending.popleft()
            if self._worker is None and self._init_error is None:
                try:
                    self._worker = BatchWorker(self.config)
                except Exception as exc:  # noqa: BLE001 - reported per job
                    self._init_error = one_line(exc)
            if self._worker is None:
                return [(task, failed_result(f"worker start failed: {self._init_error}"))]
            self._events.append((task.index, 0))
            return [(task, self._worker.run(task, lambda i, n: self._events.append((i, n))))]
        if not self._futures:
            return []
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out, broken = [], False
        for future in done:
            task = self._futures.pop(future)
            try:
                out.append((task, future.result()))
            except BrokenProcessPool:
                broken = True
                out.append((task, failed_result("worker process died (killed or out of memory?)")))
            except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                out.append((task, failed_result(one_line(exc))))
        if broken:  # every in-flight job of the broken pool is lost: report them, start a fresh pool
            for future, task in list(self._futures.items()):
                out.append((task, failed_result("worker process died (killed or out of memory?)")))
            self._futures.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._start_pool()
        return out

    def progress(self) -> list[tuple[int, int]]:
        events, self._events = self._events, []
        if self._queue is not None:
            while True:
                try:
                    events.append(self._queue.get_nowait())
                except (queue.Empty, OSError, ValueError, EOFError):
                    break
        return events

    def close(self, cancel: bool = False) -> None:
        """Stop the pool; ``cancel``: kill the worker processes now (their jobs are abandoned, their
        temporary files are removed by the next run), never leaving them running on their own."""
        if self._pool is not None:
            if cancel:  # the pool's own thread reaps them (never os.waitpid here: multiprocessing must)
                for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                    with contextlib.suppress(Exception):
                        process.kill()
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None
        if self._queue is not None:
            self._queue.close()
            self._queue = None


def failed_result(error: str) -> dict[str, Any]:
    return {"status": "failed", "error": error, "frames": None, "missing_frames": None, "densepose_calls": 0,
            "seconds": None, "output_sha256": None, "traceback": None}


def initial_record(planned: PlannedJob) -> dict[str, Any]:
    job = planned.job

    def text(path):
        return None if path is None else str(path)

    record: dict[str, Any] = {"name": job.name, "source": text(job.source), "driver": text(job.driver),
                              "output": text(job.output), "origin": job.origin, "fingerprint": planned.fingerprint,
                              "status": "pending", "error": None, "frames": None, "missing_frames": None,
                              "densepose_calls": 0, "seconds": None, "output_sha256": None}
    if planned.action == SKIP:
        prev = planned.previous or {}
        record.update(status="skipped", frames=prev.get("frames"), missing_frames=prev.get("missing_frames"),
                      densepose_calls=0, seconds=prev.get("seconds"), output_sha256=prev.get("output_sha256"))
    elif planned.action == CONFLICT:
        record.update(status="failed", error=f"{job.output}: output exists but the batch report does not record "
                                             "it as finished; pass --overwrite to replace it")
    elif planned.action == FAIL:
        record.update(status="failed", error=planned.error)
    if record["output_sha256"] is None and planned.previous:
        # the output this batch last wrote for the job: still recognised as the batch's own (not refused as
        # someone else's file) if this attempt fails or is interrupted
        record["output_sha256"] = planned.previous.get("output_sha256")
    return record


class BatchTerminated(KeyboardInterrupt):
    """``SIGTERM`` (or ``SIGHUP``) to the batch's main process: handled like Ctrl-C (workers stopped, report
    written, exit 130)."""


class _Signals:
    """While a batch runs (main thread only): ``SIGTERM``/``SIGHUP`` stop it like Ctrl-C.

    With worker processes or actors, these and ``SIGINT`` only set :attr:`received`, and the scheduling
    loop raises at its next turn (within 0.25 s), never inside the pool's own locked code; with the
    jobs running in this process (one worker) they raise at once, as Ctrl-C always does.
    """

    def __init__(self, immediate: bool):
        self.immediate = immediate
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.immediate:
            raise KeyboardInterrupt() if signum == signal.SIGINT else BatchTerminated(f"signal {signum}")
        self.received = signum

    def check(self) -> None:
        """Raise for a signal received since the last check."""
        if self.received is not None:
            signum, self.received = self.received, None
            raise KeyboardInterrupt() if signum == signal.SIGINT else BatchTerminated(f"signal {signum}")

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None), signal.SIGINT):
                if sig is not None:
                    with contextlib.suppress(ValueError, OSError):
                        self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)
        self._previous = {}


class Scheduler:
    """Releases tasks in driver-aware order (see module docstring)."""

    def __init__(self, plan: BatchPlan):
        self.ready: deque[PlannedJob] = deque()
        self.waiting: dict[str, deque[PlannedJob]] = {}
        leads, free = [], []
        for key, group in plan.groups.items():
            todo = [p for p in group if p.action == RUN]
            if not todo:
                continue
            if todo[0].model_densepose:
                leads.append(todo[0])
                self.waiting[key] = deque(todo[1:])
            else:
                free.extend(todo)
        self.ready.extend(leads + free)
        self.lead_of = {p.task.index: p.driver_key for p in leads}

    def next(self) -> PlannedJob | None:
        return self.ready.popleft() if self.ready else None

    def finished(self, planned: PlannedJob, ok: bool) -> None:
        key = self.lead_of.pop(planned.task.index, None)
        if key is None:
            return
        rest = self.waiting.get(key)
        if not rest:
            return
        if ok:
            self.ready.extend(rest)
            rest.clear()
        else:  # the next job of this driver computes its DensePose
            lead = rest.popleft()
            self.lead_of[lead.task.index] = key
            self.ready.appendleft(lead)

    def empty(self) -> bool:
        return not self.ready and not any(self.waiting.values())


def run_plan(plan: BatchPlan, executor: Executor, report_path: Path, meta: dict[str, Any], *,
             quiet: bool = False, echo: Callable[[str], None] | None = None, fail_fast: bool = False,
             tracebacks: bool = False) -> list[dict[str, Any]]:
    """Run every ``run`` job of ``plan`` on ``executor``; returns the report records (in job order).

    The report is written before the first job starts (the workers' journal of an earlier, killed run
    is folded into it then), when a job is handed to a worker (``running``) and after every finished
    job, so an interrupted batch leaves a report whose finished jobs a re-run skips. ``SIGTERM`` is
    handled like Ctrl-C: the workers are killed and the report written before the exception
    (:class:`BatchTerminated`, a ``KeyboardInterrupt``) propagates. ``fail_fast``: no new job starts
    after a job failed. ``tracebacks``: print the traceback of an unexpected error in a job (one line
    otherwise).
    """
    from tqdm import tqdm

    from retarget.io.progress import progress_bar

    start = time.perf_counter()
    meta = {**meta, "started": now_iso()}
    records = [initial_record(p) for p in plan.jobs]
    by_index = {p.task.index: p for p in plan.jobs}
    write_report(report_path, records, meta)
    remove_journal(report_path)  # what it said is in the report now
    scheduler = Scheduler(plan)
    total = len(plan.to_run)
    bar = progress_bar(total, "batch", unit="job", quiet=quiet or total == 0)  # only on a terminal
    out = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    running: dict[int, int] = {}
    done_count = 0
    shown = [""]
    stopped = False

    def show() -> None:
        parts = [f"{by_index[i].job.name} {n}f" if n else by_index[i].job.name for i, n in running.items()]
        text = ", ".join(parts)[:80]
        if text != shown[0]:
            shown[0] = text
            bar.set_postfix_str(text, refresh=True)

    try:
        in_process = isinstance(executor, LocalExecutor) and executor.workers == 1
        with _Signals(immediate=in_process) as signals:
            inflight = 0
            while inflight or not (scheduler.empty() or stopped):
                signals.check()
                submitted = False
                while not stopped and executor.free_slots() > 0:
                    planned = scheduler.next()
                    if planned is None:
                        break
                    records[planned.task.index]["status"] = RUNNING
                    executor.submit(planned.task)
                    running[planned.task.index] = 0
                    inflight += 1
                    submitted = True
                if submitted:
                    write_report(report_path, records, meta, time.perf_counter() - start)
                show()
                for task, result in executor.wait(0.25):
                    inflight -= 1
                    running.pop(task.index, None)
                    planned = by_index[task.index]
                    record = records[task.index]
                    record.update({k: result.get(k) for k in ("status", "error", "frames", "missing_frames",
                                                              "densepose_calls", "seconds")})
                    if result.get("output_sha256"):
                        record["output_sha256"] = result["output_sha256"]
                    scheduler.finished(planned, result["status"] == "ok")
                    done_count += 1
                    if result["status"] != "ok" and fail_fast and not stopped:
                        stopped = True
                    if not quiet:
                        if result["status"] == "ok":
                            out(f"[{done_count}/{total}] ok      {planned.job.name}: {result['frames']} frames in "
                                f"{result['seconds']:.1f} s")
                        else:
                            out(f"[{done_count}/{total}] FAILED  {planned.job.name}: {result['error']}")
                            if tracebacks and result.get("traceback"):
                                out(result["traceback"].rstrip())
                        if stopped and result["status"] != "ok":
                            out("--fail-fast: no further job is started")
                    bar.update(1)
                    write_report(report_path, records, meta, time.perf_counter() - start)
                for index, frames in executor.progress():
                    if index in running:
                        running[index] = frames
            signals.check()
    except BaseException:
        executor.close(cancel=True)
        write_report(report_path, records, meta, time.perf_counter() - start)
        raise
    finally:
        bar.close()
    executor.close()
    write_report(report_path, records, meta, time.perf_counter() - start)
    remove_journal(report_path)  # every finished job is in the report
    return records


# -- the Python API of `retarget batch`: validate, plan, run ----------------------------------------


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes:
        plan: every job with its decision (run / skip / conflict).
        report: path of ``batch_report.json`` (not written by a dry run).
        backend, workers, threads: where the jobs ran (``workers`` may be ``None`` on Ray before it starts).
        records: the report's records, in job order (empty for a dry run).
        dry_run: only planned.
    """

    plan: BatchPlan
    report: Path
    backend: str
    workers: int | None
    threads: int
    records: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Records of the failed jobs (for a dry run: records of the jobs that cannot run)."""
        if self.dry_run:
            return [initial_record(p) for p in self.plan.failed]
        return [r for r in self.records if r["status"] == "failed"]

    def summary_table(self) -> str:
        from retarget.batch.report import summary_table

        return summary_table(self.records)

    def failure_message(self) -> str | None:
        """The command's one-line error when any job failed, else ``None``."""
        if not self.failed:
            return None
        n = len(self.plan.jobs)
        if self.dry_run:
            return f"{len(self.failed)} of {n} job{'s' * (n != 1)} cannot run (listed in the plan above)"
        return f"{len(self.failed)} of {n} job{'s' * (n != 1)} failed (see {self.report})"


def check_batch_arguments(jobs_file: Path | None, sources, drivers, out_dir: Path | None, backend: str,
                          address: str | None, workers: int | None, threads: int | None) -> None:
    """The argument combinations ``retarget batch`` accepts (one-line :class:`UsageError` otherwise)."""
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


def collect_jobs(jobs_file: Path | None, sources, drivers, out_dir: Path, previous: dict) -> list[BatchJob]:
    """The jobs of a jobs file, or every source × driver (never taking this batch's outputs, or those of
    the ``previous`` report, as drivers)."""
    if jobs_file is not None:
        return load_jobs_file(jobs_file, out_dir)
    jobs = cross_jobs(sources, drivers, out_dir, exclude_drivers=[Path(p) for p in previous])
    outputs = {j.output for j in jobs}
    return [j for j in jobs if j.driver not in outputs]


def find_checkpoints(checkpoint_dir: Path | None, weight_free: bool) -> tuple[str, str] | None:
    """``(inpainter.pth, refiner.pth)`` the workers load, or ``None`` (weight-free; one warning line
    when no weights are installed)."""
    if weight_free:
        return None
    from retarget.weights import resolve_coordinpaint_checkpoints, warn_weight_free_once

    found = resolve_coordinpaint_checkpoints(checkpoint_dir)
    if found is None:
        warn_weight_free_once()
        return None
    return str(found[0]), str(found[1])


def check_report_path(report_path: Path, out_dir: Path, inputs) -> None:
    """``--report`` (or the default) must be a regular file or new, never an input, in an existing folder.

    Raises:
        UsageError: it names an input (a photo, video, IUV sidecar, texture, the jobs file, or a file in
            an IUV folder), or exists and is not a regular file (a folder, ``/dev/null``, a FIFO: never
            replaced).
        InputError: its folder does not exist (other than ``--out-dir``, which is created) or is a file.
    """
    from retarget.batch.probe import output_problem

    for path, what in ((report_path, "--report"), (journal_path(report_path), "the report's journal")):
        if inputs.names(path):
            raise UsageError(f"{what} {path}: would overwrite an input of the batch (a photo, video, IUV sidecar, "
                             "texture or the jobs file); choose another report path")
        if os.path.lexists(path) or path.exists():
            problem = output_problem(path)
            if problem is not None:
                raise UsageError(f"{what} {problem}")
    parent = report_path.parent
    if parent != out_dir and not parent.is_dir():
        raise InputError(f"{parent}: the --report folder does not exist (or is a file); create it first or "
                         "choose another")


def run_batch(jobs_file: Path | None = None, *, sources: list[str] | None = None, drivers: list[str] | None = None,
              out_dir: Path | None = None, report: Path | None = None, workers: int | None = None,
              threads: int | None = None, backend: str = "local", address: str | None = None,
              overwrite: bool = False, rerun: bool = False, dry_run: bool = False,
              checkpoint_dir: Path | None = None, weight_free: bool = False, device: str = "cpu",
              densepose_weights: Path | None = None, densepose_config: str | None = None,
              allow_large: bool = False, settings: dict[str, Any] | None = None, quiet: bool = False,
              echo: Callable[[str], None] | None = None, fail_fast: bool = False,
              tracebacks: bool = False) -> BatchResult:
    """``retarget batch`` as a function: plan the jobs, check them, run them, write the report.

    The keyword arguments are the command's options (``jobs_file`` is ``--jobs``); ``settings`` holds
    the per-job defaults (keys of :data:`retarget.batch.jobs.DEFAULT_OPTIONS`: ``size``,
    ``background``, ``on_missing``, ..., overridden by each job's own options); ``device`` must be
    valid already. The plan goes to ``echo`` (default: stderr) unless ``quiet``. Failed jobs do not
    raise: see :attr:`BatchResult.failed`; a job that cannot run (bad input, bad row, missing
    DensePose weights, ...) is one of them, planned as failed (:attr:`BatchPlan.failed`) while the
    others run. Bad arguments, a bad jobs file or report path raise a one-line
    :class:`retarget.errors.RetargetError` before any work; with ``fail_fast`` so does any job that
    cannot run (today's up-front refusal), and no job starts after one failed. ``tracebacks``: print
    the traceback of an unexpected error in a job.
    """
    check_batch_arguments(jobs_file, sources, drivers, out_dir, backend, address, workers, threads)
    unknown = sorted(set(settings or {}) - set(DEFAULT_OPTIONS))
    if unknown:
        raise UsageError(f"unknown job settings: {', '.join(unknown)} (known: {', '.join(DEFAULT_OPTIONS)})")
    defaults = {**DEFAULT_OPTIONS, **(settings or {})}
    check_settings(defaults, None)  # the command line's own values: exit 2, named as options (--size)
    out_dir = (out_dir if out_dir is not None else Path(jobs_file).absolute().parent).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out-dir is not a folder")
    report_path = (report or out_dir / REPORT_NAME).absolute()
    previous = load_report(report_path)
    jobs = collect_jobs(jobs_file, sources, drivers, out_dir, previous)

    config = WorkerConfig.with_current_env(
        checkpoints=find_checkpoints(checkpoint_dir, weight_free), device=device, allow_large=allow_large,
        densepose_weights=str(densepose_weights.absolute()) if densepose_weights else None,
        densepose_config=str(Path(densepose_config).absolute()) if densepose_config and Path(densepose_config).suffix
        else densepose_config)
    protected = [Path(jobs_file).absolute()] if jobs_file is not None else []
    reserved = [report_path, journal_path(report_path)]
    plan = make_plan(jobs, defaults, config, previous, overwrite=overwrite, rerun=rerun, protected=protected,
                     reserved=reserved)
    check_report_path(report_path, out_dir, plan.inputs)
    if fail_fast:
        refuse_failed(plan)
    else:
        check_densepose_weights(plan, config.densepose_weights, config.densepose_config, fail_fast=False)
    to_run = plan.to_run
    if backend == "local":
        n_workers = workers or default_workers(len(to_run), any(p.model_densepose for p in to_run), device)
        n_workers = min(n_workers, max(1, len(to_run)))
        config.threads = threads or default_threads(n_workers)
    else:
        n_workers = workers
        config.threads = threads or 1
    if not quiet:
        (echo or _stderr)(plan.describe(n_workers, backend))
    if fail_fast:
        check_densepose_weights(plan, config.densepose_weights, config.densepose_config)  # also with --dry-run
    result = BatchResult(plan=plan, report=report_path, backend=backend, workers=n_workers, threads=config.threads,
                         dry_run=dry_run)
    if dry_run:
        return result

    out_dir.mkdir(parents=True, exist_ok=True)
    config.journal = str(journal_path(report_path))
    if to_run and backend == "ray":
        from retarget.batch.ray_backend import RayExecutor

        executor = RayExecutor(config, n_workers, address)
        result.workers = executor.workers
    else:
        executor = LocalExecutor(config, n_workers if to_run else 1)
    meta = {"backend": backend, "workers": result.workers, "threads": config.threads}
    result.records = run_plan(plan, executor, report_path, meta, quiet=quiet, fail_fast=fail_fast,
                              tracebacks=tracebacks)
    return result


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


__all__ = [
    "CONFLICT",
    "BatchResult",
    "RUN",
    "SKIP",
    "Executor",
    "LocalExecutor",
    "Scheduler",
    "cpu_count",
    "default_threads",
    "default_workers",
    "check_batch_arguments",
    "collect_jobs",
    "find_checkpoints",
    "initial_record",
    "run_batch",
    "run_plan",
]
