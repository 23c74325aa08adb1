"""``--engine auto --precision auto``: the refiner's engine and precision from a short measured probe, cached.

Candidates, in order of preference (the most exact first):

1. ``torch fp32`` (the reference numerics);
2. ``openvino fp32``;
3. ``openvino bf16``, only on CPUs with native bf16 (``avx512_bf16`` or ``amx_bf16`` in the CPU flags) and only
   when its output error vs OpenVINO fp32 on the probe frames is within the int8 error budget
   (:data:`retarget.engine.openvino_refiner.INT8_BUDGET`);
4. ``openvino int8``, only when its NNCF-quantized model (accuracy control) is already in the engine cache and
   within that budget: quantizing takes minutes, which a probe must not cost (``--precision int8`` once
   quantizes it; later ``auto`` runs consider it).

The probe (:func:`measure`) times the actual refiner's per-frame branch on one frame of the shipped example's
refiner inputs (:mod:`retarget.pipeline.calibration_frames`, the user's weights): torch eager, and each OpenVINO
candidate on a batch-1 reshape of the run's converted model (no second conversion); calls are repeated within
:data:`PROBE_SECONDS` (at most 3; the fastest counts), so a full-size refiner costs one call per candidate: ≈ 2.5 +
2.2 + 1.3 s of refiner plus two compiles on the 2-core EPYC of docs/performance.md. The choice (:func:`decide`) is
the fastest candidate; a less exact one must beat every more exact one by :data:`MARGIN` (a CPU where bf16 loses,
or wins by noise, keeps fp32). The result is stored in ``cache_dir()/engine-choice.json`` keyed by the CPU model,
the refiner weights' digest, the batch, the crop size and the engine versions, so later runs are deterministic and
probe-free; the run says once on stderr what it chose and why (:meth:`Choice.line`).

An explicit ``--precision`` or ``--engine`` is never overridden (no probe: see :func:`wants_probe`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

#: Bump when the probe or the decision rule changes (part of the cache key).
PROBE_VERSION = "1"
#: Seconds of calls per candidate in the probe (at least one call; the fastest counts).
PROBE_SECONDS = 0.5
#: A less exact candidate must be at least this much faster (fraction) than every more exact one.
MARGIN = 0.05
CANDIDATES = (("torch", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))
CHOICE_FILE = "engine-choice.json"


@dataclass
class Measurement:
    """One candidate's probe figures: seconds per frame, output error vs OpenVINO fp32 (grey levels), or why
    it was not considered (``skipped``)."""

    engine: str
    precision: str
    s_per_frame: float | None = None
    err_mean: float | None = None
    err_p99: float | None = None
    skipped: str | None = None

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclass
class Choice:
    """What ``auto`` runs, and the figures it was decided on."""

    engine: str
    precision: str
    measurements: list[Measurement] = field(default_factory=list)
    cpu: str = ""
    cached: bool = False
    probe_s: float = 0.0

    def line(self) -> str:
        """The one stderr line: the choice and why (figures)."""
        parts = []
        for m in self.measurements:
            if m.skipped:
                parts.append(f"{m.name} not considered ({m.skipped})")
            else:
                err = f", error mean {m.err_mean:.2f}" if m.err_mean is not None and m.precision != "fp32" else ""
                parts.append(f"{m.name} {m.s_per_frame:.3f}{err}")
        how = "cached probe" if self.cached else f"probe {self.probe_s:.1f} s"
        return (f"note: --engine auto: refiner on {self.engine} {self.precision} ({how} on {self.cpu}; s/frame: "
                f"{'; '.join(parts)}; --precision or --engine chooses yourself)")

    def to_json(self) -> dict:
        return {"engine": self.engine, "precision": self.precision, "cpu": self.cpu, "probe_s": self.probe_s,
                "measurements": [asdict(m) for m in self.measurements]}

    @classmethod
    def from_json(cls, data: dict) -> "Choice":
        measurements = [Measurement(**{k: m.get(k) for k in Measurement.__dataclass_fields__})
                        for m in data["measurements"]]
        return cls(str(data["engine"]), str(data["precision"]), measurements, str(data.get("cpu", "")), True,
                   float(data.get("probe_s", 0.0)))


def wants_probe(engine: str, precision: str, device: str) -> bool:
    """Whether ``auto`` probes: ``--engine auto`` (not overridden by ``RETARGET_ENGINE``) with ``--precision auto``
    on the CPU with OpenVINO installed; everything explicit runs as given."""
    from retarget.engine.runtime import auto_override, openvino_available

    return (engine == "auto" and precision == "auto" and auto_override() is None and str(device).startswith("cpu")
            and openvino_available())


def decide(measurements: list[Measurement]) -> tuple[str, str]:
    """``(engine, precision)``: the fastest measured candidate, a less exact one only when it is :data:`MARGIN`
    faster than every more exact one (candidates in :data:`CANDIDATES` order). Pure."""
    order = {c: i for i, c in enumerate(CANDIDATES)}
    usable = sorted((m for m in measurements if m.skipped is None and m.s_per_frame is not None),
                    key=lambda m: order[(m.engine, m.precision)])
    if not usable:
        return "torch", "fp32"
    best = usable[0]
    for m in usable[1:]:
        if m.s_per_frame < best.s_per_frame * (1.0 - MARGIN):
            best = m
    return best.engine, best.precision


def choice_key(cpu: str, weights: str, batch: int, size, versions: dict) -> str:
    """Cache key of a choice (a readable string: the JSON file is small)."""
    hw = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
    return json.dumps({"probe": PROBE_VERSION, "cpu": cpu, "weights": weights[:24], "batch": int(batch), "size": hw,
                       **versions}, sort_keys=True)


def _versions() -> dict:
    import torch

    from retarget.engine.runtime import openvino_available

    openvino = "none"
    if openvino_available():
        from densepose_adapter.openvino_cache import openvino_version

        openvino = openvino_version()
    return {"torch": str(torch.__version__), "openvino": openvino}


def load_choices(path: Path) -> dict:
    """The stored choices (``{}`` when missing or unreadable: it is a cache, re-probed then)."""
    try:
        if path.is_file() and path.stat().st_size < 1 << 20:
            data = json.loads(path.read_text())
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        pass
    return {}


def store_choice(path: Path, key: str, choice: Choice) -> None:
    """Add ``choice`` under ``key`` (atomic rewrite; a failure to write is not an error: it is a cache)."""
    from retarget.errors import RetargetError
    from retarget.io.atomic import write_bytes_atomic

    data = load_choices(path)
    data[key] = choice.to_json()
    try:
        write_bytes_atomic(path, json.dumps(data, indent=1, sort_keys=True), make_parents=True)
    except (OSError, RetargetError) as exc:  # a folder or device in its place, a read-only or full disk
        reason = getattr(exc, "strerror", None) or str(exc).split(": ")[-1]
        print(f"note: could not store the engine choice in {path} ({reason}); it is probed again next run",
              file=sys.stderr)


def _timed(run: Callable[[], object], budget_s: float | None = None, most: int = 3) -> tuple[float, object]:
    """Fastest of the calls of ``run`` made until ``budget_s`` seconds (:data:`PROBE_SECONDS`) are spent — at least
    one, at most ``most``: a full-size refiner frame takes longer than the budget, so it is one call — and the
    last result."""
    budget_s = PROBE_SECONDS if budget_s is None else budget_s
    times, result = [], None
    while not times or (sum(times) < budget_s and len(times) < most):
        tick = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - tick)
    return float(min(times)), result


def batch_of_one(model):
    """A copy of a converted refiner (static batch B) reshaped to batch 1 (cheap: no conversion)."""
    from retarget.engine.openvino_refiner import INPUT_NAMES

    one = model.clone()
    one.reshape({name: [1, *[int(d) for d in port.get_partial_shape().to_shape()[1:]]]
                 for name, port in zip(INPUT_NAMES, model.inputs)})
    return one


def measure(refiner, frames: list[tuple], batch: int, size, native_bf16: bool, threads: int | None = None
            ) -> list[Measurement]:
    """Probe every candidate on one frame of ``frames`` (per frame the 6 decode inputs, batch 1); see the module
    docstring. The OpenVINO fp32 model at the run's batch is converted (or read from the engine cache) as the
    run would; the candidates are timed on a batch-1 reshape of it (per-frame speed was the same at batch 1
    and 4 on the CPUs of docs/performance.md, and a frame costs a quarter of a batch of 4)."""
    import torch

    from retarget.engine.calibration import output_error
    from retarget.engine.openvino_refiner import INT8_BUDGET, OpenVINORefiner, cache_keys, compile_refiner, \
        engine_cache
    from retarget.models.refiner import SourceFeatures

    frame = (frames[1::2] or frames)[0]
    item = [t.detach().float().cpu().numpy() for t in frame]
    results = []
    with torch.no_grad():
        seconds, _ = _timed(lambda: refiner.decode(SourceFeatures(tuple(frame[:3])), *frame[3:]))
    results.append(Measurement("torch", "fp32", s_per_frame=seconds))

    def probe_ov(model, precision: str) -> tuple[float, np.ndarray]:
        compiled = compile_refiner(batch_of_one(model), precision, threads=threads)
        seconds, out = _timed(lambda: compiled(item)[0])
        return seconds, np.array(out, dtype=np.float32, copy=True)

    fp32 = OpenVINORefiner(refiner, "fp32", batch_size=batch, size=size, quiet=True, threads=threads)
    seconds, reference = probe_ov(fp32.model, "fp32")
    results.append(Measurement("openvino", "fp32", s_per_frame=seconds, err_mean=0.0, err_p99=0.0))

    def error(out: np.ndarray) -> tuple[float, float]:
        err = output_error(out, reference, item[5])
        return float(err.mean()), float(np.percentile(err, 99)) if err.size else 0.0

    def judged(m: Measurement) -> Measurement:
        if m.err_mean > INT8_BUDGET["mean"] or m.err_p99 > INT8_BUDGET["p99"]:
            m.skipped = (f"error mean {m.err_mean:.2f}, p99 {m.err_p99:.1f} over the budget {INT8_BUDGET['mean']}, "
                         f"{INT8_BUDGET['p99']}")
        return m

    if native_bf16:
        seconds, out = probe_ov(fp32.model, "bf16")
        results.append(judged(Measurement("openvino", "bf16", seconds, *error(out))))
    else:
        results.append(Measurement("openvino", "bf16", skipped="no native bf16: avx512_bf16/amx_bf16 absent"))
    found = engine_cache().load("refiner", cache_keys(refiner, batch, size)["int8"])
    if found is None:
        results.append(Measurement("openvino", "int8", skipped="not quantized yet: --precision int8 once"))
    elif not found[1].get("within_budget"):
        results.append(Measurement("openvino", "int8", skipped="quantized model over the error budget"))
    else:
        seconds, out = probe_ov(found[0], "int8")
        results.append(judged(Measurement("openvino", "int8", seconds, *error(out))))
    return results


def probe_frames(calibration_frames, refiner, batch: int, size) -> list[tuple]:
    """The probe's inputs: the shipped example's refiner inputs (``calibration_frames()``), else (no examples
    folder: an installed package) shape-correct random inputs of ``2 × batch`` frames."""
    from retarget.errors import UsageError

    if calibration_frames is not None:
        try:
            return calibration_frames()
        except UsageError:
            pass
    from retarget.engine.openvino_refiner import example_inputs

    inputs = example_inputs(refiner, 2 * batch, size)
    return [(*inputs[:3], *(t[k:k + 1] for t in inputs[3:])) for k in range(2 * batch)]


def choose(refiner, frames: Callable[[], list[tuple]], batch: int, size, *, quiet: bool = False,
           threads: int | None = None, probe: Callable[..., list[Measurement]] = measure,
           cache_file: Path | None = None) -> Choice:
    """The engine and precision ``auto`` runs the refiner with (cached; probed when not); prints
    :meth:`Choice.line` once unless ``quiet``.

    Args:
        refiner: the torch refiner (its weights' digest is part of the key).
        frames: a zero-argument callable giving the probe inputs (called only when probing).
        batch, size: the run's refiner batch and crop size.
        probe: what measures the candidates (tests pass fakes): ``probe(refiner, frames, batch, size,
            native_bf16, threads)`` → list of :class:`Measurement`.
        cache_file: where choices are stored (default ``cache_dir()/engine-choice.json``).
    """
    from densepose_adapter.openvino_cache import state_digest
    from retarget.engine.cpu import cpu_flags, cpu_model, has_native_bf16
    from retarget.paths import cache_dir

    path = cache_file or cache_dir() / CHOICE_FILE
    cpu = cpu_model()
    key = choice_key(cpu, state_digest(refiner), batch, size, _versions())
    stored = load_choices(path).get(key)
    choice = None
    if isinstance(stored, dict):
        try:
            choice = Choice.from_json(stored)
        except (KeyError, TypeError, ValueError):
            choice = None
    if choice is None:
        tick = time.perf_counter()
        measurements = probe(refiner, frames(), batch, size, has_native_bf16(cpu_flags()), threads)
        engine, precision = decide(measurements)
        choice = Choice(engine, precision, measurements, cpu, False, time.perf_counter() - tick)
        store_choice(path, key, choice)
    if not quiet:
        print(choice.line(), file=sys.stderr, flush=True)
    return choice


__all__ = ["CANDIDATES", "Choice", "MARGIN", "Measurement", "choose", "decide", "measure", "wants_probe"]
