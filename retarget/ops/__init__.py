"""Pure tensor functions for coordinate-based texture warping (no I/O, no printing).

Conventions are documented in :mod:`retarget.ops.coords`.
"""

from retarget.ops.coords import BACKGROUND_UV, batched_meshgrid, make_meshgrid, split_uv_mask
from retarget.ops.fill import (
    BodyCompletion,
    body_colour_texture,
    body_completion,
    body_fill,
    nearest_fill,
    part_nearest_fill,
    surface_nearest_fill,
)
from retarget.ops.leaks import background_leaks, near_silhouette
from retarget.ops.photo import SeamSmoothing, nearest_splat, read_seen, render_from_photo, sample_image
from retarget.ops.raster import rasterize_to_texture
from retarget.ops.seams import coordinate_seams, smooth_seams
from retarget.ops.warp import (
    colour_texture_from_source,
    coordinates_to_target,
    inverse_grid_sample,
    render_target,
    sample_texture,
)

__all__ = [
    "BACKGROUND_UV",
    "BodyCompletion",
    "SeamSmoothing",
    "background_leaks",
    "batched_meshgrid",
    "body_colour_texture",
    "body_completion",
    "body_fill",
    "colour_texture_from_source",
    "coordinate_seams",
    "coordinates_to_target",
    "inverse_grid_sample",
    "make_meshgrid",
    "near_silhouette",
    "nearest_splat",
    "nearest_fill",
    "part_nearest_fill",
    "rasterize_to_texture",
    "surface_nearest_fill",
    "read_seen",
    "render_from_photo",
    "render_target",
    "sample_image",
    "sample_texture",
    "smooth_seams",
    "split_uv_mask",
]
