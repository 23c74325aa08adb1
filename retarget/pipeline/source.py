"""From a source photo and its DensePose IUV (or UV) to a prepared :class:`SourceState` at ``size``²."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from retarget.pipeline.framing import SquareCrop, box_to_crop_params, crop_image, mask_box
from retarget.pipeline.pair import Models, SourceState, prepare_source


@dataclass
class SourceCrop:
    """The source photo framed like the training data.

    Attributes:
        photo: ``(h, w, 3) uint8`` the full photo.
        person_mask: ``(h, w)`` bool person pixels in the full photo.
        crop: square window of the photo.
        image: ``(S, S, 3) uint8`` cropped, resized photo.
        uv: ``(S, S, 2) float32`` SMPL-UV of the crop, NaN background.
        iuv: ``(S, S, 3) uint8`` cropped IUV when the source came with IUV, else ``None``.
    """

    photo: np.ndarray
    person_mask: np.ndarray
    crop: SquareCrop
    image: np.ndarray
    uv: np.ndarray
    iuv: np.ndarray | None = None


def frame_source(photo: np.ndarray, *, iuv: np.ndarray | None = None, uv: np.ndarray | None = None,
                 size: int = 256, table: str = "training") -> SourceCrop:
    """Crop the photo around its person (square, person filling 90 %) and resize to ``size``.

    Exactly one of ``iuv`` (``(h, w, 3) uint8 [I, U, V]``) or ``uv`` (``(h, w, 2)`` NaN background)
    must describe the photo, at the photo's size.

    Raises:
        ValueError: no person pixels, or sizes that do not match.
    """
    if (iuv is None) == (uv is None):
        raise ValueError("give exactly one of iuv or uv")
    dense = iuv if iuv is not None else uv
    if dense.shape[:2] != photo.shape[:2]:
        raise ValueError(f"DensePose map is {dense.shape[1]}x{dense.shape[0]} but the photo is "
                         f"{photo.shape[1]}x{photo.shape[0]}")
    person = person_mask(dense)
    box = mask_box(person)
    if box is None:
        raise ValueError("no person found in the source photo's DensePose map; use a photo that shows one "
                         "person clearly, whole body if possible")
    cx, cy, side = box_to_crop_params(box)
    crop = SquareCrop.around(cx, cy, side)
    image = crop_image(photo, crop, size, replicate=True)
    uv_crop, iuv_crop = cut_dense(dense, crop, size, table)
    return SourceCrop(photo=photo, person_mask=person, crop=crop, image=image, uv=uv_crop, iuv=iuv_crop)


def person_mask(dense: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool person pixels of a DensePose map: an IUV ``(h, w, 3) uint8`` (part > 0) or a UV
    ``(h, w, 2)`` map (not NaN)."""
    return dense[..., 0] > 0 if dense.shape[-1] == 3 else ~np.isnan(dense).all(axis=-1)


def cut_dense(dense: np.ndarray, crop: SquareCrop, size: int, table: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(uv, iuv)`` of a DensePose map cut with ``crop`` to ``size``² (nearest; outside the map: background).

    An IUV map is cut, then converted with ``table`` (``iuv`` is the cut IUV); a UV map is cut as it is
    (``iuv`` is ``None``). ``uv``: ``(size, size, 2) float32``, NaN background.
    """
    if dense.shape[-1] == 3:
        from retarget.uvmap import iuv_to_uv

        iuv_crop = crop_image(dense, crop, size, nearest=True)
        return iuv_to_uv(iuv_crop, table=table).astype(np.float32, copy=False), iuv_crop
    uv_crop = crop_image(np.nan_to_num(dense, nan=-2.0), crop, size, nearest=True, border_value=(-2.0, -2.0))
    return np.where(uv_crop <= -1.5, np.nan, uv_crop).astype(np.float32), None


def prepare_source_crop(source: SourceCrop, models: Models | None, device: str = "cpu",
                        fill: str = "body") -> SourceState:
    """Run the source-only pipeline work (coordinate texture, inpainting or weight-free ``fill``, refiner
    source branch) once."""
    image = torch.from_numpy(source.image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
    uv = torch.from_numpy(np.ascontiguousarray(source.uv)).permute(2, 0, 1)[None].to(device)
    return prepare_source(image, uv, models, fill=fill)
