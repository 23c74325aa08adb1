"""The ``precomputed`` backend: DensePose results read from IUV renders instead of a model.

Accepted sources for a video:
- a folder of per-frame IUV PNGs (DensePose layout on disk: B = I, G = U·255, R = V·255); the frame
  index is the last number in each file name (``frame_000012_IUV.png`` → 12);
- one ``.npz`` with ``iuv`` ``(T, H, W, 3) uint8`` (channels I, U·255, V·255), optionally
  ``frame_indices`` ``(T,)`` and person boxes, either ``boxes`` / ``scores`` (``(T, K, 4)`` /
  ``(T, K)``, score 0 = empty slot) or, as ``retarget densepose VIDEO --out FILE.npz`` writes them, one
  row per detection: ``boxes`` ``(M, 4)``, ``scores`` ``(M,)`` and ``frame_index`` ``(M,)`` (the frame
  of each box); ``iuv`` is streamed one frame at a time, so memory does not grow with the clip
  (compressed or not). Without boxes, a frame's only box is the one around all its person pixels.

Every frame, from either format, goes through the same check as a source IUV PNG
(:func:`densepose_adapter.iuv.check_iuv`) and fails with the same one-line error. Frames must have the
driver's (displayed) size, which :meth:`PrecomputedIUV.check_driver` checks before any frame is used;
frame indices must be unique (two PNGs numbered alike, or a repeated ``frame_indices`` entry, are an
error) and within the driver's frames (:meth:`PrecomputedIUV.coverage`); a folder numbered from an offset,
one run of exactly the driver's frame count, is read in order (:meth:`PrecomputedIUV.align_to`). Frames
without an entry have no person (``--on-missing`` decides what is shown).

Every problem is a :class:`SidecarError`: an :class:`densepose_adapter.errors.InputError` (one line
naming the file) that is also a ``ValueError``.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from densepose_adapter.errors import InputError
from densepose_adapter.iuv import check_iuv, read_iuv_png
from densepose_adapter.safe_npz import load_npz
from densepose_adapter.types import DensePoseResult

_NUMBER = re.compile(r"(\d+)")
#: Errors reading a damaged ``.npz`` member can raise (bad zip structure, CRC, deflate data, header).
_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError, SyntaxError,
               TypeError, MemoryError, OverflowError, NotImplementedError, RuntimeError)


#: Most people per frame a sidecar's ``boxes`` may list (it bounds what is read of them).
_MAX_PEOPLE = 256


def _regular(path: Path) -> bool:
    import os
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


class SidecarError(InputError, ValueError):
    """A damaged or mismatched IUV sidecar (one line naming the file)."""


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
                raise SidecarError(f"{path}: npz has no 'iuv' array")
            with archive.open("iuv.npy") as member:
                self.shape, self.dtype, fortran = _npy_header(member)
        if self.dtype != np.uint8 or fortran or len(self.shape) not in (3, 4) or self.shape[-1] != 3 or \
                0 in self.shape:
            raise SidecarError(f"{path}: 'iuv' must be a C-ordered uint8 (T, H, W, 3) array, "
                               f"got {self.dtype} {self.shape}")
        if len(self.shape) == 3:
            self.shape = (1, *self.shape)
        self.frame_bytes = int(np.prod(self.shape[1:]))
        self._archive = self._member = None
        self._next = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            if self._member is None or i < self._next:
                self._reopen()
            while self._next < i:  # skip forward
                self._member.read(self.frame_bytes)
                self._next += 1
            data = self._member.read(self.frame_bytes)
        except _NPZ_ERRORS as exc:
            self._member = None
            raise SidecarError(f"{self.path}: not a readable .npz ({_reason(exc)}); the file is damaged") from None
        if len(data) != self.frame_bytes:
            self._member = None
            raise SidecarError(f"{self.path}: 'iuv' ends early (frame {i} of {self.shape[0]}); the file is damaged")
        self._next += 1
        return np.frombuffer(data, np.uint8).reshape(self.shape[1:]).copy()

    def _reopen(self) -> None:
        if self._archive is not None:
            self._archive.close()
        self._archive = zipfile.ZipFile(self.path)
        self._member = self._archive.open("iuv.npy")
        _npy_header(self._member)
        self._next = 0


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:100]


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype, bool]:
    """``(shape, dtype, fortran order)`` of an ``.npy`` stream; a damaged header is a ``ValueError``."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        return tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran)
    except _NPZ_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy parses the header as Python text: it fails in many ways
        raise ValueError(f"damaged .npy header ({type(exc).__name__})") from None


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
                if index is None:
                    continue
                if not _regular(file):  # a FIFO would block the reader, a folder is not a frame
                    raise SidecarError(f"{file}: not a regular file; the IUV folder must hold PNG files only")
                if index in self._files:
                    raise SidecarError(f"{self.path}: two IUV PNGs for frame {index} ({self._files[index].name}, "
                                       f"{file.name}); keep one per frame")
                self._files[index] = file
            if not self._files:
                raise SidecarError(f"{self.path}: no IUV PNGs with a frame number in their name")
        elif self.path.suffix == ".npz" and self.path.is_file():
            try:
                self._array = _NpzFrames(self.path)
                # only the small arrays, each read after its declared size is checked (no bombs)
                small = max(1 << 20, len(self._array) * _MAX_PEOPLE * 4 * 8)
                data = load_npz(self.path, small, names=("frame_indices", "boxes", "scores", "frame_index"))
                indices, boxes = data.get("frame_indices"), data.get("boxes")
                scores, owners = data.get("scores"), data.get("frame_index")
            except SidecarError:
                raise
            except Exception as exc:  # noqa: BLE001 - a damaged member fails in many ways (even TokenError)
                raise SidecarError(f"{self.path}: not a readable .npz ({_reason(exc)}); the file is damaged or "
                                   "not an IUV sidecar") from None
            count = len(self._array)
            if indices is None:
                indices = np.arange(count)
            if indices.ndim != 1 or len(indices) != count or not np.issubdtype(indices.dtype, np.integer):
                raise SidecarError(f"{self.path}: 'frame_indices' must be {count} integers (one per 'iuv' frame), "
                                   f"got {indices.dtype} {indices.shape}")
            if len(indices) and int(indices.min()) < 0:
                raise SidecarError(f"{self.path}: 'frame_indices' holds a negative frame index ({int(indices.min())})")
            values, counts = np.unique(indices, return_counts=True)
            if (counts > 1).any():
                raise SidecarError(f"{self.path}: 'frame_indices' lists frame {int(values[counts > 1][0])} more than "
                                   "once; keep one entry per frame")
            self._index_of = {int(f): i for i, f in enumerate(indices)}
            if boxes is not None and boxes.ndim == 3:
                if boxes.shape[0] != count or boxes.shape[2] != 4 or not np.issubdtype(boxes.dtype, np.number) or (
                        scores is not None and (scores.shape != boxes.shape[:2]
                                                or not np.issubdtype(scores.dtype, np.number))):
                    raise SidecarError(f"{self.path}: 'boxes' must be ({count}, K, 4) and 'scores' ({count}, K), got "
                                       f"{boxes.shape} and {None if scores is None else scores.shape}")
                self._boxes, self._scores = boxes, scores
            elif boxes is not None and boxes.ndim == 2 and owners is not None:
                self._boxes = self._group_detections(boxes, scores, owners)
        else:
            raise SidecarError(f"{self.path}: expected a folder of *_IUV.png files or an .npz")

    def _group_detections(self, boxes: np.ndarray, scores: np.ndarray | None, owners: np.ndarray) -> dict:
        """One row per detection (``boxes`` (M, 4), ``scores`` (M,), ``frame_index`` (M,)) → per frame."""
        m = len(boxes)
        if boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.number) or owners.shape != (m,) or \
                not np.issubdtype(owners.dtype, np.integer) or (scores is not None and (
                    scores.shape != (m,) or not np.issubdtype(scores.dtype, np.number))):
            raise SidecarError(f"{self.path}: per-detection 'boxes' must be (M, 4) with 'frame_index' (M,) integers "
                               f"and 'scores' (M,), got {boxes.shape}, {owners.shape} and "
                               f"{None if scores is None else scores.shape}")
        scores = np.ones(m, np.float32) if scores is None else scores
        grouped: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for frame in np.unique(owners):
            rows = owners == frame
            grouped[int(frame)] = (boxes[rows].astype(np.float32), scores[rows].astype(np.float32))
        return grouped

    def cache_key(self) -> str:
        return f"precomputed:{self.path.resolve()}"

    @property
    def has_boxes(self) -> bool:
        """Whether the sidecar gives person boxes (an ``.npz`` with ``boxes``); otherwise each frame's
        only box is the one around all its person pixels."""
        return self._boxes is not None

    def __contains__(self, index: int) -> bool:
        """Whether frame ``index`` has an entry (a dict lookup: :attr:`frame_indices` sorts every call)."""
        return index in self._files if self._files else index in self._index_of

    @property
    def frame_indices(self) -> list[int]:
        return sorted(self._files) if self._files else sorted(self._index_of)

    def frame_sizes(self) -> dict[tuple[int, int], Path | None]:
        """``(width, height)`` of the frames: one entry per distinct size, with a file having it (PNGs)."""
        if self._array is not None:
            return {(int(self._array.shape[2]), int(self._array.shape[1])): None}
        from densepose_adapter.image_header import read_image_header

        sizes: dict[tuple[int, int], Path | None] = {}
        for file in self._files.values():
            try:
                header = read_image_header(file)  # the header only: a huge size announced is reported, not decoded
            except InputError as exc:
                raise SidecarError(f"{file}: not a readable image ({_reason(exc).split(': ', 1)[-1]}); the file is "
                                   "damaged or not a PNG") from None
            sizes.setdefault((header.width, header.height), file)
        return sizes

    def check_driver(self, width: int, height: int, driver: str | Path) -> None:
        """Every frame must have the driver's displayed size ``width x height``.

        Raises:
            SidecarError: naming both sizes (and the odd PNG in a folder).
        """
        for (w, h), file in self.frame_sizes().items():
            if (w, h) != (width, height):
                raise SidecarError(f"{file or self.path}: IUV frames are {w}x{h} but the driver {driver} is "
                                   f"{width}x{height}; compute the DensePose maps on this video as displayed")

    def align_to(self, frame_count: int) -> int:
        """Read a folder numbered from an offset as the driver's frames, when that reading is the only one.

        A folder of PNGs whose frame numbers are exactly ``k, k+1, ..., k+frame_count-1`` with ``k > 0`` (the
        frames of a clip cut from a longer video, keeping the long video's numbers) is read as frames
        ``0 .. frame_count-1``, in order. Anything else (gaps, another count, an unknown ``frame_count`` of 0,
        an ``.npz``, whose ``frame_indices`` are explicit) is left as it is, and :meth:`coverage` reports it.

        Returns:
            ``k``, the number subtracted from every file's frame number (0: unchanged).
        """
        if not self._files or frame_count <= 0:
            return 0
        indices = sorted(self._files)
        first = indices[0]
        if first <= 0 or len(indices) != frame_count or indices[-1] - first != frame_count - 1:
            return 0
        self._files = {index - first: file for index, file in self._files.items()}
        return first

    def align_note(self, offset: int, frame_count: int, whose: str = "driver's") -> str:
        """The ``note:`` text for an :meth:`align_to` that returned ``offset`` (``whose``: "driver's", "input's")."""
        return (f"{self.path}: IUV frames {offset}..{offset + frame_count - 1} read as the {whose} frames "
                f"0..{frame_count - 1} (the folder numbers one run of exactly its {frame_count} frames)")

    def coverage(self, frame_count: int) -> tuple[int, list[int]]:
        """``(frames without an entry, entries beyond the driver's last frame)`` for a ``frame_count``-frame driver."""
        indices = self.frame_indices
        extra = [i for i in indices if i >= frame_count]
        return frame_count - (len(indices) - len(extra)), extra

    def get(self, index: int, image_hw: tuple[int, int] | None = None) -> DensePoseResult:
        """Result for frame ``index`` (no person when it has no entry), checked like any IUV image.

        Raises:
            SidecarError: a damaged frame, a part index above 24, or a frame whose size is not ``image_hw``.
        """
        iuv = None
        boxes = scores = None
        if self._files:
            if index in self._files:
                where = self._files[index]
                try:
                    iuv = read_iuv_png(where)
                except InputError as exc:
                    raise SidecarError(str(exc)) from None
        elif index in self._index_of:
            i = self._index_of[index]
            iuv = self._array[i]
            where = f"{self.path} (frame {index})"
            try:
                iuv = check_iuv(iuv, str(where))
            except InputError as exc:
                raise SidecarError(str(exc)) from None
            if isinstance(self._boxes, dict):
                boxes, scores = self._boxes.get(index, (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
            elif self._boxes is not None:
                boxes = self._boxes[i]
                scores = self._scores[i] if self._scores is not None else np.ones(len(boxes), np.float32)
        if iuv is None:
            hw = image_hw or self._any_hw()
            return DensePoseResult.from_iuv(np.zeros((*hw, 3), np.uint8))
        if image_hw is not None and tuple(iuv.shape[:2]) != tuple(image_hw):
            raise SidecarError(f"{where}: IUV frame is {iuv.shape[1]}x{iuv.shape[0]} but the driver frame is "
                               f"{image_hw[1]}x{image_hw[0]}; compute the DensePose maps on this video as displayed")
        result = DensePoseResult.from_iuv(iuv)
        if boxes is not None:
            keep = np.asarray(scores) > 0
            result.boxes = np.asarray(boxes, np.float32)[keep]
            result.scores = np.asarray(scores, np.float32)[keep]
        return result

    def _any_hw(self) -> tuple[int, int]:
        if self._files:
            return read_iuv_png(next(iter(self._files.values()))).shape[:2]
        return tuple(self._array.shape[1:3])
