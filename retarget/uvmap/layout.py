"""Where the DensePose body parts lie in an SMPL-UV texture, and which texels correspond across the body.

A :class:`TextureLayout` describes a texture of ``(Ht, Wt)`` texels in the pipeline's SMPL-UV convention
(texel ``(r, c)`` is read at ``u = (2c + 1) / Wt - 1``, ``v = (2r + 1) / Ht - 1``, as
``grid_sample(align_corners=False)`` reads it):

- ``part[r, c]``: the DensePose part (1..24) whose surface the texel shows, 0 off the body;
- ``chart[r, c]``: the texel's chart coordinates ``(U, V)`` in that part;
- for every *relation* ``k`` (:data:`RELATIONS`: left/right mirror, front/back, front/back then
  left/right, and for limb parts the rows of the next segment of the same limb at several distances from
  their seam): the part ``other[k, t]`` and the texture position that corresponds to texel ``t``, as the
  four bilinear taps ``taps[k, t]`` (flat texel indices) with weights ``weights[k, t]`` (all zero where
  texel ``t`` has no counterpart in that relation);
- ``seam_distance[r, c]``: for limb texels, the chart distance along the limb to the seam shared with
  that next segment (inf elsewhere).

The texture domain and charts come from the ``training`` IUV→UV table (every chart point of every atlas
face, :mod:`retarget.uvmap.tables`): a texel belongs to the part most table points fall on (texels
between points take their nearest hit texel's part, within 1.5 texels). Counterparts follow
:func:`retarget.uvmap.symmetry.derive_correspondences` (and :data:`LIGHT_KEEPING`) and
:func:`retarget.uvmap.symmetry.limb_neighbours`. Pure numpy/scipy;
:func:`texture_layout` keeps one layout per size in memory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from retarget.uvmap.symmetry import (
    FRONT_BACK,
    LEFT_RIGHT,
    LIMBS,
    N_PARTS,
    apply_transform,
    derive_correspondences,
    limb_axes,
    limb_neighbours,
)
from retarget.uvmap.tables import GRID, texel_coords, texel_parts

#: DensePose body part names by index I (1..24); 0 is background.
PART_NAMES = (
    "background", "torso back", "torso front", "right hand", "left hand", "left foot", "right foot",
    "upper leg right (back)", "upper leg left (back)", "upper leg right (front)", "upper leg left (front)",
    "lower leg right (back)", "lower leg left (back)", "lower leg right (front)", "lower leg left (front)",
    "upper arm left (inside)", "upper arm right (inside)", "upper arm left (outside)", "upper arm right (outside)",
    "lower arm left (inside)", "lower arm right (inside)", "lower arm left (outside)",
    "lower arm right (outside)", "head right", "head left",
)

#: Symmetry relations, in the order the body fill tries them.
SYMMETRY_RELATIONS = ("left_right", "front_back", "front_back+left_right")
#: Along-limb relations read a row of the adjacent segment of the same limb, this far (in chart units)
#: inside it from the seam the two segments share; the body fill takes the nearest seen row.
ALONG_INSETS = (0.05, 0.15, 0.25, 0.35, 0.5)
#: All relations (the first axis of :class:`TextureLayout`'s ``other``, ``taps`` and ``weights``).
RELATIONS = SYMMETRY_RELATIONS + tuple(f"along_limb@{d}" for d in ALONG_INSETS)
#: Left/right copies of limbs are also reflected around the limb's own axis, so that the side of the
#: limb facing the light in the photo stays the side facing the light: the anatomical mirror alone
#: turns a limb lit from the viewer's left into one lit from the right (see docs/weight_free.md for the
#: measured difference). Limbs are close to rotationally symmetric, so little else changes.
LIGHT_KEEPING = True


@dataclass(frozen=True)
class TextureLayout:
    """Body-part layout of an ``(Ht, Wt)`` texture (see the module docstring).

    Attributes:
        part: ``(Ht, Wt) int64`` part 1..24, 0 off the body.
        chart: ``(Ht, Wt, 2) float32`` chart (U, V) in [0, 1]; 0 off the body.
        other: ``(R, Ht*Wt) int64`` the corresponding part per relation, 0 where none.
        taps: ``(R, Ht*Wt, 4) int64`` flat texel indices of the bilinear taps of the counterpart.
        weights: ``(R, Ht*Wt, 4) float32`` their bilinear weights (sum 1, or all 0 where no counterpart).
        seam_distance: ``(Ht, Wt) float32`` chart distance of a limb texel from the seam with the next
            segment of its limb (:func:`retarget.uvmap.symmetry.limb_neighbours`), inf off the limbs.
        surface: ``(Ht*Wt, Ht*Wt)`` symmetric ``scipy.sparse.csr_matrix`` of the body surface
            (:func:`surface_graph`): edge weights are distances on the body in texels, between
            neighbouring texels of one part and across the seams where the texture is cut.
    """

    part: np.ndarray
    chart: np.ndarray
    other: np.ndarray
    taps: np.ndarray
    weights: np.ndarray
    seam_distance: np.ndarray
    surface: Any

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


def build_layout(height: int, width: int, lookup: np.ndarray, atlas, light_keeping: bool = LIGHT_KEEPING
                 ) -> TextureLayout:
    """Build the layout of an ``(height, width)`` texture.

    Args:
        height, width: texture size in texels (>= 2).
        lookup: ``(25, 256, 256, 2)`` IUV→UV table in output convention (the ``training`` table).
        atlas: :class:`retarget.uvmap.data.DensePoseAtlas` (for the correspondences).
        light_keeping: reflect left/right limb copies around the limb axis (:data:`LIGHT_KEEPING`).
    """
    from scipy import ndimage

    if height < 2 or width < 2:
        raise ValueError(f"texture must be at least 2x2, got {height}x{width}")
    # 1. part and chart of every texel: the part most table points fall on (faces that cross a texture
    #    seam scatter a few stray points over other islands; the vote ignores them), its mean chart point.
    part, chart, hit = texel_parts(lookup, height, width)
    n_texels = height * width
    # texels between table points (stretched charts) take their nearest hit texel's part, within 1.5 texels
    distance, (ri, ci) = ndimage.distance_transform_edt(~hit.reshape(height, width), return_indices=True)
    source = (ri * width + ci).ravel()
    on_body = distance.ravel() <= 1.5
    part = np.where(on_body, part[source], 0).astype(np.int64)
    chart = np.where(on_body[:, None], chart[source], 0.0).astype(np.float32)

    # 2. counterparts: chart point → corresponding part's chart point → its texture position.
    filled = _filled_lookup(lookup)
    corr = derive_correspondences(atlas)
    around = limb_axes(atlas)

    def mirror(q: int) -> list:
        """Steps from a chart point of ``q`` to its left/right counterpart (see :data:`LIGHT_KEEPING`)."""
        steps = [(LEFT_RIGHT[q], corr["left_right"][q].transform)]
        target = LEFT_RIGHT[q]
        if light_keeping and target in LIMBS:
            steps.append((target, (0, 0, 1) if around[target] == 1 else (0, 1, 0)))
        return steps

    other = np.zeros((len(RELATIONS), n_texels), np.int64)
    taps = np.zeros((len(RELATIONS), n_texels, 4), np.int64)
    weights = np.zeros((len(RELATIONS), n_texels, 4), np.float32)

    def chain(p: int, k: int):
        """[(part, transform), ...] applied in order for relation ``RELATIONS[k]``, or None."""
        if k == 0:
            return mirror(p)
        if p not in FRONT_BACK:
            return None
        flip = [(FRONT_BACK[p], corr["front_back"][p].transform)]
        return flip if k == 1 else flip + mirror(FRONT_BACK[p])

    def to_taps(q: int, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear taps and weights of the texture positions of chart points ``uv`` of part ``q``."""
        grid = np.clip(np.rint(uv * (GRID - 1)), 0, GRID - 1).astype(np.int64)
        r, c = texel_coords(filled[q, grid[:, 0], grid[:, 1]], height, width)
        return _bilinear_taps(r, c, height, width)

    neighbours = limb_neighbours(atlas)
    seam_distance = np.full(n_texels, np.inf, np.float32)
    for p in range(1, N_PARTS + 1):
        texels = np.nonzero(part == p)[0]
        if not len(texels):
            continue
        if p in neighbours:  # along the limb: a row of the next segment, at the same place around the limb
            nb = neighbours[p]
            seam_distance[texels] = np.abs(chart[texels, 1 - nb.around] - nb.own_seam)
            for inset in ALONG_INSETS:
                uv = np.zeros((len(texels), 2))
                uv[:, nb.around] = np.clip(nb.slope * chart[texels, nb.around] + nb.offset, 0.0, 1.0)
                uv[:, 1 - nb.around] = nb.seam - inset if nb.seam > 0.5 else nb.seam + inset
                k = RELATIONS.index(f"along_limb@{inset}")
                other[k, texels], taps[k, texels], weights[k, texels] = nb.other, *to_taps(nb.other, uv)
        for k in range(len(SYMMETRY_RELATIONS)):
            steps = chain(p, k)
            if steps is None:
                continue
            uv = chart[texels].astype(np.float64)
            for _, transform in steps:
                uv = apply_transform(transform, uv)
            q = steps[-1][0]
            other[k, texels], taps[k, texels], weights[k, texels] = q, *to_taps(q, uv)
    part = part.reshape(height, width)
    return TextureLayout(part=part, chart=chart.reshape(height, width, 2),
                         other=other, taps=taps, weights=weights,
                         seam_distance=seam_distance.reshape(height, width),
                         surface=surface_graph(part, chart.reshape(height, width, 2), filled, atlas))


