"""Rasterising the photo's pixel grid into texture space (dense where splatting leaves gaps).

:func:`retarget.ops.warp.inverse_grid_sample` splats every person pixel into the four texels around its UV.
Where the texture is finer than the photo there (a face of 30 pixels across spread over a head chart of
100 texels; hands; any part of a small person), the splats form a sparse lattice, and what lies between
them was seen by the photo all the same. :func:`rasterize_to_texture` treats every 2×2 block of person
pixels as two triangles of a mesh, places their corners at their UVs and interpolates the pixels' values
(e.g. their own (x, y)) over the texels inside: a dense texture wherever the photo saw the surface.

Triangles whose corners lie on different parts, or with an edge longer than ``max_edge`` texels (a fold,
a part border or a seam of the texture between them), are left out.

Conventions (:mod:`retarget.ops.coords`): UV ``(u, v)`` in ``[-1, 1]``, u along the texture's width. Texel
``(r, c)`` is at ``col = (u + 1) / 2 · Wt - offset``, ``row = (v + 1) / 2 · Ht - offset``: ``offset = 0``
is the texel placement of :func:`~retarget.ops.warp.inverse_grid_sample` (the reference's splat),
``offset = 0.5`` that of ``grid_sample(align_corners=False)``.
"""

from __future__ import annotations

import numpy as np
import torch

from retarget.ops.coords import check_single_photo

#: Triangles with an edge longer than this many texels are not rasterised (see the module docstring).
MAX_EDGE = 8.0


