"""Source-once / targets-many pipeline on tensors: coordinate texture → inpaint → warp → refine.

:func:`prepare_source` does everything that depends only on the source (coordinate texture,
inpainting or weight-free completion, colour texture, refiner source branch) and returns a
:class:`SourceState` to be reused for any number of targets; :func:`render_targets` handles a batch of
target UV maps. :func:`run_pair` chains both for one photo/pose pair.

All tensors are channel-first; images are RGB float in ``[0, 1]``; UV/xy conventions are those of
:mod:`retarget.ops.coords`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from retarget import ops
from retarget.models import Inpainter, Refiner, SourceFeatures


@dataclass
class Models:
    """The learned networks; either may be ``None`` (weight-free path)."""

    inpainter: Inpainter | None = None
    refiner: Refiner | None = None

    @property
    def learned(self) -> bool:
        return self.inpainter is not None and self.refiner is not None

    def to(self, device: torch.device | str) -> "Models":
        for model in (self.inpainter, self.refiner):
            if model is not None:
                model.to(device)
        return self

    @classmethod
    def from_checkpoint_dir(cls, folder: str | Path, device: str = "cpu") -> "Models":
        """Load ``inpainter.pth`` and ``refiner.pth`` (official format) from a folder."""
        from retarget.models.loading import load_official_inpainter, load_official_refiner

        folder = Path(folder)
        return cls(load_official_inpainter(folder / "inpainter.pth"),
                   load_official_refiner(folder / "refiner.pth")).to(device)

    @classmethod
    def resolve(cls, checkpoint_dir: str | Path | None, device: str = "cpu") -> "Models | None":
        """The models a command runs: from ``checkpoint_dir`` (both files must load), else the installed
        weights, else ``None`` (the weight-free path; one stderr line says so and how to install weights)."""
        from retarget.errors import UsageError
        from retarget.weights import resolve_coordinpaint_checkpoints, warn_weight_free_once

        if checkpoint_dir is not None:
            folder = Path(checkpoint_dir)
            if not folder.is_dir():
                raise UsageError(f"{folder}: --checkpoint-dir is not a folder")
            return cls.from_checkpoint_dir(folder, device)
        paths = resolve_coordinpaint_checkpoints(None)
        if paths is None:
            warn_weight_free_once()
            return None
        from retarget.models.loading import load_official_inpainter, load_official_refiner

        return cls(load_official_inpainter(paths[0]), load_official_refiner(paths[1])).to(device)


@dataclass
class SourceState:
    """Everything derived from the source alone. Tensors have batch size 1.

    Attributes:
        image: ``(1, 3, H, W)`` source RGB in [0, 1].
        uv: ``(1, 2, H, W)`` source UV (u, v), background = -10.
        mask: ``(1, 1, H, W)`` source person mask.
        source_xy_textures: ``(1, 2, Ht, Wt)`` partial coordinate texture (x, y), 0 in holes.
        source_textures: ``(1, 3, Ht, Wt)`` partial colour texture.
        coverage: ``(1, 1, Ht, Wt)`` texels that received source pixels.
        inpainter_input: ``(1, 5, Ht, Wt)`` = [xy texture, coverage, meshgrid].
        inpainter_raw: ``(1, 2, Ht, Wt)`` inpainter output before tanh (learned path only).
        completed_xy: ``(1, 2, Ht, Wt)`` completed coordinate texture (tanh of the inpainter output,
            or the weight-free fill: body-aware or nearest-texel).
        pred_textures: ``(1, 3, Ht, Wt)`` colour texture read from the source through ``completed_xy``.
        refiner_source_input: ``(1, 8, H, W)`` (learned path only).
        refiner_source_features: refiner source branch output (learned path only).
        background_rgb: ``(3,)`` median colour of the source background, for weight-free output.
        photo: ``(1, 3, H, W)`` the source with its person extended over the background
            (:func:`extend_person`), read directly by the weight-free ``body`` renderer; ``None`` elsewhere.
        seen: ``(1, 3, Hs, Ws)`` seen-coordinate texture (:func:`seen_texture`, finer than the texture):
            channels 0-1 where in the photo every texel was seen (x, y); channel 2 its weight, 1 where the
            output is read from the photo there, 0 where it is read from ``pred_textures`` (unseen texels,
            and texels of an edited texture). ``body`` path only.
        seen_leak: ``(1, 1, Hs, Ws)`` bool, the texels of ``seen`` seen through background DensePose took in
            (:func:`retarget.ops.background_leaks`: read from the photo only near the target's silhouette).
            ``body`` path only.
    """

    image: torch.Tensor
    uv: torch.Tensor
    mask: torch.Tensor
    source_xy_textures: torch.Tensor
    source_textures: torch.Tensor
    coverage: torch.Tensor
    inpainter_input: torch.Tensor
    completed_xy: torch.Tensor
    pred_textures: torch.Tensor
    background_rgb: torch.Tensor
    inpainter_raw: torch.Tensor | None = None
    refiner_source_input: torch.Tensor | None = None
    refiner_source_features: SourceFeatures | None = None
    photo: torch.Tensor | None = None
    seen: torch.Tensor | None = None
    seen_leak: torch.Tensor | None = None

    @property
    def learned(self) -> bool:
        return self.refiner_source_features is not None

    @property
    def reads_photo(self) -> bool:
        """Weight-free output read from the photo where the photo saw the body (``fill="body"``)."""
        return self.seen is not None and not self.learned


@dataclass
class TargetBatch:
    """Results for a batch of N target poses.

    Attributes:
        target_uv: ``(N, 2, H, W)`` target UV, background = -10.
        target_mask: ``(N, 1, H, W)``.
        target_xy: ``(N, 2, H, W)`` source coordinates (x, y) of every target pixel (0 off-person).
        pred_img: ``(N, 3, H, W)`` coarse warped image (0 off-person).
        output: ``(N, 3, H, W)`` final crop: refiner output (sigmoid) on the learned path; on the
            weight-free path the coarse image over the source background colour.
        refiner_target_input: ``(N, 10, H, W)`` (learned path only).
        refined: ``(N, 3, H, W)`` refiner output after sigmoid (learned path only).
        alpha: ``(N, 1, H, W)`` what of ``output`` is person, for pasting it into a frame: ``target_mask``
            without the pixels at the target's silhouette that read background DensePose took in from the
            photo (weight-free ``body``: they show the *target's* background, as the photo showed its own
            there); None where that is ``target_mask`` (:attr:`paste_alpha`).
    """

    target_uv: torch.Tensor
    target_mask: torch.Tensor
    target_xy: torch.Tensor
    pred_img: torch.Tensor
    output: torch.Tensor
    refiner_target_input: torch.Tensor | None = None
    refined: torch.Tensor | None = None
    alpha: torch.Tensor | None = None

    @property
    def paste_alpha(self) -> torch.Tensor:
        """``alpha``, or ``target_mask`` where there is none."""
        return self.target_mask if self.alpha is None else self.alpha


#: Smallest side the networks accept: the inpainter's dilation-8 reflect padding runs at 1/4 scale.
MIN_SIDE = 36


def _check_size(height: int, width: int) -> None:
    if height % 4 or width % 4 or min(height, width) < MIN_SIDE:
        raise ValueError(f"image size must be a multiple of 4 and at least {MIN_SIDE} on both sides, "
                         f"got {height}x{width}")


#: Weight-free completions of the coordinate texture: ``body`` (default) and ``nearest`` (the reference's
#: classical baseline, kept for comparison and parity tests).
FILLS = ("body", "nearest")


def check_fill(fill: str) -> str:
    """``fill`` if it names a weight-free completion, else ``ValueError``."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    return fill


def extend_person(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image with every background pixel replaced by the nearest person pixel's colour.

    Sampling it bilinearly at a coordinate on (or just off) the person's edge then never mixes in the
    background, so the body fill's colour texture has no dark or light fringe.

    Args:
        image: ``(1, C, H, W)``; mask: ``(1, 1, H, W)`` person mask in {0, 1}.
    """
    return ops.nearest_fill(image, mask) if bool((mask > 0.5).any()) else image * mask


#: Pixels within this distance of another DensePose part (or the background), at the pipeline's
#: 256-pixel crop and scaled with the image, are not copied to other body parts by the body fill: their
#: part label is the least certain (an arm's border often holds torso or background pixels).
PART_BORDER_MARGIN = 1.0


def pixel_parts(uv: torch.Tensor, mask: torch.Tensor, layout) -> np.ndarray:
    """``(H, W) int64`` the DensePose part of every person pixel, read from ``layout`` at its UV; 0 off the person.

    Args:
        uv: ``(1, 2, H, W)`` UV with background ``-10``; mask: ``(1, 1, H, W)`` person mask;
        layout: :class:`retarget.uvmap.layout.TextureLayout`.
    """
    from retarget.uvmap.layout import texel_coords

    th, tw = layout.shape
    row, col = texel_coords(uv[0].permute(1, 2, 0).detach().cpu().float().numpy(), th, tw)
    row = np.clip(np.rint(row), 0, th - 1).astype(np.int64)
    col = np.clip(np.rint(col), 0, tw - 1).astype(np.int64)
    return np.where(mask[0, 0].detach().cpu().numpy() > 0.5, layout.part[row, col], 0)


def inside_part_pixels(uv: torch.Tensor, mask: torch.Tensor, layout) -> tuple[np.ndarray, np.ndarray]:
    """``(part, inside)``: the :func:`pixel_parts` of every pixel and ``(H, W) bool`` the person pixels with no
    other part (nor background) within :data:`PART_BORDER_MARGIN` (scaled to the image size)."""
    from scipy import ndimage

    part = pixel_parts(uv, mask, layout)
    size = 2 * int(np.ceil(PART_BORDER_MARGIN * max(part.shape) / 256.0)) + 1
    inside = (part > 0) & (ndimage.maximum_filter(part, size) == part) & (ndimage.minimum_filter(part, size) == part)
    return part, inside


def copyable_texels(uv: torch.Tensor, mask: torch.Tensor, layout) -> torch.Tensor:
    """Texels splatted mostly from pixels inside their part, away from part borders and the silhouette.

    Each person pixel's part is read from ``layout`` at its UV; a pixel is on a border when a pixel within
    :data:`PART_BORDER_MARGIN` (scaled to the image size) has another part or is background
    (:func:`inside_part_pixels`).

    Args:
        uv: ``(1, 2, H, W)`` UV with background ``-10``; mask: ``(1, 1, H, W)`` person mask;
        layout: :class:`retarget.uvmap.layout.TextureLayout` of the texture.

    Returns:
        ``(1, 1, Ht, Wt)`` bool.
    """
    return _mostly_from(inside_part_pixels(uv, mask, layout)[1], uv, layout)


def _mostly_from(pixels: np.ndarray | torch.Tensor, uv: torch.Tensor, layout) -> torch.Tensor:
    """``(1, 1, Ht, Wt)`` bool: covered texels whose splat came at least half from ``pixels`` (``(H, W)`` bool)."""
    indicator = torch.as_tensor(pixels, device=uv.device).to(uv.dtype).reshape(1, 1, *uv.shape[-2:])
    fraction, covered = ops.inverse_grid_sample(indicator, uv, layout.shape)
    return (fraction >= 0.5) & (covered > 0.5)


def fill_sampling_gaps(xy_texture: torch.Tensor, coverage: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, layout
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The splatted coordinate texture with the gaps between its splats filled where the photo saw the body.

    Where the texture is finer than the photo (a face of 30 pixels across on a head chart of 100 texels,
    hands, any small part), the splats of :func:`retarget.ops.inverse_grid_sample` form a sparse lattice:
    the stray-splat test of the body fill then drops most of them, and the counterpart copies that fill the
    gaps speckle the face with the other side of the head. The photo saw those texels all the same: the
    photo's pixel grid, placed at its UVs (:func:`retarget.ops.rasterize_to_texture`, triangles within one
    part and at most :data:`retarget.ops.raster.MAX_EDGE` texels long), gives their coordinates by
    interpolation. Splatted texels keep their value.

    Args:
        xy_texture: ``(1, 2, Ht, Wt)`` splatted coordinates of ``uv``; coverage: ``(1, 1, Ht, Wt)`` (covered
        ``> 0.5``); uv: ``(1, 2, H, W)`` UV with background ``-10``; mask: ``(1, 1, H, W)``;
        layout: :class:`retarget.uvmap.layout.TextureLayout`.

    Returns:
        ``(xy, coverage, trusted)``: the gap texels added to ``xy_texture`` and ``coverage``, and the texels the
        body fill may copy elsewhere (``(1, 1, Ht, Wt)`` bool): :func:`copyable_texels`, and the gap texels whose
        triangle's corners are mostly inside their part (:func:`inside_part_pixels`).
    """
    th, tw = layout.shape
    h, w = uv.shape[2:]
    part, inside = inside_part_pixels(uv, mask, layout)
    values = torch.cat([ops.batched_meshgrid(1, h, w, like=xy_texture),
                        torch.as_tensor(inside, dtype=xy_texture.dtype, device=xy_texture.device)[None, None]], 1)
    raster, covered = ops.rasterize_to_texture(values, uv, mask, (th, tw), part)
    gap = covered & ~(coverage > 0.5)
    xy = torch.where(gap, raster[:, :2], xy_texture)
    trusted = _mostly_from(inside, uv, layout) | (gap & (raster[:, 2:] >= 0.5))
    return xy, torch.where(gap, torch.ones_like(coverage), coverage), trusted


def refill_leaks(done: ops.BodyCompletion, leak: torch.Tensor, uv: torch.Tensor, layout, part: np.ndarray
                 ) -> ops.BodyCompletion:
    """The completion with the texels that would show background DensePose took in refilled.

    Two kinds of texel would show the wall behind the person wherever the target pose puts them:

    - a covered texel whose splat came mostly (≥ half) from pixels of ``leak`` (the photo saw that texel only
      through such pixels);
    - a texel of any kind whose coordinate points at a pixel of ``leak`` *of the texel's own part*: a texel
      the fill gave its part's nearest seen coordinate (:func:`retarget.ops.part_nearest_fill`), which at the
      edge of what the photo saw is often such a pixel (a thin forearm against a white studio wall, seen
      from the front, streaks the wall over its unseen back). Texels filled from *another* part keep their
      coordinate: next to a limb hidden behind the body, its neighbour's edge is the best evidence there is.

    Each takes the coordinate of the nearest texel of its own part that is neither
    (:func:`retarget.ops.part_nearest_fill`). The rest of the completion — which texels count as seen, what is
    copied where — is left as it is. The renderer reads the flagged texels from the photo only at the target's
    silhouette (``SourceState.seen_leak``) and leaves those pixels to the target's background
    (:attr:`TargetBatch.paste_alpha`).

    Args:
        done: :func:`retarget.ops.body_completion` of the photo; leak: ``(1, 1, H, W)`` bool
            (:func:`retarget.ops.background_leaks`); uv: ``(1, 2, H, W)`` UV, background ``-10``;
            layout: the texture's :class:`retarget.uvmap.layout.TextureLayout`; part: ``(H, W)`` the
            :func:`pixel_parts` of the photo.
    """
    import torch.nn.functional as F

    from retarget.uvmap.symmetry import N_PARTS

    if not bool(leak.any()):
        return done
    labels = torch.as_tensor(layout.part, device=uv.device)
    grid = done.xy.permute(0, 2, 3, 1).to(uv.dtype)  # (x, y) in [-1, 1], the pixel centres at ±1
    leak_part = torch.as_tensor(part, device=uv.device) * leak[0, 0]  # the part of each flagged pixel, else 0
    read = F.grid_sample(leak_part.to(uv.dtype)[None, None], grid, mode="nearest", padding_mode="border",
                         align_corners=True).round().long()  # the flagged part each texel's coordinate reads
    leaky = _mostly_from(leak, uv, layout) | ((read == labels) & (labels > 0))
    if not bool(leaky.any()):
        return done
    touched = torch.unique(labels[leaky[0, 0]])
    labels = torch.where(torch.isin(labels, touched), labels, torch.zeros_like(labels))  # only those parts
    refilled, _ = ops.part_nearest_fill(done.xy, ~leaky & (labels > 0)[None, None], labels, N_PARTS)
    return dataclasses.replace(done, xy=torch.where(leaky, refilled, done.xy))


#: The seen-coordinate texture of the weight-free ``body`` renderer is this many times finer than the
#: texture (1024² for the default 256² crop), so that the photo's pixels land in texels of their own ...
SEEN_SCALE = 4
#: ... but not larger than this on a side (memory and source time at large ``--size``).
SEEN_MAX_SIDE = 2048
#: A texel is read from the photo when a pixel's UV lies within this many texels *of the texture*
#: (``SEEN_RADIUS * scale`` texels of the finer one) and that pixel's part is the texel's part.
SEEN_RADIUS = 1.5


def seen_texture(uv: torch.Tensor, mask: torch.Tensor, layout, leak: torch.Tensor, part: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the photo saw every texel, at :data:`SEEN_SCALE` times the texture's resolution.

    Built with :func:`retarget.ops.photo.nearest_splat` from every person pixel's own (x, y): a texel that a
    pixel's UV falls in holds that pixel's coordinate, never an average of several. Between the pixels (the
    texels no pixel owns) the photo's pixel grid placed at its UVs (:func:`retarget.ops.rasterize_to_texture`,
    triangles within one part, edges of at most :data:`retarget.ops.raster.MAX_EDGE` texels of the texture)
    gives the interpolated coordinate, so that a part larger in the texture than in the photo is read
    smoothly instead of pixel by pixel; texels no triangle of their part covers keep the nearest pixel's.

    Args:
        uv: ``(1, 2, H, W)`` source UV, background ``-10``; mask: ``(1, 1, H, W)`` person mask;
        layout: :class:`retarget.uvmap.layout.TextureLayout` of the texture (``(Ht, Wt)``);
        leak: ``(1, 1, H, W)`` bool, pixels that show background DensePose took in
            (:func:`retarget.ops.background_leaks`); part: ``(H, W)`` the :func:`pixel_parts` of the photo.

    Returns:
        ``(seen, flags)``: ``(1, 3, s·Ht, s·Wt)`` coordinates (x, y) in the photo, then a weight: 1 where a
        person pixel of the texel's own part lies within :data:`SEEN_RADIUS` texels of the texture or a
        triangle of its part covers it, else 0; ``(1, 1, s·Ht, s·Wt)`` bool, the texels whose pixel (or,
        between pixels, the triangle's corners, interpolated, above one half) is in ``leak``.
    """
    from retarget.ops.raster import MAX_EDGE

    th, tw = layout.shape
    scale = max(1, min(SEEN_SCALE, SEEN_MAX_SIDE // max(th, tw)))
    h, w = uv.shape[2:]
    grid = torch.cat([ops.batched_meshgrid(1, h, w, like=uv), leak.to(uv)], 1)
    xy, distance, owner = ops.nearest_splat(grid, uv, mask, (th * scale, tw * scale))
    texel_part = np.repeat(np.repeat(layout.part, scale, axis=0), scale, axis=1)
    owner_part = part.reshape(-1)[owner[0, 0].cpu().numpy().clip(0)]
    same = torch.from_numpy((owner_part == texel_part) & (texel_part > 0)).to(uv.device)[None, None]
    weight = ((distance <= SEEN_RADIUS * scale) & same).to(uv.dtype)
    labels = torch.as_tensor(part, dtype=uv.dtype, device=uv.device)[None, None]
    drawn, covered = ops.rasterize_to_texture(torch.cat([grid, labels], 1), uv, mask, (th * scale, tw * scale), part,
                                              max_edge=MAX_EDGE * scale, offset=0.5)
    texel_label = torch.from_numpy(texel_part).to(uv)[None, None]
    between = covered & (distance > 0) & (texel_label > 0) & ((drawn[:, -1:] - texel_label).abs() < 0.5)
    xy = torch.where(between, drawn[:, :-1], xy)
    weight = torch.where(between, torch.ones_like(weight), weight)
    return torch.cat([xy[:, :2], weight], dim=1), xy[:, 2:3] > 0.5


@torch.no_grad()
def prepare_source(image: torch.Tensor, uv: torch.Tensor, models: Models | None = None,
                   texture_hw: tuple[int, int] | None = None, fill: str = "body") -> SourceState:
    """Do the source-only work once.

    Args:
        image: ``(1, 3, H, W)`` RGB in [0, 1].
        uv: ``(1, 2, H, W)`` source UV with NaN background.
        models: learned networks; without both of them the weight-free path runs (``fill``
            completion, no refiner).
        texture_hw: texture size; defaults to the image size (what the official weights expect).
        fill: weight-free completion, ``body`` (:func:`retarget.ops.body_fill`, colours read from the
            photo with its person extended over the background) or ``nearest`` (the reference's classical
            nearest-texel fill, colours read from the photo with a zero background). Ignored on the
            learned path.
    """
    check_fill(fill)
    if image.dim() != 4 or image.shape[:1] != (1,) or image.shape[1] != 3:
        raise ValueError(f"source image must be (1, 3, H, W), got {tuple(image.shape)}")
    if uv.shape[0] != 1 or uv.shape[2:] != image.shape[2:]:
        raise ValueError(f"source UV {tuple(uv.shape)} does not match the source image {tuple(image.shape)}")
    _, _, h, w = image.shape
    _check_size(h, w)
    th, tw = texture_hw or (h, w)
    uv, mask = ops.split_uv_mask(uv)
    image_grid = ops.batched_meshgrid(1, h, w, like=image)
    texture_grid = ops.batched_meshgrid(1, th, tw, like=image)

    xy_texture, coverage = ops.inverse_grid_sample(image_grid, uv, (th, tw))
    source_fg = image * mask
    colour_texture, _ = ops.inverse_grid_sample(source_fg, uv, (th, tw))
    inpainter_input = torch.cat([xy_texture, coverage, texture_grid], dim=1)

    learned = models is not None and models.learned
    inpainter_raw = None
    if learned:
        inpainter_raw = models.inpainter(inpainter_input)
        completed = torch.tanh(inpainter_raw)
        pred_textures = ops.colour_texture_from_source(source_fg, completed)
    elif fill == "nearest":
        completed = ops.nearest_fill(xy_texture, coverage)
        pred_textures = ops.colour_texture_from_source(source_fg, completed)
    else:
        from retarget.uvmap.layout import texture_layout

        layout = texture_layout(th, tw)
        extended = extend_person(image, mask)
        part = pixel_parts(uv, mask, layout)
        leak = ops.background_leaks(image, mask, part)
        body_xy, body_coverage, trusted = fill_sampling_gaps(xy_texture, coverage, uv, mask, layout)
        done = ops.body_completion(body_xy, body_coverage, layout, trusted=trusted, colours=extended)
        done = refill_leaks(done, leak, uv, layout, part)
        completed = done.xy
        pred_textures = ops.body_colour_texture(extended, done, torch.as_tensor(layout.part, device=image.device))
        seen, seen_leak = seen_texture(uv, mask, layout, leak, part)

    background = image[0].flatten(1)[:, mask[0, 0].flatten() < 0.5]
    background_rgb = background.median(dim=1).values if background.shape[1] else image.new_ones(3)

    state = SourceState(image=image, uv=uv, mask=mask, source_xy_textures=xy_texture,
                        source_textures=colour_texture, coverage=coverage, inpainter_input=inpainter_input,
                        completed_xy=completed, pred_textures=pred_textures, background_rgb=background_rgb,
                        inpainter_raw=inpainter_raw)
    if not learned and fill == "body":
        state.photo, state.seen, state.seen_leak = extended, seen, seen_leak
    if learned:
        state.refiner_source_input = torch.cat([image, uv, mask, image_grid], dim=1)
        state.refiner_source_features = models.refiner.encode_source(state.refiner_source_input)
    return state


@torch.no_grad()
def render_targets(state: SourceState, target_uv: torch.Tensor, models: Models | None = None) -> TargetBatch:
    """Warp (and refine) the source into a batch of target poses.

    Args:
        state: from :func:`prepare_source`.
        target_uv: ``(N, 2, H, W)`` target UV with NaN background, same ``H, W`` as the source.
        models: must hold the refiner when ``state`` was prepared on the learned path.
    """
    if target_uv.dim() != 4 or target_uv.shape[1] != 2 or target_uv.shape[2:] != state.image.shape[2:]:
        raise ValueError(f"target UV must be (N, 2, {state.image.shape[2]}, {state.image.shape[3]}), "
                         f"got {tuple(target_uv.shape)}")
    n, _, h, w = target_uv.shape
    uv, mask = ops.split_uv_mask(target_uv.to(state.image.dtype))
    completed = state.completed_xy.expand(n, -1, -1, -1)
    if state.reads_photo:
        pred_img, target_xy, wall = _render_from_photo(state, uv, mask)
        alpha = mask if wall is None else mask * (~wall).to(mask.dtype)
        output = pred_img * alpha + state.background_rgb.view(1, 3, 1, 1) * (1 - alpha)
        return TargetBatch(target_uv=uv, target_mask=mask, target_xy=target_xy, pred_img=pred_img, output=output,
                           alpha=None if wall is None else alpha)
    pred_img = ops.render_target(state.pred_textures.expand(n, -1, -1, -1), uv, mask)

    if not state.learned:
        output = pred_img + state.background_rgb.view(1, 3, 1, 1) * (1 - mask)
        return TargetBatch(target_uv=uv, target_mask=mask, target_xy=ops.coordinates_to_target(completed, uv, mask),
                           pred_img=pred_img, output=output)

    if models is None or models.refiner is None:
        raise ValueError("the source was prepared with learned models; pass the same models here")
    target_xy = ops.coordinates_to_target(completed, uv, mask)
    grid = ops.batched_meshgrid(n, h, w, like=pred_img)
    target_input = torch.cat([pred_img, uv, mask, target_xy, grid], dim=1)
    refined = torch.sigmoid(models.refiner.decode(state.refiner_source_features, target_input, target_xy, mask))
    return TargetBatch(target_uv=uv, target_mask=mask, target_xy=target_xy, pred_img=pred_img, output=refined,
                       refiner_target_input=target_input, refined=refined)


#: Seam smoothing of the weight-free render (:class:`retarget.ops.SeamSmoothing`, :func:`retarget.ops.smooth_seams`):
#: output pixels next to a neighbour whose source coordinate lies more than 3 photo pixels away (a part border
#: of the target's DensePose that is not where the photo's was, a copy meeting the seen body, a fill's streak),
#: grown by 1 pixel, move to a Gaussian of 1 pixel over the person: all the way where they read the photo, half
#: way where they read the colour texture. Chosen on the tuning split of ``bench/quality.py``, ``bench/real.py``
#: and the look of a back view filled from a striped front (docs/weight_free.md, "Seams of the render").
SEAMS = ops.SeamSmoothing(jump_px=3.0, sigma=1.0, grow=1, texture_strength=0.5)

#: The seen-coordinate texture is read bilinearly, except where the bilinear and the nearest texel's
#: coordinates differ by more than this many photo pixels: there the texels around the sample point were
#: seen at places of the photo far apart (a fold, a part border), and a blend would point between them.
SEEN_FOLD_PX = 1.0


def _render_from_photo(state: SourceState, uv: torch.Tensor, mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The weight-free ``body`` coarse image and ``target_xy`` of target UVs ``uv`` (``(N, 2, H, W)``, background
    ``-10``) with person mask ``mask`` (``(N, 1, H, W)``, :func:`retarget.ops.split_uv_mask`).

    Where the photo saw the texel (the weight of ``seen``, sampled bilinearly: a soft edge), the pixel is read
    from the photo at the seen coordinate (:func:`retarget.ops.render_from_photo`, :data:`SEEN_FOLD_PX`);
    elsewhere from the colour texture, as before (``target_xy`` there: the completed coordinate texture's).
    Texels seen only through background DensePose took in are read from the photo by target pixels near the
    target's silhouette only (:func:`retarget.ops.near_silhouette`), elsewhere from the colour texture; the
    third output marks those rim pixels (``(N, 1, H, W)`` bool; None without leak flags): they show background,
    and :func:`render_targets` leaves them out of the person's ``alpha``. The photo is read at source coordinates
    despeckled by a 3 × 3 median (``despeckle`` of :func:`retarget.ops.render_from_photo`: DensePose's per-pixel
    UV jitter would otherwise read a fine pattern a few pixels off here and there), and the image is softened
    at its coordinate seams (:data:`SEAMS`).
    """
    textures = torch.cat([state.pred_textures, state.completed_xy], dim=1)
    rim = ops.near_silhouette(mask) if state.seen_leak is not None else None
    return ops.render_from_photo(state.photo, state.seen, textures, uv,
                                 SEEN_FOLD_PX * 2.0 / (max(state.image.shape[-2:]) - 1), leak=state.seen_leak, rim=rim,
                                 seams=SEAMS, despeckle=True)


@dataclass
class PairResult:
    """One source/target pair with every stage (see :func:`stage_arrays`)."""

    source: SourceState
    target: TargetBatch


def run_pair(source_image: np.ndarray, source_uv: np.ndarray, target_uv: np.ndarray,
             models: Models | None = None, device: str = "cpu", fill: str = "body") -> PairResult:
    """Python API for one pair of numpy arrays.

    Args:
        source_image: ``(H, W, 3)`` RGB, float in [0, 1] or uint8.
        source_uv: ``(H, W, 2)`` UV, NaN background.
        target_uv: ``(H, W, 2)`` or ``(N, H, W, 2)`` UV, NaN background.
        models: learned networks or ``None`` for the weight-free path.
        device: torch device.
        fill: weight-free completion (``body`` or ``nearest``, see :func:`prepare_source`).
    """
    image = np.asarray(source_image)
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
    source_uv_t = torch.from_numpy(np.ascontiguousarray(source_uv, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    target = np.asarray(target_uv, dtype=np.float32)
    target = target[None] if target.ndim == 3 else target
    target_t = torch.from_numpy(np.ascontiguousarray(target)).permute(0, 3, 1, 2).to(device)
    state = prepare_source(image_t, source_uv_t, models, fill=fill)
    return PairResult(state, render_targets(state, target_t, models))


#: Stage names as in the reference fixture (``expected.npz``), and where each lives.
_SOURCE_STAGES = {
    "inpainter_input": "inpainter_input",
    "inpainter_raw": "inpainter_raw",
    "source_xy_textures": "source_xy_textures",
    "source_textures": "source_textures",
    "pred_textures": "pred_textures",
    "refiner_source_input": "refiner_source_input",
}
_TARGET_STAGES = {
    "pred_img": "pred_img",
    "target_xy": "target_xy",
    "target_mask": "target_mask",
    "refiner_target_input": "refiner_target_input",
    "refined": "refined",
}


def stage_arrays(result: PairResult, index: int = 0) -> dict[str, np.ndarray]:
    """The stages that ran, as float32 channel-first arrays without batch dim, under reference names.

    Learned path: every key of the reference ``expected.npz`` except ``classical_*``. Weight-free path:
    ``inpainter_input``, ``source_xy_textures``, ``source_textures``, ``target_mask``, and
    ``pred_textures`` / ``pred_img`` computed from the weight-free completion (with ``fill="nearest"``
    they correspond to the reference's ``classical_pred_textures`` / ``classical_pred_img``; with ``body``
    ``pred_img`` is read from the photo where the photo saw the body); ``target_xy`` is only a
    stage of the learned path (the refiner's warp field) and is not dumped here.
    """
    out: dict[str, np.ndarray] = {}
    source, target = result.source, result.target
    for name, attr in _SOURCE_STAGES.items():
        value = getattr(source, attr)
        if value is not None:
            out[name] = value[0].detach().cpu().float().numpy()
    if source.learned:
        out["inpainted_xy"] = source.completed_xy[0].detach().cpu().float().numpy()
    for name, attr in _TARGET_STAGES.items():
        value = getattr(target, attr)
        if value is None or (name == "target_xy" and not source.learned):
            continue
        out[name] = value[index].detach().cpu().float().numpy()
    return out


__all__ = [
    "FILLS", "Models", "PairResult", "SourceState", "TargetBatch", "prepare_source", "render_targets", "run_pair",
    "stage_arrays",
]
