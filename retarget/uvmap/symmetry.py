"""Left/right and front/back correspondences between DensePose charts, derived from the atlas data.

DensePose splits the body into 24 parts, each with its own chart ``(U, V) ∈ [0, 1]²``. Which parts are
left/right mirrors (e.g. 15 upper arm left front ↔ 16 upper arm right front) and which are the front and
back halves of one limb (e.g. 15 ↔ 17) is part of DensePose's label definition (:data:`LEFT_RIGHT`,
:data:`FRONT_BACK`). How the *chart coordinates* of two such parts correspond is not: each pair is related
by one of the 8 symmetries of the unit square (identity, flips of U and/or V, transposes), and we pick it
from the atlas data (``UV_Processed.mat``: chart coordinates of every atlas vertex and the SMPL vertex it
belongs to):

- **left/right**: vertices where part ``p`` meets a neighbour ``r`` must land where the mirror part meets
  the mirror neighbour (e.g. the elbow seam 15∩19 of the left arm lands on the seam 16∩20 of the right
  arm). The transform with the smallest mean chart distance between the mapped seam vertices of ``p``
  and the nearest seam vertices of the mirror wins. The torso parts (1, 2) are their own mirrors (a flip
  that is not the identity).
- **front/back**: the two halves of a limb share a seam (the same SMPL vertices appear in both charts);
  the reflection that swaps them must leave that seam in place, so the transform with the smallest mean
  chart distance between a shared vertex's coordinates in ``p`` (mapped) and in ``q`` wins.

- **along the limb** (:func:`limb_neighbours`): the upper and lower segment of one limb on the same chart
  half share the elbow or knee seam; a line fitted through the shared vertices maps the coordinate
  around the limb from one chart to the other, and the seam's position along each chart is the shared
  vertices' mean.

Every pair's winner is clear (its score is less than half the runner-up's, in chart units; see docs/weight_free.md);
:func:`derive_correspondences` returns the scores so that tests and docs can show them. Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retarget.uvmap.data import DensePoseAtlas

N_PARTS = 24

#: DensePose part labels (1-based) and their left/right mirror. Torso (1 back, 2 front) mirrors onto itself.
LEFT_RIGHT: dict[int, int] = {1: 1, 2: 2, 3: 4, 4: 3, 5: 6, 6: 5, 23: 24, 24: 23,
                              **{k: k + 1 for k in range(7, 23, 2)}, **{k + 1: k for k in range(7, 23, 2)}}

#: Front/back halves of one body segment (torso 1 ↔ 2 and the limbs). Hands, feet and head have no pair.
FRONT_BACK: dict[int, int] = {1: 2, 2: 1, 7: 9, 9: 7, 8: 10, 10: 8, 11: 13, 13: 11, 12: 14, 14: 12,
                              15: 17, 17: 15, 16: 18, 18: 16, 19: 21, 21: 19, 20: 22, 22: 20}

#: The 8 symmetries of the unit square as (transpose, flip U, flip V), applied flips first.
TRANSFORMS: tuple[tuple[int, int, int], ...] = tuple(
    (t, fu, fv) for t in (0, 1) for fu in (0, 1) for fv in (0, 1))


def apply_transform(transform: tuple[int, int, int], uv: np.ndarray) -> np.ndarray:
    """Map chart coordinates ``(..., 2)`` (U, V) in [0, 1] through one square symmetry."""
    transpose, flip_u, flip_v = transform
    u = 1.0 - uv[..., 0] if flip_u else uv[..., 0]
    v = 1.0 - uv[..., 1] if flip_v else uv[..., 1]
    return np.stack([v, u], axis=-1) if transpose else np.stack([u, v], axis=-1)


def inverse_transform(transform: tuple[int, int, int]) -> tuple[int, int, int]:
    """The symmetry that undoes ``transform``."""
    grid = np.array([[0.1, 0.3]])
    image = apply_transform(transform, grid)
    for candidate in TRANSFORMS:
        if np.allclose(apply_transform(candidate, image), grid):
            return candidate
    raise AssertionError("square symmetries form a group")  # pragma: no cover


@dataclass(frozen=True)
class Correspondence:
    """Chart ``p`` maps onto chart ``q`` through ``transform``; ``score`` and ``runner_up`` in chart units."""

    part: int
    other: int
    transform: tuple[int, int, int]
    score: float
    runner_up: float


def _part_vertices(atlas: DensePoseAtlas) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per part: (chart coordinates ``(n, 2)``, SMPL vertex ``(n,)``) of its atlas vertices."""
    out = {}
    for part in range(1, N_PARTS + 1):
        vertices = np.unique(atlas.faces[atlas.face_part == part])
        out[part] = (atlas.chart_uv[vertices], atlas.atlas_to_smpl[vertices])
    return out


def _shared(verts, p: int, r: int) -> np.ndarray:
    """Chart coordinates in ``p`` of the SMPL vertices that ``p`` shares with ``r`` (one per vertex)."""
    uv_p, smpl_p = verts[p]
    _, first = np.unique(smpl_p, return_index=True)
    keep = first[np.isin(smpl_p[first], verts[r][1])]
    return uv_p[np.sort(keep)]


def _best(scores: dict[tuple[int, int, int], float]) -> tuple[tuple[int, int, int], float, float]:
    ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]))
    return ranked[0][0], ranked[0][1], ranked[1][1]


