"""Inference engine of the per-frame networks: ``torch`` (eager), ``openvino``, or ``auto``.

The refiner's per-frame branch (:meth:`retarget.models.Refiner.decode`) is what runs once per target
frame; the source branch and the inpainter run once per source and stay in torch. With ``openvino``
the decode branch is converted once (cached under ``$RETARGET_HOME/cache/engines``, see
:mod:`densepose_adapter.openvino_cache`) and :func:`wrap_models` puts an object with the refiner's
interface into :class:`~retarget.pipeline.pair.Models`, so the pipeline code does not change.
The source-branch features stay *inputs* of the converted model (not constants), so one conversion
serves every source photo.

``auto`` (the default) with ``--precision auto`` (the default of ``video`` and ``batch``) on the CPU with
OpenVINO installed decides the refiner's engine *and* precision from a short measured probe, cached per
CPU model and weights (:mod:`retarget.engine.auto`: torch fp32, OpenVINO fp32, bf16 on native-bf16 CPUs
within the int8 error budget, int8 when already quantized within it). With an explicit ``--precision``,
``auto`` follows the fixed rule: ``openvino`` when it is installed, the device is a CPU and the precision
is not ``fp16``; otherwise ``torch`` (OpenVINO fp32 was faster than torch eager on the refiner on both
CPUs measured, an AVX-512 VNNI Xeon (issue 14: 0.85× at batch 1, 0.6× at batch 4) and the AVX2 EPYC of
docs/performance.md). ``int8`` needs OpenVINO (``auto`` or ``openvino``). The environment variable
``RETARGET_ENGINE`` (``torch`` or ``openvino``) overrides what ``auto`` means (the test suite sets
``torch`` so that only the engine tests pay for conversions).
"""

from __future__ import annotations

import dataclasses

from retarget.engine.runtime import INSTALL_HINT, auto_override, openvino_available, require_openvino
from retarget.errors import UsageError

ENGINES = ("auto", "torch", "openvino")

def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    return engine


def _requested(engine: str, device: str) -> str:
    """``--engine`` after ``RETARGET_ENGINE`` (what ``auto`` means); an explicit ``openvino`` is checked here
    (CPU only, installed)."""
    check_engine(engine)
    if engine == "auto" and auto_override():
        engine = auto_override()
    if engine == "openvino":
        if not _on_cpu(device):
            raise UsageError(f"--engine openvino runs on the CPU; with --device {device} use --engine torch")
        require_openvino("--engine openvino")
    return engine


def _on_cpu(device: str) -> bool:
    return str(device).startswith("cpu")


def resolve_engine(engine: str, device: str, precision: str) -> str:
    """``torch`` or ``openvino`` for ``--engine`` on ``device`` at ``precision`` (see the module docstring).

    Raises:
        UsageError: unknown engine; ``openvino`` on a non-CPU device or without OpenVINO installed;
            ``int8`` with the torch engine or without OpenVINO.
    """
    engine = _requested(engine, device)
    if engine == "torch":
        if precision == "int8":
            raise UsageError("--precision int8 needs --engine openvino (or --engine auto with OpenVINO installed)")
        return "torch"
    if engine == "openvino":
        return "openvino"
    if precision == "int8":
        if not _on_cpu(device):
            raise UsageError(f"--precision int8 runs on the CPU (OpenVINO); with --device {device} use fp16 or fp32")
        require_openvino("--precision int8")
        return "openvino"
    return "openvino" if _on_cpu(device) and precision != "fp16" and openvino_available() else "torch"


#: Whether ``auto`` runs the DensePose port's backbone + FPN with OpenVINO (when installed, on CPU); set
#: from bench/densepose.py's measurement (docs/performance.md).
AUTO_DENSEPOSE_OPENVINO = True


def densepose_engine(engine: str, device: str) -> str:
    """The DensePose port's engine (``torch`` or ``openvino``) for ``--engine`` on ``device``."""
    engine = _requested(engine, device)
    if engine == "auto":
        return "openvino" if _on_cpu(device) and AUTO_DENSEPOSE_OPENVINO and openvino_available() else "torch"
    return engine


def densepose_engine_kwargs(engine: str, device: str, quiet: bool = False) -> dict:
    """Keyword arguments of the DensePose port for ``--engine`` (the engine and retarget's cache folder)."""
    from retarget.paths import cache_dir

    chosen = densepose_engine(engine, device)
    if chosen == "torch":
        return {}
    return {"engine": chosen, "engine_cache": cache_dir() / "engines", "quiet": quiet}


def auto_precision(refiner, engine: str, device: str, precision: str, batch_size: int, size, quiet: bool = False,
                   calibration_frames=None, threads: int | None = None) -> tuple[str, str]:
    """``(engine, precision)`` to run for ``--engine``/``--precision`` where the precision may be ``auto``:
    the measured, cached choice of :func:`retarget.engine.auto.choose` when :func:`~retarget.engine.auto.wants_probe`
    (``auto`` both, CPU, OpenVINO installed), else ``fp32`` for ``auto``; an explicit precision is kept."""
    if precision != "auto":
        return engine, precision
    from retarget.engine.auto import choose, probe_frames, wants_probe

    if not wants_probe(engine, precision, device):
        return engine, "fp32"
    choice = choose(refiner, lambda: probe_frames(calibration_frames, refiner, batch_size, size), batch_size, size,
                    quiet=quiet, threads=threads)
    return choice.engine, choice.precision


def wrap_models(models, engine: str, device: str, precision: str, batch_size: int, size: int,
                quiet: bool = False, calibration_frames=None, threads: int | None = None):
    """``models`` with the refiner run by the chosen engine (a new :class:`Models`; ``None`` stays ``None``).

    Args:
        models: :class:`~retarget.pipeline.pair.Models` (torch) or ``None`` (weight-free path).
        engine: ``auto``, ``torch`` or ``openvino``.
        device, precision: as resolved for the run (``fp32``, ``bf16``, ``fp16``, ``int8`` or ``auto``: see
            :func:`auto_precision`).
        batch_size: frames per refiner call (the converted model has this static batch; smaller
            batches are padded).
        size: crop side (the converted model's spatial size).
        quiet: no conversion progress message.
        calibration_frames: ``int8`` only: a callable giving the refiner inputs to calibrate and validate
            on (:func:`retarget.pipeline.calibration_frames.example_refiner_inputs` bound to the models
            and the crop size); called only when no quantized model is cached (and by the ``auto`` probe).
        threads: OpenVINO inference threads (``None``: every core; :mod:`retarget.engine.threads`).
    """
    if precision == "auto":
        wrapped = getattr(getattr(models, "refiner", None), "torch_refiner", None) is not None
        if models is None or models.refiner is None or wrapped:  # nothing to run, or already on OpenVINO
            return models
        engine, precision = auto_precision(models.refiner, engine, device, precision, batch_size, size, quiet,
                                           calibration_frames, threads)
    chosen = resolve_engine(engine, device, precision)
    if models is None or models.refiner is None or chosen == "torch":
        return models
    from retarget.engine.openvino_refiner import OpenVINORefiner

    if isinstance(models.refiner, OpenVINORefiner):
        return models
    refiner = OpenVINORefiner(models.refiner, precision=precision, batch_size=batch_size, size=size, quiet=quiet,
                              calibration_frames=calibration_frames, threads=threads)
    return dataclasses.replace(models, refiner=refiner)


__all__ = ["ENGINES", "INSTALL_HINT", "auto_override", "auto_precision", "check_engine", "openvino_available",
           "require_openvino", "resolve_engine", "wrap_models"]
