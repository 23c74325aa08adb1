"""int8 post-training quantization of the refiner's decode branch (NNCF), with an error budget.

Calibration and validation frames are the project's own example (``examples/source.jpg`` animated by
the DensePose frames of ``examples/driver.iuv``), never the user's video: the refiner inputs of those
frames are recorded from the torch pipeline with the user's weights
(:func:`retarget.pipeline.calibration_frames.example_refiner_inputs`, given to :func:`quantize_refiner` by
its caller: this module does not import the pipeline). Even frames calibrate, odd frames validate.

Activation ranges come from NNCF's histogram estimator (the range that minimises the quantization
error of the observed values) rather than the global min/max: on the full-size refiner with random
weights it brought the crop error from mean 2.46 / p99 8.4 to 1.93 / 7.2 grey levels at the same speed
(min/max with outlier quantiles: 2.17 / 9.5; keeping the first and last convolutions in fp32: 2.31 /
7.9; full bias correction: no change; docs/performance.md).

Accuracy control: the quantized model's output crop is compared with fp32 on the validation frames
(person pixels, 0–255 grey levels). Over the budget, NNCF's ``quantize_with_accuracy_control`` reverts
the most sensitive layers to fp32 until the mean error is inside it (at most 5 layers, ranked on one
validation batch); the final figures and the convolutions left in fp32 are stored with the model and
decide whether ``int8`` runs (see :class:`retarget.engine.openvino_refiner.OpenVINORefiner`). On the
full-size refiner with random weights it kept ``decoder.2.conv`` (63 % of the multiply-accumulates) and
``target_encoder.1.conv`` in fp32 to reach mean 1.45 / p99 5.7, which costs most of int8's speed gain.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from retarget.errors import UsageError

#: Bump when the calibration frames or procedure change (part of the cache key).
#: 2: histogram activation ranges, accuracy control ranks layers on one validation batch.
CALIBRATION_VERSION = "2"


def batched(frames: list[tuple], batch: int) -> list[list[np.ndarray]]:
    """Group batch-1 inputs into batches of ``batch`` target frames (source features stay batch 1);
    the last group is filled up with the first frames again."""
    items = []
    for start in range(0, len(frames), batch):
        group = [frames[(start + i) % len(frames)] for i in range(batch)]
        feats = [group[0][i].numpy() for i in range(3)]
        targets = [torch.cat([g[i] for g in group]).numpy() for i in range(3, 6)]
        items.append(feats + targets)
    return items


def output_error(raw: np.ndarray, reference_raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per person pixel and channel: |sigmoid(raw) − sigmoid(reference)| in 0–255 grey levels."""
    a = 255.0 / (1.0 + np.exp(-raw.astype(np.float64)))
    b = 255.0 / (1.0 + np.exp(-reference_raw.astype(np.float64)))
    keep = np.broadcast_to(mask > 0.5, a.shape)
    return np.abs(a - b)[keep]


def measure(compiled, items: list[list[np.ndarray]], references: list[np.ndarray]) -> tuple[float, float]:
    """``(mean, p99)`` output error of ``compiled`` vs ``references`` over ``items`` (grey levels)."""
    errors = [output_error(compiled(item)[0], ref, item[5]) for item, ref in zip(items, references)]
    err = np.concatenate(errors) if errors else np.zeros(1)
    return float(err.mean()), float(np.percentile(err, 99))


