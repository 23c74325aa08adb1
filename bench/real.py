"""Same-person pose transfer on real DensePose video, against the real frames (issue 31), in one run.

    .venv/bin/python bench/real.py [FOLDER ...] [--root ../shared/real] [--max-targets N] [--sources first,middle,last]
                                   [--variants body,nearest,silhouette] [--pictures DIR] [--no-temporal]
                                   [--regions] [--speed] [--identity-every-frame] [--table clean]

Clips: every folder under ``--root`` (searched recursively) with ``rgb/`` and ``iuv/`` subfolders, plus every
FOLDER given. Frames are paired by the last number in their file names (``frame146.png`` ↔
``frame146_IUV.png``), sorted numerically. IUV files are read in DensePose's order (cv2 B = I, G = U, R = V);
a file whose blue channel is not a part index (> 24) but whose red channel is, is read in PIL order (R = I).
IUV → UV with ``--table`` (default ``clean``, what ``--table auto`` gives on the weight-free path).

Protocol, per clip and per source frame (first, middle and last):

- the source is framed as ``retarget image`` / ``video`` frame a photo (:func:`retarget.pipeline.source.frame_source`,
  person filling 90 % of a 256² crop) and prepared weight-free (:func:`prepare_source_crop`, ``--fill`` of the
  variant); the render is :func:`retarget.pipeline.pair.render_targets`' ``output``: what the commands show;
- targets = every other frame of the clip, all cut with one square crop per clip (the union of the person
  boxes of all frames, framed the same way) and resized to 256²; ground truth = the real frame, same crop;
- every render is pasted on the real frame (the identity on the source crop) with the renderer's
  ``paste_alpha``, as ``retarget video --background scene`` pastes it on the scene: target pixels at the
  silhouette that read background DensePose took in (``body``) show the frame's background;
- **ΔE**: per region (torso 1-2, upper arms 15-18, lower arms 19-22, hands 3-4, thighs 7-10, shins 11-14,
  feet 5-6, head 23-24; DensePose parts of the target), the CIE76 distance between the mean CIELAB colour of
  the render and of the real frame over the region's pixels (regions with ≥ 20 pixels), averaged over regions;
- **SSIM / PSNR** over the target person's bounding box, the render composited on the real frame's background
  (so only the person differs; skimage defaults, data range 1);
- **identity PSNR**: the source rendered onto its own UV, PSNR against the source crop over the person mask;
- **warp error**: DIS optical flow (OpenCV, medium preset) from each real target frame to the previous one;
  the error of a video is the mean absolute RGB difference (0..255) between a frame and the previous frame
  warped by that flow, over pixels that are person in both (the flow-mapped previous mask); real video vs
  renders of the same consecutive targets from one source (pairs that skip the source frame are left out).
  The render is measured on the raw IUV and with the temporal IUV filter ``retarget video`` runs by default
  (:func:`densepose_adapter.temporal.filter_stream`, default settings, guided by the real frames), and
  with ``--steady`` after the filter (:class:`retarget.pipeline.steady.OutputSteadier`, driver crops = the real
  crops): what ``retarget video`` outputs by default; ΔE and SSIM are reported for that output too.

With ``--identity-every-frame``: the identity PSNR of ``body`` with *every* frame of every clip as the source
(min, the frame that gives it, 10th percentile, mean, frames below 28 dB): the floor of the issue, checked beyond
the three sources.

With ``--regions``: the ΔE of every region, and on the target's head (parts 23, 24; targets with ≥ 30 head
pixels) PSNR, grey-level SSIM and detail (mean absolute Laplacian, render ÷ real frame; :func:`head_scores`).

Variants: ``body`` (the default fill, what users get), ``nearest`` (``--fill nearest``), ``texture`` (the
``body`` completion read through the 256² colour texture: the renderer before issue 31, kept here for the
before/after), ``silhouette`` (floor: every person pixel in the source person's mean colour).

Prints one line per clip, source and variant, then per clip and variant (means over sources), and a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REGIONS = {
    "torso": (1, 2), "upper arms": (15, 16, 17, 18), "lower arms": (19, 20, 21, 22), "hands": (3, 4),
    "thighs": (7, 8, 9, 10), "shins": (11, 12, 13, 14), "feet": (5, 6), "head": (23, 24),
}
MIN_REGION_PIXELS = 20
SIZE = 256
VARIANTS = ("body", "texture", "nearest", "silhouette")
#: IUV→UV table of sources and targets (``--table``): what ``--table auto`` gives on the weight-free path.
TABLE = "clean"


def find_clips(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) holding ``rgb/`` and ``iuv/``."""
    if not root.is_dir():
        return []
    found = [p.parent for p in root.rglob("rgb") if p.is_dir() and (p.parent / "iuv").is_dir()]
    return sorted(set(found))