def _snap(part: np.ndarray, row: np.ndarray, col: np.ndarray, want: np.ndarray, also: np.ndarray) -> np.ndarray:
    """Flat index of the texel nearest to (``row``, ``col``) (within 3 texels) whose part is ``want``, else
    of one whose part is in the bit set ``also`` (bit ``p`` for part ``p``: e.g. the parts that share the
    vertex being placed, whose point may fall among the texels across its seam); -1 where neither."""
    height, width = part.shape
    r0, c0 = np.rint(row).astype(np.int64), np.rint(col).astype(np.int64)
    out = np.full(len(r0), -1, np.int64)
    offsets = sorted(((dr, dc) for dr in range(-3, 4) for dc in range(-3, 4)), key=lambda o: o[0] ** 2 + o[1] ** 2)
    flat_part = part.reshape(-1)
    for accept in (lambda found: found == want, lambda found: ((also >> found) & 1).astype(bool) & (found > 0)):
        for dr, dc in offsets:
            r, c = r0 + dr, c0 + dc
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            flat = np.where(inside, r * width + c, 0)
            hit = (out < 0) & inside & accept(flat_part[flat])
            out[hit] = flat[hit]
    return out


#: Texels of a part that the mesh edges leave apart from the body are joined to the texel of the same part
#: nearest on the chart when it lies within this chart distance (a few texels at 256²): the same place of
#: the body shown twice in the texture.
ISLAND_JOIN = 0.05


