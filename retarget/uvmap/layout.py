"""Where the DensePose body parts lie in an SMPL-UV texture, and which texels correspond across the body.

A :class:`TextureLayout` describes a texture of ``(Ht, Wt)`` texels in the pipeline's SMPL-UV convention
(texel ``(r, c)`` is read at ``u = (2c + 1) / Wt - 1``, ``v = (2r + 1) / Ht - 1``, as
``grid_sample(align_corners=False)`` reads it):

- ``part[r, c]``: the DensePose part (1..24) whose surface the texel shows, 0 off the body;
- ``chart[r, c]``: the texel's chart coordinates ``(U, V)`` in that part;
- for every *relation* ``k`` (left/right mirror, front/back, both, then up to three neighbouring parts
  sharing the longest seams): the part ``other[k, t]`` and the texture position that corresponds to texel
  ``t``, as the four bilinear taps ``taps[k, t]`` (flat texel indices) with weights ``weights[k, t]``
  (all zero where texel ``t`` has no counterpart in that relation).

The texture domain and charts come from the ``training`` IUV→UV table (every chart point of every atlas
face, :mod:`retarget.uvmap.tables`): a texel belongs to the part of the nearest table point within one
texel. Counterparts follow :func:`retarget.uvmap.symmetry.derive_correspondences`; the neighbour
relations copy chart coordinates unchanged (a plausible source of the same garment, not a symmetry).
Pure numpy/scipy; :func:`texture_layout` keeps one layout per size in memory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from retarget.uvmap.symmetry import FRONT_BACK, LEFT_RIGHT, N_PARTS, apply_transform, derive_correspondences
from retarget.uvmap.tables import GRID

#: Relation names in the order the body fill tries them.
RELATIONS = ("left_right", "front_back", "left_right+front_back", "neighbour1", "neighbour2", "neighbour3")
#: How many of the relations are true correspondences (the rest are neighbour fall-backs).
N_SYMMETRIC = 3


@dataclass(frozen=True)
class TextureLayout:
    """Body-part layout of an ``(Ht, Wt)`` texture (see the module docstring).

    Attributes:
        part: ``(Ht, Wt) int64`` part 1..24, 0 off the body.
        chart: ``(Ht, Wt, 2) float32`` chart (U, V) in [0, 1]; 0 off the body.
        other: ``(R, Ht*Wt) int64`` the corresponding part per relation, 0 where none.
        taps: ``(R, Ht*Wt, 4) int64`` flat texel indices of the bilinear taps of the counterpart.
        weights: ``(R, Ht*Wt, 4) float32`` their bilinear weights (sum 1, or all 0 where no counterpart).
    """

    part: np.ndarray
    chart: np.ndarray
    other: np.ndarray
    taps: np.ndarray
    weights: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.part.shape


def _filled_lookup(lookup: np.ndarray) -> np.ndarray:
    """``lookup`` with every NaN chart point of a part replaced by the part's nearest valid point."""
    from scipy import ndimage

    out = np.array(lookup, dtype=np.float32, copy=True)
    for part in range(1, N_PARTS + 1):
        invalid = np.isnan(out[part, ..., 0])
        if invalid.all() or not invalid.any():
            continue
        i, j = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
        out[part] = out[part][i, j]
    return out


def _texel_coords(uv: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) of UV points ``(..., 2)`` in texel units (texel centres at integers)."""
    col = ((uv[..., 0] + 1.0) * width - 1.0) / 2.0
    row = ((uv[..., 1] + 1.0) * height - 1.0) / 2.0
    return row, col


def _bilinear_taps(row: np.ndarray, col: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(n, 4)`` and weights ``(n, 4)`` of bilinear sampling (border-clamped)."""
    row = np.clip(row, 0, height - 1)
    col = np.clip(col, 0, width - 1)
    r0 = np.clip(np.floor(row).astype(np.int64), 0, max(height - 2, 0))
    c0 = np.clip(np.floor(col).astype(np.int64), 0, max(width - 2, 0))
    fr, fc = row - r0, col - c0
    r1, c1 = np.minimum(r0 + 1, height - 1), np.minimum(c0 + 1, width - 1)
    taps = np.stack([r0 * width + c0, r0 * width + c1, r1 * width + c0, r1 * width + c1], axis=-1)
    weights = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], axis=-1)
    return taps, weights.astype(np.float32)


def _neighbours(atlas, count: int = 3) -> dict[int, list[int]]:
    """Per part, the parts sharing the most SMPL vertices with it (longest seams first)."""
    smpl = {p: np.unique(atlas.atlas_to_smpl[np.unique(atlas.faces[atlas.face_part == p])])
            for p in range(1, N_PARTS + 1)}
    out = {}
    for p in range(1, N_PARTS + 1):
        shared = [(len(np.intersect1d(smpl[p], smpl[r], assume_unique=True)), r)
                  for r in range(1, N_PARTS + 1) if r != p]
        out[p] = [r for n, r in sorted(shared, key=lambda item: (-item[0], item[1])) if n > 0][:count]
    return out