def _number(path: Path) -> int | None:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else None


def read_iuv(path: Path) -> np.ndarray:
    """``(H, W, 3) uint8 [I, U, V]`` from a DensePose IUV PNG in DensePose's order (B = I) or PIL's (R = I), as
    ``retarget`` reads it (:func:`densepose_adapter.iuv.read_iuv_png`)."""
    from densepose_adapter.errors import InputError
    from densepose_adapter.iuv import read_iuv_png

    try:
        return read_iuv_png(path)
    except InputError as exc:
        raise SystemExit(f"error: {exc}") from None


@dataclass
class Clip:
    name: str
    rgb: list[np.ndarray]
    iuv: list[np.ndarray]
    numbers: list[int] = field(default_factory=list)

    def with_person(self) -> list[int]:
        """Indices of the frames whose IUV shows a person (:func:`has_person`): the only sources and targets."""
        return [t for t, iuv in enumerate(self.iuv) if has_person(iuv)]


#: Fewest person pixels (IUV part > 0, at the frame's own size) a frame needs to be a source or a target: real
#: DensePose misses the person in some frames (motion blur, occlusion, the person leaving the frame).
MIN_PERSON_PIXELS = 64


def has_person(iuv: np.ndarray) -> bool:
    """Whether an ``(H, W, 3)`` IUV frame shows at least :data:`MIN_PERSON_PIXELS` person pixels."""
    return int((iuv[..., 0] > 0).sum()) >= MIN_PERSON_PIXELS


