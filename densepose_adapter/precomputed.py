"""The ``precomputed`` backend: DensePose results read from IUV renders instead of a model.

Accepted sources for a video:
- a folder of per-frame IUV PNGs (DensePose layout on disk: B = I, G = U·255, R = V·255); the frame
  index is the last number in each file name (``frame_000012_IUV.png`` → 12);
- one ``.npz`` with ``iuv`` ``(T, H, W, 3) uint8`` (channels I, U·255, V·255), optionally
  ``frame_indices`` ``(T,)`` and ``boxes`` / ``scores`` (``(T, K, 4)`` / ``(T, K)``); ``iuv`` is
  streamed one frame at a time, so memory does not grow with the clip (compressed or not).

Frames without an entry have no person.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from densepose_adapter.types import DensePoseResult
from retarget.io.iuv import read_iuv_png

_NUMBER = re.compile(r"(\d+)")


def frame_index_from_name(name: str) -> int | None:
    """The last integer in a file stem, or ``None``."""
    numbers = _NUMBER.findall(Path(name).stem)
    return int(numbers[-1]) if numbers else None


class _NpzFrames:
    """The ``iuv`` array of an ``.npz``, read one frame at a time (stored or deflated members).

    Frames are read sequentially from the member's stream; asking for an earlier frame reopens it.
    Memory is one frame, however long the video (the pipeline reads frames in order, twice).
    """

    def __init__(self, path: Path):
        self.path = path
        with zipfile.ZipFile(path) as archive:
            if "iuv.npy" not in archive.namelist():
                raise ValueError(f"{path}: npz has no 'iuv' array")
            with archive.open("iuv.npy") as member:
                self.shape, self.dtype, fortran = _npy_header(member)
        if self.dtype != np.uint8 or fortran or len(self.shape) not in (3, 4) or self.shape[-1] != 3:
            raise ValueError(f"{path}: 'iuv' must be a C-ordered uint8 (T, H, W, 3) array, "
                             f"got {self.dtype} {self.shape}")
        if len(self.shape) == 3:
            self.shape = (1, *self.shape)
        self.frame_bytes = int(np.prod(self.shape[1:]))
        self._archive = self._member = None
        self._next = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        if self._member is None or i < self._next:
            self._reopen()
        while self._next < i:  # skip forward
            self._member.read(self.frame_bytes)
            self._next += 1
        data = self._member.read(self.frame_bytes)
        if len(data) != self.frame_bytes:
            raise ValueError(f"{self.path}: 'iuv' ends early (frame {i} of {self.shape[0]})")
        self._next += 1
        return np.frombuffer(data, np.uint8).reshape(self.shape[1:]).copy()

    def _reopen(self) -> None:
        if self._archive is not None:
            self._archive.close()
        self._archive = zipfile.ZipFile(self.path)
        self._member = self._archive.open("iuv.npy")
        _npy_header(self._member)
        self._next = 0


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    return tuple(shape), np.dtype(dtype), bool(fortran)


class PrecomputedIUV:
    """Per-frame DensePose results from a folder of IUV PNGs or an ``.npz``.

    Args:
        path: folder or ``.npz`` file.
    """

    name = "precomputed"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._files: dict[int, Path] = {}
        self._array: _NpzFrames | None = None
        self._index_of: dict[int, int] = {}
        self._boxes = self._scores = None
        if self.path.is_dir():
            for file in sorted(self.path.glob("*.png")):
                index = frame_index_from_name(file.name)
                if index is not None:
                    self._files[index] = file
            if not self._files:
                raise ValueError(f"{self.path}: no IUV PNGs with a frame number in their name")
        elif self.path.suffix == ".npz" and self.path.is_file():
            try:
                self._array = _NpzFrames(self.path)
                data = np.load(self.path, allow_pickle=False)  # lazy per key: only the small arrays are read
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ValueError(f"{self.path}: not a readable .npz ({exc})") from None
            indices = data["frame_indices"] if "frame_indices" in data else np.arange(len(self._array))
            self._index_of = {int(f): i for i, f in enumerate(indices)}
            if "boxes" in data and data["boxes"].ndim == 3:
                self._boxes = data["boxes"]
                self._scores = data["scores"] if "scores" in data else None
        else:
            raise ValueError(f"{self.path}: expected a folder of *_IUV.png files or an .npz")

    def cache_key(self) -> str:
        return f"precomputed:{self.path.resolve()}"

    @property
    def frame_indices(self) -> list[int]:
        return sorted(self._files) if self._files else sorted(self._index_of)

    def get(self, index: int, image_hw: tuple[int, int] | None = None) -> DensePoseResult:
        """Result for frame ``index``; resized (nearest) to ``image_hw`` when it differs."""
        iuv = None
        boxes = scores = None
        if self._files:
            if index in self._files:
                iuv = read_iuv_png(self._files[index])
        elif index in self._index_of:
            i = self._index_of[index]
            iuv = self._array[i]
            if self._boxes is not None:
                boxes = self._boxes[i]
                scores = self._scores[i] if self._scores is not None else np.ones(len(boxes), np.float32)
        if iuv is None:
            hw = image_hw or self._any_hw()
            return DensePoseResult.from_iuv(np.zeros((*hw, 3), np.uint8))
        scale = None
        if image_hw is not None and tuple(iuv.shape[:2]) != tuple(image_hw):
            import cv2

            scale = (image_hw[1] / iuv.shape[1], image_hw[0] / iuv.shape[0])
            iuv = cv2.resize(iuv, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_NEAREST)
        result = DensePoseResult.from_iuv(iuv)
        if boxes is not None:
            keep = np.asarray(scores) > 0
            boxes = np.asarray(boxes, np.float32)[keep]
            if scale is not None:
                boxes = boxes * np.array([scale[0], scale[1], scale[0], scale[1]], np.float32)
            result.boxes, result.scores = boxes, np.asarray(scores, np.float32)[keep]
        return result

    def _any_hw(self) -> tuple[int, int]:
        if self._files:
            return read_iuv_png(next(iter(self._files.values()))).shape[:2]
        return tuple(self._array.shape[1:3])