def quantize_refiner(fp32_model, frames: list[tuple], batch: int, budget: dict,
                     quiet: bool = False, max_rounds: int = 3) -> tuple[object, dict]:
    """``(int8 openvino.Model, meta)``; meta holds ``err_mean``, ``err_p99``, ``within_budget`` and the method.

    ``frames``: per frame the 6 decode inputs (batch-1 tensors, in ``INPUT_NAMES`` order) at the converted
    model's size; even frames calibrate, odd frames validate. Every compile here is f32 (the references and the
    int8 model's fp32 layers); NNCF's own compiles force f32 too."""
    try:
        import nncf
    except ImportError:
        from retarget.engine.runtime import INSTALL_HINT

        raise UsageError(f"--precision int8: NNCF is not installed; {INSTALL_HINT}") from None
    from densepose_adapter.openvino_cache import compile_cpu

    calibration = batched(frames[0::2], batch)
    validation = batched(frames[1::2], batch)
    fp32 = compile_cpu(fp32_model, "f32")
    references = [np.array(fp32(item)[0], copy=True) for item in validation]
    subset = len(calibration)

    def transform(item):
        return item

    import logging

    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    logging.getLogger("nncf").setLevel(logging.WARNING)  # its per-step INFO lines are not for users
    ranges = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.HISTOGRAM)
    model = nncf.quantize(fp32_model, nncf.Dataset(calibration, transform), preset=nncf.QuantizationPreset.MIXED,
                          subset_size=subset, fast_bias_correction=True, advanced_parameters=ranges)
    compiled = compile_cpu(model, "f32")
    err_mean, err_p99 = measure(compiled, validation, references)
    method = "nncf.quantize (MIXED preset, histogram activation ranges)"
    if err_mean > budget["mean"] and max_rounds > 0:
        if not quiet:
            print(f"note: int8 refiner error {err_mean:.2f} grey levels (budget {budget['mean']}); NNCF accuracy "
                  "control keeps the most sensitive layers in fp32 (it runs the model ≈ 40 times: ≈ 10 min for the "
                  "full-size refiner on 2 CPU cores; once, cached)", file=sys.stderr, flush=True)
        pairs = list(zip(validation, references))

        def validate(compiled, data) -> float:  # higher is better: 255 minus the mean error (NNCF needs ≠ 0)
            err = np.concatenate([output_error(compiled(item)[0], ref, item[5]) for item, ref in data])
            return 255.0 - float(err.mean())

        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

        # Layers are ranked on one validation batch (the ranking runs the model once per quantizer group:
        # 30 groups on the refiner, ≈ 7.5 min on 3 batches of the full-size model on 2 AVX2 cores).
        restorer = AdvancedAccuracyRestorerParameters(max_num_iterations=max_rounds, ranking_subset_size=1)
        model = nncf.quantize_with_accuracy_control(
            fp32_model, nncf.Dataset(calibration, transform), nncf.Dataset(pairs, lambda pair: pair[0]),
            validation_fn=validate, max_drop=budget["mean"], drop_type=nncf.DropType.ABSOLUTE,
            preset=nncf.QuantizationPreset.MIXED, subset_size=subset, advanced_quantization_parameters=ranges,
            advanced_accuracy_restorer_parameters=restorer)
        compiled = compile_cpu(model, "f32")
        err_mean, err_p99 = measure(compiled, validation, references)
        method = (f"nncf.quantize_with_accuracy_control (histogram activation ranges, max_drop {budget['mean']}, "
                  f"≤{max_rounds} layers reverted)")
    within = err_mean <= budget["mean"] and err_p99 <= budget["p99"]
    meta = {"precision": "int8", "err_mean": err_mean, "err_p99": err_p99, "within_budget": within,
            "budget": budget, "method": method, "calibration_frames": len(frames[0::2]),
            "validation_frames": len(frames[1::2]), "fp32_convolutions": fp32_convolutions(compiled)}
    return model, meta


def fp32_convolutions(compiled) -> list[str]:
    """Layer names of the convolutions a compiled int8 model still runs in floating point (reverted by
    accuracy control, or left unquantized by NNCF), from OpenVINO's runtime graph."""
    names = []
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Convolution" and info["runtimePrecision"].astype(str) not in ("u8", "i8"):
            names.append(op.get_friendly_name().split("/")[0].replace("__module.refiner.", ""))
    return sorted(names)