def build_layout(height: int, width: int, lookup: np.ndarray, atlas) -> TextureLayout:
    """Build the layout of an ``(height, width)`` texture.

    Args:
        height, width: texture size in texels (>= 2).
        lookup: ``(25, 256, 256, 2)`` IUV→UV table in output convention (the ``training`` table).
        atlas: :class:`retarget.uvmap.data.DensePoseAtlas` (correspondences and neighbours).
    """
    from scipy import ndimage

    if height < 2 or width < 2:
        raise ValueError(f"texture must be at least 2x2, got {height}x{width}")
    # 1. part and chart of every texel: the part most table points fall on (faces that cross a texture
    #    seam scatter a few stray points over other islands; the vote ignores them), its mean chart point.
    part_idx, i_idx, j_idx = np.nonzero(~np.isnan(lookup[..., 0]))
    row, col = _texel_coords(lookup[part_idx, i_idx, j_idx], height, width)
    row, col = np.rint(row).astype(np.int64), np.rint(col).astype(np.int64)
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    n_texels = height * width
    key = ((row * width + col) * (N_PARTS + 1) + part_idx)[inside]
    size = n_texels * (N_PARTS + 1)
    counts = np.bincount(key, minlength=size).reshape(n_texels, N_PARTS + 1)
    sum_i = np.bincount(key, weights=i_idx[inside], minlength=size).reshape(n_texels, N_PARTS + 1)
    sum_j = np.bincount(key, weights=j_idx[inside], minlength=size).reshape(n_texels, N_PARTS + 1)
    part = np.argmax(counts, axis=1)
    hit = counts.sum(axis=1) > 0
    best = counts[np.arange(n_texels), part].clip(min=1)
    chart = np.stack([sum_i[np.arange(n_texels), part], sum_j[np.arange(n_texels), part]], axis=1) / best[:, None]
    chart = (chart / (GRID - 1)).astype(np.float32)
    # texels between table points (stretched charts) take their nearest hit texel's part, within 1.5 texels
    distance, (ri, ci) = ndimage.distance_transform_edt(~hit.reshape(height, width), return_indices=True)
    source = (ri * width + ci).ravel()
    on_body = distance.ravel() <= 1.5
    part = np.where(on_body, part[source], 0).astype(np.int64)
    chart = np.where(on_body[:, None], chart[source], 0.0).astype(np.float32)

    # 2. counterparts: chart point → corresponding part's chart point → its texture position.
    filled = _filled_lookup(lookup)
    corr = derive_correspondences(atlas)
    neighbours = _neighbours(atlas)
    other = np.zeros((len(RELATIONS), n_texels), np.int64)
    taps = np.zeros((len(RELATIONS), n_texels, 4), np.int64)
    weights = np.zeros((len(RELATIONS), n_texels, 4), np.float32)

    def chain(p: int, k: int):
        """[(part, transform), ...] applied in order for relation ``k``, or None."""
        lr, fb = corr["left_right"], corr["front_back"]
        if k == 0:
            return [(LEFT_RIGHT[p], lr[p].transform)]
        if k == 1:
            return [(FRONT_BACK[p], fb[p].transform)] if p in FRONT_BACK else None
        if k == 2:
            if p not in FRONT_BACK:
                return None
            q = FRONT_BACK[p]
            return [(q, fb[p].transform), (LEFT_RIGHT[q], lr[q].transform)]
        near = neighbours[p]
        return [(near[k - N_SYMMETRIC], (0, 0, 0))] if k - N_SYMMETRIC < len(near) else None

    for p in range(1, N_PARTS + 1):
        texels = np.nonzero(part == p)[0]
        if not len(texels):
            continue
        for k in range(len(RELATIONS)):
            steps = chain(p, k)
            if steps is None:
                continue
            uv = chart[texels].astype(np.float64)
            for _, transform in steps:
                uv = apply_transform(transform, uv)
            q = steps[-1][0]
            grid = np.clip(np.rint(uv * (GRID - 1)), 0, GRID - 1).astype(np.int64)
            target = filled[q, grid[:, 0], grid[:, 1]]
            r, c = _texel_coords(target, height, width)
            t, w = _bilinear_taps(r, c, height, width)
            other[k, texels], taps[k, texels], weights[k, texels] = q, t, w
    return TextureLayout(part=part.reshape(height, width), chart=chart.reshape(height, width, 2),
                         other=other, taps=taps, weights=weights)


@functools.lru_cache(maxsize=4)
def texture_layout(height: int, width: int) -> TextureLayout:
    """The layout of an ``(height, width)`` texture from the installed UV data (built once per process,
    about a second for 256×256)."""
    from retarget.uvmap.cache import get_lookup
    from retarget.uvmap.data import load_atlas

    return build_layout(height, width, get_lookup("training"), load_atlas())


__all__ = ["N_SYMMETRIC", "RELATIONS", "TextureLayout", "build_layout", "texture_layout"]
