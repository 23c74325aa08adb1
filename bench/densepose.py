"""Time the torchvision DensePose R-CNN port per 1280×720 frame (full-size R50, random weights).

Random weights give the same amount of work as the official ones except for the number of detected
people, which drives the DensePose head: the box classifier is biased so that every frame yields
exactly one person (``TEST.DETECTIONS_PER_IMAGE`` 1), the typical driver video.

    .venv/bin/python bench/densepose.py [--frames 2] [--sizes 800 512] [--threads N] [--no-track]
        [--engines torch openvino] [--device cpu|cuda]

With ``--engines torch openvino`` the OpenVINO backbone + FPN (RPN/NMS/ROIAlign and heads stay in
torch) is timed on the same frames and compared with torch; the last lines are one per size and mode:
``densepose engine=openvino size=<s> mode=<m> s_per_frame=<x> vs_torch=<r> iuv_identical=<% of person pixels>``.

Prints a table (seconds per frame, and the share of the main stages) and writes nothing; copy the
figures into docs/densepose.md ("Performance").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from densepose_adapter.rcnn import DensePoseRCNN, preset, resized_shape
from densepose_adapter.rcnn.model import resize_bgr
from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend
from retarget.pipeline.precision import cpu_description


def make_model(fuse_bn: bool) -> DensePoseRCNN:
    torch.manual_seed(0)
    cfg = preset("r50").replace(detections_per_image=1, score_thresh_test=0.8)
    model = DensePoseRCNN(cfg)
    with torch.no_grad():
        # tame the random network (unit-variance-ish activations) and make one confident person
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (1.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
        model.backbone.bottom_up.stem.conv1.weight.mul_(1.0 / 64)  # pixels are ~±128
        for layer in (model.proposal_generator.rpn_head.anchor_deltas, model.roi_heads.box_predictor.bbox_pred,
                      model.roi_heads.box_predictor.cls_score):
            layer.weight.zero_()  # proposals = anchors, boxes = proposals, constant scores
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([8.0, 0.0]))
    if fuse_bn:
        model.fuse_frozen_bn()
    return model.eval()


def frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (720 // 8, 1280 // 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.kron(img, np.ones((8, 8, 1), np.uint8)))  # some spatial structure


def stage_times(model: DensePoseRCNN, image: np.ndarray, size: int) -> dict[str, float]:
    t = {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        hw = resized_shape(*image.shape[:2], size, model.cfg.max_size_test)
        x, sizes = model.preprocess([resize_bgr(image, hw)])
        t["resize+normalise"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        feats = model.backbone(x)
        t["backbone (ResNet+FPN)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        props = model.proposal_generator(feats, sizes)
        t["RPN"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dets = model.roi_heads.detect(feats, [p[0] for p in props], sizes)
        t["box head"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.roi_heads.densepose_on_detections(feats, [d["boxes"] for d in dets], crop_decoder=True)
        t["DensePose decoder (window) + head (1 person)"] = time.perf_counter() - t0
    return t


def _time_frames(backend: TorchvisionDensePoseBackend, frames: list[np.ndarray], prev_box=None,
                 results: list | None = None) -> list[float]:
    out = []
    for f in frames:
        if prev_box is not None:
            backend._prev_box = prev_box.copy()  # every frame measured as a tracked frame
        t0 = time.perf_counter()
        res = backend.predict([f])[0]
        out.append(time.perf_counter() - t0)
        assert len(res.scores) == 1
        if results is not None:
            results.append(res)
    return out


def iuv_agreement(a: list, b: list) -> float:
    """Share of person pixels (of ``a``) with identical I, U and V in ``b``."""
    same = total = 0
    for ra, rb in zip(a, b):
        person = ra.iuv[..., 0] > 0
        same += int((ra.iuv == rb.iuv).all(axis=2)[person].sum())
        total += int(person.sum())
    return same / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3, help="timed frames per setting (after a warm-up)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[800, 512])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--no-track", action="store_true", help="skip the tracked-region measurement")
    ap.add_argument("--fuse-bn", action="store_true", help="also time the BN-folded variant")
    ap.add_argument("--breakdown", action="store_true", help="also time the stages separately")
    ap.add_argument("--engines", nargs="+", default=["torch"], choices=["torch", "openvino"],
                    help="backbone + FPN engines to compare (openvino: CPU only)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (torch engine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tempfile

    where = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
             else cpu_description())
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}: "
          f"{where}; median (min) of {args.frames} frames")
    print("| --densepose-size | network input | mode | engine | s / frame |")
    print("|---:|---|---|---|---:|")
    summary = []
    engine_cache = tempfile.mkdtemp(prefix="bench-densepose-engines-")
    frames = [frame(i) for i in range(args.frames + 1)]
    box = np.array([490.0, 140.0, 790.0, 700.0], np.float32)  # a standing person, 300×560 px
    for fuse in (False, True) if args.fuse_bn else (False,):
        model = make_model(fuse)
        for size in args.sizes:
            hw = resized_shape(720, 1280, size, model.cfg.max_size_test)
            settings = [("full frame", False)] + ([] if args.no_track else [("tracked region", True)])
            for label, track in settings:
                measured = {}
                for engine in args.engines:
                    extra = {"engine": "openvino", "engine_cache": engine_cache, "quiet": True} \
                        if engine == "openvino" else {}
                    backend = TorchvisionDensePoseBackend(config=model.cfg, model=model, min_score=0.8,
                                                          densepose_size=size, track=track, device=args.device,
                                                          **extra)
                    _time_frames(backend, frames[:1], box if track else None)  # warm-up
                    results: list = []
                    times = _time_frames(backend, frames[1:], box if track else None, results)
                    measured[engine] = (float(np.median(times)), results)
                    mode = label + (", BN folded" if fuse else "")
                    net_in = f"{hw[1]}×{hw[0]}" if not track else "crop ≈580×720 → ×" + f"{hw[0] / 720:.2f}"
                    print(f"| {size} | {net_in} | {mode} | {engine} | {np.median(times):.2f} ({min(times):.2f}) |",
                          flush=True)
                if "torch" in measured and "openvino" in measured:
                    t_torch, r_torch = measured["torch"]
                    t_ov, r_ov = measured["openvino"]
                    summary.append(f"densepose engine=openvino size={size} mode={label.replace(' ', '-')} "
                                   f"s_per_frame={t_ov:.3f} vs_torch={t_ov / t_torch:.3f} "
                                   f"iuv_identical={100 * iuv_agreement(r_torch, r_ov):.2f}%")
            if args.breakdown:
                st = stage_times(model, frames[1], size)
                total = sum(st.values())
                print("  " + ", ".join(f"{k} {v:.2f}s ({v / total:.0%})" for k, v in st.items()))
    import shutil

    shutil.rmtree(engine_cache, ignore_errors=True)
    if summary:
        print()
        print("\n".join(summary))


if __name__ == "__main__":
    main()
