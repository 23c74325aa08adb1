"""The refiner inputs of the project's own example, recorded from the torch pipeline: what int8 quantization
calibrates and validates on (:func:`retarget.engine.calibration.quantize_refiner` takes them as inputs).

The example is ``examples/source.jpg`` animated by the DensePose frames of ``examples/driver.iuv``, never
the user's video; the inputs are recorded with the user's weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from retarget.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Example frames used (every 3rd of the 60, to span the motion): half calibrate, half validate.
FRAME_STEP = 3


class _Recorder:
    """Refiner stand-in that records every ``decode`` call's inputs (its output is not needed: zeros)."""

    def __init__(self, refiner):
        self.refiner, self.calls = refiner, []

    def encode_source(self, x):
        return self.refiner.encode_source(x)

    def decode(self, source, target_input, target_xy, target_mask):
        self.calls.append((*source.scales, target_input, target_xy, target_mask))
        n, _, h, w = target_input.shape
        return target_input.new_zeros(n, self.refiner.out_channels, h, w)


def example_refiner_inputs(refiner, inpainter, size: int | tuple[int, int], examples: Path = EXAMPLES) -> list[tuple]:
    """Per example frame, the 6 decode inputs (batch 1 tensors) the pipeline gives the refiner.

    The example is framed as ``retarget video`` frames a person (square crop); for a non-square ``size``
    (``retarget image`` on a whole photo) the square crop of the larger side is cropped to ``size``.
    """
    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_iuv_png
    from retarget.pipeline.pair import Models, prepare_source, render_targets
    from retarget.pipeline.source import frame_source

    pngs = sorted((examples / "driver.iuv").glob("*_IUV.png"))[::FRAME_STEP]
    if not (examples / "source.jpg").is_file() or len(pngs) < 4:
        raise UsageError(f"--precision int8: the calibration frames of the project's examples/ folder are missing "
                         f"({examples}); use a source checkout, or --precision fp32")
    if inpainter is None:
        raise UsageError("--precision int8 needs the learned models (inpainter and refiner)")
    h, w = (size, size) if isinstance(size, int) else size
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2

    def cut(array):
        return np.ascontiguousarray(array[top:top + h, left:left + w])

    photo = read_image_rgb(examples / "source.jpg")
    source = frame_source(photo, iuv=read_iuv_png(examples / "source_IUV.png"), size=side)
    recorder = _Recorder(refiner)
    models = Models(inpainter, recorder)
    with torch.no_grad():
        image = torch.from_numpy(cut(source.image).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        uv = torch.from_numpy(cut(source.uv)).permute(2, 0, 1)[None]
        state = prepare_source(image, uv, models)
        for png in pngs:
            iuv = read_iuv_png(png)
            target = frame_source(np.zeros(iuv.shape, np.uint8), iuv=iuv, size=side)
            render_targets(state, torch.from_numpy(cut(target.uv)).permute(2, 0, 1)[None], models)
    return recorder.calls


def calibration_frames_for(models, size: int | tuple[int, int]):
    """A zero-argument callable giving :func:`example_refiner_inputs` of ``models`` at ``size`` (what
    :func:`retarget.engine.wrap_models` and ``OpenVINORefiner`` take as ``calibration_frames``)."""
    return lambda: example_refiner_inputs(models.refiner, models.inpainter, size)


__all__ = ["EXAMPLES", "FRAME_STEP", "calibration_frames_for", "example_refiner_inputs"]