def rasterize_to_texture(values: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, texture_hw: tuple[int, int],
                         parts: np.ndarray | None = None, *, max_edge: float = MAX_EDGE, offset: float = 0.0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate per-pixel ``values`` over the texels covered by the photo's pixel grid placed at its UVs.

    Every 2×2 block of person pixels gives the triangles (top-left, top-right, bottom-left) and
    (top-right, bottom-right, bottom-left); a block with exactly three person pixels gives the triangle of
    those three. A triangle is kept when its corners share one part (``parts``) and each edge is at most
    ``max_edge`` texels long. A texel whose centre lies inside kept triangles takes the barycentric
    interpolation of the corner values of the one with the largest area in texture space (the least
    foreshortened view of that place).

    Args:
        values: ``(1, C, H, W)`` per-pixel values; uv: ``(1, 2, H, W)`` UV in ``[-1, 1]`` (background
            ignored through ``mask``); mask: ``(1, 1, H, W)``, person where ``> 0.5``;
        texture_hw: ``(Ht, Wt)``; parts: optional ``(H, W)`` int label per pixel (corners must agree);
        max_edge: longest triangle edge, in texels; offset: texel placement (module docstring).

    Returns:
        ``(texture, covered)``: ``(1, C, Ht, Wt)`` (0 where not covered) and ``(1, 1, Ht, Wt)`` bool.
    """
    check_single_photo(values, uv, mask)
    th, tw = texture_hw
    c, h, w = values.shape[1:]
    val = values[0].detach().cpu().float().numpy().reshape(c, -1)
    person = (mask[0, 0] > 0.5).detach().cpu().numpy()
    coords = uv[0].detach().cpu().double().numpy()
    col = ((coords[0] + 1.0) / 2.0 * tw - offset).reshape(-1)
    row = ((coords[1] + 1.0) / 2.0 * th - offset).reshape(-1)
    person &= np.isfinite(coords).all(axis=0)
    label = np.zeros((h, w), np.int64) if parts is None else np.asarray(parts, np.int64)

    tri = _triangles(person, label, h, w)
    out = np.zeros((c, th * tw), np.float32)
    covered = np.zeros(th * tw, bool)
    if len(tri):
        x, y = col[tri], row[tri]  # (T, 3)
        edges = np.stack([np.hypot(x[:, i] - x[:, j], y[:, i] - y[:, j]) for i, j in ((0, 1), (1, 2), (2, 0))], 1)
        area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
        keep = (edges.max(1) <= max_edge) & (np.abs(area) > 1e-12)
        tri, x, y, area = tri[keep], x[keep], y[keep], area[keep]
        order = np.argsort(np.abs(area), kind="stable")  # by area: a larger triangle has a larger index
        tri, x, y, area = tri[order], x[order], y[order], area[order]
        r0, r1 = np.ceil(y.min(1)).astype(np.int64), np.floor(y.max(1)).astype(np.int64)
        c0, c1 = np.ceil(x.min(1)).astype(np.int64), np.floor(x.max(1)).astype(np.int64)
        span = np.maximum(r1 - r0, c1 - c0) + 1
        hits_t, hits_i, hits_w = [], [], []
        for size in np.unique(span[span > 0]):  # triangles grouped by the size of their texel box
            sel = np.nonzero(span == size)[0]
            dr, dc = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            rr = r0[sel, None] + dr.reshape(1, -1)
            cc = c0[sel, None] + dc.reshape(1, -1)
            xs, ys, ar = x[sel], y[sel], area[sel, None]
            # barycentric weights of the texel centres (cc, rr)
            px, py = cc - xs[:, :1], rr - ys[:, :1]
            l1 = (px * (ys[:, 2:] - ys[:, :1]) - (xs[:, 2:] - xs[:, :1]) * py) / ar
            l2 = ((xs[:, 1:2] - xs[:, :1]) * py - px * (ys[:, 1:2] - ys[:, :1])) / ar
            l0 = 1.0 - l1 - l2
            eps = 1e-9
            inside = (l0 >= -eps) & (l1 >= -eps) & (l2 >= -eps) & (rr >= 0) & (rr < th) & (cc >= 0) & (cc < tw)
            t_idx, k_idx = np.nonzero(inside)
            hits_t.append(sel[t_idx])
            hits_i.append(rr[t_idx, k_idx] * tw + cc[t_idx, k_idx])
            hits_w.append(np.stack([l0[t_idx, k_idx], l1[t_idx, k_idx], l2[t_idx, k_idx]], 1))
        if hits_t:
            t_all, i_all, w_all = np.concatenate(hits_t), np.concatenate(hits_i), np.concatenate(hits_w)
            keep = largest_per_index(i_all, t_all, th * tw)  # triangles are sorted by area: the largest
            t_all, i_all, w_all = t_all[keep], i_all[keep], w_all[keep]
            corner = val[:, tri[t_all]]  # (C, K, 3)
            out[:, i_all] = (corner * w_all[None]).sum(-1)
            covered[i_all] = True
    texture = torch.from_numpy(out.reshape(c, th, tw))[None].to(values)
    return texture, torch.from_numpy(covered.reshape(1, 1, th, tw)).to(values.device)


def largest_per_index(index: np.ndarray, key: np.ndarray, size: int) -> np.ndarray:
    """``(n,) bool``: the entries whose ``key`` is the largest of all entries with the same ``index``.

    What a sequential ``out[index] = ...`` in increasing ``key`` order would leave, made explicit: NumPy does
    not promise which of repeated fancy-index writes stays. Keys must differ within one index.

    Args:
        index: ``(n,)`` int64 in ``[0, size)``; key: ``(n,)`` int64 ``>= 0``; size: number of indices.
    """
    best = np.full(size, -1, np.int64)
    np.maximum.at(best, index, key)
    return best[index] == key


def _triangles(person: np.ndarray, label: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(T, 3)`` flat pixel indices of the triangles of :func:`rasterize_to_texture` (corners share a label)."""
    if h < 2 or w < 2:
        return np.zeros((0, 3), np.int64)
    idx = np.arange(h * w).reshape(h, w)
    a, b, cc, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    ok = person.reshape(-1)
    lab = label.reshape(-1)

    def valid(i, j, k):
        return ok[i] & ok[j] & ok[k] & (lab[i] == lab[j]) & (lab[j] == lab[k])

    out = []
    # the two triangles of a block, and for a block without its bottom-left or top-right pixel the other split
    for corners, only_if in (((a, b, cc), None), ((b, d, cc), None), ((a, b, d), ~ok[cc]), ((a, d, cc), ~ok[b])):
        sel = valid(*corners) if only_if is None else valid(*corners) & only_if
        out.append(np.stack([x[sel] for x in corners], 1))
    return np.concatenate(out, 0)
