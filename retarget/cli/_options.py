"""Options shared by ``retarget video`` and ``retarget batch`` (one definition, one help text).

Use as ``batch_size: BatchSize = 4``; defaults stay in the command signatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

CheckpointDir = Annotated[Optional[Path], typer.Option(
    "--checkpoint-dir", help="Folder with inpainter.pth and refiner.pth (default: installed weights).")]
WeightFree = Annotated[bool, typer.Option("--weight-free", help="Ignore installed weights: weight-free fill + warp.")]
Fill = Annotated[str, typer.Option(
    "--fill", help="Weight-free texture completion: body (symmetry- and part-aware, default) or nearest "
                   "(nearest covered texel, the reference's classical baseline).")]
DensePoseBackendName = Annotated[str, typer.Option(
    "--densepose-backend", help="auto, precomputed, torchvision or detectron2.")]
DensePoseWeights = Annotated[Optional[Path], typer.Option(
    "--densepose-weights", help="DensePose .pkl (official model-zoo file; default: installed weights).")]
DensePoseConfig = Annotated[Optional[str], typer.Option(
    "--densepose-config", help="r50 (default), r101 or a JSON config file.")]
DensePoseSize = Annotated[int, typer.Option(
    "--densepose-size", help="DensePose input shortest side (800 official; 512 is much faster).")]
DensePoseTrack = Annotated[bool, typer.Option(
    "--densepose-track/--no-densepose-track", help="Run the detector around the previous frame's person.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Frames per refiner batch.")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")]
CropSize = Annotated[int, typer.Option("--size", help="Person crop side (the official weights use 256).")]
Background = Annotated[str, typer.Option("--background", help="scene, source or #RRGGBB.")]
OutputMode = Annotated[str, typer.Option("--output-mode", help="frame (pasted back) or crop.")]
OnMissing = Annotated[str, typer.Option(
    "--on-missing", help="Frames without a person: hold (last pose ≤0.5 s), background, skip.")]
Table = Annotated[str, typer.Option("--table", help="IUV→UV table: auto (clean without weights, training with "
                                                      "them), training, released or clean.")]
SideBySide = Annotated[bool, typer.Option("--side-by-side", help="Write driver | result side by side.")]
Precision = Annotated[str, typer.Option(
    "--precision", help="Per-frame refiner arithmetic: auto (video and batch default: with --engine auto on the "
                        "CPU, the fastest of torch fp32, OpenVINO fp32, bf16 and int8 within the int8 error budget, "
                        "from a short probe cached per CPU and weights; else fp32), fp32 (reference numerics), "
                        "bf16 (≈1.6× faster on CPUs with native bf16, AVX512-BF16 or AMX; elsewhere it warns and "
                        "runs fp32), fp16 (CUDA), "
                        "int8 (OpenVINO, NNCF-quantized within an error budget, else it warns and runs fp32).")]
Person = Annotated[str, typer.Option(
    "--person", help="Driver person to replace: largest (default), center, left, right, or N: the N-th person "
                     "from the left (from 1) in the first frame with people; then followed. Everyone else "
                     "stays as in the driver (with --background scene). retarget frames numbers them.")]
# inference engine of the per-frame networks (retarget/engine, docs/performance.md)
Engine = Annotated[str, typer.Option(
    "--engine", help="Per-frame refiner engine: auto (OpenVINO when installed and on CPU, else torch), torch or "
                     "openvino (pip install 'retarget[openvino]'; converted once, cached).")]
TemporalFilter = Annotated[bool, typer.Option(
    "--temporal-filter/--no-temporal-filter",
    help="Stabilise the driver's DensePose over time (motion-compensated label vote and UV smoothing).")]
TemporalStrength = Annotated[int, typer.Option(
    "--temporal-strength", min=1, max=8,
    help="Temporal filter window: frames on each side (also its look-ahead); more is steadier.")]
Steady = Annotated[float, typer.Option(
    "--steady", min=0.0, max=0.95,
    help="Steady output: weight of the previous output frame carried along the driver's optical flow where "
         "the flow is reliable (0 = off; 0.8 ≈ the last five frames). Removes the shimmer of real DensePose.")]
DensePoseEvery = Annotated[str, typer.Option(
    "--densepose-every", metavar="K|auto",
    help="Run DensePose on every K-th frame only (keyframes) and carry its IUV to the frames between by "
         "optical flow; a cut, occlusion or new person forces a keyframe. auto: K from the measured motion "
         "(up to 5). 1 = every frame (default).")]
# texture workflows (docs/textures.md): an edited texture, or another photo's clothes
Texture = Annotated[Optional[Path], typer.Option(
    "--texture", help="Render with this colour texture (from `retarget texture`, edited; PNG, same size).")]
Garment = Annotated[Optional[Path], typer.Option(
    "--garment", help="Photo of another person whose clothes the source person wears (see --garment-region).")]
GarmentIUV = Annotated[Optional[Path], typer.Option(
    "--garment-iuv", help="DensePose IUV PNG (or UV .npy) of the --garment photo (default: <stem>_IUV.png "
                          "beside it, else DensePose).")]
GarmentRegion = Annotated[str, typer.Option(
    "--garment-region", help="Clothes taken from --garment: upper (torso, arms), lower (legs) or full.")]
# output format (retarget/io/output.py, README "Output formats")
Codec = Annotated[Optional[str], typer.Option(
    "--codec", help="Output codec: h264 (default; .mp4, .m4v, .mov, .mkv), ffv1 (lossless RGB, .mkv), prores "
                    "(ProRes 4444, .mov) or png (a numbered PNG sequence; also chosen by -o DIR/ or "
                    "-o name_%05d.png). Without -o the extension follows the codec.")]
Crf = Annotated[Optional[int], typer.Option(
    "--crf", help="H.264 quality 0..51: 0 = lossless (up to the yuv420p conversion), default 18; lower is better.")]
