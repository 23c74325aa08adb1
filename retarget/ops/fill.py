"""Weight-free completion of a coordinate texture (used when no inpainter weights are installed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from retarget.ops.filters import gaussian_kernel, separable_filter


def nearest_fill(texture: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """Give every uncovered texel the value of the nearest covered texel (exact Euclidean distance).

    Nearest neighbours and tie-breaking are those of
    ``scipy.ndimage.distance_transform_edt(~covered, return_indices=True)``.

    Args:
        texture: ``(N, C, H, W)`` partial texture, e.g. a coordinate texture with channels (x, y) in
            ``[-1, 1]``.
        coverage: ``(N, 1, H, W)`` coverage mask; a texel is covered where ``coverage > 0.5``.

    Returns:
        ``(N, C, H, W)`` completed texture on ``texture``'s device and dtype. Covered texels keep their
        value; a batch item without any covered texel is returned unchanged.
    """
    if texture.dim() != 4 or coverage.dim() != 4 or coverage.shape[1] != 1:
        raise ValueError(f"expected texture (N,C,H,W) and coverage (N,1,H,W), got "
                         f"{tuple(texture.shape)}, {tuple(coverage.shape)}")
    values = texture.detach().cpu().numpy()
    covered = coverage.detach().cpu().numpy()[:, 0] > 0.5
    out = values.copy()
    for i in range(values.shape[0]):  # one distance transform per texture (vectorised inside scipy)
        if not covered[i].any() or covered[i].all():
            continue
        rows, cols = ndimage.distance_transform_edt(~covered[i], return_distances=False, return_indices=True)
        out[i] = values[i][:, rows, cols]
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=texture.device, dtype=texture.dtype)


def part_nearest_fill(values: torch.Tensor, known: torch.Tensor, labels: torch.Tensor, n_labels: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every unknown texel of a label the value of the nearest known texel *of the same label*.

    Unlike an average (e.g. a push-pull fill), every filled value is one of the label's known values: a
    coordinate texture filled this way only points at places its known texels point at (averaging the
    coordinates of two distant places of a photo points between them, at whatever lies there).
    Nearest neighbours and ties as in ``scipy.ndimage.distance_transform_edt``, per label's bounding box.

    Args:
        values: ``(N, C, H, W)`` float values; known: ``(N, 1, H, W)`` bool;
        labels: ``(H, W)`` int64 label per texel in ``0 .. n_labels`` (label 0 is never filled);
        n_labels: number of labels.

    Returns:
        ``(filled, valid)``: ``filled`` ``(N, C, H, W)`` with every texel of a label that has a known texel
        filled (other texels unchanged); ``valid`` ``(N, 1, H, W)`` bool, texels that now hold a value.
    """
    vals = values.detach().cpu().numpy().copy()
    kn = known.detach().cpu().numpy()[:, 0].astype(bool)
    lab = labels.detach().cpu().numpy()
    valid = kn.copy()
    for p in range(1, n_labels + 1):
        where = lab == p
        if not where.any():
            continue
        rows, cols = np.nonzero(where)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        inside = where[box]
        for i in range(vals.shape[0]):
            seed = kn[i][box] & inside
            if not seed.any():
                continue
            r, c = ndimage.distance_transform_edt(~seed, return_distances=False, return_indices=True)
            sub = vals[i][(slice(None),) + box]
            sub[:, inside] = sub[:, r, c][:, inside]
            vals[i][(slice(None),) + box] = sub
            valid[i][box] |= inside
    return (torch.from_numpy(vals).to(values.device, values.dtype),
            torch.from_numpy(valid[:, None]).to(known.device))