def surface_graph(part: np.ndarray, chart: np.ndarray, lookup: np.ndarray, atlas):
    """The body surface as a graph over the texels of an ``(Ht, Wt)`` texture (distances in texels).

    Edges: (1) the 8 neighbours of a texel that belong to the same part (weight 1 or √2: the SMPL-UV
    layout keeps a roughly even texel density over the body); (2) the texels of the two ends of every
    edge of the DensePose atlas mesh and (3) the texels of every two atlas copies of one SMPL vertex
    (on a seam between parts), weight 1. (2) and (3) join what the texture cuts apart: shortest paths
    run over the body, e.g. from a thigh into the hip it hangs from, never across the gap between two
    islands. Each atlas vertex is placed at the texel of its part nearest to its point of ``lookup``
    (within 3 texels), else at one of a part that shares its SMPL vertex (a point on a seam may fall among
    the texels across it). (4) Texels still apart from the body's largest connected piece (small islands
    of the thighs, about 3 % of the body's texels at 256², which no atlas edge reaches) are joined to the
    texel of their part in that piece nearest on the chart, within :data:`ISLAND_JOIN` (weight 1).

    Args:
        part: ``(Ht, Wt) int64`` part per texel (0 off the body); chart: ``(Ht, Wt, 2)`` its chart (U, V);
            lookup: ``(25, 256, 256, 2)`` IUV→UV table
            without NaN on the parts (:func:`_filled_lookup`); atlas: :class:`DensePoseAtlas`.

    Returns:
        ``scipy.sparse.csr_matrix`` ``(Ht*Wt, Ht*Wt)``, symmetric.
    """
    from scipy import sparse

    height, width = part.shape
    n = height * width
    flat_part = part.reshape(-1)
    rows, cols, weights = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):  # (1) neighbours within a part
        r, c = np.nonzero(part[max(0, -dr):height - max(0, dr), max(0, -dc):width - max(0, dc)] > 0)
        r, c = r + max(0, -dr), c + max(0, -dc)
        a, b = r * width + c, (r + dr) * width + (c + dc)
        same = flat_part[a] == flat_part[b]
        rows.append(a[same])
        cols.append(b[same])
        weights.append(np.full(int(same.sum()), float(np.hypot(dr, dc))))
    grid = lookup.shape[1]
    vertex_part = np.zeros(len(atlas.chart_uv), np.int64)
    vertex_part[atlas.faces.reshape(-1)] = np.repeat(atlas.face_part, 3)
    g = np.clip(np.rint(atlas.chart_uv * (grid - 1)), 0, grid - 1).astype(np.int64)
    row, col = texel_coords(lookup[vertex_part, g[:, 0], g[:, 1]], height, width)
    shared = np.zeros(int(atlas.atlas_to_smpl.max()) + 1, np.int64)  # bit set of the parts of each SMPL vertex
    np.bitwise_or.at(shared, atlas.atlas_to_smpl, np.left_shift(1, vertex_part))
    texel = np.where(vertex_part > 0, _snap(part, row, col, vertex_part, shared[atlas.atlas_to_smpl]), -1)
    pairs = [atlas.faces[:, [0, 1]], atlas.faces[:, [1, 2]], atlas.faces[:, [2, 0]]]  # (2) mesh edges
    order = np.argsort(atlas.atlas_to_smpl, kind="stable")  # (3) copies of one SMPL vertex
    smpl = atlas.atlas_to_smpl[order]
    for shift in range(1, 5):  # a vertex lies on at most a few parts: every pair of its copies
        same = smpl[shift:] == smpl[:-shift]
        pairs.append(np.stack([order[:-shift][same], order[shift:][same]], axis=1))
    pairs = np.concatenate(pairs)
    a, b = texel[pairs[:, 0]], texel[pairs[:, 1]]
    ok = (a >= 0) & (b >= 0)
    rows.append(a[ok])
    cols.append(b[ok])
    weights.append(np.ones(int(ok.sum())))
    a, b, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * n + hi
    order = np.lexsort((w, key))  # one edge per texel pair, the shortest
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    first = first[lo[first] != hi[first]]
    lo, hi, w = lo[first], hi[first], w[first]
    graph = sparse.csr_matrix((np.concatenate([w, w]), (np.concatenate([lo, hi]), np.concatenate([hi, lo]))),
                              shape=(n, n))
    return _join_islands(graph, flat_part, chart.reshape(-1, 2))


