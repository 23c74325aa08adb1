"""Thread budget of a run: how many threads torch, OpenVINO and OpenCV get, so that they never ask for more
cores than there are (no oversubscription).

Sequential work (one stage at a time) gives every library every core. When the video runner overlaps
DensePose (pass 1) with the refiner rendering ahead (:mod:`retarget.pipeline.video`), the cores are split:
the DensePose side gets ``densepose = cores // 2`` (torch's intra-op pool, OpenCV, the DensePose backbone's
OpenVINO model — called one after the other in that thread), the refiner side the rest, ``refiner = cores −
densepose`` (the OpenVINO refiner). torch's pool is one per process, so it gets the DensePose side's share and
the refiner thread's torch work (the warp, or a torch refiner) uses that many too: at most ``2 × densepose ≤
cores`` torch threads at once. :meth:`ThreadPlan.peak` is the most threads these can run at once; it never
exceeds ``cores`` (tests/test_threads.py checks every core count up to 256).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class ThreadPlan:
    """Thread counts of one phase of a run (see the module docstring)."""

    cores: int
    overlap: bool  #: DensePose and the refiner run at the same time (two sides)
    densepose: int  #: the DensePose side's share (all cores when not overlapping)
    refiner: int  #: the refiner side's share (all cores when not overlapping)

    @property
    def torch(self) -> int:
        """torch intra-op threads (one pool per process)."""
        return self.densepose

    @property
    def opencv(self) -> int:
        """OpenCV threads (used on the DensePose side: optical flow, resizing)."""
        return self.densepose

    @property
    def openvino_refiner(self) -> int:
        return self.refiner

    @property
    def openvino_densepose(self) -> int:
        return self.densepose

    def peak(self, refiner_on_torch: bool = False) -> int:
        """The most threads running at once: one side at a time when sequential, both sides when overlapping
        (the refiner side's torch work, or a torch refiner, draws on torch's pool of :attr:`torch`)."""
        densepose_side = max(self.torch, self.opencv, self.openvino_densepose)
        refiner_side = max(self.torch, self.openvino_refiner if not refiner_on_torch else 0)
        return densepose_side + refiner_side if self.overlap else max(densepose_side, refiner_side)

    def line(self) -> str:
        if not self.overlap:
            return f"threads: {self.cores} (sequential)"
        return (f"threads: {self.cores} cores = DensePose side {self.densepose} (torch, OpenCV, OpenVINO) + refiner "
                f"side {self.refiner} (OpenVINO)")


def available_cores() -> int:
    """The cores a run may use: those of the process's CPU affinity, capped by torch's thread count (what a
    ``retarget batch`` worker or the user set: ``--threads``, ``OMP_NUM_THREADS``)."""
    import torch

    from retarget.engine.cpu import usable_cores

    return max(1, min(usable_cores(), torch.get_num_threads()))


def plan_threads(cores: int | None = None, overlap: bool = True) -> ThreadPlan:
    """The plan for ``cores`` (default: :func:`available_cores`); overlapping needs at least 2."""
    cores = max(1, int(cores if cores is not None else available_cores()))
    if not overlap or cores < 2:
        return ThreadPlan(cores, False, cores, cores)
    densepose = cores // 2
    return ThreadPlan(cores, True, densepose, cores - densepose)


@contextlib.contextmanager
def applied(plan: ThreadPlan, refiner=None, backbones=()) -> Iterator[ThreadPlan]:
    """Set torch's and OpenCV's thread counts, the OpenVINO refiner's (``refiner.set_threads``) and the DensePose
    OpenVINO backbones' (``set_threads``) for the ``with`` block; torch's and OpenCV's are restored after it,
    the OpenVINO models go back to every core (``set_threads(None)``)."""
    import cv2
    import torch

    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(plan.torch)
    cv2.setNumThreads(plan.opencv)
    openvino = [(refiner, plan.openvino_refiner)] + [(b, plan.openvino_densepose) for b in backbones]
    for model, threads in openvino:
        if hasattr(model, "set_threads"):
            model.set_threads(threads if plan.overlap else None)
    try:
        yield plan
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
        for model, _ in openvino:
            if hasattr(model, "set_threads"):
                model.set_threads(None)


__all__ = ["ThreadPlan", "applied", "available_cores", "plan_threads"]