def _left_right(verts, p: int) -> Correspondence:
    from scipy.spatial import cKDTree

    q = LEFT_RIGHT[p]
    pairs = [(r, LEFT_RIGHT[r]) for r in range(1, N_PARTS + 1) if r != p]
    anchors = [(a, b) for a, b in ((_shared(verts, p, r), _shared(verts, q, mr)) for r, mr in pairs)
               if len(a) and len(b)]
    scores = {}
    for transform in TRANSFORMS:
        if p == q and transform == (0, 0, 0):
            continue  # a part's own mirror is a true reflection
        distances = [cKDTree(b).query(apply_transform(transform, a))[0] for a, b in anchors]
        scores[transform] = float(np.concatenate(distances).mean())
    transform, score, runner_up = _best(scores)
    return Correspondence(p, q, transform, score, runner_up)


def _front_back(verts, p: int) -> Correspondence:
    q = FRONT_BACK[p]
    uv_p, smpl_p = verts[p]
    uv_q, smpl_q = verts[q]
    common, in_p, in_q = np.intersect1d(smpl_p, smpl_q, return_indices=True)
    scores = {t: float(np.linalg.norm(apply_transform(t, uv_p[in_p]) - uv_q[in_q], axis=1).mean())
              for t in TRANSFORMS}
    transform, score, runner_up = _best(scores)
    return Correspondence(p, q, transform, score, runner_up)


#: Limb parts (upper/lower legs and arms, front and back charts).
LIMBS = tuple(range(7, 23))


def limb_axes(atlas: DensePoseAtlas) -> dict[int, int]:
    """Per limb part, the chart axis (0 = U, 1 = V) that runs *around* the limb.

    A limb chart meets the next segments of the body at its two ends (hip and knee, shoulder and elbow,
    ...): the chart axis along which those two seams lie furthest apart runs along the limb, the other
    one around it.
    """
    verts = _part_vertices(atlas)
    out = {}
    for p in LIMBS:
        seams = [_shared(verts, p, r) for r in range(1, N_PARTS + 1) if r not in (p, FRONT_BACK[p], LEFT_RIGHT[p])]
        centres = np.array([s.mean(axis=0) for s in seams if len(s) >= 4])
        spread = centres.max(axis=0) - centres.min(axis=0)
        out[p] = int(np.argmin(spread))
    return out


@dataclass(frozen=True)
class LimbNeighbour:
    """The next segment ``other`` of the same limb as ``part``, and how their shared seam is charted.

    ``around``: the chart axis running around the limb (0 = U, 1 = V; the same in both charts, see
    :func:`limb_axes`); a point at ``a`` around ``part``'s seam lies at ``slope · a + offset`` around
    ``other``'s. The seam lies at ``seam`` along ``other``'s chart and at ``own_seam`` along ``part``'s
    (the along axis is the other one).
    """

    part: int
    other: int
    around: int
    slope: float
    offset: float
    seam: float
    own_seam: float


def limb_neighbours(atlas: DensePoseAtlas) -> dict[int, LimbNeighbour]:
    """Per limb part, the adjacent segment of the same limb (upper ↔ lower arm or leg, same chart side
    where they share the most vertices) and a linear map of the around-the-limb chart coordinate across
    the seam they share (least squares over the shared vertices)."""
    verts = _part_vertices(atlas)
    axes = limb_axes(atlas)
    out = {}
    for p in LIMBS:
        candidates = [r for r in LIMBS if r not in (p, FRONT_BACK[p], LEFT_RIGHT[p])]
        counts = {r: len(np.intersect1d(verts[p][1], verts[r][1])) for r in candidates}
        r = max(counts, key=lambda k: (counts[k], -k))
        if counts[r] < 4 or axes[r] != axes[p]:
            continue  # too short a seam, or charts drawn crosswise (not the case in DensePose's atlas)
        uv_p, smpl_p = verts[p]
        uv_r, smpl_r = verts[r]
        _, in_p, in_r = np.intersect1d(smpl_p, smpl_r, return_indices=True)
        a = axes[p]
        x, y = uv_p[in_p, a], uv_r[in_r, a]
        slope, offset = np.polyfit(x, y, 1)
        out[p] = LimbNeighbour(p, r, a, float(slope), float(offset), float(uv_r[in_r, 1 - a].mean()),
                               float(uv_p[in_p, 1 - a].mean()))
    return out


def derive_correspondences(atlas: DensePoseAtlas) -> dict[str, dict[int, Correspondence]]:
    """Chart correspondences ``{"left_right": {p: ...}, "front_back": {p: ...}}`` from the atlas data.

    The maps are involutions by construction: the transform of ``q → p`` is the inverse of the one chosen
    for ``p → q`` (for each pair the lower part label decides).
    """
    verts = _part_vertices(atlas)
    out: dict[str, dict[int, Correspondence]] = {}
    for name, relation, derive in (("left_right", LEFT_RIGHT, _left_right), ("front_back", FRONT_BACK, _front_back)):
        found: dict[int, Correspondence] = {}
        for p in sorted(relation):
            q = relation[p]
            if q in found and q != p:
                c = found[q]
                found[p] = Correspondence(p, q, inverse_transform(c.transform), c.score, c.runner_up)
            else:
                found[p] = derive(verts, p)
        out[name] = found
    return out


__all__ = ["Correspondence", "FRONT_BACK", "LEFT_RIGHT", "LIMBS", "LimbNeighbour", "TRANSFORMS", "apply_transform",
           "derive_correspondences", "inverse_transform", "limb_axes", "limb_neighbours"]
