"""Which globals a pickle (or a torch checkpoint) references, found by reading its opcodes.

Nothing is unpickled: :func:`pickletools.genops` only decodes the opcode stream. A pickle calls code
only through the globals it names (``GLOBAL``/``STACK_GLOBAL``/``INST``), so listing them tells,
before any loader runs, whether a file needs more than tensors and plain containers. This does not
depend on how a library words its own refusal.

- torch zip format (``torch.save`` since 1.6): the pickle is the ``<folder>/data.pkl`` member;
- legacy torch format and plain pickles: a sequence of pickles (magic number, protocol, system info,
  the object, the storage keys) followed by raw tensor bytes; every pickle up to the raw data is read.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import zipfile
from pathlib import Path

#: Globals a plain state dict saved by ``torch.save`` needs (tensor/storage rebuilding, dtypes, the
#: ``OrderedDict`` of ``state_dict()``, bytes in protocol 2).
_PLAIN_OUTSIDE_TORCH = {
    "collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset", "builtins.complex",
    "builtins.slice", "builtins.bytearray",
    # numpy arrays in a checkpoint (as the restricted DensePose unpickler admits them)
    "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
}
_PLAIN_TORCH_MODULES = ("torch._utils", "torch.serialization", "torch.storage", "torch._tensor")
_TORCH_LEGACY_PICKLES = 5  # magic number, protocol version, sys info, the object, storage keys

_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
_MAX_PICKLE_BYTES = 64 << 20  # data.pkl of a state dict is small; tensors live in other members


def _decode(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value if isinstance(value, str) else None


def _python3_name(module: str, attr: str) -> str:
    """``module.attr`` as unpickling resolves it (Python 2 names such as ``__builtin__`` are mapped)."""
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def scan_pickle_stream(handle, max_pickles: int = 1) -> list[str]:
    """``module.name`` of every global referenced by up to ``max_pickles`` consecutive pickles.

    Globals are listed in order of appearance; ``?.?`` stands for a ``STACK_GLOBAL`` whose names are
    computed at load time (no plain file does that). Reading stops quietly at data that is not a
    pickle (the raw tensor bytes of a legacy checkpoint, or a damaged file): what was found so far
    is returned.
    """
    found: list[str] = []
    for _ in range(max_pickles):
        recent: list[str | None] = []  # values pushed lately (strings, else None)
        memo: dict[int, str | None] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(handle):
                name = opcode.name
                if name in _STRING_OPS:
                    recent.append(_decode(arg))
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(arg)))
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = recent[-1] if recent else None
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.append(_python3_name(module, attr))
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                    found.append(f"{module or '?'}.{attr or '?'}")
                    recent.append(None)
                elif name == "STOP":
                    break
                elif name not in ("FRAME", "PROTO"):
                    recent.append(None)
                if len(recent) > 64:
                    del recent[:-8]
            else:
                return found  # end of data
        except (ValueError, EOFError, UnicodeDecodeError, IndexError, OverflowError, MemoryError):
            return found
    return found


def checkpoint_globals(path: str | Path) -> list[str]:
    """Globals referenced by a torch checkpoint (zip or legacy) or a plain pickle file; ``[]`` if unreadable."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head == b"PK\x03\x04":
                return _zip_globals(path)
            f.seek(0)
            return scan_pickle_stream(f, _TORCH_LEGACY_PICKLES)
    except OSError:
        return []


def _zip_globals(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            found: list[str] = []
            for info in archive.infolist():
                if info.filename.rsplit("/", 1)[-1] != "data.pkl" or info.file_size > _MAX_PICKLE_BYTES:
                    continue
                found += scan_pickle_stream(io.BytesIO(archive.read(info)))
            return found
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
        return []
    except Exception:  # noqa: BLE001 - zlib.error and friends from a damaged member: nothing to report
        return []


def is_plain_global(name: str) -> bool:
    """Whether ``module.name`` is something a plain state dict needs (tensor rebuilding, dtypes, containers)."""
    if name in _PLAIN_OUTSIDE_TORCH:
        return True
    module, _, attr = name.rpartition(".")
    if module in ("numpy.dtypes", "numpy._core.dtypes", "numpy.core.dtypes") and attr.endswith("DType"):
        return True  # numpy>=2 dtype classes, e.g. Float32DType
    if module == "torch":
        return attr.endswith("Storage") or attr in ("Size", "device", "dtype", "float32", "float16", "bfloat16",
                                                     "float64", "int64", "int32", "int16", "int8", "uint8",
                                                     "bool", "complex64", "complex128")
    if module in _PLAIN_TORCH_MODULES:
        return attr.startswith("_rebuild_") or attr in ("_get_layout", "UntypedStorage", "TypedStorage")
    return False


def first_unsafe_global(path: str | Path) -> str | None:
    """The first global of ``path`` that a plain state dict never needs, or ``None``."""
    return next((g for g in checkpoint_globals(path) if not is_plain_global(g)), None)
