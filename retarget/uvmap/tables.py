"""Build the DensePose (I, U, V) → SMPL-UV lookup tables from the public atlas data.

Both tables first give every SMPL vertex ONE SMPL-UV value (:func:`smpl_vertex_uv`), then fill a
per-part grid of DensePose chart points with SMPL-UV:

- ``training``: every atlas face of a part is rasterised on the chart points ``(U, V) = (i/255, j/255)``;
  a point inside a face gets the barycentric interpolation of its corners' SMPL-UV, a point covered by no
  face stays NaN. This is how the reference authors made their training data.
- ``released``: per part, linear (Delaunay) interpolation of SMPL-UV over the part's atlas vertices at
  ``(i/256, j/256)``; points outside the convex hull take the nearest vertex's value. This reproduces the
  released ``smpltexmap.npy``; it is never NaN for a foreground part.
- ``clean``: ``training`` without its stray points (:func:`without_strays`). An atlas face that crosses a
  cut of the SMPL-UV texture has corners on two islands, and its rasterised chart points are interpolated
  across the texture between them: they land on another part's island. Real DensePose hits them (a fifth
  of the foot pixels of the catwalk and tai-chi clips of ``../shared/real``), and a renderer then reads the
  other part there (an arm's or the dress's texture on the feet). Here every such point takes the value of
  the nearest chart point of its part that lands on the part's own island. What the weight-free path
  uses by default (``--table auto``); the official networks were trained on ``training``, kept with them.

Everything here is pure numpy/scipy on in-memory arrays; caching lives in :mod:`retarget.uvmap.cache`.
"""

from __future__ import annotations

import itertools

import numpy as np

from retarget.uvmap.data import DensePoseAtlas

TABLES = ("training", "released", "clean")
#: What ``--table`` accepts: a table, or ``auto`` (:func:`resolve_table`).
TABLE_CHOICES = ("auto", *TABLES)
GRID = 256  # DensePose U, V are stored as 0..255
# Chart coordinate of DensePose value k is k / CHART_DENOMINATOR[table].
CHART_DENOMINATOR = {"training": 255.0, "released": 256.0}  # clean: derived from training, k / 255
#: Texture side (texels) of the vote that tells which part's island a table point lands on (:func:`texel_parts`).
STRAY_VOTE_SIDE = 512

# All (copy of corner 0, copy of corner 1, copy of corner 2) combinations, seam vertices have <= 4 copies.
_COMBOS = np.array(list(itertools.product(range(4), repeat=3)), dtype=np.int64)  # (64, 3), lexicographic


def face_copy_choice(atlas: DensePoseAtlas) -> np.ndarray:
    """SMPL-UV of the three corners of every SMPL face, choosing seam copies that keep it compact.

    For each face, among all combinations of its corners' copies the one with the smallest UV perimeter
    wins (first in lexicographic copy order on ties). Faces whose corners lie on different islands
    therefore get the copies of one island where possible.

    Returns:
        ``(F, 3, 2) float64`` SMPL-UV (u, v) in [0, 1] per face corner.
    """
    faces = atlas.smpl_faces
    corner_uv = atlas.smpl_uv_copies[faces, 0]  # (F, 3, 2): the only copy, away from seams
    seam = (atlas.smpl_uv_count[faces] > 1).any(axis=1)
    seam_faces = faces[seam]
    counts = atlas.smpl_uv_count[seam_faces]  # (Fs, 3)
    valid = (_COMBOS[None, :, :] < counts[:, None, :]).all(-1)  # (Fs, 64)
    candidates = atlas.smpl_uv_copies[seam_faces[:, None, :], _COMBOS[None, :, :]]  # (Fs, 64, 3, 2)
    edges = candidates - np.roll(candidates, -1, axis=2)
    perimeter = np.where(valid, np.sqrt((edges ** 2).sum(-1)).sum(-1), np.inf)
    best = np.argmin(perimeter, axis=1)
    corner_uv[seam] = candidates[np.arange(len(seam_faces)), best]
    return corner_uv


