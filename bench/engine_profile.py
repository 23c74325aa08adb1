"""Where the refiner's per-frame time goes under OpenVINO: per-layer performance counters, one run.

    .venv/bin/python bench/engine_profile.py [--batch 4] [--precisions fp32 int8] [--calls 3] [--top 10]

- Builds the full-size refiner (random weights, as bench/video.py) and its OpenVINO models the way
  ``retarget video --engine openvino`` does (conversion and int8 quantization are cached and happen
  before any timing; int8 is kept even over its error budget, as in bench/video.py).
- Runs ``--calls`` inferences of the decode branch on the refiner inputs of the shipped example frames
  with OpenVINO's performance counters on, and prints per operation type and for the slowest layers:
  seconds per frame, share of the total and the kernel OpenVINO chose (its ``exec_type``: e.g.
  ``jit_avx2_I8`` is int8 on AVX2 without VNNI, ``brgconv_avx2_f32`` fp32). Convolutions also get their
  multiply-accumulates per frame and the GMAC/s they reached.
- The first line names the CPU, the instruction-set extensions that decide int8 and bf16 speed
  (AVX2, AVX-512, VNNI, AMX, bf16) and the load.

docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from video import full_size_models  # noqa: E402  (bench/video.py: the same random full-size models)

from retarget.engine.calibration import batched  # noqa: E402
from retarget.pipeline.calibration_frames import calibration_frames_for, example_refiner_inputs  # noqa: E402
from retarget.engine.openvino_refiner import OpenVINORefiner  # noqa: E402
from retarget.engine.profile import profile_model  # noqa: E402
from retarget.pipeline.precision import cpu_description  # noqa: E402

def report(refiner: OpenVINORefiner, items: list, calls: int, top: int) -> None:
    result = profile_model(refiner.model, items, calls, refiner.batch_size, refiner.precision)
    total = result.total_s
    print(f"\n== {refiner.precision}, batch {refiner.batch_size}: {result.wall_s:.3f} s/frame wall, counters "
          f"{total:.3f} s/frame; convolutions {sum(result.macs.values()) / 1e9:.1f} GMAC/frame in "
          f"{result.conv_s():.3f} s = {result.gmac_per_s():.0f} GMAC/s")
    print(f"  {'op type':<16} {'kernel':<26} {'s/frame':>8} {'share':>6}")
    for (node_type, exec_type), seconds in list(result.by_type.items())[:top]:
        print(f"  {node_type:<16} {exec_type:<26} {seconds:8.4f} {100 * seconds / total:5.1f}%")
    print(f"  {'slowest layers':<34} {'op type':<12} {'kernel':<18} {'s/frame':>8} {'share':>6} {'GMAC/s':>7}")
    for name, seconds in list(result.by_layer.items())[:top]:
        node_type, exec_type = result.kinds[name]
        layer = name.split("/")[0].replace("__module.refiner.", "") if name.startswith("__module") else name
        rate = f"{result.gmac_per_s(name):7.0f}" if name in result.macs else f"{'':>7}"
        print(f"  {layer[:34]:<34} {node_type[:12]:<12} {exec_type[:18]:<18} {seconds:8.4f} "
              f"{100 * seconds / total:5.1f}% {rate}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "bf16", "int8"])
    parser.add_argument("--calls", type=int, default=3, help="timed inferences per precision")
    parser.add_argument("--top", type=int, default=10, help="rows per table")
    args = parser.parse_args()
    print(cpu_description())
    models = full_size_models()
    items = batched(example_refiner_inputs(models.refiner, models.inpainter, 256), args.batch)
    for precision in args.precisions:
        refiner = OpenVINORefiner(models.refiner, precision=precision, batch_size=args.batch, size=256,
                                  calibration_frames=calibration_frames_for(models, 256), over_budget="run",
                                  accuracy_control=False)
        report(refiner, items, args.calls, args.top)


if __name__ == "__main__":
    main()