def surface_nearest_fill(values: torch.Tensor, known: torch.Tensor, layout) -> tuple[torch.Tensor, torch.Tensor]:
    """Give every unknown body texel the value of the known texel nearest to it *on the body surface*.

    Distances are shortest paths on ``layout.surface`` (:func:`retarget.uvmap.layout.surface_graph`): a
    hole in a thigh is filled from the hip above it and the knee below it, whichever is nearer, however
    the texture's islands are laid out. Like :func:`part_nearest_fill`, every filled value is one of the
    known values (coordinates are never averaged). Ties as ``scipy.sparse.csgraph.dijkstra`` breaks them.

    Args:
        values: ``(N, C, Ht, Wt)``; known: ``(N, 1, Ht, Wt)`` bool, texels that keep their value; layout:
            :class:`retarget.uvmap.layout.TextureLayout` of an ``(Ht, Wt)`` texture.

    Returns:
        ``(filled, valid)``: ``filled`` with every unknown body texel that a known body texel reaches on
        the surface filled (others unchanged); ``valid`` ``(N, 1, Ht, Wt)`` bool, texels that now hold a value.
    """
    from scipy.sparse.csgraph import dijkstra

    n, c, h, w = values.shape
    vals = values.detach().cpu().numpy().reshape(n, c, h * w).copy()
    kn = known.detach().cpu().numpy().reshape(n, h * w).astype(bool)
    body = layout.part.reshape(-1) > 0
    valid = kn.copy()
    for i in range(n):
        seeds = np.nonzero(kn[i] & body)[0]
        if not len(seeds):
            continue
        _, _, nearest = dijkstra(layout.surface, directed=True, indices=seeds, min_only=True,
                                 return_predecessors=True)
        reach = body & ~kn[i] & (nearest >= 0)
        vals[i][:, reach] = vals[i][:, nearest[reach]]
        valid[i] |= reach
    return (torch.from_numpy(vals.reshape(n, c, h, w)).to(values.device, values.dtype),
            torch.from_numpy(valid.reshape(n, 1, h, w)).to(known.device))