def smpl_vertex_uv(atlas: DensePoseAtlas) -> np.ndarray:
    """One SMPL-UV value per SMPL vertex, as the reference data has it.

    A vertex inside a UV island has one copy. A seam vertex takes the copy used by the first face that
    contains it, with faces ordered by their largest vertex index (ties in file order) and each face
    using its most compact copy combination (:func:`face_copy_choice`). This order agrees with the
    reference data on 57 of the 66 seam vertices the shipped samples reveal, against 42 for plain
    file order (see docs/iuv_conversion.md).

    Returns:
        ``(S, 2) float64`` SMPL-UV (u, v) in [0, 1].
    """
    corner_uv = face_copy_choice(atlas)
    order = np.argsort(atlas.smpl_faces.max(axis=1), kind="stable")
    vertices = atlas.smpl_faces[order].reshape(-1)
    values = corner_uv[order].reshape(-1, 2)
    _, first = np.unique(vertices, return_index=True)
    vertex_uv = atlas.smpl_uv_copies[:, 0].copy()  # vertices in no face keep their first copy
    vertex_uv[vertices[first]] = values[first]
    return vertex_uv


def training_part_table(atlas: DensePoseAtlas, vertex_uv: np.ndarray) -> np.ndarray:
    """Rasterise the atlas faces on the chart grid ``(i/255, j/255)``.

    Returns:
        ``(24, 256, 256, 2) float64`` SMPL-UV (u, v) in [0, 1] indexed ``[part-1, i, j]`` (i ↔ DensePose
        U, j ↔ V), NaN at grid points covered by no face.
    """
    scale = CHART_DENOMINATOR["training"]
    table = np.full((24, GRID, GRID, 2), np.nan)
    corners = atlas.chart_uv[atlas.faces]  # (F, 3, 2)
    corner_uv = vertex_uv[atlas.atlas_to_smpl[atlas.faces]]  # (F, 3, 2)
    (x0, y0), (x1, y1), (x2, y2) = (corners[:, k].T for k in range(3))
    det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    keep = np.abs(det) > 1e-15
    eps = 1e-9
    low = np.clip(np.ceil(corners.min(1) * scale - eps), 0, GRID - 1).astype(np.int64)
    high = np.clip(np.floor(corners.max(1) * scale + eps), 0, GRID - 1).astype(np.int64)
    size = np.where(keep[:, None], high - low + 1, 0).clip(min=0)  # (F, 2) grid points per axis
    n_points = size[:, 0] * size[:, 1]
    face = np.repeat(np.arange(len(corners)), n_points)
    offset = np.arange(n_points.sum()) - np.repeat(np.cumsum(n_points) - n_points, n_points)
    i = low[face, 0] + offset // size[face, 1]
    j = low[face, 1] + offset % size[face, 1]
    x, y = i / scale, j / scale
    l0 = ((y1 - y2)[face] * (x - x2[face]) + (x2 - x1)[face] * (y - y2[face])) / det[face]
    l1 = ((y2 - y0)[face] * (x - x2[face]) + (x0 - x2)[face] * (y - y2[face])) / det[face]
    l2 = 1.0 - l0 - l1
    inside = (l0 >= -1e-12) & (l1 >= -1e-12) & (l2 >= -1e-12)
    face, i, j = face[inside], i[inside], j[inside]
    weights = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)
    values = np.einsum("nk,nkc->nc", weights, corner_uv[face])
    # Where faces share a grid point (their common edge), the later face in atlas order wins.
    part = atlas.face_part[face] - 1
    flat = (part * GRID + i) * GRID + j
    _, last = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - last
    table.reshape(-1, 2)[flat[last]] = values[last]
    return table


def released_part_table(atlas: DensePoseAtlas, vertex_uv: np.ndarray) -> np.ndarray:
    """Per-part linear interpolation over the atlas vertices on the chart grid ``(i/256, j/256)``.

    Returns:
        ``(24, 256, 256, 2) float64`` SMPL-UV (u, v) in [0, 1] indexed ``[part-1, i, j]``; never NaN
        (outside a part's convex hull the nearest atlas vertex's value is used).
    """
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import cKDTree

    scale = CHART_DENOMINATOR["released"]
    axis = np.arange(GRID) / scale
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    table = np.empty((24, GRID * GRID, 2))
    for part in range(1, 25):
        vertices = np.unique(atlas.faces[atlas.face_part == part])
        points = atlas.chart_uv[vertices]
        values = vertex_uv[atlas.atlas_to_smpl[vertices]]
        linear = LinearNDInterpolator(points, values)(grid)
        outside = np.isnan(linear).any(-1)
        if outside.any():
            _, nearest = cKDTree(points).query(grid[outside])
            linear[outside] = values[nearest]
        table[part - 1] = linear
    return table.reshape(24, GRID, GRID, 2)


def resolve_table(table: str, weight_free: bool) -> str:
    """``auto`` → ``clean`` on the weight-free path, ``training`` with the learned networks (what they were
    trained on); any other table as given.

    Raises:
        ValueError: ``table`` is not one of :data:`TABLE_CHOICES`.
    """
    if table not in TABLE_CHOICES:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLE_CHOICES)}")
    if table != "auto":
        return table
    return "clean" if weight_free else "training"


