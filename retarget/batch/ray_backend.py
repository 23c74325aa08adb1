"""``--backend ray``: the same jobs on a Ray cluster, one actor per worker holding the models.

Ray is optional (``pip install 'retarget[ray]'``) and imported only here, when this backend is
chosen. Each actor wraps a :class:`retarget.batch.worker.BatchWorker`, so jobs run exactly as in a
local worker and return the same result dicts; the driver-aware scheduling and the report are those
of :func:`retarget.batch.run.run_plan`.

On a multi-node cluster every node must see the inputs and outputs under the same paths (a shared
filesystem) and have ``retarget`` installed; set ``RETARGET_CACHE_DIR`` to a shared folder so that
DensePose computed for a driver on one node is reused on the others.
"""

from __future__ import annotations

from typing import Any

from retarget.batch.worker import BatchWorker, Task, WorkerConfig, _result, one_line
from retarget.errors import UsageError


def import_ray():
    """``import ray`` or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray, which is not installed: pip install 'retarget[ray]' "
                         "(or pip install 'ray>=2.9')") from None
    return ray


class RayBatchWorker:
    """The actor class: a batch worker whose start-up failure is reported by each job, not raised."""

    def __init__(self, config: WorkerConfig):
        self.error: str | None = None
        self.worker: BatchWorker | None = None
        try:
            self.worker = BatchWorker(config)
        except Exception as exc:  # noqa: BLE001
            self.error = one_line(exc)

    def run(self, task: Task) -> dict[str, Any]:
        if self.worker is None:
            return _result("failed", error=f"worker start failed: {self.error}")
        return self.worker.run(task)


class RayExecutor:
    """Runs tasks on ``workers`` Ray actors (``num_cpus`` = ``config.threads`` each).

    Connects to ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), reuses a Ray already
    initialised in this process, or starts a local instance when neither is given.
    """

    name = "ray"

    def __init__(self, config: WorkerConfig, workers: int | None = None, address: str | None = None):
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as exc:
                raise UsageError(f"--address {address}: cannot connect to a Ray cluster ({one_line(exc)})") from None
            self._started = True
        if workers is None:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            workers = max(1, cpus // max(1, config.threads))
        self.workers = max(1, int(workers))
        self.config = config
        self._actor_class = ray.remote(num_cpus=max(1, config.threads), max_restarts=0)(RayBatchWorker)
        self._idle = [self._actor_class.remote(config) for _ in range(self.workers)]
        self._inflight: dict[Any, tuple[Any, Task]] = {}

    def free_slots(self) -> int:
        return len(self._idle)

    def submit(self, task: Task) -> None:
        actor = self._idle.pop()
        self._inflight[actor.run.remote(task)] = (actor, task)

    def wait(self, timeout: float) -> list[tuple[Task, dict[str, Any]]]:
        if not self._inflight:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=timeout)
        out = []
        for ref in ready:
            actor, task = self._inflight.pop(ref)
            try:
                out.append((task, ray.get(ref)))
                self._idle.append(actor)
            except ray.exceptions.RayError as exc:
                # the actor died (killed, out of memory, node lost): report the job, replace the actor
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                out.append((task, _result("failed", error=f"Ray worker failed: {message[:200]}")))
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001
                    pass
                self._idle.append(self._actor_class.remote(self.config))
        return out

    def progress(self) -> list[tuple[int, int]]:
        return []

    def close(self, cancel: bool = False) -> None:
        ray = self._ray
        actors = list(self._idle) + [a for a, _ in self._inflight.values()]
        if cancel:
            for ref in list(self._inflight):
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001
                    pass
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        self._idle, self._inflight = [], {}
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False