def gather_counterparts(values: torch.Tensor, known: torch.Tensor, labels: torch.Tensor, other: torch.Tensor,
                        taps: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read, for every texel, the value of its counterpart texel (bilinear over known taps of the right label).

    Args:
        values: ``(N, C, H, W)`` values; ``known``: ``(N, 1, H, W)`` bool, texels that hold one.
        labels: ``(H, W)`` int64 label per texel.
        other: ``(H*W,)`` int64 label the counterpart must have (0: no counterpart).
        taps: ``(H*W, 4)`` int64 flat indices of the counterpart's bilinear taps.
        weights: ``(H*W, 4)`` float bilinear weights of the taps.

    Returns:
        ``(read, ok)``: ``read`` ``(N, C, H, W)``, the weight-normalised average over taps that are known
        and carry label ``other``; ``ok`` ``(N, 1, H, W)`` bool where those taps hold at least half of the
        bilinear weight.
    """
    n, c, h, w = values.shape
    flat = values.reshape(n, c, h * w)
    tap_known = known.reshape(n, h * w)[:, taps] & (labels.reshape(-1)[taps] == other[:, None])[None]
    wt = weights[None].to(values.dtype) * tap_known.to(values.dtype)  # (N, HW, 4)
    total = wt.sum(-1)
    read = (flat[:, :, taps] * wt[:, None]).sum(-1) / total.clamp(min=1e-8)[:, None]
    ok = (total >= 0.5) & (other > 0)[None]
    return read.reshape(n, c, h, w), ok.reshape(n, 1, h, w)


def reliable_coverage(values: torch.Tensor, covered: torch.Tensor, labels: torch.Tensor, *,
                      radius: int | None = None, min_fraction: float = 0.45, max_jump: float = 0.08) -> torch.Tensor:
    """Covered texels that agree with their surroundings (drops the stray splats of a coordinate texture).

    A DensePose pixel on a mesh face that crosses a texture seam gets a UV interpolated across the atlas
    and lands in the middle of another island, alone or in thin lines. A covered texel is kept only if
    at least ``min_fraction`` of the texels of its label in the surrounding ``(2·radius+1)²`` window are
    covered (thin lines and specks fail) and its value lies within ``max_jump`` (in the values' units,
    e.g. normalised image coordinates) of their mean. ``radius`` defaults to 2 texels at 256², scaled with the
    texture's width (:func:`texture_scale`: 4 at 512²), so that the test sees the same patch of the body.

    Args:
        values: ``(N, C, H, W)``; covered: ``(N, 1, H, W)`` bool; labels: ``(H, W)`` int64 part per texel
        (texels of label 0, off the body, are not tested: kept where covered).

    Returns:
        ``(N, 1, H, W)`` bool. Window sums per label (:func:`~retarget.ops.filters.separable_filter` over
        :func:`_label_box`), so the cost does not grow with the window's area.
    """
    n = values.shape[0]
    radius = max(2, round(2 * texture_scale(labels))) if radius is None else radius
    keep = covered.clone()  # texels off the body (label 0) are not tested
    labels = labels.to(values.device)
    for p in labels.unique().tolist():
        if p == 0:
            continue
        box = _label_box(labels, p, radius)
        mine = (labels[box] == p)[None, None].expand(n, 1, -1, -1)
        cov = covered[(..., *box)] & mine
        weight = cov.to(values.dtype)
        sums = separable_filter(torch.cat([mine.to(values.dtype), weight, values[(..., *box)] * weight], 1),
                                values.new_ones(2 * radius + 1))  # window sums
        fraction = sums[:, 1:2] / sums[:, :1].clamp(min=1)
        mean = sums[:, 2:] / sums[:, 1:2].clamp(min=1)
        jump = (values[(..., *box)] - mean).abs().amax(1, keepdim=True)
        keep[(..., *box)] = torch.where(mine, cov & (fraction >= min_fraction) & (jump <= max_jump),
                                        keep[(..., *box)])
    return keep


def _label_box(labels: torch.Tensor, p: int, radius: int) -> tuple[slice, slice]:
    """The bounding box of label ``p`` in ``labels`` ``(H, W)``, grown by ``radius`` (clipped to the texture): a
    window of that radius around any texel of the label lies inside it."""
    h, w = labels.shape[-2:]
    rows, cols = torch.nonzero(labels == p, as_tuple=True)
    return (slice(max(int(rows.min()) - radius, 0), min(int(rows.max()) + radius + 1, h)),
            slice(max(int(cols.min()) - radius, 0), min(int(cols.max()) + radius + 1, w)))


def _colour_at(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """``(N, C, Ht, Wt)`` colours of ``image`` ``(N, C, H, W)`` at the coordinates ``xy`` ``(N, 2, Ht, Wt)``."""
    import torch.nn.functional as F

    return F.grid_sample(image.to(xy.dtype), xy.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=False)


#: A mirrored limb whose copy differs from the seen next segment of the same limb by more than this colour
#: step (Euclidean RGB distance in [0, 1], averaged along their seam) does not continue that limb (other
#: lighting, or DensePose's mask of the mirror took in hair, dress or background): the limb is filled from
#: its seen next segment instead. 0.2 is a clearly visible step (e.g. 0.115 on every channel).
SEAM_COLOUR_STEP = 0.2
#: The seam test compares the copied texels within this chart distance of the closest compared texel.
SEAM_BAND = 0.1
#: Fewer compared texels than this (at 256², scaled with the texture's area): no evidence, the mirror copy is kept.
MIN_SEAM_TEXELS = 8


def choose_limb_sources(values: torch.Tensor, known: torch.Tensor, covered: torch.Tensor, source: torch.Tensor,
                        layout, colours: torch.Tensor | None, gains: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """Per limb part, keep the counterpart copies or drop them (the part is then filled over the body surface
    from its seen neighbours, :func:`surface_nearest_fill`).

    ``layout``'s ``along_limb@d`` relations read, for every texel of a limb part, the row of the adjacent
    segment of the same limb (upper ↔ lower arm or leg) at chart distance ``d`` from their shared seam,
    at the same position around the limb: the nearest seen row wins. That segment has the limb's own
    lighting and usually its material. A limb part drops its counterpart copies when that segment is seen
    and

    - it received fewer than :data:`MIN_PART_SEED` counterpart copies, or
    - near the seam, the copied coordinates' colours differ from the adjacent segment's by more than
      :data:`SEAM_COLOUR_STEP` on average (the copy does not continue the limb; needs ``colours``) *and*
      the mirror limb's own next segment is not seen there, so that nothing tells a change of light from
      a change of material.

    Where the mirror limb's next segment is seen near the seam (at the mirrored places of at least
    :data:`MIN_SEAM_TEXELS` compared texels) and the ratio of the mean colours of the two next segments
    there (:func:`limb_shading_gains`) lies within :data:`GAIN_RANGE` on every channel, the copies are
    kept whatever the step: a step the mirror limb shows too is in the clothing (a hem at the knee or
    elbow; the ratio is then about 1), and a difference of light between the two sides is carried over by
    that ratio, the part's *shading gain* (written into ``gains`` when given). A ratio outside the range
    is a different material (or a mirror mask that took in hair or background), and the step test decides.

    A dropped part is not filled from the next segment alone: the body around it decides, the next
    segment at one end and what the part hangs from at the other (a thigh under a dress continues the
    dress at the hip even where the shin below is bare; measured in docs/weight_free.md).

    Args:
        values: ``(N, 2, Ht, Wt)`` coordinates after the counterpart copies; known: ``(N, 1, Ht, Wt)``
            texels holding one; covered: the photo's own (reliable) coverage; source: the covered texels
            that may be read; layout: :class:`retarget.uvmap.layout.TextureLayout`;
        colours: ``(N, 3, H, W)`` the photo the coordinates point into, or None (no seam test);
        gains: optional ``(N, N_PARTS + 1, 3)`` per-part colour gains, updated in place.

    Returns:
        ``known`` ``(N, 1, Ht, Wt)`` without the dropped copies.
    """
    from retarget.uvmap.layout import RELATIONS
    from retarget.uvmap.symmetry import LIMBS, N_PARTS

    n, c, h, w = values.shape
    part = layout.part.reshape(-1)
    idx = np.nonzero(np.isin(part, LIMBS))[0]  # only limb texels have along-limb relations
    lab = torch.as_tensor(part[idx], device=values.device)
    flat = values.reshape(n, c, h * w)
    src = source.reshape(n, h * w)
    part_t = torch.as_tensor(part, device=values.device)
    read = flat[:, :, idx].clone()
    ok = torch.zeros(n, len(idx), dtype=torch.bool, device=values.device)
    for k, name in enumerate(RELATIONS):  # nearest seen row first (ordered by distance from the seam)
        if not name.startswith("along_limb@"):
            continue
        taps = torch.as_tensor(layout.taps[k, idx], device=values.device)
        other = torch.as_tensor(layout.other[k, idx], device=values.device)
        wt = torch.as_tensor(layout.weights[k, idx], device=values.device)[None] * (
            src[:, taps] & (part_t[taps] == other[:, None])[None]).to(values.dtype)
        total = wt.sum(-1)
        here = (total >= 0.5) & (other > 0)[None] & ~ok
        r = (flat[:, :, taps] * wt[:, None]).sum(-1) / total.clamp(min=1e-8)[:, None]
        read = torch.where(here[:, None], r, read)
        ok |= here
    cov = covered.reshape(n, h * w)[:, idx]
    copied = known.reshape(n, h * w)[:, idx] & ~cov
    if colours is not None:
        along = _colour_at(colours, read[..., None])[..., 0]  # (N, 3, L) this limb's next segment
        step = (_colour_at(colours, flat[:, :, idx, None])[..., 0] - along).norm(dim=1)
        mirror_along, mirror_ok = _mirror_next_segment(along, ok, idx, layout, (n, h, w))
    seam = torch.as_tensor(layout.seam_distance.reshape(-1)[idx], device=values.device)
    size = N_PARTS + 1
    use = torch.zeros_like(ok)
    min_seed, min_seam = MIN_PART_SEED * texture_scale(w) ** 2, MIN_SEAM_TEXELS * texture_scale(w) ** 2
    for i in range(n):
        def count(mask, weights=None):
            one = mask.to(values.dtype) if weights is None else mask.to(values.dtype) * weights
            return torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(0, lab, one)

        readable = count(ok[i] & ~cov[i]) > 0  # parts whose next segment can be read
        take = readable & (count(copied[i]) < min_seed)
        compared = copied[i] & ok[i]
        if colours is not None:
            closest = torch.full((size,), float("inf"), device=values.device).scatter_reduce(
                0, lab[compared], seam[compared], reduce="amin")
            band = compared & (seam <= closest[lab] + SEAM_BAND)
            mean_step = count(band, step[i]) / count(band).clamp(min=1)
            both = band & mirror_ok[i]  # both next segments seen: light and material can be told apart
            ratio = limb_shading_gains(along[i], mirror_along[i], both, lab, size, min_seam)
            told = (count(both) >= min_seam) & ((ratio >= GAIN_RANGE[0]) & (ratio <= GAIN_RANGE[1])).all(1)
            take |= readable & (count(compared) >= min_seam) & (mean_step > SEAM_COLOUR_STEP) & ~told
            if gains is not None:
                gains[i] = torch.where((told & ~take)[:, None], ratio, torch.ones_like(ratio))
        use[i] = take[lab]
    known = known.reshape(n, h * w).clone()
    known[:, idx] = known[:, idx] & ~(use & copied)
    return known.reshape(n, 1, h, w)


#: Bounds of a shading gain (per channel): a ratio outside them is not light but a different material.
GAIN_RANGE = (0.5, 2.0)


def limb_shading_gains(own: torch.Tensor, mirror: torch.Tensor, band: torch.Tensor, lab: torch.Tensor, size: int,
                       min_texels: float = MIN_SEAM_TEXELS) -> torch.Tensor:
    """Per-part colour gains ``mean(own) / mean(mirror)`` over the ``band`` texels of each part.

    Args:
        own: ``(3, L)`` colours of this limb's next segment near the seam; mirror: ``(3, L)`` those of the
            mirror limb's next segment at the mirrored place; band: ``(L,)`` bool, texels to average;
        lab: ``(L,)`` int64 part per texel; size: number of part slots (parts are ``0 .. size - 1``).

    Returns:
        ``(size, 3)`` gains; 1 for parts with fewer than ``min_texels`` band texels (:data:`MIN_SEAM_TEXELS`
        at 256², scaled with the texture's area by the caller). Colours
        near 0 are damped (``+1e-3`` on both sums).
    """
    weight = band.to(own.dtype)
    count = torch.zeros(size, dtype=own.dtype, device=own.device).index_add_(0, lab, weight)
    sums = [torch.zeros(size, 3, dtype=own.dtype, device=own.device).index_add_(0, lab, (c * weight).T)
            for c in (own, mirror)]
    gain = (sums[0] + 1e-3) / (sums[1] + 1e-3)
    return torch.where((count >= min_texels)[:, None], gain, torch.ones_like(gain))


def _mirror_next_segment(along: torch.Tensor, ok: torch.Tensor, idx: np.ndarray, layout, nhw: tuple[int, int, int]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """For every limb texel, the next-segment colour of its left/right mirror texel.

    Args:
        along: ``(N, 3, L)`` colours read from the next segment of the limb for the limb texels ``idx``
            (flat indices, ``L`` of them); ok: ``(N, L)`` where that read holds; nhw: ``(N, Ht, Wt)``.

    Returns:
        ``(mirror, valid)``: ``(N, 3, L)`` the mirror texel's next-segment colour (bilinear over its
        readable taps), and ``(N, L)`` where it and this texel's own read hold.
    """
    n, h, w = nhw
    from retarget.uvmap.layout import RELATIONS

    k = RELATIONS.index("left_right")
    device = along.device
    full = torch.zeros(n, 3, h * w, dtype=along.dtype, device=device)
    full[:, :, idx] = along
    known = torch.zeros(n, h * w, dtype=torch.bool, device=device)
    known[:, idx] = ok
    labels = torch.as_tensor(layout.part, device=device)
    other = torch.as_tensor(layout.other[k], device=device)
    read, there = gather_counterparts(full.reshape(n, 3, h, w), known.reshape(n, 1, h, w), labels, other,
                                      torch.as_tensor(layout.taps[k], device=device),
                                      torch.as_tensor(layout.weights[k], device=device))
    return read.reshape(n, 3, h * w)[:, :, idx], there.reshape(n, h * w)[:, idx] & ok


@dataclass
class BodyCompletion:
    """Result of :func:`body_completion` (all ``(N, ·, Ht, Wt)``).

    Attributes:
        xy: completed coordinate texture.
        gain: ``(N, 3, Ht, Wt)`` colour gain for the colour read through ``xy`` (the shading of step 6;
            1 on covered texels and wherever no gain applies).
        spread: ``(N, 1, Ht, Wt)`` bool, texels filled by spreading (steps 4 and 5: nearest known texel),
            not copied from a counterpart or the next segment, nor covered.
    """

    xy: torch.Tensor
    gain: torch.Tensor
    spread: torch.Tensor


def body_fill(texture: torch.Tensor, coverage: torch.Tensor, layout, trusted: torch.Tensor | None = None,
              colours: torch.Tensor | None = None) -> torch.Tensor:
    """The completed coordinate texture of :func:`body_completion` (its ``xy``)."""
    return body_completion(texture, coverage, layout, trusted, colours).xy


def body_completion(texture: torch.Tensor, coverage: torch.Tensor, layout, trusted: torch.Tensor | None = None,
                    colours: torch.Tensor | None = None) -> BodyCompletion:
    """Body-aware completion of a partial coordinate texture (the default weight-free fill).

    1. Stray splats are dropped (:func:`reliable_coverage`); they are refilled like holes.
    2. An uncovered texel of the body takes the value at its left/right mirror, its front/back
       counterpart or its mirror's front/back counterpart, the first of them that is covered and
       ``trusted`` (coordinates, not colours, are copied, so the real cloth texture is reused).
    3. A limb part whose copies do not continue the seen next segment of the same limb, or that got
       too few copies, drops them (:func:`choose_limb_sources`).
    4. A body part of which at least :data:`OWN_PART_FRACTION` is known fills the rest of itself with
       the nearest known texel *of that part* (:func:`part_nearest_fill`); every other body texel takes
       the known texel nearest to it on the body surface (:func:`surface_nearest_fill`: a hole is filled
       from the seen body around it, across part seams and texture cuts). Never an average of
       coordinates.
    5. Anything left (the few body texels the surface graph does not reach) and every texel off the
       body (so that bilinear reads at island borders stay consistent) take the nearest texel holding a
       value (:func:`nearest_fill`): coordinates of the photo's person, never background.
    6. Shading: the uncovered texels of a limb part that kept its mirror copies get a colour gain, the
       ratio of this limb's next segment's colours to the mirror limb's next segment's near their seams
       (:func:`limb_shading_gains`; 1 elsewhere, and without ``colours``).

    Args:
        texture: ``(N, C, Ht, Wt)`` partial texture (a coordinate texture: channels (x, y) in [-1, 1]).
        coverage: ``(N, 1, Ht, Wt)``; a texel is covered where ``coverage > 0.5``.
        layout: :class:`retarget.uvmap.layout.TextureLayout` of an ``(Ht, Wt)`` texture.
        trusted: optional ``(N, 1, Ht, Wt)`` bool, the covered texels that may be *copied* to another
            texel (e.g. :func:`retarget.pipeline.pair.copyable_texels`: not splatted from DensePose part
            borders); default: every covered texel that passes the stray test.
        colours: optional ``(N, 3, H, W)`` image the coordinates point into (the photo), for the seam
            test of step 3; without it, step 3 only fills limb parts that got too few copies.

    Returns:
        :class:`BodyCompletion`: its ``xy`` ``(N, C, Ht, Wt)`` is finite everywhere (covered texels that
        pass the stray test keep their value; a batch item without any covered texel is returned
        unchanged); see :func:`body_colour_texture` for the colours.
    """
    from retarget.uvmap.layout import SYMMETRY_RELATIONS
    from retarget.uvmap.symmetry import N_PARTS

    if texture.dim() != 4 or coverage.dim() != 4 or coverage.shape[1] != 1:
        raise ValueError(f"expected texture (N,C,H,W) and coverage (N,1,H,W), got "
                         f"{tuple(texture.shape)}, {tuple(coverage.shape)}")
    if tuple(layout.shape) != tuple(texture.shape[-2:]):
        raise ValueError(f"layout is for {layout.shape} textures, got {tuple(texture.shape[-2:])}")
    device = texture.device
    values = torch.nan_to_num(texture.float())
    labels = torch.as_tensor(layout.part, device=device)
    body = (labels > 0)[None, None]

    covered = coverage > 0.5
    covered = reliable_coverage(values, covered, labels) | (covered & ~body)  # 1.
    known = covered.clone()
    source = covered if trusted is None else covered & trusted.bool()
    for k in range(len(SYMMETRY_RELATIONS)):  # 2. counterparts, read from the photo's own coverage only
        read, ok = gather_counterparts(values, source, labels, torch.as_tensor(layout.other[k], device=device),
                                       torch.as_tensor(layout.taps[k], device=device),
                                       torch.as_tensor(layout.weights[k], device=device))
        take = ok & ~known & body
        values = torch.where(take, read, values)
        known |= take
    gains = torch.ones(values.shape[0], N_PARTS + 1, 3, dtype=values.dtype, device=device)
    known = choose_limb_sources(values, known, covered, source, layout, colours, gains)  # 3.
    copied = known.clone()
    own = _enough(known, labels, N_PARTS, OWN_PART_FRACTION)  # 4. parts seen enough continue themselves
    values, filled = part_nearest_fill(values, own, labels, N_PARTS)
    values, known = surface_nearest_fill(values, known | filled, layout)  # the others: the body around them
    out = nearest_fill(values, known.to(values.dtype))  # 5.
    empty = ~(coverage > 0.5).flatten(1).any(dim=1)
    out[empty] = texture[empty].float()
    gain = gains[:, labels.reshape(-1)].permute(0, 2, 1).reshape(values.shape[0], 3, *labels.shape)  # 6.
    untouched = covered | empty[:, None, None, None]
    gain = torch.where(untouched, torch.ones_like(gain), gain)
    return BodyCompletion(xy=out.to(texture.dtype), gain=gain, spread=~copied & ~untouched)


#: Standard deviation (texels of a 256-texel-wide texture; scaled with the width) of the smoothing of the
#: colours of texels filled by spreading (:attr:`BodyCompletion.spread`): the nearest-known-texel fill
#: repeats the texels at a hole's border in streaks; smoothed within the part they blend into one
#: another. Copied texels (real cloth) and covered texels are not smoothed.
SPREAD_SMOOTHING = 4.0


def body_colour_texture(image: torch.Tensor, completion: BodyCompletion, labels: torch.Tensor) -> torch.Tensor:
    """The colour texture of a :class:`BodyCompletion`: ``image`` read through ``completion.xy``, times the
    shading gain, with the spread texels smoothed within their part (:data:`SPREAD_SMOOTHING`).

    Args:
        image: ``(N, 3, H, W)`` RGB in [0, 1] the coordinates point into (e.g. the photo with its person
            extended over the background); labels: ``(Ht, Wt)`` int64 part per texel.

    Returns:
        ``(N, 3, Ht, Wt)`` in [0, 1].
    """
    from retarget.ops.warp import colour_texture_from_source

    colours = (colour_texture_from_source(image, completion.xy) * completion.gain).clamp(0, 1)
    sigma = SPREAD_SMOOTHING * texture_scale(labels)
    if sigma <= 0 or not bool(completion.spread.any()):
        return colours
    return torch.where(completion.spread, part_blur(colours, labels, sigma), colours)


#: A part whose known texels are fewer than this (at 256², scaled with the texture's area:
#: :func:`texture_scale`) is treated as unseen (too little to spread over it).
MIN_PART_SEED = 24


def texture_scale(labels) -> float:
    """How many times wider than 256 texels a texture is (``labels``: its ``(H, W)`` part map, or its width).

    The texel counts and sizes of the body fill (:data:`MIN_PART_SEED`, :data:`MIN_SEAM_TEXELS`, the stray-splat
    window of :func:`reliable_coverage`, :data:`SPREAD_SMOOTHING`) are stated at 256² and scaled by this (sizes)
    or its square (counts), so that a larger ``--size`` completes the same body the same way.
    """
    width = labels if isinstance(labels, (int, float)) else labels.shape[-1]
    return width / 256.0
#: A body part of which at least this fraction of texels is known (seen or copied) fills the rest of itself
#: from its own known texels (the same garment continues); a part seen less (a glimpse, or a few stray
#: splats) is filled from the body around it (:func:`surface_nearest_fill`). Chosen on the tuning split of
#: ``bench/quality.py`` among 0, 0.1, 0.25, 0.4, 0.6 and "never" (docs/weight_free.md).
OWN_PART_FRACTION = 0.25


def _enough(known: torch.Tensor, labels: torch.Tensor, n_labels: int, fraction: float) -> torch.Tensor:
    """``known`` without the texels of parts that have fewer than :data:`MIN_PART_SEED` (scaled) known texels, or
    fewer than ``fraction`` of the part's texels."""
    n = known.shape[0]
    flat = labels.reshape(-1)
    counts = torch.zeros(n, n_labels + 1, device=known.device, dtype=torch.long)
    counts.scatter_add_(1, flat[None].expand(n, -1), known.reshape(n, -1).long())
    sizes = torch.bincount(flat, minlength=n_labels + 1)
    ok = (counts >= MIN_PART_SEED * texture_scale(labels) ** 2) & (counts >= fraction * sizes[None])
    ok[:, 0] = True
    return known & ok.gather(1, flat[None].expand(n, -1)).reshape(known.shape)


def part_blur(colours: torch.Tensor, labels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a texture within each part (normalised convolution: texels of other parts and off
    the body do not bleed in).

    Args:
        colours: ``(N, C, H, W)``; labels: ``(H, W)`` int64 part per texel (0 off the body, left as is);
        sigma: standard deviation in texels (0: unchanged).

    Returns:
        ``(N, C, H, W)``.
    """
    if sigma <= 0:
        return colours
    labels = labels.to(colours.device)
    k1 = gaussian_kernel(sigma, colours.dtype, colours.device)
    radius = len(k1) // 2
    out = colours.clone()
    n, c = colours.shape[:2]
    for p in labels.unique().tolist():
        if p == 0:
            continue
        box = _label_box(labels, p, radius)  # the part's bounding box, plus the kernel
        m = (labels[box] == p).to(colours.dtype)[None, None]
        sub = colours[(..., *box)]
        both = separable_filter(torch.cat([sub * m, m.expand(n, 1, -1, -1)], dim=1), k1)
        blurred = both[:, :c] / both[:, c:].clamp(min=1e-6)
        out[(..., *box)] = torch.where(m.bool(), blurred, out[(..., *box)])
    return out