def load_clip(folder: Path, root: Path) -> Clip:
    images = {_number(p): p for p in (folder / "rgb").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    maps = {_number(p): p for p in (folder / "iuv").iterdir() if p.suffix.lower() == ".png"}
    numbers = sorted(k for k in images.keys() & maps.keys() if k is not None)
    if len(numbers) < 3:
        raise SystemExit(f"error: {folder}: fewer than 3 frames with both rgb/ and iuv/")
    rgb = [cv2.cvtColor(cv2.imread(str(images[k]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for k in numbers]
    iuv = [read_iuv(maps[k]) for k in numbers]
    for k, a, b in zip(numbers, rgb, iuv):
        if a.shape[:2] != b.shape[:2]:
            raise SystemExit(f"error: {folder}: frame {k}: rgb and iuv sizes differ")
    try:
        name = str(folder.resolve().relative_to(root.resolve()))
    except ValueError:
        name = folder.name
    clip = Clip(name=name, rgb=rgb, iuv=iuv, numbers=numbers)
    people = set(clip.with_person())
    if len(people) < 2:
        raise SystemExit(f"error: {folder}: fewer than 2 frames whose IUV shows a person")
    empty = [k for t, k in enumerate(numbers) if t not in people]
    if empty:
        print(f"note: {folder.name}: {len(empty)} of {len(numbers)} frames without a person in their IUV "
              f"(frames {', '.join(map(str, empty[:8]))}{' …' if len(empty) > 8 else ''}): kept in the sequence "
              f"(temporal filter, warp error), never a source or a target", flush=True)
    return clip


# ---------------------------------------------------------------------------------------------- metrics

def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)


def region_errors(out: np.ndarray, real: np.ndarray, parts: np.ndarray) -> dict[str, float]:
    """CIE76 distance between the mean CIELAB colours of ``out`` and ``real`` per region of :data:`REGIONS`
    (regions with at least :data:`MIN_REGION_PIXELS` pixels of ``parts``)."""
    a, b = lab(out), lab(real)
    errors = {}
    for name, ids in REGIONS.items():
        sel = np.isin(parts, ids)
        if sel.sum() >= MIN_REGION_PIXELS:
            errors[name] = float(np.linalg.norm(a[sel].mean(axis=0) - b[sel].mean(axis=0)))
    return errors


def mean_region_error(errors: dict[str, float]) -> float:
    """The ΔE of a frame: the mean of its :func:`region_errors` (NaN without any region)."""
    return float(np.mean(list(errors.values()))) if errors else float("nan")


def region_delta_e(out: np.ndarray, real: np.ndarray, parts: np.ndarray) -> float:
    """Mean over regions of the CIE76 distance between mean CIELAB colours (see the module docstring)."""
    return mean_region_error(region_errors(out, real, parts))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def box_scores(out: np.ndarray, real: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(SSIM, PSNR) over the bounding box of ``mask``, ``out`` composited on ``real``'s background."""
    from skimage.metrics import structural_similarity

    rows, cols = np.nonzero(mask)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    comp = np.where(mask[..., None], out, real)[box]
    ref = real[box]
    win = min(7, *[s - (1 - s % 2) for s in ref.shape[:2]])
    ssim = structural_similarity(comp, ref, data_range=1.0, channel_axis=2, win_size=max(3, win))
    return float(ssim), psnr(comp, ref)


#: Head parts, and the fewest head pixels a target needs for :func:`head_scores`.
HEAD = (23, 24)
MIN_HEAD_PIXELS = 30


def head_scores(out: np.ndarray, real: np.ndarray, parts: np.ndarray) -> tuple[float, float, float] | None:
    """(PSNR, SSIM, detail) of ``out`` against ``real`` on the target's head pixels (``--regions``): PSNR over
    the head's RGB, the grey-level SSIM map (skimage defaults) averaged over it, and the mean absolute
    Laplacian of the grey image over the head eroded 1 px, ``out``'s divided by ``real``'s (above 1: busier,
    e.g. speckled). ``None`` with fewer than :data:`MIN_HEAD_PIXELS` head pixels."""
    from skimage.metrics import structural_similarity

    sel = np.isin(parts, HEAD)
    if sel.sum() < MIN_HEAD_PIXELS:
        return None
    inner = cv2.erode(sel.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    grey = [cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY) for x in (out, real)]
    lap = [np.abs(cv2.Laplacian(g, cv2.CV_32F))[inner].mean() for g in grey]
    _, ssim = structural_similarity(grey[1], grey[0], data_range=1.0, full=True)
    return psnr(out[sel], real[sel]), float(ssim[sel].mean()), float(lap[0] / max(lap[1], 1e-12))


def flows(frames: list[np.ndarray]) -> list[np.ndarray | None]:
    """DIS flow from frame t to frame t-1 (``flow[t]``, ``None`` for t = 0), on 8-bit grey frames."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return [None] + [dis.calc(grey[t], grey[t - 1], None) for t in range(1, len(frames))]


def warp_error(frames: list[np.ndarray], masks: list[np.ndarray], flow: list, pairs: list[int]) -> float:
    """Mean |frame t − warp(frame t−1)| (0..255 RGB) over person pixels of both, pooled over ``pairs`` (t)."""
    h, w = masks[0].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    total, count = 0.0, 0
    for t in pairs:
        mx, my = gx + flow[t][..., 0], gy + flow[t][..., 1]
        prev = cv2.remap(frames[t - 1].astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        prev_mask = cv2.remap(masks[t - 1].astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderValue=0) > 0
        sel = masks[t] & prev_mask
        diff = np.abs(frames[t].astype(np.float32) - prev)[sel]
        total += float(diff.sum())
        count += diff.size
    return total / max(count, 1)


def relative(error: float, real: float) -> float:
    """``error / real`` (a render's warp error over the real video's); NaN where the real video does not move
    (a still clip has no flicker to compare with)."""
    return error / real if real > 0 else float("nan")


# ---------------------------------------------------------------------------------------------- renders

def clip_crop(clip: Clip):
    from retarget.pipeline.framing import SquareCrop, box_to_crop_params, mask_box

    boxes = np.stack([mask_box(i[..., 0] > 0) for i in clip.iuv if (i[..., 0] > 0).any()])
    union = np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])
    return SquareCrop.around(*box_to_crop_params(union))


def target_uvs(iuvs: Iterable[np.ndarray], crop) -> tuple[np.ndarray, np.ndarray]:
    """``(N, S, S, 2)`` UV and ``(N, S, S)`` part labels of IUV frames cut with ``crop``."""
    from retarget.pipeline.framing import crop_image
    from retarget.uvmap import iuv_to_uv

    cut = np.stack([crop_image(i, crop, SIZE, nearest=True) for i in iuvs])
    return iuv_to_uv(cut, table=TABLE).astype(np.float32), cut[..., 0]


class Renderer:
    """One source frame prepared for every variant; :meth:`render` gives ``(N, S, S, 3)`` float outputs."""

    def __init__(self, rgb: np.ndarray, iuv: np.ndarray, variants: list[str]):
        from retarget.pipeline.source import frame_source, prepare_source_crop

        self.source = frame_source(rgb, iuv=iuv, size=SIZE, table=TABLE)
        self.states, self.seconds = {}, {}
        for fill in {"nearest" if v == "nearest" else "body" for v in variants if v != "silhouette"}:
            tick = time.perf_counter()
            self.states[fill] = prepare_source_crop(self.source, None, fill=fill)
            self.seconds[fill] = time.perf_counter() - tick
        person = ~np.isnan(self.source.uv).all(axis=2)
        self.mean_colour = (self.source.image[person].astype(np.float32) / 255.0).mean(axis=0)

    def identity(self, variant: str) -> tuple[np.ndarray, float]:
        """The source rendered onto its own UV (pasted on its own image) and its PSNR over the person mask."""
        src = self.source
        mask = ~np.isnan(src.uv).all(axis=2)
        out = self.render(variant, src.uv[None], [src.image])[0]
        return out, psnr(out[mask], src.image.astype(np.float32)[mask] / 255.0)

    def render(self, variant: str, uv: np.ndarray, backgrounds: list[np.ndarray] | None = None) -> np.ndarray:
        """``(N, S, S, 3)`` float renders of the ``(N, S, S, 2)`` target UVs; with ``backgrounds`` (``(S, S, 3)``
        uint8 frames, one per target) each is pasted on its frame with the renderer's ``paste_alpha``, as
        ``retarget video --background scene`` pastes it on the scene (the real frame here)."""
        import torch

        from retarget import ops
        from retarget.pipeline.pair import render_targets

        person = ~np.isnan(uv).all(axis=3)
        if variant == "silhouette":
            state = self.states.get("body") or self.states["nearest"]
            out = np.where(person[..., None], self.mean_colour, state.background_rgb.numpy())
            return out.astype(np.float32)
        state = self.states["nearest" if variant == "nearest" else "body"]
        target = torch.from_numpy(np.ascontiguousarray(uv)).permute(0, 3, 1, 2)
        outs = []
        for start in range(0, len(target), 16):
            batch = target[start:start + 16]
            if variant == "texture":  # the colour-texture renderer (before issue 31)
                tuv, alpha = ops.split_uv_mask(batch)
                img = ops.render_target(state.pred_textures.expand(len(batch), -1, -1, -1), tuv, alpha)
                result = img + state.background_rgb.view(1, 3, 1, 1) * (1 - alpha)
            else:
                rendered = render_targets(state, batch, None)
                result = rendered.output
                alpha = getattr(rendered, "paste_alpha", rendered.target_mask)  # older versions: the mask
            if backgrounds is not None:
                frames = np.stack(backgrounds[start:start + 16]).astype(np.float32) / 255.0
                result = result * alpha + torch.from_numpy(frames).permute(0, 3, 1, 2) * (1 - alpha)
            outs.append(result.permute(0, 2, 3, 1).numpy())
        return np.concatenate(outs)


# ---------------------------------------------------------------------------------------------- protocol

def source_indices(n: int, which: list[str], usable: list[int] | None = None) -> list[int]:
    """Frame indices of the ``first``, ``middle`` and ``last`` source named in ``which``, among the ``usable``
    frames (default: all ``n``; see :func:`has_person`)."""
    usable = list(range(n)) if usable is None else usable
    named = {"first": usable[0], "middle": usable[len(usable) // 2], "last": usable[-1]}
    return sorted({named[w] for w in which})


def subsample(indices: list[int], limit: int | None) -> list[int]:
    if not limit or len(indices) <= limit:
        return indices
    pick = np.unique(np.round(np.linspace(0, len(indices) - 1, limit)).astype(int))
    return [indices[i] for i in pick]


def run_clip(clip: Clip, variants: list[str], sources: list[str], max_targets: int | None, temporal: int,
             pictures: Path | None, steady: float = 0.0, heads: bool = False) -> dict:
    from retarget.pipeline.framing import crop_image

    crop = clip_crop(clip)
    n = len(clip.rgb)
    real = [crop_image(f, crop, SIZE, replicate=True) for f in clip.rgb]
    uv_raw, parts = target_uvs(clip.iuv, crop)
    masks = [p > 0 for p in parts]
    flow = flows(real)
    uv_filtered = None
    if temporal:
        from densepose_adapter.temporal import TemporalSettings, filter_stream, guide_from_rgb

        # the streaming form (what `retarget video` runs; identical output): flat memory whatever the clip's
        # length (the offline form holds every frame's flows, ≈ 60 MB a 1920×1080 frame); each filtered
        # frame is cut to the crop as it comes
        stream = filter_stream(((i, guide_from_rgb(f)) for i, f in zip(clip.iuv, clip.rgb)),
                               TemporalSettings(radius=temporal))
        uv_filtered, _ = target_uvs((iuv for _, iuv in stream), crop)
    rows = []
    usable = [t for t in clip.with_person() if masks[t].any()]  # and still a person once cut to the crop
    for s in source_indices(n, sources, usable):
        renderer = Renderer(clip.rgb[s], clip.iuv[s], variants)
        src = renderer.source
        src_mask = ~np.isnan(src.uv).all(axis=2)
        targets = subsample([t for t in usable if t != s], max_targets)
        pairs = [t for t in range(1, n) if s not in (t, t - 1)]  # every consecutive pair of targets
        real_warp = warp_error(real, masks, flow, pairs) if pairs else float("nan")
        shown = {}
        for variant in variants:
            identity, identity_psnr = renderer.identity(variant)
            row = {"clip": clip.name, "source": clip.numbers[s], "variant": variant, "identity": identity_psnr}
            # every frame is rendered (the warp error uses all consecutive targets); metrics use ``targets``
            out = renderer.render(variant, uv_raw, real)
            de, ss, ps, by_region, head = [], [], [], {}, []
            for t in targets:
                gt = real[t].astype(np.float32) / 255.0
                if heads:  # only printed with --regions
                    head.append(head_scores(out[t], gt, parts[t]))
                errors = region_errors(out[t], gt, parts[t])
                de.append(mean_region_error(errors))
                for name, value in errors.items():
                    by_region.setdefault(name, []).append(value)
                a, b = box_scores(out[t], gt, masks[t])
                ss.append(a)
                ps.append(b)
            row.update(delta_e=float(np.nanmean(de)), ssim=float(np.mean(ss)), psnr=float(np.mean(ps)),
                       regions={name: float(np.mean(v)) for name, v in by_region.items()},
                       head=[h for h in head if h is not None])
            if pairs:
                frames = [np.clip(o * 255.0, 0, 255) for o in out]
                row["warp_raw"] = relative(warp_error(frames, masks, flow, pairs), real_warp)
                if uv_filtered is not None and variant != "silhouette":
                    fout = renderer.render(variant, uv_filtered, real)
                    fmask = [~np.isnan(u).all(axis=2) & m for u, m in zip(uv_filtered, masks)]
                    frames = [np.clip(o * 255.0, 0, 255) for o in fout]
                    real_f = warp_error(real, fmask, flow, pairs)
                    row["warp_filtered"] = relative(warp_error(frames, fmask, flow, pairs), real_f)
                    if steady > 0:  # what `retarget video` outputs: filtered IUV, then --steady
                        from retarget.pipeline.steady import OutputSteadier

                        steadier = OutputSteadier(steady)
                        sout = [steadier(real[t], fout[t], fmask[t]) for t in range(n)]
                        frames = [np.clip(o * 255.0, 0, 255) for o in sout]
                        row["warp_steady"] = relative(warp_error(frames, fmask, flow, pairs), real_f)
                        gts = [(real[t].astype(np.float32) / 255.0, t) for t in targets]
                        des = [region_delta_e(sout[t], g, parts[t]) for g, t in gts]
                        row["delta_e_steady"] = float(np.nanmean(des))
                        row["ssim_steady"] = float(np.mean([box_scores(sout[t], g, masks[t])[0] for g, t in gts]))
            row["real_warp"] = real_warp
            row["prepare_s"] = renderer.seconds.get("nearest" if variant == "nearest" else "body", 0.0)
            rows.append(row)
            print(line(row), flush=True)
            shown[variant] = (identity, out)
        if pictures is not None and s == 0 and "body" in shown:
            t = targets[-1]  # the frame furthest from the source
            tiles = [(src.image, src_mask)]
            tiles += [(shown[v][0], src_mask) for v in ("texture", "body") if v in shown]
            tiles += [(shown["body"][1][t], masks[t]), (real[t], masks[t])]
            save_picture(pictures, clip.name, tiles)
    return rows


def _person_tile(image: np.ndarray, mask: np.ndarray, height: int) -> np.ndarray:
    """``image`` (uint8 or float in [0, 1]) cut to ``mask``'s box (+4 px) and scaled to ``height`` rows."""
    image = image if image.dtype == np.uint8 else np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    rows, cols = np.nonzero(mask)
    r0, r1 = max(rows.min() - 4, 0), min(rows.max() + 5, mask.shape[0])
    c0, c1 = max(cols.min() - 4, 0), min(cols.max() + 5, mask.shape[1])
    cut = image[r0:r1, c0:c1]
    width = max(1, round(cut.shape[1] * height / cut.shape[0]))
    return cv2.resize(cut, (width, height), interpolation=cv2.INTER_AREA if cut.shape[0] > height else cv2.INTER_CUBIC)


def identity_every_frame(clip: Clip) -> None:
    """Print the ``body`` identity PSNR over the clip with every frame as the source."""
    usable = clip.with_person()
    v = np.array([Renderer(clip.rgb[t], clip.iuv[t], ["body"]).identity("body")[1] for t in usable])
    worst = clip.numbers[usable[int(v.argmin())]]
    print(f"  {clip.name:28s} {len(v):3d} frames  min {v.min():6.2f} dB (frame {worst})  "
          f"p10 {np.percentile(v, 10):6.2f}  mean {v.mean():6.2f}  below 28 dB: {int((v < 28).sum())}", flush=True)


def save_picture(folder: Path, name: str, tiles: list[tuple[np.ndarray, np.ndarray]], height: int = 200) -> None:
    """One PNG: ``(image, mask)`` tiles cut to the person and put side by side with a 4 px white gap."""
    folder.mkdir(parents=True, exist_ok=True)
    cut = [_person_tile(image, mask, height) for image, mask in tiles]
    gap = np.full((height, 4, 3), 255, np.uint8)
    strip = np.concatenate([x for tile in cut for x in (tile, gap)][:-1], axis=1)
    cv2.imwrite(str(folder / (name.replace("/", "_") + ".png")), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def fmt(value) -> str:
    return "   -  " if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:6.2f}"


def line(row: dict) -> str:
    return (f"{row['clip']:<28} src {row['source']:>7} {row['variant']:<10} identity {fmt(row['identity'])} dB  "
            f"dE {fmt(row['delta_e'])}  SSIM {row['ssim']:.3f}  PSNR {fmt(row['psnr'])}  "
            f"warp/real raw {fmt(row.get('warp_raw'))} filtered {fmt(row.get('warp_filtered'))} "
            f"steady {fmt(row.get('warp_steady'))} (dE {fmt(row.get('delta_e_steady'))} "
            f"SSIM {fmt(row.get('ssim_steady'))})  "
            f"(real {fmt(row['real_warp'])})")


def region_table(rows: list[dict], variants: list[str]) -> None:
    """Per clip and variant, the ΔE of every region (mean over sources and targets; ``--regions``)."""
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    print("\nper region ΔE (mean over sources):")
    print(f"{'clip':<28} {'variant':<10} " + " ".join(f"{name:>10}" for name in REGIONS))
    for clip in clips:
        for v in variants:
            sel = [r["regions"] for r in rows if r["clip"] == clip and r["variant"] == v]
            cells = [np.mean([r[name] for r in sel if name in r]) if any(name in r for r in sel) else float("nan")
                     for name in REGIONS]
            print(f"{clip:<28} {v:<10} " + " ".join(f"{c:10.2f}" for c in cells))
    print("\nhead (targets with a head, every source): PSNR dB / SSIM / detail (Laplacian, render ÷ real):")
    for clip in clips:
        for v in variants:
            scores = [h for r in rows if r["clip"] == clip and r["variant"] == v for h in r["head"]]
            if scores:
                p, q, d = np.mean(scores, axis=0)
                print(f"{clip:<28} {v:<10} {p:6.2f} / {q:.3f} / {d:.2f}   ({len(scores)} targets)")


def summary(rows: list[dict], variants: list[str]) -> None:
    keys = ("identity", "delta_e", "ssim", "psnr", "warp_raw", "warp_filtered", "warp_steady", "delta_e_steady",
            "ssim_steady")
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    print("\nper clip (mean over sources):")
    print(f"{'clip':<28} {'variant':<10} {'identity':>8} {'dE':>6} {'SSIM':>6} {'PSNR':>6} {'warp raw':>8} "
          f"{'warp filt':>9} {'steady: warp':>12} {'dE':>6} {'SSIM':>6}")
    for clip in clips:
        for v in variants:
            sel = [r for r in rows if r["clip"] == clip and r["variant"] == v]
            m = {k: float(np.mean([r[k] for r in sel if k in r])) if any(k in r for r in sel) else float("nan")
                 for k in keys}
            print(f"{clip:<28} {v:<10} {m['identity']:8.2f} {m['delta_e']:6.2f} {m['ssim']:6.3f} {m['psnr']:6.2f} "
                  f"{m['warp_raw']:8.2f} {m['warp_filtered']:9.2f} {m['warp_steady']:12.2f} "
                  f"{m['delta_e_steady']:6.2f} {m['ssim_steady']:6.3f}")
    print("\nsummary (mean over clips and sources; identity: min over clips):")
    for v in variants:
        sel = [r for r in rows if r["variant"] == v]
        per_clip_id = [np.mean([r["identity"] for r in sel if r["clip"] == c]) for c in clips]
        m = {k: float(np.mean([r[k] for r in sel if k in r])) if any(k in r for r in sel) else float("nan")
             for k in keys}
        print(f"  {v:<10} identity min {min(per_clip_id):6.2f} dB mean {m['identity']:6.2f}  dE {m['delta_e']:6.2f}  "
              f"SSIM {m['ssim']:.3f}  PSNR {m['psnr']:6.2f}  warp/real raw {m['warp_raw']:.2f} "
              f"filtered {m['warp_filtered']:.2f} (max over clips "
              f"{max(np.mean([r.get('warp_filtered', np.nan) for r in sel if r['clip'] == c]) for c in clips):.2f}); "
              f"steady {m['warp_steady']:.2f} (max over clips "
              f"{max(np.mean([r.get('warp_steady', np.nan) for r in sel if r['clip'] == c]) for c in clips):.2f}) "
              f"dE {m['delta_e_steady']:.2f} SSIM {m['ssim_steady']:.3f}")
    if "body" in variants and "nearest" in variants:
        ratio = [np.mean([r["delta_e"] for r in rows if r["clip"] == c and r["variant"] == "body"]) /
                 np.mean([r["delta_e"] for r in rows if r["clip"] == c and r["variant"] == "nearest"]) for c in clips]
        print(f"  body ΔE / nearest ΔE: mean {np.mean(ratio):.3f}, worst clip {max(ratio):.3f}")


def speed(clip: Clip, repeats: int = 5, batch: int = 16) -> None:
    """Source work per photo and per-frame render rate at 256² (weight-free), as wall and CPU time, best of
    ``repeats``: ``body`` (this renderer), ``texture`` (the colour-texture renderer) and ``nearest``."""
    import os

    import torch

    from retarget.pipeline.pair import render_targets
    from retarget.pipeline.source import frame_source, prepare_source_crop
    from retarget.uvmap.layout import texture_layout

    texture_layout(SIZE, SIZE)  # once per process, not per photo
    first = clip.with_person()[0]
    source = frame_source(clip.rgb[first], iuv=clip.iuv[first], size=SIZE, table=TABLE)
    uv, _ = target_uvs(clip.iuv[:batch] * (batch // len(clip.iuv[:batch]) + 1), clip_crop(clip))
    target = torch.from_numpy(np.ascontiguousarray(uv[:batch])).permute(0, 3, 1, 2)

    def best(fn) -> tuple[float, float]:
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        return min(walls), min(cpus)

    print(f"\nspeed ({clip.name}, 256², load average {os.getloadavg()[0]:.1f}, torch threads "
          f"{torch.get_num_threads()}):")
    for fill in ("body", "nearest"):
        state = prepare_source_crop(source, None, fill=fill)
        wall, cpu = best(lambda: prepare_source_crop(source, None, fill=fill))
        print(f"  prepare_source {fill:<8} {wall:6.3f} s wall {cpu:6.3f} s CPU per photo")
        variants = [("body", state), ("texture", dataclasses.replace(state, seen=None))] if fill == "body" \
            else [("nearest", state)]
        for name, st in variants:
            wall, cpu = best(lambda: render_targets(st, target, None))
            print(f"  render_targets {name:<8} {batch / wall:6.0f} frames/s wall {batch / cpu:6.0f} frames/s CPU "
                  f"(batches of {batch})")


def main() -> None:
    global TABLE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "real")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sources", default="first,middle,last")
    parser.add_argument("--max-targets", type=int, default=None, help="evenly spaced subset of targets per source")
    parser.add_argument("--no-temporal", action="store_true", help="skip the temporal-filter warp error")
    from retarget.pipeline.video import VideoOptions

    parser.add_argument("--temporal-radius", type=int, default=VideoOptions.temporal_radius,
                        help="the filter's radius (frames each side; `retarget video --temporal-strength`, "
                             "default %(default)s)")
    parser.add_argument("--pictures", type=Path, default=None, help="write source/identity/render/real strips here")
    parser.add_argument("--speed", action="store_true", help="also time source work and per-frame rendering")
    parser.add_argument("--regions", action="store_true",
                        help="also print the ΔE of every body region, and the head's PSNR / SSIM / detail")
    from retarget.uvmap import TABLES

    parser.add_argument("--table", default=TABLE, choices=TABLES,
                        help="IUV→UV table (default clean: what the weight-free path uses)")
    parser.add_argument("--identity-every-frame", action="store_true",
                        help="also the body identity PSNR with every frame of every clip as the source")
    parser.add_argument("--steady", type=float, default=0.8,
                        help="`retarget video --steady` applied after the filter (warp error, dE, SSIM); 0: skip")
    args = parser.parse_args()
    TABLE = args.table
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
    sources = [s for s in args.sources.split(",") if s]
    if any(s not in ("first", "middle", "last") for s in sources):
        parser.error("--sources takes first, middle, last")
    folders = find_clips(args.root) + [f for f in args.folders]
    if not folders:
        raise SystemExit(f"error: no clip folders (rgb/ + iuv/) under {args.root} and none given")
    tick = time.perf_counter()
    rows, clips = [], []
    for folder in folders:
        if not ((folder / "rgb").is_dir() and (folder / "iuv").is_dir()):
            raise SystemExit(f"error: {folder}: needs rgb/ and iuv/ subfolders")
        clips.append(load_clip(folder, args.root))
        temporal = 0 if args.no_temporal else args.temporal_radius
        rows += run_clip(clips[-1], variants, sources, args.max_targets, temporal, args.pictures,
                         0.0 if args.no_temporal else args.steady, heads=args.regions)
    summary(rows, variants)
    if args.regions:
        region_table(rows, variants)
    if args.identity_every_frame:
        print("\nidentity (body), every frame as the source:")
        for clip in clips:
            identity_every_frame(clip)
    if args.speed:
        speed(clips[0])
    prep = [r["prepare_s"] for r in rows if r["variant"] == "body"]
    if prep:
        print(f"  prepare_source (body): mean {np.mean(prep):.2f} s, max {max(prep):.2f} s per photo")
    print(f"  {time.perf_counter() - tick:.0f} s wall")


if __name__ == "__main__":
    main()