def _join_islands(graph, flat_part: np.ndarray, chart: np.ndarray):
    """Step (4) of :func:`surface_graph`: ``graph`` with the body texels outside its largest connected
    piece joined to the chart-nearest texel of their part inside it (within :data:`ISLAND_JOIN`)."""
    from scipy import sparse
    from scipy.spatial import cKDTree
    from scipy.sparse.csgraph import connected_components

    _, label = connected_components(graph, directed=False)
    body = flat_part > 0
    if not body.any():
        return graph
    main = np.bincount(label[body]).argmax()
    rows, cols = [], []
    for p in np.unique(flat_part[body & (label != main)]):
        inside = np.nonzero((flat_part == p) & (label == main))[0]
        apart = np.nonzero((flat_part == p) & (label != main))[0]
        if not len(inside):
            continue
        distance, nearest = cKDTree(chart[inside]).query(chart[apart], distance_upper_bound=ISLAND_JOIN)
        ok = np.isfinite(distance)
        rows.append(apart[ok])
        cols.append(inside[nearest[ok]])
    if not rows:
        return graph
    a, b = np.concatenate(rows), np.concatenate(cols)
    extra = sparse.csr_matrix((np.ones(2 * len(a)), (np.concatenate([a, b]), np.concatenate([b, a]))),
                              shape=graph.shape)
    return (graph + extra).tocsr()


@functools.lru_cache(maxsize=4)
def texture_layout(height: int, width: int) -> TextureLayout:
    """The layout of an ``(height, width)`` texture from the installed UV data (built once per process and
    size, about 0.8–1 s of CPU (with the surface graph) for 256×256 on the 2-core development machine)."""
    from retarget.uvmap.cache import get_lookup
    from retarget.uvmap.data import load_atlas

    return build_layout(height, width, get_lookup("training"), load_atlas())


__all__ = ["ALONG_INSETS", "LIGHT_KEEPING", "PART_NAMES", "RELATIONS", "SYMMETRY_RELATIONS", "TextureLayout",
           "build_layout",
           "texel_coords", "texture_layout"]