def texel_coords(uv: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (row, col) of UV points ``(..., 2)`` in texel units (texel centres at integers)."""
    col = ((uv[..., 0] + 1.0) * width - 1.0) / 2.0
    row = ((uv[..., 1] + 1.0) * height - 1.0) / 2.0
    return row, col


def texel_parts(lookup: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which part every texel of an ``(height, width)`` texture shows: the part most points of ``lookup``
    (``(25, 256, 256, 2)``, output convention) fall on, with their mean chart point.

    Returns:
        ``(part, chart, hit)``: ``(height·width,)`` int64 part (argmax of the counts; 0 where no point
        falls), ``(height·width, 2)`` mean chart point ``(U, V)`` in [0, 1] of that part's points, and
        ``(height·width,)`` bool, whether any point falls in the texel.
    """
    part_idx, i_idx, j_idx = np.nonzero(~np.isnan(lookup[..., 0]))
    row, col = texel_coords(lookup[part_idx, i_idx, j_idx], height, width)
    row, col = np.rint(row).astype(np.int64), np.rint(col).astype(np.int64)
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    n_texels, n_parts = height * width, lookup.shape[0]
    key = ((row * width + col) * n_parts + part_idx)[inside]
    size = n_texels * n_parts
    counts = np.bincount(key, minlength=size).reshape(n_texels, n_parts)
    sum_i = np.bincount(key, weights=i_idx[inside], minlength=size).reshape(n_texels, n_parts)
    sum_j = np.bincount(key, weights=j_idx[inside], minlength=size).reshape(n_texels, n_parts)
    part = np.argmax(counts, axis=1)
    hit = counts.sum(axis=1) > 0
    best = counts[np.arange(n_texels), part].clip(min=1)
    chart = np.stack([sum_i[np.arange(n_texels), part], sum_j[np.arange(n_texels), part]], axis=1) / best[:, None]
    return part, (chart / (GRID - 1)).astype(np.float32), hit


def without_strays(lookup: np.ndarray, side: int = STRAY_VOTE_SIDE) -> np.ndarray:
    """``lookup`` (``(25, 256, 256, 2)``) with every stray point moved home: a chart point of part ``p`` whose
    value lands on a texel that another part's points hold (:func:`texel_parts` at ``side``², the vote
    :func:`retarget.uvmap.layout.build_layout` labels texels with) takes the value of the nearest chart point
    (in the part's 256 × 256 chart grid) of ``p`` that lands on ``p``'s own texels. NaN points stay NaN;
    a new array."""
    from scipy import ndimage

    texel_part = texel_parts(lookup, side, side)[0].reshape(side, side)
    out = lookup.copy()
    for p in range(1, lookup.shape[0]):
        values = lookup[p]
        valid = ~np.isnan(values[..., 0])
        row, col = (np.clip(np.rint(c[valid]), 0, side - 1).astype(np.int64) for c in texel_coords(values, side, side))
        home = np.zeros_like(valid)
        home[valid] = texel_part[row, col] == p
        stray = valid & ~home
        if not stray.any() or not home.any():
            continue
        _, (ri, ci) = ndimage.distance_transform_edt(~home, return_indices=True)
        out[p][stray] = values[ri[stray], ci[stray]]
    return out


def build_lookup(atlas: DensePoseAtlas, table: str = "training") -> np.ndarray:
    """The full conversion table in output convention, ready for one gather per pixel.

    Args:
        atlas: the loaded atlas data.
        table: ``"training"``, ``"released"`` or ``"clean"``.

    Returns:
        ``(25, 256, 256, 2) float32`` indexed ``[I, U, V]`` (DensePose part and 0..255 values); channel 0
        is ``u = 2·u_gl − 1``, channel 1 is ``v = 1 − 2·v_gl`` (both in [-1, 1]); row ``I = 0`` and
        chart points outside every face (``training``) are NaN.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    if table == "clean":
        return without_strays(build_lookup(atlas, "training"))
    vertex_uv = smpl_vertex_uv(atlas)
    parts = training_part_table(atlas, vertex_uv) if table == "training" else released_part_table(
        atlas, vertex_uv)
    lookup = np.full((25, GRID, GRID, 2), np.nan, np.float32)
    lookup[1:, ..., 0] = np.clip(2.0 * parts[..., 0] - 1.0, -1.0, 1.0)
    lookup[1:, ..., 1] = np.clip(1.0 - 2.0 * parts[..., 1], -1.0, 1.0)
    return lookup
