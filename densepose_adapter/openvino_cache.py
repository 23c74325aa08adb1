"""Torch modules converted to OpenVINO once and kept on disk, checked before every use.

Standalone (no ``retarget`` import): the DensePose port uses it for its backbone + FPN and
``retarget.engine`` for the refiner's per-frame branch.

A cache entry is a folder ``<root>/<name>-<key>/`` holding ``model.xml``, ``model.bin`` and
``meta.json``; ``meta.json`` records the sha256 of both model files and the key's payload. An entry
is used only when the payload matches and both hashes do; anything else (truncated or garbage files, a
missing file, unreadable JSON, a model OpenVINO cannot read) is removed and converted again. Entries
are written into a temporary folder beside the final one and renamed into place, so a crash never
leaves a half-written entry under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from densepose_adapter.errors import UsageError

#: Bump when the conversion code changes what a cached model contains.
CONVERT_VERSION = "1"


class OpenVINOMissing(UsageError):
    """OpenVINO was asked for and is not installed."""


def import_openvino(what: str, install_hint: str = "pip install openvino"):
    """The ``openvino`` module, or :class:`OpenVINOMissing` naming ``what`` asked for it and how to install it."""
    try:
        import openvino
    except ImportError:
        raise OpenVINOMissing(f"{what}: OpenVINO is not installed; {install_hint}") from None
    return openvino


def openvino_available() -> bool:
    """True when ``openvino`` can be imported."""
    try:
        import_openvino("check")
    except OpenVINOMissing:
        return False
    return True


_core = {}


def core():
    """One shared ``openvino.Core`` per process."""
    if "core" not in _core:
        _core["core"] = import_openvino("OpenVINO engine").Core()
    return _core["core"]


#: The inference precisions :func:`compile_cpu` accepts (OpenVINO's ``INFERENCE_PRECISION_HINT`` values).
PRECISION_HINTS = ("f32", "bf16")


def compile_cpu(model, precision_hint: str, profile: bool = False, threads: int | None = None):
    """``model`` compiled for the CPU for low latency (one stream), at an explicit precision.

    The one place this package and ``retarget`` compile OpenVINO models. ``precision_hint`` (``f32`` or
    ``bf16``) is always passed as ``INFERENCE_PRECISION_HINT``: left out, OpenVINO picks bf16 on CPUs with
    native bf16 (AVX512-BF16, AMX) and f32 elsewhere, so results would depend on the CPU. Where the CPU
    has no native bf16, OpenVINO runs a ``bf16`` request in f32 (see :func:`compiled_precision`).
    ``profile`` turns on OpenVINO's per-layer performance counters; ``threads`` caps the inference threads
    (``INFERENCE_NUM_THREADS``; ``None``: OpenVINO's default, every core).
    """
    if precision_hint not in PRECISION_HINTS:
        raise ValueError(f"precision_hint {precision_hint!r}: expected one of {', '.join(PRECISION_HINTS)}")
    config = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY"}
    if profile:
        config["PERF_COUNT"] = True
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = max(1, int(threads))
    return core().compile_model(model, "CPU", config)


def compiled_precision(compiled) -> str:
    """The inference precision a compiled model really runs (``f32`` or ``bf16``)."""
    value = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
    return "bf16" if "bf16" in value or "bfloat16" in value else "f32"


def state_digest(module) -> str:
    """sha256 of a torch module's state dict (names, dtypes, shapes and values)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def entry_key(payload: dict[str, Any]) -> str:
    """Short hash of a JSON-able payload (weights digest, engine version, precision, shapes ...)."""
    full = dict(payload, convert_version=CONVERT_VERSION, openvino=openvino_version())
    return hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:24]


def openvino_version() -> str:
    return str(import_openvino("OpenVINO engine").__version__)


def _remove_entry(path: Path) -> None:
    """Remove a cache entry whatever it is (a folder, a file, a FIFO, a link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


class ModelCache:
    """Converted models under ``root`` (see the module docstring for the layout and checks)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def entry_dir(self, name: str, key: str) -> Path:
        return self.root / f"{name}-{key}"

    def load(self, name: str, key: str) -> tuple[Any, dict] | None:
        """``(openvino.Model, meta)`` of a valid entry, else ``None`` (a damaged entry is removed)."""
        folder = self.entry_dir(name, key)
        if not os.path.lexists(folder):
            return None
        try:
            if folder.is_symlink() or not folder.is_dir():
                raise ValueError("not a folder")
            for file in ("meta.json", "model.xml", "model.bin"):  # a FIFO would block the reads below
                if (folder / file).is_symlink() or not (folder / file).is_file():
                    raise ValueError(f"{file} is missing or not a regular file")
            if (folder / "meta.json").stat().st_size > 1 << 20:
                raise ValueError("meta.json is too large")
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("key") != key:
                raise ValueError("key mismatch")
            for file in ("model.xml", "model.bin"):
                if _file_sha256(folder / file) != meta["sha256"][file]:
                    raise ValueError(f"{file} hash mismatch")
            model = core().read_model(str(folder / "model.xml"), str(folder / "model.bin"))
        except Exception as exc:  # noqa: BLE001 - any damage means: convert again
            print(f"note: OpenVINO cache entry {folder} is damaged ({exc.__class__.__name__}: "
                  f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); converting again", file=sys.stderr)
            _remove_entry(folder)
            return None
        return model, meta

    def store(self, name: str, key: str, model, meta: dict | None = None) -> Path:
        """Write ``model`` (uncompressed fp32 weights) atomically; returns the entry folder."""
        ov = import_openvino("OpenVINO engine")
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry_dir(name, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            info = dict(meta or {}, key=key,
                        sha256={f: _file_sha256(tmp / f) for f in ("model.xml", "model.bin")})
            (tmp / "meta.json").write_text(json.dumps(info, indent=1, sort_keys=True))
            if os.path.lexists(final):
                _remove_entry(final)
            try:
                os.replace(tmp, final)
            except OSError:  # another process stored the same entry first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def get(self, name: str, key: str, build: Callable[[], tuple[Any, dict]], message: str | None = None
            ) -> tuple[Any, dict]:
        """The cached model, or ``build()`` → ``(model, meta)`` stored then returned (``message`` printed first)."""
        found = self.load(name, key)
        if found is not None:
            return found
        if message:
            print(message, file=sys.stderr, flush=True)
        model, meta = build()
        self.store(name, key, model, meta)
        return model, dict(meta, key=key)
