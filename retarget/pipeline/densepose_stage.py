"""The per-frame DensePose stage: a backend (model or precomputed) behind a content-keyed disk cache.

Cache layout: ``cache_dir()/densepose/<driver-sha256[:20]>-<settings-sha256[:12]>/<frame:07d>.npz``,
one file per frame, written atomically as soon as the frame is computed, so an interrupted run
resumes where it stopped. Each entry stores the full-frame IUV, boxes and scores plus a SHA-256 of
them; an entry whose checksum does not match (or that cannot be read) is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from densepose_adapter.types import DensePoseResult
from densepose_adapter.safe_npz import NpzError, load_npz
from retarget.io.atomic import remove_stale_temporaries, remove_unless_folder, remove_unless_regular, temporary_prefix
from retarget.io.hashing import cached_file_sha256
from retarget.paths import cache_dir


#: Budget of a cache entry's ``iuv`` when the frame size is not known (an 8K frame), and of its other arrays.
MAX_ENTRY_IUV_BYTES = 3 * 7680 * 4320
MAX_ENTRY_BOX_BYTES = 1 << 20


def _checksum(iuv: np.ndarray, boxes: np.ndarray, scores: np.ndarray, keyframe: np.ndarray | None = None) -> str:
    digest = hashlib.sha256()
    for array in (iuv, boxes, scores) + ((keyframe,) if keyframe is not None else ()):
        array = np.ascontiguousarray(array)
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class DensePoseCache:
    """Per-frame result store for one driver video and one backend configuration."""

    def __init__(self, driver: str | Path, backend_key: str, root: Path | None = None):
        settings = hashlib.sha256(backend_key.encode()).hexdigest()[:12]
        self.folder = (root or cache_dir() / "densepose") / f"{cached_file_sha256(driver)[:20]}-{settings}"
        self.hits = 0
        self.corrupt = 0
        self._swept = False

    def _path(self, index: int) -> Path:
        return self.folder / f"{index:07d}.npz"

    def load(self, index: int, image_hw: tuple[int, int] | None = None) -> DensePoseResult | None:
        """The cached result of frame ``index``, or ``None`` (missing, unreadable or corrupt: :meth:`load_entry`)."""
        return self.load_entry(index, image_hw)[0]

    def load_entry(self, index: int, image_hw: tuple[int, int] | None = None
                   ) -> tuple[DensePoseResult | None, bool | None]:
        """``(result, keyframe)`` of frame ``index``: ``keyframe`` is whether DensePose ran on it (entries
        of a keyframe stage, :mod:`retarget.pipeline.keyframes`), ``None`` when the entry does not say.

        Whatever is found is judged before it is read: an entry that is not a regular file (a folder, a
        FIFO), not an ``.npz`` of the expected arrays, or whose declared sizes exceed those of a frame of
        ``image_hw`` (a decompression bomb) counts as corrupt and is recomputed, never trusted.
        """
        path = self._path(index)
        if not os.path.lexists(path):
            return None, None
        iuv_bytes = 3 * image_hw[0] * image_hw[1] if image_hw is not None else MAX_ENTRY_IUV_BYTES
        try:
            data = load_npz(path, {"iuv": iuv_bytes, "*": MAX_ENTRY_BOX_BYTES},
                            names=("iuv", "boxes", "scores", "keyframe", "checksum"),
                            required=("iuv", "boxes", "scores", "checksum"))
            iuv, boxes, scores = data["iuv"], data["boxes"], data["scores"]
            keyframe = data.get("keyframe")
            stored = str(data["checksum"])
        except NpzError:
            self.corrupt += 1
            return None, None
        if iuv.ndim != 3 or iuv.dtype != np.uint8 or stored != _checksum(iuv, boxes, scores, keyframe):
            self.corrupt += 1
            return None, None
        self.hits += 1
        result = DensePoseResult(image_hw=(iuv.shape[0], iuv.shape[1]), boxes=boxes, scores=scores, iuv=iuv)
        return result, (bool(keyframe) if keyframe is not None else None)

    def store(self, index: int, result: DensePoseResult, keyframe: bool | None = None) -> None:
        """Write frame ``index`` atomically (``keyframe``: record whether DensePose ran on it), replacing
        whatever the entry was (a file, a folder, a FIFO)."""
        remove_unless_folder(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        boxes = np.asarray(result.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(result.scores, np.float32).reshape(-1)
        flag = {} if keyframe is None else {"keyframe": np.array(bool(keyframe))}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, iuv=result.iuv, boxes=boxes, scores=scores, **flag,
                            checksum=np.array(_checksum(result.iuv, boxes, scores, flag.get("keyframe"))))
        if not self._swept:  # temporaries of a run killed mid-write (never those of a live one)
            remove_stale_temporaries(self.folder, "tmp")
            self._swept = True
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=temporary_prefix("tmp"), suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getvalue())
            remove_unless_regular(self._path(index))  # a bad entry (a folder ...) never blocks the cache
            os.replace(tmp, self._path(index))
        except OSError as exc:  # name the cache entry: a full disk here is not the output's fault
            Path(tmp).unlink(missing_ok=True)
            if exc.filename is None or str(exc.filename) == str(tmp):
                raise OSError(exc.errno, exc.strerror, str(self._path(index))) from exc
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class FrameDensePose:
    """DensePose results per driver frame, from a precomputed source or a model backend (+ cache).

    Args:
        backend: a :class:`densepose_adapter.DensePoseBackend` (model) or a
            :class:`densepose_adapter.precomputed.PrecomputedIUV`.
        cache: disk cache for model backends (precomputed sources are read directly).
    """

    def __init__(self, backend, cache: DensePoseCache | None = None):
        self.backend = backend
        self.cache = cache
        self.calls = 0  # frames actually computed by a model backend

    @property
    def precomputed(self) -> bool:
        return getattr(self.backend, "name", "") == "precomputed"

    def stream(self, frames: Iterable, batch_size: int, times=None) -> Iterator[tuple[object, DensePoseResult]]:
        """``(frame, result)`` for every frame of ``frames`` (objects with ``.index`` and ``.rgb``), in
        order, computed ``batch_size`` frames at a time; ``times.add("densepose", seconds)`` if given."""
        batch: list = []
        frames = iter(frames)
        while True:
            frame = next(frames, None)
            if frame is not None:
                batch.append(frame)
            if batch and (frame is None or len(batch) == batch_size):
                tick = time.perf_counter()
                results = self.results([f.index for f in batch], [f.rgb for f in batch])
                if times is not None:
                    times.add("densepose", time.perf_counter() - tick)
                yield from zip(batch, results)
                batch = []
            if frame is None:
                return

    def results(self, indices: Sequence[int], images: Sequence[np.ndarray]) -> list[DensePoseResult]:
        """Results for frames ``indices`` whose RGB images are ``images`` (``(H, W, 3) uint8``)."""
        if self.precomputed:
            return [self.backend.get(i, img.shape[:2]) for i, img in zip(indices, images)]
        # Frames are handled in order, and a tracking backend is told about every cached result it
        # skips, so that a resumed or partly cached run computes exactly what an uninterrupted one did.
        out: list[DensePoseResult | None] = [None] * len(indices)
        pending: list[int] = []
        observe = getattr(self.backend, "observe", None)

        def flush() -> None:
            if not pending:
                return
            computed = self.backend.predict([np.ascontiguousarray(images[k][..., ::-1]) for k in pending])
            self.calls += len(pending)
            for k, result in zip(pending, computed):
                out[k] = result
                if self.cache is not None:
                    self.cache.store(indices[k], result)
            pending.clear()

        for k, index in enumerate(indices):
            cached = self.cache.load(index, images[k].shape[:2]) if self.cache is not None else None
            if cached is not None and tuple(cached.image_hw) == tuple(images[k].shape[:2]):
                flush()
                out[k] = cached
                if observe is not None:
                    observe(cached)
            else:
                pending.append(k)
        flush()
        return out  # type: ignore[return-value]


class WrappingDensePose:
    """Base of the stages built on a raw :class:`FrameDensePose` (temporal filter, keyframes): its ``calls``,
    ``precomputed`` and ``backend`` are the wrapped stage's. ``WRAPS`` names the attribute that holds it."""

    WRAPS = "inner"

    @property
    def calls(self) -> int:
        return getattr(self, self.WRAPS).calls

    @property
    def precomputed(self) -> bool:
        return getattr(self, self.WRAPS).precomputed

    @property
    def backend(self):
        """The raw stage's backend (a precomputed sidecar is checked against the driver through it)."""
        return getattr(self, self.WRAPS).backend
