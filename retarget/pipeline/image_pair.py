"""``retarget image`` on any photo: the pair framed around its people, rendered at a crop, pasted back.

The networks take the photo at its own size (sides multiples of 4, source and target maps of one size: the
reference's setting, :func:`retarget.pipeline.pair.run_pair`). A large photo, or one of another size, is
framed instead, as ``retarget video`` frames its source and driver: the source photo and its map are cut
around the source person, the target map around the target person, both resized to ``size`` x ``size``;
the render is pasted back into a frame of the target map's size over the source's background colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retarget.pipeline.framing import SquareCrop, box_to_crop_params, feather, mask_box, paste_crop
from retarget.pipeline.source import cut_dense, frame_source, person_mask

#: Largest side rendered at the photo's own size by default (above it the pair is framed: the networks were
#: trained at 256², and the weight-free texture of a photo-sized frame grows with its area).
NATIVE_MAX = 1024

#: Crop side of a framed pair unless ``--size`` says otherwise (the official weights' size).
FRAMED_SIZE = 256

#: Softening of the pasted person's edge, in crop pixels (``retarget video``'s default).
FEATHER_PX = 1.5


def framing_reason(photo_hw: tuple[int, int], target_hw: tuple[int, int]) -> str | None:
    """Why a pair cannot run at the photo's own size (``None``: it can). It can when the sides are multiples of
    4, at least the networks' minimum and at most :data:`NATIVE_MAX`, and the target map has the photo's size."""
    from retarget.pipeline.pair import MIN_SIDE

    h, w = photo_hw
    if tuple(target_hw) != (h, w):
        return f"the target map is {target_hw[1]}x{target_hw[0]}, the photo {w}x{h}"
    if max(h, w) > NATIVE_MAX:
        return f"the photo is {w}x{h}, above {NATIVE_MAX} px"
    if h % 4 or w % 4:
        return f"the photo is {w}x{h}, not a multiple of 4 on each side"
    if min(h, w) < MIN_SIDE:
        return f"the photo is {w}x{h}, under {MIN_SIDE} px"
    return None


@dataclass
class FramedPair:
    """A source photo and a target pose, each cut around its person at ``size`` x ``size``.

    Attributes:
        image: ``(S, S, 3) uint8`` the source crop; uv: ``(S, S, 2)`` its SMPL-UV (NaN background).
        target_uv: ``(S, S, 2)`` the target pose's crop (all NaN when it shows no person).
        target_crop: where the target crop lies in the target's frame, ``None`` when it shows no person.
        frame_hw: ``(H, W)`` of the target map (the output's size).
    """

    image: np.ndarray
    uv: np.ndarray
    target_uv: np.ndarray
    target_crop: SquareCrop | None
    frame_hw: tuple[int, int]


def shows_person(dense: np.ndarray) -> bool:
    """Whether a DensePose map (IUV or UV, :func:`~retarget.pipeline.source.person_mask`) shows anybody."""
    return bool(person_mask(dense).any())


def frame_pair(photo: np.ndarray, source: np.ndarray, target: np.ndarray, size: int, table: str) -> FramedPair:
    """Cut ``photo`` (``(h, w, 3) uint8``) with its DensePose map ``source`` and the ``target`` map (any size)
    around their people, at ``size``².

    Maps are IUV (``(·, ·, 3) uint8``, converted with ``table`` after the cut, so a large photo's map is never
    converted whole) or UV (``(·, ·, 2)``, NaN background): :func:`~retarget.pipeline.source.cut_dense`.

    Raises:
        ValueError: the source map shows no person.
    """
    framed = (frame_source(photo, iuv=source, size=size, table=table) if source.shape[-1] == 3
              else frame_source(photo, uv=source, size=size))
    box = mask_box(person_mask(target))
    if box is None:
        return FramedPair(framed.image, framed.uv, np.full((size, size, 2), np.nan, np.float32), None,
                          target.shape[:2])
    crop = SquareCrop.around(*box_to_crop_params(box))
    cut, _ = cut_dense(target, crop, size, table)
    return FramedPair(framed.image, framed.uv, cut, crop, target.shape[:2])


def paste_pair(pair: FramedPair, result) -> np.ndarray:
    """The ``(H, W, 3)`` float output frame of a framed pair's :class:`~retarget.pipeline.pair.PairResult`: the
    source's background colour, the rendered person pasted at the target crop (edge softened)."""
    h, w = pair.frame_hw
    background = result.source.background_rgb.detach().float().cpu().numpy()
    frame = np.empty((h, w, 3), np.float32)
    frame[:] = background
    if pair.target_crop is None:
        return frame
    rgb = result.target.output[0].permute(1, 2, 0).detach().float().cpu().numpy()
    alpha = result.target.paste_alpha[0, 0].detach().float().cpu().numpy()
    return paste_crop(frame, pair.target_crop, rgb, feather(alpha, FEATHER_PX))
